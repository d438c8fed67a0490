//! The `.conv` parser and renderer on arbitrary text: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    if let Err(d) = convc_lang::parse(&src) {
        let _ = convc_lang::render("f.conv", &src, &d);
    }
});
