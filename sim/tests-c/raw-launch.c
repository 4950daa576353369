/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * A confidential launch by a program that knows nothing of memenc: raw ioctl() on /dev/kvm,
 * the VM, its vCPUs and /dev/sev, with <linux/kvm.h>'s types (and, where this system's headers
 * predate them, the kernel's newer uAPI structs from kvm-uapi.h). It is what memenc-sim must
 * serve like a real host; its launch digest is checked against sev-snp-measure's
 * (sim/tests-c/expected-digest.py) by sim/tests/raw_launch.rs.
 *
 *   raw-launch snp VCPUS           SNP: INIT2, SNP_LAUNCH_START, guest_memfd + memslot +
 *                                  private attributes, SNP_LAUNCH_UPDATE of normal, zero,
 *                                  secrets and CPUID pages, vCPUs with registers, SNP_LAUNCH_FINISH
 *   raw-launch seves-legacy VCPUS  SEV-ES via KVM_SEV_ES_INIT on a default VM
 *   raw-launch seves-init2 VCPUS   SEV-ES via KVM_SEV_INIT2 on a SEV-ES VM
 *
 * Environment: RAW_LAUNCH_THREADS=1 creates and sets up each vCPU in a thread of its own (as
 * QEMU does); RAW_LAUNCH_SIGNALS=1 keeps a 50 µs SIGALRM timer (SA_RESTART handler) running
 * through the launch and issues every SNP_LAUNCH_UPDATE one page at a time, so signals land
 * during simulated commands (a command run twice or a lost write-back changes the digest).
 *
 * RAW_LAUNCH_RUN=1: after the launch, the BSP's first KVM_RUN, and its exit reason printed (a
 * simulated guest ends with KVM_EXIT_SYSTEM_EVENT, SHUTDOWN; a real one would start running).
 *
 * The vCPU registers are what QEMU sets at reset (KVM_SET_SREGS, KVM_SET_REGS): CPU signature
 * in RDX (EPYC-v4, 0x00800f12), BSP at 0xfffffff0, APs at AP_EIP. Exit 0 when launched, 1 on a
 * failed call (named on stderr), 2 usage, 77 without /dev/kvm.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-uapi.h"

#define PAGE 4096u
#define VCPU_SIG 0x00800f12u /* EPYC-v4: CPUID.1.EAX */
#define BSP_EIP 0xfffffff0u
#define AP_EIP 0xfffff6b0u
#define POLICY_SNP 0x30000ull /* SMT allowed, reserved bit 17 */
#define POLICY_ES 0x5u        /* NODBG | ES */


/* ---- the guest memory layout (expected-digest.py has the same) ------------------------- */
#define MEM_GPA 0x0ull
#define MEM_PAGES 64u
#define IMAGE_GPA 0x10000ull /* normal pages */
#define IMAGE_PAGES 5u
#define ZERO_GPA 0x20000ull
#define ZERO_PAGES 2u
#define SECRETS_GPA 0x30000ull
#define CPUID_GPA 0x31000ull

static void die(const char *what, int ret, uint32_t fw)
{
    fprintf(stderr, "raw-launch: %s failed: %d (%s), firmware error %u\n", what, ret,
            strerror(ret < 0 ? -ret : ret), fw);
    exit(1);
}

static int xioctl(int fd, unsigned long req, void *arg)
{
    return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

static int vm_fd, sev_fd;

static void sev(uint32_t id, void *data, const char *what)
{
    struct kvm_sev_cmd cmd = {.id = id, .data = (uint64_t)(uintptr_t)data, .sev_fd = (uint32_t)sev_fd};
    int r = xioctl(vm_fd, KVM_MEMORY_ENCRYPT_OP, &cmd);
    if (r < 0)
        die(what, r, cmd.error);
}

/* The image's bytes: a fixed pattern both this program and expected-digest.py derive. */
static void fill_image(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 13u + (i >> 12) * 101u + 7u) & 0xff);
}

static struct kvm_segment seg(uint16_t selector, uint64_t base, uint8_t type, uint8_t s)
{
    struct kvm_segment g = {.base = base, .limit = 0xffff, .selector = selector, .type = type,
                            .present = 1, .s = s};
    return g;
}

/* What QEMU sets for a vCPU at reset before the VMSA is measured. */
static void vcpu_reset_like_qemu(int vcpu, uint32_t eip, int bsp)
{
    struct kvm_sregs sregs;
    memset(&sregs, 0, sizeof(sregs));
    sregs.cs = seg(0xf000, eip & 0xffff0000u, 0xb, 1);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg(0, 0, 3, 1);
    sregs.ldt = seg(0, 0, 2, 0);
    sregs.tr = seg(0, 0, 11, 0);
    sregs.gdt.limit = sregs.idt.limit = 0xffff;
    sregs.cr0 = 0x60000010;
    sregs.apic_base = bsp ? 0xfee00900 : 0xfee00800;
    int r = xioctl(vcpu, KVM_SET_SREGS, &sregs);
    if (r < 0)
        die("KVM_SET_SREGS", r, 0);
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rdx = VCPU_SIG;
    regs.rip = eip & 0xffff;
    regs.rflags = 2;
    r = xioctl(vcpu, KVM_SET_REGS, &regs);
    if (r < 0)
        die("KVM_SET_REGS", r, 0);
}

