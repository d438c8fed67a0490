//! End-to-end tests of the `convc` binary: snapshots of `check` and `dump` on the example specs,
//! exit codes and located messages for bad specs and bad usage.

mod common;

use common::{
    convc, convc_with_env, examples, fail_stderr, ok_stderr, ok_stdout, read_npy,
    rel_err_same_shape, root, stderr, stdout,
};

#[test]
fn check_and_dump_snapshots_of_every_example() {
    for name in examples() {
        let path = format!("specs/examples/{name}");
        let stem = name.trim_end_matches(".conv");
        insta::assert_snapshot!(format!("check_{stem}"), ok_stdout(&["check", &path]));
        insta::assert_snapshot!(
            format!("dump_text_{stem}"),
            ok_stdout(&["dump", &path, "--no-opt"])
        );
        insta::assert_snapshot!(
            format!("dump_dot_{stem}"),
            ok_stdout(&["dump", &path, "--no-opt", "--format", "dot"])
        );
        insta::assert_snapshot!(
            format!("dump_passes_{stem}"),
            ok_stdout(&["dump", &path, "--print-after-all"])
        );
        insta::assert_snapshot!(format!("explain_{stem}"), ok_stdout(&["explain", &path]));
        let json = ok_stdout(&["dump", &path, "--no-opt", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&json).expect("dump --format json is JSON");
        assert!(v["nodes"].as_array().is_some_and(|n| !n.is_empty()));
        insta::assert_snapshot!(format!("dump_json_{stem}"), json);
    }
}

#[test]
fn every_bench_spec_checks() {
    let dir = root().join("specs/bench");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("specs/bench") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "conv") {
            let rel = format!("specs/bench/{}", p.file_name().unwrap().to_string_lossy());
            let out = ok_stdout(&["check", &rel]);
            assert!(
                out.contains("random weights: none"),
                "{rel} uses random weights:\n{out}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 8);
}

#[test]
fn check_reports_bench_macs_and_params() {
    // Figures from the benchmark suite's README (computed by its own generator).
    for (name, macs, params) in [
        ("blur7", "38535168", "147"),
        ("lowrank_conv", "115605504", "36928"),
        ("mobilenet_block", "175816704", "15680"),
        ("vgg_head", "4710924288", "260160"),
    ] {
        let out = ok_stdout(&["check", &format!("specs/bench/{name}.conv")]);
        let total = out
            .lines()
            .find(|l| l.starts_with("total"))
            .expect("total row");
        let cells: Vec<&str> = total.split_whitespace().collect();
        assert_eq!(cells, ["total", params, macs], "{name}");
    }
}

#[test]
fn check_names_random_weights_of_the_added_ops() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("m.conv");
    std::fs::write(
        &spec,
        "input x: [4, H, W]\n\
         t = conv_transpose(x, out=2, stride=2, bias=random(seed=4))\n\
         p = prelu(t, slope=random(seed=5))\n\
         q = prelu(p)\n\
         output q\n",
    )
    .unwrap();
    let out = ok_stdout(&["check", spec.to_str().unwrap()]);
    assert!(
        out.contains(
            "random weights: t weights (omitted, random seed=12638201494206808739), t bias (random seed=4), p slope (random seed=5)"
        ),
        "{out}"
    );
    assert!(out.contains("[2,(H-1)*2+3,(W-1)*2+3]"), "{out}");
}

#[test]
fn symbolic_sizes_and_size_binding() {
    let out = ok_stdout(&["check", "specs/examples/gaussian_blur.conv"]);
    assert!(out.contains("[3,H,W]") && out.contains("147/px"), "{out}");
    let out = ok_stdout(&[
        "check",
        "specs/examples/gaussian_blur.conv",
        "--size",
        "64x32",
    ]);
    assert!(
        out.contains("[3,64,32]") && out.contains(&(147 * 64 * 32).to_string()),
        "{out}"
    );
    fail_stderr(
        &[
            "check",
            "specs/examples/gaussian_blur.conv",
            "--size",
            "0x3",
        ],
        2,
    );
}

#[test]
fn bad_spec_exits_1_with_a_located_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.conv");
    std::fs::write(
        &p,
        "input x: [3, 8, 8]\ny = conv(x, out=4, kernel=3x3, strid=2)\noutput y\n",
    )
    .unwrap();
    let err = fail_stderr(&["check", p.to_str().unwrap()], 1);
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "{}:2:32: error: unknown argument `strid` for conv",
            p.display()
        )
    );
    assert!(
        err.contains("y = conv(x, out=4, kernel=3x3, strid=2)"),
        "{err}"
    );
    assert!(err.contains("^^^^^"), "{err}");
}

