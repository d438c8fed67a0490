//! No input may panic, hang or overflow the stack: arbitrary bytes, token soups, mutated
//! specs, 10,000-deep bracket nests, megabyte lines. And printed random programs parse back.

mod common;

use common::{expr, stmt};
use convc_lang::*;
use proptest::prelude::*;

const NESTING: &str = "brackets nested too deeply (more than 64 levels)";

/// Parses and renders; checks every span lies inside the source on character boundaries.
fn check(src: &str) -> Result<Program, Diagnostic> {
    let ok_span = |s: Span| {
        s.start <= s.end
            && s.end <= src.len()
            && src.is_char_boundary(s.start)
            && src.is_char_boundary(s.end)
    };
    let result = parse(src);
    match &result {
        Ok(p) => {
            assert_eq!(p.eof, Span::new(src.len(), src.len()));
            for s in &p.stmts {
                for span in spans_of(s) {
                    assert!(ok_span(span), "bad span {span:?} in {src:?}");
                }
            }
        }
        Err(d) => {
            assert!(ok_span(d.span), "bad error span {:?} for {src:?}", d.span);
            assert!(!d.message.is_empty());
            let text = render("t.conv", src, d);
            let (line, col) = line_col(src, d.span.start);
            assert!(
                text.starts_with(&format!("t.conv:{line}:{col}: error: ")),
                "{text}"
            );
            assert!(text.contains('^'), "{text}");
        }
    }
    result
}

fn spans_of(s: &Stmt) -> Vec<Span> {
    fn expr_spans(e: &Expr, out: &mut Vec<Span>) {
        out.push(e.span);
        match &e.kind {
            ExprKind::Tuple(xs) | ExprKind::List(xs) => xs.iter().for_each(|x| expr_spans(x, out)),
            ExprKind::Call { name, args } => {
                out.push(name.span);
                args.iter().for_each(|a| arg_spans(a, out));
            }
            _ => {}
        }
    }
    fn arg_spans(a: &Arg, out: &mut Vec<Span>) {
        out.push(a.span);
        if let Some(k) = &a.key {
            out.push(k.span);
        }
        expr_spans(&a.value, out);
    }
    let mut out = Vec::new();
    match s {
        Stmt::Input(i) => {
            out.extend([i.span, i.name.span, i.dims_span]);
            i.dims.iter().for_each(|d| expr_spans(d, &mut out));
        }
        Stmt::Layer(l) => {
            out.extend([l.span, l.name.span, l.op.span]);
            l.args.iter().for_each(|a| arg_spans(a, &mut out));
        }
        Stmt::Output(o) => {
            out.push(o.span);
            out.extend(o.names.iter().map(|n| n.span));
        }
    }
    out
}

/// Runs `f` on a thread with the default 2 MiB stack, as the main thread of a small program might have.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

// ---- deep nesting -------------------------------------------------------------------------

#[test]
fn ten_thousand_deep_nests_give_the_nesting_error() {
    on_small_stack(|| {
        let n = 10_000;
        let open = |s: &str| s.repeat(n);
        let cases = [
            format!("y = f({})", open("(")),
            format!("y = f({})", open("[")),
            format!("y = f(x, w={}1{})", open("["), "]".repeat(n)),
            format!("y = f(x, pad={}1{})", open("("), ")".repeat(n)),
            format!("y = {}", open("f(")),
            format!("y = f(x, w={})", open("g(k=")),
            format!("y = f({})", open("([")),
            format!("y = f({})", open("[\n# comment\n")),
            format!("input x: {}", open("[")),
            format!("input x: [3, {}", open("(")),
        ];
        for src in cases {
            let d = check(&src).expect_err("an error");
            assert_eq!(d.message, NESTING, "{}", &src[..40]);
        }
        // At statement level a bracket is simply unexpected: no recursion at all.
        let d = check(&open("((")).unwrap_err();
        assert!(
            d.message.starts_with("expected a statement"),
            "{}",
            d.message
        );
    });
}

