//! The `.conv` parser: statements line by line, values by recursive descent over nom parsers.
//!
//! Outside brackets a newline ends the statement; inside `(...)` and `[...]` newlines and
//! comments are whitespace. Every syntax error is committed at once (a [`nom::Err::Failure`])
//! with its final message and span, so the first error is the one reported.

use nom::Err as NomErr;

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::lex::{self, Found, PError, PResult, is_ident_char, is_ident_start, line_ws, ws_nl};
use crate::render::line_col;

/// The deepest bracket nesting the parser accepts. A layer's own `(` is level 1, so a 4-D
/// literal weight inside it reaches level 5. Deeper nests get a located error instead of
/// recursing further, so no input can overflow the stack.
pub const MAX_NESTING: usize = 64;

/// The reserved words: they cannot name a layer or an input.
pub const KEYWORDS: [&str; 2] = ["input", "output"];

/// Parses a whole `.conv` source text. Returns the first syntax error.
///
/// A file without statements or without an `output` statement is not a syntax error: the IR
/// reports it at [`Program::eof`].
///
/// Choices the contract leaves open:
/// - an integer literal that does not fit an `i64` is an error ("integer `…` is too large"),
///   and so is a decimal that overflows an `f64` (`1e999`); one that underflows is `0.0`;
/// - `()` and `[]` parse (as an empty tuple and list), `(a)` is a tuple of one, trailing
///   commas are allowed in every bracket, and a call may have blanks before its `(`
///   (`random (seed=1)`); a trailing comma in `output a,` is an error;
/// - every input dimension must be a number or a name (the IR checks the count and kinds);
/// - a lone carriage return is a blank, like a space.
///
/// Every error points at the token at fault, or at the opening bracket for "unclosed `(`";
/// a missing token at the end of a line is reported just after the last token of the line.
pub fn parse(src: &str) -> Result<Program, Diagnostic> {
    let p = Parser { src };
    p.program().map_err(|e| p.to_diag(e))
}

/// The parsing context: the whole source, so positions can be turned into byte offsets.
struct Parser<'a> {
    src: &'a str,
}

/// An open bracket: where it is and which character it is.
#[derive(Clone, Copy)]
struct Open {
    span: Span,
    ch: char,
}

impl Open {
    fn close(self) -> char {
        if self.ch == '(' { ')' } else { ']' }
    }
}

/// The outcome of a bracketed list: its items and the span from the opening to the closing bracket.
type Bracketed<T> = (Vec<T>, Span);

impl<'a> Parser<'a> {
    // ---- positions and errors -------------------------------------------------------------

    /// The byte offset of a remaining input.
    fn off(&self, rest: &str) -> usize {
        self.src.len() - rest.len()
    }

    /// A committed error.
    fn failure(&self, d: Diagnostic) -> NomErr<PError> {
        NomErr::Failure(PError {
            rest_len: self.src.len() - d.span.start,
            diag: Some(d),
        })
    }

