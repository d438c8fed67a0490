//! Every fixed capacity of the JIT that the size of a spec drives (`docs/limits.md`, the JIT
//! section), tested at its edge and just past it, on the JIT against the interpreter.
mod common;

use common::*;
use convc_jit::{CompiledNet, GuardPages, JitOptions};
use std::path::Path;

/// Test options with guard pages after every arena buffer and thread scratch.
fn guarded(threads: usize) -> JitOptions {
    JitOptions {
        guard_pages: GuardPages::End,
        ..opts(threads)
    }
}

/// Compiles `src` (its input sizes as written), checks it against the interpreter with and
/// without the default passes, and returns the net compiled without passes.
fn check(src: &str) -> CompiledNet {
    let g = graph(src, Path::new("."));
    let sizes = input_sizes(&g, (1, 1));
    let mut opt = g.clone();
    convc_passes::PassManager::default_pipeline()
        .run(&mut opt, &convc_passes::PassContext::with_tolerance(0.0))
        .expect("passes");
    check_graph(&opt, &sizes, 1, &guarded(2), &format!("with passes\n{src}"));
    check_graph(&g, &sizes, 2, &guarded(2), src)
}

/// A conv then `n` clamps with distinct bounds (the network of issue 11 for n = 70).
fn clamp_chain(n: usize) -> String {
    let mut s = String::from(
        "input x: [3, 9, 13]\nc0 = conv(x, out=4, kernel=3, pad=1, weights=random(seed=1))\n",
    );
    for i in 1..=n {
        let lo = -(1.0 + (i % 50) as f64 * 0.05 + i as f64 * 1e-4);
        let hi = 1.0 + ((i * 7) % 50) as f64 * 0.05 + i as f64 * 1e-4;
        s += &format!("c{i} = clamp(c{}, min={lo:.4}, max={hi:.4})\n", i - 1);
    }
    s + &format!("output c{n}\n")
}

fn step_names(net: &CompiledNet) -> Vec<String> {
    net.steps().into_iter().map(|s| s.name).collect()
}

#[test]
fn long_activation_chains_with_distinct_constants() {
    for n in [70, 200] {
        check(&clamp_chain(n));
    }
}

/// `convc_ir::fusion::MAX_MEMBERS` (16): a conv and 16 activations are one kernel; a 17th
/// starts a new group.
#[test]
fn fusion_group_members_edge() {
    let net = check(&clamp_chain(16));
    assert_eq!(step_names(&net).len(), 1, "{:?}", step_names(&net));
    let net = check(&clamp_chain(17));
    let names = step_names(&net);
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "c17");
    // Elementwise heads too: 1 + 16 per kernel.
    let mut s = String::from("input x: [2, 5, 7]\nr0 = tanh(x)\n");
    for i in 1..=33 {
        s += &format!("r{i} = leaky_relu(r{}, alpha=0.{:02})\n", i - 1, i);
    }
    s += "output r33\n";
    let names = step_names(&check(&s));
    assert_eq!(names.len(), 2, "{names:?}");
}

/// The constant pool grows by tables of 64 vectors: a fused separable pair of two groups of
/// 16 clamps has 64 distinct bounds plus the kernel's own constants in one kernel.
#[test]
fn constant_pool_past_one_table() {
    let mut s = String::from(
        "input x: [2, 10, 12]\na0 = conv(x, out=2, groups=2, kernel=3x1, pad=(1, 0), weights=random(seed=2))\n",
    );
    for i in 1..=16 {
        s += &format!("a{i} = clamp(a{}, min=-{}.5, max={}.25)\n", i - 1, i, i);
    }
    s += "b0 = conv(a16, out=3, kernel=1x3, pad=(0, 1), weights=random(seed=3))\n";
    for i in 1..=16 {
        s += &format!("b{i} = clamp(b{}, min=-{}.75, max={}.125)\n", i - 1, i, i);
    }
    s += "output b16\n";
    let net = check(&s);
    let k: Vec<String> = net.kernels().iter().map(|k| k.name.clone()).collect();
    assert!(k.iter().any(|n| n.contains("sep")), "not fused: {k:?}");
}

/// `MAX_CHUNKS` (64) chunks of a long reduction: a single-channel 295x295 kernel needs 64
/// chunks of 16 KB; a 300x300 one would need 66 and takes 64 longer chunks.
#[test]
fn reduction_chunks_edge() {
    for (k, taps_per_chunk) in [(295usize, 1360usize), (300, 1407)] {
        let src = format!(
            "input x: [1, {k}, {}]\ny = conv(x, out=1, kernel={k}, weights=random(seed=4))\noutput y\n",
            k + 1
        );
        let net = check(&src);
        let name = &net.kernels()[0].name;
        assert!(
            name.contains(&format!("_k{taps_per_chunk}_"))
                || name.ends_with(&format!("_k{taps_per_chunk}")),
            "{name}"
        );
    }
}

/// `POOL_UNROLL_LOADS` (1,024): a 16x16 pool is unrolled (4 x 256 loads), a 16x17 one and
/// bigger windows run the generic loops; both agree with the interpreter, and a 300x300
/// window compiles quickly.
#[test]
fn pool_unroll_edge() {
    for (kind, kh, kw, h, w) in [
        ("maxpool", 16, 16, 20, 22),
        ("avgpool", 16, 16, 18, 24),
        ("maxpool", 16, 17, 20, 22),
        ("avgpool", 16, 17, 18, 24),
        ("maxpool", 300, 300, 310, 305),
    ] {
        let src = format!(
            "input x: [2, {h}, {w}]\ny = {kind}(x, kernel={kh}x{kw}, stride=1)\noutput y\n"
        );
        let net = check(&src);
        eprintln!("{kind} {kh}x{kw}: compiled in {:?}", net.compile_time());
        assert!(
            net.compile_time().as_secs_f64() < 10.0,
            "{src}: compiled in {:?}",
            net.compile_time()
        );
    }
}

