//! 64-byte aligned float buffers (weights, parameters, the arena).

/// One cache line of floats: the unit of allocation, so every buffer starts on a line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A zero-initialised, 64-byte aligned buffer of `len` floats. From [`HUGE_MIN_BYTES`] on, in
/// its own mapping on 2 MB boundaries marked for transparent huge pages ([`HugeMap`]).
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    huge: Option<HugeMap>,
    len: usize,
}

/// Buffers from this size on are mapped for huge pages. With 4 KB pages, the physical pages a
/// process happened to get decided how a strided layer's rows met in the L2 (and 1,000 TLB
/// entries a few MB): one 256-channel dilated 3x3 layer ran at 14 ms in one process and 28 ms
/// in the next, for the same plan.
const HUGE_MIN_BYTES: usize = 1 << 20;

/// Bytes of a transparent huge page on x86-64 and aarch64 Linux (the alignment asked for).
const HUGE_PAGE: usize = 2 << 20;

/// An anonymous mapping whose 2 MB-aligned part holds a buffer, with `MADV_HUGEPAGE` asked
/// (the kernel may still give 4 KB pages: THP off, or no free huge page; only speed differs).
struct HugeMap {
    base: *mut libc::c_void,
    bytes: usize,
    data: *mut f32,
}

// SAFETY: the mapping is owned by its `AlignedBuf` and reached through it only; threads write
// disjoint parts of it under the same rules as the `Vec` case.
unsafe impl Send for HugeMap {}
unsafe impl Sync for HugeMap {}

impl HugeMap {
    /// A zeroed mapping of at least `bytes` bytes, its data 2 MB-aligned; `None` when the
    /// mapping cannot be had.
    fn new(bytes: usize) -> Option<HugeMap> {
        let data_bytes = bytes.checked_next_multiple_of(HUGE_PAGE)?;
        let map_bytes = data_bytes.checked_add(HUGE_PAGE)?;
        let base = anonymous_map(map_bytes)?;
        let skip = (HUGE_PAGE - base as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: `skip < HUGE_PAGE`, so `data_bytes` bytes from there are inside the mapping.
        let data = unsafe { base.cast::<u8>().add(skip) };
        // A hint: its failure (no THP in this kernel) changes nothing but speed.
        #[cfg(target_os = "linux")]
        // SAFETY: the range lies inside the mapping made above.
        unsafe {
            libc::madvise(data.cast(), data_bytes, libc::MADV_HUGEPAGE)
        };
        Some(HugeMap {
            base,
            bytes: map_bytes,
            data: data.cast(),
        })
    }
}

impl Drop for HugeMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.bytes) };
    }
}

impl AlignedBuf {
    /// `len` zeros, or `None` when the memory cannot be had.
    pub fn zeroed(len: usize) -> Option<AlignedBuf> {
        let n = len.div_ceil(16).max(1);
        if n.checked_mul(64)? >= HUGE_MIN_BYTES {
            let huge = HugeMap::new(n * 64)?;
            return Some(AlignedBuf {
                lines: Vec::new(),
                huge: Some(huge),
                len,
            });
        }
        let mut lines = Vec::new();
        lines.try_reserve_exact(n).ok()?;
        lines.resize(n, Line([0.0; 16]));
        Some(AlignedBuf {
            lines,
            huge: None,
            len,
        })
    }

    /// A copy of `data`.
    pub fn from_slice(data: &[f32]) -> Option<AlignedBuf> {
        let mut b = AlignedBuf::zeroed(data.len())?;
        b.as_mut_slice().copy_from_slice(data);
        Some(b)
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: `len` floats from an aligned allocation of at least that many, and
        // `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_ptr(&self) -> *const f32 {
        match &self.huge {
            Some(h) => h.data,
            None => self.lines.as_ptr().cast::<f32>(),
        }
    }

    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        match &self.huge {
            Some(h) => h.data,
            None => self.lines.as_mut_ptr().cast::<f32>(),
        }
    }
}

/// A fresh private anonymous read-write mapping of `bytes` bytes (zero-filled), which the caller
/// owns and unmaps; `None` when it cannot be had.
fn anonymous_map(bytes: usize) -> Option<*mut libc::c_void> {
    // SAFETY: a new mapping at an address the kernel picks; nothing else is touched.
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
    (base != libc::MAP_FAILED).then_some(base)
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
        let base = anonymous_map(bytes)?;
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
    fn big_buffers_are_zeroed_aligned_and_whole() {
        for len in [
            HUGE_MIN_BYTES / 4 - 1,
            HUGE_MIN_BYTES / 4,
            3 << 20,
            (5 << 20) + 7,
        ] {
            let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let mut b = AlignedBuf::from_slice(&data).expect("memory");
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 64, 0, "{len}");
            if len * 4 >= HUGE_MIN_BYTES {
                assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0, "{len}");
            }
            assert_eq!(b.as_mut_slice(), &data[..], "{len}");
            let z = AlignedBuf::zeroed(len).expect("memory");
            // SAFETY: `len` floats.
            let zs = unsafe { std::slice::from_raw_parts(z.as_ptr(), len) };
            assert!(zs.iter().all(|&v| v == 0.0), "{len}");
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
