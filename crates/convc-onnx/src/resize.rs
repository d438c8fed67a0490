//! ONNX `Pad`, `Resize`, `Upsample` and `ConvTranspose`: convc's `pad`, `upsample` and
//! `conv_transpose`.

use convc_ir::{
    ConvTranspose, Coords, NodeIndex, Op, PadMode, PadOp, Param, Source, TransposeGeom, UpMode,
    Upsample,
};
use convc_tensor::Tensor;

use crate::OnnxError;
use crate::import::{Importer, Val};
use crate::proto::NodeProto;
use crate::read::Attrs;

type R<T> = Result<T, OnnxError>;

fn fail<T>(at: &str, msg: impl std::fmt::Display) -> R<T> {
    Err(OnnxError::new(format!("{at}: {msg}")))
}

/// The largest padding or scale factor taken (the language's window limit).
const MAX: i64 = convc_ir::lower::MAX_WINDOW;

impl Importer<'_> {
    /// `Pad` (modes constant, reflect, edge) on the plane of an `[N, C, H, W]` value.
    pub(crate) fn pad(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.image_input(node, at)?;
        let mode = a.string("mode")?.unwrap_or_else(|| "constant".into());
        let mode = match mode.as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            other => {
                return fail(
                    at,
                    format!("mode `{other}` is not supported (constant, reflect, edge)"),
                );
            }
        };
        let (pads, value, axes) = if self.opset < 11 {
            let Some(p) = a.ints("pads")? else {
                return fail(at, "`pads` is required");
            };
            (p, a.float("value")?.unwrap_or(0.0), None)
        } else {
            let Some(p) = self.const_input(node, 1, at)?.ints().map(<[i64]>::to_vec) else {
                return fail(at, "the pads input must hold integers");
            };
            let value = match self.opt_input(node, 2) {
                None => 0.0,
                Some(_) => match self.const_input(node, 2, at)?.floats().as_slice() {
                    [] => 0.0,
                    [v] => *v,
                    _ => return fail(at, "constant_value must be one number"),
                },
            };
            let axes = match self.opt_input(node, 3) {
                None => None,
                Some(_) => match self.const_input(node, 3, at)?.ints() {
                    Some(v) => Some(v.to_vec()),
                    None => return fail(at, "the axes input must hold integers"),
                },
            };
            (p, value, axes)
        };
        let axes: Vec<i64> = axes.unwrap_or_else(|| (0..4).collect());
        if pads.len() != 2 * axes.len() {
            return fail(
                at,
                format!("{} pads for {} axes (2 per axis)", pads.len(), axes.len()),
            );
        }
        // Per axis of [N, C, H, W]: (begin, end).
        let mut per = [(0i64, 0i64); 4];
        for (k, &ax) in axes.iter().enumerate() {
            let ax = if ax < 0 { ax + 4 } else { ax };
            if !(0..4).contains(&ax) {
                return fail(at, format!("axis {ax} is not one of a 4-D tensor's"));
            }
            per[ax as usize] = (pads[k], pads[k + axes.len()]);
        }
        if per[0] != (0, 0) || per[1] != (0, 0) {
            return fail(at, "padding of the batch or channel axis is not supported");
        }
        let sides = [per[2].0, per[2].1, per[3].0, per[3].1];
        if let Some(v) = sides.iter().find(|&&v| !(0..=MAX).contains(&v)) {
            return fail(
                at,
                format!(
                    "pad {v} is not from 0 to {MAX} (negative pads, which crop, are not supported)"
                ),
            );
        }
        if mode == PadMode::Constant && !value.is_finite() {
            return fail(at, format!("constant_value {value} is not finite"));
        }
        let op = Op::Pad(PadOp {
            pads: sides.map(|v| v as usize),
            mode,
            value: if mode == PadMode::Constant {
                value
            } else {
                0.0
            },
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// `Resize` and `Upsample` by whole factors >= 1: nearest (where ONNX's coordinates and
    /// rounding read input `floor(i / scale)`) or (bi)linear with the half_pixel,
    /// pytorch_half_pixel, asymmetric or align_corners coordinates.
    pub(crate) fn resize(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.image_input(node, at)?;
        let mode = a.string("mode")?.unwrap_or_else(|| "nearest".into());
        let mode = match mode.as_str() {
            "nearest" => UpMode::Nearest,
            "linear" | "bilinear" => UpMode::Bilinear,
            other => {
                return fail(
                    at,
                    format!("mode `{other}` is not supported (nearest, linear)"),
                );
            }
        };
        let resize11 = node.op_type() == "Resize" && self.opset >= 11;
        let ctm = if resize11 {
            a.string("coordinate_transformation_mode")?
                .unwrap_or_else(|| "half_pixel".into())
        } else {
            "asymmetric".into()
        };
        let coords = match ctm.as_str() {
            "half_pixel" | "pytorch_half_pixel" => Coords::HalfPixel,
            "asymmetric" => Coords::Asymmetric,
            "align_corners" => Coords::AlignCorners,
            other => {
                return fail(
                    at,
                    format!(
                        "coordinate_transformation_mode `{other}` is not supported (half_pixel, pytorch_half_pixel, asymmetric, align_corners)"
                    ),
                );
            }
        };
        let scale = self.resize_scale(node, a, x, at)?;
        if mode == UpMode::Nearest {
            let nm = if resize11 {
                a.string("nearest_mode")?
                    .unwrap_or_else(|| "round_prefer_floor".into())
            } else {
                "floor".into()
            };
            let (h, w) = self.g.node(x).shape.hw().unzip();
            for (s, n) in [(scale[0], h), (scale[1], w)] {
                if !nearest_is_floor(s, n, coords, &nm, at)? {
                    return fail(
                        at,
                        format!(
                            "nearest with coordinate_transformation_mode `{ctm}` and nearest_mode `{nm}` does not read input floor(i / {s}) at scale {s}: not supported"
                        ),
                    );
                }
            }
        }
        let op = Op::Upsample(Upsample {
            scale,
            mode,
            coords: if mode == UpMode::Nearest {
                Coords::HalfPixel
            } else {
                coords
            },
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// `ConvTranspose` (2-D; `group`, `dilations`, `strides`, `pads`, `output_padding`,
    /// `output_shape` and `auto_pad` with a fixed input size).
    pub(crate) fn conv_transpose(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.image_input(node, at)?;
        let w = self.const_input(node, 1, at)?.clone();
        let c = self.g.node(x).shape.c;
        let groups = a.int("group")?.unwrap_or(1);
        if w.dims.len() != 4 || groups < 1 || w.dims[0] != c {
            return fail(
                at,
                format!(
                    "weights of shape {} do not fit a 2-D transposed convolution of {c} channels in {groups} group(s)",
                    convc_tensor::fmt_shape(&w.dims)
                ),
            );
        }
        let groups = groups as usize;
        let out = w.dims[1] * groups;
        let kernel = [w.dims[2], w.dims[3]];
        let two = |key: &str, d: i64, lo: i64| -> R<[usize; 2]> {
            match a.ints(key)? {
                None => Ok([d as usize; 2]),
                Some(v) if v.len() == 2 && v.iter().all(|x| (lo..=MAX).contains(x)) => {
                    Ok([v[0] as usize, v[1] as usize])
                }
                Some(v) => fail(
                    at,
                    format!("`{key}` {v:?} is not 2 values from {lo} to {MAX}"),
                ),
            }
        };
        let stride = two("strides", 1, 1)?;
        let dilation = two("dilations", 1, 1)?;
        let output_padding = two("output_padding", 0, 0)?;
        let mut geom = TransposeGeom {
            out,
            kernel,
            stride,
            dilation,
            pads: [0; 4],
            output_padding,
            groups,
        };
        geom.pads = self.transpose_pads(a, x, &geom, at)?;
        let values = |v: Vec<f32>, dims: Vec<usize>, what: &str| -> R<Param> {
            if v.iter().any(|f| !f.is_finite()) {
                return fail(at, format!("{what} has a value that is not finite"));
            }
            let t =
                Tensor::new(dims, v).map_err(|e| OnnxError::new(format!("{at}: {what}: {e}")))?;
            Ok(Param::new(t, Source::Derived(format!("onnx {what}"))))
        };
        let weight = values(w.floats(), w.dims.clone(), "weights")?;
        let bias = match self.opt_input(node, 2) {
            None => None,
            Some(_) => {
                let b = self.const_input(node, 2, at)?;
                if b.len() != out {
                    return fail(
                        at,
                        format!("bias has {} values for {out} output channels", b.len()),
                    );
                }
                Some(values(b.floats(), vec![out], "bias")?)
            }
        };
        let op = Op::ConvTranspose(ConvTranspose { geom, weight, bias });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// `[top, bottom, left, right]` of a ConvTranspose, from `pads`, or from `output_shape`
    /// or `auto_pad` SAME_* (which need a fixed input size).
    fn transpose_pads(
        &self,
        a: &Attrs,
        x: NodeIndex,
        g: &TransposeGeom,
        at: &str,
    ) -> R<[usize; 4]> {
        let auto = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let shape = a.ints("output_shape")?;
        if shape.is_none() && matches!(auto.as_str(), "NOTSET" | "" | "VALID") {
            let Some(p) = a.ints("pads")?.filter(|_| auto != "VALID") else {
                return Ok([0; 4]);
            };
            if p.len() != 4 || p.iter().any(|v| !(0..=MAX).contains(v)) {
                return fail(at, format!("`pads` {p:?} is not 4 values from 0 to {MAX}"));
            }
            // ONNX: [top, left, bottom, right].
            return Ok([p[0] as usize, p[2] as usize, p[1] as usize, p[3] as usize]);
        }
        if !matches!(
            auto.as_str(),
            "NOTSET" | "" | "VALID" | "SAME_UPPER" | "SAME_LOWER"
        ) {
            return fail(at, format!("auto_pad `{auto}` is not one of ONNX's"));
        }
        let Some((h, w)) = self.g.node(x).shape.hw() else {
            return fail(
                at,
                "output_shape and auto_pad SAME_* need a fixed input size",
            );
        };
        let want: [usize; 2] = match &shape {
            Some(v) if v.len() >= 2 => {
                let v = &v[v.len() - 2..];
                if v.iter().any(|&d| !(1..=i64::from(u32::MAX)).contains(&d)) {
                    return fail(at, format!("output_shape {v:?} is not positive"));
                }
                [v[0] as usize, v[1] as usize]
            }
            Some(v) => return fail(at, format!("output_shape {v:?} needs the 2 spatial sizes")),
            None => [h * g.stride[0], w * g.stride[1]],
        };
        let mut pads = [0; 4];
        for (axis, (n, m)) in [(h, want[0]), (w, want[1])].into_iter().enumerate() {
            let full = (n - 1) * g.stride[axis]
                + g.output_padding[axis]
                + (g.kernel[axis] - 1) * g.dilation[axis]
                + 1;
            let Some(total) = full.checked_sub(m) else {
                return fail(
                    at,
                    format!("output size {m} is larger than the full output {full}"),
                );
            };
            let (b, e) = if auto == "SAME_UPPER" {
                (total / 2, total - total / 2)
            } else {
                (total - total / 2, total / 2)
            };
            pads[2 * axis] = b;
            pads[2 * axis + 1] = e;
        }
        Ok(pads)
    }

    /// The plain `[N, C, H, W]` value that a Pad or Resize reads.
    fn image_input(&self, node: &NodeProto, at: &str) -> R<NodeIndex> {
        let (x, flat) = self.node_input(node, 0, at)?;
        if flat && self.g.node(x).shape.hw() != Some((1, 1)) {
            return fail(
                at,
                "input 0 is a flattened tensor; this op needs an image [N, C, H, W]",
            );
        }
        Ok(x)
    }

    /// The whole `[SH, SW]` factors of a Resize/Upsample, from its `scales` (attribute or
    /// input) or `sizes` (with a known input size).
    fn resize_scale(&self, node: &NodeProto, a: &Attrs, x: NodeIndex, at: &str) -> R<[usize; 2]> {
        let axes = a.ints("axes")?.unwrap_or_else(|| vec![0, 1, 2, 3]);
        let spread = |v: &[f64]| -> R<[f64; 4]> {
            if v.len() != axes.len() {
                return fail(at, format!("{} values for {} axes", v.len(), axes.len()));
            }
            let mut out = [1.0; 4];
            for (&ax, &s) in axes.iter().zip(v) {
                let ax = if ax < 0 { ax + 4 } else { ax };
                if !(0..4).contains(&ax) {
                    return fail(at, format!("axis {ax} is not one of a 4-D tensor's"));
                }
                out[ax as usize] = s;
            }
            Ok(out)
        };
        let scales: Option<Vec<f64>> = if node.op_type() == "Upsample" && self.opset < 9 {
            a.get("scales")
                .map(|s| s.floats.iter().map(|&v| f64::from(v)).collect())
        } else {
            let i = match (node.op_type(), self.opset) {
                ("Resize", o) if o >= 11 => 2,
                _ => 1,
            };
            match self.opt_input(node, i) {
                Some(_) => {
                    let v = self.const_input(node, i, at)?.floats();
                    (!v.is_empty()).then(|| v.iter().map(|&f| f64::from(f)).collect())
                }
                None => None,
            }
        };
        let s = match scales {
            Some(v) => spread(&v)?,
            None => {
                let sizes = match self.opt_input(node, 3) {
                    Some(_) if node.op_type() == "Resize" => self.const_input(node, 3, at)?,
                    _ => return fail(at, "needs constant `scales` or `sizes`"),
                };
                let Some(v) = sizes.ints() else {
                    return fail(at, "sizes must hold integers");
                };
                if a.string("keep_aspect_ratio_policy")?
                    .is_some_and(|p| p != "stretch")
                {
                    return fail(
                        at,
                        "keep_aspect_ratio_policy other than stretch is not supported",
                    );
                }
                let v: Vec<f64> = v.iter().map(|&d| d as f64).collect();
                let s = self.g.node(x).shape.clone();
                let Some((h, w)) = s.hw() else {
                    return fail(at, "`sizes` needs a fixed input size (give `scales`)");
                };
                let v = spread(&v)?;
                let n = if axes.len() == 4 { v[0] } else { 1.0 };
                [
                    n.min(1.0),
                    v[1] / s.c as f64,
                    v[2] / h as f64,
                    v[3] / w as f64,
                ]
            }
        };
        if s[1] != 1.0 {
            return fail(
                at,
                format!("a scale of {} on the channel axis is not supported", s[1]),
            );
        }
        let whole = |v: f64| -> R<usize> {
            if v.fract() == 0.0 && (1.0..=MAX as f64).contains(&v) {
                Ok(v as usize)
            } else {
                fail(
                    at,
                    format!("scale {v} is not supported (whole factors from 1 to {MAX} only)"),
                )
            }
        };
        Ok([whole(s[2])?, whole(s[3])?])
    }
}

/// True when ONNX's nearest resize at whole `scale` reads input `floor(i / scale)` for every
/// output `i` of an axis of `n` inputs (`None`: a symbolic size, checked for several).
fn nearest_is_floor(scale: usize, n: Option<usize>, coords: Coords, nm: &str, at: &str) -> R<bool> {
    if !matches!(
        nm,
        "round_prefer_floor" | "round_prefer_ceil" | "floor" | "ceil"
    ) {
        return fail(at, format!("nearest_mode `{nm}` is not one of ONNX's"));
    }
    let sizes: Vec<usize> = match (n, coords) {
        (Some(n), _) => vec![n],
        (None, Coords::AlignCorners) => return Ok(scale == 1),
        (None, _) => vec![1, 2, 3, 7],
    };
    let s = scale as f64;
    for n in sizes {
        let m = n * scale;
        for i in 0..m {
            let x = match coords {
                Coords::HalfPixel => (i as f64 + 0.5) / s - 0.5,
                Coords::Asymmetric => i as f64 / s,
                Coords::AlignCorners if m > 1 => i as f64 * (n - 1) as f64 / (m - 1) as f64,
                Coords::AlignCorners => 0.0,
            };
            let r = match nm {
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "round_prefer_ceil" if x.fract().abs() == 0.5 => x.ceil(),
                "round_prefer_ceil" => x.round(),
                _ if x.fract().abs() == 0.5 => x.floor(),
                _ => x.round(),
            };
            let r = r.clamp(0.0, (n - 1) as f64) as usize;
            if r != i / scale {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
