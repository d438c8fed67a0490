//! Reading ONNX files: the model protobuf, its opset, constant tensors (typed fields, raw
//! bytes and external data files) and node attributes.
//!
//! Everything here treats the file as untrusted: a malformed protobuf is an error (prost
//! checks lengths and limits nesting to 100 levels), tensor sizes use checked arithmetic and
//! the parameter limit of `.conv` specs, and external data paths must stay inside the model's
//! folder.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use prost::Message;

use crate::OnnxError;
use crate::proto::{AttributeProto, ModelProto, TensorProto};

/// The oldest default-domain opset the importer reads (attribute and input conventions of
/// older opsets differ and no current exporter writes them).
pub const MIN_OPSET: i64 = 7;
/// The newest default-domain opset the importer reads.
pub const MAX_OPSET: i64 = 21;

/// Decodes a model from the bytes of a `.onnx` file.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    ModelProto::decode(bytes).map_err(|e| {
        OnnxError::new(format!(
            "the file is not a valid ONNX model (its protobuf cannot be decoded: {e})"
        ))
    })
}

/// The model's default-domain (`ai.onnx`) opset, checked to be one the importer reads.
pub fn opset(m: &ModelProto) -> Result<i64, OnnxError> {
    let found = m
        .opset_import
        .iter()
        .find(|o| matches!(o.domain(), "" | "ai.onnx"))
        .map(|o| o.version());
    match found {
        Some(v) if (MIN_OPSET..=MAX_OPSET).contains(&v) => Ok(v),
        Some(v) => Err(OnnxError::new(format!(
            "the model uses opset {v} of the default ONNX domain; convc reads opsets {MIN_OPSET} to {MAX_OPSET} \
             (convert it with onnx.version_converter)"
        ))),
        None => Err(OnnxError::new(
            "the model imports no opset of the default ONNX domain (`opset_import` is missing)",
        )),
    }
}

/// The values of a constant tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// Floating point (float, double, float16 and bfloat16 all become f32).
    F32(Vec<f32>),
    /// Integers and booleans (used for shapes, axes and bounds).
    I64(Vec<i64>),
}

/// A constant tensor: an initializer, a `Constant` node or a folded constant expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Its ONNX dimensions (batch included where it has one).
    pub dims: Vec<usize>,
    /// Its values in row-major order; as many as the dimensions' product.
    pub data: Data,
}

impl Const {
    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }
    /// True when the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The values as f32 (integers converted).
    pub fn floats(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
    /// The values as integers, or `None` for a float tensor.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }
}

/// The product of `dims`, or an error when it overflows or passes `max` values.
pub fn numel(dims: &[usize], max: usize) -> Result<usize, OnnxError> {
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= max);
    n.ok_or_else(|| {
        OnnxError::new(format!(
            "a tensor of shape {} has more than {max} values",
            convc_tensor::fmt_shape(dims)
        ))
    })
}

/// ONNX dimensions as sizes (each 0 or more).
pub fn dims_of(d: &[i64]) -> Result<Vec<usize>, OnnxError> {
    d.iter()
        .map(|&x| {
            usize::try_from(x)
                .map_err(|_| OnnxError::new(format!("a tensor has a negative dimension {x}")))
        })
        .collect()
}

/// Where a tensor's external data are, with the path checked.
struct External {
    path: PathBuf,
    offset: u64,
    length: Option<u64>,
}

/// Resolves an external data `location` against the model's folder: it must be a relative
/// path made only of names (no `..`, no root, no drive), and, symbolic links followed, still
/// inside the folder.
pub fn external_path(dir: &Path, location: &str) -> Result<PathBuf, OnnxError> {
    let p = Path::new(location);
    let plain = !location.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(OnnxError::new(format!(
            "external data location `{location}` must be a relative path inside the model's folder (no `..`, no absolute path)"
        )));
    }
    let full = dir.join(p);
    let reason = |e: std::io::Error| {
        OnnxError::new(format!(
            "cannot read external data file `{location}`: {}",
            convc_tensor::read::io_reason(&e)
        ))
    };
    let canon_dir = dir.canonicalize().map_err(reason)?;
    let canon = full.canonicalize().map_err(reason)?;
    if !canon.starts_with(&canon_dir) {
        return Err(OnnxError::new(format!(
            "external data location `{location}` leads outside the model's folder (through a symbolic link)"
        )));
    }
    Ok(canon)
}

