//! The bad-input corpus (`tests/bad/`, described in `tests/bad/README.md`): every case runs the
//! built `convc` in a scratch copy of its folder and must exit with the expected code and
//! message, without a panic, a crash (a signal), a hang (killed after 60 s), a message over
//! 16 KiB, or a file left behind.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run still going after this long is killed and fails its case (a hang is a bug; this is not
/// a speed assertion).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The longest stderr accepted: a message a user can read.
const MAX_STDERR: usize = 16 << 10;

/// One case: where it lives and what it expects.
#[derive(Debug, Default)]
struct Case {
    /// Name shown in failures (its path under `tests/bad`).
    name: String,
    /// Files copied into the scratch folder: a single `.conv`, or every file of a case folder.
    source: PathBuf,
    /// True for a case folder (`case.txt`), false for a single `.conv` file.
    is_folder: bool,
    args: Vec<String>,
    exit: Option<i32>,
    /// The exact first line of stderr.
    stderr_first: Option<String>,
    stderr_has: Vec<String>,
    stdout_has: Vec<String>,
    env: Vec<(String, String)>,
    mkdir: Vec<String>,
    generate: Vec<(String, String)>,
}

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("bad")
}

/// Every case under `dir`, in path order: a folder with a `case.txt` is one case; any other
/// `.conv` file is a single-file case.
fn collect(dir: &Path, out: &mut Vec<Case>, errors: &mut Vec<String>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.join("case.txt").is_file() {
                let text = std::fs::read_to_string(p.join("case.txt")).expect("case.txt");
                out.push(parse_case(&p, true, text.lines(), errors));
            } else {
                collect(&p, out, errors);
            }
        } else if p.extension().is_some_and(|e| e == "conv") {
            let bytes = std::fs::read(&p).expect("case file");
            let text = String::from_utf8_lossy(&bytes);
            // The header: the leading `# key: value` comment lines.
            let header = text
                .lines()
                .take_while(|l| l.starts_with('#'))
                .map(|l| l.trim_start_matches('#').trim_start());
            out.push(parse_case(&p, false, header, errors));
        }
    }
}

fn parse_case<'a>(
    path: &Path,
    is_folder: bool,
    lines: impl Iterator<Item = &'a str>,
    errors: &mut Vec<String>,
) -> Case {
    let name = path
        .strip_prefix(bad_dir())
        .unwrap_or(path)
        .display()
        .to_string();
    let spec = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let subst = |s: &str| {
        if is_folder {
            s.to_string()
        } else {
            s.replace("{spec}", &spec)
        }
    };
    let mut c = Case {
        name: name.clone(),
        source: path.to_path_buf(),
        is_folder,
        ..Case::default()
    };
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            if is_folder {
                errors.push(format!("{name}: not `key: value`: {line}"));
            }
            continue;
        };
        let value = value.strip_prefix(' ').unwrap_or(value);
        match key {
            "args" => {
                c.args = value
                    .split_whitespace()
                    .map(|w| if w == "''" { String::new() } else { subst(w) })
                    .collect()
            }
            "exit" => match value.trim().parse() {
                Ok(v) => c.exit = Some(v),
                Err(_) => errors.push(format!("{name}: bad exit code `{value}`")),
            },
            "stderr" => c.stderr_first = Some(subst(value)),
            "stderr-has" => c.stderr_has.push(subst(value)),
            "stdout-has" => c.stdout_has.push(subst(value)),
            "env" => match value.split_once('=') {
                Some((k, v)) => c.env.push((k.to_string(), v.to_string())),
                None => errors.push(format!("{name}: env needs NAME=VALUE")),
            },
            "mkdir" => c.mkdir.push(value.to_string()),
            "generate" => match value.split_once(' ') {
                Some((file, kind)) => c.generate.push((file.to_string(), kind.to_string())),
                None => errors.push(format!("{name}: generate needs FILE KIND")),
            },
            // An ordinary comment in a .conv header (a misspelt key is still an error).
            _ if !is_folder && key.contains(' ') => {}
            _ => errors.push(format!("{name}: unknown key `{key}`")),
        }
    }
    if c.args.is_empty() {
        errors.push(format!("{name}: no `args:`"));
    }
    if c.exit.is_none() {
        errors.push(format!("{name}: no `exit:`"));
    }
    if c.exit != Some(0) && c.stderr_first.is_none() && c.stderr_has.is_empty() {
        errors.push(format!(
            "{name}: a failing case needs `stderr:` or `stderr-has:`"
        ));
    }
    c
}

