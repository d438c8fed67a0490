//! PNG reading (every colour type, bit depth, palette, interlacing), writing and the channel grid.

mod common;

use common::{fixture, png_chunk};
use convc_tensor::{Tensor, image};
use png::{BitDepth, ColorType};

// ------------------------------------------------------------------ helpers

/// Reads `bytes` and checks that `png_shape` (headers only) gives the shape the full read does.
fn read_and_probe(bytes: &[u8]) -> Tensor {
    let t = image::read_png(bytes).unwrap();
    let probed = image::png_shape(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(&probed[..], t.shape(), "png_shape disagrees with read_png");
    t
}

fn err(bytes: &[u8]) -> String {
    match image::read_png(bytes) {
        Ok(t) => panic!("expected an error, read shape {:?}", t.shape()),
        Err(e) => e.message,
    }
}

/// The direct-colour sample formula of make_fixtures.py.
fn sample(c: usize, y: usize, x: usize, bits: u8) -> u32 {
    if bits == 16 {
        ((x * 7919 + y * 104_729 + c * 15_485_863 + 12345) % 65536) as u32
    } else {
        ((x * 7 + y * 13 + c * 29 + 3) % (1 << bits)) as u32
    }
}

/// The palette formula of make_fixtures.py: entry i is (r, g, b), its tRNS alpha another formula.
fn palette(n: usize) -> Vec<[u8; 3]> {
    (0..n)
        .map(|i| {
            [
                ((i * 37 + 11) % 256) as u8,
                ((i * 73 + 5) % 256) as u8,
                ((i * 151 + 200) % 256) as u8,
            ]
        })
        .collect()
}

fn palette_alpha(i: usize) -> u8 {
    ((i * 97 + 13) % 256) as u8
}

fn palette_index(y: usize, x: usize, n: usize) -> usize {
    (x * 3 + y * 5) % n
}

/// The expected tensor of a direct-colour image following `sample`.
fn expected_direct(c: usize, h: usize, w: usize, bits: u8) -> Vec<f32> {
    let max = ((1u32 << bits) - 1) as f32;
    let mut out = Vec::new();
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                out.push(sample(ch, y, x, bits) as f32 / max);
            }
        }
    }
    out
}

/// The expected tensor of a palette image following `palette_index`, RGB or RGBA.
fn expected_palette(n: usize, trns_len: Option<usize>, h: usize, w: usize) -> Vec<f32> {
    let pal = palette(n);
    let c = if trns_len.is_some() { 4 } else { 3 };
    let mut out = vec![0.0; c * h * w];
    for y in 0..h {
        for x in 0..w {
            let i = palette_index(y, x, n);
            for ch in 0..3 {
                out[ch * h * w + y * w + x] = f32::from(pal[i][ch]) / 255.0;
            }
            if let Some(len) = trns_len {
                let a = if i < len { palette_alpha(i) } else { 255 };
                out[3 * h * w + y * w + x] = f32::from(a) / 255.0;
            }
        }
    }
    out
}

/// Packs one row of samples the PNG way (most significant bits first; 16-bit big-endian).
fn pack_row(samples: &[u32], bits: u8) -> Vec<u8> {
    match bits {
        16 => samples
            .iter()
            .flat_map(|&s| (s as u16).to_be_bytes())
            .collect(),
        8 => samples.iter().map(|&s| s as u8).collect(),
        _ => {
            let b = bits as usize;
            let mut row = vec![0u8; (samples.len() * b).div_ceil(8)];
            for (i, &s) in samples.iter().enumerate() {
                let bit = i * b;
                row[bit / 8] |= (s as u8) << (8 - b - bit % 8);
            }
            row
        }
    }
}

fn depth(bits: u8) -> BitDepth {
    match bits {
        1 => BitDepth::One,
        2 => BitDepth::Two,
        4 => BitDepth::Four,
        8 => BitDepth::Eight,
        _ => BitDepth::Sixteen,
    }
}

/// Encodes with the png crate: `pixel(y, x)` gives the samples of one pixel.
fn encode(
    w: usize,
    h: usize,
    color: ColorType,
    bits: u8,
    pixel: impl Fn(usize, usize) -> Vec<u32>,
    plte: Option<Vec<u8>>,
    trns: Option<Vec<u8>>,
) -> Vec<u8> {
    let mut data = Vec::new();
    for y in 0..h {
        let samples: Vec<u32> = (0..w).flat_map(|x| pixel(y, x)).collect();
        data.extend(pack_row(&samples, bits));
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(depth(bits));
        if let Some(p) = plte {
            enc.set_palette(p);
        }
        if let Some(t) = trns {
            enc.set_trns(t);
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&data).unwrap();
        wr.finish().unwrap();
    }
    out
}

