//! The whole-plane depthwise kernels ([`super::super::DwPlaneFn`]): one call computes every
//! output row of one channel of a small plane, reading the unpadded input. A row of at most
//! `NV` vectors is loaded per column tap with a lane mask that keeps the columns inside the
//! input row (masked lanes read as zero and never fault), so there is no padded copy; input
//! rows outside the plane are skipped. Output rows go 4 at a time, sharing their input rows.
//! At stride 2 a tap's two loads are compressed to their even lanes (one permute).

use std::arch::x86_64::*;

use super::super::{DwPlane, EpStep};
use super::{EpFast, dw_weights, ep256, ep512, store_fast256, store_fast512};

/// Lanes `lo..hi` (clamped to 0..32) as bits.
fn lane_range(lo: isize, hi: isize) -> u32 {
    let (lo, hi) = (lo.clamp(0, 32) as u32, hi.clamp(0, 32) as u32);
    if lo >= hi {
        return 0;
    }
    let upto = |n: u32| if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
    upto(hi) & !upto(lo)
}

/// Per column tap `b` and output vector `v` of `lanes` columns: the first input column its
/// loads read (from the row's start; negative inside the left padding) and the lanes (of
/// `S * lanes`, two loads at stride 2) that lie inside the input row and serve an output
/// column.
#[allow(clippy::needless_range_loop)]
fn tap_lanes<const K: usize, const S: usize, const NV: usize>(
    g: &DwPlane,
    lanes: usize,
) -> ([[isize; NV]; K], [[u32; NV]; K]) {
    let mut off = [[0isize; NV]; K];
    let mut bits = [[0u32; NV]; K];
    for b in 0..K {
        for v in 0..NV {
            let x0 = (lanes * v * S + b * g.dw) as isize - g.pl as isize;
            off[b][v] = x0;
            let outs = g.ow as isize - (lanes * v) as isize;
            bits[b][v] = lane_range(-x0, g.w as isize - x0) & lane_range(0, S as isize * outs);
        }
    }
    (off, bits)
}

/// Input row `oy * s + ii - pt`: row `ii` of the window of the output rows from `oy`, or
/// `None` where it lies outside the plane (in the padding).
#[inline(always)]
fn in_row(g: &DwPlane, oy: usize, s: usize, ii: usize) -> Option<isize> {
    let y = (oy * s + ii) as isize - g.pt as isize;
    (y >= 0 && (y as usize) < g.h).then_some(y)
}

/// See [`super::super::DwPlaneFn`]: a plane of up to 16 (one vector) or 32 columns.
#[target_feature(enable = "avx512f")]
pub(in super::super) unsafe extern "C" fn plane512<const K: usize, const S: usize>(
    inp: *const f32,
    w: *const u8,
    out: *mut f32,
    g: *const DwPlane,
    ep: *const EpStep,
) {
    unsafe {
        let g = &*g;
        if g.ow > 16 {
            plane512_nv::<K, S, 2>(inp, w, out, g, ep)
        } else {
            plane512_nv::<K, S, 1>(inp, w, out, g, ep)
        }
    }
}

