//! ONNX graph -> convc graph IR.
//!
//! ONNX values are batched NCHW tensors; convc's are one image `[C, H, W]`, so the batch
//! axis is dropped (any batch size runs). A 2-D value `[N, K]` made by `Flatten` or `Reshape`
//! stays the same IR node and is marked flat: `Gemm`/`MatMul` on it become a convolution whose
//! kernel covers the whole `H x W` plane (a fully connected layer), giving `[K', 1, 1]`.
//! Constants (initializers, `Constant`, `ConstantOfShape`, `Unsqueeze`/`Reshape`/`Flatten`
//! of constants, and the shape arithmetic of [`crate::fold`]) are folded while importing; an elementwise `Add`/`Sub`/`Mul`/`Div` of a
//! value and a per-channel (or scalar) constant becomes an exact affine `batchnorm`
//! (mean 0, var 1, eps 0), which `fold-batchnorm` merges into a preceding conv.
//!
//! Every node's op type is checked first: an unsupported op is one error that lists every
//! unsupported op of the model with its nodes. Other errors name the node, its op type and
//! the model's opset.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use convc_ir::lower::{Limits, MAX_PARAM_ELEMENTS};
use convc_ir::{Dim, Graph, Node, NodeIndex, Op, Shape};
use convc_lang::Span;

use crate::OnnxError;
use crate::proto::{GraphProto, ModelProto, NodeProto};
use crate::read::{self, Const};

/// The op types the importer maps (default domain).
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LRN",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "PRelu",
    "Pad",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// The largest `.onnx` file read (protobuf itself cannot describe a message over 2 GiB; bigger
/// models keep their weights in external data files).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// An ONNX value during import.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// A constant, folded.
    Const(Const),
    /// An IR node. `flat`: the ONNX value is `[N, C*H*W]` (after `Flatten`), the IR node
    /// still `[C, H, W]`.
    Node { n: NodeIndex, flat: bool },
    /// The IR node `n` viewed as `[N, groups, C/groups, H, W]` (a `Reshape` that starts a
    /// channel shuffle); `transposed` after the `Transpose` that swaps the two channel axes.
    Grouped {
        n: NodeIndex,
        groups: usize,
        transposed: bool,
    },
}

/// The importer's state.
pub(crate) struct Importer<'a> {
    pub g: Graph,
    pub vals: HashMap<String, Val>,
    names: HashSet<String>,
    pub dir: &'a Path,
    pub opset: i64,
    /// Parameter bytes (as f32) still allowed by the memory limit.
    param_budget: u64,
}

