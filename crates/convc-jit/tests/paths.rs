//! The kernel paths one by one, each against the interpreter: short rows packed across rows,
//! overlapping row tails, flattened KHx1 planes, both reduction forms (FMA with two taps per
//! iteration, mul + add with one), odd and even tap counts, and the persistent thread pool
//! (many runs, concurrent runs, more threads than before).
mod common;

use common::*;
use convc_jit::{ConvAlgo, Isa, JitOptions};
use proptest::prelude::*;
use std::path::Path;

fn kernel_names(src: &str, size: (usize, usize), o: &JitOptions) -> Vec<String> {
    let g = graph(src, Path::new("."));
    let net = check_graph(&g, &[size], 2, o, src);
    net.kernels().iter().map(|k| k.name.clone()).collect()
}

fn with_fma(threads: usize, fma: bool) -> JitOptions {
    JitOptions {
        fma,
        ..sse(threads)
    }
}

/// Cranelift's own f32x4 kernels (the paths these tests name), whatever the host has.
fn sse(threads: usize) -> JitOptions {
    JitOptions {
        isa: Some(Isa::Sse),
        ..opts(threads)
    }
}

#[test]
fn short_rows_are_packed_and_tails_overlap() {
    // Widths around multiples of 4, channel counts giving full and partial blocks, odd and
    // even tap counts, with a residual add and an activation in the epilogue.
    for w in [4, 5, 7, 8, 9, 13, 16, 17, 23, 31] {
        for (c, out, k) in [(3, 8, "3x3"), (5, 7, "1x7"), (4, 13, "2x3"), (6, 1, "3x1")] {
            for fma in [true, false] {
                let src = format!(
                    "input x: [{c}, 11, {w}]\ny = conv(x, out={out}, kernel={k}, pad=same, weights=random(seed=1), bias=random(seed=2))\nz = conv(x, out={out}, kernel=1x1, weights=random(seed=3))\na = add(y, z)\nr = relu6(a)\noutput r\n"
                );
                let names = kernel_names(&src, (11, w), &with_fma(2, fma));
                assert!(!names.is_empty(), "{names:?}");
            }
        }
    }
    // 17 columns and 2-vector blocks (4 channels): two rows per item; 3-vector blocks (2
    // channels): three rows.
    let names = kernel_names(
        "input x: [16, 17, 17]\ny = conv(x, out=4, kernel=1x7, pad=same, weights=random(seed=1))\noutput y\n",
        (17, 17),
        &sse(1),
    );
    assert!(names[0].contains("_r2"), "{names:?}");
    let names = kernel_names(
        "input x: [16, 17, 17]\ny = conv(x, out=2, kernel=1x7, pad=same, weights=random(seed=1))\noutput y\n",
        (17, 17),
        &sse(1),
    );
    assert!(names[0].contains("_r3"), "{names:?}");
}

#[test]
fn khx1_planes_run_flat() {
    let src = "input x: [12, 17, 17]\ny = conv(x, out=10, kernel=7x1, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n";
    let names = kernel_names(src, (17, 17), &sse(2));
    assert!(names[0].contains("_10x1x289_"), "{names:?}");
    // A pointwise on a small plane too; a depthwise 7x1 with vertical padding (blur7's first
    // half) as well.
    let src = "input x: [9, 13, 21]\ny = pointwise(x, out=11, weights=random(seed=1))\nd = depthwise(y, kernel=7x1, pad=same, weights=random(seed=2))\noutput d\n";
    let names = kernel_names(src, (13, 21), &sse(2));
    assert!(names.iter().all(|n| n.contains("x1x273_")), "{names:?}");
    // Larger planes: rows of at least 256 values, several per plane (40x43 = 5 rows of 344,
    // 48x26 = 4 rows of 312), 1 and 2 threads.
    for threads in [1, 2] {
        let src = "input x: [7, 40, 43]\ny = pointwise(x, out=9, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n";
        let names = kernel_names(src, (40, 43), &sse(threads));
        assert!(names[0].contains("_9x5x344_"), "{names:?}");
        let src = "input x: [5, 48, 26]\ny = conv(x, out=6, kernel=3x1, pad=same, weights=random(seed=1))\nz = depthwise(x, kernel=5x1, dilation=2x1, pad=same, weights=random(seed=3))\nw = pointwise(z, out=6, weights=random(seed=4))\na = add(y, w)\noutput a\n";
        let names = kernel_names(src, (48, 26), &sse(threads));
        // The 3x1 conv runs flat (4 rows of 312); the depthwise 5x1 fuses with the pointwise.
        assert!(names.iter().any(|n| n.contains("_6x4x312_")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("sep5x1")), "{names:?}");
    }
}

