//! Rotary position embeddings: the forward pass is the engine's own
//! ([`RopeTable::apply`]); its backward rotates the gradient back by the same angles
//! (the transposed rotation, scaled as the forward was).

use synapse_core::ops::{RopeStyle, RopeTable};

/// Rotates each head (`head_dim` values) of each row of `x` (rows of `width`), row `t`
/// by `table`'s angles of position `t`.
pub fn rope(x: &mut [f32], width: usize, head_dim: usize, table: &RopeTable, style: RopeStyle) {
    for (t, row) in x.chunks_exact_mut(width).enumerate() {
        for head in row.chunks_exact_mut(head_dim) {
            table.apply(head, t, style);
        }
    }
}

/// [`rope`]'s backward: turns `dy` into `dx` in place.
pub fn rope_backward(
    d: &mut [f32],
    width: usize,
    head_dim: usize,
    table: &RopeTable,
    style: RopeStyle,
) {
    let h = table.half();
    let (cos, sin) = table.cos_sin();
    for (t, row) in d.chunks_exact_mut(width).enumerate() {
        let (cos, sin) = (&cos[t * h..][..h], &sin[t * h..][..h]);
        for head in row.chunks_exact_mut(head_dim) {
            for i in 0..h {
                // The pair the forward pass rotated by angle i.
                let (a, b) = match style {
                    RopeStyle::AdjacentPairs => (2 * i, 2 * i + 1),
                    RopeStyle::HalfSplit => (i, i + h),
                };
                let (da, db) = (head[a], head[b]);
                head[a] = da * cos[i] + db * sin[i];
                head[b] = db * cos[i] - da * sin[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{assert_gradient, values};

    #[test]
    fn rope_gradients_match_finite_differences_in_both_styles() {
        let (tokens, heads, head_dim) = (3, 2, 8);
        let width = heads * head_dim;
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 10000f32.powf(-2.0 * i as f32 / head_dim as f32))
            .collect();
        let mut table = RopeTable::default();
        table.fill([5, 6, 7], &inv_freq, 1.3);
        for style in [RopeStyle::AdjacentPairs, RopeStyle::HalfSplit] {
            let (x, r) = (values(1, tokens * width), values(2, tokens * width));
            let mut dx = r.clone();
            rope_backward(&mut dx, width, head_dim, &table, style);
            assert_gradient(&format!("rope {style:?}"), &x, &dx, |x| {
                let mut y = x.to_vec();
                rope(&mut y, width, head_dim, &table, style);
                y.iter().zip(&r).map(|(&y, &r)| (y * r) as f64).sum()
            });
        }
    }
}
