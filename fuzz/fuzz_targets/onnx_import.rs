//! ONNX front end: any bytes give a graph or an error (decode, opset, tensors, every op's
//! attributes and shapes), never a panic, an overflow or an allocation past the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small memory limit keeps ConstantOfShape and big dims from allocating much.
    let limits = convc_ir::lower::Limits { max_memory: 64 << 20 };
    // External data are looked up in a folder that does not exist: always an error.
    if let Ok(g) = convc_onnx::import(data, std::path::Path::new("no-such-dir"), limits) {
        let _ = convc_onnx::emit::emit(&g, "w.safetensors", "fuzz");
    }
});