#[test]
fn bad_files_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let err = fail_stderr(&["check", "does/not/exist.conv"], 1);
    assert!(
        err.contains("cannot read `does/not/exist.conv`: no such file"),
        "{err}"
    );
    let err = fail_stderr(&["check", dir.path().to_str().unwrap()], 1);
    assert!(err.contains("is a directory"));
    let p = dir.path().join("bin.conv");
    std::fs::write(&p, b"input x: [3, 8, 8]\n\xff\xfe\noutput x\n").unwrap();
    let err = fail_stderr(&["check", p.to_str().unwrap()], 1);
    assert!(
        err.contains(":2:1: error: the file is not valid UTF-8 text"),
        "{err}"
    );
    let p = dir.path().join("empty.conv");
    std::fs::write(&p, b"").unwrap();
    let err = fail_stderr(&["check", p.to_str().unwrap()], 1);
    assert!(err.contains(":1:1: error: the file is empty"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["check"],
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "xml",
        ],
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--passes",
            "nope",
        ],
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--no-opt",
            "--passes",
            "dce",
        ],
        &[
            "check",
            "specs/examples/classic_standard.conv",
            "--size",
            "axb",
        ],
    ] {
        let err = fail_stderr(args, 2);
        assert!(!err.is_empty());
    }
}

#[test]
fn help_for_every_command() {
    for cmd in ["check", "dump", "explain", "run", "bench"] {
        let out = ok_stdout(&[cmd, "--help"]);
        assert!(out.contains("Usage: convc"), "{out}");
    }
    assert!(ok_stdout(&["--help"]).contains("check"));
}

