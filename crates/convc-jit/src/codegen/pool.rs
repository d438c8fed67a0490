//! Pooling kernels: max and average windows (an unrolled interior, border columns, a generic
//! path for the rest) and the global average pool.

use super::*;

/// The most loads the straight-line paths of one pooling kernel may hold (their code is
/// unrolled over each window); a bigger pool runs the generic loops only, which hold one load
/// whatever the window. The pools of the example networks need at most 200; a 64x64 window
/// unrolled (16,384 loads) took 59 s to compile.
const POOL_UNROLL_LOADS: usize = 1024;

/// Loads the straight-line paths of [`Em::pool`] would emit: per row case (the interior rows,
/// and each of up to 8 border rows), a vector window (1, 2 or 4 loads per tap by stride), up
/// to 3 scalar tail windows, and a window per border column.
fn pool_unrolled_loads(
    p: &PoolSpec,
    border_rows: usize,
    (oy_lo, oy_hi): (usize, usize),
    (ox_lo, ox_hi): (usize, usize),
) -> usize {
    let cases = usize::from(oy_hi > oy_lo) + if border_rows <= 8 { border_rows } else { 0 };
    let per_vec = match p.sw {
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let border_cols = ox_lo + p.ow.saturating_sub(ox_hi);
    cases
        .saturating_mul(p.kh.saturating_mul(p.kw))
        .saturating_mul(per_vec + 3 + border_cols)
}

impl Em<'_> {
    /// Pooling, one item per (channel, output row). Windows entirely inside the input (a
    /// range of rows and, within it, of columns known at compile time) take a fast path:
    /// taps unrolled at constant offsets, vectorised along the output row (a gather of
    /// scalar loads when the stride is not 1). Border windows take a generic path whose
    /// loops run over the in-bounds part of each window.
    pub(super) fn pool(&mut self, p: &PoolSpec, bufs: Value, start: Value, end: Value) {
        let out = self.slot(bufs, SLOT_OUT);
        let inp = self.slot(bufs, SLOT_IN);
        // Interior outputs: o*s - pad >= 0 and o*s - pad + k <= n.
        let interior = |o: usize, n: usize, k: usize, s: usize, pad: usize| -> (usize, usize) {
            let lo = pad.div_ceil(s).min(o);
            let hi = if n + pad >= k {
                ((n + pad - k) / s + 1).min(o)
            } else {
                0
            };
            (lo, hi.max(lo))
        };
        let (oy_lo, oy_hi) = interior(p.oh, p.h, p.kh, p.sh, p.pt);
        let (ox_lo, ox_hi) = interior(p.ow, p.w, p.kw, p.sw, p.pl);
        self.for_dyn(start, end, &mut |e, it| {
            let (c, oy) = e.divrem(it, p.oh);
            let in_c = e.offset(inp, c, p.h * p.w * 4);
            let out_c = e.offset(out, c, p.oh * p.ow * 4);
            let out_row = e.offset(out_c, oy, p.ow * 4);
            // Border rows (few): each its own straight-line code over its in-bounds window
            // rows, like the interior rows; more than 8 take the generic loops.
            let border: Vec<usize> = (0..oy_lo.min(oy_hi))
                .chain(oy_hi.max(oy_lo)..p.oh)
                .collect();
            let kept = |oy: usize| -> (usize, usize) {
                let y0 = (oy * p.sh) as i64 - p.pt as i64;
                let i0 = (-y0).clamp(0, p.kh as i64) as usize;
                let i1 = (p.h as i64 - y0).clamp(0, p.kh as i64) as usize;
                (i0, i1.max(i0))
            };
            if ox_hi > ox_lo
                && (oy_hi > oy_lo || border.len() <= 8)
                && pool_unrolled_loads(p, border.len(), (oy_lo, oy_hi), (ox_lo, ox_hi))
                    <= POOL_UNROLL_LOADS
            {
                let join = e.b.create_block();
                let mut cases: Vec<(Option<usize>, (usize, usize))> = Vec::new();
                if oy_hi > oy_lo {
                    cases.push((None, (0, p.kh)));
                }
                if border.len() <= 8 {
                    cases.extend(border.iter().map(|&r| (Some(r), kept(r))));
                }
                for (case, rows) in cases {
                    let this = e.b.create_block();
                    let next = e.b.create_block();
                    let hit = match case {
                        None => {
                            let ge = e.b.ins().icmp_imm_s(
                                IntCC::UnsignedGreaterThanOrEqual,
                                oy,
                                oy_lo as i64,
                            );
                            let lt =
                                e.b.ins()
                                    .icmp_imm_s(IntCC::UnsignedLessThan, oy, oy_hi as i64);
                            e.b.ins().band(ge, lt)
                        }
                        Some(r) => e.b.ins().icmp_imm_s(IntCC::Equal, oy, r as i64),
                    };
                    e.b.ins().brif(hit, this, &[], next, &[]);
                    e.b.switch_to_block(this);
                    if rows.1 > rows.0 {
                        e.pool_border_cols(p, in_c, out_row, oy, 0, ox_lo, rows);
                        e.pool_interior(p, in_c, out_row, oy, ox_lo, ox_hi, rows);
                        e.pool_border_cols(p, in_c, out_row, oy, ox_hi, p.ow, rows);
                    } else {
                        e.pool_generic(p, in_c, out_row, oy, 0, p.ow);
                    }
                    e.b.ins().jump(join, &[]);
                    e.b.switch_to_block(next);
                }
                e.pool_generic(p, in_c, out_row, oy, 0, p.ow);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            } else {
                e.pool_generic(p, in_c, out_row, oy, 0, p.ow);
            }
        });
    }

    /// Output columns `xa..xb` of row `oy` whose windows lie inside the input.
    #[allow(clippy::too_many_arguments)]
    fn pool_interior(
        &mut self,
        p: &PoolSpec,
        in_c: Value,
        out_row: Value,
        oy: Value,
        xa: usize,
        xb: usize,
        (i0, i1): (usize, usize),
    ) {
        // First input row of the window: oy*sh - pt (negative on a top border row, whose rows
        // before `i0` are not read).
        let y0 = self.b.ins().imul_imm_s(oy, p.sh as i64);
        let y0 = self.b.ins().iadd_imm_s(y0, -(p.pt as i64));
        let row = self.offset(in_c, y0, p.w * 4);
        let inv = 1.0 / ((i1 - i0) * p.kw) as f32;
        let mut nvec = (xb - xa) / 4;
        // A stride-2 vector reads one column past its last window (the odd lane of its second
        // load): not past the row's end, so the last vector may go to the scalar tail.
        if p.sw == 2 && nvec > 0 && (xa + 4 * nvec - 1) * 2 + p.kw > p.w - 1 + p.pl {
            nvec -= 1;
        }
        // The window of output column `ox` starts at `row + (ox*sw - pl)*4`.
        let window = |e: &mut Self, ty: Type, base: Value| -> Value {
            let lanes = if ty == F32 { 1 } else { 4 };
            let mut acc: Option<Value> = None;
            for i in i0..i1 {
                for j in 0..p.kw {
                    let off = ((i * p.w + j) * 4) as i32;
                    let v = if lanes == 1 || p.sw == 1 {
                        e.b.ins().load(ty, rd(), base, off)
                    } else if p.sw == 2 {
                        // Columns 2l + j of 8 contiguous ones: the even lanes of two vectors.
                        let a = e.b.ins().load(F32X4, rd(), base, off);
                        let b = e.b.ins().load(F32X4, rd(), base, off + 16);
                        e.even_lanes(a, b)
                    } else {
                        let mut v = e.b.ins().load(F32, rd(), base, off);
                        v = e.b.ins().splat(F32X4, v);
                        for l in 1..4u8 {
                            let x = e.b.ins().load(
                                F32,
                                rd(),
                                base,
                                off + (l as usize * p.sw * 4) as i32,
                            );
                            v = e.b.ins().insertlane(v, x, l);
                        }
                        v
                    };
                    acc = Some(match acc {
                        None => v,
                        Some(a) if p.max => e.pool_max(ty, a, v),
                        Some(a) => e.b.ins().fadd(a, v),
                    });
                }
            }
            let a = acc.unwrap_or(base);
            if p.max {
                a
            } else {
                let k = e.splat(ty, inv);
                e.b.ins().fmul(a, k)
            }
        };
        if nvec > 0 {
            let first = self.iconst(xa);
            self.for_count(first, nvec, 4, &mut |e, ox| {
                let x0 = e.b.ins().imul_imm_s(ox, (p.sw * 4) as i64);
                let x0 = e.b.ins().iadd_imm_s(x0, -((p.pl * 4) as i64));
                let base = e.b.ins().iadd(row, x0);
                let v = window(e, F32X4, base);
                let dst = e.offset(out_row, ox, 4);
                e.b.ins().store(rw(), v, dst, 0);
            });
        }
        for ox in xa + nvec * 4..xb {
            let base = self
                .b
                .ins()
                .iadd_imm_s(row, ((ox * p.sw - p.pl) * 4) as i64);
            let v = window(self, F32, base);
            self.b.ins().store(rw(), v, out_row, (ox * 4) as i32);
        }
    }

    /// Lanes 0 and 2 of `a`, then of `b` (a stride-2 window element of 4 outputs): one
    /// shuffle instead of 4 scalar loads and 3 lane inserts.
    fn even_lanes(&mut self, a: Value, b: Value) -> Value {
        let mut mask = Vec::with_capacity(16);
        for lane in [0u8, 2, 4, 6] {
            mask.extend((0..4).map(|k| lane * 4 + k));
        }
        let imm = self
            .b
            .func
            .dfg
            .immediates
            .push(cranelift_codegen::ir::ConstantData::from(mask));
        let fl = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let ab = self.b.ins().bitcast(types::I8X16, fl, a);
        let bb = self.b.ins().bitcast(types::I8X16, fl, b);
        let r = self.b.ins().shuffle(ab, bb, imm);
        self.b.ins().bitcast(F32X4, fl, r)
    }

    /// The interpreter's max-pool step (`convc_interp::ops::pool`): `v` if `v` is NaN or
    /// greater than `m`, else `m` (a NaN wins and stays; of equal values, such as -0 and +0, the
    /// first). Cranelift's `fmax` (IEEE 754-2019 maximum) is 8 instructions per lane group on
    /// x64; this is a compare, a compare, an or and a select (a 3x3 stride-1 pool: 0.37 -> ...).
    fn pool_max(&mut self, ty: Type, m: Value, v: Value) -> Value {
        let nan = self.b.ins().fcmp(FloatCC::Unordered, v, v);
        let gt = self.b.ins().fcmp(FloatCC::GreaterThan, v, m);
        let c = self.b.ins().bor(nan, gt);
        self.choose(ty, c, v, m)
    }

    /// Output columns `xa..xb` (known: the left and right borders) of a row `oy` whose windows'
    /// rows all lie inside the input: straight-line code over each window's in-bounds columns
    /// (known too), in the order of [`Self::pool_generic`]. (The generic loops cost more than
    /// the interior on small planes: a 3x3 stride-1 pool on 28x28 spent most of its time in
    /// its two border columns.)
    #[allow(clippy::too_many_arguments)]
    fn pool_border_cols(
        &mut self,
        p: &PoolSpec,
        in_c: Value,
        out_row: Value,
        oy: Value,
        xa: usize,
        xb: usize,
        (i0, i1): (usize, usize),
    ) {
        if xa >= xb {
            return;
        }
        let y0 = self.b.ins().imul_imm_s(oy, p.sh as i64);
        let y0 = self.b.ins().iadd_imm_s(y0, -(p.pt as i64));
        let row0 = self.offset(in_c, y0, p.w * 4);
        for ox in xa..xb {
            let x0 = (ox * p.sw) as i64 - p.pl as i64;
            let c0 = x0.max(0) as usize;
            let c1 = ((x0 + p.kw as i64).max(0) as usize).min(p.w);
            let mut acc = if p.max {
                self.b.ins().f32const(f32::NEG_INFINITY)
            } else {
                self.b.ins().f64const(0.0)
            };
            for i in i0..i1 {
                for x in c0..c1 {
                    let v = self
                        .b
                        .ins()
                        .load(F32, rd(), row0, ((i * p.w + x) * 4) as i32);
                    acc = if p.max {
                        self.pool_max(F32, acc, v)
                    } else {
                        let v64 = self.b.ins().fpromote(F64, v);
                        self.b.ins().fadd(acc, v64)
                    };
                }
            }
            let v = if p.max {
                acc
            } else {
                let cnt = self.b.ins().f64const(((i1 - i0) * (c1 - c0)) as f64);
                let m = self.b.ins().fdiv(acc, cnt);
                self.b.ins().fdemote(F32, m)
            };
            self.b.ins().store(rw(), v, out_row, (ox * 4) as i32);
        }
    }

    /// Output columns `xa..xb` of row `oy`, any window: loops over its in-bounds part.
    fn pool_generic(
        &mut self,
        p: &PoolSpec,
        in_c: Value,
        out_row: Value,
        oy: Value,
        xa: usize,
        xb: usize,
    ) {
        if xa >= xb {
            return;
        }
        // In-bounds rows: max(oy*sh - pt, 0) .. min(oy*sh - pt + kh, h).
        let y0 = self.b.ins().imul_imm_s(oy, p.sh as i64);
        let y0 = self.b.ins().iadd_imm_s(y0, -(p.pt as i64));
        let y1 = self.b.ins().iadd_imm_s(y0, p.kh as i64);
        let zero = self.iconst(0);
        let h = self.iconst(p.h);
        let r0 = self.b.ins().smax(y0, zero);
        let r1 = self.b.ins().smin(y1, h);
        let nrows = self.b.ins().isub(r1, r0);
        let xa = self.iconst(xa);
        let xb = self.iconst(xb);
        self.for_dyn(xa, xb, &mut |e, ox| {
            let x0 = e.b.ins().imul_imm_s(ox, p.sw as i64);
            let x0 = e.b.ins().iadd_imm_s(x0, -(p.pl as i64));
            let x1 = e.b.ins().iadd_imm_s(x0, p.kw as i64);
            let zero = e.iconst(0);
            let w = e.iconst(p.w);
            let c0 = e.b.ins().smax(x0, zero);
            let c1 = e.b.ins().smin(x1, w);
            let ty = if p.max { F32 } else { F64 };
            let acc = e.b.declare_var(ty);
            let init = if p.max {
                e.b.ins().f32const(f32::NEG_INFINITY)
            } else {
                e.b.ins().f64const(0.0)
            };
            e.b.def_var(acc, init);
            e.for_dyn(r0, r1, &mut |e, r| {
                let row = e.offset(in_c, r, p.w * 4);
                e.for_dyn(c0, c1, &mut |e, x| {
                    let a = e.offset(row, x, 4);
                    let v = e.b.ins().load(F32, rd(), a, 0);
                    let cur = e.b.use_var(acc);
                    let n = if p.max {
                        e.pool_max(F32, cur, v)
                    } else {
                        let v64 = e.b.ins().fpromote(F64, v);
                        e.b.ins().fadd(cur, v64)
                    };
                    e.b.def_var(acc, n);
                });
            });
            let a = e.b.use_var(acc);
            let v = if p.max {
                a
            } else {
                let ncols = e.b.ins().isub(c1, c0);
                let cnt = e.b.ins().imul(nrows, ncols);
                let cntf = e.b.ins().fcvt_from_sint(F64, cnt);
                let m = e.b.ins().fdiv(a, cntf);
                e.b.ins().fdemote(F32, m)
            };
            let dst = e.offset(out_row, ox, 4);
            e.b.ins().store(rw(), v, dst, 0);
        });
    }

    /// Global average pool, one item per channel: the sum of its `hw` values in f64, divided
    /// once and rounded to f32.
    pub(super) fn gap(&mut self, hw: usize, bufs: Value, start: Value, end: Value) {
        let out = self.slot(bufs, SLOT_OUT);
        let inp = self.slot(bufs, SLOT_IN);
        self.for_dyn(start, end, &mut |e, c| {
            let src = e.offset(inp, c, hw * 4);
            let acc = e.b.declare_var(F64);
            let z = e.b.ins().f64const(0.0);
            e.b.def_var(acc, z);
            e.for_count(src, hw, 4, &mut |e, p| {
                let v = e.b.ins().load(F32, rd(), p, 0);
                let v64 = e.b.ins().fpromote(F64, v);
                let cur = e.b.use_var(acc);
                let n = e.b.ins().fadd(cur, v64);
                e.b.def_var(acc, n);
            });
            let a = e.b.use_var(acc);
            let n = e.b.ins().f64const(hw as f64);
            let m = e.b.ins().fdiv(a, n);
            let m = e.b.ins().fdemote(F32, m);
            let dst = e.offset(out, c, 4);
            e.b.ins().store(rw(), m, dst, 0);
        });
    }
}
