//! `decompose`: rewrites a conv into the cheapest of its decomposed forms (see [`crate::factor`])
//! whose error is within the tolerance, when that is cheaper than the conv by the cost model.
//!
//! # Cost model
//!
//! The cost of a layer, in MAC-equivalents per output pixel of the original conv, is
//!
//! ```text
//! cost = sum over the new layers of  MACs per pixel of the layer x (its output pixels / the conv's output pixels)
//!      + INTERMEDIATE_COST x (channels of the intermediate tensor) x (its pixels / the conv's output pixels)
//! ```
//!
//! with [`INTERMEDIATE_COST`] `= 2`: each element of the intermediate tensor is written once
//! and read once, and each access is counted like one MAC. The standard conv costs its MACs
//! per pixel, `O * C/g * KH * KW`, and has no intermediate tensor. The pixel ratio is 1 for the
//! depthwise-separable form (the depthwise layer already has the final resolution); for the
//! asymmetric forms the vertical layer produces `OH x W` pixels (every input column, since the
//! horizontal stride and padding belong to the horizontal layer), so the ratio is `W / OW`
//! when the sizes are known and `SW` (its limit) when they are symbolic.
//!
//! For each form the smallest rank within the tolerance is taken (the cost grows with the
//! rank); if rounding the factors to f32 pushes the measured error above the tolerance the
//! next rank is tried. The form of least cost wins (ties: asymmetric, asymmetric per output,
//! depthwise-separable); the conv is rewritten only if that cost is strictly below its own.
//!
//! Degenerate cases: all-zero weights (rank 0) are left alone (a report note says so: such a
//! layer outputs its bias); so are weights that are not finite or whose SVD fails; the rank of
//! a rewrite is always at least 1.

use std::fmt;

use convc_ir::{Conv, Graph, Node, NodeIndex, Op, Param, Source, cost, shape};
use convc_tensor::Tensor;

use crate::factor::{Factorization, Form, Geom, LayerSpec, layers};
use crate::{Pass, PassContext, PassError, PassReport, fresh_name, screen};

/// The cost, in MACs, of writing and reading one element of the intermediate tensor of a
/// decomposed form (one write + one read, each counted as one MAC).
pub const INTERMEDIATE_COST: f64 = 2.0;

/// The decomposition pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Decompose;

/// One conv rewritten into a decomposed form.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewrite {
    /// The conv that was replaced.
    pub layer: String,
    /// The form it became.
    pub form: Form,
    /// The rank kept (`r` for the asymmetric forms, the multiplier for depthwise-separable).
    pub rank: usize,
    /// The relative weight-space error `||W - W'||_F / ||W||_F` of the new layers, measured by
    /// reconstructing `W'` from their f32 weights.
    pub rel_error: f64,
    /// The names of the two new layers (the second computes the old layer's value).
    pub new_layers: [String; 2],
    /// Total MACs of the conv, when sizes are known (`cost::node_cost`).
    pub macs_before: Option<u64>,
    /// Total MACs of the new layers, when sizes are known (sum of `cost::node_cost`).
    pub macs_after: Option<u64>,
    /// MACs per output pixel of the conv.
    pub macs_per_pixel_before: u64,
    /// MACs per output pixel of the new layers, each per its own output pixel, summed (as
    /// `cost::totals` sums them).
    pub macs_per_pixel_after: u64,
    /// The cost model's figure for the conv.
    pub cost_before: f64,
    /// The cost model's figure for the new layers.
    pub cost_after: f64,
}

impl Rewrite {
    /// True when the rewrite is lossy: its error is above [`crate::EXACT_TOLERANCE`].
    pub fn is_truncation(&self) -> bool {
        self.rel_error > crate::EXACT_TOLERANCE
    }
}

impl fmt::Display for Rewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, after) = match (self.macs_before, self.macs_after) {
            (Some(b), Some(a)) => (cost::human(b), cost::human(a)),
            _ => (
                format!("{}/px", cost::human(self.macs_per_pixel_before)),
                format!("{}/px", cost::human(self.macs_per_pixel_after)),
            ),
        };
        write!(
            f,
            "`{}` -> {} rank {} (`{}`, `{}`): relative error {:.2e}{}, MACs {} -> {}",
            self.layer,
            self.form,
            self.rank,
            self.new_layers[0],
            self.new_layers[1],
            self.rel_error,
            if self.is_truncation() {
                " (truncated, lossy)"
            } else {
                ""
            },
            before,
            after
        )
    }
}

/// The cost-model figure of a standard conv of geometry `geom`.
pub fn standard_cost(geom: &Geom) -> f64 {
    (geom.o * geom.cg() * geom.kh * geom.kw) as f64
}

