//! Hugging Face tokenizers: `tokenizer.json` (BPE models, byte-level or SentencePiece
//! style) with `tokenizer_config.json` and `chat_template.jinja`.

use super::bpe::Merges;
use super::pretokenize::PreTokenizer;
use super::sp_model;
use super::special::Special;
use super::spm::{byte_of_piece, byte_tokens};
use super::{Model, Parts, Prepend, SpAlgorithm, SpSplit, TokenKind, Tokenizer, TokenizerError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The regexes of `Split` pre-tokenizers that Synapse has scanners for.
const SPLIT_PATTERNS: &[(&str, PreTokenizer)] = &[
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        PreTokenizer::Llama3,
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        PreTokenizer::Qwen2,
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        PreTokenizer::Qwen35,
    ),
    (
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        PreTokenizer::Gpt2,
    ),
];

pub(super) fn load_dir(dir: &Path) -> Result<Option<Tokenizer>, TokenizerError> {
    let json_path = dir.join("tokenizer.json");
    let model_path = dir.join("tokenizer.model");
    if !json_path.is_file() && !model_path.is_file() {
        return Ok(None);
    }
    let config_path = dir.join("tokenizer_config.json");
    let config = if config_path.is_file() {
        Some(read_json(&config_path)?)
    } else {
        None
    };
    let config = File {
        path: &config_path,
        root: config.as_ref().unwrap_or(&Value::Null),
    };
    let template_path = dir.join("chat_template.jinja");
    let chat_template = if template_path.is_file() {
        Some(read(&template_path)?)
    } else {
        chat_template(&config)?
    };
    if !json_path.is_file() {
        return sp_model_tokenizer(&model_path, &config, chat_template).map(Some);
    }
    let json = read_json(&json_path)?;
    let parts = tokenizer_json(
        &File {
            path: &json_path,
            root: &json,
        },
        &config,
        chat_template,
    )?;
    Ok(Some(Tokenizer::assemble(parts)))
}

/// A SentencePiece model, through the same path as a GGUF vocabulary converted from it.
fn sp_model_tokenizer(
    path: &Path,
    config: &File,
    chat_template: Option<String>,
) -> Result<Tokenizer, TokenizerError> {
    use synapse_core::gguf::Value as G;
    let model = sp_model::load(path)?;
    let (mut tokens, mut scores, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for (text, score, kind) in model.pieces {
        tokens.push(G::String(text));
        scores.push(G::F32(score));
        types.push(G::I64(kind));
    }
    let mut meta = vec![
        (super::KEY_MODEL, G::String("llama".into())),
        (super::KEY_TOKENS, G::Array(tokens)),
        (super::KEY_SCORES, G::Array(scores)),
        (super::KEY_TOKEN_TYPE, G::Array(types)),
        (super::KEY_ADD_SPACE_PREFIX, G::Bool(model.add_dummy_prefix)),
        (super::KEY_BOS, G::I64(model.bos)),
        (super::KEY_EOS, G::I64(model.eos)),
        (super::KEY_UNK, G::I64(model.unk)),
        ("tokenizer.ggml.padding_token_id", G::I64(model.pad)),
    ];
    for (field, key) in [
        ("add_bos_token", super::KEY_ADD_BOS),
        ("add_eos_token", super::KEY_ADD_EOS),
    ] {
        if let Some(flag) = config.bool(config.root, "", field)? {
            meta.push((key, G::Bool(flag)));
        }
    }
    if let Some(template) = chat_template {
        meta.push((super::KEY_CHAT_TEMPLATE, G::String(template)));
    }
    Tokenizer::from_metadata(|key| meta.iter().find(|(k, _)| *k == key).map(|(_, v)| v)).map_err(
        |e| TokenizerError::BadField {
            path: path.to_path_buf(),
            field: "pieces".into(),
            problem: e.to_string(),
        },
    )
}

fn read(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    serde_json::from_str(&read(path)?).map_err(|source| TokenizerError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A parsed JSON file, for errors that name it and the field.
struct File<'a> {
    path: &'a Path,
    root: &'a Value,
}

impl File<'_> {
    fn error(&self, field: &str, problem: impl Into<String>) -> TokenizerError {
        TokenizerError::BadField {
            path: PathBuf::from(self.path),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    /// `value` (found at `field`) as a string.
    fn str<'v>(&self, value: &'v Value, field: &str) -> Result<&'v str, TokenizerError> {
        value
            .as_str()
            .ok_or_else(|| self.error(field, format!("expected a string, found {value}")))
    }

    /// An optional bool field `key` of `object` (found at `parent`, "" for the top
    /// level): absent or null gives None.
    fn bool(
        &self,
        object: &Value,
        parent: &str,
        key: &str,
    ) -> Result<Option<bool>, TokenizerError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => {
                let field = if parent.is_empty() {
                    key.to_string()
                } else {
                    format!("{parent}.{key}")
                };
                Err(self.error(&field, format!("expected true or false, found {v}")))
            }
        }
    }

    fn array<'v>(&self, value: &'v Value, field: &str) -> Result<&'v [Value], TokenizerError> {
        value
            .as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| self.error(field, "expected an array"))
    }
}

