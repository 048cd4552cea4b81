//! A loaded model and the sessions that run it.

#[cfg(feature = "chat-template")]
use crate::chat::ChatTemplate;
use crate::config::{Metadata, ModelConfig};
use crate::engine::{Batch, Engine, Logits};
use crate::error::{Error, Result};
use crate::generation::sampler::GenerationConfig;
#[cfg(feature = "hf")]
use crate::hf::HfDir;
#[cfg(feature = "hf")]
use crate::hf::HfSource;
use crate::kv_cache::{KvType, SeqId};
use crate::model::backend::{Backend, Cpu};
use crate::model::decoder::{Activations, Decoder};
use crate::model::weights::{LoadOptions, Weights};
#[cfg(feature = "hf")]
use crate::model::weights::{RandomWeights, TensorSource};
use crate::model::{family_for_gguf, supported_architectures};
use crate::precision::PrecisionReport;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::kernels::Precision;
use synapse_core::DType;

/// Where a model's configuration and weights came from.
pub enum ModelSource {
    Gguf(GgufFile),
    /// A Hugging Face directory: config.json, safetensors, tokenizer files.
    #[cfg(feature = "hf")]
    HfDir(HfDir),
    /// Random weights at the shapes of a `config.json` (a labelled demo for benchmarks).
    #[cfg(feature = "hf")]
    Random,
}

/// A model ready to run: configuration and weights (in place in the file's bytes, unless
/// quantized at load), on backend `B` (the CPU unless moved with [`Model::with_backend`]).
pub struct Model<B: Backend = Cpu> {
    pub path: String,
    /// None for a checkpoint without tokenizer files: it runs on token ids.
    pub tokenizer: Option<Tokenizer>,
    pub source: ModelSource,
    /// Tokens that end generation: the tokenizer's, and generation_config.json's.
    end_of_generation: Vec<u32>,
    /// The type of every matrix a matmul reads (see [`Weights::matmul_weights`]).
    matmul_types: Vec<DType>,
    weight_bytes_per_token: u64,
    parameter_count: u64,
    net: Decoder<B>,
}

impl Model<Cpu> {
    /// Loads a GGUF model file, memory-mapped.
    #[cfg(feature = "native")]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model> {
        Model::load_with(path, LoadOptions::default())
    }

    /// Loads a GGUF file or a Hugging Face model directory with `opts`.
    #[cfg(feature = "native")]
    pub fn load_with(path: impl AsRef<std::path::Path>, opts: LoadOptions) -> Result<Model> {
        let path = path.as_ref();
        match path.is_dir() {
            true => Model::from_hf_dir(HfDir::open(path)?, opts),
            false => Model::from_gguf_with(GgufFile::open(path)?, opts),
        }
    }

    /// A Hugging Face checkpoint (memory-mapped safetensors); the family comes from
    /// `model_type` in config.json.
    #[cfg(feature = "hf")]
    pub fn from_hf_dir(dir: HfDir, opts: LoadOptions) -> Result<Model> {
        let path = dir.dir.display().to_string();
        let config_file = dir.dir.join("config.json").display().to_string();
        let (family, config) = crate::hf::config::family_and_config(&config_file, &dir.config)?;
        let checkpoint = dir.checkpoint()?;
        let source = HfSource {
            checkpoint: &checkpoint,
            family,
            origin: path.clone(),
        };
        let weights = Weights::load(&source, &config, opts)?;
        let tokenizer = Tokenizer::from_hf_dir(&dir.dir)?;
        let mut end_of_generation = dir.generation.eos_token_ids.clone();
        end_of_generation.retain(|&id| (id as usize) < config.vocab_size);
        Ok(Model::new(
            path,
            config,
            weights,
            tokenizer,
            end_of_generation,
            ModelSource::HfDir(dir),
        ))
    }

    fn new(
        path: String,
        config: ModelConfig,
        weights: Weights,
        tokenizer: Option<Tokenizer>,
        mut end_of_generation: Vec<u32>,
        source: ModelSource,
    ) -> Model {
        if let Some(t) = &tokenizer {
            end_of_generation.extend_from_slice(t.end_of_generation_ids());
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        Model {
            path,
            matmul_types: weights.matmul_weights().map(|w| w.dtype).collect(),
            weight_bytes_per_token: weights.bytes_per_token(config.tied_embeddings),
            parameter_count: weights.parameter_count(config.tied_embeddings),
            net: Decoder {
                config,
                weights,
                backend: Cpu,
            },
            tokenizer,
            source,
            end_of_generation,
        }
    }

    pub fn from_gguf(gguf: GgufFile) -> Result<Model> {
        // Not through from_gguf_with: the browser module has no load options, and leaves
        // the quantizers out.
        Model::gguf_model(gguf, |gguf, config| Weights::load_stored(gguf, config))
    }

    pub fn from_gguf_with(gguf: GgufFile, opts: LoadOptions) -> Result<Model> {
        Model::gguf_model(gguf, |gguf, config| Weights::load(gguf, config, opts))
    }

    fn gguf_model(
        gguf: GgufFile,
        weights: impl FnOnce(&GgufFile, &ModelConfig) -> Result<Weights>,
    ) -> Result<Model> {
        let arch = Metadata { gguf: &gguf }.string("general.architecture")?;
        let family = family_for_gguf(arch).ok_or_else(|| Error::UnsupportedArchitecture {
            file: gguf.path.clone(),
            arch: arch.to_string(),
            supported: supported_architectures(),
        })?;
        let config = ModelConfig::from_gguf(&gguf, family)?;
        let weights = weights(&gguf, &config)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        Ok(Model::new(
            gguf.path.clone(),
            config,
            weights,
            Some(tokenizer),
            Vec::new(),
            ModelSource::Gguf(gguf),
        ))
    }

    /// A model with random weights at the shapes `config.json` (at `path`) describes:
    /// a demo for benchmarking without downloads; its output is meaningless.
    #[cfg(feature = "hf")]
    pub fn random(path: &str, config_json: &str, opts: LoadOptions) -> Result<Model> {
        let json: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| Error::BadMetadata {
                file: path.to_string(),
                key: "config.json".into(),
                reason: e.to_string(),
            })?;
        let (_, config) = crate::hf::config::family_and_config(path, &json)?;
        let source = RandomWeights {
            label: format!("random weights for {path}"),
        };
        let weights = Weights::load(&source, &config, opts)?;
        Ok(Model::new(
            source.origin().to_string(),
            config,
            weights,
            None,
            Vec::new(),
            ModelSource::Random,
        ))
    }

    /// The same model on backend `b` (its weights handed over with [`Backend::matrix`]);
    /// an error where the device cannot hold them.
    pub fn with_backend<B: Backend>(self, backend: B) -> Result<Model<B>> {
        let Decoder {
            config, weights, ..
        } = self.net;
        let weights = weights.upload(&backend, config.tied_embeddings)?;
        Ok(Model {
            path: self.path,
            tokenizer: self.tokenizer,
            source: self.source,
            end_of_generation: self.end_of_generation,
            matmul_types: self.matmul_types,
            weight_bytes_per_token: self.weight_bytes_per_token,
            parameter_count: self.parameter_count,
            net: Decoder {
                config,
                weights,
                backend,
            },
        })
    }
}

