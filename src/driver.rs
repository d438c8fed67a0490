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
    /// Stopped by Ctrl-C (or SIGTERM) after finishing what was under way: exit 130.
    Interrupted(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Input(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Interrupted(_) => 130,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Input(s) | Failure::Usage(s) | Failure::Interrupted(s) => f.write_str(s),
        }
    }
}

/// Shorthand for a data/spec failure with a plain `error: ...` message.
pub fn input_err(msg: impl fmt::Display) -> Failure {
    Failure::Input(format!("error: {msg}"))
}

/// Writes command output to stdout. When the reader has gone away (`convc dump ... | head`)
/// the program ends quietly with exit 0, as Unix tools do; another write error (a full disk)
/// is a failure. (`print!` would panic in both cases.)
pub fn out(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(input_err(format!(
            "cannot write the output: {}",
            convc_ir::lower::io_reason(&e)
        ))),
    }
}

/// Writes a note or a message to stderr; a failure to write is ignored (there is nowhere left
/// to report it), never a panic.
pub fn note(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A loaded spec: its path as the user wrote it, its text, and the graph.
pub struct Model {
    /// The path as given on the command line (used in diagnostics).
    pub path: PathBuf,
    /// The source text.
    pub src: String,
    /// The lowered, validated graph.
    pub graph: Graph,
    /// True for an ONNX model: there is no source text, so messages name the file only.
    pub onnx: bool,
}

impl Model {
    /// Renders a diagnostic located in this spec.
    pub fn render(&self, d: &Diagnostic) -> String {
        if self.onnx {
            let mut s = format!("{}: error: {}\n", self.path.display(), d.message);
            for n in &d.notes {
                s.push_str(&format!("  = note: {n}\n"));
            }
            return s;
        }
        convc_lang::render(&self.path.display().to_string(), &self.src, d)
    }
    /// A failure from a diagnostic in this spec.
    pub fn fail(&self, d: &Diagnostic) -> Failure {
        Failure::Input(self.render(d))
    }
}

/// The largest `.conv` file read. Parsing takes about 40 bytes of memory per byte of a long
/// literal list, so this bounds the parser's memory to about 1.3 GiB; big weights belong in
/// `.npy` or safetensors files.
pub const MAX_SPEC_BYTES: u64 = 32 << 20;

/// Reads, parses and lowers a spec (loading every weight), or renders why not.
pub fn load_model(path: &Path) -> Result<Model, Failure> {
    use convc_tensor::read::{ReadError, read_limited};
    let shown = path.display().to_string();
    let limit = memory_limit()?;
    if is_onnx(path) {
        return load_onnx(path, limit);
    }
    let bytes = match read_limited(path, MAX_SPEC_BYTES) {
        Ok(b) => b,
        Err(ReadError::Directory) => {
            return Err(input_err(format!(
                "`{shown}` is a directory, not a .conv file"
            )));
        }
        Err(e @ ReadError::TooLarge { .. }) => {
            return Err(input_err(format!(
                "cannot read `{shown}`: {e} for a .conv file (put big weights in .npy or safetensors files)"
            )));
        }
        Err(e) => return Err(input_err(format!("cannot read `{shown}`: {e}"))),
    };
    let src = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            // Byte offsets up to `at` are the same in the lossy text.
            let mut d =
                Diagnostic::error(Span::new(at, at + 1), "the file is not valid UTF-8 text");
            if e.as_bytes().starts_with(&[0xff, 0xfe]) || e.as_bytes().starts_with(&[0xfe, 0xff]) {
                d = d.with_note("the file starts with a UTF-16 byte order mark: save it as UTF-8");
            }
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
        onnx: false,
    };
    let limits = convc_ir::lower::Limits { max_memory: limit };
    match convc_ir::lower::compile_with(&model.src, &base, limits) {
        Ok(g) => model.graph = g,
        Err(d) => return Err(model.fail(&d)),
    }
    Ok(model)
}

/// True for an ONNX model: a `.onnx` name, or a file whose first byte is the protobuf tag
/// every exporter writes first (a `.conv` never starts with it).
pub fn is_onnx(path: &Path) -> bool {
    use std::io::Read;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        return true;
    }
    let mut first = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut first))
        .is_ok_and(|()| convc_onnx::looks_like_onnx(&first))
}