/// Reads and imports the model at `path` (external data relative to its folder).
pub fn load(path: &Path, limits: Limits) -> Result<Graph, OnnxError> {
    use convc_tensor::read::read_limited;
    let bytes = read_limited(path, MAX_MODEL_BYTES.min(limits.max_memory))
        .map_err(|e| OnnxError::new(format!("cannot read `{}`: {e}", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    import(&bytes, dir, limits)
}

/// Imports a model from the bytes of a `.onnx` file; `dir` is its folder (for external data).
pub fn import(bytes: &[u8], dir: &Path, limits: Limits) -> Result<Graph, OnnxError> {
    let model = read::decode(bytes)?;
    import_model(&model, dir, limits)
}

/// Imports a decoded model.
pub fn import_model(model: &ModelProto, dir: &Path, limits: Limits) -> Result<Graph, OnnxError> {
    let opset = read::opset(model)?;
    let Some(graph) = &model.graph else {
        return Err(OnnxError::new("the model has no graph"));
    };
    check_supported(graph, opset)?;
    let mut im = Importer {
        g: Graph::new(),
        vals: HashMap::new(),
        names: HashSet::new(),
        dir,
        opset,
        param_budget: limits.max_memory,
    };
    for t in &graph.initializer {
        let c = im.constant(t)?;
        im.vals.insert(t.name().to_string(), Val::Const(c));
    }
    im.inputs(graph)?;
    for (i, node) in graph.node.iter().enumerate() {
        let at = describe(node, i, opset);
        im.node(node, &at)?;
    }
    im.outputs(graph)?;
    convc_ir::shape::validate(&im.g).map_err(|d| OnnxError::new(d.message))?;
    Ok(im.g)
}

/// `node `conv1` (Conv, opset 13)`: how errors name a node (its name, else its first output).
fn describe(node: &NodeProto, i: usize, opset: i64) -> String {
    let name = if !node.name().is_empty() {
        node.name().to_string()
    } else if let Some(o) = node.output.first().filter(|o| !o.is_empty()) {
        o.clone()
    } else {
        format!("#{i}")
    };
    format!("node `{name}` ({}, opset {opset})", node.op_type())
}

/// The most node names listed per unsupported op type.
const MAX_LISTED: usize = 5;

/// One error listing every unsupported op type of the graph with (some of) its nodes.
fn check_supported(graph: &GraphProto, opset: i64) -> Result<(), OnnxError> {
    let mut bad: Vec<(String, Vec<String>)> = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let domain = node.domain();
        let known = matches!(domain, "" | "ai.onnx") && SUPPORTED.contains(&node.op_type());
        if known {
            continue;
        }
        let ty = if matches!(domain, "" | "ai.onnx") {
            node.op_type().to_string()
        } else {
            format!("{domain}.{}", node.op_type())
        };
        let name = describe(node, i, opset);
        let name = name.split(" (").next().unwrap_or_default().to_string();
        match bad.iter_mut().find(|b| b.0 == ty) {
            Some(b) => b.1.push(name),
            None => bad.push((ty, vec![name])),
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "the model uses {} operator type(s) convc does not support (opset {opset}):",
        bad.len()
    );
    for (ty, nodes) in &bad {
        let shown: Vec<&str> = nodes.iter().take(MAX_LISTED).map(|s| s.as_str()).collect();
        let more = nodes.len().saturating_sub(MAX_LISTED);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        msg.push_str(&format!(
            "\n  {ty}: {} node(s): {}{tail}",
            nodes.len(),
            shown.join(", ")
        ));
    }
    Err(OnnxError::new(msg))
}

/// A `.conv` identifier from an ONNX name: other characters become `_`, leading and
/// trailing `_` and exporters' `_output_0` suffix go (`/layer1/conv/Conv_output_0` is
/// `layer1_conv_Conv`), a leading digit gets a `_` before it, and the keywords
/// `input`/`output` a `_` after.
pub fn identifier(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let t = mapped.trim_matches('_');
    let mut s = t.strip_suffix("_output_0").unwrap_or(t).to_string();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if s == "input" || s == "output" {
        s.push('_');
    }
    s
}

impl Importer<'_> {
    /// A unique IR name for an ONNX value.
    pub fn fresh(&mut self, onnx_name: &str) -> String {
        let base = identifier(onnx_name);
        let mut name = base.clone();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Converts a tensor, charging its size to the memory budget.
    pub fn constant(&mut self, t: &crate::proto::TensorProto) -> Result<Const, OnnxError> {
        let c = read::tensor(t, self.dir, MAX_PARAM_ELEMENTS)?;
        self.charge(c.len(), t.name())?;
        Ok(c)
    }

    /// Charges `n` f32 values to the parameter budget.
    pub fn charge(&mut self, n: usize, what: &str) -> Result<(), OnnxError> {
        let bytes = (n as u64).saturating_mul(4);
        if bytes > self.param_budget {
            return Err(OnnxError::new(format!(
                "the constants of the model need more than the memory limit (at `{what}`): raise it with CONVC_MAX_MEMORY=SIZE"
            )));
        }
        self.param_budget -= bytes;
        Ok(())
    }

    /// Adds an IR node computing `op` from `operands`, inferring its shape; errors name `at`.
    pub fn add(
        &mut self,
        onnx_name: &str,
        op: Op,
        operands: &[NodeIndex],
        at: &str,
    ) -> Result<NodeIndex, OnnxError> {
        let shapes: Vec<&Shape> = operands.iter().map(|&o| &self.g.node(o).shape).collect();
        let shape = convc_ir::shape::infer(&op, &shapes)
            .map_err(|m| OnnxError::new(format!("{at}: {m}")))?;
        for (d, axis) in [(&shape.h, "height"), (&shape.w, "width")] {
            if let Some(v) = d.known()
                && v <= 0
            {
                return Err(OnnxError::new(format!(
                    "{at}: the output {axis} is {v}: the input is too small for its kernel, stride, dilation and padding"
                )));
            }
        }
        let name = self.fresh(onnx_name);
        let node = Node {
            name,
            op,
            span: Span::new(0, 0),
            shape,
            folded: Vec::new(),
        };
        Ok(self.g.add(node, operands))
    }

    /// The graph inputs that are not initializers, as `[C, H, W]` IR inputs.
    fn inputs(&mut self, graph: &GraphProto) -> Result<(), OnnxError> {
        for vi in &graph.input {
            if self.vals.contains_key(vi.name()) {
                continue;
            }
            let shape = input_shape(vi)?;
            let index = self.g.inputs.len();
            let name = self.fresh(vi.name());
            let n = self.g.add(
                Node {
                    name,
                    op: Op::Input { index },
                    span: Span::new(0, 0),
                    shape,
                    folded: Vec::new(),
                },
                &[],
            );
            self.g.inputs.push(n);
            self.vals
                .insert(vi.name().to_string(), Val::Node { n, flat: false });
        }
        if self.g.inputs.is_empty() {
            return Err(OnnxError::new(
                "the model has no input that is not a constant",
            ));
        }
        Ok(())
    }

    fn outputs(&mut self, graph: &GraphProto) -> Result<(), OnnxError> {
        for vi in &graph.output {
            match self.vals.get(vi.name()) {
                Some(Val::Node { n, .. }) => self.g.outputs.push(*n),
                Some(Val::Grouped { .. }) => {
                    return Err(OnnxError::new(format!(
                        "output `{}` is a 5-D [N, G, C/G, H, W] tensor; convc's outputs are images",
                        vi.name()
                    )));
                }
                Some(Val::Const(_)) => {
                    return Err(OnnxError::new(format!(
                        "output `{}` is a constant: convc runs networks whose outputs depend on an input",
                        vi.name()
                    )));
                }
                None => {
                    return Err(OnnxError::new(format!(
                        "output `{}` is not computed by any node",
                        vi.name()
                    )));
                }
            }
        }
        if self.g.outputs.is_empty() {
            return Err(OnnxError::new("the model has no output"));
        }
        Ok(())
    }

    /// The value called `name`, or an error naming `at`.
    pub fn val(&self, name: &str, at: &str) -> Result<&Val, OnnxError> {
        self.vals.get(name).ok_or_else(|| {
            OnnxError::new(format!(
                "{at}: input `{name}` is not a graph input, an initializer or an earlier node's output"
            ))
        })
    }

    /// Input `i` of `node` as an IR node (`flat` says whether it is a flattened value).
    pub fn node_input(
        &self,
        node: &NodeProto,
        i: usize,
        at: &str,
    ) -> Result<(NodeIndex, bool), OnnxError> {
        let name = self.input_name(node, i, at)?;
        match self.val(name, at)? {
            Val::Node { n, flat } => Ok((*n, *flat)),
            Val::Grouped { .. } => Err(OnnxError::new(format!(
                "{at}: input {i} (`{name}`) is a 5-D [N, G, C/G, H, W] tensor; convc reads it only in a channel shuffle (Reshape, Transpose perm [0, 2, 1, 3, 4], Reshape)"
            ))),
            Val::Const(_) => Err(OnnxError::new(format!(
                "{at}: input {i} (`{name}`) is a constant; convc needs it computed from the network's input"
            ))),
        }
    }

    /// Input `i` of `node` as a constant.
    pub fn const_input(&self, node: &NodeProto, i: usize, at: &str) -> Result<&Const, OnnxError> {
        let name = self.input_name(node, i, at)?;
        match self.val(name, at)? {
            Val::Const(c) => Ok(c),
            _ => Err(OnnxError::new(format!(
                "{at}: input {i} (`{name}`) must be a constant (an initializer or a Constant node)"
            ))),
        }
    }

    /// Input `i` when present (an empty name means an omitted optional input).
    pub fn opt_input<'n>(&self, node: &'n NodeProto, i: usize) -> Option<&'n str> {
        node.input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn input_name<'n>(
        &self,
        node: &'n NodeProto,
        i: usize,
        at: &str,
    ) -> Result<&'n str, OnnxError> {
        node.input
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OnnxError::new(format!("{at}: input {i} is missing")))
    }

    /// Records the node's first output as `v`.
    pub fn set(&mut self, node: &NodeProto, v: Val, at: &str) -> Result<(), OnnxError> {
        let Some(out) = node.output.first().filter(|o| !o.is_empty()) else {
            return Err(OnnxError::new(format!("{at}: the node has no output")));
        };
        self.vals.insert(out.clone(), v);
        Ok(())
    }

    /// The ONNX name of the node's first output (for naming IR nodes).
    pub fn out_name(node: &NodeProto) -> &str {
        node.output.first().map(String::as_str).unwrap_or("v")
    }
}

