//! The `.conv` front end: a nom parser producing an AST with byte spans, and located
//! diagnostics rendered as `FILE:LINE:COL: error: MESSAGE` with the source line and a caret.
//!
//! ```
//! let src = "input x: [3, 8, 8]\ny = relu(x]\n";
//! let err = convc_lang::parse(src).unwrap_err();
//! assert_eq!(
//!     convc_lang::render("m.conv", src, &err),
//!     "m.conv:2:11: error: expected `,` or `)`, found `]`\n  |\n2 | y = relu(x]\n  |           ^\n"
//! );
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod ast;
pub mod diag;
mod lex;
mod parser;
mod render;

pub use ast::*;
pub use diag::Diagnostic;
pub use parser::{KEYWORDS, MAX_NESTING, parse};
pub use render::{line_col, render};
