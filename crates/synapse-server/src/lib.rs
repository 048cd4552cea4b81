//! `synapse serve`: an OpenAI-compatible HTTP server over `synapse-inference`.
//!
//! - `scheduler`: the engine's thread, continuous batching and the prefix cache;
//! - `openai`: request bodies and their checks; `routes`: the endpoints and response
//!   shapes; `error`: OpenAI's error JSON; `metrics`: Prometheus counters.

mod error;
mod metrics;
mod openai;
mod routes;
mod scheduler;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use metrics::Metrics;
use scheduler::Scheduler;
use std::path::Path;
use std::sync::Arc;
use synapse_inference::kv_cache::{self, KvType};
use synapse_inference::model::backend::Backend;
use synapse_inference::{Engine, Model, SessionOptions};

/// How to serve (the model and its sessions' options come apart: see [`serve`]).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: any free port (the startup log says which).
    pub port: u16,
    /// Sequences generating at once.
    pub parallel: usize,
    pub api_key: Option<String>,
    /// Requests that may wait for a slot before more are refused with 503.
    pub queue: usize,
    /// Key/value memory for running and cached sequences, in MiB (0: enough for every
    /// slot's full context, twice over, so that finished sequences stay cached).
    pub kv_memory_mib: usize,
}

/// Most bytes of a request body.
const BODY_LIMIT: usize = 8 << 20;

/// The endpoints whose bodies [`check_request`] reads.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completions,
}

/// Reads a request body for `endpoint` as the server does before the model runs: the
/// JSON, the fields this server refuses, the conversation rendered with `template` and
/// the tools it offers (chat), the one prompt (completions), then the response format
/// and the generation options for a prompt of `prompt_tokens` in a context of `context`
/// tokens. The error is the message the client would get. What the `server_request`
/// fuzz target runs.
pub fn check_request(
    endpoint: Endpoint,
    body: &[u8],
    template: &synapse_inference::chat::ChatTemplate,
    prompt_tokens: usize,
    context: usize,
) -> Result<(), String> {
    let check = || -> Result<(), error::ApiError> {
        let (common, logprobs) = match endpoint {
            Endpoint::Chat => {
                let req: openai::ChatRequest = openai::parse(body)?;
                req.common.check_supported()?;
                openai::chat_prompt(&req, template)?;
                let logprobs = req.logprobs();
                (req.common, logprobs)
            }
            Endpoint::Completions => {
                let req: openai::CompletionRequest = openai::parse(body)?;
                req.common.check_supported()?;
                openai::completion_prompt(&req)?;
                (req.common, req.logprobs.map(|n| n as usize))
            }
        };
        common.json_schema()?;
        common.options(prompt_tokens, context, logprobs)?;
        Ok(())
    };
    check().map_err(|e| e.message)
}

/// Serves `model` until Ctrl-C, each sequence with `session`'s options (its context
/// and threads; `kv_memory` is the server's own). `device` names where the model runs, for
/// the startup log.
pub fn serve<B: Backend>(
    model: Arc<Model<B>>,
    session: SessionOptions,
    device: &str,
    opts: ServeOptions,
) -> Result<(), String> {
    let template = model.chat_template().map_err(|e| e.to_string())?;
    let session = session.resolve(&model);
    let c = model.config();
    let kv_type = session.kv_type.unwrap_or(KvType::F16);
    let per_position = kv_cache::position_bytes(c.n_layers, c.kv_dim(), kv_type);
    let parallel = opts.parallel.max(1);
    let kv_memory = match opts.kv_memory_mib {
        0 => 2 * parallel * session.context * per_position,
        mib => mib << 20,
    };
    let engine = Engine::new(
        model.clone(),
        SessionOptions {
            kv_memory,
            ..session
        },
    );
    let metrics = Arc::new(Metrics::default());
    let (jobs, queue) = std::sync::mpsc::sync_channel(opts.queue.max(1));
    let scheduler = Scheduler::new(engine, parallel, queue, metrics.clone());
    let engine_thread = std::thread::Builder::new()
        .name("synapse-engine".into())
        .spawn(move || scheduler.run())
        .map_err(|e| format!("cannot start the engine thread: {e}"))?;

    let path = Path::new(&model.path);
    let model_id = path
        .file_stem()
        .map_or_else(|| model.path.clone(), |s| s.to_string_lossy().into_owned());
    let state = Arc::new(routes::AppState {
        model: model.clone(),
        constraints: std::sync::OnceLock::new(),
        template,
        model_id: model_id.clone(),
        context: session.context,
        slots: parallel,
        jobs,
        metrics,
        api_key: opts.api_key.clone(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(routes::chat::<B>))
        .route("/v1/completions", post(routes::completions::<B>))
        .route("/v1/models", get(routes::models::<B>))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics::<B>))
        .route("/tokenize", post(routes::tokenize::<B>))
        .route("/detokenize", post(routes::detokenize::<B>))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::authorize::<B>,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            error::ApiError::status(
                500,
                "internal error (a bug in Synapse) while handling the request",
            )
            .into_response()
        }))
        .with_state(state);

    // The HTTP side is light: two runtime threads, the cores go to the engine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", opts.host, opts.port))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "synapse serve: listening on http://{address} | model {model_id} ({}, {} parameters) | \
             {device}, {} threads | {parallel} slots of {} tokens | KV memory up to {} MiB \
             ({kv_type:?}){}",
            c.architecture,
            model.parameter_count(),
            session.threads,
            session.context,
            kv_memory >> 20,
            if opts.api_key.is_some() { " | API key required" } else { "" },
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| format!("server error: {e}"))
    })?;
    drop(runtime);
    let _ = engine_thread.join();
    Ok(())
}
