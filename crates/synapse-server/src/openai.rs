//! OpenAI's request bodies, checked and turned into the engine's generation options.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use synapse_inference::chat::{ChatMessage, ChatTemplate, FunctionCall, ToolCall};
use synapse_inference::generation::sampler::SamplerConfig;
use synapse_inference::generation::GenerateOptions;
use synapse_inference::tools::{Tool, ToolChoice, ToolError, Tools};

/// The fields that `/v1/chat/completions` and `/v1/completions` share.
#[derive(Deserialize, Default)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    // llama-server's extras.
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<u32>,
    #[serde(default)]
    pub ignore_eos: bool,
    pub response_format: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
}

#[derive(Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant turn's calls.
    #[serde(default)]
    pub tool_calls: Vec<MessageToolCall>,
    /// The call a `tool` turn answers.
    pub tool_call_id: Option<String>,
}

#[derive(Deserialize)]
pub struct MessageToolCall {
    #[serde(default)]
    pub id: String,
    pub function: MessageFunction,
}

#[derive(Deserialize)]
pub struct MessageFunction {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    pub arguments: String,
}

/// A message's content: text, or parts of which the text ones are read.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub common: Common,
    /// The number of alternatives to report per token.
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
}

/// A completion prompt: text, or token ids (one of each in a list, since `n` is 1).
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
    Texts(Vec<String>),
    IdLists(Vec<Vec<u32>>),
}

/// Most alternatives per token that `top_logprobs`/`logprobs` may ask for (OpenAI's).
const MAX_TOP_LOGPROBS: u32 = 20;

impl Message {
    pub fn to_chat(&self, i: usize) -> Result<ChatMessage, ApiError> {
        let content = match &self.content {
            None => String::new(),
            Some(Content::Text(text)) => text.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.kind.as_str(), &part.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                "messages",
                                format!("messages[{i}]: content parts of type {kind:?} are not supported (text only)"),
                            ))
                        }
                    }
                }
                text
            }
        };
        let mut message = ChatMessage::new(self.role.clone(), content);
        message.tool_call_id = self.tool_call_id.clone();
        for (j, call) in self.tool_calls.iter().enumerate() {
            let arguments = serde_json::from_str(&call.function.arguments).map_err(|e| {
                ApiError::invalid(
                    "messages",
                    format!("messages[{i}].tool_calls[{j}].function.arguments is not JSON: {e}"),
                )
            })?;
            message.tool_calls.push(ToolCall {
                id: call.id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: call.function.name.clone(),
                    arguments,
                },
            });
        }
        Ok(message)
    }
}

impl ChatRequest {
    /// How many alternatives to report per token, when logprobs are asked for.
    pub fn logprobs(&self) -> Option<usize> {
        self.logprobs
            .then(|| self.top_logprobs.unwrap_or(0) as usize)
    }

    /// The tools the model is offered, if any (none with `tool_choice` "none").
    pub fn tools(&self, template: &ChatTemplate) -> Result<Option<Tools>, ApiError> {
        let invalid = |e: ToolError| ApiError::invalid(e.field.clone(), e.to_string());
        let tools = (self.tools.iter().flatten().enumerate())
            .map(|(i, tool)| Tool::from_openai(tool, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let choice = ToolChoice::from_openai(self.tool_choice.as_ref()).map_err(invalid)?;
        Tools::new(tools, choice, template).map_err(invalid)
    }
}

/// The one prompt of a completion request.
pub enum SinglePrompt<'a> {
    Text(&'a str),
    Ids(&'a [u32]),
}

impl Prompt {
    /// The request's one prompt (`n` is 1).
    pub fn single(&self) -> Result<SinglePrompt<'_>, ApiError> {
        let many = || ApiError::invalid("prompt", "one prompt per request is supported (n = 1)");
        Ok(match self {
            Prompt::Text(text) => SinglePrompt::Text(text),
            Prompt::Ids(ids) => SinglePrompt::Ids(ids),
            Prompt::Texts(v) if v.len() == 1 => SinglePrompt::Text(&v[0]),
            Prompt::IdLists(v) if v.len() == 1 => SinglePrompt::Ids(&v[0]),
            Prompt::Texts(_) | Prompt::IdLists(_) => return Err(many()),
        })
    }
}

/// A request body, or why it could not be read (too large, cut off).
pub type Body = Result<Bytes, BytesRejection>;

/// A request body read as JSON of type `T`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// A chat request's conversation rendered with `template` into prompt text, with the
/// tools it offers the model.
pub fn chat_prompt(
    req: &ChatRequest,
    template: &ChatTemplate,
) -> Result<(String, Option<Tools>), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "at least one message is needed",
        ));
    }
    let messages = (req.messages.iter().enumerate())
        .map(|(i, m)| m.to_chat(i))
        .collect::<Result<Vec<_>, _>>()?;
    let tools = req.tools(template)?;
    let rendered = match &tools {
        Some(tools) => tools.render(template, &messages),
        None => template.render(&messages, true),
    };
    let rendered = rendered.map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    Ok((rendered, tools))
}

