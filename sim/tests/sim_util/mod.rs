//! Shared helpers of the simulated-host tests: descriptors through the C exports, raw ioctls
//! through memenc's host layer (the kernel's view), and guest memory set-up.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};

use memenc::uapi::*;
use memenc::{Errno, mem_enc_cmd};
use memenc_sim::compat::*;

pub const PAGE: u64 = 4096;

/// CPUID leaf 0x80000008 with a 48-bit GPAW: the one leaf a simulated TD's INIT_VM needs.
pub fn gpaw48() -> memenc::capi::tdx::mem_enc_cpuid_entry {
    memenc::capi::tdx::mem_enc_cpuid_entry {
        function: 0x8000_0008,
        eax: 48 << 16,
        ..Default::default()
    }
}

/// INIT_VM arguments of the tests' TD: SEPT_VE_DISABLE, XFAM x87|SSE, `cpuid`.
pub fn td_init_args(
    cpuid: &[memenc::capi::tdx::mem_enc_cpuid_entry],
) -> memenc::capi::tdx::mem_enc_tdx_init_vm_args {
    memenc::capi::tdx::mem_enc_tdx_init_vm_args {
        attributes: memenc::negotiate::MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
        xfam: 3,
        mrconfigid: [0; 48],
        mrowner: [0; 48],
        mrownerconfig: [0; 48],
        cpuid: cpuid.as_ptr(),
        cpuid_nent: cpuid.len() as u32,
        reserved: 0,
    }
}

/// KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, 24 pins) as the kernel sees it (a TD's vCPUs need it).
pub fn enable_split_irqchip(vm: &Fd) -> Result<i32, i32> {
    from_c(split_irqchip(vm.0, 24))
}

// ---------------------------------------------------------------------------------------------
// What memenc 0.2 left to the VMM: the parameterless sub-commands through `mem_enc_op()` with
// MEM_ENC_FLAG_RETRY, and the VM/vCPU/memslot plumbing as plain KVM ioctls. Each returns in
// the C convention of the exports it replaces (a descriptor or 0, else -errno), so the tests'
// expectations read as before.

fn to_c(r: Result<i32, i32>) -> i32 {
    r.unwrap_or_else(|e| -e)
}

fn from_c(r: i32) -> Result<i32, i32> {
    if r < 0 { Err(-r) } else { Ok(r) }
}

/// A parameterless sub-command (SEV INIT, ES_INIT, LAUNCH_UPDATE_VMSA, LAUNCH_FINISH,
/// SEND_FINISH, SEND_CANCEL, RECEIVE_FINISH, SNP_ENABLE_REQ_CERTS; TDX FINALIZE_VM) as a C VMM
/// issues it since 0.2: one `mem_enc_op()` with MEM_ENC_FLAG_RETRY. Returns the result and the
/// command, whose status word holds the firmware status (`cmd.sev().error`,
/// `cmd.hw_error()`).
pub fn op_retry(fd: RawFd, id: u32) -> (i32, mem_enc_cmd) {
    let mut cmd = mem_enc_cmd {
        flags: memenc::MEM_ENC_FLAG_RETRY,
        ..mem_enc_cmd::new(id, 0)
    };
    // SAFETY: a valid 24-byte command with no parameter struct.
    let r = unsafe { memenc::capi::op::mem_enc_op(fd, &mut cmd) };
    (r, cmd)
}

/// KVM_CREATE_VM of `vm_type` on a /dev/kvm descriptor: the VM's descriptor or -errno.
pub fn create_vm(kvm: RawFd, vm_type: u32) -> i32 {
    to_c(raw(kvm, KVM_CREATE_VM, u64::from(vm_type)))
}

/// KVM_CREATE_VCPU `id` on a VM descriptor: the vCPU's descriptor or -errno.
pub fn create_vcpu(vm: RawFd, id: u32) -> i32 {
    to_c(raw(vm, KVM_CREATE_VCPU, u64::from(id)))
}

/// KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) with `pins` IOAPIC routes: 0 or -errno.
pub fn split_irqchip(vm: RawFd, pins: u32) -> i32 {
    let mut cap = kvm_enable_cap {
        cap: KVM_CAP_SPLIT_IRQCHIP as u32,
        ..Default::default()
    };
    cap.args[0] = u64::from(pins);
    to_c(raw(vm, KVM_ENABLE_CAP, ptr(&mut cap)))
}

/// KVM_SET_TSC_KHZ on a VM descriptor: 0 or -errno.
pub fn set_tsc_khz(vm: RawFd, khz: u32) -> i32 {
    to_c(raw(vm, KVM_SET_TSC_KHZ, u64::from(khz)))
}

