//! Shape inference: stride, dilation, every padding form, groups, pooling, concat, symbols.

use std::path::Path;

use convc_ir::{Bindings, Graph, shape};

fn graph(src: &str) -> Graph {
    match convc_ir::compile(src, Path::new(".")) {
        Ok(g) => g,
        Err(d) => panic!("{}", convc_lang::render("t.conv", src, &d)),
    }
}

/// Shape of `y` for a one-layer net on `[c, h, w]`.
fn out(c: usize, h: usize, w: usize, layer: &str) -> String {
    let src = format!("input x: [{c}, {h}, {w}]\ny = {layer}\noutput y\n");
    let g = graph(&src);
    g.node(g.find("y").unwrap()).shape.to_string()
}

/// The contract's formula: floor((n + before + after - d*(k-1) - 1) / s) + 1.
fn formula(n: usize, before: usize, after: usize, k: usize, s: usize, d: usize) -> i64 {
    (n as i64 + before as i64 + after as i64 - (d * (k - 1)) as i64 - 1).div_euclid(s as i64) + 1
}

#[test]
fn explicit_padding_forms() {
    assert_eq!(
        out(3, 13, 17, "conv(x, out=4, kernel=3, pad=valid)"),
        "[4,11,15]"
    );
    assert_eq!(
        out(3, 13, 17, "conv(x, out=4, kernel=3, pad=2)"),
        "[4,15,19]"
    );
    assert_eq!(
        out(3, 13, 17, "conv(x, out=4, kernel=3, pad=(1, 0))"),
        "[4,13,15]"
    );
    assert_eq!(
        out(3, 13, 17, "conv(x, out=4, kernel=3, pad=(0, 2, 1, 0))"),
        "[4,13,16]"
    );
}

#[test]
fn stride_and_dilation_follow_the_formula() {
    for s in 1..=3 {
        for d in 1..=3 {
            for k in 1..=4 {
                for p in 0..=2 {
                    let (h, w) = (13, 17);
                    let (oh, ow) = (formula(h, p, p, k, s, d), formula(w, p, p, k, s, d));
                    if oh <= 0 || ow <= 0 {
                        continue;
                    }
                    let got = out(
                        2,
                        h,
                        w,
                        &format!("conv(x, out=2, kernel={k}, stride={s}, dilation={d}, pad={p})"),
                    );
                    assert_eq!(got, format!("[2,{oh},{ow}]"), "k={k} s={s} d={d} p={p}");
                }
            }
        }
    }
    assert_eq!(
        out(
            1,
            10,
            10,
            "conv(x, out=1, kernel=3x1, stride=2x1, dilation=1x2, pad=valid)"
        ),
        "[1,4,10]"
    );
}

#[test]
fn same_padding_even_kernels_and_strides() {
    for s in 1..=3usize {
        for k in 1..=4usize {
            for d in 1..=2usize {
                for n in [1usize, 2, 5, 13, 16] {
                    let got = out(
                        1,
                        n,
                        n + 1,
                        &format!("conv(x, out=1, kernel={k}, stride={s}, dilation={d})"),
                    );
                    assert_eq!(
                        got,
                        format!("[1,{},{}]", n.div_ceil(s), (n + 1).div_ceil(s)),
                        "k={k} s={s} n={n}"
                    );
                }
            }
        }
    }
    // SAME_UPPER: the odd padding element goes to the bottom/right.
    let p = convc_ir::Pad::Same.resolve(16, 16, [4, 2], [1, 1], [1, 1]);
    assert_eq!(p, [1, 2, 0, 1]);
    let p = convc_ir::Pad::Same.resolve(13, 13, [3, 3], [2, 2], [1, 1]);
    assert_eq!(p, [1, 1, 1, 1]);
    let p = convc_ir::Pad::Same.resolve(16, 16, [3, 3], [2, 2], [1, 1]);
    assert_eq!(p, [0, 1, 0, 1]);
}

