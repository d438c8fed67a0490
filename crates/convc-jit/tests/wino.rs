//! Winograd convolution (`ConvAlgo::Winograd`, kernel names `wino<m>_...`) against the
//! interpreter on every wide path the host runs: every padding form, odd sizes and H != W,
//! tiny planes, channel counts that are not a multiple of the block, epilogues with a residual
//! add, 1 and 2 threads; and the error budget of each variant on wide-range data and long
//! reductions.
mod common;

use common::*;
use convc_jit::{ConvAlgo, Isa, JitOptions};
use std::path::Path;

/// Runs `src` with `algo` on `isa` against the interpreter (batches of 2); returns the
/// kernels' names.
fn check_on(src: &str, isa: Isa, algo: ConvAlgo, threads: usize) -> Vec<String> {
    check_isa_algo(src, isa, algo, threads, 2)
}

fn wide_isas() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Sse)
        .collect()
}

#[test]
fn winograd_matches_the_interpreter_on_every_shape() {
    let pads = [
        "pad=same",
        "pad=valid",
        "pad=1",
        "pad=(0, 2, 1, 1)",
        "pad=(2, 0, 0, 2)",
    ];
    // (C, out, H, W)
    let shapes = [
        (4, 5, 9, 13),
        (16, 13, 14, 14),
        (3, 7, 1, 1),
        (5, 6, 2, 3),
        (8, 25, 17, 6),
        (32, 24, 31, 40),
        (1, 1, 5, 5),
    ];
    let mut took = 0;
    for isa in wide_isas() {
        for pad in pads {
            for (c, out, h, w) in shapes {
                let src = format!(
                    "input x: [{c}, {h}, {w}]\n\
                     y = conv(x, out={out}, kernel=3x3, {pad}, weights=random(seed=1), bias=random(seed=2))\n\
                     z = conv(x, out={out}, kernel=1x1, pad=0, weights=random(seed=3))\n\
                     a = add(y, z)\n\
                     r = relu6(a)\n\
                     output r\n"
                );
                if convc_ir::compile(&src, Path::new(".")).is_err() {
                    continue; // a padding the plane is too small for
                }
                for threads in [1, 2] {
                    let names = check_on(&src, isa, ConvAlgo::Winograd, threads);
                    took += usize::from(names.iter().any(|n| n.contains("_wino")));
                }
            }
        }
    }
    assert!(took > 0 || wide_isas().is_empty());
}

/// Every vector width of the transforms (4 and 8 floats, and the path's own) on planes whose
/// rows are a few tiles wide and on wide ones, with a residual add in the epilogue: the
/// narrower widths pack the tiles of a band densely (a 14x14 plane, 4 tiles a row in F(4x4),
/// is 4 GEMM columns a row instead of 16).
#[test]
fn winograd_every_transform_width() {
    let shapes = [
        (16, 13, 14, 14),
        (8, 20, 7, 7),
        (5, 12, 28, 27),
        (6, 9, 3, 40),
    ];
    for isa in wide_isas() {
        for lanes in [4, 8, isa.lanes()] {
            for algo in [ConvAlgo::WinogradF2, ConvAlgo::WinogradF4] {
                for (c, out, h, w) in shapes {
                    let src = format!(
                        "input x: [{c}, {h}, {w}]\n\
                         y = conv(x, out={out}, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
                         z = conv(x, out={out}, kernel=1x1, pad=0, weights=random(seed=3))\n\
                         a = add(y, z)\n\
                         r = relu(a)\n\
                         output r\n"
                    );
                    let g = graph(&src, Path::new("."));
                    let o = JitOptions {
                        isa: Some(isa),
                        conv_algo: algo,
                        winograd_lanes: Some(lanes),
                        ..opts(2)
                    };
                    let what = format!("isa={isa} lanes={lanes} algo={algo:?}\n{src}");
                    let names = check_compiled(&g, &g, &[(h, w)], &o, 2, &what);
                    let width = format!("_t{lanes}_");
                    assert!(
                        names
                            .iter()
                            .any(|n| n.contains("_wino") && n.contains(&width)),
                        "{what}: {names:?}"
                    );
                }
            }
        }
    }
}

