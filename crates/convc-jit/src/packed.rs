//! Packed weights: the one statement of the weight stream every dense kernel reads (the
//! Cranelift kernels, the AVX2 / AVX-512 row microkernels and the Winograd GEMMs), so the
//! planner that writes it and the code that reads it cannot drift apart.
//!
//! A stream is one block of `ocb` output channels over its taps, tap after tap:
//!
//! ```text
//! tap t:  i64 byte offset from tap t's input to tap t+1's (0: the reduction's chunk ends here)
//!         w[o0][t] x dup, w[o0+1][t] x dup, ..., w[o0+ocb-1][t] x dup      (f32 each)
//! ```
//!
//! Blocks follow one another, per group: `[group][block][tap]`. The last block of a group may
//! have fewer channels (its taps `tap_bytes(fewer)` apart); every block takes the space of a
//! full one, so block `b` of group `g` starts at a fixed offset. `dup` copies of a weight let Cranelift's 128-bit kernels load a
//! broadcast weight as one vector (1 on the wide paths, which broadcast from one float).

/// Bytes of the offset at the head of a tap.
pub(crate) const OFFSET_BYTES: usize = 8;

/// Bytes of one tap of a block of `ocb` channels with `dup` copies of each weight.
pub(crate) const fn tap_bytes(ocb: usize, dup: usize) -> usize {
    OFFSET_BYTES + ocb * dup * 4
}

/// Byte offset, within a tap, of copy `copy` of channel `j`'s weight.
pub(crate) const fn weight_byte(j: usize, copy: usize, dup: usize) -> usize {
    OFFSET_BYTES + (j * dup + copy) * 4
}

/// Floats of one full block of `ocb` channels over `taps` taps.
pub(crate) const fn block_floats(taps: usize, ocb: usize, dup: usize) -> usize {
    taps * tap_bytes(ocb, dup) / 4
}

/// Appends one tap: the offset `next` (bytes to the next tap's input, 0 to end the chunk), then
/// `dup` copies of each weight.
pub(crate) fn push_tap(
    out: &mut Vec<f32>,
    next: i64,
    weights: impl Iterator<Item = f32>,
    dup: usize,
) {
    let bits = next as u64;
    out.push(f32::from_bits(bits as u32));
    out.push(f32::from_bits((bits >> 32) as u32));
    for w in weights {
        out.extend(std::iter::repeat_n(w, dup));
    }
}

/// Packs convolution weights `[groups * og][taps]` (`og` channels a group) in blocks of `ocb`:
/// `offs` is every tap's input offset in bytes; a chunk of the reduction ends after every
/// `chunk` taps (its last tap's offset is 0).
pub(crate) fn pack_conv(
    wdata: &[f32],
    groups: usize,
    og: usize,
    ocb: usize,
    dup: usize,
    offs: &[i64],
    chunk: usize,
) -> Vec<f32> {
    let taps = offs.len();
    let nb = og.div_ceil(ocb);
    let full = block_floats(taps, ocb, dup);
    let mut packed = Vec::with_capacity(groups * nb * full);
    for gi in 0..groups {
        for bi in 0..nb {
            let o0 = gi * og + bi * ocb;
            let ocb_b = ocb.min(og - bi * ocb);
            for t in 0..taps {
                let next = if t + 1 < taps && (t + 1) % chunk != 0 {
                    offs[t + 1] - offs[t]
                } else {
                    0
                };
                push_tap(
                    &mut packed,
                    next,
                    (o0..o0 + ocb_b).map(|o| wdata[o * taps + t]),
                    dup,
                );
            }
            // A short last block still takes a full block's space.
            packed.resize((gi * nb + bi + 1) * full, 0.0);
        }
    }
    packed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads tap `t` of block `b` (of `n` channels, full blocks `ocb`) back through the
    /// layout's functions, as the kernels do: a short block's taps are `tap_bytes(n)` apart.
    fn read(
        p: &[f32],
        (b, n): (usize, usize),
        t: usize,
        taps: usize,
        ocb: usize,
        dup: usize,
    ) -> (i64, Vec<f32>) {
        let bytes: Vec<u8> = p.iter().flat_map(|f| f.to_le_bytes()).collect();
        let at = b * block_floats(taps, ocb, dup) * 4 + t * tap_bytes(n, dup);
        let off = i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let w = (0..n)
            .flat_map(|j| (0..dup).map(move |c| (j, c)))
            .map(|(j, c)| {
                let q = at + weight_byte(j, c, dup);
                f32::from_le_bytes(bytes[q..q + 4].try_into().expect("4 bytes"))
            })
            .collect();
        (off, w)
    }

    #[test]
    fn the_writer_and_the_readers_agree() {
        // 2 groups of 5 channels in blocks of 3 (the second block short), 4 taps, 2 copies,
        // chunks of 3 taps.
        let (groups, og, ocb, dup, taps) = (2, 5, 3, 2, 4);
        let w: Vec<f32> = (0..groups * og * taps).map(|i| i as f32).collect();
        let offs = [0i64, 4, 12, 40];
        let p = pack_conv(&w, groups, og, ocb, dup, &offs, 3);
        assert_eq!(p.len(), groups * 2 * block_floats(taps, ocb, dup));
        for gi in 0..groups {
            for bi in 0..2 {
                let n = ocb.min(og - bi * ocb);
                for t in 0..taps {
                    let (off, ws) = read(&p, (gi * 2 + bi, n), t, taps, ocb, dup);
                    let want_off = [4, 8, 0, 0][t];
                    assert_eq!(off, want_off, "offset of tap {t}");
                    for j in 0..n {
                        for c in 0..dup {
                            let o = gi * og + bi * ocb + j;
                            let want = w[o * taps + t];
                            assert_eq!(ws[j * dup + c], want, "group {gi} block {bi} tap {t}");
                        }
                    }
                }
            }
        }
    }
}
