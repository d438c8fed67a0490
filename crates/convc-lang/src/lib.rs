//! The `.conv` front end: a nom parser producing an AST with byte spans, and located
//! diagnostics rendered as `FILE:LINE:COL: error: MESSAGE` with the source line and a caret.

pub mod ast;
pub mod diag;
mod lex;
mod parser;
mod render;

pub use ast::*;
pub use diag::Diagnostic;
pub use parser::{KEYWORDS, MAX_NESTING, parse};
pub use render::{line_col, render};
