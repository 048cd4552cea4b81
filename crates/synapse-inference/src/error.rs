//! The errors of loading and running a model.

use synapse_core::gguf::{GgufError, GgufErrorKind};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[cfg(feature = "hf")]
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
    /// The caller cancelled the work. Calls that can keep partial output (`generate`)
    /// report cancellation as `StopReason::Cancelled` instead; this is for those with no
    /// partial result to give back.
    #[error("cancelled")]
    Cancelled,
    /// A grammar or schema for constrained decoding that cannot be used.
    #[error("invalid constraint: {reason}")]
    BadConstraint { reason: String },
    /// A backend's device cannot hold or run what it was given (the message names the
    /// tensor).
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for the doors that report errors in their own
/// terms: each kind is meant to map one-to-one onto a C ABI status code, a Python
/// exception class and an HTTP status (400, 500, 422, 501, 400, 499, 500 in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller asked for something impossible (a bad token id, an empty prompt, a
    /// conversation the chat template rejects).
    InvalidArgument,
    /// A file or download could not be read or written.
    Io,
    /// A model, tokenizer or chat template file is malformed.
    BadFormat,
    /// A well-formed input that Synapse does not support (an architecture, a tensor type).
    Unsupported,
    /// The tokens do not fit the session's context.
    ContextFull,
    /// The caller cancelled the work.
    Cancelled,
    /// A bug in Synapse: for the doors, which report a caught panic with it.
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Gguf(e) => gguf_kind(&e.kind),
            #[cfg(feature = "hf")]
            Error::Hf(e) => hf_kind(e),
            Error::Tokenizer(e) => tokenizer_kind(e),
            #[cfg(feature = "chat-template")]
            Error::ChatTemplate(e) => chat_template_kind(e),
            Error::MissingMetadata { .. }
            | Error::BadMetadata { .. }
            | Error::MissingTensor { .. }
            | Error::BadShape { .. } => ErrorKind::BadFormat,
            Error::UnsupportedArchitecture { .. } | Error::NoTokenizer { .. } => {
                ErrorKind::Unsupported
            }
            Error::ContextOverflow { .. } => ErrorKind::ContextFull,
            Error::KvMemoryFull { .. } => ErrorKind::ContextFull,
            Error::BadTokenId { .. }
            | Error::EmptyPrompt
            | Error::UnknownSequence { .. }
            | Error::BatchTooLarge { .. }
            | Error::BadConstraint { .. } => ErrorKind::InvalidArgument,
            Error::Device { .. } => ErrorKind::Unsupported,
            Error::Fetch(_) => ErrorKind::Io,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }
}

fn gguf_kind(kind: &GgufErrorKind) -> ErrorKind {
    match kind {
        GgufErrorKind::Io(_) => ErrorKind::Io,
        GgufErrorKind::UnsupportedVersion(_) | GgufErrorKind::UnknownTensorType { .. } => {
            ErrorKind::Unsupported
        }
        // Every other way a GGUF file can be wrong is a malformed file.
        _ => ErrorKind::BadFormat,
    }
}

#[cfg(feature = "hf")]
fn hf_kind(e: &crate::hf::Error) -> ErrorKind {
    use crate::hf::Error as Hf;
    match e {
        Hf::Io { .. } | Hf::MissingShard { .. } => ErrorKind::Io,
        Hf::UnsupportedDType { .. } | Hf::UnsupportedRank { .. } => ErrorKind::Unsupported,
        _ => ErrorKind::BadFormat,
    }
}

fn tokenizer_kind(e: &crate::tokenizer::TokenizerError) -> ErrorKind {
    use crate::tokenizer::TokenizerError as Tok;
    match e {
        Tok::Io { .. } => ErrorKind::Io,
        Tok::UnsupportedModel(_) | Tok::UnsupportedPreTokenizer(_) => ErrorKind::Unsupported,
        _ => ErrorKind::BadFormat,
    }
}

#[cfg(feature = "chat-template")]
fn chat_template_kind(e: &crate::chat::ChatTemplateError) -> ErrorKind {
    use crate::chat::ChatTemplateError as Chat;
    match e {
        // The template itself refused these messages (e.g. roles not alternating).
        Chat::Raised(_) => ErrorKind::InvalidArgument,
        Chat::Syntax { .. } | Chat::Render { .. } => ErrorKind::BadFormat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "gone")
    }

    #[test]
    fn every_kind_has_a_representative_error() {
        let gguf = |kind| {
            Error::from(GgufError {
                file: "m.gguf".into(),
                kind,
            })
        };
        let cases = [
            (Error::EmptyPrompt, ErrorKind::InvalidArgument),
            (
                Error::BadTokenId { id: 9, vocab: 4 },
                ErrorKind::InvalidArgument,
            ),
            (gguf(GgufErrorKind::Io(io_error())), ErrorKind::Io),
            (
                Error::from(crate::hf::Error::Io {
                    path: "config.json".into(),
                    source: io_error(),
                }),
                ErrorKind::Io,
            ),
            (
                Error::from(crate::tokenizer::TokenizerError::Io {
                    path: "tokenizer.json".into(),
                    source: io_error(),
                }),
                ErrorKind::Io,
            ),
            (
                gguf(GgufErrorKind::BadMagic(*b"GGML")),
                ErrorKind::BadFormat,
            ),
            (
                Error::from(crate::hf::Error::BadJson {
                    path: "config.json".into(),
                    reason: "eof".into(),
                }),
                ErrorKind::BadFormat,
            ),
            (
                Error::from(crate::tokenizer::TokenizerError::MissingKey("tokens")),
                ErrorKind::BadFormat,
            ),
            (
                gguf(GgufErrorKind::UnsupportedVersion(1)),
                ErrorKind::Unsupported,
            ),
            (
                Error::UnsupportedArchitecture {
                    file: "m.gguf".into(),
                    arch: "rwkv".into(),
                    supported: "llama".into(),
                },
                ErrorKind::Unsupported,
            ),
            (
                Error::from(crate::tokenizer::TokenizerError::UnsupportedModel(
                    "t5".into(),
                )),
                ErrorKind::Unsupported,
            ),
            (
                Error::ContextOverflow {
                    prompt: 10,
                    already: 0,
                    context: 8,
                },
                ErrorKind::ContextFull,
            ),
            (
                Error::KvMemoryFull {
                    pages: 1,
                    page_bytes: 4096,
                },
                ErrorKind::ContextFull,
            ),
            (Error::UnknownSequence { id: 3 }, ErrorKind::InvalidArgument),
            (Error::Cancelled, ErrorKind::Cancelled),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
        }
    }

    #[cfg(feature = "chat-template")]
    #[test]
    fn a_template_rejecting_the_conversation_is_the_callers_error() {
        use crate::chat::ChatTemplateError;
        let raised = Error::from(ChatTemplateError::Raised("roles must alternate".into()));
        assert_eq!(raised.kind(), ErrorKind::InvalidArgument);
        let syntax = Error::from(ChatTemplateError::Syntax {
            message: "unexpected end".into(),
            line: Some(1),
        });
        assert_eq!(syntax.kind(), ErrorKind::BadFormat);
    }
}