#[test]
fn deep_nests_render_on_a_small_stack() {
    on_small_stack(|| {
        let src = format!("y = f(x, w={})\n", "[".repeat(10_000));
        let d = parse(&src).unwrap_err();
        let text = render("t.conv", &src, &d);
        assert!(
            text.starts_with("t.conv:1:75: error: brackets nested too deeply"),
            "{}",
            &text[..80]
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any nest deeper than the limit, of any mix of brackets and calls, gives the nesting error.
    #[test]
    fn any_deep_nest_gives_the_nesting_error(
        kinds in proptest::collection::vec(0u8..4, 65..10_000),
        closed in any::<bool>(),
    ) {
        let mut src = String::from("y = f(x, w=");
        let mut close = String::new();
        for k in &kinds {
            let (o, c) = match k { 0 => ("(", ")"), 1 => ("[", "]"), 2 => ("g(", ")"), _ => ("h(k=", ")") };
            src.push_str(o);
            close.insert_str(0, c);
        }
        if closed {
            src.push('1');
            src.push_str(&close);
            src.push(')');
        }
        let d = on_small_stack(move || check(&src).unwrap_err());
        prop_assert_eq!(d.message, NESTING);
    }
}

// ---- long inputs ------------------------------------------------------------------------------

#[test]
fn megabyte_lines_parse() {
    // A literal weight list of 200,000 numbers on one line (about 1.2 MB).
    let numbers: Vec<String> = (0..200_000).map(|i| format!("{}.5", i % 97)).collect();
    let src = format!("y = conv(x, weights=[{}])\noutput y\n", numbers.join(", "));
    assert!(src.len() > 1_000_000);
    let p = check(&src).unwrap();
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!()
    };
    let ExprKind::List(items) = &l.args[1].value.kind else {
        panic!()
    };
    assert_eq!(items.len(), 200_000);

    // A 1 MB comment, identifier, string; 1 MB of blanks inside and outside brackets.
    let mb = 1 << 20;
    check(&format!("# {}\noutput y\n", "c".repeat(mb))).unwrap();
    check(&format!("{} = f(x)\n", "a".repeat(mb))).unwrap();
    check(&format!("y = f(x, w=\"{}\")\n", "s".repeat(mb))).unwrap();
    check(&format!("y = f({}x{})\n", " ".repeat(mb), "\n".repeat(mb))).unwrap();
    check(&format!("output{} y\n", "\t".repeat(mb))).unwrap();
}

#[test]
fn megabyte_lines_with_errors() {
    let mb = 1 << 20;
    // Errors found at the end of a long line, and errors whose token is a megabyte long.
    let d = check(&format!("y = f(x, w=[{}1 2])", "1, ".repeat(mb / 3))).unwrap_err();
    assert_eq!(d.message, "expected `,` or `]`, found `2`");
    let d = check(&format!("y = f(x, w=\"{}", "s".repeat(mb))).unwrap_err();
    assert_eq!(d.message, "unterminated string");
    let d = check(&format!("y = f(x, w={}abc)", "1".repeat(mb))).unwrap_err();
    assert!(
        d.message
            .starts_with("`11111111111111111111111111111111...` is not a valid number")
    );
    let d = check(&format!("output a {}", "b".repeat(mb))).unwrap_err();
    assert!(
        d.message
            .ends_with("found `bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb...`"),
        "{}",
        d.message
    );
    let d = check(&format!("y = f(x, w={})", "9".repeat(mb))).unwrap_err();
    assert!(d.message.starts_with("integer `99999"));
    let d = check(&format!("y = f(x, w={}x3)", "9".repeat(mb))).unwrap_err();
    assert!(d.message.starts_with("size `99999"));
    let d = check(&format!(
        "y = f(x, w={}.{}e999)",
        "9".repeat(mb),
        "9".repeat(mb)
    ))
    .unwrap_err();
    assert!(d.message.starts_with("number `99999"));
}

#[test]
fn many_statements() {
    let mut src = String::from("input x0: [1, 8, 8]\n");
    for i in 1..20_000 {
        src.push_str(&format!("x{i} = relu(x{})\n", i - 1));
    }
    src.push_str("output x19999\n");
    assert_eq!(check(&src).unwrap().stmts.len(), 20_001);
}

// ---- random inputs ------------------------------------------------------------------------------

/// Tokens of the language (and near-misses) to build token soups from.
const TOKENS: &[&str] = &[
    "input",
    "output",
    "conv",
    "relu",
    "x",
    "y",
    "_",
    "inf",
    "none",
    "=",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "3",
    "-1",
    "0.5",
    "1e-5",
    "2.5E+3",
    "3x3",
    "-inf",
    "+1",
    ".5",
    "1.",
    "1e",
    "3abc",
    "-",
    "\"s\"",
    "\"a\\\"b\\\\\"",
    "\"\\q\"",
    "\"",
    "\\",
    "#c",
    "# )\n",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "é",
    "\u{0}",
    ";",
    "@",
    "99999999999999999999",
    "7x",
    "x=",
    "f(",
    "g(k=",
    "==",
    "\u{feff}",
];

fn token_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TOKENS), 0..60).prop_map(|t| t.concat())
}

const SPEC: &str = r#"# a spec exercising most of the grammar
input image: [3, H, W]
c1 = conv(image, out=8, kernel=3x3, stride=(1, 2), pad=same,
          weights=random(seed=1), bias=[0.5, -1, 1e-5, 2.5E+3])
