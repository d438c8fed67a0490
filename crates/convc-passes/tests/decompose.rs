//! `decompose`: exact rewrites of constructed low-rank weights, full-rank weights left alone,
//! lossy truncation at a larger tolerance, reported errors and MACs checked against the graph,
//! and every padding/stride/dilation edge case run through the interpreter.

mod common;

use common::*;
use convc_ir::{Graph, NodeIndex, Pad, cost};
use convc_passes::{Decompose, Form, Pass, PassContext, Rewrite};

/// Builds `x -> conv -> output` with weights of `kind`.
#[allow(clippy::too_many_arguments)]
fn single(
    seed: u64,
    c: usize,
    o: usize,
    g: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: Pad,
    kind: Kind,
    hw: (usize, usize),
    symbolic: bool,
) -> Option<Graph> {
    let mut rng = Rng::new(seed);
    let (mut gr, x) = input_graph(c, hw.0, hw.1, symbolic);
    let w = weights(&mut rng, kind, o, c / g, g, kernel[0], kernel[1]);
    let bias = Some(rng.vec(o));
    let n = try_add(
        &mut gr,
        "conv1",
        conv_op(o, kernel, stride, dilation, pad, g, w, c / g, bias),
        &[x],
        hw,
    )?;
    gr.outputs.push(n);
    Some(gr)
}

/// Runs `decompose` and checks everything a rewrite promises: outputs agree with the
/// interpreter, the reported error equals the weight-space error of the new layers composed
/// back together, and the reported MACs are `cost::node_cost` of the old and new nodes.
fn decompose_checked(g: &Graph, tolerance: f64, hw: (usize, usize)) -> (Graph, Vec<Rewrite>) {
    let mut h = g.clone();
    let report = Decompose
        .run(&mut h, &PassContext::with_tolerance(tolerance))
        .expect("decompose runs");
    convc_ir::shape::validate(&h).expect("valid after decompose");
    for rw in &report.rewrites {
        let old = node(g, &rw.layer);
        let (a, b) = (node(&h, &rw.new_layers[0]), node(&h, &rw.new_layers[1]));
        assert_eq!(h.operands(b), vec![a]);
        let c_in = in_ch(g, old);
        let (composed, k) = compose(conv_of(&h, a), c_in, conv_of(&h, b));
        let orig = dense(conv_of(g, old), c_in);
        assert_eq!(k, conv_of(g, old).kernel);
        let measured = rel_diff(&composed, &orig);
        assert!(
            (measured - rw.rel_error).abs() <= 1e-9 + 1e-6 * rw.rel_error,
            "{}: reported error {} but measured {measured}",
            rw.layer,
            rw.rel_error
        );
        assert!(rw.rel_error <= tolerance.max(1e-6), "{rw}");
        let before = cost::node_cost(g, old);
        let (ca, cb) = (cost::node_cost(&h, a), cost::node_cost(&h, b));
        assert_eq!(rw.macs_before, before.macs());
        assert_eq!(rw.macs_per_pixel_before, before.macs_per_pixel);
        assert_eq!(
            rw.macs_per_pixel_after,
            ca.macs_per_pixel + cb.macs_per_pixel
        );
        assert_eq!(rw.macs_after, ca.macs().zip(cb.macs()).map(|(p, q)| p + q));
        assert!(rw.cost_after < rw.cost_before, "{rw}");
        assert_eq!(
            conv_of(&h, b).bias,
            conv_of(g, old).bias,
            "the bias moves to the last layer"
        );
        assert!(conv_of(&h, a).bias.is_none());
        assert!(rw.rank >= 1);
    }
    if tolerance <= 1e-6 {
        let inputs = random_inputs(g, 2, hw, 7);
        assert_same(g, &h, &inputs);
        // Exact rewrites agree to 1e-5 relative.
        let (d, m) = max_diff(&run(&h, &inputs), &run(g, &inputs));
        assert!(d <= 1e-5 * m, "difference {d} for outputs up to {m}");
    }
    (h, report.rewrites)
}

fn only(rws: &[Rewrite]) -> &Rewrite {
    assert_eq!(rws.len(), 1, "expected one rewrite, got {rws:?}");
    &rws[0]
}

