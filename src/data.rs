//! Input images and arrays in, output arrays and pictures out, for `run`.

use std::path::{Path, PathBuf};

use convc_tensor::{Tensor, fmt_shape};

use crate::driver::{Failure, input_err};

/// One input file read into a batch `[N, C, H, W]`; `batched` is true when the file itself was
/// 4-D (so outputs are 4-D too).
pub struct Loaded {
    /// The values, `[N, C, H, W]`.
    pub tensor: Tensor,
    /// True for a 4-D `.npy`.
    pub batched: bool,
}

fn kind(path: &Path) -> Option<&'static str> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => Some("png"),
        Some("npy") => Some("npy"),
        _ => None,
    }
}

/// Reads a `.png` or `.npy` input file as `[N, C, H, W]`.
pub fn read_input(path: &Path) -> Result<Loaded, Failure> {
    let shown = path.display();
    let Some(k) = kind(path) else {
        return Err(input_err(format!(
            "`{shown}` is neither a .png image nor a .npy array"
        )));
    };
    let limit = crate::driver::memory_limit()?;
    let bytes = match convc_tensor::read::read_limited(path, limit) {
        Ok(b) => b,
        Err(convc_tensor::read::ReadError::Directory) => {
            return Err(input_err(format!("`{shown}` is a directory, not a file")));
        }
        Err(e @ convc_tensor::read::ReadError::TooLarge { .. }) => {
            return Err(input_err(format!(
                "cannot read `{shown}`: {e}: raise the limit with CONVC_MAX_MEMORY=SIZE (e.g. 64G)"
            )));
        }
        Err(e) => return Err(input_err(format!("cannot read `{shown}`: {e}"))),
    };
    let t = match k {
        "png" => convc_tensor::image::read_png(&bytes),
        _ => convc_tensor::npy::read(&bytes),
    }
    .map_err(|e| input_err(format!("`{shown}`: {e}")))?;
    let shape = t.shape().to_vec();
    if matches!(shape.len(), 3 | 4) && shape.contains(&0) {
        return Err(input_err(format!(
            "`{shown}` holds an array of shape {}: it is empty, and every dimension of an input must be at least 1",
            fmt_shape(&shape)
        )));
    }
    match shape.len() {
        3 => {
            let s = [1, shape[0], shape[1], shape[2]];
            let tensor = t
                .reshape(s.to_vec())
                .map_err(|e| input_err(format!("`{shown}`: {e}")))?;
            Ok(Loaded {
                tensor,
                batched: false,
            })
        }
        4 => Ok(Loaded {
            tensor: t,
            batched: true,
        }),
        _ => Err(input_err(format!(
            "`{shown}` holds an array of shape {}: expected [C, H, W] or [N, C, H, W]",
            fmt_shape(&shape)
        ))),
    }
}

/// What an input file's header says it holds, before its data is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// `[N, C, H, W]` as [`read_input`] will return it.
    pub shape: [usize; 4],
    /// True for a 4-D `.npy` (see [`Loaded::batched`]).
    pub batched: bool,
}

impl Probe {
    /// The probe of a file already read.
    pub fn of(l: &Loaded) -> Probe {
        let s = l.tensor.shape();
        Probe {
            shape: [s[0], s[1], s[2], s[3]],
            batched: l.batched,
        }
    }
}

/// The longest `.npy` header read by [`probe_input`]; NumPy writes headers of a few hundred
/// bytes, and a longer one is left to the full read.
const MAX_PROBED_HEADER: u64 = 1 << 20;

