//! Helpers shared by the `convc` binary's end-to-end tests (`mod common;` in each test file):
//! running the built binary, reading and writing `.npy` arrays, and comparing tensors.
//!
//! Every test binary uses a subset of these, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use convc_tensor::{Tensor, npy};

/// The eight benchmark networks of `specs/bench/`, each with an ONNX twin and fixtures.
pub const BENCH_NAMES: [&str; 8] = [
    "seed_3to8",
    "blur7",
    "sobel",
    "lowrank_conv",
    "resnet_block",
    "mobilenet_block",
    "inception_7x7",
    "vgg_head",
];

/// The package root, where `specs/` and `tests/fixtures/` are and where convc is run.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` for the built `convc` binary, run in [`root`], with no arguments yet.
pub fn convc_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_convc"));
    c.current_dir(root());
    c
}

/// Runs convc with `args` in [`root`] and returns its output, whatever its exit code.
pub fn convc(args: &[&str]) -> Output {
    convc_command().args(args).output().expect("convc runs")
}

/// Runs convc with `args` in `dir` and returns its output, whatever its exit code.
pub fn convc_in(dir: &Path, args: &[&str]) -> Output {
    convc_command()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("convc runs")
}

/// Runs convc with `args` in [`root`] with the environment variables `env` set on top of the
/// test's own, and returns its output, whatever its exit code.
pub fn convc_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = convc_command();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("convc runs")
}

/// Bytes of a process's stream as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard output of `o` as text.
pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// The standard error of `o` as text.
pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

/// Asserts that convc exited 0 without a panic message; `what` names the run in the message.
fn assert_ok(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what} failed:\n{}", stderr(o));
    assert!(!stderr(o).contains("panicked"), "{what}:\n{}", stderr(o));
}

/// Runs convc with `args` in [`root`], asserts it succeeded, and returns its standard output.
pub fn ok_stdout(args: &[&str]) -> String {
    ok_stdout_with_env(args, &[])
}

/// Runs convc with `args` in [`root`] and the environment variables `env` set, asserts it
/// succeeded, and returns its standard output.
pub fn ok_stdout_with_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let o = convc_with_env(args, env);
    assert_ok(&o, &format!("convc {args:?} with {env:?}"));
    stdout(&o)
}

/// Runs convc with `args` in [`root`], asserts it succeeded, and returns its standard error
/// (where `run` and `export` report).
pub fn ok_stderr(args: &[&str]) -> String {
    let o = convc(args);
    assert_ok(&o, &format!("convc {args:?}"));
    stderr(&o)
}

/// Runs convc with `args` in `dir`, asserts it succeeded, and returns its standard error.
pub fn ok_stderr_in(dir: &Path, args: &[&str]) -> String {
    let o = convc_in(dir, args);
    assert_ok(&o, &format!("convc {args:?} in {}", dir.display()));
    stderr(&o)
}

/// Runs convc with `args` in [`root`], asserts it exited with `code`, and returns its
/// standard error.
pub fn fail_stderr(args: &[&str], code: i32) -> String {
    let o = convc(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "convc {args:?}:\n{err}");
    err
}

/// The `.npy` array at `p`; panics naming the file if it is missing or not a valid array.
pub fn read_npy(p: &Path) -> Tensor {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    npy::read(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes `data` of `shape` as an `.npy` array at `p`.
pub fn write_npy(p: &Path, shape: Vec<usize>, data: Vec<f32>) {
    let t = Tensor::new(shape, data).expect("data fills the shape");
    std::fs::write(p, npy::write(&t)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// `p` as a `&str` argument for convc (test paths are UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The file names of `specs/examples/*.conv`, sorted; asserts there are at least six.
pub fn examples() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("specs/examples"))
        .expect("specs/examples")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conv"))
        .collect();
    v.sort();
    assert!(v.len() >= 6, "examples missing");
    v
}

/// Largest `|a - b|` over `1 + max|b|`, element by element in order.
fn worst_over_scale(a: &Tensor, b: &Tensor) -> f64 {
    let scale = 1.0 + b.data().iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let worst = a
        .data()
        .iter()
        .zip(b.data())
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    worst / scale
}

/// Largest `|a - b|` over `1 + max|b|`; asserts `a` and `b` have the same shape.
pub fn rel_err_same_shape(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    worst_over_scale(a, b)
}

/// Largest `|a - b|` over `1 + max|b|`; asserts only that `a` and `b` hold as many values,
/// for outputs whose layouts agree but whose shapes are spelt differently (convc gives a 2-D
/// ONNX output `[N, K]` as `[N, K, 1, 1]`).
pub fn rel_err_same_numel(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.numel(), b.numel(), "{:?} vs {:?}", a.shape(), b.shape());
    worst_over_scale(a, b)
}