/// Inputs whose padded copy is larger than any core's L2 (over 4 MB, the planner's cap): the
/// input transform pads each band of each channel itself (kernel names `_bp`), on every
/// padding form, odd sizes and H != W.
#[test]
fn winograd_band_padding_on_large_inputs() {
    let pads = [
        "pad=same",
        "pad=valid",
        "pad=(0, 2, 1, 1)",
        "pad=(2, 0, 0, 2)",
    ];
    for isa in wide_isas() {
        for pad in pads {
            let src = format!(
                "input x: [32, 181, 179]\n\
                 y = conv(x, out=9, kernel=3x3, {pad}, weights=random(seed=1), bias=random(seed=2))\n\
                 r = relu6(y)\n\
                 output r\n"
            );
            for threads in [1, 2] {
                let names = check_on(&src, isa, ConvAlgo::Winograd, threads);
                assert!(
                    names
                        .iter()
                        .any(|n| n.contains("_wino") && n.contains("_bp")),
                    "{pad}: {names:?}"
                );
            }
        }
    }
}

/// One-dimensional layers whose padded copy is larger than any core's L2 (over 4 MB, the
/// planner's cap) still run as Winograd, through a shared copy (the pad job), and match the
/// interpreter: down the columns and along the rows, 1 and 2 threads.
#[test]
fn winograd_one_dimensional_on_large_inputs() {
    for isa in wide_isas() {
        for kernel in ["3x1", "1x3"] {
            let src = format!(
                "input x: [48, 150, 160]
                 y = conv(x, out=11, kernel={kernel}, pad=same, weights=random(seed=1), bias=random(seed=2))
                 r = relu(y)
                 output r
"
            );
            for threads in [1, 2] {
                let names = check_on(&src, isa, ConvAlgo::Winograd, threads);
                assert!(
                    names.iter().any(|n| n.contains("_wino")),
                    "{kernel}: {names:?}"
                );
            }
        }
    }
}

/// Outputs larger than any core's L2 (over 4 MB, the planner's cap) are written with
/// streaming stores where a vector is whole and aligned, plain stores elsewhere: rows of 256
/// columns (every vector aligned) and of 261 (most not), read back by a second layer.
#[test]
fn winograd_streaming_stores_on_large_outputs() {
    for isa in wide_isas() {
        for (h, w) in [(258, 256), (250, 261)] {
            let src = format!(
                "input x: [16, {h}, {w}]\n\
                 a = conv(x, out=17, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
                 b = relu(a)\n\
                 c = conv(b, out=3, kernel=3x3, pad=same, weights=random(seed=3))\n\
                 output c\n"
            );
            for threads in [1, 2] {
                let names = check_on(&src, isa, ConvAlgo::Winograd, threads);
                assert!(
                    names
                        .iter()
                        .any(|n| n.contains("_wino") && n.contains("_nt_")),
                    "{names:?}"
                );
            }
        }
    }
}

/// Batchnorm and leaky relu in the epilogue, a second 3x3 layer reading the first, and
/// `sigmoid` (which the copy kernel does not apply: that layer runs direct).
#[test]
fn winograd_epilogues_and_chains() {
    for isa in wide_isas() {
        let src = "input x: [12, 20, 18]\n\
                   a = conv(x, out=20, kernel=3x3, pad=same, weights=random(seed=1))\n\
                   b = batchnorm(a, mean=random(seed=2), var=random(seed=3), gamma=random(seed=4), beta=random(seed=5))\n\
                   c = leaky_relu(b, alpha=0.2)\n\
                   d = conv(c, out=9, kernel=3x3, pad=same, weights=random(seed=6), bias=random(seed=7))\n\
                   e = sigmoid(d)\n\
                   output e\n";
        for threads in [1, 2] {
            let names = check_on(src, isa, ConvAlgo::Winograd, threads);
            assert_eq!(
                names.iter().filter(|n| n.contains("_wino")).count(),
                1,
                "{names:?}"
            );
        }
        let names = check_on(src, isa, ConvAlgo::Direct, 2);
        assert!(!names.iter().any(|n| n.contains("_wino")), "{names:?}");
    }
}

