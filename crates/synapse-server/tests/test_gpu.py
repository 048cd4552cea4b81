"""`synapse serve --device gpu`: the server on the GPU backend (Vulkan; lavapipe in CI)
gives the greedy tokens of the CPU's f32 run (what the GPU computes), for requests
batched together."""

import concurrent.futures
import os
import subprocess

import pytest

from conftest import CLI, Server

PROMPTS = ["The capital of France is", "A shopping list:\n1. Apples\n2."]
N = 12


def gpu_adapter():
    out = subprocess.run([CLI, "inspect", "--devices"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@pytest.fixture(scope="module")
def gpu_server():
    if not gpu_adapter():
        if os.environ.get("SYNAPSE_REQUIRE_GPU") == "1":
            pytest.fail("no GPU adapter (SYNAPSE_REQUIRE_GPU=1): install mesa-vulkan-drivers")
        pytest.skip("no GPU adapter (Debian mesa-vulkan-drivers provides lavapipe)")
    s = Server("--device", "gpu", "--parallel", "2", "--ctx-size", "256")
    yield s
    s.stop()


def test_batched_requests_on_the_gpu_give_the_cpu_f32_tokens(gpu_server, cli):
    assert "gpu: " in gpu_server.startup_log
    want = [
        cli.json("run", "--f32-activations", "--prompt", p, "--temperature", "0", "-n", str(N), "--ignore-eos")
        for p in PROMPTS
    ]
    client = gpu_server.client()

    def complete(prompt):
        out = client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", prompt=prompt, temperature=0, max_tokens=N,
            extra_body={"ignore_eos": True},
        )
        return out.choices[0].text

    # Both at once: the two sequences share the GPU's forward passes.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = list(pool.map(complete, PROMPTS))
    assert got == [w["text"] for w in want]
    metrics = gpu_server.wait_idle()
    assert metrics["generated_tokens_total"] >= 2 * N
