//! `synapse train` (a LLaMA from scratch on a text) and `synapse finetune` (LoRA adapters
//! on a model's projections, from chat conversations): the loop is synapse-train's; this
//! door reads the data, shows progress, and writes the log, the loss curve, checkpoints,
//! adapters and GGUF files.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::DType;
use synapse_inference::chat::ChatMessage;
use synapse_inference::model::weights::LoadOptions;
use synapse_inference::{Model, Session, SessionOptions};
use synapse_train::autodiff::{Autodiff, Training};
use synapse_train::checkpoint::{self, Progress};
use synapse_train::data::{chat_example, sample, Corpus};
use synapse_train::export::{merged_weights, write_gguf, write_peft_adapter};
use synapse_train::init::initialize;
use synapse_train::lora::{LoraOptions, ALL_PROJECTIONS};
use synapse_train::optim::{AdamW, Schedule};
use synapse_train::plot::{write_loss_curve, Series};
use synapse_train::trainer::{held_out_loss, train, Plan, StepLog};

/// The optimizer, schedule and bookkeeping options both commands share.
#[derive(Args)]
pub struct LoopArgs {
    /// Optimizer steps
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Sequences per micro-batch
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Micro-batches whose gradients add up before each update (each step trains on
    /// batch × accumulate sequences; a micro-batch is one forward pass, so memory is that
    /// of one)
    #[arg(long, default_value_t = 1)]
    pub accumulate: usize,
    /// Peak learning rate (AdamW, betas 0.9/0.95) [default: 1e-3 for train, 5e-4 for
    /// finetune]
    #[arg(long)]
    pub lr: Option<f32>,
    /// Learning rate at the end of the cosine decay [default: lr / 10]
    #[arg(long)]
    pub min_lr: Option<f32>,
    /// Linear warm-up steps [default: steps / 20]
    #[arg(long)]
    pub warmup: Option<usize>,
    /// AdamW's decoupled weight decay [default: 0.1 for train, 0 for finetune]
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip the gradients' global norm to this (0: no clipping)
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// Seed of the initial weights (or adapters) and of the batches
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Threads for the matrix products [default: available cores]
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Measure the held-out loss every this many steps (and before the first, and after
    /// the last)
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Directory for the log (log.jsonl), the loss curve (loss.png) and what the run
    /// writes
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Hugging Face config.json of the LLaMA to train (see configs/); its vocab_size must
    /// be the tokenizer's
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// UTF-8 text to train on (`scripts/fetch-corpus.sh` fetches Shakespeare's works)
    #[arg(long)]
    pub data: PathBuf,
    /// GGUF file whose tokenizer and chat template the model gets [default: the default
    /// model's, SmolLM2's]
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per training sequence
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Fraction of the text, from its end, kept for the held-out loss
    #[arg(long, default_value_t = 0.05)]
    pub held_out: f32,
    /// Held-out sequences the held-out loss averages
    #[arg(long, default_value_t = 32)]
    pub eval_sequences: usize,
    /// Save a checkpoint (OUT/checkpoint, a Hugging Face directory) every this many
    /// steps, and after the last
    #[arg(long, default_value_t = 100)]
    pub save_every: usize,
    /// Continue the run whose checkpoint is in --out
    #[arg(long)]
    pub resume: bool,
    /// GGUF files written at the end (OUT/model-TYPE.gguf), comma-separated: f32, f16,
    /// q8_0
    #[arg(long, value_delimiter = ',', default_value = "f16", value_parser = parse_export_type)]
    pub export: Vec<DType>,
    #[command(flatten)]
    pub run: LoopArgs,
}

#[derive(Args)]
pub struct FinetuneArgs {
    /// GGUF file or Hugging Face directory to adapt; its weights stay as they are stored
    /// (quantized ones are dequantized on the fly) [default: the default model]
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Conversations, one JSON object a line: {"messages": [{"role": ..., "content": ...}]};
    /// the loss counts the assistant's turns only
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f32,
    /// Projections that gain adapters, comma-separated (the engine's names)
    #[arg(long, value_delimiter = ',', default_values_t = ALL_PROJECTIONS.map(String::from))]
    pub lora_targets: Vec<String>,
    /// Fraction of the conversations, from the file's end, kept for the held-out loss
    #[arg(long, default_value_t = 0.1)]
    pub held_out: f32,
    /// Longest conversation in tokens (longer ones are cut)
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Also write the model with the adapters merged in, as OUT/merged-TYPE.gguf (a GGUF
    /// model only: its tokenizer and template are carried over)
    #[arg(long)]
    pub merge: bool,
    /// Weight types of the merged model, comma-separated: f32, f16, q8_0
    #[arg(long, value_delimiter = ',', default_value = "f16", value_parser = parse_export_type)]
    pub merge_type: Vec<DType>,
    #[command(flatten)]
    pub run: LoopArgs,
}

fn parse_export_type(name: &str) -> Result<DType, String> {
    match DType::from_name(name) {
        Some(t @ (DType::F32 | DType::F16 | DType::Q8_0)) => Ok(t),
        _ => Err(format!("{name:?}: expected f32, f16 or q8_0")),
    }
}

impl LoopArgs {
    fn plan(&self, default_lr: f32) -> Plan {
        let peak = self.lr.unwrap_or(default_lr);
        Plan {
            steps: self.steps,
            schedule: Schedule {
                peak,
                floor: self.min_lr.unwrap_or(peak / 10.0),
                warmup: self.warmup.unwrap_or(self.steps / 20),
                total: self.steps,
            },
            clip: (self.clip > 0.0).then_some(self.clip),
            eval_every: self.eval_every,
        }
    }

    fn adam(&self, default_decay: f32) -> AdamW {
        AdamW::new(
            (0.9, 0.95),
            1e-8,
            self.weight_decay.unwrap_or(default_decay),
        )
    }

    /// A session whose forward passes hold a micro-batch of sequences of up to `len`
    /// tokens.
    fn session(&self, model: Model<Autodiff>, len: usize) -> Session<Autodiff> {
        let mut opts = SessionOptions {
            context: len,
            batch: len * self.batch.max(1),
            ..SessionOptions::default()
        };
        if let Some(t) = self.threads {
            opts.threads = t.max(1);
        }
        Session::new(Arc::new(model), opts)
    }

    /// Sequences a step trains on.
    fn sequences(&self) -> usize {
        self.batch.max(1) * self.accumulate.max(1)
    }
}

/// The log, the loss curve and the progress bar of a run.
struct Record {
    out: PathBuf,
    title: String,
    log: std::fs::File,
    train: Vec<(f32, f32)>,
    held_out: Vec<(f32, f32)>,
    bar: ProgressBar,
}

impl Record {
    /// Opens OUT/log.jsonl, keeping the entries of steps up to `start` (a resumed run's
    /// checkpoint; later ones were not saved), or starting it afresh.
    fn open(out: &Path, title: String, start: usize, steps: usize) -> Result<Record, String> {
        let io = |e: std::io::Error| format!("{}: {e}", out.display());
        std::fs::create_dir_all(out).map_err(io)?;
        let path = out.join("log.jsonl");
        let mut kept = Vec::new();
        if start > 0 {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                let entry: serde_json::Value =
                    serde_json::from_str(line).map_err(|e| format!("{}: {e}", path.display()))?;
                if entry["step"].as_u64().is_some_and(|s| s as usize <= start) {
                    kept.push(entry);
                }
            }
        }
        let mut log = std::fs::File::create(&path).map_err(io)?;
        let (mut train, mut held_out) = (Vec::new(), Vec::new());
        for entry in &kept {
            writeln!(log, "{entry}").map_err(io)?;
            let step = entry["step"].as_f64().unwrap_or(0.0) as f32;
            if let Some(loss) = entry["loss"].as_f64() {
                train.push((step, loss as f32));
            }
            if let Some(loss) = entry["held_out"].as_f64() {
                held_out.push((step, loss as f32));
            }
        }
        let bar = ProgressBar::new(steps as u64).with_position(start as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed} (eta {eta}) {msg}")
                .expect("a valid template"),
        );
        Ok(Record {
            out: out.to_path_buf(),
            title,
            log,
            train,
            held_out,
            bar,
        })
    }

    /// The held-out loss before training (step 0 of a fresh run).
    fn initial(&mut self, held_out: Option<f32>) -> Result<(), String> {
        if let Some(loss) = held_out {
            self.held_out.push((0.0, loss));
            let entry = serde_json::json!({"step": 0, "held_out": loss});
            writeln!(self.log, "{entry}").map_err(|e| e.to_string())?;
            self.bar.println(format!("step 0: held-out loss {loss:.4}"));
        }
        Ok(())
    }

    fn step(&mut self, log: &StepLog) -> Result<(), String> {
        let line = serde_json::to_string(log).expect("plain data");
        writeln!(self.log, "{line}").map_err(|e| e.to_string())?;
        self.train.push((log.step as f32, log.loss));
        let mut msg = format!("loss {:.4}, {:.0} tok/s", log.loss, log.tokens_per_s);
        if let Some(held) = log.held_out {
            self.held_out.push((log.step as f32, held));
            self.bar.println(format!(
                "step {}: loss {:.4}, held-out loss {held:.4}",
                log.step, log.loss
            ));
            self.plot()?;
        }
        if let Some(&(_, held)) = self.held_out.last() {
            msg.push_str(&format!(", held-out {held:.4}"));
        }
        self.bar.set_message(msg);
        self.bar.inc(1);
        Ok(())
    }

    fn plot(&self) -> Result<(), String> {
        let series = [
            Series {
                label: "training batch",
                color: [70, 110, 200],
                points: &self.train,
            },
            Series {
                label: "held-out",
                color: [220, 90, 40],
                points: &self.held_out,
            },
        ];
        let path = self.out.join("loss.png");
        write_loss_curve(&path, &self.title, &series)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn finish(&self) -> Result<(), String> {
        self.bar.finish();
        self.plot()
    }
}

/// The GGUF file that gives a model its tokenizer: `path`, or the default model.
fn tokenizer_file(path: &Option<PathBuf>) -> Result<GgufFile, String> {
    let path = match path {
        Some(p) => p.clone(),
        None => synapse_inference::default_model::ensure().map_err(|e| e.to_string())?,
    };
    GgufFile::open(&path).map_err(|e| e.to_string())
}

pub fn train_command(args: TrainArgs) -> Result<(), String> {
    let run = &args.run;
    let checkpoint_dir = args.run.out.join("checkpoint");
    let tokenizer_gguf = tokenizer_file(&args.tokenizer)?;
    let tokenizer = synapse_inference::tokenizer::Tokenizer::from_gguf(&tokenizer_gguf)
        .map_err(|e| e.to_string())?;
    let settings = checkpoint::settings(&[
        ("data", args.data.display().to_string().into()),
        ("seq_len", args.seq_len.into()),
        ("held_out", args.held_out.into()),
        ("batch", run.sequences().into()),
        ("seed", run.seed.into()),
    ]);
    let (model, config_json) = match args.resume {
        true => {
            let model = Model::load(&checkpoint_dir).map_err(|e| e.to_string())?;
            let path = checkpoint_dir.join("config.json");
            let json =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            (model, json)
        }
        false => {
            let path = args.config.as_ref().expect("clap requires --config");
            let json =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let model = Model::random(&path.display().to_string(), &json, LoadOptions::default())
                .map_err(|e| e.to_string())?;
            (model, json)
        }
    };
    let config = model.config().clone();
    if config.vocab_size != tokenizer.vocab_size() {
        return Err(format!(
            "the model's vocab_size is {}, the tokenizer's ({}) {}",
            config.vocab_size,
            tokenizer_gguf.path,
            tokenizer.vocab_size()
        ));
    }
    let model = model
        .with_backend(Autodiff::new(Training::Full))
        .map_err(|e| e.to_string())?;
    let mut adam = run.adam(0.1);
    let progress = match args.resume {
        true => {
            let params = &model.backend().state().params;
            let progress = checkpoint::resume(&checkpoint_dir, params, &mut adam)?;
            if progress.settings != settings {
                return Err(format!(
                    "--resume: the run in {} was started with {}, not {settings}",
                    checkpoint_dir.display(),
                    progress.settings
                ));
            }
            progress
        }
        false => {
            initialize(&mut model.backend().state().params, run.seed, 0.02);
            Progress {
                step: 0,
                tokens: 0,
                settings,
            }
        }
    };
    let params: usize = model
        .backend()
        .state()
        .params
        .iter()
        .map(|p| p.value.len())
        .sum();

    let text =
        std::fs::read_to_string(&args.data).map_err(|e| format!("{}: {e}", args.data.display()))?;
    let corpus = Corpus::split(tokenizer.encode(&text, false, false), args.held_out);
    if corpus.train.len() < args.seq_len.max(2) {
        return Err(format!(
            "{}: {} training tokens, fewer than --seq-len {}",
            args.data.display(),
            corpus.train.len(),
            args.seq_len
        ));
    }
    let held_out = corpus.held_out_windows(args.seq_len, args.eval_sequences);
    eprintln!(
        "synapse train: {params} parameters ({} layers, width {}); {} training tokens, {} held out \
         ({} sequences of {} for the held-out loss); {} sequences a step",
        config.n_layers,
        config.d_model,
        corpus.train.len(),
        corpus.held_out.len(),
        held_out.len(),
        args.seq_len,
        run.sequences(),
    );
    let title = format!(
        "synapse train: {params} parameters on {}",
        file_name(&args.data)
    );
    let mut record = Record::open(&run.out, title, progress.step, run.steps)?;
    let mut session = run.session(model, args.seq_len);
    let plan = run.plan(1e-3);
    if progress.step == 0 {
        record.initial(held_out_loss(&mut session, &held_out)?)?;
    }
    let (interrupt, _guard) = crate::interrupt::generation();
    let done = train(
        &mut session,
        &mut adam,
        plan,
        (progress.step, progress.tokens),
        |step| corpus.batch(run.seed, step, run.sequences(), args.seq_len),
        &held_out,
        |log, session, adam| {
            record.step(log)?;
            let stop = interrupt.is_cancelled();
            if stop || log.step % args.save_every.max(1) == 0 || log.step == plan.steps {
                let state = session.model.backend().state();
                let progress = Progress {
                    step: log.step,
                    tokens: log.tokens,
                    settings: progress.settings.clone(),
                };
                checkpoint::save(
                    &checkpoint_dir,
                    &config,
                    &config_json,
                    &state.params,
                    adam,
                    &progress,
                )?;
            }
            Ok(match stop {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            })
        },
    )?;
    record.finish()?;
    if done < plan.steps {
        eprintln!(
            "synapse train: interrupted after step {done}; the checkpoint is in {}, and the \
             same command with --resume continues the run",
            checkpoint_dir.display()
        );
        return Ok(());
    }
    let state = session.model.backend().state();
    let name = format!("synapse train on {}", file_name(&args.data));
    export(
        &run.out,
        "model",
        &config,
        &name,
        &merged_weights(&state),
        &tokenizer_gguf,
        &args.export,
    )
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The conversations of a JSONL file.
fn conversations(path: &Path) -> Result<Vec<Vec<ChatMessage>>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        messages: Vec<ChatMessage>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line: Line = serde_json::from_str(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
            Ok(line.messages)
        })
        .collect()
}

pub fn finetune_command(args: FinetuneArgs) -> Result<(), String> {
    let run = &args.run;
    let path = match &args.model {
        Some(p) => p.clone(),
        None => synapse_inference::default_model::ensure().map_err(|e| e.to_string())?,
    };
    if args.merge && path.is_dir() {
        return Err(
            "--merge writes a GGUF model from a GGUF one; this model is a directory".into(),
        );
    }
    let model = Model::load(&path).map_err(|e| e.to_string())?;
    let mut examples = Vec::new();
    for (i, messages) in conversations(&args.data)?.iter().enumerate() {
        let mut e = chat_example(&model, messages)
            .map_err(|e| format!("{} conversation {}: {e}", args.data.display(), i + 1))?;
        e.tokens.truncate(args.max_len);
        e.targets.truncate(args.max_len);
        examples.push(e);
    }
    let held = ((examples.len() as f32 * args.held_out).round() as usize)
        .min(examples.len().saturating_sub(1));
    let held_out = examples.split_off(examples.len() - held);
    if examples.is_empty() {
        return Err(format!(
            "{}: no conversations to train on",
            args.data.display()
        ));
    }
    let len = examples
        .iter()
        .chain(&held_out)
        .map(|e| e.tokens.len())
        .max()
        .unwrap_or(1);
    let opts = LoraOptions {
        rank: args.lora_rank,
        alpha: args.lora_alpha,
        targets: args.lora_targets.clone(),
        seed: run.seed,
    };
    let config = model.config().clone();
    let model = model
        .with_backend(Autodiff::new(Training::Lora(opts.clone())))
        .map_err(|e| e.to_string())?;
    let trained: usize = {
        let state = model.backend().state();
        state
            .params
            .iter()
            .filter(|p| !p.frozen)
            .map(|p| p.value.len())
            .sum()
    };
    eprintln!(
        "synapse finetune: LoRA rank {} on {} ({trained} trained parameters); {} conversations, {} held out; {} a step",
        opts.rank,
        opts.targets.join(","),
        examples.len(),
        held_out.len(),
        run.sequences()
    );
    let title = format!(
        "synapse finetune: LoRA rank {} on {}",
        opts.rank,
        file_name(&args.data)
    );
    let mut record = Record::open(&run.out, title, 0, run.steps)?;
    let mut session = run.session(model, len);
    let mut adam = run.adam(0.0);
    let batch_of = |step| sample(&examples, run.seed, step, run.sequences());
    record.initial(held_out_loss(&mut session, &held_out)?)?;
    train(
        &mut session,
        &mut adam,
        run.plan(5e-4),
        (0, 0),
        batch_of,
        &held_out,
        |log, _, _| record.step(log).map(ControlFlow::Continue),
    )?;
    record.finish()?;
    let state = session.model.backend().state();
    let adapter = run.out.join("adapter");
    write_peft_adapter(
        &adapter,
        &config,
        &state,
        &opts,
        &path.display().to_string(),
    )?;
    eprintln!(
        "synapse finetune: wrote the adapter to {}",
        adapter.display()
    );
    if args.merge {
        let base = GgufFile::open(&path).map_err(|e| e.to_string())?;
        let name = format!("{} + LoRA {}", file_name(&path), file_name(&args.data));
        export(
            &run.out,
            "merged",
            &config,
            &name,
            &merged_weights(&state),
            &base,
            &args.merge_type,
        )?;
    }
    Ok(())
}

/// Writes `weights` as OUT/STEM-TYPE.gguf for each of `types`.
fn export(
    out: &Path,
    stem: &str,
    config: &synapse_inference::ModelConfig,
    name: &str,
    weights: &[synapse_train::export::Weight],
    tokenizer_from: &GgufFile,
    types: &[DType],
) -> Result<(), String> {
    for &dtype in types {
        let path = out.join(format!("{stem}-{}.gguf", dtype.name().to_lowercase()));
        write_gguf(&path, config, name, weights, tokenizer_from, dtype)?;
        eprintln!("synapse: wrote {}", path.display());
    }
    Ok(())
}
