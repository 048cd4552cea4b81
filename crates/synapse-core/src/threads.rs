//! Splitting work across threads.
//!
//! [`parallel_for`] cuts its range into chunks (a [`Job`]) and hands the job to the
//! [`Executor`]: with the `native` feature a persistent pool of OS threads, without it
//! (WASM) the calling thread alone; [`set_executor`] installs another, e.g. one built on
//! Web Workers.
//!
//! The native pool's policy for concurrent callers (say two sessions on two OS threads):
//! each caller works on its own job, and the threads a job asks for are split evenly
//! between the callers active in the last millisecond, the rest of a job's share coming
//! from the shared workers, which help whichever posted job has a free seat. So on a
//! machine with `t` cores, `k` callers asking for `t` threads each get `t / k` (at least
//! their own), never oversubscribing the machine, while a lone caller gets all it asks
//! for. Workers spin briefly between jobs (a decode step runs hundreds of small matmuls,
//! so waking sleeping threads for each would cost more than the work), then park until
//! the next. Past 64 concurrent callers, the further ones run their jobs alone.
//!
//! A call made from inside a task (a nested call) runs serially on that thread, whatever
//! the executor. A panic in a task reaches the caller of `parallel_for` once every thread
//! has stopped working on the job.

use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Splits `0..n` into chunks of whole multiples of `align` items (the last may be shorter)
/// and calls `f` on each, on up to `threads` threads (the caller is one of them).
/// Returns when every chunk is done.
pub fn parallel_for(n: usize, threads: usize, align: usize, f: impl Fn(Range<usize>) + Sync) {
    run_on(executor(), n, threads, align, &f);
}

fn run_on(
    executor: &dyn Executor,
    n: usize,
    threads: usize,
    align: usize,
    f: &(dyn Fn(Range<usize>) + Sync),
) {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let threads = threads.clamp(1, units.max(1));
    if threads == 1 || IN_TASK.get() {
        f(0..n);
        return;
    }
    let job = Job::new(n, threads, align, f);
    executor.run(&job);
    let panic = job
        .panic
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(panic) = panic {
        std::panic::resume_unwind(panic);
    }
}

/// Splits `out` into `out.len() / unit_len` units of `unit_len` items and calls `f` with a
/// range of unit indices and the matching part of `out`, on up to `threads` threads.
pub fn parallel_chunks_mut<T: Send>(
    out: &mut [T],
    unit_len: usize,
    threads: usize,
    f: impl Fn(Range<usize>, &mut [T]) + Sync,
) {
    let unit_len = unit_len.max(1);
    let units = out.len() / unit_len;
    let base = SendPtr(out.as_mut_ptr());
    parallel_for(units, threads, 1, |range| {
        let base = base.get();
        // SAFETY: `parallel_for` hands out disjoint ranges of units, so the sub-slices are
        // disjoint, and all lie inside `out`, which outlives the call.
        let part = unsafe {
            std::slice::from_raw_parts_mut(base.add(range.start * unit_len), range.len() * unit_len)
        };
        f(range, part)
    });
}

struct SendPtr<T>(*mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used to hand disjoint sub-slices of a `&mut [T: Send]` to other threads.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: shared only so that each thread can make its own disjoint sub-slice of the
// `&mut [T: Send]`; no `&T` is shared between threads.
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// The number of threads to use by default: the executor's (for the native pool, the
/// machine's available parallelism).
pub fn default_threads() -> usize {
    executor().threads()
}

/// Chunks per thread: a few, so a thread slowed by the OS does not hold up the rest.
const CHUNKS_PER_THREAD: usize = 4;

thread_local! {
    /// Whether this thread is running a task, so that a nested call runs serially.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// One call of [`parallel_for`]: its task and the chunks of `0..n` not taken yet.
pub struct Job<'a> {
    task: &'a (dyn Fn(Range<usize>) + Sync),
    n: usize,
    chunk: usize,
    helpers: usize,
    next_chunk: AtomicUsize,
    /// The first panic of a task, resumed on the caller once the job is done.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl<'a> Job<'a> {
    fn new(
        n: usize,
        threads: usize,
        align: usize,
        task: &'a (dyn Fn(Range<usize>) + Sync),
    ) -> Self {
        let units = n.div_ceil(align);
        let chunk = units.div_ceil(threads * CHUNKS_PER_THREAD).max(1) * align;
        Job {
            task,
            n,
            chunk,
            helpers: threads - 1,
            next_chunk: AtomicUsize::new(0),
            panic: Mutex::new(None),
        }
    }

    /// How many threads besides the caller's may work on the job.
    pub fn helpers(&self) -> usize {
        self.helpers
    }

    /// Runs chunks until none is left. Any number of threads may call it at once. A task
    /// that panics ends this thread's share; the panic is kept for the caller.
    pub fn work(&self) {
        let outer = IN_TASK.replace(true);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let chunks = self.n.div_ceil(self.chunk);
            loop {
                let c = self.next_chunk.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                (self.task)(c * self.chunk..((c + 1) * self.chunk).min(self.n));
            }
        }));
        IN_TASK.set(outer);
        if let Err(panic) = run {
            let mut first = self.panic.lock().unwrap_or_else(PoisonError::into_inner);
            first.get_or_insert(panic);
        }
    }
}

