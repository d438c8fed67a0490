//! The convc graph IR: ops with typed attributes on a petgraph DAG, lowering from the AST
//! (including every weight source), symbolic shape inference, validation, cost figures, and
//! printers (text, Graphviz dot, JSON).

pub mod cost;
pub mod dim;
pub mod fusion;
pub mod graph;
pub mod lower;
pub mod op;
pub mod print;
pub mod shape;

pub use dim::{Bindings, Dim, Shape};
pub use graph::{Graph, Node};
pub use lower::{compile, lower};
pub use op::*;
pub use petgraph::stable_graph::NodeIndex;
