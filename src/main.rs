//! `convc`: the command line of the convolution-network compiler.

mod budget;
mod commands;
mod data;
mod driver;
mod engine;
mod plot;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// convc: a convolution-network compiler. Reads `.conv` networks, shows their graphs and costs,
/// explains the asymmetric and depthwise-separable forms of every convolution, and runs them.
#[derive(Parser, Debug)]
#[command(name = "convc", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options that choose the optimisation passes.
#[derive(Args, Debug, Clone, Default)]
pub struct PassOpts {
    /// Run the graph as written: no optimisation passes (same as `--passes none`).
    #[arg(long, conflicts_with_all = ["passes", "opt"])]
    pub no_opt: bool,
    /// Run the default pipeline (the default).
    #[arg(long)]
    pub opt: bool,
    /// Run exactly these passes, in order (fold-batchnorm, decompose, fuse, dce), or `none`.
    #[arg(long, value_delimiter = ',', value_name = "P1,P2,...")]
    pub passes: Option<Vec<String>>,
    /// Let the decompositions truncate a layer whose relative error stays at or below T.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub tolerance: Option<f64>,
}

/// Binding of symbolic input sizes.
#[derive(Args, Debug, Clone, Default)]
pub struct SizeOpt {
    /// Bind symbolic input sizes: every symbolic height to H, every symbolic width to W.
    #[arg(long, value_name = "HxW", value_parser = driver::parse_size)]
    pub size: Option<(usize, usize)>,
}

/// The vector path of the JIT's dense convolutions.
#[derive(Args, Debug, Clone, Default)]
pub struct IsaOpt {
    /// The vector instructions of the convolutions: sse (Cranelift's own 128-bit code), avx2 or
    /// avx512 (microkernels); default: the widest this CPU runs (or CONVC_ISA). A path the CPU
    /// lacks is an error.
    #[arg(long, value_name = "ISA", value_parser = ["sse", "avx2", "avx512"])]
    pub isa: Option<String>,
    /// How 3x3 and Kx1 stride-1 convolutions run on the avx2 and avx512 paths: direct,
    /// winograd (F(4x4,3x3), or F(2x2,3x3) where F(4x4)'s error exceeds the budget; for Kx1,
    /// F(m,K) down the columns with the cheapest m within the budget), winograd-f2,
    /// winograd-f4 (output tiles of 2 or 4 wherever they apply), or auto (per layer, by a cost
    /// model; the default, or CONVC_CONV_ALGO).
    #[arg(long, value_name = "ALGO", value_parser = ["direct", "winograd", "winograd-f2", "winograd-f4", "auto"])]
    pub conv_algo: Option<String>,
}

/// Output format of `dump`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One line per node, for people.
    #[default]
    Text,
    /// Graphviz dot.
    Dot,
    /// JSON, for tools.
    Json,
    /// The machine code the JIT generates for every kernel (needs known sizes).
    Asm,
    /// The JIT's plan: where each value lives, each step's kernel, schedule, input layout and
    /// threads (needs known sizes).
    Plan,
    /// The graph drawn by Graphviz (`dot -Tsvg`; needs Graphviz installed).
    Svg,
}

/// File format of the outputs of a folder run.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutFormat {
    /// float32 arrays.
    #[default]
    Npy,
    /// Images (1 or 3 channels) or labelled channel grids.
    Png,
}

/// Which engine runs the network.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Cranelift-compiled machine code (the default).
    #[default]
    Jit,
    /// The reference interpreter.
    Interp,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a thread count: give a whole number from 1 to 1024"
        )),
    }
}

fn parse_batch(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=65536).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a batch size: give a whole number from 1 to 65536"
        )),
    }
}

/// Parses an error budget: a finite relative error at least 0.
fn parse_budget(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "`{s}` is not an error budget: give a relative error at least 0, e.g. 0.01"
        )),
    }
}

fn parse_samples(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a sample count: give a whole number from 1 to 64"
        )),
    }
}

