//! Models: loading, what they are, their tokenizer and chat template.

use crate::boundary::{guard, slice, text, write_out, Failure, Outcome};
use crate::boundary::{synapse_status, synapse_string};
use crate::handle;
use std::ffi::{c_char, CStr, CString};
use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::storage::{AlignedBytes, Storage};
use synapse_inference::chat::ChatMessage;
use synapse_inference::model::weights::LoadOptions;
use synapse_inference::tokenizer::Tokenizer;
use synapse_inference::Model;

/// A loaded model (opaque). Sessions made from it keep it alive: it may be freed before
/// them. Calls on one model may run on several threads at once.
#[allow(non_camel_case_types)]
pub struct synapse_model {
    pub(crate) model: Arc<Model>,
    /// The threads its sessions use unless their own parameters say.
    pub(crate) threads: usize,
    architecture: CString,
}

/// How to load a model.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
pub struct synapse_model_params {
    /// Threads of the model's sessions unless their own parameters say (0: one per core).
    pub threads: u32,
}

/// What a model is.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct synapse_model_info {
    /// The architecture (e.g. "llama"), NUL-terminated, owned by the model: valid until
    /// synapse_model_free.
    pub architecture: *const c_char,
    /// Parameters, as llama.cpp's llama_model_n_params counts them.
    pub n_params: u64,
    /// The context length the model was trained with.
    pub n_ctx_train: u32,
    pub n_vocab: u32,
    /// Token ids of BOS and EOS, -1 when the model has none.
    pub bos: i32,
    pub eos: i32,
}

/// One message of a conversation: role ("system", "user", "assistant", ...) and content,
/// each UTF-8 of the given length.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct synapse_chat_message {
    pub role: *const c_char,
    pub role_len: usize,
    pub content: *const c_char,
    pub content_len: usize,
}

/// The default model parameters (threads: one per core).
#[no_mangle]
pub extern "C" fn synapse_model_params_default() -> synapse_model_params {
    synapse_model_params { threads: 0 }
}

/// Loads a GGUF file or a Hugging Face model directory (config.json, safetensors,
/// tokenizer files) at the NUL-terminated `path`; with `path` NULL, the default model
/// (SmolLM2-135M-Instruct Q4_1), fetched into ~/.cache/synapse on first use as the
/// `synapse` CLI does. `params` may be NULL (the defaults). On success `*out` is a new
/// model, to free with synapse_model_free; on failure it is left untouched.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `params` is NULL or valid; `out` is valid
/// for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_model_load(
    path: *const c_char,
    params: *const synapse_model_params,
    out: *mut *mut synapse_model,
) -> synapse_status {
    // SAFETY: the caller's promise.
    unsafe {
        load_into(out, params, || {
            let path = match path.is_null() {
                true => synapse_inference::default_model::ensure()?,
                false => {
                    let path = CStr::from_ptr(path).to_str().map_err(|_| {
                        Failure::invalid("path is not valid UTF-8 (Synapse reads UTF-8 paths)")
                    })?;
                    path.into()
                }
            };
            Ok(Model::load_with(&path, LoadOptions::default())?)
        })
    }
}

/// Loads a GGUF file from the `len` bytes at `data`, which are copied: the caller may
/// free them once this returns. `params` may be NULL. As synapse_model_load otherwise.
///
/// # Safety
/// `data` points to `len` readable bytes; `params` is NULL or valid; `out` is valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_model_load_from_memory(
    data: *const u8,
    len: usize,
    params: *const synapse_model_params,
    out: *mut *mut synapse_model,
) -> synapse_status {
    // SAFETY: the caller's promise.
    unsafe {
        load_into(out, params, || {
            let bytes = slice(data, len, "data")?;
            let storage = Arc::new(Storage::Owned(AlignedBytes::copy_from(bytes)));
            let gguf = GgufFile::parse("<memory>".into(), storage)
                .map_err(synapse_inference::Error::from)?;
            Ok(Model::from_gguf_with(gguf, LoadOptions::default())?)
        })
    }
}

