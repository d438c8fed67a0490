//! A graph as a standard ONNX model (`convc export`): opset 17, batch first (`[N, C, H, W]`,
//! `N` symbolic), every parameter an initializer (float32, raw data), one ONNX node per IR
//! op (a channel shuffle is `Reshape`, `Transpose`, `Reshape`). The graph is written as the
//! passes left it: folded batchnorms and decomposed convolutions are ordinary `Conv` nodes.

use convc_ir::{Dim, Graph, NodeIndex, Op, Pad, Param, PoolKind, Unary, UpMode};
use prost::Message;

use crate::OnnxError;
use crate::proto::attribute_proto::AttributeType;
use crate::proto::tensor_shape_proto::{Dimension, dimension};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// The opset of exported models.
pub const OPSET: i64 = 17;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// The bytes of an ONNX model computing `g` (per image `[C, H, W]` as `[N, C, H, W]`).
/// `producer` is recorded as the producer's version. Fails for a channel shuffle on a
/// symbolic plane (its `Reshape` needs the sizes: bind them first).
pub fn export(g: &Graph, producer: &str) -> Result<Vec<u8>, OnnxError> {
    let mut w = Writer::default();
    for n in g.topo_order() {
        w.node(g, n)?;
    }
    let mut outputs = Vec::new();
    for (k, &o) in g.outputs.iter().enumerate() {
        let name = &g.node(o).name;
        // An output that is a graph input, or listed twice, goes through an Identity.
        let repeated = g.outputs[..k].contains(&o);
        let out = if repeated || matches!(g.node(o).op, Op::Input { .. }) {
            let id = format!("{name}_output{k}");
            w.push(
                "Identity",
                &id,
                vec![name.clone()],
                vec![id.clone()],
                vec![],
            );
            id
        } else {
            name.clone()
        };
        outputs.push(value_info(
            &out,
            g.node(o).shape.c,
            &g.node(o).shape.h,
            &g.node(o).shape.w,
        ));
    }
    let inputs = g
        .inputs
        .iter()
        .map(|&i| {
            let s = &g.node(i).shape;
            value_info(&g.node(i).name, s.c, &s.h, &s.w)
        })
        .collect();
    let graph = GraphProto {
        node: w.nodes,
        name: Some("convc".into()),
        initializer: w.inits,
        input: inputs,
        output: outputs,
        ..GraphProto::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        producer_name: Some("convc".into()),
        producer_version: Some(producer.into()),
        graph: Some(graph),
        ..ModelProto::default()
    };
    Ok(model.encode_to_vec())
}

/// `[N, C, H, W]` float with `N` symbolic; a symbolic H or W is its symbol's name when it is
/// one, else left unnamed.
fn value_info(name: &str, c: usize, h: &Dim, w: &Dim) -> ValueInfoProto {
    let dim = |v: dimension::Value| Dimension {
        denotation: None,
        value: Some(v),
    };
    let plane = |d: &Dim| match d {
        Dim::Lit(v) => Some(dim(dimension::Value::DimValue(*v))),
        Dim::Sym(s) => Some(dim(dimension::Value::DimParam(s.clone()))),
        _ => Some(Dimension::default()),
    };
    let dims = [
        Some(dim(dimension::Value::DimParam("N".into()))),
        Some(dim(dimension::Value::DimValue(c as i64))),
        plane(h),
        plane(w),
    ];
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            denotation: None,
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims.into_iter().flatten().collect(),
                }),
            })),
        }),
        ..ValueInfoProto::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..AttributeProto::default()
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..AttributeProto::default()
    }
}

fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..AttributeProto::default()
    }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..AttributeProto::default()
    }
}

/// ONNX `pads` `[top, left, bottom, right]` of a window, or `auto_pad=SAME_UPPER` when the
/// input size is symbolic.
fn window_pads(
    g: &Graph,
    x: NodeIndex,
    pad: &Pad,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
) -> AttributeProto {
    let p = match (pad, g.node(x).shape.hw()) {
        (Pad::Explicit(p), _) => *p,
        (Pad::Same, Some((h, w))) => pad.resolve(h, w, k, s, d),
        (Pad::Same, None) => return string("auto_pad", "SAME_UPPER"),
    };
    ints("pads", &[p[0], p[2], p[1], p[3]].map(|v| v as i64))
}

