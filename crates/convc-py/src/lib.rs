//! `import convc`: compile a `.conv` or `.onnx` network once, then call it on numpy arrays.
//!
//! ```python
//! import convc, numpy as np
//! net = convc.compile("specs/examples/classic_standard.conv", threads=1)
//! y = net(np.zeros((3, 128, 128), np.float32))   # -> [8, 128, 128], owned by numpy
//! ```
//!
//! Loading, checking and every message are the command line's own code (`src/driver.rs`,
//! `src/data.rs` and the report of `src/commands/check.rs` are compiled into this crate too),
//! so a bad file raises [`ConvcError`] with exactly the text `convc` prints on stderr.

mod net;

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub use net::Net;

/// The command line's driver: loading a spec, rendering diagnostics, pass selection, memory
/// limit (compiled here unchanged; some of it only the command line uses).
#[allow(dead_code)]
#[path = "../../../src/driver.rs"]
mod driver;

/// The command line's input files: `.png` and `.npy` read as `convc run` reads them.
#[allow(dead_code)]
#[path = "../../../src/data.rs"]
mod data;

/// The command line's `check` report.
#[allow(dead_code)]
#[path = "../../../src/commands/check.rs"]
mod check_cmd;

/// The pass options the driver reads (the command line's `PassOpts`, without clap).
#[derive(Debug, Clone, Default)]
pub struct PassOpts {
    /// Run the graph as written.
    pub no_opt: bool,
    /// Run exactly these passes (unused here: `opt` chooses all or none).
    pub passes: Option<Vec<String>>,
    /// Truncation tolerance of `decompose`.
    pub tolerance: Option<f64>,
}

create_exception!(
    convc,
    ConvcError,
    PyValueError,
    "A bad network file, bad data or bad options; the message is the command line's."
);

/// Turns a driver failure into a `ConvcError` with the command line's text.
pub(crate) fn to_py(f: driver::Failure) -> PyErr {
    ConvcError::new_err(f.to_string().trim_end().to_string())
}

/// A `ConvcError` with the command line's plain `error: ...` form.
pub(crate) fn py_err(msg: impl std::fmt::Display) -> PyErr {
    ConvcError::new_err(format!("error: {msg}"))
}

/// `convc.compile(path, threads=None, opt=True, tolerance=None)`: loads, checks and optimises
/// the network and compiles it for its input sizes (symbolic sizes: at the first call with
/// each new size). `threads`: threads per call (default: all cores).
#[pyfunction]
#[pyo3(signature = (path, threads=None, opt=true, tolerance=None))]
fn compile(
    py: Python<'_>,
    path: PathBuf,
    threads: Option<usize>,
    opt: bool,
    tolerance: Option<f64>,
) -> PyResult<Net> {
    let threads = match threads {
        None => convc_interp::default_threads(),
        Some(n @ 1..=1024) => n,
        Some(n) => {
            return Err(py_err(format!(
                "threads={n} is not a thread count: give a whole number from 1 to 1024"
            )));
        }
    };
    let opts = PassOpts {
        no_opt: !opt,
        passes: None,
        tolerance,
    };
    py.detach(|| Net::build(&path, threads, &opts))
        .map_err(to_py)
}

/// `convc.check(path)`: parses the network, infers every shape, loads every weight, and
/// returns the report of `convc check` (one row per layer); raises `ConvcError` if it is bad.
#[pyfunction]
fn check(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.detach(|| driver::load_model(&path).map(|m| check_cmd::report(&m)))
        .map_err(to_py)
}

/// `convc.read_image(path)`: a `.png` or `.npy` file as `convc run` reads it (PNG samples
/// scaled to [0, 1], `[C, H, W]`; `.npy` float32 `[C, H, W]` or `[N, C, H, W]` as stored).
#[pyfunction]
fn read_image<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let loaded = py.detach(|| data::read_input(&path)).map_err(to_py)?;
    let t = loaded.tensor;
    let shape = if loaded.batched {
        t.shape().to_vec()
    } else {
        t.shape()[1..].to_vec()
    };
    let arr = t.into_data().into_pyarray(py);
    arr.reshape(shape)
}

/// The `convc` Python module.
#[pymodule(name = "convc")]
fn convc_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ConvcError", m.py().get_type::<ConvcError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Net>()?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(read_image, m)?)?;
    Ok(())
}
