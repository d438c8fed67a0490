//! PNG images: reading any PNG as a `[C, H, W]` tensor in [0, 1], writing 1- or 3-channel
//! tensors as images, and drawing any `[C, H, W]` tensor as a labelled grid of channel maps.
//!
//! Reading maps every sample `v` of a `bits`-deep image to `v / (2^bits - 1)`: gray is C = 1,
//! gray+alpha 2, RGB 3, RGBA 4, at 1, 2, 4, 8 or 16 bits, interlaced or not. A palette image is
//! expanded to RGB (C = 3), or RGBA (C = 4) when it has a `tRNS` chunk, with 8-bit palette
//! entries. A `tRNS` chunk of a gray or RGB image is ignored (the channel count is the color
//! type's). 16-bit samples stay 16-bit (divided by 65535). Gray samples of 1, 2 or 4 bits are
//! unpacked here rather than by the png crate's `EXPAND`, which scales them the same way
//! (`v * 255 / (2^bits - 1)`, exact) but would also turn a gray `tRNS` into an alpha channel.
//!
//! Nothing large is allocated before the header's size is checked: an image of more than
//! [`MAX_READ_VALUES`] values, or one larger than its compressed data could possibly hold, is
//! refused with a message saying how many bytes it would need.

use crate::read::human_bytes;
use crate::{DataError, Tensor, fmt_shape};
use std::io::Cursor;

/// The largest image read: `C * H * W` values (1 GiB of float32).
pub const MAX_READ_VALUES: u64 = 1 << 28;
/// The most bytes the PNG decoder may use for metadata chunks (text, ICC profiles).
const DECODER_METADATA_LIMIT: usize = 64 << 20;
/// Deflate expands one compressed byte to at most 1032 bytes; a claimed image bigger than this
/// many times its compressed data (plus slack) cannot be complete.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// Reads a PNG file (the whole file's bytes) as a `[C, H, W]` tensor of values in [0, 1].
pub fn read_png(bytes: &[u8]) -> Result<Tensor, DataError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err(DataError::new(
            "not a PNG file: expected it to start with the PNG signature \\x89PNG\\r\\n\\x1a\\n",
        ));
    }
    let limits = png::Limits {
        bytes: DECODER_METADATA_LIMIT,
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    let header = decoder.read_header_info().map_err(decode_error)?;
    let (width, height) = (header.width, header.height);
    let color = header.color_type;
    let bits = header.bit_depth as u8;
    // Samples per pixel in the file, and after reading (a palette is expanded to RGB or RGBA; the
    // exact count is known after read_info, 4 is the bound).
    // (u128: the png crate accepts sides up to 2^32 - 1, whose product times 4 overflows u64.)
    let (raw_samples, channels): (u128, u128) = match color {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 2),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 4),
        png::ColorType::Indexed => (1, 4),
    };
    let values = channels * u128::from(width) * u128::from(height);
    if values > u128::from(MAX_READ_VALUES) {
        let needed = values * 4;
        let upto = if color == png::ColorType::Indexed {
            "up to "
        } else {
            ""
        };
        return Err(DataError::new(format!(
            "the PNG is {width}x{height} pixels with {upto}{channels} channels: reading it would \
             need {needed} bytes ({}) of float32 values, more than the limit of {} bytes ({})",
            human_bytes(needed),
            MAX_READ_VALUES * 4,
            human_bytes(u128::from(MAX_READ_VALUES) * 4)
        )));
    }
    // The decoded image must come from the compressed data that is actually in the file.
    // (A lower bound: the decompressed stream also has a filter byte per row.)
    let row_bytes = (u128::from(width) * raw_samples * u128::from(bits)).div_ceil(8);
    let raw_bytes = row_bytes * u128::from(height);
    let compressed = scan_chunks(bytes, color == png::ColorType::Indexed)?;
    if raw_bytes > u128::from(compressed) * u128::from(MAX_DEFLATE_RATIO) + (1 << 16) {
        return Err(DataError::new(format!(
            "truncated or corrupt PNG: a {width}x{height} image needs about {raw_bytes} bytes of \
             pixel data, but its compressed data ({compressed} bytes) cannot hold that much"
        )));
    }
    let transform = if color == png::ColorType::Indexed {
        png::Transformations::EXPAND
    } else {
        png::Transformations::IDENTITY
    };
    decoder.set_transformations(transform);
    let mut reader = decoder.read_info().map_err(decode_error)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| DataError::new(format!("the PNG is too large: {width}x{height} pixels")))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(decode_error)?;
    let (out_color, out_depth) = (frame.color_type, frame.bit_depth as u8);
    let c = out_color.samples();
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    let max = ((1u32 << out_depth) - 1) as f32;
    let mut data = vec![0f32; c * w * h];
    let plane = w * h;
    for y in 0..h {
        let row = &buf[y * line..(y + 1) * line];
        for x in 0..w {
            for ch in 0..c {
                let s = x * c + ch; // sample index within the row
                let v: u32 = match out_depth {
                    16 => u32::from(u16::from_be_bytes([row[2 * s], row[2 * s + 1]])),
                    8 => u32::from(row[s]),
                    d => {
                        // Packed samples, most significant bits first.
                        let d = d as usize;
                        let bit = s * d;
                        let byte = row[bit / 8];
                        let shift = 8 - d - bit % 8;
                        u32::from((byte >> shift) & ((1u8 << d) - 1))
                    }
                };
                data[ch * plane + y * w + x] = v as f32 / max;
            }
        }
    }
    Tensor::new(vec![c, h, w], data)
}

