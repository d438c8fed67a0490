//! The built-in image filters of the contract (§5), as `KH * KW` values in row-major order,
//! applied as cross-correlation like every conv.

use crate::DataError;

/// A `kh x kw` Gaussian: `w[i,j] = exp(-((i-ci)^2 + (j-cj)^2) / (2 sigma^2))` with the centre
/// `ci = (kh-1)/2`, `cj = (kw-1)/2` (a half-integer for even sizes), computed in f64,
/// normalised to sum 1, then rounded to f32. `sigma` must be finite and greater than 0, and both
/// sizes at least 1.
pub fn gaussian(kh: usize, kw: usize, sigma: f64) -> Result<Vec<f32>, DataError> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(DataError::new(format!(
            "gaussian sigma must be a finite number greater than 0, found {sigma}"
        )));
    }
    if kh == 0 || kw == 0 {
        return Err(DataError::new(format!(
            "gaussian kernel size must be at least 1x1, found {kh}x{kw}"
        )));
    }
    let ci = (kh as f64 - 1.0) / 2.0;
    let cj = (kw as f64 - 1.0) / 2.0;
    let two_s2 = 2.0 * sigma * sigma;
    let mut w = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            let di = i as f64 - ci;
            let dj = j as f64 - cj;
            w.push((-(di * di + dj * dj) / two_s2).exp());
        }
    }
    let sum: f64 = w.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        // Only possible when every weight underflows to 0 (a tiny sigma on an even size).
        return Err(DataError::new(format!(
            "gaussian sigma {sigma} is too small for a {kh}x{kw} kernel: every weight is 0"
        )));
    }
    Ok(w.into_iter().map(|v| (v / sum) as f32).collect())
}

/// A `kh x kw` box filter: every value `1 / (kh * kw)`.
pub fn box_filter(kh: usize, kw: usize) -> Vec<f32> {
    let n = kh.saturating_mul(kw);
    vec![1.0 / n as f32; n]
}

/// Sobel, horizontal gradient: `[[-1,0,1],[-2,0,2],[-1,0,1]]`.
pub fn sobel_x() -> Vec<f32> {
    vec![-1., 0., 1., -2., 0., 2., -1., 0., 1.]
}

/// Sobel, vertical gradient: `[[-1,-2,-1],[0,0,0],[1,2,1]]`.
pub fn sobel_y() -> Vec<f32> {
    vec![-1., -2., -1., 0., 0., 0., 1., 2., 1.]
}

/// The 4-neighbour Laplacian: `[[0,1,0],[1,-4,1],[0,1,0]]`.
pub fn laplacian() -> Vec<f32> {
    vec![0., 1., 0., 1., -4., 1., 0., 1., 0.]
}
