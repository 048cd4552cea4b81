//! An arbitrary request body for the server's chat and text completion endpoints, read
//! as the server reads it before the model runs (JSON, fields, messages rendered with a
//! real model's chat template, tools, response format, generation options). The first
//! byte picks the endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use synapse_inference::chat::ChatTemplate;
use synapse_server::{check_request, Endpoint};

/// Qwen2's template: it renders tools, tool calls and tool results.
fn template() -> &'static ChatTemplate {
    static TEMPLATE: OnceLock<ChatTemplate> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let source = include_str!("../../tests/fixtures/tokenizers/qwen2/chat_template.jinja");
        ChatTemplate::new(source, "", "<|im_end|>").unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let endpoint = match first & 1 {
        0 => Endpoint::Chat,
        _ => Endpoint::Completions,
    };
    let _ = check_request(endpoint, body, template(), 12, 512);
});
