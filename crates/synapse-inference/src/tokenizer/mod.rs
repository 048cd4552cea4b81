//! Tokenizers: text to token ids and back, from a GGUF file's `tokenizer.ggml.*` metadata
//! or a Hugging Face model folder (`tokenizer.json`, `tokenizer_config.json`).
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, LLaMA 3, Qwen, SmolLM, ...) and
//! SentencePiece-style vocabularies (`"llama"`: Llama 2, Mistral, Phi-3) tokenize exactly
//! as llama.cpp does (tests/tokenizer_conformance.rs runs llama.cpp's own test
//! vocabularies); `tokenizer.json` files tokenize as Hugging Face's `tokenizers` does
//! (tests/tokenizer_hf.rs).

mod bpe;
mod byte_level;
#[cfg(feature = "hf")]
mod hf;
mod pretokenize;
#[cfg(feature = "hf")]
mod sp_model;
mod special;
mod spm;
mod stream;

pub use pretokenize::{set_char_classifier, CharClass};
pub use stream::StreamDecoder;

use bpe::Merges;
use pretokenize::PreTokenizer;
use special::{Fragment, Special, SpecialTokens};
use spm::{Spm, SPACE};
use std::collections::HashMap;
use std::path::PathBuf;
use synapse_core::gguf::{GgufFile, Value};

/// `text` in Unicode normalization form C.
#[cfg(feature = "unicode-tables")]
fn nfc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect()
}

/// Without the tables no tokenizer asks for NFC (hf.rs refuses the normalizer).
#[cfg(not(feature = "unicode-tables"))]
fn nfc(text: &str) -> String {
    text.to_string()
}

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// Texts of tokens that end generation (llama.cpp's list, FIM padding/separators
/// included); such tokens are treated as control tokens whatever their type says.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "[PAD]",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("metadata key {0} is missing")]
    MissingKey(&'static str),
    #[error("metadata key {key}: expected {expected}, found {found}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{KEY_MODEL} = {0:?} is not supported (only \"gpt2\", byte-level BPE, and \"llama\", SentencePiece)")]
    UnsupportedModel(String),
    #[error("{KEY_PRE} = {0:?} is not a pre-tokenizer Synapse knows")]
    UnsupportedPreTokenizer(String),
    #[error("{KEY_TOKENS}: {text:?} appears at ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{key} has {found} entries for {expected} tokens")]
    TooFewEntries {
        key: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{KEY_MERGES}[{index}] = {text:?} is not two symbols separated by a space")]
    MalformedMerge { index: usize, text: String },
    #[error("{flag} is true but {id_key} is not set to a token id")]
    MissingSpecialToken {
        flag: &'static str,
        id_key: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[cfg(feature = "hf")]
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A `tokenizer.json` that asks for NFC normalization, in a build without the
    /// `unicode-tables` feature.
    #[error("{}: normalizer NFC needs the Unicode tables that this build leaves out (the unicode-tables feature of synapse-inference)", path.display())]
    NfcUnavailable { path: PathBuf },
    /// A field of a Hugging Face tokenizer file (or SentencePiece model) that Synapse
    /// cannot use.
    #[error("{}: {field}: {problem}", path.display())]
    BadField {
        path: PathBuf,
        field: String,
        problem: String,
    },
}

/// What a token is, from `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TokenKind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
    Undefined,
}

impl TokenKind {
    fn from_type(t: i64) -> TokenKind {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }
}

/// When a SentencePiece-style tokenizer puts a ▁ before a stretch of text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prepend {
    Never,
    /// Only before the text at the very start of the input, unless it starts with a space
    /// (Hugging Face's Metaspace with `prepend_scheme: "first"`).
    #[cfg_attr(not(feature = "hf"), allow(dead_code))] // tokenizer.json only
    First,
    /// Before every stretch between special tokens that does not start with a space
    /// (Metaspace, `"always"`).
    #[cfg_attr(not(feature = "hf"), allow(dead_code))] // tokenizer.json only
    Always,
    /// Before every stretch between special tokens (llama.cpp's add_space_prefix, and
    /// Hugging Face's `Prepend("▁")` normalizer).
    Unconditional,
}

