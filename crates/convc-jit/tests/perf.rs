//! Measurements (ignored: run with `cargo test --release -p convc-jit --test perf -- --ignored --nocapture`).
//! Nothing here asserts a time.
mod common;

use common::*;
use convc_jit::JitOptions;
use std::path::Path;
use std::time::Instant;

fn median_secs(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fma() -> bool {
    std::env::var("CONVC_FMA").is_ok()
}

/// GFLOP/s of single convolutions (no fusion), 1 thread.
#[test]
#[ignore]
fn conv_kernel_gflops() {
    let cases = [
        (
            "64->64 3x3 56x56 (resnet_block)",
            "input x: [64, 56, 56]\ny = conv(x, out=64, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "64->64 1x1 56x56 (pointwise)",
            "input x: [64, 56, 56]\ny = pointwise(x, out=64, weights=random(seed=1))\noutput y\n",
        ),
        (
            "32->192 1x1 112x112 (mobilenet expand)",
            "input x: [32, 112, 112]\ny = pointwise(x, out=192, weights=random(seed=1))\noutput y\n",
        ),
        (
            "192 dw 3x3 112x112 (mobilenet dw)",
            "input x: [192, 112, 112]\ny = depthwise(x, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "64->64 3x3 s2 56x56",
            "input x: [64, 56, 56]\ny = conv(x, out=64, kernel=3x3, stride=2, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "128->128 3x3 112x112 (vgg conv2_2)",
            "input x: [128, 112, 112]\ny = conv(x, out=128, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "3->64 7x7 s2 224x224 (stem)",
            "input x: [3, 224, 224]\ny = conv(x, out=64, kernel=7x7, stride=2, pad=3, weights=random(seed=1))\noutput y\n",
        ),
        (
            "256->256 3x3 14x14",
            "input x: [256, 14, 14]\ny = conv(x, out=256, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "512->512 3x3 7x7",
            "input x: [512, 7, 7]\ny = conv(x, out=512, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
        (
            "1024->256 1x1 14x14",
            "input x: [1024, 14, 14]\ny = pointwise(x, out=256, weights=random(seed=1))\noutput y\n",
        ),
        (
            "128->128 3x3 28x28",
            "input x: [128, 28, 28]\ny = conv(x, out=128, kernel=3x3, pad=same, weights=random(seed=1))\noutput y\n",
        ),
    ];
    for (what, src) in cases {
        let g = graph(src, Path::new("."));
        let s = &g.node(g.inputs[0]).shape;
        let sizes = [(
            s.h.known().unwrap_or(1) as usize,
            s.w.known().unwrap_or(1) as usize,
        )];
        let opts = JitOptions {
            threads: 1,
            verify: false,
            emit_asm: false,
            fma: std::env::var("CONVC_NOFMA").is_err(),
            isa: std::env::var("CONVC_ISA")
                .ok()
                .and_then(|v| convc_jit::Isa::parse(&v)),
            ..JitOptions::default()
        };
        let net = convc_jit::compile(&g, &sizes, &opts).expect("compile");
        let x = inputs_for(&g, &sizes, 1, 1);
        let macs: u64 = net.steps().iter().map(|s| s.macs).sum();
        // Thread-CPU time: a busy machine moves it much less than wall time.
        drop(net.run(&x).expect("run"));
        let mut runs: Vec<f64> = (0..9)
            .map(|_| {
                let t0 = thread_cpu_secs();
                drop(net.run(&x).expect("run"));
                thread_cpu_secs() - t0
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        let t = runs[runs.len() / 2];
        println!(
            "{what}: {:.2} ms, {:.1} GFLOP/s, compile {:.2} ms",
            t * 1e3,
            2.0 * macs as f64 / t / 1e9,
            net.compile_time().as_secs_f64() * 1e3
        );
    }
}

/// Every bench spec: compile time, ms/image and GFLOP/s at 1 and 2 threads, and per-step times.
#[test]
#[ignore]
fn bench_specs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/bench");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .expect("bench")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conv"))
        .collect();
    files.sort();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read");
        let g = graph(&src, &root);
        let sizes = input_sizes(&g, (1, 1));
        let stem = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for threads in [1, 2] {
            let opts = JitOptions {
                threads,
                verify: false,
                emit_asm: false,
                fma: fma(),
                ..JitOptions::default()
            };
            let net = convc_jit::compile(&g, &sizes, &opts).expect("compile");
            let x = inputs_for(&g, &sizes, 1, 1);
            let macs: u64 = net.steps().iter().map(|s| s.macs).sum();
            let reps = if macs > 1_000_000_000 { 3 } else { 15 };
            let t = median_secs(|| drop(net.run(&x).expect("run")), reps);
            println!(
                "{stem:16} threads={threads}: compile {:6.2} ms ({} kernels), {:8.3} ms/image, {:6.1} GFLOP/s",
                net.compile_time().as_secs_f64() * 1e3,
                net.kernels().len(),
                t * 1e3,
                2.0 * macs as f64 / t / 1e9
            );
            if threads == 1 {
                let (_, prof) = net.run_profiled(&x).expect("profiled");
                for p in prof {
                    println!("    {:40} {:8.3} ms  {}", p.name, p.seconds * 1e3, p.kernel);
                }
            }
        }
    }
}

