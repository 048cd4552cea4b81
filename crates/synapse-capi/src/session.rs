//! Sessions (one sequence's context) and generation over them.

use crate::boundary::{guard, slice, text, Failure, Outcome};
use crate::boundary::{synapse_status, synapse_string};
use crate::handle;
use crate::model::{messages, strings, synapse_chat_message, synapse_model};
use std::ffi::{c_char, c_void};
use std::sync::{Mutex, TryLockError};
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::{
    CancelHandle, Completion, GenerateOptions, Generator, StopReason,
};
use synapse_inference::{Session, SessionOptions};

/// One sequence's context over a model (opaque): the tokens evaluated so far and their
/// keys and values. A session belongs to one thread at a time; a call made while
/// another thread's call is running on it fails with SYNAPSE_INVALID_ARGUMENT.
#[allow(non_camel_case_types)]
pub struct synapse_session {
    state: Mutex<State>,
}

struct State {
    session: Session,
    /// The logits after the last evaluated token, for synapse_session_logits.
    logits: Vec<f32>,
}

/// How to make a session.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct synapse_session_params {
    /// Context length in tokens (0: the model's training context, at most 4096).
    pub ctx_size: u32,
    /// Threads (0: the model's parameters decide).
    pub threads: u32,
}

/// How to pick tokens and when to stop.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct synapse_sampling_params {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0 (or less): greedy, the most likely token every time.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: u32,
    /// Keep the most likely tokens whose probabilities add up to top_p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0: none).
    pub min_p: f32,
    /// Divide the logits of recently seen tokens by this (1: off).
    pub repeat_penalty: f32,
    /// The random stream's seed: the same seed gives the same tokens.
    pub seed: u64,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// `n_stop` strings that end the generation when the text contains one (it is not
    /// passed to the callback); may be NULL when n_stop is 0.
    pub stop: *const synapse_string,
    pub n_stop: usize,
}

/// Why a generation ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum synapse_stop_reason {
    /// The model produced an end-of-generation token.
    SYNAPSE_STOP_EOS = 0,
    /// max_tokens were generated, or the context is full.
    SYNAPSE_STOP_LENGTH = 1,
    /// A stop string appeared.
    SYNAPSE_STOP_STRING = 2,
    /// The callback returned false.
    SYNAPSE_STOP_CALLBACK = 3,
}

/// What a generation did.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct synapse_generate_result {
    /// Tokens of the prompt evaluated (after what the session held or kept).
    pub n_prompt_tokens: usize,
    /// Tokens generated (an end-of-generation token that stopped it is not counted).
    pub n_tokens: usize,
    pub stop_reason: synapse_stop_reason,
    /// Milliseconds spent on the prompt, and on generating the tokens after it.
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// Called with each generated token's id and the text that is safe to show now (`len`
/// bytes of complete UTF-8 characters, NUL-terminated, valid during the call; it may be
/// empty while a character or a possible stop string is incomplete). Text released at
/// the end that belongs to no new token comes with id SYNAPSE_NO_TOKEN. Return false to
/// stop the generation.
#[allow(non_camel_case_types)]
pub type synapse_token_callback = Option<
    unsafe extern "C" fn(id: u32, text: *const c_char, len: usize, user_data: *mut c_void) -> bool,
>;

/// The id a callback gets with text that belongs to no new token.
pub const SYNAPSE_NO_TOKEN: u32 = u32::MAX;

/// The default session parameters (the model's context up to 4096, its threads).
#[no_mangle]
pub extern "C" fn synapse_session_params_default() -> synapse_session_params {
    synapse_session_params {
        ctx_size: 0,
        threads: 0,
    }
}

/// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no
/// repetition penalty, seed 0, 256 tokens at most, no stop strings.
#[no_mangle]
pub extern "C" fn synapse_sampling_params_default() -> synapse_sampling_params {
    let s = SamplerConfig::default();
    synapse_sampling_params {
        max_tokens: GenerateOptions::default().max_tokens as u32,
        temperature: s.temperature,
        top_k: s.top_k as u32,
        top_p: s.top_p,
        min_p: s.min_p,
        repeat_penalty: s.repeat_penalty,
        seed: s.seed,
        ignore_eos: false,
        stop: std::ptr::null(),
        n_stop: 0,
    }
}

/// A new, empty session over `model` (`params` NULL: the defaults), into `*out`, to free
/// with synapse_session_free.
///
/// # Safety
/// `model` is a handle (checked); `params` is NULL or valid; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_session_new(
    model: *const synapse_model,
    params: *const synapse_session_params,
    out: *mut *mut synapse_session,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let m = unsafe { handle::get(model)? };
        // SAFETY: the caller's promise: `params` is NULL or points to valid params.
        let params = unsafe { params.as_ref() }
            .copied()
            .unwrap_or_else(|| synapse_session_params_default());
        // SAFETY: the caller's promise: `out` is valid for a write.
        let out = unsafe { crate::boundary::out(out, "out")? };
        let mut opts = SessionOptions {
            context: params.ctx_size as usize,
            ..SessionOptions::default()
        };
        let threads = match params.threads {
            0 => m.threads,
            n => n as usize,
        };
        if threads > 0 {
            opts.threads = threads;
        }
        let session = Session::new(m.model.clone(), opts.resolve(&m.model));
        *out = handle::new(synapse_session {
            state: Mutex::new(State {
                session,
                logits: Vec::new(),
            }),
        });
        Ok(())
    })
}

