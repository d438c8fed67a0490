//! Every op of the language on one image `[C, H, W]` (row-major `f32`), in plain loops.
//!
//! Sums (convolution, average pooling, global average pooling) accumulate in `f64` and are
//! rounded to `f32` once; batch normalisation is evaluated in `f64` exactly as the contract
//! writes it. Each function checks that its arguments fit together and returns a [`RunError`]
//! instead of panicking.
//!
//! NaN and infinity propagate as IEEE arithmetic says. Max pooling lets NaN win: a window with
//! a NaN among its in-bounds elements gives NaN (like PyTorch, NumPy's `max` and IEEE 754-2019
//! `maximum`). ONNX Runtime 1.32's MaxPool was checked and is order-dependent on NaN: it keeps
//! `max(acc, x)` with x86 `maxps` semantics, so a NaN survives only when it is the last element
//! of its window and is otherwise replaced by the max of the elements after it. That is not a
//! semantics worth matching; on NaN-free input the two agree exactly.

use std::ops::Range;

use convc_ir::{BatchNorm, Conv, Pool, PoolKind, Unary};

use crate::RunError;

/// Output size on one axis: `floor((n + before + after - d*(k-1) - 1) / s) + 1`, or `None`
/// when that is 0 or less (or a stride, kernel or dilation is 0).
pub fn out_len(
    n: usize,
    before: usize,
    after: usize,
    k: usize,
    s: usize,
    d: usize,
) -> Option<usize> {
    if k == 0 || s == 0 || d == 0 {
        return None;
    }
    let span = d.checked_mul(k - 1)?.checked_add(1)?;
    let total = n.checked_add(before)?.checked_add(after)?;
    if total < span {
        return None;
    }
    Some((total - span) / s + 1)
}

/// The output positions `o` in `0..out` whose input index `o*s + off - before` lies in
/// `0..n`, where `off` is the kernel tap's offset (`tap * dilation`).
fn valid_range(out: usize, n: usize, s: usize, off: usize, before: usize) -> Range<usize> {
    // First o with o*s + off >= before.
    let lo = if off >= before {
        0
    } else {
        (before - off).div_ceil(s)
    };
    // Last o with o*s + off - before <= n - 1, i.e. o*s <= n - 1 + before - off.
    let lim = n + before; // o*s + off < lim
    let hi = if off >= lim {
        0
    } else {
        ((lim - off - 1) / s + 1).min(out)
    };
    lo.min(hi)..hi
}

fn check_len(x: &[f32], shape: [usize; 3], what: &str) -> Result<(), RunError> {
    let n = shape[0]
        .checked_mul(shape[1])
        .and_then(|v| v.checked_mul(shape[2]));
    if n != Some(x.len()) {
        return Err(RunError::new(format!(
            "{what}: {} values do not form a [{}, {}, {}] image",
            x.len(),
            shape[0],
            shape[1],
            shape[2]
        )));
    }
    Ok(())
}

/// Everything a convolution needs to know about its sizes, checked once.
#[derive(Clone, Debug)]
pub(crate) struct ConvPlan {
    c: usize,
    h: usize,
    w: usize,
    /// Output channels, height, width.
    pub(crate) out: [usize; 3],
    /// Input channels per group.
    cg: usize,
    /// Output channels per group.
    og: usize,
    /// `[top, bottom, left, right]`.
    pads: [usize; 4],
}

