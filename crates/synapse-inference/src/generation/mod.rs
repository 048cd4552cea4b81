//! Generation: the loop that samples tokens one at a time, streams their text and stops
//! at an end-of-generation token, a stop string, a token limit or a cancellation.
//! [`Generator`] is one sequence's state, a step at a time; [`generate`] runs it with a
//! session.

#[cfg(feature = "constraints")]
pub mod constraint;
mod generator;
pub mod sampler;
pub mod stop;

pub use generator::{Generator, Step};

use crate::clock::Stopwatch;
use crate::error::Result;
use crate::model::backend::{Backend, Cpu};
use crate::session::Session;
use sampler::SamplerConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Report each generated token's logprob and this many most likely alternatives
    /// (`Some(0)`: the token's own only; `None`: no logprobs).
    pub logprobs: Option<usize>,
    /// Checked before every forward pass. A cancelled generation ends with
    /// `StopReason::Cancelled` and keeps the tokens and text generated until then.
    pub cancel: Option<CancelHandle>,
    /// A grammar the output must follow (e.g. a JSON schema), applied to the logits
    /// before sampling.
    #[cfg(feature = "constraints")]
    pub constraint: Option<constraint::Constraint>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            logits_top: 0,
            logprobs: None,
            cancel: None,
            #[cfg(feature = "constraints")]
            constraint: None,
        }
    }
}

/// Asks a generation to stop, from another thread or from its own streaming callback.
/// Clones share one flag.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    pub fn cancel(&self) {
        // Only the flag itself is shared, so no ordering with other memory is needed.
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    Eos,
    /// `max_tokens` were generated, or the context is full.
    Length,
    /// A stop string appeared, or the output completed its constraint's grammar.
    Stop,
    /// The caller cancelled it through a [`CancelHandle`].
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Eos => "eos",
            StopReason::Length => "length",
            StopReason::Stop => "stop",
            StopReason::Cancelled => "cancelled",
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
    /// One per generated token when `GenerateOptions::logprobs` asks for them.
    pub logprobs: Vec<TokenLogprob>,
}

/// A generated token's logprob and its most likely alternatives (see [`Step::logprob`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

/// Evaluates `prompt` after what `session` holds, then generates, calling `on_text` with
/// each piece of text as soon as it is safe to show (complete UTF-8, not part of a
/// possible stop string). A cancellation (`opts.cancel`) is not an error: the result has
/// `StopReason::Cancelled` and what was generated before it.
pub fn generate<B: Backend>(
    session: &mut Session<B>,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_text: impl FnMut(&str),
) -> Result<Generation> {
    let generator = Generator::new(session.model.clone(), opts);
    let mut completion = Completion::new(generator, prompt, opts);
    completion.run(session, on_text)?;
    Ok(completion.into_parts().0)
}

/// One piece of a [`Completion`]: a generated token and the text that is safe to show
/// now, or (`token: None`) text released at the end.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub token: Option<u32>,
    pub text: String,
}

/// Where a [`Completion`] is: the prompt not yet evaluated, a forward pass run (of the
/// prompt or not) whose logits are not yet sampled, a sampled token not yet evaluated
/// (the last token of a generation never is), or the end.
enum Phase {
    Prompt(Vec<u32>),
    Evaluated { prompt: bool },
    Sampled(u32),
    Done,
}

/// What [`Completion::evaluate`] did: ran a forward pass whose logits
/// [`Completion::sample`] takes next, or found the generation over (with the text it
/// still held back, if any).
pub enum Evaluated {
    Logits,
    Ended(Option<Piece>),
}

/// A generation in progress over a session, one piece at a time: for doors whose caller
/// pulls (a JS async iterator, a C loop), while [`generate`] runs one to the end. Each
/// [`Completion::next`] runs at most one forward pass, so a caller can stop between any
/// two tokens.
pub struct Completion<B: Backend = Cpu> {
    generator: Generator<B>,
    phase: Phase,
    logits: Vec<f32>,
    out: Generation,
    logits_top: usize,
    cancel: Option<CancelHandle>,
    /// Since the forward pass being timed began.
    clock: Stopwatch,
}

impl<B: Backend> Completion<B> {
    /// A completion of `prompt` (evaluated after what the session will hold) with
    /// `generator`, made with the same `opts`.
    pub fn new(generator: Generator<B>, prompt: &[u32], opts: &GenerateOptions) -> Self {
        Completion {
            generator,
            phase: Phase::Prompt(prompt.to_vec()),
            logits: Vec::new(),
            out: Generation {
                tokens: Vec::new(),
                text: String::new(),
                stop_reason: StopReason::Length,
                timings: Timings::default(),
                top_logits: Vec::new(),
                logprobs: Vec::new(),
            },
            logits_top: opts.logits_top,
            cancel: opts.cancel.clone(),
            clock: Stopwatch::start(),
        }
    }