/// `chat_template` of tokenizer_config.json: a string, or a list of {name, template}
/// of which "default" is taken.
fn chat_template(config: &File) -> Result<Option<String>, TokenizerError> {
    const FIELD: &str = "chat_template";
    match config.root.get(FIELD) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            for entry in list {
                if entry.get("name").and_then(Value::as_str) == Some("default") {
                    let template = entry.get("template").unwrap_or(&Value::Null);
                    return Ok(Some(
                        config
                            .str(template, "chat_template[default].template")?
                            .to_string(),
                    ));
                }
            }
            Ok(None)
        }
        Some(_) => Err(config.error(FIELD, "expected a string or a list of {name, template}")),
    }
}

/// The text of a token field of tokenizer_config.json: a string or {"content": ...}.
fn token_text<'v>(config: &File<'v>, field: &str) -> Result<Option<&'v str>, TokenizerError> {
    match config.root.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v @ Value::Object(_)) => {
            let content = v.get("content").unwrap_or(&Value::Null);
            config.str(content, &format!("{field}.content")).map(Some)
        }
        Some(v) => Err(config.error(field, format!("expected a string, found {v}"))),
    }
}

/// The steps of a normalizer or pre-tokenizer: a `Sequence` is flattened, null is none.
fn steps<'v>(
    file: &File,
    value: Option<&'v Value>,
    field: &str,
) -> Result<Vec<&'v Value>, TokenizerError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let kind = value.get("type").and_then(Value::as_str);
    if kind != Some("Sequence") {
        return Ok(vec![value]);
    }
    let key = if field == "normalizer" {
        "normalizers"
    } else {
        "pretokenizers"
    };
    let list = value.get(key).unwrap_or(&Value::Null);
    Ok(file
        .array(list, &format!("{field}.{key}"))?
        .iter()
        .collect())
}

fn type_of(step: &Value) -> &str {
    step.get("type").and_then(Value::as_str).unwrap_or("")
}

