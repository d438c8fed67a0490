//! The engines that run a graph: the reference interpreter, and the JIT once it exists.

use std::time::Duration;

use convc_ir::Graph;
use convc_tensor::Tensor;

use crate::Backend;
use crate::driver::{Failure, input_err};

/// A graph ready to run on one engine.
pub struct Engine<'g> {
    graph: &'g Graph,
    threads: usize,
    compile_time: Duration,
}

impl<'g> Engine<'g> {
    /// Prepares `g` (with inputs of `sizes`) for `backend`.
    pub fn new(
        g: &'g Graph,
        sizes: &[(usize, usize)],
        backend: Backend,
        threads: usize,
    ) -> Result<Engine<'g>, Failure> {
        let _ = (sizes, backend);
        Ok(Engine {
            graph: g,
            threads,
            compile_time: Duration::ZERO,
        })
    }
    /// Time spent compiling.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    /// The engine's name as reported.
    pub fn backend_name(&self) -> &'static str {
        "interp (the JIT is not built yet)"
    }
    /// Runs a batch.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, Failure> {
        convc_interp::run_threads(self.graph, inputs, self.threads).map_err(input_err)
    }
}
