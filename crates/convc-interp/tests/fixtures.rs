//! The interpreter against ONNX Runtime: every case folder under the workspace's
//! `tests/fixtures/` (made by `tests/fixtures/make_fixtures.py`) holds `model.conv`, its
//! weights, `input.npy` and `expected.npy`. Each model is compiled, run on the input and
//! compared with the expected output: max abs error <= 1e-5 * (1 + max |expected|).
//! Needs no Python.

use std::path::{Path, PathBuf};

use convc_tensor::Tensor;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .join("tests")
        .join("fixtures")
}

fn read_npy(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    convc_tensor::npy::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one case; returns the max abs error and the allowed one.
fn check_case(dir: &Path) -> Result<(f64, f64), String> {
    let spec = dir.join("model.conv");
    let src = std::fs::read_to_string(&spec)
        .map_err(|e| format!("cannot read {}: {e}", spec.display()))?;
    let g = convc_ir::compile(&src, dir)
        .map_err(|d| format!("model.conv does not compile: {}", d.message))?;
    let input = read_npy(&dir.join("input.npy"))?;
    let expected = read_npy(&dir.join("expected.npy"))?;
    let out = convc_interp::run(&g, &[input]).map_err(|e| format!("run failed: {e}"))?;
    let [got] = out.as_slice() else {
        return Err(format!("{} outputs, expected 1", out.len()));
    };
    if got.shape() != expected.shape() {
        return Err(format!(
            "output shape {:?}, expected {:?}",
            got.shape(),
            expected.shape()
        ));
    }
    let max_expected = expected
        .data()
        .iter()
        .fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let tol = 1e-5 * (1.0 + max_expected);
    let mut worst = (0usize, 0f64);
    for (i, (&a, &b)) in got.data().iter().zip(expected.data()).enumerate() {
        let err = (f64::from(a) - f64::from(b)).abs();
        // A NaN error (NaN on one side only) counts as infinitely wrong.
        let err = if err.is_nan() && !(a.is_nan() && b.is_nan()) {
            f64::INFINITY
        } else if err.is_nan() {
            0.0
        } else {
            err
        };
        if err > worst.1 || (i == 0 && err == 0.0) {
            worst = (i, err);
        }
    }
    if worst.1 > tol {
        let (i, e) = worst;
        let idx = unravel(i, got.shape());
        return Err(format!(
            "max abs error {e:.3e} > {tol:.3e} at {idx:?}: got {}, expected {}",
            got.data()[i],
            expected.data()[i]
        ));
    }
    Ok((worst.1, tol))
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[k] = i % d;
            i /= d;
        }
    }
    idx
}

#[test]
fn interpreter_matches_onnxruntime_fixtures() {
    let root = fixtures_dir();
    let entries =
        std::fs::read_dir(&root).unwrap_or_else(|e| panic!("cannot list {}: {e}", root.display()));
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.join("model.conv").is_file())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no fixture case found under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        match check_case(dir) {
            Ok((err, tol)) => println!("{name:<28} max abs error {err:.3e} (allowed {tol:.3e})"),
            Err(m) => failures.push(format!("case `{name}`: {m}")),
        }
    }
    println!("{} fixture case(s) checked", dirs.len());
    assert!(
        failures.is_empty(),
        "{} of {} fixture case(s) failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
