//! `convc.Net`: a checked, optimised network and its compiled machine code, called on numpy
//! arrays from any number of Python threads.

use std::path::Path;
use std::sync::{Arc, Mutex};

use convc_ir::{Dim, Graph, Shape, shape};
use convc_jit::{CompiledNet, Isa, JitOptions};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyString, PyTuple};

use crate::driver::{self, Failure, Model, input_err};
use crate::{PassOpts, py_err, to_py};

/// Compiled programs kept per distinct input size (a network with symbolic sizes compiles
/// once per size it is called with); the oldest goes first.
const MAX_COMPILED: usize = 8;

/// Per-image sizes `(H, W)` of every input, in input order.
type Sizes = Vec<(usize, usize)>;

/// The program for one set of input sizes, and the graph's concrete shapes for them.
struct Compiled {
    sizes: Sizes,
    shapes: Arc<shape::Concrete>,
    net: Arc<CompiledNet>,
}

/// A compiled network: `net(x)` runs it. Made by `convc.compile`.
#[pyclass(frozen, module = "convc")]
pub struct Net {
    /// The optimised graph, with the source text its diagnostics point into.
    model: Model,
    /// The graph as written (what `explain` analyses).
    source: Graph,
    /// Input names and per-image shapes.
    inputs: Vec<(String, Shape)>,
    /// Output names as written in the spec, and per-image shapes.
    outputs: Vec<(String, Shape)>,
    /// The passes' reports (what the command line prints on stderr).
    report: Vec<String>,
    /// Threads per call.
    threads: usize,
    /// The vector path (`CONVC_ISA`), or the widest the host runs.
    isa: Option<Isa>,
    /// Programs compiled so far, newest last.
    compiled: Mutex<Vec<Compiled>>,
}

impl Net {
    /// Loads, checks and optimises the network at `path`, and compiles it when every input
    /// size is known.
    pub fn build(path: &Path, threads: usize, opts: &PassOpts) -> Result<Net, Failure> {
        let mut model = driver::load_model(path)?;
        let source = model.graph.clone();
        let named = |g: &Graph, ns: &[convc_ir::NodeIndex]| -> Vec<(String, Shape)> {
            ns.iter()
                .map(|&n| (g.node(n).name.clone(), g.node(n).shape.clone()))
                .collect()
        };
        let inputs = named(&model.graph, &model.graph.inputs);
        // Outputs keep the names the user wrote, whatever the passes call their nodes.
        let mut outputs = named(&model.graph, &model.graph.outputs);
        let report = optimise(&mut model, opts)?;
        for (o, &n) in outputs.iter_mut().zip(&model.graph.outputs) {
            o.1 = model.graph.node(n).shape.clone();
        }
        let net = Net {
            model,
            source,
            inputs,
            outputs,
            report,
            threads,
            isa: isa_from_env()?,
            compiled: Mutex::new(Vec::new()),
        };
        if let Some(sizes) = net.known_sizes() {
            net.compiled_for(&sizes)?;
        }
        Ok(net)
    }

    /// Every input's `(H, W)` when all are known.
    fn known_sizes(&self) -> Option<Sizes> {
        self.inputs.iter().map(|(_, s)| s.hw()).collect()
    }

    /// The program for these input sizes (and the shapes), compiled on first use.
    fn compiled_for(
        &self,
        sizes: &[(usize, usize)],
    ) -> Result<(Arc<shape::Concrete>, Arc<CompiledNet>), Failure> {
        if let Some(found) = self.lookup(sizes) {
            return Ok(found);
        }
        let g = &self.model.graph;
        let b = shape::bind_inputs(g, sizes).map_err(input_err)?;
        let shapes = Arc::new(shape::concretize(g, &b).map_err(|d| self.model.fail(&d))?);
        let opts = JitOptions {
            threads: self.threads,
            verify: true,
            isa: self.isa,
            ..Default::default()
        };
        let net = Arc::new(convc_jit::compile(g, sizes, &opts).map_err(input_err)?);
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_COMPILED {
            cache.remove(0);
        }
        cache.push(Compiled {
            sizes: sizes.to_vec(),
            shapes: Arc::clone(&shapes),
            net: Arc::clone(&net),
        });
        Ok((shapes, net))
    }

