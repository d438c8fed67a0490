//! The error of a truncation measured on data: how far a conv's output moves when its weights
//! `W` are replaced by `W'`, on the activations that actually reach it.
//!
//! A conv is linear in its weights: for one output position with input patch `p` (the
//! `C/g x KH x KW` window of group `g`, zero where it falls on the padding), output channel `o`
//! of group `g` gives `w_o . p + b_o`. So over a set of positions
//!
//! ```text
//! ||Y' - Y||^2 = sum_o (w'_o - w_o)^T G_g (w'_o - w_o),   G_g = sum over positions of p p^T
//! ||Y||^2      = sum_o w_o^T G_g w_o + 2 b_o w_o^T s_g + N b_o^2,   s_g = sum of p
//! ```
//!
//! [`PatchStats`] holds `G_g`, `s_g` and `N` for one conv, gathered once from its input
//! activations (a stratified, seeded sample of at most [`PatchStats::position_cap`] output
//! positions when there are more); every candidate's error is then a few small matrix products
//! instead of a convolution. The relative data error is `||Y' - Y||_F / ||Y||_F`.

use convc_ir::Conv;

use crate::factor::Geom;

/// Second moments of the input patches of one conv (see the module docs).
#[derive(Clone, Debug)]
pub struct PatchStats {
    /// Patch length `C/g * KH * KW`.
    pub n: usize,
    /// `G_g`, one `n x n` matrix per group, column-major.
    grams: Vec<faer::Mat<f64>>,
    /// `s_g`, one per group.
    sums: Vec<Vec<f64>>,
    /// Positions sampled (over all images).
    pub positions: usize,
    /// Positions there were.
    pub total_positions: usize,
}

