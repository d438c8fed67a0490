//! Lowering of the ops added for the ONNX front end (`docs/contract-additions.md`):
//! `hardsigmoid`, `hardswish`, `prelu`, `mul`, `global_maxpool`, `pad`, `upsample`,
//! `conv_transpose`, `slice`.

use convc_lang::{Diagnostic, ExprKind, LayerStmt};

use super::{
    ConvInfo, Kw, Lowerer, MAX_CHANNELS, ParamKind, R, describe, err, finite_arg, flatten_literal,
    pad_arg, pos_int, size_arg,
};
use crate::dim::Shape;
use crate::op::{
    ConvTranspose, Coords, Op, Pad, PadMode, PadOp, Param, Source, TransposeGeom, Unary, UpMode,
    Upsample,
};

impl Lowerer<'_> {
    /// The op of layer `l` (one of the names this module handles), its arguments checked;
    /// `x` is the shape of its first operand.
    pub(super) fn more_op(&self, l: &LayerStmt, x: &Shape) -> R<Op> {
        let op = l.op.name.as_str();
        Ok(match op {
            "hardsigmoid" => {
                let kw = self.kwargs(l, &["alpha", "beta"])?;
                let f = |k: &str, d: f64| -> R<f32> {
                    kw.get(k)
                        .map_or(Ok(d as f32), |e| Ok(finite_arg(e, k)? as f32))
                };
                Op::Unary(Unary::HardSigmoid {
                    alpha: f("alpha", 0.2)?,
                    beta: f("beta", 0.5)?,
                })
            }
            "hardswish" => {
                self.kwargs(l, &[])?;
                Op::Unary(Unary::HardSwish)
            }
            "mul" => {
                self.kwargs(l, &[])?;
                Op::Mul
            }
            "global_maxpool" => {
                self.kwargs(l, &[])?;
                Op::GlobalMaxPool
            }
            "slice" => slice(&self.kwargs(l, &["start", "end"])?, l, x.c)?,
            "pad" => Op::Pad(pad_op(&self.kwargs(l, &["pads", "value", "mode"])?, l)?),
            "upsample" => Op::Upsample(upsample(&self.kwargs(l, &["scale", "mode", "coords"])?)?),
            "conv_transpose" => Op::ConvTranspose(self.conv_transpose(l, x)?),
            "prelu" => {
                let kw = self.kwargs(l, &["slope"])?;
                Op::PRelu {
                    slope: self.slope(l, kw.get("slope"), x.c)?,
                }
            }
            other => {
                return err(
                    l.op.span,
                    format!("internal error: op `{other}` has no lowering"),
                );
            }
        })
    }

    /// `conv_transpose(x, out=N, kernel=3x3, stride=1, pad=0, output_padding=0, dilation=1,
    /// groups=1, weights=SRC, bias=none)`.
    fn conv_transpose(&self, l: &LayerStmt, x: &Shape) -> R<ConvTranspose> {
        let kw = self.kwargs(
            l,
            &[
                "out",
                "kernel",
                "stride",
                "pad",
                "output_padding",
                "dilation",
                "groups",
                "weights",
                "bias",
            ],
        )?;
        let out = match kw.get("out") {
            Some(e) => pos_int(e, "out", MAX_CHANNELS)?,
            None => return err(l.op.span, "conv_transpose needs `out=N`"),
        };
        let size = |key: &str, d: [usize; 2]| kw.get(key).map_or(Ok(d), |e| size_arg(e, key));
        let kernel = size("kernel", [3, 3])?;
        let stride = size("stride", [1, 1])?;
        let dilation = size("dilation", [1, 1])?;
        let pads = match kw.get("pad") {
            None => [0; 4],
            Some(e) if matches!(e.kind, ExprKind::Number { .. } | ExprKind::Tuple(_)) => {
                match pad_arg(e)? {
                    Pad::Explicit(p) => p,
                    Pad::Same => [0; 4],
                }
            }
            Some(e) => {
                return err(
                    e.span,
                    format!(
                        "pad of conv_transpose takes a number, (ph, pw) or (top, bottom, left, right), found {}",
                        describe(e)
                    ),
                );
            }
        };
        let output_padding = match kw.get("output_padding") {
            None => [0, 0],
            Some(e) => nonneg_pair(e, "output_padding")?,
        };
        let groups = kw
            .get("groups")
            .map_or(Ok(1), |e| pos_int(e, "groups", MAX_CHANNELS))?;
        if x.c % groups != 0 || out % groups != 0 {
            return err(
                l.name.span,
                format!(
                    "layer `{}`: input channels {} and out={out} must be divisible by groups={groups}",
                    l.name.name, x.c
                ),
            );
        }
        let info = ConvInfo {
            in_ch: x.c,
            out,
            groups,
            kernel,
            fan_in: out / groups * kernel[0] * kernel[1],
        };
        let shape = [x.c, out / groups, kernel[0], kernel[1]];
        let at = (l.name.name.as_str(), l.name.span);
        let weight = self
            .param(
                at,
                ParamKind::Weight,
                kw.get("weights"),
                &shape,
                &info,
                "conv_transpose",
            )?
            .ok_or_else(|| Diagnostic::error(l.op.span, "conv_transpose needs weights"))?;
        let bias = self.param(
            at,
            ParamKind::Bias,
            kw.get("bias"),
            &[out],
            &info,
            "conv_transpose",
        )?;
        Ok(ConvTranspose {
            geom: TransposeGeom {
                out,
                kernel,
                stride,
                dilation,
                pads,
                output_padding,
                groups,
            },
            weight,
            bias,
        })
    }

    /// The slope of a `prelu`: a number or a one-element list (one slope for every channel),
    /// any other source of shape `[C]`, or, omitted, 0.25 for every channel (PyTorch's
    /// initial value).
    fn slope(&self, l: &LayerStmt, src: Option<&convc_lang::Expr>, c: usize) -> R<Param> {
        let one = |v: f32, source: Source| -> R<Param> {
            if !v.is_finite() {
                return err(
                    src.map_or(l.op.span, |e| e.span),
                    format!(
                        "layer `{}`: the slope must be finite, found {v}",
                        l.name.name
                    ),
                );
            }
            let t = convc_tensor::Tensor::new(vec![1], vec![v])
                .map_err(|d| Diagnostic::error(l.op.span, d.message))?;
            Ok(Param::new(t, source))
        };
        match src.map(|e| (e, &e.kind)) {
            None => one(0.25, Source::Literal),
            Some((e, ExprKind::Number { .. })) => {
                one(finite_arg(e, "slope")? as f32, Source::Literal)
            }
            Some((e, ExprKind::List(_))) if flatten_literal(e)?.0 == [1] && c != 1 => {
                let (_, v) = flatten_literal(e)?;
                one(v.first().copied().unwrap_or(0.0), Source::Literal)
            }
            Some(_) => {
                let info = ConvInfo {
                    in_ch: c,
                    out: c,
                    groups: c,
                    kernel: [1, 1],
                    fan_in: 1,
                };
                let p = self.param(
                    (l.name.name.as_str(), l.name.span),
                    ParamKind::Slope,
                    src,
                    &[c],
                    &info,
                    "prelu",
                )?;
                p.ok_or_else(|| Diagnostic::error(l.op.span, "prelu needs `slope`"))
            }
        }
    }
}

