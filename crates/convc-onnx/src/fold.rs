//! Shape arithmetic folded to constants while importing: `Shape`, `Gather`, `Slice`,
//! `Squeeze`, `Cast`, `Range`, `ReduceProd`/`ReduceSum`/`ReduceMax`/`ReduceMin`, `Concat` of
//! constants, and elementwise arithmetic with NumPy broadcasting (integers stay integers).
//!
//! The batch size N is open (any batch runs), so `Shape` of a computed tensor gives
//! [`BATCH`] for it, and [`UNKNOWN`] for a symbolic height or width. The markers pass
//! through the ops that only move values (`Gather`, `Slice`, `Concat`, `Unsqueeze`,
//! `Squeeze`, `Reshape`, `Identity`, a `Cast` to an integer type); `Reshape` of a computed
//! tensor accepts [`BATCH`] as its first dimension, as it accepts -1, 0 and 1. Arithmetic,
//! `Range`, `ConstantOfShape` or a float `Cast` of a marker is an error naming the node.

use crate::OnnxError;
use crate::read::{Const, Data};

type R<T> = Result<T, OnnxError>;

fn fail<T>(at: &str, msg: impl std::fmt::Display) -> R<T> {
    Err(OnnxError::new(format!("{at}: {msg}")))
}

/// The batch dimension N in a folded shape.
pub(crate) const BATCH: i64 = i64::MIN + 0xBA7C4;
/// A symbolic height or width in a folded shape.
pub(crate) const UNKNOWN: i64 = BATCH + 1;

/// Whether `v` is [`BATCH`] or [`UNKNOWN`].
pub(crate) fn is_marker(v: i64) -> bool {
    v == BATCH || v == UNKNOWN
}

/// An error when `c` holds a marker: `what` needs actual numbers.
pub(crate) fn no_markers(c: &Const, what: &str, at: &str) -> R<()> {
    match c
        .ints()
        .and_then(|v| v.iter().copied().find(|&x| is_marker(x)))
    {
        Some(BATCH) => fail(
            at,
            format!(
                "{what} needs the batch size, which convc leaves open (any batch runs): only a Reshape's first dimension may be the batch size"
            ),
        ),
        Some(_) => fail(
            at,
            format!("{what} needs the input's height and width: give the input a fixed size"),
        ),
        None => Ok(()),
    }
}

/// An axis `a` of a rank-`r` tensor (negative counts from the end), checked.
pub(crate) fn axis(a: i64, r: usize, at: &str) -> R<usize> {
    let r = r as i64;
    let x = if a < 0 { a + r } else { a };
    if (0..r).contains(&x) {
        Ok(x as usize)
    } else {
        fail(at, format!("axis {a} is not an axis of a rank-{r} tensor"))
    }
}

/// The values of `c` picked by flat indices `idx` (in order), as a tensor of shape `dims`.
fn pick(c: &Const, idx: &[usize], dims: Vec<usize>) -> Const {
    let data = match &c.data {
        Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
        Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
    };
    Const { dims, data }
}

/// `Gather(data, indices, axis)` of constants.
pub(crate) fn gather(data: &Const, indices: &Const, ax: i64, at: &str) -> R<Const> {
    if data.dims.is_empty() {
        return fail(at, "Gather of a scalar");
    }
    let a = axis(ax, data.dims.len(), at)?;
    let Some(ind) = indices.ints() else {
        return fail(at, "the indices must be integers");
    };
    let n = data.dims[a] as i64;
    let mut picked = Vec::with_capacity(ind.len());
    for &i in ind {
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return fail(
                at,
                format!("index {i} is out of range for an axis of {n} elements"),
            );
        }
        picked.push(j as usize);
    }
    let outer: usize = data.dims[..a].iter().product();
    let inner: usize = data.dims[a + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * picked.len() * inner);
    for o in 0..outer {
        for &p in &picked {
            let base = (o * data.dims[a] + p) * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut dims = data.dims[..a].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&data.dims[a + 1..]);
    Ok(pick(data, &idx, dims))
}

