//! `synapse._synapse`, the extension module of the Python package `synapse`: a thin
//! layer over `synapse-inference`. Loading, tokenizing, chat templates and generation
//! are the library's; this module converts arguments, releases the GIL while the engine
//! computes, and turns errors into exceptions. The llama-cpp-python-shaped API
//! (`synapse.Llama`) is Python, in `python/synapse/llama.py`, over this one.

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList};
use pyo3::{create_exception, IntoPyObjectExt};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use synapse_inference::chat::ChatMessage;
use synapse_inference::error::ErrorKind;
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::{Completion, GenerateOptions, Generator, StopReason};
use synapse_inference::model::weights::LoadOptions;
use synapse_inference::tokenizer::Tokenizer;
use synapse_inference::{Session, SessionOptions};

create_exception!(
    _synapse,
    SynapseError,
    PyException,
    "A Synapse call failed."
);
create_exception!(
    _synapse,
    InvalidArgumentError,
    SynapseError,
    "An impossible request (a bad token id, an empty prompt)."
);
create_exception!(
    _synapse,
    ModelFileError,
    SynapseError,
    "A file could not be read, or the default model fetched."
);
create_exception!(
    _synapse,
    BadFormatError,
    SynapseError,
    "A malformed model, tokenizer or chat template."
);
create_exception!(
    _synapse,
    UnsupportedError,
    SynapseError,
    "A well-formed model that Synapse does not support."
);
create_exception!(
    _synapse,
    ContextFullError,
    SynapseError,
    "The tokens do not fit the context."
);
create_exception!(_synapse, InternalError, SynapseError, "A bug in Synapse.");

fn py_err(e: synapse_inference::Error) -> PyErr {
    let message = e.to_string();
    match e.kind() {
        ErrorKind::InvalidArgument => InvalidArgumentError::new_err(message),
        ErrorKind::Io => ModelFileError::new_err(message),
        ErrorKind::BadFormat => BadFormatError::new_err(message),
        ErrorKind::Unsupported => UnsupportedError::new_err(message),
        ErrorKind::ContextFull => ContextFullError::new_err(message),
        _ => InternalError::new_err(message),
    }
}

/// A loaded model with one session, whose cache a generation reuses where its prompt
/// starts with what the previous one evaluated (as llama-cpp-python's `Llama` does).
#[pyclass(module = "synapse._synapse", frozen)]
struct Model {
    model: Arc<synapse_inference::Model>,
    state: Mutex<State>,
}

struct State {
    session: Session,
    /// Bumped by every generation, so that an older stream knows it was overtaken.
    generation: u64,
}

/// A prompt: text, or token ids.
#[derive(FromPyObject)]
enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// A conversation message as Python gives it: a dict with "role" and "content".
struct Message(ChatMessage);

impl<'py> FromPyObject<'_, 'py> for Message {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let field = |key: &str| -> PyResult<String> {
            let value = ob.get_item(key).map_err(|_| {
                InvalidArgumentError::new_err(format!("a message needs a {key:?} field"))
            })?;
            // OpenAI's messages may have "content": None (e.g. a tool call).
            match value.is_none() {
                true => Ok(String::new()),
                false => value.extract(),
            }
        };
        Ok(Message(ChatMessage::new(field("role")?, field("content")?)))
    }
}

#[pymethods]
impl Model {
    /// Loads a GGUF file or Hugging Face directory; `path` None: the default model
    /// (SmolLM2-135M-Instruct Q4_1, fetched into ~/.cache/synapse on first use).
    #[new]
    #[pyo3(signature = (path=None, *, threads=None, ctx_size=None))]
    fn new(
        py: Python<'_>,
        path: Option<std::path::PathBuf>,
        threads: Option<usize>,
        ctx_size: Option<usize>,
    ) -> PyResult<Model> {
        py.detach(|| {
            let path = match path {
                Some(path) => path,
                None => synapse_inference::default_model::ensure()?,
            };
            let model = Arc::new(synapse_inference::Model::load_with(
                path,
                LoadOptions::default(),
            )?);
            let mut opts = SessionOptions {
                context: ctx_size.unwrap_or(0),
                ..SessionOptions::default()
            };
            if let Some(threads) = threads.filter(|&t| t > 0) {
                opts.threads = threads;
            }
            let session = Session::new(model.clone(), opts.resolve(&model));
            Ok(Model {
                model,
                state: Mutex::new(State {
                    session,
                    generation: 0,
                }),
            })
        })
        .map_err(py_err)
    }

