use std::sync::Arc;
use synapse_inference::*;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = Arc::new(Model::load(&args[1]).unwrap());
    let ids: Vec<u32> = args[2].split(',').map(|s| s.parse().unwrap()).collect();
    for precision in [
        synapse_core::kernels::Precision::F32,
        synapse_core::kernels::Precision::FollowWeights,
    ] {
        let mut s = Session::new(
            model.clone(),
            SessionOptions {
                precision,
                ..Default::default()
            },
        );
        let t = std::time::Instant::now();
        let logits = s.eval(&ids, false).unwrap();
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.sort_by(|&a, &b| logits[b].partial_cmp(&logits[a]).unwrap());
        println!(
            "{precision:?} {:?} {:?}",
            t.elapsed(),
            idx[..10]
                .iter()
                .map(|&i| (i, logits[i]))
                .collect::<Vec<_>>()
        );
    }
}
