//! C exports of the SEV encrypted-memory registration (`mem_enc_mem_{register,unregister}_region`).
//! The memslot and guest_memfd plumbing is the VMM's own (plain KVM ioctls).

use core::ffi::{c_int, c_void};

use super::args::{Cmd, Status, finish};
use super::boundary;
use crate::helpers::mem;

/// KVM_MEMORY_ENCRYPT_REG_REGION (SEV, SEV-ES): pins guest memory for the guest's lifetime.
///
/// Arguments:
///  "vm_fd" - the VM descriptor.
///  "addr"  - the memory (user space).
///  "size"  - its size in bytes.
///
/// Returns: 0, or -ENOTTY (INIT not done, or TDX), -EINVAL (size 0 or overflow), -ENOMEM
/// (over RLIMIT_MEMLOCK).
///
/// # Safety
/// "addr" is checked by the kernel; it must stay mapped while registered.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_mem_register_region(
    vm_fd: c_int,
    addr: *mut c_void,
    size: usize,
) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_MEMORY_ENCRYPT_REG_REGION");
        let r = c
            .fd(vm_fd)
            .and_then(|fd| mem::register_region(fd, addr as u64, size as u64));
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}

/// KVM_MEMORY_ENCRYPT_UNREG_REGION: unpins a region registered with exactly this address and
/// size.
///
/// Arguments: as `mem_enc_mem_register_region()`.
///
/// Returns: 0, or -EINVAL (no such region), -ENOTTY.
///
/// # Safety
/// "addr" is only compared by the kernel.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_mem_unregister_region(
    vm_fd: c_int,
    addr: *mut c_void,
    size: usize,
) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_MEMORY_ENCRYPT_UNREG_REGION");
        let r = c
            .fd(vm_fd)
            .and_then(|fd| mem::unregister_region(fd, addr as u64, size as u64));
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}
