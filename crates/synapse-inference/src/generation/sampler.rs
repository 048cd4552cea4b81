//! Token sampling: turns a logits vector into the next token id.
//!
//! The chain follows llama.cpp's default order: repetition penalty -> top-k ->
//! top-p -> min-p -> temperature -> softmax -> draw. Truncation happens before
//! temperature, so top-p and min-p always see the model's own (temperature 1)
//! distribution. Randomness comes from a self-contained xoshiro256** generator,
//! so a seed gives the same tokens on every platform and with every build.

use std::cmp::Ordering;

/// Sampling parameters. The field values that switch a stage off are noted per field.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature. `<= 0` (or NaN) means greedy argmax.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens. `0` = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability sum reaches `top_p`. `>= 1` = off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top probability. `<= 0` = off.
    pub min_p: f32,
    /// Penalty for tokens seen in the last `repeat_last_n` tokens. `1.0` (or `<= 0`) = off.
    pub repeat_penalty: f32,
    /// OpenAI's presence penalty: subtracted from the logit of every token seen in the
    /// last `repeat_last_n` tokens. `0` = off.
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty: subtracted once per occurrence in the last
    /// `repeat_last_n` tokens. `0` = off.
    pub frequency_penalty: f32,
    /// How many of the most recent tokens the penalties look at. `0` = off.
    pub repeat_last_n: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's command-line defaults.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

/// Sampling settings a caller chose (command-line flags, request fields); `None` leaves
/// the choice to [`SamplerConfig::resolve`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<usize>,
    pub seed: Option<u64>,
}

/// A model's sampling defaults and special tokens: a Hugging Face directory's
/// `generation_config.json` (read in [`crate::hf`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    /// `eos_token_id`, which may be one id or a list.
    pub eos_token_ids: Vec<u32>,
    pub bos_token_id: Option<u32>,
    /// Whether sampling is on; when false, transformers decodes greedily whatever the
    /// temperature and top-k/top-p say.
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

impl SamplerConfig {
    /// Each setting from `overrides` when set, else from the model's
    /// `generation_config.json`, else llama.cpp's default. A model with
    /// `do_sample: false` decodes greedily (as transformers does) unless a temperature is
    /// given.
    pub fn resolve(
        overrides: &SamplingOverrides,
        generation_config: Option<&GenerationConfig>,
    ) -> SamplerConfig {
        let base = SamplerConfig::default();
        let model = |field: fn(&GenerationConfig) -> Option<f32>| generation_config.and_then(field);
        let model_temperature = match generation_config.and_then(|g| g.do_sample) {
            Some(false) => 0.0,
            _ => model(|g| g.temperature).unwrap_or(base.temperature),
        };
        SamplerConfig {
            temperature: overrides.temperature.unwrap_or(model_temperature),
            top_k: overrides
                .top_k
                .or(generation_config.and_then(|g| g.top_k))
                .unwrap_or(base.top_k),
            top_p: overrides.top_p.or(model(|g| g.top_p)).unwrap_or(base.top_p),
            // generation_config.json has no min-p or repetition window.
            min_p: overrides.min_p.unwrap_or(base.min_p),
            repeat_penalty: overrides
                .repeat_penalty
                .or(model(|g| g.repetition_penalty))
                .unwrap_or(base.repeat_penalty),
            repeat_last_n: overrides.repeat_last_n.unwrap_or(base.repeat_last_n),
            seed: overrides.seed.unwrap_or(base.seed),
            ..base
        }
    }

    /// Deterministic argmax decoding with every other stage off.
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            ..SamplerConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    logit: f32,
}

