//! C exports of the SEV and SEV-ES typed helpers (`mem_enc_sev_*`).
//!
//! Common rules (see also include/memenc.h's header): every function returns 0 or a negative
//! errno; `fw_error` (may be NULL) receives the firmware status whenever an ioctl was issued
//! (0 on success; untouched when memenc refused the call first: see `mem_enc_last_stage()`);
//! outputs are written only on success; a too-small output buffer gives -ENOSPC with the needed
//! length in its length parameter; argument structs are passed with their `sizeof`; descriptors
//! are borrowed.

use core::ffi::{c_int, c_void};
use std::os::fd::BorrowedFd;

use super::args::{ArgsStruct, Cmd, Status, fd_only, finish, put, put_blob};
use super::boundary;
use crate::helpers::Result;
use crate::helpers::sev::{self, Init2, Packet, SendStart, Start};
use crate::uapi::sev_id as id;
use crate::vendor::Vendor;

fn cmd(id: u32) -> Cmd {
    Cmd::new(Vendor::Sev, id)
}

/// Arguments of `mem_enc_sev_init2()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct mem_enc_sev_init2_args {
    /// VMSA features to enable: a subset of what `KVM_X86_SEV_VMSA_FEATURES` reports. Bit 0
    /// (SNP_ACTIVE) is refused with -EINVAL: KVM sets it itself for SNP VMs.
    pub vmsa_features: u64,
    /// GHCB protocol version: 0 for SEV; 0 (meaning 2), 1 or 2 for SEV-ES; 0 or 2 for SNP.
    pub ghcb_version: u16,
    /// Must be 0.
    pub reserved0: u16,
    /// Must be 0.
    pub reserved1: u32,
}
/// Size of the first version of `struct mem_enc_sev_init2_args`.
pub const MEM_ENC_SEV_INIT2_ARGS_SIZE_VER0: usize = 16;
// SAFETY: integers only.
unsafe impl ArgsStruct for mem_enc_sev_init2_args {
    const SIZE_VER0: usize = MEM_ENC_SEV_INIT2_ARGS_SIZE_VER0;
}

/// Arguments of `mem_enc_sev_launch_start()` and `mem_enc_sev_receive_start()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_sev_start_args {
    /// Guest handle: 0 asks the firmware for a new one (LAUNCH_START); RECEIVE_START: the
    /// sender's.
    pub handle: u32,
    /// Guest policy.
    pub policy: u32,
    /// LAUNCH_START: the guest owner's Diffie-Hellman certificate (may be NULL with length 0);
    /// RECEIVE_START: the sender's PDH certificate (required).
    pub cert: *const u8,
    /// Length of "cert" in bytes.
    pub cert_len: usize,
    /// The session blob (may be NULL with length 0 for LAUNCH_START).
    pub session: *const u8,
    /// Length of "session" in bytes.
    pub session_len: usize,
}
/// Size of the first version of `struct mem_enc_sev_start_args`.
pub const MEM_ENC_SEV_START_ARGS_SIZE_VER0: usize = 40;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_sev_start_args {
    const SIZE_VER0: usize = MEM_ENC_SEV_START_ARGS_SIZE_VER0;
}

/// A packet for `mem_enc_sev_launch_secret()` and `mem_enc_sev_receive_update_data()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_sev_packet_args {
    /// Packet header.
    pub hdr: *const u8,
    /// Length of "hdr" in bytes.
    pub hdr_len: usize,
    /// The guest memory the packet is decrypted into (user-space address).
    pub guest: *mut c_void,
    /// Length of the guest range in bytes.
    pub guest_len: usize,
    /// Transport (encrypted) data.
    pub trans: *const u8,
    /// Length of "trans" in bytes.
    pub trans_len: usize,
}
/// Size of the first version of `struct mem_enc_sev_packet_args`.
pub const MEM_ENC_SEV_PACKET_ARGS_SIZE_VER0: usize = 48;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_sev_packet_args {
    const SIZE_VER0: usize = MEM_ENC_SEV_PACKET_ARGS_SIZE_VER0;
}

