/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * What the three launch examples (sev-launch.c, snp-launch.c, tdx-launch.c) share, written
 * the way a VMM's host layer would be:
 *
 *  - the command line: --trace;
 *  - host selection: probe (mem_enc_probe), negotiate (mem_enc_negotiate_launch), and the
 *    first line of output, "host: real (...)", or "host: SIMULATED (profile ...)" when
 *    memenc-sim runs the program (it names its profile in MEMENC_SIM_PROFILE; nothing else in
 *    the program knows or cares: it opens /dev/kvm and /dev/sev as on real hardware);
 *  - the VM plumbing (KVM_CREATE_VM, KVM_CREATE_VCPU, guest_memfd, memslots, attributes);
 *  - error reports: errno sentence (mem_enc_strerror), firmware status (mem_enc_fw_describe)
 *    and the stage that refused the call (mem_enc_last_stage); exit 1;
 *  - guest memory: a deterministic image, and guest_memfd-backed private memory.
 *
 * Exit codes of the examples: 0 launched, 1 a call failed, 2 usage error, 77 this host lacks
 * the technology (run it under memenc-sim to launch on a simulated host).
 */
#ifndef MEMENC_LAUNCH_COMMON_H
#define MEMENC_LAUNCH_COMMON_H

#define _GNU_SOURCE /* strerrorname_np, MAP_ANONYMOUS under -std=c11 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include <sys/utsname.h>
#include <unistd.h>

/*
 * The guest_memfd uAPI (Linux 6.8), for system headers that predate it (QEMU carries its own
 * copy of the kernel headers for the same reason). Values from include/uapi/linux/kvm.h.
 */
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_userspace_memory_region2 {
    __u32 slot;
    __u32 flags;
    __u64 guest_phys_addr;
    __u64 memory_size;
    __u64 userspace_addr;
    __u64 guest_memfd_offset;
    __u32 guest_memfd;
    __u32 pad1;
    __u64 pad2[14];
};
struct kvm_memory_attributes {
    __u64 address;
    __u64 size;
    __u64 attributes;
    __u64 flags;
};
struct kvm_create_guest_memfd {
    __u64 size;
    __u64 flags;
    __u64 reserved[6];
};
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif

