//! The Cranelift JIT backend of convc: every op of a graph compiled to f32x4 SIMD machine
//! code, and a runtime that runs a batch on N threads. See `README.md` beside this crate for
//! the kernel designs, the ABI, the buffer plan, threading and measured numbers.
//!
//! ```no_run
//! # fn demo(g: &convc_ir::Graph, x: &convc_tensor::Tensor) -> Result<(), convc_jit::JitError> {
//! let net = convc_jit::compile(g, &[(128, 128)], &convc_jit::JitOptions::default())?;
//! let outputs = net.run(std::slice::from_ref(x))?;
//! # let _ = outputs; Ok(()) }
//! ```

#![warn(missing_docs)]

mod buf;
mod codegen;
mod gemm;
mod lanes;
mod maxpool;
mod packed;
mod plan;
mod plan_text;
mod rstep;
mod runtime;
mod spec;
mod wide;
mod wino;

pub use wide::{Isa, Tuning, tune};
pub use wino::col_within_budget as winograd_col_within_budget;
pub use wino::f4_within_budget as winograd_f4_within_budget;

/// The Winograd transforms' costs measured on this host at first use for path `isa` (then
/// cached for the process), from which `--conv-algo` takes the transforms' vector width (the
/// variant `auto` picks by fixed estimates, so that results do not vary from run to run): per variant (`F(2x2,3x3)`,
/// `F(4x4,3x3)`) and vector width of the transforms, the input and the output transform in multiply-add equivalents per tile and
/// channel, and how long the measurement took (0 when cached).
pub fn winograd_costs(isa: Isa) -> (Vec<(String, f64, f64)>, std::time::Duration) {
    let t = std::time::Instant::now();
    let costs = wino::transform_costs(isa)
        .iter()
        .map(|&(v, tl, kin, kout)| (format!("{} on {tl}-float vectors", v.name()), kin, kout))
        .collect();
    (costs, t.elapsed())
}

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};

use convc_ir::Graph;
use convc_ir::shape::{bind_inputs, concretize};
use convc_tensor::{Tensor, fmt_shape};

use crate::plan::{Arg, BAND_PARTS, Plan};
use crate::runtime::{Exec, KernelFn, P, Pool};
use crate::spec::KernelSpec;

/// Options of [`compile`].
#[derive(Clone, Debug)]
pub struct JitOptions {
    /// Threads a run uses; 0 means the number of cores.
    pub threads: usize,
    /// Run Cranelift's IR verifier on every kernel (on by default; turn off for benchmarks).
    pub verify: bool,
    /// Keep each kernel's disassembly for [`CompiledNet::disassembly`].
    pub emit_asm: bool,
    /// Use fused multiply-add (`vfmadd`) in convolutions when the host has FMA (the default;
    /// about 1.7x the mul + add kernels here); otherwise, or when false, `fmul` + `fadd`.
    pub fma: bool,
    /// Steps with less estimated work than this (nanoseconds on one thread) run on the
    /// calling thread alone; 0 splits every step across the threads (tests use that).
    pub parallel_min_ns: f64,
    /// The vector instruction set of the dense convolutions' inner tiles: `None` picks the
    /// widest the host runs ([`Isa::detect`]); a path the host lacks is an error.
    pub isa: Option<Isa>,
    /// Test mode: every intermediate buffer of the arena and every thread's scratch placed
    /// against an inaccessible page and filled with NaN, so that generated code reading or
    /// writing outside its buffers faults, and reading a value before it is written shows
    /// (see [`GuardPages`]). Costs a mapping per buffer; off by default, or as the environment
    /// variable `CONVC_JIT_GUARD_PAGES` says (`end` or `start`), so that any test or run can
    /// be repeated in this mode.
    pub guard_pages: GuardPages,
    /// How 3x3 and Kx1 stride-1 convolutions run on the wide paths: direct, Winograd, or
    /// chosen per layer by a cost model (the default).
    pub conv_algo: ConvAlgo,
    /// Test hook: the vector width of Winograd's transforms (4, 8, or the path's lanes)
    /// instead of the cheapest by the cost model, so that tests cover every width; a width
    /// the path does not have is ignored.
    pub winograd_lanes: Option<usize>,
    /// Test hook: output positions per band of the GEMM steps (1x1 and strided convs on the
    /// wide paths, `crate::gemm`) instead of the planner's, so that tests cover several bands
    /// on small planes; `Some(0)` runs those convs direct instead.
    pub gemm_cols: Option<usize>,
    /// Test hook: run every depthwise conv with the pointwise conv reading it in bands of rows
    /// (`plan::Band`), whatever its row width; the planner pairs only rows that fill the
    /// vectors, or an input a pointwise conv may produce inside the pair.
    pub pair_any_width: bool,
}

