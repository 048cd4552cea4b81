//! `synapse bench`: prompt-processing and generation throughput, measured the way
//! llama-bench measures it, plus a STREAM-like memory read bandwidth mode.
//!
//! Every repetition builds fresh sessions and times three things:
//! - prefill (`pp`): one `eval` of `P` synthetic tokens from an empty cache;
//! - decode after the prompt (`tg @ pp`): `G` single-token `eval`s right after that prefill;
//! - decode from a short context (`tg`): in a second fresh session, one untimed token, then
//!   `G` timed single-token `eval`s.
//!
//! With `--batch-sequences N`, each repetition also times the decode of `N` sequences side
//! by side (`tg xN`): one untimed token each, then `G` forward passes that each carry the
//! next token of every sequence; its rate counts all `N` sequences' tokens.
//!
//! With `--fork-tokens F`, each repetition also evaluates `F` new tokens in a fork of a
//! sequence holding the prompt (a second chat turn, a regenerated reply), timing that and
//! the key/value memory it adds, against the same `F` tokens evaluated from scratch after
//! the prompt.
//!
//! With `--sessions N`, N such sessions of the one loaded model run at once on N OS
//! threads (as a server or a Python program would), and their rates are also summed.
//!
//! The tokens are a fixed pseudo-random sequence of valid ids ([`synthetic_tokens`]), also
//! fed during decode instead of sampled ones (as llama-bench does), so only model time is
//! measured: no sampler, no argmax, no detokenization. `bench/llamacpp_bench.py` makes the
//! same sequence for llama.cpp.

use crate::{ModelArgs, OnModel};
use clap::Args;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use synapse_inference::kv_cache::KvType;
use synapse_inference::model::backend::Backend;
use synapse_inference::precision::PrecisionReport;
use synapse_inference::{Batch, Engine, Logits, Model, Session, SessionOptions};

pub use synapse_inference::bench::{synthetic_tokens, TOKEN_SEED};

#[derive(Args)]
#[command(
    after_help = "Threads default to the number of physical cores (as llama-bench), \
    the context to --prompt-tokens + --gen-tokens."
)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens evaluated from an empty cache (prefill)
    #[arg(long, short = 'p', default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens generated one at a time (decode)
    #[arg(long, short = 'n', default_value_t = 128)]
    gen_tokens: usize,
    /// Timed repetitions (one more warm-up run is discarded)
    #[arg(long, short = 'r', default_value_t = 5)]
    repetitions: usize,
    /// Sessions of the one loaded model run at once, each on its own OS thread with
    /// --threads threads; rates are reported per session and combined
    #[arg(long, default_value_t = 1)]
    sessions: usize,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// Measure memory read bandwidth instead of running a model
    #[arg(long)]
    memory_bandwidth: bool,
    /// Buffer size for --memory-bandwidth, in MiB (well above the last-level cache)
    #[arg(long, default_value_t = 1024)]
    buffer_mib: usize,
    /// Also time the decode of this many sequences side by side, one forward pass per
    /// step carrying a token of each (as a server batches its users)
    #[arg(long, default_value_t = 1)]
    batch_sequences: usize,
    /// Also time this many new tokens evaluated in a fork of a sequence that holds the
    /// prompt, against a fresh evaluation of the prompt and those tokens (0: off)
    #[arg(long, default_value_t = 0)]
    fork_tokens: usize,
}

pub fn bench(args: BenchArgs) -> Result<(), String> {
    if args.repetitions == 0 {
        return Err("--repetitions must be at least 1".into());
    }
    if args.sessions == 0 || (args.memory_bandwidth && args.sessions > 1) {
        return Err("--sessions must be at least 1 (and 1 with --memory-bandwidth)".into());
    }
    // As llama-bench: one thread per physical core unless told otherwise.
    let threads = args.model.threads.unwrap_or_else(physical_cores).max(1);
    if args.memory_bandwidth {
        memory_bandwidth(&args, threads)
    } else {
        model_bench(&args, threads)
    }
}

/// Per-run throughputs of one measurement, in tokens (or GB) per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (0 for a single run).
    pub stddev: f64,
}

