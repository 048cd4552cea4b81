//! Model families. Each reads top-down: weights, block, forward.

pub mod llama;

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use synapse_core::gguf::GgufFile;
use synapse_core::WeightTensor;

/// Architectures this build can run, as GGUF's `general.architecture` names them.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// Loads tensor `name` and checks it holds `rows` rows of `cols` values.
pub(crate) fn load_matrix(
    gguf: &GgufFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<WeightTensor> {
    let w = gguf.tensor(name)?;
    if w.rows != rows || w.cols != cols {
        return Err(Error::BadShape {
            file: gguf.path.clone(),
            tensor: name.to_string(),
            found: format!("[{} x {}]", w.rows, w.cols),
            expected: format!("[{rows} x {cols}]"),
        });
    }
    Ok(w)
}

/// Loads a vector of `len` values (a norm weight) as f32.
pub(crate) fn load_vector(gguf: &GgufFile, name: &str, len: usize) -> Result<Vec<f32>> {
    Ok(load_matrix(gguf, name, 1, len)?.to_f32())
}

/// Checks the configuration's sizes against each other before any buffer is sized by them.
pub(crate) fn check_config(gguf: &GgufFile, c: &ModelConfig) -> Result<()> {
    if c.q_dim() == 0 || !c.head_dim.is_multiple_of(2) {
        return Err(Error::BadMetadata {
            file: gguf.path.clone(),
            key: format!("{}.attention.head_count", c.architecture),
            reason: format!("{} heads of {} dims", c.n_heads, c.head_dim),
        });
    }
    Ok(())
}
