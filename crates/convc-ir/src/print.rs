//! Printers: the text dump (one line per node, in topological order, with shape, parameters
//! and MACs), Graphviz dot, and JSON for tools.

use std::fmt::Write;

use petgraph::stable_graph::NodeIndex;
use serde_json::{Value, json};

use crate::cost::{self, human};
use crate::graph::Graph;
use crate::op::{Conv, Op, Pad, Unary};

/// The surface name of a conv: `depthwise` when every input channel has its own group,
/// `pointwise` for a plain 1x1, `conv` otherwise.
pub fn conv_label(c: &Conv, in_ch: usize) -> &'static str {
    if c.groups == in_ch && in_ch > 1 {
        "depthwise"
    } else if c.kernel == [1, 1]
        && c.groups == 1
        && c.stride == [1, 1]
        && c.pad == Pad::Explicit([0; 4])
    {
        "pointwise"
    } else {
        "conv"
    }
}

/// The label of a node's op as a user would call it.
pub fn op_label(g: &Graph, n: NodeIndex) -> &'static str {
    match &g.node(n).op {
        Op::Conv(c) => {
            let in_ch = g.operands(n).first().map_or(0, |&o| g.node(o).shape.c);
            conv_label(c, in_ch)
        }
        op => op.name(),
    }
}

fn pair(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("{}x{}", v[0], v[1])
    }
}

/// Padding as printed: explicit `(t,b,l,r)`, `same(t,b,l,r)` when the input size is known,
/// `same` otherwise.
fn pad_text(
    g: &Graph,
    n: NodeIndex,
    pad: &Pad,
    kernel: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
) -> String {
    match pad {
        Pad::Explicit([t, b, l, r]) => format!("({t},{b},{l},{r})"),
        Pad::Same => {
            // With stride 1 on both axes the padding does not depend on the input size.
            let x = g.operands(n).first().and_then(|&o| g.node(o).shape.hw());
            let x = x.or((stride == [1, 1]).then_some((1, 1)));
            match x {
                Some((h, w)) => {
                    let [t, b, l, r] = pad.resolve(h, w, kernel, stride, dil);
                    format!("same({t},{b},{l},{r})")
                }
                None => "same".into(),
            }
        }
    }
}

/// The attributes of a node as `key=value` words (no operands, no shape).
pub fn attrs_text(g: &Graph, n: NodeIndex) -> String {
    let node = g.node(n);
    match &node.op {
        Op::Input { index } => format!("#{index}"),
        Op::Conv(c) => {
            let mut s = format!(
                "out={} k={}x{} s={} d={} p={} g={} w={}",
                c.out,
                c.kernel[0],
                c.kernel[1],
                pair(c.stride),
                pair(c.dilation),
                pad_text(g, n, &c.pad, c.kernel, c.stride, c.dilation),
                c.groups,
                c.weight.source
            );
            if let Some(b) = &c.bias {
                let _ = write!(s, " b={}", b.source);
            }
            s
        }
        Op::BatchNorm(b) => format!("eps={} mean={}", b.eps, b.mean.source),
        Op::Unary(Unary::LeakyRelu { alpha }) => format!("alpha={alpha}"),
        Op::Unary(Unary::Clamp { min, max }) => format!("min={min} max={max}"),
        Op::Unary(Unary::HardSigmoid { alpha, beta }) => format!("alpha={alpha} beta={beta}"),
        Op::PRelu { slope } => format!("slope={}", slope.source),
        Op::Slice { start, end } => format!("start={start} end={end}"),
        Op::Pad(p) => {
            let [t, b, l, r] = p.pads;
            match p.mode {
                crate::op::PadMode::Constant => {
                    format!("pads=({t},{b},{l},{r}) value={}", p.value)
                }
                m => format!("pads=({t},{b},{l},{r}) mode={}", m.name()),
            }
        }
        Op::ConvTranspose(t) => {
            let g = &t.geom;
            let [pt, pb, pl, pr] = g.pads;
            format!(
                "out={} k={}x{} s={} d={} p=({pt},{pb},{pl},{pr}) op={} g={} w={}",
                g.out,
                g.kernel[0],
                g.kernel[1],
                pair(g.stride),
                pair(g.dilation),
                pair(g.output_padding),
                g.groups,
                t.weight.source
            )
        }
        Op::Upsample(u) => match u.mode {
            crate::op::UpMode::Nearest => format!("scale={} nearest", pair(u.scale)),
            crate::op::UpMode::Bilinear => {
                format!("scale={} bilinear {}", pair(u.scale), u.coords.name())
            }
        },
        Op::Pool(p) => format!(
            "k={}x{} s={} p={}",
            p.kernel[0],
            p.kernel[1],
            pair(p.stride),
            pad_text(g, n, &p.pad, p.kernel, p.stride, [1, 1])
        ),
        _ => String::new(),
    }
}