fn encode_direct(w: usize, h: usize, color: ColorType, bits: u8) -> Vec<u8> {
    let c = color.samples();
    encode(
        w,
        h,
        color,
        bits,
        |y, x| (0..c).map(|ch| sample(ch, y, x, bits)).collect(),
        None,
        None,
    )
}

fn encode_palette(w: usize, h: usize, n: usize, bits: u8, trns_len: Option<usize>) -> Vec<u8> {
    let plte: Vec<u8> = palette(n).into_iter().flatten().collect();
    let trns = trns_len.map(|len| (0..len).map(palette_alpha).collect());
    encode(
        w,
        h,
        ColorType::Indexed,
        bits,
        |y, x| vec![palette_index(y, x, n) as u32],
        Some(plte),
        trns,
    )
}

fn check(t: &Tensor, c: usize, h: usize, w: usize, expected: &[f32], what: &str) {
    assert_eq!(t.shape(), &[c, h, w], "{what}");
    assert_eq!(t.data(), expected, "{what}");
}

// ------------------------------------------------------------------ reading

#[test]
fn every_direct_colour_type_and_depth() {
    let cases: [(ColorType, &[u8]); 4] = [
        (ColorType::Grayscale, &[1, 2, 4, 8, 16]),
        (ColorType::GrayscaleAlpha, &[8, 16]),
        (ColorType::Rgb, &[8, 16]),
        (ColorType::Rgba, &[8, 16]),
    ];
    for (color, depths) in cases {
        for &bits in depths {
            let c = color.samples();
            // Odd sizes so rows of packed samples end mid-byte.
            let (w, h) = (11, 5);
            let t = read_and_probe(&encode_direct(w, h, color, bits));
            check(
                &t,
                c,
                h,
                w,
                &expected_direct(c, h, w, bits),
                &format!("{color:?} {bits}-bit"),
            );
        }
    }
}

#[test]
fn sub_byte_gray_is_exactly_v_over_max() {
    // Every value of every sub-byte depth, in a row wider than a byte.
    for bits in [1u8, 2, 4] {
        let levels = 1usize << bits;
        let w = levels * 3;
        let bytes = encode(
            w,
            1,
            ColorType::Grayscale,
            bits,
            |_, x| vec![(x % levels) as u32],
            None,
            None,
        );
        let t = image::read_png(&bytes).unwrap();
        for (x, &v) in t.data().iter().enumerate() {
            let want = (x % levels) as f32 / (levels - 1) as f32;
            assert_eq!(v, want, "{bits}-bit value {}", x % levels);
        }
        assert_eq!(t.data()[levels - 1], 1.0);
    }
}

#[test]
fn png_crate_expand_scales_sub_byte_gray_exactly() {
    // The reader unpacks gray samples itself (EXPAND would turn a gray tRNS into an alpha
    // channel); this pins that the png crate's EXPAND scaling agrees: v * 255 / (2^bits - 1).
    for bits in [1u8, 2, 4] {
        let levels = 1usize << bits;
        let bytes = encode(
            levels,
            1,
            ColorType::Grayscale,
            bits,
            |_, x| vec![x as u32],
            None,
            None,
        );
        let mut dec = png::Decoder::new(std::io::Cursor::new(&bytes));
        dec.set_transformations(png::Transformations::EXPAND);
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).unwrap();
        let ours = image::read_png(&bytes).unwrap();
        for (v, &byte) in buf[..levels].iter().enumerate() {
            assert_eq!(usize::from(byte), v * 255 / (levels - 1), "{bits}-bit {v}");
            assert_eq!(f32::from(byte) / 255.0, ours.data()[v], "{bits}-bit {v}");
        }
    }
}

#[test]
fn gray_with_trns_stays_one_channel() {
    let bytes = encode(
        3,
        1,
        ColorType::Grayscale,
        8,
        |_, x| vec![x as u32 * 100],
        None,
        Some(vec![0, 100]),
    );
    let t = image::read_png(&bytes).unwrap();
    check(
        &t,
        1,
        1,
        3,
        &[0.0, 100.0 / 255.0, 200.0 / 255.0],
        "gray + tRNS",
    );
    let bytes = encode(
        2,
        1,
        ColorType::Rgb,
        8,
        |_, x| vec![x as u32, 1, 2],
        None,
        Some(vec![0, 0, 0, 1, 0, 2]),
    );
    assert_eq!(image::read_png(&bytes).unwrap().shape(), &[3, 1, 2]);
}