/// SplitMix64: a small, fixed pseudo-random sequence (the samples must not depend on the
/// platform or a crate's version).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl PatchStats {
    /// The most positions sampled for patches of length `n`: about 2^31 / n^2 (the work of
    /// `G_g`), at least 2,048 and at most 65,536.
    pub fn position_cap(n: usize) -> usize {
        let n2 = (n.max(1) as u64).saturating_mul(n.max(1) as u64);
        ((1u64 << 31) / n2).clamp(2048, 65536) as usize
    }

    /// Gathers the statistics of `conv` (geometry `geom`) on `batch` input images of shape
    /// `[C, H, W]` stored one after another in `x`. `None` when the shapes do not fit, or the
    /// patch is too long to hold its matrix (more than 4,096 values).
    pub fn gather(
        conv: &Conv,
        geom: &Geom,
        x: &[f32],
        batch: usize,
        shape: [usize; 3],
    ) -> Option<PatchStats> {
        let [c, h, w] = shape;
        let n = geom.cg() * geom.kh * geom.kw;
        if c != geom.c || n == 0 || n > 4096 || x.len() != batch.checked_mul(c * h * w)? {
            return None;
        }
        let pads = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let [sh, sw] = conv.stride;
        let [dh, dw] = conv.dilation;
        let span = |len: usize, before: usize, after: usize, k: usize, s: usize, d: usize| {
            (len + before + after)
                .checked_sub(d * (k - 1) + 1)
                .map(|v| v / s.max(1) + 1)
        };
        let oh = span(h, pads[0], pads[1], geom.kh, sh, dh)?;
        let ow = span(w, pads[2], pads[3], geom.kw, sw, dw)?;
        let total = batch * oh * ow;
        let cap = Self::position_cap(n);
        let positions: Vec<usize> = if total <= cap {
            (0..total).collect()
        } else {
            // Stratified: one position drawn at random from each of `cap` equal strata.
            (0..cap)
                .map(|i| {
                    let (a, b) = (i * total / cap, (i + 1) * total / cap);
                    a + (splitmix64(i as u64) as usize) % (b - a).max(1)
                })
                .collect()
        };
        let m = positions.len();
        let mut grams = Vec::with_capacity(geom.g);
        let mut sums = Vec::with_capacity(geom.g);
        for g in 0..geom.g {
            let p = faer::Mat::<f64>::from_fn(n, m, |row, col| {
                let pos = positions[col];
                let (img, rest) = (pos / (oh * ow), pos % (oh * ow));
                let (oy, ox) = (rest / ow, rest % ow);
                let (cl, i, j) = (
                    row / (geom.kh * geom.kw),
                    (row / geom.kw) % geom.kh,
                    row % geom.kw,
                );
                let iy = (oy * sh + i * dh).checked_sub(pads[0]).filter(|&v| v < h);
                let ix = (ox * sw + j * dw).checked_sub(pads[2]).filter(|&v| v < w);
                match (iy, ix) {
                    (Some(iy), Some(ix)) => {
                        let ch = g * geom.cg() + cl;
                        x[((img * c + ch) * h + iy) * w + ix] as f64
                    }
                    _ => 0.0,
                }
            });
            sums.push((0..n).map(|r| (0..m).map(|k| p[(r, k)]).sum()).collect());
            grams.push(&p * p.transpose());
        }
        Some(PatchStats {
            n,
            grams,
            sums,
            positions: m,
            total_positions: total,
        })
    }

    /// `sum_o d_o^T G_g d_o` for per-output-channel weight vectors `d` (`[O, n]` row-major).
    fn quadratic(&self, geom: &Geom, d: impl Fn(usize, usize) -> f64) -> f64 {
        let og = geom.og();
        let mut acc = 0.0;
        for (g, gram) in self.grams.iter().enumerate() {
            let dm = faer::Mat::<f64>::from_fn(og, self.n, |o, k| d(g * og + o, k));
            let e = &dm * gram;
            for o in 0..og {
                for k in 0..self.n {
                    acc += e[(o, k)] * dm[(o, k)];
                }
            }
        }
        acc
    }

    /// `||Y||_F^2` of the conv's output over the sampled positions (bias included).
    pub fn output_energy(&self, geom: &Geom, weights: &[f32], bias: Option<&[f32]>) -> f64 {
        let n = self.n;
        let mut e = self.quadratic(geom, |o, k| weights[o * n + k] as f64);
        if let Some(b) = bias {
            let og = geom.og();
            for (o, &bo) in b.iter().enumerate() {
                let s = &self.sums[o / og.max(1)];
                let ws: f64 = (0..n).map(|k| weights[o * n + k] as f64 * s[k]).sum();
                e += 2.0 * bo as f64 * ws + self.positions as f64 * (bo as f64) * (bo as f64);
            }
        }
        e.max(0.0)
    }

    /// `||Y' - Y||_F` over the sampled positions for weights `new` (f64, the layout of the
    /// conv's weights) against `weights`, divided by `sqrt(energy)` (0 when both are 0).
    pub fn relative_error(&self, geom: &Geom, weights: &[f32], new: &[f64], energy: f64) -> f64 {
        let n = self.n;
        let diff = self
            .quadratic(geom, |o, k| new[o * n + k] - weights[o * n + k] as f64)
            .max(0.0);
        if diff == 0.0 {
            0.0
        } else if energy <= 0.0 {
            f64::INFINITY
        } else {
            (diff / energy).sqrt()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convc_ir::{Pad, Param, Source};
    use convc_tensor::Tensor;

    fn conv(c: usize, o: usize, k: usize, stride: usize, weights: Vec<f32>) -> Conv {
        Conv {
            out: o,
            kernel: [k, k],
            stride: [stride, stride],
            dilation: [1, 1],
            pad: Pad::Same,
            groups: 1,
            weight: Param::new(
                Tensor::new(vec![o, c, k, k], weights).unwrap(),
                Source::Literal,
            ),
            bias: None,
        }
    }

    /// The error from the statistics equals the error of running both convolutions.
    #[test]
    fn matches_direct_convolution() {
        let (c, o, k, h, w) = (2, 3, 3, 5, 6);
        let wts: Vec<f32> = (0..o * c * k * k)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let new: Vec<f32> = wts
            .iter()
            .enumerate()
            .map(|(i, &v)| v + if i % 4 == 0 { 0.1 } else { 0.0 })
            .collect();
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 13 % 17) as f32) / 17.0)
            .collect();
        for stride in [1, 2] {
            let a = conv(c, o, k, stride, wts.clone());
            let b = conv(c, o, k, stride, new.clone());
            let geom = Geom::of(&a, c).unwrap();
            let st = PatchStats::gather(&a, &geom, &x, 1, [c, h, w]).unwrap();
            let ya = convc_interp::conv2d(&x, [c, h, w], &a).unwrap().0;
            let yb = convc_interp::conv2d(&x, [c, h, w], &b).unwrap().0;
            let num: f64 = ya
                .iter()
                .zip(&yb)
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum();
            let den: f64 = ya.iter().map(|p| (*p as f64).powi(2)).sum();
            let energy = st.output_energy(&geom, &wts, None);
            let newd: Vec<f64> = new.iter().map(|&v| v as f64).collect();
            let err = st.relative_error(&geom, &wts, &newd, energy);
            assert!((energy - den).abs() < 1e-6 * den, "{energy} {den}");
            assert!((err - (num / den).sqrt()).abs() < 1e-6, "{err}");
        }
    }

    #[test]
    fn samples_are_capped_and_deterministic() {
        assert_eq!(PatchStats::position_cap(1), 65536);
        assert_eq!(PatchStats::position_cap(4096), 2048);
        assert_ne!(splitmix64(1), splitmix64(2));
        assert_eq!(splitmix64(7), splitmix64(7));
    }
}
