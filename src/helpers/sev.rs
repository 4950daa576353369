//! AMD SEV and SEV-ES sub-commands (the SNP ones are in [`super::snp`]). Every command goes to
//! the VM descriptor; LAUNCH_START and RECEIVE_START also take an open `/dev/sev` descriptor.
//!
//! Guest-memory ranges are passed as user-space addresses, as `kvm_userspace_memory_region`
//! does in kvm-ioctls: the kernel validates them (`EFAULT`), and the caller must not hold Rust
//! references into memory the kernel encrypts or writes in place. Blobs memenc only reads are
//! slices; outputs memenc allocates (measurements, reports, session data, decrypted memory) are
//! returned in buffers zeroised on drop.

use std::os::fd::BorrowedFd;

use zeroize::Zeroizing;

use super::{Error, Result, addr_of, data_of, issue, len32, name};
use crate::uapi::{
    SEV_FW_BLOB_MAX_SIZE, kvm_sev_attestation_report, kvm_sev_dbg, kvm_sev_guest_status,
    kvm_sev_init, kvm_sev_launch_measure, kvm_sev_launch_secret, kvm_sev_launch_start,
    kvm_sev_launch_update_data, kvm_sev_receive_start, kvm_sev_receive_update_data,
    kvm_sev_send_start, kvm_sev_send_update_data, sev_id as id,
};
use crate::vendor::Vendor;

pub use crate::uapi::SVM_SEV_FEAT_SNP_ACTIVE;

/// A secret or measurement memenc allocated: zeroised when dropped.
pub type SecretBuf = Zeroizing<Vec<u8>>;

fn vm(vm: BorrowedFd<'_>, cmd: u32, data: u64) -> Result<()> {
    issue(vm, Vendor::Sev, cmd, 0, data, None)
}

fn reject(cmd: u32, errno: i32) -> Error {
    Error::rejected(name(Vendor::Sev, cmd), Vendor::Sev, errno)
}

fn l32(cmd: u32, len: usize) -> Result<u32> {
    len32(name(Vendor::Sev, cmd), Vendor::Sev, len)
}

/// A length query: the kernel writes the needed length(s) back and may still return the
/// firmware's INVALID_LEN error. It answered when `answered` sees a non-zero length.
fn query<K>(fd: BorrowedFd<'_>, cmd: u32, k: &mut K, answered: fn(&K) -> bool) -> Result<()> {
    match vm(fd, cmd, data_of(k)) {
        Err(e) if !answered(k) => Err(e),
        _ => Ok(()),
    }
}

/// A zeroised buffer of `len` bytes for the kernel to fill; `-EINVAL` above the firmware's
/// 16 KiB blob limit.
fn blob(cmd: u32, len: u32) -> Result<SecretBuf> {
    if len > SEV_FW_BLOB_MAX_SIZE {
        return Err(reject(cmd, libc::EINVAL));
    }
    Ok(Zeroizing::new(vec![0u8; len as usize]))
}

/// `KVM_SEV_INIT` (legacy, DEFAULT-type VMs only; superseded by [`init2`]).
pub fn init(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::INIT, 0)
}

/// `KVM_SEV_ES_INIT` (legacy, DEFAULT-type VMs only; superseded by [`init2`]).
pub fn es_init(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::ES_INIT, 0)
}

/// Parameters of [`init2`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Init2 {
    /// `vmsa_features`: a subset of the `KVM_X86_SEV_VMSA_FEATURES` attribute; never
    /// `SVM_SEV_FEAT_SNP_ACTIVE`, which KVM sets itself.
    pub vmsa_features: u64,
    /// GHCB protocol version: 0 for SEV, 0 (meaning 2) or 1-2 for SEV-ES, 0 or 2 for SNP.
    pub ghcb_version: u16,
}

