/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/* memenc.h is self-contained ISO C11: included first, before any system header, it compiles
 * with -std=c11 -Wall -Wextra -Werror -pedantic (see meson.build), and what it declares has the
 * types C callers rely on. */
#include "memenc.h"

#include <stdio.h>

/* The prototypes, as callers' function pointers would see them (a mismatch fails to compile). */
static int (*const op)(int, struct mem_enc_cmd *) = mem_enc_op;
static const char *(*const strerror_fn)(int) = mem_enc_strerror;
static const char *(*const version_fn)(void) = mem_enc_version;
static uint32_t (*const vendor_fn)(void) = mem_enc_host_vendor;
static uint32_t (*const flags_fn)(uint32_t, uint32_t) = mem_enc_cmd_flags_supported;

_Static_assert(sizeof(struct mem_enc_cmd) == MEM_ENC_CMD_SIZE, "command size");
/* Flag macros are unsigned, so `~MEM_ENC_FLAGS_LIBRARY_MASK` and shifts behave. */
_Static_assert((MEM_ENC_FLAG_RETRY >> 31) == 1u && MEM_ENC_FLAG_RETRY > 0, "unsigned flags");
_Static_assert(MEM_ENC_VERSION_MAJOR >= 0 && MEM_ENC_VERSION_MINOR >= 0 && MEM_ENC_VERSION_PATCH >= 0,
               "numeric version macros");

int main(void)
{
    /* A call through each pointer, so they are used and linked. */
    struct mem_enc_cmd cmd = {0};
    int r = op(-1, &cmd);
    printf("header-c11: memenc %s, vendor %u, flags(SEV, 0) %#x, mem_enc_op(-1) = %d (%s)\n",
           version_fn(), vendor_fn(), flags_fn(MEM_ENC_VENDOR_SEV, 0), r, strerror_fn(r));
    return r < 0 ? 0 : 1;
}