/// KVM_CREATE_GUEST_MEMFD: the guest_memfd's descriptor or -errno.
pub fn guest_memfd(vm: RawFd, size: u64, flags: u64) -> i32 {
    let mut g = kvm_create_guest_memfd {
        size,
        flags,
        reserved: [0; 6],
    };
    to_c(raw(vm, KVM_CREATE_GUEST_MEMFD, ptr(&mut g)))
}

/// KVM_SET_USER_MEMORY_REGION (v1): 0 or -errno.
pub fn memslot(vm: RawFd, slot: u32, flags: u32, gpa: u64, size: u64, uaddr: u64) -> i32 {
    let mut r = kvm_userspace_memory_region {
        slot,
        flags,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uaddr,
    };
    to_c(raw(vm, KVM_SET_USER_MEMORY_REGION, ptr(&mut r)))
}

/// KVM_SET_USER_MEMORY_REGION2 of `size` bytes at `gpa`, shared memory at `uaddr`, private
/// pages in `gmem` from offset 0 (KVM_MEM_GUEST_MEMFD is added): 0 or -errno.
pub fn memslot2(vm: RawFd, slot: u32, gpa: u64, size: u64, uaddr: u64, gmem: RawFd) -> i32 {
    let mut r = kvm_userspace_memory_region2 {
        slot,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uaddr,
        guest_memfd_offset: 0,
        guest_memfd: gmem as u32,
        ..Default::default()
    };
    to_c(raw(vm, KVM_SET_USER_MEMORY_REGION2, ptr(&mut r)))
}

/// KVM_SET_MEMORY_ATTRIBUTES: `[gpa, gpa + size)` private or shared; 0 or -errno.
pub fn memory_attributes(vm: RawFd, gpa: u64, size: u64, private: bool) -> i32 {
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
    to_c(raw(vm, KVM_SET_MEMORY_ATTRIBUTES, ptr(&mut a)))
}

/// A whole guest_memfd-backed private memslot 0 of `size` bytes at GPA 0, shared memory at
/// `uaddr`: the guest_memfd's descriptor (the caller closes it). Panics on failure.
pub fn private_memory(vm: RawFd, size: u64, uaddr: u64) -> RawFd {
    let gmem = guest_memfd(vm, size, 0);
    assert!(gmem >= 0, "guest_memfd = {gmem}");
    assert_eq!(memslot2(vm, 0, 0, size, uaddr, gmem), 0);
    assert_eq!(memory_attributes(vm, 0, size, true), 0);
    gmem
}

/// What `mem_enc_probe()` reports for a simulated host of `profile`: the tests negotiate against
/// the model's answers instead of hand-built capabilities. "snp@6.11": VM types SEV, SEV-ES and
/// SNP, INIT2 with DEBUG_SWAP, the static SNP policy mask (not published: DEFAULTED);
/// "tdx@6.19": VM type TDX, attributes SEPT_VE_DISABLE.
pub fn probed(profile: &str) -> memenc::probe::mem_enc_caps {
    let kvm = kvm(profile);
    let mut caps = memenc::probe::mem_enc_caps::default();
    // SAFETY: a whole struct and its size.
    let r = unsafe { memenc::capi::probe::mem_enc_probe(kvm.0, &mut caps, size_of_val(&caps)) };
    assert_eq!(r, 0, "probe({profile})");
    assert_ne!(caps.features & memenc::probe::MEM_ENC_CAPS_SIMULATED, 0);
    caps
}

/// Closes descriptors at the end of a test.
pub struct Fd(pub RawFd);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the test owns this descriptor.
        unsafe { libc::close(self.0) };
    }
}

pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

pub fn kvm(profile: &str) -> Fd {
    let p = cstr(profile);
    // SAFETY: NUL-terminated string.
    let fd = unsafe { mem_enc_sim_kvm_open(p.as_ptr()) };
    assert!(fd >= 0, "kvm_open({profile}) = {fd}");
    Fd(fd)
}

pub fn new_vm(profile: &str, vm_type: u32) -> Fd {
    let p = cstr(profile);
    // SAFETY: NUL-terminated string.
    let fd = unsafe { mem_enc_sim_vm_create_type(p.as_ptr(), vm_type) };
    assert!(fd >= 0, "vm_create({profile}, {vm_type}) = {fd}");
    Fd(fd)
}

pub fn vcpu(vm: &Fd, id: u32) -> Result<Fd, i32> {
    let fd = mem_enc_sim_vcpu_create(vm.0, id);
    if fd < 0 { Err(fd) } else { Ok(Fd(fd)) }
}

pub fn sev_dev(vm: &Fd) -> Fd {
    let fd = mem_enc_sim_sev_device_open(vm.0);
    assert!(fd >= 0, "sev_device_open = {fd}");
    Fd(fd)
}

pub fn digest(vm: &Fd) -> Result<Vec<u8>, i32> {
    let mut out = [0u8; 64];
    // SAFETY: 64 writable bytes.
    let n = unsafe { mem_enc_sim_launch_digest(vm.0, out.as_mut_ptr(), out.len()) };
    if n < 0 {
        Err(n)
    } else {
        Ok(out[..n as usize].to_vec())
    }
}