/// The cost-model figure of the two layers `specs` of `form`, where `ratio` is the number of
/// pixels of an asymmetric form's vertical layer per output pixel (see the module docs).
pub fn form_cost(form: Form, specs: &[LayerSpec; 2], ratio: f64) -> f64 {
    let first = match form {
        Form::DepthwiseSeparable => 1.0,
        Form::Asymmetric | Form::AsymmetricPerOutput => ratio,
    };
    first * (specs[0].weights() as f64 + INTERMEDIATE_COST * specs[0].out as f64)
        + specs[1].weights() as f64
}

/// Pixels of an asymmetric form's vertical layer per output pixel of conv node `n`: `W / OW`
/// when both are known, else the horizontal stride.
pub fn vertical_ratio(g: &Graph, n: NodeIndex, conv: &Conv) -> f64 {
    let input_w = g
        .operands(n)
        .first()
        .and_then(|&x| g.node(x).shape.hw())
        .map(|(_, w)| w);
    match (input_w, g.node(n).shape.hw()) {
        (Some(w), Some((_, ow))) if ow > 0 => w as f64 / ow as f64,
        _ => conv.stride[1].max(1) as f64,
    }
}

/// The chosen rewrite of one conv, before it is applied.
pub(crate) struct Plan {
    pub(crate) form: Form,
    pub(crate) rank: usize,
    pub(crate) rel_error: f64,
    pub(crate) f1: Vec<f32>,
    pub(crate) f2: Vec<f32>,
    pub(crate) cost: f64,
}

/// The best plan of one form, if any is within `tol` and cheaper than `limit`.
fn plan_form(
    fact: &Factorization,
    conv: &Conv,
    in_ch: usize,
    ratio: f64,
    tol: f64,
    limit: f64,
) -> Option<Plan> {
    let mut r = fact.rank_for(tol).max(1);
    while r <= fact.max_rank() {
        let cost = form_cost(fact.form, &layers(fact.form, r, conv, in_ch), ratio);
        if cost >= limit {
            return None;
        }
        let (f1, f2) = fact.factors(r)?;
        let rel_error = fact.measured_error(r, &f1, &f2);
        if rel_error <= tol {
            return Some(Plan {
                form: fact.form,
                rank: r,
                rel_error,
                f1,
                f2,
                cost,
            });
        }
        r += 1;
    }
    None
}

/// The cheapest plan over the factorisations `facts` of one conv within `tol`, if it is
/// cheaper than the conv itself.
pub(crate) fn choose(
    facts: &[Factorization],
    conv: &Conv,
    in_ch: usize,
    ratio: f64,
    tol: f64,
) -> Option<Plan> {
    let standard = standard_cost(&facts.first()?.geom);
    let mut best: Option<Plan> = None;
    for fact in facts {
        let limit = best.as_ref().map_or(standard, |b| b.cost);
        if let Some(p) = plan_form(fact, conv, in_ch, ratio, tol, limit) {
            best = Some(p);
        }
    }
    best
}

fn new_conv(spec: &LayerSpec, data: Vec<f32>, source: Source, bias: Option<Param>) -> Option<Conv> {
    let weight = Tensor::new(spec.weight_shape().to_vec(), data).ok()?;
    Some(Conv {
        out: spec.out,
        kernel: spec.kernel,
        stride: spec.stride,
        dilation: spec.dilation,
        pad: spec.pad,
        groups: spec.groups,
        weight: Param::new(weight, source),
        bias,
    })
}

/// The factorisations of the forms of conv `name` (geometry `geom`, finite weights not all
/// zero) that may give a rewrite within `tol`: a form that is too large is skipped with a note,
/// a form the [`screen`] proves cannot pay is skipped silently, the others are factored (or
/// taken from the [`cache`](crate::cache)). `choose` on the result decides as it would on every
/// form's factorisation.
pub(crate) fn factor_forms(
    name: &str,
    conv: &Conv,
    geom: Geom,
    in_ch: usize,
    ratio: f64,
    tol: f64,
    notes: &mut Vec<String>,
) -> Vec<Factorization> {
    let weights = conv.weight.data.data();
    let norm = crate::factor::frobenius(weights);
    let mut facts = Vec::new();
    let hashed = crate::cache::Hashed::new(weights);
    for form in geom.candidates() {
        if geom.too_large(form) {
            let (count, rows, cols) = geom.matrices(form);
            notes.push(format!(
                "`{name}`: the {form} form is too large to factor ({count} matri{} of {rows}x{cols}); form skipped",
                if count == 1 { "x" } else { "ces" }
            ));
            continue;
        }
        let key = hashed.key(form, geom);
        if let Some(f) = crate::cache::factorization(&key, weights) {
            facts.push(f);
            continue;
        }
        let k = screen::break_even_rank(form, &geom, conv, in_ch, ratio);
        let ruled = crate::cache::ruled_out(&key, k, tol, || {
            screen::rules_out(form, &geom, weights, k, tol, norm)
        });
        if ruled {
            continue;
        }
        match crate::cache::factor(&key, form, geom, weights) {
            Some(f) => facts.push(f),
            None => notes.push(format!(
                "`{name}`: the SVD for the {form} form failed; form skipped"
            )),
        }
    }
    facts
}