fn tokenizer_json(
    file: &File,
    config: &File,
    chat_template: Option<String>,
) -> Result<Parts, TokenizerError> {
    let root = file.root;
    let model = root.get("model").unwrap_or(&Value::Null);
    let model_type = model.get("type").and_then(Value::as_str);
    // Files from older versions may omit the type of a BPE model.
    if model_type.is_some_and(|t| t != "BPE")
        || (model_type.is_none() && model.get("merges").is_none())
    {
        return Err(file.error(
            "model.type",
            format!("{model_type:?} is not supported (only BPE)"),
        ));
    }
    for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if model
            .get(field)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(file.error(&format!("model.{field}"), "is not supported"));
        }
    }
    if model.get("dropout").is_some_and(|d| !d.is_null()) {
        return Err(file.error("model.dropout", "BPE dropout is not supported"));
    }

    // The vocabulary: the model's, then the added tokens (which may extend it).
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| file.error("model.vocab", "expected an object of token -> id"))?;
    let mut entries: Vec<(String, u32)> = Vec::with_capacity(vocab.len());
    let as_id = |v: &Value, field: &str| -> Result<u32, TokenizerError> {
        v.as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| file.error(field, format!("{v} is not a token id")))
    };
    for (text, id) in vocab {
        entries.push((text.clone(), as_id(id, &format!("model.vocab[{text:?}]"))?));
    }
    let mut added = Vec::new();
    let added_list = root.get("added_tokens").unwrap_or(&Value::Null);
    let added_list = if added_list.is_null() {
        &[][..]
    } else {
        file.array(added_list, "added_tokens")?
    };
    for (i, token) in added_list.iter().enumerate() {
        let field = format!("added_tokens[{i}]");
        let id = as_id(
            token.get("id").unwrap_or(&Value::Null),
            &format!("{field}.id"),
        )?;
        let content = file.str(
            token.get("content").unwrap_or(&Value::Null),
            &format!("{field}.content"),
        )?;
        entries.push((content.to_string(), id));
        added.push(Special {
            id,
            text: content.to_string(),
            parse_only: file.bool(token, &field, "special")?.unwrap_or(false),
            lstrip: file.bool(token, &field, "lstrip")?.unwrap_or(false),
            rstrip: file.bool(token, &field, "rstrip")?.unwrap_or(false),
        });
    }
    let n = entries
        .iter()
        .map(|&(_, id)| id as usize + 1)
        .max()
        .unwrap_or(0);
    // Ids index a table: a few holes are fine, an id far past the vocabulary is not.
    if n > 2 * entries.len() + 1024 {
        let problem = format!("id {} is far past the {} tokens", n - 1, entries.len());
        return Err(file.error("model.vocab", problem));
    }
    let mut pieces = vec![String::new(); n];
    let mut ids = HashMap::with_capacity(n);
    for (text, id) in entries {
        let slot = &mut pieces[id as usize];
        // An added token may repeat its vocabulary entry; anything else is a conflict.
        if !slot.is_empty() && *slot != text {
            return Err(file.error(
                "model.vocab",
                format!("id {id} is both {slot:?} and {text:?}"),
            ));
        }
        if let Some(&other) = ids.get(&text) {
            if other != id {
                return Err(file.error("model.vocab", format!("{text:?} has ids {other} and {id}")));
            }
        }
        ids.insert(text.clone(), id);
        *slot = text;
    }

    let merges = parse_merges(file, model.get("merges").unwrap_or(&Value::Null))?;
    let merges = Merges::new(
        &ids,
        n as u32,
        merges.iter().map(|(a, b)| (a.as_str(), b.as_str())),
    );
    let ignore_merges = file.bool(model, "model", "ignore_merges")?.unwrap_or(false);
    let byte_fallback = file.bool(model, "model", "byte_fallback")?.unwrap_or(false);
    let fuse_unk = file.bool(model, "model", "fuse_unk")?.unwrap_or(false);
    let model_unk = match model.get("unk_token") {
        None | Some(Value::Null) => None,
        Some(v) => Some(file.str(v, "model.unk_token")?),
    };

    let (model, nfc) = build_model(
        file,
        root,
        merges,
        ignore_merges,
        byte_fallback,
        fuse_unk,
        &ids,
    )?;

    let mut kinds = vec![TokenKind::Normal; n];
    for (kind, piece) in kinds.iter_mut().zip(&pieces) {
        if piece.is_empty() {
            *kind = TokenKind::Undefined;
        } else if byte_fallback && byte_of_piece(piece).is_some() {
            *kind = TokenKind::Byte;
        }
    }
    for token in &added {
        kinds[token.id as usize] = if token.parse_only {
            TokenKind::Control
        } else {
            TokenKind::UserDefined
        };
    }
    let lookup = |field: &str, text: Option<&str>| -> Result<Option<u32>, TokenizerError> {
        let Some(text) = text else { return Ok(None) };
        ids.get(text)
            .copied()
            .map(Some)
            .ok_or_else(|| config.error(field, format!("{text:?} is not in the vocabulary")))
    };
    let unk = lookup("unk_token", token_text(config, "unk_token")?.or(model_unk))?;
    if let Some(unk) = unk {
        kinds[unk as usize] = TokenKind::Unknown;
    }

    // BOS/EOS: tokenizer_config.json names them; the post-processor's template says
    // which are added, and add_bos_token/add_eos_token override it.
    let (template_bos, template_eos) = post_processor(file, root.get("post_processor"), &ids)?;
    let bos = lookup("bos_token", token_text(config, "bos_token")?)?.or(template_bos);
    let eos = lookup("eos_token", token_text(config, "eos_token")?)?;
    let pad = lookup("pad_token", token_text(config, "pad_token")?)?;
    let add_bos = config
        .bool(config.root, "", "add_bos_token")?
        .unwrap_or(template_bos.is_some());
    let add_eos = config
        .bool(config.root, "", "add_eos_token")?
        .unwrap_or(template_eos.is_some());
    let bos = if add_bos { bos.or(template_bos) } else { bos };
    let eos = if add_eos { eos.or(template_eos) } else { eos };
    if add_bos && bos.is_none() {
        return Err(config.error("add_bos_token", "is true but no bos_token is given"));
    }
    if add_eos && eos.is_none() {
        return Err(config.error("add_eos_token", "is true but no eos_token is given"));
    }

    Ok(Parts {
        pieces,
        kinds,
        ids,
        model,
        added: Some(added),
        phi3: false,
        nfc,
        bos,
        eos,
        extra_eog: Vec::new(),
        pad,
        unk,
        add_bos,
        add_eos,
        chat_template,
    })
}