/// `KVM_SEV_INIT2` on a SEV, SEV-ES or SNP-type VM, before any vCPU is created.
/// `-EINVAL` (no ioctl) if `vmsa_features` has SNP_ACTIVE.
pub fn init2(vm_fd: BorrowedFd<'_>, p: &Init2) -> Result<()> {
    if p.vmsa_features & SVM_SEV_FEAT_SNP_ACTIVE != 0 {
        return Err(reject(id::INIT2, libc::EINVAL));
    }
    let mut k = kvm_sev_init {
        vmsa_features: p.vmsa_features,
        ghcb_version: p.ghcb_version,
        ..Default::default()
    };
    vm(vm_fd, id::INIT2, data_of(&mut k))
}

/// Parameters of [`launch_start`] and [`receive_start`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Start<'a> {
    /// Guest handle: 0 asks the firmware for a new one (launch); the sender's (receive).
    pub handle: u32,
    /// Guest policy.
    pub policy: u32,
    /// LAUNCH_START: the guest owner's Diffie-Hellman certificate (may be empty);
    /// RECEIVE_START: the sender's PDH certificate (required).
    pub cert: &'a [u8],
    /// The session blob (may be empty for LAUNCH_START).
    pub session: &'a [u8],
}

/// `KVM_SEV_LAUNCH_START`: returns the guest handle. `sev` is an open `/dev/sev`.
pub fn launch_start(vm_fd: BorrowedFd<'_>, sev: BorrowedFd<'_>, p: &Start<'_>) -> Result<u32> {
    let mut k = kvm_sev_launch_start {
        handle: p.handle,
        policy: p.policy,
        dh_uaddr: addr_of(p.cert),
        dh_len: l32(id::LAUNCH_START, p.cert.len())?,
        session_uaddr: addr_of(p.session),
        session_len: l32(id::LAUNCH_START, p.session.len())?,
        ..Default::default()
    };
    issue(
        vm_fd,
        Vendor::Sev,
        id::LAUNCH_START,
        0,
        data_of(&mut k),
        Some(sev),
    )?;
    Ok(k.handle)
}

/// `KVM_SEV_RECEIVE_START`: returns the guest handle. `sev` is an open `/dev/sev`.
pub fn receive_start(vm_fd: BorrowedFd<'_>, sev: BorrowedFd<'_>, p: &Start<'_>) -> Result<u32> {
    let mut k = kvm_sev_receive_start {
        handle: p.handle,
        policy: p.policy,
        pdh_uaddr: addr_of(p.cert),
        pdh_len: l32(id::RECEIVE_START, p.cert.len())?,
        session_uaddr: addr_of(p.session),
        session_len: l32(id::RECEIVE_START, p.session.len())?,
        ..Default::default()
    };
    issue(
        vm_fd,
        Vendor::Sev,
        id::RECEIVE_START,
        0,
        data_of(&mut k),
        Some(sev),
    )?;
    Ok(k.handle)
}

/// `KVM_SEV_LAUNCH_UPDATE_DATA`: encrypts `len` bytes of guest memory at `uaddr` in place.
pub fn launch_update_data(vm_fd: BorrowedFd<'_>, uaddr: u64, len: usize) -> Result<()> {
    let mut k = kvm_sev_launch_update_data {
        uaddr,
        len: l32(id::LAUNCH_UPDATE_DATA, len)?,
        ..Default::default()
    };
    vm(vm_fd, id::LAUNCH_UPDATE_DATA, data_of(&mut k))
}

/// `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES): encrypts every vCPU's register state.
pub fn launch_update_vmsa(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::LAUNCH_UPDATE_VMSA, 0)
}

/// A packet of the secret-injection and migration commands: header and transport blobs, and
/// the guest memory it goes to (or comes from).
#[derive(Clone, Copy, Debug, Default)]
pub struct Packet<'a> {
    /// Packet header.
    pub hdr: &'a [u8],
    /// Guest memory address (user space) and length.
    pub guest_uaddr: u64,
    /// Length of the guest range.
    pub guest_len: usize,
    /// Transport (encrypted) data.
    pub trans: &'a [u8],
}

