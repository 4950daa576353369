#!/usr/bin/env bash
# Fuzz smoke: build the cargo-fuzz targets and run each for a bounded time (total <= 2 minutes
# of fuzzing by default), exiting non-zero on any crash, hang or sanitizer report.
#
# Works on a stable toolchain: cargo-fuzz's default AddressSanitizer build passes one nightly
# flag (-Zsanitizer=address), which RUSTC_BOOTSTRAP=1 lets stable rustc accept. With
# MEMENC_FUZZ_SANITIZER=none the targets are built without ASan (`cargo fuzz build -s none`: plain
# stable, coverage-guided, debug assertions on) for a toolchain that lacks the ASan runtime.
#
# Environment:
#   MEMENC_FUZZ_SECONDS    seconds per target (default 28; 4 targets: 112 s of fuzzing)
#   MEMENC_FUZZ_SANITIZER  address (default) or none
# Prints one summary line: "fuzz-smoke: N targets, E executions, C crashes".
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${MEMENC_FUZZ_SECONDS:-28}
sanitizer=${MEMENC_FUZZ_SANITIZER:-address}
targets=(mem_enc_op mem_enc_probe negotiate helpers)

if ! command -v cargo-fuzz >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"
cargo fuzz build -s "$sanitizer"

# cargo fuzz honours CARGO_TARGET_DIR (scripts/test-all.sh sets one for every build).
bindir="${CARGO_TARGET_DIR:-$root/fuzz/target}/x86_64-unknown-linux-gnu/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Reproducers are kept (git-ignored): `fuzz/target/.../<target> fuzz/artifacts/<file>` replays one.
artifacts="$root/fuzz/artifacts"
mkdir -p "$artifacts"

total=0
crashes=0
for t in "${targets[@]}"; do
    # Fuzz a scratch copy of the committed seeds: the smoke never edits the repository.
    mkdir -p "$work/corpus-$t"
    if [ -d "$root/fuzz/corpus/$t" ]; then
        cp -r "$root/fuzz/corpus/$t/." "$work/corpus-$t/"
    fi
    log="$work/$t.log"
    set +e
    "$bindir/$t" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/$t-" "$work/corpus-$t" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    runs=${runs:-0}
    total=$((total + runs))
    if [ "$rc" -ne 0 ]; then
        crashes=$((crashes + 1))
        echo "fuzz-smoke: $t FAILED (exit $rc); last lines of its log:"
        tail -40 "$log"
        for a in "$artifacts/$t"-*; do
            [ -e "$a" ] && echo "fuzz-smoke: reproducer $a: $(od -An -tx1 "$a" | head -4 | tr -s ' ')"
        done
    else
        echo "fuzz-smoke: $t ok: $runs executions, ${speed:-?} exec/s, ${seconds}s"
    fi
done

echo "fuzz-smoke: ${#targets[@]} targets, $total executions, $crashes crashes (sanitizer: $sanitizer)"
[ "$crashes" -eq 0 ]