#[test]
fn tap_counts_one_to_nine() {
    // 1..=9 taps per output: the odd ones run their first tap before the two-tap loop.
    for cin in 1..=3 {
        for k in ["1x1", "1x2", "1x3", "3x1", "2x2", "3x3"] {
            let src = format!(
                "input x: [{cin}, 9, 14]\ny = conv(x, out=6, kernel={k}, pad=valid, weights=random(seed=4))\noutput y\n"
            );
            kernel_names(&src, (9, 14), &opts(1));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// The mul + add kernels (hosts without FMA) on random graphs.
    #[test]
    fn random_graphs_mul_add(seed in any::<u64>(), threads in 1usize..=2) {
        let src = specgen::spec(seed, seed % 2 == 0);
        let g = graph(&src, Path::new("."));
        check_graph(&g, &[first_input_size(&g)], 1, &with_fma(threads, false), &src);
    }
}

#[test]
fn the_pool_serves_many_and_concurrent_runs() {
    let src = "input x: [8, 23, 19]\nc = conv(x, out=12, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(c)\nd = depthwise(r, kernel=3x3, stride=2, pad=same, weights=random(seed=3))\np = pointwise(d, out=5, weights=random(seed=4))\noutput p, r\n";
    let g = graph(src, Path::new("."));
    let net = convc_jit::compile(&g, &[(23, 19)], &opts(2)).expect("compile");
    let x = inputs_for(&g, &[(23, 19)], 3, 11);
    let want = convc_interp::run(&g, &x).expect("interp");
    let first = net.run(&x).expect("run");
    assert_close(&first, &want, "first run");
    // Many runs in a row: the workers sleep and wake between some of them (they spin for
    // 2 ms before they sleep).
    for i in 0..40 {
        if i % 10 == 9 {
            std::thread::sleep(std::time::Duration::from_millis(6));
        }
        let got = net.run(&x).expect("run");
        for (a, b) in got.iter().zip(&first) {
            assert_eq!(
                a.data(),
                b.data(),
                "run {i}: same code, same order, same values"
            );
        }
    }
    // Runs from several threads at once take turns on the pool (or run alone).
    std::thread::scope(|s| {
        for t in 0..4 {
            let (net, x, first) = (&net, &x, &first);
            s.spawn(move || {
                for i in 0..8 {
                    let got = net.run_threads(x, 1 + (t + i) % 3).expect("run");
                    for (a, b) in got.iter().zip(first.iter()) {
                        assert_close(
                            std::slice::from_ref(a),
                            std::slice::from_ref(b),
                            "concurrent",
                        );
                    }
                }
            });
        }
    });
    // More threads than the pool has: it grows.
    let got = net.run_threads(&x, 4).expect("run");
    assert_close(&got, &want, "4 threads");
    drop(net);
}

/// A vertical conv feeding a horizontal one runs as one fused kernel through a row buffer:
/// blur-like depthwise pairs, sobel-like 1 -> 2 then groups = 2, multipliers, strides,
/// dilations, every padding form (border rows with part of the window outside), epilogues on
/// both halves (a residual add on the second) and input channels per group of the second.
#[test]
fn vertical_then_horizontal_convs_fuse() {
    let mut fused = 0;
    let mut n = 0;
    for (c, a_args, b_args) in [
        (3, "kernel=7x1, pad=same", "kernel=1x7, pad=same, groups=3"),
        (1, "kernel=3x1, pad=same", "kernel=1x3, pad=same, groups=2"),
        (
            2,
            "kernel=5x1, stride=2x1, pad=same",
            "kernel=1x3, stride=2x1, pad=(0, 0, 1, 2), groups=4",
        ),
        (
            2,
            "kernel=3x1, dilation=3x1, pad=(4, 1, 0, 0)",
            "kernel=1x4, dilation=1x2, pad=same, groups=2",
        ),
        (
            4,
            "kernel=4x1, pad=valid",
            "kernel=1x2, pad=valid, groups=2",
        ),
        (
            3,
            "kernel=2x1, stride=3x1, pad=(1, 0, 0, 0)",
            "kernel=1x5, pad=same, groups=1",
        ),
    ] {
        for (w, mult) in [(5, 1), (13, 2), (37, 1)] {
            let a_out = c * mult;
            let (b_groups, b_out) = if b_args.contains("groups=1") {
                (1, 3)
            } else {
                let g: usize = b_args
                    .rsplit("groups=")
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                (g, g * 2)
            };
            if a_out % b_groups != 0 {
                continue;
            }
            let src = format!(
                "input x: [{c}, 19, {w}]\n\
                 a = conv(x, out={a_out}, {a_args}, groups={c}, weights=random(seed=1), bias=random(seed=2))\n\
                 r = relu6(a)\n\
                 b = conv(r, out={b_out}, {b_args}, weights=random(seed=3), bias=random(seed=4))\n\
                 output b\n"
            );
            let g = graph(&src, Path::new("."));
            n += 1;
            for threads in [1, 2] {
                let net = check_graph(&g, &[(19, w)], 2, &opts(threads), &src);
                if net.kernels().iter().any(|k| k.name.contains("sep")) {
                    fused += 1;
                } else {
                    eprintln!("not fused: {src}");
                }
            }
            // With a residual add after the second conv.
            let src2 = src.replace(
                "output b\n",
                &format!("z = conv(x, out={b_out}, kernel=1x1, weights=random(seed=5))\nq = add(b, z)\noutput q\n"),
            );
            let sh = &g.node(g.outputs[0]).shape;
            if (sh.h.known(), sh.w.known()) == (Some(19), Some(w as _)) {
                let g2 = graph(&src2, Path::new("."));
                check_graph(&g2, &[(19, w)], 1, &opts(2), &src2);
            }
        }
    }
    assert_eq!(fused, 2 * n, "nets fused (of {} runs)", 2 * n);
}

/// Options that pair every depthwise conv with its pointwise reader, whatever the row width.
fn paired(threads: usize) -> JitOptions {
    JitOptions {
        pair_any_width: true,
        ..opts(threads)
    }
}

/// A depthwise conv feeding a pointwise one runs in bands of rows through the thread's
/// scratch (`plan::Band`): multipliers, strides, dilations, every padding form, short rows
/// packed across rows (17 columns), band heights that do not divide the plane, epilogues on
/// both convs (a residual add on the pointwise), pointwise groups, 1 and 2 threads, batches
/// (every row width paired, `JitOptions::pair_any_width`).
#[test]
fn depthwise_then_pointwise_run_in_bands() {
    let mut n = 0;
    for (c, mult, a_args) in [
        (16, 1, "kernel=3x3, pad=same"),
        (6, 2, "kernel=3x3, stride=2, pad=same"),
        (5, 1, "kernel=5x3, dilation=2x1, pad=(3, 1, 2, 0)"),
        (4, 3, "kernel=2x2, pad=valid"),
        (9, 1, "kernel=1x7, pad=same"),
    ] {
        for (h, w) in [(17, 17), (40, 9), (3, 30), (61, 56)] {
            for (b_out, b_groups) in [(7, 1), (2 * c * mult, c)] {
                let a_out = c * mult;
                let src = format!(
                    "input x: [{c}, {h}, {w}]\n\
                     a = conv(x, out={a_out}, {a_args}, groups={c}, weights=random(seed=1), bias=random(seed=2))\n\
                     r = relu6(a)\n\
                     b = conv(r, out={b_out}, kernel=1x1, groups={b_groups}, weights=random(seed=3), bias=random(seed=4))\n\
                     output b\n"
                );
                // Windows larger than the plane: no such network.
                let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                    continue;
                };
                let sh = &g.node(g.outputs[0]).shape;
                if sh.h.known().is_none_or(|v| v < 2) {
                    continue;
                }
                n += 1;
                for threads in [1, 2] {
                    let net = check_graph(&g, &[(h, w)], 2, &paired(threads), &src);
                    let steps = net.steps();
                    assert_eq!(steps.len(), 1, "{src}: {steps:?}");
                    assert!(steps[0].kernel.contains(" then "), "{src}: {steps:?}");
                }
                // A residual add and a batchnorm after the pointwise conv.
                let src2 = src.replace(
                    "output b\n",
                    "z = conv(x, out=7, kernel=1x1, weights=random(seed=5))\nq = add(b, z)\noutput q\n",
                );
                if b_out == 7
                    && !a_args.contains("stride")
                    && !a_args.contains("valid")
                    && !a_args.contains("(3")
                {
                    let g2 = graph(&src2, Path::new("."));
                    let net = check_graph(&g2, &[(h, w)], 1, &paired(2), &src2);
                    assert!(
                        net.steps().iter().any(|s| s.kernel.contains(" then ")),
                        "{src2}"
                    );
                }
            }
        }
    }
    assert!(n >= 30, "{n} pairs");
    // The depthwise value used twice: not fused, still right.
    let src = "input x: [8, 20, 20]\na = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1))\nb = pointwise(a, out=4, weights=random(seed=2))\noutput b, a\n";
    let g = graph(src, Path::new("."));
    let net = check_graph(&g, &[(20, 20)], 1, &opts(2), src);
    assert!(
        net.steps().iter().all(|s| !s.kernel.contains(" then ")),
        "{:?}",
        net.steps()
    );
}

/// On a wide path, a depthwise conv reading memory is paired with its pointwise reader only
/// where the rows fill the vectors (at least 90%: AVX2's 8 lanes take 32 and 15 columns, not
/// 28 or 13); with a pointwise conv producing its input, whatever the width (the producer then
/// runs inside the pair).
#[test]
fn pairs_rows_that_fill_vectors_or_have_a_producer() {
    if !convc_jit::Isa::Avx2.supported() {
        return;
    }
    let o = JitOptions {
        isa: Some(convc_jit::Isa::Avx2),
        ..opts(2)
    };
    // 80 rows: planes too large for the whole-plane kernel (`ConvSpec::dw_plane`), which is
    // a step of its own.
    for (w, pair) in [(28, false), (32, true), (13, false), (15, true)] {
        let src = format!(
            "input x: [24, 80, {w}]\nd = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1))\n\
             p = pointwise(d, out=16, weights=random(seed=2))\noutput p\n"
        );
        let g = graph(&src, Path::new("."));
        let net = check_graph(&g, &[(80, w)], 1, &o, &src);
        let paired = net.steps().iter().any(|s| s.kernel.contains(" then "));
        assert_eq!(paired, pair, "{src}: {:?}", net.steps());
    }
    let src = "input x: [8, 80, 28]\ne = pointwise(x, out=24, weights=random(seed=3))\nr = relu6(e)\n\
               d = depthwise(r, kernel=3x3, pad=same, weights=random(seed=1))\n\
               p = pointwise(d, out=16, weights=random(seed=2))\noutput p\n";
    let g = graph(src, Path::new("."));
    let net = check_graph(&g, &[(80, 28)], 1, &o, src);
    assert_eq!(net.steps().len(), 1, "{:?}", net.steps());
}

/// Long reductions run in chunks of taps over the whole row (`ConvSpec::chunk_taps`), the
/// later chunks starting from the partial sums in the output: even and odd chunk lengths,
/// partial and full register blocks, residual adds and activations applied once at the end,
/// a band-reading pointwise conv, 1 and 2 threads.
#[test]
fn long_reductions_run_in_chunks() {
    let mut chunked = 0;
    for (c, out, k, h, w) in [
        (128, 12, "3x3", 9, 16),
        (95, 7, "3x3", 6, 24),
        (129, 5, "3x3", 5, 8),
        (1100, 6, "1x1", 4, 12),
        (40, 9, "5x5", 7, 16),
        // Rows whose tails are not whole vectors: vectors, then scalars (no overlap).
        (130, 5, "7x1", 17, 17),
        (128, 6, "3x3", 5, 45),
        // Small planes: rows packed, partial sums in the thread's scratch (after the padding
        // tile of a conv with few input channels).
        (300, 12, "3x3", 7, 7),
        (4, 10, "11x11", 9, 10),
        // 1,179 taps: no count of equal chunks near 4, so a shorter last chunk.
        (131, 10, "3x3", 5, 6),
    ] {
        let src = format!(
            "input x: [{c}, {h}, {w}]\n\
             y = conv(x, out={out}, kernel={k}, pad=same, weights=random(seed=1), bias=random(seed=2))\n\
             z = conv(x, out={out}, kernel=1x1, weights=random(seed=3))\n\
             a = add(y, z)\n\
             r = relu(a)\n\
             output r\n"
        );
        for (threads, fma) in [(1, true), (2, true), (2, false)] {
            let names = kernel_names(&src, (h, w), &with_fma(threads, fma));
            if names.iter().any(|n| n.contains("_k")) {
                chunked += 1;
            }
            // Packed where a row alone wastes much: tails of 2-3 columns, or 1-2 vectors.
            if fma && h < 10 && (w % 4 >= 2 || w <= 8) {
                assert!(
                    names.iter().any(|n| n.contains("_r") && n.contains("_k")),
                    "{src}: {names:?}"
                );
            }
        }
    }
    // Without FMA the blocks pack fewer bytes per tap: two of those nets stay whole.
    assert!(chunked >= 17, "{chunked} chunked nets");
    // Wide rows: column tiles (items row, tile, block), the last tile narrower (4 columns:
    // one vector; 2: scalars), residual add and activation on every tile.
    for w in [100, 98] {
        let src = format!(
            "input x: [64, 4, {w}]\ny = conv(x, out=40, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nz = conv(x, out=40, kernel=1x1, weights=random(seed=3))\na = add(y, z)\nr = relu(a)\noutput r\n"
        );
        for (threads, fma) in [(1, true), (2, true), (2, false)] {
            let names = kernel_names(&src, (4, w), &with_fma(threads, fma));
            assert!(names.iter().any(|n| n.contains("_x")), "{names:?}");
        }
    }
    // A pointwise conv with many input channels reading a depthwise conv's bands.
    let src = "input x: [1200, 6, 8]\nd = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1))\np = pointwise(d, out=6, weights=random(seed=2), bias=random(seed=3))\nr = relu6(p)\noutput r\n";
    let names = kernel_names(src, (6, 8), &paired(2));
    assert!(names.iter().any(|n| n.contains("_ostride")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("_k")), "{names:?}");
}

/// A conv whose value only a padded conv reads writes it straight into that conv's padded
/// input (`plan::pad_in_place`): rows-outermost copies (many channels), depthwise tiles (also
/// inside a band pair), asymmetric and explicit padding; values read twice, strided readers
/// and outputs keep their copies. (Depthwise readers on planes wide enough to pad by tiles,
/// not to read a small plane unpadded: `ConvSpec::dw_plane`.) Every net runs twice on different inputs, so borders zeroed
/// on the first run cannot hide a missing zeroing on the second (the arena is reused).
#[test]
fn producers_write_into_padded_inputs() {
    let cases = [
        // (spec, size, kernels writing a padded layout)
        (
            "input x: [6, 19, 23]\na = conv(x, out=16, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(a)\nb = conv(r, out=12, kernel=3x3, pad=(1, 2, 0, 3), weights=random(seed=3))\nc = conv(b, out=5, kernel=5x5, pad=same, weights=random(seed=4))\noutput c\n",
            (19, 23),
            2,
        ),
        (
            "input x: [8, 20, 40]\ne = pointwise(x, out=24, weights=random(seed=1), bias=random(seed=2))\nr = relu6(e)\nd = depthwise(r, kernel=3x3, pad=same, weights=random(seed=3))\np = pointwise(d, out=8, weights=random(seed=4))\ny = add(p, x)\noutput y\n",
            (20, 40),
            1,
        ),
        (
            "input x: [5, 17, 40]\ne = pointwise(x, out=10, weights=random(seed=1))\nd = depthwise(e, kernel=5x5, pad=2, weights=random(seed=2), bias=random(seed=3))\nr = relu(d)\nq = maxpool(r, kernel=2)\noutput q\n",
            (17, 40),
            1,
        ),
        // `v`'s padded buffer reuses the space of `t`, dead by then: its borders must be
        // zeroed, not found.
        (
            "input x: [6, 16, 16]\nt = conv(x, out=64, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nu = pointwise(t, out=16, weights=random(seed=3))\nv = conv(u, out=16, kernel=3x3, pad=same, weights=random(seed=4))\nw = conv(v, out=16, kernel=3x3, pad=2, dilation=2, weights=random(seed=5))\noutput w\n",
            (16, 16),
            2,
        ),
        // Read twice: the copy stays.
        (
            "input x: [6, 12, 12]\na = conv(x, out=16, kernel=3x3, pad=same, weights=random(seed=1))\nb = conv(a, out=4, kernel=3x3, pad=same, weights=random(seed=2))\nc = conv(a, out=4, kernel=3x3, pad=1, weights=random(seed=3))\ns = add(b, c)\noutput s\n",
            (12, 12),
            0,
        ),
        // A strided reader: the copy stays.
        (
            "input x: [6, 12, 12]\na = conv(x, out=16, kernel=3x3, pad=same, weights=random(seed=1))\nb = conv(a, out=4, kernel=3x3, stride=2, pad=same, weights=random(seed=2))\noutput b\n",
            (12, 12),
            0,
        ),
    ];
    for (src, size, writers) in cases {
        let g = graph(src, Path::new("."));
        for threads in [1, 2] {
            // Direct convolution: a Winograd reader takes its input split into phases, and a
            // pointwise GEMM step writes its output plain.
            let direct = JitOptions {
                conv_algo: convc_jit::ConvAlgo::Direct,
                gemm_cols: Some(0),
                ..opts(threads)
            };
            let net = check_graph(&g, &[size], 2, &direct, src);
            let n = net
                .kernels()
                .iter()
                .filter(|k| k.name.contains("_ostride"))
                .count();
            assert!(n >= writers, "{src}: {:?}", net.kernels());
            for seed in [11, 12] {
                let x = inputs_for(&g, &[size], 2, seed);
                let want = convc_interp::run(&g, &x).expect("interpreter");
                let got = net.run(&x).expect("run");
                assert_close(&got, &want, src);
            }
        }
    }
}

/// A band pair whose depthwise input comes from a conv used only there runs that conv inside
/// the band step, row by row, keeping rows between consecutive bands (`plan::Pre`): MobileNet's
/// expansion, strides and dilations (strides along the row through a row of staging split into
/// phases), every padding form, producers that are not 1x1 (a `valid` conv reads its input in
/// place), residual adds after the projection, bands that do not divide the plane, 1 and 2
/// threads (claims of several bands), batches, repeated runs. On the wide paths the tile is
/// a ring whose windows the depthwise kernel wraps (`Pre::ring`), but where that kernel
/// cannot apply the epilogue (a hardswish).
#[test]
fn producers_run_inside_band_steps() {
    let mut fused = 0;
    // Runs whose tile was a ring, and runs with a hardswish whose tile was one.
    let (mut rings, mut swish_rings) = (0, 0);
    // Runs whose depthwise conv strides along the row, and how many of them fused.
    let (mut row_strided, mut row_strided_fused) = (0, 0);
    for (e_args, d_args) in [
        ("kernel=1x1", "kernel=3x3, pad=same"),
        ("kernel=1x1", "kernel=3x3, stride=2, pad=same"),
        ("kernel=1x1", "kernel=3x3, stride=(1, 2), pad=(1, 0, 1, 2)"),
        ("kernel=1x1", "kernel=5x5, stride=2, pad=same"),
        ("kernel=1x1", "kernel=3x3, stride=3, pad=(0, 1, 2, 1)"),
        ("kernel=1x1", "kernel=3x3, stride=(2, 1), pad=(0, 2, 1, 1)"),
        ("kernel=1x1", "kernel=5x3, dilation=(2, 1), pad=same"),
        ("kernel=3x3, pad=valid", "kernel=3x3, pad=1"),
        ("kernel=1x1", "kernel=7x7, pad=3"),
    ] {
        for (h, w) in [(21, 16), (8, 12), (45, 24)] {
            let act = if h == 8 { "hardswish" } else { "relu" };
            let src = format!(
                "input x: [6, {h}, {w}]\n\
                 e = conv(x, out=18, {e_args}, weights=random(seed=1), bias=random(seed=2))\n\
                 r = relu6(e)\n\
                 d = conv(r, out=18, groups=18, {d_args}, weights=random(seed=3), bias=random(seed=4))\n\
                 s = {act}(d)\n\
                 p = pointwise(s, out=7, weights=random(seed=5))\n\
                 output p\n"
            );
            let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                continue;
            };
            if g.node(g.outputs[0]).shape.h.known().is_none_or(|v| v < 2) {
                continue;
            }
            for threads in [1, 2] {
                let size = (h, w);
                // Every width pairs, small planes too (`ConvSpec::dw_plane`'s steps).
                let o = JitOptions {
                    pair_any_width: true,
                    ..opts(threads)
                };
                let net = check_graph(&g, &[size], 2, &o, &src);
                let steps = net.steps();
                let one = steps.len() == 1 && steps[0].kernel.matches(" then ").count() == 2;
                fused += usize::from(one);
                let ring = net.kernels().iter().any(|k| k.name.contains("_ring"));
                rings += usize::from(ring);
                swish_rings += usize::from(ring && act == "hardswish");
                if d_args.contains("stride=2")
                    || d_args.contains("(1, 2)")
                    || d_args.contains("stride=3")
                {
                    row_strided += 1;
                    row_strided_fused += usize::from(one);
                }
                for seed in [21, 22] {
                    let x = inputs_for(&g, &[size], 3, seed);
                    let want = convc_interp::run(&g, &x).expect("interpreter");
                    let got = net.run(&x).expect("run");
                    assert_close(&got, &want, &src);
                }
            }
        }
    }
    assert!(
        fused >= 24,
        "{fused} nets ran their producer inside the band step"
    );
    if convc_jit::Isa::detect() != convc_jit::Isa::Sse {
        assert!(rings >= 8, "{rings} nets read their band tile as a ring");
    }
    assert_eq!(
        swish_rings, 0,
        "rings under an epilogue the kernel cannot apply"
    );
    assert!(row_strided > 0);
    assert_eq!(
        row_strided_fused, row_strided,
        "depthwise convs strided along the row that ran their producer inside"
    );
}