/// The broadcast weights, tap lanes and output mask of one AVX-512 plane call.
struct Taps512<const K: usize, const NV: usize> {
    wv: [[__m512; K]; K],
    off: [[isize; NV]; K],
    bits: [[u32; NV]; K],
    /// The last vector's output lanes.
    omask: __mmask16,
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn plane512_nv<const K: usize, const S: usize, const NV: usize>(
    inp: *const f32,
    w: *const u8,
    out: *mut f32,
    g: &DwPlane,
    ep: *const EpStep,
) {
    unsafe {
        let k = dw_weights::<K>(w);
        let mut wv = [[_mm512_setzero_ps(); K]; K];
        for i in 0..K {
            for b in 0..K {
                wv[i][b] = _mm512_set1_ps(k[i][b]);
            }
        }
        let (off, bits) = tap_lanes::<K, S, NV>(g, 16);
        let rest = g.ow - 16 * (NV - 1);
        let omask = lane_range(0, rest as isize) as __mmask16;
        let t = Taps512 {
            wv,
            off,
            bits,
            omask,
        };
        // With one vector a row, partial sums per kernel row (modulo 3), so that a row's
        // chain of dependent FMAs is K / 3 long, not K x K: 960 channels at 7x7 0.047 ->
        // 0.041 ms, 384 at 14x14 0.030 -> 0.028 (AMD Zen4). With two vectors a row, 2
        // partial sums were slower (192 at 28x28 0.050 -> 0.053: 16 accumulators).
        if NV == 1 {
            plane_rows512::<K, S, NV, 3>(inp, g, &t, out, ep)
        } else {
            plane_rows512::<K, S, NV, 1>(inp, g, &t, out, ep)
        }
    }
}

/// The plane's output rows, 4 at a time, then the 1 to 3 left.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn plane_rows512<const K: usize, const S: usize, const NV: usize, const P: usize>(
    inp: *const f32,
    g: &DwPlane,
    t: &Taps512<K, NV>,
    out: *mut f32,
    ep: *const EpStep,
) {
    unsafe {
        let mut oy = 0;
        while oy + 4 <= g.oh {
            rows512::<K, S, NV, 4, P>(inp, g, t, out, oy, ep);
            oy += 4;
        }
        match g.oh - oy {
            1 => rows512::<K, S, NV, 1, P>(inp, g, t, out, oy, ep),
            2 => rows512::<K, S, NV, 2, P>(inp, g, t, out, oy, ep),
            3 => rows512::<K, S, NV, 3, P>(inp, g, t, out, oy, ep),
            _ => {}
        }
    }
}

/// `R` output rows from `oy`: each input row of their window loaded once per column tap
/// and vector, for every output row it serves; kernel row `i`'s products summed apart in
/// partial sum `i % P`, added up before the epilogue.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn rows512<
    const K: usize,
    const S: usize,
    const NV: usize,
    const R: usize,
    const P: usize,
>(
    inp: *const f32,
    g: &DwPlane,
    t: &Taps512<K, NV>,
    out: *mut f32,
    oy: usize,
    ep: *const EpStep,
) {
    unsafe {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let mut part = [[[_mm512_setzero_ps(); NV]; P]; R];
        for ii in 0..(R - 1) * S + K {
            let Some(y) = in_row(g, oy, S, ii) else {
                continue;
            };
            let row = inp.wrapping_offset(y * g.w as isize);
            for b in 0..K {
                for v in 0..NV {
                    let p = row.wrapping_offset(t.off[b][v]);
                    let m = t.bits[b][v];
                    let x = if S == 1 {
                        _mm512_maskz_loadu_ps(m as __mmask16, p)
                    } else {
                        let lo = _mm512_maskz_loadu_ps(m as __mmask16, p);
                        let hi = _mm512_maskz_loadu_ps((m >> 16) as __mmask16, p.wrapping_add(16));
                        _mm512_permutex2var_ps(lo, even, hi)
                    };
                    for r in 0..R {
                        if ii >= r * S && ii - r * S < K {
                            let i = ii - r * S;
                            let a = &mut part[r][i % P][v];
                            *a = _mm512_fmadd_ps(x, t.wv[i][b], *a);
                        }
                    }
                }
            }
        }
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for r in 0..R {
            for v in 0..NV {
                acc[r][v] = part[r][0][v];
                for q in 1..P {
                    acc[r][v] = _mm512_add_ps(acc[r][v], part[r][q][v]);
                }
            }
        }
        let o = out.add(oy * g.out_rs);
        if let Some(f) = EpFast::decode(ep) {
            // Rows as the "channels" of the store, each with the channel's parameters.
            store_fast512::<R, NV, true>(&acc, &f, o, (g.out_rs, 0, oy * g.out_rs), t.omask);
            return;
        }
        for r in 0..R {
            for v in 0..NV {
                let off = (oy + r) * g.out_rs + 16 * v;
                let last = v + 1 == NV;
                let x = ep512(acc[r][v], ep, 0, off, t.omask, last);
                if last {
                    _mm512_mask_storeu_ps(out.add(off), t.omask, x);
                } else {
                    _mm512_storeu_ps(out.add(off), x);
                }
            }
        }
    }
}

