//! End-to-end tests of `explain --budget|--measure|--plot`, `run --budget` and
//! `dump --format svg`.

use std::path::Path;
use std::process::{Command, Output};

fn convc_in(dir: &Path, args: &[&str], path_env: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_convc"));
    c.args(args).current_dir(dir);
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    c.output().expect("convc runs")
}

fn convc(args: &[&str]) -> Output {
    convc_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = convc(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "convc {args:?} failed:\n{}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// The number after `key` on the first line that has it.
fn number_after(s: &str, key: &str) -> f64 {
    let at = s.find(key).unwrap_or_else(|| panic!("no `{key}` in:\n{s}")) + key.len();
    let rest = s[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || ".e-+".contains(c)))
        .unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|_| panic!("no number after `{key}` in:\n{s}"))
}

fn examples() -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/examples"))
            .expect("specs/examples")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conv"))
            .collect();
    v.sort();
    v
}

/// Budget mode on every example: the measured error is within the budget and the chosen
/// network needs no more MACs than the network as written.
#[test]
fn budget_on_every_example_stays_within_it() {
    for name in examples() {
        let path = format!("specs/examples/{name}");
        for e in ["0.01", "0.1"] {
            let out = ok(&[
                "explain",
                &path,
                "--budget",
                e,
                "--no-time",
                "--size",
                "64x64",
            ]);
            let budget: f64 = e.parse().unwrap();
            let measured = number_after(&out, ", measured ");
            assert!(
                measured <= budget,
                "{name} at {e}: measured {measured}\n{out}"
            );
            let line = out
                .lines()
                .find(|l| l.starts_with("network: MACs"))
                .expect("network line");
            let factor = number_after(line, "(");
            assert!(factor <= 1.0, "{name}: {line}");
            assert!(
                !out.contains("time (JIT"),
                "--no-time times nothing:\n{out}"
            );
        }
    }
}

/// Budget mode on the benchmark networks (all but `vgg_head`, whose 4.7 G MACs take the
/// interpreter too long for a test; BENCHMARKS.md has its figures).
#[test]
fn budget_on_bench_networks() {
    for name in [
        "seed_3to8",
        "sobel",
        "blur7",
        "lowrank_conv",
        "inception_7x7",
        "resnet_block",
        "mobilenet_block",
    ] {
        let path = format!("specs/bench/{name}.conv");
        let out = ok(&[
            "explain",
            &path,
            "--budget",
            "0.01",
            "--no-time",
            "--samples",
            "1",
        ]);
        assert!(number_after(&out, ", measured ") <= 0.01, "{name}:\n{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("network: MACs"))
            .expect("network line");
        assert!(number_after(line, "(") <= 1.0, "{name}: {line}");
    }
}

#[test]
fn budget_report_names_every_layer_and_the_jit_time() {
    let out = ok(&[
        "explain",
        "specs/examples/classic_standard.conv",
        "--budget",
        "0.05",
    ]);
    assert!(out.contains("`features`"), "{out}");
    assert!(
        out.contains("time (JIT, 1 thread, median per image):"),
        "{out}"
    );
    assert!(
        out.contains("errors on data measured on 2 random input(s) [3,128,128] (seed 0)"),
        "{out}"
    );
}

#[test]
fn measure_shows_both_errors() {
    let out = ok(&[
        "explain",
        "specs/examples/classic_standard.conv",
        "--measure",
    ]);
    insta::assert_snapshot!("explain_measure_classic_standard", out);
    let plain = ok(&["explain", "specs/examples/classic_standard.conv"]);
    assert!(!plain.contains("on data"), "{plain}");
}

#[test]
fn data_files_are_samples() {
    let out = ok(&[
        "explain",
        "specs/examples/sobel_edges.conv",
        "--budget",
        "0.01",
        "--no-time",
        "--data",
        "specs/images/scene128.png",
    ]);
    assert!(out.contains("1 input image(s) from --data"), "{out}");
    let o = convc(&[
        "explain",
        "specs/examples/sobel_edges.conv",
        "--budget",
        "0.01",
        "--data",
        "specs/missing.png",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("specs/missing.png"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bad_budgets_are_usage_errors() {
    for bad in ["-1", "abc", "nan", "inf"] {
        let o = convc(&[
            "explain",
            "specs/examples/classic_standard.conv",
            "--budget",
            bad,
        ]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--budget {bad}: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stderr).contains("is not an error budget"),
            "{}",
            text(&o.stderr)
        );
        let o = convc(&[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--budget",
            bad,
        ]);
        assert_eq!(o.status.code(), Some(2), "run --budget {bad}");
    }
    let o = convc(&[
        "explain",
        "specs/examples/classic_standard.conv",
        "--plot",
        "no/such/dir",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = convc(&[
        "run",
        "specs/examples/classic_standard.conv",
        "specs/images/",
        "-o",
        "target",
        "--budget",
        "0.1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn run_with_a_budget_runs_the_chosen_network() {
    let o = convc(&[
        "run",
        "specs/examples/resnet_block.conv",
        "specs/images/scene128.png",
        "--budget",
        "0.05",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("budget: network output error <= 0.05"),
        "{err}"
    );
    assert!(number_after(&err, ", measured ") <= 0.05, "{err}");
    assert!(text(&o.stdout).contains("y:"), "{}", text(&o.stdout));
}

#[test]
fn plots_are_written_and_their_svg_is_stable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8 temp path");
    let out = ok(&[
        "explain",
        "specs/examples/classic_standard.conv",
        "--budget",
        "0.05",
        "--no-time",
        "--plot",
        d,
    ]);
    assert!(out.contains("plots: 6 files written"), "{out}");
    for stem in ["features.spectra", "features.tradeoff", "network"] {
        let svg = std::fs::read_to_string(dir.path().join(format!("{stem}.svg"))).expect("svg");
        assert!(svg.starts_with("<svg"), "{stem}");
        let png = std::fs::read(dir.path().join(format!("{stem}.png"))).expect("png");
        assert!(png.starts_with(b"\x89PNG"), "{stem}");
        if stem != "network" {
            // The network plot shows the JIT's measurements; the others only the analysis.
            insta::assert_snapshot!(format!("plot_{stem}"), svg);
        }
    }
}

#[test]
fn dump_svg_uses_graphviz_or_says_it_is_missing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let empty = tempfile::tempdir().expect("temp dir");
    let o = convc_in(
        root,
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "svg",
        ],
        empty.path().to_str(),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("Graphviz") && err.contains("not installed"),
        "{err}"
    );
    let has_dot = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dot").is_file()));
    if has_dot {
        let out = ok(&[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "svg",
        ]);
        assert!(out.contains("<svg") && out.contains("features"), "{out}");
    } else {
        eprintln!("Graphviz is not installed: only the error path is tested");
    }
    let o = convc(&[
        "dump",
        "specs/examples/classic_standard.conv",
        "--format",
        "svg",
        "--print-after-all",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