/// A value read by one step both through its padding and as a residual operand keeps the
/// standard layout (found by the random graphs).
#[test]
fn padded_and_residual_reads_of_one_value() {
    let src = "input x: [8, 15, 14]\nl1 = conv(x, out=4, kernel=2x3, pad=(1, 1), weights=random(seed=185), bias=random(seed=186))\nl2 = conv(l1, out=3, kernel=2x3, stride=1x2, pad=2, weights=random(seed=617))\nl3 = depthwise(l2, kernel=3x5, pad=same, weights=random(seed=26))\nl4 = add(l3, l2)\nl5 = batchnorm(l4, mean=random(seed=157), var=random(seed=158), gamma=random(seed=159), beta=random(seed=160))\noutput l5\n";
    let g = graph(src, Path::new("."));
    for fma in [true, false] {
        for threads in [1, 2] {
            check_graph(&g, &[(15, 14)], 2, &with_fma(threads, fma), src);
        }
    }
    let src = "input x: [8, 16, 16]\ne = pointwise(x, out=12, weights=random(seed=1))\nd = depthwise(e, kernel=3x3, pad=same, weights=random(seed=2))\na = add(d, e)\np = pointwise(a, out=5, weights=random(seed=3))\noutput p\n";
    let g = graph(src, Path::new("."));
    check_graph(&g, &[(16, 16)], 2, &opts(2), src);
}