impl Stats {
    /// Summarizes `runs`; `None` when there are none (or one is NaN).
    pub fn new(runs: Vec<f64>) -> Option<Stats> {
        if runs.is_empty() || runs.iter().any(|r| r.is_nan()) {
            return None;
        }
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            let ss: f64 = sorted.iter().map(|r| (r - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            mean,
            stddev,
            runs,
        })
    }

    fn spread_json(&self) -> serde_json::Value {
        json!({ "min": self.min, "max": self.max, "mean": self.mean, "stddev": self.stddev })
    }
}

/// Tokens per second for `tokens` done in `seconds`.
fn rate(tokens: usize, seconds: f64) -> f64 {
    tokens as f64 / seconds.max(1e-12)
}

/// One repetition's timings in seconds.
struct RunTimes {
    prefill: f64,
    decode_after_prompt: f64,
    decode: f64,
}

/// What each measurement runs: the model with its session options, and `tokens`, the
/// prompt (`p` tokens) followed by the tokens fed one at a time during decode.
struct Workload<'a, B: Backend> {
    model: &'a Arc<Model<B>>,
    opts: SessionOptions,
    tokens: &'a [u32],
    p: usize,
}

// Not derived: a derive would ask `B: Copy`.
impl<B: Backend> Clone for Workload<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B: Backend> Copy for Workload<'_, B> {}

impl<B: Backend> Workload<'_, B> {
    /// The prompt and the tokens fed after it.
    fn prompt_and_feed(&self) -> (&[u32], &[u32]) {
        self.tokens.split_at(self.p)
    }
}

/// An engine error as the bench reports it.
fn err(e: synapse_inference::Error) -> String {
    e.to_string()
}

/// Runs one repetition on fresh sessions.
fn run_once<B: Backend>(w: Workload<B>) -> Result<RunTimes, String> {
    let (model, opts) = (w.model, w.opts);
    let (prompt, feed) = w.prompt_and_feed();
    let mut logits = Vec::new();

    let mut session = Session::new(model.clone(), opts);
    let start = Instant::now();
    session.eval_into(prompt, false, &mut logits).map_err(err)?;
    let prefill = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for token in feed.chunks(1) {
        session.eval_into(token, false, &mut logits).map_err(err)?;
    }
    let decode_after_prompt = start.elapsed().as_secs_f64();

    let mut session = Session::new(model.clone(), opts);
    session
        .eval_into(&prompt[..1], false, &mut logits)
        .map_err(err)?;
    let start = Instant::now();
    for token in feed.chunks(1) {
        session.eval_into(token, false, &mut logits).map_err(err)?;
    }
    let decode = start.elapsed().as_secs_f64();
    std::hint::black_box(&logits);
    Ok(RunTimes {
        prefill,
        decode_after_prompt,
        decode,
    })
}

/// Seconds to decode the feed in each of `n` sequences side by side (see the module
/// docs).
fn batched_decode_once<B: Backend>(w: Workload<B>, n: usize) -> Result<f64, String> {
    let (prompt, feed) = w.prompt_and_feed();
    let p = w.p;
    let mut engine = Engine::new(
        w.model.clone(),
        SessionOptions {
            batch: w.opts.batch.max(n),
            ..w.opts
        },
    );
    let sequences: Vec<_> = (0..n).map(|_| engine.add_sequence()).collect();
    let (mut batch, mut logits) = (Batch::new(), Vec::new());
    for (i, &seq) in sequences.iter().enumerate() {
        batch.add(seq, &prompt[i % p..][..1], Logits::Last);
    }
    engine.eval(&batch, &mut logits).map_err(err)?;
    let start = Instant::now();
    for token in feed.chunks(1) {
        batch.clear();
        for &seq in &sequences {
            batch.add(seq, token, Logits::Last);
        }
        engine.eval(&batch, &mut logits).map_err(err)?;
    }
    std::hint::black_box(&logits);
    Ok(start.elapsed().as_secs_f64())
}

/// One repetition of the fork measurement (see the module docs).
struct ForkTimes {
    /// Seconds for the new tokens in the fork.
    fork: f64,
    /// Seconds for the prompt and the new tokens from an empty sequence.
    scratch: f64,
    /// Key/value bytes in use before and after the fork evaluated its tokens.
    bytes: (usize, usize),
}

