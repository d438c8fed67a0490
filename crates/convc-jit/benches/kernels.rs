//! Criterion benches of the JIT's convolution kernels, one layer per network, one thread:
//! a dense 3x3 conv, a pointwise (1x1) conv and a depthwise 3x3 conv, each at two sizes; a
//! long reduction on a small plane (chunks, rows packed) and on a wide one (chunks, column
//! tiles); a depthwise -> pointwise band pair with its producer (MobileNet's block); a max pool
//! and a sigmoid.
//!
//! `cargo bench -p convc-jit --bench kernels` (add `-- NAME` to pick some). Throughput is in
//! multiply-accumulates ("elements" in criterion's report: MAC/s, so GFLOP/s = 2 x Gelem/s);
//! for the pool and the sigmoid, input values per second.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use convc_jit::{CompiledNet, JitOptions};
use convc_tensor::Tensor;

/// (name, spec text, H, W)
const CASES: &[(&str, &str, usize, usize)] = &[
    (
        "conv3x3_64to64_56x56",
        "input x: [64, H, W]\ny = conv(x, out=64, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n",
        56,
        56,
    ),
    (
        "conv3x3_32to32_28x28",
        "input x: [32, H, W]\ny = conv(x, out=32, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n",
        28,
        28,
    ),
    (
        "pointwise_32to192_112x112",
        "input x: [32, H, W]\ny = pointwise(x, out=192, weights=random(seed=1), bias=random(seed=2))\nr = relu6(y)\noutput r\n",
        112,
        112,
    ),
    (
        "pointwise_64to64_56x56",
        "input x: [64, H, W]\ny = pointwise(x, out=64, weights=random(seed=1), bias=random(seed=2))\noutput y\n",
        56,
        56,
    ),
    (
        "depthwise3x3_192_112x112",
        "input x: [192, H, W]\ny = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu6(y)\noutput r\n",
        112,
        112,
    ),
    (
        "depthwise3x3_64_56x56",
        "input x: [64, H, W]\ny = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        56,
        56,
    ),
    (
        "conv3x3_512to512_7x7",
        "input x: [512, H, W]\ny = conv(x, out=512, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n",
        7,
        7,
    ),
    (
        "conv3x3_128to128_112x112",
        "input x: [128, H, W]\ny = conv(x, out=128, kernel=3x3, pad=same, weights=random(seed=1), bias=random(seed=2))\nr = relu(y)\noutput r\n",
        112,
        112,
    ),
    (
        "expand_dw_project_32_192_56x56",
        "input x: [32, H, W]\ne = pointwise(x, out=192, weights=random(seed=1), bias=random(seed=2))\na = relu6(e)\nd = depthwise(a, kernel=3x3, pad=same, weights=random(seed=3), bias=random(seed=4))\nb = relu6(d)\np = pointwise(b, out=32, weights=random(seed=5))\ny = add(p, x)\noutput y\n",
        56,
        56,
    ),
    (
        "maxpool3x3s1_192_28x28",
        "input x: [192, H, W]\ny = maxpool(x, kernel=3x3, stride=1, pad=1)\noutput y\n",
        28,
        28,
    ),
    (
        "sigmoid_64_112x112",
        "input x: [64, H, W]\ny = sigmoid(x)\noutput y\n",
        112,
        112,
    ),
];

fn compile(src: &str, h: usize, w: usize) -> (CompiledNet, Vec<Tensor>, u64) {
    let g = convc_ir::compile(src, Path::new(".")).expect("spec");
    let opts = JitOptions {
        threads: 1,
        verify: false,
        ..JitOptions::default()
    };
    let net = convc_jit::compile(&g, &[(h, w)], &opts).expect("compile");
    let c = g.node(g.inputs[0]).shape.c;
    let n = c * h * w;
    let data = (0..n)
        .map(|i| ((i.wrapping_mul(2654435761) >> 7) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let x = Tensor::new(vec![1, c, h, w], data).expect("tensor");
    // MACs, or (a pool, an activation) the input's values.
    let macs: u64 = net.steps().iter().map(|s| s.macs).sum();
    let work = if macs > 0 { macs } else { n as u64 };
    (net, vec![x], work)
}

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("jit_kernels");
    group.sample_size(20);
    for &(name, src, h, w) in CASES {
        let (net, x, macs) = compile(src, h, w);
        group.throughput(Throughput::Elements(macs));
        group.bench_function(name, |b| {
            b.iter(|| black_box(net.run(black_box(&x)).expect("run")))
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
