//! The convc optimiser: a [`Pass`] trait and a [`PassManager`] that runs a pipeline of passes
//! (re-validating every shape after each one), and the passes of the contract:
//!
//! | pass | type | what it does |
//! |---|---|---|
//! | `fold-batchnorm` | [`FoldBatchnorm`] | folds a batchnorm that follows a conv into the conv's weights and bias |
//! | `decompose` | [`Decompose`] | rewrites a conv into an asymmetric or depthwise-separable form (SVD) when that is within the tolerance and cheaper by the [cost model](decompose) |
//! | `fuse` | [`Fuse`] | reserved for the JIT's fusion grouping; here it changes nothing and says so |
//! | `dce` | [`Dce`] | removes what no output depends on |
//!
//! [`explain()`] is the analysis behind `convc explain`: every form of a conv side by side,
//! their costs, the rank each needs to be exact, and the error of cheaper truncations.

#![warn(missing_docs)]

pub mod budget;
pub mod cache;
pub mod dce;
pub mod decompose;
pub mod explain;
pub mod factor;
pub mod fold;
pub mod fuse;
pub mod measure;
pub mod screen;

use std::fmt;

use convc_ir::{Graph, shape};
use convc_lang::Diagnostic;

pub use dce::Dce;
pub use decompose::{Decompose, INTERMEDIATE_COST, Rewrite};
pub use explain::{
    ConvExplanation, ExplainError, explain, explain_with, render_explanation, render_explanations,
};
pub use factor::Form;
pub use fold::{Fold, FoldBatchnorm};
pub use fuse::Fuse;

/// The relative error every default rewrite stays within ("exact up to float rounding"). A
/// smaller `--tolerance` is treated as this value: float32 weights cannot be refactored more
/// exactly than their own rounding.
pub const EXACT_TOLERANCE: f64 = 1e-6;

/// The names of every pass, in default-pipeline order.
pub const PASS_NAMES: &[&str] = &["fold-batchnorm", "decompose", "fuse", "dce"];

/// What every pass may read besides the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct PassContext {
    /// The largest relative weight-space error (`||W - W'||_F / ||W||_F`) a rewrite of one layer
    /// may have. Default [`EXACT_TOLERANCE`] (1e-6): only exact rewrites.
    pub tolerance: f64,
}

impl Default for PassContext {
    fn default() -> PassContext {
        PassContext {
            tolerance: EXACT_TOLERANCE,
        }
    }
}

impl PassContext {
    /// A context with this tolerance (checked when a pass runs: it must be finite and >= 0).
    pub fn with_tolerance(tolerance: f64) -> PassContext {
        PassContext { tolerance }
    }

    /// The tolerance in force: the given one, at least [`EXACT_TOLERANCE`].
    pub fn effective_tolerance(&self) -> f64 {
        self.tolerance.max(EXACT_TOLERANCE)
    }

    /// Checks the tolerance is a usable number.
    pub fn check(&self) -> Result<(), PassError> {
        if self.tolerance.is_finite() && self.tolerance >= 0.0 {
            Ok(())
        } else {
            Err(PassError::BadTolerance(self.tolerance))
        }
    }
}

/// Why passes could not run.
#[derive(Clone, Debug, PartialEq)]
pub enum PassError {
    /// A pipeline named a pass that does not exist.
    UnknownPass {
        /// The name as given.
        name: String,
    },
    /// `none` was combined with other pass names.
    NoneWithOthers,
    /// The tolerance is negative, NaN or infinite.
    BadTolerance(f64),
    /// A pass left a graph whose shapes do not check (a bug in the pass): the diagnostic is
    /// located at the layer at fault.
    Invalid {
        /// The pass that ran last.
        pass: &'static str,
        /// What the validation found.
        diagnostic: Diagnostic,
    },
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassError::UnknownPass { name } => {
                write!(
                    f,
                    "unknown pass `{name}`: the passes are {} (or `none`)",
                    PASS_NAMES.join(", ")
                )
            }
            PassError::NoneWithOthers => f.write_str("`none` cannot be combined with other passes"),
            PassError::BadTolerance(t) => {
                write!(
                    f,
                    "the tolerance must be a finite number at least 0, found {t}"
                )
            }
            PassError::Invalid { pass, diagnostic } => write!(
                f,
                "internal error: the graph is invalid after pass `{pass}`: {}",
                diagnostic.message
            ),
        }
    }
}

impl std::error::Error for PassError {}

/// What a pass did, for the user (the CLI prints it on stderr).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    /// The pass.
    pub pass: &'static str,
    /// Batchnorms folded into convs (`fold-batchnorm`).
    pub folds: Vec<Fold>,
    /// Convs rewritten into a decomposed form (`decompose`).
    pub rewrites: Vec<Rewrite>,
    /// Names of the nodes removed (`dce`).
    pub removed: Vec<String>,
    /// Anything else worth saying (layers left alone and why, a pass that does nothing).
    pub notes: Vec<String>,
}