/// Descending by logit, ties by ascending id: a total order, so sorting and
/// selection give the same result on every platform.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Samples token ids from logits. Holds its buffers so that `sample` does not
/// allocate once they have grown to the vocabulary size.
#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Xoshiro256StarStar,
    candidates: Vec<Candidate>,
    /// Distinct recent tokens, for the repetition penalty.
    recent_scratch: Vec<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Self {
        Sampler {
            rng: Xoshiro256StarStar::seed_from_u64(cfg.seed),
            cfg,
            candidates: Vec::new(),
            recent_scratch: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token. `recent` is the token history (prompt and generated
    /// tokens, oldest first); only its last `repeat_last_n` entries are used.
    /// Ids in `recent` outside the vocabulary are ignored. Empty `logits` give 0.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        self.load_candidates(logits);
        self.apply_penalties(recent);

        let cfg = &self.cfg;
        if cfg.temperature.is_nan() || cfg.temperature <= 0.0 {
            return argmax(&self.candidates);
        }

        let top_k = cfg.top_k;
        let top_p = cfg.top_p;
        let min_p = cfg.min_p;
        let temperature = cfg.temperature;

        let mut sorted = false;
        if top_k > 0 && top_k < self.candidates.len() {
            // Partition out the k best, then sort only those.
            self.candidates
                .select_nth_unstable_by(top_k - 1, by_logit_desc);
            self.candidates.truncate(top_k);
            self.candidates.sort_unstable_by(by_logit_desc);
            sorted = true;
        }
        if top_p < 1.0 {
            if !sorted {
                self.candidates.sort_unstable_by(by_logit_desc);
            }
            top_p_truncate(&mut self.candidates, top_p);
        }
        if min_p > 0.0 {
            min_p_filter(&mut self.candidates, min_p);
        }

        // Turn logits into unnormalised weights exp((l - max) / t), in place.
        let max = self
            .candidates
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Everything masked: nothing to draw from, fall back to the lowest id.
            return argmax(&self.candidates);
        }
        let mut total = 0.0f64;
        for c in &mut self.candidates {
            // Explicit zero for -inf: with an infinite temperature -inf / inf is NaN.
            c.logit = if c.logit == f32::NEG_INFINITY {
                0.0
            } else {
                ((c.logit - max) / temperature).exp()
            };
            total += f64::from(c.logit);
        }

        let target = self.rng.next_f64() * total;
        let mut acc = 0.0f64;
        for c in &self.candidates {
            acc += f64::from(c.logit);
            if target < acc {
                return c.id;
            }
        }
        // Rounding can leave `target` just past the last sum: take the last
        // candidate with non-zero weight.
        self.candidates
            .iter()
            .rev()
            .find(|c| c.logit > 0.0)
            .map_or(self.candidates[0].id, |c| c.id)
    }

    /// Copies logits into the candidate list. NaN becomes -inf and +inf becomes
    /// f32::MAX so the later arithmetic stays finite and ordered.
    fn load_candidates(&mut self, logits: &[f32]) {
        self.candidates.clear();
        self.candidates
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: if l.is_nan() {
                    f32::NEG_INFINITY
                } else {
                    l.min(f32::MAX)
                },
            }));
    }

    /// llama.cpp semantics: each distinct recent token once; positive logits
    /// are divided by the penalty and the others multiplied by it, so the token
    /// always becomes less likely. Runs before any reordering, so a token's
    /// candidate sits at index == id.
    /// llama.cpp's penalties, over the last `repeat_last_n` tokens: the repetition
    /// penalty (a seen token's logit divided by it, or multiplied when negative), then
    /// OpenAI's frequency and presence penalties (minus count x frequency + presence).
    fn apply_penalties(&mut self, recent: &[u32]) {
        let cfg = &self.cfg;
        // `is_finite` also rules out NaN.
        let repeat = cfg.repeat_penalty;
        let repeat = repeat != 1.0 && repeat > 0.0 && repeat.is_finite();
        let additive = cfg.presence_penalty != 0.0 || cfg.frequency_penalty != 0.0;
        if cfg.repeat_last_n == 0 || !(repeat || additive) {
            return;
        }
        let window = &recent[recent.len().saturating_sub(cfg.repeat_last_n)..];
        self.recent_scratch.clear();
        self.recent_scratch.extend_from_slice(window);
        self.recent_scratch.sort_unstable();
        for run in self.recent_scratch.chunk_by(|a, b| a == b) {
            let Some(c) = self.candidates.get_mut(run[0] as usize) else {
                continue;
            };
            if repeat {
                if c.logit <= 0.0 {
                    c.logit *= cfg.repeat_penalty;
                } else {
                    c.logit /= cfg.repeat_penalty;
                }
            }
            c.logit -= run.len() as f32 * cfg.frequency_penalty + cfg.presence_penalty;
        }
    }
}

/// Highest logit, ties to the lowest id. `cands` must not be empty.
fn argmax(cands: &[Candidate]) -> u32 {
    let mut best = cands[0];
    for &c in &cands[1..] {
        if c.logit > best.logit || (c.logit == best.logit && c.id < best.id) {
            best = c;
        }
    }
    best.id
}

