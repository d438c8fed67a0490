//! Wide-vector microkernels for the dense convolutions: the innermost register tile in
//! AVX-512F or AVX2+FMA, compiled by rustc (`#[target_feature]`), called from the Cranelift
//! kernels, which keep the loops over items, chunks, padding, threading and the epilogue.
//!
//! Cranelift's x86-64 backend has 16 xmm registers, 128-bit vectors and only the 213/132 FMA
//! forms, so its best dense kernel runs at about half of a 256-bit core's peak. A row kernel
//! here computes `OCB` output channels of one output row (or column tile) over one chunk of
//! the reduction, in tiles of `OCB` channels x `NV` vectors of columns: per tap, `NV` input
//! loads, `OCB` broadcasts and `OCB * NV` `vfmadd231ps` into accumulators that never leave
//! their registers. The last tile of a row is masked (AVX-512 masks, AVX2 `vmaskmovps`), so a
//! row of any width needs no overlapping or scalar columns.
//!
//! The weight stream is the one the Cranelift kernels read (`plan::pack_weights` with one
//! copy per weight): per tap an `i64` byte offset to the next tap's input (0 ends the chunk),
//! then the block's `OCB` weights.

use std::fmt;

/// The vector instruction set of the convolution kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Cranelift's own 128-bit code (SSE/AVX encodings of f32x4): any x86-64 host.
    Sse,
    /// 256-bit microkernels: AVX2 and FMA.
    Avx2,
    /// 512-bit microkernels: AVX-512F.
    Avx512,
}

impl Isa {
    /// The widest path this host runs.
    pub fn detect() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Sse)
    }

    /// Every path this host runs, narrowest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Sse, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.supported())
            .collect()
    }

    /// Whether this host runs the path.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Sse => true,
                Isa::Avx2 => {
                    std::arch::is_x86_feature_detected!("avx2")
                        && std::arch::is_x86_feature_detected!("fma")
                }
                Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Sse
        }
    }

    /// Parses `sse`, `avx2` or `avx512`.
    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "sse" => Some(Isa::Sse),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The name `parse` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Sse => "sse",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// f32 lanes of one vector.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Sse => 4,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Largest register block (output channels) of a microkernel: AVX-512 has 32 vector
/// registers (12 x 2 accumulators, 2 inputs, a broadcast), AVX2 16 (6 x 2, the MLAS tile).
pub(crate) fn max_ocb(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 12,
        Isa::Avx2 => 6,
        Isa::Sse => 0,
    }
}

/// The register block the planner uses on `isa`: the candidate tile (a block size; its
/// vectors follow from [`tile_vectors`]) that measured the most multiply-adds per second on
/// this host, the first time it is asked ([`tune`]); cached for the process.
pub(crate) fn block_ocb_max(isa: Isa) -> usize {
    tune(isa).block
}

/// The block for a reduction whose rows are only `width` columns (Winograd's GEMMs on a small
/// plane: 16 tiles): where the measured block's tile is wider than the row, its tile runs one
/// vector of the row and the block's few channels leave the loads of each tap to few
/// multiply-adds (5 x 1 on the AVX-512 path), so the path's largest block is taken instead.
pub(crate) fn block_ocb_for_width(isa: Isa, width: usize) -> usize {
    let tuned = block_ocb_max(isa);
    let tile_cols = isa.lanes() * tile_vectors(isa, tuned);
    match candidates(isa).first() {
        Some(&widest) if width < tile_cols => widest.max(tuned),
        _ => tuned,
    }
}

/// The outcome of the first-use measurement of one path's tiles.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The block size chosen (output channels per register block).
    pub block: usize,
    /// Every candidate: block size, vectors per tile, GFLOP/s measured.
    pub candidates: Vec<(usize, usize, f64)>,
    /// How long the measurement took.
    pub time: std::time::Duration,
}

/// Candidate blocks per path: AVX-512 12 x 2, 7 x 3 and 5 x 4 (XNNPACK uses 7 x 16, MLAS
/// 12 x 32, tract 16 x 12); AVX2 6 x 2 (MLAS, tract) and 3 x 3 (Zen prefers fewer
/// accumulators per input in XNNPACK's table).
fn candidates(isa: Isa) -> &'static [usize] {
    match isa {
        Isa::Avx512 => &[12, 7, 5],
        Isa::Avx2 => &[6, 3],
        Isa::Sse => &[],
    }
}

/// Measures each candidate tile of `isa` once per process (after a warm-up of the wide units,
/// a row of 8 tiles over 96 taps whose inputs and weights sit in L1, best of 9 interleaved
/// rounds of 16 calls) and keeps the fastest (the first, unless another is more than
/// [`PICK_MARGIN`] faster). On an AMD EPYC Zen4 (AVX-512) the three AVX-512 tiles measured 258 / 253 / 249
/// GFLOP/s, AVX2's two 131 / 123; without the warm-up, an Intel Xeon's AVX-512 tiles measured
/// about 86 GFLOP/s each, a third of their steady rate, and the pick was noise.
pub fn tune(isa: Isa) -> Tuning {
    static CACHE: std::sync::Mutex<Vec<(Isa, Tuning)>> = std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, t)) = cache.iter().find(|(i, _)| *i == isa) {
        return t.clone();
    }
    let t = measure(isa);
    cache.push((isa, t.clone()));
    t
}

fn measure(isa: Isa) -> Tuning {
    let t0 = std::time::Instant::now();
    let cands: Vec<(usize, usize)> = candidates(isa)
        .iter()
        .map(|&b| (b, tile_vectors(isa, b)))
        .filter(|&(b, _)| isa.supported() && row_kernel(isa, b).is_some())
        .collect();
    let mut best = vec![0f64; cands.len()];
    let taps = 96;
    // The wide units of some cores start slow (Intel powers up the upper lanes and may lower
    // the clock for the first tens to hundreds of microseconds of 512-bit code): run the first
    // candidate for WARM_UP first, so the rounds measure the steady state.
    let warm = std::time::Instant::now();
    while warm.elapsed() < WARM_UP {
        if let Some(&(b, nv)) = cands.first() {
            time_tile(isa, b, nv, taps, 1);
        } else {
            break;
        }
    }
    for _round in 0..9 {
        for (ci, &(b, nv)) in cands.iter().enumerate() {
            best[ci] = best[ci].max(time_tile(isa, b, nv, taps, REPS));
        }
    }
    // The first candidate (the largest block: the fewest input loads per FMA) unless another
    // is clearly faster: within PICK_MARGIN the measurement is noise, and the plan should not
    // change from run to run because of it.
    let fastest = (0..cands.len()).max_by(|&a, &b| best[a].total_cmp(&best[b]));
    let pick = match fastest {
        Some(i) if best[i] > best[0] * (1.0 + PICK_MARGIN) => cands[i].0,
        Some(_) => cands[0].0,
        None => max_ocb(isa),
    };
    Tuning {
        block: pick,
        candidates: cands
            .iter()
            .zip(&best)
            .map(|(&(b, nv), &g)| (b, nv, g))
            .collect(),
        time: t0.elapsed(),
    }
}

/// How much faster than the first candidate another must measure to be taken. At 3% an Intel
/// Xeon shared with other tenants flipped between 12 x 2 and 7 x 3 from run to run (94 vs 98
/// GFLOP/s in one run, 130 vs 130 in the next), and with it every plan.
const PICK_MARGIN: f64 = 0.08;

/// How long [`measure`] runs the wide units before it times them.
const WARM_UP: std::time::Duration = std::time::Duration::from_millis(2);
/// Calls per timing in [`measure`]: one call is about a microsecond, too short to time alone.
const REPS: usize = 16;

/// GFLOP/s of `reps` calls of the row kernel of block `b` (`nv` vectors a tile) over a row of
/// 8 tiles and `taps` taps whose inputs and weights sit in L1.
fn time_tile(isa: Isa, b: usize, nv: usize, taps: usize, reps: usize) -> f64 {
    let Some(f) = row_kernel(isa, b) else {
        return 0.0;
    };
    let width = 8 * nv * isa.lanes();
    let inp = vec![0.5f32; width + taps];
    // The weight stream: per tap the offset to the next tap's input (one float on), then `b`
    // weights; 0 after the last tap.
    let mut w = Vec::with_capacity(crate::packed::block_floats(taps, b, 1));
    for t in 0..taps {
        let d: i64 = if t + 1 < taps { 4 } else { 0 };
        crate::packed::push_tap(&mut w, d, std::iter::repeat_n(0.25, b), 1);
    }
    let mut out = vec![0f32; b * width];
    let t = std::time::Instant::now();
    for _ in 0..reps {
        // SAFETY: every tap reads `inp[t + x]` for x < width, inside `inp`; the output is `b`
        // rows of `width` floats; the caller checked that the host runs `isa`.
        unsafe {
            f(
                inp.as_ptr(),
                w.as_ptr().cast::<u8>(),
                out.as_mut_ptr(),
                width,
                width,
                0,
                std::ptr::null(),
            )
        };
        std::hint::black_box(&mut out);
    }
    let secs = t.elapsed().as_secs_f64().max(1e-9);
    2.0 * (reps * b * width * taps) as f64 / secs / 1e9
}

