//! The data side of `explain --measure|--budget|--plot` and `run --budget`: sample inputs (the
//! user's files or seeded random images), the activations that reach every conv (from the
//! interpreter), the statistics of their patches, the network output error of a candidate
//! network (the JIT against the interpreter's outputs of the network as written), and the
//! JIT's time before and after. The choice itself is `convc_passes::budget`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use convc_ir::{Graph, NodeIndex, Op, shape};
use convc_passes::budget::{self, BudgetPlan, LayerOptions};
use convc_passes::factor::Geom;
use convc_passes::measure::{PatchStats, splitmix64};
use convc_tensor::Tensor;

use crate::data;
use crate::driver::{self, Failure, Model, input_err};

/// The size random samples take when the network's sizes are symbolic and nothing binds them.
pub const DEFAULT_SIZE: (usize, usize) = (128, 128);

/// The seed of the random samples.
pub const SEED: u64 = 0;

/// How the samples are made.
#[derive(Clone, Debug, Default)]
pub struct SampleArgs {
    /// `--data` files (images or `.npy`), for a network with one input; empty: random.
    pub data: Vec<PathBuf>,
    /// Number of random samples.
    pub samples: usize,
}

/// The sample inputs: one `[N, C, H, W]` tensor per network input.
pub struct Samples {
    /// The tensors.
    pub tensors: Vec<Tensor>,
    /// What they are, for reports: `2 random inputs [3,128,128] (seed 0)`.
    pub desc: String,
}

