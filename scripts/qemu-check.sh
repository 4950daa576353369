#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
#
# QEMU as memenc's real client (issue #12). For each QEMU version (Debian's source packages:
# bookworm 7.2, sid 10.2):
#   1. apt-get source QEMU (deb-src entries derived from this machine's own apt configuration,
#      in a private apt directory under the cache: the system's apt sources are not changed),
#      and the firmware (.debs downloaded and unpacked, not installed);
#   2. applies qemu/memenc.cocci (spatch) and qemu/build-change.py to a copy of the tree;
#   3. builds qemu-system-x86_64 three times: memenc as a static meson subproject
#      (subprojects/memenc -> this checkout), memenc shared through pkg-config against a
#      `meson install --destdir` staging of this checkout, and the unpatched tree; checks with
#      nm/ldd that the patched binaries call memenc's mem_enc_op;
#   4. launches SEV, SEV-ES, SEV-SNP (with and without -kernel/-initrd/-append hashes) and TDX
#      guests with 1 and 4 vCPUs under memenc-sim (built from this checkout), drives each
#      through QMP (query-sev, query-sev-launch-measure, cont) and lets QEMU exit by itself;
#   5. checks each SEV/SEV-ES/SNP launch digest in memenc-sim's report against sev-snp-measure,
#      QEMU's query-sev-launch-measure blob against the HMAC recomputed from that digest, prints
#      the TDX MRTD, and requires the unpatched QEMU's report to equal the patched ones'.
# One line per (version, build, technology, vCPUs); last line `N passed, N failed`.
#
# Environment:
#   MEMENC_QEMU_CACHE     cache for QEMU sources, firmware and QEMU object files
#                         (default /var/cache/memenc-qemu); keyed by the Debian version
#   MEMENC_QEMU_VERSIONS  QEMU versions to check (default "7.2 10.2")
#   MEMENC_QEMU_BUILDS    builds per version (default "static shared unpatched")
#   MEMENC_QEMU_JOBS      ninja -j (default: nproc)
#   MEMENC_QEMU_TIMEOUT   seconds per launch (default 180)
#   MEMENC_QEMU_KEEP=1    keep the per-run work directory (logs, reports, strace-able commands)
# Everything memenc-related (memenc-sim, the staged install, the subproject's cargo build) is
# rebuilt from this checkout on every run; only QEMU's own objects are reused (ccache and the
# cached build directories).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MEMENC_QEMU_CACHE:-/var/cache/memenc-qemu}
versions=${MEMENC_QEMU_VERSIONS:-7.2 10.2}
builds=${MEMENC_QEMU_BUILDS:-static shared unpatched}
jobs=${MEMENC_QEMU_JOBS:-$(nproc)}
run_timeout=${MEMENC_QEMU_TIMEOUT:-180}
mkdir -p "$cache"
work=$(mktemp -d "${TMPDIR:-/tmp}/memenc-qemu-check.XXXXXX")
if [[ -z ${MEMENC_QEMU_KEEP:-} ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "keeping $work"
fi

log() { echo "qemu-check: $*" >&2; }
same_vms() { # report report: the same profile and the same VMs
    python3 -c 'import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(0 if a["vms"] and (a["profile"], a["vms"]) == (b["profile"], b["vms"]) else 1)' "$1" "$2" 2>/dev/null
}
die() { echo "qemu-check: FATAL: $*" >&2; exit 1; }
timed() { # name command... : runs it, appends "name seconds" to $work/times
    local name=$1 t0 t1; shift
    t0=$(date +%s)
    "$@"
    t1=$(date +%s)
    echo "$name $((t1 - t0))" >>"$work/times"
    log "$name: $((t1 - t0)) s"
}

# ---------------------------------------------------------------- prerequisites
need_apt=()
for p in spatch:coccinelle ccache:ccache dpkg-source:dpkg-dev strace:strace pkg-config:pkg-config \
         flex:flex bison:bison ninja:ninja-build meson:meson; do
    command -v "${p%%:*}" >/dev/null || need_apt+=("${p#*:}")
done
for p in libglib2.0-dev libpixman-1-dev libfdt-dev python3-venv; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
python3 -c 'import sevsnpmeasure' 2>/dev/null && command -v sev-snp-measure >/dev/null ||
    python3 -m pip install -q sev-snp-measure
command -v cargo >/dev/null || die "cargo (Rust >= 1.85) must be on PATH"

# ---------------------------------------------------------------- a private apt for sources
# deb-src (bookworm, sid) and deb (sid, for firmware) entries derived from the machine's own
# debian.sources: the stanza that lists bookworm, with Types and Suites changed. The system's
# apt sources are left alone; lists and downloads live in the cache.
apt_dir=$cache/apt
mkdir -p "$apt_dir"/{etc,lists/partial,archives/partial}
sys_sources=/etc/apt/sources.list.d/debian.sources
[[ -f $sys_sources ]] || die "no $sys_sources to derive deb-src entries from"
base_stanza=$(awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)Suites:[ \t]*([^\n]*[ \t])?bookworm([ \t]|\n|$)/ { print; exit }' "$sys_sources")
[[ -n $base_stanza ]] || die "no bookworm entry in $sys_sources"
{
    for t in "deb-src bookworm" "deb-src sid" "deb sid"; do
        sed -e "s/^Types:.*/Types: ${t% *}/" -e "s/^Suites:.*/Suites: ${t#* }/" <<<"$base_stanza"
        echo
    done
} >"$apt_dir/memenc-qemu.sources.new"
find "$apt_dir/etc" -type f ! -name memenc-qemu.sources -delete
cmp -s "$apt_dir/memenc-qemu.sources.new" "$apt_dir/etc/memenc-qemu.sources" ||
    { mv "$apt_dir/memenc-qemu.sources.new" "$apt_dir/etc/memenc-qemu.sources"; rm -f "$apt_dir/updated"; }
rm -f "$apt_dir/memenc-qemu.sources.new"
papt=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/etc"
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
      -o APT::Architecture=amd64 -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
if [[ ! -f $apt_dir/updated || -n $(find "$apt_dir/updated" -mmin +1440) ]]; then
    log "apt-get update (private lists: bookworm/sid sources, sid firmware)"
    apt-get "${papt[@]}" update -qq >/dev/null && touch "$apt_dir/updated"
fi

# The newest Debian source version of qemu whose upstream version starts with $1.
debian_version() {
    apt-cache "${papt[@]}" showsrc qemu | sed -n 's/^Version: //p' |
        grep -E "^(1:)?$(sed 's/\./\\./g' <<<"$1")[.+~]" | sort -V | tail -n1
}

# ---------------------------------------------------------------- QEMU source, per version
fetch_qemu() { # short-version -> sets src_dir (pristine, unpatched) and qemu_deb_version
    local v=$1 dv dir
    dv=$(debian_version "$v")
    [[ -n $dv ]] || die "no qemu $v source package in bookworm or sid"
    qemu_deb_version=$dv
    dir=$cache/qemu-${dv#*:}
    if [[ ! -f $dir/unpacked ]]; then
        rm -rf "$dir"
        mkdir -p "$dir/dl"
        log "apt-get source qemu=$dv"
        (cd "$dir/dl" && apt-get "${papt[@]}" source --download-only -qq "qemu=$dv" >/dev/null)
        # apt-get checked the files against the signed Release/Sources; dpkg-source only warns
        # that it has no keyring for the .dsc's own signature.
        (cd "$dir" && dpkg-source -x dl/qemu_"${dv#*:}".dsc unpatched >"$dir/dpkg-source.log" 2>&1) ||
            { cat "$dir/dpkg-source.log"; die "dpkg-source -x"; }
        # 10.x: configure installs meson from python/wheels into its venv; the +ds tarball has
        # no wheels, so fetch the one pythondeps.toml names from PyPI.
        local mv=
        [[ -f $dir/unpatched/pythondeps.toml ]] &&
            mv=$(sed -n 's/^meson = {.*installed = "\([0-9.]*\)".*/\1/p' "$dir/unpatched/pythondeps.toml" | head -n1)
        if [[ -n $mv ]]; then
            mkdir -p "$dir/unpatched/python/wheels"
            python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir/unpatched/python/wheels" "meson==$mv"
        fi
        touch "$dir/unpacked"
    fi
    src_dir=$dir
}

# The patched tree: a copy of the pristine one with the semantic patch and the build change;
# a file is replaced only when its content changes, so cached objects stay valid.
patch_qemu() { # dir
    local dir=$1 t f
    if [[ ! -d $dir/patched ]]; then
        cp -a "$dir/unpatched" "$dir/patched.tmp" && mv "$dir/patched.tmp" "$dir/patched"
    fi
    t=$work/patch-$(basename "$dir")
    rm -rf "$t" && mkdir -p "$t"
    (cd "$dir/unpatched" && cp --parents meson.build meson_options.txt scripts/meson-buildoptions.sh \
        target/i386/meson.build target/i386/kvm/meson.build target/i386/sev.c "$t"/)
    [[ -f $dir/unpatched/target/i386/kvm/tdx.c ]] && cp "$dir/unpatched/target/i386/kvm/tdx.c" "$t/target/i386/kvm/"
    for f in target/i386/sev.c target/i386/kvm/tdx.c; do
        [[ -f $t/$f ]] || continue
        # One file per spatch call: given several, spatch treats them as one unit for the
        # rules' `depends on`.
        spatch --very-quiet --sp-file "$repo/qemu/memenc.cocci" --in-place "$t/$f" >"$t/spatch.log" 2>&1 ||
            { cat "$t/spatch.log"; die "spatch on $f"; }
        grep -q 'mem_enc_op(' "$t/$f" || die "the semantic patch changed nothing in $f"
    done
    python3 "$repo/qemu/build-change.py" "$t" >/dev/null
    (cd "$t" && find . -type f ! -name spatch.log) | while read -r f; do
        cmp -s "$t/$f" "$dir/patched/$f" || cp "$t/$f" "$dir/patched/$f"
    done
    (cd "$dir" && diff -ru unpatched patched -x subprojects -x 'build-*' >"$work/$(basename "$dir").diff" || true)
    # The memenc checkout as QEMU's meson subproject (QEMU's usual way for a dependency).
    mkdir -p "$dir/patched/subprojects"
    ln -sfn "$repo" "$dir/patched/subprojects/memenc"
}

# ---------------------------------------------------------------- memenc from this checkout
build_memenc() {
    log "memenc-sim and memenc (staged install) from $repo"
    local sim_src=$repo sim_target=$repo/target
    timed memenc-sim bash -c "cd '$sim_src' && CARGO_TARGET_DIR='$sim_target' nice -n 10 cargo build -q --release -p memenc-sim"
    sim=$sim_target/release/memenc-sim
    [[ -x $sim ]] || die "no $sim"
    # Built in this run's work directory, staged at a fixed place in the cache (emptied first)
    # so the QEMU build that found it through pkg-config keeps valid paths between runs.
    local stage=$cache/memenc-stage
    rm -rf "$stage"
    timed memenc-staged bash -c "meson setup '$work/memenc-build' '$repo' --prefix=/usr --buildtype=release \
        -Ddefault_library=shared -Dtests=false -Dexamples=false -Dpkgconfig.relocatable=true >'$work/memenc-setup.log' &&
        nice -n 10 meson compile -C '$work/memenc-build' >'$work/memenc-compile.log' &&
        meson install -C '$work/memenc-build' --destdir '$stage' >'$work/memenc-install.log'" ||
        { tail -n 30 "$work"/memenc-*.log; die "memenc staged install"; }
    memenc_pc_dir=$(dirname "$(find "$stage" -name memenc.pc -print -quit)")
    memenc_lib_dir=$(dirname "$memenc_pc_dir")
}

# ---------------------------------------------------------------- QEMU builds
export CCACHE_DIR=$cache/ccache CCACHE_BASEDIR=$cache CCACHE_NOHASHDIR=true CCACHE_SLOPPINESS=time_macros,include_file_mtime
build_qemu() { # version dir build(static|shared|unpatched) -> sets qemu_bin
    local v=$1 dir=$2 b=$3 tree bdir cfg=()
    if [[ $b == unpatched ]]; then tree=$dir/unpatched; else tree=$dir/patched; fi
    # The build directory sits inside its tree so every build of a version compiles the same
    # relative paths: ccache (base_dir = the cache) shares objects between the three builds.
    bdir=$tree/build-$b
    cfg=(--target-list=x86_64-softmmu --enable-kvm --disable-tcg --without-default-features
         --disable-docs --disable-werror)
    [[ -f $tree/pythondeps.toml ]] && cfg+=(--disable-install-blobs)
    [[ $b != unpatched ]] && cfg+=(--enable-memenc)
    local env=(PATH=/usr/lib/ccache:$PATH)
    if [[ $b == shared ]]; then
        env+=(PKG_CONFIG_PATH="$memenc_pc_dir" PKG_CONFIG_SYSROOT_DIR=)
    fi
    if [[ $b == static ]]; then
        # memenc's subproject output is rebuilt from the checkout on every run: its cargo
        # target directory and the static library go, so ninja runs cargo afresh.
        rm -rf "$bdir/subprojects/memenc/cargo-target" "$bdir/subprojects/memenc/libmemenc.a"
    fi
    if [[ ! -f $bdir/build.ninja || ! -f $bdir/memenc-configured ]] ||
       [[ $(cat "$bdir/memenc-configured") != "${cfg[*]}" ]]; then
        rm -rf "$bdir"
        mkdir -p "$bdir"
        log "$v $b: configure"
        local c0=$SECONDS
        (cd "$bdir" && env "${env[@]}" ../configure "${cfg[@]}" >configure.log 2>&1) ||
            { tail -n 40 "$bdir/configure.log"; die "$v $b: configure"; }
        echo "configure-$v-$b $((SECONDS - c0))" >>"$work/times"
        if [[ $b == static ]]; then
            # Never the pkg-config one: the subproject, linked statically.
            (cd "$bdir" && env "${env[@]}" "$(meson_of "$bdir")" configure -Dforce_fallback_for=memenc . >>configure.log 2>&1)
        fi
        echo "${cfg[*]}" >"$bdir/memenc-configured"
    fi
    log "$v $b: ninja qemu-system-x86_64"
    local t0 t1
    t0=$(date +%s)
    (cd "$bdir" && env "${env[@]}" nice -n 10 ninja -j "$jobs" qemu-system-x86_64 >ninja.log 2>&1) ||
        { grep -B2 -A12 -m3 'error' "$bdir/ninja.log" | head -n 60; die "$v $b: build"; }
    t1=$(date +%s)
    echo "build-$v-$b $((t1 - t0))" >>"$work/times"
    log "$v $b: built in $((t1 - t0)) s"
    qemu_bin=$bdir/qemu-system-x86_64
    # The optionroms QEMU loads (linuxboot_dma.bin for -kernel) are built into pc-bios/.
    qemu_datadir=$bdir/pc-bios
    [[ $v == 7.2 ]] && qemu_datadir=$roms_72
    return 0
}
meson_of() { # build dir -> the meson that configured it (10.x: its own venv)
    if [[ -x $1/pyvenv/bin/meson ]]; then echo "$1/pyvenv/bin/meson"; else echo meson; fi
}

check_linkage() { # version build binary -> prints one line, counts
    local v=$1 b=$2 bin=$3 needed what ok=1
    needed=$(LD_LIBRARY_PATH=$memenc_lib_dir ldd "$bin" 2>/dev/null | awk '/libmemenc/ { print $1 " => " $3 }' || true)
    count() { "${@:2}" | grep -c "$1" || true; }
    case $b in
        static)
            what="nm: $(count ' T mem_enc_op$' nm "$bin") defined mem_enc_op, needs libmemenc: ${needed:-no}"
            [[ $(nm "$bin") == *' T mem_enc_op'$'\n'* && -z $needed ]] || ok=0 ;;
        shared)
            what="nm -D: $(count ' U mem_enc_op$' nm -D "$bin") undefined mem_enc_op, ldd: ${needed:-none}"
            [[ $(nm -D "$bin") == *' U mem_enc_op'* && $needed == *"$memenc_lib_dir/libmemenc.so.0"* ]] || ok=0 ;;
        unpatched)
            what="no mem_enc_op: $(count mem_enc_op nm "$bin") symbols, ldd: ${needed:-no libmemenc}"
            [[ $(count mem_enc_op nm "$bin") == 0 && -z $needed ]] || ok=0 ;;
    esac
    if ((ok)); then pass "qemu $v $b linkage: $what"; else fail "qemu $v $b linkage: $what"; fi
}