d1 = depthwise(c1, weights=[[1, 0], [0, -1]], kernel=2x2)  # literal
w1 = conv(d1, out=1, weights=file("w \"q\" \\.npy", "conv1.weight"))
a1 = clamp(w1, min=-inf, max=inf)
output a1, c1
"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let src = String::from_utf8_lossy(&bytes);
        let _ = check(&src);
    }

    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>()) {
        let _ = check(&src);
    }

    #[test]
    fn token_soups_never_panic(src in token_soup()) {
        let _ = check(&src);
    }

    /// A valid spec with bytes deleted, replaced or inserted (as lossy UTF-8).
    #[test]
    fn mutated_specs_never_panic(
        edits in proptest::collection::vec((0usize..SPEC.len(), 0usize..4, any::<u8>(), proptest::sample::select(TOKENS)), 1..6),
    ) {
        let mut bytes = SPEC.as_bytes().to_vec();
        for (at, kind, byte, token) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 => { bytes.drain(at..(at + 3).min(bytes.len())); }
                1 => if at < bytes.len() { bytes[at] = byte },
                2 => bytes.insert(at, byte),
                _ => { bytes.splice(at..at, token.bytes()); }
            }
        }
        let src = String::from_utf8_lossy(&bytes);
        let _ = check(&src);
    }
}

#[test]
fn the_mutation_base_is_valid() {
    assert_eq!(check(SPEC).unwrap().stmts.len(), 6);
}

// ---- printed random programs parse back -------------------------------------------------------

/// A random value and its expected compact form (see `common::expr`).
fn arb_value() -> impl Strategy<Value = (String, String)> {
    let leaf = prop_oneof![
        "[a-z_][a-z0-9_]{0,6}"
            .prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
            .prop_map(|s| (s.clone(), s)),
        any::<i64>().prop_map(|i| (i.to_string(), format!("{i}i"))),
        (-1e6f64..1e6).prop_map(|f| (format!("{f:?}"), format!("{f:?}f"))),
        (-1e6f64..1e6).prop_map(|f| (
            format!("{f:e}"),
            format!("{:?}f", format!("{f:e}").parse::<f64>().unwrap())
        )),
        (0u64..100, 0u64..100).prop_map(|(a, b)| (format!("{a}x{b}"), format!("{a}x{b}"))),
        "[a-z \"\\\\#()é]{0,8}".prop_map(|s| {
            let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
            (format!("\"{escaped}\""), format!("{s:?}"))
        }),
        Just(("-inf".to_string(), "-inff".to_string())),
    ];
    leaf.prop_recursive(4, 40, 5, |inner| {
        let items = move || proptest::collection::vec((inner.clone(), ws()), 0..5);
        prop_oneof![
            items().prop_map(|xs| bracketed("(", ")", &xs)),
            items().prop_map(|xs| bracketed("[", "]", &xs)),
            (items(), "[a-z]{1,5}").prop_map(|(xs, name)| {
                let (text, exp) = bracketed("(", ")", &xs);
                (format!("{name}{text}"), format!("{name}{exp}"))
            }),
        ]
    })
}

/// Whitespace allowed inside brackets: blanks, newlines, comments.
fn ws() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(""),
        Just(" "),
        Just("\n  "),
        Just(" # c ( ] \"\n"),
        Just("\r\n\t")
    ]
    .prop_map(String::from)
}

fn bracketed(open: &str, close: &str, xs: &[((String, String), String)]) -> (String, String) {
    let text: Vec<String> = xs.iter().map(|((t, _), w)| format!("{w}{t}{w}")).collect();
    let exp: Vec<&str> = xs.iter().map(|((_, e), _)| e.as_str()).collect();
    (
        format!("{open}{}{close}", text.join(",")),
        format!("{open}{}{close}", exp.join(" ")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn printed_programs_parse_back(
        layers in proptest::collection::vec(
            ("[a-z][a-z0-9_]{0,5}".prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str())), "[a-z]{1,8}", proptest::collection::vec(arb_value(), 0..3), proptest::collection::vec(("[a-z]{1,5}", arb_value()), 0..3)),
            1..5,
        ),
    ) {
        let mut src = String::from("input img: [3, H, W]  # in\n\n");
        let mut expected = vec!["input img [3i H W]".to_string()];
        for (name, op, pos, kw) in &layers {
            let mut text = Vec::new();
            let mut exp = Vec::new();
            for (t, e) in pos {
                text.push(t.clone());
                exp.push(e.clone());
            }
            for (k, (t, e)) in kw {
                text.push(format!("{k}={t}"));
                exp.push(format!("{k}={e}"));
            }
            src.push_str(&format!("{name} = {op}({})\n", text.join(",\n   ")));
            expected.push(format!("{name} = {op}({})", exp.join(" ")));
        }
        src.push_str("output img");
        expected.push("output img".into());
        let p = check(&src).map_err(|d| TestCaseError::fail(render("t.conv", &src, &d)))?;
        let got: Vec<String> = p.stmts.iter().map(stmt).collect();
        prop_assert_eq!(got, expected, "{}", src);
        // Every expression's span covers exactly its own text: reparsing the text alone gives the same value.
        for s in &p.stmts {
            if let Stmt::Layer(l) = s {
                for a in &l.args {
                    let text = &src[a.value.span.start..a.value.span.end];
                    prop_assert_eq!(common::value(text), expr(&a.value));
                }
            }
        }
    }
}