pub fn inject(vm: &Fd, kind: u32, cmd_id: u32, nth: u32, count: u32, value: u64) {
    let f = mem_enc_sim_fault {
        kind,
        cmd_id,
        nth,
        count,
        value,
    };
    // SAFETY: a valid struct and its size.
    let r = unsafe { mem_enc_sim_inject(vm.0, &f, size_of::<mem_enc_sim_fault>()) };
    assert_eq!(r, 0);
}

/// A raw ioctl as the kernel sees it (memenc's host layer, which routes simulated fds).
pub fn raw(fd: RawFd, request: u64, arg: u64) -> Result<i32, i32> {
    // SAFETY: the tests pass pointers to live buffers of the right size, or deliberately bad
    // addresses the model (like the kernel) must reject with EFAULT.
    unsafe { memenc::host::ioctl(fd, request, arg) }.map_err(|e| e.0)
}

pub fn ptr<T>(v: &mut T) -> u64 {
    v as *mut T as u64
}

/// A raw KVM_MEMORY_ENCRYPT_OP on a 24-byte command the test can inspect afterwards.
pub fn raw_op(fd: RawFd, cmd: &mut [u8; 24]) -> Result<i32, i32> {
    raw(fd, KVM_MEMORY_ENCRYPT_OP, cmd.as_mut_ptr() as u64)
}

pub fn raw_cmd(id: u32, flags: u32, data: u64, status: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&id.to_le_bytes());
    b[4..8].copy_from_slice(&flags.to_le_bytes());
    b[8..16].copy_from_slice(&data.to_le_bytes());
    b[16..24].copy_from_slice(&status.to_le_bytes());
    b
}

/// memenc's own entry point, as a VMM would call it.
pub fn op(fd: &Fd, id: u32, data: u64, sev_fd: Option<&Fd>) -> (Result<(), i32>, mem_enc_cmd) {
    op_flags(fd, id, 0, data, sev_fd)
}

pub fn op_flags(
    fd: &Fd,
    id: u32,
    flags: u32,
    data: u64,
    sev_fd: Option<&Fd>,
) -> (Result<(), i32>, mem_enc_cmd) {
    let mut cmd = mem_enc_cmd::new(id, data);
    cmd.flags = flags;
    if let Some(s) = sev_fd {
        cmd.status.sev = memenc::mem_enc_sev_status {
            error: 0,
            sev_fd: s.0 as u32,
        };
    }
    // SAFETY: the descriptor is open for the duration of the call.
    let b = unsafe { BorrowedFd::borrow_raw(fd.0) };
    let r = memenc::memory_encrypt_op(b, &mut cmd).map_err(|Errno(e)| e);
    (r, cmd)
}

/// Page-aligned anonymous memory.
pub struct Mem {
    pub addr: u64,
    pub len: usize,
}
impl Mem {
    pub fn new(len: usize) -> Mem {
        // SAFETY: anonymous private mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Mem {
            addr: p as u64,
            len,
        }
    }
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours and len bytes long.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }
}
impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

/// A guest_memfd-backed memslot at `gpa` of `size` bytes, all private.
pub fn private_slot(vm: &Fd, slot: u32, gpa: u64, size: u64, backing: &Mem) -> Fd {
    let mut g = kvm_create_guest_memfd {
        size,
        flags: 0,
        reserved: [0; 6],
    };
    let gfd = raw(vm.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g)).expect("guest_memfd");
    let gfd = Fd(gfd);
    let mut r = kvm_userspace_memory_region2 {
        slot,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: backing.addr,
        guest_memfd_offset: 0,
        guest_memfd: gfd.0 as u32,
        ..Default::default()
    };
    assert_eq!(raw(vm.0, KVM_SET_USER_MEMORY_REGION2, ptr(&mut r)), Ok(0));
    set_private(vm, gpa, size, true);
    gfd
}

pub fn set_private(vm: &Fd, gpa: u64, size: u64, private: bool) {
    assert_eq!(memory_attributes(vm.0, gpa, size, private), 0);
}

pub const EINVAL: i32 = libc::EINVAL;
pub const ENOTTY: i32 = libc::ENOTTY;
pub const EFAULT: i32 = libc::EFAULT;
pub const EIO: i32 = libc::EIO;
pub const EPERM: i32 = libc::EPERM;
pub const EBADF: i32 = libc::EBADF;
pub const EBUSY: i32 = libc::EBUSY;
pub const EINTR: i32 = libc::EINTR;
pub const EAGAIN: i32 = libc::EAGAIN;
pub const E2BIG: i32 = libc::E2BIG;
pub const EEXIST: i32 = libc::EEXIST;
