//! Kernel specifications: everything the code generator needs to emit one function, and the
//! key of the kernel cache. Weights and parameters are not part of a spec (they are passed
//! through the buffer table), so identical layers with different weights share one kernel.

use convc_ir::Unary;

use crate::wide::Isa;

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
    HardSigmoid(u32, u32),
    HardSwish,
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
            Unary::HardSigmoid { alpha, beta } => Act::HardSigmoid(alpha.to_bits(), beta.to_bits()),
            Unary::HardSwish => Act::HardSwish,
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
            Act::HardSigmoid(..) => "hardsigmoid",
            Act::HardSwish => "hardswish",
        }
    }

    /// True for the activations the microkernels' and Winograd's epilogues cannot apply
    /// (those keep Cranelift's pass over the rows, or a direct convolution).
    pub(crate) fn cranelift_only(&self) -> bool {
        matches!(
            self,
            Act::Sigmoid | Act::Tanh | Act::HardSigmoid(..) | Act::HardSwish
        )
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
    /// Output rows per work item: 1, or more for short rows, whose vectors are then packed
    /// across rows (17 columns = 5 vectors, the last overlapping: 2 rows = 5 blocks of 2).
    pub rows: usize,
    /// Copies of each weight in the packed weights: with FMA, one per vector of the widest
    /// block row (every multiply-add broadcasts its own copy), else 1.
    pub wdup: usize,
    /// Work items in row-major order (`item = oy * blocks + block`: every block of a row
    /// before the next row, so the input rows stay in cache while the weights stream) rather
    /// than block-major (`item = block * oh + oy`: the block's weights stay in cache).
    pub row_major: bool,
    /// Floats between two channels and two rows of the output (`oh * ow` and `ow`, or a band
    /// buffer's layout when a depthwise conv feeds a pointwise one through it; see
    /// `plan::Band`). Residual operands are read at the output's offsets, so a kernel with a
    /// residual add always has the standard layout.
    pub out_cs: usize,
    pub out_rs: usize,
    /// Taps per chunk of the reduction (all of them, or fewer for a long one): each chunk runs
    /// over the whole output row before the next, so one chunk's packed weights stay in L1
    /// while the row's columns stream (a 64 -> 64 3x3 conv has 576 taps, 27 KB of weights per
    /// block; a 128 -> 128 one 55 KB). Chunks after the first start from the partial sums
    /// stored in the output. See `plan::CHUNK_BYTES`.
    pub chunk_taps: usize,
    /// Column tiles per output row (1: none) of `xtile_cols` columns each (the last takes the
    /// rest). With row-major items and a chunked reduction, items are (row, tile, block): the
    /// blocks of one tile follow each other, so the tile's input lines stay in L1 while the
    /// blocks' weights stream (a row of a 224-wide, 64-channel layer is 173 KB of input).
    pub xtiles: usize,
    pub xtile_cols: usize,
    /// With rows packed and a chunked reduction: the buffer-table slot of the partial sums in
    /// the thread's scratch ([`ConvSpec::part_len`] floats: per vector position of an item and
    /// channel of a block, 4), since packed positions overlap in the output (each row's last
    /// vector). 0: none (partial sums go to the output).
    pub part_slot: usize,
    /// The wide-vector microkernel that runs the reduction (`crate::wide`), or `None` for
    /// Cranelift's own f32x4 code. With one, `wdup` is 1 and `rows` is 1.
    pub wide: Option<Isa>,
    /// With a microkernel on a padded stride-1 input of `[C][H][W]` layout: the padded row
    /// length (`wq`), and the item's `rows` rows run as one flat row of
    /// `(rows - 1) * flat_pad + ow` positions (the padding columns computed and dropped), into
    /// the thread's scratch at `part_slot` (`ocb` channels `flat_len()` apart); the epilogue
    /// then copies the valid columns to the output. 0: off.
    pub flat_pad: usize,
    /// With a microkernel on a depthwise 3x3 conv (one channel per group, vertical stride 1
    /// or 2, no vertical dilation): the output rows one call computes, 2 or 4, sharing the
    /// input rows between them (`rows` is the same); 0: off.
    pub dw_rows: usize,
    /// With a microkernel on a depthwise KxK conv of a small plane (one channel per group,
    /// the same stride 1 or 2 on both axes, no vertical dilation; `crate::wide::dw_plane_fits`):
    /// one call computes the channel's whole plane (`rows` is `oh`) from the unpadded input,
    /// whose plane and padding this holds; `None`: off.
    pub dw_plane: Option<PlaneInput>,
    /// With `dw_rows`: the input is a ring of this many rows a channel (a band pair's tile,
    /// [`crate::plan::Pre::ring`]): padded row `r` sits in row `r % in_ring` of its channel,
    /// and a window that crosses the ring's end goes on at its start. 0: a plain input.
    pub in_ring: usize,
}

