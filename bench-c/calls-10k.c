/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * 10,000 calls of mem_enc_op (id 22, no data) or, with any argument, of a typed helper
 * (mem_enc_sev_guest_status) on a real DEFAULT VM: every call must return -ENOTTY. Run under
 * `strace -c -f` to count the system calls memenc adds (BENCHMARKS.md). Exits 77 without KVM.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>
#include "memenc.h"
int main(int argc, char **argv)
{
    (void)argv;
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) return 77;
    int n = 10000, bad = 0;
    for (int i = 0; i < n; i++) {
        uint32_t fw;
        if (argc > 1) {
            uint32_t h, st; uint32_t pol;
            if (mem_enc_sev_guest_status(vm, &h, &pol, &st, &fw) != -25) bad++;
        } else {
            struct mem_enc_cmd c = {.id = 22};
            if (mem_enc_op(vm, &c) != -25) bad++;
        }
    }
    printf("%d calls, %d unexpected\n", n, bad);
    return bad != 0;
}
