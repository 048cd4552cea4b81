//! `synapse tokenize` and `synapse inspect`: look inside model files without running them.

use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use synapse_core::gguf::{GgufFile, Value};
use synapse_inference::hf::HfDir;
use synapse_inference::tokenizer::Tokenizer;

#[derive(Args)]
pub struct TokenizeArgs {
    /// GGUF file with a tokenizer (a vocab-only file is enough), or a Hugging Face model
    /// directory [default: the default model]
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Print {"ids": [...], "pieces": [...]}
    #[arg(long)]
    json: bool,
    /// Treat special-token text as plain text
    #[arg(long)]
    no_special: bool,
    /// Add BOS/EOS as the model's tokenizer settings ask
    #[arg(long)]
    add_special: bool,
    /// The text to tokenize
    text: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The GGUF file or Hugging Face model directory
    #[arg(required_unless_present = "devices")]
    path: Option<PathBuf>,
    /// List the GPUs (wgpu adapters) that `--device gpu` can run on, best first
    #[arg(long, conflicts_with = "path")]
    devices: bool,
    /// Print every element of long metadata arrays
    #[arg(long)]
    full: bool,
}

pub fn tokenize(args: TokenizeArgs) -> Result<(), String> {
    let path = match args.model {
        Some(p) => p,
        None => synapse_inference::default_model::ensure().map_err(|e| e.to_string())?,
    };
    let tokenizer = if path.is_dir() {
        Tokenizer::from_hf_dir(&path)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}: no tokenizer.json or tokenizer.model", path.display()))?
    } else {
        let gguf = GgufFile::open(&path).map_err(|e| e.to_string())?;
        Tokenizer::from_gguf(&gguf).map_err(|e| e.to_string())?
    };
    let ids = tokenizer.encode(&args.text, args.add_special, !args.no_special);
    if args.json {
        let pieces: Vec<String> = ids
            .iter()
            .map(|&id| String::from_utf8_lossy(&tokenizer.token_bytes(id)).into_owned())
            .collect();
        println!("{}", json!({ "ids": ids, "pieces": pieces }));
    } else {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("{}", ids.join(" "));
    }
    Ok(())
}

fn show_value(v: &Value, full: bool) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) if !full && items.len() > 8 => {
            let head: Vec<String> = items[..4].iter().map(|i| show_value(i, false)).collect();
            format!("[{}, ... ({} items)]", head.join(", "), items.len())
        }
        Value::Array(items) => {
            let all: Vec<String> = items.iter().map(|i| show_value(i, full)).collect();
            format!("[{}]", all.join(", "))
        }
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other
            .as_i64()
            .map_or_else(|| format!("{other:?}"), |i| i.to_string()),
    }
}

/// A Hugging Face directory: its config.json and its tensors.
fn inspect_hf_dir(path: &Path) -> Result<(), String> {
    let dir = HfDir::open(path).map_err(|e| e.to_string())?;
    let checkpoint = dir.checkpoint().map_err(|e| e.to_string())?;
    println!(
        "{}: Hugging Face model directory, {} tensors",
        path.display(),
        checkpoint.names().count()
    );
    println!(
        "
config.json:"
    );
    if let Some(config) = dir.config.as_object() {
        for (key, value) in config {
            println!("  {key} = {value}");
        }
    }
    println!(
        "
tensors:"
    );
    let mut total = 0;
    for name in checkpoint.names() {
        let info = checkpoint.info(name).map_err(|e| e.to_string())?;
        println!("  {name}  {}  {:?}", info.dtype_name, info.shape);
        total += info.range.len();
    }
    println!("  total: {total} bytes");
    Ok(())
}

pub fn inspect(args: InspectArgs) -> Result<(), String> {
    let Some(path) = args.path else {
        return list_devices();
    };
    if path.is_dir() {
        return inspect_hf_dir(&path);
    }
    let gguf = GgufFile::open(&path).map_err(|e| e.to_string())?;
    println!(
        "{}: GGUF v{}, {} metadata entries, {} tensors",
        gguf.path,
        gguf.version,
        gguf.metadata.len(),
        gguf.tensors.len()
    );
    println!("\nmetadata:");
    for (key, value) in &gguf.metadata {
        let mut shown = show_value(value, args.full);
        if !args.full && shown.len() > 200 {
            let cut = (0..=200)
                .rev()
                .find(|&i| shown.is_char_boundary(i))
                .unwrap_or(0);
            shown = format!("{}... ({} chars)", &shown[..cut], shown.len());
        }
        println!("  {key} ({}) = {shown}", value.type_name());
    }
    if gguf.tensors.is_empty() {
        return Ok(());
    }
    println!("\ntensors:");
    let width = gguf.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    println!(
        "  {:width$}  {:6}  {:>20}  {:>12}",
        "name", "type", "shape", "bytes"
    );
    let mut total = 0u64;
    for t in &gguf.tensors {
        let shape = format!("{:?}", t.dims);
        println!(
            "  {:width$}  {:6}  {:>20}  {:>12}",
            t.name,
            t.dtype.name(),
            shape,
            t.size_bytes
        );
        total += t.size_bytes;
    }
    println!("  total: {total} bytes in {} tensors", gguf.tensors.len());
    Ok(())
}

/// `inspect --devices`: the adapters wgpu sees, best first.
fn list_devices() -> Result<(), String> {
    #[cfg(feature = "gpu")]
    {
        let adapters = synapse_gpu::adapters();
        if adapters.is_empty() {
            println!("no GPU adapters (the CPU runs every model)");
        }
        for (i, adapter) in adapters.iter().enumerate() {
            println!("{i}: {adapter}");
        }
        Ok(())
    }
    #[cfg(not(feature = "gpu"))]
    Err("--devices: this synapse was built without the gpu feature".into())
}
