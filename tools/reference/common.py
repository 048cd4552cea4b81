"""Helpers shared by the scripts in tools/reference/ and bench/ (standard library only, so
that importing it pulls in no llama.cpp, torch or numpy)."""
import hashlib
import json
import os


def sha256_file(path):
    """Hex sha256 of the file at `path`, read in 1 MiB chunks (models are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dump_json(obj, path):
    """Writes `obj` to `path` (creating its folder) as JSON indented by 1, ending in a newline."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
