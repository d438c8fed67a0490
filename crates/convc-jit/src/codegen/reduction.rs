//! The direct conv's reductions in Cranelift's own code (the SSE path, and rows a microkernel
//! does not take): segments of vectors over a row, chunks of a long reduction, and packed
//! positions whose partial sums live in the thread's scratch.

use super::*;

/// The fixed parts of one reduction ([`Em::reduction`]), which each of its taps reads.
struct Taps<'a> {
    s: &'a ConvSpec,
    /// The accumulators: `ocb` channels x `in_offs.len()` vectors.
    accs: &'a [Variable],
    /// Byte offsets of the vectors from a tap's input pointer.
    in_offs: &'a [i32],
    ocb: usize,
    ty: Type,
    /// A fresh weight broadcast per FMA, or one shared per tap with FMA; neither: multiply
    /// and add.
    fresh: bool,
    shared_fma: bool,
}

impl Em<'_> {
    /// The taps of chunk `chunk` for a whole output row of the block: `n_main` segments of `v`
    /// vectors, then the rest.
    pub(super) fn conv_row_chunk(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        ocb: usize,
        v: usize,
        chunk: usize,
        ow: usize,
    ) {
        let n_main = ow / (4 * v);
        let mut x = 0;
        if n_main > 0 {
            self.conv_segment(s, row, ocb, x, n_main, v, 4, chunk);
            x = n_main * 4 * v;
        }
        // The rest: whole vectors ending at the row's end, overlapping the columns before
        // (computed twice, to the same values, by the same thread), or scalars on a row
        // narrower than that. Not overlapping in a chunked reduction: there, overlapped
        // columns would add a chunk twice to the partial sums.
        let rest = ow - x;
        if rest == 0 {
            return;
        }
        let nv = rest.div_ceil(4);
        if ow >= 4 * nv && (s.chunks() == 1 || rest.is_multiple_of(4)) {
            self.conv_segment(s, row, ocb, ow - 4 * nv, 1, nv, 4, chunk);
            return;
        }
        let nv = rest / 4;
        if nv > 0 {
            self.conv_segment(s, row, ocb, x, 1, nv, 4, chunk);
            x += nv * 4;
        }
        if ow > x {
            self.conv_segment(s, row, ocb, x, ow - x, 1, 1, chunk);
        }
    }

    /// `count` blocks of `nv` vectors of `lanes` lanes, starting at output column `x0`.
    #[allow(clippy::too_many_arguments)]
    fn conv_segment(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        ocb: usize,
        x0: usize,
        count: usize,
        nv: usize,
        lanes: usize,
        chunk: usize,
    ) {
        let ty = if lanes == 4 { F32X4 } else { F32 };
        let first = self.iconst(x0 * 4);
        let (t0, ntaps) = s.chunk(chunk);
        let last = chunk + 1 == s.chunks();
        // Residual operands share the output's layout (the planner checks).
        let plane4 = (s.out_cs * 4) as i32;
        self.for_count(first, count, (nv * lanes * 4) as i64, &mut |e, xoff| {
            let seg_in = e.b.ins().iadd(row.in_base, xoff);
            let seg_in = e.b.ins().iadd_imm_s(seg_in, s.tap_offset(t0));
            let w_blk =
                e.b.ins()
                    .iadd_imm_s(row.w_blk, (t0 * s.tap_bytes(ocb)) as i64);
            let offs: Vec<i32> = (0..nv).map(|k| (k * lanes * 4) as i32).collect();
            let out_seg = e.b.ins().iadd(row.out_row, xoff);
            // After the first chunk, the accumulators start from the partial sums stored.
            let init = (t0 > 0).then(|| {
                (0..ocb * nv)
                    .map(|i| {
                        let off = (i / nv) as i32 * plane4 + ((i % nv) * lanes * 4) as i32;
                        e.b.ins().load(ty, rw(), out_seg, off)
                    })
                    .collect::<Vec<_>>()
            });
            let accs = e.reduction(
                s, seg_in, w_blk, row.count, ocb, &offs, lanes, ty, ntaps, init,
            );
            let res: Vec<Option<Value>> = row
                .res_row
                .iter()
                .map(|r| r.map(|r| e.b.ins().iadd(r, xoff)))
                .collect();
            for j in 0..ocb {
                for k in 0..nv {
                    let a = e.b.use_var(accs[j * nv + k]);
                    let off = j as i32 * plane4 + (k * lanes * 4) as i32;
                    let v = if last {
                        e.epilogue(&s.ep, &row.ptrs, ty, a, (j * 32) as i32, &res, off)
                    } else {
                        a
                    };
                    e.b.ins().store(rw(), v, out_seg, off);
                }
            }
        });
    }

    /// A chunked reduction over packed positions (see `ConvSpec::part_slot`): the partial sums
    /// start at zero, a run-time loop runs the chunks of `chunk_taps` taps (a table gives each
    /// chunk's input and weight offsets), a shorter last chunk runs after it, then the epilogue
    /// reads the sums. The code holds one copy of each position's reduction (two with a shorter
    /// last chunk), not one per chunk: a 512-channel 3x3 layer on 7x7 has 14 chunks of 14
    /// positions.
    pub(super) fn packed_chunks(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        ocb: usize,
        v: usize,
        pos: &[(i32, i32)],
    ) {
        let Some(part) = row.part else {
            return;
        };
        let slot = |k: usize, j: usize| ((k * s.ocb + j) * 16) as i32;
        let zero = self.zero(F32X4);
        for k in 0..pos.len() {
            for j in 0..ocb {
                self.b.ins().store(rw(), zero, part, slot(k, j));
            }
        }
        let n = s.chunks();
        let (_, last_taps) = s.chunk(n - 1);
        let uniform = last_taps == s.chunk_taps;
        let looped = if uniform { n } else { n - 1 };
        // Per chunk: the byte offsets of its first tap's input and of its weights.
        let wbytes = (s.chunk_taps * s.tap_bytes(ocb)) as i64;
        let tab: Box<[i64]> = (0..looped)
            .flat_map(|c| [s.tap_offset(c * s.chunk_taps), c as i64 * wbytes])
            .collect();
        let taddr = tab.as_ptr() as i64;
        self.tables.push(tab);
        let first = self.b.ins().iconst(PTR, taddr);
        let offs_of = |grp: &[(i32, i32)]| grp.iter().map(|p| p.0).collect::<Vec<i32>>();
        let body = |e: &mut Self, in_c: Value, w_c: Value, ntaps: usize| {
            for (gi, grp) in pos.chunks(v).enumerate() {
                let nv = grp.len();
                let init: Vec<Value> = (0..ocb * nv)
                    .map(|i| {
                        e.b.ins()
                            .load(F32X4, rw(), part, slot(gi * v + i % nv, i / nv))
                    })
                    .collect();
                let accs = e.reduction(
                    s,
                    in_c,
                    w_c,
                    None,
                    ocb,
                    &offs_of(grp),
                    4,
                    F32X4,
                    ntaps,
                    Some(init),
                );
                for j in 0..ocb {
                    for k in 0..nv {
                        let a = e.b.use_var(accs[j * nv + k]);
                        e.b.ins().store(rw(), a, part, slot(gi * v + k, j));
                    }
                }
            }
        };
        self.for_count(first, looped, 16, &mut |e, t| {
            let in_off = e.b.ins().load(PTR, konst(), t, 0);
            let w_off = e.b.ins().load(PTR, konst(), t, 8);
            let in_c = e.b.ins().iadd(row.in_base, in_off);
            let w_c = e.b.ins().iadd(row.w_blk, w_off);
            body(e, in_c, w_c, s.chunk_taps);
        });
        if !uniform {
            let t0 = (n - 1) * s.chunk_taps;
            let in_c = self.b.ins().iadd_imm_s(row.in_base, s.tap_offset(t0));
            let w_c = self
                .b
                .ins()
                .iadd_imm_s(row.w_blk, (t0 * s.tap_bytes(ocb)) as i64);
            body(self, in_c, w_c, last_taps);
        }
        for j in 0..ocb {
            for (k, &(_, o)) in pos.iter().enumerate() {
                let a = self.b.ins().load(F32X4, rw(), part, slot(k, j));
                self.finish_vector(s, row, j, o, a);
            }
        }
    }

    /// The epilogue of output channel `j` of a block applied to the sums `a` of the vector at
    /// byte offset `o` of the item's output row, then the store. Residual operands share the
    /// output's layout (the planner checks).
    fn finish_vector(&mut self, s: &ConvSpec, row: &Row, j: usize, o: i32, a: Value) {
        let off = j as i32 * (s.out_cs * 4) as i32 + o;
        let v = self.epilogue(
            &s.ep,
            &row.ptrs,
            F32X4,
            a,
            (j * 32) as i32,
            &row.res_row,
            off,
        );
        self.b.ins().store(rw(), v, row.out_row, off);
    }

    /// Vectors at explicit (input, output) byte offsets from the item's row pointers: the taps
    /// of chunk `chunk`; `first` is the index of `pos[0]` among the item's positions (its
    /// partial sums' place, see `ConvSpec::part_slot`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_chunk(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        ocb: usize,
        pos: &[(i32, i32)],
        chunk: usize,
        first: usize,
    ) {
        let nv = pos.len();
        let offs: Vec<i32> = pos.iter().map(|p| p.0).collect();
        let (t0, ntaps) = s.chunk(chunk);
        let last = chunk + 1 == s.chunks();
        let in_base = self.b.ins().iadd_imm_s(row.in_base, s.tap_offset(t0));
        let w_blk = self
            .b
            .ins()
            .iadd_imm_s(row.w_blk, (t0 * s.tap_bytes(ocb)) as i64);
        // Partial sums: 16 bytes per (position, channel of the block).
        let slot = |k: usize, j: usize| (((first + k) * s.ocb + j) * 16) as i32;
        let init = match row.part {
            Some(part) if t0 > 0 => Some(
                (0..ocb * nv)
                    .map(|i| self.b.ins().load(F32X4, rw(), part, slot(i % nv, i / nv)))
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        let accs = self.reduction(
            s, in_base, w_blk, row.count, ocb, &offs, 4, F32X4, ntaps, init,
        );
        for j in 0..ocb {
            for (k, &(_, o)) in pos.iter().enumerate() {
                let a = self.b.use_var(accs[j * nv + k]);
                if !last {
                    if let Some(part) = row.part {
                        self.b.ins().store(rw(), a, part, slot(k, j));
                    }
                    continue;
                }
                self.finish_vector(s, row, j, o, a);
            }
        }
    }

    /// The reduction over the taps (c, kh, kw) into `ocb * nv` accumulators, returned as
    /// variables: one tap per loop iteration. The input offset of each tap comes from a table
    /// baked into the kernel; the weights advance by one block row per tap. (With several
    /// taps per iteration, Cranelift's elaboration computes one accumulator's whole chain at a
    /// time, keeping every tap's inputs live, and spills; separating the taps by blocks does
    /// not survive `remove_constant_phis`.)
    ///
    /// With FMA, every multiply-add broadcasts its own copy of the weight (`vbroadcastss` from
    /// memory: a load-port uop) into a fresh register and accumulates into it with
    /// `vfmadd213ps`. Cranelift has only the 213/132 forms, which overwrite a multiplicand, so
    /// a shared weight register would need a copy per FMA. The accumulators move one register
    /// per FMA, which costs a rotation of register moves (eliminated at rename) on the back edge.
    /// The weights are packed `wdup` times for that (each copy is a distinct load; identical
    /// loads would be merged into one value used several times). The loop tests at the top, so
    /// that each new accumulator has a single use (the back edge) and the weight loads can sink
    /// into their broadcasts.
    #[allow(clippy::too_many_arguments)]
    fn reduction(
        &mut self,
        s: &ConvSpec,
        seg_in: Value,
        w_blk: Value,
        count: Option<Value>,
        ocb: usize,
        in_offs: &[i32],
        lanes: usize,
        ty: Type,
        ntaps: usize,
        init: Option<Vec<Value>>,
    ) -> Vec<Variable> {
        let nv = in_offs.len();
        let init = match init {
            Some(v) => v,
            None => vec![self.zero(ty); ocb * nv],
        };
        let accs: Vec<Variable> = init
            .iter()
            .map(|&x| {
                let v = self.b.declare_var(ty);
                self.b.def_var(v, x);
                v
            })
            .collect();
        // Loop-carried: the input pointer, the weight pointer and the offset to the next
        // tap's input, read from the weight stream (0 after the last tap: the loop ends).
        // Three general registers. The row pointers enter the loop as block arguments, so
        // they are computed before it (used only inside, Cranelift would compute them inside).
        //
        // With FMA the loop runs two taps per iteration, in one block: the accumulators move
        // one register per FMA (see above), and the back edge puts them back once per two
        // taps. An odd tap count runs its first tap before the loop.
        let wstep = s.tap_bytes(ocb) as i64;
        // A fresh broadcast per FMA with several channels per block; one shared per tap with
        // one channel (see `spec::weight_dup`), or without FMA.
        let fresh = s.fma && lanes == 4 && ocb > 1;
        let shared_fma = s.fma && lanes == 4 && ocb == 1;
        let unroll = if (fresh || shared_fma) && count.is_none() {
            tap_unroll(if fresh { nv } else { 2 })
        } else {
            1
        };
        let pvar = self.b.declare_var(PTR);
        self.b.def_var(pvar, seg_in);
        let wvar = self.b.declare_var(PTR);
        self.b.def_var(wvar, w_blk);
        // `dvar`: the sentinel (the last offset read), or the taps left with a run-time count.
        let dvar = self.b.declare_var(PTR);
        let one = self.iconst(1);
        self.b.def_var(dvar, count.unwrap_or(one));
        let t = Taps {
            s,
            accs: &accs,
            in_offs,
            ocb,
            ty,
            fresh,
            shared_fma,
        };
        let vars = [pvar, wvar, dvar];
        if count.is_none() && unroll > 1 && !ntaps.is_multiple_of(unroll) {
            self.peel_taps(&t, w_blk, ntaps % unroll, wstep, vars);
        }
        self.tap_loop(&t, count, unroll, wstep, vars);
        accs
    }

    /// One tap of a reduction at input `p` and weights `wp + wofs`: updates the accumulators,
    /// returns the offset to the next tap's input (read from the weight stream).
    fn tap(&mut self, t: &Taps, p: Value, wp: Value, wofs: i32) -> Value {
        let (s, ty, nv) = (t.s, t.ty, t.in_offs.len());
        // Pure loads (the input is not written during the kernel): placed at their first
        // use, so with one output channel per block each sinks into its FMA.
        let ins: Vec<Value> = t
            .in_offs
            .iter()
            .map(|&o| self.b.ins().load(ty, konst(), p, o))
            .collect();
        for j in 0..t.ocb {
            let mut shared = None;
            for (k, &x) in ins.iter().enumerate() {
                let a = self.b.use_var(t.accs[j * nv + k]);
                let r = if t.fresh {
                    // A block with more vectors than weight copies (the last, small block
                    // of a kernel of one-vector blocks) shares a load: a register copy per
                    // FMA instead of a second packed copy of every block's weights.
                    let copy = k % s.wdup();
                    let wv = self.wload(
                        ty,
                        wp,
                        wofs + crate::packed::weight_byte(j, copy, s.wdup()) as i32,
                    );
                    self.b.ins().fma(wv, x, a)
                } else {
                    let wv = match shared {
                        Some(w) => w,
                        None => {
                            let w = self.wload(
                                ty,
                                wp,
                                wofs + crate::packed::weight_byte(j, 0, s.wdup()) as i32,
                            );
                            shared = Some(w);
                            w
                        }
                    };
                    if t.shared_fma {
                        self.b.ins().fma(wv, x, a)
                    } else {
                        let m = self.b.ins().fmul(x, wv);
                        self.b.ins().fadd(a, m)
                    }
                };
                self.b.def_var(t.accs[j * nv + k], r);
            }
        }
        self.b.ins().load(PTR, konst(), wp, wofs)
    }

    /// The first `peel` taps of an unrolled reduction, before its loop (`vars`: the loop's
    /// input pointer, weight pointer and next offset, updated). Their weights are read through
    /// an opaque zero (a load that is not hoisted): at a loop-invariant address, their
    /// broadcasts would be hoisted out of the column loop around the reduction, held across
    /// it, and spilled.
    fn peel_taps(&mut self, t: &Taps, w_blk: Value, peel: usize, wstep: i64, vars: [Variable; 3]) {
        let [pvar, wvar, dvar] = vars;
        let (addr, off) = self.pool_entry(0.0);
        let a = self.b.ins().iconst(PTR, addr as i64);
        let z = self.b.ins().load(PTR, rd(), a, off);
        let w0 = self.b.ins().iadd(w_blk, z);
        let mut p = self.b.use_var(pvar);
        let mut d = p;
        for k in 0..peel {
            d = self.tap(t, p, w0, (k as i64 * wstep) as i32);
            p = self.b.ins().iadd(p, d);
        }
        self.b.def_var(pvar, p);
        let w2 = self.b.ins().iadd_imm_s(w0, wstep * peel as i64);
        self.b.def_var(wvar, w2);
        self.b.def_var(dvar, d);
    }

    /// The reduction's loop, `unroll` taps an iteration, testing at the top: until the
    /// offset read is 0, or for `count` taps (vertical ones, `dh` rows apart).
    fn tap_loop(
        &mut self,
        t: &Taps,
        count: Option<Value>,
        unroll: usize,
        wstep: i64,
        vars: [Variable; 3],
    ) {
        let [pvar, wvar, dvar] = vars;
        let s = t.s;
        let head = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let dprev = self.b.use_var(dvar);
        self.b.ins().brif(dprev, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        let wp = self.b.use_var(wvar);
        let mut p = self.b.use_var(pvar);
        let mut d = p;
        for u in 0..unroll {
            d = self.tap(t, p, wp, (u as i64 * wstep) as i32);
            if count.is_some() {
                p = self.b.ins().iadd_imm_s(p, (s.dh * s.row_stride * 4) as i64);
            } else {
                p = self.b.ins().iadd(p, d);
            }
        }
        if count.is_some() {
            let left = self.b.use_var(dvar);
            d = self.b.ins().iadd_imm_s(left, -1);
        }
        self.b.def_var(pvar, p);
        self.b.def_var(dvar, d);
        let wp2 = self.b.ins().iadd_imm_s(wp, wstep * unroll as i64);
        self.b.def_var(wvar, wp2);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(exit);
    }

    /// A weight (scalar in memory) as a value of `ty`: `vbroadcastss` from memory for vectors.
    fn wload(&mut self, ty: Type, wp: Value, off: i32) -> Value {
        let w = self.b.ins().load(F32, konst(), wp, off);
        if ty == F32 {
            w
        } else {
            self.b.ins().splat(ty, w)
        }
    }
}