impl ConvPlan {
    pub(crate) fn new(shape: [usize; 3], conv: &Conv) -> Result<ConvPlan, RunError> {
        let [c, h, w] = shape;
        let g = conv.groups;
        if g == 0 || !c.is_multiple_of(g) || !conv.out.is_multiple_of(g) {
            return Err(RunError::new(format!(
                "conv: {c} input and {} output channels are not both divisible by groups={g}",
                conv.out
            )));
        }
        let cg = c / g;
        let want = [conv.out, cg, conv.kernel[0], conv.kernel[1]];
        if conv.weight.data.shape() != want {
            return Err(RunError::new(format!(
                "conv: weights have shape {}, expected {}",
                convc_tensor::fmt_shape(conv.weight.data.shape()),
                convc_tensor::fmt_shape(&want)
            )));
        }
        if let Some(b) = &conv.bias
            && b.data.shape() != [conv.out]
        {
            return Err(RunError::new(format!(
                "conv: bias has shape {}, expected [{}]",
                convc_tensor::fmt_shape(b.data.shape()),
                conv.out
            )));
        }
        let pads = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let oh = out_len(
            h,
            pads[0],
            pads[1],
            conv.kernel[0],
            conv.stride[0],
            conv.dilation[0],
        );
        let ow = out_len(
            w,
            pads[2],
            pads[3],
            conv.kernel[1],
            conv.stride[1],
            conv.dilation[1],
        );
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(RunError::new(format!(
                "conv: an input of {h}x{w} is too small for kernel {}x{}, stride {}x{}, dilation {}x{} and padding {:?}",
                conv.kernel[0],
                conv.kernel[1],
                conv.stride[0],
                conv.stride[1],
                conv.dilation[0],
                conv.dilation[1],
                pads
            )));
        };
        Ok(ConvPlan {
            c,
            h,
            w,
            out: [conv.out, oh, ow],
            cg,
            og: conv.out / g,
            pads,
        })
    }

    /// Input elements per image.
    pub(crate) fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Multiply-accumulates per image (for deciding whether threads pay off).
    pub(crate) fn macs(&self) -> usize {
        let [o, oh, ow] = self.out;
        o.saturating_mul(oh)
            .saturating_mul(ow)
            .saturating_mul(self.cg)
    }
}

/// Computes output channel `o` of one image into `plane` (`OH * OW` values).
///
/// Loop order: for each output row, the kernel taps `(c, kh, kw)` run outside and the
/// innermost loop runs over the contiguous output pixels of the row, accumulating into an
/// `f64` row buffer `acc`. Taps that fall into the padding are skipped (zero padding adds 0).
pub(crate) fn conv_plane(
    x: &[f32],
    p: &ConvPlan,
    conv: &Conv,
    o: usize,
    plane: &mut [f32],
    acc: &mut Vec<f64>,
) {
    let [_, oh, ow] = p.out;
    let [kh, kw] = conv.kernel;
    let [sh, sw] = conv.stride;
    let [dh, dw] = conv.dilation;
    let [pt, _, pl, _] = p.pads;
    let weight = conv.weight.data.data();
    let bias = conv
        .bias
        .as_ref()
        .map_or(0.0, |b| f64::from(b.data.data()[o]));
    let group = o / p.og;
    // The valid output columns of each horizontal tap (the same for every row).
    let cols: Vec<Range<usize>> = (0..kw)
        .map(|j| valid_range(ow, p.w, sw, j * dw, pl))
        .collect();
    acc.clear();
    acc.resize(ow, 0.0);
    for oy in 0..oh {
        acc.fill(bias);
        for ci in 0..p.cg {
            let c = group * p.cg + ci;
            let image = &x[c * p.h * p.w..(c + 1) * p.h * p.w];
            for i in 0..kh {
                // Input row oy*sh + i*dh - pt, skipped when it is in the padding.
                let iy = oy * sh + i * dh;
                if iy < pt || iy - pt >= p.h {
                    continue;
                }
                let row = &image[(iy - pt) * p.w..(iy - pt + 1) * p.w];
                for (j, range) in cols.iter().enumerate() {
                    let wv = f64::from(weight[((o * p.cg + ci) * kh + i) * kw + j]);
                    if range.is_empty() {
                        continue;
                    }
                    // Input column of output column ox: ox*sw + j*dw - pl.
                    let first = range.start * sw + j * dw - pl;
                    let dst = &mut acc[range.clone()];
                    if sw == 1 {
                        for (a, &v) in dst.iter_mut().zip(&row[first..first + range.len()]) {
                            *a += wv * f64::from(v);
                        }
                    } else {
                        for (a, &v) in dst.iter_mut().zip(row[first..].iter().step_by(sw)) {
                            *a += wv * f64::from(v);
                        }
                    }
                }
            }
        }
        for (d, &a) in plane[oy * ow..(oy + 1) * ow].iter_mut().zip(acc.iter()) {
            *d = a as f32;
        }
    }
}

