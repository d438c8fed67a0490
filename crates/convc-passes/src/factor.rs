//! The decompositions of one conv: reshapes of its weights into matrices, their SVDs (faer, in
//! f64), truncation errors, the two layers of each form and their factor weights.
//!
//! For weights `W[o, c, i, j]` of shape `[O, C/g, KH, KW]` with `g` groups (`Og = O/g`,
//! `Cg = C/g`), three forms, each a pair of convs:
//!
//! | form | matrices (one SVD each) | first layer | second layer |
//! |---|---|---|---|
//! | [`Form::Asymmetric`] | per group, `A[(c,i), (o,j)]`, `Cg*KH x Og*KW` | `KHx1`, `C -> g*r`, groups `g`, weights `U[:,m]*sqrt(s_m)` | `1xKW`, `g*r -> O`, groups `g`, weights `sqrt(s_m)*V[:,m]`, the bias |
//! | [`Form::AsymmetricPerOutput`] | per output channel, `M_o[(c,i), j]`, `Cg*KH x KW` | `KHx1`, `C -> O*r`, groups `g` | `1xKW`, `O*r -> O`, groups `O` (each output reads its own `r` channels), the bias |
//! | [`Form::DepthwiseSeparable`] | per input channel, `B_c[o, (i,j)]`, `Og x KH*KW` | depthwise `KHxKW`, `C -> C*r`, groups `C`, weights `sqrt(s_m)*V[:,m]` | pointwise `1x1`, `C*r -> O`, groups `g`, weights `U[:,m]*sqrt(s_m)`, the bias |
//!
//! The first layer takes the original stride, dilation and padding on its axes (all of them for
//! the depthwise layer), the second the rest: the vertical layer of an asymmetric form gets the
//! vertical stride, dilation and padding (stride `[SH, 1]`), the horizontal one the horizontal
//! ones (stride `[1, SW]`). `pad=same` stays `same` on both: on an axis where a layer's kernel is
//! 1 and its stride 1, `SAME_UPPER` pads nothing, so each layer pads exactly the axis it owns.
//! The pointwise layer has no padding.
//!
//! The relative error of keeping rank `r` is `sqrt(sum over matrices of sum_{m>=r} s_m^2) /
//! ||W||_F`: the matrices partition the weights, so their squared Frobenius norms add up.

use convc_ir::{Conv, Pad};

/// A decomposed form of a conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    /// `KHx1` then `1xKW`, sharing `r` intermediate channels per group.
    Asymmetric,
    /// `KHx1` then a `1xKW` grouped by output channel: `r` intermediate channels per output.
    AsymmetricPerOutput,
    /// Depthwise `KHxKW` with multiplier `r`, then pointwise `1x1`.
    DepthwiseSeparable,
}

impl Form {
    /// Every form, in the order ties are broken.
    pub const ALL: [Form; 3] = [
        Form::Asymmetric,
        Form::AsymmetricPerOutput,
        Form::DepthwiseSeparable,
    ];

    /// The name used in reports and `explain`.
    pub fn name(&self) -> &'static str {
        match self {
            Form::Asymmetric => "asymmetric",
            Form::AsymmetricPerOutput => "asymmetric per output",
            Form::DepthwiseSeparable => "depthwise-separable",
        }
    }

    /// The suffixes of the two new layers' names (`{layer}.v`, `{layer}.h`, `{layer}.dw`,
    /// `{layer}.pw`).
    pub fn suffixes(&self) -> [&'static str; 2] {
        match self {
            Form::Asymmetric | Form::AsymmetricPerOutput => ["v", "h"],
            Form::DepthwiseSeparable => ["dw", "pw"],
        }
    }

    /// The letter used for the rank: `r` for the asymmetric forms, `m` (the multiplier) for the
    /// depthwise-separable one.
    pub fn rank_letter(&self) -> &'static str {
        match self {
            Form::Asymmetric => "r",
            Form::AsymmetricPerOutput => "q",
            Form::DepthwiseSeparable => "m",
        }
    }
}

