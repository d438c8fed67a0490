//! Memory safety: inputs and outputs are placed right before (and, in a second pass, right
//! after) a `PROT_NONE` guard page, for random graphs of every op; an out-of-bounds read or
//! write by generated code faults the test. Values are checked against the interpreter too.
//! The arena's buffers and the threads' scratch are guarded too, by the JIT's own test mode
//! (`JitOptions::guard_pages`), on the same side as the inputs and outputs.
mod common;

use common::*;
use convc_jit::{GuardPages, JitOptions};
use std::path::Path;

/// `len` floats in an anonymous mapping, touching a guard page at the end (or the start).
struct Guarded {
    base: *mut libc::c_void,
    total: usize,
    ptr: *mut f32,
    len: usize,
}

impl Guarded {
    fn new(len: usize, at_end: bool) -> Guarded {
        let page = 4096usize;
        let bytes = len * 4;
        let pages = bytes.div_ceil(page).max(1);
        let total = (pages + 2) * page;
        // SAFETY: a fresh private anonymous mapping; the guard pages are its first and last.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED, "mmap");
            let b = base.cast::<u8>();
            assert_eq!(libc::mprotect(base, page, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(b.add((pages + 1) * page).cast(), page, libc::PROT_NONE),
                0
            );
            let start = if at_end {
                b.add((pages + 1) * page - bytes)
            } else {
                b.add(page)
            };
            Guarded {
                base,
                total,
                ptr: start.cast(),
                len,
            }
        }
    }
    fn slice(&self) -> &[f32] {
        // SAFETY: `len` floats inside the readable part of the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn slice_mut(&mut self) -> &mut [f32] {
        // SAFETY: as above, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.base, self.total) };
    }
}

/// Runs `src` with every input and output ending exactly at a guard page, then starting right
/// after one, against the interpreter.
fn check_guarded(src: &str, seed: u64) {
    let g = graph(src, Path::new("."));
    let sizes = [first_input_size(&g)];
    let batch = 1 + (seed % 2) as usize;
    let x = inputs_for(&g, &sizes, batch, seed);
    let want = convc_interp::run(&g, &x).expect("interp");
    for at_end in [true, false] {
        let o = JitOptions {
            guard_pages: if at_end {
                GuardPages::End
            } else {
                GuardPages::Start
            },
            ..opts(1 + (seed % 2) as usize)
        };
        let net = convc_jit::compile(&g, &sizes, &o).unwrap_or_else(|e| panic!("{e}\n{src}"));
        let mut ins: Vec<Guarded> = x.iter().map(|t| Guarded::new(t.numel(), at_end)).collect();
        for (gd, t) in ins.iter_mut().zip(&x) {
            gd.slice_mut().copy_from_slice(t.data());
        }
        let mut outs: Vec<Guarded> = want
            .iter()
            .map(|t| Guarded::new(t.numel(), at_end))
            .collect();
        let in_slices: Vec<&[f32]> = ins.iter().map(|gd| gd.slice()).collect();
        let mut out_slices: Vec<&mut [f32]> = outs.iter_mut().map(|gd| gd.slice_mut()).collect();
        net.run_into(&in_slices, &mut out_slices, batch)
            .unwrap_or_else(|e| panic!("{e}\n{src}"));
        let got: Vec<convc_tensor::Tensor> = outs
            .iter()
            .zip(&want)
            .map(|(gd, w)| {
                convc_tensor::Tensor::new(w.shape().to_vec(), gd.slice().to_vec()).expect("tensor")
            })
            .collect();
        assert_close(&got, &want, src);
    }
}

#[test]
fn generated_code_stays_inside_its_buffers() {
    for seed in 0..150u64 {
        let src = specgen::spec(seed * 7919 + 13, seed % 4 == 0);
        check_guarded(&src, seed);
    }
}

/// The same on graphs with long activation chains, wide concats, big fan-out and depth
/// (buffer plans with many live values).
#[test]
fn stress_graphs_stay_inside_their_buffers() {
    for seed in 0..30u64 {
        let src = specgen::stress_spec(&mut specgen::Rng(seed * 104_729 + 5));
        check_guarded(&src, seed);
    }
}

/// Kernels that read past a window on purpose (stride-2 pooling loads 8 columns for 4
/// outputs) on the network input, whose last row ends at a guard page.
#[test]
fn wide_loads_stay_inside_the_input() {
    let mut seed = 0;
    for w in [8, 9, 16, 17, 24, 30] {
        for args in [
            "kernel=2x2",
            "kernel=3x3, stride=2",
            "kernel=3x3, stride=2, pad=1",
        ] {
            for kind in ["maxpool", "avgpool"] {
                let src = format!("input x: [3, 6, {w}]\np = {kind}(x, {args})\noutput p\n");
                seed += 1;
                check_guarded(&src, seed);
            }
        }
    }
}

/// The example specs after the default passes (band and separable pairs, producers writing
/// padded layouts, row buffers and tiles in the threads' scratch), with every arena buffer
/// and scratch against a guard page, on 2 threads.
#[test]
fn example_specs_in_guard_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("specs folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conv"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read");
        let mut g = graph(&src, &dir);
        convc_passes::PassManager::default_pipeline()
            .run(&mut g, &convc_passes::PassContext::with_tolerance(0.0))
            .expect("passes");
        let sizes = input_sizes(&g, (37, 29));
        for side in [GuardPages::End, GuardPages::Start] {
            let o = JitOptions {
                guard_pages: side,
                ..opts(2)
            };
            check_graph(&g, &sizes, 2, &o, &format!("{} {side:?}", f.display()));
        }
    }
}
