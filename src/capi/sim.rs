//! C exports of the simulated host (test and demo support): simulated `/dev/kvm`, VM, vCPU
//! and `/dev/sev` descriptors, the current launch measurement, and fault injection.

use core::ffi::{CStr, c_char, c_int};
use core::mem::size_of;

use super::args::{ArgsStruct, copy_struct_from_user_fault_safe};
use super::boundary;
use crate::errno::Errno;
use crate::sim::{self, Effect};

/// Fault kind: the partial-progress commands stop after `value` pages (SNP_LAUNCH_UPDATE
/// returns 0 with its fields advanced; TDX INIT_MEM_REGION sees a signal: -EINTR with its
/// fields advanced).
pub const MEM_ENC_SIM_FAULT_PROGRESS: u32 = 1;
/// Fault kind: a signal is pending where the kernel checks for one (page loops, killable
/// vCPU locks): -EINTR there (SNP_LAUNCH_UPDATE reports a failed first page as -EIO).
/// Commands without such a point fail with -EINTR at the start of their handler.
pub const MEM_ENC_SIM_FAULT_EINTR: u32 = 2;
/// Fault kind: TDX INIT_VM runs out of entropy (-EAGAIN, nothing in `hw_error`); other
/// commands fail with -EAGAIN at the start of their handler.
pub const MEM_ENC_SIM_FAULT_EAGAIN: u32 = 3;
/// Fault kind: busy. TDX FINALIZE_VM and INIT_MEM_REGION (TDH.MEM.PAGE.ADD) get
/// TDX_OPERAND_BUSY from the module (-EBUSY; FINALIZE_VM reports it in `hw_error`); other
/// 6.19 TDX commands and the SEV vCPU-wide commands see a vCPU creation in flight (-EBUSY);
/// the rest fail with -EBUSY at the start of their handler.
pub const MEM_ENC_SIM_FAULT_EBUSY: u32 = 4;
/// Fault kind: the command's (first) firmware call returns status `value` (SEV: `error`,
/// -EIO; TDX: the SEAMCALL status, reported in `hw_error` where the kernel reports it).
pub const MEM_ENC_SIM_FAULT_FW_STATUS: u32 = 5;
/// `cmd_id` that matches every sub-command.
pub const MEM_ENC_SIM_ANY_CMD: u32 = u32::MAX;
/// The largest launch measurement `mem_enc_sim_launch_digest()` writes (48 bytes).
pub const MEM_ENC_SIM_DIGEST_MAX: u32 = 48;

/// A fault to inject into a simulated VM (`mem_enc_sim_inject()`). Pass its size: fields
/// added later are zero in a smaller struct, and a larger struct's unknown tail must be zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_sim_fault {
    /// `MEM_ENC_SIM_FAULT_*`.
    pub kind: u32,
    /// The sub-command id it applies to (SEV or TDX numbering), or `MEM_ENC_SIM_ANY_CMD`.
    pub cmd_id: u32,
    /// Fire on the nth matching command from now on (0 and 1: the next one).
    pub nth: u32,
    /// Fire on this many consecutive matching commands (0 is read as 1).
    pub count: u32,
    /// PROGRESS: pages done before stopping (at least 1); FW_STATUS: the status (non-zero).
    pub value: u64,
}
// SAFETY: a repr(C) struct of integers without padding (size assert below).
unsafe impl ArgsStruct for mem_enc_sim_fault {
    /// Only `kind` is needed: the other fields default to zero.
    const SIZE_VER0: usize = 4;
}

/// # Safety
/// `profile` is NULL or a NUL-terminated string.
unsafe fn profile_name<'a>(profile: *const c_char) -> Result<&'a str, Errno> {
    if profile.is_null() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(profile) };
    name.to_str().map_err(|_| Errno(libc::ENOENT))
}

fn fd_or_errno(result: Result<c_int, Errno>) -> c_int {
    result.unwrap_or_else(Errno::negated)
}