impl std::fmt::Display for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The channel and kernel sizes of a conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geom {
    /// Input channels `C`.
    pub c: usize,
    /// Output channels `O`.
    pub o: usize,
    /// Groups.
    pub g: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

impl Geom {
    /// The geometry of `conv` applied to `in_ch` channels, when it is consistent.
    pub fn of(conv: &Conv, in_ch: usize) -> Option<Geom> {
        let g = conv.groups;
        let geom = Geom {
            c: in_ch,
            o: conv.out,
            g,
            kh: conv.kernel[0],
            kw: conv.kernel[1],
        };
        let ok = g > 0
            && in_ch > 0
            && conv.out > 0
            && in_ch.is_multiple_of(g)
            && conv.out.is_multiple_of(g)
            && geom.kh > 0
            && geom.kw > 0
            && conv.weight.data.shape() == [conv.out, in_ch / g, geom.kh, geom.kw];
        ok.then_some(geom)
    }
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.c / self.g
    }
    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.o / self.g
    }
    /// True for a depthwise conv: one input channel per group, more than one group.
    pub fn is_depthwise(&self) -> bool {
        self.cg() == 1 && self.g > 1
    }
    /// The forms worth considering for this conv: none for a 1x1 kernel; only
    /// depthwise-separable for a `1xK` or `Kx1` (already asymmetric) kernel; only the
    /// asymmetric ones for a depthwise conv (the per-output one only when it differs, i.e. with a
    /// multiplier above 1); all three otherwise (the per-output one only when it differs from
    /// the shared one, i.e. with more than one output channel per group).
    pub fn candidates(&self) -> Vec<Form> {
        if self.kh == 1 && self.kw == 1 {
            return Vec::new();
        }
        if self.kh == 1 || self.kw == 1 {
            return if self.is_depthwise() {
                Vec::new()
            } else {
                vec![Form::DepthwiseSeparable]
            };
        }
        let mut v = vec![Form::Asymmetric];
        if self.og() > 1 {
            v.push(Form::AsymmetricPerOutput);
        }
        if !self.is_depthwise() {
            v.push(Form::DepthwiseSeparable);
        }
        v
    }
    /// The number of matrices of a form and the size `(rows, cols)` of each.
    pub fn matrices(&self, form: Form) -> (usize, usize, usize) {
        match form {
            Form::Asymmetric => (self.g, self.cg() * self.kh, self.og() * self.kw),
            Form::AsymmetricPerOutput => (self.o, self.cg() * self.kh, self.kw),
            Form::DepthwiseSeparable => (self.c, self.og(), self.kh * self.kw),
        }
    }
    /// The work of factoring a form, about the floating-point operations of its SVDs:
    /// `count * rows * cols * min(rows, cols)`.
    pub fn svd_work(&self, form: Form) -> u128 {
        let (count, rows, cols) = self.matrices(form);
        count as u128 * rows as u128 * cols as u128 * rows.min(cols) as u128
    }
    /// True when a form is too large to factor (see [`MAX_SVD_WORK`]).
    pub fn too_large(&self, form: Form) -> bool {
        self.svd_work(form) > MAX_SVD_WORK
    }
    /// The largest rank a form can need: `min(rows, cols)` of its matrices.
    pub fn max_rank(&self, form: Form) -> usize {
        let (_, r, c) = self.matrices(form);
        r.min(c)
    }
    /// The index into the weights of element `(row, col)` of matrix `t` of a form.
    pub(crate) fn index(&self, form: Form, t: usize, row: usize, col: usize) -> usize {
        let (cg, og, kh, kw) = (self.cg(), self.og(), self.kh, self.kw);
        let (o, c, i, j) = match form {
            Form::Asymmetric => (t * og + col / kw, row / kh, row % kh, col % kw),
            Form::AsymmetricPerOutput => (t, row / kh, row % kh, col),
            Form::DepthwiseSeparable => ((t / cg) * og + row, t % cg, col / kw, col % kw),
        };
        ((o * cg + c) * kh + i) * kw + j
    }
}

/// The most work ([`Geom::svd_work`]) spent on factoring one form of one conv: 2^32, a few
/// seconds (a 1600 x 1600 matrix, e.g. a 3x3 conv with 512 input and output channels, is
/// 2^32). Larger forms are skipped with a note, so that no conv makes a pass or `explain`
/// run for hours: the work grows with the cube of the matrix size.
pub const MAX_SVD_WORK: u128 = 1 << 32;

/// The thin SVD of one matrix: `A = U diag(s) V^T`, singular values non-increasing.
#[derive(Clone, Debug)]
struct Svd {
    s: Vec<f64>,
    /// `rows x k`, column-major.
    u: Vec<f64>,
    /// `cols x k`, column-major.
    v: Vec<f64>,
    rows: usize,
    cols: usize,
}

