//! C exports of the host probe and of negotiation. Their growing structs are copied with the
//! kernel's `copy_struct_from_user` / `copy_struct_to_user` rules (src/capi/args.rs), except that
//! a NULL struct pointer is `-EINVAL` here, as these exports have always documented.

use core::ffi::{c_char, c_int};
use core::ptr;

use super::args::{ArgsStruct, check_struct_out, copy_struct_from_user, copy_struct_to_user};
use super::boundary;
use crate::errno::Errno;
use crate::negotiate::{
    self, MEM_ENC_LAUNCH_REQUEST_SIZE_VER0, MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0,
    mem_enc_launch_request, mem_enc_launch_settings,
};
use crate::probe::{self, MEM_ENC_CAPS_SIZE_MAX, MEM_ENC_CAPS_SIZE_VER0, mem_enc_caps};

// SAFETY: all three are repr(C) structs of u32/i32/u64 fields laid out without padding (size
// asserts in their modules).
unsafe impl ArgsStruct for mem_enc_caps {
    const SIZE_VER0: usize = MEM_ENC_CAPS_SIZE_VER0 as usize;
}
// SAFETY: as above.
unsafe impl ArgsStruct for mem_enc_launch_request {
    const SIZE_VER0: usize = MEM_ENC_LAUNCH_REQUEST_SIZE_VER0 as usize;
}
// SAFETY: as above.
unsafe impl ArgsStruct for mem_enc_launch_settings {
    const SIZE_VER0: usize = MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0 as usize;
}
const _: () = assert!(MEM_ENC_CAPS_SIZE_MAX as usize == super::args::ARGS_SIZE_MAX);

