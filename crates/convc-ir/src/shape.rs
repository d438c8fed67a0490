//! Shape inference and validation: every op's output shape from its operands' shapes, with
//! symbolic sizes kept symbolic, and the concrete shapes once sizes are bound.

use petgraph::stable_graph::NodeIndex;

use convc_lang::Diagnostic;

use crate::dim::{Bindings, Dim, Shape};
use crate::graph::Graph;
use crate::op::{Op, Pad};

/// Output size on one axis: `floor((n + before + after - d*(k-1) - 1) / s) + 1`, or
/// `ceil(n / s)` for `same`.
fn out_dim(n: &Dim, pad: Option<(usize, usize)>, k: usize, s: usize, d: usize) -> Dim {
    let s = s as i64;
    match pad {
        None => n.ceil_div(s),
        Some((b, a)) => {
            let span = (d as i64).saturating_mul(k as i64 - 1);
            n.add((b + a) as i64 - span - 1).floor_div(s).add(1)
        }
    }
}

/// Explicit (before, after) padding of one axis; `None` for `same`.
type AxisPad = Option<(usize, usize)>;

fn axis_pads(pad: &Pad) -> (AxisPad, AxisPad) {
    match pad {
        Pad::Same => (None, None),
        Pad::Explicit([t, b, l, r]) => (Some((*t, *b)), Some((*l, *r))),
    }
}

fn check_positive(shape: &Shape, what: &str) -> Result<(), String> {
    for (d, axis) in [(&shape.h, "height"), (&shape.w, "width")] {
        if let Some(v) = d.known()
            && v <= 0
        {
            return Err(format!(
                "{what} has an output {axis} of {v}: the input is too small for its kernel, stride, dilation and padding"
            ));
        }
    }
    Ok(())
}

/// The shape of an elementwise `add` or `mul` of operands `a` and `b`: equal shapes, or one
/// `[C, 1, 1]` (broadcast over the plane) with the other's C; the larger shape.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let per_channel = |s: &Shape| s.h.known() == Some(1) && s.w.known() == Some(1);
    if a == b || (a.c == b.c && per_channel(b)) {
        Some(a.clone())
    } else if a.c == b.c && per_channel(a) {
        Some(b.clone())
    } else {
        None
    }
}

