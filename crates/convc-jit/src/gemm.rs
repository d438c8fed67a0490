//! Pointwise (1x1, one group) convolutions as GEMMs on packed bands of output positions, on
//! the wide paths.
//!
//! A direct 1x1 kernel reads each input channel's row a whole plane (12.5 KB on 56x56) after
//! the previous channel's: every tap of its reduction lands on a new 4 KiB page, which the
//! hardware prefetchers do not follow, so the microkernel waits on its input loads (perf on a
//! 256 -> 64 1x1 at 56x56: the hot instructions sit behind the input loads; it ran at half the
//! rate of the same tile on inputs in L1, 1.45x behind onnxruntime's MLAS, which packs).
//!
//! Here a work item is a band of `cols` output positions (the plane read flat, strided rows
//! gathered) and a group of output channels: the band's input is first copied, channel after
//! channel, into the thread's scratch (`[c][stride]`, rows 64-byte aligned and an odd number of
//! cache lines apart), once per band and thread, then every block of output channels runs the
//! row microkernel (`crate::wide`) over it with the conv's epilogue (bias, batchnorm,
//! activation, residual add) applied before the stores. The copy reads each channel's segment
//! once; the microkernel then reads it sequentially, from L2 at worst. A long reduction runs
//! in chunks whose weights stay in L1, the sums of earlier chunks waiting in the output.
//!
//! The copy is written for any kernel, stride, dilation and padding (a band's slice of the
//! im2col matrix, zeros in the padding); the planner takes the step for 1x1 convs only (see
//! `Builder::gemm_shape` for what larger kernels measured).

use crate::spec::{Ep, SLOT_IN, SLOT_OUT, SLOT_W};
use crate::wide::{self, EpStep, Isa};

/// A pointwise GEMM step: sizes, the schedule (positions per band, channels per group and per
/// block) and the epilogue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GemmSpec {
    pub isa: Isa,
    /// Input and output channels.
    pub c: usize,
    pub oc: usize,
    /// Input plane, kernel, stride, dilation, and top and left padding (the bottom and right
    /// follow from the output plane; positions outside the input pack as zeros).
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    /// Output plane.
    pub oh: usize,
    pub ow: usize,
    /// Output positions per band (a multiple of the microkernel's tile but maybe the last).
    pub cols: usize,
    /// Output channels per group (whole blocks, but the last group), and per block.
    pub group: usize,
    pub ocb: usize,
    /// Taps per chunk of the reduction (a block's weights for a chunk stay in L1 while the
    /// band's columns pass; the sums of earlier chunks wait in the output).
    pub chunk: usize,
    pub ep: Vec<Ep>,
    /// Buffer-table slot of the thread's scratch.
    pub scratch_slot: usize,
}

impl GemmSpec {
    /// Output positions of the plane.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }
    /// Bands of positions.
    pub fn bands(&self) -> usize {
        self.positions().div_ceil(self.cols.max(1))
    }
    /// Output channel groups.
    pub fn groups(&self) -> usize {
        self.oc.div_ceil(self.group.max(1))
    }
    /// Work items: (band, channel group), groups fastest (consecutive items of a band reuse
    /// its packed input).
    pub fn items(&self) -> usize {
        self.bands() * self.groups()
    }
    /// Taps of the reduction: input channels x kernel positions.
    pub fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Floats between two taps of a packed band.
    pub fn stride(&self) -> usize {
        packed_stride(self.cols)
    }
    /// Floats of thread scratch: the packed band and room to align it to 64 bytes.
    pub fn scratch_len(&self) -> usize {
        self.taps() * self.stride() + 16
    }
    /// The table [`x86::run_avx2`] / [`x86::run_avx512`] read.
    pub fn params(&self) -> Vec<i64> {
        let mut p: Vec<i64> = [
            self.c,
            self.oc,
            self.h,
            self.w,
            self.kh,
            self.kw,
            self.sh,
            self.sw,
            self.dh,
            self.dw,
            self.pt,
            self.pl,
            self.oh,
            self.ow,
            self.cols,
            self.group,
            self.ocb,
            self.chunk,
            self.scratch_slot,
        ]
        .iter()
        .map(|&v| v as i64)
        .collect();
        p.push(self.ep.len() as i64);
        for e in &self.ep {
            let (kind, slot, a, b) = crate::wino::ep_code(e);
            p.extend_from_slice(&[kind as i64, slot as i64, i64::from(a), i64::from(b)]);
        }
        p
    }
    /// The Rust function of the step on its path.
    pub fn function(&self) -> crate::rstep::RustStep {
        match self.isa {
            Isa::Avx512 => x86::run_avx512,
            _ => x86::run_avx2,
        }
    }
}

