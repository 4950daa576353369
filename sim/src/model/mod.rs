//! The kernel-and-firmware model: KVM's generic, SEV/SEV-ES/SNP and TDX handlers as each
//! profile's kernel version and firmware answer them, so every launch flow runs where no SEV or
//! TDX hardware exists.
//!
//! It follows kernel-abi.md §2: the same validation order and errno, the same bytes copied in
//! and out (through [`target`], so a bad pointer is -EFAULT as with `copy_from_user`), the same
//! fields written back and when, per [`profile`]. Measurements follow the vendors'
//! specifications ([`measure`]). In process, its descriptors are memfds ([`registry`]); under
//! the supervisor, the traced program's real KVM descriptors stand for them.

pub mod fault;
pub mod ioctl_numbers;
pub mod kvm;
pub mod measure;
pub mod page_hash;
pub mod profile;
pub mod psp;
pub mod registry;
pub mod report;
pub mod sev;
pub mod target;
pub mod tdx;
pub(crate) mod user;
pub mod vm;
pub mod vmsa;

use std::os::fd::RawFd;

use memenc::Errno;
use memenc::Vendor;
use profile::{Backend, Profile};
use registry::Object;

pub use fault::{ANY_CMD, Effect};

/// Whether any simulated descriptor may be alive; the real path checks only this.
#[inline]
pub fn active() -> bool {
    registry::any_live()
}

/// The vendor numbering of a simulated descriptor, `None` for descriptors the simulator does
/// not own. A `none` host speaks its CPU's numbering, as the real host does.
pub fn vendor_of(fd: RawFd) -> Option<Vendor> {
    let profile = profile_of(&registry::lookup(fd)?);
    Some(match profile.backend {
        Backend::None => memenc::cpu_vendor(),
        Backend::Sev => Vendor::Sev,
        Backend::Tdx => Vendor::Tdx,
    })
}

fn profile_of(object: &Object) -> &'static Profile {
    match object {
        Object::System(p) | Object::SevDevice(p) => p,
        Object::Vm(vm) | Object::Vcpu(vm, _) | Object::Gmem(vm, _) => registry::lock(vm).profile,
    }
}

/// Handles `ioctl(fd, request, arg)` when `fd` is simulated; `None` otherwise.
///
/// # Safety
/// As [`crate::host::ioctl`]. (The model itself touches caller memory only through the
/// fault-safe functions, so it cannot crash on a bad `arg`.)
pub unsafe fn ioctl(fd: RawFd, request: u64, arg: u64) -> Option<Result<i32, Errno>> {
    let object = registry::lookup(fd)?;
    Some(match object {
        Object::System(profile) => kvm::system_ioctl(profile, request, arg),
        Object::Vm(vm) => kvm::vm_ioctl(&vm, request, arg),
        Object::Vcpu(vm, index) => kvm::vcpu_ioctl(&vm, index, request, arg),
        // A guest_memfd file has no ioctls.
        Object::Gmem(..) => Err(Errno(libc::ENOTTY)),
        Object::SevDevice(profile) => psp::ioctl(profile, request, arg),
    })
}

/// A simulated `/dev/kvm` of the named profile: -ENOENT for an unknown name.
pub fn kvm_open(profile: &str) -> Result<RawFd, Errno> {
    let p = profile::find(profile).ok_or(Errno(libc::ENOENT))?;
    registry::create(c"memenc-sim-kvm", 0, Object::System(p))
}

/// A simulated VM of `vm_type` (KVM_CREATE_VM semantics: -EINVAL for a type the profile's
/// KVM does not create), without a `/dev/kvm` descriptor to keep.
pub fn vm_create(profile: &str, vm_type: u64) -> Result<RawFd, Errno> {
    let p = profile::find(profile).ok_or(Errno(libc::ENOENT))?;
    kvm::create_vm(p, vm_type)
}

fn vm_of(fd: RawFd) -> Result<registry::VmRef, Errno> {
    match registry::lookup(fd) {
        Some(Object::Vm(vm)) | Some(Object::Vcpu(vm, _)) => Ok(vm),
        _ => Err(Errno(libc::EBADF)),
    }
}

/// KVM_CREATE_VCPU on a simulated VM (-EBADF when `vm_fd` is not one).
pub fn vcpu_create(vm_fd: RawFd, id: u32) -> Result<RawFd, Errno> {
    match registry::lookup(vm_fd) {
        Some(Object::Vm(vm)) => kvm::create_vcpu(&vm, u64::from(id)),
        _ => Err(Errno(libc::EBADF)),
    }
}

/// A simulated `/dev/sev` for the host of `vm_fd`: -EBADF when `vm_fd` is not a simulated VM,
/// -ENODEV when that host has no SEV firmware.
pub fn sev_device_open(vm_fd: RawFd) -> Result<RawFd, Errno> {
    let profile = registry::lock(&vm_of(vm_fd)?).profile;
    if profile.sev.is_none() {
        return Err(Errno(libc::ENODEV));
    }
    registry::create(c"memenc-sim-sev", 0, Object::SevDevice(profile))
}

/// The VM's current launch measurement: SNP launch digest (48 bytes), TDX MRTD (48) or SEV
/// launch digest (32). -EINVAL before the launch started (no LAUNCH_START, SNP_LAUNCH_START
/// or INIT_VM yet).
pub fn launch_digest(vm_fd: RawFd) -> Result<Vec<u8>, Errno> {
    let vm = vm_of(vm_fd)?;
    let vm = registry::lock(&vm);
    let digest = match vm.profile.backend {
        Backend::Sev => vm.sev.digest(),
        Backend::Tdx => vm.tdx.digest(),
        Backend::None => None,
    };
    digest.ok_or(Errno(libc::EINVAL))
}

/// Arms a fault on the VM of `fd` (a VM or vCPU descriptor); see [`fault::Faults::arm`].
pub fn inject(fd: RawFd, effect: Effect, cmd_id: u32, nth: u32, count: u32) -> Result<(), Errno> {
    let vm = vm_of(fd)?;
    let mut vm = registry::lock(&vm);
    if effect == Effect::Busy && vm.profile.backend == Backend::Sev {
        // No SEV kernel path produces it (see `Effect::Busy`).
        return Err(Errno(libc::EINVAL));
    }
    vm.faults.arm(effect, cmd_id, nth, count)
}

/// The profile names, in a stable order.
pub fn profile_names() -> impl Iterator<Item = &'static core::ffi::CStr> {
    profile::PROFILES.iter().map(|p| p.name)
}