/// The positions `start..end` by `step` on an axis of `n` elements, as ONNX `Slice` clamps
/// them.
pub(crate) fn slice_positions(start: i64, end: i64, step: i64, n: usize) -> Vec<usize> {
    let n = n as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (norm(start), norm(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, n), e.clamp(0, n))
    } else {
        (s.clamp(0, n - 1), e.clamp(-1, n - 1))
    };
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(i as usize);
        i = i.saturating_add(step);
    }
    out
}

/// `Slice` of a constant: per axis in `axes`, `starts[k]..ends[k]` by `steps[k]`.
pub(crate) fn slice(
    c: &Const,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
    at: &str,
) -> R<Const> {
    let r = c.dims.len();
    let mut keep: Vec<Vec<usize>> = c.dims.iter().map(|&d| (0..d).collect()).collect();
    for k in 0..starts.len() {
        let a = axis(axes[k], r, at)?;
        if steps[k] == 0 {
            return fail(at, "a step is 0");
        }
        keep[a] = slice_positions(starts[k], ends[k], steps[k], c.dims[a]);
    }
    let dims: Vec<usize> = keep.iter().map(Vec::len).collect();
    let mut idx = vec![0usize];
    for (a, ks) in keep.iter().enumerate() {
        let mut next = Vec::with_capacity(idx.len() * ks.len());
        for &base in &idx {
            next.extend(ks.iter().map(|&k| base * c.dims[a] + k));
        }
        idx = next;
    }
    Ok(pick(c, &idx, dims))
}

/// `Concat` of constants along `ax`.
pub(crate) fn concat(cs: &[Const], ax: i64, at: &str) -> R<Const> {
    let Some(first) = cs.first() else {
        return fail(at, "Concat needs at least one input");
    };
    let a = axis(ax, first.dims.len(), at)?;
    for c in cs {
        let same = c.dims.len() == first.dims.len()
            && c.dims
                .iter()
                .zip(&first.dims)
                .enumerate()
                .all(|(i, (x, y))| i == a || x == y);
        if !same {
            return fail(
                at,
                format!(
                    "constants of shapes {} and {} cannot be concatenated on axis {ax}",
                    convc_tensor::fmt_shape(&first.dims),
                    convc_tensor::fmt_shape(&c.dims)
                ),
            );
        }
    }
    let ints = cs.iter().all(|c| c.ints().is_some());
    let outer: usize = first.dims[..a].iter().product();
    let mut dims = first.dims.clone();
    dims[a] = cs.iter().map(|c| c.dims[a]).sum();
    let chunk = |c: &Const| c.dims[a..].iter().product::<usize>();
    let data = if ints {
        let mut v = Vec::new();
        for o in 0..outer {
            for c in cs {
                let k = chunk(c);
                v.extend_from_slice(&c.ints().unwrap_or_default()[o * k..(o + 1) * k]);
            }
        }
        Data::I64(v)
    } else {
        let mut v = Vec::new();
        for o in 0..outer {
            for c in cs {
                let k = chunk(c);
                v.extend_from_slice(&c.floats()[o * k..(o + 1) * k]);
            }
        }
        Data::F32(v)
    };
    Ok(Const { dims, data })
}

/// `Squeeze` of a constant: the given axes (each of size 1), or every axis of size 1.
pub(crate) fn squeeze(c: &Const, axes: Option<&[i64]>, at: &str) -> R<Const> {
    let r = c.dims.len();
    let drop: Vec<usize> = match axes {
        None => (0..r).filter(|&a| c.dims[a] == 1).collect(),
        Some(ax) => {
            let mut v = Vec::new();
            for &x in ax {
                let a = axis(x, r, at)?;
                if c.dims[a] != 1 {
                    return fail(at, format!("axis {x} has size {}, not 1", c.dims[a]));
                }
                v.push(a);
            }
            v
        }
    };
    let dims = (0..r)
        .filter(|a| !drop.contains(a))
        .map(|a| c.dims[a])
        .collect();
    Ok(Const {
        dims,
        data: c.data.clone(),
    })
}

