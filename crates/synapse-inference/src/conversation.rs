//! Multi-turn chat: a session plus the message history, rendered with the model's chat
//! template. Each turn re-renders the whole conversation and evaluates only the tokens
//! past what the KV cache already holds. The sampler's random stream runs on from turn
//! to turn, so a seed fixes the whole conversation, and a later turn does not replay the
//! draws of the first.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::Result;
use crate::generation::sampler::Sampler;
use crate::generation::{Completion, GenerateOptions, Generation, Generator, Piece};
use crate::model::backend::{Backend, Cpu};
use crate::session::{Model, Session, SessionOptions};
use std::sync::Arc;

pub struct Conversation<B: Backend = Cpu> {
    session: Session<B>,
    template: ChatTemplate,
    messages: Vec<ChatMessage>,
    /// The last turn's sampler, whose random stream the next turn continues.
    sampler: Option<Sampler>,
}

impl<B: Backend> Conversation<B> {
    pub fn new(
        model: Arc<Model<B>>,
        opts: SessionOptions,
        system: Option<&str>,
    ) -> Result<Conversation<B>> {
        let template = model.chat_template()?;
        let messages = system
            .map(|s| vec![ChatMessage::new("system", s)])
            .unwrap_or_default();
        Ok(Conversation {
            session: Session::new(model, opts),
            template,
            messages,
            sampler: None,
        })
    }

    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Adds a message without generating (e.g. earlier turns of a saved conversation).
    pub fn push(&mut self, message: ChatMessage) {
        self.messages.push(message);
    }

    /// Forgets all messages but a leading system message; the random stream goes on.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.session.truncate(0);
    }

    /// The chat template, e.g. to give it the date on a platform without a clock.
    pub fn template_mut(&mut self) -> &mut ChatTemplate {
        &mut self.template
    }

    /// Adds the user's message, generates the assistant's reply (streamed to `on_text`)
    /// and adds it to the history; a cancelled reply is added as far as it got.
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
        let mut reply = self.begin_reply(opts)?;
        match reply.run(&mut self.session, on_text) {
            Ok(()) => Ok(self.end_reply(reply)),
            Err(err) => {
                self.sampler = Some(reply.into_parts().1.into_sampler());
                Err(err)
            }
        }
    }

    /// Starts the assistant's reply to the conversation as it stands, to be pulled piece
    /// by piece with [`Conversation::next`] and ended with [`Conversation::end_reply`].
    /// Only the tokens past what the KV cache already holds are evaluated.
    pub fn begin_reply(&mut self, opts: &GenerateOptions) -> Result<Completion<B>> {
        let text = self.template.render(&self.messages, true)?;
        let model = self.session.model.clone();
        let ids = model.encode_chat(&text)?;
        let keep = self.session.keep_prefix(&ids);
        // Settings changed since the last turn (a new seed, say) start a new stream.
        let sampler = match self.sampler.take() {
            Some(sampler) if *sampler.config() == opts.sampler => sampler,
            _ => Sampler::new(opts.sampler.clone()),
        };
        let generator = Generator::with_sampler(model, sampler, opts);
        Ok(Completion::new(generator, &ids[keep..], opts))
    }

    /// The next piece of the reply that `reply` is generating (see [`Completion::next`]).
    pub fn next(&mut self, reply: &mut Completion<B>) -> Result<Option<Piece>> {
        reply.next(&mut self.session)
    }

    /// Adds the reply, as far as it got, to the history, and keeps its sampler's random
    /// stream for the next turn.
    pub fn end_reply(&mut self, reply: Completion<B>) -> Generation {
        let (out, generator) = reply.into_parts();
        self.sampler = Some(generator.into_sampler());
        self.messages
            .push(ChatMessage::new("assistant", out.text.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::sampler::SamplerConfig;
    use crate::generation::tiny_model;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn conversation() -> Conversation {
        Conversation::new(tiny_model(), SessionOptions::default(), None).unwrap()
    }

    fn opts() -> GenerateOptions {
        GenerateOptions {
            max_tokens: 12,
            sampler: SamplerConfig {
                temperature: 1.0,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: 11,
                ..SamplerConfig::default()
            },
            ..GenerateOptions::default()
        }
    }

    fn turn(c: &mut Conversation, user: &str) -> Vec<u32> {
        c.reply(user, &opts(), |_| {}).unwrap().tokens
    }

    #[test]
    fn later_turns_continue_the_random_stream() {
        let mut carried = conversation();
        let mut restarted = conversation();
        assert_eq!(turn(&mut carried, "hi"), turn(&mut restarted, "hi"));
        // Both hold the same conversation; only the second starts its draws over, as
        // a sampler seeded again for every turn would.
        restarted.sampler = None;
        let second = turn(&mut carried, "and then?");
        assert_ne!(second, turn(&mut restarted, "and then?"));
    }

    #[test]
    fn the_same_seed_replays_the_whole_conversation() {
        let turns = |c: &mut Conversation| [turn(c, "hi"), turn(c, "and then?")];
        let first = turns(&mut conversation());
        assert_eq!(first, turns(&mut conversation()));
        assert_ne!(first[0], first[1]);
    }
}
