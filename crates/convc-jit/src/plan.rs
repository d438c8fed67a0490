//! From a graph to a program: fusion groups, one step per group (a kernel spec, its buffer
//! table, packed weights), and the buffer plan.
//!
//! Fusion: a convolution or an elementwise op starts a group; the group then absorbs its
//! tail's user while the tail has exactly one use (one edge), is not a network output, and the
//! user is a batchnorm, an activation or an `add` (the add's other operand becomes a residual
//! read in the epilogue). A group runs at the position of its last member in topological
//! order, when every operand of every member has been computed.

use petgraph::Direction;

use convc_ir::shape::Concrete;
use convc_ir::{BatchNorm, Conv, Graph, NodeIndex, Op, Pool, PoolKind};

use crate::JitError;
use crate::buf::AlignedBuf;
use crate::spec::{Act, ConvSpec, EltSpec, Ep, KernelSpec, PoolSpec, SLOT_EXTRA, SepSpec};
use crate::wide::Isa;

/// Where the value of a node lives during a run (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The network input number `i` (the caller's tensor).
    Input(usize),
    /// The network output number `i` (the result tensor).
    Output(usize),
    /// At this float offset in the arena.
    Arena(usize),
}

/// One entry of a step's buffer table.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A null pointer (an unused slot).
    Null,
    /// The value of node `node`, `off` floats in.
    Value { node: usize, off: usize },
    /// The step's scratch buffer (the padded input).
    Scratch,
    /// The calling thread's own scratch buffer (`Plan::thread_scratch` floats).
    ThreadScratch,
    /// The calling thread's scratch, this many floats in (a chunked kernel's partial sums).
    ThreadScratchAt(usize),
    /// A parameter buffer of the program.
    Param(usize),
    /// The result tensor of output number `i`.
    Output(usize),
}

/// Copy of a `[c, h, w]` input into a zero-bordered buffer whose rows are split into `sw`
/// phases of `wq` values (see [`ConvSpec`]).
#[derive(Clone, Debug)]
pub(crate) struct PadCopy {
    pub src: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pt: usize,
    pub pl: usize,
    pub hp: usize,
    pub sw: usize,
    pub wq: usize,
    /// Rows outermost (`[H][C][W]`): the rows a conv's window reads, of all channels, are
    /// contiguous (a few pages instead of one per channel on big planes).
    pub hcw: bool,
    /// Zero floats after the last row of the last channel. Rows may share their padding
    /// columns (a row `w + max(pl, pr)` long instead of `pl + w + pr`, see
    /// [`shared_gap_row`]): a window then reads up to `min(pl, pr)` floats past its row,
    /// into the next row's left padding, and past the last row into this tail.
    pub tail: usize,
}

/// Per-band padding of a conv with few input channels per group (see [`Step::tile`]): the
/// kernel runs a few row groups of one block at a time, after the padded rows they read were
/// written to the thread's scratch, with the input pointer set so that those rows are where the
/// kernel looks for them. The input is read once from memory; no padded copy of it is written.
#[derive(Clone, Debug)]
pub(crate) struct Tile {
    /// The layout (`c` = channels; `hp` = all padded rows), as for a whole copy.
    pub pad: PadCopy,
    /// Work items per group (blocks × row groups), output-channel blocks per group and row
    /// groups per block.
    pub per_group: usize,
    pub nb: usize,
    pub row_groups: usize,
    /// Groups.
    pub groups: usize,
    /// Output rows per row group, the vertical stride, and the padded input rows of one window
    /// (`dh * (kh - 1) + 1`).
    pub rows: usize,
    pub sh: usize,
    pub span: usize,
    /// Row groups per band.
    pub band: usize,
    /// Output rows.
    pub oh: usize,
    /// Input channels per group (padded one after the other, `rows_per_channel` rows apart).
    pub cg: usize,
}

/// Bands a thread claims, at least, of a band-major tile ([`Tile::band_rows`]): claims are
/// whole bands, and fewer than this balance badly (7 bands split 4 / 3 over 2 threads).
pub(crate) const TILE_BANDS_PER_THREAD: usize = 4;

impl Tile {
    /// Whether the runtime runs the items band-major: per group, band by band, every block's
    /// row groups of the band after padding the band once (block-major, a 3 -> 64 stem on the
    /// AVX-512 path padded and phase-split each band once per block: 6 times). The kernel's
    /// own item numbering stays block-major; the runtime maps claims onto it. With one block
    /// a group (depthwise convs) the two orders are the same.
    pub fn band_major(&self) -> bool {
        self.nb > 1
    }
    /// Row groups per band on `threads` threads: `band`, or fewer for a band-major tile where
    /// there would be under [`TILE_BANDS_PER_THREAD`] bands a thread.
    pub fn band_rows(&self, threads: usize) -> usize {
        if !self.band_major() || threads <= 1 {
            return self.band;
        }
        let per_group = (threads * TILE_BANDS_PER_THREAD).div_ceil(self.groups.max(1));
        (self.row_groups / per_group).clamp(1, self.band)
    }
    /// Padded rows a band reads, per channel.
    pub fn rows_per_channel(&self) -> usize {
        self.band * self.rows * self.sh + self.span
    }
    /// Floats of scratch a band needs.
    pub fn len(&self) -> usize {
        self.cg * self.rows_per_channel() * self.pad.row_len()
    }
}

impl PadCopy {
    /// Floats of one padded row of one channel (`sw` phases of `wq`).
    pub fn row_len(&self) -> usize {
        self.sw * self.wq
    }
    /// Floats between two rows of a channel: `[C][H][W]` one row; `[H][C][W]` all channels'.
    pub fn row_stride(&self) -> usize {
        if self.hcw {
            self.c * self.row_len()
        } else {
            self.row_len()
        }
    }
    /// Floats between two channels of a row.
    pub fn chan_stride(&self) -> usize {
        if self.hcw {
            self.row_len()
        } else {
            self.hp * self.row_len()
        }
    }
    /// Floats of the whole layout, the tail included.
    pub fn len(&self) -> usize {
        self.c * self.hp * self.row_len() + self.tail
    }
}

/// One kernel invocation per image.
#[derive(Debug)]
pub(crate) struct Step {
    /// The fused ops, e.g. `conv1+bn1+relu1`.
    pub name: String,
    pub spec: KernelSpec,
    /// Index into the compiled kernels (set after compilation).
    pub kernel: usize,
    pub args: Vec<Arg>,
    pub pad: Option<PadCopy>,
    /// Where `pad` is written: `None`, once per image into the arena (a parallel job of its
    /// own); `Some(off)`, by every thread into its own scratch, `off` floats in, before its
    /// first item ([`private_pads`]).
    pub pad_private: Option<usize>,
    /// Instead of `pad` (few input channels per group): the padding done per band of rows of
    /// one group's channels into the calling thread's scratch, right before the kernel reads it.
    pub tile: Option<Tile>,
    /// A depthwise conv run band by band before this (pointwise) step's kernel, through the
    /// calling thread's scratch: see [`Band`].
    pub band: Option<Box<Band>>,
    /// The padded layout this step writes its value in (its consumer's, see
    /// [`pad_in_place`]): the runtime zeroes the borders before the kernel runs.
    pub zero: Option<PadCopy>,
    /// Rough single-thread time in nanoseconds (decides whether to use threads).
    pub work_ns: f64,
    /// Multiply-accumulates per image (0 for non-convolutions).
    pub macs: u64,
    /// The node written.
    pub writes: usize,
}

impl Step {
    /// Nodes whose values the step reads.
    pub fn reads(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .args
            .iter()
            .skip(1)
            .filter_map(|a| match a {
                Arg::Value { node, .. } => Some(*node),
                _ => None,
            })
            .collect();
        if let Some(p) = &self.pad {
            v.push(p.src);
        }
        if let Some(t) = &self.tile {
            v.push(t.pad.src);
        }
        if let Some(b) = &self.band {
            v.extend(b.step.reads());
            if let Some(p) = &b.pre {
                v.extend(p.step.reads());
            }
        }
        v
    }

    /// A step that runs one kernel on its buffer table alone: no padded copy, tile, band or
    /// zeroed borders (until a later pass gives it some).
    fn plain(
        name: String,
        spec: KernelSpec,
        args: Vec<Arg>,
        work_ns: f64,
        macs: u64,
        writes: usize,
    ) -> Step {
        Step {
            name,
            spec,
            kernel: 0,
            args,
            pad: None,
            tile: None,
            band: None,
            zero: None,
            pad_private: None,
            work_ns,
            macs,
            writes,
        }
    }

    /// Work items: bands of rows for a band pair, else the kernel's items.
    pub fn items(&self) -> usize {
        match &self.band {
            Some(b) => b.bands(),
            None => self.spec.items(),
        }
    }
}

/// A depthwise conv `a` fused into the pointwise (1x1) conv `b` that reads it, through a
/// cache-resident buffer: a work item is a band of `rows` output rows. For each band the
/// calling thread runs `a`'s kernel for those rows of all its channels into its own scratch
/// (`[chans][rows][width]`, at float `buf_off`; `a`'s own padding tile, if any, comes first),
/// then `b`'s kernel for the same rows reading them. `a`'s value never goes to memory, the
/// two kernels share no barrier, and a thread's `b` reads only what it just wrote.
#[derive(Debug)]
pub(crate) struct Band {
    /// The depthwise step (its kernel writes with the band layout; slot 0 is set per band).
    pub step: Step,
    /// The pointwise conv's own name and multiply-adds (the step's kernel is its kernel), for
    /// the profile of the step's parts ([`Band::parts`]).
    pub reader: (String, u64),
    /// Output rows per band, and of the whole plane.
    pub rows: usize,
    pub oh: usize,
    /// Columns and channels of `a`'s output.
    pub width: usize,
    pub chans: usize,
    /// Where the band buffer starts in the thread's scratch (floats).
    pub buf_off: usize,
    /// The conv that produces `a`'s input, run row by row inside the band step ([`Pre`]).
    pub pre: Option<Box<Pre>>,
}

/// The producer of a band pair's depthwise input, run inside the band step (see
/// [`band_pre`]): per band it computes the input rows the depthwise conv reads into a padded
/// tile at the start of the thread's scratch (`[C][tile_rows][row_len]`, zero borders), keeping
/// the rows the next band of the same thread reads again, so a claim of consecutive bands
/// computes every row once. Its value never goes to memory.
#[derive(Debug)]
pub(crate) struct Pre {
    /// The producer's step (row-major items, output strides of the tile; slot 0 set per band).
    pub step: Step,
    /// The tile's layout: channels, input rows and columns, padding, padded row length.
    pub pad: PadCopy,
    /// Padded rows the tile holds (one band's window), and the depthwise conv's vertical
    /// stride and window height.
    pub tile_rows: usize,
    pub sh: usize,
    pub span: usize,
    /// Where the tile splits each row into stride phases (`pad.sw > 1`): the offset in the
    /// thread's scratch of one row of every channel (`[C][w]`), which the producer writes,
    /// row by row, before the runtime splits it into the tile.
    pub stage: Option<usize>,
    /// The tile is a ring: padded row `r` sits in row `r % tile_rows` of its channel, so the
    /// rows kept for the next band stay where they are (the depthwise kernel wraps its window,
    /// `ConvSpec::in_ring`). Else the kept rows move up to the tile's top each band: 5% of a
    /// MobileNet block's time at 112x112 went to those moves.
    pub ring: bool,
    /// Floats before the tile in the scratch, so that its rows' first input columns start
    /// cache lines (with `row_len` a multiple of 16; 0 where rows split into phases).
    pub lead: usize,
}

/// Floats a region of thread scratch takes for `len` floats: rounded up to whole 64-byte lines,
/// plus one line, so the next region starts on its own line and a vector read past a region's
/// end stays inside the scratch.
pub(crate) fn scratch_span(len: usize) -> usize {
    len.div_ceil(16) * 16 + 16
}

/// The planner's estimates of a step's single-thread time (`Step::work_ns`), which decide
/// whether a step is split across threads (`JitOptions::parallel_min_ns`): rough rates of this
/// JIT's kernels on one core, not measured per host; only their order of magnitude matters.
mod work {
    /// Multiply-adds per nanosecond of a dense kernel per 4 f32 lanes of its path (so 6 on
    /// SSE, 12 on AVX2, 24 on AVX-512).
    pub const MACS_PER_NS_PER_4_LANES: f64 = 6.0;
    /// Multiply-adds per nanosecond of a separable pair's fused kernel (Cranelift's f32x4
    /// code, a row buffer between its two convs).
    pub const MACS_PER_NS_SEPARABLE: f64 = 4.0;
    /// Values per nanosecond an elementwise step or a copy moves.
    pub const VALUES_PER_NS_ELEMENTWISE: f64 = 2.0;
    /// Nanoseconds per value of a global pool (a reduction).
    pub const NS_PER_VALUE_REDUCE: f64 = 1.0;
    /// Nanoseconds per value of a softmax or LRN (exp, division).
    pub const NS_PER_VALUE_SOFTMAX: f64 = 20.0;
    /// Extra loop cost of a pooling output, in window loads.
    pub const POOL_OVERHEAD_LOADS: usize = 4;
    /// Winograd's transforms, as a factor on its GEMMs' multiply-adds.
    pub const WINO_TRANSFORM_FACTOR: f64 = 1.3;
    /// A whole-plane depthwise kernel's time against a dense kernel's for its multiply-adds
    /// (`ConvSpec::dw_plane`: loads and latency bound; 960 channels at 7x7 ran 47 us on one
    /// thread, estimated at 18 as dense), so that its steps split across threads.
    pub const DW_PLANE_SLOWDOWN: f64 = 2.5;

    /// The time of `macs` multiply-adds on a dense kernel of `lanes` f32 lanes.
    pub fn dense_ns(macs: f64, lanes: usize) -> f64 {
        macs / (MACS_PER_NS_PER_4_LANES * lanes as f64 / 4.0)
    }
}

impl Band {
    /// Work items: bands.
    pub fn bands(&self) -> usize {
        self.oh.div_ceil(self.rows)
    }
    /// Floats of thread scratch: `a`'s tile (or the producer's), then the band buffer.
    pub fn scratch_len(&self) -> usize {
        self.buf_off + scratch_span(self.chans * self.rows * self.width)
    }
    /// The kernels the step runs per band, in the order of [`BAND_PARTS`]: the producer's
    /// (if it runs inside) name and multiply-adds, then the depthwise conv's and the
    /// pointwise conv's.
    pub fn parts(&self) -> [Option<(&str, u64)>; BAND_PARTS] {
        [
            self.pre
                .as_ref()
                .map(|p| (p.step.name.as_str(), p.step.macs)),
            Some((self.step.name.as_str(), self.step.macs)),
            Some((self.reader.0.as_str(), self.reader.1)),
        ]
    }
}

/// Kernels a band step runs per band: the producer inside (if any), the depthwise conv, the
/// pointwise conv.
pub(crate) const BAND_PARTS: usize = 3;

/// How many times `steps` read each value. Every read counts, not every reading step: a step
/// reading a value both through its padding and as a residual operand (standard layout) must
/// keep it as it is.
fn read_counts(steps: &[Step]) -> std::collections::HashMap<usize, usize> {
    let mut readers = std::collections::HashMap::<usize, usize>::new();
    for st in steps {
        for n in st.reads() {
            *readers.entry(n).or_default() += 1;
        }
    }
    readers
}

/// Whether the value a consumer pads (`layout.src`) may take the consumer's layout: it is read
/// once (`readers`), without stride phases along the row, and is neither a network input nor
/// an output (whose layouts are the caller's).
fn private_to_consumer(
    g: &Graph,
    readers: &std::collections::HashMap<usize, usize>,
    layout: &PadCopy,
) -> bool {
    layout.sw == 1 && read_once_inside(g, readers, layout.src)
}

/// Whether value `v` is read once (`readers`) and is neither a network input nor an output.
fn read_once_inside(
    g: &Graph,
    readers: &std::collections::HashMap<usize, usize>,
    v: usize,
) -> bool {
    let n = NodeIndex::new(v);
    readers.get(&v) == Some(&1) && !g.is_output(n) && !g.inputs.contains(&n)
}

/// Whether the conv `ps` writes the plain `[C][H][W]` layout of the value `layout` pads (its
/// channels, rows and columns; channels `oh * ow` apart), without a residual add (whose
/// operand is read in the output's layout).
fn writes_plain(ps: &ConvSpec, layout: &PadCopy) -> bool {
    ps.out_cs == ps.oh * ps.ow
        && ps.oh == layout.h
        && ps.ow == layout.w
        && ps.groups * ps.og == layout.c
        && !ps.ep.iter().any(|e| matches!(e, Ep::Add { .. }))
}

