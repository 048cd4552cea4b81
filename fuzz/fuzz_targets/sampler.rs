//! The sampler with arbitrary settings (NaN, infinities, zero and huge values included),
//! logits and token history: it must always return an id inside the vocabulary.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use synapse_inference::generation::sampler::{Sampler, SamplerConfig};

#[derive(Arbitrary, Debug)]
struct Input {
    temperature: f32,
    top_k: u16,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    presence_penalty: f32,
    frequency_penalty: f32,
    repeat_last_n: u16,
    seed: u64,
    logits: Vec<f32>,
    recent: Vec<u32>,
    draws: u8,
}

fuzz_target!(|input: Input| {
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: input.temperature,
        top_k: input.top_k.into(),
        top_p: input.top_p,
        min_p: input.min_p,
        repeat_penalty: input.repeat_penalty,
        presence_penalty: input.presence_penalty,
        frequency_penalty: input.frequency_penalty,
        repeat_last_n: input.repeat_last_n.into(),
        seed: input.seed,
    });
    for _ in 0..=input.draws % 4 {
        let id = sampler.sample(&input.logits, &input.recent);
        assert!(
            (id as usize) < input.logits.len().max(1),
            "id {id} outside {} logits",
            input.logits.len()
        );
    }
});
