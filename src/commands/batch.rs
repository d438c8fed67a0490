//! `convc run MODEL SOURCE -o OUTDIR`: every image of a folder, a glob pattern or an `@list`
//! file through one network, one output file per input.
//!
//! Memory stays bounded: workers take the next file from a shared counter, read it, run it,
//! write its outputs and drop it, so at most one image per worker is in memory. Before any
//! data is read, every file's header is checked (channels, fixed sizes, the memory its run
//! needs); a bad file is reported and skipped, the others run. Threads go across images
//! (one image per thread, each with a one-thread compiled net) when images are small, else to
//! one image at a time (see [`split_threads`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use convc_ir::{Graph, shape};

use crate::data::{self, Probe};
use crate::driver::{self, Failure, input_err};
use crate::engine::Engine;
use crate::progress::Progress;
use crate::{Backend, OutFormat, PassOpts};

/// Everything a folder run was asked to do.
pub struct BatchArgs<'a> {
    /// The spec.
    pub model: &'a Path,
    /// The folder, glob pattern or `@LIST` word.
    pub source: &'a str,
    /// The `-o` words (exactly one folder is needed).
    pub outputs: &'a [PathBuf],
    /// `--format` of the output files (npy when not given).
    pub format: Option<OutFormat>,
    /// Which engine.
    pub backend: Backend,
    /// Pass selection.
    pub passes: &'a PassOpts,
    /// Threads (None: all cores).
    pub threads: Option<usize>,
    /// `--size HxW`.
    pub size: Option<(usize, usize)>,
    /// `-v`: print the passes' time on stderr.
    pub verbose: bool,
}

/// Per-image peak memory (bytes, as the run's memory estimate counts it) up to which images
/// run in parallel, one per thread: the measured gain of images across threads (see the
/// README's "Many images" section) holds while the images' tensors of every thread stay
/// near the cache sizes; larger images run one at a time with every thread.
pub const PARALLEL_IMAGE_BYTES: u128 = 16 << 20;

/// Whether an INPUT word names many files: a folder, or, when it is not the name of an existing
/// file, `@LIST` or a glob pattern (`*`, `?`, `[`) that matches at least one path. (A pattern
/// that matches nothing stays a file name, reported as missing as before.)
pub fn is_many(word: &str) -> bool {
    let p = Path::new(word);
    if p.is_dir() {
        return true;
    }
    if p.exists() {
        return false;
    }
    word.starts_with('@')
        || (word.contains(['*', '?', '['])
            && glob::glob(word).is_ok_and(|mut m| m.any(|r| r.is_ok())))
}

/// One input file that passed the header checks.
struct Job {
    path: PathBuf,
    outs: Vec<PathBuf>,
    probe: Probe,
}

/// Runs every file of `a.source`.
pub fn run(a: BatchArgs<'_>) -> Result<(), Failure> {
    let out_dir = output_dir(a.source, a.outputs)?;
    let forced = forced_split()?;
    driver::selected_passes(a.passes)?;
    let files = list_inputs(a.source)?;
    let mut model = driver::load_model(a.model)?;
    driver::bind_size(&mut model, a.size)?;
    if model.graph.inputs.len() != 1 {
        return Err(Failure::Usage(format!(
            "error: `{}` names many files, but the network has {} inputs: a folder run needs a network with one input",
            a.source,
            model.graph.inputs.len()
        )));
    }
    let out_names: Vec<String> = model
        .graph
        .outputs
        .iter()
        .map(|&n| model.graph.node(n).name.clone())
        .collect();
    let t0 = std::time::Instant::now();
    driver::run_passes(&mut model, a.passes, |_, _| {})?;
    if a.verbose {
        driver::note(&format!(
            "time: passes {:.2} ms (code generation happens per input size, in the workers)\n",
            t0.elapsed().as_secs_f64() * 1e3
        ));
    }
    let ext = match a.format.unwrap_or_default() {
        OutFormat::Npy => "npy",
        OutFormat::Png => "png",
    };
    let outs = output_paths(&files, &out_dir, &out_names, ext)?;
    protect(a.model, &files, &outs)?;

    let mut progress = Progress::new(files.len());
    let (jobs, largest) = check_headers(&model, files, outs, &mut progress)?;
    let threads = a.threads.unwrap_or_else(convc_interp::default_threads);
    let limit = driver::memory_limit()?;
    let split = split_threads(forced, threads, jobs.len(), largest, limit);
    let stop = stop_on_interrupt();
    progress.start();
    run_workers(&model.graph, &jobs, split, a.backend, &stop, &mut progress);
    let summary = progress.finish();
    if stop.load(Ordering::Relaxed) && summary.done < summary.images {
        return Err(Failure::Interrupted(format!(
            "interrupted after {} of {} input files ({} failed): every output written is complete",
            summary.done, summary.images, summary.failed
        )));
    }
    driver::note(&format!("{}\n", summary.line()));
    if summary.failed > 0 {
        return Err(input_err(format!(
            "{} of {} input files failed (named above); the others were written to `{}`",
            summary.failed,
            summary.images,
            out_dir.display()
        )));
    }
    Ok(())
}