/// `model.merges`: "left right" strings or ["left", "right"] pairs.
fn parse_merges(file: &File, merges: &Value) -> Result<Vec<(String, String)>, TokenizerError> {
    if merges.is_null() {
        return Ok(Vec::new());
    }
    let list = file.array(merges, "model.merges")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, merge) in list.iter().enumerate() {
        let bad = || {
            file.error(
                &format!("model.merges[{i}]"),
                format!("{merge} is not a pair of symbols"),
            )
        };
        let pair = match merge {
            Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                _ => None,
            },
            _ => None,
        };
        out.push(pair.ok_or_else(bad)?);
    }
    Ok(out)
}

/// The model from the normalizer and pre-tokenizer: byte-level BPE when a ByteLevel
/// pre-tokenizer is there, else SentencePiece-style BPE with spaces as ▁; and whether
/// text is put in NFC first.
fn build_model(
    file: &File,
    root: &Value,
    merges: Merges,
    ignore_merges: bool,
    byte_fallback: bool,
    fuse_unk: bool,
    ids: &HashMap<String, u32>,
) -> Result<(Model, bool), TokenizerError> {
    let normalizers = steps(file, root.get("normalizer"), "normalizer")?;
    let pre_tokenizers = steps(file, root.get("pre_tokenizer"), "pre_tokenizer")?;
    let is_replacement = |v: Option<&Value>| v.and_then(Value::as_str) == Some("\u{2581}");

    // Normalizers: NFC, and the SentencePiece pair Prepend("▁") + Replace(" ", "▁").
    let (mut prepend, mut escapes_spaces, mut nfc) = (Prepend::Never, false, false);
    for step in normalizers {
        match type_of(step) {
            "NFC" if cfg!(feature = "unicode-tables") => nfc = true,
            "NFC" => {
                return Err(TokenizerError::NfcUnavailable {
                    path: file.path.to_path_buf(),
                })
            }
            "Prepend" if is_replacement(step.get("prepend")) => prepend = Prepend::Unconditional,
            "Replace"
                if step.pointer("/pattern/String").and_then(Value::as_str) == Some(" ")
                    && is_replacement(step.get("content")) =>
            {
                escapes_spaces = true
            }
            other => {
                return Err(file.error("normalizer", format!("{other:?} ({step}) is not supported")))
            }
        }
    }

    let byte_level = pre_tokenizers.iter().any(|p| type_of(p) == "ByteLevel");
    if byte_level {
        if escapes_spaces || prepend != Prepend::Never {
            return Err(file.error(
                "normalizer",
                "SentencePiece steps with a ByteLevel pre-tokenizer are not supported",
            ));
        }
        let unsupported = || {
            file.error(
                "pre_tokenizer",
                format!(
                    "{} is not a pre-tokenizer Synapse knows",
                    root.get("pre_tokenizer").unwrap_or(&Value::Null)
                ),
            )
        };
        let (split, byte_level_step) = match pre_tokenizers.as_slice() {
            [b] => (None, *b),
            [s, b] if type_of(b) == "ByteLevel" => (Some(*s), *b),
            _ => return Err(unsupported()),
        };
        let use_regex = file
            .bool(byte_level_step, "pre_tokenizer", "use_regex")?
            .unwrap_or(true);
        let add_prefix_space = file
            .bool(byte_level_step, "pre_tokenizer", "add_prefix_space")?
            .unwrap_or(false);
        let pre = match (split, use_regex) {
            (None, true) => PreTokenizer::Gpt2,
            (Some(d), true)
                if type_of(d) == "Digits"
                    && file.bool(d, "pre_tokenizer", "individual_digits")? == Some(true) =>
            {
                PreTokenizer::Gpt2Digits
            }
            (Some(s), false)
                if type_of(s) == "Split"
                    && s.get("behavior").and_then(Value::as_str) == Some("Isolated")
                    && file.bool(s, "pre_tokenizer", "invert")? != Some(true) =>
            {
                let regex = s
                    .pointer("/pattern/Regex")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                SPLIT_PATTERNS
                    .iter()
                    .find(|(p, _)| *p == regex)
                    .map(|&(_, pre)| pre)
                    .ok_or_else(|| {
                        file.error(
                            "pre_tokenizer.pattern.Regex",
                            format!("{regex:?} is not a pattern Synapse knows"),
                        )
                    })?
            }
            _ => return Err(unsupported()),
        };
        let model = Model::ByteLevel {
            merges,
            pre,
            ignore_merges,
            add_prefix_space,
        };
        return Ok((model, nfc));
    }

    let mut split = SpSplit::None;
    match pre_tokenizers.as_slice() {
        [] => {}
        [m] if type_of(m) == "Metaspace" => {
            if !is_replacement(m.get("replacement")) {
                return Err(file.error(
                    "pre_tokenizer.replacement",
                    "only \"\u{2581}\" is supported",
                ));
            }
            escapes_spaces = true;
            if file.bool(m, "pre_tokenizer", "split")?.unwrap_or(true) {
                split = SpSplit::BeforeSpaces;
            }
            prepend = match m.get("prepend_scheme").and_then(Value::as_str) {
                Some("first") => Prepend::First,
                Some("always") => Prepend::Always,
                Some("never") => Prepend::Never,
                // Files before prepend_scheme: add_prefix_space.
                None if file.bool(m, "pre_tokenizer", "add_prefix_space")? != Some(false) => {
                    Prepend::Always
                }
                None => Prepend::Never,
                Some(other) => {
                    return Err(file.error(
                        "pre_tokenizer.prepend_scheme",
                        format!("{other:?} is not supported"),
                    ))
                }
            };
        }
        _ => {
            return Err(file.error(
                "pre_tokenizer",
                format!(
                    "{} is not supported",
                    root.get("pre_tokenizer").unwrap_or(&Value::Null)
                ),
            ))
        }
    }
    if !escapes_spaces {
        return Err(file.error(
            "pre_tokenizer",
            "neither a ByteLevel pre-tokenizer nor spaces written as \u{2581} (Metaspace, or a Replace normalizer): not supported",
        ));
    }
    let algorithm = SpAlgorithm::Bpe {
        merges,
        bytes: byte_fallback.then(|| byte_tokens(ids)),
        fuse_unk,
        ignore_merges,
    };
    Ok((
        Model::SentencePiece {
            prepend,
            split,
            algorithm,
        },
        nfc,
    ))
}

