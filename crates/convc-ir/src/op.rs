//! Ops and their typed attributes.

use std::sync::Arc;

use convc_tensor::Tensor;

/// Where a parameter tensor came from (shown by `check` and the dumps).
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `file("path")` or `file("path", "name")`.
    File {
        /// The path as written (relative to the `.conv` file).
        path: String,
        /// The tensor name inside a safetensors file.
        name: Option<String>,
    },
    /// `random(seed=N)`, or an omitted source (then `implicit` is true).
    Random {
        /// The seed.
        seed: u64,
        /// True when the source was omitted and the seed derived from the layer's name.
        implicit: bool,
    },
    /// A literal list.
    Literal,
    /// A built-in filter such as `gaussian(sigma=1.5)` or `sobel_x`.
    Builtin(String),
    /// Computed by a pass (e.g. `"fold-batchnorm"`, `"decompose rank 1"`).
    Derived(String),
}

impl Source {
    /// True for random weights.
    pub fn is_random(&self) -> bool {
        matches!(self, Source::Random { .. })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File { path, name: None } => write!(f, "file({path:?})"),
            Source::File {
                path,
                name: Some(n),
            } => write!(f, "file({path:?}, {n:?})"),
            Source::Random { seed, .. } => write!(f, "random(seed={seed})"),
            Source::Literal => f.write_str("literal"),
            Source::Builtin(s) => f.write_str(s),
            Source::Derived(s) => write!(f, "derived({s})"),
        }
    }
}

/// A parameter tensor, shared (not copied) between graphs and passes.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The values.
    pub data: Arc<Tensor>,
    /// Where they came from.
    pub source: Source,
}

impl Param {
    /// A parameter from a tensor and its source.
    pub fn new(data: Tensor, source: Source) -> Param {
        Param {
            data: Arc::new(data),
            source,
        }
    }
}

/// Padding of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pad {
    /// ONNX `SAME_UPPER`: output `ceil(H/stride)`, odd padding element at the bottom/right.
    Same,
    /// Explicit `[top, bottom, left, right]`.
    Explicit([usize; 4]),
}

impl Pad {
    /// `[top, bottom, left, right]` for an input of `h x w`.
    pub fn resolve(
        &self,
        h: usize,
        w: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> [usize; 4] {
        match *self {
            Pad::Explicit(p) => p,
            Pad::Same => {
                let (t, b) = same_split(h, kernel[0], stride[0], dilation[0]);
                let (l, r) = same_split(w, kernel[1], stride[1], dilation[1]);
                [t, b, l, r]
            }
        }
    }
}

/// `SAME_UPPER` padding (before, after) on one axis.
pub fn same_split(n: usize, k: usize, s: usize, d: usize) -> (usize, usize) {
    let out = n.div_ceil(s.max(1));
    let need = (out.saturating_sub(1))
        .saturating_mul(s)
        .saturating_add(d.saturating_mul(k.saturating_sub(1)))
        .saturating_add(1);
    let total = need.saturating_sub(n);
    (total / 2, total - total / 2)
}

/// A 2-D convolution (cross-correlation). `depthwise` and `pointwise` lower to this.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Output channels.
    pub out: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`.
    pub stride: [usize; 2],
    /// `[DH, DW]`.
    pub dilation: [usize; 2],
    /// Padding.
    pub pad: Pad,
    /// Groups: input and output channels are split into this many independent convs.
    pub groups: usize,
    /// Weights `[out, C/groups, KH, KW]`.
    pub weight: Param,
    /// Bias `[out]`.
    pub bias: Option<Param>,
}

/// Per-channel batch normalisation (inference form).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    /// Running mean `[C]`.
    pub mean: Param,
    /// Running variance `[C]`.
    pub var: Param,
    /// Scale `[C]`.
    pub gamma: Param,
    /// Shift `[C]`.
    pub beta: Param,
    /// Added to the variance.
    pub eps: f32,
}

/// An elementwise function of one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f32,
    },
    /// `min(max(x, min), max)`.
    Clamp {
        /// Lower bound (may be `-inf`).
        min: f32,
        /// Upper bound (may be `inf`).
        max: f32,
    },
    /// `clamp(alpha * x + beta, 0, 1)` (ONNX `HardSigmoid`).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * clamp(x / 6 + 0.5, 0, 1)` (ONNX `HardSwish`).
    HardSwish,
}

