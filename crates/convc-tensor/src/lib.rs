//! Dense row-major f32 tensors, and the file formats convc reads and writes: `.npy`,
//! safetensors, PNG; the built-in image filters and the seeded weight initialisers.

#![warn(missing_docs)]

pub mod filters;
pub mod image;
pub mod npy;
pub mod random;
pub mod read;
pub mod st;
pub mod write;

use std::fmt;

/// A dense, row-major (C order) f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor from a shape and row-major data. Fails when the element count does not match.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, DataError> {
        let n = checked_numel(&shape)
            .ok_or_else(|| DataError::new(format!("shape {} is too large", fmt_shape(&shape))))?;
        if n != data.len() {
            return Err(DataError::new(format!(
                "shape {} needs {} values, found {}",
                fmt_shape(&shape),
                n,
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The values, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    /// Consumes the tensor, giving its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// The same values with another shape of equal element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor, DataError> {
        Tensor::new(shape, self.data)
    }
    /// Index of the first value that is NaN or infinite, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.data.iter().position(|v| !v.is_finite())
    }
}

/// The product of the dimensions, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Formats a shape as `[a, b, c]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Bad or unreadable data: the message says what was expected and what was found. The caller
/// adds the file name and the layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DataError {
    /// What is wrong.
    pub message: String,
}

impl DataError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> DataError {
        DataError {
            message: message.into(),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DataError {}
