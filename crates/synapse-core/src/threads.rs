//! Splitting work across threads. With the `native` feature work runs on scoped OS
//! threads; without it (WASM) it runs on the calling thread.

use std::ops::Range;

/// Splits `0..n` into at most `threads` contiguous chunks of whole multiples of `align`
/// items (the last may be shorter) and calls `f` on each, in parallel where possible.
pub fn parallel_for(n: usize, threads: usize, align: usize, f: impl Fn(Range<usize>) + Sync) {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let threads = threads.clamp(1, units.max(1));
    if threads == 1 || !cfg!(feature = "native") {
        f(0..n);
        return;
    }
    let per = units.div_ceil(threads) * align;
    #[cfg(feature = "native")]
    std::thread::scope(|s| {
        let f = &f;
        let mut start = per.min(n);
        while start < n {
            let end = (start + per).min(n);
            s.spawn(move || f(start..end));
            start = end;
        }
        f(0..per.min(n));
    });
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
