//! Steps implemented in plain Rust and called from a generated kernel, which passes its
//! `bufs, start, end` and a table of the step's constants: ops whose math Cranelift has no
//! instruction for (`exp`, `powf`) and whose cost is small beside the convolutions around them.

use crate::spec::{SLOT_IN, SLOT_OUT, SLOT_W};

/// The signature generated kernels call: `(bufs, start, end, params)`; `params` points to
/// the step's constants (sizes, and f32 values as their bits), kept alive with the code.
pub(crate) type RustStep = unsafe extern "C" fn(*const *mut f32, u64, u64, *const i64);

/// The step's input and output `[c, hw]` images.
///
/// # Safety
/// `bufs[SLOT_IN]` and `bufs[SLOT_OUT]` point to `n` floats each and do not overlap (the
/// buffer plan keeps an operand live through the step that reads it).
unsafe fn io<'a>(bufs: *const *mut f32, n: usize) -> (&'a [f32], &'a mut [f32]) {
    // SAFETY: see above.
    unsafe {
        let x = std::slice::from_raw_parts(*bufs.add(SLOT_IN) as *const f32, n);
        let y = std::slice::from_raw_parts_mut(*bufs.add(SLOT_OUT), n);
        (x, y)
    }
}

/// Softmax over the `c` channels of pixels `start..end` of a `[c, hw]` image, in f64 (as
/// the interpreter): `exp(x - max) / sum`. `params`: `[c, hw]`.
///
/// # Safety
/// `params` points to 2 values; the buffers are as [`io`] needs for `c * hw` floats;
/// `start <= end <= hw`.
pub(crate) unsafe extern "C" fn softmax(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let (c, hw) = unsafe { (*params as usize, *params.add(1) as usize) };
    let (x, y) = unsafe { io(bufs, c * hw) };
    for p in start as usize..end as usize {
        let at = |k: usize| f64::from(x[k * hw + p]);
        let max = (0..c).map(at).fold(f64::NEG_INFINITY, |m, v| {
            if v.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        });
        let sum: f64 = (0..c).map(|k| (at(k) - max).exp()).sum();
        for k in 0..c {
            y[k * hw + p] = ((at(k) - max).exp() / sum) as f32;
        }
    }
}

/// Channel shuffle of output channels `start..end`: output channel `j*groups + i` is input
/// channel `i*(c/groups) + j`. `params`: `[c, hw, groups]`.
///
/// # Safety
/// `params` points to 3 values, `groups` divides `c`; the buffers are as [`io`] needs for
/// `c * hw` floats; `start <= end <= c`.
pub(crate) unsafe extern "C" fn shuffle(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 3) };
    let (c, hw, groups) = (p[0] as usize, p[1] as usize, p[2] as usize);
    let (x, y) = unsafe { io(bufs, c * hw) };
    let per = c / groups;
    for o in start as usize..end as usize {
        let (j, i) = (o / groups, o % groups);
        let src = (i * per + j) * hw;
        y[o * hw..(o + 1) * hw].copy_from_slice(&x[src..src + hw]);
    }
}

/// Local response normalisation across channels (ONNX `LRN`) of pixels `start..end`, in
/// f64: `x / (bias + alpha/size * sum of x^2 over the window of channels)^beta`, the window
/// `c - (size-1)/2 ..= c + size/2` clipped to the image's channels.
/// `params`: `[c, hw, size, alpha bits, beta bits, bias bits]` (f32 bits).
///
/// # Safety
/// `params` points to 6 values; the buffers are as [`io`] needs for `c * hw` floats;
/// `start <= end <= hw`.
pub(crate) unsafe extern "C" fn lrn(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 6) };
    let (c, hw, size) = (p[0] as usize, p[1] as usize, p[2] as usize);
    let f = |i: usize| f64::from(f32::from_bits(p[i] as u32));
    let (alpha, beta, bias) = (f(3), f(4), f(5));
    let (x, y) = unsafe { io(bufs, c * hw) };
    for px in start as usize..end as usize {
        for k in 0..c {
            let lo = k.saturating_sub((size - 1) / 2);
            let hi = (k + size / 2).min(c - 1);
            let sq: f64 = (lo..=hi).map(|i| f64::from(x[i * hw + px]).powi(2)).sum();
            let v = f64::from(x[k * hw + px]);
            y[k * hw + px] = (v / (bias + alpha / size as f64 * sq).powf(beta)) as f32;
        }
    }
}