/// Certificates for `mem_enc_sev_send_start()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_sev_send_start_args {
    /// The receiver's PDH certificate (required).
    pub pdh_cert: *const u8,
    /// Length of "pdh_cert" in bytes.
    pub pdh_cert_len: usize,
    /// Platform certificates.
    pub plat_certs: *const u8,
    /// Length of "plat_certs" in bytes.
    pub plat_certs_len: usize,
    /// AMD certificates.
    pub amd_certs: *const u8,
    /// Length of "amd_certs" in bytes.
    pub amd_certs_len: usize,
}
/// Size of the first version of `struct mem_enc_sev_send_start_args`.
pub const MEM_ENC_SEV_SEND_START_ARGS_SIZE_VER0: usize = 48;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_sev_send_start_args {
    const SIZE_VER0: usize = MEM_ENC_SEV_SEND_START_ARGS_SIZE_VER0;
}

/// KVM_SEV_INIT2: initialises a SEV, SEV-ES or SNP-type VM (created with that type), before
/// any vCPU.
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "args"      - VMSA features and GHCB version (`struct mem_enc_sev_init2_args`).
///  "args_size" - `sizeof(struct mem_enc_sev_init2_args)`.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -EINVAL (SNP_ACTIVE requested, non-zero reserved field: no ioctl; or the
/// kernel's: wrong VM type, unsupported feature bit, bad GHCB version, vCPUs exist),
/// -E2BIG (unknown non-zero tail in "args"), -EINVAL ("args" NULL), -ENOTTY, -EIO.
///
/// # Safety
/// "args" must point to "args_size" readable bytes; "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_init2(
    vm_fd: c_int,
    args: *const mem_enc_sev_init2_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::INIT2);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            if a.reserved0 != 0 || a.reserved1 != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            sev::init2(
                fd,
                &Init2 {
                    vmsa_features: a.vmsa_features,
                    ghcb_version: a.ghcb_version,
                },
            )
        })();
        // SAFETY: fw_error is NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// The body of `mem_enc_sev_launch_start()` and `mem_enc_sev_receive_start()`: the same
/// arguments for command `id`, run by `helper`.
///
/// # Safety
/// As `mem_enc_sev_launch_start()`.
#[allow(clippy::too_many_arguments)]
unsafe fn start(
    id: u32,
    helper: fn(BorrowedFd<'_>, BorrowedFd<'_>, &Start<'_>) -> Result<u32>,
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_sev_start_args,
    args_size: usize,
    handle: *mut u32,
    fw_error: *mut u32,
) -> c_int {
    let c = cmd(id);
    let r = (|| {
        let (vm, sev_dev) = (c.fd(vm_fd)?, c.fd(sev_fd)?);
        // SAFETY: "args_size" readable bytes at "args" (contract).
        let a = unsafe { c.args(args, args_size) }?;
        // SAFETY: the blobs are readable for their lengths (contract).
        let p = unsafe {
            Start {
                handle: a.handle,
                policy: a.policy,
                cert: c.blob(a.cert, a.cert_len)?,
                session: c.blob(a.session, a.session_len)?,
            }
        };
        helper(vm, sev_dev, &p)
    })();
    // SAFETY: out-pointers are NULL or writable (contract).
    unsafe { finish(Status::Sev(fw_error), r, |h| put(handle, h)) }
}

/// KVM_SEV_LAUNCH_START: starts the launch and binds the guest's ASID.
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "sev_fd"    - an open /dev/sev descriptor (borrowed; the kernel keeps using it for this
///                VM's later commands).
///  "args"      - handle, policy, certificate and session (`struct mem_enc_sev_start_args`).
///  "args_size" - `sizeof(struct mem_enc_sev_start_args)`.
///  "handle"    - optional out: the guest handle, on success.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -ENOTTY (INIT not done), -EBADF ("sev_fd" is not /dev/sev), -EINVAL (a NULL
/// blob with a length), -EIO (firmware: see fw_error), ...
///
/// # Safety
/// "args" must point to "args_size" readable bytes and its blobs to their lengths;
/// "handle" and "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_launch_start(
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_sev_start_args,
    args_size: usize,
    handle: *mut u32,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded contract.
        unsafe {
            start(
                id::LAUNCH_START,
                sev::launch_start,
                vm_fd,
                sev_fd,
                args,
                args_size,
                handle,
                fw_error,
            )
        }
    })
}

