//! The one table of weight formats, as candle's `GgmlType` and ggml's `type_traits`:
//! every fact about a [`DType`] (its GGML id and name, block size in values and bytes,
//! the activation type its integer dot product pairs with, its panel layout, how to
//! dequantize and quantize a row, and the scalar reference dot product) is written once,
//! in the one list of the `formats!` call below.
//!
//! Each format is a type implementing [`Format`] (the block struct for the quantized
//! formats, `f32`, `f16` and `bf16` for the floats, [`BlockInt8`] for INT8), so kernels
//! can name its constants at compile time (`<BlockQ4K as Format>::BLOCK_BYTES`); the same
//! list also builds [`FORMATS`], one [`FormatInfo`] of constants and function pointers per
//! dtype, which [`DType::format`] looks up for run-time dispatch. A new format, or a new
//! port (SIMD128, WGSL), starts from this file.

use super::activation::{BlockQ8K, BlockQ8_0Act, BlockQ8_1Act};
use super::blocks::*;
use super::quantize::{self as q, blocks};
use super::{as_blocks, int8_row, Block};
use crate::dtype::{DType, QK_K};
use crate::kernels::scalar;
use half::{bf16, f16};
use std::fmt;
use std::mem::size_of;

/// The type a matmul's activations are converted to before they meet the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivationType {
    F32,
    /// 32-value blocks of 8-bit codes with an f16 scale ([`BlockQ8_0Act`]).
    Q8_0,
    /// [`ActivationType::Q8_0`] plus each block's scaled sum, for formats with a minimum.
    Q8_1,
    /// 256-value super-blocks with 16-value sums, for the K-quants ([`BlockQ8K`]).
    Q8K,
}

impl ActivationType {
    pub fn name(self) -> &'static str {
        match self {
            ActivationType::F32 => "F32",
            ActivationType::Q8_0 => "Q8_0",
            ActivationType::Q8_1 => "Q8_1",
            ActivationType::Q8K => "Q8_K",
        }
    }
}