/// `clamp(v, 0, 1)` with NaN passed through (as [`Unary::Clamp`]).
fn unit_clamp(v: f32) -> f32 {
    Unary::Clamp { min: 0.0, max: 1.0 }.apply(v)
}

impl Unary {
    /// Applies the function to one value (f32 semantics, NaN propagates).
    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Unary::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Unary::Relu6 => Unary::Clamp { min: 0.0, max: 6.0 }.apply(x),
            Unary::Sigmoid => (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
            Unary::Tanh => x.tanh(),
            Unary::LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Unary::Clamp { min, max } => {
                if x < min {
                    min
                } else if x > max {
                    max
                } else {
                    x
                }
            }
            Unary::HardSigmoid { alpha, beta } => unit_clamp(alpha * x + beta),
            Unary::HardSwish => x * unit_clamp(x * (1.0 / 6.0) + 0.5),
        }
    }
    /// The op name as written in `.conv`.
    pub fn name(&self) -> &'static str {
        match self {
            Unary::Relu => "relu",
            Unary::Relu6 => "relu6",
            Unary::Sigmoid => "sigmoid",
            Unary::Tanh => "tanh",
            Unary::LeakyRelu { .. } => "leaky_relu",
            Unary::Clamp { .. } => "clamp",
            Unary::HardSigmoid { .. } => "hardsigmoid",
            Unary::HardSwish => "hardswish",
        }
    }
}

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over in-bounds elements.
    Max,
    /// Mean over in-bounds elements.
    Avg,
}

/// A pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`.
    pub stride: [usize; 2],
    /// Padding (positions outside the input never count).
    pub pad: Pad,
}

/// What a node computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The network input number `index` (in declaration order).
    Input {
        /// Position among the inputs.
        index: usize,
    },
    /// Convolution.
    Conv(Conv),
    /// Batch normalisation.
    BatchNorm(BatchNorm),
    /// Elementwise function.
    Unary(Unary),
    /// Elementwise sum of two tensors of equal shapes, or of a `[C, H, W]` tensor and a
    /// `[C, 1, 1]` one (broadcast over the plane), in either order. Only an add of equal
    /// shapes is fused as a residual add ([`crate::fusion`]).
    Add,
    /// Elementwise product of two tensors of equal shapes, or of a `[C, H, W]` tensor and a
    /// `[C, 1, 1]` one (broadcast over the plane: squeeze-excitation), in either order.
    Mul,
    /// Parametric ReLU: `x` if `x >= 0` else `slope[c] * x`; the slope is `[C]` (per
    /// channel) or `[1]` (one for every channel).
    PRelu {
        /// The slopes, `[C]` or `[1]`.
        slope: Param,
    },
    /// Concatenation along channels.
    Concat,
    /// Max or average pooling.
    Pool(Pool),
    /// Mean over H and W: `[C, 1, 1]`.
    GlobalAvgPool,
    /// Maximum over H and W: `[C, 1, 1]` (NaN propagates).
    GlobalMaxPool,
    /// Padding of the plane (constant, reflected or edge values).
    Pad(PadOp),
    /// Upsampling by whole factors (nearest or bilinear).
    Upsample(Upsample),
    /// Transposed convolution (the gradient of a conv; ONNX `ConvTranspose`).
    ConvTranspose(ConvTranspose),
    /// Softmax over the channels of each pixel: `exp(x_c - max) / sum exp(x_k - max)`.
    Softmax,
    /// Local response normalisation across channels.
    Lrn(Lrn),
    /// Channels `start..end` of the operand (`.conv`'s `slice`; ONNX `Slice` and `Split` on
    /// the channel axis).
    Slice {
        /// The first channel kept.
        start: usize,
        /// One past the last channel kept (`start < end <= C`).
        end: usize,
    },
    /// Channel shuffle (ShuffleNet): the channels as `[groups, C/groups]`, transposed;
    /// output channel `j*groups + i` is input channel `i*(C/groups) + j`.
    Shuffle {
        /// Number of groups (divides C).
        groups: usize,
    },
}

