/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * A broad list of KVM calls by a program that knows nothing of memenc (raw ioctl() with
 * <linux/kvm.h>'s types, and the newer uAPI from kvm-uapi.h where this system's headers
 * predate it), one output line per call: its result (value, or -1 and errno) and the bytes the
 * kernel wrote back. sim/tests/differential_none.rs runs it on the real /dev/kvm and under
 * `memenc-sim run --profile none` and compares the two outputs line by line: on a host without
 * a confidential backend the simulator must be invisible.
 *
 * Everything printed must be a property of the kernel, not of the run: no addresses, no
 * times, no TSC. Descriptor numbers are printed (the simulator must not change them).
 *
 * Exit 0 when every call was issued (whatever it returned), 77 without /dev/kvm.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kvm-uapi.h"

#define PAGE 4096u

/* ---- output ------------------------------------------------------------------------------ */

static char label[160];

static const char *L(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *L(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(label, sizeof(label), fmt, ap);
    va_end(ap);
    return label;
}

/* One call, one line: "label -> value" or "label -> -1 errno N (NAME)". */
static long call(const char *what, int fd, unsigned long req, unsigned long arg)
{
    errno = 0;
    long r = syscall(SYS_ioctl, fd, req, arg);
    int e = errno;
    if (r < 0)
        printf("%s -> -1 errno %d (%s)\n", what, e, strerrorname_np(e) ? strerrorname_np(e) : "?");
    else
        printf("%s -> %ld\n", what, r);
    errno = e;
    return r;
}

static long callp(const char *what, int fd, unsigned long req, const void *arg)
{
    return call(what, fd, req, (unsigned long)(uintptr_t)arg);
}

/* The bytes a call wrote back: in hex up to 64 bytes, else length and FNV-1a hash. */
static void bytes(const char *what, const void *p, size_t n)
{
    const uint8_t *b = p;
    printf("  %s [%zu]", what, n);
    if (n <= 64) {
        printf(" ");
        for (size_t i = 0; i < n; i++)
            printf("%02x", b[i]);
    } else {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < n; i++)
            h = (h ^ b[i]) * 0x100000001b3ull;
        printf(" fnv1a %016llx", (unsigned long long)h);
    }
    printf("\n");
}

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static int kvm;

static int new_vm(unsigned long type)
{
    return (int)call(L("KVM_CREATE_VM(%lu)", type), kvm, KVM_CREATE_VM, type);
}

/* ---- /dev/kvm ---------------------------------------------------------------------------- */

static void system_calls(void)
{
    call("KVM_GET_API_VERSION", kvm, KVM_GET_API_VERSION, 0);
    call("KVM_GET_API_VERSION(1)", kvm, KVM_GET_API_VERSION, 1);
    call("KVM_GET_VCPU_MMAP_SIZE", kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    for (unsigned long cap = 0; cap <= 260; cap++)
        call(L("dev KVM_CHECK_EXTENSION(%lu)", cap), kvm, KVM_CHECK_EXTENSION, cap);
    call("dev KVM_CHECK_EXTENSION(235 | 1<<32)", kvm, KVM_CHECK_EXTENSION,
         X_KVM_CAP_VM_TYPES | (1ul << 32));
    call("dev KVM_CHECK_EXTENSION(-1)", kvm, KVM_CHECK_EXTENSION, ~0ul);
    /* The kernel takes the low 32 bits of the request. */
    call("dev KVM_CHECK_EXTENSION|1<<32 (235)", kvm, KVM_CHECK_EXTENSION | (1ul << 32),
         X_KVM_CAP_VM_TYPES);
    call("dev KVM_CHECK_EXTENSION|1<<32 (233)", kvm, KVM_CHECK_EXTENSION | (1ul << 32),
         X_KVM_CAP_MEMORY_ATTRIBUTES);

    for (uint32_t group = 0; group <= 2; group++) {
        for (uint64_t attr = 0; attr <= 3; attr++) {
            uint64_t value = 0xa5a5a5a5a5a5a5a5ull;
            struct x_kvm_device_attr a = {.group = group, .attr = attr,
                                          .addr = (uint64_t)(uintptr_t)&value};
            callp(L("dev KVM_HAS_DEVICE_ATTR(%u, %llu)", group, (unsigned long long)attr), kvm,
                  X_KVM_HAS_DEVICE_ATTR, &a);
            callp(L("dev KVM_GET_DEVICE_ATTR(%u, %llu)", group, (unsigned long long)attr), kvm,
                  X_KVM_GET_DEVICE_ATTR, &a);
            bytes("value", &value, sizeof(value));
        }
    }
    struct x_kvm_device_attr bad = {.group = X_KVM_X86_GRP_SEV, .attr = 0, .addr = 8};
    callp("dev KVM_GET_DEVICE_ATTR(1, 0, addr 8)", kvm, X_KVM_GET_DEVICE_ATTR, &bad);
    bad.group = 0;
    callp("dev KVM_GET_DEVICE_ATTR(0, 0, addr 8)", kvm, X_KVM_GET_DEVICE_ATTR, &bad);
    call("dev KVM_GET_DEVICE_ATTR(NULL)", kvm, X_KVM_GET_DEVICE_ATTR, 0);
    call("dev KVM_HAS_DEVICE_ATTR(NULL)", kvm, X_KVM_HAS_DEVICE_ATTR, 0);
    /* VM ioctls on /dev/kvm. */
    call("dev KVM_MEMORY_ENCRYPT_OP(NULL)", kvm, KVM_MEMORY_ENCRYPT_OP, 0);
    call("dev KVM_SET_USER_MEMORY_REGION(NULL)", kvm, KVM_SET_USER_MEMORY_REGION, 0);
    call("dev KVM_ENABLE_CAP(NULL)", kvm, KVM_ENABLE_CAP, 0);

    unsigned long types[] = {0, 1, 2, 3, 4, 5, 6, 31, 32, 1ul << 32, ~0ul};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        int vm = new_vm(types[i]);
        if (vm >= 0)
            close(vm);
    }
}