/// Vectors of columns per tile for a block of `ocb` channels: as many as the registers hold
/// (accumulators + one input per vector + a broadcast), at most 4 (AVX-512) or 3 (AVX2).
pub(crate) fn tile_vectors(isa: Isa, ocb: usize) -> usize {
    match isa {
        Isa::Avx512 => tile_vectors_const(512, ocb),
        Isa::Avx2 => tile_vectors_const(256, ocb),
        Isa::Sse => 1,
    }
}

/// A row kernel: `(input of the chunk's first tap at column 0, the block's weight stream at
/// the chunk's first tap, output at column 0 of the block's first channel, floats between two
/// output channels, columns, flags)`. Flags: [`ACCUMULATE`] (the sums start from the output,
/// a later chunk of a long reduction; else from zero), [`COUNTED`] (the reduction runs
/// `flags >> COUNT_SHIFT` taps, perhaps 0, instead of up to the stream's 0 offset: the border
/// rows of a fused vertical conv).
pub(crate) const ACCUMULATE: usize = 1;
/// See [`RowFn`].
pub(crate) const COUNTED: usize = 2;
/// See [`RowFn`].
pub(crate) const COUNT_SHIFT: u32 = 2;

/// See [`ACCUMULATE`]. The seventh argument: the epilogue to apply before the stores (a list
/// of [`EpStep`] ended by kind [`EP_END`]), or null.
pub(crate) type RowFn =
    unsafe extern "C" fn(*const f32, *const u8, *mut f32, usize, usize, usize, *const EpStep);

/// One step of an epilogue the microkernel applies to its sums before storing them (the last
/// chunk of a reduction), in the kernel's order; exactly `Unary::apply`'s semantics.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct EpStep {
    /// [`EP_END`], [`EP_AFFINE`], [`EP_BIAS`], [`EP_ADD`], [`EP_CLAMP`] or [`EP_LEAKY`].
    pub kind: u64,
    /// Affine, bias: the block's first channel's parameters (channel `j`'s scale at float
    /// `8j`, shift at `8j + 4`); add: the residual at the output's column 0 (same layout).
    pub ptr: *const f32,
    /// Clamp: the bounds (infinite for none); leaky: the slope in `a`.
    pub a: f32,
    pub b: f32,
}

/// Ends an epilogue.
pub(crate) const EP_END: u64 = 0;
/// `v * scale + shift`.
pub(crate) const EP_AFFINE: u64 = 1;
/// `v + shift`.
pub(crate) const EP_BIAS: u64 = 2;
/// `v + residual`.
pub(crate) const EP_ADD: u64 = 3;
/// `v < a ? a : v > b ? b : v` (relu, relu6, clamp).
pub(crate) const EP_CLAMP: u64 = 4;
/// `v < 0 ? a * v : v`.
pub(crate) const EP_LEAKY: u64 = 5;
/// Bytes of one [`EpStep`].
pub(crate) const EP_STEP_BYTES: usize = std::mem::size_of::<EpStep>();

/// Copies `rows` rows of `width` columns of `ocb` channels from a flat row's sums to the
/// output, applying the epilogue (or null) on the way: `(src, src channel stride, src row
/// stride, out, out channel stride, out row stride, ocb, rows, width, epilogue)`. The
/// residual of an epilogue has the output's layout.
pub(crate) type CopyFn = unsafe extern "C" fn(
    *const f32,
    usize,
    usize,
    *mut f32,
    usize,
    usize,
    usize,
    usize,
    usize,
    *const EpStep,
);

/// The copy-out kernel of `isa` ([`CopyFn`]).
pub(crate) fn copy_kernel(isa: Isa) -> Option<CopyFn> {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512 => Some(x86::copy512 as CopyFn),
            Isa::Avx2 => Some(x86::copy256 as CopyFn),
            Isa::Sse => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

/// A depthwise KxK kernel (K = 3, 5 or 7) over `R` output rows of one channel at once:
/// `(input of the first tap of the first row, the channel's weight stream, output, output row
/// stride, columns, input row stride, the K column taps' offsets (floats), epilogue or null,
/// wrap, back)`. Input rows `wrap..` of the window are `back` floats before where the stride
/// puts them: the input is a ring of rows (a band tile, `crate::plan::Pre::ring`) whose end
/// the window crosses at its row `wrap` (`isize::MAX` and 0: a plain input).
/// The weights stay in registers (or L1), and each input row is loaded once per column tap for
/// every output row it serves (3x3, vertical stride 1, 4 rows: 18 loads of a vector position
/// for 36 FMAs, against 36 for 36 one row at a time; 5x5: 40 for 100).
pub(crate) type DwFn = unsafe extern "C" fn(
    *const f32,
    *const u8,
    *mut f32,
    usize,
    usize,
    usize,
    *const isize,
    *const EpStep,
    isize,
    usize,
);

/// Input rows a depthwise kernel's window spans at most: (4 - 1) * 2 + 7.
const DW_WINDOW_MAX: usize = 13;

/// The depthwise KxK kernel of `isa` for a `k` x `k` window (3, 5 or 7), `rows` (1 to 4)
/// output rows and vertical stride `sh` (1 or 2). A plan's items take 2 or 4 rows
/// ([`crate::spec::ConvSpec::dw_rows`]); 1 and 3 serve the rows a plane's height leaves.
pub(crate) fn dw_kernel(isa: Isa, k: usize, rows: usize, sh: usize) -> Option<DwFn> {
    #[cfg(target_arch = "x86_64")]
    {
        use x86::*;
        macro_rules! pick {
            ($($k:literal)*) => {
                match (isa, k, rows, sh) {
                    $(
                        (Isa::Avx512, $k, 1, 1) => dw_512::<$k, 1, 1>,
                        (Isa::Avx512, $k, 2, 1) => dw_512::<$k, 2, 1>,
                        (Isa::Avx512, $k, 3, 1) => dw_512::<$k, 3, 1>,
                        (Isa::Avx512, $k, 4, 1) => dw_512::<$k, 4, 1>,
                        (Isa::Avx512, $k, 1, 2) => dw_512::<$k, 1, 2>,
                        (Isa::Avx512, $k, 2, 2) => dw_512::<$k, 2, 2>,
                        (Isa::Avx512, $k, 3, 2) => dw_512::<$k, 3, 2>,
                        (Isa::Avx512, $k, 4, 2) => dw_512::<$k, 4, 2>,
                        (Isa::Avx2, $k, 1, 1) => dw_256::<$k, 1, 1>,
                        (Isa::Avx2, $k, 2, 1) => dw_256::<$k, 2, 1>,
                        (Isa::Avx2, $k, 3, 1) => dw_256::<$k, 3, 1>,
                        (Isa::Avx2, $k, 4, 1) => dw_256::<$k, 4, 1>,
                        (Isa::Avx2, $k, 1, 2) => dw_256::<$k, 1, 2>,
                        (Isa::Avx2, $k, 2, 2) => dw_256::<$k, 2, 2>,
                        (Isa::Avx2, $k, 3, 2) => dw_256::<$k, 3, 2>,
                        (Isa::Avx2, $k, 4, 2) => dw_256::<$k, 4, 2>,
                    )*
                    _ => return None,
                }
            };
        }
        let f: DwFn = pick!(3 5 7);
        Some(f)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k, rows, sh);
        None
    }
}

/// The geometry of a whole-plane depthwise call ([`DwPlaneFn`]): the input plane's rows and
/// columns, the output's, the top and left padding, the column dilation and the output's row
/// stride (floats). Rows of the output past `oh` and columns past `ow` are not written.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DwPlane {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub pt: usize,
    pub pl: usize,
    pub dw: usize,
    pub out_rs: usize,
}

// The code generator writes a `DwPlane` as 8 words (`codegen::depthwise`).
const _: () = assert!(std::mem::size_of::<DwPlane>() == 8 * 8);

/// A depthwise KxK kernel (K = 3, 5 or 7, the same stride S = 1 or 2 on both axes) over a
/// whole small plane of one channel: `(the channel's unpadded input plane, its weight stream,
/// output, geometry, epilogue or null)`. For planes whose rows fit [`dw_plane_fits`]: a
/// 7x7 or 14x14 plane's per-channel cost was a padded copy and several calls
/// ([`crate::spec::ConvSpec::dw_plane`]).
pub(crate) type DwPlaneFn =
    unsafe extern "C" fn(*const f32, *const u8, *mut f32, *const DwPlane, *const EpStep);

/// Whether output rows of `ow` columns fit the whole-plane kernel of `isa` (two vectors).
pub(crate) fn dw_plane_fits(isa: Isa, ow: usize) -> bool {
    isa != Isa::Sse && ow <= 2 * isa.lanes()
}