/// The shape `[C, H, W]` that [`read_png`] gives a valid PNG, from the file's header and
/// the chunk headers before its image data (a palette image has 4 channels when it has a
/// `tRNS` chunk): nothing of the image data is read. A file [`read_png`] refuses may still get
/// a shape here; reading it then says what is wrong.
pub fn png_shape<R: std::io::BufRead + std::io::Seek>(mut r: R) -> Result<[usize; 3], DataError> {
    let limits = png::Limits {
        bytes: DECODER_METADATA_LIMIT,
    };
    let (w, h, color) = {
        let mut decoder = png::Decoder::new_with_limits(&mut r, limits);
        let header = decoder.read_header_info().map_err(decode_error)?;
        (
            header.width as usize,
            header.height as usize,
            header.color_type,
        )
    };
    let c = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed if has_trns(&mut r)? => 4,
        png::ColorType::Indexed => 3,
    };
    Ok([c, h, w])
}

/// Whether a `tRNS` chunk comes before the image data: walks the chunk headers from the
/// first chunk, skipping their contents (each step moves at least 12 bytes on).
fn has_trns<R: std::io::Read + std::io::Seek>(r: &mut R) -> Result<bool, DataError> {
    use std::io::SeekFrom;
    let io = |e: std::io::Error| DataError::new(format!("cannot read the PNG: {e}"));
    let mut pos = r.seek(SeekFrom::Start(8)).map_err(io)?;
    let mut head = [0u8; 8];
    loop {
        if r.read_exact(&mut head).is_err() {
            return Ok(false);
        }
        let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        match &head[4..8] {
            b"tRNS" => return Ok(true),
            b"IDAT" | b"IEND" => return Ok(false),
            _ => {}
        }
        pos = pos.saturating_add(12).saturating_add(len);
        r.seek(SeekFrom::Start(pos)).map_err(io)?;
    }
}

/// Walks the chunks as the decoder will, checking what png 0.18.1 does not: a PLTE of whole RGB
/// entries, 1 to 256 of them (otherwise its palette expansion panics, image-rs/image-png#694), and
/// a palette tRNS no longer than the palette (the PNG specification's rule). Returns the total
/// length of the `IDAT` and `fdAT` chunks, as far as the file holds them.
fn scan_chunks(bytes: &[u8], indexed: bool) -> Result<u64, DataError> {
    let mut pos = 8usize;
    let mut total = 0u64;
    let mut palette_entries: Option<usize> = None;
    while let Some(head) = pos.checked_add(8).and_then(|end| bytes.get(pos..end)) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let present = len.min(bytes.len() - pos - 8);
        match kind {
            b"IDAT" | b"fdAT" => total += present as u64,
            b"PLTE" => {
                if !len.is_multiple_of(3) || !(3..=768).contains(&len) {
                    return Err(DataError::new(format!(
                        "corrupt PNG: the palette (PLTE chunk) is {len} bytes long, expected 1 \
                         to 256 RGB entries of 3 bytes"
                    )));
                }
                palette_entries.get_or_insert(len / 3);
            }
            b"tRNS" if indexed => {
                let entries = palette_entries.unwrap_or(256);
                if len > entries {
                    return Err(DataError::new(format!(
                        "corrupt PNG: the transparency (tRNS chunk) has {len} entries, more than \
                         the {entries} of the palette"
                    )));
                }
            }
            b"IEND" => break,
            _ => {}
        }
        pos = match pos.checked_add(12).and_then(|p| p.checked_add(len)) {
            Some(p) => p,
            None => break,
        };
    }
    Ok(total)
}

