//! The f32 vectors of the wide paths (AVX2's 8 lanes, AVX-512's 16) behind one trait, so that
//! plain-Rust steps (`wino.rs`) are written once, generic over the vector, and still compile to
//! the path's instructions: every method is `#[inline(always)]`, and the generic code is only
//! instantiated inside a `#[target_feature]` function of the matching path, where the
//! intrinsics inline. (Arrays of `f32` left to the autovectoriser came out partly scalar.)

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// One vector of `LANES` floats and the operations the plain-Rust steps need.
///
/// # Safety
/// Implementations use one path's instructions: call the methods only from code that runs on
/// a host with that path (inside a `#[target_feature]` function of it).
pub(crate) unsafe trait F32Vec: Copy {
    /// Floats per vector.
    const LANES: usize;
    /// Every lane `k`.
    fn splat(k: f32) -> Self;
    /// # Safety
    /// `p` points to `LANES` readable floats.
    unsafe fn load(p: *const f32) -> Self;
    /// The first `n < LANES` lanes from `p`, the others 0.
    ///
    /// # Safety
    /// `p` points to `n` readable floats.
    unsafe fn load_first(p: *const f32, n: usize) -> Self;
    /// The first `n <= LANES` lanes from `p`, the others 0: one plain load when `n` is all.
    ///
    /// # Safety
    /// `p` points to `n` readable floats.
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        // SAFETY: the caller's `n` floats.
        unsafe {
            if n == Self::LANES {
                Self::load(p)
            } else {
                Self::load_first(p, n)
            }
        }
    }
    /// # Safety
    /// `p` points to `LANES` writable floats.
    unsafe fn store(self, p: *mut f32);
    /// Stores the first `n < LANES` lanes.
    ///
    /// # Safety
    /// `p` points to `n` writable floats.
    unsafe fn store_first(self, p: *mut f32, n: usize);
    /// Stores the first `n <= LANES` lanes: one plain store when `n` is all.
    ///
    /// # Safety
    /// `p` points to `n` writable floats.
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        // SAFETY: the caller's `n` floats.
        unsafe {
            if n == Self::LANES {
                self.store(p)
            } else {
                self.store_first(p, n)
            }
        }
    }
    /// A streaming (non-temporal) store: the line goes to memory without being read into the
    /// cache first. Weakly ordered: the writer ends with [`store_fence`] before others read.
    ///
    /// # Safety
    /// As `store`, and `p` aligned to the vector's size.
    unsafe fn store_nt(self, p: *mut f32);
    /// Lane-wise `self + o`.
    fn add(self, o: Self) -> Self;
    /// Lane-wise `self - o`.
    fn sub(self, o: Self) -> Self;
    /// Lane-wise `self * o`.
    fn mul(self, o: Self) -> Self;
    /// Lane-wise `a > self ? a : self` (x86 `max`: NaN and -0 as `Unary::apply` keeps them).
    fn max_from(self, a: Self) -> Self;
    /// Lane-wise `b < self ? b : self`.
    fn min_from(self, b: Self) -> Self;
    /// Lane-wise maximum of `self` and `v` where NaN wins (either NaN gives a NaN, `self`'s
    /// first), on ties `self`: max pooling's fold as the interpreter writes it.
    fn max_nan(self, v: Self) -> Self;
    /// Lane-wise `self < 0 ? self * a : self`.
    fn leaky(self, a: f32) -> Self;
    /// `self * k`.
    #[inline(always)]
    fn scale(self, k: f32) -> Self {
        self.mul(Self::splat(k))
    }
    /// Lanes `lo..hi` from `p` (`p + lane`), the others 0; memory outside those lanes is not
    /// touched, so `p` may point before or after its allocation.
    ///
    /// # Safety
    /// `p + lo .. p + hi` are readable floats; `lo <= hi <= LANES`.
    unsafe fn load_lanes(p: *const f32, lo: usize, hi: usize) -> Self;
    /// The inverse of [`F32Vec::interleave2`]: `2 * LANES` columns in order into the two
    /// vectors of their even and odd columns.
    fn deinterleave2(x: [Self; 2]) -> [Self; 2];
    /// The inverse of [`F32Vec::interleave4`]: columns `4t + j` into vector `j`.
    fn deinterleave4(x: [Self; 4]) -> [Self; 4];
    /// Interleaves two vectors whose lane `t` holds column `2t + j` of a row (`y[j]`) into
    /// the row's `2 * LANES` columns in order.
    fn interleave2(y: [Self; 2]) -> [Self; 2];
    /// The same for four vectors (lane `t` of `y[j]`: column `4t + j`).
    fn interleave4(y: [Self; 4]) -> [Self; 4];
}

