//! `synapse quantize`: re-encode a GGUF model's weights as another type.

use clap::Args;
use std::path::PathBuf;
use std::time::Instant;
use synapse_core::gguf::{quantize_file, TensorReport};
use synapse_core::DType;

#[derive(Args)]
pub struct QuantizeArgs {
    /// GGUF model to read
    pub input: PathBuf,
    /// GGUF file to write (replaced only once complete)
    pub output: PathBuf,
    /// Weight type: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16 or f32
    #[arg(long = "type", value_parser = parse_type)]
    pub dtype: DType,
}

fn parse_type(name: &str) -> Result<DType, String> {
    match DType::from_name(name) {
        Some(DType::Int8) => Err("int8 is a load-time format; GGUF files cannot hold it".into()),
        Some(t) => Ok(t),
        None => Err(format!(
            "unknown type {name:?} (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16, f32)"
        )),
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(r: &TensorReport) {
    let dims: Vec<String> = r.dims.iter().map(u64::to_string).collect();
    let action = if r.from == r.to {
        "copied"
    } else {
        "converted"
    };
    let note = r
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    eprintln!(
        "[{:>4}/{}] {:<36} {:>16} {:>5} -> {:<5} {action}, {:.2} -> {:.2} MiB{note}",
        r.index + 1,
        r.count,
        r.name,
        dims.join(" x "),
        r.from.name(),
        r.to.name(),
        mib(r.bytes_in),
        mib(r.bytes_out),
    );
}

pub fn quantize(args: QuantizeArgs) -> Result<(), String> {
    let start = Instant::now();
    let summary =
        quantize_file(&args.input, &args.output, args.dtype, report).map_err(|e| e.to_string())?;
    println!(
        "{} -> {} ({}): {} tensors, {} converted, {} weight matrices in another type; \
         {:.2} MiB -> {:.2} MiB in {:.1} s",
        args.input.display(),
        args.output.display(),
        args.dtype,
        summary.tensors,
        summary.converted,
        summary.fallbacks,
        mib(summary.bytes_in),
        mib(summary.bytes_out),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