/// KVM_SEV_RECEIVE_START: starts receiving a migrated guest.
///
/// Arguments: as `mem_enc_sev_launch_start()`; in "args", "cert" is the sender's PDH
/// certificate and both blobs are required.
///
/// Returns: as `mem_enc_sev_launch_start()`; -EINVAL when a blob is empty.
///
/// # Safety
/// As `mem_enc_sev_launch_start()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_receive_start(
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_sev_start_args,
    args_size: usize,
    handle: *mut u32,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded contract.
        unsafe {
            start(
                id::RECEIVE_START,
                sev::receive_start,
                vm_fd,
                sev_fd,
                args,
                args_size,
                handle,
                fw_error,
            )
        }
    })
}

/// KVM_SEV_LAUNCH_UPDATE_DATA: encrypts guest memory in place and adds it to the measurement.
///
/// Arguments:
///  "vm_fd"    - the VM descriptor.
///  "addr"     - the guest memory (user-space address; 16-byte aligned for the firmware).
///  "len"      - its length in bytes (at most 4 GiB - 1).
///  "fw_error" - optional firmware status.
///
/// Returns: 0, or -EINVAL ("len" 0 or too large), -ENOMEM (pinning over RLIMIT_MEMLOCK),
/// -ENOTTY, -EIO, ...
///
/// # Safety
/// "addr" is handed to the kernel, which checks it; "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_launch_update_data(
    vm_fd: c_int,
    addr: *mut c_void,
    len: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        // SAFETY: "fw_error" is NULL or writable (contract).
        unsafe {
            fd_only(
                cmd(id::LAUNCH_UPDATE_DATA),
                vm_fd,
                Status::Sev(fw_error),
                |fd| sev::launch_update_data(fd, addr as u64, len),
            )
        }
    })
}

/// The body of `mem_enc_sev_launch_secret()` and `mem_enc_sev_receive_update_data()`: the
/// same arguments for command `id`, run by `helper`.
///
/// # Safety
/// As `mem_enc_sev_launch_secret()`.
unsafe fn packet(
    id: u32,
    helper: fn(BorrowedFd<'_>, &Packet<'_>) -> Result<()>,
    vm_fd: c_int,
    args: *const mem_enc_sev_packet_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    let c = cmd(id);
    let r = (|| {
        let fd = c.fd(vm_fd)?;
        // SAFETY: "args_size" readable bytes at "args" (contract).
        let a = unsafe { c.args(args, args_size) }?;
        // SAFETY: the blobs are readable for their lengths (contract).
        let p = unsafe {
            Packet {
                hdr: c.blob(a.hdr, a.hdr_len)?,
                guest_uaddr: a.guest as u64,
                guest_len: a.guest_len,
                trans: c.blob(a.trans, a.trans_len)?,
            }
        };
        helper(fd, &p)
    })();
    // SAFETY: fw_error is NULL or writable (contract).
    unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
}

/// KVM_SEV_LAUNCH_SECRET: injects the guest owner's secret packet into guest memory (after
/// LAUNCH_MEASURE, before LAUNCH_FINISH).
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "args"      - header, guest range and transport data (`struct mem_enc_sev_packet_args`).
///  "args_size" - `sizeof(struct mem_enc_sev_packet_args)`.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -EINVAL (guest range not physically contiguous), -EFAULT, -ENOTTY, -EIO
/// (e.g. SEV_RET_BAD_MEASUREMENT: the packet was not made for this launch).
///
/// # Safety
/// "args" must point to "args_size" readable bytes and its blobs to their lengths;
/// "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_launch_secret(
    vm_fd: c_int,
    args: *const mem_enc_sev_packet_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded contract.
        unsafe {
            packet(
                id::LAUNCH_SECRET,
                sev::launch_secret,
                vm_fd,
                args,
                args_size,
                fw_error,
            )
        }
    })
}

