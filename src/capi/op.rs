//! C exports of the unified command: `mem_enc_op()` and the small helpers around it.

use core::ffi::{c_char, c_int};

use super::{boundary, boundary_errno_on_failure, boundary_or, status};
use crate::abi::mem_enc_cmd;
use crate::errno;
use crate::fwerr::{self, Stage};
use crate::host;
use crate::op::{self, StatusWrite};
use crate::vendor::Vendor;

/// A drop-in for `ioctl(fd, KVM_MEMORY_ENCRYPT_OP, cmd)`, with the checks the kernel leaves
/// out.
///
/// Arguments:
///  "fd"  - a KVM VM descriptor (TDX INIT_VCPU, INIT_MEM_REGION and GET_CPUID: a vCPU
///          descriptor); borrowed, never closed.
///  "cmd" - the command: a `struct mem_enc_cmd`, or the caller's own `struct kvm_sev_cmd`
///          cast to it (same 24 bytes). May be NULL: see below.
///
/// What it does, in order:
///  - reads the caller's 24 bytes once, and never reads or writes a byte outside them;
///  - refuses (-EINVAL, no ioctl) any `flags` bit that neither the kernel honours for this
///    (vendor, id) nor memenc owns (`MEM_ENC_FLAG_*`, bits 24-31). The kernel ignores SEV's
///    padding word, so without this check such a bit would silently do nothing;
///  - clears the library bits and the stale status (SEV `error`; TDX `hw_error`, which the
///    kernel refuses when non-zero) in a local copy and issues the ioctl on it;
///  - writes back only the status field: SEV `status.sev.error` (the 4 bytes at offset 16; never
///    `sev_fd`), TDX `status.hw_error`. It is written whenever the ioctl was issued, with 0 when
///    the kernel did not reach the firmware. This is the one deliberate difference from the raw
///    ioctl, which leaves an old value there. Rejected calls leave `*cmd` byte-for-byte as it was.
///
/// The CPU vendor (read once) decides whether `id` is read as a SEV or a TDX id. Ids memenc does
/// not know are passed to the kernel unchanged when `flags` is 0 (any bit: -EINVAL), so commands
/// newer than this library still work.
///
/// With `cmd` NULL it answers the kernel's probe question "does this VM have a
/// memory-encryption backend?": 0 if yes, -ENOTTY if not.
///
/// Returns: 0 on success or a negative errno, the kernel's or:
///  -EINVAL  a flag bit that is not honoured for this (vendor, id), or a reserved library bit
///  -EBADF   fd is negative (no ioctl issued)
///  -EAGAIN  MEM_ENC_FLAG_CONTINUE: the kernel stopped making progress
///  -EFAULT  MEM_ENC_FLAG_CONTINUE: the parameter struct became unreadable
///
/// errno: on failure the thread's `errno` is set to the returned error (positive), as `ioctl()`
/// would set it, memenc's own refusals included; on success it is left as it was.
///
/// Allocates no memory. Safe to call from several threads on different VMs.
///
/// # Safety
/// `cmd` must be NULL or point to 24 readable and writable bytes; `cmd->data` is handed to the
/// kernel as a raw ioctl would hand it.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_op(fd: c_int, cmd: *mut mem_enc_cmd) -> c_int {
    if cmd.is_null() {
        // The probe's EFAULT answer is a success: errno is kept by the general boundary.
        return boundary(|| {
            let r = op::encryption_enabled(fd);
            fwerr::set_last_stage(Stage::of(r.is_ok(), fd >= 0, Vendor::None, 0));
            status(r)
        });
    }
    boundary_errno_on_failure(|| {
        // SAFETY: the caller guarantees 24 readable and writable bytes at `cmd` (checked
        // non-NULL above) and a `data` it vouches for, as for the raw ioctl.
        let outcome = unsafe { op::dispatch_raw(fd, cmd) };
        let (vendor, raw) = match outcome.status {
            Some(s @ StatusWrite::SevError(_)) => (Vendor::Sev, s.raw()),
            Some(s @ StatusWrite::HwError(_)) => (Vendor::Tdx, s.raw()),
            None => (Vendor::None, 0),
        };
        let issued = outcome.status.is_some();
        fwerr::set_last_stage(Stage::of(outcome.result.is_ok(), issued, vendor, raw));
        status(outcome.result)
    })
}

/// A sentence naming the likely cause of an error memenc returned, in this domain (for example
/// -ENOTTY: "this host's KVM has no memory-encryption backend for this VM, ...").
///
/// Arguments:
///  "err" - a negative errno as memenc returns it (a positive value is read the same way).
///
/// Returns: a static NUL-terminated string; never NULL, never to be freed.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_strerror(err: c_int) -> *const c_char {
    boundary_or(c"internal error".as_ptr(), || {
        errno::describe(err.checked_abs().unwrap_or(0)).as_ptr()
    })
}

/// memenc's version, e.g. "0.2.0"; the same as the `MEM_ENC_VERSION_*` macros it was built
/// with.
///
/// Returns: a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The vendor whose command numbering this host's kernel speaks: `MEM_ENC_VENDOR_SEV` on AMD
/// (and Hygon) CPUs, `MEM_ENC_VENDOR_TDX` on Intel CPUs, `MEM_ENC_VENDOR_NONE` otherwise. Read
/// from CPUID once. This says nothing about whether the host has the feature enabled.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_host_vendor() -> u32 {
    boundary_or(0, || host::cpu_vendor().as_u32())
}

/// The `flags` bits `mem_enc_op()` accepts for a command: the bits the kernel honours for it
/// (TDX INIT_MEM_REGION: `MEM_ENC_TDX_MEASURE_MEMORY_REGION`) plus the library bits that apply
/// (`MEM_ENC_FLAG_RETRY`; `MEM_ENC_FLAG_CONTINUE` for partial-progress commands).
///
/// Arguments:
///  "vendor" - `MEM_ENC_VENDOR_SEV` or `MEM_ENC_VENDOR_TDX`.
///  "id"     - the sub-command id in that vendor's numbering.
///
/// Returns: the mask; 0 for an unknown vendor or an id memenc does not know (such ids pass
/// through `mem_enc_op()` only with `flags` 0).
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_cmd_flags_supported(vendor: u32, id: u32) -> u32 {
    boundary_or(0, || match Vendor::from_u32(vendor) {
        Some(v @ (Vendor::Sev | Vendor::Tdx)) => op::flags_supported(v, id),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn strerror_accepts_both_signs_and_extremes() {
        // SAFETY: mem_enc_strerror returns static NUL-terminated strings.
        let s = |e| unsafe { CStr::from_ptr(mem_enc_strerror(e)) }.to_str().ok();
        assert_eq!(s(-libc::ENOTTY), s(libc::ENOTTY));
        assert_eq!(s(i32::MIN), Some("success"));
        assert_eq!(s(-123456), Some("unknown error"));
    }

    #[test]
    fn version_string_matches_cargo() {
        // SAFETY: static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(mem_enc_version()) };
        assert_eq!(v.to_str().ok(), Some(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn null_command_on_a_bad_descriptor() {
        // SAFETY: NULL is allowed.
        let r = unsafe { mem_enc_op(-1, core::ptr::null_mut()) };
        assert_eq!(r, -libc::EBADF);
        assert_eq!(mem_enc_cmd_flags_supported(0, 0), 0);
        assert_eq!(mem_enc_cmd_flags_supported(7, 0), 0);
    }
}