/// A band pair's depthwise input, when a conv step produces it for that pair alone, is
/// produced inside the band step, row by row ([`Pre`]): MobileNet's expansion, depthwise and
/// projection then run as one step and the expanded value (6x the block's channels) never goes
/// to memory. The producer reads its input directly (no padded copy or tile of its own), has
/// one output row per item, no residual add and is not flattened; the depthwise conv has one
/// input channel per group (its packed weights do not depend on the tile's channel stride)
/// and pads through a tile. Where that tile splits rows into stride phases (a stride-2
/// depthwise conv), the producer writes one row of every channel at a time into a row of
/// thread scratch, and the runtime splits it into the tile ([`Pre::stage`]): a MobileNet
/// block of stride 2 wrote its 6x expanded value to memory and padded it back, phase by
/// phase, band by band.
fn band_pre(g: &Graph, steps: Vec<Step>) -> Vec<Step> {
    let readers = read_counts(&steps);
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    for si in 0..slots.len() {
        let Some((t, cg, rows)) = slots[si].as_ref().and_then(|st| {
            let band = st.band.as_ref()?;
            let t = band.step.tile.clone()?;
            match &band.step.spec {
                KernelSpec::Conv(sa) => Some((t, sa.cg, band.rows)),
                _ => None,
            }
        }) else {
            continue;
        };
        let v = t.pad.src;
        if cg != 1 || t.pad.hcw || !read_once_inside(g, &readers, v) {
            continue;
        }
        let Some(pi) = (0..si)
            .rev()
            .find(|&i| slots[i].as_ref().is_some_and(|p| p.writes == v))
        else {
            continue;
        };
        let ok = slots[pi].as_ref().is_some_and(|p| {
            p.pad.is_none()
                && p.tile.is_none()
                && p.band.is_none()
                && p.zero.is_none()
                && matches!(p.args.first(), Some(Arg::Value { off: 0, .. }))
                && match &p.spec {
                    KernelSpec::Conv(ps) => {
                        ps.rows == 1 && ps.xtiles == 1 && writes_plain(ps, &t.pad)
                    }
                    _ => false,
                }
        });
        if !ok {
            continue;
        }
        let Some(mut pstep) = slots[pi].take() else {
            continue;
        };
        let (sh, span) = (t.sh, t.span);
        let mut pad = t.pad.clone();
        let tile_rows = (rows - 1) * sh + span;
        let ring = match &slots[si]
            .as_ref()
            .and_then(|st| st.band.as_ref())
            .map(|b| &b.step.spec)
        {
            Some(KernelSpec::Conv(sa)) => ring_fits(sa),
            _ => false,
        };
        // In a ring of unsplit rows, every row's first input column starts a cache line: the
        // producer's stores are whole lines, as are the depthwise conv's loads of its middle
        // column tap ([`Pre::lead`]).
        let lead = if ring && pad.sw == 1 {
            pad.wq = pad.wq.next_multiple_of(16);
            (16 - pad.pl % 16) % 16
        } else {
            0
        };
        let rs = pad.row_len();
        let tile_len = scratch_span(lead + pad.c * tile_rows * rs);
        let stage = (pad.sw > 1).then_some(tile_len);
        if let KernelSpec::Conv(ps) = &mut pstep.spec {
            // Staged: one row of each channel (the runtime offsets the pointer per row).
            (ps.out_cs, ps.out_rs) = match stage {
                Some(_) => (pad.w, pad.w),
                None => (tile_rows * rs, rs),
            };
            ps.row_major = true;
        }
        pstep.args[0] = Arg::Null;
        let Some(st) = slots[si].as_mut() else {
            continue;
        };
        st.name = format!("{}+{}", pstep.name, st.name);
        st.work_ns += pstep.work_ns;
        st.macs += pstep.macs;
        let Some(band) = st.band.as_deref_mut() else {
            continue;
        };
        if let KernelSpec::Conv(sa) = &mut band.step.spec {
            (sa.chan_stride, sa.row_stride, sa.wq) = (tile_rows * rs, rs, pad.wq);
            // A band's rows of every channel in one call of the kernel (no tile of its own
            // to pad group by group): a call a channel cost a 192-channel band 2% of its time.
            sa.row_major = true;
            if ring {
                sa.in_ring = tile_rows;
            }
        }
        band.step.tile = None;
        band.step.args[1] = Arg::Null;
        band.buf_off = tile_len + stage.map_or(0, |_| scratch_span(pad.c * pad.w));
        band.pre = Some(Box::new(Pre {
            step: pstep,
            pad,
            tile_rows,
            sh,
            span,
            stage,
            ring,
            lead,
        }));
    }
    slots.into_iter().flatten().collect()
}

/// Whether a band pair's depthwise conv `sa` can read its tile as a ring ([`Pre::ring`]):
/// its wide rows kernel takes every call (one for each count of rows an item may leave, and
/// the whole epilogue), since that kernel alone wraps a window at the ring's end.
fn ring_fits(sa: &ConvSpec) -> bool {
    let Some(isa) = sa.wide else {
        return false;
    };
    sa.dw_rows > 0
        && sa.dw_plane.is_none()
        && sa.flat_pad == 0
        && sa.ep_in_wide_kernels()
        && (1..=sa.dw_rows).all(|n| crate::wide::dw_kernel(isa, sa.kw, n, sa.sh).is_some())
}

/// Producers write straight into their channels of a concat: a concat's copy of operand `x`
/// goes away when `x` is written by one step, plain (not a padded layout), read by that copy
/// alone, and is neither a network input nor an output; its producer then writes at the
/// copy's offset of the concat's buffer (a plain `[C][H][W]` too, so channel strides agree).
/// An Inception block's four branch copies were 4% of its time on one thread.
fn concat_in_place(g: &Graph, conc: &Concrete, steps: &mut Vec<Step>, len: &[usize]) {
    let plain = |n: usize| {
        let [c, h, w] = conc.get(NodeIndex::new(n));
        len.get(n) == Some(&(c * h * w))
    };
    let outside = |n: usize| g.inputs.iter().chain(&g.outputs).any(|v| v.index() == n);
    // Writers and readers of each value, counted once: a copy taken out changes only its
    // operand's counts, and that operand is not looked at again.
    let (mut writers, mut readers) = (vec![0usize; len.len()], vec![0usize; len.len()]);
    for st in steps.iter() {
        if let Some(w) = writers.get_mut(st.writes) {
            *w += 1;
        }
        for r in st.reads() {
            if let Some(r) = readers.get_mut(r) {
                *r += 1;
            }
        }
    }
    let mut gone = vec![false; steps.len()];
    for ci in 0..steps.len() {
        let copy = &steps[ci];
        let y = copy.writes;
        let (Some(Arg::Value { node: into, off }), Some(&Arg::Value { node: x, off: 0 })) =
            (copy.args.first().copied(), copy.args.get(1))
        else {
            continue;
        };
        let is_concat = y < g.node_bound()
            && matches!(g.node(NodeIndex::new(y)).op, Op::Concat)
            && into == y
            && matches!(&copy.spec, KernelSpec::Elt(e) if e.ep.is_empty());
        if !is_concat || outside(x) || !plain(x) || !plain(y) {
            continue;
        }
        if writers.get(x) != Some(&1) || readers.get(x) != Some(&1) {
            continue;
        }
        let Some(p) = (0..steps.len()).find(|&s| steps[s].writes == x) else {
            continue;
        };
        let writes_plain = matches!(
            steps[p].args.first(),
            Some(&Arg::Value { node, off: 0 }) if node == x
        );
        if p == ci || !writes_plain {
            continue;
        }
        steps[p].args[0] = Arg::Value { node: y, off };
        steps[p].writes = y;
        gone[ci] = true;
    }
    let mut i = 0;
    steps.retain(|_| {
        i += 1;
        !gone[i - 1]
    });
}

/// Producers write straight into their consumer's padded input. A conv whose input needs
/// padding reads a zero-bordered copy (`Step::pad`, rows outermost) or pads a band of rows at a
/// time (`Step::tile`). When the value is written by a conv step (standard layout, no residual
/// add, not flattened) and read by that consumer alone, the producer writes it in the padded
/// layout instead (its output strides and offset), the runtime zeroes the borders before the
/// producer runs, and the consumer reads the buffer in place: no copy. The tile case is taken
/// for one input channel per group (depthwise), whose packed weights do not depend on the
/// channel stride. Returns the values whose buffers grow to the padded size.
fn pad_in_place(g: &Graph, steps: &mut [Step]) -> Vec<(usize, usize)> {
    let readers = read_counts(steps);
    let mut grown = Vec::new();
    for ci in 0..steps.len() {
        // The consumer's padded layout: its whole copy, or its (or its band's) tile.
        let (layout, via_tile) = {
            let c = &steps[ci];
            let conv = |st: &Step| -> Option<(PadCopy, bool)> {
                if let Some(p) = &st.pad {
                    return Some((p.clone(), false));
                }
                let t = st.tile.as_ref()?;
                match &st.spec {
                    KernelSpec::Conv(cs) if cs.cg == 1 => {
                        let mut p = t.pad.clone();
                        p.hcw = false;
                        Some((p, true))
                    }
                    _ => None,
                }
            };
            match (&c.band, conv(c)) {
                (_, Some(x)) => x,
                (Some(b), None) => match conv(&b.step) {
                    Some(x) => x,
                    None => continue,
                },
                (None, None) => continue,
            }
        };
        let src = layout.src;
        let n = NodeIndex::new(src);
        if !private_to_consumer(g, &readers, &layout) {
            continue;
        }
        let Some(pi) = (0..ci).rev().find(|&i| steps[i].writes == src) else {
            continue;
        };
        let ok = match &steps[pi].spec {
            KernelSpec::Conv(ps) => ps.out_rs == ps.ow && writes_plain(ps, &layout),
            _ => false,
        };
        if !ok
            || steps[pi].zero.is_some()
            || !matches!(steps[pi].args[0], Arg::Value { off: 0, .. })
        {
            continue;
        }
        // The producer writes row y, column x of channel c at `off + c*cs + y*rs + x`.
        let (cs, rs) = (layout.chan_stride(), layout.row_stride());
        let off = layout.pt * rs + layout.pl;
        if let KernelSpec::Conv(ps) = &mut steps[pi].spec {
            ps.out_cs = cs;
            ps.out_rs = rs;
        }
        steps[pi].args[0] = Arg::Value { node: src, off };
        steps[pi].zero = Some(layout.clone());
        // The consumer reads the padded buffer in place.
        let c = &mut steps[ci];
        let target: &mut Step = if c.pad.is_some() || c.tile.is_some() {
            c
        } else {
            match c.band.as_deref_mut() {
                Some(b) => &mut b.step,
                None => continue,
            }
        };
        if via_tile {
            if let KernelSpec::Conv(cs_) = &mut target.spec {
                cs_.chan_stride = layout.hp * layout.row_len();
            }
            target.tile = None;
        } else {
            target.pad = None;
        }
        target.args[1] = val(n);
        grown.push((src, layout.len()));
    }
    grown
}

/// How a conv step takes part in a band pair ([`Band`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BandRole {
    /// A step of its own.
    Alone,
    /// The depthwise conv: writes bands of this many rows.
    Writes(usize),
    /// The pointwise conv: reads bands of this many rows.
    Reads(usize),
}

/// Bytes of one band buffer the planner aims at (`a`'s output rows of all channels): small
/// enough to stay in the core's L2 between the two kernels. Measured (1 and 2 threads):
/// lowrank_conv's 64 x 56 rows, 1 row per band 0.687 / 0.372 ms, 3 rows 0.610 / 0.333, 7 rows
/// 0.592 / 0.324; mobilenet_block's 192 x 112 rows, 1 row 8.80 / 4.83 ms, 2 rows 8.14 / 4.63,
/// 4 rows 8.52 / 4.81.
const BAND_BYTES: usize = 192 * 1024;

/// Tiles (columns of the GEMMs) a Winograd work item aims at: enough vectors for the
/// microkernel's tiles to fill.
const WINO_COLS: usize = 64;

/// Bytes of products `M[ξ]` per channel group of a Winograd item (`[n²][group][tiles]`),
/// written by the GEMMs and read back by the output transform.
const WINO_PRODUCT_BYTES: usize = 128 * 1024;

/// Tile rows per Winograd work item: rows of `tx` tiles up to [`WINO_COLS`] tiles, while the
/// transformed input stays within its share of the core's L2 ([`wino_input_bytes`]), and at
/// most half the plane's where that still gives a band a vector of the microkernel's columns
/// (`lanes`), so that two threads each transform bands of their own.
///
/// The share: where the transformed weights (`n² c oc`) take at most half the L2, both stay
/// there, and the input gets the rest (longer bands read the weights less often). Where they
/// take more, they stream from L3 once per band whatever its length, and each channel group
/// reads the band's input again: the band gets a quarter of the L2, so that the stream does
/// not evict it. A 128 -> 128 layer at 112x112 (2.4 MB of weights, 2 MB L2), one process
/// alternating: bands of 1 tile row against 3, 0.75-0.78x the time at one thread, 0.89x at
/// two; vgg_head 0.92-0.96x and 0.94-0.96x. A 64 -> 64 layer at 224x224 (0.6 MB of weights)
/// keeps its 2 rows: 1 row ran 1.08x slower.
///
/// A 96 -> 128 3x3 layer at 28x28 (7 tile rows of 7), one process alternating: two bands (4
/// and 3 rows) against one, 0.91-0.92x the time at one thread and 0.87-0.92x at two (where one
/// band's channel groups are split, both threads transform all of it). A 256 -> 256 layer at
/// 14x14 (4 rows of 4): bands of 8 tiles ran 1.8x slower.
pub(crate) fn wino_rows(
    nn: usize,
    c: usize,
    oc: usize,
    tx: usize,
    tiles_y: usize,
    lanes: usize,
) -> usize {
    let l2 = wino_input_bytes();
    let weights = nn * c * oc * 4;
    let budget = if 2 * weights <= l2 {
        l2 - weights
    } else {
        l2 / 4
    };
    let by_cache = budget / (nn * c * tx * 4).max(1);
    let half = tiles_y.div_ceil(2);
    let rows = WINO_COLS.div_ceil(tx).min(by_cache);
    let rows = if half * tx >= lanes {
        rows.min(half)
    } else {
        rows
    };
    fill_lanes(rows.clamp(1, tiles_y.max(1)), tx, tiles_y, lanes)
}

/// GEMM columns the microkernel computes for bands of `rows` tile rows of `tx` tiles (of
/// `tiles_y`): each band's columns rounded up to whole vectors of `lanes`.
pub(crate) fn wino_lane_cols(rows: usize, tx: usize, tiles_y: usize, lanes: usize) -> usize {
    let rows = rows.clamp(1, tiles_y.max(1));
    let whole = tiles_y / rows;
    let rest = tiles_y % rows;
    let lanes_of = |r: usize| (r * tx).div_ceil(lanes.max(1)) * lanes.max(1);
    whole * lanes_of(rows) + if rest > 0 { lanes_of(rest) } else { 0 }
}

/// [`wino_rows`]' bands resized where they would leave more than 15% of the microkernel's
/// lanes idle (`WINO_MIN_FILL`): the rows, from half of `rows` up to the plane's, that fill
/// the most, of those the nearest to `rows` (the longer on a tie). Bands of a small plane's
/// few tiles ran on vectors mostly masked: a 256 -> 256 layer at 14x14 (4 x 4 tiles of
/// F(4x4)) had bands of 1 row, 4 columns of 16-float vectors; one band of the whole plane ran
/// 3.4x faster (AMD Zen4, one thread, 4.5 -> 1.3 ms), although its transformed input (590 KB)
/// then shares the L2 with weights streamed from L3.
fn fill_lanes(rows: usize, tx: usize, tiles_y: usize, lanes: usize) -> usize {
    let tiles = (tx * tiles_y) as f64;
    let fill = |r: usize| tiles / wino_lane_cols(r, tx, tiles_y, lanes).max(1) as f64;
    if fill(rows) >= WINO_MIN_FILL {
        return rows;
    }
    // From half the rows up: shorter bands read the weights more often.
    let dist = |r: usize| r.abs_diff(rows);
    (rows.div_ceil(2).max(1)..=tiles_y.max(rows))
        .map(|r| (r, fill(r)))
        .fold((rows, 0.0), |best, (r, f)| {
            let nearer = dist(r) < dist(best.0) || (dist(r) == dist(best.0) && r > best.0);
            if f > best.1 || (f == best.1 && nearer) {
                (r, f)
            } else {
                best
            }
        })
        .0
}

/// The least share of the microkernel's lanes a Winograd band's GEMM columns fill before
/// [`fill_lanes`] resizes the bands. At 0.75, a 7x1 conv 128 -> 192 on 17x17 (F(2,7), 17 x 9
/// tiles) kept bands of 3 tile rows (51 columns on 64 lanes); the whole plane (153 on 160)
/// ran 1.387 -> 1.327 ms (inception_7x7, one thread, medians of 7 alternating) and 0.736 ->
/// 0.684 at two threads (though both threads then transform all of it); the same pair at 160
/// channels 1.83 -> 1.69 and 1.14 -> 1.00 ms (AMD Zen4).
const WINO_MIN_FILL: f64 = 0.85;

/// Output channels per Winograd channel group: whole blocks of `ocb` whose products fit in
/// [`WINO_PRODUCT_BYTES`], fewer while the items (`bands` x groups) are under 4 or odd, so
/// that two threads share the work evenly. Where the bands are fewer than the threads, claims
/// are shares of a band's groups (`runtime::claim_items`): a 512 -> 512 layer at 7x7 (one band
/// of 43 blocks) had 5 groups, 3 for one thread and 2 for the other.
fn wino_group(nn: usize, cols: usize, ocb: usize, oc: usize, bands: usize) -> usize {
    let blocks = oc.div_ceil(ocb);
    let fit = (WINO_PRODUCT_BYTES / (nn * cols * 4 * ocb).max(1)).clamp(1, blocks);
    // As few groups as fit, at least as many as make 4 items, and an even number of items
    // where the blocks allow, then blocks spread evenly.
    let count = |groups: usize| blocks.div_ceil(blocks.div_ceil(groups));
    let mut groups = blocks.div_ceil(fit);
    while groups < blocks && (bands * count(groups) < 4 || (bands * count(groups)) % 2 == 1) {
        groups += 1;
    }
    blocks.div_ceil(groups) * ocb
}

/// Positions per band and output channels per group of a pointwise GEMM (`crate::gemm`): about
/// [`GEMM_BANDS`] bands, in whole tiles of the microkernel, the packed input of a reduction
/// chunk (`chunk` of the `taps`, which every block reads while it stays) within a quarter of
/// the core's L2 (a whole band's had strided 5x5 and 3x3 layers of 1,200-2,300 taps in bands
/// of 32 positions, each band splitting its input rows again: a 48 -> 96 5x5/2 layer at 56x56
/// 1.98 ms in bands of 32, 1.91 in 64, 1.85 in 256; one thread, AMD Zen4); channel groups
/// (whole blocks) only while the
/// items (bands x groups) are under 4, so that two threads share the work. Narrow bands cost
/// little: the packing copies each input value once whatever the band, and a tile's reduction
/// (`c` taps of a block's FMAs) dwarfs a call of the microkernel. But weights larger than the
/// L2 are read again by every band, so there bands are at least [`GEMM_STREAM_COLS`] wide.
fn gemm_schedule(
    (taps, chunk): (usize, usize),
    oc: usize,
    positions: usize,
    ocb: usize,
    isa: Isa,
    forced: Option<usize>,
) -> (usize, usize) {
    let vw = isa.lanes() * crate::wide::tile_vectors(isa, ocb);
    let by_cache = wino_input_bytes() / 4 / (taps.min(chunk) * 4).max(1);
    let even = positions.div_ceil(GEMM_BANDS).div_ceil(vw) * vw;
    let streamed = taps.saturating_mul(oc).saturating_mul(4) > wino_input_bytes();
    let least = if streamed {
        GEMM_STREAM_COLS.next_multiple_of(vw)
    } else {
        vw
    };
    let cols = forced.unwrap_or(even.min(by_cache / vw * vw).max(least));
    let cols = if cols >= positions { positions } else { cols };
    let bands = positions.div_ceil(cols.max(1));
    let blocks = oc.div_ceil(ocb);
    let mut groups = 1;
    while groups < blocks && bands * groups < 4 {
        groups += 1;
    }
    (cols.max(1), (blocks.div_ceil(groups) * ocb).min(oc))
}

