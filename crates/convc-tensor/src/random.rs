//! The deterministic generator behind `random(seed=N)` and omitted weights.
//!
//! Everything here is fixed: the same seed gives the same values on every machine and in every
//! version (tests pin the first values). To reproduce it elsewhere:
//!
//! **Generator** — SplitMix64 with 64-bit wrapping arithmetic, state starting at `seed`:
//!
//! ```text
//! next():  state = state + 0x9E3779B97F4A7C15
//!          z = state
//!          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//!          z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//!          return z ^ (z >> 31)
//! u = (next() >> 40) / 2^24            # an f64 in [0, 1), 24 random bits
//! ```
//!
//! **Values** — each value is computed in f64 from one `u` and then rounded to f32, in order:
//!
//! | function | distribution | value |
//! |---|---|---|
//! | [`he_uniform`]`(seed, n, fan_in)` | U(-b, b), b = sqrt(6 / fan_in) | `(2u - 1) * b` |
//! | [`bias_uniform`]`(seed, n, fan_in)` | U(-b, b), b = 1 / sqrt(fan_in) (PyTorch's bias default) | `(2u - 1) * b` |
//! | [`bn_mean`]`(seed, n)` | U(-0.1, 0.1) | `-0.1 + 0.2 * u` |
//! | [`bn_var`]`(seed, n)` | U(0.5, 1.5) | `0.5 + 1.0 * u` |
//! | [`bn_gamma`]`(seed, n)` | U(0.5, 1.5) | `0.5 + 1.0 * u` |
//! | [`bn_beta`]`(seed, n)` | U(-0.1, 0.1) | `-0.1 + 0.2 * u` |
//!
//! A `fan_in` of 0 is treated as 1. For a conv weight `[out, C/groups, KH, KW]` the values fill the
//! tensor in row-major order and `fan_in = C/groups * KH * KW`.
//!
//! **Seeds when none is given** — [`seed_from_name`] is FNV-1a 64 over the UTF-8 bytes
//! (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`; per byte: `h = (h ^ byte) * prime`).
//! Omitted `weights` of layer `L` use `seed_from_name(L)`; any other omitted parameter `P` of
//! layer `L` (a batchnorm's `mean`, `var`, `gamma`, `beta`) uses [`param_seed`]`(L, P)` =
//! `seed_from_name("L.P")`, e.g. `seed_from_name("bn1.var")`.
//!
//! In NumPy:
//!
//! ```text
//! M = (1 << 64) - 1
//! def splitmix64(seed, n):
//!     s, out = seed, []
//!     for _ in range(n):
//!         s = (s + 0x9E3779B97F4A7C15) & M
//!         z = s
//!         z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//!         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//!         out.append(z ^ (z >> 31))
//!     return out
//! def uniforms(seed, n):
//!     return np.array([(x >> 40) / 2.0**24 for x in splitmix64(seed, n)])
//! he = ((2 * uniforms(seed, n) - 1) * np.sqrt(6 / fan_in)).astype(np.float32)
//! ```

/// SplitMix64: the 64-bit generator described in the module documentation.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next uniform value in [0, 1): the top 24 bits of [`next_u64`](Self::next_u64) / 2^24.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 40) as f64 / (1u64 << 24) as f64
    }
}

/// `n` values `lo + (hi - lo) * u`, computed in f64 and rounded to f32.
fn uniform(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| (lo + (hi - lo) * g.next_unit()) as f32)
        .collect()
}

/// `n` values `(2u - 1) * b`, computed in f64 and rounded to f32.
fn symmetric(seed: u64, n: usize, b: f64) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((2.0 * g.next_unit() - 1.0) * b) as f32)
        .collect()
}

/// He-uniform weights: U(-b, b) with `b = sqrt(6 / fan_in)` (`fan_in` 0 counts as 1).
pub fn he_uniform(seed: u64, n: usize, fan_in: usize) -> Vec<f32> {
    symmetric(seed, n, (6.0 / fan_in.max(1) as f64).sqrt())
}

/// Bias values: U(-b, b) with `b = 1 / sqrt(fan_in)`, PyTorch's default (`fan_in` 0 counts as 1).
pub fn bias_uniform(seed: u64, n: usize, fan_in: usize) -> Vec<f32> {
    symmetric(seed, n, 1.0 / (fan_in.max(1) as f64).sqrt())
}

/// Batchnorm running means: U(-0.1, 0.1).
pub fn bn_mean(seed: u64, n: usize) -> Vec<f32> {
    uniform(seed, n, -0.1, 0.1)
}

/// Batchnorm running variances: U(0.5, 1.5).
pub fn bn_var(seed: u64, n: usize) -> Vec<f32> {
    uniform(seed, n, 0.5, 1.5)
}

/// Batchnorm scales (gamma): U(0.5, 1.5).
pub fn bn_gamma(seed: u64, n: usize) -> Vec<f32> {
    uniform(seed, n, 0.5, 1.5)
}

/// Batchnorm shifts (beta): U(-0.1, 0.1).
pub fn bn_beta(seed: u64, n: usize) -> Vec<f32> {
    uniform(seed, n, -0.1, 0.1)
}

/// PReLU slopes: U(0, 0.5).
pub fn prelu_slope(seed: u64, n: usize) -> Vec<f32> {
    uniform(seed, n, 0.0, 0.5)
}

/// FNV-1a 64 of the UTF-8 bytes of `name`: the seed of a layer whose `weights` are omitted.
pub fn seed_from_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The seed of an omitted parameter `param` (e.g. `"var"`) of layer `layer`:
/// `seed_from_name("{layer}.{param}")`.
pub fn param_seed(layer: &str, param: &str) -> u64 {
    seed_from_name(&format!("{layer}.{param}"))
}