/// The output shape of `op` applied to operands of shapes `ins`. The error names no layer:
/// the caller adds it.
pub fn infer(op: &Op, ins: &[&Shape]) -> Result<Shape, String> {
    let one = |i: usize| -> Result<&Shape, String> {
        ins.get(i)
            .copied()
            .ok_or_else(|| format!("needs {} operand(s), has {}", i + 1, ins.len()))
    };
    let shape = match op {
        Op::Input { .. } => return Err("an input has no operands to infer from".into()),
        Op::Conv(c) => {
            let x = one(0)?;
            if c.groups == 0 || x.c % c.groups != 0 {
                return Err(format!(
                    "input channels {} are not divisible by groups={}",
                    x.c, c.groups
                ));
            }
            if c.out % c.groups != 0 {
                return Err(format!(
                    "out={} is not divisible by groups={}",
                    c.out, c.groups
                ));
            }
            let want = [c.out, x.c / c.groups, c.kernel[0], c.kernel[1]];
            if c.weight.data.shape() != want {
                return Err(format!(
                    "weights have shape {}, expected {}",
                    convc_tensor::fmt_shape(c.weight.data.shape()),
                    convc_tensor::fmt_shape(&want)
                ));
            }
            if let Some(b) = &c.bias
                && b.data.shape() != [c.out]
            {
                return Err(format!(
                    "bias has shape {}, expected [{}]",
                    convc_tensor::fmt_shape(b.data.shape()),
                    c.out
                ));
            }
            let (ph, pw) = axis_pads(&c.pad);
            Shape {
                c: c.out,
                h: out_dim(&x.h, ph, c.kernel[0], c.stride[0], c.dilation[0]),
                w: out_dim(&x.w, pw, c.kernel[1], c.stride[1], c.dilation[1]),
            }
        }
        Op::BatchNorm(bn) => {
            let x = one(0)?;
            for (p, name) in [
                (&bn.mean, "mean"),
                (&bn.var, "var"),
                (&bn.gamma, "gamma"),
                (&bn.beta, "beta"),
            ] {
                if p.data.shape() != [x.c] {
                    return Err(format!(
                        "{name} has shape {}, expected [{}]",
                        convc_tensor::fmt_shape(p.data.shape()),
                        x.c
                    ));
                }
            }
            x.clone()
        }
        Op::Unary(_) => one(0)?.clone(),
        Op::Add => broadcast(one(0)?, one(1)?).ok_or_else(|| {
            let (a, b) = (ins[0], ins[1]);
            format!("operands of add have different shapes: {a} and {b}")
        })?,
        Op::Mul => broadcast(one(0)?, one(1)?).ok_or_else(|| {
            let (a, b) = (ins[0], ins[1]);
            format!("operands of mul have shapes {a} and {b}: they must be equal, or one [C, 1, 1] with the other's C")
        })?,
        Op::PRelu { slope } => {
            let x = one(0)?;
            let n = slope.data.shape();
            if n != [x.c] && n != [1] {
                return Err(format!(
                    "slope has shape {}, expected [{}] or [1]",
                    convc_tensor::fmt_shape(n),
                    x.c
                ));
            }
            x.clone()
        }
        Op::GlobalMaxPool => Shape::known(one(0)?.c, 1, 1),
        Op::Pad(p) => {
            let x = one(0)?;
            let [t, b, l, r] = p.pads;
            if p.mode == crate::op::PadMode::Reflect {
                for (d, lo, hi, axis) in [(&x.h, t, b, "height"), (&x.w, l, r, "width")] {
                    if let Some(n) = d.known()
                        && (lo.max(hi) as i64) >= n
                    {
                        return Err(format!(
                            "reflect padding of {} needs an input {axis} above it, found {n}",
                            lo.max(hi)
                        ));
                    }
                }
            }
            Shape {
                c: x.c,
                h: x.h.add((t + b) as i64),
                w: x.w.add((l + r) as i64),
            }
        }
        Op::ConvTranspose(t) => transpose_shape(t, one(0)?)?,
        Op::Upsample(u) => {
            let x = one(0)?;
            Shape {
                c: x.c,
                h: x.h.mul(u.scale[0] as i64),
                w: x.w.mul(u.scale[1] as i64),
            }
        }
        Op::Concat => {
            let first = one(0)?;
            let mut c = 0usize;
            for s in ins {
                if s.h != first.h || s.w != first.w {
                    return Err(format!(
                        "operands of concat have different sizes: {}x{} and {}x{}",
                        first.h, first.w, s.h, s.w
                    ));
                }
                c = c.checked_add(s.c).ok_or("too many channels")?;
            }
            let max = crate::lower::MAX_CHANNELS as usize;
            if c > max {
                return Err(format!(
                    "concat gives {c} channels, more than the limit of {max}"
                ));
            }
            Shape {
                c,
                h: first.h.clone(),
                w: first.w.clone(),
            }
        }
        Op::Pool(p) => {
            let x = one(0)?;
            if let Pad::Explicit([t, b, l, r]) = p.pad
                && (t >= p.kernel[0] || b >= p.kernel[0] || l >= p.kernel[1] || r >= p.kernel[1])
            {
                return Err(format!(
                    "padding ({t}, {b}, {l}, {r}) is not smaller than the kernel {}x{} on each side",
                    p.kernel[0], p.kernel[1]
                ));
            }
            let (ph, pw) = axis_pads(&p.pad);
            Shape {
                c: x.c,
                h: out_dim(&x.h, ph, p.kernel[0], p.stride[0], 1),
                w: out_dim(&x.w, pw, p.kernel[1], p.stride[1], 1),
            }
        }
        Op::GlobalAvgPool => Shape::known(one(0)?.c, 1, 1),
        Op::Softmax => one(0)?.clone(),
        Op::Slice { start, end } => {
            let x = one(0)?;
            if start >= end || *end > x.c {
                return Err(format!(
                    "channels {start}..{end} are not a non-empty range within the input's {} channels",
                    x.c
                ));
            }
            Shape {
                c: end - start,
                h: x.h.clone(),
                w: x.w.clone(),
            }
        }
        Op::Shuffle { groups } => {
            let x = one(0)?;
            if *groups == 0 || x.c % groups != 0 {
                return Err(format!(
                    "input channels {} are not divisible by groups={groups}",
                    x.c
                ));
            }
            x.clone()
        }
        Op::Lrn(l) => {
            if l.size == 0 {
                return Err("lrn needs size >= 1".into());
            }
            one(0)?.clone()
        }
    };
    for (d, axis) in [(&shape.h, "height"), (&shape.w, "width")] {
        if d.depth() > MAX_DIM_DEPTH {
            return Err(format!(
                "its {axis} depends on `{}` through too many strided layers (the size expression would nest more than {MAX_DIM_DEPTH} operations): give the input a fixed {axis}",
                d.symbol().unwrap_or("?")
            ));
        }
    }
    Ok(shape)
}

