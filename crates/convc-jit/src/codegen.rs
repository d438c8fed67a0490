//! Lowering of kernel specs to Cranelift IR.
//!
//! Every kernel has the signature `extern "C" fn(bufs: *const *mut f32, start: u64, end: u64)`
//! and computes the work items `start..end` (see [`KernelSpec::items`]). Buffer pointers are
//! loaded from `bufs` once at entry; the slots are fixed per spec (`spec::SLOT_*`).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, Signature, Type, Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use crate::spec::{
    Act, ConvSpec, EltSpec, Ep, KernelSpec, PoolSpec, SLOT_IN, SLOT_OUT, SLOT_W, vectors_for,
};

const PTR: Type = types::I64;
const F32: Type = types::F32;
const F64: Type = types::F64;
const F32X4: Type = types::F32X4;

/// Stores and loads of buffers the kernel writes: they never trap (the planner sizes every buffer).
fn rw() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}
/// Loads of inputs the kernel only reads.
fn rd() -> MemFlagsData {
    MemFlagsData::new().with_notrap().with_readonly()
}
/// Loads of constant parameters (weights, scales): pure, so they may be hoisted.
fn konst() -> MemFlagsData {
    MemFlagsData::new()
        .with_notrap()
        .with_readonly()
        .with_can_move()
}

extern "C" fn sigmoid_helper(x: f32) -> f32 {
    convc_ir::Unary::Sigmoid.apply(x)
}
extern "C" fn tanh_helper(x: f32) -> f32 {
    convc_ir::Unary::Tanh.apply(x)
}

/// The kernel ABI's signature.
pub(crate) fn kernel_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(PTR));
    }
    sig
}

/// Fills `func` (whose signature is [`kernel_signature`]) with the code of `spec`.
pub(crate) fn build(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    spec: &KernelSpec,
    call_conv: CallConv,
    frontend: TargetFrontendConfig,
) -> Vec<Box<[i64]>> {
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (bufs, start, end) = (params[0], params[1], params[2]);
    let mut e = Em {
        b,
        call_conv,
        tables: Vec::new(),
        table: None,
    };
    match spec {
        KernelSpec::Conv(s) => e.conv(s, bufs, start, end),
        KernelSpec::Elt(s) => e.elt(s, bufs, start, end),
        KernelSpec::Pool(p) => e.pool(p, bufs, start, end),
        KernelSpec::Gap { c: _, hw } => e.gap(*hw, bufs, start, end),
    }
    e.b.ins().return_(&[]);
    e.b.seal_all_blocks();
    e.b.finalize(frontend);
    e.tables
}

/// Pointers an epilogue reads, already offset to the first channel (and row) of the block.
struct EpPtrs {
    /// One per epilogue step (unused entries for activations).
    ptr: Vec<Option<Value>>,
}

struct Em<'a> {
    b: FunctionBuilder<'a>,
    call_conv: CallConv,
    /// Constant tables the code points into (moved out to the caller, which keeps them alive).
    tables: Vec<Box<[i64]>>,
    /// The tap table of this kernel, once made.
    table: Option<usize>,
}

