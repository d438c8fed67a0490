//! The reference interpreter (the oracle): every op of the `.conv` language in plain loops
//! that are obviously right, with `f64` accumulation. Every rewrite pass and the JIT are held
//! to it.
//!
//! [`run`] evaluates a [`Graph`] on a batch: one `[N, C, H, W]` tensor per network input, one
//! `[N, C, H, W]` tensor per output. The per-image op functions in [`ops`] are public for tests
//! and passes. Convolutions split their output planes (image, output channel) across threads
//! with [`std::thread::scope`]; every other op runs on the calling thread.

#![warn(missing_docs)]

pub mod ops;

use std::fmt;

use convc_ir::shape::{bind_inputs, concretize};
use convc_ir::{Conv, Graph, NodeIndex, Op, Shape};
use convc_tensor::{Tensor, fmt_shape};

pub use ops::{add, batchnorm, concat, conv2d, global_avgpool, out_len, pool, unary};

/// Why a network could not be run: the message says what to change (which input, the
/// expected and the found shape; for a size error, the layer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError {
    /// What is wrong, for a user.
    pub message: String,
}

impl RunError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> RunError {
        RunError {
            message: message.into(),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RunError {}

/// The number of threads [`run`] uses: the number of cores (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `g` on `inputs` with [`default_threads`] threads. See [`run_threads`].
pub fn run(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
    run_threads(g, inputs, default_threads())
}

/// Runs `g` on `inputs`, one `[N, C, H, W]` tensor per network input (in `g.inputs` order, all
/// with the same N >= 1), using up to `threads` threads (0 means 1). Returns one `[N, C, H, W]`
/// tensor per entry of `g.outputs`, in order (an output listed twice is returned twice).
///
/// Symbolic sizes are bound from the inputs and every shape is made concrete first, so a
/// wrong input or a layer whose output would be empty is reported before any work. Only the
/// nodes the outputs depend on are evaluated, in topological order, and each intermediate
/// value is dropped after its last use.
pub fn run_threads(g: &Graph, inputs: &[Tensor], threads: usize) -> Result<Vec<Tensor>, RunError> {
    let batch = check_inputs(g, inputs)?;
    let sizes: Vec<(usize, usize)> = inputs
        .iter()
        .map(|t| (t.shape()[2], t.shape()[3]))
        .collect();
    let bindings = bind_inputs(g, &sizes).map_err(|m| RunError::new(input_hint(g, inputs, m)))?;
    let conc = concretize(g, &bindings).map_err(|d| RunError::new(d.message))?;

    let bound = g.g.node_indices().map(|n| n.index() + 1).max().unwrap_or(0);
    let order = g.topo_order();
    let mut needed = vec![false; bound];
    let mut is_output = vec![false; bound];
    for &o in &g.outputs {
        if !g.g.contains_node(o) {
            return Err(RunError::new(
                "the graph lists an output that is not one of its nodes",
            ));
        }
        needed[o.index()] = true;
        is_output[o.index()] = true;
    }
    let operands: Vec<Vec<NodeIndex>> = (0..bound)
        .map(|i| {
            let n = NodeIndex::new(i);
            if g.g.contains_node(n) {
                g.operands(n)
            } else {
                Vec::new()
            }
        })
        .collect();
    for &n in order.iter().rev() {
        if needed[n.index()] {
            for o in &operands[n.index()] {
                needed[o.index()] = true;
            }
        }
    }
    // Remaining uses of each value as an operand; at zero it is dropped (unless an output).
    let mut uses = vec![0usize; bound];
    for &n in &order {
        if needed[n.index()] {
            for o in &operands[n.index()] {
                uses[o.index()] += 1;
            }
        }
    }

    let mut values: Vec<Option<Vec<f32>>> = vec![None; bound];
    for &n in &order {
        if !needed[n.index()] {
            continue;
        }
        let ops = &operands[n.index()];
        let mut args = Vec::with_capacity(ops.len());
        for o in ops {
            let v = values[o.index()].as_deref().ok_or_else(|| {
                RunError::new(format!(
                    "internal error: `{}` was used after it was dropped",
                    g.node(*o).name
                ))
            })?;
            args.push((v, conc.get(*o)));
        }
        let node = g.node(n);
        let want = conc.get(n);
        let (v, shape) = eval(&node.op, &args, inputs, batch, threads)
            .map_err(|e| RunError::new(format!("layer `{}`: {}", node.name, e.message)))?;
        if shape != want {
            return Err(RunError::new(format!(
                "internal error: layer `{}` computed shape {} but shape inference says {}",
                node.name,
                fmt_shape(&shape),
                fmt_shape(&want)
            )));
        }
        values[n.index()] = Some(v);
        for o in ops {
            uses[o.index()] -= 1;
            if uses[o.index()] == 0 && !is_output[o.index()] {
                values[o.index()] = None;
            }
        }
    }

    let mut outs = Vec::with_capacity(g.outputs.len());
    for (k, &o) in g.outputs.iter().enumerate() {
        let [c, h, w] = conc.get(o);
        // The last listing of an output takes the value; earlier ones copy it.
        let data = if g.outputs[k + 1..].contains(&o) {
            values[o.index()].clone()
        } else {
            values[o.index()].take()
        };
        let data = data.unwrap_or_default();
        let t = Tensor::new(vec![batch, c, h, w], data).map_err(|e| {
            RunError::new(format!(
                "internal error: output `{}`: {}",
                g.node(o).name,
                e.message
            ))
        })?;
        outs.push(t);
    }
    Ok(outs)
}

/// Checks the number of inputs, their rank, a common N and the channel counts. Returns N.
fn check_inputs(g: &Graph, inputs: &[Tensor]) -> Result<usize, RunError> {
    if g.inputs.iter().any(|&n| !g.g.contains_node(n)) {
        return Err(RunError::new(
            "the graph lists an input that is not one of its nodes",
        ));
    }
    let names: Vec<String> = g
        .inputs
        .iter()
        .map(|&n| format!("`{}`", g.node(n).name))
        .collect();
    if inputs.len() != g.inputs.len() {
        return Err(RunError::new(format!(
            "the network has {} input(s) ({}), but {} tensor(s) were given",
            g.inputs.len(),
            names.join(", "),
            inputs.len()
        )));
    }
    let mut batch: Option<(usize, &str)> = None;
    for (&n, t) in g.inputs.iter().zip(inputs) {
        let node = g.node(n);
        let &[b, c, _, _] = t.shape() else {
            return Err(RunError::new(format!(
                "input `{}`: expected a 4-D [N, C, H, W] tensor, found shape {}",
                node.name,
                fmt_shape(t.shape())
            )));
        };
        if c != node.shape.c {
            return Err(RunError::new(format!(
                "input `{}` expects {} channel(s) ({} per image), found shape {}",
                node.name,
                node.shape.c,
                shape_text(&node.shape),
                fmt_shape(t.shape())
            )));
        }
        match batch {
            Some((first, other)) if first != b => {
                return Err(RunError::new(format!(
                    "input `{}` has a batch of {b} image(s) but input `{other}` has {first}: every input needs the same N",
                    node.name
                )));
            }
            Some(_) => {}
            None => batch = Some((b, &node.name)),
        }
        if b == 0 {
            return Err(RunError::new(format!(
                "input `{}` has shape {}: a batch of 0 images, nothing to run",
                node.name,
                fmt_shape(t.shape())
            )));
        }
    }
    batch
        .map(|b| b.0)
        .ok_or_else(|| RunError::new("the network has no inputs"))
}

/// A per-image shape as `[C, H, W]`, symbols kept (`[3, H, W]`).
fn shape_text(s: &Shape) -> String {
    format!("[{}, {}, {}]", s.c, s.h, s.w)
}

/// Adds the expected and found shapes to a binding error.
fn input_hint(g: &Graph, inputs: &[Tensor], msg: String) -> String {
    let shown: Vec<String> = g
        .inputs
        .iter()
        .zip(inputs)
        .map(|(&n, t)| {
            format!(
                "`{}` expects {} per image, found {}",
                g.node(n).name,
                shape_text(&g.node(n).shape),
                fmt_shape(t.shape())
            )
        })
        .collect();
    format!("{msg} ({})", shown.join("; "))
}

/// One image-sized operand: values of all N images and the per-image shape.
type Arg<'a> = (&'a [f32], [usize; 3]);

/// Evaluates one op on a batch of `batch` images. Returns the values and the per-image shape.
fn eval(
    op: &Op,
    args: &[Arg<'_>],
    inputs: &[Tensor],
    batch: usize,
    threads: usize,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    let arg = |i: usize| -> Result<Arg<'_>, RunError> {
        args.get(i)
            .copied()
            .ok_or_else(|| RunError::new(format!("needs {} operand(s), has {}", i + 1, args.len())))
    };
    match op {
        Op::Input { index } => {
            let t = inputs
                .get(*index)
                .ok_or_else(|| RunError::new(format!("no input tensor number {index}")))?;
            let s = t.shape();
            Ok((t.data().to_vec(), [s[1], s[2], s[3]]))
        }
        Op::Conv(c) => {
            let (x, s) = arg(0)?;
            conv2d_batch(x, batch, s, c, threads)
        }
        Op::BatchNorm(bn) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| Ok((ops::batchnorm(img, s, bn)?, s)))
        }
        Op::Unary(u) => {
            let (x, s) = arg(0)?;
            Ok((ops::unary(x, *u), s))
        }
        Op::Add | Op::Mul => {
            let ((a, sa), (b, sb)) = (arg(0)?, arg(1)?);
            if matches!(op, Op::Add) && sa == sb {
                return Ok((ops::add(a, b)?, sa));
            }
            let (la, lb) = (image_len(a, batch, sa)?, image_len(b, batch, sb)?);
            let f = if matches!(op, Op::Add) {
                ops::add_broadcast
            } else {
                ops::mul
            };
            let mut out = Vec::new();
            let mut shape = sa;
            for i in 0..batch {
                let (v, s) = f(&a[i * la..(i + 1) * la], sa, &b[i * lb..(i + 1) * lb], sb)?;
                out.extend(v);
                shape = s;
            }
            Ok((out, shape))
        }
        Op::PRelu { slope } => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| {
                Ok((ops::prelu(img, s, slope.data.data())?, s))
            })
        }
        Op::ConvTranspose(t) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::conv_transpose(img, s, t))
        }
        Op::Pad(p) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::pad(img, s, p))
        }
        Op::Upsample(u) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::upsample(img, s, u))
        }
        Op::GlobalMaxPool => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::global_maxpool(img, s))
        }
        Op::Concat => {
            let (_, [_, h, w]) = arg(0)?;
            let mut c = 0;
            let mut lens = Vec::with_capacity(args.len());
            for &(x, s) in args {
                if s[1] != h || s[2] != w {
                    return Err(RunError::new(format!(
                        "concat of sizes {h}x{w} and {}x{}",
                        s[1], s[2]
                    )));
                }
                c += s[0];
                lens.push(image_len(x, batch, s)?);
            }
            // Per image: the operands' images one after another.
            let mut out = Vec::with_capacity(batch * c * h * w);
            for i in 0..batch {
                for (&(x, _), &len) in args.iter().zip(&lens) {
                    out.extend_from_slice(&x[i * len..(i + 1) * len]);
                }
            }
            Ok((out, [c, h, w]))
        }
        Op::Pool(p) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::pool(img, s, p))
        }
        Op::GlobalAvgPool => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::global_avgpool(img, s))
        }
        Op::Softmax => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| Ok((ops::softmax(img, s)?, s)))
        }
        Op::Shuffle { groups } => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| Ok((ops::shuffle(img, s, *groups)?, s)))
        }
        Op::Lrn(l) => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| Ok((ops::lrn(img, s, l)?, s)))
        }
        Op::Slice { start, end } => {
            let (x, s) = arg(0)?;
            per_image(x, batch, s, |img| ops::slice(img, s, *start, *end))
        }
    }
}

