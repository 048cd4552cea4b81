"""One answer on every path: the default model's greedy continuation of the same prompts
through every door and kernel path this build has, against the CLI's, up to near-ties.

Paths: the CLI with every kernel path this CPU runs (SYNAPSE_KERNEL) at 1 and 2 threads;
the Rust library (crates/synapse-inference/examples/greedy.rs); the C ABI
(crates/synapse-capi/examples/c/generate.c, built by scripts/test-capi.sh); the Python
package (target/py-venv, installed by scripts/test-python.sh); the server through the
official openai client; and the browser module at 1 and 2 threads (the token files that
tests/web/browser.test.mjs leaves in target/cross-path). A path whose build is missing is
skipped with a message, except under CI=true, where it fails.

The rule is the project's rule for greedy agreement: up to the first token where a path
differs from the reference, every token must be equal; at that token the reference's top-2
logit gap must be under TIE (a near-tie the kernels' rounding may break either way), and
what follows is not compared, since the two continuations no longer share a context.

    python3 tests/cross_path/check.py      (run by scripts/test-cross-path.sh)
"""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
CLI = REPO / "target/release/synapse"
MODEL = pathlib.Path(os.environ.get("SYNAPSE_HOME") or pathlib.Path.home() / ".cache/synapse")
MODEL = MODEL / "SmolLM2-135M-Instruct.Q4_1.gguf"
# The prompts and length of tests/web/browser.test.mjs, so that its token files compare.
PROMPTS = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "A shopping list:\n1. Apples\n2.",
]
N = 32
# As in tests/web/browser.test.mjs: the kernels' logits differ by up to ~0.1 on this model.
TIE = 0.3
CI = os.environ.get("CI") == "true"


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})},
                       timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def cli(prompt, kernel=None, threads=None, logprobs=False):
    cmd = [str(CLI), "run", "-m", str(MODEL), "--temperature", "0", "--ignore-eos",
           "-n", str(N), "--json", "--prompt", prompt]
    if threads:
        cmd += ["-t", str(threads)]
    if logprobs:
        cmd += ["--logprobs", "2"]
    out = run(cmd, {"SYNAPSE_KERNEL": kernel} if kernel else None)
    return json.loads(out.strip().splitlines()[-1])


