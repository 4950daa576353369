#!/bin/sh
# SPDX-License-Identifier: Apache-2.0 OR MIT
# Benchmarks of memenc-sim's system-call boundary (not tests; results go to
# BENCHMARKS.md). Run from anywhere: sim/benches/boundary.sh [boundary|launch|all]
#
#  boundary  per-call costs: three copies of tests-c/bench-boundary.c in lock step (a token
#            goes round a ring of FIFOs; only its holder runs a batch): plain, under
#            `memenc-sim run --profile none`, under `--profile snp@6.18`. RUNS runs (default 3)
#            of BATCHES x ROUNDS rounds (default 20 x 500); per-run medians, then the median
#            over the runs and the differences to plain.
#  launch    1 GiB SNP_LAUNCH_UPDATE and 1 GiB TDX INIT_MEM_REGION (measured): under the
#            supervisor (tests-c/bench-launch.c) against the model in-process (the
#            sim_launch_inproc bench, memenc's helpers on memenc_sim::inprocess descriptors),
#            alternating, LAUNCH_ROUNDS rounds (default 3) of each.
set -eu
WHAT=${1:-all}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RUNS=${RUNS:-3}
BATCHES=${BATCHES:-20}
ROUNDS=${ROUNDS:-500}
LAUNCH_ROUNDS=${LAUNCH_ROUNDS:-3}
WORK=$(mktemp -d /tmp/memenc-sim-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
cargo build --release -q -p memenc-sim --bin memenc-sim
SIM=$CARGO_TARGET_DIR/release/memenc-sim
echo "# $(uname -r), $(nproc) CPUs, load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"

boundary() {
    cc -O2 -Wall -Wextra -Werror -o "$WORK/bench-boundary" sim/tests-c/bench-boundary.c
    cd "$WORK"
    mkfifo f0 f1 f2
    : > all.txt
    r=1
    while [ "$r" -le "$RUNS" ]; do
        ./bench-boundary plain f0 f1 1 "$BATCHES" "$ROUNDS" > o0 &
        p0=$!
        "$SIM" run --profile none -- ./bench-boundary none f1 f2 0 "$BATCHES" "$ROUNDS" > o1 2>/dev/null &
        p1=$!
        "$SIM" run --profile snp@6.18 -- ./bench-boundary snp@6.18 f2 f0 0 "$BATCHES" "$ROUNDS" > o2 2>/dev/null &
        p2=$!
        wait $p0 $p1 $p2
        echo "## run $r"
        cat o0 o1 o2
        sed "s/^/$r /" o0 o1 o2 >> all.txt
        r=$((r + 1))
    done
    echo "## median over $RUNS runs of the per-run medians (ns); delta: minus plain"
    awk '{ k = $2 " " $3; v[k] = v[k] " " $5; res[k] = substr($0, index($0, "result")) }
         END {
           n = split("check_ext_vm_types check_ext_user_mem encrypt_op get_api_version getppid kvm_run_out", ops, " ")
           split("plain none snp@6.18", who, " ")
           for (i = 1; i <= n; i++) for (w = 1; w <= 3; w++) {
             k = who[w] " " ops[i]; c = split(v[k], a, " ")
             for (x = 1; x <= c; x++) for (y = x + 1; y <= c; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
             m[k] = a[int((c + 1) / 2)]
             printf "%-9s %-19s %7d  delta %+7d  [%s]  %s\n", who[w], ops[i], m[k], m[k] - m["plain " ops[i]], v[k], res[k]
           }
         }' all.txt
    cd "$ROOT"
}

launch() {
    cc -O2 -Wall -Wextra -Werror -o "$WORK/bench-launch" sim/tests-c/bench-launch.c
    cargo bench -q -p memenc-sim --bench sim_launch_inproc --no-run 2>/dev/null
    INPROC=$(ls -t "$CARGO_TARGET_DIR"/release/deps/sim_launch_inproc-* | grep -v '\.d$' | head -1)
    r=1
    while [ "$r" -le "$LAUNCH_ROUNDS" ]; do
        for what in snp tdx; do
            "$INPROC" --bench "$what" | sed "s/^/round $r in-process    /"
            "$SIM" run --profile "$( [ $what = snp ] && echo snp@6.18 || echo tdx@6.19 )" -- \
                "$WORK/bench-launch" "$what" 1024 2>/dev/null | sed "s/^/round $r supervisor    /"
        done
        r=$((r + 1))
    done | tee "$WORK/launch.txt"
    echo "## medians (MiB/s) and ratio supervisor / in-process"
    awk '/MiB\/s/ { for (i = 1; i <= NF; i++) if ($(i) == "MiB/s") v[$3 " " $4] = v[$3 " " $4] " " $(i-1) }
         END {
           split("snp tdx", w, " ")
           for (j = 1; j <= 2; j++) {
             for (s = 0; s < 2; s++) {
               k = (s ? "supervisor " : "in-process ") w[j]; c = split(v[k], a, " ")
               for (x = 1; x <= c; x++) for (y = x + 1; y <= c; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
               m[k] = a[int((c + 1) / 2)]
               printf "%-10s %s median %8.1f MiB/s  [%s]\n", (s ? "supervisor" : "in-process"), w[j], m[k], v[k]
             }
             printf "ratio %s: %.3f\n", w[j], m["supervisor " w[j]] / m["in-process " w[j]]
           }
         }' "$WORK/launch.txt"
}

case "$WHAT" in
boundary) boundary ;;
launch) launch ;;
all) boundary; launch ;;
*) echo "usage: $0 [boundary|launch|all]" >&2; exit 2 ;;
esac
