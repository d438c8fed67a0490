//! The abstract syntax tree of a `.conv` file. Every node keeps the byte span it came from,
//! so later stages can point diagnostics at the exact token.

/// A half-open byte range `start..end` into the source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte of the range.
    pub start: usize,
    /// One past the last byte of the range.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (bytes).
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// An identifier with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The identifier's text.
    pub name: String,
    /// Where it stands.
    pub span: Span,
}

/// A whole `.conv` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The statements in source order.
    pub stmts: Vec<Stmt>,
    /// An empty span at the end of the file, where whole-file problems are reported.
    pub eof: Span,
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input NAME: [C, H, W]`
    Input(InputStmt),
    /// `NAME = OP(ARGS)`
    Layer(LayerStmt),
    /// `output NAME, NAME...`
    Output(OutputStmt),
}

/// `input NAME: [C, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputStmt {
    /// The input's name.
    pub name: Ident,
    /// The dimensions as written, each a number or an identifier (any count; the IR checks it is 3).
    pub dims: Vec<Expr>,
    /// The span of the bracketed dimension list.
    pub dims_span: Span,
    /// The whole statement.
    pub span: Span,
}

/// `NAME = OP(ARGS)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStmt {
    /// The defined name.
    pub name: Ident,
    /// The op name (not reserved: any identifier parses, the IR rejects unknown ones).
    pub op: Ident,
    /// Arguments in source order: positional ones (no key) then keyword ones, as written.
    pub args: Vec<Arg>,
    /// The whole statement.
    pub span: Span,
}

/// `output NAME, NAME...`.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputStmt {
    /// The names, in order.
    pub names: Vec<Ident>,
    /// The whole statement.
    pub span: Span,
}

/// A call argument: positional (`x`) or keyword (`out=8`).
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The key of a `key=value` argument; `None` for a positional one.
    pub key: Option<Ident>,
    /// The value.
    pub value: Expr,
    /// From the key (or value) to the end of the value.
    pub span: Span,
}

/// A value expression with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it stands.
    pub span: Span,
}

/// The kinds of value the language has.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An identifier: a tensor name, `same`, `valid`, `none`, `box`, `inf`, ...
    Ident(String),
    /// A number. `int` is set when it was written without a fraction or exponent
    /// (`3`, `-1`) and fits an `i64`; `value` is always set. `-inf` parses as a number
    /// with `value = -inf` and `int = None`.
    Number {
        /// The value as a float.
        value: f64,
        /// The value as an integer, when written as one.
        int: Option<i64>,
    },
    /// A double-quoted string with escapes resolved.
    Str(String),
    /// A size literal `KHxKW` such as `3x3` (both parts written as decimal integers).
    Size(u64, u64),
    /// `(a, b, ...)` — a parenthesised tuple (one element without a comma is still a tuple of one).
    Tuple(Vec<Expr>),
    /// `[a, b, ...]` — a list, nestable.
    List(Vec<Expr>),
    /// `name(args)` such as `random(seed=1)`, `file("w.npy")`, `gaussian(sigma=2)`.
    Call {
        /// The callee's name.
        name: Ident,
        /// Its arguments.
        args: Vec<Arg>,
    },
}
