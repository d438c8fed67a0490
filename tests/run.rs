//! End-to-end tests of `convc run`: images and arrays in, arrays and pictures out, batches,
//! several inputs, and every input error with its exit code and message.

mod common;

use std::path::PathBuf;

use common::{
    convc, convc_with_env, examples, fail_stderr, ok_stderr, ok_stdout, path_str, read_npy,
    rel_err_same_shape, root, stderr, write_npy,
};
use convc_tensor::{Tensor, npy};

/// Runs convc with `args`, asserting it exits with `code` and says `needle` on stderr.
fn fails(args: &[&str], code: i32, needle: &str) {
    let err = fail_stderr(args, code);
    assert!(
        err.contains(needle),
        "convc {args:?}: expected `{needle}` in:\n{err}"
    );
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn spec(&self, name: &str, text: &str) -> PathBuf {
        let p = self.p(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[test]
fn every_example_runs_on_the_scene() {
    let d = Dir::new();
    let mut n = 0;
    for name in examples() {
        let rel = format!("specs/examples/{name}");
        let src = std::fs::read_to_string(root().join(&rel)).unwrap();
        let input = src.lines().find(|l| l.starts_with("input")).unwrap();
        let c: usize = input
            .split('[')
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let out_png = d.p(&format!("{n}.png"));
        let out_npy = d.p(&format!("{n}.npy"));
        let img = match c {
            1 => "specs/images/gray128.png".to_string(),
            3 => "specs/images/scene128.png".to_string(),
            _ => {
                // Wider networks: a random array of the input's shape.
                let dims: Vec<usize> = input
                    .split('[')
                    .nth(1)
                    .unwrap()
                    .trim_end_matches(']')
                    .split(',')
                    .map(|v| v.trim().parse().unwrap())
                    .collect();
                let k = dims.iter().product::<usize>();
                let path = d.p(&format!("{n}_in.npy"));
                write_npy(
                    &path,
                    dims,
                    (0..k).map(|i| ((i * 37 % 101) as f32) / 101.0).collect(),
                );
                path.to_str().unwrap().to_string()
            }
        };
        ok_stdout(&[
            "run",
            &rel,
            &img,
            "-o",
            path_str(&out_png),
            "--backend",
            "interp",
        ]);
        let bytes = std::fs::read(&out_png).unwrap();
        assert!(
            convc_tensor::image::read_png(&bytes).is_ok(),
            "{rel}: output PNG unreadable"
        );
        ok_stdout(&[
            "run",
            &rel,
            &img,
            "-o",
            path_str(&out_npy),
            "--backend",
            "interp",
        ]);
        assert_eq!(read_npy(&out_npy).shape().len(), 3, "{rel}");
        n += 1;
    }
    assert!(n >= 6);
}

#[test]
fn values_are_right_for_a_known_filter() {
    let d = Dir::new();
    let spec = d.spec("m.conv", "input x: [1, 3, 4]\ny = conv(x, out=1, kernel=1x2, pad=(0, 0, 0, 1), weights=[[[[1, 10]]]], bias=[0.5])\noutput y\n");
    let inp = d.p("x.npy");
    write_npy(&inp, vec![1, 3, 4], (0..12).map(|v| v as f32).collect());
    let out = d.p("y.npy");
    ok_stdout(&["run", path_str(&spec), path_str(&inp), "-o", path_str(&out)]);
    let t = read_npy(&out);
    assert_eq!(t.shape(), [1, 3, 4]);
    // y[i, j] = x[i, j] + 10 * x[i, j+1] + 0.5, with x[i, 4] = 0 (padding right).
    let want: Vec<f32> = (0..12)
        .map(|k| {
            let (i, j) = (k / 4, k % 4);
            let next = if j < 3 { (i * 4 + j + 1) as f32 } else { 0.0 };
            k as f32 + 10.0 * next + 0.5
        })
        .collect();
    assert_eq!(t.data(), &want[..]);
}

#[test]
fn batches_and_dimensions() {
    let d = Dir::new();
    let spec = "specs/examples/classic_standard.conv";
    let out = d.p("o.npy");
    ok_stdout(&[
        "run",
        spec,
        "specs/images/scene128.png",
        "-o",
        path_str(&out),
    ]);
    assert_eq!(read_npy(&out).shape(), [8, 128, 128]);
    ok_stdout(&[
        "run",
        spec,
        "specs/images/scene128.png",
        "specs/images/scene128.png",
        "-o",
        path_str(&out),
    ]);
    let two = read_npy(&out);
    assert_eq!(two.shape(), [2, 8, 128, 128]);
    let half = two.data().len() / 2;
    assert_eq!(two.data()[..half], two.data()[half..]);
    // A 4-D array with N = 1 gives a 4-D output.
    let inp = d.p("in.npy");
    write_npy(&inp, vec![1, 3, 128, 128], vec![0.25; 3 * 128 * 128]);
    ok_stdout(&["run", spec, path_str(&inp), "-o", path_str(&out)]);
    assert_eq!(read_npy(&out).shape(), [1, 8, 128, 128]);
    // A batch written as PNG: images stacked.
    let png = d.p("o.png");
    ok_stdout(&[
        "run",
        "specs/examples/gaussian_blur.conv",
        "specs/images/scene128.png",
        "specs/images/scene128.png",
        "-o",
        path_str(&png),
    ]);
    let t = convc_tensor::image::read_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(t.shape(), [3, 256, 128]);
}

#[test]
fn summary_without_output() {
    let out = ok_stdout(&[
        "run",
        "specs/examples/sobel_edges.conv",
        "specs/images/scene128.png",
    ]);
    assert!(out.starts_with("edges: [2, 128, 128]"), "{out}");
    assert!(out.contains("min") && out.contains("mean"), "{out}");
}

#[test]
fn verbose_reports_pass_time_apart_from_code_generation() {
    let args = [
        "run",
        "specs/examples/sobel_edges.conv",
        "specs/images/scene128.png",
    ];
    let e = ok_stderr(&[&args[..], &["-v"]].concat());
    let line = e
        .lines()
        .find(|l| l.starts_with("time: "))
        .unwrap_or_else(|| panic!("{e}"));
    for part in ["passes ", "code generation ", "run ", "(backend jit)"] {
        assert!(line.contains(part), "{line}");
    }
    // Without -v, no time is printed (outputs stay reproducible).
    assert!(!stderr(&convc(&args)).contains("time: "));
}

#[test]
fn several_inputs_by_name() {
    let d = Dir::new();
    let spec = d.spec(
        "two.conv",
        "input a: [2, H, W]\ninput b: [2, H, W]\ns = add(a, b)\nc = concat(a, s)\noutput s, c\n",
    );
    let (pa, pb) = (d.p("a.npy"), d.p("b.npy"));
    write_npy(&pa, vec![2, 2, 3, 5], (0..60).map(|v| v as f32).collect());
    write_npy(&pb, vec![2, 2, 3, 5], vec![1.0; 60]);
    let (os, oc) = (d.p("s.npy"), d.p("c.npy"));
    ok_stdout(&[
        "run",
        path_str(&spec),
        &format!("b={}", path_str(&pb)),
        &format!("a={}", path_str(&pa)),
        "-o",
        path_str(&os),
        "-o",
        path_str(&oc),
    ]);
    let sum = read_npy(&os);
    assert_eq!(sum.shape(), [2, 2, 3, 5]);
    assert_eq!(sum.data()[7], 8.0);
    assert_eq!(read_npy(&oc).shape(), [2, 4, 3, 5]);
    fails(
        &["run", path_str(&spec), path_str(&pa), path_str(&pb)],
        2,
        "give each as NAME=PATH",
    );
    fails(
        &["run", path_str(&spec), &format!("a={}", path_str(&pa))],
        2,
        "no data for input `b`",
    );
    write_npy(&pb, vec![1, 2, 3, 5], vec![1.0; 30]);
    fails(
        &[
            "run",
            path_str(&spec),
            &format!("a={}", path_str(&pa)),
            &format!("b={}", path_str(&pb)),
        ],
        1,
        "different numbers of images",
    );
    write_npy(&pb, vec![2, 2, 3, 4], vec![1.0; 48]);
    fails(
        &[
            "run",
            path_str(&spec),
            &format!("a={}", path_str(&pa)),
            &format!("b={}", path_str(&pb)),
        ],
        1,
        "size `W` is 5",
    );
    fails(
        &[
            "run",
            path_str(&spec),
            &format!("a={}", path_str(&pa)),
            &format!("b={}", path_str(&pb)),
        ],
        1,
        "input `b` from `",
    );
}

#[test]
fn bad_inputs_exit_1_naming_the_file() {
    let d = Dir::new();
    let spec = "specs/examples/classic_standard.conv";
    fails(
        &["run", spec, "specs/images/gray128.png"],
        1,
        "`specs/images/gray128.png` has 1 channel, but input `image` is [3,128,128]",
    );
    fails(
        &["run", spec, "nope.png"],
        1,
        "cannot read `nope.png`: no such file",
    );
    let dirpng = d.p("dir.png");
    std::fs::create_dir(&dirpng).unwrap();
    // A directory is a folder run, which needs an output folder: a usage error without one.
    fails(&["run", spec, path_str(&dirpng)], 2, "is a directory");
    let bytes = std::fs::read("specs/images/scene128.png").unwrap();
    let trunc = d.p("t.png");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["run", spec, path_str(&trunc)], 1, "t.png`");
    let tnpy = d.p("t.npy");
    let full = npy::write(&Tensor::zeros(vec![3, 128, 128]));
    std::fs::write(&tnpy, &full[..full.len() - 7]).unwrap();
    fails(&["run", spec, path_str(&tnpy)], 1, "t.npy`");
    let rank = d.p("r.npy");
    write_npy(&rank, vec![3, 128], vec![0.0; 384]);
    fails(
        &["run", spec, path_str(&rank)],
        1,
        "expected [C, H, W] or [N, C, H, W]",
    );
    let wrong = d.p("w.npy");
    write_npy(&wrong, vec![3, 64, 128], vec![0.0; 3 * 64 * 128]);
    fails(
        &["run", spec, path_str(&wrong)],
        1,
        "has height 64, but input `image` is [3,128,128]",
    );
    let txt = d.p("x.txt");
    std::fs::write(&txt, "hello").unwrap();
    fails(
        &["run", spec, path_str(&txt)],
        1,
        "neither a .png image nor a .npy array",
    );
    let empty = d.p("e.npy");
    std::fs::write(&empty, b"").unwrap();
    fails(&["run", spec, path_str(&empty)], 1, "e.npy`");
}

#[test]
fn outputs_are_safe() {
    let d = Dir::new();
    let spec = "specs/examples/classic_standard.conv";
    let img = "specs/images/scene128.png";
    fails(&["run", spec, img, "-o", "out.jpg"], 2, "must end in .npy");
    fails(
        &["run", spec, img, "-o", img],
        2,
        "convc never overwrites its inputs",
    );
    fails(
        &[
            "run",
            spec,
            img,
            "-o",
            path_str(&d.p("a.npy")),
            "-o",
            path_str(&d.p("b.npy")),
        ],
        2,
        "network has 1 output",
    );
    let missing = d.p("no/such/dir/o.npy");
    fails(
        &["run", spec, img, "-o", path_str(&missing)],
        1,
        "cannot write",
    );
    assert!(
        std::fs::read_dir(d.0.path()).unwrap().count() == 0,
        "a failed write left files behind"
    );
    // An existing output is replaced whole.
    let o = d.p("o.npy");
    std::fs::write(&o, b"old").unwrap();
    ok_stdout(&["run", spec, img, "-o", path_str(&o)]);
    assert_eq!(read_npy(&o).shape(), [8, 128, 128]);
    assert_eq!(
        std::fs::read_dir(d.0.path()).unwrap().count(),
        1,
        "temporary files left behind"
    );
}

#[test]
fn usage_errors_of_run_exit_2() {
    fails(&["run", "specs/examples/classic_standard.conv"], 2, "INPUT");
    fails(
        &[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--threads",
            "0",
        ],
        2,
        "thread count",
    );
    fails(
        &[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--backend",
            "gpu",
        ],
        2,
        "gpu",
    );
    fails(
        &[
            "run",
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
            "--tolerance",
            "-1",
        ],
        2,
        "tolerance",
    );
}

#[test]
fn memory_limit_refuses_before_allocating() {
    let d = Dir::new();
    let spec = d.spec(
        "big.conv",
        "input x: [1, H, W]\ny = conv(x, out=4096, kernel=1)\noutput y\n",
    );
    let inp = d.p("x.npy");
    write_npy(&inp, vec![1, 512, 512], vec![0.0; 512 * 512]);
    let o = convc_with_env(
        &["run", path_str(&spec), path_str(&inp)],
        &[("CONVC_MAX_MEMORY", "1G")],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("would need 4.0 GiB") && stderr(&o).contains("CONVC_MAX_MEMORY"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn optimised_and_unoptimised_runs_agree() {
    let d = Dir::new();
    let cases = [
        (
            "specs/examples/gaussian_blur.conv",
            "specs/images/scene128.png",
        ),
        (
            "specs/examples/sobel_edges.conv",
            "specs/images/scene128.png",
        ),
        (
            "specs/examples/mobilenet_block.conv",
            "specs/images/scene128.png",
        ),
        (
            "specs/examples/resnet_block.conv",
            "specs/images/scene128.png",
        ),
        (
            "specs/examples/classic_standard.conv",
            "specs/images/scene128.png",
        ),
    ];
    for (spec, img) in cases {
        let (a, b) = (d.p("a.npy"), d.p("b.npy"));
        ok_stdout(&["run", spec, img, "-o", path_str(&a), "--backend", "interp"]);
        ok_stdout(&[
            "run",
            spec,
            img,
            "-o",
            path_str(&b),
            "--backend",
            "interp",
            "--no-opt",
        ]);
        let (ta, tb) = (read_npy(&a), read_npy(&b));
        assert_eq!(ta.shape(), tb.shape(), "{spec}");
        let e = rel_err_same_shape(&ta, &tb);
        assert!(
            e <= 1e-5,
            "{spec}: optimised differs, relative error {e:.2e}"
        );
    }
    // The rewrite is reported on stderr.
    let o = convc(&[
        "run",
        "specs/examples/gaussian_blur.conv",
        "specs/images/scene128.png",
        "--backend",
        "interp",
    ]);
    assert!(
        stderr(&o).contains("decompose: `blurred` -> asymmetric rank 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pass_options_are_checked_before_files() {
    fails(
        &["run", "missing.conv", "x.png", "--passes", "foo"],
        2,
        "unknown pass `foo`",
    );
    fails(
        &["bench", "missing.conv", "--passes", "foo"],
        2,
        "unknown pass `foo`",
    );
}
