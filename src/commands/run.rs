//! `convc run`: load inputs, run the network, write or summarise the outputs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convc_ir::shape;
use convc_tensor::fmt_shape;

use super::batch;
use crate::data::{self, Loaded, Probe};
use crate::driver::{self, Failure, input_err};
use crate::engine::Engine;
use crate::{Backend, OutFormat, PassOpts};

/// Everything `run` was asked to do.
pub struct RunArgs<'a> {
    /// The spec.
    pub model: &'a Path,
    /// `PATH` or `NAME=PATH` words.
    pub inputs: &'a [String],
    /// `-o` paths, in output order (or the folder of a folder run).
    pub outputs: &'a [PathBuf],
    /// `--format` of a folder run's outputs.
    pub format: Option<OutFormat>,
    /// Which engine.
    pub backend: Backend,
    /// Pass selection.
    pub passes: &'a PassOpts,
    /// Threads (None: all cores).
    pub threads: Option<usize>,
    /// `--size HxW`: binds symbolic sizes before the data does (the data must then agree).
    pub size: Option<(usize, usize)>,
    /// `--budget E`: run the cheapest network within this output error (see `crate::budget`).
    pub budget: Option<f64>,
    /// `-v`: print the time of the passes, of code generation and of the run on stderr.
    pub verbose: bool,
}

/// Runs `convc run`.
pub fn run(a: RunArgs<'_>) -> Result<(), Failure> {
    if let Some(many) = a.inputs.iter().find(|w| batch::is_many(w)) {
        return run_many(&a, many);
    }
    if a.format.is_some() {
        return Err(Failure::Usage(
            "error: --format is for folder runs; for one output, the -o file's extension (.npy or .png) says the format".into(),
        ));
    }
    for o in a.outputs {
        data::check_output_path(o)?;
    }
    driver::selected_passes(a.passes)?;
    let mut model = driver::load_model(a.model)?;
    driver::bind_size(&mut model, a.size)?;
    if a.outputs.len() > model.graph.outputs.len() {
        return Err(Failure::Usage(format!(
            "error: {} -o given but the network has {} output(s)",
            a.outputs.len(),
            model.graph.outputs.len()
        )));
    }
    // Outputs keep the names the user wrote, whatever the passes call their nodes.
    let out_names: Vec<String> = model
        .graph
        .outputs
        .iter()
        .map(|&n| model.graph.node(n).name.clone())
        .collect();
    let files = assign_inputs(&model, a.inputs)?;
    let t0 = Instant::now();
    match a.budget {
        Some(e) => apply_budget(&mut model, &files, e, a.passes)?,
        None => driver::run_passes(&mut model, a.passes, |_, _| {})?,
    }
    let passes_time = t0.elapsed();
    protect_inputs(a.model, &files, a.outputs)?;

    let g = &model.graph;
    // Every check and the memory estimate come from the files' headers, before any data is
    // read: a batch too large for the memory limit is refused without reading it.
    let mut probed: Vec<Vec<(Probe, Option<Loaded>)>> = Vec::new();
    let mut batched = false;
    for (i, &n) in g.inputs.iter().enumerate() {
        let parts: Vec<(Probe, Option<Loaded>)> = files[i]
            .iter()
            .map(|p| probe_or_read(p))
            .collect::<Result<_, _>>()?;
        batched |= parts.len() > 1 || parts.iter().any(|p| p.0.batched);
        let shapes: Vec<[usize; 4]> = parts.iter().map(|p| p.0.shape).collect();
        if let Err(f) = check_input_shapes(g.node(n), &files[i], &shapes) {
            // A file whose data is bad says so first (a corrupt PNG's header may lie about
            // its size); each is read and dropped, one at a time.
            for (p, part) in files[i].iter().zip(&parts) {
                if part.1.is_none() {
                    data::read_input(p)?;
                }
            }
            return Err(f);
        }
        probed.push(parts);
    }
    let n0: usize = probed[0].iter().map(|p| p.0.shape[0]).sum();
    if let Some(n) = probed
        .iter()
        .map(|parts| parts.iter().map(|p| p.0.shape[0]).sum::<usize>())
        .find(|&n| n != n0)
    {
        return Err(input_err(format!(
            "the inputs hold different numbers of images ({n0} and {n}): a batch needs the same N for every input"
        )));
    }
    let sizes: Vec<(usize, usize)> = probed
        .iter()
        .map(|parts| (parts[0].0.shape[2], parts[0].0.shape[3]))
        .collect();
    let b = shape::bind_inputs(g, &sizes).map_err(|m| {
        // Name the files, so the user knows which one to fix.
        let from: Vec<String> = g
            .inputs
            .iter()
            .zip(&files)
            .map(|(&n, f)| {
                let paths: Vec<String> = f.iter().map(|p| format!("`{}`", p.display())).collect();
                format!("input `{}` from {}", g.node(n).name, paths.join(", "))
            })
            .collect();
        input_err(format!("{m} ({})", from.join("; ")))
    })?;
    let conc = shape::concretize(g, &b).map_err(|d| model.fail(&d))?;
    driver::check_memory(g, &conc, n0)?;
    let tensors = read_inputs(&files, probed)?;

    let threads = a.threads.unwrap_or_else(convc_interp::default_threads);
    let per_image: Vec<(usize, usize)> = tensors
        .iter()
        .map(|t| (t.shape()[2], t.shape()[3]))
        .collect();
    let engine = Engine::new(g, &per_image, a.backend, threads, true)?;
    let t1 = Instant::now();
    let outs = engine.run(&tensors)?;
    if a.verbose {
        driver::note(&timing_line(
            passes_time,
            &engine,
            t1.elapsed(),
            a.budget.is_some(),
        ));
    }

    write_outputs(a.outputs, &out_names, &outs, !batched)
}

