/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * A plain default VM running a tiny real-mode guest (mov al,0x42; out 0x10,al; jmp back: one
 * KVM_EXIT_IO per KVM_RUN) next to, optionally, a confidential SNP VM whose launch is
 * simulated, all with raw ioctl() as an unmodified VMM would. sim/tests/kvm_run_filter.rs runs
 * it under `memenc-sim run` and checks from the report that the plain VM's KVM_RUNs and
 * register setters were never notified, while the SNP VM's first KVM_RUN still ends the
 * guest (KVM_EXIT_SYSTEM_EVENT, SHUTDOWN).
 *
 *   kvm-run-plain plain N         the plain VM only: N KVM_RUNs
 *   kvm-run-plain both N VCPUS    plain VM, then an SNP VM with VCPUS vCPUs (INIT2,
 *                                 SNP_LAUNCH_START, vCPUs with KVM_SET_SREGS/REGS,
 *                                 SNP_LAUNCH_FINISH), N plain KVM_RUNs, one KVM_RUN per SNP
 *                                 vCPU, N plain KVM_RUNs again
 *   kvm-run-plain lowlimit        an SNP VM; RLIMIT_NOFILE lowered to 64, then KVM_CREATE_VCPU
 *                                 (expects EMFILE, no descriptor left behind); limit restored,
 *                                 KVM_CREATE_VCPU of another id (expects success)
 *
 * Prints one line per fact ("plain vcpu fd 7", "snp vcpu 1 fd 513", "snp vcpu 0 exit 24 type
 * 1", "plain runs 1000 io 1000"). KVM_RUN_PLAIN_SIGNALS=1 keeps a 50 us SIGALRM timer
 * (SA_RESTART) running throughout. Exit 0 if every check passed, 1 on a failed call or check,
 * 2 usage, 77 without /dev/kvm.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-uapi.h"

static int kvm, mmap_size, fails;
static volatile sig_atomic_t signals_seen;

static void die(const char *what)
{
    fprintf(stderr, "kvm-run-plain: %s failed: %s\n", what, strerror(errno));
    exit(1);
}

#define CHECK(c, ...)                                                                          \
    do {                                                                                       \
        if (!(c)) {                                                                            \
            fprintf(stderr, "kvm-run-plain: FAIL line %d: ", __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            fails++;                                                                           \
        }                                                                                      \
    } while (0)

/* ioctl, retried on EINTR (the signal timer) as a VMM would. */
static long xioctl(int fd, unsigned long req, unsigned long arg)
{
    long r;
    do
        r = ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r;
}

static int new_vm(unsigned long type)
{
    int vm = (int)xioctl(kvm, KVM_CREATE_VM, type);
    if (vm < 0)
        die("KVM_CREATE_VM");
    return vm;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        die("opendir /proc/self/fd");
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- the plain VM ---------------------------------------------------------------------- */
struct plain {
    int vm, vcpu;
    struct kvm_run *run;
    long runs, io;
};

static void plain_setup(struct plain *p)
{
    p->vm = new_vm(0);
    uint8_t *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    /* mov al, 0x42; out 0x10, al; jmp -6 (back to the mov) */
    static const uint8_t code[] = {0xb0, 0x42, 0xe6, 0x10, 0xeb, 0xfa};
    memcpy(mem + 0x1000, code, sizeof(code));
    struct kvm_userspace_memory_region r = {.slot = 0, .memory_size = 0x10000,
                                            .userspace_addr = (uint64_t)(uintptr_t)mem};
    if (xioctl(p->vm, KVM_SET_USER_MEMORY_REGION, (unsigned long)&r) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    p->vcpu = (int)xioctl(p->vm, KVM_CREATE_VCPU, 0);
    if (p->vcpu < 0)
        die("KVM_CREATE_VCPU (plain)");
    printf("plain vcpu fd %d\n", p->vcpu);
    struct kvm_sregs sregs;
    if (xioctl(p->vcpu, KVM_GET_SREGS, (unsigned long)&sregs) < 0)
        die("KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (xioctl(p->vcpu, KVM_SET_SREGS, (unsigned long)&sregs) < 0)
        die("KVM_SET_SREGS (plain)");
    struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
    if (xioctl(p->vcpu, KVM_SET_REGS, (unsigned long)&regs) < 0)
        die("KVM_SET_REGS (plain)");
    p->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->vcpu, 0);
    if (p->run == MAP_FAILED)
        die("mmap kvm_run (plain)");
}

static void plain_runs(struct plain *p, long n)
{
    for (long i = 0; i < n; i++) {
        if (xioctl(p->vcpu, KVM_RUN, 0) < 0)
            die("KVM_RUN (plain)");
        p->runs++;
        struct kvm_run *r = p->run;
        if (r->exit_reason == KVM_EXIT_IO && r->io.port == 0x10 &&
            ((uint8_t *)r)[r->io.data_offset] == 0x42)
            p->io++;
        else
            CHECK(0, "plain KVM_RUN %ld: exit %u", i, r->exit_reason);
    }
}

/* ---- the SNP VM ------------------------------------------------------------------------ */
static int snp_vm, sev_fd;

static void sev(uint32_t id, void *data, const char *what)
{
    struct kvm_sev_cmd cmd = {.id = id, .data = (uint64_t)(uintptr_t)data, .sev_fd = (uint32_t)sev_fd};
    if (xioctl(snp_vm, KVM_MEMORY_ENCRYPT_OP, (unsigned long)&cmd) < 0)
        die(what);
}

static void snp_start(void)
{
    snp_vm = new_vm(X_KVM_X86_SNP_VM);
    sev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
    if (sev_fd < 0)
        die("open /dev/sev");
    struct x_kvm_sev_init init = {.ghcb_version = 2};
    sev(X_KVM_SEV_INIT2, &init, "KVM_SEV_INIT2");
    struct x_kvm_sev_snp_launch_start start = {.policy = 0x30000};
    sev(X_KVM_SEV_SNP_LAUNCH_START, &start, "KVM_SEV_SNP_LAUNCH_START");
}

static int snp_vcpu(int id)
{
    int fd = (int)xioctl(snp_vm, KVM_CREATE_VCPU, (unsigned long)id);
    if (fd < 0)
        die("KVM_CREATE_VCPU (snp)");
    CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "snp vcpu %d: close-on-exec kept", id);
    char link[64], path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof(link) - 1);
    link[n > 0 ? n : 0] = 0;
    CHECK(!strncmp(link, "anon_inode:kvm-vcpu:", 20), "snp vcpu %d: fd %d is %s", id, fd, link);
    struct kvm_sregs sregs;
    if (xioctl(fd, KVM_GET_SREGS, (unsigned long)&sregs) < 0)
        die("KVM_GET_SREGS (snp)");
    if (xioctl(fd, KVM_SET_SREGS, (unsigned long)&sregs) < 0)
        die("KVM_SET_SREGS (snp)");
    struct kvm_regs regs = {.rip = 0xfff0, .rflags = 2, .rdx = 0x00800f12};
    if (xioctl(fd, KVM_SET_REGS, (unsigned long)&regs) < 0)
        die("KVM_SET_REGS (snp)");
    printf("snp vcpu %d fd %d\n", id, fd);
    return fd;
}

static void on_alarm(int sig)
{
    (void)sig;
    signals_seen = signals_seen + 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? atol(argv[2]) : 0;
    int vcpus = argc > 3 ? atoi(argv[3]) : 1;
    int plain_only = !strcmp(mode, "plain"), both = !strcmp(mode, "both");
    if ((!plain_only && !both && strcmp(mode, "lowlimit")) || n < 0 || vcpus < 1 || vcpus > 64) {
        fprintf(stderr, "usage: kvm-run-plain plain N | both N VCPUS | lowlimit\n");
        return 2;
    }
    if (getenv("KVM_RUN_PLAIN_SIGNALS")) {
        struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval every = {.it_interval = {0, 50}, .it_value = {0, 50}};
        setitimer(ITIMER_REAL, &every, NULL);
    }
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: no /dev/kvm\n");
        return 77;
    }
    mmap_size = (int)xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size <= 0)
        die("KVM_GET_VCPU_MMAP_SIZE");

    if (!strcmp(mode, "lowlimit")) {
        snp_start();
        struct rlimit was, low;
        if (getrlimit(RLIMIT_NOFILE, &was) < 0)
            die("getrlimit");
        low = was;
        low.rlim_cur = 64;
        if (setrlimit(RLIMIT_NOFILE, &low) < 0)
            die("setrlimit");
        int before = open_fds();
        errno = 0;
        long r = xioctl(snp_vm, KVM_CREATE_VCPU, 0);
        int err = errno;
        printf("lowlimit create_vcpu %ld errno %d\n", r, r < 0 ? err : 0);
        CHECK(open_fds() == before, "no descriptor left behind: %d -> %d", before, open_fds());
        if (setrlimit(RLIMIT_NOFILE, &was) < 0)
            die("setrlimit");
        snp_vcpu(1);
        return fails ? 1 : 0;
    }

    struct plain p = {0};
    plain_setup(&p);
    if (plain_only) {
        plain_runs(&p, n);
    } else {
        snp_start();
        int fds[64];
        for (int i = 0; i < vcpus; i++)
            fds[i] = snp_vcpu(i);
        struct x_kvm_sev_snp_launch_finish finish = {0};
        sev(X_KVM_SEV_SNP_LAUNCH_FINISH, &finish, "KVM_SEV_SNP_LAUNCH_FINISH");
        plain_runs(&p, n);
        for (int i = 0; i < vcpus; i++) {
            struct kvm_run *r = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                                     fds[i], 0);
            if (r == MAP_FAILED)
                die("mmap kvm_run (snp)");
            if (xioctl(fds[i], KVM_RUN, 0) < 0)
                die("KVM_RUN (snp)");
            printf("snp vcpu %d exit %u type %u\n", i, r->exit_reason,
                   r->exit_reason == X_KVM_EXIT_SYSTEM_EVENT ? r->system_event.type : 0);
            munmap(r, (size_t)mmap_size);
        }
        plain_runs(&p, n);
    }
    struct itimerval off = {0};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("plain runs %ld io %ld\n", p.runs, p.io);
    printf("signals %d\n", (int)signals_seen);
    return fails ? 1 : 0;
}
