//! Every construct of the contract (§1–§5) parses to the right AST.

mod common;

use common::{error_line, stmts, value};
use convc_lang::*;

// ---- §1: the examples ----------------------------------------------------------------------

#[test]
fn example_first() {
    let src = "# The classic question: a 128x128 RGB image, 8 output channels.
input image: [3, 128, 128]

features = conv(image, out=8, kernel=3x3, pad=same, weights=random(seed=1))
output features
";
    assert_eq!(
        stmts(src),
        [
            "input image [3i 128i 128i]",
            "features = conv(image out=8i kernel=3x3 pad=same weights=random(seed=1i))",
            "output features",
        ]
    );
}

#[test]
fn example_asymmetric() {
    let src = "input image: [3, 128, 128]
vertical = conv(image, out=8, kernel=3x1, pad=same)     # asymmetric: n x 1 ...
features = conv(vertical, out=8, kernel=1x3, pad=same)  # ... then 1 x n
output features
";
    assert_eq!(
        stmts(src),
        [
            "input image [3i 128i 128i]",
            "vertical = conv(image out=8i kernel=3x1 pad=same)",
            "features = conv(vertical out=8i kernel=1x3 pad=same)",
            "output features",
        ]
    );
}

#[test]
fn example_separable() {
    let src = "input image: [3, 128, 128]
spatial  = depthwise(image, kernel=3x3, pad=same)  # one 3x3 filter per input channel
features = pointwise(spatial, out=8)               # 1x1 mix of channels
output features
";
    assert_eq!(
        stmts(src),
        [
            "input image [3i 128i 128i]",
            "spatial = depthwise(image kernel=3x3 pad=same)",
            "features = pointwise(spatial out=8i)",
            "output features",
        ]
    );
}

// ---- §4 and §5: every op with every argument, every weight source ------------------------

#[test]
fn every_op_with_every_argument() {
    let src = r#"input image: [3, H, W]
input other: [3, H, W]
c1 = conv(image, out=8, kernel=3x3, stride=1, pad=same, dilation=1, groups=1, weights=random(seed=1), bias=none)
c2 = conv(c1, out=8, kernel=(3, 1), stride=2x1, pad=valid, dilation=(2, 1), groups=2, weights=file("w.npy"), bias=file("b.npy"))
c3 = conv(c2, out=4, kernel=3, stride=(1, 2), pad=1, dilation=2x2, groups=4, weights=file("m.safetensors", "conv1.weight"), bias=random(seed=2))
c4 = conv(c3, out=4, pad=(1, 2), weights=[[[[1]]], [[[2]]], [[[3]]], [[[4]]]], bias=[0.5, -0.5, 1e-3, 2.5E+3])
c5 = conv(c4, out=4, pad=(0, 1, 2, 3))
d1 = depthwise(c5, kernel=3x3, multiplier=1, stride=1, pad=same, dilation=1, weights=gaussian(sigma=1.5), bias=none)
d2 = depthwise(d1, kernel=5x5, weights=box)
d3 = depthwise(d2, weights=sobel_x)
d4 = depthwise(d3, weights=sobel_y)
d5 = depthwise(d4, weights=laplacian, multiplier=2)
d6 = depthwise(d5, kernel=2x2, weights=[[1, 0], [0, -1]])
p1 = pointwise(d6, out=8, weights=random(seed=3), bias=none)
b1 = batchnorm(p1, mean=file("bn.npy"), var=random(seed=4), gamma=[1, 1, 1, 1, 1, 1, 1, 1], beta=random(seed=5), eps=1e-5)
a1 = relu(b1)
a2 = relu6(a1)
a3 = sigmoid(a2)
a4 = tanh(a3)
a5 = leaky_relu(a4, alpha=0.01)
a6 = clamp(a5, min=-inf, max=inf)
s1 = add(a6, a5)
s2 = concat(s1, a4, a3)
m1 = maxpool(s2, kernel=2x2, stride=kernel, pad=valid)
m2 = avgpool(m1, kernel=3, stride=2, pad=1)
g1 = global_avgpool(m2)
output g1, m1
output s2
"#;
    assert_eq!(
        stmts(src),
        [
            "input image [3i H W]",
            "input other [3i H W]",
            "c1 = conv(image out=8i kernel=3x3 stride=1i pad=same dilation=1i groups=1i weights=random(seed=1i) bias=none)",
            "c2 = conv(c1 out=8i kernel=(3i 1i) stride=2x1 pad=valid dilation=(2i 1i) groups=2i weights=file(\"w.npy\") bias=file(\"b.npy\"))",
            "c3 = conv(c2 out=4i kernel=3i stride=(1i 2i) pad=1i dilation=2x2 groups=4i weights=file(\"m.safetensors\" \"conv1.weight\") bias=random(seed=2i))",
            "c4 = conv(c3 out=4i pad=(1i 2i) weights=[[[[1i]]] [[[2i]]] [[[3i]]] [[[4i]]]] bias=[0.5f -0.5f 0.001f 2500.0f])",
            "c5 = conv(c4 out=4i pad=(0i 1i 2i 3i))",
            "d1 = depthwise(c5 kernel=3x3 multiplier=1i stride=1i pad=same dilation=1i weights=gaussian(sigma=1.5f) bias=none)",
            "d2 = depthwise(d1 kernel=5x5 weights=box)",
            "d3 = depthwise(d2 weights=sobel_x)",
            "d4 = depthwise(d3 weights=sobel_y)",
            "d5 = depthwise(d4 weights=laplacian multiplier=2i)",
            "d6 = depthwise(d5 kernel=2x2 weights=[[1i 0i] [0i -1i]])",
            "p1 = pointwise(d6 out=8i weights=random(seed=3i) bias=none)",
            "b1 = batchnorm(p1 mean=file(\"bn.npy\") var=random(seed=4i) gamma=[1i 1i 1i 1i 1i 1i 1i 1i] beta=random(seed=5i) eps=1e-5f)",
            "a1 = relu(b1)",
            "a2 = relu6(a1)",
            "a3 = sigmoid(a2)",
            "a4 = tanh(a3)",
            "a5 = leaky_relu(a4 alpha=0.01f)",
            "a6 = clamp(a5 min=-inff max=inf)",
            "s1 = add(a6 a5)",
            "s2 = concat(s1 a4 a3)",
            "m1 = maxpool(s2 kernel=2x2 stride=kernel pad=valid)",
            "m2 = avgpool(m1 kernel=3i stride=2i pad=1i)",
            "g1 = global_avgpool(m2)",
            "output g1 m1",
            "output s2",
        ]
    );
}

