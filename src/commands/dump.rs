//! `convc dump`: the graph IR after the passes, as text, Graphviz dot or JSON.

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
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
    if print_after_all {
        println!("; after parse");
    }
    driver::run_passes(&mut model, passes, print_after_all)?;
    let g = &model.graph;
    let out = match format {
        Format::Text => print::text(g),
        Format::Dot => print::dot(g),
        Format::Json => format!("{:#}\n", print::json(g)),
    };
    print!("{out}");
    Ok(())
}
