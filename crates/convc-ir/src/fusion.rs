//! Fusion groups: chains of ops that run as one loop nest. A conv (or a batchnorm, activation
//! or add) absorbs the batchnorms, activations and residual adds that follow it, as long as each
//! intermediate value has exactly one user and is not a network output (an `add` that broadcasts
//! a `[C, 1, 1]` operand is neither a head nor a member) — so nothing that
//! another op or the user needs is lost by never being written.
//!
//! A group takes at most [`MAX_MEMBERS`] members: a longer chain is split into several groups
//! (each member adds code, constants and a buffer-table slot to the group's one kernel).
//!
//! The `fuse` pass stores the groups in [`Graph::fusion`]; the printers show them; the JIT
//! emits one kernel per group (the head's loop nest with the members as its epilogue).

use petgraph::Direction;
use petgraph::stable_graph::NodeIndex;

use crate::graph::Graph;
use crate::op::Op;

/// The most members (ops after the head) one group takes; the chain goes on in a new group.
/// It bounds what one JIT kernel holds: its epilogue is emitted once per accumulator of a
/// register block (up to 16) and per code path (full and last block, chunks), so a conv with
/// 16 `tanh` after it is already about 50,000 instructions; longer chains compile in time
/// linear in their length instead of one kernel whose compile time grows without bound.
pub const MAX_MEMBERS: usize = 16;

/// One fused group: the head first, then the ops of its epilogue in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FusionGroup {
    /// Head, then members.
    pub nodes: Vec<NodeIndex>,
}

impl FusionGroup {
    /// The node that produces the group's result.
    pub fn tail(&self) -> NodeIndex {
        *self.nodes.last().unwrap_or(&NodeIndex::new(0))
    }
}

/// Whether `u` may join an epilogue.
fn joins(g: &Graph, u: NodeIndex) -> bool {
    match g.node(u).op {
        Op::BatchNorm(_) | Op::Unary(_) => true,
        Op::Add => same_shape_add(g, u),
        _ => false,
    }
}

/// Whether `u` is an `add` of two operands of its own shape (not a broadcast of a
/// `[C, 1, 1]` operand, which no epilogue handles).
fn same_shape_add(g: &Graph, u: NodeIndex) -> bool {
    let ops = g.operands(u);
    ops.len() == 2 && ops.iter().all(|&o| g.node(o).shape == g.node(u).shape)
}

/// The members that follow `start` in its chain (not including `start`).
fn chain_after(g: &Graph, start: NodeIndex, taken: &[bool]) -> Vec<NodeIndex> {
    let mut members = Vec::new();
    let mut t = start;
    while members.len() < MAX_MEMBERS {
        if g.is_output(t) {
            break;
        }
        let mut edges = g.g.neighbors_directed(t, Direction::Outgoing);
        let (Some(u), None) = (edges.next(), edges.next()) else {
            break;
        };
        if taken[u.index()] || !joins(g, u) {
            break;
        }
        members.push(u);
        t = u;
    }
    members
}

/// The groups of `g` with at least two ops, in topological order of their heads.
pub fn plan(g: &Graph) -> Vec<FusionGroup> {
    let mut taken = vec![false; g.node_bound()];
    let mut groups = Vec::new();
    for n in g.topo_order() {
        if taken[n.index()] {
            continue;
        }
        let head_ok = match g.node(n).op {
            Op::Conv(_) | Op::BatchNorm(_) | Op::Unary(_) => true,
            Op::Add => same_shape_add(g, n),
            _ => false,
        };
        if !head_ok {
            continue;
        }
        let members = chain_after(g, n, &taken);
        if members.is_empty() {
            continue;
        }
        taken[n.index()] = true;
        for &m in &members {
            taken[m.index()] = true;
        }
        let mut nodes = vec![n];
        nodes.extend(members);
        groups.push(FusionGroup { nodes });
    }
    groups
}

/// True when `grp` is still a valid chain of `g` (every node live, each intermediate used once
/// by the next and not an output, at most [`MAX_MEMBERS`] members).
pub fn still_valid(g: &Graph, grp: &FusionGroup) -> bool {
    if grp.nodes.len() < 2
        || grp.nodes.len() > MAX_MEMBERS + 1
        || grp.nodes.iter().any(|&n| !g.g.contains_node(n))
    {
        return false;
    }
    grp.nodes.windows(2).all(|w| {
        let mut users = g.g.neighbors_directed(w[0], Direction::Outgoing);
        let single = matches!((users.next(), users.next()), (Some(u), None) if u == w[1]);
        single && !g.is_output(w[0]) && joins(g, w[1])
    })
}

/// Drops the stored groups that a later rewrite invalidated.
pub fn retain_valid(g: &mut Graph) {
    if let Some(groups) = g.fusion.take() {
        let kept = groups
            .into_iter()
            .filter(|grp| still_valid(g, grp))
            .collect();
        g.fusion = Some(kept);
    }
}

