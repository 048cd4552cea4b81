//! The Hugging Face checkpoint reader: files written by hand here and by the Python
//! `safetensors` library (tools/reference/make_safetensors_fixture.py), sharded
//! checkpoints, config directories, and malformed or randomly mutated inputs, which must
//! give typed errors naming the file and tensor, never a panic.

mod common;

use common::{repo_root, TestRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use synapse_core::{DType, WeightTensor};
use synapse_inference::generation::sampler::GenerationConfig;
use synapse_inference::hf::{transposed, Checkpoint, Error, HfDir, SafetensorsFile};

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/safetensors")
}

/// A safetensors file from a raw header string and data bytes.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A valid file holding `tensors` (name, dtype, shape, bytes) back to back, with the
/// header padded so that the data starts `data_start % 8` bytes past an 8-byte boundary.
fn build(tensors: &[(&str, &str, &[u64], Vec<u8>)], data_start_mod_8: usize) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut text = Value::Object(header).to_string();
    while (8 + text.len()) % 8 != data_start_mod_8 {
        text.push(' ');
    }
    raw_file(&text, &data)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn u16_bytes(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn open_bytes(bytes: Vec<u8>) -> Result<SafetensorsFile, Error> {
    SafetensorsFile::from_bytes("test.safetensors", bytes)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A scratch directory for this test binary, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synapse-hf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the fixture file `name` to `to`.
fn copy_fixture(name: &str, to: &Path) {
    std::fs::copy(fixtures().join(name), to).unwrap();
}

/// Asserts that `result` failed with an error whose message names each of `parts`, and
/// returns the error.
fn error_naming<T>(result: Result<T, Error>, parts: &[&str]) -> Error {
    let Err(e) = result else {
        panic!("no error naming {parts:?}")
    };
    let msg = e.to_string();
    for part in parts {
        assert!(msg.contains(part), "{msg}");
    }
    e
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn hand_built_file_reads_every_dtype() {
    // f16 1, -2, 0.5, 65504; bf16 1, -2.5, 2^-126 (smallest normal), -0.
    let bytes = build(
        &[
            (
                "b.f32",
                "F32",
                &[2, 3],
                f32_bytes(&[1.0, -2.0, 0.25, 1e-30, 3e30, -0.0]),
            ),
            (
                "a.f16",
                "F16",
                &[4],
                u16_bytes(&[0x3C00, 0xC000, 0x3800, 0x7BFF]),
            ),
            (
                "c.bf16",
                "BF16",
                &[2, 2],
                u16_bytes(&[0x3F80, 0xC020, 0x0080, 0x8000]),
            ),
            ("d.scalar", "F32", &[], f32_bytes(&[7.5])),
            ("e.empty", "F16", &[0, 3], vec![]),
        ],
        0,
    );
    let file = open_bytes(bytes).unwrap();
    assert_eq!(
        file.names().collect::<Vec<_>>(),
        ["a.f16", "b.f32", "c.bf16", "d.scalar", "e.empty"]
    );
    let w = file.tensor("b.f32").unwrap();
    assert_eq!((w.dtype, w.rows, w.cols), (DType::F32, 2, 3));
    assert_eq!(
        bits(&w.to_f32()),
        bits(&[1.0, -2.0, 0.25, 1e-30, 3e30, -0.0])
    );
    let w = file.tensor("a.f16").unwrap();
    assert_eq!((w.dtype, w.rows, w.cols), (DType::F16, 1, 4));
    assert_eq!(w.to_f32(), [1.0, -2.0, 0.5, 65504.0]);
    let w = file.tensor("c.bf16").unwrap();
    assert_eq!((w.dtype, w.rows, w.cols), (DType::BF16, 2, 2));
    assert_eq!(
        bits(&w.to_f32()),
        bits(&[1.0, -2.5, f32::MIN_POSITIVE, -0.0])
    );
    assert_eq!(file.tensor("d.scalar").unwrap().to_f32(), [7.5]);
    let empty = file.tensor("e.empty").unwrap();
    assert_eq!((empty.rows, empty.cols, empty.bytes().len()), (0, 3, 0));
    let info = file.info("c.bf16").unwrap();
    assert_eq!((info.dtype, info.dtype_name), (Some(DType::BF16), "BF16"));
    assert_eq!(info.shape, [2, 2]);
    assert!(file.contains("a.f16") && !file.contains("a"));
}

#[test]
fn misaligned_data_is_copied_to_aligned_storage() {
    let values = [1.5f32, -3.25, 1e-3, 42.0, -0.5, 8.0];
    for start_mod in 0..8 {
        // A one-byte tensor first puts the next one at an odd offset.
        let bytes = build(
            &[
                ("a", "U8", &[1], vec![9]),
                ("b", "F32", &[2, 3], f32_bytes(&values)),
                ("c", "BF16", &[3], u16_bytes(&[0x3F80, 0x4000, 0xC040])),
            ],
            start_mod,
        );
        let file = open_bytes(bytes).unwrap();
        for (name, size, want) in [("b", 4, values.to_vec()), ("c", 2, vec![1.0, 2.0, -3.0])] {
            let w = file.tensor(name).unwrap();
            assert_eq!(
                w.bytes().as_ptr() as usize % size,
                0,
                "{name} at {start_mod}"
            );
            assert_eq!(w.to_f32(), want, "{name} at {start_mod}");
            // Aligned data is viewed in place (two views share bytes); the rest is copied.
            let in_place = file.info(name).unwrap().range.start.is_multiple_of(size);
            let again = file.tensor(name).unwrap();
            assert_eq!(
                w.bytes().as_ptr() == again.bytes().as_ptr(),
                in_place,
                "{name} at {start_mod}"
            );
        }
    }
}

fn expected() -> Value {
    common::fixture("safetensors/expected.json")
}

/// Every float tensor of rank <= 2 in `expected` reads back bit-exactly.
fn check_values(expected: &Value, tensor: impl Fn(&str) -> Result<WeightTensor, Error>) -> usize {
    let mut checked = 0;
    for (name, e) in expected.as_object().unwrap() {
        let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
        if e["dtype"] == "I64" || shape.len() > 2 {
            continue;
        }
        let w = tensor(name).unwrap();
        assert_eq!(w.dtype.name(), e["dtype"].as_str().unwrap(), "{name}");
        let (rows, cols) = match shape[..] {
            [n] => (1, n),
            [r, c] => (r, c),
            _ => unreachable!(),
        };
        assert_eq!((w.rows, w.cols), (rows, cols), "{name}");
        // Each number read as f64, then rounded to f32.
        let want: Vec<f32> = serde_json::from_value(e["values"].clone()).unwrap();
        assert_eq!(bits(&w.to_f32()), bits(&want), "{name}");
        checked += 1;
    }
    checked
}

#[test]
fn python_written_file_matches_torch_values() {
    let path = fixtures().join("small.safetensors");
    let file = SafetensorsFile::open(&path).unwrap();
    let expected = expected();
    let small = &expected["small.safetensors"];
    let mut names: Vec<&str> = small
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    names.sort();
    assert_eq!(file.names().collect::<Vec<_>>(), names);
    assert_eq!(check_values(small, |n| file.tensor(n)), 5);

    let path_text = path.display().to_string();
    match file.tensor("position_ids") {
        Err(Error::UnsupportedDType {
            path,
            tensor,
            dtype,
        }) => {
            assert_eq!(
                (path.as_str(), tensor.as_str(), dtype.as_str()),
                (path_text.as_str(), "position_ids", "I64")
            );
        }
        other => panic!("{other:?}"),
    }
    let info = file.info("conv3d").unwrap();
    assert_eq!(info.shape, [2, 3, 4]);
    let e = error_naming(file.tensor("conv3d"), &["small.safetensors", "conv3d"]);
    assert!(matches!(e, Error::UnsupportedRank { .. }), "{e:?}");
    assert!(
        matches!(file.tensor("nope"), Err(Error::MissingTensor { tensor, .. }) if tensor == "nope")
    );

    // The fixture directory holds exactly one *.safetensors file, so it is a checkpoint.
    let ckpt = Checkpoint::open(fixtures()).unwrap();
    assert_eq!(check_values(small, |n| ckpt.tensor(n)), 5);
}

#[test]
fn sharded_checkpoint_matches_torch_values() {
    let ckpt = Checkpoint::open(fixtures().join("sharded")).unwrap();
    let expected = expected();
    let sharded = &expected["sharded"];
    assert_eq!(check_values(sharded, |n| ckpt.tensor(n)), 4);
    assert_eq!(ckpt.names().count(), 4);
    assert!(ckpt.contains("lm_head.weight") && !ckpt.contains("model.embed_tokens"));
    assert_eq!(
        ckpt.info("model.norm.weight").unwrap().dtype,
        Some(DType::F16)
    );
    let e = error_naming(
        ckpt.tensor("model.layers.1.mlp.up_proj.weight"),
        &["model.safetensors.index.json", "layers.1"],
    );
    assert!(matches!(e, Error::MissingTensor { .. }), "{e:?}");
}

#[test]
fn model_safetensors_is_preferred_and_several_files_need_an_index() {
    let dir = scratch("pick");
    assert!(matches!(
        Checkpoint::open(&dir),
        Err(Error::NoWeights { found: 0, .. })
    ));
    copy_fixture("small.safetensors", &dir.join("a.safetensors"));
    copy_fixture(
        "sharded/model-00001-of-00002.safetensors",
        &dir.join("b.safetensors"),
    );
    assert!(matches!(
        Checkpoint::open(&dir),
        Err(Error::NoWeights { found: 2, .. })
    ));
    copy_fixture(
        "sharded/model-00002-of-00002.safetensors",
        &dir.join("model.safetensors"),
    );
    let ckpt = Checkpoint::open(&dir).unwrap();
    assert_eq!(
        ckpt.names().collect::<Vec<_>>(),
        ["lm_head.weight", "model.layers.0.mlp.up_proj.weight"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_shards_and_indexes_name_the_file() {
    let dir = scratch("shards");
    copy_dir(&fixtures().join("sharded"), &dir);
    let index_path = dir.join("model.safetensors.index.json");
    let index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let write_index = |v: &Value| std::fs::write(&index_path, v.to_string()).unwrap();

    // A tensor mapped to the wrong shard.
    let mut wrong = index.clone();
    wrong["weight_map"]["lm_head.weight"] = json!("model-00001-of-00002.safetensors");
    write_index(&wrong);
    match Checkpoint::open(&dir) {
        Err(Error::MissingTensor { path, tensor }) => {
            assert!(path.ends_with("model-00001-of-00002.safetensors"), "{path}");
            assert_eq!(tensor, "lm_head.weight");
        }
        other => panic!("{:?}", other.err()),
    }
    for (bad, field) in [
        (json!({"metadata": {}}), "weight_map"),
        (json!({"weight_map": {"x": 3}}), "weight_map.x"),
        (
            json!({"weight_map": {"x": "../model-00001-of-00002.safetensors"}}),
            "weight_map.x",
        ),
    ] {
        write_index(&bad);
        match Checkpoint::open(&dir) {
            Err(Error::BadField { path, field: f, .. }) => {
                assert!(path.ends_with("model.safetensors.index.json"));
                assert_eq!(f, field);
            }
            other => panic!("{:?}", other.err()),
        }
    }
    std::fs::write(&index_path, "{\"weight_map\": {").unwrap();
    assert!(
        matches!(Checkpoint::open(&dir), Err(Error::BadJson { path, .. }) if path.ends_with("index.json"))
    );

    write_index(&index);
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
    let e = error_naming(
        Checkpoint::open(&dir),
        &["model-00002-of-00002.safetensors", "lm_head.weight"],
    );
    assert!(matches!(e, Error::MissingShard { .. }), "{e:?}");
    // A truncated shard gives the shard's own error.
    let shard = dir.join("model-00001-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        &bytes[..bytes.len() - 1],
    )
    .unwrap();
    match Checkpoint::open(&dir) {
        Err(Error::OutOfBounds { path, .. }) => {
            assert!(path.ends_with("model-00002-of-00002.safetensors"))
        }
        other => panic!("{:?}", other.err()),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn duplicate_tensors_across_files_are_rejected() {
    let a = open_bytes(build(&[("x", "F32", &[1], f32_bytes(&[1.0]))], 0)).unwrap();
    let b = SafetensorsFile::from_bytes(
        "b.safetensors",
        build(&[("x", "F32", &[1], f32_bytes(&[2.0]))], 0),
    )
    .unwrap();
    match Checkpoint::from_files("mem", vec![a, b]) {
        Err(Error::DuplicateTensor {
            tensor,
            first,
            second,
            ..
        }) => {
            assert_eq!(
                (tensor.as_str(), first.as_str(), second.as_str()),
                ("x", "test.safetensors", "b.safetensors")
            );
        }
        other => panic!("{:?}", other.err()),
    }
}

/// An empty tensor (a zero dimension) spans no bytes whatever its other dimensions: one
/// with a dimension larger than the file could hold is refused, a sensible one reads as an
/// empty weight. (The GGUF reader had this bug, found by fuzzing; safetensors had it too.)
#[test]
fn an_empty_tensor_with_a_2_pow_62_dimension_is_refused() {
    for shape in [[0, 1 << 62], [1 << 62, 0]] {
        let file = build(&[("huge", "F32", &shape, vec![])], 0);
        error_naming(open_bytes(file), &["huge", "too large"]);
    }
    let file = open_bytes(build(&[("empty", "F32", &[0, 64], vec![])], 0)).unwrap();
    let empty = file.tensor("empty").expect("an empty tensor");
    assert_eq!((empty.rows, empty.cols, empty.bytes().len()), (0, 64, 0));
}

#[test]
fn truncation_anywhere_is_an_error() {
    let bytes = std::fs::read(fixtures().join("small.safetensors")).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for len in 0..bytes.len() {
        match open_bytes(bytes[..len].to_vec()) {
            Err(Error::Truncated { .. }) => assert!(len < 8),
            Err(Error::HeaderOutOfBounds { .. }) => assert!((8..header_end).contains(&len)),
            // The data section is fully used, so any cut leaves a tensor outside it.
            Err(Error::OutOfBounds { path, .. }) => {
                assert!(len >= header_end);
                assert_eq!(path, "test.safetensors");
            }
            other => panic!("{len}: {:?}", other.err()),
        }
    }
    assert!(open_bytes(bytes).is_ok());
}

#[test]
fn malformed_headers_give_typed_errors() {
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let entry = |e: &str| format!("{{\"w\":{e}}}");
    // A tensor entry from its fields' JSON text.
    let tensor = |dtype: &str, shape: &str, offsets: &str| {
        entry(&format!(
            r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}"#
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "BadJson"),
        ("[1,2]".into(), "BadJson"),
        ("{\"w\":".into(), "BadJson"),
        (entry("3"), "BadTensor"),
        (entry(r#"{"shape":[4],"data_offsets":[0,16]}"#), "BadTensor"),
        (tensor("F32", "[-4]", "[0,16]"), "BadTensor"),
        (tensor("F32", "[4]", "[0,8,16]"), "BadTensor"),
        (tensor("F32", "[4]", "[0]"), "BadTensor"),
        (tensor("F32", "[4.5]", "[0,16]"), "BadTensor"),
        (
            tensor("F32", "[4294967296,4294967296,4294967296]", "[0,16]"),
            "BadTensor",
        ),
        (tensor("F32", "[4]", "[0,17]"), "OutOfBounds"),
        (tensor("F32", "[4]", "[8,4]"), "OutOfBounds"),
        (
            tensor("F32", "[4]", "[0,18446744073709551615]"),
            "OutOfBounds",
        ),
        (tensor("F32", "[3]", "[0,16]"), "SizeMismatch"),
        (tensor("F16", "[2,2]", "[0,16]"), "SizeMismatch"),
        (tensor("F4", "[3]", "[0,2]"), "SizeMismatch"),
        (tensor("Q4_0", "[4]", "[0,16]"), "UnsupportedDType"),
        (tensor("f32", "[4]", "[0,16]"), "UnsupportedDType"),
    ];
    for (header, want) in &cases {
        let err = open_bytes(raw_file(header, &data))
            .err()
            .unwrap_or_else(|| panic!("{header} opened"));
        let got = format!("{err:?}");
        assert!(got.starts_with(want), "{header}: {got}");
        let msg = err.to_string();
        assert!(msg.starts_with("test.safetensors: "), "{msg}");
        if header.contains("\"w\":{") || header.contains("\"w\":3") {
            assert!(msg.contains("\"w\""), "{header}: {msg}");
        }
    }
    // Header length beyond the file, including lengths that would overflow.
    for len in [17u64, 1 << 40, u64::MAX] {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}      ");
        assert!(
            matches!(open_bytes(bytes), Err(Error::HeaderOutOfBounds { header_len, .. }) if header_len == len)
        );
    }
    // A header over the format's 100 MB limit: tests/resource_bounds.rs.
    // Types the format defines but Synapse does not compute in load, and fail per tensor.
    let file = open_bytes(raw_file(
        r#"{"i":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}"#,
        &data,
    ))
    .unwrap();
    for (name, dtype) in [("i", "I8"), ("d", "F64")] {
        let msg = file.tensor(name).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("{name:?}")) && msg.contains(dtype),
            "{msg}"
        );
    }
    // An empty header is a valid file without tensors.
    assert_eq!(open_bytes(raw_file("{}", &[])).unwrap().names().count(), 0);
}

/// A random JSON value of a kind that often appears in headers.
fn junk(rng: &mut TestRng) -> Value {
    match rng.below(9) {
        0 => json!(rng.next_u64()),
        1 => json!(rng.below(40)),
        2 => json!(-(rng.below(5) as i64) - 1),
        3 => json!(
            ["F32", "F16", "BF16", "I64", "F4", "F6_E2M3", "BOOL", "X"][rng.below(8) as usize]
        ),
        4 => json!([rng.below(20), rng.below(20)]),
        5 => json!([rng.below(64), rng.below(64), rng.below(64)]),
        6 => json!(null),
        7 => json!({}),
        _ => json!(1.5),
    }
}

#[test]
fn mutated_headers_never_panic() {
    let base = build(
        &[
            ("a", "F32", &[2, 3], f32_bytes(&[1.0; 6])),
            ("b", "F16", &[5], u16_bytes(&[0x3C00; 5])),
            ("c", "BF16", &[1, 3], u16_bytes(&[0x3F80; 3])),
            ("d", "U8", &[3], vec![1, 2, 3]),
        ],
        0,
    );
    let header_len = u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&base[8..8 + header_len]).unwrap();
    let data = base[8 + header_len..].to_vec();
    let mut rng = TestRng(11);
    let (mut opened, mut rejected, mut tensors) = (0, 0, 0);
    for trial in 0..4000 {
        let bytes = if trial % 2 == 0 {
            // Structured: reshape, retype or replace fields with junk; many stay valid.
            let mut h = header.clone();
            for _ in 0..1 + rng.below(2) {
                let name = ["a", "b", "c", "d", "__metadata__"][rng.below(5) as usize];
                let Some(entry) = h[name].as_object_mut() else {
                    continue;
                };
                match rng.below(6) {
                    0 => {
                        let mut shape = entry
                            .get("shape")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        shape.reverse();
                        entry.insert("shape".into(), shape.into());
                    }
                    1 => {
                        let n = entry.get("shape").and_then(Value::as_array).map_or(0, |s| {
                            s.iter().map(|d| d.as_u64().unwrap_or(0)).product::<u64>()
                        });
                        entry.insert("shape".into(), json!([n]));
                    }
                    2 => {
                        let dtype = ["F32", "F16", "BF16", "I16", "U8"][rng.below(5) as usize];
                        entry.insert("dtype".into(), json!(dtype));
                    }
                    3 => {
                        h[name] = junk(&mut rng);
                    }
                    _ => {
                        let field = ["dtype", "shape", "data_offsets"][rng.below(3) as usize];
                        entry.insert(field.to_string(), junk(&mut rng));
                    }
                }
            }
            let mut d = data.clone();
            if rng.below(4) == 0 {
                d.truncate(d.len() - rng.below(4) as usize);
            }
            raw_file(&h.to_string(), &d)
        } else {
            // Byte-level: flip header bytes or the length field.
            let mut b = base.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(8 + header_len as u64) as usize;
                b[at] = if rng.below(2) == 0 {
                    rng.next_u64() as u8
                } else {
                    b"0123456789[]{},:\""[rng.below(17) as usize]
                };
            }
            b
        };
        match open_bytes(bytes) {
            Ok(file) => {
                opened += 1;
                let names: Vec<String> = file.names().map(String::from).collect();
                for name in names {
                    if let Ok(w) = file.tensor(&name) {
                        assert_eq!(w.to_f32().len(), w.rows * w.cols);
                        tensors += 1;
                    }
                }
            }
            Err(e) => {
                assert!(e.to_string().starts_with("test.safetensors: "), "{e}");
                rejected += 1;
            }
        }
    }
    println!("{opened} mutated files opened ({tensors} tensors read), {rejected} rejected");
    assert!(
        opened > 100 && rejected > 1000,
        "{opened} opened, {rejected} rejected"
    );
}

#[test]
fn transposed_swaps_rows_and_columns() {
    let file = SafetensorsFile::open(fixtures().join("small.safetensors")).unwrap();
    for name in ["w_f32", "w_f16", "w_bf16", "norm"] {
        let w = file.tensor(name).unwrap();
        let t = transposed(&w);
        assert_eq!(
            (t.name.as_str(), t.dtype, t.rows, t.cols),
            (name, w.dtype, w.cols, w.rows)
        );
        let (a, b) = (w.to_f32(), t.to_f32());
        for r in 0..w.rows {
            for c in 0..w.cols {
                assert_eq!(
                    a[r * w.cols + c].to_bits(),
                    b[c * w.rows + r].to_bits(),
                    "{name} [{r},{c}]"
                );
            }
        }
        assert_eq!(bits(&transposed(&t).to_f32()), bits(&a));
    }
    // Sizes that are not multiples of the tile.
    let (rows, cols) = (70, 45);
    let values: Vec<u16> = (0..rows * cols).map(|i| 0x3C00 + i as u16).collect();
    let file = open_bytes(build(
        &[("m", "F16", &[rows as u64, cols as u64], u16_bytes(&values))],
        0,
    ))
    .unwrap();
    let w = file.tensor("m").unwrap();
    let t = transposed(&w);
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(t.row(c)[2 * r..2 * r + 2], w.row(r)[2 * c..2 * c + 2]);
        }
    }
}

#[test]
fn hf_dir_reads_config_and_generation_config() {
    let dir = scratch("hfdir");
    match HfDir::open(&dir) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("config.json"), "{e}"),
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 8,").unwrap();
    match HfDir::open(&dir) {
        Err(Error::BadJson { path, .. }) => assert!(path.ends_with("config.json")),
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.join("config.json"), "[1]").unwrap();
    assert!(matches!(HfDir::open(&dir), Err(Error::BadJson { .. })));

    // Without generation_config.json the ids come from config.json.
    std::fs::write(
        dir.join("config.json"),
        r#"{"hidden_size": 8, "bos_token_id": 1, "eos_token_id": 2}"#,
    )
    .unwrap();
    let hf = HfDir::open(&dir).unwrap();
    assert_eq!(hf.config["hidden_size"], 8);
    assert_eq!(
        hf.generation,
        GenerationConfig {
            eos_token_ids: vec![2],
            bos_token_id: Some(1),
            ..Default::default()
        }
    );

    // Qwen3-0.6B's generation_config.json.
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
            "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
            "transformers_version": "4.51.0"}"#,
    )
    .unwrap();
    let hf = HfDir::open(&dir).unwrap();
    assert_eq!(
        hf.generation,
        GenerationConfig {
            eos_token_ids: vec![151645, 151643],
            bos_token_id: Some(151643),
            do_sample: Some(true),
            temperature: Some(0.6),
            top_k: Some(20),
            top_p: Some(0.95),
            repetition_penalty: None,
        }
    );
    for (bad, field) in [
        (r#"{"eos_token_id": [1, "x"]}"#, "eos_token_id"),
        (r#"{"eos_token_id": -1}"#, "eos_token_id"),
        (r#"{"bos_token_id": 4294967296}"#, "bos_token_id"),
        (r#"{"temperature": "hot"}"#, "temperature"),
        (r#"{"top_k": 2.5}"#, "top_k"),
        (r#"{"do_sample": 1}"#, "do_sample"),
    ] {
        std::fs::write(dir.join("generation_config.json"), bad).unwrap();
        match HfDir::open(&dir) {
            Err(Error::BadField { path, field: f, .. }) => {
                assert!(path.ends_with("generation_config.json"));
                assert_eq!(f, field);
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": 7, "temperature": null, "repetition_penalty": 1.1}"#,
    )
    .unwrap();
    let hf = HfDir::open(&dir).unwrap();
    assert_eq!(hf.generation.eos_token_ids, [7]);
    assert_eq!(
        (hf.generation.temperature, hf.generation.repetition_penalty),
        (None, Some(1.1))
    );

    copy_fixture("small.safetensors", &dir.join("model.safetensors"));
    assert!(hf.checkpoint().unwrap().contains("w_bf16"));
    std::fs::remove_dir_all(&dir).unwrap();
}