    /// The next piece, evaluating the prompt first (on the first call) or the last
    /// sampled token; `None` once the generation is over. Call it with the same session
    /// each time. A cancellation ends it with what was generated before.
    pub fn next(&mut self, session: &mut Session<B>) -> Result<Option<Piece>> {
        match self.evaluate(session)? {
            Evaluated::Ended(piece) => Ok(piece),
            Evaluated::Logits => Ok(self.sample(session)),
        }
    }

    /// [`Completion::next`]'s first half: the forward pass. A backend that cannot wait
    /// for its results (WebGPU in a browser) leaves the logits in flight; its door writes
    /// them into [`Completion::logits_mut`] before calling [`Completion::sample`].
    pub fn evaluate(&mut self, session: &mut Session<B>) -> Result<Evaluated> {
        let cancelled = self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled);
        if cancelled && !self.is_done() {
            return Ok(Evaluated::Ended(self.end(StopReason::Cancelled)));
        }
        // Decode time: sampling and the forward pass of the sampled tokens.
        self.clock = Stopwatch::start();
        self.phase = match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Done | Phase::Evaluated { .. } => return Ok(Evaluated::Ended(None)),
            Phase::Prompt(prompt) => {
                session.eval_into(&prompt, false, &mut self.logits)?;
                self.out.timings.prefill_tokens = prompt.len();
                Phase::Evaluated { prompt: true }
            }
            Phase::Sampled(token) => {
                // A full context ends the generation.
                if session.tokens().len() == session.context() {
                    return Ok(Evaluated::Ended(self.end(StopReason::Length)));
                }
                session.eval_into(&[token], false, &mut self.logits)?;
                Phase::Evaluated { prompt: false }
            }
        };
        Ok(Evaluated::Logits)
    }

    /// Where the forward pass's logits go.
    pub fn logits_mut(&mut self) -> &mut [f32] {
        &mut self.logits
    }

    /// [`Completion::next`]'s second half, once [`Completion::evaluate`]'s logits are
    /// there: samples the next token and returns its piece (`None` when a completion of
    /// no tokens ends with nothing to show).
    pub fn sample(&mut self, session: &Session<B>) -> Option<Piece> {
        let Phase::Evaluated { prompt } = self.phase else {
            return None;
        };
        if prompt {
            self.out.timings.prefill_ms = self.clock.elapsed_ms();
            self.out.top_logits = top_k_logits(&self.logits, self.logits_top);
            if self.generator.max_tokens() == 0 {
                return self.end(StopReason::Length);
            }
            self.clock = Stopwatch::start();
        }
        let step = self.generator.step(&self.logits, session.tokens());
        let token = (step.stop != Some(StopReason::Eos)).then_some(step.token);
        if let Some(token) = token {
            self.out.tokens.push(token);
            self.out.logprobs.extend(step.logprobs);
        }
        self.out.text.push_str(&step.text);
        self.phase = match step.stop {
            Some(reason) => {
                self.out.stop_reason = reason;
                Phase::Done
            }
            None => Phase::Sampled(step.token),
        };
        self.out.timings.decode_tokens = self.out.tokens.len();
        self.out.timings.decode_ms += self.clock.elapsed_ms();
        Some(Piece {
            token,
            text: step.text,
        })
    }

    /// Calls [`Completion::next`] until the end, passing each piece's text to `on_text`.
    pub fn run(&mut self, session: &mut Session<B>, mut on_text: impl FnMut(&str)) -> Result<()> {
        while let Some(piece) = self.next(session)? {
            if !piece.text.is_empty() {
                on_text(&piece.text);
            }
        }
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// What was generated (a completion stopped before its end counts as cancelled), and
    /// the generator, whose sampler a chat carries on into its next turn.
    pub fn into_parts(mut self) -> (Generation, Generator<B>) {
        if !self.is_done() {
            self.end(StopReason::Cancelled);
        }
        (self.out, self.generator)
    }

    /// Ends the generation for `reason`, with the text the generator still held back.
    fn end(&mut self, reason: StopReason) -> Option<Piece> {
        self.phase = Phase::Done;
        self.out.stop_reason = reason;
        let text = self.generator.finish();
        self.out.text.push_str(&text);
        (!text.is_empty()).then_some(Piece { token: None, text })
    }
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

/// A two-layer model with random weights over the tokenizer module's test vocabulary
/// (260 tokens, byte-level): fast to run, with varied logits. It has no
/// end-of-generation tokens.
#[cfg(test)]
pub(crate) fn tiny_model() -> Arc<crate::Model> {
    let config = r#"{"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4,
        "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 260,
        "max_position_embeddings": 256}"#;
    let mut model =
        crate::Model::random("tiny.json", config, Default::default()).expect("tiny model");
    model.tokenizer = Some(crate::tokenizer::test_tokenizer());
    Arc::new(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionOptions;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const PROMPT: &[u32] = &[104, 105, 32, 116, 104, 101, 114, 101];

    fn session() -> Session {
        Session::new(tiny_model(), SessionOptions::default())
    }

    fn sampling(max_tokens: usize) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampler: SamplerConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: 5,
                ..SamplerConfig::default()
            },
            logprobs: Some(2),
            ..GenerateOptions::default()
        }
    }

    #[test]
    fn stepping_a_generator_reproduces_generate() {
        let opts = sampling(16);
        let mut pieces = Vec::new();
        let out = generate(&mut session(), PROMPT, &opts, |t| {
            pieces.push(t.to_string())
        })
        .unwrap();
        assert_eq!(out.tokens.len(), 16);
        assert_eq!(out.stop_reason, StopReason::Length);
        assert_eq!(pieces.concat(), out.text);
        // wasm32-unknown-unknown has no clock: the timings read as zero.
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        assert_eq!((out.timings.prefill_ms, out.timings.decode_ms), (0.0, 0.0));

        let mut session = session();
        let mut generator = Generator::new(session.model.clone(), &opts);
        let mut logits = session.eval(PROMPT, false).unwrap();
        let (mut tokens, mut text, mut logprobs) = (Vec::new(), String::new(), Vec::new());
        loop {
            let step = generator.step(&logits, session.tokens());
            tokens.push(step.token);
            text += &step.text;
            logprobs.extend(step.logprobs);
            if step.stop.is_some() {
                break;
            }
            logits = session.eval(&[step.token], false).unwrap();
        }
        assert_eq!(tokens, out.tokens);
        assert_eq!(text, out.text);
        assert_eq!(logprobs, out.logprobs);
        // Sampling, not a constant: the seed's draws show in the tokens.
        let mut distinct = tokens.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 4, "{tokens:?}");
    }

    #[test]
    fn pulling_a_completion_reproduces_generate() {
        let opts = sampling(12);
        let full = generate(&mut session(), PROMPT, &opts, |_| {}).unwrap();

        let mut session = session();
        let generator = Generator::new(session.model.clone(), &opts);
        let mut completion = Completion::new(generator, PROMPT, &opts);
        let (mut tokens, mut text) = (Vec::new(), String::new());
        while let Some(piece) = completion.next(&mut session).unwrap() {
            tokens.extend(piece.token);
            text += &piece.text;
        }
        assert!(completion.is_done());
        assert_eq!(completion.next(&mut session).unwrap(), None);
        let (out, _) = completion.into_parts();
        assert_eq!((tokens, text), (full.tokens.clone(), full.text.clone()));
        assert_eq!(
            (out.tokens, out.logprobs),
            (full.tokens.clone(), full.logprobs)
        );

        // A caller that stops pulling ends it as cancelled, with what it had; the last
        // sampled token was never evaluated.
        let mut session = self::session();
        let generator = Generator::new(session.model.clone(), &opts);
        let mut completion = Completion::new(generator, PROMPT, &opts);
        for _ in 0..5 {
            completion.next(&mut session).unwrap();
        }
        let (out, _) = completion.into_parts();
        assert_eq!(out.stop_reason, StopReason::Cancelled);
        assert_eq!(out.tokens, full.tokens[..5]);
        assert_eq!(session.tokens().len(), PROMPT.len() + 4);
    }

    #[test]
    fn logprobs_only_when_asked() {
        let opts = GenerateOptions {
            logprobs: None,
            ..sampling(4)
        };
        let out = generate(&mut session(), PROMPT, &opts, |_| {}).unwrap();
        assert_eq!((out.tokens.len(), out.logprobs.len()), (4, 0));
    }

    #[test]
    fn cancelling_keeps_what_was_generated_before() {
        let cancel = CancelHandle::new();
        let opts = GenerateOptions {
            cancel: Some(cancel.clone()),
            ..sampling(16)
        };
        let full = generate(&mut session(), PROMPT, &sampling(16), |_| {}).unwrap();

        // Cancelled from the streaming callback, as a user interrupting would.
        let mut session = session();
        let mut shown = String::new();
        let out = generate(&mut session, PROMPT, &opts, |text| {
            shown += text;
            cancel.cancel();
        })
        .unwrap();
        assert_eq!(out.stop_reason, StopReason::Cancelled);
        assert!(
            !out.tokens.is_empty() && out.tokens.len() < 16,
            "{:?}",
            out.tokens
        );
        assert_eq!(out.tokens, full.tokens[..out.tokens.len()]);
        assert_eq!(out.text, shown);
        assert!(full.text.starts_with(&out.text));
        // No forward pass after the cancellation: the last token was not evaluated.
        assert_eq!(session.tokens().len(), PROMPT.len() + out.tokens.len() - 1);

        // Cancelled before it starts: not even the prompt is evaluated.
        let mut session = self::session();
        let out = generate(&mut session, PROMPT, &opts, |_| {}).unwrap();
        assert_eq!(out.stop_reason, StopReason::Cancelled);
        assert!(out.tokens.is_empty() && session.tokens().is_empty());
    }
}
