#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# memenc's consumers, built the two ways the README documents, then run (registered as meson
# tests in suite 'consumer'):
#
#   run.sh pkg-config BUILD_ROOT DEFAULT_LIBRARY
#       stages `meson install --destdir` of BUILD_ROOT, checks the installed files, builds
#       consumer.c with `pkg-config --cflags --libs memenc` (--static for a static build) and runs
#       it against the staged library.
#   run.sh subproject SOURCE_ROOT shared|static
#       a parent meson project (parent/) whose subprojects/memenc is SOURCE_ROOT, configured with
#       that default_library; checks how the program was linked and runs it.
#
#   run.sh two-rust BUILD_ROOT RUSTC NATIVE_LIBS...
#       links BUILD_ROOT/libmemenc.a and a second Rust staticlib (other-rust.rs, built with
#       RUSTC) into one C program, as a VMM with its own Rust code links memenc; runs it.
#
# Temporary files are removed on exit (MEMENC_KEEP_TMP=1 keeps them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
meson=${MESON:-meson}
cc=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/memenc-consumer.XXXXXX")
if [[ -z ${MEMENC_KEEP_TMP:-} ]]; then
    trap 'rm -rf "$tmp"' EXIT
else
    echo "keeping $tmp"
fi

fail() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }

# The program must (shared) or must not (static) need libmemenc.so.<major> at run time.
check_linkage() { # program mode
    local needed
    needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    if [[ $2 == static ]]; then
        [[ $needed != *libmemenc* ]] || fail "static link, yet $1 needs: $needed"
        [[ $(nm "$1") == *' T mem_enc_op'$'\n'* ]] || fail "static link, yet mem_enc_op is not in $1"
        ok "linked statically (needs only: $needed)"
    else
        [[ $needed == *libmemenc.so.0* ]] || fail "shared link, yet $1 needs: $needed"
        ok "linked against libmemenc.so.0 (needs: $needed)"
    fi
}

pkg_config_consumer() { # build_root default_library
    local build=$1 mode=$2 dest=$tmp/stage
    [[ $mode == both ]] && mode=shared  # plain --libs picks the shared library
    "$meson" install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/install.log" ||
        { cat "$tmp/install.log"; fail "meson install --destdir"; }

    local pc libdir
    pc=$(find "$dest" -name memenc.pc -print -quit)
    [[ -n $pc ]] || fail "no memenc.pc installed"
    libdir=$(dirname "$(dirname "$pc")")
    [[ -n $(find "$dest" -path '*/include/memenc.h' -print -quit) ]] || fail "memenc.h not installed"
    if [[ $2 == static || $2 == both ]]; then
        [[ -f $libdir/libmemenc.a ]] || fail "libmemenc.a not installed in $libdir"
        ok "installed $libdir/libmemenc.a"
    fi
    if [[ $2 == shared || $2 == both ]]; then
        local real
        real=$(cd "$libdir" && ls libmemenc.so.*.*.*)
        [[ -f $libdir/$real && ! -L $libdir/$real ]] || fail "no libmemenc.so.X.Y.Z in $libdir"
        local soname
        soname=$(readelf -d "$libdir/$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
        [[ $soname == libmemenc.so.* ]] || fail "$real has no SONAME"
        [[ $(readlink "$libdir/$soname") == "$real" ]] || fail "$soname is not a link to $real"
        [[ -L $libdir/libmemenc.so && $(readlink -f "$libdir/libmemenc.so") == "$libdir/$real" ]] ||
            fail "libmemenc.so is not a link to $real"
        ok "installed $real with links $soname and libmemenc.so"
    fi

    # memenc.pc is relocatable (prefix=${pcfiledir}/../..): used straight from the staging
    # tree, with no sysroot.
    PKG_CONFIG_LIBDIR=$(dirname "$pc")
    export PKG_CONFIG_LIBDIR
    unset PKG_CONFIG_SYSROOT_DIR
    grep -q '^prefix=${pcfiledir}' "$pc" || fail "memenc.pc is not relocatable"
    unset PKG_CONFIG_PATH
    local static_flag=() cflags libs
    [[ $mode == static ]] && static_flag=(--static)
    cflags=$(pkg-config --cflags memenc)
    libs=$(pkg-config "${static_flag[@]}" --libs memenc)
    echo "pkg-config ${static_flag[*]} --cflags --libs memenc: $cflags $libs"
    # shellcheck disable=SC2086 # word splitting of pkg-config output is intended
    "$cc" -std=c11 -Wall -Wextra -Werror "$here/consumer.c" -o "$tmp/consumer" $cflags $libs
    check_linkage "$tmp/consumer" "$mode"
    if [[ $mode == shared ]]; then
        local resolved
        resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/consumer" | awk '/libmemenc/ {print $3}')
        [[ $resolved == "$libdir"/* ]] || fail "libmemenc resolved to '$resolved', not the staged $libdir"
    fi
    LD_LIBRARY_PATH=$libdir "$tmp/consumer"
}

subproject_consumer() { # source_root mode
    local src=$1 mode=$2 proj=$tmp/parent
    mkdir -p "$proj/subprojects"
    cp "$here/parent/meson.build" "$here/consumer.c" "$proj/"
    cp "$here/parent/subprojects/memenc.wrap" "$proj/subprojects/"
    ln -s "$src" "$proj/subprojects/memenc"
    "$meson" setup "$proj/build" "$proj" -Ddefault_library="$mode" >"$tmp/setup.log" ||
        { cat "$tmp/setup.log"; fail "meson setup (parent, default_library=$mode)"; }
    grep '^Dependency memenc' "$tmp/setup.log" || fail "dependency('memenc') was not resolved by the subproject"
    "$meson" compile -C "$proj/build" >"$tmp/compile.log" 2>&1 ||
        { cat "$tmp/compile.log"; fail "meson compile (parent, default_library=$mode)"; }
    # tests=false and examples=false reached the subproject: none of its programs were built.
    if find "$proj/build/subprojects/memenc" -type f \( -name 'test-*' -o -name minimal \) | grep -q .; then
        fail "the subproject built its tests or examples despite tests=false examples=false"
    fi
    check_linkage "$proj/build/consumer" "$mode"
    "$proj/build/consumer"
}

two_rust_staticlibs() { # build_root rustc native_libs...
    local build=$1 rustc=$2
    shift 2
    "$rustc" --edition 2024 --crate-type staticlib --crate-name other_rust -C panic=unwind \
        -o "$tmp/libother_rust.a" "$here/other-rust.rs"
    "$cc" -std=c11 -Wall -Wextra -Werror -I"$here/../include" "$here/two-rust.c" -o "$tmp/two-rust" \
        "$build/libmemenc.a" "$tmp/libother_rust.a" "$@"
    check_linkage "$tmp/two-rust" static
    "$tmp/two-rust"
}

case ${1:-} in
    pkg-config) pkg_config_consumer "$2" "$3" ;;
    subproject) subproject_consumer "$2" "$3" ;;
    two-rust) shift; two_rust_staticlibs "$@" ;;
    *) echo "usage: $0 pkg-config BUILD_ROOT DEFAULT_LIBRARY | subproject SOURCE_ROOT shared|static" \
            "| two-rust BUILD_ROOT RUSTC NATIVE_LIBS..." >&2; exit 2 ;;
esac