/// Replaces conv node `n` by the two layers of `plan`; `None` (graph untouched) if the new
/// layers would not reproduce the node's shape.
pub(crate) fn apply(
    g: &mut Graph,
    n: NodeIndex,
    conv: &Conv,
    in_ch: usize,
    plan: Plan,
) -> Option<[NodeIndex; 2]> {
    let x = *g.operands(n).first()?;
    let node = g.node(n).clone();
    let specs = layers(plan.form, plan.rank, conv, in_ch);
    let src = Source::Derived(format!(
        "decompose {} rank {} of {}",
        plan.form, plan.rank, node.name
    ));
    let c1 = new_conv(&specs[0], plan.f1, src.clone(), None)?;
    let c2 = new_conv(&specs[1], plan.f2, src, conv.bias.clone())?;
    let (op1, op2) = (Op::Conv(c1), Op::Conv(c2));
    let s1 = shape::infer(&op1, &[&g.node(x).shape]).ok()?;
    let s2 = shape::infer(&op2, &[&s1]).ok()?;
    if s2 != node.shape {
        return None;
    }
    let [a, b] = plan.form.suffixes();
    let n1 = Node {
        name: fresh_name(g, &format!("{}.{a}", node.name)),
        op: op1,
        span: node.span,
        shape: s1,
        folded: Vec::new(),
    };
    let v = g.add(n1, &[x]);
    let n2 = Node {
        name: fresh_name(g, &format!("{}.{b}", node.name)),
        op: op2,
        span: node.span,
        shape: s2,
        folded: node.folded.clone(),
    };
    let h = g.add(n2, &[v]);
    g.replace_uses(n, h);
    g.remove(n);
    Some([v, h])
}

impl Pass for Decompose {
    fn name(&self) -> &'static str {
        "decompose"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<PassReport, PassError> {
        cx.check()?;
        let tol = cx.effective_tolerance();
        let mut report = PassReport::new(self.name());
        for n in g.topo_order() {
            let Op::Conv(conv) = &g.node(n).op else {
                continue;
            };
            let conv = conv.clone();
            let name = g.node(n).name.clone();
            let Some(&x) = g.operands(n).first() else {
                continue;
            };
            let in_ch = g.node(x).shape.c;
            let Some(geom) = Geom::of(&conv, in_ch) else {
                continue;
            };
            let forms = geom.candidates();
            if forms.is_empty() {
                continue;
            }
            let weights = conv.weight.data.data();
            if weights.iter().all(|&w| w == 0.0) {
                report.notes.push(format!(
                    "`{name}` left alone: its weights are all zero (rank 0; it outputs its bias)"
                ));
                continue;
            }
            if weights.iter().any(|w| !w.is_finite()) {
                report.notes.push(format!(
                    "`{name}` left alone: its weights are not all finite"
                ));
                continue;
            }
            let standard = standard_cost(&geom);
            let ratio = vertical_ratio(g, n, &conv);
            let facts = factor_forms(&name, &conv, geom, in_ch, ratio, tol, &mut report.notes);
            let Some(plan) = choose(&facts, &conv, in_ch, ratio, tol) else {
                continue;
            };
            let (form, rank, rel_error, cost_after) =
                (plan.form, plan.rank, plan.rel_error, plan.cost);
            let before = cost::node_cost(g, n);
            let Some([v, h]) = apply(g, n, &conv, in_ch, plan) else {
                report.notes.push(format!(
                    "`{name}` left alone: its {form} form would not keep its shape"
                ));
                continue;
            };
            let (cv, ch) = (cost::node_cost(g, v), cost::node_cost(g, h));
            report.rewrites.push(Rewrite {
                layer: name,
                form,
                rank,
                rel_error,
                new_layers: [g.node(v).name.clone(), g.node(h).name.clone()],
                macs_before: before.macs(),
                macs_after: cv.macs().zip(ch.macs()).and_then(|(a, b)| a.checked_add(b)),
                macs_per_pixel_before: before.macs_per_pixel,
                macs_per_pixel_after: cv.macs_per_pixel + ch.macs_per_pixel,
                cost_before: standard,
                cost_after,
            });
        }
        Ok(report)
    }
}
