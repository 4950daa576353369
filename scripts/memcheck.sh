#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# The C tests and examples (meson suites 'c' and 'examples') under memory checkers; any report
# fails the run.
#
#   scripts/memcheck.sh asan BUILD_DIR shared|static
#       configures BUILD_DIR with -Db_sanitize=address,undefined (UBSan non-recovering, so a
#       report is an error exit), builds and runs them. The Rust library is not instrumented,
#       but it is linked by the C compiler with the sanitizer runtime, so every allocation
#       (Rust's too) goes through ASan's malloc and leaks anywhere are reported.
#   scripts/memcheck.sh valgrind BUILD_DIR [shared|static]
#       configures BUILD_DIR if it is not a meson build directory yet, builds, and runs them
#       under valgrind memcheck with --leak-check=full; any error or definite/possible leak
#       fails. The only suppressions (scripts/valgrind.supp) are for the KVM NULL-probe ioctl,
#       whose meaning valgrind does not know; the file explains them.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
meson=${MESON:-meson}
kind=${1:-}
build=${2:-}
library=${3:-shared}
[[ ($kind == asan || $kind == valgrind) && -n $build ]] ||
    { echo "usage: $0 asan|valgrind BUILD_DIR [shared|static]" >&2; exit 2; }

setup_args=(-Ddefault_library="$library" -Dtests=true -Dexamples=true)
test_args=(--suite c --suite examples --print-errorlogs --num-processes 2)
if [[ $kind == asan ]]; then
    # The examples under memenc-sim too (ASan runs unchanged below the seccomp filter); under
    # valgrind, meson's wrapper would wrap the supervisor, not the example, so not there.
    if [[ -n ${MEMENC_SIMULATOR:-} ]]; then
        setup_args+=(-Dsimulator="$MEMENC_SIMULATOR")
        test_args+=(--suite examples-sim)
    fi
    setup_args+=('-Db_sanitize=address,undefined' -Db_lundef=false -Dc_args=-fno-sanitize-recover=all
                 -Dcpp_args=-fno-sanitize-recover=all)
    # meson's defaults plus leak detection; a report aborts the test, which fails it.
    export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:print_summary=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1:print_summary=1
else
    command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
    test_args+=(--wrapper "valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible --track-origins=yes --quiet --suppressions=$root/scripts/valgrind.supp")
    # valgrind is ~50x slower; meson's per-test timeouts are multiplied accordingly.
    test_args+=(--timeout-multiplier 10)
fi

if [[ ! -f $build/meson-private/coredata.dat ]]; then
    "$meson" setup "$build" "$root" "${setup_args[@]}"
elif [[ $kind == asan ]]; then
    "$meson" configure "$build" "${setup_args[@]}"
fi
"$meson" compile -C "$build"
"$meson" test -C "$build" "${test_args[@]}"
