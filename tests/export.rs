//! `convc export`: the exported model runs (in convc and, where a Python with onnxruntime is
//! found, in ONNX Runtime) to the numbers of the model it came from; a low-rank conv is
//! exported decomposed and the file is smaller.
//!
//! ONNX Runtime is looked for in `$CONVC_PYTHON`, then the CI venv (`target/ci-venv`), then
//! `python3`; without it, those checks are skipped with a note (`.ci/run` runs this test again
//! with its venv).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fail_stderr, ok_stderr, read_npy, rel_err_same_shape, root, write_npy};
use convc_tensor::Tensor;

/// `[1, C, H, W]` deterministic values in [-1, 1).
fn input(dir: &Path, c: usize, h: usize, w: usize) -> PathBuf {
    let x: Vec<f32> = (0..c * h * w)
        .map(|i| ((i * 7919 + 13) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let p = dir.join("x.npy");
    write_npy(&p, vec![1, c, h, w], x);
    p
}

/// Runs `model` on `x` with convc, returning outputs `n` outputs.
fn run(model: &Path, x: &Path, n: usize, dir: &Path, tag: &str) -> Vec<Tensor> {
    let outs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("{tag}{i}.npy"))).collect();
    let mut args = vec![
        "run".to_string(),
        model.display().to_string(),
        x.display().to_string(),
        "--backend".into(),
        "interp".into(),
    ];
    for o in &outs {
        args.extend(["-o".to_string(), o.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok_stderr(&args);
    outs.iter().map(|o| read_npy(o)).collect()
}

/// A Python that imports onnxruntime and numpy, if there is one.
fn python() -> Option<String> {
    let mut cands: Vec<String> = std::env::var("CONVC_PYTHON").into_iter().collect();
    cands.push(
        root()
            .join("target/ci-venv/bin/python")
            .display()
            .to_string(),
    );
    cands.push("python3".into());
    cands.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import onnxruntime, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

const ORT: &str = "import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=['CPUExecutionProvider'])
ys = s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})
for i, y in enumerate(ys): np.save(sys.argv[3] + str(i) + '.npy', y.astype(np.float32))
";

/// ONNX Runtime's outputs of `model` on `x`, when a Python with it is found.
fn ort(model: &Path, x: &Path, n: usize, dir: &Path) -> Option<Vec<Tensor>> {
    let Some(py) = python() else {
        eprintln!(
            "note: no Python with onnxruntime (set CONVC_PYTHON): ONNX Runtime check skipped"
        );
        return None;
    };
    let prefix = dir.join("ort");
    let o = Command::new(py)
        .args(["-c", ORT])
        .arg(model)
        .arg(x)
        .arg(&prefix)
        .output()
        .expect("python runs");
    assert!(
        o.status.success(),
        "onnxruntime failed on {}:\n{}",
        model.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(
        (0..n)
            .map(|i| read_npy(&dir.join(format!("ort{i}.npy"))))
            .collect(),
    )
}

/// Every op of the language (and the added ones) in one spec.
const EVERY_OP: &str = "input x: [4, 10, 12]
c1 = conv(x, out=8, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))
b1 = batchnorm(c1, mean=random(seed=3), var=random(seed=4), gamma=random(seed=5), beta=random(seed=6))
r1 = relu6(b1)
s1 = shuffle(r1, groups=2)
l1 = lrn(s1, size=3, alpha=0.5)
a1 = avgpool(l1, kernel=2)
m1 = maxpool(a1, kernel=3, stride=1, pad=1)
u1 = upsample(m1, scale=2, mode=nearest)
u2 = upsample(m1, scale=2, mode=bilinear, coords=align_corners)
u3 = upsample(m1, scale=(2, 2), mode=bilinear)
u4 = upsample(m1, scale=2, mode=bilinear, coords=asymmetric)
s2 = add(u1, u2)
s3 = add(u3, u4)
d1 = depthwise(s3, kernel=3x3, stride=1, pad=(1, 1, 0, 2), weights=random(seed=9))
q1 = leaky_relu(d1, alpha=0.2)
s4 = concat(s2, q1)
h1 = hardswish(s4)
h2 = hardsigmoid(h1, alpha=0.3, beta=0.4)
pr = prelu(h2, slope=random(seed=7))
g1 = global_avgpool(pr)
g2 = global_maxpool(pr)
gm = mul(g1, pr)
ga = add(gm, g2)
sl = slice(ga, start=1, end=10)
pd = pad(sl, pads=(1, 2, 0, 1), mode=reflect)
pe = pad(pd, pads=1, value=0.5)
ed = pad(pe, pads=(0, 1), mode=edge)
t1 = tanh(ed)
sg = sigmoid(t1)
cl = clamp(sg, min=0.1, max=0.9)
r2 = relu(cl)
sm = softmax(r2)
output sm, g2, x
";

#[test]
fn every_op_exports_and_runs_to_the_same_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("every.conv");
    std::fs::write(&spec, EVERY_OP).unwrap();
    let out = dir.path().join("every.onnx");
    ok_stderr(&[
        "export",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let x = input(dir.path(), 4, 10, 12);
    let want = run(&spec, &x, 3, dir.path(), "want");
    let got = run(&out, &x, 3, dir.path(), "got");
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let e = rel_err_same_shape(a, b);
        assert!(
            e <= 1e-5,
            "output {i}: convc on the export: relative error {e:.2e}"
        );
    }
    if let Some(ys) = ort(&out, &x, 3, dir.path()) {
        for (i, (a, b)) in ys.iter().zip(&want).enumerate() {
            // ONNX Runtime gives [N, C, 1, 1] for the pooled output as convc does.
            let e = rel_err_same_shape(a, b);
            assert!(e <= 1e-4, "output {i}: onnxruntime: relative error {e:.2e}");
        }
    }
}

#[test]
fn a_low_rank_conv_is_exported_decomposed_and_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "specs/bench/lowrank_conv.conv";
    let (opt, plain) = (dir.path().join("opt.onnx"), dir.path().join("plain.onnx"));
    let note = ok_stderr(&["export", spec, "-o", opt.to_str().unwrap()]);
    assert!(note.contains("decompose"), "{note}");
    ok_stderr(&["export", spec, "-o", plain.to_str().unwrap(), "--no-opt"]);
    let (a, b) = (
        std::fs::metadata(&opt).unwrap().len(),
        std::fs::metadata(&plain).unwrap().len(),
    );
    eprintln!("lowrank_conv: exported {a} bytes decomposed, {b} bytes as written");
    assert!(a * 3 < b, "decomposed {a} bytes, as written {b} bytes");
    let m = convc_onnx::read::decode(&std::fs::read(&opt).unwrap()).unwrap();
    let convs = m
        .graph
        .unwrap()
        .node
        .iter()
        .filter(|n| n.op_type() == "Conv")
        .count();
    assert_eq!(convs, 2, "depthwise then pointwise");
    let x = input(dir.path(), 64, 56, 56);
    let want = run(Path::new(spec), &x, 1, dir.path(), "want");
    let got = run(&opt, &x, 1, dir.path(), "got");
    assert!(rel_err_same_shape(&got[0], &want[0]) <= 1e-5);
    if let Some(ys) = ort(&opt, &x, 1, dir.path()) {
        let e = rel_err_same_shape(&ys[0], &want[0]);
        assert!(e <= 1e-4, "onnxruntime: relative error {e:.2e}");
    }
}

#[test]
fn an_onnx_model_exports_too_and_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let model = "tests/fixtures/onnx/ops/mul_squeeze_excitation.onnx";
    ok_stderr(&["export", model, "-o", out.to_str().unwrap()]);
    let x = Path::new(model)
        .with_extension("")
        .with_extension("input.npy");
    let x = root().join(x);
    let want = run(&root().join(model), &x, 1, dir.path(), "want");
    let got = run(&out, &x, 1, dir.path(), "got");
    assert!(rel_err_same_shape(&got[0], &want[0]) <= 1e-6);
    fail_stderr(&["export", model, "-o", "x.conv"], 2);
    fail_stderr(
        &[
            "export",
            model,
            "-o",
            out.to_str().unwrap(),
            "--passes",
            "nope",
        ],
        2,
    );
    // A shuffle on symbolic sizes needs them bound.
    let spec = dir.path().join("s.conv");
    std::fs::write(
        &spec,
        "input x: [4, H, W]\ny = shuffle(x, groups=2)\noutput y\n",
    )
    .unwrap();
    let err = fail_stderr(
        &[
            "export",
            spec.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("--size"));
    ok_stderr(&[
        "export",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--size",
        "3x5",
    ]);
}

/// `||a - b||_F / ||b||_F`.
fn frobenius_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.data().iter().zip(b.data()) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    (num / den).sqrt()
}

