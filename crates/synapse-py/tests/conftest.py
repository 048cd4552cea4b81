"""Shared fixtures: the default model (loaded once), and the CLI for reference runs."""

import json
import os
import pathlib
import subprocess

import pytest

import synapse

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def model():
    return synapse.Model(ctx_size=512)


@pytest.fixture(scope="session")
def cli():
    """Runs the `synapse` CLI ($SYNAPSE_CLI, else target/release/synapse) with --json."""
    path = os.environ.get("SYNAPSE_CLI") or str(REPO / "target/release/synapse")
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build it with `cargo build --release -p synapse-cli`")

    def run(*args):
        out = subprocess.run([path, *args, "--json"], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    return run