fn macs_text(c: &cost::Cost) -> String {
    match c.macs() {
        Some(m) => human(m),
        None => format!("{}/px", human(c.macs_per_pixel)),
    }
}

/// The text dump: a header, one line per node in topological order, then the outputs.
pub fn text(g: &Graph) -> String {
    let mut s = String::new();
    for n in g.topo_order() {
        let node = g.node(n);
        let c = cost::node_cost(g, n);
        let operands: Vec<String> = g
            .operands(n)
            .iter()
            .map(|&o| format!("%{}", g.node(o).name))
            .collect();
        let mut line = format!("%{} = {}", node.name, op_label(g, n));
        if !operands.is_empty() {
            let _ = write!(line, " {}", operands.join(", "));
        }
        let attrs = attrs_text(g, n);
        if !attrs.is_empty() {
            let _ = write!(line, " {attrs}");
        }
        let _ = write!(line, " -> {}", node.shape);
        if c.params > 0 || c.macs_per_pixel > 0 {
            let _ = write!(line, "  params={} macs={}", c.params, macs_text(&c));
        }
        s.push_str(&line);
        s.push('\n');
    }
    let outs: Vec<String> = g
        .outputs
        .iter()
        .map(|&o| format!("%{}", g.node(o).name))
        .collect();
    let _ = writeln!(s, "output {}", outs.join(", "));
    if let Some(groups) = g.fusion.as_ref().filter(|v| !v.is_empty()) {
        let _ = writeln!(s, "fused groups (one kernel each):");
        for (i, grp) in groups.iter().enumerate() {
            let names: Vec<String> = grp
                .nodes
                .iter()
                .map(|&n| format!("%{}", g.node(n).name))
                .collect();
            let _ = writeln!(
                s,
                "  g{i}: {}\n      {}",
                names.join(" + "),
                crate::fusion::describe(g, grp)
            );
        }
    }
    let t = cost::totals(g);
    let _ = writeln!(
        s,
        "# {} nodes, params={}, macs={}",
        g.len(),
        t.params,
        macs_text(&t)
    );
    s
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz dot: one box per node (name, op, attributes, shape, cost), edges labelled by
/// operand position where an op has several.
pub fn dot(g: &Graph) -> String {
    let mut s = String::from(
        "digraph convc {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for n in g.topo_order() {
        let node = g.node(n);
        let c = cost::node_cost(g, n);
        let mut label = format!(
            "{}\\n{} {}\\n{}",
            dot_escape(&node.name),
            op_label(g, n),
            dot_escape(&attrs_text(g, n)),
            node.shape
        );
        if c.params > 0 || c.macs_per_pixel > 0 {
            let _ = write!(label, "\\nparams={} macs={}", c.params, macs_text(&c));
        }
        let shape = if matches!(node.op, Op::Input { .. }) {
            ", shape=ellipse"
        } else {
            ""
        };
        let _ = writeln!(s, "  n{} [label=\"{}\"{}];", n.index(), label, shape);
    }
    if let Some(groups) = &g.fusion {
        for (i, grp) in groups.iter().enumerate() {
            let ids: Vec<String> = grp
                .nodes
                .iter()
                .map(|n| format!("n{}", n.index()))
                .collect();
            let _ = writeln!(
                s,
                "  subgraph cluster_g{i} {{ label=\"fused g{i}\"; style=dashed; {}; }}",
                ids.join("; ")
            );
        }
    }
    for n in g.topo_order() {
        let ops = g.operands(n);
        for (i, o) in ops.iter().enumerate() {
            if ops.len() > 1 {
                let _ = writeln!(s, "  n{} -> n{} [label=\"{}\"];", o.index(), n.index(), i);
            } else {
                let _ = writeln!(s, "  n{} -> n{};", o.index(), n.index());
            }
        }
    }
    for (i, &o) in g.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{i} [label=\"output {i}\", shape=ellipse];\n  n{} -> out{i};",
            o.index()
        );
    }
    s.push_str("}\n");
    s
}

fn dim_json(d: &crate::Dim) -> Value {
    match d.known() {
        Some(v) => json!(v),
        None => json!(d.to_string()),
    }
}

