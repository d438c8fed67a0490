//! The eight benchmark networks' ONNX twins (`tests/fixtures/bench/onnx/`, written by the
//! generator of `specs/bench/`) import into graphs that compute what their `.conv` twins do.

use std::path::PathBuf;

use convc_tensor::Tensor;

const NAMES: [&str; 8] = [
    "seed_3to8",
    "blur7",
    "sobel",
    "lowrank_conv",
    "resnet_block",
    "mobilenet_block",
    "inception_7x7",
    "vgg_head",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A deterministic input in [-0.5, 0.5).
fn input(c: usize, h: usize, w: usize) -> Tensor {
    let v = (0..c * h * w)
        .map(|i| ((i * 7919 + 13) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Tensor::new(vec![1, c, h, w], v).unwrap()
}

#[test]
fn every_bench_twin_computes_what_its_conv_spec_does() {
    for name in NAMES {
        let onnx = root().join(format!("tests/fixtures/bench/onnx/{name}.onnx"));
        let g =
            convc_onnx::load(&onnx, Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let spec = root().join(format!("specs/bench/{name}.conv"));
        let src = std::fs::read_to_string(&spec).unwrap();
        let want = convc_ir::compile(&src, &root().join("specs/bench")).unwrap();
        assert_eq!(g.inputs.len(), 1, "{name}");
        let (a, b) = (&g.node(g.inputs[0]).shape, &want.node(want.inputs[0]).shape);
        assert_eq!(a.c, b.c, "{name}: channels");
        // The ONNX twins have a symbolic batch only; the plane is fixed as in the spec.
        let (h, w) = b.hw().unwrap();
        let x = input(b.c, h, w);
        let y = convc_interp::run(&g, std::slice::from_ref(&x)).unwrap();
        let z = convc_interp::run(&want, &[x]).unwrap();
        assert_eq!(y[0].shape(), z[0].shape(), "{name}");
        let scale = 1.0 + z[0].data().iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (p, q)) in y[0].data().iter().zip(z[0].data()).enumerate() {
            assert!(
                (p - q).abs() <= 1e-5 * scale,
                "{name}: value {i}: {p} vs {q}"
            );
        }
    }
}
