//! Weight element types, numbered as GGML numbers them in GGUF files. Their facts (ids,
//! names, block sizes) live in the table of formats, [`crate::quant::format`].

use std::fmt;

/// A weight element type: a plain float type or a block-quantized format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    /// Per-row symmetric int8, a load-time format that never appears in GGUF files. A row
    /// of `cols` values is an f32 scale (little-endian) followed by `cols` signed bytes
    /// (value = scale * q); `cols` is a multiple of 32 so that the codes pair with Q8_0
    /// activation blocks, and rows stay 4-byte aligned for the scale.
    Int8,
}

/// Bytes before the codes of an [`DType::Int8`] row: its f32 scale.
pub const INT8_ROW_HEADER: usize = 4;

/// Values per block of the K-quant formats.
pub const QK_K: usize = 256;

impl DType {
    pub const ALL: [DType; 12] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Int8,
    ];

    /// The type for a GGML type id, or `None` when Synapse cannot load it.
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|t| t.ggml_id() == Some(id))
    }

    /// The GGML type id, `None` for [`DType::Int8`] (which GGUF files cannot hold).
    pub fn ggml_id(self) -> Option<u32> {
        self.format().ggml_id
    }

    /// Name of a GGML type id for error messages, including types Synapse cannot load.
    pub fn ggml_name(id: u32) -> &'static str {
        match DType::from_ggml_id(id) {
            Some(t) => t.name(),
            None => match id {
                9 => "Q8_1",
                10 => "Q2_K",
                11 => "Q3_K",
                15 => "Q8_K",
                16..=23 => "IQ*",
                24 => "I8",
                25 => "I16",
                26 => "I32",
                27 => "I64",
                28 => "F64",
                29 => "IQ1_M",
                _ => "unknown",
            },
        }
    }

    pub fn name(self) -> &'static str {
        self.format().name
    }

    /// The type named `name` as [`DType::name`] spells it, in any case (`q4_k`, `int8`).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Number of values one block holds (1 for plain float types).
    pub fn block_len(self) -> usize {
        self.format().block_len
    }

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        self.format().block_bytes
    }

    /// Bytes of a row of `len` values, or `None` when `len` is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, len: usize) -> Option<usize> {
        if !len.is_multiple_of(self.block_len()) {
            return None;
        }
        let codes = (len / self.block_len()).checked_mul(self.block_bytes())?;
        codes.checked_add(self.format().row_header)
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