/// A folder, glob or `@LIST` run: `many` is that word, the only input.
fn run_many(a: &RunArgs<'_>, many: &str) -> Result<(), Failure> {
    if a.budget.is_some() {
        return Err(Failure::Usage(
            "error: --budget runs one set of inputs, not a folder, glob or @LIST: run `convc explain MODEL --budget E` to see the network it chooses".into(),
        ));
    }
    if a.inputs.len() > 1 {
        return Err(Failure::Usage(format!(
            "error: `{many}` names many files: give it as the only input (one folder, glob pattern or @LIST)"
        )));
    }
    batch::run(batch::BatchArgs {
        model: a.model,
        source: many,
        outputs: a.outputs,
        format: a.format,
        backend: a.backend,
        passes: a.passes,
        threads: a.threads,
        size: a.size,
        verbose: a.verbose,
    })
}

/// Prints a summary of each output (no `-o`), or encodes every output first and then writes
/// them (a failure to encode leaves no file behind).
fn write_outputs(
    outputs: &[PathBuf],
    out_names: &[String],
    outs: &[convc_tensor::Tensor],
    squeeze: bool,
) -> Result<(), Failure> {
    if outputs.is_empty() {
        for (i, t) in outs.iter().enumerate() {
            driver::out(&data::summary(&out_names[i], t, squeeze))?;
        }
        return Ok(());
    }
    // Encode everything first, then write: a failure to encode leaves no file behind.
    let mut encoded = Vec::new();
    for (path, t) in outputs.iter().zip(outs) {
        encoded.push((path, data::encode_output(path, t, squeeze)?));
    }
    for (path, bytes) in encoded {
        convc_tensor::write::write_atomic(path, &bytes).map_err(|e| {
            input_err(format!(
                "cannot write `{}`: {}",
                path.display(),
                convc_ir::lower::io_reason(&e)
            ))
        })?;
        let t = &outs[outputs.iter().position(|p| p == path).unwrap_or(0)];
        let shown = if squeeze {
            fmt_shape(&t.shape()[1..])
        } else {
            fmt_shape(t.shape())
        };
        eprintln!("wrote {} {}", path.display(), shown);
    }
    Ok(())
}

