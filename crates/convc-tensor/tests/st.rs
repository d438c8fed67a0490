//! safetensors reading, against fixtures from the Python safetensors package and hand-made files.

mod common;

use common::fixture;
use convc_tensor::st;
use safetensors::{Dtype, tensor::TensorView};

fn err(bytes: &[u8], name: &str) -> String {
    match st::read_tensor(bytes, name) {
        Ok(t) => panic!("expected an error, read shape {:?}", t.shape()),
        Err(e) => e.message,
    }
}

/// A safetensors file of the given tensors, made by the safetensors crate.
fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn float32() {
    let t = st::read_tensor(&fixture("mixed.safetensors"), "w_f32").unwrap();
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(t.data(), &[0.5, -1.25, 3.0, 1024.0, -0.0078125, 7.75]);
}

#[test]
fn float16_converted_exactly() {
    let t = st::read_tensor(&fixture("mixed.safetensors"), "w_f16").unwrap();
    assert_eq!(t.shape(), &[2, 2]);
    let tenth = half::f16::from_f32(0.1).to_f32();
    assert_eq!(t.data(), &[0.5, -1.5, 65504.0, tenth]);
    assert_eq!(tenth, 0.099975586);
}

#[test]
fn float64_rounded_to_nearest() {
    let t = st::read_tensor(&fixture("mixed.safetensors"), "w_f64").unwrap();
    assert_eq!(t.shape(), &[3]);
    assert_eq!(t.data(), &[0.1f64 as f32, -2.5, 1e-3f64 as f32]);
}

#[test]
fn bfloat16_written_by_hand() {
    let t = st::read_tensor(&fixture("bf16.safetensors"), "w_bf16").unwrap();
    assert_eq!(t.shape(), &[2, 2]);
    // The fixture holds the upper 16 bits of 1.5, -2.0, 0.1 and 3e38 (truncated).
    let bits = [0x3fc0u16, 0xc000, 0x3dcc, 0x7f61];
    let expected: Vec<f32> = bits
        .iter()
        .map(|&b| f32::from_bits(u32::from(b) << 16))
        .collect();
    assert_eq!(t.data(), expected.as_slice());
    assert_eq!(&t.data()[..2], &[1.5, -2.0]);
    assert_eq!(t.data()[2], 0.099609375);
}

#[test]
fn other_dtypes_are_refused_naming_the_dtype() {
    let m = err(&fixture("mixed.safetensors"), "w_i32");
    assert_eq!(
        m,
        "tensor 'w_i32' has dtype I32: expected F32, F16, BF16 or F64"
    );
    let bytes = file(&[
        ("b", Dtype::BOOL, vec![2], vec![0, 1]),
        ("u", Dtype::U8, vec![1], vec![7]),
    ]);
    assert!(err(&bytes, "b").contains("dtype BOOL"));
    assert!(err(&bytes, "u").contains("dtype U8"));
}

#[test]
fn missing_name_lists_the_names() {
    let m = err(&fixture("mixed.safetensors"), "conv1.weight");
    assert_eq!(
        m,
        "no tensor named 'conv1.weight': the file holds 4 tensors: 'w_f16', 'w_f32', 'w_f64', \
         'w_i32'"
    );
}

#[test]
fn missing_name_lists_at_most_ten() {
    let tensors: Vec<(String, Vec<u8>)> = (0..25)
        .map(|i| (format!("layer{i:02}.weight"), 1f32.to_le_bytes().to_vec()))
        .collect();
    let specs: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, b)| (n.as_str(), Dtype::F32, vec![1], b.clone()))
        .collect();
    let bytes = file(&specs);
    let m = err(&bytes, "nope");
    assert!(
        m.contains("holds 25 tensors: 'layer00.weight', 'layer01.weight'"),
        "{m}"
    );
    assert!(m.contains("'layer09.weight', ... (15 more)"), "{m}");
    assert!(!m.contains("layer10"), "{m}");

    let empty = file(&[]);
    assert!(err(&empty, "x").contains("holds no tensors"));
}

#[test]
fn zero_dimensional_and_empty_tensors() {
    let bytes = file(&[
        ("s", Dtype::F32, vec![], 4.5f32.to_le_bytes().to_vec()),
        ("e", Dtype::F32, vec![0, 3], vec![]),
    ]);
    let s = st::read_tensor(&bytes, "s").unwrap();
    assert_eq!((s.shape(), s.data()), (&[] as &[usize], &[4.5f32][..]));
    let e = st::read_tensor(&bytes, "e").unwrap();
    assert_eq!(e.shape(), &[0, 3]);
}

#[test]
fn not_safetensors() {
    assert!(err(b"", "x").contains("expected at least 8 bytes"));
    assert!(err(b"\x93NUMPY\x01\x00v\x00{'descr'", "x").contains("not a readable safetensors"));
    assert!(err(b"hello world, not a file", "x").contains("not a readable safetensors"));
}

#[test]
fn every_truncation_is_an_error() {
    for name in ["mixed.safetensors", "bf16.safetensors"] {
        let bytes = fixture(name);
        for len in 0..bytes.len() {
            assert!(
                st::read_tensor(&bytes[..len], "w_f32").is_err(),
                "{name} cut at {len}"
            );
        }
    }
}

/// A file with a hand-written header and data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn lying_headers() {
    let d = [0u8; 16];
    let cases = [
        // Shape says 4 floats, offsets say 2.
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
            &d[..8],
            "do not match",
        ),
        // Offsets run past the data.
        (
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            &d[..8],
            "fill the file",
        ),
        // Extra bytes after the data.
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &d[..],
            "fill the file",
        ),
        // Offsets reversed.
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            &d[..8],
            "invalid",
        ),
        // Overflowing shape.
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#,
            &d[..8],
            "too large",
        ),
        (
            r#"{"a":{"dtype":"X99","shape":[2],"data_offsets":[0,8]}}"#,
            &d[..8],
            "JSON",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            &d[..8],
            "JSON",
        ),
        (r#"not json"#, &d[..8], "JSON"),
    ];
    for (header, data, want) in cases {
        let m = err(&raw(header, data), "a");
        assert!(m.contains(want), "{header}: {m}");
        assert!(m.starts_with("not a readable safetensors file: "), "{m}");
    }
    // A header length past the end of the file, or absurdly large.
    let mut bytes = raw(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &d[..8],
    );
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    assert!(err(&bytes, "a").contains("runs past the end"));
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&bytes, "a").contains("header length"));
    // Invalid UTF-8.
    let mut bytes = raw(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &d[..8],
    );
    bytes[10] = 0xFF;
    assert!(err(&bytes, "a").contains("UTF-8"));
}
