// SPDX-License-Identifier: Apache-2.0 OR MIT
//
// QEMU's KVM_MEMORY_ENCRYPT_OP call sites -> memenc's mem_enc_op().
//
//   spatch --sp-file qemu/memenc.cocci --in-place \
//          target/i386/sev.c target/i386/kvm/tdx.c      (tdx.c: QEMU 10.1 and later)
//
// mem_enc_op(fd, cmd) is a drop-in for ioctl(fd, KVM_MEMORY_ENCRYPT_OP, cmd): it returns 0 or
// -errno, like kvm_vm_ioctl()/kvm_vcpu_ioctl(), and takes QEMU's own struct kvm_sev_cmd /
// struct kvm_tdx_cmd (byte for byte memenc's struct mem_enc_cmd) through a cast, so the firmware
// status QEMU reads afterwards (input.error, tdx_cmd.hw_error) is where it always was.
// Only the command helpers change: sev_ioctl() (QEMU 7.2 .. 10.x) and tdx_ioctl_internal()'s VM
// and vCPU paths (10.1+). The NULL probe in sev_kvm_init() ("is there a memory-encryption
// backend at all") and KVM_MEMORY_ENCRYPT_REG_REGION stay kvm_vm_ioctl(): they are not commands.
// What the rule drops with kvm_*_ioctl(): the trace_kvm_vm_ioctl/trace_kvm_vcpu_ioctl
// tracepoints and (QEMU 8.1+) accel_ioctl_begin()/end(), which only matter for ioctls that may
// race a memslot update from another thread; these commands run on the main thread during
// machine init and launch (see qemu/README and the findings).

// SEV: sev_ioctl(), one call for every KVM_SEV_* command.
@sev@
symbol kvm_state;
identifier input;
@@
sev_ioctl(...)
{
<...
- kvm_vm_ioctl(kvm_state, KVM_MEMORY_ENCRYPT_OP, &input)
+ mem_enc_op(kvm_state->vmfd, (struct mem_enc_cmd *)&input)
...>
}

// TDX: tdx_ioctl_internal(), VM path (kvm_state's VM fd) ...
@tdx_vm@
symbol kvm_state;
identifier cmd;
@@
tdx_ioctl_internal(...)
{
<...
- kvm_vm_ioctl(kvm_state, KVM_MEMORY_ENCRYPT_OP, &cmd)
+ mem_enc_op(kvm_state->vmfd, (struct mem_enc_cmd *)&cmd)
...>
}

// ... and vCPU path (the CPUState passed as void *state; its vCPU fd).
@tdx_vcpu@
typedef CPUState;
identifier cmd;
expression cpu;
@@
tdx_ioctl_internal(...)
{
<...
- kvm_vcpu_ioctl(cpu, KVM_MEMORY_ENCRYPT_OP, &cmd)
+ mem_enc_op(((CPUState *)(cpu))->kvm_fd, (struct mem_enc_cmd *)&cmd)
...>
}

// The header, after QEMU's KVM header; sev.c also needs struct KVMState (vmfd) from kvm_int.h
// (tdx.c already includes it). QEMU 7.2 .. 9.2 call the directory sysemu/, 10.0+ system/.
@depends on sev@
@@
#include "sysemu/kvm.h"
+#include "sysemu/kvm_int.h"
+#include "memenc.h"

@depends on sev@
@@
#include "system/kvm.h"
+#include "system/kvm_int.h"
+#include "memenc.h"

@depends on tdx_vm || tdx_vcpu@
@@
#include "system/kvm_int.h"
+#include "memenc.h"
