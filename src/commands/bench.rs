//! `convc bench`: compile time, median time per image, GFLOP/s.

use std::fmt::Write as _;
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
    /// Time per fused kernel group.
    pub profile: bool,
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
    if a.profile && a.backend != Backend::Jit {
        return Err(Failure::Usage(
            "error: --profile times the JIT's kernels: use it with --backend jit".into(),
        ));
    }
    driver::selected_passes(a.passes)?;
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

    let (tuning, wino) = match a.backend {
        crate::Backend::Jit => (
            crate::engine::tune_first()?,
            crate::engine::winograd_costs_first()?,
        ),
        crate::Backend::Interp => (None, None),
    };
    let engine = crate::engine::Engine::new(g, &sizes, a.backend, threads, false)?;
    let compile_time = engine.compile_time();
    // Warm up once, then time runs until both a minimum count and a minimum time are reached.
    engine.run(&inputs)?;
    let mut times = Vec::new();
    let start = Instant::now();
    // At least 5 runs and `min_time`, but a slow network (a run longer than `min_time`) stops
    // after the first runs that fill 5 x `min_time` (at least one run).
    let slow_cap = a.min_time.max(Duration::from_secs(1)) * 5;
    while times.is_empty()
        || (times.len() < 5 && start.elapsed() < slow_cap)
        || (start.elapsed() < a.min_time && times.len() < 10_000)
    {
        let t = Instant::now();
        let out = engine.run(&inputs)?;
        times.push(t.elapsed().as_secs_f64());
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2] / a.batch as f64;
    let min = times[0] / a.batch as f64;
    let gflops = |macs: u64| 2.0 * macs as f64 / median / 1e9;
    let backend = engine.backend_name();
    let profile = if a.profile {
        Some(profile(&engine, &inputs, a.batch)?)
    } else {
        None
    };
    if a.json {
        let v = serde_json::json!({
            "profile": profile.as_ref().map(|rows| rows.iter().map(|r| serde_json::json!({
                "step": r.name, "kernel": r.kernel, "ms_per_image": r.ms, "macs": r.macs, "gflops": r.gflops(),
                "parts": r.parts.iter().map(|p| serde_json::json!({
                    "step": p.name, "ms_per_image": p.ms, "macs": p.macs, "gflops": p.gflops(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()),
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
            "tiles": tuning.as_ref().map(|t| serde_json::json!({
                "block": t.block,
                "tuning_ms": t.time.as_secs_f64() * 1e3,
                "candidates": t.candidates.iter().map(|&(b, v, g)| serde_json::json!({
                    "block": b, "vectors": v, "gflops": g,
                })).collect::<Vec<_>>(),
            })),
        });
        return driver::out(&format!("{v}\n"));
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}: batch {}, {} thread{}, backend {backend}",
        a.model.display(),
        a.batch,
        threads,
        if threads == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        text,
        "  time        {:.3} ms/image (median of {} runs; best {:.3} ms)",
        median * 1e3,
        times.len(),
        min * 1e3
    );
    let _ = writeln!(
        text,
        "  compile     {:.2} ms (passes {:.2} ms, code generation {:.2} ms)",
        (passes_time + compile_time).as_secs_f64() * 1e3,
        passes_time.as_secs_f64() * 1e3,
        compile_time.as_secs_f64() * 1e3
    );
    if let Some(t) = &tuning {
        let cands: Vec<String> = t
            .candidates
            .iter()
            .map(|(b, v, g)| format!("{b}x{v} {g:.0}"))
            .collect();
        let _ = writeln!(
            text,
            "  tiles       blocks of {} channels (measured at first use in {:.2} ms, not counted above; GFLOP/s of each tile: {})",
            t.block,
            t.time.as_secs_f64() * 1e3,
            cands.join(", ")
        );
    }
    if let Some((costs, time)) = &wino {
        let per: Vec<String> = costs
            .iter()
            .map(|(v, i, o)| format!("{v} {i:.0} in / {o:.0} out"))
            .collect();
        let _ = writeln!(
            text,
            "  winograd    transforms measured at first use in {:.2} ms, not counted above: {} multiply-add equivalents per tile and channel",
            time.as_secs_f64() * 1e3,
            per.join(", ")
        );
    }
    let _ = writeln!(
        text,
        "  throughput  {:.1} GFLOP/s on the network as written ({} MACs/image); {:.1} GFLOP/s executed ({} MACs/image)",
        gflops(written),
        cost::human(written),
        gflops(executed),
        cost::human(executed)
    );
    if let Some(rows) = profile {
        let total: f64 = rows.iter().map(|r| r.ms).sum();
        let w = rows
            .iter()
            .flat_map(|r| {
                std::iter::once(r.name.len()).chain(r.parts.iter().map(|p| p.name.len() + 4))
            })
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            text,
            "  profile (median ms per image of each fused kernel group; under a band step, its \
             kernels' shares of its time):"
        );
        let _ = writeln!(
            text,
            "    {:<w$}  {:>9}  {:>6}  {:>9}  {:>8}",
            "step", "ms", "share", "MACs", "GFLOP/s"
        );
        let line = |text: &mut String, name: &str, r: &ProfileRow| {
            let gf = if r.macs > 0 {
                format!("{:.1}", r.gflops())
            } else {
                "-".into()
            };
            let _ = writeln!(
                text,
                "    {:<w$}  {:>9.3}  {:>5.1}%  {:>9}  {:>8}",
                name,
                r.ms,
                100.0 * r.ms / total.max(1e-12),
                cost::human(r.macs),
                gf
            );
        };
        for r in &rows {
            line(&mut text, &r.name, r);
            for p in &r.parts {
                line(&mut text, &format!("  - {}", p.name), p);
            }
        }
    }
    driver::out(&text)
}

/// One fused step's share of a run.
struct ProfileRow {
    name: String,
    kernel: String,
    ms: f64,
    macs: u64,
    /// A band step's kernels, each with its share of the step's time (no kernel name).
    parts: Vec<ProfileRow>,
}

impl ProfileRow {
    fn gflops(&self) -> f64 {
        if self.ms > 0.0 {
            2.0 * self.macs as f64 / (self.ms * 1e-3) / 1e9
        } else {
            0.0
        }
    }
}

/// Median time per image of every step of the JIT's program, over a few profiled runs.
fn profile(
    engine: &crate::engine::Engine<'_>,
    inputs: &[Tensor],
    batch: usize,
) -> Result<Vec<ProfileRow>, Failure> {
    let crate::engine::Engine::Jit(net) = engine else {
        return Err(Failure::Usage(
            "error: --profile needs --backend jit".into(),
        ));
    };
    let steps = net.steps();
    // Per step: its times, then each of its parts'.
    let mut samples: Vec<Vec<Vec<f64>>> = steps
        .iter()
        .map(|s| vec![Vec::new(); 1 + s.parts.len()])
        .collect();
    let start = Instant::now();
    while samples.first().is_some_and(|s| s[0].len() < 5)
        || (start.elapsed() < Duration::from_millis(500)
            && samples.first().is_some_and(|s| s[0].len() < 1000))
    {
        let (_, times) = net.run_profiled(inputs).map_err(input_err)?;
        for (v, t) in samples.iter_mut().zip(&times) {
            let all = std::iter::once(t.seconds).chain(t.parts.iter().copied());
            for (v, seconds) in v.iter_mut().zip(all) {
                v.push(seconds / batch as f64);
            }
        }
    }
    let median_ms = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0) * 1e3
    };
    Ok(steps
        .into_iter()
        .zip(samples)
        .map(|(s, v)| {
            let mut v = v.into_iter();
            ProfileRow {
                name: s.name,
                kernel: s.kernel,
                ms: median_ms(v.next().unwrap_or_default()),
                macs: s.macs,
                parts: s
                    .parts
                    .into_iter()
                    .zip(v)
                    .map(|(p, v)| ProfileRow {
                        name: p.name,
                        kernel: String::new(),
                        ms: median_ms(v),
                        macs: p.macs,
                        parts: Vec::new(),
                    })
                    .collect(),
            }
        })
        .collect())
}
