//! `convc export`: the optimised graph (the passes' result: batchnorms folded, convolutions
//! decomposed; not the JIT's fusion) as a standard ONNX model; with `--budget E`, the cheapest
//! network whose output error on the samples stays within `E` (as `explain --budget` chooses it).

use std::path::Path;

use crate::BudgetOpts;
use crate::budget::{self, Activations, SampleArgs};
use crate::driver::{self, Failure};

/// Everything `export` was asked to do.
pub struct ExportArgs<'a> {
    /// The spec or model.
    pub model: &'a Path,
    /// The `.onnx` file to write.
    pub out: &'a Path,
    /// Pass selection.
    pub passes: &'a crate::PassOpts,
    /// `--size HxW`.
    pub size: Option<(usize, usize)>,
    /// `--budget`, `--data`, `--samples`.
    pub budget: &'a BudgetOpts,
}

/// Runs `convc export MODEL -o OUT.onnx [--size HxW] [--no-opt | --passes ...] [--tolerance T]
/// [--budget E [--data FILE... | --samples N]]`.
pub fn run(a: ExportArgs<'_>) -> Result<(), Failure> {
    let (path, out, passes) = (a.model, a.out, a.passes);
    if out.extension().is_none_or(|e| e != "onnx") {
        return Err(Failure::Usage(format!(
            "error: `-o {}` must name a .onnx file",
            out.display()
        )));
    }
    driver::selected_passes(passes)?;
    check_budget_usage(a.budget, passes)?;
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, a.size)?;
    match a.budget.budget {
        Some(e) => apply_budget(&mut model, a.budget, e)?,
        None => driver::run_passes(&mut model, passes, |_, _| {})?,
    }
    let bytes = convc_onnx::export::export(&model.graph, env!("CARGO_PKG_VERSION"))
        .map_err(|e| driver::input_err(format!("{}: {}", path.display(), e.message)))?;
    convc_tensor::write::write_atomic(out, &bytes).map_err(|err| {
        driver::input_err(format!(
            "cannot write `{}`: {}",
            out.display(),
            convc_ir::lower::io_reason(&err)
        ))
    })?;
    let t = convc_ir::cost::totals(&model.graph);
    driver::note(&format!(
        "wrote {} ({} bytes, {} parameters, opset {})\n",
        out.display(),
        bytes.len(),
        t.params,
        convc_onnx::export::OPSET
    ));
    Ok(())
}

/// `--budget` chooses the rewrites itself (no pass options with it); `--data` needs it.
fn check_budget_usage(b: &BudgetOpts, passes: &crate::PassOpts) -> Result<(), Failure> {
    if b.budget.is_some()
        && (passes.no_opt || passes.passes.is_some() || passes.tolerance.is_some())
    {
        return Err(Failure::Usage(
            "error: --budget chooses the passes' rewrites itself: leave out --no-opt, --passes and --tolerance".into(),
        ));
    }
    if b.budget.is_none() && !b.data.is_empty() {
        return Err(Failure::Usage(
            "error: --data gives the samples of --budget: add --budget E".into(),
        ));
    }
    Ok(())
}

/// Replaces the model's graph by the cheapest network within output error `e` on the samples
/// (binding symbolic sizes as `explain --budget` does), reporting the choice on stderr.
fn apply_budget(model: &mut driver::Model, b: &BudgetOpts, e: f64) -> Result<(), Failure> {
    let samples = budget::samples(
        model,
        &SampleArgs {
            data: b.data.clone(),
            samples: b.samples,
        },
    )?;
    budget::check_shapes(model, &samples)?;
    let mut acts = Activations::of(&model.graph, &samples)?;
    let plan = budget::plan(model, &samples, &mut acts, e)?;
    driver::note(&convc_passes::budget::render_budget(&plan, &samples.desc));
    model.graph = plan.graph;
    Ok(())
}
