#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Print, one per line, the system libraries a Rust staticlib needs on this target
(`rustc --print native-static-libs`, e.g. -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).

Compiles an empty staticlib in a temporary directory: the list belongs to std, not to memenc.
"""
import re
import subprocess
import sys
import tempfile
import os


def main():
    rustc = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "empty.rs")
        open(src, "w").close()
        proc = subprocess.run(
            [rustc, "--crate-type", "staticlib", "--crate-name", "empty", "--print",
             "native-static-libs", "-o", os.path.join(tmp, "libempty.a"), src],
            capture_output=True, text=True)
    match = re.search(r"native-static-libs: (.*)", proc.stderr + proc.stdout)
    if proc.returncode != 0 or not match:
        sys.exit(f"could not ask {rustc} for native-static-libs:\n{proc.stderr}")
    for lib in match.group(1).split():
        print(lib)


if __name__ == "__main__":
    main()
