//! Synapse inference: turns a model file into text. Model configuration, the model
//! families' forward passes, tokenizers, the KV cache and generation.

pub mod config;
pub mod error;
pub mod kv_cache;
pub mod model;
pub mod session;
pub mod tokenizer;

pub use config::ModelConfig;
pub use error::{Error, Result};
pub use session::{Model, Session, SessionOptions};
