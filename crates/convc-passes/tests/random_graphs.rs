//! Every pass, on random graphs (proptest): odd and even sizes, known and symbolic, strides and
//! dilations 1-3, every padding form (`same` with even kernels too), groups, depthwise convs with
//! multipliers, batchnorm after conv, low-rank and full-rank weights. The interpreter runs the
//! graph before and after on the same random input; outputs must agree to
//! `1e-4 * (1 + max |expected|)`.

mod common;

use common::*;
use convc_ir::{Graph, Op, Pad, Unary};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Layer {
    kind: u8,
    rank: usize,
    out_mul: usize,
    group_sel: u8,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad_sel: u8,
    pad: [usize; 4],
    bias: bool,
    bn: bool,
    relu: bool,
    also_output: bool,
}

#[derive(Clone, Debug)]
struct Recipe {
    c: usize,
    h: usize,
    w: usize,
    symbolic: bool,
    layers: Vec<Layer>,
    pipeline: u8,
    seed: u64,
}

fn layer() -> impl Strategy<Value = Layer> {
    (
        (0u8..5, 1usize..=3, 1usize..=3, 0u8..3),
        (
            [1usize..=5, 1usize..=5],
            [1usize..=3, 1usize..=3],
            [1usize..=3, 1usize..=3],
        ),
        (0u8..3, [0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3]),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.15),
        ),
    )
        .prop_map(
            |(
                (kind, rank, out_mul, group_sel),
                (kernel, stride, dilation),
                (pad_sel, pad),
                (bias, bn, relu, also_output),
            )| Layer {
                kind,
                rank,
                out_mul,
                group_sel,
                kernel,
                stride,
                dilation,
                pad_sel,
                pad,
                bias,
                bn,
                relu,
                also_output,
            },
        )
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (
        1usize..=6,
        3usize..=14,
        3usize..=14,
        any::<bool>(),
        prop::collection::vec(layer(), 1..=4),
        0u8..5,
        any::<u64>(),
    )
        .prop_map(|(c, h, w, symbolic, layers, pipeline, seed)| Recipe {
            c,
            h,
            w,
            symbolic,
            layers,
            pipeline,
            seed,
        })
}

fn build(r: &Recipe) -> Graph {
    let mut rng = common::Rng::new(r.seed);
    let hw = (r.h, r.w);
    let (mut g, mut x) = input_graph(r.c, r.h, r.w, r.symbolic);
    for (i, l) in r.layers.iter().enumerate() {
        let c = g.node(x).shape.c;
        let divisors: Vec<usize> = (1..=c).filter(|d| c % d == 0).collect();
        let groups = match l.group_sel {
            0 => 1,
            1 => c,
            _ => divisors[l.rank % divisors.len()],
        };
        let out = groups * l.out_mul;
        let kind = match l.kind {
            0 => Kind::Random,
            1 => Kind::Asym(l.rank),
            2 => Kind::PerOutput(l.rank),
            3 => Kind::Separable(l.rank),
            _ => Kind::Zero,
        };
        let w = weights(
            &mut rng,
            kind,
            out,
            c / groups,
            groups,
            l.kernel[0],
            l.kernel[1],
        );
        let pad = match l.pad_sel {
            0 => Pad::Same,
            1 => Pad::Explicit([0; 4]),
            _ => Pad::Explicit(l.pad),
        };
        let bias = l.bias.then(|| rng.vec(out));
        let op = conv_op(
            out,
            l.kernel,
            l.stride,
            l.dilation,
            pad,
            groups,
            w.clone(),
            c / groups,
            bias.clone(),
        );
        // Too small for this window: retry without dilation and with `same` padding.
        let n = match try_add(&mut g, &format!("conv{i}"), op, &[x], hw) {
            Some(n) => n,
            None => {
                let op = conv_op(
                    out,
                    l.kernel,
                    l.stride,
                    [1, 1],
                    Pad::Same,
                    groups,
                    w,
                    c / groups,
                    bias,
                );
                let Some(n) = try_add(&mut g, &format!("conv{i}"), op, &[x], hw) else {
                    continue;
                };
                n
            }
        };
        x = n;
        if l.also_output {
            g.outputs.push(n);
        }
        if l.bn {
            let op = bn_op(&mut rng, out);
            x = try_add(&mut g, &format!("bn{i}"), op, &[x], hw)
                .expect("batchnorm keeps the shape");
        }
        if l.relu {
            x = try_add(
                &mut g,
                &format!("relu{i}"),
                Op::Unary(Unary::Relu),
                &[x],
                hw,
            )
            .expect("relu keeps the shape");
        }
    }
    g.outputs.push(x);
    g
}

const PIPELINES: [&[&str]; 5] = [
    &["fold-batchnorm", "decompose", "fuse", "dce"],
    &["decompose"],
    &["fold-batchnorm"],
    &["dce", "decompose", "fold-batchnorm", "decompose"],
    &["fuse", "dce"],
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn passes_preserve_what_the_graph_computes(r in recipe()) {
        let g = build(&r);
        let passes = PIPELINES[r.pipeline as usize % PIPELINES.len()];
        let (h, reports) = optimise(&g, passes, 1e-6);
        for rep in &reports {
            for rw in &rep.rewrites {
                prop_assert!(rw.rel_error <= 1e-6, "{}", rw);
                prop_assert!(rw.cost_after < rw.cost_before, "{}", rw);
            }
        }
        let inputs = random_inputs(&g, 2, (r.h, r.w), r.seed ^ 0x5eed);
        assert_same(&g, &h, &inputs);
    }
}

/// The random graphs do exercise the rewrites: over a fixed sample, many convs are decomposed
/// in every form and many batchnorms folded.
#[test]
fn the_random_graphs_exercise_every_rewrite() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut forms = std::collections::BTreeMap::new();
    let mut folds = 0;
    for _ in 0..200 {
        let r = recipe().new_tree(&mut runner).expect("a recipe").current();
        let g = build(&r);
        let (_, reports) = optimise(&g, PIPELINES[0], 1e-6);
        for rep in &reports {
            folds += rep.folds.len();
            for rw in &rep.rewrites {
                *forms.entry(rw.form).or_insert(0usize) += 1;
            }
        }
    }
    eprintln!("forms {forms:?}, folds {folds}");
    assert_eq!(forms.len(), 3, "{forms:?}");
    assert!(
        forms.values().all(|&n| n >= 3) && forms.values().sum::<usize>() >= 30,
        "{forms:?}"
    );
    assert!(folds >= 50);
}
