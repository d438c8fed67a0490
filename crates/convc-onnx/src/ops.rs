//! One ONNX node at a time: constants are folded, everything else becomes IR nodes.

use convc_ir::lower::{MAX_CHANNELS, MAX_PARAM_ELEMENTS, MAX_WINDOW};
use convc_ir::{BatchNorm, Conv, NodeIndex, Op, Pad, Param, Pool, PoolKind, Source, Unary};
use convc_tensor::Tensor;

use crate::OnnxError;
use crate::import::{Importer, Val};
use crate::proto::NodeProto;
use crate::read::{Attrs, Const, Data};

type R<T> = Result<T, OnnxError>;

fn fail<T>(at: &str, msg: impl std::fmt::Display) -> R<T> {
    Err(OnnxError::new(format!("{at}: {msg}")))
}

/// A pair of window sizes from an attribute (2 values), each in `1..=MAX_WINDOW`.
fn pair(v: Option<Vec<i64>>, default: [usize; 2], what: &str, at: &str) -> R<[usize; 2]> {
    let Some(v) = v else { return Ok(default) };
    if v.len() != 2 {
        return fail(
            at,
            format!(
                "`{what}` has {} values; convc runs 2-D windows (2 values)",
                v.len()
            ),
        );
    }
    let one = |x: i64| -> R<usize> {
        if (1..=MAX_WINDOW).contains(&x) {
            Ok(x as usize)
        } else {
            fail(
                at,
                format!("`{what}` value {x} is not from 1 to {MAX_WINDOW}"),
            )
        }
    };
    Ok([one(v[0])?, one(v[1])?])
}

/// A parameter tensor from a constant, checked finite; `what` names it in errors.
fn param(c: &Const, dims: Vec<usize>, what: &str, at: &str) -> R<Param> {
    param_values(c.floats(), dims, what, at)
}

fn param_values(v: Vec<f32>, dims: Vec<usize>, what: &str, at: &str) -> R<Param> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return fail(
            at,
            format!("{what} value {i} is {}, not a finite number", v[i]),
        );
    }
    let t = Tensor::new(dims, v).map_err(|e| OnnxError::new(format!("{at}: {what}: {e}")))?;
    Ok(Param::new(t, Source::Derived(format!("onnx {what}"))))
}