/// Pooling: interior rows vectorised, border rows and columns as straight-line code over their
/// in-bounds window rows and columns (or the generic loops on planes with more than 8 border
/// rows), max and average, with NaN and infinities among the inputs (a NaN wins a max window
/// wherever it is, as in the interpreter).
#[test]
fn pooling_paths_and_non_finite_values() {
    for (h, w) in [(28, 28), (9, 13), (3, 3), (2, 7), (40, 6)] {
        for args in [
            "kernel=3x3, stride=1, pad=1",
            "kernel=2x2",
            "kernel=3x3, stride=2, pad=1",
            "kernel=5x5, stride=1, pad=2",
            "kernel=3x2, stride=(2, 1), pad=(1, 0, 0, 1)",
            "kernel=4x4, stride=3, pad=(3, 0, 2, 1)",
        ] {
            for kind in ["maxpool", "avgpool"] {
                let src = format!("input x: [3, {h}, {w}]\np = {kind}(x, {args})\noutput p\n");
                let Ok(g) = convc_ir::compile(&src, Path::new(".")) else {
                    continue;
                };
                if g.node(g.outputs[0]).shape.h.known().is_none_or(|v| v < 1) {
                    continue;
                }
                for threads in [1, 2] {
                    let net = convc_jit::compile(&g, &[(h, w)], &opts(threads)).expect(&src);
                    let mut x = random_tensor(vec![2, 3, h, w], 9);
                    let n = x.numel();
                    let d = x.data_mut();
                    for (k, v) in [
                        (0, f32::NAN),
                        (n / 3, f32::NAN),
                        (n / 2 + 1, f32::INFINITY),
                        (n - 1, f32::NAN),
                        (2 * n / 3, f32::NEG_INFINITY),
                        (n / 5, -0.0),
                    ] {
                        d[k.min(n - 1)] = v;
                    }
                    let want = convc_interp::run(&g, &[x.clone()]).expect("interp");
                    let got = net.run(&[x]).expect("run");
                    assert_close(&got, &want, &src);
                }
            }
        }
    }
}

