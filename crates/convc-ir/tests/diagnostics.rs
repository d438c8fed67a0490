//! One test per semantic diagnostic: the exact `FILE:LINE:COL: error: MESSAGE` first line.

use std::path::Path;

fn first_line(src: &str) -> String {
    first_line_in(src, Path::new("."))
}

fn first_line_in(src: &str, dir: &Path) -> String {
    match convc_ir::compile(src, dir) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(d) => {
            let r = convc_lang::render("t.conv", src, &d);
            assert!(r.contains('^'), "no caret in:\n{r}");
            r.lines().next().unwrap_or_default().to_string()
        }
    }
}

fn ok(src: &str) -> convc_ir::Graph {
    match convc_ir::compile(src, Path::new(".")) {
        Ok(g) => g,
        Err(d) => panic!("{}", convc_lang::render("t.conv", src, &d)),
    }
}

const IN: &str = "input x: [4, 16, 16]\n";

#[test]
fn unknown_op_points_at_the_op_name() {
    let src = format!("{IN}y = convv(x, out=8)\noutput y\n");
    assert_eq!(first_line(&src), "t.conv:2:5: error: unknown op `convv`");
}

#[test]
fn unknown_argument() {
    let src = format!("{IN}y = conv(x, out=8, kernal=3x3)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:20: error: unknown argument `kernal` for conv"
    );
}

#[test]
fn duplicate_argument_points_at_the_second() {
    let src = format!("{IN}y = conv(x, out=8, out=4)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:20: error: duplicate argument `out`"
    );
}

#[test]
fn wrong_argument_type_points_at_the_value() {
    let src = format!("{IN}y = conv(x, out=\"8\")\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:17: error: out takes a whole number, found the string \"8\""
    );
    let src = format!("{IN}y = conv(x, out=8, kernel=same)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:27: error: kernel takes a size such as `3x3`, `3` or `(3, 3)`, found `same`"
    );
    let src = format!("{IN}y = conv(x, out=8, pad=-1)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:24: error: padding must not be negative, found -1"
    );
}

#[test]
fn value_out_of_range() {
    let src = format!("{IN}y = conv(x, out=0)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:17: error: out must be at least 1, found 0"
    );
    let src = format!("{IN}y = clamp(x, min=2, max=1)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:25: error: clamp has min 2 greater than max 1"
    );
    let src = format!("{IN}y = maxpool(x, kernel=2, pad=2)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:30: error: each padding side must be smaller than the kernel 2x2 on its axis"
    );
}

#[test]
fn name_defined_twice() {
    let src = format!("{IN}y = relu(x)\ny = relu(x)\noutput y\n");
    assert_eq!(first_line(&src), "t.conv:3:1: error: `y` is defined twice");
    let src = "input x: [1, 4, 4]\ninput x: [1, 4, 4]\noutput x\n";
    assert_eq!(first_line(src), "t.conv:2:7: error: `x` is defined twice");
}

#[test]
fn name_used_before_definition() {
    let src = format!("{IN}y = relu(z)\nz = relu(x)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:10: error: `z` is used before its definition"
    );
    let src = format!("{IN}y = relu(q)\noutput y\n");
    assert_eq!(first_line(&src), "t.conv:2:10: error: `q` is not defined");
    let src = format!("{IN}output y\ny = relu(x)\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:8: error: `y` is used before its definition"
    );
}

#[test]
fn missing_output_is_located_at_the_end() {
    let src = format!("{IN}y = relu(x)\n");
    assert_eq!(
        first_line(&src),
        "t.conv:3:1: error: no `output` statement: add `output NAME` naming the tensors the network produces"
    );
    assert_eq!(
        first_line("# only a comment"),
        "t.conv:1:17: error: the file is empty: a network needs an `input`, layers and an `output`"
    );
}

#[test]
fn channels_not_divisible_by_groups_names_the_layer() {
    let src = format!("{IN}y = conv(x, out=6, groups=3)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:1: error: layer `y`: input channels 4 are not divisible by groups=3"
    );
    let src = format!("{IN}y = conv(x, out=6, groups=4)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:1: error: layer `y`: out=6 is not divisible by groups=4"
    );
}

#[test]
fn empty_output_names_the_layer() {
    let src = format!("{IN}big = conv(x, out=2, kernel=17x17, pad=valid)\noutput big\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:1: error: layer `big` has an output height of 0: the input is too small for its kernel, stride, dilation and padding"
    );
}

