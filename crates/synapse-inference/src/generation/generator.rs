//! One sequence's generation, a step at a time, without the model: the caller runs the
//! forward pass and hands over the logits.

use super::sampler::Sampler;
use super::stop::StopMatcher;
use super::{top_k_logits, GenerateOptions, StopReason, TokenLogprob};
use crate::model::backend::{Backend, Cpu};
use crate::session::Model;
use crate::tokenizer::StreamDecoder;
use std::sync::Arc;

/// What one [`Generator::step`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The sampled token. With `stop: Some(StopReason::Eos)` it is the end-of-generation
    /// token, which is not part of the output and needs no forward pass.
    pub token: u32,
    /// Text that is safe to show now: complete UTF-8, not part of a possible stop string.
    /// When `stop` is set it includes all text held back until then.
    pub text: String,
    /// The token's logprob and the most likely alternatives, when
    /// `GenerateOptions::logprobs` asks for them (a full-vocabulary pass, skipped
    /// otherwise).
    pub logprobs: Option<TokenLogprob>,
    /// Why the sequence ends here, if it does. `Stop` and `Length` include this token.
    pub stop: Option<StopReason>,
}

/// One sequence's sampler, stop strings, streaming decoder and limits: it turns each
/// step's logits into a token and the text it completes. It runs no model, so a server
/// can batch the forward passes of many sequences and then step each one's generator.
/// The sampler's random state lives as long as the value: step after step, and turn
/// after turn when it is carried on with [`Generator::with_sampler`].
pub struct Generator<B: Backend = Cpu> {
    /// For its tokenizer; without one (a checkpoint run on token ids) there is no text.
    model: Arc<Model<B>>,
    sampler: Sampler,
    stops: StopMatcher,
    decoder: StreamDecoder,
    /// Tokens that end the sequence: none with `ignore_eos`.
    end_of_generation: Vec<u32>,
    max_tokens: usize,
    generated: usize,
    /// How many alternatives each step reports; None: no logprobs.
    top_logprobs: Option<usize>,
    /// The grammar the output follows, and the masked logits it samples from.
    #[cfg(feature = "constraints")]
    constraint: Option<(super::constraint::Constraint, Vec<f32>)>,
}

impl<B: Backend> Generator<B> {
    /// A generator for a new sequence of `model` with the sampler, stop strings and
    /// limits of `opts`.
    pub fn new(model: Arc<Model<B>>, opts: &GenerateOptions) -> Generator<B> {
        Generator::with_sampler(model, Sampler::new(opts.sampler.clone()), opts)
    }

    /// Like [`Generator::new`], but draws from `sampler` where its random stream left
    /// off (e.g. the previous chat turn's, from [`Generator::into_sampler`]) instead of
    /// seeding a new one; `opts.sampler` is not used.
    pub fn with_sampler(
        model: Arc<Model<B>>,
        sampler: Sampler,
        opts: &GenerateOptions,
    ) -> Generator<B> {
        let end_of_generation = match opts.ignore_eos {
            true => Vec::new(),
            false => model.end_of_generation_ids().to_vec(),
        };
        Generator {
            model,
            sampler,
            stops: StopMatcher::new(opts.stop.clone()),
            decoder: StreamDecoder::new(),
            end_of_generation,
            max_tokens: opts.max_tokens,
            generated: 0,
            top_logprobs: opts.logprobs,
            #[cfg(feature = "constraints")]
            constraint: opts.constraint.clone().map(|c| (c, Vec::new())),
        }
    }

    /// The sampler, with its random state, to carry on into the next sequence.
    pub fn into_sampler(self) -> Sampler {
        self.sampler
    }