impl Em<'_> {
    fn iconst(&mut self, v: usize) -> Value {
        self.b.ins().iconst(PTR, v as i64)
    }

    fn slot(&mut self, bufs: Value, slot: usize) -> Value {
        self.b.ins().load(PTR, konst(), bufs, (slot * 8) as i32)
    }

    /// `p + v * k` for an index value `v` and constant `k` (bytes).
    fn offset(&mut self, p: Value, v: Value, k: usize) -> Value {
        if k == 0 {
            return p;
        }
        let t = self.b.ins().imul_imm_s(v, k as i64);
        self.b.ins().iadd(p, t)
    }

    /// `v / k` and `v % k` for a constant `k >= 1`.
    fn divrem(&mut self, v: Value, k: usize) -> (Value, Value) {
        if k == 1 {
            let z = self.iconst(0);
            return (v, z);
        }
        let q = self.b.ins().udiv_imm_s(v, k as i64);
        let m = self.b.ins().imul_imm_s(q, k as i64);
        let r = self.b.ins().isub(v, m);
        (q, r)
    }

    /// `for it in start..end { body(it) }` (zero trips when `start >= end`).
    fn for_dyn(&mut self, start: Value, end: Value, body: &mut dyn FnMut(&mut Self, Value)) {
        let var = self.b.declare_var(PTR);
        self.b.def_var(var, start);
        let check = self.b.create_block();
        let body_blk = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(check, &[]);
        self.b.switch_to_block(check);
        let i = self.b.use_var(var);
        let c = self.b.ins().icmp(IntCC::SignedLessThan, i, end);
        self.b.ins().brif(c, body_blk, &[], exit, &[]);
        self.b.switch_to_block(body_blk);
        body(self, i);
        let i = self.b.use_var(var);
        let i2 = self.b.ins().iadd_imm_s(i, 1);
        self.b.def_var(var, i2);
        self.b.ins().jump(check, &[]);
        self.b.switch_to_block(exit);
    }

    /// `count` (>= 1, known) iterations of `body(p)` with `p = first, first + step, ...`.
    fn for_count(
        &mut self,
        first: Value,
        count: usize,
        step: i64,
        body: &mut dyn FnMut(&mut Self, Value),
    ) {
        if count == 1 {
            body(self, first);
            return;
        }
        let var = self.b.declare_var(PTR);
        self.b.def_var(var, first);
        let head = self.b.create_block();
        let exit = self.b.create_block();
        let last = self.b.ins().iadd_imm_s(first, step * count as i64);
        self.b.ins().jump(head, &[]);
        self.b.switch_to_block(head);
        let p = self.b.use_var(var);
        body(self, p);
        let p = self.b.use_var(var);
        let p2 = self.b.ins().iadd_imm_s(p, step);
        self.b.def_var(var, p2);
        let c = self.b.ins().icmp(IntCC::NotEqual, p2, last);
        self.b.ins().brif(c, head, &[], exit, &[]);
        self.b.switch_to_block(exit);
    }

    fn splat(&mut self, ty: Type, x: f32) -> Value {
        let s = self.b.ins().f32const(x);
        if ty == F32 {
            s
        } else {
            self.b.ins().splat(ty, s)
        }
    }

    fn call_scalar(&mut self, f: extern "C" fn(f32) -> f32, x: Value) -> Value {
        let mut sig = Signature::new(self.call_conv);
        sig.params.push(AbiParam::new(F32));
        sig.returns.push(AbiParam::new(F32));
        let sigref = self.b.import_signature(sig);
        let callee = self.b.ins().iconst(PTR, f as usize as i64);
        let call = self.b.ins().call_indirect(sigref, callee, &[x]);
        self.b.inst_results(call)[0]
    }

    /// `c ? x : y` lane-wise for a comparison `c` of `fcmp` on `ty`.
    fn choose(&mut self, ty: Type, c: Value, x: Value, y: Value) -> Value {
        if ty == F32 {
            self.b.ins().select(c, x, y)
        } else {
            let m = self.b.ins().bitcast(ty, MemFlagsData::new(), c);
            self.b.ins().bitselect(m, x, y)
        }
    }

    /// An activation with the interpreter's exact semantics ([`convc_ir::Unary::apply`]).
    fn act(&mut self, a: Act, ty: Type, v: Value) -> Value {
        match a {
            Act::Relu => {
                let z = self.splat(ty, 0.0);
                let c = self.b.ins().fcmp(FloatCC::LessThan, v, z);
                self.choose(ty, c, z, v)
            }
            Act::Relu6 => self.clamp(ty, v, 0.0, 6.0),
            Act::Clamp(lo, hi) => self.clamp(ty, v, f32::from_bits(lo), f32::from_bits(hi)),
            Act::Leaky(alpha) => {
                let z = self.splat(ty, 0.0);
                let al = self.splat(ty, f32::from_bits(alpha));
                let av = self.b.ins().fmul(v, al);
                let c = self.b.ins().fcmp(FloatCC::LessThan, v, z);
                self.choose(ty, c, av, v)
            }
            Act::Sigmoid | Act::Tanh => {
                let f: extern "C" fn(f32) -> f32 = if a == Act::Sigmoid {
                    sigmoid_helper
                } else {
                    tanh_helper
                };
                if ty == F32 {
                    return self.call_scalar(f, v);
                }
                let mut r = v;
                for lane in 0..4u8 {
                    let x = self.b.ins().extractlane(v, lane);
                    let y = self.call_scalar(f, x);
                    r = self.b.ins().insertlane(r, y, lane);
                }
                r
            }
        }
    }

    fn clamp(&mut self, ty: Type, v: Value, lo: f32, hi: f32) -> Value {
        let mut r = v;
        if lo != f32::NEG_INFINITY {
            let l = self.splat(ty, lo);
            let c = self.b.ins().fcmp(FloatCC::LessThan, v, l);
            r = self.choose(ty, c, l, r);
        }
        if hi != f32::INFINITY {
            let h = self.splat(ty, hi);
            let c = self.b.ins().fcmp(FloatCC::GreaterThan, v, h);
            r = self.choose(ty, c, h, r);
        }
        r
    }

    /// Applies the epilogue to `v`: `pofs` is the byte offset of this channel's parameters
    /// (`32 * j`) and `rofs` the byte offset of the value in the residual buffers.
    #[allow(clippy::too_many_arguments)]
    fn epilogue(
        &mut self,
        ep: &[Ep],
        ptrs: &EpPtrs,
        ty: Type,
        mut v: Value,
        pofs: i32,
        res_base: &[Option<Value>],
        rofs: i32,
    ) -> Value {
        for (i, step) in ep.iter().enumerate() {
            match *step {
                Ep::Affine { scale, .. } => {
                    let Some(p) = ptrs.ptr[i] else { continue };
                    if scale {
                        let s = self.b.ins().load(ty, konst(), p, pofs);
                        v = self.b.ins().fmul(v, s);
                    }
                    let t = self.b.ins().load(ty, konst(), p, pofs + 16);
                    v = self.b.ins().fadd(v, t);
                }
                Ep::Add { .. } => {
                    let Some(r) = res_base[i] else { continue };
                    let x = self.b.ins().load(ty, rd(), r, rofs);
                    v = self.b.ins().fadd(v, x);
                }
                Ep::Act(a) => v = self.act(a, ty, v),
            }
        }
        v
    }

    /// Loads the epilogue's buffer pointers.
    fn ep_slots(&mut self, ep: &[Ep], bufs: Value) -> Vec<Option<Value>> {
        ep.iter()
            .map(|s| match *s {
                Ep::Affine { slot, .. } | Ep::Add { slot } => Some(self.slot(bufs, slot)),
                Ep::Act(_) => None,
            })
            .collect()
    }

    // ---------------------------------------------------------------- convolution

    fn conv(&mut self, s: &ConvSpec, bufs: Value, start: Value, end: Value) {
        let out = self.slot(bufs, SLOT_OUT);
        let inp = self.slot(bufs, SLOT_IN);
        let w = self.slot(bufs, SLOT_W);
        let ep_base = self.ep_slots(&s.ep, bufs);
        let nb = s.nb();
        let plane = s.oh * s.ow;
        let taps = s.taps();
        let rem = s.og % s.ocb;
        self.for_dyn(start, end, &mut |e, it| {
            let (gb, oy) = if s.row_major {
                let (oy, gb) = e.divrem(it, s.groups * nb);
                (gb, oy)
            } else {
                e.divrem(it, s.oh)
            };
            let (g, bb) = e.divrem(gb, nb);
            // First output channel of the block: g*og + bb*ocb.
            let o0a = e.b.ins().imul_imm_s(g, s.og as i64);
            let o0b = e.b.ins().imul_imm_s(bb, s.ocb as i64);
            let o0 = e.b.ins().iadd(o0a, o0b);
            let in_g = e.offset(inp, g, s.cg * s.chan_stride * 4);
            let in_base = e.offset(in_g, oy, s.sh * s.row_stride * 4);
            let out_c = e.offset(out, o0, plane * 4);
            let out_row = e.offset(out_c, oy, s.ow * 4);
            let w_blk = e.offset(w, gb, taps * s.ocb * 16);
            let mut ptrs = EpPtrs { ptr: Vec::new() };
            let mut res_row = Vec::new();
            for (i, step) in s.ep.iter().enumerate() {
                match step {
                    Ep::Affine { .. } => {
                        let p = ep_base[i].map(|p| e.offset(p, o0, 32));
                        ptrs.ptr.push(p);
                        res_row.push(None);
                    }
                    Ep::Add { .. } => {
                        let r = ep_base[i].map(|p| {
                            let rc = e.offset(p, o0, plane * 4);
                            e.offset(rc, oy, s.ow * 4)
                        });
                        ptrs.ptr.push(None);
                        res_row.push(r);
                    }
                    Ep::Act(_) => {
                        ptrs.ptr.push(None);
                        res_row.push(None);
                    }
                }
            }
            let row = Row {
                in_base,
                out_row,
                w_blk,
                ptrs,
                res_row,
            };
            if rem == 0 {
                e.conv_row(s, &row, s.ocb);
            } else {
                let part = e.b.create_block();
                let full = e.b.create_block();
                let join = e.b.create_block();
                let is_last = e.b.ins().icmp_imm_s(IntCC::Equal, bb, (nb - 1) as i64);
                e.b.ins().brif(is_last, part, &[], full, &[]);
                e.b.switch_to_block(full);
                e.conv_row(s, &row, s.ocb);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(part);
                e.conv_row(s, &row, rem);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            }
        });
    }

    /// One output row of a block of `ocb` output channels: column segments of `nv` vectors.
    fn conv_row(&mut self, s: &ConvSpec, row: &Row, ocb: usize) {
        let v = vectors_for(ocb);
        let n_main = s.ow / (4 * v);
        let mut x = 0;
        if n_main > 0 {
            self.conv_segment(s, row, ocb, x, n_main, v, 4);
            x = n_main * 4 * v;
        }
        let nv = (s.ow - x) / 4;
        if nv > 0 {
            self.conv_segment(s, row, ocb, x, 1, nv, 4);
            x += nv * 4;
        }
        if s.ow > x {
            self.conv_segment(s, row, ocb, x, s.ow - x, 1, 1);
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
    ) {
        let ty = if lanes == 4 { F32X4 } else { F32 };
        let first = self.iconst(x0 * 4);
        let plane4 = (s.oh * s.ow * 4) as i32;
        self.for_count(first, count, (nv * lanes * 4) as i64, &mut |e, xoff| {
            let seg_in = e.b.ins().iadd(row.in_base, xoff);
            let accs = e.reduction(s, seg_in, row.w_blk, ocb, nv, lanes, ty);
            let out_seg = e.b.ins().iadd(row.out_row, xoff);
            let res: Vec<Option<Value>> = row
                .res_row
                .iter()
                .map(|r| r.map(|r| e.b.ins().iadd(r, xoff)))
                .collect();
            for j in 0..ocb {
                for k in 0..nv {
                    let a = e.b.use_var(accs[j * nv + k]);
                    let off = j as i32 * plane4 + (k * lanes * 4) as i32;
                    let v = e.epilogue(&s.ep, &row.ptrs, ty, a, (j * 32) as i32, &res, off);
                    e.b.ins().store(rw(), v, out_seg, off);
                }
            }
        });
    }

    /// The reduction over the taps (c, kh, kw) into `ocb * nv` accumulators, returned as
    /// variables: one tap per loop iteration. The input offset of each tap comes from a table
    /// baked into the kernel; the weights advance by one block row per tap. (With several
    /// taps per iteration, Cranelift's elaboration computes one accumulator's whole chain at a
    /// time, keeping every tap's inputs live, and spills.)
    #[allow(clippy::too_many_arguments)]
    fn reduction(
        &mut self,
        s: &ConvSpec,
        seg_in: Value,
        w_blk: Value,
        ocb: usize,
        nv: usize,
        lanes: usize,
        ty: Type,
    ) -> Vec<Variable> {
        let zero = self.splat(ty, 0.0);
        let accs: Vec<Variable> = (0..ocb * nv)
            .map(|_| {
                let v = self.b.declare_var(ty);
                self.b.def_var(v, zero);
                v
            })
            .collect();
        let table = self.tap_table(s);
        let wvar = self.b.declare_var(PTR);
        self.b.def_var(wvar, w_blk);
        self.for_count(table, s.taps(), 8, &mut |e, tp| {
            let off = e.b.ins().load(PTR, konst(), tp, 0);
            let p = e.b.ins().iadd(seg_in, off);
            let wp = e.b.use_var(wvar);
            let ins: Vec<Value> = (0..nv)
                .map(|k| e.b.ins().load(ty, konst(), p, (k * lanes * 4) as i32))
                .collect();
            for j in 0..ocb {
                let wv = e.b.ins().load(ty, konst(), wp, (j * 16) as i32);
                for (k, &x) in ins.iter().enumerate() {
                    let var = accs[j * nv + k];
                    let a = e.b.use_var(var);
                    let r = if s.fma {
                        e.b.ins().fma(x, wv, a)
                    } else {
                        let m = e.b.ins().fmul(x, wv);
                        e.b.ins().fadd(a, m)
                    };
                    e.b.def_var(var, r);
                }
            }
            let wp2 = e.b.ins().iadd_imm_s(wp, (ocb * 16) as i64);
            e.b.def_var(wvar, wp2);
        });
        accs
    }

    /// The address of the table of byte offsets of every tap (c, kh, kw) in the input buffer
    /// relative to the first tap, created once per kernel and kept alive by the caller.
    fn tap_table(&mut self, s: &ConvSpec) -> Value {
        if self.table.is_none() {
            let mut t = Vec::with_capacity(s.taps());
            for c in 0..s.cg {
                for i in 0..s.kh {
                    for j in 0..s.kw {
                        let x = j * s.dw;
                        let off = c * s.chan_stride
                            + i * s.dh * s.row_stride
                            + (x % s.sw) * s.wq
                            + x / s.sw;
                        t.push((off * 4) as i64);
                    }
                }
            }
            let t: Box<[i64]> = t.into_boxed_slice();
            self.table = Some(t.as_ptr() as usize);
            self.tables.push(t);
        }
        let addr = self.table.unwrap_or(0);
        self.b.ins().iconst(PTR, addr as i64)
    }

    // ---------------------------------------------------------------- elementwise

    fn elt(&mut self, s: &EltSpec, bufs: Value, start: Value, end: Value) {
        use crate::spec::ELT_CHUNK;
        let out = self.slot(bufs, SLOT_OUT);
        let inp = self.slot(bufs, SLOT_IN);
        let ep_base = self.ep_slots(&s.ep, bufs);
        let nch = s.chunks();
        let last_len = s.hw - (nch - 1) * ELT_CHUNK;
        self.for_dyn(start, end, &mut |e, it| {
            let (c, k) = e.divrem(it, nch);
            let off_c = e.b.ins().imul_imm_s(c, (s.hw * 4) as i64);
            let off_k = e.b.ins().imul_imm_s(k, (ELT_CHUNK * 4) as i64);
            let off = e.b.ins().iadd(off_c, off_k);
            let src = e.b.ins().iadd(inp, off);
            let dst = e.b.ins().iadd(out, off);
            let mut ptrs = EpPtrs { ptr: Vec::new() };
            let mut res = Vec::new();
            for (i, step) in s.ep.iter().enumerate() {
                match step {
                    Ep::Affine { .. } => {
                        ptrs.ptr.push(ep_base[i].map(|p| e.offset(p, c, 32)));
                        res.push(None);
                    }
                    Ep::Add { .. } => {
                        ptrs.ptr.push(None);
                        res.push(ep_base[i].map(|p| e.b.ins().iadd(p, off)));
                    }
                    Ep::Act(_) => {
                        ptrs.ptr.push(None);
                        res.push(None);
                    }
                }
            }
            if nch == 1 {
                e.elt_chunk(s, src, dst, &ptrs, &res, s.hw);
            } else {
                let part = e.b.create_block();
                let full = e.b.create_block();
                let join = e.b.create_block();
                let is_last = e.b.ins().icmp_imm_s(IntCC::Equal, k, (nch - 1) as i64);
                e.b.ins().brif(is_last, part, &[], full, &[]);
                e.b.switch_to_block(full);
                e.elt_chunk(s, src, dst, &ptrs, &res, ELT_CHUNK);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(part);
                e.elt_chunk(s, src, dst, &ptrs, &res, last_len);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            }
        });
    }

    fn elt_chunk(
        &mut self,
        s: &EltSpec,
        src: Value,
        dst: Value,
        ptrs: &EpPtrs,
        res: &[Option<Value>],
        len: usize,
    ) {
        let nvec = len / 4;
        // Relative offset, so every pointer (source, destination, residuals) shares one counter.
        if nvec > 0 {
            let zero = self.iconst(0);
            self.for_count(zero, nvec, 16, &mut |e, o| {
                let sp = e.b.ins().iadd(src, o);
                let dp = e.b.ins().iadd(dst, o);
                let rp: Vec<Option<Value>> = res
                    .iter()
                    .map(|r| r.map(|r| e.b.ins().iadd(r, o)))
                    .collect();
                let v = e.b.ins().load(F32X4, rd(), sp, 0);
                let v = e.epilogue(&s.ep, ptrs, F32X4, v, 0, &rp, 0);
                e.b.ins().store(rw(), v, dp, 0);
            });
        }
        for i in nvec * 4..len {
            let o = (i * 4) as i32;
            let v = self.b.ins().load(F32, rd(), src, o);
            let v = self.epilogue(&s.ep, ptrs, F32, v, 0, res, o);
            self.b.ins().store(rw(), v, dst, o);
        }
    }

    // ---------------------------------------------------------------- pooling

    /// Pooling, one item per (channel, output row). Windows entirely inside the input (a
    /// range of rows and, within it, of columns known at compile time) take a fast path:
    /// taps unrolled at constant offsets, vectorised along the output row (a gather of
    /// scalar loads when the stride is not 1). Border windows take a generic path whose
    /// loops run over the in-bounds part of each window.
    fn pool(&mut self, p: &PoolSpec, bufs: Value, start: Value, end: Value) {
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
            if ox_hi > ox_lo && oy_hi > oy_lo {
                let fast = e.b.create_block();
                let slow = e.b.create_block();
                let join = e.b.create_block();
                let ge =
                    e.b.ins()
                        .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, oy, oy_lo as i64);
                let lt =
                    e.b.ins()
                        .icmp_imm_s(IntCC::UnsignedLessThan, oy, oy_hi as i64);
                let inside = e.b.ins().band(ge, lt);
                e.b.ins().brif(inside, fast, &[], slow, &[]);
                e.b.switch_to_block(fast);
                e.pool_generic(p, in_c, out_row, oy, 0, ox_lo);
                e.pool_interior(p, in_c, out_row, oy, ox_lo, ox_hi);
                e.pool_generic(p, in_c, out_row, oy, ox_hi, p.ow);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(slow);
                e.pool_generic(p, in_c, out_row, oy, 0, p.ow);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            } else {
                e.pool_generic(p, in_c, out_row, oy, 0, p.ow);
            }
        });
    }

    /// Output columns `xa..xb` of row `oy` whose windows lie inside the input.
    fn pool_interior(
        &mut self,
        p: &PoolSpec,
        in_c: Value,
        out_row: Value,
        oy: Value,
        xa: usize,
        xb: usize,
    ) {
        // First input row of the window: oy*sh - pt (>= 0 here).
        let y0 = self.b.ins().imul_imm_s(oy, p.sh as i64);
        let y0 = self.b.ins().iadd_imm_s(y0, -(p.pt as i64));
        let row = self.offset(in_c, y0, p.w * 4);
        let inv = 1.0 / (p.kh * p.kw) as f32;
        let nvec = (xb - xa) / 4;
        // The window of output column `ox` starts at `row + (ox*sw - pl)*4`.
        let window = |e: &mut Self, ty: Type, base: Value| -> Value {
            let lanes = if ty == F32 { 1 } else { 4 };
            let mut acc: Option<Value> = None;
            for i in 0..p.kh {
                for j in 0..p.kw {
                    let off = ((i * p.w + j) * 4) as i32;
                    let v = if lanes == 1 || p.sw == 1 {
                        e.b.ins().load(ty, rd(), base, off)
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
                        Some(a) if p.max => e.b.ins().fmax(a, v),
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
                        e.b.ins().fmax(cur, v)
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

    fn gap(&mut self, hw: usize, bufs: Value, start: Value, end: Value) {
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

/// Pointers of one output row of a conv block.
struct Row {
    in_base: Value,
    out_row: Value,
    w_blk: Value,
    ptrs: EpPtrs,
    res_row: Vec<Option<Value>>,
}