/// The algorithm of 3x3 and `K x 1` (K up to 7), stride-1, dilation-1, one-group
/// convolutions on the wide paths (`--conv-algo`): Winograd F(2x2,3x3) and F(4x4,3x3), and
/// F(m, K) down the columns of a `K x 1` kernel (`m + K - 1 <= 8`). Other convolutions, and
/// every convolution on the SSE path, run direct.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// Per layer, whichever a cost model expects to be faster (Winograd variants within the
    /// error budget only).
    #[default]
    Auto,
    /// Direct convolution everywhere.
    Direct,
    /// Winograd wherever it applies: F(4x4,3x3), or F(2x2,3x3) where F(4x4) would exceed the
    /// error budget; down columns, the cheapest output tile within the budget.
    Winograd,
    /// Output tiles of 2 wherever Winograd applies: F(2x2,3x3), F(2,K) (for measurements).
    WinogradF2,
    /// Output tiles of 4 wherever Winograd applies, whatever the error: F(4x4,3x3), F(4,K)
    /// with `K <= 5` (for measurements).
    WinogradF4,
}

impl ConvAlgo {
    /// Parses `auto`, `direct`, `winograd`, `winograd-f2` or `winograd-f4`.
    pub fn parse(s: &str) -> Option<ConvAlgo> {
        match s {
            "auto" => Some(ConvAlgo::Auto),
            "direct" => Some(ConvAlgo::Direct),
            "winograd" => Some(ConvAlgo::Winograd),
            "winograd-f2" => Some(ConvAlgo::WinogradF2),
            "winograd-f4" => Some(ConvAlgo::WinogradF4),
            _ => None,
        }
    }
}

/// Where [`JitOptions::guard_pages`] puts the inaccessible page of each buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardPages {
    /// Buffers share one arena and reuse dead values' space (the normal mode).
    Off,
    /// Each buffer ends right before a guard page: catches reads and writes past its end.
    End,
    /// Each buffer starts right after a guard page: catches accesses before its start.
    Start,
}

impl GuardPages {
    /// The mode the environment variable `CONVC_JIT_GUARD_PAGES` asks for (`end`, `start`;
    /// anything else or unset: off).
    pub fn from_env() -> GuardPages {
        match std::env::var("CONVC_JIT_GUARD_PAGES").as_deref() {
            Ok("end") => GuardPages::End,
            Ok("start") => GuardPages::Start,
            _ => GuardPages::Off,
        }
    }

    /// The planner's form: `Some(at_end)` when on.
    fn at_end(self) -> Option<bool> {
        match self {
            GuardPages::Off => None,
            GuardPages::End => Some(true),
            GuardPages::Start => Some(false),
        }
    }
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            threads: 0,
            verify: true,
            emit_asm: false,
            fma: true,
            parallel_min_ns: 30_000.0,
            isa: None,
            guard_pages: GuardPages::from_env(),
            conv_algo: ConvAlgo::Auto,
            winograd_lanes: None,
            gemm_cols: None,
            pair_any_width: false,
        }
    }
}

/// Why a network could not be compiled or run; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitError {
    /// What is wrong, for a user.
    pub message: String,
}

impl JitError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> JitError {
        JitError {
            message: message.into(),
        }
    }
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JitError {}

/// One compiled function.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// Its name, e.g. `conv3x3s1x1d1x1g1_64x56x56_b6_affine_relu` (op, kernel, stride,
    /// dilation, groups, output shape, register block, epilogue).
    pub name: String,
    /// Time Cranelift took to compile it.
    pub compile_time: Duration,
    /// The steps (fused op groups) that run it.
    pub steps: Vec<String>,
}

