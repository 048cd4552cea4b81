//! `synapse serve`: the OpenAI-compatible HTTP server (crates/synapse-server).

use crate::{ModelArgs, OnModel};
use clap::Args;
use std::sync::Arc;
use synapse_inference::model::backend::Backend;
use synapse_inference::Model;
use synapse_server::ServeOptions;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (loopback unless you mean to expose the model)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the startup log says which)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences generated at once (continuous batching)
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health
    #[arg(long)]
    api_key: Option<String>,
    /// Requests that may wait for a slot before more get 503
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Key/value memory for running and cached sequences, MiB [default: twice what every
    /// slot's full context takes]
    #[arg(long, default_value_t = 0)]
    kv_memory: usize,
}

/// The server over the model `--device` put where it runs.
struct Server(ServeArgs);

impl OnModel for Server {
    type Output = ();
    fn run<B: Backend>(self, model: Arc<Model<B>>, device: &str) -> Result<(), String> {
        let Server(args) = self;
        let session = args.model.session_options();
        let opts = ServeOptions {
            host: args.host,
            port: args.port,
            parallel: args.parallel,
            api_key: args.api_key,
            queue: args.queue,
            kv_memory_mib: args.kv_memory,
        };
        synapse_server::serve(model, session, device, opts)
    }
}

pub fn serve(args: ServeArgs) -> Result<(), String> {
    args.model.clone().run(Server(args))
}
