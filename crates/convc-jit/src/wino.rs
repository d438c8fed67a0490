//! Winograd convolution of 3x3, stride-1, dilation-1, one-group layers (Lavin & Gray 2016):
//! F(2x2,3x3) and F(4x4,3x3). An output tile of `m x m` values is computed from an input tile
//! of `n x n` (`n = m + 2`) as `Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, so the `9 m²` multiplications of
//! a tile and channel pair become `n²`: 2.25x fewer for F(2x2), 4x for F(4x4).
//!
//! The step is plain Rust called from a generated kernel (as `rstep.rs`), in three phases per
//! work item (a band of tile rows and a group of output channels):
//! 1. the input transform, vectorised across the tiles of a row: the input arrives zero-padded
//!    with its rows split into `m` phases (`plan::PadCopy` with `sw = m`), so the value `l` of
//!    every tile of a row is one contiguous load (phase `l % m`, `l / m` tiles on);
//! 2. `n²` GEMMs `M[ξ] = U[ξ] V[ξ]` (output channels x input channels x tiles), each run by the
//!    wide path's row microkernel (`crate::wide`) with the input channels as its taps;
//! 3. the output transform, whose rows are put back in column order by shuffles
//!    (`F32Vec::interleave4`), with the conv's epilogue (bias, batchnorm, activation, residual
//!    add) applied on the way to the output.
//!
//! The transforms are written once, generic over the path's vector (`crate::lanes`).
//!
//! The weights `U = G g Gᵀ` are transformed once, at compile time, in f64.

use crate::lanes::F32Vec;
#[cfg(target_arch = "x86_64")]
use crate::lanes::{V4, V8};
use crate::spec::{Act, Ep, SLOT_IN, SLOT_OUT, SLOT_W};
use crate::wide::{self, EpStep, Isa};

/// A Winograd variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Variant {
    /// F(2x2,3x3): 4x4 input tiles, 16 products for 36 multiplications.
    F2,
    /// F(4x4,3x3): 6x6 input tiles, 36 products for 144 multiplications.
    F4,
    /// F(m, r) down the columns of an `r x 1` kernel: tiles of `m` outputs of one column from
    /// `n = m + r - 1` input rows, `n` products for `m r` multiplications ([`col_matrices`]).
    Col { m: usize, r: usize },
    /// F(m, r) along the rows of a `1 x r` kernel (`m` 2 or 4): tiles of `m` outputs of one
    /// row from `n = m + r - 1` input columns, the same matrices.
    Row { m: usize, r: usize },
}

impl Variant {
    /// Output tile side `m` (rows of a tile in `Col`).
    pub fn m(self) -> usize {
        match self {
            Variant::F2 => 2,
            Variant::F4 => 4,
            Variant::Col { m, .. } | Variant::Row { m, .. } => m,
        }
    }
    /// Input tile side `n = m + r - 1`.
    pub fn n(self) -> usize {
        match self {
            Variant::Col { m, r } | Variant::Row { m, r } => m + r - 1,
            _ => self.m() + 2,
        }
    }
    /// Products per tile and channel pair (the GEMMs of a band): `n²`, or `n` down columns.
    pub fn products(self) -> usize {
        match self {
            Variant::Col { .. } | Variant::Row { .. } => self.n(),
            _ => self.n() * self.n(),
        }
    }
    /// The kernel's length `r` of a one-dimensional variant, 0 for the 3x3 ones.
    pub fn line_r(self) -> usize {
        match self {
            Variant::Col { r, .. } | Variant::Row { r, .. } => r,
            _ => 0,
        }
    }
    /// The parameter table's code of the variant's shape ([`Sizes::kind`]).
    fn kind(self) -> i64 {
        match self {
            Variant::F2 | Variant::F4 => 0,
            Variant::Col { .. } => 1,
            Variant::Row { .. } => 2,
        }
    }
    /// The name used in plans.
    pub fn name(self) -> String {
        match self {
            Variant::F2 => "F(2x2,3x3)".into(),
            Variant::F4 => "F(4x4,3x3)".into(),
            Variant::Col { m, r } => format!("F({m},{r}) down columns"),
            Variant::Row { m, r } => format!("F({m},{r}) along rows"),
        }
    }
    /// The variant's part of kernel names: `2`, `4`, `2c7`.
    pub fn tag(self) -> String {
        match self {
            Variant::Col { m, r } => format!("{m}c{r}"),
            Variant::Row { m, r } => format!("{m}r{r}"),
            _ => self.m().to_string(),
        }
    }
}

/// The finite interpolation points of the `Col` variants, in the order they are taken (the
/// last point is always ∞): the usual small ones, whose powers stay exact in f32.
const COL_POINTS: [f64; 9] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0];

/// The most input rows of a `Col` tile ([`COL_POINTS`] and ∞).
pub(crate) const COL_MAX_N: usize = COL_POINTS.len() + 1;

/// The matrices of F(m, r) down columns (Toom-Cook with points [`COL_POINTS`] and ∞), in f64:
/// `Bᵀ` (`n x n`, row-major), `Aᵀ` (`m x n`) and `G` (`n x r`), such that the correlation
/// `y_i = Σ_k g_k d_(i+k)` of `n` inputs is `Aᵀ [(G g) ⊙ (Bᵀ d)]`. With `V` the Vandermonde
/// matrix of the points (row `j`: the powers of point `j`; the ∞ row picks the leading
/// coefficient), a linear convolution of `g` with `h` is `V⁻¹ [(G g) ⊙ (H h)]` (`G`, `H` the
/// evaluations at the points); correlation is its transpose, so `Aᵀ = Hᵀ` and `Bᵀ = V⁻ᵀ`.
/// `None` where `n` exceeds [`COL_MAX_N`].
pub(crate) fn col_matrices(m: usize, r: usize) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let n = m + r - 1;
    if m == 0 || r == 0 || n > COL_MAX_N || n < 2 {
        return None;
    }
    let pow = |j: usize, e: usize| -> f64 {
        if j + 1 == n {
            f64::from(u8::from(e + 1 == n))
        } else {
            COL_POINTS[j].powi(e as i32)
        }
    };
    let vand: Vec<f64> = (0..n * n).map(|i| pow(i / n, i % n)).collect();
    let inv = invert(&vand, n)?;
    let bt = (0..n * n).map(|i| inv[(i % n) * n + i / n]).collect();
    let at = (0..m * n)
        .map(|i| {
            let (row, j) = (i / n, i % n);
            if j + 1 == n {
                f64::from(u8::from(row + 1 == m))
            } else {
                COL_POINTS[j].powi(row as i32)
            }
        })
        .collect();
    let g = (0..n * r)
        .map(|i| {
            let (j, k) = (i / r, i % r);
            if j + 1 == n {
                f64::from(u8::from(k + 1 == r))
            } else {
                COL_POINTS[j].powi(k as i32)
            }
        })
        .collect();
    Some((bt, at, g))
}

/// The inverse of the `n x n` row-major matrix `a` by Gauss-Jordan elimination with partial
/// pivoting, or `None` if it is singular.
fn invert(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut a = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n)
        .map(|i| f64::from(u8::from(i / n == i % n)))
        .collect();
    for col in 0..n {
        let piv =
            (col..n).max_by(|&x, &y| a[x * n + col].abs().total_cmp(&a[y * n + col].abs()))?;
        if a[piv * n + col].abs() < 1e-12 {
            return None;
        }
        for k in 0..n {
            a.swap(col * n + k, piv * n + k);
            inv.swap(col * n + k, piv * n + k);
        }
        let d = a[col * n + col];
        for k in 0..n {
            a[col * n + k] /= d;
            inv[col * n + k] /= d;
        }
        for row in (0..n).filter(|&row| row != col) {
            let f = a[row * n + col];
            if f != 0.0 {
                for k in 0..n {
                    a[row * n + k] -= f * a[col * n + k];
                    inv[row * n + k] -= f * inv[col * n + k];
                }
            }
        }
    }
    Some(inv)
}

/// `G` of F(2x2,3x3) and F(4x4,3x3) (points 0, ±1, ±2 and ∞ for the latter).
fn g_matrix(v: Variant) -> Vec<[f64; 3]> {
    match v {
        Variant::F2 => vec![
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ],
        Variant::F4 | Variant::Col { .. } | Variant::Row { .. } => vec![
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ],
    }
}

/// Floats between two of the `n²` planes of the transformed input `V` or of the products `M`
/// that hold `floats` each: whole cache lines, at least one spare (the transforms' last vector
/// of a band spills into it, [`WinoSpec::txp`]), and an odd number of them. A transform touches
/// all `n²` planes at the same offset; with an odd stride in lines, 64 planes in a row fall in
/// 64 different L1 sets (and never 4 KiB apart, where stores 4K-alias with loads). At strides
/// of a multiple of 4 KiB every access of the 36 planes falls in one 12-way set: the
/// transforms ran several times slower (F(4x4) on 64 channels of 64 tiles is a 16 KiB plane).
/// One spare line alone can still land there: 12 channels of 84 tiles (1008 floats) plus one
/// line is 4 KiB exactly.
fn skewed(floats: usize) -> usize {
    let lines = floats.div_ceil(16) + 1;
    (lines | 1) * 16
}

/// Floats between two channels' rows of `V` and `M` for `cols` GEMM columns: whole cache
/// lines, so that the transforms' and the microkernel's vectors do not straddle two where a
/// row starts (GEMMs of 28 or 70 columns put 3 channels in 4 across lines). One process,
/// alternating, against rows `cols` apart: a 128 -> 128 layer at 112x112 (28 columns) 0.95-0.97x
/// the time, resnet_block 0.97x, vgg_head 0.97x; 112 columns (already whole lines) the same.
pub(crate) fn col_stride(cols: usize) -> usize {
    cols.next_multiple_of(16)
}

/// The unpadded input's plane and its padding, for a step that pads its band rows itself
/// ([`WinoSpec::band_pad`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BandPad {
    pub h: usize,
    pub w: usize,
    pub pt: usize,
    pub pl: usize,
}

/// A Winograd step: sizes, the schedule (tile rows per item, output channels per group) and
/// the epilogue.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WinoSpec {
    pub variant: Variant,
    pub isa: Isa,
    /// Input and output channels.
    pub c: usize,
    pub oc: usize,
    /// Output plane.
    pub oh: usize,
    pub ow: usize,
    /// Tiles down and across the plane; `txp`: tiles a row, rounded up to whole vectors of
    /// the transforms (`tl` floats). The GEMMs' columns are a band's tiles without that
    /// padding (rows `tiles_x` apart): the transforms' last vector of a row spills into the
    /// next row's first columns, which the next row's vectors then write (or, after the last
    /// row, into the channel's spare columns ([`col_stride`]), the next channel's first ones,
    /// or the planes' spare line, [`skewed`]).
    pub tiles_y: usize,
    pub tiles_x: usize,
    pub txp: usize,
    /// Floats a vector of the transforms: the path's, or fewer (8, 4) on planes only a few
    /// tiles wide, whose rows would otherwise be mostly padding (a 14x14 plane is 4 tiles a
    /// row in F(4x4,3x3): 16-float vectors would do 4x the transforms' work). The GEMMs run
    /// on the path's microkernels either way.
    pub tl: usize,
    /// Tile rows per work item.
    pub rows: usize,
    /// Output channels per group (a multiple of `ocb`, but the last group), and per block of
    /// the microkernel.
    pub group: usize,
    pub ocb: usize,
    /// The padded, phase-split input: floats between channels, between rows, and per phase.
    pub in_cs: usize,
    pub in_rs: usize,
    pub wq: usize,
    pub ep: Vec<Ep>,
    /// Buffer-table slot of the thread's scratch.
    pub scratch_slot: usize,
    /// The input as the step reads it: `None` for the whole padded, phase-split copy the
    /// runtime writes before the step (`in_cs` and `in_rs` its strides); or the unpadded
    /// `[c, h, w]` input, whose band rows the input transform pads and splits itself, one
    /// channel at a time, into the thread's scratch (`in_cs` 0, `in_rs` a padded row) just
    /// before transforming them ([`BandPad`]). The planner takes the latter where the copy
    /// would not fit in the L2. One process, alternating, band padding against the copy: a
    /// 64 -> 64 layer at 224x224 0.95x the time, 128 -> 128 at 112x112 0.96-0.98x, vgg_head
    /// 0.94-0.97x at 1 thread and 0.93-0.95x at 2; resnet_block (a 1 MB copy) 1.01-1.03x at
    /// 1 thread, 0.95-0.99x at 2.
    pub band_pad: Option<BandPad>,
    /// Whether the output transform writes whole aligned vectors with streaming stores
    /// ([`F32Vec::store_nt`]): for outputs larger than the core's L2, which the next step
    /// cannot find there anyway. A plain store first reads the line it writes.
    pub stream: bool,
}

