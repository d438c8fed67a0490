//! Fusion rules, the kernel cache, batches, threads, user errors and the generated code.
mod common;

use common::*;
use convc_jit::JitOptions;
use std::path::Path;

fn steps_of(src: &str, sizes: &[(usize, usize)]) -> Vec<String> {
    let g = graph(src, Path::new("."));
    let net = check_graph(&g, sizes, 2, &opts(2), src);
    net.steps().into_iter().map(|s| s.name).collect()
}

#[test]
fn one_conv() {
    let src = "input x: [3, 13, 17]\ny = conv(x, out=8, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n";
    let g = graph(src, Path::new("."));
    check_graph(&g, &[(13, 17)], 1, &opts(1), "one conv");
}

#[test]
fn conv_bn_relu_add_fuse_into_one_kernel() {
    let src = "input x: [8, 11, 9]
c = conv(x, out=8, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))
b = batchnorm(c, mean=random(seed=3), var=random(seed=4), gamma=random(seed=5), beta=random(seed=6))
a = add(b, x)
r = relu(a)
output r
";
    assert_eq!(steps_of(src, &[(11, 9)]), ["c+b+a+r"]);
}

#[test]
fn a_value_used_twice_is_not_fused() {
    // `c` feeds the relu and the add: it must be materialised, and the relu cannot fuse into it.
    let src = "input x: [4, 10, 7]
c = conv(x, out=4, kernel=3x3, pad=same, weights=random(seed=1))
r = relu(c)
s = add(c, r)
output s
";
    assert_eq!(steps_of(src, &[(10, 7)]), ["c", "r+s"]);
    // A relu used twice ends its group too.
    let src = "input x: [4, 10, 7]
c = conv(x, out=4, kernel=3x3, pad=same, weights=random(seed=1))
r = relu(c)
a = add(r, r)
t = tanh(r)
output a, t
";
    assert_eq!(steps_of(src, &[(10, 7)]), ["c+r", "a", "t"]);
}

#[test]
fn an_output_is_not_fused_away() {
    let src = "input x: [3, 9, 9]
c = conv(x, out=5, kernel=3x3, pad=same, weights=random(seed=1))
r = relu(c)
output r, c
";
    assert_eq!(steps_of(src, &[(9, 9)]), ["c", "r"]);
}

#[test]
fn outputs_that_are_inputs_or_repeated_are_copied() {
    let src = "input x: [2, 5, 6]
r = relu(x)
output x, r, r
";
    assert_eq!(steps_of(src, &[(5, 6)]), ["r", "output0:x", "output2:r"]);
}

#[test]
fn both_item_orders_are_right() {
    // Large input rows and small weights: rows outer (the input row stays in cache).
    let src = "input x: [48, 40, 44]
p = pointwise(x, out=20, weights=random(seed=1), bias=random(seed=2))
r = relu(p)
c = conv(x, out=20, kernel=3x3, pad=same, weights=random(seed=3))
output r, c
";
    let g = graph(src, Path::new("."));
    // The direct kernel of the 1x1 conv, not its pointwise GEMM step.
    let o = convc_jit::JitOptions {
        gemm_cols: Some(0),
        ..opts(2)
    };
    let net = check_graph(&g, &[(40, 44)], 2, &o, "item orders");
    let names: Vec<String> = net.kernels().iter().map(|k| k.name.clone()).collect();
    assert!(names[0].contains("_rows"), "{names:?}");
    assert!(!names[1].contains("_rows"), "{names:?}");
}

#[test]
fn identical_layers_share_one_kernel() {
    let src = "input x: [8, 16, 16]
c1 = conv(x, out=8, kernel=3x3, pad=same, weights=random(seed=1))
c2 = conv(c1, out=8, kernel=3x3, pad=same, weights=random(seed=2))
c3 = conv(c2, out=8, kernel=3x3, pad=same, weights=random(seed=3))
output c3
";
    let g = graph(src, Path::new("."));
    // Direct convolution: the cost model's choice of Winograd rests on transform costs
    // measured on the host (a Zen4 took F(2x2) here, and one kernel for all three).
    let o = convc_jit::JitOptions {
        conv_algo: convc_jit::ConvAlgo::Direct,
        ..opts(1)
    };
    let net = check_graph(&g, &[(16, 16)], 1, &o, "cache");
    // c1 and c2 write their values straight into the next conv's padded input (one kernel);
    // c3 writes the output.
    assert_eq!(net.kernels().len(), 2, "{:?}", net.kernels());
    assert_eq!(net.kernels()[0].steps, ["c1", "c2"]);
    assert_eq!(net.kernels()[1].steps, ["c3"]);
}

