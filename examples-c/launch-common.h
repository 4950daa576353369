/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * What the three launch examples (sev-launch.c, snp-launch.c, tdx-launch.c) share, written
 * the way a VMM's host layer would be:
 *
 *  - the command line: --sim PROFILE (memenc's simulated host), --auto (the real host when it
 *    has the technology, else the newest simulated profile that has it), --trace,
 *    --inject-fw-status ID:STATUS (simulated host: one firmware call fails, to show how a
 *    failure is reported);
 *  - host selection: probe (mem_enc_probe), negotiate (mem_enc_negotiate_launch), and the
 *    first line of output, "host: real (...)" or "host: SIMULATED (profile ...)";
 *  - the VM plumbing (mem_enc_vm_create, mem_enc_vcpu_create, ...), one path for the real and
 *    the simulated host; what differs is only opening /dev/kvm and /dev/sev, and reading the
 *    launch digest (the simulated host shows it, a real one does not);
 *  - error reports: errno sentence (mem_enc_strerror), firmware status (mem_enc_fw_describe)
 *    and the stage that refused the call (mem_enc_last_stage); exit 1;
 *  - guest memory: a deterministic image, and guest_memfd-backed private memory.
 *
 * Exit codes of the examples: 0 launched, 1 a call failed, 2 usage error, 77 this host lacks
 * the technology (and neither --sim nor --auto was given).
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
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

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
 * _mem_*, _vm_*, mem_enc_vcpu_create): the errno sentence, the firmware status and the stage,
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

/* A failed call that does not set the stage (open, a mem_enc_sim_* or negotiation
 * function): there is no firmware status or stage to report. */
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
    const char *sim_profile; /* --sim PROFILE, or NULL */
    int auto_fallback;       /* --auto */
    const char *type;        /* --type NAME (sev-launch only), or NULL */
    const char *inject;      /* --inject-fw-status ID:STATUS (simulated host only), or NULL */
};

static inline void launch_usage(FILE *to, const char *extra)
{
    fprintf(to,
            "usage: %s [--sim PROFILE | --auto] [--trace] [--inject-fw-status ID:STATUS]%s\n"
            "  (none)         launch on this host's KVM; exit 77 if it lacks the technology\n"
            "  --sim PROFILE  launch on memenc's simulated host with this profile:",
            launch_prog, extra ? extra : "");
    for (size_t i = 0; mem_enc_sim_profile_name(i); i++)
        fprintf(to, " %s", mem_enc_sim_profile_name(i));
    fprintf(to, "\n"
                "  --auto         this host if it can, else the simulated host (and say so)\n"
                "  --trace        print every KVM_MEMORY_ENCRYPT_OP memenc issues\n"
                "  --inject-fw-status ID:STATUS\n"
                "                 simulated host: sub-command ID's firmware call fails with\n"
                "                 STATUS\n"
                "                 (shows how a failure is reported)\n");
}

