//! Typed helpers: one function per `KVM_MEMORY_ENCRYPT_OP` sub-command (and the memory steps a
//! launch needs), for Rust VMMs in the style of kvm-ioctls (borrowed descriptors, `Result`), and
//! the core the C exports in [`crate::capi`] call.
//!
//! What the kernel leaves to the caller is done here once: the firmware status is cleared before
//! and reported after every command; length queries are issued and answered; partial-progress
//! commands loop until done and report how far they got; transient errors are retried a bounded
//! number of times (both through [`crate::op::dispatch`], never a second loop); invariants (SNP
//! policy bit 17, no SNP_ACTIVE in INIT2, zero reserved fields) are filled in; buffers memenc
//! allocates for secrets or measurements are zeroised when dropped.

pub mod mem;
pub mod sev;
pub mod snp;
pub mod tdx;
pub mod vm;

use core::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::abi::{MEM_ENC_FLAG_RETRY, mem_enc_cmd, mem_enc_cmd_status, mem_enc_sev_status};
use crate::errno::Errno;
use crate::fwerr::{self, Stage};
use crate::host;
use crate::op;
use crate::vendor::Vendor;

/// Why a helper failed: the errno, the firmware status (when an ioctl was issued), the stage
/// that refused the command, and for partial-progress commands how far it got.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    /// The kernel's name of the command, e.g. `KVM_SEV_LAUNCH_START`.
    pub command: &'static str,
    /// The vendor whose status numbering `status` uses.
    pub vendor: Vendor,
    /// The error.
    pub errno: Errno,
    /// The firmware status the kernel reported (SEV `error`, TDX `hw_error`), `None` when no
    /// ioctl was issued.
    pub status: Option<u64>,
    /// Who refused the command.
    pub stage: Stage,
    /// Partial-progress commands: the first GFN (SNP_LAUNCH_UPDATE) or GPA (TDX
    /// INIT_MEM_REGION) not processed.
    pub reached: Option<u64>,
}

/// The helpers' result type.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    /// An error memenc found itself, before issuing any ioctl.
    pub fn rejected(command: &'static str, vendor: Vendor, errno: i32) -> Error {
        Error {
            command,
            vendor,
            errno: Errno(errno),
            status: None,
            stage: Stage::Memenc,
            reached: None,
        }
    }

    /// An ioctl that failed with `errno` and reported `status`.
    pub fn issued(command: &'static str, vendor: Vendor, errno: Errno, status: u64) -> Error {
        Error {
            command,
            vendor,
            errno,
            status: Some(status),
            stage: Stage::of(false, true, vendor, status),
            reached: None,
        }
    }

    /// The name and meaning of the firmware status, when there is one.
    pub fn firmware(&self) -> Option<String> {
        self.status
            .filter(|&s| s != 0)
            .map(|s| fwerr::describe_string(self.vendor.as_u32(), s))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (stopped by {})",
            self.command,
            self.errno,
            self.stage.name()
        )?;
        if let Some(fw) = self.firmware() {
            write!(f, "; firmware: {fw}")?;
        }
        if let Some(r) = self.reached {
            write!(f, "; reached {r:#x}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The kernel's name of a command, for errors.
pub(crate) fn name(vendor: Vendor, id: u32) -> &'static str {
    vendor.command(id).map_or("unknown command", |c| c.name)
}

/// The address of a parameter struct, as `data` carries it.
pub(crate) fn data_of<T>(t: &mut T) -> u64 {
    t as *mut T as u64
}

/// One `KVM_MEMORY_ENCRYPT_OP` through [`op::dispatch`]: `vendor` numbering checked against the
/// descriptor's host first (an id of the other vendor would mean another command), transient
/// errors retried up to the configured limit, `flags` may add `MEM_ENC_FLAG_CONTINUE` and kernel
/// bits. `sev_fd` goes in the status word for the SEV commands that read it.
pub(crate) fn issue(
    fd: BorrowedFd<'_>,
    vendor: Vendor,
    id: u32,
    flags: u32,
    data: u64,
    sev_fd: Option<BorrowedFd<'_>>,
) -> Result<()> {
    issue_limited(fd, vendor, id, flags, data, sev_fd, None)
}

/// [`issue`] with this call's own re-issue bound (`None`: the process-wide limit).
pub(crate) fn issue_limited(
    fd: BorrowedFd<'_>,
    vendor: Vendor,
    id: u32,
    flags: u32,
    data: u64,
    sev_fd: Option<BorrowedFd<'_>>,
    limit: Option<u32>,
) -> Result<()> {
    let command = name(vendor, id);
    let raw = fd.as_raw_fd();
    if host::vendor_of(raw) != vendor {
        // Not this vendor's host: the kernel has no such backend (and would read the id as a
        // different command).
        return Err(Error::rejected(command, vendor, libc::ENOTTY));
    }
    let status = match sev_fd {
        Some(s) => mem_enc_cmd_status {
            sev: mem_enc_sev_status {
                error: 0,
                sev_fd: s.as_raw_fd() as u32,
            },
        },
        None => mem_enc_cmd_status { hw_error: 0 },
    };
    let cmd = mem_enc_cmd {
        id,
        flags: flags | MEM_ENC_FLAG_RETRY,
        data,
        status,
    };
    let outcome = op::dispatch_limited(raw, &cmd, limit);
    match (outcome.result, outcome.status) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(st)) => Err(Error::issued(command, vendor, e, st.raw())),
        (Err(e), None) => Err(Error::rejected(command, vendor, e.0)),
    }
}