/// Opens a simulated `/dev/kvm` (test and demo support). Its VMs, vCPUs, guest_memfd and
/// `/dev/sev` descriptors are answered by memenc's model of the kernel for that host, so
/// `mem_enc_op()` and every memenc helper work on them as on real hardware.
///
/// Profiles: "none" (no memory encryption), "sev@6.1" (SEV/SEV-ES, legacy INIT only),
/// "snp@6.11" (VM types, INIT2, SNP), "snp@6.18" (plus policy-bits and REQ_CERTS
/// attributes), "tdx@6.16", "tdx@6.19" (see `mem_enc_sim_profile_name()`).
///
/// Arguments:
///  "profile" - the profile name.
///
/// Returns: a new descriptor (the caller closes it), or:
///  -EINVAL  profile is NULL
///  -ENOENT  no such profile
///
/// # Safety
/// `profile` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sim_kvm_open(profile: *const c_char) -> c_int {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        fd_or_errno(unsafe { profile_name(profile) }.and_then(sim::kvm_open))
    })
}

/// Creates a simulated VM of the default type (0) on a host of the given profile (test and
/// demo support): KVM_CREATE_VM(0) without keeping a `/dev/kvm` descriptor. Use
/// `mem_enc_sim_vm_create_type()` for the SEV, SEV-ES, SNP (2, 3, 4) and TDX (5) types.
///
/// Arguments:
///  "profile" - the profile name (see `mem_enc_sim_kvm_open()`).
///
/// Returns: a new VM descriptor (a dup() of it is the same VM; closing it and its dups, and
/// every vCPU and guest_memfd descriptor of the VM, ends the VM), or -EINVAL (NULL) or -ENOENT
/// (no such profile).
///
/// # Safety
/// `profile` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sim_vm_create(profile: *const c_char) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { mem_enc_sim_vm_create_type(profile, 0) }
}

/// Creates a simulated VM of `vm_type` (test and demo support), as KVM_CREATE_VM on the
/// profile's `/dev/kvm`. A VMM opens the simulated `/dev/kvm` (`mem_enc_sim_kvm_open()`) and
/// calls `mem_enc_vm_create()` on it, as on a real host.
///
/// Arguments:
///  "profile" - the profile name (see `mem_enc_sim_kvm_open()`).
///  "vm_type" - the KVM VM type, e.g. 4 (SNP) or 5 (TDX).
///
/// Returns: a new VM descriptor, or:
///  -EINVAL  profile is NULL, or the profile's kernel does not create this type
///  -ENOENT  no such profile
///
/// # Safety
/// `profile` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sim_vm_create_type(profile: *const c_char, vm_type: u32) -> c_int {
    boundary(|| {
        // SAFETY: forwarded caller contract.
        let name = unsafe { profile_name(profile) };
        fd_or_errno(name.and_then(|n| sim::vm_create(n, u64::from(vm_type))))
    })
}

/// KVM_CREATE_VCPU on a simulated VM (test and demo support), with the kernel's checks
/// (e.g. TDX: -EIO before KVM_TDX_INIT_VM, -EINVAL without a split irqchip; -EEXIST for an id
/// in use). A VMM calls `mem_enc_vcpu_create()`, which does the same on real and simulated VMs;
/// this one refuses real descriptors.
///
/// Arguments:
///  "vm_fd" - a simulated VM descriptor (borrowed).
///  "id"    - the vCPU id.
///
/// Returns: a new vCPU descriptor, or -EBADF when vm_fd is not a simulated VM, or the
/// kernel's errno.
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_sim_vcpu_create(vm_fd: c_int, id: u32) -> c_int {
    boundary(|| fd_or_errno(sim::vcpu_create(vm_fd, id)))
}

/// Opens the simulated `/dev/sev` of the host `vm_fd` belongs to (test and demo support): the
/// descriptor to put in `status.sev.sev_fd` for LAUNCH_START, RECEIVE_START and the SNP launch
/// commands. Any other descriptor there gives -EBADF, as on a real host.
///
/// Arguments:
///  "vm_fd" - a simulated VM (or vCPU) descriptor (borrowed).
///
/// Returns: a new descriptor, or:
///  -EBADF   vm_fd is not a simulated VM
///  -ENODEV  that host has no SEV firmware (profiles "none", "tdx@...")
#[unsafe(no_mangle)]
#[must_use]
pub extern "C" fn mem_enc_sim_sev_device_open(vm_fd: c_int) -> c_int {
    boundary(|| fd_or_errno(sim::sev_device_open(vm_fd)))
}