#[test]
fn batches_and_threads_reuse_the_compiled_code() {
    let src = "input x: [3, H, W]
c = conv(x, out=7, kernel=3x3, stride=2, pad=same, weights=random(seed=1), bias=random(seed=2))
r = relu6(c)
p = maxpool(r, kernel=3, stride=2, pad=1)
g = global_avgpool(p)
output p, g
";
    let g = graph(src, Path::new("."));
    let net = convc_jit::compile(&g, &[(37, 45)], &opts(2)).expect("compile");
    let x = inputs_for(&g, &[(37, 45)], 5, 3);
    let want = convc_interp::run(&g, &x).expect("interp");
    let mut first = None;
    for threads in [1, 2, 3] {
        let got = net.run_threads(&x, threads).expect("run");
        assert_close(&got, &want, &format!("batch 5, threads {threads}"));
        first.get_or_insert(got);
    }
    // One image of the batch alone gives exactly the same values (same code, same order).
    let one = convc_tensor::Tensor::new(vec![1, 3, 37, 45], x[0].data()[..3 * 37 * 45].to_vec())
        .expect("tensor");
    let got = net.run(&[one]).expect("run");
    let batch = first.expect("ran");
    assert_eq!(got[0].data(), &batch[0].data()[..got[0].numel()]);
    let (_, prof) = net.run_profiled(&x).expect("profiled");
    assert_eq!(prof.len(), net.steps().len());
    assert!(prof.iter().all(|p| p.seconds >= 0.0));
}

#[test]
fn nan_and_infinity_propagate_like_the_interpreter() {
    let src = "input x: [2, 6, 6]
m = maxpool(x, kernel=2, stride=1, pad=same)
a = avgpool(x, kernel=3, stride=2, pad=1)
r = relu(x)
c = clamp(x, min=-0.5, max=0.5)
l = leaky_relu(x, alpha=0.2)
s = sigmoid(x)
t = tanh(x)
k = conv(x, out=2, kernel=3x3, pad=same, weights=random(seed=1))
output m, a, r, c, l, s, t, k
";
    let g = graph(src, Path::new("."));
    let net = convc_jit::compile(&g, &[(6, 6)], &opts(1)).expect("compile");
    let mut x = random_tensor(vec![1, 2, 6, 6], 5);
    let d = x.data_mut();
    d[3] = f32::NAN;
    d[14] = f32::INFINITY;
    d[40] = f32::NEG_INFINITY;
    d[50] = -0.0;
    let want = convc_interp::run(&g, &[x.clone()]).expect("interp");
    let got = net.run(&[x]).expect("run");
    assert_close(&got, &want, "non-finite inputs");
}

#[test]
fn user_errors_are_errors_not_panics() {
    let src = "input x: [3, H, W]\ny = conv(x, out=4, kernel=5x5, pad=valid, weights=random(seed=1))\noutput y\n";
    let g = graph(src, Path::new("."));
    // Too small for the kernel, and the wrong number of sizes.
    assert!(convc_jit::compile(&g, &[(3, 3)], &opts(1)).is_err());
    assert!(convc_jit::compile(&g, &[], &opts(1)).is_err());
    assert!(convc_jit::compile(&g, &[(8, 8), (8, 8)], &opts(1)).is_err());
    let net = convc_jit::compile(&g, &[(9, 8)], &opts(1)).expect("compile");
    let t = |shape: Vec<usize>| random_tensor(shape, 1);
    for (bad, why) in [
        (vec![t(vec![1, 3, 8, 9])], "H and W swapped"),
        (vec![t(vec![1, 2, 9, 8])], "channels"),
        (vec![t(vec![3, 9, 8])], "3-D"),
        (vec![t(vec![0, 3, 9, 8])], "empty batch"),
        (vec![t(vec![1, 3, 9, 8]), t(vec![1, 3, 9, 8])], "two inputs"),
        (vec![], "no input"),
    ] {
        let e = net
            .run(&bad)
            .err()
            .unwrap_or_else(|| panic!("{why}: accepted"));
        assert!(!e.message.is_empty(), "{why}");
    }
    let mut out = vec![0f32; 4 * 5 * 4];
    assert!(net.run_into(&[&[0.0; 10]], &mut [&mut out], 1).is_err());
}