/// AVX2's vector.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct V8(__m256);

/// AVX-512's vector.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct V16(__m512);

/// The AVX2 mask of the first `n` lanes (sign bits set).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn first_mask8(n: usize) -> __m256i {
    const IDX: [i32; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    // SAFETY: AVX2 is the caller's path.
    unsafe {
        let idx = _mm256_loadu_si256(IDX.as_ptr().cast());
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
    }
}

// SAFETY: AVX2 + FMA instructions; the trait's contract leaves the host check to the caller.
#[cfg(target_arch = "x86_64")]
unsafe impl F32Vec for V8 {
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(k: f32) -> Self {
        V8(unsafe { _mm256_set1_ps(k) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        V8(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        V8(unsafe { _mm256_maskload_ps(p, first_mask8(n)) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32) {
        unsafe { _mm256_stream_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        unsafe { _mm256_maskstore_ps(p, first_mask8(n), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V8(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V8(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V8(unsafe { _mm256_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn max_from(self, a: Self) -> Self {
        V8(unsafe { _mm256_max_ps(a.0, self.0) })
    }
    #[inline(always)]
    fn min_from(self, b: Self) -> Self {
        V8(unsafe { _mm256_min_ps(b.0, self.0) })
    }
    #[inline(always)]
    fn max_nan(self, v: Self) -> Self {
        // `maxps(v, self)` gives `self` when either is NaN; then `v` where `v` is NaN.
        unsafe {
            let m = _mm256_max_ps(v.0, self.0);
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v.0, v.0);
            V8(_mm256_blendv_ps(m, v.0, nan))
        }
    }
    #[inline(always)]
    fn leaky(self, a: f32) -> Self {
        unsafe {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(self.0, _mm256_setzero_ps());
            let av = _mm256_mul_ps(self.0, _mm256_set1_ps(a));
            V8(_mm256_blendv_ps(self.0, av, neg))
        }
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lo: usize, hi: usize) -> Self {
        unsafe {
            let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let below = _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32), idx);
            let above = _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo as i32 - 1));
            V8(_mm256_maskload_ps(p, _mm256_and_si256(below, above)))
        }
    }
    #[inline(always)]
    fn deinterleave2(x: [Self; 2]) -> [Self; 2] {
        unsafe {
            // Per half: [x0 even, x1 even], then the 64-bit pairs in order 0 2 1 3.
            let e = _mm256_shuffle_ps::<0x88>(x[0].0, x[1].0);
            let o = _mm256_shuffle_ps::<0xDD>(x[0].0, x[1].0);
            let fix =
                |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            [V8(fix(e)), V8(fix(o))]
        }
    }
    #[inline(always)]
    fn deinterleave4(x: [Self; 4]) -> [Self; 4] {
        unsafe {
            // Tiles (4 columns each) t and t + 4 into one vector's halves, then a 4x4
            // transpose per half.
            let y0 = _mm256_permute2f128_ps::<0x20>(x[0].0, x[2].0);
            let y1 = _mm256_permute2f128_ps::<0x31>(x[0].0, x[2].0);
            let y2 = _mm256_permute2f128_ps::<0x20>(x[1].0, x[3].0);
            let y3 = _mm256_permute2f128_ps::<0x31>(x[1].0, x[3].0);
            let a = _mm256_unpacklo_ps(y0, y1);
            let b = _mm256_unpackhi_ps(y0, y1);
            let c = _mm256_unpacklo_ps(y2, y3);
            let d = _mm256_unpackhi_ps(y2, y3);
            [
                V8(_mm256_shuffle_ps::<0x44>(a, c)),
                V8(_mm256_shuffle_ps::<0xEE>(a, c)),
                V8(_mm256_shuffle_ps::<0x44>(b, d)),
                V8(_mm256_shuffle_ps::<0xEE>(b, d)),
            ]
        }
    }
    #[inline(always)]
    fn interleave2(y: [Self; 2]) -> [Self; 2] {
        unsafe {
            // Per 128-bit half h: lo holds tiles 4h, 4h+1, hi tiles 4h+2, 4h+3.
            let lo = _mm256_unpacklo_ps(y[0].0, y[1].0);
            let hi = _mm256_unpackhi_ps(y[0].0, y[1].0);
            [
                V8(_mm256_permute2f128_ps::<0x20>(lo, hi)),
                V8(_mm256_permute2f128_ps::<0x31>(lo, hi)),
            ]
        }
    }
    #[inline(always)]
    fn interleave4(y: [Self; 4]) -> [Self; 4] {
        unsafe {
            let [e0, e1, e2, e3] = tiles4_256(y);
            [
                V8(_mm256_permute2f128_ps::<0x20>(e0, e1)),
                V8(_mm256_permute2f128_ps::<0x20>(e2, e3)),
                V8(_mm256_permute2f128_ps::<0x31>(e0, e1)),
                V8(_mm256_permute2f128_ps::<0x31>(e2, e3)),
            ]
        }
    }
}

/// The first step of [`F32Vec::interleave4`] on 256 bits: `e[i]`'s 128-bit half `h` holds
/// tile `4h + i`'s four columns.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tiles4_256(y: [V8; 4]) -> [__m256; 4] {
    unsafe {
        let a = _mm256_unpacklo_ps(y[0].0, y[1].0);
        let b = _mm256_unpackhi_ps(y[0].0, y[1].0);
        let c = _mm256_unpacklo_ps(y[2].0, y[3].0);
        let d = _mm256_unpackhi_ps(y[2].0, y[3].0);
        [
            _mm256_shuffle_ps::<0x44>(a, c),
            _mm256_shuffle_ps::<0xEE>(a, c),
            _mm256_shuffle_ps::<0x44>(b, d),
            _mm256_shuffle_ps::<0xEE>(b, d),
        ]
    }
}

/// The AVX-512 mask of the first `n` lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn first_mask16(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

// SAFETY: AVX-512F instructions; the trait's contract leaves the host check to the caller.
#[cfg(target_arch = "x86_64")]
unsafe impl F32Vec for V16 {
    const LANES: usize = 16;
    #[inline(always)]
    fn splat(k: f32) -> Self {
        V16(unsafe { _mm512_set1_ps(k) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        V16(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        V16(unsafe { _mm512_maskz_loadu_ps(first_mask16(n), p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32) {
        unsafe { _mm512_stream_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        unsafe { _mm512_mask_storeu_ps(p, first_mask16(n), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V16(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V16(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V16(unsafe { _mm512_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn max_from(self, a: Self) -> Self {
        V16(unsafe { _mm512_max_ps(a.0, self.0) })
    }
    #[inline(always)]
    fn min_from(self, b: Self) -> Self {
        V16(unsafe { _mm512_min_ps(b.0, self.0) })
    }
    #[inline(always)]
    fn max_nan(self, v: Self) -> Self {
        // `maxps(v, self)` gives `self` when either is NaN; then `v` where `v` is NaN.
        unsafe {
            let m = _mm512_max_ps(v.0, self.0);
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v.0, v.0);
            V16(_mm512_mask_mov_ps(m, nan, v.0))
        }
    }
    #[inline(always)]
    fn leaky(self, a: f32) -> Self {
        unsafe {
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(self.0, _mm512_setzero_ps());
            V16(_mm512_mask_mul_ps(self.0, neg, self.0, _mm512_set1_ps(a)))
        }
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lo: usize, hi: usize) -> Self {
        let m = first_mask16(hi) & !first_mask16(lo);
        V16(unsafe { _mm512_maskz_loadu_ps(m, p) })
    }
    #[inline(always)]
    fn deinterleave2(x: [Self; 2]) -> [Self; 2] {
        unsafe {
            let e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let o = _mm512_add_epi32(e, _mm512_set1_epi32(1));
            [
                V16(_mm512_permutex2var_ps(x[0].0, e, x[1].0)),
                V16(_mm512_permutex2var_ps(x[0].0, o, x[1].0)),
            ]
        }
    }
    #[inline(always)]
    fn deinterleave4(x: [Self; 4]) -> [Self; 4] {
        unsafe {
            // Columns 4t + j of the first and the last two vectors into lanes 0..8 each,
            // then the two halves joined.
            let base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
            let mut r = [V16(_mm512_setzero_ps()); 4];
            for (j, rj) in r.iter_mut().enumerate() {
                let idx = _mm512_add_epi32(base, _mm512_set1_epi32(j as i32));
                let lo = _mm512_permutex2var_ps(x[0].0, idx, x[1].0);
                let hi = _mm512_permutex2var_ps(x[2].0, idx, x[3].0);
                *rj = V16(_mm512_shuffle_f32x4::<0x44>(lo, hi));
            }
            r
        }
    }
    #[inline(always)]
    fn interleave2(y: [Self; 2]) -> [Self; 2] {
        unsafe {
            // Per 128-bit block b: lo holds tiles 4b, 4b+1, hi tiles 4b+2, 4b+3.
            let lo = _mm512_unpacklo_ps(y[0].0, y[1].0);
            let hi = _mm512_unpackhi_ps(y[0].0, y[1].0);
            // [lo0 lo1 hi0 hi1] and [lo2 lo3 hi2 hi3], then blocks 0 2 1 3 of each.
            let g0 = _mm512_shuffle_f32x4::<0x44>(lo, hi);
            let g1 = _mm512_shuffle_f32x4::<0xEE>(lo, hi);
            [
                V16(_mm512_shuffle_f32x4::<0xD8>(g0, g0)),
                V16(_mm512_shuffle_f32x4::<0xD8>(g1, g1)),
            ]
        }
    }
    #[inline(always)]
    fn interleave4(y: [Self; 4]) -> [Self; 4] {
        unsafe {
            let a = _mm512_unpacklo_ps(y[0].0, y[1].0);
            let b = _mm512_unpackhi_ps(y[0].0, y[1].0);
            let c = _mm512_unpacklo_ps(y[2].0, y[3].0);
            let d = _mm512_unpackhi_ps(y[2].0, y[3].0);
            // e[i]'s block b: tile 4b + i's four columns.
            let e0 = _mm512_shuffle_ps::<0x44>(a, c);
            let e1 = _mm512_shuffle_ps::<0xEE>(a, c);
            let e2 = _mm512_shuffle_ps::<0x44>(b, d);
            let e3 = _mm512_shuffle_ps::<0xEE>(b, d);
            // A 4x4 transpose of 128-bit blocks: output k = block k of e0, e1, e2, e3.
            let f0 = _mm512_shuffle_f32x4::<0x44>(e0, e1);
            let f1 = _mm512_shuffle_f32x4::<0xEE>(e0, e1);
            let f2 = _mm512_shuffle_f32x4::<0x44>(e2, e3);
            let f3 = _mm512_shuffle_f32x4::<0xEE>(e2, e3);
            [
                V16(_mm512_shuffle_f32x4::<0x88>(f0, f2)),
                V16(_mm512_shuffle_f32x4::<0xDD>(f0, f2)),
                V16(_mm512_shuffle_f32x4::<0x88>(f1, f3)),
                V16(_mm512_shuffle_f32x4::<0xDD>(f1, f3)),
            ]
        }
    }
}

/// A 128-bit vector (4 lanes), for plain-Rust steps on the wide paths whose data come in
/// fours: Winograd's transforms of a plane only 4 tiles wide (a 14x14 plane in F(4x4,3x3))
/// would leave 3/4 of a 16-lane vector idle. Its masked loads and stores are AVX's, so it is
/// only used inside the AVX2 and AVX-512 paths' functions.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct V4(__m128);

/// The 128-bit mask of lanes `lo..hi` (sign bits set).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes_mask4(lo: usize, hi: usize) -> __m128i {
    // SAFETY: SSE2, part of x86-64.
    unsafe {
        let idx = _mm_setr_epi32(0, 1, 2, 3);
        let below = _mm_cmpgt_epi32(_mm_set1_epi32(hi as i32), idx);
        let above = _mm_cmpgt_epi32(idx, _mm_set1_epi32(lo as i32 - 1));
        _mm_and_si128(below, above)
    }
}

/// The 4x4 transpose: output `k` holds lane `k` of each input, in order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose4(r: [V4; 4]) -> [V4; 4] {
    // SAFETY: SSE, part of x86-64.
    unsafe {
        let a = _mm_unpacklo_ps(r[0].0, r[1].0);
        let b = _mm_unpackhi_ps(r[0].0, r[1].0);
        let c = _mm_unpacklo_ps(r[2].0, r[3].0);
        let d = _mm_unpackhi_ps(r[2].0, r[3].0);
        [
            V4(_mm_movelh_ps(a, c)),
            V4(_mm_movehl_ps(c, a)),
            V4(_mm_movelh_ps(b, d)),
            V4(_mm_movehl_ps(d, b)),
        ]
    }
}

// SAFETY: SSE4.1 and AVX instructions (AVX's masked moves); the trait's contract leaves the
// host check to the caller, and both wide paths have them.
#[cfg(target_arch = "x86_64")]
unsafe impl F32Vec for V4 {
    const LANES: usize = 4;
    #[inline(always)]
    fn splat(k: f32) -> Self {
        V4(unsafe { _mm_set1_ps(k) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        V4(unsafe { _mm_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        V4(unsafe { _mm_maskload_ps(p, lanes_mask4(0, n)) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_nt(self, p: *mut f32) {
        unsafe { _mm_stream_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn store_first(self, p: *mut f32, n: usize) {
        unsafe { _mm_maskstore_ps(p, lanes_mask4(0, n), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        V4(unsafe { _mm_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        V4(unsafe { _mm_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        V4(unsafe { _mm_mul_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn max_from(self, a: Self) -> Self {
        V4(unsafe { _mm_max_ps(a.0, self.0) })
    }
    #[inline(always)]
    fn min_from(self, b: Self) -> Self {
        V4(unsafe { _mm_min_ps(b.0, self.0) })
    }
    #[inline(always)]
    fn max_nan(self, v: Self) -> Self {
        // `maxps(v, self)` gives `self` when either is NaN; then `v` where `v` is NaN.
        unsafe {
            let m = _mm_max_ps(v.0, self.0);
            let nan = _mm_cmpunord_ps(v.0, v.0);
            V4(_mm_blendv_ps(m, v.0, nan))
        }
    }
    #[inline(always)]
    fn leaky(self, a: f32) -> Self {
        unsafe {
            let neg = _mm_cmplt_ps(self.0, _mm_setzero_ps());
            let av = _mm_mul_ps(self.0, _mm_set1_ps(a));
            V4(_mm_blendv_ps(self.0, av, neg))
        }
    }
    #[inline(always)]
    unsafe fn load_lanes(p: *const f32, lo: usize, hi: usize) -> Self {
        V4(unsafe { _mm_maskload_ps(p, lanes_mask4(lo, hi)) })
    }
    #[inline(always)]
    fn deinterleave2(x: [Self; 2]) -> [Self; 2] {
        unsafe {
            [
                V4(_mm_shuffle_ps::<0x88>(x[0].0, x[1].0)),
                V4(_mm_shuffle_ps::<0xDD>(x[0].0, x[1].0)),
            ]
        }
    }
    #[inline(always)]
    fn deinterleave4(x: [Self; 4]) -> [Self; 4] {
        // Vector `t` holds columns `4t .. 4t + 4`; output `j` lane `t` is column `4t + j`.
        unsafe { transpose4(x) }
    }
    #[inline(always)]
    fn interleave2(y: [Self; 2]) -> [Self; 2] {
        unsafe {
            [
                V4(_mm_unpacklo_ps(y[0].0, y[1].0)),
                V4(_mm_unpackhi_ps(y[0].0, y[1].0)),
            ]
        }
    }
    #[inline(always)]
    fn interleave4(y: [Self; 4]) -> [Self; 4] {
        // Lane `t` of `y[j]` is column `4t + j`: output `t` is columns `4t .. 4t + 4`.
        unsafe { transpose4(y) }
    }
}

/// Splits one row into `M` (1, 2 or 4) phases, vectorised (one phase: a padded copy): padded
/// column `xp` (source column `xp - pl`, zero outside `0..w`) goes to
/// `dst[(xp % M) * wq + xp / M]`, for every `xp < M * wq`; the zeros of the padding are
/// written too.
///
/// # Safety
/// `src` holds `w` floats, `dst` `M * wq`; the host runs `V`'s path.
#[inline(always)]
unsafe fn split_row<V: F32Vec, const M: usize>(
    src: *const f32,
    w: usize,
    pl: usize,
    dst: *mut f32,
    wq: usize,
) {
    let l = V::LANES;
    // Vectors `i0` in `body` read `M` whole vectors of the source (`i0 M >= pl`,
    // `(i0 + l) M <= w + pl`) and write whole vectors: plain loads, no masks. Masked loads
    // and stores everywhere, with `M` a variable, took a stride-2 depthwise layer's split
    // about 3x its arithmetic.
    let last = ((w + pl) / M).checked_sub(l).zip(wq.checked_sub(l));
    let body = last.map(|(a, b)| pl.div_ceil(M)..=a.min(b));
    let mut i0 = 0;
    while i0 < wq {
        // SAFETY: as this function's contract; `split_vec`'s on `FULL` holds in `body`.
        unsafe {
            if body.as_ref().is_some_and(|r| r.contains(&i0)) {
                split_vec::<V, M, true>(src, w, pl, dst, wq, i0);
            } else {
                split_vec::<V, M, false>(src, w, pl, dst, wq, i0);
            }
        }
        i0 += l;
    }
}

/// [`split_row`] for `m` phases, 1, 2 or 4 (any other: 4).
///
/// # Safety
/// As [`split_row`] with `M = m`.
#[inline(always)]
unsafe fn split_row_m<V: F32Vec>(
    src: *const f32,
    w: usize,
    pl: usize,
    dst: *mut f32,
    wq: usize,
    m: usize,
) {
    // SAFETY: as this function's contract.
    unsafe {
        if m == 1 {
            split_row::<V, 1>(src, w, pl, dst, wq)
        } else if m == 2 {
            split_row::<V, 2>(src, w, pl, dst, wq)
        } else {
            split_row::<V, 4>(src, w, pl, dst, wq)
        }
    }
}

/// One vector `i0` of every phase of [`split_row`]. `FULL`: its `M` source vectors lie
/// inside `0..w` and `i0 + LANES <= wq`.
///
/// # Safety
/// As [`split_row`], and `FULL` as above.
#[inline(always)]
unsafe fn split_vec<V: F32Vec, const M: usize, const FULL: bool>(
    src: *const f32,
    w: usize,
    pl: usize,
    dst: *mut f32,
    wq: usize,
    i0: usize,
) {
    // No closures here: a closure is a function of its own, compiled without the caller's
    // target features, so the intrinsics in it would be calls.
    let l = V::LANES;
    let xp0 = i0 * M;
    let mut x = [V::splat(0.0); 4];
    for (k, xk) in x.iter_mut().enumerate().take(M) {
        // SAFETY: with `FULL`, source columns `xp0 + k l - pl ..+ l` lie inside `0..w`;
        // else `window` reads only those inside.
        *xk = unsafe {
            if FULL {
                V::load(src.add(xp0 + k * l - pl))
            } else {
                window::<V>(src, w, xp0 + k * l, pl)
            }
        };
    }
    let ph = if M == 1 {
        x
    } else if M == 2 {
        let [a, b] = V::deinterleave2([x[0], x[1]]);
        [a, b, a, b]
    } else {
        V::deinterleave4(x)
    };
    let cnt = l.min(wq - i0);
    for (q, v) in ph.into_iter().enumerate().take(M) {
        // SAFETY: phase `q`'s floats `i0 .. i0 + cnt <= wq`.
        unsafe {
            let d = dst.add(q * wq + i0);
            if FULL || cnt == l {
                v.store(d)
            } else {
                v.store_first(d, cnt)
            }
        }
    }
}

/// The `LANES` source values of padded columns `xp..`: source column `xp + lane - pl`, zero
/// outside `0..w`.
///
/// # Safety
/// `src` holds `w` floats; the host runs `V`'s path.
#[inline(always)]
unsafe fn window<V: F32Vec>(src: *const f32, w: usize, xp: usize, pl: usize) -> V {
    let l = V::LANES as isize;
    let s = xp as isize - pl as isize;
    let lo = (-s).clamp(0, l) as usize;
    let hi = (w as isize - s).clamp(0, l) as usize;
    // SAFETY: only lanes `lo..hi`, source columns inside `0..w`, are read.
    unsafe {
        if lo == 0 && hi == V::LANES {
            V::load(src.offset(s))
        } else if lo >= hi {
            V::splat(0.0)
        } else {
            V::load_lanes(src.wrapping_offset(s), lo, hi)
        }
    }
}

/// Orders the streaming stores ([`F32Vec::store_nt`]) made so far before any later store, so
/// that the thread that next synchronises with this one sees them.
#[inline(always)]
pub(crate) fn store_fence() {
    // SAFETY: SSE, part of x86-64.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        _mm_sfence()
    }
}

/// A vectorised split of `rows` rows ([`split_row`] on each): `(src, src_rs, dst, dst_rs,
/// rows, w, pl, wq, m)`, row `r` from `src + r src_rs` to `dst + r dst_rs`. One call for a
/// band of a channel instead of one a row: the rows of a 14x14 plane are one vector each, and
/// a call per row was a third of the padding's time.
pub(crate) type SplitRowsFn =
    unsafe fn(*const f32, usize, *mut f32, usize, usize, usize, usize, usize, usize);

/// The vectorised split of rows ([`SplitRowsFn`]) of the widest path this host runs, for `m`
/// phases (1, 2 or 4; one phase is a padded copy of the row), or `None` (another `m`, or a
/// host without AVX2).
pub(crate) fn split_rows_fn(m: usize) -> Option<SplitRowsFn> {
    #[cfg(target_arch = "x86_64")]
    {
        if m != 1 && m != 2 && m != 4 {
            return None;
        }
        match crate::wide::Isa::detect() {
            crate::wide::Isa::Avx512 => Some(split_rows_avx512 as SplitRowsFn),
            crate::wide::Isa::Avx2 => Some(split_rows_avx2 as SplitRowsFn),
            crate::wide::Isa::Sse => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = m;
        None
    }
}

/// [`SplitRowsFn`] in vectors `V`, for `m` phases.
///
/// # Safety
/// Each row as [`split_row`]: `src + r src_rs` holds `w` floats, `dst + r dst_rs` holds
/// `m wq`, for `r < rows`; the host runs `V`'s path.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn split_rows_m<V: F32Vec>(
    src: *const f32,
    src_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    (w, pl, wq, m): (usize, usize, usize, usize),
) {
    for r in 0..rows {
        // SAFETY: row `r` as this function's contract (the dispatch on `m` is the same branch
        // every row).
        unsafe { split_row_m::<V>(src.add(r * src_rs), w, pl, dst.add(r * dst_rs), wq, m) }
    }
}

/// [`SplitRowsFn`] on AVX2.
///
/// # Safety
/// As [`split_rows_m`]; the host runs AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn split_rows_avx2(
    src: *const f32,
    src_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    w: usize,
    pl: usize,
    wq: usize,
    m: usize,
) {
    // SAFETY: as this function's contract.
    unsafe { split_rows_m::<V8>(src, src_rs, dst, dst_rs, rows, (w, pl, wq, m)) }
}

/// [`SplitRowsFn`] on AVX-512.
///
/// # Safety
/// As [`split_rows_m`]; the host runs AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn split_rows_avx512(
    src: *const f32,
    src_rs: usize,
    dst: *mut f32,
    dst_rs: usize,
    rows: usize,
    w: usize,
    pl: usize,
    wq: usize,
    m: usize,
) {
    // SAFETY: as this function's contract.
    unsafe { split_rows_m::<V16>(src, src_rs, dst, dst_rs, rows, (w, pl, wq, m)) }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Runs `f` on lanes of `V` and checks `interleave2`/`interleave4` against the definition.
    fn check_interleave<V: F32Vec>() {
        let l = V::LANES;
        for m in [2usize, 4] {
            // y[j] lane t = column m t + j, valued by its column.
            let ys: Vec<Vec<f32>> = (0..m)
                .map(|j| (0..l).map(|t| (m * t + j) as f32).collect())
                .collect();
            let mut out = vec![0f32; m * l];
            // SAFETY: the test runs only where the path is supported (checked by the caller).
            unsafe {
                let load = |j: usize| V::load(ys[j].as_ptr());
                if m == 2 {
                    for (k, v) in V::interleave2([load(0), load(1)]).iter().enumerate() {
                        v.store(out.as_mut_ptr().add(k * l));
                    }
                } else {
                    let r = V::interleave4([load(0), load(1), load(2), load(3)]);
                    for (k, v) in r.iter().enumerate() {
                        v.store(out.as_mut_ptr().add(k * l));
                    }
                }
            }
            let want: Vec<f32> = (0..m * l).map(|x| x as f32).collect();
            assert_eq!(out, want, "interleave{m} on {l} lanes");
        }
    }

    /// The masked loads and stores touch exactly the first `n` lanes.
    fn check_first<V: F32Vec>() {
        let l = V::LANES;
        for n in 0..l {
            let src: Vec<f32> = (1..=l).map(|x| x as f32).collect();
            let mut dst = vec![-1f32; l];
            // SAFETY: as above; `n < l` floats are read and written.
            unsafe { V::load_first(src.as_ptr(), n).store_first(dst.as_mut_ptr(), n) };
            let want: Vec<f32> = (0..l).map(|i| if i < n { src[i] } else { -1.0 }).collect();
            assert_eq!(dst, want, "{n} of {l} lanes");
        }
    }

    /// `deinterleave` undoes `interleave`, and `load_lanes` reads exactly its lanes.
    fn check_deinterleave<V: F32Vec>() {
        let l = V::LANES;
        for m in [2usize, 4] {
            let cols: Vec<f32> = (0..m * l).map(|x| x as f32).collect();
            let mut out = vec![0f32; m * l];
            // SAFETY: the test runs only where the path is supported.
            unsafe {
                let x = |k: usize| V::load(cols.as_ptr().add(k * l));
                let ph: Vec<V> = if m == 2 {
                    V::deinterleave2([x(0), x(1)]).to_vec()
                } else {
                    V::deinterleave4([x(0), x(1), x(2), x(3)]).to_vec()
                };
                for (j, v) in ph.iter().enumerate() {
                    v.store(out.as_mut_ptr().add(j * l));
                }
            }
            let want: Vec<f32> = (0..m)
                .flat_map(|j| (0..l).map(move |t| (m * t + j) as f32))
                .collect();
            assert_eq!(out, want, "deinterleave{m} on {l} lanes");
        }
        for lo in 0..=l {
            for hi in lo..=l {
                let src: Vec<f32> = (1..=l).map(|x| x as f32).collect();
                let mut dst = vec![0f32; l];
                // SAFETY: lanes `lo..hi` of `src` are read.
                unsafe { V::load_lanes(src.as_ptr(), lo, hi).store(dst.as_mut_ptr()) };
                let want: Vec<f32> = (0..l)
                    .map(|i| if (lo..hi).contains(&i) { src[i] } else { 0.0 })
                    .collect();
                assert_eq!(dst, want, "lanes {lo}..{hi} of {l}");
            }
        }
    }

    /// The vectorised row split against its definition, for widths, paddings and phases.
    fn check_split<V: F32Vec>() {
        for m in [1usize, 2, 4] {
            for w in [1usize, 2, 5, 15, 16, 17, 33, 56, 70, 112, 131] {
                for pl in [0usize, 1, 2, 3] {
                    let wq = (w + pl + 2).div_ceil(m) + 1 + (w % 3);
                    let src: Vec<f32> = (0..w).map(|x| x as f32 + 1.0).collect();
                    let mut dst = vec![f32::NAN; m * wq];
                    // SAFETY: `src` holds `w`, `dst` `m wq` floats; the path is checked.
                    unsafe { split_row_m::<V>(src.as_ptr(), w, pl, dst.as_mut_ptr(), wq, m) };
                    for xp in 0..m * wq {
                        let want = xp
                            .checked_sub(pl)
                            .filter(|&x| x < w)
                            .map_or(0.0, |x| src[x]);
                        let got = dst[(xp % m) * wq + xp / m];
                        assert_eq!(got, want, "m {m} w {w} pl {pl} column {xp}");
                    }
                }
            }
        }
    }

    /// The split of several rows, strided in source and destination, row by row as
    /// [`split_row_m`], leaving the gaps between destination rows alone.
    fn check_split_rows<V: F32Vec>() {
        for m in [1usize, 2, 4] {
            for (w, pl, rows) in [(14usize, 1usize, 3usize), (56, 3, 2), (7, 0, 5), (33, 2, 1)] {
                let wq = (w + 2 * pl).div_ceil(m) + 1;
                let (src_rs, dst_rs) = (w + 5, m * wq + 3);
                let src: Vec<f32> = (0..rows * src_rs).map(|x| x as f32 + 1.0).collect();
                let mut got = vec![f32::NAN; rows * dst_rs];
                let mut want = got.clone();
                // SAFETY: `rows` rows of `w` source floats `src_rs` apart and of `m wq`
                // destination floats `dst_rs` apart; the path is checked.
                unsafe {
                    split_rows_m::<V>(
                        src.as_ptr(),
                        src_rs,
                        got.as_mut_ptr(),
                        dst_rs,
                        rows,
                        (w, pl, wq, m),
                    );
                    for r in 0..rows {
                        let (s, d) = (src.as_ptr().add(r * src_rs), want.as_mut_ptr());
                        split_row_m::<V>(s, w, pl, d.add(r * dst_rs), wq, m);
                    }
                }
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "m {m} w {w} pl {pl} rows {rows}: {got:?} against {want:?}"
                );
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn avx2() {
        check_interleave::<V8>();
        check_first::<V8>();
        check_deinterleave::<V8>();
        check_split::<V8>();
        check_split_rows::<V8>();
        // The 128-bit vector runs inside both wide paths (it needs AVX's masked moves).
        check_interleave::<V4>();
        check_first::<V4>();
        check_deinterleave::<V4>();
        check_split::<V4>();
    }

    #[target_feature(enable = "avx512f")]
    fn avx512() {
        check_interleave::<V16>();
        check_first::<V16>();
        check_deinterleave::<V16>();
        check_split::<V16>();
        check_split_rows::<V16>();
    }

    #[test]
    fn interleave_and_masks_on_every_path_the_host_runs() {
        if crate::wide::Isa::Avx2.supported() {
            // SAFETY: checked just above.
            unsafe { avx2() };
        }
        if crate::wide::Isa::Avx512.supported() {
            // SAFETY: checked just above.
            unsafe { avx512() };
        }
    }
}
