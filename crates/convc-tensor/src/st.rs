//! Named tensors from safetensors files.
//!
//! The file is parsed by the `safetensors` crate, which checks the header (its length, its JSON,
//! every tensor's offsets against its dtype and shape, and that the data fills the file exactly).
//! The dtypes F32, F16, BF16 and F64 are converted to float32 (F64 rounds to nearest); any other
//! dtype is refused.

use crate::{DataError, Tensor};
use safetensors::{Dtype, SafeTensorError, SafeTensors};

/// At most this many tensor names are listed when the requested one is missing.
const MAX_NAMES_LISTED: usize = 10;

/// Reads the tensor called `name` from a safetensors file (the whole file's bytes) as float32.
pub fn read_tensor(bytes: &[u8], name: &str) -> Result<Tensor, DataError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| describe_error(&e, bytes.len()))?;
    let view = match file.tensor(name) {
        Ok(v) => v,
        Err(_) => return Err(missing_name(&file, name)),
    };
    let data = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(DataError::new(format!(
                "tensor '{name}' has dtype {other}: expected F32, F16, BF16 or F64"
            )));
        }
    };
    Tensor::new(view.shape().to_vec(), values)
        .map_err(|e| DataError::new(format!("tensor '{name}': {}", e.message)))
}

fn missing_name(file: &SafeTensors<'_>, name: &str) -> DataError {
    let mut names = file.names();
    if names.is_empty() {
        return DataError::new(format!(
            "no tensor named '{name}': the file holds no tensors"
        ));
    }
    names.sort_unstable();
    let total = names.len();
    let listed: Vec<String> = names
        .iter()
        .take(MAX_NAMES_LISTED)
        .map(|n| format!("'{n}'"))
        .collect();
    let more = if total > MAX_NAMES_LISTED {
        format!(", ... ({} more)", total - MAX_NAMES_LISTED)
    } else {
        String::new()
    };
    DataError::new(format!(
        "no tensor named '{name}': the file holds {total} tensor{}: {}{more}",
        if total == 1 { "" } else { "s" },
        listed.join(", ")
    ))
}

fn describe_error(e: &SafeTensorError, file_len: usize) -> DataError {
    use SafeTensorError as E;
    let what = match e {
        E::HeaderTooSmall => format!(
            "expected at least 8 bytes (the header length), found a file of {file_len} bytes"
        ),
        E::HeaderTooLarge => {
            "the header length is larger than the 100 MB safetensors allows".into()
        }
        E::InvalidHeaderLength => format!(
            "the header length runs past the end of the file ({file_len} bytes): the file is \
             truncated or not a safetensors file"
        ),
        E::InvalidHeader(_) => "the header is not valid UTF-8 text".into(),
        E::InvalidHeaderDeserialization(err) | E::JsonError(err) => {
            format!("the header is not valid safetensors JSON: {err}")
        }
        E::InvalidOffset(name) => format!(
            "the data offsets of tensor '{name}' are invalid (they must be contiguous and in order)"
        ),
        E::TensorInvalidInfo => "a tensor's data offsets do not match its dtype and shape".into(),
        E::MetadataIncompleteBuffer => {
            "the tensors' data does not fill the file exactly: the file is truncated or has extra \
             bytes"
                .into()
        }
        E::ValidationOverflow => "a tensor's shape is too large (its size overflows)".into(),
        E::MisalignedSlice => "a tensor's size is not a whole number of bytes".into(),
        other => other.to_string(),
    };
    DataError::new(format!("not a readable safetensors file: {what}"))
}
