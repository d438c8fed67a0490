//! `convc explain`: every conv's standard, asymmetric and depthwise-separable forms side by side.

use std::path::Path;

use crate::driver::{self, Failure};

/// Runs `convc explain`.
pub fn run(path: &Path, layer: Option<&str>, size: Option<(usize, usize)>) -> Result<(), Failure> {
    let mut model = driver::load_model(path)?;
    driver::bind_size(&mut model, size)?;
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
