//! `fold-batchnorm`: a batchnorm whose operand is a conv used by nothing else (and not an
//! output) folds into that conv. With `s = gamma / sqrt(var + eps)`:
//! `W'[o] = s[o] * W[o]` and `b'[o] = s[o] * (b[o] - mean[o]) + beta[o]`, computed in f64 and
//! rounded once to f32.
//!
//! Naming: the folded conv takes the **batchnorm's name** (it now computes the batchnorm's
//! value, and the conv's own value no longer exists), and keeps the conv's span (shape errors
//! point at the layer whose weights these are). Users and outputs of the batchnorm now use the
//! conv node, so outputs keep both their position and their name. The conv's own name goes to
//! `Node::folded`, for display (the JIT's step `conv1+bn1+relu1`).

use std::fmt;

use convc_ir::{BatchNorm, Conv, Graph, NodeIndex, Op, Param, Source};
use convc_tensor::Tensor;

use crate::{Pass, PassContext, PassError, PassReport};

/// Batchnorm folding.
#[derive(Clone, Copy, Debug, Default)]
pub struct FoldBatchnorm;

/// One batchnorm folded into a conv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    /// The batchnorm that disappeared.
    pub batchnorm: String,
    /// The conv that absorbed it (its name before the fold).
    pub conv: String,
    /// The name the folded conv now has (the batchnorm's).
    pub result: String,
}

impl fmt::Display for Fold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "folded batchnorm `{}` into conv `{}` (now `{}`)",
            self.batchnorm, self.conv, self.result
        )
    }
}

/// The folded weights and bias, or `None` when a value would not be finite.
fn folded(conv: &Conv, bn: &BatchNorm) -> Option<(Tensor, Tensor)> {
    let out = conv.out;
    let per_out = conv.weight.data.numel() / out.max(1);
    let get = |p: &Param, o: usize| p.data.data().get(o).map(|v| *v as f64);
    let mut w = conv.weight.data.data().to_vec();
    let mut b = vec![0f32; out];
    for o in 0..out {
        let s = get(&bn.gamma, o)? / (get(&bn.var, o)? + bn.eps as f64).sqrt();
        let bias = conv.bias.as_ref().map_or(Some(0.0), |p| get(p, o))?;
        let nb = s * (bias - get(&bn.mean, o)?) + get(&bn.beta, o)?;
        b[o] = nb as f32;
        for v in &mut w[o * per_out..(o + 1) * per_out] {
            *v = (*v as f64 * s) as f32;
        }
    }
    if w.iter().chain(&b).any(|v| !v.is_finite()) {
        return None;
    }
    let wt = Tensor::new(conv.weight.data.shape().to_vec(), w).ok()?;
    let bt = Tensor::new(vec![out], b).ok()?;
    Some((wt, bt))
}

/// The conv feeding batchnorm `bn`, when it can absorb it.
fn foldable(g: &Graph, bn: NodeIndex) -> Option<NodeIndex> {
    let &[c] = g.operands(bn).as_slice() else {
        return None;
    };
    let Op::Conv(_) = g.node(c).op else {
        return None;
    };
    (g.users(c) == [bn] && !g.is_output(c)).then_some(c)
}

impl Pass for FoldBatchnorm {
    fn name(&self) -> &'static str {
        "fold-batchnorm"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::new(self.name());
        for bn in g.topo_order() {
            let Op::BatchNorm(b) = &g.node(bn).op else {
                continue;
            };
            let Some(c) = foldable(g, bn) else { continue };
            let Op::Conv(conv) = &g.node(c).op else {
                continue;
            };
            let bn_name = g.node(bn).name.clone();
            let conv_name = g.node(c).name.clone();
            let Some((w, bias)) = folded(conv, b) else {
                report.notes.push(format!(
                    "batchnorm `{bn_name}` not folded into `{conv_name}`: the folded weights would not be finite"
                ));
                continue;
            };
            let src = Source::Derived(format!("fold-batchnorm {bn_name}"));
            let node = g.node_mut(c);
            if let Op::Conv(conv) = &mut node.op {
                conv.weight = Param::new(w, src.clone());
                conv.bias = Some(Param::new(bias, src));
            }
            let old = std::mem::replace(&mut node.name, bn_name.clone());
            node.folded.push(old);
            g.replace_uses(bn, c);
            g.remove(bn);
            report.folds.push(Fold {
                batchnorm: bn_name.clone(),
                conv: conv_name,
                result: bn_name,
            });
        }
        Ok(report)
    }
}
