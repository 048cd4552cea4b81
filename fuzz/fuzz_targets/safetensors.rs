//! A safetensors file from arbitrary bytes (its header and every tensor it lists), then
//! the same bytes as a sharded checkpoint's `model.safetensors.index.json` beside two
//! real shards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use synapse_inference::hf::safetensors::SafetensorsFile;
use synapse_inference::hf::Checkpoint;

/// A folder of this process's own with the fixture's two shards, where each input is
/// written as the index.
fn sharded_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let fixtures = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/safetensors/sharded"
        );
        let dir = std::env::temp_dir().join(format!("synapse-fuzz-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for shard in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        ] {
            std::fs::copy(format!("{fixtures}/{shard}"), dir.join(shard)).unwrap();
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = SafetensorsFile::from_bytes("fuzz.safetensors", data.to_vec()) {
        let names: Vec<String> = file.names().map(str::to_string).collect();
        for name in names {
            let _ = file.info(&name);
            let _ = file.tensor(&name);
        }
    }
    let dir = sharded_dir();
    std::fs::write(dir.join("model.safetensors.index.json"), data).unwrap();
    if let Ok(checkpoint) = Checkpoint::open(dir) {
        let names: Vec<String> = checkpoint.names().map(str::to_string).collect();
        for name in names {
            let _ = checkpoint.tensor(&name);
        }
    }
});
