#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""ABI and release checks run as meson tests. Each prints what it compared and exits 1 on drift.

version  meson.build's project version == Cargo.toml's == Cargo.lock's memenc entry == the
         header's MEM_ENC_VERSION_{MAJOR,MINOR,PATCH}.
symbols  for each library: `nm -D --defined-only` == memenc.sym; and the functions declared in
         include/memenc.h == memenc.sym (so an export added in Rust but not listed, or listed
         but not exported, fails here rather than in a consumer's link).
soname   for each library: `readelf -d` SONAME == the expected one.
listed   every C/C++ source in a directory is one its meson.build builds (meson has no glob, so
         a new test or example that nobody listed would silently never run).
"""
import os
import argparse
import re
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg)
    return 1


def read(path):
    with open(path) as f:
        return f.read()


def check_version(args):
    found = {"meson.build": args.version}
    toml = read(args.cargo_toml)
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", toml, re.M | re.S)
    m = package and re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    found["Cargo.toml"] = m.group(1) if m else None
    m = re.search(r'^\[\[package\]\]\s*\nname = "memenc"\s*\nversion = "([^"]+)"', read(args.cargo_lock), re.M)
    found["Cargo.lock"] = m.group(1) if m else None
    header = read(args.header)
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        m = re.search(rf"^#define MEM_ENC_VERSION_{part} (\d+)\s*$", header, re.M)
        parts.append(m.group(1) if m else "?")
    found["memenc.h"] = ".".join(parts)
    for where, value in found.items():
        print(f"{where:12} {value}")
    if len(set(found.values())) != 1:
        return fail("versions differ; change Cargo.toml and meson.build together, then "
                    "regenerate the header (MEMENC_BLESS=1 cargo test --test header)")
    return 0


def listed_symbols(path):
    names = set()
    for line in read(path).splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.add(name)
    return names


def header_functions(path):
    text = re.sub(r"/\*.*?\*/", " ", read(path), flags=re.S)  # comments mention functions too
    text = re.sub(r"//[^\n]*", " ", text)
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    return set(re.findall(r"\b(mem_enc_\w+)\s*\(", text))


def compare(what, got, want):
    extra, missing = sorted(got - want), sorted(want - got)
    if extra or missing:
        return fail(f"{what}: not in memenc.sym: {extra or 'none'}; missing: {missing or 'none'}")
    print(f"ok: {what}: {len(got)} symbols, as listed")
    return 0


def check_symbols(args):
    want = listed_symbols(args.sym)
    rc = compare(args.header, header_functions(args.header), want)
    for lib in args.libs:
        out = subprocess.run([args.nm, "-D", "--defined-only", lib], check=True,
                             capture_output=True, text=True).stdout
        got = {line.split()[-1] for line in out.splitlines() if line.strip()}
        rc |= compare(f"{lib} (nm -D --defined-only)", got, want)
    return rc


def check_soname(args):
    rc = 0
    for lib in args.libs:
        out = subprocess.run([args.readelf, "-d", lib], check=True,
                             capture_output=True, text=True).stdout
        m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
        got = m.group(1) if m else None
        if got != args.soname:
            rc |= fail(f"{lib}: SONAME {got}, expected {args.soname}")
        else:
            print(f"ok: {lib}: SONAME {got}")
    return rc


# What the simulated host is made of: it lives in the memenc-sim crate and must never reach the
# production library (its model, registry, measurement crypto, or the old mem_enc_sim_* ABI).
SIMULATOR_SYMBOLS = re.compile(r"mem_enc_sim_|memenc_sim|memenc\d*sim|3sim\d|sha2|hmac|registry")


def check_no_simulator(args):
    rc = 0
    for lib in args.libs:
        # All symbols, local ones included (the release library keeps its symbol table).
        out = subprocess.run([args.nm, "-C", lib], check=True, capture_output=True,
                             text=True).stdout
        hits = sorted({line.split(maxsplit=2)[-1] for line in out.splitlines()
                       if SIMULATOR_SYMBOLS.search(line)})
        if hits:
            rc |= fail(f"{lib}: simulator code in the production library: {hits[:10]}")
        else:
            print(f"ok: {lib}: no simulator symbol among {len(out.splitlines())}")
    return rc


def check_listed(args):
    sources = {f for f in os.listdir(args.dir) if f.endswith((".c", ".cc"))}
    unlisted = sorted(sources - set(args.names))
    if unlisted:
        return fail(f"{args.dir}: not built by its meson.build: {unlisted}; add "
                    + ", ".join(f"'{os.path.splitext(f)[0]}'" for f in unlisted) + " to its list")
    print(f"ok: {args.dir}: all {len(sources)} sources are built")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="check", required=True)
    v = sub.add_parser("version")
    v.add_argument("--version", required=True)
    v.add_argument("--cargo-toml", required=True)
    v.add_argument("--cargo-lock", required=True)
    v.add_argument("--header", required=True)
    s = sub.add_parser("symbols")
    s.add_argument("--sym", required=True)
    s.add_argument("--header", required=True)
    s.add_argument("--nm", default="nm")
    s.add_argument("libs", nargs="*")
    n = sub.add_parser("soname")
    n.add_argument("--soname", required=True)
    n.add_argument("--readelf", default="readelf")
    n.add_argument("libs", nargs="+")
    ns = sub.add_parser("no-simulator")
    ns.add_argument("--nm", default="nm")
    ns.add_argument("libs", nargs="+")
    ls = sub.add_parser("listed")
    ls.add_argument("--dir", required=True)
    ls.add_argument("names", nargs="*", help="the file names meson.build builds")
    args = p.parse_args()
    return {"version": check_version, "symbols": check_symbols, "soname": check_soname,
            "no-simulator": check_no_simulator, "listed": check_listed}[args.check](args)


if __name__ == "__main__":
    sys.exit(main())