/// `Cast` of a constant to ONNX element type `to`: float types give floats, integer and
/// bool types integers (floats truncated toward zero; bool 0 or 1).
pub(crate) fn cast(c: &Const, to: i64, at: &str) -> R<Const> {
    let data = match to {
        1 | 10 | 11 | 16 => {
            no_markers(c, "a Cast to a float type", at)?;
            Data::F32(c.floats())
        }
        9 => match &c.data {
            Data::F32(v) => Data::I64(v.iter().map(|&x| i64::from(x != 0.0)).collect()),
            Data::I64(v) => Data::I64(v.iter().map(|&x| i64::from(x != 0)).collect()),
        },
        2..=7 | 12 | 13 => match &c.data {
            Data::F32(v) => {
                if v.iter().any(|x| !x.is_finite()) {
                    return fail(at, "a Cast of a non-finite number to an integer");
                }
                Data::I64(v.iter().map(|&x| x as i64).collect())
            }
            Data::I64(v) => Data::I64(v.clone()),
        },
        other => {
            return fail(
                at,
                format!("a Cast to element type {other} is not supported"),
            );
        }
    };
    Ok(Const {
        dims: c.dims.clone(),
        data,
    })
}

/// `Range(start, limit, delta)` of scalar constants, with at most `max` values.
pub(crate) fn range(s: &Const, l: &Const, d: &Const, max: usize, at: &str) -> R<Const> {
    for c in [s, l, d] {
        no_markers(c, "Range", at)?;
        if c.len() != 1 {
            return fail(at, "start, limit and delta must be scalars");
        }
    }
    match (s.ints(), l.ints(), d.ints()) {
        (Some(&[s]), Some(&[l]), Some(&[d])) => {
            if d == 0 {
                return fail(at, "delta is 0");
            }
            let span = i128::from(l) - i128::from(s);
            let n = (span + i128::from(d) - d.signum() as i128) / i128::from(d);
            let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
            if n > max {
                return fail(at, format!("the range has more than {max} values"));
            }
            let v = (0..n as i64).map(|i| s + i * d).collect();
            Ok(Const {
                dims: vec![n],
                data: Data::I64(v),
            })
        }
        _ => {
            let (s, l, d) = (
                s.floats()[0] as f64,
                l.floats()[0] as f64,
                d.floats()[0] as f64,
            );
            let n = ((l - s) / d).ceil();
            if !n.is_finite() || d == 0.0 {
                return fail(at, "start, limit and delta give no finite range");
            }
            let n = n.max(0.0);
            if n > max as f64 {
                return fail(at, format!("the range has more than {max} values"));
            }
            let v = (0..n as usize).map(|i| (s + i as f64 * d) as f32).collect();
            Ok(Const {
                dims: vec![n as usize],
                data: Data::F32(v),
            })
        }
    }
}

/// `ReduceProd`, `ReduceSum`, `ReduceMax` or `ReduceMin` (`op`) of a constant over `axes`
/// (every axis when `None`).
pub(crate) fn reduce(c: &Const, op: &str, axes: Option<&[i64]>, keep: bool, at: &str) -> R<Const> {
    let r = c.dims.len();
    let mut red = vec![false; r];
    match axes {
        None => red.iter_mut().for_each(|x| *x = true),
        Some(ax) => {
            for &x in ax {
                red[axis(x, r, at)?] = true;
            }
        }
    }
    if c.is_empty() {
        return fail(at, "a reduction of an empty tensor");
    }
    let out_dims: Vec<usize> = (0..r).map(|a| if red[a] { 1 } else { c.dims[a] }).collect();
    let out_n: usize = out_dims.iter().product();
    // The output position of every input element.
    let mut target = Vec::with_capacity(c.len());
    for i in 0..c.len() {
        let (mut rest, mut o, mut stride) = (i, 0usize, 1usize);
        for a in (0..r).rev() {
            let k = rest % c.dims[a];
            rest /= c.dims[a];
            if !red[a] {
                o += k * stride;
            }
            stride *= out_dims[a];
        }
        target.push(o);
    }
    let data = match &c.data {
        Data::I64(v) => {
            no_markers(c, op, at)?;
            let mut acc: Vec<Option<i64>> = vec![None; out_n];
            for (&x, &o) in v.iter().zip(&target) {
                acc[o] = Some(match acc[o] {
                    None => x,
                    Some(a) => int_reduce(op, a, x)
                        .ok_or_else(|| OnnxError::new(format!("{at}: {op} overflows")))?,
                });
            }
            Data::I64(acc.into_iter().map(Option::unwrap_or_default).collect())
        }
        Data::F32(v) => {
            let mut acc: Vec<Option<f32>> = vec![None; out_n];
            for (&x, &o) in v.iter().zip(&target) {
                acc[o] = Some(match acc[o] {
                    None => x,
                    Some(a) => match op {
                        "ReduceProd" => a * x,
                        "ReduceSum" => a + x,
                        "ReduceMax" => a.max(x),
                        _ => a.min(x),
                    },
                });
            }
            Data::F32(acc.into_iter().map(Option::unwrap_or_default).collect())
        }
    };
    let dims = if keep {
        out_dims
    } else {
        (0..r).filter(|&a| !red[a]).map(|a| c.dims[a]).collect()
    };
    Ok(Const { dims, data })
}

