/* SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
/*
 * How a QEMU-style VMM switches to memenc: its existing sev_ioctl() helper keeps filling the
 * legacy `struct kvm_sev_cmd` from <linux/kvm.h> and only the ioctl line changes, to
 * mem_enc_op(). What it gains: flag bits the kernel would ignore are refused, the firmware
 * status is never stale, the return value is -errno, and mem_enc_strerror() explains it.
 *
 * It also routes memenc's ioctls through the VMM's own ioctl wrapper (QEMU: kvm_vm_ioctl() and
 * kvm_vcpu_ioctl(), which emit trace events and hold accel_ioctl_begin()/end()), with
 * mem_enc_set_ioctl_fn(), installed once before the first command.
 *
 * Usage: qemu-style            (real host: KVM_SEV_INIT on a new VM)
 * Exits 0 when SEV initialised, 77 when this host has no SEV (or no /dev/kvm), 1 on error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "memenc.h"

#define SKIP 77

static int kvm_vm_fd = -1; /* QEMU keeps these in KVMState / SevCommonState */
static int sev_dev_fd = -1;

/* Stand-in for QEMU's kvm_vm_ioctl(): trace, issue, return the result or -errno. */
struct vmm_state {
    unsigned long ioctls; /* what trace_kvm_vm_ioctl() would log */
};

static int vmm_ioctl(void *opaque, int fd, unsigned long request, void *arg)
{
    struct vmm_state *s = opaque;
    s->ioctls++;
    /* QEMU: accel_ioctl_begin(); ret = ioctl(...); accel_ioctl_end(); */
    int ret = ioctl(fd, request, arg);
    return ret < 0 ? -errno : ret;
}

static struct vmm_state vmm;

/* QEMU's target/i386/sev.c helper, with mem_enc_op() in place of ioctl(). */
static int sev_ioctl(int fd, int cmd, void *data, int *error)
{
    struct kvm_sev_cmd input;
    int r;

    memset(&input, 0x0, sizeof(input));
    input.id = cmd;
    input.sev_fd = fd;
    input.data = (uintptr_t)data;

    r = mem_enc_op(kvm_vm_fd, (struct mem_enc_cmd *)&input);

    if (error) {
        *error = input.error;
    }
    return r;
}

int main(void)
{
    /* Once, before memenc issues anything: every memenc ioctl now goes through vmm_ioctl(). */
    int set = mem_enc_set_ioctl_fn(vmm_ioctl, &vmm);
    if (set < 0) {
        printf("mem_enc_set_ioctl_fn: %d (%s)\n", set, mem_enc_strerror(set));
        return 1;
    }
    if (mem_enc_set_ioctl_fn(vmm_ioctl, &vmm) != -EBUSY) {
        printf("mem_enc_set_ioctl_fn: a second install must be refused with -EBUSY\n");
        return 1;
    }
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        printf("SKIPPED: /dev/kvm: %s\n", strerror(errno));
        return SKIP;
    }
    kvm_vm_fd = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (kvm_vm_fd < 0) {
        printf("KVM_CREATE_VM: %s\n", strerror(errno));
        close(kvm);
        return 1;
    }
    sev_dev_fd = open("/dev/sev", O_RDWR | O_CLOEXEC);
    printf("memenc %s; host CPU vendor: %s; /dev/sev: %s\n", mem_enc_version(),
           mem_enc_host_vendor() == MEM_ENC_VENDOR_SEV   ? "AMD (SEV ids)"
           : mem_enc_host_vendor() == MEM_ENC_VENDOR_TDX ? "Intel (TDX ids)"
                                                         : "other",
           sev_dev_fd >= 0 ? "open" : strerror(errno));

    /* QEMU's first step on a legacy SEV guest: KVM_SEV_INIT before any vCPU exists. */
    int fw_error = 0;
    int ret = sev_ioctl(sev_dev_fd, KVM_SEV_INIT, NULL, &fw_error);
    int status;
    if (ret == 0) {
        printf("KVM_SEV_INIT: ok; this VM is now an SEV guest\n");
        status = 0;
    } else {
        printf("KVM_SEV_INIT: %d (%s); firmware status %d%s\n", ret, strerror(-ret), fw_error,
               fw_error ? "" : " (the firmware was not reached)");
        printf("  memenc: %s\n", mem_enc_strerror(ret));
        status = ret == -ENOTTY ? SKIP : 1;
        if (status == SKIP)
            printf("SKIPPED: this host has no SEV backend\n");
    }

    /* A flag bit the kernel would silently ignore in SEV's padding word is refused. */
    struct kvm_sev_cmd bad;
    memset(&bad, 0, sizeof(bad));
    bad.id = KVM_SEV_INIT;
    memcpy((char *)&bad + 4, &(uint32_t){1}, sizeof(uint32_t)); /* the pad/flags word */
    unsigned long before = vmm.ioctls;
    errno = 0;
    ret = mem_enc_op(kvm_vm_fd, (struct mem_enc_cmd *)&bad);
    printf("KVM_SEV_INIT with flags=1: %d (%s); errno %d; ioctls issued: %lu\n", ret,
           mem_enc_strerror(ret), errno, vmm.ioctls - before);
    if (ret != -EINVAL || errno != EINVAL || vmm.ioctls != before)
        status = 1;
    printf("memenc ioctls through the VMM's wrapper: %lu\n", vmm.ioctls);
    if (vmm.ioctls == 0)
        status = 1;

    if (sev_dev_fd >= 0)
        close(sev_dev_fd);
    close(kvm_vm_fd);
    close(kvm);
    return status;
}
