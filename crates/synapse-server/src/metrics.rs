//! Counters and gauges for `GET /metrics`, in Prometheus' text format.

use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub evicted: AtomicU64,
    /// Jobs waiting for a slot.
    pub queued: AtomicU64,
    pub busy_slots: AtomicU64,
    pub cached_sequences: AtomicU64,
    pub kv_bytes_in_use: AtomicU64,
    pub kv_bytes_allocated: AtomicU64,
    pub first_token_seconds: Summary,
    /// The generated-token count and time of the last /metrics read, for its tok/s.
    last_read: Mutex<Option<(Instant, u64)>>,
}

/// A count and a sum, as a Prometheus summary without quantiles.
#[derive(Default)]
pub struct Summary {
    count: AtomicU64,
    /// Microseconds.
    sum: AtomicU64,
}

impl Summary {
    pub fn observe(&self, seconds: f64) {
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add((seconds * 1e6) as u64, Relaxed);
    }
}

impl Metrics {
    pub fn render(&self, slots: usize) -> String {
        let generated = self.generated_tokens.load(Relaxed);
        let tok_s = {
            let mut last = self.last_read.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let rate = last.map_or(0.0, |(t, n)| {
                let dt = now.duration_since(t).as_secs_f64();
                if dt > 0.0 {
                    (generated - n) as f64 / dt
                } else {
                    0.0
                }
            });
            *last = Some((now, generated));
            rate
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP synapse_{name} {help}\n# TYPE synapse_{name} {kind}"
            );
            let _ = writeln!(out, "synapse_{name} {value}");
        };
        let counters = [
            (
                "requests_total",
                &self.requests,
                "Generation requests received.",
            ),
            (
                "requests_rejected_total",
                &self.rejected,
                "Requests refused because the queue was full.",
            ),
            (
                "requests_completed_total",
                &self.completed,
                "Generations that ran to their end.",
            ),
            (
                "requests_cancelled_total",
                &self.cancelled,
                "Generations whose client went away.",
            ),
            (
                "prompt_tokens_total",
                &self.prompt_tokens,
                "Prompt tokens of admitted requests.",
            ),
            (
                "prompt_tokens_cached_total",
                &self.cached_tokens,
                "Prompt tokens taken from the prefix cache.",
            ),
            (
                "generated_tokens_total",
                &self.generated_tokens,
                "Tokens generated.",
            ),
            (
                "prefix_cache_evictions_total",
                &self.evicted,
                "Cached sequences dropped for memory.",
            ),
        ];
        for (name, value, help) in counters {
            metric(name, "counter", help, value.load(Relaxed).to_string());
        }
        let gauges = [
            ("queue_depth", &self.queued, "Requests waiting for a slot."),
            ("busy_slots", &self.busy_slots, "Sequences generating now."),
            (
                "cached_sequences",
                &self.cached_sequences,
                "Finished sequences kept for their prefixes.",
            ),
            (
                "kv_bytes_in_use",
                &self.kv_bytes_in_use,
                "Key/value memory that sequences hold.",
            ),
            (
                "kv_bytes_allocated",
                &self.kv_bytes_allocated,
                "Key/value memory allocated.",
            ),
        ];
        for (name, value, help) in gauges {
            metric(name, "gauge", help, value.load(Relaxed).to_string());
        }
        metric(
            "slots",
            "gauge",
            "Sequences that can generate at once.",
            slots.to_string(),
        );
        metric(
            "generated_tokens_per_second",
            "gauge",
            "Tokens generated per second since the previous read of /metrics.",
            format!("{tok_s:.3}"),
        );
        let s = &self.first_token_seconds;
        let _ = writeln!(
            out,
            "# HELP synapse_time_to_first_token_seconds From a request's arrival to its first token.\n\
             # TYPE synapse_time_to_first_token_seconds summary\n\
             synapse_time_to_first_token_seconds_sum {:.6}\n\
             synapse_time_to_first_token_seconds_count {}",
            s.sum.load(Relaxed) as f64 / 1e6,
            s.count.load(Relaxed)
        );
        out
    }
}