/// sigmoid and tanh are vectorised (a polynomial exp, Cephes' tanhf), not library calls per
/// lane: within a few f32 ulps of the interpreter on a sweep of inputs, with NaN, infinities
/// and signed zeros handled like it.
#[test]
fn sigmoid_and_tanh_are_accurate() {
    let n = 40_000;
    let mut vals: Vec<f32> = (0..n).map(|i| -25.0 + 50.0 * i as f32 / n as f32).collect();
    vals.extend([
        0.0,
        -0.0,
        1e-6,
        -1e-6,
        1e-30,
        0.624,
        0.626,
        8.99,
        9.01,
        88.0,
        -88.0,
        100.0,
        -100.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
    ]);
    while vals.len() % 4 != 3 {
        vals.push(0.5);
    }
    let len = vals.len();
    for op in ["sigmoid", "tanh"] {
        let src = format!("input x: [1, 1, {len}]\ny = {op}(x)\noutput y\n");
        let g = graph(&src, Path::new("."));
        for threads in [1, 2] {
            let net = convc_jit::compile(&g, &[(1, len)], &opts(threads)).expect("compile");
            let x = convc_tensor::Tensor::new(vec![1, 1, 1, len], vals.clone()).expect("tensor");
            let want = convc_interp::run(&g, std::slice::from_ref(&x)).expect("interp");
            let got = net.run(&[x]).expect("run");
            for (i, (a, b)) in got[0].data().iter().zip(want[0].data()).enumerate() {
                let ok = if b.is_nan() {
                    a.is_nan()
                } else {
                    (a - b).abs() <= 4e-7 * b.abs().max(if op == "tanh" { 1e-3 } else { 1.0 })
                        || (a - b).abs() <= 1e-37
                };
                assert!(ok, "{op}({}) = {a}, interpreter {b}", vals[i]);
                if *b == 0.0 {
                    assert_eq!(
                        a.is_sign_negative(),
                        b.is_sign_negative(),
                        "{op}({})",
                        vals[i]
                    );
                }
            }
        }
    }
}

