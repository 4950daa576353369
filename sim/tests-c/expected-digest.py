#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0 OR MIT
"""The launch digest a real host computes for raw-launch.c's launch, from the guest owner's
tool, sev-snp-measure (PyPI): its GCTX (the SNP PAGE_INFO chain) and its VMSA model of QEMU's
vCPUs. memenc-sim's report must say the same.

    expected-digest.py snp|seves-legacy|seves-init2 VCPUS     prints the digest in hex

Exit 77 when sevsnpmeasure is not installed (pip install sev-snp-measure)."""
import hashlib
import sys

try:
    from sevsnpmeasure.gctx import GCTX
    from sevsnpmeasure.sev_mode import SevMode
    from sevsnpmeasure.vcpu_types import CPU_SIGS
    from sevsnpmeasure.vmsa import VMSA
except ImportError:
    print("SKIPPED: sevsnpmeasure is not installed (pip install sev-snp-measure)")
    sys.exit(77)

PAGE = 4096
# raw-launch.c's layout.
IMAGE_GPA, IMAGE_PAGES = 0x10000, 5
ZERO_GPA, ZERO_PAGES = 0x20000, 2
SECRETS_GPA, CPUID_GPA = 0x30000, 0x31000
AP_EIP = 0xFFFFF6B0
VCPU_TYPE = "EPYC-v4"
SNP_ACTIVE = 0x1


def image():
    n = IMAGE_PAGES * PAGE
    return bytes(((i * 13 + (i >> 12) * 101 + 7) & 0xFF) for i in range(n))


def vmsa_pages(mode, features, vcpus):
    sev_mode = SevMode.SEV_SNP if mode == "snp" else SevMode.SEV_ES
    vmsa = VMSA(sev_mode, AP_EIP, CPU_SIGS[VCPU_TYPE], features)
    if mode == "seves-legacy":
        # KVM_SEV_ES_INIT (a default-type VM): sev_es_sync_vmsa() does not sync the FPU area
        # "to avoid breaking older measurements" (arch/x86/kvm/svm/sev.c); the tool's QEMU
        # model is the INIT2 one, so its FPU words are the only fields cleared here.
        for area in (vmsa.bsp_save_area, vmsa.ap_save_area):
            area.mxcsr = 0
            area.x87_fcw = 0
    return list(vmsa.pages(vcpus))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("snp", "seves-legacy", "seves-init2"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, vcpus = sys.argv[1], int(sys.argv[2])
    if mode == "snp":
        g = GCTX()
        g.update_normal_pages(IMAGE_GPA, image())
        g.update_zero_pages(ZERO_GPA, ZERO_PAGES * PAGE)
        g.update_secrets_page(SECRETS_GPA)
        g.update_cpuid_page(CPUID_GPA)
        for page in vmsa_pages(mode, SNP_ACTIVE, vcpus):
            g.update_vmsa_page(page)
        print(g.ld().hex())
    else:
        # SEV-ES: GCTX.LD is SHA-256 over every LAUNCH_UPDATE_DATA byte, then every VMSA
        # (sev-snp-measure's calc_launch_digest for --mode seves does the same over OVMF).
        h = hashlib.sha256(image())
        for page in vmsa_pages(mode, 0, vcpus):
            h.update(page)
        print(h.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
