//! A loaded model and the sessions that run it.

#[cfg(feature = "chat-template")]
use crate::chat::ChatTemplate;
use crate::config::{Metadata, ModelConfig};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvType};
use crate::model::llama::{Activations, Llama, LlamaWeights, RunOptions};
use crate::model::SUPPORTED_ARCHITECTURES;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;
use synapse_core::gguf::GgufFile;
use synapse_core::kernels::Precision;

/// A model ready to run: configuration and weights (in place in the file's bytes).
pub struct Model {
    pub path: String,
    pub config: ModelConfig,
    pub gguf: GgufFile,
    pub tokenizer: Tokenizer,
    net: Llama,
}

impl Model {
    /// Loads a GGUF model file, memory-mapped.
    #[cfg(feature = "native")]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Model> {
        Model::from_gguf(GgufFile::open(path)?)
    }

    pub fn from_gguf(gguf: GgufFile) -> Result<Model> {
        let arch = Metadata { gguf: &gguf }.string("general.architecture")?;
        if !SUPPORTED_ARCHITECTURES.contains(&arch) {
            return Err(Error::UnsupportedArchitecture {
                file: gguf.path.clone(),
                arch: arch.to_string(),
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            });
        }
        let config = ModelConfig::from_gguf(&gguf)?;
        let weights = LlamaWeights::from_gguf(&gguf, &config)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        Ok(Model {
            path: gguf.path.clone(),
            net: Llama::new(config.clone(), weights),
            config,
            tokenizer,
            gguf,
        })
    }

    /// The GGUF's chat template (`tokenizer.chat_template`), or ChatML when it has none.
    #[cfg(feature = "chat-template")]
    pub fn chat_template(&self) -> Result<ChatTemplate> {
        let token_text = |id: Option<u32>| {
            id.map(|id| self.tokenizer.piece(id).to_string())
                .unwrap_or_default()
        };
        match self
            .gguf
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
        {
            Some(source) => Ok(ChatTemplate::new(
                source,
                &token_text(self.tokenizer.bos_id()),
                &token_text(self.tokenizer.eos_id()),
            )?),
            None => Ok(ChatTemplate::chatml()),
        }
    }

    /// Whether `text` already begins with the BOS token's text (chat templates often
    /// write it themselves, and it must not be added twice).
    pub fn starts_with_bos(&self, text: &str) -> bool {
        self.tokenizer.bos_id().is_some_and(|id| {
            let bos = self.tokenizer.piece(id);
            !bos.is_empty() && text.starts_with(bos)
        })
    }
}

/// How a session runs.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// Context length in tokens; 0 means the model's training context, capped at 4096.
    pub context: usize,
    pub threads: usize,
    pub precision: Precision,
    /// Most tokens evaluated in one forward pass when processing a prompt.
    pub batch: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            context: 0,
            threads: synapse_core::threads::default_threads(),
            precision: Precision::Quantized,
            batch: 64,
        }
    }
}

/// One conversation's state: the tokens evaluated so far and their keys and values.
pub struct Session {
    pub model: Arc<Model>,
    opts: SessionOptions,
    cache: KvCache,
    act: Activations,
    tokens: Vec<u32>,
}

impl Session {
    pub fn new(model: Arc<Model>, mut opts: SessionOptions) -> Session {
        let c = &model.config;
        if opts.context == 0 {
            opts.context = c.context_length.min(4096);
        }
        opts.batch = opts.batch.clamp(1, opts.context);
        // f32 runs are the accuracy reference, so they keep f32 keys and values.
        let kv_type = match opts.precision {
            Precision::F32 => KvType::F32,
            Precision::Quantized => KvType::F16,
        };
        let cache = KvCache::new(
            c.n_layers,
            c.kv_dim(),
            opts.context,
            None,
            opts.batch,
            kv_type,
        );
        let act = Activations::new(c, opts.batch);
        Session {
            model,
            opts,
            cache,
            act,
            tokens: Vec::new(),
        }
    }

    pub fn context(&self) -> usize {
        self.opts.context
    }

    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    /// Tokens evaluated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets everything after the first `len` tokens (their cache entries get overwritten).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
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
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let vocab = self.model.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::BadTokenId { id, vocab });
        }
        if self.tokens.len() + tokens.len() > self.opts.context {
            return Err(Error::ContextOverflow {
                prompt: tokens.len(),
                already: self.tokens.len(),
                context: self.opts.context,
            });
        }
        out.clear();
        let run = RunOptions {
            precision: self.opts.precision,
            threads: self.opts.threads,
        };
        let n_batches = tokens.len().div_ceil(self.opts.batch);
        for (i, batch) in tokens.chunks(self.opts.batch).enumerate() {
            let last = i + 1 == n_batches;
            self.model.net.forward(
                batch,
                self.tokens.len(),
                &mut self.cache,
                &mut self.act,
                all_logits,
                run,
            );
            if all_logits || last {
                out.extend_from_slice(&self.act.logits);
            }
            self.tokens.extend_from_slice(batch);
        }
        Ok(())
    }
}