/// The step's `[n_in]` input, `[n_out]` output and `[n_extra]` third buffer (`SLOT_W`: a
/// second operand or a parameter buffer).
///
/// # Safety
/// The three buffers hold that many floats; the output overlaps neither of the others.
unsafe fn io3<'a>(
    bufs: *const *mut f32,
    n_in: usize,
    n_out: usize,
    n_extra: usize,
) -> (&'a [f32], &'a mut [f32], &'a [f32]) {
    // SAFETY: see above.
    unsafe {
        let x = std::slice::from_raw_parts(*bufs.add(SLOT_IN) as *const f32, n_in);
        let y = std::slice::from_raw_parts_mut(*bufs.add(SLOT_OUT), n_out);
        let e = if n_extra == 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(*bufs.add(SLOT_W) as *const f32, n_extra)
        };
        (x, y, e)
    }
}

/// The elementwise product of channels `start..end` of a `[c, hw]` image (`SLOT_IN`) and
/// `SLOT_W`: another `[c, hw]` image, or `[c]` factors (one per channel) when
/// `per_channel` is 1. `params`: `[c, hw, per_channel]`.
///
/// # Safety
/// `params` points to 3 values; the buffers hold `c * hw` floats (`c` for per-channel
/// factors) and the output overlaps neither operand; `start <= end <= c`.
pub(crate) unsafe extern "C" fn mul(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: the caller keeps `binary`'s contract, which is this function's.
    unsafe { binary(bufs, start, end, params, |v, f| v * f) }
}

/// The elementwise sum of channels `start..end`, shaped as for [`mul`]: `SLOT_W` is another
/// `[c, hw]` image, or `[c]` values (one per channel, added to the whole plane) when
/// `per_channel` is 1. `params`: `[c, hw, per_channel]`.
///
/// # Safety
/// As for [`mul`].
pub(crate) unsafe extern "C" fn add(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: the caller keeps `binary`'s contract, which is this function's.
    unsafe { binary(bufs, start, end, params, |v, f| v + f) }
}

/// `op(x, b)` for [`mul`] and [`add`] (the full-size operand first).
///
/// # Safety
/// As for [`mul`].
unsafe fn binary(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
    op: impl Fn(f32, f32) -> f32,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 3) };
    let (c, hw, per_channel) = (p[0] as usize, p[1] as usize, p[2] == 1);
    let nb = if per_channel { c } else { c * hw };
    let (x, y, b) = unsafe { io3(bufs, c * hw, c * hw, nb) };
    for k in start as usize..end as usize {
        let (xs, ys) = (&x[k * hw..(k + 1) * hw], &mut y[k * hw..(k + 1) * hw]);
        if per_channel {
            let f = b[k];
            ys.iter_mut().zip(xs).for_each(|(o, &v)| *o = op(v, f));
        } else {
            let bs = &b[k * hw..(k + 1) * hw];
            ys.iter_mut()
                .zip(xs.iter().zip(bs))
                .for_each(|(o, (&v, &f))| *o = op(v, f));
        }
    }
}

/// Channels `start..end` of a channel slice: output channel `k` is input channel
/// `first + k`. `params`: `[c, hw, first, input channels]`.
///
/// # Safety
/// `params` points to 4 values with `first + c <=` the input channels; the input holds
/// `input channels * hw` floats, the output `c * hw`; `start <= end <= c`.
pub(crate) unsafe extern "C" fn slice(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 4) };
    let (c, hw, first, cin) = (p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize);
    let (x, y, _) = unsafe { io3(bufs, cin * hw, c * hw, 0) };
    let (s, e) = (start as usize * hw, end as usize * hw);
    y[s..e].copy_from_slice(&x[first * hw + s..first * hw + e]);
}

/// Parametric ReLU of channels `start..end` of a `[c, hw]` image: `x < 0 ? slope * x : x`
/// with `slope` from `SLOT_W` (`slopes` values: `c`, or 1 for every channel).
/// `params`: `[c, hw, slopes]`.
///
/// # Safety
/// `params` points to 3 values; the buffers hold `c * hw` floats and the slopes `slopes`;
/// `start <= end <= c`.
pub(crate) unsafe extern "C" fn prelu(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 3) };
    let (c, hw, slopes) = (p[0] as usize, p[1] as usize, p[2] as usize);
    let (x, y, s) = unsafe { io3(bufs, c * hw, c * hw, slopes) };
    for k in start as usize..end as usize {
        let a = s[if slopes == 1 { 0 } else { k }];
        let (xs, ys) = (&x[k * hw..(k + 1) * hw], &mut y[k * hw..(k + 1) * hw]);
        ys.iter_mut()
            .zip(xs)
            .for_each(|(o, &v)| *o = if v < 0.0 { a * v } else { v });
    }
}

/// The maximum of channels `start..end` of a `[c, hw]` image over the plane (NaN wins, as in
/// the interpreter): `[c]` values. `params`: `[c, hw]`.
///
/// # Safety
/// `params` points to 2 values; the input holds `c * hw` floats, the output `c`;
/// `start <= end <= c`.
pub(crate) unsafe extern "C" fn global_max(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 2) };
    let (c, hw) = (p[0] as usize, p[1] as usize);
    let (x, y, _) = unsafe { io3(bufs, c * hw, c, 0) };
    for k in start as usize..end as usize {
        y[k] = x[k * hw..(k + 1) * hw]
            .iter()
            .fold(
                f32::NEG_INFINITY,
                |m, &v| if v.is_nan() || v > m { v } else { m },
            );
    }
}

