#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""One launch's verdict: memenc-sim's report against the guest owner's tool, sev-snp-measure.

    check-launch.py --report R.json --launch L.json --tech sev|seves|snp|tdx --vcpus N
                    --vcpu-type T --ovmf F [--kernel K --initrd I --append A]
                    [--legacy-es] [--policy P]

Prints one line of key=value words for qemu-check.sh:
  got=      the report's launch digest (SEV/SNP) or MRTD (TDX); '-' when missing
  want=     sev-snp-measure's digest (CLI: --mode sev|seves|snp ... --output-format hex);
            for --legacy-es (KVM_SEV_ES_INIT, QEMU < 9.1 or legacy-vm-type) the same tool's
            VMSA model with the x87/MXCSR words cleared: KVM's sev_es_sync_vmsa() leaves the
            FPU area out of the VMSA for VMs not created with KVM_SEV_INIT2 "to avoid breaking
            older measurements", and sev-snp-measure models only the INIT2 VMSA
  cli=      the plain CLI answer (differs from want= only with --legacy-es)
  measure=  SEV/SEV-ES: 'equal' when QEMU's query-sev-launch-measure blob (measurement(32) ||
            mnonce(16)) equals HMAC-SHA256(TIK, 0x04 || API_MAJOR || API_MINOR || BUILD ||
            POLICY(le32) || want || MNONCE) with memenc-sim's TIK (bytes 0..15, sim/src/model/
            measure.rs) and the API version query-sev reports; 'DIFFER' or 'missing'; '-' n/a
  state=, vcpus=, technology=  from the report
  verdict=  equal | DIFFER"""
import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys

SIM_SEV_TIK = bytes(range(16))


def cli(args, mode):
    cmd = ["sev-snp-measure", "--mode", mode, "--vcpus", str(args.vcpus),
           "--vcpu-type", args.vcpu_type, "--ovmf", args.ovmf, "--output-format", "hex"]
    if args.kernel:
        cmd += ["--kernel", args.kernel, "--initrd", args.initrd, "--append", args.append]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"sev-snp-measure failed: {' '.join(cmd)}: {r.stderr.strip()}", file=sys.stderr)
        return None
    return r.stdout.strip().split()[-1]


def legacy_es(args):
    # sev-snp-measure's own calc_launch_digest for --mode seves, with its VMSA pages taken from
    # the same model and the FPU words KVM's ES_INIT path does not sync cleared.
    from sevsnpmeasure import guest, vmsa
    orig = vmsa.VMSA.pages

    def pages(self, vcpus):
        for area in (self.bsp_save_area, self.ap_save_area):
            if area is not None:
                area.mxcsr = 0
                area.x87_fcw = 0
        return orig(self, vcpus)

    vmsa.VMSA.pages = pages
    from sevsnpmeasure.vcpu_types import CPU_SIGS
    from sevsnpmeasure.vmm_types import VMMType
    ld = guest.calc_launch_digest(guest.SevMode.SEV_ES, args.vcpus, CPU_SIGS[args.vcpu_type],
                                  args.ovmf, args.kernel, args.initrd, args.append, 0x1,
                                  "", VMMType.QEMU)
    return ld.hex()


def main():
    ap = argparse.ArgumentParser()
    for o in ("report", "launch", "tech", "vcpu-type", "ovmf", "kernel", "initrd", "append"):
        ap.add_argument("--" + o)
    ap.add_argument("--vcpus", type=int)
    ap.add_argument("--policy", type=lambda s: int(s, 0), default=0)
    ap.add_argument("--legacy-es", action="store_true")
    a = ap.parse_args()
    try:
        vms = json.load(open(a.report))
    except (OSError, ValueError):
        vms = []
    if isinstance(vms, dict):
        vms = vms.get("vms", [vms])
    confidential = [v for v in vms if v.get("technology", "none") != "none"]
    vm = confidential[-1] if confidential else (vms[-1] if vms else {})
    got = vm.get("mrtd" if a.tech == "tdx" else "launch_digest") or "-"
    if isinstance(got, list):
        got = bytes(got).hex()
    out = {"got": got, "state": vm.get("state", "-"), "vcpus": vm.get("vcpus", "-"),
           "technology": vm.get("technology", "-"), "vms": len(vms)}
    want = cli_ans = "-"
    measure = "-"
    if a.tech != "tdx":
        mode = {"sev": "sev", "seves": "seves", "snp": "snp"}[a.tech]
        cli_ans = cli(a, mode) or "-"
        want = legacy_es(a) if a.legacy_es else cli_ans
        if a.tech in ("sev", "seves"):
            try:
                launch = json.load(open(a.launch))
                blob = launch["qmp"]["query-sev-launch-measure"]["data"]
                info = launch["qmp"]["query-sev"]
                raw = base64.b64decode(blob)
                meas, mnonce = raw[:32], raw[32:48]
                msg = (bytes([0x04, info["api-major"], info["api-minor"], info["build-id"]])
                       + a.policy.to_bytes(4, "little") + bytes.fromhex(want) + mnonce)
                calc = hmac.new(SIM_SEV_TIK, msg, hashlib.sha256).digest()
                measure = "equal" if calc == meas and len(raw) == 48 else "DIFFER"
                out["api"] = f"{info['api-major']}.{info['api-minor']}.{info['build-id']}"
            except (OSError, ValueError, KeyError, TypeError):
                measure = "missing"
    out.update(want=want, cli=cli_ans, measure=measure)
    if a.tech == "tdx":
        ok = got != "-" and vm.get("state") == "finalized"
    else:
        ok = got != "-" and got == want and measure in ("-", "equal")
    out["verdict"] = "equal" if ok else "DIFFER"
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    sys.exit(main())
