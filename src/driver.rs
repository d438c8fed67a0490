//! Shared driver code: reading a spec, turning front-end diagnostics into rendered messages,
//! binding `--size`, and the error type that decides the exit code.

use std::fmt;
use std::path::{Path, PathBuf};

use convc_ir::{Bindings, Dim, Graph, shape};
use convc_lang::{Diagnostic, Span};

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// A bad spec or bad data: exit 1. The text is complete (rendered diagnostics included).
    Input(String),
    /// Wrong command-line usage: exit 2.
    Usage(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Input(_) => 1,
            Failure::Usage(_) => 2,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Input(s) | Failure::Usage(s) => f.write_str(s),
        }
    }
}

/// Shorthand for a data/spec failure with a plain `error: ...` message.
pub fn input_err(msg: impl fmt::Display) -> Failure {
    Failure::Input(format!("error: {msg}"))
}

/// A loaded spec: its path as the user wrote it, its text, and the graph.
pub struct Model {
    /// The path as given on the command line (used in diagnostics).
    pub path: PathBuf,
    /// The source text.
    pub src: String,
    /// The lowered, validated graph.
    pub graph: Graph,
}

impl Model {
    /// Renders a diagnostic located in this spec.
    pub fn render(&self, d: &Diagnostic) -> String {
        convc_lang::render(&self.path.display().to_string(), &self.src, d)
    }
    /// A failure from a diagnostic in this spec.
    pub fn fail(&self, d: &Diagnostic) -> Failure {
        Failure::Input(self.render(d))
    }
}

/// Reads, parses and lowers a spec (loading every weight), or renders why not.
pub fn load_model(path: &Path) -> Result<Model, Failure> {
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(input_err(format!(
            "`{shown}` is a directory, not a .conv file"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        input_err(format!(
            "cannot read `{shown}`: {}",
            convc_ir::lower::io_reason(&e)
        ))
    })?;
    let src = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            // Byte offsets up to `at` are the same in the lossy text.
            let d = Diagnostic::error(Span::new(at, at + 1), "the file is not valid UTF-8 text");
            return Err(Failure::Input(convc_lang::render(&shown, &lossy, &d)));
        }
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut model = Model {
        path: path.to_path_buf(),
        src,
        graph: Graph::new(),
    };
    match convc_ir::compile(&model.src, &base) {
        Ok(g) => model.graph = g,
        Err(d) => return Err(model.fail(&d)),
    }
    Ok(model)
}

/// Parses `HxW` (or a bare `N` for `NxN`).
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let parse = |p: &str| -> Result<usize, String> {
        match p.trim().parse::<usize>() {
            Ok(v) if (1..=1 << 24).contains(&v) => Ok(v),
            _ => Err(format!(
                "`{s}` is not a size: write HxW with whole numbers from 1 to 16777216, e.g. 224x224"
            )),
        }
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => {
            let v = parse(s)?;
            Ok((v, v))
        }
    }
}

