//! Filetests of the JIT's plan (`convc dump --format plan`): every example spec and the small
//! bench specs in, the plan out, as insta snapshots, so a change of a planning heuristic shows
//! as a diff (bless with `INSTA_UPDATE=always cargo test --test plan_snapshots`). The plans
//! are made for Cranelift's own path, a 48 KB L1 and a 1 MB L2, whatever the machine running
//! the tests (`CONVC_ISA=sse`, `CONVC_L1D_BYTES`, `CONVC_L2_BYTES`): the wide paths' register
//! blocks are measured per host.

mod common;

use common::{examples, fail_stderr, ok_stdout, ok_stdout_with_env, path_str};

fn plan(spec: &str, size: Option<&str>) -> String {
    let mut args = vec!["dump", spec, "--format", "plan"];
    if let Some(s) = size {
        args.extend(["--size", s]);
    }
    ok_stdout_with_env(
        &args,
        &[
            ("CONVC_ISA", "sse"),
            ("CONVC_L1D_BYTES", "49152"),
            ("CONVC_L2_BYTES", "1048576"),
        ],
    )
}

#[test]
fn plans_of_the_examples() {
    for name in examples() {
        let stem = name.trim_end_matches(".conv");
        let rel = format!("specs/examples/{name}");
        // Binds the examples that take any picture (`[3, H, W]`).
        insta::assert_snapshot!(format!("plan_{stem}"), plan(&rel, Some("64x80")));
    }
}

#[test]
fn plans_of_the_bench_specs() {
    for stem in [
        "seed_3to8",
        "sobel",
        "blur7",
        "lowrank_conv",
        "resnet_block",
        "mobilenet_block",
        "inception_7x7",
    ] {
        let rel = format!("specs/bench/{stem}.conv");
        insta::assert_snapshot!(format!("plan_bench_{stem}"), plan(&rel, None));
    }
}

#[test]
fn plan_needs_known_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("sym.conv");
    std::fs::write(&spec, "input x: [3, H, W]\ny = conv(x, out=4)\noutput y\n").expect("write");
    let args = ["dump", path_str(&spec), "--format", "plan"];
    let err = fail_stderr(&args, 2);
    assert!(
        err.contains("--format plan") && err.contains("--size"),
        "{err}"
    );
    let out = ok_stdout(&[&args[..], &["--size", "9x13"]].concat());
    assert!(out.contains("step 0 y"), "{out}");
}
