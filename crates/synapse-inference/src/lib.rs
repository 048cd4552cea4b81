//! Synapse inference: turns a model file into text. Model configuration, the model
//! families' forward passes, tokenizers, the KV cache and generation.

pub mod bench;
#[cfg(feature = "chat-template")]
pub mod chat;
mod clock;
pub mod config;
#[cfg(feature = "chat-template")]
pub mod conversation;
#[cfg(feature = "fetch")]
pub mod default_model;
pub mod engine;
pub mod error;
pub mod generation;
// Hugging Face checkpoints: every native build reads them; the browser module does not.
#[cfg(feature = "hf")]
pub mod hf;
pub mod kv_cache;
pub mod model;
pub mod precision;
pub mod session;
pub mod tokenizer;
#[cfg(feature = "chat-template")]
pub mod tools;

pub use config::ModelConfig;
pub use engine::{Batch, Engine, Logits};
pub use error::{Error, Result};
pub use kv_cache::SeqId;
pub use session::{Model, Session, SessionOptions};
