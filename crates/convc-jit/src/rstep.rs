//! Steps implemented in plain Rust and called from a generated kernel, which passes its
//! `bufs, start, end` and a table of the step's constants: ops whose math Cranelift has no
//! instruction for (`exp`, `powf`) and whose cost is small beside the convolutions around them.

use crate::spec::{SLOT_IN, SLOT_OUT};

/// The signature generated kernels call: `(bufs, start, end, params)`; `params` points to
/// the step's constants (sizes, and f32 values as their bits), kept alive with the code.
pub(crate) type RustStep = unsafe extern "C" fn(*const *mut f32, u64, u64, *const i64);

/// The step's input and output `[c, hw]` images.
///
/// # Safety
/// `bufs[SLOT_IN]` and `bufs[SLOT_OUT]` point to `n` floats each and do not overlap (the
/// buffer plan keeps an operand live through the step that reads it).
unsafe fn io<'a>(bufs: *const *mut f32, n: usize) -> (&'a [f32], &'a mut [f32]) {
    // SAFETY: see above.
    unsafe {
        let x = std::slice::from_raw_parts(*bufs.add(SLOT_IN) as *const f32, n);
        let y = std::slice::from_raw_parts_mut(*bufs.add(SLOT_OUT), n);
        (x, y)
    }
}

/// Softmax over the `c` channels of pixels `start..end` of a `[c, hw]` image, in f64 (as
/// the interpreter): `exp(x - max) / sum`. `params`: `[c, hw]`.
///
/// # Safety
/// `params` points to 2 values; the buffers are as [`io`] needs for `c * hw` floats;
/// `start <= end <= hw`.
pub(crate) unsafe extern "C" fn softmax(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let (c, hw) = unsafe { (*params as usize, *params.add(1) as usize) };
    let (x, y) = unsafe { io(bufs, c * hw) };
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

/// Channel shuffle of output channels `start..end`: output channel `j*groups + i` is input
/// channel `i*(c/groups) + j`. `params`: `[c, hw, groups]`.
///
/// # Safety
/// `params` points to 3 values, `groups` divides `c`; the buffers are as [`io`] needs for
/// `c * hw` floats; `start <= end <= c`.
pub(crate) unsafe extern "C" fn shuffle(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 3) };
    let (c, hw, groups) = (p[0] as usize, p[1] as usize, p[2] as usize);
    let (x, y) = unsafe { io(bufs, c * hw) };
    let per = c / groups;
    for o in start as usize..end as usize {
        let (j, i) = (o / groups, o % groups);
        let src = (i * per + j) * hw;
        y[o * hw..(o + 1) * hw].copy_from_slice(&x[src..src + hw]);
    }
}

/// Local response normalisation across channels (ONNX `LRN`) of pixels `start..end`, in
/// f64: `x / (bias + alpha/size * sum of x^2 over the window of channels)^beta`, the window
/// `c - (size-1)/2 ..= c + size/2` clipped to the image's channels.
/// `params`: `[c, hw, size, alpha bits, beta bits, bias bits]` (f32 bits).
///
/// # Safety
/// `params` points to 6 values; the buffers are as [`io`] needs for `c * hw` floats;
/// `start <= end <= hw`.
pub(crate) unsafe extern "C" fn lrn(
    bufs: *const *mut f32,
    start: u64,
    end: u64,
    params: *const i64,
) {
    // SAFETY: see above.
    let p = unsafe { std::slice::from_raw_parts(params, 6) };
    let (c, hw, size) = (p[0] as usize, p[1] as usize, p[2] as usize);
    let f = |i: usize| f64::from(f32::from_bits(p[i] as u32));
    let (alpha, beta, bias) = (f(3), f(4), f(5));
    let (x, y) = unsafe { io(bufs, c * hw) };
    for px in start as usize..end as usize {
        for k in 0..c {
            let lo = k.saturating_sub((size - 1) / 2);
            let hi = (k + size / 2).min(c - 1);
            let sq: f64 = (lo..=hi).map(|i| f64::from(x[i * hw + px]).powi(2)).sum();
            let v = f64::from(x[k * hw + px]);
            y[k * hw + px] = (v / (bias + alpha / size as f64 * sq).powf(beta)) as f32;
        }
    }
}