#[test]
fn palette_every_depth_with_and_without_trns() {
    for bits in [1u8, 2, 4, 8] {
        let n = (1usize << bits).min(200);
        let (w, h) = (9, 4);
        let t = read_and_probe(&encode_palette(w, h, n, bits, None));
        check(
            &t,
            3,
            h,
            w,
            &expected_palette(n, None, h, w),
            &format!("palette {bits}-bit"),
        );
        // tRNS shorter than the palette: the remaining entries are opaque.
        let len = n.div_ceil(2);
        let t = read_and_probe(&encode_palette(w, h, n, bits, Some(len)));
        check(
            &t,
            4,
            h,
            w,
            &expected_palette(n, Some(len), h, w),
            &format!("palette+tRNS {bits}"),
        );
    }
}

#[test]
fn fixtures_written_by_python_including_interlaced() {
    let direct: [(&str, usize, usize, usize, u8); 8] = [
        ("gray1_adam7_9x7.png", 1, 7, 9, 1),
        ("gray2_plain_5x3.png", 1, 3, 5, 2),
        ("gray4_adam7_9x7.png", 1, 7, 9, 4),
        ("gray16_adam7_6x5.png", 1, 5, 6, 16),
        ("graya8_adam7_7x5.png", 2, 5, 7, 8),
        ("rgb8_adam7_7x5.png", 3, 5, 7, 8),
        ("rgb8_plain_7x5.png", 3, 5, 7, 8),
        ("rgba16_plain_5x4.png", 4, 4, 5, 16),
    ];
    for (name, c, h, w, bits) in direct {
        let t = read_and_probe(&fixture(name));
        check(&t, c, h, w, &expected_direct(c, h, w, bits), name);
    }
    let t = read_and_probe(&fixture("palette4_trns_adam7_9x7.png"));
    check(
        &t,
        4,
        7,
        9,
        &expected_palette(13, Some(12), 7, 9),
        "palette4_trns_adam7",
    );
    let t = read_and_probe(&fixture("palette2_plain_5x3.png"));
    check(
        &t,
        3,
        3,
        5,
        &expected_palette(4, None, 3, 5),
        "palette2_plain",
    );
    // The interlaced and plain RGB files hold the same image.
    assert_eq!(
        image::read_png(&fixture("rgb8_adam7_7x5.png")).unwrap(),
        image::read_png(&fixture("rgb8_plain_7x5.png")).unwrap()
    );
}