impl PassReport {
    /// An empty report for `pass`.
    pub fn new(pass: &'static str) -> PassReport {
        PassReport {
            pass,
            ..PassReport::default()
        }
    }

    /// True when the pass changed the graph.
    pub fn changed(&self) -> bool {
        !(self.folds.is_empty() && self.rewrites.is_empty() && self.removed.is_empty())
    }

    /// The truncations: rewrites that are lossy (error above [`EXACT_TOLERANCE`]).
    pub fn truncations(&self) -> impl Iterator<Item = &Rewrite> {
        self.rewrites.iter().filter(|r| r.is_truncation())
    }
}

impl fmt::Display for PassReport {
    /// One line per change, each prefixed with the pass name: `decompose: conv1 -> ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for x in &self.folds {
            writeln!(f, "{}: {x}", self.pass)?;
        }
        for x in &self.rewrites {
            writeln!(f, "{}: {x}", self.pass)?;
        }
        if !self.removed.is_empty() {
            writeln!(f, "{}: removed {}", self.pass, self.removed.join(", "))?;
        }
        for x in &self.notes {
            writeln!(f, "{}: {x}", self.pass)?;
        }
        Ok(())
    }
}

/// One optimisation pass.
pub trait Pass {
    /// The name used by `--passes` (`fold-batchnorm`, `decompose`, `fuse`, `dce`).
    fn name(&self) -> &'static str;
    /// Rewrites the graph in place and says what it did. The graph stays valid: the manager
    /// re-validates every shape afterwards.
    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<PassReport, PassError>;
}

/// The pass called `name`, if there is one.
pub fn pass_by_name(name: &str) -> Option<Box<dyn Pass>> {
    Some(match name {
        "fold-batchnorm" => Box::new(FoldBatchnorm),
        "decompose" => Box::new(Decompose),
        "fuse" => Box::new(Fuse),
        "dce" => Box::new(Dce),
        _ => return None,
    })
}

/// A pipeline of passes, run in order.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
}

impl fmt::Debug for PassManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassManager")
            .field("passes", &self.names())
            .finish()
    }
}

impl Default for PassManager {
    fn default() -> PassManager {
        PassManager::default_pipeline()
    }
}

impl PassManager {
    /// The default pipeline: `fold-batchnorm, decompose, fuse, dce`.
    pub fn default_pipeline() -> PassManager {
        PassManager {
            passes: PASS_NAMES.iter().filter_map(|n| pass_by_name(n)).collect(),
        }
    }

    /// No passes (`--no-opt`, `--passes none`).
    pub fn none() -> PassManager {
        PassManager { passes: Vec::new() }
    }

    /// The passes named, in order (`--passes P1,P2,...`). `["none"]` is the empty pipeline;
    /// an unknown name is an error listing the valid ones. Names may repeat.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<PassManager, PassError> {
        let names: Vec<&str> = names.iter().map(|s| s.as_ref().trim()).collect();
        if names.contains(&"none") {
            return if names.iter().all(|n| *n == "none") {
                Ok(PassManager::none())
            } else {
                Err(PassError::NoneWithOthers)
            };
        }
        let mut passes = Vec::with_capacity(names.len());
        for n in names {
            passes.push(pass_by_name(n).ok_or_else(|| PassError::UnknownPass {
                name: n.to_string(),
            })?);
        }
        Ok(PassManager { passes })
    }

    /// Adds a pass at the end.
    pub fn push(&mut self, pass: Box<dyn Pass>) {
        self.passes.push(pass);
    }

    /// The names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass in order, validating the graph after each; returns one report per pass.
    pub fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Vec<PassReport>, PassError> {
        self.run_with(g, cx, |_, _| {})
    }

    /// Like [`run`](Self::run), calling `after(report, graph)` after each pass has run and the
    /// graph has been validated (for `--print-after-all`).
    pub fn run_with(
        &self,
        g: &mut Graph,
        cx: &PassContext,
        mut after: impl FnMut(&PassReport, &Graph),
    ) -> Result<Vec<PassReport>, PassError> {
        cx.check()?;
        let mut reports = Vec::with_capacity(self.passes.len());
        for p in &self.passes {
            let report = p.run(g, cx)?;
            // A rewrite after `fuse` may break a chain it chose: keep only the groups that hold.
            convc_ir::fusion::retain_valid(g);
            shape::validate(g).map_err(|diagnostic| PassError::Invalid {
                pass: p.name(),
                diagnostic,
            })?;
            after(&report, g);
            reports.push(report);
        }
        Ok(reports)
    }
}

/// A name not used by any live node: `base`, else `base.2`, `base.3`, ...
pub(crate) fn fresh_name(g: &Graph, base: &str) -> String {
    if g.find(base).is_none() {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}.{i}"))
        .find(|n| g.find(n).is_none())
        .unwrap_or_else(|| base.to_string())
}