/// A one-line description of the loop nest a group becomes.
pub fn describe(g: &Graph, grp: &FusionGroup) -> String {
    let Some(&head) = grp.nodes.first() else {
        return String::new();
    };
    let epilogue: Vec<String> = grp.nodes[1..]
        .iter()
        .map(|&n| match &g.node(n).op {
            Op::Add => {
                let prev = grp
                    .nodes
                    .iter()
                    .position(|&m| m == n)
                    .and_then(|i| i.checked_sub(1))
                    .map(|i| grp.nodes[i]);
                let other = g.operands(n).into_iter().find(|&o| Some(o) != prev);
                match other {
                    Some(o) => format!("add %{}", g.node(o).name),
                    None => "add".into(),
                }
            }
            op => op.name().to_string(),
        })
        .collect();
    let body = match &g.node(head).op {
        Op::Conv(c) => {
            let in_ch = g.operands(head).first().map_or(0, |&o| g.node(o).shape.c);
            if c.groups == in_ch && in_ch > 1 {
                format!(
                    "depthwise {}x{} loop nest: per channel, rows of f32x4 output vectors, {} taps accumulated in registers",
                    c.kernel[0],
                    c.kernel[1],
                    c.kernel[0] * c.kernel[1]
                )
            } else {
                format!(
                    "conv {}x{} loop nest: blocks of output channels x f32x4 row vectors held in registers across the (c, kh, kw) reduction",
                    c.kernel[0], c.kernel[1]
                )
            }
        }
        op => format!(
            "elementwise loop over f32x4 vectors, starting with {}",
            op.name()
        ),
    };
    format!("{body}; epilogue in registers: {}", epilogue.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(n: usize) -> Vec<usize> {
        let mut s = String::from(
            "input x: [2, 4, 4]\nc0 = conv(x, out=2, kernel=1, weights=random(seed=1))\n",
        );
        for i in 1..=n {
            s += &format!("c{i} = clamp(c{}, min=-{i}, max={i})\n", i - 1);
        }
        s += &format!("output c{n}\n");
        let g = crate::compile(&s, std::path::Path::new(".")).expect("spec");
        let gs = plan(&g);
        assert!(gs.iter().all(|grp| still_valid(&g, grp)));
        gs.iter().map(|grp| grp.nodes.len()).collect()
    }

    #[test]
    fn a_group_takes_at_most_max_members() {
        assert_eq!(groups(MAX_MEMBERS), vec![MAX_MEMBERS + 1]);
        assert_eq!(groups(MAX_MEMBERS + 1), vec![MAX_MEMBERS + 1]);
        assert_eq!(groups(MAX_MEMBERS + 2), vec![MAX_MEMBERS + 1, 2]);
        assert_eq!(groups(70), vec![17, 17, 17, 17, 3]);
    }

    #[test]
    fn a_broadcasting_add_is_not_fused() {
        let s = "input x: [4, 5, 5]\n\
                 c = conv(x, out=4, kernel=1, weights=random(seed=1))\n\
                 g = global_avgpool(x)\n\
                 a = add(c, g)\n\
                 r = relu(a)\n\
                 d = conv(r, out=4, kernel=1, weights=random(seed=2))\n\
                 e = add(d, r)\n\
                 output e\n";
        let g = crate::compile(s, std::path::Path::new(".")).expect("spec");
        let name = |n: NodeIndex| g.node(n).name.clone();
        let gs: Vec<Vec<String>> = plan(&g)
            .iter()
            .map(|grp| grp.nodes.iter().map(|&n| name(n)).collect())
            .collect();
        // `a` broadcasts `g`: neither in `c`'s epilogue nor a head; `e` is a residual add.
        assert_eq!(gs, vec![vec!["d".to_string(), "e".to_string()]]);
    }

    #[test]
    fn a_longer_stored_group_is_invalid() {
        let s = "input x: [1, 2, 2]\n".to_string()
            + &(0..=MAX_MEMBERS + 1)
                .map(|i| {
                    format!(
                        "r{i} = relu({})\n",
                        if i == 0 {
                            "x".into()
                        } else {
                            format!("r{}", i - 1)
                        }
                    )
                })
                .collect::<String>()
            + &format!("output r{}\n", MAX_MEMBERS + 1);
        let g = crate::compile(&s, std::path::Path::new(".")).expect("spec");
        let order = g.topo_order();
        let all = FusionGroup {
            nodes: order[1..].to_vec(),
        };
        assert_eq!(all.nodes.len(), MAX_MEMBERS + 2);
        assert!(!still_valid(&g, &all));
        let most = FusionGroup {
            nodes: order[1..MAX_MEMBERS + 2].to_vec(),
        };
        assert!(still_valid(&g, &most));
    }
}