/// The unpadded input plane of a whole-plane depthwise kernel ([`ConvSpec::dw_plane`]): its
/// rows and columns, and the padding above and left of it (below and right follow from the
/// output's size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PlaneInput {
    pub h: usize,
    pub w: usize,
    pub pt: usize,
    pub pl: usize,
}

impl Act {
    /// Whether the wide kernels apply this activation themselves (`crate::wide::EpStep`);
    /// the others run after them, in Cranelift's loops over the output.
    pub(crate) fn in_wide_kernels(self) -> bool {
        match self {
            Act::Relu | Act::Relu6 | Act::Clamp(..) | Act::Leaky(_) => true,
            Act::Sigmoid | Act::Tanh | Act::HardSigmoid(..) | Act::HardSwish => false,
        }
    }
}

impl ConvSpec {
    /// Whether the wide kernels apply the whole epilogue themselves ([`Act::in_wide_kernels`]).
    pub fn ep_in_wide_kernels(&self) -> bool {
        self.ep.iter().all(|e| match e {
            Ep::Act(a) => a.in_wide_kernels(),
            Ep::Affine { .. } | Ep::Add { .. } => true,
        })
    }
    /// Bytes of packed weights per tap of a block of `ocb` channels: the offset to the next
    /// tap's input (8 bytes), then `wdup` copies of each channel's weight.
    pub fn tap_bytes(&self, ocb: usize) -> usize {
        crate::packed::tap_bytes(ocb, self.wdup)
    }
    /// Register blocks per group.
    pub fn nb(&self) -> usize {
        self.og.div_ceil(self.ocb)
    }
    /// Groups of `rows` output rows.
    pub fn row_groups(&self) -> usize {
        self.oh.div_ceil(self.rows)
    }
    /// Work items: one per (group, block, group of output rows, column tile).
    pub fn items(&self) -> usize {
        self.groups * self.nb() * self.row_groups() * self.xtiles.max(1)
    }
    /// Copies of each weight in the packed weights (`wdup` field).
    pub fn wdup(&self) -> usize {
        self.wdup
    }
    /// Taps of the reduction of one output value.
    pub fn taps(&self) -> usize {
        self.cg * self.kh * self.kw
    }
    /// Floats of partial sums a packed-rows item needs ([`ConvSpec::part_slot`]).
    pub fn part_len(&self) -> usize {
        if self.flat_pad > 0 {
            return self.ocb * self.flat_len();
        }
        self.rows * self.ow.div_ceil(4) * self.ocb * 4
    }
    /// Positions of an item's flat row ([`ConvSpec::flat_pad`]).
    pub fn flat_len(&self) -> usize {
        (self.rows - 1) * self.flat_pad + self.ow
    }
    /// Chunks of the reduction ([`ConvSpec::chunk_taps`]).
    pub fn chunks(&self) -> usize {
        self.taps().div_ceil(self.chunk_taps.max(1))
    }
    /// First tap and tap count of chunk `i`.
    pub fn chunk(&self, i: usize) -> (usize, usize) {
        let t0 = i * self.chunk_taps;
        (t0, self.chunk_taps.min(self.taps() - t0))
    }
    /// Byte offset of tap `t`'s input from the first tap's ([`tap_offsets`]).
    pub fn tap_offset(&self, t: usize) -> i64 {
        let per_c = self.kh * self.kw;
        let (c, r) = (t / per_c, t % per_c);
        let (i, j) = (r / self.kw, r % self.kw);
        let x = j * self.dw;
        let off = c * self.chan_stride
            + i * self.dh * self.row_stride
            + (x % self.sw) * self.wq
            + x / self.sw;
        (off * 4) as i64
    }
}

