/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * The cost of the memenc-sim boundary, per call, for a program that knows nothing of memenc.
 * sim/benches/boundary.sh runs several copies in lock step (one plain, the others under
 * `memenc-sim run --profile P`): a token goes round a ring of FIFOs, and only the copy holding
 * it runs its batch, so every copy measures under the same machine conditions, batch by batch.
 *
 *   bench-boundary NAME FIFO_IN FIFO_OUT FIRST BATCHES ROUNDS
 *
 * NAME labels the output; FIRST=1 for the copy that starts without waiting. Each batch does
 * ROUNDS rounds; a round times each operation below once, in an order that rotates from round
 * to round. At the end the copy prints, per operation, the median and the 10th / 90th
 * percentile in ns (each includes one clock_gettime pair, ~26 ns here) and the call's result.
 *
 * Operations:
 *   check_ext_vm_types  KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES) on /dev/kvm
 *   check_ext_user_mem  KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY) on /dev/kvm
 *   encrypt_op          KVM_MEMORY_ENCRYPT_OP(KVM_SEV_GUEST_STATUS) on a SEV-ES VM after INIT2 and
 *                       LAUNCH_START when the host has one (reads the 24-byte command, writes
 *                       the 12-byte status and the command back); else on a default VM
 *   get_api_version     KVM_GET_API_VERSION on /dev/kvm
 *   getppid             getppid()
 *   kvm_run_out         KVM_RUN of a default VM whose guest loops on `out 0x10, al` (one IO
 *                       exit per call)
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-uapi.h"

enum { OP_VM_TYPES, OP_USER_MEM, OP_ENCRYPT, OP_API, OP_GETPPID, OP_RUN, NOPS };
static const char *const names[NOPS] = {"check_ext_vm_types", "check_ext_user_mem", "encrypt_op",
                                        "get_api_version",    "getppid",            "kvm_run_out"};

static int kvm, enc_vm = -1, run_vcpu = -1, sev_fd = -1;
static struct kvm_run *run;
static struct kvm_sev_cmd status_cmd;
static struct kvm_sev_guest_status status;
static long last[NOPS];
static int enc_is_sev;

static void die(const char *what)
{
    fprintf(stderr, "bench-boundary: %s: %s\n", what, strerror(errno));
    exit(1);
}

static long op(int which)
{
    switch (which) {
    case OP_VM_TYPES:
        return ioctl(kvm, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    case OP_USER_MEM:
        return ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
    case OP_ENCRYPT:
        if (enc_is_sev) {
            status_cmd.id = KVM_SEV_GUEST_STATUS;
            status_cmd.data = (uint64_t)(uintptr_t)&status;
            status_cmd.sev_fd = (uint32_t)sev_fd;
            return ioctl(enc_vm, KVM_MEMORY_ENCRYPT_OP, &status_cmd);
        }
        return ioctl(enc_vm, KVM_MEMORY_ENCRYPT_OP, &status_cmd);
    case OP_API:
        return ioctl(kvm, KVM_GET_API_VERSION, 0);
    case OP_GETPPID:
        return syscall(SYS_getppid);
    case OP_RUN: {
        long r = ioctl(run_vcpu, KVM_RUN, 0);
        if (r == 0 && run->exit_reason != KVM_EXIT_IO)
            return -1000 - (long)run->exit_reason;
        return r;
    }
    }
    return -1;
}

static void setup(void)
{
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("open /dev/kvm");
    /* A SEV-ES VM with a launch started, if this host makes one. */
    enc_vm = ioctl(kvm, KVM_CREATE_VM, X_KVM_X86_SEV_ES_VM);
    if (enc_vm >= 0) {
        sev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
        struct x_kvm_sev_init init = {0};
        struct kvm_sev_cmd cmd = {.id = X_KVM_SEV_INIT2, .data = (uint64_t)(uintptr_t)&init,
                                  .sev_fd = (uint32_t)sev_fd};
        if (sev_fd < 0 || ioctl(enc_vm, KVM_MEMORY_ENCRYPT_OP, &cmd) < 0)
            die("SEV-ES INIT2");
        struct kvm_sev_launch_start start = {.policy = 0x5};
        cmd.id = KVM_SEV_LAUNCH_START;
        cmd.data = (uint64_t)(uintptr_t)&start;
        if (ioctl(enc_vm, KVM_MEMORY_ENCRYPT_OP, &cmd) < 0)
            die("SEV-ES LAUNCH_START");
        enc_is_sev = 1;
    } else {
        enc_vm = ioctl(kvm, KVM_CREATE_VM, 0);
        if (enc_vm < 0)
            die("KVM_CREATE_VM(0)");
    }
    /* A default VM whose guest does one OUT exit per KVM_RUN: out 0x10, al; jmp $-2. */
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM(0) for KVM_RUN");
    uint8_t *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    static const uint8_t code[] = {0xe6, 0x10, 0xeb, 0xfc};
    memcpy(mem + 0x1000, code, sizeof(code));
    struct kvm_userspace_memory_region r = {.slot = 0, .memory_size = 0x10000,
                                            .userspace_addr = (uint64_t)(uintptr_t)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    run_vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (run_vcpu < 0)
        die("KVM_CREATE_VCPU");
    struct kvm_sregs sregs;
    if (ioctl(run_vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(run_vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2, .rax = 0x42};
    if (ioctl(run_vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, run_vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");
}

static int cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench-boundary NAME FIFO_IN FIFO_OUT FIRST BATCHES ROUNDS\n");
        return 2;
    }
    const char *name = argv[1];
    int first = atoi(argv[4]);
    long batches = atol(argv[5]), rounds = atol(argv[6]);
    if (batches < 1 || rounds < 1)
        return 2;
    setup();
    /* O_RDWR: opening a FIFO this way never blocks, whoever opens first. */
    int in = open(argv[2], O_RDWR | O_CLOEXEC), out = open(argv[3], O_RDWR | O_CLOEXEC);
    if (in < 0 || out < 0)
        die("open FIFO");
    size_t n = (size_t)(batches * rounds);
    uint32_t *t[NOPS];
    for (int i = 0; i < NOPS; i++) {
        t[i] = calloc(n, sizeof(uint32_t));
        if (!t[i])
            die("calloc");
    }
    /* One untimed warm-up round. */
    for (int i = 0; i < NOPS; i++)
        (void)op(i);
    size_t k = 0;
    char token = 'x';
    for (long b = 0; b < batches; b++) {
        if ((b > 0 || !first) && read(in, &token, 1) != 1)
            die("read token");
        for (long r = 0; r < rounds; r++, k++) {
            for (int j = 0; j < NOPS; j++) {
                int i = (int)((j + k) % NOPS);
                uint64_t t0 = now();
                long v = op(i);
                uint64_t t1 = now();
                last[i] = v < 0 && v > -1000 ? -errno : v;
                t[i][k] = (uint32_t)(t1 - t0);
            }
        }
        if (write(out, &token, 1) != 1)
            die("write token");
    }
    for (int i = 0; i < NOPS; i++) {
        qsort(t[i], n, sizeof(uint32_t), cmp);
        printf("%s %s median %u p10 %u p90 %u n %zu result %ld%s\n", name, names[i], t[i][n / 2],
               t[i][n / 10], t[i][n * 9 / 10], n, last[i],
               i == OP_ENCRYPT ? (enc_is_sev ? " (SEV-ES GUEST_STATUS)" : " (default VM)") : "");
    }
    return 0;
}