/// Frees a session (NULL: nothing to do).
///
/// # Safety
/// No other call uses `session` at the same time.
#[no_mangle]
pub unsafe extern "C" fn synapse_session_free(session: *mut synapse_session) -> synapse_status {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::free(session) }.map(drop))
}

/// Empties the session's context.
///
/// # Safety
/// `session` is a handle (checked), not freed during the call.
#[no_mangle]
pub unsafe extern "C" fn synapse_session_reset(session: *mut synapse_session) -> synapse_status {
    guard(|| {
        // SAFETY: `lock` checks that `session` is a live session handle, and the caller's
        // promise is that it is not freed during the call.
        let mut state = unsafe { lock(session)? };
        state.session.truncate(0);
        state.logits.clear();
        Ok(())
    })
}

/// Evaluates `n` token ids after those the session holds; synapse_session_logits then
/// gives the logits after the last of them.
///
/// # Safety
/// `session` is a handle (checked); `ids` points to `n` ids.
#[no_mangle]
pub unsafe extern "C" fn synapse_session_eval(
    session: *mut synapse_session,
    ids: *const u32,
    n: usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `lock` checks that `session` is a live session handle; it stays live
        // during this call, as synapse_session_free may not run at the same time.
        let mut state = unsafe { lock(session)? };
        // SAFETY: the caller's promise: `ids` points to `n` ids.
        let ids = unsafe { slice(ids, n, "ids")? };
        let State { session, logits } = &mut *state;
        session.eval_into(ids, false, logits)?;
        Ok(())
    })
}

/// The logits after the last token synapse_session_eval evaluated: `*out` points to
/// `*n_vocab` floats owned by the session, valid until its next call.
///
/// # Safety
/// `session` is a handle (checked); `out` and `n_vocab` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn synapse_session_logits(
    session: *mut synapse_session,
    out: *mut *const f32,
    n_vocab: *mut usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `lock` checks that `session` is a live session handle; it stays live
        // during this call, as synapse_session_free may not run at the same time.
        let state = unsafe { lock(session)? };
        // SAFETY: the caller's promise: `out` is valid for a write.
        let out = unsafe { crate::boundary::out(out, "out")? };
        // SAFETY: the caller's promise: `n_vocab` is valid for a write.
        let n_vocab = unsafe { crate::boundary::out(n_vocab, "n_vocab")? };
        if state.logits.is_empty() {
            return Err(Failure::invalid(
                "no logits yet: evaluate tokens with synapse_session_eval first",
            ));
        }
        *out = state.logits.as_ptr();
        *n_vocab = state.logits.len();
        Ok(())
    })
}

/// Generates after the `len` bytes of UTF-8 `prompt`, which is evaluated after what the
/// session holds (BOS first when the session is empty and the model adds one; special
/// token text read as those tokens, as `synapse run` does). Each token goes to
/// `callback` (may be NULL) with `user_data`; `*out` (may be NULL) receives what
/// happened. The session keeps the prompt and the generated tokens, so a second call
/// continues the text. A prompt that does not fit the context fails with
/// SYNAPSE_CONTEXT_FULL; a generation that fills it stops with SYNAPSE_STOP_LENGTH.
///
/// # Safety
/// `session` is a handle (checked); `prompt` points to `len` bytes; `params` is NULL or
/// valid (with valid stop strings); `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_generate(
    session: *mut synapse_session,
    prompt: *const c_char,
    len: usize,
    params: *const synapse_sampling_params,
    callback: synapse_token_callback,
    user_data: *mut c_void,
    out: *mut synapse_generate_result,
) -> synapse_status {
    guard(|| {
        // SAFETY: `lock` checks that `session` is a live session handle; it stays live
        // during this call, as synapse_session_free may not run at the same time.
        let mut state = unsafe { lock(session)? };
        // SAFETY: the caller's promise: `prompt` points to `len` bytes.
        let prompt = unsafe { text(prompt, len, "prompt")? };
        let session = &mut state.session;
        let ids = session
            .model
            .tokenizer()?
            .encode(prompt, session.tokens().is_empty(), true);
        // SAFETY: the caller's promise: `params` is NULL or valid, with valid stop strings,
        // and `out` is NULL or valid for a write.
        unsafe { complete(&mut state, &ids, params, (callback, user_data), out) }
    })
}

