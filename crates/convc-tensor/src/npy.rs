//! NumPy `.npy` files: reading float32/float64 arrays of any shape, writing float32.
//!
//! Reading accepts format versions 1.0, 2.0 and 3.0, the dtypes `<f4`, `>f4`, `<f8` and `>f8`
//! (float64 is rounded to the nearest float32), C or Fortran order (Fortran order is transposed to
//! row-major), and any shape including 0-d `()`. NumPy itself never writes `=f4` or `|f4` for a
//! float (it normalises them to `<f4`/`>f4`), so those and every other dtype (float16, integers,
//! structured dtypes) are refused. The data must be exactly as long as the header's shape says.
//!
//! Nothing is allocated for the values before the reader has checked that the file really holds
//! them, so a header claiming a huge shape costs nothing.

use crate::{DataError, Tensor, checked_numel, fmt_shape};

/// The magic string at the start of every `.npy` file.
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Nested tuples/lists deeper than this in a header are refused (a guard against stack overflow).
const MAX_DEPTH: usize = 32;
/// NumPy's alignment of the data start (header padded with spaces to a multiple of it).
const ARRAY_ALIGN: usize = 64;
/// NumPy pads the header so the first axis can grow to this many digits in place.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;

/// The element types the reader accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dtype {
    F4 { big_endian: bool },
    F8 { big_endian: bool },
}

impl Dtype {
    fn item_size(self) -> usize {
        match self {
            Dtype::F4 { .. } => 4,
            Dtype::F8 { .. } => 8,
        }
    }
}

/// What a `.npy` header says: the array's shape and where its data lies.
struct Header {
    info: HeaderInfo,
    /// Offset of the first data byte.
    data_start: usize,
    /// Bytes of data the shape and dtype need.
    data_len: usize,
}

/// Reads the shape of a `.npy` array from the start of its file (at least the whole header),
/// and the file length the data then needs. Lets a caller size a run from a file's header
/// before reading its data; [`read`] gives the same errors for the same header.
pub fn header_shape(prefix: &[u8]) -> Result<(Vec<usize>, u64), DataError> {
    let h = read_header(prefix)?;
    let total = (h.data_start as u64).saturating_add(h.data_len as u64);
    Ok((h.info.shape, total))
}

/// Parses the magic, version and header dict at the start of `bytes`.
fn read_header(bytes: &[u8]) -> Result<Header, DataError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DataError::new(
            "not a NumPy .npy file: expected it to start with the bytes \\x93NUMPY",
        ));
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => {
            return Err(DataError::new(
                "truncated .npy file: it ends inside the format version",
            ));
        }
    };
    let (len_size, utf8) = match (major, minor) {
        (1, 0) => (2, false),
        (2, 0) => (4, false),
        (3, 0) => (4, true),
        _ => {
            return Err(DataError::new(format!(
                "unsupported .npy format version {major}.{minor}: expected 1.0, 2.0 or 3.0"
            )));
        }
    };
    let header_start = 8 + len_size;
    let Some(len_bytes) = bytes.get(8..header_start) else {
        return Err(DataError::new(
            "truncated .npy file: it ends inside the header length",
        ));
    };
    let header_len = if len_size == 2 {
        u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize
    } else {
        u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize
    };
    let data_start = header_start
        .checked_add(header_len)
        .ok_or_else(|| DataError::new("the .npy header length is too large"))?;
    let Some(header_bytes) = bytes.get(header_start..data_start) else {
        return Err(DataError::new(format!(
            "truncated .npy file: the header says it is {header_len} bytes long, but only {} \
             bytes follow",
            bytes.len() - header_start
        )));
    };
    let header = decode_header(header_bytes, utf8)?;
    let info = parse_header(header)?;

    let numel = checked_numel(&info.shape).ok_or_else(|| {
        DataError::new(format!(
            "the .npy header's shape {} is too large (its element count overflows)",
            fmt_shape(&info.shape)
        ))
    })?;
    let item = info.dtype.item_size();
    let expected = numel.checked_mul(item).ok_or_else(|| {
        DataError::new(format!(
            "the .npy header's shape {} is too large (its byte count overflows)",
            fmt_shape(&info.shape)
        ))
    })?;
    Ok(Header {
        info,
        data_start,
        data_len: expected,
    })
}

