//! A graph as a readable `.conv` spec plus a safetensors file of its parameters: what
//! `convc import` writes. Each parameter is stored as float32 under `LAYER.PARAM` (`weight`,
//! `bias`, `mean`, `var`, `gamma`, `beta`) and referenced with `file("W.safetensors", "...")`,
//! so running the spec computes exactly what the graph does.

use convc_ir::{Graph, Op, Pad, Param, PoolKind, Unary};
use safetensors::{Dtype, tensor::TensorView};

use crate::OnnxError;

/// The spec text and the bytes of its safetensors file.
pub struct Emitted {
    /// The `.conv` text.
    pub conv: String,
    /// The safetensors file the text refers to.
    pub weights: Vec<u8>,
}

/// Writes `g` as a spec whose parameters come from `weights_file` (a path relative to the
/// spec's folder); `header` becomes leading `#` comment lines.
pub fn emit(g: &Graph, weights_file: &str, header: &str) -> Result<Emitted, OnnxError> {
    let mut conv = String::new();
    for line in header.lines() {
        conv.push_str(&format!("# {line}\n"));
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let file = quote(weights_file);
    let mut src = |layer: &str, what: &str, p: &Param| -> String {
        let key = format!("{layer}.{what}");
        let bytes = p.data.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((key.clone(), p.data.shape().to_vec(), bytes));
        format!("file({file}, {})", quote(&key))
    };
    for n in g.topo_order() {
        let node = g.node(n);
        let name = &node.name;
        let args: Vec<String> = g
            .operands(n)
            .iter()
            .map(|&o| g.node(o).name.clone())
            .collect();
        let x = args.join(", ");
        let line = match &node.op {
            Op::Input { .. } => {
                let s = &node.shape;
                format!("input {name}: [{}, {}, {}]", s.c, s.h, s.w)
            }
            Op::Conv(c) => {
                let bias = match &c.bias {
                    Some(b) => src(name, "bias", b),
                    None => "none".into(),
                };
                format!(
                    "{name} = conv({x}, out={}, kernel={}x{}, stride={}x{}, pad={}, dilation={}x{}, groups={}, weights={}, bias={bias})",
                    c.out,
                    c.kernel[0],
                    c.kernel[1],
                    c.stride[0],
                    c.stride[1],
                    pad(&c.pad),
                    c.dilation[0],
                    c.dilation[1],
                    c.groups,
                    src(name, "weight", &c.weight)
                )
            }
            Op::BatchNorm(bn) => format!(
                "{name} = batchnorm({x}, mean={}, var={}, gamma={}, beta={}, eps={:?})",
                src(name, "mean", &bn.mean),
                src(name, "var", &bn.var),
                src(name, "gamma", &bn.gamma),
                src(name, "beta", &bn.beta),
                bn.eps
            ),
            Op::Unary(u) => format!("{name} = {}", unary(u, &x)),
            Op::Add => format!("{name} = add({x})"),
            Op::Mul => format!("{name} = mul({x})"),
            Op::PRelu { slope } => {
                format!("{name} = prelu({x}, slope={})", src(name, "slope", slope))
            }
            Op::GlobalMaxPool => format!("{name} = global_maxpool({x})"),
            Op::ConvTranspose(t) => {
                let g = &t.geom;
                let [pt, pb, pl, pr] = g.pads;
                let bias = match &t.bias {
                    Some(b) => src(name, "bias", b),
                    None => "none".into(),
                };
                format!(
                    "{name} = conv_transpose({x}, out={}, kernel={}x{}, stride={}x{}, pad=({pt}, {pb}, {pl}, {pr}), output_padding=({}, {}), dilation={}x{}, groups={}, weights={}, bias={bias})",
                    g.out,
                    g.kernel[0],
                    g.kernel[1],
                    g.stride[0],
                    g.stride[1],
                    g.output_padding[0],
                    g.output_padding[1],
                    g.dilation[0],
                    g.dilation[1],
                    g.groups,
                    src(name, "weight", &t.weight)
                )
            }
            Op::Pad(p) => {
                let [t, b, l, r] = p.pads;
                match p.mode {
                    convc_ir::PadMode::Constant => format!(
                        "{name} = pad({x}, pads=({t}, {b}, {l}, {r}), value={:?})",
                        p.value
                    ),
                    m => format!(
                        "{name} = pad({x}, pads=({t}, {b}, {l}, {r}), mode={})",
                        m.name()
                    ),
                }
            }
            Op::Upsample(u) => match u.mode {
                convc_ir::UpMode::Nearest => format!(
                    "{name} = upsample({x}, scale={}x{}, mode=nearest)",
                    u.scale[0], u.scale[1]
                ),
                convc_ir::UpMode::Bilinear => format!(
                    "{name} = upsample({x}, scale={}x{}, mode=bilinear, coords={})",
                    u.scale[0],
                    u.scale[1],
                    u.coords.name()
                ),
            },
            Op::Concat => format!("{name} = concat({x})"),
            Op::Pool(p) => format!(
                "{name} = {}({x}, kernel={}x{}, stride={}x{}, pad={})",
                if p.kind == PoolKind::Max {
                    "maxpool"
                } else {
                    "avgpool"
                },
                p.kernel[0],
                p.kernel[1],
                p.stride[0],
                p.stride[1],
                pad(&p.pad)
            ),
            Op::GlobalAvgPool => format!("{name} = global_avgpool({x})"),
            Op::Softmax => format!("{name} = softmax({x})"),
            Op::Shuffle { groups } => format!("{name} = shuffle({x}, groups={groups})"),
            Op::Slice { start, end } => format!("{name} = slice({x}, start={start}, end={end})"),
            Op::Lrn(l) => format!(
                "{name} = lrn({x}, size={}, alpha={:?}, beta={:?}, bias={:?})",
                l.size, l.alpha, l.beta, l.bias
            ),
        };
        conv.push_str(&line);
        conv.push('\n');
    }
    let outs: Vec<&str> = g.outputs.iter().map(|&o| g.node(o).name.as_str()).collect();
    conv.push_str(&format!("\noutput {}\n", outs.join(", ")));
    Ok(Emitted {
        conv,
        weights: safetensors_bytes(&tensors)?,
    })
}

/// A `.conv` string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn pad(p: &Pad) -> String {
    match p {
        Pad::Same => "same".into(),
        Pad::Explicit([t, b, l, r]) => format!("({t}, {b}, {l}, {r})"),
    }
}