/// KVM_SEV_RECEIVE_UPDATE_DATA: decrypts an incoming packet into guest memory (at most one
/// page).
///
/// Arguments: as `mem_enc_sev_launch_secret()`; every blob and the guest range are required.
///
/// Returns: 0, or -EINVAL (a missing blob or range, range beyond a page, or RECEIVE_START not
/// done), -EFAULT, -EIO.
///
/// # Safety
/// As `mem_enc_sev_launch_secret()`.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_receive_update_data(
    vm_fd: c_int,
    args: *const mem_enc_sev_packet_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        // SAFETY: forwarded contract.
        unsafe {
            packet(
                id::RECEIVE_UPDATE_DATA,
                sev::receive_update_data,
                vm_fd,
                args,
                args_size,
                fw_error,
            )
        }
    })
}

/// KVM_SEV_LAUNCH_MEASURE: the launch measurement. memenc asks the kernel for the length
/// first and never truncates.
///
/// Arguments:
///  "vm_fd"    - the VM descriptor.
///  "buf"      - where the measurement goes; may be NULL when "*len" is 0 (a pure length
///               query).
///  "len"      - in: the size of "buf"; out: the measurement's length on success, or the
///               length needed on -ENOSPC. Required.
///  "fw_error" - optional firmware status.
///
/// Returns: 0, or -ENOSPC ("buf" too small; "*len" = needed, "buf" untouched), -EINVAL ("len"
/// NULL, or "buf" NULL with a non-zero "*len"), -ENOTTY, -EIO.
///
/// # Safety
/// "len" must be readable and writable; "buf" must have "*len" writable bytes or be NULL;
/// "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_launch_measure(
    vm_fd: c_int,
    buf: *mut u8,
    len: *mut usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::LAUNCH_MEASURE);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "len" is NULL or readable (contract).
            let cap = unsafe { c.capacity(buf, len) }?;
            let n = sev::launch_measure_len(fd)?;
            // SAFETY: "len" is writable (NULL was refused by capacity()).
            unsafe { c.room(&[(len, cap, n as usize)]) }?;
            sev::launch_measure_fetch(fd, n)
        })();
        // SAFETY: "buf" has room for the data (capacity checked); pointers per contract.
        unsafe { finish(Status::Sev(fw_error), r, |m| put_blob(buf, len, &m)) }
    })
}

/// KVM_SEV_GUEST_STATUS: the guest's handle, policy and firmware state.
///
/// Arguments:
///  "vm_fd"    - the VM descriptor.
///  "handle"   - optional out: guest handle.
///  "policy"   - optional out: guest policy.
///  "state"    - optional out: 0 INVALID, 1 LAUNCHING, 2 SECRET, 3 RUNNING, 4 RECEIVING,
///               5 SENDING.
///  "fw_error" - optional firmware status.
///
/// Returns: 0, or -ENOTTY, -EIO.
///
/// # Safety
/// Every out-pointer must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_guest_status(
    vm_fd: c_int,
    handle: *mut u32,
    policy: *mut u32,
    state: *mut u32,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let r = cmd(id::GUEST_STATUS).fd(vm_fd).and_then(sev::guest_status);
        // SAFETY: out-pointers are NULL or writable (contract).
        unsafe {
            finish(Status::Sev(fw_error), r, |s| {
                put(handle, s.handle);
                put(policy, s.policy);
                put(state, s.state);
            })
        }
    })
}

/// KVM_SEV_DBG_DECRYPT: decrypts guest memory (debug policy only). "dst" is written only on
/// success (memenc decrypts into its own zeroised buffer first).
///
/// Arguments:
///  "vm_fd"    - the VM descriptor.
///  "src"      - the encrypted guest memory (user-space address).
///  "dst"      - where the plaintext goes.
///  "len"      - bytes to decrypt.
///  "fw_error" - optional firmware status.
///
/// Returns: 0, or -EINVAL ("len" 0 or 4 GiB or more), -EINVAL ("dst" NULL), -ENOTTY, -EIO
/// (e.g. SEV_RET_POLICY_FAILURE: the policy forbids debugging).
///
/// # Safety
/// "dst" must have "len" writable bytes; "src" is checked by the kernel; "fw_error" must be
/// NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_dbg_decrypt(
    vm_fd: c_int,
    src: *const c_void,
    dst: *mut u8,
    len: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::DBG_DECRYPT);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            if dst.is_null() && len != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            // The kernel's length is 32 bits: refuse more before any buffer is made for it.
            if u32::try_from(len).is_err() {
                return Err(c.reject(libc::EINVAL));
            }
            let out: &mut [u8] = if len == 0 {
                &mut []
            } else {
                // SAFETY: "dst" has "len" (< 4 GiB) writable bytes (contract); the helper writes
                // them only on success, from its own zeroised bounce buffer.
                unsafe { core::slice::from_raw_parts_mut(dst, len) }
            };
            sev::dbg_decrypt(fd, src as u64, out)
        })();
        // SAFETY: out-pointers are NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// KVM_SEV_DBG_ENCRYPT: encrypts data into guest memory (debug policy only).