/// The assistant's reply to a conversation of `n` messages, rendered with the model's
/// chat template: the session keeps the tokens it shares with the rendered conversation
/// (the earlier turns, when the previous call had the same messages plus the reply) and
/// evaluates only the rest. Pass the whole conversation every time, the replies
/// included. Otherwise as synapse_generate.
///
/// # Safety
/// As synapse_generate; `msgs` points to `n` messages whose strings are valid.
#[no_mangle]
pub unsafe extern "C" fn synapse_chat(
    session: *mut synapse_session,
    msgs: *const synapse_chat_message,
    n: usize,
    params: *const synapse_sampling_params,
    callback: synapse_token_callback,
    user_data: *mut c_void,
    out: *mut synapse_generate_result,
) -> synapse_status {
    guard(|| {
        // SAFETY: `lock` checks that `session` is a live session handle; it stays live
        // during this call, as synapse_session_free may not run at the same time.
        let mut state = unsafe { lock(session)? };
        let session = &mut state.session;
        // SAFETY: the caller's promise: `msgs` points to `n` messages with valid strings.
        let messages = unsafe { messages(msgs, n)? };
        let rendered = session
            .model
            .chat_template()?
            .render(&messages, true)
            .map_err(synapse_inference::Error::from)?;
        let ids = session.model.encode_chat(&rendered)?;
        let kept = session.keep_prefix(&ids);
        // SAFETY: the caller's promise: `params` is NULL or valid, with valid stop strings,
        // and `out` is NULL or valid for a write.
        unsafe { complete(&mut state, &ids[kept..], params, (callback, user_data), out) }
    })
}

/// Evaluates `ids` after what the session holds and generates, as synapse_generate says.
///
/// # Safety
/// As synapse_generate's arguments.
unsafe fn complete(
    state: &mut State,
    ids: &[u32],
    params: *const synapse_sampling_params,
    (callback, user_data): (synapse_token_callback, *mut c_void),
    out: *mut synapse_generate_result,
) -> Outcome {
    // SAFETY: the caller's promise.
    let params = unsafe { params.as_ref() }
        .copied()
        .unwrap_or_else(|| synapse_sampling_params_default());
    let cancel = CancelHandle::new();
    let opts = GenerateOptions {
        max_tokens: params.max_tokens as usize,
        sampler: SamplerConfig {
            temperature: params.temperature,
            top_k: params.top_k as usize,
            top_p: params.top_p,
            min_p: params.min_p,
            repeat_penalty: params.repeat_penalty,
            seed: params.seed,
            ..SamplerConfig::default()
        },
        // SAFETY: the caller's promise.
        stop: unsafe { strings(params.stop, params.n_stop, "stop")? },
        ignore_eos: params.ignore_eos,
        cancel: Some(cancel.clone()),
        ..GenerateOptions::default()
    };
    let State { session, logits } = state;
    let generator = Generator::new(session.model.clone(), &opts);
    let mut completion = Completion::new(generator, ids, &opts);
    let mut piece_text = Vec::new();
    while let Some(piece) = completion.next(session)? {
        let Some(callback) = callback else { continue };
        piece_text.clear();
        piece_text.extend_from_slice(piece.text.as_bytes());
        piece_text.push(0);
        let id = piece.token.unwrap_or(SYNAPSE_NO_TOKEN);
        let text = piece_text.as_ptr().cast();
        // SAFETY: the caller's callback, with a NUL-terminated copy of the text that
        // lives through the call.
        if !unsafe { callback(id, text, piece.text.len(), user_data) } {
            cancel.cancel();
        }
    }
    let (generation, _) = completion.into_parts();
    // The logits now are some generated token's: synapse_session_logits answers for
    // synapse_session_eval only.
    logits.clear();
    // SAFETY: the caller's promise.
    if let Some(out) = unsafe { out.as_mut() } {
        let t = &generation.timings;
        *out = synapse_generate_result {
            n_prompt_tokens: ids.len(),
            n_tokens: generation.tokens.len(),
            stop_reason: match generation.stop_reason {
                StopReason::Eos => synapse_stop_reason::SYNAPSE_STOP_EOS,
                StopReason::Length => synapse_stop_reason::SYNAPSE_STOP_LENGTH,
                StopReason::Stop => synapse_stop_reason::SYNAPSE_STOP_STRING,
                StopReason::Cancelled => synapse_stop_reason::SYNAPSE_STOP_CALLBACK,
            },
            prefill_ms: t.prefill_ms,
            decode_ms: t.decode_ms,
        };
    }
    Ok(())
}

/// Exclusive use of a live session, or an error when another thread is using it.
///
/// # Safety
/// As [`handle::get`].
unsafe fn lock<'a>(session: *const synapse_session) -> Outcome<std::sync::MutexGuard<'a, State>> {
    // SAFETY: the caller's promise.
    let s = unsafe { handle::get(session)? };
    match s.state.try_lock() {
        Ok(state) => Ok(state),
        // An earlier call on it panicked and reported SYNAPSE_INTERNAL; the caller may
        // go on, or start afresh with synapse_session_reset.
        Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
        Err(TryLockError::WouldBlock) => Err(Failure::invalid(
            "the session is in use by another thread (a session belongs to one thread at a time)",
        )),
    }
}