# ---------------------------------------------------------------- firmware
fetch_firmware() {
    local fw=$cache/firmware
    mkdir -p "$fw"
    if [[ ! -f $fw/bookworm/usr/share/ovmf/OVMF.fd ]]; then
        log "firmware: bookworm ovmf"
        rm -rf "$fw/bookworm" && mkdir -p "$fw/bookworm"
        local dv
        dv=$(apt-cache "${papt[@]}" -o "Dir::Etc::SourceParts=/etc/apt/sources.list.d" \
             -o "Dir::State::Lists=/var/lib/apt/lists" madison ovmf 2>/dev/null | awk '$5 ~ /bookworm/ || NR == 1 { print $3; exit }')
        (cd "$fw/bookworm" && apt-get download -qq "ovmf${dv:+=$dv}" >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get download -qq ovmf >/dev/null; })
        dpkg-deb -x "$fw"/bookworm/ovmf_*.deb "$fw/bookworm"
    fi
    if [[ ! -f $fw/sid/done ]]; then
        log "firmware: sid ovmf-amdsev, ovmf-inteltdx"
        rm -rf "$fw/sid" && mkdir -p "$fw/sid"
        (cd "$fw/sid" && apt-get "${papt[@]}" download -qq ovmf-amdsev ovmf-inteltdx >/dev/null)
        for d in "$fw"/sid/*.deb; do dpkg-deb -x "$d" "$fw/sid"; done
        touch "$fw/sid/done"
    fi
    # QEMU's option ROMs (kvmvapic.bin; linuxboot_dma.bin for -kernel): the +dfsg/+ds trees
    # carry none and 7.2's configure builds none here; Debian's qemu-system-data of the same
    # source version has them.
    if [[ ! -f $fw/roms-7.2/done ]]; then
        rm -rf "$fw/roms-7.2" && mkdir -p "$fw/roms-7.2"
        (cd "$fw/roms-7.2" && apt-get "${papt[@]}" -o "Dir::Etc::SourceParts=/etc/apt/sources.list.d" \
            -o "Dir::State::Lists=/var/lib/apt/lists" download -qq "qemu-system-data=$(debian_version 7.2)" >/dev/null)
        dpkg-deb -x "$fw"/roms-7.2/qemu-system-data_*.deb "$fw/roms-7.2"
        touch "$fw/roms-7.2/done"
    fi
    roms_72=$fw/roms-7.2/usr/share/qemu
    ovmf_72=$(find "$fw/bookworm" -type f -name OVMF.fd -print -quit)
    ovmf_amdsev=$(find "$fw/sid" -type f -name 'OVMF.amdsev.fd' -print -quit)
    # sid's ovmf-inteltdx ships the TDVF only with Microsoft's Secure Boot keys enrolled.
    ovmf_tdx=$(find "$fw/sid" -type f -name 'OVMF.inteltdx*.fd' -print | sort | head -n1)
    [[ -n $ovmf_72 && -n $ovmf_amdsev && -n $ovmf_tdx ]] ||
        die "firmware missing: OVMF.fd=$ovmf_72 OVMF.amdsev.fd=$ovmf_amdsev OVMF.inteltdx.fd=$ovmf_tdx"
}

# A small kernel and initrd for the -kernel hashes: a bzImage header (boot protocol 2.15) and
# filler; they need not boot (no OVMF guest executes on this machine).
make_kernel() {
    python3 - "$work/bzImage" "$work/initrd" <<'EOF'
import struct, sys
setup_sects = 4
img = bytearray((setup_sects + 1) * 512 + 64 * 1024)
img[0x1f1] = setup_sects
struct.pack_into("<H", img, 0x1fe, 0xAA55)
img[0x202:0x206] = b"HdrS"
struct.pack_into("<H", img, 0x206, 0x020F)      # protocol 2.15
img[0x211] = 0x01                                # loadflags: LOADED_HIGH
struct.pack_into("<I", img, 0x214, 0x100000)     # code32_start
struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)   # initrd_addr_max
struct.pack_into("<I", img, 0x238, 255)          # cmdline_size
for i in range((setup_sects + 1) * 512, len(img)):
    img[i] = (i * 7 + 3) & 0xFF
open(sys.argv[1], "wb").write(img)
open(sys.argv[2], "wb").write(bytes((i * 5) & 0xFF for i in range(8192)))
EOF
    kernel_append="console=ttyS0 memenc=qemu-check"
}

# ---------------------------------------------------------------- launches
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "$*"; }
fail() { failed=$((failed + 1)); echo "$* FAILED"; }

# case: tech vcpus kern(0|1) -> QEMU arguments, sim profile, sev-snp-measure arguments
launch() { # version build tech vcpus kern
    local v=$1 b=$2 tech=$3 n=$4 kern=$5 tag prof cpu ovmf policy=0 obj machine args=() ck=() measure=()
    tag=$v-$b-$tech-$n-k$kern
    if [[ $v == 7.2 ]]; then
        prof=sev@6.1 cpu=EPYC ovmf=$ovmf_72
    else
        prof=snp@6.18 cpu=EPYC-v4 ovmf=$ovmf_amdsev
    fi
    case $tech in
        sev|seves|seves-init2)
            [[ $tech == sev ]] && policy=0x1 || policy=0x5
            obj=sev-guest,id=cg0,cbitpos=0,reduced-phys-bits=1,policy=$policy
            # QEMU 9.1+: legacy-vm-type=auto keeps KVM_SEV_INIT/ES_INIT (a default-type VM)
            # unless an INIT2-only option is set; off asks for the SEV-ES VM type + INIT2.
            [[ $tech == seves-init2 ]] && obj+=,legacy-vm-type=off
            [[ $kern == 1 ]] && obj+=,kernel-hashes=on
            measure=(--measure) ;;
        snp)
            obj=sev-snp-guest,id=cg0,cbitpos=0,reduced-phys-bits=1
            [[ $kern == 1 ]] && obj+=,kernel-hashes=on ;;
        tdx)
            # -cpu host: QEMU refuses named models for TDX; -arch-capabilities: this kvm_pvm
            # machine refuses MSR 0x10a. The GPAW QEMU copies from KVM_GET_SUPPORTED_CPUID is
            # memenc-sim's tdx@6.19 answer (48), as on a TDX host.
            prof=tdx@6.19 cpu=host,-arch-capabilities ovmf=$ovmf_tdx
            obj=tdx-guest,id=cg0 ;;
    esac
    machine=q35,confidential-guest-support=cg0
    [[ $tech == tdx ]] && machine+=,kernel-irqchip=split
    args=(-nodefaults -nographic -no-user-config -accel kvm -machine "$machine" -object "$obj"
          -cpu "$cpu" -smp "$n" -m 512M -bios "$ovmf" -L "$qemu_datadir" -L /usr/share/seabios
          -S -qmp "unix:$work/$tag.qmp,server=on,wait=off" -serial none -monitor none)
    if [[ $kern == 1 ]]; then
        args+=(-kernel "$work/bzImage" -initrd "$work/initrd" -append "$kernel_append")
        ck=(--kernel "$work/bzImage" --initrd "$work/initrd" --append "$kernel_append")
    fi
    echo "$sim run --profile $prof --report $work/$tag.report.json -- $qemu_bin ${args[*]}" >"$work/$tag.cmd"
    # The shared build finds libmemenc.so.0 in the staged install, as an uninstalled
    # library is found.
    local runenv=(env)
    [[ $b == shared ]] && runenv+=(LD_LIBRARY_PATH="$memenc_lib_dir")
    echo "LD_LIBRARY_PATH=${runenv[1]:-}" >>"$work/$tag.cmd"
    "${runenv[@]}" timeout -k 10 $((run_timeout + 20)) python3 "$repo/qemu/launch.py" --qmp "$work/$tag.qmp" \
        --out "$work/$tag.launch.json" --timeout "$run_timeout" "${measure[@]}" -- \
        "$sim" run --profile "$prof" --report "$work/$tag.report.json" -- "$qemu_bin" "${args[@]}" \
        >"$work/$tag.log" 2>&1 || true
    local legacy=()
    [[ $tech == seves ]] && legacy=(--legacy-es)
    local res
    res=$(python3 "$repo/qemu/check-launch.py" --report "$work/$tag.report.json" --launch "$work/$tag.launch.json" \
        --tech "${tech%-init2}" --vcpus "$n" --vcpu-type "${cpu%%,*}" --ovmf "$ovmf" --policy "$policy" \
        "${ck[@]}" "${legacy[@]}" 2>>"$work/$tag.log")
    echo "$res" >"$work/$tag.result"
    local got want verdict measure_r state rc
    got=$(sed -n 's/.* \{0,1\}got=\([^ ]*\).*/\1/p' <<<"$res")
    want=$(sed -n 's/.* want=\([^ ]*\).*/\1/p' <<<"$res")
    verdict=$(sed -n 's/.* verdict=\([^ ]*\).*/\1/p' <<<"$res")
    measure_r=$(sed -n 's/.* measure=\([^ ]*\).*/\1/p' <<<"$res")
    state=$(sed -n 's/.* state=\([^ ]*\).*/\1/p' <<<"$res")
    rc=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["rc"], "timeout" if d["timed_out"] else "")' "$work/$tag.launch.json" 2>/dev/null || echo "?")
    local label=$tech
    [[ $kern == 1 ]] && label+=+kernel
    local line
    if [[ $tech == tdx ]]; then
        line=$(printf 'qemu %-4s %-9s %-12s vcpus=%s state=%s mrtd=%s (no MRTD calculator: reported only) exit=%s' \
            "$v" "$b" "$label" "$n" "$state" "$got" "$rc")
    else
        line=$(printf 'qemu %-4s %-9s %-12s vcpus=%s state=%s report=%s sev-snp-measure=%s launch-measure=%s exit=%s %s' \
            "$v" "$b" "$label" "$n" "$state" "$got" "$want" "$measure_r" "$rc" "$verdict")
    fi
    if [[ $verdict == equal && $rc == "0 " ]]; then pass "$line"; else fail "$line"; log "see $work/$tag.log"; tail -n 5 "$work/$tag.log" >&2; fi
}