impl WinoSpec {
    /// Output channel groups.
    pub fn groups(&self) -> usize {
        self.oc.div_ceil(self.group)
    }
    /// Work items: (band of tile rows, channel group), groups fastest (consecutive items of a
    /// band reuse its transformed input).
    pub fn items(&self) -> usize {
        self.tiles_y.div_ceil(self.rows) * self.groups()
    }
    /// Columns of the GEMMs: the tiles of a band, rows `tiles_x` apart.
    pub fn cols(&self) -> usize {
        self.rows * self.tiles_x
    }
    /// Floats between two channels' rows of `V` and `M`: the columns rounded up to whole
    /// cache lines.
    pub fn cs(&self) -> usize {
        col_stride(self.cols())
    }
    /// Floats of thread scratch: transformed input, products, one channel's padded band.
    pub fn scratch_len(&self) -> usize {
        let n2 = self.variant.products();
        let v = n2 * skewed(self.c * self.cs());
        let mm = n2 * skewed(self.group * self.cs());
        v + mm + self.band_floats() + 64
    }
    /// Floats of one channel's padded band rows (`rows m + 2` rows), with band padding.
    fn band_floats(&self) -> usize {
        self.band_pad.map_or(0, |_| {
            skewed((self.rows * self.variant.m() + 2) * self.in_rs)
        })
    }
    /// Multiplications the GEMMs do per image.
    pub fn gemm_macs(&self) -> u64 {
        let n2 = self.variant.products() as u64;
        n2 * (self.c * self.oc) as u64 * (self.tiles_y * self.tiles_x) as u64
    }
    /// The table [`run_avx2`] / [`run_avx512`] read.
    pub fn params(&self) -> Vec<i64> {
        let mut p = vec![
            self.variant.m() as i64,
            self.c as i64,
            self.oc as i64,
            self.oh as i64,
            self.ow as i64,
            self.tiles_y as i64,
            self.tiles_x as i64,
            self.txp as i64,
            self.rows as i64,
            self.group as i64,
            self.ocb as i64,
            self.in_cs as i64,
            self.in_rs as i64,
            self.wq as i64,
            self.scratch_slot as i64,
            self.tl as i64,
            i64::from(self.stream),
        ];
        let b = self.band_pad.unwrap_or_default();
        p.extend_from_slice(&[
            i64::from(self.band_pad.is_some()),
            b.h as i64,
            b.w as i64,
            b.pt as i64,
            b.pl as i64,
            self.variant.kind(),
            self.variant.line_r() as i64,
        ]);
        // A one-dimensional variant's `Bᵀ` and `Aᵀ`, as f32 bits (checked by the planner to
        // exist).
        if let Variant::Col { m, r } | Variant::Row { m, r } = self.variant
            && let Some((bt, at, _)) = col_matrices(m, r)
        {
            p.extend(
                bt.iter()
                    .chain(&at)
                    .map(|&x| i64::from((x as f32).to_bits())),
            );
        }
        p.push(self.ep.len() as i64);
        for e in &self.ep {
            let (kind, slot, a, b) = ep_code(e);
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

/// An epilogue step as the copy kernel takes it: kind, buffer slot, and constants as bits.
/// Sigmoid and tanh have no such form (the planner does not take Winograd for them).
pub(crate) fn ep_code(e: &Ep) -> (u64, usize, u32, u32) {
    match *e {
        Ep::Affine { slot, scale } => (
            if scale {
                wide::EP_AFFINE
            } else {
                wide::EP_BIAS
            },
            slot,
            0,
            0,
        ),
        Ep::Add { slot } => (wide::EP_ADD, slot, 0, 0),
        Ep::Act(Act::Relu) => (wide::EP_CLAMP, 0, 0f32.to_bits(), f32::INFINITY.to_bits()),
        Ep::Act(Act::Relu6) => (wide::EP_CLAMP, 0, 0f32.to_bits(), 6f32.to_bits()),
        Ep::Act(Act::Clamp(lo, hi)) => (wide::EP_CLAMP, 0, lo, hi),
        Ep::Act(Act::Leaky(a)) => (wide::EP_LEAKY, 0, a, 0),
        Ep::Act(_) => (wide::EP_END, 0, 0, 0),
    }
}

/// Whether the copy kernel can apply every step of `ep`.
pub(crate) fn epilogue_fits(ep: &[Ep]) -> bool {
    !ep.iter()
        .any(|e| matches!(e, Ep::Act(a) if a.cranelift_only()))
}

/// The packed transformed weights: per product `ξ` (of [`Variant::products`]), per block of
/// `ocb` output channels, per input channel the byte offset to the next channel's row of `V`
/// (`cs` floats on; an `i64` in two floats; 0 after the last) and the block's `U[ξ][o][c]`: the
/// row microkernel's stream. `w`: `[oc][c][3][3]`, or `[oc][c][r][1]` for `Col { r, .. }`.
/// `None` for a `Col` variant without matrices ([`col_matrices`]).
pub(crate) fn pack_weights(
    w: &[f32],
    oc: usize,
    c: usize,
    v: Variant,
    ocb: usize,
    cs: usize,
) -> Option<Vec<f32>> {
    let np = v.products();
    let (per_xi, per_block) = packed_sizes(c, oc, ocb);
    let mut out = vec![0f32; np * per_xi];
    // Every tap's offset to the next input channel's row of `V` (0 after the last).
    let step = (cs * 4) as i64;
    for xi in 0..np {
        for o0 in (0..oc).step_by(ocb) {
            let b = (o0 + ocb).min(oc) - o0;
            for ci in 0..c {
                let d = if ci + 1 < c { step as u64 } else { 0 };
                let at = xi * per_xi + (o0 / ocb) * per_block + ci * (2 + b);
                out[at] = f32::from_bits(d as u32);
                out[at + 1] = f32::from_bits((d >> 32) as u32);
            }
        }
    }
    match v {
        Variant::Col { m, r } | Variant::Row { m, r } => {
            let (_, _, g) = col_matrices(m, r)?;
            pack_col(w, (oc, c, ocb, r), &g, per_xi, per_block, &mut out);
        }
        _ => pack_square(w, (oc, c, ocb), v, per_xi, per_block, &mut out),
    }
    Some(out)
}

/// The `U = G g` of the `Col` variants (`g`: `n x r`) into the packed stream `out`.
fn pack_col(
    w: &[f32],
    (oc, c, ocb, r): (usize, usize, usize, usize),
    g: &[f64],
    per_xi: usize,
    per_block: usize,
    out: &mut [f32],
) {
    let n = g.len() / r;
    for o0 in (0..oc).step_by(ocb) {
        let b = (o0 + ocb).min(oc) - o0;
        for ci in 0..c {
            let base = (o0 / ocb) * per_block + ci * (2 + b) + 2;
            for o in o0..o0 + b {
                let k = &w[(o * c + ci) * r..(o * c + ci) * r + r];
                for xi in 0..n {
                    let u: f64 = (0..r).map(|a| g[xi * r + a] * f64::from(k[a])).sum();
                    out[xi * per_xi + base + (o - o0)] = u as f32;
                }
            }
        }
    }
}

/// The `U = G g Gᵀ` of F(2x2,3x3) and F(4x4,3x3) into the packed stream `out`.
fn pack_square(
    w: &[f32],
    (oc, c, ocb): (usize, usize, usize),
    v: Variant,
    per_xi: usize,
    per_block: usize,
    out: &mut [f32],
) {
    let n = v.n();
    let g = g_matrix(v);
    // U[ξ][o][c] = (G g Gᵀ)[i][j], ξ = i * n + j, in f64, as (G g) then its product with Gᵀ:
    // 3n² + 9n multiply-adds a kernel instead of 9n². Kernels in the packed order (block,
    // input channel, channel of the block), so that each of the n² products' streams is
    // written in order: written product-major, kernel by kernel, the 36 stores of a kernel
    // fell on 36 pages and vgg_head's code generation spent 15 ms here.
    let mut gk = vec![[0f64; 3]; n];
    for o0 in (0..oc).step_by(ocb) {
        let b = (o0 + ocb).min(oc) - o0;
        for ci in 0..c {
            let base = (o0 / ocb) * per_block + ci * (2 + b) + 2;
            for o in o0..o0 + b {
                let k = &w[(o * c + ci) * 9..(o * c + ci) * 9 + 9];
                for (gi, row) in g.iter().zip(gk.iter_mut()) {
                    for (bb, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|a| gi[a] * f64::from(k[a * 3 + bb])).sum();
                    }
                }
                for (i, row) in gk.iter().enumerate() {
                    for (j, gj) in g.iter().enumerate() {
                        let s: f64 = (0..3).map(|bb| row[bb] * gj[bb]).sum();
                        out[(i * n + j) * per_xi + base + (o - o0)] = s as f32;
                    }
                }
            }
        }
    }
}

/// Floats of one product's packed weights (all blocks), and of one full block's.
fn packed_sizes(c: usize, oc: usize, ocb: usize) -> (usize, usize) {
    (c * (2 * oc.div_ceil(ocb) + oc), c * (2 + ocb))
}

/// `Bᵀ d` of F(2x2,3x3) along one line of 4 values (each value a vector of tiles).
#[inline(always)]
fn in2<V: F32Vec>(d: [V; 4]) -> [V; 4] {
    [
        d[0].sub(d[2]),
        d[1].add(d[2]),
        d[2].sub(d[1]),
        d[1].sub(d[3]),
    ]
}

/// `Bᵀ d` of F(4x4,3x3) along one line of 6 values.
#[inline(always)]
fn in4<V: F32Vec>(d: [V; 6]) -> [V; 6] {
    let t0 = d[4].sub(d[2].scale(4.0));
    let t1 = d[3].sub(d[1].scale(4.0));
    let t2 = d[4].sub(d[2]);
    let t3 = d[3].sub(d[1]).scale(2.0);
    [
        d[0].scale(4.0).sub(d[2].scale(5.0)).add(d[4]),
        t0.add(t1),
        t0.sub(t1),
        t2.add(t3),
        t2.sub(t3),
        d[1].scale(4.0).sub(d[3].scale(5.0)).add(d[5]),
    ]
}

/// `Aᵀ m` of F(2x2,3x3) along one line.
#[inline(always)]
fn out2<V: F32Vec>(m: [V; 4]) -> [V; 2] {
    [m[0].add(m[1]).add(m[2]), m[1].sub(m[2]).sub(m[3])]
}

/// `Aᵀ m` of F(4x4,3x3) along one line.
#[inline(always)]
fn out4<V: F32Vec>(m: [V; 6]) -> [V; 4] {
    let a = m[1].add(m[2]);
    let b = m[1].sub(m[2]);
    let c = m[3].add(m[4]);
    let d = m[3].sub(m[4]);
    [
        m[0].add(a).add(c),
        b.add(d.scale(2.0)),
        a.add(c.scale(4.0)),
        b.add(d.scale(8.0)).add(m[5]),
    ]
}

/// The sizes of one call, read from the step's table.
struct Sizes {
    m: usize,
    c: usize,
    oc: usize,
    oh: usize,
    ow: usize,
    tiles_y: usize,
    tx: usize,
    txp: usize,
    rows: usize,
    group: usize,
    ocb: usize,
    in_cs: usize,
    in_rs: usize,
    wq: usize,
    scratch_slot: usize,
    tl: usize,
    stream: bool,
    /// With band padding, the padded layout of the whole input (`WinoSpec::band_pad`).
    band_pad: Option<crate::plan::PadCopy>,
    /// The variant's shape ([`Variant::kind`]: 0 3x3, 1 down columns, 2 along rows), a
    /// one-dimensional variant's kernel length `r` (else 0) and its `Bᵀ` (`n x n`) and `Aᵀ`
    /// (`m x n`), row-major.
    kind: usize,
    r: usize,
    bt: [f32; COL_MAX_N * COL_MAX_N],
    at: [f32; COL_MAX_N * COL_MAX_N],
}

impl Sizes {
    /// # Safety
    /// `p` is a table of [`WinoSpec::params`].
    unsafe fn read(p: *const i64) -> (Sizes, *const i64) {
        let v = |i: usize| unsafe { *p.add(i) as usize };
        let (kind, r) = (v(22), v(23));
        let (mut bt, mut at) = ([0f32; COL_MAX_N * COL_MAX_N], [0f32; COL_MAX_N * COL_MAX_N]);
        let mut next = 24;
        if r > 0 {
            let (m, n) = (v(0), v(0) + r - 1);
            for (i, x) in bt.iter_mut().take(n * n).enumerate() {
                *x = f32::from_bits(v(next + i) as u32);
            }
            next += n * n;
            for (i, x) in at.iter_mut().take(m * n).enumerate() {
                *x = f32::from_bits(v(next + i) as u32);
            }
            next += m * n;
        }
        (
            Sizes {
                m: v(0),
                c: v(1),
                oc: v(2),
                oh: v(3),
                ow: v(4),
                tiles_y: v(5),
                tx: v(6),
                txp: v(7),
                rows: v(8),
                group: v(9),
                ocb: v(10),
                in_cs: v(11),
                in_rs: v(12),
                wq: v(13),
                scratch_slot: v(14),
                tl: v(15),
                stream: v(16) != 0,
                band_pad: (v(17) != 0).then(|| crate::plan::PadCopy {
                    src: 0,
                    c: v(1),
                    h: v(18),
                    w: v(19),
                    pt: v(20),
                    pl: v(21),
                    hp: v(0) * v(5) + 2,
                    sw: v(0),
                    wq: v(13),
                    hcw: false,
                    tail: 0,
                }),
                kind,
                r,
                bt,
                at,
            },
            unsafe { p.add(next) },
        )
    }
    fn n(&self) -> usize {
        if self.r > 0 {
            self.m + self.r - 1
        } else {
            self.m + 2
        }
    }
    /// Output rows of a tile ([`Variant::tile_rows`]).
    fn tile_rows(&self) -> usize {
        if self.kind == 2 { 1 } else { self.m }
    }
    /// Products per tile and channel pair ([`Variant::products`]).
    fn products(&self) -> usize {
        if self.r > 0 {
            self.n()
        } else {
            self.n() * self.n()
        }
    }
    fn cols(&self) -> usize {
        self.rows * self.tx
    }
    fn cs(&self) -> usize {
        col_stride(self.cols())
    }
}

/// Builds the epilogue of output channels from `o0`, band rows from `y0`, for the copy kernel.
///
/// # Safety
/// `ep` is the epilogue part of a [`WinoSpec::params`] table; `bufs` the step's buffers.
unsafe fn epilogue(
    ep: *const i64,
    bufs: *const *mut f32,
    o0: usize,
    y0: usize,
    s: &Sizes,
) -> Vec<EpStep> {
    let at = |kind: u64, base: *mut f32| match kind {
        wide::EP_ADD => base.wrapping_add(o0 * s.oh * s.ow + y0 * s.ow),
        _ => base.wrapping_add(8 * o0),
    };
    unsafe { read_epilogue(ep, bufs, at) }
}

/// The epilogue steps of a step's table (`n`, then `kind, slot, a, b` per step; [`ep_code`]),
/// ended by [`wide::EP_END`]: affine, bias and residual steps point into their buffer at
/// `at(kind, the buffer)`.
///
/// # Safety
/// `ep` is such a table; `bufs` the step's buffers, which hold every slot it names.
pub(crate) unsafe fn read_epilogue(
    ep: *const i64,
    bufs: *const *mut f32,
    at: impl Fn(u64, *mut f32) -> *mut f32,
) -> Vec<EpStep> {
    let n = unsafe { *ep } as usize;
    let mut v = Vec::with_capacity(n + 1);
    for i in 0..n {
        let q = |k: usize| unsafe { *ep.add(1 + 4 * i + k) };
        let kind = q(0) as u64;
        let slot = q(1) as usize;
        let ptr = match kind {
            wide::EP_AFFINE | wide::EP_BIAS | wide::EP_ADD => at(kind, unsafe { *bufs.add(slot) }),
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

/// Applies the epilogue `eps` (ended by [`wide::EP_END`]) to `v`, the values of channel `j`
/// of the item at float `off` of its output (residuals have the output's layout), of which
/// the first `n` lanes are real: exactly the copy kernel's (and `Unary::apply`'s) semantics.
#[inline(always)]
fn epilogue_vec<V: F32Vec>(mut v: V, eps: &[EpStep], j: usize, off: usize, n: usize) -> V {
    for st in eps {
        match st.kind {
            wide::EP_AFFINE => {
                // SAFETY: the affine table holds 8 floats per channel of the item's group.
                let (sc, sh) = unsafe { (*st.ptr.add(8 * j), *st.ptr.add(8 * j + 4)) };
                v = v.mul(V::splat(sc)).add(V::splat(sh));
            }
            wide::EP_BIAS => {
                let sh = unsafe { *st.ptr.add(8 * j + 4) };
                v = v.add(V::splat(sh));
            }
            wide::EP_ADD => {
                // SAFETY: the residual has the output's layout; its `n` floats from `off` are
                // the ones this vector stores.
                v = v.add(unsafe { V::load_n(st.ptr.add(off), n) });
            }
            wide::EP_CLAMP => v = v.max_from(V::splat(st.a)).min_from(V::splat(st.b)),
            wide::EP_LEAKY => v = v.leaky(st.a),
            _ => break,
        }
    }
    v
}

/// One output channel's epilogue in the common shape `[affine | bias] [add] [clamp]`, its
/// constants splat once per channel instead of read step by step for every vector; any other
/// shape (leaky, or steps in another order) goes through [`epilogue_vec`].
#[derive(Clone, Copy)]
struct ChannelEp<V> {
    /// 0: none, 1: bias, 2: affine.
    affine: u8,
    scale: V,
    shift: V,
    /// The residual at the item's output float 0, or null.
    add: *const f32,
    clamp: bool,
    lo: V,
    hi: V,
    general: bool,
}

impl<V: F32Vec> ChannelEp<V> {
    /// The epilogue `eps` of the item's channel `j`.
    #[inline(always)]
    fn new(eps: &[EpStep], j: usize) -> Self {
        let mut r = ChannelEp {
            affine: 0,
            scale: V::splat(1.0),
            shift: V::splat(0.0),
            add: std::ptr::null(),
            clamp: false,
            lo: V::splat(0.0),
            hi: V::splat(0.0),
            general: false,
        };
        // The stages seen so far, in order: 1 affine, 2 add, 3 clamp.
        let mut stage = 0;
        for st in eps {
            match st.kind {
                wide::EP_END => break,
                wide::EP_AFFINE | wide::EP_BIAS if stage < 1 => {
                    // SAFETY: the affine table holds 8 floats per channel of the item's group.
                    let (sc, sh) = unsafe { (*st.ptr.add(8 * j), *st.ptr.add(8 * j + 4)) };
                    r.affine = if st.kind == wide::EP_AFFINE { 2 } else { 1 };
                    (r.scale, r.shift) = (V::splat(sc), V::splat(sh));
                    stage = 1;
                }
                wide::EP_ADD if stage < 2 => (r.add, stage) = (st.ptr, 2),
                wide::EP_CLAMP if stage < 3 => {
                    (r.clamp, r.lo, r.hi) = (true, V::splat(st.a), V::splat(st.b));
                    stage = 3;
                }
                _ => {
                    r.general = true;
                    break;
                }
            }
        }
        r
    }

    /// Applies it to `v`, the values at float `off` of the item's output, the first `n` lanes
    /// real; the same operations, in the same order, as [`epilogue_vec`].
    #[inline(always)]
    fn apply(&self, v: V, eps: &[EpStep], j: usize, off: usize, n: usize) -> V {
        if self.general {
            return epilogue_vec(v, eps, j, off, n);
        }
        let mut v = match self.affine {
            2 => v.mul(self.scale).add(self.shift),
            1 => v.add(self.shift),
            _ => v,
        };
        if !self.add.is_null() {
            // SAFETY: as in `epilogue_vec`.
            v = v.add(unsafe { V::load_n(self.add.add(off), n) });
        }
        if self.clamp {
            v = v.max_from(self.lo).min_from(self.hi);
        }
        v
    }
}

/// Channel `c`'s input as the input transform of tile rows `ty0..ty0 + rows` reads it: its
/// rows `m ty0 ..` at `m ty0 in_rs` floats on. The whole padded copy's channel; or, with band
/// padding, those padded rows written into `chan` first, and a pointer that many rows before
/// it (never dereferenced there).
///
/// # Safety
/// As the input transforms'.
#[inline(always)]
unsafe fn channel_input(
    s: &Sizes,
    inp: *const f32,
    chan: *mut f32,
    c: usize,
    ty0: usize,
    rows: usize,
) -> *const f32 {
    let Some(p) = &s.band_pad else {
        return inp.wrapping_add(c * s.in_cs);
    };
    let (y_lo, y_hi) = (ty0 * s.m, ((ty0 + rows) * s.m + 2).min(p.hp));
    // SAFETY: `inp` holds the `[c, h, w]` input, `chan` `rows m + 2` padded rows.
    unsafe { crate::runtime::pad_rows(inp, chan, p, c, y_lo, y_hi) };
    chan.wrapping_sub(y_lo * s.in_rs)
}

/// The input and output transforms of one variant (`$n x $n` input tiles, `$m x $m` output
/// tiles, lines transformed by `$tin` and `$tout`, rows of outputs put in order by
/// `$interleave`), written once for both variants with exact array sizes, so that every tile
/// value stays in a register or a fixed stack slot.
macro_rules! transforms {
    ($input:ident, $output:ident, $m:literal, $n:literal, $tin:ident, $tout:ident,
     $interleave:ident) => {
        /// The input transform of one band (tile rows `ty0..ty0 + rows`) into `v`
        /// (`[n²][c][cs]`).
        ///
        /// # Safety
        /// `inp` is the padded, phase-split input of [`WinoSpec`], or with band padding the
        /// unpadded input and `chan` room for one channel's `rows m + 2` padded rows; `v`
        /// holds `n² c cs` floats.
        #[inline(always)]
        unsafe fn $input<V: F32Vec>(
            s: &Sizes,
            inp: *const f32,
            chan: *mut f32,
            v: *mut f32,
            ty0: usize,
            rows: usize,
        ) {
            let cols = s.cs();
            let plane = skewed(s.c * cols);
            for c in 0..s.c {
                // SAFETY: the caller's buffers.
                let chan_in = unsafe { channel_input(s, inp, chan, c, ty0, rows) };
                for r in 0..rows {
                    let base = chan_in.wrapping_add((ty0 + r) * $m * s.in_rs);
                    for tx0 in (0..s.txp).step_by(V::LANES) {
                        // SAFETY: rows `m ty + j < hp`, phase `l % m`, index
                        // `tx0 + l / m + LANES <= wq`.
                        let at = |j: usize, l: usize| unsafe {
                            V::load(base.add(j * s.in_rs + (l % $m) * s.wq + tx0 + l / $m))
                        };
                        let mut cl = [[V::splat(0.0); $n]; $n];
                        for (l, cl_l) in cl.iter_mut().enumerate() {
                            let mut d = [V::splat(0.0); $n];
                            for (j, dj) in d.iter_mut().enumerate() {
                                *dj = at(j, l);
                            }
                            *cl_l = $tin(d);
                        }
                        // The last vector of a row spills into the next row's first columns
                        // (written after it) or the plane's spare line (see `WinoSpec::txp`).
                        let dst = unsafe { v.add(c * cols + r * s.tx + tx0) };
                        for i in 0..$n {
                            let mut d = [V::splat(0.0); $n];
                            for (l, dl) in d.iter_mut().enumerate() {
                                *dl = cl[l][i];
                            }
                            // Index loops, not `into_iter()`: its iterator stayed on the
                            // stack, its position stored at every step.
                            let t = $tin(d);
                            for k in 0..$n {
                                // SAFETY: product `i n + k` of channel `c`, inside the band.
                                unsafe { t[k].store(dst.add((i * $n + k) * plane)) };
                            }
                        }
                    }
                }
            }
        }

        /// The output transform of the group's products `mm` (`[n²][group][cols]`, channels
        /// `0..chans`) and its epilogue, into the output rows `y0..` of the item's channels
        /// (`out` at the item's first channel and row; `oh * ow` floats between channels).
        ///
        /// # Safety
        /// `mm` holds the sizes above; `out` the item's channels and rows of the output.
        #[inline(always)]
        unsafe fn $output<V: F32Vec>(
            s: &Sizes,
            mm: *const f32,
            out: *mut f32,
            eps: &[EpStep],
            chans: usize,
            rows: usize,
            y0: usize,
        ) {
            let cols = s.cs();
            let plane = skewed(s.group * cols);
            let l = V::LANES;
            for o in 0..chans {
                let ce = ChannelEp::<V>::new(eps, o);
                for r in 0..rows {
                    for tx0 in (0..s.txp).step_by(l) {
                        let x0 = tx0 * $m;
                        if x0 >= s.ow {
                            break;
                        }
                        // Lanes past the row's tiles read the next row's or the spare line.
                        let src = unsafe { mm.add(o * cols + r * s.tx + tx0) };
                        let mut t = [[V::splat(0.0); $m]; $n];
                        for (j, tj) in t.iter_mut().enumerate() {
                            let mut d = [V::splat(0.0); $n];
                            for (i, di) in d.iter_mut().enumerate() {
                                // SAFETY: product `i n + j < n²` of channel `o`, in the band.
                                *di = unsafe { V::load(src.add((i * $n + j) * plane)) };
                            }
                            *tj = $tout(d);
                        }
                        let width = ($m * l).min(s.ow - x0);
                        for i in 0..$m {
                            let yy = y0 + r * $m + i;
                            if yy >= s.oh {
                                break;
                            }
                            let mut d = [V::splat(0.0); $n];
                            for (j, dj) in d.iter_mut().enumerate() {
                                *dj = t[j][i];
                            }
                            // The row's values of the vector's tiles, in column order.
                            let row = V::$interleave($tout(d));
                            let off = o * s.oh * s.ow + (yy - y0) * s.ow + x0;
                            // Index loops, not `into_iter()`, whose iterator stayed on the
                            // stack (the output transform ran 3x slower).
                            for (k, &v) in row.iter().enumerate() {
                                if k * l >= width {
                                    break;
                                }
                                let cnt = l.min(width - k * l);
                                let at = off + k * l;
                                let v = ce.apply(v, eps, o, at, cnt);
                                // SAFETY: columns `x0 + k l .. + cnt <= ow` of row `yy` of
                                // channel `o`.
                                unsafe {
                                    let p = out.add(at);
                                    if cnt == l && s.stream && p as usize % (4 * l) == 0 {
                                        v.store_nt(p);
                                    } else if cnt == l {
                                        v.store(p);
                                    } else {
                                        v.store_first(p, cnt);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
}

transforms!(input_f2, output_f2, 2, 4, in2, out2, interleave2);
transforms!(input_f4, output_f4, 4, 6, in4, out4, interleave4);

/// The input transform of a band down columns (`Col` variants, `N` input rows a tile): per
/// channel, tile row and vector of columns, `Bᵀ d` of the tile's `N` rows into `v`
/// (`[N][c][cs]`). The input is the padded copy (one phase, rows `in_rs` apart).
///
/// # Safety
/// `inp` is the padded input of [`WinoSpec`] (rows `m ty + j < hp`, columns `x0 + LANES <=
/// wq`); `v` holds `N c cs` floats and its planes' spare line.
#[inline(always)]
unsafe fn input_col<V: F32Vec, const N: usize>(
    s: &Sizes,
    inp: *const f32,
    v: *mut f32,
    ty0: usize,
    rows: usize,
) {
    let cols = s.cs();
    let plane = skewed(s.c * cols);
    let bt: [[V; N]; N] = splat_matrix::<V, N>(&s.bt);
    for c in 0..s.c {
        for r in 0..rows {
            let base = inp.wrapping_add(c * s.in_cs + (ty0 + r) * s.m * s.in_rs);
            for x0 in (0..s.txp).step_by(V::LANES) {
                // SAFETY: rows and columns inside the padded copy (the contract).
                let mut d = [V::splat(0.0); N];
                for (j, dj) in d.iter_mut().enumerate() {
                    // SAFETY: rows and columns inside the padded copy (the contract).
                    *dj = unsafe { V::load(base.add(j * s.in_rs + x0)) };
                }
                // The last vector of a row spills into the next row's first columns (written
                // after it) or the plane's spare line, as in the 3x3 transforms.
                let dst = unsafe { v.add(c * cols + r * s.tx + x0) };
                // SAFETY: the `N` products of channel `c`, inside the band.
                unsafe { store_bt(&d, &bt, dst, plane) };
            }
        }
    }
}

/// The output transform down columns (`Col` variants) with the epilogue: per channel, tile row
/// and vector of columns, the `m` output rows `Aᵀ M` of the tile's `N` products.
///
/// # Safety
/// As [`output_f2`].
#[inline(always)]
unsafe fn output_col<V: F32Vec, const N: usize>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    let cols = s.cs();
    let plane = skewed(s.group * cols);
    let l = V::LANES;
    for o in 0..chans {
        let ce = ChannelEp::<V>::new(eps, o);
        for r in 0..rows {
            for x0 in (0..s.txp).step_by(l).take_while(|&x0| x0 < s.ow) {
                // Lanes past the row's columns read the next row's or the spare line.
                let src = unsafe { mm.add(o * cols + r * s.tx + x0) };
                // SAFETY: product `xi < N` of channel `o`, in the band.
                let mut mv = [V::splat(0.0); N];
                for (xi, m) in mv.iter_mut().enumerate() {
                    // SAFETY: product `xi < N` of channel `o`, in the band.
                    *m = unsafe { V::load(src.add(xi * plane)) };
                }
                let cnt = l.min(s.ow - x0);
                for i in 0..s.m {
                    let yy = y0 + r * s.m + i;
                    if yy >= s.oh {
                        break;
                    }
                    let y = combine(&mv, &s.at[i * N..i * N + N]);
                    let at = o * s.oh * s.ow + (yy - y0) * s.ow + x0;
                    let y = ce.apply(y, eps, o, at, cnt);
                    // SAFETY: columns `x0 .. x0 + cnt <= ow` of row `yy` of channel `o`.
                    unsafe { store_out(y, out.add(at), cnt, s.stream) };
                }
            }
        }
    }
}

/// Stores the first `cnt` lanes of `v` at `p`: a streaming store where asked (`stream`) and
/// the vector is whole and aligned.
///
/// # Safety
/// `p` points to `cnt <= LANES` writable floats.
#[inline(always)]
unsafe fn store_out<V: F32Vec>(v: V, p: *mut f32, cnt: usize, stream: bool) {
    let l = V::LANES;
    // SAFETY: the caller's `cnt` floats (aligned for the streaming store).
    unsafe {
        if cnt == l && stream && p as usize % (4 * l) == 0 {
            v.store_nt(p);
        } else if cnt == l {
            v.store(p);
        } else {
            v.store_first(p, cnt);
        }
    }
}

/// [`input_col`] for the variant's `n` (the planner keeps `n` within 3..=[`COL_MAX_N`]).
///
/// # Safety
/// As [`input_col`].
#[inline(always)]
unsafe fn input_col_any<V: F32Vec>(
    s: &Sizes,
    inp: *const f32,
    v: *mut f32,
    ty0: usize,
    rows: usize,
) {
    unsafe {
        match s.n() {
            3 => input_col::<V, 3>(s, inp, v, ty0, rows),
            4 => input_col::<V, 4>(s, inp, v, ty0, rows),
            5 => input_col::<V, 5>(s, inp, v, ty0, rows),
            6 => input_col::<V, 6>(s, inp, v, ty0, rows),
            7 => input_col::<V, 7>(s, inp, v, ty0, rows),
            8 => input_col::<V, 8>(s, inp, v, ty0, rows),
            9 => input_col::<V, 9>(s, inp, v, ty0, rows),
            _ => input_col::<V, 10>(s, inp, v, ty0, rows),
        }
    }
}

/// [`output_col`] for the variant's `n`.
///
/// # Safety
/// As [`output_col`].
#[inline(always)]
unsafe fn output_col_any<V: F32Vec>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = x86::output_col_fn(V::LANES, s.n()) {
            // Alone, as `output_out_of_line`.
            return std::hint::black_box(f)(s, mm, out, eps, chans, rows, y0);
        }
        match s.n() {
            3 => output_col::<V, 3>(s, mm, out, eps, chans, rows, y0),
            4 => output_col::<V, 4>(s, mm, out, eps, chans, rows, y0),
            5 => output_col::<V, 5>(s, mm, out, eps, chans, rows, y0),
            6 => output_col::<V, 6>(s, mm, out, eps, chans, rows, y0),
            7 => output_col::<V, 7>(s, mm, out, eps, chans, rows, y0),
            8 => output_col::<V, 8>(s, mm, out, eps, chans, rows, y0),
            9 => output_col::<V, 9>(s, mm, out, eps, chans, rows, y0),
            _ => output_col::<V, 10>(s, mm, out, eps, chans, rows, y0),
        }
    }
}

/// The input transform of a band along rows (`Row` variants, `N` input columns and `M` outputs
/// a tile): per channel, image row and vector of tiles, `Bᵀ d` into `v` (`[N][c][cs]`). The
/// input is the padded copy split into `M` phases, so value `l` of a vector of tiles is one
/// load (phase `l % M`, `l / M` tiles on), as in the 3x3 transforms.
///
/// # Safety
/// `inp` is the padded, phase-split input of [`WinoSpec`] (rows `< hp`, indices `t0 + l / M +
/// LANES <= wq`); `v` holds `N c cs` floats and its planes' spare line.
#[inline(always)]
unsafe fn input_row<V: F32Vec, const N: usize, const M: usize>(
    s: &Sizes,
    inp: *const f32,
    v: *mut f32,
    ty0: usize,
    rows: usize,
) {
    let cols = s.cs();
    let plane = skewed(s.c * cols);
    let bt: [[V; N]; N] = splat_matrix::<V, N>(&s.bt);
    for c in 0..s.c {
        for r in 0..rows {
            let base = inp.wrapping_add(c * s.in_cs + (ty0 + r) * s.in_rs);
            for t0 in (0..s.txp).step_by(V::LANES) {
                // SAFETY: inside the padded row (the contract).
                let mut d = [V::splat(0.0); N];
                for (l, dl) in d.iter_mut().enumerate() {
                    // SAFETY: inside the padded row (the contract).
                    *dl = unsafe { V::load(base.add((l % M) * s.wq + t0 + l / M)) };
                }
                // The last vector of a row spills into the next row's first columns (written
                // after it) or the plane's spare line, as in the 3x3 transforms.
                let dst = unsafe { v.add(c * cols + r * s.tx + t0) };
                // SAFETY: the `N` products of channel `c`, inside the band.
                unsafe { store_bt(&d, &bt, dst, plane) };
            }
        }
    }
}

/// `M` (2 or 4) vectors whose lane `t` holds column `M t + j` of a row (`y[j]`), in column
/// order. (No closures: a closure is compiled without the caller's target features, and its
/// vector operations become calls.)
#[inline(always)]
fn interleave_m<V: F32Vec, const M: usize>(y: [V; M]) -> [V; M] {
    let mut out = y;
    if M == 2 {
        let r = V::interleave2([y[0], y[1 % M]]);
        out[0] = r[0];
        out[1 % M] = r[1];
    } else {
        let r = V::interleave4([y[0], y[1 % M], y[2 % M], y[3 % M]]);
        for k in 0..4 {
            out[k % M] = r[k];
        }
    }
    out
}

/// Stores `Bᵀ d` of a one-dimensional tile (`bt`'s rows as splat vectors): product `ξ` at
/// `dst + ξ plane`.
///
/// # Safety
/// `dst + ξ plane` holds `LANES` writable floats for every `ξ < N`.
#[inline(always)]
unsafe fn store_bt<V: F32Vec, const N: usize>(
    d: &[V; N],
    bt: &[[V; N]; N],
    dst: *mut f32,
    plane: usize,
) {
    for (xi, row) in bt.iter().enumerate() {
        let mut t = d[0].mul(row[0]);
        for j in 1..N {
            t = t.add(d[j].mul(row[j]));
        }
        // SAFETY: the caller's product `xi`.
        unsafe { t.store(dst.add(xi * plane)) };
    }
}

/// One output of a one-dimensional tile: row `a` of `Aᵀ` (`N` coefficients) times the
/// products `mv`.
#[inline(always)]
fn combine<V: F32Vec, const N: usize>(mv: &[V; N], a: &[f32]) -> V {
    let mut y = mv[0].scale(a[0]);
    for xi in 1..N {
        y = y.add(mv[xi].scale(a[xi]));
    }
    y
}

/// The `N x N` matrix `m` (row-major) as splat vectors.
#[inline(always)]
fn splat_matrix<V: F32Vec, const N: usize>(m: &[f32]) -> [[V; N]; N] {
    let mut out = [[V::splat(0.0); N]; N];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = V::splat(m[i * N + j]);
        }
    }
    out
}

/// The output transform along rows (`Row` variants) with the epilogue: per channel, image row
/// and vector of tiles, the `M` outputs `Aᵀ M` of each tile, put in column order.
///
/// # Safety
/// As [`output_f2`].
#[inline(always)]
unsafe fn output_row<V: F32Vec, const N: usize, const M: usize>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    let cols = s.cs();
    let plane = skewed(s.group * cols);
    let l = V::LANES;
    for o in 0..chans {
        let ce = ChannelEp::<V>::new(eps, o);
        for r in 0..rows.min(s.oh - y0) {
            for t0 in (0..s.txp).step_by(l).take_while(|&t0| t0 * M < s.ow) {
                let x0 = t0 * M;
                // Lanes past the row's tiles read the next row's or the spare line.
                let src = unsafe { mm.add(o * cols + r * s.tx + t0) };
                // SAFETY: product `xi < N` of channel `o`, in the band.
                let mut mv = [V::splat(0.0); N];
                for (xi, m) in mv.iter_mut().enumerate() {
                    // SAFETY: product `xi < N` of channel `o`, in the band.
                    *m = unsafe { V::load(src.add(xi * plane)) };
                }
                let mut y = [V::splat(0.0); M];
                for (i, yi) in y.iter_mut().enumerate() {
                    *yi = combine(&mv, &s.at[i * N..i * N + N]);
                }
                let width = (M * l).min(s.ow - x0);
                let row = interleave_m::<V, M>(y);
                for (k, &v) in row.iter().enumerate() {
                    if k * l >= width {
                        break;
                    }
                    let cnt = l.min(width - k * l);
                    let at = o * s.oh * s.ow + r * s.ow + x0 + k * l;
                    let v = ce.apply(v, eps, o, at, cnt);
                    // SAFETY: columns `x0 + k l .. + cnt <= ow` of row `y0 + r` of channel `o`.
                    unsafe { store_out(v, out.add(at), cnt, s.stream) };
                }
            }
        }
    }
}

/// [`input_row`] for the variant's `n` and `m` (the planner keeps `m` 2 or 4 and `n` within
/// `m + 1..=8`).
///
/// # Safety
/// As [`input_row`].
#[inline(always)]
unsafe fn input_row_any<V: F32Vec>(
    s: &Sizes,
    inp: *const f32,
    v: *mut f32,
    ty0: usize,
    rows: usize,
) {
    unsafe {
        match (s.n(), s.m) {
            (3, _) => input_row::<V, 3, 2>(s, inp, v, ty0, rows),
            (4, _) => input_row::<V, 4, 2>(s, inp, v, ty0, rows),
            (5, 2) => input_row::<V, 5, 2>(s, inp, v, ty0, rows),
            (5, _) => input_row::<V, 5, 4>(s, inp, v, ty0, rows),
            (6, 2) => input_row::<V, 6, 2>(s, inp, v, ty0, rows),
            (6, _) => input_row::<V, 6, 4>(s, inp, v, ty0, rows),
            (7, 2) => input_row::<V, 7, 2>(s, inp, v, ty0, rows),
            (7, _) => input_row::<V, 7, 4>(s, inp, v, ty0, rows),
            (_, 2) => input_row::<V, 8, 2>(s, inp, v, ty0, rows),
            _ => input_row::<V, 8, 4>(s, inp, v, ty0, rows),
        }
    }
}

/// [`output_row`] for the variant's `n` and `m`.
///
/// # Safety
/// As [`output_row`].
#[inline(always)]
unsafe fn output_row_any<V: F32Vec>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = x86::output_row_fn(V::LANES, s.n(), s.m) {
            // Alone, as `output_out_of_line`.
            return std::hint::black_box(f)(s, mm, out, eps, chans, rows, y0);
        }
        match (s.n(), s.m) {
            (3, _) => output_row::<V, 3, 2>(s, mm, out, eps, chans, rows, y0),
            (4, _) => output_row::<V, 4, 2>(s, mm, out, eps, chans, rows, y0),
            (5, 2) => output_row::<V, 5, 2>(s, mm, out, eps, chans, rows, y0),
            (5, _) => output_row::<V, 5, 4>(s, mm, out, eps, chans, rows, y0),
            (6, 2) => output_row::<V, 6, 2>(s, mm, out, eps, chans, rows, y0),
            (6, _) => output_row::<V, 6, 4>(s, mm, out, eps, chans, rows, y0),
            (7, 2) => output_row::<V, 7, 2>(s, mm, out, eps, chans, rows, y0),
            (7, _) => output_row::<V, 7, 4>(s, mm, out, eps, chans, rows, y0),
            (_, 2) => output_row::<V, 8, 2>(s, mm, out, eps, chans, rows, y0),
            _ => output_row::<V, 8, 4>(s, mm, out, eps, chans, rows, y0),
        }
    }
}

/// The step's body on the path's vectors `V`: items `start..end`.
///
/// # Safety
/// As [`crate::rstep::RustStep`], with a [`WinoSpec`] table and buffers the plan sized.
#[inline(always)]
unsafe fn run<V: F32Vec>(isa: Isa, bufs: *const *mut f32, start: u64, end: u64, p: *const i64) {
    let (s, ep) = unsafe { Sizes::read(p) };
    let n2 = s.products();
    let cols = s.cs();
    let (inp, out, w) = unsafe {
        (
            *bufs.add(SLOT_IN) as *const f32,
            *bufs.add(SLOT_OUT),
            *bufs.add(SLOT_W) as *const f32,
        )
    };
    let scratch = unsafe { (*bufs.add(s.scratch_slot)).add(16) };
    let v = scratch;
    let mm = unsafe { v.add(n2 * skewed(s.c * cols)) };
    let chan = unsafe { mm.add(n2 * skewed(s.group * cols)) };
    let groups = s.oc.div_ceil(s.group);
    let (per_xi, per_block) = packed_sizes(s.c, s.oc, s.ocb);
    let mut band = usize::MAX;
    for item in start as usize..end as usize {
        let (b, gi) = (item / groups, item % groups);
        let ty0 = b * s.rows;
        let rows = s.rows.min(s.tiles_y - ty0);
        if b != band {
            if s.kind == 2 {
                unsafe { input_row_any::<V>(&s, inp, v, ty0, rows) };
            } else if s.r > 0 {
                unsafe { input_col_any::<V>(&s, inp, v, ty0, rows) };
            } else {
                unsafe { input_any::<V>(&s, inp, chan, v, ty0, rows) };
            }
            band = b;
        }
        let o0 = gi * s.group;
        let o1 = (o0 + s.group).min(s.oc);
        let width = rows * s.tx;
        for xi in 0..n2 {
            for bo in (o0..o1).step_by(s.ocb) {
                let ocb = s.ocb.min(o1 - bo);
                let Some(f) = wide::row_kernel(isa, ocb) else {
                    return;
                };
                // SAFETY: the block's stream (`c` taps of `V[ξ]`, rows `cs` apart), products
                // of channels `bo - o0 ..` of the group, `width <= cs` columns.
                unsafe {
                    f(
                        v.add(xi * skewed(s.c * cols)),
                        w.add(xi * per_xi + (bo / s.ocb) * per_block) as *const u8,
                        mm.add(xi * skewed(s.group * cols) + (bo - o0) * cols),
                        cols,
                        width,
                        0,
                        std::ptr::null(),
                    )
                };
            }
        }
        let y0 = ty0 * s.tile_rows();
        let eps = unsafe { epilogue(ep, bufs, o0, y0, &s) };
        let dst = unsafe { out.add(o0 * s.oh * s.ow + y0 * s.ow) };
        if s.kind == 2 {
            unsafe { output_row_any::<V>(&s, mm, dst, &eps, o1 - o0, rows, y0) };
        } else if s.r > 0 {
            unsafe { output_col_any::<V>(&s, mm, dst, &eps, o1 - o0, rows, y0) };
        } else {
            unsafe { output_out_of_line::<V>(&s, mm, dst, &eps, o1 - o0, rows, y0) };
        }
    }
    if s.stream {
        crate::lanes::store_fence();
    }
}

/// A 3x3 input transform ([`input_any`]'s arms) compiled alone: `(sizes, input, channel
/// buffer, transformed input, first tile row, tile rows)`.
type InputFn = unsafe fn(&Sizes, *const f32, *mut f32, *mut f32, usize, usize);

/// An output transform ([`output_any`]'s arms) compiled alone: `(sizes, products, output,
/// epilogue, channels, rows, first row)`.
type OutputFn = unsafe fn(&Sizes, *const f32, *mut f32, &[EpStep], usize, usize, usize);

/// [`output_any`] through a function of its own per path and variant ([`x86::output_fn`]):
/// inlined into [`run`] with the other transforms, or with the other variants, its tiles and
/// iterators stayed on the stack and it ran 3-6x slower than alone (a 3 -> 64 layer at
/// 224x224: 4.6 ms of output transform against 0.8-1.0 alone).
///
/// # Safety
/// As [`output_any`].
#[inline(always)]
unsafe fn output_out_of_line<V: F32Vec>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = x86::output_fn(V::LANES, s.tl, s.m) {
            // Through a pointer: `#[inline(never)]` alone did not keep it out of `run`.
            return std::hint::black_box(f)(s, mm, out, eps, chans, rows, y0);
        }
        output_any::<V>(s, mm, out, eps, chans, rows, y0)
    }
}

/// The input transform of a band on vectors of `s.tl` floats: `V` (the path's), or the
/// narrower `V8` / `V4` (both run inside either wide path).
///
/// # Safety
/// As the transforms; the host runs `V`'s path.
#[inline(always)]
unsafe fn input_any<V: F32Vec>(
    s: &Sizes,
    inp: *const f32,
    chan: *mut f32,
    v: *mut f32,
    ty0: usize,
    rows: usize,
) {
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if let Some(f) = x86::input_fn(V::LANES, s.tl, s.m) {
            // Alone, as `output_out_of_line`.
            return std::hint::black_box(f)(s, inp, chan, v, ty0, rows);
        }
        match (s.tl, s.m) {
            #[cfg(target_arch = "x86_64")]
            (4, 2) => input_f2::<V4>(s, inp, chan, v, ty0, rows),
            #[cfg(target_arch = "x86_64")]
            (4, _) => input_f4::<V4>(s, inp, chan, v, ty0, rows),
            #[cfg(target_arch = "x86_64")]
            (8, 2) if V::LANES > 8 => input_f2::<V8>(s, inp, chan, v, ty0, rows),
            #[cfg(target_arch = "x86_64")]
            (8, _) if V::LANES > 8 => input_f4::<V8>(s, inp, chan, v, ty0, rows),
            (_, 2) => input_f2::<V>(s, inp, chan, v, ty0, rows),
            _ => input_f4::<V>(s, inp, chan, v, ty0, rows),
        }
    }
}

/// The output transform and epilogue on vectors of `s.tl` floats (see [`input_any`]).
///
/// # Safety
/// As the transforms; the host runs `V`'s path.
#[inline(always)]
unsafe fn output_any<V: F32Vec>(
    s: &Sizes,
    mm: *const f32,
    out: *mut f32,
    eps: &[EpStep],
    chans: usize,
    rows: usize,
    y0: usize,
) {
    unsafe {
        match (s.tl, s.m) {
            #[cfg(target_arch = "x86_64")]
            (4, 2) => output_f2::<V4>(s, mm, out, eps, chans, rows, y0),
            #[cfg(target_arch = "x86_64")]
            (4, _) => output_f4::<V4>(s, mm, out, eps, chans, rows, y0),
            #[cfg(target_arch = "x86_64")]
            (8, 2) if V::LANES > 8 => output_f2::<V8>(s, mm, out, eps, chans, rows, y0),
            #[cfg(target_arch = "x86_64")]
            (8, _) if V::LANES > 8 => output_f4::<V8>(s, mm, out, eps, chans, rows, y0),
            (_, 2) => output_f2::<V>(s, mm, out, eps, chans, rows, y0),
            _ => output_f4::<V>(s, mm, out, eps, chans, rows, y0),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Isa, run};
    use crate::lanes::{V4, V8, V16};

    /// The Winograd step on the AVX2 path (8 tiles a vector).
    ///
    /// # Safety
    /// As [`super::run`]; the host runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe extern "C" fn run_avx2(
        bufs: *const *mut f32,
        start: u64,
        end: u64,
        p: *const i64,
    ) {
        unsafe { run::<V8>(Isa::Avx2, bufs, start, end, p) }
    }

    /// [`super::time_transforms`] of both variants on the AVX2 path, per vector width of the
    /// transforms (4 and 8 floats): `(width, [F2, F4])`.
    ///
    /// # Safety
    /// The host runs AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn transform_ns_avx2() -> Vec<(usize, [(f64, f64); 2])> {
        unsafe {
            vec![
                (
                    4,
                    [
                        super::time_transforms::<V4>(2),
                        super::time_transforms::<V4>(4),
                    ],
                ),
                (
                    8,
                    [
                        super::time_transforms::<V8>(2),
                        super::time_transforms::<V8>(4),
                    ],
                ),
            ]
        }
    }

    /// [`super::time_transforms`] of both variants on the AVX-512 path, per vector width of
    /// the transforms (4, 8 and 16 floats).
    ///
    /// # Safety
    /// The host runs AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn transform_ns_avx512() -> Vec<(usize, [(f64, f64); 2])> {
        unsafe {
            vec![
                (
                    4,
                    [
                        super::time_transforms::<V4>(2),
                        super::time_transforms::<V4>(4),
                    ],
                ),
                (
                    8,
                    [
                        super::time_transforms::<V8>(2),
                        super::time_transforms::<V8>(4),
                    ],
                ),
                (
                    16,
                    [
                        super::time_transforms::<V16>(2),
                        super::time_transforms::<V16>(4),
                    ],
                ),
            ]
        }
    }

    /// An output transform `$f::<$v>` compiled alone with features `$feat`
    /// ([`super::OutputFn`]).
    macro_rules! output_alone {
        ($feat:literal, $f:ident, $v:ty) => {{
            /// See [`super::output_out_of_line`].
            ///
            /// # Safety
            /// As the output transforms; the host runs the path.
            #[target_feature(enable = $feat)]
            #[inline(never)]
            unsafe fn alone(
                s: &super::Sizes,
                mm: *const f32,
                out: *mut f32,
                eps: &[crate::wide::EpStep],
                chans: usize,
                rows: usize,
                y0: usize,
            ) {
                unsafe { super::$f::<$v>(s, mm, out, eps, chans, rows, y0) }
            }
            alone as super::OutputFn
        }};
    }

    /// An input transform `$f::<$v>` compiled alone with features `$feat`
    /// ([`super::InputFn`]).
    macro_rules! input_alone {
        ($feat:literal, $f:ident, $v:ty) => {{
            /// See [`super::input_any`].
            ///
            /// # Safety
            /// As the input transforms; the host runs the path.
            #[target_feature(enable = $feat)]
            #[inline(never)]
            unsafe fn alone(
                s: &super::Sizes,
                inp: *const f32,
                chan: *mut f32,
                v: *mut f32,
                ty0: usize,
                rows: usize,
            ) {
                unsafe { super::$f::<$v>(s, inp, chan, v, ty0, rows) }
            }
            alone as super::InputFn
        }};
    }

    /// The 3x3 transform (`$f2` for F(2x2), `$f4` for F(4x4), by `m`) of a path of `lanes`
    /// floats on vectors of `tl` floats, as [`super::input_any`] and [`super::output_any`]
    /// pick them, compiled alone by `$alone`; `None` for a path without one.
    macro_rules! by_variant {
        ($alone:ident, $f2:ident, $f4:ident, $lanes:expr, $tl:expr, $m:expr) => {
            match ($lanes, $tl.min($lanes), $m) {
                (16, 4, 2) => Some($alone!("avx512f", $f2, V4)),
                (16, 4, _) => Some($alone!("avx512f", $f4, V4)),
                (16, 8, 2) => Some($alone!("avx512f", $f2, V8)),
                (16, 8, _) => Some($alone!("avx512f", $f4, V8)),
                (16, _, 2) => Some($alone!("avx512f", $f2, V16)),
                (16, _, _) => Some($alone!("avx512f", $f4, V16)),
                (8, 4, 2) => Some($alone!("avx2,fma", $f2, V4)),
                (8, 4, _) => Some($alone!("avx2,fma", $f4, V4)),
                (8, _, 2) => Some($alone!("avx2,fma", $f2, V8)),
                (8, _, _) => Some($alone!("avx2,fma", $f4, V8)),
                _ => None,
            }
        };
    }

    /// The 3x3 output transform [`super::output_any`] picks, compiled alone.
    pub(super) fn output_fn(lanes: usize, tl: usize, m: usize) -> Option<super::OutputFn> {
        by_variant!(output_alone, output_f2, output_f4, lanes, tl, m)
    }

    /// The 3x3 input transform [`super::input_any`] picks, compiled alone.
    pub(super) fn input_fn(lanes: usize, tl: usize, m: usize) -> Option<super::InputFn> {
        by_variant!(input_alone, input_f2, input_f4, lanes, tl, m)
    }

    /// A one-dimensional output transform compiled alone for a path: down columns (`ROW`
    /// false, `n` = `N`) or along rows (`N` inputs, `M` outputs a tile).
    macro_rules! line_alone {
        ($name:ident, $feat:literal, $v:ty) => {
            /// See [`super::output_col_any`] and [`super::output_row_any`].
            ///
            /// # Safety
            /// As the output transforms; the host runs the path.
            #[target_feature(enable = $feat)]
            #[inline(never)]
            unsafe fn $name<const ROW: bool, const N: usize, const M: usize>(
                s: &super::Sizes,
                mm: *const f32,
                out: *mut f32,
                eps: &[crate::wide::EpStep],
                chans: usize,
                rows: usize,
                y0: usize,
            ) {
                unsafe {
                    if ROW {
                        super::output_row::<$v, N, M>(s, mm, out, eps, chans, rows, y0)
                    } else {
                        super::output_col::<$v, N>(s, mm, out, eps, chans, rows, y0)
                    }
                }
            }
        };
    }
    line_alone!(line_512, "avx512f", V16);
    line_alone!(line_256, "avx2,fma", V8);

    /// [`super::output_col_any`]'s transform for `n` on a path of `lanes` floats.
    pub(super) fn output_col_fn(lanes: usize, n: usize) -> Option<super::OutputFn> {
        macro_rules! pick {
            ($($n:literal)*) => {
                match (lanes, n) {
                    $((16, $n) => line_512::<false, $n, 1> as super::OutputFn,
                      (8, $n) => line_256::<false, $n, 1>,)*
                    (16, _) => line_512::<false, 10, 1>,
                    (8, _) => line_256::<false, 10, 1>,
                    _ => return None,
                }
            };
        }
        Some(pick!(3 4 5 6 7 8 9))
    }

    /// [`super::output_row_any`]'s transform for `n` and `m` on a path of `lanes` floats.
    pub(super) fn output_row_fn(lanes: usize, n: usize, m: usize) -> Option<super::OutputFn> {
        macro_rules! pick {
            ($($n:literal)*) => {
                match (lanes, n, m) {
                    (16, 3, _) => line_512::<true, 3, 2> as super::OutputFn,
                    (16, 4, _) => line_512::<true, 4, 2>,
                    (8, 3, _) => line_256::<true, 3, 2>,
                    (8, 4, _) => line_256::<true, 4, 2>,
                    $((16, $n, 2) => line_512::<true, $n, 2>,
                      (16, $n, _) => line_512::<true, $n, 4>,
                      (8, $n, 2) => line_256::<true, $n, 2>,
                      (8, $n, _) => line_256::<true, $n, 4>,)*
                    (16, _, 2) => line_512::<true, 8, 2>,
                    (16, _, _) => line_512::<true, 8, 4>,
                    (8, _, 2) => line_256::<true, 8, 2>,
                    (8, _, _) => line_256::<true, 8, 4>,
                    _ => return None,
                }
            };
        }
        Some(pick!(5 6 7))
    }

    /// The Winograd step on the AVX-512 path (16 tiles a vector).
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
        unsafe { run::<V16>(Isa::Avx512, bufs, start, end, p) }
    }
}