/// How SentencePiece-style text is cut before the model sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SpSplit {
    None,
    /// Each ▁ starts a new piece (Metaspace `split: true`).
    #[cfg_attr(not(feature = "hf"), allow(dead_code))] // tokenizer.json only
    BeforeSpaces,
    /// Runs of newlines apart from the rest (llama.cpp's Gemma 4, `[^\n]+|[\n]+`).
    Newlines,
}

/// How a piece of SentencePiece-style text becomes tokens.
enum SpAlgorithm {
    /// llama.cpp's: by token scores, bytes for the rest.
    Scores(Spm),
    /// Hugging Face's BPE over characters; characters that are not tokens become their
    /// byte tokens (`byte_fallback`) or the unknown token.
    Bpe {
        merges: Merges,
        bytes: Option<Box<[Option<u32>; 256]>>,
        fuse_unk: bool,
        ignore_merges: bool,
    },
}

/// How text becomes tokens.
enum Model {
    /// Bytes spelled in GPT-2's byte alphabet, split by a pre-tokenizer, then BPE merges.
    ByteLevel {
        merges: Merges,
        pre: PreTokenizer,
        /// A piece that is a whole token is taken as is, without merging (LLaMA 3).
        ignore_merges: bool,
        /// A space goes before every stretch of text that does not start with one.
        add_prefix_space: bool,
    },
    /// Spaces written as ▁.
    SentencePiece {
        prepend: Prepend,
        split: SpSplit,
        algorithm: SpAlgorithm,
    },
}

/// A tokenizer: byte-level BPE or SentencePiece-style.
pub struct Tokenizer {
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    ids: HashMap<String, u32>,
    model: Model,
    specials: SpecialTokens,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    end_of_generation: Vec<u32>,
    chat_template: Option<String>,
    nfc: bool,
}

/// The parts of a tokenizer that every source gives; [`Tokenizer::assemble`] finishes it.
struct Parts {
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    ids: HashMap<String, u32>,
    model: Model,
    /// Added tokens of a `tokenizer.json`; None: from the kinds, as llama.cpp does.
    added: Option<Vec<Special>>,
    /// llama.cpp's Phi-3 rule: special tokens swallow the whitespace after them.
    phi3: bool,
    /// Text is put in Unicode normalization form C first (a `NFC` normalizer).
    nfc: bool,
    bos: Option<u32>,
    eos: Option<u32>,
    /// EOT, EOM and the FIM padding/repository/separator tokens.
    extra_eog: Vec<Option<u32>>,
    pad: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
}

/// The id of each piece; empty pieces (broken conversions) cannot be looked up. A repeated
/// piece is an error unless `last_wins`.
fn index_pieces(
    pieces: &[String],
    last_wins: bool,
) -> Result<HashMap<String, u32>, TokenizerError> {
    let mut ids = HashMap::with_capacity(pieces.len());
    for (id, text) in pieces.iter().enumerate() {
        if text.is_empty() {
            continue;
        }
        if let Some(first) = ids.insert(text.clone(), id as u32).filter(|_| !last_wins) {
            return Err(TokenizerError::DuplicateToken {
                text: text.clone(),
                first,
                second: id as u32,
            });
        }
    }
    Ok(ids)
}

