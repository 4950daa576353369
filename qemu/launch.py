#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Runs one QEMU launch (under memenc-sim) and drives it through QMP.

    launch.py --qmp SOCKET --out JSON [--timeout S] [--measure] -- COMMAND...

COMMAND (memenc-sim run ... -- qemu-system-x86_64 ... -S -qmp unix:SOCKET,server=on,wait=off)
is started; the QMP client asks query-sev (when --measure, also query-sev-launch-measure, which
QEMU answers only between LAUNCH_MEASURE and LAUNCH_FINISH, i.e. while stopped by -S), then
`cont`: QEMU issues LAUNCH_FINISH / SNP_LAUNCH_FINISH when the VM starts running and the
simulated guest's first KVM_RUN ends it with a shutdown event, so QEMU exits by itself.
JSON gets {"rc", "timed_out", "qmp": {command: answer or {"error": ...}}, "events"}."""
import argparse
import json
import os
import socket
import subprocess
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qmp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    try:
        os.unlink(a.qmp)
    except FileNotFoundError:
        pass
    deadline = time.monotonic() + a.timeout
    proc = subprocess.Popen(cmd)
    result = {"rc": None, "timed_out": False, "qmp": {}, "events": []}
    sock = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(a.qmp)
                break
            except OSError:
                sock.close()
                sock = None
                time.sleep(0.1)
        if sock is not None:
            sock.settimeout(max(1.0, deadline - time.monotonic()))
            f = sock.makefile("rwb")

            def recv():
                while True:
                    line = f.readline()
                    if not line:
                        return None
                    msg = json.loads(line)
                    if "event" in msg:
                        result["events"].append(msg["event"])
                        continue
                    return msg

            def execute(name, **args):
                req = {"execute": name}
                if args:
                    req["arguments"] = args
                f.write(json.dumps(req).encode() + b"\n")
                f.flush()
                ans = recv()
                if ans is None:
                    ans = {"error": {"desc": "QMP connection closed"}}
                result["qmp"][name] = ans.get("return", {"error": ans.get("error")})
                return ans

            try:
                recv()  # greeting
                execute("qmp_capabilities")
                # Only for SEV/SEV-ES: QEMU 10.2 aborts on query-sev for a TDX guest
                # (sev.c: "Object ... is not an instance of type sev-common").
                if a.measure:
                    execute("query-sev")
                    execute("query-sev-launch-measure")
                execute("cont")
                while recv() is not None:
                    pass
            except (OSError, ValueError) as e:
                # QEMU may end (the guest's shutdown) before it answers `cont`.
                result["qmp_closed"] = repr(e)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        result["timed_out"] = True
        proc.kill()
        proc.wait()
    except socket.timeout:
        result["timed_out"] = True
        proc.kill()
        proc.wait()
    result["rc"] = proc.returncode
    with open(a.out, "w") as out:
        json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
