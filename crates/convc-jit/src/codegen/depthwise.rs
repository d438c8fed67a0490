//! Depthwise 3x3, 5x5 and 7x7 rows on the wide paths ([`ConvSpec::dw_rows`]): several output rows a call of
//! `crate::wide`'s rows kernel. Other depthwise convs run as direct convs of one channel per
//! group (`conv.rs`).

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
        true
    }
}