    /// The file or directory the model came from.
    #[getter]
    fn path(&self) -> &str {
        &self.model.path
    }

    #[getter]
    fn architecture(&self) -> &str {
        &self.model.config().architecture
    }

    /// The session's context length in tokens.
    #[getter]
    fn n_ctx(&self) -> usize {
        self.state().session.context()
    }

    /// The context length the model was trained with.
    #[getter]
    fn n_ctx_train(&self) -> usize {
        self.model.config().context_length
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.model.config().vocab_size
    }

    #[getter]
    fn n_params(&self) -> u64 {
        self.model.parameter_count()
    }

    #[getter]
    fn bos_id(&self) -> Option<u32> {
        self.model.tokenizer.as_ref().and_then(Tokenizer::bos_id)
    }

    #[getter]
    fn eos_id(&self) -> Option<u32> {
        self.model.tokenizer.as_ref().and_then(Tokenizer::eos_id)
    }

    /// The session's threads.
    #[getter]
    fn threads(&self) -> usize {
        self.state().session.options().threads
    }

    /// `text`'s token ids: BOS first when `add_bos` and the model adds one; with
    /// `special`, special-token text such as "<|im_start|>" becomes that token.
    #[pyo3(signature = (text, *, add_bos=true, special=true))]
    fn tokenize(&self, text: &str, add_bos: bool, special: bool) -> PyResult<Vec<u32>> {
        Ok(self.tokenizer()?.encode(text, add_bos, special))
    }

    /// The text of `ids` (bytes that do not form UTF-8 come out as U+FFFD).
    fn detokenize(&self, ids: Vec<u32>) -> PyResult<String> {
        let tokenizer = self.tokenizer()?;
        check_ids(tokenizer, &ids)?;
        Ok(tokenizer.decode(&ids))
    }