/// Options that measure errors on data and choose a network within an error budget.
#[derive(Args, Debug, Clone, Default)]
pub struct BudgetOpts {
    /// Choose each conv's form and rank for the fewest MACs whose network output error on the
    /// samples stays within E (relative).
    #[arg(long, value_name = "E", value_parser = parse_budget, allow_negative_numbers = true)]
    pub budget: Option<f64>,
    /// Sample inputs (.png or .npy, as `run` reads them) for measuring errors; default: random
    /// images (seeded).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// Random sample inputs to measure on, when --data is not given.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_samples)]
    pub samples: usize,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a time: give seconds from 0 to 3600")),
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse a spec, infer every shape, load every weight, and print one row per layer.
    Check {
        /// The .conv or .onnx file.
        model: PathBuf,
        #[command(flatten)]
        size: SizeOpt,
    },
    /// Print the graph IR after the optimisation passes (or after each one).
    Dump {
        /// The .conv or .onnx file.
        model: PathBuf,
        #[command(flatten)]
        passes: PassOpts,
        /// Print the graph after every pass, not only at the end.
        #[arg(long)]
        print_after_all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        size: SizeOpt,
        #[command(flatten)]
        isa: IsaOpt,
    },
    /// Explain every convolution: its standard, asymmetric and depthwise-separable forms side by
    /// side, with weight shapes, parameters, MACs, the rank each needs to be exact for these
    /// weights, and the error of cheaper truncations.
    Explain {
        /// The .conv or .onnx file.
        model: PathBuf,
        /// Only this layer.
        #[arg(long, value_name = "NAME")]
        layer: Option<String>,
        #[command(flatten)]
        size: SizeOpt,
        #[command(flatten)]
        budget: BudgetOpts,
        /// Measure each truncation's error on data (the layer's input activations on the
        /// samples) beside the error of the weights.
        #[arg(long)]
        measure: bool,
        /// Write plots (SVG and PNG) into this folder: singular-value spectra, error-vs-MACs
        /// curves, the point the budget chose.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// With --budget: do not time the networks with the JIT (for reproducible output).
        #[arg(long)]
        no_time: bool,
    },
    /// Time the network: compile time, median time per image, GFLOP/s.
    Bench {
        /// The .conv or .onnx file.
        model: PathBuf,
        /// The engine.
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        /// Threads (default: all cores).
        #[arg(long, value_parser = parse_threads)]
        threads: Option<usize>,
        /// Images per run.
        #[arg(long, default_value_t = 1, value_parser = parse_batch)]
        batch: usize,
        #[command(flatten)]
        size: SizeOpt,
        #[command(flatten)]
        passes: PassOpts,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also print time and GFLOP/s per fused kernel group, and per kernel inside a band step
        /// (JIT only).
        #[arg(long)]
        profile: bool,
        /// Least seconds to spend measuring (after one warm-up run).
        #[arg(long, default_value_t = 1.0, value_parser = parse_seconds, value_name = "S")]
        min_time: f64,
        #[command(flatten)]
        isa: IsaOpt,
    },
    /// Write a model (ONNX) as a readable .conv spec plus a safetensors file of its weights
    /// (OUT.safetensors beside OUT.conv).
    Import {
        /// The .onnx file.
        model: PathBuf,
        /// The .conv file to write.
        #[arg(short = 'o', long = "output", value_name = "OUT.conv")]
        output: PathBuf,
    },
    /// Write the optimised graph (batchnorms folded, convolutions decomposed by the passes) as
    /// a standard ONNX model (opset 17), its parameters as initializers; with --budget E, the
    /// cheapest network whose output error on the samples stays within E.
    Export {
        /// The .conv or .onnx file.
        model: PathBuf,
        /// The .onnx file to write.
        #[arg(short = 'o', long = "output", value_name = "OUT.onnx")]
        output: PathBuf,
        #[command(flatten)]
        passes: PassOpts,
        #[command(flatten)]
        size: SizeOpt,
        #[command(flatten)]
        budget: BudgetOpts,
    },
    /// Run the network on images (.png) or arrays (.npy) and write or summarise its outputs.
    Run {
        /// The .conv or .onnx file.
        model: PathBuf,
        /// Input files: PATH... (several form a batch) or NAME=PATH per network input.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<String>,
        /// Output file (.npy or .png), once per network output, in order; for a folder, glob
        /// or @LIST input, the folder to write one output per input into.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        outputs: Vec<PathBuf>,
        /// Output files of a folder run: npy (the default) or png.
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<OutFormat>,
        /// The engine.
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        #[command(flatten)]
        passes: PassOpts,
        /// Threads (default: all cores).
        #[arg(long, value_parser = parse_threads)]
        threads: Option<usize>,
        #[command(flatten)]
        size: SizeOpt,
        #[command(flatten)]
        isa: IsaOpt,
        /// Run the cheapest network whose output error on seeded random samples of the
        /// inputs' size stays within E (as `explain --budget E` chooses it).
        #[arg(long, value_name = "E", value_parser = parse_budget, allow_negative_numbers = true)]
        budget: Option<f64>,
        /// Also print on stderr the time of the passes, of code generation and of the run.
        #[arg(short = 'v', long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print and exit 0; usage errors exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Check { model, size } => commands::check::run(&model, size.size),
        Command::Dump {
            model,
            passes,
            print_after_all,
            format,
            size,
            isa,
        } => engine::force_isa(&isa).and_then(|()| {
            commands::dump::run(&model, &passes, print_after_all, format, size.size)
        }),
        Command::Bench {
            model,
            backend,
            threads,
            batch,
            size,
            passes,
            json,
            profile,
            min_time,
            isa,
        } => engine::force_isa(&isa).and_then(|()| {
            commands::bench::run(commands::bench::BenchArgs {
                model: &model,
                backend,
                threads,
                batch,
                size: size.size,
                passes: &passes,
                json,
                profile,
                min_time: std::time::Duration::from_secs_f64(min_time),
            })
        }),
        Command::Import { model, output } => commands::import::run(&model, &output),
        Command::Export {
            model,
            output,
            passes,
            size,
            budget,
        } => commands::export::run(commands::export::ExportArgs {
            model: &model,
            out: &output,
            passes: &passes,
            size: size.size,
            budget: &budget,
        }),
        Command::Explain {
            model,
            layer,
            size,
            budget,
            measure,
            plot,
            no_time,
        } => commands::explain::run(commands::explain::ExplainArgs {
            model: &model,
            layer: layer.as_deref(),
            size: size.size,
            budget: &budget,
            measure,
            plot: plot.as_deref(),
            time: !no_time,
        }),
        Command::Run {
            model,
            inputs,
            outputs,
            format,
            backend,
            passes,
            threads,
            size,
            isa,
            budget,
            verbose,
        } => engine::force_isa(&isa).and_then(|()| {
            commands::run::run(commands::run::RunArgs {
                model: &model,
                inputs: &inputs,
                outputs: &outputs,
                format,
                backend,
                passes: &passes,
                threads,
                size: size.size,
                budget,
                verbose,
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            driver::note(&format!("{f}\n"));
            ExitCode::from(f.exit_code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