    /// A committed error, as a parser result.
    fn fail<T>(&self, d: Diagnostic) -> PResult<'a, T> {
        Err(self.failure(d))
    }

    /// Turns a nom error into a diagnostic (an uncommitted one should not escape, but if one
    /// did it still becomes a located error).
    fn to_diag(&self, e: NomErr<PError>) -> Diagnostic {
        match e {
            NomErr::Error(e) | NomErr::Failure(e) => e.diag.unwrap_or_else(|| {
                let rest = &self.src[self.src.len() - e.rest_len.min(self.src.len())..];
                self.unexpected(rest, "syntax error", None)
            }),
            NomErr::Incomplete(_) => Diagnostic::error(
                Span::new(self.src.len(), self.src.len()),
                "unexpected end of file",
            ),
        }
    }

    /// The source before `rest`.
    fn before(&self, rest: &str) -> &'a str {
        &self.src[..self.off(rest)]
    }

    /// `expected WHAT, found TOKEN` at the token that starts `rest`; "unexpected character"
    /// for a character outside the language. `open` adds a note when a bracket opened on
    /// an earlier line is still open.
    fn unexpected(&self, rest: &str, expected: &str, open: Option<Open>) -> Diagnostic {
        match lex::found(rest, self.before(rest)) {
            Found::BadChar(d) => d,
            Found::Token(desc, span) => {
                let mut d = Diagnostic::error(span, format!("{expected}, found {desc}"));
                if let Some(o) = open
                    && self.src[o.span.start..span.start].contains('\n')
                {
                    let (l, c) = line_col(self.src, o.span.start);
                    d = d.with_note(format!(
                        "the `{}` opened at line {l}, column {c} is still open here",
                        o.ch
                    ));
                }
                d
            }
        }
    }

    /// Adds a hint to an `expected X, found Y` diagnostic (not to an "unexpected character" one,
    /// whose own note says what is wrong).
    fn hint(d: Diagnostic, note: impl Into<String>) -> Diagnostic {
        if d.message.starts_with("unexpected character") {
            d
        } else {
            d.with_note(note)
        }
    }

    fn fail_unexpected<T>(&self, rest: &str, expected: &str) -> PResult<'a, T> {
        self.fail(self.unexpected(rest, expected, None))
    }

    /// The error for `rest` inside the bracket `open`: "unclosed" at end of file.
    fn fail_in_bracket<T>(&self, rest: &str, expected: &str, open: Open) -> PResult<'a, T> {
        if rest.is_empty() {
            return self.fail(
                Diagnostic::error(open.span, format!("unclosed `{}`", open.ch)).with_note(format!(
                    "the file ends before the matching `{}`",
                    open.close()
                )),
            );
        }
        self.fail(self.unexpected(rest, expected, Some(open)))
    }

    // ---- statements -----------------------------------------------------------------------

    fn program(&self) -> Result<Program, NomErr<PError>> {
        let mut stmts = Vec::new();
        let mut i = self.src;
        loop {
            // Blank lines and comment-only lines.
            loop {
                i = line_ws(i);
                match i.strip_prefix('\n') {
                    Some(rest) => i = rest,
                    None => break,
                }
            }
            if i.is_empty() {
                break;
            }
            let (rest, stmt) = self.stmt(i)?;
            let rest = line_ws(rest);
            stmts.push(stmt);
            match rest.strip_prefix('\n') {
                Some(r) => i = r,
                None if rest.is_empty() => break,
                None => return Err(self.failure(self.after_stmt(rest))),
            }
        }
        let eof = Span::new(self.src.len(), self.src.len());
        Ok(Program { stmts, eof })
    }

    /// The error for a token after a complete statement on the same line.
    fn after_stmt(&self, rest: &str) -> Diagnostic {
        let off = self.off(rest);
        match rest.chars().next() {
            Some(c @ (')' | ']')) => self.stray_closer(c, off),
            Some(';') => Diagnostic::error(Span::new(off, off + 1), "unexpected `;`")
                .with_note("a statement ends at the end of its line: no `;` is needed"),
            _ => Self::hint(
                self.unexpected(rest, "expected end of line after the statement", None),
                "write one statement per line",
            ),
        }
    }

    /// A `)` or `]` where no bracket is open.
    fn stray_closer(&self, c: char, off: usize) -> Diagnostic {
        Diagnostic::error(Span::new(off, off + 1), format!("unexpected `{c}`"))
            .with_note("no bracket is open here")
    }

    fn stmt(&self, i: &'a str) -> PResult<'a, Stmt> {
        let start = self.off(i);
        let Ok((rest, word)) = lex::ident(i) else {
            let off = self.off(i);
            return match i.chars().next() {
                Some(c @ (')' | ']')) => self.fail(self.stray_closer(c, off)),
                _ => self.fail(self.unexpected(
                    i,
                    "expected a statement (`input NAME: [C, H, W]`, `NAME = OP(ARGS)` or `output NAME`)",
                    None,
                )),
            };
        };
        let word_span = Span::new(start, start + word.len());
        if KEYWORDS.contains(&word) {
            if line_ws(rest).starts_with('=') {
                return self.fail(
                    Diagnostic::error(
                        word_span,
                        format!("`{word}` is a keyword and cannot be a layer name"),
                    )
                    .with_note("rename the layer"),
                );
            }
            if word == "input" {
                return self.input_stmt(rest, word_span);
            }
            return self.output_stmt(rest, word_span);
        }
        let name = Ident {
            name: word.to_string(),
            span: word_span,
        };
        self.layer_stmt(rest, name)
    }

    /// An identifier that may name something (not a keyword); `what` is used in messages.
    fn name(&self, i: &'a str, expected: &str, what: &str) -> PResult<'a, Ident> {
        let start = self.off(i);
        let Ok((rest, word)) = lex::ident(i) else {
            return self.fail_unexpected(i, expected);
        };
        let span = Span::new(start, start + word.len());
        if KEYWORDS.contains(&word) {
            return self.fail(Diagnostic::error(
                span,
                format!("`{word}` is a keyword and cannot be {what}"),
            ));
        }
        Ok((
            rest,
            Ident {
                name: word.to_string(),
                span,
            },
        ))
    }

    /// `input NAME: [C, H, W]`, after the keyword.
    fn input_stmt(&self, i: &'a str, kw: Span) -> PResult<'a, Stmt> {
        const FORM: &str = "an input is written `input NAME: [C, H, W]`";
        let i = line_ws(i);
        let (i, name) = self.name(i, "expected an input name after `input`", "an input name")?;
        let i = line_ws(i);
        let Some(i) = i.strip_prefix(':') else {
            let d = self.unexpected(
                i,
                &format!("expected `:` after input name `{}`", name.name),
                None,
            );
            return self.fail(Self::hint(d, FORM));
        };
        let i = line_ws(i);
        if !i.starts_with('[') {
            let d = self.unexpected(i, "expected `[` to start the input's dimensions", None);
            return self.fail(Self::hint(d, FORM));
        }
        let (rest, list) = self.value(i, 0, None, "")?;
        let ExprKind::List(dims) = list.kind else {
            unreachable!("`[` starts a list")
        };
        for d in &dims {
            if !matches!(d.kind, ExprKind::Number { .. } | ExprKind::Ident(_)) {
                return self.fail(
                    Diagnostic::error(
                        d.span,
                        format!(
                            "an input dimension must be a number or a name, found {}",
                            describe(&d.kind)
                        ),
                    )
                    .with_note(FORM),
                );
            }
        }
        let span = kw.to(list.span);
        Ok((
            rest,
            Stmt::Input(InputStmt {
                name,
                dims,
                dims_span: list.span,
                span,
            }),
        ))
    }

    /// `output NAME, NAME...`, after the keyword.
    fn output_stmt(&self, mut i: &'a str, kw: Span) -> PResult<'a, Stmt> {
        let mut names: Vec<Ident> = Vec::new();
        loop {
            i = line_ws(i);
            let expected = match names.last() {
                None => "expected a name after `output`".to_string(),
                Some(_) => "expected a name after `,`".to_string(),
            };
            let (rest, name) = self.name(i, &expected, "an output name")?;
            names.push(name);
            i = line_ws(rest);
            match i.strip_prefix(',') {
                Some(rest) => i = rest,
                None if i.is_empty() || i.starts_with('\n') => break,
                None => {
                    let last = &names[names.len() - 1].name;
                    return self.fail_unexpected(
                        i,
                        &format!("expected `,` or end of line after output name `{last}`"),
                    );
                }
            }
        }
        let span = kw.to(names[names.len() - 1].span);
        Ok((i, Stmt::Output(OutputStmt { names, span })))
    }

    /// `NAME = OP(ARGS)`, after the name.
    fn layer_stmt(&self, i: &'a str, name: Ident) -> PResult<'a, Stmt> {
        const FORM: &str = "a layer is written `NAME = OP(ARGS)`, e.g. `y = relu(x)`";
        let i = line_ws(i);
        let Some(i) = i.strip_prefix('=') else {
            let mut d = self.unexpected(
                i,
                &format!("expected `=` after layer name `{}`", name.name),
                None,
            );
            if i.starts_with(':') {
                d = d.with_note(format!(
                    "to declare an input, write `input {}: [C, H, W]`",
                    name.name
                ));
            } else {
                d = Self::hint(d, FORM);
            }
            return self.fail(d);
        };
        let i = line_ws(i);
        let op_start = self.off(i);
        let Ok((i, op)) = lex::ident(i) else {
            let d = self.unexpected(i, "expected an op name after `=`", None);
            return self.fail(Self::hint(d, FORM));
        };
        let op = Ident {
            name: op.to_string(),
            span: Span::new(op_start, op_start + op.len()),
        };
        let i = line_ws(i);
        if !i.starts_with('(') {
            let d = self.unexpected(
                i,
                &format!("expected `(` after op name `{}`", op.name),
                None,
            );
            return self.fail(Self::hint(d, FORM));
        }
        let (rest, (args, close)) = self.args(i, 0)?;
        let span = name.span.to(close);
        Ok((
            rest,
            Stmt::Layer(LayerStmt {
                name,
                op,
                args,
                span,
            }),
        ))
    }

    // ---- values -----------------------------------------------------------------------------

    /// Opens the bracket at the start of `i` (at nesting level `depth + 1`), or fails when
    /// that is deeper than [`MAX_NESTING`].
    fn open(&self, i: &'a str, depth: usize) -> PResult<'a, Open> {
        let off = self.off(i);
        let ch = i.chars().next().expect("caller checked the bracket");
        let span = Span::new(off, off + 1);
        if depth + 1 > MAX_NESTING {
            return self.fail(Diagnostic::error(
                span,
                format!("brackets nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok((&i[1..], Open { span, ch }))
    }

    /// Call arguments `(a, b, key=value, ...)` starting at the `(`; the span runs from `(` to `)`.
    fn args(&self, i: &'a str, depth: usize) -> PResult<'a, Bracketed<Arg>> {
        let mut seen_key = false;
        self.bracketed(i, depth, |i, open| {
            let (rest, arg) = self.arg(i, depth + 1, open)?;
            if arg.key.is_some() {
                seen_key = true;
            } else if seen_key {
                return self.fail(
                    Diagnostic::error(arg.span, "positional argument after keyword arguments")
                        .with_note("positional arguments (tensor names) come first, then `key=value` arguments"),
                );
            }
            Ok((rest, arg))
        })
    }

    /// A comma-separated, bracketed sequence starting at the opening bracket (trailing comma
    /// allowed, newlines and comments inside); `item` parses one element.
    fn bracketed<T>(
        &self,
        i: &'a str,
        depth: usize,
        mut item: impl FnMut(&'a str, Open) -> PResult<'a, T>,
    ) -> PResult<'a, Bracketed<T>> {
        let (mut i, open) = self.open(i, depth)?;
        let close = open.close();
        let mut items = Vec::new();
        loop {
            i = ws_nl(i);
            if let Some(rest) = i.strip_prefix(close) {
                let end = self.off(rest);
                return Ok((rest, (items, Span::new(open.span.start, end))));
            }
            if i.is_empty() || i.starts_with([')', ']', ',']) {
                let what = if items.is_empty() {
                    format!("expected a value or `{close}`")
                } else {
                    format!("expected a value or `{close}` after `,`")
                };
                return self.fail_in_bracket(i, &what, open);
            }
            let (rest, x) = item(i, open)?;
            items.push(x);
            i = ws_nl(rest);
            if let Some(rest) = i.strip_prefix(',') {
                i = rest;
            } else if !i.starts_with(close) {
                return self.fail_in_bracket(i, &format!("expected `,` or `{close}`"), open);
            }
        }
    }

    /// One argument: `key=value` or a positional value.
    fn arg(&self, i: &'a str, depth: usize, open: Open) -> PResult<'a, Arg> {
        if let Ok((rest, key)) = lex::ident(i) {
            let after = ws_nl(rest);
            if let Some(v) = after.strip_prefix('=') {
                let start = self.off(i);
                let key = Ident {
                    name: key.to_string(),
                    span: Span::new(start, start + key.len()),
                };
                let what = format!("after `{}=`", key.name);
                let (rest, value) = self.value(ws_nl(v), depth, Some(open), &what)?;
                let span = key.span.to(value.span);
                return Ok((
                    rest,
                    Arg {
                        key: Some(key),
                        value,
                        span,
                    },
                ));
            }
        }
        let (rest, value) = self.value(i, depth, Some(open), "")?;
        Ok((
            rest,
            Arg {
                key: None,
                span: value.span,
                value,
            },
        ))
    }

    /// One value at nesting level `depth` (inside `open`, if any). `what` qualifies the
    /// "expected a value" message (e.g. "after `out=`").
    fn value(&self, i: &'a str, depth: usize, open: Option<Open>, what: &str) -> PResult<'a, Expr> {
        let start = self.off(i);
        let expected = if what.is_empty() {
            "expected a value".to_string()
        } else {
            format!("expected a value {what}")
        };
        let Some(c) = i.chars().next() else {
            return match open {
                Some(o) => self.fail_in_bracket(i, &expected, o),
                None => self.fail_unexpected(i, &expected),
            };
        };
        match c {
            '(' => {
                let (rest, (items, span)) =
                    self.bracketed(i, depth, |i, o| self.value(i, depth + 1, Some(o), ""))?;
                Ok((
                    rest,
                    Expr {
                        kind: ExprKind::Tuple(items),
                        span,
                    },
                ))
            }
            '[' => {
                let (rest, (items, span)) =
                    self.bracketed(i, depth, |i, o| self.value(i, depth + 1, Some(o), ""))?;
                Ok((
                    rest,
                    Expr {
                        kind: ExprKind::List(items),
                        span,
                    },
                ))
            }
            '"' => self.string(i),
            '-' | '0'..='9' => self.number(i),
            '+' | '.' => {
                let digits = lex::unsigned(&i[1..]).map(|(_, t)| t).unwrap_or("");
                if digits.is_empty() {
                    return self.fail_unexpected(i, &expected);
                }
                let text = &i[..1 + digits.len()];
                let fix = if c == '+' {
                    digits.to_string()
                } else {
                    format!("0{text}")
                };
                self.fail(Diagnostic::error(
                    Span::new(start, start + text.len()),
                    format!(
                        "`{}` is not a number: write `{}`",
                        lex::shown(text),
                        lex::shown(&fix)
                    ),
                ))
            }
            c if is_ident_start(c) => {
                let (rest, name) = lex::ident(i)?;
                let name = Ident {
                    name: name.to_string(),
                    span: Span::new(start, start + name.len()),
                };
                let after = ws_nl(rest);
                if after.starts_with('(') {
                    let (rest, (args, close)) = self.args(after, depth)?;
                    let span = name.span.to(close);
                    return Ok((
                        rest,
                        Expr {
                            kind: ExprKind::Call { name, args },
                            span,
                        },
                    ));
                }
                let span = name.span;
                Ok((
                    rest,
                    Expr {
                        kind: ExprKind::Ident(name.name),
                        span,
                    },
                ))
            }
            _ => match open {
                Some(o) => self.fail_in_bracket(i, &expected, o),
                None => self.fail_unexpected(i, &expected),
            },
        }
    }

    /// A number, a size or `-inf`, starting at `-` or a digit.
    fn number(&self, i: &'a str) -> PResult<'a, Expr> {
        let start = self.off(i);
        let span_to = |rest: &str| Span::new(start, self.off(rest));
        if let Some(rest) = i.strip_prefix("-inf")
            && !rest.starts_with(is_ident_char)
        {
            let kind = ExprKind::Number {
                value: f64::NEG_INFINITY,
                int: None,
            };
            return Ok((
                rest,
                Expr {
                    kind,
                    span: span_to(rest),
                },
            ));
        }
        if let Ok((rest, (kh, kw))) = lex::size(i) {
            self.check_number_end(i, rest)?;
            let text = &i[..i.len() - rest.len()];
            let (Ok(kh), Ok(kw)) = (kh.parse::<u64>(), kw.parse::<u64>()) else {
                return self.fail(Diagnostic::error(
                    span_to(rest),
                    format!("size `{}` is too large", lex::shown(text)),
                ));
            };
            return Ok((
                rest,
                Expr {
                    kind: ExprKind::Size(kh, kw),
                    span: span_to(rest),
                },
            ));
        }
        let Ok((rest, text)) = lex::number(i) else {
            // A `-` not directly followed by a digit.
            if let Found::BadChar(d) = lex::found(&i[1..], self.before(&i[1..])) {
                return self.fail(d);
            }
            return self.fail(Diagnostic::error(
                Span::new(start, start + 1),
                "`-` must be directly followed by a number, as in `-1`, `-0.5` or `-inf`",
            ));
        };
        self.check_number_end(i, rest)?;
        let span = span_to(rest);
        let kind = if text.contains(['.', 'e', 'E']) {
            let value: f64 = text
                .parse()
                .expect("the grammar is a subset of Rust's float syntax");
            if !value.is_finite() {
                return self.fail(Diagnostic::error(
                    span,
                    format!(
                        "number `{}` is too large for a 64-bit float",
                        lex::shown(text)
                    ),
                ));
            }
            ExprKind::Number { value, int: None }
        } else {
            let Ok(n) = text.parse::<i64>() else {
                return self.fail(
                    Diagnostic::error(span, format!("integer `{}` is too large", lex::shown(text)))
                        .with_note(format!(
                            "integers must lie between {} and {}; write a large value with an exponent, e.g. `1e20`",
                            i64::MIN,
                            i64::MAX
                        )),
                );
            };
            ExprKind::Number {
                value: n as f64,
                int: Some(n),
            }
        };
        Ok((rest, Expr { kind, span }))
    }

    /// A number or size must not run into letters, digits, `_` or `.`: `3abc`, `1.`, `1e`,
    /// `3x3x3` are errors over the whole malformed word.
    fn check_number_end(&self, i: &'a str, rest: &'a str) -> PResult<'a, ()> {
        let Some(next) = rest.chars().next() else {
            return Ok((rest, ()));
        };
        if !(is_ident_char(next) || next == '.') {
            return Ok((rest, ()));
        }
        let start = self.off(i);
        let text = &i[..i.len() - rest.len()];
        let plain = !text.contains(['.', 'e', 'E', 'x']);
        let after = &rest[1..];
        let digit_after = after.starts_with(|c: char| c.is_ascii_digit());
        // `1.` (a point without digits after it).
        if next == '.' && plain && !digit_after {
            let shown = format!("{text}.");
            let fix = format!("{text}.0");
            return self.fail(Diagnostic::error(
                Span::new(start, start + shown.len()),
                format!(
                    "`{}` is not a number: write `{}` or `{}`",
                    lex::shown(&shown),
                    lex::shown(&fix),
                    lex::shown(text)
                ),
            ));
        }
        // `1e`, `1e+` (an exponent without digits).
        if matches!(next, 'e' | 'E') && !text.contains(['e', 'E', 'x']) {
            let sign = usize::from(after.starts_with(['+', '-']));
            if !after[sign..].starts_with(|c: char| c.is_ascii_digit()) {
                let shown = &i[..text.len() + 1 + sign];
                return self.fail(Diagnostic::error(
                    Span::new(start, start + shown.len()),
                    format!(
                        "`{}` is not a number: an exponent needs digits, as in `1e-5`",
                        lex::shown(shown)
                    ),
                ));
            }
        }
        let word = &i[..1 + lex::numeric_word(&i[1..]).len()];
        let span = Span::new(start, start + word.len());
        // `3X3` (upper-case x) and `-3x3` (negative size).
        if next == 'X' && plain && !text.starts_with('-') && digit_after {
            return self.fail(Diagnostic::error(
                span,
                format!(
                    "`{}` is not a size: write `{}` with a lower-case `x`",
                    lex::shown(word),
                    lex::shown(&word.replace('X', "x"))
                ),
            ));
        }
        if next == 'x' && plain && text.starts_with('-') && digit_after {
            return self.fail(Diagnostic::error(
                span,
                format!(
                    "`{}` is not a size: a size cannot be negative",
                    lex::shown(word)
                ),
            ));
        }
        self.fail(
            Diagnostic::error(
                span,
                format!("`{}` is not a valid number or size", lex::shown(word)),
            )
            .with_note("numbers are written like `3`, `-1`, `0.5`, `1e-5`; sizes like `3x3`"),
        )
    }

    /// A double-quoted string with `\"` and `\\` escapes, on one line.
    fn string(&self, i: &'a str) -> PResult<'a, Expr> {
        let start = self.off(i);
        let unterminated = || {
            self.fail(
                Diagnostic::error(Span::new(start, start + 1), "unterminated string")
                    .with_note("close the string with `\"` on the same line"),
            )
        };
        let mut out = String::new();
        let body = &i[1..];
        let mut chars = body.char_indices();
        while let Some((p, c)) = chars.next() {
            match c {
                '"' => {
                    let rest = &body[p + 1..];
                    let span = Span::new(start, self.off(rest));
                    return Ok((
                        rest,
                        Expr {
                            kind: ExprKind::Str(out),
                            span,
                        },
                    ));
                }
                '\n' => return unterminated(),
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    None | Some((_, '\n' | '\r')) => return unterminated(),
                    Some((_, e)) => {
                        let at = start + 1 + p;
                        let shown = if e.is_control() || e.is_whitespace() {
                            format!("\\ followed by U+{:04X}", e as u32)
                        } else {
                            format!("`\\{e}`")
                        };
                        return self.fail(
                            Diagnostic::error(
                                Span::new(at, at + 1 + e.len_utf8()),
                                format!("unknown escape {shown} in a string"),
                            )
                            .with_note("the only escapes are `\\\"` and `\\\\`: write a backslash as `\\\\`, or use `/` in paths"),
                        );
                    }
                },
                c => out.push(c),
            }
        }
        unterminated()
    }
}

/// What a value is, in words (for messages).
fn describe(kind: &ExprKind) -> &'static str {
    match kind {
        ExprKind::Ident(_) => "a name",
        ExprKind::Number { .. } => "a number",
        ExprKind::Str(_) => "a string",
        ExprKind::Size(..) => "a size",
        ExprKind::Tuple(_) => "a tuple",
        ExprKind::List(_) => "a list",
        ExprKind::Call { .. } => "a call",
    }
}