/// 2-D convolution (cross-correlation, like PyTorch and ONNX) of one image `x` of shape
/// `[C, H, W]`: stride, dilation, zero padding (`same` resolved by [`convc_ir::Pad::resolve`]), groups
/// (output channel `o` reads the input channels of group `o / (out/groups)`, so a depthwise
/// conv with multiplier `m` has output channel `o` read input channel `o / m`) and bias.
/// Returns the output and its shape `[out, OH, OW]`.
pub fn conv2d(
    x: &[f32],
    shape: [usize; 3],
    conv: &Conv,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "conv")?;
    let p = ConvPlan::new(shape, conv)?;
    let [o, oh, ow] = p.out;
    let mut out = vec![0.0f32; o * oh * ow];
    let mut acc = Vec::new();
    for (k, plane) in out.chunks_mut(oh * ow).enumerate() {
        conv_plane(x, &p, conv, k, plane, &mut acc);
    }
    Ok((out, p.out))
}

/// Batch normalisation (inference form) of one image: `gamma*(x-mean)/sqrt(var+eps)+beta`
/// per channel, evaluated in `f64` in exactly that order and rounded once.
pub fn batchnorm(x: &[f32], shape: [usize; 3], bn: &BatchNorm) -> Result<Vec<f32>, RunError> {
    check_len(x, shape, "batchnorm")?;
    let c = shape[0];
    for (p, name) in [
        (&bn.mean, "mean"),
        (&bn.var, "var"),
        (&bn.gamma, "gamma"),
        (&bn.beta, "beta"),
    ] {
        if p.data.shape() != [c] {
            return Err(RunError::new(format!(
                "batchnorm: {name} has shape {}, expected [{c}]",
                convc_tensor::fmt_shape(p.data.shape())
            )));
        }
    }
    let (mean, var, gamma, beta) = (
        bn.mean.data.data(),
        bn.var.data.data(),
        bn.gamma.data.data(),
        bn.beta.data.data(),
    );
    let eps = f64::from(bn.eps);
    let plane = shape[1] * shape[2];
    let mut out = Vec::with_capacity(x.len());
    for ch in 0..c {
        let (m, g, b) = (
            f64::from(mean[ch]),
            f64::from(gamma[ch]),
            f64::from(beta[ch]),
        );
        let den = (f64::from(var[ch]) + eps).sqrt();
        for &v in &x[ch * plane..(ch + 1) * plane] {
            out.push((g * (f64::from(v) - m) / den + b) as f32);
        }
    }
    Ok(out)
}

/// An elementwise function ([`Unary::apply`] on every value).
pub fn unary(x: &[f32], u: Unary) -> Vec<f32> {
    x.iter().map(|&v| u.apply(v)).collect()
}

/// Elementwise sum of two tensors of the same length (one `f32` addition per element).
pub fn add(a: &[f32], b: &[f32]) -> Result<Vec<f32>, RunError> {
    if a.len() != b.len() {
        return Err(RunError::new(format!(
            "add: operands have {} and {} values",
            a.len(),
            b.len()
        )));
    }
    Ok(a.iter().zip(b).map(|(&p, &q)| p + q).collect())
}

/// The elementwise product of one image `a` `[C, H, W]` and `b`, which is either `[C, H, W]`
/// too or `[C, 1, 1]` (one factor per channel, broadcast over the plane); the operands may
/// come in either order (`a_shape` and `b_shape` say which is which). Returns the product in
/// the larger shape.
pub fn mul(
    a: &[f32],
    a_shape: [usize; 3],
    b: &[f32],
    b_shape: [usize; 3],
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    broadcast(a, a_shape, b, b_shape, "mul", |p, q| p * q)
}

/// The elementwise sum of one image `a` and `b`, shaped as for [`mul`]: equal shapes, or one
/// of them `[C, 1, 1]` (its value per channel added to the whole plane of that channel).
pub fn add_broadcast(
    a: &[f32],
    a_shape: [usize; 3],
    b: &[f32],
    b_shape: [usize; 3],
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    broadcast(a, a_shape, b, b_shape, "add", |p, q| p + q)
}

