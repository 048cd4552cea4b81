//! Writing arrays in NumPy's `.npy` format (version 1.0), for `--logits-out`.

use std::io::Write;
use std::path::Path;

/// Writes `values` as a little-endian float32 array of `shape`.
pub fn write_f32(path: &Path, values: &[f32], shape: [usize; 2]) -> Result<(), String> {
    assert_eq!(values.len(), shape[0] * shape[1]);
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    // Magic, version, header length, then the header padded with spaces to a multiple of
    // 64 bytes and ended by a newline.
    let unpadded = 10 + dict.len() + 1;
    let header = format!(
        "{dict}{}\n",
        " ".repeat(unpadded.next_multiple_of(64) - unpadded)
    );
    let mut bytes = Vec::with_capacity(10 + header.len() + values.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}