/* ---- a VM -------------------------------------------------------------------------------- */

static void vm_caps(int vm, const char *which)
{
    for (unsigned long cap = 0; cap <= 260; cap++)
        call(L("%s KVM_CHECK_EXTENSION(%lu)", which, cap), vm, KVM_CHECK_EXTENSION, cap);
}

static void encrypt_ops(int fd, const char *which)
{
    call(L("%s KVM_MEMORY_ENCRYPT_OP(NULL)", which), fd, KVM_MEMORY_ENCRYPT_OP, 0);
    call(L("%s KVM_MEMORY_ENCRYPT_OP(8)", which), fd, KVM_MEMORY_ENCRYPT_OP, 8);
    struct kvm_sev_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    callp(L("%s KVM_MEMORY_ENCRYPT_OP(zeroed)", which), fd, KVM_MEMORY_ENCRYPT_OP, &cmd);
    bytes("cmd", &cmd, sizeof(cmd));
    uint32_t ids[] = {0, 1, 2, 3, 4, 5, X_KVM_SEV_INIT2, 100, 101, 102, 103};
    uint8_t data[256];
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        memset(data, 0, sizeof(data));
        memset(&cmd, 0, sizeof(cmd));
        cmd.id = ids[i];
        cmd.data = (uint64_t)(uintptr_t)data;
        cmd.error = 0xa5a5a5a5;
        cmd.sev_fd = 0xffffffff;
        callp(L("%s KVM_MEMORY_ENCRYPT_OP(id %u)", which, ids[i]), fd, KVM_MEMORY_ENCRYPT_OP,
              &cmd);
        /* .data is an address: only its effect is printed. */
        cmd.data = 0;
        bytes("cmd", &cmd, sizeof(cmd));
        bytes("data", data, sizeof(data));
    }
}

static void region_calls(int vm, uint8_t *mem)
{
    struct kvm_enc_region r = {.addr = (uint64_t)(uintptr_t)mem, .size = 0x10000};
    callp("vm KVM_MEMORY_ENCRYPT_REG_REGION", vm, KVM_MEMORY_ENCRYPT_REG_REGION, &r);
    callp("vm KVM_MEMORY_ENCRYPT_UNREG_REGION", vm, KVM_MEMORY_ENCRYPT_UNREG_REGION, &r);
    call("vm KVM_MEMORY_ENCRYPT_REG_REGION(NULL)", vm, KVM_MEMORY_ENCRYPT_REG_REGION, 0);
    call("vm KVM_MEMORY_ENCRYPT_UNREG_REGION(NULL)", vm, KVM_MEMORY_ENCRYPT_UNREG_REGION, 0);
    struct x_kvm_memory_attributes a = {.address = 0, .size = 0x10000,
                                        .attributes = X_KVM_MEMORY_ATTRIBUTE_PRIVATE};
    callp("vm KVM_SET_MEMORY_ATTRIBUTES(private)", vm, X_KVM_SET_MEMORY_ATTRIBUTES, &a);
    a.attributes = 0;
    callp("vm KVM_SET_MEMORY_ATTRIBUTES(shared)", vm, X_KVM_SET_MEMORY_ATTRIBUTES, &a);
    a.flags = 1;
    callp("vm KVM_SET_MEMORY_ATTRIBUTES(flags 1)", vm, X_KVM_SET_MEMORY_ATTRIBUTES, &a);
    call("vm KVM_SET_MEMORY_ATTRIBUTES(NULL)", vm, X_KVM_SET_MEMORY_ATTRIBUTES, 0);
}

