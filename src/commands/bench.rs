//! `convc bench`: compile time, median time per image, GFLOP/s.

use std::path::Path;
use std::time::{Duration, Instant};

use convc_ir::cost;
use convc_tensor::Tensor;

use crate::driver::{self, Failure, input_err};
use crate::{Backend, PassOpts};

/// Everything `bench` was asked to do.
pub struct BenchArgs<'a> {
    /// The spec.
    pub model: &'a Path,
    /// Which engine.
    pub backend: Backend,
    /// Threads (None: all cores).
    pub threads: Option<usize>,
    /// Images per run.
    pub batch: usize,
    /// `--size HxW`.
    pub size: Option<(usize, usize)>,
    /// Pass selection.
    pub passes: &'a PassOpts,
    /// One JSON object instead of text.
    pub json: bool,
    /// Least time spent measuring.
    pub min_time: Duration,
}

/// A deterministic input in [-0.5, 0.5): the values do not change the time of dense code.
fn bench_input(n: usize, c: usize, h: usize, w: usize) -> Result<Tensor, Failure> {
    let len = [n, c, h, w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| input_err("input too large"))?;
    let data = (0..len)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    Tensor::new(vec![n, c, h, w], data).map_err(input_err)
}

/// Runs `convc bench`.
pub fn run(a: BenchArgs<'_>) -> Result<(), Failure> {
    let mut model = driver::load_model(a.model)?;
    driver::bind_size(&mut model, a.size)?;
    let written = cost::total_macs(&model.graph);
    let mut sizes = Vec::new();
    for &n in &model.graph.inputs {
        match model.graph.node(n).shape.hw() {
            Some(hw) => sizes.push(hw),
            None => {
                return Err(Failure::Usage(format!(
                    "error: input `{}` has symbolic sizes {}: bench needs sizes, give --size HxW",
                    model.graph.node(n).name,
                    model.graph.node(n).shape
                )));
            }
        }
    }
    let written = written.unwrap_or(0);
    let t0 = Instant::now();
    driver::run_passes(&mut model, a.passes, |_, _| {})?;
    let passes_time = t0.elapsed();
    let executed = cost::total_macs(&model.graph).unwrap_or(0);
    let g = &model.graph;
    let b = convc_ir::shape::bind_inputs(g, &sizes).map_err(input_err)?;
    let conc = convc_ir::shape::concretize(g, &b).map_err(|d| model.fail(&d))?;
    driver::check_memory(g, &conc, a.batch)?;
    let threads = a.threads.unwrap_or_else(convc_interp::default_threads);
    let inputs: Vec<Tensor> = g
        .inputs
        .iter()
        .zip(&sizes)
        .map(|(&n, &(h, w))| bench_input(a.batch, g.node(n).shape.c, h, w))
        .collect::<Result<_, _>>()?;

    let engine = crate::engine::Engine::new(g, &sizes, a.backend, threads)?;
    let compile_time = engine.compile_time();
    // Warm up once, then time runs until both a minimum count and a minimum time are reached.
    engine.run(&inputs)?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < a.min_time && times.len() < 10_000) {
        let t = Instant::now();
        let out = engine.run(&inputs)?;
        times.push(t.elapsed().as_secs_f64());
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2] / a.batch as f64;
    let min = times[0] / a.batch as f64;
    let gflops = |macs: u64| 2.0 * macs as f64 / median / 1e9;
    let backend = match a.backend {
        Backend::Jit => engine.backend_name(),
        Backend::Interp => "interp",
    };
    if a.json {
        let v = serde_json::json!({
            "model": a.model.display().to_string(),
            "backend": backend,
            "threads": threads,
            "batch": a.batch,
            "compile_ms": (passes_time + compile_time).as_secs_f64() * 1e3,
            "passes_ms": passes_time.as_secs_f64() * 1e3,
            "codegen_ms": compile_time.as_secs_f64() * 1e3,
            "ms_per_image": median * 1e3,
            "min_ms_per_image": min * 1e3,
            "runs": times.len(),
            "macs_written": written,
            "macs_executed": executed,
            "gflops": gflops(written),
            "gflops_executed": gflops(executed),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{}: batch {}, {} thread{}, backend {backend}",
        a.model.display(),
        a.batch,
        threads,
        if threads == 1 { "" } else { "s" }
    );
    println!(
        "  time        {:.3} ms/image (median of {} runs; best {:.3} ms)",
        median * 1e3,
        times.len(),
        min * 1e3
    );
    println!(
        "  compile     {:.2} ms (passes {:.2} ms, code generation {:.2} ms)",
        (passes_time + compile_time).as_secs_f64() * 1e3,
        passes_time.as_secs_f64() * 1e3,
        compile_time.as_secs_f64() * 1e3
    );
    println!(
        "  throughput  {:.1} GFLOP/s on the network as written ({} MACs/image); {:.1} GFLOP/s executed ({} MACs/image)",
        gflops(written),
        cost::human(written),
        gflops(executed),
        cost::human(executed)
    );
    Ok(())
}