impl fmt::Display for ActivationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One token's activations in the 8-bit block type a weight format pairs with.
#[derive(Clone, Copy)]
pub enum ActRow<'a> {
    Q8_0(&'a [BlockQ8_0Act]),
    Q8_1(&'a [BlockQ8_1Act]),
    Q8K(&'a [BlockQ8K]),
}

/// An activation block type, and how to find its blocks in an [`ActRow`].
trait ActBlocks: Sized {
    fn of(a: ActRow<'_>) -> &[Self];
}

macro_rules! act_blocks {
    ($($ty:ty: $variant:ident),*) => {$(
        impl ActBlocks for $ty {
            fn of(a: ActRow<'_>) -> &[Self] {
                match a {
                    ActRow::$variant(a) => a,
                    _ => unreachable!("activations are quantized to the type the format pairs with"),
                }
            }
        }
    )*};
}

act_blocks!(BlockQ8_0Act: Q8_0, BlockQ8_1Act: Q8_1, BlockQ8K: Q8K);

/// The interleaved layout a format's rows can be repacked into at load (see
/// [`super::panel_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Panels {
    /// 16 rows' 32-value blocks side by side ([`super::interleave`]).
    Interleave,
    /// 8 rows' K-quant super-blocks side by side ([`super::k_panels`]).
    KPanels,
}

/// A weight format: one per [`DType`], implemented by its block type.
pub trait Format: 'static {
    const DTYPE: DType;
    /// The name as llama.cpp spells it (`Q4_K`).
    const NAME: &'static str;
    /// The GGML type id, `None` for a load-time format GGUF files cannot hold.
    const GGML_ID: Option<u32>;
    /// llama.cpp's `LLAMA_FTYPE` of a file whose weights are all of this type (the
    /// K-quants as their `_S` variants, the only ones a single type makes).
    const LLAMA_FILE_TYPE: Option<u32>;
    /// Values per block (1 for the float types).
    const BLOCK_LEN: usize;
    /// Bytes per block.
    const BLOCK_BYTES: usize;
    /// Bytes at the start of each row before its first block (INT8's f32 scale).
    const ROW_HEADER: usize;
    /// The activation type a matmul with these weights quantizes to (by default).
    const ACTIVATION: ActivationType;
    /// The interleaved layout the kernels may read these weights in.
    const PANELS: Option<Panels>;
    /// What `llama-quantize` writes instead when a row is not whole blocks of this type
    /// (F16 when this is `None`, or when the fallback does not fit either).
    const QUANTIZE_FALLBACK: Option<DType>;
    /// Writes the values of a row of these weights (`bytes`) to `out`.
    fn dequantize_row(bytes: &[u8], out: &mut [f32]);
    /// Writes `src` as a row of these weights to `dst`, as GGML's reference quantizer.
    fn quantize_row(src: &[f32], dst: &mut [u8]);
    /// The scalar (reference) dot product of a row with activations of its
    /// [`Format::ACTIVATION`] type; float formats have none (they meet f32 activations).
    fn vec_dot_ref(w: &[u8], a: ActRow) -> f32;
}

/// A [`Format`]'s constants and functions as a value: the entry of [`FORMATS`] that
/// [`DType::format`] returns.
#[derive(Clone, Copy)]
pub struct FormatInfo {
    /// What it is: see [`Format::NAME`], [`Format::GGML_ID`], [`Format::LLAMA_FILE_TYPE`].
    pub dtype: DType,
    pub name: &'static str,
    pub ggml_id: Option<u32>,
    pub llama_file_type: Option<u32>,
    /// What it pairs with: see [`Format::ACTIVATION`], [`Format::PANELS`],
    /// [`Format::QUANTIZE_FALLBACK`].
    pub activation: ActivationType,
    pub panels: Option<Panels>,
    pub quantize_fallback: Option<DType>,
    /// Its sizes: see [`Format::BLOCK_LEN`], [`Format::BLOCK_BYTES`], [`Format::ROW_HEADER`].
    pub block_len: usize,
    pub block_bytes: usize,
    pub row_header: usize,
    /// Its functions: see [`Format`] (the quantizer and the reference dot product are
    /// `DType::quantizer`'s and `DType::reference_dot`'s).
    pub dequantize_row: fn(&[u8], &mut [f32]),
}

impl FormatInfo {
    pub const fn of<F: Format>() -> FormatInfo {
        FormatInfo {
            dtype: F::DTYPE,
            name: F::NAME,
            ggml_id: F::GGML_ID,
            llama_file_type: F::LLAMA_FILE_TYPE,
            block_len: F::BLOCK_LEN,
            block_bytes: F::BLOCK_BYTES,
            row_header: F::ROW_HEADER,
            activation: F::ACTIVATION,
            panels: F::PANELS,
            quantize_fallback: F::QUANTIZE_FALLBACK,
            dequantize_row: F::dequantize_row,
        }
    }
}

block_structs! {
    /// 32 codes of a [`DType::Int8`] row, whose f32 scale
    /// ([`crate::dtype::INT8_ROW_HEADER`] bytes) precedes its first block.
    pub struct BlockInt8 { qs: [i8; 32] } = 32 bytes;
}

/// The functions of a [`Format`] impl: for a block struct, from its quantizer in
/// [`super::quantize`] and its scalar dot in [`crate::kernels::scalar`]; else given as
/// closures.
macro_rules! format_fns {
    (blocks($quantize:ident, $dot:ident)) => {
        #[cfg_attr(synapse_wasm_size, optimize(size))]
        fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
            dequantize_blocks::<Self>(bytes, out)
        }
        #[cfg_attr(synapse_wasm_size, optimize(size))]
        fn quantize_row(src: &[f32], dst: &mut [u8]) {
            blocks(src, dst, q::$quantize)
        }
        fn vec_dot_ref(w: &[u8], a: ActRow) -> f32 {
            scalar::$dot(as_blocks(w), ActBlocks::of(a))
        }
    };
    (row($dequantize:expr, $quantize:expr, $dot:expr)) => {
        fn dequantize_row(bytes: &[u8], out: &mut [f32]) {
            let f: fn(&[u8], &mut [f32]) = $dequantize;
            f(bytes, out)
        }
        fn quantize_row(src: &[f32], dst: &mut [u8]) {
            let f: fn(&[f32], &mut [u8]) = $quantize;
            f(src, dst)
        }
        fn vec_dot_ref(w: &[u8], a: ActRow) -> f32 {
            let f: fn(&[u8], ActRow) -> f32 = $dot;
            f(w, a)
        }
    };
}

/// Implements [`Format`] for each listed type and builds [`FORMATS`] from the same list,
/// in [`DType`] order: one row per format, its columns the [`Format`] constants (the
/// block size in bytes is the type's size), then its functions (see `format_fns!`).
macro_rules! formats {
    ($($dtype:ident: $ty:ty = ($name:literal, $ggml:expr, $file_type:expr, $len:expr, $header:expr,
        $act:ident, $panels:expr, $fallback:expr) $kind:ident $fns:tt;)*) => {
        $(impl Format for $ty {
            const DTYPE: DType = DType::$dtype;
            const NAME: &'static str = $name;
            const GGML_ID: Option<u32> = $ggml;
            const LLAMA_FILE_TYPE: Option<u32> = $file_type;
            const BLOCK_LEN: usize = $len;
            const BLOCK_BYTES: usize = size_of::<$ty>();
            const ROW_HEADER: usize = $header;
            const ACTIVATION: ActivationType = ActivationType::$act;
            const PANELS: Option<Panels> = $panels;
            const QUANTIZE_FALLBACK: Option<DType> = $fallback;
            format_fns!($kind $fns);
        })*

        /// Every format's [`FormatInfo`], indexed by `DType as usize`.
        pub static FORMATS: [FormatInfo; DType::ALL.len()] = [$(FormatInfo::of::<$ty>()),*];

        impl DType {
            /// This type's [`Format::quantize_row`]: a `match`, not a [`FORMATS`] column, so
            /// that a binary which never quantizes (the browser module) leaves them out.
            pub(crate) fn quantizer(self) -> fn(&[f32], &mut [u8]) {
                match self {
                    $(DType::$dtype => <$ty as Format>::quantize_row,)*
                }
            }

            /// This type's [`Format::vec_dot_ref`], a `match` too: SIMD128, which has a
            /// kernel for every format, leaves them out.
            pub(crate) fn reference_dot(self) -> fn(&[u8], ActRow) -> f32 {
                match self {
                    $(DType::$dtype => <$ty as Format>::vec_dot_ref,)*
                }
            }
        }
    };
}

