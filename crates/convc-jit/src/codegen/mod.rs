//! Lowering of kernel specs to Cranelift IR.
//!
//! Every kernel has the signature `extern "C" fn(bufs: *const *mut f32, start: u64, end: u64)`
//! and computes the work items `start..end` (see [`KernelSpec::items`]). Buffer pointers are
//! loaded from `bufs` once at entry; the slots are fixed per spec (`spec::SLOT_*`).

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Function, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind, Type,
    Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use crate::spec::{
    Act, ConvSpec, EltSpec, Ep, KernelSpec, PoolSpec, SLOT_IN, SLOT_OUT, SLOT_ROWBUF, SLOT_W,
    SLOT_WA, SepSpec, block_vectors, tap_unroll,
};
use crate::wide::Isa;

mod pool;

mod elementwise;

mod sep;

const PTR: Type = types::I64;
const F32: Type = types::F32;
const F64: Type = types::F64;
const F32X4: Type = types::F32X4;

/// Vector constants per table of a kernel's constant pool (activation bounds, zero, 1/n, the
/// coefficients of exp and tanh); a kernel that needs more gets more tables.
const POOL_VECTORS: usize = 64;

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
    frontend: TargetFrontendConfig,
    call_conv: CallConv,
) -> Vec<Box<[i64]>> {
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (bufs, start, end) = (params[0], params[1], params[2]);
    let mut e = Em {
        b,
        tables: Vec::new(),
        pool: Vec::new(),
        call_conv,
    };
    match spec {
        KernelSpec::Conv(s) => e.conv(s, bufs, start, end),
        KernelSpec::Sep(s) => e.sep(s, bufs, start, end),
        KernelSpec::Elt(s) => e.elt(s, bufs, start, end),
        KernelSpec::Pool(p) => e.pool(p, bufs, start, end),
        KernelSpec::Gap { c: _, hw } => e.gap(*hw, bufs, start, end),
        KernelSpec::Softmax { c, hw } => {
            let f: crate::rstep::RustStep = crate::rstep::softmax;
            e.call_rust(f, vec![*c as i64, *hw as i64], [bufs, start, end]);
        }
        KernelSpec::Shuffle { c, hw, groups } => {
            let f: crate::rstep::RustStep = crate::rstep::shuffle;
            e.call_rust(
                f,
                vec![*c as i64, *hw as i64, *groups as i64],
                [bufs, start, end],
            );
        }
        KernelSpec::Lrn(l) => {
            let f: crate::rstep::RustStep = crate::rstep::lrn;
            e.call_rust(f, l.params(), [bufs, start, end]);
        }
        KernelSpec::Wino(w) => e.call_rust(w.function(), w.params(), [bufs, start, end]),
        KernelSpec::Rust(r) => e.call_rust(r.kind.function(), r.params.clone(), [bufs, start, end]),
    }
    e.b.ins().return_(&[]);
    e.b.seal_all_blocks();
    e.b.finalize(frontend);
    e.tables
}

/// Pointers an epilogue reads, already offset to the first channel (and row) of the block.
#[derive(Clone)]
struct EpPtrs {
    /// One per epilogue step (unused entries for activations).
    ptr: Vec<Option<Value>>,
}

