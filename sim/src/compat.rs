//! The former `mem_enc_sim_*` C exports of libmemenc, kept as Rust functions of the same shape
//! for memenc's own in-process tests (they return a descriptor or `-errno`). Not an ABI.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use core::ffi::{CStr, c_char, c_int};

use memenc::Errno;

use crate::inprocess::{self, Effect};

/// Fault kind: the partial-progress commands stop after `value` pages.
pub const MEM_ENC_SIM_FAULT_PROGRESS: u32 = 1;
/// Fault kind: a signal is pending where the kernel checks for one.
pub const MEM_ENC_SIM_FAULT_EINTR: u32 = 2;
/// Fault kind: TDX INIT_VM runs out of entropy; other commands -EAGAIN.
pub const MEM_ENC_SIM_FAULT_EAGAIN: u32 = 3;
/// Fault kind: busy (TDX only: TDX_OPERAND_BUSY, or -EBUSY where a TDX kernel has one;
/// refused on SEV VMs, which have no such path).
pub const MEM_ENC_SIM_FAULT_EBUSY: u32 = 4;
/// Fault kind: the command's (first) firmware call returns status `value`.
pub const MEM_ENC_SIM_FAULT_FW_STATUS: u32 = 5;
/// `cmd_id` that matches every sub-command.
pub const MEM_ENC_SIM_ANY_CMD: u32 = u32::MAX;
/// The largest launch measurement (48 bytes).
pub const MEM_ENC_SIM_DIGEST_MAX: u32 = 48;

/// A fault to inject into a simulated VM.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_sim_fault {
    /// `MEM_ENC_SIM_FAULT_*`.
    pub kind: u32,
    /// The sub-command id, or `MEM_ENC_SIM_ANY_CMD`.
    pub cmd_id: u32,
    /// Fire on the nth matching command from now on (0 and 1: the next one).
    pub nth: u32,
    /// Fire on this many consecutive matching commands (0 is read as 1).
    pub count: u32,
    /// PROGRESS: pages done before stopping; FW_STATUS: the status.
    pub value: u64,
}

unsafe fn name<'a>(profile: *const c_char) -> Result<&'a str, Errno> {
    if profile.is_null() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(profile) }
        .to_str()
        .map_err(|_| Errno(libc::ENOENT))
}

fn fd(r: Result<c_int, Errno>) -> c_int {
    r.unwrap_or_else(Errno::negated)
}

/// A simulated `/dev/kvm`.
pub unsafe fn mem_enc_sim_kvm_open(profile: *const c_char) -> c_int {
    // SAFETY: forwarded caller contract.
    fd(unsafe { name(profile) }.and_then(inprocess::kvm_open))
}

/// A simulated VM of the default type.
pub unsafe fn mem_enc_sim_vm_create(profile: *const c_char) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { mem_enc_sim_vm_create_type(profile, 0) }
}

/// A simulated VM of `vm_type`.
pub unsafe fn mem_enc_sim_vm_create_type(profile: *const c_char, vm_type: u32) -> c_int {
    // SAFETY: forwarded caller contract.
    fd(unsafe { name(profile) }.and_then(|n| inprocess::vm_create(n, u64::from(vm_type))))
}

/// KVM_CREATE_VCPU on a simulated VM.
pub fn mem_enc_sim_vcpu_create(vm_fd: c_int, id: u32) -> c_int {
    fd(inprocess::vcpu_create(vm_fd, id))
}

/// The simulated `/dev/sev` of the VM's host.
pub fn mem_enc_sim_sev_device_open(vm_fd: c_int) -> c_int {
    fd(inprocess::sev_device_open(vm_fd))
}

/// Copies the VM's launch measurement into `out`; its length or -errno.
pub unsafe fn mem_enc_sim_launch_digest(vm_fd: c_int, out: *mut u8, out_len: usize) -> c_int {
    let digest = match inprocess::launch_digest(vm_fd) {
        Ok(d) => d,
        Err(e) => return e.negated(),
    };
    if out.is_null() {
        return -libc::EINVAL;
    }
    if out_len < digest.len() {
        return -libc::ENOSPC;
    }
    // SAFETY: `out` has `out_len` >= digest.len() writable bytes (the caller's contract).
    unsafe { core::ptr::copy_nonoverlapping(digest.as_ptr(), out, digest.len()) };
    digest.len() as c_int
}

/// Arms a fault on the VM of `vm_fd`.
pub unsafe fn mem_enc_sim_inject(
    vm_fd: c_int,
    fault: *const mem_enc_sim_fault,
    fault_size: usize,
) -> c_int {
    if fault.is_null() || fault_size < 4 {
        return -libc::EINVAL;
    }
    let mut bytes = [0u8; size_of::<mem_enc_sim_fault>()];
    let n = fault_size.min(bytes.len());
    // Read as the kernel would copy it: a bad address is -EFAULT, not a crash.
    if crate::model::target::read_user(fault as u64, &mut bytes[..n]).is_none() {
        return -libc::EFAULT;
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let f = mem_enc_sim_fault {
        kind: word(0),
        cmd_id: word(4),
        nth: word(8),
        count: word(12),
        value: u64::from(word(16)) | u64::from(word(20)) << 32,
    };
    let effect = match f.kind {
        MEM_ENC_SIM_FAULT_PROGRESS => Effect::Progress(f.value),
        MEM_ENC_SIM_FAULT_EINTR => Effect::Signal,
        MEM_ENC_SIM_FAULT_EAGAIN => Effect::Again,
        MEM_ENC_SIM_FAULT_EBUSY => Effect::Busy,
        MEM_ENC_SIM_FAULT_FW_STATUS => Effect::FwStatus(f.value),
        _ => return -libc::EINVAL,
    };
    match inprocess::inject(vm_fd, effect, f.cmd_id, f.nth, f.count) {
        Ok(()) => 0,
        Err(e) => e.negated(),
    }
}

/// The profile name at `index`, or NULL.
pub fn mem_enc_sim_profile_name(index: usize) -> *const c_char {
    crate::model::profile_names()
        .nth(index)
        .map_or(core::ptr::null(), CStr::as_ptr)
}
