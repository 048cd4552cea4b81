//! Runs of the `synapse` binary, shared by the end-to-end tests.

#![allow(dead_code)]

use serde_json::Value;
use std::process::{Command, Output};

/// Runs `synapse` with the words of `command` (a subcommand and flags, as typed on a
/// command line), then `args` (paths, prompts: anything that may hold spaces).
pub fn synapse(command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synapse"))
        .args(command.split_whitespace())
        .args(args)
        .output()
        .expect("run synapse")
}

/// The standard output of a run, which must have succeeded (else its standard error is
/// shown).
pub fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The standard output of a run, which must have succeeded, as one JSON object.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("one JSON object on stdout")
}

/// The standard error of a run, which must have failed.
pub fn failure(out: &Output) -> String {
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}