fn svd(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Option<Svd> {
    let a = faer::Mat::<f64>::from_fn(rows, cols, f);
    let d = a.thin_svd().ok()?;
    let k = rows.min(cols);
    let (u, v, s) = (d.U(), d.V(), d.S().column_vector());
    if u.nrows() != rows || u.ncols() < k || v.nrows() != cols || v.ncols() < k || s.nrows() < k {
        return None;
    }
    let s: Vec<f64> = (0..k).map(|m| s[m]).collect();
    let uu: Vec<f64> = (0..k)
        .flat_map(|m| (0..rows).map(move |i| u[(i, m)]))
        .collect();
    let vv: Vec<f64> = (0..k)
        .flat_map(|m| (0..cols).map(move |j| v[(j, m)]))
        .collect();
    if s.iter().chain(&uu).chain(&vv).any(|x| !x.is_finite()) {
        return None;
    }
    Some(Svd {
        s,
        u: uu,
        v: vv,
        rows,
        cols,
    })
}

/// The singular values of one matrix, non-increasing.
fn singular_values(rows: usize, cols: usize, f: impl Fn(usize, usize) -> f64) -> Option<Vec<f64>> {
    let a = faer::Mat::<f64>::from_fn(rows, cols, f);
    let mut s = a.singular_values().ok()?;
    s.truncate(rows.min(cols));
    if s.len() != rows.min(cols) || s.iter().any(|x| !x.is_finite()) {
        return None;
    }
    s.sort_by(|a, b| b.total_cmp(a));
    Some(s)
}

/// `||W||_F` of f32 weights, summed in f64.
pub fn frobenius(weights: &[f32]) -> f64 {
    weights
        .iter()
        .map(|&w| (w as f64) * (w as f64))
        .sum::<f64>()
        .sqrt()
}

/// One form of one conv's weights, factorised: every matrix's singular values, and (computed
/// when factors are first asked for) the full SVDs.
#[derive(Clone, Debug)]
pub struct Factorization {
    /// The form.
    pub form: Form,
    /// The conv's geometry.
    pub geom: Geom,
    /// The weights, row-major `[O, C/g, KH, KW]`.
    weights: Vec<f32>,
    /// Singular values of each matrix.
    values: Vec<Vec<f64>>,
    /// Full SVDs, computed on first use (shared by clones).
    svds: std::sync::Arc<std::sync::OnceLock<Option<Vec<Svd>>>>,
    /// `||W||_F`, computed directly from the weights in f64.
    pub norm: f64,
    /// Squared dropped mass per rank: `tail[r] = sum over matrices of sum_{m>=r} s_m^2`.
    tail: Vec<f64>,
}

impl Factorization {
    /// Factorises `weights` (`[O, C/g, KH, KW]`, row-major) in `form` (singular values only;
    /// the singular vectors are computed when [`factors`](Self::factors) first needs them).
    /// `None` when the weights do not fit the geometry, are not finite, the form is
    /// [too large](Geom::too_large), or an SVD fails to converge.
    pub fn new(form: Form, geom: Geom, weights: &[f32]) -> Option<Factorization> {
        let (count, rows, cols) = geom.matrices(form);
        if weights.len() != geom.o * geom.cg() * geom.kh * geom.kw
            || geom.too_large(form)
            || weights.iter().any(|w| !w.is_finite())
        {
            return None;
        }
        let mut values = Vec::with_capacity(count);
        for t in 0..count {
            values.push(singular_values(rows, cols, |r, c| {
                weights[geom.index(form, t, r, c)] as f64
            })?);
        }
        let norm = frobenius(weights);
        let k = rows.min(cols);
        let mut tail = vec![0.0; k + 1];
        for r in (0..k).rev() {
            tail[r] = tail[r + 1] + values.iter().map(|s| s[r] * s[r]).sum::<f64>();
        }
        Some(Factorization {
            form,
            geom,
            weights: weights.to_vec(),
            values,
            svds: Default::default(),
            norm,
            tail,
        })
    }

    /// The full SVDs of every matrix (computed once).
    fn svds(&self) -> Option<&[Svd]> {
        self.svds
            .get_or_init(|| {
                let (count, rows, cols) = self.geom.matrices(self.form);
                (0..count)
                    .map(|t| {
                        svd(rows, cols, |r, c| {
                            self.weights[self.geom.index(self.form, t, r, c)] as f64
                        })
                    })
                    .collect()
            })
            .as_deref()
    }

    /// True when these are the factorisations of exactly `weights`.
    pub fn has_weights(&self, weights: &[f32]) -> bool {
        self.weights.len() == weights.len()
            && self
                .weights
                .iter()
                .zip(weights)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }

    /// About the bytes this factorisation holds once its full SVDs are computed.
    pub fn bytes(&self) -> usize {
        let (count, rows, cols) = self.geom.matrices(self.form);
        let k = rows.min(cols);
        4 * self.weights.len() + 8 * count * k * (rows + cols + 2)
    }

    /// The largest rank: beyond it the form is exact by construction.
    pub fn max_rank(&self) -> usize {
        self.tail.len() - 1
    }

    /// The relative error of keeping rank `r` (0 for `r >= max_rank`, and for all-zero weights).
    pub fn error(&self, r: usize) -> f64 {
        if self.norm == 0.0 || r >= self.max_rank() {
            return 0.0;
        }
        (self.tail[r].max(0.0).sqrt() / self.norm).min(1.0)
    }

    /// The smallest rank whose error is at most `tol` (0 only for all-zero weights).
    pub fn rank_for(&self, tol: f64) -> usize {
        if self.norm == 0.0 {
            return 0;
        }
        (1..=self.max_rank())
            .find(|&r| self.error(r) <= tol)
            .unwrap_or(self.max_rank())
    }

    /// The rank needed to be exact: the smallest whose error is at most
    /// [`EXACT_TOLERANCE`](crate::EXACT_TOLERANCE) (1e-6), so every dropped singular value is
    /// below 1e-6 of `||W||_F`.
    pub fn exact_rank(&self) -> usize {
        self.rank_for(crate::EXACT_TOLERANCE)
    }

    /// The largest singular value over all matrices.
    pub fn largest_singular_value(&self) -> f64 {
        self.values
            .iter()
            .filter_map(|s| s.first().copied())
            .fold(0.0, f64::max)
    }

    /// The singular values of each matrix, non-increasing.
    pub fn singular_values(&self) -> &[Vec<f64>] {
        &self.values
    }

    /// The weights of the two layers at rank `r` (`1 <= r <= max_rank`), as f32 row-major data
    /// with the shapes of [`layers`]`(form, r, ..)`. `None` if the full SVD fails to converge.
    pub fn factors(&self, r: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let svds = self.svds()?;
        let Geom { c, o, kh, kw, .. } = self.geom;
        let (cg, og) = (self.geom.cg(), self.geom.og());
        let r = r.min(self.max_rank());
        let mut f1;
        let mut f2;
        let sq = |d: &Svd, m: usize| d.s[m].max(0.0).sqrt();
        match self.form {
            Form::Asymmetric => {
                // f1: [g*r, cg, kh, 1]; f2: [o, r, 1, kw].
                f1 = vec![0f32; self.geom.g * r * cg * kh];
                f2 = vec![0f32; o * r * kw];
                for (gi, d) in svds.iter().enumerate() {
                    for m in 0..r {
                        let s = sq(d, m);
                        for row in 0..d.rows {
                            f1[(gi * r + m) * cg * kh + row] = (d.u[m * d.rows + row] * s) as f32;
                        }
                        for col in 0..d.cols {
                            let (ol, j) = (col / kw, col % kw);
                            f2[((gi * og + ol) * r + m) * kw + j] =
                                (s * d.v[m * d.cols + col]) as f32;
                        }
                    }
                }
            }
            Form::AsymmetricPerOutput => {
                // f1: [o*r, cg, kh, 1]; f2: [o, r, 1, kw].
                f1 = vec![0f32; o * r * cg * kh];
                f2 = vec![0f32; o * r * kw];
                for (t, d) in svds.iter().enumerate() {
                    for m in 0..r {
                        let s = sq(d, m);
                        for row in 0..d.rows {
                            f1[(t * r + m) * cg * kh + row] = (d.u[m * d.rows + row] * s) as f32;
                        }
                        for j in 0..d.cols {
                            f2[(t * r + m) * kw + j] = (s * d.v[m * d.cols + j]) as f32;
                        }
                    }
                }
            }
            Form::DepthwiseSeparable => {
                // f1: [c*r, 1, kh, kw]; f2: [o, cg*r, 1, 1].
                f1 = vec![0f32; c * r * kh * kw];
                f2 = vec![0f32; o * cg * r];
                for (t, d) in svds.iter().enumerate() {
                    let (gi, cl) = (t / cg, t % cg);
                    for m in 0..r {
                        let s = sq(d, m);
                        for col in 0..d.cols {
                            f1[(t * r + m) * kh * kw + col] = (s * d.v[m * d.cols + col]) as f32;
                        }
                        for ol in 0..d.rows {
                            f2[(gi * og + ol) * cg * r + cl * r + m] =
                                (d.u[m * d.rows + ol] * s) as f32;
                        }
                    }
                }
            }
        }
        Some((f1, f2))
    }

    /// The weights `[O, C/g, KH, KW]` that two layers of this form with factor weights `f1`,
    /// `f2` at rank `r` compute together, in f64.
    pub fn reconstruct(&self, r: usize, f1: &[f32], f2: &[f32]) -> Vec<f64> {
        let Geom { o, kh, kw, .. } = self.geom;
        let (cg, og) = (self.geom.cg(), self.geom.og());
        let mut w = vec![0f64; o * cg * kh * kw];
        for oo in 0..o {
            let gi = oo / og;
            for cl in 0..cg {
                for i in 0..kh {
                    for j in 0..kw {
                        let mut acc = 0f64;
                        for m in 0..r {
                            let (a, b) = match self.form {
                                Form::Asymmetric => (
                                    f2[(oo * r + m) * kw + j],
                                    f1[((gi * r + m) * cg + cl) * kh + i],
                                ),
                                Form::AsymmetricPerOutput => (
                                    f2[(oo * r + m) * kw + j],
                                    f1[((oo * r + m) * cg + cl) * kh + i],
                                ),
                                Form::DepthwiseSeparable => {
                                    let c = gi * cg + cl;
                                    (
                                        f2[oo * cg * r + cl * r + m],
                                        f1[((c * r + m) * kh + i) * kw + j],
                                    )
                                }
                            };
                            acc += a as f64 * b as f64;
                        }
                        w[((oo * cg + cl) * kh + i) * kw + j] = acc;
                    }
                }
            }
        }
        w
    }

    /// The relative weight-space error of factor weights at rank `r`, measured by reconstructing
    /// the weights from them (so it includes the rounding of the factors to f32).
    pub fn measured_error(&self, r: usize, f1: &[f32], f2: &[f32]) -> f64 {
        if self.norm == 0.0 {
            return 0.0;
        }
        let rec = self.reconstruct(r, f1, f2);
        let diff: f64 = rec
            .iter()
            .zip(&self.weights)
            .map(|(a, &b)| (a - b as f64) * (a - b as f64))
            .sum();
        diff.sqrt() / self.norm
    }
}

/// One layer of a form, without its weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// The name suffix (`v`, `h`, `dw`, `pw`).
    pub suffix: &'static str,
    /// Input channels.
    pub in_ch: usize,
    /// Output channels.
    pub out: usize,
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[SH, SW]`.
    pub stride: [usize; 2],
    /// `[DH, DW]`.
    pub dilation: [usize; 2],
    /// Padding.
    pub pad: Pad,
    /// Groups.
    pub groups: usize,
}

impl LayerSpec {
    /// The weight shape `[out, in/groups, KH, KW]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out,
            self.in_ch / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }
    /// Weights per layer = MACs per output pixel of this layer.
    pub fn weights(&self) -> u64 {
        self.weight_shape().iter().map(|&d| d as u64).product()
    }
}