/// The shape a `.png` or `.npy` file will load as, from its header alone (the `.npy` header's
/// shape, checked against the file's length; a PNG's IHDR and the chunk headers before its
/// image data), so a run can be sized and checked before any data is read. `None` when the
/// header does not settle it (an unreadable, corrupt or over-long file, a pipe, an empty or
/// wrongly ranked array): [`read_input`] then says what is wrong, as it always did.
pub fn probe_input(path: &Path) -> Option<Probe> {
    use std::io::Read;
    let k = kind(path)?;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > crate::driver::memory_limit().ok()? {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let shape: Vec<usize> = if k == "png" {
        convc_tensor::image::png_shape(std::io::BufReader::new(file))
            .ok()?
            .to_vec()
    } else {
        let mut prefix = Vec::new();
        file.take(MAX_PROBED_HEADER).read_to_end(&mut prefix).ok()?;
        let (shape, total) = convc_tensor::npy::header_shape(&prefix).ok()?;
        if total != meta.len() {
            return None;
        }
        shape
    };
    if shape.contains(&0) {
        return None;
    }
    match shape[..] {
        [c, h, w] => Some(Probe {
            shape: [1, c, h, w],
            batched: false,
        }),
        [n, c, h, w] => Some(Probe {
            shape: [n, c, h, w],
            batched: true,
        }),
        _ => None,
    }
}

/// Concatenates batches `[Ni, C, H, W]` along N; every part must have the same `[C, H, W]`.
pub fn stack(parts: Vec<(PathBuf, Loaded)>) -> Result<Loaded, Failure> {
    let mut iter = parts.into_iter();
    let Some((first_path, first)) = iter.next() else {
        return Err(Failure::Usage("error: no input file given".into()));
    };
    let item = first.tensor.shape()[1..].to_vec();
    let mut n = first.tensor.shape()[0];
    let mut data = first.tensor.into_data();
    for (p, l) in iter {
        if l.tensor.shape()[1..] != item[..] {
            return Err(input_err(format!(
                "`{}` holds images of shape {} but `{}` holds {}: a batch needs equal shapes",
                p.display(),
                fmt_shape(&l.tensor.shape()[1..]),
                first_path.display(),
                fmt_shape(&item)
            )));
        }
        n += l.tensor.shape()[0];
        data.extend_from_slice(l.tensor.data());
    }
    let mut shape = vec![n];
    shape.extend_from_slice(&item);
    let tensor = Tensor::new(shape, data).map_err(input_err)?;
    Ok(Loaded {
        tensor,
        batched: true,
    })
}

/// Checks an output path's extension before anything runs.
pub fn check_output_path(path: &Path) -> Result<(), Failure> {
    match kind(path) {
        Some(_) => Ok(()),
        None => Err(Failure::Usage(format!(
            "error: output `{}` must end in .npy (an array) or .png (an image)",
            path.display()
        ))),
    }
}

/// Encodes an output `[N, C, H, W]` for `path`: `.npy` as float32 (`[C, H, W]` when `squeeze`),
/// `.png` as an image for 1 or 3 channels, a labelled channel grid otherwise; a batch is stacked
/// vertically.
pub fn encode_output(path: &Path, t: &Tensor, squeeze: bool) -> Result<Vec<u8>, Failure> {
    let s = t.shape();
    let fail =
        |e: convc_tensor::DataError| input_err(format!("cannot encode `{}`: {e}", path.display()));
    if kind(path) == Some("npy") {
        // The same values under the squeezed shape, without copying them first.
        let shape = if squeeze { &s[1..] } else { s };
        return Ok(convc_tensor::npy::write_parts(shape, t.data()));
    }
    let (n, c, h, w) = (s[0], s[1], s[2], s[3]);
    let per = c * h * w;
    if n == 1 {
        let img = Tensor::new(vec![c, h, w], t.data().to_vec()).map_err(fail)?;
        return if c == 1 || c == 3 {
            convc_tensor::image::write_png(&img).map_err(fail)
        } else {
            convc_tensor::image::channel_grid_png(&img).map_err(fail)
        };
    }
    // A batch: images one under the other (channel grids per image for other channel counts).
    if c == 1 || c == 3 {
        let mut data = Vec::with_capacity(n * per);
        for ch in 0..c {
            for i in 0..n {
                data.extend_from_slice(&t.data()[i * per + ch * h * w..i * per + (ch + 1) * h * w]);
            }
        }
        let img = Tensor::new(vec![c, n * h, w], data).map_err(fail)?;
        return convc_tensor::image::write_png(&img).map_err(fail);
    }
    // Channel grid of the batch: channels of image i are channels i*C.. of one big grid.
    let img = Tensor::new(vec![n * c, h, w], t.data().to_vec()).map_err(fail)?;
    convc_tensor::image::channel_grid_png(&img).map_err(fail)
}

/// A summary of one output: its shape, then min, max and mean per channel (over the batch).
pub fn summary(name: &str, t: &Tensor, squeeze: bool) -> String {
    let s = t.shape();
    let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
    let shown = if squeeze {
        fmt_shape(&s[1..])
    } else {
        fmt_shape(s)
    };
    let mut out = format!("{name}: {shown}\n  channel        min          max         mean\n");
    let rows = if c > 16 { 8 } else { c };
    for ch in 0..c {
        if ch == rows && c > rows {
            out.push_str(&format!("  ... ({} more channels)\n", c - rows - 1));
        }
        if ch >= rows && ch + 1 != c {
            continue;
        }
        let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
        let mut nan = false;
        for i in 0..n {
            let base = (i * c + ch) * hw;
            for &v in &t.data()[base..base + hw] {
                nan |= v.is_nan();
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v as f64;
            }
        }
        let mean = sum / (n * hw) as f64;
        let nan_note = if nan { "  (contains NaN)" } else { "" };
        out.push_str(&format!(
            "  {ch:>7}  {lo:>11.6}  {hi:>11.6}  {mean:>11.6}{nan_note}\n"
        ));
    }
    out
}