#[test]
fn bench_reports_time_and_rates() {
    let out = ok_stdout(&[
        "bench",
        "specs/bench/seed_3to8.conv",
        "--backend",
        "interp",
        "--min-time",
        "0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("bench --json is JSON");
    assert_eq!(v["macs_written"], 3538944);
    assert!(v["ms_per_image"].as_f64().is_some_and(|t| t > 0.0));
    assert!(v["gflops"].as_f64().is_some_and(|g| g > 0.0));
    let out = ok_stdout(&[
        "bench",
        "specs/bench/blur7.conv",
        "--backend",
        "interp",
        "--min-time",
        "0",
        "--threads",
        "1",
    ]);
    // The first `X ms/image` is the median (tools read it).
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("time") && l.contains(" ms/image")),
        "{out}"
    );
    assert!(
        out.contains("38.5M MACs/image") && out.contains("11.0M MACs/image"),
        "{out}"
    );
    // Symbolic sizes need --size.
    let err = fail_stderr(
        &[
            "bench",
            "specs/examples/gaussian_blur.conv",
            "--backend",
            "interp",
        ],
        2,
    );
    assert!(err.contains("--size"), "{err}");
    let out = ok_stdout(&[
        "bench",
        "specs/examples/gaussian_blur.conv",
        "--backend",
        "interp",
        "--size",
        "32x48",
        "--batch",
        "2",
        "--min-time",
        "0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["macs_written"], 147 * 32 * 48);
    assert_eq!(v["batch"], 2);
}

#[test]
fn bench_profile_and_asm() {
    let out = ok_stdout(&[
        "bench",
        "specs/bench/resnet_block.conv",
        "--threads",
        "1",
        "--min-time",
        "0",
        "--profile",
    ]);
    assert!(out.contains("backend jit"), "{out}");
    assert!(
        out.contains("profile") && out.contains("bn1+relu1") && out.contains("GFLOP/s"),
        "{out}"
    );
    fail_stderr(
        &[
            "bench",
            "specs/bench/sobel.conv",
            "--backend",
            "interp",
            "--profile",
        ],
        2,
    );
    // A band step lists its kernels, whose shares make up its time and whose MACs its MACs.
    let out = ok_stdout(&[
        "bench",
        "specs/bench/mobilenet_block.conv",
        "--threads",
        "2",
        "--min-time",
        "0",
        "--profile",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let step = &v["profile"][0];
    let parts = step["parts"].as_array().expect("parts");
    let names: Vec<_> = parts
        .iter()
        .map(|p| p["step"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["expand+bn1+act1", "dw+bn2+act2", "project+bn3+y"],
        "{out}"
    );
    let sum = |k: &str| {
        parts
            .iter()
            .map(|p| p[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    assert_eq!(sum("macs"), step["macs"].as_f64().unwrap_or(-1.0), "{out}");
    let ms = step["ms_per_image"].as_f64().unwrap_or(0.0);
    assert!(
        parts.iter().all(|p| p["ms_per_image"].as_f64() > Some(0.0)),
        "{out}"
    );
    assert!((sum("ms_per_image") - ms).abs() <= 0.2 * ms, "{out}");
    let asm = ok_stdout(&[
        "dump",
        "specs/examples/classic_standard.conv",
        "--format",
        "asm",
    ]);
    // The host's widest path: a microkernel named and called, or Cranelift's own vectors.
    assert!(
        asm.contains("; kernel")
            && (asm.contains("microkernel") && asm.contains("call") || asm.contains("xmm")),
        "no vector code in:\n{asm}"
    );
    let asm = stdout(&convc_with_env(
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "asm",
        ],
        &[("CONVC_ISA", "sse")],
    ));
    assert!(
        asm.contains("vfmadd") || asm.contains("mulps"),
        "no f32x4 code with CONVC_ISA=sse:\n{asm}"
    );
    assert!(!asm.contains("microkernel"), "{asm}");
    // --isa forces the path the same way, and wins over the environment.
    let asm2 = stdout(&convc_with_env(
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "asm",
            "--isa",
            "sse",
        ],
        &[("CONVC_ISA", "avx512")],
    ));
    assert!(
        !asm2.contains("microkernel") && asm2.contains("; kernel"),
        "{asm2}"
    );
    for args in [
        &["bench", "specs/bench/sobel.conv", "--isa", "avx3"][..],
        &[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--isa",
            "x",
        ],
    ] {
        fail_stderr(args, 2);
    }
    let o = convc_with_env(
        &["bench", "specs/bench/sobel.conv", "--min-time", "0"],
        &[("CONVC_ISA", "avx3")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("CONVC_ISA=avx3"));
    fail_stderr(
        &[
            "dump",
            "specs/examples/gaussian_blur.conv",
            "--format",
            "asm",
        ],
        2,
    );
    assert!(
        ok_stdout(&[
            "dump",
            "specs/examples/gaussian_blur.conv",
            "--format",
            "asm",
            "--size",
            "16x16"
        ])
        .contains("; kernel")
    );
}

#[test]
fn tolerance_truncates_and_reports() {
    let err = ok_stderr(&["dump", "specs/examples/classic_standard.conv"]);
    assert!(
        !err.contains("decompose:"),
        "a full-rank conv must be left alone: {err}"
    );
    let o = convc(&[
        "dump",
        "specs/examples/classic_standard.conv",
        "--tolerance",
        "0.5",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("decompose: `features` ->") && err.contains("(truncated, lossy)"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("features.pw") || stdout(&o).contains("features.h"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn explain_one_layer_and_errors() {
    let out = ok_stdout(&[
        "explain",
        "specs/examples/resnet_block.conv",
        "--layer",
        "conv1",
    ]);
    assert!(
        out.contains("layer `conv1`") && !out.contains("layer `conv2`"),
        "{out}"
    );
    let err = fail_stderr(
        &[
            "explain",
            "specs/examples/resnet_block.conv",
            "--layer",
            "nope",
        ],
        2,
    );
    assert!(err.contains("nope"), "{err}");
    let out = ok_stdout(&["explain", "specs/bench/blur7.conv"]);
    assert!(
        out.contains("asymmetric") && out.contains("r >= 1"),
        "{out}"
    );
}

/// `--conv-algo` (and `CONVC_CONV_ALGO`): the plan shows Winograd where it is forced on a wide
/// path and direct convolution where direct is forced; the outputs agree with the interpreter;
/// a bad value is a usage error.
#[test]
fn conv_algo_forces_winograd_or_direct() {
    let wide = convc_jit::Isa::detect() != convc_jit::Isa::Sse;
    let plan = |algo: &str| {
        ok_stdout(&[
            "dump",
            "specs/bench/resnet_block.conv",
            "--format",
            "plan",
            "--conv-algo",
            algo,
        ])
    };
    let w = plan("winograd");
    assert_eq!(w.contains("Winograd F(4x4,3x3)"), wide, "{w}");
    let d = plan("direct");
    assert!(!d.contains("Winograd"), "{d}");
    let f2 = plan("winograd-f2");
    assert_eq!(f2.contains("Winograd F(2x2,3x3)"), wide, "{f2}");
    // Each algorithm's output against the interpreter's.
    let dir = tempfile::tempdir().expect("tempdir");
    let want = dir.path().join("interp.npy");
    ok_stdout(&[
        "run",
        "specs/examples/classic_standard.conv",
        "specs/images/scene128.png",
        "--backend",
        "interp",
        "-o",
        want.to_str().expect("path"),
    ]);
    let want = read_npy(&want);
    for algo in ["winograd", "winograd-f4", "direct", "auto"] {
        let got = dir.path().join(format!("{algo}.npy"));
        ok_stdout(&[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--conv-algo",
            algo,
            "-o",
            got.to_str().expect("path"),
        ]);
        let e = rel_err_same_shape(&read_npy(&got), &want);
        assert!(e <= 1e-4, "{algo}: relative error {e:.2e}");
    }
    fail_stderr(
        &["bench", "specs/bench/sobel.conv", "--conv-algo", "fft"],
        2,
    );
    let o = convc_with_env(
        &["bench", "specs/bench/sobel.conv", "--min-time", "0"],
        &[("CONVC_CONV_ALGO", "fft")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("CONVC_CONV_ALGO=fft"));
}
