//! `explain`: the side-by-side analysis, snapshot-tested on the classic 3 -> 8 layer.

mod common;

use common::*;
use convc_passes::explain::Macs;
use convc_passes::{ExplainError, Form, explain, render_explanations};

const CLASSIC: &str = "\
input image: [3, 128, 128]
features = conv(image, out=8, kernel=3x3, pad=same, weights=random(seed=1))
output features
";

#[test]
fn classic_3_to_8_snapshot() {
    let g = compile(CLASSIC);
    let ex = explain(&g, None).expect("explains");
    assert_eq!(ex.len(), 1);
    let text = render_explanations(&ex);
    insta::assert_snapshot!("classic_3_to_8", text);
}

#[test]
fn classic_3_to_8_figures() {
    let g = compile(CLASSIC);
    let ex = explain(&g, Some("features")).expect("explains");
    let e = &ex[0];
    assert_eq!((e.params, e.macs), (216, Macs::Total(3_538_944)));
    let forms: Vec<Form> = e.forms.iter().map(|f| f.form).collect();
    assert_eq!(
        forms,
        [
            Form::Asymmetric,
            Form::AsymmetricPerOutput,
            Form::DepthwiseSeparable
        ]
    );
    let f = &e.forms;
    // Random weights are full rank: r = min(9, 24), q = min(9, 3), m = min(8, 9).
    assert_eq!(
        [f[0].exact_rank, f[1].exact_rank, f[2].exact_rank],
        [9, 3, 8]
    );
    assert_eq!(f[0].layers[0].weight_shape, "[r,3,3,1]");
    assert_eq!(f[0].layers[1].weight_shape, "[8,r,1,3]");
    assert_eq!(f[2].layers[0].weight_shape, "[3*m,1,3,3]");
    assert_eq!(f[2].layers[1].weight_shape, "[8,3*m,1,1]");
    assert_eq!(f[0].layers[0].exact_shape, [9, 3, 3, 1]);
    assert_eq!(f[2].layers[1].exact_shape, [8, 24, 1, 1]);
    assert_eq!(f[0].macs, Macs::Total((81 + 216) * 128 * 128));
    assert_eq!(f[2].macs, Macs::Total((216 + 192) * 128 * 128));
    // Truncation tables stop where a form is no longer cheaper: 33r < 216, 96q < 216, 51m < 216.
    let ranks = |k: usize| f[k].truncations.iter().map(|t| t.rank).collect::<Vec<_>>();
    assert_eq!(ranks(0), [1, 2, 3, 4, 5, 6]);
    assert_eq!(ranks(1), [1, 2]);
    assert_eq!(ranks(2), [1, 2, 3, 4]);
    for form in f {
        let errs: Vec<f64> = form.truncations.iter().map(|t| t.rel_error).collect();
        assert!(
            errs.windows(2).all(|w| w[0] >= w[1]),
            "errors fall with the rank"
        );
        assert!(errs.iter().all(|&x| x > 0.1 && x < 1.0));
    }
    // The table's error is what decompose reports for that truncation.
    let r1 = f[0].truncations[0].rel_error;
    let (_, reports) = optimise(&g, &["decompose"], r1 + 1e-4);
    let rw = &reports[0].rewrites[0];
    assert_eq!((rw.form, rw.rank), (Form::Asymmetric, 1));
    assert!((rw.rel_error - r1).abs() < 1e-6, "{} vs {r1}", rw.rel_error);
    assert_eq!(rw.macs_after, Some(33 * 128 * 128));
}

#[test]
fn exact_ranks_of_the_benches() {
    let ranks = |name: &str| -> Vec<(Form, usize)> {
        let ex = explain(&bench(name), None).expect("explains");
        ex[0].forms.iter().map(|f| (f.form, f.exact_rank)).collect()
    };
    assert_eq!(ranks("blur7"), [(Form::Asymmetric, 1)]);
    assert_eq!(
        ranks("sobel"),
        [
            (Form::Asymmetric, 2),
            (Form::AsymmetricPerOutput, 1),
            (Form::DepthwiseSeparable, 2)
        ]
    );
    let lowrank = ranks("lowrank_conv");
    assert_eq!(lowrank[2], (Form::DepthwiseSeparable, 1));
    let text = render_explanations(&explain(&bench("blur7"), None).expect("explains"));
    assert!(
        text.contains("rewritten into its asymmetric form at r = 1"),
        "{text}"
    );
}

#[test]
fn depthwise_convs_have_only_asymmetric_forms_and_1x1_none() {
    let g = compile(
        "input x: [4, H, W]\n\
         d = depthwise(x, kernel=5x5, weights=random(seed=2))\n\
         d2 = depthwise(d, kernel=3x3, multiplier=2, stride=(1, 2), weights=random(seed=4))\n\
         p = pointwise(d2, out=3, weights=random(seed=5))\n\
         output p\n",
    );
    let ex = explain(&g, None).expect("explains");
    assert_eq!(ex.len(), 2, "the 1x1 conv is not listed");
    assert_eq!(
        ex[0].forms.iter().map(|f| f.form).collect::<Vec<_>>(),
        [Form::Asymmetric]
    );
    assert_eq!(
        ex[1].forms.iter().map(|f| f.form).collect::<Vec<_>>(),
        [Form::Asymmetric, Form::AsymmetricPerOutput]
    );
    assert!(matches!(ex[0].macs, Macs::PerPixel(100)));
    assert!(ex[1].notes.iter().any(|n| n.contains("every input column")));
    let p = explain(&g, Some("p")).expect("explains a named 1x1");
    assert!(p[0].forms.is_empty() && p[0].decision.contains("1x1"));
    let text = render_explanations(&ex);
    assert!(text.contains("/px"), "{text}");
}

#[test]
fn unknown_or_non_conv_layers_are_errors() {
    let g = compile(
        "input x: [2, 5, 5]\nc = conv(x, out=2, weights=random(seed=1))\nr = relu(c)\noutput r\n",
    );
    match explain(&g, Some("nope")) {
        Err(e @ ExplainError::NoSuchLayer { .. }) => {
            assert!(e.to_string().contains("the conv layers are c"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match explain(&g, Some("r")) {
        Err(e @ ExplainError::NotAConv { .. }) => assert!(e.to_string().contains("relu"), "{e}"),
        other => panic!("{other:?}"),
    }
    let g = compile("input x: [2, 5, 5]\nr = relu(x)\noutput r\n");
    let ex = explain(&g, None).expect("explains nothing");
    assert!(render_explanations(&ex).contains("no conv layer"));
}

#[test]
fn all_zero_weights_need_no_rank() {
    let zeros = ["[[0, 0], [0, 0]]"; 2].join(", ");
    let w = format!("[[{zeros}], [{zeros}]]");
    let g = compile(&format!(
        "input x: [2, 6, 6]\nc = conv(x, out=2, kernel=2x2, weights={w})\noutput c\n"
    ));
    let ex = explain(&g, None).expect("explains");
    assert!(
        ex[0]
            .forms
            .iter()
            .all(|f| f.exact_rank == 0 && f.truncations.is_empty())
    );
    let text = render_explanations(&ex);
    assert!(
        text.contains("any r (all-zero weights)")
            && text.contains("kept: the weights are all zero"),
        "{text}"
    );
}