/// `n` random images `[C, H, W]` with values uniform in `[0, 1)`, from `seed`.
fn random_images(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Result<Tensor, Failure> {
    let len = [n, c, h, w]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| input_err("the sample inputs are too large"))?;
    let data = (0..len as u64)
        .map(|i| {
            (splitmix64(seed.wrapping_mul(0x1000_0000_01B3) ^ i) >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::new(vec![n, c, h, w], data).map_err(input_err)
}

/// Binds every symbolic input size to `(h, w)` (as `--size` does).
fn bind_all(model: &mut Model, hw: (usize, usize)) -> Result<(), Failure> {
    let symbolic = model
        .graph
        .inputs
        .iter()
        .any(|&n| model.graph.node(n).shape.hw().is_none());
    if symbolic {
        driver::bind_size(model, Some(hw))?;
    }
    Ok(())
}

/// Reads `--data` (binding the sizes to the data's) or makes random samples (at the network's
/// sizes; symbolic ones become [`DEFAULT_SIZE`] with a note on stderr).
pub fn samples(model: &mut Model, a: &SampleArgs) -> Result<Samples, Failure> {
    if !a.data.is_empty() {
        if model.graph.inputs.len() != 1 {
            return Err(Failure::Usage(
                "error: --data is for networks with one input; this one has several: leave --data out to measure on random inputs".into(),
            ));
        }
        let mut parts = Vec::new();
        for p in &a.data {
            parts.push((p.clone(), data::read_input(p)?));
        }
        let t = data::stack(parts)?.tensor;
        let s = t.shape().to_vec();
        let node = model.graph.node(model.graph.inputs[0]);
        crate::commands::run::check_input_shapes(node, &a.data, &[[s[0], s[1], s[2], s[3]]])?;
        bind_all(model, (s[2], s[3]))?;
        let desc = format!("{} input image(s) from --data", s[0]);
        return Ok(Samples {
            tensors: vec![t],
            desc,
        });
    }
    if model
        .graph
        .inputs
        .iter()
        .any(|&n| model.graph.node(n).shape.hw().is_none())
    {
        driver::note(&format!(
            "note: the input sizes are symbolic: measuring at {}x{} (give --size HxW or --data to choose)\n",
            DEFAULT_SIZE.0, DEFAULT_SIZE.1
        ));
        bind_all(model, DEFAULT_SIZE)?;
    }
    let g = &model.graph;
    let mut tensors = Vec::new();
    let mut shapes = Vec::new();
    for (i, &n) in g.inputs.iter().enumerate() {
        let s = &g.node(n).shape;
        let (h, w) = s
            .hw()
            .ok_or_else(|| input_err("the input sizes are unknown"))?;
        tensors.push(random_images(a.samples, s.c, h, w, SEED + i as u64)?);
        shapes.push(format!("[{},{},{}]", s.c, h, w));
    }
    let desc = format!(
        "{} random input(s) {} (seed {SEED})",
        a.samples,
        shapes.join(" ")
    );
    Ok(Samples { tensors, desc })
}

/// The values that reach the convs: the operands of every conv of `g`, by node name, from the
/// interpreter; and the network's outputs.
pub struct Activations {
    /// Conv operands by name: `[N, C, H, W]`.
    pub values: HashMap<String, Tensor>,
    /// The outputs of the network as written (the reference of the measured error).
    pub outputs: Vec<Tensor>,
    /// Statistics already gathered, by input name and conv geometry.
    cache: HashMap<String, PatchStats>,
}

impl Activations {
    /// Runs the interpreter on `g` (as written) with the samples.
    pub fn of(g: &Graph, samples: &Samples) -> Result<Activations, Failure> {
        let mut probe = g.clone();
        let n_out = g.outputs.len();
        let mut names = Vec::new();
        for n in g.topo_order() {
            if let Op::Conv(_) = g.node(n).op {
                for x in g.operands(n) {
                    if !names.contains(&g.node(x).name) {
                        names.push(g.node(x).name.clone());
                        probe.outputs.push(x);
                    }
                }
            }
        }
        let threads = convc_interp::default_threads();
        let mut outs =
            convc_interp::run_threads(&probe, &samples.tensors, threads).map_err(input_err)?;
        let convs = outs.split_off(n_out);
        Ok(Activations {
            values: names.into_iter().zip(convs).collect(),
            outputs: outs,
            cache: HashMap::new(),
        })
    }

    /// The patch statistics of conv node `n` of `g` (a graph whose conv operands have the names
    /// they have in the network as written).
    pub fn stats(&mut self, g: &Graph, n: NodeIndex) -> Option<PatchStats> {
        let Op::Conv(conv) = &g.node(n).op else {
            return None;
        };
        let x = *g.operands(n).first()?;
        let name = &g.node(x).name;
        let t = self.values.get(name)?;
        let s = t.shape();
        let geom = Geom::of(conv, s[1])?;
        let key = format!(
            "{name}|{:?}|{:?}|{:?}|{:?}|{}",
            conv.kernel, conv.stride, conv.dilation, conv.pad, conv.groups
        );
        if let Some(st) = self.cache.get(&key) {
            return Some(st.clone());
        }
        let st = PatchStats::gather(conv, &geom, t.data(), s[0], [s[1], s[2], s[3]])?;
        self.cache.insert(key, st.clone());
        Some(st)
    }
}

/// `||a - b||_F / ||b||_F` over every output (0 when both are 0).
pub fn relative_error(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        for (&p, &q) in x.data().iter().zip(y.data()) {
            num += (p as f64 - q as f64).powi(2);
            den += (q as f64).powi(2);
        }
    }
    if num == 0.0 {
        0.0
    } else if den == 0.0 || !num.is_finite() {
        f64::INFINITY
    } else {
        (num / den).sqrt()
    }
}

fn sizes_of(g: &Graph) -> Result<Vec<(usize, usize)>, Failure> {
    g.inputs
        .iter()
        .map(|&n| {
            g.node(n)
                .shape
                .hw()
                .ok_or_else(|| input_err("the input sizes are unknown"))
        })
        .collect()
}

/// Compiles `g` with the JIT for its (known) sizes.
pub fn compile(g: &Graph, threads: usize) -> Result<convc_jit::CompiledNet, Failure> {
    let opts = convc_jit::JitOptions {
        threads,
        isa: crate::engine::isa_from_env()?,
        conv_algo: crate::engine::algo_from_env()?,
        ..Default::default()
    };
    convc_jit::compile(g, &sizes_of(g)?, &opts).map_err(input_err)
}

/// The graph after the exact passes that run before the budget is planned (`fold-batchnorm`).
fn folded(g: &Graph) -> Result<Graph, Failure> {
    let mut out = g.clone();
    let pm =
        convc_passes::PassManager::from_names(&["fold-batchnorm"]).map_err(|e| input_err(e))?;
    pm.run(&mut out, &convc_passes::PassContext::default())
        .map_err(|e| input_err(e))?;
    Ok(out)
}

/// Plans the cheapest network within `budget` (see `convc_passes::budget`): `model` is the
/// network as written with known sizes, `acts` its activations on the samples.
pub fn plan(
    model: &Model,
    samples: &Samples,
    acts: &mut Activations,
    budget: f64,
) -> Result<BudgetPlan, Failure> {
    let base = folded(&model.graph)?;
    let mut layers: Vec<LayerOptions> = Vec::new();
    for n in base.topo_order() {
        if !matches!(base.node(n).op, Op::Conv(_)) {
            continue;
        }
        let stats = acts.stats(&base, n);
        layers.extend(budget::layer_options(&base, n, stats.as_ref()));
    }
    let threads = convc_interp::default_threads();
    let reference = acts.outputs.clone();
    let measure = |g: &Graph| -> Result<f64, Failure> {
        let net = compile(g, threads)?;
        let outs = net.run(&samples.tensors).map_err(input_err)?;
        Ok(relative_error(&outs, &reference))
    };
    let mut plan = budget::plan_budget(&base, layers, budget, measure)?;
    // What runs: the chosen layers, then the rest of the default pipeline (all exact).
    let pm = convc_passes::PassManager::from_names(&["decompose", "fuse", "dce"])
        .map_err(|e| input_err(e))?;
    pm.run(&mut plan.graph, &convc_passes::PassContext::default())
        .map_err(|e| input_err(e))?;
    plan.macs_after = convc_ir::cost::total_macs(&plan.graph).unwrap_or(plan.macs_after);
    Ok(plan)
}

/// The median time of one image through each graph with the JIT on one thread: after a
/// warm-up run of each, runs alternate (so that a change in the machine's load hits all
/// alike), at least 5 of each and 0.5 s in all.
pub fn time_each(graphs: &[&Graph], input: &[Tensor]) -> Result<Vec<Duration>, Failure> {
    let nets: Vec<convc_jit::CompiledNet> = graphs
        .iter()
        .map(|g| compile(g, 1))
        .collect::<Result<_, _>>()?;
    for net in &nets {
        net.run(input).map_err(input_err)?;
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); nets.len()];
    let start = Instant::now();
    while times[0].len() < 5
        || (start.elapsed() < Duration::from_millis(500) && times[0].len() < 1000)
    {
        for (net, t) in nets.iter().zip(times.iter_mut()) {
            let t0 = Instant::now();
            net.run(input).map_err(input_err)?;
            t.push(t0.elapsed());
        }
    }
    Ok(times
        .into_iter()
        .map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect())
}

/// The first image of each sample tensor.
pub fn first_images(samples: &Samples) -> Result<Vec<Tensor>, Failure> {
    samples
        .tensors
        .iter()
        .map(|t| {
            let s = t.shape();
            let len = s[1] * s[2] * s[3];
            Tensor::new(vec![1, s[1], s[2], s[3]], t.data()[..len].to_vec()).map_err(input_err)
        })
        .collect()
}

/// The line that compares the JIT's times of the network as written (no passes), as `run`
/// runs it by default (the exact passes), and the chosen one.
pub fn time_line(model: &Model, plan: &BudgetPlan, samples: &Samples) -> Result<String, Failure> {
    let mut default = model.graph.clone();
    let pm = convc_passes::PassManager::default_pipeline();
    pm.run(&mut default, &convc_passes::PassContext::default())
        .map_err(input_err)?;
    let input = first_images(samples)?;
    let t = time_each(&[&model.graph, &default, &plan.graph], &input)?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (written, by_default, chosen) = (ms(t[0]), ms(t[1]), ms(t[2]).max(1e-9));
    Ok(format!(
        "  time (JIT, 1 thread, median per image): as written {written:.3} ms, as `run` runs it by default {by_default:.3} ms, chosen {chosen:.3} ms\n  \
         speed-up {:.2}x over the network as written, {:.2}x over the default run\n",
        written / chosen,
        by_default / chosen
    ))
}

/// Checks that every sample's shape still fits the network (after `--size` was bound).
pub fn check_shapes(model: &Model, samples: &Samples) -> Result<(), Failure> {
    let sizes: Vec<(usize, usize)> = samples
        .tensors
        .iter()
        .map(|t| (t.shape()[2], t.shape()[3]))
        .collect();
    let b = shape::bind_inputs(&model.graph, &sizes).map_err(input_err)?;
    let conc = shape::concretize(&model.graph, &b).map_err(|d| model.fail(&d))?;
    driver::check_memory(
        &model.graph,
        &conc,
        samples.tensors.first().map_or(1, |t| t.shape()[0]),
    )
}
