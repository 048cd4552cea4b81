//! Synapse in the browser: wasm-bindgen bindings over `synapse-inference`, the same
//! loader, decoder, tokenizer, sampler and stop logic as every other door.
//!
//! `web/pkg/synapse.js` drives these from a Web Worker: it streams the model file into a
//! [`ModelBytes`] buffer in wasm memory (the weights are read in place from there, never
//! copied again), loads an [`Engine`], then pulls generated pieces one at a time with
//! [`Engine::next_piece`], so that a stop request between two tokens is seen at once.
//!
//! Built with the `gpu` feature, the model runs on WebGPU through the engine's GPU
//! backend instead; there loading and every forward pass are async, since a browser
//! hands GPU results back through its event loop.

// The threaded build (atomics and shared memory; see scripts/build-web.sh).
#[cfg(target_feature = "atomics")]
mod pool;

use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::storage::{AlignedBytes, Storage};
use synapse_inference::bench::{synthetic_tokens, TOKEN_SEED};
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::{Completion, Evaluated, GenerateOptions, Generator};
use synapse_inference::tokenizer::{set_char_classifier, CharClass};
use synapse_inference::{Model, Session, SessionOptions};
use wasm_bindgen::prelude::*;

/// What the model runs on in this build.
#[cfg(not(feature = "gpu"))]
type Device = synapse_inference::model::backend::Cpu;
#[cfg(feature = "gpu")]
type Device = synapse_gpu::GpuBackend;

/// Most prompt tokens in one forward pass.
const BATCH: usize = 64;

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A model file's bytes, written in chunks as they arrive, 8-byte aligned so that the
/// weights can be viewed in place.
#[wasm_bindgen]
pub struct ModelBytes {
    words: Vec<u64>,
    len: usize,
}

#[wasm_bindgen]
impl ModelBytes {
    /// Room for a file of `len` bytes, or an error when wasm32's memory cannot hold it.
    #[wasm_bindgen(constructor)]
    pub fn new(len: usize) -> Result<ModelBytes, JsError> {
        let mut words = Vec::new();
        words.try_reserve_exact(len.div_ceil(8)).map_err(|_| {
            JsError::new(&format!(
                "the model file ({} MB) does not fit in this page's memory: wasm32 \
                 addresses 4 GiB at most, and the browser may allow less",
                len >> 20
            ))
        })?;
        words.resize(len.div_ceil(8), 0);
        Ok(ModelBytes { words, len })
    }

    /// Copies `chunk` to `offset`.
    pub fn write(&mut self, offset: usize, chunk: &[u8]) -> Result<(), JsError> {
        let end = offset
            .checked_add(chunk.len())
            .filter(|&end| end <= self.len)
            .ok_or_else(|| JsError::new("more bytes than the model file's announced size"))?;
        self.bytes_mut()[offset..end].copy_from_slice(chunk);
        Ok(())
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `words` holds at least `len` initialised bytes, and u8 has no alignment.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }
}

/// A loaded model with one sequence's session and the generation in progress, if any.
#[wasm_bindgen]
pub struct Engine {
    model: Arc<Model<Device>>,
    session: Session<Device>,
    completion: Option<Completion<Device>>,
}

/// The GGUF file in `bytes` (`name` is how errors refer to it), on the CPU.
fn parse(bytes: ModelBytes, name: String) -> Result<Model, JsError> {
    set_char_classifier(char_class);
    let ModelBytes { words, len } = bytes;
    let storage = Arc::new(Storage::Owned(AlignedBytes::Words { words, len }));
    let gguf = GgufFile::parse(name, storage).map_err(js_error)?;
    Model::from_gguf(gguf).map_err(js_error)
}

#[cfg(not(feature = "gpu"))]
#[wasm_bindgen]
impl Engine {
    /// Loads the GGUF file in `bytes` (`name` is how errors refer to it) with a context of
    /// `context` tokens (0: the model's, capped at 4096) and `threads` threads.
    pub fn load(
        bytes: ModelBytes,
        name: String,
        context: usize,
        threads: usize,
    ) -> Result<Engine, JsError> {
        Ok(Engine::new(parse(bytes, name)?, context, threads))
    }

    /// "cpu".
    pub fn device(&self) -> String {
        "cpu".into()
    }

    /// The next piece of the generation in progress: the prompt's forward pass on the
    /// first call, then one token per call; `undefined` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Piece>, JsError> {
        now(self.next())
    }

    /// Benchmark, part one: evaluates `n` fixed pseudo-random tokens (those of `synapse
    /// bench`) from an empty context. The caller times it.
    pub fn bench_prefill(&mut self, n: usize) -> Result<(), JsError> {
        now(self.prefill(n))
    }

    /// Benchmark, part two: `n` greedy decode steps after what the context holds.
    pub fn bench_decode(&mut self, n: usize) -> Result<(), JsError> {
        now(self.decode(n))
    }
}

