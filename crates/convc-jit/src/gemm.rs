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
//! once; the microkernel then reads it sequentially, from L2 at worst.

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
    /// Input plane and stride (a strided 1x1 conv gathers every `sh`-th row, `sw`-th column).
    pub h: usize,
    pub w: usize,
    pub sh: usize,
    pub sw: usize,
    /// Output plane.
    pub oh: usize,
    pub ow: usize,
    /// Output positions per band (a multiple of the microkernel's tile but maybe the last).
    pub cols: usize,
    /// Output channels per group (whole blocks, but the last group), and per block.
    pub group: usize,
    pub ocb: usize,
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
    /// Floats between two channels of a packed band.
    pub fn stride(&self) -> usize {
        packed_stride(self.cols)
    }
    /// Floats of thread scratch: the packed band and room to align it to 64 bytes.
    pub fn scratch_len(&self) -> usize {
        self.c * self.stride() + 16
    }
    /// The table [`x86::run_avx2`] / [`x86::run_avx512`] read.
    pub fn params(&self) -> Vec<i64> {
        let mut p: Vec<i64> = [
            self.c,
            self.oc,
            self.h,
            self.w,
            self.sh,
            self.sw,
            self.oh,
            self.ow,
            self.cols,
            self.group,
            self.ocb,
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
    16 * if lines.is_multiple_of(2) { lines + 1 } else { lines }
}

/// The packed weights: per block of `ocb` output channels, per input channel the byte offset
/// to the next channel's row of the packed band (0 after the last) and the block's weights:
/// the row microkernel's stream. `w`: `[oc][c]`.
pub(crate) fn pack_weights(w: &[f32], oc: usize, c: usize, ocb: usize, stride: usize) -> Vec<f32> {
    let step = (stride * 4) as i64;
    let mut out = Vec::with_capacity(oc.div_ceil(ocb) * crate::packed::block_floats(c, ocb, 1));
    for o0 in (0..oc).step_by(ocb) {
        let o1 = (o0 + ocb).min(oc);
        for ci in 0..c {
            let d = if ci + 1 < c { step } else { 0 };
            crate::packed::push_tap(&mut out, d, (o0..o1).map(|o| w[o * c + ci]), 1);
        }
        // Every block takes a full block's space, so block `b` starts at `b` full blocks.
        let short = (ocb - (o1 - o0)) * c;
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
    sh: usize,
    sw: usize,
    oh: usize,
    ow: usize,
    cols: usize,
    group: usize,
    ocb: usize,
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
            sh: v(4),
            sw: v(5),
            oh: v(6),
            ow: v(7),
            cols: v(8),
            group: v(9),
            ocb: v(10),
            scratch_slot: v(11),
        };
        (s, unsafe { p.add(12) })
    }
    fn positions(&self) -> usize {
        self.oh * self.ow
    }
}

/// The epilogue as the microkernel takes it, for output channel 0 and position 0: affine and
/// bias tables at their first channel, residuals at their first value (see [`at_block`]).
///
/// # Safety
/// `ep` is the epilogue part of a [`GemmSpec::params`] table; `bufs` the step's buffers.
unsafe fn epilogue(ep: *const i64, bufs: *const *mut f32) -> Vec<EpStep> {
    let n = unsafe { *ep } as usize;
    let mut v = Vec::with_capacity(n + 1);
    for i in 0..n {
        let q = |k: usize| unsafe { *ep.add(1 + 4 * i + k) };
        let kind = q(0) as u64;
        let ptr = match kind {
            wide::EP_AFFINE | wide::EP_BIAS | wide::EP_ADD => unsafe { *bufs.add(q(1) as usize) },
            _ => std::ptr::null_mut(),
        };
        v.push(EpStep {
            kind,
            ptr,
            a: f32::from_bits(q(2) as u32),
            b: f32::from_bits(q(3) as u32),
        });
    }
    v.push(EpStep {
        kind: wide::EP_END,
        ptr: std::ptr::null(),
        a: 0.0,
        b: 0.0,
    });
    v
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

/// Copies positions `p0 .. p0 + n` of every input channel to the packed band `dst` (channels
/// `stride` floats apart).
///
/// # Safety
/// `inp` holds the `c * h * w` input; `dst` holds `c * stride` floats, `n <= stride`.
unsafe fn pack(s: &Sizes, inp: *const f32, dst: *mut f32, stride: usize, p0: usize, n: usize) {
    let plane = s.h * s.w;
    for ci in 0..s.c {
        let src = unsafe { inp.add(ci * plane) };
        let d = unsafe { dst.add(ci * stride) };
        if s.sh == 1 && s.sw == 1 {
            // The output plane is the input plane: positions are contiguous.
            unsafe { std::ptr::copy_nonoverlapping(src.add(p0), d, n) };
            continue;
        }
        let mut p = p0;
        while p < p0 + n {
            let (oy, ox) = (p / s.ow, p % s.ow);
            let run = (s.ow - ox).min(p0 + n - p);
            let row = unsafe { src.add(oy * s.sh * s.w + ox * s.sw) };
            for k in 0..run {
                // SAFETY: column `(ox + k) sw < w` of row `oy sh < h`.
                unsafe { *d.add(p - p0 + k) = *row.add(k * s.sw) };
            }
            p += run;
        }
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
    let base = unsafe { epilogue(ep, bufs) };
    let mut eps = base.clone();
    let has_ep = base.len() > 1;
    let positions = s.positions();
    let groups = s.oc.div_ceil(s.group);
    let block_bytes = crate::packed::block_floats(s.c, s.ocb, 1) * 4;
    let mut band = usize::MAX;
    for item in start as usize..end as usize {
        let (b, gi) = (item / groups, item % groups);
        let p0 = b * s.cols;
        let n = s.cols.min(positions - p0);
        if b != band {
            unsafe { pack(&s, inp, band_buf, stride, p0, n) };
            band = b;
        }
        let o0 = gi * s.group;
        let o1 = (o0 + s.group).min(s.oc);
        for bo in (o0..o1).step_by(s.ocb) {
            let Some(f) = wide::row_kernel(isa, s.ocb.min(o1 - bo)) else {
                return;
            };
            at_block(&base, &mut eps, bo, p0, positions);
            // SAFETY: the block's stream (`c` taps, rows `stride` apart in the band), output
            // channels `bo..` at positions `p0 .. p0 + n`, `positions` apart.
            unsafe {
                f(
                    band_buf,
                    w.add((bo / s.ocb) * block_bytes),
                    out.add(bo * positions + p0),
                    positions,
                    n,
                    0,
                    if has_ep {
                        eps.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                )
            };
        }
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
