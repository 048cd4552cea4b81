//! The engine's own decoder differentiated: a tiny random-weight LLaMA (grouped KV heads,
//! two layers) run through [`Autodiff`] gives the CPU backend's logits, and its weight
//! gradients of the cross-entropy loss match finite differences of that loss.

use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_inference::kv_cache::KvType;
use synapse_inference::{Model, Session, SessionOptions};
use synapse_train::autodiff::{Autodiff, Training};
use synapse_train::export::merged_weights;
use synapse_train::lora::{LoraOptions, ALL_PROJECTIONS};
use synapse_train::loss::{cross_entropy, cross_entropy_backward};
use synapse_train::step::Example;

const CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 32, "num_attention_heads": 4,
    "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 64,
    "vocab_size": 50, "max_position_embeddings": 64, "tie_word_embeddings": false}"#;
const TOKENS: [u32; 7] = [3, 17, 42, 8, 8, 31, 0];

fn model() -> Model {
    Model::random("tiny-llama.json", CONFIG, Default::default()).expect("tiny model")
}

fn options() -> SessionOptions {
    SessionOptions {
        context: 64,
        threads: 2,
        precision: Precision::F32,
        kv_type: Some(KvType::F32),
        ..SessionOptions::default()
    }
}

/// The loss of one forward pass over `TOKENS`, with the logits' gradient pushed back to
/// the parameters when `backward`.
fn loss(session: &mut Session<Autodiff>, backward: bool) -> f64 {
    session.truncate(0);
    let model = session.model.clone();
    let backend = model.backend();
    backend.clear_tape();
    let logits = session.eval(&TOKENS, true).expect("forward");
    let vocab = model.config().vocab_size;
    let targets = Example::next_tokens(TOKENS.to_vec()).targets;
    let loss = cross_entropy(&logits, vocab, &targets) as f64;
    if backward {
        let dz = cross_entropy_backward(&logits, vocab, &targets);
        backend.backward(backend.output().expect("logits read"), &dz);
    }
    loss
}

#[test]
fn the_decoder_on_autodiff_gives_the_cpu_logits() {
    let mut cpu = Session::new(Arc::new(model()), options());
    let want = cpu.eval(&TOKENS, true).unwrap();
    let model = model().with_backend(Autodiff::default()).unwrap();
    let mut session = Session::new(Arc::new(model), options());
    let got = session.eval(&TOKENS, true).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let largest = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!("max |logit difference| {worst:.2e} (largest logit {largest:.2})");
    assert!(worst <= 1e-4 * largest.max(1.0), "{worst}");
}

/// Checks three components of every trained parameter's gradient against central finite
/// differences of the loss.
fn check_gradients(model: Model<Autodiff>) {
    let mut session = Session::new(Arc::new(model), options());
    let base = loss(&mut session, true);
    let n_params = session.model.backend().state().params.len();
    let mut checked = 0;
    let mut worst = 0.0f64;
    for p in 0..n_params {
        let (name, len, frozen) = {
            let s = session.model.backend().state();
            (
                s.params[p].name.clone(),
                s.params[p].value.len(),
                s.params[p].frozen,
            )
        };
        if frozen {
            continue;
        }
        for i in [0, len / 3, len - 1] {
            let read =
                |session: &Session<Autodiff>| session.model.backend().state().params[p].value[i];
            let set = |session: &Session<Autodiff>, v: f32| {
                session.model.backend().state().params[p].value[i] = v
            };
            let analytic = session.model.backend().state().params[p].grad[i] as f64;
            let x = read(&session);
            let h = 1e-2f32;
            set(&session, x + h);
            let up = loss(&mut session, false);
            set(&session, x - h);
            let down = loss(&mut session, false);
            set(&session, x);
            let numeric = (up - down) / (2.0 * h as f64);
            let error = (numeric - analytic).abs() / analytic.abs().max(1e-2);
            worst = worst.max(error);
            assert!(
                error < 2e-2,
                "param {p} ({name}) [{i}]: analytic {analytic:.6} vs finite differences {numeric:.6}"
            );
            checked += 1;
        }
    }
    eprintln!("loss {base:.4}; {checked} components of {n_params} parameters: worst relative difference {worst:.2e}");
}

