//! The HTTP endpoints: OpenAI's chat and text completions (whole or streamed as
//! server-sent events), models, health, metrics, tokenize and detokenize.

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{chat_prompt, completion_prompt, parse, Body, ChatRequest, Common};
use crate::openai::{CompletionRequest, SinglePrompt};
use crate::scheduler::{Event, Finish, Job};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use synapse_inference::chat::ChatTemplate;
use synapse_inference::generation::constraint::ConstraintFactory;
use synapse_inference::generation::{GenerateOptions, StopReason, TokenLogprob};
use synapse_inference::model::backend::Backend;
use synapse_inference::tools::Tools;
use synapse_inference::Model;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

pub struct AppState<B: Backend> {
    pub model: Arc<Model<B>>,
    /// Made on the first request with a JSON schema (it indexes the vocabulary).
    pub constraints: OnceLock<Result<ConstraintFactory, String>>,
    pub template: ChatTemplate,
    /// The name clients give as `model` (the file's stem).
    pub model_id: String,
    pub context: usize,
    pub slots: usize,
    pub jobs: SyncSender<Job>,
    pub metrics: Arc<Metrics>,
    pub api_key: Option<String>,
    pub started: u64,
}

type Shared<B> = State<Arc<AppState<B>>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response id unique to this server's run.
fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:x}{n:06x}", now())
}

impl<B: Backend> AppState<B> {
    fn check_model(&self, requested: &Option<String>) -> Result<(), ApiError> {
        match requested {
            Some(name) if name != &self.model_id && name != &self.model.path => {
                Err(ApiError::invalid(
                    "model",
                    format!(
                        "model {name:?} is not served here (this server serves {:?})",
                        self.model_id
                    ),
                )
                .with_code("model_not_found"))
            }
            _ => Ok(()),
        }
    }

    /// The constraint factory, made on first use.
    fn constraints(&self) -> Result<&ConstraintFactory, ApiError> {
        self.constraints
            .get_or_init(|| ConstraintFactory::new(&self.model).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ApiError::status(500, e.clone()))
    }

    /// Queues a generation; its events arrive on the returned receiver.
    fn submit(
        &self,
        kind: Kind,
        prompt: Vec<u32>,
        opts: GenerateOptions,
    ) -> Result<UnboundedReceiver<Event>, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::invalid(
                kind.prompt_param(),
                "the prompt is empty",
            ));
        }
        if prompt.len() >= self.context {
            return Err(ApiError::invalid(
                kind.prompt_param(),
                format!(
                    "the prompt has {} tokens; the context holds {} (and at least one token must be generated)",
                    prompt.len(),
                    self.context
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let (events, receiver) = unbounded_channel();
        self.metrics.requests.fetch_add(1, Relaxed);
        self.metrics.queued.fetch_add(1, Relaxed);
        let job = Job {
            prompt,
            opts,
            events,
            queued: Instant::now(),
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(e) => {
                self.metrics.queued.fetch_sub(1, Relaxed);
                match e {
                    TrySendError::Full(_) => {
                        self.metrics.rejected.fetch_add(1, Relaxed);
                        Err(ApiError::status(
                            503,
                            "the server is busy: every slot and queue place is taken; retry later",
                        ))
                    }
                    TrySendError::Disconnected(_) => {
                        Err(ApiError::status(500, "the scheduler has stopped"))
                    }
                }
            }
        }
    }
}

/// The two kinds of completion, which differ only in how their results are shaped.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Text,
}

impl Kind {
    /// The request field that holds the prompt, which errors about it name.
    fn prompt_param(self) -> &'static str {
        match self {
            Kind::Chat => "messages",
            Kind::Text => "prompt",
        }
    }
}

/// What shapes a completion's results.
struct Reply<B: Backend> {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Whether the request asked for logprobs.
    logprobs: bool,
    /// The tools offered: the reply is read back as calls once it is complete.
    tools: Option<Tools>,
    state: Arc<AppState<B>>,
}

pub async fn chat<B: Backend>(State(state): Shared<B>, body: Body) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(&body?)?;
    req.common.check_supported()?;
    state.check_model(&req.common.model)?;
    let (rendered, tools) = chat_prompt(&req, &state.template)?;
    let prompt = state.model.encode_chat(&rendered)?;
    let logprobs = req.logprobs();
    complete(state, Kind::Chat, prompt, &req.common, logprobs, tools).await
}

