//! Lowering: the AST becomes a validated graph. Every semantic check of the language lives
//! here, each reported at the token at fault: unknown ops and arguments, ill-typed values,
//! names defined twice or used before their definition, weights that do not fit.

use std::collections::HashMap;
use std::path::Path;

use convc_lang::{Arg, Diagnostic, Expr, ExprKind, Ident, LayerStmt, Program, Span, Stmt};
use convc_tensor::{Tensor, filters, fmt_shape, random};
use petgraph::stable_graph::NodeIndex;

use crate::dim::{Dim, Shape};
use crate::graph::{Graph, Node};
use crate::op::{BatchNorm, Conv, Op, Pad, Param, Pool, PoolKind, Source, Unary};
use crate::shape;

/// The most elements one parameter tensor may have (1 GiB of f32): larger ones are refused
/// before anything is allocated.
pub const MAX_PARAM_ELEMENTS: usize = 1 << 28;

/// The ops of the language, for "unknown op" messages.
pub const OPS: &[&str] = &[
    "conv",
    "depthwise",
    "pointwise",
    "batchnorm",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "clamp",
    "add",
    "concat",
    "maxpool",
    "avgpool",
    "global_avgpool",
    "softmax",
    "lrn",
    "shuffle",
    "hardsigmoid",
    "hardswish",
    "prelu",
    "mul",
    "global_maxpool",
    "pad",
    "upsample",
    "conv_transpose",
    "slice",
];

mod more;

type R<T> = Result<T, Diagnostic>;

fn err<T>(span: Span, msg: impl Into<String>) -> R<T> {
    Err(Diagnostic::error(span, msg))
}

/// The default of [`Limits::max_memory`]: 16 GiB, the default of `CONVC_MAX_MEMORY`.
pub const DEFAULT_MAX_MEMORY: u64 = 16 << 30;

/// Resource limits of lowering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes all parameter tensors of the spec may hold together (as f32), and the
    /// largest weight file read. A spec past it is refused at the parameter that crosses it,
    /// before that parameter is allocated.
    pub max_memory: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// Lowers a parsed program. `base_dir` is the `.conv` file's folder: `file(...)` paths are
/// relative to it.
pub fn lower(prog: &Program, base_dir: &Path) -> R<Graph> {
    lower_with(prog, base_dir, Limits::default())
}

/// [`lower`] with explicit resource limits.
pub fn lower_with(prog: &Program, base_dir: &Path, limits: Limits) -> R<Graph> {
    Lowerer {
        g: Graph::new(),
        names: HashMap::new(),
        later: HashMap::new(),
        base_dir,
        limits,
        param_bytes: std::cell::Cell::new(0),
        safetensors: Default::default(),
    }
    .run(prog)
}

/// Parses and lowers a source text (a convenience for tests and tools).
pub fn compile(src: &str, base_dir: &Path) -> R<Graph> {
    lower(&convc_lang::parse(src)?, base_dir)
}

/// [`compile`] with explicit resource limits.
pub fn compile_with(src: &str, base_dir: &Path, limits: Limits) -> R<Graph> {
    lower_with(&convc_lang::parse(src)?, base_dir, limits)
}

struct Lowerer<'a> {
    g: Graph,
    names: HashMap<String, NodeIndex>,
    /// Every name defined anywhere, with its span, to tell "used before its definition" from
    /// "not defined".
    later: HashMap<String, Span>,
    base_dir: &'a Path,
    limits: Limits,
    /// Bytes of the parameter tensors made so far (checked against `limits.max_memory`).
    param_bytes: std::cell::Cell<u64>,
    /// The bytes of each safetensors file read so far: a spec takes many tensors from one
    /// file (`convc import` writes them so), which is read once, not once per tensor.
    safetensors: std::cell::RefCell<HashMap<std::path::PathBuf, std::rc::Rc<Vec<u8>>>>,
}

/// The keyword arguments of one layer, checked for duplicates and unknown keys.
struct Kw<'a> {
    op: &'a str,
    args: HashMap<&'a str, &'a Arg>,
}

impl<'a> Kw<'a> {
    fn get(&self, key: &str) -> Option<&'a Expr> {
        self.args.get(key).map(|a| &a.value)
    }
}

fn int_of(e: &Expr) -> Option<i64> {
    match e.kind {
        ExprKind::Number { int, .. } => int,
        _ => None,
    }
}

fn describe(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Ident(s) => format!("`{s}`"),
        ExprKind::Number {
            value,
            int: Some(i),
        } if *value == *i as f64 => format!("{i}"),
        ExprKind::Number { value, .. } => format!("{value}"),
        ExprKind::Str(s) => format!("the string {s:?}"),
        ExprKind::Size(a, b) => format!("{a}x{b}"),
        ExprKind::Tuple(_) => "a tuple".into(),
        ExprKind::List(_) => "a list".into(),
        ExprKind::Call { name, .. } => format!("`{}(...)`", name.name),
    }
}