/// The fork measurement with `f` new tokens.
fn fork_once<B: Backend>(w: Workload<B>, f: usize) -> Result<ForkTimes, String> {
    let (tokens, p) = (w.tokens, w.p);
    let (prompt, new) = (&tokens[..p], &tokens[p..p + f]);
    let mut engine = Engine::new(w.model.clone(), w.opts);
    let (parent, scratch) = (engine.add_sequence(), engine.add_sequence());
    let (mut batch, mut logits) = (Batch::new(), Vec::new());
    batch.add(parent, prompt, Logits::Last);
    engine.eval(&batch, &mut logits).map_err(err)?;
    let before = engine.kv_bytes_in_use();
    let start = Instant::now();
    let child = engine.fork(parent).map_err(err)?;
    batch.clear();
    batch.add(child, new, Logits::Last);
    engine.eval(&batch, &mut logits).map_err(err)?;
    let fork = start.elapsed().as_secs_f64();
    let after = engine.kv_bytes_in_use();
    batch.clear();
    batch.add(scratch, &tokens[..p + f], Logits::Last);
    let start = Instant::now();
    engine.eval(&batch, &mut logits).map_err(err)?;
    let scratch = start.elapsed().as_secs_f64();
    Ok(ForkTimes {
        fork,
        scratch,
        bytes: (before, after),
    })
}

/// Runs one repetition of `sessions` sessions at once, each on its own OS thread (the
/// first on this one). They start together and do the same work, so their prefills
/// overlap, and so do their decodes.
fn run_sessions<B: Backend>(w: Workload<B>, sessions: usize) -> Result<Vec<RunTimes>, String> {
    std::thread::scope(|s| {
        let others: Vec<_> = (1..sessions).map(|_| s.spawn(|| run_once(w))).collect();
        let mut times = vec![run_once(w)?];
        for other in others {
            times.push(other.join().map_err(|_| "a bench session panicked")??);
        }
        Ok(times)
    })
}

/// Prefill and decode rates over the repetitions, each repetition's rates summed over
/// the sessions given.
struct Rates {
    prefill: Stats,
    decode: Stats,
    after: Stats,
}

impl Rates {
    fn new<'a>(reps: impl Iterator<Item = &'a [RunTimes]> + Clone, p: usize, g: usize) -> Rates {
        let stats = |seconds: fn(&RunTimes) -> f64, n: usize| {
            let sums = reps
                .clone()
                .map(|runs| runs.iter().map(|t| rate(n, seconds(t))).sum());
            Stats::new(sums.collect()).expect("at least one run")
        };
        Rates {
            prefill: stats(|t| t.prefill, p),
            decode: stats(|t| t.decode, g),
            after: stats(|t| t.decode_after_prompt, g),
        }
    }

    fn medians_json(&self) -> serde_json::Value {
        json!({
            "prefill_tok_s": self.prefill.median,
            "decode_tok_s": self.decode.median,
            "decode_after_prompt_tok_s": self.after.median,
        })
    }
}

fn model_bench(args: &BenchArgs, threads: usize) -> Result<(), String> {
    let (p, g) = (args.prompt_tokens, args.gen_tokens);
    if p == 0 || g == 0 {
        return Err("--prompt-tokens and --gen-tokens must be at least 1".into());
    }
    let path = args.model.resolve_model()?;
    let model_bytes = file_bytes(&path)?;
    let load = Instant::now();
    args.model.run(ModelBench {
        args,
        threads,
        path,
        model_bytes,
        load,
    })
}

/// `model_bench` once its model is loaded, on whichever backend.
struct ModelBench<'a> {
    args: &'a BenchArgs,
    threads: usize,
    path: std::path::PathBuf,
    model_bytes: u64,
    load: Instant,
}

impl OnModel for ModelBench<'_> {
    type Output = ();
    fn run<B: Backend>(self, model: Arc<Model<B>>, kernel: &str) -> Result<(), String> {
        bench_model(self, &model, kernel)
    }
}

