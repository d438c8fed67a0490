//! Shared test helpers: graph building, weight constructions, running the interpreter before
//! and after a pass, composing decomposed layers back into one weight tensor.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use convc_ir::{
    BatchNorm, Bindings, Conv, Dim, Graph, Node, NodeIndex, Op, Pad, Param, Shape, Source, shape,
};
use convc_passes::{PassContext, PassManager, PassReport};
use convc_tensor::Tensor;
use convc_tensor::random::SplitMix64;

/// Compiles spec text (weights from `random(..)` or literals).
pub fn compile(src: &str) -> Graph {
    convc_ir::compile(src, Path::new(".")).expect("the test spec compiles")
}

/// The benchmark specs folder.
pub fn bench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/bench")
}

/// Compiles a benchmark spec.
pub fn bench(name: &str) -> Graph {
    let dir = bench_dir();
    let src =
        std::fs::read_to_string(dir.join(format!("{name}.conv"))).expect("bench spec readable");
    convc_ir::compile(&src, &dir).expect("bench spec compiles")
}

/// A small deterministic generator of test data.
pub struct Rng(SplitMix64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f32 {
        (2.0 * self.0.next_unit() - 1.0) as f32
    }
    /// `n` values uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.sym()).collect()
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.next_unit() as f32
    }
}

/// Weight constructions `[O, C/g, KH, KW]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Independent uniform values (full rank).
    Random,
    /// Per group, `sum_{m<r} u_m[(c,i)] v_m[(o,j)]`: asymmetric of rank r.
    Asym(usize),
    /// Per output channel, `sum_{m<q} u_m[(c,i)] v_m[j]`.
    PerOutput(usize),
    /// Per input channel, `sum_{m<k} P[o,m] D[m,(i,j)]`: depthwise-separable of multiplier k.
    Separable(usize),
    /// All zero.
    Zero,
}