/// `f(a, b)` elementwise with the per-channel broadcast of [`mul`] (`f` takes the operands in
/// their order).
fn broadcast(
    a: &[f32],
    a_shape: [usize; 3],
    b: &[f32],
    b_shape: [usize; 3],
    what: &str,
    f: impl Fn(f32, f32) -> f32,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(a, a_shape, what)?;
    check_len(b, b_shape, what)?;
    if a_shape == b_shape {
        return Ok((a.iter().zip(b).map(|(&p, &q)| f(p, q)).collect(), a_shape));
    }
    // Broadcast: `small` is [C, 1, 1].
    let small_b = b_shape[1] == 1 && b_shape[2] == 1;
    let (big, big_shape, small, small_shape) = if small_b {
        (a, a_shape, b, b_shape)
    } else {
        (b, b_shape, a, a_shape)
    };
    if small_shape != [big_shape[0], 1, 1] {
        return Err(RunError::new(format!(
            "{what} of shapes {a_shape:?} and {b_shape:?}"
        )));
    }
    let plane = big_shape[1] * big_shape[2];
    let out = if plane == 0 {
        Vec::new()
    } else {
        big.chunks(plane)
            .zip(small)
            .flat_map(|(ch, &k)| {
                let f = &f;
                ch.iter()
                    .map(move |&v| if small_b { f(v, k) } else { f(k, v) })
            })
            .collect()
    };
    Ok((out, big_shape))
}

/// Channels `start..end` of one image `[C, H, W]` (a copy).
pub fn slice(
    x: &[f32],
    shape: [usize; 3],
    start: usize,
    end: usize,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "slice")?;
    let [c, h, w] = shape;
    if start >= end || end > c {
        return Err(RunError::new(format!(
            "slice: channels {start}..{end} of an image of {c}"
        )));
    }
    Ok((x[start * h * w..end * h * w].to_vec(), [end - start, h, w]))
}

/// Parametric ReLU of one image: `x` where `x >= 0` (and NaN), else `slope[c] * x`; `slope`
/// has one value per channel or one for all.
pub fn prelu(x: &[f32], shape: [usize; 3], slope: &[f32]) -> Result<Vec<f32>, RunError> {
    check_len(x, shape, "prelu")?;
    let [c, h, w] = shape;
    if slope.len() != c && slope.len() != 1 {
        return Err(RunError::new(format!(
            "prelu: {} slopes for {c} channels",
            slope.len()
        )));
    }
    let plane = h * w;
    let mut out = Vec::with_capacity(x.len());
    for k in 0..c {
        let a = slope[if slope.len() == 1 { 0 } else { k }];
        out.extend(
            x[k * plane..(k + 1) * plane]
                .iter()
                .map(|&v| if v < 0.0 { a * v } else { v }),
        );
    }
    Ok(out)
}

/// The maximum of each channel over H and W (NaN wins, as in max pooling): `[C, 1, 1]`.
pub fn global_maxpool(x: &[f32], shape: [usize; 3]) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "global_maxpool")?;
    let plane = shape[1] * shape[2];
    if plane == 0 {
        return Err(RunError::new(
            "global_maxpool: an empty image has no maximum",
        ));
    }
    let out = x
        .chunks(plane)
        .map(|ch| {
            ch.iter().fold(
                f32::NEG_INFINITY,
                |m, &v| if v.is_nan() || v > m { v } else { m },
            )
        })
        .collect();
    Ok((out, [shape[0], 1, 1]))
}

/// Padding of every plane of one image ([`convc_ir::PadOp::plane`]).
pub fn pad(
    x: &[f32],
    shape: [usize; 3],
    p: &convc_ir::PadOp,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "pad")?;
    let [c, h, w] = shape;
    let [t, b, l, r] = p.pads;
    if p.mode == convc_ir::PadMode::Reflect && (t.max(b) >= h || l.max(r) >= w) {
        return Err(RunError::new(format!(
            "pad: reflect padding ({t}, {b}, {l}, {r}) needs each side below the input size {h}x{w}"
        )));
    }
    if p.mode != convc_ir::PadMode::Constant && h * w == 0 {
        return Err(RunError::new("pad: an empty plane has no edge"));
    }
    let (oh, ow) = (h + t + b, w + l + r);
    let mut out = vec![0f32; c * oh * ow];
    if h * w > 0 || p.mode == convc_ir::PadMode::Constant {
        for k in 0..c {
            p.plane(
                &x[k * h * w..(k + 1) * h * w],
                h,
                w,
                &mut out[k * oh * ow..(k + 1) * oh * ow],
            );
        }
    }
    Ok((out, [c, oh, ow]))
}