/// The graph as JSON: nodes in topological order with op, operands, attributes, shape and cost.
pub fn json(g: &Graph) -> Value {
    let mut nodes = Vec::new();
    for n in g.topo_order() {
        let node = g.node(n);
        let c = cost::node_cost(g, n);
        let mut attrs = serde_json::Map::new();
        match &node.op {
            Op::Input { index } => {
                attrs.insert("index".into(), json!(index));
            }
            Op::Conv(cv) => {
                attrs.insert("out".into(), json!(cv.out));
                attrs.insert("kernel".into(), json!(cv.kernel));
                attrs.insert("stride".into(), json!(cv.stride));
                attrs.insert("dilation".into(), json!(cv.dilation));
                attrs.insert("groups".into(), json!(cv.groups));
                attrs.insert(
                    "pad".into(),
                    match cv.pad {
                        Pad::Same => json!("same"),
                        Pad::Explicit(p) => json!(p),
                    },
                );
                attrs.insert("weights".into(), json!(cv.weight.source.to_string()));
                attrs.insert("weight_shape".into(), json!(cv.weight.data.shape()));
                attrs.insert(
                    "bias".into(),
                    cv.bias
                        .as_ref()
                        .map_or(Value::Null, |b| json!(b.source.to_string())),
                );
            }
            Op::BatchNorm(b) => {
                attrs.insert("eps".into(), json!(b.eps));
            }
            Op::Unary(Unary::LeakyRelu { alpha }) => {
                attrs.insert("alpha".into(), json!(alpha));
            }
            Op::Unary(Unary::HardSigmoid { alpha, beta }) => {
                attrs.insert("alpha".into(), json!(alpha));
                attrs.insert("beta".into(), json!(beta));
            }
            Op::ConvTranspose(t) => {
                let g = &t.geom;
                attrs.insert("out".into(), json!(g.out));
                attrs.insert("kernel".into(), json!(g.kernel));
                attrs.insert("stride".into(), json!(g.stride));
                attrs.insert("dilation".into(), json!(g.dilation));
                attrs.insert("pad".into(), json!(g.pads));
                attrs.insert("output_padding".into(), json!(g.output_padding));
                attrs.insert("groups".into(), json!(g.groups));
                attrs.insert("weights".into(), json!(t.weight.source.to_string()));
                attrs.insert("weight_shape".into(), json!(t.weight.data.shape()));
            }
            Op::Pad(p) => {
                attrs.insert("pads".into(), json!(p.pads));
                attrs.insert("mode".into(), json!(p.mode.name()));
                attrs.insert("value".into(), json!(p.value));
            }
            Op::Upsample(u) => {
                attrs.insert("scale".into(), json!(u.scale));
                attrs.insert(
                    "mode".into(),
                    json!(match u.mode {
                        crate::op::UpMode::Nearest => "nearest",
                        crate::op::UpMode::Bilinear => "bilinear",
                    }),
                );
                attrs.insert("coords".into(), json!(u.coords.name()));
            }
            Op::PRelu { slope } => {
                attrs.insert("slope".into(), json!(slope.source.to_string()));
                attrs.insert("slope_shape".into(), json!(slope.data.shape()));
            }
            Op::Unary(Unary::Clamp { min, max }) => {
                let f = |v: f32| {
                    if v.is_finite() {
                        json!(v)
                    } else {
                        json!(v.to_string())
                    }
                };
                attrs.insert("min".into(), f(*min));
                attrs.insert("max".into(), f(*max));
            }
            Op::Pool(p) => {
                attrs.insert("kernel".into(), json!(p.kernel));
                attrs.insert("stride".into(), json!(p.stride));
                attrs.insert(
                    "pad".into(),
                    match p.pad {
                        Pad::Same => json!("same"),
                        Pad::Explicit(p) => json!(p),
                    },
                );
            }
            _ => {}
        }
        nodes.push(json!({
            "name": node.name,
            "op": op_label(g, n),
            "inputs": g.operands(n).iter().map(|&o| g.node(o).name.clone()).collect::<Vec<_>>(),
            "attrs": attrs,
            "shape": [json!(node.shape.c), dim_json(&node.shape.h), dim_json(&node.shape.w)],
            "params": c.params,
            "macs": c.macs(),
            "macs_per_pixel": c.macs_per_pixel,
            "bytes": c.bytes,
        }));
    }
    let t = cost::totals(g);
    json!({
        "inputs": g.inputs.iter().map(|&o| g.node(o).name.clone()).collect::<Vec<_>>(),
        "outputs": g.outputs.iter().map(|&o| g.node(o).name.clone()).collect::<Vec<_>>(),
        "nodes": nodes,
        "params": t.params,
        "macs": t.macs(),
        "fusion": g.fusion.as_ref().map(|groups| groups
            .iter()
            .map(|grp| grp.nodes.iter().map(|&n| g.node(n).name.clone()).collect::<Vec<_>>())
            .collect::<Vec<_>>()),
    })
}