/// An elementwise op as a call; infinite clamp bounds are left out (their default).
fn unary(u: &Unary, x: &str) -> String {
    match *u {
        Unary::LeakyRelu { alpha } => format!("leaky_relu({x}, alpha={alpha:?})"),
        Unary::HardSigmoid { alpha, beta } => {
            format!("hardsigmoid({x}, alpha={alpha:?}, beta={beta:?})")
        }
        Unary::Clamp { min, max } => {
            let mut a = String::new();
            if min.is_finite() {
                a.push_str(&format!(", min={min:?}"));
            }
            if max.is_finite() {
                a.push_str(&format!(", max={max:?}"));
            }
            format!("clamp({x}{a})")
        }
        _ => format!("{}({x})", u.name()),
    }
}

fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<u8>)]) -> Result<Vec<u8>, OnnxError> {
    let err = |e: safetensors::SafeTensorError| {
        OnnxError::new(format!("cannot write the weights as safetensors: {e}"))
    };
    let views = tensors
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (k.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    safetensors::serialize(views, None).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_in_the_language_and_round_trip() {
        assert_eq!(
            unary(&Unary::LeakyRelu { alpha: 0.01 }, "x"),
            "leaky_relu(x, alpha=0.01)"
        );
        assert_eq!(
            unary(
                &Unary::Clamp {
                    min: 0.0,
                    max: f32::INFINITY
                },
                "x"
            ),
            "clamp(x, min=0.0)"
        );
        for v in [1e-5f32, 0.1, 6.0, 1e-45, 3.4028235e38, -0.2] {
            let text = format!("{v:?}");
            assert_eq!(text.parse::<f64>().unwrap() as f32, v, "{text}");
            assert!(!text.contains("inf") && !text.starts_with('.'), "{text}");
        }
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