/// One step of the program: a fused group of ops run as one kernel call per image.
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// The ops of the group, e.g. `conv1+bn1+relu1`.
    pub name: String,
    /// The kernel it runs ([`KernelInfo::name`]).
    pub kernel: String,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// A band step's kernels (the producer inside, the depthwise conv, the pointwise conv);
    /// empty for any other step.
    pub parts: Vec<PartInfo>,
}

/// Time of one step in [`CompiledNet::run_profiled`].
#[derive(Clone, Debug)]
pub struct StepTime {
    /// The step ([`StepInfo::name`]).
    pub name: String,
    /// The kernel it runs.
    pub kernel: String,
    /// Wall-clock seconds, summed over the images of the batch.
    pub seconds: f64,
    /// A band step's kernels' shares of `seconds`, in the order of [`StepInfo::parts`]; empty
    /// for any other step.
    pub parts: Vec<f64>,
}

/// A run's outputs, the seconds of each step, and each band step's nanoseconds per kernel
/// (when profiled; see `runtime::Exec::band_ns`).
type RunOutcome = (Vec<Tensor>, Vec<f64>, Vec<[u64; BAND_PARTS]>);

/// One kernel of a step that runs several per band ([`StepInfo::parts`]).
#[derive(Clone, Debug)]
pub struct PartInfo {
    /// The ops of its group, e.g. `dw+bn2+act2`.
    pub name: String,
    /// Multiply-accumulates per image.
    pub macs: u64,
}

/// Each kernel's share of a band step's `seconds`, in proportion to the `ns` its threads
/// spent in it (every kernel of a band runs on the thread that claimed the band); the kernels
/// the step has ([`crate::plan::Band::parts`]).
fn part_seconds(
    parts: &[Option<(&str, u64)>; BAND_PARTS],
    ns: [u64; BAND_PARTS],
    seconds: f64,
) -> Vec<f64> {
    let total = ns.iter().sum::<u64>().max(1) as f64;
    parts
        .iter()
        .zip(ns)
        .filter(|(p, _)| p.is_some())
        .map(|(_, ns)| seconds * ns as f64 / total)
        .collect()
}

/// Compiles graphs (a namespace for [`compile`]).
pub struct Jit;

impl Jit {
    /// Same as [`compile`].
    pub fn compile(
        g: &Graph,
        input_sizes: &[(usize, usize)],
        opts: &JitOptions,
    ) -> Result<CompiledNet, JitError> {
        compile(g, input_sizes, opts)
    }
}

/// The JIT memory, freed when the network is dropped.
struct Code(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is never touched again except to free it
// on drop; the code it holds is immutable and callable from any thread.
unsafe impl Send for Code {}
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the function pointers into this memory die with the `CompiledNet`.
            unsafe { m.free_memory() };
        }
    }
}

/// A network compiled for fixed per-image input sizes; runs batches of any size.
pub struct CompiledNet {
    plan: Plan,
    fns: Vec<KernelFn>,
    kernels: Vec<KernelInfo>,
    asm: Vec<(String, String)>,
    compile_time: Duration,
    threads: usize,
    parallel_min_ns: f64,
    input_names: Vec<String>,
    /// The plan as text ([`CompiledNet::plan_text`]).
    plan_text: String,
    /// Worker threads, started by the first parallel run; stopped (joined) on drop.
    pool: Pool,
    /// The intermediate buffers, allocated by the first run and kept.
    arena: std::sync::Mutex<Option<runtime::Kept>>,
    // Last: dropped after the function pointers.
    _code: Code,
    /// Constant tables the code reads.
    _tables: Vec<Box<[i64]>>,
}

