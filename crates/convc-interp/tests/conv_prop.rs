//! The interpreter's convolution against an independent naive 7-loop convolution, on random
//! small shapes: odd sizes, H != W, strides and dilations 1-3, every padding form, groups,
//! depthwise multipliers, bias or none, batches of 1-3, 1-3 threads. The naive version
//! computes `same` padding from the contract's formula, not from `Pad::resolve`.

use convc_interp::{conv2d_batch, run_threads};
use convc_ir::{Conv, Graph, Node, Op, Pad, Param, Shape, Source};
use convc_tensor::Tensor;
use proptest::prelude::*;

/// A small deterministic generator (xorshift) for weights and inputs in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// `(before, after)` padding on one axis, straight from the contract (§4).
fn contract_pad(pad: &Pad, axis: usize, n: usize, k: usize, s: usize, d: usize) -> (usize, usize) {
    match pad {
        Pad::Explicit(p) => (p[2 * axis], p[2 * axis + 1]),
        Pad::Same => {
            let out = n.div_ceil(s) as i64;
            let total =
                ((out - 1) * s as i64 + (d * (k - 1)) as i64 + 1 - n as i64).max(0) as usize;
            (total / 2, total - total / 2)
        }
    }
}

/// The naive convolution of a batch: `None` when an output size is 0 or less.
fn naive(x: &[f32], [n, c, h, w]: [usize; 4], cv: &Conv) -> Option<(Vec<f32>, [usize; 3])> {
    let [kh, kw] = cv.kernel;
    let [sh, sw] = cv.stride;
    let [dh, dw] = cv.dilation;
    let (pt, pb) = contract_pad(&cv.pad, 0, h, kh, sh, dh);
    let (pl, pr) = contract_pad(&cv.pad, 1, w, kw, sw, dw);
    let oh = (h + pt + pb) as i64 - (dh * (kh - 1)) as i64 - 1;
    let ow = (w + pl + pr) as i64 - (dw * (kw - 1)) as i64 - 1;
    if oh < 0 || ow < 0 {
        return None;
    }
    let (oh, ow) = (oh as usize / sh + 1, ow as usize / sw + 1);
    let o_n = cv.out;
    let cg = c / cv.groups;
    let og = o_n / cv.groups;
    let wt = cv.weight.data.data();
    let mut out = vec![0f32; n * o_n * oh * ow];
    for b in 0..n {
        for o in 0..o_n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = cv.bias.as_ref().map_or(0.0, |bs| bs.data.data()[o] as f64);
                    for ci in 0..cg {
                        let ch = (o / og) * cg + ci;
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (oy * sh + i * dh) as i64 - pt as i64;
                                let ix = (ox * sw + j * dw) as i64 - pl as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                    continue;
                                }
                                let xv =
                                    x[((b * c + ch) * h + iy as usize) * w + ix as usize] as f64;
                                acc += wt[((o * cg + ci) * kh + i) * kw + j] as f64 * xv;
                            }
                        }
                    }
                    out[((b * o_n + o) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    Some((out, [o_n, oh, ow]))
}

fn pad_strategy() -> impl Strategy<Value = Pad> {
    prop_oneof![
        Just(Pad::Same),
        Just(Pad::Explicit([0; 4])),
        (0usize..4).prop_map(|p| Pad::Explicit([p; 4])),
        (0usize..4, 0usize..4).prop_map(|(a, b)| Pad::Explicit([a, a, b, b])),
        (0usize..4, 0usize..4, 0usize..4, 0usize..4)
            .prop_map(|(t, b, l, r)| Pad::Explicit([t, b, l, r])),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    batch: usize,
    groups: usize,
    cg: usize,
    og: usize,
    h: usize,
    w: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: Pad,
    bias: bool,
    threads: usize,
    seed: u64,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        (1usize..4, 1usize..4, 1usize..4, 1usize..4),
        (1usize..14, 1usize..14),
        (
            1usize..5,
            1usize..5,
            1usize..4,
            1usize..4,
            1usize..4,
            1usize..4,
        ),
        pad_strategy(),
        (any::<bool>(), 1usize..4, 1u64..u64::MAX),
    )
        .prop_map(
            |(
                (batch, groups, cg, og),
                (h, w),
                (kh, kw, sh, sw, dh, dw),
                pad,
                (bias, threads, seed),
            )| Case {
                batch,
                groups,
                cg,
                og,
                h,
                w,
                kernel: [kh, kw],
                stride: [sh, sw],
                dilation: [dh, dw],
                pad,
                bias,
                threads,
                seed,
            },
        )
}

fn build(case: &Case) -> (Conv, Vec<f32>, [usize; 4]) {
    let mut rng = Rng(case.seed);
    let c = case.groups * case.cg;
    let out = case.groups * case.og;
    let wshape = vec![out, case.cg, case.kernel[0], case.kernel[1]];
    let wlen = wshape.iter().product();
    let weight = Param::new(
        Tensor::new(wshape, rng.vec(wlen)).expect("weight shape"),
        Source::Literal,
    );
    let bias = case.bias.then(|| {
        Param::new(
            Tensor::new(vec![out], rng.vec(out)).expect("bias shape"),
            Source::Literal,
        )
    });
    let conv = Conv {
        out,
        kernel: case.kernel,
        stride: case.stride,
        dilation: case.dilation,
        pad: case.pad,
        groups: case.groups,
        weight,
        bias,
    };
    let dims = [case.batch, c, case.h, case.w];
    let x = rng.vec(dims.iter().product());
    (conv, x, dims)
}

/// A graph `input x -> conv -> output`, with the conv's shape from the IR's inference.
fn graph(conv: &Conv, c: usize, h: usize, w: usize) -> Graph {
    let mut g = Graph::new();
    let x = g.add(
        Node {
            name: "x".into(),
            op: Op::Input { index: 0 },
            span: Default::default(),
            shape: Shape::known(c, h, w),
            folded: Vec::new(),
        },
        &[],
    );
    g.inputs.push(x);
    let op = Op::Conv(conv.clone());
    let shape = convc_ir::shape::infer(&op, &[&g.node(x).shape]).expect("shape inference");
    let y = g.add(
        Node {
            name: "layer".into(),
            op,
            span: Default::default(),
            shape,
            folded: Vec::new(),
        },
        &[x],
    );
    g.outputs.push(y);
    g
}

fn close(got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} values, expected {}", got.len(), want.len()));
    }
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        if (a - b).abs() > 1e-6 * (1.0 + b.abs()) {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn conv_matches_naive(case in case_strategy()) {
        let (conv, x, dims) = build(&case);
        let [n, c, h, w] = dims;
        let g = graph(&conv, c, h, w);
        let input = Tensor::new(dims.to_vec(), x.clone()).expect("input shape");
        let got = run_threads(&g, &[input], case.threads);
        match naive(&x, dims, &conv) {
            None => {
                let e = got.expect_err("an empty output must be an error");
                prop_assert!(e.message.contains("`layer`"), "error does not name the layer: {}", e.message);
            }
            Some((want, [o, oh, ow])) => {
                let got = got.map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!(got.len(), 1);
                prop_assert_eq!(got[0].shape(), &[n, o, oh, ow][..]);
                close(got[0].data(), &want).map_err(TestCaseError::fail)?;
                // The batch function directly, with the requested threads.
                let (direct, s) = conv2d_batch(&x, n, [c, h, w], &conv, case.threads).map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert_eq!(s, [o, oh, ow]);
                prop_assert_eq!(&direct[..], got[0].data());
            }
        }
    }
}

/// A convolution big enough to be split across threads gives bit-identical results for any
/// thread count, and matches the naive version.
#[test]
fn threads_do_not_change_results() {
    let case = Case {
        batch: 3,
        groups: 2,
        cg: 8,
        og: 8,
        h: 64,
        w: 61,
        kernel: [3, 4],
        stride: [1, 2],
        dilation: [2, 1],
        pad: Pad::Same,
        bias: true,
        threads: 1,
        seed: 7,
    };
    let (conv, x, dims) = build(&case);
    let [n, c, h, w] = dims;
    let one = conv2d_batch(&x, n, [c, h, w], &conv, 1).expect("conv");
    for t in [2, 3, 4, 16, 1000] {
        let many = conv2d_batch(&x, n, [c, h, w], &conv, t).expect("conv");
        assert_eq!(one, many, "threads={t}");
    }
    let (want, s) = naive(&x, dims, &conv).expect("valid sizes");
    assert_eq!(one.1, s);
    close(&one.0, &want).expect("matches naive");
}