/// The kernel struct `$k` for packet `$p` of command `$cmd`: LAUNCH_SECRET's and
/// RECEIVE_UPDATE_DATA's structs have the same fields.
macro_rules! packet {
    ($k:ident, $cmd:expr, $p:expr) => {
        $k {
            hdr_uaddr: addr_of($p.hdr),
            hdr_len: l32($cmd, $p.hdr.len())?,
            guest_uaddr: $p.guest_uaddr,
            guest_len: l32($cmd, $p.guest_len)?,
            trans_uaddr: addr_of($p.trans),
            trans_len: l32($cmd, $p.trans.len())?,
            ..Default::default()
        }
    };
}

/// `KVM_SEV_LAUNCH_SECRET`: injects a secret packet into guest memory.
pub fn launch_secret(vm_fd: BorrowedFd<'_>, p: &Packet<'_>) -> Result<()> {
    let mut k = packet!(kvm_sev_launch_secret, id::LAUNCH_SECRET, p);
    vm(vm_fd, id::LAUNCH_SECRET, data_of(&mut k))
}

/// `KVM_SEV_RECEIVE_UPDATE_DATA`: decrypts an incoming packet into guest memory.
pub fn receive_update_data(vm_fd: BorrowedFd<'_>, p: &Packet<'_>) -> Result<()> {
    let mut k = packet!(kvm_sev_receive_update_data, id::RECEIVE_UPDATE_DATA, p);
    vm(vm_fd, id::RECEIVE_UPDATE_DATA, data_of(&mut k))
}

/// `KVM_SEV_LAUNCH_MEASURE` length query: the measurement's size in bytes.
pub fn launch_measure_len(vm_fd: BorrowedFd<'_>) -> Result<u32> {
    let mut k = kvm_sev_launch_measure::default();
    query(vm_fd, id::LAUNCH_MEASURE, &mut k, |k| k.len != 0)?;
    Ok(k.len)
}

/// `KVM_SEV_LAUNCH_MEASURE` into a buffer of `len` bytes (from [`launch_measure_len`]).
pub(crate) fn launch_measure_fetch(vm_fd: BorrowedFd<'_>, len: u32) -> Result<SecretBuf> {
    let mut buf = blob(id::LAUNCH_MEASURE, len)?;
    if len == 0 {
        return Ok(buf);
    }
    let mut k = kvm_sev_launch_measure {
        uaddr: buf.as_mut_ptr() as u64,
        len,
        ..Default::default()
    };
    vm(vm_fd, id::LAUNCH_MEASURE, data_of(&mut k))?;
    buf.truncate(k.len as usize);
    Ok(buf)
}

/// `KVM_SEV_LAUNCH_MEASURE`: the launch measurement (length query, then fetch).
pub fn launch_measure(vm_fd: BorrowedFd<'_>) -> Result<SecretBuf> {
    let len = launch_measure_len(vm_fd)?;
    launch_measure_fetch(vm_fd, len)
}

/// `KVM_SEV_LAUNCH_FINISH`.
pub fn launch_finish(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::LAUNCH_FINISH, 0)
}

/// What `KVM_SEV_GUEST_STATUS` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestStatus {
    /// Guest handle.
    pub handle: u32,
    /// Guest policy.
    pub policy: u32,
    /// Firmware guest state: 0 INVALID, 1 LAUNCHING, 2 SECRET, 3 RUNNING, 4 RECEIVING,
    /// 5 SENDING.
    pub state: u32,
}

/// `KVM_SEV_GUEST_STATUS`.
pub fn guest_status(vm_fd: BorrowedFd<'_>) -> Result<GuestStatus> {
    let mut k = kvm_sev_guest_status::default();
    vm(vm_fd, id::GUEST_STATUS, data_of(&mut k))?;
    Ok(GuestStatus {
        handle: k.handle,
        policy: k.policy,
        state: k.state,
    })
}

