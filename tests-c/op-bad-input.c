/* SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
/* Bad input to mem_enc_op(): NULL, negative and closed descriptors, every flag bit for every
 * known id, unknown ids. Each gives its documented -errno and no crash; a rejected command
 * issues no ioctl (on a closed descriptor the kernel would answer -EBADF, so -EINVAL proves
 * memenc answered itself) and leaves the caller's bytes untouched. */
#include <stdint.h>
#include "memenc.h"
#include "test-util.h"

static int is_known_id(uint32_t vendor, uint32_t id)
{
    if (vendor == MEM_ENC_VENDOR_TDX)
        return id <= 5;
    return id <= 22 || (id >= 100 && id <= 103);
}

int main(void)
{
    int closed = test_closed_fd();
    struct mem_enc_cmd cmd, before;

    CHECK(mem_enc_op(-1, NULL) == -EBADF, "negative fd, NULL cmd");
    memset(&cmd, 0, sizeof(cmd));
    CHECK(mem_enc_op(-1, &cmd) == -EBADF, "negative fd");
    CHECK(mem_enc_op(-42, &cmd) == -EBADF, "other negative fd");
    CHECK(mem_enc_op(closed, NULL) == -EBADF, "closed fd, NULL cmd");

    /* Every (id, bit): accepted bits reach the kernel (-EBADF on a closed fd); the others are
     * refused with -EINVAL and the struct is left byte for byte. */
    uint32_t vendors[] = {MEM_ENC_VENDOR_SEV, MEM_ENC_VENDOR_TDX};
    uint32_t host = mem_enc_host_vendor();
    for (size_t v = 0; v < 2; v++) {
        if (vendors[v] != host)
            continue; /* the host's vendor decides how ids are read */
        for (uint32_t id = 0; id < 110; id++) {
            uint32_t ok = mem_enc_cmd_flags_supported(host, id);
            if (is_known_id(host, id))
                CHECK(ok & MEM_ENC_FLAG_RETRY, "id %u: RETRY accepted", id);
            else
                CHECK(ok == 0, "unknown id %u: only flags 0, got %#x", id, ok);
            for (int bit = 0; bit < 32; bit++) {
                memset(&cmd, 0xa5, sizeof(cmd));
                cmd.id = id;
                cmd.flags = 1u << bit;
                memcpy(&before, &cmd, sizeof(cmd));
                int r = mem_enc_op(closed, &cmd);
                if (ok & (1u << bit)) {
                    CHECK(r == -EBADF, "id %u bit %d accepted: expected the kernel's -EBADF, got %d", id, bit, r);
                } else {
                    CHECK(r == -EINVAL, "id %u bit %d: expected -EINVAL, got %d", id, bit, r);
                    CHECK(memcmp(&cmd, &before, sizeof(cmd)) == 0, "id %u bit %d: rejected but modified", id, bit);
                }
            }
        }
    }
    if (host == MEM_ENC_VENDOR_NONE)
        printf("note: CPU vendor is neither AMD nor Intel; per-id flag table not exercised\n");

    /* Every errno memenc returns has a domain sentence. */
    const int errs[] = {EINVAL, EBADF, ENOTTY, EFAULT, EIO, EPERM, EBUSY, EAGAIN, EINTR, E2BIG, ENOSPC, EOPNOTSUPP};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        const char *s = mem_enc_strerror(-errs[i]);
        CHECK(s && strcmp(s, "unknown error") != 0, "strerror(-%d)", errs[i]);
    }
    CHECK(strstr(mem_enc_strerror(-ENOTTY), "memory-encryption backend") != NULL, "ENOTTY sentence");
    CHECK(strcmp(mem_enc_strerror(-99999), "unknown error") == 0, "unknown errno");

    /* On a real VM: NULL is the kernel's probe (0 or -ENOTTY), unknown ids reach the kernel. */
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED (part): real-VM checks need /dev/kvm (%s)\n", strerror(errno));
        return test_finish("op-bad-input");
    }
    int vm = test_create_vm_or_skip(kvm, "op-bad-input");
    int probe = mem_enc_op(vm, NULL);
    CHECK(probe == 0 || probe == -ENOTTY, "NULL probe: %d", probe);
    memset(&cmd, 0, sizeof(cmd));
    cmd.id = 1000;
    struct kvm_sev_cmd raw;
    memset(&raw, 0, sizeof(raw));
    raw.id = 1000;
    errno = 0;
    int r = ioctl(vm, KVM_MEMORY_ENCRYPT_OP, &raw);
    CHECK(mem_enc_op(vm, &cmd) == (r < 0 ? -errno : r), "unknown id: the kernel's answer");
    close(vm);
    close(kvm);
    return test_finish("op-bad-input");
}
