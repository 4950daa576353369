/* SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
/* mem_enc_op() against the raw ioctl on the real kernel: for a VM descriptor, a vCPU
 * descriptor, a regular file and a closed descriptor, the same command gives the same return
 * value (as -errno) and leaves the same bytes. Also checks the documented differences: a
 * stale `error` is cleared. errno follows ioctl(): on failure it holds the
 * returned error, on success it is unchanged; memenc's own refusals set it too. Skips (77) where /dev/kvm is absent. */
#include <stdint.h>
#include "memenc.h"
#include "test-util.h"

struct fd_case {
    const char *name;
    int fd;
};

static void compare(const struct fd_case *fc, uint32_t id, uint64_t data, uint32_t sev_fd)
{
    struct kvm_sev_cmd raw, lib;
    memset(&raw, 0, sizeof(raw));
    raw.id = id;
    raw.data = data;
    raw.sev_fd = sev_fd;
    memcpy(&lib, &raw, sizeof(raw));

    errno = 0;
    int r = ioctl(fc->fd, KVM_MEMORY_ENCRYPT_OP, &raw);
    int expect = r < 0 ? -errno : r;
    errno = EDOM; /* documented: failure sets errno to the error, success leaves it alone */
    int got = mem_enc_op(fc->fd, (struct mem_enc_cmd *)&lib);
    int after = errno;

    CHECK(got == expect, "%s id %u: mem_enc_op %d, ioctl %d", fc->name, id, got, expect);
    if (got < 0)
        CHECK(after == -got, "%s id %u: errno %d after %d", fc->name, id, after, got);
    else
        CHECK(after == EDOM, "%s id %u: errno changed to %d on success", fc->name, id, after);
    CHECK(memcmp(&raw, &lib, sizeof(raw)) == 0, "%s id %u: bytes differ", fc->name, id);
}

int main(void)
{
    int kvm = test_open_kvm_or_skip("op-differential");
    int vm = test_create_vm_or_skip(kvm, "op-differential");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
    CHECK(vcpu >= 0, "KVM_CREATE_VCPU: %s", strerror(errno));
    char path[] = "/tmp/memenc-diff-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0, "mkstemp: %s", strerror(errno));
    unlink(path);

    struct fd_case cases[] = {
        {"vm", vm}, {"vcpu", vcpu}, {"regular file", file}, {"closed", test_closed_fd()},
    };
    /* A parameter buffer large enough for any SEV/TDX struct's fixed part. */
    static uint64_t params[512];
    const uint32_t ids[] = {0, 1, 2, 3, 5, 6, 7, 16, 20, 22, 100, 101, 102, 103, 77, 1000};

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
            compare(&cases[c], ids[i], 0, 0);
            compare(&cases[c], ids[i], (uint64_t)(uintptr_t)params, 0);
            compare(&cases[c], ids[i], (uint64_t)(uintptr_t)params, (uint32_t)cases[c].fd);
        }
        /* The NULL-argument probe. Where the raw ioctl faults on NULL (TDX, pre-6.10 SEV),
         * memenc answers 0 by design, so compare only the other answers. */
        errno = 0;
        int r = test_raw_null_probe(cases[c].fd);
        int expect = r < 0 ? -errno : r;
        int got = mem_enc_op(cases[c].fd, NULL);
        if (expect == -EFAULT)
            CHECK(got == 0, "%s NULL: %d", cases[c].name, got);
        else
            CHECK(got == expect, "%s NULL: mem_enc_op %d, ioctl %d", cases[c].name, got, expect);
    }

    /* The documented difference: a stale firmware status is cleared, the rest untouched. */
    struct kvm_sev_cmd raw, lib;
    memset(&raw, 0, sizeof(raw));
    raw.id = 22;
    raw.error = 77;
    raw.sev_fd = 5;
    memcpy(&lib, &raw, sizeof(raw));
    errno = 0;
    int r = ioctl(vm, KVM_MEMORY_ENCRYPT_OP, &raw);
    int got = mem_enc_op(vm, (struct mem_enc_cmd *)&lib);
    CHECK(got == (r < 0 ? -errno : r), "stale error: return values differ");
    if (mem_enc_host_vendor() == MEM_ENC_VENDOR_TDX) {
        /* TDX refuses a non-zero hw_error; memenc clears it before the call. */
        CHECK(lib.error == 0 && lib.sev_fd == 0, "TDX: hw_error written back as 0");
    } else if (r < 0 && raw.error == 77) {
        CHECK(lib.error == 0, "stale error kept: %u", lib.error);
        CHECK(lib.sev_fd == 5 && lib.id == 22 && lib.data == 0, "other fields changed");
    }
    /* memenc's own refusal (a flag bit nobody honours) sets errno like a kernel error. */
    struct kvm_sev_cmd bad;
    memset(&bad, 0, sizeof(bad));
    bad.id = 22;
    memcpy((char *)&bad + 4, &(uint32_t){0x00800000u}, sizeof(uint32_t));
    errno = EDOM;
    got = mem_enc_op(vm, (struct mem_enc_cmd *)&bad);
    CHECK(got == -EINVAL && errno == EINVAL, "refusal: %d, errno %d", got, errno);
    errno = EDOM;
    got = mem_enc_op(-1, (struct mem_enc_cmd *)&bad);
    CHECK(got == -EBADF && errno == EBADF, "bad fd: %d, errno %d", got, errno);
    printf("host vendor %u; VM fd NULL probe: %s\n", mem_enc_host_vendor(),
           mem_enc_strerror(mem_enc_op(vm, NULL)));
    close(file);
    if (vcpu >= 0)
        close(vcpu);
    close(vm);
    close(kvm);
    return test_finish("op-differential");
}
