//! The precision policy of a session, decided in one place: the type of every matmul's
//! activations (from its weights' type, see [`Precision::activation_type`]) and the
//! element type of the key/value cache (see [`KvType::default_for`]).

use crate::kv_cache::KvType;
use serde::Serialize;
use synapse_core::kernels::Precision;
use synapse_core::DType;

impl KvType {
    /// The cache type a session gets unless it asks for one: f32 under the f32 policy or
    /// when every matmul weight is f32 (an f32 checkpoint then computes what its framework
    /// does: f16 keys and values alone move its logits by about 1e-2); else f16, as
    /// llama.cpp keeps it, at half the memory.
    pub fn default_for(precision: Precision, weights: impl IntoIterator<Item = DType>) -> KvType {
        let mut weights = weights.into_iter();
        if precision == Precision::F32 || weights.all(|t| t == DType::F32) {
            KvType::F32
        } else {
            KvType::F16
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "F32",
            KvType::F16 => "F16",
        }
    }
}

/// The precision a session runs with, as `run --json` and `bench --json` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrecisionReport {
    /// `follow-weights` (the default) or `f32` (`--f32-activations`).
    pub policy: &'static str,
    /// The key/value cache's element type.
    pub kv_cache: &'static str,
    /// One entry per weight type of the model's matmuls.
    pub matmuls: Vec<MatmulPrecision>,
}

/// The matmuls of one weight type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatmulPrecision {
    pub weights: &'static str,
    pub activations: &'static str,
    /// How many of the model's matrices have this type.
    pub matrices: usize,
}

impl PrecisionReport {
    pub fn new(
        precision: Precision,
        kv: KvType,
        weights: impl IntoIterator<Item = DType>,
    ) -> PrecisionReport {
        let mut matmuls: Vec<MatmulPrecision> = Vec::new();
        for dtype in weights {
            match matmuls.iter_mut().find(|m| m.weights == dtype.name()) {
                Some(m) => m.matrices += 1,
                None => matmuls.push(MatmulPrecision {
                    weights: dtype.name(),
                    activations: precision.activation_type(dtype).name(),
                    matrices: 1,
                }),
            }
        }
        PrecisionReport {
            policy: precision.name(),
            kv_cache: kv.name(),
            matmuls,
        }
    }
}

impl PrecisionReport {
    /// One line for people: `follow-weights (Q4_1 x Q8_1, Q8_0 x Q8_0; KV cache F16)`.
    pub fn summary(&self) -> String {
        let matmuls: Vec<String> = self
            .matmuls
            .iter()
            .map(|m| format!("{} x {}", m.weights, m.activations))
            .collect();
        format!(
            "{} ({}; KV cache {})",
            self.policy,
            matmuls.join(", "),
            self.kv_cache
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_f32_only_for_all_f32_weights_or_the_f32_policy() {
        use DType::*;
        let follow = Precision::FollowWeights;
        assert_eq!(KvType::default_for(follow, [F32, F32]), KvType::F32);
        assert_eq!(KvType::default_for(follow, [F32, Q8_0]), KvType::F16);
        assert_eq!(KvType::default_for(follow, [BF16]), KvType::F16);
        assert_eq!(KvType::default_for(follow, [Q4_1]), KvType::F16);
        assert_eq!(KvType::default_for(Precision::F32, [Q4_1]), KvType::F32);
    }

    #[test]
    fn the_report_counts_matrices_per_type() {
        use DType::*;
        let r = PrecisionReport::new(
            Precision::FollowWeights,
            KvType::F16,
            [Q4_1, Q4_1, Q8_0, F16],
        );
        let rows: Vec<_> = r
            .matmuls
            .iter()
            .map(|m| (m.weights, m.activations, m.matrices))
            .collect();
        assert_eq!(
            rows,
            [("Q4_1", "Q8_1", 2), ("Q8_0", "Q8_0", 1), ("F16", "F32", 1)]
        );
        assert_eq!(
            r.summary(),
            "follow-weights (Q4_1 x Q8_1, Q8_0 x Q8_0, F16 x F32; KV cache F16)"
        );
        let f32 = PrecisionReport::new(Precision::F32, KvType::F32, [Q4_1]);
        assert_eq!(f32.matmuls[0].activations, "F32");
        assert_eq!((f32.policy, f32.kv_cache), ("f32", "F32"));
    }
}
