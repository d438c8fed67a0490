//! Pointwise convolutions as GEMMs on packed bands (`crate::gemm`, kernel names `gemm_...`)
//! against the interpreter on every wide path the host runs: strides 1 and 2, odd planes and
//! H != W, tiny planes, channel counts that are not a multiple of the block, one band and
//! several (the band width forced, so that small planes cover bands that end mid-tile), padded
//! 1x1 convs, reductions in several chunks, every epilogue (bias, batchnorm, activations,
//! residual add), 1 and 2 threads.
mod common;

use common::*;
use convc_jit::{ConvAlgo, Isa, JitOptions};
use std::path::Path;

fn wide_isas() -> Vec<Isa> {
    Isa::available()
        .into_iter()
        .filter(|&i| i != Isa::Sse)
        .collect()
}

/// Runs `src` on `isa` with `cols` positions a band (None: the planner's) against the
/// interpreter (batches of 2); returns the kernels' names.
fn check_cols(src: &str, isa: Isa, cols: Option<usize>, threads: usize) -> Vec<String> {
    let g = graph(src, Path::new("."));
    let sizes = [first_input_size(&g)];
    let o = JitOptions {
        isa: Some(isa),
        conv_algo: ConvAlgo::Direct,
        gemm_cols: cols,
        ..opts(threads)
    };
    let what = format!("isa={isa} cols={cols:?} threads={threads}\n{src}");
    check_compiled(&g, &g, &sizes, &o, 2, &what)
}

#[test]
fn pointwise_gemm_matches_the_interpreter_on_every_shape() {
    // (C, out, H, W, stride)
    let shapes = [
        (3, 8, 9, 13, "1"),
        (16, 29, 14, 14, "1"),
        (64, 40, 7, 7, "1"),
        (5, 12, 1, 1, "1"),
        (7, 13, 2, 3, "1"),
        (32, 24, 31, 40, "2"),
        (8, 17, 17, 6, "2"),
        (12, 9, 10, 11, "1x2"),
        (9, 33, 5, 12, "3x1"),
        // A reduction longer than a chunk of the L1 (sums carried in the output).
        (700, 20, 3, 5, "1"),
    ];
    let epilogues = [
        "y = relu6(b)",
        "y = leaky_relu(b, alpha=0.1)",
        "y = add(b, s)",
    ];
    // A padded 1x1 conv's border positions pack as zeros (its output is larger than the
    // residual's: no add).
    // Padding on the bottom or right only keeps the top-left corner where it was (the copy
    // must not take the positions as the input's).
    let pads = [
        "pad=0",
        "pad=1",
        "pad=(0, 2, 1, 0)",
        "pad=(0, 0, 0, 2)",
        "pad=(0, 1, 0, 0)",
    ];
    let mut took = 0;
    for isa in wide_isas() {
        for (c, out, h, w, stride) in shapes {
            for (pad, ep) in pads
                .iter()
                .flat_map(|p| epilogues.iter().map(move |e| (p, e)))
                .filter(|(p, e)| **p == "pad=0" || !e.contains("add"))
            {
                let src = format!(
                    "input x: [{c}, {h}, {w}]\n\
                     p = conv(x, out={out}, kernel=1x1, stride={stride}, {pad}, weights=random(seed=1), bias=random(seed=2))\n\
                     b = batchnorm(p, mean=random(seed=3), var=random(seed=4), gamma=random(seed=5), beta=random(seed=6))\n\
                     s = conv(x, out={out}, kernel=3x3, stride={stride}, pad=same, weights=random(seed=7))\n\
                     {ep}\n\
                     output y\n"
                );
                for (cols, threads) in [(None, 1), (None, 2), (Some(5), 2), (Some(40), 1)] {
                    let names = check_cols(&src, isa, cols, threads);
                    took += usize::from(names.iter().any(|n| n.contains("_gemm")));
                }
            }
        }
    }
    assert!(took > 0 || wide_isas().is_empty());
}

