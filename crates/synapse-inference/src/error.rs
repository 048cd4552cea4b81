//! The errors of loading and running a model.

use synapse_core::gguf::GgufError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Hf(#[from] crate::hf::Error),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[cfg(feature = "chat-template")]
    #[error(transparent)]
    ChatTemplate(#[from] crate::chat::ChatTemplateError),
    #[error("{file}: metadata key {key:?} is missing")]
    MissingMetadata { file: String, key: String },
    #[error("{file}: metadata key {key:?}: {reason}")]
    BadMetadata {
        file: String,
        key: String,
        reason: String,
    },
    #[error("{file}: architecture {arch:?} is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        file: String,
        arch: String,
        supported: String,
    },
    #[error("{file}: tensor {tensor:?} is missing")]
    MissingTensor { file: String, tensor: String },
    #[error("{file}: tensor {tensor:?} has shape {found}, expected {expected}")]
    BadShape {
        file: String,
        tensor: String,
        found: String,
        expected: String,
    },
    #[error("prompt of {prompt} tokens plus {already} already in context does not fit the context of {context} tokens")]
    ContextOverflow {
        prompt: usize,
        already: usize,
        context: usize,
    },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadTokenId { id: u32, vocab: usize },
    #[error("{path}: the model has no tokenizer; give the prompt as token ids")]
    NoTokenizer { path: String },
    #[error("empty prompt: at least one token is needed")]
    EmptyPrompt,
    #[error("{0}")]
    Fetch(String),
    #[error("sequence {id} does not exist (it was removed, or belongs to another pool)")]
    UnknownSequence { id: u32 },
    #[error("{tokens} tokens of one sequence in a forward pass: a sliding-window cache takes at most {most}")]
    BatchTooLarge { tokens: usize, most: usize },
    #[error("the key/value memory is full: {pages} more pages of {page_bytes} bytes are needed")]
    KvMemoryFull { pages: usize, page_bytes: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