/// Inputs too large to commit, made at run time (`generate: FILE KIND`).
fn generate(kind: &str) -> Option<Vec<u8>> {
    let mut s = String::new();
    match kind {
        // A statement followed by a million blanks and a stray token on the same line.
        "long-line" => {
            s.push_str("input image: [3, 8, 8]\nf = relu(image)");
            s.push_str(&" ".repeat(1_000_000));
            s.push_str("x\noutput f\n");
        }
        // A million-character name that is not defined.
        "long-name" => {
            s.push_str("input image: [3, 8, 8]\nf = relu(");
            s.push_str(&"a".repeat(1_000_000));
            s.push_str(")\noutput f\n");
        }
        // Literal weights nested 10,000 brackets deep.
        "deep-brackets" => {
            s.push_str("input image: [1, 8, 8]\nf = conv(image, out=1, weights=");
            s.push_str(&"[".repeat(10_000));
            s.push_str(&"]".repeat(10_000));
            s.push_str(")\noutput f\n");
        }
        // 100,000 layers, then an output that names nothing.
        "chain-100k" => {
            s.push_str("input image: [3, 8, 8]\nx0 = relu(image)\n");
            for i in 1..100_000 {
                s.push_str(&format!("x{i} = conv(x{}, out=3, kernel=1)\n", i - 1));
            }
            s.push_str("output x100000\n");
        }
        // 100,000 stride-2 layers over a symbolic size.
        "strided-100k" => {
            s.push_str("input image: [3, H, W]\nx0 = relu(image)\n");
            for i in 1..100_000 {
                s.push_str(&format!("x{i} = maxpool(x{}, kernel=1, stride=2)\n", i - 1));
            }
            s.push_str("output x99999\n");
        }
        // A spec of 33 MiB (the limit is 32 MiB): a valid start, then comment lines.
        "oversized" => {
            s.push_str("input image: [3, 8, 8]\nf = relu(image)\noutput f\n");
            let line = format!("#{}\n", "-".repeat(1023));
            while s.len() < 33 << 20 {
                s.push_str(&line);
            }
        }
        _ => return None,
    }
    Some(s.into_bytes())
}

/// Every file under `dir`, as paths relative to it (directories included).
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).expect("case folder").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            copy_dir(&p, &dest);
        } else if e.file_name() != "case.txt" {
            std::fs::copy(&p, &dest).expect("copy");
        }
    }
}

