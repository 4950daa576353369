#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# Every test memenc has, the way CI runs them (.ci/run calls this):
#
#   bash scripts/test-all.sh
#
# Needs the Rust toolchain (cargo, rustc, rustfmt, clippy). Installs what else it needs when it
# is missing (meson, ninja, pkg-config, valgrind, a C++ compiler), with apt-get as root on
# Debian/Ubuntu, else tells you what to install. Then runs these suites, each logged to
# $MEMENC_TEST_DIR/logs/<suite>.log (default build-test-all/):
#
#   fmt, clippy, cargo-test            the Rust checks of the workspace (memenc and memenc-sim:
#                                      the model, the supervisor, raw-ioctl launches under it
#                                      checked against sev-snp-measure)
#   meson-shared, meson-static         meson setup/compile/test with default_library=shared and
#                                      static: C tests, examples (on this host, and under
#                                      memenc-sim on every profile), ABI checks
#   consumer-shared, consumer-static   pkg-config consumer of a staged install; a parent meson
#                                      project using memenc as a subproject (shared and static)
#   asan-shared, asan-static           C tests and examples under ASan+UBSan
#   valgrind-shared, valgrind-static   C tests and examples under valgrind memcheck
#   hardware                           MEMENC_HW=1 only: the launch examples on this host's
#                                      real SEV/SNP/TDX (skipped otherwise)
#   qemu                               scripts/qemu-check.sh: Debian's QEMU 7.2 and 10.2 converted
#                                      by qemu/memenc.cocci, built against memenc (static and
#                                      shared) and unpatched, launched under memenc-sim; digests
#                                      against sev-snp-measure (the longest suite: ~30 min cold,
#                                      ~2 min with its cache; MEMENC_SKIP=qemu leaves it out)
#
# and ends with "N passed, N failed, N skipped" (suites). Exit status 1 if any suite failed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
work=${MEMENC_TEST_DIR:-$root/build-test-all}
logs=$work/logs
mkdir -p "$logs"
# One cargo target directory for cargo and every meson build, so each profile compiles once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export CARGO_TERM_COLOR=never

say() { printf '%s\n' "$*"; }

# --- what the suites need -------------------------------------------------------------------
# shellcheck source=scripts/prerequisites.sh
source "$root/scripts/prerequisites.sh"

install_prerequisites() {
    : >"$logs/apt.log"
    memenc_prerequisites "$logs/apt.log" meson:meson ninja:ninja-build pkg-config:pkg-config \
        valgrind:valgrind c++:g++ cc:gcc nm:binutils readelf:binutils python3:python3
    memenc_rust_components "$logs/apt.log"
    memenc_python_module "$logs/apt.log" sevsnpmeasure sev-snp-measure
}

# --- suites ---------------------------------------------------------------------------------
passed=0 failed=0 skipped=0
summary=()

# suite NAME COMMAND...: runs COMMAND with its output in logs/NAME.log; one line of result.
# A suite named in $MEMENC_SKIP (space-separated) is reported as skipped, not run.
suite() {
    local name=$1 start rc detail="" status
    shift
    start=$SECONDS
    printf '%-16s ' "$name"
    if [[ " ${MEMENC_SKIP:-} " == *" $name "* ]]; then
        echo "SKIPPED: in MEMENC_SKIP" >"$logs/$name.log"
        rc=77
    else
        "$@" >"$logs/$name.log" 2>&1
        rc=$?
    fi
    # meson's own tally, when the suite ran meson test.
    if grep -q '^Ok: ' "$logs/$name.log"; then
        detail=" ($(awk '/^(Ok|Fail|Skipped|Timeout):/ && ($1 ~ /^(Ok|Skipped)/ || $2 > 0) {
                            sub(":", "", $1); printf "%s%s %s", sep, $2, tolower($1); sep=", "}' \
                        "$logs/$name.log") meson tests)"
    fi
    if ((rc == 0)); then
        passed=$((passed + 1)); status=PASS
    elif ((rc == 77)); then
        skipped=$((skipped + 1)); status=SKIP detail=": $(tail -n1 "$logs/$name.log")"
    else
        failed=$((failed + 1)); status=FAIL detail="$detail, log: $logs/$name.log"
    fi
    say "$status$detail [$((SECONDS - start))s]"
    summary+=("$(printf '%-5s %-16s%s' "$status" "$name" "$detail")")
    if ((rc != 0 && rc != 77)); then
        say "----- last lines of $logs/$name.log -----"
        tail -n 40 "$logs/$name.log"
        say "-----"
    fi
}