/// Byte offset of every tap (c, kh, kw) of a convolution in its input buffer, relative to the
/// first tap (rows split into `sw` phases of `wq`; see [`ConvSpec`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn tap_offsets(
    cg: usize,
    kh: usize,
    kw: usize,
    dh: usize,
    dw: usize,
    sw: usize,
    wq: usize,
    row_stride: usize,
    chan_stride: usize,
) -> Vec<i64> {
    let mut t = Vec::with_capacity(cg * kh * kw);
    for c in 0..cg {
        for i in 0..kh {
            for j in 0..kw {
                let x = j * dw;
                let off = c * chan_stride + i * dh * row_stride + (x % sw) * wq + x / sw;
                t.push((off * 4) as i64);
            }
        }
    }
    t
}

/// Vectors along the row per register block of `ocb` output channels, so that everything the
/// reduction keeps live fits the 16 xmm registers.
///
/// With FMA ([`tap_unroll`] taps per loop iteration): the accumulators (`ocb * v`), the inputs
/// of the iteration's taps (`u * v`, shared by the block's channels; none with one channel,
/// where each input sinks into its FMA as a memory operand) and one freshly broadcast weight:
/// 5-10 channels take one vector and 3 taps. Without: the accumulators, `v` inputs, a weight
/// and a product (one tap per iteration).
pub(crate) fn vectors_for(ocb: usize, fma: bool) -> usize {
    if fma {
        match ocb {
            0 | 1 => 8,
            2 => 3,
            3 | 4 => 2,
            _ => 1,
        }
    } else {
        match ocb {
            0 | 1 => 8,
            2 => 4,
            3 => 3,
            _ => 2,
        }
    }
}

/// Copies of each weight in the packed weights: with FMA and blocks of several channels, one
/// per vector of the widest block row (every multiply-add broadcasts its own copy; `smallest`
/// is the narrowest block, which has the most vectors); else 1 (one channel per block: one
/// broadcast per tap, copied into each FMA by a register move, while the inputs sink into the
/// FMAs as memory operands: half the loads).
/// With FMA and blocks of 5 or more: 1 (a smaller last block shares loads).
pub(crate) fn weight_dup(ocb: usize, smallest: usize, fma: bool) -> usize {
    if fma && ocb >= 5 {
        1
    } else if fma && ocb > 1 {
        block_vectors(ocb, smallest, true)
    } else {
        1
    }
}

/// Largest register block (output channels) for a kernel: 10 x 1 vector with FMA (10
/// accumulators, the 3 inputs of 3 taps, a weight), 6 x 2 without.
pub(crate) fn max_ocb(fma: bool) -> usize {
    if fma { 10 } else { 6 }
}

/// Output channels per register block for `og` channels per group: as even as blocks of at
/// most [`max_ocb`] allow (the last block takes the rest).
pub(crate) fn block_ocb(og: usize, fma: bool) -> usize {
    blocks_of_at_most(og, max_ocb(fma))
}

/// Channels per block for `og` channels in blocks of at most `max`, as even as they allow.
pub(crate) fn blocks_of_at_most(og: usize, max: usize) -> usize {
    og.div_ceil(og.div_ceil(max.max(1)).max(1)).max(1)
}