impl Tokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_metadata(|key| gguf.get(key))
    }

    /// The tokenizer of a Hugging Face model folder: `tokenizer.json` (with
    /// `tokenizer_config.json` and `chat_template.jinja` where present), else a
    /// SentencePiece `tokenizer.model`. `Ok(None)` when the folder has neither.
    #[cfg(feature = "hf")]
    pub fn from_hf_dir(dir: &std::path::Path) -> Result<Option<Tokenizer>, TokenizerError> {
        hf::load_dir(dir)
    }

    fn from_metadata<'a>(
        get: impl Fn(&str) -> Option<&'a Value>,
    ) -> Result<Tokenizer, TokenizerError> {
        let meta = Metadata(&get);
        let model_name = meta.string(KEY_MODEL)?;
        let (spm, gemma4) = match model_name {
            "gpt2" => (false, false),
            "llama" => (true, false),
            "gemma4" => (false, true),
            _ => return Err(TokenizerError::UnsupportedModel(model_name.to_string())),
        };

        let pieces: Vec<String> = meta
            .array(KEY_TOKENS)?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_element(KEY_TOKENS, "an array of strings", v))
            })
            .collect::<Result<_, _>>()?;
        let n = pieces.len();
        // Gemma 4's vocabulary repeats a few strings; llama.cpp keeps the last id.
        let ids = index_pieces(&pieces, gemma4)?;

        let mut kinds = vec![TokenKind::Normal; n];
        if let Some(types) = meta.entries(KEY_TOKEN_TYPE, n)? {
            for (kind, v) in kinds.iter_mut().zip(types) {
                let t = v
                    .as_i64()
                    .ok_or_else(|| wrong_element(KEY_TOKEN_TYPE, "an array of integers", v))?;
                *kind = TokenKind::from_type(t);
            }
        }

        // llama.cpp's defaults for SentencePiece vocabularies; the keys override them.
        let default_id = |id: u32| (spm && (id as usize) < n).then_some(id);
        let bos = meta.token_id(KEY_BOS, n)?.or(default_id(1));
        let eos = meta.token_id(KEY_EOS, n)?.or(default_id(2));
        let unk = meta.token_id(KEY_UNK, n)?.or(default_id(0));
        let (model, bos_by_default) = if spm {
            let mut scores = vec![0.0; n];
            if let Some(values) = meta.entries(KEY_SCORES, n)? {
                for (score, v) in scores.iter_mut().zip(values) {
                    *score = v
                        .as_f64()
                        .ok_or_else(|| wrong_element(KEY_SCORES, "an array of numbers", v))?
                        as f32;
                }
            }
            let add_space_prefix = meta.bool(KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
            let model = Model::SentencePiece {
                prepend: if add_space_prefix {
                    Prepend::Unconditional
                } else {
                    Prepend::Never
                },
                split: SpSplit::None,
                algorithm: SpAlgorithm::Scores(Spm::new(&ids, scores, unk)),
            };
            (model, false)
        } else if gemma4 {
            // BPE over characters with spaces as ▁, bytes for characters without a token,
            // and a piece that is a whole token (a newline run) taken as is.
            let model = Model::SentencePiece {
                prepend: Prepend::Never,
                split: SpSplit::Newlines,
                algorithm: SpAlgorithm::Bpe {
                    merges: gguf_merges(meta.array(KEY_MERGES)?, &ids, n)?,
                    bytes: Some(spm::byte_tokens(&ids)),
                    fuse_unk: false,
                    ignore_merges: true,
                },
            };
            (model, true)
        } else {
            let pre_name = meta.string(KEY_PRE)?;
            let (pre, llama3) = PreTokenizer::from_name(pre_name)
                .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre_name.to_string()))?;
            let merges = gguf_merges(meta.array(KEY_MERGES)?, &ids, n)?;
            let model = Model::ByteLevel {
                merges,
                pre,
                ignore_merges: llama3,
                add_prefix_space: false,
            };
            (model, llama3)
        };

        // llama.cpp adds BOS by default for SentencePiece, Gemma 4 and LLaMA 3 vocabularies.
        let add_bos = meta.bool(KEY_ADD_BOS)?.unwrap_or(spm || bos_by_default);
        let add_eos = meta.bool(KEY_ADD_EOS)?.unwrap_or(false);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: KEY_ADD_BOS,
                id_key: KEY_BOS,
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::MissingSpecialToken {
                flag: KEY_ADD_EOS,
                id_key: KEY_EOS,
            });
        }
        let mut extra_eog = Vec::new();
        for key in [
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
        ] {
            extra_eog.push(meta.token_id(key, n)?);
        }
        let chat_template = match meta.optional(KEY_CHAT_TEMPLATE) {
            Some(_) => Some(meta.string(KEY_CHAT_TEMPLATE)?.to_string()),
            None => None,
        };

        Ok(Tokenizer::assemble(Parts {
            pieces,
            kinds,
            ids,
            model,
            added: None,
            phi3: meta
                .optional("general.name")
                .and_then(Value::as_str)
                .is_some_and(|name| {
                    // ASCII case only, as llama.cpp (and no Unicode case tables).
                    let name = name.to_ascii_lowercase();
                    name.contains("phi-3") || name.contains("phi3")
                }),
            nfc: false,
            bos,
            eos,
            extra_eog,
            pad: meta.token_id("tokenizer.ggml.padding_token_id", n)?,
            unk,
            add_bos,
            add_eos,
            chat_template,
        }))
    }

    fn assemble(parts: Parts) -> Tokenizer {
        let Parts {
            pieces,
            mut kinds,
            ids,
            model,
            added,
            phi3,
            nfc,
            bos,
            eos,
            extra_eog,
            pad,
            unk,
            add_bos,
            add_eos,
            chat_template,
        } = parts;
        let by_id = [eos].into_iter().chain(extra_eog).flatten().collect();
        let end_of_generation = end_of_generation_ids(&ids, &mut kinds, by_id);
        let specials = match added {
            Some(added) => SpecialTokens::new(added, true),
            None => {
                let specials =
                    kinds
                        .iter()
                        .zip(&pieces)
                        .enumerate()
                        .filter_map(|(id, (kind, text))| {
                            let parse_only = match kind {
                                TokenKind::Control | TokenKind::Unknown => true,
                                TokenKind::UserDefined => false,
                                _ => return None,
                            };
                            Some(Special {
                                id: id as u32,
                                text: text.clone(),
                                parse_only,
                                lstrip: false,
                                rstrip: phi3
                                    && !["<unk>", "<s>", "<|endoftext|>"].contains(&text.as_str()),
                            })
                        });
                SpecialTokens::new(specials, false)
            }
        };
        Tokenizer {
            pieces,
            kinds,
            ids,
            model,
            specials,
            bos,
            eos,
            pad,
            unk,
            add_bos,
            add_eos,
            end_of_generation,
            chat_template,
            nfc,
        }
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS where the model asks for them
    /// (`tokenizer.ggml.add_bos_token` / `add_eos_token`); `parse_special` turns the
    /// text of control tokens such as `<|im_start|>` into their ids (user-defined tokens
    /// are always recognised, as in llama.cpp).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        for fragment in self.specials.split(text, parse_special) {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(piece) => {
                    let at_start = std::ptr::eq(piece.as_ptr(), text.as_ptr());
                    if self.nfc {
                        self.encode_text(&nfc(piece), at_start, &mut out)
                    } else {
                        self.encode_text(piece, at_start, &mut out)
                    }
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// Tokens of a stretch of text between special tokens; `at_start`: it begins the input.
    fn encode_text(&self, text: &str, at_start: bool, out: &mut Vec<u32>) {
        match &self.model {
            Model::ByteLevel {
                merges,
                pre,
                ignore_merges,
                add_prefix_space,
            } => {
                let spaced;
                let text = if *add_prefix_space && !text.starts_with(' ') {
                    spaced = format!(" {text}");
                    &spaced
                } else {
                    text
                };
                let mut spelled = String::new();
                pre.split(text, |piece| {
                    if *ignore_merges {
                        spelled.clear();
                        byte_level::encode_into(piece.as_bytes(), &mut spelled);
                        if let Some(&id) = self.ids.get(&spelled) {
                            out.push(id);
                            return;
                        }
                    }
                    merges.encode(piece.as_bytes(), out);
                })
            }
            Model::SentencePiece {
                prepend,
                split,
                algorithm,
            } => {
                let starts_spaced = text.starts_with([' ', SPACE]);
                let prepend = match prepend {
                    Prepend::Never => false,
                    Prepend::First => at_start && !starts_spaced,
                    Prepend::Always => !starts_spaced,
                    Prepend::Unconditional => true,
                };
                let mut escaped = String::with_capacity(text.len() + 3);
                if prepend {
                    escaped.push(SPACE);
                }
                escaped.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));
                // Piece boundaries: where a piece starts, given the previous character.
                let starts = |prev: char, c: char| match split {
                    SpSplit::None => false,
                    SpSplit::BeforeSpaces => c == SPACE,
                    SpSplit::Newlines => (prev == '\n') != (c == '\n'),
                };
                let mut start = 0;
                let mut prev = None;
                for (i, c) in escaped.char_indices() {
                    if prev.is_some_and(|p| starts(p, c)) {
                        self.encode_sp_piece(algorithm, &escaped[start..i], out);
                        start = i;
                    }
                    prev = Some(c);
                }
                self.encode_sp_piece(algorithm, &escaped[start..], out);
            }
        }
    }

    fn encode_sp_piece(&self, algorithm: &SpAlgorithm, piece: &str, out: &mut Vec<u32>) {
        if piece.is_empty() {
            return;
        }
        match algorithm {
            SpAlgorithm::Scores(spm) => spm.encode(&self.ids, piece, out),
            SpAlgorithm::Bpe {
                merges,
                bytes,
                fuse_unk,
                ignore_merges,
            } => {
                if *ignore_merges {
                    if let Some(&id) = self.ids.get(piece) {
                        out.push(id);
                        return;
                    }
                }
                let mut units = Vec::with_capacity(piece.len());
                let mut last_unknown = false;
                for c in piece.chars() {
                    let mut buf = [0; 4];
                    let c = c.encode_utf8(&mut buf);
                    if let Some(&id) = self.ids.get(c as &str) {
                        units.push(id);
                        last_unknown = false;
                        continue;
                    }
                    let fallback: Option<Vec<u32>> = bytes
                        .as_ref()
                        .and_then(|bytes| c.bytes().map(|b| bytes[b as usize]).collect());
                    if let Some(fallback) = fallback {
                        units.extend(fallback);
                        last_unknown = false;
                    } else if let Some(unk) = self.unk {
                        if !(*fuse_unk && last_unknown) {
                            units.push(unk);
                        }
                        last_unknown = true;
                    }
                }
                merges.encode_units(&units, out);
            }
        }
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD. Control tokens give their text.
    /// SentencePiece-style tokenizers that put a ▁ before the text drop the leading space
    /// of the first token, as llama.cpp and Hugging Face do.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let start = bytes.len();
            self.append_bytes(id, &mut bytes);
            if i == 0 && self.strips_leading_space() && bytes.get(start) == Some(&b' ') {
                bytes.remove(start);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn strips_leading_space(&self) -> bool {
        matches!(self.model, Model::SentencePiece { prepend, .. } if prepend != Prepend::Never)
    }

    /// The bytes token `id` stands for: control, user-defined and unknown tokens give
    /// their text; unused tokens and ids out of range give nothing.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.append_bytes(id, &mut bytes);
        bytes
    }

    fn append_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let (Some(piece), Some(kind)) = (self.pieces.get(id as usize), self.kinds.get(id as usize))
        else {
            return;
        };
        match kind {
            TokenKind::Normal => match self.model {
                Model::ByteLevel { .. } => byte_level::decode_into(piece, out),
                Model::SentencePiece { .. } => {
                    for c in piece.chars() {
                        let c = if c == SPACE { ' ' } else { c };
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                }
            },
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown => {
                out.extend_from_slice(piece.as_bytes())
            }
            TokenKind::Byte => out.extend(spm::byte_of_piece(piece)),
            TokenKind::Unused | TokenKind::Undefined => {}
        }
    }

    /// The vocabulary entry for `id` as stored (byte-level spelling, e.g. "Ġthe", or
    /// SentencePiece's, e.g. "▁the"); empty for ids out of range.
    pub fn piece(&self, id: u32) -> &str {
        self.pieces.get(id as usize).map_or("", String::as_str)
    }

    /// The id of the vocabulary entry spelled exactly `text` (see [`Tokenizer::piece`]).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.kinds.get(id as usize) == Some(&TokenKind::Control)
    }

    /// Tokens that end generation, sorted: EOS, EOT, EOM and tokens whose text marks
    /// an end (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`, ...), as llama.cpp decides.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// The chat template: GGUF `tokenizer.chat_template`, or from a Hugging Face folder
    /// (`chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`).
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}

