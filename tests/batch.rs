//! End-to-end tests of `convc run` on many files: a folder, a glob pattern or an `@list` file
//! into an output folder; bad files reported and skipped; the progress bar on a terminal; the
//! memory check from file headers before any data is read.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{convc_command, path_str, read_npy, root, stderr, stdout};

use convc_tensor::{Tensor, image, npy};

const SPEC: &str = "specs/examples/classic_standard.conv";

/// Runs convc with `env` set and the limits that the machine running the tests may have set
/// removed, so every run here starts from convc's defaults.
fn convc_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = convc_command();
    c.args(args);
    c.env_remove("CONVC_MAX_MEMORY")
        .env_remove("CONVC_BATCH_SPLIT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("convc runs")
}

fn convc(args: &[&str]) -> Output {
    convc_env(args, &[])
}

fn expect(o: &Output, code: i32, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{e}");
    for n in needles {
        assert!(e.contains(n), "expected `{n}` in:\n{e}");
    }
}

/// A `[3, h, w]` picture whose values depend on `seed`, written as an 8-bit PNG.
fn write_png(p: &Path, h: usize, w: usize, seed: usize) {
    let data = (0..3 * h * w)
        .map(|i| ((i * 7 + seed * 31) % 251) as f32 / 250.0)
        .collect();
    let t = Tensor::new(vec![3, h, w], data).unwrap();
    std::fs::write(p, image::write_png(&t).unwrap()).unwrap();
}

/// Every file name in `dir`, hidden ones included, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A folder of three good 128x128 pictures (`a`, `b`, `c`), plus `more` other files.
fn folder(root: &Path) -> PathBuf {
    let d = root.join("in");
    std::fs::create_dir(&d).unwrap();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        write_png(&d.join(format!("{n}.png")), 128, 128, i);
    }
    d
}

/// Runs one file alone into `out` (the single-file form of `run`).
fn single(input: &Path, out: &Path) {
    let o = convc(&["run", SPEC, path_str(input), "-o", path_str(out)]);
    expect(&o, 0, &[]);
}

/// Runs the folder `d` into the folder `out` with `extra` arguments; asserts it succeeded.
fn run_folder(d: &Path, out: &Path, extra: &[&str]) {
    let args = [&["run", SPEC, path_str(d), "-o", path_str(out)][..], extra].concat();
    expect(&convc(&args), 0, &[]);
}

#[test]
fn folder_with_bad_files_runs_the_rest_and_names_the_bad_ones() {
    let t = tempfile::tempdir().unwrap();
    let d = folder(t.path());
    // Not a PNG at all, a PNG cut inside its image data, and one of the wrong size.
    std::fs::write(d.join("corrupt.png"), b"this is not an image").unwrap();
    let mut cut = std::fs::read(d.join("a.png")).unwrap();
    cut.truncate(cut.len() / 2);
    std::fs::write(d.join("cut.png"), cut).unwrap();
    write_png(&d.join("small.png"), 64, 64, 9);
    std::fs::write(d.join("notes.txt"), b"not an input").unwrap();
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = convc(&["run", SPEC, path_str(&d), "-o", path_str(&out)]);
    expect(
        &o,
        1,
        &[
            "corrupt.png`: not a PNG file",
            "cut.png`: truncated",
            "small.png` has height 64, but input `image` is [3,128,128]",
            "6 images, 3 failed, ",
            " images/s",
            "3 of 6 input files failed",
        ],
    );
    assert_eq!(names(&out), ["a.npy", "b.npy", "c.npy"]);
    // Each output is what running its file alone writes.
    for n in ["a", "b", "c"] {
        let alone = t.path().join(format!("{n}.alone.npy"));
        single(&d.join(format!("{n}.png")), &alone);
        let (got, want) = (read_npy(&out.join(format!("{n}.npy"))), read_npy(&alone));
        assert_eq!(got.shape(), [8, 128, 128]);
        assert_eq!(got.data(), want.data(), "{n}");
    }
    // The three differ (so the test would see outputs swapped between files).
    assert_ne!(
        read_npy(&out.join("a.npy")).data(),
        read_npy(&out.join("b.npy")).data()
    );
}

