//! Splitting work across threads. With the `native` feature, work runs on a persistent
//! pool whose workers spin briefly between jobs (a decode step runs hundreds of small
//! matmuls, so waking sleeping threads for each would cost more than the work), then park
//! until the next; without it (WASM) everything runs on the calling thread.

use std::ops::Range;

/// Splits `0..n` into chunks of whole multiples of `align` items (the last may be shorter)
/// and calls `f` on each, on up to `threads` threads (the caller is one of them).
/// Returns when every chunk is done.
pub fn parallel_for(n: usize, threads: usize, align: usize, f: impl Fn(Range<usize>) + Sync) {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let threads = threads.clamp(1, units.max(1));
    if threads == 1 {
        f(0..n);
        return;
    }
    #[cfg(feature = "native")]
    pool::run(n, threads, align, &f);
    #[cfg(not(feature = "native"))]
    f(0..n);
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
unsafe impl<T: Send> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// The number of threads to use by default: the machine's available parallelism.
pub fn default_threads() -> usize {
    #[cfg(feature = "native")]
    {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
    #[cfg(not(feature = "native"))]
    {
        1
    }
}

#[cfg(feature = "native")]
mod pool {
    use std::ops::Range;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
    use std::sync::{Mutex, OnceLock, TryLockError};
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
    /// Chunks per thread: a few, so a thread slowed by the OS does not hold up the rest.
    const CHUNKS_PER_THREAD: usize = 4;
    /// Workers the pool can hold (plus the calling thread).
    const MAX_WORKERS: usize = 255;

    type Task = dyn Fn(Range<usize>) + Sync;

    /// The job the workers are running. `task` points at the caller's closure; the caller
    /// does not return before every helper has finished with it.
    struct Job {
        task: *const Task,
        n: usize,
        chunk: usize,
    }

    struct Pool {
        /// Held by the thread that is submitting a job; others run theirs serially.
        submit: Mutex<()>,
        /// The generation of the current job (high 32 bits) and how many workers help
        /// with it (low 32 bits), published together so that a worker never has to read
        /// a job it is not part of (the submitter does not wait for those).
        posted: AtomicU64,
        job: AtomicPtr<Job>,
        next_chunk: AtomicUsize,
        pending: AtomicUsize,
        panicked: AtomicBool,
        /// Per worker: whether it is parked (or about to), and its handle for unparking.
        parked: [AtomicBool; MAX_WORKERS],
        handles: [OnceLock<Thread>; MAX_WORKERS],
        workers: Mutex<usize>,
    }

    fn generation(posted: u64) -> u32 {
        (posted >> 32) as u32
    }

    fn helpers(posted: u64) -> usize {
        posted as u32 as usize
    }

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            submit: Mutex::new(()),
            posted: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            next_chunk: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            parked: std::array::from_fn(|_| AtomicBool::new(false)),
            handles: std::array::from_fn(|_| OnceLock::new()),
            workers: Mutex::new(0),
        })
    }

    /// Spins (then spins and yields) until `done`; false if `SPIN` ran out first.
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

    impl Pool {
        fn ensure_workers(&'static self, count: usize) {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            while *workers < count {
                let index = *workers;
                // Read now, before the job that needs this worker is posted, so the new
                // thread cannot start late and mistake that job for one it has seen.
                let seen = generation(self.posted.load(SeqCst));
                let thread = std::thread::Builder::new()
                    .name(format!("synapse-worker-{index}"))
                    .spawn(move || self.worker(index, seen))
                    .expect("spawn a worker thread");
                let _ = self.handles[index].set(thread.thread().clone());
                *workers += 1;
            }
        }

        /// Runs chunks of the current job until none is left.
        fn work(&self, job: &Job) {
            let chunks = job.n.div_ceil(job.chunk);
            loop {
                let c = self.next_chunk.fetch_add(1, Relaxed);
                if c >= chunks {
                    break;
                }
                let range = c * job.chunk..((c + 1) * job.chunk).min(job.n);
                // SAFETY: see `Job`: the closure outlives the job.
                unsafe { (*job.task)(range) };
            }
        }

        /// Waits for a job newer than generation `seen`: spins, then parks.
        fn next_posted(&self, index: usize, seen: u32) -> u64 {
            let mut posted = 0;
            let fresh = |posted: &mut u64, order| {
                *posted = self.posted.load(order);
                generation(*posted) != seen
            };
            if spin_until(|| fresh(&mut posted, Acquire), Some(SPIN)) {
                return posted;
            }
            // Flag first, then look: the submitter publishes first, then looks at the
            // flag, so (all SeqCst) one of the two sees the other.
            self.parked[index].store(true, SeqCst);
            while !fresh(&mut posted, SeqCst) {
                std::thread::park();
            }
            self.parked[index].store(false, Relaxed);
            posted
        }

        fn worker(&self, index: usize, mut seen: u32) {
            loop {
                let posted = self.next_posted(index, seen);
                seen = generation(posted);
                if index >= helpers(posted) {
                    continue;
                }
                // SAFETY: this worker is counted in `pending` for this job (a later job
                // cannot be posted until it is done with this one), and the submitter
                // keeps the job alive until `pending` reaches zero.
                let job = unsafe { &*self.job.load(Acquire) };
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(job)));
                if run.is_err() {
                    self.panicked.store(true, SeqCst);
                }
                self.pending.fetch_sub(1, Release);
            }
        }
    }

    pub fn run(n: usize, threads: usize, align: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        let pool = pool();
        // Another thread owns the pool (e.g. two sessions at once), or this is a nested
        // call from inside a job: run here, serially.
        let _submitting = match pool.submit.try_lock() {
            Ok(guard) => guard,
            // A job that panicked poisons the lock, but leaves the pool sound.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                f(0..n);
                return;
            }
        };
        let helpers = (threads - 1).min(MAX_WORKERS);
        pool.ensure_workers(helpers);
        let units = n.div_ceil(align);
        let chunk = units.div_ceil((helpers + 1) * CHUNKS_PER_THREAD).max(1) * align;
        // SAFETY (lifetime erasure): `run` waits below until every helper is done with
        // the closure, so the 'static it is given here is never relied on.
        let task: *const Task = unsafe {
            std::mem::transmute::<*const (dyn Fn(Range<usize>) + Sync + '_), *const Task>(f)
        };
        let job = Job { task, n, chunk };
        pool.next_chunk.store(0, Relaxed);
        pool.pending.store(helpers, Relaxed);
        pool.job.store(&job as *const Job as *mut Job, Relaxed);
        let next = generation(pool.posted.load(Relaxed)).wrapping_add(1);
        // Publishes the stores above to the workers that see the new generation.
        pool.posted
            .store((next as u64) << 32 | helpers as u64, SeqCst);
        for (parked, handle) in pool.parked.iter().zip(&pool.handles).take(helpers) {
            if parked.load(SeqCst) {
                if let Some(thread) = handle.get() {
                    thread.unpark();
                }
            }
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.work(&job)));
        // The helpers must be done with `job` and `f` before either goes away, panic or not.
        spin_until(|| pool.pending.load(Acquire) == 0, None);
        if let Err(panic) = mine {
            std::panic::resume_unwind(panic);
        }
        if pool.panicked.swap(false, SeqCst) {
            panic!("a worker thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parallel_for;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    #[test]
    fn concurrent_callers_all_complete() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        parallel_for(100, 2, 1, |r| {
                            sum.fetch_add(r.len(), Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 100);
                    }
                });
            }
        });
    }
}