/// Compiles `g` for inputs of `input_sizes[i] = (H, W)` (in `g.inputs` order): binds the
/// symbolic sizes, makes every shape concrete, groups the ops into fused kernels, and compiles
/// each distinct kernel once.
pub fn compile(
    g: &Graph,
    input_sizes: &[(usize, usize)],
    opts: &JitOptions,
) -> Result<CompiledNet, JitError> {
    let t0 = Instant::now();
    if input_sizes.len() != g.inputs.len() {
        return Err(JitError::new(format!(
            "the network has {} input(s), but {} size(s) were given",
            g.inputs.len(),
            input_sizes.len()
        )));
    }
    let bindings = bind_inputs(g, input_sizes).map_err(JitError::new)?;
    let conc = concretize(g, &bindings).map_err(|d| JitError::new(d.message))?;
    let (isa, fma, vec_isa) = host_target(opts)?;
    let choices = plan::Choices {
        fma,
        isa: vec_isa,
        algo: opts.conv_algo,
        wino_lanes: opts.winograd_lanes,
        gemm_cols: opts.gemm_cols,
        pair_any_width: opts.pair_any_width,
        guard: opts.guard_pages.at_end(),
    };
    let mut plan = plan::build(g, &conc, &choices)?;
    check_reads_have_buffers(&plan)?;
    let mut module = JITModule::new(JITBuilder::with_isa(
        isa,
        cranelift_module::default_libcall_names(),
    ));
    let k = compile_kernels(&mut module, &mut plan, opts.emit_asm)?;
    module
        .finalize_definitions()
        .map_err(|e| JitError::new(format!("internal error: finalizing the JIT code: {e}")))?;
    let fns: Vec<KernelFn> = k
        .ids
        .iter()
        .map(|&id| {
            let p = module.get_finalized_function(id);
            // SAFETY: every function was built with `kernel_signature`, the ABI of `KernelFn`.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
        })
        .collect();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let names: Vec<String> = k.info.iter().map(|k| k.name.clone()).collect();
    let plan_text = plan_text::render(g, &plan, &names, opts.parallel_min_ns);
    Ok(CompiledNet {
        plan_text,
        plan,
        fns,
        kernels: k.info,
        asm: k.asm,
        compile_time: t0.elapsed(),
        threads,
        parallel_min_ns: opts.parallel_min_ns,
        input_names: g.inputs.iter().map(|&n| g.node(n).name.clone()).collect(),
        pool: Pool::new(),
        arena: std::sync::Mutex::new(None),
        _code: Code(Some(module)),
        _tables: k.tables,
    })
}

