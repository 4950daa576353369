//! C exports of the host probe and of negotiation. Their growing structs are copied with the
//! kernel's `copy_struct_from_user` / `copy_struct_to_user` rules (src/capi/args.rs), except that
//! a NULL struct pointer is `-EINVAL` here, as these exports have always documented.

use core::ffi::{c_char, c_int};
use core::ptr;

use super::args::{ArgsStruct, check_struct_out, copy_struct_from_user, copy_struct_to_user};
use super::boundary;
use crate::errno::Errno;
use crate::negotiate::{
    self, Grant, MEM_ENC_LAUNCH_REQUEST_SIZE_VER0, MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0, Refusal,
    VmChoice, mem_enc_launch_request, mem_enc_launch_settings, mem_enc_negotiation,
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

/// One negotiation level's answer as the C result struct.
fn negotiation_of(result: &Result<Grant, Refusal>) -> (mem_enc_negotiation, String, i32) {
    let mut out = mem_enc_negotiation::default();
    match result {
        Ok(g) => {
            out.granted = g.granted;
            (out, g.note.clone(), 0)
        }
        Err(r) => {
            out.missing = r.missing;
            (out, r.message.clone(), r.errno.negated())
        }
    }
}

/// Runs a level: reads `caps`, negotiates, writes `*out` (on success and on a refusal).
///
/// # Safety
/// As the exports: `caps` NULL or `caps_size` readable bytes; `out` NULL or writable.
unsafe fn level(
    caps: *const mem_enc_caps,
    caps_size: usize,
    out: *mut mem_enc_negotiation,
    negotiate: impl FnOnce(&mem_enc_caps) -> (mem_enc_negotiation, String, i32),
) -> c_int {
    if out.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: forwarded from the caller.
    let caps = match unsafe { caps_from(caps, caps_size) } {
        Ok(c) => c,
        Err(e) => return e.negated(),
    };
    let (mut answer, message, ret) = negotiate(&caps);
    // SAFETY: `answer.message` is a local array of MEM_ENC_MESSAGE_LEN bytes.
    unsafe { copy_message(answer.message.as_mut_ptr(), answer.message.len(), &message) };
    // SAFETY: the caller guarantees `out` points at a writable struct mem_enc_negotiation.
    unsafe { ptr::write_unaligned(out, answer) };
    ret
}

/// A level-2 negotiation of `required` and `optional` bits (`negotiate` is one of
/// `negotiate::{snp_policy, tdx_attributes, tdx_xfam}`).
///
/// # Safety
/// As [`level`].
unsafe fn bits(
    caps: *const mem_enc_caps,
    caps_size: usize,
    required: u64,
    optional: u64,
    out: *mut mem_enc_negotiation,
    negotiate: fn(&mem_enc_caps, u64, u64) -> Result<Grant, Refusal>,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        level(caps, caps_size, out, |c| {
            negotiation_of(&negotiate(c, required, optional))
        })
    }
}

/// Negotiation, level 1: the best confidential VM type among those the caller accepts that
/// this host can create (SNP > SEV-ES > SEV on AMD; TDX on Intel), and how to initialise it:
/// KVM_SEV_INIT2, or on kernels without INIT2 the legacy KVM_SEV_INIT / KVM_SEV_ES_INIT on a
/// default VM (`out->create_vm_type` 0; a different launch measurement).
///
/// Arguments:
///  "caps"      - a probe answer (`mem_enc_probe()`, or hand-built), or NULL to probe /dev/kvm
///                (cached).
///  "caps_size" - sizeof(*caps) as the caller knows it (growing-struct rules: a larger struct
///                must have an all-zero tail, else -E2BIG).
///  "accept"    - accepted VM types, bit n for type n: (1u << MEM_ENC_VM_TYPE_SNP) | ...
///  "out"       - the answer: `vm_type`, `create_vm_type`, `init_path`, `granted` (the chosen
///                type's bit) and a message; written on success and on a refusal.
///
/// Returns: 0, or
///  -EOPNOTSUPP  no accepted type is available; `out->message` says why for each one
///  -EINVAL      `accept` is 0 or has bits other than SEV, SEV-ES, SNP, TDX; out or caps bad
///  -E2BIG       caps has a non-zero tail beyond what this library knows
///
/// # Safety
/// `caps` must be NULL or valid for reading `caps_size` bytes; `out` must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_vm_type(
    caps: *const mem_enc_caps,
    caps_size: usize,
    accept: u32,
    out: *mut mem_enc_negotiation,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            level(caps, caps_size, out, |c| {
                match negotiate::vm_type(c, accept) {
                    Ok(VmChoice {
                        vm_type,
                        create_vm_type,
                        init_path,
                        note,
                    }) => {
                        let out = mem_enc_negotiation {
                            granted: 1u64 << vm_type,
                            vm_type,
                            create_vm_type,
                            init_path,
                            ..Default::default()
                        };
                        (out, note, 0)
                    }
                    Err(r) => negotiation_of(&Err(r)),
                }
            })
        }
    })
}

