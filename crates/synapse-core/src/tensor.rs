//! Weights: typed, shaped views over a model file's bytes.

use crate::dtype::DType;
use crate::storage::Storage;
use std::ops::Range;
use std::sync::Arc;

/// A weight matrix (or vector) stored in `dtype`, `rows` rows of `cols` values each,
/// read in place from the model file.
#[derive(Clone)]
pub struct WeightTensor {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
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
            storage,
            range,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.range.clone()]
    }

    pub fn row_bytes(&self) -> usize {
        self.range.len() / self.rows.max(1)
    }

    pub fn row(&self, i: usize) -> &[u8] {
        let n = self.row_bytes();
        &self.bytes()[i * n..(i + 1) * n]
    }

    /// Row `i` as f32 values.
    pub fn dequantize_row(&self, i: usize, out: &mut [f32]) {
        crate::quant::dequantize_row(self.dtype, self.row(i), out);
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
