//! Constrained decoding: a grammar (here a JSON schema) limits which tokens may come next,
//! so that the output always parses and validates. The grammar engine is llguidance
//! (an Earley parser over the tokenizer's vocabulary); this module gives it the model's
//! vocabulary and applies its token mask to the logits before sampling.

use crate::error::{Error, Result};
use crate::model::backend::Backend;
use crate::session::Model;
use crate::tokenizer::Tokenizer;
use crate::tools::{each_schema, ToolGrammar};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use std::sync::Arc;

/// Makes constraints for one model: its vocabulary as a token trie, built once (tens of
/// milliseconds for a 50k vocabulary) and shared by every constraint.
pub struct ConstraintFactory {
    factory: ParserFactory,
    /// The token llguidance's masks allow where the grammar may end.
    eos: u32,
}

/// The model's vocabulary as llguidance reads it.
struct Vocabulary<B: Backend> {
    trie: TokTrie,
    /// For its tokenizer (checked to exist).
    model: Arc<Model<B>>,
}

impl<B: Backend> TokenizerEnv for Vocabulary<B> {
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
    pub fn new<B: Backend>(model: &Arc<Model<B>>) -> Result<ConstraintFactory> {
        let tokenizer: &Tokenizer = model.tokenizer()?;
        let vocab = tokenizer.vocab_size() as u32;
        let eos = tokenizer.eos_id().unwrap_or(0);
        let info = TokRxInfo {
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.unk_id(),
            ..TokRxInfo::new(vocab, eos)
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
        Ok(ConstraintFactory { factory, eos })
    }

    /// A constraint to text that is JSON valid against `schema` (`{}` or
    /// `{"type": "object"}` for any JSON object). So that a model cannot loop forever
    /// inside a valid value, the JSON is written as Python's `json.dumps` writes it (", "
    /// and ": ", no other whitespace) unless the schema's llguidance options
    /// (`"x-guidance"`) say otherwise, and numbers have at most 10 decimals (llama.cpp's
    /// JSON grammars allow 16; llguidance reads a `multipleOf` below 10^-10 inexactly). A
    /// schema the engine cannot compile is an invalid-argument error that says why.
    pub fn json_schema(&self, schema: &serde_json::Value) -> Result<Constraint> {
        self.create(TopLevelGrammar::from_json_schema(compact(schema)))
    }

    /// A constraint to what a tool reply must look like ([`crate::tools::Tools::grammar`]): a JSON
    /// reply, or `<tool_call>` tags around calls, each JSON written as in `json_schema`.
    pub fn tool_reply(&self, grammar: &ToolGrammar) -> Result<Constraint> {
        match grammar {
            ToolGrammar::Json(schema) => self.json_schema(schema),
            ToolGrammar::Tagged { call } => {
                let lark = format!(
                    "start: call (\"\\n\" call)*\ncall: \"<tool_call>\\n\" %json {} \"\\n</tool_call>\"",
                    compact(call)
                );
                self.create(TopLevelGrammar::from_lark(lark))
            }
        }
    }

    fn create(&self, grammar: TopLevelGrammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| grammar_error(e.to_string()))?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            eos: self.eos,
        })
    }
}

/// `schema` for output written compactly (see [`ConstraintFactory::json_schema`]).
fn compact(schema: &serde_json::Value) -> serde_json::Value {
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
    schema
}

/// Gives every number schema without a `multipleOf` one of 1e-10: at most 10 decimals.
fn bound_decimals(schema: &mut serde_json::Value) {
    each_schema(schema, &mut |map| {
        let is_number = |t: &serde_json::Value| t == "number";
        let number = map.get("type").is_some_and(|t| match t {
            serde_json::Value::Array(types) => types.iter().any(is_number),
            t => is_number(t),
        });
        if number && !map.contains_key("multipleOf") {
            map.insert("multipleOf".into(), serde_json::json!(1e-10));
        }
    });
}

fn grammar_error(reason: String) -> Error {
    Error::BadConstraint { reason }
}

/// One generation's grammar state: which tokens may come next.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    eos: u32,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

impl Constraint {
    /// Sets the logits of the tokens the grammar forbids next to -inf; where it may end,
    /// the model's end-of-generation tokens `end` stay allowed. Should the grammar
    /// engine fail, only `end` remains, and [`Constraint::is_done`] ends the generation.
    pub(crate) fn mask(&mut self, logits: &mut [f32], end: &[u32]) {
        let allowed = self.matcher.compute_mask_or_eos();
        // The mask allows EOS exactly where the grammar may end.
        let may_end = allowed.as_ref().map_or(true, |a| a.is_allowed(self.eos));
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let grammar = allowed.as_ref().is_ok_and(|a| a.is_allowed(id));
            let ends = may_end && end.contains(&id);
            if !(grammar || ends) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Whether the output is complete (nothing may follow) or the grammar engine failed.
    pub(crate) fn is_done(&self) -> bool {
        self.matcher.is_stopped()
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
    use crate::chat::{ChatTemplate, FunctionCall};
    use crate::generation::sampler::SamplerConfig;
    use crate::generation::{generate, tiny_model, GenerateOptions};
    use crate::tools::{Tool, ToolChoice, Tools};
    use crate::{Session, SessionOptions};
    use serde_json::json;

    /// A random model sampled at temperature 1 under the tools' grammar: what it writes
    /// is noise, except where the grammar leaves no choice.
    fn sample_reply(template: &ChatTemplate, choice: ToolChoice, seed: u64) -> (Tools, String) {
        let model = tiny_model();
        let tool = json!({"type": "function", "function": {"name": "time", "parameters":
            {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}},
             "required": ["zone"], "additionalProperties": false}}});
        let tools = vec![Tool::from_openai(&tool, 0).unwrap()];
        let tools = Tools::new(tools, choice, template).unwrap().unwrap();
        let factory = ConstraintFactory::new(&model).unwrap();
        let grammar = tools.grammar().expect("a grammar");
        let opts = GenerateOptions {
            max_tokens: 200,
            sampler: SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            },
            constraint: Some(factory.tool_reply(&grammar).unwrap()),
            ..GenerateOptions::default()
        };
        let mut session = Session::new(model, SessionOptions::default());
        let text = generate(&mut session, &[104, 105], &opts, |_| {})
            .unwrap()
            .text;
        (tools, text)
    }

    #[test]
    fn tool_grammars_hold_a_sampled_reply_to_the_call_format() {
        let expected = |zone: &str| FunctionCall {
            name: "time".into(),
            arguments: json!({"zone": zone}),
        };
        let hermes = ChatTemplate::new("{{ tools }}<tool_call>", "", "").unwrap();
        for seed in 0..3 {
            let (tools, text) = sample_reply(&hermes, ToolChoice::Required, seed);
            assert!(
                text.starts_with("<tool_call>\n{\"name\": \"time\", \"arguments\": {\"zone\": \""),
                "{text}"
            );
            let reply = tools.parse(&text);
            assert!(!reply.calls.is_empty(), "{text}");
            for call in reply.calls {
                assert!(call == expected("utc") || call == expected("cet"), "{text}");
            }
        }
        let generic = ChatTemplate::chatml();
        let (tools, text) = sample_reply(&generic, ToolChoice::Function("time".into()), 7);
        let reply = tools.parse(&text);
        assert_eq!(reply.content, None, "{text}");
        assert!(
            reply.calls == [expected("utc")] || reply.calls == [expected("cet")],
            "{text}"
        );
    }

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
