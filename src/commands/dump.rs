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
    let render = |g: &convc_ir::Graph| match format {
        Format::Text => print::text(g),
        Format::Dot => print::dot(g),
        Format::Json => format!("{:#}\n", print::json(g)),
    };
    if print_after_all && format == Format::Json {
        // One JSON document: the graph after each stage.
        let mut stages =
            vec![serde_json::json!({"after": "parse", "graph": print::json(&model.graph)})];
        driver::run_passes(&mut model, passes, |pass, g| {
            stages.push(serde_json::json!({"after": pass, "graph": print::json(g)}));
        })?;
        println!("{:#}", serde_json::Value::Array(stages));
        return Ok(());
    }
    if print_after_all {
        print!("; after parse\n{}", render(&model.graph));
        driver::run_passes(&mut model, passes, |pass, g| {
            print!("; after {pass}\n{}", render(g))
        })?;
        return Ok(());
    }
    driver::run_passes(&mut model, passes, |_, _| {})?;
    print!("{}", render(&model.graph));
    Ok(())
}