/// `KVM_SEV_DBG_DECRYPT`: decrypts `dst.len()` bytes of guest memory at `src_uaddr` into
/// `dst` (through a zeroised bounce buffer: `dst` is written only on success).
pub fn dbg_decrypt(vm_fd: BorrowedFd<'_>, src_uaddr: u64, dst: &mut [u8]) -> Result<()> {
    let len = l32(id::DBG_DECRYPT, dst.len())?;
    let mut bounce: SecretBuf = Zeroizing::new(vec![0u8; dst.len()]);
    let mut k = kvm_sev_dbg {
        src_uaddr,
        dst_uaddr: bounce.as_mut_ptr() as u64,
        len,
        ..Default::default()
    };
    vm(vm_fd, id::DBG_DECRYPT, data_of(&mut k))?;
    dst.copy_from_slice(&bounce);
    Ok(())
}

/// `KVM_SEV_DBG_ENCRYPT`: encrypts `src` into guest memory at `dst_uaddr`.
pub fn dbg_encrypt(vm_fd: BorrowedFd<'_>, src: &[u8], dst_uaddr: u64) -> Result<()> {
    let mut k = kvm_sev_dbg {
        src_uaddr: addr_of(src),
        dst_uaddr,
        len: l32(id::DBG_ENCRYPT, src.len())?,
        ..Default::default()
    };
    vm(vm_fd, id::DBG_ENCRYPT, data_of(&mut k))
}

/// `KVM_SEV_GET_ATTESTATION_REPORT` length query.
pub fn get_attestation_report_len(vm_fd: BorrowedFd<'_>) -> Result<u32> {
    let mut k = kvm_sev_attestation_report::default();
    query(vm_fd, id::GET_ATTESTATION_REPORT, &mut k, |k| k.len != 0)?;
    Ok(k.len)
}

pub(crate) fn get_attestation_report_fetch(
    vm_fd: BorrowedFd<'_>,
    mnonce: &[u8; 16],
    len: u32,
) -> Result<SecretBuf> {
    let mut buf = blob(id::GET_ATTESTATION_REPORT, len)?;
    if len == 0 {
        return Ok(buf);
    }
    let mut k = kvm_sev_attestation_report {
        mnonce: *mnonce,
        uaddr: buf.as_mut_ptr() as u64,
        len,
        ..Default::default()
    };
    vm(vm_fd, id::GET_ATTESTATION_REPORT, data_of(&mut k))?;
    buf.truncate(k.len as usize);
    Ok(buf)
}

/// `KVM_SEV_GET_ATTESTATION_REPORT` with the guest owner's nonce (length query, then fetch).
pub fn get_attestation_report(vm_fd: BorrowedFd<'_>, mnonce: &[u8; 16]) -> Result<SecretBuf> {
    let len = get_attestation_report_len(vm_fd)?;
    get_attestation_report_fetch(vm_fd, mnonce, len)
}

/// Certificates for [`send_start`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SendStart<'a> {
    /// The receiver's PDH certificate (required).
    pub pdh_cert: &'a [u8],
    /// The platform certificates.
    pub plat_certs: &'a [u8],
    /// The AMD certificates.
    pub amd_certs: &'a [u8],
}

/// What [`send_start`] returns.
#[derive(Debug)]
pub struct SendStartOut {
    /// The guest policy.
    pub policy: u32,
    /// The session blob for the receiver.
    pub session: SecretBuf,
}

/// `KVM_SEV_SEND_START` length query: `(session length, policy)`.
pub fn send_start_len(vm_fd: BorrowedFd<'_>) -> Result<(u32, u32)> {
    let mut k = kvm_sev_send_start::default();
    query(vm_fd, id::SEND_START, &mut k, |k| k.session_len != 0)?;
    Ok((k.session_len, k.policy))
}