#[test]
fn glob_and_list_forms_and_both_ways_of_using_threads_agree() {
    let t = tempfile::tempdir().unwrap();
    let d = folder(t.path());
    let want: Vec<Tensor> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let p = t.path().join(format!("{n}.alone.npy"));
            single(&d.join(format!("{n}.png")), &p);
            read_npy(&p)
        })
        .collect();
    let check = |out: &Path, which: &[usize]| {
        let expected: Vec<String> = which
            .iter()
            .map(|&i| format!("{}.npy", ["a", "b", "c"][i]))
            .collect();
        assert_eq!(names(out), expected);
        for &i in which {
            let got = read_npy(&out.join(format!("{}.npy", ["a", "b", "c"][i])));
            assert_eq!(got.data(), want[i].data());
        }
    };
    // A glob pattern (quoted: convc expands it).
    let out = t.path().join("g");
    std::fs::create_dir(&out).unwrap();
    let pattern = format!("{}/[ab].png", path_str(&d));
    expect(
        &convc(&["run", SPEC, &pattern, "-o", path_str(&out)]),
        0,
        &["2 images, 0 failed"],
    );
    check(&out, &[0, 1]);
    // An @list: paths relative to the list's folder, blank lines skipped.
    let lists = t.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    std::fs::write(lists.join("l.txt"), "../in/c.png\n\n  ../in/a.png  \n").unwrap();
    for split in ["images", "within"] {
        let out = t.path().join(format!("l-{split}"));
        std::fs::create_dir(&out).unwrap();
        let list = format!("@{}", path_str(&lists.join("l.txt")));
        let o = convc_env(
            &["run", SPEC, &list, "-o", path_str(&out), "--threads", "2"],
            &[("CONVC_BATCH_SPLIT", split)],
        );
        expect(&o, 0, &["2 images, 0 failed"]);
        check(&out, &[0, 2]);
    }
    // The interpreter writes the same values (within float rounding).
    let out = t.path().join("interp");
    std::fs::create_dir(&out).unwrap();
    run_folder(&d, &out, &["--backend", "interp"]);
    let got = read_npy(&out.join("b.npy"));
    for (x, y) in got.data().iter().zip(want[1].data()) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

#[test]
fn png_format_and_several_outputs_and_batched_arrays() {
    let t = tempfile::tempdir().unwrap();
    let d = folder(t.path());
    let out = t.path().join("png");
    std::fs::create_dir(&out).unwrap();
    run_folder(&d, &out, &["--format", "png"]);
    assert_eq!(names(&out), ["a.png", "b.png", "c.png"]);
    let alone = t.path().join("b.alone.png");
    single(&d.join("b.png"), &alone);
    assert_eq!(
        std::fs::read(out.join("b.png")).unwrap(),
        std::fs::read(&alone).unwrap()
    );

    // Two outputs: STEM.NAME.EXT. Arrays of any size bind the symbolic input; a 4-D array
    // gives a 4-D output, as a single run does.
    let spec = t.path().join("two.conv");
    std::fs::write(
        &spec,
        "input x: [1, H, W]\nblur = conv(x, out=1, kernel=3, pad=same, weights=gaussian(sigma=1.0))\n\
         edge = conv(x, out=2, kernel=3, pad=same, weights=random(seed=4))\noutput blur\noutput edge\n",
    )
    .unwrap();
    let arrays = t.path().join("arrays");
    std::fs::create_dir(&arrays).unwrap();
    let x = Tensor::new(vec![1, 5, 7], (0..35).map(|v| v as f32).collect()).unwrap();
    std::fs::write(arrays.join("p.npy"), npy::write(&x)).unwrap();
    let xb = Tensor::new(vec![2, 1, 4, 4], (0..32).map(|v| v as f32 * 0.5).collect()).unwrap();
    std::fs::write(arrays.join("q.npy"), npy::write(&xb)).unwrap();
    let out = t.path().join("two");
    std::fs::create_dir(&out).unwrap();
    expect(
        &convc(&[
            "run",
            path_str(&spec),
            path_str(&arrays),
            "-o",
            path_str(&out),
        ]),
        0,
        &[],
    );
    assert_eq!(
        names(&out),
        ["p.blur.npy", "p.edge.npy", "q.blur.npy", "q.edge.npy"]
    );
    assert_eq!(read_npy(&out.join("p.edge.npy")).shape(), [2, 5, 7]);
    assert_eq!(read_npy(&out.join("q.blur.npy")).shape(), [2, 1, 4, 4]);
    for (input, name) in [("p.npy", "edge"), ("q.npy", "blur")] {
        let (a, b) = (t.path().join("alone1.npy"), t.path().join("alone2.npy"));
        let o = convc(&[
            "run",
            path_str(&spec),
            path_str(&arrays.join(input)),
            "-o",
            path_str(&a),
            "-o",
            path_str(&b),
        ]);
        expect(&o, 0, &[]);
        let alone = if name == "blur" { &a } else { &b };
        let stem = input.trim_end_matches(".npy");
        let got = read_npy(&out.join(format!("{stem}.{name}.npy")));
        assert_eq!(got.data(), read_npy(alone).data(), "{input} {name}");
    }
}

