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
