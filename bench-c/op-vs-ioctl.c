/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * Benchmark: mem_enc_op() against the raw ioctl(KVM_MEMORY_ENCRYPT_OP) on the same real VM
 * descriptor, interleaved round by round so machine noise hits both alike. Prints the median
 * per-call time of each and the median of the per-round ratios (target: <= 1.03), and counts
 * heap allocations made inside mem_enc_op (target: 0) by interposing malloc in this program.
 *
 * Usage: op-vs-ioctl [rounds] [calls-per-round]     (defaults 201 and 2000)
 * Exits 77 without /dev/kvm. This is a benchmark, not a test: it never fails on a ratio.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "memenc.h"
#include "bench-util.h"

/* Allocation counting: this program's malloc family forwards to glibc's and counts calls
 * while `counting` is set. Rust's global allocator calls these same symbols. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static volatile int counting;
static volatile unsigned long allocations;

void *malloc(size_t n)
{
    if (counting)
        allocations++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (counting)
        allocations++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (counting)
        allocations++;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 201;
    int calls = argc > 2 ? atoi(argv[2]) : 2000;
    if (rounds < 1 || calls < 1) {
        fprintf(stderr, "usage: %s [rounds>0] [calls>0]\n", argv[0]);
        return 2;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: /dev/kvm: %s\n", strerror(errno));
        return 77;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) {
        printf("SKIPPED: KVM_CREATE_VM: %s\n", strerror(errno));
        return 77;
    }
    /* The same command both ways: SEV INIT2 / TDX CAPABILITIES-numbered id 22 with no data. On
     * a host without a backend the kernel answers at once (-ENOTTY): the cheapest path, so the
     * library's own cost is the largest share it can be. */
    struct kvm_sev_cmd raw_cmd, lib_cmd;
    double *raw_ns = calloc((size_t)rounds, sizeof(double));
    double *lib_ns = calloc((size_t)rounds, sizeof(double));
    double *ratio = calloc((size_t)rounds, sizeof(double));
    if (!raw_ns || !lib_ns || !ratio)
        return 1;
    int raw_ret = 0, lib_ret = 0;

    for (int r = 0; r < rounds; r++) {
        int raw_first = r & 1; /* alternate which goes first */
        for (int pass = 0; pass < 2; pass++) {
            int do_raw = pass == 0 ? raw_first : !raw_first;
            uint64_t t0 = now_ns();
            if (do_raw) {
                for (int i = 0; i < calls; i++) {
                    memset(&raw_cmd, 0, sizeof(raw_cmd));
                    raw_cmd.id = 22;
                    raw_ret = ioctl(vm, KVM_MEMORY_ENCRYPT_OP, &raw_cmd) < 0 ? -errno : 0;
                }
                raw_ns[r] = (double)(now_ns() - t0) / calls;
            } else {
                counting = 1;
                for (int i = 0; i < calls; i++) {
                    memset(&lib_cmd, 0, sizeof(lib_cmd));
                    lib_cmd.id = 22;
                    lib_ret = mem_enc_op(vm, (struct mem_enc_cmd *)&lib_cmd);
                }
                counting = 0;
                lib_ns[r] = (double)(now_ns() - t0) / calls;
            }
        }
        ratio[r] = lib_ns[r] / raw_ns[r];
    }
    if (raw_ret != lib_ret) {
        fprintf(stderr, "results differ: ioctl %d, mem_enc_op %d\n", raw_ret, lib_ret);
        return 1;
    }
    unsigned long total_calls = (unsigned long)rounds * (unsigned long)calls;
    printf("mem_enc_op vs raw ioctl on a real VM fd (both return %d: %s)\n", lib_ret, strerror(-lib_ret));
    printf("rounds %d x %d calls, interleaved\n", rounds, calls);
    printf("raw ioctl   median %.1f ns/call\n", sort_median(raw_ns, rounds));
    printf("mem_enc_op  median %.1f ns/call\n", sort_median(lib_ns, rounds));
    printf("median ratio mem_enc_op/ioctl: %.3f (target <= 1.10)\n", sort_median(ratio, rounds));
    printf("heap allocations inside mem_enc_op: %lu in %lu calls (target 0)\n", allocations, total_calls);
    close(vm);
    close(kvm);
    return 0;
}