pub async fn completions<B: Backend>(
    State(state): Shared<B>,
    body: Body,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(&body?)?;
    req.common.check_supported()?;
    state.check_model(&req.common.model)?;
    let prompt = match completion_prompt(&req)? {
        SinglePrompt::Text(text) => state.model.tokenizer()?.encode(text, true, true),
        SinglePrompt::Ids(ids) => ids.to_vec(),
    };
    let vocab = state.model.config().vocab_size;
    if let Some(&bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
        return Err(ApiError::invalid(
            "prompt",
            format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
        ));
    }
    let logprobs = req.logprobs.map(|n| n as usize);
    complete(state, Kind::Text, prompt, &req.common, logprobs, None).await
}

async fn complete<B: Backend>(
    state: Arc<AppState<B>>,
    kind: Kind,
    prompt: Vec<u32>,
    common: &Common,
    logprobs: Option<usize>,
    tools: Option<Tools>,
) -> Result<Response, ApiError> {
    let mut opts = common.options(prompt.len(), state.context, logprobs)?;
    let constraint = match (&tools, common.json_schema()?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "response_format",
                "a JSON response_format cannot be combined with tools",
            ))
        }
        (Some(tools), None) => match tools.grammar() {
            Some(grammar) => Some(("tools", state.constraints()?.tool_reply(&grammar))),
            None => None,
        },
        (None, Some(schema)) => {
            Some(("response_format", state.constraints()?.json_schema(&schema)))
        }
        (None, None) => None,
    };
    if let Some((param, constraint)) = constraint {
        opts.constraint = Some(constraint.map_err(|e| ApiError::invalid(param, e.to_string()))?);
    }
    let events = state.submit(kind, prompt, opts)?;
    let reply = Reply {
        kind,
        id: response_id(if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        }),
        created: now(),
        model: state.model_id.clone(),
        include_usage: common
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
        logprobs: logprobs.is_some(),
        tools,
        state,
    };
    match common.stream {
        true => Ok(reply.stream(events)),
        false => reply.whole(events).await,
    }
}