/// Upsampling of every plane of one image ([`convc_ir::Upsample::plane`], in f64).
pub fn upsample(
    x: &[f32],
    shape: [usize; 3],
    u: &convc_ir::Upsample,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "upsample")?;
    let [c, h, w] = shape;
    let (oh, ow) = (h * u.scale[0], w * u.scale[1]);
    let mut out = vec![0f32; c * oh * ow];
    if h * w > 0 {
        for k in 0..c {
            u.plane(
                &x[k * h * w..(k + 1) * h * w],
                h,
                w,
                &mut out[k * oh * ow..(k + 1) * oh * ow],
            );
        }
    }
    Ok((out, [c, oh, ow]))
}

/// A transposed convolution of one image ([`convc_ir::TransposeGeom::channel`] per output
/// channel, summed in f64).
pub fn conv_transpose(
    x: &[f32],
    shape: [usize; 3],
    t: &convc_ir::ConvTranspose,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "conv_transpose")?;
    let g = &t.geom;
    let [c, h, w] = shape;
    let (Some(oh), Some(ow)) = (g.out_size(h, 0), g.out_size(w, 1)) else {
        return Err(RunError::new(format!(
            "conv_transpose: no output for an input of {h}x{w}"
        )));
    };
    let want = [c, g.out / g.groups.max(1), g.kernel[0], g.kernel[1]];
    if t.weight.data.shape() != want || g.groups == 0 || c % g.groups != 0 {
        return Err(RunError::new(
            "conv_transpose: weights do not fit the input",
        ));
    }
    let mut out = vec![0f32; g.out * oh * ow];
    for (oc, plane) in out.chunks_mut(oh * ow).enumerate() {
        let b = t.bias.as_ref().map_or(0.0, |b| b.data.data()[oc]);
        g.channel(x, shape, t.weight.data.data(), b, oc, plane, [oh, ow]);
    }
    Ok((out, [g.out, oh, ow]))
}

/// Concatenation of images `[C_i, H, W]` along channels. Returns `[sum C_i, H, W]`.
pub fn concat(parts: &[(&[f32], [usize; 3])]) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    let Some(&(_, [_, h, w])) = parts.first() else {
        return Err(RunError::new("concat: no operands"));
    };
    let mut out = Vec::new();
    let mut c = 0;
    for &(x, s) in parts {
        check_len(x, s, "concat")?;
        if s[1] != h || s[2] != w {
            return Err(RunError::new(format!(
                "concat: operands of {h}x{w} and {}x{}",
                s[1], s[2]
            )));
        }
        c += s[0];
        out.extend_from_slice(x);
    }
    Ok((out, [c, h, w]))
}

/// Max or average pooling of one image. Only in-bounds elements take part: padded positions
/// never win a max and are not counted in an average (which divides the `f64` sum by the
/// in-bounds count). Max pooling: NaN wins (see the module notes). Each padding side must be
/// smaller than the kernel on its axis, so every window holds an in-bounds element.
pub fn pool(x: &[f32], shape: [usize; 3], p: &Pool) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "pool")?;
    let [c, h, w] = shape;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let pads = p.pad.resolve(h, w, p.kernel, p.stride, [1, 1]);
    let [pt, pb, pl, pr] = pads;
    if pt >= kh || pb >= kh || pl >= kw || pr >= kw {
        return Err(RunError::new(format!(
            "pool: padding {pads:?} is not smaller than the kernel {kh}x{kw} on each side"
        )));
    }
    let (Some(oh), Some(ow)) = (out_len(h, pt, pb, kh, sh, 1), out_len(w, pl, pr, kw, sw, 1))
    else {
        return Err(RunError::new(format!(
            "pool: an input of {h}x{w} is too small for kernel {kh}x{kw}, stride {sh}x{sw} and padding {pads:?}"
        )));
    };
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let image = &x[ch * h * w..(ch + 1) * h * w];
        for oy in 0..oh {
            // In-bounds rows of the window: oy*sh - pt + i for i in 0..kh.
            let rows = (oy * sh).saturating_sub(pt)..(oy * sh + kh).saturating_sub(pt).min(h);
            for ox in 0..ow {
                let cols = (ox * sw).saturating_sub(pl)..(ox * sw + kw).saturating_sub(pl).min(w);
                let window = rows.clone().flat_map(|iy| {
                    image[iy * w + cols.start..iy * w + cols.end]
                        .iter()
                        .copied()
                });
                let v = match p.kind {
                    PoolKind::Max => {
                        window.fold(
                            f32::NEG_INFINITY,
                            |m, v| if v.is_nan() || v > m { v } else { m },
                        )
                    }
                    PoolKind::Avg => {
                        let count = rows.len() * cols.len();
                        let sum: f64 = window.map(f64::from).sum();
                        (sum / count as f64) as f32
                    }
                };
                out.push(v);
            }
        }
    }
    Ok((out, [c, oh, ow]))
}

