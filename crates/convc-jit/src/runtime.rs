//! Running a plan: per image, every step in order; each step's work items split across
//! threads that live for the whole run and meet at a spinning barrier between steps.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::buf::AlignedBuf;
use crate::plan::{Arg, Loc, PadCopy, Plan, Step};

/// The compiled kernels' ABI.
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut f32, u64, u64);

/// A raw pointer that may cross threads: every thread writes disjoint parts of the buffers.
#[derive(Clone, Copy)]
pub(crate) struct P(pub *mut f32);
// SAFETY: the pointers address buffers that outlive the run; threads write disjoint item
// ranges, and a job's results are published (Release/Acquire on `done`) before the next job.
unsafe impl Send for P {}
unsafe impl Sync for P {}

/// The job the main thread publishes for a parallel step: workers claim chunks of its items
/// from `work` (job number in the high 32 bits, next item in the low 32), run them, and add
/// the count to `done`. A worker that is late (descheduled, still starting) finds the job
/// over and costs nothing: the main thread claims whatever is left itself.
struct Shared {
    work: AtomicU64,
    done: AtomicUsize,
    /// The current job's description.
    job: std::sync::Mutex<Job>,
    quit: AtomicBool,
    failed: AtomicBool,
}

/// What a job runs.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// Its number (the high bits of `Shared::work` while it is current).
    seq: u64,
    img: usize,
    step: usize,
    /// 0: the padding copy (items are channels); 1: the kernel.
    phase: usize,
    items: usize,
    chunk: usize,
}

const ITEM_BITS: u32 = 32;
const ITEM_MASK: u64 = (1 << ITEM_BITS) - 1;

/// Marks the run failed when its thread unwinds, so that nobody waits for it.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::Release);
        }
    }
}

/// One run of a plan on a batch.
pub(crate) struct Exec<'a> {
    pub plan: &'a Plan,
    pub fns: &'a [KernelFn],
    /// Base pointer of each input (all images).
    pub inputs: Vec<P>,
    /// Base pointer of each output (all images).
    pub outputs: Vec<P>,
    pub batch: usize,
    pub threads: usize,
    /// Below this many estimated nanoseconds of work a step runs on the calling thread alone.
    pub parallel_min_ns: f64,
}

