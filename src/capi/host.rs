//! `mem_enc_set_ioctl_fn()`: the C route into [`crate::host::Host`], so QEMU issues memenc's
//! ioctls through its own `kvm_vm_ioctl()` / `kvm_vcpu_ioctl()` (trace events and the
//! `accel_ioctl_begin()/end()` blocker).

use core::ffi::{c_int, c_ulong, c_void};
use std::os::fd::RawFd;

use super::boundary;
use crate::errno::Errno;
use crate::host::{self, Host};

/// The ioctl callback of `mem_enc_set_ioctl_fn()`: issues `ioctl(fd, request, arg)` and
/// returns its non-negative result or a negative errno (the `kvm_vm_ioctl()` convention, not
/// -1 with `errno`).
pub type mem_enc_ioctl_fn = Option<
    unsafe extern "C" fn(
        opaque: *mut c_void,
        fd: c_int,
        request: c_ulong,
        arg: *mut c_void,
    ) -> c_int,
>;

struct CIoctl {
    func: unsafe extern "C" fn(*mut c_void, c_int, c_ulong, *mut c_void) -> c_int,
    /// The caller's opaque pointer, only ever handed back to `func`.
    opaque: usize,
}

impl Host for CIoctl {
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
        // SAFETY: the installer promised a callback that issues the ioctl it is given; `arg`
        // is valid for `request` (this function's contract, the same as a raw ioctl's).
        let r = unsafe {
            (self.func)(
                self.opaque as *mut c_void,
                fd,
                request as c_ulong,
                arg as usize as *mut c_void,
            )
        };
        if r < 0 {
            Err(Errno(r.wrapping_neg()))
        } else {
            Ok(r)
        }
    }
}

/// Routes every ioctl memenc issues from now on through "ioctl_fn" instead of libc's `ioctl()`.
/// QEMU passes a function that calls `kvm_vm_ioctl()` or `kvm_vcpu_ioctl()` for the
/// descriptor, so memenc's commands show in its trace events and wait for memslot updates like
/// its own.
///
/// Arguments:
///  "ioctl_fn" - `int fn(void *opaque, int fd, unsigned long request, void *arg)`: issues the
///             ioctl and returns its non-negative result or a negative errno (never -1 with
///             errno set). It must be safe to call from every thread that calls memenc.
///  "opaque"   - handed to "ioctl_fn" unchanged; memenc never dereferences it.
///
/// Returns: 0, or -EINVAL ("ioctl_fn" NULL), -EBUSY (a route is installed already: installable once
/// per process, before the first memenc call that issues an ioctl from another thread).
///
/// # Safety
/// "ioctl_fn" must behave as described for the life of the process; "opaque" must stay valid for it.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_set_ioctl_fn(
    ioctl_fn: mem_enc_ioctl_fn,
    opaque: *mut c_void,
) -> c_int {
    boundary(|| {
        let Some(func) = ioctl_fn else {
            return -libc::EINVAL;
        };
        if host::installed() {
            return -libc::EBUSY;
        }
        // One small allocation for the life of the process, at install time only.
        let route: &'static CIoctl = Box::leak(Box::new(CIoctl {
            func,
            opaque: opaque as usize,
        }));
        match host::set_host(route) {
            Ok(()) => 0,
            Err(e) => e.negated(),
        }
    })
}
