#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Meson's bridge to cargo (the librsvg cargo_wrapper pattern, trimmed to what memenc needs).

build: `cargo build --locked --lib`, then copy the staticlib (and the cdylib, for the SONAME
       check) into meson's output paths and write a depfile so ninja re-runs cargo only when a
       source file changed. Never runs clippy or fmt: a new lint must not break a VMM's build.
test:  `cargo test --locked` with the same target directory, as a meson test().

The cargo target directory is $CARGO_TARGET_DIR when set (cargo's own convention), else
<meson build root>/cargo-target.
"""
import argparse
import filecmp
import os
import shutil
import subprocess
import sys


def target_dir(args):
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(args.build_root, "cargo-target")


def cargo_base(args, verb):
    cmd = [args.cargo, verb, "--locked", "--manifest-path", args.manifest_path,
           "--target-dir", target_dir(args)]
    if args.release:
        cmd.append("--release")
    return cmd


def run(cmd):
    print("memenc: " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode


def copy_if_changed(src, dst):
    # Keeping the old mtime when nothing changed spares every dependent a relink.
    if os.path.exists(dst) and filecmp.cmp(src, dst, shallow=False):
        return
    tmp = dst + ".tmp"
    shutil.copyfile(src, tmp)
    shutil.copymode(src, tmp)
    os.replace(tmp, dst)


def build(args):
    rc = run(cargo_base(args, "build") + ["--lib"])
    if rc != 0:
        return rc
    profile_dir = os.path.join(target_dir(args), "release" if args.release else "debug")
    copy_if_changed(os.path.join(profile_dir, "libmemenc.a"), args.staticlib)
    copy_if_changed(os.path.join(profile_dir, "libmemenc.so"), args.cdylib)
    # cargo's dep-info names its own artifact; ninja wants ours. Same prerequisites.
    with open(os.path.join(profile_dir, "libmemenc.d")) as f:
        deps = f.read().split(":", 1)[1].strip()
    with open(args.depfile, "w") as f:
        f.write(f"{args.staticlib} {args.cdylib}: {deps}\n")
    return 0


def test(args):
    return run(cargo_base(args, "test") + ["--no-fail-fast"])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["build", "test"])
    p.add_argument("--cargo", required=True)
    p.add_argument("--manifest-path", required=True)
    p.add_argument("--build-root", required=True)
    p.add_argument("--release", action="store_true")
    p.add_argument("--staticlib")
    p.add_argument("--cdylib")
    p.add_argument("--depfile")
    args = p.parse_args()
    if args.mode == "build":
        if not (args.staticlib and args.cdylib and args.depfile):
            p.error("build needs --staticlib, --cdylib and --depfile")
        return build(args)
    return test(args)


if __name__ == "__main__":
    sys.exit(main())
