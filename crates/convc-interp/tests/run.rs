//! The graph runner: input checks and their messages, outputs, several inputs, symbolic
//! sizes, and small hand-checked values for the ops (including NaN and infinity).

use std::path::Path;

use convc_interp::{RunError, run, run_threads};
use convc_ir::Graph;
use convc_tensor::Tensor;

fn compile(src: &str) -> Graph {
    convc_ir::compile(src, Path::new("."))
        .unwrap_or_else(|d| panic!("spec does not compile: {}", d.message))
}

fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), data).expect("tensor shape")
}

fn ramp(shape: &[usize]) -> Tensor {
    let n = shape.iter().product::<usize>();
    t(shape, (0..n).map(|i| i as f32).collect())
}

fn err(g: &Graph, inputs: &[Tensor]) -> String {
    match run(g, inputs) {
        Ok(_) => panic!("expected an error"),
        Err(RunError { message }) => message,
    }
}

#[test]
fn input_errors_name_the_input_and_shapes() {
    let g = compile("input image: [3, 8, 6]\ny = relu(image)\noutput y\n");
    let m = err(&g, &[]);
    assert!(
        m.contains("1 input(s) (`image`)") && m.contains("0 tensor(s)"),
        "{m}"
    );
    let m = err(&g, &[ramp(&[3, 8, 6])]);
    assert!(
        m.contains("`image`") && m.contains("4-D") && m.contains("[3, 8, 6]"),
        "{m}"
    );
    let m = err(&g, &[ramp(&[1, 4, 8, 6])]);
    assert!(
        m.contains("`image` expects 3 channel(s)") && m.contains("[1, 4, 8, 6]"),
        "{m}"
    );
    let m = err(&g, &[ramp(&[1, 3, 8, 7])]);
    assert!(
        m.contains("`image`")
            && m.contains("width 6")
            && m.contains("7")
            && m.contains("[3, 8, 6] per image"),
        "{m}"
    );
    let m = err(&g, &[ramp(&[0, 3, 8, 6])]);
    assert!(m.contains("`image`") && m.contains("0 images"), "{m}");
}

#[test]
fn batch_and_symbol_mismatches_across_inputs() {
    let g = compile("input a: [1, H, W]\ninput b: [2, H, W]\nc = concat(a, b)\noutput c\n");
    let m = err(&g, &[ramp(&[2, 1, 4, 5]), ramp(&[3, 2, 4, 5])]);
    assert!(
        m.contains("`b`") && m.contains("3") && m.contains("`a`") && m.contains("same N"),
        "{m}"
    );
    let m = err(&g, &[ramp(&[2, 1, 4, 5]), ramp(&[2, 2, 4, 6])]);
    assert!(m.contains("`b`") && m.contains("W"), "{m}");
    let out = run(&g, &[ramp(&[2, 1, 4, 5]), ramp(&[2, 2, 4, 5])]).expect("runs");
    assert_eq!(out[0].shape(), &[2, 3, 4, 5]);
    // Image 1 of the result: a's image 1, then b's image 1.
    let d = out[0].data();
    assert_eq!(d[60], 20.0);
    assert_eq!(d[80], 40.0);
    assert_eq!(d[119], 79.0);
}

#[test]
fn too_small_input_names_the_layer() {
    let g =
        compile("input x: [1, H, W]\nbig = conv(x, out=1, kernel=5x5, pad=valid)\noutput big\n");
    let m = err(&g, &[ramp(&[1, 1, 4, 9])]);
    assert!(m.contains("`big`") && m.contains("height"), "{m}");
    let out = run(&g, &[ramp(&[1, 1, 5, 9])]).expect("runs");
    assert_eq!(out[0].shape(), &[1, 1, 1, 5]);
}

#[test]
fn outputs_in_order_and_twice() {
    let g =
        compile("input x: [2, 3, 3]\na = relu(x)\nb = global_avgpool(x)\noutput b, a\noutput b\n");
    let x = t(&[1, 2, 3, 3], (0..18).map(|i| i as f32 - 9.0).collect());
    let out = run(&g, &[x]).expect("runs");
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].shape(), &[1, 2, 1, 1]);
    assert_eq!(out[0].data(), &[-5.0, 4.0]);
    assert_eq!(out[1].shape(), &[1, 2, 3, 3]);
    assert_eq!(
        out[1].data()[..10],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(out[1].data()[17], 8.0);
    assert_eq!(out[0], out[2]);
}

#[test]
fn an_input_can_be_an_output_and_used_twice() {
    let g = compile("input x: [1, 2, 2]\ns = add(x, x)\noutput x, s\n");
    let out = run(
        &g,
        &[t(&[1, 1, 2, 2], vec![1.0, -2.0, f32::INFINITY, f32::NAN])],
    )
    .expect("runs");
    assert_eq!(out[0].data()[..3], [1.0, -2.0, f32::INFINITY]);
    assert_eq!(out[1].data()[..3], [2.0, -4.0, f32::INFINITY]);
    assert!(out[1].data()[3].is_nan());
}

