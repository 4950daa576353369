/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * Benchmark: the cost of mem_enc_probe() on this host.
 *
 *  1. cached, kvm_fd -1: ns per call once the answer is cached (target <= 100 ns);
 *  2. cached, a caller's /dev/kvm descriptor: ns per call (one fstat() per call by design);
 *  3. first probe after mem_enc_probe_invalidate(), in this process: what a cold cache costs
 *     (open /dev/kvm, the capability queries, the scratch VM), with the library already loaded
 *     and warm in the CPU caches;
 *  4. first probe in a fresh process: this program re-executes itself (fork + execv) and the new
 *     process times its very first mem_enc_probe(-1) (library just loaded, nothing cached)
 *     (target <= 2 ms).
 *  5. for reference, KVM_CREATE_VM + close() of a default VM with no probe at all: the share of
 *     (3) and (4) that is the kernel creating and tearing down the probe's scratch VM.
 * Each figure is the median over rounds, with the minimum and maximum.
 *
 * Usage: probe-bench [rounds] [calls-per-round]     (defaults 101 and 100000)
 * Exits 77 without /dev/kvm. This is a benchmark, not a test: it never fails on a figure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "memenc.h"
#include "bench-util.h"

#define CHILD_FLAG "--first-probe-child"

/* Sorts v and prints "median / min / max". */
static void report(const char *what, double *v, int n, const char *unit, double scale)
{
    sort_median(v, n);
    printf("%-44s median %10.1f %s   (min %.1f, max %.1f, %d rounds)\n", what, v[n / 2] / scale,
           unit, v[0] / scale, v[n - 1] / scale, n);
}

/* The fresh process: time the first probe, print the ns, nothing else. */
static int child_main(void)
{
    struct mem_enc_caps caps;
    uint64_t t0 = now_ns();
    int r = mem_enc_probe(-1, &caps, sizeof(caps));
    uint64_t t1 = now_ns();
    if (r != 0)
        return 3;
    printf("%llu\n", (unsigned long long)(t1 - t0));
    return 0;
}

/* Runs this program again with CHILD_FLAG and reads its one number; -1 on failure. */
static double fresh_process_ns(const char *self)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {(char *)self, (char *)CHILD_FLAG, NULL};
        execv("/proc/self/exe", argv);
        _exit(4);
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return strtod(buf, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], CHILD_FLAG) == 0)
        return child_main();
    int rounds = argc > 1 ? atoi(argv[1]) : 101;
    int calls = argc > 2 ? atoi(argv[2]) : 100000;
    if (rounds < 1 || calls < 1) {
        fprintf(stderr, "usage: %s [rounds>0] [calls>0]\n", argv[0]);
        return 2;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: /dev/kvm: %s\n", strerror(errno));
        return 77;
    }
    struct mem_enc_caps caps;
    int r = mem_enc_probe(-1, &caps, sizeof(caps));
    if (r != 0) {
        printf("SKIPPED: mem_enc_probe(-1): %s\n", mem_enc_strerror(r));
        return 77;
    }
    double *v = calloc((size_t)rounds, sizeof(double));
    if (!v)
        return 1;
    printf("mem_enc_probe() on this host (memenc %s)\n", mem_enc_version());

    /* 1 and 2: cached. The result is checked every call, so the loop cannot be elided. */
    int fds[2] = {-1, kvm};
    const char *names[2] = {"cached probe, kvm_fd -1", "cached probe, caller's /dev/kvm fd"};
    for (int which = 0; which < 2; which++) {
        for (int i = 0; i < rounds; i++) {
            int bad = 0;
            uint64_t t0 = now_ns();
            for (int c = 0; c < calls; c++)
                bad |= mem_enc_probe(fds[which], &caps, sizeof(caps));
            v[i] = (double)(now_ns() - t0) / calls;
            if (bad) {
                fprintf(stderr, "cached probe failed\n");
                return 1;
            }
        }
        report(names[which], v, rounds, "ns/call", 1);
    }
    printf("%-44s target <= 100 ns\n", "");

    /* 3: first probe after invalidation, in this process. */
    for (int i = 0; i < rounds; i++) {
        mem_enc_probe_invalidate();
        uint64_t t0 = now_ns();
        r = mem_enc_probe(-1, &caps, sizeof(caps));
        v[i] = (double)(now_ns() - t0);
        if (r != 0) {
            fprintf(stderr, "probe after invalidation failed: %d\n", r);
            return 1;
        }
    }
    report("first probe after mem_enc_probe_invalidate()", v, rounds, "us", 1000);

    /* 4: first probe in a fresh process (fork + exec of this program). */
    int ok = 0;
    for (int i = 0; i < rounds; i++) {
        double ns = fresh_process_ns(argv[0]);
        if (ns >= 0)
            v[ok++] = ns;
    }
    if (ok == 0) {
        fprintf(stderr, "no fresh process reported a probe time\n");
        return 1;
    }
    report("first probe in a fresh process (exec)", v, ok, "us", 1000);
    printf("%-44s target <= 2000 us\n", "");

    /* 5: the kernel's own cost of one scratch VM. */
    for (int i = 0; i < rounds; i++) {
        uint64_t t0 = now_ns();
        int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
        if (vm < 0) {
            fprintf(stderr, "KVM_CREATE_VM: %s\n", strerror(errno));
            return 1;
        }
        close(vm);
        v[i] = (double)(now_ns() - t0);
    }
    report("reference: KVM_CREATE_VM + close(), no probe", v, rounds, "us", 1000);
    close(kvm);
    free(v);
    return 0;
}