/// Local response normalisation across channels (ONNX `LRN`, AlexNet's):
/// `x / (bias + alpha/size * sum of x^2 over channels c-(size-1)/2 ..= c+size/2)^beta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    /// Channels in the window (at least 1).
    pub size: usize,
    /// Scale of the sum of squares (divided by `size`).
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Added before the power.
    pub bias: f32,
}

impl Op {
    /// A short name for printing (`conv`, `depthwise`-style convs print as `conv` with `g=`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Conv(_) => "conv",
            Op::BatchNorm(_) => "batchnorm",
            Op::Unary(u) => u.name(),
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "maxpool",
                PoolKind::Avg => "avgpool",
            },
            Op::GlobalAvgPool => "global_avgpool",
            Op::GlobalMaxPool => "global_maxpool",
            Op::Pad(_) => "pad",
            Op::Upsample(_) => "upsample",
            Op::ConvTranspose(_) => "conv_transpose",
            Op::Mul => "mul",
            Op::PRelu { .. } => "prelu",
            Op::Softmax => "softmax",
            Op::Lrn(_) => "lrn",
            Op::Shuffle { .. } => "shuffle",
            Op::Slice { .. } => "slice",
        }
    }
}

/// How `pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// A constant value.
    Constant,
    /// The values mirrored at the edge, the edge itself not repeated (NumPy's and ONNX's
    /// `reflect`): each side's padding must be smaller than the size on its axis.
    Reflect,
    /// The edge value repeated.
    Edge,
}

impl PadMode {
    /// The name in `.conv` (and ONNX's `mode`).
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
        }
    }

    /// The input index that padded position `i` (relative to the input's first element; it
    /// may be negative or past the end) reads on an axis of `n` elements; `None` for the
    /// constant. Reflection past a whole mirror image is clamped (the lowering refuses it).
    pub fn source(self, i: i64, n: usize) -> Option<usize> {
        let last = n as i64 - 1;
        if (0..=last).contains(&i) {
            return Some(i as usize);
        }
        match self {
            PadMode::Constant => None,
            PadMode::Edge => Some(i.clamp(0, last.max(0)) as usize),
            PadMode::Reflect => {
                let r = if i < 0 { -i } else { 2 * last - i };
                Some(r.clamp(0, last.max(0)) as usize)
            }
        }
    }
}

/// Padding of the plane by `pad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PadOp {
    /// `[top, bottom, left, right]`.
    pub pads: [usize; 4],
    /// How the border is filled.
    pub mode: PadMode,
    /// The constant of [`PadMode::Constant`] (finite).
    pub value: f32,
}

/// Interpolation of `upsample`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpMode {
    /// Output `i` reads input `floor(i / scale)`.
    Nearest,
    /// Linear on each axis between the two nearest inputs, at the coordinate the
    /// [`Coords`] give, clamped to the input.
    Bilinear,
}

/// Where an output coordinate falls in the input for bilinear upsampling (ONNX
/// `coordinate_transformation_mode`), output `i` of `m = scale * n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coords {
    /// `(i + 0.5) / scale - 0.5` (PyTorch's `align_corners=False`).
    HalfPixel,
    /// `i / scale`.
    Asymmetric,
    /// `i * (n - 1) / (m - 1)` (0 when `m = 1`; PyTorch's `align_corners=True`).
    AlignCorners,
}

impl Coords {
    /// The name in `.conv` (and ONNX's).
    pub fn name(self) -> &'static str {
        match self {
            Coords::HalfPixel => "half_pixel",
            Coords::Asymmetric => "asymmetric",
            Coords::AlignCorners => "align_corners",
        }
    }
}

/// Upsampling by whole factors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample {
    /// `[SH, SW]`, each at least 1.
    pub scale: [usize; 2],
    /// Nearest or bilinear.
    pub mode: UpMode,
    /// The coordinate transformation of bilinear upsampling.
    pub coords: Coords,
}