/// Keeps the shortest prefix of the (sorted, descending) candidates whose
/// probability sum reaches `p`; always at least one.
fn top_p_truncate(cands: &mut Vec<Candidate>, p: f32) {
    let Some(first) = cands.first() else { return };
    let max = first.logit;
    if max == f32::NEG_INFINITY {
        return;
    }
    let total: f64 = cands.iter().map(|c| f64::from((c.logit - max).exp())).sum();
    let threshold = f64::from(p) * total;
    let mut acc = 0.0f64;
    let mut keep = cands.len();
    for (i, c) in cands.iter().enumerate() {
        acc += f64::from((c.logit - max).exp());
        if acc >= threshold {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep);
}

/// Drops candidates with probability below `min_p * p_max`, i.e. logit below
/// `max_logit + ln(min_p)`. Keeps order; the top candidate always survives.
fn min_p_filter(cands: &mut Vec<Candidate>, min_p: f32) {
    let max = cands
        .iter()
        .map(|c| c.logit)
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    // min_p above 1 would drop everything; cap it so the top token stays.
    let threshold = max + min_p.min(1.0).ln();
    cands.retain(|c| c.logit >= threshold);
}

/// xoshiro256** (Blackman & Vigna), seeded by expanding the u64 seed with
/// splitmix64 as its authors recommend. Pure integer arithmetic: identical
/// streams everywhere.
#[derive(Debug, Clone)]
struct Xoshiro256StarStar {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Xoshiro256StarStar {
    fn seed_from_u64(seed: u64) -> Self {
        let mut sm = seed;
        // splitmix64 never yields four zero words, so the state is valid.
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Xoshiro256StarStar { s }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: 1.0,
            seed,
            ..SamplerConfig::default()
        }
    }

    /// `n` tokens drawn from `logits` at temperature 1, every other stage off.
    fn draws(seed: u64, logits: &[f32], n: usize) -> Vec<u32> {
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, seed));
        (0..n).map(|_| s.sample(logits, &[])).collect()
    }

    /// Logits whose softmax is exactly `probs`.
    fn logits_of(probs: &[f32]) -> Vec<f32> {
        probs.iter().map(|p| p.ln()).collect()
    }

    /// Draws 20 000 tokens from `logits` with a sampler of `cfg` and checks each token's
    /// frequency against `want`, to within 0.015.
    fn assert_frequencies(cfg: SamplerConfig, logits: &[f32], want: &[f64]) {
        let n = 20_000;
        let mut sampler = Sampler::new(cfg);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[sampler.sample(logits, &[]) as usize] += 1;
        }
        let got: Vec<f64> = counts.iter().map(|&c| c as f64 / n as f64).collect();
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 0.015,
                "token {i}: frequency {g:.4}, expected {w:.4} (all: {got:?})"
            );
        }
    }

    /// Pseudo-random logits for tests, from the crate's own generator.
    fn random_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256StarStar::seed_from_u64(seed);
        (0..n)
            .map(|_| (rng.next_f64() * 20.0 - 10.0) as f32)
            .collect()
    }

    #[test]
    fn splitmix64_reference_value() {
        // First output of splitmix64 from state 0, as published with the algorithm.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn greedy_is_argmax_with_ties_to_lowest_id() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.1, 3.0, -2.0, 2.9], &[]), 1);
        assert_eq!(s.sample(&[1.0, 5.0, 5.0, 5.0], &[]), 1);
        let logits = random_logits(1000, 7);
        let want = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap();
        assert_eq!(s.sample(&logits, &[]), want);
        // Negative temperature is greedy as well.
        let mut s = Sampler::new(cfg(-1.0, 0, 1.0, 0.0, 3));
        assert_eq!(s.sample(&logits, &[]), want);
    }

    #[test]
    fn same_seed_same_sequence() {
        let logits = vec![0.0f32; 500];
        assert_eq!(draws(42, &logits, 200), draws(42, &logits, 200));
        // Same with the full default chain on peaked logits.
        let logits = random_logits(2000, 9);
        let mut a = Sampler::new(SamplerConfig::default());
        let mut b = Sampler::new(SamplerConfig::default());
        for _ in 0..100 {
            assert_eq!(a.sample(&logits, &[]), b.sample(&logits, &[]));
        }
    }

    #[test]
    fn different_seeds_differ_on_flat_distribution() {
        let logits = vec![0.0f32; 1000];
        let (sa, sb) = (draws(1, &logits, 50), draws(2, &logits, 50));
        assert_ne!(sa, sb);
        // And a flat distribution is actually explored.
        let mut distinct = sa.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() > 40,
            "only {} distinct tokens",
            distinct.len()
        );
    }

    #[test]
    fn top_k_one_equals_greedy() {
        let mut greedy = Sampler::new(SamplerConfig::greedy());
        let mut k1 = Sampler::new(cfg(1.5, 1, 1.0, 0.0, 5));
        for seed in 0..20 {
            let logits = random_logits(300, seed);
            assert_eq!(k1.sample(&logits, &[]), greedy.sample(&logits, &[]));
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_in_proportion() {
        // probs 0.1, 0.4, 0.2, 0.3: top-2 keeps ids 1 and 3, renormalised 4:3.
        let logits = logits_of(&[0.1, 0.4, 0.2, 0.3]);
        let want = [0.0, 4.0 / 7.0, 0.0, 3.0 / 7.0];
        assert_frequencies(cfg(1.0, 2, 1.0, 0.0, 11), &logits, &want);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Sorted probs 0.5, 0.3, 0.15, 0.05. top_p = 0.75: 0.5 < 0.75 <= 0.8,
        // so exactly ids 0 and 1 remain, in ratio 5:3. Shuffled ids check that
        // the stage sorts before accumulating.
        let logits = logits_of(&[0.15, 0.5, 0.05, 0.3]);
        let want = [0.0, 5.0 / 8.0, 0.0, 3.0 / 8.0];
        assert_frequencies(cfg(1.0, 0, 0.75, 0.0, 12), &logits, &want);

        // top_p = 0.9: 0.8 < 0.9 <= 0.95, so three tokens.
        let want = [0.15 / 0.95, 0.5 / 0.95, 0.0, 0.3 / 0.95];
        assert_frequencies(cfg(1.0, 0, 0.9, 0.0, 13), &logits, &want);
    }

    #[test]
    fn min_p_drops_tokens_below_the_scaled_top_probability() {
        // min_p 0.4 * p_max 0.4 = 0.16: 0.1 goes, 0.2 stays.
        let logits = logits_of(&[0.2, 0.1, 0.4, 0.3]);
        let want = [2.0 / 9.0, 0.0, 4.0 / 9.0, 3.0 / 9.0];
        assert_frequencies(cfg(1.0, 0, 1.0, 0.4, 14), &logits, &want);
    }

    #[test]
    fn full_distribution_and_temperature() {
        let probs = [0.1f32, 0.2, 0.3, 0.4];
        let logits = logits_of(&probs);
        assert_frequencies(cfg(1.0, 0, 1.0, 0.0, 15), &logits, &[0.1, 0.2, 0.3, 0.4]);
        // Temperature 0.5 squares the probabilities before renormalising.
        let sq: Vec<f64> = probs.iter().map(|&p| f64::from(p * p) / 0.3).collect();
        assert_frequencies(cfg(0.5, 0, 1.0, 0.0, 16), &logits, &sq);
    }

    #[test]
    fn repetition_penalty_changes_argmax() {
        let mut c = SamplerConfig::greedy();
        c.repeat_penalty = 1.5;
        let mut s = Sampler::new(c.clone());
        // Positive logit divided: 2.0 / 1.5 = 1.33 < 1.9.
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[]), 0);
        assert_eq!(s.sample(&[2.0, 1.9, -1.0], &[0]), 1);
        // Negative logit multiplied: -1.0 * 1.5 = -1.5 < -1.2.
        assert_eq!(s.sample(&[-1.0, -1.2], &[0]), 1);
        // Out-of-vocabulary history ids are ignored.
        assert_eq!(s.sample(&[2.0, 1.9], &[7, u32::MAX]), 0);

        // Each distinct token counts once: 2.0 / 1.1 = 1.82 > 1.7, whereas a
        // triple application (2.0 / 1.331 = 1.50) would flip the argmax.
        c.repeat_penalty = 1.1;
        let mut s = Sampler::new(c.clone());
        assert_eq!(s.sample(&[2.0, 1.7], &[0, 0, 0]), 0);

        // Only the last `repeat_last_n` tokens count.
        c.repeat_penalty = 1.5;
        c.repeat_last_n = 2;
        let mut s = Sampler::new(c);
        assert_eq!(s.sample(&[2.0, 1.9, 0.0], &[0, 2, 2]), 0);
        assert_eq!(s.sample(&[2.0, 1.9, 0.0], &[2, 0, 2]), 1);
    }

    #[test]
    fn presence_and_frequency_penalties_subtract() {
        let mut c = SamplerConfig::greedy();
        c.presence_penalty = 0.5;
        let mut s = Sampler::new(c.clone());
        // 2.0 - 0.5 = 1.5 < 1.9, however often token 0 was seen.
        assert_eq!(s.sample(&[2.0, 1.9], &[0]), 1);
        assert_eq!(s.sample(&[2.0, 1.4], &[0, 0, 0]), 0);
        // Frequency: 0.2 per occurrence; 2.0 - 3 x 0.2 = 1.4 < 1.5, 2.0 - 2 x 0.2 > 1.5.
        c.presence_penalty = 0.0;
        c.frequency_penalty = 0.2;
        let mut s = Sampler::new(c.clone());
        assert_eq!(s.sample(&[2.0, 1.5], &[0, 0, 0]), 1);
        assert_eq!(s.sample(&[2.0, 1.5], &[0, 0]), 0);
        // A negative penalty encourages repetition; only the window counts.
        c.frequency_penalty = -1.0;
        c.repeat_last_n = 1;
        let mut s = Sampler::new(c);
        assert_eq!(s.sample(&[1.0, 1.5], &[0]), 0);
        assert_eq!(s.sample(&[1.0, 1.5], &[0, 1]), 1);
    }

    #[test]
    fn bad_input_does_not_panic() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&[], &[]), 0);
        let nan = [f32::NAN, 1.0, f32::NAN];
        assert_eq!(s.sample(&nan, &[0, 1, 2]), 1);
        let inf = [f32::INFINITY, 1.0, f32::NEG_INFINITY];
        assert_eq!(s.sample(&inf, &[]), 0);
        let masked = [f32::NEG_INFINITY; 4];
        assert_eq!(s.sample(&masked, &[]), 0);
        let mut odd = SamplerConfig {
            temperature: f32::NAN,
            top_p: f32::NAN,
            min_p: 2.0,
            repeat_penalty: 0.0,
            top_k: 100,
            ..SamplerConfig::default()
        };
        assert_eq!(Sampler::new(odd.clone()).sample(&[0.0, 1.0], &[1]), 1);
        odd.temperature = 1e-30;
        assert_eq!(Sampler::new(odd).sample(&[0.0, 1.0, 0.5], &[1]), 1);
    }

    #[test]
    fn resolve_takes_flags_then_the_model_then_llama_cpp() {
        let model = GenerationConfig {
            temperature: Some(0.6),
            top_p: Some(0.9),
            repetition_penalty: Some(1.2),
            ..GenerationConfig::default()
        };
        let flags = SamplingOverrides {
            top_p: Some(0.5),
            seed: Some(7),
            ..SamplingOverrides::default()
        };
        let got = SamplerConfig::resolve(&flags, Some(&model));
        let want = SamplerConfig {
            temperature: 0.6,
            top_p: 0.5,
            repeat_penalty: 1.2,
            seed: 7,
            ..SamplerConfig::default()
        };
        assert_eq!(got, want);
        assert_eq!(
            SamplerConfig::resolve(&SamplingOverrides::default(), None),
            SamplerConfig::default()
        );
    }

    #[test]
    fn resolve_decodes_greedily_when_the_model_does_not_sample() {
        let model = GenerationConfig {
            do_sample: Some(false),
            temperature: Some(0.6),
            top_k: Some(20),
            ..GenerationConfig::default()
        };
        let got = SamplerConfig::resolve(&SamplingOverrides::default(), Some(&model));
        assert_eq!((got.temperature, got.top_k), (0.0, 20));
        // An explicit temperature still samples.
        let flags = SamplingOverrides {
            temperature: Some(1.1),
            ..SamplingOverrides::default()
        };
        let got = SamplerConfig::resolve(&flags, Some(&model));
        assert_eq!(got.temperature, 1.1);
    }

    #[test]
    fn default_matches_llama_cpp() {
        let d = SamplerConfig::default();
        assert_eq!(
            (
                d.temperature,
                d.top_k,
                d.top_p,
                d.min_p,
                d.repeat_penalty,
                d.repeat_last_n
            ),
            (0.8, 40, 0.95, 0.05, 1.0, 64)
        );
    }
}