    /// The most tokens the sequence may generate.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens generated so far (an end-of-generation token does not count).
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// Samples the next token from `logits` (the model's output after the last token of
    /// `history`, which holds the prompt and the tokens generated so far, oldest first,
    /// for the repetition penalty). After a step with `stop` set, the sequence is over.
    pub fn step(&mut self, logits: &[f32], history: &[u32]) -> Step {
        let token = self.sample(logits, history);
        let mut step = Step {
            token,
            text: String::new(),
            logprobs: self.top_logprobs.map(|n| logprobs(logits, token, n)),
            stop: None,
        };
        if self.end_of_generation.contains(&token) {
            step.stop = Some(StopReason::Eos);
        } else {
            self.generated += 1;
            if let Some(tokenizer) = &self.model.tokenizer {
                let pushed = self.stops.push(&self.decoder.push(tokenizer, token));
                step.text = pushed.text;
                if pushed.stop.is_some() {
                    step.stop = Some(StopReason::Stop);
                }
            }
            if step.stop.is_none() && self.constraint_done() {
                step.stop = Some(StopReason::Stop);
            }
            if step.stop.is_none() && self.generated >= self.max_tokens {
                step.stop = Some(StopReason::Length);
            }
        }
        if step.stop.is_some() {
            step.text.push_str(&self.finish());
        }
        step
    }

    /// The sampler's token, among those the constraint allows if there is one.
    fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        #[cfg(feature = "constraints")]
        if let Some((constraint, masked)) = &mut self.constraint {
            masked.clear();
            masked.extend_from_slice(logits);
            constraint.mask(masked, self.model.end_of_generation_ids());
            let token = self.sampler.sample(masked, history);
            constraint.accept(token);
            return token;
        }
        self.sampler.sample(logits, history)
    }

    /// Whether the constraint, if any, lets nothing follow (even with `ignore_eos`).
    fn constraint_done(&self) -> bool {
        #[cfg(feature = "constraints")]
        if let Some((constraint, _)) = &self.constraint {
            return constraint.is_done();
        }
        false
    }

    /// Releases the text still held back (an unfinished character, a possible start of
    /// a stop string), for a caller that ends the sequence itself (a full context, a
    /// cancellation). A step that stops has already released it; calling again gives "".
    pub fn finish(&mut self) -> String {
        let rest = self.stops.push(&self.decoder.finish());
        rest.text + &self.stops.flush()
    }
}

/// A logit as the sampler reads it: NaN as -inf, +inf as `f32::MAX`, so that sums and
/// differences stay ordered and finite.
fn ordered(logit: f32) -> f32 {
    if logit.is_nan() {
        f32::NEG_INFINITY
    } else {
        logit.min(f32::MAX)
    }
}

/// `token`'s logprob under the model's own distribution, the log-softmax of the raw
/// logits (temperature 1, before the repetition penalty, top-k, top-p and min-p), as
/// OpenAI's `logprobs` reports whatever the sampler did with them; and the `n` most
/// likely tokens' on the same scale.
fn logprobs(logits: &[f32], token: u32, n: usize) -> TokenLogprob {
    let normalizer = log_sum_exp(logits);
    TokenLogprob {
        token,
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&l| ordered(l) - normalizer),
        top: top_k_logits(logits, n)
            .into_iter()
            .map(|(id, l)| (id, ordered(l) - normalizer))
            .collect(),
    }
}

