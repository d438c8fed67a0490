//! Lowering of kernel specs to Cranelift IR.
//!
//! Every kernel has the signature `extern "C" fn(bufs: *const *mut f32, start: u64, end: u64)`
//! and computes the work items `start..end` (see [`KernelSpec::items`]). Buffer pointers are
//! loaded from `bufs` once at entry; the slots are fixed per spec (`spec::SLOT_*`).
//!
//! This module holds the shared emitter ([`Em`]: loops, constants, activations, the epilogue)
//! and the dispatch per spec; each kernel family has a file of its own:
//! - `conv.rs`: the direct convolution (dense, grouped, depthwise, pointwise), its items and
//!   rows; `reduction.rs`: its reductions in Cranelift's own code; `microkernel.rs`: its rows
//!   through the microkernels of `crate::wide`; `depthwise.rs`: depthwise 3x3 rows several at
//!   a time on the wide paths;
//! - `sep.rs`: a fused separable pair ([`SepSpec`]);
//! - `elementwise.rs`: elementwise chains and copies;
//! - `pool.rs`: window pools and the global average pool.
//!
//! Winograd, softmax, LRN, shuffle and the plain-Rust steps are calls into Rust ([`Em::call_rust`]).

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

mod conv;
mod depthwise;
mod elementwise;
mod microkernel;
mod pool;
mod reduction;
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
        KernelSpec::Gemm(g) => e.call_rust(g.function(), g.params(), [bufs, start, end]),
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

    /// Two versions of the code that follows: `last` where `idx == last_idx` (a shorter last
    /// chunk, tile or row group), `other` elsewhere; both continue in one block.
    fn if_last(
        &mut self,
        idx: Value,
        last_idx: usize,
        last: &mut dyn FnMut(&mut Self),
        other: &mut dyn FnMut(&mut Self),
    ) {
        let special = self.b.create_block();
        let full = self.b.create_block();
        let join = self.b.create_block();
        let is_last = self.b.ins().icmp_imm_s(IntCC::Equal, idx, last_idx as i64);
        self.b.ins().brif(is_last, special, &[], full, &[]);
        self.b.switch_to_block(full);
        other(self);
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(special);
        last(self);
        self.b.ins().jump(join, &[]);
        self.b.switch_to_block(join);
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
    /// With `ConvSpec::in_ring`: the ring row `in_base` points at (in `0..in_ring` for an
    /// item's first row, then past it by the rows `rows_from` moved down).
    ring_row: Option<Value>,
}
