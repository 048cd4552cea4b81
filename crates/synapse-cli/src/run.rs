//! `synapse run`: raw completion of a prompt.

use crate::{ModelArgs, OnModel, SamplingArgs};
use clap::Args;
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;
use synapse_inference::generation::{generate, GenerateOptions};
use synapse_inference::model::backend::Backend;
use synapse_inference::{Model, Session};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt text
    #[arg(long, short = 'p', required_unless_present = "prompt_ids")]
    prompt: Option<String>,
    /// The prompt as comma-separated token ids (no tokenizer needed)
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt")]
    prompt_ids: Vec<u32>,
    /// Write the logits of every prompt position to this file as a float32 .npy array
    /// [n_prompt, vocab]
    #[arg(long)]
    logits_out: Option<std::path::PathBuf>,
    /// Most tokens to generate
    #[arg(long, short = 'n', default_value_t = 128)]
    max_tokens: usize,
    /// Do not stop at end-of-generation tokens
    #[arg(long)]
    ignore_eos: bool,
    /// Treat special-token text in the prompt (e.g. <|im_start|>) as plain text
    #[arg(long)]
    no_special: bool,
    /// Print one JSON object with tokens, text, stop reason and timings
    #[arg(long)]
    json: bool,
    /// With --json: include the K highest logits at the last prompt position
    #[arg(long, default_value_t = 0)]
    logits_top: usize,
    /// With --json: each generated token's logprob and its K most likely alternatives
    /// (as OpenAI's `logprobs`/`top_logprobs`; 0: the token's own only)
    #[arg(long)]
    logprobs: Option<usize>,
}

pub fn run(args: RunArgs) -> Result<(), String> {
    let load = Instant::now();
    args.model.run(RunJob { args: &args, load })
}

struct RunJob<'a> {
    args: &'a RunArgs,
    load: Instant,
}

impl OnModel for RunJob<'_> {
    type Output = ();
    fn run<B: Backend>(self, model: Arc<Model<B>>, _device: &str) -> Result<(), String> {
        run_on(self.args, model, self.load)
    }
}

/// `synapse run` with the model on backend `B`.
fn run_on<B: Backend>(args: &RunArgs, model: Arc<Model<B>>, load: Instant) -> Result<(), String> {
    let load_ms = load.elapsed().as_secs_f64() * 1000.0;

    let prompt = match &args.prompt {
        Some(text) => {
            model
                .tokenizer()
                .map_err(|e| e.to_string())?
                .encode(text, true, !args.no_special)
        }
        None => args.prompt_ids.clone(),
    };
    // Ctrl-C stops the generation; what it made is printed with its timings.
    let (cancel, _interrupt) = crate::interrupt::generation();
    let opts = GenerateOptions {
        cancel: Some(cancel),
        max_tokens: args.max_tokens,
        sampler: args.sampling.sampler(&model),
        stop: args.sampling.stop.clone(),
        ignore_eos: args.ignore_eos,
        logits_top: args.logits_top,
        logprobs: args.logprobs,
        ..GenerateOptions::default()
    };
    let mut session = Session::new(model.clone(), args.model.session_options());
    let mut to_generate = &prompt[..];
    if let Some(file) = &args.logits_out {
        let logits = session.eval(&prompt, true).map_err(|e| e.to_string())?;
        crate::npy::write_f32(file, &logits, [prompt.len(), model.config().vocab_size])?;
        // Generation continues from the last prompt token, evaluated again for its logits.
        let kept = session.truncate(prompt.len() - 1);
        to_generate = &prompt[kept..];
    }
    let stream = !args.json;
    let mut stdout = std::io::stdout();
    let out = generate(&mut session, to_generate, &opts, |text| {
        if stream {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    })
    .map_err(|e| e.to_string())?;

    let t = &out.timings;
    if args.json {
        let mut report = json!({
            "prompt_tokens": prompt,
            "tokens": out.tokens,
            "text": out.text,
            "stop_reason": out.stop_reason.as_str(),
            "precision": session.precision(),
            "peak_rss_bytes": crate::memory::peak_rss_bytes(),
            "timings": {
                "load_ms": load_ms,
                "prefill_tokens": t.prefill_tokens,
                "prefill_ms": t.prefill_ms,
                "prefill_tok_s": t.prefill_tok_s(),
                "decode_tokens": t.decode_tokens,
                "decode_ms": t.decode_ms,
                "decode_tok_s": t.decode_tok_s(),
            },
        });
        // (id, value) pairs as two-element arrays.
        let pairs = |top: &[(u32, f32)]| -> serde_json::Value {
            top.iter().map(|&(id, v)| json!([id, v])).collect()
        };
        if args.logprobs.is_some() {
            report["logprobs"] = out
                .logprobs
                .iter()
                .map(|t| {
                    json!({
                        "token": t.token,
                        "logprob": t.logprob,
                        "top_logprobs": pairs(&t.top),
                    })
                })
                .collect();
        }
        if args.logits_top > 0 {
            report["top_logits"] = pairs(&out.top_logits);
        }
        println!("{report}");
    } else {
        println!();
        eprintln!(
            "[prompt: {} tokens, {:.1} tok/s | generated: {} tokens, {:.1} tok/s | stop: {}]",
            t.prefill_tokens,
            t.prefill_tok_s(),
            t.decode_tokens,
            t.decode_tok_s(),
            out.stop_reason.as_str()
        );
    }
    Ok(())
}