/// Reads a `.npy` file (the whole file's bytes) as a float32 tensor.
pub fn read(bytes: &[u8]) -> Result<Tensor, DataError> {
    let Header {
        info,
        data_start,
        data_len: expected,
    } = read_header(bytes)?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        let what = if data.len() < expected {
            "truncated .npy file"
        } else {
            "bad .npy file"
        };
        return Err(DataError::new(format!(
            "{what}: shape {} of {} needs {expected} bytes of data, found {}",
            fmt_shape(&info.shape),
            dtype_name(info.dtype),
            data.len()
        )));
    }
    // The data is there: allocating `numel` values is now bounded by the file size.
    let values: Vec<f32> = match info.dtype {
        Dtype::F4 { big_endian } => data
            .chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if big_endian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect(),
        Dtype::F8 { big_endian } => data
            .chunks_exact(8)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                let v = if big_endian {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                };
                v as f32
            })
            .collect(),
    };
    let values = if info.fortran_order && info.shape.len() > 1 {
        fortran_to_c(&info.shape, &values)
    } else {
        values
    };
    Tensor::new(info.shape, values)
}

/// Writes a tensor as a `.npy` file: dtype `<f4`, C order, format version 1.0 (2.0 only if the
/// header would not fit in 1.0), with the header laid out and padded exactly as NumPy's
/// `np.save` does, so the bytes equal NumPy's for the same array.
pub fn write(t: &Tensor) -> Vec<u8> {
    write_parts(t.shape(), t.data())
}