/// The `-v` line: `time: passes P ms, code generation C ms, run R ms (backend B)`.
fn timing_line(passes: Duration, engine: &Engine<'_>, run: Duration, budget: bool) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "time: passes {:.2} ms{}, code generation {:.2} ms, run {:.2} ms (backend {})\n",
        ms(passes),
        if budget {
            " (with the budget's measurements)"
        } else {
            ""
        },
        ms(engine.compile_time()),
        ms(run),
        engine.backend_name()
    )
}

/// Replaces the model's graph by the cheapest network within output error `e` on seeded
/// random samples of the inputs' size (the sizes read from the first file of each input),
/// reporting the choice on stderr.
fn apply_budget(
    model: &mut driver::Model,
    files: &[Vec<PathBuf>],
    e: f64,
    passes: &PassOpts,
) -> Result<(), Failure> {
    if passes.no_opt || passes.passes.is_some() || passes.tolerance.is_some() {
        return Err(Failure::Usage(
            "error: --budget chooses the passes' rewrites itself: leave out --no-opt, --passes and --tolerance".into(),
        ));
    }
    if let Some(first) = files.first().and_then(|f| f.first())
        && model
            .graph
            .inputs
            .iter()
            .any(|&n| model.graph.node(n).shape.hw().is_none())
    {
        let (probe, _) = probe_or_read(first)?;
        driver::bind_size(model, Some((probe.shape[2], probe.shape[3])))?;
    }
    let args = crate::budget::SampleArgs {
        data: Vec::new(),
        samples: 2,
    };
    let samples = crate::budget::samples(model, &args)?;
    crate::budget::check_shapes(model, &samples)?;
    let mut acts = crate::budget::Activations::of(&model.graph, &samples)?;
    let plan = crate::budget::plan(model, &samples, &mut acts, e)?;
    driver::note(&convc_passes::budget::render_budget(&plan, &samples.desc));
    model.graph = plan.graph;
    Ok(())
}

/// The shape a file will load as: from its header, or else (a header that does not settle
/// it, usually a bad file) by reading it, which reports what is wrong.
fn probe_or_read(p: &Path) -> Result<(Probe, Option<Loaded>), Failure> {
    match data::probe_input(p) {
        Some(pr) => Ok((pr, None)),
        None => {
            let l = data::read_input(p)?;
            Ok((Probe::of(&l), Some(l)))
        }
    }
}

/// Checks the files of one network input against it, from their shapes: channels, equal
/// shapes within a batch, and the input's fixed sizes.
pub fn check_input_shapes(
    node: &convc_ir::Node,
    files: &[PathBuf],
    shapes: &[[usize; 4]],
) -> Result<(), Failure> {
    for (p, s) in files.iter().zip(shapes) {
        let c = s[1];
        if c != node.shape.c {
            return Err(input_err(format!(
                "`{}` has {c} channel{}, but input `{}` is {}",
                p.display(),
                if c == 1 { "" } else { "s" },
                node.name,
                node.shape
            )));
        }
    }
    for (p, s) in files.iter().zip(shapes).skip(1) {
        if s[1..] != shapes[0][1..] {
            return Err(input_err(format!(
                "`{}` holds images of shape {} but `{}` holds {}: a batch needs equal shapes",
                p.display(),
                fmt_shape(&s[1..]),
                files[0].display(),
                fmt_shape(&shapes[0][1..])
            )));
        }
    }
    for (d, v, axis) in [
        (&node.shape.h, shapes[0][2], "height"),
        (&node.shape.w, shapes[0][3], "width"),
    ] {
        if let Some(k) = d.known().filter(|&k| k as usize != v) {
            return Err(input_err(format!(
                "`{}` has {axis} {v}, but input `{}` is {} (expects {axis} {k})",
                files[0].display(),
                node.name,
                node.shape
            )));
        }
    }
    Ok(())
}

