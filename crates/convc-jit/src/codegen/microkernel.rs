//! Calls into the row microkernels of `crate::wide` (AVX2, AVX-512) from the direct conv: one
//! call per chunk of a row's reduction, the epilogue as the microkernel's step list, and flat
//! rows of padded planes through the thread's scratch.

use super::*;

impl Em<'_> {
    /// One output row of a block through a microkernel of `crate::wide`: one call per chunk of
    /// the reduction (later chunks add to the sums in the output), then the epilogue in place.
    pub(super) fn wide_row(&mut self, s: &ConvSpec, row: &Row, ocb: usize, width: usize, isa: Isa) {
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

    /// `rows` output rows of a block as one flat row of the padded input
    /// ([`ConvSpec::flat_pad`]): the microkernel writes the sums of every position, padding
    /// columns included, to the thread's scratch (`ocb` channels `flat_len` apart), then the
    /// epilogue copies each row's `ow` valid columns to the output.
    pub(super) fn wide_flat(
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
    pub(super) fn rust_signature(&mut self, n: usize) -> cranelift_codegen::ir::SigRef {
        let mut sig = Signature::new(self.call_conv);
        sig.params.extend((0..n).map(|_| AbiParam::new(PTR)));
        self.b.import_signature(sig)
    }

    /// Calls the row microkernel `f` once per chunk of the reduction: `width` positions from
    /// `in_base` into `out` (channels `out_cs` floats apart); `count`, a tap count known at run
    /// time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn call_row_kernel(
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
    pub(super) fn wide_epilogue(&mut self, s: &ConvSpec, row: &Row) -> Option<Value> {
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
                // See `Act::in_wide_kernels`.
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
}