/// `tokenizer.ggml.merges`: "left right" strings in rank order.
fn gguf_merges(
    texts: &[Value],
    ids: &HashMap<String, u32>,
    n: usize,
) -> Result<Merges, TokenizerError> {
    let mut merges = Vec::with_capacity(texts.len());
    for (index, v) in texts.iter().enumerate() {
        let text = v
            .as_str()
            .ok_or_else(|| wrong_element(KEY_MERGES, "an array of strings", v))?;
        // Split at the first space after the first character, as llama.cpp does.
        let at = text
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map(|(i, _)| i);
        let Some(at) = at else {
            return Err(TokenizerError::MalformedMerge {
                index,
                text: text.to_string(),
            });
        };
        merges.push((&text[..at], &text[at + 1..]));
    }
    Ok(Merges::new(ids, n as u32, merges))
}

/// llama.cpp's end-of-generation set. Tokens found by their text become control tokens.
fn end_of_generation_ids(
    ids: &HashMap<String, u32>,
    kinds: &mut [TokenKind],
    by_id: Vec<u32>,
) -> Vec<u32> {
    let mut eog = by_id;
    for text in END_OF_GENERATION_TEXTS {
        if let Some(&id) = ids.get(*text) {
            kinds[id as usize] = TokenKind::Control;
            eog.push(id);
        }
    }
    let has = |eog: &[u32], text: &str| ids.get(text).is_some_and(|id| eog.contains(id));
    // gpt-oss and Solar Open end a message with <|end|> but keep generating after it.
    if (has(&eog, "<|return|>") && has(&eog, "<|call|>"))
        || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>"))
    {
        if let Some(&end) = ids.get("<|end|>") {
            eog.retain(|&id| id != end);
            kinds[end as usize] = TokenKind::UserDefined;
        }
    }
    // Gemma 4 uses </s> inside tool responses.
    if has(&eog, "<|tool_response>") {
        if let Some(&s) = ids.get("</s>") {
            eog.retain(|&id| id != s);
            kinds[s as usize] = TokenKind::Normal;
        }
    }
    eog.sort_unstable();
    eog.dedup();
    eog
}