/// Vectors of a block of `ocb` channels in a kernel whose blocks have `main` channels: with
/// FMA, one for blocks of 5 or more; a last block of 1-4 channels takes the vectors its size
/// needs (4 accumulators leave the FMA pipes half idle) while the weights stay packed once,
/// its vectors sharing each load (see `weight_dup`). A 64-channel layer: 6 blocks of 10 and
/// one of 4 (against 8 blocks of 8, resnet_block 57 vs 55 GFLOP/s; the last block with 2
/// vectors instead of 1: 8.6 -> 8.2 ms).
pub(crate) fn block_vectors(main: usize, ocb: usize, fma: bool) -> usize {
    if fma && main >= 5 && ocb >= 5 {
        1
    } else {
        vectors_for(ocb, fma)
    }
}

/// Taps per iteration of a convolution's reduction loop with FMA (1 without), for blocks of
/// `v` vectors: 3 with one vector (10 accumulators + 3 inputs + a weight), else 2. Measured,
/// one thread (GFLOP/s, resnet_block / vgg_head conv2_2 / inception 1x7 / mobilenet expand;
/// seed_3to8 ms): 5 x 2 vectors, 2 taps: 57 / 54 / 42 / 46, 0.151; 10 x 1, 3 taps: 57 / 58 /
/// 49 / 52, 0.135; 11 x 1: 57 / 49 / 47 / 49; 12 x 1: 60 / 47 / 47 / 49; 10 x 1, 4 taps: 53 /
/// 52 / 45 / 46 (spills); 8 x 1, 3 taps: 56 / 53 / 46 / 50.
pub(crate) fn tap_unroll(v: usize) -> usize {
    if v == 1 { 3 } else { 2 }
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

/// A vertical convolution `a` (KHx1, one input channel per output channel, stride 1 along
/// the row, no horizontal padding) feeding a horizontal one `b` (1xKW, no vertical padding,
/// stride 1 along the row), fused through a row buffer per thread: per output row of `b`, the
/// rows of `a` it reads are computed into the buffer (zero borders are `b`'s padding), then
/// `b`'s row from it. `a`'s output never goes to memory and neither input is copied for
/// padding: `a`'s border rows run over their valid taps only (per-row table).
///
/// Slots: 0 the output, 1 `a`'s input, 2 `b`'s weights, 3 the row buffer, 4 `a`'s weights,
/// then the epilogues' (`a.ep` and `b.ep` hold their own slot numbers).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SepSpec {
    /// The vertical conv over the input (`groups` = input channels, `cg` = 1, `ocb` = 1).
    pub a: ConvSpec,
    /// `a`'s top padding and input height.
    pub pt: usize,
    pub h: usize,
    /// The horizontal conv over the row buffer (`chan_stride` = `row_stride` = `wq` = its
    /// floats per channel, `rows` = 1).
    pub b: ConvSpec,
    /// `b`'s left padding (where `a`'s row starts in the buffer).
    pub pl: usize,
}

/// Slot of the row buffer of a fused separable kernel.
pub(crate) const SLOT_ROWBUF: usize = 3;
/// Slot of the vertical conv's weights in a fused separable kernel.
pub(crate) const SLOT_WA: usize = 4;

impl SepSpec {
    /// Floats of the row buffer (one per thread).
    pub fn rowbuf_len(&self) -> usize {
        self.b.cg * self.b.chan_stride
    }

    /// Per output row `r` of `a`: the first valid tap, the number of valid taps (rows of the
    /// window inside the input).
    pub fn valid_taps(&self, r: usize) -> (usize, usize) {
        let base = (r * self.a.sh) as i64 - self.pt as i64;
        let dh = self.a.dh as i64;
        let mut first = None;
        let mut n = 0;
        for i in 0..self.a.kh {
            let y = base + i as i64 * dh;
            if y >= 0 && y < self.h as i64 {
                first.get_or_insert(i);
                n += 1;
            }
        }
        (first.unwrap_or(0), n)
    }
}

