//! The JIT against the interpreter on random valid networks built from the fuzzer's bytes
//! (structure-aware: the bytes are the choices of the random-spec generator of the JIT's
//! tests, `crates/convc-jit/tests/common/specgen.rs`): every op and attribute, or long
//! activation chains, wide concats, big fan-out and deep graphs; with or without the default
//! passes; 1 or 2 threads, batches of 1 or 2; direct, Winograd or the cost model's choice for
//! 3x3 convolutions; arena and scratch against guard pages on
//! either side. Any JIT error, crash, fault or difference beyond `1e-4 * (1 + max|expected|)`
//! is a failure.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/convc-jit/tests/common/mod.rs"]
mod common;

use common::specgen::{self, Choose};

/// The generator's choices from the fuzzer's bytes (the lowest choice once they run out).
struct Bytes<'a, 'b>(&'b mut Unstructured<'a>);

impl Choose for Bytes<'_, '_> {
    fn r(&mut self, lo: usize, hi: usize) -> usize {
        self.0.int_in_range(lo..=hi).unwrap_or(lo)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0
            .int_in_range(0u16..=999)
            .is_ok_and(|v| f64::from(v) < p * 1000.0)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut b = Bytes(&mut u);
    let kind = b.r(0, 3);
    let passes = b.chance(0.5);
    let threads = b.r(1, 2);
    let batch = b.r(1, 2);
    let guard = match b.r(0, 2) {
        0 => convc_jit::GuardPages::Off,
        1 => convc_jit::GuardPages::End,
        _ => convc_jit::GuardPages::Start,
    };
    let algo = match b.r(0, 2) {
        0 => convc_jit::ConvAlgo::Auto,
        1 => convc_jit::ConvAlgo::Direct,
        _ => convc_jit::ConvAlgo::Winograd,
    };
    let seed = b.r(0, 1 << 20) as u64;
    let src = match kind {
        0 => specgen::spec_from(&mut b, false),
        1 => specgen::spec_from(&mut b, true),
        _ => specgen::stress_spec(&mut b),
    };
    let mut g = common::graph(&src, std::path::Path::new("."));
    if passes {
        convc_passes::PassManager::default_pipeline()
            .run(&mut g, &convc_passes::PassContext::with_tolerance(0.0))
            .unwrap_or_else(|e| panic!("passes failed: {e:?}\n{src}"));
    }
    let sizes = common::input_sizes(&g, (1, 1));
    let opts = convc_jit::JitOptions {
        guard_pages: guard,
        conv_algo: algo,
        ..common::opts(threads)
    };
    let what = format!(
        "passes={passes} threads={threads} batch={batch} guard={guard:?} algo={algo:?} seed={seed}\n{src}"
    );
    let net = convc_jit::compile(&g, &sizes, &opts)
        .unwrap_or_else(|e| panic!("JIT compile failed: {e}\n{what}"));
    let inputs = common::inputs_for(&g, &sizes, batch, seed);
    let want = convc_interp::run(&g, &inputs).expect("interpreter");
    let got = net
        .run(&inputs)
        .unwrap_or_else(|e| panic!("JIT run failed: {e}\n{what}"));
    common::assert_close(&got, &want, &what);
});
