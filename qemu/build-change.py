#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""The build side of QEMU's switch to memenc, applied to a QEMU source tree (7.2 .. 10.x).

    build-change.py QEMU_SOURCE_TREE

After qemu/memenc.cocci has turned sev.c's sev_ioctl() (and 10.1+ tdx.c's tdx_ioctl_internal())
into mem_enc_op() calls, QEMU needs memenc's header and library where those files are built:
  - meson_options.txt: option('memenc') (a feature, enabled: the converted files need it; it stays
    on under configure --without-default-features, which only turns 'auto' features off);
  - scripts/meson-buildoptions.sh: configure's --enable-memenc/--disable-memenc;
  - meson.build: memenc = dependency('memenc'): pkg-config first, else the meson subproject
    subprojects/memenc (static, no tests or examples), the README's recipe;
  - target/i386/meson.build, target/i386/kvm/meson.build: the dependency in the sev.c and
    tdx.c source-set entries.
Idempotent: a tree that already has the change is left as it is. Exits non-zero when an anchor
line is missing (a QEMU version this script does not know)."""
import pathlib
import re
import sys

MARK = "memenc"


def edit(path, anchor_re, new, where="before", required=True, count=1):
    text = path.read_text()
    if new.strip() in text:
        return
    m = re.search(anchor_re, text, re.M)
    if not m:
        if required:
            sys.exit(f"build-change.py: no line matching {anchor_re!r} in {path}")
        return
    if where == "before":
        text = text[:m.start()] + new + text[m.start():]
    elif where == "after":
        text = text[:m.end()] + new + text[m.end():]
    else:  # replace
        text = text[:m.start()] + new + text[m.end():]
    path.write_text(text)
    print(f"build-change.py: {path.relative_to(ROOT)}")


ROOT = pathlib.Path(sys.argv[1]).resolve()

edit(ROOT / "meson_options.txt", r"\Z",
     "option('memenc', type: 'feature', value: 'enabled',\n"
     "       description: 'memenc for KVM_MEMORY_ENCRYPT_OP (needed by the memenc-converted sev.c and tdx.c)')\n",
     where="after")

opts = ROOT / "scripts/meson-buildoptions.sh"
edit(opts, r"^  printf \"%s\\n\" '  lzo ",
     "  printf \"%s\\n\" '  memenc          memenc for KVM_MEMORY_ENCRYPT_OP (SEV, TDX)'\n")
edit(opts, r"^    --enable-lzo\) ",
     "    --enable-memenc) printf \"%s\" -Dmemenc=enabled ;;\n"
     "    --disable-memenc) printf \"%s\" -Dmemenc=disabled ;;\n")

edit(ROOT / "meson.build", r"^keyutils = ",
     "# memenc (KVM_MEMORY_ENCRYPT_OP for SEV/SNP/TDX): the installed library through pkg-config,\n"
     "# else the meson subproject subprojects/memenc, linked statically.\n"
     "memenc = dependency('memenc', required: get_option('memenc'), allow_fallback: true,\n"
     "                    default_options: ['default_library=static', 'tests=false', 'examples=false'])\n"
     "\n")

# sev.c's entry: 7.2 calls the source set i386_softmmu_ss, 10.x i386_system_ss.
edit(ROOT / "target/i386/meson.build",
     r"(?<=when: 'CONFIG_SEV', if_true: )files\('sev\.c'\)",
     "[files('sev.c'), memenc]", where="replace")

kvm = ROOT / "target/i386/kvm/meson.build"   # tdx.c: QEMU 10.1 and later
tdx_entry = re.search(r"(?<=when: 'CONFIG_TDX', if_true: )files\('tdx\.c'(, '[^']+')*\)",
                      kvm.read_text())
if tdx_entry:
    edit(kvm, re.escape(tdx_entry.group(0)), "[" + tdx_entry.group(0) + ", memenc]",
         where="replace")
