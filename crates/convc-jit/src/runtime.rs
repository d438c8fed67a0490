//! Running a plan: per image, every step in order; each step's work items split across the
//! threads of a persistent pool (one per compiled network, started at its first parallel run),
//! which spin briefly between jobs and then sleep.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::buf::{GuardedBuf, Mem, PAGE};
use crate::plan::{Arg, Loc, PadCopy, Plan, Step};
use crate::spec::KernelSpec;

/// Claims of work items per thread in a step: more claims balance uneven threads better,
/// fewer cost fewer atomic claims.
const CLAIMS_PER_THREAD: usize = 8;
/// The same for a band step with a producer inside: it keeps the producer's rows between
/// consecutive bands of one claim, so bigger claims recompute fewer rows.
const CLAIMS_PER_THREAD_BAND: usize = 2;

/// How the items of a job are claimed: `chunk` items a claim, and from item `tail_from` on
/// (a claim before it stops there), `tail_chunk` items a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Claims {
    chunk: usize,
    tail_from: usize,
    tail_chunk: usize,
}

impl Claims {
    /// Claims of `chunk` items throughout.
    fn even(chunk: usize) -> Claims {
        Claims {
            chunk,
            tail_from: usize::MAX,
            tail_chunk: chunk,
        }
    }
    /// The end of the claim that starts at item `a` of `items`.
    #[cfg(test)]
    fn end(self, a: usize, items: usize) -> usize {
        let b = if a >= self.tail_from {
            a + self.tail_chunk.max(1)
        } else {
            (a + self.chunk.max(1)).min(self.tail_from)
        };
        b.min(items)
    }
    /// Claims before the tail.
    fn head(self, items: usize) -> usize {
        items.min(self.tail_from).div_ceil(self.chunk.max(1))
    }
    /// Claims of `items` in all.
    fn count(self, items: usize) -> usize {
        self.head(items)
            + items
                .saturating_sub(self.tail_from)
                .div_ceil(self.tail_chunk.max(1))
    }
    /// The items of claim `j`, in the items' order.
    fn nth(self, j: usize, items: usize) -> (usize, usize) {
        let head = self.head(items);
        let (a, b) = if j < head {
            let a = j * self.chunk.max(1);
            (a, (a + self.chunk.max(1)).min(self.tail_from))
        } else {
            let a = self.tail_from + (j - head) * self.tail_chunk.max(1);
            (a, a + self.tail_chunk.max(1))
        };
        (a, b.min(items))
    }
    /// The claim at position `p` of the order the threads take them in: the main thread from
    /// the front, the workers from the back ([`Shared`]). The tail's claims (shares of the
    /// bands that do not split evenly) sit in the middle, between the two halves of the rest,
    /// so that the two ends meet there: on 2 threads each takes half the whole bands and the
    /// tail is shared as it falls.
    fn at(self, p: usize, items: usize) -> (usize, usize) {
        let head = self.head(items);
        let tail = self.count(items) - head;
        let mid = head / 2;
        let j = if p < mid {
            p
        } else if p < mid + tail {
            head + (p - mid)
        } else {
            p - tail
        };
        self.nth(j, items)
    }
    /// These claims, or even ones few enough to count in [`END_BITS`] bits.
    fn fit(self, items: usize) -> Claims {
        if self.count(items) <= MAX_CLAIMS {
            self
        } else {
            Claims::even(items.div_ceil(MAX_CLAIMS))
        }
    }
}

/// How `step`'s `items` are claimed on `threads` threads: about [`CLAIMS_PER_THREAD`] claims
/// a thread. A band step with a producer inside keeps rows between consecutive bands of a
/// claim, so it takes bigger claims ([`CLAIMS_PER_THREAD_BAND`]). A Winograd step's items are
/// (band, channel group), groups fastest, and each thread transforms the input of every band
/// it touches: where there are bands enough for every thread, claims are whole bands, so that
/// each band's input is transformed once (claims of single items had both threads transform
/// every band: two threads ran resnet_block's layers only 1.3x faster than one). The bands
/// that do not share out evenly (the last `bands % threads`) are claimed a share of their
/// groups at a time, each thread transforming them again: whole, 3 bands on 2 threads went
/// 2 to 1 (inception_7x7's layers at 2 threads 1.5x faster than at 1 instead of about 1.8x).
/// A pointwise GEMM step's items are the same (band, channel group), each band's input packed
/// once per thread.
fn claim_items(step: &Step, items: usize, threads: usize) -> Claims {
    if let Some(t) = step.tile.as_ref().filter(|t| t.band_major()) {
        // Whole bands, so that two threads do not pad the same band.
        let unit = t.nb * t.band_rows(threads);
        let bands = items.div_ceil(unit);
        return Claims::even(unit * (bands / (threads * CLAIMS_PER_THREAD)).max(1));
    }
    let groups = match &step.spec {
        KernelSpec::Wino(w) => Some(w.groups()),
        KernelSpec::Gemm(g) => Some(g.groups()),
        _ => None,
    };
    if let Some(groups) = groups {
        let groups = groups.max(1);
        let bands = items / groups;
        let share = groups.div_ceil(threads);
        if bands >= threads {
            let whole = groups * (bands / (threads * CLAIMS_PER_THREAD)).max(1);
            let uneven = bands % threads;
            return Claims {
                chunk: whole,
                tail_from: if uneven > 0 && groups > 1 {
                    (bands - uneven) * groups
                } else {
                    usize::MAX
                },
                tail_chunk: share,
            };
        }
        // Fewer bands than threads: a share of each band's groups a claim, since every claim
        // transforms (or packs) its band again (claims of single items had 2 threads run a
        // one-band layer of 11 groups 1.1x slower than one thread: 11 transforms of it).
        return Claims::even(share);
    }
    let per = if step.band.as_ref().is_some_and(|b| b.pre.is_some()) {
        CLAIMS_PER_THREAD_BAND
    } else {
        CLAIMS_PER_THREAD
    };
    Claims::even((items / (threads * per)).max(1))
}

/// Nanoseconds a thread spends in each kernel of a band step, when profiling: each `lap(k)`
/// adds the time since the last lap to kernel `k`.
struct PartClock {
    last: Option<Instant>,
    ns: [u64; crate::plan::BAND_PARTS],
}

impl PartClock {
    fn new(on: bool) -> PartClock {
        PartClock {
            last: on.then(Instant::now),
            ns: [0; crate::plan::BAND_PARTS],
        }
    }
    fn on(&self) -> bool {
        self.last.is_some()
    }
    fn lap(&mut self, k: usize) {
        if let Some(t) = self.last.as_mut() {
            let now = Instant::now();
            self.ns[k] += now.duration_since(*t).as_nanos() as u64;
            *t = now;
        }
    }
}