/// The GPU build: the same calls, async.
#[cfg(feature = "gpu")]
#[wasm_bindgen]
impl Engine {
    /// Loads the GGUF file in `bytes` onto the browser's GPU (see the CPU build's `load`).
    pub async fn load(
        bytes: ModelBytes,
        name: String,
        context: usize,
        threads: usize,
    ) -> Result<Engine, JsError> {
        let model = parse(bytes, name)?;
        let gpu = synapse_gpu::Gpu::request().await.map_err(js_error)?;
        let model = model
            .with_backend(synapse_gpu::GpuBackend::new(gpu))
            .map_err(js_error)?;
        Ok(Engine::new(model, context, threads))
    }

    /// "gpu: " and the adapter the model runs on.
    pub fn device(&self) -> String {
        format!("gpu: {}", self.model.backend().gpu().adapter())
    }

    pub async fn next_piece(&mut self) -> Result<Option<Piece>, JsError> {
        self.next().await
    }

    pub async fn bench_prefill(&mut self, n: usize) -> Result<(), JsError> {
        self.prefill(n).await
    }

    pub async fn bench_decode(&mut self, n: usize) -> Result<(), JsError> {
        self.decode(n).await
    }
}

impl Engine {
    fn new(model: Model<Device>, context: usize, threads: usize) -> Engine {
        let model = Arc::new(model);
        let opts = SessionOptions {
            context,
            threads: threads.max(1),
            // The activation buffers hold a batch's rows, in wasm memory, which unlike a
            // native process's untouched pages is all committed: ~2 MB for SmolLM2 at 64
            // rows, eight times that at the native default of 512.
            batch: BATCH,
            ..SessionOptions::default()
        }
        .resolve(&model);
        Engine {
            session: Session::new(model.clone(), opts),
            model,
            completion: None,
        }
    }
}

#[wasm_bindgen]
impl Engine {
    pub fn architecture(&self) -> String {
        self.model.config().architecture.clone()
    }

    pub fn context_length(&self) -> usize {
        self.session.context()
    }

    pub fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    /// The type of most of the matrices (e.g. "Q4_1").
    pub fn weight_type(&self) -> String {
        let mut counts: Vec<(synapse_core::DType, usize)> = Vec::new();
        for dtype in self.model.matmul_types() {
            match counts.iter_mut().find(|(d, _)| *d == dtype) {
                Some((_, n)) => *n += 1,
                None => counts.push((dtype, 1)),
            }
        }
        let most = counts.iter().max_by_key(|(_, n)| *n);
        most.map_or(String::new(), |(d, _)| d.name().to_string())
    }

    /// Bytes the KV cache holds allocated.
    pub fn kv_cache_bytes(&self) -> usize {
        self.session.kv_cache_bytes()
    }

    pub fn threads(&self) -> usize {
        self.session.options().threads
    }

    /// The kernels' instruction set: "simd128" or "scalar".
    pub fn simd(&self) -> String {
        if cfg!(target_feature = "simd128") {
            "simd128"
        } else {
            "scalar"
        }
        .into()
    }

    /// The model's chat template (GGUF `tokenizer.chat_template`), if it has one.
    pub fn chat_template(&self) -> Option<String> {
        let tokenizer = self.model.tokenizer().ok()?;
        tokenizer.chat_template().map(str::to_string)
    }

    /// The text of the BOS and EOS tokens, which chat templates write.
    pub fn special_token(&self, eos: bool) -> String {
        let Ok(tokenizer) = self.model.tokenizer() else {
            return String::new();
        };
        let id = if eos {
            tokenizer.eos_id()
        } else {
            tokenizer.bos_id()
        };
        id.map_or(String::new(), |id| tokenizer.piece(id).to_string())
    }

    /// `text`'s token ids as `synapse run` makes them (BOS if the model adds one), with
    /// special-token text (e.g. `<|im_start|>`) as those tokens when `special`.
    pub fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>, JsError> {
        let tokenizer = self.model.tokenizer().map_err(js_error)?;
        Ok(tokenizer.encode(text, true, special))
    }