#[test]
fn mismatched_add_and_concat() {
    let src = format!("{IN}a = conv(x, out=8)\nb = conv(x, out=4)\ns = add(a, b)\noutput s\n");
    assert_eq!(
        first_line(&src),
        "t.conv:4:1: error: layer `s`: operands of add have different shapes: [8,16,16] and [4,16,16]"
    );
    let src = format!("{IN}a = conv(x, out=8, stride=2)\nc = concat(a, x)\noutput c\n");
    assert_eq!(
        first_line(&src),
        "t.conv:3:1: error: layer `c`: operands of concat have different sizes: 8x8 and 16x16"
    );
}

#[test]
fn symbolic_sizes_used_inconsistently() {
    // H and W are different symbols: adding [C,H,W] to [C,W,H] is not provably the same shape.
    let src = "input a: [1, H, W]\ninput b: [1, W, H]\ns = add(a, b)\noutput s\n";
    assert_eq!(
        first_line(src),
        "t.conv:3:1: error: layer `s`: operands of add have different shapes: [1,H,W] and [1,W,H]"
    );
    let src = "input a: [1, H, W]\ny = conv(a, out=1, stride=2)\ns = add(a, y)\noutput s\n";
    assert_eq!(
        first_line(src),
        "t.conv:3:1: error: layer `s`: operands of add have different shapes: [1,H,W] and [1,ceil(H/2),ceil(W/2)]"
    );
    let src = "input a: [C, H, W]\noutput a\n";
    assert_eq!(
        first_line(src),
        "t.conv:1:11: error: the channel count must be a number, found the symbol `C`"
    );
}

#[test]
fn input_dimension_count() {
    assert_eq!(
        first_line("input a: [3, 4]\noutput a\n"),
        "t.conv:1:10: error: an input has 3 dimensions [C, H, W], found 2"
    );
}

#[test]
fn arity() {
    let src = format!("{IN}y = add(x)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:5: error: add takes 2 input tensors, found 1"
    );
    let src = format!("{IN}y = conv(out=3)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:5: error: conv takes one input tensor, found 0"
    );
    let src = format!("{IN}y = conv(x)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:5: error: conv needs `out=N`, the number of output channels"
    );
}

#[test]
fn weight_errors_are_located_at_the_source() {
    let src = format!("{IN}y = conv(x, out=1, kernel=1, weights=[[[[1.0]]]])\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:38: error: layer `y`: the literal weights have shape [1, 1, 1, 1], expected [1, 4, 1, 1]"
    );
    let src = format!("{IN}y = conv(x, out=1, weights=file(\"missing.npy\"))\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:28: error: layer `y`: cannot read `missing.npy`: no such file"
    );
    let src = format!("{IN}y = conv(x, out=2, weights=sobel_x)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:28: error: layer `y`: the built-in filter `sobel_x` is for depthwise layers or a conv with one input and one output channel; this layer maps 4 to 2 channels"
    );
    let src = format!("{IN}y = depthwise(x, kernel=5x5, weights=laplacian)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:38: error: layer `y`: `laplacian` is a 3x3 filter but the kernel is 5x5"
    );
    let src = format!("{IN}y = conv(x, out=1, weights=none)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:28: error: layer `y`: `none` is only for `bias`; weights needs a source"
    );
    let src = format!("{IN}y = depthwise(x, weights=gaussian(sigma=0))\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:41: error: sigma must be greater than 0, found 0"
    );
}

#[test]
fn npy_weight_errors_name_layer_file_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let t = convc_tensor::Tensor::new(vec![2, 4, 3, 3], vec![0.5; 72]).unwrap();
    std::fs::write(dir.path().join("w.npy"), convc_tensor::npy::write(&t)).unwrap();
    let src = format!("{IN}y = conv(x, out=3, weights=file(\"w.npy\"))\noutput y\n");
    assert_eq!(
        first_line_in(&src, dir.path()),
        "t.conv:2:28: error: layer `y`: weights from `w.npy` have shape [2, 4, 3, 3], expected [3, 4, 3, 3]"
    );
    let mut bad = t.clone();
    bad.data_mut()[5] = f32::NAN;
    std::fs::write(dir.path().join("nan.npy"), convc_tensor::npy::write(&bad)).unwrap();
    let src = format!("{IN}y = conv(x, out=2, weights=file(\"nan.npy\"))\noutput y\n");
    assert_eq!(
        first_line_in(&src, dir.path()),
        "t.conv:2:28: error: layer `y`: `nan.npy` has a non-finite value (NaN) at flat index 5"
    );
    std::fs::write(dir.path().join("junk.npy"), b"not an npy file").unwrap();
    let src = format!("{IN}y = conv(x, out=2, weights=file(\"junk.npy\"))\noutput y\n");
    let line = first_line_in(&src, dir.path());
    assert!(
        line.starts_with("t.conv:2:28: error: layer `y`: `junk.npy`: "),
        "{line}"
    );
    // And the good file loads, from the spec's folder.
    let src = format!("{IN}y = conv(x, out=2, weights=file(\"w.npy\"))\noutput y\n");
    assert!(convc_ir::compile(&src, dir.path()).is_ok());
}