/// The compiled kernels' ABI.
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut f32, u64, u64);

/// A raw pointer that may cross threads: every thread writes disjoint parts of the buffers.
#[derive(Clone, Copy)]
pub(crate) struct P(pub *mut f32);
// SAFETY: the pointers address buffers that outlive the run; threads write disjoint item
// ranges, and a job's results are published (Release/Acquire on `done`) before the next job.
unsafe impl Send for P {}
unsafe impl Sync for P {}

/// State shared by the main thread of a run and the pool's workers.
///
/// The main thread publishes a *job* (one parallel step, or its padding copy): it writes the
/// description into `job`, resets `done`, then stores the job's number in the high 32 bits of
/// `work`; the low 32 bits are the claims not yet taken, positions `front..back` of the order
/// of [`Claims::at`] ([`END_BITS`] bits each). The main thread claims from the front and the
/// workers from the back, each with a compare-exchange on `work`; each runs its claims and adds
/// their items to `done`, and the main thread waits for `done`. A worker that is late
/// (descheduled, asleep) finds the job over and costs nothing.
///
/// Taking the two ends keeps each thread on the same part of every step (the same bands, on
/// 2 threads), so the rows a step writes are read by the next one on the core that holds them,
/// while a thread that falls behind still has its claims taken from it. Claims from one
/// counter went to either thread: on an AMD Zen4 at 2 threads resnet_block's two Winograd
/// layers, each reading the rows the other wrote, ran 0.915 ms against 0.854 from the two ends
/// (one process each, alternating, median of 6).
///
/// A job's description points to the run's `Exec`. A worker registers in `active` before it
/// checks that the job is still current and reads the description; at the end of a run the
/// main thread publishes an empty job and waits until `active` is 0, so no worker touches an
/// `Exec` after its run.
struct Shared {
    work: AtomicU64,
    done: AtomicUsize,
    active: AtomicUsize,
    job: Mutex<Job>,
    quit: AtomicBool,
    failed: AtomicBool,
    /// Workers asleep on `wake` (their count is read without the lock to skip the notify).
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

/// Which part of a step a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The padding copy of the step's input (items are channels).
    Pad,
    /// The step's kernel (items are its work items).
    Kernel,
}

/// What a job runs.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// Its number (the high bits of `Shared::work` while it is current).
    seq: u64,
    /// The run's `Exec` (`None`: no job, the run is over).
    exec: Option<ExecPtr>,
    img: usize,
    step: usize,
    phase: Phase,
    items: usize,
    claims: Claims,
    /// Workers that take part (worker `i` does if `i < workers`).
    workers: usize,
}

/// The `Exec` of the run a job belongs to, as the workers reach it: a pointer with the
/// `Exec`'s lifetime erased, since the workers outlive every run. It stays valid while the job
/// is current: the main thread keeps its `Exec` alive until no worker is active (see
/// `Shared`).
#[derive(Clone, Copy, Debug)]
struct ExecPtr(*const ());

// SAFETY: as the integer it replaces: the workers only read the `Exec` through it, while its
// run is alive (see `ExecPtr`), each claiming items of its own.
unsafe impl Send for ExecPtr {}

impl ExecPtr {
    fn new(exec: &Exec<'_>) -> ExecPtr {
        ExecPtr((exec as *const Exec<'_>).cast())
    }

    /// The `Exec`.
    ///
    /// # Safety
    /// The run that published the job this pointer came from must still be alive.
    unsafe fn get<'a>(self) -> &'a Exec<'a> {
        // SAFETY: the caller's.
        unsafe { &*self.0.cast::<Exec<'a>>() }
    }
}

/// Bits of `Shared::work` below the job's number.
const ITEM_BITS: u32 = 32;
/// Bits of each end of the claims not yet taken (`front` above `back`).
const END_BITS: u32 = 16;
const END_MASK: u64 = (1 << END_BITS) - 1;
/// The most claims a job has ([`Claims::fit`]).
const MAX_CLAIMS: usize = END_MASK as usize;

/// `Shared::work` for job `seq` with claims `front..back` not yet taken.
fn work_word(seq: u64, front: usize, back: usize) -> u64 {
    (seq << ITEM_BITS) | ((front as u64) << END_BITS) | back as u64
}
/// How long an idle worker spins before it sleeps. Long enough to span the gaps inside a run
/// and between back-to-back runs: a worker that finished its claims while the main thread ran
/// its last one for 0.2 ms went to sleep, and waking it (a futex wake of an idle vCPU) cost
/// the next run most of its second thread. A 128 -> 128 3x3 layer at 28x28 ran 0.78-0.87 ms on
/// two threads against 0.83 on one (AMD Zen4 VM, where 2^15 spins of `pause` took about
/// 0.1 ms), and 0.46 ms with the workers spinning through the gaps. Counting spins instead
/// of time made the wait depend on the host's `pause` (about 10 cycles on Zen4, 140 on
/// recent Intel cores).
const SPIN_BEFORE_SLEEP: std::time::Duration = std::time::Duration::from_millis(2);
/// Spins between two looks at the clock while idle.
const SPINS_PER_CLOCK: u32 = 64;

/// Marks the run failed when its thread unwinds, so that nobody waits for it.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::Release);
        }
    }
}

/// The worker threads of one compiled network.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    /// Held for a whole run (runs of one network from several threads take turns), with the
    /// workers started so far and the last job number.
    state: Mutex<PoolState>,
}

struct PoolState {
    handles: Vec<JoinHandle<()>>,
    seq: u64,
}

