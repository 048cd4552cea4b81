//! Constrained decoding: a grammar (here a JSON schema) limits which tokens may come next,
//! so that the output always parses and validates. The grammar engine is llguidance
//! (an Earley parser over the tokenizer's vocabulary); this module gives it the model's
//! vocabulary and applies its token mask to the logits before sampling.

use crate::error::{Error, Result};
use crate::session::Model;
use crate::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use std::sync::Arc;

/// Makes constraints for one model: its vocabulary as a token trie, built once (tens of
/// milliseconds for a 50k vocabulary) and shared by every constraint.
pub struct ConstraintFactory {
    factory: ParserFactory,
}

/// The model's vocabulary as llguidance reads it.
struct Vocabulary {
    trie: TokTrie,
    /// For its tokenizer (checked to exist).
    model: Arc<Model>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        let text = String::from_utf8_lossy(s);
        let tokenizer = self.model.tokenizer.as_ref();
        tokenizer.map_or_else(Vec::new, |t| t.encode(&text, false, false))
    }
}

impl ConstraintFactory {
    pub fn new(model: &Arc<Model>) -> Result<ConstraintFactory> {
        let tokenizer: &Tokenizer = model.tokenizer()?;
        let vocab = tokenizer.vocab_size() as u32;
        let info = TokRxInfo {
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.unk_id(),
            ..TokRxInfo::new(vocab, tokenizer.eos_id().unwrap_or(0))
        };
        // Control tokens carry the trie's marker byte, so that no text matches them.
        let words: Vec<Vec<u8>> = (0..vocab)
            .map(|id| match tokenizer.is_control(id) {
                true => [
                    &[TokTrie::SPECIAL_TOKEN_MARKER][..],
                    tokenizer.piece(id).as_bytes(),
                ]
                .concat(),
                false => tokenizer.token_bytes(id),
            })
            .collect();
        let env: TokEnv = Arc::new(Vocabulary {
            trie: TokTrie::from(&info, &words),
            model: model.clone(),
        });
        let slices = llguidance::earley::SlicedBiasComputer::json_slices();
        let mut factory = ParserFactory::new(&env, InferenceCapabilities::default(), &slices)
            .map_err(|e| grammar_error(e.to_string()))?;
        factory.quiet();
        Ok(ConstraintFactory { factory })
    }

    /// A constraint to text that is JSON valid against `schema` (`{}` or
    /// `{"type": "object"}` for any JSON object). So that a model cannot loop forever
    /// inside a valid value, the JSON is written as Python's `json.dumps` writes it (", "
    /// and ": ", no other whitespace) unless the schema's llguidance options
    /// (`"x-guidance"`) say otherwise, and numbers have at most 10 decimals (llama.cpp's
    /// JSON grammars allow 16; llguidance reads a `multipleOf` below 10^-10 inexactly). A
    /// schema the engine cannot compile is an invalid-argument error that says why.
    pub fn json_schema(&self, schema: &serde_json::Value) -> Result<Constraint> {
        let mut schema = schema.clone();
        bound_decimals(&mut schema);
        if schema.is_object() && schema.get("x-guidance").is_none() {
            let compact = JsonCompileOptions {
                item_separator: ", ".into(),
                key_separator: ": ".into(),
                whitespace_flexible: false,
                ..JsonCompileOptions::default()
            };
            compact.apply_to(&mut schema);
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| grammar_error(e.to_string()))?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
        })
    }
}

/// Gives every number schema without a `multipleOf` one of 1e-10: at most 10 decimals.
/// Values (`enum`, `const`, `default`, `examples`) are data, not schemas, and are left.
fn bound_decimals(schema: &mut serde_json::Value) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            let is_number = |t: &Value| t == "number";
            let number = map.get("type").is_some_and(|t| match t {
                Value::Array(types) => types.iter().any(is_number),
                t => is_number(t),
            });
            if number && !map.contains_key("multipleOf") {
                map.insert("multipleOf".into(), serde_json::json!(1e-10));
            }
            for (key, value) in map.iter_mut() {
                if !matches!(key.as_str(), "enum" | "const" | "default" | "examples") {
                    bound_decimals(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound_decimals),
        _ => {}
    }
}

fn grammar_error(reason: String) -> Error {
    Error::BadConstraint { reason }
}

/// One generation's grammar state: which tokens may come next.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

impl Constraint {
    /// Sets the logits of the tokens the grammar forbids next to -inf (once it is
    /// complete, all but end-of-sequence). Should the grammar engine fail, only
    /// `end` remains, which ends the generation.
    pub(crate) fn mask(&mut self, logits: &mut [f32], end: &[u32]) {
        match self.matcher.compute_mask_or_eos() {
            Ok(allowed) => {
                for (id, l) in logits.iter_mut().enumerate() {
                    if !allowed.is_allowed(id as u32) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            Err(_) => {
                for (id, l) in logits.iter_mut().enumerate() {
                    if !end.contains(&(id as u32)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    /// Advances the grammar past `token`.
    pub(crate) fn accept(&mut self, token: u32) {
        // A failure leaves the matcher in its error state, which `mask` answers.
        let _ = self.matcher.consume_token(token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn number_schemas_get_bounded_decimals_and_values_stay() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "x": {"type": "number", "maximum": 3},
                "y": {"type": ["number", "null"]},
                "z": {"type": "number", "multipleOf": 0.5},
                "n": {"type": "integer"},
                "k": {"const": {"type": "number"}},
            },
        });
        bound_decimals(&mut schema);
        let p = &schema["properties"];
        assert_eq!(p["x"]["multipleOf"], json!(1e-10));
        assert_eq!(p["y"]["multipleOf"], json!(1e-10));
        assert_eq!(p["z"]["multipleOf"], json!(0.5));
        assert!(p["n"].get("multipleOf").is_none());
        assert_eq!(p["k"], json!({"const": {"type": "number"}}));
    }
}