impl<B: Backend> Model<B> {
    /// The model's shape and components.
    pub fn config(&self) -> &ModelConfig {
        &self.net.config
    }

    /// The tokenizer, or an error saying the model has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| Error::NoTokenizer {
            path: self.path.clone(),
        })
    }

    /// The sampling defaults of a Hugging Face directory's generation_config.json.
    pub fn generation_config(&self) -> Option<&GenerationConfig> {
        match &self.source {
            #[cfg(feature = "hf")]
            ModelSource::HfDir(dir) => Some(&dir.generation),
            _ => None,
        }
    }

    pub(crate) fn decoder(&self) -> &Decoder<B> {
        &self.net
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &B {
        &self.net.backend
    }

    /// Tokens that end generation.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Bytes of weights a decode step reads: every matrix except the embedding table, of
    /// which one row is read, unless it doubles as the output projection.
    pub fn weight_bytes_per_token(&self) -> u64 {
        self.weight_bytes_per_token
    }

    /// Parameters of the model, as llama.cpp's `llama_model_n_params` counts them.
    pub fn parameter_count(&self) -> u64 {
        self.parameter_count
    }

    /// The type of every matrix a matmul reads (see [`Weights::matmul_weights`]).
    pub fn matmul_types(&self) -> impl Iterator<Item = DType> + '_ {
        self.matmul_types.iter().copied()
    }

    /// The model's chat template (GGUF `tokenizer.chat_template`, or the Hugging Face
    /// directory's), or ChatML when it has none.
    #[cfg(feature = "chat-template")]
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let tokenizer = self.tokenizer()?;
        let token_text = |id: Option<u32>| {
            id.map(|id| tokenizer.piece(id).to_string())
                .unwrap_or_default()
        };
        Ok(ChatTemplate::for_model(
            tokenizer.chat_template(),
            &token_text(tokenizer.bos_id()),
            &token_text(tokenizer.eos_id()),
        )?)
    }

    /// The token ids of a conversation rendered with the chat template: BOS added unless
    /// the template wrote it, special-token text read as those tokens.
    pub fn encode_chat(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer()?
            .encode(text, !self.starts_with_bos(text), true))
    }

    /// Whether `text` already begins with the BOS token's text (chat templates often
    /// write it themselves, and it must not be added twice).
    pub fn starts_with_bos(&self, text: &str) -> bool {
        let Some(tokenizer) = &self.tokenizer else {
            return false;
        };
        tokenizer.bos_id().is_some_and(|id| {
            let bos = tokenizer.piece(id);
            !bos.is_empty() && text.starts_with(bos)
        })
    }
}

