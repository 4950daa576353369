//! Unified dispatch of `KVM_MEMORY_ENCRYPT_OP`: validate the caller's flags against the vendor
//! table, strip the library-owned bits, clear the stale status, issue the ioctl on a local copy
//! (retrying or continuing when asked), and say which status field to hand back.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::abi::{
    MEM_ENC_FLAG_CONTINUE, MEM_ENC_FLAG_RETRY, MEM_ENC_FLAGS_LIBRARY_KNOWN,
    MEM_ENC_FLAGS_LIBRARY_MASK, MEM_ENC_RETRY_LIMIT, mem_enc_cmd,
};
use crate::errno::Errno;
use crate::host;
use crate::trace;
use crate::uapi::KVM_MEMORY_ENCRYPT_OP;
use crate::vendor::{CmdInfo, Progress, Vendor};

/// The status field the kernel's answer goes back into, with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// SEV: the 4-byte `error`; `sev_fd` beside it is the caller's and stays untouched.
    SevError(u32),
    /// TDX: the 8-byte `hw_error`.
    HwError(u64),
}

/// The result of one `mem_enc_op`: the return value, and the status to write back (`None`
/// when memenc rejected the command and issued no ioctl: the caller's struct stays as it was).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `Ok` or the errno of the last ioctl (or of memenc's own check).
    pub result: Result<(), Errno>,
    /// What to write back into the caller's status word.
    pub status: Option<StatusWrite>,
}

impl Outcome {
    fn rejected(errno: i32) -> Outcome {
        Outcome {
            result: Err(Errno(errno)),
            status: None,
        }
    }
}

/// Checks `flags` for `(vendor, id)`; returns the bits to hand to the kernel and the library
/// bits to act on. `-EINVAL` for any bit that is neither.
pub fn split_flags(info: Option<&CmdInfo>, flags: u32) -> Result<(u32, u32), Errno> {
    let library = flags & MEM_ENC_FLAGS_LIBRARY_MASK;
    let kernel = flags & !MEM_ENC_FLAGS_LIBRARY_MASK;
    let kernel_ok = info.map_or(0, |c| c.kernel_flags);
    let continue_ok = info.is_some_and(|c| c.progress != Progress::None);
    if (info.is_none() && flags != 0)
        || library & !MEM_ENC_FLAGS_LIBRARY_KNOWN != 0
        || kernel & !kernel_ok != 0
        || (library & MEM_ENC_FLAG_CONTINUE != 0 && !continue_ok)
    {
        return Err(Errno(libc::EINVAL));
    }
    Ok((kernel, library))
}

/// The `flags` bits accepted for `(vendor, id)`: the kernel's and the library's.
pub fn flags_supported(vendor: Vendor, id: u32) -> u32 {
    // An id memenc does not know passes through only with flags 0: it cannot know which
    // errors of an unknown command are safe to retry.
    let Some(info) = vendor.command(id) else {
        return 0;
    };
    let mut bits = info.kernel_flags | MEM_ENC_FLAG_RETRY;
    if info.progress != Progress::None {
        bits |= MEM_ENC_FLAG_CONTINUE;
    }
    bits
}

/// One `KVM_MEMORY_ENCRYPT_OP` on `fd` for the caller's command `input` (never modified: the
/// ioctl runs on a local copy). Allocates nothing.
///
/// Always inlined: with flags 0 (every legacy caller: nothing to validate, retry or continue,
/// so no table lookup) the whole path, system call included, sits in the caller's frame. Any
/// flag takes the out-of-line [`dispatch_flagged`].
#[inline(always)]
pub fn dispatch(fd: RawFd, input: &mem_enc_cmd) -> Outcome {
    dispatch_limited(fd, input, None)
}