/// Runs `jobs` on `workers` threads of `each` threads, counting results as they come, until
/// all are done or `stop` is set.
fn run_workers(
    g: &Graph,
    jobs: &[Job],
    (workers, each): (usize, usize),
    backend: Backend,
    stop: &AtomicBool,
    progress: &mut Progress,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|sc| {
        let (tx, rx) = mpsc::channel::<Result<(), String>>();
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            sc.spawn(move || worker(g, jobs, (next, stop), (backend, each), tx));
        }
        drop(tx);
        for r in rx {
            match r {
                Ok(()) => progress.ok(),
                Err(m) => progress.fail(&m),
            }
        }
    });
}

/// The one `-o` folder of a folder run.
fn output_dir(source: &str, outputs: &[PathBuf]) -> Result<PathBuf, Failure> {
    let [o] = outputs else {
        let what = if Path::new(source).is_dir() {
            "is a directory: to run every .png and .npy file in it"
        } else {
            "names many files: to run them"
        };
        return Err(Failure::Usage(format!(
            "error: `{source}` {what}, give one output folder with -o OUTDIR ({} -o given)",
            outputs.len()
        )));
    };
    if !o.is_dir() {
        return Err(Failure::Usage(format!(
            "error: `{}` is not a folder: with many inputs (`{source}`), -o names an existing folder to write one output per input into",
            o.display()
        )));
    }
    Ok(o.clone())
}

/// The most bytes of an `@LIST` file read.
const MAX_LIST_BYTES: u64 = 64 << 20;

/// The files a source word names: an `@LIST` file's lines (paths relative to the list's
/// folder; blank lines skipped), a folder's `.png` and `.npy` files (not hidden ones; not its
/// subfolders), or the files a glob pattern matches; in name order, except a list's own.
fn list_inputs(source: &str) -> Result<Vec<PathBuf>, Failure> {
    let files = if let Some(list) = source.strip_prefix('@') {
        read_list(Path::new(list))?
    } else if Path::new(source).is_dir() {
        folder_files(Path::new(source))?
    } else {
        glob_files(source)?
    };
    if files.is_empty() {
        return Err(Failure::Usage(format!(
            "error: `{source}` names no input files (.png or .npy)"
        )));
    }
    Ok(files)
}

fn read_list(list: &Path) -> Result<Vec<PathBuf>, Failure> {
    let bytes = convc_tensor::read::read_limited(list, MAX_LIST_BYTES).map_err(|e| {
        Failure::Usage(format!(
            "error: cannot read the list `{}`: {e}",
            list.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Failure::Usage(format!(
            "error: the list `{}` is not UTF-8 text (one path per line)",
            list.display()
        ))
    })?;
    let base = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| base.join(l))
        .collect())
}

fn folder_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let fail = |e: std::io::Error| {
        input_err(format!(
            "cannot list `{}`: {}",
            dir.display(),
            convc_ir::lower::io_reason(&e)
        ))
    };
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(fail)? {
        let e = e.map_err(fail)?;
        let name = e.file_name();
        let ext = Path::new(&name)
            .extension()
            .and_then(|x| x.to_str())
            .map(str::to_ascii_lowercase);
        let hidden = name.as_encoded_bytes().starts_with(b".");
        if !hidden && matches!(ext.as_deref(), Some("png" | "npy")) && !e.path().is_dir() {
            files.push(dir.join(name));
        }
    }
    files.sort();
    Ok(files)
}

fn glob_files(pattern: &str) -> Result<Vec<PathBuf>, Failure> {
    let paths = glob::glob(pattern)
        .map_err(|e| Failure::Usage(format!("error: `{pattern}` is not a valid pattern: {e}")))?;
    // An entry that cannot be read while matching is left out (it is no input file).
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| !p.is_dir())
        .collect();
    files.sort();
    Ok(files)
}

/// One output path per input and network output: `OUTDIR/STEM.EXT`, or `OUTDIR/STEM.NAME.EXT`
/// for a network with several outputs. Two inputs that would write the same file (`a.png` and
/// `a.npy`) are a usage error.
fn output_paths(
    files: &[PathBuf],
    out_dir: &Path,
    out_names: &[String],
    ext: &str,
) -> Result<Vec<Vec<PathBuf>>, Failure> {
    let mut seen: HashMap<PathBuf, &Path> = HashMap::new();
    let mut all = Vec::new();
    for f in files {
        let stem = f.file_stem().unwrap_or(f.as_os_str());
        let mut outs = Vec::new();
        for name in out_names {
            let mut file = OsString::from(stem);
            if out_names.len() > 1 {
                file.push(format!(".{name}"));
            }
            file.push(format!(".{ext}"));
            let p = out_dir.join(file);
            if let Some(other) = seen.insert(p.clone(), f) {
                return Err(Failure::Usage(format!(
                    "error: `{}` and `{}` would both be written to `{}`: give inputs distinct names",
                    other.display(),
                    f.display(),
                    p.display()
                )));
            }
            outs.push(p);
        }
        all.push(outs);
    }
    Ok(all)
}