use Panels::{Interleave, KPanels};
const INT8_HEADER: usize = crate::dtype::INT8_ROW_HEADER;

#[rustfmt::skip]
formats! {
    //                 name    GGML id   file type values header       act   panels            quantize fallback
    F32:  f32       = ("F32",  Some(0),  Some(0),  1,    0,           F32,  None,             None)
        row(|b, out| floats_in(b, out, f32::from_le_bytes),
            |x, out| floats_out(x, out, f32::to_le_bytes), no_dot);
    F16:  f16       = ("F16",  Some(1),  Some(1),  1,    0,           F32,  None,             None)
        row(|b, out| floats_in(b, out, |b| f16::from_le_bytes(b).to_f32()),
            |x, out| floats_out(x, out, |v| f16::from_f32(v).to_le_bytes()), no_dot);
    BF16: bf16      = ("BF16", Some(30), Some(32), 1,    0,           F32,  None,             None)
        row(|b, out| floats_in(b, out, |b| bf16::from_le_bytes(b).to_f32()),
            |x, out| floats_out(x, out, |v| q::to_bf16(v).to_le_bytes()), no_dot);
    Q4_0: BlockQ4_0 = ("Q4_0", Some(2),  Some(2),  32,   0,           Q8_0, Some(Interleave), None)             blocks(q4_0, dot_q4_0);
    Q4_1: BlockQ4_1 = ("Q4_1", Some(3),  Some(3),  32,   0,           Q8_1, Some(Interleave), None)             blocks(q4_1, dot_q4_1);
    Q5_0: BlockQ5_0 = ("Q5_0", Some(6),  Some(8),  32,   0,           Q8_0, None,             None)             blocks(q5_0, dot_q5_0);
    Q5_1: BlockQ5_1 = ("Q5_1", Some(7),  Some(9),  32,   0,           Q8_1, None,             None)             blocks(q5_1, dot_q5_1);
    Q8_0: BlockQ8_0 = ("Q8_0", Some(8),  Some(7),  32,   0,           Q8_0, Some(Interleave), None)             blocks(q8_0, dot_q8_0);
    Q4K:  BlockQ4K  = ("Q4_K", Some(12), Some(14), QK_K, 0,           Q8K,  Some(KPanels),    Some(DType::Q5_0)) blocks(q4_k, dot_q4_k);
    Q5K:  BlockQ5K  = ("Q5_K", Some(13), Some(16), QK_K, 0,           Q8K,  Some(KPanels),    Some(DType::Q5_1)) blocks(q5_k, dot_q5_k);
    Q6K:  BlockQ6K  = ("Q6_K", Some(14), Some(18), QK_K, 0,           Q8K,  Some(KPanels),    Some(DType::Q8_0)) blocks(q6_k, dot_q6_k);
    Int8: BlockInt8 = ("INT8", None,     None,     32,   INT8_HEADER, Q8_0, None,             None)
        row(dequantize_int8, q::int8, |w, a| scalar::dot_int8(w, ActBlocks::of(a)));
}

// `FORMATS[d as usize]` is `d`'s entry.
const _: () = {
    let mut i = 0;
    while i < FORMATS.len() {
        assert!(FORMATS[i].dtype as usize == i && DType::ALL[i] as usize == i);
        i += 1;
    }
};

impl DType {
    /// This type's entry in the table of formats.
    #[inline]
    pub fn format(self) -> &'static FormatInfo {
        &FORMATS[self as usize]
    }
}

/// Reads a float row: each value from its `N` little-endian bytes.
fn floats_in<const N: usize>(bytes: &[u8], out: &mut [f32], value: impl Fn([u8; N]) -> f32) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(N)) {
        *o = value(b.try_into().expect("N bytes"));
    }
}

/// Writes a float row: each value as its `N` little-endian bytes.
fn floats_out<const N: usize>(src: &[f32], dst: &mut [u8], bytes: impl Fn(f32) -> [u8; N]) {
    for (o, &v) in dst.chunks_exact_mut(N).zip(src) {
        o.copy_from_slice(&bytes(v));
    }
}

fn dequantize_blocks<B: Block>(bytes: &[u8], out: &mut [f32]) {
    for (block, chunk) in as_blocks::<B>(bytes)
        .iter()
        .zip(out.chunks_exact_mut(B::BLOCK_LEN))
    {
        block.dequantize(chunk);
    }
}

fn dequantize_int8(bytes: &[u8], out: &mut [f32]) {
    let (scale, codes) = int8_row(bytes);
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = q as f32 * scale;
    }
}

/// Float weights meet f32 activations: no integer dot product.
fn no_dot(_: &[u8], _: ActRow) -> f32 {
    unreachable!("float weights have no quantized dot product")
}
