//! `.npy` reading and writing, against NumPy-made fixtures and hand-made bad files.

mod common;

use common::{f32_bytes, fixture, npy_bytes};
use convc_tensor::{Tensor, npy};

const A23: [f32; 6] = [0.5, -1.25, 3.0, 1024.0, -0.0078125, 7.75];
const B23: [f64; 6] = [0.1, 1.0 / 3.0, -2.0 / 7.0, 1e-3, 123456.789, -1e30];

/// Reads a fixture, checking that `header_shape` on its header alone gives the same shape and
/// the file's exact length.
fn read_fixture(name: &str) -> Tensor {
    let bytes = fixture(name);
    let t = npy::read(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (shape, total) =
        npy::header_shape(&bytes[..bytes.len().min(128)]).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(shape, t.shape(), "{name}: header_shape");
    assert_eq!(
        total,
        bytes.len() as u64,
        "{name}: data length from the header"
    );
    t
}

fn err(bytes: &[u8]) -> String {
    // A header error is the same whether found from the header alone or in a full read.
    if let Err(h) = npy::header_shape(bytes) {
        assert_eq!(
            Some(&h.message),
            npy::read(bytes).err().map(|e| e.message).as_ref()
        );
    }
    match npy::read(bytes) {
        Ok(t) => panic!("expected an error, read shape {:?}", t.shape()),
        Err(e) => e.message,
    }
}

#[test]
fn float32_both_byte_orders() {
    for name in ["f4_le_2x3.npy", "f4_be_2x3.npy"] {
        let t = read_fixture(name);
        assert_eq!(t.shape(), &[2, 3], "{name}");
        assert_eq!(t.data(), &A23, "{name}");
    }
}

#[test]
fn float64_both_byte_orders_round_to_nearest_f32() {
    let expected: Vec<f32> = B23.iter().map(|&v| v as f32).collect();
    for name in ["f8_le_2x3.npy", "f8_be_2x3.npy"] {
        let t = read_fixture(name);
        assert_eq!(t.shape(), &[2, 3], "{name}");
        assert_eq!(t.data(), expected.as_slice(), "{name}");
    }
}

#[test]
fn fortran_order_is_transposed_to_c_order() {
    let t = read_fixture("fortran_2x3_f4.npy");
    assert_eq!(t.shape(), &[2, 3]);
    assert_eq!(t.data(), &[0., 1., 2., 3., 4., 5.]);

    let t = read_fixture("fortran_2x3x2x4_f8be.npy");
    assert_eq!(t.shape(), &[2, 3, 2, 4]);
    let expected: Vec<f32> = (0..48).map(|i| i as f32).collect();
    assert_eq!(t.data(), expected.as_slice());
}

#[test]
fn fortran_order_of_one_dimension_is_plain() {
    let bytes = npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }",
        &f32_bytes(&[1., 2., 3.]),
    );
    let t = npy::read(&bytes).unwrap();
    assert_eq!(t.data(), &[1., 2., 3.]);
}

#[test]
fn zero_and_one_dimensional_and_empty() {
    let t = read_fixture("scalar_0d.npy");
    assert_eq!(t.shape(), &[] as &[usize]);
    assert_eq!(t.data(), &[2.5]);

    let t = read_fixture("vector_5.npy");
    assert_eq!(t.shape(), &[5]);
    assert_eq!(t.data(), &[1., 2., 3., 4., 5.]);

    let t = read_fixture("empty_0x3.npy");
    assert_eq!(t.shape(), &[0, 3]);
    assert!(t.data().is_empty());
}

#[test]
fn four_dimensional_batch() {
    let t = read_fixture("batch_2x1x2x3.npy");
    assert_eq!(t.shape(), &[2, 1, 2, 3]);
    let expected: Vec<f32> = (0..12).map(|i| 0.25 * i as f32).collect();
    assert_eq!(t.data(), expected.as_slice());
}

#[test]
fn format_versions_2_and_3() {
    let t = read_fixture("v2_2x2.npy");
    assert_eq!(t.shape(), &[2, 2]);
    assert_eq!(t.data(), &[1., 2., 3., 4.]);
    let t = read_fixture("v3_2x2.npy");
    assert_eq!(t.data(), &[5., 6., 7., 8.]);
}

