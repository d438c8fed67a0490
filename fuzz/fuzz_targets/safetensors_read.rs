//! safetensors reader: any bytes and name give a tensor or an error, never a panic.
#![no_main]

use convc_tensor::st;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the name asked for, so present and missing names are both reached.
    let (name, bytes) = match data.split_first() {
        Some((b, rest)) => (
            ["w_f32", "w_f16", "w_f64", "w_bf16", "w_i32", "a"][*b as usize % 6],
            rest,
        ),
        None => ("a", data),
    };
    let _ = st::read_tensor(bytes, name);
});
