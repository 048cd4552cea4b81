//! Weights: typed, shaped views over a model file's bytes.

use crate::dtype::DType;
use crate::quant::panel_rows;
use crate::storage::{word_bytes, Storage};
use std::ops::Range;
use std::sync::Arc;

/// How a tensor's blocks are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row after row, as files store them.
    Rows,
    /// Panels of rows with their blocks side by side (see [`crate::quant::panel_rows`]).
    Interleaved,
}

/// A weight matrix (or vector) stored in `dtype`, `rows` rows of `cols` values each,
/// read in place from the model file (or rearranged once for the kernels: `layout`).
#[derive(Clone)]
pub struct WeightTensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
    storage: Arc<Storage>,
    range: Range<usize>,
}

impl WeightTensor {
    /// A view of `range` of `storage`. The caller has checked that the range lies inside
    /// the storage, is aligned for the dtype's blocks and holds `rows * row_bytes` bytes.
    pub fn new(
        name: String,
        dtype: DType,
        rows: usize,
        cols: usize,
        storage: Arc<Storage>,
        range: Range<usize>,
    ) -> WeightTensor {
        assert!(range.end <= storage.len());
        assert_eq!(dtype.row_bytes(cols).map(|b| b * rows), Some(range.len()));
        WeightTensor {
            name,
            dtype,
            rows,
            cols,
            layout: Layout::Rows,
            storage,
            range,
        }
    }

    /// The same weights in the interleaved layout, in memory of their own; `None` if the
    /// type has no such layout or the rows are not whole panels.
    #[cfg(test)]
    pub(crate) fn interleaved(&self) -> Option<WeightTensor> {
        let mut w = self.clone();
        WeightTensor::load_all(&mut [&mut w], |_| true);
        (w.layout == Layout::Interleaved).then_some(w)
    }

    /// The layout [`WeightTensor::load_all`] gives the tensor: interleaved if asked for
    /// its type and its rows are whole panels.
    fn layout_for(&self, interleave: impl Fn(DType) -> bool) -> Layout {
        let fits = self.layout == Layout::Rows
            && panel_rows(self.dtype).is_some_and(|n| self.rows.is_multiple_of(n));
        if fits && interleave(self.dtype) {
            Layout::Interleaved
        } else {
            self.layout
        }
    }

    /// Copies `tensors` into one buffer (see [`Storage::build`]: huge pages, where a
    /// decode step that streams every weight saves a TLB miss per 4 KiB), with `interleave`
    /// in the interleaved layout where they can take it, and hands the file pages they
    /// were read from back to the OS (see [`Storage::release`]), so that memory holds one
    /// copy of them. Tensors already in memory of their own stay there unless they are
    /// interleaved. `interleave` says which types to interleave.
    pub fn load_all(tensors: &mut [&mut WeightTensor], interleave: impl Fn(DType) -> bool) {
        // Per moved tensor: its new layout and its range in the new buffer (cache-line
        // aligned).
        let mut moves = Vec::with_capacity(tensors.len());
        let mut len = 0;
        for w in tensors.iter_mut() {
            let (layout, size) = (w.layout_for(&interleave), w.range.len());
            if w.storage.is_file() || layout != w.layout {
                moves.push((&mut **w, layout, len..len + size));
                len = (len + size).next_multiple_of(64);
            }
        }
        if moves.is_empty() {
            return;
        }
        let storage = Storage::build(len, |bytes| {
            for (w, layout, range) in &moves {
                let out = &mut bytes[range.clone()];
                if *layout != w.layout {
                    crate::quant::to_panels(w.dtype, w.bytes(), w.rows, out);
                } else {
                    out.copy_from_slice(w.bytes());
                }
                w.storage.release(w.range.clone());
            }
        });
        for (w, layout, range) in moves {
            w.layout = layout;
            w.storage = storage.clone();
            w.range = range;
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.range.clone()]
    }

    pub fn row_bytes(&self) -> usize {
        self.range.len() / self.rows.max(1)
    }

    /// The bytes of row `i` of a tensor in the [`Layout::Rows`] layout.
    ///
    /// # Panics
    /// If the tensor is interleaved: use [`WeightTensor::copy_row`].
    pub fn row(&self, i: usize) -> &[u8] {
        assert_eq!(
            self.layout,
            Layout::Rows,
            "{}: rows are interleaved",
            self.name
        );
        let n = self.row_bytes();
        &self.bytes()[i * n..(i + 1) * n]
    }

    /// Whether the rows are stored whole. A type without panels is never interleaved: in
    /// the wasm32 module that is every type (see `panel_rows`), so there the compiler
    /// knows this is true and leaves the gathering code out of the browser's download.
    fn in_rows(&self) -> bool {
        self.layout == Layout::Rows || panel_rows(self.dtype).is_none()
    }

    /// The bytes of row `i` in any layout: borrowed in place, or gathered into `buf`
    /// (words, so that the blocks are aligned).
    pub fn copy_row<'a>(&'a self, i: usize, buf: &'a mut Vec<u64>) -> &'a [u8] {
        if self.in_rows() {
            return self.row(i);
        }
        let block = self.dtype.block_bytes();
        let blocks = self.row_bytes() / block;
        let bytes = word_bytes(buf, self.row_bytes());
        for (b, out) in bytes.chunks_exact_mut(block).enumerate() {
            crate::quant::panel_block(self.dtype, self.bytes(), blocks, i, b, out);
        }
        bytes
    }

    /// Row `i` as f32 values.
    pub fn dequantize_row(&self, i: usize, out: &mut [f32]) {
        if self.in_rows() {
            return crate::quant::dequantize_row(self.dtype, self.row(i), out);
        }
        // Block by block through an aligned buffer: this runs per token (embeddings).
        let (block, len) = (self.dtype.block_bytes(), self.dtype.block_len());
        let blocks = self.row_bytes() / block;
        let mut words = [0u64; 32];
        // SAFETY: 256 bytes of plain integers viewed as bytes; a block is at most 210.
        let buf = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 256) };
        for (b, out) in out.chunks_exact_mut(len).enumerate() {
            crate::quant::panel_block(self.dtype, self.bytes(), blocks, i, b, buf);
            crate::quant::dequantize_row(self.dtype, &buf[..block], out);
        }
    }

    /// The whole tensor as f32 (for small tensors such as norm weights).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (i, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(i, row);
        }
        out
    }
}

impl std::fmt::Debug for WeightTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} [{} x {}]",
            self.name, self.dtype, self.rows, self.cols
        )
    }
}
