//! The tokenizer against llama.cpp: its own conformance vocabularies
//! (models/ggml-vocab-NAME.gguf with .inp/.out, read as tests/test-tokenizer-0.cpp does)
//! and token ids that llama.cpp gave for SmolLM2 prompts
//! (tests/fixtures/smollm2-q4_1/llamacpp.json, made by tools/reference/make_llamacpp_fixtures.py).

mod common;

use synapse_core::gguf::GgufFile;
use synapse_inference::tokenizer::Tokenizer;

fn ids(line: &str) -> Vec<u32> {
    line.split_whitespace()
        .map(|t| t.parse().expect("token id"))
        .collect()
}

fn check_vocab(name: &str) {
    let Some(path) = common::llama_vocab(name) else {
        return;
    };
    let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
    let read = |ext: &str| {
        let file = format!("{}.{ext}", path.display());
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let inputs = read("inp");
    let outputs = read("out");
    // The file ends with the separator: the last piece is the empty text, which expects
    // no tokens (llama.cpp's reader drops it; it has no line in .out).
    let cases: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let expected: Vec<Vec<u32>> = outputs.lines().map(ids).collect();
    assert!(
        cases.len() == expected.len()
            || (cases.len() == expected.len() + 1 && cases.last() == Some(&"")),
        "{name}: {} texts but {} expected lines",
        cases.len(),
        expected.len()
    );

    let mut failures = Vec::new();
    for (i, text) in cases.iter().enumerate() {
        let want = expected.get(i).cloned().unwrap_or_default();
        let got = tok.encode(text, false, false);
        // Decoding gives the text back (llama.cpp's test checks the same).
        let decoded = tok.decode(&got);
        if got != want || decoded != *text {
            failures.push(format!(
                "case {i} {text:?}\n  expected {want:?}\n  got      {got:?}\n  decoded  {decoded:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{name}: {} cases match", cases.len());
}

#[test]
fn llama_bpe() {
    check_vocab("llama-bpe");
}

#[test]
fn qwen2() {
    check_vocab("qwen2");
}

#[test]
fn qwen35() {
    check_vocab("qwen35");
}

#[test]
fn gpt2() {
    check_vocab("gpt-2");
}

#[test]
fn llama_spm() {
    check_vocab("llama-spm");
}

#[test]
fn phi3() {
    check_vocab("phi-3");
}

#[test]
fn gemma4() {
    check_vocab("gemma-4");
}

#[test]
fn smollm2_prompts_match_llama_cpp() {
    let fixture = common::fixture("smollm2-q4_1/llamacpp.json");
    let gguf = GgufFile::open(common::model_path()).unwrap_or_else(|e| panic!("{e}"));
    let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{e}"));
    let add_bos = fixture["settings"]["add_bos"]
        .as_bool()
        .expect("settings.add_bos");
    let prompts = fixture["prompts"].as_array().expect("prompts");
    for prompt in prompts {
        let text = prompt["text"].as_str().expect("text");
        assert_eq!(
            tok.encode(text, add_bos, true),
            common::ids(&prompt["prompt_ids"]),
            "{text:?}"
        );
        assert_eq!(
            tok.encode(text, add_bos, false),
            common::ids(&prompt["prompt_ids_no_special"]),
            "{text:?}"
        );
    }
    eprintln!("smollm2: {} prompts match", prompts.len());
}

/// Special-token text in SentencePiece vocabularies, with the ids llama.cpp gave
/// (llama-cpp-python 0.3.36, `tokenize(text, add_bos, special=True)`). Phi-3's special
/// tokens swallow the whitespace after them; a ▁ goes before every stretch of text.
#[test]
fn spm_special_tokens_match_llama_cpp() {
    let cases: [(&str, &str, bool, &[u32]); 6] = [
        ("phi-3", "a <|user|>  b", false, &[263, 29871, 32010, 289]),
        (
            "phi-3",
            "x<|endoftext|> y",
            false,
            &[921, 32000, 29871, 343],
        ),
        (
            "phi-3",
            "<|user|>\nHello<|end|>\n<|assistant|>",
            false,
            &[32010, 15043, 32007, 32001],
        ),
        (
            "phi-3",
            "a\u{a0}<|end|>\u{a0} b",
            false,
            &[263, 30081, 32007, 20246, 289],
        ),
        (
            "llama-spm",
            "<s>\nHello</s> x",
            true,
            &[1, 1, 29871, 13, 10994, 2, 29871, 921],
        ),
        ("llama-spm", " Hello", true, &[1, 29871, 15043]),
    ];
    for (name, text, add_bos, want) in cases {
        let Some(path) = common::llama_vocab(name) else {
            return;
        };
        let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(tok.encode(text, add_bos, true), want, "{name} {text:?}");
    }
}

/// SentencePiece vocabularies give arbitrary text back (spaces, bytes, the leading ▁).
#[test]
fn spm_round_trips_arbitrary_text() {
    let alphabet: Vec<char> =
        "aZ09 \t\n\r'.,!?-_()[]{}éüß漢字ひらがな😀👍🏽\u{200d}\u{0301}\u{00a0}\u{3000}#$%^&*\"\\/<>|"
            .chars()
            .collect();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut below = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for name in ["llama-spm", "phi-3"] {
        let Some(path) = common::llama_vocab(name) else {
            return;
        };
        let gguf = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
        let tok = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        for _ in 0..1000 {
            let len = below(30);
            let text: String = (0..len).map(|_| alphabet[below(alphabet.len())]).collect();
            let ids = tok.encode(&text, false, false);
            assert_eq!(tok.decode(&ids), text, "{name}: ids {ids:?}");
        }
    }
}