#[test]
fn usage_errors_exit_2_before_anything_runs() {
    let t = tempfile::tempdir().unwrap();
    let d = folder(t.path());
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let file = t.path().join("f.npy");
    std::fs::write(&file, b"x").unwrap();
    let dir = path_str(&d);
    expect(
        &convc(&["run", SPEC, dir]),
        2,
        &["give one output folder with -o OUTDIR"],
    );
    expect(
        &convc(&["run", SPEC, dir, "-o", path_str(&file)]),
        2,
        &["is not a folder"],
    );
    let missing = t.path().join("missing");
    expect(
        &convc(&["run", SPEC, dir, "-o", path_str(&missing)]),
        2,
        &["is not a folder"],
    );
    expect(
        &convc(&[
            "run",
            SPEC,
            dir,
            "specs/images/scene128.png",
            "-o",
            path_str(&out),
        ]),
        2,
        &["give it as the only input"],
    );
    expect(
        &convc(&["run", SPEC, "specs/images/scene128.png", "--format", "png"]),
        2,
        &["--format is for folder runs"],
    );
    // A pattern that matches nothing is a file name that does not exist, as before.
    let nothing = format!("{}/*.npy", path_str(&d));
    expect(
        &convc(&["run", SPEC, &nothing]),
        1,
        &["*.npy`: no such file"],
    );
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    expect(
        &convc(&["run", SPEC, path_str(&empty), "-o", path_str(&out)]),
        2,
        &["names no input files"],
    );
    expect(
        &convc(&["run", SPEC, "@no-such-list.txt", "-o", path_str(&out)]),
        2,
        &["cannot read the list"],
    );
    // Two inputs with one stem would write one file.
    std::fs::write(
        d.join("a.npy"),
        npy::write(&Tensor::zeros(vec![3, 128, 128])),
    )
    .unwrap();
    expect(
        &convc(&["run", SPEC, dir, "-o", path_str(&out)]),
        2,
        &["would both be written to"],
    );
    std::fs::remove_file(d.join("b.png")).unwrap();
    std::fs::remove_file(d.join("c.png")).unwrap();
    // Writing npy outputs into the input folder would overwrite `a.npy`.
    std::fs::remove_file(d.join("a.png")).unwrap();
    expect(
        &convc(&["run", SPEC, dir, "-o", dir]),
        2,
        &["never overwrites its inputs"],
    );
    let two = t.path().join("two.conv");
    std::fs::write(
        &two,
        "input x: [3, 8, 8]\ninput y: [3, 8, 8]\nz = add(x, y)\noutput z\n",
    )
    .unwrap();
    expect(
        &convc(&["run", path_str(&two), dir, "-o", path_str(&out)]),
        2,
        &["a network with one input"],
    );
    assert_eq!(
        names(&out),
        Vec::<String>::new(),
        "a usage error wrote files"
    );
}