/* Parses the options every example has; "--type" only when type_usage is given. */
static inline struct launch_args launch_parse(int argc, char **argv, const char *type_usage)
{
    struct launch_args a = {0};
    /* Steps and errors in the order they happened, also when the output is a pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sim") && i + 1 < argc) {
            a.sim_profile = argv[++i];
        } else if (!strcmp(argv[i], "--auto")) {
            a.auto_fallback = 1;
        } else if (!strcmp(argv[i], "--inject-fw-status") && i + 1 < argc) {
            a.inject = argv[++i];
        } else if (!strcmp(argv[i], "--trace")) {
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
    if (a.inject && !a.sim_profile) {
        fprintf(stderr, "%s: --inject-fw-status needs --sim\n", launch_prog);
        exit(LAUNCH_EXIT_USAGE);
    }
    if (a.sim_profile && a.auto_fallback) {
        fprintf(stderr, "%s: --sim and --auto exclude each other\n", launch_prog);
        exit(LAUNCH_EXIT_USAGE);
    }
    return a;
}

/* ---- the host: real or simulated -------------------------------------------------------- */

/* What an example launches, and how to negotiate it. */
struct launch_tech {
    const char *name;                    /* "SEV/SEV-ES", "SEV-SNP", "TDX" */
    const char *auto_profile;            /* the simulated profile --auto falls back to */
    struct mem_enc_launch_request request;
};

struct launch_host {
    const char *profile; /* the simulated profile, or NULL for the real host */
    const char *inject;  /* --inject-fw-status, armed on the VM when it is created */
    int kvm_fd;          /* /dev/kvm, or the simulated one */
    struct mem_enc_caps caps;
    struct mem_enc_launch_settings plan;
    char plan_msg[MEM_ENC_MESSAGE_LEN];
};

/* Opens the host's /dev/kvm (real: the device; simulated: mem_enc_sim_kvm_open), probes it and
 * negotiates the launch. Returns 0, -EOPNOTSUPP (host->plan_msg says why) or another -errno
 * (host->plan_msg says which step). */
static inline int launch_host_open(struct launch_host *host, const char *profile,
                                   const struct launch_tech *tech)
{
    memset(host, 0, sizeof(*host));
    host->profile = profile;
    if (profile) {
        host->kvm_fd = mem_enc_sim_kvm_open(profile);
    } else {
        host->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (host->kvm_fd < 0)
            host->kvm_fd = -errno;
    }
    if (host->kvm_fd < 0) {
        snprintf(host->plan_msg, sizeof(host->plan_msg), "cannot open %s/dev/kvm: %s",
                 profile ? "the simulated " : "", mem_enc_strerror(host->kvm_fd));
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
 * Chooses the host from the command line and prints the first line of output. Exits 77 when
 * the real host lacks the technology (no --sim, no --auto), 2 when a simulated profile lacks
 * it, 1 on a failure.
 */
static inline void launch_host_select(struct launch_host *host, const struct launch_args *args,
                                      const struct launch_tech *tech)
{
    char real[160];
    launch_describe_real(real, sizeof(real));
    int r;
    if (args->sim_profile) {
        r = launch_host_open(host, args->sim_profile, tech);
        if (r == -ENOENT && host->kvm_fd < 0) {
            fprintf(stderr, "%s: no simulated profile '%s'\n", launch_prog, args->sim_profile);
            launch_usage(stderr, NULL);
            exit(LAUNCH_EXIT_USAGE);
        }
        printf("host: SIMULATED (profile %s)\n", args->sim_profile);
        if (r == -EOPNOTSUPP) {
            printf("profile %s cannot launch %s guests: %s\n", args->sim_profile, tech->name,
                   host->plan_msg);
            exit(LAUNCH_EXIT_USAGE);
        }
    } else {
        r = launch_host_open(host, NULL, tech);
        if (r < 0 && args->auto_fallback) {
            printf("host: SIMULATED (profile %s; --auto: this host, %s, cannot launch %s guests: "
                   "%s)\n", tech->auto_profile, real, tech->name, host->plan_msg);
            launch_host_close(host);
            r = launch_host_open(host, tech->auto_profile, tech);
        } else {
            printf("host: %s\n", real);
            if (r < 0) {
                printf("this host cannot launch %s guests: %s\n", tech->name, host->plan_msg);
                printf("SKIPPED: no %s here (run with --sim PROFILE or --auto)\n", tech->name);
                exit(LAUNCH_EXIT_SKIP);
            }
        }
    }
    if (r < 0)
        launch_die(host->plan_msg, r);
    host->inject = args->inject;
    if (host->profile && !(host->caps.features & MEM_ENC_CAPS_SIMULATED)) {
        fprintf(stderr, "%s: the probe of the simulated host did not say SIMULATED\n",
                launch_prog);
        exit(LAUNCH_EXIT_FAILED);
    }
    printf("plan: %s\n", host->plan_msg);
}

/* KVM_CREATE_VM of the negotiated type: one call for the real and the simulated /dev/kvm. */
static inline int launch_vm_create(const struct launch_host *host)
{
    int vm = mem_enc_vm_create(host->kvm_fd, host->plan.create_vm_type);
    if (vm < 0)
        launch_die_helper("KVM_CREATE_VM", vm, MEM_ENC_VENDOR_NONE, 0);
    if (host->inject) {
        char *end = NULL;
        unsigned long id = strtoul(host->inject, &end, 0);
        unsigned long long status = *end == ':' ? strtoull(end + 1, &end, 0) : 0;
        if (*end != '\0' || status == 0 || id > UINT32_MAX) {
            fprintf(stderr, "%s: --inject-fw-status wants ID:STATUS, e.g. 3:0x7\n", launch_prog);
            exit(LAUNCH_EXIT_USAGE);
        }
        struct mem_enc_sim_fault fault = {
            .kind = MEM_ENC_SIM_FAULT_FW_STATUS, .cmd_id = (uint32_t)id, .value = status};
        int r = mem_enc_sim_inject(vm, &fault, sizeof(fault));
        if (r < 0)
            launch_die("mem_enc_sim_inject", r);
        launch_step("(injected: sub-command %lu's firmware call fails with status 0x%llx)", id,
                    status);
    }
    return vm;
}

static inline int launch_vcpu_create(int vm, uint32_t id)
{
    int vcpu = mem_enc_vcpu_create(vm, id);
    if (vcpu < 0)
        launch_die_helper("KVM_CREATE_VCPU", vcpu, MEM_ENC_VENDOR_NONE, 0);
    return vcpu;
}

/* /dev/sev (the PSP driver), which LAUNCH_START and the SNP commands take as sev_fd. The one
 * step that differs: the simulated host's firmware device belongs to the simulated VM. */
static inline int launch_sev_open(const struct launch_host *host, int vm)
{
    int fd = host->profile ? mem_enc_sim_sev_device_open(vm) : open("/dev/sev", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        launch_die("open /dev/sev", host->profile ? fd : -errno);
    return fd;
}

/* The launch digest as memenc's simulated host computed it; a real host does not show it to
 * the VMM (the guest gets it in its attestation report). Prints the outcome. */
static inline void launch_print_sim_digest(const struct launch_host *host, int vm,
                                           const char *label)
{
    if (!host->profile) {
        printf("%s: not exposed to the VMM on a real host (the guest reads it in its "
               "attestation report)\n", label);
        return;
    }
    uint8_t digest[MEM_ENC_SIM_DIGEST_MAX];
    int n = mem_enc_sim_launch_digest(vm, digest, sizeof(digest));
    if (n < 0)
        launch_die("mem_enc_sim_launch_digest", n);
    char full[128];
    snprintf(full, sizeof(full), "%s [simulated, profile %s]", label, host->profile);
    launch_print_hex(full, digest, (size_t)n);
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
    int gmem = mem_enc_mem_create_guest_memfd(vm, size, 0);
    if (gmem < 0)
        launch_die_helper("KVM_CREATE_GUEST_MEMFD", gmem, MEM_ENC_VENDOR_NONE, 0);
    struct mem_enc_mem_region_args region = {
        .slot = 0,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = shared,
        .guest_memfd_offset = 0,
        .guest_memfd = gmem,
    };
    int r = mem_enc_mem_set_user_memory_region2(vm, &region, sizeof(region));
    if (r < 0)
        launch_die_helper("KVM_SET_USER_MEMORY_REGION2", r, MEM_ENC_VENDOR_NONE, 0);
    r = mem_enc_mem_set_private(vm, gpa, size, 1);
    if (r < 0)
        launch_die_helper("KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)", r, MEM_ENC_VENDOR_NONE, 0);
    launch_step("guest_memfd %d, memslot 0 at gpa 0x%" PRIx64 " (%" PRIu64
                " KiB, guest_memfd-backed), range private", gmem, gpa, size / 1024);
    return gmem;
}

#endif /* MEMENC_LAUNCH_COMMON_H */