/// Loads a model with `load` into `*out`, a new handle with `params` (NULL: defaults).
///
/// # Safety
/// `params` is NULL or valid; `out` is valid for a write.
unsafe fn load_into(
    out: *mut *mut synapse_model,
    params: *const synapse_model_params,
    load: impl FnOnce() -> Outcome<Model>,
) -> synapse_status {
    guard(|| {
        // SAFETY: the caller's promise: `out` is valid for a write.
        let out = unsafe { crate::boundary::out(out, "out")? };
        // SAFETY: the caller's promise: `params` is NULL or points to valid params.
        let params = unsafe { params.as_ref() }.copied();
        *out = new_model(load()?, params);
        Ok(())
    })
}

fn new_model(model: Model, params: Option<synapse_model_params>) -> *mut synapse_model {
    let params = params.unwrap_or_else(|| synapse_model_params_default());
    let architecture = CString::new(model.config().architecture.as_str()).unwrap_or_default();
    handle::new(synapse_model {
        model: Arc::new(model),
        threads: params.threads as usize,
        architecture,
    })
}

/// Frees a model (NULL: nothing to do). Its sessions keep working until freed.
///
/// # Safety
/// No other call uses `model` at the same time.
#[no_mangle]
pub unsafe extern "C" fn synapse_model_free(model: *mut synapse_model) -> synapse_status {
    // SAFETY: the caller's promise.
    guard(|| unsafe { handle::free(model) }.map(drop))
}

/// Fills `*out` with what the model is.
///
/// # Safety
/// `model` is a handle (checked) and `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_model_info(
    model: *const synapse_model,
    out: *mut synapse_model_info,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let m = unsafe { handle::get(model)? };
        // SAFETY: the caller's promise: `out` is valid for a write.
        let out = unsafe { crate::boundary::out(out, "out")? };
        let config = m.model.config();
        let tokenizer = m.model.tokenizer.as_ref();
        let id = |id: Option<u32>| id.map_or(-1, |id| id as i32);
        *out = synapse_model_info {
            architecture: m.architecture.as_ptr(),
            n_params: m.model.parameter_count(),
            n_ctx_train: config.context_length as u32,
            n_vocab: config.vocab_size as u32,
            bos: id(tokenizer.and_then(Tokenizer::bos_id)),
            eos: id(tokenizer.and_then(Tokenizer::eos_id)),
        };
        Ok(())
    })
}

/// The token ids of the `len` bytes of UTF-8 `text`, into `out` (room for `cap` ids),
/// their count into `*n_out`. BOS comes first when the model adds one (as `synapse run`
/// does); with `special`, special-token text such as "<|im_start|>" becomes that token.
///
/// # Safety
/// `model` is a handle (checked); `text` points to `len` bytes; `out` has room for `cap`
/// ids; `n_out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_tokenize(
    model: *const synapse_model,
    text: *const c_char,
    len: usize,
    special: bool,
    out: *mut u32,
    cap: usize,
    n_out: *mut usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let tokenizer = unsafe { tokenizer(model)? };
        // SAFETY: the caller's promise: `text` points to `len` bytes.
        let text = unsafe { crate::boundary::text(text, len, "text")? };
        let ids = tokenizer.encode(text, true, special);
        // SAFETY: the caller's promise: `out` has room for `cap` ids, `n_out` is valid.
        unsafe { write_out(&ids, false, out, cap, n_out) }
    })
}

/// The text of `n` token ids, into `out` (room for `cap` bytes, NUL included), its length
/// in bytes into `*n_out`. Bytes that do not form UTF-8 come out as U+FFFD.
///
/// # Safety
/// `model` is a handle (checked); `ids` points to `n` ids; `out` has room for `cap`
/// bytes; `n_out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn synapse_detokenize(
    model: *const synapse_model,
    ids: *const u32,
    n: usize,
    out: *mut c_char,
    cap: usize,
    n_out: *mut usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let tokenizer = unsafe { tokenizer(model)? };
        // SAFETY: the caller's promise: `ids` points to `n` ids.
        let ids = unsafe { slice(ids, n, "ids")? };
        for &id in ids {
            check_id(tokenizer, id)?;
        }
        let text = tokenizer.decode(ids);
        // SAFETY: the caller's promise: `out` has room for `cap` bytes, `n_out` is valid.
        unsafe { write_out(text.as_bytes(), true, out.cast(), cap, n_out) }
    })
}

