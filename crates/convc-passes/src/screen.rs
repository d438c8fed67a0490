//! A cheap proof that a decomposed form cannot pay, so that `decompose` factors fully only the
//! forms where a rewrite may.
//!
//! `decompose` rewrites a conv into a form at rank `r` only if the form's cost at `r` is below
//! the standard conv's and its relative error `sqrt(tail[r]) / ||W||_F` is within the tolerance
//! (see [`crate::decompose`]). The cost grows with `r` and the error falls, so with `k` the
//! largest rank whose cost is below the standard's (the break-even rank, [`break_even_rank`]), no
//! rewrite in the form is possible as soon as `tail[k] > tol^2 ||W||_F^2`.
//!
//! # The bound
//!
//! `tail[k]` sums, over the form's matrices `A` (see [`crate::factor`]), the squares of their
//! singular values from index `k` on. For one matrix `A` with `p = min(rows, cols)`:
//!
//! - Keep `d` lines of its short side (`k < d <= p`; rows if `A` is wide, columns if tall) and
//!   all of its long side: a matrix `B` with `d` lines. Deleting lines only lowers singular
//!   values (interlacing: `s_m(B) <= s_m(A)`), so `tail_A[k] >= tail_B[k] >= (d - k) s_min(B)^2`.
//! - With `B^T = Q R` (or `B = Q R`, `R` is `d x d`), `s_min(B) = s_min(R) >= 1 / ||R^{-1}||_F`.
//!
//! `d = k + 1` for large matrices (the QR costs `2 long d^2`, a fraction of the SVD's), all of
//! the short side for small ones (the bound is then the smallest singular value itself).
//! The lines kept are those of largest norm (any choice is valid; these give the strongest
//! bound on weights with dead channels).
//!
//! # Rounding
//!
//! The bound is computed in f64 and shrunk for rounding before it is used: by
//! `8 d u κ` relative (`u` the unit roundoff, `κ = ||R||_F ||R^{-1}||_F`, for the triangular
//! inverse) and by `8 (long + d) u ||B||_F` absolute (the QR's backward error). The form is
//! ruled out only if `sqrt(bound) > tol ||W||_F + slack`, where `slack = sqrt(n) 8 (rows + cols)
//! u ||W||_F` covers the error of the singular values the full path would compute for the `n`
//! values it sums: so the full path, too, finds every rank up to `k` above the tolerance.

use convc_ir::Conv;

use crate::decompose::{form_cost, standard_cost};
use crate::factor::{Form, Geom, layers};

/// Matrices with at most this many lines on their short side are bounded through all of them.
const SMALL: usize = 16;

