//! C exports of the memory steps a launch needs (`mem_enc_mem_*`): thin wrappers over the KVM
//! ioctls, through memenc's host layer so they work on real and simulated descriptors alike.
//! They return 0 (or a descriptor) or -errno, and set `mem_enc_last_stage()`.

use core::ffi::{c_int, c_void};
use std::os::fd::BorrowedFd;

use super::args::{ArgsStruct, Cmd, Status, finish};
use super::boundary;
use super::vm::new_fd;
use crate::helpers::mem::{self, MemRegion, MemRegion2};

/// Arguments of `mem_enc_mem_set_user_memory_region2()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_mem_region_args {
    /// Slot number (address space in bits 16-31).
    pub slot: u32,
    /// `KVM_MEM_*` flags; memenc adds `KVM_MEM_GUEST_MEMFD` when "guest_memfd" is >= 0.
    pub flags: u32,
    /// Guest physical address.
    pub guest_phys_addr: u64,
    /// Size in bytes (0 deletes the slot).
    pub memory_size: u64,
    /// Shared (host-visible) memory backing the slot.
    pub userspace_addr: *mut c_void,
    /// Offset of the slot in "guest_memfd".
    pub guest_memfd_offset: u64,
    /// The guest_memfd backing the private pages (`mem_enc_mem_create_guest_memfd()`), or -1.
    pub guest_memfd: i32,
    /// Must be 0.
    pub reserved: u32,
}
/// Size of the first version of `struct mem_enc_mem_region_args`.
pub const MEM_ENC_MEM_REGION_ARGS_SIZE_VER0: usize = 48;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_mem_region_args {
    const SIZE_VER0: usize = MEM_ENC_MEM_REGION_ARGS_SIZE_VER0;
}

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

/// KVM_CREATE_GUEST_MEMFD: a guest_memfd for a VM's private memory.
///
/// Arguments:
///  "vm_fd" - the VM descriptor.
///  "size"  - size in bytes (a multiple of the page size).
///  "flags" - `GUEST_MEMFD_FLAG_*`, usually 0.
///
/// Returns: the new descriptor (the caller owns it and closes it), or -EINVAL, -ENOTTY (no
/// guest_memfd), -ENOMEM.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_mem_create_guest_memfd(vm_fd: c_int, size: u64, flags: u64) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_CREATE_GUEST_MEMFD");
        new_fd(
            c.fd(vm_fd)
                .and_then(|fd| mem::create_guest_memfd(fd, size, flags)),
        )
    })
}

/// KVM_SET_USER_MEMORY_REGION (v1, every kernel): adds, moves or deletes a memslot of ordinary
/// memory (no guest_memfd), as SEV and SEV-ES guests and kernels before 6.8 use. For SNP and
/// TDX private memory use `mem_enc_mem_set_user_memory_region2()`.
///
/// Arguments:
///  "vm_fd"           - the VM descriptor.
///  "slot"            - slot number (address space in bits 16-31).
///  "flags"           - `KVM_MEM_LOG_DIRTY_PAGES` and/or `KVM_MEM_READONLY` (1, 2).
///  "guest_phys_addr" - guest physical address (page aligned).
///  "memory_size"     - size in bytes (page aligned; 0 deletes the slot).
///  "userspace_addr"  - the memory backing the slot (page aligned).
///
/// Returns: 0, or -EINVAL (another flag, misaligned, bad slot, a VM type without that address
/// space), -EEXIST (overlap), -EFAULT, -EBADF.
///
/// # Safety
/// "userspace_addr" is checked by the kernel; it must stay mapped while the slot exists.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_mem_set_user_memory_region(
    vm_fd: c_int,
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: *mut c_void,
) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_SET_USER_MEMORY_REGION");
        let r = c.fd(vm_fd).and_then(|fd| {
            mem::set_user_memory_region(
                fd,
                &MemRegion {
                    slot,
                    flags,
                    guest_phys_addr,
                    memory_size,
                    userspace_addr: userspace_addr as u64,
                },
            )
        });
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}

/// KVM_SET_USER_MEMORY_REGION2: adds, moves or deletes a memslot, optionally backed by a
/// guest_memfd for its private pages.
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "args"      - the slot (`struct mem_enc_mem_region_args`).
///  "args_size" - `sizeof(struct mem_enc_mem_region_args)`.
///
/// Returns: 0, or -EINVAL (bad slot/flags/alignment, non-zero reserved), -EEXIST (overlap),
/// -EFAULT, -EBADF (bad guest_memfd).
///
/// # Safety
/// "args" must point to "args_size" readable bytes; "userspace_addr" is checked by the kernel.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_mem_set_user_memory_region2(
    vm_fd: c_int,
    args: *const mem_enc_mem_region_args,
    args_size: usize,
) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_SET_USER_MEMORY_REGION2");
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            if a.reserved != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            let gmem = if a.guest_memfd >= 0 {
                // SAFETY: the caller's descriptor, open for the call (a closed one gives EBADF
                // from the kernel).
                Some(unsafe { BorrowedFd::borrow_raw(a.guest_memfd) })
            } else {
                None
            };
            mem::set_user_memory_region2(
                fd,
                &MemRegion2 {
                    slot: a.slot,
                    flags: a.flags,
                    guest_phys_addr: a.guest_phys_addr,
                    memory_size: a.memory_size,
                    userspace_addr: a.userspace_addr as u64,
                    guest_memfd: gmem,
                    guest_memfd_offset: a.guest_memfd_offset,
                },
            )
        })();
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}

/// KVM_SET_MEMORY_ATTRIBUTES: makes a guest-physical range private (before SNP_LAUNCH_UPDATE
/// or TDX INIT_MEM_REGION) or shared again.
///
/// Arguments:
///  "vm_fd"   - the VM descriptor.
///  "gpa"     - first guest physical address (page aligned).
///  "size"    - size in bytes (page aligned).
///  "private" - non-zero: private; 0: shared.
///
/// Returns: 0, or -EINVAL (misaligned, or private memory not supported by this VM type),
/// -ENOTTY, -EAGAIN, -ENOMEM.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_mem_set_private(
    vm_fd: c_int,
    gpa: u64,
    size: u64,
    private: c_int,
) -> c_int {
    boundary(|| {
        let c = Cmd::named("KVM_SET_MEMORY_ATTRIBUTES");
        let r = c
            .fd(vm_fd)
            .and_then(|fd| mem::set_private(fd, gpa, size, private != 0));
        // SAFETY: no pointer out-parameters.
        unsafe { finish(Status::None, r, |()| {}) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout() {
        assert_eq!(
            size_of::<mem_enc_mem_region_args>(),
            MEM_ENC_MEM_REGION_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_mem_region_args, userspace_addr), 24);
        assert_eq!(offset_of!(mem_enc_mem_region_args, guest_memfd), 40);
    }
}
