//! `convc dump`: the graph IR after the passes, as text, Graphviz dot or JSON; the JIT's plan
//! or its machine code.

use std::path::Path;

use convc_ir::print;

use crate::driver::{self, Failure};
use crate::{Format, PassOpts};

/// Runs `convc dump`.
pub fn run(
    path: &Path,
    passes: &PassOpts,
    print_after_all: bool,
    format: Format,
    size: Option<(usize, usize)>,
) -> Result<(), Failure> {
    driver::selected_passes(passes)?;
    if format == Format::Svg && print_after_all {
        return Err(Failure::Usage(
            "error: --format svg draws one graph: leave out --print-after-all (or use --format dot)".into(),
        ));
    }
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
    if matches!(format, Format::Asm | Format::Plan) {
        driver::run_passes(&mut model, passes, |_, _| {})?;
        return jit_dump(&model, format == Format::Plan);
    }
    let render = |g: &convc_ir::Graph| match format {
        Format::Text | Format::Asm | Format::Plan => print::text(g),
        Format::Dot | Format::Svg => print::dot(g),
        Format::Json => format!("{:#}\n", print::json(g)),
    };
    if print_after_all && format == Format::Json {
        // One JSON document: the graph after each stage.
        let mut stages =
            vec![serde_json::json!({"after": "parse", "graph": print::json(&model.graph)})];
        driver::run_passes(&mut model, passes, |pass, g| {
            stages.push(serde_json::json!({"after": pass, "graph": print::json(g)}));
        })?;
        return driver::out(&format!("{:#}\n", serde_json::Value::Array(stages)));
    }
    if print_after_all {
        driver::out(&format!("; after parse\n{}", render(&model.graph)))?;
        let mut failed = None;
        driver::run_passes(&mut model, passes, |pass, g| {
            if failed.is_none() {
                failed = driver::out(&format!("; after {pass}\n{}", render(g))).err();
            }
        })?;
        return failed.map_or(Ok(()), Err);
    }
    driver::run_passes(&mut model, passes, |_, _| {})?;
    if format == Format::Svg {
        return driver::out(&graphviz_svg(&render(&model.graph))?);
    }
    driver::out(&render(&model.graph))
}

/// Renders Graphviz `dot` text as SVG with the `dot` program found on `PATH`; an error saying
/// so when Graphviz is not installed.
fn graphviz_svg(dot_text: &str) -> Result<String, Failure> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(driver::input_err(
                "--format svg draws the graph with Graphviz's `dot` program, which is not installed (not found on PATH): install Graphviz (e.g. `apt-get install graphviz`), or write `--format dot` and render it elsewhere",
            ));
        }
        Err(e) => {
            return Err(driver::input_err(format!(
                "cannot start Graphviz's `dot`: {}",
                convc_ir::lower::io_reason(&e)
            )));
        }
    };
    let fed = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(dot_text.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| driver::input_err(format!("Graphviz's `dot` failed: {e}")))?;
    if !out.status.success() || !matches!(fed, Some(Ok(()))) {
        return Err(driver::input_err(format!(
            "Graphviz's `dot` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| driver::input_err("Graphviz's `dot` wrote something that is not text"))
}

/// Compiles the graph and prints its plan, or every kernel's machine code with the steps that
/// use it.
fn jit_dump(model: &driver::Model, plan: bool) -> Result<(), Failure> {
    let g = &model.graph;
    let mut sizes = Vec::new();
    for &n in &g.inputs {
        let node = g.node(n);
        sizes.push(node.shape.hw().ok_or_else(|| {
            Failure::Usage(format!(
                "error: input `{}` has symbolic sizes {}: --format {} compiles for known sizes, give --size HxW",
                node.name,
                node.shape,
                if plan { "plan" } else { "asm" }
            ))
        })?);
    }
    let opts = convc_jit::JitOptions {
        threads: 1,
        verify: true,
        emit_asm: true,
        isa: crate::engine::isa_from_env()?,
        conv_algo: crate::engine::algo_from_env()?,
        ..Default::default()
    };
    let net = convc_jit::compile(g, &sizes, &opts).map_err(driver::input_err)?;
    if plan {
        return driver::out(net.plan_text());
    }
    for step in net.steps() {
        driver::out(&format!(
            "; step {} -> kernel {} ({} MACs)\n",
            step.name, step.kernel, step.macs
        ))?;
    }
    for (name, code) in net.disassembly() {
        driver::out(&format!("\n; kernel {name}\n{code}\n"))?;
    }
    Ok(())
}
