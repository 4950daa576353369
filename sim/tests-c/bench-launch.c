/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * A large launch update by a program that knows nothing of memenc (raw ioctls), timed: what
 * sim/benches/boundary.sh runs under memenc-sim against the model in-process
 * (benches/sim_launch_inproc.rs, the same work through memenc's helpers).
 *
 *   bench-launch snp MIB   snp@6.18: SNP VM, INIT2, SNP_LAUNCH_START, guest_memfd + memslot +
 *                          private attributes over MIB MiB, then SNP_LAUNCH_UPDATE (NORMAL) of
 *                          all of it from a filled source
 *   bench-launch tdx MIB   tdx@6.19: TD, INIT_VM (CPUID 0x80000008 GPAW 48), split irqchip,
 *                          guest_memfd + memslot + private attributes, vCPU 0 + INIT_VCPU, then
 *                          INIT_MEM_REGION with KVM_TDX_MEASURE_MEMORY_REGION of all of it
 *
 * Only the update is timed (every call it takes: the kernel may stop early and advance the
 * arguments). Prints "WHAT MIB MiB SECONDS s RATE MiB/s CALLS calls". Exit 1 on a failed
 * call, 2 usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-uapi.h"

#define PAGE 4096ull

static void die(const char *what)
{
    fprintf(stderr, "bench-launch: %s failed: %s\n", what, strerror(errno));
    exit(1);
}

static void *map(uint64_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED)
        die("mmap");
    return p;
}

/* Every page different: its index, then a byte pattern (as sim_launch's source). */
static uint8_t *source(uint64_t bytes)
{
    uint8_t *p = map(bytes);
    for (uint64_t i = 0; i < bytes / PAGE; i++) {
        memset(p + i * PAGE, (int)(i % 251), PAGE);
        memcpy(p + i * PAGE, &i, sizeof(i));
    }
    return p;
}

/* guest_memfd + memslot 0 at GPA 0 + private attributes over `bytes`. */
static void private_memory(int vm, uint64_t bytes)
{
    struct x_kvm_create_guest_memfd g = {.size = bytes};
    int gmem = ioctl(vm, X_KVM_CREATE_GUEST_MEMFD, &g);
    if (gmem < 0)
        die("KVM_CREATE_GUEST_MEMFD");
    struct x_kvm_userspace_memory_region2 region = {
        .slot = 0, .flags = X_KVM_MEM_GUEST_MEMFD, .memory_size = bytes,
        .userspace_addr = (uint64_t)(uintptr_t)map(bytes), .guest_memfd = (uint32_t)gmem};
    if (ioctl(vm, X_KVM_SET_USER_MEMORY_REGION2, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION2");
    struct x_kvm_memory_attributes attrs = {.size = bytes,
                                            .attributes = X_KVM_MEMORY_ATTRIBUTE_PRIVATE};
    if (ioctl(vm, X_KVM_SET_MEMORY_ATTRIBUTES, &attrs) < 0)
        die("KVM_SET_MEMORY_ATTRIBUTES");
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int sev_op(int vm, int sev, uint32_t id, void *data)
{
    struct kvm_sev_cmd cmd = {.id = id, .data = (uint64_t)(uintptr_t)data, .sev_fd = (uint32_t)sev};
    return ioctl(vm, KVM_MEMORY_ENCRYPT_OP, &cmd);
}

static int tdx_op(int fd, uint32_t id, uint32_t flags, uint64_t data)
{
    struct x_kvm_tdx_cmd cmd = {.id = id, .flags = flags, .data = data};
    return ioctl(fd, KVM_MEMORY_ENCRYPT_OP, &cmd);
}

static double snp(int kvm, uint64_t bytes, const uint8_t *src, long *calls)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, X_KVM_X86_SNP_VM);
    if (vm < 0)
        die("KVM_CREATE_VM(SNP)");
    int sev = open("/dev/sev", O_RDWR | O_CLOEXEC);
    if (sev < 0)
        die("open /dev/sev");
    struct x_kvm_sev_init init = {.ghcb_version = 2};
    if (sev_op(vm, sev, X_KVM_SEV_INIT2, &init) < 0)
        die("KVM_SEV_INIT2");
    struct x_kvm_sev_snp_launch_start start = {.policy = 0x30000};
    if (sev_op(vm, sev, X_KVM_SEV_SNP_LAUNCH_START, &start) < 0)
        die("SNP_LAUNCH_START");
    private_memory(vm, bytes);
    struct x_kvm_sev_snp_launch_update u = {
        .uaddr = (uint64_t)(uintptr_t)src, .len = bytes, .type = X_PAGE_TYPE_NORMAL};
    double t0 = now();
    while (u.len) {
        ++*calls;
        if (sev_op(vm, sev, X_KVM_SEV_SNP_LAUNCH_UPDATE, &u) < 0 && errno != EINTR &&
            errno != EAGAIN)
            die("SNP_LAUNCH_UPDATE");
    }
    return now() - t0;
}

static double tdx(int kvm, uint64_t bytes, const uint8_t *src, long *calls)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, X_KVM_X86_TDX_VM);
    if (vm < 0)
        die("KVM_CREATE_VM(TDX)");
    struct {
        struct x_kvm_tdx_init_vm init;
        struct kvm_cpuid_entry2 entries[1];
    } a;
    memset(&a, 0, sizeof(a));
    a.init.attributes = X_TDX_ATTR_SEPT_VE_DISABLE;
    a.init.xfam = 3;
    a.init.cpuid.nent = 1;
    a.entries[0].function = 0x80000008u;
    a.entries[0].eax = 48u << 16; /* GPAW 48 */
    if (tdx_op(vm, X_KVM_TDX_INIT_VM, 0, (uint64_t)(uintptr_t)&a) < 0)
        die("KVM_TDX_INIT_VM");
    struct kvm_enable_cap cap = {.cap = KVM_CAP_SPLIT_IRQCHIP, .args = {24}};
    if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0)
        die("KVM_ENABLE_CAP(SPLIT_IRQCHIP)");
    private_memory(vm, bytes);
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    if (tdx_op(vcpu, X_KVM_TDX_INIT_VCPU, 0, 0x1000) < 0)
        die("KVM_TDX_INIT_VCPU");
    struct x_kvm_tdx_init_mem_region r = {
        .source_addr = (uint64_t)(uintptr_t)src, .gpa = 0, .nr_pages = bytes / PAGE};
    double t0 = now();
    while (r.nr_pages) {
        ++*calls;
        if (tdx_op(vcpu, X_KVM_TDX_INIT_MEM_REGION, X_KVM_TDX_MEASURE_MEMORY_REGION,
                   (uint64_t)(uintptr_t)&r) < 0 &&
            errno != EINTR && errno != EAGAIN)
            die("KVM_TDX_INIT_MEM_REGION");
    }
    return now() - t0;
}

int main(int argc, char **argv)
{
    long mib = argc == 3 ? atol(argv[2]) : 0;
    int is_snp = argc == 3 && !strcmp(argv[1], "snp");
    if (mib <= 0 || (!is_snp && strcmp(argv[1], "tdx"))) {
        fprintf(stderr, "usage: bench-launch snp|tdx MIB\n");
        return 2;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("open /dev/kvm");
    uint64_t bytes = (uint64_t)mib << 20;
    uint8_t *src = source(bytes);
    long calls = 0;
    double s = is_snp ? snp(kvm, bytes, src, &calls) : tdx(kvm, bytes, src, &calls);
    printf("%s %ld MiB %.3f s %.1f MiB/s %ld calls\n", argv[1], mib, s, (double)mib / s, calls);
    return 0;
}