/// Floats between two channels of a packed band of `cols` positions: whole cache lines, an odd
/// number of them, so that the taps of a tile do not pile onto a few sets of the L1 (a stride
/// of 512 bytes would map 256 channels' lines onto 8 of its 64 sets).
pub(crate) fn packed_stride(cols: usize) -> usize {
    let lines = cols.div_ceil(16).max(1);
    16 * if lines.is_multiple_of(2) {
        lines + 1
    } else {
        lines
    }
}

/// The packed weights: per block of `ocb` output channels, per tap the byte offset to the
/// next tap's row of the packed band (0 after the last tap of a chunk of `chunk`) and the
/// block's weights: the row microkernel's stream. `w`: `[oc][taps]` (a conv's `[oc][c][kh][kw]`).
pub(crate) fn pack_weights(
    w: &[f32],
    oc: usize,
    taps: usize,
    ocb: usize,
    stride: usize,
    chunk: usize,
) -> Vec<f32> {
    let step = (stride * 4) as i64;
    let mut out = Vec::with_capacity(oc.div_ceil(ocb) * crate::packed::block_floats(taps, ocb, 1));
    for o0 in (0..oc).step_by(ocb) {
        let o1 = (o0 + ocb).min(oc);
        for t in 0..taps {
            let last = t + 1 == taps || (t + 1) % chunk.max(1) == 0;
            let d = if last { 0 } else { step };
            crate::packed::push_tap(&mut out, d, (o0..o1).map(|o| w[o * taps + t]), 1);
        }
        // Every block takes a full block's space, so block `b` starts at `b` full blocks.
        let short = (ocb - (o1 - o0)) * taps;
        out.extend(std::iter::repeat_n(0.0, short));
    }
    out
}

/// The sizes of a [`GemmSpec::params`] table.
struct Sizes {
    c: usize,
    oc: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
    cols: usize,
    group: usize,
    ocb: usize,
    chunk: usize,
    scratch_slot: usize,
}

