//! Differential tests: random graphs (every op and attribute), JIT vs the interpreter.
mod common;

use common::*;
use proptest::prelude::*;
use std::path::Path;

fn check_spec(src: &str, batch: usize, threads: usize) {
    let g = graph(src, Path::new("."));
    let n = g.inputs[0];
    let sh = &g.node(n).shape;
    let sizes = [(
        sh.h.known().unwrap_or(1) as usize,
        sh.w.known().unwrap_or(1) as usize,
    )];
    check_graph(
        &g,
        &sizes,
        batch,
        &opts(threads),
        &format!("threads={threads} batch={batch}\n{src}"),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs(seed in any::<u64>(), batch in 1usize..=2, threads in 1usize..=2) {
        check_spec(&specgen::spec(seed, false), batch, threads);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_wide(seed in any::<u64>(), threads in 1usize..=2) {
        check_spec(&specgen::spec(seed, true), 1, threads);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Long activation chains with distinct constants, wide concats, big fan-out, deep graphs.
    #[test]
    fn random_stress_graphs(seed in any::<u64>(), threads in 1usize..=2) {
        check_spec(&specgen::stress_spec(&mut specgen::Rng(seed)), 1, threads);
    }
}

#[test]
#[ignore]
fn sweep_seeds() {
    let from: u64 = std::env::var("SEED_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    for seed in from..from + 2000 {
        let src = specgen::spec(seed, seed % 3 == 0);
        eprintln!("seed {seed}\n{src}");
        check_spec(&src, 1 + (seed % 2) as usize, 1 + (seed / 2 % 2) as usize);
    }
}