/// What one compiled function computes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KernelSpec {
    Conv(ConvSpec),
    Sep(Box<SepSpec>),
    Elt(EltSpec),
    Pool(PoolSpec),
    Gap {
        c: usize,
        hw: usize,
    },
    /// Softmax over channels per pixel: a call into `rstep::softmax`, items are pixels.
    Softmax {
        c: usize,
        hw: usize,
    },
    /// Local response normalisation: a call into `rstep::lrn`, items are pixels.
    Lrn(LrnSpec),
    /// Channel shuffle: a call into `rstep::shuffle`, items are output channels.
    Shuffle {
        c: usize,
        hw: usize,
        groups: usize,
    },
    /// A Winograd convolution: a call into `wino::run_*`, items are (band of tile rows,
    /// group of output channels).
    Wino(crate::wino::WinoSpec),
    /// A pointwise conv as GEMMs on packed bands: a call into `gemm::run_*`, items are (band
    /// of output positions, group of output channels).
    Gemm(crate::gemm::GemmSpec),
    /// Another plain-Rust step (`rstep.rs`): `mul`, a broadcasting `add`, `slice`, `prelu`, `global_maxpool`, `pad`,
    /// `upsample`, `conv_transpose`.
    Rust(RustSpec),
}

/// Which plain-Rust step a [`RustSpec`] calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RustKind {
    /// `rstep::mul`: params `[c, hw, per_channel]`, items channels.
    Mul,
    /// `rstep::add` (an `add` that broadcasts a `[C, 1, 1]` operand): params
    /// `[c, hw, per_channel]`, items channels.
    Add,
    /// `rstep::slice`: params `[c, hw, start, input channels]`, items output channels.
    Slice,
    /// `rstep::prelu`: params `[c, hw, slopes]`, items channels.
    PRelu,
    /// `rstep::global_max`: params `[c, hw]`, items channels.
    GlobalMax,
    /// `rstep::pad`: params `[c, h, w, top, bottom, left, right, mode, value bits]`, items
    /// channels.
    Pad,
    /// `rstep::upsample`: params `[c, h, w, sh, sw, mode, coords]`, items channels.
    Upsample,
    /// `rstep::conv_transpose`: params in `rstep::conv_transpose`'s order, items output
    /// channels; weights then biases in one parameter buffer.
    ConvTranspose,
    /// `maxpool::run_*` on a wide path: params `MaxPoolSizes::params`, items (channel,
    /// output row).
    MaxPool(crate::wide::Isa),
}

impl RustKind {
    /// The function the kernel calls.
    pub(crate) fn function(self) -> crate::rstep::RustStep {
        match self {
            RustKind::Mul => crate::rstep::mul,
            RustKind::Add => crate::rstep::add,
            RustKind::Slice => crate::rstep::slice,
            RustKind::PRelu => crate::rstep::prelu,
            RustKind::GlobalMax => crate::rstep::global_max,
            RustKind::Pad => crate::rstep::pad,
            RustKind::Upsample => crate::rstep::upsample,
            RustKind::ConvTranspose => crate::rstep::conv_transpose,
            RustKind::MaxPool(crate::wide::Isa::Avx512) => crate::maxpool::run_avx512,
            RustKind::MaxPool(_) => crate::maxpool::run_avx2,
        }
    }

    /// The name in kernel names and the plan.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RustKind::Mul => "mul",
            RustKind::Add => "add",
            RustKind::Slice => "slice",
            RustKind::PRelu => "prelu",
            RustKind::GlobalMax => "global_max",
            RustKind::Pad => "pad",
            RustKind::Upsample => "upsample",
            RustKind::ConvTranspose => "conv_transpose",
            RustKind::MaxPool(crate::wide::Isa::Avx512) => "maxpool_avx512",
            RustKind::MaxPool(_) => "maxpool_avx2",
        }
    }
}

