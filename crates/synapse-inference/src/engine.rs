//! Several sequences of one model evaluated together: one key/value pool that they draw
//! pages from (and share, when forked), one set of activation buffers, and forward
//! passes that carry tokens of many sequences at once, so that a step of eight users
//! reads the weights once. A [`crate::Session`] is an engine with one sequence.

use crate::error::{Error, Result};
use crate::kv_cache::{self, KvCache, KvType, SeqId};
use crate::model::backend::{Backend, Cpu, RunOptions};
use crate::model::decoder::{Activations, ForwardBatch, SeqRun};
use crate::session::{Model, SessionOptions};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// Which logits of a sequence's tokens a [`Batch`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    None,
    /// The last token's: what generation samples from.
    Last,
    /// Every token's, in order.
    All,
}

/// Tokens to append to sequences in one [`Engine::eval`]: each item continues its
/// sequence from where it stands. Items run in order; a sequence may appear more than once.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    tokens: Vec<u32>,
    items: Vec<(SeqId, Range<usize>, Logits)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Appends `tokens` of `seq`, asking for `logits`.
    pub fn add(&mut self, seq: SeqId, tokens: &[u32], logits: Logits) -> &mut Batch {
        let start = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        self.items.push((seq, start..self.tokens.len(), logits));
        self
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.items.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A model, a key/value pool and the sequences in it.
pub struct Engine<B: Backend = Cpu> {
    pub model: Arc<Model<B>>,
    opts: SessionOptions,
    cache: KvCache<B::Kv>,
    act: Activations<B>,
    /// The tokens each sequence has evaluated.
    tokens: HashMap<SeqId, Vec<u32>>,
    /// One forward pass being assembled.
    runs: Vec<SeqRun>,
    logit_rows: Vec<usize>,
    pass_tokens: Vec<u32>,
}

impl<B: Backend> Engine<B> {
    /// An engine with no sequences; `opts.batch` bounds the tokens of one forward pass
    /// (all sequences together) and `opts.context` each sequence.
    pub fn new(model: Arc<Model<B>>, opts: SessionOptions) -> Engine<B> {
        let opts = opts.resolve(&model);
        let c = model.config();
        let kv_type = opts.kv_type.unwrap_or(KvType::F16);
        let backend = &model.decoder().backend;
        let geometry = (c.n_layers, c.kv_dim(), opts.context, c.window, opts.batch);
        let max_pages = (opts.kv_memory > 0)
            .then(|| opts.kv_memory / kv_cache::page_bytes(c.n_layers, c.kv_dim(), kv_type));
        let cache = KvCache::with_pages(geometry, kv_type, max_pages, |shape| {
            backend.kv_pages(shape)
        });
        let act = Activations::new(backend, c, opts.batch, opts.context);
        Engine {
            model,
            opts,
            cache,
            act,
            tokens: HashMap::new(),
            runs: Vec::new(),
            logit_rows: Vec::new(),
            pass_tokens: Vec::new(),
        }
    }

    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    pub fn kv_type(&self) -> KvType {
        self.cache.kv_type()
    }

    /// Bytes of key/value pages that some sequence holds.
    pub fn kv_bytes_in_use(&self) -> usize {
        self.cache.bytes_in_use()
    }

    /// Bytes of key/value memory allocated (pages in use and free ones kept for reuse).
    pub fn kv_allocated_bytes(&self) -> usize {
        self.cache.allocated_bytes()
    }

    /// A new, empty sequence.
    pub fn add_sequence(&mut self) -> SeqId {
        let seq = self.cache.add_sequence();
        self.tokens.insert(seq, Vec::new());
        seq
    }

    /// A new sequence that holds what `seq` holds, sharing its key/value pages until they
    /// diverge: evaluating after a fork costs the new tokens only.
    pub fn fork(&mut self, seq: SeqId) -> Result<SeqId> {
        let child = self.cache.fork(seq)?;
        let tokens = self.tokens[&seq].clone();
        self.tokens.insert(child, tokens);
        Ok(child)
    }

    /// Makes `dst` hold what `src` holds (restoring a snapshot taken with [`Engine::fork`]).
    pub fn copy(&mut self, src: SeqId, dst: SeqId) -> Result<()> {
        self.cache.copy(src, dst)?;
        let tokens = self.tokens[&src].clone();
        self.tokens.insert(dst, tokens);
        Ok(())
    }

    /// Removes a sequence; the pages it shared stay with the others.
    pub fn remove_sequence(&mut self, seq: SeqId) -> Result<()> {
        self.cache.remove_sequence(seq)?;
        self.tokens.remove(&seq);
        Ok(())
    }

    /// The tokens `seq` has evaluated.
    pub fn tokens(&self, seq: SeqId) -> Result<&[u32]> {
        self.tokens
            .get(&seq)
            .map(Vec::as_slice)
            .ok_or(Error::UnknownSequence { id: seq.index() })
    }

    /// Forgets the tokens of `seq` from `len` on and returns how many it keeps: all `len`,
    /// or none when a sliding-window cache no longer holds what position `len` needs.
    pub fn truncate(&mut self, seq: SeqId, len: usize) -> Result<usize> {
        let keep = self.cache.truncate(seq, len)?;
        if let Some(tokens) = self.tokens.get_mut(&seq) {
            tokens.truncate(keep);
        }
        Ok(keep)
    }

    /// Evaluates `batch` in forward passes of at most `options().batch` tokens and writes
    /// into `out` the logits it asks for, item after item (`[rows][vocab]`). Bad input
    /// (an unknown sequence, an empty item, a token outside the vocabulary, a sequence
    /// past its context) is refused before anything runs. Should the key/value memory run
    /// out, the passes already run stay evaluated and the rest is not.
    pub fn eval(&mut self, batch: &Batch, out: &mut Vec<f32>) -> Result<()> {
        out.clear();
        self.check(batch)?;
        let max = self.opts.batch;
        for (seq, range, logits) in &batch.items {
            let tokens = &batch.tokens[range.clone()];
            let mut done = 0;
            while done < tokens.len() {
                if self.pass_tokens.len() == max {
                    self.run_pass(out)?;
                }
                let take = (tokens.len() - done).min(max - self.pass_tokens.len());
                let rows = self.pass_tokens.len()..self.pass_tokens.len() + take;
                let last = done + take == tokens.len();
                match logits {
                    Logits::All => self.logit_rows.extend(rows.clone()),
                    Logits::Last if last => self.logit_rows.push(rows.end - 1),
                    _ => {}
                }
                self.pass_tokens
                    .extend_from_slice(&tokens[done..done + take]);
                self.runs.push(SeqRun {
                    seq: *seq,
                    rows,
                    pos: 0,
                });
                done += take;
            }
        }
        self.run_pass(out)
    }

    /// Refuses a batch that cannot run as a whole.
    fn check(&self, batch: &Batch) -> Result<()> {
        let vocab = self.model.config().vocab_size;
        for (i, (seq, range, _)) in batch.items.iter().enumerate() {
            let tokens = &batch.tokens[range.clone()];
            if tokens.is_empty() {
                return Err(Error::EmptyPrompt);
            }
            if let Some(&id) = tokens.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::BadTokenId { id, vocab });
            }
            let already = self.tokens(*seq)?.len();
            // This item and the earlier ones of the same sequence.
            let total: usize = batch.items[..=i]
                .iter()
                .filter(|(s, ..)| s == seq)
                .map(|(_, r, _)| r.len())
                .sum();
            if already + total > self.opts.context {
                return Err(Error::ContextOverflow {
                    prompt: total,
                    already,
                    context: self.opts.context,
                });
            }
        }
        Ok(())
    }

    /// Runs the assembled forward pass, appending its logits to `out`.
    fn run_pass(&mut self, out: &mut Vec<f32>) -> Result<()> {
        if self.runs.is_empty() {
            return Ok(());
        }
        let result = self.reserve().and_then(|()| {
            let batch = ForwardBatch {
                tokens: &self.pass_tokens,
                runs: &self.runs,
                logits: &self.logit_rows,
            };
            let run = RunOptions {
                precision: self.opts.precision,
                threads: self.opts.threads,
            };
            let decoder = self.model.decoder();
            decoder.forward(&batch, &mut self.cache, &mut self.act, run, out)?;
            for run in &self.runs {
                let tokens = self.tokens.get_mut(&run.seq).expect("checked");
                tokens.extend_from_slice(&self.pass_tokens[run.rows.clone()]);
            }
            Ok(())
        });
        self.runs.clear();
        self.logit_rows.clear();
        self.pass_tokens.clear();
        result
    }

    /// Makes room in the cache for every run of the pass, or for none.
    fn reserve(&mut self) -> Result<()> {
        for i in 0..self.runs.len() {
            let run = &self.runs[i];
            match self.cache.append(run.seq, run.rows.len()) {
                Ok(pos) => self.runs[i].pos = pos,
                Err(e) => {
                    for run in self.runs[..i].iter().rev() {
                        self.cache.truncate(run.seq, run.pos)?;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::tiny_model;
    use crate::kv_cache::position_bytes;
    use synapse_core::attention::TILE;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_kv_memory_budget_bounds_the_pages() {
        let model = tiny_model();
        let c = model.config();
        let page = TILE * position_bytes(c.n_layers, c.kv_dim(), KvType::F32);
        let opts = SessionOptions {
            context: 128,
            threads: 1,
            kv_type: Some(KvType::F32),
            kv_memory: 2 * page,
            ..SessionOptions::default()
        };
        let mut engine = Engine::new(model, opts);
        let (a, b) = (engine.add_sequence(), engine.add_sequence());
        let mut out = Vec::new();
        let tokens: Vec<u32> = (0..2 * TILE as u32).collect();
        let mut batch = Batch::new();
        batch.add(a, &tokens, Logits::Last);
        engine.eval(&batch, &mut out).unwrap();
        assert_eq!(engine.kv_bytes_in_use(), 2 * page);
        // A third page is over the budget: refused, with nothing evaluated.
        batch.clear();
        batch.add(b, &[1], Logits::Last);
        let err = engine.eval(&batch, &mut out).unwrap_err();
        assert!(matches!(err, Error::KvMemoryFull { pages: 1, .. }), "{err}");
        assert_eq!(engine.tokens(b).unwrap(), &[] as &[u32]);
        // Freeing a sequence makes room.
        engine.remove_sequence(a).unwrap();
        engine.eval(&batch, &mut out).unwrap();
        assert_eq!(engine.tokens(b).unwrap(), &[1]);
    }
}