    /// A program already compiled for these sizes.
    fn lookup(&self, sizes: &[(usize, usize)]) -> Option<(Arc<shape::Concrete>, Arc<CompiledNet>)> {
        let cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|c| c.sizes == sizes)
            .map(|c| (Arc::clone(&c.shapes), Arc::clone(&c.net)))
    }

    /// Checks one array against input `i`: `[C, H, W]` or `[N, C, H, W]` with the input's
    /// channels and fixed sizes. Returns `(N, H, W)`.
    fn check_input(&self, i: usize, dims: &[usize]) -> PyResult<(usize, usize, usize)> {
        let (name, s) = &self.inputs[i];
        let (n, c, h, w) = match *dims {
            [c, h, w] => (1, c, h, w),
            [n, c, h, w] => (n, c, h, w),
            _ => {
                return Err(py_err(format!(
                    "input `{name}` is {s}: give an array [C, H, W] or [N, C, H, W], not one of shape {}",
                    convc_tensor::fmt_shape(dims)
                )));
            }
        };
        if dims.contains(&0) {
            return Err(py_err(format!(
                "input `{name}`: the array of shape {} is empty",
                convc_tensor::fmt_shape(dims)
            )));
        }
        if c != s.c {
            return Err(py_err(format!(
                "the array has {c} channel{}, but input `{name}` is {s}",
                if c == 1 { "" } else { "s" }
            )));
        }
        for (d, v, axis) in [(&s.h, h, "height"), (&s.w, w, "width")] {
            if let Some(k) = d.known().filter(|&k| k as usize != v) {
                return Err(py_err(format!(
                    "the array has {axis} {v}, but input `{name}` is {s} (expects {axis} {k})"
                )));
            }
        }
        Ok((n, h, w))
    }
}

/// Runs the selected passes, collecting their reports.
fn optimise(model: &mut Model, opts: &PassOpts) -> Result<Vec<String>, Failure> {
    let (pm, cx) = driver::pass_manager(opts)?;
    let mut report = Vec::new();
    let result = pm.run_with(&mut model.graph, &cx, |r, _| {
        if r.pass != "fuse" {
            report.push(r.to_string().trim_end().to_string());
        }
    });
    match result {
        Ok(_) => Ok(report),
        Err(convc_passes::PassError::Invalid { pass, diagnostic }) => Err(Failure::Input(format!(
            "internal error: the graph is invalid after pass `{pass}` (please report this):\n{}",
            model.render(&diagnostic)
        ))),
        Err(e) => Err(Failure::Usage(format!("error: {e}"))),
    }
}

/// The vector path `CONVC_ISA` forces, as for the command line.
fn isa_from_env() -> Result<Option<Isa>, Failure> {
    match std::env::var("CONVC_ISA") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Isa::parse(&v).map(Some).ok_or_else(|| {
            Failure::Usage(format!(
                "error: CONVC_ISA={v} is not a vector path: write sse, avx2 or avx512"
            ))
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::Usage(
            "error: CONVC_ISA is not a vector path: write sse, avx2 or avx512".into(),
        )),
    }
}

/// `x` as a C-contiguous float32 array: the same object when it already is one (no copy),
/// else a converted copy (`numpy.ascontiguousarray(x, dtype=float32)`).
fn as_f32<'py>(x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    if let Ok(a) = x.cast::<PyArrayDyn<f32>>()
        && a.is_c_contiguous()
    {
        return Ok(a.clone());
    }
    let np = x.py().import("numpy")?;
    let a = np.call_method1("ascontiguousarray", (x, "float32"))?;
    Ok(a.cast_into::<PyArrayDyn<f32>>()?)
}

/// A shape as a Python tuple: numbers, or the size's expression as text (`"H"`, `"ceil(H/2)"`).
fn shape_tuple<'py>(py: Python<'py>, s: &Shape) -> PyResult<Bound<'py, PyTuple>> {
    let dim = |d: &Dim| -> PyResult<Bound<'py, PyAny>> {
        match d.known() {
            Some(k) => Ok(k.into_pyobject(py)?.into_any()),
            None => Ok(PyString::new(py, &d.to_string()).into_any()),
        }
    };
    PyTuple::new(
        py,
        [s.c.into_pyobject(py)?.into_any(), dim(&s.h)?, dim(&s.w)?],
    )
}