/// Cranelift's target for this host (optimised for speed, the verifier as `opts.verify`
/// says), whether the kernels use FMA, and the vector path of the dense convolutions
/// (`opts.isa`, else the widest this CPU runs; Cranelift's own code without FMA, since the
/// microkernels are FMA code).
fn host_target(
    opts: &JitOptions,
) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, bool, Isa), JitError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| JitError::new(format!("internal error: Cranelift setting {k}={v}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(
        &mut flags,
        "enable_verifier",
        if opts.verify { "true" } else { "false" },
    )?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    let isa_builder = cranelift_native::builder()
        .map_err(|m| JitError::new(format!("the JIT does not support this machine: {m}")))?;
    let isa = isa_builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::new(format!("the JIT does not support this machine: {e}")))?;
    let has = |name: &str| {
        isa.isa_flags()
            .iter()
            .any(|f| f.name == name && f.as_bool() == Some(true))
    };
    let fma = opts.fma && has("has_fma");
    let vec_isa = match opts.isa {
        None => Isa::detect(),
        Some(i) if i.supported() => i,
        Some(i) => {
            return Err(JitError::new(format!(
                "this CPU does not run the {i} path (it runs: {})",
                Isa::available()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    Ok((isa, fma, if fma { vec_isa } else { Isa::Sse }))
}

/// Checks that every value a step reads (through its own buffer table, its band's and the
/// band's producer's) has a buffer.
fn check_reads_have_buffers(plan: &Plan) -> Result<(), JitError> {
    for s in &plan.steps {
        let band_args = s.band.as_ref().map_or(&[][..], |b| &b.step.args[..]);
        let pre_args = s
            .band
            .as_ref()
            .and_then(|b| b.pre.as_ref())
            .map_or(&[][..], |p| &p.step.args[..]);
        for a in s.args.iter().chain(band_args).chain(pre_args) {
            if let Arg::Value { node, .. } = a
                && plan.loc.get(*node).copied().flatten().is_none()
            {
                return Err(JitError::new(format!(
                    "internal error: step `{}` reads a value with no buffer",
                    s.name
                )));
            }
        }
    }
    Ok(())
}

/// The kernels of a plan as [`compile_kernels`] declares them.
struct Kernels {
    /// Per kernel, its function in the module, its description, and its disassembly (when
    /// asked for).
    ids: Vec<cranelift_module::FuncId>,
    info: Vec<KernelInfo>,
    asm: Vec<(String, String)>,
    /// Constant tables the code reads.
    tables: Vec<Box<[i64]>>,
}

/// The kernel cache: one function in `module` per distinct spec of the plan's steps (a band
/// pair's producer and depthwise kernels, then its own), each step's `kernel` set to its
/// index. Kernels are named `k{index}_{spec name}`; `emit_asm` keeps their disassembly.
fn compile_kernels(
    module: &mut JITModule,
    plan: &mut Plan,
    emit_asm: bool,
) -> Result<Kernels, JitError> {
    let call_conv = module.isa().default_call_conv();
    let frontend = module.isa().frontend_config();
    let cs = if emit_asm {
        module.isa().to_capstone().ok()
    } else {
        None
    };
    let mut cache: HashMap<KernelSpec, usize> = HashMap::new();
    let mut out = Kernels {
        ids: Vec::new(),
        info: Vec::new(),
        asm: Vec::new(),
        tables: Vec::new(),
    };
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    // Compiles `spec` for the step `step_name` unless an identical kernel exists.
    let mut kernel_for = |spec: &KernelSpec, step_name: &str| -> Result<usize, JitError> {
        if let Some(&k) = cache.get(spec) {
            out.info[k].steps.push(step_name.to_string());
            return Ok(k);
        }
        let k = out.info.len();
        let name = format!("k{k}_{}", spec.name());
        let tk = Instant::now();
        ctx.func.signature = codegen::kernel_signature(call_conv);
        out.tables.extend(codegen::build(
            &mut ctx.func,
            &mut fctx,
            spec,
            frontend,
            call_conv,
        ));
        let id = module
            .declare_function(&name, Linkage::Local, &ctx.func.signature)
            .map_err(|e| JitError::new(format!("internal error: declaring {name}: {e}")))?;
        ctx.set_disasm(emit_asm);
        module.define_function(id, &mut ctx).map_err(|e| {
            JitError::new(format!(
                "internal error: compiling kernel {name} for `{step_name}`: {e:?}"
            ))
        })?;
        if let (Some(cs), Some(cc)) = (&cs, ctx.compiled_code()) {
            let mut text: String = spec
                .microkernel_notes()
                .iter()
                .map(|n| format!("{n}\n"))
                .collect();
            text += &cc
                .disassemble(Some(&ctx.func.params), cs)
                .unwrap_or_else(|e| format!("(no disassembly: {e})"));
            out.asm.push((name.clone(), text));
        }
        module.clear_context(&mut ctx);
        out.info.push(KernelInfo {
            name,
            compile_time: tk.elapsed(),
            steps: vec![step_name.to_string()],
        });
        out.ids.push(id);
        cache.insert(spec.clone(), k);
        Ok(k)
    };
    for step in &mut plan.steps {
        // A band pair runs its depthwise kernel, then its own.
        if let Some(b) = step.band.as_deref_mut() {
            if let Some(p) = b.pre.as_deref_mut() {
                p.step.kernel = kernel_for(&p.step.spec, &step.name)?;
            }
            b.step.kernel = kernel_for(&b.step.spec, &step.name)?;
        }
        step.kernel = kernel_for(&step.spec, &step.name)?;
    }
    Ok(out)
}

impl CompiledNet {
    /// Runs the network on one `[N, C, H, W]` tensor per input (the compiled per-image sizes,
    /// a common N >= 1); returns one `[N, C, H, W]` tensor per output, in order.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        self.run_impl(inputs, self.threads, false).map(|r| r.0)
    }

    /// [`run`](Self::run) with `threads` threads (0: the compiled default).
    pub fn run_threads(&self, inputs: &[Tensor], threads: usize) -> Result<Vec<Tensor>, JitError> {
        let t = if threads == 0 { self.threads } else { threads };
        self.run_impl(inputs, t, false).map(|r| r.0)
    }

    /// [`run`](Self::run), also timing every step (threads meet at a barrier after each).
    pub fn run_profiled(
        &self,
        inputs: &[Tensor],
    ) -> Result<(Vec<Tensor>, Vec<StepTime>), JitError> {
        let (out, times, band_ns) = self.run_impl(inputs, self.threads, true)?;
        let times = self
            .plan
            .steps
            .iter()
            .zip(times)
            .zip(band_ns)
            .map(|((s, seconds), ns)| StepTime {
                name: s.name.clone(),
                kernel: self.kernel_name(s),
                seconds,
                parts: s
                    .band
                    .as_ref()
                    .map_or_else(Vec::new, |b| part_seconds(&b.parts(), ns, seconds)),
            })
            .collect();
        Ok((out, times))
    }

    fn run_impl(
        &self,
        inputs: &[Tensor],
        threads: usize,
        profile: bool,
    ) -> Result<RunOutcome, JitError> {
        let batch = self.check_inputs(inputs)?;
        let mut outs: Vec<Vec<f32>> = Vec::with_capacity(self.plan.out_shapes.len());
        for j in 0..self.plan.out_shapes.len() {
            let n = runtime::out_len(&self.plan, j)
                .checked_mul(batch)
                .ok_or_else(|| JitError::new("the output is too large"))?;
            // Not zero-filled: the program writes every value of every output (each step
            // writes its whole value), and the length is set only after a successful run.
            let mut v = Vec::new();
            v.try_reserve_exact(n).map_err(|_| {
                JitError::new(format!("not enough memory for an output of {n} values"))
            })?;
            outs.push(v);
        }
        let mut exec = Exec {
            plan: &self.plan,
            fns: &self.fns,
            inputs: inputs
                .iter()
                .map(|t| P(t.data().as_ptr().cast_mut()))
                .collect(),
            outputs: outs
                .iter_mut()
                .map(|v| P(v.spare_capacity_mut().as_mut_ptr().cast::<f32>()))
                .collect(),
            batch,
            threads: threads.max(1),
            parallel_min_ns: self.parallel_min_ns,
            arena: P(std::ptr::null_mut()),
            tscratch: P(std::ptr::null_mut()),
            band_ns: if profile {
                self.plan.steps.iter().map(|_| Default::default()).collect()
            } else {
                Vec::new()
            },
        };
        let times = exec
            .run(&self.pool, &self.arena, profile)
            .map_err(JitError::new)?;
        let band_ns: Vec<[u64; BAND_PARTS]> = exec
            .band_ns
            .iter()
            .map(|a| a.each_ref().map(|n| n.load(Ordering::Relaxed)))
            .collect();
        let mut tensors = Vec::with_capacity(outs.len());
        for (mut v, &[c, h, w]) in outs.into_iter().zip(&self.plan.out_shapes) {
            // SAFETY: the capacity is `batch * c * h * w` (reserved above) and the run wrote
            // every one of those values (see above).
            unsafe { v.set_len(batch * c * h * w) };
            tensors
                .push(Tensor::new(vec![batch, c, h, w], v).map_err(|e| JitError::new(e.message))?);
        }
        Ok((tensors, times, band_ns))
    }

    /// Runs `batch` images from raw per-input slices (`N*C*H*W` values each) into caller-owned
    /// output slices of exactly `N*C*H*W` values each. Nothing is read or written outside them.
    pub fn run_into(
        &self,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
        batch: usize,
    ) -> Result<(), JitError> {
        if inputs.len() != self.plan.in_shapes.len() || outputs.len() != self.plan.out_shapes.len()
        {
            return Err(JitError::new(format!(
                "the network has {} input(s) and {} output(s), {} and {} buffers were given",
                self.plan.in_shapes.len(),
                self.plan.out_shapes.len(),
                inputs.len(),
                outputs.len()
            )));
        }
        if batch == 0 {
            return Err(JitError::new("a batch of 0 images, nothing to run"));
        }
        for (i, x) in inputs.iter().enumerate() {
            if Some(x.len()) != runtime::in_len(&self.plan, i).checked_mul(batch) {
                return Err(JitError::new(format!(
                    "input `{}` needs {batch} x {} values, found {}",
                    self.input_names[i],
                    fmt_shape(&self.plan.in_shapes[i]),
                    x.len()
                )));
            }
        }
        for (j, y) in outputs.iter().enumerate() {
            if Some(y.len()) != runtime::out_len(&self.plan, j).checked_mul(batch) {
                return Err(JitError::new(format!(
                    "output {j} needs {batch} x {} values, found {}",
                    fmt_shape(&self.plan.out_shapes[j]),
                    y.len()
                )));
            }
        }
        let mut exec = Exec {
            plan: &self.plan,
            fns: &self.fns,
            inputs: inputs.iter().map(|x| P(x.as_ptr().cast_mut())).collect(),
            outputs: outputs.iter_mut().map(|y| P(y.as_mut_ptr())).collect(),
            batch,
            threads: self.threads.max(1),
            parallel_min_ns: self.parallel_min_ns,
            arena: P(std::ptr::null_mut()),
            tscratch: P(std::ptr::null_mut()),
            band_ns: Vec::new(),
        };
        exec.run(&self.pool, &self.arena, false)
            .map_err(JitError::new)?;
        Ok(())
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<usize, JitError> {
        if inputs.len() != self.plan.in_shapes.len() {
            return Err(JitError::new(format!(
                "the network has {} input(s) ({}), but {} tensor(s) were given",
                self.plan.in_shapes.len(),
                self.input_names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                inputs.len()
            )));
        }
        let mut batch = None;
        for (i, t) in inputs.iter().enumerate() {
            let name = &self.input_names[i];
            let [c, h, w] = self.plan.in_shapes[i];
            let &[n, tc, th, tw] = t.shape() else {
                return Err(JitError::new(format!(
                    "input `{name}`: expected a 4-D [N, C, H, W] tensor, found shape {}",
                    fmt_shape(t.shape())
                )));
            };
            if (tc, th, tw) != (c, h, w) {
                return Err(JitError::new(format!(
                    "input `{name}` was compiled for [N, {c}, {h}, {w}], found shape {}",
                    fmt_shape(t.shape())
                )));
            }
            if n == 0 {
                return Err(JitError::new(format!(
                    "input `{name}` has a batch of 0 images, nothing to run"
                )));
            }
            match batch {
                Some(b) if b != n => {
                    return Err(JitError::new(format!(
                        "input `{name}` has a batch of {n} image(s) but another input has {b}: every input needs the same N"
                    )));
                }
                _ => batch = Some(n),
            }
        }
        batch.ok_or_else(|| JitError::new("the network has no inputs"))
    }

    /// Each kernel's name and disassembly (empty unless compiled with
    /// [`JitOptions::emit_asm`]).
    pub fn disassembly(&self) -> Vec<(String, String)> {
        self.asm.clone()
    }

    /// The plan as text: where every value lives, each step's kernel and schedule, its input
    /// layout and whether it runs on several threads (`convc dump --format plan`).
    pub fn plan_text(&self) -> &str {
        &self.plan_text
    }

    /// Wall-clock time of [`compile`] (planning, packing and code generation).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The distinct kernels, with their compile times and the steps that run them.
    pub fn kernels(&self) -> &[KernelInfo] {
        &self.kernels
    }

    /// The kernel a step runs; a band pair's two as `depthwise then pointwise`.
    fn kernel_name(&self, s: &plan::Step) -> String {
        let own = &self.kernels[s.kernel].name;
        match &s.band {
            Some(b) => {
                let pre = b.pre.as_ref().map_or(String::new(), |p| {
                    format!("{} then ", self.kernels[p.step.kernel].name)
                });
                format!("{pre}{} then {own}", self.kernels[b.step.kernel].name)
            }
            None => own.clone(),
        }
    }

    /// The steps of the program in execution order.
    pub fn steps(&self) -> Vec<StepInfo> {
        self.plan
            .steps
            .iter()
            .map(|s| StepInfo {
                name: s.name.clone(),
                kernel: self.kernel_name(s),
                macs: s.macs,
                parts: s.band.as_ref().map_or_else(Vec::new, |b| {
                    b.parts()
                        .into_iter()
                        .flatten()
                        .map(|(name, macs)| PartInfo {
                            name: name.to_string(),
                            macs,
                        })
                        .collect()
                }),
            })
            .collect()
    }

    /// Bytes of intermediate buffers one run allocates (after reuse of dead values).
    pub fn arena_bytes(&self) -> usize {
        self.plan.arena_len * 4
    }

    /// Per-image `[C, H, W]` of each output.
    pub fn output_shapes(&self) -> &[[usize; 3]] {
        &self.plan.out_shapes
    }

    /// The default number of threads of [`run`](Self::run).
    pub fn threads(&self) -> usize {
        self.threads
    }
}
