//! Elementwise kernels: a chain of affine steps, activations and residual adds over chunks of
//! a channel's values (batchnorm, activation and add groups, and the copies of concat).

use super::*;

impl Em<'_> {
    /// One item per chunk of [`ELT_CHUNK`](crate::spec::ELT_CHUNK) values of a channel (the
    /// last chunk of a channel may be shorter, and has code of its own).
    pub(super) fn elt(&mut self, s: &EltSpec, bufs: Value, start: Value, end: Value) {
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
                e.if_last(
                    k,
                    nch - 1,
                    &mut |e| e.elt_chunk(s, src, dst, &ptrs, &res, last_len),
                    &mut |e| e.elt_chunk(s, src, dst, &ptrs, &res, ELT_CHUNK),
                );
            }
        });
    }

    /// The epilogue over `len` values from `src` to `dst`: whole vectors, then scalars.
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
}