cases_for() { # version -> "tech vcpus kern" lines
    local n
    for n in 1 4; do
        if [[ $1 == 7.2 ]]; then
            echo "sev $n 0"; echo "seves $n 0"
        else
            echo "sev $n 0"; echo "sev $n 1"; echo "seves $n 0"; echo "seves $n 1"; echo "seves-init2 $n 0"
            echo "snp $n 0"; echo "snp $n 1"; echo "tdx $n 0"
        fi
    done
}

# ---------------------------------------------------------------- main
fetch_firmware
make_kernel
build_memenc
for v in $versions; do
    fetch_qemu "$v"
    log "qemu $v: Debian source $qemu_deb_version in $src_dir"
    patch_qemu "$src_dir"
    for b in $builds; do
        build_qemu "$v" "$src_dir" "$b"
        check_linkage "$v" "$b" "$qemu_bin"
        while read -r tech n kern; do
            launch "$v" "$b" "$tech" "$n" "$kern"
        done < <(cases_for "$v")
    done
    # The unpatched QEMU under the same simulated host must leave the same reports.
    if [[ " $builds " == *" unpatched "* ]]; then
        for b in $builds; do
            [[ $b == unpatched ]] && continue
            same=0 diff=0
            while read -r tech n kern; do
                tag=$tech-$n-k$kern
                # The VMs (type, technology, state, vCPUs, measurement) must be equal; the
                # report's notification counters depend on how far the vCPU threads got.
                if same_vms "$work/$v-$b-$tag.report.json" "$work/$v-unpatched-$tag.report.json"; then
                    same=$((same + 1))
                else
                    diff=$((diff + 1)); log "report differs: $v $b $tag"
                fi
            done < <(cases_for "$v")
            line="qemu $v $b vs unpatched: $same reports equal, $diff differ"
            if ((diff == 0)); then pass "$line"; else fail "$line"; fi
        done
    fi
done
echo "build times (s): $(tr '\n' ' ' <"$work/times")"
echo "$passed passed, $failed failed"
((failed == 0))
