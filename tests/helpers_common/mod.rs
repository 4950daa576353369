//! Shared by the tests/helpers_*.rs binaries: a real VM on this machine's /dev/kvm (or a
//! visible skip), and small conversions.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};

/// A DEFAULT-type VM (and one vCPU) on the real /dev/kvm.
pub struct RealVm {
    pub kvm: Kvm,
    pub vm: VmFd,
    pub vcpu: VcpuFd,
}

impl RealVm {
    pub fn vm_fd(&self) -> RawFd {
        self.vm.as_raw_fd()
    }
    pub fn vcpu_fd(&self) -> RawFd {
        self.vcpu.as_raw_fd()
    }
    pub fn vm(&self) -> BorrowedFd<'_> {
        // SAFETY: the VmFd lives as long as the borrow.
        unsafe { BorrowedFd::borrow_raw(self.vm.as_raw_fd()) }
    }
    pub fn vcpu(&self) -> BorrowedFd<'_> {
        // SAFETY: the VcpuFd lives as long as the borrow.
        unsafe { BorrowedFd::borrow_raw(self.vcpu.as_raw_fd()) }
    }
}

/// A real VM, or `None` after printing a visible SKIPPED line (no /dev/kvm, or no access).
/// The vCPU is created only when `with_vcpu` (SEV INIT must come before any vCPU).
pub fn real_vm(test: &str) -> Option<RealVm> {
    let kvm = match Kvm::new() {
        Ok(k) => k,
        Err(e) => {
            println!("SKIPPED: {test}: /dev/kvm not usable here ({e})");
            return None;
        }
    };
    let vm = kvm.create_vm().ok()?;
    let vcpu = vm.create_vcpu(0).ok()?;
    Some(RealVm { kvm, vm, vcpu })
}

/// Whether this machine is the kind the real-host assertions were written for: an AMD CPU
/// whose KVM has no SEV (MEMORY_ENCRYPT_OP answers -ENOTTY on a VM descriptor).
pub fn amd_without_sev(vm: &RealVm, test: &str) -> bool {
    if memenc::host::cpu_vendor() != memenc::Vendor::Sev {
        println!("SKIPPED: {test}: not an AMD host");
        return false;
    }
    // SAFETY: NULL is the documented probe.
    let probe = unsafe { memenc::capi::op::mem_enc_op(vm.vm_fd(), std::ptr::null_mut()) };
    if probe != -libc::ENOTTY {
        println!("SKIPPED: {test}: this host's KVM has SEV (probe gave {probe})");
        return false;
    }
    true
}
