#!/usr/bin/env bash
# synapse-core's unsafe-heavy code under Miri, which reports undefined behaviour (out of
# bounds or misaligned accesses, invalid values, data races, leaks): the GGUF reader and
# writer, the scalar kernels (the oracle every SIMD path is tested against), the weight
# layouts (interleaved and K-quant panels) and the quantizers, and the thread pool. A
# subset small enough for Miri's speed (a few minutes); the SIMD kernels themselves use
# intrinsics Miri does not model, so SYNAPSE_KERNEL=scalar keeps them out.
#
#   scripts/test-miri.sh            run them (installs the pinned nightly and Miri once)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned, so that a new nightly cannot break CI; Miri only ships with nightlies.
toolchain=nightly-2026-05-20
if ! rustup run "$toolchain" cargo miri --version >/dev/null 2>&1; then
  rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src
fi
# -Zmiri-disable-isolation: the tests read SYNAPSE_KERNEL. -Zmiri-ignore-leaks: the native
# pool's workers live as long as the process, by design, and Miri counts a thread still
# parked at exit as a leak.
export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-ignore-leaks"
export SYNAPSE_KERNEL=scalar
# Each test named runs in well under a minute under Miri; the scalar dot products' random
# trials (kernels::scalar::tests::scalar_dots_equal_...) take minutes, so their fixture
# test stands in for them.
cargo +"$toolchain" miri test --quiet -p synapse-core --lib --target-dir target/miri -- \
  gguf:: quant:: tensor:: kernels::scalar::tests::scalar_dots_of_the_dequant_fixture_blocks_are_exact \
  threads::tests::every_index_is_visited_exactly_once threads::tests::nested_calls_run_on_the_task_thread \
  threads::tests::a_custom_executor_runs_every_chunk_and_reports_panics