#[test]
fn defaults_are_applied() {
    let g = ok("input x: [4, 16, 16]\ny = conv(x, out=8)\noutput y\n");
    let n = g.find("y").unwrap();
    let convc_ir::Op::Conv(c) = &g.node(n).op else {
        panic!()
    };
    assert_eq!(
        (c.kernel, c.stride, c.dilation, c.groups),
        ([3, 3], [1, 1], [1, 1], 1)
    );
    assert_eq!(c.pad, convc_ir::Pad::Same);
    assert!(c.bias.is_none());
    assert!(matches!(
        c.weight.source,
        convc_ir::Source::Random { implicit: true, .. }
    ));
    let g = ok(
        "input x: [4, 16, 16]\ny = maxpool(x)\nz = leaky_relu(y)\nw = clamp(z)\nb = batchnorm(w)\noutput b\n",
    );
    let p = g.find("y").unwrap();
    let convc_ir::Op::Pool(pool) = &g.node(p).op else {
        panic!()
    };
    assert_eq!(
        (pool.kernel, pool.stride, pool.pad),
        ([2, 2], [2, 2], convc_ir::Pad::Explicit([0; 4]))
    );
    assert_eq!(g.node(p).shape.to_string(), "[4,8,8]");
    let z = g.find("z").unwrap();
    assert_eq!(
        g.node(z).op,
        convc_ir::Op::Unary(convc_ir::Unary::LeakyRelu { alpha: 0.01 })
    );
    let w = g.find("w").unwrap();
    assert_eq!(
        g.node(w).op,
        convc_ir::Op::Unary(convc_ir::Unary::Clamp {
            min: f32::NEG_INFINITY,
            max: f32::INFINITY
        })
    );
    let b = g.find("b").unwrap();
    let convc_ir::Op::BatchNorm(bn) = &g.node(b).op else {
        panic!()
    };
    assert_eq!(bn.eps, 1e-5);
    let g = ok("input x: [4, 16, 16]\nd = depthwise(x)\np = pointwise(d, out=5)\noutput p\n");
    let convc_ir::Op::Conv(dw) = &g.node(g.find("d").unwrap()).op else {
        panic!()
    };
    assert_eq!((dw.out, dw.groups, dw.kernel), (4, 4, [3, 3]));
    let convc_ir::Op::Conv(pw) = &g.node(g.find("p").unwrap()).op else {
        panic!()
    };
    assert_eq!(
        (pw.out, pw.groups, pw.kernel, pw.pad),
        (5, 1, [1, 1], convc_ir::Pad::Explicit([0; 4]))
    );
}

#[test]
fn slice_arguments_are_located() {
    // IN is `input x: [4, 16, 16]`.
    let src = format!("{IN}y = slice(x, start=1, end=5)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:27: error: end is 5: it must be above start (1) and at most the input's 4 channels"
    );
    let src = format!("{IN}y = slice(x, start=4, end=5)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:20: error: start is 4: it must be a channel of the input's 4 (from 0 to 3)"
    );
    let src = format!("{IN}y = slice(x, start=2, end=2)\noutput y\n");
    assert!(first_line(&src).starts_with("t.conv:2:27: error: end is 2"));
    let src = format!("{IN}y = slice(x, start=1)\noutput y\n");
    assert_eq!(
        first_line(&src),
        "t.conv:2:5: error: slice needs `end=E` (one past the last channel kept)"
    );
    let src = format!("{IN}y = slice(x, end=1.5)\noutput y\n");
    assert!(
        first_line(&src).starts_with("t.conv:2:18: error: end takes a whole number"),
        "{}",
        first_line(&src)
    );
    let g = ok(&format!("{IN}y = slice(x, start=1, end=3)\noutput y\n"));
    let y = g.outputs[0];
    assert_eq!(g.node(y).shape.to_string(), "[2,16,16]");
}

#[test]
fn add_broadcasts_a_per_channel_operand_like_mul() {
    for body in ["s = add(x, g)", "s = add(g, x)"] {
        let g = ok(&format!("{IN}g = global_avgpool(x)\n{body}\noutput s\n"));
        let s = g.outputs[0];
        assert_eq!(g.node(s).shape.to_string(), "[4,16,16]", "{body}");
    }
    // Another channel count is still an error.
    let src = format!("{IN}c = conv(x, out=5)\ng = global_avgpool(c)\ns = add(x, g)\noutput s\n");
    assert_eq!(
        first_line(&src),
        "t.conv:4:1: error: layer `s`: operands of add have different shapes: [4,16,16] and [5,1,1]"
    );
}