// ---- §2: lexical rules --------------------------------------------------------------------

#[test]
fn comments_blank_lines_and_trailing_whitespace() {
    let src = "# header\n\n   # indented comment\ninput x: [1, 2, 2]   # trailing comment\n\t\n\
               y = relu(x)\t \noutput y   \n# the end";
    assert_eq!(
        stmts(src),
        ["input x [1i 2i 2i]", "y = relu(x)", "output y"]
    );
}

#[test]
fn comment_may_contain_anything() {
    let src = "input x: [1, 2, 2] # é ü \" \\q ) ] [ ( # #\noutput x #\u{0}\n";
    assert_eq!(stmts(src), ["input x [1i 2i 2i]", "output x"]);
}

#[test]
fn crlf_line_endings() {
    let src = "input x: [1, 2, 2]\r\ny = conv(x,\r\n  out=2)  # c\r\n\r\noutput y\r\n";
    assert_eq!(
        stmts(src),
        ["input x [1i 2i 2i]", "y = conv(x out=2i)", "output y"]
    );
}

#[test]
fn no_final_newline() {
    assert_eq!(
        stmts("input x: [1, 2, 2]\noutput x"),
        ["input x [1i 2i 2i]", "output x"]
    );
    assert_eq!(stmts("y = relu(x)"), ["y = relu(x)"]);
    assert_eq!(stmts("input x: [1, 2, 2]"), ["input x [1i 2i 2i]"]);
}

#[test]
fn indentation_is_allowed() {
    assert_eq!(
        stmts("  input x: [1]\n\ty = relu(x)\n    output y\n"),
        ["input x [1i]", "y = relu(x)", "output y"]
    );
}

#[test]
fn multi_line_statements_inside_brackets() {
    let src = "
y = conv(
    x,            # the input
    out = 8,
    kernel =
      3x3,
    weights = [
        [[[1, 2],
          [3, 4]]],   # one filter
    ],
)
input x: [
  3,
  H, W
]
output y
";
    assert_eq!(
        stmts(src),
        [
            "y = conv(x out=8i kernel=3x3 weights=[[[[1i 2i] [3i 4i]]]])",
            "input x [3i H W]",
            "output y"
        ]
    );
}