/// Multiply-add equivalents of the transforms per tile and channel (input transform per input
/// channel, output transform with its epilogue and stores per output channel) on vectors of 4,
/// 8 and 16 floats: fixed estimates, rounded from the measurements of [`transform_costs`] (AMD
/// Zen4: F(2x2) 65-96 / 39-83, F(4x4) 169-400 / 183-375, the narrower vectors the dearer; an
/// Intel Xeon under load measured about twice as much). `auto` decides with these, not with the
/// measurement, whether a layer runs Winograd and which variant ([`choose`]): the variant
/// changes the output's rounding, and a measurement that varies from process to process made
/// the same network give different bits from run to run (a 3 -> 8 layer at 128x128 sits near
/// the break-even). They also stand in where the host's path cannot be measured.
const TRANSFORM_COST: [TransformCost; 6] = [
    (Variant::F2, 4, 90.0, 80.0),
    (Variant::F2, 8, 85.0, 50.0),
    (Variant::F2, 16, 80.0, 45.0),
    (Variant::F4, 4, 380.0, 370.0),
    (Variant::F4, 8, 260.0, 220.0),
    (Variant::F4, 16, 240.0, 200.0),
];

/// [`TRANSFORM_COST`] for the vector widths of path `isa`.
fn estimated_costs(isa: Isa) -> Vec<TransformCost> {
    TRANSFORM_COST
        .iter()
        .copied()
        .filter(|t| t.1 <= isa.lanes())
        .collect()
}

