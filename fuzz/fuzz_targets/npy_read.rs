//! `.npy` reader: any bytes give a tensor or an error, never a panic; what is read writes back.
#![no_main]

use convc_tensor::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = npy::read(data) {
        let again = npy::read(&npy::write(&t)).expect("a written file reads back");
        assert_eq!(again.shape(), t.shape());
    }
});