/// Binds `--size HxW` to the symbolic sizes of every input (H to each symbolic height, W to
/// each symbolic width) and substitutes them into every shape, re-checking that no layer's
/// output becomes empty.
pub fn bind_size(model: &mut Model, size: Option<(usize, usize)>) -> Result<(), Failure> {
    let Some((h, w)) = size else { return Ok(()) };
    let g = &mut model.graph;
    let mut b = Bindings::new();
    for &n in &g.inputs {
        let node = g.node(n);
        for (d, v) in [(&node.shape.h, h), (&node.shape.w, w)] {
            if let Dim::Sym(s) = d {
                if let Some(&old) = b.get(s)
                    && old != v as u64
                {
                    return Err(Failure::Usage(format!(
                        "error: --size {h}x{w} gives `{s}` two values ({old} and {v}): the spec uses `{s}` for both height and width"
                    )));
                }
                b.insert(s.clone(), v as u64);
            }
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    let nodes: Vec<_> = g.g.node_indices().collect();
    for n in nodes {
        let s = g.node(n).shape.substitute(&b);
        g.node_mut(n).shape = s;
    }
    if let Err(d) = shape::validate(&model.graph) {
        return Err(model.fail(&d));
    }
    Ok(())
}

/// The pass pipeline selected by the options (`--no-opt` and `--passes none`: empty).
pub fn pass_manager(
    opts: &crate::PassOpts,
) -> Result<(convc_passes::PassManager, convc_passes::PassContext), Failure> {
    let usage = |e: convc_passes::PassError| Failure::Usage(format!("error: {e}"));
    let mut cx = convc_passes::PassContext::default();
    if let Some(t) = opts.tolerance {
        cx = convc_passes::PassContext::with_tolerance(t);
        cx.check().map_err(usage)?;
    }
    let pm = match &opts.passes {
        _ if opts.no_opt => convc_passes::PassManager::none(),
        Some(list) => convc_passes::PassManager::from_names(list).map_err(usage)?,
        None => convc_passes::PassManager::default_pipeline(),
    };
    Ok((pm, cx))
}

/// Checks the pass options without running anything (so usage errors come before file errors).
pub fn selected_passes(opts: &crate::PassOpts) -> Result<(), Failure> {
    pass_manager(opts).map(|_| ())
}

/// Runs the selected passes on the model's graph, reporting every fold and rewrite on stderr.
/// `after_each` is called with each pass's name and the graph after it (`--print-after-all`).
pub fn run_passes(
    model: &mut Model,
    opts: &crate::PassOpts,
    mut after_each: impl FnMut(&str, &Graph),
) -> Result<(), Failure> {
    let (pm, cx) = pass_manager(opts)?;
    let result = pm.run_with(&mut model.graph, &cx, |report, g| {
        // The fuse placeholder's note is not news on every run.
        if report.pass != "fuse" {
            eprint!("{report}");
        }
        after_each(report.pass, g);
    });
    match result {
        Ok(_) => Ok(()),
        Err(convc_passes::PassError::Invalid { pass, diagnostic }) => Err(Failure::Input(format!(
            "internal error: the graph is invalid after pass `{pass}` (please report this):\n{}",
            model.render(&diagnostic)
        ))),
        Err(e) => Err(Failure::Usage(format!("error: {e}"))),
    }
}

/// The most bytes a run may hold in tensors, from `CONVC_MAX_MEMORY` (bytes, or with a `K`,
/// `M`, `G` suffix); the default is 16G.
pub fn memory_limit() -> u64 {
    let parse = |s: &str| -> Option<u64> {
        let s = s.trim();
        let (num, mul) = match s.chars().last()? {
            'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
            'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
            'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
            _ => (s, 1),
        };
        num.parse::<u64>().ok()?.checked_mul(mul)
    };
    std::env::var("CONVC_MAX_MEMORY")
        .ok()
        .as_deref()
        .and_then(parse)
        .unwrap_or(16 << 30)
}

fn gib(b: u128) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Refuses a run whose tensors would need more memory than the limit, before allocating.
pub fn check_memory(g: &Graph, conc: &shape::Concrete, batch: usize) -> Result<(), Failure> {
    let limit = memory_limit() as u128;
    let mut total: u128 = 0;
    let mut largest: (u128, String) = (0, String::new());
    for n in g.g.node_indices() {
        let [c, h, w] = conc.get(n);
        let bytes = c as u128 * h as u128 * w as u128 * batch as u128 * 4;
        total += bytes;
        if bytes > largest.0 {
            largest = (bytes, g.node(n).name.clone());
        }
    }
    if largest.0 > limit || total > limit.saturating_mul(4) {
        return Err(input_err(format!(
            "this run would need {} for `{}` alone ({} for all tensors), more than the limit of {}: \
             use smaller inputs, or raise the limit with CONVC_MAX_MEMORY=SIZE (e.g. 64G)",
            gib(largest.0),
            largest.1,
            gib(total),
            gib(limit)
        )));
    }
    Ok(())
}