fn decode_error(e: png::DecodingError) -> DataError {
    use png::DecodingError as E;
    match e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::new("truncated PNG: the file ends before the image data is complete")
        }
        E::LimitsExceeded => DataError::new(format!(
            "the PNG needs more memory than allowed (its metadata chunks may use at most {} bytes, \
             its image at most {} float32 values)",
            DECODER_METADATA_LIMIT, MAX_READ_VALUES
        )),
        other => DataError::new(format!(
            "corrupt or unreadable PNG: {}",
            tidy_decoder_message(&other.to_string())
        )),
    }
}

/// The png crate's message with its debug-printed chunk types (`ChunkType { type: IHDR,
/// critical: true, ... }`) shortened to the chunk's name (`IHDR`).
fn tidy_decoder_message(msg: &str) -> String {
    const OPEN: &str = "ChunkType { type: ";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        let after = &rest[i + OPEN.len()..];
        let name_end = after.find([',', ' ', '}']).unwrap_or(after.len());
        out.push_str(&after[..name_end]);
        rest = match after.find('}') {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// Writes a `[1, H, W]` tensor as an 8-bit gray PNG or a `[3, H, W]` tensor as 8-bit RGB: each
/// value clamped to [0, 1] (NaN counts as 0) and stored as `round(v * 255)`.
pub fn write_png(t: &Tensor) -> Result<Vec<u8>, DataError> {
    let (c, h, w) = match t.shape() {
        &[c @ (1 | 3), h, w] => (c, h, w),
        other => {
            return Err(DataError::new(format!(
                "expected a [1, H, W] or [3, H, W] tensor to write as an image, found {}",
                fmt_shape(other)
            )));
        }
    };
    let plane = h * w;
    let data = t.data();
    let mut pixels = Vec::with_capacity(data.len());
    for i in 0..plane {
        for ch in 0..c {
            pixels.push(to_u8(data[ch * plane + i]));
        }
    }
    let color = if c == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    };
    encode(w, h, color, &pixels)
}

/// `round(clamp(v, 0, 1) * 255)`, NaN as 0.
fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

fn encode(w: usize, h: usize, color: png::ColorType, pixels: &[u8]) -> Result<Vec<u8>, DataError> {
    if w == 0 || h == 0 {
        return Err(DataError::new(format!(
            "cannot write an image of {w}x{h} pixels: PNG needs at least 1x1"
        )));
    }
    let (w32, h32) = match (u32::try_from(w), u32::try_from(h)) {
        (Ok(a), Ok(b)) if a < 1 << 31 && b < 1 << 31 => (a, b),
        _ => {
            return Err(DataError::new(format!(
                "cannot write an image of {w}x{h} pixels: PNG allows at most 2^31 - 1 per side"
            )));
        }
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w32, h32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| DataError::new(format!("cannot encode the PNG: {e}")))?;
        writer
            .write_image_data(pixels)
            .map_err(|e| DataError::new(format!("cannot encode the PNG: {e}")))?;
        writer
            .finish()
            .map_err(|e| DataError::new(format!("cannot encode the PNG: {e}")))?;
    }
    Ok(out)
}

