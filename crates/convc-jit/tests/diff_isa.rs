//! Differential tests of every vector path the host runs (`JitOptions::isa`): random graphs
//! (every op and attribute), JIT vs the interpreter, on Cranelift's f32x4 code, the AVX2
//! microkernels and the AVX-512 ones. (`diff_random.rs` runs the host's default, the widest.)
mod common;

use common::*;
use convc_jit::{ConvAlgo, Isa};
use proptest::prelude::*;
use std::path::Path;

/// Runs `src` on `isa` against the interpreter; returns the kernels' names.
fn check_on(src: &str, isa: Isa, threads: usize) -> Vec<String> {
    check_with(src, isa, ConvAlgo::Auto, threads)
}

/// As [`check_on`], with the 3x3 convolutions' algorithm `algo`.
fn check_with(src: &str, isa: Isa, algo: ConvAlgo, threads: usize) -> Vec<String> {
    check_isa_algo(src, isa, algo, threads, 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_on_every_isa(
        seed in any::<u64>(),
        wide in any::<bool>(),
        threads in 1usize..=2,
        passes in any::<bool>(),
    ) {
        let src = specgen::spec(seed, wide);
        for isa in Isa::available() {
            // Half the cases through the default passes (the `fuse` pass's groups), half as
            // written (the JIT applies the same fusion rule itself).
            check_isa_algo_opt(&src, isa, ConvAlgo::Auto, threads, 1, passes);
            // Every 3x3 stride-1 conv as Winograd, whatever the cost model says.
            if isa != Isa::Sse {
                check_isa_algo_opt(&src, isa, ConvAlgo::Winograd, threads, 1, passes);
            }
        }
    }
}

/// Dense convs whose blocks take every microkernel size (1 to 12 channels, and more in
/// several blocks), at row widths around the vector widths, with chunked reductions (long),
/// strides, groups and a full epilogue, on every path the host runs.
#[test]
fn microkernel_blocks_and_row_tails() {
    for isa in Isa::available() {
        for out in [2, 3, 5, 6, 7, 11, 12, 13, 25, 64] {
            for w in [1, 7, 8, 9, 16, 17, 33, 50] {
                let src = format!(
                    "input x: [4, 5, {w}]\n\
                     y = conv(x, out={out}, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
                     z = conv(x, out={out}, kernel=1x1, weights=random(seed=3))\n\
                     a = add(y, z)\n\
                     r = relu6(a)\n\
                     output r\n"
                );
                check_on(&src, isa, 2);
            }
        }
        // Long reductions in chunks, column tiles, strides and groups.
        for (c, out, extra, h, w) in [
            (128, 24, "kernel=3x3, pad=same", 9, 70),
            (96, 16, "kernel=3x3, stride=2, pad=same", 11, 37),
            (64, 32, "kernel=3x3, groups=2, pad=same", 6, 20),
            (512, 12, "kernel=3x3, pad=1", 4, 4),
            (24, 20, "kernel=7x1, pad=same", 9, 23),
        ] {
            let src = format!(
                "input x: [{c}, {h}, {w}]\n\
                 y = conv(x, out={out}, {extra}, weights=random(seed=1), bias=random(seed=2))\n\
                 r = sigmoid(y)\n\
                 output r\n"
            );
            check_on(&src, isa, 1);
            let names = check_on(&src, isa, 2);
            // The dense conv runs on the path asked for (`_avx2`, `_avx512` in its name).
            let tag = format!("_{isa}");
            assert_eq!(
                names.iter().any(|n| n.contains(&tag)),
                isa != Isa::Sse,
                "{names:?}"
            );
        }
    }
}

/// Narrow padded planes run as flat rows of the padded input on the wide paths (kernel names
/// `_flat<row>`): every padding form, dilation, groups, chunked reductions, rows that do not
/// fill an item, a residual add and activations, 1 and 2 threads.
#[test]
fn narrow_padded_planes_run_as_flat_rows() {
    // (conv, C, out, H, W, the row length: W and the larger of the left and right padding,
    // which rows share, where the output row is longer than the smaller side)
    let cases = [
        ("kernel=3x3, pad=1", 16, 13, 7, 7, 8),
        ("kernel=3x3, pad=same", 64, 24, 14, 14, 15),
        ("kernel=1x7, pad=(0, 3)", 12, 20, 17, 17, 20),
        ("kernel=7x1, pad=(3, 0)", 12, 20, 17, 17, 17),
        ("kernel=3x3, dilation=2, pad=same", 8, 9, 9, 6, 8),
        ("kernel=3x3, groups=2, pad=(0, 2, 1, 1)", 20, 10, 5, 11, 12),
        ("kernel=3x3, pad=1", 512, 12, 7, 7, 8),
        ("kernel=5x5, pad=2", 24, 7, 40, 9, 11),
        ("kernel=3x3, pad=1", 32, 16, 12, 56, 57),
        // Padding wider than the row, and unequal sides: windows read into the next row's
        // left padding and, from the last row, into the tail.
        ("kernel=1x9, pad=(0, 0, 6, 2)", 8, 6, 5, 3, 9),
        ("kernel=2x5, pad=(0, 1, 1, 3)", 6, 5, 4, 10, 13),
        // Rows no longer than the smaller padding side keep the whole padded width: a shared
        // one would make a row's last tap the next row's first (a zero step between taps).
        ("kernel=3x3, pad=1", 16, 5, 4, 1, 3),
        ("kernel=5x5, pad=2", 16, 5, 3, 2, 6),
    ];
    for isa in Isa::available() {
        for (args, c, out, h, w, wq) in cases {
            let (w, wq): (usize, usize) = (w, wq);
            let src = format!(
                "input x: [{c}, {h}, {w}]\n\
                 y = conv(x, out={out}, {args}, weights=random(seed=1), bias=random(seed=2))\n\
                 z = conv(x, out={out}, kernel=1x1, weights=random(seed=3))\n\
                 a = add(y, z)\n\
                 r = leaky_relu(a, alpha=0.1)\n\
                 output r\n"
            );
            for threads in [1, 2] {
                // Direct convolution: the flat layout is its choice (`auto` may take Winograd
                // for the 3x3 layers, depending on the host's vector width).
                let names = check_with(&src, isa, ConvAlgo::Direct, threads);
                // Flat where the padded positions fill the lanes better than masked rows, by
                // more than 3% (56 columns of 16 lanes: 87.5%, of 58 padded: 96.6%).
                let l = isa.lanes();
                let rows = w as f64 / (w.div_ceil(l) * l) as f64;
                let expect = isa != Isa::Sse && wq > w && w as f64 / wq as f64 > rows + 0.03;
                assert_eq!(
                    names.iter().any(|n| n.contains("_flat")),
                    expect,
                    "{src}\n{names:?}"
                );
                if expect {
                    let tag = format!("_flat{wq}_");
                    assert!(names.iter().any(|n| n.contains(&tag)), "{src}\n{names:?}");
                }
            }
        }
    }
}

/// Depthwise 3x3, 5x5 and 7x7 convs on the wide paths compute 2 or 4 rows an item (kernel
/// names `_dw<rows>`), a short last item's 1 to 3 rows in one call: vertical strides 1 and 2,
/// horizontal stride and dilation, every padding form, heights that leave a short last item
/// (9 and 7 rows: 4 + 4 + 1, 4 + 3), alone and as the first half of a band pair,
/// with epilogues the kernel applies and ones it does not (sigmoid), 1 and 2 threads.
#[test]
fn depthwise_rows_kernels() {
    let dws = [
        "kernel=3x3, pad=same",
        "kernel=3x3, stride=2, pad=same",
        "kernel=3x3, stride=(2, 1), pad=(0, 2, 1, 1)",
        "kernel=3x3, stride=(1, 2), dilation=(1, 2), pad=same",
        "kernel=3x3, pad=valid",
        "kernel=5x5, pad=same",
        "kernel=5x5, stride=2, pad=same",
        "kernel=5x5, stride=(1, 2), dilation=(1, 3), pad=(1, 3, 0, 5)",
        "kernel=7x7, pad=same",
        "kernel=7x7, stride=2, pad=(3, 1, 2, 4)",
    ];
    let mut fast = 0;
    for isa in Isa::available() {
        for dw in dws {
            for (h, w) in [(9, 13), (16, 40), (7, 33)] {
                for (act, tail) in [
                    ("relu6", "pointwise(a, out=7, weights=random(seed=4))"),
                    ("sigmoid", "relu(a)"),
                ] {
                    let src = format!(
                        "input x: [6, {h}, {w}]\n\
                         d = depthwise(x, {dw}, weights=random(seed=1), bias=random(seed=2))\n\
                         a = {act}(d)\n\
                         p = {tail}\n\
                         output p\n"
                    );
                    let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                        continue;
                    };
                    drop(g);
                    for threads in [1, 2] {
                        let names = check_on(&src, isa, threads);
                        let dw = names
                            .iter()
                            .any(|n| n.contains("_dw") || n.contains("_plane"));
                        fast += usize::from(
                            names.iter().any(|n| n.contains("_dw"))
                                && tail.starts_with("pointwise"),
                        );
                        // Alone, a wide path always takes the rows kernel or (a small
                        // plane) the whole-plane one; in a band pair, the rows kernel when
                        // 2 or 4 divide the band's rows.
                        if isa == Isa::Sse || tail.starts_with("relu") {
                            assert_eq!(isa != Isa::Sse, dw, "{src}\n{names:?}");
                        }
                    }
                }
            }
        }
    }
    // Band pairs took it too.
    assert!(fast > 0 || Isa::available() == [Isa::Sse], "{fast}");
}

