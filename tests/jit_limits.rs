//! End to end: networks past the JIT's internal capacities (issue 11: a conv then 70 `clamp`
//! layers with distinct bounds made `convc run` panic with "constant pool full") run with
//! the `convc` binary on both backends, with and without the passes, and agree.

use std::path::Path;
use std::process::Command;

use convc_tensor::{Tensor, npy};

fn convc(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_convc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("convc runs");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(0), "convc {args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Runs `spec` on `x.npy` in `dir` on both backends (and the JIT without passes) and checks
/// the outputs agree within `1e-4 * (1 + max|expected|)`.
fn agree(dir: &Path, spec: &str) {
    std::fs::write(dir.join("net.conv"), spec).expect("write spec");
    convc(
        dir,
        &[
            "run",
            "net.conv",
            "x.npy",
            "-o",
            "interp.npy",
            "--backend",
            "interp",
        ],
    );
    for (out, extra) in [("jit.npy", None), ("jit_noopt.npy", Some("--no-opt"))] {
        let mut args = vec!["run", "net.conv", "x.npy", "-o", out, "--backend", "jit"];
        args.extend(extra);
        convc(dir, &args);
        let read = |f: &str| npy::read(&std::fs::read(dir.join(f)).expect("output")).expect("npy");
        let (want, got) = (read("interp.npy"), read(out));
        assert_eq!(want.shape(), got.shape());
        let tol = 1e-4 * (1.0 + want.data().iter().fold(0f32, |m, v| m.max(v.abs())));
        let worst = got
            .data()
            .iter()
            .zip(want.data())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= tol,
            "{out}: differs by {worst} (tolerance {tol})\n{spec}"
        );
    }
}

fn input(dir: &Path, shape: Vec<usize>) {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 997) as f32 / 100.0 - 5.0)
        .collect();
    let t = Tensor::new(shape, data).expect("tensor");
    std::fs::write(dir.join("x.npy"), npy::write(&t)).expect("write input");
}

#[test]
fn a_conv_and_70_distinct_clamps_runs_on_both_backends() {
    let d = tempfile::tempdir().expect("tempdir");
    input(d.path(), vec![1, 3, 24, 20]);
    let mut s = String::from(
        "input x: [3, H, W]\nc0 = conv(x, out=8, kernel=3, pad=same, weights=random(seed=1), bias=random(seed=2))\n",
    );
    for i in 1..=70 {
        s += &format!(
            "c{i} = clamp(c{}, min=-{}.{:02}, max={}.{:02})\n",
            i - 1,
            1 + i % 4,
            i,
            1 + (i * 3) % 5,
            (i * 7) % 100
        );
    }
    s += "output c70\n";
    agree(d.path(), &s);
}

#[test]
fn separable_pair_with_64_distinct_constants_runs_on_both_backends() {
    let d = tempfile::tempdir().expect("tempdir");
    input(d.path(), vec![2, 2, 17, 15]);
    let mut s = String::from(
        "input x: [2, H, W]\na0 = conv(x, out=2, groups=2, kernel=5x1, pad=(2, 0), weights=random(seed=3))\n",
    );
    for i in 1..=16 {
        s += &format!("a{i} = clamp(a{}, min=-{i}.5, max={i}.25)\n", i - 1);
    }
    s += "b0 = conv(a16, out=4, kernel=1x5, pad=(0, 2), weights=random(seed=4))\n";
    for i in 1..=16 {
        s += &format!("b{i} = clamp(b{}, min=-{i}.75, max={i}.125)\n", i - 1);
    }
    s += "output b16\n";
    agree(d.path(), &s);
}