fn wrong_element(key: &'static str, expected: &'static str, found: &Value) -> TokenizerError {
    TokenizerError::WrongType {
        key,
        expected,
        found: format!("an array holding a {}", found.type_name()),
    }
}

/// Typed access to the metadata, with errors naming the key.
struct Metadata<'f, F>(&'f F);

impl<'a, F: Fn(&str) -> Option<&'a Value>> Metadata<'_, F> {
    fn optional(&self, key: &'static str) -> Option<&'a Value> {
        (self.0)(key)
    }

    fn required(&self, key: &'static str) -> Result<&'a Value, TokenizerError> {
        self.optional(key).ok_or(TokenizerError::MissingKey(key))
    }

    fn wrong_type(key: &'static str, expected: &'static str, found: &Value) -> TokenizerError {
        TokenizerError::WrongType {
            key,
            expected,
            found: found.type_name().to_string(),
        }
    }

    fn string(&self, key: &'static str) -> Result<&'a str, TokenizerError> {
        let v = self.required(key)?;
        v.as_str()
            .ok_or_else(|| Self::wrong_type(key, "a string", v))
    }

    fn array(&self, key: &'static str) -> Result<&'a [Value], TokenizerError> {
        let v = self.required(key)?;
        v.as_array()
            .ok_or_else(|| Self::wrong_type(key, "an array", v))
    }

    /// An optional array with an entry per token.
    fn entries(&self, key: &'static str, n: usize) -> Result<Option<&'a [Value]>, TokenizerError> {
        let Some(values) = self.optional(key).map(|_| self.array(key)).transpose()? else {
            return Ok(None);
        };
        if values.len() < n {
            return Err(TokenizerError::TooFewEntries {
                key,
                expected: n,
                found: values.len(),
            });
        }
        Ok(Some(values))
    }

    fn bool(&self, key: &'static str) -> Result<Option<bool>, TokenizerError> {
        let Some(v) = self.optional(key) else {
            return Ok(None);
        };
        v.as_bool()
            .map(Some)
            .ok_or_else(|| Self::wrong_type(key, "a bool", v))
    }

    /// A token id; one outside the vocabulary counts as unset, as llama.cpp ignores it.
    fn token_id(&self, key: &'static str, n_vocab: usize) -> Result<Option<u32>, TokenizerError> {
        let Some(v) = self.optional(key) else {
            return Ok(None);
        };
        let id = v
            .as_i64()
            .ok_or_else(|| Self::wrong_type(key, "an integer", v))?;
        Ok(u32::try_from(id).ok().filter(|&id| (id as usize) < n_vocab))
    }
}

/// The small vocabulary of this module's tests, for tests elsewhere in the crate: 256
/// byte tokens (id = byte), "hi" (256), `<|im_start|>` (257), `<|im_end|>` (258, its end
/// of generation) and `<tool>` (259).
#[cfg(test)]
pub(crate) fn test_tokenizer() -> Tokenizer {
    tests::load(&tests::metadata()).expect("the test vocabulary loads")
}

#[cfg(test)]
mod tests {
    use super::*;

    const IM_START: u32 = 257;
    const IM_END: u32 = 258;
    const TOOL: u32 = 259;

    /// A byte-level vocabulary: the 256 byte characters (id = byte), "hi" from one merge,
    /// two control tokens and a user-defined one.
    pub(super) fn metadata() -> Vec<(&'static str, Value)> {
        let mut tokens: Vec<Value> = (0..=255u8)
            .map(|b| Value::String(byte_level::byte_to_char(b).into()))
            .collect();
        let mut types = vec![Value::I32(1); 256];
        for (text, t) in [
            ("hi", 1),
            ("<|im_start|>", 3),
            ("<|im_end|>", 3),
            ("<tool>", 4),
        ] {
            tokens.push(Value::String(text.into()));
            types.push(Value::I32(t));
        }
        vec![
            (KEY_MODEL, Value::String("gpt2".into())),
            (KEY_PRE, Value::String("qwen2".into())),
            (KEY_TOKENS, Value::Array(tokens)),
            (KEY_TOKEN_TYPE, Value::Array(types)),
            (KEY_MERGES, Value::Array(vec![Value::String("h i".into())])),
            (KEY_BOS, Value::U32(IM_START)),
            (KEY_EOS, Value::U32(IM_END)),
        ]
    }

    pub(super) fn load(meta: &[(&str, Value)]) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_metadata(|key| meta.iter().find(|(k, _)| *k == key).map(|(_, v)| v))
    }

    fn with(key: &'static str, value: Value) -> Vec<(&'static str, Value)> {
        let mut meta: Vec<_> = metadata().into_iter().filter(|(k, _)| *k != key).collect();
        meta.push((key, value));
        meta
    }

    #[test]
    fn special_token_text_is_parsed_only_when_asked() {
        let tok = load(&metadata()).unwrap();
        let text = "<|im_start|>hi<tool>";
        assert_eq!(tok.encode(text, false, true), [IM_START, 256, TOOL]);
        // Control tokens are plain text then; user-defined ones are still recognised.
        let plain: Vec<u32> = "<|im_start|>"
            .bytes()
            .map(u32::from)
            .chain([256, TOOL])
            .collect();
        assert_eq!(tok.encode(text, false, false), plain);
        assert_eq!(tok.decode(&plain), text);
        assert_eq!(tok.decode(&[IM_START, 256]), "<|im_start|>hi");

        // BOS only where the model asks for it (never by default for qwen2).
        assert_eq!(tok.encode("hi", true, false), [256]);
        let tok = load(&with(KEY_ADD_BOS, Value::Bool(true))).unwrap();
        assert_eq!(tok.encode("hi", true, false), [IM_START, 256]);
        assert_eq!(tok.end_of_generation_ids(), [IM_END]);
        assert!(tok.is_control(IM_END) && !tok.is_control(TOOL));
        assert_eq!(tok.token_id("<tool>"), Some(TOOL));
        assert_eq!(tok.piece(b' '.into()), "Ġ");
    }

    #[test]
    fn stream_decoder_holds_back_a_split_character() {
        let tok = load(&metadata()).unwrap();
        let emoji = "😀";
        let ids = tok.encode(emoji, false, false);
        assert_eq!(ids.len(), 4); // one token per byte in this vocabulary
        let mut stream = StreamDecoder::new();
        let out: Vec<String> = ids.iter().map(|&id| stream.push(&tok, id)).collect();
        assert_eq!(out, ["", "", "", emoji]);
        assert_eq!(stream.finish(), "");

        // An unfinished character comes out lossy at the end; a stray byte at once.
        assert_eq!(stream.push(&tok, ids[0]), "");
        assert_eq!(stream.push(&tok, b'a'.into()), "\u{FFFD}a");
        assert_eq!(stream.push(&tok, ids[0]), "");
        assert_eq!(stream.finish(), "\u{FFFD}");
    }

    #[test]
    fn malformed_vocabularies_are_errors() {
        let err =
            |meta: Vec<(&'static str, Value)>| load(&meta).err().expect("an error").to_string();
        let missing: Vec<_> = metadata()
            .into_iter()
            .filter(|(k, _)| *k != KEY_MERGES)
            .collect();
        assert!(err(missing).contains(KEY_MERGES));
        assert!(err(with(KEY_MODEL, Value::String("bert".into()))).contains(KEY_MODEL));
        assert!(err(with(KEY_PRE, Value::String("nonsense".into()))).contains("nonsense"));
        assert!(err(with(KEY_TOKENS, Value::U32(3))).contains(KEY_TOKENS));
        let merge = |m: &str| with(KEY_MERGES, Value::Array(vec![Value::String(m.into())]));
        assert!(err(merge("hi")).contains(KEY_MERGES));
        assert!(
            err(with(KEY_TOKEN_TYPE, Value::Array(vec![Value::I32(1)]))).contains(KEY_TOKEN_TYPE)
        );
        let mut bad_bos = with(KEY_BOS, Value::U32(100_000));
        bad_bos.push((KEY_ADD_BOS, Value::Bool(true)));
        assert!(err(bad_bos).contains(KEY_BOS));

        // A merge naming strings outside the vocabulary loads, and such symbols fall
        // back to their bytes' tokens.
        let tok = load(&merge("x yz")).unwrap();
        assert_eq!(
            tok.encode("xyz", false, false),
            [b'x', b'y', b'z'].map(u32::from)
        );
    }

    #[test]
    fn sentencepiece_vocabulary_from_gguf() {
        let words = [
            ("<unk>", 2),
            ("<s>", 3),
            ("</s>", 3),
            ("\u{2581}", 1),
            ("a", 1),
            ("\u{2581}a", 1),
            ("<0xC3>", 6),
            ("<0xA9>", 6),
        ];
        let strings = |f: fn(&(&str, i32)) -> Value| Value::Array(words.iter().map(f).collect());
        let mut meta = vec![
            (KEY_MODEL, Value::String("llama".into())),
            (KEY_TOKENS, strings(|w| Value::String(w.0.into()))),
            (KEY_TOKEN_TYPE, strings(|w| Value::I32(w.1))),
        ];
        let tok = load(&meta).unwrap();
        // BOS by default (id 1), a ▁ before the text, bytes for what is not a token.
        assert_eq!(tok.encode("a é", true, false), [1, 5, 3, 6, 7]);
        assert_eq!(tok.decode(&[5, 3, 6, 7]), "a é");
        assert_eq!((tok.eos_id(), tok.unk_id()), (Some(2), Some(0)));
        // The unknown token stands in for bytes without a token.
        assert_eq!(tok.encode("ü", false, false), [3, 6, 0]); // C3 BC

        meta.push((KEY_ADD_SPACE_PREFIX, Value::Bool(false)));
        let tok = load(&meta).unwrap();
        assert_eq!(tok.encode("aa", false, false), [4, 4]);
        assert_eq!(tok.decode(&[3, 4]), " a");

        meta.push((KEY_SCORES, Value::Array(vec![Value::F32(0.0)])));
        let err = load(&meta).err().expect("an error").to_string();
        assert!(err.contains(KEY_SCORES), "{err}");
    }
}