/// The BOS and EOS tokens that a `TemplateProcessing` post-processor puts around a single
/// sequence; other post-processors add none.
fn post_processor(
    file: &File,
    processor: Option<&Value>,
    ids: &HashMap<String, u32>,
) -> Result<(Option<u32>, Option<u32>), TokenizerError> {
    let Some(processor) = processor.filter(|p| !p.is_null()) else {
        return Ok((None, None));
    };
    let processors = match type_of(processor) {
        "Sequence" => file
            .array(
                processor.get("processors").unwrap_or(&Value::Null),
                "post_processor.processors",
            )?
            .iter()
            .collect(),
        _ => vec![processor],
    };
    for p in processors {
        match type_of(p) {
            "ByteLevel" => {}
            "TemplateProcessing" => {
                let single = file.array(
                    p.get("single").unwrap_or(&Value::Null),
                    "post_processor.single",
                )?;
                let special = |item: Option<&Value>| -> Result<Option<u32>, TokenizerError> {
                    let Some(name) = item.and_then(|i| i.pointer("/SpecialToken/id")) else {
                        return Ok(None);
                    };
                    let name = file.str(name, "post_processor.single")?;
                    ids.get(name).copied().map(Some).ok_or_else(|| {
                        file.error(
                            "post_processor.single",
                            format!("{name:?} is not in the vocabulary"),
                        )
                    })
                };
                let bos = special(single.first())?;
                let eos = if single.len() > 1 {
                    special(single.last())?
                } else {
                    None
                };
                return Ok((bos, eos));
            }
            other => {
                return Err(file.error("post_processor", format!("{other:?} is not supported")))
            }
        }
    }
    Ok((None, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(json: Value, config: Value) -> Result<Tokenizer, TokenizerError> {
        let (json_path, config_path) = (Path::new("tokenizer.json"), Path::new("config.json"));
        let file = File {
            path: json_path,
            root: &json,
        };
        let config = File {
            path: config_path,
            root: &config,
        };
        let template = chat_template(&config)?;
        tokenizer_json(&file, &config, template).map(Tokenizer::assemble)
    }

    /// SentencePiece-style BPE: ▁, a, b, ▁a, ab, two byte tokens, an added token.
    fn sentencepiece() -> Value {
        json!({
            "added_tokens": [
                {"id": 0, "content": "<s>", "special": true},
                {"id": 9, "content": "<tool>", "special": false, "rstrip": true},
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}",
                              "prepend_scheme": "always", "split": true},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}]},
            "model": {
                "type": "BPE", "byte_fallback": true, "fuse_unk": true, "unk_token": null,
                "vocab": {"<s>": 0, "\u{2581}": 1, "a": 2, "b": 3, "\u{2581}a": 4, "ab": 5,
                          "<0xC3>": 6, "<0xA9>": 7},
                // Both forms of merges.
                "merges": ["\u{2581} a", ["a", "b"]],
            },
        })
    }

    #[test]
    fn sentencepiece_bpe_with_byte_fallback() {
        let templates = json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        let tok = load(sentencepiece(), templates).unwrap();
        // "▁a" outranks "ab"; each ▁ starts a piece; é is not a token: its bytes.
        assert_eq!(tok.encode("ab é", true, false), [0, 4, 3, 1, 6, 7]);
        assert_eq!(tok.decode(&[4, 3, 1, 6, 7]), "ab é");
        // The added token is always recognised and swallows the spaces after it.
        assert_eq!(tok.encode("b<tool>  ab", false, false), [1, 3, 9, 4, 3]);
        assert_eq!(tok.chat_template(), Some("D"));
        assert_eq!(tok.bos_id(), Some(0));
    }

    #[test]
    fn unusable_fields_are_errors_naming_them() {
        let err = |json: Value, config: Value| {
            let what = format!("{json} {config}");
            let result = load(json, config);
            result
                .err()
                .unwrap_or_else(|| panic!("no error: {what}"))
                .to_string()
        };
        let with = |pointer: &str, value: Value| {
            let mut json = sentencepiece();
            *json.pointer_mut(pointer).expect(pointer) = value;
            json
        };
        let e = err(with("/model/type", json!("Unigram")), json!({}));
        assert!(e.contains("tokenizer.json: model.type"), "{e}");
        let e = err(with("/model/merges", json!([["a"]])), json!({}));
        assert!(e.contains("model.merges[0]"), "{e}");
        let e = err(with("/model/vocab/b", json!(2)), json!({}));
        assert!(e.contains("model.vocab"), "{e}");
        let e = err(with("/model/vocab/b", json!(1_000_000)), json!({}));
        assert!(e.contains("far past"), "{e}");
        let regex = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"},
            {"type": "ByteLevel", "use_regex": false}]});
        let e = err(with("/pre_tokenizer", regex), json!({}));
        assert!(
            e.contains("pre_tokenizer.pattern.Regex") && e.contains("\\\\w+"),
            "{e}"
        );
        let e = err(sentencepiece(), json!({"add_eos_token": true}));
        assert!(e.contains("config.json: add_eos_token"), "{e}");
        let e = err(sentencepiece(), json!({"bos_token": {"content": "<nope>"}}));
        assert!(e.contains("bos_token"), "{e}");
        let e = err(with("/normalizer", json!({"type": "Lowercase"})), json!({}));
        assert!(e.contains("normalizer"), "{e}");
    }
}