/// The largest packed band of a GEMM step (floats of each thread's scratch, 64 MB): a
/// reduction so long that even one tile's columns exceed it (millions of input channels)
/// runs direct, in chunks, instead.
const GEMM_MAX_BAND_FLOATS: usize = 16 << 20;

/// Bands a pointwise GEMM aims at: enough for 2 threads to split evenly in whole bands (each
/// band is packed by the thread that claims it).
const GEMM_BANDS: usize = 16;

/// The narrowest band of a GEMM step whose weights exceed the core's L2: every band streams
/// all of them from L3 or memory, once per band, so a band of `n` positions does `n`
/// multiply-adds per weight it loads. One process each, alternating, one thread, AMD Zen4
/// (1 MB L2), bands of 32 against bands of at least 64: a 512 -> 512 3x3/2 layer at 7x7 (9.4
/// MB of weights, then one band of 49) 2.80 -> 2.50 ms, 1.57 -> 1.50 at two threads; 1024 ->
/// 2048 1x1/2 at 7x7 1.32 -> 1.07 at two threads; 512 -> 1024 1x1/2 at 14x14 2.17 -> 2.09;
/// 256 -> 256 3x3/2 at 14x14 the same (2.44).
const GEMM_STREAM_COLS: usize = 64;

/// Columns per tile of a wide row (see `ConvSpec::xtiles`).
const XTILE_COLS: usize = 32;

/// Bytes of packed weights per block in one chunk of a long reduction: the chunk's weights and
/// the input lines its taps read (one or two per tap) share the 48 KB L1. Measured, GFLOP/s on
/// one thread (resnet_block's 64 -> 64 3x3 at 56x56, 576 taps of 48 bytes; vgg_head's conv2_2,
/// 128 -> 128 at 112x112; inception_7x7's 7x1 layer): whole 49 / 44 / 43; 28 KB 49 / 45 / 52;
/// 24 KB 55 / 52 / 52; 20 KB 54 / 53 / 51; 16 KB 55-56 / 53 / 55; 12 KB 54 / 52 / 52; 8 KB
/// 54 / 49 / 54.
const CHUNK_BYTES: usize = 16 * 1024;

/// [`CHUNK_BYTES`] scaled to this host's L1 data cache (a third of it, 8 to 32 KB; 16 KB when
/// the size cannot be read). With the microkernels (AVX-512, 12 x 2 tiles) 8, 16, 24 and 32 KB
/// measured within noise of each other on a 48 KB L1 (resnet_block's layer 186-199 GFLOP/s).
/// `CONVC_L1D_BYTES` overrides the size read (the plan snapshots fix it, so that plans do not
/// depend on the machine that runs the tests).
fn chunk_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let forced = std::env::var("CONVC_L1D_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok());
        forced
            .or_else(l1d_bytes)
            .map_or(CHUNK_BYTES, |b| (b / 3).clamp(8 << 10, 32 << 10))
    })
}

/// The L1 data cache of CPU 0 in bytes, from Linux's sysfs.
fn l1d_bytes() -> Option<usize> {
    cache_bytes("1", "Data")
}

/// The size of CPU 0's cache of `level` and `kind` (`Data`, `Unified`), from Linux's sysfs.
fn cache_bytes(level: &str, kind: &str) -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|i| {
        let idx = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(idx.join(f)).ok();
        if read("level")?.trim() != level || read("type")?.trim() != kind {
            return None;
        }
        let size = read("size")?;
        let size = size.trim();
        let (num, mult) = match (size.strip_suffix('K'), size.strip_suffix('M')) {
            (Some(n), _) => (n, 1024),
            (_, Some(n)) => (n, 1024 * 1024),
            _ => (size, 1),
        };
        num.parse::<usize>().ok().map(|n| n * mult)
    })
}

/// Bytes of transformed input a Winograd work item keeps (`[n²][c][tiles]`): the core's L2
/// (512 KB when it cannot be read; `CONVC_L2_BYTES` overrides), since the GEMMs read it one
/// product's slice at a time while the weights stream.
fn wino_input_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| {
        let forced = std::env::var("CONVC_L2_BYTES")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok());
        forced
            .or_else(|| cache_bytes("2", "Unified"))
            .map_or(512 << 10, |b| b.clamp(128 << 10, 4 << 20))
    })
}

/// Whether a row of `ow` columns leaves more than a quarter of its last vectors' lanes idle
/// in a microkernel of `lanes`-float vectors (its last tile is masked, so only then do longer,
/// flat rows pay for losing the producer's padded layout).
fn wastes_lanes(ow: usize, lanes: usize) -> bool {
    let padded = ow.div_ceil(lanes) * lanes;
    4 * (padded - ow) > padded
}

/// Whether a flat row of padded rows (`wq` positions a row, `ow` of them kept) fills the
/// vector lanes better than rows of `ow` columns whose last vector is masked, by more than the
/// copy out of the scratch costs (taken as 3%): 56 columns of 16 lanes use 87.5% of them, 56
/// of 58 padded positions 96.6%.
fn flat_fills_more(ow: usize, wq: usize, lanes: usize) -> bool {
    let rows = ow as f64 / (ow.div_ceil(lanes) * lanes) as f64;
    let flat = ow as f64 / wq as f64;
    flat > rows + 0.03
}

/// The most chunks a long reduction is split into ([`CHUNK_BYTES`] each): each chunk is its
/// own code in the kernel (a 512 -> 512 3x3 conv takes 14), so a longer reduction (a 2048 ->
/// 2048 3x3 conv, or a 256x256 kernel) takes longer chunks instead of a kernel whose code
/// grows with its weights.
const MAX_CHUNKS: usize = 64;

/// The whole program for one image.
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub params: Vec<AlignedBuf>,
    /// Location of each node's value (by node index).
    pub loc: Vec<Option<Loc>>,
    /// Arena offset of each step's scratch buffer.
    pub scratch: Vec<usize>,
    pub arena_len: usize,
    /// Floats of the scratch buffer each thread brings (row buffers of fused kernels).
    pub thread_scratch: usize,
    /// Test mode ([`build`]'s `guard`): buffers against guard pages, at their ends (true) or
    /// starts; the arena's inaccessible pages (4096 bytes each) are `guard_pages`.
    pub guard: Option<bool>,
    pub guard_pages: Vec<usize>,
    /// Per-image `[C, H, W]` of each input and output.
    pub in_shapes: Vec<[usize; 3]>,
    pub out_shapes: Vec<[usize; 3]>,
}

/// The largest buffer one image may need: byte offsets inside a buffer are 32-bit immediates.
const MAX_BUFFER_FLOATS: usize = (i32::MAX as usize) / 4 - 64;

fn err(m: impl Into<String>) -> JitError {
    JitError::new(m)
}

struct Builder<'g> {
    g: &'g Graph,
    conc: &'g Concrete,
    fma: bool,
    /// The vector ISA of dense convolutions' reductions.
    isa: Isa,
    /// The algorithm of 3x3 stride-1 convolutions (see `crate::wino`).
    algo: crate::ConvAlgo,
    /// Winograd's transform width, forced (tests).
    wino_lanes: Option<usize>,
    /// Positions per band of the pointwise GEMM steps, forced (tests; 0: none).
    gemm_cols: Option<usize>,
    /// Band pairs whatever the row width (tests).
    pair_any_width: bool,
    steps: Vec<(usize, Step)>,
    params: Vec<AlignedBuf>,
}

/// The choices [`build`] follows.
pub(crate) struct Choices {
    /// Use fused multiply-add in convolutions.
    pub fma: bool,
    /// The widest vectors the dense convolutions may use (`Isa::Sse`: Cranelift's own code
    /// only).
    pub isa: Isa,
    /// The algorithm of 3x3 stride-1 convolutions.
    pub algo: crate::ConvAlgo,
    /// Test hooks: Winograd's transform width; positions per band of the pointwise GEMM
    /// steps (0: 1x1 convs run direct). See [`crate::JitOptions`].
    pub wino_lanes: Option<usize>,
    pub gemm_cols: Option<usize>,
    /// Test hook: band pairs whatever the row width (see [`crate::JitOptions`]).
    pub pair_any_width: bool,
    /// Test mode: every arena buffer in pages of its own, ending right before a `PROT_NONE`
    /// page (`Some(true)`) or starting right after one (`Some(false)`), no space reused.
    pub guard: Option<bool>,
}

/// Builds the plan.
///
/// The passes, in order: grouping and pairing ([`Builder::group_steps`]), the producer inside a
/// band pair ([`band_pre`]), layout agreement ([`pad_in_place`]), padded copies kept per
/// thread ([`private_pads`]), where values live ([`value_homes`]), buffer allocation ([`allocate`]) and the threads' scratch
/// ([`thread_scratch`]).
pub(crate) fn build(g: &Graph, conc: &Concrete, ch: &Choices) -> Result<Plan, JitError> {
    let guard = ch.guard;
    let order = g.topo_order();
    let needed = needed_nodes(g, &order)?;
    let mut len = value_lens(g, conc, &order, &needed)?;
    let mut b = Builder {
        g,
        conc,
        fma: ch.fma,
        isa: ch.isa,
        algo: ch.algo,
        wino_lanes: ch.wino_lanes,
        gemm_cols: ch.gemm_cols,
        pair_any_width: ch.pair_any_width,
        steps: Vec::new(),
        params: Vec::new(),
    };
    b.group_steps(&order, &needed)?;
    // Stable: the copies of one concat stay in operand order.
    b.steps.sort_by_key(|s| s.0);
    let steps: Vec<Step> = b.steps.into_iter().map(|s| s.1).collect();
    let mut steps = band_pre(g, steps);
    for (node, n) in pad_in_place(g, &mut steps) {
        len[node] = n;
    }
    concat_in_place(g, conc, &mut steps, &len);
    private_pads(&mut steps);
    let mut loc = value_homes(g, conc, &mut steps);
    let arena = allocate(&steps, &len, &mut loc, guard);
    let thread_scratch = thread_scratch(&steps);
    let shape = |n: NodeIndex| conc.get(n);
    Ok(Plan {
        guard,
        guard_pages: arena.guard_pages,
        steps,
        params: b.params,
        loc,
        scratch: arena.scratch,
        arena_len: arena.len,
        thread_scratch,
        in_shapes: g.inputs.iter().map(|&n| shape(n)).collect(),
        out_shapes: g.outputs.iter().map(|&n| shape(n)).collect(),
    })
}

/// Per node index, whether a network output depends on the node's value (the others get no
/// step). Errs on an output that is not a node of the graph.
fn needed_nodes(g: &Graph, order: &[NodeIndex]) -> Result<Vec<bool>, JitError> {
    let mut needed = vec![false; g.node_bound()];
    for &o in &g.outputs {
        if !g.g.contains_node(o) {
            return Err(err(
                "the graph lists an output that is not one of its nodes",
            ));
        }
        needed[o.index()] = true;
    }
    for &n in order.iter().rev() {
        if needed[n.index()] {
            for o in g.operands(n) {
                needed[o.index()] = true;
            }
        }
    }
    Ok(needed)
}

/// Per node index, the floats of its value per image; errs on a needed value larger than
/// [`MAX_BUFFER_FLOATS`].
fn value_lens(
    g: &Graph,
    conc: &Concrete,
    order: &[NodeIndex],
    needed: &[bool],
) -> Result<Vec<usize>, JitError> {
    let len: Vec<usize> = (0..g.node_bound())
        .map(|i| {
            let n = NodeIndex::new(i);
            if g.g.contains_node(n) {
                let [c, h, w] = conc.get(n);
                c.saturating_mul(h).saturating_mul(w)
            } else {
                0
            }
        })
        .collect();
    for &n in order {
        if needed[n.index()] && len[n.index()] > MAX_BUFFER_FLOATS {
            return Err(err(format!(
                "layer `{}` is too large for the JIT: {} values per image (at most {MAX_BUFFER_FLOATS})",
                g.node(n).name,
                len[n.index()]
            )));
        }
    }
    Ok(len)
}

/// Where each value lives: inputs in place, outputs written straight into the result tensors,
/// the rest in the arena (`None` here: [`allocate`] places them). An output that is an input,
/// or listed twice, is copied at the end: a copy step is appended to `steps` for it.
fn value_homes(g: &Graph, conc: &Concrete, steps: &mut Vec<Step>) -> Vec<Option<Loc>> {
    let mut loc: Vec<Option<Loc>> = vec![None; g.node_bound()];
    for (i, &n) in g.inputs.iter().enumerate() {
        loc[n.index()] = Some(Loc::Input(i));
    }
    for (j, &o) in g.outputs.iter().enumerate() {
        if loc[o.index()].is_none() {
            loc[o.index()] = Some(Loc::Output(j));
        } else {
            let [c, h, w] = conc.get(o);
            let spec = KernelSpec::Elt(EltSpec {
                c,
                hw: h * w,
                ep: Vec::new(),
            });
            let args = vec![Arg::Output(j), val(o), Arg::Null];
            let work_ns = (c * h * w) as f64 / work::VALUES_PER_NS_ELEMENTWISE;
            let name = format!("output{j}:{}", g.node(o).name);
            steps.push(Step::plain(name, spec, args, work_ns, 0, usize::MAX));
        }
    }
    loc
}

/// The arena's buffers as [`allocate`] places them.
struct Arena {
    /// The buffers alive at the current step: (offset, floats, last step that uses it).
    live: Vec<(usize, usize, usize)>,
    /// Floats of the arena so far.
    len: usize,
    /// Test mode (see [`build`]), and the guard pages placed.
    guard: Option<bool>,
    guard_pages: Vec<usize>,
    /// Arena offset of each step's scratch buffer.
    scratch: Vec<usize>,
}

impl Arena {
    /// Places a buffer of `n` floats alive until step `end`: in the first gap between live
    /// buffers that holds it (whole 64-byte lines), or in test mode in pages of its own
    /// ([`guarded_alloc`]). Returns its offset in floats.
    fn alloc(&mut self, n: usize, end: usize) -> usize {
        if let Some(at_end) = self.guard {
            return guarded_alloc(&mut self.len, &mut self.guard_pages, n, at_end);
        }
        let n = n.div_ceil(16) * 16;
        self.live.sort_by_key(|x| x.0);
        let mut cursor = 0;
        for &(off, l, _) in self.live.iter() {
            if off >= cursor + n {
                break;
            }
            cursor = cursor.max(off + l);
        }
        self.live.push((cursor, n, end));
        self.len = self.len.max(cursor + n);
        cursor
    }
}

/// Buffer allocation: first fit over live intervals. A value lives from the first step that
/// writes it to the last step that touches it, a step's scratch buffer (its padded copy) for
/// that step only. Places every value without a home in `loc` (of `len` floats).
fn allocate(steps: &[Step], len: &[usize], loc: &mut [Option<Loc>], guard: Option<bool>) -> Arena {
    let bound = loc.len();
    let mut last = vec![0usize; bound];
    let mut first = vec![usize::MAX; bound];
    for (s, st) in steps.iter().enumerate() {
        if st.writes < bound {
            first[st.writes] = first[st.writes].min(s);
            last[st.writes] = last[st.writes].max(s);
        }
        for r in st.reads() {
            if r < bound {
                last[r] = last[r].max(s);
            }
        }
    }
    let mut arena = Arena {
        live: Vec::new(),
        len: 0,
        guard,
        guard_pages: Vec::new(),
        scratch: vec![0; steps.len()],
    };
    for (s, st) in steps.iter().enumerate() {
        arena.live.retain(|x| x.2 >= s);
        if let Some(p) = st.pad.as_ref().filter(|_| st.pad_private.is_none()) {
            arena.scratch[s] = arena.alloc(p.len(), s);
        }
        let w = st.writes;
        if w < bound && first[w] == s && loc[w].is_none() {
            loc[w] = Some(Loc::Arena(arena.alloc(len[w], last[w])));
        }
    }
    arena
}

/// Floats of the scratch buffer each thread brings: the most any step needs (a separable
/// pair's row buffer, Winograd's transforms, a band pair's buffers, a chunked kernel's partial
/// sums, a padding tile).
fn thread_scratch(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| match (s.pad_private, &s.pad) {
            (Some(off), Some(p)) => off + scratch_span(p.len()),
            _ => step_scratch(s),
        })
        .max()
        .unwrap_or(0)
}

/// Floats of thread scratch step `s`'s kernel needs, from float 0.
fn step_scratch(s: &Step) -> usize {
    match &s.spec {
        KernelSpec::Sep(sp) => scratch_span(sp.rowbuf_len()),
        KernelSpec::Wino(ws) => ws.scratch_len() + 16,
        KernelSpec::Gemm(gs) => gs.scratch_len() + 16,
        _ if s.band.is_some() => s.band.as_ref().map_or(0, |b| b.scratch_len()),
        KernelSpec::Conv(cs) if cs.part_slot > 0 => match s.args.get(cs.part_slot) {
            Some(Arg::ThreadScratchAt(off)) => off + cs.part_len() + 16,
            _ => 0,
        },
        _ => s.tile.as_ref().map_or(0, |t| scratch_span(t.len())),
    }
}

/// Bytes of padded input a thread copies into its own scratch ([`private_pads`]): half the
/// core's L2, so that the copy, the weights the items stream and the output stay there.
fn private_pad_bytes() -> usize {
    wino_input_bytes() / 2
}

/// Marks the steps whose padded input every thread writes into its own scratch
/// (`Step::pad_private`): every one whose copy fits in [`private_pad_bytes`]. A copy in the
/// arena is written by all threads, a share each, and read whole by each of them: each core
/// then fetches the lines the other wrote, and, on the next image, takes back the lines the
/// other still holds before it can write them. On an AMD Zen4 at 2 threads, inception_7x7's
/// 1x7 layer (a 174 KB copy) spent 30-170 us per image padding, against 20 us on one thread,
/// and its items ran 1.3x slower than on one thread; the layer as a whole ran no faster than
/// on one thread in about half the processes, depending on where its pages fell. A thread's
/// own copy costs each thread the whole copy instead of a share, which is small beside a
/// convolution's reads of it.
fn private_pads(steps: &mut [Step]) {
    for s in steps.iter_mut() {
        let own =
            matches!(s.args.get(1), Some(Arg::Scratch)) && s.tile.is_none() && s.band.is_none();
        let fits = s
            .pad
            .as_ref()
            .is_some_and(|p| p.len() * 4 <= private_pad_bytes());
        if own && fits {
            s.pad_private = Some(step_scratch(s).next_multiple_of(16));
        }
    }
}