/// [`write`] for a shape and row-major values given apart (so a caller can write a tensor
/// under another shape of the same element count without copying it). The caller guarantees
/// that the shape's element count is `data.len()`.
pub fn write_parts(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape_repr = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_repr}, }}");
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        header.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // Magic (6) + version (2) + length (2 or 4) + header + '\n', padded to ARRAY_ALIGN.
    let build = |len_size: usize| {
        let unpadded = 6 + 2 + len_size + header.len() + 1;
        let pad = (ARRAY_ALIGN - unpadded % ARRAY_ALIGN) % ARRAY_ALIGN;
        header.len() + pad + 1
    };
    let (version, len_size, total) = {
        let v1 = build(2);
        if v1 <= u16::MAX as usize {
            (1u8, 2, v1)
        } else {
            (2u8, 4, build(4))
        }
    };
    let mut out = Vec::with_capacity(8 + len_size + total + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.push(version);
    out.push(0);
    if len_size == 2 {
        out.extend_from_slice(&(total as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(total as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + total - header.len() - 1, b' ');
    out.push(b'\n');
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F4 { big_endian: false } => "'<f4'",
        Dtype::F4 { big_endian: true } => "'>f4'",
        Dtype::F8 { big_endian: false } => "'<f8'",
        Dtype::F8 { big_endian: true } => "'>f8'",
    }
}

fn decode_header(bytes: &[u8], utf8: bool) -> Result<&str, DataError> {
    if utf8 {
        std::str::from_utf8(bytes).map_err(|e| {
            DataError::new(format!(
                "bad .npy header: format 3.0 headers must be UTF-8, found an invalid byte at \
                 offset {}",
                e.valid_up_to()
            ))
        })
    } else if let Some(pos) = bytes.iter().position(|b| !b.is_ascii()) {
        Err(DataError::new(format!(
            "bad .npy header: expected ASCII text, found byte 0x{:02x} at offset {pos}",
            bytes[pos]
        )))
    } else {
        // ASCII is valid UTF-8.
        std::str::from_utf8(bytes).map_err(|_| DataError::new("bad .npy header"))
    }
}

struct HeaderInfo {
    dtype: Dtype,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A Python literal as found in an `.npy` header.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Int(Option<u64>),
    Seq(Vec<Value>),
    Dict,
    None,
}

fn describe(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("the string '{}'", shorten(s)),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Int(Some(i)) => format!("the number {i}"),
        Value::Int(None) => "a number".into(),
        Value::Seq(_) => "a list or tuple".into(),
        Value::Dict => "a dict".into(),
        Value::None => "None".into(),
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let mut t: String = s.chars().take(40).collect();
        t.push_str("...");
        t
    } else {
        s.to_string()
    }
}

fn parse_header(text: &str) -> Result<HeaderInfo, DataError> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    if !p.eat(b'{') {
        return Err(p.err("expected the header to be a Python dict starting with '{'"));
    }
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = match p.value(0)? {
            Value::Str(k) => k,
            other => {
                return Err(p.err(&format!(
                    "expected a quoted key, found {}",
                    describe(&other)
                )));
            }
        };
        p.skip_ws();
        if !p.eat(b':') {
            return Err(p.err("expected ':' after a key"));
        }
        let value = p.value(0)?;
        let slot = match key.as_str() {
            "descr" => &mut descr,
            "fortran_order" => &mut fortran,
            "shape" => &mut shape,
            _ => {
                return Err(DataError::new(format!(
                    "bad .npy header: expected only the keys 'descr', 'fortran_order' and \
                     'shape', found '{}'",
                    shorten(&key)
                )));
            }
        };
        if slot.is_some() {
            return Err(DataError::new(format!(
                "bad .npy header: the key '{key}' appears twice"
            )));
        }
        *slot = Some(value);
        p.skip_ws();
        if p.eat(b',') {
            continue;
        }
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        return Err(p.err("expected ',' or '}' after a value"));
    }
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the header dict"));
    }
    let missing = |k: &str| DataError::new(format!("bad .npy header: the key '{k}' is missing"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;

    let dtype = match &descr {
        Value::Str(s) => match s.as_str() {
            "<f4" => Dtype::F4 { big_endian: false },
            ">f4" => Dtype::F4 { big_endian: true },
            "<f8" => Dtype::F8 { big_endian: false },
            ">f8" => Dtype::F8 { big_endian: true },
            other => {
                return Err(DataError::new(format!(
                    "expected dtype float32 or float64 (<f4, >f4, <f8, >f8), found '{}'{}",
                    shorten(other),
                    dtype_hint(other)
                )));
            }
        },
        Value::Seq(_) => {
            return Err(DataError::new(
                "expected dtype float32 or float64 (<f4, >f4, <f8, >f8), found a structured dtype",
            ));
        }
        other => {
            return Err(DataError::new(format!(
                "bad .npy header: expected 'descr' to be a dtype string such as '<f4', found {}",
                describe(other)
            )));
        }
    };
    let fortran_order = match fortran {
        Value::Bool(b) => b,
        other => {
            return Err(DataError::new(format!(
                "bad .npy header: expected 'fortran_order' to be True or False, found {}",
                describe(&other)
            )));
        }
    };
    let shape = match shape {
        Value::Seq(items) => {
            let mut dims = Vec::with_capacity(items.len());
            for item in &items {
                match item {
                    Value::Int(Some(d)) => match usize::try_from(*d) {
                        Ok(d) => dims.push(d),
                        Err(_) => {
                            return Err(DataError::new(format!(
                                "bad .npy header: the dimension {d} is too large"
                            )));
                        }
                    },
                    Value::Int(None) => {
                        return Err(DataError::new(
                            "bad .npy header: a dimension of 'shape' is too large",
                        ));
                    }
                    other => {
                        return Err(DataError::new(format!(
                            "bad .npy header: expected 'shape' to hold non-negative integers, \
                             found {}",
                            describe(other)
                        )));
                    }
                }
            }
            dims
        }
        other => {
            return Err(DataError::new(format!(
                "bad .npy header: expected 'shape' to be a tuple of integers, found {}",
                describe(&other)
            )));
        }
    };
    Ok(HeaderInfo {
        dtype,
        fortran_order,
        shape,
    })
}

/// A hint naming the dtype in words, for the common ones.
fn dtype_hint(descr: &str) -> &'static str {
    let body = descr.trim_start_matches(['<', '>', '=', '|']);
    match body {
        "f2" => " (float16: convert it with .astype(np.float32))",
        "f4" | "f8" => " (byte order must be '<' or '>'; NumPy writes these itself)",
        "i1" | "i2" | "i4" | "i8" | "u1" | "u2" | "u4" | "u8" => {
            " (an integer dtype: convert it with .astype(np.float32))"
        }
        "b1" => " (a boolean dtype: convert it with .astype(np.float32))",
        _ => "",
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> DataError {
        DataError::new(format!(
            "bad .npy header: {what} (at character {} of the header)",
            self.pos + 1
        ))
    }
    fn skip_ws(&mut self) {
        while let Some(c) = self.s.get(self.pos) {
            if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.s[self.pos..].starts_with(w.as_bytes()) {
            let end = self.pos + w.len();
            let boundary = self
                .s
                .get(end)
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
            if boundary {
                self.pos = end;
                return true;
            }
        }
        false
    }
    fn value(&mut self, depth: usize) -> Result<Value, DataError> {
        if depth > MAX_DEPTH {
            return Err(self.err("values are nested too deeply"));
        }
        self.skip_ws();
        match self.s.get(self.pos) {
            None => Err(self.err("the header ends where a value was expected")),
            Some(b'\'' | b'"') => self.string(),
            Some(b'(' | b'[') => self.seq(depth),
            Some(b'{') => {
                // Only the top level may be a dict; a nested one is skipped for the message.
                self.pos += 1;
                loop {
                    self.skip_ws();
                    if self.eat(b'}') {
                        return Ok(Value::Dict);
                    }
                    self.value(depth + 1)?;
                    self.skip_ws();
                    if !(self.eat(b':') || self.eat(b',')) && self.s.get(self.pos) != Some(&b'}') {
                        return Err(self.err("expected ':', ',' or '}' inside a dict"));
                    }
                }
            }
            Some(c) if c.is_ascii_digit() => Ok(self.int()),
            Some(b'-') => Err(self.err("expected a non-negative integer, found '-'")),
            Some(_) => {
                if self.eat_word("True") {
                    Ok(Value::Bool(true))
                } else if self.eat_word("False") {
                    Ok(Value::Bool(false))
                } else if self.eat_word("None") {
                    Ok(Value::None)
                } else {
                    Err(self.err("expected a string, number, tuple, True or False"))
                }
            }
        }
    }
    fn string(&mut self) -> Result<Value, DataError> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let start = self.pos;
        while let Some(&c) = self.s.get(self.pos) {
            if c == quote {
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                return Ok(Value::Str(text));
            }
            if c == b'\\' {
                return Err(self.err("escapes in header strings are not supported"));
            }
            self.pos += 1;
        }
        Err(self.err("a string is not closed"))
    }
    fn int(&mut self) -> Value {
        let mut v: Option<u64> = Some(0);
        while let Some(&c) = self.s.get(self.pos) {
            if c.is_ascii_digit() {
                v = v
                    .and_then(|v| v.checked_mul(10))
                    .and_then(|v| v.checked_add(u64::from(c - b'0')));
                self.pos += 1;
            } else {
                break;
            }
        }
        // Python 2 long suffix, written by old NumPy versions.
        if matches!(self.s.get(self.pos), Some(b'L' | b'l')) {
            self.pos += 1;
        }
        Value::Int(v)
    }
    fn seq(&mut self, depth: usize) -> Result<Value, DataError> {
        let close = if self.s[self.pos] == b'(' { b')' } else { b']' };
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(close) {
                return Ok(Value::Seq(items));
            }
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat(b',') {
                continue;
            }
            if self.eat(close) {
                return Ok(Value::Seq(items));
            }
            return Err(self.err("expected ',' or the end of a tuple"));
        }
    }
}

