/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/* Small helpers shared by the C tests: checks that count failures, and /dev/kvm set-up that
 * exits 77 (meson's "skipped") where the host has no KVM. */
#ifndef MEMENC_TEST_UTIL_H
#define MEMENC_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#define TEST_SKIP 77

static int test_failures;
static int test_checks;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        test_checks++;                                                          \
        if (!(cond)) {                                                          \
            test_failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Prints the summary line and gives the exit status. */
static inline int test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* /dev/kvm, or exit 77 with a visible reason when the host has none. */
static inline int test_open_kvm_or_skip(const char *name)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: %s: /dev/kvm not available (%s)\n", name, strerror(errno));
        exit(TEST_SKIP);
    }
    return kvm;
}

/* A default-type VM on the real host, or exit 77 when KVM refuses to create one. */
static inline int test_create_vm_or_skip(int kvm, const char *name)
{
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) {
        printf("SKIPPED: %s: KVM_CREATE_VM failed (%s)\n", name, strerror(errno));
        exit(TEST_SKIP);
    }
    return vm;
}

/* A descriptor number that is certainly not open: the kernel answers EBADF for it. */
static inline int test_closed_fd(void)
{
    int fd = dup(0);
    if (fd < 0)
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(fd);
    return fd;
}

/* The raw NULL-argument probe, kept in one named function: valgrind has no model of this
 * ioctl and scripts/valgrind.supp suppresses its false report by this frame's name. */
__attribute__((noinline, unused)) static int test_raw_null_probe(int fd)
{
    return ioctl(fd, KVM_MEMORY_ENCRYPT_OP, NULL);
}

#endif
