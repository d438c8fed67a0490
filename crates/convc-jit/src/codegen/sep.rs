//! The fused separable pair ([`SepSpec`]): a vertical conv's rows into a row buffer, then the
//! horizontal conv reading them.

use super::*;

impl Em<'_> {
    /// A fused vertical + horizontal conv ([`SepSpec`]): one item per (group of `b`, output
    /// row of `b`): `a`'s rows that row reads ([`Self::sep_a_rows`]), then `b`'s blocks
    /// ([`Self::sep_b_blocks`]).
    pub(super) fn sep(&mut self, s: &SepSpec, bufs: Value, start: Value, end: Value) {
        let taddr = self.sep_setup(s, bufs);
        let bs = &s.b;
        self.for_dyn(start, end, &mut |e, it| {
            let (gb, oy) = e.divrem(it, bs.oh);
            let ld = |e: &mut Self, slot: usize| e.b.ins().load(PTR, rd(), bufs, (slot * 8) as i32);
            let out = ld(e, SLOT_OUT);
            let inp = ld(e, SLOT_IN);
            let wb = ld(e, SLOT_W);
            let rowbuf = ld(e, SLOT_ROWBUF);
            let wa = ld(e, SLOT_WA);
            let tab = e.b.ins().iconst(PTR, taddr);
            let trow = e.offset(tab, oy, 24);
            let in_off = e.b.ins().load(PTR, konst(), trow, 0);
            let w_off = e.b.ins().load(PTR, konst(), trow, 8);
            let cnt = e.b.ins().load(PTR, konst(), trow, 16);
            e.sep_a_rows(s, bufs, gb, [inp, wa, rowbuf], [in_off, w_off, cnt]);
            e.sep_b_blocks(s, bufs, (gb, oy), [out, wb, rowbuf]);
        });
    }

    /// Once per call: zeroes the row buffer's borders (`b`'s zero padding: `a`'s rows never
    /// write them), and returns the address of the table that gives, per output row of `b`,
    /// where `a`'s window starts in the input (bytes from the channel), where its weights start
    /// (the first valid tap) and how many taps are valid.
    fn sep_setup(&mut self, s: &SepSpec, bufs: Value) -> i64 {
        let (a, bs) = (&s.a, &s.b);
        let rb = bs.chan_stride;
        let rowbuf = self.b.ins().load(PTR, rd(), bufs, (SLOT_ROWBUF * 8) as i32);
        let zero = self.b.ins().f32const(0.0);
        for ci in 0..bs.cg {
            for x in (0..s.pl).chain(s.pl + a.ow..rb) {
                self.b
                    .ins()
                    .store(rw(), zero, rowbuf, ((ci * rb + x) * 4) as i32);
            }
        }
        let abytes = a.tap_bytes(1);
        let mut t = Vec::with_capacity(3 * bs.oh);
        for oy in 0..bs.oh {
            let r = oy * bs.sh;
            let (i0, n) = s.valid_taps(r);
            let y0 = (r * a.sh + i0 * a.dh) as i64 - s.pt as i64;
            t.extend_from_slice(&[
                y0 * (a.row_stride * 4) as i64,
                (i0 * abytes) as i64,
                n as i64,
            ]);
        }
        let t: Box<[i64]> = t.into_boxed_slice();
        let taddr = t.as_ptr() as i64;
        self.tables.push(t);
        taddr
    }

    /// `a`'s rows of the channels that group `gb` of `b` reads, into the row buffer: from the
    /// table row's input and weight offsets, over its count of valid taps.
    fn sep_a_rows(
        &mut self,
        s: &SepSpec,
        bufs: Value,
        gb: Value,
        [inp, wa, rowbuf]: [Value; 3],
        [in_off, w_off, cnt]: [Value; 3],
    ) {
        let (a, bs) = (&s.a, &s.b);
        let rb = bs.chan_stride;
        let abytes = a.tap_bytes(1);
        let ld = |e: &mut Self, slot: usize| e.b.ins().load(PTR, rd(), bufs, (slot * 8) as i32);
        for ci in 0..bs.cg {
            let c = self.b.ins().imul_imm_s(gb, bs.cg as i64);
            let c = self.b.ins().iadd_imm_s(c, ci as i64);
            let (ga, _) = self.divrem(c, a.og);
            let in_c = self.offset(inp, ga, a.chan_stride * 4);
            let in_base = self.b.ins().iadd(in_c, in_off);
            let w_c = self.offset(wa, c, a.kh * abytes);
            let w_blk = self.b.ins().iadd(w_c, w_off);
            let out_row = self
                .b
                .ins()
                .iadd_imm_s(rowbuf, ((ci * rb + s.pl) * 4) as i64);
            let mut ptrs = EpPtrs { ptr: Vec::new() };
            for st in &a.ep {
                ptrs.ptr.push(match *st {
                    Ep::Affine { slot, .. } => {
                        let p = ld(self, slot);
                        Some(self.offset(p, c, 32))
                    }
                    _ => None,
                });
            }
            let row = Row {
                in_base,
                out_row,
                w_blk,
                ptrs,
                res_row: vec![None; a.ep.len()],
                count: Some(cnt),
                part: None,
                ring_row: None,
            };
            self.conv_row(a, &row, 1, 1, a.ow);
        }
    }

    /// `b`'s blocks of group `gb` at output row `oy`, reading the row buffer.
    fn sep_b_blocks(
        &mut self,
        s: &SepSpec,
        bufs: Value,
        (gb, oy): (Value, Value),
        [out, wb, rowbuf]: [Value; 3],
    ) {
        let bs = &s.b;
        let nb = bs.nb();
        let plane_b = bs.oh * bs.ow;
        let ld = |e: &mut Self, slot: usize| e.b.ins().load(PTR, rd(), bufs, (slot * 8) as i32);
        for bb in 0..nb {
            let ocb = bs.ocb.min(bs.og - bb * bs.ocb);
            let o0 = self.b.ins().imul_imm_s(gb, bs.og as i64);
            let o0 = self.b.ins().iadd_imm_s(o0, (bb * bs.ocb) as i64);
            let out_c = self.offset(out, o0, plane_b * 4);
            let out_row = self.offset(out_c, oy, bs.ow * 4);
            let blk = self.b.ins().imul_imm_s(gb, nb as i64);
            let blk = self.b.ins().iadd_imm_s(blk, bb as i64);
            let w_blk = self.offset(wb, blk, bs.taps() * bs.tap_bytes(bs.ocb));
            let mut ptrs = EpPtrs { ptr: Vec::new() };
            let mut res_row = Vec::new();
            for st in &bs.ep {
                match *st {
                    Ep::Affine { slot, .. } => {
                        let p = ld(self, slot);
                        ptrs.ptr.push(Some(self.offset(p, o0, 32)));
                        res_row.push(None);
                    }
                    Ep::Add { slot } => {
                        let p = ld(self, slot);
                        let rc = self.offset(p, o0, plane_b * 4);
                        ptrs.ptr.push(None);
                        res_row.push(Some(self.offset(rc, oy, bs.ow * 4)));
                    }
                    Ep::Act(_) => {
                        ptrs.ptr.push(None);
                        res_row.push(None);
                    }
                }
            }
            let row = Row {
                in_base: rowbuf,
                out_row,
                w_blk,
                ptrs,
                res_row,
                count: None,
                part: None,
                ring_row: None,
            };
            self.conv_row(bs, &row, ocb, 1, bs.ow);
        }
    }
}