/// Reorders values stored in Fortran (column-major) order into C (row-major) order.
fn fortran_to_c(shape: &[usize], src: &[f32]) -> Vec<f32> {
    let n = src.len();
    let rank = shape.len();
    if n == 0 {
        return Vec::new();
    }
    // Column-major strides of the source.
    let mut strides = vec![0usize; rank];
    let mut acc = 1usize;
    for (k, &d) in shape.iter().enumerate() {
        strides[k] = acc;
        acc *= d;
    }
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..n {
        out.push(src[offset]);
        // Advance the row-major multi-index (last axis fastest), updating the source offset.
        for k in (0..rank).rev() {
            index[k] += 1;
            offset += strides[k];
            if index[k] < shape[k] {
                break;
            }
            offset -= strides[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_reorder_2d() {
        // A 2x3 array [[0,1,2],[3,4,5]] stored column-major is 0,3,1,4,2,5.
        let c = fortran_to_c(&[2, 3], &[0., 3., 1., 4., 2., 5.]);
        assert_eq!(c, vec![0., 1., 2., 3., 4., 5.]);
    }

    #[test]
    fn parses_numpy_header() {
        let h = parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }    ")
            .unwrap();
        assert_eq!(h.shape, vec![2, 3]);
        assert!(!h.fortran_order);
        assert_eq!(h.dtype, Dtype::F4 { big_endian: false });
    }

    #[test]
    fn parses_legacy_long_suffix() {
        let h = parse_header("{'descr': '>f8', 'fortran_order': True, 'shape': (2L, 3L)}").unwrap();
        assert_eq!(h.shape, vec![2, 3]);
        assert!(h.fortran_order);
    }
}