#[test]
fn integer_and_float16_are_refused_with_the_dtype() {
    let m = err(&fixture("int32_2x2.npy"));
    assert!(
        m.contains("expected dtype float32 or float64 (<f4, >f4, <f8, >f8), found '<i4'"),
        "{m}"
    );
    assert!(m.contains("astype(np.float32)"), "{m}");
    let m = err(&fixture("float16_2x2.npy"));
    assert!(m.contains("found '<f2'") && m.contains("float16"), "{m}");
}

#[test]
fn native_and_unordered_float_codes_are_refused() {
    for code in ["=f4", "|f4", "f4", "<c8", "<U3", "O"] {
        let header = format!("{{'descr': '{code}', 'fortran_order': False, 'shape': (1,), }}");
        let m = err(&npy_bytes(1, &header, &[0; 4]));
        assert!(m.contains(&format!("found '{code}'")), "{m}");
    }
}

#[test]
fn structured_dtype_is_refused() {
    let header = "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (1,), }";
    let m = err(&npy_bytes(1, header, &[0; 8]));
    assert!(m.contains("structured dtype"), "{m}");
}

#[test]
fn write_matches_numpy_byte_for_byte() {
    for name in [
        "f4_le_2x3.npy",
        "scalar_0d.npy",
        "vector_5.npy",
        "empty_0x3.npy",
        "batch_2x1x2x3.npy",
    ] {
        let bytes = fixture(name);
        let t = npy::read(&bytes).unwrap();
        assert_eq!(npy::write(&t), bytes, "{name}");
    }
}

#[test]
fn write_then_read_round_trips_and_aligns_to_64() {
    let shapes: [&[usize]; 5] = [
        &[],
        &[7],
        &[3, 1, 4],
        &[123_456_789_012, 0],
        &[2, 3, 4, 5, 6],
    ];
    for shape in shapes {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|i| i as f32 * -0.5 + 0.125).collect();
        let t = Tensor::new(shape.to_vec(), data).unwrap();
        let bytes = npy::write(&t);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "{shape:?}");
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(npy::read(&bytes).unwrap(), t, "{shape:?}");
    }
}

#[test]
fn write_keeps_nan_and_infinity() {
    let t = Tensor::new(vec![3], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY]).unwrap();
    let back = npy::read(&npy::write(&t)).unwrap();
    assert!(back.data()[0].is_nan());
    assert_eq!(&back.data()[1..], &[f32::INFINITY, f32::NEG_INFINITY]);
}

#[test]
fn not_an_npy_file() {
    for bytes in [&b""[..], b"hello world", b"\x89PNG\r\n\x1a\n", b"\x93NUMP"] {
        let m = err(bytes);
        assert!(m.contains("not a NumPy .npy file"), "{m}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for name in [
        "f4_le_2x3.npy",
        "v2_2x2.npy",
        "fortran_2x3x2x4_f8be.npy",
        "scalar_0d.npy",
    ] {
        let bytes = fixture(name);
        for len in 0..bytes.len() {
            assert!(npy::read(&bytes[..len]).is_err(), "{name} cut at {len}");
        }
    }
    let m = err(&fixture("f4_le_2x3.npy")[..140]);
    assert!(
        m.contains("truncated") && m.contains("needs 24 bytes of data, found 12"),
        "{m}"
    );
}

#[test]
fn header_shape_lies() {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    // Less data than the shape says.
    let m = err(&npy_bytes(1, header, &f32_bytes(&[1.0; 5])));
    assert!(m.contains("needs 24 bytes of data, found 20"), "{m}");
    // More data than the shape says.
    let m = err(&npy_bytes(1, header, &f32_bytes(&[1.0; 7])));
    assert!(m.contains("needs 24 bytes of data, found 28"), "{m}");
}

#[test]
fn huge_shapes_are_refused_without_allocating() {
    // Overflows usize.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
    let m = err(&npy_bytes(1, header, &[0; 16]));
    assert!(m.contains("too large"), "{m}");
    // Element count fits but the byte count overflows.
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }";
    let m = err(&npy_bytes(1, header, &[0; 16]));
    assert!(m.contains("too large"), "{m}");
    // Fits in memory arithmetic but the data is not there: refused before allocating 4 TB.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }";
    let m = err(&npy_bytes(1, header, &[0; 16]));
    assert!(
        m.contains("needs 4398046511104 bytes of data, found 16"),
        "{m}"
    );
    // Larger than u64.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }";
    let m = err(&npy_bytes(1, header, &[0; 16]));
    assert!(m.contains("too large"), "{m}");
}

