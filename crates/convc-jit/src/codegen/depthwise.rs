//! Depthwise 3x3, 5x5 and 7x7 convs on the wide paths: a small plane's channel in one call of
//! `crate::wide`'s whole-plane kernel ([`ConvSpec::dw_plane`]), else several output rows a
//! call of its rows kernel ([`ConvSpec::dw_rows`]). Other depthwise convs run as direct convs
//! of one channel per group (`conv.rs`).

use super::*;

impl Em<'_> {
    /// `rows` output rows of a depthwise KxK channel ([`ConvSpec::dw_rows`]): `dw_rows` at a
    /// time through the rows kernel, and an item's last rows where the plane's height leaves
    /// fewer (a 14x14 plane's items are 4, 4, 4 and 2 rows, a 7x7 plane's 4 and 3) in one call
    /// of the kernel for that many; row by row through the row kernel only where the kernel
    /// cannot apply the epilogue. The last rows of small planes went row by row: 13% of a
    /// 384-channel 14x14 layer's time.
    pub(super) fn wide_dw(&mut self, s: &ConvSpec, row: &Row, rows: usize, width: usize, isa: Isa) {
        // The column taps' offsets in the (phase-split) input row, one table for every call.
        let kwo: Box<[i64]> = (0..s.kw)
            .map(|b| {
                let x = b * s.dw;
                ((x % s.sw) * s.wq + x / s.sw) as i64
            })
            .collect();
        let kwo_addr = kwo.as_ptr() as i64;
        self.tables.push(kwo);
        let mut r0 = 0;
        while r0 < rows {
            let n = (rows - r0).min(s.dw_rows);
            let part = self.rows_from(s, row, r0);
            if !self.dw_call(s, &part, n, (width, kwo_addr), isa) {
                // The kernel cannot apply this epilogue: the rest row by row.
                for r in r0..rows {
                    let one = self.rows_from(s, row, r);
                    self.wide_row(s, &one, 1, width, isa);
                }
                return;
            }
            r0 += n;
        }
    }

    /// A channel's whole plane in one call of the whole-plane kernel
    /// ([`ConvSpec::dw_plane`]) from its unpadded input at `row.in_base`; where the kernel
    /// cannot apply the epilogue, a pass over the plane's rows after it.
    pub(super) fn wide_dw_plane(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        plane: &crate::spec::PlaneInput,
        isa: Isa,
    ) {
        let Some(f) = crate::wide::dw_plane_kernel(isa, s.kw, s.sh) else {
            // The planner picks the plane kernel only where there is one.
            return;
        };
        // `crate::wide::DwPlane`'s fields, in order. The output's row stride is the spec's
        // final one: a producer may write its consumer's padded layout (`plan::pad_in_place`).
        let geom: Box<[i64]> = [
            plane.h, plane.w, s.oh, s.ow, plane.pt, plane.pl, s.dw, s.out_rs,
        ]
        .iter()
        .map(|&v| v as i64)
        .collect();
        let geom_addr = geom.as_ptr() as i64;
        self.tables.push(geom);
        let ep = if s.ep.is_empty() {
            None
        } else {
            self.wide_epilogue(s, row)
        };
        let sig = self.rust_signature(5);
        let g = self.b.ins().iconst(PTR, geom_addr);
        let e = match ep {
            Some(e) => e,
            None => self.iconst(0),
        };
        let callee = self.b.ins().iconst(PTR, f as usize as i64);
        self.b
            .ins()
            .call_indirect(sig, callee, &[row.in_base, row.w_blk, row.out_row, g, e]);
        if !s.ep.is_empty() && ep.is_none() {
            self.epilogue_rows(s, row, row.out_row, s.out_cs, s.out_rs, 1, s.oh, s.ow);
        }
    }

    /// `row` moved down `r` output rows (input, output and residual pointers).
    fn rows_from(&mut self, s: &ConvSpec, row: &Row, r: usize) -> Row {
        let mut one = row.clone();
        if r == 0 {
            return one;
        }
        one.in_base = self
            .b
            .ins()
            .iadd_imm_s(row.in_base, (r * s.sh * s.row_stride * 4) as i64);
        one.ring_row = row
            .ring_row
            .map(|v| self.b.ins().iadd_imm_s(v, (r * s.sh) as i64));
        one.out_row = self
            .b
            .ins()
            .iadd_imm_s(row.out_row, (r * s.out_rs * 4) as i64);
        for rr in one.res_row.iter_mut().flatten() {
            *rr = self.b.ins().iadd_imm_s(*rr, (r * s.out_rs * 4) as i64);
        }
        one
    }

    /// One call of the depthwise rows kernel for `n` (1 to 4) rows from `row`, `width`
    /// columns, the column offsets at `kwo_addr`; false where there is none for `n` rows, or
    /// the kernel cannot apply the epilogue.
    fn dw_call(
        &mut self,
        s: &ConvSpec,
        row: &Row,
        n: usize,
        (width, kwo_addr): (usize, i64),
        isa: Isa,
    ) -> bool {
        let Some(f) = crate::wide::dw_kernel(isa, s.kw, n, s.sh) else {
            return false;
        };
        let ep = if s.ep.is_empty() {
            Some(self.iconst(0))
        } else {
            self.wide_epilogue(s, row)
        };
        let Some(ep) = ep else {
            return false;
        };
        let sig = self.rust_signature(10);
        let a = [s.out_rs, width, s.row_stride].map(|v| self.iconst(v));
        let kwo = self.b.ins().iconst(PTR, kwo_addr);
        // A ring's window goes on at the ring's start from its row `in_ring - ring_row`
        // (`crate::wide::DwFn`); `ring_row` is at most `in_ring` plus the item's rows.
        let (wrap, back) = match row.ring_row {
            Some(r) => {
                let end = self.b.ins().iconst(PTR, s.in_ring as i64);
                let wrap = self.b.ins().isub(end, r);
                (wrap, self.iconst(s.in_ring * s.row_stride))
            }
            None => (self.b.ins().iconst(PTR, i64::MAX), self.iconst(0)),
        };
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
                wrap,
                back,
            ],
        );
        true
    }
}
