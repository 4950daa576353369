#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""memenc.sym (one exported symbol per line, '#' comments) -> a GNU ld version script.

The Rust staticlib carries all of std with default visibility; wrapped in a shared library
without this script, it would all be exported. Everything not listed becomes local.
"""
import sys


def symbols(path):
    with open(path) as f:
        for line in f:
            name = line.split("#", 1)[0].strip()
            if name:
                yield name


def main():
    names = list(symbols(sys.argv[1]))
    if not names:
        sys.exit(f"{sys.argv[1]}: no symbols")
    print("{\n  global:")
    for name in names:
        print(f"    {name};")
    print("  local:\n    *;\n};")


if __name__ == "__main__":
    main()