def kernel_paths():
    """The SYNAPSE_KERNEL values this CPU runs as themselves (a capped choice that falls
    back to a lesser kernel would only repeat it)."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    paths = ["scalar"]
    if {"avx2", "fma", "f16c"} <= flags:
        paths.append("avx2")
    if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi"} <= flags:
        paths.append("avx512")
    return paths


def library():
    # With the CLI build's features of synapse-inference, so that synapse-core is shared
    # with that build rather than compiled again.
    out = run(["cargo", "run", "--quiet", "--release", "-p", "synapse-inference",
               "--features", "constraints", "--example", "greedy", "--",
               str(MODEL), str(N), *PROMPTS])
    return [json.loads(line)["tokens"] for line in out.splitlines()]


def c_abi():
    exe = REPO / "target/capi/generate-shared"
    if not exe.exists():
        return None
    return [[int(x) for x in run([str(exe), "-m", str(MODEL), "--temperature", "0", "-n", str(N),
                                  "--ignore-eos", "--ids", p]).split()] for p in PROMPTS]


def python_package():
    python = REPO / "target/py-venv/bin/python"
    if not python.exists():
        return None
    script = (
        "import json, sys, synapse\n"
        "m = synapse.Model(sys.argv[1])\n"
        "for p in json.loads(sys.argv[3]):\n"
        "    m.reset()\n"
        "    g = m.generate(p, max_tokens=int(sys.argv[2]), temperature=0, ignore_eos=True, stream=True)\n"
        "    for _ in g: pass\n"
        "    print(json.dumps(g.tokens))\n"
    )
    try:
        out = run([str(python), "-c", script, str(MODEL), str(N), json.dumps(PROMPTS)])
    except RuntimeError as e:
        if "No module named 'synapse'" in str(e):
            return None
        raise
    return [json.loads(line) for line in out.splitlines()]


def server(reference):
    """The completions' texts (OpenAI's API returns text), each read as the token index
    where it leaves the reference: the first whose text prefix (the server's /detokenize of
    the reference's tokens up to it) it does not continue."""
    python = REPO / "target/py-venv/bin/python"
    if not python.exists():
        return None
    script = (
        "import json, re, subprocess, sys, httpx, openai\n"
        "p = subprocess.Popen([sys.argv[1], 'serve', '-m', sys.argv[2], '--port', '0'],"
        " stderr=subprocess.PIPE, text=True)\n"
        "url = re.search(r'listening on (http://[\\d.]+:\\d+)', p.stderr.readline()).group(1)\n"
        "client = openai.OpenAI(base_url=url + '/v1', api_key='none', max_retries=0)\n"
        "try:\n"
        "    for prompt, ref in zip(json.loads(sys.argv[4]), json.loads(sys.argv[5])):\n"
        "        r = client.completions.create(model=sys.argv[6], prompt=prompt, temperature=0,\n"
        "            max_tokens=int(sys.argv[3]), extra_body={'ignore_eos': True})\n"
        "        text = r.choices[0].text\n"
        "        prefixes = [httpx.post(url + '/detokenize', json={'tokens': ref[:i + 1]})\n"
        "                    .json()['content'] for i in range(len(ref))]\n"
        "        print(json.dumps(next((i for i, t in enumerate(prefixes)\n"
        "                               if not text.startswith(t)), None)))\n"
        "finally:\n"
        "    p.terminate()\n"
    )
    refs = json.dumps([r["tokens"] for r in reference])
    try:
        out = run([str(python), "-c", script, str(CLI), str(MODEL), str(N), json.dumps(PROMPTS), refs,
                   MODEL.stem])
    except RuntimeError as e:
        if "No module named 'openai'" in str(e):
            return None
        raise
    found = [json.loads(line) for line in out.splitlines()]
    return [Difference(i) if i is not None else Same() for i in found]


class Difference(int):
    """A path's first difference from the reference, found by the path itself."""


class Same:
    """A path that found no difference from the reference itself."""


def browser(threads):
    path = REPO / f"target/cross-path/browser-threads{threads}.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())
    assert runs["prompts"] == PROMPTS and runs["n"] == N, f"{path}: other prompts"
    return runs["tokens"]


def first_difference(ref, got):
    """The index of the first token where `got` leaves the reference, or None."""
    if isinstance(got, Same):
        return None
    if isinstance(got, Difference):
        return int(got)
    for i, (a, b) in enumerate(zip(ref, got)):
        if a != b:
            return i
    return None if len(ref) == len(got) else min(len(ref), len(got))


def main():
    if not CLI.exists() or not MODEL.exists():
        sys.exit(f"cross-path: build the CLI and fetch the default model first ({CLI}, {MODEL})")
    reference = [cli(p, logprobs=True) for p in PROMPTS]
    paths = {}
    for kernel in kernel_paths():
        for threads in (1, 2):
            paths[f"CLI, SYNAPSE_KERNEL={kernel}, {threads} thread(s)"] = \
                [cli(p, kernel, threads)["tokens"] for p in PROMPTS]
    paths["Rust library (examples/greedy.rs)"] = library()
    paths["C ABI (examples/c/generate.c)"] = c_abi()
    paths["Python package (synapse.Model.generate)"] = python_package()
    paths["server (openai client, /v1/completions)"] = server(reference)
    for threads in (1, 2):
        paths[f"browser module, {threads} thread(s)"] = browser(threads)

    failures, covered, skipped = [], [], []
    for name, runs in paths.items():
        if runs is None:
            skipped.append(name)
            continue
        covered.append(name)
        for k, prompt in enumerate(PROMPTS):
            ref = reference[k]
            i = first_difference(ref["tokens"], runs[k])
            where = f"{name}, prompt {k}"
            if i is None:
                continue
            top = ref["logprobs"][i]["top_logprobs"] if i < len(ref["logprobs"]) else []
            gap = top[0][1] - top[1][1] if len(top) == 2 else float("inf")
            verdict = "near-tie, accepted" if gap < TIE else "REJECTED"
            print(f"{where}: differs at token {i} (reference top-2 gap {gap:.4f}): {verdict}")
            if gap >= TIE:
                failures.append(where)
    print(f"cross-path: {len(covered)} paths agree with the CLI on {len(PROMPTS)} prompts x {N} "
          f"greedy tokens (near-ties under {TIE} allowed):")
    for name in covered:
        print(f"  - {name}")
    for name in skipped:
        print(f"  - SKIPPED (not built): {name}")
    if failures:
        sys.exit(f"cross-path: FAILED: {failures}")
    if skipped and CI:
        sys.exit(f"cross-path: FAILED under CI=true: paths not built: {skipped}")


if __name__ == "__main__":
    main()
