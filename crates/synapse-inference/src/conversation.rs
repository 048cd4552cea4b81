//! Multi-turn chat: a session plus the message history, rendered with the model's chat
//! template. Each turn re-renders the whole conversation and evaluates only the tokens
//! past what the KV cache already holds.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::Result;
use crate::generation::{generate, GenerateOptions, Generation};
use crate::session::{Model, Session, SessionOptions};
use std::sync::Arc;

pub struct Conversation {
    session: Session,
    template: ChatTemplate,
    messages: Vec<ChatMessage>,
}

impl Conversation {
    pub fn new(
        model: Arc<Model>,
        opts: SessionOptions,
        system: Option<&str>,
    ) -> Result<Conversation> {
        let template = model.chat_template()?;
        let messages = system
            .map(|s| vec![ChatMessage::new("system", s)])
            .unwrap_or_default();
        Ok(Conversation {
            session: Session::new(model, opts),
            template,
            messages,
        })
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Adds a message without generating (e.g. earlier turns of a saved conversation).
    pub fn push(&mut self, message: ChatMessage) {
        self.messages.push(message);
    }

    /// Forgets all messages but a leading system message.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.session.truncate(0);
    }

    /// Adds the user's message, generates the assistant's reply (streamed to `on_text`)
    /// and adds it to the history.
    pub fn reply(
        &mut self,
        user: &str,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        self.messages.push(ChatMessage::new("user", user));
        let result = self.generate_reply(opts, on_text);
        if result.is_err() {
            self.messages.pop();
        }
        result
    }

    /// Generates the assistant's reply to the conversation as it stands.
    pub fn generate_reply(
        &mut self,
        opts: &GenerateOptions,
        on_text: impl FnMut(&str),
    ) -> Result<Generation> {
        let text = self.template.render(&self.messages, true)?;
        let model = self.session.model.clone();
        let ids = model
            .tokenizer()?
            .encode(&text, !model.starts_with_bos(&text), true);
        // Keep the cached prefix; at least one token must be evaluated to get logits.
        let cached = self.session.tokens();
        let common = cached.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        let keep = common.min(ids.len().saturating_sub(1));
        let keep = self.session.truncate(keep);
        let out = generate(&mut self.session, &ids[keep..], opts, on_text)?;
        self.messages
            .push(ChatMessage::new("assistant", out.text.clone()));
        Ok(out)
    }
}
