//! The engines that run a graph: Cranelift machine code (`jit`) or the reference interpreter.

use std::time::Duration;

use convc_ir::Graph;
use convc_tensor::Tensor;

use crate::Backend;
use crate::driver::{Failure, input_err};

/// A graph ready to run on one engine.
pub enum Engine<'g> {
    /// The reference interpreter.
    Interp {
        /// The graph.
        graph: &'g Graph,
        /// Threads.
        threads: usize,
    },
    /// Compiled machine code.
    Jit(Box<convc_jit::CompiledNet>),
}

impl<'g> Engine<'g> {
    /// Prepares `g` (with inputs of `sizes`, per image) for `backend`. `verify` keeps
    /// Cranelift's verifier on (off for benchmarks).
    pub fn new(
        g: &'g Graph,
        sizes: &[(usize, usize)],
        backend: Backend,
        threads: usize,
        verify: bool,
    ) -> Result<Engine<'g>, Failure> {
        match backend {
            Backend::Interp => Ok(Engine::Interp { graph: g, threads }),
            Backend::Jit => {
                let opts = convc_jit::JitOptions {
                    threads,
                    verify,
                    isa: isa_from_env()?,
                    conv_algo: algo_from_env()?,
                    ..Default::default()
                };
                let net = convc_jit::compile(g, sizes, &opts).map_err(input_err)?;
                Ok(Engine::Jit(Box::new(net)))
            }
        }
    }
    /// Time spent compiling.
    pub fn compile_time(&self) -> Duration {
        match self {
            Engine::Interp { .. } => Duration::ZERO,
            Engine::Jit(net) => net.compile_time(),
        }
    }
    /// The engine's name as reported.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Engine::Interp { .. } => "interp",
            Engine::Jit(_) => "jit",
        }
    }
    /// Runs a batch `[N, C, H, W]` per input.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Failure> {
        match self {
            Engine::Interp { graph, threads } => {
                convc_interp::run_threads(graph, inputs, *threads).map_err(input_err)
            }
            Engine::Jit(net) => net.run(inputs).map_err(input_err),
        }
    }
}

/// The path `--isa` forces (set once, before a command runs).
static FORCED_ISA: std::sync::OnceLock<convc_jit::Isa> = std::sync::OnceLock::new();

/// Records `--isa` for [`isa_from_env`] (it wins over `CONVC_ISA`).
pub fn force_isa(opt: &crate::IsaOpt) -> Result<(), Failure> {
    if let Some(name) = &opt.isa {
        let isa = convc_jit::Isa::parse(name).ok_or_else(|| {
            Failure::Usage(format!(
                "error: --isa {name} is not a vector path: write sse, avx2 or avx512"
            ))
        })?;
        let _ = FORCED_ISA.set(isa);
    }
    if let Some(name) = &opt.conv_algo {
        let algo = convc_jit::ConvAlgo::parse(name).ok_or_else(|| {
            Failure::Usage(format!(
                "error: --conv-algo {name} is not an algorithm: write direct, winograd, winograd-f2, winograd-f4 or auto"
            ))
        })?;
        let _ = FORCED_ALGO.set(algo);
    }
    Ok(())
}

/// The algorithm `--conv-algo` forces (set once, before a command runs).
static FORCED_ALGO: std::sync::OnceLock<convc_jit::ConvAlgo> = std::sync::OnceLock::new();

/// The algorithm of 3x3 stride-1 convolutions forced by `--conv-algo`, else by the
/// environment (`CONVC_CONV_ALGO=direct|winograd|auto`), else `auto`. Another value is a usage
/// error (exit 2).
pub fn algo_from_env() -> Result<convc_jit::ConvAlgo, Failure> {
    if let Some(&a) = FORCED_ALGO.get() {
        return Ok(a);
    }
    let bad = |v: &str| {
        Failure::Usage(format!(
            "error: CONVC_CONV_ALGO={v} is not an algorithm: write direct, winograd, winograd-f2, winograd-f4 or auto"
        ))
    };
    match std::env::var("CONVC_CONV_ALGO") {
        Err(std::env::VarError::NotPresent) => Ok(convc_jit::ConvAlgo::Auto),
        Ok(v) if v.is_empty() => Ok(convc_jit::ConvAlgo::Auto),
        Ok(v) => convc_jit::ConvAlgo::parse(&v).ok_or_else(|| bad(&v)),
        Err(std::env::VarError::NotUnicode(_)) => Err(bad("?")),
    }
}

/// The vector path forced by `--isa`, else by the environment (`CONVC_ISA=sse|avx2|avx512`),
/// or `None` (the widest the host runs). Another value is a usage error (exit 2); a path the
/// CPU lacks is refused by the JIT with the paths it has.
pub fn isa_from_env() -> Result<Option<convc_jit::Isa>, Failure> {
    if let Some(&isa) = FORCED_ISA.get() {
        return Ok(Some(isa));
    }
    match std::env::var("CONVC_ISA") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => convc_jit::Isa::parse(&v).map(Some).ok_or_else(|| {
            Failure::Usage(format!(
                "error: CONVC_ISA={v} is not a vector path: write sse, avx2 or avx512"
            ))
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::Usage(
            "error: CONVC_ISA is not a vector path: write sse, avx2 or avx512".into(),
        )),
    }
}

/// Measures the microkernel tiles of the path the JIT will use, before compiling, so that a
/// benchmark reports this first-use measurement apart from code generation (it is cached for
/// the process). `None` on Cranelift's own path.
pub fn tune_first() -> Result<Option<convc_jit::Tuning>, Failure> {
    let isa = isa_from_env()?.unwrap_or_else(convc_jit::Isa::detect);
    Ok((isa != convc_jit::Isa::Sse && isa.supported()).then(|| convc_jit::tune(isa)))
}

/// Measures the Winograd transforms' costs on the selected path before compiling (as
/// [`tune_first`]), so that the first compile does not count it; `None` on the SSE path.
pub fn winograd_costs_first() -> Result<WinogradCosts, Failure> {
    let isa = isa_from_env()?.unwrap_or_else(convc_jit::Isa::detect);
    Ok((isa != convc_jit::Isa::Sse && isa.supported()).then(|| convc_jit::winograd_costs(isa)))
}

/// Per Winograd variant, its transforms' costs (input, output) in multiply-add equivalents per
/// tile and channel, and the measurement's time.
pub type WinogradCosts = Option<(Vec<(String, f64, f64)>, std::time::Duration)>;