/// ln Σ exp(logits), the normaliser of the log-softmax (-inf when every logit is -inf).
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits
        .iter()
        .map(|&l| ordered(l))
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let sum: f64 = logits
        .iter()
        .map(|&l| f64::from((ordered(l) - max).exp()))
        .sum();
    max + sum.ln() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::sampler::SamplerConfig;
    use crate::generation::tiny_model;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Logits that make greedy decoding pick `token` out of the tiny model's vocabulary.
    fn pick(token: u32) -> Vec<f32> {
        let mut logits = vec![0.0; 260];
        logits[token as usize] = 10.0;
        logits
    }

    fn greedy(max_tokens: usize, stop: &[&str]) -> GenerateOptions {
        GenerateOptions {
            max_tokens,
            sampler: SamplerConfig::greedy(),
            stop: stop.iter().map(|s| s.to_string()).collect(),
            ..GenerateOptions::default()
        }
    }

    /// ln softmax(logits)[id] in f64, straight from the definition.
    fn log_softmax(logits: &[f32], id: u32) -> f64 {
        let total: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        (f64::from(logits[id as usize]).exp() / total).ln()
    }

    #[test]
    fn logprobs_are_the_log_softmax_of_the_raw_logits() {
        let logits: Vec<f32> = (0..260).map(|i| ((i * 37) % 101) as f32 / 13.0).collect();
        // Temperature and truncation change what is drawn, not the reported logprobs.
        let opts = GenerateOptions {
            sampler: SamplerConfig {
                temperature: 0.5,
                top_k: 3,
                seed: 4,
                ..SamplerConfig::default()
            },
            logprobs: Some(4),
            ..GenerateOptions::default()
        };
        let mut generator = Generator::new(tiny_model(), &opts);
        let mut by_logit: Vec<u32> = (0..260).collect();
        by_logit.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        for _ in 0..20 {
            let step = generator.step(&logits, &[]);
            let lp = step.logprobs.unwrap();
            let want = log_softmax(&logits, step.token);
            assert!(
                (f64::from(lp.logprob) - want).abs() < 1e-5,
                "token {}: logprob {} expected {want}",
                step.token,
                lp.logprob
            );
            let ids: Vec<u32> = lp.top.iter().map(|&(id, _)| id).collect();
            assert_eq!(ids, by_logit[..4]);
            for &(id, lp) in &lp.top {
                assert!((f64::from(lp) - log_softmax(&logits, id)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn top_logprobs_are_sorted_with_ties_to_the_lower_id() {
        let mut logits = vec![-5.0; 260];
        logits[7] = 2.0;
        logits[3] = 2.0;
        logits[200] = 4.0;
        logits[9] = 1.0;
        let opts = GenerateOptions {
            logprobs: Some(4),
            ..greedy(8, &[])
        };
        let step = Generator::new(tiny_model(), &opts).step(&logits, &[]);
        let lp = step.logprobs.unwrap();
        let ids: Vec<u32> = lp.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [200, 3, 7, 9]);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!((step.token, lp.logprob), lp.top[0]);
        // The probabilities of all tokens sum to one.
        let total: f64 = (0..260).map(|id| log_softmax(&logits, id).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn an_end_of_generation_token_stops_without_counting() {
        let mut generator = Generator::new(tiny_model(), &greedy(8, &[]));
        generator.end_of_generation = vec![258];
        let first = generator.step(&pick(u32::from(b'h')), &[]);
        assert_eq!((first.text.as_str(), first.stop), ("h", None));
        let last = generator.step(&pick(258), &[u32::from(b'h')]);
        assert_eq!((last.token, last.stop), (258, Some(StopReason::Eos)));
        assert_eq!(last.text, "");
        assert_eq!(generator.generated(), 1);
    }

    #[test]
    fn a_stop_string_ends_the_sequence_and_is_not_shown() {
        let mut generator = Generator::new(tiny_model(), &greedy(8, &["lo"]));
        let steps: Vec<Step> = b"hello"
            .iter()
            .map(|&b| generator.step(&pick(b.into()), &[]))
            .collect();
        let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
        // The first "l" waits until the next one shows it does not start "lo".
        assert_eq!(texts, ["h", "e", "", "l", ""]);
        let stops: Vec<_> = steps.iter().map(|s| s.stop).collect();
        assert_eq!(stops, [None, None, None, None, Some(StopReason::Stop)]);
        assert_eq!(generator.finish(), "");
    }

    #[test]
    fn the_token_limit_releases_held_back_text() {
        let mut generator = Generator::new(tiny_model(), &greedy(2, &["xyz"]));
        let first = generator.step(&pick(u32::from(b'a')), &[]);
        assert_eq!((first.text.as_str(), first.stop), ("a", None));
        // "x" could start "xyz", but the sequence ends here.
        let last = generator.step(&pick(u32::from(b'x')), &[]);
        assert_eq!(
            (last.text.as_str(), last.stop),
            ("x", Some(StopReason::Length))
        );
        assert_eq!(generator.finish(), "");
    }

    #[test]
    fn finish_releases_an_unfinished_character() {
        let mut generator = Generator::new(tiny_model(), &greedy(8, &[]));
        // The first byte of "é": a character still to be finished.
        assert_eq!(generator.step(&pick(0xC3), &[]).text, "");
        assert_eq!(generator.finish(), "\u{FFFD}");
        assert_eq!(generator.finish(), "");
    }
}