struct Em<'a> {
    b: FunctionBuilder<'a>,
    /// Constant tables the code points into (moved out to the caller, which keeps them alive).
    tables: Vec<Box<[i64]>>,
    /// The vector constant pool: per table of it, its index in `tables` and its entries in use.
    pool: Vec<(usize, usize)>,
    /// The calling convention of calls to Rust (the microkernels of `crate::wide`).
    call_conv: CallConv,
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

    /// Zero of `ty`.
    fn zero(&mut self, ty: Type) -> Value {
        self.splat(ty, 0.0)
    }

    /// `x` in every lane of `ty`. A vector constant is loaded from the kernel's constant pool
    /// where it is used (a load without `can_move`, so it is not hoisted and kept live in a
    /// register across the hot loops; `vxorps`-style materialisation would be hoisted).
    fn splat(&mut self, ty: Type, x: f32) -> Value {
        if ty == F32 {
            return self.b.ins().f32const(x);
        }
        let (addr, off) = self.pool_entry(x);
        let a = self.b.ins().iconst(PTR, addr as i64);
        self.b.ins().load(ty, rd(), a, off)
    }

    /// The address of a constant pool table and the byte offset of the splat of `x` in it.
    /// The pool grows by whole tables of [`POOL_VECTORS`] (each table's address is baked into
    /// the code, so a table never moves): a kernel may use any number of constants (a conv
    /// followed by 16 `clamp`s with distinct bounds and a `tanh` needs about 45).
    fn pool_entry(&mut self, x: f32) -> (usize, i32) {
        let bits = u64::from(x.to_bits());
        let pair = (bits | (bits << 32)) as i64;
        for &(t, used) in &self.pool {
            if let Some(i) = self.tables[t][..2 * used]
                .chunks(2)
                .position(|c| c[0] == pair)
            {
                return (self.tables[t].as_ptr() as usize, (i * 16) as i32);
            }
        }
        let (t, i) = match self.pool.last_mut() {
            Some((t, used)) if *used < POOL_VECTORS => {
                *used += 1;
                (*t, *used - 1)
            }
            _ => {
                self.tables
                    .push(vec![0i64; 2 * POOL_VECTORS].into_boxed_slice());
                self.pool.push((self.tables.len() - 1, 1));
                (self.tables.len() - 1, 0)
            }
        };
        let table = &mut self.tables[t];
        table[2 * i] = pair;
        table[2 * i + 1] = pair;
        (table.as_ptr() as usize, (i * 16) as i32)
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
            Act::Sigmoid => {
                // 1 / (1 + exp(-x)).
                let nx = self.b.ins().fneg(v);
                let e = self.exp(ty, nx);
                let one = self.splat(ty, 1.0);
                let d = self.b.ins().fadd(one, e);
                let one = self.splat(ty, 1.0);
                self.b.ins().fdiv(one, d)
            }
            Act::Tanh => self.tanh(ty, v),
            Act::HardSigmoid(alpha, beta) => {
                self.hard_sigmoid(ty, v, f32::from_bits(alpha), f32::from_bits(beta))
            }
            Act::HardSwish => {
                let h = self.hard_sigmoid(ty, v, 1.0 / 6.0, 0.5);
                self.b.ins().fmul(v, h)
            }
        }
    }

    /// `clamp(alpha * v + beta, 0, 1)` (two roundings, as [`convc_ir::Unary::apply`]).
    fn hard_sigmoid(&mut self, ty: Type, v: Value, alpha: f32, beta: f32) -> Value {
        let a = self.splat(ty, alpha);
        let t = self.b.ins().fmul(v, a);
        let b = self.splat(ty, beta);
        let t = self.b.ins().fadd(t, b);
        self.clamp(ty, t, 0.0, 1.0)
    }

    /// `exp(x)` in `ty` (F32 or F32X4), Cephes' `expf` with a degree-6 polynomial: relative
    /// error about 2e-7 (the interpreter: `f64::exp`). NaN gives NaN; the argument is clamped to
    /// [-87.3, 88.3] (beyond: 0 and about 1.5e38 or infinity, which is what sigmoid and tanh
    /// need). Vectorised instead of a library call per lane, which made sigmoid 20x slower than
    /// ONNX Runtime (64x112x112: 5.0 ms against 0.25).
    fn exp(&mut self, ty: Type, x: Value) -> Value {
        let ity = if ty == F32 { types::I32 } else { types::I32X4 };
        let hi = self.splat(ty, 88.376_26);
        let c = self.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
        let x = self.choose(ty, c, hi, x);
        let lo = self.splat(ty, -87.336_55);
        let c = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let x = self.choose(ty, c, lo, x);
        let l2e = self.splat(ty, std::f32::consts::LOG2_E);
        let fx = self.b.ins().fmul(x, l2e);
        let fx = self.b.ins().nearest(fx);
        let c1 = self.splat(ty, 0.693_359_4);
        let t = self.b.ins().fmul(fx, c1);
        let x = self.b.ins().fsub(x, t);
        let c2 = self.splat(ty, -2.121_944_4e-4);
        let t = self.b.ins().fmul(fx, c2);
        let x = self.b.ins().fsub(x, t);
        let z = self.b.ins().fmul(x, x);
        let mut y = self.splat(ty, 1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            y = self.b.ins().fmul(y, x);
            let k = self.splat(ty, c);
            y = self.b.ins().fadd(y, k);
        }
        y = self.b.ins().fmul(y, z);
        y = self.b.ins().fadd(y, x);
        let one = self.splat(ty, 1.0);
        y = self.b.ins().fadd(y, one);
        // 2^fx through the exponent bits (fx in [-126, 128]).
        let n = self.b.ins().fcvt_to_sint_sat(ity, fx);
        let bias = self.b.ins().iconst(types::I32, 127);
        let bias = if ty == F32 {
            bias
        } else {
            self.b.ins().splat(ity, bias)
        };
        let n = self.b.ins().iadd(n, bias);
        let n = self.b.ins().ishl_imm_u(n, 23);
        let p = self.b.ins().bitcast(ty, MemFlagsData::new(), n);
        self.b.ins().fmul(y, p)
    }

    /// `|m|` with the sign of `s` (x64 has no vector `fcopysign` in Cranelift): bit operations.
    fn copysign(&mut self, ty: Type, m: Value, s: Value) -> Value {
        let ity = if ty == F32 { types::I32 } else { types::I32X4 };
        let fl = MemFlagsData::new();
        let mi = self.b.ins().bitcast(ity, fl, m);
        let si = self.b.ins().bitcast(ity, fl, s);
        let k = |e: &mut Self, v: i64| {
            let c = e.b.ins().iconst(types::I32, v);
            if ty == F32 {
                c
            } else {
                e.b.ins().splat(ity, c)
            }
        };
        let mag = k(self, 0x7fff_ffff);
        let sign = k(self, 0x8000_0000_u32 as i32 as i64);
        let a = self.b.ins().band(mi, mag);
        let b = self.b.ins().band(si, sign);
        let r = self.b.ins().bor(a, b);
        self.b.ins().bitcast(ty, fl, r)
    }

    /// `tanh(x)` in `ty`: Cephes' `tanhf` (an odd polynomial below 0.625, `1 - 2/(exp(2|x|)+1)`
    /// with the sign of `x` above, ±1 beyond 9); NaN gives NaN, -0 gives -0.
    fn tanh(&mut self, ty: Type, x: Value) -> Value {
        // On |x|, then the sign of x (tanh is odd; this keeps -0 as -0).
        let ax = self.b.ins().fabs(x);
        // Large: 1 - 2 / (exp(2|x|) + 1).
        let two = self.splat(ty, 2.0);
        let t = self.b.ins().fmul(ax, two);
        let e = self.exp(ty, t);
        let one = self.splat(ty, 1.0);
        let d = self.b.ins().fadd(e, one);
        let two = self.splat(ty, 2.0);
        let q = self.b.ins().fdiv(two, d);
        let one = self.splat(ty, 1.0);
        let big = self.b.ins().fsub(one, q);
        // Small: |x| + |x|^3 P(x^2).
        let z = self.b.ins().fmul(ax, ax);
        let mut y = self.splat(ty, -5.704_988_7e-3);
        for c in [2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
            y = self.b.ins().fmul(y, z);
            let k = self.splat(ty, c);
            y = self.b.ins().fadd(y, k);
        }
        y = self.b.ins().fmul(y, z);
        y = self.b.ins().fmul(y, ax);
        let small = self.b.ins().fadd(y, ax);
        let lim = self.splat(ty, 0.625);
        let c = self.b.ins().fcmp(FloatCC::LessThan, ax, lim);
        let r = self.choose(ty, c, small, big);
        // Beyond 9, tanh is 1 in f32.
        let nine = self.splat(ty, 9.0);
        let c = self.b.ins().fcmp(FloatCC::GreaterThan, ax, nine);
        let one = self.splat(ty, 1.0);
        let r = self.choose(ty, c, one, r);
        self.copysign(ty, r, x)
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
                        let s = self.b.ins().load(ty, rd(), p, pofs);
                        v = self.b.ins().fmul(v, s);
                    }
                    let t = self.b.ins().load(ty, rd(), p, pofs + 16);
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

    fn conv(&mut self, s: &ConvSpec, bufs: Value, start: Value, end: Value) {
        let nb = s.nb();
        let plane = s.oh * s.ow;
        let taps = s.taps();
        let rem = s.og % s.ocb;
        self.for_dyn(start, end, &mut |e, it| {
            // The buffer pointers, loaded per item (not kept in registers across the loops:
            // general registers are short in the reduction).
            let out = e.b.ins().load(PTR, rd(), bufs, (SLOT_OUT * 8) as i32);
            let inp = e.b.ins().load(PTR, rd(), bufs, (SLOT_IN * 8) as i32);
            let w = e.b.ins().load(PTR, rd(), bufs, (SLOT_W * 8) as i32);
            let ep_base: Vec<Option<Value>> =
                s.ep.iter()
                    .map(|st| match *st {
                        Ep::Affine { slot, .. } | Ep::Add { slot } => {
                            Some(e.b.ins().load(PTR, rd(), bufs, (slot * 8) as i32))
                        }
                        Ep::Act(_) => None,
                    })
                    .collect();
            let (gb, rg, xt) = if s.row_major {
                let (rx, gb) = e.divrem(it, s.groups * nb);
                if s.xtiles > 1 {
                    let (rg, xt) = e.divrem(rx, s.xtiles);
                    (gb, rg, Some(xt))
                } else {
                    (gb, rx, None)
                }
            } else {
                let (gb, rg) = e.divrem(it, s.row_groups());
                (gb, rg, None)
            };
            // First output row of the item's group of `s.rows` rows.
            let oy = if s.rows == 1 {
                rg
            } else {
                e.b.ins().imul_imm_s(rg, s.rows as i64)
            };
            let (g, bb) = e.divrem(gb, nb);
            // First output channel of the block: g*og + bb*ocb.
            let o0a = e.b.ins().imul_imm_s(g, s.og as i64);
            let o0b = e.b.ins().imul_imm_s(bb, s.ocb as i64);
            let o0 = e.b.ins().iadd(o0a, o0b);
            let in_g = e.offset(inp, g, s.cg * s.chan_stride * 4);
            let in_base = e.offset(in_g, oy, s.sh * s.row_stride * 4);
            let out_c = e.offset(out, o0, s.out_cs * 4);
            let out_row = e.offset(out_c, oy, s.out_rs * 4);
            let w_blk = e.offset(w, gb, taps * s.tap_bytes(s.ocb));
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
            // The partial sums of a chunked packed-rows item (see `ConvSpec::part_slot`).
            let part = (s.part_slot > 0)
                .then(|| e.b.ins().load(PTR, rd(), bufs, (s.part_slot * 8) as i32));
            let mut row = Row {
                in_base,
                out_row,
                w_blk,
                ptrs,
                res_row,
                count: None,
                part,
            };
            if let Some(xt) = xt {
                // A column tile: the same byte offset (4 per output column) into the input
                // (stride phases make output column x start at byte 4x), the output and the
                // residual rows; the last tile has its own code for its width.
                let off = e.b.ins().imul_imm_s(xt, (s.xtile_cols * 4) as i64);
                row.in_base = e.b.ins().iadd(row.in_base, off);
                row.out_row = e.b.ins().iadd(row.out_row, off);
                for r in row.res_row.iter_mut().flatten() {
                    *r = e.b.ins().iadd(*r, off);
                }
                let last_w = s.ow - (s.xtiles - 1) * s.xtile_cols;
                let last = e.b.create_block();
                let full = e.b.create_block();
                let join = e.b.create_block();
                let is_last =
                    e.b.ins()
                        .icmp_imm_s(IntCC::Equal, xt, (s.xtiles - 1) as i64);
                e.b.ins().brif(is_last, last, &[], full, &[]);
                e.b.switch_to_block(full);
                e.conv_rows(s, &row, rem, nb, bb, 1, s.xtile_cols);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(last);
                e.conv_rows(s, &row, rem, nb, bb, 1, last_w);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
                return;
            }
            let last_rows = s.oh - (s.row_groups() - 1) * s.rows;
            if s.rows > 1 && last_rows < s.rows {
                // The last row group is shorter: its own code.
                let short = e.b.create_block();
                let full = e.b.create_block();
                let join = e.b.create_block();
                let is_last =
                    e.b.ins()
                        .icmp_imm_s(IntCC::Equal, rg, (s.row_groups() - 1) as i64);
                e.b.ins().brif(is_last, short, &[], full, &[]);
                e.b.switch_to_block(full);
                e.conv_rows(s, &row, rem, nb, bb, s.rows, s.ow);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(short);
                e.conv_rows(s, &row, rem, nb, bb, last_rows, s.ow);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            } else {
                e.conv_rows(s, &row, rem, nb, bb, s.rows, s.ow);
            }
        });
    }

    /// `rows` output rows of the block `bb` (of `nb`; the last has `rem` channels if not 0).
    #[allow(clippy::too_many_arguments)]
    fn conv_rows(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        rem: usize,
        nb: usize,
        bb: Value,
        rows: usize,
        width: usize,
    ) {
        let e = self;
        {
            if rem == 0 {
                e.conv_row(s, row, s.ocb, rows, width);
            } else {
                let part = e.b.create_block();
                let full = e.b.create_block();
                let join = e.b.create_block();
                let is_last = e.b.ins().icmp_imm_s(IntCC::Equal, bb, (nb - 1) as i64);
                e.b.ins().brif(is_last, part, &[], full, &[]);
                e.b.switch_to_block(full);
                e.conv_row(s, row, s.ocb, rows, width);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(part);
                e.conv_row(s, row, rem, rows, width);
                e.b.ins().jump(join, &[]);
                e.b.switch_to_block(join);
            }
        }
    }

    /// One output row of a block of `ocb` output channels (its first `width` columns from the
    /// row pointers: a column tile, see `ConvSpec::xtiles`): column segments of `nv` vectors.
    fn conv_row(&mut self, s: &ConvSpec, row: &Row, ocb: usize, rows: usize, width: usize) {
        if let (Some(isa), Some(part)) = (s.wide, row.part)
            && s.flat_pad > 0
        {
            self.wide_flat(s, row, part, ocb, rows, isa);
            return;
        }
        if let Some(isa) = s.wide
            && s.dw_rows > 0
        {
            self.wide_dw3(s, row, rows, width, isa);
            return;
        }
        if let Some(isa) = s.wide
            && rows == 1
            && row.part.is_none()
            && (row.count.is_none() || s.chunks() == 1)
        {
            self.wide_row(s, row, ocb, width, isa);
            return;
        }
        let v = block_vectors(s.ocb, ocb, s.fma);
        if s.rows > 1 {
            // Short rows, packed: the vectors of `rows` rows (each row's last one ending at
            // its end, overlapping the one before), `v` at a time.
            let mut cols: Vec<usize> = (0..s.ow / 4).map(|i| 4 * i).collect();
            if !s.ow.is_multiple_of(4) {
                cols.push(s.ow - 4);
            }
            let pos: Vec<(i32, i32)> = (0..rows)
                .flat_map(|r| {
                    cols.iter().map(move |&c| {
                        (
                            ((r * s.sh * s.row_stride + c) * 4) as i32,
                            ((r * s.out_rs + c) * 4) as i32,
                        )
                    })
                })
                .collect();
            if s.chunks() > 1 {
                self.packed_chunks(s, row, ocb, v, &pos);
                return;
            }
            for (gi, grp) in pos.chunks(v).enumerate() {
                self.conv_chunk(s, row, ocb, grp, 0, gi * v);
            }
            return;
        }
        // A long reduction runs in chunks of taps, each over the whole row (see
        // `ConvSpec::chunk_taps`); the planner keeps such rows free of overlapping tails.
        for chunk in 0..s.chunks() {
            self.conv_row_chunk(s, row, ocb, v, chunk, width);
        }
    }

    /// One output row of a block through a microkernel of `crate::wide`: one call per chunk of
    /// the reduction (later chunks add to the sums in the output), then the epilogue in place.
    fn wide_row(&mut self, s: &ConvSpec, row: &Row, ocb: usize, width: usize, isa: Isa) {
        let Some(f) = crate::wide::row_kernel(isa, ocb) else {
            // The planner sizes blocks for the microkernels: unreachable, but Cranelift's
            // own code computes the same row.
            let v = block_vectors(s.ocb, ocb, s.fma);
            for chunk in 0..s.chunks() {
                self.conv_row_chunk(s, row, ocb, v, chunk, width);
            }
            return;
        };
        // The epilogue inside the microkernel where it can express it (the stores of the last
        // chunk), else a pass over the rows it wrote.
        let ep = if s.ep.is_empty() {
            None
        } else {
            self.wide_epilogue(s, row)
        };
        self.call_row_kernel(
            s,
            f,
            row.in_base,
            row.w_blk,
            row.out_row,
            ocb,
            s.out_cs,
            width,
            row.count,
            ep,
        );
        if !s.ep.is_empty() && ep.is_none() {
            self.epilogue_rows(s, row, row.out_row, s.out_cs, s.out_rs, ocb, 1, width);
        }
    }

    /// `rows` output rows of a depthwise 3x3 channel ([`ConvSpec::dw_rows`]): all of them in
    /// one call of the rows kernel when the item is whole and the kernel can apply the
    /// epilogue, else row by row through the row kernel.
    fn wide_dw3(&mut self, s: &ConvSpec, row: &Row, rows: usize, width: usize, isa: Isa) {
        let f = crate::wide::dw3_kernel(isa, s.dw_rows, s.sh);
        let ep = if s.ep.is_empty() {
            Some(self.iconst(0))
        } else {
            self.wide_epilogue(s, row)
        };
        if let (Some(f), Some(ep), true) = (f, ep, rows == s.dw_rows) {
            // The column taps' offsets in the (phase-split) input row.
            let kwo: Box<[i64]> = (0..3)
                .map(|b| {
                    let x = b * s.dw;
                    ((x % s.sw) * s.wq + x / s.sw) as i64
                })
                .collect();
            let kwo_addr = kwo.as_ptr() as i64;
            self.tables.push(kwo);
            let sig = self.rust_signature(8);
            let a = [s.out_rs, width, s.row_stride].map(|v| self.iconst(v));
            let kwo = self.b.ins().iconst(PTR, kwo_addr);
            let callee = self.b.ins().iconst(PTR, f as usize as i64);
            self.b.ins().call_indirect(
                sig,
                callee,
                &[
                    row.in_base,
                    row.w_blk,
                    row.out_row,
                    a[0],
                    a[1],
                    a[2],
                    kwo,
                    ep,
                ],
            );
            return;
        }
        for r in 0..rows {
            let mut one = row.clone();
            one.in_base = self
                .b
                .ins()
                .iadd_imm_s(row.in_base, (r * s.sh * s.row_stride * 4) as i64);
            one.out_row = self
                .b
                .ins()
                .iadd_imm_s(row.out_row, (r * s.out_rs * 4) as i64);
            for rr in one.res_row.iter_mut().flatten() {
                *rr = self.b.ins().iadd_imm_s(*rr, (r * s.out_rs * 4) as i64);
            }
            self.wide_row(s, &one, 1, width, isa);
        }
    }

    /// `rows` output rows of a block as one flat row of the padded input
    /// ([`ConvSpec::flat_pad`]): the microkernel writes the sums of every position, padding
    /// columns included, to the thread's scratch (`ocb` channels `flat_len` apart), then the
    /// epilogue copies each row's `ow` valid columns to the output.
    fn wide_flat(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        part: Value,
        ocb: usize,
        rows: usize,
        isa: Isa,
    ) {
        let Some(f) = crate::wide::row_kernel(isa, ocb) else {
            return;
        };
        let width = (rows - 1) * s.flat_pad + s.ow;
        self.call_row_kernel(
            s,
            f,
            row.in_base,
            row.w_blk,
            part,
            ocb,
            s.flat_len(),
            width,
            None,
            None,
        );
        // The copy out, with the epilogue, in the wide path's vectors where it can express the
        // epilogue; else Cranelift's f32x4 loops below.
        if let (Some(copy), Some(ep)) = (
            crate::wide::copy_kernel(isa),
            if s.ep.is_empty() {
                Some(self.iconst(0))
            } else {
                self.wide_epilogue(s, row)
            },
        ) {
            let sig = self.rust_signature(10);
            let args = [
                s.flat_len(),
                s.flat_pad,
                s.out_cs,
                s.out_rs,
                ocb,
                rows,
                s.ow,
            ]
            .map(|v| self.iconst(v));
            let callee = self.b.ins().iconst(PTR, copy as usize as i64);
            self.b.ins().call_indirect(
                sig,
                callee,
                &[
                    part,
                    args[0],
                    args[1],
                    row.out_row,
                    args[2],
                    args[3],
                    args[4],
                    args[5],
                    args[6],
                    ep,
                ],
            );
            return;
        }
        self.epilogue_rows(s, row, part, s.flat_len(), s.flat_pad, ocb, rows, s.ow);
    }

    /// The signature of a Rust function of `n` pointer-sized arguments (the microkernels of
    /// `crate::wide`), imported into the function being built.
    fn rust_signature(&mut self, n: usize) -> cranelift_codegen::ir::SigRef {
        let mut sig = Signature::new(self.call_conv);
        sig.params.extend((0..n).map(|_| AbiParam::new(PTR)));
        self.b.import_signature(sig)
    }

    /// Calls the row microkernel `f` once per chunk of the reduction: `width` positions from
    /// `in_base` into `out` (channels `out_cs` floats apart); `count`, a tap count known at run
    /// time.
    #[allow(clippy::too_many_arguments)]
    fn call_row_kernel(
        &mut self,
        s: &ConvSpec,
        f: crate::wide::RowFn,
        in_base: Value,
        w_blk: Value,
        out: Value,
        ocb: usize,
        out_cs: usize,
        width: usize,
        count: Option<Value>,
        ep: Option<Value>,
    ) {
        let sig = self.rust_signature(7);
        for chunk in 0..s.chunks() {
            let (t0, _) = s.chunk(chunk);
            let inp = self.b.ins().iadd_imm_s(in_base, s.tap_offset(t0));
            let w = self
                .b
                .ins()
                .iadd_imm_s(w_blk, (t0 * s.tap_bytes(ocb)) as i64);
            let cs = self.iconst(out_cs);
            let wd = self.iconst(width);
            let acc = usize::from(t0 > 0) * crate::wide::ACCUMULATE;
            let flags = match count {
                Some(n) => {
                    let n = self
                        .b
                        .ins()
                        .ishl_imm_s(n, i64::from(crate::wide::COUNT_SHIFT));
                    self.b
                        .ins()
                        .bor_imm_s(n, (acc | crate::wide::COUNTED) as i64)
                }
                None => self.iconst(acc),
            };
            // The epilogue with the last chunk's stores.
            let ep = match ep {
                Some(p) if chunk + 1 == s.chunks() => p,
                _ => self.iconst(0),
            };
            let callee = self.b.ins().iconst(PTR, f as usize as i64);
            self.b
                .ins()
                .call_indirect(sig, callee, &[inp, w, out, cs, wd, flags, ep]);
        }
    }

    /// The epilogue as the microkernels' [`crate::wide::EpStep`] list, in a stack slot: every
    /// step but sigmoid and tanh (those keep Cranelift's pass over the rows). `None` when a
    /// step cannot be expressed.
    fn wide_epilogue(&mut self, s: &ConvSpec, row: &Row) -> Option<Value> {
        use crate::wide::{EP_ADD, EP_AFFINE, EP_BIAS, EP_CLAMP, EP_LEAKY, EP_STEP_BYTES};
        let mut steps: Vec<(u64, Option<Value>, f32, f32)> = Vec::new();
        for (i, st) in s.ep.iter().enumerate() {
            steps.push(match *st {
                Ep::Affine { scale, .. } => {
                    let kind = if scale { EP_AFFINE } else { EP_BIAS };
                    (
                        kind,
                        Some(row.ptrs.ptr.get(i).copied().flatten()?),
                        0.0,
                        0.0,
                    )
                }
                Ep::Add { .. } => (
                    EP_ADD,
                    Some(row.res_row.get(i).copied().flatten()?),
                    0.0,
                    0.0,
                ),
                Ep::Act(Act::Relu) => (EP_CLAMP, None, 0.0, f32::INFINITY),
                Ep::Act(Act::Relu6) => (EP_CLAMP, None, 0.0, 6.0),
                Ep::Act(Act::Clamp(lo, hi)) => {
                    (EP_CLAMP, None, f32::from_bits(lo), f32::from_bits(hi))
                }
                Ep::Act(Act::Leaky(a)) => (EP_LEAKY, None, f32::from_bits(a), 0.0),
                Ep::Act(_) => return None,
            });
        }
        let bytes = (steps.len() + 1) * EP_STEP_BYTES;
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            u32::try_from(bytes).ok()?,
            3,
        ));
        let end = (crate::wide::EP_END, None, 0.0, 0.0);
        for (i, (kind, ptr, a, b)) in steps.into_iter().chain([end]).enumerate() {
            let at = (i * EP_STEP_BYTES) as i32;
            let k = self.b.ins().iconst(PTR, kind as i64);
            self.b.ins().stack_store(PTR, k, slot, at);
            let p = match ptr {
                Some(p) => p,
                None => self.iconst(0),
            };
            self.b.ins().stack_store(PTR, p, slot, at + 8);
            let a = self.b.ins().iconst(types::I32, i64::from(a.to_bits()));
            self.b.ins().stack_store(PTR, a, slot, at + 16);
            let b = self.b.ins().iconst(types::I32, i64::from(b.to_bits()));
            self.b.ins().stack_store(PTR, b, slot, at + 20);
        }
        Some(self.b.ins().stack_addr(PTR, slot, 0))
    }

    /// The epilogue over `width` columns of `rows` rows of each of the block's `ocb` channels,
    /// read from `src` (channels `src_cs`, rows `src_rs` floats apart; the output itself for an
    /// epilogue in place) and stored to the output: whole vectors then scalars (no overlapping
    /// vector: the epilogue is not idempotent).
    #[allow(clippy::too_many_arguments)]
    fn epilogue_rows(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        src: Value,
        src_cs: usize,
        src_rs: usize,
        ocb: usize,
        rows: usize,
        width: usize,
    ) {
        for r in 0..rows {
            for (lanes, x0, count) in [(4, 0, width / 4), (1, width / 4 * 4, width % 4)] {
                if count == 0 {
                    continue;
                }
                let ty = if lanes == 4 { F32X4 } else { F32 };
                let first = self.iconst(x0 * 4);
                self.for_count(first, count, (lanes * 4) as i64, &mut |e, xoff| {
                    let from = e.b.ins().iadd(src, xoff);
                    let out = e.b.ins().iadd(row.out_row, xoff);
                    let res: Vec<Option<Value>> = row
                        .res_row
                        .iter()
                        .map(|p| p.map(|p| e.b.ins().iadd(p, xoff)))
                        .collect();
                    for j in 0..ocb {
                        let soff = ((j * src_cs + r * src_rs) * 4) as i32;
                        let ooff = ((j * s.out_cs + r * s.out_rs) * 4) as i32;
                        let a = e.b.ins().load(ty, rw(), from, soff);
                        let v = e.epilogue(&s.ep, &row.ptrs, ty, a, (j * 32) as i32, &res, ooff);
                        e.b.ins().store(rw(), v, out, ooff);
                    }
                });
            }
        }
    }

    /// The taps of chunk `chunk` for a whole output row of the block: `n_main` segments of `v`
    /// vectors, then the rest.
    fn conv_row_chunk(
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
    fn packed_chunks(&mut self, s: &ConvSpec, row: &Row, ocb: usize, v: usize, pos: &[(i32, i32)]) {
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
    fn conv_chunk(
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
        // One tap at (p, wp): updates the accumulators, returns the offset to the next tap.
        let tap = |e: &mut Self, p: Value, wp: Value, wofs: i32| -> Value {
            // Pure loads (the input is not written during the kernel): placed at their first
            // use, so with one output channel per block each sinks into its FMA.
            let ins: Vec<Value> = in_offs
                .iter()
                .map(|&o| e.b.ins().load(ty, konst(), p, o))
                .collect();
            for j in 0..ocb {
                let mut shared = None;
                for (k, &x) in ins.iter().enumerate() {
                    let a = e.b.use_var(accs[j * nv + k]);
                    let r = if fresh {
                        // A block with more vectors than weight copies (the last, small block
                        // of a kernel of one-vector blocks) shares a load: a register copy per
                        // FMA instead of a second packed copy of every block's weights.
                        let copy = k % s.wdup();
                        let wv = e.wload(
                            ty,
                            wp,
                            wofs + crate::packed::weight_byte(j, copy, s.wdup()) as i32,
                        );
                        e.b.ins().fma(wv, x, a)
                    } else if shared_fma {
                        let wv = match shared {
                            Some(w) => w,
                            None => {
                                let w = e.wload(
                                    ty,
                                    wp,
                                    wofs + crate::packed::weight_byte(j, 0, s.wdup()) as i32,
                                );
                                shared = Some(w);
                                w
                            }
                        };
                        e.b.ins().fma(wv, x, a)
                    } else {
                        let wv = match shared {
                            Some(w) => w,
                            None => {
                                let w = e.wload(
                                    ty,
                                    wp,
                                    wofs + crate::packed::weight_byte(j, 0, s.wdup()) as i32,
                                );
                                shared = Some(w);
                                w
                            }
                        };
                        let m = e.b.ins().fmul(x, wv);
                        e.b.ins().fadd(a, m)
                    };
                    e.b.def_var(accs[j * nv + k], r);
                }
            }
            e.b.ins().load(PTR, konst(), wp, wofs)
        };
        if count.is_none() && unroll > 1 && !ntaps.is_multiple_of(unroll) {
            // The first `ntaps % unroll` taps run before the loop. The peeled taps' weights
            // through an opaque zero (a load that is not hoisted):
            // at a loop-invariant address, their broadcasts would be hoisted out of the
            // column loop around the reduction, held across it, and spilled.
            let (addr, off) = self.pool_entry(0.0);
            let a = self.b.ins().iconst(PTR, addr as i64);
            let z = self.b.ins().load(PTR, rd(), a, off);
            let w0 = self.b.ins().iadd(w_blk, z);
            let peel = ntaps % unroll;
            let mut p = self.b.use_var(pvar);
            let mut d = p;
            for k in 0..peel {
                d = tap(self, p, w0, (k as i64 * wstep) as i32);
                p = self.b.ins().iadd(p, d);
            }
            self.b.def_var(pvar, p);
            let w2 = self.b.ins().iadd_imm_s(w0, wstep * peel as i64);
            self.b.def_var(wvar, w2);
            self.b.def_var(dvar, d);
        }
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
            d = tap(self, p, wp, (u as i64 * wstep) as i32);
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
        accs
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

impl Em<'_> {
    /// A call of a plain-Rust step (`rstep.rs`) with the kernel's arguments and a table of
    /// the step's constants (kept alive with the other tables).
    fn call_rust(&mut self, f: crate::rstep::RustStep, params: Vec<i64>, args: [Value; 3]) {
        let mut sig = Signature::new(self.b.func.signature.call_conv);
        for _ in 0..4 {
            sig.params.push(AbiParam::new(PTR));
        }
        let sref = self.b.import_signature(sig);
        let t: Box<[i64]> = params.into_boxed_slice();
        let taddr = t.as_ptr() as i64;
        self.tables.push(t);
        let table = self.b.ins().iconst(PTR, taddr);
        let callee = self.b.ins().iconst(PTR, f as usize as i64);
        self.b
            .ins()
            .call_indirect(sref, callee, &[args[0], args[1], args[2], table]);
    }
}

/// Pointers of one output row of a conv block.
#[derive(Clone)]
struct Row {
    in_base: Value,
    out_row: Value,
    w_blk: Value,
    ptrs: EpPtrs,
    res_row: Vec<Option<Value>>,
    /// A tap count known only at run time (a fused vertical conv's border rows): the taps are
    /// then vertical, a constant `dh * row_stride` apart, and run one per iteration.
    count: Option<Value>,
    /// The partial sums of a chunked packed-rows item (`ConvSpec::part_slot`).
    part: Option<Value>,
}
