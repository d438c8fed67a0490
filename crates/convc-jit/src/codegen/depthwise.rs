//! Depthwise 3x3, 5x5 and 7x7 rows on the wide paths ([`ConvSpec::dw_rows`]): several output rows a call of
//! `crate::wide`'s rows kernel. Other depthwise convs run as direct convs of one channel per
//! group (`conv.rs`).

use super::*;

impl Em<'_> {
    /// `rows` output rows of a depthwise KxK channel ([`ConvSpec::dw_rows`]): all of them in
    /// one call of the rows kernel when the item is whole and the kernel can apply the
    /// epilogue, else row by row through the row kernel.
    pub(super) fn wide_dw(&mut self, s: &ConvSpec, row: &Row, rows: usize, width: usize, isa: Isa) {
        let f = crate::wide::dw_kernel(isa, s.kw, s.dw_rows, s.sh);
        let ep = if s.ep.is_empty() {
            Some(self.iconst(0))
        } else {
            self.wide_epilogue(s, row)
        };
        if let (Some(f), Some(ep), true) = (f, ep, rows == s.dw_rows) {
            // The column taps' offsets in the (phase-split) input row.
            let kwo: Box<[i64]> = (0..s.kw)
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
}