/// The whole-plane depthwise kernel of `isa` for a `k` x `k` window (3, 5 or 7) and stride
/// `s` (1 or 2) on both axes ([`DwPlaneFn`]).
pub(crate) fn dw_plane_kernel(isa: Isa, k: usize, s: usize) -> Option<DwPlaneFn> {
    #[cfg(target_arch = "x86_64")]
    {
        use x86::dw_plane::*;
        let f: DwPlaneFn = match (isa, k, s) {
            (Isa::Avx512, 3, 1) => plane512::<3, 1>,
            (Isa::Avx512, 3, 2) => plane512::<3, 2>,
            (Isa::Avx512, 5, 1) => plane512::<5, 1>,
            (Isa::Avx512, 5, 2) => plane512::<5, 2>,
            (Isa::Avx512, 7, 1) => plane512::<7, 1>,
            (Isa::Avx512, 7, 2) => plane512::<7, 2>,
            (Isa::Avx2, 3, 1) => plane256::<3, 1>,
            (Isa::Avx2, 3, 2) => plane256::<3, 2>,
            (Isa::Avx2, 5, 1) => plane256::<5, 1>,
            (Isa::Avx2, 5, 2) => plane256::<5, 2>,
            (Isa::Avx2, 7, 1) => plane256::<7, 1>,
            (Isa::Avx2, 7, 2) => plane256::<7, 2>,
            _ => return None,
        };
        Some(f)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, k, s);
        None
    }
}

