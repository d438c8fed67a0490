//! `fuse`: chooses the groups of ops that run as one loop nest — a conv (or an elementwise op)
//! with the batchnorms, activations and residual adds that follow it, while every intermediate
//! value has one user and is not an output (`convc_ir::fusion::plan`). The groups are stored
//! in the graph; the dump shows them and the JIT emits one kernel per group.

use convc_ir::{Graph, fusion};

use crate::{Pass, PassContext, PassError, PassReport};

/// The `fuse` pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fuse;

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::new(self.name());
        let groups = fusion::plan(g);
        for grp in &groups {
            let names: Vec<&str> = grp.nodes.iter().map(|&n| g.node(n).name.as_str()).collect();
            report
                .notes
                .push(format!("one kernel: {}", names.join(" + ")));
        }
        g.fusion = Some(groups);
        Ok(report)
    }
}