/// CPU time of this thread (robust to other processes sharing the cores, unlike wall time).
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The bench specs named in `CONVC_SPECS` (comma-separated; default all) after the default
/// passes, 1 thread: median thread-CPU ms per image of whole runs and per step (a busy machine
/// changes CPU time much less than wall time). For A/B comparisons of kernels.
#[test]
#[ignore]
fn cpu_specs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/bench");
    let names = std::env::var("CONVC_SPECS").unwrap_or_else(|_| {
        "seed_3to8,blur7,sobel,lowrank_conv,resnet_block,mobilenet_block,inception_7x7,vgg_head"
            .into()
    });
    for name in names.split(',') {
        let src = std::fs::read_to_string(root.join(format!("{name}.conv"))).expect("read");
        let mut g = graph(&src, &root);
        let written: u64 = convc_ir::cost::total_macs(&g).unwrap_or(0);
        convc_passes::PassManager::default_pipeline()
            .run(&mut g, &convc_passes::PassContext::with_tolerance(0.0))
            .expect("passes");
        let sizes = input_sizes(&g, (1, 1));
        let opts = JitOptions {
            threads: 1,
            verify: false,
            fma: std::env::var("CONVC_NOFMA").is_err(),
            isa: std::env::var("CONVC_ISA")
                .ok()
                .and_then(|v| convc_jit::Isa::parse(&v)),
            ..JitOptions::default()
        };
        let net = convc_jit::compile(&g, &sizes, &opts).expect("compile");
        let x = inputs_for(&g, &sizes, 1, 1);
        let macs: u64 = net.steps().iter().map(|s| s.macs).sum();
        let reps = if macs > 1_000_000_000 { 5 } else { 41 };
        let mut runs = Vec::new();
        let mut steps: Vec<Vec<f64>> = vec![Vec::new(); net.steps().len()];
        drop(net.run(&x).expect("run"));
        for _ in 0..reps {
            let t = thread_cpu_secs();
            drop(net.run(&x).expect("run"));
            runs.push(thread_cpu_secs() - t);
        }
        for _ in 0..reps.min(11) {
            let (_, prof) = net.run_profiled(&x).expect("profiled");
            for (i, p) in prof.iter().enumerate() {
                steps[i].push(p.seconds);
            }
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let t = med(&mut runs);
        println!(
            "{name:16} cpu {:8.3} ms  {:6.1} GFLOP/s exec  {:6.1} written  compile {:5.2} ms",
            t * 1e3,
            2.0 * macs as f64 / t / 1e9,
            2.0 * written as f64 / t / 1e9,
            net.compile_time().as_secs_f64() * 1e3
        );
        for (s, v) in net.steps().iter().zip(&mut steps) {
            let st = med(v);
            println!(
                "    {:28} {:8.3} ms (wall) {:6.1} GFLOP/s  {}",
                s.name,
                st * 1e3,
                2.0 * s.macs as f64 / st / 1e9,
                s.kernel
            );
        }
    }
}