/// A PNG with the given IHDR fields and raw IDAT payload.
fn handmade(w: u32, h: u32, bits: u8, color: u8, idat: &[u8]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[bits, color, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    out.extend(png_chunk(b"IDAT", idat));
    out.extend(png_chunk(b"IEND", b""));
    out
}

#[test]
fn huge_dimensions_are_refused_before_allocating() {
    let m = err(&handmade(
        100_000,
        100_000,
        8,
        2,
        b"\x78\x9c\x03\x00\x00\x00\x00\x01",
    ));
    assert!(
        m.contains(
            "100000x100000 pixels with 3 channels: reading it would need 120000000000 bytes"
        ),
        "{m}"
    );
    assert!(
        m.contains("111.8 GiB") && m.contains("limit of 1073741824 bytes"),
        "{m}"
    );
    let m = err(&handmade(0x7FFF_FFFF, 0x7FFF_FFFF, 16, 6, b""));
    assert!(m.contains("would need"), "{m}");
    let m = err(&handmade(100_000, 100_000, 4, 3, b""));
    assert!(m.contains("up to 4 channels"), "{m}");
}

#[test]
fn claimed_size_beyond_the_compressed_data_is_refused() {
    // 8000x8000 gray fits the limit, but 8 bytes of deflate cannot hold 64 MB.
    let m = err(&handmade(
        8000,
        8000,
        8,
        0,
        b"\x78\x9c\x03\x00\x00\x00\x00\x01",
    ));
    assert!(
        m.contains("truncated or corrupt PNG") && m.contains("64000000 bytes"),
        "{m}"
    );
}

#[test]
fn a_highly_compressible_large_image_still_reads() {
    // 2000x1000 black RGB compresses about 1000:1 and must not trip the compressed-size check.
    let bytes = encode(
        2000,
        1000,
        ColorType::Rgb,
        8,
        |_, _| vec![0, 0, 0],
        None,
        None,
    );
    assert!(bytes.len() < 20_000, "{}", bytes.len());
    let t = image::read_png(&bytes).unwrap();
    assert_eq!(t.shape(), &[3, 1000, 2000]);
    assert!(t.data().iter().all(|&v| v == 0.0));
}

#[test]
fn not_a_png_truncated_and_corrupt() {
    for bytes in [
        &b""[..],
        b"\x93NUMPY\x01\x00",
        b"GIF89a......",
        b"\x89PNG\r\n\x1a",
    ] {
        assert!(err(bytes).contains("not a PNG file"));
    }
    let bytes = encode_direct(13, 9, ColorType::Rgba, 16);
    // Any cut before the end of the image data is an error.
    let idat_end = bytes.len() - 12; // IEND is the last 12 bytes
    for len in 0..idat_end {
        assert!(image::read_png(&bytes[..len]).is_err(), "cut at {len}");
    }
    // A flipped byte inside IDAT fails its CRC.
    let mut bad = bytes.clone();
    bad[idat_end - 6] ^= 0x55;
    assert!(err(&bad).contains("corrupt or unreadable PNG"));
    // Bad IHDR values.
    assert!(image::read_png(&handmade(4, 4, 3, 0, b"")).is_err());
    assert!(image::read_png(&handmade(4, 4, 16, 3, b"")).is_err());
    assert!(image::read_png(&handmade(0, 4, 8, 0, b"")).is_err());
}

// ------------------------------------------------------------------ writing

#[test]
fn write_gray_and_rgb_round_trip() {
    let values: Vec<f32> = (0..12).map(|i| i as f32 / 11.0).collect();
    let t = Tensor::new(vec![1, 3, 4], values.clone()).unwrap();
    let back = image::read_png(&image::write_png(&t).unwrap()).unwrap();
    assert_eq!(back.shape(), &[1, 3, 4]);
    for (a, b) in values.iter().zip(back.data()) {
        assert_eq!(*b, (a * 255.0).round() / 255.0);
    }

    let rgb: Vec<f32> = (0..30).map(|i| (i * 8) as f32 / 255.0).collect();
    let t = Tensor::new(vec![3, 2, 5], rgb.clone()).unwrap();
    let back = image::read_png(&image::write_png(&t).unwrap()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn write_clamps_rounds_and_zeroes_nan() {
    let t = Tensor::new(
        vec![1, 1, 7],
        vec![
            -3.0,
            2.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.5,
            1.0 / 510.0,
        ],
    )
    .unwrap();
    let back = image::read_png(&image::write_png(&t).unwrap()).unwrap();
    let bytes: Vec<u8> = back
        .data()
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    assert_eq!(bytes, vec![0, 255, 0, 255, 0, 128, 1]);
}

#[test]
fn write_refuses_other_shapes() {
    for shape in [
        vec![2, 3, 3],
        vec![4, 3, 3],
        vec![3, 3],
        vec![1, 0, 3],
        vec![1, 1, 1, 1],
    ] {
        let t = Tensor::zeros(shape.clone());
        assert!(image::write_png(&t).is_err(), "{shape:?}");
    }
    let m = image::write_png(&Tensor::zeros(vec![2, 3, 3]))
        .unwrap_err()
        .message;
    assert_eq!(
        m,
        "expected a [1, H, W] or [3, H, W] tensor to write as an image, found [2, 3, 3]"
    );
}

// ------------------------------------------------------------------ channel grid

/// The pixel at (x, y) of a decoded RGB grid.
fn px(t: &Tensor, x: usize, y: usize) -> [u8; 3] {
    let (h, w) = (t.shape()[1], t.shape()[2]);
    let at = |c: usize| (t.data()[c * h * w + y * w + x] * 255.0).round() as u8;
    [at(0), at(1), at(2)]
}

#[test]
fn grid_layout_scale_normalisation_and_labels() {
    // 8 channels of 4x4: 3 columns, 3 rows, maps scaled x16 to 64x64 tiles.
    let (c, h, w) = (8, 4, 4);
    let mut data = Vec::new();
    for ch in 0..c {
        for i in 0..h * w {
            data.push(match ch {
                3 => 7.0,                                // constant: mid gray
                5 if i == 0 => f32::NAN,                 // NaN: black
                _ => (ch as f32 + 1.0) * i as f32 - 3.0, // a ramp: 0 .. 255
            });
        }
    }
    let t = Tensor::new(vec![c, h, w], data).unwrap();
    let grid = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    // Width: 2 + 3 * (64 + 2); height: 2 + 3 * (14 label + 64 + 2).
    assert_eq!(grid.shape(), &[3, 242, 200]);
    let tile = |ch: usize| (2 + (ch % 3) * 66, 2 + (ch / 3) * 80 + 14);
    let (x0, y0) = tile(0);
    assert_eq!(px(&grid, x0, y0), [0, 0, 0]); // channel 0 minimum
    assert_eq!(px(&grid, x0 + 63, y0 + 63), [255, 255, 255]); // its maximum
    assert_eq!(px(&grid, x0 + 15, y0 + 15), [0, 0, 0]); // the same source pixel, scaled
    assert_eq!(px(&grid, x0 + 16, y0), [17, 17, 17]); // the next one: 1/15 of the range
    let (x3, y3) = tile(3);
    assert_eq!(px(&grid, x3 + 30, y3 + 30), [128, 128, 128]);
    let (x5, y5) = tile(5);
    assert_eq!(px(&grid, x5, y5), [0, 0, 0]);
    assert_eq!(px(&grid, x5 + 63, y5 + 63), [255, 255, 255]);
    // Separators and background are dark blue-gray, not a map value.
    assert_eq!(px(&grid, 0, 0), [40, 44, 52]);
    assert_eq!(px(&grid, x0 + 64, y0 + 10), [40, 44, 52]);
    // Labels: channel 7's "7" has a full top bar of 3 cells; "1" does not start at its left edge.
    let label = |ch: usize| (2 + (ch % 3) * 66 + 2, 2 + (ch / 3) * 80 + 2);
    let (lx, ly) = label(7);
    let yellow = [255, 214, 0];
    for x in 0..6 {
        assert_eq!(px(&grid, lx + x, ly), yellow, "7 top bar at {x}");
    }
    let (lx, ly) = label(1);
    assert_eq!(px(&grid, lx, ly), [40, 44, 52]);
    assert_eq!(px(&grid, lx + 2, ly), yellow);
}

#[test]
fn grid_handles_large_and_odd_shapes() {
    // A map larger than the minimum tile is not scaled; many channels get multi-digit labels.
    let t = Tensor::new(vec![1, 100, 70], (0..7000).map(|i| i as f32).collect()).unwrap();
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    assert_eq!(g.shape(), &[3, 2 + 14 + 100 + 2, 2 + 70 + 2]);

    let t = Tensor::zeros(vec![130, 1, 1]);
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    // 12 columns, 11 rows of 64x64 tiles (1x1 maps scaled x64).
    assert_eq!(g.shape(), &[3, 2 + 11 * (14 + 64 + 2), 2 + 12 * 66]);

    // A tall thin map: the cell is as wide as its label.
    let t = Tensor::zeros(vec![200, 80, 1]);
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    assert_eq!(g.shape()[2], 2 + 15 * (4 + 3 * 6 + 2 * 2 + 2));

    for shape in [vec![0, 4, 4], vec![2, 0, 4], vec![4, 4], vec![1, 1, 1, 1]] {
        assert!(
            image::channel_grid_png(&Tensor::zeros(shape.clone())).is_err(),
            "{shape:?}"
        );
    }
}

#[test]
fn grid_stays_reasonable_in_size() {
    // Too wide at scale 1: every 2nd pixel is drawn.
    let t = Tensor::new(
        vec![1, 1, 1 << 20],
        (0..1 << 20).map(|i| i as f32).collect(),
    )
    .unwrap();
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    assert_eq!(g.shape(), &[3, 2 + 14 + 1 + 2, 2 + (1 << 19) + 2]);
    // Tile x 2^18 shows map x 2^19: (2^19) / (2^20 - 1) of the range, i.e. gray 128.
    assert_eq!(px(&g, 2 + (1 << 18), 16), [128, 128, 128]);

    // Nine 1400x1400 maps: 3x3 tiles of 700x700 after sampling every 2nd pixel.
    let t = Tensor::zeros(vec![9, 1400, 1400]);
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    assert_eq!(g.shape(), &[3, 2 + 3 * (14 + 700 + 2), 2 + 3 * (700 + 2)]);

    // Many 1x1 maps: the up-scale shrinks until the grid fits.
    let t = Tensor::zeros(vec![4096, 1, 1]);
    let g = image::read_png(&image::channel_grid_png(&t).unwrap()).unwrap();
    assert!(g.shape()[1] * g.shape()[2] <= 1 << 24, "{:?}", g.shape());

    // Far too many channels for any scale: refused, not drawn.
    let t = Tensor::zeros(vec![1 << 16, 1, 1]);
    let m = image::channel_grid_png(&t).unwrap_err().message;
    assert!(m.contains("too many channels to draw"), "{m}");
}