/// Reads every input file not read yet, checks it still has the shape its header gave, and
/// stacks each input's files into one batch.
fn read_inputs(
    files: &[Vec<PathBuf>],
    probed: Vec<Vec<(Probe, Option<Loaded>)>>,
) -> Result<Vec<convc_tensor::Tensor>, Failure> {
    let mut tensors = Vec::new();
    for (paths, parts) in files.iter().zip(probed) {
        let mut loaded = Vec::new();
        for (p, (probe, early)) in paths.iter().zip(parts) {
            let l = match early {
                Some(l) => l,
                None => data::read_input(p)?,
            };
            if Probe::of(&l) != probe {
                return Err(input_err(format!(
                    "`{}` changed while convc was reading it: run again",
                    p.display()
                )));
            }
            loaded.push((p.clone(), l));
        }
        tensors.push(data::stack(loaded)?.tensor);
    }
    Ok(tensors)
}

/// Assigns input files to network inputs: plain paths form the batch of a one-input network;
/// `NAME=PATH` names the input.
fn assign_inputs(model: &driver::Model, words: &[String]) -> Result<Vec<Vec<PathBuf>>, Failure> {
    let g = &model.graph;
    let names: Vec<String> = g.inputs.iter().map(|&n| g.node(n).name.clone()).collect();
    let mut files: Vec<Vec<PathBuf>> = vec![Vec::new(); names.len()];
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    for w in words {
        let named = w.split_once('=').filter(|(n, _)| index.contains_key(n));
        match named {
            Some((n, p)) => files[index[n]].push(PathBuf::from(p)),
            None if names.len() == 1 && !Path::new(w).exists() && w.contains('=') => {
                let n = w.split_once('=').map_or("", |p| p.0);
                return Err(Failure::Usage(format!(
                    "error: the network has no input named `{n}`; its input is `{}`",
                    names[0]
                )));
            }
            None if names.len() == 1 => files[0].push(PathBuf::from(w)),
            None => {
                return Err(Failure::Usage(format!(
                    "error: `{w}`: the network has {} inputs ({}): give each as NAME=PATH",
                    names.len(),
                    names.join(", ")
                )));
            }
        }
    }
    for (i, f) in files.iter().enumerate() {
        if f.is_empty() {
            let how = if names.len() == 1 {
                "an image or array".to_string()
            } else {
                format!("{}=PATH", names[i])
            };
            return Err(Failure::Usage(format!(
                "error: no data for input `{}`: give {how}",
                names[i]
            )));
        }
    }
    if names.len() > 1 && files.iter().any(|f| f.len() > 1) {
        return Err(Failure::Usage(
            "error: with several inputs, give each input once (a batch comes as [N, C, H, W] .npy arrays)".into(),
        ));
    }
    Ok(files)
}

/// Refuses an output path that is the spec or one of the input files.
fn protect_inputs(
    model: &Path,
    files: &[Vec<PathBuf>],
    outputs: &[PathBuf],
) -> Result<(), Failure> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let mut protected: Vec<PathBuf> = files.iter().flatten().filter_map(|p| canon(p)).collect();
    protected.extend(canon(model));
    for o in outputs {
        if let Some(c) = canon(o)
            && protected.contains(&c)
        {
            return Err(Failure::Usage(format!(
                "error: output `{}` is also an input: convc never overwrites its inputs",
                o.display()
            )));
        }
    }
    let mut seen = Vec::new();
    for o in outputs {
        if seen.contains(&o) {
            return Err(Failure::Usage(format!(
                "error: `{}` is given twice as an output",
                o.display()
            )));
        }
        seen.push(o);
    }
    Ok(())
}