/// See [`super::super::DwPlaneFn`]: a plane of up to 8 (one vector) or 16 columns.
#[target_feature(enable = "avx2,fma")]
pub(in super::super) unsafe extern "C" fn plane256<const K: usize, const S: usize>(
    inp: *const f32,
    w: *const u8,
    out: *mut f32,
    g: *const DwPlane,
    ep: *const EpStep,
) {
    unsafe {
        let g = &*g;
        if g.ow > 8 {
            plane256_nv::<K, S, 2>(inp, w, out, g, ep)
        } else {
            plane256_nv::<K, S, 1>(inp, w, out, g, ep)
        }
    }
}

/// The broadcast weights, tap offsets, load masks (two halves at stride 2) and output mask of
/// one AVX2 plane call.
struct Taps256<const K: usize, const NV: usize> {
    wv: [[__m256; K]; K],
    off: [[isize; NV]; K],
    masks: [[[__m256i; 2]; NV]; K],
    /// The last vector's output lanes (sign bit set).
    omask: __m256i,
}

/// Bits `0..8` of `bits` as a `vmaskmovps` mask.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn mask256(bits: u32) -> __m256i {
    let lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let b = _mm256_set1_epi32((bits & 0xff) as i32);
    _mm256_cmpeq_epi32(_mm256_and_si256(b, lanes), lanes)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn plane256_nv<const K: usize, const S: usize, const NV: usize>(
    inp: *const f32,
    w: *const u8,
    out: *mut f32,
    g: &DwPlane,
    ep: *const EpStep,
) {
    unsafe {
        let k = dw_weights::<K>(w);
        let mut wv = [[_mm256_setzero_ps(); K]; K];
        for i in 0..K {
            for b in 0..K {
                wv[i][b] = _mm256_set1_ps(k[i][b]);
            }
        }
        let (off, bits) = tap_lanes::<K, S, NV>(g, 8);
        let mut masks = [[[_mm256_setzero_si256(); 2]; NV]; K];
        for b in 0..K {
            for v in 0..NV {
                masks[b][v] = [mask256(bits[b][v]), mask256(bits[b][v] >> 8)];
            }
        }
        let rest = g.ow - 8 * (NV - 1);
        let t = Taps256 {
            wv,
            off,
            masks,
            omask: mask256(lane_range(0, rest as isize)),
        };
        // One sum a row: 2 partial sums with one vector a row measured the same (960
        // channels at 7x7 0.059 / 0.058 ms on an AMD Zen4), with 16 registers to share.
        plane_rows256::<K, S, NV, 1>(inp, g, &t, out, ep)
    }
}

/// The plane's output rows, 4 at a time, then the 1 to 3 left.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn plane_rows256<const K: usize, const S: usize, const NV: usize, const P: usize>(
    inp: *const f32,
    g: &DwPlane,
    t: &Taps256<K, NV>,
    out: *mut f32,
    ep: *const EpStep,
) {
    unsafe {
        let mut oy = 0;
        while oy + 4 <= g.oh {
            rows256::<K, S, NV, 4, P>(inp, g, t, out, oy, ep);
            oy += 4;
        }
        match g.oh - oy {
            1 => rows256::<K, S, NV, 1, P>(inp, g, t, out, oy, ep),
            2 => rows256::<K, S, NV, 2, P>(inp, g, t, out, oy, ep),
            3 => rows256::<K, S, NV, 3, P>(inp, g, t, out, oy, ep),
            _ => {}
        }
    }
}