fn external(t: &TensorProto, dir: &Path) -> Result<External, OnnxError> {
    let mut location = None;
    let (mut offset, mut length) = (0u64, None);
    for e in &t.external_data {
        let num = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                OnnxError::new(format!(
                    "tensor `{}`: external data {} `{v}` is not a whole number",
                    t.name(),
                    e.key()
                ))
            })
        };
        match e.key() {
            "location" => location = Some(e.value().to_string()),
            "offset" => offset = num(e.value())?,
            "length" => length = Some(num(e.value())?),
            _ => {}
        }
    }
    let Some(location) = location else {
        return Err(OnnxError::new(format!(
            "tensor `{}`: its data are external but no location is given",
            t.name()
        )));
    };
    Ok(External {
        path: external_path(dir, &location)?,
        offset,
        length,
    })
}

/// Reads exactly `want` bytes of an external data file at its offset.
fn read_external(t: &TensorProto, ext: &External, want: usize) -> Result<Vec<u8>, OnnxError> {
    let shown = ext.path.display();
    if let Some(len) = ext.length
        && len != want as u64
    {
        return Err(OnnxError::new(format!(
            "tensor `{}`: external data length {len} is not the {want} bytes its shape needs",
            t.name()
        )));
    }
    let io = |e: std::io::Error| {
        OnnxError::new(format!(
            "tensor `{}`: cannot read external data file `{shown}`: {}",
            t.name(),
            convc_tensor::read::io_reason(&e)
        ))
    };
    let mut f = File::open(&ext.path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(OnnxError::new(format!(
            "tensor `{}`: external data `{shown}` is not a regular file",
            t.name()
        )));
    }
    let end = ext.offset.checked_add(want as u64);
    if end.is_none_or(|e| e > meta.len()) {
        return Err(OnnxError::new(format!(
            "tensor `{}`: external data file `{shown}` is {} bytes long, too short for {want} bytes at offset {}",
            t.name(),
            meta.len(),
            ext.offset
        )));
    }
    f.seek(SeekFrom::Start(ext.offset)).map_err(io)?;
    let mut buf = vec![0u8; want];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// ONNX element types the reader converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
    F16,
    Bf16,
    Int(usize, bool),
}

fn elem(t: &TensorProto) -> Result<Elem, OnnxError> {
    Ok(match t.data_type() {
        1 => Elem::F32,
        11 => Elem::F64,
        10 => Elem::F16,
        16 => Elem::Bf16,
        2 => Elem::Int(1, false),
        3 => Elem::Int(1, true),
        4 => Elem::Int(2, false),
        5 => Elem::Int(2, true),
        6 => Elem::Int(4, true),
        7 => Elem::Int(8, true),
        9 => Elem::Int(1, false),
        12 => Elem::Int(4, false),
        d => {
            return Err(OnnxError::new(format!(
                "tensor `{}` has ONNX data type {d}, which convc does not read (float, double, float16, bfloat16 and integers)",
                t.name()
            )));
        }
    })
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F64 => 8,
            Elem::F16 | Elem::Bf16 => 2,
            Elem::Int(s, _) => s,
        }
    }
}

