//! The graph: a DAG of nodes (values produced by ops) on petgraph's `StableGraph`, so node
//! indices survive the removals that passes make.

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableGraph};
use petgraph::visit::{EdgeRef, NodeIndexable};

use convc_lang::Span;

use crate::dim::Shape;
use crate::op::Op;

/// One value of the network and the op that computes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The layer or input name (passes derive names such as `conv1.v`).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// The source span of the layer's name (shape errors point here).
    pub span: Span,
    /// The inferred shape `[C, H, W]` (symbolic until sizes are bound).
    pub shape: Shape,
    /// Layers a pass folded into this one that gave up their names (`fold-batchnorm`: the conv
    /// now named after its batchnorm), for display: the JIT calls the step `conv1+bn1+relu1`.
    pub folded: Vec<String>,
}

/// The network: nodes, data-flow edges weighted by operand position, inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Nodes and edges. An edge `a -> b` with weight `i` means `a` is operand `i` of `b`.
    pub g: StableGraph<Node, usize>,
    /// Inputs in declaration order.
    pub inputs: Vec<NodeIndex>,
    /// Outputs in `output` order (a node may appear twice).
    pub outputs: Vec<NodeIndex>,
    /// Fused groups chosen by the `fuse` pass; `None` until it runs (engines then choose for
    /// themselves), `Some(vec![])` for "run every op on its own".
    pub fusion: Option<Vec<crate::fusion::FusionGroup>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a node computing from `operands` (in operand order).
    pub fn add(&mut self, node: Node, operands: &[NodeIndex]) -> NodeIndex {
        let n = self.g.add_node(node);
        for (i, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, n, i);
        }
        n
    }

    /// The node at `n`. Panics on a removed index: passes only hold live ones.
    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.g[n]
    }

    /// The node at `n`, mutable.
    pub fn node_mut(&mut self, n: NodeIndex) -> &mut Node {
        &mut self.g[n]
    }

    /// The operands of `n` in operand order.
    pub fn operands(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<(usize, NodeIndex)> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        v.sort_by_key(|p| p.0);
        v.into_iter().map(|p| p.1).collect()
    }

    /// The nodes that use `n` (each once), in index order.
    pub fn users(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.g.neighbors_directed(n, Direction::Outgoing).collect();
        v.sort();
        v.dedup();
        v
    }

    /// True when `n` is a network output.
    pub fn is_output(&self, n: NodeIndex) -> bool {
        self.outputs.contains(&n)
    }

    /// Makes every use of `old` (as an operand or an output) a use of `new`.
    pub fn replace_uses(&mut self, old: NodeIndex, new: NodeIndex) {
        let edges: Vec<(NodeIndex, usize)> = self
            .g
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.target(), *e.weight()))
            .collect();
        for (target, pos) in edges {
            if let Some(e) = self.g.find_edge(old, target) {
                self.g.remove_edge(e);
            }
            self.g.add_edge(new, target, pos);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Removes a node and its edges.
    pub fn remove(&mut self, n: NodeIndex) -> Option<Node> {
        if let Some(groups) = &mut self.fusion {
            groups.retain(|grp| !grp.nodes.contains(&n));
        }
        self.g.remove_node(n)
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// True when there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Every live node in a deterministic topological order that follows the source: nodes in
    /// index order, each preceded by its not-yet-placed operands. Iterative, so a very long
    /// chain cannot overflow the stack.
    pub fn topo_order(&self) -> Vec<NodeIndex> {
        let mut placed = vec![false; self.node_bound()];
        let mut order = Vec::with_capacity(self.g.node_count());
        for root in self.g.node_indices() {
            if placed[root.index()] {
                continue;
            }
            // (node, operands already pushed)
            let mut stack = vec![(root, false)];
            while let Some((n, expanded)) = stack.pop() {
                if placed[n.index()] {
                    continue;
                }
                if expanded {
                    placed[n.index()] = true;
                    order.push(n);
                } else {
                    stack.push((n, true));
                    for o in self.operands(n).into_iter().rev() {
                        if !placed[o.index()] {
                            stack.push((o, false));
                        }
                    }
                }
            }
        }
        order
    }

    /// One more than the largest node index ever used (for index-addressed side tables).
    pub fn node_bound(&self) -> usize {
        self.g.node_bound()
    }

    /// Finds a live node by name.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.g.node_indices().find(|&n| self.g[n].name == name)
    }
}
