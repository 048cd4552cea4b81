//! An arbitrary Jinja chat template rendered over arbitrary messages. The input is the
//! template, then NUL, then the messages as role NUL content NUL pairs; the last byte
//! of the input says whether to add the generation prompt. Runaway templates must end
//! with an error (fuel and output bounds), not hang or exhaust memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synapse_inference::chat::{ChatMessage, ChatTemplate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let messages: Vec<ChatMessage> = rest
        .chunks(2)
        .map(|pair| ChatMessage::new(pair[0], pair.get(1).copied().unwrap_or_default()))
        .collect();
    let add_generation_prompt = data.last().is_some_and(|b| b & 1 == 1);
    if let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") {
        let _ = template.render(&messages, add_generation_prompt);
    }
});