/// The mean of each channel over H and W (an `f64` sum divided by `H*W`): `[C, 1, 1]`.
pub fn global_avgpool(x: &[f32], shape: [usize; 3]) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    check_len(x, shape, "global_avgpool")?;
    let plane = shape[1] * shape[2];
    if plane == 0 {
        return Err(RunError::new("global_avgpool: an empty image has no mean"));
    }
    let out = x
        .chunks(plane)
        .map(|ch| (ch.iter().copied().map(f64::from).sum::<f64>() / plane as f64) as f32)
        .collect();
    Ok((out, [shape[0], 1, 1]))
}

/// Softmax over the channels of each pixel of one image, in f64: `exp(x - max) / sum`.
/// NaN and infinities propagate as IEEE arithmetic says (a `+inf` gives NaN, as in ONNX Runtime).
pub fn softmax(x: &[f32], shape: [usize; 3]) -> Result<Vec<f32>, RunError> {
    check_len(x, shape, "softmax")?;
    let [c, h, w] = shape;
    let plane = h * w;
    let mut out = vec![0f32; x.len()];
    for p in 0..plane {
        let at = |k: usize| f64::from(x[k * plane + p]);
        let max = (0..c).map(at).fold(f64::NEG_INFINITY, |m, v| {
            if v.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        });
        let sum: f64 = (0..c).map(|k| (at(k) - max).exp()).sum();
        for k in 0..c {
            out[k * plane + p] = ((at(k) - max).exp() / sum) as f32;
        }
    }
    Ok(out)
}

/// Channel shuffle of one image: output channel `j*groups + i` is input channel
/// `i*(C/groups) + j`.
pub fn shuffle(x: &[f32], shape: [usize; 3], groups: usize) -> Result<Vec<f32>, RunError> {
    check_len(x, shape, "shuffle")?;
    let [c, h, w] = shape;
    if groups == 0 || c % groups != 0 {
        return Err(RunError::new(format!(
            "shuffle of {c} channels in {groups} groups"
        )));
    }
    let (plane, per) = (h * w, c / groups);
    let mut out = Vec::with_capacity(x.len());
    for j in 0..per {
        for i in 0..groups {
            let src = (i * per + j) * plane;
            out.extend_from_slice(&x[src..src + plane]);
        }
    }
    Ok(out)
}