/// The bytes token `id` stands for, into `out` (room for `cap` bytes, NUL included), their
/// count into `*n_out`. A token may hold part of a UTF-8 character: concatenate pieces
/// before reading them as text.
///
/// # Safety
/// `model` is a handle (checked); `out` has room for `cap` bytes; `n_out` is valid.
#[no_mangle]
pub unsafe extern "C" fn synapse_token_to_piece(
    model: *const synapse_model,
    id: u32,
    out: *mut c_char,
    cap: usize,
    n_out: *mut usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let tokenizer = unsafe { tokenizer(model)? };
        check_id(tokenizer, id)?;
        // SAFETY: the caller's promise: `out` has room for `cap` bytes, `n_out` is valid.
        unsafe { write_out(&tokenizer.token_bytes(id), true, out.cast(), cap, n_out) }
    })
}

/// Renders the `n` messages with the model's chat template (ChatML when it has none);
/// with `add_generation_prompt` the text ends with the header of the assistant's reply.
/// The text goes into `out` (room for `cap` bytes, NUL included), its length into
/// `*n_out`; give it to synapse_generate as the prompt.
///
/// # Safety
/// `model` is a handle (checked); `msgs` points to `n` messages whose strings are valid;
/// `out` has room for `cap` bytes; `n_out` is valid.
#[no_mangle]
pub unsafe extern "C" fn synapse_chat_apply_template(
    model: *const synapse_model,
    msgs: *const synapse_chat_message,
    n: usize,
    add_generation_prompt: bool,
    out: *mut c_char,
    cap: usize,
    n_out: *mut usize,
) -> synapse_status {
    guard(|| {
        // SAFETY: `handle::get` checks that `model` is a live model handle; it stays live
        // during this call, as synapse_model_free may not run at the same time.
        let m = unsafe { handle::get(model)? };
        // SAFETY: the caller's promise: `msgs` points to `n` messages with valid strings.
        let messages = unsafe { messages(msgs, n)? };
        let rendered = m
            .model
            .chat_template()?
            .render(&messages, add_generation_prompt)
            .map_err(synapse_inference::Error::from)?;
        // SAFETY: the caller's promise: `out` has room for `cap` bytes, `n_out` is valid.
        unsafe { write_out(rendered.as_bytes(), true, out.cast(), cap, n_out) }
    })
}

/// The tokenizer of a live model handle.
///
/// # Safety
/// As [`handle::get`].
unsafe fn tokenizer<'a>(model: *const synapse_model) -> Outcome<&'a Tokenizer> {
    // SAFETY: the caller's promise.
    let m = unsafe { handle::get(model)? };
    Ok(m.model.tokenizer()?)
}

fn check_id(tokenizer: &Tokenizer, id: u32) -> Outcome {
    if id as usize >= tokenizer.vocab_size() {
        return Err(synapse_inference::Error::BadTokenId {
            id,
            vocab: tokenizer.vocab_size(),
        }
        .into());
    }
    Ok(())
}

/// A conversation a caller passes as `n` messages at `msgs`.
///
/// # Safety
/// `msgs` points to `n` messages whose strings are valid.
pub(crate) unsafe fn messages(
    msgs: *const synapse_chat_message,
    n: usize,
) -> Outcome<Vec<ChatMessage>> {
    // SAFETY: the caller's promise.
    let msgs = unsafe { slice(msgs, n, "msgs")? };
    msgs.iter()
        .enumerate()
        .map(|(i, msg)| {
            // SAFETY: the caller's promise.
            let role = unsafe { text(msg.role, msg.role_len, &format!("msgs[{i}].role"))? };
            let what = format!("msgs[{i}].content");
            // SAFETY: the caller's promise.
            let content = unsafe { text(msg.content, msg.content_len, &what)? };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Strings a caller passes as an array of `synapse_string` (e.g. stop strings).
///
/// # Safety
/// `items` points to `n` strings whose data is valid.
pub(crate) unsafe fn strings(
    items: *const synapse_string,
    n: usize,
    what: &str,
) -> Outcome<Vec<String>> {
    // SAFETY: the caller's promise.
    let items = unsafe { slice(items, n, what)? };
    items
        .iter()
        .enumerate()
        // SAFETY: the caller's promise.
        .map(|(i, s)| unsafe { text(s.data, s.len, &format!("{what}[{i}]")) }.map(str::to_string))
        .collect()
}