/// Refuses an output path that is the spec or one of the inputs.
fn protect(model: &Path, files: &[PathBuf], outs: &[Vec<PathBuf>]) -> Result<(), Failure> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let mut inputs: std::collections::HashSet<PathBuf> =
        files.iter().filter_map(|p| canon(p)).collect();
    inputs.extend(canon(model));
    for o in outs.iter().flatten() {
        if canon(o).is_some_and(|c| inputs.contains(&c)) {
            return Err(Failure::Usage(format!(
                "error: output `{}` is also an input: convc never overwrites its inputs (choose another -o folder or --format)",
                o.display()
            )));
        }
    }
    Ok(())
}

/// Checks every file from its header (shape, channels, fixed sizes, memory), reporting and
/// skipping the bad ones. Returns the files to run and the most memory one of them needs.
fn check_headers(
    model: &driver::Model,
    files: Vec<PathBuf>,
    outs: Vec<Vec<PathBuf>>,
    progress: &mut Progress,
) -> Result<(Vec<Job>, u128), Failure> {
    let g = &model.graph;
    let node = g.node(g.inputs[0]);
    let limit = u128::from(driver::memory_limit()?);
    let mut estimates: HashMap<[usize; 4], Result<u128, String>> = HashMap::new();
    let mut jobs = Vec::new();
    let mut largest = 0;
    for (path, outs) in files.into_iter().zip(outs) {
        let probe = match data::probe_input(&path) {
            Some(p) => p,
            // The header does not settle it (usually a bad file): reading it says why.
            None => match data::read_input(&path) {
                Ok(l) => Probe::of(&l),
                Err(f) => {
                    progress.fail(&f.to_string());
                    continue;
                }
            },
        };
        let shapes = [probe.shape];
        if let Err(f) = super::run::check_input_shapes(node, std::slice::from_ref(&path), &shapes) {
            // Bad data says so first (a corrupt PNG's header may lie about its size).
            let f = data::read_input(&path).err().unwrap_or(f);
            progress.fail(&f.to_string());
            continue;
        }
        let key = [probe.shape[0], 0, probe.shape[2], probe.shape[3]];
        let est = estimates
            .entry(key)
            .or_insert_with(|| estimate(model, probe.shape));
        let file_len = std::fs::metadata(&path).map_or(0, |m| u128::from(m.len()));
        match est {
            Err(m) => progress.fail(&format!("error: `{}`: {m}", path.display())),
            Ok(b) if *b + file_len > limit => progress.fail(&format!(
                "error: `{}`: running it would need about {}, more than the limit of {}: raise the limit with CONVC_MAX_MEMORY=SIZE (e.g. 64G)",
                path.display(),
                driver::human(*b + file_len),
                driver::human(limit)
            )),
            Ok(b) => {
                largest = largest.max(*b + file_len);
                jobs.push(Job { path, outs, probe });
            }
        }
    }
    Ok((jobs, largest))
}

/// The peak memory of a run of one file of `shape` `[N, C, H, W]`, or why the network cannot
/// run on it (a size that does not bind, a layer whose output would be empty).
fn estimate(model: &driver::Model, shape: [usize; 4]) -> Result<u128, String> {
    let g = &model.graph;
    let b = shape::bind_inputs(g, &[(shape[2], shape[3])])?;
    let conc = shape::concretize(g, &b).map_err(|d| {
        format!(
            "the network cannot run on this image:\n{}",
            model.render(&d)
        )
    })?;
    Ok(driver::memory_estimate(g, &conc, shape[0]).0)
}

/// `CONVC_BATCH_SPLIT`: `images` forces images in parallel, `within` threads inside one
/// image (for measuring); unset or empty leaves the choice to [`split_threads`].
fn forced_split() -> Result<Option<bool>, Failure> {
    match std::env::var("CONVC_BATCH_SPLIT").ok().as_deref() {
        None | Some("") => Ok(None),
        Some("images") => Ok(Some(true)),
        Some("within") => Ok(Some(false)),
        Some(v) => Err(Failure::Usage(format!(
            "error: CONVC_BATCH_SPLIT={v}: write `images` (images in parallel) or `within` (threads inside one image)"
        ))),
    }
}