/// Applies a per-image function to each of `batch` images of shape `shape` and concatenates
/// the results.
fn per_image(
    x: &[f32],
    batch: usize,
    shape: [usize; 3],
    mut f: impl FnMut(&[f32]) -> Result<(Vec<f32>, [usize; 3]), RunError>,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    let len = image_len(x, batch, shape)?;
    let mut out = Vec::new();
    let mut out_shape = None;
    for i in 0..batch {
        let (v, s) = f(&x[i * len..(i + 1) * len])?;
        out.extend_from_slice(&v);
        out_shape = Some(s);
    }
    let s = out_shape.ok_or_else(|| RunError::new("a batch of 0 images"))?;
    Ok((out, s))
}

/// The values per image, checking `x` holds exactly `batch` images of `shape`.
fn image_len(x: &[f32], batch: usize, shape: [usize; 3]) -> Result<usize, RunError> {
    let len = shape[0]
        .checked_mul(shape[1])
        .and_then(|v| v.checked_mul(shape[2]));
    match len {
        Some(len) if len.checked_mul(batch) == Some(x.len()) => Ok(len),
        _ => Err(RunError::new(format!(
            "{} values do not form {batch} image(s) of {}",
            x.len(),
            fmt_shape(&shape)
        ))),
    }
}

/// Convolution of a batch of `batch` images of shape `[C, H, W]` (stored one after another),
/// with the semantics of [`conv2d`]. The output planes (image, output channel) are shared out
/// across up to `threads` threads; small convolutions run on the calling thread. Returns the
/// output `[N, out, OH, OW]` values and the per-image shape `[out, OH, OW]`.
pub fn conv2d_batch(
    x: &[f32],
    batch: usize,
    shape: [usize; 3],
    conv: &Conv,
    threads: usize,
) -> Result<(Vec<f32>, [usize; 3]), RunError> {
    let p = ops::ConvPlan::new(shape, conv)?;
    let in_len = image_len(x, batch, shape)?;
    debug_assert_eq!(in_len, p.in_len());
    let [o, oh, ow] = p.out;
    let plane = oh * ow;
    let total = batch
        .checked_mul(o)
        .and_then(|v| v.checked_mul(plane))
        .ok_or_else(|| RunError::new("conv: the output is too large"))?;
    let mut out = Vec::new();
    out.try_reserve_exact(total).map_err(|_| {
        RunError::new(format!(
            "conv: not enough memory for an output of {total} values"
        ))
    })?;
    out.resize(total, 0.0f32);
    let mut tasks: Vec<(usize, &mut [f32])> = out.chunks_mut(plane.max(1)).enumerate().collect();
    // Below this many multiply-adds, starting threads costs more than it saves.
    const MIN_PARALLEL_MACS: usize = 1 << 18;
    let threads = if p.macs().saturating_mul(batch) < MIN_PARALLEL_MACS {
        1
    } else {
        threads.clamp(1, tasks.len().max(1))
    };
    let work = |tasks: Vec<(usize, &mut [f32])>| {
        let mut acc = Vec::new();
        for (k, dst) in tasks {
            let img = k / o;
            ops::conv_plane(
                &x[img * in_len..(img + 1) * in_len],
                &p,
                conv,
                k % o,
                dst,
                &mut acc,
            );
        }
    };
    if threads <= 1 {
        work(tasks);
    } else {
        let mut buckets: Vec<Vec<(usize, &mut [f32])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, t) in tasks.drain(..).enumerate() {
            buckets[i % threads].push(t);
        }
        let work = &work;
        std::thread::scope(|s| {
            for b in buckets {
                s.spawn(move || work(b));
            }
        });
    }
    Ok((out, p.out))
}