/* A plain KVM ioctl, the VMM's own (memenc does not wrap these): its result or -errno. */
static inline int launch_kvm_ioctl(int fd, unsigned long request, unsigned long arg)
{
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

#include "memenc.h"

#define LAUNCH_PAGE_SIZE 4096u
#define LAUNCH_EXIT_FAILED 1
#define LAUNCH_EXIT_USAGE 2
#define LAUNCH_EXIT_SKIP 77

/* ---- reporting ------------------------------------------------------------------------- */

static const char *launch_prog = "launch";

static inline const char *launch_errno_name(int err)
{
    const char *name = strerrorname_np(err < 0 ? -err : err);
    return name ? name : "?";
}

static inline const char *launch_stage_name(uint32_t stage)
{
    switch (stage) {
    case MEM_ENC_STAGE_NONE: return "none (the call succeeded)";
    case MEM_ENC_STAGE_MEMENC: return "memenc (refused before any ioctl)";
    case MEM_ENC_STAGE_KVM: return "KVM (the kernel refused before the firmware)";
    case MEM_ENC_STAGE_FIRMWARE: return "firmware (the PSP or TDX module refused)";
    default: return "unknown";
    }
}

/*
 * A failed call that sets mem_enc_last_stage() (mem_enc_op, mem_enc_sev_*, _snp_*, _tdx_*,
 * _mem_*): the errno sentence, the firmware status and the stage,
 * then exit 1. Call it right after the helper: the stage is
 * per thread and the next helper call replaces it.
 */
static inline void launch_die_helper(const char *what, int ret, uint32_t vendor, uint64_t fw)
{
    uint32_t stage = mem_enc_last_stage();
    char fw_text[MEM_ENC_FW_DESCRIBE_MAX];
    if (mem_enc_fw_describe(vendor, fw, fw_text, sizeof(fw_text)) < 0)
        snprintf(fw_text, sizeof(fw_text), "0x%" PRIx64, fw);
    fprintf(stderr, "%s: %s failed: %d (%s): %s\n", launch_prog, what, ret,
            launch_errno_name(ret), mem_enc_strerror(ret));
    fprintf(stderr, "  firmware status: %s\n", fw ? fw_text : "0 (the firmware was not reached)");
    fprintf(stderr, "  stage: %s\n", launch_stage_name(stage));
    exit(LAUNCH_EXIT_FAILED);
}

/* A failed call that does not set the stage (open, a plain KVM ioctl, a negotiation function):
 * there is no firmware status or stage to report. */
static inline void launch_die(const char *what, int ret)
{
    fprintf(stderr, "%s: %s failed: %d (%s): %s\n", launch_prog, what, ret,
            launch_errno_name(ret), mem_enc_strerror(ret));
    fprintf(stderr, "  firmware status: not reached (not a firmware command)\n");
    fprintf(stderr, "  stage: not a KVM command (no stage recorded)\n");
    exit(LAUNCH_EXIT_FAILED);
}

/* One step of the flow, as a VMM's log would show it. */
static inline void launch_step(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("  ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
}

static inline void launch_print_hex(const char *label, const uint8_t *buf, size_t len)
{
    printf("%s (%zu bytes): ", label, len);
    for (size_t i = 0; i < len; i++)
        printf("%02x", buf[i]);
    putchar('\n');
}

/* --trace: every KVM_MEMORY_ENCRYPT_OP memenc issues, as it returns. */
static inline void launch_trace(void *userdata, const struct mem_enc_trace_event *ev)
{
    (void)userdata;
    printf("    [trace] %s on %s fd %d: %d%s%s, status 0x%" PRIx64 "\n", ev->name, ev->scope,
           ev->fd, ev->ret, ev->ret ? " " : "", ev->ret ? launch_errno_name(ev->ret) : "",
           ev->status);
}

/* ---- command line ---------------------------------------------------------------------- */

struct launch_args {
    const char *type; /* --type NAME (sev-launch only), or NULL */
};

static inline void launch_usage(FILE *to, const char *extra)
{
    fprintf(to,
            "usage: %s [--trace]%s\n"
            "  launches on this host's KVM; exits 77 if it lacks the technology\n"
            "  (memenc-sim run --profile PROFILE -- %s ... launches on a simulated host)\n"
            "  --trace        print every KVM_MEMORY_ENCRYPT_OP memenc issues\n",
            launch_prog, extra ? extra : "", launch_prog);
}

/* Parses the options every example has; "--type" only when type_usage is given. */
static inline struct launch_args launch_parse(int argc, char **argv, const char *type_usage)
{
    struct launch_args a = {0};
    /* Steps and errors in the order they happened, also when the output is a pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--trace")) {
            mem_enc_set_trace(launch_trace, NULL);
        } else if (type_usage && !strcmp(argv[i], "--type") && i + 1 < argc) {
            a.type = argv[++i];
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            launch_usage(stdout, type_usage);
            exit(0);
        } else {
            launch_usage(stderr, type_usage);
            exit(LAUNCH_EXIT_USAGE);
        }
    }
    return a;
}

/* ---- the host ---------------------------------------------------------------------------- */

/* What an example launches, and how to negotiate it. */
struct launch_tech {
    const char *name;                    /* "SEV/SEV-ES", "SEV-SNP", "TDX" */
    struct mem_enc_launch_request request;
};

struct launch_host {
    int kvm_fd; /* /dev/kvm */
    struct mem_enc_caps caps;
    struct mem_enc_launch_settings plan;
    char plan_msg[512]; /* any size: mem_enc_negotiate_launch() truncates to fit */
};

/* Opens /dev/kvm, probes it and negotiates the launch. Returns 0, -EOPNOTSUPP
 * (host->plan_msg says why) or another -errno (host->plan_msg says which step). */
static inline int launch_host_open(struct launch_host *host, const struct launch_tech *tech)
{
    memset(host, 0, sizeof(*host));
    host->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (host->kvm_fd < 0) {
        host->kvm_fd = -errno;
        snprintf(host->plan_msg, sizeof(host->plan_msg), "cannot open /dev/kvm: %s",
                 mem_enc_strerror(host->kvm_fd));
        return host->kvm_fd;
    }
    int r = mem_enc_probe(host->kvm_fd, &host->caps, sizeof(host->caps));
    if (r < 0) {
        snprintf(host->plan_msg, sizeof(host->plan_msg), "mem_enc_probe: %s",
                 mem_enc_strerror(r));
        return r;
    }
    return mem_enc_negotiate_launch(&host->caps, sizeof(host->caps), &tech->request,
                                    sizeof(tech->request), &host->plan, sizeof(host->plan),
                                    host->plan_msg, sizeof(host->plan_msg));
}

static inline void launch_host_close(struct launch_host *host)
{
    if (host->kvm_fd >= 0)
        close(host->kvm_fd);
    host->kvm_fd = -1;
}

static inline const char *launch_vendor_name(uint32_t vendor)
{
    return vendor == MEM_ENC_VENDOR_SEV ? "AMD" : vendor == MEM_ENC_VENDOR_TDX ? "Intel" : "other";
}

/* "real (/dev/kvm, AMD CPU, Linux 6.18.0)" */
static inline void launch_describe_real(char *buf, size_t len)
{
    struct utsname u;
    if (uname(&u) != 0)
        snprintf(u.release, sizeof(u.release), "?");
    snprintf(buf, len, "real (/dev/kvm, %s CPU, Linux %s)",
             launch_vendor_name(mem_enc_host_vendor()), u.release);
}

/*
 * Opens and negotiates the host and prints the first line of output. Exits 77 when the host
 * lacks the technology, 1 on a failure.
 */
static inline void launch_host_select(struct launch_host *host, const struct launch_args *args,
                                      const struct launch_tech *tech)
{
    (void)args;
    char real[160];
    launch_describe_real(real, sizeof(real));
    const char *sim = getenv("MEMENC_SIM_PROFILE");
    if (sim)
        printf("host: SIMULATED (profile %s, memenc-sim)\n", sim);
    else
        printf("host: %s\n", real);
    int r = launch_host_open(host, tech);
    if (r < 0 && host->kvm_fd < 0 && !sim) {
        printf("this host cannot launch %s guests: %s\n", tech->name, host->plan_msg);
        printf("SKIPPED: no %s here (run it under memenc-sim run --profile ...)\n", tech->name);
        exit(LAUNCH_EXIT_SKIP);
    }
    if (r == -EOPNOTSUPP) {
        printf("this host cannot launch %s guests: %s\n", tech->name, host->plan_msg);
        if (sim)
            exit(LAUNCH_EXIT_USAGE);
        printf("SKIPPED: no %s here (run it under memenc-sim run --profile ...)\n", tech->name);
        exit(LAUNCH_EXIT_SKIP);
    }
    if (r < 0)
        launch_die(host->plan_msg, r);
    printf("plan: %s\n", host->plan_msg);
}

/* KVM_CREATE_VM of the negotiated type: the VMM's own ioctl. */
static inline int launch_vm_create(const struct launch_host *host)
{
    int vm = launch_kvm_ioctl(host->kvm_fd, KVM_CREATE_VM, host->plan.create_vm_type);
    if (vm < 0)
        launch_die("KVM_CREATE_VM", vm);
    return vm;
}

static inline int launch_vcpu_create(int vm, uint32_t id)
{
    int vcpu = launch_kvm_ioctl(vm, KVM_CREATE_VCPU, id);
    if (vcpu < 0)
        launch_die("KVM_CREATE_VCPU", vcpu);
    return vcpu;
}

/*
 * A sub-command without parameters (SEV INIT, ES_INIT, LAUNCH_UPDATE_VMSA, LAUNCH_FINISH; TDX
 * FINALIZE_VM): one mem_enc_op() with MEM_ENC_FLAG_RETRY (there are no typed wrappers for
 * these). The firmware status comes back in the command: SEV error, TDX hw_error.
 */
static inline int launch_op(int vm, uint32_t id, uint64_t *status)
{
    struct mem_enc_cmd cmd = {.id = id, .flags = MEM_ENC_FLAG_RETRY};
    int r = mem_enc_op(vm, &cmd);
    *status = mem_enc_host_vendor() == MEM_ENC_VENDOR_TDX ? cmd.status.hw_error
                                                          : cmd.status.sev.error;
    return r;
}

/* /dev/sev (the PSP driver), which LAUNCH_START and the SNP commands take as sev_fd. */
static inline int launch_sev_open(void)
{
    int fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        launch_die("open /dev/sev", -errno);
    return fd;
}

/* The launch digest is not shown to the VMM on a real host (the guest reads it in its
 * attestation report); memenc-sim reports the one a real host would compute. */
static inline void launch_print_digest_note(const char *label)
{
    printf("%s: not exposed to the VMM (the guest reads it in its attestation report; "
           "memenc-sim --report shows the simulated host's)\n", label);
}

/* ---- guest memory ---------------------------------------------------------------------- */

/* Page-aligned, zeroed, host-visible memory (the memslot's shared backing). */
static inline uint8_t *launch_mem_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        launch_die("mmap guest memory", -errno);
    return p;
}

static inline void launch_mem_free(uint8_t *p, size_t size)
{
    munmap(p, size);
}

/* The guest image: a deterministic pattern (what a firmware volume would be), so the
 * measurements are the same on every run. */
static inline void launch_image_fill(uint8_t *dst, size_t pages)
{
    static const char banner[] = "memenc launch example guest image";
    for (size_t i = 0; i < pages * LAUNCH_PAGE_SIZE; i++)
        dst[i] = (uint8_t)(i * 7u + (i / LAUNCH_PAGE_SIZE) * 31u + 0x5au);
    memcpy(dst, banner, sizeof(banner));
}

/*
 * Private guest memory, as SNP and TDX need it: a guest_memfd for the private pages, a memslot
 * (slot 0 at gpa) whose shared side is "shared", and the whole range marked private. Returns
 * the guest_memfd (the caller closes it after the VM).
 */
static inline int launch_private_memory(int vm, uint64_t gpa, uint8_t *shared, uint64_t size)
{
    struct kvm_create_guest_memfd create = {.size = size};
    int gmem = launch_kvm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, (unsigned long)&create);
    if (gmem < 0)
        launch_die("KVM_CREATE_GUEST_MEMFD", gmem);
    struct kvm_userspace_memory_region2 region = {
        .slot = 0,
        .flags = KVM_MEM_GUEST_MEMFD,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)shared,
        .guest_memfd_offset = 0,
        .guest_memfd = (uint32_t)gmem,
    };
    int r = launch_kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, (unsigned long)&region);
    if (r < 0)
        launch_die("KVM_SET_USER_MEMORY_REGION2", r);
    struct kvm_memory_attributes attrs = {
        .address = gpa,
        .size = size,
        .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
    };
    r = launch_kvm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, (unsigned long)&attrs);
    if (r < 0)
        launch_die("KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)", r);
    launch_step("guest_memfd %d, memslot 0 at gpa 0x%" PRIx64 " (%" PRIu64
                " KiB, guest_memfd-backed), range private", gmem, gpa, size / 1024);
    return gmem;
}

#endif /* MEMENC_LAUNCH_COMMON_H */
