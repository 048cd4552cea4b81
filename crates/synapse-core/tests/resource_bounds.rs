//! GGUF files whose fields claim more than they hold (a 2^60-element tensor, a 10 GB
//! string, 10^10 array items, 10^9 tensors), put tensor data outside the file or on top of
//! other tensors, or really hold a million entries: each is parsed, or refused with a
//! typed error, in bounded time and without allocating from an unchecked field. Memory is
//! counted by this test binary's allocator; the time bounds (a second for a refused header,
//! ten for a million entries in a debug build) only catch a parse that hangs or goes
//! quadratic, which would take hours.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use synapse_core::gguf::{GgufErrorKind, GgufFile};
use synapse_core::Storage;

/// The system allocator, counting the bytes live and their peak (which [`parse`] resets).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counters only watch.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One test at a time, so that the peak is that test's own.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Parses `bytes`, returning the result, the bytes allocated at the peak beyond those live
/// before, and the time taken.
fn parse(bytes: Vec<u8>) -> (Result<GgufFile, GgufErrorKind>, usize, Duration) {
    let storage = Storage::from_vec(bytes);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let start = Instant::now();
    let result = GgufFile::parse("bounds.gguf".into(), storage).map_err(|e| e.kind);
    let elapsed = start.elapsed();
    (result, PEAK.load(Ordering::Relaxed) - before, elapsed)
}

/// A GGUF v3 file written field by field, so that fields can lie.
struct Gguf(Vec<u8>);