/// `MAX_SEP_PAD_STORES` (256): a separable pair whose row buffer has 2 channels x 128 padding
/// columns is fused; 2 x 130 runs as two kernels.
#[test]
fn separable_padding_edge() {
    for (kw, pad, fused) in [(129, 64, true), (131, 65, false)] {
        let src = format!(
            "input x: [2, 9, 11]\na = conv(x, out=2, groups=2, kernel=3x1, pad=(1, 0), weights=random(seed=5))\nb = conv(a, out=3, kernel=1x{kw}, pad=(0, {pad}), weights=random(seed=6))\noutput b\n"
        );
        let net = check(&src);
        let k: Vec<String> = net.kernels().iter().map(|k| k.name.clone()).collect();
        assert_eq!(k.iter().any(|n| n.starts_with("k0_sep")), fused, "{k:?}");
    }
}

/// No limit on the operands of a concat: 300 of them (each a copy step).
#[test]
fn wide_concat() {
    let mut s = String::from("input x: [2, 4, 5]\n");
    let mut names = Vec::new();
    for i in 0..300 {
        let op = match i % 3 {
            0 => format!("clamp(x, min=-0.{}, max=0.{})", i % 10, 1 + i % 9),
            1 => format!("leaky_relu(x, alpha=0.{:03})", i),
            _ => "sigmoid(x)".to_string(),
        };
        s += &format!("v{i} = {op}\n");
        names.push(format!("v{i}"));
    }
    s += &format!("y = concat({})\noutput y\n", names.join(", "));
    check(&s);
}

/// No limit on fan-out: one value read by 500 layers, summed in a chain.
#[test]
fn big_fan_out() {
    let mut s = String::from(
        "input x: [3, 6, 6]\nh = conv(x, out=3, kernel=3, pad=1, weights=random(seed=7))\ns0 = relu(h)\n",
    );
    for i in 1..500 {
        s += &format!(
            "u{i} = conv(h, out=3, kernel=1, weights=random(seed={}))\ns{i} = add(s{}, u{i})\n",
            i + 10,
            i - 1
        );
    }
    s += "output s499\n";
    check(&s);
}

/// No limit on depth: 3,000 layers of convs, batchnorms, pools, adds and activations (each
/// block ends in a sigmoid, so that rounding differences do not grow through the depth).
#[test]
fn deep_graph() {
    let mut s = String::from("input x: [4, 8, 8]\nv0 = relu(x)\n");
    for i in 1..3000usize {
        let p = i - 1;
        let line = match i % 6 {
            0 => format!("v{i} = conv(v{p}, out=4, kernel=3, pad=1, weights=random(seed={i}))"),
            1 => format!(
                "v{i} = batchnorm(v{p}, mean=random(seed={i}), var=random(seed={}), gamma=random(seed={}), beta=random(seed={}))",
                i + 1,
                i + 2,
                i + 3
            ),
            2 => format!("v{i} = tanh(v{p})"),
            3 => format!("v{i} = maxpool(v{p}, kernel=3, stride=1, pad=1)"),
            4 => format!("v{i} = add(v{p}, v{})", p.saturating_sub(3)),
            _ => format!("v{i} = sigmoid(v{p})"),
        };
        s += &line;
        s.push('\n');
    }
    s += "output v2999\n";
    check(&s);
}

/// `MAX_BUFFER_FLOATS`: a value of more than 2^29 floats per image is refused by name (byte
/// offsets inside a buffer are 32-bit immediates) before anything is allocated.
#[test]
fn buffer_size_edge() {
    let g = graph(
        "input x: [1, H, W]\ny = relu(x)\noutput y\n",
        Path::new("."),
    );
    // 2^29 - 64 - 16 floats: within the limit (compiles; not run, 2 GB).
    let ok = (1usize << 29) - 64 - 16;
    assert!(convc_jit::compile(&g, &[(1, ok)], &opts(1)).is_ok());
    let e = convc_jit::compile(&g, &[(1, (1 << 29) + 16)], &opts(1))
        .err()
        .expect("refused");
    assert!(e.message.contains("too large for the JIT"), "{}", e.message);
    assert!(
        e.message.contains("`x`") || e.message.contains("`y`"),
        "{}",
        e.message
    );
}

/// Register blocks: at most 10 output channels (6 without FMA) per block; 10, 11, 20 and 21
/// channels (one block, two, two full, three) with and without FMA, grouped and not.
#[test]
fn register_block_edges() {
    for out in [6, 7, 10, 11, 12, 13, 20, 21] {
        for groups in [1, 2] {
            if out % groups != 0 {
                continue;
            }
            let src = format!(
                "input x: [4, 7, 19]\ny = conv(x, out={out}, kernel=3, pad=1, groups={groups}, weights=random(seed={out}))\noutput y\n"
            );
            check(&src);
            let g = graph(&src, Path::new("."));
            let o = JitOptions {
                fma: false,
                ..guarded(1)
            };
            check_graph(&g, &[(7, 19)], 1, &o, &src);
        }
    }
}