/// Runs one case; `Err` says everything that is wrong with its run.
fn run_case(c: &Case) -> Result<Duration, String> {
    let scratch = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let dir = scratch.path();
    if c.is_folder {
        copy_dir(&c.source, dir);
    } else {
        std::fs::copy(&c.source, dir.join(c.source.file_name().unwrap()))
            .map_err(|e| format!("copy: {e}"))?;
    }
    for d in &c.mkdir {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    for (file, kind) in &c.generate {
        let bytes = generate(kind).ok_or_else(|| format!("unknown generator `{kind}`"))?;
        std::fs::write(dir.join(file), bytes).map_err(|e| format!("generate {file}: {e}"))?;
    }
    let before = listing(dir);

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convc"));
    cmd.args(&c.args)
        .current_dir(dir)
        .env_remove("CONVC_MAX_MEMORY")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start convc: {e}"))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err_t = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "hung: killed after {} s (`convc {}`)",
                    TIMEOUT.as_secs(),
                    c.args.join(" ")
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();

    let mut problems = Vec::new();
    match status.code() {
        None => problems.push(format!("killed by a signal ({status})")),
        Some(101) => problems.push("exit 101 (a panic)".to_string()),
        Some(code) if Some(code) != c.exit => {
            problems.push(format!("exit {code}, expected {}", c.exit.unwrap_or(-1)))
        }
        _ => {}
    }
    for bad in ["panicked", "RUST_BACKTRACE", "thread 'main'"] {
        if stderr.contains(bad) {
            problems.push(format!("stderr contains `{bad}`"));
        }
    }
    if stderr.len() > MAX_STDERR {
        problems.push(format!(
            "stderr is {} bytes, more than {MAX_STDERR}",
            stderr.len()
        ));
    }
    if let Some(want) = &c.stderr_first {
        let first = stderr.lines().next().unwrap_or("");
        if first != want {
            problems.push(format!(
                "first line of stderr:\n    got:      {first}\n    expected: {want}"
            ));
        }
    }
    for want in &c.stderr_has {
        if !stderr.contains(want.as_str()) {
            problems.push(format!("stderr lacks `{want}`"));
        }
    }
    for want in &c.stdout_has {
        if !stdout.contains(want.as_str()) {
            problems.push(format!("stdout lacks `{want}`"));
        }
    }
    let after = listing(dir);
    let new: Vec<String> = after
        .difference(&before)
        .map(|p| p.display().to_string())
        .collect();
    if !new.is_empty() {
        problems.push(format!("left files behind: {}", new.join(", ")));
    }
    if problems.is_empty() {
        Ok(took)
    } else {
        let shown: String = stderr.chars().take(2000).collect();
        Err(format!(
            "`convc {}`:\n  {}\n  --- stderr ---\n{shown}",
            c.args.join(" "),
            problems.join("\n  ")
        ))
    }
}

#[test]
fn every_bad_input_fails_cleanly() {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    collect(&bad_dir(), &mut cases, &mut errors);
    assert!(errors.is_empty(), "malformed cases:\n{}", errors.join("\n"));
    assert!(
        !cases.is_empty(),
        "no cases found under {}",
        bad_dir().display()
    );
    // A few runs at a time: each is one short process.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(usize, Result<Duration, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = cases.get(i) else { break };
                        mine.push((i, run_case(c)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let mut failures: Vec<(usize, String)> = results
        .into_iter()
        .filter_map(|(i, r)| r.err().map(|e| (i, e)))
        .collect();
    failures.sort();
    let report: Vec<String> = failures
        .iter()
        .map(|(i, e)| format!("{}: {e}", cases[*i].name))
        .collect();
    assert!(
        report.is_empty(),
        "{} of {} bad-input cases failed:\n\n{}",
        report.len(),
        cases.len(),
        report.join("\n\n")
    );
    eprintln!("{} bad-input cases passed", cases.len());
}

/// A reader that stops early (`convc dump big.conv | head`) ends the output quietly: exit 0, no
/// panic. (`run` and `bench` still print with `print!`; they are not checked here.)
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let mut spec = String::from("input image: [3, 8, 8]\nx0 = conv(image, out=3)\n");
    for i in 1..20_000 {
        spec.push_str(&format!("x{i} = relu(x{})\n", i - 1));
    }
    spec.push_str("output x19999\n");
    std::fs::write(dir.join("model.conv"), spec).expect("write spec");
    for args in [
        &["check", "model.conv"][..],
        &["dump", "model.conv"],
        &["dump", "model.conv", "--print-after-all"],
        &["dump", "model.conv", "--format", "json"],
        &["explain", "model.conv"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_convc"))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("convc starts");
        // Read a little, then hang up.
        let mut first = [0u8; 16];
        let mut stdout = child.stdout.take().expect("stdout");
        let _ = stdout.read(&mut first);
        drop(stdout);
        let mut stderr = String::new();
        let _ = child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr);
        let status = child.wait().expect("convc ends");
        assert_eq!(
            status.code(),
            Some(0),
            "convc {args:?} with a closed stdout: {status}\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "convc {args:?} with a closed stdout:\n{stderr}"
        );
    }
}
