//! Shared helpers: compile spec text, run on the JIT and the interpreter, compare.
#![allow(dead_code)]

pub mod specgen;

use std::path::Path;

use convc_ir::Graph;
use convc_jit::{CompiledNet, JitOptions};
use convc_tensor::Tensor;

/// Parses and lowers spec text (file sources relative to `dir`).
pub fn graph(src: &str, dir: &Path) -> Graph {
    match convc_ir::compile(src, dir) {
        Ok(g) => g,
        Err(d) => panic!("spec does not compile: {}\n{src}", d.message),
    }
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn random_tensor(shape: Vec<usize>, seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let data = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::new(shape, data).expect("shape")
}

/// Max abs error <= 1e-4 * (1 + max |expected|), per output. Returns the worst ratio.
pub fn assert_close(got: &[Tensor], want: &[Tensor], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of outputs");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "{what}: shape of output {i}");
        let maxw = w
            .data()
            .iter()
            .fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
        let tol = 1e-4 * (1.0 + maxw);
        for (k, (a, b)) in g.data().iter().zip(w.data()).enumerate() {
            let ok = if b.is_nan() {
                a.is_nan()
            } else if b.is_infinite() {
                a == b
            } else {
                (a - b).abs() <= tol
            };
            assert!(
                ok,
                "{what}: output {i} differs at {k}: jit {a} vs interp {b} (tol {tol})"
            );
        }
    }
}

/// Each input's `(H, W)`: its known sizes, `(h, w)` where symbolic.
pub fn input_sizes(g: &Graph, (h, w): (usize, usize)) -> Vec<(usize, usize)> {
    g.inputs
        .iter()
        .map(|&n| {
            let s = &g.node(n).shape;
            (
                s.h.known().map_or(h, |v| v as usize),
                s.w.known().map_or(w, |v| v as usize),
            )
        })
        .collect()
}

/// Inputs of `[batch, C, H, W]` for every network input at the given sizes.
pub fn inputs_for(g: &Graph, sizes: &[(usize, usize)], batch: usize, seed: u64) -> Vec<Tensor> {
    g.inputs
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, (&n, &(h, w)))| {
            random_tensor(vec![batch, g.node(n).shape.c, h, w], seed + i as u64)
        })
        .collect()
}

/// Compiles with `opts` and checks against the interpreter on a random batch. Returns the net.
pub fn check_graph(
    g: &Graph,
    sizes: &[(usize, usize)],
    batch: usize,
    opts: &JitOptions,
    what: &str,
) -> CompiledNet {
    let net = match convc_jit::compile(g, sizes, opts) {
        Ok(n) => n,
        Err(e) => panic!("{what}: JIT compile failed: {e}"),
    };
    let inputs = inputs_for(g, sizes, batch, 7);
    let want = convc_interp::run(g, &inputs).expect("interpreter");
    let got = net
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{what}: JIT run failed: {e}"));
    assert_close(&got, &want, what);
    net
}

/// The first input's size as the spec writes it (1 where it is symbolic).
pub fn first_input_size(g: &Graph) -> (usize, usize) {
    let sh = &g.node(g.inputs[0]).shape;
    (
        sh.h.known().unwrap_or(1) as usize,
        sh.w.known().unwrap_or(1) as usize,
    )
}

/// Options for tests: verifier on, `threads` threads, every step split across them.
pub fn opts(threads: usize) -> JitOptions {
    JitOptions {
        threads,
        parallel_min_ns: 0.0,
        ..JitOptions::default()
    }
}

/// Runs `src` (its input at the spec's sizes) on vector path `isa` with 3x3 algorithm `algo`
/// against the interpreter on a batch of `batch`; returns the kernels' names.
pub fn check_isa_algo(
    src: &str,
    isa: convc_jit::Isa,
    algo: convc_jit::ConvAlgo,
    threads: usize,
    batch: usize,
) -> Vec<String> {
    check_isa_algo_opt(src, isa, algo, threads, batch, false)
}

/// [`check_isa_algo`], after the default pass pipeline with exact rewrites only when `passes`
/// (so the JIT follows the `fuse` pass's groups in `g.fusion`, as users' runs do; without it,
/// the JIT applies the same rule of `convc_ir::fusion` itself). The interpreter runs the graph
/// as written: the passes are under test too.
pub fn check_isa_algo_opt(
    src: &str,
    isa: convc_jit::Isa,
    algo: convc_jit::ConvAlgo,
    threads: usize,
    batch: usize,
    passes: bool,
) -> Vec<String> {
    let written = graph(src, Path::new("."));
    let mut g = written.clone();
    if passes {
        convc_passes::PassManager::default_pipeline()
            .run(&mut g, &convc_passes::PassContext::with_tolerance(0.0))
            .expect("passes");
        assert!(g.fusion.is_some(), "the pipeline stores fusion groups");
    }
    let sizes = [first_input_size(&g)];
    // Half the specs (by length) pair every depthwise conv with its pointwise reader, so that
    // band pairs of every row width stay covered.
    let pair_any_width = src.len() % 2 == 0;
    let o = JitOptions {
        isa: Some(isa),
        conv_algo: algo,
        pair_any_width,
        ..opts(threads)
    };
    let what = format!(
        "isa={isa} algo={algo:?} threads={threads} passes={passes} pair_any_width={pair_any_width}\n{src}"
    );
    check_compiled(&written, &g, &sizes, &o, batch, &what)
}

/// Compiles `g` (the graph `written` after any passes) with `o` and runs it against the
/// interpreter on `written` (batches of `batch`); returns the kernels' names.
pub fn check_compiled(
    written: &convc_ir::Graph,
    g: &convc_ir::Graph,
    sizes: &[(usize, usize)],
    o: &JitOptions,
    batch: usize,
    what: &str,
) -> Vec<String> {
    let net = match convc_jit::compile(g, sizes, o) {
        Ok(n) => n,
        Err(e) => panic!("{what}: JIT compile failed: {e}"),
    };
    let inputs = inputs_for(written, sizes, batch, 7);
    let want = convc_interp::run(written, &inputs).expect("interpreter");
    let got = net
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{what}: JIT run failed: {e}"));
    assert_close(&got, &want, what);
    net.kernels().iter().map(|k| k.name.clone()).collect()
}