/// `mem_enc_op` on the caller's own 24 bytes at `cmd` (any alignment). A command without flags
/// goes to the kernel in place, as a raw ioctl would: memenc clears the stale status field
/// first, and the kernel copies back exactly the bytes it read with the new status, so no local
/// copy and no write-back are needed. A command with flags (validation, retries, CONTINUE) is
/// worked on a local copy and only its status field is written back.
///
/// # Safety
/// `cmd` points to 24 readable and writable bytes; `data` is handed to the kernel as a raw
/// ioctl would hand it.
#[inline(always)]
pub unsafe fn dispatch_raw(fd: RawFd, cmd: *mut mem_enc_cmd) -> Outcome {
    // SAFETY: the caller guarantees 24 readable bytes at `cmd`; `flags` is inside them.
    let flags = unsafe { ptr::read_unaligned(ptr::addr_of!((*cmd).flags)) };
    if flags != 0 || fd < 0 {
        // SAFETY: as above, the whole command, read once.
        let input = unsafe { ptr::read_unaligned(cmd) };
        let outcome = dispatch(fd, &input);
        // SAFETY: the caller guarantees 24 writable bytes; each write covers only the status
        // field the kernel writes, at its offset inside them.
        unsafe {
            match outcome.status {
                Some(StatusWrite::SevError(e)) => {
                    ptr::write_unaligned(ptr::addr_of_mut!((*cmd).status.sev.error), e)
                }
                Some(StatusWrite::HwError(hw)) => {
                    ptr::write_unaligned(ptr::addr_of_mut!((*cmd).status.hw_error), hw)
                }
                None => {}
            }
        }
        return outcome;
    }
    let vendor = host::vendor_of(fd);
    // SAFETY: the status field lies inside the caller's 24 writable bytes.
    unsafe {
        match vendor {
            Vendor::Tdx => ptr::write_unaligned(ptr::addr_of_mut!((*cmd).status.hw_error), 0),
            Vendor::Sev | Vendor::None => {
                ptr::write_unaligned(ptr::addr_of_mut!((*cmd).status.sev.error), 0)
            }
        }
    }
    let traced = trace::start();
    // SAFETY: `cmd` is the caller's valid 24-byte command and `data` its parameter address,
    // which the kernel validates exactly as for the caller's own ioctl.
    let raw = unsafe { host::ioctl(fd, KVM_MEMORY_ENCRYPT_OP, cmd as u64) };
    // SAFETY: as above; the kernel has just written the status field (or left it cleared).
    let status = unsafe {
        match vendor {
            Vendor::Tdx => {
                StatusWrite::HwError(ptr::read_unaligned(ptr::addr_of!((*cmd).status.hw_error)))
            }
            Vendor::Sev | Vendor::None => {
                StatusWrite::SevError(ptr::read_unaligned(ptr::addr_of!((*cmd).status.sev.error)))
            }
        }
    };
    if let Some(started) = traced {
        // SAFETY: as above, the id field.
        let id = unsafe { ptr::read_unaligned(ptr::addr_of!((*cmd).id)) };
        host::keep_errno(|| trace::finish(started, fd, vendor, id, raw, status.raw()));
    }
    Outcome {
        result: raw.map(|_| ()),
        status: Some(status),
    }
}

/// [`dispatch`] with this call's own bound on re-issues (transient errors, CONTINUE rounds
/// without progress) instead of the process-wide [`retry_limit`].
#[inline(always)]
pub fn dispatch_limited(fd: RawFd, input: &mem_enc_cmd, limit: Option<u32>) -> Outcome {
    if fd < 0 {
        return Outcome::rejected(libc::EBADF);
    }
    let vendor = host::vendor_of(fd);
    if input.flags != 0 {
        // Retries and CONTINUE rounds may fail on the way to a success: errno is kept there.
        let outcome = host::keep_errno(|| dispatch_flagged(fd, vendor, input, limit));
        return outcome;
    }
    let mut local = *input;
    let result = issue(fd, vendor, &mut local).map(|_| ());
    Outcome {
        result,
        status: Some(status_of(vendor, &local)),
    }
}