/// Runs the jobs of [`parallel_for`] on threads: the native pool by default, or one
/// installed with [`set_executor`] (e.g. Web Workers sharing the wasm memory).
pub trait Executor: Send + Sync {
    /// How many threads callers use unless told otherwise ([`default_threads`]).
    fn threads(&self) -> usize;

    /// Calls [`Job::work`] on the calling thread and on up to [`Job::helpers`] other
    /// threads, and returns only once every one of those calls has returned (the job
    /// borrows the caller's stack). Panics in tasks are the job's to report.
    fn run(&self, job: &Job<'_>);
}

static INSTALLED: OnceLock<Box<dyn Executor>> = OnceLock::new();

/// Makes `executor` run every later [`parallel_for`] (jobs already running finish where
/// they are). Only the first one installed counts: later calls get theirs back.
pub fn set_executor(executor: Box<dyn Executor>) -> Result<(), Box<dyn Executor>> {
    INSTALLED.set(executor)
}

fn executor() -> &'static dyn Executor {
    match INSTALLED.get() {
        Some(installed) => installed.as_ref(),
        None => &DefaultExecutor,
    }
}

#[cfg(feature = "native")]
use pool::Native as DefaultExecutor;

/// Runs every job on the thread that calls (there are no others without `native`).
#[cfg(not(feature = "native"))]
struct DefaultExecutor;

#[cfg(not(feature = "native"))]
impl Executor for DefaultExecutor {
    fn threads(&self) -> usize {
        1
    }

    fn run(&self, job: &Job<'_>) {
        job.work();
    }
}

