#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# sim/tests/concurrency.rs's pthread test (8 threads x 5 rounds of probing, negotiation, mem_enc_op
# and three simulated launches each) under valgrind's thread checkers; any report fails.
#
#   bash scripts/thread-check.sh [helgrind] [drd]      (default: both)
#
# Builds the test binary (debug, cargo test --no-run) and scripts/valgrind-std-sync.c as a
# preload library per tool (it makes std's Mutex and Arc visible to the tools; the file says
# how), then runs
#
#   LD_PRELOAD=<lib> valgrind --tool=<tool> -s --suppressions=sim/tests/concurrency.supp \
#       --error-exitcode=99 <binary> --test-threads=1 pthreads
#
# Prints per tool its error summary, the suppressions used with their counts, and the wall
# time; valgrind's whole output is in $CARGO_TARGET_DIR/thread-check/<tool>.log.
# Needs valgrind with its headers (Debian/Ubuntu: the valgrind package) and a C compiler.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools=("$@")
((${#tools[@]})) || tools=(helgrind drd)
for tool in "${tools[@]}"; do
    [[ $tool == helgrind || $tool == drd ]] || { echo "usage: $0 [helgrind] [drd]" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "thread-check: valgrind not found" >&2; exit 1; }
cc=${CC:-cc}
command -v "$cc" >/dev/null || { echo "thread-check: no C compiler ($cc)" >&2; exit 1; }

out="${CARGO_TARGET_DIR:-$root/target}/thread-check"
mkdir -p "$out"

bin=$(cargo test --locked --no-run -p memenc-sim --test concurrency --message-format=json-render-diagnostics |
      grep '"kind":\["test"\],"crate_types":\["bin"\],"name":"concurrency"' |
      sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[[ -x $bin ]] || { echo "thread-check: test binary not found" >&2; exit 1; }

# The wrappers match these names; without them the run would drown in reports.
symbols=$(nm "$bin")
# shellcheck disable=SC2016 # the $ are part of the mangled names
for sym in '_ZN3std4sync6poison5mutex14Mutex$LT$T$GT$4lock17h' \
           '_ZN87_$LT$std..sync..poison..mutex..MutexGuard$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h'; do
    grep -qF "$sym" <<<"$symbols" ||
        { echo "thread-check: $sym* not in $bin (toolchain renamed it? see scripts/valgrind-std-sync.c)" >&2; exit 1; }
done

failed=0
for tool in "${tools[@]}"; do
    lib="$out/std-sync-$tool.so"
    define=()
    [[ $tool == drd ]] && define=(-DMEMENC_DRD)
    "$cc" -O1 -g -fPIC -shared "${define[@]}" -o "$lib" scripts/valgrind-std-sync.c
    log="$out/$tool.log"
    start=$EPOCHREALTIME
    rc=0
    LD_PRELOAD=$lib valgrind --tool="$tool" -s --suppressions=sim/tests/concurrency.supp \
        --error-exitcode=99 "$bin" --test-threads=1 pthreads >"$log" 2>&1 || rc=$?
    wall=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    summary=$(grep -m1 'ERROR SUMMARY' "$log" | sed 's/^==[0-9]*== //')
    printf '%s: %s, exit %d, %s s wall\n' "$tool" "${summary:-no summary}" "$rc" "$wall"
    grep 'used_suppression:' "$log" | sed 's/^--[0-9]*-- *used_suppression: */    used /' || true
    if ((rc != 0)); then
        failed=1
        grep -q 'test result: ok' "$log" || echo "    the test itself did not pass"
        echo "    first report (whole output: $log):"
        awk '/Possible data race|Conflicting (load|store)|Thread #[0-9]+:|pthread.*error/ {on=1}
             on {print "    " $0; if (++n > 40) exit}' "$log"
    fi
done
exit "$failed"
