//! The benchmark networks against ONNX Runtime: `tests/fixtures/bench/make_bench_fixtures.py`
//! ran each network's ONNX twin on a deterministic input and kept 4096 sampled output values
//! and every channel's mean. Here convc runs the `.conv` on the same input and must agree.

mod common;

use common::{BENCH_NAMES, read_npy, root};
use convc_tensor::Tensor;

/// The script's input: `((c*7919 + h*104729 + w*1299709) % 1000) / 1000 - 0.5`, batch 1.
fn make_input(c: usize, h: usize, w: usize) -> Tensor {
    let mut v = Vec::with_capacity(c * h * w);
    for ci in 0..c {
        for hi in 0..h {
            for wi in 0..w {
                let k = (ci * 7919 + hi * 104729 + wi * 1299709) % 1000;
                v.push((k as f64 / 1000.0 - 0.5) as f32);
            }
        }
    }
    Tensor::new(vec![1, c, h, w], v).expect("shape")
}

/// Compares an output `[1, C, H, W]` with the fixture of `name`; returns the worst error.
pub fn compare(name: &str, out: &Tensor) -> f64 {
    let dir = root().join("tests/fixtures/bench");
    let samples = read_npy(&dir.join(format!("{name}.samples.npy")));
    let means = read_npy(&dir.join(format!("{name}.means.npy")));
    let data = out.data();
    let n = data.len() as u64;
    let scale = 1.0
        + samples
            .data()
            .iter()
            .fold(0f64, |m, v| m.max(v.abs() as f64));
    let mut worst = 0f64;
    for (i, &want) in samples.data().iter().enumerate() {
        let idx = ((i as u64).wrapping_mul(2654435761) % n) as usize;
        let err = (data[idx] as f64 - want as f64).abs();
        worst = worst.max(err / scale);
        assert!(
            err <= 1e-5 * scale,
            "{name}: sample {i} (flat {idx}): convc {} vs onnxruntime {want}",
            data[idx]
        );
    }
    let c = out.shape()[1];
    let hw = data.len() / c;
    for ch in 0..c {
        let mean = data[ch * hw..(ch + 1) * hw]
            .iter()
            .map(|&v| v as f64)
            .sum::<f64>()
            / hw as f64;
        let want = means.data()[ch] as f64;
        assert!(
            (mean - want).abs() <= 1e-5 * scale,
            "{name}: channel {ch} mean {mean} vs onnxruntime {want}"
        );
    }
    worst
}

fn bench_graph(name: &str, passes: bool) -> (convc_ir::Graph, Tensor) {
    let spec = root().join(format!("specs/bench/{name}.conv"));
    let src = std::fs::read_to_string(&spec).expect("spec");
    let mut g = convc_ir::compile(&src, &root().join("specs/bench")).expect("valid spec");
    if passes {
        let cx = convc_passes::PassContext::default();
        convc_passes::PassManager::default_pipeline()
            .run(&mut g, &cx)
            .expect("passes");
    }
    let shape = &g.node(g.inputs[0]).shape;
    let (h, w) = shape.hw().expect("bench inputs have fixed sizes");
    let x = make_input(shape.c, h, w);
    (g, x)
}

/// The default pipeline, then machine code: what `convc run` does.
#[test]
fn jit_after_the_default_passes_matches_onnxruntime_on_every_bench_network() {
    for name in BENCH_NAMES {
        let (g, x) = bench_graph(name, true);
        let s = x.shape();
        let net = convc_jit::compile(
            &g,
            &[(s[2], s[3])],
            &convc_jit::JitOptions {
                threads: 2,
                verify: true,
                ..Default::default()
            },
        )
        .expect("compiles");
        let out = net.run(&[x]).expect("runs");
        let worst = compare(name, &out[0]);
        eprintln!("{name} (jit): worst relative error {worst:.2e}");
    }
}

#[test]
fn interpreter_matches_onnxruntime_on_every_bench_network() {
    for name in BENCH_NAMES {
        let spec = root().join(format!("specs/bench/{name}.conv"));
        let src = std::fs::read_to_string(&spec).expect("spec");
        let g = convc_ir::compile(&src, &root().join("specs/bench")).expect("valid spec");
        let shape = &g.node(g.inputs[0]).shape;
        let (h, w) = shape.hw().expect("bench inputs have fixed sizes");
        let x = make_input(shape.c, h, w);
        let out = convc_interp::run(&g, &[x]).expect("runs");
        let worst = compare(name, &out[0]);
        eprintln!("{name}: worst relative error {worst:.2e}");
    }
}