static volatile sig_atomic_t signals_seen;
static int bsp_fd = -1;

static void on_alarm(int sig)
{
    (void)sig;
    signals_seen = signals_seen + 1;
}

static void *vcpu_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    int vcpu = ioctl(vm_fd, KVM_CREATE_VCPU, i);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU", -errno, 0);
    vcpu_reset_like_qemu(vcpu, i == 0 ? BSP_EIP : AP_EIP, i == 0);
    if (i == 0)
        bsp_fd = vcpu;
    return NULL;
}

/* vCPU i gets id i; in threads, each waits for the previous one's creation (ids in order, as
 * the measurement's vCPU order is creation order). */
static void create_vcpus(int n)
{
    int threads = getenv("RAW_LAUNCH_THREADS") != NULL;
    for (int i = 0; i < n; i++) {
        if (!threads) {
            vcpu_thread((void *)(intptr_t)i);
            continue;
        }
        pthread_t t;
        if (pthread_create(&t, NULL, vcpu_thread, (void *)(intptr_t)i) != 0)
            die("pthread_create", -EAGAIN, 0);
        pthread_join(t, NULL);
    }
}

static void snp_update(uint64_t gpa, uint8_t *host, uint64_t pages, uint8_t type, const char *what)
{
    uint64_t step = getenv("RAW_LAUNCH_SIGNALS") ? 1 : pages;
    for (uint64_t done = 0; done < pages; done += step) {
        struct x_kvm_sev_snp_launch_update u = {
            .gfn_start = gpa / PAGE + done, .uaddr = (uint64_t)(uintptr_t)(host + done * PAGE),
            .len = step * PAGE, .type = type};
        while (u.len) /* partial progress: the kernel advances the fields */
            sev(X_KVM_SEV_SNP_LAUNCH_UPDATE, &u, what);
    }
}

static void launch_snp(uint8_t *mem, int vcpus)
{
    struct x_kvm_sev_init init = {.ghcb_version = 2};
    sev(X_KVM_SEV_INIT2, &init, "KVM_SEV_INIT2");
    struct x_kvm_sev_snp_launch_start start = {.policy = POLICY_SNP};
    sev(X_KVM_SEV_SNP_LAUNCH_START, &start, "KVM_SEV_SNP_LAUNCH_START");

    struct x_kvm_create_guest_memfd g = {.size = MEM_PAGES * PAGE};
    int gmem = ioctl(vm_fd, X_KVM_CREATE_GUEST_MEMFD, &g);
    if (gmem < 0)
        die("KVM_CREATE_GUEST_MEMFD", -errno, 0);
    struct x_kvm_userspace_memory_region2 region = {
        .slot = 0, .flags = X_KVM_MEM_GUEST_MEMFD, .guest_phys_addr = MEM_GPA,
        .memory_size = MEM_PAGES * PAGE, .userspace_addr = (uint64_t)(uintptr_t)mem,
        .guest_memfd_offset = 0, .guest_memfd = (uint32_t)gmem};
    int r = xioctl(vm_fd, X_KVM_SET_USER_MEMORY_REGION2, &region);
    if (r < 0)
        die("KVM_SET_USER_MEMORY_REGION2", r, 0);
    struct x_kvm_memory_attributes attrs = {
        .address = MEM_GPA, .size = MEM_PAGES * PAGE, .attributes = X_KVM_MEMORY_ATTRIBUTE_PRIVATE};
    r = xioctl(vm_fd, X_KVM_SET_MEMORY_ATTRIBUTES, &attrs);
    if (r < 0)
        die("KVM_SET_MEMORY_ATTRIBUTES", r, 0);

    snp_update(IMAGE_GPA, mem + IMAGE_GPA, IMAGE_PAGES, X_PAGE_TYPE_NORMAL, "SNP_LAUNCH_UPDATE(normal)");
    snp_update(ZERO_GPA, mem + ZERO_GPA, ZERO_PAGES, X_PAGE_TYPE_ZERO, "SNP_LAUNCH_UPDATE(zero)");
    snp_update(SECRETS_GPA, mem + SECRETS_GPA, 1, X_PAGE_TYPE_SECRETS, "SNP_LAUNCH_UPDATE(secrets)");
    snp_update(CPUID_GPA, mem + CPUID_GPA, 1, X_PAGE_TYPE_CPUID, "SNP_LAUNCH_UPDATE(cpuid)");

    create_vcpus(vcpus);
    struct x_kvm_sev_snp_launch_finish finish = {0};
    sev(X_KVM_SEV_SNP_LAUNCH_FINISH, &finish, "KVM_SEV_SNP_LAUNCH_FINISH");
}