#[test]
fn a_budgeted_export_is_smaller_and_stays_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // A 5x5 conv whose weights are asymmetric of rank 2 plus 1% noise: no exact rewrite, but
    // rank 2 is within a budget of 5%.
    let (o, c, k) = (8usize, 8usize, 5usize);
    let mut s = 7u64;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0
    };
    let u: Vec<f64> = (0..2 * c * k).map(|_| rnd()).collect();
    let v: Vec<f64> = (0..2 * o * k).map(|_| rnd()).collect();
    let mut w = vec![0f32; o * c * k * k];
    for oo in 0..o {
        for cc in 0..c {
            for i in 0..k {
                for j in 0..k {
                    let x: f64 = (0..2)
                        .map(|m| u[m * c * k + cc * k + i] * v[m * o * k + oo * k + j])
                        .sum();
                    w[((oo * c + cc) * k + i) * k + j] = (x + 0.01 * rnd()) as f32;
                }
            }
        }
    }
    write_npy(&dir.path().join("w.npy"), vec![o, c, k, k], w);
    let spec = dir.path().join("n.conv");
    std::fs::write(
        &spec,
        "input x: [8, 12, 12]\nc1 = conv(x, out=8, kernel=5x5, pad=same, weights=file(\"w.npy\"))\ny = relu(c1)\noutput y\n",
    )
    .unwrap();
    let x = input(dir.path(), c, 12, 12);
    let (exact, cheap) = (dir.path().join("exact.onnx"), dir.path().join("cheap.onnx"));
    ok_stderr(&[
        "export",
        spec.to_str().unwrap(),
        "-o",
        exact.to_str().unwrap(),
    ]);
    let budget = 0.05;
    let note = ok_stderr(&[
        "export",
        spec.to_str().unwrap(),
        "-o",
        cheap.to_str().unwrap(),
        "--budget",
        "0.05",
        "--data",
        x.to_str().unwrap(),
    ]);
    assert!(
        note.contains("budget: network output error <= 0.05"),
        "{note}"
    );
    assert!(note.contains("asymmetric r=2"), "{note}");
    let (a, b) = (
        std::fs::metadata(&cheap).unwrap().len(),
        std::fs::metadata(&exact).unwrap().len(),
    );
    assert!(a * 3 < b, "budgeted {a} bytes, exact {b} bytes");
    let want = run(&spec, &x, 1, dir.path(), "want");
    let got = run(&cheap, &x, 1, dir.path(), "got");
    let e = frobenius_err(&got[0], &want[0]);
    assert!(e > 1e-4 && e <= budget * 1.001, "convc: error {e:.3e}");
    if let Some(ys) = ort(&cheap, &x, 1, dir.path()) {
        let e = frobenius_err(&ys[0], &want[0]);
        assert!(e <= budget * 1.001, "onnxruntime: error {e:.3e}");
    }
    // The budget chooses the rewrites itself; --data is for the budget.
    let out = cheap.to_str().unwrap();
    let bad: [&[&str]; 2] = [
        &["--budget", "0.05", "--tolerance", "0.1"],
        &["--data", x.to_str().unwrap()],
    ];
    for extra in bad {
        let mut args = vec!["export", spec.to_str().unwrap(), "-o", out];
        args.extend_from_slice(extra);
        fail_stderr(&args, 2);
    }
}
