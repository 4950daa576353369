/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * probe: what can this host do for confidential VMs? The C version of `memenc probe`.
 *
 * Opens /dev/kvm, creates a VM and a vCPU, asks mem_enc_op(fd, NULL) whether they have a
 * memory-encryption backend, then mem_enc_probe() for the host's capabilities and
 * mem_enc_negotiate_launch() for the best confidential VM type, and prints a verdict.
 *
 * Exit: 0 report printed (whatever the verdict), 1 an unexpected failure, 77 /dev/kvm absent
 * (the automake/meson "skipped" code).
 *
 * Build: gcc -Wall -Wextra -Werror -Iinclude examples-c/probe.c -Ltarget/debug -lmemenc
 */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC under strict -std= modes */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "memenc.h"

static const char *status_name(uint32_t status)
{
    switch (status) {
    case MEM_ENC_CAP_KNOWN: return "known";
    case MEM_ENC_CAP_NOT_AVAILABLE: return "not available on this host";
    case MEM_ENC_CAP_NOT_SUPPORTED: return "not supported by this kernel";
    case MEM_ENC_CAP_DEFAULTED: return "not published; documented default";
    case MEM_ENC_CAP_ERROR: return "query failed";
    default: return "unknown";
    }
}

static void print_cap(const char *label, const struct mem_enc_cap *cap)
{
    printf("  %-30s ", label);
    if (cap->status == MEM_ENC_CAP_KNOWN || cap->status == MEM_ENC_CAP_DEFAULTED)
        printf("0x%" PRIx64 " ", cap->value);
    printf("(%s", status_name(cap->status));
    if (cap->err != 0)
        printf(", %d: %s", cap->err, mem_enc_strerror(cap->err));
    printf(")\n");
}

static void print_null_probe(const char *what, int fd)
{
    int r = mem_enc_op(fd, NULL);
    printf("  mem_enc_op(%s, NULL)%*s %d%s%s\n", what, (int)(12 - strlen(what)), "", r,
           r ? ": " : " (memory encryption enabled)", r ? mem_enc_strerror(r) : "");
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        if (errno == ENOENT || errno == ENODEV) {
            printf("SKIPPED: /dev/kvm is absent on this machine\n");
            return 77;
        }
        fprintf(stderr, "probe: open /dev/kvm: %s\n", strerror(errno));
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        fprintf(stderr, "probe: KVM_CREATE_VM: %s\n", strerror(errno));
        return 1;
    }
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) {
        fprintf(stderr, "probe: KVM_CREATE_VCPU: %s\n", strerror(errno));
        return 1;
    }

    printf("memenc %s, host vendor %u\n", mem_enc_version(), mem_enc_host_vendor());
    printf("Default VM and vCPU:\n");
    print_null_probe("vm_fd", vm);
    print_null_probe("vcpu_fd", vcpu);

    struct mem_enc_caps caps;
    int r = mem_enc_probe(kvm, &caps, sizeof(caps));
    if (r < 0) {
        fprintf(stderr, "probe: mem_enc_probe: %s\n", mem_enc_strerror(r));
        return 1;
    }
    printf("Host capabilities (mem_enc_probe)%s:\n",
           (caps.features & MEM_ENC_CAPS_SIMULATED) ? " [SIMULATED]" : "");
    print_cap("KVM API version", &caps.api_version);
    print_cap("VM types", &caps.vm_types);
    print_cap("SEV vmsa_features", &caps.sev_vmsa_features);
    print_cap("SNP policy bits", &caps.snp_policy_bits);
    print_cap("SNP REQ_CERTS", &caps.snp_req_certs);
    print_cap("SEV NULL probe (default VM)", &caps.sev_null_probe);
    print_cap("TDX supported attributes", &caps.tdx_supported_attrs);
    print_cap("TDX supported xfam", &caps.tdx_supported_xfam);
    print_cap("TDX configurable CPUID leaves", &caps.tdx_cpuid_configs);
    print_cap("guest_memfd", &caps.guest_memfd);
    print_cap("memory attributes", &caps.memory_attributes);
    printf("  %-30s SEV %s, SEV-ES %s, SNP %s, TDX %s, KVM_SEV_INIT2 %s\n", "summary",
           (caps.features & MEM_ENC_CAPS_SEV) ? "yes" : "no",
           (caps.features & MEM_ENC_CAPS_SEV_ES) ? "yes" : "no",
           (caps.features & MEM_ENC_CAPS_SNP) ? "yes" : "no",
           (caps.features & MEM_ENC_CAPS_TDX) ? "yes" : "no",
           (caps.features & MEM_ENC_CAPS_SEV_INIT2) ? "yes" : "no");

    struct mem_enc_launch_request req = {
        .accept_vm_types = MEM_ENC_VM_TYPES_CONFIDENTIAL,
        .vmsa_features_optional = MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        .tdx_attributes_optional = MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
    };
    struct mem_enc_launch_settings plan;
    char msg[512 /* any size: the message is truncated to fit */];
    r = mem_enc_negotiate_launch(&caps, sizeof(caps), &req, sizeof(req), &plan, sizeof(plan),
                                 msg, sizeof(msg));
    if (r == 0) {
        printf("Verdict: confidential VMs supported.\n  %s\n", msg);
        printf("  create VM type %u, init path %u, ghcb_version %u, vmsa_features 0x%" PRIx64
               ", policy 0x%" PRIx64 ", TDX attributes 0x%" PRIx64 ", xfam 0x%" PRIx64 "\n",
               plan.create_vm_type, plan.init_path, plan.ghcb_version, plan.vmsa_features,
               plan.snp_policy, plan.tdx_attributes, plan.tdx_xfam);
    } else if (r == -EOPNOTSUPP) {
        printf("Verdict: no confidential VMs on this host.\n  %s\n", msg);
    } else {
        fprintf(stderr, "probe: mem_enc_negotiate_launch: %s\n", mem_enc_strerror(r));
        return 1;
    }
    close(vcpu);
    close(vm);
    close(kvm);
    return 0;
}