impl<B: Backend> Reply<B> {
    /// A result object of kind `object`: this completion's id, time, model and
    /// fingerprint, then `fields`.
    fn with(&self, object: &str, fields: Value) -> Value {
        let mut out = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": concat!("synapse-", env!("CARGO_PKG_VERSION")),
        });
        if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
            out.extend(fields);
        }
        out
    }

    fn token_text(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self
            .state
            .model
            .tokenizer()
            .map(|t| t.token_bytes(id))
            .unwrap_or_default();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }

    /// One token's logprobs in the chat API's shape.
    fn chat_logprob(&self, lp: &TokenLogprob) -> Value {
        let entry = |id: u32, logprob: f32| {
            let (token, bytes) = self.token_text(id);
            json!({"token": token, "logprob": logprob, "bytes": bytes})
        };
        let mut first = entry(lp.token, lp.logprob);
        first["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
        first
    }

    /// Logprobs of tokens in the completions API's shape (`offset`: where the first
    /// token's text starts in the completion).
    fn text_logprobs(&self, lps: &[TokenLogprob], mut offset: usize) -> Value {
        let (mut tokens, mut values, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
        for lp in lps {
            let (token, _) = self.token_text(lp.token);
            offsets.push(offset);
            offset += token.len();
            tokens.push(token);
            values.push(lp.logprob);
            let top: serde_json::Map<String, Value> = lp
                .top
                .iter()
                .map(|&(id, l)| (self.token_text(id).0, json!(l)))
                .collect();
            tops.push(Value::Object(top));
        }
        json!({"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets})
    }

    fn usage(finish: &Finish) -> Value {
        json!({
            "prompt_tokens": finish.prompt_tokens,
            "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens + finish.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": finish.cached_tokens},
        })
    }

    fn finish_reason(finish: &Finish) -> &'static str {
        match finish.reason {
            StopReason::Length => "length",
            StopReason::Eos | StopReason::Stop | StopReason::Cancelled => "stop",
        }
    }

    /// A chat reply's message and finish reason: the text as it is or, when tools were
    /// offered, what the model said and the calls it made.
    fn chat_message(&self, text: String, finish: &Finish) -> (Value, &'static str) {
        let reason = Self::finish_reason(finish);
        let Some(tools) = &self.tools else {
            return (json!({"role": "assistant", "content": text}), reason);
        };
        let reply = tools.parse(&text);
        let mut message = json!({"role": "assistant", "content": reply.content});
        if reply.calls.is_empty() {
            return (message, reason);
        }
        let calls = (reply.calls.iter())
            .map(|call| {
                json!({"id": response_id("call"), "type": "function",
                       "function": {"name": call.name, "arguments": call.arguments.to_string()}})
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
        (message, "tool_calls")
    }

    /// The whole completion, once it is done.
    async fn whole(self, mut events: UnboundedReceiver<Event>) -> Result<Response, ApiError> {
        let (mut text, mut logprobs) = (String::new(), Vec::new());
        let finish = loop {
            match events.recv().await {
                Some(Event::Token {
                    text: t,
                    logprobs: lp,
                }) => {
                    text.push_str(&t);
                    logprobs.extend(lp);
                }
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(finish)) => break finish,
                Some(Event::Failed(status, message)) => {
                    return Err(ApiError::status(status, message))
                }
                None => {
                    return Err(ApiError::status(
                        500,
                        "the generation ended without a result",
                    ))
                }
            }
        };
        let asked = self.logprobs;
        let choice = match self.kind {
            Kind::Chat => {
                let (message, reason) = self.chat_message(text, &finish);
                json!({
                    "index": 0,
                    "message": message,
                    "logprobs": asked.then(|| json!({"content": logprobs.iter().map(|lp| self.chat_logprob(lp)).collect::<Vec<_>>()})),
                    "finish_reason": reason,
                })
            }
            Kind::Text => json!({
                "index": 0,
                "text": text,
                "logprobs": asked.then(|| self.text_logprobs(&logprobs, 0)),
                "finish_reason": Self::finish_reason(&finish),
            }),
        };
        let object = match self.kind {
            Kind::Chat => "chat.completion",
            Kind::Text => "text_completion",
        };
        let body = self.with(
            object,
            json!({"choices": [choice], "usage": Self::usage(&finish)}),
        );
        Ok(Json(body).into_response())
    }

    /// The completion as server-sent events, ending with `data: [DONE]`. A client that
    /// goes away drops the stream, which cancels the generation.
    fn stream(self, events: UnboundedReceiver<Event>) -> Response {
        let (out, sse) = unbounded_channel::<SseEvent>();
        tokio::spawn(self.relay(events, out));
        let stream = UnboundedReceiverStream::new(sse).map(Ok::<_, Infallible>);
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response()
    }

    async fn relay(self, mut events: UnboundedReceiver<Event>, out: UnboundedSender<SseEvent>) {
        let send = |value: Value| {
            out.send(SseEvent::default().data(value.to_string()))
                .is_ok()
        };
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Text => "text_completion",
        };
        let chunk = |text: Option<&str>, logprobs: Value, finish: Value| {
            let choice = match self.kind {
                Kind::Chat => {
                    let delta = text.map_or(json!({}), |t| json!({"content": t}));
                    json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
                }
                Kind::Text => {
                    json!({"index": 0, "text": text.unwrap_or(""), "logprobs": logprobs, "finish_reason": finish})
                }
            };
            self.with(object, json!({"choices": [choice]}))
        };
        if self.kind == Kind::Chat {
            let first = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
            if !send(self.with(object, json!({"choices": [first]}))) {
                return;
            }
        }
        let mut offset = 0;
        // A reply to tools is read as a whole, then sent as its text and calls.
        let mut held = self.tools.as_ref().map(|_| String::new());
        loop {
            let event = events.recv().await;
            if let (Some(held), Some(Event::Token { text, .. } | Event::Text(text))) =
                (&mut held, &event)
            {
                held.push_str(text);
                continue;
            }
            let sent = match event {
                Some(Event::Token { text, logprobs }) => {
                    if text.is_empty() && logprobs.is_none() {
                        continue;
                    }
                    let lp = match (&logprobs, self.kind) {
                        (None, _) => Value::Null,
                        (Some(lp), Kind::Chat) => json!({"content": [self.chat_logprob(lp)]}),
                        (Some(lp), Kind::Text) => {
                            self.text_logprobs(std::slice::from_ref(lp), offset)
                        }
                    };
                    offset += text.len();
                    send(chunk(Some(&text), lp, Value::Null))
                }
                Some(Event::Text(text)) => send(chunk(Some(&text), Value::Null, Value::Null)),
                Some(Event::Done(finish)) => {
                    let mut ok = true;
                    let mut reason = Self::finish_reason(&finish);
                    if let Some(text) = held.take() {
                        let (message, why) = self.chat_message(text, &finish);
                        reason = why;
                        if let Some(content) = message["content"].as_str() {
                            ok &= send(chunk(Some(content), Value::Null, Value::Null));
                        }
                        if let Some(Value::Array(calls)) = message.get("tool_calls") {
                            let calls: Vec<Value> = (calls.iter().enumerate())
                                .map(|(i, call)| {
                                    let mut call = call.clone();
                                    call["index"] = json!(i);
                                    call
                                })
                                .collect();
                            let delta = json!({"index": 0, "delta": {"tool_calls": calls}, "logprobs": null, "finish_reason": null});
                            ok &= send(self.with(object, json!({"choices": [delta]})));
                        }
                    }
                    ok &= send(chunk(None, Value::Null, json!(reason)));
                    if self.include_usage {
                        ok &= send(self.with(
                            object,
                            json!({"choices": [], "usage": Self::usage(&finish)}),
                        ));
                    }
                    let _ = ok && out.send(SseEvent::default().data("[DONE]")).is_ok();
                    return;
                }
                Some(Event::Failed(status, message)) => {
                    send(
                        json!({"error": {"message": message, "type": "server_error", "code": status}}),
                    );
                    return;
                }
                None => return,
            };
            if !sent {
                return;
            }
        }
    }
}

pub async fn models<B: Backend>(State(state): Shared<B>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{
        "id": state.model_id,
        "object": "model",
        "created": state.started,
        "owned_by": "synapse",
        "meta": {
            "path": state.model.path,
            "architecture": state.model.config().architecture,
            "n_params": state.model.parameter_count(),
            "n_ctx_train": state.model.config().context_length,
            "n_vocab": state.model.config().vocab_size,
        },
    }]}))
}

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn metrics<B: Backend>(State(state): Shared<B>) -> Response {
    let text = state.metrics.render(state.slots);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(serde::Deserialize)]
