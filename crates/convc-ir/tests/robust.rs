//! No spec text makes the front end panic: token soup, mutations of valid specs, huge values,
//! deep nests, very long chains.

use std::path::Path;

use proptest::prelude::*;

const VALID: &str = include_str!("../../../specs/examples/mobilenet_block.conv");

const TOKENS: &[&str] = &[
    "input",
    "output",
    "x",
    "y",
    "z",
    "=",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "\n",
    " ",
    "conv",
    "depthwise",
    "pointwise",
    "batchnorm",
    "relu",
    "add",
    "concat",
    "maxpool",
    "avgpool",
    "global_avgpool",
    "clamp",
    "softmax",
    "lrn",
    "shuffle",
    "size=",
    "alpha=",
    "beta=",
    "out=",
    "kernel=",
    "stride=",
    "pad=",
    "dilation=",
    "groups=",
    "multiplier=",
    "weights=",
    "bias=",
    "min=",
    "max=",
    "eps=",
    "3x3",
    "0x0",
    "1x7",
    "99999999999x1",
    "3",
    "0",
    "-1",
    "1e-5",
    "-inf",
    "inf",
    "same",
    "valid",
    "none",
    "box",
    "sobel_x",
    "gaussian(sigma=1)",
    "random(seed=1)",
    "file(\"w.npy\")",
    "[[1,2],[3,4]]",
    "(1, 2)",
    "(1,2,3,4)",
    "\"s\\\"\"",
    "#c",
    "18446744073709551617",
    "H",
    "W",
];

fn no_panic(src: &str) {
    // Errors are fine; panics are not (proptest reports them as failures).
    let _ = convc_ir::compile(src, Path::new("."));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn token_soup_never_panics(toks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let src: String = toks.iter().map(|&i| TOKENS[i]).collect();
        no_panic(&src);
    }

    #[test]
    fn structured_specs_never_panic(
        c in 1usize..5, h in 1usize..9, w in 1usize..9,
        layers in proptest::collection::vec((0..TOKENS.len(), 0..TOKENS.len(), 0..TOKENS.len(), 0..20i64), 1..6)
    ) {
        let mut src = format!("input x: [{c}, {h}, {w}]\n");
        let mut prev = "x".to_string();
        for (i, (op, k, v, n)) in layers.iter().enumerate() {
            let name = format!("l{i}");
            src.push_str(&format!("{name} = {}({prev}, {}{n}, {}{})\n", TOKENS[*op], TOKENS[*k], TOKENS[*v], TOKENS[*k % 7]));
            prev = name;
        }
        src.push_str(&format!("output {prev}\n"));
        no_panic(&src);
    }

    #[test]
    fn mutated_valid_specs_never_panic(edits in proptest::collection::vec((any::<usize>(), 0..TOKENS.len(), 0..3u8), 1..6)) {
        let mut src = VALID.to_string();
        for (pos, tok, kind) in edits {
            let mut at = pos % (src.len() + 1);
            while !src.is_char_boundary(at) { at -= 1; }
            match kind {
                0 => src.insert_str(at, TOKENS[tok]),
                1 => { let end = (at + 1 + tok % 8).min(src.len()); let mut e = end; while !src.is_char_boundary(e) { e += 1; } src.replace_range(at..e, ""); }
                _ => { let end = (at + TOKENS[tok].len()).min(src.len()); let mut e = end; while !src.is_char_boundary(e) { e += 1; } src.replace_range(at..e, TOKENS[tok]); }
            }
        }
        no_panic(&src);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        no_panic(&s);
    }
}

#[test]
fn huge_numbers_are_errors_not_overflows() {
    for layer in [
        "conv(x, out=99999999999)",
        "conv(x, out=100000, kernel=1000x1000)",
        "conv(x, out=4, kernel=99999999x1)",
        "conv(x, out=4, stride=18446744073709551615)",
        "conv(x, out=4, pad=9223372036854775807)",
        "conv(x, out=4, dilation=65536, kernel=65536)",
        "depthwise(x, multiplier=9999999999)",
        "maxpool(x, kernel=65536, stride=65536)",
    ] {
        let src = format!("input x: [3, 8, 8]\ny = {layer}\noutput y\n");
        assert!(
            convc_ir::compile(&src, Path::new(".")).is_err(),
            "{layer} should be refused"
        );
    }
    let src = "input x: [3, 99999999999, 8]\noutput x\n";
    assert!(convc_ir::compile(src, Path::new(".")).is_err());
}

#[test]
fn a_very_long_chain_is_fine() {
    let mut src = String::from("input x: [1, 4, 4]\n");
    let mut prev = "x".to_string();
    for i in 0..20_000 {
        src.push_str(&format!("r{i} = relu({prev})\n"));
        prev = format!("r{i}");
    }
    src.push_str(&format!("output {prev}\n"));
    // Run on a small stack: nothing in the front end may recurse per layer.
    let h = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let g = convc_ir::compile(&src, Path::new(".")).expect("valid");
            assert_eq!(g.topo_order().len(), 20_001);
            convc_ir::print::text(&g).lines().count()
        });
    assert_eq!(h.unwrap().join().unwrap(), 20_003);
}

#[test]
fn deep_brackets_are_an_error() {
    let src = format!(
        "input x: [1, 4, 4]\ny = conv(x, out=1, weights={}1{})\noutput y\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let h = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || convc_ir::compile(&src, Path::new(".")).is_err());
    assert!(h.unwrap().join().unwrap());
}

/// Every op the language lists lowers to an IR op of its own name (`depthwise` and `pointwise`
/// are convs): a name added to `OPS` without its lowering arm is refused, never lowered to
/// another op.
#[test]
fn every_listed_op_lowers() {
    for &op in convc_ir::lower::OPS {
        let (args, want) = match op {
            "conv" => ("x, out=4, kernel=3x3", "conv"),
            "depthwise" => ("x", "conv"),
            "pointwise" => ("x, out=4", "conv"),
            "batchnorm" => (
                "x, mean=random(seed=1), var=random(seed=2), gamma=random(seed=3), beta=random(seed=4)",
                "batchnorm",
            ),
            "add" | "concat" | "mul" => ("x, x", op),
            "lrn" => ("x, size=3", op),
            "shuffle" => ("x, groups=2", op),
            "pad" => ("x, pads=1", op),
            "conv_transpose" => ("x, out=4, stride=2", op),
            "slice" => ("x, start=1, end=3", op),
            _ => ("x", op),
        };
        let src = format!("input x: [4, 8, 8]\ny = {op}({args})\noutput y\n");
        let g = convc_ir::compile(&src, std::path::Path::new("."))
            .unwrap_or_else(|d| panic!("{op}: {}", d.message));
        let y = g.outputs[0];
        assert_eq!(g.node(y).op.name(), want, "{op}");
    }
}
