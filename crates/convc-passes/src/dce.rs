//! `dce`: removes every node that no output depends on. Inputs always stay (they are part of
//! the network's signature even when unused).

use convc_ir::{Graph, Op};

use crate::{Pass, PassContext, PassError, PassReport};

/// Dead-code elimination.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::new(self.name());
        let mut live = vec![false; g.node_bound()];
        let mut stack: Vec<_> = g
            .outputs
            .iter()
            .copied()
            .filter(|&o| g.g.contains_node(o))
            .collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut live[n.index()], true) {
                continue;
            }
            stack.extend(g.operands(n));
        }
        // Remove in topological order so the report reads like the source.
        for n in g.topo_order() {
            if !live[n.index()]
                && !matches!(g.node(n).op, Op::Input { .. })
                && let Some(node) = g.remove(n)
            {
                report.removed.push(node.name);
            }
        }
        Ok(report)
    }
}