/// [`rows512`] in 8-lane vectors.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn rows256<
    const K: usize,
    const S: usize,
    const NV: usize,
    const R: usize,
    const P: usize,
>(
    inp: *const f32,
    g: &DwPlane,
    t: &Taps256<K, NV>,
    out: *mut f32,
    oy: usize,
    ep: *const EpStep,
) {
    unsafe {
        let even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let mut part = [[[_mm256_setzero_ps(); NV]; P]; R];
        for ii in 0..(R - 1) * S + K {
            let Some(y) = in_row(g, oy, S, ii) else {
                continue;
            };
            let row = inp.wrapping_offset(y * g.w as isize);
            for b in 0..K {
                for v in 0..NV {
                    let p = row.wrapping_offset(t.off[b][v]);
                    let [m0, m1] = t.masks[b][v];
                    let x = if S == 1 {
                        _mm256_maskload_ps(p, m0)
                    } else {
                        let lo = _mm256_permutevar8x32_ps(_mm256_maskload_ps(p, m0), even);
                        let hi = _mm256_permutevar8x32_ps(
                            _mm256_maskload_ps(p.wrapping_add(8), m1),
                            even,
                        );
                        _mm256_blend_ps::<0xf0>(lo, hi)
                    };
                    for r in 0..R {
                        if ii >= r * S && ii - r * S < K {
                            let i = ii - r * S;
                            let a = &mut part[r][i % P][v];
                            *a = _mm256_fmadd_ps(x, t.wv[i][b], *a);
                        }
                    }
                }
            }
        }
        let mut acc = [[_mm256_setzero_ps(); NV]; R];
        for r in 0..R {
            for v in 0..NV {
                acc[r][v] = part[r][0][v];
                for q in 1..P {
                    acc[r][v] = _mm256_add_ps(acc[r][v], part[r][q][v]);
                }
            }
        }
        let o = out.add(oy * g.out_rs);
        if let Some(f) = EpFast::decode(ep) {
            store_fast256::<R, NV, true>(&acc, &f, o, (g.out_rs, 0, oy * g.out_rs), t.omask);
            return;
        }
        for r in 0..R {
            for v in 0..NV {
                let off = (oy + r) * g.out_rs + 8 * v;
                let last = v + 1 == NV;
                let x = ep256(acc[r][v], ep, 0, off, t.omask, last);
                if last {
                    _mm256_maskstore_ps(out.add(off), t.omask, x);
                } else {
                    _mm256_storeu_ps(out.add(off), x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_ranges() {
        assert_eq!(lane_range(0, 3), 0b111);
        assert_eq!(lane_range(1, 3), 0b110);
        assert_eq!(lane_range(-4, 40), u32::MAX);
        assert_eq!(lane_range(5, 5), 0);
        assert_eq!(lane_range(30, 32), 0xc000_0000);
    }

    #[test]
    fn taps_keep_columns_inside_the_row() {
        // 7 columns, pad 1 left, stride 1: tap 0 reads from column -1 (lane 0 masked off).
        let g = DwPlane {
            h: 7,
            w: 7,
            oh: 7,
            ow: 7,
            pt: 1,
            pl: 1,
            dw: 1,
            out_rs: 7,
        };
        let (off, bits) = tap_lanes::<3, 1, 1>(&g, 16);
        assert_eq!(off, [[-1], [0], [1]]);
        assert_eq!(bits, [[0b111_1110], [0b111_1111], [0b011_1111]]);
        // Stride 2, 14 columns to 7: lanes are input columns, 14 of them serve outputs.
        let g = DwPlane {
            w: 14,
            h: 14,
            pl: 0,
            pt: 0,
            ..g
        };
        let (off, bits) = tap_lanes::<3, 2, 1>(&g, 16);
        assert_eq!(off, [[0], [1], [2]]);
        assert_eq!(bits, [[0x3fff], [0x1fff], [0x0fff]]);
    }
}