/// A completion request's one prompt, text or token ids.
pub fn completion_prompt(req: &CompletionRequest) -> Result<SinglePrompt<'_>, ApiError> {
    if req.echo || req.suffix.is_some() {
        return Err(ApiError::invalid(
            "echo",
            "echo and suffix are not supported",
        ));
    }
    req.prompt.single()
}

impl Common {
    /// Refuses what this server does not do, instead of ignoring it.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("n", "only n = 1 is supported"));
        }
        Ok(())
    }

    /// The JSON schema `response_format` asks the output to follow, if any.
    pub fn json_schema(&self) -> Result<Option<Value>, ApiError> {
        let Some(format) = &self.response_format else {
            return Ok(None);
        };
        let bad = |message: &str| ApiError::invalid("response_format", message);
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(serde_json::json!({"type": "object"}))),
            Some("json_schema") => {
                let schema = format
                    .get("json_schema")
                    .and_then(|s| s.get("schema"))
                    .ok_or_else(|| bad("json_schema needs a \"schema\""))?;
                Ok(Some(schema.clone()))
            }
            _ => Err(bad(
                "type must be \"text\", \"json_object\" or \"json_schema\"",
            )),
        }
    }

    /// The generation options, with `max_tokens` bounded by the room left in the
    /// context after `prompt_tokens` (and defaulting to it).
    pub fn options(
        &self,
        prompt_tokens: usize,
        context: usize,
        logprobs: Option<usize>,
    ) -> Result<GenerateOptions, ApiError> {
        let room = context.saturating_sub(prompt_tokens);
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        let max_tokens = max_tokens.map_or(room, |n| (n as usize).min(room));
        let range = |param, value: Option<f32>, lo: f32, hi: f32| match value {
            Some(v) if !(lo..=hi).contains(&v) => Err(ApiError::invalid(
                param,
                format!("{param} must be between {lo} and {hi}, not {v}"),
            )),
            _ => Ok(value),
        };
        // What a request leaves unset follows llama-server (llama.cpp's defaults).
        let base = SamplerConfig::default();
        let sampler = SamplerConfig {
            temperature: range("temperature", self.temperature, 0.0, 2.0)?
                .unwrap_or(base.temperature),
            top_p: range("top_p", self.top_p, 0.0, 1.0)?.unwrap_or(base.top_p),
            min_p: range("min_p", self.min_p, 0.0, 1.0)?.unwrap_or(base.min_p),
            top_k: self.top_k.map_or(base.top_k, |k| k as usize),
            repeat_penalty: range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?
                .unwrap_or(base.repeat_penalty),
            presence_penalty: range("presence_penalty", self.presence_penalty, -2.0, 2.0)?
                .unwrap_or(0.0),
            frequency_penalty: range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?
                .unwrap_or(0.0),
            repeat_last_n: self
                .repeat_last_n
                .map_or(base.repeat_last_n, |n| n as usize),
            seed: self.seed.unwrap_or_else(random_seed),
        };
        if logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS as usize) {
            return Err(ApiError::invalid(
                "top_logprobs",
                format!("at most {MAX_TOP_LOGPROBS} alternatives per token"),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop", "up to 4 non-empty stop strings"));
        }
        Ok(GenerateOptions {
            max_tokens,
            sampler,
            stop,
            ignore_eos: self.ignore_eos,
            logprobs,
            ..GenerateOptions::default()
        })
    }
}

/// A seed for a request that gave none.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
