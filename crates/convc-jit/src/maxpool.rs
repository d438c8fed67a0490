//! Max pooling on the wide paths, as a plain-Rust step: per output row, the window's input
//! rows are reduced column by column into a row buffer (padded with `-inf`), then the row
//! buffer's windows along the row (stride 1 or 2). Separable, so a `kh x kw` window costs
//! `kh + kw` vector maxima per output vector instead of `kh kw`; the Cranelift pool kernel
//! (`codegen/pool.rs`, f32x4, one window at a time with scalar border windows) ran an
//! Inception block's 3x3 stride-1 pool over 192 channels of 28x28 in 0.73 ms on an Intel Xeon.
//!
//! NaN wins a window, as in the interpreter (`F32Vec::max_nan`).

use crate::lanes::F32Vec;
use crate::spec::PoolSpec;

/// The table [`run`] reads: the pool's sizes, window, strides and padding (top, left).
pub(crate) fn params(p: &PoolSpec) -> Vec<i64> {
    [
        p.c, p.h, p.w, p.oh, p.ow, p.kh, p.kw, p.sh, p.sw, p.pt, p.pl,
    ]
    .iter()
    .map(|&v| v as i64)
    .collect()
}

/// The pool of a table of [`params`].
///
/// # Safety
/// `p` points to a table of [`params`].
unsafe fn read(p: *const i64) -> PoolSpec {
    let v = |i: usize| unsafe { *p.add(i) as usize };
    PoolSpec {
        max: true,
        c: v(0),
        h: v(1),
        w: v(2),
        oh: v(3),
        ow: v(4),
        kh: v(5),
        kw: v(6),
        sh: v(7),
        sw: v(8),
        pt: v(9),
        pl: v(10),
    }
}

/// Floats of the row buffer: `pl` then the row's `w` columns, then `-inf` up to the last
/// window's end and a vector beyond (the last output vector loads whole vectors).
fn row_len(p: &PoolSpec, lanes: usize) -> usize {
    p.pl + p.w + p.kw + p.sw * 2 * lanes
}

/// Whether the step handles a max pool of these strides along the row (the vertical stride
/// is any).
pub(crate) fn fits(sw: usize) -> bool {
    sw == 1 || sw == 2
}

/// Whether the pool's windows along the row are the column pairs `2 ox, 2 ox + 1` (2 wide,
/// stride 2, no left padding), which [`pairs_row`] takes without the row buffer.
fn pairs(s: &PoolSpec) -> bool {
    s.kw == 2 && s.sw == 2 && s.pl == 0 && 2 * s.ow <= s.w
}

/// One output row of a [`pairs`] pool: per output vector, the window rows' maximum of its
/// two input vectors, then the maximum of their even and odd lanes. Through the row buffer,
/// the windows' loads at odd offsets straddled the two vectors just stored there, which the
/// core cannot forward: a 2x2 pool of 64 channels at 224x224 (12.8 MB, which numpy reads in
/// 0.2 ms) took 1.9-2.2 ms on an AMD Zen4.
///
/// # Safety
/// `plane` holds the channel's `h x w` input, rows `y0 < y1 <= h`; `dst` the row's `ow`
/// outputs; the host runs `V`'s path.
#[inline(always)]
unsafe fn pairs_row<V: F32Vec>(
    s: &PoolSpec,
    plane: *const f32,
    (y0, y1): (usize, usize),
    dst: *mut f32,
) {
    let l = V::LANES;
    let mut ox = 0;
    while ox < s.ow {
        let n = l.min(s.ow - ox);
        let x = 2 * ox;
        // Input columns `x .. x + 2n <= w`, in two vectors (the second perhaps empty).
        let (na, nb) = ((2 * n).min(l), (2 * n).saturating_sub(l));
        // SAFETY: columns `x .. x + 2n` of rows `y0..y1`; outputs `ox .. ox + n`.
        unsafe {
            let p = plane.add(y0 * s.w + x);
            let mut a = V::load_n(p, na);
            let mut b = if nb > 0 {
                V::load_n(p.add(l), nb)
            } else {
                V::splat(0.0)
            };
            for y in y0 + 1..y1 {
                let p = plane.add(y * s.w + x);
                a = a.max_nan(V::load_n(p, na));
                if nb > 0 {
                    b = b.max_nan(V::load_n(p.add(l), nb));
                }
            }
            let [even, odd] = V::deinterleave2([a, b]);
            even.max_nan(odd).store_n(dst.add(ox), n);
        }
        ox += n;
    }
}