/// The identifier value of `key`, one of `names` (the first when omitted).
fn choice<'n>(kw: &Kw<'_>, key: &str, names: &[&'n str]) -> R<&'n str> {
    let Some(e) = kw.get(key) else {
        return Ok(names[0]);
    };
    match &e.kind {
        ExprKind::Ident(s) => match names.iter().find(|n| **n == s) {
            Some(n) => Ok(*n),
            None => err(
                e.span,
                format!("{key} is one of {}, found `{s}`", names.join(", ")),
            ),
        },
        _ => err(
            e.span,
            format!(
                "{key} is one of {}, found {}",
                names.join(", "),
                describe(e)
            ),
        ),
    }
}

/// `pad(x, pads=P, value=0, mode=constant|reflect|edge)`; `pads` as for a conv's `pad`
/// (a number, `(ph, pw)` or `(top, bottom, left, right)`).
fn pad_op(kw: &Kw<'_>, l: &LayerStmt) -> R<PadOp> {
    let Some(e) = kw.get("pads") else {
        return err(
            l.op.span,
            "pad needs `pads=P`: a number, (ph, pw) or (top, bottom, left, right)",
        );
    };
    if !matches!(e.kind, ExprKind::Number { .. } | ExprKind::Tuple(_)) {
        return err(
            e.span,
            format!(
                "pads takes a number, (ph, pw) or (top, bottom, left, right), found {}",
                describe(e)
            ),
        );
    }
    let Pad::Explicit(pads) = pad_arg(e)? else {
        return err(e.span, "pads takes whole numbers");
    };
    let mode = match choice(kw, "mode", &["constant", "reflect", "edge"])? {
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        _ => PadMode::Constant,
    };
    let value = match kw.get("value") {
        Some(e) if mode != PadMode::Constant => {
            return err(e.span, "value is for mode=constant only");
        }
        Some(e) => finite_arg(e, "value")? as f32,
        None => 0.0,
    };
    Ok(PadOp { pads, mode, value })
}

/// `upsample(x, scale=2, mode=nearest|bilinear, coords=half_pixel|asymmetric|align_corners)`.
fn upsample(kw: &Kw<'_>) -> R<Upsample> {
    let scale = match kw.get("scale") {
        Some(e) => size_arg(e, "scale")?,
        None => [2, 2],
    };
    let mode = match choice(kw, "mode", &["nearest", "bilinear"])? {
        "bilinear" => UpMode::Bilinear,
        _ => UpMode::Nearest,
    };
    let coords = match choice(kw, "coords", &["half_pixel", "asymmetric", "align_corners"])? {
        "asymmetric" => Coords::Asymmetric,
        "align_corners" => Coords::AlignCorners,
        _ => Coords::HalfPixel,
    };
    if let Some(e) = kw.get("coords")
        && mode == UpMode::Nearest
    {
        return err(
            e.span,
            "coords is for mode=bilinear only (nearest reads input floor(i/scale))",
        );
    }
    Ok(Upsample {
        scale,
        mode,
        coords,
    })
}

/// Two whole numbers >= 0: `n` (both), `(a, b)` or `AxB`.
fn nonneg_pair(e: &convc_lang::Expr, what: &str) -> R<[usize; 2]> {
    let one = |it: &convc_lang::Expr| -> R<usize> {
        match super::int_of(it) {
            Some(v) if (0..=super::MAX_WINDOW).contains(&v) => Ok(v as usize),
            _ => err(
                it.span,
                format!(
                    "{what} takes whole numbers from 0 to {}, found {}",
                    super::MAX_WINDOW,
                    describe(it)
                ),
            ),
        }
    };
    match &e.kind {
        ExprKind::Number { .. } => {
            let v = one(e)?;
            Ok([v, v])
        }
        ExprKind::Tuple(items) if items.len() == 2 => Ok([one(&items[0])?, one(&items[1])?]),
        ExprKind::Size(a, b)
            if *a <= super::MAX_WINDOW as u64 && *b <= super::MAX_WINDOW as u64 =>
        {
            Ok([*a as usize, *b as usize])
        }
        _ => err(
            e.span,
            format!(
                "{what} takes a number, (a, b) or AxB, found {}",
                describe(e)
            ),
        ),
    }
}

/// `slice(x, start=0, end=E)`: channels `start..end` of `x`, `0 <= start < end <= C`.
fn slice(kw: &Kw<'_>, l: &LayerStmt, c: usize) -> R<Op> {
    let int = |k: &str| -> R<Option<(i64, convc_lang::Span)>> {
        match kw.get(k) {
            None => Ok(None),
            Some(e) => match super::int_of(e) {
                Some(v) => Ok(Some((v, e.span))),
                None => err(
                    e.span,
                    format!("{k} takes a whole number, found {}", describe(e)),
                ),
            },
        }
    };
    let Some((end, end_span)) = int("end")? else {
        return err(
            l.op.span,
            "slice needs `end=E` (one past the last channel kept)",
        );
    };
    let (start, start_span) = int("start")?.unwrap_or((0, l.op.span));
    if start < 0 || start >= c as i64 {
        return err(
            start_span,
            format!(
                "start is {start}: it must be a channel of the input's {c} (from 0 to {})",
                c.saturating_sub(1)
            ),
        );
    }
    if end <= start || end > c as i64 {
        return err(
            end_span,
            format!(
                "end is {end}: it must be above start ({start}) and at most the input's {c} channels"
            ),
        );
    }
    Ok(Op::Slice {
        start: start as usize,
        end: end as usize,
    })
}
