//! The direct convolution (dense, grouped, depthwise and pointwise alike: one [`ConvSpec`]): work
//! items over blocks of output channels and rows, each row through a microkernel
//! (`microkernel.rs`, `depthwise.rs`) or Cranelift's own reduction (`reduction.rs`), then the
//! epilogue.

use super::*;

impl Em<'_> {
    /// The direct conv's kernel: per work item ([`Self::conv_item`]) one column tile or one
    /// group of rows of one register block; a shorter last tile or row group has code of its
    /// own.
    pub(super) fn conv(&mut self, s: &ConvSpec, bufs: Value, start: Value, end: Value) {
        let nb = s.nb();
        let rem = s.og % s.ocb;
        self.for_dyn(start, end, &mut |e, it| {
            let (mut row, rg, xt, bb) = e.conv_item(s, bufs, it);
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
                e.if_last(
                    xt,
                    s.xtiles - 1,
                    &mut |e| e.conv_rows(s, &row, rem, nb, bb, 1, last_w),
                    &mut |e| e.conv_rows(s, &row, rem, nb, bb, 1, s.xtile_cols),
                );
                return;
            }
            let last_rows = s.oh - (s.row_groups() - 1) * s.rows;
            if s.rows > 1 && last_rows < s.rows {
                // The last row group is shorter: its own code.
                e.if_last(
                    rg,
                    s.row_groups() - 1,
                    &mut |e| e.conv_rows(s, &row, rem, nb, bb, last_rows, s.ow),
                    &mut |e| e.conv_rows(s, &row, rem, nb, bb, s.rows, s.ow),
                );
            } else {
                e.conv_rows(s, &row, rem, nb, bb, s.rows, s.ow);
            }
        });
    }

    /// Work item `it` of a direct conv: its row pointers (input, output, the block's weights,
    /// the epilogue's operands, the partial sums), its row group, its column tile (with
    /// `ConvSpec::xtiles`) and its block within the group. Row-major items run the row groups
    /// (and tiles) of one block after the other's; block-major, the blocks of a row group.
    fn conv_item(
        &mut self,
        s: &ConvSpec,
        bufs: Value,
        it: Value,
    ) -> (Row, Value, Option<Value>, Value) {
        let nb = s.nb();
        let taps = s.taps();
        // The buffer pointers, loaded per item (not kept in registers across the loops:
        // general registers are short in the reduction).
        let out = self.b.ins().load(PTR, rd(), bufs, (SLOT_OUT * 8) as i32);
        let inp = self.b.ins().load(PTR, rd(), bufs, (SLOT_IN * 8) as i32);
        let w = self.b.ins().load(PTR, rd(), bufs, (SLOT_W * 8) as i32);
        let ep_base: Vec<Option<Value>> =
            s.ep.iter()
                .map(|st| match *st {
                    Ep::Affine { slot, .. } | Ep::Add { slot } => {
                        Some(self.b.ins().load(PTR, rd(), bufs, (slot * 8) as i32))
                    }
                    Ep::Act(_) => None,
                })
                .collect();
        let (gb, rg, xt) = if s.row_major {
            let (rx, gb) = self.divrem(it, s.groups * nb);
            if s.xtiles > 1 {
                let (rg, xt) = self.divrem(rx, s.xtiles);
                (gb, rg, Some(xt))
            } else {
                (gb, rx, None)
            }
        } else {
            let (gb, rg) = self.divrem(it, s.row_groups());
            (gb, rg, None)
        };
        // First output row of the item's group of `s.rows` rows.
        let oy = if s.rows == 1 {
            rg
        } else {
            self.b.ins().imul_imm_s(rg, s.rows as i64)
        };
        let (g, bb) = self.divrem(gb, nb);
        // First output channel of the block: g*og + bb*ocb.
        let o0a = self.b.ins().imul_imm_s(g, s.og as i64);
        let o0b = self.b.ins().imul_imm_s(bb, s.ocb as i64);
        let o0 = self.b.ins().iadd(o0a, o0b);
        let in_g = self.offset(inp, g, s.cg * s.chan_stride * 4);
        // The item's first input row: padded row `oy * sh`, or its row of the ring.
        let (in_base, ring_row) = if s.in_ring > 0 {
            let r = self.b.ins().imul_imm_s(oy, s.sh as i64);
            let slot = self.b.ins().urem_imm_u(r, s.in_ring as i64);
            (self.offset(in_g, slot, s.row_stride * 4), Some(slot))
        } else {
            (self.offset(in_g, oy, s.sh * s.row_stride * 4), None)
        };
        let out_c = self.offset(out, o0, s.out_cs * 4);
        let out_row = self.offset(out_c, oy, s.out_rs * 4);
        let w_blk = self.offset(w, gb, taps * s.tap_bytes(s.ocb));
        let (ptrs, res_row) = self.block_ep_ptrs(s, &ep_base, o0, oy);
        // The partial sums of a chunked packed-rows item (see `ConvSpec::part_slot`).
        let part =
            (s.part_slot > 0).then(|| self.b.ins().load(PTR, rd(), bufs, (s.part_slot * 8) as i32));
        let row = Row {
            in_base,
            out_row,
            w_blk,
            ptrs,
            res_row,
            count: None,
            part,
            ring_row,
        };
        (row, rg, xt, bb)
    }

    /// The epilogue's operands for the block whose first channel is `o0`, at output row `oy`:
    /// affine parameters per channel, and residual rows in the output's layout.
    fn block_ep_ptrs(
        &mut self,
        s: &ConvSpec,
        ep_base: &[Option<Value>],
        o0: Value,
        oy: Value,
    ) -> (EpPtrs, Vec<Option<Value>>) {
        let plane = s.oh * s.ow;
        let mut ptrs = EpPtrs { ptr: Vec::new() };
        let mut res_row = Vec::new();
        for (i, step) in s.ep.iter().enumerate() {
            match step {
                Ep::Affine { .. } => {
                    let p = ep_base[i].map(|p| self.offset(p, o0, 32));
                    ptrs.ptr.push(p);
                    res_row.push(None);
                }
                Ep::Add { .. } => {
                    let r = ep_base[i].map(|p| {
                        let rc = self.offset(p, o0, plane * 4);
                        self.offset(rc, oy, s.ow * 4)
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
        (ptrs, res_row)
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
        if rem == 0 {
            self.conv_row(s, row, s.ocb, rows, width);
        } else {
            self.if_last(
                bb,
                nb - 1,
                &mut |e| e.conv_row(s, row, rem, rows, width),
                &mut |e| e.conv_row(s, row, s.ocb, rows, width),
            );
        }
    }

    /// One output row of a block of `ocb` output channels (its first `width` columns from the
    /// row pointers: a column tile, see `ConvSpec::xtiles`): column segments of `nv` vectors.
    pub(super) fn conv_row(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        ocb: usize,
        rows: usize,
        width: usize,
    ) {
        if let (Some(isa), Some(part)) = (s.wide, row.part)
            && s.flat_pad > 0
        {
            self.wide_flat(s, row, part, ocb, rows, isa);
            return;
        }
        if let (Some(isa), Some(plane)) = (s.wide, s.dw_plane) {
            self.wide_dw_plane(s, row, &plane, isa);
            return;
        }
        if let Some(isa) = s.wide
            && s.dw_rows > 0
        {
            self.wide_dw(s, row, rows, width, isa);
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

    /// The epilogue over `width` columns of `rows` rows of each of the block's `ocb` channels,
    /// read from `src` (channels `src_cs`, rows `src_rs` floats apart; the output itself for an
    /// epilogue in place) and stored to the output: whole vectors then scalars (no overlapping
    /// vector: the epilogue is not idempotent).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn epilogue_rows(
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
}
