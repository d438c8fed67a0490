//! `fold-batchnorm`, `dce`, `fuse` and the pass manager.

mod common;

use common::*;
use convc_ir::{Graph, Op, Pad};
use convc_passes::{
    Dce, Fuse, PASS_NAMES, Pass, PassContext, PassError, PassManager, PassReport, pass_by_name,
};

fn count_bn(g: &Graph) -> usize {
    g.g.node_indices()
        .filter(|&n| matches!(g.node(n).op, Op::BatchNorm(_)))
        .count()
}

const BN: &str =
    "mean=random(seed=2), var=random(seed=3), gamma=random(seed=4), beta=random(seed=5)";

#[test]
fn batchnorm_after_conv_folds_and_keeps_its_name() {
    let g = compile(&format!(
        "input x: [3, 9, 7]\n\
         c1 = conv(x, out=4, kernel=3x3, stride=2, weights=random(seed=1), bias=random(seed=9))\n\
         b1 = batchnorm(c1, {BN})\n\
         r = relu(b1)\n\
         c2 = conv(r, out=5, kernel=2x2, pad=valid, weights=random(seed=6))\n\
         b2 = batchnorm(c2, {BN}, eps=0.1)\n\
         output b2, r\n"
    ));
    let (h, reports) = optimise(&g, &["fold-batchnorm"], 1e-6);
    assert_eq!(count_bn(&h), 0);
    let folds = &reports[0].folds;
    assert_eq!(folds.len(), 2);
    assert_eq!(
        (folds[0].conv.as_str(), folds[0].result.as_str()),
        ("c1", "b1")
    );
    assert!(
        reports[0]
            .to_string()
            .contains("folded batchnorm `b2` into conv `c2`")
    );
    assert_eq!(h.node(h.outputs[0]).name, "b2");
    assert!(matches!(h.node(h.outputs[0]).op, Op::Conv(_)));
    assert!(
        conv_of(&h, h.outputs[0]).bias.is_some(),
        "a bias is created"
    );
    assert_same(&g, &h, &random_inputs(&g, 3, (0, 0), 1));
}

#[test]
fn batchnorm_is_not_folded_when_the_conv_is_used_elsewhere_or_an_output() {
    let g = compile(&format!(
        "input x: [2, 6, 6]\n\
         c1 = conv(x, out=2, weights=random(seed=1))\n\
         b1 = batchnorm(c1, {BN})\n\
         s = add(b1, c1)\n\
         c2 = conv(s, out=2, weights=random(seed=7))\n\
         b2 = batchnorm(c2, {BN})\n\
         output b2, c2\n"
    ));
    let (h, reports) = optimise(&g, &["fold-batchnorm"], 1e-6);
    assert!(reports[0].folds.is_empty());
    assert_eq!(count_bn(&h), 2);
    // A batchnorm after something else than a conv stays too.
    let g = compile(&format!(
        "input x: [2, 6, 6]\nr = relu(x)\nb = batchnorm(r, {BN})\noutput b\n"
    ));
    let (h, reports) = optimise(&g, &["fold-batchnorm"], 1e-6);
    assert!(reports[0].folds.is_empty() && count_bn(&h) == 1);
}

#[test]
fn chained_batchnorms_fold_one_after_the_other() {
    let g = compile(&format!(
        "input x: [3, 5, 5]\n\
         c = conv(x, out=3, groups=3, weights=random(seed=1))\n\
         b1 = batchnorm(c, {BN})\n\
         b2 = batchnorm(b1, {BN})\n\
         output b2\n"
    ));
    let (h, reports) = optimise(&g, &["fold-batchnorm"], 1e-6);
    assert_eq!(reports[0].folds.len(), 2);
    assert_eq!(h.node(h.outputs[0]).name, "b2");
    assert_same(&g, &h, &random_inputs(&g, 1, (0, 0), 2));
}

#[test]
fn dce_removes_what_no_output_needs_but_keeps_inputs() {
    let g = compile(
        "input x: [2, 6, 6]\n\
         input unused: [1, 3, 3]\n\
         a = conv(x, out=2, weights=random(seed=1))\n\
         dead = relu(a)\n\
         dead2 = conv(dead, out=3, weights=random(seed=2))\n\
         b = relu(a)\n\
         output b\n",
    );
    let mut h = g.clone();
    let report = Dce.run(&mut h, &PassContext::default()).expect("runs");
    assert_eq!(report.removed, ["dead", "dead2"]);
    assert!(h.find("unused").is_some() && h.find("x").is_some());
    assert_eq!(h.len(), 4);
    assert!(report.to_string().contains("dce: removed dead, dead2"));
    let again = Dce.run(&mut h, &PassContext::default()).expect("runs");
    assert!(!again.changed());
}