/// Strided convs with larger kernels over more than 4 input channels pack through the phase
/// split: every kernel column's run is a copy from one phase of the padded row. (Fewer input
/// channels stay direct: see `tiled_stems_band_major` in diff_isa.rs.)
#[test]
fn strided_gemm_matches_the_interpreter() {
    // (C, out, H, W, kernel, stride, pad, dilation)
    let shapes = [
        (8, 24, 23, 30, "7x7", "2", "pad=same", "1"),
        (6, 13, 15, 9, "3x3", "2", "pad=same", "1"),
        (5, 17, 16, 17, "3x3", "2", "pad=(0, 1, 2, 0)", "2"),
        (9, 9, 21, 19, "5x5", "4", "pad=2", "1"),
        (7, 12, 9, 14, "3x2", "1x2", "pad=valid", "1"),
        (5, 30, 5, 5, "3x3", "2", "pad=same", "1"),
    ];
    let mut took = 0;
    for isa in wide_isas() {
        for (c, out, h, w, k, stride, pad, dil) in shapes {
            let src = format!(
                "input x: [{c}, {h}, {w}]\n\
                 p = conv(x, out={out}, kernel={k}, stride={stride}, {pad}, dilation={dil}, weights=random(seed=1), bias=random(seed=2))\n\
                 y = relu(p)\n\
                 output y\n"
            );
            for (cols, threads) in [(None, 1), (None, 2), (Some(7), 2)] {
                let names = check_cols(&src, isa, cols, threads);
                took += usize::from(names.iter().any(|n| n.contains("_gemm")));
            }
        }
    }
    assert!(took >= 6 * 3 * wide_isas().len(), "{took}");
}

/// The hook that runs 1x1 convs direct does; by default they run as GEMMs on the wide paths,
/// but not an expansion that a depthwise conv's band step takes inside (MobileNet's: its
/// values then never go to memory). On a small plane (`ConvSpec::dw_plane`) the depthwise
/// conv is a step of its own, and the expansion a GEMM.
#[test]
fn pointwise_gemm_is_taken_where_it_should_be() {
    let plain =
        "input x: [16, 12, 12]\np = pointwise(x, out=24, weights=random(seed=1))\noutput p\n";
    let expand = "input x: [16, 40, 40]\n\
                  e = pointwise(x, out=48, weights=random(seed=1))\n\
                  r = relu6(e)\n\
                  d = depthwise(r, kernel=3x3, pad=same, weights=random(seed=2))\n\
                  q = pointwise(d, out=16, weights=random(seed=3))\n\
                  output q\n";
    for isa in wide_isas() {
        let names = check_cols(plain, isa, None, 1);
        assert!(names.iter().any(|n| n.contains("_gemm")), "{names:?}");
        let names = check_cols(plain, isa, Some(0), 1);
        assert!(!names.iter().any(|n| n.contains("_gemm")), "{names:?}");
        let names = check_cols(expand, isa, None, 2);
        assert!(!names.iter().any(|n| n.contains("_gemm")), "{names:?}");
        let small = expand.replace("40, 40", "12, 12");
        let names = check_cols(&small, isa, None, 2);
        assert!(names.iter().any(|n| n.contains("_plane")), "{names:?}");
        // No band step takes that expansion inside: it runs flat, as a GEMM.
        assert!(
            names.iter().any(|n| n.contains("_gemm1x1_48x")),
            "{names:?}"
        );
    }
    let names = check_cols(plain, Isa::Sse, None, 1);
    assert!(!names.iter().any(|n| n.contains("_gemm")), "{names:?}");
}

/// Weights larger than the L2 stream from memory once per band, so such a GEMM takes bands of
/// at least 64 positions (`plan::GEMM_STREAM_COLS`): a 7x7 plane is one band, split across
/// threads by channel groups, each thread packing it.
#[test]
fn streamed_weights_take_wide_bands() {
    // 5 MB of weights: more than any L2 the planner assumes (at most 4 MB).
    let src = "input x: [1280, 7, 7]\n\
               p = conv(x, out=1024, kernel=1x1, weights=random(seed=1), bias=random(seed=2))\n\
               y = relu(p)\n\
               output y\n";
    for isa in wide_isas() {
        for threads in [1, 2] {
            let names = check_cols(src, isa, None, threads);
            assert!(
                names
                    .iter()
                    .any(|n| n.contains("_gemm") && n.contains("_n49_")),
                "{names:?}"
            );
        }
    }
}