/// A positive integer that fits `usize` and is at most `limit`.
fn pos_int(e: &Expr, what: &str, limit: i64) -> R<usize> {
    match int_of(e) {
        Some(v) if v >= 1 && v <= limit => Ok(v as usize),
        Some(v) if v >= 1 => err(
            e.span,
            format!("{what} is {v}, more than the limit of {limit}"),
        ),
        Some(v) => err(e.span, format!("{what} must be at least 1, found {v}")),
        None => err(
            e.span,
            format!("{what} takes a whole number, found {}", describe(e)),
        ),
    }
}

/// Largest kernel, stride, dilation or padding accepted on one axis.
pub const MAX_WINDOW: i64 = 1 << 16;
/// Largest channel count (of an input, a conv's `out`, a depthwise result, a concat) or group
/// count.
pub const MAX_CHANNELS: i64 = 1 << 24;
/// Largest spatial size of an input.
pub const MAX_SIZE: i64 = 1 << 24;

fn size_arg(e: &Expr, what: &str) -> R<[usize; 2]> {
    let check = |v: u64, span: Span| -> R<usize> {
        if v == 0 {
            err(span, format!("{what} must be at least 1 on each axis"))
        } else if v > MAX_WINDOW as u64 {
            err(
                span,
                format!("{what} {v} is larger than the limit of {MAX_WINDOW}"),
            )
        } else {
            Ok(v as usize)
        }
    };
    match &e.kind {
        ExprKind::Size(a, b) => Ok([check(*a, e.span)?, check(*b, e.span)?]),
        ExprKind::Number { int: Some(v), .. } if *v >= 0 => {
            let v = check(*v as u64, e.span)?;
            Ok([v, v])
        }
        ExprKind::Tuple(items) if items.len() == 2 => {
            let mut out = [0; 2];
            for (o, it) in out.iter_mut().zip(items) {
                *o = match int_of(it) {
                    Some(v) if v >= 0 => check(v as u64, it.span)?,
                    _ => {
                        return err(
                            it.span,
                            format!("{what} takes whole numbers, found {}", describe(it)),
                        );
                    }
                };
            }
            Ok(out)
        }
        _ => err(
            e.span,
            format!(
                "{what} takes a size such as `3x3`, `3` or `(3, 3)`, found {}",
                describe(e)
            ),
        ),
    }
}

fn pad_arg(e: &Expr) -> R<Pad> {
    let nonneg = |it: &Expr| -> R<usize> {
        match int_of(it) {
            Some(v) if (0..=MAX_WINDOW).contains(&v) => Ok(v as usize),
            Some(v) if v < 0 => err(it.span, format!("padding must not be negative, found {v}")),
            Some(v) => err(
                it.span,
                format!("padding {v} is larger than the limit of {MAX_WINDOW}"),
            ),
            None => err(
                it.span,
                format!("padding takes whole numbers, found {}", describe(it)),
            ),
        }
    };
    match &e.kind {
        ExprKind::Ident(s) if s == "same" => Ok(Pad::Same),
        ExprKind::Ident(s) if s == "valid" => Ok(Pad::Explicit([0; 4])),
        ExprKind::Number { .. } => {
            let p = nonneg(e)?;
            Ok(Pad::Explicit([p; 4]))
        }
        ExprKind::Tuple(items) if items.len() == 2 => {
            let (h, w) = (nonneg(&items[0])?, nonneg(&items[1])?);
            Ok(Pad::Explicit([h, h, w, w]))
        }
        ExprKind::Tuple(items) if items.len() == 4 => {
            let mut p = [0; 4];
            for (o, it) in p.iter_mut().zip(items) {
                *o = nonneg(it)?;
            }
            Ok(Pad::Explicit(p))
        }
        _ => err(
            e.span,
            format!(
                "pad takes `same`, `valid`, a number, `(ph, pw)` or `(top, bottom, left, right)`, found {}",
                describe(e)
            ),
        ),
    }
}

fn float_arg(e: &Expr, what: &str) -> R<f64> {
    match &e.kind {
        ExprKind::Number { value, .. } => Ok(*value),
        ExprKind::Ident(s) if s == "inf" => Ok(f64::INFINITY),
        _ => err(
            e.span,
            format!("{what} takes a number, found {}", describe(e)),
        ),
    }
}

fn finite_arg(e: &Expr, what: &str) -> R<f64> {
    let v = float_arg(e, what)?;
    if !v.is_finite() {
        return err(e.span, format!("{what} must be finite, found {v}"));
    }
    Ok(v)
}

/// Which parameter of a layer a source is for: decides its expected shape, its default
/// initialiser and which sources are allowed.
#[derive(Clone, Copy, PartialEq)]
enum ParamKind {
    Weight,
    Bias,
    BnMean,
    BnVar,
    BnGamma,
    BnBeta,
    Slope,
}

impl ParamKind {
    fn key(self) -> &'static str {
        match self {
            ParamKind::Weight => "weights",
            ParamKind::Bias => "bias",
            ParamKind::BnMean => "mean",
            ParamKind::BnVar => "var",
            ParamKind::BnGamma => "gamma",
            ParamKind::BnBeta => "beta",
            ParamKind::Slope => "slope",
        }
    }
}

/// What a built-in filter or broadcast literal needs to know about the conv.
struct ConvInfo {
    in_ch: usize,
    out: usize,
    groups: usize,
    kernel: [usize; 2],
    fan_in: usize,
}