/// Local response normalisation across channels of one image, in f64 (ONNX `LRN`): the sum
/// of squares over channels `c - (size-1)/2 ..= c + size/2` (clipped), then
/// `x / (bias + alpha/size * sum)^beta`.
pub fn lrn(x: &[f32], shape: [usize; 3], l: &convc_ir::Lrn) -> Result<Vec<f32>, RunError> {
    check_len(x, shape, "lrn")?;
    let [c, h, w] = shape;
    let plane = h * w;
    let (alpha, beta, bias) = (f64::from(l.alpha), f64::from(l.beta), f64::from(l.bias));
    let half_lo = (l.size.max(1) - 1) / 2;
    let half_hi = l.size / 2;
    let mut out = vec![0f32; x.len()];
    for k in 0..c {
        let lo = k.saturating_sub(half_lo);
        let hi = (k + half_hi).min(c.saturating_sub(1));
        for p in 0..plane {
            let mut sq = 0f64;
            for i in lo..=hi {
                let v = f64::from(x[i * plane + p]);
                sq += v * v;
            }
            let d = (bias + alpha / l.size as f64 * sq).powf(beta);
            out[k * plane + p] = (f64::from(x[k * plane + p]) / d) as f32;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_interleaves_the_groups() {
        // 6 channels in 2 groups [0 1 2 | 3 4 5] -> 0 3 1 4 2 5.
        let y = shuffle(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [6, 1, 1], 2).unwrap();
        assert_eq!(y, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn lrn_sums_a_clipped_window_of_channels() {
        // size 3: channel 0 sees channels 0..=1, channel 1 sees 0..=2, channel 2 sees 1..=2.
        let l = convc_ir::Lrn {
            size: 3,
            alpha: 3.0,
            beta: 1.0,
            bias: 1.0,
        };
        let y = lrn(&[1.0, 2.0, 3.0], [3, 1, 1], &l).unwrap();
        // alpha/size = 1: x / (1 + sum of squares).
        let want = [1.0 / 6.0, 2.0 / 15.0, 3.0 / 14.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{y:?}");
        }
    }

    #[test]
    fn softmax_is_per_pixel_over_channels() {
        // 2 channels, 1x2 plane: pixel 0 has (0, ln 3), pixel 1 (5, 5).
        let y = softmax(&[0.0, 5.0, 3f32.ln(), 5.0], [2, 1, 2]).unwrap();
        let want = [0.25, 0.5, 0.75, 0.5];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{y:?}");
        }
        // Large values do not overflow.
        let y = softmax(&[1e30, 0.0], [2, 1, 1]).unwrap();
        assert_eq!(y, vec![1.0, 0.0]);
        assert!(softmax(&[f32::NAN, 1.0], [2, 1, 1]).unwrap()[1].is_nan());
    }

    #[test]
    fn valid_range_matches_brute_force() {
        for out in 0..7 {
            for n in 1..9 {
                for s in 1..4 {
                    for off in 0..7 {
                        for before in 0..5 {
                            let r = valid_range(out, n, s, off, before);
                            let want: Vec<usize> = (0..out)
                                .filter(|&o| {
                                    let i = (o * s + off) as i64 - before as i64;
                                    i >= 0 && i < n as i64
                                })
                                .collect();
                            assert_eq!(
                                r.collect::<Vec<_>>(),
                                want,
                                "out={out} n={n} s={s} off={off} before={before}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// `Pad::resolve` for `same` against the contract's formula: total
    /// `max((ceil(H/s)-1)*s + d*(k-1) + 1 - H, 0)`, the odd element at the bottom/right, and
    /// an output of `ceil(H/s)`.
    #[test]
    fn same_padding_follows_the_contract() {
        for n in 1..20usize {
            for k in 1..6 {
                for s in 1..5 {
                    for d in 1..4 {
                        let total =
                            ((n.div_ceil(s) as i64 - 1) * s as i64 + (d * (k - 1)) as i64 + 1
                                - n as i64)
                                .max(0) as usize;
                        let want = [total / 2, total - total / 2];
                        let p = convc_ir::Pad::Same.resolve(n, 7, [k, 1], [s, 1], [d, 1]);
                        assert_eq!([p[0], p[1]], want, "n={n} k={k} s={s} d={d}");
                        let q = convc_ir::Pad::Same.resolve(7, n, [1, k], [1, s], [1, d]);
                        assert_eq!([q[2], q[3]], want, "n={n} k={k} s={s} d={d}");
                        assert_eq!(out_len(n, p[0], p[1], k, s, d), Some(n.div_ceil(s)));
                    }
                }
            }
        }
    }

    #[test]
    fn out_len_formula() {
        assert_eq!(out_len(13, 1, 1, 3, 2, 1), Some(7));
        assert_eq!(out_len(5, 0, 0, 3, 1, 2), Some(1));
        assert_eq!(out_len(4, 0, 0, 3, 1, 2), None);
        assert_eq!(out_len(4, 0, 0, 3, 0, 1), None);
    }
}
