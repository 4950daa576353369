/* SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
/* The unified command is byte for byte the kernel's struct kvm_sev_cmd (from the system
 * <linux/kvm.h>) and the 24-byte TDX command; the header's version macros agree with the
 * library. Most checks are compile-time: if this file builds, the layout holds. */
#include <stddef.h>
#include <string.h>
#include "memenc.h"
#include "test-util.h"

_Static_assert(sizeof(struct mem_enc_cmd) == 24, "24-byte command");
_Static_assert(_Alignof(struct mem_enc_cmd) == 8, "8-aligned command");
_Static_assert(sizeof(struct mem_enc_cmd) == sizeof(struct kvm_sev_cmd), "same size as kvm_sev_cmd");
_Static_assert(offsetof(struct mem_enc_cmd, id) == offsetof(struct kvm_sev_cmd, id), "id");
_Static_assert(offsetof(struct mem_enc_cmd, data) == offsetof(struct kvm_sev_cmd, data), "data");
_Static_assert(offsetof(struct mem_enc_cmd, status.sev.error) == offsetof(struct kvm_sev_cmd, error),
               "error");
_Static_assert(offsetof(struct mem_enc_cmd, status.sev.sev_fd) == offsetof(struct kvm_sev_cmd, sev_fd),
               "sev_fd");
/* flags sits in kvm_sev_cmd's padding word, between id and data. */
_Static_assert(offsetof(struct mem_enc_cmd, flags) == offsetof(struct kvm_sev_cmd, id) + 4, "flags");
_Static_assert(offsetof(struct kvm_sev_cmd, data) == 8, "kvm_sev_cmd pads id to 8");
/* TDX: u32 id, u32 flags, u64 data, u64 hw_error. */
_Static_assert(offsetof(struct mem_enc_cmd, status.hw_error) == 16, "hw_error");
_Static_assert(sizeof(((struct mem_enc_cmd *)0)->status) == 8, "status union is 8 bytes");
_Static_assert(MEM_ENC_CMD_SIZE == sizeof(struct mem_enc_cmd), "MEM_ENC_CMD_SIZE");
_Static_assert((MEM_ENC_FLAGS_LIBRARY_KNOWN & ~MEM_ENC_FLAGS_LIBRARY_MASK) == 0, "library flags in range");
_Static_assert(MEM_ENC_FLAG_RETRY == 0x80000000u && MEM_ENC_FLAGS_LIBRARY_MASK == 0xff000000u,
               "library flags are unsigned bit 31 / bits 24-31");

int main(void)
{
    char expect[32];
    snprintf(expect, sizeof(expect), "%d.%d.%d", MEM_ENC_VERSION_MAJOR, MEM_ENC_VERSION_MINOR,
             MEM_ENC_VERSION_PATCH);
    CHECK(strcmp(mem_enc_version(), expect) == 0, "library %s, header %s", mem_enc_version(), expect);

    /* The status views alias as the kernel's structs do on little-endian x86. */
    struct mem_enc_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    cmd.status.sev.error = 0x11223344u;
    cmd.status.sev.sev_fd = 7;
    CHECK(cmd.status.hw_error == 0x0000000711223344ull, "hw_error %#llx",
          (unsigned long long)cmd.status.hw_error);

    unsigned v = mem_enc_host_vendor();
    CHECK(v == MEM_ENC_VENDOR_NONE || v == MEM_ENC_VENDOR_SEV || v == MEM_ENC_VENDOR_TDX, "vendor %u", v);
    CHECK(mem_enc_cmd_flags_supported(MEM_ENC_VENDOR_TDX, 3) ==
              (MEM_ENC_TDX_MEASURE_MEMORY_REGION | MEM_ENC_FLAG_RETRY | MEM_ENC_FLAG_CONTINUE),
          "TDX INIT_MEM_REGION flags");
    CHECK(mem_enc_cmd_flags_supported(MEM_ENC_VENDOR_SEV, 22) == MEM_ENC_FLAG_RETRY, "SEV INIT2 flags");
    CHECK(mem_enc_cmd_flags_supported(99, 0) == 0, "unknown vendor");
    return test_finish("abi");
}