    /// The bytes token `id` stands for (possibly part of a UTF-8 character).
    fn token_bytes<'py>(&self, py: Python<'py>, id: u32) -> PyResult<Bound<'py, PyBytes>> {
        let tokenizer = self.tokenizer()?;
        check_ids(tokenizer, &[id])?;
        Ok(PyBytes::new(py, &tokenizer.token_bytes(id)))
    }

    /// `messages` (dicts with "role" and "content") rendered with the model's chat
    /// template (ChatML when it has none).
    #[pyo3(signature = (messages, add_generation_prompt=true))]
    fn apply_chat_template(
        &self,
        messages: Vec<Message>,
        add_generation_prompt: bool,
    ) -> PyResult<String> {
        let messages: Vec<ChatMessage> = messages.into_iter().map(|m| m.0).collect();
        let template = self.model.chat_template().map_err(py_err)?;
        template
            .render(&messages, add_generation_prompt)
            .map_err(|e| py_err(e.into()))
    }

    /// The logits of every position of `ids`, evaluated from an empty context: a NumPy
    /// array of shape (len(ids), n_vocab) when NumPy is installed, else lists.
    fn logits<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyAny>> {
        let logits = py
            .detach(|| {
                let mut state = self.state();
                state.generation += 1;
                state.session.truncate(0);
                state.session.eval(&ids, true)
            })
            .map_err(py_err)?;
        let vocab = self.n_vocab();
        match py.import("numpy") {
            Ok(np) => {
                let bytes: Vec<u8> = logits.iter().flat_map(|x| x.to_ne_bytes()).collect();
                let buffer = PyByteArray::new(py, &bytes);
                np.call_method1("frombuffer", (buffer, np.getattr("float32")?))?
                    .call_method1("reshape", (ids.len(), vocab))
            }
            Err(_) => {
                let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
                PyList::new(py, rows)?.into_bound_py_any(py)
            }
        }
    }

    /// Forgets the cached context.
    fn reset(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.session.truncate(0);
    }

    /// Completes `prompt` (text, or token ids), as `synapse run` does: the text (with
    /// `stream`, an iterator of text pieces, a `Generation`). `seed` None: a random one.
    #[pyo3(signature = (prompt, *, max_tokens=256, temperature=0.8, top_k=40, top_p=0.95,
        min_p=0.05, repeat_penalty=1.0, seed=None, stop=None, ignore_eos=false, stream=false))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        slf: &Bound<'_, Self>,
        prompt: Prompt,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
        ignore_eos: bool,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let opts = options(
            max_tokens,
            (temperature, top_k, top_p, min_p, repeat_penalty, seed),
            stop,
            ignore_eos,
        );
        let model = slf.get();
        let ids = match prompt {
            Prompt::Text(text) => model.tokenizer()?.encode(&text, true, true),
            Prompt::Ids(ids) => ids,
        };
        Generation::start(slf, ids, opts)?.finish_unless(slf.py(), stream)
    }

    /// The assistant's reply to `messages` (dicts with "role" and "content"), rendered
    /// with the model's chat template; the cache keeps what the conversation shares with
    /// the previous call. Arguments as `generate`.
    #[pyo3(signature = (messages, *, max_tokens=256, temperature=0.8, top_k=40, top_p=0.95,
        min_p=0.05, repeat_penalty=1.0, seed=None, stop=None, stream=false))]
    #[allow(clippy::too_many_arguments)]
    fn chat(
        slf: &Bound<'_, Self>,
        messages: Vec<Message>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Option<Vec<String>>,
        stream: bool,
    ) -> PyResult<Py<PyAny>> {
        let opts = options(
            max_tokens,
            (temperature, top_k, top_p, min_p, repeat_penalty, seed),
            stop,
            false,
        );
        let rendered = slf.get().apply_chat_template(messages, true)?;
        let ids = slf.get().model.encode_chat(&rendered).map_err(py_err)?;
        Generation::start(slf, ids, opts)?.finish_unless(slf.py(), stream)
    }

    fn __repr__(&self) -> String {
        format!(
            "<synapse.Model {} ({}, {} parameters)>",
            self.model.path,
            self.model.config().architecture,
            self.model.parameter_count()
        )
    }
}

impl Model {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the session was held was reported as an exception; the session
        // is still usable (reset() starts afresh).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn tokenizer(&self) -> PyResult<&Tokenizer> {
        self.model.tokenizer().map_err(py_err)
    }
}

fn check_ids(tokenizer: &Tokenizer, ids: &[u32]) -> PyResult<()> {
    match ids
        .iter()
        .find(|&&id| id as usize >= tokenizer.vocab_size())
    {
        Some(&id) => Err(py_err(synapse_inference::Error::BadTokenId {
            id,
            vocab: tokenizer.vocab_size(),
        })),
        None => Ok(()),
    }
}

type Sampling = (f32, usize, f32, f32, f32, Option<u64>);

fn options(
    max_tokens: usize,
    (temperature, top_k, top_p, min_p, repeat_penalty, seed): Sampling,
    stop: Option<Vec<String>>,
    ignore_eos: bool,
) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler: SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty,
            seed: seed.unwrap_or_else(|| RandomState::new().hash_one(0u8)),
            ..SamplerConfig::default()
        },
        stop: stop.unwrap_or_default(),
        ignore_eos,
        ..GenerateOptions::default()
    }
}

