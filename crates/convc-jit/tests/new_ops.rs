//! The ops added for ONNX (`hardsigmoid`, `hardswish`, `prelu`, `mul`, `global_maxpool`,
//! `pad`, `upsample`, `conv_transpose`, `slice`, a broadcasting `add`)
//! against the interpreter on every vector path the host runs, 1 and 2 threads, a batch of 2:
//! alone, fused into convolutions' epilogues (microkernels, Winograd, depthwise bands) and
//! in squeeze-excitation blocks.
mod common;

use common::*;
use convc_jit::{ConvAlgo, Isa};

const SPECS: &[&str] = &[
    // Activations fused after dense, 1x1, depthwise and 3x3 (Winograd-able) convs.
    "input x: [8, 9, 11]\n\
     c1 = conv(x, out=16, kernel=3x3, weights=random(seed=1), bias=random(seed=2))\n\
     h1 = hardswish(c1)\n\
     c2 = pointwise(h1, out=12, weights=random(seed=3))\n\
     h2 = hardsigmoid(c2, alpha=0.3, beta=0.4)\n\
     d = depthwise(h2, kernel=3x3, weights=random(seed=4))\n\
     h3 = hardswish(d)\n\
     c3 = pointwise(h3, out=10, weights=random(seed=5))\n\
     h4 = hardsigmoid(c3)\n\
     output h4\n",
    // Standalone, on an input, and chained elementwise ops.
    "input x: [5, 7, 6]\n\
     a = hardswish(x)\n\
     b = hardsigmoid(a, alpha=2, beta=-0.5)\n\
     p = prelu(b, slope=random(seed=3))\n\
     q = prelu(x, slope=0.1)\n\
     m = mul(p, q)\n\
     output m, b\n",
    // Squeeze-excitation: global pools, a gate per channel, the broadcast product both ways.
    "input x: [6, 8, 7]\n\
     c1 = conv(x, out=8, kernel=3x3, weights=random(seed=1))\n\
     r = relu(c1)\n\
     s = global_avgpool(r)\n\
     f1 = pointwise(s, out=4, weights=random(seed=2), bias=random(seed=3))\n\
     p = prelu(f1, slope=[0.25])\n\
     f2 = pointwise(p, out=8, weights=random(seed=4))\n\
     g = hardsigmoid(f2, alpha=0.1666667, beta=0.5)\n\
     y = mul(r, g)\n\
     t = global_maxpool(y)\n\
     z = mul(t, y)\n\
     output z, t\n",
    // Padding, upsampling and transposed convolutions (a decoder), symbolic sizes bound.
    "input x: [4, 7, 6]\n\
     p1 = pad(x, pads=(1, 2, 0, 3), value=0.25)\n\
     p2 = pad(p1, pads=2, mode=reflect)\n\
     p3 = pad(p2, pads=(0, 1), mode=edge)\n\
     u1 = upsample(p3, scale=2)\n\
     u2 = upsample(x, scale=(2, 3), mode=bilinear)\n\
     u3 = upsample(x, scale=3, mode=bilinear, coords=align_corners)\n\
     u4 = upsample(x, scale=2, mode=bilinear, coords=asymmetric)\n\
     t1 = conv_transpose(x, out=6, kernel=3x3, stride=2, pad=1, output_padding=1, groups=2, bias=random(seed=3))\n\
     t2 = conv_transpose(t1, out=3, kernel=2x3, stride=(1, 2), dilation=(2, 1), pad=(0, 1, 1, 0))\n\
     r = relu(t2)\n\
     output u1, u2, u3, u4, r\n",
    // A broadcasting add both ways after convs (not fused), a residual add of equal shapes,
    // channel slices feeding convs and an output.
    "input x: [6, 7, 5]\n\
     c1 = conv(x, out=8, kernel=3x3, weights=random(seed=1), bias=random(seed=2))\n\
     g = global_avgpool(c1)\n\
     a1 = add(c1, g)\n\
     a2 = add(g, a1)\n\
     r = relu(a2)\n\
     s1 = slice(r, start=0, end=3)\n\
     s2 = slice(r, start=3, end=8)\n\
     c2 = pointwise(s2, out=3, weights=random(seed=3))\n\
     a3 = add(c2, s1)\n\
     s3 = slice(x, start=5, end=6)\n\
     output a3, s3, g\n",
];

#[test]
fn new_ops_match_the_interpreter_on_every_path() {
    for src in SPECS {
        for isa in Isa::available() {
            for threads in [1, 2] {
                check_isa_algo(src, isa, ConvAlgo::Auto, threads, 2);
                if isa != Isa::Sse {
                    check_isa_algo(src, isa, ConvAlgo::Winograd, threads, 1);
                }
            }
        }
    }
}

#[test]
fn nan_propagates_through_the_new_ops() {
    let g = graph(
        "input x: [2, 3, 3]\n\
         a = hardswish(x)\n\
         b = hardsigmoid(x)\n\
         c = prelu(x, slope=[0.5, 2])\n\
         d = global_maxpool(x)\n\
         e = mul(x, d)\n\
         output a, b, c, d, e\n",
        std::path::Path::new("."),
    );
    let mut v = random_tensor(vec![1, 2, 3, 3], 4).data().to_vec();
    v[4] = f32::NAN;
    v[12] = f32::INFINITY;
    let x = convc_tensor::Tensor::new(vec![1, 2, 3, 3], v).unwrap();
    let net = convc_jit::compile(&g, &[(3, 3)], &opts(1)).unwrap();
    let got = net.run(std::slice::from_ref(&x)).unwrap();
    let want = convc_interp::run(&g, &[x]).unwrap();
    assert_close(&got, &want, "nan");
    assert!(got[3].data()[0].is_nan(), "{:?}", got[3].data());
    assert_eq!(got[3].data()[1], f32::INFINITY);
}
