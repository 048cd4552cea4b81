//! The C ABI's length-delimited inputs, called as C calls them: a model loaded from
//! arbitrary bytes (synapse_model_load_from_memory); then, on a real small model, the
//! bytes as text to tokenize (any bytes, invalid UTF-8 included), as token ids to
//! detokenize and turn into pieces, and as chat messages to render, each into a buffer
//! of a size the input picks (too small included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::c_char;
use std::sync::OnceLock;
use synapse::*;

/// The random-weight seed model of the `gguf_model` target, loaded through the C ABI.
struct Handle(*mut synapse_model);
// SAFETY: the C ABI's model handles may be moved to any thread.
unsafe impl Send for Handle {}
// SAFETY: and used from several at once (synapse.h: "a model may be used by several threads at once").
unsafe impl Sync for Handle {}

fn model() -> *mut synapse_model {
    static MODEL: OnceLock<Handle> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let bytes = include_bytes!("../corpus/gguf_model/tiny-llama-q8_0.gguf");
            let mut model = std::ptr::null_mut();
            // SAFETY: the bytes and the out-pointer are valid.
            let status = unsafe {
                synapse_model_load_from_memory(
                    bytes.as_ptr(),
                    bytes.len(),
                    std::ptr::null(),
                    &mut model,
                )
            };
            assert_eq!(status, synapse_status::SYNAPSE_OK);
            Handle(model)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    let Some((&cap, data)) = data.split_first() else {
        return;
    };
    let cap = cap as usize;
    // SAFETY: every pointer and length passed describes a live buffer of this function,
    // and the model handle stays live for the process.
    unsafe {
        let mut loaded = std::ptr::null_mut();
        if synapse_model_load_from_memory(data.as_ptr(), data.len(), std::ptr::null(), &mut loaded)
            == synapse_status::SYNAPSE_OK
        {
            synapse_model_free(loaded);
        }
        let model = model();
        let (mut ids, mut text, mut n) = (vec![0u32; cap], vec![0 as c_char; cap], 0usize);
        let status = synapse_tokenize(
            model,
            data.as_ptr().cast(),
            data.len(),
            true,
            ids.as_mut_ptr(),
            cap,
            &mut n,
        );
        if status == synapse_status::SYNAPSE_OK {
            assert!(n <= cap);
        }
        let words: Vec<u32> = data
            .chunks(4)
            .map(|c| c.iter().fold(0, |w, &b| w << 8 | b as u32) % 20)
            .collect();
        synapse_detokenize(
            model,
            words.as_ptr(),
            words.len(),
            text.as_mut_ptr(),
            cap,
            &mut n,
        );
        for &id in &words {
            synapse_token_to_piece(model, id, text.as_mut_ptr(), cap, &mut n);
        }
        let halves = data.split_at(data.len() / 2);
        let messages = [synapse_chat_message {
            role: halves.0.as_ptr().cast(),
            role_len: halves.0.len(),
            content: halves.1.as_ptr().cast(),
            content_len: halves.1.len(),
        }];
        synapse_chat_apply_template(
            model,
            messages.as_ptr(),
            1,
            true,
            text.as_mut_ptr(),
            cap,
            &mut n,
        );
    }
});
