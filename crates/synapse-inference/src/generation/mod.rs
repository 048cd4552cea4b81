//! Generation: the loop that samples tokens one at a time, streams their text and stops
//! at an end-of-generation token, a stop string or a token limit.

pub mod sampler;
pub mod stop;

use crate::clock::Stopwatch;
use crate::error::Result;
use crate::session::Session;
use crate::tokenizer::StreamDecoder;
use sampler::{Sampler, SamplerConfig};
use stop::StopMatcher;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation stops when the text contains one of these; it is not part of the output.
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (for benchmarks and reference checks).
    pub ignore_eos: bool,
    /// Keep this many highest logits of the last prompt position (0 = none).
    pub logits_top: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            logits_top: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// `max_tokens` were generated, or the context is full.
    Length,
    /// A stop string appeared.
    Stop,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::Stop => "stop",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    pub decode_tokens: usize,
    pub decode_ms: f64,
}

impl Timings {
    pub fn prefill_tok_s(&self) -> f64 {
        per_second(self.prefill_tokens, self.prefill_ms)
    }
    pub fn decode_tok_s(&self) -> f64 {
        per_second(self.decode_tokens, self.decode_ms)
    }
}

fn per_second(tokens: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated token ids (an end-of-generation token that stopped it is not included).
    pub tokens: Vec<u32>,
    /// The generated text, without a stop string that ended it.
    pub text: String,
    pub stop_reason: StopReason,
    pub timings: Timings,
    /// The `logits_top` highest `(id, logit)` at the last prompt position, highest first.
    pub top_logits: Vec<(u32, f32)>,
}

/// Evaluates `prompt` after what `session` holds, then generates, calling `on_text` with
/// each piece of text as soon as it is safe to show (complete UTF-8, not part of a
/// possible stop string).
pub fn generate(
    session: &mut Session,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let model = session.model.clone();
    // Without a tokenizer (a checkpoint run on token ids) there is no text to stream.
    let tokenizer = model.tokenizer.as_ref();
    let mut timings = Timings {
        prefill_tokens: prompt.len(),
        ..Timings::default()
    };

    let clock = Stopwatch::start();
    let mut logits = Vec::new();
    session.eval_into(prompt, false, &mut logits)?;
    timings.prefill_ms = clock.elapsed_ms();

    let clock = Stopwatch::start();
    let mut sampler = Sampler::new(opts.sampler.clone());
    let mut decoder = StreamDecoder::default();
    let mut stops = StopMatcher::new(opts.stop.clone());
    let mut out = Generation {
        tokens: Vec::new(),
        text: String::new(),
        stop_reason: StopReason::Length,
        timings,
        top_logits: top_k_logits(&logits, opts.logits_top),
    };
    let mut emit = |text: &str, out: &mut Generation| {
        if !text.is_empty() {
            out.text.push_str(text);
            on_text(text);
        }
    };
    while out.tokens.len() < opts.max_tokens {
        let history = session.tokens();
        let recent = &history[history.len().saturating_sub(opts.sampler.repeat_last_n)..];
        let token = sampler.sample(&logits, recent);
        if !opts.ignore_eos && model.end_of_generation_ids().contains(&token) {
            out.stop_reason = StopReason::Eos;
            break;
        }
        out.tokens.push(token);
        if let Some(tokenizer) = tokenizer {
            let pushed = stops.push(&decoder.push(tokenizer, token));
            emit(&pushed.text, &mut out);
            if pushed.stop.is_some() {
                out.stop_reason = StopReason::Stop;
                break;
            }
        }
        // The last token needs no forward pass; a full context ends generation.
        if out.tokens.len() == opts.max_tokens || session.tokens().len() == session.context() {
            break;
        }
        session.eval_into(&[token], false, &mut logits)?;
    }
    if out.stop_reason != StopReason::Stop {
        let rest = stops.push(&decoder.finish());
        let tail = stops.flush();
        emit(&(rest.text + &tail), &mut out);
    }
    out.timings.decode_tokens = out.tokens.len();
    out.timings.decode_ms = clock.elapsed_ms();
    Ok(out)
}

/// The `k` highest `(id, logit)` pairs, highest first (ties: lower id first).
pub fn top_k_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let k = k.min(ids.len());
    if k == 0 {
        return Vec::new();
    }
    ids.select_nth_unstable_by(k - 1, by_logit);
    ids.truncate(k);
    ids.sort_by(by_logit);
    ids.into_iter()
        .map(|id| (id, logits[id as usize]))
        .collect()
}