/// How a run of `jobs` files whose largest needs `largest` bytes uses `threads` threads:
/// `(workers, threads per worker)`. The rule: images of at most [`PARALLEL_IMAGE_BYTES`]
/// run one per thread (as many workers as threads, files and the memory limit allow), larger
/// ones one at a time with every thread; `forced` (see [`forced_split`]) overrides it.
fn split_threads(
    forced: Option<bool>,
    threads: usize,
    jobs: usize,
    largest: u128,
    limit: u64,
) -> (usize, usize) {
    let across = forced.unwrap_or(jobs >= 2 && largest <= PARALLEL_IMAGE_BYTES);
    if !across || threads == 1 {
        return (1, threads);
    }
    let fit = (u128::from(limit) / largest.max(1)).clamp(1, threads as u128) as usize;
    (threads.min(jobs).min(fit).max(1), 1)
}

/// A flag set by Ctrl-C (or SIGTERM): workers finish the image under way and take no more,
/// so no output file is left half written. A second Ctrl-C ends the process at once.
fn stop_on_interrupt() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    // Only one handler per process; if one cannot be set, Ctrl-C keeps its default (the
    // atomic writes still leave no partial output under its name).
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
    });
    stop
}

/// At most this many compiled nets a worker keeps (one per image size).
const MAX_ENGINES: usize = 4;

/// Takes files from the shared counter until none are left, sending each one's result.
fn worker(
    g: &Graph,
    jobs: &[Job],
    (next, stop): (&AtomicUsize, &AtomicBool),
    (backend, threads): (Backend, usize),
    tx: mpsc::Sender<Result<(), String>>,
) {
    let mut engines: Vec<((usize, usize), Engine<'_>)> = Vec::new();
    while !stop.load(Ordering::Relaxed)
        && let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed))
    {
        let r = run_one(g, job, &mut engines, backend, threads);
        if tx.send(r).is_err() {
            break;
        }
    }
}

/// A failure's message with the file named first.
fn named(path: &Path, f: Failure) -> String {
    let text = f.to_string();
    let rest = text.strip_prefix("error: ").unwrap_or(&text);
    format!("error: `{}`: {rest}", path.display())
}

/// Reads one file, runs it, writes its outputs (encoded first, so a failure writes none), and
/// drops it.
fn run_one<'g>(
    g: &'g Graph,
    job: &Job,
    engines: &mut Vec<((usize, usize), Engine<'g>)>,
    backend: Backend,
    threads: usize,
) -> Result<(), String> {
    let l = data::read_input(&job.path).map_err(|f| f.to_string())?;
    if Probe::of(&l) != job.probe {
        return Err(format!(
            "error: `{}` changed while convc was reading it: run it again",
            job.path.display()
        ));
    }
    let hw = (job.probe.shape[2], job.probe.shape[3]);
    let k = match engines.iter().position(|e| e.0 == hw) {
        Some(k) => k,
        None => {
            if engines.len() >= MAX_ENGINES {
                engines.remove(0);
            }
            let e =
                Engine::new(g, &[hw], backend, threads, true).map_err(|f| named(&job.path, f))?;
            engines.push((hw, e));
            engines.len() - 1
        }
    };
    let squeeze = !l.batched;
    let outs = engines[k]
        .1
        .run(std::slice::from_ref(&l.tensor))
        .map_err(|f| named(&job.path, f))?;
    drop(l);
    let mut encoded = Vec::new();
    for (p, t) in job.outs.iter().zip(&outs) {
        encoded.push((
            p,
            data::encode_output(p, t, squeeze).map_err(|f| named(&job.path, f))?,
        ));
    }
    drop(outs);
    for (p, bytes) in encoded {
        convc_tensor::write::write_atomic(p, &bytes).map_err(|e| {
            format!(
                "error: cannot write `{}`: {}",
                p.display(),
                convc_ir::lower::io_reason(&e)
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_go_across_small_images_within_large_ones() {
        let mib = 1u128 << 20;
        let g16 = 16u64 << 30;
        // Small images: one per thread, each net on one thread.
        assert_eq!(split_threads(None, 8, 1000, mib, g16), (8, 1));
        // No more workers than files.
        assert_eq!(split_threads(None, 8, 3, mib, g16), (3, 1));
        // One file, or large images: one at a time with every thread.
        assert_eq!(split_threads(None, 8, 1, mib, g16), (1, 8));
        assert_eq!(split_threads(None, 8, 100, 17 * mib, g16), (1, 8));
        // The memory limit caps the workers.
        assert_eq!(split_threads(None, 8, 100, 10 * mib, 25 << 20), (2, 1));
        // Forced either way.
        assert_eq!(split_threads(Some(true), 4, 100, 100 * mib, g16), (4, 1));
        assert_eq!(split_threads(Some(false), 4, 100, mib, g16), (1, 4));
    }
}