/// Places a buffer of `n` floats at the end of the arena (`arena_len` floats, whole pages) in
/// pages of its own next to a new guard page: after it (`at_end`) or before it. Returns its
/// offset in floats.
fn guarded_alloc(arena_len: &mut usize, guards: &mut Vec<usize>, n: usize, at_end: bool) -> usize {
    const PAGE_FLOATS: usize = crate::buf::PAGE / 4;
    let first = arena_len.div_ceil(PAGE_FLOATS);
    let pages = n.div_ceil(PAGE_FLOATS).max(1);
    if at_end {
        guards.push(first + pages);
        *arena_len = (first + pages + 1) * PAGE_FLOATS;
        (first + pages) * PAGE_FLOATS - n
    } else {
        guards.push(first);
        *arena_len = (first + 1 + pages) * PAGE_FLOATS;
        (first + 1) * PAGE_FLOATS
    }
}

fn val(n: NodeIndex) -> Arg {
    Arg::Value {
        node: n.index(),
        off: 0,
    }
}

fn operand(g: &Graph, n: NodeIndex, i: usize) -> Result<NodeIndex, JitError> {
    g.operands(n).get(i).copied().ok_or_else(|| {
        err(format!(
            "layer `{}` lacks operand {}",
            g.node(n).name,
            i + 1
        ))
    })
}

/// The fusion groups the JIT follows: the `fuse` pass's (an empty list means no fusion at
/// all), or, when the passes did not run it, the same rule applied now. Either way the groups
/// come from `convc_ir::fusion`, the one place the rule is written.
fn fusion_groups(g: &Graph) -> Vec<convc_ir::fusion::FusionGroup> {
    match &g.fusion {
        Some(groups) => groups.clone(),
        None => convc_ir::fusion::plan(g),
    }
}

/// Per node index, the group it heads (an index into `groups`): a long chain is thousands of
/// groups, and a search per node would be quadratic.
fn group_heads(g: &Graph, groups: &[convc_ir::fusion::FusionGroup]) -> Vec<Option<usize>> {
    let mut heads = vec![None; g.node_bound()];
    for (i, grp) in groups.iter().enumerate() {
        if let Some(h) = grp.nodes.first().and_then(|h| heads.get_mut(h.index())) {
            h.get_or_insert(i);
        }
    }
    heads
}

/// The fusion groups ([`fusion_groups`]) and, per node index, the group it heads
/// ([`group_heads`]).
type GroupIndex<'a> = (&'a [convc_ir::fusion::FusionGroup], &'a [Option<usize>]);

/// The members absorbed after `start` (marked in `absorbed`), in order: those of the group
/// headed by `start` ([`fusion_groups`]), or none when it heads no group, when a rewrite
/// since broke the group, or when a member was taken or is not needed.
fn chain(
    g: &Graph,
    (groups, heads): GroupIndex<'_>,
    start: NodeIndex,
    needed: &[bool],
    absorbed: &mut [bool],
) -> Vec<NodeIndex> {
    let Some(grp) = heads
        .get(start.index())
        .copied()
        .flatten()
        .and_then(|i| groups.get(i))
    else {
        return Vec::new();
    };
    if !convc_ir::fusion::still_valid(g, grp) {
        return Vec::new();
    }
    let members: Vec<NodeIndex> = grp.nodes[1..].to_vec();
    if members
        .iter()
        .any(|m| absorbed[m.index()] || !needed[m.index()])
    {
        return Vec::new();
    }
    for m in &members {
        absorbed[m.index()] = true;
    }
    members
}

/// The horizontal conv `b` that the vertical conv `a` (with its fused `members`) can run
/// fused with (see [`SepSpec`]): `a` is KHx1 with one input channel per output channel, stride
/// 1 along the row, no horizontal padding and an epilogue without residual adds; its value
/// (or its group's) has a single use, by `b`, which is 1xKW, stride 1 along the row, without
/// vertical padding, with at most 8 input channels per group and 4 register blocks per group;
/// and every row of `a` that `b` reads has a tap inside the input.
#[allow(clippy::too_many_arguments)]
fn sep_partner(
    g: &Graph,
    conc: &Concrete,
    a: NodeIndex,
    ca: &Conv,
    members: &[NodeIndex],
    needed: &[bool],
    absorbed: &[bool],
    fma: bool,
) -> Option<NodeIndex> {
    let x = g.operands(a).first().copied()?;
    let [c, h, w] = conc.get(x);
    let [_, _, ow_a] = conc.get(a);
    if ca.kernel[1] != 1 || ca.stride[1] != 1 || ca.groups != c || ow_a != w {
        return None;
    }
    let [pt, _, pl, pr] = ca.pad.resolve(h, w, ca.kernel, ca.stride, ca.dilation);
    if pl != 0 || pr != 0 {
        return None;
    }
    if !epilogue_without_residual(g, members) {
        return None;
    }
    let tail = members.last().copied().unwrap_or(a);
    let (b, cb) = sole_conv_user(g, tail, needed, absorbed)?;
    let [cin_b, h_b, w_b] = conc.get(tail);
    let [ob, oh_b, _] = conc.get(b);
    if cb.kernel[0] != 1 || cb.stride[1] != 1 || cb.groups == 0 || cin_b % cb.groups != 0 {
        return None;
    }
    let [pt_b, pb_b, pl_b, pr_b] = cb.pad.resolve(h_b, w_b, cb.kernel, cb.stride, cb.dilation);
    let cg_b = cin_b / cb.groups;
    let og_b = ob / cb.groups;
    if pt_b != 0 || pb_b != 0 || cg_b > 8 || og_b.div_ceil(crate::spec::block_ocb(og_b, fma)) > 4 {
        return None;
    }
    // The kernel zeroes the row buffer's padding columns with straight-line stores.
    if cg_b.saturating_mul(pl_b.saturating_add(pr_b)) > MAX_SEP_PAD_STORES {
        return None;
    }
    // Every row of `a` that `b` reads has a tap inside the input.
    let span = ca.dilation[0] * (ca.kernel[0] - 1);
    let ok = (0..oh_b).all(|oy| {
        let base = (oy * cb.stride[0] * ca.stride[0]) as i64 - pt as i64;
        (0..=span)
            .step_by(ca.dilation[0])
            .any(|i| (0..h as i64).contains(&(base + i as i64)))
    });
    ok.then_some(b)
}

/// The most padding columns (times channels) of a fused separable pair's row buffer: the
/// kernel zeroes them with one store each, so a wider padding (`pad=(0, 1000)`) runs the two
/// convs apart instead of a kernel whose code grows with the padding.
const MAX_SEP_PAD_STORES: usize = 256;

/// True when a group's members are batchnorms and activations only (no residual add: its
/// operand would be read in the output's layout).
fn epilogue_without_residual(g: &Graph, members: &[NodeIndex]) -> bool {
    members
        .iter()
        .all(|&m| matches!(g.node(m).op, Op::BatchNorm(_) | Op::Unary(_)))
}

/// The depthwise conv (one input channel per group) that is the only user of `tail`'s value:
/// a band pair may then produce the value inside its band step ([`band_pre`]), row by row, so
/// that it never goes to memory; a pointwise GEMM step would write it whole (MobileNet's
/// expansion: 14.5 ms fused against 20.4 ms as a GEMM step, one thread).
fn depthwise_user(g: &Graph, tail: NodeIndex) -> Option<(NodeIndex, &Conv)> {
    if g.is_output(tail) {
        return None;
    }
    let mut edges = g.g.neighbors_directed(tail, Direction::Outgoing);
    let (Some(b), None) = (edges.next(), edges.next()) else {
        return None;
    };
    match &g.node(b).op {
        Op::Conv(c) if c.groups > 1 && c.weight.data.shape().get(1) == Some(&1) => Some((b, c)),
        _ => None,
    }
}

/// The conv that is the only user of `tail`'s value (one edge, its only operand), when the
/// value is not a network output and the conv is needed and not yet in a group.
fn sole_conv_user<'g>(
    g: &'g Graph,
    tail: NodeIndex,
    needed: &[bool],
    absorbed: &[bool],
) -> Option<(NodeIndex, &'g Conv)> {
    if g.is_output(tail) {
        return None;
    }
    let mut edges = g.g.neighbors_directed(tail, Direction::Outgoing);
    let (Some(b), None) = (edges.next(), edges.next()) else {
        return None;
    };
    if absorbed[b.index()] || !needed[b.index()] || g.operands(b) != [tail] {
        return None;
    }
    match &g.node(b).op {
        Op::Conv(cb) => Some((b, cb)),
        _ => None,
    }
}

/// The pointwise conv `b` that the depthwise conv `a` (with its fused `members`) can run fused
/// with, band by band ([`Band`]): `a` has at most 4 input channels per group and an epilogue
/// without residual adds, and more than one output row; its value (or its group's) is not an
/// output and has a single use, by `b`, a 1x1 conv with stride 1 and no padding. And either
/// `a`'s rows fill the `lanes` of `b`'s vectors ([`pair_fills_lanes`]) or `a`'s input may be
/// produced inside the band step ([`may_have_producer`]).
#[allow(clippy::too_many_arguments)]
fn band_partner(
    g: &Graph,
    conc: &Concrete,
    a: NodeIndex,
    ca: &Conv,
    members: &[NodeIndex],
    needed: &[bool],
    absorbed: &[bool],
    lanes: usize,
) -> Option<NodeIndex> {
    let x = g.operands(a).first().copied()?;
    let [c, _, _] = conc.get(x);
    if ca.groups == 0 || c % ca.groups != 0 || c / ca.groups > 4 {
        return None;
    }
    if !epilogue_without_residual(g, members) {
        return None;
    }
    let tail = members.last().copied().unwrap_or(a);
    let [_, h_b, w_b] = conc.get(tail);
    if h_b < 2 {
        return None;
    }
    let (b, cb) = sole_conv_user(g, tail, needed, absorbed)?;
    if cb.kernel != [1, 1] || cb.stride != [1, 1] {
        return None;
    }
    if !pair_fills_lanes(w_b, lanes) && !may_have_producer(g, x) {
        return None;
    }
    let pad = cb.pad.resolve(h_b, w_b, cb.kernel, cb.stride, cb.dilation);
    (pad == [0, 0, 0, 0]).then_some(b)
}

/// Whether rows of `w` columns fill at least 90% of their vectors of `lanes` floats. In a band
/// pair the pointwise kernel runs row by row, its last vector part empty; as a step of its own
/// it runs the plane flat. Depthwise 3x3 + pointwise pairs reading their input from memory
/// (AMD Zen4, AVX-512, one process each, alternating; medians in ms, paired -> two steps):
/// - at 56 wide (16-float vectors 87.5% full), 1 thread: lowrank_conv 0.438 -> 0.387, 96 -> 64
///   channels from 112x112 at stride 2 0.830 -> 0.726, 144 -> 24 0.581 -> 0.514;
/// - 192 -> 64 at 28 wide 0.367 -> 0.308, 384 -> 96 at 14 wide 0.365 -> 0.253;
/// - at 2 threads the same within the noise (0.21-0.43 against 0.19-0.42);
/// - full rows keep the pair: 64 -> 64 at 64 wide the same at 1 thread and 0.26 against 0.32
///   at 2; 32 -> 64 at 112 wide (stride 2 from 224) 1.35 against 1.46 at 1.
fn pair_fills_lanes(w: usize, lanes: usize) -> bool {
    let lanes = lanes.max(1);
    10 * w >= 9 * w.div_ceil(lanes) * lanes
}

/// Whether value `x` may come from a pointwise conv that [`band_pre`] moves into a band step:
/// `x` is a 1x1 conv's value, or a chain of batchnorms and activations of one.
fn may_have_producer(g: &Graph, mut x: NodeIndex) -> bool {
    loop {
        match &g.node(x).op {
            Op::Conv(c) => return c.kernel == [1, 1],
            Op::BatchNorm(_) | Op::Unary(_) => match g.operands(x).first() {
                Some(&p) => x = p,
                None => return false,
            },
            _ => return false,
        }
    }
}

/// Per-channel `scale`, `shift` of a batchnorm (in f64, rounded once).
fn bn_affine(bn: &BatchNorm, c: usize) -> Result<(Vec<f64>, Vec<f64>), JitError> {
    let (m, v, ga, be) = (
        bn.mean.data.data(),
        bn.var.data.data(),
        bn.gamma.data.data(),
        bn.beta.data.data(),
    );
    if m.len() != c || v.len() != c || ga.len() != c || be.len() != c {
        return Err(err(format!(
            "batchnorm parameters do not have {c} channels"
        )));
    }
    let eps = f64::from(bn.eps);
    let mut s = Vec::with_capacity(c);
    let mut t = Vec::with_capacity(c);
    for i in 0..c {
        let sc = f64::from(ga[i]) / (f64::from(v[i]) + eps).sqrt();
        s.push(sc);
        t.push(f64::from(be[i]) - f64::from(m[i]) * sc);
    }
    Ok((s, t))
}

/// A conv's sizes, checked against each other ([`Builder::conv_geom`]). After a plane is
/// flattened into longer rows ([`flat_rows`]), a copy with the kernel's `oh`, `ow` and `sh`
/// stands for the plane as the kernel sees it.
#[derive(Clone, Copy, Debug)]
struct ConvGeom {
    /// The input value.
    x: NodeIndex,
    /// Input channels, rows and columns.
    c: usize,
    h: usize,
    w: usize,
    /// Output channels, rows and columns.
    oc: usize,
    oh: usize,
    ow: usize,
    /// Kernel, stride and dilation (rows, columns).
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    /// Groups, and input and output channels per group.
    groups: usize,
    cg: usize,
    og: usize,
    /// Padding (top, bottom, left, right), and the padded input's rows and columns.
    pt: usize,
    pb: usize,
    pl: usize,
    pr: usize,
    hp: usize,
    wp: usize,
}

impl ConvGeom {
    /// Taps of one output's reduction.
    fn taps(&self) -> usize {
        self.cg * self.kh * self.kw
    }
}

/// A conv kernel's register block ([`Builder::blocking`]).
#[derive(Clone, Copy, Debug)]
struct Blocking {
    /// The microkernels' path, or `None` for Cranelift's own code.
    wide: Option<Isa>,
    /// Output channels per block, and blocks per group.
    ocb: usize,
    nb: usize,
    /// Copies of each packed weight (see `ConvSpec::wdup`).
    dup: usize,
    /// Columns of one register tile.
    vw: usize,
    /// Vectors per row segment of Cranelift's tile.
    v: usize,
}

impl Blocking {
    /// Bytes of one packed tap of a block ([`crate::packed`]).
    fn tap_bytes(&self) -> usize {
        crate::packed::tap_bytes(self.ocb, self.dup)
    }
}

/// Where a conv's input is read from and how the kernel walks its rows ([`conv_layout`]).
#[derive(Debug)]
struct ConvLayout {
    /// The plane as the kernel sees it (see [`ConvGeom`]).
    kg: ConvGeom,
    /// See `ConvSpec::flat_pad` and `ConvSpec::dw_rows`.
    flat_pad: usize,
    dw_rows: usize,
    /// See `ConvSpec::dw_plane`: the whole plane one item, the input unpadded.
    dw_plane: bool,
    /// Output rows per work item.
    rows: usize,
    /// The whole padded copy, or the per-band padding, if the input is padded.
    pad: Option<PadCopy>,
    tile: Option<Tile>,
    /// The input's strides as the kernel reads it (floats), and its padded row length.
    row_stride: usize,
    chan_stride: usize,
    wq: usize,
}

/// Values a row reaches when a conv's plane runs as longer rows ([`flat_rows`]): shorter rows
/// flatten, at least this long ones are long enough already.
const FLAT_ROW: usize = 256;

/// Positions a work item of a flat padded row holds (`ConvSpec::flat_pad`): the whole of a
/// 7x7 or 14x14 plane.
const FLAT_PAD_POSITIONS: usize = 512;

/// Input channels per group up to which a padded conv pads per band of rows into the
/// thread's scratch ([`Tile`]) instead of copying its whole input (depthwise convs, an
/// image's 3 channels); a band pair's depthwise conv must pad this way ([`band_partner`]).
const TILE_MAX_CG: usize = 4;

/// Output rows one band of a padding tile aims at (in whole row groups of an item's rows).
const TILE_BAND_ROWS: usize = 16;

/// The most register blocks of vectors one item of packed short rows may hold (Cranelift's
/// code; see [`item_rows`]).
const MAX_PACKED_BLOCKS: usize = 16;

/// The most vectors of several rows one item of a long reduction packs on a small plane.
const MAX_PACKED_VECTORS: usize = 16;

/// The most reductions of code a kernel of packed rows of a long reduction may hold
/// (positions x full/last block x full/short last item): this bounds compile time (a 17-wide
/// layer packed 3 rows a kernel of 60: 27 ms to compile).
const MAX_PACKED_REDUCTIONS: usize = 48;

/// The zero-bordered copy a conv reads when it pads or strides along the row (rows split into
/// `sw` phases of `wq`), channels outermost until [`pad_layout`] decides.
fn whole_pad(g: &ConvGeom) -> Option<PadCopy> {
    (g.pt + g.pb + g.pl + g.pr > 0 || g.sw > 1).then(|| PadCopy {
        src: g.x.index(),
        c: g.c,
        h: g.h,
        w: g.w,
        pt: g.pt,
        pl: g.pl,
        hp: g.hp,
        sw: g.sw,
        wq: g.wp.div_ceil(g.sw),
        hcw: false,
        tail: 0,
    })
}

/// Input rows per kernel row when a plane runs as longer rows, or `None`. A plane whose output
/// and input rows are both contiguous (a KHx1 conv, stride 1, no horizontal padding: `in_rs`,
/// the input's row stride, equals `ow`) runs as fewer, longer vector segments than short rows
/// (17 columns are 4 vectors and a partial one; the 289 of a 17x17 plane are 72). Only rows
/// that leave a partial register block: whole-block rows are as fast as they are, and keep a
/// short row's inputs in L1. The rows reach [`FLAT_ROW`] values: `k` rows, `k` the smallest
/// divisor of `oh` that makes them (several rows per plane keep work items for threads, each
/// reading a part of the input: 56x56 = 8 rows of 392).
fn flat_rows(g: &ConvGeom, role: BandRole, in_rs: usize, blk: &Blocking) -> Option<usize> {
    let flat = role == BandRole::Alone
        && g.kw == 1
        && g.sw == 1
        && g.sh == 1
        && in_rs == g.ow
        && g.oh > 1
        && g.ow < FLAT_ROW
        && !g.ow.is_multiple_of(blk.vw)
        && blk.wide.is_none_or(|isa| wastes_lanes(g.ow, isa.lanes()));
    // A row of the kernel is `k` rows of the input: its stride between rows is `k`.
    flat.then(|| {
        (1..=g.oh)
            .find(|k| g.oh.is_multiple_of(*k) && k * g.ow >= FLAT_ROW)
            .unwrap_or(g.oh)
    })
}