/// Issues a KVM ioctl other than `KVM_MEMORY_ENCRYPT_OP` whose argument is a struct; errors
/// carry the ioctl's name and stage "kvm" (no firmware is involved).
pub(crate) fn kvm_ioctl<T>(
    fd: BorrowedFd<'_>,
    command: &'static str,
    request: u64,
    arg: &mut T,
) -> Result<i32> {
    // SAFETY: `arg` is the struct `request` is defined with (every caller names the pair),
    // alive and exclusively borrowed for the call.
    unsafe { host::ioctl(fd.as_raw_fd(), request, arg as *mut T as u64) }
        .map_err(|e| Error::issued(command, Vendor::None, e, 0))
}

/// [`kvm_ioctl`] for the requests whose argument is an immediate value (`_IO` ioctls:
/// KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_SET_TSC_KHZ), never a pointer.
pub(crate) fn kvm_ioctl_value(
    fd: BorrowedFd<'_>,
    command: &'static str,
    request: u64,
    value: u64,
) -> Result<i32> {
    // SAFETY: the request takes an immediate (the callers pass only `_IO` requests), so the
    // kernel dereferences nothing.
    unsafe { host::ioctl(fd.as_raw_fd(), request, value) }
        .map_err(|e| Error::issued(command, Vendor::None, e, 0))
}

/// A kernel `u32` length from a Rust length: `-EINVAL` when it does not fit.
pub(crate) fn len32(command: &'static str, vendor: Vendor, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| Error::rejected(command, vendor, libc::EINVAL))
}

/// A blob's address for the kernel: 0 for an empty blob (the kernel then skips it).
pub(crate) fn addr_of(blob: &[u8]) -> u64 {
    if blob.is_empty() {
        0
    } else {
        blob.as_ptr() as u64
    }
}

/// The current retry limit (see [`op::set_retry_limit`]).
pub fn retry_limit() -> u32 {
    op::retry_limit()
}

/// Sets the process-wide retry limit; returns the previous one.
pub fn set_retry_limit(limit: u32) -> u32 {
    op::set_retry_limit(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_command_stage_and_firmware() {
        let e = Error::issued("KVM_SEV_LAUNCH_START", Vendor::Sev, Errno(libc::EIO), 2);
        let s = e.to_string();
        assert!(s.contains("KVM_SEV_LAUNCH_START"), "{s}");
        assert!(s.contains("stopped by firmware"), "{s}");
        assert!(s.contains("SEV_RET_INVALID_GUEST_STATE"), "{s}");
        let e = Error::issued("KVM_SEV_INIT2", Vendor::Sev, Errno(libc::EINVAL), 0);
        assert_eq!(e.stage, Stage::Kvm);
        assert!(e.firmware().is_none());
        let e = Error::rejected("KVM_SEV_INIT2", Vendor::Sev, libc::EINVAL);
        assert_eq!((e.stage, e.status), (Stage::Memenc, None));
    }
}