///
/// Arguments:
///  "vm_fd"    - the VM descriptor.
///  "src"      - the plaintext.
///  "dst"      - the guest memory (user-space address).
///  "len"      - bytes to encrypt.
///  "fw_error" - optional firmware status.
///
/// Returns: 0, or -EINVAL, -EINVAL ("src" NULL), -ENOTTY, -EIO.
///
/// # Safety
/// "src" must have "len" readable bytes; "dst" is checked by the kernel; "fw_error" must be
/// NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_dbg_encrypt(
    vm_fd: c_int,
    src: *const u8,
    dst: *mut c_void,
    len: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::DBG_ENCRYPT);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "len" readable bytes at "src" (contract).
            let data = unsafe { c.blob(src, len) }?;
            sev::dbg_encrypt(fd, data, dst as u64)
        })();
        // SAFETY: fw_error is NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// KVM_SEV_GET_ATTESTATION_REPORT: the firmware's attestation report over the launch
/// measurement and the guest owner's nonce. Length query first; never truncates.
///
/// Arguments:
///  "vm_fd"      - the VM descriptor.
///  "mnonce"     - the guest owner's nonce.
///  "mnonce_len" - must be 16.
///  "buf", "len" - as `mem_enc_sev_launch_measure()`.
///  "fw_error"   - optional firmware status.
///
/// Returns: 0, or -ENOSPC ("*len" = needed), -EINVAL ("mnonce_len" not 16), -EFAULT, -ENOTTY,
/// -EIO.
///
/// # Safety
/// "mnonce" must have 16 readable bytes; "buf"/"len" as `mem_enc_sev_launch_measure()`;
/// "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_get_attestation_report(
    vm_fd: c_int,
    mnonce: *const u8,
    mnonce_len: usize,
    buf: *mut u8,
    len: *mut usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::GET_ATTESTATION_REPORT);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: 16 readable bytes at "mnonce" (contract; the length is checked).
            let nonce = unsafe { c.exact::<16>(mnonce, mnonce_len) }?;
            // SAFETY: "len" is NULL or readable (contract).
            let cap = unsafe { c.capacity(buf, len) }?;
            let n = sev::get_attestation_report_len(fd)?;
            // SAFETY: "len" is writable (NULL was refused by capacity()).
            unsafe { c.room(&[(len, cap, n as usize)]) }?;
            sev::get_attestation_report_fetch(fd, nonce, n)
        })();
        // SAFETY: "buf" has room for the data (capacity checked); pointers per contract.
        unsafe { finish(Status::Sev(fw_error), r, |m| put_blob(buf, len, &m)) }
    })
}

