/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/* One version everywhere, at run time: the library's mem_enc_version(), the header's
 * MEM_ENC_VERSION_* macros and meson.build's project version (passed in by meson as
 * MEMENC_MESON_VERSION) are the same string. meson/check.py compares the files; this checks
 * the library that was actually linked. */
#include <stdio.h>
#include <string.h>

#include "memenc.h"

#ifndef MEMENC_MESON_VERSION
#error "meson passes -DMEMENC_MESON_VERSION"
#endif

int main(void)
{
    char macros[32];
    snprintf(macros, sizeof(macros), "%d.%d.%d", MEM_ENC_VERSION_MAJOR, MEM_ENC_VERSION_MINOR,
             MEM_ENC_VERSION_PATCH);
    const char *lib = mem_enc_version();
    printf("mem_enc_version() %s, header macros %s, meson.build %s\n", lib, macros,
           MEMENC_MESON_VERSION);
    if (strcmp(lib, macros) != 0 || strcmp(lib, MEMENC_MESON_VERSION) != 0) {
        printf("FAIL: versions differ\n");
        return 1;
    }
    return 0;
}
