//! Continuous batching: one thread owns the engine and, step after step, runs one batched
//! forward pass over every active sequence (the next token of each running one, plus a
//! chunk of each new prompt), so that the weights are read once per step for all of them.
//! Finished sequences stay in the key/value memory as a prefix cache: a new request whose
//! prompt starts with a cached sequence's tokens takes it over (or forks a running one)
//! and evaluates only the rest; the least recently used go when memory runs short.

use crate::metrics::Metrics;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use synapse_inference::generation::{GenerateOptions, Generator, StopReason, TokenLogprob};
use synapse_inference::model::backend::Backend;
use synapse_inference::{Batch, Engine, Error, Logits, SeqId};
use tokio::sync::mpsc::UnboundedSender;

/// A generation request, tokenized and checked against the context by the HTTP layer.
pub struct Job {
    pub prompt: Vec<u32>,
    pub opts: GenerateOptions,
    pub events: UnboundedSender<Event>,
    pub queued: Instant,
}

/// What a job's HTTP handler hears, in order: pieces, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    /// A generated token's text (possibly empty while held back) and logprobs if asked.
    Token {
        text: String,
        logprobs: Option<TokenLogprob>,
    },
    /// Text released at the end that belongs to no new token.
    Text(String),
    Done(Finish),
    /// The job could not run: a status code and a message.
    Failed(u16, String),
}

#[derive(Debug, Clone, Copy)]
pub struct Finish {
    pub reason: StopReason,
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the prefix cache, not evaluated again.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// A running sequence.
struct Slot<B: Backend> {
    seq: SeqId,
    generator: Generator<B>,
    /// Prompt tokens not evaluated yet.
    pending: Vec<u32>,
    /// The last sampled token, evaluated at the next step.
    next: Option<u32>,
    events: UnboundedSender<Event>,
    finish: Finish,
    first_token: bool,
    queued: Instant,
}

/// A finished sequence kept for its prefix.
struct Cached {
    seq: SeqId,
    last_used: u64,
}

pub struct Scheduler<B: Backend> {
    engine: Engine<B>,
    parallel: usize,
    /// Most finished sequences kept for their prefixes.
    cache_limit: usize,
    slots: Vec<Slot<B>>,
    cached: Vec<Cached>,
    clock: u64,
    jobs: Receiver<Job>,
    metrics: Arc<Metrics>,
    batch: Batch,
    logits: Vec<f32>,
}

impl<B: Backend> Scheduler<B> {
    pub fn new(
        engine: Engine<B>,
        parallel: usize,
        jobs: Receiver<Job>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Scheduler {
            engine,
            parallel: parallel.max(1),
            cache_limit: 4 * parallel.max(1),
            slots: Vec::new(),
            cached: Vec::new(),
            clock: 0,
            jobs,
            metrics,
            batch: Batch::new(),
            logits: Vec::new(),
        }
    }

    /// Serves jobs until every sender is gone.
    pub fn run(mut self) {
        loop {
            if !self.admit() {
                return;
            }
            self.drop_cancelled();
            if !self.slots.is_empty() {
                self.step_or_fail();
            }
            self.publish();
        }
    }

    /// Runs a step; a bug in it fails the requests of that step, not the server.
    fn step_or_fail(&mut self) {
        let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.step())) else {
            return;
        };
        let what = (panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        for slot in std::mem::take(&mut self.slots) {
            let _ = slot
                .events
                .send(Event::Failed(500, format!("internal error: {what}")));
            let _ = self.engine.remove_sequence(slot.seq);
        }
    }

