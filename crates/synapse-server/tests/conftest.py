"""Starts `synapse serve` on a free port for the tests (the CLI from $SYNAPSE_CLI, else
target/release/synapse), with the default model."""

import contextlib
import json
import os
import pathlib
import re
import subprocess
import time

import httpx
import openai
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
CLI = os.environ.get("SYNAPSE_CLI") or str(REPO / "target/release/synapse")


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [CLI, "serve", "--port", "0", *args], stderr=subprocess.PIPE, text=True
        )
        # Lines before the startup line are notes (a GPU driver may print some).
        lines = []
        while not lines or not (match := re.search(r"listening on (http://[\d.]+:\d+)", line)):
            line = self.proc.stderr.readline()
            lines.append(line)
            if not line:
                self.proc.kill()
                raise RuntimeError(f"synapse serve did not start: {''.join(lines)}")
        self.url = match.group(1)
        self.startup_log = line

    def client(self, **kwargs):
        kwargs.setdefault("api_key", "none")
        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.url + "/v1", **kwargs)

    def metrics(self):
        text = httpx.get(self.url + "/metrics").text
        return {
            m.group(1): float(m.group(2))
            for m in re.finditer(r"^synapse_(\w+) ([\d.e+-]+)$", text, re.MULTILINE)
        }

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def wait_idle(self, seconds=10.0):
        """Metrics once no slot is busy and nothing is queued (or after `seconds`)."""
        deadline = time.time() + seconds
        while True:
            m = self.metrics()
            if (m["busy_slots"] == 0 and m["queue_depth"] == 0) or time.time() > deadline:
                return m
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc.kill()


@pytest.fixture(scope="session")
def server():
    s = Server("--parallel", "4", "--ctx-size", "1024")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    return server.client()


@pytest.fixture(scope="session")
def cli():
    def run(*args, stdin=None):
        out = subprocess.run([CLI, *args], check=True, capture_output=True, text=True, input=stdin)
        return out.stdout

    def run_json(*args):
        return json.loads(run(*args, "--json"))

    run.json = run_json
    return run