/// The measurements of `model_bench` on the loaded model, and their report.
fn bench_model<B: Backend>(
    job: ModelBench,
    model: &Arc<Model<B>>,
    kernel: &str,
) -> Result<(), String> {
    let ModelBench {
        args,
        threads,
        path,
        model_bytes,
        load,
    } = job;
    let (p, g) = (args.prompt_tokens, args.gen_tokens);
    let load_ms = load.elapsed().as_secs_f64() * 1000.0;

    let mut opts = args.model.session_options();
    opts.threads = threads;
    // As llama-bench: a context just large enough, unless --ctx-size says otherwise.
    if opts.context == 0 {
        opts.context = p + g;
    } else if opts.context < p + g {
        return Err(format!(
            "--ctx-size {} is smaller than --prompt-tokens + --gen-tokens ({})",
            opts.context,
            p + g
        ));
    }
    let opts = opts.resolve(model);
    let tokens = synthetic_tokens(p + g, model.config().vocab_size, TOKEN_SEED);
    let workload = Workload {
        model,
        opts,
        tokens: &tokens,
        p,
    };

    let total = args.repetitions + 1;
    let n_seq = args.batch_sequences;
    let mut times = Vec::with_capacity(args.repetitions);
    let mut batched_times = Vec::new();
    let f = args.fork_tokens;
    let mut fork_times = Vec::new();
    for i in 0..total {
        if !args.json {
            let what = if i == 0 {
                "warm-up".to_string()
            } else {
                format!("run {i}")
            };
            eprint!("\r[bench: {what} of {}]   ", args.repetitions);
        }
        let t = run_sessions(workload, args.sessions)?;
        let batched = match n_seq > 1 {
            true => Some(batched_decode_once(workload, n_seq)?),
            false => None,
        };
        let forked = match f > 0 {
            true => Some(fork_once(workload, f.min(g))?),
            false => None,
        };
        if i > 0 {
            times.push(t);
            batched_times.extend(batched);
            fork_times.extend(forked);
        }
    }
    if !args.json {
        eprint!("\r{:40}\r", "");
    }

    let per_session: Vec<Rates> = (0..args.sessions)
        .map(|i| Rates::new(times.iter().map(|rep| std::slice::from_ref(&rep[i])), p, g))
        .collect();
    let Rates {
        prefill,
        decode,
        after,
    } = Rates::new(times.iter().map(Vec::as_slice), p, g);
    let batched = Stats::new(batched_times.iter().map(|&t| rate(n_seq * g, t)).collect());
    let f = f.min(g);
    let fork_ms = Stats::new(fork_times.iter().map(|t| t.fork * 1e3).collect());
    let scratch_ms = Stats::new(fork_times.iter().map(|t| t.scratch * 1e3).collect());
    let fork_bytes = fork_times.first().map(|t| t.bytes);

    let c = model.config();
    let weight_bytes_per_token = model.weight_bytes_per_token();
    let kv_type = opts.kv_type.expect("resolved");
    let precision = PrecisionReport::new(opts.precision, kv_type, model.matmul_types());
    let kv_element = match kv_type {
        KvType::F32 => 4,
        KvType::F16 => 2,
    };
    let kv_bytes_per_position = (c.n_layers * c.kv_dim() * 2 * kv_element) as u64;
    let peak_rss = crate::memory::peak_rss_bytes();

    if args.json {
        let report = json!({
            "engine": "synapse",
            "model": path.display().to_string(),
            "model_bytes": model_bytes,
            "kernel": kernel,
            "precision": precision,
            "threads": threads,
            "sessions": args.sessions,
            "prompt_tokens": p,
            "gen_tokens": g,
            "repetitions": args.repetitions,
            "warmup_runs": 1,
            "context": opts.context,
            "batch": opts.batch,
            "token_seed": TOKEN_SEED,
            "load_ms": load_ms,
            "prefill_tok_s": prefill.median,
            "decode_tok_s": decode.median,
            "decode_after_prompt_tok_s": after.median,
            "prefill_runs": prefill.runs,
            "decode_runs": decode.runs,
            "decode_after_prompt_runs": after.runs,
            "spread": {
                "prefill": prefill.spread_json(),
                "decode": decode.spread_json(),
                "decode_after_prompt": after.spread_json(),
            },
            "per_session": per_session.iter().map(Rates::medians_json).collect::<Vec<_>>(),
            "batch_sequences": n_seq,
            "batched_decode_tok_s": batched.as_ref().map(|s| s.median),
            "batched_decode_runs": batched.as_ref().map(|s| &s.runs),
            "batched_decode_speedup": batched.as_ref().map(|s| s.median / decode.median),
            "fork_tokens": f,
            "fork_ms": fork_ms.as_ref().map(|s| s.median),
            "fork_scratch_ms": scratch_ms.as_ref().map(|s| s.median),
            "fork_kv_bytes": fork_bytes,
            "weight_bytes_per_token": weight_bytes_per_token,
            "kv_bytes_per_position": kv_bytes_per_position,
            "peak_rss_bytes": peak_rss,
        });
        println!("{report}");
        return Ok(());
    }

    println!(
        "model: {} ({:.1} MiB, {} layers, d_model {}, vocab {})",
        path.display(),
        model_bytes as f64 / (1 << 20) as f64,
        c.n_layers,
        c.d_model,
        c.vocab_size
    );
    println!(
        "kernel: {kernel}, precision: {}, threads: {threads}, batch: {}, context: {}, \
         {} repetitions + 1 warm-up",
        precision.summary(),
        opts.batch,
        opts.context,
        args.repetitions
    );
    println!();
    println!(
        "| {:<14} | {:>10} | {:>10} | {:>10} | {:>8} |",
        "test", "tok/s", "min", "max", "stddev"
    );
    println!(
        "|{:-<16}|{:->12}|{:->12}|{:->12}|{:->10}|",
        "", "", "", "", ""
    );
    let batched_row = batched.as_ref().map(|s| (format!("tg{g} x{n_seq}"), s));
    let rows = [
        (format!("pp{p}"), &prefill),
        (format!("tg{g}"), &decode),
        (format!("tg{g} @ pp{p}"), &after),
    ];
    for (name, s) in rows.into_iter().chain(batched_row) {
        println!(
            "| {name:<14} | {:>10.2} | {:>10.2} | {:>10.2} | {:>8.2} |",
            s.median, s.min, s.max, s.stddev
        );
    }
    if let Some(s) = &batched {
        println!(
            "tg{g} x{n_seq}: {n_seq} sequences side by side, all their tokens counted: {:.2}x tg{g}",
            s.median / decode.median
        );
    }
    if let (Some(fork), Some(scratch), Some((before, after))) = (&fork_ms, &scratch_ms, fork_bytes)
    {
        println!(
            "{f} tokens in a fork of pp{p}: {:.1} ms (prompt and tokens from scratch: {:.1} ms); \
             key/value memory {:.2} -> {:.2} MiB",
            fork.median,
            scratch.median,
            before as f64 / (1 << 20) as f64,
            after as f64 / (1 << 20) as f64,
        );
    }
    if args.sessions > 1 {
        println!();
        println!(
            "{} sessions at once, rates above combined; each session's medians (tok/s):",
            args.sessions
        );
        for (i, r) in per_session.iter().enumerate() {
            println!(
                "  session {}: pp{p} {:.2}, tg{g} {:.2}, tg{g} @ pp{p} {:.2}",
                i + 1,
                r.prefill.median,
                r.decode.median,
                r.after.median
            );
        }
    }
    println!();
    if let Some(rss) = peak_rss {
        println!("peak RSS: {:.1} MiB", rss as f64 / (1 << 20) as f64);
    }
    Ok(())
}