/// `[(name, shape), ...]` as a Python list.
fn named_shapes<'py>(
    py: Python<'py>,
    v: &[(String, Shape)],
) -> PyResult<Vec<(String, Bound<'py, PyTuple>)>> {
    v.iter()
        .map(|(n, s)| Ok((n.clone(), shape_tuple(py, s)?)))
        .collect()
}

#[pymethods]
impl Net {
    /// Runs the network: one float32 array `[C, H, W]` or `[N, C, H, W]` per input, in input
    /// order. Returns one array per output (a tuple when there are several), `[C, H, W]` for
    /// 3-D inputs and `[N, C, H, W]` for a batch, owned by numpy. C-contiguous float32 inputs
    /// are read in place; others are converted first. The GIL is released while it runs.
    #[pyo3(signature = (*args))]
    fn __call__<'py>(&self, py: Python<'py>, args: &Bound<'py, PyTuple>) -> PyResult<Py<PyAny>> {
        let arrays = self.input_arrays(args)?;
        let views = arrays
            .iter()
            .map(|a| a.try_readonly())
            .collect::<Result<Vec<_>, _>>()?;
        let (batch, sizes, batched) = self.check_inputs(&views)?;
        let (shapes, net) = match self.lookup(&sizes) {
            Some(found) => found,
            None => py.detach(|| self.compiled_for(&sizes)).map_err(to_py)?,
        };
        driver::check_memory(&self.model.graph, &shapes, batch).map_err(to_py)?;
        let outs = output_arrays(py, &net, batch, batched)?;
        let ins: Vec<&[f32]> = views
            .iter()
            .map(|v| v.as_slice())
            .collect::<Result<_, _>>()?;
        // SAFETY: the arrays were just made here and no other reference to them exists yet.
        let mut slices: Vec<&mut [f32]> = outs
            .iter()
            .map(|o| unsafe { o.as_slice_mut() })
            .collect::<Result<_, _>>()?;
        py.detach(|| net.run_into(&ins, &mut slices, batch))
            .map_err(py_err)?;
        if outs.len() == 1 {
            return Ok(outs[0].clone().into_any().unbind());
        }
        Ok(PyTuple::new(py, outs)?.into_any().unbind())
    }

    /// `[(name, shape), ...]` of the inputs, per image (`(C, H, W)`; symbolic sizes as text).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyTuple>)>> {
        named_shapes(py, &self.inputs)
    }

    /// `[(name, shape), ...]` of the outputs, per image, with the names written in the spec.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyTuple>)>> {
        named_shapes(py, &self.outputs)
    }

    /// Threads each call uses.
    #[getter]
    fn threads(&self) -> usize {
        self.threads
    }

    /// What the optimisation passes did, one entry per pass (the command line's stderr notes).
    #[getter]
    fn report(&self) -> Vec<String> {
        self.report.clone()
    }

    /// `convc explain`'s text: every convolution's standard, asymmetric and
    /// depthwise-separable forms (only `layer`, if given).
    #[pyo3(signature = (layer=None))]
    fn explain(&self, layer: Option<&str>) -> PyResult<String> {
        let ex = convc_passes::explain(&self.source, layer).map_err(py_err)?;
        if ex.is_empty() {
            return Ok(format!(
                "{}: no convolution with a kernel larger than 1x1 to explain\n",
                self.model.path.display()
            ));
        }
        Ok(convc_passes::render_explanations(&ex))
    }

    /// `convc dump`'s text of the optimised graph: `format` is `text`, `dot`, `json`, or
    /// `plan` (the JIT's plan; needs known input sizes).
    #[pyo3(signature = (format="text"))]
    fn dump(&self, format: &str) -> PyResult<String> {
        let g = &self.model.graph;
        match format {
            "text" => Ok(convc_ir::print::text(g)),
            "dot" => Ok(convc_ir::print::dot(g)),
            "json" => Ok(format!("{:#}\n", convc_ir::print::json(g))),
            "plan" => {
                let sizes = self.known_sizes().ok_or_else(|| {
                    py_err("the network has symbolic input sizes: its plan is made at the first call with each size")
                })?;
                let (_, net) = self.compiled_for(&sizes).map_err(to_py)?;
                Ok(net.plan_text().to_string())
            }
            _ => Err(py_err(format!(
                "format={format:?} is not a dump format: give text, dot, json or plan"
            ))),
        }
    }

    fn __repr__(&self) -> String {
        let side = |v: &[(String, Shape)]| -> String {
            let s: Vec<String> = v.iter().map(|(n, s)| format!("{n} {s}")).collect();
            s.join(", ")
        };
        format!(
            "<convc.Net {}: {} -> {}, {} thread(s)>",
            self.model.path.display(),
            side(&self.inputs),
            side(&self.outputs),
            self.threads
        )
    }
}

