//! Tokenizers: text to token ids and back, from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`: GPT-2, LLaMA 3, Qwen, SmolLM, ...)
//! tokenizes exactly as llama.cpp does; tests/tokenizer_conformance.rs runs llama.cpp's
//! own test vocabularies.

mod bpe;
mod byte_level;
mod pretokenize;
mod special;
mod stream;

pub use stream::StreamDecoder;

use bpe::Merges;
use pretokenize::PreTokenizer;
use special::{Fragment, SpecialTokens};
use std::collections::HashMap;
use synapse_core::gguf::{GgufFile, Value};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";

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
    #[error("{KEY_MODEL} = {0:?} is not supported yet (only \"gpt2\", byte-level BPE)")]
    UnsupportedModel(String),
    #[error("{KEY_PRE} = {0:?} is not a pre-tokenizer Synapse knows")]
    UnsupportedPreTokenizer(String),
    #[error("{KEY_TOKENS}: {text:?} appears at ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{KEY_TOKEN_TYPE} has {found} entries for {expected} tokens")]
    TooFewTokenTypes { expected: usize, found: usize },
    #[error("{KEY_MERGES}[{index}] = {text:?} is not two symbols separated by a space")]
    MalformedMerge { index: usize, text: String },
    #[error("{flag} is true but {id_key} is not set to a token id")]
    MissingSpecialToken {
        flag: &'static str,
        id_key: &'static str,
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

/// A byte-level BPE tokenizer.
pub struct Tokenizer {
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    ids: HashMap<String, u32>,
    merges: Merges,
    pre: PreTokenizer,
    /// A piece that is a whole token is taken as is, without merging (LLaMA 3).
    ignore_merges: bool,
    specials: SpecialTokens,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    end_of_generation: Vec<u32>,
}

impl Tokenizer {
    pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_metadata(|key| gguf.get(key))
    }

    fn from_metadata<'a>(
        get: impl Fn(&str) -> Option<&'a Value>,
    ) -> Result<Tokenizer, TokenizerError> {
        let meta = Metadata(&get);
        let model = meta.string(KEY_MODEL)?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre_name = meta.string(KEY_PRE)?;
        let (pre, llama3) = PreTokenizer::from_name(pre_name)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre_name.to_string()))?;

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
        let mut ids = HashMap::with_capacity(n);
        for (id, text) in pieces.iter().enumerate() {
            // Empty entries (broken conversions) cannot be looked up or matched.
            if text.is_empty() {
                continue;
            }
            if let Some(first) = ids.insert(text.clone(), id as u32) {
                return Err(TokenizerError::DuplicateToken {
                    text: text.clone(),
                    first,
                    second: id as u32,
                });
            }
        }

        let mut kinds = vec![TokenKind::Normal; n];
        if let Some(types) = meta.optional_array(KEY_TOKEN_TYPE)? {
            if types.len() < n {
                return Err(TokenizerError::TooFewTokenTypes {
                    expected: n,
                    found: types.len(),
                });
            }
            for (kind, v) in kinds.iter_mut().zip(types) {
                let t = v
                    .as_i64()
                    .ok_or_else(|| wrong_element(KEY_TOKEN_TYPE, "an array of integers", v))?;
                *kind = TokenKind::from_type(t);
            }
        }

        let merge_texts = meta.array(KEY_MERGES)?;
        let mut merges = Vec::with_capacity(merge_texts.len());
        for (index, v) in merge_texts.iter().enumerate() {
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
        let merges = Merges::new(&ids, n as u32, merges);

        let bos = meta.token_id(KEY_BOS, n)?;
        let eos = meta.token_id(KEY_EOS, n)?;
        let eot = meta.token_id("tokenizer.ggml.eot_token_id", n)?;
        let eom = meta.token_id("tokenizer.ggml.eom_token_id", n)?;
        let pad = meta.token_id("tokenizer.ggml.padding_token_id", n)?;
        let unk = meta.token_id("tokenizer.ggml.unknown_token_id", n)?;
        let fim = [
            meta.token_id("tokenizer.ggml.fim_pad_token_id", n)?,
            meta.token_id("tokenizer.ggml.fim_rep_token_id", n)?,
            meta.token_id("tokenizer.ggml.fim_sep_token_id", n)?,
        ];
        // llama.cpp adds BOS by default only for LLaMA 3 vocabularies; the keys override.
        let add_bos = meta.bool(KEY_ADD_BOS)?.unwrap_or(llama3);
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

        let end_of_generation = end_of_generation_ids(&ids, &mut kinds, [eos, eot, eom], fim);
        let specials = SpecialTokens::new(kinds.iter().zip(&pieces).enumerate().filter_map(
            |(id, (kind, text))| match kind {
                TokenKind::Control | TokenKind::Unknown => Some((id as u32, text.clone(), true)),
                TokenKind::UserDefined => Some((id as u32, text.clone(), false)),
                _ => None,
            },
        ));

        Ok(Tokenizer {
            pieces,
            kinds,
            ids,
            merges,
            pre,
            ignore_merges: llama3,
            specials,
            bos,
            eos,
            pad,
            unk,
            add_bos,
            add_eos,
            end_of_generation,
        })
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
        let mut spelled = String::new();
        for fragment in self.specials.split(text, parse_special) {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(text) => self.pre.split(text, |piece| {
                    if self.ignore_merges {
                        spelled.clear();
                        byte_level::encode_into(piece.as_bytes(), &mut spelled);
                        if let Some(&id) = self.ids.get(&spelled) {
                            out.push(id);
                            return;
                        }
                    }
                    self.merges.encode(piece.as_bytes(), &mut out);
                }),
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        out
    }

    /// The text of `ids`; invalid UTF-8 becomes U+FFFD. Control tokens give their text.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.append_bytes(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
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
            TokenKind::Normal => byte_level::decode_into(piece, out),
            TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown => {
                out.extend_from_slice(piece.as_bytes())
            }
            TokenKind::Byte => {
                // Written "<0xXX>".
                let hex = piece.strip_prefix("<0x").and_then(|s| s.strip_suffix('>'));
                out.extend(hex.and_then(|h| u8::from_str_radix(h, 16).ok()));
            }
            TokenKind::Unused | TokenKind::Undefined => {}
        }
    }

    /// The vocabulary entry for `id` as stored (byte-level spelling, e.g. "Ġthe"); empty
    /// for ids out of range.
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
}

/// llama.cpp's end-of-generation set. Tokens found by their text become control tokens.
fn end_of_generation_ids(
    ids: &HashMap<String, u32>,
    kinds: &mut [TokenKind],
    by_key: [Option<u32>; 3],
    fim: [Option<u32>; 3],
) -> Vec<u32> {
    let mut eog: Vec<u32> = fim.into_iter().chain(by_key).flatten().collect();
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

    fn optional_array(&self, key: &'static str) -> Result<Option<&'a [Value]>, TokenizerError> {
        self.optional(key).map(|_| self.array(key)).transpose()
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

#[cfg(test)]
mod tests {
    use super::*;

    const IM_START: u32 = 257;
    const IM_END: u32 = 258;
    const TOOL: u32 = 259;

    /// A byte-level vocabulary: the 256 byte characters (id = byte), "hi" from one merge,
    /// two control tokens and a user-defined one.
    fn metadata() -> Vec<(&'static str, Value)> {
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

    fn load(meta: &[(&str, Value)]) -> Result<Tokenizer, TokenizerError> {
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
        assert!(err(with(KEY_MODEL, Value::String("llama".into()))).contains(KEY_MODEL));
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
}