fn int_reduce(op: &str, a: i64, x: i64) -> Option<i64> {
    match op {
        "ReduceProd" => a.checked_mul(x),
        "ReduceSum" => a.checked_add(x),
        "ReduceMax" => Some(a.max(x)),
        _ => Some(a.min(x)),
    }
}

/// The NumPy broadcast of shapes `a` and `b`, if they broadcast.
fn broadcast_dims(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        let k = r - d.len();
        if i < k { 1 } else { d[i - k] }
    };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The flat index into a tensor of shape `d` (broadcast to `out`) of every output element.
fn broadcast_index(d: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let k = out.len() - d.len();
    (0..n)
        .map(|i| {
            let (mut rest, mut idx, mut stride) = (i, 0usize, 1usize);
            for a in (0..out.len()).rev() {
                let pos = rest % out[a];
                rest /= out[a];
                if a >= k {
                    let da = d[a - k];
                    if da != 1 {
                        idx += pos * stride;
                    }
                    stride *= da;
                }
            }
            idx
        })
        .collect()
}

/// `op` (`Add`, `Sub`, `Mul`, `Div`) of two constants with NumPy broadcasting; integers stay
/// integers (`Div` truncates toward zero, as ONNX Runtime does); `None` when the shapes do
/// not broadcast.
pub(crate) fn binary(op: &str, a: &Const, b: &Const, at: &str) -> R<Option<Const>> {
    let Some(dims) = broadcast_dims(&a.dims, &b.dims) else {
        return Ok(None);
    };
    let (ia, ib) = (
        broadcast_index(&a.dims, &dims),
        broadcast_index(&b.dims, &dims),
    );
    let data = match (a.ints(), b.ints()) {
        (Some(x), Some(y)) => {
            no_markers(a, op, at)?;
            no_markers(b, op, at)?;
            let mut v = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(&ib) {
                let (p, q) = (x[i], y[j]);
                let r = match op {
                    "Add" => p.checked_add(q),
                    "Sub" => p.checked_sub(q),
                    "Mul" => p.checked_mul(q),
                    _ if q == 0 => return fail(at, "integer division by 0"),
                    _ => p.checked_div(q),
                };
                v.push(r.ok_or_else(|| OnnxError::new(format!("{at}: {op} overflows")))?);
            }
            Data::I64(v)
        }
        _ => {
            no_markers(a, op, at)?;
            no_markers(b, op, at)?;
            let (x, y) = (a.floats(), b.floats());
            let f = |p: f32, q: f32| match op {
                "Add" => p + q,
                "Sub" => p - q,
                "Mul" => p * q,
                _ => p / q,
            };
            Data::F32(ia.iter().zip(&ib).map(|(&i, &j)| f(x[i], y[j])).collect())
        }
    };
    Ok(Some(Const { dims, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(dims: Vec<usize>, v: Vec<i64>) -> Const {
        Const {
            dims,
            data: Data::I64(v),
        }
    }

    #[test]
    fn gather_picks_along_an_axis() {
        let shape = ints(vec![4], vec![BATCH, 3, 5, 7]);
        let g = gather(&shape, &ints(vec![], vec![0]), 0, "n").unwrap();
        assert_eq!(
            (g.dims.clone(), g.ints().unwrap().to_vec()),
            (vec![], vec![BATCH])
        );
        let m = ints(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let g = gather(&m, &ints(vec![2], vec![-1, 0]), 1, "n").unwrap();
        assert_eq!(g.dims, vec![2, 2]);
        assert_eq!(g.ints().unwrap(), &[3, 1, 6, 4]);
        assert!(gather(&m, &ints(vec![1], vec![3]), 1, "n").is_err());
    }

    #[test]
    fn slices_clamp_as_onnx_does() {
        assert_eq!(slice_positions(0, i64::MAX, 1, 4), vec![0, 1, 2, 3]);
        assert_eq!(slice_positions(-2, i64::MAX, 1, 4), vec![2, 3]);
        assert_eq!(slice_positions(-1, i64::MIN, -1, 3), vec![2, 1, 0]);
        assert_eq!(slice_positions(5, 9, 1, 4), Vec::<usize>::new());
        let m = ints(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let s = slice(&m, &[1], &[3], &[1], &[1], "n").unwrap();
        assert_eq!(
            (s.dims.clone(), s.ints().unwrap().to_vec()),
            (vec![2, 2], vec![2, 3, 5, 6])
        );
    }

    #[test]
    fn arithmetic_broadcasts_and_keeps_integers() {
        let a = ints(vec![2, 1], vec![10, 20]);
        let b = ints(vec![3], vec![1, 2, 3]);
        let s = binary("Add", &a, &b, "n").unwrap().unwrap();
        assert_eq!(s.dims, vec![2, 3]);
        assert_eq!(s.ints().unwrap(), &[11, 12, 13, 21, 22, 23]);
        let d = binary("Div", &ints(vec![], vec![-7]), &ints(vec![], vec![2]), "n")
            .unwrap()
            .unwrap();
        assert_eq!(d.ints().unwrap(), &[-3]);
        assert!(binary("Div", &a, &ints(vec![], vec![0]), "n").is_err());
        assert!(binary("Mul", &ints(vec![], vec![BATCH]), &a, "n").is_err());
        assert!(
            binary("Add", &b, &ints(vec![2], vec![0; 2]), "n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn reductions_ranges_concats_squeezes_casts() {
        let m = ints(vec![2, 3], vec![1, 2, 3, 4, 5, 6]);
        let p = reduce(&m, "ReduceProd", None, false, "n").unwrap();
        assert_eq!(
            (p.dims.clone(), p.ints().unwrap().to_vec()),
            (vec![], vec![720])
        );
        let s = reduce(&m, "ReduceSum", Some(&[0]), true, "n").unwrap();
        assert_eq!(
            (s.dims.clone(), s.ints().unwrap().to_vec()),
            (vec![1, 3], vec![5, 7, 9])
        );
        let r = range(
            &ints(vec![], vec![5]),
            &ints(vec![], vec![-1]),
            &ints(vec![], vec![-2]),
            100,
            "n",
        )
        .unwrap();
        assert_eq!(r.ints().unwrap(), &[5, 3, 1]);
        assert!(
            range(
                &ints(vec![], vec![0]),
                &ints(vec![], vec![1 << 40]),
                &ints(vec![], vec![1]),
                100,
                "n"
            )
            .is_err()
        );
        let c = concat(
            &[ints(vec![1], vec![BATCH]), ints(vec![1], vec![-1])],
            0,
            "n",
        )
        .unwrap();
        assert_eq!(c.ints().unwrap(), &[BATCH, -1]);
        let q = squeeze(&ints(vec![1, 2, 1], vec![3, 4]), None, "n").unwrap();
        assert_eq!(q.dims, vec![2]);
        assert!(squeeze(&m, Some(&[0]), "n").is_err());
        let f = cast(&ints(vec![2], vec![3, -4]), 1, "n").unwrap();
        assert_eq!(f.floats(), vec![3.0, -4.0]);
        assert!(cast(&ints(vec![1], vec![UNKNOWN]), 1, "n").is_err());
    }
}
