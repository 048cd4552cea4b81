//! The browser module's chat templates: the engine's own renderer (minijinja, set up as
//! transformers renders), compiled to a second wasm so that the engine's stays small.
//! `web/src/synapse-chat.js` loads it on a page's first `chat()`.

use synapse_inference::chat::{ChatMessage, ChatTemplate};
use wasm_bindgen::prelude::*;

/// Renders `messages_json` (an array of `{ role, content }`) with the model's template
/// `source` (ChatML when it has none), ending with the header of the assistant's reply.
/// `now_secs` is the time `strftime_now` shows (wasm has no clock of its own).
#[wasm_bindgen]
pub fn render_chat(
    source: Option<String>,
    bos_token: &str,
    eos_token: &str,
    messages_json: &str,
    now_secs: f64,
) -> Result<String, JsError> {
    let messages: Vec<ChatMessage> = serde_json::from_str(messages_json)
        .map_err(|e| JsError::new(&format!("chat messages: {e}")))?;
    let mut template = ChatTemplate::for_model(source.as_deref(), bos_token, eos_token)
        .map_err(|e| JsError::new(&e.to_string()))?;
    template.set_time(Some(now_secs as u64));
    template
        .render(&messages, true)
        .map_err(|e| JsError::new(&e.to_string()))
}
