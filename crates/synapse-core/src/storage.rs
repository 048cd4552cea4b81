//! The bytes of a model file: a read-only memory map on native targets, an owned
//! buffer elsewhere (WASM) or for data built in memory.

use std::ops::Deref;
use std::sync::Arc;

/// Bytes that weights borrow from. Both variants start 8-byte aligned, so block structs
/// at GGUF's aligned offsets can be viewed in place.
pub enum Storage {
    Owned(AlignedBytes),
    #[cfg(feature = "native")]
    Mapped(memmap2::Mmap),
}

impl Storage {
    pub fn from_vec(bytes: Vec<u8>) -> Arc<Storage> {
        Arc::new(Storage::Owned(AlignedBytes::copy_from(&bytes)))
    }

    /// Maps `file` read-only. The caller must not let the file be truncated while mapped.
    #[cfg(feature = "native")]
    pub fn map(file: &std::fs::File) -> std::io::Result<Arc<Storage>> {
        // SAFETY: the map is read-only; a model file changed underneath a running engine is
        // outside what the engine can defend against (as for every mmap-based loader).
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Arc::new(Storage::Mapped(map)))
    }
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Owned(b) => b,
            #[cfg(feature = "native")]
            Storage::Mapped(m) => m,
        }
    }
}

/// A byte buffer whose start is 8-byte aligned.
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    pub fn copy_from(bytes: &[u8]) -> AlignedBytes {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // SAFETY: `words` holds at least `bytes.len()` bytes and u8 has no alignment needs.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        dst.copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }
}

impl Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of `words` are initialised and owned by self.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}