impl Importer<'_> {
    /// Imports one node.
    pub(crate) fn node(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let a = Attrs::new(&node.attribute, at.to_string());
        match node.op_type() {
            "Constant" => self.constant_node(node, &a, at),
            "ConstantOfShape" => self.constant_of_shape(node, &a, at),
            "Identity" | "Dropout" => self.identity(node, at),
            "Conv" => self.conv(node, &a, at),
            "BatchNormalization" => self.batchnorm(node, &a, at),
            "Relu" | "Sigmoid" | "Tanh" | "LeakyRelu" | "Clip" | "HardSigmoid" | "HardSwish" => {
                self.unary(node, &a, at)
            }
            "PRelu" => self.prelu(node, at),
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node, at),
            "Sum" => self.sum(node, at),
            "Concat" => self.concat(node, &a, at),
            "MaxPool" | "AveragePool" => self.pool(node, &a, at),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let x = self.plain_input(node, 0, at)?;
                let op = if node.op_type() == "GlobalMaxPool" {
                    Op::GlobalMaxPool
                } else {
                    Op::GlobalAvgPool
                };
                let n = self.add(Self::out_name(node), op, &[x], at)?;
                self.set(node, Val::Node { n, flat: false }, at)
            }
            "Softmax" => self.softmax(node, &a, at),
            "LRN" => self.lrn(node, &a, at),
            "Pad" => self.pad(node, &a, at),
            "Resize" | "Upsample" => self.resize(node, &a, at),
            "ConvTranspose" => self.conv_transpose(node, &a, at),
            "Transpose" => self.transpose(node, &a, at),
            "Flatten" => self.flatten(node, &a, at),
            "Reshape" => self.reshape(node, at),
            "Unsqueeze" => self.unsqueeze(node, &a, at),
            "Gemm" | "MatMul" => self.dense(node, &a, at),
            "Shape" => self.shape_op(node, &a, at),
            "Gather" => self.gather_op(node, &a, at),
            "Slice" => self.slice_op(node, &a, at),
            "Split" => self.split_op(node, &a, at),
            "Squeeze" => self.squeeze_op(node, &a, at),
            "Cast" => self.cast_op(node, &a, at),
            "Range" => self.range_op(node, at),
            "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceMean" => {
                self.reduce_op(node, &a, at)
            }
            other => fail(at, format!("`{other}` is not supported")),
        }
    }

    /// Input `i` as an IR node that is a plain `[N, C, H, W]` value (a flattened value only
    /// when its plane is 1x1, where both layouts agree).
    fn plain_input(&self, node: &NodeProto, i: usize, at: &str) -> R<NodeIndex> {
        let (x, flat) = self.node_input(node, i, at)?;
        if flat && self.g.node(x).shape.hw() != Some((1, 1)) {
            return fail(
                at,
                format!("input {i} is a flattened tensor; this op needs an image [N, C, H, W]"),
            );
        }
        Ok(x)
    }

    fn constant_node(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let c = if let Some(t) = a.tensor("value")? {
            self.constant(t)?
        } else if let Some(v) = a.float("value_float")? {
            Const {
                dims: vec![],
                data: Data::F32(vec![v]),
            }
        } else if let Some(a2) = a.get("value_floats") {
            Const {
                dims: vec![a2.floats.len()],
                data: Data::F32(a2.floats.clone()),
            }
        } else if let Some(v) = a.int("value_int")? {
            Const {
                dims: vec![],
                data: Data::I64(vec![v]),
            }
        } else if let Some(v) = a.ints("value_ints")? {
            Const {
                dims: vec![v.len()],
                data: Data::I64(v),
            }
        } else {
            return fail(
                at,
                "a Constant needs a `value`, `value_float(s)` or `value_int(s)` attribute (sparse and string constants are not supported)",
            );
        };
        self.set(node, Val::Const(c), at)
    }

    fn constant_of_shape(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let shape = self.const_input(node, 0, at)?;
        let Some(dims) = shape.ints() else {
            return fail(at, "the shape input must hold integers");
        };
        crate::fold::no_markers(shape, "ConstantOfShape", at)?;
        let dims = crate::read::dims_of(dims).map_err(|e| OnnxError::new(format!("{at}: {e}")))?;
        let n = crate::read::numel(&dims, MAX_PARAM_ELEMENTS)
            .map_err(|e| OnnxError::new(format!("{at}: {e}")))?;
        let value = match a.tensor("value")? {
            Some(t) => self.constant(t)?,
            None => Const {
                dims: vec![1],
                data: Data::F32(vec![0.0]),
            },
        };
        if value.len() != 1 {
            return fail(at, "`value` must hold exactly one element");
        }
        self.charge(n, Self::out_name(node))?;
        let data = match value.data {
            Data::F32(v) => Data::F32(vec![v[0]; n]),
            Data::I64(v) => Data::I64(vec![v[0]; n]),
        };
        self.set(node, Val::Const(Const { dims, data }), at)
    }

    fn identity(&mut self, node: &NodeProto, at: &str) -> R<()> {
        if node.op_type() == "Dropout"
            && let Some(name) = self.opt_input(node, 2)
            && let Val::Const(c) = self.val(name, at)?
            && c.floats().first().is_some_and(|&v| v != 0.0)
        {
            return fail(at, "training_mode is true: convc runs inference only");
        }
        let name = node.input.first().cloned().unwrap_or_default();
        let v = self.val(&name, at)?.clone();
        self.set(node, v, at)
    }

    /// Padding from `auto_pad` and `pads` for a window on `x`.
    fn pads(
        &self,
        a: &Attrs,
        x: NodeIndex,
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        at: &str,
    ) -> R<Pad> {
        let auto = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        match auto.as_str() {
            "NOTSET" | "" => {
                let Some(p) = a.ints("pads")? else {
                    return Ok(Pad::Explicit([0; 4]));
                };
                if p.len() != 4 {
                    return fail(
                        at,
                        format!("`pads` has {} values; a 2-D window needs 4", p.len()),
                    );
                }
                if let Some(bad) = p.iter().find(|&&v| !(0..=MAX_WINDOW).contains(&v)) {
                    return fail(
                        at,
                        format!("`pads` value {bad} is not from 0 to {MAX_WINDOW}"),
                    );
                }
                // ONNX: [top, left, bottom, right]; convc: [top, bottom, left, right].
                let u = |i: usize| p[i] as usize;
                Ok(Pad::Explicit([u(0), u(2), u(1), u(3)]))
            }
            "VALID" => Ok(Pad::Explicit([0; 4])),
            "SAME_UPPER" => Ok(Pad::Same),
            "SAME_LOWER" => {
                let Some((h, w)) = self.g.node(x).shape.hw() else {
                    return fail(
                        at,
                        "auto_pad=SAME_LOWER needs a fixed input size (convc's `same` is SAME_UPPER)",
                    );
                };
                let [t, b, l, r] = Pad::Same.resolve(h, w, k, s, d);
                Ok(Pad::Explicit([b, t, r, l]))
            }
            other => fail(
                at,
                format!("auto_pad `{other}` is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER"),
            ),
        }
    }

    fn conv(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.plain_input(node, 0, at)?;
        let w = self.const_input(node, 1, at)?.clone();
        if w.dims.len() != 4 {
            return fail(
                at,
                format!(
                    "weights of shape {} are not those of a 2-D convolution (4 dimensions)",
                    convc_tensor::fmt_shape(&w.dims)
                ),
            );
        }
        let kernel = [w.dims[2], w.dims[3]];
        if let Some(ks) = a.ints("kernel_shape")?
            && ks.iter().map(|&v| v as usize).ne(kernel)
        {
            return fail(
                at,
                format!("kernel_shape {ks:?} differs from the weights' {kernel:?}"),
            );
        }
        let kernel = pair(
            Some(kernel.iter().map(|&v| v as i64).collect()),
            [1, 1],
            "kernel",
            at,
        )?;
        let stride = pair(a.ints("strides")?, [1, 1], "strides", at)?;
        let dilation = pair(a.ints("dilations")?, [1, 1], "dilations", at)?;
        let groups = a.int("group")?.unwrap_or(1);
        if !(1..=MAX_CHANNELS).contains(&groups) {
            return fail(
                at,
                format!("group {groups} is not from 1 to {MAX_CHANNELS}"),
            );
        }
        let pad = self.pads(a, x, kernel, stride, dilation, at)?;
        let out = w.dims[0];
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
                Some(param(b, vec![out], "bias", at)?)
            }
        };
        let weight = param(&w, w.dims.clone(), "weights", at)?;
        let op = Op::Conv(Conv {
            out,
            kernel,
            stride,
            dilation,
            pad,
            groups: groups as usize,
            weight,
            bias,
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    fn batchnorm(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        if self.opset < 9 && a.int("spatial")?.unwrap_or(1) == 0 {
            return fail(at, "spatial=0 (per-element statistics) is not supported");
        }
        if a.int("training_mode")?.unwrap_or(0) != 0 {
            return fail(at, "training_mode=1: convc runs inference only");
        }
        let x = self.plain_input(node, 0, at)?;
        let c = self.g.node(x).shape.c;
        let eps = a.float("epsilon")?.unwrap_or(1e-5);
        if !(eps.is_finite() && eps >= 0.0) {
            return fail(at, format!("epsilon {eps} is not a finite number >= 0"));
        }
        let mut p = Vec::new();
        for (i, what) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            let v = self.const_input(node, i, at)?;
            if v.len() != c {
                return fail(
                    at,
                    format!("{what} has {} values for {c} channels", v.len()),
                );
            }
            p.push(param(v, vec![c], what, at)?);
        }
        if let Some(i) = p[3]
            .data
            .data()
            .iter()
            .position(|&v| v as f64 + eps as f64 <= 0.0)
        {
            return fail(at, format!("var + epsilon is not positive for channel {i}"));
        }
        let [gamma, beta, mean, var]: [Param; 4] = p.try_into().map_err(|_| OnnxError::new(at))?;
        let op = Op::BatchNorm(BatchNorm {
            mean,
            var,
            gamma,
            beta,
            eps,
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// A scalar bound of Clip (opset 11+ inputs), or the default.
    fn clip_bound(&self, node: &NodeProto, i: usize, default: f32, at: &str) -> R<f32> {
        if self.opt_input(node, i).is_none() {
            return Ok(default);
        }
        let c = self.const_input(node, i, at)?;
        match c.floats().as_slice() {
            [v] if !v.is_nan() => Ok(*v),
            _ => fail(at, format!("input {i} must be one number")),
        }
    }

    fn unary(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let (x, flat) = self.node_input(node, 0, at)?;
        let u = match node.op_type() {
            "Relu" => Unary::Relu,
            "Sigmoid" => Unary::Sigmoid,
            "Tanh" => Unary::Tanh,
            "LeakyRelu" => {
                let alpha = a.float("alpha")?.unwrap_or(0.01);
                if !alpha.is_finite() {
                    return fail(at, format!("alpha {alpha} is not finite"));
                }
                Unary::LeakyRelu { alpha }
            }
            "HardSigmoid" => {
                let alpha = a.float("alpha")?.unwrap_or(0.2);
                let beta = a.float("beta")?.unwrap_or(0.5);
                if !(alpha.is_finite() && beta.is_finite()) {
                    return fail(at, format!("alpha {alpha} and beta {beta} must be finite"));
                }
                Unary::HardSigmoid { alpha, beta }
            }
            "HardSwish" => Unary::HardSwish,
            _ => {
                let (min, max) = if self.opset < 11 {
                    (
                        a.float("min")?.unwrap_or(f32::NEG_INFINITY),
                        a.float("max")?.unwrap_or(f32::INFINITY),
                    )
                } else {
                    (
                        self.clip_bound(node, 1, f32::NEG_INFINITY, at)?,
                        self.clip_bound(node, 2, f32::INFINITY, at)?,
                    )
                };
                if min.is_nan() || max.is_nan() || min > max {
                    return fail(at, format!("min {min} must not be more than max {max}"));
                }
                Unary::Clamp { min, max }
            }
        };
        let n = self.add(Self::out_name(node), Op::Unary(u), &[x], at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    fn binary(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let name = |i: usize| node.input.get(i).cloned().unwrap_or_default();
        let (va, vb) = (
            self.val(&name(0), at)?.clone(),
            self.val(&name(1), at)?.clone(),
        );
        match (va, vb) {
            (Val::Node { n: a, flat: fa }, Val::Node { n: b, flat: fb }) => {
                self.binary_nodes(node, (a, fa), (b, fb), at)
            }
            (Val::Const(a), Val::Const(b)) => {
                let c = crate::fold::binary(node.op_type(), &a, &b, at)?.ok_or_else(|| {
                    OnnxError::new(format!(
                        "{at}: constant operands of shapes {} and {} do not broadcast",
                        convc_tensor::fmt_shape(&a.dims),
                        convc_tensor::fmt_shape(&b.dims)
                    ))
                })?;
                self.set(node, Val::Const(c), at)
            }
            (Val::Node { n, flat }, Val::Const(c)) => self.affine(node, n, flat, &c, false, at),
            (Val::Const(c), Val::Node { n, flat }) => self.affine(node, n, flat, &c, true, at),
            _ => fail(at, "an operand is a 5-D [N, G, C/G, H, W] tensor"),
        }
    }

    /// `Add`, `Sub` or `Mul` of two computed tensors: equal shapes, or one `[N, C, 1, 1]`
    /// broadcast over the other's plane. `Sub(a, b)` is `add(a, -1 * b)` (the negation an
    /// affine batchnorm, which `fold-batchnorm` may merge into the conv before it).
    fn binary_nodes(
        &mut self,
        node: &NodeProto,
        (a, fa): (NodeIndex, bool),
        (b, fb): (NodeIndex, bool),
        at: &str,
    ) -> R<()> {
        let ty = node.op_type();
        if ty == "Div" {
            return fail(
                at,
                "Div of two computed tensors is not supported (only division by a constant)",
            );
        }
        // A flattened operand is fine where its plane is 1x1 (both layouts agree).
        let one = |x: NodeIndex| self.g.node(x).shape.hw() == Some((1, 1));
        if ((fa && !one(a)) || (fb && !one(b))) && fa != fb {
            return fail(
                at,
                format!("{ty} of a flattened and an unflattened tensor is not supported"),
            );
        }
        let flat = if one(a) { fb } else { fa };
        let out = Self::out_name(node).to_string();
        let (op, b) = match ty {
            "Mul" => (Op::Mul, b),
            "Add" => (Op::Add, b),
            _ => {
                let ch = self.g.node(b).shape.c;
                let neg = Op::BatchNorm(BatchNorm {
                    mean: param_values(vec![0.0; ch], vec![ch], "mean", at)?,
                    var: param_values(vec![1.0; ch], vec![ch], "var", at)?,
                    gamma: param_values(vec![-1.0; ch], vec![ch], "Sub", at)?,
                    beta: param_values(vec![0.0; ch], vec![ch], "Sub", at)?,
                    eps: 0.0,
                });
                (Op::Add, self.add(&format!("{out}_neg"), neg, &[b], at)?)
            }
        };
        let n = self.add(&out, op, &[a, b], at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    /// `x op c` (or `c op x` when `swapped`) with a per-channel or scalar constant, as an
    /// exact affine batchnorm (mean 0, var 1, eps 0).
    fn affine(
        &mut self,
        node: &NodeProto,
        x: NodeIndex,
        flat: bool,
        c: &Const,
        swapped: bool,
        at: &str,
    ) -> R<()> {
        let ch = self.g.node(x).shape.c;
        let v = channel_vector(c, ch, flat).ok_or_else(|| {
            OnnxError::new(format!(
                "{at}: a constant of shape {} does not broadcast per channel over {} channels (convc supports scalars and [C, 1, 1] constants)",
                convc_tensor::fmt_shape(&c.dims),
                ch
            ))
        })?;
        let (gamma, beta): (Vec<f32>, Vec<f32>) = match (node.op_type(), swapped) {
            ("Add", _) => (vec![1.0; ch], v),
            ("Sub", false) => (vec![1.0; ch], v.iter().map(|x| -x).collect()),
            ("Sub", true) => (vec![-1.0; ch], v),
            ("Mul", _) => (v, vec![0.0; ch]),
            ("Div", false) => {
                if v.contains(&0.0) {
                    return fail(at, "division by a constant that holds 0");
                }
                (v.iter().map(|x| 1.0 / x).collect(), vec![0.0; ch])
            }
            _ => {
                return fail(
                    at,
                    "a constant divided by a computed tensor is not supported",
                );
            }
        };
        let op = Op::BatchNorm(BatchNorm {
            mean: param_values(vec![0.0; ch], vec![ch], "mean", at)?,
            var: param_values(vec![1.0; ch], vec![ch], "var", at)?,
            gamma: param_values(gamma, vec![ch], node.op_type(), at)?,
            beta: param_values(beta, vec![ch], node.op_type(), at)?,
            eps: 0.0,
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    /// `PRelu(X, slope)`: a constant slope that is a scalar or per channel (`[C, 1, 1]`,
    /// `[1, C, 1, 1]`; `[C]` or `[1, C]` on a flattened value), as ONNX broadcasts it.
    fn prelu(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let (x, flat) = self.node_input(node, 0, at)?;
        let s = self.const_input(node, 1, at)?;
        let ch = self.g.node(x).shape.c;
        let v = channel_vector(s, ch, flat).ok_or_else(|| {
            OnnxError::new(format!(
                "{at}: a slope of shape {} does not broadcast per channel over {ch} channels (convc supports one slope, or one per channel as [C, 1, 1])",
                convc_tensor::fmt_shape(&s.dims)
            ))
        })?;
        let slope = param_values(v, vec![ch], "slope", at)?;
        let n = self.add(Self::out_name(node), Op::PRelu { slope }, &[x], at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    fn sum(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let mut ins = Vec::new();
        for i in 0..node.input.len() {
            ins.push(self.node_input(node, i, at)?);
        }
        let Some(&(first, flat)) = ins.first() else {
            return fail(at, "Sum needs at least one input");
        };
        if ins.iter().any(|&(_, f)| f != flat) {
            return fail(
                at,
                "Sum of flattened and unflattened tensors is not supported",
            );
        }
        let mut acc = first;
        for (k, &(x, _)) in ins.iter().enumerate().skip(1) {
            let out = Self::out_name(node).to_string();
            let name = if k + 1 == ins.len() {
                out
            } else {
                format!("{out}_sum{k}")
            };
            acc = self.add(&name, Op::Add, &[acc, x], at)?;
        }
        self.set(node, Val::Node { n: acc, flat }, at)
    }

    fn concat(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let Some(axis) = a.int("axis")? else {
            return fail(at, "Concat needs an `axis`");
        };
        if self.concat_consts(node, axis, at)?.is_some() {
            return Ok(());
        }
        let mut ins = Vec::new();
        for i in 0..node.input.len() {
            ins.push(self.node_input(node, i, at)?);
        }
        let flat = ins.first().is_some_and(|p| p.1);
        let channels = if flat {
            matches!(axis, 1 | -1)
        } else {
            matches!(axis, 1 | -3)
        };
        if !channels {
            return fail(
                at,
                format!("axis {axis} is not the channel axis (convc concatenates channels)"),
            );
        }
        let mut xs = Vec::new();
        for (i, &(x, f)) in ins.iter().enumerate() {
            if f != flat || (f && self.g.node(x).shape.hw() != Some((1, 1))) {
                return fail(
                    at,
                    format!("input {i} cannot be concatenated along channels with the others"),
                );
            }
            xs.push(x);
        }
        let n = self.add(Self::out_name(node), Op::Concat, &xs, at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    fn pool(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.plain_input(node, 0, at)?;
        if node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return fail(at, "the Indices output of MaxPool is not supported");
        }
        let Some(ks) = a.ints("kernel_shape")? else {
            return fail(at, "`kernel_shape` is required");
        };
        let kernel = pair(Some(ks), [1, 1], "kernel_shape", at)?;
        let stride = pair(a.ints("strides")?, [1, 1], "strides", at)?;
        if pair(a.ints("dilations")?, [1, 1], "dilations", at)? != [1, 1] {
            return fail(at, "dilated pooling is not supported");
        }
        let mut pad = self.pads(a, x, kernel, stride, [1, 1], at)?;
        let max = node.op_type() == "MaxPool";
        let include_pad = !max && a.int("count_include_pad")?.unwrap_or(0) != 0;
        let ceil = a.int("ceil_mode")?.unwrap_or(0) != 0;
        if ceil || include_pad {
            let Some((h, w)) = self.g.node(x).shape.hw() else {
                return fail(
                    at,
                    "ceil_mode and count_include_pad need a fixed input size",
                );
            };
            let p = pad.resolve(h, w, kernel, stride, [1, 1]);
            if include_pad && p != [0; 4] {
                return fail(
                    at,
                    "count_include_pad=1 with padding is not supported: convc's avgpool averages in-bounds values only",
                );
            }
            if ceil {
                let (b, a2) = ceil_pad(h, p[0], p[1], kernel[0], stride[0]);
                let (l, r) = ceil_pad(w, p[2], p[3], kernel[1], stride[1]);
                pad = Pad::Explicit([b, a2, l, r]);
            }
        }
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let op = Op::Pool(Pool {
            kind,
            kernel,
            stride,
            pad,
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// Softmax over channels. Before opset 13 ONNX takes it over everything from `axis` on
    /// (`C*H*W` for axis 1), which is over channels only on a 1x1 plane; from 13 over one axis.
    fn softmax(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let (x, flat) = self.node_input(node, 0, at)?;
        let rank = if flat { 2 } else { 4 };
        let axis = a
            .int("axis")?
            .unwrap_or(if self.opset < 13 { 1 } else { -1 });
        let ax = if axis < 0 { axis + rank } else { axis };
        let one = self.g.node(x).shape.hw() == Some((1, 1));
        let channels = ax == 1 && (one || (self.opset >= 13 && !flat));
        if !channels {
            return fail(
                at,
                format!(
                    "softmax over axis {axis} of a rank-{rank} tensor is not supported (convc's softmax is over channels)"
                ),
            );
        }
        let n = self.add(Self::out_name(node), Op::Softmax, &[x], at)?;
        self.set(node, Val::Node { n, flat }, at)
    }

    fn lrn(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.plain_input(node, 0, at)?;
        let Some(size) = a.int("size")? else {
            return fail(at, "`size` is required");
        };
        if !(1..=MAX_CHANNELS).contains(&size) {
            return fail(at, format!("size {size} is not from 1 to {MAX_CHANNELS}"));
        }
        let f = |k: &str, d: f32| -> R<f32> {
            let v = a.float(k)?.unwrap_or(d);
            if v.is_finite() {
                Ok(v)
            } else {
                fail(at, format!("{k} {v} is not finite"))
            }
        };
        let l = convc_ir::Lrn {
            size: size as usize,
            alpha: f("alpha", 1e-4)?,
            beta: f("beta", 0.75)?,
            bias: f("bias", 1.0)?,
        };
        let n = self.add(Self::out_name(node), Op::Lrn(l), &[x], at)?;
        self.set(node, Val::Node { n, flat: false }, at)
    }

    fn flatten(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let axis = a.int("axis")?.unwrap_or(1);
        let name = node.input.first().cloned().unwrap_or_default();
        match self.val(&name, at)?.clone() {
            Val::Const(c) => {
                let r = c.dims.len() as i64;
                let ax = if axis < 0 { axis + r } else { axis };
                if !(0..=r).contains(&ax) {
                    return fail(at, format!("axis {axis} is out of range"));
                }
                let outer: usize = c.dims[..ax as usize].iter().product();
                let inner: usize = c.dims[ax as usize..].iter().product();
                self.set(
                    node,
                    Val::Const(Const {
                        dims: vec![outer, inner],
                        data: c.data,
                    }),
                    at,
                )
            }
            Val::Node { n, flat } => {
                if !flat && !matches!(axis, 1 | -3) {
                    return fail(
                        at,
                        format!(
                            "Flatten with axis {axis} is not supported (only axis 1: [N, C*H*W])"
                        ),
                    );
                }
                self.set(node, Val::Node { n, flat: true }, at)
            }
            Val::Grouped { .. } => fail(at, "Flatten of a 5-D tensor is not supported"),
        }
    }

    fn reshape(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let shape = self.const_input(node, 1, at)?.clone();
        let mut target: Vec<i64> = match shape.ints() {
            Some(t) => t.to_vec(),
            None => return fail(at, "the shape input must hold integers"),
        };
        let name = node.input.first().cloned().unwrap_or_default();
        let x = self.val(&name, at)?.clone();
        // The batch size may be the first dimension of a computed tensor's new shape: there
        // it is N, as 0 (copy) says.
        if !matches!(x, Val::Const(_)) && target.first() == Some(&crate::fold::BATCH) {
            target[0] = 0;
        }
        crate::fold::no_markers(
            &Const {
                dims: vec![target.len()],
                data: Data::I64(target.clone()),
            },
            "this Reshape",
            at,
        )?;
        match x {
            Val::Const(c) => {
                let dims = resolve_reshape(&c.dims, &target).ok_or_else(|| {
                    OnnxError::new(format!(
                        "{at}: cannot reshape {} to {target:?}",
                        convc_tensor::fmt_shape(&c.dims)
                    ))
                })?;
                self.set(node, Val::Const(Const { dims, data: c.data }), at)
            }
            Val::Node { n, flat } => {
                if let Some(groups) = self.group_split(n, flat, &target) {
                    let v = Val::Grouped {
                        n,
                        groups,
                        transposed: false,
                    };
                    return self.set(node, v, at);
                }
                let flat2 = self.reshape_node(n, flat, &target).ok_or_else(|| {
                    let s = &self.g.node(n).shape;
                    let from = if flat { format!("[N, {}*{}*{}]", s.c, s.h, s.w) } else { format!("[N, {}, {}, {}]", s.c, s.h, s.w) };
                    OnnxError::new(format!("{at}: reshaping {from} to {target:?} is not supported (only flattening to [N, C*H*W] and back, and channel shuffles)"))
                })?;
                self.set(node, Val::Node { n, flat: flat2 }, at)
            }
            Val::Grouped {
                n,
                groups,
                transposed,
            } => {
                if self.reshape_node(n, false, &target) != Some(false) {
                    return fail(
                        at,
                        format!(
                            "reshaping a [N, G, C/G, H, W] tensor to {target:?} is not supported (only back to [N, C, H, W])"
                        ),
                    );
                }
                let v = if transposed {
                    let s = Self::out_name(node).to_string();
                    Val::Node {
                        n: self.add(&s, Op::Shuffle { groups }, &[n], at)?,
                        flat: false,
                    }
                } else {
                    Val::Node { n, flat: false }
                };
                self.set(node, v, at)
            }
        }
    }

    /// `Some(G)` when reshaping the plain node `n` to `t` splits its channels into
    /// `[G, C/G]`: `t` is `[N, G, C/G, H, W]` (one of `G`, `C/G` may be -1).
    fn group_split(&self, n: NodeIndex, flat: bool, t: &[i64]) -> Option<usize> {
        let s = &self.g.node(n).shape;
        let (h, w) = s.hw()?;
        let [b, g, per, th, tw] = *t else { return None };
        let c = s.c as i64;
        let (g, per) = match (g, per) {
            (-1, p) if p > 0 && c % p == 0 => (c / p, p),
            (g, -1) if g > 0 && c % g == 0 => (g, c / g),
            (g, p) => (g, p),
        };
        let ok = !flat
            && (-1..=1).contains(&b)
            && g > 0
            && per > 0
            && g.checked_mul(per) == Some(c)
            && (th, tw) == (h as i64, w as i64);
        ok.then_some(g as usize)
    }

    fn transpose(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let name = node.input.first().cloned().unwrap_or_default();
        let perm = a.ints("perm")?.unwrap_or_default();
        match self.val(&name, at)?.clone() {
            Val::Grouped {
                n,
                groups,
                transposed: false,
            } if perm == [0, 2, 1, 3, 4] => self.set(
                node,
                Val::Grouped {
                    n,
                    groups,
                    transposed: true,
                },
                at,
            ),
            _ => fail(
                at,
                format!(
                    "Transpose with perm {perm:?} is not supported (only the channel shuffle's [0, 2, 1, 3, 4] of a [N, G, C/G, H, W] reshape)"
                ),
            ),
        }
    }

    /// Whether the node reshaped to `target` is flat; `None` when the reshape is not one
    /// convc can express (a flatten, its inverse on a 1x1 plane, or no change).
    fn reshape_node(&self, n: NodeIndex, flat: bool, t: &[i64]) -> Option<bool> {
        let s = &self.g.node(n).shape;
        let hw = s.hw();
        let k = hw.map(|(h, w)| s.c * h * w);
        let batch_ok = |b: i64| (-1..=1).contains(&b);
        match t {
            [b, x]
                if batch_ok(*b) && (*x == -1 && *b != -1 || Some(*x as usize) == k && *x > 0) =>
            {
                Some(true)
            }
            [b, c, h, w] if batch_ok(*b) => {
                let cur: [i64; 3] = if flat {
                    [k? as i64, 1, 1]
                } else {
                    [s.c as i64, hw?.0 as i64, hw?.1 as i64]
                };
                let mut want: Vec<i64> = [*c, *h, *w]
                    .iter()
                    .zip(cur)
                    .map(|(&d, cur)| if d == 0 { cur } else { d })
                    .collect();
                // One -1 takes what the others leave of the C*H*W values.
                if let Some(i) = want.iter().position(|&d| d == -1) {
                    let others: i64 = want.iter().filter(|&&d| d != -1).product();
                    let k = k? as i64;
                    if others <= 0
                        || k % others != 0
                        || want.iter().filter(|&&d| d == -1).count() > 1
                    {
                        return None;
                    }
                    want[i] = k / others;
                }
                let same_as_plain = want == [s.c as i64, hw?.0 as i64, hw?.1 as i64];
                (same_as_plain && want[..] == cur[..]
                    || flat && hw == Some((1, 1)) && want == [k? as i64, 1, 1])
                .then_some(false)
            }
            _ => None,
        }
    }

    fn unsqueeze(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let axes: Vec<i64> = if self.opset < 13 {
            a.ints("axes")?.unwrap_or_default()
        } else {
            match self.const_input(node, 1, at)?.ints() {
                Some(v) => v.to_vec(),
                None => return fail(at, "axes must be integers"),
            }
        };
        let c = match self.val(node.input.first().map(String::as_str).unwrap_or(""), at)? {
            Val::Const(c) => c.clone(),
            Val::Node { n, flat } => {
                let (n, flat) = (*n, *flat);
                return self.unsqueeze_node(node, &axes, n, flat, at);
            }
            Val::Grouped { .. } => {
                return fail(at, "Unsqueeze of a 5-D tensor is not supported");
            }
        };
        let r = (c.dims.len() + axes.len()) as i64;
        let mut ax: Vec<i64> = axes
            .iter()
            .map(|&x| if x < 0 { x + r } else { x })
            .collect();
        ax.sort_unstable();
        if ax.iter().any(|&x| !(0..r).contains(&x)) || ax.windows(2).any(|w| w[0] == w[1]) {
            return fail(
                at,
                format!("axes {axes:?} are not distinct axes of a rank-{r} result"),
            );
        }
        let mut dims = c.dims.clone();
        for &x in &ax {
            dims.insert(x as usize, 1);
        }
        self.set(node, Val::Const(Const { dims, data: c.data }), at)
    }

    /// Gemm or MatMul on a flattened `[N, C*H*W]` value: a convolution whose kernel is the
    /// whole `H x W` plane.
    fn dense(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let (x, flat) = self.node_input(node, 0, at)?;
        let s = self.g.node(x).shape.clone();
        if !flat {
            return fail(
                at,
                "the first input must be a 2-D [N, K] tensor (from Flatten or Reshape)",
            );
        }
        let Some((h, w)) = s.hw() else {
            return fail(
                at,
                "a fully connected layer needs a fixed input size (give the input a fixed H and W)",
            );
        };
        let gemm = node.op_type() == "Gemm";
        if gemm && a.int("transA")?.unwrap_or(0) != 0 {
            return fail(at, "transA=1 is not supported");
        }
        let trans_b = gemm && a.int("transB")?.unwrap_or(0) != 0;
        let alpha = if gemm {
            a.float("alpha")?.unwrap_or(1.0)
        } else {
            1.0
        };
        let beta = if gemm {
            a.float("beta")?.unwrap_or(1.0)
        } else {
            1.0
        };
        let b = self.const_input(node, 1, at)?;
        let k = s.c * h * w;
        let (rows, cols) = match b.dims[..] {
            [r, c] => (r, c),
            _ => {
                return fail(
                    at,
                    format!(
                        "B of shape {} is not a matrix",
                        convc_tensor::fmt_shape(&b.dims)
                    ),
                );
            }
        };
        let (kb, out) = if trans_b { (cols, rows) } else { (rows, cols) };
        if kb != k {
            return fail(
                at,
                format!(
                    "B of shape {} does not match K = {k} inputs",
                    convc_tensor::fmt_shape(&b.dims)
                ),
            );
        }
        let bv = b.floats();
        let mut wv = vec![0f32; out * k];
        for o in 0..out {
            for i in 0..k {
                let v = if trans_b {
                    bv[o * k + i]
                } else {
                    bv[i * out + o]
                };
                wv[o * k + i] = alpha * v;
            }
        }
        let bias = match self.opt_input(node, 2).filter(|_| gemm) {
            None => None,
            Some(_) => {
                let c = self.const_input(node, 2, at)?;
                let v = c.floats();
                let v = match v.len() {
                    1 => vec![v[0] * beta; out],
                    l if l == out => v.iter().map(|x| x * beta).collect(),
                    _ => {
                        return fail(
                            at,
                            format!(
                                "C of shape {} does not broadcast to [N, {out}]",
                                convc_tensor::fmt_shape(&c.dims)
                            ),
                        );
                    }
                };
                Some(param_values(v, vec![out], "C", at)?)
            }
        };
        let kernel = pair(Some(vec![h as i64, w as i64]), [1, 1], "kernel", at)?;
        let weight = param_values(wv, vec![out, s.c, h, w], "B", at)?;
        let op = Op::Conv(Conv {
            out,
            kernel,
            stride: [1, 1],
            dilation: [1, 1],
            pad: Pad::Explicit([0; 4]),
            groups: 1,
            weight,
            bias,
        });
        let n = self.add(Self::out_name(node), op, &[x], at)?;
        self.set(node, Val::Node { n, flat: true }, at)
    }
}

/// After-padding for `ceil_mode` on one axis of size `n` with padding `(b, a)`: the output
/// size ONNX Runtime gives, as explicit padding (a last window must start inside the input
/// or the leading padding).
fn ceil_pad(n: usize, b: usize, a: usize, k: usize, s: usize) -> (usize, usize) {
    let span = (n + b + a).saturating_sub(k);
    let mut out = span.div_ceil(s) + 1;
    if (out - 1) * s >= n + b {
        out -= 1;
    }
    let need = ((out - 1) * s + k).saturating_sub(n + b);
    (b, a.max(need))
}

/// The per-channel values of a constant that broadcasts over `[N, C, H, W]` (or `[N, C]` for
/// a flattened value) channel by channel: a scalar or a `[1, C, 1, 1]`-like shape.
fn channel_vector(c: &Const, ch: usize, flat: bool) -> Option<Vec<f32>> {
    let rank = if flat { 2 } else { 4 };
    if c.dims.len() > rank {
        return None;
    }
    let mut d = vec![1usize; rank - c.dims.len()];
    d.extend(&c.dims);
    let per_channel = d[0] == 1 && d[2..].iter().all(|&x| x == 1) && (d[1] == 1 || d[1] == ch);
    if !per_channel {
        return None;
    }
    let v = c.floats();
    Some(if v.len() == 1 { vec![v[0]; ch] } else { v })
}

/// The dimensions of a constant reshaped to `target` (0 copies, -1 infers), if valid.
fn resolve_reshape(dims: &[usize], target: &[i64]) -> Option<Vec<usize>> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => out.push(*dims.get(i)?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            t if t > 0 => out.push(usize::try_from(t).ok()?),
            _ => return None,
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if let Some(i) = infer {
        if known == 0 || !n.is_multiple_of(known) {
            return None;
        }
        out[i] = n / known;
    }
    (out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))? == n).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_mode_padding_matches_onnx_runtime() {
        // 112 -> 3x3 stride 2, no pads: floor gives 55, ceil 56.
        assert_eq!(ceil_pad(112, 0, 0, 3, 2), (0, 1));
        // An exact fit needs nothing.
        assert_eq!(ceil_pad(7, 0, 0, 3, 2), (0, 0));
        // A last window that would start in the trailing padding is dropped: 5, k2 s2, pad 1+1.
        assert_eq!(ceil_pad(5, 1, 1, 2, 2), (1, 1));
    }

    #[test]
    fn channel_vectors() {
        let c = |dims: Vec<usize>, v: Vec<f32>| Const {
            dims,
            data: Data::F32(v),
        };
        assert_eq!(
            channel_vector(&c(vec![1, 2, 1, 1], vec![1.0, 2.0]), 2, false),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            channel_vector(&c(vec![2, 1, 1], vec![1.0, 2.0]), 2, false),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            channel_vector(&c(vec![], vec![3.0]), 2, false),
            Some(vec![3.0, 3.0])
        );
        // [C] aligns with W, not C.
        assert_eq!(channel_vector(&c(vec![2], vec![1.0, 2.0]), 2, false), None);
        assert_eq!(
            channel_vector(&c(vec![2], vec![1.0, 2.0]), 2, true),
            Some(vec![1.0, 2.0])
        );
    }

    #[test]
    fn reshapes_of_constants() {
        assert_eq!(resolve_reshape(&[2, 3, 4], &[0, -1]), Some(vec![2, 12]));
        assert_eq!(resolve_reshape(&[2, 3], &[-1, -1]), None);
        assert_eq!(resolve_reshape(&[2, 3], &[4, -1]), None);
        assert_eq!(resolve_reshape(&[6], &[3, 2]), Some(vec![3, 2]));
    }
}