/// The deepest nesting of operations a symbolic size may have (a strided layer adds one or
/// two). Deeper sizes are refused, so that a chain of 100,000 strided layers over a symbol costs
/// neither quadratic memory nor deep recursion.
pub const MAX_DIM_DEPTH: usize = 64;

/// Infers the shape of node `n` from its operands' stored shapes, checking it is not empty.
pub fn infer_node(g: &Graph, n: NodeIndex) -> Result<Shape, String> {
    let node = g.node(n);
    if let Op::Input { .. } = node.op {
        return Ok(node.shape.clone());
    }
    let ops = g.operands(n);
    let shapes: Vec<&Shape> = ops.iter().map(|&o| &g.node(o).shape).collect();
    let s = infer(&node.op, &shapes).map_err(|m| format!("layer `{}`: {m}", node.name))?;
    check_positive(&s, &format!("layer `{}`", node.name))?;
    Ok(s)
}

/// Re-infers every shape in topological order and checks it equals the stored one: passes run
/// this after every rewrite so no shape changes silently.
pub fn validate(g: &Graph) -> Result<(), Diagnostic> {
    for n in g.topo_order() {
        let node = g.node(n);
        let s = infer_node(g, n).map_err(|m| Diagnostic::error(node.span, m))?;
        if s != node.shape {
            return Err(Diagnostic::error(
                node.span,
                format!(
                    "layer `{}`: stored shape {} but inferred {}",
                    node.name, node.shape, s
                ),
            ));
        }
    }
    for &o in &g.outputs {
        if !g.g.contains_node(o) {
            return Err(Diagnostic::error(
                Default::default(),
                "an output refers to a removed node",
            ));
        }
    }
    Ok(())
}

/// Concrete `[C, H, W]` of every node once symbols are bound, indexed by `NodeIndex::index()`
/// (`None` for removed indices).
#[derive(Clone, Debug, PartialEq)]
pub struct Concrete {
    /// The shapes.
    pub shapes: Vec<Option<[usize; 3]>>,
}

impl Concrete {
    /// The shape of node `n`.
    pub fn get(&self, n: NodeIndex) -> [usize; 3] {
        self.shapes[n.index()].unwrap_or([0, 0, 0])
    }
}