pub(crate) fn send_start_fetch(
    vm_fd: BorrowedFd<'_>,
    p: &SendStart<'_>,
    session_len: u32,
) -> Result<SendStartOut> {
    let mut session = blob(id::SEND_START, session_len)?;
    let mut k = kvm_sev_send_start {
        pdh_cert_uaddr: addr_of(p.pdh_cert),
        pdh_cert_len: l32(id::SEND_START, p.pdh_cert.len())?,
        plat_certs_uaddr: addr_of(p.plat_certs),
        plat_certs_len: l32(id::SEND_START, p.plat_certs.len())?,
        amd_certs_uaddr: addr_of(p.amd_certs),
        amd_certs_len: l32(id::SEND_START, p.amd_certs.len())?,
        session_uaddr: addr_of(&session),
        session_len,
        ..Default::default()
    };
    if session_len == 0 {
        // A zero length would be read as another query.
        return Err(reject(id::SEND_START, libc::EINVAL));
    }
    vm(vm_fd, id::SEND_START, data_of(&mut k))?;
    session.truncate(k.session_len as usize);
    Ok(SendStartOut {
        policy: k.policy,
        session,
    })
}

/// `KVM_SEV_SEND_START` (length query, then the real call).
pub fn send_start(vm_fd: BorrowedFd<'_>, p: &SendStart<'_>) -> Result<SendStartOut> {
    let (len, _) = send_start_len(vm_fd)?;
    send_start_fetch(vm_fd, p, len)
}

/// What [`send_update_data`] returns: the packet header and the encrypted data.
#[derive(Debug)]
pub struct SendUpdateOut {
    /// Packet header.
    pub hdr: SecretBuf,
    /// Transport data.
    pub trans: SecretBuf,
}

/// `KVM_SEV_SEND_UPDATE_DATA` length query: `(header length, transport length)`.
pub fn send_update_data_len(vm_fd: BorrowedFd<'_>) -> Result<(u32, u32)> {
    let mut k = kvm_sev_send_update_data::default();
    query(vm_fd, id::SEND_UPDATE_DATA, &mut k, |k| {
        k.hdr_len != 0 && k.trans_len != 0
    })?;
    Ok((k.hdr_len, k.trans_len))
}

pub(crate) fn send_update_data_fetch(
    vm_fd: BorrowedFd<'_>,
    guest_uaddr: u64,
    guest_len: usize,
    hdr_len: u32,
    trans_len: u32,
) -> Result<SendUpdateOut> {
    let mut hdr = blob(id::SEND_UPDATE_DATA, hdr_len)?;
    let mut trans = blob(id::SEND_UPDATE_DATA, trans_len)?;
    if hdr_len == 0 || trans_len == 0 {
        return Err(reject(id::SEND_UPDATE_DATA, libc::EINVAL));
    }
    let mut k = kvm_sev_send_update_data {
        hdr_uaddr: hdr.as_mut_ptr() as u64,
        hdr_len,
        guest_uaddr,
        guest_len: l32(id::SEND_UPDATE_DATA, guest_len)?,
        trans_uaddr: trans.as_mut_ptr() as u64,
        trans_len,
        ..Default::default()
    };
    vm(vm_fd, id::SEND_UPDATE_DATA, data_of(&mut k))?;
    hdr.truncate(k.hdr_len as usize);
    trans.truncate(k.trans_len as usize);
    Ok(SendUpdateOut { hdr, trans })
}

/// `KVM_SEV_SEND_UPDATE_DATA`: encrypts `guest_len` bytes (within one page) of guest memory at
/// `guest_uaddr` for transport (length query, then the real call).
pub fn send_update_data(
    vm_fd: BorrowedFd<'_>,
    guest_uaddr: u64,
    guest_len: usize,
) -> Result<SendUpdateOut> {
    let (hdr_len, trans_len) = send_update_data_len(vm_fd)?;
    send_update_data_fetch(vm_fd, guest_uaddr, guest_len, hdr_len, trans_len)
}

/// `KVM_SEV_SEND_FINISH`.
pub fn send_finish(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::SEND_FINISH, 0)
}

/// `KVM_SEV_SEND_CANCEL`.
pub fn send_cancel(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::SEND_CANCEL, 0)
}

/// `KVM_SEV_RECEIVE_FINISH`.
pub fn receive_finish(vm_fd: BorrowedFd<'_>) -> Result<()> {
    vm(vm_fd, id::RECEIVE_FINISH, 0)
}
