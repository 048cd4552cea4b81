//! Training against PyTorch (tools/reference/make_training_fixture.py wrote the fixtures):
//! the same tiny LLaMA (its initial weights from the fixture), the same batches, AdamW
//! settings, schedule and clipping. The first step's gradients must match PyTorch's within
//! 1e-4 (relative to each tensor's largest), and the loss of each of the 200 steps within 1%.

use std::path::PathBuf;
use std::sync::Arc;
use synapse_inference::hf::safetensors::SafetensorsFile;
use synapse_inference::model::FAMILIES;
use synapse_inference::{Model, Session, SessionOptions};
use synapse_train::autodiff::Autodiff;
use synapse_train::optim::{zero_gradients, AdamW, Schedule};
use synapse_train::step::{accumulate_gradients, train_step, Example, StepOptions};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/train")
}

/// The fixture's settings and PyTorch's losses.
struct Reference {
    settings: serde_json::Value,
    losses: Vec<f32>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("losses.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let losses = json["losses"].as_array().unwrap();
    Reference {
        settings: json["settings"].clone(),
        losses: losses.iter().map(|v| v.as_f64().unwrap() as f32).collect(),
    }
}

/// The script's batches: arithmetic progressions from the same LCG.
fn batches(steps: usize, batch: usize, seq: usize, vocab: u32) -> Vec<Vec<Example>> {
    let mut state: u64 = 12345;
    let mut lcg = || {
        state = (state * 1103515245 + 12345) % (1 << 31);
        (state >> 8) as u32
    };
    (0..steps)
        .map(|_| {
            (0..batch)
                .map(|_| {
                    let (start, step) = (lcg() % vocab, 1 + lcg() % 3);
                    let tokens = (0..seq as u32).map(|i| (start + i * step) % vocab);
                    Example::next_tokens(tokens.collect())
                })
                .collect()
        })
        .collect()
}

fn session() -> Session<Autodiff> {
    let model = Model::load(fixtures().join("tiny-llama")).unwrap();
    let model = model.with_backend(Autodiff::default()).unwrap();
    let opts = SessionOptions {
        context: 64,
        threads: 2,
        ..SessionOptions::default()
    };
    Session::new(Arc::new(model), opts)
}

fn setting(r: &Reference, key: &str) -> f32 {
    r.settings[key].as_f64().unwrap() as f32
}

/// PyTorch's name of each parameter (the backend names them as GGUF files do).
fn torch_names(session: &Session<Autodiff>) -> Vec<String> {
    let llama = FAMILIES.iter().find(|f| f.name == "llama").unwrap();
    let state = session.model.backend().state();
    state
        .params
        .iter()
        .map(|p| llama.hf_names.map(&p.name).unwrap())
        .collect()
}

#[test]
fn first_step_gradients_match_pytorch() {
    let r = reference();
    let mut session = session();
    let config = session.model.config().clone();
    let (batch, seq) = (
        r.settings["batch"].as_u64().unwrap(),
        r.settings["seq_len"].as_u64().unwrap(),
    );
    let first = &batches(1, batch as usize, seq as usize, config.vocab_size as u32)[0];
    zero_gradients(&mut session.model.backend().state().params);
    let loss = accumulate_gradients(&mut session, first).unwrap();
    assert!(
        (loss - r.losses[0]).abs() <= 1e-5 * r.losses[0],
        "first loss {loss} vs PyTorch {}",
        r.losses[0]
    );
    let torch = SafetensorsFile::open(fixtures().join("first_step_grads.safetensors")).unwrap();
    let names = torch_names(&session);
    let state = session.model.backend().state();
    assert_eq!(
        names.len(),
        torch.names().count(),
        "as many parameters as PyTorch's"
    );
    let mut worst = 0.0f32;
    for (p, name) in state.params.iter().zip(&names) {
        let want = torch.tensor(name).unwrap().to_f32();
        let largest = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let error = p
            .grad
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
            / largest;
        worst = worst.max(error);
        assert!(
            error <= 1e-4,
            "{name}: gradient off by {error:.2e} of its largest {largest:.3e}"
        );
    }
    eprintln!(
        "loss {loss:.6} (PyTorch {:.6}); {} gradients, worst {worst:.2e} relative",
        r.losses[0],
        names.len()
    );
}

#[test]
fn two_hundred_steps_follow_pytorchs_losses() {
    let r = reference();
    let mut session = session();
    let vocab = session.model.config().vocab_size as u32;
    let (steps, batch, seq) = (
        r.losses.len(),
        r.settings["batch"].as_u64().unwrap(),
        r.settings["seq_len"].as_u64().unwrap(),
    );
    let schedule = Schedule {
        peak: setting(&r, "peak_lr"),
        floor: setting(&r, "floor_lr"),
        warmup: r.settings["warmup"].as_u64().unwrap() as usize,
        total: steps,
    };
    let betas = (
        r.settings["betas"][0].as_f64().unwrap() as f32,
        r.settings["betas"][1].as_f64().unwrap() as f32,
    );
    let mut adam = AdamW::new(betas, setting(&r, "eps"), setting(&r, "weight_decay"));
    let mut worst = 0.0f32;
    for (step, b) in batches(steps, batch as usize, seq as usize, vocab)
        .iter()
        .enumerate()
    {
        let opts = StepOptions {
            lr: schedule.lr(step),
            clip: Some(setting(&r, "clip")),
        };
        let report = train_step(&mut session, b, &mut adam, opts).unwrap();
        let want = r.losses[step];
        let error = (report.loss - want).abs() / want;
        worst = worst.max(error);
        assert!(
            error <= 0.01,
            "step {step}: loss {} vs PyTorch {want}",
            report.loss
        );
        if step % 40 == 0 || step == steps - 1 {
            eprintln!("step {step:3}: loss {:.4} (PyTorch {want:.4})", report.loss);
        }
    }
    eprintln!("{steps} steps: worst relative loss difference {worst:.2e}");
}
