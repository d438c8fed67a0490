//! `fuse`: the name is reserved for the JIT's fusion grouping (which ops run as one loop
//! nest). The grouping belongs to the code generator; in this crate the pass leaves the graph
//! as it is and says so in its report.

use convc_ir::Graph;

use crate::{Pass, PassContext, PassError, PassReport};

/// The reserved `fuse` pass: changes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fuse;

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn run(&self, _g: &mut Graph, _cx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::new(self.name());
        report
            .notes
            .push("fusion grouping is done by the JIT backend; the graph is unchanged".into());
        Ok(report)
    }
}