impl Upsample {
    /// Per output index on an axis of `n` inputs upsampled by `scale`: the two inputs it
    /// interpolates and the weight of the second, `(i0, i1, w1)`; the value is
    /// `x[i0] * (1 - w1) + x[i1] * w1` (nearest: `w1 = 0`).
    pub fn taps(&self, n: usize, scale: usize) -> Vec<(usize, usize, f64)> {
        let m = n * scale;
        let last = n.saturating_sub(1) as f64;
        (0..m)
            .map(|i| match self.mode {
                UpMode::Nearest => (i / scale, i / scale, 0.0),
                UpMode::Bilinear => {
                    let s = scale as f64;
                    let x = match self.coords {
                        Coords::HalfPixel => (i as f64 + 0.5) / s - 0.5,
                        Coords::Asymmetric => i as f64 / s,
                        Coords::AlignCorners if m > 1 => i as f64 * last / (m - 1) as f64,
                        Coords::AlignCorners => 0.0,
                    };
                    let x = x.clamp(0.0, last);
                    let i0 = x.floor() as usize;
                    let i1 = (i0 + 1).min(n.saturating_sub(1));
                    (i0, i1, x - i0 as f64)
                }
            })
            .collect()
    }

    /// Upsamples one `[h, w]` plane into `out` (`[h * sh, w * sw]`), in f64.
    pub fn plane(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let [sh, sw] = self.scale;
        let (ty, tx) = (self.taps(h, sh), self.taps(w, sw));
        let ow = w * sw;
        if self.mode == UpMode::Nearest {
            // A copy of the value (what the f64 path below computes): an output row is its
            // source row's values in tap order, and the next output rows of the same source
            // row are copies of it (a 64x80x80 plane took 5.6 ms through the f64 path).
            for (oy, &(y0, ..)) in ty.iter().enumerate() {
                if oy > 0 && ty[oy - 1].0 == y0 {
                    out.copy_within((oy - 1) * ow..oy * ow, oy * ow);
                    continue;
                }
                let row = &x[y0 * w..(y0 + 1) * w];
                for (o, &(x0, ..)) in out[oy * ow..(oy + 1) * ow].iter_mut().zip(&tx) {
                    *o = row[x0];
                }
            }
            return;
        }
        // `t == 0` reads one input only, so an infinity stays one (not `inf * 0`).
        let lerp = |a: f64, b: f64, t: f64| if t == 0.0 { a } else { a * (1.0 - t) + b * t };
        for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
            let (r0, r1) = (&x[y0 * w..(y0 + 1) * w], &x[y1 * w..(y1 + 1) * w]);
            for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
                let top = lerp(f64::from(r0[x0]), f64::from(r0[x1]), fx);
                let v = if fy == 0.0 {
                    top
                } else {
                    lerp(top, lerp(f64::from(r1[x0]), f64::from(r1[x1]), fx), fy)
                };
                out[oy * ow + ox] = v as f32;
            }
        }
    }
}

impl PadOp {
    /// Pads one `[h, w]` plane into `out` (`[h + top + bottom, w + left + right]`).
    pub fn plane(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let [t, b, l, r] = self.pads;
        let ow = w + l + r;
        for oy in 0..h + t + b {
            let sy = self.mode.source(oy as i64 - t as i64, h);
            for ox in 0..ow {
                let sx = self.mode.source(ox as i64 - l as i64, w);
                out[oy * ow + ox] = match (sy, sx) {
                    (Some(y), Some(xx)) => x[y * w + xx],
                    _ => self.value,
                };
            }
        }
    }
}

