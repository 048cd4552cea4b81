//! Training data: a tokenized text split into training and held-out parts, with batches
//! drawn from it by a seed; and chat conversations whose loss falls on the assistant's
//! turns only.

use crate::init::Rng;
use crate::step::Example;
use synapse_inference::chat::ChatMessage;
use synapse_inference::model::backend::Backend;
use synapse_inference::Model;

/// A tokenized corpus: its head for training, its tail held out (a contiguous tail, so
/// no held-out window overlaps a training one).
pub struct Corpus {
    pub train: Vec<u32>,
    pub held_out: Vec<u32>,
}

impl Corpus {
    /// Splits `tokens`, keeping the last `held_out` fraction apart.
    pub fn split(mut tokens: Vec<u32>, held_out: f32) -> Corpus {
        let at = tokens.len() - (tokens.len() as f32 * held_out) as usize;
        let held_out = tokens.split_off(at);
        Corpus {
            train: tokens,
            held_out,
        }
    }

    /// Step `step`'s `batch` windows of `len` tokens from the training part, at places
    /// that depend only on `seed` and the step (so a resumed run sees the same batches).
    pub fn batch(&self, seed: u64, step: usize, batch: usize, len: usize) -> Vec<Example> {
        let mut rng = Rng::new(seed, &format!("batch {step}"));
        let starts = self.train.len().saturating_sub(len) + 1;
        (0..batch)
            .map(|_| {
                let start = rng.below(starts);
                Example::next_tokens(self.train[start..][..len.min(self.train.len())].to_vec())
            })
            .collect()
    }

    /// Up to `most` consecutive windows of `len` tokens from the held-out part.
    pub fn held_out_windows(&self, len: usize, most: usize) -> Vec<Example> {
        self.held_out
            .chunks_exact(len)
            .take(most)
            .map(|w| Example::next_tokens(w.to_vec()))
            .collect()
    }
}

/// Step `step`'s `n` examples, drawn with replacement from `examples` by `seed` (a resumed
/// or repeated run draws the same).
pub fn sample(examples: &[Example], seed: u64, step: usize, n: usize) -> Vec<Example> {
    let mut rng = Rng::new(seed, &format!("batch {step}"));
    (0..n)
        .map(|_| examples[rng.below(examples.len())].clone())
        .collect()
}

/// A conversation as a training example: the template's rendering, tokenized, with
/// targets on the tokens of each assistant turn (its text and the end-of-turn the template
/// puts after it). Each assistant turn's tokens are those between the rendering of the
/// turns before it with the assistant header and the rendering that includes it.
/// Tokens are read as the chat door reads a rendered conversation
/// ([`Model::encode_chat`]).
pub fn chat_example<B: Backend>(
    model: &Model<B>,
    messages: &[ChatMessage],
) -> Result<Example, String> {
    let template = model.chat_template().map_err(|e| e.to_string())?;
    let render = |upto: usize, header: bool| {
        template
            .render(&messages[..upto], header)
            .map_err(|e| e.to_string())
    };
    let encode = |text: &str| model.encode_chat(text).map_err(|e| e.to_string());
    let tokens = encode(&render(messages.len(), false)?)?;
    let mut trained = vec![false; tokens.len()];
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let (before, through) = (encode(&render(i, true)?)?, encode(&render(i + 1, false)?)?);
        if !tokens.starts_with(&through) || !through.starts_with(&before) {
            return Err(format!(
                "turn {i}: the template's text does not tokenize as a prefix of the whole"
            ));
        }
        trained[before.len()..through.len()].fill(true);
    }
    // Position p predicts token p + 1.
    let targets = (0..tokens.len())
        .map(|p| match p + 1 < tokens.len() && trained[p + 1] {
            true => Some(tokens[p + 1]),
            false => None,
        })
        .collect();
    Ok(Example { tokens, targets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_from_the_training_part_and_repeat_by_seed() {
        let corpus = Corpus::split((0..1000).collect(), 0.1);
        assert_eq!((corpus.train.len(), corpus.held_out[0]), (900, 900));
        let a = corpus.batch(3, 7, 4, 16);
        assert_eq!(a, corpus.batch(3, 7, 4, 16));
        assert_ne!(a, corpus.batch(3, 8, 4, 16));
        for e in &a {
            assert_eq!(e.tokens.len(), 16);
            assert!(e.tokens.iter().all(|&t| t < 900));
            assert_eq!(e.targets[0], Some(e.tokens[1]));
        }
        let held = corpus.held_out_windows(16, 100);
        assert_eq!((held.len(), held[0].tokens[0]), (6, 900));
    }
}