/// The worst `max|jit - interp| / (1 + max|interp|)` of one 3x3 layer of `c` input channels
/// with `algo`, on inputs scaled by `scale` (mixed signs), over a few seeds.
fn error_ratio(isa: Isa, algo: ConvAlgo, c: usize, scale: f32) -> f64 {
    error_ratio_of(isa, algo, c, scale, "3x3")
}

/// [`error_ratio`] of a layer with kernel `kernel` (`3x3`, `7x1`, ...).
fn error_ratio_of(isa: Isa, algo: ConvAlgo, c: usize, scale: f32, kernel: &str) -> f64 {
    let src = format!(
        "input x: [{c}, 20, 20]\n\
         y = conv(x, out=16, kernel={kernel}, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
         output y\n"
    );
    let g = graph(&src, Path::new("."));
    let o = JitOptions {
        isa: Some(isa),
        conv_algo: algo,
        ..opts(1)
    };
    let net = convc_jit::compile(&g, &[(20, 20)], &o).expect("compile");
    assert!(
        net.kernels().iter().any(|k| k.name.contains("_wino")) == (algo != ConvAlgo::Direct),
        "{algo:?}"
    );
    let mut worst = 0f64;
    for seed in 0..3 {
        let mut x = inputs_for(&g, &[(20, 20)], 1, 100 + seed);
        // `scale` 0: a wide dynamic range, each value times 10^(-3..3).
        let data: Vec<f32> = x[0]
            .data()
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if scale > 0.0 {
                    v * scale
                } else {
                    let u = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32
                        / (1u64 << 24) as f32;
                    v * 10f32.powf(6.0 * u - 3.0)
                }
            })
            .collect();
        x[0] = convc_tensor::Tensor::new(x[0].shape().to_vec(), data).expect("shape");
        let want = convc_interp::run(&g, &x).expect("interp");
        let got = net.run(&x).expect("run");
        let maxw = want[0]
            .data()
            .iter()
            .fold(0f64, |m, v| m.max(f64::from(v.abs())));
        let err = got[0]
            .data()
            .iter()
            .zip(want[0].data())
            .fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
        worst = worst.max(err / (1.0 + maxw));
    }
    worst
}

/// The error budget: `auto` and `winograd` use only variants within `2e-5 (1 + max|y|)`; the
/// measured figures (printed with `--nocapture`) are in ARCHITECTURE.md.
#[test]
fn winograd_error_budget() {
    for isa in wide_isas() {
        for c in [16, 64, 512, 2048] {
            for scale in [1.0f32, 1e3, 0.0] {
                let d = error_ratio(isa, ConvAlgo::Direct, c, scale);
                let f2 = error_ratio(isa, ConvAlgo::WinogradF2, c, scale);
                let f4 = error_ratio(isa, ConvAlgo::WinogradF4, c, scale);
                println!(
                    "{isa} C={c} inputs x {scale} (0: x 10^-3..10^3): direct {d:.2e}, F(2x2,3x3) {f2:.2e}, F(4x4,3x3) {f4:.2e}"
                );
                assert!(f2 <= 2e-5, "F(2x2,3x3) C={c} scale={scale}: {f2:e}");
                if convc_jit::winograd_f4_within_budget(c) {
                    assert!(f4 <= 2e-5, "F(4x4,3x3) C={c} scale={scale}: {f4:e}");
                }
            }
        }
    }
}