static void launch_seves(uint8_t *mem, int vcpus, int legacy)
{
    if (legacy) {
        sev(KVM_SEV_ES_INIT, NULL, "KVM_SEV_ES_INIT");
    } else {
        struct x_kvm_sev_init init = {0};
        sev(X_KVM_SEV_INIT2, &init, "KVM_SEV_INIT2");
    }
    struct kvm_enc_region reg = {.addr = (uint64_t)(uintptr_t)mem, .size = MEM_PAGES * PAGE};
    int r = xioctl(vm_fd, KVM_MEMORY_ENCRYPT_REG_REGION, &reg);
    if (r < 0)
        die("KVM_MEMORY_ENCRYPT_REG_REGION", r, 0);
    struct kvm_sev_launch_start start = {.policy = POLICY_ES};
    sev(KVM_SEV_LAUNCH_START, &start, "KVM_SEV_LAUNCH_START");
    struct kvm_sev_launch_update_data data = {
        .uaddr = (uint64_t)(uintptr_t)(mem + IMAGE_GPA), .len = IMAGE_PAGES * PAGE};
    sev(KVM_SEV_LAUNCH_UPDATE_DATA, &data, "KVM_SEV_LAUNCH_UPDATE_DATA");
    create_vcpus(vcpus);
    sev(KVM_SEV_LAUNCH_UPDATE_VMSA, NULL, "KVM_SEV_LAUNCH_UPDATE_VMSA");
    uint8_t blob[48];
    struct kvm_sev_launch_measure m = {.uaddr = (uint64_t)(uintptr_t)blob, .len = sizeof(blob)};
    sev(KVM_SEV_LAUNCH_MEASURE, &m, "KVM_SEV_LAUNCH_MEASURE");
    sev(KVM_SEV_LAUNCH_FINISH, NULL, "KVM_SEV_LAUNCH_FINISH");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: raw-launch snp|seves-legacy|seves-init2 VCPUS\n");
        return 2;
    }
    const char *mode = argv[1];
    int vcpus = atoi(argv[2]);
    int snp = !strcmp(mode, "snp"), legacy = !strcmp(mode, "seves-legacy");
    if ((!snp && !legacy && strcmp(mode, "seves-init2")) || vcpus < 1 || vcpus > 64) {
        fprintf(stderr, "usage: raw-launch snp|seves-legacy|seves-init2 VCPUS\n");
        return 2;
    }
    if (getenv("RAW_LAUNCH_SIGNALS")) {
        struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval every = {.it_interval = {0, 50}, .it_value = {0, 50}};
        setitimer(ITIMER_REAL, &every, NULL);
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: no /dev/kvm\n");
        return 77;
    }
    unsigned long type = snp ? X_KVM_X86_SNP_VM : legacy ? 0 : X_KVM_X86_SEV_ES_VM;
    /* KVM_CREATE_VM fails with EINTR when a signal is pending (mm_take_all_locks); QEMU's
     * kvm_init retries it the same way. */
    do
        vm_fd = ioctl(kvm, KVM_CREATE_VM, type);
    while (vm_fd < 0 && errno == EINTR);
    if (vm_fd < 0)
        die("KVM_CREATE_VM", -errno, 0);
    sev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
    if (sev_fd < 0)
        die("open /dev/sev", -errno, 0);
    uint8_t *mem = mmap(NULL, MEM_PAGES * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap", -errno, 0);
    fill_image(mem + IMAGE_GPA, IMAGE_PAGES * PAGE);
    if (snp)
        launch_snp(mem, vcpus);
    else
        launch_seves(mem, vcpus, legacy);
    if (getenv("RAW_LAUNCH_RUN")) {
        int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        struct kvm_run *run = size > 0 ? mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
                                              MAP_SHARED, bsp_fd, 0) : MAP_FAILED;
        if (run == MAP_FAILED)
            die("mmap kvm_run", -errno, 0);
        int r = xioctl(bsp_fd, KVM_RUN, NULL);
        if (r < 0)
            die("KVM_RUN", r, 0);
        printf("first KVM_RUN: exit %u", run->exit_reason);
        if (run->exit_reason == KVM_EXIT_SYSTEM_EVENT)
            printf(" (system event %u)", run->system_event.type);
        printf("\n");
    }
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("%s launch with %d vCPUs finished (%d signals during it)\n", mode, vcpus,
           (int)signals_seen);
    return 0;
}