/// Negotiation, level 2 (SEV): `kvm_sev_init.vmsa_features` for a VM of `vm_type`. Plain SEV
/// and the legacy INIT path take none; SECURE_TSC (bit 9) is SNP-only; SNP_ACTIVE (bit 0) is
/// set by KVM itself and asking for it is -EINVAL.
///
/// Arguments:
///  "caps", "caps_size" - as for `mem_enc_negotiate_vm_type()`.
///  "vm_type"  - `MEM_ENC_VM_TYPE_SEV`, `_SEV_ES` or `_SNP`.
///  "required" - bits the VM must have; "optional" - bits it gets if the host has them.
///  "out"      - `granted` (required plus the supported optional bits), `missing`, message.
///
/// Returns: 0, -EOPNOTSUPP (a required bit is not supported; `out->missing` has it and
/// `out->message` names it, e.g. "vmsa_features bit 5 (DEBUG_SWAP) not supported by this
/// host"), -EINVAL (bit 0 asked, or vm_type is not a SEV type), -E2BIG (caps tail).
///
/// # Safety
/// As `mem_enc_negotiate_vm_type()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_vmsa_features(
    caps: *const mem_enc_caps,
    caps_size: usize,
    vm_type: u32,
    required: u64,
    optional: u64,
    out: *mut mem_enc_negotiation,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            level(caps, caps_size, out, |c| {
                negotiation_of(&negotiate::vmsa_features(c, vm_type, required, optional))
            })
        }
    })
}

/// Negotiation, level 2 (SNP): the guest policy for SNP_LAUNCH_START. Bits 0-15 of `required`
/// are the minimum firmware API version (minor in 0-7, major in 8-15): values, passed through;
/// `optional` must have none there (-EINVAL). Bit 17 (must be one) is set for the caller. Other
/// bits must be ones the kernel publishes (`KVM_X86_SNP_POLICY_BITS`; on SNP kernels without it,
/// the static `MEM_ENC_SNP_POLICY_BITS_STATIC`, and the message says so).
///
/// Arguments and returns: as `mem_enc_negotiate_vmsa_features()`; -EOPNOTSUPP also when the
/// host has no SEV-SNP.
///
/// # Safety
/// As `mem_enc_negotiate_vm_type()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_snp_policy(
    caps: *const mem_enc_caps,
    caps_size: usize,
    required: u64,
    optional: u64,
    out: *mut mem_enc_negotiation,
) -> c_int {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        bits(
            caps,
            caps_size,
            required,
            optional,
            out,
            negotiate::snp_policy,
        )
    })
}

/// Negotiation, level 2 (TDX): `kvm_tdx_init_vm.attributes` against `supported_attrs`.
///
/// Arguments and returns: as `mem_enc_negotiate_vmsa_features()` without `vm_type`;
/// -EOPNOTSUPP also when the host has no TDX.
///
/// # Safety
/// As `mem_enc_negotiate_vm_type()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_tdx_attributes(
    caps: *const mem_enc_caps,
    caps_size: usize,
    required: u64,
    optional: u64,
    out: *mut mem_enc_negotiation,
) -> c_int {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        bits(
            caps,
            caps_size,
            required,
            optional,
            out,
            negotiate::tdx_attributes,
        )
    })
}

/// Negotiation, level 2 (TDX): `kvm_tdx_init_vm.xfam` against `supported_xfam`.
///
/// Arguments and returns: as `mem_enc_negotiate_tdx_attributes()`.
///
/// # Safety
/// As `mem_enc_negotiate_vm_type()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_negotiate_tdx_xfam(
    caps: *const mem_enc_caps,
    caps_size: usize,
    required: u64,
    optional: u64,
    out: *mut mem_enc_negotiation,
) -> c_int {
    // SAFETY: forwarded from the caller.
    boundary(|| unsafe {
        bits(
            caps,
            caps_size,
            required,
            optional,
            out,
            negotiate::tdx_xfam,
        )
    })
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
            assert_eq!(
                mem_enc_negotiate_vm_type(&caps, 192, 1 << 4, ptr::null_mut()),
                -libc::EINVAL
            );
        }
        assert_eq!(caps, mem_enc_caps::default());
    }

    #[test]
    fn levels_write_the_reason_on_refusal() {
        let caps = mem_enc_caps::default();
        let mut out = mem_enc_negotiation::default();
        // SAFETY: valid pointers and sizes.
        let r = unsafe { mem_enc_negotiate_vmsa_features(&caps, 192, 3, 1, 0, &mut out) };
        assert_eq!(r, -libc::EINVAL);
        assert_eq!(out.missing, 1);
        // SAFETY: the message is NUL-terminated.
        let msg = unsafe { core::ffi::CStr::from_ptr(out.message.as_ptr()) };
        assert!(msg.to_str().unwrap().contains("SNP_ACTIVE"));
    }
}
