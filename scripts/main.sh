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
# 3. runs the three launch examples (examples-c/{sev,snp,tdx}-launch.c, plain real-host
#    programs) on this host's KVM; where this host lacks the technology, the same unmodified
#    program runs under memenc-sim (`memenc-sim run --profile P --report F -- example`), the
#    simulated host, and says so in its first line ("host: SIMULATED (profile ...)");
# 4. runs them once more under memenc-sim on every profile that has their technology, one line
#    each with the launch measurement from memenc-sim's report (deterministic: the same on
#    every machine);
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
step cargo-build cargo build --release --locked -p memenc --bin memenc -p memenc-sim --bin memenc-sim
sim=$CARGO_TARGET_DIR/release/memenc-sim
setup_args=(--buildtype=release -Dtests=false -Dexamples=true)
if [[ -f $build/meson-private/coredata.dat ]]; then
    step meson-setup meson setup --reconfigure "$build" "$root" "${setup_args[@]}"
else
    step meson-setup meson setup "$build" "$root" "${setup_args[@]}"
fi
step meson-compile meson compile -C "$build"
echo "   built: $CARGO_TARGET_DIR/release/{memenc,memenc-sim}, $build/examples-c/{sev,snp,tdx}-launch"

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
# The measurement memenc-sim's report gives for the launched VM (the last VM the program
# created; the first ones are memenc's probe scratch VMs): "launch digest=..." or "MRTD=...".
report_measure() { # report-file [short]
    local f=$1 short=${2:-} m
    m=$(tr -d '\n' <"$f" | grep -o '"launch_digest": "[0-9a-f]*"\|"mrtd": "[0-9a-f]*"' | tail -n1 |
        sed -E 's/"launch_digest": "([0-9a-f]*)"/launch digest=\1/; s/"mrtd": "([0-9a-f]*)"/MRTD=\1/')
    [[ -z $short ]] || m=$(sed -E 's/=([0-9a-f]{16})[0-9a-f]+/=\1.../' <<<"$m")
    printf '%s' "$m"
}

describe_run() { # rc output-file [report-file] [short]
    local rc=$1 out=$2 report=${3:-} short=${4:-} host outcome measure=""
    host=$(head -n1 "$out" | sed -e 's/^host: //')
    case $rc in
        0) outcome=$(grep -m1 ' launched$' "$out" || echo launched) ;;
        77) outcome=$(grep -m1 -E '^(INCOMPLETE|SKIPPED):' "$out" || echo "could not run here") ;;
        *) outcome="FAILED (exit $rc)" ;;
    esac
    [[ -z $report || ! -s $report ]] || measure=$(report_measure "$report" "$short")
    printf '%s | %s%s' "$host" "$outcome" "${measure:+ | $measure}"
}

run_example() { # profile|- name args...: on this host (-) or under memenc-sim
    local profile=$1 name=$2 out rc
    shift 2
    out=$logs/$name-$profile$(printf '_%s' "$@" | tr -c 'A-Za-z0-9_.@-' '_').out
    last_report=$out.report.json
    rm -f "$last_report"
    set +e
    if [[ $profile == - ]]; then
        "$build/examples-c/$name" "$@" >"$out" 2>&1
    else
        "$sim" run --profile "$profile" --report "$last_report" -- \
            "$build/examples-c/$name" "$@" >"$out" 2>&1
    fi
    rc=$?
    set -e
    ((rc == 0 || rc == 77)) || failed=$((failed + 1))
    last_rc=$rc last_out=$out
}

# The newest profile of each technology: where this host cannot launch, the example runs there.
declare -A fallback=([sev-launch]=snp@6.18 [snp-launch]=snp@6.18 [tdx-launch]=tdx@6.19)

echo
echo "== the launch flows: this host if it can, else the same program under memenc-sim"
for name in sev-launch snp-launch tdx-launch; do
    echo "-- $name"
    run_example - "$name"
    if ((last_rc == 77)); then
        cat "$last_out"
        echo "   (this host cannot: running it unmodified under memenc-sim --profile ${fallback[$name]})"
        run_example "${fallback[$name]}" "$name"
    fi
    cat "$last_out"
    [[ ! -s $last_report ]] || echo "memenc-sim report: $(report_measure "$last_report") [simulated]"
    summary+=("$(printf '%-12s %s' "$name" "$(describe_run "$last_rc" "$last_out" "$last_report" short)")")
done

echo
echo "== the launch flows under memenc-sim on every profile that has their technology"
declare -A profiles=(
    [sev-launch]="sev@6.1 snp@6.11 snp@6.18 snp@6.19 snp@7.0"
    [snp-launch]="snp@6.11 snp@6.18 snp@6.19 snp@7.0"
    [tdx-launch]="tdx@6.16 tdx@6.19"
)
for name in sev-launch snp-launch tdx-launch; do
    for profile in ${profiles[$name]}; do
        run_example "$profile" "$name"
        result=$(describe_run "$last_rc" "$last_out" "$last_report" | cut -d'|' -f2-)
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