# need TOOL...: fails the suite, saying which, when a tool is missing (the install step could
# not provide it).
need() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed"; return 1; }
    done
}

# memenc-sim (debug build, shared by every suite): the meson suites run the launch examples,
# unmodified, under it on every profile.
simulator=$CARGO_TARGET_DIR/debug/memenc-sim
export MEMENC_SIMULATOR=$simulator

with_sim() { # command...: with memenc-sim built first
    cargo build --locked -p memenc-sim --bin memenc-sim && "$@"
}

meson_build() { # dir default_library [meson test args...]
    local dir=$1 library=$2
    shift 2
    need meson ninja || return
    with_sim true || return
    local opts=(-Ddefault_library="$library" -Dsimulator="$simulator")
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        meson setup --reconfigure "$dir" "$root" "${opts[@]}" || return
    else
        meson setup "$dir" "$root" "${opts[@]}" || return
    fi
    meson compile -C "$dir" || return
    meson test -C "$dir" --print-errorlogs "$@"
}

consumers() { # dir [test names...]
    local dir=$1
    shift
    need meson ninja pkg-config || return
    meson test -C "$dir" --print-errorlogs "$@"
}

# MEMENC_HW=1: the launch examples for real on this host's SEV/SNP/TDX hardware (no simulator),
# saying what could not run; otherwise a visible skip.
hardware() {
    [[ ${MEMENC_HW:-0} == 1 ]] || { echo "SKIPPED: set MEMENC_HW=1 to run the launch examples on this host's hardware"; return 77; }
    local dir=$work/shared ex rc=0 ran=() missing=()
    [[ -x $dir/examples-c/probe ]] || { echo "FAIL: meson-shared did not build the examples"; return 1; }
    for ex in probe qemu-style sev-launch snp-launch tdx-launch; do
        "$dir/examples-c/$ex"
        case $? in
            0) ran+=("$ex") ;;
            77) missing+=("$ex (this host lacks the technology)") ;;
            *) rc=1; echo "FAILED: $ex" ;;
        esac
    done
    echo "hardware: ran: ${ran[*]:-none}"
    echo "hardware: could not run: ${missing[*]:-none}"
    return $rc
}

install_prerequisites

say "memenc: every test ($(cargo --version 2>/dev/null), meson $(meson --version 2>/dev/null || echo missing))"
suite fmt cargo fmt --all --check
suite clippy cargo clippy --locked --workspace --all-targets -- -D warnings
suite cargo-test cargo test --locked --workspace
suite meson-shared meson_build "$work/shared" shared --no-suite consumer
suite consumer-shared consumers "$work/shared" --suite consumer
suite meson-static meson_build "$work/static" static --no-suite consumer
suite consumer-static consumers "$work/static" consumer-pkg-config
suite asan-shared with_sim bash scripts/memcheck.sh asan "$work/asan-shared" shared
suite asan-static with_sim bash scripts/memcheck.sh asan "$work/asan-static" static
suite valgrind-shared bash scripts/memcheck.sh valgrind "$work/shared"
suite valgrind-static bash scripts/memcheck.sh valgrind "$work/static"
suite hardware hardware
suite thread-check bash scripts/thread-check.sh
suite fuzz-smoke bash scripts/fuzz-smoke.sh
suite qemu bash scripts/qemu-check.sh

say ""
say "== summary (logs in $logs) =="
printf '%s\n' "${summary[@]}"
say ""
say "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
