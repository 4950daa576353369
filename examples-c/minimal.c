/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * The smallest memenc program: it needs no KVM. It shows the calling convention every memenc
 * function follows: a negative errno on failure, and mem_enc_strerror() to explain it.
 *
 * Build: cc minimal.c $(pkg-config --cflags --libs memenc)
 */
#include <stdio.h>

#include "memenc.h"

int main(void)
{
    printf("memenc %s; this host speaks %s command numbers\n", mem_enc_version(),
           mem_enc_host_vendor() == MEM_ENC_VENDOR_SEV   ? "AMD SEV"
           : mem_enc_host_vendor() == MEM_ENC_VENDOR_TDX ? "Intel TDX"
                                                         : "no memory-encryption");

    /* A descriptor that is not a VM: memenc answers without issuing the ioctl. */
    struct mem_enc_cmd cmd = {0};
    int ret = mem_enc_op(-1, &cmd);
    if (ret < 0) {
        printf("mem_enc_op(-1, ...) = %d: %s\n", ret, mem_enc_strerror(ret));
        return 0;
    }
    fprintf(stderr, "mem_enc_op on fd -1 unexpectedly succeeded\n");
    return 1;
}