/// A generation in progress: an iterator of text pieces. Once it is exhausted,
/// `finish_reason` says why it ended ("stop", "length" or "cancelled").
#[pyclass(module = "synapse._synapse")]
struct Generation {
    model: Py<Model>,
    /// The model's generation counter when this one started.
    generation: u64,
    /// None once it has ended.
    completion: Option<Completion>,
    #[pyo3(get)]
    n_prompt_tokens: usize,
    /// Prompt tokens the model's cache already held (from the previous generation).
    #[pyo3(get)]
    n_cached_tokens: usize,
    /// The generated token ids so far.
    #[pyo3(get)]
    tokens: Vec<u32>,
    /// All the text so far.
    #[pyo3(get)]
    text: String,
    #[pyo3(get)]
    finish_reason: Option<&'static str>,
    /// Milliseconds the engine spent on the prompt, and on the tokens after it (set at
    /// the end).
    #[pyo3(get)]
    prefill_ms: f64,
    #[pyo3(get)]
    decode_ms: f64,
}

impl Generation {
    /// Starts generating after `ids` from the model's session, keeping the cached
    /// tokens that `ids` starts with.
    fn start(model: &Bound<'_, Model>, ids: Vec<u32>, opts: GenerateOptions) -> PyResult<Self> {
        let m = model.get();
        let mut state = m.state();
        state.generation += 1;
        let kept = state.session.keep_prefix(&ids);
        let generator = Generator::new(m.model.clone(), &opts);
        Ok(Generation {
            model: model.clone().unbind(),
            generation: state.generation,
            completion: Some(Completion::new(generator, &ids[kept..], &opts)),
            n_prompt_tokens: ids.len(),
            n_cached_tokens: kept,
            tokens: Vec::new(),
            text: String::new(),
            finish_reason: None,
            prefill_ms: 0.0,
            decode_ms: 0.0,
        })
    }

    /// Itself as an iterator with `stream`, else its whole text.
    fn finish_unless(mut self, py: Python<'_>, stream: bool) -> PyResult<Py<PyAny>> {
        if stream {
            return self.into_py_any(py);
        }
        while self.advance(py)?.is_some() {}
        self.text.into_py_any(py)
    }

    /// The next non-empty piece of text, or None at the end. The GIL is released while
    /// the engine computes; a pending signal (Ctrl-C) ends the generation and raises.
    fn advance(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        let model = self.model.get();
        while let Some(completion) = self.completion.as_mut() {
            let piece = py.detach(|| {
                let mut state = model.state();
                if state.generation != self.generation {
                    return Ok(Err(PyRuntimeError::new_err(
                        "this generation was overtaken by a later call on the same model",
                    )));
                }
                completion.next(&mut state.session).map(Ok)
            });
            let piece = match piece.map_err(py_err).and_then(|p| p) {
                Ok(piece) => piece,
                Err(e) => {
                    self.end(StopReason::Cancelled);
                    return Err(e);
                }
            };
            if let Err(interrupt) = py.check_signals() {
                self.end(StopReason::Cancelled);
                return Err(interrupt);
            }
            let Some(piece) = piece else {
                let (generation, _) = self.completion.take().unwrap().into_parts();
                self.finish_reason = Some(finish_reason(generation.stop_reason));
                self.prefill_ms = generation.timings.prefill_ms;
                self.decode_ms = generation.timings.decode_ms;
                break;
            };
            self.tokens.extend(piece.token);
            if !piece.text.is_empty() {
                self.text.push_str(&piece.text);
                return Ok(Some(piece.text));
            }
        }
        Ok(None)
    }

    fn end(&mut self, reason: StopReason) {
        self.completion = None;
        self.finish_reason = Some(finish_reason(reason));
    }
}

fn finish_reason(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Eos | StopReason::Stop => "stop",
        StopReason::Length => "length",
        StopReason::Cancelled => "cancelled",
    }
}

#[pymethods]
impl Generation {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        self.advance(py)
    }

    /// Number of generated tokens so far.
    #[getter]
    fn n_tokens(&self) -> usize {
        self.tokens.len()
    }
}

#[pymodule]
fn _synapse(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Model>()?;
    m.add_class::<Generation>()?;
    m.add("SynapseError", py.get_type::<SynapseError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("ModelFileError", py.get_type::<ModelFileError>())?;
    m.add("BadFormatError", py.get_type::<BadFormatError>())?;
    m.add("UnsupportedError", py.get_type::<UnsupportedError>())?;
    m.add("ContextFullError", py.get_type::<ContextFullError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