/// The padded row length a microkernel on a narrow padded plane (7 of 16 lanes filled on a
/// 7x7 plane) runs its rows as one flat row of, padding columns included (their results are
/// dropped: the item's sums go to the thread's scratch, then the epilogue copies the valid
/// columns out, `ConvSpec::flat_pad`); 0 for one row per item (the last tile masked). The rows
/// share their padding columns ([`shared_gap_row`]), so fewer of the positions computed are
/// dropped.
fn flat_pad_width(pad: Option<&PadCopy>, kg: &ConvGeom, blk: &Blocking, role: BandRole) -> usize {
    let row = shared_gap_row(kg);
    match (pad, blk.wide) {
        (Some(_), Some(isa))
            if kg.sh == 1
                && kg.sw == 1
                && kg.cg > TILE_MAX_CG
                && kg.oh > 1
                && role == BandRole::Alone
                && row > kg.ow
                && flat_fills_more(kg.ow, row, isa.lanes()) =>
        {
            row
        }
        _ => 0,
    }
}

/// The row length of a padded stride-1 layout whose rows share their padding columns: `w`
/// columns and a gap of `max(pl, pr)` zeros that is both this row's right padding and the
/// next row's left padding (each row's columns still start at `pl`). A 1x7 conv on a 17x17
/// plane computes rows of 20 positions instead of 23, 17 of them kept. Its windows read
/// `min(pl, pr)` floats past a row's end (`PadCopy::tail`). Rows that short would put a
/// row's last tap where the next row's first one is (`ow <= min(pl, pr)`), and a zero step
/// between taps ends the microkernels' weight stream ([`crate::packed`]): those keep the whole
/// padded width.
fn shared_gap_row(kg: &ConvGeom) -> usize {
    if kg.ow > kg.pl.min(kg.pr) {
        kg.w + kg.pl.max(kg.pr)
    } else {
        kg.pl + kg.w + kg.pr
    }
}

/// Rows a call of a depthwise 3x3, 5x5 or 7x7 kernel on a wide path computes, sharing their
/// input rows (`ConvSpec::dw_rows`): 4, or in a band pair as many as divide the band; 0 for
/// other convs.
fn dw_rows(kg: &ConvGeom, blk: &Blocking, flat: bool, flat_pad: usize, role: BandRole) -> usize {
    let dw = blk.wide.is_some()
        && kg.cg == 1
        && kg.og == 1
        && matches!(kg.kh, 3 | 5 | 7)
        && kg.kw == kg.kh
        && kg.dh == 1
        && (kg.sh == 1 || kg.sh == 2)
        && !flat
        && flat_pad == 0
        && kg.oh >= 2;
    if !dw {
        return 0;
    }
    match role {
        BandRole::Writes(r) | BandRole::Reads(r) => {
            [4, 2].into_iter().find(|k| r % k == 0).unwrap_or(0)
        }
        BandRole::Alone => 4,
    }
}

/// Output positions of a plane up to which a depthwise conv on a wide path runs a channel's
/// whole plane in one call ([`dw_plane`]): 192 channels at 28x28 ran twice as fast as by rows
/// (0.096 -> 0.047 ms), a MobileNetV2 block at 32x32 the same.
const DW_PLANE_POSITIONS: usize = 1024;

/// Whether a depthwise conv runs one call per channel's whole plane on the unpadded input
/// (`ConvSpec::dw_plane`): a KxK window (3, 5, 7), the same stride 1 or 2 on both axes, no
/// vertical dilation, output rows that fit two vectors ([`crate::wide::dw_plane_fits`]) and a
/// plane of at most [`DW_PLANE_POSITIONS`], a step of its own. Small planes spent more on
/// each channel's padded copy and calls than on its sums: 960 channels at 7x7 took 0.085 ms
/// by rows of 4 (ORT 0.036).
fn dw_plane(g: &ConvGeom, blk: &Blocking, role: BandRole) -> bool {
    blk.wide
        .is_some_and(|isa| crate::wide::dw_plane_fits(isa, g.ow))
        && role == BandRole::Alone
        && g.cg == 1
        && g.og == 1
        && matches!(g.kh, 3 | 5 | 7)
        && g.kw == g.kh
        && g.sh == g.sw
        && (g.sh == 1 || g.sh == 2)
        && g.dh == 1
        && g.oh.saturating_mul(g.ow) <= DW_PLANE_POSITIONS
}

/// Output rows per work item: a flat padded row's share of [`FLAT_PAD_POSITIONS`]; one on a
/// wide path; in Cranelift's code, packed short rows ([`packed_short_rows`]) or packed rows of
/// a long reduction ([`packed_long_rows`]); a depthwise kernel's `dw_rows`. In a band pair an
/// item's rows must not straddle two bands.
fn item_rows(
    kg: &ConvGeom,
    blk: &Blocking,
    flat_pad: usize,
    dw_rows: usize,
    role: BandRole,
) -> usize {
    let (v, oh) = (blk.v, kg.oh);
    let vpr = if kg.ow >= 4 { kg.ow.div_ceil(4) } else { 0 };
    // A long reduction (see `CHUNK_BYTES`).
    let long = kg.taps() * blk.tap_bytes() > chunk_bytes();
    let mut rows = if let Some(per_row) = FLAT_PAD_POSITIONS.checked_div(flat_pad) {
        per_row.clamp(1, oh)
    } else if blk.wide.is_some() {
        1
    } else if vpr > 0 && vpr % v != 0 && vpr <= 4 * v && oh > 1 {
        packed_short_rows(vpr, v, oh)
    } else if long
        && v == 1
        && vpr > 0
        && (kg.ow % 4 >= 2 || vpr <= 2)
        && oh > 1
        && role == BandRole::Alone
    {
        // Only where a row alone wastes much (7 columns: a vector and 3 scalar columns).
        packed_long_rows(vpr, oh, !kg.og.is_multiple_of(blk.ocb))
    } else {
        1
    };
    if dw_rows > 0 {
        rows = dw_rows;
    }
    if let BandRole::Writes(r) | BandRole::Reads(r) = role
        && r % rows != 0
    {
        rows = 1;
    }
    rows
}

/// Short rows whose `vpr` vectors do not fill whole register blocks of `v` (17 columns = 5
/// vectors, the last overlapping: 3 blocks of 2 vectors, one half empty): the vectors of as
/// many rows as make whole blocks (2 rows = 5 full blocks), at most [`MAX_PACKED_BLOCKS`].
fn packed_short_rows(vpr: usize, v: usize, oh: usize) -> usize {
    let r = (1..=v)
        .find(|r| (r * vpr).is_multiple_of(v))
        .unwrap_or(v)
        .min(oh);
    if r * vpr / v <= MAX_PACKED_BLOCKS {
        r
    } else {
        1
    }
}

/// A long reduction on a small plane packs up to [`MAX_PACKED_VECTORS`] vectors of several
/// rows into one item, so that each chunk of weights serves all of them (partial sums in the
/// thread's scratch: `ConvSpec::part_slot`): a 7x7 plane is 2 vectors a row, and each weight
/// would otherwise serve 2. At most [`MAX_PACKED_REDUCTIONS`] reductions of code (`short_block`:
/// the last block is shorter; an `oh` the rows do not divide has a short last item).
fn packed_long_rows(vpr: usize, oh: usize, short_block: bool) -> usize {
    let nb_rem = if short_block { 2 } else { 1 };
    let mut r = (MAX_PACKED_VECTORS / vpr).clamp(1, oh);
    while r > 1
        && r * vpr * nb_rem * if oh.is_multiple_of(r) { 1 } else { 2 } > MAX_PACKED_REDUCTIONS
    {
        r -= 1;
    }
    r
}

/// Where a padded input lives. Few input channels per group ([`TILE_MAX_CG`]: depthwise, or an
/// image's 3) pad per band of rows into the thread's scratch instead of copying the whole
/// input first (the kernel's items block-major, so that consecutive items read the same rows;
/// with several blocks the runtime runs them band-major, [`Tile::band_major`]; the kernel then
/// sees channels `tile_rows` rows apart). A whole copy for many channels that is not read
/// as long rows (`flat`, `flat_pad`) has rows outermost.
fn pad_layout(
    pad: Option<PadCopy>,
    kg: &ConvGeom,
    nb: usize,
    rows: usize,
    (flat, flat_pad): (bool, usize),
) -> (Option<PadCopy>, Option<Tile>) {
    match pad {
        Some(p) if kg.cg <= TILE_MAX_CG && kg.oh > 1 && !flat => {
            let tile = Tile {
                per_group: nb * kg.oh.div_ceil(rows),
                nb,
                groups: kg.groups,
                row_groups: kg.oh.div_ceil(rows),
                rows,
                sh: kg.sh,
                span: kg.dh * (kg.kh - 1) + 1,
                band: (TILE_BAND_ROWS / rows).max(1),
                oh: kg.oh,
                cg: kg.cg,
                pad: p,
            };
            (None, Some(tile))
        }
        Some(mut p) => {
            p.hcw = !flat && flat_pad == 0;
            (Some(p), None)
        }
        None => (None, None),
    }
}

/// Taps per chunk of a reduction: whole, unless a block's packed weights outgrow
/// [`chunk_bytes`] (see `ConvSpec::chunk_taps`; not with rows packed into blocks in a band
/// pair), then at most [`MAX_CHUNKS`] chunks. Packed rows loop over their chunks at run time:
/// equal chunks (a count that divides the taps, up to twice as many) need no separate last
/// chunk.
fn chunk_taps(taps: usize, tap_bytes: usize, rows: usize, role: BandRole) -> usize {
    if (rows == 1 || role == BandRole::Alone) && taps * tap_bytes > chunk_bytes() {
        let n = (taps * tap_bytes).div_ceil(chunk_bytes()).min(MAX_CHUNKS);
        let even = (rows > 1)
            .then(|| (n..=2 * n).find(|k| taps.is_multiple_of(*k)))
            .flatten();
        taps.div_ceil(even.unwrap_or(n))
    } else {
        taps
    }
}

/// The first slots of a conv step's buffer table (`SLOT_EXTRA` of them: output, input,
/// weights). Null where the runtime sets the pointer per band: a band pair's band buffer, a
/// padding tile; a whole padded copy is the step's scratch.
fn conv_args(
    role: BandRole,
    (tail, x): (NodeIndex, NodeIndex),
    (padded, tiled): (bool, bool),
    wslot: usize,
) -> Vec<Arg> {
    let args = vec![
        if matches!(role, BandRole::Writes(_)) {
            Arg::Null
        } else {
            val(tail)
        },
        if padded {
            Arg::Scratch
        } else if tiled || matches!(role, BandRole::Reads(_)) {
            Arg::Null
        } else {
            val(x)
        },
        Arg::Param(wslot),
    ];
    debug_assert_eq!(args.len(), SLOT_EXTRA);
    args
}

/// A conv's bias in f64 (the epilogue merges it into a following batchnorm's shift).
fn conv_bias(conv: &Conv) -> Option<Vec<f64>> {
    conv.bias
        .as_ref()
        .map(|b| b.data.data().iter().map(|&v| f64::from(v)).collect())
}

/// The order of a conv's work items: the memory traffic of the two (bytes) decides,
/// block-major streaming the input once per block, row-major streaming the `w_floats` of
/// weights once per output row. A band's items must be consecutive: row-major when reading
/// bands; a tile's block-major.
fn row_major(g: &ConvGeom, role: BandRole, tiled: bool, w_floats: usize, nb: usize) -> bool {
    let in_bytes = (g.c * g.hp * g.wp * 4) as f64;
    let w_bytes = (w_floats * 4) as f64;
    matches!(role, BandRole::Reads(_))
        || (!tiled
            && !matches!(role, BandRole::Writes(_))
            && in_bytes + g.oh as f64 * w_bytes < w_bytes + nb as f64 * in_bytes)
}

/// Column tiles of a wide row of a chunked reduction in row-major order (see
/// `ConvSpec::xtiles`): `(tiles, columns per tile)`, the columns [`XTILE_COLS`] rounded up to
/// whole register tiles of `vw`.
fn xtiles(
    kg: &ConvGeom,
    role: BandRole,
    row_major: bool,
    chunked: bool,
    rows: usize,
    vw: usize,
) -> (usize, usize) {
    let cols = XTILE_COLS.div_ceil(vw) * vw;
    let tiles = if row_major && role == BandRole::Alone && rows == 1 && chunked && kg.ow >= 2 * cols
    {
        kg.ow.div_ceil(cols)
    } else {
        1
    };
    (tiles, cols)
}

/// How a conv's kernel walks its input: long rows ([`flat_rows`], [`flat_pad_width`]),
/// rows per item ([`dw_rows`], [`item_rows`]), where the padded input lives
/// ([`pad_layout`]) and the strides the kernel reads it with. `Err`: an internal
/// inconsistency, described.
fn conv_layout(g: &ConvGeom, blk: &Blocking, role: BandRole) -> Result<ConvLayout, &'static str> {
    if dw_plane(g, blk, role) {
        return Ok(ConvLayout {
            kg: *g,
            flat_pad: 0,
            dw_rows: 0,
            dw_plane: true,
            rows: g.oh,
            pad: None,
            tile: None,
            row_stride: g.w,
            chan_stride: g.h * g.w,
            wq: g.w,
        });
    }
    let pad = whole_pad(g);
    if pad.as_ref().is_some_and(|p| p.len() > MAX_BUFFER_FLOATS) {
        return Err("the padded input is too large for the JIT");
    }
    let in_rs = pad.as_ref().map_or(g.w, |p| p.row_stride());
    let k = flat_rows(g, role, in_rs, blk);
    let kg = match k {
        Some(k) => ConvGeom {
            oh: g.oh / k,
            ow: k * g.ow,
            sh: k,
            ..*g
        },
        None => *g,
    };
    let flat = k.is_some();
    let flat_pad = flat_pad_width(pad.as_ref(), &kg, blk, role);
    let mut pad = pad;
    if let Some(p) = pad.as_mut().filter(|_| flat_pad > 0) {
        // The padded width less the shared row: `min(pl, pr)` where rows share their gap.
        p.tail = p.wq.saturating_sub(flat_pad);
        p.wq = flat_pad;
    }
    let dw_rows = dw_rows(&kg, blk, flat, flat_pad, role);
    let rows = item_rows(&kg, blk, flat_pad, dw_rows, role);
    let (pad, tile) = pad_layout(pad, &kg, blk.nb, rows, (flat, flat_pad));
    let (row_stride, full_chan_stride, wq) = match (&pad, &tile) {
        (Some(p), _) => (p.row_stride(), p.chan_stride(), p.wq),
        (None, Some(t)) => (t.pad.row_stride(), t.pad.chan_stride(), t.pad.wq),
        (None, None) => (g.w, g.h * g.w, g.w),
    };
    let chan_stride = match (&tile, role) {
        (Some(t), _) => t.rows_per_channel() * row_stride,
        // The band buffer of a depthwise conv (`[c][r][w]`, unpadded: see `band_partner`).
        (None, BandRole::Reads(r)) if pad.is_none() => r * row_stride,
        (None, BandRole::Reads(_)) => {
            return Err("internal error: a padded conv reading a band");
        }
        (None, _) => full_chan_stride,
    };
    Ok(ConvLayout {
        kg,
        flat_pad,
        dw_rows,
        dw_plane: false,
        rows,
        pad,
        tile,
        row_stride,
        chan_stride,
        wq,
    })
}

/// A direct conv step's estimated time on one thread (`Step::work_ns`): its `macs` at the
/// dense rate of its path, slower for the whole-plane depthwise kernel, plus a per-band
/// tile's copy of the padded input (once, more where bands overlap: a 3x3 depthwise layer of
/// 384 channels at 14x14 was estimated at 28 us and ran alone on one thread in about 95 us,
/// two thirds of them padding).
fn conv_work_ns(macs: u64, blk: &Blocking, l: &ConvLayout) -> f64 {
    let copy = l.tile.as_ref().map_or(0.0, |t| {
        (t.pad.c * t.pad.hp * t.pad.row_len()) as f64 / work::VALUES_PER_NS_ELEMENTWISE
    });
    let dense = work::dense_ns(macs as f64, blk.wide.map_or(4, |i| i.lanes()));
    let slowdown = if l.dw_plane {
        work::DW_PLANE_SLOWDOWN
    } else {
        1.0
    };
    dense * slowdown + copy
}

/// The vertical conv of a separable pair ([`SepSpec`]): `KHx1` over one input channel per
/// group (`c` groups of `og` outputs), reading the `[c][h][w]` input directly; one channel a
/// block, one row an item, the whole reduction in one chunk.
fn sep_spec_a(
    ca: &Conv,
    [c, h, w]: [usize; 3],
    [og, oh, ow]: [usize; 3],
    dup: usize,
    ep: Vec<Ep>,
    (fma, wide): (bool, Option<Isa>),
) -> ConvSpec {
    let kh = ca.kernel[0];
    ConvSpec {
        groups: c,
        cg: 1,
        og,
        oh,
        ow,
        kh,
        kw: 1,
        sh: ca.stride[0],
        sw: 1,
        dh: ca.dilation[0],
        dw: 1,
        row_stride: w,
        chan_stride: h * w,
        wq: w,
        ocb: 1,
        ep,
        fma,
        wdup: dup,
        rows: 1,
        row_major: false,
        out_cs: oh * ow,
        out_rs: ow,
        chunk_taps: kh,
        xtiles: 1,
        xtile_cols: ow,
        part_slot: 0,
        wide,
        flat_pad: 0,
        dw_rows: 0,
        dw_plane: None,
        in_ring: 0,
    }
}