struct TokenizeRequest {
    content: String,
    #[serde(default)]
    add_special: bool,
}

pub async fn tokenize<B: Backend>(
    State(state): Shared<B>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: TokenizeRequest = parse(&body?)?;
    let tokens = state
        .model
        .tokenizer()?
        .encode(&req.content, req.add_special, true);
    Ok(Json(json!({"tokens": tokens})))
}

#[derive(serde::Deserialize)]
struct DetokenizeRequest {
    tokens: Vec<u32>,
}

pub async fn detokenize<B: Backend>(
    State(state): Shared<B>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let req: DetokenizeRequest = parse(&body?)?;
    let tokenizer = state.model.tokenizer()?;
    if let Some(&bad) = req
        .tokens
        .iter()
        .find(|&&id| id as usize >= tokenizer.vocab_size())
    {
        let vocab = tokenizer.vocab_size();
        return Err(ApiError::invalid(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {vocab} tokens"),
        ));
    }
    Ok(Json(json!({"content": tokenizer.decode(&req.tokens)})))
}

/// With an API key set, every route but /health needs `Authorization: Bearer KEY`.
pub async fn authorize<B: Backend>(
    State(state): Shared<B>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(request).await;
    };
    let given = (request.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let matches = given.is_some_and(|given| same_secret(given.as_bytes(), key.as_bytes()));
    if request.uri().path() == "/health" || matches {
        return next.run(request).await;
    }
    let message = match given {
        None => "missing API key: send Authorization: Bearer KEY",
        Some(_) => "invalid API key",
    };
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        message: message.into(),
        param: None,
        code: Some("invalid_api_key"),
    }
    .into_response()
}

/// Byte equality in a time that does not depend on where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
