//! What the tokenizer targets share.

use synapse_inference::tokenizer::Tokenizer;

/// Writes `data` as the file `name` of a model folder of this process's own, loads the
/// folder's tokenizer as a model load does, and uses it.
pub fn load_tokenizer_file(name: &str, data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("synapse-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
    if let Ok(Some(tokenizer)) = Tokenizer::from_hf_dir(&dir) {
        exercise(
            &tokenizer,
            "Hello, world! 123 <s> élan 你好 \u{1F600}\n\tend",
        );
    }
}

/// Encodes `text` with and without special tokens, decodes the ids, and reads back every
/// id's bytes: the uses of a tokenizer that a loaded model makes.
pub fn exercise(tokenizer: &Tokenizer, text: &str) {
    for special in [false, true] {
        let ids = tokenizer.encode(text, special, special);
        let _ = tokenizer.decode(&ids);
        for &id in &ids {
            assert!(
                (id as usize) < tokenizer.vocab_size(),
                "id {id} outside the vocabulary"
            );
            let _ = tokenizer.token_bytes(id);
        }
    }
}
