// SPDX-License-Identifier: Apache-2.0 OR MIT
// memenc.h is usable from C++: extern "C" linkage (this links only if the names are not
// mangled), the same struct layout, constants usable in constant expressions.
#include "memenc.h"

#include <cstddef>
#include <cstdio>
#include <cstring>

static_assert(sizeof(mem_enc_cmd) == MEM_ENC_CMD_SIZE, "command size");
static_assert(offsetof(mem_enc_cmd, data) == 8, "data offset");
static_assert(offsetof(mem_enc_cmd, status) == 16, "status offset");
static_assert(MEM_ENC_FLAGS_LIBRARY_KNOWN == (MEM_ENC_FLAG_RETRY | MEM_ENC_FLAG_CONTINUE), "flags");

int main()
{
    mem_enc_cmd cmd;
    std::memset(&cmd, 0, sizeof(cmd));
    int r = mem_enc_op(-1, &cmd);
    const char *v = mem_enc_version();
    std::printf("header-cxx: memenc %s, mem_enc_op(-1) = %d: %s\n", v, r, mem_enc_strerror(r));
    return (r < 0 && v != nullptr && *v != '\0') ? 0 : 1;
}
