//! The ONNX front end of convc.
//!
//! - [`proto`]: Rust types of the official `onnx.proto`, generated once by prost and committed
//!   (see `src/proto/README.md`), so building needs no `protoc`.
//! - [`read`]: decoding a model file (malformed bytes are an error, never a panic), tensors
//!   (raw, typed and external data, with path checks), attributes, the opset.
//! - [`import`]: an ONNX graph (NCHW, batch first) as a convc [`convc_ir::Graph`] (per image
//!   `[C, H, W]`); errors name the ONNX node, its op type and the opset.
//! - [`emit`]: a graph as a readable `.conv` text plus its weights as safetensors (`convc import`).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod emit;
pub mod export;
mod fold;
pub mod import;
mod ops;
pub mod proto;
pub mod read;
mod resize;
mod shapes;

use std::fmt;

pub use import::{import, load};

/// Why an ONNX model could not be read or imported. The message is complete (it names the
/// node, op type and opset where one is at fault) and has no `error:` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxError {
    /// What went wrong.
    pub message: String,
}

impl OnnxError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> OnnxError {
        OnnxError {
            message: message.into(),
        }
    }
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OnnxError {}

/// True when `bytes` look like an ONNX model rather than `.conv` text: every exporter writes
/// ModelProto's `ir_version` (field 1, a varint: tag byte 0x08) first, a byte no spec starts
/// with.
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08)
}
