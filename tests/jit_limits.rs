//! End to end: networks past the JIT's internal capacities (issue 11: a conv then 70 `clamp`
//! layers with distinct bounds made `convc run` panic with "constant pool full") run with
//! the `convc` binary on both backends, with and without the passes, and agree.

mod common;

use std::path::Path;

use common::{ok_stderr_in, read_npy, rel_err_same_shape, write_npy};

/// Runs `spec` on `x.npy` in `dir` on both backends (and the JIT without passes) and checks
/// the outputs agree within `1e-4 * (1 + max|expected|)`.
fn agree(dir: &Path, spec: &str) {
    std::fs::write(dir.join("net.conv"), spec).expect("write spec");
    ok_stderr_in(
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
        ok_stderr_in(dir, &args);
        let (want, got) = (read_npy(&dir.join("interp.npy")), read_npy(&dir.join(out)));
        let e = rel_err_same_shape(&got, &want);
        assert!(e <= 1e-4, "{out}: relative error {e:.2e}\n{spec}");
    }
}

fn input(dir: &Path, shape: Vec<usize>) {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 997) as f32 / 100.0 - 5.0)
        .collect();
    write_npy(&dir.join("x.npy"), shape, data);
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