/// A concat's operands written by one step each, read by the concat alone and not network
/// outputs, are written by their producers straight into their channels of the concat (no
/// copy kernel `_copy`): direct, Winograd, GEMM, pool and band-pair producers. An operand
/// that is also an output, one read twice, and one read by another layer keep their copies.
#[test]
fn producers_write_into_concats() {
    let cases = [
        // (spec, size, copy kernels left: copies of one size share a kernel)
        (
            "input x: [24, 14, 12]\n\
             a = pointwise(x, out=8, weights=random(seed=1))\n\
             b = conv(x, out=16, kernel=3x3, pad=same, weights=random(seed=2), bias=random(seed=3))\n\
             rb = relu(b)\n\
             c = conv(x, out=6, kernel=5x5, pad=same, weights=random(seed=4))\n\
             p = maxpool(x, kernel=3x3, stride=1, pad=same)\n\
             q = pointwise(p, out=4, weights=random(seed=5))\n\
             y = concat(a, rb, c, q)\n\
             output y\n",
            (14, 12),
            0,
        ),
        (
            "input x: [8, 20, 16]\n\
             e = pointwise(x, out=24, weights=random(seed=1))\n\
             r = relu6(e)\n\
             d = depthwise(r, kernel=3x3, pad=same, weights=random(seed=2))\n\
             p = pointwise(d, out=8, weights=random(seed=3))\n\
             y = concat(x, p)\n\
             output y\n",
            (20, 16),
            1,
        ),
        (
            "input x: [6, 10, 10]\n\
             a = conv(x, out=4, kernel=3x3, pad=same, weights=random(seed=1))\n\
             b = conv(x, out=5, kernel=1x1, weights=random(seed=2))\n\
             y = concat(a, b, a)\n\
             z = relu(b)\n\
             output y\n\
             output z\n",
            (10, 10),
            2,
        ),
        (
            "input x: [6, 10, 10]\n\
             a = conv(x, out=4, kernel=3x3, pad=same, weights=random(seed=1))\n\
             b = conv(x, out=5, kernel=1x1, weights=random(seed=2))\n\
             y = concat(a, b)\n\
             w = concat(y, a)\n\
             output a\n\
             output w\n",
            (10, 10),
            2,
        ),
    ];
    for isa in Isa::available() {
        for (src, size, copies) in cases {
            for algo in [ConvAlgo::Auto, ConvAlgo::Direct, ConvAlgo::Winograd] {
                for threads in [1, 2] {
                    let o = JitOptions {
                        isa: Some(isa),
                        conv_algo: algo,
                        ..opts(threads)
                    };
                    let names = kernel_names(src, size, &o);
                    let n = names.iter().filter(|k| k.contains("_copy")).count();
                    assert_eq!(n, copies, "{isa} {algo:?}\n{src}\n{names:?}");
                }
            }
        }
    }
}