impl<'a> Lowerer<'a> {
    fn run(mut self, prog: &Program) -> R<Graph> {
        for st in &prog.stmts {
            let (name, span) = match st {
                Stmt::Input(i) => (&i.name.name, i.name.span),
                Stmt::Layer(l) => (&l.name.name, l.name.span),
                Stmt::Output(_) => continue,
            };
            self.later.entry(name.clone()).or_insert(span);
        }
        if prog.stmts.is_empty() {
            return err(
                prog.eof,
                "the file is empty: a network needs an `input`, layers and an `output`",
            );
        }
        let mut saw_output = false;
        for st in &prog.stmts {
            match st {
                Stmt::Input(i) => {
                    self.define_check(&i.name)?;
                    let dims = self.input_dims(&i.dims, i.dims_span)?;
                    let index = self.g.inputs.len();
                    let n = self.g.add(
                        Node {
                            name: i.name.name.clone(),
                            op: Op::Input { index },
                            span: i.name.span,
                            shape: dims,
                            folded: Vec::new(),
                        },
                        &[],
                    );
                    self.g.inputs.push(n);
                    self.names.insert(i.name.name.clone(), n);
                }
                Stmt::Layer(l) => {
                    self.define_check(&l.name)?;
                    let n = self.layer(l)?;
                    self.names.insert(l.name.name.clone(), n);
                }
                Stmt::Output(o) => {
                    saw_output = true;
                    for id in &o.names {
                        let n = self.lookup(id)?;
                        self.g.outputs.push(n);
                    }
                }
            }
        }
        if !saw_output {
            return err(
                prog.eof,
                "no `output` statement: add `output NAME` naming the tensors the network produces",
            );
        }
        Ok(self.g)
    }

    fn define_check(&self, id: &Ident) -> R<()> {
        if self.names.contains_key(&id.name) {
            return err(id.span, format!("`{}` is defined twice", id.name));
        }
        Ok(())
    }

    fn lookup(&self, id: &Ident) -> R<NodeIndex> {
        if let Some(&n) = self.names.get(&id.name) {
            return Ok(n);
        }
        if self.later.contains_key(&id.name) {
            return err(
                id.span,
                format!("`{}` is used before its definition", id.name),
            );
        }
        err(id.span, format!("`{}` is not defined", id.name))
    }

    fn input_dims(&self, dims: &[Expr], span: Span) -> R<Shape> {
        if dims.len() != 3 {
            return err(
                span,
                format!("an input has 3 dimensions [C, H, W], found {}", dims.len()),
            );
        }
        let c = match &dims[0].kind {
            ExprKind::Ident(s) => {
                return err(
                    dims[0].span,
                    format!("the channel count must be a number, found the symbol `{s}`"),
                );
            }
            _ => pos_int(&dims[0], "the channel count", MAX_CHANNELS)?,
        };
        let mut hw = Vec::new();
        for (d, axis) in dims[1..].iter().zip(["height", "width"]) {
            hw.push(match &d.kind {
                ExprKind::Ident(s) => Dim::Sym(s.clone()),
                _ => Dim::Lit(pos_int(d, &format!("the input {axis}"), MAX_SIZE)? as i64),
            });
        }
        let w = hw.pop().unwrap_or(Dim::Lit(1));
        let h = hw.pop().unwrap_or(Dim::Lit(1));
        Ok(Shape { c, h, w })
    }

