//! The engine's threads in the threaded build: Web Workers that share the module's
//! memory, each blocked in [`helper_loop`], run the [`Job`]s of `parallel_for` beside
//! the engine's own worker (synapse-worker.js starts them after [`start_pool`]).
//!
//! Helpers spin a little between jobs, as the native pool's do (a decode step runs
//! hundreds of small ones, and waking a sleeping Worker costs more than most of them),
//! then sleep on a condition variable, which std builds on `memory.atomic.wait32`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use synapse_core::threads::{set_executor, Executor, Job};
use wasm_bindgen::prelude::*;

/// Looks at a counter this many times (a few hundred microseconds: longer than the gaps
/// between a forward pass's parallel loops) before sleeping.
const SPINS: u32 = 200_000;

struct Pool {
    helpers: usize,
    offer: Mutex<Offer>,
    /// Bumped with `Offer::epoch`, for helpers that spin without the lock.
    epoch: AtomicU32,
    /// `Offer::running`, for the caller that spins without the lock.
    running: AtomicU32,
    wake: Condvar,
    done: Condvar,
}

/// The job on offer to the helpers.
struct Offer {
    /// The job's address; it outlives the offer (see [`Pool::run`]).
    job: usize,
    /// Helpers that may still join it.
    seats: usize,
    /// Helpers working on it.
    running: usize,
    epoch: u32,
}

static POOL: OnceLock<&'static Pool> = OnceLock::new();

fn lock(offer: &Mutex<Offer>) -> std::sync::MutexGuard<'_, Offer> {
    offer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes `parallel_for` run on this thread and `helpers` Workers, which must each call
/// [`helper_loop`] next. Only the first call counts.
#[wasm_bindgen]
pub fn start_pool(helpers: usize) {
    POOL.get_or_init(|| {
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            helpers,
            offer: Mutex::new(Offer {
                job: 0,
                seats: 0,
                running: 0,
                epoch: 0,
            }),
            epoch: AtomicU32::new(0),
            running: AtomicU32::new(0),
            wake: Condvar::new(),
            done: Condvar::new(),
        }));
        // POOL is set once, so this is the only executor installed.
        let _ = set_executor(Box::new(PoolExecutor(pool)));
        pool
    });
}

/// A helper Worker's life: joins each job on offer, until the Worker is terminated.
#[wasm_bindgen]
pub fn helper_loop() {
    let pool = *POOL
        .get()
        .expect("start_pool runs before the helpers start");
    let mut seen = 0;
    loop {
        let mut spins = 0;
        while pool.epoch.load(Ordering::Acquire) == seen && spins < SPINS {
            spins += 1;
            std::hint::spin_loop();
        }
        let mut offer = lock(&pool.offer);
        while offer.epoch == seen {
            offer = pool
                .wake
                .wait(offer)
                .unwrap_or_else(PoisonError::into_inner);
        }
        seen = offer.epoch;
        if offer.seats == 0 {
            continue;
        }
        offer.seats -= 1;
        offer.running += 1;
        pool.running.store(offer.running as u32, Ordering::Release);
        let job = offer.job as *const Job<'static>;
        drop(offer);
        // SAFETY: the job stays alive until `running` is back to zero (see Pool::run).
        unsafe { &*job }.work();
        let mut offer = lock(&pool.offer);
        offer.running -= 1;
        pool.running.store(offer.running as u32, Ordering::Release);
        if offer.running == 0 {
            pool.done.notify_one();
        }
    }
}

struct PoolExecutor(&'static Pool);

impl Executor for PoolExecutor {
    fn threads(&self) -> usize {
        self.0.helpers + 1
    }

    fn run(&self, job: &Job<'_>) {
        let pool = self.0;
        {
            let mut offer = lock(&pool.offer);
            offer.job = job as *const Job<'_> as usize;
            offer.seats = job.helpers().min(pool.helpers);
            offer.epoch = offer.epoch.wrapping_add(1);
            pool.epoch.store(offer.epoch, Ordering::Release);
        }
        pool.wake.notify_all();
        job.work();
        // Close the offer and wait for the helpers that joined (the job lives on this
        // thread's stack): spinning first, since they are usually about done.
        let mut offer = lock(&pool.offer);
        offer.seats = 0;
        if offer.running > 0 {
            drop(offer);
            let mut spins = 0;
            while pool.running.load(Ordering::Acquire) > 0 && spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            }
            offer = lock(&pool.offer);
        }
        while offer.running > 0 {
            offer = pool
                .done
                .wait(offer)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