impl Exec<'_> {
    fn parallel(&self, step: &Step) -> bool {
        self.threads > 1 && step.work_ns >= self.parallel_min_ns && step.spec.items() >= 2
    }

    /// Runs every image; with `profile`, returns the wall time of each step (summed over images).
    pub fn run(&self, profile: bool) -> Result<Vec<f64>, String> {
        let mut arena = AlignedBuf::zeroed(self.plan.arena_len).ok_or_else(|| {
            format!(
                "not enough memory for the {} MB of intermediate buffers",
                (self.plan.arena_len * 4) >> 20
            )
        })?;
        let arena = P(arena.as_mut_ptr());
        let any_parallel = self.plan.steps.iter().any(|s| self.parallel(s));
        let threads = if any_parallel { self.threads } else { 1 };
        let shared = Shared {
            work: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            job: std::sync::Mutex::new(Job {
                seq: 0,
                img: 0,
                step: 0,
                phase: 0,
                items: 0,
                chunk: 1,
            }),
            quit: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        };
        let mut times = vec![0f64; self.plan.steps.len()];
        std::thread::scope(|sc| {
            for _ in 1..threads {
                let shared = &shared;
                sc.spawn(move || {
                    let _guard = FailOnPanic(shared);
                    self.worker(shared, arena);
                });
            }
            let _guard = FailOnPanic(&shared);
            self.main(&shared, arena, threads, profile.then_some(&mut times));
            shared.quit.store(true, Ordering::Release);
        });
        if shared.failed.load(Ordering::Acquire) {
            return Err("internal error: a worker thread failed".into());
        }
        Ok(times)
    }

    fn main(&self, sh: &Shared, arena: P, threads: usize, mut times: Option<&mut Vec<f64>>) {
        let mut seq = 0u64;
        let mut bufs: Vec<*mut f32> = Vec::new();
        for img in 0..self.batch {
            for (si, step) in self.plan.steps.iter().enumerate() {
                let start = Instant::now();
                if self.parallel(step) {
                    if let Some(pad) = &step.pad {
                        seq += 1;
                        if !self.job(
                            sh,
                            Job {
                                seq,
                                img,
                                step: si,
                                phase: 0,
                                items: pad.c,
                                chunk: 1,
                            },
                            arena,
                        ) {
                            return;
                        }
                    }
                    let items = step.spec.items();
                    let chunk = (items / (threads * 8)).max(1);
                    seq += 1;
                    if !self.job(
                        sh,
                        Job {
                            seq,
                            img,
                            step: si,
                            phase: 1,
                            items,
                            chunk,
                        },
                        arena,
                    ) {
                        return;
                    }
                } else {
                    self.fill(&mut bufs, img, si, arena);
                    if let Some(pad) = &step.pad {
                        // SAFETY: slot 1 of a step with padding is its scratch buffer, sized
                        // by the planner for `pad`; the source holds `c*h*w` values.
                        unsafe { pad_copy(self.src_ptr(img, pad, arena), bufs[1], pad, 0, pad.c) };
                    }
                    // SAFETY: the buffer table matches the kernel's spec (built together).
                    unsafe { (self.fns[step.kernel])(bufs.as_ptr(), 0, step.spec.items() as u64) };
                }
                if let Some(times) = times.as_deref_mut() {
                    times[si] += start.elapsed().as_secs_f64();
                }
            }
        }
    }

    /// Publishes a job, takes part in it, and waits until all its items are done.
    fn job(&self, sh: &Shared, job: Job, arena: P) -> bool {
        match sh.job.lock() {
            Ok(mut j) => *j = job,
            Err(_) => return false,
        }
        sh.done.store(0, Ordering::Relaxed);
        sh.work.store(job.seq << ITEM_BITS, Ordering::Release);
        let mut bufs = Vec::new();
        self.claim(sh, job, arena, &mut bufs);
        let items = job.items;
        let mut spins = 0u32;
        while sh.done.load(Ordering::Acquire) < items {
            if sh.failed.load(Ordering::Acquire) {
                return false;
            }
            spins += 1;
            if spins < 1 << 12 {
                spin_loop()
            } else {
                std::thread::yield_now()
            }
        }
        true
    }

    /// Claims and runs chunks of `job` until none is left (or another job is current).
    fn claim(&self, sh: &Shared, job: Job, arena: P, bufs: &mut Vec<*mut f32>) {
        let Job {
            seq,
            img,
            step: si,
            phase,
            items,
            chunk,
        } = job;
        let step = &self.plan.steps[si];
        self.fill(bufs, img, si, arena);
        loop {
            let cur = sh.work.load(Ordering::Acquire);
            if cur >> ITEM_BITS != seq {
                return;
            }
            let a = (cur & ITEM_MASK) as usize;
            if a >= items {
                return;
            }
            let b = (a + chunk).min(items);
            if sh
                .work
                .compare_exchange_weak(
                    cur,
                    (seq << ITEM_BITS) | b as u64,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            if phase == 0 {
                if let Some(pad) = &step.pad {
                    // SAFETY: as in `main`; channels a..b are this thread's alone.
                    unsafe { pad_copy(self.src_ptr(img, pad, arena), bufs[1], pad, a, b) };
                }
            } else {
                // SAFETY: as in `main`; items a..b are this thread's alone.
                unsafe { (self.fns[step.kernel])(bufs.as_ptr(), a as u64, b as u64) };
            }
            sh.done.fetch_add(b - a, Ordering::Release);
        }
    }

    fn worker(&self, sh: &Shared, arena: P) {
        let mut seen = 0u64;
        let mut bufs = Vec::new();
        let mut spins = 0u32;
        while !sh.quit.load(Ordering::Acquire) {
            let seq = sh.work.load(Ordering::Acquire) >> ITEM_BITS;
            if seq == seen {
                spins += 1;
                if spins < 1 << 14 {
                    spin_loop()
                } else {
                    std::thread::yield_now()
                }
                continue;
            }
            spins = 0;
            seen = seq;
            let job = match sh.job.lock() {
                Ok(j) => *j,
                Err(_) => return,
            };
            // The description may be of a newer job than `seq` (published next): `claim`
            // works under the description's own number, so it only ever runs items of the
            // job it describes, and only while that job is current.
            self.claim(sh, job, arena, &mut bufs);
        }
    }

    fn fill(&self, bufs: &mut Vec<*mut f32>, img: usize, si: usize, arena: P) {
        bufs.clear();
        bufs.extend(
            self.plan.steps[si]
                .args
                .iter()
                .map(|&a| self.resolve(img, si, a, arena)),
        );
    }

    fn src_ptr(&self, img: usize, pad: &PadCopy, arena: P) -> *const f32 {
        self.resolve(
            img,
            0,
            Arg::Value {
                node: pad.src,
                off: 0,
            },
            arena,
        )
    }

    fn resolve(&self, img: usize, step: usize, a: Arg, arena: P) -> *mut f32 {
        let plan = self.plan;
        let at = |base: P, len: usize, off: usize| base.0.wrapping_add(img * len + off);
        match a {
            Arg::Null => std::ptr::null_mut(),
            Arg::Scratch => arena.0.wrapping_add(plan.scratch[step]),
            Arg::Param(i) => plan.params[i].as_ptr().cast_mut(),
            Arg::Output(j) => at(self.outputs[j], out_len(plan, j), 0),
            Arg::Value { node, off } => match plan.loc[node] {
                Some(Loc::Input(i)) => at(self.inputs[i], in_len(plan, i), off),
                Some(Loc::Output(j)) => at(self.outputs[j], out_len(plan, j), off),
                Some(Loc::Arena(o)) => arena.0.wrapping_add(o + off),
                None => std::ptr::null_mut(),
            },
        }
    }
}

