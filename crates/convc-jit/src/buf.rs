//! 64-byte aligned float buffers (weights, parameters, the arena).

/// One cache line of floats: the unit of allocation, so every buffer starts on a line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised, 64-byte aligned buffer of `len` floats.
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros, or `None` when the memory cannot be had.
    pub fn zeroed(len: usize) -> Option<AlignedBuf> {
        let n = len.div_ceil(16).max(1);
        let mut lines = Vec::new();
        lines.try_reserve_exact(n).ok()?;
        lines.resize(n, Line([0.0; 16]));
        Some(AlignedBuf { lines, len })
    }

    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> Option<AlignedBuf> {
        let mut b = AlignedBuf::zeroed(data.len())?;
        b.as_mut_slice().copy_from_slice(data);
        Some(b)
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_ptr(&self) -> *const f32 {
        self.lines.as_ptr().cast::<f32>()
    }

    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.lines.as_mut_ptr().cast::<f32>()
    }
}

/// Bytes of a page, the unit of protection of a [`GuardedBuf`].
pub(crate) const PAGE: usize = 4096;

/// A test-mode buffer in its own mapping with `PROT_NONE` pages where the plan says (see
/// `JitOptions::guard_pages`): an access by generated code past the end (or before the start)
/// of a buffer placed against one faults instead of reading or corrupting a neighbour.
/// Filled with NaN, so a value read before it is written shows in the results.
pub(crate) struct GuardedBuf {
    base: *mut libc::c_void,
    bytes: usize,
}

// SAFETY: the mapping is owned by this value and only reached through its pointer, under the
// same rules as an `AlignedBuf` (threads write disjoint parts).
unsafe impl Send for GuardedBuf {}

impl GuardedBuf {
    /// `pages` pages, the ones listed in `guards` made inaccessible; `None` when the mapping
    /// cannot be had.
    pub fn new(pages: usize, guards: &[usize]) -> Option<GuardedBuf> {
        let bytes = pages.max(1).checked_mul(PAGE)?;
        // SAFETY: a fresh private anonymous mapping, owned by the result.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let buf = GuardedBuf { base, bytes };
        // SAFETY: the mapping is `bytes` long and writable.
        unsafe {
            std::slice::from_raw_parts_mut(base.cast::<f32>(), bytes / 4).fill(f32::NAN);
        }
        for &g in guards.iter().filter(|&&g| g < pages) {
            // SAFETY: page `g` lies inside the mapping.
            let r = unsafe {
                libc::mprotect(
                    base.cast::<u8>().add(g * PAGE).cast(),
                    PAGE,
                    libc::PROT_NONE,
                )
            };
            if r != 0 {
                return None;
            }
        }
        Some(buf)
    }

    /// A buffer of `len` floats that ends right before a guard page (`at_end`) or starts
    /// right after one: a thread's scratch in test mode.
    pub fn single(len: usize, at_end: bool) -> Option<(GuardedBuf, usize)> {
        let pages = (len.checked_mul(4)?).div_ceil(PAGE).max(1);
        if at_end {
            let b = GuardedBuf::new(pages + 1, &[pages])?;
            Some((b, pages * PAGE / 4 - len))
        } else {
            let b = GuardedBuf::new(pages + 1, &[0])?;
            Some((b, PAGE / 4))
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.base.cast::<f32>()
    }
}

impl Drop for GuardedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.bytes) };
    }
}

/// The memory of an arena or a thread's scratch: plain, or in guarded pages (test mode), the
/// buffer then starting `off` floats into the mapping.
pub(crate) enum Mem {
    Plain(AlignedBuf),
    Guarded {
        buf: GuardedBuf,
        off: usize,
        len: usize,
    },
}

impl Mem {
    /// Floats usable from [`Mem::as_mut_ptr`].
    pub fn len(&self) -> usize {
        match self {
            Mem::Plain(b) => b.len(),
            Mem::Guarded { len, .. } => *len,
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        match self {
            Mem::Plain(b) => b.as_mut_ptr(),
            Mem::Guarded { buf, off, .. } => buf.as_mut_ptr().wrapping_add(*off),
        }
    }

    /// A thread's scratch of `len` floats, against a guard page in test mode (`guard`: at its
    /// end or its start).
    pub fn scratch(len: usize, guard: Option<bool>) -> Option<Mem> {
        match guard {
            None => AlignedBuf::zeroed(len).map(Mem::Plain),
            Some(at_end) => {
                GuardedBuf::single(len, at_end).map(|(buf, off)| Mem::Guarded { buf, off, len })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions `/proc/self/maps` gives the page holding `addr`.
    fn perms(addr: usize) -> String {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(p)) = (f.next(), f.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let a = usize::from_str_radix(a, 16).expect("hex");
            let b = usize::from_str_radix(b, 16).expect("hex");
            if (a..b).contains(&addr) {
                return p.to_string();
            }
        }
        panic!("{addr:#x} not mapped");
    }

    #[test]
    fn scratch_ends_and_starts_at_a_guard_page() {
        for len in [1usize, 100, 1024, 1025, 5000] {
            let mut m = Mem::scratch(len, Some(true)).expect("map");
            let p = m.as_mut_ptr() as usize;
            assert_eq!(m.len(), len);
            assert!(perms(p).starts_with("rw"), "{len}");
            assert!(perms(p + len * 4 - 4).starts_with("rw"), "{len}");
            assert!(perms(p + len * 4).starts_with("---"), "{len}");
            // SAFETY: inside the buffer.
            assert!(unsafe { *m.as_mut_ptr() }.is_nan(), "filled with NaN");
            let mut m = Mem::scratch(len, Some(false)).expect("map");
            let p = m.as_mut_ptr() as usize;
            assert!(perms(p).starts_with("rw"), "{len}");
            assert!(perms(p - 4).starts_with("---"), "{len}");
        }
    }

    #[test]
    fn guarded_pages_are_the_listed_ones() {
        let mut b = GuardedBuf::new(5, &[1, 3, 9]).expect("map");
        let p = b.as_mut_ptr() as usize;
        for (page, guard) in [(0, false), (1, true), (2, false), (3, true), (4, false)] {
            assert_eq!(
                perms(p + page * PAGE).starts_with("---"),
                guard,
                "page {page}"
            );
        }
    }
}
