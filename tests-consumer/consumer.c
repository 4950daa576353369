/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * A C program outside the memenc tree, as a VMM would be: built once through pkg-config
 * against a staged install and once by a parent meson project with memenc as a subproject
 * (tests-consumer/run.sh). It calls mem_enc_op() for real: on a VM when /dev/kvm exists, and
 * always on a descriptor that is not open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include <memenc.h>

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

int main(void)
{
    char macros[32];
    snprintf(macros, sizeof(macros), "%d.%d.%d", MEM_ENC_VERSION_MAJOR, MEM_ENC_VERSION_MINOR,
             MEM_ENC_VERSION_PATCH);
    printf("memenc %s (header %s)\n", mem_enc_version(), macros);
    check(strcmp(mem_enc_version(), macros) == 0, "library and header versions agree");

    struct mem_enc_cmd cmd;
    memset(&cmd, 0, sizeof(cmd));
    int r = mem_enc_op(-1, &cmd);
    printf("mem_enc_op(-1, &cmd) = %d: %s\n", r, mem_enc_strerror(r));
    check(r == -EBADF, "a negative descriptor gives -EBADF");

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: the VM half: /dev/kvm: %s\n", strerror(errno));
    } else {
        int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
        if (vm < 0) {
            printf("SKIPPED: the VM half: KVM_CREATE_VM: %s\n", strerror(errno));
        } else {
            /* The kernel's probe: does this VM have a memory-encryption backend? */
            r = mem_enc_op(vm, NULL);
            printf("mem_enc_op(vm, NULL) = %d: %s\n", r, r ? mem_enc_strerror(r) : "yes");
            check(r == 0 || r == -ENOTTY, "the NULL probe on a VM gives 0 or -ENOTTY");
            close(vm);
        }
        close(kvm);
    }
    return failures ? 1 : 0;
}
