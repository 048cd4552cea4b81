//! The engine's own decoder differentiated: a tiny random-weight LLaMA (grouped KV heads,
//! two layers) run through [`Autodiff`] gives the CPU backend's logits, and its weight
//! gradients of the cross-entropy loss match finite differences of that loss.

use std::sync::Arc;
use synapse_core::kernels::Precision;
use synapse_inference::kv_cache::KvType;
use synapse_inference::{Model, Session, SessionOptions};
use synapse_train::autodiff::Autodiff;
use synapse_train::loss::{cross_entropy, cross_entropy_backward};
use synapse_train::step::next_tokens;

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
    let loss = cross_entropy(&logits, vocab, &next_tokens(&TOKENS)) as f64;
    if backward {
        let dz = cross_entropy_backward(&logits, vocab, &next_tokens(&TOKENS));
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

#[test]
fn weight_gradients_match_finite_differences_of_the_loss() {
    let model = model().with_backend(Autodiff::default()).unwrap();
    let mut session = Session::new(Arc::new(model), options());
    let base = loss(&mut session, true);
    let n_params = session.model.backend().state().params.len();
    let mut checked = 0;
    let mut worst = 0.0f64;
    // A few components of every parameter: embeddings, norms, each projection, output.
    for p in 0..n_params {
        let (name, len) = {
            let s = session.model.backend().state();
            (s.params[p].name.clone(), s.params[p].value.len())
        };
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
fn a_family_with_operations_without_a_backward_is_an_error_naming_them() {
    let gpt2 = r#"{"model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 1,
        "vocab_size": 50, "n_positions": 64}"#;
    let model = Model::random("tiny-gpt2.json", gpt2, Default::default()).unwrap();
    let model = model.with_backend(Autodiff::default()).unwrap();
    let mut session = Session::new(Arc::new(model), options());
    let batch = [TOKENS.to_vec()];
    let error = synapse_train::step::accumulate_gradients(&mut session, &batch).unwrap_err();
    assert_eq!(
        error.to_string(),
        "autodiff: learned positions has no backward yet (LLaMA-family models only so far)"
    );
}