/// The whole-plane depthwise kernels (`ConvSpec::dw_plane`): every window (3, 5, 7) and
/// stride (1, 2), padding on any side, column dilation, planes of one and two vectors a row
/// and of 1 to 4 rows past the last group of 4, an output in its consumer's padded layout or
/// with a residual, epilogues the
/// kernel applies (the fast form and leaky relu's step by step) and one it cannot (sigmoid, a
/// pass after it).
#[test]
fn depthwise_plane_kernels() {
    let dws = [
        "kernel=3x3, pad=same",
        "kernel=3x3, stride=2, pad=same",
        "kernel=3x3, stride=2, dilation=(1, 2), pad=(0, 2, 3, 1)",
        "kernel=5x5, pad=(2, 0, 4, 1)",
        "kernel=5x5, stride=2, pad=valid",
        "kernel=7x7, pad=same",
        "kernel=7x7, stride=2, pad=3",
    ];
    let tails = [
        ("relu6", "d2"),
        ("sigmoid", "d2"),
        ("leaky_relu", "d2"),
        ("relu", "add(a, d2)"),
        // The plane writes this conv's padded layout in place (`plan::pad_in_place`).
        (
            "relu",
            "conv(a, out=4, kernel=3x3, pad=same, weights=random(seed=5))",
        ),
    ];
    let mut planes = 0;
    for isa in Isa::available().into_iter().filter(|&i| i != Isa::Sse) {
        for dw in dws {
            for (h, w) in [(7, 7), (5, 12), (14, 14), (11, 19), (9, 30), (1, 3)] {
                for (act, tail) in tails {
                    // `d2` keeps `a`'s shape, for the residual add.
                    let src = format!(
                        "input x: [5, {h}, {w}]\n\
                         d = depthwise(x, {dw}, weights=random(seed=1), bias=random(seed=2))\n\
                         a = {act}(d)\n\
                         d2 = depthwise(a, kernel=3x3, pad=same, weights=random(seed=3))\n\
                         p = {tail}\n\
                         output p\n"
                    );
                    let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                        continue;
                    };
                    drop(g);
                    let names = check_on(&src, isa, 2);
                    planes += names.iter().filter(|n| n.contains("_plane")).count();
                }
            }
        }
    }
    // Where the host has a wide path, most of these are planes.
    let wide = Isa::available().iter().any(|&i| i != Isa::Sse);
    assert!(!wide || planes > 100, "{planes}");
}