/// `[N, C, H, W]` of an input's declared type as `[C, H, W]`: C must be known, an unknown or
/// named H or W becomes a symbol (its `dim_param` when that is an identifier, else `H`/`W`).
fn input_shape(vi: &crate::proto::ValueInfoProto) -> Result<Shape, OnnxError> {
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    use crate::proto::type_proto::Value as T;
    let name = vi.name();
    let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(T::TensorType(tt)) => tt,
        _ => {
            return Err(OnnxError::new(format!(
                "input `{name}` is not a tensor (convc reads float tensors [N, C, H, W])"
            )));
        }
    };
    if tt.elem_type() != 1 {
        return Err(OnnxError::new(format!(
            "input `{name}` has element type {}; convc reads float32 inputs",
            tt.elem_type()
        )));
    }
    let dims: Vec<Option<&D>> = match &tt.shape {
        Some(s) => s.dim.iter().map(|d| d.value.as_ref()).collect(),
        None => Vec::new(),
    };
    if dims.len() != 4 {
        return Err(OnnxError::new(format!(
            "input `{name}` has {} dimensions; convc reads images [N, C, H, W]",
            dims.len()
        )));
    }
    let c = match dims[1] {
        Some(D::DimValue(c)) if (1..=convc_ir::lower::MAX_CHANNELS).contains(c) => *c as usize,
        _ => {
            return Err(OnnxError::new(format!(
                "input `{name}` has no fixed channel count (dimension 1 must be a number from 1 to {})",
                convc_ir::lower::MAX_CHANNELS
            )));
        }
    };
    let axis = |d: Option<&D>, default: &str| -> Dim {
        match d {
            Some(D::DimValue(v)) if (1..=convc_ir::lower::MAX_SIZE).contains(v) => Dim::Lit(*v),
            Some(D::DimParam(p)) if is_identifier(p) && p != "input" && p != "output" => {
                Dim::Sym(p.clone())
            }
            _ => Dim::Sym(default.to_string()),
        }
    };
    Ok(Shape {
        c,
        h: axis(dims[2], "H"),
        w: axis(dims[3], "W"),
    })
}

fn is_identifier(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && ch.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(identifier("gpu_0/conv1_1"), "gpu_0_conv1_1");
        assert_eq!(identifier("0"), "_0");
        assert_eq!(identifier(""), "_");
        assert_eq!(identifier("input"), "input_");
        assert_eq!(identifier("x.y:0"), "x_y_0");
        assert_eq!(identifier("/layer1/conv/Conv_output_0"), "layer1_conv_Conv");
        assert_eq!(identifier("/"), "_");
    }
}
