"""Helpers shared by the benchmark scripts in bench/ (no third-party imports here)."""
import math

# The synthetic token sequence of `synapse bench` (crates/synapse-cli/src/bench.rs).
TOKEN_SEED = 0x5EED
# Its first ids for a 49152-token vocabulary, pinned in bench.rs's tests too.
FIRST_FOUR_49152 = [32157, 29718, 19014, 7020]

_MASK = (1 << 64) - 1


def synthetic_tokens(n, vocab, seed=TOKEN_SEED):
    """`n` pseudo-random ids below `vocab`: splitmix64, top 32 bits modulo vocab (as bench.rs)."""
    state = seed
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & _MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        out.append((z >> 32) % vocab)
    return out


assert synthetic_tokens(4, 49152) == FIRST_FOUR_49152, "synthetic_tokens drifted from bench.rs"


def stats(runs):
    """Median, min, max, mean and sample standard deviation of a list of rates (as bench.rs)."""
    if not runs:
        raise ValueError("no runs")
    s = sorted(runs)
    n = len(s)
    median = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    mean = sum(s) / n
    stddev = math.sqrt(sum((r - mean) ** 2 for r in s) / (n - 1)) if n > 1 else 0.0
    return {"median": median, "min": s[0], "max": s[-1], "mean": mean, "stddev": stddev}


def read_peak_rss_bytes():
    """This process's peak resident set size (Linux VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_info():
    """From /proc/cpuinfo: the model name, the flags (x86 "flags" or Arm "Features"), the number
    of physical cores (distinct physical id and core id pairs) and of logical CPUs; 0 where it
    does not say (no such file, or no core ids as on Arm), so each caller picks its fallback."""
    model, flags, cores, logical = "unknown", set(), set(), 0
    try:
        with open("/proc/cpuinfo") as f:
            package = core = None
            for line in list(f) + [""]:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "processor":
                    logical += 1
                elif key == "model name":
                    model = value
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                elif key == "physical id":
                    package = value
                elif key == "core id":
                    core = value
                elif not line.strip():
                    if package is not None and core is not None:
                        cores.add((package, core))
                    package = core = None
    except OSError:
        pass
    return {"model": model, "flags": flags, "physical_cores": len(cores), "logical_cpus": logical}