/// The row kernel of `isa` for blocks of `ocb` channels (`1..=max_ocb(isa)`).
pub(crate) fn row_kernel(isa: Isa, ocb: usize) -> Option<RowFn> {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            Isa::Avx512 => x86::row512(ocb),
            Isa::Avx2 => x86::row256(ocb),
            Isa::Sse => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, ocb);
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub(super) mod dw_plane;

    use super::{
        ACCUMULATE, COUNT_SHIFT, COUNTED, DW_WINDOW_MAX, EP_ADD, EP_AFFINE, EP_BIAS, EP_CLAMP,
        EP_END, EP_LEAKY, EpStep, RowFn,
    };

    /// The most columns past whole vectors a row kernel computes transposed, a vector of
    /// channels a column ([`tile512`]'s `COLS`), where its block has more than twice as many
    /// channels (on AVX2, whose blocks hold up to 6, 2). 14x14's 196 positions leave 4: a
    /// 256 -> 1024 1x1 at 14x14 0.990 -> 0.964 ms with 4 against 2 (AMD Zen4).
    const COL_TAIL: usize = 4;

    /// Reads the `i64` offset at the head of a tap's weights.
    #[inline(always)]
    unsafe fn next_offset(wp: *const u8) -> isize {
        unsafe { (wp as *const i64).read_unaligned() as isize }
    }

    /// Applies the epilogue `ep` to `v`, the sums of channel `j` at float `off` of the output
    /// (`j * out_cs + column`); `masked`: read the residual under `mask`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn ep512(
        mut v: __m512,
        ep: *const EpStep,
        j: usize,
        off: usize,
        mask: __mmask16,
        masked: bool,
    ) -> __m512 {
        unsafe {
            let mut e = ep;
            loop {
                let st = *e;
                match st.kind {
                    EP_END => break,
                    EP_AFFINE => {
                        let sc = _mm512_set1_ps(*st.ptr.add(8 * j));
                        let sh = _mm512_set1_ps(*st.ptr.add(8 * j + 4));
                        v = _mm512_add_ps(_mm512_mul_ps(v, sc), sh);
                    }
                    EP_BIAS => v = _mm512_add_ps(v, _mm512_set1_ps(*st.ptr.add(8 * j + 4))),
                    EP_ADD => {
                        let p = st.ptr.add(off);
                        let r = if masked {
                            _mm512_maskz_loadu_ps(mask, p)
                        } else {
                            _mm512_loadu_ps(p)
                        };
                        v = _mm512_add_ps(v, r);
                    }
                    // max(a, v) = a > v ? a : v keeps NaN and -0 as `Unary::apply` does.
                    EP_CLAMP => {
                        v = _mm512_max_ps(_mm512_set1_ps(st.a), v);
                        v = _mm512_min_ps(_mm512_set1_ps(st.b), v);
                    }
                    EP_LEAKY => {
                        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
                        v = _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(st.a));
                    }
                    _ => {}
                }
                e = e.add(1);
            }
            v
        }
    }

    /// [`ep512`] for 8-lane vectors; `mask`: lanes with the sign bit set.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn ep256(
        mut v: __m256,
        ep: *const EpStep,
        j: usize,
        off: usize,
        mask: __m256i,
        masked: bool,
    ) -> __m256 {
        unsafe {
            let mut e = ep;
            loop {
                let st = *e;
                match st.kind {
                    EP_END => break,
                    EP_AFFINE => {
                        let sc = _mm256_set1_ps(*st.ptr.add(8 * j));
                        let sh = _mm256_set1_ps(*st.ptr.add(8 * j + 4));
                        v = _mm256_add_ps(_mm256_mul_ps(v, sc), sh);
                    }
                    EP_BIAS => v = _mm256_add_ps(v, _mm256_set1_ps(*st.ptr.add(8 * j + 4))),
                    EP_ADD => {
                        let p = st.ptr.add(off);
                        let r = if masked {
                            _mm256_maskload_ps(p, mask)
                        } else {
                            _mm256_loadu_ps(p)
                        };
                        v = _mm256_add_ps(v, r);
                    }
                    EP_CLAMP => {
                        v = _mm256_max_ps(_mm256_set1_ps(st.a), v);
                        v = _mm256_min_ps(_mm256_set1_ps(st.b), v);
                    }
                    EP_LEAKY => {
                        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
                        let av = _mm256_mul_ps(v, _mm256_set1_ps(st.a));
                        v = _mm256_blendv_ps(v, av, neg);
                    }
                    _ => {}
                }
                e = e.add(1);
            }
            v
        }
    }

    /// The epilogues of the common form, decoded from an [`EpStep`] list (null: none): scale,
    /// shift, residual, clamp, each optional, in that order.
    #[derive(Clone, Copy)]
    struct EpFast {
        scale: *const f32,
        shift: *const f32,
        add: *const f32,
        clamp: bool,
        lo: f32,
        hi: f32,
    }

    impl EpFast {
        /// The fixed form of `ep`, or `None` where its steps come in another order, repeat or
        /// include a leaky relu (those go through [`ep512`] / [`ep256`], step by step).
        #[inline(always)]
        unsafe fn decode(ep: *const EpStep) -> Option<EpFast> {
            let mut f = EpFast {
                scale: std::ptr::null(),
                shift: std::ptr::null(),
                add: std::ptr::null(),
                clamp: false,
                lo: 0.0,
                hi: 0.0,
            };
            if ep.is_null() {
                return Some(f);
            }
            let (mut rank, mut e) = (0, ep);
            loop {
                // SAFETY: the list ends with `EP_END`.
                let st = unsafe { *e };
                let r = match st.kind {
                    EP_END => return Some(f),
                    EP_AFFINE => {
                        (f.scale, f.shift) = (st.ptr, st.ptr);
                        1
                    }
                    EP_BIAS => {
                        f.shift = st.ptr;
                        1
                    }
                    EP_ADD => {
                        f.add = st.ptr;
                        2
                    }
                    EP_CLAMP => {
                        (f.clamp, f.lo, f.hi) = (true, st.a, st.b);
                        3
                    }
                    _ => return None,
                };
                if r <= rank {
                    return None;
                }
                rank = r;
                e = unsafe { e.add(1) };
            }
        }
    }

    /// Stores a tile's sums through an [`EpFast`] epilogue, as [`ep512`] computes it
    /// (`v * scale + shift`, `+ residual`, `max(lo, .)`, `min(hi, .)`), one pass over the tile
    /// per step present, each a loop without branches. Through `ep512`'s loop over the steps
    /// the store loop was not unrolled and the tile's sums went through the stack (a bias and
    /// relu6 cost a 32-tap pointwise row 12-18% of its time). Row `j` of `acc` is at `j * out_cs` floats of `out` (and of the
    /// residual, from column `x`) and takes channel `j * chan_step`'s parameters.
    // Always inlined, so without a target feature of its own (a `target_feature` function
    // cannot be `inline(always)`): out of line, the sums went through the stack.
    #[inline(always)]
    // Index loops, as in the Winograd transforms, where iterators over the tile stayed on the
    // stack.
    #[allow(clippy::needless_range_loop)]
    unsafe fn store_fast512<const OCB: usize, const NV: usize, const MASKED: bool>(
        acc: &[[__m512; NV]; OCB],
        f: &EpFast,
        out: *mut f32,
        (out_cs, chan_step, x): (usize, usize, usize),
        mask: __mmask16,
    ) {
        unsafe {
            let mut v = *acc;
            if !f.scale.is_null() {
                for j in 0..OCB {
                    let sc = _mm512_set1_ps(*f.scale.add(8 * j * chan_step));
                    for k in 0..NV {
                        v[j][k] = _mm512_mul_ps(v[j][k], sc);
                    }
                }
            }
            if !f.shift.is_null() {
                for j in 0..OCB {
                    let sh = _mm512_set1_ps(*f.shift.add(8 * j * chan_step + 4));
                    for k in 0..NV {
                        v[j][k] = _mm512_add_ps(v[j][k], sh);
                    }
                }
            }
            if !f.add.is_null() {
                for j in 0..OCB {
                    for k in 0..NV {
                        let r = f.add.add(j * out_cs + x + 16 * k);
                        let r = if MASKED && k + 1 == NV {
                            _mm512_maskz_loadu_ps(mask, r)
                        } else {
                            _mm512_loadu_ps(r)
                        };
                        v[j][k] = _mm512_add_ps(v[j][k], r);
                    }
                }
            }
            if f.clamp {
                let (lo, hi) = (_mm512_set1_ps(f.lo), _mm512_set1_ps(f.hi));
                for j in 0..OCB {
                    for k in 0..NV {
                        v[j][k] = _mm512_min_ps(hi, _mm512_max_ps(lo, v[j][k]));
                    }
                }
            }
            for j in 0..OCB {
                for k in 0..NV {
                    let p = out.add(j * out_cs + 16 * k);
                    if MASKED && k + 1 == NV {
                        _mm512_mask_storeu_ps(p, mask, v[j][k]);
                    } else {
                        _mm512_storeu_ps(p, v[j][k]);
                    }
                }
            }
        }
    }

    /// Stores a tile's sums through an [`EpFast`] epilogue, as [`ep256`] computes it
    /// (`v * scale + shift`, `+ residual`, `max(lo, .)`, `min(hi, .)`), one pass over the tile
    /// per step present, each a loop without branches. Through `ep256`'s loop over the steps
    /// the store loop was not unrolled and the tile's sums went through the stack (a bias and
    /// relu6 cost a 32-tap pointwise row 12-18% of its time). Row `j` of `acc` is at `j * out_cs`
    /// floats of `out` (and of the residual, from column `x`) and takes channel
    /// `j * chan_step`'s parameters; `mask`: lanes with the sign bit set.
    // Always inlined, so without a target feature of its own (a `target_feature` function
    // cannot be `inline(always)`): out of line, the sums went through the stack.
    #[inline(always)]
    // Index loops, as in the Winograd transforms, where iterators over the tile stayed on the
    // stack.
    #[allow(clippy::needless_range_loop)]
    unsafe fn store_fast256<const OCB: usize, const NV: usize, const MASKED: bool>(
        acc: &[[__m256; NV]; OCB],
        f: &EpFast,
        out: *mut f32,
        (out_cs, chan_step, x): (usize, usize, usize),
        mask: __m256i,
    ) {
        unsafe {
            let mut v = *acc;
            if !f.scale.is_null() {
                for j in 0..OCB {
                    let sc = _mm256_set1_ps(*f.scale.add(8 * j * chan_step));
                    for k in 0..NV {
                        v[j][k] = _mm256_mul_ps(v[j][k], sc);
                    }
                }
            }
            if !f.shift.is_null() {
                for j in 0..OCB {
                    let sh = _mm256_set1_ps(*f.shift.add(8 * j * chan_step + 4));
                    for k in 0..NV {
                        v[j][k] = _mm256_add_ps(v[j][k], sh);
                    }
                }
            }
            if !f.add.is_null() {
                for j in 0..OCB {
                    for k in 0..NV {
                        let r = f.add.add(j * out_cs + x + 8 * k);
                        let r = if MASKED && k + 1 == NV {
                            _mm256_maskload_ps(r, mask)
                        } else {
                            _mm256_loadu_ps(r)
                        };
                        v[j][k] = _mm256_add_ps(v[j][k], r);
                    }
                }
            }
            if f.clamp {
                let (lo, hi) = (_mm256_set1_ps(f.lo), _mm256_set1_ps(f.hi));
                for j in 0..OCB {
                    for k in 0..NV {
                        v[j][k] = _mm256_min_ps(hi, _mm256_max_ps(lo, v[j][k]));
                    }
                }
            }
            for j in 0..OCB {
                for k in 0..NV {
                    let p = out.add(j * out_cs + 8 * k);
                    if MASKED && k + 1 == NV {
                        _mm256_maskstore_ps(p, mask, v[j][k]);
                    } else {
                        _mm256_storeu_ps(p, v[j][k]);
                    }
                }
            }
        }
    }

    /// Stores a tile's sums through any epilogue `ep`, step by step per vector ([`ep512`]):
    /// the lists [`EpFast`] does not express (a leaky relu, another order).
    #[target_feature(enable = "avx512f")]
    #[inline(never)]
    unsafe fn store_steps512<const OCB: usize, const NV: usize, const MASKED: bool>(
        acc: &[[__m512; NV]; OCB],
        ep: *const EpStep,
        out: *mut f32,
        (out_cs, x): (usize, usize),
        mask: __mmask16,
    ) {
        unsafe {
            for (j, a) in acc.iter().enumerate() {
                for (k, v) in a.iter().enumerate() {
                    let p = out.add(j * out_cs + 16 * k);
                    let last = MASKED && k + 1 == NV;
                    let v = ep512(*v, ep, j, j * out_cs + x + 16 * k, mask, last);
                    if last {
                        _mm512_mask_storeu_ps(p, mask, v);
                    } else {
                        _mm512_storeu_ps(p, v);
                    }
                }
            }
        }
    }

    /// One tile: `OCB` channels x `NV` vectors of 16 columns; the last vector under `mask`
    /// when `MASKED`; then `COLS` (0 to [`COL_TAIL`]) columns transposed, a vector of the
    /// block's channels a column (each tap one load of its `OCB` weights and a broadcast of
    /// the column's input: a masked vector would spend `OCB` FMAs a tap on them, 15 of 16
    /// lanes empty for one column; the same products in the same order, so the same sums).
    /// `ep` (or null) is applied before the stores; `x`: the tile's column.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile512<const OCB: usize, const NV: usize, const MASKED: bool, const COLS: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_cs: usize,
        mask: __mmask16,
        flags: usize,
        ep: *const EpStep,
        x: usize,
    ) {
        unsafe {
            const { assert!(COLS <= COL_TAIL) };
            let mut acc = [[_mm512_setzero_ps(); NV]; OCB];
            let mut cols = [_mm512_setzero_ps(); COLS];
            let lanes: __mmask16 = ((1u32 << OCB) - 1) as __mmask16;
            if flags & ACCUMULATE != 0 {
                for (j, a) in acc.iter_mut().enumerate() {
                    for (k, v) in a.iter_mut().enumerate() {
                        let p = out.add(j * out_cs + 16 * k);
                        *v = if MASKED && k + 1 == NV {
                            _mm512_maskz_loadu_ps(mask, p)
                        } else {
                            _mm512_loadu_ps(p)
                        };
                    }
                }
                let mut buf = [0f32; 16];
                for (c, a) in cols.iter_mut().enumerate() {
                    for (j, b) in buf.iter_mut().enumerate().take(OCB) {
                        *b = *out.add(j * out_cs + 16 * NV + c);
                    }
                    *a = _mm512_loadu_ps(buf.as_ptr());
                }
            }
            let mut p = inp;
            let mut wp = w;
            // Taps left when counted (`usize::MAX`: up to the stream's 0 offset).
            let mut left = if flags & COUNTED != 0 {
                flags >> COUNT_SHIFT
            } else {
                usize::MAX
            };
            while left > 0 {
                left -= 1;
                let d = next_offset(wp);
                let wf = wp.add(crate::packed::OFFSET_BYTES) as *const f32;
                let mut x = [_mm512_setzero_ps(); NV];
                for (k, v) in x.iter_mut().enumerate() {
                    *v = if MASKED && k + 1 == NV {
                        _mm512_maskz_loadu_ps(mask, p.add(16 * k))
                    } else {
                        _mm512_loadu_ps(p.add(16 * k))
                    };
                }
                for (j, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*wf.add(j));
                    for (k, v) in a.iter_mut().enumerate() {
                        *v = _mm512_fmadd_ps(x[k], b, *v);
                    }
                }
                if COLS > 0 {
                    let wv = _mm512_maskz_loadu_ps(lanes, wf);
                    for (c, a) in cols.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(_mm512_set1_ps(*p.add(16 * NV + c)), wv, *a);
                    }
                }
                if d == 0 {
                    break;
                }
                p = p.byte_offset(d);
                wp = wp.add(crate::packed::tap_bytes(OCB, 1));
            }
            if COLS > 0 {
                let mut buf = [0f32; 16];
                for (c, a) in cols.iter().enumerate() {
                    _mm512_storeu_ps(buf.as_mut_ptr(), *a);
                    let xc = 16 * NV + c;
                    for (j, &v) in buf.iter().enumerate().take(OCB) {
                        *out.add(j * out_cs + xc) = ep_scalar(v, ep, j, j * out_cs + x + xc);
                    }
                }
            }
            if NV == 0 {
                return;
            }
            if let Some(f) = EpFast::decode(ep) {
                store_fast512::<OCB, NV, MASKED>(&acc, &f, out, (out_cs, 1, x), mask);
                return;
            }
            // A copy for the step-by-step path, out of line: were `acc` itself borrowed there, it
            // would live on the stack on every path (zeroed with `memset` each tile, the sums
            // stored and read back after the reduction).
            let sums = acc;
            store_steps512::<OCB, NV, MASKED>(&sums, ep, out, (out_cs, x), mask);
        }
    }

    /// Applies the epilogue `ep` (or null) to one sum `v` of channel `j` at float `off` of
    /// the output, as [`ep512`] does to a lane (the same order, and `max(a, v)` / `min(b, v)`
    /// keep a NaN `v` as `_mm512_max_ps(a, v)` does).
    unsafe fn ep_scalar(mut v: f32, ep: *const EpStep, j: usize, off: usize) -> f32 {
        if ep.is_null() {
            return v;
        }
        let mut e = ep;
        loop {
            // SAFETY: the list ends with `EP_END`; its pointers hold the block's parameters
            // and the residual at the output's offsets.
            let st = unsafe { *e };
            match st.kind {
                EP_END => return v,
                EP_AFFINE => unsafe { v = v * *st.ptr.add(8 * j) + *st.ptr.add(8 * j + 4) },
                EP_BIAS => unsafe { v += *st.ptr.add(8 * j + 4) },
                EP_ADD => unsafe { v += *st.ptr.add(off) },
                EP_CLAMP => {
                    v = if st.a > v { st.a } else { v };
                    v = if st.b < v { st.b } else { v };
                }
                EP_LEAKY => {
                    if v < 0.0 {
                        v *= st.a;
                    }
                }
                _ => {}
            }
            e = unsafe { e.add(1) };
        }
    }

    /// A row of `width` columns: whole tiles of `NV` vectors, then one masked tile of the
    /// rest, or, where the rest leaves at most [`COL_TAIL`] columns past whole vectors and
    /// the block has more than twice as many channels, one tile of its whole vectors and
    /// those columns transposed ([`tile512`]'s `COLS`).
    #[target_feature(enable = "avx512f")]
    unsafe extern "C" fn row512_impl<const OCB: usize, const NV: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_cs: usize,
        width: usize,
        flags: usize,
        ep: *const EpStep,
    ) {
        unsafe {
            let acc = flags;
            let step = 16 * NV;
            let mut x = 0;
            while x + step <= width {
                tile512::<OCB, NV, false, 0>(inp.add(x), w, out.add(x), out_cs, !0, acc, ep, x);
                x += step;
            }
            let rest = width - x;
            if rest == 0 {
                return;
            }
            let (i, o) = (inp.add(x), out.add(x));
            if OCB > 2 {
                // Whole vectors, then up to `COL_TAIL` columns transposed where the block
                // has more than twice as many channels.
                macro_rules! cols {
                    ($($full:literal)*) => {
                        match (rest / 16, rest % 16) {
                            $(
                                ($full, 1) => {
                                    return tile512::<OCB, $full, false, 1>(i, w, o, out_cs, !0, acc, ep, x);
                                }
                                ($full, 2) if OCB > 4 => {
                                    return tile512::<OCB, $full, false, 2>(i, w, o, out_cs, !0, acc, ep, x);
                                }
                                ($full, 3) if OCB > 6 => {
                                    return tile512::<OCB, $full, false, 3>(i, w, o, out_cs, !0, acc, ep, x);
                                }
                                ($full, 4) if OCB > 8 => {
                                    return tile512::<OCB, $full, false, 4>(i, w, o, out_cs, !0, acc, ep, x);
                                }
                            )*
                            _ => {}
                        }
                    };
                }
                cols!(0 1 2 3);
            }
            let nv = rest.div_ceil(16);
            let tail = rest - 16 * (nv - 1);
            let mask: __mmask16 = if tail == 16 { !0 } else { (1u16 << tail) - 1 };
            match nv {
                1 => tile512::<OCB, 1, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
                2 => tile512::<OCB, 2, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
                3 => tile512::<OCB, 3, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
                _ => tile512::<OCB, 4, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
            }
        }
    }

    /// Stores a tile's sums through any epilogue `ep`, step by step per vector ([`ep256`]):
    /// the lists [`EpFast`] does not express (a leaky relu, another order).
    #[target_feature(enable = "avx2,fma")]
    #[inline(never)]
    unsafe fn store_steps256<const OCB: usize, const NV: usize, const MASKED: bool>(
        acc: &[[__m256; NV]; OCB],
        ep: *const EpStep,
        out: *mut f32,
        (out_cs, x): (usize, usize),
        mask: __m256i,
    ) {
        unsafe {
            for (j, a) in acc.iter().enumerate() {
                for (k, v) in a.iter().enumerate() {
                    let p = out.add(j * out_cs + 8 * k);
                    let last = MASKED && k + 1 == NV;
                    let v = ep256(*v, ep, j, j * out_cs + x + 8 * k, mask, last);
                    if last {
                        _mm256_maskstore_ps(p, mask, v);
                    } else {
                        _mm256_storeu_ps(p, v);
                    }
                }
            }
        }
    }

    /// One tile of 8-column vectors; the last vector under `mask` (lanes with the sign bit
    /// set) when `MASKED`; then `COLS` columns transposed, as [`tile512`]'s.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile256<const OCB: usize, const NV: usize, const MASKED: bool, const COLS: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_cs: usize,
        mask: __m256i,
        flags: usize,
        ep: *const EpStep,
        x: usize,
    ) {
        unsafe {
            const { assert!(COLS <= COL_TAIL) };
            let mut acc = [[_mm256_setzero_ps(); NV]; OCB];
            let mut cols = [_mm256_setzero_ps(); COLS];
            // The block's channels as lanes (OCB <= 8).
            let lanes = _mm256_cmpgt_epi32(
                _mm256_set1_epi32(OCB as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            );
            if flags & ACCUMULATE != 0 {
                for (j, a) in acc.iter_mut().enumerate() {
                    for (k, v) in a.iter_mut().enumerate() {
                        let p = out.add(j * out_cs + 8 * k);
                        *v = if MASKED && k + 1 == NV {
                            _mm256_maskload_ps(p, mask)
                        } else {
                            _mm256_loadu_ps(p)
                        };
                    }
                }
                let mut buf = [0f32; 8];
                for (c, a) in cols.iter_mut().enumerate() {
                    for (j, b) in buf.iter_mut().enumerate().take(OCB) {
                        *b = *out.add(j * out_cs + 8 * NV + c);
                    }
                    *a = _mm256_loadu_ps(buf.as_ptr());
                }
            }
            let mut p = inp;
            let mut wp = w;
            // Taps left when counted (`usize::MAX`: up to the stream's 0 offset).
            let mut left = if flags & COUNTED != 0 {
                flags >> COUNT_SHIFT
            } else {
                usize::MAX
            };
            while left > 0 {
                left -= 1;
                let d = next_offset(wp);
                let wf = wp.add(crate::packed::OFFSET_BYTES) as *const f32;
                let mut x = [_mm256_setzero_ps(); NV];
                for (k, v) in x.iter_mut().enumerate() {
                    *v = if MASKED && k + 1 == NV {
                        _mm256_maskload_ps(p.add(8 * k), mask)
                    } else {
                        _mm256_loadu_ps(p.add(8 * k))
                    };
                }
                for (j, a) in acc.iter_mut().enumerate() {
                    let b = _mm256_broadcast_ss(&*wf.add(j));
                    for (k, v) in a.iter_mut().enumerate() {
                        *v = _mm256_fmadd_ps(x[k], b, *v);
                    }
                }
                if COLS > 0 {
                    let wv = _mm256_maskload_ps(wf, lanes);
                    for (c, a) in cols.iter_mut().enumerate() {
                        *a = _mm256_fmadd_ps(_mm256_set1_ps(*p.add(8 * NV + c)), wv, *a);
                    }
                }
                if d == 0 {
                    break;
                }
                p = p.byte_offset(d);
                wp = wp.add(crate::packed::tap_bytes(OCB, 1));
            }
            if COLS > 0 {
                let mut buf = [0f32; 8];
                for (c, a) in cols.iter().enumerate() {
                    _mm256_storeu_ps(buf.as_mut_ptr(), *a);
                    let xc = 8 * NV + c;
                    for (j, &v) in buf.iter().enumerate().take(OCB) {
                        *out.add(j * out_cs + xc) = ep_scalar(v, ep, j, j * out_cs + x + xc);
                    }
                }
            }
            if NV == 0 {
                return;
            }
            if let Some(f) = EpFast::decode(ep) {
                store_fast256::<OCB, NV, MASKED>(&acc, &f, out, (out_cs, 1, x), mask);
                return;
            }
            // A copy for the step-by-step path, out of line: were `acc` itself borrowed there, it
            // would live on the stack on every path (zeroed with `memset` each tile, the sums
            // stored and read back after the reduction).
            let sums = acc;
            store_steps256::<OCB, NV, MASKED>(&sums, ep, out, (out_cs, x), mask);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe extern "C" fn row256_impl<const OCB: usize, const NV: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_cs: usize,
        width: usize,
        flags: usize,
        ep: *const EpStep,
    ) {
        unsafe {
            let acc = flags;
            let step = 8 * NV;
            let mut x = 0;
            let all = _mm256_set1_epi32(-1);
            while x + step <= width {
                tile256::<OCB, NV, false, 0>(inp.add(x), w, out.add(x), out_cs, all, acc, ep, x);
                x += step;
            }
            let rest = width - x;
            if rest == 0 {
                return;
            }
            let (i, o) = (inp.add(x), out.add(x));
            if OCB > 2 {
                // Whole vectors, then one or two columns transposed (see `row512_impl`).
                macro_rules! cols {
                    ($($full:literal)*) => {
                        match (rest / 8, rest % 8) {
                            $(
                                ($full, 1) => {
                                    return tile256::<OCB, $full, false, 1>(i, w, o, out_cs, all, acc, ep, x);
                                }
                                ($full, 2) if OCB > 4 => {
                                    return tile256::<OCB, $full, false, 2>(i, w, o, out_cs, all, acc, ep, x);
                                }
                            )*
                            _ => {}
                        }
                    };
                }
                cols!(0 1 2);
            }
            let nv = rest.div_ceil(8);
            let tail = (rest - 8 * (nv - 1)) as i32;
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            // Lane i is on when i < tail: (tail > i) gives all ones.
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), lanes);
            match nv {
                1 => tile256::<OCB, 1, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
                2 => tile256::<OCB, 2, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
                _ => tile256::<OCB, 3, true, 0>(i, w, o, out_cs, mask, acc, ep, x),
            }
        }
    }

    /// The offsets (floats) of a depthwise window's input rows from its first: `in_rs` apart,
    /// rows `wrap..` `back` floats earlier (see [`super::DwFn`]).
    #[inline(always)]
    fn dw_window_rows<const K: usize, const R: usize, const SH: usize>(
        in_rs: usize,
        wrap: isize,
        back: usize,
    ) -> [isize; DW_WINDOW_MAX] {
        const { assert!((R - 1) * SH + K <= DW_WINDOW_MAX) };
        let mut rows = [0isize; DW_WINDOW_MAX];
        for (ii, r) in rows.iter_mut().enumerate().take((R - 1) * SH + K) {
            let back = if ii as isize >= wrap { back } else { 0 };
            *r = (ii * in_rs) as isize - back as isize;
        }
        rows
    }

    /// Weight `t` (row-major in the `K * K` window) of a depthwise channel's weight stream
    /// (12 bytes a tap: the offset, then the weight).
    #[inline(always)]
    unsafe fn dw_weight(w: *const u8, t: usize) -> f32 {
        unsafe { (w.add(12 * t + 8) as *const f32).read_unaligned() }
    }

    /// The `K * K` weights of a depthwise channel from its weight stream ([`dw_weight`]).
    #[inline(always)]
    unsafe fn dw_weights<const K: usize>(w: *const u8) -> [[f32; K]; K] {
        let mut k = [[0f32; K]; K];
        for (t, v) in k.iter_mut().flatten().enumerate() {
            *v = unsafe { dw_weight(w, t) };
        }
        k
    }

    /// The three column taps of a 3-wide window on `NV` vectors of a row from `p` (the
    /// middle tap's first column), the last vector under `mask` when `MASKED`: one load of
    /// each vector, the outer taps shifted in from the vectors beside it (`valignd`; of a
    /// vector outside the tile only its nearest lane, masked), not loaded again across cache
    /// lines. A masked last vector takes one lane more, the right tap of its last column; the
    /// vector after it only where it is whole. Nothing is read that the taps' own loads would
    /// not read.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn shifted_taps<const NV: usize, const MASKED: bool>(
        p: *const f32,
        mask: __mmask16,
    ) -> [[__m512; NV]; 3] {
        unsafe {
            let (last, next) = match (MASKED, mask) {
                (false, _) | (true, 0xFFFF) => (0xFFFF, 0x0001),
                (true, m) => (m | (m << 1), 0),
            };
            let mut c = [_mm512_setzero_ps(); 6];
            c[0] = _mm512_maskz_loadu_ps(0x8000, p.sub(16));
            for k in 0..NV {
                c[k + 1] = if k + 1 == NV {
                    _mm512_maskz_loadu_ps(last, p.add(16 * k))
                } else {
                    _mm512_loadu_ps(p.add(16 * k))
                };
            }
            c[NV + 1] = _mm512_maskz_loadu_ps(next, p.add(16 * NV));
            let mut v = [[_mm512_setzero_ps(); NV]; 3];
            for k in 0..NV {
                let (l, m, r) = (c[k], c[k + 1], c[k + 2]);
                v[0][k] = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                    _mm512_castps_si512(m),
                    _mm512_castps_si512(l),
                ));
                v[1][k] = m;
                v[2][k] = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                    _mm512_castps_si512(r),
                    _mm512_castps_si512(m),
                ));
            }
            v
        }
    }

    /// One depthwise tile of `R` output rows by `NV` vectors at column `x`; the last vector
    /// under `mask` when `MASKED`. `wv`: the weights, broadcast; `kwo`: the column taps'
    /// offsets.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dw_tile512<
        const K: usize,
        const R: usize,
        const SH: usize,
        const NV: usize,
        const MASKED: bool,
        const UNIT: bool,
    >(
        inp: *const f32,
        wv: &[[__m512; K]; K],
        kwo: &[isize; K],
        out: *mut f32,
        out_rs: usize,
        in_rows: &[isize; DW_WINDOW_MAX],
        x: usize,
        mask: __mmask16,
        ep: *const EpStep,
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; R];
            // Input row `ii` (of the window of all R rows) serves output row r with kernel
            // row ii - r*SH.
            for ii in 0..(R - 1) * SH + K {
                if UNIT && K == 3 {
                    let p = inp.offset(in_rows[ii] + x as isize + 1);
                    let v = shifted_taps::<NV, MASKED>(p, mask);
                    for (r, a) in acc.iter_mut().enumerate() {
                        if ii >= r * SH && ii - r * SH < K {
                            for (b, vb) in v.iter().enumerate() {
                                let wt = wv[ii - r * SH][b];
                                for k in 0..NV {
                                    a[k] = _mm512_fmadd_ps(vb[k], wt, a[k]);
                                }
                            }
                        }
                    }
                    continue;
                }
                for (b, &o) in kwo.iter().enumerate() {
                    let o = if UNIT { b as isize } else { o };
                    let p = inp.offset(in_rows[ii] + x as isize + o);
                    let mut v = [_mm512_setzero_ps(); NV];
                    for (k, v) in v.iter_mut().enumerate() {
                        *v = if MASKED && k + 1 == NV {
                            _mm512_maskz_loadu_ps(mask, p.add(16 * k))
                        } else {
                            _mm512_loadu_ps(p.add(16 * k))
                        };
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        if ii >= r * SH && ii - r * SH < K {
                            let wt = wv[ii - r * SH][b];
                            for k in 0..NV {
                                a[k] = _mm512_fmadd_ps(v[k], wt, a[k]);
                            }
                        }
                    }
                }
            }
            if let Some(f) = EpFast::decode(ep) {
                let out = out.add(x);
                store_fast512::<R, NV, MASKED>(&acc, &f, out, (out_rs, 0, x), mask);
                return;
            }
            for (r, a) in acc.iter().enumerate() {
                for (k, &v) in a.iter().enumerate() {
                    let off = r * out_rs + x + 16 * k;
                    let last = MASKED && k + 1 == NV;
                    let v = ep512(v, ep, 0, off, mask, last);
                    if last {
                        _mm512_mask_storeu_ps(out.add(off), mask, v);
                    } else {
                        _mm512_storeu_ps(out.add(off), v);
                    }
                }
            }
        }
    }

    /// See [`super::DwFn`]: tiles of `NV` vectors, then one tile of the vectors left, the
    /// last masked.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dw_row512<
        const K: usize,
        const R: usize,
        const SH: usize,
        const NV: usize,
        const UNIT: bool,
    >(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_rs: usize,
        width: usize,
        in_rows: &[isize; DW_WINDOW_MAX],
        kw_offs: *const isize,
        ep: *const EpStep,
    ) {
        unsafe {
            // Plain loops: `array::map` and `from_fn` are functions of their own, and were
            // left out of line (8% of a depthwise layer's time).
            let mut wv = [[_mm512_set1_ps(0.0); K]; K];
            let mut kwo = [0isize; K];
            for i in 0..K {
                for b in 0..K {
                    // Broadcast straight from the stream (12 bytes a tap: offset, weight).
                    wv[i][b] = _mm512_set1_ps(dw_weight(w, i * K + b));
                }
                kwo[i] = *kw_offs.add(i);
            }
            let (wv, kwo) = (&wv, &kwo);
            let mut x = 0;
            while x + 16 * NV <= width {
                dw_tile512::<K, R, SH, NV, false, UNIT>(
                    inp, wv, kwo, out, out_rs, in_rows, x, !0, ep,
                );
                x += 16 * NV;
            }
            let rest = width - x;
            if rest == 0 {
                return;
            }
            let nv = rest.div_ceil(16);
            let tail = rest - 16 * (nv - 1);
            let m: __mmask16 = if tail == 16 { !0 } else { (1u16 << tail) - 1 };
            match nv {
                1 => dw_tile512::<K, R, SH, 1, true, UNIT>(
                    inp, wv, kwo, out, out_rs, in_rows, x, m, ep,
                ),
                2 => dw_tile512::<K, R, SH, 2, true, UNIT>(
                    inp, wv, kwo, out, out_rs, in_rows, x, m, ep,
                ),
                3 => dw_tile512::<K, R, SH, 3, true, UNIT>(
                    inp, wv, kwo, out, out_rs, in_rows, x, m, ep,
                ),
                _ => dw_tile512::<K, R, SH, 4, true, UNIT>(
                    inp, wv, kwo, out, out_rs, in_rows, x, m, ep,
                ),
            }
        }
    }

    /// See [`super::DwFn`]: 3x3 on two rows in tiles of 4 vectors (64 columns: 8
    /// accumulators, so that the FMAs' latency hides), else tiles of 2 vectors.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe extern "C" fn dw_512<const K: usize, const R: usize, const SH: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_rs: usize,
        width: usize,
        in_rs: usize,
        kw_offs: *const isize,
        ep: *const EpStep,
        wrap: isize,
        back: usize,
    ) {
        unsafe {
            let rows = &dw_window_rows::<K, R, SH>(in_rs, wrap, back);
            // Column taps on consecutive columns (stride 1, no dilation) as constants: the
            // offsets spill otherwise, and a tile reloads them with its rows'.
            let unit = (0..K).all(|b| *kw_offs.add(b) == b as isize);
            match (K == 3 && R == 2, unit) {
                (true, true) => {
                    dw_row512::<K, R, SH, 4, true>(inp, w, out, out_rs, width, rows, kw_offs, ep)
                }
                (true, false) => {
                    dw_row512::<K, R, SH, 4, false>(inp, w, out, out_rs, width, rows, kw_offs, ep)
                }
                (false, true) => {
                    dw_row512::<K, R, SH, 2, true>(inp, w, out, out_rs, width, rows, kw_offs, ep)
                }
                (false, false) => {
                    dw_row512::<K, R, SH, 2, false>(inp, w, out, out_rs, width, rows, kw_offs, ep)
                }
            }
        }
    }

    /// See [`super::DwFn`]: tiles of one 8-column vector, the last masked.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe extern "C" fn dw_256<const K: usize, const R: usize, const SH: usize>(
        inp: *const f32,
        w: *const u8,
        out: *mut f32,
        out_rs: usize,
        width: usize,
        in_rs: usize,
        kw_offs: *const isize,
        ep: *const EpStep,
        wrap: isize,
        back: usize,
    ) {
        unsafe {
            let in_rows = &dw_window_rows::<K, R, SH>(in_rs, wrap, back);
            // Plain loops: `array::map` and `from_fn` are functions of their own, and were
            // left out of line (8% of a depthwise layer's time).
            let mut wv = [[_mm256_set1_ps(0.0); K]; K];
            let mut kwo = [0isize; K];
            for i in 0..K {
                for b in 0..K {
                    wv[i][b] = _mm256_set1_ps(dw_weight(w, i * K + b));
                }
                kwo[i] = *kw_offs.add(i);
            }
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mut x = 0;
            while x < width {
                let n = (width - x).min(8);
                let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                let mut acc = [_mm256_setzero_ps(); R];
                for ii in 0..(R - 1) * SH + K {
                    for (b, &o) in kwo.iter().enumerate() {
                        let p = inp.offset(in_rows[ii] + x as isize + o);
                        let v = if n == 8 {
                            _mm256_loadu_ps(p)
                        } else {
                            _mm256_maskload_ps(p, m)
                        };
                        for (r, a) in acc.iter_mut().enumerate() {
                            if ii >= r * SH && ii - r * SH < K {
                                *a = _mm256_fmadd_ps(v, wv[ii - r * SH][b], *a);
                            }
                        }
                    }
                }
                for (r, &v) in acc.iter().enumerate() {
                    let off = r * out_rs + x;
                    let v = if ep.is_null() {
                        v
                    } else {
                        ep256(v, ep, 0, off, m, n < 8)
                    };
                    _mm256_maskstore_ps(out.add(off), m, v);
                }
                x += 8;
            }
        }
    }

    /// See [`super::CopyFn`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe extern "C" fn copy512(
        src: *const f32,
        src_cs: usize,
        src_rs: usize,
        out: *mut f32,
        out_cs: usize,
        out_rs: usize,
        ocb: usize,
        rows: usize,
        width: usize,
        ep: *const EpStep,
    ) {
        unsafe {
            for j in 0..ocb {
                for r in 0..rows {
                    let mut x = 0;
                    while x < width {
                        let n = (width - x).min(16);
                        let mask: __mmask16 = if n == 16 { !0 } else { (1u16 << n) - 1 };
                        let v = _mm512_maskz_loadu_ps(mask, src.add(j * src_cs + r * src_rs + x));
                        let off = j * out_cs + r * out_rs + x;
                        let v = if ep.is_null() {
                            v
                        } else {
                            ep512(v, ep, j, off, mask, n < 16)
                        };
                        _mm512_mask_storeu_ps(out.add(off), mask, v);
                        x += 16;
                    }
                }
            }
        }
    }

    /// See [`super::CopyFn`].
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe extern "C" fn copy256(
        src: *const f32,
        src_cs: usize,
        src_rs: usize,
        out: *mut f32,
        out_cs: usize,
        out_rs: usize,
        ocb: usize,
        rows: usize,
        width: usize,
        ep: *const EpStep,
    ) {
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            for j in 0..ocb {
                for r in 0..rows {
                    let mut x = 0;
                    while x < width {
                        let n = (width - x).min(8);
                        let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                        let v = _mm256_maskload_ps(src.add(j * src_cs + r * src_rs + x), mask);
                        let off = j * out_cs + r * out_rs + x;
                        let v = if ep.is_null() {
                            v
                        } else {
                            ep256(v, ep, j, off, mask, n < 8)
                        };
                        _mm256_maskstore_ps(out.add(off), mask, v);
                        x += 8;
                    }
                }
            }
        }
    }

    macro_rules! table {
        ($name:ident, $imp:ident, $isa:expr, $($ocb:literal)*) => {
            /// The row kernel for blocks of `ocb` channels.
            pub(super) fn $name(ocb: usize) -> Option<RowFn> {
                match ocb {
                    $($ocb => {
                        const NV: usize = super::tile_vectors_const($isa, $ocb);
                        Some($imp::<$ocb, NV> as RowFn)
                    })*
                    _ => None,
                }
            }
        };
    }

    table!(row512, row512_impl, 512, 1 2 3 4 5 6 7 8 9 10 11 12);
    table!(row256, row256_impl, 256, 1 2 3 4 5 6);
}