impl Sizes {
    /// # Safety
    /// `p` is a table of [`GemmSpec::params`].
    unsafe fn read(p: *const i64) -> (Sizes, *const i64) {
        let v = |i: usize| unsafe { *p.add(i) as usize };
        let s = Sizes {
            c: v(0),
            oc: v(1),
            h: v(2),
            w: v(3),
            kh: v(4),
            kw: v(5),
            sh: v(6),
            sw: v(7),
            dh: v(8),
            dw: v(9),
            pt: v(10),
            pl: v(11),
            oh: v(12),
            ow: v(13),
            cols: v(14),
            group: v(15),
            ocb: v(16),
            chunk: v(17),
            scratch_slot: v(18),
        };
        (s, unsafe { p.add(19) })
    }
    fn positions(&self) -> usize {
        self.oh * self.ow
    }
    fn taps(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// A 1x1, unstrided, unpadded conv (no padding on any side: the output plane is the
    /// input's): a band's positions are contiguous in every channel.
    fn plain(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pt == 0
            && self.pl == 0
            && self.oh == self.h
            && self.ow == self.w
    }
}

/// `base` moved to the block of channels from `o` and the band from position `p0`.
fn at_block(base: &[EpStep], out: &mut [EpStep], o: usize, p0: usize, positions: usize) {
    for (d, s) in out.iter_mut().zip(base) {
        *d = *s;
        d.ptr = match s.kind {
            // 8 floats a channel: scale at 8j, shift at 8j + 4.
            wide::EP_AFFINE | wide::EP_BIAS => s.ptr.wrapping_add(8 * o),
            wide::EP_ADD => s.ptr.wrapping_add(o * positions + p0),
            _ => s.ptr,
        };
    }
}

/// Copies positions `p0 .. p0 + n` of every tap (input channel, kernel row, kernel column) to
/// the packed band `dst` (taps `stride` floats apart): the band's slice of the im2col matrix,
/// zeros where a tap falls in the padding.
///
/// # Safety
/// `inp` holds the `c * h * w` input; `dst` holds `taps * stride` floats, `n <= stride`; the
/// positions are in the output plane.
unsafe fn pack(s: &Sizes, inp: *const f32, dst: *mut f32, stride: usize, p0: usize, n: usize) {
    let plane = s.h * s.w;
    for t in 0..s.taps() {
        let (ci, k) = (t / (s.kh * s.kw), t % (s.kh * s.kw));
        let (ky, kx) = (k / s.kw, k % s.kw);
        let src = unsafe { inp.add(ci * plane) };
        let d = unsafe { dst.add(t * stride) };
        if s.plain() {
            // SAFETY: the output plane is the input plane; positions `p0 .. p0 + n` exist.
            unsafe { std::ptr::copy_nonoverlapping(src.add(p0), d, n) };
            continue;
        }
        let mut p = p0;
        while p < p0 + n {
            let (oy, ox) = (p / s.ow, p % s.ow);
            let run = (s.ow - ox).min(p0 + n - p);
            // SAFETY: `run` floats from `p - p0 < n` of the tap's row.
            let out = unsafe { std::slice::from_raw_parts_mut(d.add(p - p0), run) };
            let iy = (oy * s.sh + ky * s.dh)
                .checked_sub(s.pt)
                .filter(|&y| y < s.h);
            match iy {
                None => out.fill(0.0),
                // SAFETY: row `iy < h` of channel `ci`.
                Some(iy) => unsafe { pack_row(s, src.add(iy * s.w), out, ox, kx) },
            }
            p += run;
        }
    }
}

/// [`pack`] for a strided conv with a vectorised phase split `split` (2 or 4 phases): per
/// input channel, kernel row and output row of the band, the input row is split once into
/// `phases` (`sw` phases of `wq`), then each kernel column's run is one contiguous copy.
///
/// # Safety
/// As [`pack`]; `phases` holds `sw * wq` floats, `wq >= ow + (kw - 1) dw / sw + 1`; the host
/// runs the split's path.
unsafe fn pack_split(
    s: &Sizes,
    inp: *const f32,
    dst: *mut f32,
    stride: usize,
    (p0, n): (usize, usize),
    (split, phases, wq): (crate::lanes::SplitRowsFn, &mut [f32], usize),
) {
    let plane = s.h * s.w;
    let kk = s.kh * s.kw;
    let (oy0, oy1) = (p0 / s.ow, (p0 + n - 1) / s.ow);
    for ci in 0..s.c {
        for ky in 0..s.kh {
            for oy in oy0..=oy1 {
                // The band's positions on output row `oy`.
                let a = (oy * s.ow).max(p0);
                let b = ((oy + 1) * s.ow).min(p0 + n);
                let iy = (oy * s.sh + ky * s.dh)
                    .checked_sub(s.pt)
                    .filter(|&y| y < s.h);
                if let Some(iy) = iy {
                    // SAFETY: row `iy` of channel `ci`: `w` floats; `phases`: `sw * wq`.
                    unsafe {
                        split(
                            inp.add(ci * plane + iy * s.w),
                            0,
                            phases.as_mut_ptr(),
                            0,
                            1,
                            s.w,
                            s.pl,
                            wq,
                            s.sw,
                        )
                    };
                }
                for kx in 0..s.kw {
                    let t = ci * kk + ky * s.kw + kx;
                    // SAFETY: tap `t`'s row of the band, positions `a - p0 .. b - p0 <= n`.
                    let out = unsafe {
                        std::slice::from_raw_parts_mut(dst.add(t * stride + a - p0), b - a)
                    };
                    if iy.is_none() {
                        out.fill(0.0);
                        continue;
                    }
                    let (q, off) = ((kx * s.dw) % s.sw, (kx * s.dw) / s.sw);
                    let from = q * wq + a - oy * s.ow + off;
                    out.copy_from_slice(&phases[from..from + (b - a)]);
                }
            }
        }
    }
}

/// One output row's run of a tap: `out[k]` = input row `row` at column
/// `(ox + k) sw + kx dw - pl`, 0 outside the row.
///
/// # Safety
/// `row` holds `s.w` floats.
#[inline(always)]
unsafe fn pack_row(s: &Sizes, row: *const f32, out: &mut [f32], ox: usize, kx: usize) {
    let shift = kx * s.dw;
    // Columns before the row's start or from its end are padding.
    let col = |k: usize| {
        ((ox + k) * s.sw + shift)
            .checked_sub(s.pl)
            .filter(|&x| x < s.w)
    };
    if s.sw == 1 {
        // The run's in-row columns are one contiguous span: zeros, a copy, zeros.
        let lo = s.pl.saturating_sub(ox + shift).min(out.len());
        let x0 = ox + lo + shift - s.pl.min(ox + lo + shift);
        let len = (out.len() - lo).min(s.w.saturating_sub(x0));
        if len == 0 {
            // The whole run is padding (and `x0` may be past the row).
            out.fill(0.0);
            return;
        }
        out[..lo].fill(0.0);
        // SAFETY: columns `x0 .. x0 + len <= w` of the row.
        let src = unsafe { std::slice::from_raw_parts(row.add(x0), len) };
        out[lo..lo + len].copy_from_slice(src);
        out[lo + len..].fill(0.0);
        return;
    }
    for (k, v) in out.iter_mut().enumerate() {
        // SAFETY: `x < w`.
        *v = col(k).map_or(0.0, |x| unsafe { *row.add(x) });
    }
}

/// The step's body: items `start..end` on path `isa`.
///
/// # Safety
/// As [`crate::rstep::RustStep`], with a [`GemmSpec`] table and buffers the plan sized; the
/// host runs `isa`.
unsafe fn run(isa: Isa, bufs: *const *mut f32, start: u64, end: u64, p: *const i64) {
    let (s, ep) = unsafe { Sizes::read(p) };
    let (inp, out, w) = unsafe {
        (
            *bufs.add(SLOT_IN) as *const f32,
            *bufs.add(SLOT_OUT),
            *bufs.add(SLOT_W) as *const u8,
        )
    };
    let stride = packed_stride(s.cols);
    // The packed band, aligned to 64 bytes (the scratch has 16 floats of room).
    let raw = unsafe { *bufs.add(s.scratch_slot) };
    let band_buf = unsafe { raw.add((16 - (raw as usize / 4) % 16) % 16) };
    // The epilogue at output channel 0 and position 0 (see `at_block`).
    let base = unsafe { crate::wino::read_epilogue(ep, bufs, |_, b| b) };
    let mut eps = base.clone();
    let has_ep = base.len() > 1;
    let positions = s.positions();
    let groups = s.oc.div_ceil(s.group);
    let taps = s.taps();
    let block_bytes = crate::packed::block_floats(taps, s.ocb, 1) * 4;
    // A strided conv gathers its rows through a vectorised phase split (`lanes::split_row`):
    // phase `(kx dw) % sw` of a padded row holds kernel column `kx`'s inputs of consecutive
    // output columns, from `(kx dw) / sw` on.
    let split = (s.sw > 1)
        .then(|| crate::lanes::split_rows_fn(s.sw))
        .flatten();
    let wq = s.ow + ((s.kw - 1) * s.dw).div_ceil(s.sw.max(1)) + 1;
    let mut phases = if split.is_some() {
        vec![0f32; s.sw * wq]
    } else {
        Vec::new()
    };
    let mut band = usize::MAX;
    for item in start as usize..end as usize {
        let (b, gi) = (item / groups, item % groups);
        let p0 = b * s.cols;
        let n = s.cols.min(positions - p0);
        if b != band {
            match split {
                // SAFETY: as `pack`; `phases` holds `sw * wq` floats.
                Some(f) => unsafe {
                    pack_split(&s, inp, band_buf, stride, (p0, n), (f, &mut phases, wq))
                },
                // SAFETY: see `pack`.
                None => unsafe { pack(&s, inp, band_buf, stride, p0, n) },
            }
            band = b;
        }
        let o0 = gi * s.group;
        let o1 = (o0 + s.group).min(s.oc);
        for bo in (o0..o1).step_by(s.ocb) {
            at_block(&base, &mut eps, bo, p0, positions);
            let ep = if has_ep {
                eps.as_ptr()
            } else {
                std::ptr::null()
            };
            let wb = unsafe { w.add((bo / s.ocb) * block_bytes) };
            // SAFETY: the band holds positions `p0 .. p0 + n` of every tap; output channels
            // `bo .. o1` exist; `wb` is their block's stream.
            unsafe {
                block(
                    isa,
                    &s,
                    band_buf,
                    wb,
                    out.add(bo * positions + p0),
                    (o1 - bo, n),
                    ep,
                )
            };
        }
    }
}

/// One block of output channels over a packed band: the reduction chunk by chunk (each ended
/// by a 0 offset in the stream), the sums of earlier chunks waiting in the output, the
/// epilogue `ep` (or null) with the last.
///
/// # Safety
/// `band` holds `n` positions of every tap, `stride` floats apart; `w` is the block's stream;
/// `out` the block's first channel at the band's first position, channels `positions` apart;
/// the host runs `isa`.
unsafe fn block(
    isa: Isa,
    s: &Sizes,
    band: *const f32,
    w: *const u8,
    out: *mut f32,
    (left, n): (usize, usize),
    ep: *const EpStep,
) {
    let ocb = s.ocb.min(left);
    let Some(f) = wide::row_kernel(isa, ocb) else {
        return;
    };
    let (taps, stride) = (s.taps(), packed_stride(s.cols));
    let mut t0 = 0;
    while t0 < taps {
        let t1 = (t0 + s.chunk.max(1)).min(taps);
        let flags = if t0 > 0 { wide::ACCUMULATE } else { 0 };
        let e = if t1 == taps { ep } else { std::ptr::null() };
        // SAFETY: taps `t0..t1` of the band and of the stream (a short block's taps are
        // `tap_bytes(ocb)` apart).
        unsafe {
            f(
                band.add(t0 * stride),
                w.add(t0 * crate::packed::tap_bytes(ocb, 1)),
                out,
                s.positions(),
                n,
                flags,
                e,
            )
        };
        t0 = t1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Isa;

    /// The step on the AVX-512 path.
    ///
    /// # Safety
    /// As [`super::run`]; the host runs AVX-512F.
    pub(crate) unsafe extern "C" fn run_avx512(
        bufs: *const *mut f32,
        start: u64,
        end: u64,
        p: *const i64,
    ) {
        unsafe { super::run(Isa::Avx512, bufs, start, end, p) }
    }

    /// The step on the AVX2 path.
    ///
    /// # Safety
    /// As [`super::run`]; the host runs AVX2 and FMA.
    pub(crate) unsafe extern "C" fn run_avx2(
        bufs: *const *mut f32,
        start: u64,
        end: u64,
        p: *const i64,
    ) {
        unsafe { super::run(Isa::Avx2, bufs, start, end, p) }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    /// Never called: the planner takes this step only on the wide paths.
    pub(crate) unsafe extern "C" fn run_avx512(_: *const *mut f32, _: u64, _: u64, _: *const i64) {}
    /// Never called: the planner takes this step only on the wide paths.
    pub(crate) unsafe extern "C" fn run_avx2(_: *const *mut f32, _: u64, _: u64, _: *const i64) {}
}