fn pair(v: [usize; 2]) -> [i64; 2] {
    v.map(|x| x as i64)
}

/// The nodes and initializers written so far.
#[derive(Default)]
struct Writer {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
}

impl Writer {
    fn push(
        &mut self,
        op: &str,
        name: &str,
        input: Vec<String>,
        output: Vec<String>,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input,
            output,
            name: Some(name.into()),
            op_type: Some(op.into()),
            domain: Some(String::new()),
            attribute,
            ..NodeProto::default()
        });
    }

    /// A float initializer named `name` of shape `dims`; returns its name.
    fn init(&mut self, name: String, dims: &[usize], v: &[f32]) -> String {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.clone()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..TensorProto::default()
        });
        name
    }

    fn init_i64(&mut self, name: String, v: &[i64]) -> String {
        self.inits.push(TensorProto {
            dims: vec![v.len() as i64],
            data_type: Some(INT64),
            name: Some(name.clone()),
            raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            ..TensorProto::default()
        });
        name
    }

    fn param(&mut self, layer: &str, what: &str, p: &Param) -> String {
        self.init(format!("{layer}.{what}"), p.data.shape(), p.data.data())
    }

    /// Writes node `n`: its ONNX output is named as the IR node.
    fn node(&mut self, g: &Graph, n: NodeIndex) -> Result<(), OnnxError> {
        let node = g.node(n);
        let name = node.name.clone();
        let ins: Vec<String> = g
            .operands(n)
            .iter()
            .map(|&o| g.node(o).name.clone())
            .collect();
        let x = g.operands(n).first().copied();
        let out = vec![name.clone()];
        let (op, attrs, inputs) = match &node.op {
            Op::Input { .. } => return Ok(()),
            Op::Conv(c) => {
                let mut inputs = ins.clone();
                inputs.push(self.param(&name, "weight", &c.weight));
                if let Some(b) = &c.bias {
                    inputs.push(self.param(&name, "bias", b));
                }
                let Some(x) = x else {
                    return Err(OnnxError::new(format!("conv `{name}` has no operand")));
                };
                let attrs = vec![
                    ints("kernel_shape", &pair(c.kernel)),
                    ints("strides", &pair(c.stride)),
                    ints("dilations", &pair(c.dilation)),
                    int("group", c.groups as i64),
                    window_pads(g, x, &c.pad, c.kernel, c.stride, c.dilation),
                ];
                ("Conv".to_string(), attrs, inputs)
            }
            Op::ConvTranspose(t) => {
                let mut inputs = ins.clone();
                inputs.push(self.param(&name, "weight", &t.weight));
                if let Some(b) = &t.bias {
                    inputs.push(self.param(&name, "bias", b));
                }
                let gm = &t.geom;
                let [pt, pb, pl, pr] = gm.pads.map(|v| v as i64);
                let attrs = vec![
                    ints("kernel_shape", &pair(gm.kernel)),
                    ints("strides", &pair(gm.stride)),
                    ints("dilations", &pair(gm.dilation)),
                    ints("output_padding", &pair(gm.output_padding)),
                    int("group", gm.groups as i64),
                    ints("pads", &[pt, pl, pb, pr]),
                ];
                ("ConvTranspose".to_string(), attrs, inputs)
            }
            Op::BatchNorm(bn) => {
                let mut inputs = ins.clone();
                for (what, p) in [
                    ("gamma", &bn.gamma),
                    ("beta", &bn.beta),
                    ("mean", &bn.mean),
                    ("var", &bn.var),
                ] {
                    inputs.push(self.param(&name, what, p));
                }
                let attrs = vec![float("epsilon", bn.eps)];
                ("BatchNormalization".to_string(), attrs, inputs)
            }
            Op::Unary(u) => {
                let (op, attrs, extra) = self.unary(&name, u);
                let mut inputs = ins.clone();
                inputs.extend(extra);
                (op, attrs, inputs)
            }
            Op::Add => ("Add".to_string(), vec![], ins.clone()),
            Op::Mul => ("Mul".to_string(), vec![], ins.clone()),
            Op::Concat => ("Concat".to_string(), vec![int("axis", 1)], ins.clone()),
            Op::Pool(p) => {
                let Some(x) = x else {
                    return Err(OnnxError::new(format!("pool `{name}` has no operand")));
                };
                let op = match p.kind {
                    PoolKind::Max => "MaxPool",
                    PoolKind::Avg => "AveragePool",
                };
                let attrs = vec![
                    ints("kernel_shape", &pair(p.kernel)),
                    ints("strides", &pair(p.stride)),
                    window_pads(g, x, &p.pad, p.kernel, p.stride, [1, 1]),
                ];
                (op.to_string(), attrs, ins.clone())
            }
            Op::GlobalAvgPool => ("GlobalAveragePool".to_string(), vec![], ins.clone()),
            Op::GlobalMaxPool => ("GlobalMaxPool".to_string(), vec![], ins.clone()),
            Op::Softmax => ("Softmax".to_string(), vec![int("axis", 1)], ins.clone()),
            Op::Lrn(l) => {
                let attrs = vec![
                    int("size", l.size as i64),
                    float("alpha", l.alpha),
                    float("beta", l.beta),
                    float("bias", l.bias),
                ];
                ("LRN".to_string(), attrs, ins.clone())
            }
            Op::PRelu { slope } => {
                let c = node.shape.c;
                let v: Vec<f32> = if slope.data.numel() == 1 {
                    vec![slope.data.data()[0]; c]
                } else {
                    slope.data.data().to_vec()
                };
                let s = self.init(format!("{name}.slope"), &[c, 1, 1], &v);
                let mut inputs = ins.clone();
                inputs.push(s);
                ("PRelu".to_string(), vec![], inputs)
            }
            Op::Shuffle { groups } => return self.shuffle(g, n, *groups),
            Op::Slice { start, end } => {
                let mut inputs = ins.clone();
                let (s, e) = (*start as i64, *end as i64);
                inputs.push(self.init_i64(format!("{name}.starts"), &[s]));
                inputs.push(self.init_i64(format!("{name}.ends"), &[e]));
                inputs.push(self.init_i64(format!("{name}.axes"), &[1]));
                ("Slice".to_string(), vec![], inputs)
            }
            Op::Pad(_) | Op::Upsample(_) => self.plane_op(&name, &node.op, ins.clone()),
        };
        self.push(&op, &name, inputs, out, attrs);
        Ok(())
    }

    /// `Pad` and `Resize`: the op type, attributes and inputs (their constants added).
    fn plane_op(
        &mut self,
        name: &str,
        op: &Op,
        ins: Vec<String>,
    ) -> (String, Vec<AttributeProto>, Vec<String>) {
        match op {
            Op::Pad(p) => {
                let [t, b, l, r] = p.pads.map(|v| v as i64);
                let pads = self.init_i64(format!("{name}.pads"), &[0, 0, t, l, 0, 0, b, r]);
                let value = self.init(format!("{name}.value"), &[], &[p.value]);
                let mut inputs = ins;
                inputs.extend([pads, value]);
                (
                    "Pad".to_string(),
                    vec![string("mode", p.mode.name())],
                    inputs,
                )
            }
            Op::Upsample(u) => {
                let [sh, sw] = u.scale.map(|v| v as f32);
                let scales = self.init(format!("{name}.scales"), &[4], &[1.0, 1.0, sh, sw]);
                let attrs = match u.mode {
                    UpMode::Nearest => vec![
                        string("mode", "nearest"),
                        string("coordinate_transformation_mode", "asymmetric"),
                        string("nearest_mode", "floor"),
                    ],
                    UpMode::Bilinear => vec![
                        string("mode", "linear"),
                        string("coordinate_transformation_mode", u.coords.name()),
                    ],
                };
                let mut inputs = ins;
                inputs.extend([String::new(), scales]);
                ("Resize".to_string(), attrs, inputs)
            }
            _ => ("Identity".to_string(), vec![], ins),
        }
    }

    /// An activation: the op type, its attributes and extra inputs (Clip's bounds).
    fn unary(&mut self, name: &str, u: &Unary) -> (String, Vec<AttributeProto>, Vec<String>) {
        let (op, attrs) = match *u {
            Unary::Relu => ("Relu", vec![]),
            Unary::Sigmoid => ("Sigmoid", vec![]),
            Unary::Tanh => ("Tanh", vec![]),
            Unary::LeakyRelu { alpha } => ("LeakyRelu", vec![float("alpha", alpha)]),
            Unary::HardSigmoid { alpha, beta } => (
                "HardSigmoid",
                vec![float("alpha", alpha), float("beta", beta)],
            ),
            Unary::HardSwish => ("HardSwish", vec![]),
            Unary::Relu6 | Unary::Clamp { .. } => {
                let (lo, hi) = match *u {
                    Unary::Clamp { min, max } => (min, max),
                    _ => (0.0, 6.0),
                };
                let mut extra = Vec::new();
                for (v, what) in [(lo, "min"), (hi, "max")] {
                    extra.push(if v.is_finite() {
                        self.init(format!("{name}.{what}"), &[], &[v])
                    } else {
                        String::new()
                    });
                }
                while extra.last().is_some_and(String::is_empty) {
                    extra.pop();
                }
                return ("Clip".into(), vec![], extra);
            }
        };
        (op.into(), attrs, vec![])
    }

    /// A channel shuffle: `Reshape` to `[N, G, C/G, H, W]`, `Transpose` of the two channel
    /// axes, `Reshape` back (the sizes must be known).
    fn shuffle(&mut self, g: &Graph, n: NodeIndex, groups: usize) -> Result<(), OnnxError> {
        let node = g.node(n);
        let name = &node.name;
        let Some((h, w)) = node.shape.hw() else {
            return Err(OnnxError::new(format!(
                "shuffle `{name}`: exporting a channel shuffle needs known input sizes (bind them with --size HxW)"
            )));
        };
        let x = g
            .operands(n)
            .first()
            .map(|&o| g.node(o).name.clone())
            .unwrap_or_default();
        let c = node.shape.c;
        let [h, w, c, gr] = [h, w, c, groups].map(|v| v as i64);
        let split = self.init_i64(format!("{name}.split"), &[0, gr, c / gr.max(1), h, w]);
        let merge = self.init_i64(format!("{name}.merge"), &[0, c, h, w]);
        let (a, b) = (format!("{name}/split"), format!("{name}/swap"));
        self.push("Reshape", &a, vec![x, split], vec![a.clone()], vec![]);
        self.push(
            "Transpose",
            &b,
            vec![a],
            vec![b.clone()],
            vec![ints("perm", &[0, 2, 1, 3, 4])],
        );
        self.push("Reshape", name, vec![b, merge], vec![name.clone()], vec![]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_exports_and_imports_back_to_the_same_graph_shape() {
        let src = "input x: [3, H, W]\n\
                   c = conv(x, out=4, kernel=3x3, stride=2, weights=random(seed=1), bias=random(seed=2))\n\
                   r = clamp(c, min=0)\n\
                   p = maxpool(r, kernel=3, stride=2, pad=same)\n\
                   u = upsample(p, scale=2, mode=bilinear, coords=align_corners)\n\
                   output u, x\n";
        let g = convc_ir::compile(src, std::path::Path::new(".")).unwrap();
        let bytes = export(&g, "test").unwrap();
        let m = crate::read::decode(&bytes).unwrap();
        let graph = m.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(ops, ["Conv", "Clip", "MaxPool", "Resize", "Identity"]);
        assert_eq!(graph.initializer.len(), 4, "weight, bias, clip min, scales");
        // SAME padding on a symbolic plane is auto_pad.
        assert!(
            graph.node[2]
                .attribute
                .iter()
                .any(|a| a.name() == "auto_pad")
        );
    }
}