static int gmem(int vm, const char *what, uint64_t size, uint64_t flags, uint64_t reserved0)
{
    struct x_kvm_create_guest_memfd g = {.size = size, .flags = flags};
    g.reserved[0] = reserved0;
    int fd = (int)callp(L("vm KVM_CREATE_GUEST_MEMFD(%s)", what), vm, X_KVM_CREATE_GUEST_MEMFD, &g);
    bytes("args", &g, sizeof(g));
    return fd;
}

static void guest_memfd_calls(int vm)
{
    int fds[16], n = 0;
    fds[n++] = gmem(vm, "size 64K, flags 0", 0x10000, 0, 0);
    fds[n++] = gmem(vm, "size 64K, MMAP", 0x10000, X_GUEST_MEMFD_FLAG_MMAP, 0);
    fds[n++] = gmem(vm, "size 64K, MMAP|INIT_SHARED", 0x10000,
                    X_GUEST_MEMFD_FLAG_MMAP | X_GUEST_MEMFD_FLAG_INIT_SHARED, 0);
    fds[n++] = gmem(vm, "size 64K, INIT_SHARED", 0x10000, X_GUEST_MEMFD_FLAG_INIT_SHARED, 0);
    fds[n++] = gmem(vm, "size 64K, flags 4", 0x10000, 4, 0);
    fds[n++] = gmem(vm, "size 64K, flags 1<<63", 0x10000, 1ull << 63, 0);
    fds[n++] = gmem(vm, "size 0", 0, 0, 0);
    fds[n++] = gmem(vm, "size 4095", 4095, 0, 0);
    fds[n++] = gmem(vm, "size 4097", 4097, 0, 0);
    fds[n++] = gmem(vm, "size -4096", (uint64_t)-4096, 0, 0);
    fds[n++] = gmem(vm, "size 1<<63", 1ull << 63, 0, 0);
    fds[n++] = gmem(vm, "size 4096, reserved[0] 1", 4096, 0, 1);
    call("vm KVM_CREATE_GUEST_MEMFD(NULL)", vm, X_KVM_CREATE_GUEST_MEMFD, 0);
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            /* A guest_memfd is not a VM: VM ioctls on it are not KVM's. */
            if (i == 0)
                call("gmem KVM_CHECK_EXTENSION(235)", fds[i], KVM_CHECK_EXTENSION,
                     X_KVM_CAP_VM_TYPES);
            close(fds[i]);
        }
}