/// Winograd on one-dimensional kernels (`r x 1` down columns, `1 x r` along rows, F(m, r) per
/// column or row) against the interpreter: every kernel length it takes, paddings with and
/// without the other axis, odd sizes, tiny planes, channel counts off the block, a residual
/// add and relu6 in the epilogue, each forced variant, 1 and 2 threads.
#[test]
fn winograd_one_dimensional_matches_the_interpreter() {
    let pads = [
        "pad=same",
        "pad=valid",
        "pad=(1, 2, 0, 3)",
        "pad=(3, 0, 2, 1)",
    ];
    // (C, out, H, W)
    let shapes = [
        (4, 5, 9, 13),
        (16, 13, 17, 17),
        (3, 7, 2, 1),
        (8, 25, 23, 6),
        (33, 20, 12, 40),
    ];
    let mut took = 0;
    for isa in wide_isas() {
        for kernel in [
            "2x1", "3x1", "5x1", "7x1", "9x1", "1x2", "1x3", "1x5", "1x7", "1x9",
        ] {
            for pad in pads {
                for (c, out, h, w) in shapes {
                    let src = format!(
                        "input x: [{c}, {h}, {w}]\n\
                         y = conv(x, out={out}, kernel={kernel}, {pad}, weights=random(seed=1), bias=random(seed=2))\n\
                         z = conv(x, out={out}, kernel={kernel}, {pad}, weights=random(seed=3))\n\
                         a = add(y, z)\n\
                         q = relu6(a)\n\
                         output q\n"
                    );
                    if convc_ir::compile(&src, Path::new(".")).is_err() {
                        continue; // a padding the plane is too small for
                    }
                    for (algo, threads) in [
                        (ConvAlgo::Winograd, 1),
                        (ConvAlgo::WinogradF2, 2),
                        (ConvAlgo::WinogradF4, 1),
                    ] {
                        let names = check_on(&src, isa, algo, threads);
                        took += usize::from(names.iter().any(|n| n.contains("_wino")));
                    }
                }
            }
        }
    }
    assert!(took > 0 || wide_isas().is_empty());
}

/// The error of Winograd on 7x1, 5x1, 3x1 and 1x7 layers, F(2, r) and F(4, r) forced (printed
/// with `--nocapture`); `auto` and `winograd` take only variants within `2e-5 (1 + max|y|)`
/// ([`convc_jit::winograd_col_within_budget`]), whose error the test bounds.
#[test]
fn winograd_one_dimensional_error_budget() {
    for isa in wide_isas() {
        for kernel in ["7x1", "5x1", "3x1", "1x7", "1x5"] {
            let r: usize = kernel
                .replace("1x", "")
                .replace("x1", "")
                .parse()
                .expect("r");
            for c in [16, 64, 128] {
                for scale in [1.0f32, 0.0] {
                    let d = error_ratio_of(isa, ConvAlgo::Direct, c, scale, kernel);
                    let w = error_ratio_of(isa, ConvAlgo::Winograd, c, scale, kernel);
                    let f2 = error_ratio_of(isa, ConvAlgo::WinogradF2, c, scale, kernel);
                    // F(4, r) where the points allow it (along rows, up to 8 of them).
                    let most = if kernel.starts_with("1x") { 8 } else { 10 };
                    let f4 = if r + 3 <= most {
                        error_ratio_of(isa, ConvAlgo::WinogradF4, c, scale, kernel)
                    } else {
                        f64::NAN
                    };
                    println!(
                        "{isa} {kernel} C={c} inputs x {scale}: direct {d:.2e}, winograd {w:.2e}, F(2,{r}) {f2:.2e}, F(4,{r}) {f4:.2e}"
                    );
                    assert!(w <= 2e-5, "winograd {kernel} C={c} scale={scale}: {w:e}");
                    if convc_jit::winograd_col_within_budget(2, r, c) {
                        assert!(f2 <= 2e-5, "F(2,{r}) C={c} scale={scale}: {f2:e}");
                    }
                    if convc_jit::winograd_col_within_budget(4, r, c) {
                        assert!(f4 <= 2e-5, "F(4,{r}) C={c} scale={scale}: {f4:e}");
                    }
                }
            }
        }
    }
}