/// Weights of `kind` for a conv `[o, cg, kh, kw]` with `g` groups.
pub fn weights(
    rng: &mut Rng,
    kind: Kind,
    o: usize,
    cg: usize,
    g: usize,
    kh: usize,
    kw: usize,
) -> Vec<f32> {
    let og = o / g;
    let mut w = vec![0f64; o * cg * kh * kw];
    let at = |oo: usize, c: usize, i: usize, j: usize| ((oo * cg + c) * kh + i) * kw + j;
    match kind {
        Kind::Random => return rng.vec(w.len()),
        Kind::Zero => {}
        Kind::Asym(r) => {
            for gi in 0..g {
                for _ in 0..r {
                    let u: Vec<f32> = rng.vec(cg * kh);
                    let v: Vec<f32> = rng.vec(og * kw);
                    for ol in 0..og {
                        for c in 0..cg {
                            for i in 0..kh {
                                for j in 0..kw {
                                    w[at(gi * og + ol, c, i, j)] +=
                                        u[c * kh + i] as f64 * v[ol * kw + j] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        Kind::PerOutput(q) => {
            for oo in 0..o {
                for _ in 0..q {
                    let u: Vec<f32> = rng.vec(cg * kh);
                    let v: Vec<f32> = rng.vec(kw);
                    for c in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                w[at(oo, c, i, j)] += u[c * kh + i] as f64 * v[j] as f64;
                            }
                        }
                    }
                }
            }
        }
        Kind::Separable(k) => {
            for gi in 0..g {
                for c in 0..cg {
                    for _ in 0..k {
                        let p: Vec<f32> = rng.vec(og);
                        let d: Vec<f32> = rng.vec(kh * kw);
                        for ol in 0..og {
                            for ij in 0..kh * kw {
                                w[at(gi * og + ol, c, ij / kw, ij % kw)] +=
                                    p[ol] as f64 * d[ij] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    w.into_iter().map(|x| x as f32).collect()
}

/// A graph with one input `x` of `[c, h, w]` (symbolic `H`, `W` when `symbolic`).
pub fn input_graph(c: usize, h: usize, w: usize, symbolic: bool) -> (Graph, NodeIndex) {
    let mut g = Graph::new();
    let shape = if symbolic {
        Shape {
            c,
            h: Dim::Sym("H".into()),
            w: Dim::Sym("W".into()),
        }
    } else {
        Shape::known(c, h, w)
    };
    let x = g.add(
        Node {
            name: "x".into(),
            op: Op::Input { index: 0 },
            span: Default::default(),
            shape,
            folded: Vec::new(),
        },
        &[],
    );
    g.inputs.push(x);
    (g, x)
}

/// Bindings `H = h`, `W = w`.
pub fn bindings(h: usize, w: usize) -> Bindings {
    let mut b = Bindings::new();
    b.insert("H".into(), h as u64);
    b.insert("W".into(), w as u64);
    b
}

/// Adds a node if its shape infers and stays non-empty at `h x w`; `None` (graph unchanged)
/// otherwise.
pub fn try_add(
    g: &mut Graph,
    name: &str,
    op: Op,
    operands: &[NodeIndex],
    hw: (usize, usize),
) -> Option<NodeIndex> {
    let shapes: Vec<&Shape> = operands.iter().map(|&o| &g.node(o).shape).collect();
    let s = shape::infer(&op, &shapes).ok()?;
    let n = g.add(
        Node {
            name: name.into(),
            op,
            span: Default::default(),
            shape: s,
            folded: Vec::new(),
        },
        operands,
    );
    if shape::validate(g).is_err() || shape::concretize(g, &bindings(hw.0, hw.1)).is_err() {
        g.remove(n);
        return None;
    }
    Some(n)
}

/// A conv op.
#[allow(clippy::too_many_arguments)]
pub fn conv_op(
    out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: Pad,
    groups: usize,
    w: Vec<f32>,
    cg: usize,
    bias: Option<Vec<f32>>,
) -> Op {
    let weight = Param::new(
        Tensor::new(vec![out, cg, kernel[0], kernel[1]], w).expect("weight shape"),
        Source::Literal,
    );
    let bias = bias.map(|b| {
        Param::new(
            Tensor::new(vec![out], b).expect("bias shape"),
            Source::Literal,
        )
    });
    Op::Conv(Conv {
        out,
        kernel,
        stride,
        dilation,
        pad,
        groups,
        weight,
        bias,
    })
}

/// A batchnorm op over `c` channels with random parameters (var > 0).
pub fn bn_op(rng: &mut Rng, c: usize) -> Op {
    let p = |v: Vec<f32>| Param::new(Tensor::new(vec![c], v).expect("bn shape"), Source::Literal);
    let mean = rng.vec(c);
    let var = (0..c).map(|_| rng.range(0.2, 2.0)).collect();
    let gamma = (0..c).map(|_| rng.range(0.5, 1.5)).collect();
    let beta = rng.vec(c);
    Op::BatchNorm(BatchNorm {
        mean: p(mean),
        var: p(var),
        gamma: p(gamma),
        beta: p(beta),
        eps: 1e-5,
    })
}

/// Random `[n, c, h, w]` inputs for every input of `g`.
pub fn random_inputs(g: &Graph, n: usize, hw: (usize, usize), seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    g.inputs
        .iter()
        .map(|&i| {
            let c = g.node(i).shape.c;
            let (h, w) = g.node(i).shape.hw().unwrap_or(hw);
            Tensor::new(vec![n, c, h, w], rng.vec(n * c * h * w)).expect("input shape")
        })
        .collect()
}

/// Runs the interpreter.
pub fn run(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    convc_interp::run(g, inputs).unwrap_or_else(|e| {
        panic!(
            "interpreter failed: {}\n{}",
            e.message,
            convc_ir::print::text(g)
        )
    })
}

/// The largest `|a - b|` and the largest `|b|` over outputs.
pub fn max_diff(a: &[Tensor], b: &[Tensor]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "output counts differ");
    let (mut d, mut m) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape(), y.shape(), "output shapes differ");
        for (&p, &q) in x.data().iter().zip(y.data()) {
            d = d.max((p as f64 - q as f64).abs());
            m = m.max((q as f64).abs());
        }
    }
    (d, m)
}

/// Asserts `after` computes what `before` does on `inputs`: max abs error at most
/// `1e-4 * (1 + max |expected|)`.
pub fn assert_same(before: &Graph, after: &Graph, inputs: &[Tensor]) {
    let want = run(before, inputs);
    let got = run(after, inputs);
    let (d, m) = max_diff(&got, &want);
    assert!(
        d <= 1e-4 * (1.0 + m),
        "outputs differ by {d} (max |expected| {m})\nbefore:\n{}after:\n{}",
        convc_ir::print::text(before),
        convc_ir::print::text(after)
    );
}

/// Runs the named passes at `tolerance`, returning the new graph and the reports.
pub fn optimise(g: &Graph, passes: &[&str], tolerance: f64) -> (Graph, Vec<PassReport>) {
    let mut h = g.clone();
    let pm = PassManager::from_names(passes).expect("known passes");
    let reports = pm
        .run(&mut h, &PassContext::with_tolerance(tolerance))
        .expect("passes run");
    (h, reports)
}

/// The conv at `n` as a dense (groups = 1) weight `[O, C, KH, KW]` in f64.
pub fn dense(conv: &Conv, in_ch: usize) -> Vec<f64> {
    let [kh, kw] = conv.kernel;
    let (o, g) = (conv.out, conv.groups);
    let (cg, og) = (in_ch / g, o / g);
    let w = conv.weight.data.data();
    let mut d = vec![0f64; o * in_ch * kh * kw];
    for oo in 0..o {
        let gi = oo / og;
        for cl in 0..cg {
            let c = gi * cg + cl;
            for ij in 0..kh * kw {
                d[(oo * in_ch + c) * kh * kw + ij] = w[(oo * cg + cl) * kh * kw + ij] as f64;
            }
        }
    }
    d
}

/// The single dense weight `[O, C, KH, KW]` equal to conv `b` applied after conv `a` (both
/// stride 1 on the axes where their kernels are not 1, which holds for the decomposed forms):
/// `W[o, c, ia+ib, ja+jb] = sum_m B[o, m, ib, jb] A[m, c, ia, ja]`.
pub fn compose(a: &Conv, a_in: usize, b: &Conv) -> (Vec<f64>, [usize; 2]) {
    let (da, db) = (dense(a, a_in), dense(b, a.out));
    let ([ah, aw], [bh, bw]) = (a.kernel, b.kernel);
    let (kh, kw) = (ah + bh - 1, aw + bw - 1);
    let (m_n, o_n) = (a.out, b.out);
    let mut w = vec![0f64; o_n * a_in * kh * kw];
    for o in 0..o_n {
        for m in 0..m_n {
            for ib in 0..bh {
                for jb in 0..bw {
                    let bv = db[((o * m_n + m) * bh + ib) * bw + jb];
                    if bv == 0.0 {
                        continue;
                    }
                    for c in 0..a_in {
                        for ia in 0..ah {
                            for ja in 0..aw {
                                let av = da[((m * a_in + c) * ah + ia) * aw + ja];
                                w[((o * a_in + c) * kh + ia + ib) * kw + ja + jb] += bv * av;
                            }
                        }
                    }
                }
            }
        }
    }
    (w, [kh, kw])
}

/// `||a - b|| / ||b||`.
pub fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The conv of node `n`.
pub fn conv_of(g: &Graph, n: NodeIndex) -> &Conv {
    match &g.node(n).op {
        Op::Conv(c) => c,
        op => panic!("`{}` is a {}, not a conv", g.node(n).name, op.name()),
    }
}

/// The node called `name`.
pub fn node(g: &Graph, name: &str) -> NodeIndex {
    g.find(name)
        .unwrap_or_else(|| panic!("no node `{name}` in\n{}", convc_ir::print::text(g)))
}

/// Input channels of conv node `n`.
pub fn in_ch(g: &Graph, n: NodeIndex) -> usize {
    g.node(g.operands(n)[0]).shape.c
}