#[test]
fn spaces_around_tokens_are_optional() {
    assert_eq!(
        stmts("y=conv(x,out=8,pad=(1,2))\n"),
        ["y = conv(x out=8i pad=(1i 2i))"]
    );
    assert_eq!(
        stmts("y  =  conv ( x , out = 8 )\n"),
        ["y = conv(x out=8i)"]
    );
    assert_eq!(
        stmts("input x:[3,4,4]\noutput x,y ,z\n"),
        ["input x [3i 4i 4i]", "output x y z"]
    );
}

#[test]
fn identifiers() {
    assert_eq!(stmts("_a = f(B_9, x_, _)\n"), ["_a = f(B_9 x_ _)"]);
    // Op names are not reserved, and keywords may be argument keys or values.
    assert_eq!(
        stmts("conv = conv(relu, input=output)\n"),
        ["conv = conv(relu input=output)"]
    );
    assert_eq!(
        stmts("inputs = f(x)\noutputs = f(x)\ninput_ = f(x)\n"),
        ["inputs = f(x)", "outputs = f(x)", "input_ = f(x)"]
    );
    assert_eq!(value("inf"), "inf");
    assert_eq!(value("none"), "none");
}

#[test]
fn integers() {
    assert_eq!(value("0"), "0i");
    assert_eq!(value("3"), "3i");
    assert_eq!(value("-1"), "-1i");
    assert_eq!(value("007"), "7i");
    assert_eq!(value("-0"), "0i");
    assert_eq!(value("9223372036854775807"), "9223372036854775807i");
    assert_eq!(value("-9223372036854775808"), "-9223372036854775808i");
}

#[test]
fn decimals_and_exponents() {
    assert_eq!(value("0.5"), "0.5f");
    assert_eq!(value("-0.25"), "-0.25f");
    assert_eq!(value("1e-5"), "1e-5f");
    assert_eq!(value("2.5E+3"), "2500.0f");
    assert_eq!(value("1e5"), "100000.0f");
    assert_eq!(value("3E2"), "300.0f");
    assert_eq!(value("-1.5e-3"), "-0.0015f");
    assert_eq!(value("1.0"), "1.0f");
    assert_eq!(value("1e-400"), "0.0f");
    // `int` is only set for numbers written as integers.
    assert_eq!(value("2.0"), "2.0f");
    assert_eq!(value("2e0"), "2.0f");
}

#[test]
fn negative_infinity() {
    assert_eq!(value("-inf"), "-inff");
    let src = "y = clamp(x, min=-inf)\n";
    let p = parse(src).unwrap();
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!()
    };
    assert_eq!(
        l.args[1].value.kind,
        ExprKind::Number {
            value: f64::NEG_INFINITY,
            int: None
        }
    );
    assert_eq!(
        &src[l.args[1].value.span.start..l.args[1].value.span.end],
        "-inf"
    );
    // `-inf` must be a whole word.
    assert!(error_line("y = f(w=-info)").contains("`-` must be directly followed by a number"));
}

