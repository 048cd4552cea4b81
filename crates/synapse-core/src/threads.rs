//! Splitting work across threads. With the `native` feature, work runs on a persistent
//! pool whose workers spin briefly between jobs (a decode step runs hundreds of small
//! matmuls, so waking sleeping threads for each would cost more than the work); without
//! it (WASM) everything runs on the calling thread.

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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
    use std::sync::{Condvar, Mutex, OnceLock};

    /// Spins before a worker sleeps: long enough to bridge the gaps between the matmuls of
    /// one forward pass, short enough not to burn a core between requests.
    const SPINS_BEFORE_SLEEP: u32 = 1 << 16;
    /// Chunks per thread: a few, so a thread slowed by the OS does not hold up the rest.
    const CHUNKS_PER_THREAD: usize = 4;

    type Task = dyn Fn(Range<usize>) + Sync;

    /// The job the workers are running. `task` points at the caller's closure; the caller
    /// does not return before every worker has finished with it.
    struct Job {
        task: *const Task,
        n: usize,
        chunk: usize,
        helpers: usize,
    }

    struct Pool {
        /// Held by the thread that is submitting a job; others run theirs serially.
        submit: Mutex<()>,
        job: Mutex<Option<JobSlot>>,
        generation: AtomicUsize,
        next_chunk: AtomicUsize,
        pending: AtomicUsize,
        panicked: AtomicBool,
        sleepers: AtomicUsize,
        wake: Condvar,
        workers: Mutex<usize>,
    }

    #[derive(Clone, Copy)]
    struct JobSlot {
        job: *const Job,
        generation: usize,
    }
    // SAFETY: the pointer is only dereferenced while the submitting thread keeps the job
    // alive (it waits for `pending` to reach zero).
    unsafe impl Send for JobSlot {}

    fn pool() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| Pool {
            submit: Mutex::new(()),
            job: Mutex::new(None),
            generation: AtomicUsize::new(0),
            next_chunk: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            wake: Condvar::new(),
            workers: Mutex::new(0),
        })
    }

    impl Pool {
        fn ensure_workers(&'static self, count: usize) {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            while *workers < count {
                let index = *workers;
                // Read now, before the job that needs this worker is posted, so the new
                // thread cannot start late and mistake that job for one it has seen.
                let seen = self.generation.load(SeqCst);
                std::thread::Builder::new()
                    .name(format!("synapse-worker-{index}"))
                    .spawn(move || self.worker(index, seen))
                    .expect("spawn a worker thread");
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

        fn worker(&self, index: usize, mut seen: usize) {
            loop {
                let mut spins = 0;
                while self.generation.load(Acquire) == seen {
                    if spins < SPINS_BEFORE_SLEEP {
                        spins += 1;
                        std::hint::spin_loop();
                        continue;
                    }
                    let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
                    self.sleepers.fetch_add(1, SeqCst);
                    while self.generation.load(SeqCst) == seen {
                        slot = self.wake.wait(slot).unwrap_or_else(|e| e.into_inner());
                    }
                    self.sleepers.fetch_sub(1, SeqCst);
                }
                // Take the job and the generation it was posted with together, so a worker
                // that wakes late never runs a job twice.
                let slot = *self.job.lock().unwrap_or_else(|e| e.into_inner());
                let Some(JobSlot { job, generation }) = slot else {
                    seen = self.generation.load(Acquire);
                    continue;
                };
                if generation == seen {
                    continue;
                }
                seen = generation;
                // SAFETY: the submitter keeps the job alive until `pending` reaches zero,
                // and this worker is counted in `pending` when `index < helpers`.
                let job = unsafe { &*job };
                if index >= job.helpers {
                    continue;
                }
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work(job)));
                if run.is_err() {
                    self.panicked.store(true, SeqCst);
                }
                self.pending.fetch_sub(1, AcqRel);
            }
        }
    }

    pub fn run(n: usize, threads: usize, align: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
        let pool = pool();
        // Another thread owns the pool (e.g. two sessions at once): run here, serially.
        let Ok(_submitting) = pool.submit.try_lock() else {
            f(0..n);
            return;
        };
        let helpers = threads - 1;
        pool.ensure_workers(helpers);
        let units = n.div_ceil(align);
        let chunk = units.div_ceil(threads * CHUNKS_PER_THREAD).max(1) * align;
        // SAFETY (lifetime erasure): `run` waits below until every helper is done with
        // the closure, so the 'static it is given here is never relied on.
        let task: *const Task = unsafe {
            std::mem::transmute::<*const (dyn Fn(Range<usize>) + Sync + '_), *const Task>(f)
        };
        let job = Job {
            task,
            n,
            chunk,
            helpers,
        };
        pool.next_chunk.store(0, Relaxed);
        pool.pending.store(helpers, SeqCst);
        {
            let mut slot = pool.job.lock().unwrap_or_else(|e| e.into_inner());
            let generation = pool.generation.load(SeqCst) + 1;
            *slot = Some(JobSlot {
                job: &job,
                generation,
            });
            pool.generation.store(generation, SeqCst);
        }
        if pool.sleepers.load(SeqCst) > 0 {
            let _guard = pool.job.lock().unwrap_or_else(|e| e.into_inner());
            pool.wake.notify_all();
        }
        pool.work(&job);
        while pool.pending.load(Acquire) > 0 {
            std::hint::spin_loop();
        }
        *pool.job.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