static long region1(int vm, const char *what, uint32_t slot, uint32_t flags, uint64_t gpa,
                    uint64_t size, uint64_t uaddr)
{
    struct kvm_userspace_memory_region r = {.slot = slot, .flags = flags, .guest_phys_addr = gpa,
                                            .memory_size = size, .userspace_addr = uaddr};
    return callp(L("vm KVM_SET_USER_MEMORY_REGION(%s)", what), vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static long region2(int vm, const char *what, uint32_t slot, uint32_t flags, uint64_t gpa,
                    uint64_t size, uint64_t uaddr, int gfd, uint64_t goff)
{
    struct x_kvm_userspace_memory_region2 r = {
        .slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = uaddr, .guest_memfd_offset = goff, .guest_memfd = (uint32_t)gfd};
    return callp(L("vm KVM_SET_USER_MEMORY_REGION2(%s)", what), vm, X_KVM_SET_USER_MEMORY_REGION2,
                 &r);
}

static void memslot_calls(int vm, int other_vm)
{
    uint64_t a = (uint64_t)(uintptr_t)map(0x40000);
    region1(vm, "slot 10 good", 10, 0, 0x100000, 0x10000, a);
    region1(vm, "slot 11 overlapping", 11, 0, 0x108000, 0x10000, a + 0x10000);
    region1(vm, "slot 11 adjacent", 11, 0, 0x110000, 0x10000, a + 0x10000);
    region1(vm, "slot 12 gpa misaligned", 12, 0, 0x200800, 0x1000, a + 0x20000);
    region1(vm, "slot 12 size misaligned", 12, 0, 0x200000, 0x1800, a + 0x20000);
    region1(vm, "slot 12 uaddr misaligned", 12, 0, 0x200000, 0x1000, a + 0x20010);
    region1(vm, "slot 12 uaddr kernel", 12, 0, 0x200000, 0x1000, 0xffff888000000000ull);
    region1(vm, "slot 12 uaddr NULL", 12, 0, 0x200000, 0x1000, 0);
    region1(vm, "slot 12 gpa wraps", 12, 0, ~0ull & ~0xfffull, 0x2000, a + 0x20000);
    region1(vm, "slot 12 flags 0x80", 12, 0x80, 0x200000, 0x1000, a + 0x20000);
    region1(vm, "slot 12 GUEST_MEMFD flag in v1", 12, X_KVM_MEM_GUEST_MEMFD, 0x200000, 0x1000,
            a + 0x20000);
    region1(vm, "slot 12 readonly", 12, KVM_MEM_READONLY, 0x200000, 0x1000, a + 0x20000);
    region1(vm, "slot 12 readonly -> dirty log", 12, KVM_MEM_LOG_DIRTY_PAGES, 0x200000, 0x1000,
            a + 0x20000);
    region1(vm, "slot 10 dirty log", 10, KVM_MEM_LOG_DIRTY_PAGES, 0x100000, 0x10000, a);
    region1(vm, "slot 10 move", 10, 0, 0x300000, 0x10000, a);
    region1(vm, "slot 10 resize", 10, 0, 0x300000, 0x20000, a);
    region1(vm, "slot 10 new uaddr", 10, 0, 0x300000, 0x10000, a + 0x30000);
    region1(vm, "slot 32766", 32766, 0, 0x400000, 0x1000, a + 0x20000);
    region1(vm, "slot 32767", 32767, 0, 0x401000, 0x1000, a + 0x21000);
    region1(vm, "slot 1<<16|13 (SMM address space)", (1u << 16) | 13, 0, 0x100000, 0x1000,
            a + 0x22000);
    region1(vm, "slot 2<<16|13", (2u << 16) | 13, 0, 0x100000, 0x1000, a + 0x22000);
    region1(vm, "slot 13 delete (none)", 13, 0, 0, 0, 0);
    region1(vm, "slot 12 delete", 12, 0, 0, 0, 0);
    region1(vm, "slot 12 delete again", 12, 0, 0, 0, 0);
    call("vm KVM_SET_USER_MEMORY_REGION(NULL)", vm, KVM_SET_USER_MEMORY_REGION, 0);

    /* guest_memfd-backed memslots. */
    struct x_kvm_create_guest_memfd g = {.size = 0x20000};
    int gfd = (int)callp("vm KVM_CREATE_GUEST_MEMFD(for slots)", vm, X_KVM_CREATE_GUEST_MEMFD, &g);
    int ofd = (int)callp("other KVM_CREATE_GUEST_MEMFD(for slots)", other_vm,
                         X_KVM_CREATE_GUEST_MEMFD, &g);
    struct x_kvm_create_guest_memfd gm = {.size = 0x10000, .flags = X_GUEST_MEMFD_FLAG_MMAP |
                                                                    X_GUEST_MEMFD_FLAG_INIT_SHARED};
    int mfd = (int)callp("vm KVM_CREATE_GUEST_MEMFD(MMAP|INIT_SHARED, for slots)", vm,
                         X_KVM_CREATE_GUEST_MEMFD, &gm);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    uint64_t b = a + 0x20000;
    region2(vm, "slot 20 gmem good", 20, X_KVM_MEM_GUEST_MEMFD, 0x500000, 0x10000, b, gfd, 0);
    region2(vm, "slot 21 gmem range bound", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x10000, b, gfd,
            0x8000);
    region2(vm, "slot 21 gmem past end", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x10000, b, gfd,
            0x18000);
    region2(vm, "slot 21 gmem offset misaligned", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b,
            gfd, 0x10800);
    region2(vm, "slot 21 gmem fd 999", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b, 999,
            0x10000);
    region2(vm, "slot 21 gmem fd -1", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b, -1, 0x10000);
    region2(vm, "slot 21 gmem fd /dev/null", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b,
            devnull, 0x10000);
    region2(vm, "slot 21 gmem fd of the VM", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b, vm,
            0x10000);
    region2(vm, "slot 21 gmem of another VM", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x1000, b, ofd,
            0);
    region2(vm, "slot 21 gmem good", 21, X_KVM_MEM_GUEST_MEMFD, 0x600000, 0x10000, b, gfd,
            0x10000);
    region2(vm, "slot 22 gmem + dirty log", 22, X_KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
            0x700000, 0x1000, b, mfd, 0);
    region2(vm, "slot 22 gmem + readonly", 22, X_KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, 0x700000,
            0x1000, b, mfd, 0);
    void *gmap = mfd >= 0 ? mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0)
                          : MAP_FAILED;
    printf("mmap(MMAP guest_memfd) -> %s\n", gmap == MAP_FAILED ? "failed" : "ok");
    uint64_t ga = gmap == MAP_FAILED ? b : (uint64_t)(uintptr_t)gmap;
    region2(vm, "slot 22 gmem mmap-backed", 22, X_KVM_MEM_GUEST_MEMFD, 0x700000, 0x10000, ga, mfd,
            0);
    region2(vm, "slot 20 gmem change flags", 20, X_KVM_MEM_GUEST_MEMFD, 0x500000, 0x10000, b, gfd,
            0);
    region2(vm, "slot 20 gmem move", 20, X_KVM_MEM_GUEST_MEMFD, 0x800000, 0x10000, b, gfd, 0);
    region2(vm, "slot 23 plain via v2", 23, 0, 0x900000, 0x1000, a + 0x30000, 0, 0);
    region2(vm, "slot 23 flags 0x80 via v2", 24, 0x80, 0xa00000, 0x1000, a + 0x30000, 0, 0);
    region2(vm, "slot 20 delete", 20, 0, 0x500000, 0, 0, 0, 0);
    region2(vm, "slot 20 gmem again after delete", 20, X_KVM_MEM_GUEST_MEMFD, 0x500000, 0x10000, b,
            gfd, 0);
    region2(vm, "slot 21 delete", 21, 0, 0, 0, 0, 0, 0);
    region2(vm, "slot 22 delete", 22, 0, 0, 0, 0, 0, 0);
    call("vm KVM_SET_USER_MEMORY_REGION2(NULL)", vm, X_KVM_SET_USER_MEMORY_REGION2, 0);
    if (gmap != MAP_FAILED)
        munmap(gmap, 0x10000);
    close(devnull);
    if (mfd >= 0)
        close(mfd);
    if (ofd >= 0)
        close(ofd);
    /* gfd stays bound to slot 20 of the VM; closed with it. */
    if (gfd >= 0)
        close(gfd);
}

static void enable_split_irqchip(int vm, const char *what, uint64_t pins, uint32_t flags)
{
    struct kvm_enable_cap cap;
    memset(&cap, 0, sizeof(cap));
    cap.cap = KVM_CAP_SPLIT_IRQCHIP;
    cap.flags = flags;
    cap.args[0] = pins;
    callp(L("vm KVM_ENABLE_CAP(SPLIT_IRQCHIP, %s)", what), vm, KVM_ENABLE_CAP, &cap);
}

/* ---- vCPUs and a tiny guest -------------------------------------------------------------- */

/* mov al, 0x42; out 0x10, al; hlt */
static const uint8_t guest_code[] = {0xb0, 0x42, 0xe6, 0x10, 0xf4};
#define CODE_GPA 0x1000u

static void vcpu_setters(int vcpu)
{
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    callp("vcpu KVM_GET_REGS", vcpu, KVM_GET_REGS, &regs);
    bytes("regs", &regs, sizeof(regs));
    regs.rdx = 0x00800f12;
    regs.rflags = 2;
    callp("vcpu KVM_SET_REGS", vcpu, KVM_SET_REGS, &regs);

    struct kvm_sregs sregs;
    memset(&sregs, 0, sizeof(sregs));
    callp("vcpu KVM_GET_SREGS", vcpu, KVM_GET_SREGS, &sregs);
    bytes("sregs", &sregs, sizeof(sregs));
    callp("vcpu KVM_SET_SREGS", vcpu, KVM_SET_SREGS, &sregs);

    struct kvm_fpu fpu;
    memset(&fpu, 0, sizeof(fpu));
    callp("vcpu KVM_GET_FPU", vcpu, KVM_GET_FPU, &fpu);
    bytes("fpu", &fpu, sizeof(fpu));
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    callp("vcpu KVM_SET_FPU", vcpu, KVM_SET_FPU, &fpu);

    struct kvm_xcrs xcrs;
    memset(&xcrs, 0, sizeof(xcrs));
    callp("vcpu KVM_GET_XCRS", vcpu, KVM_GET_XCRS, &xcrs);
    bytes("xcrs", &xcrs, sizeof(xcrs));
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = 1;
    callp("vcpu KVM_SET_XCRS(XCR0=1)", vcpu, KVM_SET_XCRS, &xcrs);
    xcrs.xcrs[0].value = 0;
    callp("vcpu KVM_SET_XCRS(XCR0=0)", vcpu, KVM_SET_XCRS, &xcrs);

    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[2];
    } msrs;
    memset(&msrs, 0, sizeof(msrs));
    msrs.hdr.nmsrs = 2;
    msrs.e[0].index = 0xc0000080; /* EFER */
    msrs.e[1].index = 0x277;      /* PAT */
    callp("vcpu KVM_GET_MSRS(EFER, PAT)", vcpu, KVM_GET_MSRS, &msrs);
    bytes("msrs", &msrs, sizeof(msrs));
    callp("vcpu KVM_SET_MSRS(EFER, PAT)", vcpu, KVM_SET_MSRS, &msrs);
    msrs.hdr.nmsrs = 1;
    msrs.e[0].index = 0xdeadbeef;
    callp("vcpu KVM_SET_MSRS(bogus)", vcpu, KVM_SET_MSRS, &msrs);
    msrs.hdr.nmsrs = 300;
    callp("vcpu KVM_SET_MSRS(300 entries)", vcpu, KVM_SET_MSRS, &msrs);

    struct kvm_debugregs dbg;
    memset(&dbg, 0, sizeof(dbg));
    callp("vcpu KVM_GET_DEBUGREGS", vcpu, KVM_GET_DEBUGREGS, &dbg);
    bytes("debugregs", &dbg, sizeof(dbg));
    callp("vcpu KVM_SET_DEBUGREGS", vcpu, KVM_SET_DEBUGREGS, &dbg);
    dbg.flags = 1;
    callp("vcpu KVM_SET_DEBUGREGS(flags 1)", vcpu, KVM_SET_DEBUGREGS, &dbg);

    size_t n = 128;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + n * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = (uint32_t)n;
    callp("dev KVM_GET_SUPPORTED_CPUID(128)", kvm, KVM_GET_SUPPORTED_CPUID, cpuid);
    callp("vcpu KVM_SET_CPUID2(supported)", vcpu, KVM_SET_CPUID2, cpuid);
    /* Printed without the APIC ID of the host CPU the call ran on (leaf 1 EBX[31:24], the x2APIC
     * ID in leaves 0xB / 0x1F EDX, AMD's extended APIC ID in 0x8000001E EAX): it changes from
     * run to run with scheduling. */
    for (uint32_t i = 0; i < cpuid->nent && i < n; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function == 1)
            e->ebx &= 0x00ffffffu;
        if (e->function == 0xb || e->function == 0x1f)
            e->edx = 0;
        if (e->function == 0x8000001eu)
            e->eax = 0;
    }
    bytes("cpuid", cpuid, sizeof(*cpuid) + cpuid->nent * sizeof(struct kvm_cpuid_entry2));
    uint32_t nent = cpuid->nent;
    cpuid->nent = 1000;
    callp("vcpu KVM_SET_CPUID2(1000 entries)", vcpu, KVM_SET_CPUID2, cpuid);
    cpuid->nent = nent;
    free(cpuid);

    struct kvm_guest_debug gd;
    memset(&gd, 0, sizeof(gd));
    callp("vcpu KVM_SET_GUEST_DEBUG(0)", vcpu, KVM_SET_GUEST_DEBUG, &gd);
    call("vcpu KVM_SET_REGS(NULL)", vcpu, KVM_SET_REGS, 0);
    call("vcpu KVM_CHECK_EXTENSION(235)", vcpu, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
}