/// Tiles smaller than this (on their longer side) are scaled up by an integer factor.
const MIN_TILE: usize = 64;
/// The largest integer scale factor applied to small maps.
const MAX_SCALE: usize = 64;
/// Pixels between tiles and around the grid.
const GAP: usize = 2;
/// Digit glyphs are 3x5 cells, each drawn as a square of this many pixels.
const FONT_SCALE: usize = 2;
/// Space above the glyphs and between the label and its tile.
const LABEL_PAD: usize = 2;
/// The largest grid image drawn, in pixels (4096 x 4096).
const MAX_GRID_PIXELS: usize = 1 << 24;
const BACKGROUND: [u8; 3] = [40, 44, 52];
const LABEL_COLOR: [u8; 3] = [255, 214, 0];

/// 3x5 bitmaps of the digits 0-9: five rows of three bits, most significant bit on the left.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111], // 0
    [0b010, 0b110, 0b010, 0b010, 0b111], // 1
    [0b111, 0b001, 0b111, 0b100, 0b111], // 2
    [0b111, 0b001, 0b111, 0b001, 0b111], // 3
    [0b101, 0b101, 0b111, 0b001, 0b001], // 4
    [0b111, 0b100, 0b111, 0b001, 0b111], // 5
    [0b111, 0b100, 0b111, 0b101, 0b111], // 6
    [0b111, 0b001, 0b010, 0b010, 0b010], // 7
    [0b111, 0b101, 0b111, 0b101, 0b111], // 8
    [0b111, 0b101, 0b111, 0b001, 0b111], // 9
];

/// Draws a `[C, H, W]` tensor (any C) as an RGB PNG: a grid of `ceil(sqrt(C))` columns of gray
/// channel maps, each normalised to its own finite min..max (a constant channel is mid gray, NaN
/// is black, +inf white, -inf black), separated by a 2-pixel dark gap, each labelled above with its
/// channel index in a small digit font. Maps smaller than 64 pixels on their longer side are
/// scaled up by an integer factor (at most 64) so they can be seen; when the whole grid would
/// exceed 2^24 pixels (4096x4096) the scale is lowered, down to sampling every k-th pixel of
/// large maps.
pub fn channel_grid_png(t: &Tensor) -> Result<Vec<u8>, DataError> {
    let (c, h, w) = match t.shape() {
        &[c, h, w] if c > 0 && h > 0 && w > 0 => (c, h, w),
        other => {
            return Err(DataError::new(format!(
                "expected a [C, H, W] tensor with no empty dimension to draw as a grid, found {}",
                fmt_shape(other)
            )));
        }
    };
    let up = MIN_TILE.div_ceil(h.max(w)).clamp(1, MAX_SCALE);
    // Candidate scales, largest first: up-scales down to 1, then down-sampling by 2, 3, ...
    let candidates = (1..=up)
        .rev()
        .map(Scale::Up)
        .chain((2..=h.max(w)).map(Scale::Down));
    let layout = candidates
        .map(|s| GridLayout::new(c, h, w, s))
        .find(|l| l.pixels().is_some_and(|p| p <= MAX_GRID_PIXELS))
        .ok_or_else(|| {
            DataError::new(format!(
                "a tensor of shape {} has too many channels to draw as a grid of channel maps \
                 (the grid would exceed {MAX_GRID_PIXELS} pixels)",
                fmt_shape(t.shape())
            ))
        })?;
    let GridLayout {
        scale,
        tile_h,
        tile_w,
        label_h,
        cell_w,
        cell_h,
        cols,
        img_w,
        img_h,
        ..
    } = layout;
    let mut img = vec![0u8; img_w * img_h * 3];
    for px in img.chunks_exact_mut(3) {
        px.copy_from_slice(&BACKGROUND);
    }
    let plane = h * w;
    for ch in 0..c {
        let (gx, gy) = (ch % cols, ch / cols);
        let x0 = GAP + gx * (cell_w + GAP);
        let y0 = GAP + gy * (cell_h + GAP);
        draw_number(&mut img, img_w, x0, y0 + LABEL_PAD, ch);
        let values = &t.data()[ch * plane..(ch + 1) * plane];
        let gray = normalise(values);
        let ty = y0 + label_h;
        for y in 0..tile_h {
            let row = (ty + y) * img_w;
            let src = scale.source(y) * w;
            for x in 0..tile_w {
                let g = gray[src + scale.source(x)];
                let i = (row + x0 + x) * 3;
                img[i..i + 3].copy_from_slice(&[g, g, g]);
            }
        }
    }
    encode(img_w, img_h, png::ColorType::Rgb, &img)
}