impl Pool {
    pub fn new() -> Pool {
        Pool {
            shared: Arc::new(Shared {
                work: AtomicU64::new(0),
                done: AtomicUsize::new(0),
                active: AtomicUsize::new(0),
                job: Mutex::new(Job {
                    seq: 0,
                    exec: None,
                    img: 0,
                    step: 0,
                    phase: Phase::Kernel,
                    items: 0,
                    claims: Claims::even(1),
                    workers: 0,
                }),
                quit: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                sleepers: AtomicUsize::new(0),
                sleep: Mutex::new(()),
                wake: Condvar::new(),
            }),
            state: Mutex::new(PoolState {
                handles: Vec::new(),
                seq: 0,
            }),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.sleep.lock();
            self.shared.wake.notify_all();
        }
        if let Ok(mut st) = self.state.lock() {
            for h in st.handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

fn worker_loop(sh: &Shared, index: usize) {
    let _guard = FailOnPanic(sh);
    let mut seen = 0u64;
    let mut bufs = Vec::new();
    let mut spins = 0u32;
    let mut idle_since: Option<Instant> = None;
    // This thread's own scratch (row buffers of fused kernels).
    let mut scratch: Option<Mem> = None;
    loop {
        if sh.quit.load(Ordering::Acquire) {
            return;
        }
        let seq = sh.work.load(Ordering::Acquire) >> ITEM_BITS;
        if seq == seen {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(SPINS_PER_CLOCK) {
                spin_loop();
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < SPIN_BEFORE_SLEEP {
                spin_loop();
                continue;
            }
            // Sleep until a new job (or quit): registered before the check, so the main
            // thread, which stores `work` before it reads `sleepers`, either sees us or we
            // see its job.
            sh.sleepers.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut g) = sh.sleep.lock() {
                while sh.work.load(Ordering::SeqCst) >> ITEM_BITS == seen
                    && !sh.quit.load(Ordering::SeqCst)
                {
                    g = match sh.wake.wait(g) {
                        Ok(g) => g,
                        Err(_) => break,
                    };
                }
            }
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            (spins, idle_since) = (0, None);
            continue;
        }
        (spins, idle_since) = (0, None);
        seen = seq;
        sh.active.fetch_add(1, Ordering::SeqCst);
        if sh.work.load(Ordering::SeqCst) >> ITEM_BITS == seq {
            let job = match sh.job.lock() {
                Ok(j) => *j,
                Err(_) => {
                    sh.active.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
            };
            // The description may be of a newer job than `seq` (published since), but of the
            // same run: the run cannot end while we are registered in `active`. `claim`
            // works under the description's own number, so it only runs items of the job it
            // describes, and only while that job is current.
            if let Some(exec) = job.exec
                && index < job.workers
            {
                // SAFETY: `exec` points to the `Exec` of the current run, alive until the
                // main thread has seen `active` drop to 0 (see `Shared`).
                let exec = unsafe { exec.get() };
                let need = exec.plan.thread_scratch;
                if scratch.as_ref().is_none_or(|b: &Mem| b.len() < need) {
                    scratch = Mem::scratch(need, exec.plan.guard);
                }
                match scratch.as_mut() {
                    Some(t) => exec.claim(sh, job, false, &mut bufs, P(t.as_mut_ptr())),
                    None => sh.failed.store(true, Ordering::Release),
                }
            }
        }
        sh.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The main thread's view of the pool during a run.
struct RunCtx<'a> {
    sh: &'a Shared,
    seq: u64,
    workers: usize,
}

/// What a compiled network keeps between runs: the arena of intermediate values and the
/// calling thread's scratch (workers keep their own). Allocating and zeroing them per run cost
/// more than a small network's run (a 200 KB band buffer is an `mmap` and page faults).
pub(crate) struct Kept {
    pub arena: Mem,
    pub tscratch: Mem,
}

/// The arena of `plan`: plain, or in test mode the plan's pages with its guard pages.
fn arena_mem(plan: &Plan) -> Option<Mem> {
    let len = plan.arena_len;
    match plan.guard {
        None => crate::buf::AlignedBuf::zeroed(len).map(Mem::Plain),
        Some(_) => GuardedBuf::new((len * 4).div_ceil(PAGE), &plan.guard_pages)
            .map(|buf| Mem::Guarded { buf, off: 0, len }),
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
    /// The run's arena (set by `run`).
    pub arena: P,
    /// The calling thread's scratch (set by `run`).
    pub tscratch: P,
    /// When profiling, per step the nanoseconds every thread spent in each kernel of a band
    /// step ([`crate::plan::Band::parts`]); else empty.
    pub band_ns: Vec<[AtomicU64; crate::plan::BAND_PARTS]>,
}

impl Exec<'_> {
    fn parallel(&self, step: &Step) -> bool {
        self.threads > 1 && step.work_ns >= self.parallel_min_ns && step.items() >= 2
    }

    /// Runs every image; with `profile`, returns the wall time of each step (summed over images).
    ///
    /// The intermediate buffers live in `arena`, kept between runs (every value is written
    /// before it is read, padding borders included); a run that finds it taken by a concurrent
    /// run of the same network allocates its own.
    pub fn run(
        &mut self,
        pool: &Pool,
        arena: &Mutex<Option<Kept>>,
        profile: bool,
    ) -> Result<Vec<f64>, String> {
        let fresh = || -> Result<Kept, String> {
            let arena = arena_mem(self.plan).ok_or_else(|| {
                format!(
                    "not enough memory for the {} MB of intermediate buffers",
                    (self.plan.arena_len * 4) >> 20
                )
            })?;
            let tscratch = Mem::scratch(self.plan.thread_scratch, self.plan.guard)
                .ok_or("not enough memory for a row buffer")?;
            Ok(Kept { arena, tscratch })
        };
        let mut own = None;
        let mut kept = arena.try_lock().ok();
        let buf: &mut Kept = match kept.as_deref_mut() {
            Some(slot) => {
                if slot.is_none() {
                    *slot = Some(fresh()?);
                }
                slot.as_mut().ok_or("internal error: no arena")?
            }
            None => own.insert(fresh()?),
        };
        self.arena = P(buf.arena.as_mut_ptr());
        self.tscratch = P(buf.tscratch.as_mut_ptr());
        let any_parallel = self.plan.steps.iter().any(|s| self.parallel(s));
        let mut times = vec![0f64; self.plan.steps.len()];
        if !any_parallel {
            self.main(None, profile.then_some(&mut times));
            return Ok(times);
        }
        let sh = &*pool.shared;
        let mut st = pool
            .state
            .lock()
            .map_err(|_| "internal error: a worker thread failed".to_string())?;
        if sh.failed.load(Ordering::Acquire) {
            return Err("internal error: a worker thread failed".into());
        }
        while st.handles.len() < self.threads - 1 {
            let shared = Arc::clone(&pool.shared);
            let index = st.handles.len();
            let h = std::thread::Builder::new()
                .name(format!("convc-jit-{index}"))
                .spawn(move || worker_loop(&shared, index))
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            st.handles.push(h);
        }
        let mut ctx = RunCtx {
            sh,
            seq: st.seq,
            workers: self.threads - 1,
        };
        {
            let _guard = FailOnPanic(sh);
            self.main(Some(&mut ctx), profile.then_some(&mut times));
        }
        // End of the run: publish an empty job, then wait until no worker can still be
        // looking at this run's `Exec`.
        ctx.seq += 1;
        if let Ok(mut j) = sh.job.lock() {
            j.seq = ctx.seq;
            j.exec = None;
        }
        sh.work.store(ctx.seq << ITEM_BITS, Ordering::SeqCst);
        while sh.active.load(Ordering::SeqCst) != 0 {
            spin_loop();
        }
        st.seq = ctx.seq;
        drop(st);
        if sh.failed.load(Ordering::Acquire) {
            return Err("internal error: a worker thread failed".into());
        }
        Ok(times)
    }

    fn main(&self, mut ctx: Option<&mut RunCtx<'_>>, mut times: Option<&mut Vec<f64>>) {
        let mut bufs: Vec<*mut f32> = Vec::new();
        for img in 0..self.batch {
            for (si, step) in self.plan.steps.iter().enumerate() {
                let start = Instant::now();
                if let Some(z) = &step.zero {
                    // SAFETY: the planner sized the value's buffer for the padded layout `z`.
                    unsafe { zero_borders(self.src_ptr(img, z).cast_mut(), z) };
                }
                match ctx.as_deref_mut() {
                    Some(ctx) if self.parallel(step) => {
                        if let Some(pad) = step.pad.as_ref().filter(|_| step.pad_private.is_none())
                            && !self.job(ctx, img, si, Phase::Pad, pad.c, Claims::even(1))
                        {
                            return;
                        }
                        let items = step.items();
                        let claims = claim_items(step, items, self.threads);
                        if !self.job(ctx, img, si, Phase::Kernel, items, claims) {
                            return;
                        }
                    }
                    _ => {
                        self.fill(&mut bufs, img, si, self.tscratch);
                        self.pad_input(step, &mut bufs, img, self.tscratch);
                        self.kernel(step, &mut bufs, img, 0, step.items(), self.tscratch);
                    }
                }
                if let Some(times) = times.as_deref_mut() {
                    times[si] += start.elapsed().as_secs_f64();
                }
            }
        }
    }

    /// Publishes a job, takes part in it, and waits until all its items are done.
    fn job(
        &self,
        ctx: &mut RunCtx<'_>,
        img: usize,
        step: usize,
        phase: Phase,
        items: usize,
        claims: Claims,
    ) -> bool {
        let sh = ctx.sh;
        ctx.seq += 1;
        let claims = claims.fit(items);
        let job = Job {
            seq: ctx.seq,
            exec: Some(ExecPtr::new(self)),
            img,
            step,
            phase,
            items,
            claims,
            workers: ctx.workers,
        };
        match sh.job.lock() {
            Ok(mut j) => *j = job,
            Err(_) => return false,
        }
        sh.done.store(0, Ordering::Relaxed);
        let all = claims.count(items);
        sh.work.store(work_word(job.seq, 0, all), Ordering::SeqCst);
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = sh.sleep.lock();
            sh.wake.notify_all();
        }
        let mut bufs = Vec::new();
        self.claim(sh, job, true, &mut bufs, self.tscratch);
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

    /// Claims and runs chunks of `job` until none is left (or another job is current): from
    /// the front of the claims' order (`front`, the main thread) or from the back (`Shared`).
    fn claim(&self, sh: &Shared, job: Job, front: bool, bufs: &mut Vec<*mut f32>, tscratch: P) {
        let Job {
            seq,
            img,
            step: si,
            phase,
            items,
            claims,
            ..
        } = job;
        let step = &self.plan.steps[si];
        self.fill(bufs, img, si, tscratch);
        // A padded copy of the thread's own is written before its first item.
        let mut unpadded = phase == Phase::Kernel && step.pad_private.is_some();
        loop {
            let cur = sh.work.load(Ordering::Acquire);
            if cur >> ITEM_BITS != seq {
                return;
            }
            let (f, k) = (
                (cur >> END_BITS & END_MASK) as usize,
                (cur & END_MASK) as usize,
            );
            if f >= k {
                return;
            }
            let (p, next) = if front {
                (f, work_word(seq, f + 1, k))
            } else {
                (k - 1, work_word(seq, f, k - 1))
            };
            if sh
                .work
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            let (a, b) = claims.at(p, items);
            if phase == Phase::Pad {
                if let Some(pad) = &step.pad {
                    // SAFETY: as in `main`; channels a..b are this thread's alone.
                    unsafe { pad_copy(self.src_ptr(img, pad), bufs[1], pad, a, b) };
                }
            } else {
                if unpadded {
                    self.pad_input(step, bufs, img, tscratch);
                    unpadded = false;
                }
                self.kernel(step, bufs, img, a, b, tscratch);
            }
            sh.done.fetch_add(b - a, Ordering::Release);
        }
    }

    /// Writes `step`'s padded input (if it has one) into its scratch buffer, slot 1 of `bufs`;
    /// or, where the thread keeps its own copy (`Step::pad_private`), into `tscratch` at the
    /// planned offset, pointing slot 1 there.
    fn pad_input(&self, step: &Step, bufs: &mut [*mut f32], img: usize, tscratch: P) {
        let Some(pad) = &step.pad else {
            return;
        };
        if let Some(off) = step.pad_private {
            bufs[1] = tscratch.0.wrapping_add(off);
        }
        // SAFETY: slot 1 of a step with padding is its scratch buffer, sized by the planner for
        // `pad` (in the arena, or `pad.len()` floats from `off` in the thread's scratch, see
        // `plan::thread_scratch`); the source holds `c*h*w` values.
        unsafe { pad_copy(self.src_ptr(img, pad), bufs[1], pad, 0, pad.c) };
    }

    /// Runs items `a..b` of `step`'s kernel (`bufs` filled for it; items a..b are this
    /// thread's alone). With a per-band tile: band by band, each after padding the rows it
    /// reads into the thread's scratch.
    fn kernel(
        &self,
        step: &Step,
        bufs: &mut [*mut f32],
        img: usize,
        a: usize,
        b: usize,
        tscratch: P,
    ) {
        let f = self.fns[step.kernel];
        if let Some(band) = &step.band {
            // SAFETY: as below, and see `band`.
            unsafe { self.band(step, band, bufs, img, a, b, tscratch) };
            return;
        }
        match &step.tile {
            Some(t) if t.band_major() => {
                let src = self.src_ptr(img, &t.pad);
                // SAFETY: as in `tile_bands`.
                unsafe { self.tile_bands(f, t, src, bufs, (a, b), tscratch) };
            }
            _ => self.run_items(step, bufs, img, a, b, tscratch),
        }
    }

    /// Runs the kernel's own items `a..b` of `step` (block-major with a tile: a band is row
    /// groups of one block, padded before the kernel runs over it).
    fn run_items(
        &self,
        step: &Step,
        bufs: &mut [*mut f32],
        img: usize,
        a: usize,
        b: usize,
        tscratch: P,
    ) {
        let f = self.fns[step.kernel];
        let Some(t) = &step.tile else {
            // SAFETY: the buffer table matches the kernel's spec (built together).
            unsafe { f(bufs.as_ptr(), a as u64, b as u64) };
            return;
        };
        let src = self.src_ptr(img, &t.pad);
        let mut i = a;
        while i < b {
            // Item i = (group g, block, row group rg); a band: row groups of one block.
            let g = i / t.per_group;
            let rg = i % t.row_groups;
            let n = (b - i).min(t.row_groups - rg).min(t.band);
            // SAFETY: `n <= t.band` row groups of group `g`.
            bufs[1] = unsafe { pad_band(t, src, g, (rg, rg + n), tscratch) };
            // SAFETY: as above; every input row the items read is in the scratch.
            unsafe { f(bufs.as_ptr(), i as u64, (i + n) as u64) };
            i += n;
        }
    }

    /// Runs items `a..b` of a band-major tiled step (see `Tile::band_major`): item =
    /// (group, band of `t.band_rows` row groups, block, row group within the band). Each band
    /// is padded once, then the kernel runs over every block's rows of it (the kernel's items
    /// are block-major: block `blk`'s row group `rg` of group `g` is `g * per_group + blk *
    /// row_groups + rg`).
    ///
    /// # Safety
    /// `bufs` is the step's table, `src` its unpadded input, `tscratch` holds `t.len()` floats.
    unsafe fn tile_bands(
        &self,
        f: KernelFn,
        t: &crate::plan::Tile,
        src: *const f32,
        bufs: &mut [*mut f32],
        (a, b): (usize, usize),
        tscratch: P,
    ) {
        let eb = t.band_rows(self.threads);
        let unit = t.nb * eb;
        let mut i = a;
        while i < b {
            let (g, r) = (i / t.per_group, i % t.per_group);
            let rg0 = r / unit * eb;
            // The band's row groups (the last band may be short), and its first item.
            let len = eb.min(t.row_groups - rg0);
            let first = i - r % unit;
            let (lo, hi) = (i - first, b.min(first + t.nb * len) - first);
            let (b0, b1) = (lo / len, (hi - 1) / len);
            // Rows of the band the range reads: all of it, unless it lies within one block.
            let rows = if b0 == b1 {
                (rg0 + lo % len, rg0 + (hi - 1) % len + 1)
            } else {
                (rg0, rg0 + len)
            };
            // SAFETY: `len <= t.band` row groups of group `g`.
            bufs[1] = unsafe { pad_band(t, src, g, rows, tscratch) };
            for blk in b0..=b1 {
                let s = lo.max(blk * len) - blk * len;
                let e = hi.min((blk + 1) * len) - blk * len;
                let k = g * t.per_group + blk * t.row_groups + rg0;
                // SAFETY: rows `rg0 + s..rg0 + e` read only padded rows of the scratch.
                unsafe { f(bufs.as_ptr(), (k + s) as u64, (k + e) as u64) };
            }
            i = first + hi;
        }
    }

    /// Runs bands `a..b` of a band pair (`step`, whose table is `bufs`): per band, the
    /// depthwise kernel for the band's rows of every channel into the band buffer in the
    /// thread's scratch, then the pointwise kernel for the same rows reading it.
    ///
    /// # Safety
    /// `bufs` is `step`'s buffer table; `tscratch` holds `band.scratch_len()` floats.
    #[allow(clippy::too_many_arguments)]
    unsafe fn band(
        &self,
        step: &Step,
        band: &crate::plan::Band,
        bufs: &mut [*mut f32],
        img: usize,
        a: usize,
        b: usize,
        tscratch: P,
    ) {
        let (KernelSpec::Conv(sa), KernelSpec::Conv(sb)) = (&band.step.spec, &step.spec) else {
            return;
        };
        let f = self.fns[step.kernel];
        let mut abufs: Vec<*mut f32> = band
            .step
            .args
            .iter()
            .map(|&x| self.resolve(img, None, x))
            .collect();
        let buf = tscratch.0.wrapping_add(band.buf_off);
        let (rga, rgb) = (sa.row_groups(), sb.row_groups());
        let blocks_a = sa.groups * sa.nb();
        let blocks_b = sb.groups * sb.nb();
        // The producer of `a`'s input, if it runs here: its table, and the padded rows its tile
        // holds (`lo..hi`, none yet: the scratch is stale, so the tile starts all zeros).
        let pre = band.pre.as_deref();
        let mut pbufs: Vec<*mut f32> = pre.map_or_else(Vec::new, |p| {
            p.step
                .args
                .iter()
                .map(|&x| self.resolve(img, None, x))
                .collect()
        });
        let mut held: Option<(usize, usize)> = None;
        let mut clock = PartClock::new(!self.band_ns.is_empty());
        if let Some(p) = pre {
            // SAFETY: the tile is the first `lead + c * tile_rows * row_len` floats of the
            // scratch.
            unsafe {
                std::ptr::write_bytes(
                    tscratch.0,
                    0,
                    p.lead + p.pad.c * p.tile_rows * p.pad.row_len(),
                )
            };
        }
        for i in a..b {
            let y0 = i * band.rows;
            let y1 = (y0 + band.rows).min(band.oh);
            if let Some(p) = pre {
                // SAFETY: see `produce_rows`; the tile holds `tile_rows >= hi - lo` rows.
                held = Some(unsafe { self.produce_rows(p, &mut pbufs, held, y0, y1, tscratch) });
                // The depthwise kernel finds padded row `r` at `r * row_len` from its
                // pointer, or in a ring at row `r % tile_rows` of the tile itself.
                let lo = held.map_or(0, |h| h.0);
                abufs[1] = if p.ring {
                    tscratch.0.wrapping_add(p.lead)
                } else {
                    tscratch.0.wrapping_sub(lo * p.pad.row_len())
                };
            }
            clock.lap(0);
            // Both kernels add `oy * row` to the band's pointer: row y0 is its first.
            let at = buf.wrapping_sub(y0 * band.width);
            abufs[0] = at;
            let (r0, r1) = (y0 / sa.rows, y1.div_ceil(sa.rows).min(rga));
            if sa.row_major {
                // Row-major items (row group, block): the band's are consecutive.
                let (i0, i1) = (r0 * blocks_a, r1 * blocks_a);
                self.run_items(&band.step, &mut abufs, img, i0, i1, tscratch);
            } else {
                // Block-major (block, row group): the band's row groups of each block.
                for blk in 0..blocks_a {
                    self.run_items(
                        &band.step,
                        &mut abufs,
                        img,
                        blk * rga + r0,
                        blk * rga + r1,
                        tscratch,
                    );
                }
            }
            clock.lap(1);
            // `b`'s items are row-major (row group, block).
            bufs[1] = at;
            let (r0, r1) = (y0 / sb.rows, y1.div_ceil(sb.rows).min(rgb));
            // SAFETY: the band buffer holds rows y0..y1 of every channel `b` reads.
            unsafe {
                f(
                    bufs.as_ptr(),
                    (r0 * blocks_b) as u64,
                    (r1 * blocks_b) as u64,
                )
            };
            clock.lap(2);
        }
        if let Some(si) = clock.on().then(|| self.step_index(step)).flatten() {
            for (sum, ns) in self.band_ns[si].iter().zip(clock.ns) {
                sum.fetch_add(ns, Ordering::Relaxed);
            }
        }
    }

    /// The index of `step` in the plan.
    fn step_index(&self, step: &Step) -> Option<usize> {
        self.plan.steps.iter().position(|s| std::ptr::eq(s, step))
    }

    /// Makes the band tile (at the start of `tscratch`) hold the padded rows a band of output
    /// rows `y0..y1` reads: rows the previous band of this thread (`held`) also read stay (in
    /// a ring, [`crate::plan::Pre::ring`]) or move up, rows outside the input are zeros, and the
    /// producer computes the others (every channel). Returns the rows held.
    ///
    /// # Safety
    /// `pbufs` is the producer's table; the scratch holds the tile (`Pre`), whose padding
    /// columns are zero.
    unsafe fn produce_rows(
        &self,
        p: &crate::plan::Pre,
        pbufs: &mut [*mut f32],
        held: Option<(usize, usize)>,
        y0: usize,
        y1: usize,
        tscratch: P,
    ) -> (usize, usize) {
        let KernelSpec::Conv(sp) = &p.step.spec else {
            return (0, 0);
        };
        let pad = &p.pad;
        let rs = pad.row_len();
        let cs = p.tile_rows * rs;
        let lo = y0 * p.sh;
        let hi = (y1 - 1) * p.sh + p.span;
        let tile = tscratch.0.wrapping_add(p.lead);
        // The tile row of padded row `yp` (`lo <= yp < hi`).
        let at = |yp: usize| if p.ring { yp % p.tile_rows } else { yp - lo };
        let mut from = lo;
        if let Some((plo, phi)) = held
            && plo <= lo
            && lo < phi
        {
            if !p.ring {
                for c in 0..pad.c {
                    // SAFETY: rows `lo - plo .. phi - plo` of channel `c` move to rows `0 ..`;
                    // both ranges are inside the channel's `tile_rows` rows.
                    unsafe {
                        let ch = tile.add(c * cs);
                        std::ptr::copy(ch.add((lo - plo) * rs), ch, (phi - lo) * rs);
                    }
                }
            }
            from = phi;
        }
        // Rows outside the input: zeros (they may hold earlier rows).
        for yp in (from..hi).filter(|&yp| yp < pad.pt || yp >= pad.pt + pad.h) {
            for c in 0..pad.c {
                // SAFETY: tile row `at(yp) < tile_rows` of channel `c`.
                unsafe { std::ptr::write_bytes(tile.add(c * cs + at(yp) * rs), 0, rs) };
            }
        }
        // Rows inside: the producer's output rows `ya..yb` (row-major items, one row each).
        let ya = from.max(pad.pt) - pad.pt;
        let yb = hi.min(pad.pt + pad.h).saturating_sub(pad.pt);
        let blocks = (sp.groups * sp.nb()) as u64;
        let f = self.fns[p.step.kernel];
        if let Some(off) = p.stage {
            let stage = tscratch.0.wrapping_add(off);
            let split = crate::lanes::split_rows_fn(pad.sw);
            for y in ya..yb {
                // It writes row y of channel c at `c * w + y * w + x` from its pointer: the
                // stage's row of channel c at `c * w`.
                pbufs[0] = stage.wrapping_sub(y * pad.w);
                // SAFETY: the table is the producer's; row `y` lands in the stage (`c * w`
                // floats of the scratch at `off`, see `Pre::stage`).
                unsafe { f(pbufs.as_ptr(), y as u64 * blocks, (y as u64 + 1) * blocks) };
                let d = tile.wrapping_add(at(y + pad.pt) * rs);
                // SAFETY: the stage holds `w` floats a channel, `w` apart; tile row
                // `at(y + pt) < tile_rows` of each channel holds `rs` floats, `cs` apart.
                unsafe { split_rows(split, (stage, pad.w), (d, cs), pad.c, pad) };
            }
            return (lo, hi);
        }
        // One call for each run of rows on consecutive tile rows (two where a ring wraps).
        let mut y = ya;
        while y < yb {
            let t = at(y + pad.pt);
            let end = yb.min(y + p.tile_rows - t);
            // It writes row y of channel c at `c * cs + y * rs + x` from its pointer: row `y`
            // is padded row `y + pt`; rows `y..end` land on tile rows `t..`, column `pl + x`.
            pbufs[0] = tile.wrapping_add(t * rs + pad.pl).wrapping_sub(y * rs);
            // SAFETY: the table is the producer's; rows `y..end` land on tile rows
            // `t..t + end - y <= tile_rows`.
            unsafe { f(pbufs.as_ptr(), y as u64 * blocks, end as u64 * blocks) };
            y = end;
        }
        (lo, hi)
    }

    fn fill(&self, bufs: &mut Vec<*mut f32>, img: usize, si: usize, tscratch: P) {
        bufs.clear();
        bufs.extend(self.plan.steps[si].args.iter().map(|&a| match a {
            Arg::ThreadScratch => tscratch.0,
            Arg::ThreadScratchAt(off) => tscratch.0.wrapping_add(off),
            _ => self.resolve(img, Some(si), a),
        }));
    }

    fn src_ptr(&self, img: usize, pad: &PadCopy) -> *const f32 {
        self.resolve(
            img,
            None,
            Arg::Value {
                node: pad.src,
                off: 0,
            },
        )
    }

    /// The pointer of buffer-table entry `a` for image `img`, in step `step`'s table (`None`: a
    /// band's kernels, which have no scratch buffer of their own).
    fn resolve(&self, img: usize, step: Option<usize>, a: Arg) -> *mut f32 {
        let plan = self.plan;
        let arena = self.arena;
        let at = |base: P, len: usize, off: usize| base.0.wrapping_add(img * len + off);
        match a {
            Arg::Null | Arg::ThreadScratch | Arg::ThreadScratchAt(_) => std::ptr::null_mut(),
            Arg::Scratch => match step {
                Some(s) => arena.0.wrapping_add(plan.scratch[s]),
                None => std::ptr::null_mut(),
            },
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

/// Pads the input rows that row groups `rg0..rg1` (at most `t.band`) of group `g` read into
/// the thread's scratch (`cg` channels `rows_per_channel` rows apart), and returns the input
/// pointer the kernel takes for them: it adds `g * cg * chan_stride + oy * sh * row_stride`
/// to it, with the scratch's channel stride.
///
/// # Safety
/// `src` holds the input's `c * h * w` floats; the scratch `t.len()`.
unsafe fn pad_band(
    t: &crate::plan::Tile,
    src: *const f32,
    g: usize,
    (rg0, rg1): (usize, usize),
    tscratch: P,
) -> *mut f32 {
    let rs = t.pad.row_len();
    // Padded rows read: from the first output row's window to the last one's.
    let y_lo = rg0 * t.rows * t.sh;
    let last = (rg1 * t.rows).min(t.oh) - 1;
    let y_hi = last * t.sh + t.span;
    let tcs = t.rows_per_channel() * rs;
    for ci in 0..t.cg {
        // SAFETY: the scratch holds `cg` channels of `rows_per_channel >= y_hi - y_lo` rows.
        unsafe {
            pad_rows(
                src,
                tscratch.0.add(ci * tcs),
                &t.pad,
                g * t.cg + ci,
                y_lo,
                y_hi,
            )
        };
    }
    tscratch.0.wrapping_sub(g * t.cg * tcs + y_lo * rs)
}

/// Writes the padded rows `y_lo..y_hi` of channel `c` of `src` (`[c, h, w]`), in the layout
/// of `p`, to `dst` (row `y_lo` first).
///
/// # Safety
/// `src` holds `p.c * p.h * p.w` floats and `dst` `(y_hi - y_lo) * p.row_len()` floats.
pub(crate) unsafe fn pad_rows(
    src: *const f32,
    dst: *mut f32,
    p: &PadCopy,
    c: usize,
    y_lo: usize,
    y_hi: usize,
) {
    let split = crate::lanes::split_rows_fn(p.sw);
    // SAFETY: as this function's contract, rows `p.row_len()` floats apart.
    unsafe {
        pad_channel_rows(
            src.add(c * p.h * p.w),
            dst,
            p.row_len(),
            p,
            (y_lo, y_hi),
            split,
        )
    }
}

/// Writes the padded rows `y_lo..y_hi` of one channel (`chan`: its `h` rows of `w` floats) to
/// `dst`, `dst_rs` floats apart (row `y_lo` first): zeros above and below the input, the rows
/// inside in one call of `split` (the host's vectorised split of `p.sw` phases,
/// [`crate::lanes::split_rows_fn`]; one phase is a padded copy in whole vectors, masked only
/// at a row's ends), else row by row through [`copy_row`] or [`split_row`]. One call a band,
/// not a call a row, and whole vectors instead of 8-float moves: a 384-channel 14x14
/// depthwise layer 0.101 -> 0.063 ms with its other changes.
///
/// # Safety
/// `chan` holds `p.h * p.w` floats; `dst` holds `y_hi - y_lo` rows of `p.row_len() <= dst_rs`
/// floats, `dst_rs` apart.
unsafe fn pad_channel_rows(
    chan: *const f32,
    dst: *mut f32,
    dst_rs: usize,
    p: &PadCopy,
    (y_lo, y_hi): (usize, usize),
    split: Option<crate::lanes::SplitRowsFn>,
) {
    let rs = p.row_len();
    // The rows inside the input: `in_lo..in_hi`, perhaps none.
    let in_lo = y_lo.max(p.pt).min(y_hi);
    let in_hi = y_hi.min(p.pt + p.h).max(in_lo);
    // SAFETY (whole body): rows `yp - y_lo < y_hi - y_lo` of `dst`; source rows
    // `yp - pt < h` for `yp` in `in_lo..in_hi`.
    unsafe {
        for yp in (y_lo..in_lo).chain(in_hi..y_hi) {
            std::ptr::write_bytes(dst.add((yp - y_lo) * dst_rs), 0, rs);
        }
        let s = chan.add(in_lo.saturating_sub(p.pt) * p.w);
        let d = dst.add((in_lo - y_lo) * dst_rs);
        split_rows(split, (s, p.w), (d, dst_rs), in_hi - in_lo, p);
    }
}

/// Writes `rows` padded rows in the layout of `p`: row `r` of `src` (`p.w` floats, `src_rs`
/// apart) to `dst + r dst_rs` (`p.row_len()` floats), in one call of `split` (the host's
/// vectorised split, [`crate::lanes::split_rows_fn`] of `p.sw`), else row by row through
/// [`copy_row`] or [`split_row`].
///
/// # Safety
/// As above, for `r < rows`; source and destination do not overlap.
unsafe fn split_rows(
    split: Option<crate::lanes::SplitRowsFn>,
    (src, src_rs): (*const f32, usize),
    (dst, dst_rs): (*mut f32, usize),
    rows: usize,
    p: &PadCopy,
) {
    // SAFETY (whole body): as this function's contract.
    unsafe {
        match split {
            Some(f) if rows > 0 => f(src, src_rs, dst, dst_rs, rows, p.w, p.pl, p.wq, p.sw),
            _ => {
                for r in 0..rows {
                    let (s, d) = (src.add(r * src_rs), dst.add(r * dst_rs));
                    if p.sw == 1 {
                        copy_row(s, d, p.pl, p.w, p.row_len());
                    } else {
                        split_row(s, d, p);
                    }
                }
            }
        }
    }
}

/// Writes `pl` zeros, the `w` floats of `src`, then zeros up to `rs` floats, at `dst`. Rows
/// are short (a band of a 56-wide plane is 64 channels x 9 rows of 58 floats), so this copies
/// in registers rather than making three library calls per row (those were 7% of lowrank_conv).
///
/// # Safety
/// `src` holds `w` floats, `dst` `rs >= pl + w`; they do not overlap.
#[inline]
unsafe fn copy_row(src: *const f32, dst: *mut f32, pl: usize, w: usize, rs: usize) {
    type V = [f32; 8];
    // SAFETY (whole body): every index stays below `w` in `src` and `rs` in `dst`.
    unsafe {
        if w >= 512 {
            std::ptr::write_bytes(dst, 0, pl);
            std::ptr::copy_nonoverlapping(src, dst.add(pl), w);
            std::ptr::write_bytes(dst.add(pl + w), 0, rs - pl - w);
            return;
        }
        for i in 0..pl {
            *dst.add(i) = 0.0;
        }
        let d = dst.add(pl);
        let mut i = 0;
        while i + 8 <= w {
            d.add(i)
                .cast::<V>()
                .write_unaligned(src.add(i).cast::<V>().read_unaligned());
            i += 8;
        }
        while i < w {
            *d.add(i) = *src.add(i);
            i += 1;
        }
        for i in pl + w..rs {
            *dst.add(i) = 0.0;
        }
    }
}

/// Writes one padded row of `p.w` floats of `src` at `dst`, split into `p.sw` phases of `p.wq`
/// (padded column `xp` at `(xp % sw) * wq + xp / sw`), zeros where the column is padding: the
/// row zeroed, then phase by phase a strided copy, so no division or branch per value (two
/// divisions per value made a stride-2 depthwise layer's padding slower than its
/// arithmetic). The scalar form, for hosts without AVX2 ([`crate::lanes::split_rows_fn`]).
///
/// # Safety
/// `src` holds `p.w` floats and `dst` `p.sw * p.wq` floats.
unsafe fn split_row(src: *const f32, dst: *mut f32, p: &PadCopy) {
    // SAFETY: the row is `sw * wq` floats; below, `q * wq + i` with `i = (x + pl) / sw < wq`
    // for every source column `x < w` (the layout covers the padded width).
    unsafe { std::ptr::write_bytes(dst, 0, p.sw * p.wq) };
    for q in 0..p.sw {
        // The first source column of phase q: (x + pl) % sw == q.
        let mut x = (q + p.sw - p.pl % p.sw) % p.sw;
        let mut i = (x + p.pl) / p.sw;
        let d = unsafe { dst.add(q * p.wq) };
        while x < p.w {
            unsafe { *d.add(i) = *src.add(x) };
            x += p.sw;
            i += 1;
        }
    }
}

/// Zeroes the borders (padding rows and columns) of a buffer in the padded layout `p`: a
/// producer writes the inside (see `plan::pad_in_place`).
///
/// # Safety
/// `dst` holds `p.len()` floats.
unsafe fn zero_borders(dst: *mut f32, p: &PadCopy) {
    let rs = p.row_len();
    for c in 0..p.c {
        for yp in 0..p.hp {
            // SAFETY: rows `yp < hp` of `rs` floats of channel `c`, inside `p.len()` for either
            // layout; the inside columns are `pl..pl + w <= rs`.
            unsafe {
                let row = dst.add(c * p.chan_stride() + yp * p.row_stride());
                if yp < p.pt || yp >= p.pt + p.h {
                    std::ptr::write_bytes(row, 0, rs);
                } else {
                    for x in (0..p.pl).chain(p.pl + p.w..rs) {
                        *row.add(x) = 0.0;
                    }
                }
            }
        }
    }
    // SAFETY: the tail is the last `p.tail` floats of `p.len()`.
    unsafe { zero_tail(dst, p) };
}

/// Zeroes the tail of the padded layout `p` (`PadCopy::tail`).
///
/// # Safety
/// `dst` holds `p.len()` floats.
unsafe fn zero_tail(dst: *mut f32, p: &PadCopy) {
    // SAFETY: `p.len() - p.tail .. p.len()` is inside the buffer.
    unsafe { std::ptr::write_bytes(dst.add(p.len() - p.tail), 0, p.tail) };
}

/// Copies channels `c0..c1` of `src` (`[c, h, w]`) into the zero-bordered, phase-split layout
/// of `p` at `dst`.
///
/// # Safety
/// `src` holds `p.c * p.h * p.w` floats and `dst` `p.len()` floats.
unsafe fn pad_copy(src: *const f32, dst: *mut f32, p: &PadCopy, c0: usize, c1: usize) {
    let split = crate::lanes::split_rows_fn(p.sw);
    for c in c0..c1 {
        // SAFETY: channel `c`'s `hp` padded rows, `row_stride` apart from `c * chan_stride`,
        // are inside `p.len()` for either layout.
        unsafe {
            let (chan, d) = (src.add(c * p.h * p.w), dst.add(c * p.chan_stride()));
            pad_channel_rows(chan, d, p.row_stride(), p, (0, p.hp), split);
        }
    }
    if c1 == p.c {
        // SAFETY: `dst` holds `p.len()` floats.
        unsafe { zero_tail(dst, p) };
    }
}

#[cfg(test)]
mod tests {
    use super::{Claims, MAX_CLAIMS};

    /// The claims a job's items are taken in, in order.
    fn claims(c: Claims, items: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut a = 0;
        while a < items {
            let b = c.end(a, items);
            out.push((a, b));
            a = b;
        }
        out
    }

    /// Whole bands, then the uneven last band in shares; a claim never crosses into the tail,
    /// and none is empty.
    #[test]
    fn claims_take_whole_bands_then_shares_of_the_rest() {
        let tail = Claims {
            chunk: 4,
            tail_from: 8,
            tail_chunk: 2,
        };
        assert_eq!(claims(tail, 12), [(0, 4), (4, 8), (8, 10), (10, 12)]);
        let crossing = Claims {
            chunk: 6,
            tail_from: 8,
            tail_chunk: 3,
        };
        assert_eq!(claims(crossing, 13), [(0, 6), (6, 8), (8, 11), (11, 13)]);
        assert_eq!(claims(Claims::even(5), 12), [(0, 5), (5, 10), (10, 12)]);
        assert_eq!(claims(Claims::even(0), 2), [(0, 1), (1, 2)]);
    }

    /// `nth` numbers the same claims as `end` walks, and `at` orders each exactly once.
    #[test]
    fn claim_order_is_a_permutation_of_the_claims() {
        let cases = [
            (Claims::even(5), 12),
            (Claims::even(0), 3),
            (
                Claims {
                    chunk: 6,
                    tail_from: 8,
                    tail_chunk: 3,
                },
                13,
            ),
            (
                Claims {
                    chunk: 6,
                    tail_from: 36,
                    tail_chunk: 3,
                },
                42,
            ),
        ];
        for (c, items) in cases {
            let walked = claims(c, items);
            let n = c.count(items);
            assert_eq!(n, walked.len());
            assert_eq!((0..n).map(|j| c.nth(j, items)).collect::<Vec<_>>(), walked);
            let mut ordered: Vec<_> = (0..n).map(|p| c.at(p, items)).collect();
            ordered.sort();
            assert_eq!(ordered, walked);
        }
    }

    /// resnet_block's layers on 2 threads (7 bands of 6 groups): from the two ends of the order,
    /// taken in turn, each thread gets 3 whole bands and one share of the last.
    #[test]
    fn two_ends_split_whole_bands_and_share_the_tail() {
        let c = Claims {
            chunk: 6,
            tail_from: 36,
            tail_chunk: 3,
        };
        let n = c.count(42);
        let (mut f, mut k) = (0, n);
        let (mut main, mut worker) = (Vec::new(), Vec::new());
        while f < k {
            main.push(c.at(f, 42));
            f += 1;
            if f < k {
                k -= 1;
                worker.push(c.at(k, 42));
            }
        }
        assert_eq!(main, [(0, 6), (6, 12), (12, 18), (36, 39)]);
        assert_eq!(worker, [(30, 36), (24, 30), (18, 24), (39, 42)]);
    }

    /// Jobs with more claims than the counter holds take bigger ones.
    #[test]
    fn claims_fit_the_counter() {
        let items = 3 * MAX_CLAIMS;
        let c = Claims::even(1).fit(items);
        assert!(c.count(items) <= MAX_CLAIMS);
        assert_eq!(c.nth(c.count(items) - 1, items).1, items);
        assert_eq!(Claims::even(4).fit(100), Claims::even(4));
    }
}
