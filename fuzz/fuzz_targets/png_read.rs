//! PNG reader: any bytes give a tensor in [0, 1] or an error, never a panic.
#![no_main]

use convc_tensor::image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = image::read_png(data) {
        assert_eq!(t.shape().len(), 3);
        assert!((1..=4).contains(&t.shape()[0]));
        assert!(t.data().iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
