# SPDX-License-Identifier: Apache-2.0 OR MIT
# Sourced by scripts/main.sh and scripts/test-all.sh: installs the tools they need when they
# are missing, with apt-get as root on Debian/Ubuntu (else it says what to install), and meson
# from PyPI when the system's is older than memenc's floor.
#
#   memenc_prerequisites LOG COMMAND:PACKAGE...   e.g. meson:meson ninja:ninja-build cc:gcc
#   memenc_rust_components LOG                    rustfmt and clippy through rustup, if missing
#
# Output of the installers goes to LOG; what is missing or being installed is said on stdout.

# version_ge A B: A >= B (version order).
version_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }

meson_ok() {
    command -v meson >/dev/null && version_ge "$(meson --version 2>/dev/null)" 1.0
}

memenc_prerequisites() {
    local log=$1 missing=() pair cmd pkg
    shift
    for pair in "$@"; do
        cmd=${pair%%:*} pkg=${pair#*:}
        if [[ $cmd == meson ]]; then meson_ok && continue; else command -v "$cmd" >/dev/null && continue; fi
        [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "installing: ${missing[*]}"
            export DEBIAN_FRONTEND=noninteractive
            if ! { apt-get update -qq &&
                   apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >>"$log" 2>&1; then
                cat "$log"
                echo "apt-get install failed; what needs ${missing[*]} will fail"
            fi
        else
            echo "missing: ${missing[*]} (install them, or run this as root on Debian/Ubuntu)"
        fi
    fi
    # A distro meson older than memenc's floor: take a current one from PyPI.
    if [[ " $* " == *" meson:"* ]] && ! meson_ok && command -v python3 >/dev/null; then
        echo "meson >= 1.0 not available from the system; installing it with pip"
        python3 -m pip install --quiet --disable-pip-version-check 'meson>=1.0' >>"$log" 2>&1 ||
            python3 -m pip install --quiet --break-system-packages 'meson>=1.0' >>"$log" 2>&1
        hash -r
    fi
    local tool
    for tool in cargo rustc; do
        command -v "$tool" >/dev/null || echo "missing: $tool (the Rust toolchain, e.g. from rustup)"
    done
    return 0
}

memenc_rust_components() {
    local log=$1 component
    for component in fmt:rustfmt clippy:clippy; do
        if ! cargo "${component%%:*}" --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
            rustup component add "${component#*:}" >>"$log" 2>&1 || true
        fi
    done
}

# memenc_python_module LOG MODULE PACKAGE: the independent measurement tool the simulator's
# digests are checked against (sev-snp-measure), from PyPI when it is not importable.
memenc_python_module() {
    local log=$1 module=$2 package=$3
    command -v python3 >/dev/null || { echo "missing: python3"; return 0; }
    python3 -c "import $module" 2>/dev/null && return 0
    echo "installing: $package (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check "$package" >>"$log" 2>&1 ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
            "$package" >>"$log" 2>&1 || echo "pip install $package failed; the digest checks will SKIP"
    return 0
}