/// KVM_SEV_SEND_START: starts sending the guest to a receiver. memenc queries the session
/// length first and issues the real command only when "session" is large enough (the command
/// changes the guest's state, so it is never issued into a buffer that is too small).
///
/// Arguments:
///  "vm_fd"       - the VM descriptor.
///  "args"        - the certificates (`struct mem_enc_sev_send_start_args`).
///  "args_size"   - `sizeof(struct mem_enc_sev_send_start_args)`.
///  "session"     - where the session blob goes (may be NULL when "*session_len" is 0).
///  "session_len" - in: size of "session"; out: the blob's length, or the needed length on
///                  -ENOSPC. Required.
///  "policy"      - optional out: the guest policy, on success.
///  "fw_error"    - optional firmware status.
///
/// Returns: 0, or -ENOSPC, -EINVAL (missing PDH certificate), -EFAULT, -ENOTTY, -EIO.
///
/// # Safety
/// "args" must point to "args_size" readable bytes and its blobs to their lengths;
/// "session_len" readable and writable; "session" "*session_len" writable bytes or NULL;
/// "policy" and "fw_error" NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_send_start(
    vm_fd: c_int,
    args: *const mem_enc_sev_send_start_args,
    args_size: usize,
    session: *mut u8,
    session_len: *mut usize,
    policy: *mut u32,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::SEND_START);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            // SAFETY: the blobs are readable for their lengths (contract).
            let p = unsafe {
                SendStart {
                    pdh_cert: c.blob(a.pdh_cert, a.pdh_cert_len)?,
                    plat_certs: c.blob(a.plat_certs, a.plat_certs_len)?,
                    amd_certs: c.blob(a.amd_certs, a.amd_certs_len)?,
                }
            };
            // SAFETY: "session_len" is NULL or readable (contract).
            let cap = unsafe { c.capacity(session, session_len) }?;
            let (n, _) = sev::send_start_len(fd)?;
            // SAFETY: "session_len" is writable (NULL was refused by capacity()).
            unsafe { c.room(&[(session_len, cap, n as usize)]) }?;
            sev::send_start_fetch(fd, &p, n)
        })();
        // SAFETY: "session" has room (capacity checked); pointers per contract.
        unsafe {
            finish(Status::Sev(fw_error), r, |out| {
                put_blob(session, session_len, &out.session);
                put(policy, out.policy);
            })
        }
    })
}

/// KVM_SEV_SEND_UPDATE_DATA: encrypts guest memory (within one page) for transport. memenc
/// queries both lengths first.
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "guest"     - the guest memory (user-space address).
///  "guest_len" - its length (the range must not cross a page).
///  "hdr"       - where the packet header goes; "hdr_len" in: its size, out: the length
///                written or needed. Required.
///  "trans"     - where the encrypted data goes; "trans_len" likewise. Required.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -ENOSPC (either buffer too small: both "*hdr_len" and "*trans_len" are set to
/// the needed lengths, nothing else is written), -EINVAL, -EFAULT, -ENOTTY, -EIO.
///
/// # Safety
/// "hdr_len"/"trans_len" readable and writable; "hdr"/"trans" with that many writable bytes or
/// NULL; "fw_error" NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_sev_send_update_data(
    vm_fd: c_int,
    guest: *const c_void,
    guest_len: usize,
    hdr: *mut u8,
    hdr_len: *mut usize,
    trans: *mut u8,
    trans_len: *mut usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::SEND_UPDATE_DATA);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: the length pointers are NULL or readable (contract).
            let (hcap, tcap) =
                unsafe { (c.capacity(hdr, hdr_len)?, c.capacity(trans, trans_len)?) };
            let (h, t) = sev::send_update_data_len(fd)?;
            let lens = [(hdr_len, hcap, h as usize), (trans_len, tcap, t as usize)];
            // SAFETY: both length pointers are writable (NULL was refused by capacity()).
            unsafe { c.room(&lens) }?;
            sev::send_update_data_fetch(fd, guest as u64, guest_len, h, t)
        })();
        // SAFETY: both buffers have room (capacities checked); pointers per contract.
        unsafe {
            finish(Status::Sev(fw_error), r, |out| {
                put_blob(hdr, hdr_len, &out.hdr);
                put_blob(trans, trans_len, &out.trans);
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(
            size_of::<mem_enc_sev_init2_args>(),
            MEM_ENC_SEV_INIT2_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_sev_init2_args, ghcb_version), 8);
        assert_eq!(
            size_of::<mem_enc_sev_start_args>(),
            MEM_ENC_SEV_START_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_sev_start_args, cert), 8);
        assert_eq!(offset_of!(mem_enc_sev_start_args, session_len), 32);
        assert_eq!(
            size_of::<mem_enc_sev_packet_args>(),
            MEM_ENC_SEV_PACKET_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_sev_packet_args, guest), 16);
        assert_eq!(offset_of!(mem_enc_sev_packet_args, trans_len), 40);
        assert_eq!(
            size_of::<mem_enc_sev_send_start_args>(),
            MEM_ENC_SEV_SEND_START_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_sev_send_start_args, amd_certs_len), 40);
    }
}