    pub fn detokenize(&self, ids: &[u32]) -> Result<String, JsError> {
        let tokenizer = self.model.tokenizer().map_err(js_error)?;
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= tokenizer.vocab_size())
        {
            return Err(JsError::new(&format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                tokenizer.vocab_size()
            )));
        }
        Ok(tokenizer.decode(ids))
    }

    /// Starts generating after `prompt`. A raw completion (`chat` false) starts from an
    /// empty context, as `synapse run` does; a chat turn (`prompt` the rendered
    /// conversation) keeps the cached tokens it starts with. `seed` < 0 picks one.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        prompt: &str,
        chat: bool,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: f64,
        stop: Vec<String>,
        ignore_eos: bool,
    ) -> Result<(), JsError> {
        self.completion = None;
        let ids = match chat {
            true => self.model.encode_chat(prompt).map_err(js_error)?,
            false => self.tokenize(prompt, true)?,
        };
        if ids.is_empty() {
            return Err(JsError::new("the prompt has no tokens"));
        }
        if ids.len() >= self.session.context() {
            return Err(JsError::new(&format!(
                "the prompt has {} tokens, more than the context of {} leaves room for",
                ids.len(),
                self.session.context()
            )));
        }
        let keep = match chat {
            true => self.session.keep_prefix(&ids),
            false => self.session.truncate(0),
        };
        let opts = GenerateOptions {
            max_tokens,
            sampler: SamplerConfig {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                seed: if seed >= 0.0 {
                    seed as u64
                } else {
                    random_seed()
                },
                ..SamplerConfig::default()
            },
            stop,
            ignore_eos,
            ..GenerateOptions::default()
        };
        let generator = Generator::new(self.model.clone(), &opts);
        self.completion = Some(Completion::new(generator, &ids[keep..], &opts));
        Ok(())
    }

    /// Ends the generation in progress (what it generated stays in the context).
    pub fn stop(&mut self) {
        self.completion = None;
    }

    /// Forgets the context.
    pub fn reset(&mut self) {
        self.completion = None;
        self.session.truncate(0);
    }
}

/// What the exports above share; async because on the GPU a forward pass's logits come
/// back through the browser's event loop (on the CPU they are there at once).
impl Engine {
    async fn next(&mut self) -> Result<Option<Piece>, JsError> {
        let Some(completion) = &mut self.completion else {
            return Ok(None);
        };
        let piece = match completion.evaluate(&mut self.session).map_err(js_error)? {
            Evaluated::Ended(piece) => piece,
            Evaluated::Logits => {
                settle(&self.model, completion.logits_mut()).await?;
                completion.sample(&self.session)
            }
        };
        if piece.is_none() {
            self.completion = None;
        }
        Ok(piece.map(|p| Piece {
            id: p.token.map_or(-1, |t| t as i32),
            text: p.text,
        }))
    }

    async fn prefill(&mut self, n: usize) -> Result<(), JsError> {
        self.completion = None;
        self.session.truncate(0);
        let tokens = synthetic_tokens(n, self.vocab_size(), TOKEN_SEED);
        let mut logits = self.session.eval(&tokens, false).map_err(js_error)?;
        settle(&self.model, &mut logits).await
    }

    async fn decode(&mut self, n: usize) -> Result<(), JsError> {
        let opts = GenerateOptions {
            max_tokens: n,
            sampler: SamplerConfig::greedy(),
            ignore_eos: true,
            ..GenerateOptions::default()
        };
        let mut generator = Generator::new(self.model.clone(), &opts);
        let mut logits = Vec::new();
        let mut token = *self.session.tokens().last().unwrap_or(&0);
        for _ in 0..n {
            self.session
                .eval_into(&[token], false, &mut logits)
                .map_err(js_error)?;
            settle(&self.model, &mut logits).await?;
            token = generator.step(&logits, self.session.tokens()).token;
        }
        Ok(())
    }
}

/// Waits for the logits a forward pass left in flight, if any.
async fn settle(model: &Model<Device>, logits: &mut [f32]) -> Result<(), JsError> {
    #[cfg(feature = "gpu")]
    model.backend().settle(logits).await.map_err(js_error)?;
    #[cfg(not(feature = "gpu"))]
    let _ = (model, logits);
    Ok(())
}

/// The value of a future that is ready at once (the CPU build's, which never waits).
#[cfg(not(feature = "gpu"))]
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => unreachable!("the CPU build's futures never wait"),
    }
}

/// A generated token (`id` -1 for text released at the end) and its text.
#[wasm_bindgen(getter_with_clone)]
pub struct Piece {
    pub id: i32,
    pub text: String,
}

/// A seed for a caller that asked for none.
fn random_seed() -> u64 {
    (random() * 9007199254740991.0) as u64
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Math)]
    fn random() -> f64;
}

/// The pre-tokenizers' class of a non-ASCII character, from the JavaScript engine's Unicode
/// data: the module leaves out its own tables (~190 KB).
fn char_class(c: char) -> CharClass {
    match unicode_class(c as u32) {
        0 => CharClass::Letter,
        1 => CharClass::Number,
        2 => CharClass::Mark,
        _ => CharClass::Other,
    }
}

#[wasm_bindgen(inline_js = r"export function unicode_class(c) {
  const s = String.fromCodePoint(c);
  return /\p{L}/u.test(s) ? 0 : /\p{N}/u.test(s) ? 1 : /\p{M}/u.test(s) ? 2 : 3;
}")]
extern "C" {
    fn unicode_class(c: u32) -> u8;
}