/// The horizontal conv of a separable pair ([`SepSpec`]): `1xKW` over `cg` channels per group,
/// reading the row buffer (a padded row of `rb` floats per channel) in `blk`'s blocks; one row
/// an item, the whole reduction in one chunk.
fn sep_spec_b(
    cb: &Conv,
    [cg, og, oh, ow]: [usize; 4],
    rb: usize,
    blk: &Blocking,
    ep: Vec<Ep>,
    fma: bool,
) -> ConvSpec {
    let kw = cb.kernel[1];
    ConvSpec {
        groups: cb.groups,
        cg,
        og,
        oh,
        ow,
        kh: 1,
        kw,
        sh: cb.stride[0],
        sw: 1,
        dh: 1,
        dw: cb.dilation[1],
        row_stride: rb,
        chan_stride: rb,
        wq: rb,
        ocb: blk.ocb,
        ep,
        fma,
        wdup: blk.dup,
        rows: 1,
        row_major: false,
        out_cs: oh * ow,
        out_rs: ow,
        chunk_taps: cg * kw,
        xtiles: 1,
        xtile_cols: ow,
        part_slot: 0,
        wide: blk.wide,
        flat_pad: 0,
        dw_rows: 0,
        dw_plane: None,
        in_ring: 0,
    }
}

/// A `pad` step's parameters (`rstep`'s pad over a `[c, ih, iw]` input): sizes, sides, mode,
/// constant. Errs where reflect padding reaches past the input, or where reflect or edge
/// padding has an empty plane to copy from.
fn pad_params(
    name: &str,
    p: &convc_ir::PadOp,
    [c, ih, iw]: [usize; 3],
) -> Result<Vec<i64>, JitError> {
    let [t, b, l, r] = p.pads;
    if p.mode == convc_ir::PadMode::Reflect && (t.max(b) >= ih || l.max(r) >= iw) {
        return Err(err(format!(
            "layer `{}`: reflect padding needs each side below the input size {ih}x{iw}",
            name
        )));
    }
    if p.mode != convc_ir::PadMode::Constant && ih * iw == 0 {
        return Err(err(format!("layer `{}`: an empty plane has no edge", name)));
    }
    let mode = match p.mode {
        convc_ir::PadMode::Constant => 0,
        convc_ir::PadMode::Reflect => 1,
        convc_ir::PadMode::Edge => 2,
    };
    let mut v: Vec<i64> = [c, ih, iw, t, b, l, r].iter().map(|&u| u as i64).collect();
    v.extend([mode, i64::from(p.value.to_bits())]);
    Ok(v)
}

/// An `upsample` step's parameters (`rstep`'s upsample of a `[c, ih, iw]` input): sizes,
/// scales, mode (bilinear or not) and coordinate convention.
fn upsample_params(u: &convc_ir::Upsample, [c, ih, iw]: [usize; 3]) -> Vec<i64> {
    let mode = i64::from(u.mode == convc_ir::UpMode::Bilinear);
    let coords = match u.coords {
        convc_ir::Coords::HalfPixel => 0,
        convc_ir::Coords::Asymmetric => 1,
        convc_ir::Coords::AlignCorners => 2,
    };
    let mut v: Vec<i64> = [c, ih, iw, u.scale[0], u.scale[1]]
        .iter()
        .map(|&u| u as i64)
        .collect();
    v.extend([mode, coords]);
    v
}

