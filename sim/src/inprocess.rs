//! The model in this process: a [`memenc::Host`] that answers the model's own descriptors (made
//! by [`kvm_open`], [`vm_create`] and the descriptors those hand out) and sends every other
//! ioctl to the kernel. For Rust tests, fuzzers and benchmarks of memenc's own code; a program
//! that is not linked with memenc runs on the model under `memenc-sim run` instead.
//!
//! Every function here installs the route on first use, so a test needs no set-up call.

use std::os::fd::RawFd;

use memenc::{Errno, Vendor};

pub use crate::model::fault::{ANY_CMD, Effect};
use crate::model::{self};

struct InProcess;

impl memenc::Host for InProcess {
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
        // SAFETY: the caller upholds the contract of a raw ioctl, which is the model's too.
        if let Some(result) = unsafe { model::ioctl(fd, request, arg) } {
            return result;
        }
        // SAFETY: as above; a descriptor the model does not own goes to the kernel.
        let ret = unsafe { libc::ioctl(fd, request as libc::Ioctl, arg as libc::c_ulong) };
        if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
    }

    fn vendor(&self, fd: RawFd) -> Option<Vendor> {
        model::vendor_of(fd)
    }

    fn simulated(&self, fd: RawFd) -> bool {
        model::vendor_of(fd).is_some()
    }
}

static HOST: InProcess = InProcess;

/// Routes memenc's ioctls through the model (idempotent). -EBUSY if the process installed a
/// different route first.
pub fn install() -> Result<(), Errno> {
    match memenc::set_host(&HOST) {
        Ok(()) => Ok(()),
        Err(_) if memenc::host::installed_is(&HOST) => Ok(()),
        Err(e) => Err(e),
    }
}

fn installed<T>(f: impl FnOnce() -> Result<T, Errno>) -> Result<T, Errno> {
    install()?;
    f()
}

/// A simulated `/dev/kvm` of the named profile (-ENOENT for an unknown name).
pub fn kvm_open(profile: &str) -> Result<RawFd, Errno> {
    installed(|| model::kvm_open(profile))
}

/// A simulated VM of `vm_type` on a host of `profile` (KVM_CREATE_VM semantics).
pub fn vm_create(profile: &str, vm_type: u64) -> Result<RawFd, Errno> {
    installed(|| model::vm_create(profile, vm_type))
}

/// KVM_CREATE_VCPU on a simulated VM (-EBADF when `vm_fd` is not one).
pub fn vcpu_create(vm_fd: RawFd, id: u32) -> Result<RawFd, Errno> {
    installed(|| model::vcpu_create(vm_fd, id))
}

/// The simulated `/dev/sev` of the host of `vm_fd` (-ENODEV without SEV firmware).
pub fn sev_device_open(vm_fd: RawFd) -> Result<RawFd, Errno> {
    installed(|| model::sev_device_open(vm_fd))
}

/// The VM's launch measurement so far (SNP 48, TDX MRTD 48, SEV 32 bytes).
pub fn launch_digest(vm_fd: RawFd) -> Result<Vec<u8>, Errno> {
    model::launch_digest(vm_fd)
}

/// Arms a fault on the VM of `fd`; see [`crate::model::fault`].
pub fn inject(fd: RawFd, effect: Effect, cmd_id: u32, nth: u32, count: u32) -> Result<(), Errno> {
    model::inject(fd, effect, cmd_id, nth, count)
}

/// The profile names, in a stable order.
pub fn profile_names() -> impl Iterator<Item = &'static str> {
    model::profile_names().filter_map(|n| n.to_str().ok())
}