/// Binds the symbols and computes every node's concrete shape, re-checking what depends on the
/// sizes (an output size of 0 or less, padding of `same` pooling). Errors point at the layer.
pub fn concretize(g: &Graph, b: &Bindings) -> Result<Concrete, Diagnostic> {
    let mut shapes = vec![None; g.node_bound()];
    for n in g.topo_order() {
        let node = g.node(n);
        let s = node.shape.substitute(b);
        let err = |m: String| Diagnostic::error(node.span, m);
        let dim = |d: &Dim, axis: &str| -> Result<usize, Diagnostic> {
            match d.eval(b) {
                None => Err(err(format!(
                    "the {axis} of `{}` is {d}: bind `{}` (with --size HxW or input data)",
                    node.name,
                    d.symbol().unwrap_or("?")
                ))),
                Some(v) if v <= 0 => Err(err(format!(
                    "layer `{}` has an output {axis} of {v} for these input sizes: the input is too small for its kernel, stride, dilation and padding",
                    node.name
                ))),
                Some(v) => usize::try_from(v)
                    .map_err(|_| err(format!("the {axis} of `{}` is too large", node.name))),
            }
        };
        shapes[n.index()] = Some([s.c, dim(&s.h, "height")?, dim(&s.w, "width")?]);
        if let Op::Pad(p) = &node.op
            && p.mode == crate::op::PadMode::Reflect
            && let Some(&x) = g.operands(n).first()
            && let Some([_, h, w]) = shapes[x.index()]
        {
            let [t, bo, l, r] = p.pads;
            if t.max(bo) >= h || l.max(r) >= w {
                return Err(err(format!(
                    "layer `{}`: reflect padding ({t}, {bo}, {l}, {r}) needs each side below the input size {h}x{w}",
                    node.name
                )));
            }
        }
    }
    Ok(Concrete { shapes })
}

/// Binds symbols from input sizes: `sizes[i]` is `(H, W)` of input `i`. A symbol bound twice
/// must agree; a known size must match. The error says which input and what was expected.
pub fn bind_inputs(g: &Graph, sizes: &[(usize, usize)]) -> Result<Bindings, String> {
    let mut b = Bindings::new();
    for (i, &n) in g.inputs.iter().enumerate() {
        let Some(&(h, w)) = sizes.get(i) else {
            continue;
        };
        let node = g.node(n);
        for (d, v, axis) in [(&node.shape.h, h, "height"), (&node.shape.w, w, "width")] {
            match d {
                Dim::Lit(k) if *k as u64 != v as u64 => {
                    return Err(format!(
                        "input `{}` expects {axis} {k}, found {v}",
                        node.name
                    ));
                }
                Dim::Sym(s) => {
                    if let Some(&old) = b.get(s)
                        && old != v as u64
                    {
                        return Err(format!(
                            "size `{s}` is {old} from an earlier dimension but input `{}` has {axis} {v}",
                            node.name
                        ));
                    }
                    b.insert(s.clone(), v as u64);
                }
                _ => {}
            }
        }
    }
    Ok(b)
}

/// The output shape of a transposed convolution on `x`.
fn transpose_shape(t: &crate::op::ConvTranspose, x: &Shape) -> Result<Shape, String> {
    let g = &t.geom;
    if g.groups == 0 || x.c % g.groups != 0 || g.out % g.groups != 0 {
        return Err(format!(
            "input channels {} and out={} must be divisible by groups={}",
            x.c, g.out, g.groups
        ));
    }
    let want = [x.c, g.out / g.groups, g.kernel[0], g.kernel[1]];
    if t.weight.data.shape() != want {
        return Err(format!(
            "weights have shape {}, expected {}",
            convc_tensor::fmt_shape(t.weight.data.shape()),
            convc_tensor::fmt_shape(&want)
        ));
    }
    if let Some(b) = &t.bias
        && b.data.shape() != [g.out]
    {
        return Err(format!(
            "bias has shape {}, expected [{}]",
            convc_tensor::fmt_shape(b.data.shape()),
            g.out
        ));
    }
    for a in 0..2 {
        if g.output_padding[a] >= g.stride[a].max(g.dilation[a]) {
            return Err(format!(
                "output_padding {} must be smaller than the stride or the dilation",
                g.output_padding[a]
            ));
        }
    }
    let axis = |n: &Dim, a: usize| -> Dim {
        let (s, d, k) = (g.stride[a], g.dilation[a], g.kernel[a]);
        let extra = (d * (k - 1) + g.output_padding[a] + 1) as i64
            - (g.pads[2 * a] + g.pads[2 * a + 1]) as i64;
        n.add(-1).mul(s as i64).add(extra)
    };
    let s = Shape {
        c: g.out,
        h: axis(&x.h, 0),
        w: axis(&x.w, 1),
    };
    check_positive(&s, "the transposed convolution")?;
    Ok(s)
}