/// [`tile_vectors`] as a `const fn` over the vector width in bits (for the kernel table).
const fn tile_vectors_const(bits: usize, ocb: usize) -> usize {
    let (regs, max) = if bits == 512 { (29, 4) } else { (15, 3) };
    let v = regs / (ocb + 1);
    if v < 1 {
        1
    } else if v > max {
        max
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive reference of a row kernel over a weight stream of taps with the given input
    /// offsets (floats).
    fn reference(
        inp: &[f32],
        offs: &[usize],
        wts: &[Vec<f32>],
        width: usize,
        out: &mut [f32],
        out_cs: usize,
        accumulate: bool,
    ) {
        for (j, wj) in wts.iter().enumerate() {
            for x in 0..width {
                let mut s = if accumulate { out[j * out_cs + x] } else { 0.0 };
                for (t, &o) in offs.iter().enumerate() {
                    s = inp[o + x].mul_add(wj[t], s);
                }
                out[j * out_cs + x] = s;
            }
        }
    }

    fn stream(offs: &[usize], wts: &[Vec<f32>]) -> Vec<u8> {
        let mut v = Vec::new();
        for t in 0..offs.len() {
            let d: i64 = if t + 1 < offs.len() {
                (offs[t + 1] as i64 - offs[t] as i64) * 4
            } else {
                0
            };
            v.extend_from_slice(&d.to_le_bytes());
            for wj in wts {
                v.extend_from_slice(&wj[t].to_le_bytes());
            }
        }
        v
    }

    /// The fused epilogue against `Unary::apply`'s semantics: affine, residual, clamp (with
    /// NaN and -0 in the sums), leaky, on every block size and masked widths.
    #[test]
    fn row_kernels_apply_the_epilogue_as_the_interpreter() {
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !isa.supported() {
                continue;
            }
            for ocb in [1, 2, 5, max_ocb(isa)] {
                let f = row_kernel(isa, ocb).expect("kernel");
                for width in [3, 16, 17, 21, 40] {
                    let out_cs = width + 3;
                    // One tap of weight 1 over an input holding NaN, -0 and both signs.
                    let inp: Vec<f32> = (0..width + 8)
                        .map(|i| match i % 7 {
                            0 => f32::NAN,
                            1 => -0.0,
                            k => (k as f32 - 3.5) * 1.7,
                        })
                        .collect();
                    let mut w = 0i64.to_le_bytes().to_vec();
                    for _ in 0..ocb {
                        w.extend_from_slice(&1f32.to_le_bytes());
                    }
                    let params: Vec<f32> = (0..ocb)
                        .flat_map(|j| {
                            let (sc, sh) = (0.5 + j as f32, 0.25 - j as f32);
                            [sc, sc, sc, sc, sh, sh, sh, sh]
                        })
                        .collect();
                    let res: Vec<f32> = (0..ocb * out_cs).map(|i| (i % 5) as f32 - 2.0).collect();
                    let steps = [
                        EpStep {
                            kind: EP_AFFINE,
                            ptr: params.as_ptr(),
                            a: 0.0,
                            b: 0.0,
                        },
                        EpStep {
                            kind: EP_ADD,
                            ptr: res.as_ptr(),
                            a: 0.0,
                            b: 0.0,
                        },
                        EpStep {
                            kind: EP_CLAMP,
                            ptr: std::ptr::null(),
                            a: 0.0,
                            b: 6.0,
                        },
                        EpStep {
                            kind: EP_LEAKY,
                            ptr: std::ptr::null(),
                            a: 0.1,
                            b: 0.0,
                        },
                        EpStep {
                            kind: EP_BIAS,
                            ptr: params.as_ptr(),
                            a: 0.0,
                            b: 0.0,
                        },
                        EpStep {
                            kind: EP_CLAMP,
                            ptr: std::ptr::null(),
                            a: f32::NEG_INFINITY,
                            b: 1.0,
                        },
                        EpStep {
                            kind: EP_END,
                            ptr: std::ptr::null(),
                            a: 0.0,
                            b: 0.0,
                        },
                    ];
                    let mut got = vec![7.0f32; ocb * out_cs];
                    // SAFETY: one tap reads `inp[x]`, x < width; outputs and residuals are
                    // `ocb` rows of `out_cs >= width` floats.
                    unsafe {
                        f(
                            inp.as_ptr(),
                            w.as_ptr(),
                            got.as_mut_ptr(),
                            out_cs,
                            width,
                            0,
                            steps.as_ptr(),
                        )
                    };
                    for j in 0..ocb {
                        for x in 0..width {
                            let (sc, sh) = (params[8 * j], params[8 * j + 4]);
                            let mut v = 0f32.mul_add(0.0, inp[x]);
                            v = v * sc + sh;
                            v += res[j * out_cs + x];
                            v = convc_ir::Unary::Clamp { min: 0.0, max: 6.0 }.apply(v);
                            v = convc_ir::Unary::LeakyRelu { alpha: 0.1 }.apply(v);
                            v += sh;
                            v = convc_ir::Unary::Clamp {
                                min: f32::NEG_INFINITY,
                                max: 1.0,
                            }
                            .apply(v);
                            let g = got[j * out_cs + x];
                            assert!(
                                g.to_bits() == v.to_bits() || (g.is_nan() && v.is_nan()),
                                "{isa} ocb {ocb} width {width} ({j}, {x}): {g} vs {v}"
                            );
                        }
                        // Past the row: untouched.
                        assert!(
                            got[j * out_cs + width..(j + 1) * out_cs]
                                .iter()
                                .all(|&v| v == 7.0)
                        );
                    }
                }
            }
        }
    }

    /// The epilogue lists the microkernels apply in straight-line code (`EpFast`: scale,
    /// shift, residual, clamp, each optional, in that order), and lists out of that order or
    /// with a leaky relu (step by step), against `Unary::apply`'s semantics, every block size,
    /// masked widths, NaN and -0 in the sums.
    #[test]
    fn row_kernels_apply_every_epilogue_form() {
        let forms: [&[(u64, f32, f32)]; 7] = [
            &[],
            &[(EP_BIAS, 0.0, 0.0), (EP_CLAMP, 0.0, 6.0)],
            &[
                (EP_AFFINE, 0.0, 0.0),
                (EP_ADD, 0.0, 0.0),
                (EP_CLAMP, 0.0, f32::INFINITY),
            ],
            &[(EP_ADD, 0.0, 0.0)],
            &[(EP_CLAMP, -0.5, 0.7)],
            &[(EP_ADD, 0.0, 0.0), (EP_BIAS, 0.0, 0.0)],
            &[(EP_AFFINE, 0.0, 0.0), (EP_LEAKY, 0.1, 0.0)],
        ];
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !isa.supported() {
                continue;
            }
            for ocb in [1, 3, max_ocb(isa)] {
                let f = row_kernel(isa, ocb).expect("kernel");
                // 17, 34, 35, 36: one to four columns past whole vectors (`tile512`'s
                // `COLS`; on AVX2 17 and 34 are 1 and 2 past).
                for width in [5, 16, 17, 34, 35, 36, 37] {
                    for form in forms {
                        check_epilogue(isa, f, ocb, width, form);
                    }
                }
            }
        }
    }

    /// One call of `f` (one tap of weight 1) with the epilogue `form` against the reference.
    fn check_epilogue(isa: Isa, f: RowFn, ocb: usize, width: usize, form: &[(u64, f32, f32)]) {
        let out_cs = width + 3;
        let inp: Vec<f32> = (0..width + 8)
            .map(|i| match i % 7 {
                0 => f32::NAN,
                1 => -0.0,
                k => (k as f32 - 3.5) * 1.7,
            })
            .collect();
        let mut w = 0i64.to_le_bytes().to_vec();
        for _ in 0..ocb {
            w.extend_from_slice(&1f32.to_le_bytes());
        }
        let params: Vec<f32> = (0..ocb)
            .flat_map(|j| {
                let (sc, sh) = (0.5 + j as f32, 0.25 - j as f32);
                [sc, sc, sc, sc, sh, sh, sh, sh]
            })
            .collect();
        let res: Vec<f32> = (0..ocb * out_cs).map(|i| (i % 5) as f32 - 2.0).collect();
        let mut steps: Vec<EpStep> = form
            .iter()
            .map(|&(kind, a, b)| EpStep {
                kind,
                ptr: match kind {
                    EP_ADD => res.as_ptr(),
                    EP_AFFINE | EP_BIAS => params.as_ptr(),
                    _ => std::ptr::null(),
                },
                a,
                b,
            })
            .collect();
        steps.push(EpStep {
            kind: EP_END,
            ptr: std::ptr::null(),
            a: 0.0,
            b: 0.0,
        });
        let ep = if form.is_empty() {
            std::ptr::null()
        } else {
            steps.as_ptr()
        };
        let mut got = vec![7.0f32; ocb * out_cs];
        // SAFETY: one tap reads `inp[x]`, x < width; outputs and residuals are `ocb` rows of
        // `out_cs >= width` floats.
        unsafe {
            f(
                inp.as_ptr(),
                w.as_ptr(),
                got.as_mut_ptr(),
                out_cs,
                width,
                0,
                ep,
            )
        };
        for j in 0..ocb {
            for x in 0..width {
                let (sc, sh) = (params[8 * j], params[8 * j + 4]);
                let mut v = 0f32.mul_add(0.0, inp[x]);
                for &(kind, a, b) in form {
                    v = match kind {
                        EP_AFFINE => v * sc + sh,
                        EP_BIAS => v + sh,
                        EP_ADD => v + res[j * out_cs + x],
                        EP_CLAMP => convc_ir::Unary::Clamp { min: a, max: b }.apply(v),
                        _ => convc_ir::Unary::LeakyRelu { alpha: a }.apply(v),
                    };
                }
                let g = got[j * out_cs + x];
                assert!(
                    g.to_bits() == v.to_bits() || (g.is_nan() && v.is_nan()),
                    "{isa} ocb {ocb} width {width} {form:?} ({j}, {x}): {g} vs {v}"
                );
            }
            // Past the row: untouched.
            let past = &got[j * out_cs + width..(j + 1) * out_cs];
            assert!(past.iter().all(|&v| v == 7.0), "{form:?}");
        }
    }

    #[test]
    fn tuning_picks_a_measured_candidate_once() {
        for isa in Isa::available() {
            let t = tune(isa);
            if isa == Isa::Sse {
                assert!(t.candidates.is_empty());
                continue;
            }
            assert!(candidates(isa).contains(&t.block), "{t:?}");
            assert_eq!(t.candidates.len(), candidates(isa).len());
            assert!(t.candidates.iter().all(|c| c.2 > 0.0), "{t:?}");
            // Cached: the same outcome, not a new measurement.
            let again = tune(isa);
            assert_eq!((again.block, again.time), (t.block, t.time));
        }
    }

    #[test]
    fn row_kernels_match_a_naive_reduction_at_every_width_and_block() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
        };
        for isa in [Isa::Avx2, Isa::Avx512] {
            if !isa.supported() {
                continue;
            }
            for ocb in 1..=max_ocb(isa) {
                let f = row_kernel(isa, ocb).expect("a kernel for every block size");
                for width in [
                    1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 35, 47, 52, 64, 65, 100,
                ] {
                    let offs = [0usize, 1, 2, 130, 131, 263];
                    let inp: Vec<f32> = (0..400 + width).map(|_| rnd()).collect();
                    let wts: Vec<Vec<f32>> = (0..ocb)
                        .map(|_| offs.iter().map(|_| rnd()).collect())
                        .collect();
                    let s = stream(&offs, &wts);
                    let out_cs = width + 5;
                    // (accumulate, taps counted: None runs to the stream's end)
                    let modes = [
                        (false, None),
                        (true, None),
                        (false, Some(0)),
                        (true, Some(2)),
                    ];
                    for (accumulate, counted) in modes {
                        let init: Vec<f32> = (0..ocb * out_cs).map(|_| rnd()).collect();
                        let mut want = init.clone();
                        let n = counted.unwrap_or(offs.len());
                        reference(&inp, &offs[..n], &wts, width, &mut want, out_cs, accumulate);
                        let flags = usize::from(accumulate)
                            | counted.map_or(0, |c| COUNTED | c << COUNT_SHIFT);
                        let mut got = init.clone();
                        // SAFETY: every tap reads `inp[o + x]` for x < width, inside `inp`;
                        // the output rows are `out_cs` >= width apart, inside `got`.
                        unsafe {
                            f(
                                inp.as_ptr(),
                                s.as_ptr(),
                                got.as_mut_ptr(),
                                out_cs,
                                width,
                                flags,
                                std::ptr::null(),
                            )
                        };
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert!(
                                (g - w).abs() <= 1e-5,
                                "{isa} ocb {ocb} width {width} {accumulate} {counted:?} at {i}: {g} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }
}