/// [`dispatch`] for a command with flags: validated against the vendor table, then issued once
/// or, under `MEM_ENC_FLAG_RETRY` / `MEM_ENC_FLAG_CONTINUE`, as often as those allow.
#[inline(never)]
fn dispatch_flagged(fd: RawFd, vendor: Vendor, input: &mem_enc_cmd, limit: Option<u32>) -> Outcome {
    let info = vendor.command(input.id);
    let (kernel_flags, library_flags) = match split_flags(info, input.flags) {
        Ok(split) => split,
        Err(e) => return Outcome::rejected(e.0),
    };
    let mut local = *input;
    local.flags = kernel_flags;

    // Only the RETRY and CONTINUE loops spend the budget.
    let mut budget = if library_flags != 0 {
        limit.unwrap_or_else(retry_limit)
    } else {
        0
    };
    let mut last_remaining = u64::MAX;
    loop {
        let result = issue(fd, vendor, &mut local).map(|_| ());
        let next = match (result, info) {
            (Ok(()), Some(c)) if library_flags & MEM_ENC_FLAG_CONTINUE != 0 => {
                continue_after_success(c, &local, &mut last_remaining, &mut budget)
            }
            (Err(e), Some(c)) if library_flags & MEM_ENC_FLAG_RETRY != 0 => {
                retry_after_error(c, e, &mut budget)
            }
            _ => Next::Stop(result),
        };
        match next {
            Next::Again => continue,
            Next::Stop(result) => {
                return Outcome {
                    result,
                    status: Some(status_of(vendor, &local)),
                };
            }
        }
    }
}

/// Issues `cmd` (already checked) once: clears its stale status, calls the host, and reports
/// to the trace hook when one is set.
#[inline(always)]
fn issue(fd: RawFd, vendor: Vendor, cmd: &mut mem_enc_cmd) -> Result<i32, Errno> {
    clear_status(vendor, cmd);
    let traced = trace::start();
    // SAFETY: `cmd` is a valid 24-byte command; `data` is the caller's parameter address,
    // which the kernel (or the model) validates exactly as for the caller's own ioctl.
    let raw = unsafe { host::ioctl(fd, KVM_MEMORY_ENCRYPT_OP, cmd as *mut mem_enc_cmd as u64) };
    if let Some(started) = traced {
        // The caller's hook may touch errno; the export's errno rule is kept for it.
        host::keep_errno(|| {
            trace::finish(
                started,
                fd,
                vendor,
                cmd.id,
                raw,
                status_of(vendor, cmd).raw(),
            )
        });
    }
    raw
}

/// How many times a command is re-issued after a transient error (and how many rounds without
/// progress `MEM_ENC_FLAG_CONTINUE` accepts); `MEM_ENC_RETRY_LIMIT` until changed.
static RETRY_LIMIT: AtomicU32 = AtomicU32::new(MEM_ENC_RETRY_LIMIT);

/// The current retry limit.
pub fn retry_limit() -> u32 {
    RETRY_LIMIT.load(Ordering::Relaxed)
}

/// Sets the retry limit for every later command (process-wide); returns the previous one.
pub fn set_retry_limit(limit: u32) -> u32 {
    RETRY_LIMIT.swap(limit, Ordering::Relaxed)
}

enum Next {
    Again,
    Stop(Result<(), Errno>),
}

/// After a successful partial-progress command under `MEM_ENC_FLAG_CONTINUE`: issue again
/// while the remaining count shrinks; `-EAGAIN` if it stops shrinking for too many rounds.
fn continue_after_success(
    info: &CmdInfo,
    cmd: &mem_enc_cmd,
    last_remaining: &mut u64,
    budget: &mut u32,
) -> Next {
    let Progress::RemainingAt(offset) = info.progress else {
        return Next::Stop(Ok(()));
    };
    // A plain load from the caller's own parameter struct: the kernel (or the installed
    // host) has just read and written it successfully, and the caller vouched for it as for
    // the raw ioctl (`data` valid for the command's struct for the whole call). No system call
    // (no process_vm_readv: seccomp-sandboxed VMMs do not allow it).
    let addr = cmd.data.wrapping_add(offset as u64) as usize as *const u64;
    if addr.is_null() {
        return Next::Stop(Err(Errno(libc::EFAULT)));
    }
    // SAFETY: `data` points at the command's parameter struct, which the caller guarantees is
    // valid for reads for the whole call (the contract of `mem_enc_op` and of every typed
    // helper, which pass their own stack struct); `offset + 8` lies inside that struct (a
    // vendor-table invariant, unit-tested). Any alignment.
    let remaining = unsafe { core::ptr::read_unaligned(addr) };
    if remaining == 0 {
        return Next::Stop(Ok(()));
    }
    if remaining >= *last_remaining {
        if *budget == 0 {
            return Next::Stop(Err(Errno(libc::EAGAIN)));
        }
        *budget -= 1;
    }
    *last_remaining = remaining;
    Next::Again
}

