//! Inputs sized to exhaust a loader or a session: a safetensors header of 100 MB, a
//! tokenizer.json with a million merges of garbage, and a prompt of 10^7 characters. Each ends, loaded or refused with a typed
//! error, in bounded time and with its peak memory bounded by its input's size. The peak
//! is the process's resident high-water mark (Linux resets it on request); the time
//! bounds only catch work that went quadratic, which would take hours.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use synapse_inference::hf::safetensors::SafetensorsFile;
use synapse_inference::tokenizer::Tokenizer;
use synapse_inference::{Error, Session, SessionOptions};

/// One test at a time, so that the peak is that test's own.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// What `f` returns, the resident memory it added at its peak, and its time.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    // Writing 5 to clear_refs resets the high-water mark (VmHWM) to the current size.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (out, status_bytes("VmHWM:").saturating_sub(before), elapsed)
}

#[test]
fn a_safetensors_header_over_100_mb_is_refused_before_it_is_read() {
    let _serial = serial();
    // The format's limit, plus one byte: a JSON object of spaces, which serde_json would
    // take a while to read.
    let len = 100_000_001usize;
    let mut bytes = (len as u64).to_le_bytes().to_vec();
    bytes.push(b'{');
    bytes.resize(8 + len - 1, b' ');
    bytes.push(b'}');
    let (result, peak, elapsed) =
        measured(|| SafetensorsFile::from_bytes("big.safetensors", bytes));
    match result {
        Err(e @ synapse_inference::hf::Error::HeaderTooLarge { .. }) => {
            eprintln!(
                "refused in {elapsed:.1?}, {} KB more at the peak: {e}",
                peak >> 10
            )
        }
        Err(e) => panic!("expected HeaderTooLarge, got {e}"),
        Ok(_) => panic!("a 100 MB header was read"),
    }
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // The file's own bytes are the caller's; nothing of the header's size is allocated.
    assert!(peak < 16 << 20, "{peak} bytes");
}

#[test]
fn a_million_garbage_merges_load_in_bounded_time_and_memory() {
    let _serial = serial();
    // A byte-level BPE tokenizer.json whose merges pair random strings that no vocabulary
    // entry spells.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut word = || {
        (0..8)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b'a' + (state % 26) as u8)
            })
            .collect::<String>()
    };
    let merges: Vec<String> = std::iter::once("\"a b\"".to_string())
        .chain((0..1_000_000).map(|_| format!("\"{} {}\"", word(), word())))
        .collect();
    let json = format!(
        r#"{{"model": {{"type": "BPE", "vocab": {{"a": 0, "b": 1, "ab": 2}}, "merges": [{}]}},
            "pre_tokenizer": {{"type": "ByteLevel", "add_prefix_space": false}},
            "decoder": {{"type": "ByteLevel"}}}}"#,
        merges.join(",")
    );
    drop(merges);
    let dir = std::env::temp_dir().join(format!("synapse-merges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), &json).unwrap();
    let (loaded, peak, elapsed) = measured(|| Tokenizer::from_hf_dir(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
    let tokenizer = loaded.expect("garbage merges load").expect("a tokenizer");
    // Unknown symbols are kept as merge intermediates (as llama.cpp keeps them); the one
    // real merge still applies.
    assert_eq!(tokenizer.encode("ab", false, false), [2]);
    eprintln!(
        "1M garbage merges ({} MB of JSON): loaded in {elapsed:.2?}, peak {} MB more",
        json.len() >> 20,
        peak >> 20
    );
    assert!(
        peak < 40 * json.len(),
        "peak {peak} bytes for {} bytes of JSON",
        json.len()
    );
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn a_ten_million_character_prompt_is_tokenized_then_refused_by_the_context() {
    let _serial = serial();
    let model = common::model();
    let tokenizer = model.tokenizer().unwrap();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(10_000_000 / 45 + 1);
    let (ids, peak, elapsed) = measured(|| tokenizer.encode(&text, true, false));
    eprintln!(
        "{} characters: {} tokens in {elapsed:.2?}, peak {} MB more",
        text.len(),
        ids.len(),
        peak >> 20
    );
    assert!(ids.len() > 2_000_000);
    // Linear in the text: the ids and the pre-tokenizer's pieces and character classes
    // (about 15 bytes per character measured), not a copy per token.
    assert!(
        peak < 24 * text.len(),
        "peak {peak} bytes for {} characters",
        text.len()
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");

    let opts = SessionOptions {
        context: 256,
        threads: 1,
        ..SessionOptions::default()
    }
    .resolve(&model);
    let mut session = Session::new(model.clone(), opts);
    let (result, _, elapsed) = measured(|| session.eval(&ids, false));
    match result {
        Err(e @ Error::ContextOverflow { .. }) => eprintln!("refused in {elapsed:.2?}: {e}"),
        other => panic!(
            "expected a context overflow, got {:?}",
            other.map(|l| l.len())
        ),
    }
    assert!(
        elapsed < Duration::from_secs(1),
        "the refusal took {elapsed:?}"
    );
    assert!(
        session.tokens().is_empty(),
        "a refused prompt leaves the session as it was"
    );
}
