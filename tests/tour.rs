//! The tour `docs/asymmetric-vs-separable.md` cannot go stale: every `$ convc ...` line of its
//! `console` blocks is run (from a scratch folder that links the repository's `specs/` and has an
//! empty `docs/tour/`, so the pictures it writes do not touch the committed ones), and its output
//! (stdout, then stderr) must be the lines shown under it, with times and machine-dependent
//! figures masked. The pictures it writes must match the committed ones.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One command of the page and the output shown under it.
struct Shown {
    args: Vec<String>,
    output: Vec<String>,
}

fn commands(page: &str) -> Vec<Shown> {
    let mut out: Vec<Shown> = Vec::new();
    let mut in_block = false;
    for line in page.lines() {
        if line.starts_with("```") {
            in_block = line.starts_with("```console");
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ convc ") {
            out.push(Shown {
                args: cmd.split_whitespace().map(String::from).collect(),
                output: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.output.push(line.to_string());
        }
    }
    out
}

/// Masks what changes from run to run or machine to machine: every number on a line that
/// shows a time or a speed, and the lines of what `bench` measures at first use (the
/// microkernel tiles, Winograd's transforms: absent on some machines).
fn masked(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.contains("measured at first use"))
        .map(|l| {
            let timed = [" ms", "GFLOP/s", "speed-up"].iter().any(|k| l.contains(k));
            if !timed {
                return l.clone();
            }
            let mut s = String::new();
            let mut in_num = false;
            for c in l.chars() {
                if c.is_ascii_digit() || (in_num && c == '.') {
                    if !in_num {
                        s.push('#');
                    }
                    in_num = true;
                } else {
                    in_num = false;
                    s.push(c);
                }
            }
            s
        })
        .collect()
}

fn png_pixels(p: &Path) -> (u32, u32, Vec<u8>) {
    let d = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    ));
    let mut r = d.read_info().expect("a PNG");
    let mut buf = vec![0; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("a frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn every_command_of_the_tour_gives_the_output_shown() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/asymmetric-vs-separable.md")).expect("tour");
    let shown = commands(&page);
    assert!(shown.len() >= 10, "the tour's commands were not found");
    let scratch = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(root.join("specs"), scratch.path().join("specs")).expect("link");
    std::fs::create_dir_all(scratch.path().join("docs/tour")).expect("docs/tour");
    for s in &shown {
        let o = Command::new(env!("CARGO_BIN_EXE_convc"))
            .args(&s.args)
            .current_dir(scratch.path())
            .output()
            .expect("convc runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "convc {:?}:\n{text}", s.args);
        let got: Vec<String> = text
            .trim_end_matches('\n')
            .lines()
            .map(String::from)
            .collect();
        let mut want = s.output.clone();
        while want.last().is_some_and(|l| l.is_empty()) {
            want.pop();
        }
        assert_eq!(masked(&got), masked(&want), "convc {}", s.args.join(" "));
    }
    // The pictures the page shows are the ones its commands make (channel grids may differ by
    // a level of rounding where the JIT's path differs; plots must be the same size).
    for entry in std::fs::read_dir(scratch.path().join("docs/tour")).expect("outputs") {
        let p = entry.expect("entry").path();
        if p.extension().is_none_or(|e| e != "png") {
            continue;
        }
        let name = p.file_name().expect("name").to_owned();
        let committed = root.join("docs/tour").join(&name);
        assert!(
            committed.is_file(),
            "{} is not committed",
            committed.display()
        );
        let (w1, h1, a) = png_pixels(&p);
        let (w2, h2, b) = png_pixels(&committed);
        assert_eq!((w1, h1), (w2, h2), "{name:?}");
        let name = name.to_string_lossy();
        if !(name.contains("spectra") || name.contains("tradeoff") || name.contains("network")) {
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| x.abs_diff(*y))
                .max()
                .unwrap_or(0);
            assert!(worst <= 2, "{name}: pixels differ by {worst}");
        }
    }
}

#[test]
fn masking_hides_times_only() {
    let l = |s: &str| vec![s.to_string()];
    assert_eq!(
        masked(&l("  time        0.831 ms/image (median of 78 runs)")),
        l("  time        # ms/image (median of # runs)")
    );
    assert_eq!(
        masked(&l("network: MACs 3.54M -> 2.51M")),
        l("network: MACs 3.54M -> 2.51M")
    );
    assert!(
        masked(&l(
            "  tiles       blocks of 7 (measured at first use in 2 ms)"
        ))
        .is_empty()
    );
}