#[test]
fn strings() {
    assert_eq!(value(r#""w.npy""#), r#""w.npy""#);
    assert_eq!(value(r#""""#), r#""""#);
    assert_eq!(
        value(r#""a \"quoted\" \\ path""#),
        r#""a \"quoted\" \\ path""#
    );
    assert_eq!(value(r#""\\\\""#), r#""\\\\""#);
    assert_eq!(value(r#""\"""#), r#""\"""#);
    // Anything but a newline, a `"` or a `\` stands for itself, non-ASCII and `#` included.
    let p = parse("y = f(w=\"dir/ünï cödé # not a comment\t(]\")\n").unwrap();
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!()
    };
    assert_eq!(
        l.args[0].value.kind,
        ExprKind::Str("dir/ünï cödé # not a comment\t(]".into())
    );
}

#[test]
fn sizes() {
    assert_eq!(value("3x3"), "3x3");
    assert_eq!(value("7x1"), "7x1");
    assert_eq!(value("1x7"), "1x7");
    assert_eq!(value("0x0"), "0x0");
    assert_eq!(value("18446744073709551615x2"), "18446744073709551615x2");
    assert_eq!(value("(3, 1)"), "(3i 1i)");
}

#[test]
fn tuples() {
    assert_eq!(value("(1, 2)"), "(1i 2i)");
    assert_eq!(value("(1, 2, 3, 4)"), "(1i 2i 3i 4i)");
    assert_eq!(value("(1,)"), "(1i)");
    assert_eq!(value("(1)"), "(1i)");
    assert_eq!(value("()"), "()");
    assert_eq!(value("(1, 2,)"), "(1i 2i)");
    assert_eq!(
        value("((1, 2), [3], \"s\", f(x))"),
        "((1i 2i) [3i] \"s\" f(x))"
    );
}

#[test]
fn lists() {
    assert_eq!(value("[]"), "[]");
    assert_eq!(value("[1]"), "[1i]");
    assert_eq!(value("[1, 2.5, -3,]"), "[1i 2.5f -3i]");
    assert_eq!(value("[[1, 2], [3, 4]]"), "[[1i 2i] [3i 4i]]");
    assert_eq!(value("[[[[0.5]]]]"), "[[[[0.5f]]]]");
    assert_eq!(
        value("[\n  [1, 2],  # row 0\n  [3, 4],  # row 1\n]"),
        "[[1i 2i] [3i 4i]]"
    );
}

#[test]
fn calls() {
    assert_eq!(value("random(seed=1)"), "random(seed=1i)");
    assert_eq!(
        value("file(\"w.npy\", \"conv1.weight\")"),
        "file(\"w.npy\" \"conv1.weight\")"
    );
    assert_eq!(value("gaussian(sigma=1.5)"), "gaussian(sigma=1.5f)");
    assert_eq!(value("f()"), "f()");
    assert_eq!(value("f(g(h(1)), k=[2],)"), "f(g(h(1i)) k=[2i])");
    assert_eq!(value("f (x)"), "f(x)");
    assert_eq!(value("random(\n  seed = 7,\n)"), "random(seed=7i)");
}

// ---- §3: statements -----------------------------------------------------------------------

#[test]
fn input_statements() {
    assert_eq!(
        stmts("input x: [3, 128, 128]\n"),
        ["input x [3i 128i 128i]"]
    );
    assert_eq!(stmts("input x: [3, H, W]\n"), ["input x [3i H W]"]);
    // The count and kinds are the IR's to check; any numbers and names parse.
    assert_eq!(stmts("input x: []\n"), ["input x []"]);
    assert_eq!(
        stmts("input x: [1, 2, 3, 4, 5]\n"),
        ["input x [1i 2i 3i 4i 5i]"]
    );
    assert_eq!(stmts("input x: [C, 2.5, -1]\n"), ["input x [C 2.5f -1i]"]);
    assert_eq!(stmts("input x : [1]\n"), ["input x [1i]"]);
}

#[test]
fn layer_statements() {
    assert_eq!(stmts("y = relu(x)\n"), ["y = relu(x)"]);
    assert_eq!(stmts("y = concat(a, b, c, d)\n"), ["y = concat(a b c d)"]);
    assert_eq!(stmts("y = conv(x, out=8,)\n"), ["y = conv(x out=8i)"]);
    assert_eq!(stmts("y = f()\n"), ["y = f()"]);
    assert_eq!(stmts("y = f(out=8)\n"), ["y = f(out=8i)"]);
    // Duplicate keys are the IR's to report.
    assert_eq!(stmts("y = f(x, a=1, a=2)\n"), ["y = f(x a=1i a=2i)"]);
}

#[test]
fn output_statements() {
    assert_eq!(stmts("output a\n"), ["output a"]);
    assert_eq!(stmts("output a, b, c\n"), ["output a b c"]);
    assert_eq!(stmts("output a\noutput b, c\n"), ["output a", "output b c"]);
}

#[test]
fn empty_files_and_files_without_output_are_not_syntax_errors() {
    for src in [
        "",
        "\n",
        "   ",
        "# only a comment",
        "\n\n# c\n\n",
        "\r\n",
        "input x: [1, 2, 2]\n",
    ] {
        let p = parse(src).unwrap();
        assert_eq!(p.eof, Span::new(src.len(), src.len()));
        assert!(p.stmts.len() <= 1);
    }
}

// ---- spans ----------------------------------------------------------------------------------

/// The source text a span covers.
fn text(src: &str, s: Span) -> &str {
    &src[s.start..s.end]
}

#[test]
fn spans_of_statements_and_names() {
    let src = "# c\ninput img: [3, H, W]  # c\nfeat = conv(img,\n  out=8, weights=random(seed=1))  \noutput feat, img\n";
    let p = parse(src).unwrap();
    let Stmt::Input(i) = &p.stmts[0] else {
        panic!()
    };
    assert_eq!(text(src, i.span), "input img: [3, H, W]");
    assert_eq!(text(src, i.name.span), "img");
    assert_eq!(text(src, i.dims_span), "[3, H, W]");
    assert_eq!(text(src, i.dims[1].span), "H");
    let Stmt::Layer(l) = &p.stmts[1] else {
        panic!()
    };
    assert_eq!(
        text(src, l.span),
        "feat = conv(img,\n  out=8, weights=random(seed=1))"
    );
    assert_eq!(text(src, l.name.span), "feat");
    assert_eq!(text(src, l.op.span), "conv");
    assert_eq!(text(src, l.args[0].span), "img");
    assert_eq!(text(src, l.args[0].value.span), "img");
    assert_eq!(text(src, l.args[1].span), "out=8");
    assert_eq!(text(src, l.args[1].key.as_ref().unwrap().span), "out");
    assert_eq!(text(src, l.args[1].value.span), "8");
    assert_eq!(text(src, l.args[2].span), "weights=random(seed=1)");
    let ExprKind::Call { name, args } = &l.args[2].value.kind else {
        panic!()
    };
    assert_eq!(text(src, name.span), "random");
    assert_eq!(text(src, args[0].span), "seed=1");
    let Stmt::Output(o) = &p.stmts[2] else {
        panic!()
    };
    assert_eq!(text(src, o.span), "output feat, img");
    assert_eq!(text(src, o.names[1].span), "img");
    assert_eq!(p.eof, Span::new(src.len(), src.len()));
}

#[test]
fn spans_of_values() {
    let src = "y = f(a = (1, 2) , b=[ [3] ], c=\"s\\\"\", d=-1.5e3, e=3x3, f=-inf, g=h ( 1 ))";
    let p = parse(src).unwrap();
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!()
    };
    let spans: Vec<_> = l
        .args
        .iter()
        .map(|a| (text(src, a.span), text(src, a.value.span)))
        .collect();
    assert_eq!(
        spans,
        [
            ("a = (1, 2)", "(1, 2)"),
            ("b=[ [3] ]", "[ [3] ]"),
            ("c=\"s\\\"\"", "\"s\\\"\""),
            ("d=-1.5e3", "-1.5e3"),
            ("e=3x3", "3x3"),
            ("f=-inf", "-inf"),
            ("g=h ( 1 )", "h ( 1 )"),
        ]
    );
    let ExprKind::List(items) = &l.args[1].value.kind else {
        panic!()
    };
    assert_eq!(text(src, items[0].span), "[3]");
}

#[test]
fn spans_are_byte_offsets_after_non_ascii() {
    let src = "# ünïcödé\ny = f(\"é\", x)\n";
    let p = parse(src).unwrap();
    let Stmt::Layer(l) = &p.stmts[0] else {
        panic!()
    };
    assert_eq!(text(src, l.args[1].span), "x");
    assert_eq!(line_col(src, l.args[1].span.start), (2, 12));
}

#[test]
fn nesting_up_to_the_limit_parses() {
    // The layer's `(` is level 1: 63 more brackets reach the limit exactly.
    let depth = MAX_NESTING - 1;
    let src = format!("y = f({}1{})\n", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(stmts(&src).len(), 1);
    let src = format!("y = f({}1{})\n", "(".repeat(depth), ")".repeat(depth));
    assert_eq!(stmts(&src).len(), 1);
    let src = format!(
        "y = {}1{}\n",
        "f(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    assert_eq!(stmts(&src).len(), 1);
    // In an input statement the dimension list is level 1.
    let src = format!(
        "input x: {}1{}\n",
        "[".repeat(MAX_NESTING),
        "]".repeat(MAX_NESTING)
    );
    assert!(
        error_line(&src).contains("an input dimension must be a number or a name, found a list")
    );
}

#[test]
fn debug_form_of_a_small_program() {
    insta::assert_debug_snapshot!(
        parse("input x: [1, H, W]\ny = conv(x, out=2, kernel=3x3)\noutput y").unwrap()
    );
}

#[test]
fn every_spec_of_the_repository_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs");
    let mut stack = vec![root];
    let mut count = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "conv") {
                let src = std::fs::read_to_string(&path).unwrap();
                if let Err(d) = parse(&src) {
                    panic!("{}", render(&path.display().to_string(), &src, &d));
                }
                count += 1;
            }
        }
    }
    eprintln!("{count} specs parsed");
}