#[cfg(feature = "native")]
mod pool {
    use super::{Executor, Job};
    use std::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering::*,
    };
    use std::sync::{Mutex, OnceLock};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// How long an idle worker spins before it parks: long enough to bridge the gaps
    /// between the matmuls of a forward pass (a decode step runs hundreds), short enough
    /// not to burn a core between requests.
    const SPIN: Duration = Duration::from_micros(500);
    /// After this long, spinning threads also yield, so that on an oversubscribed machine
    /// they give way to the thread that has the work.
    const YIELD_AFTER: Duration = Duration::from_micros(50);
    /// Spins between looks at the clock.
    const SPINS_PER_CHECK: u32 = 64;
    /// Workers the pool can hold; a job gets at most this many helpers.
    const MAX_WORKERS: usize = 255;
    /// Callers that can share the workers at once; further ones run their jobs alone.
    const SLOTS: usize = 64;
    /// How long after its last call a caller still counts as active: longer than the
    /// gaps between the parallel calls of a forward pass.
    const ACTIVE_MICROS: u64 = 1000;

    /// A slot's `state` while helpers may join its job: `OPEN | seats << SEATS_SHIFT |
    /// joined`; 0 once closed. Seats and joined helpers fit in 8 bits (`MAX_WORKERS`).
    const OPEN: u32 = 1 << 31;
    const SEATS_SHIFT: u32 = 8;
    const COUNT: u32 = 0xFF;

    /// The native executor: the process-wide pool, started on first use.
    pub struct Native;

    impl Executor for Native {
        fn threads(&self) -> usize {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }

        fn run(&self, job: &Job<'_>) {
            let pool = pool();
            match DESK.try_with(|desk| desk.0) {
                Ok(Some(slot)) => pool.run(slot, job),
                // Every slot has a caller (or this thread is exiting).
                _ => job.work(),
            }
        }
    }

    /// A caller thread's own slot, released when the thread exits.
    struct Desk(Option<usize>);

    impl Drop for Desk {
        fn drop(&mut self) {
            if let Some(slot) = self.0 {
                pool().slots[slot].owned.store(false, Release);
            }
        }
    }

    thread_local! {
        static DESK: Desk = Desk(pool().claim_slot());
    }

    /// One caller's place: when it last called, and the job it posts to the workers. On
    /// its own cache line so that callers do not contend.
    #[repr(align(64))]
    struct Slot {
        /// Whether a caller thread owns the slot.
        owned: AtomicBool,
        /// When the owner last called, in `Pool::now` units.
        last_call: AtomicU64,
        state: AtomicU32,
        /// The owner's job. A helper may read it from joining until it counts itself in
        /// `left`: the owner waits for that before returning.
        job: AtomicPtr<Job<'static>>,
        /// Helpers that joined the job and are done with it.
        left: AtomicUsize,
    }

    struct Pool {
        start: Instant,
        slots: [Slot; SLOTS],
        /// How many slots workers look at: all that were ever owned.
        used: AtomicUsize,
        /// Bumped when a job is posted; idle workers wait for it to change.
        posted: AtomicUsize,
        /// Per worker: whether it is parked (or about to), and its handle for unparking.
        parked: [AtomicBool; MAX_WORKERS],
        handles: [OnceLock<Thread>; MAX_WORKERS],
        workers: Mutex<usize>,
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            start: Instant::now(),
            slots: std::array::from_fn(|_| Slot {
                owned: AtomicBool::new(false),
                last_call: AtomicU64::new(0),
                state: AtomicU32::new(0),
                job: AtomicPtr::new(std::ptr::null_mut()),
                left: AtomicUsize::new(0),
            }),
            used: AtomicUsize::new(0),
            posted: AtomicUsize::new(0),
            parked: std::array::from_fn(|_| AtomicBool::new(false)),
            handles: std::array::from_fn(|_| OnceLock::new()),
            workers: Mutex::new(0),
        })
    }

    /// Spins (then spins and yields) until `done`; false if `limit` ran out first.
    fn spin_until(mut done: impl FnMut() -> bool, limit: Option<Duration>) -> bool {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if done() {
                return true;
            }
            spins += 1;
            if spins.is_multiple_of(SPINS_PER_CHECK) {
                let elapsed = start.elapsed();
                if limit.is_some_and(|l| elapsed > l) {
                    return false;
                }
                if elapsed > YIELD_AFTER {
                    std::thread::yield_now();
                    continue;
                }
            }
            std::hint::spin_loop();
        }
    }

    impl Slot {
        /// Takes a seat at the slot's job if one is free, works on it, and leaves.
        fn help(&self) -> bool {
            let mut state = self.state.load(Relaxed);
            loop {
                let seats = state >> SEATS_SHIFT & COUNT;
                if state & OPEN == 0 || state & COUNT >= seats {
                    return false;
                }
                match self
                    .state
                    .compare_exchange_weak(state, state + 1, Acquire, Relaxed)
                {
                    Ok(_) => break,
                    Err(now) => state = now,
                }
            }
            // SAFETY: see `job`: this helper joined, and has not left yet.
            unsafe { (*self.job.load(Relaxed)).work() };
            self.left.fetch_add(1, Release);
            true
        }
    }

    impl Pool {
        /// Microseconds since the pool started.
        fn now(&self) -> u64 {
            self.start.elapsed().as_micros() as u64
        }

        fn claim_slot(&self) -> Option<usize> {
            let free = |slot: &Slot| slot.owned.compare_exchange(false, true, Acquire, Relaxed);
            let index = self.slots.iter().position(|slot| free(slot).is_ok())?;
            self.used.fetch_max(index + 1, Relaxed);
            Some(index)
        }

        /// The callers (this one included) that called within the last `ACTIVE_MICROS`.
        fn active_callers(&self, now: u64) -> usize {
            let used = &self.slots[..self.used.load(Relaxed)];
            let active = |slot: &&Slot| {
                slot.owned.load(Relaxed)
                    && now.saturating_sub(slot.last_call.load(Relaxed)) < ACTIVE_MICROS
            };
            used.iter().filter(active).count().max(1)
        }

        /// Runs `job` as the owner of slot `index`, with the workers' help: the threads
        /// it asks for are split evenly between the active callers.
        fn run(&'static self, index: usize, job: &Job<'_>) {
            let slot = &self.slots[index];
            let now = self.now();
            slot.last_call.store(now, Relaxed);
            let threads = (job.helpers() + 1) / self.active_callers(now);
            let helpers = threads.saturating_sub(1).min(MAX_WORKERS);
            if helpers == 0 {
                job.work();
                return;
            }
            self.ensure_workers(helpers);
            slot.left.store(0, Relaxed);
            // Lifetime erasure: the helpers are done with the job before `run` returns.
            slot.job
                .store((job as *const Job<'_>).cast_mut().cast(), Relaxed);
            slot.state
                .store(OPEN | (helpers as u32) << SEATS_SHIFT, Release);
            // Publishes the stores above to the workers that see the new count.
            self.posted.fetch_add(1, SeqCst);
            self.wake(helpers);

            job.work();
            // Closes the job to newcomers, then waits for the helpers that joined: they
            // may still be running their last chunks.
            let joined = (slot.state.swap(0, Acquire) & COUNT) as usize;
            spin_until(|| slot.left.load(Acquire) == joined, None);
        }

        /// Unparks up to `count` parked workers.
        fn wake(&self, count: usize) {
            let workers = self.parked.iter().zip(&self.handles);
            let started = workers.map_while(|(parked, handle)| Some((parked, handle.get()?)));
            for (_, thread) in started
                .filter(|(parked, _)| parked.load(SeqCst))
                .take(count)
            {
                thread.unpark();
            }
        }

        fn ensure_workers(&'static self, count: usize) {
            // Workers start in order, so the last one needed tells whether all are there.
            if self.handles[count - 1].get().is_some() {
                return;
            }
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            while *workers < count {
                let index = *workers;
                let thread = std::thread::Builder::new()
                    .name(format!("synapse-worker-{index}"))
                    .spawn(move || self.worker(index))
                    .expect("spawn a worker thread");
                let _ = self.handles[index].set(thread.thread().clone());
                *workers += 1;
            }
        }

        /// Helps posted jobs, taking the slots in turn so that concurrent callers share
        /// the workers; between jobs, waits for the next post.
        fn worker(&self, index: usize) {
            let mut next_slot = 0;
            loop {
                let seen = self.posted.load(Acquire);
                let used = self.used.load(Relaxed);
                let helped = (0..used)
                    .map(|k| (next_slot + k) % used)
                    .find(|&s| self.slots[s].help());
                match helped {
                    Some(s) => next_slot = s + 1,
                    None => self.wait_for_post(index, seen),
                }
            }
        }

        /// Waits until `posted` is no longer `seen`: spins, then parks.
        fn wait_for_post(&self, index: usize, seen: usize) {
            if spin_until(|| self.posted.load(Acquire) != seen, Some(SPIN)) {
                return;
            }
            // Flag first, then look: the caller posts first, then looks at the flag, so
            // (all SeqCst) one of the two sees the other.
            self.parked[index].store(true, SeqCst);
            while self.posted.load(SeqCst) == seen {
                std::thread::park();
            }
            self.parked[index].store(false, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    #[test]
    fn every_index_is_visited_exactly_once() {
        for (n, threads, align) in [(0, 2, 1), (1, 4, 1), (1000, 2, 4), (577, 3, 32), (64, 8, 1)] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            parallel_for(n, threads, align, |range| {
                assert!(range.start % align == 0);
                for i in range {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "n={n} threads={threads}"
            );
        }
    }

    #[test]
    fn parked_workers_wake_for_the_next_job() {
        // Another test may hold the pool (its jobs then run serially): try a few times.
        let woke = (0..100).filter(|_| {
            // Longer than the workers spin, so they park.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let ids = std::sync::Mutex::new(std::collections::HashSet::new());
            parallel_for(16, 3, 1, |_| {
                ids.lock().unwrap().insert(std::thread::current().id());
                std::thread::sleep(std::time::Duration::from_millis(2));
            });
            let n = ids.lock().unwrap().len();
            n > 1
        });
        assert!(woke.take(3).count() == 3, "no worker took part");
    }

    #[test]
    fn a_panicking_task_propagates_and_the_pool_recovers() {
        for panic_at in [0, 999] {
            let run = std::panic::catch_unwind(|| {
                parallel_for(1000, 2, 1, |r| assert!(!r.contains(&panic_at), "boom"));
            });
            assert!(run.is_err());
            let sum = AtomicUsize::new(0);
            parallel_for(1000, 2, 1, |r| {
                sum.fetch_add(r.len(), Ordering::Relaxed);
            });
            assert_eq!(sum.load(Ordering::Relaxed), 1000);
        }
    }

    /// Longer than any wait a loaded machine makes a test see.
    const PATIENCE: Duration = Duration::from_secs(60);

    /// Waits until `ready`, giving up (false) after `limit`.
    fn wait_for(ready: impl Fn() -> bool, limit: Duration) -> bool {
        let start = Instant::now();
        while !ready() {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    #[test]
    fn concurrent_callers_visit_every_index_once() {
        std::thread::scope(|s| {
            for caller in 0..4 {
                s.spawn(move || {
                    for round in 0..100 {
                        let n = 1000 + 37 * round;
                        let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                        parallel_for(n, 2 + caller % 2, 1 + round % 3, |range| {
                            for i in range {
                                hits[i].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));

                        let mut squares = vec![0usize; n];
                        parallel_chunks_mut(&mut squares, 1, 2, |range, part| {
                            for (i, out) in range.zip(part) {
                                *out = i * i + caller;
                            }
                        });
                        assert!(squares
                            .iter()
                            .enumerate()
                            .all(|(i, &x)| x == i * i + caller));
                    }
                });
            }
        });
    }

    #[test]
    fn concurrent_callers_both_get_helpers() {
        // The first caller holds its job open, inside a chunk on its own thread, until the
        // second job has had two threads at once: were the second caller left to run its
        // job alone, that would never happen.
        const THREADS: usize = 4;
        let first_holds_its_job = AtomicBool::new(false);
        let second_ran_in_parallel = AtomicBool::new(false);
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                let first_caller = std::thread::current().id();
                // A helper may take every chunk of a round: then try again.
                while !second_ran_in_parallel.load(Ordering::SeqCst) {
                    parallel_for(2, THREADS, 1, |_| {
                        if std::thread::current().id() == first_caller {
                            first_holds_its_job.store(true, Ordering::SeqCst);
                            let done = || second_ran_in_parallel.load(Ordering::SeqCst);
                            assert!(wait_for(done, PATIENCE));
                        }
                    });
                }
            });
            assert!(wait_for(
                || first_holds_its_job.load(Ordering::SeqCst),
                PATIENCE
            ));
            // The callers of other tests running at once may leave a round no helper:
            // then try again.
            while !second_ran_in_parallel.load(Ordering::SeqCst) {
                assert!(
                    start.elapsed() < PATIENCE,
                    "the second job never got a helper"
                );
                let inside = AtomicUsize::new(0);
                parallel_for(2, THREADS, 1, |_| {
                    inside.fetch_add(1, Ordering::SeqCst);
                    let both = || inside.load(Ordering::SeqCst) == 2;
                    if wait_for(both, Duration::from_millis(100)) {
                        second_ran_in_parallel.store(true, Ordering::SeqCst);
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }

    #[test]
    fn panics_propagate_under_concurrency() {
        std::thread::scope(|s| {
            s.spawn(|| {
                for panic_at in 0..50 {
                    let run = std::panic::catch_unwind(|| {
                        parallel_for(100, 4, 1, |r| assert!(!r.contains(&(panic_at * 2)), "boom"));
                    });
                    let payload = run.expect_err("the task panicked");
                    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
                }
            });
            s.spawn(|| {
                for _ in 0..200 {
                    let sum = AtomicUsize::new(0);
                    parallel_for(100, 2, 1, |r| {
                        sum.fetch_add(r.len(), Ordering::Relaxed);
                    });
                    assert_eq!(sum.load(Ordering::Relaxed), 100);
                }
            });
        });
    }

    #[test]
    fn nested_calls_run_on_the_task_thread() {
        let inner_total = AtomicUsize::new(0);
        parallel_for(8, 2, 1, |_| {
            let outer = std::thread::current().id();
            parallel_for(100, 4, 1, |r| {
                assert_eq!(std::thread::current().id(), outer);
                inner_total.fetch_add(r.len(), Ordering::Relaxed);
            });
        });
        assert_eq!(inner_total.load(Ordering::Relaxed), 800);
    }

    /// An executor of fresh scoped threads, standing in for one an embedder installs.
    struct ScopedThreads;

    impl Executor for ScopedThreads {
        fn threads(&self) -> usize {
            2
        }

        fn run(&self, job: &Job<'_>) {
            std::thread::scope(|s| {
                for _ in 0..job.helpers() {
                    s.spawn(|| job.work());
                }
                job.work();
            });
        }
    }

    #[test]
    fn a_custom_executor_runs_every_chunk_and_reports_panics() {
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        run_on(&ScopedThreads, 1000, 3, 8, &|range| {
            for i in range {
                hits[i].fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        let run =
            std::panic::catch_unwind(|| run_on(&ScopedThreads, 10, 2, 1, &|_| panic!("boom")));
        assert!(run.is_err());
    }
}
