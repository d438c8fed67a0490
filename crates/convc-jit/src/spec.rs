//! Kernel specifications: everything the code generator needs to emit one function, and the
//! key of the kernel cache. Weights and parameters are not part of a spec (they are passed
//! through the buffer table), so identical layers with different weights share one kernel.

use convc_ir::Unary;

/// Slot of the output buffer in the buffer table.
pub(crate) const SLOT_OUT: usize = 0;
/// Slot of the (padded) input buffer.
pub(crate) const SLOT_IN: usize = 1;
/// Slot of the packed weights of a convolution.
pub(crate) const SLOT_W: usize = 2;
/// First slot of the epilogue's parameters and residual operands.
pub(crate) const SLOT_EXTRA: usize = 3;

/// An activation with its constants as bit patterns (so specs can be hashed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Act {
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    Leaky(u32),
    Clamp(u32, u32),
}

impl Act {
    pub(crate) fn from_unary(u: Unary) -> Act {
        match u {
            Unary::Relu => Act::Relu,
            Unary::Relu6 => Act::Relu6,
            Unary::Sigmoid => Act::Sigmoid,
            Unary::Tanh => Act::Tanh,
            Unary::LeakyRelu { alpha } => Act::Leaky(alpha.to_bits()),
            Unary::Clamp { min, max } => Act::Clamp(min.to_bits(), max.to_bits()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Act::Relu => "relu",
            Act::Relu6 => "relu6",
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
            Act::Leaky(_) => "leaky",
            Act::Clamp(..) => "clamp",
        }
    }
}

/// One elementwise step of an epilogue, applied to a value in a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ep {
    /// `v = v * scale[c] + shift[c]` (or `v + shift[c]` without scale) with parameters in
    /// buffer `slot`: per channel `c`, `scale` broadcast to 4 floats at `32c`, `shift` at `32c + 16`.
    Affine { slot: usize, scale: bool },
    /// `v = v + r` where `r` is buffer `slot` at the position of `v` (same layout as the output).
    Add { slot: usize },
    /// An activation.
    Act(Act),
}

/// A convolution with a fused epilogue. The input is read from a buffer laid out as
/// `[C][rows][phase][wq]`: every row of the (zero-padded) input is split into `sw` phases of
/// `wq` elements (column `x` lives in phase `x % sw` at index `x / sw`), so that a stride
/// along the row becomes a contiguous read.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvSpec {
    pub groups: usize,
    /// Input channels per group.
    pub cg: usize,
    /// Output channels per group.
    pub og: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Floats between two rows of the input buffer (`sw * wq`).
    pub row_stride: usize,
    /// Floats between two channels of the input buffer.
    pub chan_stride: usize,
    /// Length of one phase of a row.
    pub wq: usize,
    /// Output channels per register block.
    pub ocb: usize,
    pub ep: Vec<Ep>,
    pub fma: bool,
    /// Work items in row-major order (`item = oy * blocks + block`: every block of a row
    /// before the next row, so the input rows stay in cache while the weights stream) rather
    /// than block-major (`item = block * oh + oy`: the block's weights stay in cache).
    pub row_major: bool,
}

impl ConvSpec {
    /// Register blocks per group.
    pub fn nb(&self) -> usize {
        self.og.div_ceil(self.ocb)
    }
    /// Work items: one per (group, block, output row).
    pub fn items(&self) -> usize {
        self.groups * self.nb() * self.oh
    }
    /// Taps of the reduction of one output value.
    pub fn taps(&self) -> usize {
        self.cg * self.kh * self.kw
    }
}

/// Vectors along the row per register block of `ocb` output channels: the accumulators
/// (`ocb * v`), the inputs (`v`, reused across the block), a weight and a temporary fit in the
/// 16 xmm registers.
pub(crate) fn vectors_for(ocb: usize) -> usize {
    match ocb {
        0 | 1 => 8,
        2 => 4,
        3 => 3,
        _ => 2,
    }
}

/// Floats per work item of an elementwise kernel (a chunk of one channel).
pub(crate) const ELT_CHUNK: usize = 4096;

/// An elementwise chain: `out = ep(in)`, per channel of `hw` values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EltSpec {
    pub c: usize,
    pub hw: usize,
    pub ep: Vec<Ep>,
}

impl EltSpec {
    pub fn chunks(&self) -> usize {
        self.hw.div_ceil(ELT_CHUNK).max(1)
    }
    pub fn items(&self) -> usize {
        self.c * self.chunks()
    }
}

/// Max or average pooling over in-bounds elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolSpec {
    pub max: bool,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
}

/// What one compiled function computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KernelSpec {
    Conv(ConvSpec),
    Elt(EltSpec),
    Pool(PoolSpec),
    Gap { c: usize, hw: usize },
}

impl KernelSpec {
    /// Work items the kernel's `[start, end)` range runs over.
    pub fn items(&self) -> usize {
        match self {
            KernelSpec::Conv(s) => s.items(),
            KernelSpec::Elt(s) => s.items(),
            KernelSpec::Pool(p) => p.c * p.oh,
            KernelSpec::Gap { c, .. } => *c,
        }
    }

    /// A readable name, e.g. `conv3x3s1_64x56x56_b6`.
    pub fn name(&self) -> String {
        let ep = |ep: &[Ep]| -> String {
            ep.iter()
                .map(|e| match e {
                    Ep::Affine { scale: true, .. } => "_affine".to_string(),
                    Ep::Affine { scale: false, .. } => "_bias".to_string(),
                    Ep::Add { .. } => "_add".to_string(),
                    Ep::Act(a) => format!("_{}", a.name()),
                })
                .collect()
        };
        match self {
            KernelSpec::Conv(s) => format!(
                "conv{}x{}s{}x{}d{}x{}g{}_{}x{}x{}_b{}{}{}",
                s.kh,
                s.kw,
                s.sh,
                s.sw,
                s.dh,
                s.dw,
                s.groups,
                s.og * s.groups,
                s.oh,
                s.ow,
                s.ocb,
                if s.row_major { "_rows" } else { "" },
                ep(&s.ep)
            ),
            KernelSpec::Elt(s) => {
                let e = ep(&s.ep);
                format!(
                    "elt_{}x{}{}",
                    s.c,
                    s.hw,
                    if e.is_empty() { "_copy".to_string() } else { e }
                )
            }
            KernelSpec::Pool(p) => format!(
                "{}pool{}x{}s{}x{}_{}x{}x{}",
                if p.max { "max" } else { "avg" },
                p.kh,
                p.kw,
                p.sh,
                p.sw,
                p.c,
                p.oh,
                p.ow
            ),
            KernelSpec::Gap { c, hw } => format!("gap_{c}x{hw}"),
        }
    }
}
