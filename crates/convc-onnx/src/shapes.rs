//! The importer's side of shape arithmetic ([`crate::fold`]): `Shape`, `Gather`, `Slice`,
//! `Split`, `Squeeze`, `Cast`, `Range` and reductions, on constants (folded) and on computed
//! tensors where convc has a matching layer (a channel `slice`, a flatten, a global pool).

use convc_ir::lower::MAX_PARAM_ELEMENTS;
use convc_ir::{Dim, NodeIndex, Op};

use crate::OnnxError;
use crate::fold::{self, BATCH, UNKNOWN};
use crate::import::{Importer, Val};
use crate::proto::NodeProto;
use crate::read::{Attrs, Const, Data};

type R<T> = Result<T, OnnxError>;

fn fail<T>(at: &str, msg: impl std::fmt::Display) -> R<T> {
    Err(OnnxError::new(format!("{at}: {msg}")))
}

fn ints_const(v: Vec<i64>) -> Const {
    Const {
        dims: vec![v.len()],
        data: Data::I64(v),
    }
}

impl Importer<'_> {
    /// The value of input `i` (cloned), or an error naming `at`.
    fn input_val(&self, node: &NodeProto, i: usize, at: &str) -> R<Val> {
        let name = node.input.get(i).map(String::as_str).unwrap_or("");
        if name.is_empty() {
            return fail(at, format!("input {i} is missing"));
        }
        Ok(self.val(name, at)?.clone())
    }

    /// Optional integer input `i`, or `None` when omitted.
    fn opt_ints(&self, node: &NodeProto, i: usize, what: &str, at: &str) -> R<Option<Vec<i64>>> {
        if self.opt_input(node, i).is_none() {
            return Ok(None);
        }
        match self.const_input(node, i, at)?.ints() {
            Some(v) => Ok(Some(v.to_vec())),
            None => fail(at, format!("{what} must be integers")),
        }
    }

    /// `Shape`: the dimensions of a constant, or of a computed tensor with the batch as
    /// [`BATCH`] and a symbolic height or width as [`UNKNOWN`]; `start`/`end` (opset 15).
    pub(crate) fn shape_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let d = |x: &Dim| x.known().unwrap_or(UNKNOWN);
        let dims: Vec<i64> = match self.input_val(node, 0, at)? {
            Val::Const(c) => c.dims.iter().map(|&x| x as i64).collect(),
            Val::Node { n, flat } => {
                let s = &self.g.node(n).shape;
                if flat {
                    let k = s.hw().map_or(UNKNOWN, |(h, w)| (s.c * h * w) as i64);
                    vec![BATCH, k]
                } else {
                    vec![BATCH, s.c as i64, d(&s.h), d(&s.w)]
                }
            }
            Val::Grouped {
                n,
                groups,
                transposed,
            } => {
                let s = &self.g.node(n).shape;
                let (g, per) = (groups as i64, (s.c / groups) as i64);
                let (a1, a2) = if transposed { (per, g) } else { (g, per) };
                vec![BATCH, a1, a2, d(&s.h), d(&s.w)]
            }
        };
        let r = dims.len() as i64;
        let start = a.int("start")?.unwrap_or(0);
        let end = a.int("end")?.unwrap_or(r);
        let picked: Vec<i64> = fold::slice_positions(start, end, 1, dims.len())
            .into_iter()
            .map(|i| dims[i])
            .collect();
        self.set(node, Val::Const(ints_const(picked)), at)
    }

    /// `Gather` of constants (a `Shape`'s dimensions, most often).
    pub(crate) fn gather_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let Val::Const(data) = self.input_val(node, 0, at)? else {
            return fail(
                at,
                "Gather of a computed tensor is not supported (only of constants, such as a Shape's result)",
            );
        };
        let ind = self.const_input(node, 1, at)?;
        let c = fold::gather(&data, ind, a.int("axis")?.unwrap_or(0), at)?;
        self.set(node, Val::Const(c), at)
    }

    /// `Slice`: of a constant, folded; of a computed tensor on the channel axis only
    /// (step 1), a `slice` layer.
    pub(crate) fn slice_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let (starts, ends, axes, steps) = if self.opset < 10 {
            let Some(s) = a.ints("starts")? else {
                return fail(at, "`starts` is required");
            };
            let Some(e) = a.ints("ends")? else {
                return fail(at, "`ends` is required");
            };
            (s, e, a.ints("axes")?, None)
        } else {
            let s = self.opt_ints(node, 1, "starts", at)?;
            let e = self.opt_ints(node, 2, "ends", at)?;
            let (Some(s), Some(e)) = (s, e) else {
                return fail(at, "starts and ends are required");
            };
            (
                s,
                e,
                self.opt_ints(node, 3, "axes", at)?,
                self.opt_ints(node, 4, "steps", at)?,
            )
        };
        let k = starts.len();
        let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; k]);
        if ends.len() != k || axes.len() != k || steps.len() != k {
            return fail(at, "starts, ends, axes and steps must have the same length");
        }
        match self.input_val(node, 0, at)? {
            Val::Const(c) => {
                let s = fold::slice(&c, &starts, &ends, &axes, &steps, at)?;
                self.set(node, Val::Const(s), at)
            }
            Val::Node { n, flat } => {
                self.slice_node(node, (n, flat), (&starts, &ends, &axes, &steps), at)
            }
            Val::Grouped { .. } => fail(at, "Slice of a 5-D tensor is not supported"),
        }
    }

    /// `Slice` of a computed tensor: axis 1 (channels) with step 1, and on the other axes
    /// only slices that keep everything.
    fn slice_node(
        &mut self,
        node: &NodeProto,
        (n, flat): (NodeIndex, bool),
        (starts, ends, axes, steps): (&[i64], &[i64], &[i64], &[i64]),
        at: &str,
    ) -> R<()> {
        let s = self.g.node(n).shape.clone();
        let rank = if flat { 2 } else { 4 };
        if flat && s.hw() != Some((1, 1)) {
            return fail(at, "Slice of a flattened tensor is not supported");
        }
        let mut range = (0, s.c);
        for k in 0..starts.len() {
            let ax = fold::axis(axes[k], rank, at)?;
            let size = match ax {
                1 => Some(s.c),
                2 => s.hw().map(|p| p.0),
                3 => s.hw().map(|p| p.1),
                _ => None,
            };
            let whole = |size: usize| {
                fold::slice_positions(starts[k], ends[k], steps[k], size)
                    .into_iter()
                    .eq(0..size)
            };
            if ax == 1 {
                if steps[k] != 1 {
                    return fail(
                        at,
                        "a Slice of channels with a step other than 1 is not supported",
                    );
                }
                let p = fold::slice_positions(starts[k], ends[k], 1, s.c);
                range = match (p.first(), p.last()) {
                    (Some(&f), Some(&l)) => (f, l + 1),
                    _ => return fail(at, "the Slice keeps no channel"),
                };
            } else if ax == 0 && starts[k] == 0 && ends[k] >= i64::from(i32::MAX) && steps[k] == 1 {
                // The whole batch.
            } else if steps[k] == 0 || !size.is_some_and(whole) {
                return fail(
                    at,
                    format!(
                        "a Slice on axis {} is not supported (convc slices channels only)",
                        axes[k]
                    ),
                );
            }
        }
        let op = Op::Slice {
            start: range.0,
            end: range.1,
        };
        let out = Self::out_name(node).to_string();
        let v = self.add(&out, op, &[n], at)?;
        self.set(node, Val::Node { n: v, flat }, at)
    }

    /// `Split` on the channel axis of a computed tensor (equal parts, the `split` sizes, or
    /// opset 18's `num_outputs`): one `slice` layer per output; of a constant, folded.
    pub(crate) fn split_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let x = self.input_val(node, 0, at)?;
        let ax = a.int("axis")?.unwrap_or(0);
        let outs = node.output.len();
        let (len, axis) = match &x {
            Val::Const(c) => {
                let a = fold::axis(ax, c.dims.len(), at)?;
                (c.dims[a], a)
            }
            Val::Node { n, flat } => {
                let a = fold::axis(ax, if *flat { 2 } else { 4 }, at)?;
                if a != 1 || (*flat && self.g.node(*n).shape.hw() != Some((1, 1))) {
                    return fail(
                        at,
                        format!(
                            "a Split on axis {ax} is not supported (convc splits channels only)"
                        ),
                    );
                }
                (self.g.node(*n).shape.c, a)
            }
            Val::Grouped { .. } => return fail(at, "Split of a 5-D tensor is not supported"),
        };
        let sizes = if self.opset < 13 {
            a.ints("split")?
        } else {
            self.opt_ints(node, 1, "split", at)?
        };
        let sizes: Vec<usize> = match sizes {
            Some(v) => {
                if v.len() != outs
                    || v.iter().any(|&s| s < 0)
                    || v.iter().sum::<i64>() != len as i64
                {
                    return fail(
                        at,
                        format!(
                            "split sizes {v:?} do not divide an axis of {len} into {outs} parts"
                        ),
                    );
                }
                v.iter().map(|&s| s as usize).collect()
            }
            None => {
                if outs == 0 {
                    return fail(at, "Split has no output");
                }
                let per = len.div_ceil(outs);
                (0..outs)
                    .map(|i| per.min(len.saturating_sub(i * per)))
                    .collect()
            }
        };
        let mut start = 0usize;
        for (i, &size) in sizes.iter().enumerate() {
            let out = node.output[i].clone();
            let (s, e) = (start as i64, (start + size) as i64);
            start += size;
            if out.is_empty() {
                continue;
            }
            let v = match &x {
                Val::Const(c) => Val::Const(fold::slice(c, &[s], &[e], &[axis as i64], &[1], at)?),
                Val::Node { n, flat } => {
                    if size == 0 {
                        return fail(at, format!("output {i} would have no channel"));
                    }
                    let op = Op::Slice {
                        start: s as usize,
                        end: e as usize,
                    };
                    let v = self.add(&out, op, &[*n], at)?;
                    Val::Node { n: v, flat: *flat }
                }
                Val::Grouped { .. } => return fail(at, "Split of a 5-D tensor is not supported"),
            };
            self.vals.insert(out, v);
        }
        Ok(())
    }

    /// `Squeeze`: of a constant, folded; of a computed `[N, C, 1, 1]`, the axes 2 and 3 (or
    /// every axis of size 1 when C is not 1): a flatten to `[N, C]`.
    pub(crate) fn squeeze_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let axes = if self.opset < 13 {
            a.ints("axes")?
        } else {
            self.opt_ints(node, 1, "axes", at)?
        };
        match self.input_val(node, 0, at)? {
            Val::Const(c) => {
                let q = fold::squeeze(&c, axes.as_deref(), at)?;
                self.set(node, Val::Const(q), at)
            }
            Val::Node { n, flat: false } if self.g.node(n).shape.hw() == Some((1, 1)) => {
                let c = self.g.node(n).shape.c;
                let flatten = match &axes {
                    None => c != 1,
                    Some(v) => {
                        let mut ax = v
                            .iter()
                            .map(|&x| fold::axis(x, 4, at))
                            .collect::<R<Vec<usize>>>()?;
                        ax.sort_unstable();
                        ax == [2, 3]
                    }
                };
                if !flatten {
                    return fail(
                        at,
                        format!(
                            "Squeeze with axes {axes:?} is not supported (only axes 2 and 3 of [N, C, 1, 1])"
                        ),
                    );
                }
                self.set(node, Val::Node { n, flat: true }, at)
            }
            _ => fail(
                at,
                "Squeeze of a computed tensor is supported only on a [N, C, 1, 1] tensor (a flatten)",
            ),
        }
    }

    /// `Unsqueeze` of a flattened `[N, K]` value with a 1x1 plane on axes 2 and 3: back to
    /// `[N, K, 1, 1]`.
    pub(crate) fn unsqueeze_node(
        &mut self,
        node: &NodeProto,
        axes: &[i64],
        n: NodeIndex,
        flat: bool,
        at: &str,
    ) -> R<()> {
        let mut ax = axes
            .iter()
            .map(|&x| fold::axis(x, 4, at))
            .collect::<R<Vec<usize>>>()?;
        ax.sort_unstable();
        if !(flat && ax == [2, 3] && self.g.node(n).shape.hw() == Some((1, 1))) {
            return fail(
                at,
                "Unsqueeze of a computed tensor is supported only on axes 2 and 3 of a [N, K] tensor (from a flatten of [N, K, 1, 1])",
            );
        }
        self.set(node, Val::Node { n, flat: false }, at)
    }

    /// `Cast`: of a constant, folded; of a computed tensor to float, nothing.
    pub(crate) fn cast_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let Some(to) = a.int("to")? else {
            return fail(at, "`to` is required");
        };
        match self.input_val(node, 0, at)? {
            Val::Const(c) => {
                let c = fold::cast(&c, to, at)?;
                self.set(node, Val::Const(c), at)
            }
            v if to == 1 => self.set(node, v, at),
            _ => fail(
                at,
                format!(
                    "a Cast of a computed tensor to element type {to} is not supported (convc computes in float32)"
                ),
            ),
        }
    }

    /// `Range` of constants.
    pub(crate) fn range_op(&mut self, node: &NodeProto, at: &str) -> R<()> {
        let (s, l, d) = (
            self.const_input(node, 0, at)?,
            self.const_input(node, 1, at)?,
            self.const_input(node, 2, at)?,
        );
        let c = fold::range(s, l, d, MAX_PARAM_ELEMENTS, at)?;
        self.charge(c.len(), Self::out_name(node))?;
        self.set(node, Val::Const(c), at)
    }

    /// `ReduceProd`, `ReduceSum`, `ReduceMax`, `ReduceMin`, `ReduceMean`: of a constant,
    /// folded (not `ReduceMean`); `ReduceMean`/`ReduceMax` of a computed `[N, C, H, W]` over
    /// axes 2 and 3: a global pool (`keepdims=0` gives `[N, C]`).
    pub(crate) fn reduce_op(&mut self, node: &NodeProto, a: &Attrs, at: &str) -> R<()> {
        let ty = node.op_type();
        let axes_input = self.opset >= 18 || (ty == "ReduceSum" && self.opset >= 13);
        let axes = if axes_input {
            self.opt_ints(node, 1, "axes", at)?
        } else {
            a.ints("axes")?
        };
        let keep = a.int("keepdims")?.unwrap_or(1) != 0;
        let noop = a.int("noop_with_empty_axes")?.unwrap_or(0) != 0;
        let axes = axes.filter(|v| !v.is_empty());
        let x = self.input_val(node, 0, at)?;
        if axes.is_none() && noop {
            return self.set(node, x, at);
        }
        match x {
            Val::Const(c) if ty != "ReduceMean" => {
                let r = fold::reduce(&c, ty, axes.as_deref(), keep, at)?;
                self.set(node, Val::Const(r), at)
            }
            Val::Node { n, flat: false } if matches!(ty, "ReduceMean" | "ReduceMax") => {
                let mut ax = axes
                    .unwrap_or_default()
                    .iter()
                    .map(|&x| fold::axis(x, 4, at))
                    .collect::<R<Vec<usize>>>()?;
                ax.sort_unstable();
                if ax != [2, 3] {
                    return fail(
                        at,
                        format!(
                            "{ty} over axes {ax:?} is not supported (only over axes 2 and 3: a global pool)"
                        ),
                    );
                }
                let op = if ty == "ReduceMax" {
                    Op::GlobalMaxPool
                } else {
                    Op::GlobalAvgPool
                };
                let v = self.add(Self::out_name(node), op, &[n], at)?;
                self.set(node, Val::Node { n: v, flat: !keep }, at)
            }
            _ => fail(
                at,
                format!(
                    "{ty} of this input is not supported (constants are folded; ReduceMean and ReduceMax of an image over axes 2 and 3 are global pools)"
                ),
            ),
        }
    }

    /// `Concat` of constants only, folded; `None` when an input is computed.
    pub(crate) fn concat_consts(&mut self, node: &NodeProto, axis: i64, at: &str) -> R<Option<()>> {
        let mut cs = Vec::new();
        for i in 0..node.input.len() {
            match self.input_val(node, i, at)? {
                Val::Const(c) => cs.push(c),
                _ => return Ok(None),
            }
        }
        let c = fold::concat(&cs, axis, at)?;
        self.set(node, Val::Const(c), at).map(Some)
    }
}