#[test]
fn fuse_groups_conv_chains_that_nothing_else_reads() {
    let g = compile(
        "input x: [2, 6, 6]\nc = conv(x, out=2)\nb = batchnorm(c)\nr = relu(b)\ns = add(r, x)\n\
         d = conv(s, out=2)\nt = relu(d)\nu = sigmoid(d)\nv = add(t, u)\noutput v, s\n",
    );
    let mut h = g.clone();
    let report = Fuse.run(&mut h, &PassContext::default()).expect("runs");
    assert!(
        report
            .to_string()
            .contains("fuse: one kernel: c + b + r + s"),
        "{report}"
    );
    let groups = h.fusion.clone().expect("groups stored");
    let names: Vec<Vec<String>> = groups
        .iter()
        .map(|grp| grp.nodes.iter().map(|&n| h.node(n).name.clone()).collect())
        .collect();
    // `s` is an output, so the chain stops there; `d` has two users, so it fuses with nothing;
    // `t` heads a chain into `v`.
    assert_eq!(names, [vec!["c", "b", "r", "s"], vec!["t", "v"]]);
    // The ops themselves are unchanged.
    assert_eq!(h.len(), g.len());
    // A rewrite that breaks a chain drops the group.
    let t = h.find("t").unwrap();
    let v = h.find("v").unwrap();
    h.outputs.push(t);
    convc_ir::fusion::retain_valid(&mut h);
    assert_eq!(h.fusion.as_ref().map(|g| g.len()), Some(1));
    let _ = v;
}

#[test]
fn pipelines_by_name() {
    assert_eq!(
        PassManager::default_pipeline().names(),
        ["fold-batchnorm", "decompose", "fuse", "dce"]
    );
    assert_eq!(PassManager::default_pipeline().names(), PASS_NAMES);
    assert!(PassManager::none().names().is_empty());
    assert!(
        PassManager::from_names(&["none"])
            .expect("none")
            .names()
            .is_empty()
    );
    assert_eq!(
        PassManager::from_names(&["dce", "decompose", "dce"])
            .expect("ok")
            .names(),
        ["dce", "decompose", "dce"]
    );
    let e = PassManager::from_names(&["dce", "fold"]).expect_err("unknown");
    assert_eq!(
        e,
        PassError::UnknownPass {
            name: "fold".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown pass `fold`: the passes are fold-batchnorm, decompose, fuse, dce (or `none`)"
    );
    assert_eq!(
        PassManager::from_names(&["none", "dce"]).expect_err("mixed"),
        PassError::NoneWithOthers
    );
    for n in PASS_NAMES {
        assert_eq!(pass_by_name(n).expect("exists").name(), *n);
    }
    assert!(pass_by_name("").is_none());
}

#[test]
fn the_manager_calls_back_after_each_pass_and_validates() {
    let g = compile(&format!(
        "input x: [3, 8, 8]\n\
         c = conv(x, out=3, groups=3, kernel=5x5, weights=gaussian(sigma=1.0))\n\
         b = batchnorm(c, {BN})\n\
         dead = relu(b)\n\
         output b\n"
    ));
    let mut h = g.clone();
    let mut seen: Vec<(&'static str, usize)> = Vec::new();
    let reports = PassManager::default_pipeline()
        .run_with(
            &mut h,
            &PassContext::default(),
            |r: &PassReport, g: &Graph| seen.push((r.pass, g.len())),
        )
        .expect("runs");
    // fold: x, b(conv), dead; decompose: x, b.v, b.h, dead; fuse: same; dce: x, b.v, b.h.
    assert_eq!(
        seen,
        [
            ("fold-batchnorm", 3),
            ("decompose", 4),
            ("fuse", 4),
            ("dce", 3)
        ]
    );
    assert_eq!(reports.len(), 4);
    assert_eq!(reports[1].rewrites[0].layer, "b");
    assert_eq!(h.node(h.outputs[0]).name, "b.h");
    assert_same(&g, &h, &random_inputs(&g, 2, (0, 0), 5));
    let e = PassManager::default_pipeline()
        .run(&mut g.clone(), &PassContext::with_tolerance(-1.0))
        .expect_err("bad");
    assert_eq!(e, PassError::BadTolerance(-1.0));
}

/// A pass that breaks the graph: the manager reports it as an internal error at the layer.
struct Breaker;

impl Pass for Breaker {
    fn name(&self) -> &'static str {
        "breaker"
    }
    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<PassReport, PassError> {
        let n = g.find("c").expect("c");
        if let Op::Conv(c) = &mut g.node_mut(n).op {
            c.pad = Pad::Explicit([0; 4]);
        }
        Ok(PassReport::new("breaker"))
    }
}

#[test]
fn an_invalid_graph_after_a_pass_is_an_error() {
    let mut g =
        compile("input x: [2, 6, 6]\nc = conv(x, out=2, weights=random(seed=1))\noutput c\n");
    let mut pm = PassManager::none();
    pm.push(Box::new(Breaker));
    match pm.run(&mut g, &PassContext::default()) {
        Err(
            e @ PassError::Invalid {
                pass: "breaker", ..
            },
        ) => assert!(e.to_string().contains("layer `c`"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn folding_then_decomposing_keeps_outputs_for_every_pad() {
    for pad in ["same", "valid", "(1, 0, 2, 1)", "1"] {
        let g = compile(&format!(
            "input x: [3, H, W]\n\
             c = depthwise(x, kernel=4x4, stride=(2, 1), pad={pad}, weights=box)\n\
             b = batchnorm(c, {BN})\n\
             output b\n"
        ));
        let (h, reports) = optimise(&g, &["fold-batchnorm", "decompose", "dce"], 1e-6);
        assert_eq!(reports[1].rewrites.len(), 1, "{pad}");
        for hw in [(9, 9), (10, 7)] {
            assert_same(&g, &h, &random_inputs(&g, 1, hw, 9));
        }
    }
}
