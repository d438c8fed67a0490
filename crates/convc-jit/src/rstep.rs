//! Steps implemented in plain Rust and called from a generated kernel (which passes its
//! `bufs, start, end` and the step's sizes): ops whose math Cranelift has no instruction for
//! (`exp`) and whose cost is negligible beside the convolutions around them.

use crate::spec::{SLOT_IN, SLOT_OUT};

/// The signature generated kernels call: `(bufs, start, end, c, hw)`.
pub(crate) type RustStep = unsafe extern "C" fn(*const *mut f32, u64, u64, u64, u64);

/// Softmax over the `c` channels of pixels `start..end` of a `[c, hw]` image, in f64 (as
/// the interpreter): `exp(x - max) / sum`.
///
/// # Safety
/// `bufs[SLOT_IN]` and `bufs[SLOT_OUT]` point to `c * hw` floats each (the step's input and
/// output buffers, which do not overlap), and `start <= end <= hw`.
pub(crate) unsafe extern "C" fn softmax(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    c: u64,
    hw: u64,
) {
    let (c, hw) = (c as usize, hw as usize);
    // SAFETY: the caller passes the step's buffer table and its sizes (see above).
    let (x, y) = unsafe {
        let x = std::slice::from_raw_parts(*bufs.add(SLOT_IN) as *const f32, c * hw);
        let y = std::slice::from_raw_parts_mut(*bufs.add(SLOT_OUT), c * hw);
        (x, y)
    };
    for p in start as usize..end as usize {
        let at = |k: usize| f64::from(x[k * hw + p]);
        let max = (0..c).map(at).fold(f64::NEG_INFINITY, |m, v| {
            if v.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        });
        let sum: f64 = (0..c).map(|k| (at(k) - max).exp()).sum();
        for k in 0..c {
            y[k * hw + p] = ((at(k) - max).exp() / sum) as f32;
        }
    }
}