const SAME: Pad = Pad::Same;
const VALID: Pad = Pad::Explicit([0; 4]);

#[test]
fn rank1_depthwise_filters_become_vertical_then_horizontal() {
    let hw = (11, 12);
    let g = single(
        1,
        3,
        3,
        3,
        [5, 5],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, rws) = decompose_checked(&g, 1e-6, hw);
    let rw = only(&rws);
    assert_eq!((rw.form, rw.rank), (Form::Asymmetric, 1));
    assert!(rw.rel_error < 1e-6);
    let (v, hh) = (
        conv_of(&h, node(&h, "conv1.v")),
        conv_of(&h, node(&h, "conv1.h")),
    );
    assert_eq!((v.kernel, v.groups, v.out), ([5, 1], 3, 3));
    assert_eq!((hh.kernel, hh.groups, hh.out), ([1, 5], 3, 3));
    assert_eq!(h.node(h.outputs[0]).name, "conv1.h");
}

#[test]
fn depthwise_separable_products_become_depthwise_then_pointwise() {
    let hw = (9, 10);
    let g = single(
        2,
        4,
        6,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, rws) = decompose_checked(&g, 1e-6, hw);
    let rw = only(&rws);
    assert_eq!((rw.form, rw.rank), (Form::DepthwiseSeparable, 1));
    let (dw, pw) = (
        conv_of(&h, node(&h, "conv1.dw")),
        conv_of(&h, node(&h, "conv1.pw")),
    );
    assert_eq!((dw.kernel, dw.groups, dw.out), ([3, 3], 4, 4));
    assert_eq!(
        (pw.kernel, pw.groups, pw.out, pw.pad),
        ([1, 1], 1, 6, VALID)
    );
    // Multiplier 2.
    let g = single(
        3,
        3,
        12,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(2),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!(
        (only(&rws).form, only(&rws).rank),
        (Form::DepthwiseSeparable, 2)
    );
}

#[test]
fn rank2_asymmetric_weights_keep_rank_2() {
    let hw = (13, 9);
    let g = single(
        4,
        4,
        6,
        1,
        [5, 5],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(2),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    let rw = only(&rws);
    assert_eq!((rw.form, rw.rank), (Form::Asymmetric, 2));
    assert!(rw.rel_error < 1e-6);
}

#[test]
fn per_output_rank1_uses_a_grouped_horizontal_layer() {
    // Like sobel: two outputs, each a rank-1 kernel of its own.
    let hw = (10, 10);
    let g = single(
        5,
        1,
        2,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::PerOutput(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!(
        (only(&rws).form, only(&rws).rank),
        (Form::AsymmetricPerOutput, 1)
    );
    let hh = conv_of(&h, node(&h, "conv1.h"));
    assert_eq!((hh.groups, hh.kernel), (2, [1, 3]));
    // A depthwise conv with multiplier 2 and a rank-1 kernel per output channel.
    let g = single(
        6,
        3,
        6,
        3,
        [5, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::PerOutput(1),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!(
        (only(&rws).form, only(&rws).rank),
        (Form::AsymmetricPerOutput, 1)
    );
}

#[test]
fn grouped_convs_decompose_per_group() {
    let hw = (8, 11);
    let g = single(
        7,
        4,
        6,
        2,
        [3, 5],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!((only(&rws).form, only(&rws).rank), (Form::Asymmetric, 1));
    let v = conv_of(&h, node(&h, "conv1.v"));
    assert_eq!((v.groups, v.out), (2, 2));
    let g = single(
        8,
        6,
        8,
        2,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!(
        (only(&rws).form, only(&rws).rank),
        (Form::DepthwiseSeparable, 1)
    );
    let pw = conv_of(&h, node(&h, "conv1.pw"));
    assert_eq!(pw.groups, 2);
}

#[test]
fn already_asymmetric_convs_are_only_depthwise_separable_candidates() {
    let hw = (9, 12);
    // 1x5 with separable weights: depthwise 1x5 then pointwise.
    let g = single(
        9,
        4,
        8,
        1,
        [1, 5],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(1),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert_eq!(only(&rws).form, Form::DepthwiseSeparable);
    // 5x1 depthwise: nothing to do.
    let g = single(
        10,
        3,
        3,
        3,
        [5, 1],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(1),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert!(rws.is_empty());
    // 1x1: nothing to do.
    let g = single(
        11,
        4,
        4,
        1,
        [1, 1],
        [1, 1],
        [1, 1],
        VALID,
        Kind::Asym(1),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert!(rws.is_empty());
}

#[test]
fn full_rank_random_weights_are_left_alone() {
    let hw = (8, 8);
    for (seed, c, o, g, k) in [
        (12, 3, 8, 1, [3, 3]),
        (13, 8, 8, 1, [3, 3]),
        (14, 4, 4, 4, [3, 3]),
        (15, 6, 6, 2, [5, 5]),
    ] {
        let gr = single(
            seed,
            c,
            o,
            g,
            k,
            [1, 1],
            [1, 1],
            SAME,
            Kind::Random,
            hw,
            false,
        )
        .expect("valid");
        let (h, rws) = decompose_checked(&gr, 1e-6, hw);
        assert!(rws.is_empty(), "{rws:?}");
        assert_eq!(convc_ir::print::text(&h), convc_ir::print::text(&gr));
    }
}

#[test]
fn a_larger_tolerance_truncates_lossily_and_lowers_cost() {
    let hw = (10, 10);
    let mut rng = Rng::new(16);
    let (c, o) = (8, 8);
    let mut w = weights(&mut rng, Kind::Asym(1), o, c, 1, 3, 3);
    for v in &mut w {
        *v += 0.01 * rng.sym();
    }
    let (mut g, x) = input_graph(c, hw.0, hw.1, false);
    let n = try_add(
        &mut g,
        "conv1",
        conv_op(o, [3, 3], [1, 1], [1, 1], SAME, 1, w, c, None),
        &[x],
        hw,
    )
    .expect("valid");
    g.outputs.push(n);
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    assert!(rws.is_empty(), "noisy weights are full rank: {rws:?}");
    let (h, rws) = decompose_checked(&g, 0.05, hw);
    let rw = only(&rws);
    assert_eq!((rw.form, rw.rank), (Form::Asymmetric, 1));
    assert!(rw.is_truncation() && rw.rel_error <= 0.05, "{rw}");
    assert!(rw.macs_after < rw.macs_before);
    // Lossy, but close: the outputs differ by about the weight error.
    let inputs = random_inputs(&g, 1, hw, 3);
    let (d, m) = max_diff(&run(&h, &inputs), &run(&g, &inputs));
    assert!(d > 1e-6 && d < 0.2 * m, "difference {d}, scale {m}");
    // A full-rank random conv: truncated where some rank is within 0.5 and cheaper.
    let g = single(
        17,
        8,
        16,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Random,
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 0.5, hw);
    let rw = only(&rws);
    assert!(
        rw.rel_error <= 0.5 && rw.cost_after < rw.cost_before,
        "{rw}"
    );
}

#[test]
fn all_zero_weights_are_left_alone_with_a_note() {
    let hw = (7, 7);
    let g = single(
        18,
        3,
        4,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Zero,
        hw,
        false,
    )
    .expect("valid");
    let mut h = g.clone();
    let report = Decompose
        .run(&mut h, &PassContext::default())
        .expect("runs");
    assert!(report.rewrites.is_empty());
    assert!(
        report.notes.iter().any(|n| n.contains("all zero")),
        "{report:?}"
    );
    // Even a huge tolerance keeps rank >= 1 and never builds empty layers.
    let (_, rws) = decompose_checked(&g, 10.0, hw);
    assert!(rws.is_empty());
    let g = single(
        19,
        3,
        4,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(1),
        hw,
        false,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 10.0, hw);
    assert!(rws.iter().all(|r| r.rank >= 1));
}

#[test]
fn bad_tolerances_are_errors() {
    let g = single(
        20,
        3,
        3,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Asym(1),
        (6, 6),
        false,
    )
    .expect("valid");
    for t in [f64::NAN, -1e-3, f64::INFINITY] {
        let mut h = g.clone();
        let e = Decompose
            .run(&mut h, &PassContext::with_tolerance(t))
            .expect_err("bad tolerance");
        assert!(e.to_string().contains("tolerance"), "{e}");
    }
}

/// Every padding form, stride and dilation on each axis, even kernels with `same`, known and
/// symbolic sizes: each constructed rank-1 weight is rewritten and the outputs agree.
#[test]
fn padding_stride_and_dilation_edge_cases() {
    let pads = [
        SAME,
        VALID,
        Pad::Explicit([1, 2, 0, 3]),
        Pad::Explicit([2, 0, 1, 1]),
    ];
    let strides = [[1, 1], [2, 1], [1, 2], [3, 2]];
    let dilations = [[1, 1], [2, 3]];
    let kernels = [[3, 3], [4, 2], [2, 4]];
    let kinds = [
        (4, 6, 1, Kind::Asym(1)),
        (3, 3, 3, Kind::Asym(1)),
        (4, 6, 1, Kind::Separable(1)),
        (2, 4, 1, Kind::PerOutput(1)),
    ];
    let sizes = [(9, 10), (12, 7)];
    let mut rewritten = 0;
    let mut seed = 100;
    for pad in pads {
        for stride in strides {
            for dil in dilations {
                for k in kernels {
                    for (c, o, g, kind) in kinds {
                        for (i, hw) in sizes.into_iter().enumerate() {
                            seed += 1;
                            let symbolic = i == 1;
                            let Some(gr) =
                                single(seed, c, o, g, k, stride, dil, pad, kind, hw, symbolic)
                            else {
                                continue;
                            };
                            let (_, rws) = decompose_checked(&gr, 1e-6, hw);
                            rewritten += rws.len();
                        }
                    }
                }
            }
        }
    }
    eprintln!("{rewritten} rewrites");
    assert!(rewritten > 300, "only {rewritten} rewrites");
}

#[test]
fn symbolic_sizes_report_macs_per_pixel() {
    let hw = (9, 9);
    let g = single(
        21,
        3,
        3,
        3,
        [7, 7],
        [1, 2],
        [1, 1],
        SAME,
        Kind::Asym(1),
        hw,
        true,
    )
    .expect("valid");
    let (_, rws) = decompose_checked(&g, 1e-6, hw);
    let rw = only(&rws);
    assert_eq!((rw.macs_before, rw.macs_after), (None, None));
    assert_eq!(
        (rw.macs_per_pixel_before, rw.macs_per_pixel_after),
        (147, 42)
    );
    // The vertical layer runs on every input column: twice the pixels with stride 2.
    assert_eq!(rw.cost_after, 2.0 * (21.0 + 2.0 * 3.0) + 21.0);
    assert!(rw.to_string().contains("147/px -> 42/px"), "{rw}");
}

#[test]
fn decompose_twice_keeps_names_unique_and_outputs_resolving() {
    let hw = (8, 8);
    let g = single(
        22,
        4,
        6,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(1),
        hw,
        false,
    )
    .expect("valid");
    let (h, _) = optimise(&g, &["decompose", "decompose", "dce"], 1e-6);
    let mut names: Vec<String> = h.g.node_indices().map(|n| h.node(n).name.clone()).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
    let out: NodeIndex = h.outputs[0];
    assert!(h.node(out).name.starts_with("conv1."));
    assert_same(&g, &h, &random_inputs(&g, 1, hw, 1));
}

#[test]
fn sanity_the_check_catches_a_wrong_rewrite() {
    let hw = (8, 8);
    let g = single(
        23,
        4,
        6,
        1,
        [3, 3],
        [1, 1],
        [1, 1],
        SAME,
        Kind::Separable(1),
        hw,
        false,
    )
    .expect("valid");
    let (mut h, _) = optimise(&g, &["decompose"], 1e-6);
    let pw = node(&h, "conv1.pw");
    if let convc_ir::Op::Conv(c) = &mut h.node_mut(pw).op {
        let mut t = (*c.weight.data).clone();
        t.data_mut()[0] += 0.01;
        c.weight.data = std::sync::Arc::new(t);
    }
    let inputs = random_inputs(&g, 1, hw, 1);
    let (d, _) = max_diff(&run(&h, &inputs), &run(&g, &inputs));
    eprintln!("perturbed difference {d}");
    assert!(d > 1e-3);
}
