//! Wall-clock timing where the platform has a clock (`std::time::Instant` panics on
//! wasm32-unknown-unknown, where timings read as zero).

pub struct Stopwatch {
    #[cfg(feature = "native")]
    start: std::time::Instant,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch {
            #[cfg(feature = "native")]
            start: std::time::Instant::now(),
        }
    }

    pub fn elapsed_ms(&self) -> f64 {
        #[cfg(feature = "native")]
        {
            self.start.elapsed().as_secs_f64() * 1000.0
        }
        #[cfg(not(feature = "native"))]
        {
            0.0
        }
    }
}