/// After an error under `MEM_ENC_FLAG_RETRY`: issue again if the command documents the error
/// as transient and the retry budget is not spent.
fn retry_after_error(info: &CmdInfo, errno: Errno, budget: &mut u32) -> Next {
    if *budget > 0 && info.transient.contains(&errno.0) {
        *budget -= 1;
        Next::Again
    } else {
        Next::Stop(Err(errno))
    }
}

/// Before every issue: SEV's `error` is left as it was when the firmware is never reached, so
/// it starts at 0; TDX rejects a non-zero `hw_error`.
fn clear_status(vendor: Vendor, cmd: &mut mem_enc_cmd) {
    match vendor {
        Vendor::Tdx => cmd.status.hw_error = 0,
        Vendor::Sev | Vendor::None => {
            let mut sev = cmd.sev();
            sev.error = 0;
            cmd.status.sev = sev;
        }
    }
}

impl StatusWrite {
    /// The status as a 64-bit value.
    pub fn raw(self) -> u64 {
        match self {
            StatusWrite::SevError(e) => u64::from(e),
            StatusWrite::HwError(h) => h,
        }
    }
}

fn status_of(vendor: Vendor, cmd: &mem_enc_cmd) -> StatusWrite {
    match vendor {
        Vendor::Tdx => StatusWrite::HwError(cmd.hw_error()),
        Vendor::Sev | Vendor::None => StatusWrite::SevError(cmd.sev().error),
    }
}