/// Little-endian raw bytes as values.
fn from_raw(e: Elem, raw: &[u8]) -> Data {
    let sz = e.size();
    let chunks = raw.chunks_exact(sz);
    match e {
        Elem::F32 => Data::F32(
            chunks
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Elem::F64 => Data::F32(
            chunks
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        ),
        Elem::F16 => Data::F32(
            chunks
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Elem::Bf16 => Data::F32(
            chunks
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        Elem::Int(_, signed) => Data::I64(chunks.map(|c| int_le(c, signed)).collect()),
    }
}

fn int_le(c: &[u8], signed: bool) -> i64 {
    let mut b = [0u8; 8];
    b[..c.len()].copy_from_slice(c);
    let u = u64::from_le_bytes(b);
    let bits = c.len() * 8;
    if signed && bits < 64 && (u >> (bits - 1)) & 1 == 1 {
        (u | (!0u64 << bits)) as i64
    } else {
        u as i64
    }
}

/// Values from the typed repeated fields.
fn from_fields(t: &TensorProto, e: Elem) -> Data {
    match e {
        Elem::F32 => Data::F32(t.float_data.clone()),
        Elem::F64 => Data::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        // float16 and bfloat16 are stored as their bit patterns in int32_data.
        Elem::F16 => Data::F32(
            t.int32_data
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f32())
                .collect(),
        ),
        Elem::Bf16 => Data::F32(
            t.int32_data
                .iter()
                .map(|&v| half::bf16::from_bits(v as u16).to_f32())
                .collect(),
        ),
        Elem::Int(8, true) => Data::I64(t.int64_data.clone()),
        Elem::Int(4, false) => Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        Elem::Int(..) => Data::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
    }
}

/// Converts a tensor (typed fields, raw bytes or external data) of at most `max` values.
pub fn tensor(t: &TensorProto, dir: &Path, max: usize) -> Result<Const, OnnxError> {
    let dims = dims_of(&t.dims)?;
    let n = numel(&dims, max).map_err(|e| OnnxError::new(format!("tensor `{}`: {e}", t.name())))?;
    let e = elem(t)?;
    let bytes = n.saturating_mul(e.size());
    let data = if t.data_location() == crate::proto::tensor_proto::DataLocation::External {
        let ext = external(t, dir)?;
        from_raw(e, &read_external(t, &ext, bytes)?)
    } else if let Some(raw) = &t.raw_data {
        if raw.len() != bytes {
            return Err(OnnxError::new(format!(
                "tensor `{}` of shape {} has {} bytes of raw data, expected {bytes}",
                t.name(),
                convc_tensor::fmt_shape(&dims),
                raw.len()
            )));
        }
        from_raw(e, raw)
    } else {
        from_fields(t, e)
    };
    let c = Const { dims, data };
    if c.len() != n {
        return Err(OnnxError::new(format!(
            "tensor `{}` of shape {} holds {} values, expected {n}",
            t.name(),
            convc_tensor::fmt_shape(&c.dims),
            c.len()
        )));
    }
    Ok(c)
}

/// A node's attributes, looked up by name with their types checked.
pub struct Attrs<'a> {
    list: &'a [AttributeProto],
    /// Prefix of error messages (names the node).
    pub at: String,
}

impl<'a> Attrs<'a> {
    /// The attributes of a node; `at` names the node in errors.
    pub fn new(list: &'a [AttributeProto], at: String) -> Attrs<'a> {
        Attrs { list, at }
    }
    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name() == name)
    }
    fn bad(&self, name: &str, what: &str) -> OnnxError {
        OnnxError::new(format!("{}: attribute `{name}` must be {what}", self.at))
    }
    /// An integer attribute.
    pub fn int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => a.i.map(Some).ok_or_else(|| self.bad(name, "an integer")),
        }
    }
    /// A float attribute.
    pub fn float(&self, name: &str) -> Result<Option<f32>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => a.f.map(Some).ok_or_else(|| self.bad(name, "a float")),
        }
    }
    /// A list of integers (an attribute present with no values is an empty list).
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.i.is_some() || a.f.is_some() || a.s.is_some() || !a.floats.is_empty() => {
                Err(self.bad(name, "a list of integers"))
            }
            Some(a) => Ok(Some(a.ints.clone())),
        }
    }
    /// A string attribute (UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => match &a.s {
                Some(s) => String::from_utf8(s.clone())
                    .map(Some)
                    .map_err(|_| self.bad(name, "UTF-8 text")),
                None => Err(self.bad(name, "a string")),
            },
        }
    }
    /// A tensor attribute.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, OnnxError> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                a.t.as_ref()
                    .map(Some)
                    .ok_or_else(|| self.bad(name, "a tensor"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_paths_stay_inside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.bin"), [0u8; 8]).unwrap();
        assert!(external_path(dir.path(), "w.bin").is_ok());
        assert!(external_path(dir.path(), "./w.bin").is_ok());
        for bad in ["../w.bin", "/etc/passwd", "a/../../w.bin", ""] {
            let e = external_path(dir.path(), bad).unwrap_err();
            assert!(e.message.contains("relative path inside"), "{bad}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_out_of_the_folder_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret.bin"), [0u8; 4]).unwrap();
        let dir = outer.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret.bin"), dir.join("w.bin")).unwrap();
        let e = external_path(&dir, "w.bin").unwrap_err();
        assert!(e.message.contains("outside the model's folder"), "{e}");
    }

    #[test]
    fn signed_little_endian_integers() {
        assert_eq!(int_le(&[0xff], true), -1);
        assert_eq!(int_le(&[0xff], false), 255);
        assert_eq!(int_le(&[0xfe, 0xff, 0xff, 0xff], true), -2);
        assert_eq!(int_le(&(-5i64).to_le_bytes(), true), -5);
    }

    #[test]
    fn raw_data_must_fill_the_shape() {
        let t = TensorProto {
            dims: vec![2, 2],
            data_type: Some(1),
            raw_data: Some(vec![0u8; 12]),
            ..Default::default()
        };
        let e = tensor(&t, Path::new("."), 1 << 20).unwrap_err();
        assert!(
            e.message.contains("12 bytes of raw data, expected 16"),
            "{e}"
        );
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(1),
            float_data: vec![1.5, -2.0],
            ..Default::default()
        };
        let c = tensor(&t, Path::new("."), 1 << 20).unwrap();
        assert_eq!(c.data, Data::F32(vec![1.5, -2.0]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b"\x08\x07\x3a\xff\xff\xff\xff\x0f"[..],
            b"\xff\xff\xff",
            b"hello",
        ] {
            assert!(decode(bytes).is_err());
        }
    }
}
