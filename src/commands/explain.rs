//! `convc explain`: every conv's standard, asymmetric and depthwise-separable forms side by side;
//! with `--measure` or `--data` their errors on data too; with `--budget E` the cheapest
//! network whose output error stays within E; with `--plot DIR` the pictures.

use std::path::Path;

use crate::BudgetOpts;
use crate::budget::{self, Activations, SampleArgs};
use crate::driver::{self, Failure};

/// Everything `explain` was asked to do.
pub struct ExplainArgs<'a> {
    /// The spec.
    pub model: &'a Path,
    /// `--layer NAME`.
    pub layer: Option<&'a str>,
    /// `--size HxW`.
    pub size: Option<(usize, usize)>,
    /// `--budget`, `--data`, `--samples`.
    pub budget: &'a BudgetOpts,
    /// `--measure`.
    pub measure: bool,
    /// `--plot DIR`.
    pub plot: Option<&'a Path>,
    /// Time the networks of a budget with the JIT (not with `--no-time`).
    pub time: bool,
}

/// Runs `convc explain`.
pub fn run(a: ExplainArgs<'_>) -> Result<(), Failure> {
    let b = a.budget;
    let measure = a.measure || b.budget.is_some() || !b.data.is_empty();
    if let Some(dir) = a.plot
        && !dir.is_dir()
    {
        return Err(Failure::Usage(format!(
            "error: --plot {}: not an existing folder (create it first)",
            dir.display()
        )));
    }
    let mut model = driver::load_model(a.model)?;
    driver::bind_size(&mut model, a.size)?;
    if !measure && a.plot.is_none() {
        return plain(&model, a.layer);
    }
    let samples = budget::samples(
        &mut model,
        &SampleArgs {
            data: b.data.clone(),
            samples: b.samples,
        },
    )?;
    budget::check_shapes(&model, &samples)?;
    let mut acts = if measure {
        Some(Activations::of(&model.graph, &samples)?)
    } else {
        None
    };
    let ex = convc_passes::explain_with(&model.graph, a.layer, |g, n| {
        acts.as_mut().and_then(|x| x.stats(g, n))
    })
    .map_err(|e| Failure::Usage(format!("error: {e}")))?;
    let mut text = if ex.is_empty() {
        format!(
            "{}: no convolution with a kernel larger than 1x1 to explain\n",
            model.path.display()
        )
    } else {
        convc_passes::render_explanations(&ex)
    };
    if measure {
        text.push_str(&format!("\nerrors on data measured on {}\n", samples.desc));
    }
    let plan = match (b.budget, acts.as_mut()) {
        (Some(e), Some(acts)) => Some(budget::plan(&model, &samples, acts, e)?),
        _ => None,
    };
    if let Some(p) = &plan {
        text.push('\n');
        text.push_str(&convc_passes::budget::render_budget(p, &samples.desc));
        if a.time {
            text.push_str(&budget::time_line(&model, p, &samples)?);
        }
    }
    if let Some(dir) = a.plot {
        let written = crate::plot::write_all(dir, &model, plan.as_ref(), acts.as_mut())?;
        text.push_str(&format!(
            "\nplots: {written} files written to {}\n",
            dir.display()
        ));
    }
    driver::out(&text)
}

/// `explain` without data: the analysis of the weights alone (the contract's output).
fn plain(model: &driver::Model, layer: Option<&str>) -> Result<(), Failure> {
    let ex = convc_passes::explain(&model.graph, layer)
        .map_err(|e| Failure::Usage(format!("error: {e}")))?;
    if ex.is_empty() {
        return driver::out(&format!(
            "{}: no convolution with a kernel larger than 1x1 to explain\n",
            model.path.display()
        ));
    }
    driver::out(&convc_passes::render_explanations(&ex))
}
