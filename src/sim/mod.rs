//! The simulated host: a model of the kernel's SEV/SEV-ES/SNP/TDX handlers for descriptors it
//! created. (Placeholder until the simulator lands: it owns no descriptor yet.)

use std::os::fd::RawFd;

use crate::errno::Errno;
use crate::vendor::Vendor;

/// Whether any simulated descriptor may be alive; the real path checks only this.
#[inline]
pub fn active() -> bool {
    false
}

/// The vendor of a simulated descriptor, `None` for descriptors the simulator does not own.
pub fn vendor_of(_fd: RawFd) -> Option<Vendor> {
    None
}

/// Handles `ioctl(fd, request, arg)` when `fd` is simulated; `None` otherwise.
///
/// # Safety
/// As [`crate::host::ioctl`].
pub unsafe fn ioctl(_fd: RawFd, _request: u64, _arg: u64) -> Option<Result<i32, Errno>> {
    None
}