impl Gguf {
    fn new(n_tensors: u64, n_kv: u64) -> Gguf {
        let mut g = Gguf(b"GGUF".to_vec());
        g.u32(3).u64(n_tensors).u64(n_kv);
        g
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A tensor's entry: F32 (type 0) of `dims`, its data at `offset`.
    fn tensor(&mut self, name: &str, dims: &[u64], offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(0).u64(offset)
    }
    /// Pads to the default alignment and appends `data_bytes` zeros of tensor data.
    fn data(mut self, data_bytes: usize) -> Vec<u8> {
        let padded = self.0.len().next_multiple_of(32);
        self.0.resize(padded + data_bytes, 0);
        self.0
    }
}

const SECOND: Duration = Duration::from_secs(1);
/// Allocation allowed to a refused header: its own small structures, nothing sized from
/// the lying field.
const SMALL: usize = 64 << 10;

/// The error a header that lies gets, after checking that it came within a second and
/// [`SMALL`] bytes of allocation.
fn refused(bytes: Vec<u8>) -> GgufErrorKind {
    let (result, peak, elapsed) = parse(bytes);
    assert!(
        peak < SMALL && elapsed < SECOND,
        "{peak} bytes, {elapsed:?}"
    );
    let kind = result.err().expect("refused");
    // The figures the closing notes quote (cargo test -- --nocapture).
    eprintln!("refused in {elapsed:.1?}, {peak} bytes at the peak: {kind}");
    kind
}

#[test]
fn a_tensor_claiming_2_pow_60_elements_is_refused() {
    let _serial = serial();
    let mut g = Gguf::new(1, 0);
    g.tensor("huge", &[1 << 30, 1 << 30], 0);
    let kind = refused(g.data(64));
    assert!(
        matches!(&kind, GgufErrorKind::BadTensor { tensor, reason }
            if tensor == "huge" && reason.contains("larger than the file")),
        "{kind:?}"
    );
}

/// Found by the gguf_model fuzz target: a tensor with no elements (a zero dimension) but a
/// row of 2^62 values passed the element count, then overflowed its row size when the
/// tensor was read.
#[test]
fn an_empty_tensor_with_a_2_pow_62_value_row_is_refused() {
    let _serial = serial();
    let mut g = Gguf::new(1, 0);
    g.tensor("empty", &[1 << 62, 0], 0);
    let kind = refused(g.data(0));
    assert!(
        matches!(&kind, GgufErrorKind::BadTensor { tensor, reason }
            if tensor == "empty" && reason.contains("larger than the file")),
        "{kind:?}"
    );
    // An empty tensor of a sensible shape still reads, as an empty weight.
    let mut g = Gguf::new(1, 0);
    g.tensor("empty", &[64, 0], 0);
    let file = parse(g.data(0)).0.expect("an empty tensor is valid");
    let tensor = file.tensor("empty").expect("empty tensor");
    assert_eq!((tensor.rows, tensor.cols, tensor.bytes().len()), (0, 64, 0));
}

#[test]
fn a_10_gb_string_and_a_10_billion_item_array_are_refused() {
    let _serial = serial();
    let mut g = Gguf::new(0, 1);
    g.str("general.name").u32(8).u64(10 << 30);
    let kind = refused(g.data(0));
    assert!(
        matches!(&kind, GgufErrorKind::Truncated { field, .. } if field.contains("general.name")),
        "{kind:?}"
    );

    let mut g = Gguf::new(0, 1);
    g.str("tokenizer.ggml.scores")
        .u32(9)
        .u32(0)
        .u64(10_000_000_000);
    let kind = refused(g.data(0));
    assert!(
        matches!(
            kind,
            GgufErrorKind::CountTooLarge {
                count: 10_000_000_000,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn a_billion_tensors_are_refused() {
    let _serial = serial();
    let kind = refused(Gguf::new(1_000_000_000, 0).data(0));
    assert!(
        matches!(
            kind,
            GgufErrorKind::CountTooLarge {
                count: 1_000_000_000,
                ..
            }
        ),
        "{kind:?}"
    );
}

#[test]
fn tensor_data_outside_the_file_or_overlapping_is_refused() {
    let _serial = serial();
    let mut g = Gguf::new(1, 0);
    g.tensor("past_the_end", &[64], 32);
    let kind = refused(g.data(64 * 4));
    assert!(
        matches!(&kind, GgufErrorKind::TensorOutOfBounds { tensor, .. } if tensor == "past_the_end"),
        "{kind:?}"
    );

    let mut g = Gguf::new(2, 0);
    g.tensor("a", &[64], 0).tensor("b", &[64], 128);
    let kind = refused(g.data(128 + 64 * 4));
    assert!(
        matches!(&kind, GgufErrorKind::OverlappingTensors { first, second }
            if first == "a" && second == "b"),
        "{kind:?}"
    );

    // Laid end to end, as llama.cpp writes them, the same two parse.
    let mut g = Gguf::new(2, 0);
    g.tensor("a", &[64], 0).tensor("b", &[64], 256);
    assert!(parse(g.data(512)).0.is_ok());
}

#[test]
fn a_million_entries_parse_in_linear_time() {
    let _serial = serial();
    const N: u64 = 1_000_000;
    let mut g = Gguf::new(0, N);
    for i in 0..N {
        g.str(&format!("k{i}")).u32(0);
        g.0.push(1);
    }
    let file_len = g.0.len();
    let (result, peak, elapsed) = parse(g.data(0));
    assert_eq!(result.expect("parses").metadata.len(), N as usize);
    eprintln!("{N} entries ({file_len} bytes) parsed in {elapsed:.1?}, {peak} bytes at the peak");
    // The entries themselves: a key String and a Value each, about 60 bytes, plus the
    // duplicate check's set.
    assert!(
        peak < 200 * N as usize && elapsed < 10 * SECOND,
        "{file_len}-byte file: {peak} bytes, {elapsed:?}"
    );

    const T: u64 = 200_000;
    let mut g = Gguf::new(T, 0);
    for i in 0..T {
        g.tensor(&format!("t{i}"), &[8], 32 * i);
    }
    let (result, _, elapsed) = parse(g.data(32 * T as usize));
    assert_eq!(result.expect("parses").tensors.len(), T as usize);
    eprintln!("{T} tensors parsed in {elapsed:.1?}");
    assert!(elapsed < 10 * SECOND, "{elapsed:?}");
}
