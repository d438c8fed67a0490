//! The onnxruntime fixtures of `tests/fixtures/` (made by `make_fixtures.py`) on the JIT, with
//! and without the default passes, on 1 and 2 threads.

mod common;

use std::path::PathBuf;

use common::{read_npy, root};

#[test]
fn every_fixture_matches_on_the_jit() {
    let dir = root().join("tests/fixtures");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("model.conv").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "fixtures missing");
    for case in &cases {
        let src = std::fs::read_to_string(case.join("model.conv")).expect("spec");
        let input = read_npy(&case.join("input.npy"));
        let expected = read_npy(&case.join("expected.npy"));
        let scale = 1.0
            + expected
                .data()
                .iter()
                .fold(0f64, |m, v| m.max(v.abs() as f64));
        for passes in [false, true] {
            let mut g = convc_ir::compile(&src, case).expect("valid");
            if passes {
                convc_passes::PassManager::default_pipeline()
                    .run(&mut g, &convc_passes::PassContext::default())
                    .expect("passes");
            }
            let s = input.shape();
            for threads in [1, 2] {
                let opts = convc_jit::JitOptions {
                    threads,
                    verify: true,
                    parallel_min_ns: 0.0,
                    ..Default::default()
                };
                let net = convc_jit::compile(&g, &[(s[2], s[3])], &opts).expect("compiles");
                let out = net.run(std::slice::from_ref(&input)).expect("runs");
                assert_eq!(out[0].shape(), expected.shape(), "{}", case.display());
                let worst = out[0]
                    .data()
                    .iter()
                    .zip(expected.data())
                    .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
                assert!(
                    worst <= 1e-5 * scale,
                    "{} (passes {passes}, {threads} threads): max error {worst:.3e} > {:.3e}",
                    case.display(),
                    1e-5 * scale
                );
            }
        }
    }
}