#[test]
fn groups_and_multipliers() {
    assert_eq!(out(4, 8, 8, "conv(x, out=6, groups=2)"), "[6,8,8]");
    assert_eq!(out(4, 8, 8, "depthwise(x, multiplier=3)"), "[12,8,8]");
    assert_eq!(out(4, 8, 8, "pointwise(x, out=5)"), "[5,8,8]");
    let g = graph("input x: [4, 8, 8]\ny = conv(x, out=6, groups=2, kernel=3x1)\noutput y\n");
    let convc_ir::Op::Conv(c) = &g.node(g.find("y").unwrap()).op else {
        panic!()
    };
    assert_eq!(c.weight.data.shape(), [6, 2, 3, 1]);
}

#[test]
fn pooling() {
    assert_eq!(out(2, 13, 17, "maxpool(x)"), "[2,6,8]");
    assert_eq!(
        out(2, 13, 17, "avgpool(x, kernel=3, stride=2, pad=1)"),
        "[2,7,9]"
    );
    assert_eq!(
        out(2, 13, 17, "maxpool(x, kernel=3, stride=1, pad=same)"),
        "[2,13,17]"
    );
    assert_eq!(
        out(2, 13, 17, "maxpool(x, kernel=2x3, stride=(1, 2))"),
        "[2,12,8]"
    );
    assert_eq!(out(2, 13, 17, "global_avgpool(x)"), "[2,1,1]");
}

#[test]
fn concat_and_add() {
    let g = graph(
        "input x: [2, 9, 9]\na = conv(x, out=3)\nb = relu(x)\nc = concat(a, b, x)\nd = add(b, x)\noutput c, d\n",
    );
    assert_eq!(g.node(g.find("c").unwrap()).shape.to_string(), "[7,9,9]");
    assert_eq!(g.node(g.find("d").unwrap()).shape.to_string(), "[2,9,9]");
    assert_eq!(g.outputs.len(), 2);
}

#[test]
fn symbolic_sizes_stay_symbolic_and_bind() {
    let src = "input x: [3, H, W]\na = conv(x, out=4, stride=2)\nb = maxpool(a, kernel=3, pad=valid)\nc = conv(b, out=2, kernel=3, pad=valid, dilation=2)\noutput c\n";
    let g = graph(src);
    let c = g.find("c").unwrap();
    assert_eq!(
        g.node(c).shape.to_string(),
        "[2,(ceil(H/2)-3)/3-3,(ceil(W/2)-3)/3-3]"
    );
    let b = shape::bind_inputs(&g, &[(64, 40)]).unwrap();
    let conc = shape::concretize(&g, &b).unwrap();
    // 64 -> 32 -> 10 -> 6 ; 40 -> 20 -> 6 -> 2
    assert_eq!(conc.get(c), [2, 6, 2]);
    // Too small for these sizes: the error names the layer.
    let b = shape::bind_inputs(&g, &[(16, 16)]).unwrap();
    let e = shape::concretize(&g, &b).unwrap_err();
    assert!(
        e.message.contains("layer `c` has an output height of -2"),
        "{}",
        e.message
    );
    // Unbound.
    let e = shape::concretize(&g, &Bindings::new()).unwrap_err();
    assert!(e.message.contains("bind `H`"), "{}", e.message);
}

#[test]
fn the_same_symbol_is_the_same_size() {
    let g = graph("input a: [1, S, S]\ninput b: [1, S, S]\nc = add(a, b)\noutput c\n");
    assert!(shape::bind_inputs(&g, &[(8, 8), (8, 8)]).is_ok());
    let e = shape::bind_inputs(&g, &[(8, 8), (8, 9)]).unwrap_err();
    assert!(e.contains("size `S` is 8"), "{e}");
    let e = shape::bind_inputs(&g, &[(8, 7)]).unwrap_err();
    assert!(e.contains("size `S` is 8"), "{e}");
}