/// Activation memory the automatic prefill batch stays within: beyond a few hundred
/// tokens a bigger batch gains little speed (weights are already reused across the
/// batch) but costs resident memory on large models.
const ACTIVATION_BUDGET: usize = 16 << 20;
const MAX_AUTO_BATCH: usize = 512;

/// How a session runs.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Context length in tokens; 0 means the model's training context, capped at 4096.
    pub context: usize,
    pub threads: usize,
    pub precision: Precision,
    /// The key/value cache's element type; None lets the policy choose
    /// ([`KvType::default_for`]).
    pub kv_type: Option<KvType>,
    /// Most tokens evaluated in one forward pass when processing a prompt; 0 picks the
    /// largest of up to 512 (llama.cpp's micro-batch) whose activations fit in 16 MiB.
    pub batch: usize,
    /// Most bytes of key/value memory an [`Engine`] allocates for all its sequences
    /// (0: as much as they need); past it, evaluating fails with `KvMemoryFull`.
    pub kv_memory: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context: 0,
            threads: synapse_core::threads::default_threads(),
            precision: Precision::FollowWeights,
            kv_type: None,
            batch: 0,
            kv_memory: 0,
        }
    }
}

impl SessionOptions {
    /// These options with the automatic values (context 0, batch 0, no cache type) chosen
    /// for `model`.
    pub fn resolve<B: Backend>(mut self, model: &Model<B>) -> SessionOptions {
        let c = model.config();
        if B::F32_ONLY {
            self.precision = Precision::F32;
            self.kv_type = Some(KvType::F32);
        }
        let kv_type = KvType::default_for(self.precision, model.matmul_types());
        self.kv_type = Some(self.kv_type.unwrap_or(kv_type));
        if self.context == 0 {
            self.context = c.context_length.min(4096);
        }
        if self.batch == 0 {
            self.batch = Activations::<B>::batch_within(c, ACTIVATION_BUDGET, MAX_AUTO_BATCH);
        }
        self.batch = self.batch.clamp(1, self.context);
        self
    }
}

/// One conversation's state: the tokens evaluated so far and their keys and values. An
/// [`Engine`] with one sequence, which [`Session::engine`] exposes for forks and snapshots.
pub struct Session<B: Backend = Cpu> {
    pub model: Arc<Model<B>>,
    engine: Engine<B>,
    seq: SeqId,
    batch: Batch,
}

impl<B: Backend> Session<B> {
    pub fn new(model: Arc<Model<B>>, opts: SessionOptions) -> Session<B> {
        let mut engine = Engine::new(model.clone(), opts);
        let seq = engine.add_sequence();
        Session {
            model,
            engine,
            seq,
            batch: Batch::new(),
        }
    }

    pub fn context(&self) -> usize {
        self.engine.options().context
    }

    pub fn options(&self) -> &SessionOptions {
        self.engine.options()
    }

    /// The precision this session runs with.
    pub fn precision(&self) -> PrecisionReport {
        PrecisionReport::new(
            self.options().precision,
            self.engine.kv_type(),
            self.model.matmul_types(),
        )
    }

    /// Bytes the key/value cache has allocated.
    pub fn kv_cache_bytes(&self) -> usize {
        self.engine.kv_allocated_bytes()
    }

    /// The engine this session's sequence lives in, and that sequence.
    pub fn engine(&mut self) -> (&mut Engine<B>, SeqId) {
        (&mut self.engine, self.seq)
    }

    /// Tokens evaluated so far.
    pub fn tokens(&self) -> &[u32] {
        self.engine
            .tokens(self.seq)
            .expect("the session's sequence")
    }

    /// Forgets everything after the first `len` tokens and returns how many are kept: all
    /// `len`, or none when a sliding-window cache no longer holds what position `len` needs.
    pub fn truncate(&mut self, len: usize) -> usize {
        self.engine
            .truncate(self.seq, len)
            .expect("the session's sequence")
    }

    /// Keeps the longest prefix of the cached tokens that `tokens` starts with, but not
    /// all of `tokens` (evaluating at least one gives logits), and returns its length:
    /// the caller evaluates `tokens[kept..]` next.
    pub fn keep_prefix(&mut self, tokens: &[u32]) -> usize {
        let common = self
            .tokens()
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        self.truncate(common.min(tokens.len().saturating_sub(1)))
    }

    /// Evaluates `tokens` after those already in the session and returns the logits of the
    /// last one, or of every one (`[tokens.len()][vocab]`) when `all_logits`.
    pub fn eval(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.eval_into(tokens, all_logits, &mut out)?;
        Ok(out)
    }

    /// As [`Session::eval`], writing the logits into `out` (reused across calls).
    pub fn eval_into(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let logits = match all_logits {
            true => Logits::All,
            false => Logits::Last,
        };
        self.batch.clear();
        self.batch.add(self.seq, tokens, logits);
        self.engine.eval(&self.batch, out)
    }
}