/// How map pixels become tile pixels.
#[derive(Clone, Copy, Debug)]
enum Scale {
    /// Each map pixel is an `n x n` square.
    Up(usize),
    /// Every `n`-th map pixel is drawn.
    Down(usize),
}

impl Scale {
    fn size(self, n: usize) -> usize {
        match self {
            Scale::Up(s) => n * s,
            Scale::Down(k) => n.div_ceil(k),
        }
    }
    /// The map coordinate drawn at tile coordinate `i`.
    fn source(self, i: usize) -> usize {
        match self {
            Scale::Up(s) => i / s,
            Scale::Down(k) => i * k,
        }
    }
}

/// The sizes of a channel grid.
struct GridLayout {
    scale: Scale,
    tile_h: usize,
    tile_w: usize,
    label_h: usize,
    cell_w: usize,
    cell_h: usize,
    cols: usize,
    img_w: usize,
    img_h: usize,
    overflow: bool,
}

impl GridLayout {
    fn new(c: usize, h: usize, w: usize, scale: Scale) -> GridLayout {
        let (tile_h, tile_w) = (scale.size(h), scale.size(w));
        let label_h = LABEL_PAD + 5 * FONT_SCALE + LABEL_PAD;
        let cell_w = tile_w.max(label_width(c - 1));
        let cell_h = label_h + tile_h;
        let cols = (1..=c)
            .find(|k| k.checked_mul(*k).is_none_or(|kk| kk >= c))
            .unwrap_or(c);
        let rows = c.div_ceil(cols);
        let img_w = cols
            .checked_mul(cell_w + GAP)
            .and_then(|v| v.checked_add(GAP));
        let img_h = rows
            .checked_mul(cell_h + GAP)
            .and_then(|v| v.checked_add(GAP));
        GridLayout {
            scale,
            tile_h,
            tile_w,
            label_h,
            cell_w,
            cell_h,
            cols,
            img_w: img_w.unwrap_or(usize::MAX),
            img_h: img_h.unwrap_or(usize::MAX),
            overflow: img_w.is_none() || img_h.is_none(),
        }
    }
    fn pixels(&self) -> Option<usize> {
        if self.overflow {
            None
        } else {
            self.img_w.checked_mul(self.img_h)
        }
    }
}

/// One channel's values as gray levels over its own finite range.
fn normalise(values: &[f32]) -> Vec<u8> {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in values.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let range = f64::from(hi) - f64::from(lo);
    values
        .iter()
        .map(|&v| {
            if v.is_nan() {
                0
            } else if v == f32::INFINITY {
                255
            } else if v == f32::NEG_INFINITY {
                0
            } else if range > 0.0 {
                ((f64::from(v) - f64::from(lo)) / range * 255.0).round() as u8
            } else {
                128
            }
        })
        .collect()
}

/// The width of the label of channel `n`, with its padding.
fn label_width(n: usize) -> usize {
    let digits = n.to_string().len();
    2 * LABEL_PAD + digits * 3 * FONT_SCALE + (digits - 1) * FONT_SCALE
}

/// Draws the decimal digits of `n` with their top-left corner at (x0 + LABEL_PAD, y0).
fn draw_number(img: &mut [u8], img_w: usize, x0: usize, y0: usize, n: usize) {
    let glyph_w = 3 * FONT_SCALE;
    let mut x = x0 + LABEL_PAD;
    for d in n.to_string().bytes() {
        let glyph = DIGITS[usize::from(d - b'0')];
        for (r, bits) in glyph.iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..FONT_SCALE {
                    for dx in 0..FONT_SCALE {
                        let px = x + col * FONT_SCALE + dx;
                        let py = y0 + r * FONT_SCALE + dy;
                        let i = (py * img_w + px) * 3;
                        img[i..i + 3].copy_from_slice(&LABEL_COLOR);
                    }
                }
            }
        }
        x += glyph_w + FONT_SCALE;
    }
}
