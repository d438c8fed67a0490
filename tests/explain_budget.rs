//! End-to-end tests of `explain --budget|--measure|--plot`, `run --budget` and
//! `dump --format svg`.

mod common;

use common::{convc, convc_with_env, examples, fail_stderr, ok_stdout, path_str, stderr, stdout};

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

/// Budget mode on every example: the measured error is within the budget and the chosen
/// network needs no more MACs than the network as written.
#[test]
fn budget_on_every_example_stays_within_it() {
    for name in examples() {
        let path = format!("specs/examples/{name}");
        for e in ["0.01", "0.1"] {
            let out = ok_stdout(&[
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
        let out = ok_stdout(&[
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
    let out = ok_stdout(&[
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
    let out = ok_stdout(&[
        "explain",
        "specs/examples/classic_standard.conv",
        "--measure",
    ]);
    insta::assert_snapshot!("explain_measure_classic_standard", out);
    let plain = ok_stdout(&["explain", "specs/examples/classic_standard.conv"]);
    assert!(!plain.contains("on data"), "{plain}");
}

#[test]
fn data_files_are_samples() {
    let out = ok_stdout(&[
        "explain",
        "specs/examples/sobel_edges.conv",
        "--budget",
        "0.01",
        "--no-time",
        "--data",
        "specs/images/scene128.png",
    ]);
    assert!(out.contains("1 input image(s) from --data"), "{out}");
    let err = fail_stderr(
        &[
            "explain",
            "specs/examples/sobel_edges.conv",
            "--budget",
            "0.01",
            "--data",
            "specs/missing.png",
        ],
        1,
    );
    assert!(err.contains("specs/missing.png"), "{err}");
}

#[test]
fn bad_budgets_are_usage_errors() {
    for bad in ["-1", "abc", "nan", "inf"] {
        let err = fail_stderr(
            &[
                "explain",
                "specs/examples/classic_standard.conv",
                "--budget",
                bad,
            ],
            2,
        );
        assert!(err.contains("is not an error budget"), "{err}");
        fail_stderr(
            &[
                "run",
                "specs/examples/classic_standard.conv",
                "specs/images/scene128.png",
                "--budget",
                bad,
            ],
            2,
        );
    }
    fail_stderr(
        &[
            "explain",
            "specs/examples/classic_standard.conv",
            "--plot",
            "no/such/dir",
        ],
        2,
    );
    fail_stderr(
        &[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/",
            "-o",
            "target",
            "--budget",
            "0.1",
        ],
        2,
    );
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
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("budget: network output error <= 0.05"),
        "{err}"
    );
    assert!(number_after(&err, ", measured ") <= 0.05, "{err}");
    assert!(stdout(&o).contains("y:"), "{}", stdout(&o));
}

#[test]
fn plots_are_written_and_their_svg_is_stable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_str().expect("utf-8 temp path");
    let out = ok_stdout(&[
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
    // PATH names only an empty folder: no `dot` to find.
    let empty = tempfile::tempdir().expect("temp dir");
    let o = convc_with_env(
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "svg",
        ],
        &[("PATH", path_str(empty.path()))],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("Graphviz") && err.contains("not installed"),
        "{err}"
    );
    let has_dot = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("dot").is_file()));
    if has_dot {
        let out = ok_stdout(&[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "svg",
        ]);
        assert!(out.contains("<svg") && out.contains("features"), "{out}");
    } else {
        eprintln!("Graphviz is not installed: only the error path is tested");
    }
    fail_stderr(
        &[
            "dump",
            "specs/examples/classic_standard.conv",
            "--format",
            "svg",
            "--print-after-all",
        ],
        2,
    );
}
