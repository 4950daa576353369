#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# memenc's main job (the README's first command):
#
#   bash scripts/main.sh
#
# 1. builds memenc in release mode: the `memenc` command-line tool with cargo, the C library and
#    the C examples with meson (installing meson, ninja and a C compiler when they are missing,
#    like scripts/test-all.sh: scripts/prerequisites.sh);
# 2. asks this host what it supports: `memenc probe`;
# 3. runs the three launch examples (examples-c/{sev,snp,tdx}-launch.c) with --auto: on this
#    host's KVM where it has the technology, otherwise on memenc's simulated host, and each
#    says which in its first line;
# 4. runs them once more on every simulated profile that has their technology, one line each
#    (the measurements are deterministic: the same on every machine);
# 5. ends with a summary.
#
# Build output goes to $MEMENC_MAIN_DIR (default build-main/), logs to its logs/. Exit status:
# 0 unless the build failed or a launch failed (a launch that could not run here, exit 77, is
# reported, not failed).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
work=${MEMENC_MAIN_DIR:-$root/build-main}
logs=$work/logs
build=$work/meson
mkdir -p "$logs"
# One cargo target directory for cargo and meson, as scripts/test-all.sh does.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TERM_COLOR=never

# shellcheck source=scripts/prerequisites.sh
source "$root/scripts/prerequisites.sh"
: >"$logs/install.log"
memenc_prerequisites "$logs/install.log" meson:meson ninja:ninja-build cc:gcc python3:python3
if ! command -v cargo >/dev/null; then
    echo "memenc needs the Rust toolchain (cargo) on PATH" >&2
    exit 1
fi

# step NAME COMMAND...: runs a build step with its output in logs/NAME.log; on failure shows
# the end of the log and stops.
step() {
    local name=$1
    shift
    if ! "$@" >"$logs/$name.log" 2>&1; then
        echo "FAILED: $* (log: $logs/$name.log)"
        tail -n 40 "$logs/$name.log"
        exit 1
    fi
}

echo "== building memenc (release): cargo, then meson (C library and examples)"
step cargo-build cargo build --release --locked --bin memenc
setup_args=(--buildtype=release -Dtests=false -Dexamples=true)
if [[ -f $build/meson-private/coredata.dat ]]; then
    step meson-setup meson setup --reconfigure "$build" "$root" "${setup_args[@]}"
else
    step meson-setup meson setup "$build" "$root" "${setup_args[@]}"
fi
step meson-compile meson compile -C "$build"
echo "   built: $CARGO_TARGET_DIR/release/memenc, $build/examples-c/{sev,snp,tdx}-launch"

summary=()
failed=0

echo
echo "== memenc probe: what this host supports"
set +e
"$CARGO_TARGET_DIR/release/memenc" probe
rc=$?
set -e
if ((rc == 0)); then
    summary+=("$(printf '%-12s ok' 'probe')")
else
    summary+=("$(printf '%-12s could not probe this host (exit %d; e.g. no /dev/kvm)' probe "$rc")")
fi

# The result of one launch run, from its output: host kind, outcome, measurement.
describe_run() { # rc output-file [short: measurements cut to 16 hex digits]
    local rc=$1 out=$2 short=${3:-} host outcome measure
    host=$(head -n1 "$out" | sed -e 's/^host: //' -e 's/;.*/)/')
    case $rc in
        0) outcome=$(grep -m1 ' launched$' "$out" || echo launched) ;;
        77) outcome=$(grep -m1 -E '^(INCOMPLETE|SKIPPED):' "$out" || echo "could not run here") ;;
        *) outcome="FAILED (exit $rc)" ;;
    esac
    measure=$(grep -E '^(measurement|launch digest|MRTD)' "$out" |
        sed -E 's/ \[simulated[^]]*\]//; s/ \(([0-9]+) bytes\): /=/' | paste -sd' ' -)
    [[ -z $short ]] || measure=$(sed -E 's/=([0-9a-f]{16})[0-9a-f]+/=\1.../g' <<<"$measure")
    printf '%s | %s%s' "$host" "$outcome" "${measure:+ | $measure}"
}

run_example() { # name args...
    local name=$1 out rc
    shift
    out=$logs/$name$(printf '_%s' "$@" | tr -c 'A-Za-z0-9_.@-' '_').out
    set +e
    "$build/examples-c/$name" "$@" >"$out" 2>&1
    rc=$?
    set -e
    ((rc == 0 || rc == 77)) || failed=$((failed + 1))
    last_rc=$rc last_out=$out
}

echo
echo "== the launch flows (--auto: this host if it can, else the simulated host)"
for name in sev-launch snp-launch tdx-launch; do
    echo "-- $name --auto"
    run_example "$name" --auto
    cat "$last_out"
    summary+=("$(printf '%-12s %s' "$name" "$(describe_run "$last_rc" "$last_out" short)")")
done

echo
echo "== the launch flows on every simulated profile that has their technology"
declare -A profiles=(
    [sev-launch]="sev@6.1 snp@6.11 snp@6.18"
    [snp-launch]="snp@6.11 snp@6.18"
    [tdx-launch]="tdx@6.16 tdx@6.19"
)
for name in sev-launch snp-launch tdx-launch; do
    for profile in ${profiles[$name]}; do
        run_example "$name" --sim "$profile"
        result=$(describe_run "$last_rc" "$last_out" | cut -d'|' -f2-)
        printf '%-12s %-9s %s\n' "$name" "$profile" "$result"
        if ((last_rc != 0 && last_rc != 77)); then sed 's/^/    /' "$last_out"; fi
    done
done

echo
echo "== summary (outputs in $logs)"
printf '%s\n' "${summary[@]}"
if ((failed)); then
    echo "$failed launch run(s) FAILED"
    exit 1
fi
echo "all launch runs completed (exit 77 = could not run the whole flow here, shown above)"
