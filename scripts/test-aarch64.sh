#!/usr/bin/env bash
# synapse-core's tests cross-compiled for aarch64 Linux and run under qemu-user: once on
# qemu's default CPU (which has dotprod, so the `sdot` kernels run) and once on a
# Cortex-A53 (baseline NEON only, so the widening-multiply fallback runs), plus a check
# that SYNAPSE_KERNEL=scalar still selects the scalar path. Installs the cross linker,
# qemu and the Rust target when they are missing (apt-get needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null ||
  [ ! -d "$sysroot/lib" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update
  $sudo apt-get install -y qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
fi
if ! rustup target list --installed 2>/dev/null | grep -q "^$target\$"; then
  rustup target add "$target"
fi

# Set here rather than in a committed .cargo/config.toml so that native builds never
# depend on a cross toolchain.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# A separate target dir keeps the cross build from invalidating the native one.
args=(test -p synapse-core --target "$target" --target-dir target/aarch64)

echo "== synapse-core tests on aarch64 (qemu default CPU: NEON + dotprod)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot" \
  cargo "${args[@]}"

echo "== synapse-core tests on aarch64 (qemu Cortex-A53: NEON without dotprod)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu cortex-a53 -L $sysroot" \
  cargo "${args[@]}"

echo "== SYNAPSE_KERNEL=scalar selects the scalar kernels on aarch64"
SYNAPSE_KERNEL=scalar CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot" \
  cargo "${args[@]}" --lib isa_follows_cpu_features