/// The kernel's NULL-argument question: does `fd` belong to a VM with a memory-encryption
/// backend? SEV answers 0 or -ENOTTY itself; TDX (and SEV before 6.10) have no NULL case and
/// fault on the NULL copy, which still proves the backend is there.
pub fn encryption_enabled(fd: RawFd) -> Result<(), Errno> {
    if fd < 0 {
        return Err(Errno(libc::EBADF));
    }
    match host::null_probe(fd) {
        Ok(_) | Err(Errno(libc::EFAULT)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies an outcome's status write to a Rust-side command.
pub fn apply_status(cmd: &mut mem_enc_cmd, status: Option<StatusWrite>) {
    match status {
        Some(StatusWrite::SevError(error)) => {
            let mut sev = cmd.sev();
            sev.error = error;
            cmd.status.sev = sev;
        }
        Some(StatusWrite::HwError(hw)) => cmd.status.hw_error = hw,
        None => {}
    }
}

/// `KVM_MEMORY_ENCRYPT_OP` for Rust VMMs: the same checks and semantics as the C
/// `mem_enc_op()`. `fd` is borrowed; on `Err`, the status word in `cmd` still holds the
/// firmware's answer when the ioctl was issued.
pub fn memory_encrypt_op(fd: BorrowedFd<'_>, cmd: &mut mem_enc_cmd) -> Result<(), Errno> {
    let outcome = dispatch(fd.as_raw_fd(), cmd);
    apply_status(cmd, outcome.status);
    outcome.result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::MEM_ENC_TDX_MEASURE_MEMORY_REGION;
    use crate::uapi::{sev_id, tdx_id};

    #[test]
    fn sev_accepts_only_library_flags() {
        assert_eq!(
            split_flags(Vendor::Sev.command(sev_id::INIT2), 0),
            Ok((0, 0))
        );
        assert_eq!(
            split_flags(Vendor::Sev.command(sev_id::INIT2), MEM_ENC_FLAG_RETRY),
            Ok((0, MEM_ENC_FLAG_RETRY))
        );
        assert_eq!(
            split_flags(Vendor::Sev.command(sev_id::INIT2), 1),
            Err(Errno(libc::EINVAL))
        );
        // A reserved library bit is refused, not ignored.
        assert_eq!(
            split_flags(Vendor::Sev.command(sev_id::INIT2), 0x0100_0000),
            Err(Errno(libc::EINVAL))
        );
        // CONTINUE only where the kernel makes partial progress.
        assert_eq!(
            split_flags(Vendor::Sev.command(sev_id::INIT2), MEM_ENC_FLAG_CONTINUE),
            Err(Errno(libc::EINVAL))
        );
        assert!(
            split_flags(
                Vendor::Sev.command(sev_id::SNP_LAUNCH_UPDATE),
                MEM_ENC_FLAG_CONTINUE
            )
            .is_ok()
        );
    }

    #[test]
    fn tdx_measure_flag_only_on_init_mem_region() {
        let m = MEM_ENC_TDX_MEASURE_MEMORY_REGION;
        assert_eq!(
            split_flags(Vendor::Tdx.command(tdx_id::INIT_MEM_REGION), m),
            Ok((m, 0))
        );
        assert_eq!(
            split_flags(Vendor::Tdx.command(tdx_id::INIT_VM), m),
            Err(Errno(libc::EINVAL))
        );
        assert_eq!(
            split_flags(Vendor::Tdx.command(tdx_id::FINALIZE_VM), m),
            Err(Errno(libc::EINVAL))
        );
        // The same id number means a different command on SEV, where bit 0 is not honoured.
        assert_eq!(
            split_flags(Vendor::Sev.command(3), m),
            Err(Errno(libc::EINVAL))
        );
    }

    #[test]
    fn unknown_ids_pass_only_without_kernel_flags() {
        assert_eq!(split_flags(Vendor::Sev.command(999), 0), Ok((0, 0)));
        assert_eq!(
            split_flags(Vendor::Sev.command(999), 2),
            Err(Errno(libc::EINVAL))
        );
        assert_eq!(flags_supported(Vendor::Sev, 999), 0);
        assert_eq!(
            split_flags(Vendor::Sev.command(999), MEM_ENC_FLAG_RETRY),
            Err(Errno(libc::EINVAL))
        );
        assert_eq!(
            flags_supported(Vendor::Tdx, tdx_id::INIT_MEM_REGION),
            MEM_ENC_TDX_MEASURE_MEMORY_REGION | MEM_ENC_FLAG_RETRY | MEM_ENC_FLAG_CONTINUE
        );
    }

    #[test]
    fn rejected_commands_issue_nothing_and_write_nothing() {
        let cmd = mem_enc_cmd {
            flags: 0x0000_0100,
            ..mem_enc_cmd::new(sev_id::INIT2, 0)
        };
        // A closed descriptor would give EBADF if an ioctl were issued; EINVAL proves none was.
        let out = dispatch(1_000_000, &cmd);
        assert_eq!(out, Outcome::rejected(libc::EINVAL));
        assert_eq!(dispatch(-1, &cmd), Outcome::rejected(libc::EBADF));
    }

    #[test]
    fn clearing_keeps_sev_fd() {
        let mut cmd = mem_enc_cmd::new(2, 0);
        cmd.status.sev = crate::abi::mem_enc_sev_status {
            error: 9,
            sev_fd: 5,
        };
        clear_status(Vendor::Sev, &mut cmd);
        assert_eq!(cmd.sev().error, 0);
        assert_eq!(cmd.sev().sev_fd, 5);
        clear_status(Vendor::Tdx, &mut cmd);
        assert_eq!(cmd.hw_error(), 0);
    }
}