/// Output rows `start..end` (item = channel * oh + output row) on vectors `V`.
///
/// # Safety
/// `bufs[SLOT_OUT]` holds the `[c][oh][ow]` output, `bufs[SLOT_IN]` the `[c][h][w]` input;
/// `p` a table of [`params`] whose padding is smaller than the window (every
/// window holds an input row and column); the host runs `V`'s path.
#[inline(always)]
unsafe fn run<V: F32Vec>(bufs: *const *mut f32, start: u64, end: u64, p: *const i64) {
    let s = unsafe { read(p) };
    let (out, inp) = unsafe {
        (
            *bufs.add(crate::spec::SLOT_OUT),
            *bufs.add(crate::spec::SLOT_IN) as *const f32,
        )
    };
    let l = V::LANES;
    let mut row = vec![f32::NEG_INFINITY; row_len(&s, l)];
    let buf = row.as_mut_ptr();
    for item in start as usize..end as usize {
        let (c, oy) = (item / s.oh, item % s.oh);
        // The window's input rows (at least one: the padding is smaller than the window).
        let y0 = (oy * s.sh).saturating_sub(s.pt);
        let y1 = (oy * s.sh + s.kh).saturating_sub(s.pt).min(s.h);
        let plane = unsafe { inp.add(c * s.h * s.w) };
        if pairs(&s) {
            // SAFETY: rows `y0..y1` of channel `c`, output row `item`.
            unsafe { pairs_row::<V>(&s, plane, (y0, y1), out.add(item * s.ow)) };
            continue;
        }
        // Columns: the rows' maximum into the buffer at `pl..pl + w`.
        let mut x = 0;
        while x < s.w {
            let n = l.min(s.w - x);
            // SAFETY: columns `x..x + n` of rows `y0..y1` of channel `c`; the buffer holds
            // `pl + w` floats and more.
            unsafe {
                let mut m = V::load_n(plane.add(y0 * s.w + x), n);
                for y in y0 + 1..y1 {
                    m = m.max_nan(V::load_n(plane.add(y * s.w + x), n));
                }
                m.store_n(buf.add(s.pl + x), n);
            }
            x += n;
        }
        let dst = unsafe { out.add(item * s.ow) };
        // Along the row: output `ox` is the maximum of buffer `ox sw .. ox sw + kw`.
        let mut ox = 0;
        while ox < s.ow {
            let n = l.min(s.ow - ox);
            // SAFETY: the buffer reads end at `(ow + l) sw + kw <= row_len` (`-inf` past the
            // row); outputs `ox..ox + n` of the row.
            unsafe {
                let q = buf.add(ox * s.sw);
                let mut m;
                if s.sw == 1 {
                    m = V::load(q);
                    for k in 1..s.kw {
                        m = m.max_nan(V::load(q.add(k)));
                    }
                } else {
                    m = V::deinterleave2([V::load(q), V::load(q.add(l))])[0];
                    for k in 1..s.kw {
                        let q = q.add(k);
                        m = m.max_nan(V::deinterleave2([V::load(q), V::load(q.add(l))])[0]);
                    }
                }
                m.store_n(dst.add(ox), n);
            }
            ox += n;
        }
    }
    std::hint::black_box(&mut row);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::run;
    use crate::lanes::{V8, V16};

    /// The step on the AVX2 path.
    ///
    /// # Safety
    /// As [`super::run`]; the host runs AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe extern "C" fn run_avx2(
        bufs: *const *mut f32,
        start: u64,
        end: u64,
        p: *const i64,
    ) {
        unsafe { run::<V8>(bufs, start, end, p) }
    }

    /// The step on the AVX-512 path.
    ///
    /// # Safety
    /// As [`super::run`]; the host runs AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe extern "C" fn run_avx512(
        bufs: *const *mut f32,
        start: u64,
        end: u64,
        p: *const i64,
    ) {
        unsafe { run::<V16>(bufs, start, end, p) }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{run_avx2, run_avx512};