/// The two layers of `form` at rank `r` replacing `conv` (applied to `in_ch` channels).
pub fn layers(form: Form, r: usize, conv: &Conv, in_ch: usize) -> [LayerSpec; 2] {
    let [kh, kw] = conv.kernel;
    let [sh, sw] = conv.stride;
    let [dh, dw] = conv.dilation;
    let (g, o) = (conv.groups, conv.out);
    let (pv, ph) = match conv.pad {
        Pad::Same => (Pad::Same, Pad::Same),
        Pad::Explicit([t, b, l, rr]) => (Pad::Explicit([t, b, 0, 0]), Pad::Explicit([0, 0, l, rr])),
    };
    match form {
        Form::Asymmetric | Form::AsymmetricPerOutput => {
            let (mid, hgroups) = if form == Form::Asymmetric {
                (g * r, g)
            } else {
                (o * r, o)
            };
            [
                LayerSpec {
                    suffix: "v",
                    in_ch,
                    out: mid,
                    kernel: [kh, 1],
                    stride: [sh, 1],
                    dilation: [dh, 1],
                    pad: pv,
                    groups: g,
                },
                LayerSpec {
                    suffix: "h",
                    in_ch: mid,
                    out: o,
                    kernel: [1, kw],
                    stride: [1, sw],
                    dilation: [1, dw],
                    pad: ph,
                    groups: hgroups,
                },
            ]
        }
        Form::DepthwiseSeparable => [
            LayerSpec {
                suffix: "dw",
                in_ch,
                out: in_ch * r,
                kernel: conv.kernel,
                stride: conv.stride,
                dilation: conv.dilation,
                pad: conv.pad,
                groups: in_ch,
            },
            LayerSpec {
                suffix: "pw",
                in_ch: in_ch * r,
                out: o,
                kernel: [1, 1],
                stride: [1, 1],
                dilation: [1, 1],
                pad: Pad::Explicit([0; 4]),
                groups: g,
            },
        ],
    }
}
