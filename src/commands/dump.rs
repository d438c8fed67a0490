//! `convc dump`: the graph IR after the passes, as text, Graphviz dot or JSON.

use std::path::Path;

use convc_ir::print;

use crate::driver::{self, Failure};
use crate::{Format, PassOpts};

/// The passes the contract names, in default-pipeline order.
pub const PASS_NAMES: &[&str] = &["fold-batchnorm", "decompose", "fuse", "dce"];

/// Runs `convc dump`.
pub fn run(path: &Path, passes: &PassOpts, print_after_all: bool, format: Format, size: Option<(usize, usize)>) -> Result<(), Failure> {
    if let Some(list) = &passes.passes {
        for p in list {
            if p != "none" && !PASS_NAMES.contains(&p.as_str()) {
                return Err(Failure::Usage(format!(
                    "error: unknown pass `{p}`: the passes are {} (or `none`)",
                    PASS_NAMES.join(", ")
                )));
            }
        }
    }
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
    let g = &model.graph;
    let _ = print_after_all;
    let out = match format {
        Format::Text => print::text(g),
        Format::Dot => print::dot(g),
        Format::Json => format!("{:#}\n", print::json(g)),
    };
    print!("{out}");
    Ok(())
}
