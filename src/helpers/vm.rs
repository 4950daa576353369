//! The VM plumbing a launch needs around the memory-encryption commands: creating the VM and its
//! vCPUs, the split irqchip TDX vCPUs need, and the VM-wide TSC frequency (fixed at launch for
//! TDX and SNP Secure TSC guests). All go through [`crate::host::ioctl`], so they work on real
//! and simulated descriptors alike: a VMM writes one path.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use super::{Result, kvm_ioctl, kvm_ioctl_value};
use crate::uapi::{
    KVM_CAP_SPLIT_IRQCHIP, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_ENABLE_CAP, KVM_SET_TSC_KHZ,
    kvm_enable_cap,
};

/// A descriptor an ioctl just returned, owned by the caller from now on.
fn owned(fd: i32) -> OwnedFd {
    // SAFETY: the kernel (or the simulated host) returned a new descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `KVM_CREATE_VM` on a `/dev/kvm` descriptor: a new VM of `vm_type` (`KVM_X86_*_VM`).
pub fn create_vm(kvm_fd: BorrowedFd<'_>, vm_type: u32) -> Result<OwnedFd> {
    kvm_ioctl_value(kvm_fd, "KVM_CREATE_VM", KVM_CREATE_VM, u64::from(vm_type)).map(owned)
}

/// `KVM_CREATE_VCPU` on a VM descriptor: vCPU `id`.
pub fn create_vcpu(vm_fd: BorrowedFd<'_>, id: u32) -> Result<OwnedFd> {
    kvm_ioctl_value(vm_fd, "KVM_CREATE_VCPU", KVM_CREATE_VCPU, u64::from(id)).map(owned)
}

/// `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)`: the local APICs in the kernel, the IOAPIC and PIC
/// in user space, with `nr_ioapic_pins` routes reserved for the user-space IOAPIC (QEMU: 24).
/// TDX vCPUs need it; it must come before the first vCPU.
pub fn enable_split_irqchip(vm_fd: BorrowedFd<'_>, nr_ioapic_pins: u32) -> Result<()> {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP as u32,
        ..Default::default()
    };
    cap.args[0] = u64::from(nr_ioapic_pins);
    kvm_ioctl(
        vm_fd,
        "KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)",
        KVM_ENABLE_CAP,
        &mut cap,
    )
    .map(|_| ())
}

/// `KVM_SET_TSC_KHZ` on a VM descriptor: the TSC frequency of the vCPUs created afterwards
/// (0: the host's). TDX and SNP Secure TSC guests take it at launch, so it comes before INIT_VM
/// / SNP_LAUNCH_START and before any vCPU.
pub fn set_tsc_khz(vm_fd: BorrowedFd<'_>, khz: u32) -> Result<()> {
    kvm_ioctl_value(vm_fd, "KVM_SET_TSC_KHZ", KVM_SET_TSC_KHZ, u64::from(khz)).map(|_| ())
}