pub(crate) fn in_len(plan: &Plan, i: usize) -> usize {
    let [c, h, w] = plan.in_shapes[i];
    c * h * w
}

pub(crate) fn out_len(plan: &Plan, j: usize) -> usize {
    let [c, h, w] = plan.out_shapes[j];
    c * h * w
}

/// Copies channels `c0..c1` of `src` (`[c, h, w]`) into the zero-bordered, phase-split layout
/// of `p` at `dst`.
///
/// # Safety
/// `src` holds `p.c * p.h * p.w` floats and `dst` `p.len()` floats.
unsafe fn pad_copy(src: *const f32, dst: *mut f32, p: &PadCopy, c0: usize, c1: usize) {
    let rs = p.row_stride();
    for c in c0..c1 {
        // SAFETY (whole body): every index stays below the sizes in the contract: rows
        // `yp < hp` of `rs` floats per channel, columns `xp = x + pl < rs`.
        unsafe {
            let d = dst.add(c * p.chan_stride());
            for yp in 0..p.hp {
                let row = d.add(yp * rs);
                if yp < p.pt || yp >= p.pt + p.h {
                    std::ptr::write_bytes(row, 0, rs);
                    continue;
                }
                let s = src.add((c * p.h + yp - p.pt) * p.w);
                if p.sw == 1 {
                    std::ptr::write_bytes(row, 0, p.pl);
                    std::ptr::copy_nonoverlapping(s, row.add(p.pl), p.w);
                    std::ptr::write_bytes(row.add(p.pl + p.w), 0, rs - p.pl - p.w);
                } else {
                    std::ptr::write_bytes(row, 0, rs);
                    for x in 0..p.w {
                        let xp = x + p.pl;
                        *row.add((xp % p.sw) * p.wq + xp / p.sw) = *s.add(x);
                    }
                }
            }
        }
    }
}
