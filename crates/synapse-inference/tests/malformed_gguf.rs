//! Corrupt and truncated model files give typed errors, never panics.

mod common;

use common::TestRng;
use synapse_core::gguf::{GgufErrorKind, GgufFile};
use synapse_core::Storage;
use synapse_inference::Model;

fn load(bytes: &[u8]) -> Result<Model, synapse_inference::Error> {
    let gguf = GgufFile::parse("corrupt.gguf".into(), Storage::from_vec(bytes.to_vec()))?;
    Model::from_gguf(gguf)
}

#[test]
fn truncated_model_files_are_rejected_with_an_error() {
    let bytes = std::fs::read(common::model_path()).expect("read model");
    let mut rng = TestRng(7);
    // 20 random cut points, plus the edges of the header.
    let mut cuts: Vec<usize> = (0..20)
        .map(|_| rng.below(bytes.len() as u64) as usize)
        .collect();
    cuts.extend([0, 3, 4, 8, 23, 24, bytes.len() - 1]);
    for cut in cuts {
        let err = load(&bytes[..cut])
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} loaded"));
        let message = err.to_string();
        assert!(
            message.starts_with("corrupt.gguf: "),
            "error names the file: {message}"
        );
    }
}

#[test]
fn flipped_header_and_tensor_info_bytes_never_panic() {
    let bytes = std::fs::read(common::model_path()).expect("read model");
    let data_offset = GgufFile::parse("m".into(), Storage::from_vec(bytes.clone()))
        .unwrap()
        .data_offset as usize;
    let header = &bytes[..data_offset];
    let mut rng = TestRng(11);
    let mut errors = 0;
    let trials = 300;
    for _ in 0..trials {
        let mut corrupt = header.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(corrupt.len() as u64) as usize;
            corrupt[at] ^= 1 << rng.below(8);
        }
        // Only the header region is needed to parse; no tensor data means loading fails later
        // with an out-of-bounds error at the latest, which is what we want to see, not a panic.
        if load(&corrupt).is_err() {
            errors += 1;
        }
    }
    assert_eq!(
        errors, trials,
        "a header without tensor data must never load"
    );
}

#[test]
fn header_fields_give_specific_errors() {
    let bytes = std::fs::read(common::model_path()).expect("read model");
    let kind = |b: Vec<u8>| {
        GgufFile::parse("f".into(), Storage::from_vec(b))
            .err()
            .expect("error")
            .kind
    };

    let mut bad_magic = bytes[..64].to_vec();
    bad_magic[0] = b'X';
    assert!(matches!(kind(bad_magic), GgufErrorKind::BadMagic(_)));

    let mut bad_version = bytes[..64].to_vec();
    bad_version[4] = 9;
    assert!(matches!(
        kind(bad_version),
        GgufErrorKind::UnsupportedVersion(9)
    ));

    let mut huge_count = bytes[..64].to_vec();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        kind(huge_count),
        GgufErrorKind::CountTooLarge { .. }
    ));

    // Cut inside the first key: the counts still fit, the key's bytes do not.
    let mut cut = bytes[..40].to_vec();
    cut[8..16].copy_from_slice(&0u64.to_le_bytes());
    cut[16..24].copy_from_slice(&1u64.to_le_bytes());
    assert!(matches!(kind(cut), GgufErrorKind::Truncated { .. }));
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let mut bytes = std::fs::read(common::model_path()).expect("read model");
    let at = bytes
        .windows(5)
        .position(|w| w == b"llama")
        .expect("architecture value");
    bytes[at..at + 5].copy_from_slice(b"zzzzz");
    let err = load(&bytes)
        .err()
        .expect("unknown architecture is an error")
        .to_string();
    assert!(
        err.contains("\"zzzzz\"")
            && ["llama", "qwen2", "qwen3", "phi3", "gemma", "gpt2"]
                .iter()
                .all(|arch| err.contains(arch)),
        "{err}"
    );
}
