#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# memenc's main job (the README's first command):
#
#   bash scripts/main.sh
#
# Builds the library (release), then asks this host what it supports (`memenc probe`) and runs
# the launch examples. Each piece that does not exist yet is named instead of run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
command -v cargo >/dev/null || { echo "memenc needs the Rust toolchain (cargo) on PATH" >&2; exit 1; }

echo "== building memenc (release)"
cargo build --release --locked

# The package's binary and example targets, from cargo itself.
targets=$(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
for pkg in json.load(sys.stdin)["packages"]:
    if pkg["name"] == "memenc":
        for t in pkg["targets"]:
            for kind in t["kind"]:
                if kind in ("bin", "example"):
                    print(kind, t["name"])')

missing=()
if grep -qx 'bin memenc' <<<"$targets"; then
    echo "== memenc probe: what this host supports"
    cargo run --release --locked --quiet --bin memenc -- probe
else
    missing+=("the memenc command-line tool (bin target 'memenc') for 'memenc probe'")
fi

launch=$(awk '$1 == "example" && $2 ~ /^launch/ {print $2}' <<<"$targets")
if [[ -n $launch ]]; then
    for example in $launch; do
        echo "== example $example"
        cargo run --release --locked --quiet --example "$example"
    done
else
    missing+=("the launch examples (cargo examples named launch*)")
fi

if ((${#missing[@]})); then
    echo "== not there yet:"
    printf '  - %s\n' "${missing[@]}"
fi