/// A run of `n` copies of a picture through a network heavy enough to take a few seconds.
fn heavy_folder(root: &Path, n: usize, side: usize) -> (PathBuf, PathBuf, PathBuf) {
    let d = root.join("many");
    std::fs::create_dir(&d).unwrap();
    for i in 0..n {
        write_png(&d.join(format!("i{i:03}.png")), side, side, i);
    }
    let spec = root.join("heavy.conv");
    std::fs::write(
        &spec,
        format!(
            "input x: [3, {side}, {side}]\na = conv(x, out=64, kernel=3, pad=same, weights=random(seed=1))\n\
             b = conv(a, out=8, kernel=3, pad=same, weights=random(seed=2))\noutput b\n"
        ),
    )
    .unwrap();
    let out = root.join("out");
    std::fs::create_dir(&out).unwrap();
    (d, spec, out)
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_only_whole_files() {
    let t = tempfile::tempdir().unwrap();
    let (d, spec, out) = heavy_folder(t.path(), 20, 512);
    let child = convc_command()
        .args(["run", path_str(&spec), path_str(&d), "-o", path_str(&out)])
        .args(["--backend", "interp", "--threads", "1"])
        .env_remove("CONVC_MAX_MEMORY")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first output, then interrupt.
    let t0 = std::time::Instant::now();
    while names(&out).iter().all(|n| n.starts_with('.')) && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let o = child.wait_with_output().unwrap();
    expect(
        &o,
        130,
        &["interrupted after", "every output written is complete"],
    );
    let written = names(&out);
    assert!(!written.is_empty() && written.len() < 20, "{written:?}");
    for n in &written {
        assert!(!n.starts_with('.'), "temporary file left behind: {n}");
        assert_eq!(read_npy(&out.join(n)).shape(), [8, 512, 512], "{n}");
    }
}

/// Runs `cmd` under a pseudo-terminal (the `script` command), returning what it printed.
fn under_terminal(cmd: &str) -> Option<String> {
    let o = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .current_dir(root())
        .env("COLUMNS", "120")
        .output()
        .ok()?;
    Some(stdout(&o))
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let t = tempfile::tempdir().unwrap();
    let (d, spec, out) = heavy_folder(t.path(), 8, 128);
    let args = ["run", path_str(&spec), path_str(&d), "-o", path_str(&out)];
    // Not a terminal: no bar, only the summary.
    let o = convc(&args);
    expect(&o, 0, &["8 images, 0 failed"]);
    let e = stderr(&o);
    assert!(
        !e.contains('█') && !e.contains('\r') && !e.contains("8/8"),
        "{e:?}"
    );
    // A terminal: the bar, counting up to the end, then the summary.
    let bin = env!("CARGO_BIN_EXE_convc");
    let cmd = format!("{bin} {}", args.join(" "));
    let Some(shown) = under_terminal(&cmd) else {
        eprintln!("skipped: no `script` command to make a pseudo-terminal");
        return;
    };
    assert!(shown.contains("/8 images, 0 failed"), "{shown:?}");
    assert!(shown.contains('█') || shown.contains('░'), "{shown:?}");
    assert!(shown.contains("8 images, 0 failed, "), "{shown:?}");
}

#[test]
fn folder_memory_is_checked_per_file_from_headers() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("in");
    std::fs::create_dir(&d).unwrap();
    let spec = t.path().join("sym.conv");
    std::fs::write(
        &spec,
        "input x: [3, H, W]\ny = conv(x, out=8, kernel=3, pad=same, weights=random(seed=1))\noutput y\n",
    )
    .unwrap();
    write_png(&d.join("small.png"), 32, 32, 1);
    write_png(&d.join("big.png"), 512, 512, 2);
    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // big: 3 MiB in, 8 MiB out (twice): over 4 MiB; small fits.
    let o = convc_env(
        &["run", path_str(&spec), path_str(&d), "-o", path_str(&out)],
        &[("CONVC_MAX_MEMORY", "4M")],
    );
    expect(
        &o,
        1,
        &[
            "big.png`: running it would need about",
            "more than the limit of 4.0 MiB",
        ],
    );
    assert_eq!(names(&out), ["small.npy"]);
    assert_eq!(read_npy(&out.join("small.npy")).shape(), [8, 32, 32]);
}

/// Writes a valid `.npy` header for `[3, side, side]` float32 and extends the file to its full
/// length without writing the data (a sparse file: reading it would cost the whole length).
#[cfg(unix)]
fn sparse_npy(p: &Path, side: usize) {
    // The header alone (no values given), then the file extended to its full length.
    let header = npy::write_parts(&[3, side, side], &[]);
    std::fs::write(p, &header).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len((header.len() + 3 * side * side * 4) as u64)
        .unwrap();
}

/// A batch of files, each within the limit but together far over it, is refused from the
/// files' headers: convc runs under an address-space limit smaller than one file, so reading
/// any of them would fail to allocate.
#[cfg(unix)]
#[test]
fn a_batch_over_the_memory_limit_is_refused_without_reading_it() {
    let t = tempfile::tempdir().unwrap();
    let spec = t.path().join("id.conv");
    std::fs::write(&spec, "input x: [3, H, W]\ny = relu(x)\noutput y\n").unwrap();
    // 4 files of 3 x 8192 x 8192 float32 = 768 MiB each.
    let files: Vec<PathBuf> = (0..4).map(|i| t.path().join(format!("x{i}.npy"))).collect();
    for f in &files {
        sparse_npy(f, 8192);
    }
    let (first, _) = npy::header_shape(&std::fs::read(&files[0]).unwrap()[..128]).unwrap();
    assert_eq!(first, [3, 8192, 8192]);
    let bin = env!("CARGO_BIN_EXE_convc");
    let list: Vec<&str> = files.iter().map(|f| path_str(f)).collect();
    let cmd = format!(
        "ulimit -v 400000; exec {bin} run {} {}",
        path_str(&spec),
        list.join(" ")
    );
    let o = Command::new("sh")
        .args(["-c", &cmd])
        .env("CONVC_MAX_MEMORY", "1G")
        .output()
        .unwrap();
    expect(
        &o,
        1,
        &["this run would need", "more than the limit of 1.0 GiB"],
    );
}
