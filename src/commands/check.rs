//! `convc check`: parse, infer shapes, load weights, print one row per layer.

use std::fmt::Write;
use std::path::Path;

use convc_ir::cost::{self, human};
use convc_ir::{Op, print};

use crate::driver::{self, Failure};

/// Runs `convc check`.
pub fn run(path: &Path, size: Option<(usize, usize)>) -> Result<(), Failure> {
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
    driver::out(&report(&model))
}

fn macs_cell(c: &cost::Cost) -> String {
    match c.macs() {
        Some(m) => m.to_string(),
        None => format!("{}/px", c.macs_per_pixel),
    }
}

/// The check report: a table of layers, totals, and which layers use random weights.
pub fn report(model: &driver::Model) -> String {
    let g = &model.graph;
    let order = g.topo_order();
    let mut rows = vec![[
        "layer".to_string(),
        "op".into(),
        "output".into(),
        "params".into(),
        "MACs".into(),
    ]];
    let mut random = Vec::new();
    for &n in &order {
        let node = g.node(n);
        let c = cost::node_cost(g, n);
        rows.push([
            node.name.clone(),
            print::op_label(g, n).to_string(),
            node.shape.to_string(),
            c.params.to_string(),
            macs_cell(&c),
        ]);
        let mut srcs = Vec::new();
        match &node.op {
            Op::Conv(cv) => {
                srcs.push(("weights", &cv.weight.source));
                if let Some(b) = &cv.bias {
                    srcs.push(("bias", &b.source));
                }
            }
            Op::ConvTranspose(t) => {
                srcs.push(("weights", &t.weight.source));
                if let Some(b) = &t.bias {
                    srcs.push(("bias", &b.source));
                }
            }
            Op::PRelu { slope } => srcs.push(("slope", &slope.source)),
            Op::BatchNorm(b) => {
                srcs.extend([
                    ("mean", &b.mean.source),
                    ("var", &b.var.source),
                    ("gamma", &b.gamma.source),
                    ("beta", &b.beta.source),
                ]);
            }
            _ => {}
        }
        for (what, s) in srcs {
            if let convc_ir::Source::Random { seed, implicit } = s {
                let how = if *implicit { "omitted, " } else { "" };
                random.push(format!("{} {what} ({how}random seed={seed})", node.name));
            }
        }
    }
    let t = cost::totals(g);
    rows.push([
        "total".into(),
        String::new(),
        String::new(),
        t.params.to_string(),
        macs_cell(&t),
    ]);
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let _ = writeln!(
        s,
        "{}: {}, {}, {}",
        model.path.display(),
        count(g.inputs.len(), "input"),
        count(g.len() - g.inputs.len(), "layer"),
        count(g.outputs.len(), "output")
    );
    for (i, r) in rows.iter().enumerate() {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4]
        );
        let _ = writeln!(s, "{}", line.trim_end());
        if i == 0 || i + 2 == rows.len() {
            let _ = writeln!(s, "{}", "-".repeat(widths.iter().sum::<usize>() + 8));
        }
    }
    if let Some(m) = t.macs() {
        let _ = writeln!(s, "{} MACs, {} parameters", human(m), human(t.params));
    }
    if random.is_empty() {
        let _ = writeln!(s, "random weights: none");
    } else {
        let _ = writeln!(s, "random weights: {}", random.join(", "));
    }
    s
}
