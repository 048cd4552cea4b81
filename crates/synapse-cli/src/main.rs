//! `synapse`: run, chat with, tokenize and inspect local LLMs.

mod bench;
mod chat;
mod inspect;
mod interrupt;
mod memory;
mod npy;
mod quantize;
mod run;
mod serve;
mod train;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_core::DType;
use synapse_inference::generation::sampler::{SamplerConfig, SamplingOverrides};
use synapse_inference::kv_cache::KvType;
use synapse_inference::model::backend::Backend;
use synapse_inference::model::weights::LoadOptions;
use synapse_inference::{Model, SessionOptions};

#[derive(Parser)]
#[command(
    name = "synapse",
    version,
    about = "Run LLMs locally: fast CPU inference from GGUF files and Hugging Face checkpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Complete a raw prompt (no chat template).
    Run(run::RunArgs),
    /// Chat with the model using its chat template (interactive, or a conversation on stdin).
    Chat(chat::ChatArgs),
    /// Print the token ids of a text.
    Tokenize(inspect::TokenizeArgs),
    /// Print a GGUF file's metadata and tensor table (or a Hugging Face directory's).
    Inspect(inspect::InspectArgs),
    /// Measure prefill and decode throughput (like llama-bench), or memory bandwidth.
    Bench(bench::BenchArgs),
    /// Write a copy of a GGUF model with its weights in another type.
    Quantize(quantize::QuantizeArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (continuous batching).
    Serve(serve::ServeArgs),
    /// Train a LLaMA from scratch on a text; writes checkpoints and GGUF files.
    Train(train::TrainArgs),
    /// Fine-tune a model with LoRA on chat conversations; writes a PEFT adapter and, with
    /// --merge, a GGUF model.
    Finetune(train::FinetuneArgs),
}

/// Options shared by the commands that run a model.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// GGUF file or Hugging Face model directory [default: SmolLM2-135M-Instruct Q4_1,
    /// fetched on first use]
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Demo mode: random weights at the shapes of --config (output is meaningless)
    #[arg(long, requires = "config", conflicts_with = "model")]
    pub random_weights: bool,
    /// A Hugging Face config.json for --random-weights (see configs/)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Quantize f32/f16/bf16 weight matrices while loading: q8_0, q4_0, q4_k or int8
    #[arg(long, value_parser = parse_load_quantization)]
    pub quantize: Option<DType>,
    /// Threads for the matrix multiplications [default: available cores]
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Context length in tokens [default: the model's, at most 4096]
    #[arg(long = "ctx-size", short = 'c', default_value_t = 0)]
    pub ctx_size: usize,
    /// Most prompt tokens evaluated in one forward pass (0: up to 512, as activation
    /// memory allows)
    #[arg(long = "batch-size", short = 'b', default_value_t = SessionOptions::default().batch)]
    pub batch_size: usize,
    /// Keep activations in f32 inside matmuls (slower; the accuracy reference). By default
    /// they follow each weight matrix: f32 for F32, F16 and BF16 weights, 8-bit blocks for
    /// quantized ones
    #[arg(long)]
    pub f32_activations: bool,
    /// Element type of the key/value cache: f16 or f32 [default: f32 when every weight
    /// matrix is F32 or with --f32-activations, else f16]
    #[arg(long = "kv-type", value_parser = parse_kv_type)]
    pub kv_type: Option<KvType>,
    /// Where the model runs: the CPU, the GPU (wgpu: Vulkan, Metal, DirectX 12), or auto
    /// (a discrete or integrated GPU when there is one, else the CPU). `synapse inspect
    /// --devices` lists the GPUs
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
    Auto,
}

#[cfg(feature = "gpu")]
pub use synapse_gpu::Gpu;
/// Without the gpu feature there is no GPU to run on.
#[cfg(not(feature = "gpu"))]
pub enum Gpu {}

/// `model` on `gpu`, and the adapter's name.
#[cfg(feature = "gpu")]
fn on_gpu(model: Model, gpu: Gpu) -> Result<(Arc<Model<synapse_gpu::GpuBackend>>, String), String> {
    let name = format!("gpu: {}", gpu.adapter());
    let model = model.with_backend(synapse_gpu::GpuBackend::new(gpu));
    Ok((Arc::new(model.map_err(|e| e.to_string())?), name))
}
#[cfg(not(feature = "gpu"))]
fn on_gpu(_: Model, gpu: Gpu) -> Result<(Arc<Model>, String), String> {
    match gpu {}
}

/// What a command does with its model, on whichever backend `--device` picks
/// ([`ModelArgs::run`]).
pub trait OnModel {
    type Output;
    /// `device` names where the model runs: the CPU's kernels or the GPU adapter.
    fn run<B: Backend>(self, model: Arc<Model<B>>, device: &str) -> Result<Self::Output, String>;
}