/// The largest rank at which `form` costs less than the standard conv by the cost model (0 if
/// none does), capped at the form's [`Geom::max_rank`].
pub fn break_even_rank(form: Form, geom: &Geom, conv: &Conv, in_ch: usize, ratio: f64) -> usize {
    let standard = standard_cost(geom);
    let cost = |r: usize| form_cost(form, &layers(form, r, conv, in_ch), ratio);
    // The cost is affine in `r`: bisect for the last rank below the standard's.
    let (mut lo, mut hi) = (0usize, geom.max_rank(form) + 1);
    while hi > lo + 1 {
        let mid = lo + (hi - lo) / 2;
        if cost(mid) < standard {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A lower bound on `tail[k]` of `form` (the squared singular values from index `k` on, summed
/// over the form's matrices) of `weights` (`[O, C/g, KH, KW]`), shrunk for rounding (see the
/// module docs). It stops early once the bound passes `enough`. 0 when nothing can be proved
/// (`k` at or beyond the largest rank, or weights that do not fit the geometry).
pub fn tail_lower_bound(form: Form, geom: &Geom, weights: &[f32], k: usize, enough: f64) -> f64 {
    let (count, rows, cols) = geom.matrices(form);
    let p = rows.min(cols);
    if k >= p || weights.len() != geom.o * geom.cg() * geom.kh * geom.kw {
        return 0.0;
    }
    let d = if p <= SMALL { p } else { k + 1 };
    let mut bound = 0.0;
    for t in 0..count {
        let at = |r: usize, c: usize| weights[geom.index(form, t, r, c)] as f64;
        let s = if rows <= cols {
            smallest_singular_lower(cols, rows, d, |long, short| at(short, long))
        } else {
            smallest_singular_lower(rows, cols, d, at)
        };
        bound += (d - k) as f64 * s * s;
        if bound > enough {
            break;
        }
    }
    bound
}

/// A lower bound on the smallest singular value of the `long x d` matrix made of the `d`
/// columns of largest norm of the `long x short` matrix `at(i, j)`, shrunk for rounding.
fn smallest_singular_lower(
    long: usize,
    short: usize,
    d: usize,
    at: impl Fn(usize, usize) -> f64,
) -> f64 {
    let u = f64::EPSILON / 2.0;
    let mut norms: Vec<(f64, usize)> = (0..short)
        .map(|j| ((0..long).map(|i| at(i, j).powi(2)).sum::<f64>(), j))
        .collect();
    norms.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let keep: Vec<usize> = norms.iter().take(d).map(|&(_, j)| j).collect();
    let b_norm = norms.iter().take(d).map(|x| x.0).sum::<f64>().sqrt();
    if keep.len() < d || b_norm == 0.0 || !b_norm.is_finite() {
        return 0.0;
    }
    let b = faer::Mat::<f64>::from_fn(long, d, |i, j| at(i, keep[j]));
    let qr = b.qr();
    let r = qr.thin_R();
    let mut inv = faer::Mat::<f64>::zeros(d, d);
    faer::linalg::triangular_inverse::invert_upper_triangular(inv.as_mut(), r, faer::Par::Seq);
    let inv_norm = inv.norm_l2();
    let r_norm = r.norm_l2();
    if !(inv_norm.is_finite() && r_norm.is_finite()) || inv_norm == 0.0 {
        return 0.0;
    }
    let rel = 8.0 * d as f64 * u * r_norm * inv_norm;
    if rel >= 0.5 {
        return 0.0;
    }
    let s = (1.0 - rel) / inv_norm - 8.0 * (long + d) as f64 * u * b_norm;
    s.max(0.0)
}

/// True when `form` provably has no rewrite within `tol` cheaper than the standard conv (see the
/// module docs): `k` is its [`break_even_rank`], `norm` is `||W||_F`.
pub fn rules_out(form: Form, geom: &Geom, weights: &[f32], k: usize, tol: f64, norm: f64) -> bool {
    if k == 0 {
        return true;
    }
    let (count, rows, cols) = geom.matrices(form);
    let p = rows.min(cols);
    if k >= p || !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    let threshold = needed(count * (p - k), rows + cols, tol, norm);
    let bound = tail_lower_bound(form, geom, weights, k, threshold * threshold);
    bound.sqrt() > threshold
}

/// The square root of the tail that proves a form out: `tol ||W||_F` plus the slack for the
/// rounding of the `n` singular values the full path sums (see the module docs).
fn needed(n: usize, dims: usize, tol: f64, norm: f64) -> f64 {
    let u = f64::EPSILON / 2.0;
    tol * norm + (n as f64).sqrt() * 8.0 * dims as f64 * u * norm
}

#[cfg(test)]
mod tests {
    use convc_ir::{Pad, Param, Source};
    use convc_tensor::Tensor;
    use convc_tensor::random::SplitMix64;

    use super::*;
    use crate::decompose::choose;
    use crate::factor::Factorization;

    /// `(C, O, groups, KH, KW)`: plain, grouped, depthwise, already asymmetric, and one whose
    /// asymmetric matrix (48 x 60) is bounded through `k + 1` lines rather than all of them.
    const SHAPES: [(usize, usize, usize, usize, usize); 10] = [
        (3, 4, 1, 3, 3),
        (4, 4, 1, 3, 3),
        (8, 6, 1, 3, 3),
        (6, 6, 2, 3, 3),
        (2, 5, 1, 5, 5),
        (5, 3, 1, 1, 3),
        (5, 3, 1, 3, 1),
        (6, 6, 6, 3, 3),
        (4, 8, 4, 3, 3),
        (16, 20, 1, 3, 3),
    ];

    const TOLERANCES: [f64; 9] = [0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.5];

    fn conv(c: usize, o: usize, g: usize, kh: usize, kw: usize, w: Vec<f32>) -> Conv {
        let t = Tensor::new(vec![o, c / g, kh, kw], w).expect("weights fit");
        Conv {
            out: o,
            kernel: [kh, kw],
            stride: [1, 1],
            dilation: [1, 1],
            pad: Pad::Same,
            groups: g,
            weight: Param::new(
                t,
                Source::Random {
                    seed: 0,
                    implicit: true,
                },
            ),
            bias: None,
        }
    }

    /// Weights whose matrices in `form` are all of rank `rank` (products of random factors),
    /// plus uniform noise of size `noise`.
    fn low_rank(
        geom: &Geom,
        form: Form,
        rank: usize,
        noise: f64,
        rng: &mut SplitMix64,
    ) -> Vec<f32> {
        let (count, rows, cols) = geom.matrices(form);
        let mut w = vec![0f32; geom.o * geom.cg() * geom.kh * geom.kw];
        let mut sym = || 2.0 * rng.next_unit() - 1.0;
        for t in 0..count {
            let u: Vec<f64> = (0..rows * rank).map(|_| sym()).collect();
            let v: Vec<f64> = (0..cols * rank).map(|_| sym()).collect();
            for r in 0..rows {
                for c in 0..cols {
                    let x: f64 = (0..rank).map(|m| u[r * rank + m] * v[c * rank + m]).sum();
                    w[geom.index(form, t, r, c)] = (x + noise * sym()) as f32;
                }
            }
        }
        w
    }

    /// The decision of the full path (every form factored) and of the screened one.
    fn decisions(
        cv: &Conv,
        geom: Geom,
        tol: f64,
    ) -> (Option<(Form, usize)>, Option<(Form, usize)>) {
        let w = cv.weight.data.data();
        let all: Vec<Factorization> = geom
            .candidates()
            .into_iter()
            .filter_map(|f| Factorization::new(f, geom, w))
            .collect();
        let full = choose(&all, cv, geom.c, 1.0, tol).map(|p| (p.form, p.rank));
        let mut notes = Vec::new();
        let facts = crate::decompose::factor_forms("l", cv, geom, geom.c, 1.0, tol, &mut notes);
        let fast = choose(&facts, cv, geom.c, 1.0, tol).map(|p| (p.form, p.rank));
        (full, fast)
    }

    #[test]
    fn the_screen_never_changes_a_decision_and_proves_full_rank_forms_out() {
        let mut rng = SplitMix64::new(15);
        let (mut cases, mut proved) = (0, 0);
        for &(c, o, g, kh, kw) in &SHAPES {
            let geom = Geom { c, o, g, kh, kw };
            for form in geom.candidates() {
                let probe = conv(c, o, g, kh, kw, vec![0.0; o * (c / g) * kh * kw]);
                let k = break_even_rank(form, &geom, &probe, c, 1.0);
                let p = geom.max_rank(form);
                let mut ranks = vec![k.saturating_sub(1), k, k + 1, p];
                ranks.retain(|&r| r >= 1 && r <= p);
                for &rank in &ranks {
                    for noise in [0.0, 1e-3, 0.05] {
                        let w = low_rank(&geom, form, rank, noise, &mut rng);
                        let cv = conv(c, o, g, kh, kw, w.clone());
                        let fact = Factorization::new(form, geom, &w).expect("factors");
                        for tol in TOLERANCES {
                            let tol = tol.max(crate::EXACT_TOLERANCE);
                            let out = rules_out(form, &geom, &w, k, tol, fact.norm);
                            let possible = k >= 1 && fact.rank_for(tol) <= k;
                            assert!(
                                !(out && possible),
                                "{form} of {geom:?} rank {rank} noise {noise} tol {tol}: ruled out, yet rank {} <= break-even {k} is within it",
                                fact.rank_for(tol)
                            );
                            let (full, fast) = decisions(&cv, geom, tol);
                            assert_eq!(
                                full, fast,
                                "{form} of {geom:?} rank {rank} noise {noise} tol {tol}"
                            );
                            cases += 1;
                            proved += usize::from(out && rank > k && k >= 1);
                        }
                    }
                }
            }
        }
        assert!(cases > 500, "{cases} cases");
        // Weights of rank above break-even are proved out at small tolerances in most shapes.
        assert!(proved > 100, "only {proved} proofs");
    }

    #[test]
    fn full_rank_weights_of_a_wide_conv_are_proved_out_through_a_subset() {
        let mut rng = SplitMix64::new(3);
        let geom = Geom {
            c: 16,
            o: 20,
            g: 1,
            kh: 3,
            kw: 3,
        };
        let w: Vec<f32> = (0..20 * 16 * 9)
            .map(|_| (2.0 * rng.next_unit() - 1.0) as f32)
            .collect();
        let cv = conv(16, 20, 1, 3, 3, w.clone());
        let k = break_even_rank(Form::Asymmetric, &geom, &cv, 16, 1.0);
        // 48 x 60: k + 1 of the 48 rows are kept.
        assert!(k > SMALL && k < 48, "k = {k}");
        let norm = crate::factor::frobenius(&w);
        let bound = tail_lower_bound(Form::Asymmetric, &geom, &w, k, f64::INFINITY);
        let fact = Factorization::new(Form::Asymmetric, geom, &w).expect("factors");
        let tail = (fact.error(k) * norm).powi(2);
        assert!(bound > 0.0 && bound <= tail, "bound {bound}, tail {tail}");
        assert!(rules_out(Form::Asymmetric, &geom, &w, k, 1e-6, norm));
        // A tolerance above the true error is never ruled out.
        assert!(!rules_out(
            Form::Asymmetric,
            &geom,
            &w,
            k,
            fact.error(k) * 1.01,
            norm
        ));
        // Nothing to prove at or beyond the largest rank, everything below rank 1.
        assert!(!rules_out(Form::Asymmetric, &geom, &w, 48, 1e-6, norm));
        assert!(rules_out(Form::Asymmetric, &geom, &w, 0, 0.5, norm));
    }

    #[test]
    fn break_even_is_the_last_rank_cheaper_than_the_conv() {
        let geom = Geom {
            c: 4,
            o: 4,
            g: 1,
            kh: 3,
            kw: 3,
        };
        let cv = conv(4, 4, 1, 3, 3, vec![0.0; 144]);
        for form in geom.candidates() {
            let k = break_even_rank(form, &geom, &cv, 4, 1.0);
            let cost = |r| form_cost(form, &layers(form, r, &cv, 4), 1.0);
            assert!(k == 0 || cost(k) < standard_cost(&geom), "{form}");
            assert!(
                k == geom.max_rank(form) || cost(k + 1) >= standard_cost(&geom),
                "{form}"
            );
        }
        // Asymmetric: r (3C + 2) + 3 O r < 9 O C, i.e. 26 r < 144: r <= 5.
        assert_eq!(break_even_rank(Form::Asymmetric, &geom, &cv, 4, 1.0), 5);
    }
}