/// Times the input and the output transform (with a bias and relu epilogue) of variant `m` on
/// `V`, on a band of 16 channels, 2 tile rows and 2 vectors of tiles a row whose data sit in
/// L1: nanoseconds per tile and channel, best of 7 rounds of 8 calls after a warm-up round.
///
/// # Safety
/// The host runs `V`'s path.
#[inline(always)]
unsafe fn time_transforms<V: F32Vec>(m: usize) -> (f64, f64) {
    let l = V::LANES;
    let (c, rows, txp) = (16, 2, 2 * l);
    let (n, wq) = (m + 2, txp + 1);
    let s = Sizes {
        m,
        c,
        oc: c,
        oh: m * rows,
        ow: m * txp,
        tiles_y: rows,
        tx: txp,
        txp,
        rows,
        group: c,
        ocb: c,
        in_cs: (m * rows + 2) * m * wq,
        in_rs: m * wq,
        wq,
        scratch_slot: 0,
        tl: l,
        stream: false,
        band_pad: None,
        kind: 0,
        r: 0,
        bt: [0.0; COL_MAX_N * COL_MAX_N],
        at: [0.0; COL_MAX_N * COL_MAX_N],
    };
    let inp = vec![0.5f32; c * s.in_cs];
    let mut v = vec![0f32; n * n * skewed(c * s.cs())];
    let mut out = vec![0f32; c * s.oh * s.ow];
    let affine = vec![0.25f32; 8 * c];
    let step = |kind, ptr, b| EpStep {
        kind,
        ptr,
        a: 0.0,
        b,
    };
    let eps = [
        step(wide::EP_BIAS, affine.as_ptr(), 0.0),
        step(wide::EP_CLAMP, std::ptr::null(), f32::INFINITY),
        step(wide::EP_END, std::ptr::null(), 0.0),
    ];
    // Plain loops, no closures: a closure is a function of its own, compiled without the
    // caller's target features, and would time calls instead of the transforms.
    let (mut t_in, mut t_out) = (f64::INFINITY, f64::INFINITY);
    for round in 0..8 {
        let t = std::time::Instant::now();
        for _ in 0..8 {
            // SAFETY: the buffers have the sizes `s` describes (as the plan sizes them); the
            // host runs `V`'s path (the caller's contract).
            unsafe {
                if m == 2 {
                    input_f2::<V>(
                        &s,
                        inp.as_ptr(),
                        std::ptr::null_mut(),
                        v.as_mut_ptr(),
                        0,
                        rows,
                    )
                } else {
                    input_f4::<V>(
                        &s,
                        inp.as_ptr(),
                        std::ptr::null_mut(),
                        v.as_mut_ptr(),
                        0,
                        rows,
                    )
                }
            }
        }
        let t1 = t.elapsed().as_secs_f64() / 8.0;
        let t = std::time::Instant::now();
        for _ in 0..8 {
            // SAFETY: as above.
            unsafe {
                if m == 2 {
                    output_f2::<V>(&s, v.as_ptr(), out.as_mut_ptr(), &eps, c, rows, 0)
                } else {
                    output_f4::<V>(&s, v.as_ptr(), out.as_mut_ptr(), &eps, c, rows, 0)
                }
            }
        }
        let t2 = t.elapsed().as_secs_f64() / 8.0;
        // Round 0 warms up (caches, the wide units).
        if round > 0 {
            (t_in, t_out) = (t_in.min(t1), t_out.min(t2));
        }
    }
    std::hint::black_box((&v, &out));
    let per = (c * rows * txp) as f64;
    (t_in * 1e9 / per, t_out * 1e9 / per)
}