    fn kwargs<'b>(&self, l: &'b LayerStmt, allowed: &[&str]) -> R<Kw<'b>> {
        let mut args = HashMap::new();
        for a in &l.args {
            let Some(k) = &a.key else { continue };
            if !allowed.contains(&k.name.as_str()) {
                let hint = if allowed.is_empty() {
                    format!("{} takes no arguments besides its input", l.op.name)
                } else {
                    format!(
                        "{} takes {}",
                        l.op.name,
                        allowed
                            .iter()
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(Diagnostic::error(
                    k.span,
                    format!("unknown argument `{}` for {}", k.name, l.op.name),
                )
                .with_note(hint));
            }
            if args.insert(k.name.as_str(), a).is_some() {
                return err(k.span, format!("duplicate argument `{}`", k.name));
            }
        }
        Ok(Kw {
            op: l.op.name.as_str(),
            args,
        })
    }

    fn positional(&self, l: &LayerStmt) -> R<Vec<NodeIndex>> {
        let mut out = Vec::new();
        for a in &l.args {
            if a.key.is_some() {
                continue;
            }
            match &a.value.kind {
                ExprKind::Ident(s) => out.push(self.lookup(&Ident {
                    name: s.clone(),
                    span: a.value.span,
                })?),
                _ => {
                    return err(
                        a.value.span,
                        format!("expected a tensor name, found {}", describe(&a.value)),
                    );
                }
            }
        }
        Ok(out)
    }

    fn layer(&mut self, l: &LayerStmt) -> R<NodeIndex> {
        let op = l.op.name.as_str();
        if !OPS.contains(&op) {
            let mut d = Diagnostic::error(l.op.span, format!("unknown op `{op}`"));
            if let Some(s) = closest(op) {
                d = d.with_note(format!("did you mean `{s}`?"));
            }
            return Err(d.with_note(format!("the ops are {}", OPS.join(", "))));
        }
        let xs = self.positional(l)?;
        let arity = match op {
            "add" | "mul" => Some(2),
            "concat" => None,
            _ => Some(1),
        };
        match arity {
            Some(k) if xs.len() != k => {
                let what = if k == 1 {
                    "one input tensor".to_string()
                } else {
                    format!("{k} input tensors")
                };
                return err(l.op.span, format!("{op} takes {what}, found {}", xs.len()));
            }
            None if xs.is_empty() => {
                return err(l.op.span, "concat takes at least one input tensor");
            }
            _ => {}
        }
        let x_shape = self.g.node(xs[0]).shape.clone();
        let name = l.name.name.as_str();
        let op_v = match op {
            "conv" | "depthwise" | "pointwise" => {
                let allowed: &[&str] = match op {
                    "conv" => &[
                        "out", "kernel", "stride", "pad", "dilation", "groups", "weights", "bias",
                    ],
                    "depthwise" => &[
                        "kernel",
                        "multiplier",
                        "stride",
                        "pad",
                        "dilation",
                        "weights",
                        "bias",
                    ],
                    _ => &["out", "weights", "bias"],
                };
                let kw = self.kwargs(l, allowed)?;
                Op::Conv(self.conv(l, &kw, &x_shape)?)
            }
            "batchnorm" => {
                let kw = self.kwargs(l, &["mean", "var", "gamma", "beta", "eps"])?;
                let c = x_shape.c;
                let eps = match kw.get("eps") {
                    Some(e) => {
                        let v = finite_arg(e, "eps")?;
                        if v < 0.0 {
                            return err(e.span, format!("eps must not be negative, found {v}"));
                        }
                        v as f32
                    }
                    None => 1e-5,
                };
                let info = ConvInfo {
                    in_ch: c,
                    out: c,
                    groups: c,
                    kernel: [1, 1],
                    fan_in: 1,
                };
                let mut p = Vec::new();
                for kind in [
                    ParamKind::BnMean,
                    ParamKind::BnVar,
                    ParamKind::BnGamma,
                    ParamKind::BnBeta,
                ] {
                    p.push(
                        self.param(
                            (name, l.name.span),
                            kind,
                            kw.get(kind.key()),
                            &[c],
                            &info,
                            "batchnorm",
                        )?
                        .ok_or_else(|| {
                            Diagnostic::error(
                                l.op.span,
                                format!("batchnorm needs `{}`", kind.key()),
                            )
                        })?,
                    );
                }
                let var = &p[1];
                if let Some(i) = var
                    .data
                    .data()
                    .iter()
                    .position(|v| (*v as f64) + eps as f64 <= 0.0)
                {
                    let span = kw.get("var").map_or(l.op.span, |e| e.span);
                    return err(
                        span,
                        format!("layer `{name}`: var + eps is not positive for channel {i}"),
                    );
                }
                let mut it = p.into_iter();
                let (Some(mean), Some(var), Some(gamma), Some(beta)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return err(l.op.span, "batchnorm parameters missing");
                };
                Op::BatchNorm(BatchNorm {
                    mean,
                    var,
                    gamma,
                    beta,
                    eps,
                })
            }
            "relu" | "relu6" | "sigmoid" | "tanh" => {
                self.kwargs(l, &[])?;
                Op::Unary(match op {
                    "relu" => Unary::Relu,
                    "relu6" => Unary::Relu6,
                    "sigmoid" => Unary::Sigmoid,
                    _ => Unary::Tanh,
                })
            }
            "softmax" => {
                self.kwargs(l, &[])?;
                Op::Softmax
            }
            "shuffle" => {
                let kw = self.kwargs(l, &["groups"])?;
                match kw.get("groups") {
                    Some(e) => Op::Shuffle {
                        groups: pos_int(e, "groups", MAX_CHANNELS)?,
                    },
                    None => return err(l.op.span, "shuffle needs `groups=G`"),
                }
            }
            "lrn" => {
                let kw = self.kwargs(l, &["size", "alpha", "beta", "bias"])?;
                let size = match kw.get("size") {
                    Some(e) => pos_int(e, "size", MAX_CHANNELS)?,
                    None => return err(l.op.span, "lrn needs `size=N` (channels in the window)"),
                };
                let f = |k: &str, d: f64| -> R<f32> {
                    match kw.get(k) {
                        Some(e) => Ok(finite_arg(e, k)? as f32),
                        None => Ok(d as f32),
                    }
                };
                convc_ir_lrn(size, f("alpha", 1e-4)?, f("beta", 0.75)?, f("bias", 1.0)?)
            }
            "leaky_relu" => {
                let kw = self.kwargs(l, &["alpha"])?;
                let alpha = match kw.get("alpha") {
                    Some(e) => finite_arg(e, "alpha")? as f32,
                    None => 0.01,
                };
                Op::Unary(Unary::LeakyRelu { alpha })
            }
            "clamp" => {
                let kw = self.kwargs(l, &["min", "max"])?;
                let get = |k: &str, d: f64| -> R<f64> {
                    match kw.get(k) {
                        Some(e) => {
                            let v = float_arg(e, k)?;
                            if v.is_nan() {
                                return err(e.span, format!("{k} must be a number, found NaN"));
                            }
                            Ok(v)
                        }
                        None => Ok(d),
                    }
                };
                let (min, max) = (get("min", f64::NEG_INFINITY)?, get("max", f64::INFINITY)?);
                if min > max {
                    let span = kw
                        .get("max")
                        .or(kw.get("min"))
                        .map_or(l.op.span, |e| e.span);
                    return err(span, format!("clamp has min {min} greater than max {max}"));
                }
                Op::Unary(Unary::Clamp {
                    min: min as f32,
                    max: max as f32,
                })
            }
            "add" => {
                self.kwargs(l, &[])?;
                Op::Add
            }
            "concat" => {
                self.kwargs(l, &[])?;
                Op::Concat
            }
            "maxpool" | "avgpool" => {
                let kw = self.kwargs(l, &["kernel", "stride", "pad"])?;
                let kernel = match kw.get("kernel") {
                    Some(e) => size_arg(e, "kernel")?,
                    None => [2, 2],
                };
                let stride = match kw.get("stride") {
                    Some(e) => size_arg(e, "stride")?,
                    None => kernel,
                };
                let pad = match kw.get("pad") {
                    Some(e) => {
                        let p = pad_arg(e)?;
                        if let Pad::Explicit([t, b, le, r]) = p
                            && (t >= kernel[0]
                                || b >= kernel[0]
                                || le >= kernel[1]
                                || r >= kernel[1])
                        {
                            return err(
                                e.span,
                                format!(
                                    "each padding side must be smaller than the kernel {}x{} on its axis",
                                    kernel[0], kernel[1]
                                ),
                            );
                        }
                        p
                    }
                    None => Pad::Explicit([0; 4]),
                };
                let kind = if op == "maxpool" {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                };
                Op::Pool(Pool {
                    kind,
                    kernel,
                    stride,
                    pad,
                })
            }
            "global_avgpool" => {
                self.kwargs(l, &[])?;
                Op::GlobalAvgPool
            }
            "hardsigmoid" | "hardswish" | "prelu" | "mul" | "global_maxpool" | "pad"
            | "upsample" | "conv_transpose" | "slice" => self.more_op(l, &x_shape)?,
            // Every name of `OPS` has its arm above (the test `every_listed_op_lowers` checks
            // it): a name added there without one is refused, not lowered to another op.
            other => {
                return err(
                    l.op.span,
                    format!("internal error: op `{other}` has no lowering"),
                );
            }
        };
        let ops: Vec<&Shape> = xs.iter().map(|&n| &self.g.node(n).shape).collect();
        let shape = shape::infer(&op_v, &ops)
            .map_err(|m| Diagnostic::error(l.name.span, format!("layer `{name}`: {m}")))?;
        let node = Node {
            name: name.to_string(),
            op: op_v,
            span: l.name.span,
            shape,
            folded: Vec::new(),
        };
        let n = self.g.add(node, &xs);
        let s = shape::infer_node(&self.g, n).map_err(|m| Diagnostic::error(l.name.span, m))?;
        debug_assert_eq!(s, self.g.node(n).shape);
        Ok(n)
    }

    fn conv(&self, l: &LayerStmt, kw: &Kw<'_>, x: &Shape) -> R<Conv> {
        let name = l.name.name.as_str();
        let size = |key: &str, default: [usize; 2]| -> R<[usize; 2]> {
            kw.get(key).map_or(Ok(default), |e| size_arg(e, key))
        };
        let (kernel, stride, dilation, pad) = if kw.op == "pointwise" {
            ([1, 1], [1, 1], [1, 1], Pad::Explicit([0; 4]))
        } else {
            let pad = kw.get("pad").map_or(Ok(Pad::Same), pad_arg)?;
            (
                size("kernel", [3, 3])?,
                size("stride", [1, 1])?,
                size("dilation", [1, 1])?,
                pad,
            )
        };
        let c = x.c;
        let (out, groups) = match kw.op {
            "depthwise" => {
                let m = kw
                    .get("multiplier")
                    .map_or(Ok(1), |e| pos_int(e, "multiplier", MAX_CHANNELS))?;
                let out = c
                    .checked_mul(m)
                    .filter(|&o| o as i64 <= MAX_CHANNELS)
                    .ok_or_else(|| {
                        Diagnostic::error(
                            l.name.span,
                            format!("layer `{name}`: {c} channels x multiplier {m} is too many"),
                        )
                    })?;
                (out, c)
            }
            _ => {
                let out = match kw.get("out") {
                    Some(e) => pos_int(e, "out", MAX_CHANNELS)?,
                    None => {
                        return err(
                            l.op.span,
                            format!("{} needs `out=N`, the number of output channels", kw.op),
                        );
                    }
                };
                let g = kw
                    .get("groups")
                    .map_or(Ok(1), |e| pos_int(e, "groups", MAX_CHANNELS))?;
                (out, g)
            }
        };
        if !c.is_multiple_of(groups) {
            return err(
                l.name.span,
                format!("layer `{name}`: input channels {c} are not divisible by groups={groups}"),
            );
        }
        if out % groups != 0 {
            return err(
                l.name.span,
                format!("layer `{name}`: out={out} is not divisible by groups={groups}"),
            );
        }
        let cg = c / groups;
        let fan_in = cg * kernel[0] * kernel[1];
        let info = ConvInfo {
            in_ch: c,
            out,
            groups,
            kernel,
            fan_in,
        };
        let wshape = [out, cg, kernel[0], kernel[1]];
        let weight = self
            .param(
                (name, l.name.span),
                ParamKind::Weight,
                kw.get("weights"),
                &wshape,
                &info,
                kw.op,
            )?
            .ok_or_else(|| Diagnostic::error(l.op.span, "weights cannot be `none`"))?;
        let bias = self.param(
            (name, l.name.span),
            ParamKind::Bias,
            kw.get("bias"),
            &[out],
            &info,
            kw.op,
        )?;
        Ok(Conv {
            out,
            kernel,
            stride,
            dilation,
            pad,
            groups,
            weight,
            bias,
        })
    }

    /// Resolves a weight source (or its default) into a tensor of exactly `shape`.
    /// `Ok(None)` only for a bias that is `none` or omitted.
    /// `layer` is the layer's name and the span of that name (where an error about an
    /// omitted source is located).
    fn param(
        &self,
        (layer, layer_span): (&str, Span),
        kind: ParamKind,
        src: Option<&Expr>,
        shape: &[usize],
        info: &ConvInfo,
        op: &str,
    ) -> R<Option<Param>> {
        let key = kind.key();
        let span = src.map_or(layer_span, |e| e.span);
        let n = convc_tensor::checked_numel(shape).filter(|&n| n <= MAX_PARAM_ELEMENTS);
        let Some(n) = n else {
            return err(
                span,
                format!(
                    "layer `{layer}`: {key} of shape {} would need more than {} GiB (one parameter tensor may hold at most 2^28 values)",
                    fmt_shape(shape),
                    (MAX_PARAM_ELEMENTS * 4) >> 30
                ),
            );
        };
        // Every parameter counts against the memory limit, before it is made (`none` and an
        // omitted bias make nothing, and are not counted).
        let makes = !(kind == ParamKind::Bias
            && src.is_none_or(|e| matches!(&e.kind, ExprKind::Ident(s) if s == "none")));
        if makes {
            let total = self.param_bytes.get().saturating_add(n as u64 * 4);
            if total > self.limits.max_memory {
                return err(
                    span,
                    format!(
                        "layer `{layer}`: with its {key} of shape {}, the spec's parameters would need {}, more than the memory limit of {}: use smaller layers, or raise the limit with CONVC_MAX_MEMORY=SIZE (e.g. 64G)",
                        fmt_shape(shape),
                        convc_tensor::read::human_bytes(total),
                        convc_tensor::read::human_bytes(self.limits.max_memory)
                    ),
                );
            }
            self.param_bytes.set(total);
        }
        let random_param = |seed: u64| -> Vec<f32> {
            match kind {
                ParamKind::Weight => random::he_uniform(seed, n, info.fan_in),
                ParamKind::Bias => random::bias_uniform(seed, n, info.fan_in),
                ParamKind::BnMean => random::bn_mean(seed, n),
                ParamKind::BnVar => random::bn_var(seed, n),
                ParamKind::BnGamma => random::bn_gamma(seed, n),
                ParamKind::BnBeta => random::bn_beta(seed, n),
                ParamKind::Slope => random::prelu_slope(seed, n),
            }
        };
        let Some(e) = src else {
            return Ok(match kind {
                ParamKind::Bias => None,
                ParamKind::Weight => {
                    let seed = random::seed_from_name(layer);
                    Some(self.make(
                        shape,
                        random_param(seed),
                        Source::Random {
                            seed,
                            implicit: true,
                        },
                    )?)
                }
                _ => {
                    let seed = random::seed_from_name(&format!("{layer}.{key}"));
                    Some(self.make(
                        shape,
                        random_param(seed),
                        Source::Random {
                            seed,
                            implicit: true,
                        },
                    )?)
                }
            });
        };
        let located = |m: String| Diagnostic::error(e.span, format!("layer `{layer}`: {m}"));
        let (data, source) = match &e.kind {
            ExprKind::Ident(s) if s == "none" => {
                if kind == ParamKind::Bias {
                    return Ok(None);
                }
                return Err(located(format!(
                    "`none` is only for `bias`; {key} needs a source"
                )));
            }
            ExprKind::Call { name, args } if name.name == "random" => {
                let mut seed = None;
                for a in args {
                    match &a.key {
                        Some(k) if k.name == "seed" && seed.is_none() => match int_of(&a.value) {
                            Some(v) if v >= 0 => seed = Some(v as u64),
                            _ => {
                                return err(
                                    a.value.span,
                                    format!(
                                        "seed takes a whole number >= 0, found {}",
                                        describe(&a.value)
                                    ),
                                );
                            }
                        },
                        Some(k) if k.name == "seed" => {
                            return err(k.span, "duplicate argument `seed`");
                        }
                        Some(k) => {
                            return err(
                                k.span,
                                format!(
                                    "unknown argument `{}` for random: it takes `seed`",
                                    k.name
                                ),
                            );
                        }
                        None => return err(a.span, "random takes `seed=N`"),
                    }
                }
                let seed = seed.unwrap_or_else(|| random::seed_from_name(layer));
                (
                    random_param(seed),
                    Source::Random {
                        seed,
                        implicit: false,
                    },
                )
            }
            ExprKind::Call { name, args } if name.name == "file" => {
                let mut strs = Vec::new();
                for a in args {
                    match (&a.key, &a.value.kind) {
                        (None, ExprKind::Str(s)) => strs.push(s.clone()),
                        _ => {
                            return err(
                                a.span,
                                "file takes a path string and, for safetensors, a tensor name: file(\"w.npy\") or file(\"m.safetensors\", \"conv1.weight\")",
                            );
                        }
                    }
                }
                let (path, tname) = match strs.as_slice() {
                    [p] => (p.clone(), None),
                    [p, t] => (p.clone(), Some(t.clone())),
                    _ => {
                        return err(
                            e.span,
                            "file takes a path string and, for safetensors, a tensor name",
                        );
                    }
                };
                let t = self.load_file(&path, tname.as_deref()).map_err(&located)?;
                if t.shape() != shape {
                    return Err(located(format!(
                        "{key} from `{path}` have shape {}, expected {}",
                        fmt_shape(t.shape()),
                        fmt_shape(shape)
                    )));
                }
                if let Some(i) = t.first_non_finite() {
                    return Err(located(format!(
                        "`{path}` has a non-finite value ({}) at flat index {i}",
                        t.data()[i]
                    )));
                }
                (t.into_data(), Source::File { path, name: tname })
            }
            ExprKind::List(_) => {
                let (lshape, vals) = flatten_literal(e)?;
                if lshape == shape {
                    (vals, Source::Literal)
                } else if kind == ParamKind::Weight
                    && op == "depthwise"
                    && lshape == [info.kernel[0], info.kernel[1]]
                {
                    (vals.repeat(info.out), Source::Literal)
                } else {
                    let extra = if op == "depthwise" && kind == ParamKind::Weight {
                        format!(" (or {} for every channel)", fmt_shape(&info.kernel))
                    } else {
                        String::new()
                    };
                    return Err(located(format!(
                        "the literal {key} have shape {}, expected {}{extra}",
                        fmt_shape(&lshape),
                        fmt_shape(shape)
                    )));
                }
            }
            ExprKind::Ident(_) | ExprKind::Call { .. } => {
                let (fname, filt) = self.builtin(e, info, layer)?;
                if kind != ParamKind::Weight {
                    return Err(located(format!(
                        "the built-in filter `{fname}` is for `weights`, not `{key}`"
                    )));
                }
                let is_dw = info.groups == info.in_ch && info.out.is_multiple_of(info.in_ch);
                if !(is_dw || (info.in_ch == 1 && info.out == 1)) {
                    return Err(located(format!(
                        "the built-in filter `{fname}` is for depthwise layers or a conv with one input and one output channel; this layer maps {} to {} channels",
                        info.in_ch, info.out
                    )));
                }
                (filt.repeat(info.out), Source::Builtin(fname))
            }
            _ => {
                return Err(located(format!(
                    "{key} takes a source: file(\"w.npy\"), random(seed=N), a literal list{}, found {}",
                    if kind == ParamKind::Bias {
                        ", or none"
                    } else {
                        ""
                    },
                    describe(e)
                )));
            }
        };
        Ok(Some(
            self.make(shape, data, source)
                .map_err(|d| Diagnostic::error(e.span, d.message))?,
        ))
    }

    fn make(&self, shape: &[usize], data: Vec<f32>, source: Source) -> R<Param> {
        let t = Tensor::new(shape.to_vec(), data)
            .map_err(|d| Diagnostic::error(Span::default(), d.message))?;
        Ok(Param::new(t, source))
    }

    /// A built-in filter's name as shown, and its `KH*KW` values.
    fn builtin(&self, e: &Expr, info: &ConvInfo, layer: &str) -> R<(String, Vec<f32>)> {
        let [kh, kw] = info.kernel;
        let located = |m: String| Diagnostic::error(e.span, format!("layer `{layer}`: {m}"));
        let three = |n: &str| -> R<()> {
            if info.kernel != [3, 3] {
                return Err(located(format!(
                    "`{n}` is a 3x3 filter but the kernel is {kh}x{kw}"
                )));
            }
            Ok(())
        };
        match &e.kind {
            ExprKind::Ident(s) => match s.as_str() {
                "box" => Ok(("box".into(), filters::box_filter(kh, kw))),
                "sobel_x" => three(s).map(|_| (s.clone(), filters::sobel_x())),
                "sobel_y" => three(s).map(|_| (s.clone(), filters::sobel_y())),
                "laplacian" => three(s).map(|_| (s.clone(), filters::laplacian())),
                _ => err(
                    e.span,
                    format!(
                        "unknown weight source `{s}`: use file(...), random(seed=N), a literal list, gaussian(sigma=S), box, sobel_x, sobel_y, laplacian or none"
                    ),
                ),
            },
            ExprKind::Call { name, args } if name.name == "gaussian" => {
                let mut sigma = None;
                for a in args {
                    match &a.key {
                        Some(k) if k.name == "sigma" && sigma.is_none() => {
                            let v = finite_arg(&a.value, "sigma")?;
                            if v <= 0.0 {
                                return err(
                                    a.value.span,
                                    format!("sigma must be greater than 0, found {v}"),
                                );
                            }
                            sigma = Some(v);
                        }
                        Some(k) if k.name == "sigma" => {
                            return err(k.span, "duplicate argument `sigma`");
                        }
                        Some(k) => {
                            return err(
                                k.span,
                                format!(
                                    "unknown argument `{}` for gaussian: it takes `sigma`",
                                    k.name
                                ),
                            );
                        }
                        None => return err(a.span, "gaussian takes `sigma=S`"),
                    }
                }
                let Some(sigma) = sigma else {
                    return err(e.span, "gaussian needs `sigma=S`");
                };
                let f = filters::gaussian(kh, kw, sigma).map_err(|d| located(d.message))?;
                Ok((format!("gaussian(sigma={sigma})"), f))
            }
            ExprKind::Call { name, .. } => err(
                name.span,
                format!(
                    "unknown weight source `{}(...)`: use file(...), random(seed=N) or gaussian(sigma=S)",
                    name.name
                ),
            ),
            _ => err(e.span, "expected a weight source"),
        }
    }

    fn load_file(&self, path: &str, name: Option<&str>) -> Result<Tensor, String> {
        use convc_tensor::read::{ReadError, read_limited};
        let full = self.base_dir.join(path);
        let cached = name.and_then(|_| self.safetensors.borrow().get(&full).cloned());
        let bytes = match cached
            .map(Ok)
            .unwrap_or_else(|| read_limited(&full, self.limits.max_memory).map(std::rc::Rc::new))
        {
            Ok(b) => b,
            Err(ReadError::Directory) => {
                return Err(format!("`{path}` is a directory, not a file"));
            }
            Err(e @ ReadError::TooLarge { .. }) => {
                return Err(format!(
                    "cannot read `{path}`: {e} (raise it with CONVC_MAX_MEMORY=SIZE)"
                ));
            }
            Err(e) => return Err(format!("cannot read `{path}`: {e}")),
        };
        if name.is_some() {
            self.safetensors
                .borrow_mut()
                .insert(full.clone(), std::rc::Rc::clone(&bytes));
        }
        let r = match name {
            Some(n) => convc_tensor::st::read_tensor(&bytes, n),
            None if path.ends_with(".safetensors") => {
                return Err(format!(
                    "`{path}` is a safetensors file: name the tensor, file(\"{path}\", \"NAME\")"
                ));
            }
            None => convc_tensor::npy::read(&bytes),
        };
        r.map_err(|e| format!("`{path}`: {}", e.message))
    }
}

