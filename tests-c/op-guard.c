/* SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
/* mem_enc_op() never reads or writes a byte outside the caller's 24 bytes: the command is
 * placed as the last 24 bytes of a page followed by a PROT_NONE page, and as the first 24
 * bytes of a page preceded by one. Any stray access faults and fails the test. Runs on a
 * closed descriptor everywhere, and on a real VM and vCPU where /dev/kvm exists. */
#include <stdint.h>
#include <sys/mman.h>
#include "memenc.h"
#include "test-util.h"

static void exercise(int fd, struct mem_enc_cmd *cmd, const char *where)
{
    const uint32_t ids[] = {0, 2, 3, 4, 22, 101, 102, 999};
    const uint32_t flags[] = {0, 1, MEM_ENC_FLAG_RETRY, MEM_ENC_FLAG_CONTINUE, 0x00800000u, 0x01000000u};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
            memset(cmd, 0, sizeof(*cmd));
            cmd->id = ids[i];
            cmd->flags = flags[f];
            cmd->status.sev.error = 0xdeadbeefu;
            int r = mem_enc_op(fd, cmd);
            CHECK(r <= 0, "%s id %u flags %#x: %d", where, ids[i], flags[f], r);
            CHECK(cmd->id == ids[i] && cmd->flags == flags[f], "%s: input fields changed", where);
        }
    }
}

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* [guard][data][guard] */
    CHECK(mprotect(map, (size_t)page, PROT_NONE) == 0, "mprotect low");
    CHECK(mprotect(map + 2 * page, (size_t)page, PROT_NONE) == 0, "mprotect high");
    struct mem_enc_cmd *at_end = (struct mem_enc_cmd *)(map + 2 * page - sizeof(struct mem_enc_cmd));
    struct mem_enc_cmd *at_start = (struct mem_enc_cmd *)(map + page);

    int closed = test_closed_fd();
    exercise(closed, at_end, "closed fd, end of page");
    exercise(closed, at_start, "closed fd, start of page");

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm >= 0) {
        int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
        if (vm >= 0) {
            int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
            exercise(vm, at_end, "vm, end of page");
            exercise(vm, at_start, "vm, start of page");
            if (vcpu >= 0) {
                exercise(vcpu, at_end, "vcpu, end of page");
                close(vcpu);
            }
            close(vm);
        }
        close(kvm);
    } else {
        printf("note: /dev/kvm not available (%s); guard pages checked on a closed descriptor only\n",
               strerror(errno));
    }
    munmap(map, (size_t)page * 3);
    return test_finish("op-guard");
}