/// Copies `msg` into `buf` (`len` bytes), truncated on a UTF-8 boundary and NUL-terminated.
///
/// # Safety
/// `buf` must be NULL or valid for writing `len` bytes.
unsafe fn copy_message(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let mut n = msg.len().min(len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller guarantees `len` writable bytes; n + 1 <= len.
    unsafe {
        ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Probes this host's support for confidential VMs: CPU vendor, KVM API version, VM types,
/// SEV VMSA features / SNP policy bits / REQ_CERTS / INIT2 (device attributes on /dev/kvm), the
/// NULL-probe answer on a scratch default VM (AMD), `KVM_TDX_CAPABILITIES` on a scratch TDX VM
/// (when VM type TDX exists), guest_memfd and memory attributes. Each fact has a status
/// (`MEM_ENC_CAP_*`) telling known values from "not available on this host" and "not supported
/// by this kernel". Scratch VMs are closed before return.
///
/// Arguments:
///  "kvm_fd"    - an open /dev/kvm descriptor (borrowed, never closed; it may be a simulated
///                one), or -1 to open /dev/kvm (read-write, close-on-exec; closed again).
///  "caps"      - where the answer goes.
///  "caps_size" - sizeof(*caps) as the caller knows it, at least `MEM_ENC_CAPS_SIZE_VER0`. A
///                smaller struct than this library's gets the prefix; a larger one a zeroed tail.
///
/// Cached per host (the device number of /dev/kvm, or the inode of another descriptor; never
/// the descriptor number): with kvm_fd -1 a cached answer costs no system call, with a caller
/// descriptor one fstat(). Simulated descriptors are never cached. Thread-safe and lock-free,
/// so safe in a child after fork(). `mem_enc_probe_invalidate()` forgets the cache.
///
/// Returns: 0 (`*caps` written), or a negative errno (`*caps` untouched):
///  -EINVAL  caps is NULL, or caps_size < MEM_ENC_CAPS_SIZE_VER0
///  -E2BIG   caps_size > MEM_ENC_CAPS_SIZE_MAX
///  -EBADF   kvm_fd is negative but not -1, or not open
///  -ENOTTY  kvm_fd is not a /dev/kvm descriptor
///  -ENOENT, -EACCES, ...  opening /dev/kvm failed (kvm_fd -1)
///
/// # Safety
/// `caps` must be NULL or valid for writing `caps_size` bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_probe(
    kvm_fd: c_int,
    caps: *mut mem_enc_caps,
    caps_size: usize,
) -> c_int {
    boundary(|| {
        if caps.is_null() {
            return -libc::EINVAL;
        }
        let result = check_struct_out(caps, caps_size).and_then(|()| match kvm_fd {
            -1 => probe::probe_default(),
            fd => probe::probe_fd(fd),
        });
        // SAFETY: the caller guarantees `caps_size` writable bytes at `caps` (size checked).
        let written =
            result.and_then(|answer| unsafe { copy_struct_to_user(caps, caps_size, &answer) });
        super::status(written)
    })
}

/// Forgets every cached probe answer, so the next `mem_enc_probe()` asks the kernel again (for
/// tests, or after a KVM module was reloaded with other parameters).
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_probe_invalidate() {
    let _ = boundary(|| {
        probe::invalidate_cache();
        0
    });
}

/// The capabilities a negotiation works on: the caller's, or this host's (cached probe).
///
/// # Safety
/// `caps` must be NULL or valid for reading `caps_size` bytes.
unsafe fn caps_from(caps: *const mem_enc_caps, caps_size: usize) -> Result<mem_enc_caps, Errno> {
    if caps.is_null() {
        return probe::probe_default();
    }
    // SAFETY: forwarded from the caller.
    unsafe { copy_struct_from_user(caps, caps_size) }
}

/// Negotiates a whole launch: the VM type, then every setting that applies to it (GHCB
/// version, vmsa_features, SEV/SEV-ES or SNP policy; or TDX attributes and XFAM). `*out`
/// states every setting that changes the launch measurement (legacy vs INIT2 path,
/// vmsa_features, ghcb_version, policy; TDX attributes and xfam), so a guest owner can compute
/// the expected digest.
/// Command flags are per command: see `mem_enc_cmd_flags_supported()`.
///
/// Arguments:
///  "caps", "caps_size" - as for `mem_enc_negotiate_vm_type()`.
///  "req", "req_size"   - the request; at least `MEM_ENC_LAUNCH_REQUEST_SIZE_VER0` bytes
///                        (`sizeof`, `MEM_ENC_LAUNCH_REQUEST_SIZE_VER1`, to pass `sev_policy`),
///                        a larger one with an all-zero tail.
///  "out", "out_size"   - the settings; at least `MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0` bytes
///                        (`MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1` to receive `sev_policy`; a larger
///                        struct gets a zeroed tail). Written only on success.
///  "msg", "msg_len"    - optional (NULL, 0): a NUL-terminated sentence, the plan on success or
///                        the reason on a refusal.
///
/// Returns: 0, -EOPNOTSUPP (something required is not supported here; `msg` names it),
/// -EINVAL (an invalid request, a NULL pointer or a too small size), -E2BIG (a non-zero tail
/// in caps or req, or a size above 4096).
///
/// # Safety
/// `caps` NULL or `caps_size` readable bytes; `req` `req_size` readable bytes; `out`
/// `out_size` writable bytes; `msg` NULL or `msg_len` writable bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_launch(
    caps: *const mem_enc_caps,
    caps_size: usize,
    req: *const mem_enc_launch_request,
    req_size: usize,
    out: *mut mem_enc_launch_settings,
    out_size: usize,
    msg: *mut c_char,
    msg_len: usize,
) -> c_int {
    boundary(|| {
        if out.is_null() || req.is_null() {
            return -libc::EINVAL;
        }
        let inputs = check_struct_out(out, out_size).and_then(|()| {
            // SAFETY: forwarded from the caller.
            let request = unsafe { copy_struct_from_user(req, req_size) }?;
            // SAFETY: forwarded from the caller.
            Ok((unsafe { caps_from(caps, caps_size) }?, request))
        });
        let (caps, request) = match inputs {
            Ok(v) => v,
            Err(e) => return e.negated(),
        };
        let (ret, message) = match negotiate::launch(&caps, &request) {
            Ok((settings, note)) => {
                // SAFETY: the caller guarantees `out_size` writable bytes at `out` (checked
                // above, so this cannot fail).
                let _ = unsafe { copy_struct_to_user(out, out_size, &settings) };
                (0, note)
            }
            Err(r) => (r.errno.negated(), r.message),
        };
        // SAFETY: the caller guarantees `msg` is NULL or `msg_len` writable bytes.
        unsafe { copy_message(msg, msg_len, &message) };
        ret
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_truncated_on_character_boundaries() {
        let mut buf = [0x7f as c_char; 8];
        // SAFETY: 8 writable bytes.
        unsafe { copy_message(buf.as_mut_ptr(), 5, "abcdefg") };
        assert_eq!(&buf[..6], &[97, 98, 99, 100, 0, 0x7f]);
        // "é" is two bytes: it must not be cut in half.
        // SAFETY: as above.
        unsafe { copy_message(buf.as_mut_ptr(), 3, "aé") };
        assert_eq!(&buf[..2], &[97, 0]);
        // SAFETY: NULL and 0 are accepted and write nothing.
        unsafe { copy_message(ptr::null_mut(), 10, "x") };
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut caps = mem_enc_caps::default();
        // SAFETY: NULL and sizes are checked before any access.
        unsafe {
            assert_eq!(mem_enc_probe(-1, ptr::null_mut(), 192), -libc::EINVAL);
            assert_eq!(mem_enc_probe(-1, &mut caps, 100), -libc::EINVAL);
            assert_eq!(mem_enc_probe(-1, &mut caps, 8192), -libc::E2BIG);
            assert_eq!(mem_enc_probe(-7, &mut caps, 192), -libc::EBADF);
        }
        assert_eq!(caps, mem_enc_caps::default());
    }
}