/// The cost of one variant's transforms on vectors of `tl` floats: `(variant, tl, input,
/// output)`, in multiply-add equivalents per tile and channel.
pub(crate) type TransformCost = (Variant, usize, f64, f64);

/// The transforms' costs on this host's path `isa`, per variant and vector width of the
/// transforms, in multiply-add equivalents per tile and channel (input, output): their measured
/// time ([`time_transforms`]) times the rate the path's microkernel measured ([`wide::tune`]).
/// Measured once per process and path (about a millisecond); the estimates [`TRANSFORM_COST`]
/// (path-wide vectors only) where the path is not available.
pub(crate) fn transform_costs(isa: Isa) -> Vec<TransformCost> {
    static CACHE: std::sync::Mutex<Vec<(Isa, Vec<TransformCost>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = cache.iter().find(|(i, _)| *i == isa) {
        return c.clone();
    }
    let ns = match isa {
        // SAFETY: the path is checked on the host first.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.supported() => Some(unsafe { x86::transform_ns_avx512() }),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.supported() => Some(unsafe { x86::transform_ns_avx2() }),
        _ => None,
    };
    let macs_per_ns = wide::tune(isa)
        .candidates
        .iter()
        .map(|c| c.2 / 2.0)
        .fold(0.0, f64::max);
    let costs: Vec<TransformCost> = match ns {
        Some(widths) if macs_per_ns > 0.0 => widths
            .iter()
            .flat_map(|&(tl, [f2, f4])| {
                [
                    (Variant::F2, tl, f2.0 * macs_per_ns, f2.1 * macs_per_ns),
                    (Variant::F4, tl, f4.0 * macs_per_ns, f4.1 * macs_per_ns),
                ]
            })
            .collect(),
        _ => estimated_costs(isa),
    };
    let costs = monotone(costs);
    cache.push((isa, costs.clone()));
    costs
}

/// Each variant's costs made no cheaper on narrower vectors than on wider ones (a narrow
/// vector does the same work per tile with more instructions; a measurement that says
/// otherwise is noise), so that where two widths pad a row alike the wider one is taken.
fn monotone(mut costs: Vec<TransformCost>) -> Vec<TransformCost> {
    let wider: Vec<TransformCost> = costs.clone();
    for c in &mut costs {
        for w in wider.iter().filter(|w| w.0 == c.0 && w.1 > c.1) {
            c.2 = c.2.max(w.2);
            c.3 = c.3.max(w.3);
        }
    }
    costs
}

/// The variant a layer runs with on path `isa` and the vector width of its transforms, or
/// `None` for direct convolution. `Auto` estimates both in multiply-add equivalents: direct,
/// `9 c oc` per output (rows rounded up to whole vectors); Winograd ([`winograd_cost`], with
/// the fixed [`TRANSFORM_COST`], so that the choice, which changes the rounding, is the same in
/// every run); it takes Winograd only where it saves more than 10%. F(4x4,3x3) only where its
/// error is within the budget ([`f4_within_budget`]). The variant then takes the transform
/// width cheapest by the host's measurement (the width changes no result).
pub(crate) fn choose(
    algo: crate::ConvAlgo,
    c: usize,
    oc: usize,
    oh: usize,
    ow: usize,
    isa: Isa,
) -> Option<(Variant, usize)> {
    let f4 = f4_within_budget(c);
    let cheapest_of = |costs: Vec<TransformCost>, keep: &dyn Fn(Variant) -> bool| {
        costs
            .into_iter()
            .filter(|&(v, ..)| keep(v))
            .map(|t| ((t.0, t.1), winograd_cost(t, c, oc, oh, ow, isa.lanes())))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let forced = |v: Variant| cheapest_of(transform_costs(isa), &|w| w == v).map(|(vt, _)| vt);
    match algo {
        crate::ConvAlgo::Direct => None,
        crate::ConvAlgo::Winograd => forced(if f4 { Variant::F4 } else { Variant::F2 }),
        crate::ConvAlgo::WinogradF2 => forced(Variant::F2),
        crate::ConvAlgo::WinogradF4 => forced(Variant::F4),
        crate::ConvAlgo::Auto => {
            let lanes = isa.lanes();
            let direct = 9.0 * (c * oc * oh * ow.div_ceil(lanes) * lanes) as f64;
            cheapest_of(estimated_costs(isa), &|v| v != Variant::F4 || f4)
                .filter(|&(_, w)| w < 0.9 * direct)
                .and_then(|((v, _), _)| forced(v))
        }
    }
}

/// The output rows `m` of F(m, r) down columns ([`Variant::Col`]) for an `r x 1` layer of `c`
/// -> `oc` channels on an `oh x ow` plane, or `None` for direct convolution. `Auto` takes the
/// cheapest `m` by [`col_cost`] where it saves more than 10% against direct convolution
/// (`r c oc` per output, the plane's positions rounded up to whole vectors: one flat run of
/// them where the layer pads no columns (`flat`), else each row), among the `m` within the
/// error budget ([`col_within_budget`]); `winograd` the cheapest within it;
/// `winograd-f2` / `-f4` take `m = 2` / `4` whatever the error, where the points allow.
pub(crate) fn choose_col(
    algo: crate::ConvAlgo,
    (r, c, oc, oh, ow): (usize, usize, usize, usize, usize),
    flat: bool,
    lanes: usize,
) -> Option<usize> {
    let positions = if flat {
        (oh * ow).div_ceil(lanes) * lanes
    } else {
        oh * ow.div_ceil(lanes) * lanes
    };
    let fits = |m: usize| m >= 2 && m + r - 1 <= COL_MAX_N;
    let direct = (r * c * oc * positions) as f64;
    choose_line(algo, (r, c), 2..=COL_MAX_N, &fits, direct, &|m| {
        col_cost(m, (r, c, oc, oh, ow), lanes)
    })
}

/// The choice of [`choose_col`] and [`choose_row`]: among the candidate `ms` that `fit` the
/// points, `winograd` takes the cheapest by `cost` within the error budget, `auto` the same
/// where it costs under 90% of `direct`, `winograd-f2` / `-f4` `m` = 2 / 4 if it fits.
fn choose_line(
    algo: crate::ConvAlgo,
    (r, c): (usize, usize),
    ms: impl Iterator<Item = usize>,
    fits: &dyn Fn(usize) -> bool,
    direct: f64,
    cost: &dyn Fn(usize) -> f64,
) -> Option<usize> {
    let cheapest = ms
        .filter(|&m| fits(m) && col_within_budget(m, r, c))
        .map(|m| (m, cost(m)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match algo {
        crate::ConvAlgo::Direct => None,
        crate::ConvAlgo::Winograd => cheapest.map(|(m, _)| m),
        crate::ConvAlgo::WinogradF2 => fits(2).then_some(2),
        crate::ConvAlgo::WinogradF4 => fits(4).then_some(4),
        crate::ConvAlgo::Auto => cheapest.filter(|&(_, w)| w < 0.9 * direct).map(|(m, _)| m),
    }
}

/// F(m, r) down columns' estimated work in multiply-add equivalents: `n (c +`
/// [`PRODUCT_TAPS`]`) oc` per GEMM column (each band's columns rounded up to the
/// microkernel's lanes, as [`winograd_cost`]; a 1x7 layer of 3 -> 64 channels at 112x112 ran
/// 0.39 ms direct, 0.83 as F(2, 7)), plus the
/// transforms per column of each tile row (rounded up to whole vectors): `n²` fused
/// multiply-adds per input channel, `n m` and the epilogue's `4 m` (bias, activation, stores)
/// per output channel, each worth a multiply-add per lane. Counted as a multiply and an add
/// apiece (`2 n²`, `2 n m`) the model took direct convolution where the transform ran faster
/// on both paths (AMD Zen4, one thread, ms direct / F(m, r); AVX-512 and AVX2 alike within
/// 15%): 7x1 32 -> 32 at 56x56 0.471 / 0.368, 64 -> 96 at 35x35 0.941 / 0.774, 3x1 32 -> 32
/// at 56x56 0.209 / 0.147, 5x1 24 -> 24 at 56x56 0.191 / 0.124. Still direct, as measured:
/// 7x1 16 -> 16 at 112x112 0.415 / 0.448, 3 -> 64 at 112x112 0.326 / 0.538, 3x1 8 -> 8 at
/// 56x56 0.016 / 0.022.
fn col_cost(
    m: usize,
    (r, c, oc, oh, ow): (usize, usize, usize, usize, usize),
    lanes: usize,
) -> f64 {
    let n = m + r - 1;
    let tiles_y = oh.div_ceil(m);
    let rows = crate::plan::wino_rows(n, c, oc, ow, tiles_y, lanes);
    let gemm_cols = crate::plan::wino_lane_cols(rows, ow, tiles_y, lanes);
    let columns = (tiles_y * ow.div_ceil(lanes) * lanes) as f64;
    let per_in = (n * n) as f64;
    let per_out = (n * m + 4 * m) as f64;
    let gemm = n as f64 * (c as f64 + PRODUCT_TAPS) * (oc * gemm_cols) as f64;
    gemm + columns * (c as f64 * per_in + oc as f64 * per_out)
}

/// The output columns `m` (2 or 4) of F(m, r) along the rows ([`Variant::Row`]) of a `1 x r`
/// layer, or `None` for direct convolution: as [`choose_col`], with direct convolution's
/// positions counted as its flat rows share their padding columns (`ow + max(pl, pr)` a row,
/// `pad_cols`), and the tiles of a row as the transforms' vectors across.
pub(crate) fn choose_row(
    algo: crate::ConvAlgo,
    (r, c, oc, oh, ow): (usize, usize, usize, usize, usize),
    pad_cols: usize,
    lanes: usize,
) -> Option<usize> {
    let positions = (oh * (ow + pad_cols)).div_ceil(lanes) * lanes;
    let fits = |m: usize| (m == 2 || m == 4) && m + r - 1 <= COL_MAX_N.min(8);
    let direct = (r * c * oc * positions) as f64;
    choose_line(algo, (r, c), [2, 4].into_iter(), &fits, direct, &|m| {
        row_cost(m, (r, c, oc, oh, ow), lanes)
    })
}

/// F(m, r) along rows' estimated work, as [`col_cost`]: tiles `ceil(ow / m)` a row, one image
/// row a tile row, and `m` shuffles more per output vector; its transforms (after a phase
/// split, before an interleave) counted as a multiply and an add apiece, `2 n²` and `2 n m`.
/// Where that count takes direct convolution it measured about even (AMD Zen4, one thread, ms
/// direct / F(m, r): 1x7 32 -> 32 at 56x56 0.453 / 0.411-0.464, 1x3 0.206 / 0.201, 1x5 24 ->
/// 24 0.186 / 0.167-0.180); 1x7 128 -> 128 at 17x17 it takes F(m, r), 0.73 / 0.54.
fn row_cost(
    m: usize,
    (r, c, oc, oh, ow): (usize, usize, usize, usize, usize),
    lanes: usize,
) -> f64 {
    let n = m + r - 1;
    let tx = ow.div_ceil(m);
    let rows = crate::plan::wino_rows(n, c, oc, tx, oh, lanes);
    let gemm_cols = crate::plan::wino_lane_cols(rows, tx, oh, lanes);
    let columns = (oh * tx.div_ceil(lanes) * lanes) as f64;
    let per_in = (2 * n * n) as f64;
    let per_out = (2 * n * m + 5 * m) as f64;
    let gemm = n as f64 * (c as f64 + PRODUCT_TAPS) * (oc * gemm_cols) as f64;
    gemm + columns * (c as f64 * per_in + oc as f64 * per_out)
}

/// Whether F(m, r) down columns keeps its error within the budget (`2e-5 (1 + max|y|)`, as
/// [`f4_within_budget`]) for a reduction over `c` input channels.
pub fn col_within_budget(m: usize, r: usize, c: usize) -> bool {
    let _ = c;
    m + r - 1 <= 8
}

/// What each product of a Winograd GEMM costs beyond its reduction, in taps of the reduction:
/// the microkernel stores it (its tile's sums, however short the reduction) and the output
/// transform reads it back. Direct convolution has no such intermediate, so it wins on
/// inputs of few channels. Measured on an AMD Zen4 at 1 thread, 3x3 -> 64 channels with bias
/// and relu, F(4x4) against direct (best of 3): at 224x224, 3 channels 3.9 ms against 2.3, 4
/// 4.0 / 2.9, 6 4.3 / 4.4, 8 4.3 / 5.3, 16 4.8 / 10.6; at 56x56, 3 channels 0.15 / 0.15, 4
/// 0.17 / 0.19. Without it the model chose F(4x4) for every one of them (vgg_head's 3 -> 64
/// layer 1.7x slower than direct). With 4 it picks direct up to 4 channels at 224x224.
const PRODUCT_TAPS: f64 = 4.0;

/// Winograd's estimated work on an `oh x ow` plane, in multiply-add equivalents: `n² (c +`
/// [`PRODUCT_TAPS`]`) oc` per GEMM column (the tiles of each band the planner will cut,
/// rounded up to the microkernel's `lanes`: a small plane's bands may fill few lanes), plus
/// the transforms per tile and channel (each row's tiles rounded up to whole transform
/// vectors).
fn winograd_cost(t: TransformCost, c: usize, oc: usize, oh: usize, ow: usize, lanes: usize) -> f64 {
    let (v, tl, kin, kout) = t;
    let m = v.m();
    let nn = v.n() * v.n();
    let n2 = nn as f64;
    let (tiles_y, tiles_x) = (oh.div_ceil(m), ow.div_ceil(m));
    let tiles = tiles_y * tiles_x.div_ceil(tl) * tl;
    let rows = crate::plan::wino_rows(nn, c, oc, tiles_x, tiles_y, lanes);
    let gemm_cols = crate::plan::wino_lane_cols(rows, tiles_x, tiles_y, lanes);
    let gemm = n2 * (c as f64 + PRODUCT_TAPS) * oc as f64 * gemm_cols as f64;
    gemm + tiles as f64 * (c as f64 * kin + oc as f64 * kout)
}

/// Whether F(4x4,3x3) keeps its error within the budget (`2e-5 (1 + max|y|)`) for a reduction
/// over `c` input channels. Its error grows about as `sqrt(c)`; measured (AVX2, inputs with a
/// dynamic range of 10^6, worst of 3 seeds; `tests/wino.rs`): C = 16 3.7e-6, 64 5.6e-6, 512
/// 2.0e-5, 2048 2.6e-5. The rule keeps a margin: C <= 256 (about 1.4e-5). F(2x2,3x3) stays
/// under 2e-6 at C = 2048, below direct convolution's own error.
pub fn f4_within_budget(c: usize) -> bool {
    c <= 256
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Aᵀ [(G g) ⊙ (Bᵀ d)]` is the correlation `y_i = Σ_k g_k d_(i+k)` for every `(m, r)` the
    /// points allow, in f64 on pseudo-random data; and no matrices past [`COL_MAX_N`].
    #[test]
    fn col_matrices_compute_the_correlation() {
        for r in 1..=COL_MAX_N {
            for m in 1..=COL_MAX_N {
                let n = m + r - 1;
                let Some((bt, at, g)) = col_matrices(m, r) else {
                    assert!(n > COL_MAX_N || n < 2, "F({m},{r})");
                    continue;
                };
                let val = |i: usize| ((i * 7919 + 13) % 97) as f64 / 48.0 - 1.0;
                let gk: Vec<f64> = (0..r).map(|k| val(k + 50)).collect();
                let d: Vec<f64> = (0..n).map(val).collect();
                let u: Vec<f64> = (0..n)
                    .map(|j| (0..r).map(|k| g[j * r + k] * gk[k]).sum())
                    .collect();
                let v: Vec<f64> = (0..n)
                    .map(|j| (0..n).map(|l| bt[j * n + l] * d[l]).sum())
                    .collect();
                for i in 0..m {
                    let y: f64 = (0..n).map(|j| at[i * n + j] * u[j] * v[j]).sum();
                    let want: f64 = (0..r).map(|k| gk[k] * d[i + k]).sum();
                    assert!((y - want).abs() < 1e-9, "F({m},{r}) row {i}: {y} vs {want}");
                }
            }
        }
    }

    /// The packed stream against its definition, built the plain way: per product, per block,
    /// per input channel the offset then `(G g Gᵀ)[i][j]` of each channel of the block, that
    /// product computed directly (`Σ G[i][a] g[a][b] G[j][b]`).
    #[test]
    fn packed_weights_are_the_transformed_kernels_in_stream_order() {
        for v in [Variant::F2, Variant::F4] {
            for (oc, c, ocb, cols) in [(5, 3, 2, 7), (12, 4, 12, 16), (13, 2, 6, 1)] {
                let w: Vec<f32> = (0..oc * c * 9)
                    .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
                    .collect();
                let got = pack_weights(&w, oc, c, v, ocb, cols).expect("packed");
                let n = v.n();
                let g = g_matrix(v);
                let mut want = Vec::new();
                for xi in 0..n * n {
                    let (i, j) = (xi / n, xi % n);
                    for o0 in (0..oc).step_by(ocb) {
                        for ci in 0..c {
                            let d = if ci + 1 < c { (cols * 4) as i64 } else { 0 };
                            let u = (o0..(o0 + ocb).min(oc)).map(|o| {
                                let k = &w[(o * c + ci) * 9..][..9];
                                let mut s = 0f64;
                                for a in 0..3 {
                                    for b in 0..3 {
                                        s += g[i][a] * f64::from(k[a * 3 + b]) * g[j][b];
                                    }
                                }
                                s as f32
                            });
                            crate::packed::push_tap(&mut want, d, u, 1);
                        }
                    }
                }
                assert_eq!(got.len(), want.len());
                for (p, (a, b)) in got.iter().zip(&want).enumerate() {
                    let close = (a - b).abs() <= 1e-6 * (1.0 + b.abs());
                    assert!(a.to_bits() == b.to_bits() || close, "{v:?} {oc}x{c}: {p}");
                }
            }
        }
    }
}