/// Padding of channels `start..end` of a `[c, h, w]` image ([`convc_ir::PadOp::plane`]).
/// `params`: `[c, h, w, top, bottom, left, right, mode (0 constant, 1 reflect, 2 edge),
/// value bits]`.
///
/// # Safety
/// `params` points to 9 values; the input holds `c * h * w` floats, the output
/// `c * (h + top + bottom) * (w + left + right)`; `start <= end <= c`.
pub(crate) unsafe extern "C" fn pad(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 9) };
    let u = |i: usize| p[i] as usize;
    let (c, h, w) = (u(0), u(1), u(2));
    let op = convc_ir::PadOp {
        pads: [u(3), u(4), u(5), u(6)],
        mode: match p[7] {
            1 => convc_ir::PadMode::Reflect,
            2 => convc_ir::PadMode::Edge,
            _ => convc_ir::PadMode::Constant,
        },
        value: f32::from_bits(p[8] as u32),
    };
    let (oh, ow) = (h + u(3) + u(4), w + u(5) + u(6));
    let (x, y, _) = unsafe { io3(bufs, c * h * w, c * oh * ow, 0) };
    for k in start as usize..end as usize {
        op.plane(
            &x[k * h * w..(k + 1) * h * w],
            h,
            w,
            &mut y[k * oh * ow..(k + 1) * oh * ow],
        );
    }
}

/// Upsampling of channels `start..end` of a `[c, h, w]` image ([`convc_ir::Upsample::plane`]).
/// `params`: `[c, h, w, sh, sw, mode (0 nearest, 1 bilinear), coords (0 half_pixel,
/// 1 asymmetric, 2 align_corners)]`.
///
/// # Safety
/// `params` points to 7 values; the input holds `c * h * w` floats, the output
/// `c * h * sh * w * sw`; `start <= end <= c`.
pub(crate) unsafe extern "C" fn upsample(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 7) };
    let u = |i: usize| p[i] as usize;
    let (c, h, w) = (u(0), u(1), u(2));
    let op = convc_ir::Upsample {
        scale: [u(3), u(4)],
        mode: if p[5] == 1 {
            convc_ir::UpMode::Bilinear
        } else {
            convc_ir::UpMode::Nearest
        },
        coords: match p[6] {
            1 => convc_ir::Coords::Asymmetric,
            2 => convc_ir::Coords::AlignCorners,
            _ => convc_ir::Coords::HalfPixel,
        },
    };
    let (oh, ow) = (h * u(3), w * u(4));
    let (x, y, _) = unsafe { io3(bufs, c * h * w, c * oh * ow, 0) };
    for k in start as usize..end as usize {
        op.plane(
            &x[k * h * w..(k + 1) * h * w],
            h,
            w,
            &mut y[k * oh * ow..(k + 1) * oh * ow],
        );
    }
}

/// Output channels `start..end` of a transposed convolution of a `[c, h, w]` image
/// ([`convc_ir::TransposeGeom::channel`]). `params`: `[c, h, w, out, kh, kw, sh, sw, dh, dw,
/// top, bottom, left, right, groups, oh, ow]`; `SLOT_W`: the weights
/// `[c, out/groups, kh, kw]` then `out` biases.
///
/// # Safety
/// `params` points to 17 values describing a valid layer; the input holds `c * h * w`
/// floats, the output `out * oh * ow`, the parameters as said; `start <= end <= out`.
pub(crate) unsafe extern "C" fn conv_transpose(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 17) };
    let u = |i: usize| p[i] as usize;
    let (c, h, w) = (u(0), u(1), u(2));
    let g = convc_ir::TransposeGeom {
        out: u(3),
        kernel: [u(4), u(5)],
        stride: [u(6), u(7)],
        dilation: [u(8), u(9)],
        pads: [u(10), u(11), u(12), u(13)],
        output_padding: [0, 0],
        groups: u(14),
    };
    let (oh, ow) = (u(15), u(16));
    let nw = c * (g.out / g.groups) * g.kernel[0] * g.kernel[1];
    let (x, y, wb) = unsafe { io3(bufs, c * h * w, g.out * oh * ow, nw + g.out) };
    let (wt, bias) = wb.split_at(nw);
    for oc in start as usize..end as usize {
        g.channel(
            x,
            [c, h, w],
            wt,
            bias[oc],
            oc,
            &mut y[oc * oh * ow..(oc + 1) * oh * ow],
            [oh, ow],
        );
    }
}
