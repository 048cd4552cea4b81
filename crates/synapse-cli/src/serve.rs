//! `synapse serve`: the OpenAI-compatible HTTP server (crates/synapse-server).

use clap::Args;
use std::path::PathBuf;
use synapse_server::ServeOptions;

#[derive(Args)]
pub struct ServeArgs {
    /// GGUF file or Hugging Face model directory [default: SmolLM2-135M-Instruct Q4_1,
    /// fetched on first use]
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Address to listen on (loopback unless you mean to expose the model)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the startup log says which)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences generated at once (continuous batching)
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Context of each sequence in tokens [default: the model's, at most 4096]
    #[arg(long = "ctx-size", short = 'c', default_value_t = 0)]
    ctx_size: usize,
    /// Threads of the forward passes [default: available cores]
    #[arg(long, short = 't')]
    threads: Option<usize>,
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

pub fn serve(args: ServeArgs) -> Result<(), String> {
    synapse_server::serve(ServeOptions {
        model: args.model,
        host: args.host,
        port: args.port,
        parallel: args.parallel,
        ctx_size: args.ctx_size,
        threads: args.threads,
        api_key: args.api_key,
        queue: args.queue,
        kv_memory_mib: args.kv_memory,
    })
}