    /// Takes queued jobs into free slots, waiting for one when nothing runs; false once
    /// the queue is closed and nothing runs.
    fn admit(&mut self) -> bool {
        while self.slots.len() < self.parallel {
            let job = match self.slots.is_empty() {
                true => match self.jobs.recv_timeout(Duration::from_millis(250)) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => return true,
                    Err(RecvTimeoutError::Disconnected) => return false,
                },
                false => match self.jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => return true,
                },
            };
            self.metrics.queued.fetch_sub(1, Relaxed);
            if job.events.is_closed() {
                continue;
            }
            self.start(job);
        }
        true
    }

    fn start(&mut self, job: Job) {
        let (seq, kept) = match self.place(&job.prompt) {
            Ok(placed) => placed,
            Err(e) => {
                let _ = job.events.send(Event::Failed(500, e.to_string()));
                return;
            }
        };
        self.metrics
            .prompt_tokens
            .fetch_add(job.prompt.len() as u64, Relaxed);
        self.metrics.cached_tokens.fetch_add(kept as u64, Relaxed);
        let generator = Generator::new(self.engine.model.clone(), &job.opts);
        self.slots.push(Slot {
            seq,
            generator,
            pending: job.prompt[kept..].to_vec(),
            next: None,
            events: job.events,
            finish: Finish {
                reason: StopReason::Length,
                prompt_tokens: job.prompt.len(),
                cached_tokens: kept,
                completion_tokens: 0,
            },
            first_token: true,
            queued: job.queued,
        });
    }

    /// A sequence for `prompt` and how many of its tokens it already holds: the cached
    /// sequence, or a fork of a running one, that shares the longest prefix with it (at
    /// least one token is left to evaluate, for its logits), else a new sequence.
    fn place(&mut self, prompt: &[u32]) -> Result<(SeqId, usize), Error> {
        let limit = prompt.len().saturating_sub(1);
        let shared = |tokens: &[u32]| {
            let n = tokens
                .iter()
                .zip(prompt)
                .take_while(|(a, b)| a == b)
                .count();
            n.min(limit)
        };
        let engine = &self.engine;
        let cached = (self.cached.iter().enumerate())
            .map(|(i, c)| (shared(engine.tokens(c.seq).unwrap_or_default()), i))
            .max();
        let running = (self.slots.iter())
            .map(|s| (shared(engine.tokens(s.seq).unwrap_or_default()), s.seq))
            .max_by_key(|&(n, _)| n);
        match (cached, running) {
            (Some((n, i)), r) if n > 0 && r.is_none_or(|(m, _)| n >= m) => {
                let seq = self.cached.swap_remove(i).seq;
                let kept = self.engine.truncate(seq, n)?;
                Ok((seq, kept))
            }
            (_, Some((m, running))) if m > 0 => {
                let seq = self.engine.fork(running)?;
                let kept = self.engine.truncate(seq, m)?;
                Ok((seq, kept))
            }
            _ => Ok((self.engine.add_sequence(), 0)),
        }
    }

    /// Ends the sequences whose client went away.
    fn drop_cancelled(&mut self) {
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].events.is_closed() {
                let slot = self.slots.swap_remove(i);
                self.metrics.cancelled.fetch_add(1, Relaxed);
                self.keep(slot.seq);
            } else {
                i += 1;
            }
        }
    }

    /// One batched forward pass over every slot, then a token for each that asked.
    fn step(&mut self) {
        let context = self.engine.options().context;
        let mut budget = self.engine.options().batch;
        // Sequences that filled their context end here.
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &self.slots[i];
            let full = slot.next.is_some()
                && self.engine.tokens(slot.seq).map_or(0, <[u32]>::len) >= context;
            if full {
                let slot = self.slots.swap_remove(i);
                self.finish(slot, StopReason::Length);
            } else {
                i += 1;
            }
        }
        // Running sequences first (one token each), then prompt chunks in the room left.
        // Per slot: whether it asks for logits, and how many prompt tokens it evaluates.
        self.batch.clear();
        let mut plan = vec![(false, 0); self.slots.len()];
        for (slot, plan) in self.slots.iter().zip(&mut plan) {
            if let Some(token) = slot.next {
                self.batch.add(slot.seq, &[token], Logits::Last);
                budget = budget.saturating_sub(1);
                *plan = (true, 0);
            }
        }
        for (slot, plan) in self.slots.iter().zip(&mut plan) {
            if slot.next.is_some() || budget == 0 {
                continue;
            }
            let n = slot.pending.len().min(budget);
            let last = n == slot.pending.len();
            let logits = if last { Logits::Last } else { Logits::None };
            self.batch.add(slot.seq, &slot.pending[..n], logits);
            budget -= n;
            *plan = (last, n);
        }
        // The batch fits one forward pass, so a failure leaves nothing evaluated.
        match self.eval() {
            Ok(()) => {}
            // Out of memory with nothing cached left to give: the newest sequence gives
            // way, and the others run at the next step.
            Err(e @ Error::KvMemoryFull { .. }) if self.slots.len() > 1 => {
                let slot = self.slots.pop().unwrap();
                let _ = slot.events.send(Event::Failed(503, e.to_string()));
                let _ = self.engine.remove_sequence(slot.seq);
                return;
            }
            Err(e) => {
                for slot in std::mem::take(&mut self.slots) {
                    let _ = slot.events.send(Event::Failed(500, e.to_string()));
                    let _ = self.engine.remove_sequence(slot.seq);
                }
                return;
            }
        }
        for (slot, &(_, evaluated)) in self.slots.iter_mut().zip(&plan) {
            slot.pending.drain(..evaluated);
        }
        let vocab = self.engine.model.config().vocab_size;
        let mut row = 0;
        let mut finished = Vec::new();
        for (i, (ask, _)) in plan.into_iter().enumerate() {
            if !ask {
                continue;
            }
            let logits = &self.logits[row * vocab..(row + 1) * vocab];
            row += 1;
            let slot = &mut self.slots[i];
            let history = self.engine.tokens(slot.seq).unwrap_or_default();
            let step = slot.generator.step(logits, history);
            if slot.first_token {
                slot.first_token = false;
                let waited = slot.queued.elapsed().as_secs_f64();
                self.metrics.first_token_seconds.observe(waited);
            }
            let ended = step.stop == Some(StopReason::Eos);
            if !ended {
                slot.finish.completion_tokens += 1;
                self.metrics.generated_tokens.fetch_add(1, Relaxed);
                let _ = slot.events.send(Event::Token {
                    text: step.text,
                    logprobs: step.logprobs,
                });
            } else if !step.text.is_empty() {
                let _ = slot.events.send(Event::Text(step.text));
            }
            match step.stop {
                Some(reason) => finished.push((i, reason)),
                None => slot.next = Some(step.token),
            }
        }
        // Highest index first (they were found in order), so that the others stay put.
        for (i, reason) in finished.into_iter().rev() {
            let slot = self.slots.swap_remove(i);
            self.finish(slot, reason);
        }
    }

    /// Evaluates the batch; when key/value memory runs short, gives up cached sequences,
    /// least recently used first, and then the newest running ones, and tries again.
    fn eval(&mut self) -> Result<(), Error> {
        loop {
            self.logits.clear();
            match self.engine.eval(&self.batch, &mut self.logits) {
                Err(Error::KvMemoryFull { .. }) if !self.cached.is_empty() => {
                    let lru = (0..self.cached.len())
                        .min_by_key(|&i| self.cached[i].last_used)
                        .unwrap();
                    let seq = self.cached.swap_remove(lru).seq;
                    self.engine.remove_sequence(seq)?;
                    self.metrics.evicted.fetch_add(1, Relaxed);
                }
                other => return other,
            }
        }
    }

    fn finish(&mut self, mut slot: Slot<B>, reason: StopReason) {
        let rest = slot.generator.finish();
        if !rest.is_empty() {
            let _ = slot.events.send(Event::Text(rest));
        }
        slot.finish.reason = reason;
        let _ = slot.events.send(Event::Done(slot.finish));
        self.metrics.completed.fetch_add(1, Relaxed);
        self.keep(slot.seq);
    }

    /// Keeps a finished sequence for its prefix (dropping the least recently used one
    /// past the limit).
    fn keep(&mut self, seq: SeqId) {
        self.clock += 1;
        self.cached.push(Cached {
            seq,
            last_used: self.clock,
        });
        if self.cached.len() > self.cache_limit {
            let lru = (0..self.cached.len())
                .min_by_key(|&i| self.cached[i].last_used)
                .unwrap();
            let seq = self.cached.swap_remove(lru).seq;
            let _ = self.engine.remove_sequence(seq);
        }
    }

    fn publish(&self) {
        self.metrics
            .busy_slots
            .store(self.slots.len() as u64, Relaxed);
        self.metrics
            .cached_sequences
            .store(self.cached.len() as u64, Relaxed);
        let kv = self.engine.kv_bytes_in_use() as u64;
        self.metrics.kv_bytes_in_use.store(kv, Relaxed);
        let allocated = self.engine.kv_allocated_bytes() as u64;
        self.metrics.kv_bytes_allocated.store(allocated, Relaxed);
    }
}
