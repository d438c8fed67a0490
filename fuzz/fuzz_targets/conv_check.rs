//! The whole `check` front end (parse, lower, shapes, weights, printers) on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    // A folder that does not exist: `file(...)` sources fail cleanly instead of reading files.
    match convc_ir::compile(&src, std::path::Path::new("/nonexistent-convc-fuzz")) {
        Ok(g) => {
            let _ = convc_ir::print::text(&g);
            let _ = convc_ir::print::json(&g);
        }
        Err(d) => {
            let _ = convc_lang::render("f.conv", &src, &d);
        }
    }
});
