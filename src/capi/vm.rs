//! C exports of the VM plumbing a launch needs (`mem_enc_vm_*`, `mem_enc_vcpu_create`): thin
//! wrappers over the KVM ioctls, through memenc's host layer so they work on real and
//! simulated descriptors alike. They return 0 (or a new descriptor) or -errno, and set
//! `mem_enc_last_stage()`.

use core::ffi::c_int;
use std::os::fd::{IntoRawFd, OwnedFd};

use super::args::{Cmd, Status, finish};
use super::boundary;
use crate::helpers::{self, vm};

/// Ends an export that returns a new descriptor: the descriptor (now the caller's), or -errno.
pub(crate) fn new_fd(r: helpers::Result<OwnedFd>) -> c_int {
    let mut fd = -1;
    // SAFETY: no pointer out-parameters.
    let ret = unsafe { finish(Status::None, r, |owned| fd = owned.into_raw_fd()) };
    if ret == 0 { fd } else { ret }
}

/// KVM_CREATE_VM: a new VM. Works on a real `/dev/kvm` and on a simulated one
/// (`mem_enc_sim_kvm_open()`) alike.
///
/// Arguments:
///  "kvm_fd"  - an open /dev/kvm descriptor (borrowed).
///  "vm_type" - the KVM VM type: `MEM_ENC_VM_TYPE_*`, or `mem_enc_launch_settings.create_vm_type`
///              (0 on the legacy SEV path).
///
/// Returns: the new VM descriptor (close-on-exec; the caller owns it, and closing it and every
/// descriptor of the VM ends the VM), or -EBADF ("kvm_fd" negative or not open), -EINVAL (a
/// type this kernel does not create), -ENOTTY (not a /dev/kvm descriptor), -ENOMEM, -EMFILE.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_vm_create(kvm_fd: c_int, vm_type: u32) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_CREATE_VM");
        new_fd(c.fd(kvm_fd).and_then(|fd| vm::create_vm(fd, vm_type)))
    })
}

/// KVM_CREATE_VCPU: a new vCPU of a VM, real or simulated, with the kernel's checks (TDX: -EIO
/// before KVM_TDX_INIT_VM, -EINVAL without the split irqchip).
///
/// Arguments:
///  "vm_fd"   - the VM descriptor (borrowed).
///  "vcpu_id" - the vCPU (APIC) id.
///
/// Returns: the new vCPU descriptor (the caller owns it), or -EBADF, -EEXIST (id in use),
/// -EINVAL (id too large, too many vCPUs, or a TDX VM without the split irqchip), -EIO (TDX VM
/// before INIT_VM), -ENOMEM.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_vcpu_create(vm_fd: c_int, vcpu_id: u32) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_CREATE_VCPU");
        new_fd(c.fd(vm_fd).and_then(|fd| vm::create_vcpu(fd, vcpu_id)))
    })
}

/// KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): local APICs in the kernel, IOAPIC and PIC in user
/// space. TDX vCPUs require it; enable it before the first vCPU.
///
/// Arguments:
///  "vm_fd"          - the VM descriptor (borrowed).
///  "nr_ioapic_pins" - interrupt routes reserved for the user-space IOAPIC (QEMU: 24; at most
///                     4096, `KVM_MAX_IRQ_ROUTES`).
///
/// Returns: 0, or -EINVAL (more than 4096 pins), -EEXIST (already enabled, an in-kernel irqchip
/// exists, or vCPUs exist), -EBADF.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_vm_enable_split_irqchip(vm_fd: c_int, nr_ioapic_pins: u32) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)");
        let r = c
            .fd(vm_fd)
            .and_then(|fd| vm::enable_split_irqchip(fd, nr_ioapic_pins));
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}

/// KVM_SET_TSC_KHZ on a VM: the TSC frequency of the vCPUs created afterwards. TDX (INIT_VM) and
/// SNP Secure TSC (SNP_LAUNCH_START) guests have it fixed at launch, so set it before those and
/// before any vCPU.
///
/// Arguments:
///  "vm_fd" - the VM descriptor (borrowed).
///  "khz"   - the frequency in kHz; 0 for the host's.
///
/// Returns: 0, or -EINVAL (vCPUs exist, or a frequency the host cannot scale to), -ENOTTY
/// (kernels before 6.0, which set it per vCPU only), -EBADF.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_vm_set_tsc_khz(vm_fd: c_int, khz: u32) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_SET_TSC_KHZ");
        let r = c.fd(vm_fd).and_then(|fd| vm::set_tsc_khz(fd, khz));
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}