/// Sums `data` in 256 independent byte lanes (4 to 16 vector accumulators), so the loop
/// keeps many loads in flight rather than waiting on one chain of additions, as
/// STREAM-like read kernels do.
#[inline(always)]
fn read_lanes(data: &[u8]) -> u64 {
    let mut lanes = [0u8; 256];
    let chunks = data.chunks_exact(256);
    let tail = chunks.remainder().iter().fold(0, |a: u64, &x| a + x as u64);
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = lane.wrapping_add(x);
        }
    }
    lanes.iter().fold(tail, |a, &x| a + x as u64)
}

/// [`read_lanes`] compiled for the widest loads the CPU has (64 or 32 bytes).
fn read_sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(data: &[u8]) -> u64 {
            read_lanes(data)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(data: &[u8]) -> u64 {
            read_lanes(data)
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { avx512(data) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { avx2(data) };
        }
    }
    read_lanes(data)
}

/// A STREAM-like read test, the bound a decode step can reach: `threads` threads of the
/// engine's own pool sum a buffer much larger than the caches, on huge pages as the
/// weights are, with wide loads into many accumulators. Reports the best and median rate.
fn memory_bandwidth(args: &BenchArgs, threads: usize) -> Result<(), String> {
    let bytes = args.buffer_mib.max(1) << 20;
    // Every byte is written once (as weights are at load), so the pages are resident.
    let storage = synapse_core::Storage::build(bytes, |b| {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8)
    });
    let data = &storage[..bytes];
    /// Bytes a thread sums at a time: whole huge pages.
    const SPAN: usize = 2 << 20;
    let spans = bytes.div_ceil(SPAN);
    let total = std::sync::atomic::AtomicU64::new(0);

    let mut runs = Vec::with_capacity(args.repetitions);
    for i in 0..=args.repetitions {
        let start = Instant::now();
        synapse_core::threads::parallel_for(spans, threads, 1, |range| {
            let part = &data[range.start * SPAN..(range.end * SPAN).min(bytes)];
            total.fetch_add(read_sum(part), std::sync::atomic::Ordering::Relaxed);
        });
        let seconds = start.elapsed().as_secs_f64();
        if i > 0 {
            runs.push(bytes as f64 / seconds / 1e9);
        }
    }
    std::hint::black_box(total.into_inner());
    let s = Stats::new(runs).expect("at least one run");
    if args.json {
        println!(
            "{}",
            json!({
                "threads": threads,
                "buffer_bytes": bytes,
                "read_gb_s": s.max,
                "median_gb_s": s.median,
                "runs_gb_s": s.runs,
            })
        );
    } else {
        println!(
            "memory read bandwidth, {threads} thread(s), {} MiB buffer: best {:.2} GB/s, \
             median {:.2} GB/s ({} runs)",
            args.buffer_mib,
            s.max,
            s.median,
            s.runs.len()
        );
    }
    Ok(())
}