/* On a VM without an in-kernel LAPIC (split irqchip would make HLT block in the kernel). */
static void run_guest(int vm, int vcpu, int mmap_size)
{
    uint8_t *mem = map(0x10000);
    memcpy(mem + CODE_GPA, guest_code, sizeof(guest_code));
    region1(vm, "guest slot 0", 0, 0, 0, 0x10000, (uint64_t)(uintptr_t)mem);
    struct kvm_sregs sregs;
    callp("vcpu KVM_GET_SREGS(guest)", vcpu, KVM_GET_SREGS, &sregs);
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    callp("vcpu KVM_SET_SREGS(cs 0)", vcpu, KVM_SET_SREGS, &sregs);
    struct kvm_regs regs;
    memset(&regs, 0, sizeof(regs));
    regs.rip = CODE_GPA;
    regs.rflags = 2;
    callp("vcpu KVM_SET_REGS(rip 0x1000)", vcpu, KVM_SET_REGS, &regs);
    struct kvm_run *run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) {
        printf("mmap(vcpu) -> failed\n");
        return;
    }
    for (int i = 0; i < 3; i++) {
        long r = call(L("vcpu KVM_RUN #%d", i), vcpu, KVM_RUN, 0);
        if (r < 0)
            break;
        printf("  exit_reason %u", run->exit_reason);
        if (run->exit_reason == KVM_EXIT_IO)
            printf(" io dir %u size %u port %#x count %u value %#x", run->io.direction,
                   run->io.size, run->io.port, run->io.count,
                   ((uint8_t *)run)[run->io.data_offset]);
        printf("\n");
        if (run->exit_reason == KVM_EXIT_HLT)
            break;
    }
    callp("vcpu KVM_GET_REGS(after)", vcpu, KVM_GET_REGS, &regs);
    printf("  rip %#llx rax %#llx\n", (unsigned long long)regs.rip, (unsigned long long)regs.rax);
    munmap(run, (size_t)mmap_size);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: no /dev/kvm\n");
        return 77;
    }
    printf("kvm fd %d\n", kvm);
    system_calls();

    int vm = new_vm(0);
    int other = new_vm(0);
    if (vm < 0 || other < 0)
        return 1;
    vm_caps(vm, "vm");
    int dupvm = dup(vm);
    call("vm dup KVM_CHECK_EXTENSION(235)", dupvm, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    call("vm dup KVM_CHECK_EXTENSION(244)", dupvm, KVM_CHECK_EXTENSION, X_KVM_CAP_GUEST_MEMFD_FLAGS);
    close(dupvm);
    call("vm KVM_CHECK_EXTENSION(235 | 1<<32)", vm, KVM_CHECK_EXTENSION,
         X_KVM_CAP_VM_TYPES | (1ul << 32));
    for (uint32_t group = 0; group <= 1; group++) {
        uint64_t value = 0xa5a5a5a5a5a5a5a5ull;
        struct x_kvm_device_attr a = {.group = group, .addr = (uint64_t)(uintptr_t)&value};
        callp(L("vm KVM_HAS_DEVICE_ATTR(%u, 0)", group), vm, X_KVM_HAS_DEVICE_ATTR, &a);
        callp(L("vm KVM_GET_DEVICE_ATTR(%u, 0)", group), vm, X_KVM_GET_DEVICE_ATTR, &a);
        bytes("value", &value, sizeof(value));
    }
    encrypt_ops(vm, "vm");
    uint8_t *mem = map(0x10000);
    region_calls(vm, mem);
    guest_memfd_calls(vm);
    memslot_calls(vm, other);
    call("vm KVM_SET_TSC_KHZ(0)", vm, KVM_SET_TSC_KHZ, 0);

    enable_split_irqchip(vm, "flags 1", 24, 1);
    enable_split_irqchip(vm, "5000 pins", 5000, 0);
    enable_split_irqchip(vm, "24 pins", 24, 0);
    enable_split_irqchip(vm, "24 pins again", 24, 0);
    call("vm KVM_ENABLE_CAP(NULL)", vm, KVM_ENABLE_CAP, 0);
    int mmap_size = (int)call("KVM_GET_VCPU_MMAP_SIZE", kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

    int vcpu = (int)call("vm KVM_CREATE_VCPU(0)", vm, KVM_CREATE_VCPU, 0);
    call("vm KVM_CREATE_VCPU(0) again", vm, KVM_CREATE_VCPU, 0);
    call("vm KVM_CREATE_VCPU(4096)", vm, KVM_CREATE_VCPU, 4096);
    call("vm KVM_CREATE_VCPU(1<<32)", vm, KVM_CREATE_VCPU, 1ul << 32);
    call("vm KVM_CREATE_VCPU(-1)", vm, KVM_CREATE_VCPU, ~0ul);
    int vcpu1 = (int)call("vm KVM_CREATE_VCPU(4095)", vm, KVM_CREATE_VCPU, 4095);
    call("vm KVM_SET_TSC_KHZ(0) after vCPUs", vm, KVM_SET_TSC_KHZ, 0);
    enable_split_irqchip(other, "other VM, 24 pins", 24, 0);
    call("other KVM_CREATE_VCPU(7)", other, KVM_CREATE_VCPU, 7);
    enable_split_irqchip(other, "other VM after a vCPU", 24, 0);
    call("other KVM_CREATE_IRQCHIP", other, KVM_CREATE_IRQCHIP, 0);
    if (vcpu >= 0) {
        encrypt_ops(vcpu, "vcpu");
        vcpu_setters(vcpu);
    }
    int gvm = new_vm(0);
    int gvcpu = gvm >= 0 ? (int)call("guest KVM_CREATE_VCPU(0)", gvm, KVM_CREATE_VCPU, 0) : -1;
    if (gvcpu >= 0) {
        run_guest(gvm, gvcpu, mmap_size);
        close(gvcpu);
    }
    if (gvm >= 0)
        close(gvm);
    if (vcpu1 >= 0)
        close(vcpu1);

    /* A third VM with an in-kernel irqchip: split irqchip is refused. */
    int third = new_vm(0);
    if (third >= 0) {
        call("third KVM_CREATE_IRQCHIP", third, KVM_CREATE_IRQCHIP, 0);
        enable_split_irqchip(third, "after KVM_CREATE_IRQCHIP", 24, 0);
        close(third);
    }

    /* Bad descriptors. */
    call("fd -1 KVM_CHECK_EXTENSION(235)", -1, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    call("fd 999 KVM_CHECK_EXTENSION(235)", 999, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    call("fd 999 KVM_MEMORY_ENCRYPT_OP(NULL)", 999, KVM_MEMORY_ENCRYPT_OP, 0);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    call("/dev/null KVM_CHECK_EXTENSION(235)", devnull, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    call("/dev/null KVM_GET_DEVICE_ATTR(NULL)", devnull, X_KVM_GET_DEVICE_ATTR, 0);
    close(devnull);
    int pipes[2];
    if (pipe2(pipes, O_CLOEXEC) == 0) {
        call("pipe KVM_MEMORY_ENCRYPT_OP(NULL)", pipes[0], KVM_MEMORY_ENCRYPT_OP, 0);
        close(pipes[0]);
        close(pipes[1]);
    }
    /* A VM's descriptor number, closed and reused by another file. */
    int reused = other;
    close(other);
    int f = open("/dev/null", O_RDWR | O_CLOEXEC);
    printf("reused fd %s\n", f == reused ? "same number" : "other number");
    call("reused (now /dev/null) KVM_CHECK_EXTENSION(235)", f, KVM_CHECK_EXTENSION,
         X_KVM_CAP_VM_TYPES);
    call("reused (now /dev/null) KVM_MEMORY_ENCRYPT_OP(NULL)", f, KVM_MEMORY_ENCRYPT_OP, 0);
    close(f);
    /* /dev/kvm reopened, and a dup of it. */
    int k2 = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int k3 = dup(k2);
    call("kvm dup KVM_CHECK_EXTENSION(235)", k3, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    call("kvm dup KVM_CHECK_EXTENSION(244)", k3, KVM_CHECK_EXTENSION, X_KVM_CAP_GUEST_MEMFD_FLAGS);
    close(k3);
    close(k2);
    if (vcpu >= 0)
        close(vcpu);
    close(vm);
    /* A closed VM's number: EBADF. */
    call("closed vm KVM_CHECK_EXTENSION(235)", vm, KVM_CHECK_EXTENSION, X_KVM_CAP_VM_TYPES);
    printf("done\n");
    return 0;
}