#[test]
fn conv_kernels_are_packed_simd_without_spills() {
    // A 64 -> 64 conv with bias and relu: blocks of 5 output channels x 2 vectors = 10
    // accumulators, two taps per iteration with FMA (6 x 2, one tap, without). The relu's zero and the bias must not be kept in a register across the
    // reduction (that spilled an accumulator once).
    let src = "input x: [64, 20, 20]\ny = conv(x, out=64, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n";
    let g = graph(src, Path::new("."));
    for fma in [true, false] {
        let o = JitOptions {
            threads: 1,
            verify: true,
            emit_asm: true,
            fma,
            // Cranelift's own reduction (the wide paths call a microkernel).
            isa: Some(convc_jit::Isa::Sse),
            ..JitOptions::default()
        };
        let net = convc_jit::compile(&g, &[(20, 20)], &o).expect("compile");
        let asm = net.disassembly();
        assert_eq!(asm.len(), 1);
        let text = &asm[0].1;
        if fma && !text.contains("vfmadd") {
            // The host has no FMA: the option falls back to mul + add.
            continue;
        }
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        // The hot loop: the stretch between a loop test and its jump back with the most
        // multiplies (the main column blocks, not the tails).
        let is_mul = |l: &&&str| l.contains("vfmadd") || l.contains("mulps");
        let mut best: (usize, usize, usize) = (0, 0, 0);
        let mut lo = 0;
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("jmp") {
                let n = lines[lo..i].iter().filter(is_mul).count();
                if n > best.0 {
                    best = (n, lo, i);
                }
                lo = i + 1;
            } else if l.starts_with('j') {
                lo = i + 1;
            }
        }
        assert!(best.0 > 0, "no multiply loop:\n{text}");
        let body = &lines[best.1..best.2];
        let count = |pat: &str| {
            body.iter()
                .filter(|l| l.contains(pat) && l.contains("%xmm"))
                .count()
        };
        if fma {
            // Every FMA broadcasts its own weight straight from memory.
            assert!(
                count("vfmadd213ps") >= 12
                    && body
                        .iter()
                        .filter(|l| l.starts_with("vbroadcastss") && l.contains("(%"))
                        .count()
                        == count("vfmadd213ps"),
                "inner loop:\n{}",
                body.join("\n")
            );
        } else {
            assert!(
                count("mulps") >= 12 && count("addps") >= 12,
                "inner loop:\n{}",
                body.join("\n")
            );
        }
        // No stack traffic at all with FMA (the default); without, no vector spills (the
        // fallback may reload a general register).
        let spills = body
            .iter()
            .filter(|l| (l.contains("rsp") || l.contains("rbp")) && (fma || l.contains("xmm")))
            .count();
        assert_eq!(
            spills,
            0,
            "fma={fma}: stack traffic in the inner loop:\n{}",
            body.join("\n")
        );
        // Every vector op of the loop is on xmm registers (128-bit), and there is no scalar math.
        assert!(
            !body.iter().any(|l| l.contains("mulss")
                || l.contains("addss")
                || (fma && l.contains("vmovss"))),
            "{}",
            body.join("\n")
        );
    }
}

#[test]
#[ignore]
fn dump_asm() {
    let src = std::env::var("SPEC").unwrap_or("input x: [64, 20, 20]\ny = conv(x, out=64, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n".into());
    let g = graph(&src, Path::new("."));
    let mut o = opts(1);
    o.emit_asm = true;
    o.fma = std::env::var("FMA").is_ok();
    let n = g.inputs[0];
    let s = &g.node(n).shape;
    let net = convc_jit::compile(
        &g,
        &[(
            s.h.known().unwrap_or(16) as usize,
            s.w.known().unwrap_or(16) as usize,
        )],
        &o,
    )
    .expect("compile");
    for (name, asm) in net.disassembly() {
        println!("=== {name}\n{asm}");
    }
}

#[test]
fn several_inputs_with_shared_symbolic_sizes() {
    let src = "input a: [3, H, W]
input b: [2, H, W]
input unused: [1, 4, 4]
ca = conv(a, out=4, kernel=3x3, pad=same, weights=random(seed=1))
j = concat(ca, b, a)
s = add(b, b)
d = depthwise(j, kernel=2x2, multiplier=2, stride=2, pad=same, weights=random(seed=2))
output d, s, j
";
    let g = graph(src, Path::new("."));
    check_graph(
        &g,
        &[(21, 18), (21, 18), (4, 4)],
        3,
        &opts(2),
        "three inputs",
    );
    // Sizes that disagree on a shared symbol are an error.
    assert!(convc_jit::compile(&g, &[(21, 18), (20, 18), (4, 4)], &opts(1)).is_err());
}
