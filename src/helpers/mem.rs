//! The memory steps a launch needs, as thin wrappers that work on real and simulated hosts
//! alike (all go through [`crate::host::ioctl`]): SEV region pinning, guest_memfd, memslots
//! (v1, and v2 with guest_memfd), and the private attribute.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{Result, kvm_ioctl as ioctl_with};
use crate::uapi::{
    KVM_CREATE_GUEST_MEMFD, KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KVM_MEMORY_ENCRYPT_REG_REGION, KVM_MEMORY_ENCRYPT_UNREG_REGION, KVM_SET_MEMORY_ATTRIBUTES,
    KVM_SET_USER_MEMORY_REGION, KVM_SET_USER_MEMORY_REGION2, kvm_create_guest_memfd,
    kvm_enc_region, kvm_memory_attributes, kvm_userspace_memory_region,
    kvm_userspace_memory_region2,
};

/// `KVM_MEMORY_ENCRYPT_REG_REGION` (SEV): pins `size` bytes of guest memory at `addr`.
pub fn register_region(vm_fd: BorrowedFd<'_>, addr: u64, size: u64) -> Result<()> {
    let mut r = kvm_enc_region { addr, size };
    ioctl_with(
        vm_fd,
        "KVM_MEMORY_ENCRYPT_REG_REGION",
        KVM_MEMORY_ENCRYPT_REG_REGION,
        &mut r,
    )
    .map(|_| ())
}

/// `KVM_MEMORY_ENCRYPT_UNREG_REGION` (SEV): unpins a region registered with exactly this
/// address and size.
pub fn unregister_region(vm_fd: BorrowedFd<'_>, addr: u64, size: u64) -> Result<()> {
    let mut r = kvm_enc_region { addr, size };
    ioctl_with(
        vm_fd,
        "KVM_MEMORY_ENCRYPT_UNREG_REGION",
        KVM_MEMORY_ENCRYPT_UNREG_REGION,
        &mut r,
    )
    .map(|_| ())
}

/// `KVM_CREATE_GUEST_MEMFD`: a new guest_memfd of `size` bytes (a multiple of the page size).
pub fn create_guest_memfd(vm_fd: BorrowedFd<'_>, size: u64, flags: u64) -> Result<OwnedFd> {
    let mut g = kvm_create_guest_memfd {
        size,
        flags,
        ..Default::default()
    };
    let fd = ioctl_with(
        vm_fd,
        "KVM_CREATE_GUEST_MEMFD",
        KVM_CREATE_GUEST_MEMFD,
        &mut g,
    )?;
    // SAFETY: the ioctl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A memslot without guest_memfd, for [`set_user_memory_region`].
#[derive(Clone, Copy, Debug)]
pub struct MemRegion {
    /// Slot number (address space in bits 16-31).
    pub slot: u32,
    /// `KVM_MEM_LOG_DIRTY_PAGES` and/or `KVM_MEM_READONLY`.
    pub flags: u32,
    /// Guest physical address.
    pub guest_phys_addr: u64,
    /// Size in bytes (0 deletes the slot).
    pub memory_size: u64,
    /// The memory in user space.
    pub userspace_addr: u64,
}

/// `KVM_SET_USER_MEMORY_REGION` (v1, every kernel): a memslot of ordinary memory, as SEV and
/// SEV-ES guests and kernels before 6.8 use them.
pub fn set_user_memory_region(vm_fd: BorrowedFd<'_>, r: &MemRegion) -> Result<()> {
    let mut k = kvm_userspace_memory_region {
        slot: r.slot,
        flags: r.flags,
        guest_phys_addr: r.guest_phys_addr,
        memory_size: r.memory_size,
        userspace_addr: r.userspace_addr,
    };
    ioctl_with(
        vm_fd,
        "KVM_SET_USER_MEMORY_REGION",
        KVM_SET_USER_MEMORY_REGION,
        &mut k,
    )
    .map(|_| ())
}

/// A memslot for [`set_user_memory_region2`].
#[derive(Clone, Copy, Debug)]
pub struct MemRegion2<'a> {
    /// Slot number (address space in bits 16-31).
    pub slot: u32,
    /// `KVM_MEM_*` flags; `KVM_MEM_GUEST_MEMFD` is added when `guest_memfd` is given.
    pub flags: u32,
    /// Guest physical address.
    pub guest_phys_addr: u64,
    /// Size in bytes.
    pub memory_size: u64,
    /// Shared (host-visible) memory in user space.
    pub userspace_addr: u64,
    /// The guest_memfd that backs the private pages, if any.
    pub guest_memfd: Option<BorrowedFd<'a>>,
    /// Offset of the slot in `guest_memfd`.
    pub guest_memfd_offset: u64,
}

/// `KVM_SET_USER_MEMORY_REGION2`.
pub fn set_user_memory_region2(vm_fd: BorrowedFd<'_>, r: &MemRegion2<'_>) -> Result<()> {
    let mut k = kvm_userspace_memory_region2 {
        slot: r.slot,
        flags: r.flags | r.guest_memfd.map_or(0, |_| KVM_MEM_GUEST_MEMFD),
        guest_phys_addr: r.guest_phys_addr,
        memory_size: r.memory_size,
        userspace_addr: r.userspace_addr,
        guest_memfd_offset: r.guest_memfd_offset,
        guest_memfd: r.guest_memfd.map_or(0, |fd| fd.as_raw_fd() as u32),
        ..Default::default()
    };
    ioctl_with(
        vm_fd,
        "KVM_SET_USER_MEMORY_REGION2",
        KVM_SET_USER_MEMORY_REGION2,
        &mut k,
    )
    .map(|_| ())
}

/// `KVM_SET_MEMORY_ATTRIBUTES`: makes `[gpa, gpa + size)` private (`private`) or shared.
pub fn set_private(vm_fd: BorrowedFd<'_>, gpa: u64, size: u64, private: bool) -> Result<()> {
    let mut a = kvm_memory_attributes {
        address: gpa,
        size,
        attributes: if private {
            KVM_MEMORY_ATTRIBUTE_PRIVATE
        } else {
            0
        },
        flags: 0,
    };
    ioctl_with(
        vm_fd,
        "KVM_SET_MEMORY_ATTRIBUTES",
        KVM_SET_MEMORY_ATTRIBUTES,
        &mut a,
    )
    .map(|_| ())
}
