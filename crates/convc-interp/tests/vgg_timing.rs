//! How long the interpreter takes on the VGG head (4.7 GMACs at 224x224). Ignored by default
//! (it is a measurement, not a check); run it with
//! `cargo test -p convc-interp --test vgg_timing -- --ignored --nocapture`.
//!
//! Looks for `specs/bench/vgg_head.conv` with its weights, then for `../shared/bench/` beside
//! the workspace.

use std::path::{Path, PathBuf};
use std::time::Instant;

use convc_tensor::Tensor;

fn find_spec() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    [
        root.join("specs").join("bench"),
        root.join("..").join("shared").join("bench"),
    ]
    .into_iter()
    .map(|d| d.join("vgg_head.conv"))
    .find(|p| p.is_file() && p.with_extension("").join("conv1_1_weight.npy").is_file())
}

#[test]
#[ignore]
fn vgg_head_timing() {
    let Some(spec) = find_spec() else {
        eprintln!("vgg_head.conv with its weights not found; nothing to time");
        return;
    };
    let src = std::fs::read_to_string(&spec).expect("readable spec");
    let base = spec.parent().expect("spec has a folder");
    let g = convc_ir::compile(&src, base).unwrap_or_else(|d| panic!("{}", d.message));
    // A deterministic pseudo-random input in [0, 1).
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<f32> = (0..3 * 224 * 224)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let x = Tensor::new(vec![1, 3, 224, 224], data).expect("input shape");
    for threads in [1, convc_interp::default_threads()] {
        let t0 = Instant::now();
        let out = convc_interp::run_threads(&g, std::slice::from_ref(&x), threads).expect("runs");
        let dt = t0.elapsed().as_secs_f64();
        println!(
            "vgg_head [1,3,224,224] -> {:?}: {dt:.2} s with {threads} thread(s), {:.2} GMAC/s",
            out[0].shape(),
            4.710_924_288 / dt
        );
    }
}