/// Strided and plain stems of few input channels pad per band of rows into the thread's
/// scratch; with several blocks of output channels they run band-major (every block of a band
/// after padding it once, claims of whole bands). Kernels 7x7 / 3x3, strides 1 / 2, 1-3 input
/// channels (and a grouped conv of 4 a group), output channels a multiple of the block or not,
/// an odd and a tiny plane (short last bands, one band), 1 and 2 threads, with a fused
/// epilogue, on every path the host runs.
#[test]
fn tiled_stems_band_major() {
    let cases = [
        (3, 64, "kernel=7x7, stride=2", (37, 23)),
        (1, 29, "kernel=3x3", (37, 23)),
        (2, 29, "kernel=3x3, stride=2", (37, 23)),
        (3, 29, "kernel=7x7", (3, 4)),
        (8, 58, "kernel=3x3, groups=2", (21, 9)),
    ];
    let mut band_major = 0;
    for isa in Isa::available() {
        for (c, out, k, (h, w)) in cases {
            let src = format!(
                "input x: [{c}, {h}, {w}]\n\
                 y = conv(x, out={out}, {k}, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
                 b = batchnorm(y, mean=random(seed=3), var=random(seed=4), gamma=random(seed=5), beta=random(seed=6))\n\
                 r = relu(b)\n\
                 output r\n"
            );
            for threads in [1, 2] {
                check_on(&src, isa, threads);
            }
            let g = graph(&src, Path::new("."));
            let o = convc_jit::JitOptions {
                isa: Some(isa),
                ..opts(2)
            };
            let net = convc_jit::compile(&g, &[(h, w)], &o).expect("compiles");
            band_major += usize::from(net.plan_text().contains("run band-major:"));
        }
    }
    // Every case has several blocks of output channels on every path.
    assert_eq!(band_major, cases.len() * Isa::available().len());
}

