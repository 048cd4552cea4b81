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
    /// Anonymous memory written once, when built (see [`Storage::build`]).
    #[cfg(feature = "native")]
    Built(memmap2::MmapMut),
}

impl Storage {
    pub fn from_vec(bytes: Vec<u8>) -> Arc<Storage> {
        Arc::new(Storage::Owned(AlignedBytes::from_vec(bytes)))
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

impl Storage {
    /// At least `len` bytes, zeroed, written once by `fill`, then read-only: weights
    /// rearranged at load. On Linux they sit on huge pages where the system allows it,
    /// which saves a TLB miss per 4 KiB page as a decode step streams every weight.
    pub fn build(len: usize, fill: impl FnOnce(&mut [u8])) -> Arc<Storage> {
        #[cfg(feature = "native")]
        {
            // Whole huge pages, so that the last one can be one too.
            const HUGE_PAGE: usize = 2 << 20;
            if let Ok(mut map) = memmap2::MmapMut::map_anon(len.next_multiple_of(HUGE_PAGE)) {
                // Without huge pages the memory works the same.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                fill(&mut map[..len]);
                return Arc::new(Storage::Built(map));
            }
        }
        let mut bytes = vec![0u8; len];
        fill(&mut bytes);
        Storage::from_vec(bytes)
    }

    /// Whether the bytes are a file's, mapped.
    pub fn is_file(&self) -> bool {
        #[cfg(feature = "native")]
        if let Storage::Mapped(_) = self {
            return true;
        }
        false
    }

    /// Tells the OS that bytes `range` will not be read again soon: pages mapped from a
    /// file leave the process's resident memory (a later read maps them in again from
    /// the file). Other bytes stay as they are.
    pub fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(all(feature = "native", unix))]
        if let Storage::Mapped(map) = self {
            const PAGE: usize = 4096;
            let (start, end) = (range.start.next_multiple_of(PAGE), range.end / PAGE * PAGE);
            if start < end {
                // SAFETY: the map is read-only and file-backed, so dropping its pages loses
                // nothing: later reads fault them in again from the file. A failure only
                // keeps the pages resident.
                let _ = unsafe {
                    map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(all(feature = "native", unix)))]
        let _ = (self, range);
    }
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Owned(b) => b,
            #[cfg(feature = "native")]
            Storage::Mapped(m) => m,
            #[cfg(feature = "native")]
            Storage::Built(m) => m,
        }
    }
}

/// A byte buffer whose start is 8-byte aligned.
pub enum AlignedBytes {
    /// A buffer that happened to start aligned, kept as it is (allocators align all but
    /// the smallest buffers).
    Bytes(Vec<u8>),
    /// `len` bytes copied into words.
    Words { words: Vec<u64>, len: usize },
}

/// The first `len` bytes of `words`, grown (with zeros) to hold them: a byte buffer that
/// starts 8-byte aligned, as block views of quantized data need (see
/// [`crate::quant::as_blocks`]), which a `Vec<u8>` does not promise.
pub fn word_bytes(words: &mut Vec<u64>, len: usize) -> &mut [u8] {
    if words.len() < len.div_ceil(8) {
        words.resize(len.div_ceil(8), 0);
    }
    // SAFETY: `words` holds at least `len` initialised bytes, and u8 has no alignment needs.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}

impl AlignedBytes {
    pub fn copy_from(bytes: &[u8]) -> AlignedBytes {
        let mut words = Vec::new();
        word_bytes(&mut words, bytes.len()).copy_from_slice(bytes);
        AlignedBytes::Words {
            words,
            len: bytes.len(),
        }
    }

    /// `bytes`, copied only if they do not start 8-byte aligned.
    pub fn from_vec(bytes: Vec<u8>) -> AlignedBytes {
        if (bytes.as_ptr() as usize).is_multiple_of(8) {
            AlignedBytes::Bytes(bytes)
        } else {
            AlignedBytes::copy_from(&bytes)
        }
    }
}

impl Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            AlignedBytes::Bytes(bytes) => bytes,
            // SAFETY: the first `len` bytes of `words` are initialised and owned by self.
            AlignedBytes::Words { words, len } => unsafe {
                std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), *len)
            },
        }
    }
}
