//! Filetests of the JIT's plan (`convc dump --format plan`): every example spec and the small
//! bench specs in, the plan out, as insta snapshots, so a change of a planning heuristic shows
//! as a diff (bless with `INSTA_UPDATE=always cargo test --test plan_snapshots`). The plans
//! are made for Cranelift's own path and a 48 KB L1, whatever the machine running the tests
//! (`CONVC_ISA=sse`, `CONVC_L1D_BYTES`): the wide paths' register blocks are measured per host.

use std::process::Command;

fn plan(spec: &str, size: Option<&str>) -> String {
    let mut args = vec!["dump", spec, "--format", "plan"];
    if let Some(s) = size {
        args.extend(["--size", s]);
    }
    let o = Command::new(env!("CARGO_BIN_EXE_convc"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CONVC_ISA", "sse")
        .env("CONVC_L1D_BYTES", "49152")
        .output()
        .expect("convc runs");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{spec}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn plans_of_the_examples() {
    let mut specs: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/specs/examples"))
            .expect("examples")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "conv"))
            .collect();
    specs.sort();
    assert!(specs.len() >= 5);
    for p in specs {
        let stem = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let rel = format!("specs/examples/{stem}.conv");
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
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_convc"))
            .arg("dump")
            .arg(&spec)
            .args(["--format", "plan"])
            .args(extra)
            .output()
            .expect("convc runs")
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--format plan") && err.contains("--size"),
        "{err}"
    );
    let o = run(&["--size", "9x13"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("step 0 y"));
}