impl Builder<'_> {
    /// Grouping and pairing: in topological order, one step per fusion group of needed nodes
    /// ([`chain`], from `convc_ir::fusion` alone), a conv's group perhaps paired with its
    /// consumer's ([`Self::conv_group_step`]). Each step is pushed with the position of its
    /// last member, where it runs.
    fn group_steps(&mut self, order: &[NodeIndex], needed: &[bool]) -> Result<(), JitError> {
        let g = self.g;
        let mut pos = vec![usize::MAX; g.node_bound()];
        for (i, n) in order.iter().enumerate() {
            pos[n.index()] = i;
        }
        let mut absorbed = vec![false; g.node_bound()];
        let groups = fusion_groups(g);
        let heads = group_heads(g, &groups);
        let gh = (groups.as_slice(), heads.as_slice());
        for &n in order {
            if !needed[n.index()] || absorbed[n.index()] {
                continue;
            }
            match &g.node(n).op {
                Op::Input { .. } => {}
                Op::Conv(c) => {
                    let chain = chain(g, gh, n, needed, &mut absorbed);
                    let (tail, step) =
                        self.conv_group_step(n, c, &chain, gh, needed, &mut absorbed)?;
                    self.steps.push((pos[tail.index()], step));
                }
                // A broadcasting add ([C, 1, 1] with [C, H, W]) is a plain-Rust step, as `mul`.
                Op::Add
                    if g.operands(n)
                        .iter()
                        .any(|&o| self.conc.get(o) != self.conc.get(n)) =>
                {
                    let step = self.rust_step(n)?;
                    self.steps.push((pos[n.index()], step));
                }
                Op::BatchNorm(_) | Op::Unary(_) | Op::Add => {
                    let chain = chain(g, gh, n, needed, &mut absorbed);
                    let tail = chain.last().copied().unwrap_or(n);
                    let step = self.elt_step(n, &chain)?;
                    self.steps.push((pos[tail.index()], step));
                }
                Op::Pool(p) => {
                    let step = self.pool_step(n, p)?;
                    self.steps.push((pos[n.index()], step));
                }
                Op::GlobalAvgPool | Op::Softmax | Op::Lrn(_) | Op::Shuffle { .. } => {
                    let step = self.channel_step(n)?;
                    self.steps.push((pos[n.index()], step));
                }
                Op::Mul
                | Op::Slice { .. }
                | Op::PRelu { .. }
                | Op::GlobalMaxPool
                | Op::Pad(_)
                | Op::Upsample(_)
                | Op::ConvTranspose(_) => {
                    let step = self.rust_step(n)?;
                    self.steps.push((pos[n.index()], step));
                }
                Op::Concat => {
                    for step in self.concat_steps(n)? {
                        self.steps.push((pos[n.index()], step));
                    }
                }
            }
        }
        Ok(())
    }

    /// Pairing of a conv's group (`n` and its fused `chain`): fused with the horizontal conv
    /// reading it ([`sep_partner`]), else with the pointwise conv reading it band by band
    /// ([`band_partner`]); else alone, as Winograd when [`Self::wino_step`] takes it, else
    /// direct. A partner's own group is taken too. Returns the node whose position the step
    /// runs at (the last member), and the step.
    fn conv_group_step(
        &mut self,
        n: NodeIndex,
        c: &Conv,
        chain: &[NodeIndex],
        gh: GroupIndex<'_>,
        needed: &[bool],
        absorbed: &mut [bool],
    ) -> Result<(NodeIndex, Step), JitError> {
        let (g, conc) = (self.g, self.conc);
        if let Some(bn) = sep_partner(g, conc, n, c, chain, needed, absorbed, self.fma) {
            absorbed[bn.index()] = true;
            let chain_b = self::chain(g, gh, bn, needed, absorbed);
            let tail_b = chain_b.last().copied().unwrap_or(bn);
            return Ok((tail_b, self.sep_step(n, c, chain, bn, &chain_b)?));
        }
        // Any width: as if every row filled its vectors.
        let lanes = if self.pair_any_width {
            1
        } else {
            self.isa.lanes()
        };
        // A small plane's depthwise conv runs best as a step of its own, a channel's plane a
        // call ([`dw_plane`]), its pointwise partner flat over the plane (MobileNetV2 blocks
        // of a 3x3 depthwise conv between two pointwise ones, AMD Zen4, one thread, ms,
        // paired -> alone: 160 -> 960 -> 160 at 7x7 0.80 -> 0.40; 96 -> 576 -> 96 at 14x14
        // 0.54 -> 0.49, the same at stride 2 0.53 -> 0.38; 64 -> 384 -> 64 at 16x16 0.30 ->
        // 0.27; 32 -> 192 -> 32 at 28x28 0.30 -> 0.28, at 32x32 the same).
        let partner = if self.runs_whole_planes(n, c) {
            None
        } else {
            band_partner(g, conc, n, c, chain, needed, absorbed, lanes)
        };
        if let Some(bn) = partner {
            absorbed[bn.index()] = true;
            let chain_b = self::chain(g, gh, bn, needed, absorbed);
            let tail_b = chain_b.last().copied().unwrap_or(bn);
            return Ok((tail_b, self.band_step(n, c, chain, bn, &chain_b)?));
        }
        let tail = chain.last().copied().unwrap_or(n);
        let step = if let Some(step) = self.wino_step(n, c, chain)? {
            step
        } else if let Some(step) = self.wino_line_step(n, c, chain)? {
            step
        } else if let Some(step) = self.gemm_step(n, c, chain)? {
            step
        } else {
            self.conv_step(n, c, chain, BandRole::Alone)?
        };
        Ok((tail, step))
    }

    /// Whether conv `n` runs as a step of its own a channel's plane a call ([`dw_plane`]), so
    /// that no band pair takes it (unless the test hook pairs at any width).
    fn runs_whole_planes(&self, n: NodeIndex, c: &Conv) -> bool {
        !self.pair_any_width
            && self
                .conv_geom(n, c)
                .is_ok_and(|cg| dw_plane(&cg, &self.blocking(cg.og), BandRole::Alone))
    }

    /// Whether `tail`'s value goes only to a depthwise conv that a band pair may take with
    /// its producer inside ([`depthwise_user`]): not one that runs whole planes, whose
    /// producer then runs flat as a GEMM instead of row by row with a part-empty last vector
    /// (one process each, alternating, one thread, AMD Zen4: 32 -> 192 -> 32 at 28x28 0.263
    /// -> 0.247 ms, 32 -> 192 at 28x28 then a stride-2 depthwise conv 0.188 -> 0.171; at 14x14
    /// and 7x7 the same, their rows' last columns already run transposed).
    fn produced_in_band(&self, tail: NodeIndex) -> bool {
        depthwise_user(self.g, tail).is_some_and(|(b, cb)| !self.runs_whole_planes(b, cb))
    }

    /// The step of an op over whole channels (global average pool, softmax, LRN, channel
    /// shuffle): one kernel call per value, its own work estimate.
    fn channel_step(&mut self, n: NodeIndex) -> Result<Step, JitError> {
        let node = self.g.node(n);
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let (spec, ns_per_value) = match &node.op {
            Op::GlobalAvgPool => (KernelSpec::Gap { c, hw: h * w }, work::NS_PER_VALUE_REDUCE),
            Op::Lrn(l) => (
                KernelSpec::Lrn(crate::spec::LrnSpec {
                    c,
                    hw: h * w,
                    size: l.size,
                    alpha: l.alpha.to_bits(),
                    beta: l.beta.to_bits(),
                    bias: l.bias.to_bits(),
                }),
                work::NS_PER_VALUE_SOFTMAX,
            ),
            Op::Shuffle { groups } => (
                KernelSpec::Shuffle {
                    c,
                    hw: h * w,
                    groups: *groups,
                },
                work::NS_PER_VALUE_SOFTMAX,
            ),
            _ => (
                KernelSpec::Softmax { c, hw: h * w },
                work::NS_PER_VALUE_SOFTMAX,
            ),
        };
        let args = vec![val(n), val(x), Arg::Null];
        let work_ns = (c * h * w) as f64 * ns_per_value;
        Ok(Step::plain(
            node.name.clone(),
            spec,
            args,
            work_ns,
            0,
            n.index(),
        ))
    }

    /// A concat: one copy step per operand into its channels of the value (operands of
    /// different sizes are an error).
    fn concat_steps(&mut self, n: NodeIndex) -> Result<Vec<Step>, JitError> {
        let (g, node) = (self.g, self.g.node(n));
        let [_, h, w] = self.conc.get(n);
        let mut coff = 0;
        let mut steps = Vec::new();
        for x in g.operands(n) {
            let [cx, hx, wx] = self.conc.get(x);
            if (hx, wx) != (h, w) {
                return Err(err(format!(
                    "concat `{}`: operands of different sizes",
                    node.name
                )));
            }
            let spec = KernelSpec::Elt(EltSpec {
                c: cx,
                hw: h * w,
                ep: Vec::new(),
            });
            let into = Arg::Value {
                node: n.index(),
                off: coff * h * w,
            };
            let args = vec![into, val(x), Arg::Null];
            let work_ns = (cx * h * w) as f64 / work::VALUES_PER_NS_ELEMENTWISE;
            let name = format!("{}[{}]", node.name, g.node(x).name);
            steps.push(Step::plain(name, spec, args, work_ns, 0, n.index()));
            coff += cx;
        }
        Ok(steps)
    }

    fn param(&mut self, data: &[f32]) -> Result<usize, JitError> {
        let b = AlignedBuf::from_slice(data)
            .ok_or_else(|| err("not enough memory for the packed parameters"))?;
        self.params.push(b);
        Ok(self.params.len() - 1)
    }

    /// An affine parameter buffer: per channel, scale and shift each broadcast to 4 floats.
    fn affine(&mut self, scale: Option<&[f64]>, shift: &[f64]) -> Result<usize, JitError> {
        let mut v = Vec::with_capacity(shift.len() * 8);
        for (i, &t) in shift.iter().enumerate() {
            let s = scale.map_or(1.0, |s| s[i]) as f32;
            v.extend_from_slice(&[s; 4]);
            v.extend_from_slice(&[t as f32; 4]);
        }
        self.param(&v)
    }

    /// The epilogue of `members` (each an elementwise op whose first operand chain is `prev`).
    /// `pending`: a bias to merge into the first affine step.
    fn epilogue(
        &mut self,
        head: NodeIndex,
        members: &[NodeIndex],
        mut pending: Option<Vec<f64>>,
        args: &mut Vec<Arg>,
    ) -> Result<Vec<Ep>, JitError> {
        let mut ep = Vec::new();
        let mut prev = head;
        let c = self.conc.get(head)[0];
        for &m in members {
            match &self.g.node(m).op {
                Op::BatchNorm(bn) => {
                    let (s, mut t) = bn_affine(bn, c)?;
                    if let Some(bias) = pending.take() {
                        for i in 0..c {
                            t[i] += bias[i] * s[i];
                        }
                    }
                    let p = self.affine(Some(&s), &t)?;
                    ep.push(Ep::Affine {
                        slot: args.len(),
                        scale: true,
                    });
                    args.push(Arg::Param(p));
                }
                other => {
                    if let Some(bias) = pending.take() {
                        let p = self.affine(None, &bias)?;
                        ep.push(Ep::Affine {
                            slot: args.len(),
                            scale: false,
                        });
                        args.push(Arg::Param(p));
                    }
                    match other {
                        Op::Unary(u) => ep.push(Ep::Act(Act::from_unary(*u))),
                        Op::Add => {
                            let ops = self.g.operands(m);
                            let r = if ops.first() == Some(&prev) {
                                ops.get(1)
                            } else {
                                ops.first()
                            };
                            let r = *r.ok_or_else(|| err("add without two operands"))?;
                            ep.push(Ep::Add { slot: args.len() });
                            args.push(val(r));
                        }
                        _ => {
                            return Err(err("internal error: a non-elementwise op in an epilogue"));
                        }
                    }
                }
            }
            prev = m;
        }
        if let Some(bias) = pending.take() {
            let p = self.affine(None, &bias)?;
            ep.push(Ep::Affine {
                slot: args.len(),
                scale: false,
            });
            args.push(Arg::Param(p));
        }
        Ok(ep)
    }

    fn group_name(&self, head: NodeIndex, members: &[NodeIndex]) -> String {
        // Layers folded into the head first (a conv named after the batchnorm it absorbed).
        let node = self.g.node(head);
        let mut s: String = node.folded.iter().map(|f| format!("{f}+")).collect();
        s.push_str(&node.name);
        for &m in members {
            s.push('+');
            s.push_str(&self.g.node(m).name);
        }
        s
    }

    /// Whether the wide paths' epilogue (the microkernel's, Winograd's output transform)
    /// applies every activation among a conv's fused `members`.
    fn acts_fit_wide(&self, members: &[NodeIndex]) -> bool {
        members.iter().all(|&m| match &self.g.node(m).op {
            Op::Unary(u) => crate::wino::epilogue_fits(&[Ep::Act(Act::from_unary(*u))]),
            _ => true,
        })
    }

    /// Whether Winograd can run conv `n` at all: a wide path; a 3x3, stride-1, dilation-1,
    /// one-group conv with weights of its shape whose padding keeps the output size; an
    /// epilogue whose activations the Winograd kernel applies. Returns its input and its top
    /// and left padding.
    fn wino_shape(
        &self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<(NodeIndex, usize, usize)>, JitError> {
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let acts_fit = self.acts_fit_wide(members);
        if self.isa == Isa::Sse
            || conv.kernel != [3, 3]
            || conv.stride != [1, 1]
            || conv.dilation != [1, 1]
            || conv.groups != 1
            || conv.out != oc
            || conv.weight.data.shape() != [oc, c, 3, 3]
            || !acts_fit
            || oh == 0
            || ow == 0
        {
            return Ok(None);
        }
        let [pt, pb, pl, pr] = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        if h + pt + pb != oh + 2 || w + pl + pr != ow + 2 {
            return Ok(None);
        }
        Ok(Some((x, pt, pl)))
    }

    /// The Winograd step of a 3x3, stride-1, dilation-1, one-group conv on a wide path, when
    /// [`crate::wino::choose`] takes it (`None`: run it direct). The input is copied zero-padded
    /// to whole tiles with its rows split into `m` phases (see `crate::wino`).
    fn wino_step(
        &mut self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<Step>, JitError> {
        use crate::wino::{WinoSpec, choose, pack_weights};
        let Some((x, pt, pl)) = self.wino_shape(n, conv, members)? else {
            return Ok(None);
        };
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let isa = self.isa;
        let lanes = isa.lanes();
        let Some((variant, chosen)) = choose(self.algo, c, oc, oh, ow, isa) else {
            return Ok(None);
        };
        let tl = match self.wino_lanes {
            Some(l @ (4 | 8)) if l <= lanes => l,
            Some(l) if l == lanes => l,
            _ => chosen,
        };
        let (m, nn) = (variant.m(), variant.n() * variant.n());
        let (tiles_y, tiles_x) = (oh.div_ceil(m), ow.div_ceil(m));
        let txp = tiles_x.div_ceil(tl) * tl;
        let wq = txp + 1;
        let hp = m * tiles_y + 2;
        let pad = PadCopy {
            src: x.index(),
            c,
            h,
            w,
            pt,
            pl,
            hp,
            sw: m,
            wq,
            hcw: false,
            tail: 0,
        };
        if pad.len() > MAX_BUFFER_FLOATS {
            return Ok(None);
        }
        let rows = wino_rows(nn, c, oc, tiles_x, tiles_y, lanes);
        let cols = rows * tiles_x;
        let ocb = crate::spec::blocks_of_at_most(oc, crate::wide::block_ocb_for_width(isa, cols));
        let group = wino_group(nn, cols, ocb, oc, tiles_y.div_ceil(rows));
        let cs = crate::wino::col_stride(cols);
        let Some(packed) = pack_weights(conv.weight.data.data(), oc, c, variant, ocb, cs) else {
            return Ok(None);
        };
        let wslot = self.param(&packed)?;
        let tail = members.last().copied().unwrap_or(n);
        // A padded copy larger than the L2 goes to memory and back; per band and channel, the
        // input transform reads its rows from L1 instead (see `WinoSpec::band_pad`).
        let band_pad =
            (pad.len() * 4 > wino_input_bytes()).then_some(crate::wino::BandPad { h, w, pt, pl });
        let input = if band_pad.is_some() {
            val(x)
        } else {
            Arg::Scratch
        };
        let mut args = vec![val(tail), input, Arg::Param(wslot)];
        let bias = conv_bias(conv);
        if bias.as_ref().is_some_and(|b| b.len() != oc) {
            return Ok(None);
        }
        let ep = self.epilogue(n, members, bias, &mut args)?;
        args.push(Arg::ThreadScratch);
        let spec = WinoSpec {
            variant,
            isa,
            c,
            oc,
            oh,
            ow,
            tiles_y,
            tiles_x,
            txp,
            tl,
            rows,
            group,
            ocb,
            in_cs: if band_pad.is_some() {
                0
            } else {
                pad.chan_stride()
            },
            in_rs: pad.row_stride(),
            wq,
            ep,
            scratch_slot: args.len() - 1,
            band_pad,
            stream: oc * oh * ow * 4 > wino_input_bytes(),
        };
        let macs = (oc * oh * ow) as u64 * (9 * c) as u64;
        let pad = band_pad.is_none().then_some(pad);
        Ok(Some(self.wino_finish(n, members, spec, args, pad, macs)))
    }

    /// The step of a Winograd `spec` of conv `n` (its fused `members`), whose `macs` are the
    /// conv's as written.
    fn wino_finish(
        &self,
        n: NodeIndex,
        members: &[NodeIndex],
        spec: crate::wino::WinoSpec,
        args: Vec<Arg>,
        pad: Option<PadCopy>,
        macs: u64,
    ) -> Step {
        let tail = members.last().copied().unwrap_or(n);
        let work = spec.gemm_macs() as f64 * work::WINO_TRANSFORM_FACTOR;
        let lanes = spec.isa.lanes();
        Step {
            name: self.group_name(n, members),
            spec: KernelSpec::Wino(spec),
            kernel: 0,
            args,
            pad,
            tile: None,
            band: None,
            zero: None,
            pad_private: None,
            work_ns: work::dense_ns(work, lanes),
            macs,
            writes: tail.index(),
        }
    }

    /// The input and padding (top, bottom, left, right) of conv `n` if its Winograd step of a
    /// one-dimensional kernel applies: an `r x 1` or `1 x r` kernel (`r >= 2`), stride 1,
    /// dilation 1, one group, on a wide path, with an epilogue the step applies.
    fn wino_line_shape(
        &self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<(NodeIndex, [usize; 4])>, JitError> {
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let [kh, kw] = conv.kernel;
        let line = (kw == 1 && kh >= 2) || (kh == 1 && kw >= 2);
        if self.isa == Isa::Sse
            || !line
            || conv.stride != [1, 1]
            || conv.dilation != [1, 1]
            || conv.groups != 1
            || conv.out != oc
            || conv.weight.data.shape() != [oc, c, kh, kw]
            || !self.acts_fit_wide(members)
            || oh == 0
            || ow == 0
        {
            return Ok(None);
        }
        let pads = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let [pt, pb, pl, pr] = pads;
        if h + pt + pb != oh + kh - 1 || w + pl + pr != ow + kw - 1 {
            return Ok(None);
        }
        Ok(Some((x, pads)))
    }

    /// The Winograd step of a one-dimensional kernel: down the columns of an `r x 1` conv
    /// (`crate::wino::Variant::Col`) or along the rows of a `1 x r` one (`Variant::Row`),
    /// stride 1, dilation 1, one group, on a wide path, when [`crate::wino::choose_col`] /
    /// [`crate::wino::choose_row`] take it (`None`: run it direct). The input is copied
    /// zero-padded to whole tiles and whole vectors of them (along rows, split into `m`
    /// phases), whatever its size: copies larger than the L2 ran direct until they were
    /// measured (one process each, alternating, AMD Zen4 with a 1 MB L2, direct -> F(m, r),
    /// one thread): 7x1 192 -> 192 at 35x35 (a 1.1 MB copy) 5.79 -> 3.89 ms, 1x7 5.90 ->
    /// 4.00, 3x1 128 -> 128 at 64x128 (4.5 MB) 9.08 -> 4.95, 1x3 8.42 -> 5.20, 1x7 128 ->
    /// 128 at 56x56 7.11 -> 4.60, 1x7 64 -> 64 at 73x73 3.03 -> 2.28; at two threads 1.4-1.7x
    /// faster too.
    fn wino_line_step(
        &mut self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<Step>, JitError> {
        use crate::wino::{Variant, WinoSpec, choose_col, choose_row, pack_weights};
        let Some((x, [pt, pb, pl, pr])) = self.wino_line_shape(n, conv, members)? else {
            return Ok(None);
        };
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let [kh, kw] = conv.kernel;
        let down = kw == 1;
        let r = if down { kh } else { kw };
        let isa = self.isa;
        let lanes = isa.lanes();
        let shape = (r, c, oc, oh, ow);
        let variant = if down {
            let Some(m) = choose_col(self.algo, shape, pl + pr == 0, lanes) else {
                return Ok(None);
            };
            Variant::Col { m, r }
        } else {
            let Some(m) = choose_row(self.algo, shape, pl.max(pr), lanes) else {
                return Ok(None);
            };
            Variant::Row { m, r }
        };
        let (m, np) = (variant.m(), variant.products());
        // Tiles down and across: down columns, `m` rows by one column; along rows, one row
        // by `m` columns.
        let (tiles_y, tiles_x) = if down {
            (oh.div_ceil(m), ow)
        } else {
            (oh, ow.div_ceil(m))
        };
        let txp = tiles_x.div_ceil(lanes) * lanes;
        let (hp, sw, wq) = if down {
            (m * tiles_y + r - 1, 1, txp)
        } else {
            // Value `l` of a vector of tiles is phase `l % m`, `l / m` tiles on.
            (h + pt + pb, m, txp + (r - 1) / m + 1)
        };
        let pad = PadCopy {
            src: x.index(),
            c,
            h,
            w,
            pt,
            pl,
            hp,
            sw,
            wq,
            hcw: false,
            tail: 0,
        };
        if pad.len() > MAX_BUFFER_FLOATS {
            return Ok(None);
        }
        let rows = wino_rows(np, c, oc, tiles_x, tiles_y, lanes);
        let cols = rows * tiles_x;
        let ocb = crate::spec::blocks_of_at_most(oc, crate::wide::block_ocb_for_width(isa, cols));
        let group = wino_group(np, cols, ocb, oc, tiles_y.div_ceil(rows));
        let cs = crate::wino::col_stride(cols);
        let Some(packed) = pack_weights(conv.weight.data.data(), oc, c, variant, ocb, cs) else {
            return Ok(None);
        };
        let bias = conv_bias(conv);
        if bias.as_ref().is_some_and(|b| b.len() != oc) {
            return Ok(None);
        }
        let wslot = self.param(&packed)?;
        let tail = members.last().copied().unwrap_or(n);
        let mut args = vec![val(tail), Arg::Scratch, Arg::Param(wslot)];
        let ep = self.epilogue(n, members, bias, &mut args)?;
        args.push(Arg::ThreadScratch);
        let spec = WinoSpec {
            variant,
            isa,
            c,
            oc,
            oh,
            ow,
            tiles_y,
            tiles_x,
            txp,
            tl: lanes,
            rows,
            group,
            ocb,
            in_cs: pad.chan_stride(),
            in_rs: pad.row_stride(),
            wq,
            ep,
            scratch_slot: args.len() - 1,
            band_pad: None,
            stream: oc * oh * ow * 4 > wino_input_bytes(),
        };
        let macs = (oc * oh * ow) as u64 * (r * c) as u64;
        Ok(Some(self.wino_finish(
            n,
            members,
            spec,
            args,
            Some(pad),
            macs,
        )))
    }

    /// The GEMM step on packed bands (`crate::gemm`) of a one-group conv on a wide path whose
    /// epilogue the microkernel applies (`None`: run it direct).
    fn gemm_step(
        &mut self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<Step>, JitError> {
        let Some((x, [pt, pl])) = self.gemm_shape(n, conv, members)? else {
            return Ok(None);
        };
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let ([kh, kw], [sh, sw], [dh, dw]) = (conv.kernel, conv.stride, conv.dilation);
        let isa = self.isa;
        let positions = oh * ow;
        let taps = c * kh * kw;
        let ocb =
            crate::spec::blocks_of_at_most(oc, crate::wide::block_ocb_for_width(isa, positions));
        let chunk = (chunk_bytes() / crate::packed::tap_bytes(ocb, 1)).clamp(1, taps);
        let (cols, group) = gemm_schedule((taps, chunk), oc, positions, ocb, isa, self.gemm_cols);
        if taps.saturating_mul(crate::gemm::packed_stride(cols)) > GEMM_MAX_BAND_FLOATS {
            return Ok(None);
        }
        let packed = crate::gemm::pack_weights(
            conv.weight.data.data(),
            oc,
            taps,
            ocb,
            crate::gemm::packed_stride(cols),
            chunk,
        );
        let wslot = self.param(&packed)?;
        let tail = members.last().copied().unwrap_or(n);
        let mut args = vec![val(tail), val(x), Arg::Param(wslot)];
        let bias = conv_bias(conv);
        if bias.as_ref().is_some_and(|b| b.len() != oc) {
            return Ok(None);
        }
        let ep = self.epilogue(n, members, bias, &mut args)?;
        args.push(Arg::ThreadScratch);
        let spec = crate::gemm::GemmSpec {
            isa,
            c,
            oc,
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pt,
            pl,
            oh,
            ow,
            cols,
            group,
            ocb,
            chunk,
            ep,
            scratch_slot: args.len() - 1,
        };
        let macs = (oc * positions) as u64 * taps as u64;
        Ok(Some(Step {
            name: self.group_name(n, members),
            spec: KernelSpec::Gemm(spec),
            kernel: 0,
            args,
            pad: None,
            tile: None,
            band: None,
            zero: None,
            pad_private: None,
            work_ns: work::dense_ns(macs as f64, isa.lanes()),
            macs,
            writes: tail.index(),
        }))
    }

    /// Whether conv `n` runs as a GEMM on packed bands: a wide path; a one-group conv with
    /// weights of its shape whose padding gives its output size, 1x1 or strided by 2 or 4
    /// along the row over more than [`TILE_MAX_CG`] input channels; an epilogue whose activations the microkernel applies. Returns its input
    /// and its top and left padding.
    ///
    /// Larger unstrided kernels pack as well (the band's slice of the im2col matrix), but
    /// measured slower than the direct kernels, which read their padded input in place (one
    /// process, alternating, one thread: inception_7x7's 1x7 and 7x1 layers 0.91x, vgg_head
    /// with its 3 -> 64 3x3 layer 1.0x). Strided ones gain: a 128 -> 256 3x3/2 at 56x56
    /// 1.23x (its direct kernel splits every row into phases for each block of output
    /// channels). Stems with few input channels ([`TILE_MAX_CG`]) stay direct: their kernels
    /// pad and split each band once for all blocks, band-major (a 3 -> 64 7x7/2 stem 0.89x
    /// the time of the GEMM step).
    fn gemm_shape(
        &self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Option<(NodeIndex, [usize; 2])>, JitError> {
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let acts_fit = self.acts_fit_wide(members);
        let ([kh, kw], [sh, sw], [dh, dw]) = (conv.kernel, conv.stride, conv.dilation);
        if [kh, kw, sh, sw, dh, dw].contains(&0) {
            return Ok(None);
        }
        let [pt, pb, pl, pr] = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let pads = pt.checked_add(pb).zip(pl.checked_add(pr));
        let Some((pv, ph)) = pads else {
            return Ok(None);
        };
        // The output size the padding gives (`None`: a window larger than the padded input).
        let out_len = |len: usize, p: usize, k: usize, d: usize, s: usize| {
            let window = d.checked_mul(k - 1)?.checked_add(1)?;
            len.checked_add(p)?.checked_sub(window).map(|v| v / s + 1)
        };
        let fits = self.isa != Isa::Sse
            && self.gemm_cols != Some(0)
            && ((kh == 1 && kw == 1) || ((sw == 2 || sw == 4) && c > TILE_MAX_CG))
            && conv.groups == 1
            && conv.out == oc
            && conv.weight.data.shape() == [oc, c, kh, kw]
            && acts_fit
            && !self.produced_in_band(members.last().copied().unwrap_or(n))
            && oh > 0
            && ow > 0
            && out_len(h, pv, kh, dh, sh) == Some(oh)
            && out_len(w, ph, kw, dw, sw) == Some(ow);
        Ok(fits.then_some((x, [pt, pl])))
    }

    /// A conv's sizes, checked: positive kernel, stride, dilation and groups, channels that
    /// fit the groups, weights of the right shape, a padded input within
    /// [`MAX_BUFFER_FLOATS`], and an output size that follows from the input.
    fn conv_geom(&self, n: NodeIndex, conv: &Conv) -> Result<ConvGeom, JitError> {
        let name = &self.g.node(n).name;
        let bad = |m: String| err(format!("layer `{name}`: {m}"));
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let [kh, kw] = conv.kernel;
        let [sh, sw] = conv.stride;
        let [dh, dw] = conv.dilation;
        let groups = conv.groups;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 || groups == 0 {
            return Err(bad(
                "kernel, stride, dilation and groups must be at least 1".into(),
            ));
        }
        if c % groups != 0 || oc % groups != 0 || oc != conv.out {
            return Err(bad(format!(
                "{c} input and {oc} output channels do not fit groups={groups}"
            )));
        }
        let (cg, og) = (c / groups, oc / groups);
        if conv.weight.data.shape() != [oc, cg, kh, kw] {
            return Err(bad("weights of the wrong shape".into()));
        }
        let [pt, pb, pl, pr] = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let too_big = || bad("the padded input is too large for the JIT".into());
        let hp = h
            .checked_add(pt)
            .and_then(|v| v.checked_add(pb))
            .ok_or_else(too_big)?;
        let wp = w
            .checked_add(pl)
            .and_then(|v| v.checked_add(pr))
            .ok_or_else(too_big)?;
        if c.checked_mul(hp)
            .and_then(|v| v.checked_mul(wp))
            .is_none_or(|n| n > MAX_BUFFER_FLOATS)
        {
            return Err(too_big());
        }
        let span_h = dh.checked_mul(kh - 1).ok_or_else(too_big)? + 1;
        let span_w = dw.checked_mul(kw - 1).ok_or_else(too_big)? + 1;
        if hp < span_h
            || wp < span_w
            || (hp - span_h) / sh + 1 != oh
            || (wp - span_w) / sw + 1 != ow
        {
            return Err(bad(format!(
                "output size {oh}x{ow} does not follow from the input {h}x{w}"
            )));
        }
        Ok(ConvGeom {
            x,
            c,
            h,
            w,
            oc,
            oh,
            ow,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            groups,
            cg,
            og,
            pt,
            pb,
            pl,
            pr,
            hp,
            wp,
        })
    }

    /// The register block of a conv of `og` output channels per group: on a wide path the
    /// measured microkernel block ([`crate::wide::block_ocb_max`]) spread evenly over the
    /// channels (depthwise too: one channel per block, `NV` vectors of the row per tap), else
    /// Cranelift's block with its weight copies.
    fn blocking(&self, og: usize) -> Blocking {
        let wide = (self.isa != Isa::Sse).then_some(self.isa);
        let ocb = match wide {
            Some(isa) => crate::spec::blocks_of_at_most(og, crate::wide::block_ocb_max(isa)),
            None => crate::spec::block_ocb(og, self.fma),
        };
        let smallest = if og.is_multiple_of(ocb) {
            ocb
        } else {
            og % ocb
        };
        let dup = match wide {
            Some(_) => 1,
            None => crate::spec::weight_dup(ocb, smallest, self.fma),
        };
        let vw = match wide {
            Some(isa) => isa.lanes() * crate::wide::tile_vectors(isa, ocb),
            None => 4 * crate::spec::vectors_for(ocb, self.fma),
        };
        Blocking {
            wide,
            ocb,
            nb: og.div_ceil(ocb),
            dup,
            vw,
            v: crate::spec::vectors_for(ocb, self.fma),
        }
    }

    /// The step of a direct conv (dense, grouped, depthwise or pointwise; `role`: a step of
    /// its own or one side of a band pair): its sizes ([`Self::conv_geom`]), register block
    /// ([`Self::blocking`]) and layout ([`conv_layout`]), then the weights packed in the
    /// order the kernel reads them ([`crate::packed`]) in chunks ([`chunk_taps`]), the buffer
    /// table, the item order ([`row_major`], [`xtiles`]) and the output's strides.
    fn conv_step(
        &mut self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
        role: BandRole,
    ) -> Result<Step, JitError> {
        let name = self.g.node(n).name.clone();
        let bad = |m: &str| err(format!("layer `{name}`: {m}"));
        let g = self.conv_geom(n, conv)?;
        let blk = self.blocking(g.og);
        let l = conv_layout(&g, &blk, role).map_err(bad)?;
        let kg = l.kg;
        let taps = g.taps();
        let offs = crate::spec::tap_offsets(
            g.cg,
            g.kh,
            g.kw,
            g.dh,
            g.dw,
            g.sw,
            l.wq,
            l.row_stride,
            l.chan_stride,
        );
        let chunk_taps = chunk_taps(taps, blk.tap_bytes(), l.rows, role);
        let w = conv.weight.data.data();
        let packed =
            crate::packed::pack_conv(w, g.groups, g.og, blk.ocb, blk.dup, &offs, chunk_taps);
        let wslot = self.param(&packed)?;
        let tail = members.last().copied().unwrap_or(n);
        let tiled = l.tile.is_some();
        let mut args = conv_args(role, (tail, g.x), (l.pad.is_some(), tiled), wslot);
        let bias = conv_bias(conv);
        if bias.as_ref().is_some_and(|b| b.len() != g.oc) {
            return Err(bad("bias of the wrong length"));
        }
        let ep = self.epilogue(n, members, bias, &mut args)?;
        // A chunked kernel with rows packed keeps its partial sums in the thread's scratch,
        // after the padding tile if any: 16 bytes per vector position and channel.
        let part_slot = if l.rows > 1 && (chunk_taps < taps || l.flat_pad > 0) {
            let off = l.tile.as_ref().map_or(0, |t| scratch_span(t.len()));
            args.push(Arg::ThreadScratchAt(off));
            args.len() - 1
        } else {
            0
        };
        let row_major = row_major(&g, role, tiled, packed.len(), blk.nb);
        let (xtiles, xtile_cols) = xtiles(&kg, role, row_major, chunk_taps < taps, l.rows, blk.vw);
        let (out_cs, out_rs) = match role {
            BandRole::Writes(_) if ep.iter().any(|e| matches!(e, Ep::Add { .. })) => {
                return Err(bad("internal error: a residual add writing a band"));
            }
            BandRole::Writes(r) => (r * kg.ow, kg.ow),
            _ => (kg.oh * kg.ow, kg.ow),
        };
        let spec = ConvSpec {
            row_major,
            groups: g.groups,
            cg: g.cg,
            og: g.og,
            oh: kg.oh,
            ow: kg.ow,
            kh: g.kh,
            kw: g.kw,
            sh: kg.sh,
            sw: g.sw,
            dh: g.dh,
            dw: g.dw,
            row_stride: l.row_stride,
            chan_stride: l.chan_stride,
            wq: l.wq,
            ocb: blk.ocb,
            ep,
            fma: self.fma,
            wdup: blk.dup,
            rows: l.rows,
            out_cs,
            out_rs,
            chunk_taps,
            xtiles,
            xtile_cols,
            part_slot,
            wide: blk.wide,
            flat_pad: l.flat_pad,
            dw_rows: l.dw_rows,
            dw_plane: l.dw_plane.then_some(crate::spec::PlaneInput {
                h: g.h,
                w: g.w,
                pt: g.pt,
                pl: g.pl,
            }),
            in_ring: 0,
        };
        let macs = (g.oc * g.oh * g.ow) as u64 * taps as u64;
        let work_ns = conv_work_ns(macs, &blk, &l);
        Ok(Step {
            name: self.group_name(n, members),
            spec: KernelSpec::Conv(spec),
            kernel: 0,
            args,
            pad: l.pad,
            tile: l.tile,
            band: None,
            zero: None,
            pad_private: None,
            work_ns,
            macs,
            writes: tail.index(),
        })
    }

    /// The fused step of a depthwise conv `a` and the pointwise conv `b` reading it
    /// ([`band_partner`], [`Band`]).
    fn band_step(
        &mut self,
        a: NodeIndex,
        ca: &Conv,
        members_a: &[NodeIndex],
        b: NodeIndex,
        members_b: &[NodeIndex],
    ) -> Result<Step, JitError> {
        let Op::Conv(cb) = &self.g.node(b).op else {
            return Err(err(
                "internal error: a band pair without its pointwise conv",
            ));
        };
        let tail_a = members_a.last().copied().unwrap_or(a);
        let [chans, oh, width] = self.conc.get(tail_a);
        // As many rows as fit the band buffer's budget, but at least 8 bands (work for
        // threads) where the plane has the rows; then down to a multiple of 4 (or 2), the
        // rows a call of the depthwise rows kernel computes (`dw_rows`): a 5x5 pair's bands of
        // 6 rows ran 2 rows a call, in bands of 4 rows 4 (5.6% faster at one thread).
        let row_bytes = chans.saturating_mul(width).saturating_mul(4).max(1);
        let rows = (BAND_BYTES / row_bytes).clamp(1, oh.div_ceil(8).max(1));
        let rows = match rows {
            4.. => rows / 4 * 4,
            2.. => rows / 2 * 2,
            _ => rows,
        };
        let step_a = self.conv_step(a, ca, members_a, BandRole::Writes(rows))?;
        let step_b = self.conv_step(b, cb, members_b, BandRole::Reads(rows))?;
        if step_a.pad.is_some() || step_b.pad.is_some() || step_b.tile.is_some() {
            return Err(err("internal error: a band pair with a padded copy"));
        }
        let buf_off = step_a.tile.as_ref().map_or(0, |t| scratch_span(t.len()));
        Ok(Step {
            name: format!("{}+{}", step_a.name, step_b.name),
            spec: step_b.spec,
            kernel: 0,
            args: step_b.args,
            pad: None,
            tile: None,
            work_ns: step_a.work_ns + step_b.work_ns,
            macs: step_a.macs + step_b.macs,
            writes: step_b.writes,
            zero: None,
            pad_private: None,
            band: Some(Box::new(Band {
                reader: (step_b.name, step_b.macs),
                step: step_a,
                rows,
                oh,
                width,
                chans,
                buf_off,
                pre: None,
            })),
        })
    }

    /// The fused step of a vertical conv `a` and a horizontal conv `b` ([`sep_partner`]): the
    /// weights' shapes checked, each conv's weights packed (`a` one channel a block, `b` in
    /// [`Self::blocking`]'s blocks, reading the row buffer), then the two specs
    /// ([`sep_spec_a`], [`sep_spec_b`]).
    fn sep_step(
        &mut self,
        a: NodeIndex,
        ca: &Conv,
        members_a: &[NodeIndex],
        b: NodeIndex,
        members_b: &[NodeIndex],
    ) -> Result<Step, JitError> {
        let Op::Conv(cb) = &self.g.node(b).op else {
            return Err(err("internal error: a fused pair without its second conv"));
        };
        let x = operand(self.g, a, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc_a, oh_a, ow_a] = self.conc.get(a);
        let tail_a = members_a.last().copied().unwrap_or(a);
        let [cin_b, h_b, w_b] = self.conc.get(tail_a);
        let [ob, oh_b, ow_b] = self.conc.get(b);
        let kh = ca.kernel[0];
        let [pt, _, _, _] = ca.pad.resolve(h, w, ca.kernel, ca.stride, ca.dilation);
        let [_, _, pl, pr] = cb.pad.resolve(h_b, w_b, cb.kernel, cb.stride, cb.dilation);
        let og_a = oc_a / c;
        let wrong_shape = |n: NodeIndex| {
            err(format!(
                "layer `{}`: weights of the wrong shape",
                self.g.node(n).name
            ))
        };
        if ca.weight.data.shape() != [oc_a, 1, kh, 1] {
            return Err(wrong_shape(a));
        }
        let groups_b = cb.groups;
        let (cg_b, og_b) = (cin_b / groups_b, ob / groups_b);
        let kw = cb.kernel[1];
        if cb.weight.data.shape() != [ob, cg_b, 1, kw] {
            return Err(wrong_shape(b));
        }
        let fma = self.fma;
        let dup_a = crate::spec::weight_dup(1, 1, fma);
        let offs_a = crate::spec::tap_offsets(1, kh, 1, ca.dilation[0], 1, 1, w, w, h * w);
        let packed_a =
            crate::packed::pack_conv(ca.weight.data.data(), c, og_a, 1, dup_a, &offs_a, kh);
        let rb = pl + ow_a + pr;
        let blk = self.blocking(og_b);
        let offs_b = crate::spec::tap_offsets(cg_b, 1, kw, 1, cb.dilation[1], 1, rb, rb, rb);
        let wb_data = cb.weight.data.data();
        let packed_b = crate::packed::pack_conv(
            wb_data,
            groups_b,
            og_b,
            blk.ocb,
            blk.dup,
            &offs_b,
            cg_b * kw,
        );
        let wa = self.param(&packed_a)?;
        let wb = self.param(&packed_b)?;
        let tail_b = members_b.last().copied().unwrap_or(b);
        let mut args = vec![
            val(tail_b),
            val(x),
            Arg::Param(wb),
            Arg::ThreadScratch,
            Arg::Param(wa),
        ];
        let ep_a = self.epilogue(a, members_a, conv_bias(ca), &mut args)?;
        let ep_b = self.epilogue(b, members_b, conv_bias(cb), &mut args)?;
        let spec_a = sep_spec_a(
            ca,
            [c, h, w],
            [og_a, oh_a, ow_a],
            dup_a,
            ep_a,
            (fma, blk.wide),
        );
        let spec_b = sep_spec_b(cb, [cg_b, og_b, oh_b, ow_b], rb, &blk, ep_b, fma);
        let macs = (oc_a * oh_a * ow_a * kh) as u64 + (ob * oh_b * ow_b * cg_b * kw) as u64;
        let name = format!(
            "{}+{}",
            self.group_name(a, members_a),
            self.group_name(b, members_b)
        );
        let spec = KernelSpec::Sep(Box::new(SepSpec {
            a: spec_a,
            pt,
            h,
            b: spec_b,
            pl,
        }));
        let work_ns = macs as f64 / work::MACS_PER_NS_SEPARABLE;
        Ok(Step::plain(name, spec, args, work_ns, macs, tail_b.index()))
    }

    fn elt_step(&mut self, n: NodeIndex, members: &[NodeIndex]) -> Result<Step, JitError> {
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(n);
        let tail = members.last().copied().unwrap_or(n);
        let mut args = vec![val(tail), val(x), Arg::Null];
        // The head itself is the first step of the chain, reading `x`.
        let mut all = vec![n];
        all.extend_from_slice(members);
        let ep = self.epilogue(x, &all, None, &mut args)?;
        let spec = KernelSpec::Elt(EltSpec { c, hw: h * w, ep });
        let work_ns = (c * h * w * all.len()) as f64 / work::VALUES_PER_NS_ELEMENTWISE;
        Ok(Step::plain(
            self.group_name(n, members),
            spec,
            args,
            work_ns,
            0,
            tail.index(),
        ))
    }

    /// A plain-Rust step (`rstep.rs`) for `mul`, a broadcasting `add`, `prelu`, `global_maxpool`, `pad` and
    /// `upsample`: the operand
    /// in `SLOT_IN`, a second operand or the parameters in `SLOT_W`; items are channels.
    fn rust_step(&mut self, n: NodeIndex) -> Result<Step, JitError> {
        use crate::spec::{RustKind, RustSpec};
        let node = self.g.node(n);
        let mut x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(n);
        let hw = h * w;
        let (kind, params, extra) = match &node.op {
            Op::Mul | Op::Add => {
                let mut y = operand(self.g, n, 1)?;
                // The full-size operand first; a [C, 1, 1] one is read as per-channel factors.
                if self.conc.get(x) != [c, h, w] {
                    std::mem::swap(&mut x, &mut y);
                }
                let per_channel = i64::from(self.conc.get(y) != [c, h, w]);
                let kind = if matches!(node.op, Op::Add) {
                    RustKind::Add
                } else {
                    RustKind::Mul
                };
                (kind, vec![c as i64, hw as i64, per_channel], val(y))
            }
            Op::Slice { start, .. } => {
                let [cx, ..] = self.conc.get(x);
                let v = [c, hw, *start, cx].map(|u| u as i64).to_vec();
                (RustKind::Slice, v, Arg::Null)
            }
            Op::PRelu { slope } => {
                let p = self.param(slope.data.data())?;
                let k = slope.data.numel() as i64;
                (RustKind::PRelu, vec![c as i64, hw as i64, k], Arg::Param(p))
            }
            Op::Pad(p) => {
                let [_, ih, iw] = self.conc.get(x);
                let v = pad_params(&node.name, p, [c, ih, iw])?;
                (RustKind::Pad, v, Arg::Null)
            }
            Op::Upsample(u) => {
                let [_, ih, iw] = self.conc.get(x);
                (
                    RustKind::Upsample,
                    upsample_params(u, [c, ih, iw]),
                    Arg::Null,
                )
            }
            Op::ConvTranspose(t) => {
                let [cx, ih, iw] = self.conc.get(x);
                let gm = &t.geom;
                let mut wb = t.weight.data.data().to_vec();
                match &t.bias {
                    Some(b) => wb.extend_from_slice(b.data.data()),
                    None => wb.extend(std::iter::repeat_n(0.0, gm.out)),
                }
                let p = self.param(&wb)?;
                let v = [
                    cx,
                    ih,
                    iw,
                    gm.out,
                    gm.kernel[0],
                    gm.kernel[1],
                    gm.stride[0],
                    gm.stride[1],
                    gm.dilation[0],
                    gm.dilation[1],
                    gm.pads[0],
                    gm.pads[1],
                    gm.pads[2],
                    gm.pads[3],
                    gm.groups,
                    h,
                    w,
                ];
                (
                    RustKind::ConvTranspose,
                    v.iter().map(|&u| u as i64).collect(),
                    Arg::Param(p),
                )
            }
            _ => {
                let [_, ih, iw] = self.conc.get(x);
                (
                    RustKind::GlobalMax,
                    vec![c as i64, (ih * iw) as i64],
                    Arg::Null,
                )
            }
        };
        let [cx, hx, wx] = self.conc.get(x);
        // A transposed convolution's multiply-adds: every weight meets every input pixel.
        let macs = match &node.op {
            Op::ConvTranspose(t) => t.weight.data.numel() * hx * wx,
            _ => 0,
        };
        Ok(Step {
            name: node.name.clone(),
            spec: KernelSpec::Rust(RustSpec {
                kind,
                params,
                items: c,
            }),
            kernel: 0,
            args: vec![val(n), val(x), extra],
            pad: None,
            tile: None,
            band: None,
            zero: None,
            pad_private: None,
            work_ns: (cx * hx * wx + c * h * w + macs) as f64,
            macs: macs as u64,
            writes: n.index(),
        })
    }

    fn pool_step(&mut self, n: NodeIndex, p: &Pool) -> Result<Step, JitError> {
        let name = &self.g.node(n).name;
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [_, oh, ow] = self.conc.get(n);
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.stride;
        let [pt, pb, pl, pr] = p.pad.resolve(h, w, p.kernel, p.stride, [1, 1]);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || pt >= kh || pb >= kh || pl >= kw || pr >= kw
        {
            return Err(err(format!(
                "layer `{name}`: padding ({pt}, {pb}, {pl}, {pr}) is not smaller than the kernel {kh}x{kw} on each side"
            )));
        }
        let hp = h.saturating_add(pt).saturating_add(pb);
        let wp = w.saturating_add(pl).saturating_add(pr);
        if hp < kh || wp < kw || (hp - kh) / sh + 1 != oh || (wp - kw) / sw + 1 != ow {
            return Err(err(format!(
                "layer `{name}`: output size {oh}x{ow} does not follow from the input {h}x{w}"
            )));
        }
        let spec = PoolSpec {
            max: p.kind == PoolKind::Max,
            c,
            h,
            w,
            oh,
            ow,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
        };
        let args = vec![val(n), val(x), Arg::Null];
        let (kernel, work_ns) = if spec.max && self.isa != Isa::Sse && crate::maxpool::fits(sw) {
            let rust = crate::spec::RustSpec {
                kind: crate::spec::RustKind::MaxPool(self.isa),
                params: crate::maxpool::params(&spec),
                items: c * oh,
            };
            // Per output row: the window's rows over the input row, then the row's windows.
            let per_row = kh * w + kw * ow;
            (
                KernelSpec::Rust(rust),
                (c * oh * per_row) as f64 / self.isa.lanes() as f64,
            )
        } else {
            let loads = kh * kw + work::POOL_OVERHEAD_LOADS;
            (KernelSpec::Pool(spec), (c * oh * ow * loads) as f64)
        };
        Ok(Step::plain(
            name.clone(),
            kernel,
            args,
            work_ns,
            0,
            n.index(),
        ))
    }
}

#[cfg(test)]
mod guard_tests {
    use super::guarded_alloc;

    /// Every buffer of the test mode lies in pages of its own, against a guard page on the
    /// asked side; buffers never overlap.
    #[test]
    fn guarded_buffers_touch_their_guard_page() {
        for at_end in [true, false] {
            let (mut len, mut guards) = (0, Vec::new());
            let mut prev_end = 0;
            for n in [1usize, 1024, 1023, 1025, 5000, 16] {
                let off = guarded_alloc(&mut len, &mut guards, n, at_end);
                let g = *guards.last().expect("a guard page");
                assert!(off >= prev_end, "overlap");
                if at_end {
                    assert_eq!(off + n, g * 1024, "{n}");
                } else {
                    assert_eq!(off, (g + 1) * 1024, "{n}");
                }
                assert!(off + n <= len && len % 1024 == 0);
                prev_end = off + n;
            }
        }
    }
}

#[cfg(test)]
mod wino_band_tests {
    use super::{fill_lanes, wino_lane_cols};

    /// Columns are rounded up per band, the last band's own rest included; bands that fill at
    /// least 85% of the lanes stay, others change to the best-filling rows. Rows: (rows, tiles a
    /// row, tile rows, lanes, GEMM columns computed, rows after `fill_lanes`).
    #[test]
    fn bands_fill_the_lanes() {
        for (rows, tx, ty, lanes, cols, filled) in [
            // 4 x 4 tiles on 16-float vectors: bands of 1 row pay 16 columns for 4.
            (1, 4, 4, 16, 64, 4),
            (4, 4, 4, 16, 16, 4),
            // 7 x 7 tiles: bands 3, 3, 1 -> 32 + 32 + 16 (49 of 80: bands of 4 and 3 fill 64);
            // bands of 2 fill 49 of 64.
            (3, 7, 7, 16, 80, 4),
            (2, 7, 7, 16, 64, 2),
            // Rows beyond the plane are the plane.
            (9, 7, 7, 16, 64, 9),
            (1, 28, 28, 16, 28 * 32, 1),
            // 8 x 8 tiles, bands of 1 row (8 of 16 lanes): 2 rows fill them all.
            (1, 8, 8, 16, 128, 2),
            // Narrow vectors fill anyway.
            (1, 4, 4, 4, 16, 1),
            // 17 x 9 tiles (a 7x1 conv's F(2,7) on 17x17): bands of 3 fill 51 of 64 lanes
            // each, the whole plane 153 of 160.
            (3, 17, 9, 16, 192, 9),
            // 6 x 24 tiles: bands of 11, 11, 2 fill 144 of 176 lanes; of 8 rows (not 16: nearer)
            // all.
            (11, 6, 24, 16, 80 + 80 + 16, 8),
        ] {
            let case = format!("rows {rows}, {tx} x {ty} tiles, {lanes} lanes");
            assert_eq!(wino_lane_cols(rows, tx, ty, lanes), cols, "{case}");
            assert_eq!(fill_lanes(rows, tx, ty, lanes), filled, "{case}");
        }
    }
}