/// Physical cores (distinct core ids per package in /proc/cpuinfo), falling back to the
/// available parallelism where that file says nothing.
fn physical_cores() -> usize {
    let logical = synapse_core::threads::default_threads();
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let (mut package, mut core) = (None, None);
    for line in info.lines().chain(std::iter::once("")) {
        let value = || line.split(':').nth(1).map(|v| v.trim().to_string());
        if line.starts_with("physical id") {
            package = value();
        } else if line.starts_with("core id") {
            core = value();
        } else if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (package.take(), core.take()) {
                cores.insert((p, c));
            }
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

/// The size of a model file, or of all files in a model directory.
fn file_bytes(path: &std::path::Path) -> Result<u64, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(err)? {
        let meta = entry.map_err(err)?.metadata().map_err(err)?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_odd_and_even_counts() {
        let s = Stats::new(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.mean), (2.0, 1.0, 3.0, 2.0));
        assert!((s.stddev - 1.0).abs() < 1e-12);
        assert_eq!(s.runs, vec![3.0, 1.0, 2.0], "runs keep their order");

        let s = Stats::new(vec![4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 10.0));
        assert!((s.mean - 4.25).abs() < 1e-12);
        // Sample variance: (0.0625 + 10.5625 + 5.0625 + 33.0625) / 3.
        assert!((s.stddev - (48.75f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn stats_of_one_run_and_of_none() {
        let s = Stats::new(vec![7.5]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.stddev), (7.5, 7.5, 7.5, 0.0));
        assert!(Stats::new(Vec::new()).is_none());
        assert!(Stats::new(vec![1.0, f64::NAN]).is_none());
    }

    #[test]
    fn rates() {
        assert_eq!(rate(512, 0.5), 1024.0);
    }

    #[test]
    fn synthetic_tokens_are_fixed_and_in_range() {
        let a = synthetic_tokens(1000, 49152, TOKEN_SEED);
        assert_eq!(a, synthetic_tokens(1000, 49152, TOKEN_SEED));
        assert!(a.iter().all(|&t| t < 49152));
        // Not degenerate: many distinct ids.
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 900);
        // Pinned so bench/llamacpp_bench.py (which reimplements it) can check itself.
        assert_eq!(&a[..4], &SYNTHETIC_FIRST_FOUR);
    }

    const SYNTHETIC_FIRST_FOUR: [u32; 4] = [32157, 29718, 19014, 7020];
}