/// Reads and imports an ONNX model (the front end of every command for `.onnx` files).
fn load_onnx(path: &Path, limit: u64) -> Result<Model, Failure> {
    let limits = convc_ir::lower::Limits { max_memory: limit };
    match convc_onnx::load(path, limits) {
        Ok(graph) => Ok(Model {
            path: path.to_path_buf(),
            src: String::new(),
            graph,
            onnx: true,
        }),
        Err(e) => Err(Failure::Input(format!("{}: error: {e}", path.display()))),
    }
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
            note(&report.to_string());
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

/// Parses a memory size: bytes, or a whole number with a `K`, `M`, `G` or `T` suffix (powers
/// of 1024; case-insensitive; an optional `B` or `iB` after it, e.g. `16G`, `16GiB`, `512mb`).
pub fn parse_memory(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// The most bytes a run may hold in tensors (and a spec in parameters), from
/// `CONVC_MAX_MEMORY` (see [`parse_memory`]); the default is 16G. A value that is not a size
/// is a usage error.
pub fn memory_limit() -> Result<u64, Failure> {
    match std::env::var_os("CONVC_MAX_MEMORY") {
        None => Ok(convc_ir::lower::DEFAULT_MAX_MEMORY),
        Some(v) => match v.to_str().and_then(parse_memory) {
            Some(n) => Ok(n),
            None => Err(Failure::Usage(format!(
                "error: CONVC_MAX_MEMORY={} is not a memory size: write bytes or a number with K, M, G or T, e.g. CONVC_MAX_MEMORY=64G",
                v.to_string_lossy()
            ))),
        },
    }
}

/// Bytes in the largest unit that keeps the number at least 1: `16.0 GiB`, `3.0 PiB`.
pub fn human(b: u128) -> String {
    const UNITS: [&str; 7] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Refuses a run whose tensors would need more memory than the limit, before allocating.
///
/// The estimate follows how a run holds its tensors: the input batches (held by the caller,
/// and copied into the run), each layer's result from its computation to its last use, the
/// outputs to the end, and the encoded output files (about one more copy of the outputs).
/// The run is refused when the peak of that sum is more than the limit.
pub fn check_memory(g: &Graph, conc: &shape::Concrete, batch: usize) -> Result<(), Failure> {
    let limit = memory_limit()? as u128;
    let (peak, largest) = memory_estimate(g, conc, batch);
    if peak > limit {
        return Err(input_err(format!(
            "this run would need {} for `{}` alone and about {} at its peak, more than the limit of {}: \
             use smaller inputs, or raise the limit with CONVC_MAX_MEMORY=SIZE (e.g. 64G)",
            human(largest.0),
            largest.1,
            human(peak),
            human(limit)
        )));
    }
    Ok(())
}

/// The peak bytes of a run of `batch` images as [`check_memory`] counts them, and the largest
/// tensor (bytes, layer name).
pub fn memory_estimate(g: &Graph, conc: &shape::Concrete, batch: usize) -> (u128, (u128, String)) {
    let bytes = |n: convc_ir::NodeIndex| -> u128 {
        let [c, h, w] = conc.get(n);
        c as u128 * h as u128 * w as u128 * batch as u128 * 4
    };
    let mut largest: (u128, String) = (0, String::new());
    for n in g.g.node_indices() {
        let b = bytes(n);
        if b > largest.0 {
            largest = (b, g.node(n).name.clone());
        }
    }
    // Liveness as the interpreter has it: only what the outputs depend on is computed, and a
    // value is dropped after its last use unless it is an output.
    let order = g.topo_order();
    let bound = g.node_bound();
    let mut needed = vec![false; bound];
    let mut is_output = vec![false; bound];
    for &o in &g.outputs {
        if o.index() < bound {
            needed[o.index()] = true;
            is_output[o.index()] = true;
        }
    }
    for &n in order.iter().rev() {
        if needed[n.index()] {
            for o in g.operands(n) {
                needed[o.index()] = true;
            }
        }
    }
    let mut uses = vec![0usize; bound];
    for &n in &order {
        if needed[n.index()] {
            for o in g.operands(n) {
                uses[o.index()] += 1;
            }
        }
    }
    let held: u128 = g.inputs.iter().map(|&n| bytes(n)).sum();
    let mut live = held;
    let mut peak = live;
    for &n in &order {
        if !needed[n.index()] {
            continue;
        }
        live += bytes(n);
        peak = peak.max(live);
        for o in g.operands(n) {
            uses[o.index()] -= 1;
            if uses[o.index()] == 0 && !is_output[o.index()] {
                live -= bytes(o);
            }
        }
    }
    let outputs: u128 = g.outputs.iter().map(|&o| bytes(o)).sum();
    (peak.max(held + 2 * outputs), largest)
}

#[cfg(test)]
mod tests {
    use super::parse_memory;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("1024"), Some(1024));
        assert_eq!(parse_memory("16G"), Some(16 << 30));
        assert_eq!(parse_memory(" 64gib "), Some(64 << 30));
        assert_eq!(parse_memory("512MB"), Some(512 << 20));
        assert_eq!(parse_memory("2t"), Some(2 << 40));
        assert_eq!(parse_memory("8k"), Some(8 << 10));
        for bad in [
            "",
            "G",
            "lots",
            "-1G",
            "1.5G",
            "16 G",
            "99999999999999999999T",
        ] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }
}
