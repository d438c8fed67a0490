//! Differential tests: random graphs (every op and attribute), JIT vs the interpreter.
mod common;

use common::*;
use proptest::prelude::*;

/// Runs `src` on the host's widest path against the interpreter; even seeds after the default
/// passes (the JIT follows the `fuse` pass's groups), odd ones as written.
fn check_spec(src: &str, seed: u64, batch: usize, threads: usize) {
    let isa = convc_jit::Isa::detect();
    let passes = seed % 2 == 0;
    check_isa_algo_opt(src, isa, convc_jit::ConvAlgo::Auto, threads, batch, passes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs(seed in any::<u64>(), batch in 1usize..=2, threads in 1usize..=2) {
        check_spec(&specgen::spec(seed, false), seed, batch, threads);
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_wide(seed in any::<u64>(), threads in 1usize..=2) {
        check_spec(&specgen::spec(seed, true), seed, 1, threads);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    /// Long activation chains with distinct constants, wide concats, big fan-out, deep graphs.
    #[test]
    fn random_stress_graphs(seed in any::<u64>(), threads in 1usize..=2) {
        check_spec(&specgen::stress_spec(&mut specgen::Rng(seed)), seed, 1, threads);
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
        check_spec(
            &src,
            seed,
            1 + (seed % 2) as usize,
            1 + (seed / 2 % 2) as usize,
        );
    }
}
