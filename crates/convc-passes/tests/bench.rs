//! The benchmark networks (`specs/bench`): what the default pipeline makes of them.

mod common;

use common::*;
use convc_ir::{Graph, cost};
use convc_passes::{Form, PassContext, PassManager, PassReport, Rewrite};

fn default_pipeline(g: &Graph) -> (Graph, Vec<PassReport>) {
    let mut h = g.clone();
    let reports = PassManager::default_pipeline()
        .run(&mut h, &PassContext::default())
        .expect("pipeline runs");
    (h, reports)
}

fn rewrites(reports: &[PassReport]) -> Vec<Rewrite> {
    reports.iter().flat_map(|r| r.rewrites.clone()).collect()
}

/// Runs both graphs on a small random image of `hw`: the bench graphs have known sizes, so the
/// comparison uses a copy of each with the input cropped. Cheaper: compare on the real size
/// only where it is small.
fn check_outputs(g: &Graph, h: &Graph) {
    let inputs = random_inputs(g, 1, (0, 0), 11);
    assert_same(g, h, &inputs);
}

#[test]
fn blur7_becomes_depthwise_7x1_then_1x7() {
    let g = bench("blur7");
    let (h, reports) = default_pipeline(&g);
    let rws = rewrites(&reports);
    assert_eq!(rws.len(), 1, "{rws:?}");
    let rw = &rws[0];
    assert_eq!(
        (rw.layer.as_str(), rw.form, rw.rank),
        ("blurred", Form::Asymmetric, 1)
    );
    assert!(rw.rel_error < 1e-6);
    assert_eq!(
        (rw.macs_before, rw.macs_after),
        (Some(38_535_168), Some(11_010_048))
    );
    let (v, hh) = (
        conv_of(&h, node(&h, "blurred.v")),
        conv_of(&h, node(&h, "blurred.h")),
    );
    assert_eq!((v.kernel, v.groups, v.out), ([7, 1], 3, 3));
    assert_eq!((hh.kernel, hh.groups, hh.out), ([1, 7], 3, 3));
    assert_eq!(cost::total_macs(&h), Some(11_010_048));
    check_outputs(&g, &h);
}

#[test]
fn lowrank_conv_becomes_depthwise_then_pointwise() {
    let g = bench("lowrank_conv");
    let (h, reports) = default_pipeline(&g);
    let rws = rewrites(&reports);
    assert_eq!(rws.len(), 1, "{rws:?}");
    let rw = &rws[0];
    assert_eq!(
        (rw.layer.as_str(), rw.form, rw.rank),
        ("conv1", Form::DepthwiseSeparable, 1)
    );
    assert!(rw.rel_error < 1e-6);
    assert_eq!(
        (rw.macs_before, rw.macs_after),
        (Some(115_605_504), Some(14_651_392))
    );
    let (dw, pw) = (
        conv_of(&h, node(&h, "conv1.dw")),
        conv_of(&h, node(&h, "conv1.pw")),
    );
    assert_eq!((dw.kernel, dw.groups, dw.out), ([3, 3], 64, 64));
    assert_eq!((pw.kernel, pw.groups, pw.out), ([1, 1], 1, 64));
    assert!(pw.bias.is_some());
    check_outputs(&g, &h);
}

#[test]
fn sobel_becomes_3x1_then_grouped_1x3() {
    let g = bench("sobel");
    let (h, reports) = default_pipeline(&g);
    let rws = rewrites(&reports);
    assert_eq!(rws.len(), 1, "{rws:?}");
    let rw = &rws[0];
    assert_eq!(
        (rw.layer.as_str(), rw.form, rw.rank),
        ("edges", Form::AsymmetricPerOutput, 1)
    );
    assert_eq!(
        (rw.macs_before, rw.macs_after),
        (Some(4_718_592), Some(3_145_728))
    );
    let (v, hh) = (
        conv_of(&h, node(&h, "edges.v")),
        conv_of(&h, node(&h, "edges.h")),
    );
    assert_eq!((v.kernel, v.groups, v.out), ([3, 1], 1, 2));
    assert_eq!((hh.kernel, hh.groups, hh.out), ([1, 3], 2, 2));
    check_outputs(&g, &h);
}

#[test]
fn full_rank_benches_are_not_decomposed() {
    for name in [
        "seed_3to8",
        "resnet_block",
        "mobilenet_block",
        "inception_7x7",
    ] {
        let g = bench(name);
        let (h, reports) = default_pipeline(&g);
        assert!(
            rewrites(&reports).is_empty(),
            "{name}: {:?}",
            rewrites(&reports)
        );
        assert_eq!(cost::total_macs(&h), cost::total_macs(&g), "{name}");
    }
}

#[test]
fn resnet_and_mobilenet_batchnorms_fold_and_outputs_agree() {
    for (name, folds) in [("resnet_block", 2), ("mobilenet_block", 3)] {
        let g = bench(name);
        let (h, reports) = default_pipeline(&g);
        let n: usize = reports.iter().map(|r| r.folds.len()).sum();
        assert_eq!(n, folds, "{name}");
        assert!(
            h.g.node_indices()
                .all(|n| !matches!(h.node(n).op, convc_ir::Op::BatchNorm(_)))
        );
        check_outputs(&g, &h);
    }
}
