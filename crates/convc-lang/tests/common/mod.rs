//! Helpers shared by the integration tests: a compact, span-free text form of the AST and
//! the first rendered line of a syntax error.
#![allow(dead_code)]

use convc_lang::*;

/// A value as compact text: `a`, `3i` (integer), `0.5f` (float), `"s"`, `3x3`, `(a b)`,
/// `[a b]`, `f(k=v a)`.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Ident(n) => n.clone(),
        ExprKind::Number {
            value,
            int: Some(i),
        } => {
            assert_eq!(*value, *i as f64, "value and int disagree");
            format!("{i}i")
        }
        ExprKind::Number { value, int: None } => format!("{value:?}f"),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Size(a, b) => format!("{a}x{b}"),
        ExprKind::Tuple(xs) => format!("({})", list(xs)),
        ExprKind::List(xs) => format!("[{}]", list(xs)),
        ExprKind::Call { name, args: a } => format!("{}({})", name.name, args(a)),
    }
}

fn list(xs: &[Expr]) -> String {
    xs.iter().map(expr).collect::<Vec<_>>().join(" ")
}

/// Arguments as `a k=v`.
pub fn args(a: &[Arg]) -> String {
    a.iter()
        .map(|a| match &a.key {
            Some(k) => format!("{}={}", k.name, expr(&a.value)),
            None => expr(&a.value),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A statement as compact text: `input x [3i H W]`, `y = conv(x out=8i)`, `output a b`.
pub fn stmt(s: &Stmt) -> String {
    match s {
        Stmt::Input(i) => format!("input {} [{}]", i.name.name, list(&i.dims)),
        Stmt::Layer(l) => format!("{} = {}({})", l.name.name, l.op.name, args(&l.args)),
        Stmt::Output(o) => {
            let names: Vec<_> = o.names.iter().map(|n| n.name.as_str()).collect();
            format!("output {}", names.join(" "))
        }
    }
}

/// Parses `src` (which must be valid) and returns its statements in compact form.
pub fn stmts(src: &str) -> Vec<String> {
    match parse(src) {
        Ok(p) => {
            assert_eq!(p.eof, Span::new(src.len(), src.len()));
            p.stmts.iter().map(stmt).collect()
        }
        Err(d) => panic!("unexpected error:\n{}", render("t.conv", src, &d)),
    }
}

/// Parses `layer = f(w=VALUE)` and returns VALUE in compact form.
pub fn value(v: &str) -> String {
    let src = format!("y = f(w={v})\n");
    let p = parse(&src).unwrap_or_else(|d| panic!("{}", render("t.conv", &src, &d)));
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!("not a layer")
    };
    expr(&l.args[0].value)
}

/// The first rendered line of the syntax error of `src`, with file name `t.conv`.
pub fn error_line(src: &str) -> String {
    match parse(src) {
        Ok(p) => panic!("expected a syntax error in {src:?}, got {:?}", p.stmts),
        Err(d) => render("t.conv", src, &d)
            .lines()
            .next()
            .unwrap()
            .to_string(),
    }
}

/// The whole rendering of the syntax error of `src`, with file name `t.conv`.
pub fn error_text(src: &str) -> String {
    match parse(src) {
        Ok(p) => panic!("expected a syntax error in {src:?}, got {:?}", p.stmts),
        Err(d) => render("t.conv", src, &d),
    }
}
