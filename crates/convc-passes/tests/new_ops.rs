//! The passes around the ops added for ONNX (`hardsigmoid`, `hardswish`, `prelu`, `mul`,
//! `global_maxpool`): none of them is folded into a conv, rewritten or fused, and every
//! pipeline keeps the numbers.

mod common;

use common::*;
use convc_ir::{Graph, Op};

fn ops(g: &Graph) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = g
        .topo_order()
        .into_iter()
        .map(|n| g.node(n).op.name())
        .collect();
    v.sort_unstable();
    v
}

const BN: &str =
    "mean=random(seed=2), var=random(seed=3), gamma=random(seed=4), beta=random(seed=5)";

#[test]
fn a_batchnorm_after_a_new_op_is_not_folded_across_it() {
    for act in [
        "prelu(c1, slope=random(seed=8))",
        "hardswish(c1)",
        "hardsigmoid(c1, alpha=0.3, beta=0.4)",
        "mul(c1, c1)",
    ] {
        let g = compile(&format!(
            "input x: [3, 8, 7]\n\
             c1 = conv(x, out=4, kernel=3x3, weights=random(seed=1))\n\
             a = {act}\n\
             b = batchnorm(a, {BN})\n\
             output b\n"
        ));
        let (h, reports) = optimise(&g, &["fold-batchnorm", "decompose", "fuse", "dce"], 1e-6);
        assert!(reports[0].folds.is_empty(), "{act}: {}", reports[0]);
        assert!(
            h.g.node_indices()
                .any(|n| matches!(h.node(n).op, Op::BatchNorm(_))),
            "{act}"
        );
        assert_eq!(ops(&g), ops(&h), "{act}");
        assert_same(&g, &h, &random_inputs(&g, 2, (0, 0), 3));
    }
}

#[test]
fn a_low_rank_conv_before_new_ops_is_decomposed_and_they_stay() {
    // The benchmark's depthwise-separable 64->64 conv (on a small plane) feeding every new op.
    let src = "input x: [64, 6, 5]\n\
         c1 = conv(x, out=64, kernel=3x3, pad=same, weights=file(\"lowrank_conv/conv1_weight.npy\"), bias=file(\"lowrank_conv/conv1_bias.npy\"))\n\
         h1 = hardswish(c1)\n\
         h2 = hardsigmoid(h1)\n\
         p = prelu(h2, slope=random(seed=3))\n\
         g = global_maxpool(p)\n\
         m = mul(g, p)\n\
         output m\n";
    let g = convc_ir::compile(src, &bench_dir()).expect("spec compiles");
    let (h, reports) = optimise(&g, &["fold-batchnorm", "decompose", "fuse", "dce"], 1e-6);
    assert!(
        reports[1].changed(),
        "the conv is decomposed: {}",
        reports[1]
    );
    for op in ["hardswish", "hardsigmoid", "prelu", "global_maxpool", "mul"] {
        assert_eq!(
            h.g.node_indices()
                .filter(|&n| h.node(n).op.name() == op)
                .count(),
            1,
            "{op}\n{}",
            convc_ir::print::text(&h)
        );
    }
    assert_same(&g, &h, &random_inputs(&g, 2, (0, 0), 5));
}

#[test]
fn only_the_elementwise_new_ops_join_a_fusion_group() {
    let g = compile(
        "input x: [3, 6, 6]\n\
         c1 = conv(x, out=4, weights=random(seed=1))\n\
         h = hardswish(c1)\n\
         p = prelu(h)\n\
         c2 = conv(p, out=4, weights=random(seed=2))\n\
         m = mul(c2, p)\n\
         r = relu(m)\n\
         output r\n",
    );
    let groups = convc_ir::fusion::plan(&g);
    let names: Vec<Vec<&str>> = groups
        .iter()
        .map(|grp| grp.nodes.iter().map(|&n| g.node(n).name.as_str()).collect())
        .collect();
    assert_eq!(names, vec![vec!["c1", "h"]], "{names:?}");
}