/// Max pools on the wide paths run as a plain-Rust step (kernel names `maxpool_avx2` /
/// `maxpool_avx512`), separable: window rows, then the row's windows, stride 1 or 2 along the
/// row (any down the plane); windows of column pairs (2 wide, stride 2, no left pad) without
/// the row buffer. Every padding form, windows from 1x1 to 5x7, rows narrower than
/// a vector and rows of several with a tail, 1 and 2 threads; and NaN wins a window, as in
/// the interpreter, wherever it lies in the window. Other strides keep Cranelift's kernel.
#[test]
fn max_pools_on_wide_paths() {
    let pools = [
        ("kernel=3x3, stride=1, pad=same", true),
        ("kernel=3x3", false),
        ("kernel=2x2", true),
        // Column pairs without the row buffer (`maxpool::pairs`): taller windows, a top pad.
        ("kernel=3x2, stride=2", true),
        ("kernel=2x2, stride=2, pad=(1, 0, 0, 0)", true),
        ("kernel=3x3, stride=2, pad=1", true),
        ("kernel=1x1, stride=1", true),
        ("kernel=5x7, stride=(3, 1), pad=(2, 0, 3, 1)", true),
        ("kernel=2x3, stride=(1, 2), pad=(1, 0, 2, 0)", true),
        ("kernel=3x3, stride=3", false),
    ];
    for isa in Isa::available() {
        for (pool, fits) in pools {
            let mut ran = 0;
            for (h, w) in [(9, 13), (16, 40), (5, 3), (12, 67)] {
                let src = format!(
                    "input x: [5, {h}, {w}]\n\
                     p = maxpool(x, {pool})\n\
                     output p\n"
                );
                let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                    continue; // a window larger than the padded plane
                };
                ran += 1;
                for threads in [1, 2] {
                    let names = check_on(&src, isa, threads);
                    let rust = names.iter().any(|n| n.contains("maxpool_avx"));
                    assert_eq!(rust, fits && isa != Isa::Sse, "{src}\n{names:?}");
                    // NaN at several places of the plane (corners, borders, inside).
                    let mut x = inputs_for(&g, &[(h, w)], 1, 3);
                    let len = x[0].data().len();
                    let data: Vec<f32> = x[0]
                        .data()
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            if i % 7 == 0 || i == len - 1 {
                                f32::NAN
                            } else {
                                v
                            }
                        })
                        .collect();
                    x[0] = convc_tensor::Tensor::new(x[0].shape().to_vec(), data).expect("shape");
                    let o = convc_jit::JitOptions {
                        isa: Some(isa),
                        ..opts(threads)
                    };
                    let net = convc_jit::compile(&g, &[(h, w)], &o).expect("compile");
                    let want = convc_interp::run(&g, &x).expect("interpreter");
                    let got = net.run(&x).expect("run");
                    assert_close(&got, &want, &format!("NaN input, isa={isa}\n{src}"));
                }
            }
            assert!(ran >= 3, "{pool}: {ran} sizes compiled");
        }
    }
}
