//! `convc import`: an ONNX model as a readable `.conv` spec plus a safetensors file of its
//! weights, beside the spec and named after it (`net.conv` + `net.safetensors`).

use std::path::{Path, PathBuf};

use crate::driver::{self, Failure};

/// Runs `convc import MODEL -o OUT.conv`.
pub fn run(path: &Path, out: &Path) -> Result<(), Failure> {
    if out.extension().is_none_or(|e| e != "conv") || out.file_stem().is_none() {
        return Err(Failure::Usage(format!(
            "error: `-o {}` must name a .conv file",
            out.display()
        )));
    }
    let model = driver::load_model(path)?;
    let weights: PathBuf = out.with_extension("safetensors");
    let weights_name = weights
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let header = format!(
        "Imported from {source} by `convc import`; parameters in {weights_name}.\n\
         Layers are named after the ONNX values they compute."
    );
    let e =
        convc_onnx::emit::emit(&model.graph, &weights_name, &header).map_err(driver::input_err)?;
    let write = |p: &Path, bytes: &[u8]| {
        convc_tensor::write::write_atomic(p, bytes).map_err(|err| {
            driver::input_err(format!(
                "cannot write `{}`: {}",
                p.display(),
                convc_ir::lower::io_reason(&err)
            ))
        })
    };
    write(&weights, &e.weights)?;
    write(out, e.conv.as_bytes())?;
    driver::note(&format!(
        "wrote {} and {}\n",
        out.display(),
        weights.display()
    ));
    Ok(())
}