/// A plain-Rust step: the function, the constants table it reads and its work items.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RustSpec {
    pub kind: RustKind,
    pub params: Vec<i64>,
    pub items: usize,
}

/// An LRN step: sizes and the f32 constants as bits (so the spec is hashable).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LrnSpec {
    pub c: usize,
    pub hw: usize,
    pub size: usize,
    pub alpha: u32,
    pub beta: u32,
    pub bias: u32,
}

impl LrnSpec {
    /// The table `rstep::lrn` reads.
    pub fn params(&self) -> Vec<i64> {
        vec![
            self.c as i64,
            self.hw as i64,
            self.size as i64,
            i64::from(self.alpha),
            i64::from(self.beta),
            i64::from(self.bias),
        ]
    }
}

impl KernelSpec {
    /// Work items the kernel's `[start, end)` range runs over.
    pub fn items(&self) -> usize {
        match self {
            KernelSpec::Conv(s) => s.items(),
            KernelSpec::Sep(s) => s.b.groups * s.b.oh,
            KernelSpec::Elt(s) => s.items(),
            KernelSpec::Pool(p) => p.c * p.oh,
            KernelSpec::Gap { c, .. } => *c,
            KernelSpec::Softmax { hw, .. } => *hw,
            KernelSpec::Lrn(l) => l.hw,
            KernelSpec::Shuffle { c, .. } => *c,
            KernelSpec::Wino(w) => w.items(),
            KernelSpec::Gemm(g) => g.items(),
            KernelSpec::Rust(r) => r.items,
        }
    }

    /// Comment lines naming the microkernels the kernel calls (`crate::wide`; rustc code
    /// outside the JIT's disassembly): path, block size, tile and address.
    pub fn microkernel_notes(&self) -> Vec<String> {
        let convs: Vec<&ConvSpec> = match self {
            KernelSpec::Conv(s) => vec![s],
            KernelSpec::Sep(s) => vec![&s.a, &s.b],
            KernelSpec::Wino(w) => {
                let f = w.function() as usize;
                return vec![format!(
                    "; calls the {} Winograd {} step at {f:#x} (convc_jit::wino), whose GEMMs run the row microkernel for {} channels",
                    w.isa,
                    w.variant.name(),
                    w.ocb
                )];
            }
            KernelSpec::Gemm(g) => {
                let f = g.function() as usize;
                return vec![format!(
                    "; calls the {} GEMM step at {f:#x} (convc_jit::gemm), which runs the row microkernel for {} channels",
                    g.isa, g.ocb
                )];
            }
            _ => Vec::new(),
        };
        let mut notes = Vec::new();
        for s in convs {
            let Some(isa) = s.wide else { continue };
            let mut blocks = vec![s.ocb];
            if s.og % s.ocb != 0 {
                blocks.push(s.og % s.ocb);
            }
            for ocb in blocks {
                let addr = crate::wide::row_kernel(isa, ocb).map_or(0, |f| f as usize);
                notes.push(format!(
                    "; calls the {isa} row microkernel for {ocb} channels x {} vectors at {addr:#x} (convc_jit::wide)",
                    crate::wide::tile_vectors(isa, ocb)
                ));
            }
        }
        notes
    }