impl Net {
    /// The call's arguments as C-contiguous float32 arrays, one per input.
    fn input_arrays<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
        if args.len() != self.inputs.len() {
            let names: Vec<String> = self.inputs.iter().map(|i| format!("`{}`", i.0)).collect();
            return Err(py_err(format!(
                "the network has {} input(s) ({}), but {} array(s) were given",
                self.inputs.len(),
                names.join(", "),
                args.len()
            )));
        }
        args.iter().map(|a| as_f32(&a)).collect()
    }

    /// Checks every input array; returns the batch size, the per-image sizes, and whether any
    /// input was a batch (`[N, C, H, W]`, so outputs are too).
    fn check_inputs(
        &self,
        views: &[numpy::PyReadonlyArrayDyn<'_, f32>],
    ) -> PyResult<(usize, Sizes, bool)> {
        let mut batch = None;
        let mut sizes = Vec::with_capacity(views.len());
        let mut batched = false;
        for (i, v) in views.iter().enumerate() {
            let (n, h, w) = self.check_input(i, v.shape())?;
            batched |= v.ndim() == 4;
            if let Some(b) = batch.filter(|&b| b != n) {
                return Err(py_err(format!(
                    "input `{}` has a batch of {n} image(s) but another input has {b}: every input needs the same N",
                    self.inputs[i].0
                )));
            }
            batch = Some(n);
            sizes.push((h, w));
        }
        Ok((batch.unwrap_or(1), sizes, batched))
    }
}

/// Bytes the outputs are aligned to: a cache line, so that the generated code's vector stores
/// never straddle two (numpy's own allocations are 16-byte aligned).
const OUTPUT_ALIGN: usize = 64;

/// Fresh numpy arrays for the outputs of a run of `batch` images (`[C, H, W]` when not
/// `batched`, which needs `batch == 1`): cache-line aligned views of buffers numpy owns.
fn output_arrays<'py>(
    py: Python<'py>,
    net: &CompiledNet,
    batch: usize,
    batched: bool,
) -> PyResult<Vec<Bound<'py, PyArrayDyn<f32>>>> {
    net.output_shapes()
        .iter()
        .map(|&[c, h, w]| {
            let dims = if batched {
                vec![batch, c, h, w]
            } else {
                vec![c, h, w]
            };
            aligned_array(py, dims)
        })
        .collect()
}

/// An uninitialised C-contiguous float32 array of `dims` starting on an [`OUTPUT_ALIGN`]
/// boundary: a view into a slightly longer buffer that numpy owns (its `base`).
fn aligned_array<'py>(py: Python<'py>, dims: Vec<usize>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    const PAD: usize = OUTPUT_ALIGN / std::mem::size_of::<f32>();
    let len = convc_tensor::checked_numel(&dims)
        .and_then(|n| n.checked_add(PAD))
        .ok_or_else(|| py_err("the output is too large"))?;
    // SAFETY: uninitialised float32 values; the run writes every value of the view
    // (`CompiledNet::run_into` fills its output slices whole) before Python sees them, and
    // the padding around the view is never read.
    let buf = unsafe { numpy::PyArray1::<f32>::new(py, [len], false) };
    let misalign = (buf.data() as usize) % OUTPUT_ALIGN;
    let start = (OUTPUT_ALIGN - misalign) % OUTPUT_ALIGN / std::mem::size_of::<f32>();
    let view = buf.call_method1(
        "__getitem__",
        (PySlice::new(
            py,
            start as isize,
            (start + len - PAD) as isize,
            1,
        ),),
    )?;
    Ok(view
        .call_method1("reshape", (dims,))?
        .cast_into::<PyArrayDyn<f32>>()?)
}
