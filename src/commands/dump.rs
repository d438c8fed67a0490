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
    let requested: Vec<&str> = match &passes.passes {
        _ if passes.no_opt => Vec::new(),
        Some(list) => list.iter().map(String::as_str).filter(|p| *p != "none").collect(),
        None => PASS_NAMES.to_vec(),
    };
    if !requested.is_empty() {
        eprintln!(
            "note: the passes {} do not exist yet in this build; the graph is shown as written",
            requested.join(", ")
        );
    }
    if print_after_all {
        println!("; after parse");
    }
    let out = match format {
        Format::Text => print::text(g),
        Format::Dot => print::dot(g),
        Format::Json => format!("{:#}\n", print::json(g)),
    };
    print!("{out}");
    Ok(())
}