/// The simulated VM's current launch measurement (test and demo support): the SNP launch
/// digest (48 bytes, SHA-384 PAGE_INFO chaining, VMSAs added by SNP_LAUNCH_FINISH), the TDX
/// MRTD (48 bytes, as TDH.MR.FINALIZE would fix it now) or the SEV launch digest (32 bytes,
/// SHA-256 of the LAUNCH_UPDATE_DATA/VMSA contents). The SEV LAUNCH_MEASURE blob is
/// HMAC-SHA256 keyed with the simulated TIK, the 16 bytes 0x00, 0x01, ..., 0x0f.
///
/// Arguments:
///  "vm_fd"   - a simulated VM (or vCPU) descriptor (borrowed).
///  "out"     - receives the measurement.
///  "out_len" - the size of out; MEM_ENC_SIM_DIGEST_MAX always suffices.
///
/// Returns: the number of bytes written (48 or 32), or:
///  -EBADF   vm_fd is not a simulated VM
///  -EINVAL  no launch has started (no LAUNCH_START, SNP_LAUNCH_START or INIT_VM yet), or
///           out is NULL
///  -ENOSPC  out_len is too small (nothing written)
///
/// # Safety
/// `out` is NULL or points to `out_len` writable bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sim_launch_digest(
    vm_fd: c_int,
    out: *mut u8,
    out_len: usize,
) -> c_int {
    boundary(|| {
        let digest = match sim::launch_digest(vm_fd) {
            Ok(d) => d,
            Err(e) => return e.negated(),
        };
        if out.is_null() {
            return -libc::EINVAL;
        }
        if out_len < digest.len() {
            return -libc::ENOSPC;
        }
        // The caller's own output buffer: written directly, like every export's outputs (the
        // fault-safe host::write_user is for memory the kernel writes in the model, and it is
        // invisible to valgrind, which would then call the digest uninitialised).
        // SAFETY: `out` has `out_len` >= digest.len() writable bytes (the caller's contract).
        unsafe { core::ptr::copy_nonoverlapping(digest.as_ptr(), out, digest.len()) };
        digest.len() as c_int
    })
}

/// Arms a fault on a simulated VM (test and demo support), so that retry and continue paths
/// can be exercised: the `nth` next command with id `cmd_id` on the VM or its vCPUs fails as
/// `kind` says, `count` times in a row. Faults are checked when a command reaches its handler
/// (after the envelope checks).
///
/// Arguments:
///  "vm_fd"      - a simulated VM (or vCPU) descriptor (borrowed).
///  "fault"      - the fault.
///  "fault_size" - sizeof(struct mem_enc_sim_fault) as the caller knows it.
///
/// Returns: 0, or:
///  -EBADF   vm_fd is not a simulated VM
///  -EINVAL  fault is NULL, fault_size < 4, an unknown kind, PROGRESS of 0 pages, FW_STATUS of 0
///  -E2BIG   fault_size is larger than memenc knows and the extra bytes are not zero, or
///           above 4096
///  -EFAULT  fault is not readable
///
/// # Safety
/// `fault` is NULL or points to `fault_size` readable bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sim_inject(
    vm_fd: c_int,
    fault: *const mem_enc_sim_fault,
    fault_size: usize,
) -> c_int {
    boundary(|| {
        if fault.is_null() {
            return -libc::EINVAL;
        }
        let f = match copy_struct_from_user_fault_safe(fault, fault_size) {
            Ok(f) => f,
            Err(e) => return e.negated(),
        };
        let effect = match f.kind {
            MEM_ENC_SIM_FAULT_PROGRESS => Effect::Progress(f.value),
            MEM_ENC_SIM_FAULT_EINTR => Effect::Signal,
            MEM_ENC_SIM_FAULT_EAGAIN => Effect::Again,
            MEM_ENC_SIM_FAULT_EBUSY => Effect::Busy,
            MEM_ENC_SIM_FAULT_FW_STATUS => Effect::FwStatus(f.value),
            _ => return -libc::EINVAL,
        };
        super::status(sim::inject(vm_fd, effect, f.cmd_id, f.nth, f.count))
    })
}

/// The name of simulated-host profile number `index` (test and demo support), to list them.
///
/// Arguments:
///  "index" - 0, 1, 2, ...
///
/// Returns: a static NUL-terminated string, or NULL past the last profile.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_sim_profile_name(index: usize) -> *const c_char {
    super::boundary_or(core::ptr::null(), || {
        sim::profile_names()
            .nth(index)
            .map_or(core::ptr::null(), CStr::as_ptr)
    })
}

const _: () = assert!(size_of::<mem_enc_sim_fault>() == 24);