/// The geometry of a transposed convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeGeom {
    /// Output channels.
    pub out: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`: the input is spread this far apart.
    pub stride: [usize; 2],
    /// `[DH, DW]`.
    pub dilation: [usize; 2],
    /// `[top, bottom, left, right]` removed from the full output.
    pub pads: [usize; 4],
    /// Extra rows and columns added at the bottom and right (each below its stride or
    /// dilation).
    pub output_padding: [usize; 2],
    /// Groups: input and output channels split into this many independent parts.
    pub groups: usize,
}

impl TransposeGeom {
    /// The output size on an axis (0: height, 1: width) of `n` inputs, when positive:
    /// `(n - 1) * s - before - after + d * (k - 1) + output_padding + 1`.
    pub fn out_size(&self, n: usize, axis: usize) -> Option<usize> {
        let (s, d, k) = (self.stride[axis], self.dilation[axis], self.kernel[axis]);
        let (b, a) = (self.pads[2 * axis], self.pads[2 * axis + 1]);
        let full = (n.checked_sub(1)?)
            .checked_mul(s)?
            .checked_add(d.checked_mul(k.checked_sub(1)?)?)?
            .checked_add(self.output_padding[axis] + 1)?;
        full.checked_sub(b + a).filter(|&v| v > 0)
    }

    /// Output channel `oc` of one image `x` (`[c, h, w]`) into `out` (`[oh, ow]`), with
    /// weights `w` (`[c, out/groups, KH, KW]`) and the channel's bias: each input value
    /// scattered over its window, summed in f64 in a fixed order (input channel, tap, row,
    /// column), rounded once.
    pub fn channel(
        &self,
        x: &[f32],
        [c, h, wd]: [usize; 3],
        w: &[f32],
        bias: f32,
        oc: usize,
        out: &mut [f32],
        [oh, ow]: [usize; 2],
    ) {
        let og = self.out / self.groups.max(1);
        let cg = c / self.groups.max(1);
        let (g, o) = (oc / og.max(1), oc % og.max(1));
        let [kh, kw] = self.kernel;
        let mut acc = vec![f64::from(bias); oh * ow];
        for ic in g * cg..(g + 1) * cg {
            let plane = &x[ic * h * wd..(ic + 1) * h * wd];
            for ky in 0..kh {
                for kx in 0..kw {
                    let k = f64::from(w[((ic * og + o) * kh + ky) * kw + kx]);
                    let dy = (ky * self.dilation[0]) as i64 - self.pads[0] as i64;
                    let dx = (kx * self.dilation[1]) as i64 - self.pads[2] as i64;
                    for y in 0..h {
                        let oy = (y * self.stride[0]) as i64 + dy;
                        if oy < 0 || oy >= oh as i64 {
                            continue;
                        }
                        let row = &mut acc[oy as usize * ow..(oy as usize + 1) * ow];
                        for xx in 0..wd {
                            let ox = (xx * self.stride[1]) as i64 + dx;
                            if ox >= 0 && ox < ow as i64 {
                                row[ox as usize] += f64::from(plane[y * wd + xx]) * k;
                            }
                        }
                    }
                }
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a as f32;
        }
    }
}

/// A transposed convolution with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    /// Sizes, strides, padding, groups.
    pub geom: TransposeGeom,
    /// Weights `[C, out/groups, KH, KW]` (ONNX's and PyTorch's layout).
    pub weight: Param,
    /// Bias `[out]`.
    pub bias: Option<Param>,
}

#[cfg(test)]
mod upsample_tests {
    use super::{Coords, UpMode, Upsample};

    /// Nearest upsampling's row copies give `x[oy / sh][ox / sw]` at every scale, and NaN and
    /// infinities stay as they are.
    #[test]
    fn nearest_is_the_source_value() {
        for (h, w, sh, sw) in [
            (3, 4, 2, 2),
            (2, 5, 1, 3),
            (4, 1, 3, 1),
            (1, 1, 1, 1),
            (5, 7, 4, 2),
        ] {
            let x: Vec<f32> = (0..h * w)
                .map(|i| match i % 5 {
                    3 => f32::INFINITY,
                    4 if i > 5 => f32::NAN,
                    _ => i as f32 * 0.5 - 3.0,
                })
                .collect();
            let up = Upsample {
                scale: [sh, sw],
                mode: UpMode::Nearest,
                coords: Coords::Asymmetric,
            };
            let (oh, ow) = (h * sh, w * sw);
            let mut out = vec![0f32; oh * ow];
            up.plane(&x, h, w, &mut out);
            for oy in 0..oh {
                for ox in 0..ow {
                    let (got, want) = (out[oy * ow + ox], x[(oy / sh) * w + ox / sw]);
                    assert!(
                        got.to_bits() == want.to_bits(),
                        "{h}x{w} by {sh}x{sw} at ({oy}, {ox}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