    /// A readable name, e.g. `conv3x3s1_64x56x56_b6`.
    pub fn name(&self) -> String {
        match self {
            KernelSpec::Conv(s) => conv_name(s),
            KernelSpec::Sep(s) => format!(
                "sep{}x1s{}d{}_{}x{}x{}{}_1x{}s{}d{}g{}_{}x{}x{}{}",
                s.a.kh,
                s.a.sh,
                s.a.dh,
                s.a.groups * s.a.og,
                s.a.oh,
                s.a.ow,
                ep_name(&s.a.ep),
                s.b.kw,
                s.b.sh,
                s.b.dw,
                s.b.groups,
                s.b.og * s.b.groups,
                s.b.oh,
                s.b.ow,
                ep_name(&s.b.ep)
            ),
            KernelSpec::Elt(s) => {
                let e = ep_name(&s.ep);
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
            KernelSpec::Softmax { c, hw } => format!("softmax_{c}x{hw}"),
            KernelSpec::Lrn(l) => format!("lrn{}_{}x{}", l.size, l.c, l.hw),
            KernelSpec::Shuffle { c, hw, groups } => format!("shuffle{groups}_{c}x{hw}"),
            KernelSpec::Rust(r) => {
                let p: Vec<String> = r.params.iter().map(|v| v.to_string()).collect();
                format!("{}_{}", r.kind.name(), p.join("x"))
            }
            KernelSpec::Gemm(g) => format!(
                "gemm{}x{}_{}x{}x{}_s{}x{}_b{}_g{}_n{}_{}{}",
                g.kh,
                g.kw,
                g.oc,
                g.oh,
                g.ow,
                g.sh,
                g.sw,
                g.ocb,
                g.group,
                g.cols,
                g.isa,
                ep_name(&g.ep)
            ),
            KernelSpec::Wino(w) => format!(
                "wino{}_{}x{}x{}_b{}_g{}_r{}_t{}{}_{}{}",
                w.variant.tag(),
                w.oc,
                w.oh,
                w.ow,
                w.ocb,
                w.group,
                w.rows,
                w.tl,
                match (w.band_pad.is_some(), w.stream) {
                    (true, true) => "_bp_nt",
                    (true, false) => "_bp",
                    (false, true) => "_nt",
                    (false, false) => "",
                },
                w.isa,
                ep_name(&w.ep)
            ),
        }
    }
}

/// The name of a direct conv's kernel: op, kernel, stride, dilation, groups, output shape and
/// register block, then what sets it apart (rows per item, row-major items, output strides,
/// chunks, column tiles, path, flat rows or depthwise rows) and the epilogue.
fn conv_name(s: &ConvSpec) -> String {
    format!(
        "conv{}x{}s{}x{}d{}x{}g{}_{}x{}x{}_b{}{}{}{}{}{}{}{}{}",
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
        if s.rows > 1 {
            format!("_r{}", s.rows)
        } else {
            String::new()
        },
        if s.row_major { "_rows" } else { "" },
        if s.out_cs != s.oh * s.ow || s.out_rs != s.ow {
            "_ostride"
        } else {
            ""
        },
        if s.chunks() > 1 {
            format!("_k{}", s.chunk_taps)
        } else {
            String::new()
        },
        if s.xtiles > 1 {
            format!("_x{}", s.xtile_cols)
        } else {
            String::new()
        },
        s.wide.map_or(String::new(), |i| format!("_{i}")),
        if s.flat_pad > 0 {
            format!("_flat{}", s.flat_pad)
        } else if s.dw_plane.is_some() {
            "_plane".to_string()
        } else if s.dw_rows > 0 && s.in_ring > 0 {
            format!("_dw{}_ring{}", s.dw_rows, s.in_ring)
        } else if s.dw_rows > 0 {
            format!("_dw{}", s.dw_rows)
        } else {
            String::new()
        },
        ep_name(&s.ep)
    )
}

/// The epilogue's part of a kernel name, e.g. `_affine_relu`.
fn ep_name(ep: &[Ep]) -> String {
    ep.iter()
        .map(|e| match e {
            Ep::Affine { scale: true, .. } => "_affine".to_string(),
            Ep::Affine { scale: false, .. } => "_bias".to_string(),
            Ep::Add { .. } => "_add".to_string(),
            Ep::Act(a) => format!("_{}", a.name()),
        })
        .collect()
}
