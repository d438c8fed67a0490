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
    /// Elementwise sum of two tensors.
    Add,
    /// Concatenation along channels.
    Concat,
    /// Max or average pooling.
    Pool(Pool),
    /// Mean over H and W: `[C, 1, 1]`.
    GlobalAvgPool,
    /// Softmax over the channels of each pixel: `exp(x_c - max) / sum exp(x_k - max)`.
    Softmax,
    /// Local response normalisation across channels.
    Lrn(Lrn),
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
            Op::Softmax => "softmax",
            Op::Lrn(_) => "lrn",
            Op::Shuffle { .. } => "shuffle",
        }
    }
}
