//! `convc export`: the optimised graph (the passes' result: batchnorms folded, convolutions
//! decomposed; not the JIT's fusion) as a standard ONNX model.

use std::path::Path;

use crate::driver::{self, Failure};

/// Runs `convc export MODEL -o OUT.onnx [--size HxW] [--no-opt | --passes ...] [--tolerance T]`.
pub fn run(
    path: &Path,
    out: &Path,
    passes: &crate::PassOpts,
    size: Option<(usize, usize)>,
) -> Result<(), Failure> {
    if out.extension().is_none_or(|e| e != "onnx") {
        return Err(Failure::Usage(format!(
            "error: `-o {}` must name a .onnx file",
            out.display()
        )));
    }
    driver::selected_passes(passes)?;
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
    driver::run_passes(&mut model, passes, |_, _| {})?;
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