#[test]
fn weight_gradients_match_finite_differences_of_the_loss() {
    check_gradients(model().with_backend(Autodiff::default()).unwrap());
}

#[test]
fn a_tied_output_projection_is_the_embedding_table_and_takes_both_gradients() {
    let tied = CONFIG.replace(
        r#""tie_word_embeddings": false"#,
        r#""tie_word_embeddings": true"#,
    );
    let model = Model::random("tiny-tied.json", &tied, Default::default()).unwrap();
    let model = model.with_backend(Autodiff::default()).unwrap();
    let tables = model
        .backend()
        .state()
        .params
        .iter()
        .filter(|p| p.rows == 50)
        .count();
    assert_eq!(tables, 1, "one [vocab][width] parameter");
    check_gradients(model);
}

/// The tiny model with rank-4 adapters on every projection, their B factors made nonzero
/// (a fresh adapter's B is zero, which would hide a wrong A gradient).
fn lora_model() -> Model<Autodiff> {
    let opts = LoraOptions {
        rank: 4,
        alpha: 8.0,
        targets: ALL_PROJECTIONS.map(String::from).to_vec(),
        seed: 1,
    };
    let model = model()
        .with_backend(Autodiff::new(Training::Lora(opts)))
        .unwrap();
    for p in model.backend().state().params.iter_mut() {
        if p.name.ends_with(".lora_b") {
            let n = p.value.len();
            p.value = (0..n)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.02)
                .collect();
        }
    }
    model
}

#[test]
fn lora_gradients_match_finite_differences_and_the_base_stays_frozen() {
    let model = lora_model();
    {
        let state = model.backend().state();
        let trained: Vec<&str> = state
            .params
            .iter()
            .filter(|p| !p.frozen)
            .map(|p| p.name.as_str())
            .collect();
        // Two layers of seven projections, each with A and B.
        assert_eq!(trained.len(), 28, "{trained:?}");
        assert!(trained.iter().all(|n| n.contains(".lora_")));
    }
    check_gradients(model);
}

#[test]
fn merged_lora_weights_give_the_adapted_models_logits() {
    let lora = lora_model();
    let mut session = Session::new(Arc::new(lora), options());
    let want = session.eval(&TOKENS, true).unwrap();
    let merged: Vec<(String, Vec<f32>)> = {
        let state = session.model.backend().state();
        merged_weights(&state)
            .into_iter()
            .map(|w| (w.name, w.values.into_owned()))
            .collect()
    };
    let full = model().with_backend(Autodiff::default()).unwrap();
    for p in full.backend().state().params.iter_mut() {
        let (_, values) = merged
            .iter()
            .find(|(n, _)| *n == p.name)
            .expect("every weight merged");
        p.value.clone_from(values);
    }
    let got = Session::new(Arc::new(full), options())
        .eval(&TOKENS, true)
        .unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let moved = {
        let plain = Session::new(Arc::new(model()), options())
            .eval(&TOKENS, true)
            .unwrap();
        plain
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    };
    eprintln!("merged vs adapted: {worst:.2e}; the adapters move the logits by up to {moved:.3}");
    assert!(
        moved > 0.05,
        "the adapters must matter for this check to mean anything"
    );
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn a_family_with_operations_without_a_backward_is_an_error_naming_them() {
    let gpt2 = r#"{"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 1,
        "vocab_size": 50, "n_positions": 64}"#;
    let model = Model::random("tiny-gpt2.json", gpt2, Default::default()).unwrap();
    let model = model.with_backend(Autodiff::default()).unwrap();
    let mut session = Session::new(Arc::new(model), options());
    let batch = [Example::next_tokens(TOKENS.to_vec())];
    let error = synapse_train::step::accumulate_gradients(&mut session, &batch).unwrap_err();
    assert_eq!(
        error.to_string(),
        "autodiff: learned positions has no backward yet (LLaMA-family models only so far)"
    );
}
