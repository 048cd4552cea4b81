//! The Hugging Face `config.json` files under configs/: each parses, carries the fields a
//! loader needs, and its shapes give the parameter count the model's publishers state
//! (an independent check on the numbers, see configs/README.md).

mod common;

use serde_json::Value;

struct Expected {
    file: &'static str,
    model_type: &'static str,
    /// hidden, intermediate, layers, heads, kv heads, head dim, vocab.
    dims: [u64; 7],
    max_positions: u64,
    rope_theta: f64,
    rms_norm_eps: f64,
    bos: u64,
    eos: u64,
    /// Parameters as published (model cards, keras-hub presets).
    params: u64,
}

const EXPECTED: &[Expected] = &[
    Expected {
        file: "qwen3-0.6b.json",
        model_type: "qwen3",
        dims: [1024, 3072, 28, 16, 8, 128, 151936],
        max_positions: 40960,
        rope_theta: 1e6,
        rms_norm_eps: 1e-6,
        bos: 151643,
        eos: 151645,
        params: 596_049_920,
    },
    Expected {
        file: "llama-3.2-1b.json",
        model_type: "llama",
        dims: [2048, 8192, 16, 32, 8, 64, 128256],
        max_positions: 131072,
        rope_theta: 5e5,
        rms_norm_eps: 1e-5,
        bos: 128000,
        eos: 128001,
        params: 1_235_814_400,
    },
    Expected {
        file: "mistral-7b-v0.1.json",
        model_type: "mistral",
        dims: [4096, 14336, 32, 32, 8, 128, 32000],
        max_positions: 32768,
        rope_theta: 1e4,
        rms_norm_eps: 1e-5,
        bos: 1,
        eos: 2,
        params: 7_241_732_096,
    },
    Expected {
        file: "phi-3-mini-4k.json",
        model_type: "phi3",
        dims: [3072, 8192, 32, 32, 32, 96, 32064],
        max_positions: 4096,
        rope_theta: 1e4,
        rms_norm_eps: 1e-5,
        bos: 1,
        eos: 32000,
        params: 3_821_079_552,
    },
    Expected {
        file: "qwen2.5-0.5b.json",
        model_type: "qwen2",
        dims: [896, 4864, 24, 14, 2, 64, 151936],
        max_positions: 32768,
        rope_theta: 1e6,
        rms_norm_eps: 1e-6,
        bos: 151643,
        eos: 151643,
        params: 494_032_768,
    },
    Expected {
        file: "gemma-2b.json",
        model_type: "gemma",
        dims: [2048, 16384, 18, 8, 1, 256, 256000],
        max_positions: 8192,
        rope_theta: 1e4,
        rms_norm_eps: 1e-6,
        bos: 2,
        eos: 1,
        params: 2_506_172_416,
    },
];

fn uint(c: &Value, file: &str, key: &str) -> u64 {
    c[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: {key} missing or not an integer"))
}

fn float(c: &Value, file: &str, key: &str) -> f64 {
    c[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{file}: {key} missing or not a number"))
}

#[test]
fn configs_have_the_published_shapes() {
    for e in EXPECTED {
        let path = common::repo_root().join("configs").join(e.file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        let c: Value =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        let f = e.file;
        assert_eq!(c["model_type"], e.model_type, "{f}");
        assert!(
            c["architectures"][0]
                .as_str()
                .unwrap()
                .ends_with("ForCausalLM"),
            "{f}"
        );
        let keys = [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
        ];
        let mut dims: Vec<u64> = keys.iter().map(|k| uint(&c, f, k)).collect();
        // Without `head_dim`, transformers uses hidden_size / num_attention_heads.
        dims.push(c["head_dim"].as_u64().unwrap_or(dims[0] / dims[3]));
        dims.push(uint(&c, f, "vocab_size"));
        assert_eq!(dims, e.dims, "{f}");
        assert_eq!(
            uint(&c, f, "max_position_embeddings"),
            e.max_positions,
            "{f}"
        );
        assert_eq!(float(&c, f, "rope_theta"), e.rope_theta, "{f}");
        assert_eq!(float(&c, f, "rms_norm_eps"), e.rms_norm_eps, "{f}");
        assert_eq!(
            (uint(&c, f, "bos_token_id"), uint(&c, f, "eos_token_id")),
            (e.bos, e.eos),
            "{f}"
        );

        let [d, i, layers, heads, kv, hd, vocab] = e.dims;
        let mut attn = 2 * d * heads * hd + 2 * d * kv * hd;
        match e.model_type {
            "qwen2" => attn += (heads + 2 * kv) * hd, // q, k, v biases
            "qwen3" => attn += 2 * hd,                // q and k RMSNorm
            _ => {}
        }
        let per_layer = attn + 3 * d * i + 2 * d;
        // Gemma's file omits the field; GemmaConfig defaults it to true.
        let tied = c["tie_word_embeddings"]
            .as_bool()
            .unwrap_or(e.model_type == "gemma");
        let embeddings = if tied { vocab * d } else { 2 * vocab * d };
        assert_eq!(embeddings + layers * per_layer + d, e.params, "{f}");
    }
}

#[test]
fn rope_and_window_settings() {
    let read = |f: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(common::repo_root().join("configs").join(f)).unwrap(),
        )
        .unwrap()
    };
    let llama = read("llama-3.2-1b.json");
    let s = &llama["rope_scaling"];
    assert_eq!(s["rope_type"], "llama3");
    assert_eq!(
        (
            s["factor"].as_f64(),
            s["low_freq_factor"].as_f64(),
            s["high_freq_factor"].as_f64()
        ),
        (Some(32.0), Some(1.0), Some(4.0))
    );
    assert_eq!(s["original_max_position_embeddings"], 8192);
    assert_eq!(read("mistral-7b-v0.1.json")["sliding_window"], 4096);
    assert_eq!(read("phi-3-mini-4k.json")["sliding_window"], 2047);
    let qwen25 = read("qwen2.5-0.5b.json");
    // The window is recorded but off.
    assert_eq!(
        (&qwen25["sliding_window"], &qwen25["use_sliding_window"]),
        (&Value::from(32768), &Value::from(false))
    );
    for f in ["qwen3-0.6b.json", "phi-3-mini-4k.json", "gemma-2b.json"] {
        assert!(read(f)["rope_scaling"].is_null(), "{f}");
    }
}