impl ModelArgs {
    pub fn resolve_model(&self) -> Result<PathBuf, String> {
        match (&self.model, &self.config) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(config)) if self.random_weights => Ok(config.clone()),
            _ => synapse_inference::default_model::ensure().map_err(|e| e.to_string()),
        }
    }

    /// The GPU that `--device` asks for, or None for the CPU.
    pub fn gpu(&self) -> Result<Option<Gpu>, String> {
        #[cfg(feature = "gpu")]
        return match self.device {
            Device::Cpu => Ok(None),
            Device::Gpu => Gpu::new().map(Some).map_err(|e| e.to_string()),
            Device::Auto => match Gpu::new() {
                Ok(gpu) if gpu.is_hardware() => Ok(Some(gpu)),
                Ok(_) | Err(synapse_gpu::GpuError::NoAdapter) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
        };
        #[cfg(not(feature = "gpu"))]
        match self.device {
            Device::Gpu => {
                Err("--device gpu: this synapse was built without the gpu feature".into())
            }
            Device::Cpu | Device::Auto => Ok(None),
        }
    }

    /// Loads the model the options name and runs `job` on it, on the device `--device`
    /// asks for.
    pub fn run<J: OnModel>(&self, job: J) -> Result<J::Output, String> {
        let model = self.load_on_cpu()?;
        match self.gpu()? {
            Some(gpu) => {
                let model = Arc::into_inner(model).expect("loaded just now, not shared");
                let (model, device) = on_gpu(model, gpu)?;
                job.run(model, &device)
            }
            None => job.run(model, &format!("{:?}", synapse_core::kernels::isa())),
        }
    }

    /// Loads the model the options name, on the CPU.
    pub fn load_on_cpu(&self) -> Result<Arc<Model>, String> {
        let path = self.resolve_model()?;
        let opts = LoadOptions {
            quantize: self.quantize,
        };
        let model = if self.random_weights {
            let json =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Model::random(&path.display().to_string(), &json, opts)
        } else {
            Model::load_with(&path, opts)
        };
        model.map(Arc::new).map_err(|e| e.to_string())
    }

    pub fn session_options(&self) -> SessionOptions {
        let mut opts = SessionOptions {
            context: self.ctx_size,
            batch: self.batch_size,
            ..SessionOptions::default()
        };
        if let Some(t) = self.threads {
            opts.threads = t.max(1);
        }
        if self.f32_activations {
            opts.precision = Precision::F32;
        }
        opts.kv_type = self.kv_type;
        opts
    }
}

fn parse_kv_type(name: &str) -> Result<KvType, String> {
    match name {
        "f16" => Ok(KvType::F16),
        "f32" => Ok(KvType::F32),
        _ => Err(format!("{name:?}: expected f16 or f32")),
    }
}

fn parse_load_quantization(name: &str) -> Result<DType, String> {
    match DType::from_name(name) {
        Some(t @ (DType::Q8_0 | DType::Q4_0 | DType::Q4K | DType::Int8)) => Ok(t),
        _ => Err(format!("{name:?}: expected q8_0, q4_0, q4_k or int8")),
    }
}

/// Sampling options shared by `run` and `chat`. Unset ones come from the model's
/// generation_config.json when it has one, else llama.cpp's defaults.
#[derive(Args, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 means greedy [default: 0.8]
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep only the K most likely tokens (0 = off) [default: 40]
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Keep the most likely tokens up to this cumulative probability (1 = off) [default: 0.95]
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off)
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1 = off) [default: 1]
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Recent tokens the repetition penalty looks at
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed, for reproducible sampling
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the output contains this text (repeatable)
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn sampler<B: Backend>(&self, model: &Model<B>) -> SamplerConfig {
        let overrides = SamplingOverrides {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: Some(self.min_p),
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: Some(self.repeat_last_n),
            seed: Some(self.seed),
        };
        SamplerConfig::resolve(&overrides, model.generation_config())
    }
}

/// Restores the default action of SIGPIPE (Rust ignores it), so that `synapse inspect M |
/// head` ends quietly when the reader goes away, as other command-line tools do, instead
/// of panicking on the failed write.
#[cfg(target_os = "linux")]
fn quit_on_closed_pipe() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    // SAFETY: signal(2) with the default disposition; no handler code runs in this process.
    unsafe { signal(SIGPIPE, SIG_DFL) };
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    quit_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Chat(args) => chat::chat(args),
        Command::Tokenize(args) => inspect::tokenize(args),
        Command::Inspect(args) => inspect::inspect(args),
        Command::Bench(args) => bench::bench(args),
        Command::Quantize(args) => quantize::quantize(args),
        Command::Serve(args) => serve::serve(args),
        Command::Train(args) => train::train_command(args),
        Command::Finetune(args) => train::finetune_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("synapse: error: {message}");
            ExitCode::FAILURE
        }
    }
}