#[test]
fn bad_headers() {
    let cases = [
        ("", "expected the header to be a Python dict"),
        ("garbage", "expected the header to be a Python dict"),
        (
            "{'descr': '<f4', 'shape': (1,), }",
            "'fortran_order' is missing",
        ),
        (
            "{'fortran_order': False, 'shape': (1,), }",
            "'descr' is missing",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False}",
            "'shape' is missing",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "found 'x'",
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
            "twice",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
            "True or False",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': 1}",
            "tuple of integers",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "non-negative",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': ('a',)}",
            "non-negative integers",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}",
            "expected ','",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
            "expected ',' or '}'",
        ),
        (
            "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}",
            "expected ',' or '}'",
        ),
        (
            "{'descr' '<f4', 'fortran_order': False, 'shape': (1,)}",
            "expected ':'",
        ),
        (
            "{'descr': 5, 'fortran_order': False, 'shape': (1,)}",
            "dtype string",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} trailing",
            "after the header",
        ),
        (
            "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}",
            "escapes",
        ),
        (
            "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (1,)}",
            "expected a string",
        ),
    ];
    for (header, want) in cases {
        let m = err(&npy_bytes(1, header, &[0; 4]));
        assert!(m.contains(want), "header {header:?}: {m}");
        assert!(
            m.starts_with("bad .npy header") || m.contains("dtype"),
            "{m}"
        );
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}1{}}}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let m = err(&npy_bytes(2, &header, &[0; 4]));
    assert!(m.contains("nested too deeply"), "{m}");
}

#[test]
fn non_ascii_and_bad_utf8_headers() {
    let mut bytes = npy_bytes(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
        &[0; 4],
    );
    bytes[12] = 0xE9;
    let m = err(&bytes);
    assert!(
        m.contains("expected ASCII text, found byte 0xe9 at offset 2"),
        "{m}"
    );

    let mut bytes = npy_bytes(
        3,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
        &[0; 4],
    );
    bytes[14] = 0xFF;
    let m = err(&bytes);
    assert!(m.contains("must be UTF-8"), "{m}");

    // Version 3.0 allows UTF-8 text, e.g. in a (refused) dtype string.
    let header = "{'descr': '<é', 'fortran_order': False, 'shape': (1,)}";
    let m = err(&npy_bytes(3, header, &[0; 4]));
    assert!(m.contains("found '<é'"), "{m}");
}

#[test]
fn unsupported_version_and_lying_header_length() {
    let mut bytes = fixture("f4_le_2x3.npy");
    bytes[6] = 4;
    assert!(err(&bytes).contains("unsupported .npy format version 4.0"));
    bytes[6] = 1;
    bytes[7] = 1;
    assert!(err(&bytes).contains("version 1.1"));

    let mut bytes = fixture("f4_le_2x3.npy");
    bytes[8] = 0xFF;
    bytes[9] = 0xFF;
    let m = err(&bytes);
    assert!(
        m.contains("the header says it is 65535 bytes long, but only 142 bytes follow"),
        "{m}"
    );

    let mut bytes = fixture("v2_2x2.npy");
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(err(&bytes).contains("truncated"));
}

#[test]
fn python2_era_headers_are_accepted() {
    let header = "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 1L)}";
    let t = npy::read(&npy_bytes(1, header, &f32_bytes(&[1., 2.]))).unwrap();
    assert_eq!(t.shape(), &[2, 1]);
}
