//! Randomised inputs for the parsers: mutated GGUF vocabularies must load or fail with an
//! error (never panic), and byte-level BPE must round-trip arbitrary text.

mod common;

use common::TestRng;
use synapse_core::gguf::GgufFile;
use synapse_core::Storage;
use synapse_inference::tokenizer::Tokenizer;

fn vocab(name: &str) -> Option<Vec<u8>> {
    let path = common::llama_vocab(name)?;
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn mutated_vocabularies_never_panic() {
    mutate_vocabulary("llama-bpe");
}

#[test]
fn mutated_sentencepiece_vocabularies_never_panic() {
    mutate_vocabulary("llama-spm");
}

fn mutate_vocabulary(name: &str) {
    let Some(bytes) = vocab(name) else {
        return;
    };
    let mut rng = TestRng(3);
    let (mut loaded, mut rejected) = (0, 0);
    for trial in 0..200 {
        let mut corrupt = bytes.clone();
        if trial % 4 == 0 {
            corrupt.truncate(rng.below(bytes.len() as u64) as usize);
        }
        // Most flips land in the token strings; bias some toward the header and counts.
        for _ in 0..1 + rng.below(8) {
            let region = if rng.below(2) == 0 {
                4096.min(corrupt.len())
            } else {
                corrupt.len()
            };
            if region == 0 {
                break;
            }
            let at = rng.below(region as u64) as usize;
            corrupt[at] = rng.next_u64() as u8;
        }
        let parsed = GgufFile::parse("fuzz.gguf".into(), Storage::from_vec(corrupt));
        match parsed
            .map_err(|e| e.to_string())
            .and_then(|g| Tokenizer::from_gguf(&g).map_err(|e| e.to_string()))
        {
            Ok(tok) => {
                loaded += 1;
                // A vocabulary that loads must also tokenize without panicking.
                let ids = tok.encode("Hello <|begin_of_text|> <s> world 123 ☃", true, true);
                let _ = tok.decode(&ids);
            }
            Err(_) => rejected += 1,
        }
    }
    println!("{name}: {loaded} mutated vocabularies loaded, {rejected} rejected with an error");
    assert!(rejected > 0);
}

#[test]
fn byte_level_bpe_round_trips_arbitrary_text() {
    let Some(bytes) = vocab("llama-bpe") else {
        return;
    };
    let gguf = GgufFile::parse("llama-bpe".into(), Storage::from_vec(bytes)).unwrap();
    let tok = Tokenizer::from_gguf(&gguf).unwrap();
    let alphabet: Vec<char> =
        "aZ09 \t\n\r'.,!?-_()[]{}éüß漢字ひらがな😀👍🏽\u{200d}\u{0301}\u{00a0}\u{3000}#$%^&*\"\\/"
            .chars()
            .collect();
    let mut rng = TestRng(5);
    for _ in 0..2000 {
        let len = rng.below(40) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let ids = tok.encode(&text, false, false);
        assert_eq!(tok.decode(&ids), text, "ids {ids:?}");
    }
}