#[test]
fn maxpool_padding_never_wins_and_nan_wins() {
    // 1x3x3 of negatives, 3x3 windows with padding 1: every window's max is an in-bounds value.
    let g = compile("input x: [1, 3, 3]\np = maxpool(x, kernel=3, stride=1, pad=1)\noutput p\n");
    let x = t(
        &[1, 1, 3, 3],
        vec![-9.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0],
    );
    let out = run(&g, &[x]).expect("runs");
    assert_eq!(
        out[0].data(),
        &[-5.0, -4.0, -4.0, -2.0, -1.0, -1.0, -2.0, -1.0, -1.0]
    );
    // NaN wins wherever it is in the window; -inf is an ordinary value.
    let g = compile("input x: [1, 2, 4]\np = maxpool(x, kernel=2)\noutput p\n");
    let x = t(
        &[1, 1, 2, 4],
        vec![
            f32::NAN,
            1.0,
            5.0,
            f32::NEG_INFINITY,
            2.0,
            3.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
    );
    let out = run(&g, &[x]).expect("runs");
    assert!(out[0].data()[0].is_nan());
    assert_eq!(out[0].data()[1], 5.0);
    let x = t(
        &[1, 1, 2, 4],
        vec![
            1.0,
            2.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            3.0,
            f32::NAN,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ],
    );
    let out = run(&g, &[x]).expect("runs");
    assert!(out[0].data()[0].is_nan());
    assert_eq!(out[0].data()[1], f32::NEG_INFINITY);
}

#[test]
fn avgpool_counts_in_bounds_elements_only() {
    let g = compile(
        "input x: [1, 3, 3]\np = avgpool(x, kernel=2, stride=2, pad=(1, 0, 1, 0))\noutput p\n",
    );
    let out = run(&g, &[ramp(&[1, 1, 3, 3])]).expect("runs");
    // Windows: {0}, {1,2}, {3,6}, {4,5,7,8}.
    assert_eq!(out[0].data(), &[0.0, 1.5, 4.5, 6.0]);
    // same: 3x3 stride 2 on 3x3 gives 2x2 with total padding 2 per axis (1 before, 1 after).
    let g = compile("input x: [1, 3, 3]\np = avgpool(x, kernel=3, stride=2, pad=same)\noutput p\n");
    let out = run(&g, &[ramp(&[1, 1, 3, 3])]).expect("runs");
    assert_eq!(out[0].data(), &[2.0, 3.0, 5.0, 6.0]);
}

#[test]
fn batchnorm_follows_the_formula() {
    let g = compile(
        "input x: [2, 1, 2]\nb = batchnorm(x, mean=[1, -1], var=[4, 0.25], gamma=[2, 3], beta=[0.5, -0.5], eps=0)\noutput b\n",
    );
    let out = run(&g, &[t(&[1, 2, 1, 2], vec![3.0, -1.0, 0.0, 1.0])]).expect("runs");
    // Channel 0: 2*(x-1)/2+0.5; channel 1: 3*(x+1)/0.5-0.5.
    assert_eq!(out[0].data(), &[2.5, -1.5, 5.5, 11.5]);
}

#[test]
fn unary_ops_and_nan() {
    let src = "input x: [1, 1, 6]\na = relu6(x)\nb = leaky_relu(x, alpha=0.5)\nc = clamp(x, min=-1, max=2)\nd = sigmoid(x)\ne = tanh(x)\noutput a, b, c, d, e\n";
    let g = compile(src);
    let x = t(
        &[1, 1, 1, 6],
        vec![-3.0, 0.5, 7.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY],
    );
    let out = run(&g, &[x]).expect("runs");
    let d = |i: usize| out[i].data();
    assert_eq!(d(0)[..3], [0.0, 0.5, 6.0]);
    assert_eq!(d(1)[..3], [-1.5, 0.5, 7.0]);
    assert_eq!(d(2)[..3], [-1.0, 0.5, 2.0]);
    assert_eq!(d(3)[4..], [1.0, 0.0]);
    assert_eq!(d(4)[4..], [1.0, -1.0]);
    for i in 0..5 {
        assert!(d(i)[3].is_nan(), "output {i} drops NaN");
    }
    assert_eq!(d(0)[4..], [6.0, 0.0]);
}

#[test]
fn conv_depthwise_multiplier_reads_channel_o_over_m() {
    // 2 channels, multiplier 3, 1x1 kernel: output channel o is w[o] * x[o / 3].
    let src = "input x: [2, 1, 2]\nd = depthwise(x, kernel=1, multiplier=3, weights=[[[[1]]], [[[2]]], [[[3]]], [[[4]]], [[[5]]], [[[6]]]], bias=[0, 0, 0, 0, 0, 0.5])\noutput d\n";
    let g = compile(src);
    let out = run(&g, &[t(&[1, 2, 1, 2], vec![1.0, 2.0, 10.0, 20.0])]).expect("runs");
    assert_eq!(
        out[0].data(),
        &[
            1.0, 2.0, 2.0, 4.0, 3.0, 6.0, 40.0, 80.0, 50.0, 100.0, 60.5, 120.5
        ]
    );
}

#[test]
fn conv_inf_and_nan_propagate() {
    let g = compile(
        "input x: [1, 1, 3]\nc = conv(x, out=1, kernel=1x2, pad=valid, weights=[[[[1, -1]]]])\noutput c\n",
    );
    let out = run(
        &g,
        &[t(&[1, 1, 1, 3], vec![f32::INFINITY, f32::INFINITY, 1.0])],
    )
    .expect("runs");
    assert!(out[0].data()[0].is_nan(), "inf - inf is NaN");
    assert_eq!(out[0].data()[1], f32::INFINITY);
}

#[test]
fn threads_zero_means_one() {
    let g = compile("input x: [1, 4, 4]\nc = conv(x, out=2, weights=random(seed=3))\noutput c\n");
    let x = ramp(&[2, 1, 4, 4]);
    assert_eq!(
        run_threads(&g, std::slice::from_ref(&x), 0),
        run_threads(&g, &[x], 1)
    );
}