fn convc_ir_lrn(size: usize, alpha: f32, beta: f32, bias: f32) -> Op {
    Op::Lrn(crate::op::Lrn {
        size,
        alpha,
        beta,
        bias,
    })
}

/// A user-facing reason for an I/O error (no OS error codes).
pub fn io_reason(e: &std::io::Error) -> String {
    convc_tensor::read::io_reason(e)
}

/// The shape and row-major values of a nested literal list; ragged lists and non-numbers are
/// errors at the offending element.
fn flatten_literal(e: &Expr) -> R<(Vec<usize>, Vec<f32>)> {
    fn walk(e: &Expr, depth: usize, shape: &mut Vec<usize>, out: &mut Vec<f32>) -> R<()> {
        match &e.kind {
            ExprKind::List(items) => {
                if shape.len() == depth {
                    if depth > 0 && shape.len() < depth {
                        return err(e.span, "ragged literal");
                    }
                    shape.push(items.len());
                } else if shape.len() > depth && shape[depth] != items.len() {
                    return err(
                        e.span,
                        format!(
                            "this list has {} elements but the ones before it have {}",
                            items.len(),
                            shape[depth]
                        ),
                    );
                }
                for it in items {
                    walk(it, depth + 1, shape, out)?;
                }
                if items.is_empty() {
                    return err(e.span, "an empty list is not a weight");
                }
                Ok(())
            }
            ExprKind::Number { value, .. } => {
                if shape.len() != depth {
                    return err(
                        e.span,
                        "ragged literal: a number stands where a list is expected",
                    );
                }
                if !value.is_finite() {
                    return err(e.span, format!("weights must be finite, found {value}"));
                }
                out.push(*value as f32);
                Ok(())
            }
            _ => err(
                e.span,
                format!("a literal weight list holds numbers, found {}", describe(e)),
            ),
        }
    }
    let mut shape = Vec::new();
    let mut out = Vec::new();
    walk(e, 0, &mut shape, &mut out)?;
    // A number at a shallower depth than an earlier one, or the reverse, shows up as a count
    // mismatch.
    if convc_tensor::checked_numel(&shape) != Some(out.len()) {
        return err(
            e.span,
            "ragged literal: the nested lists do not form a rectangular array",
        );
    }
    Ok((shape, out))
}

/// The op closest to a misspelling (edit distance at most 2).
fn closest(s: &str) -> Option<&'static str> {
    fn dist(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    if s.len() > 64 {
        return None;
    }
    OPS.iter()
        .map(|o| (dist(s, o), *o))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|p| p.1)
}
