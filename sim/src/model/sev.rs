//! The SEV, SEV-ES and SEV-SNP model: `sev_mem_enc_ioctl()` and its handlers (kernel-abi.md
//! §2.2-2.6), in the kernel's order, with the firmware (PSP) reduced to its guest state
//! machine, its policy checks and the launch measurements.
//!
//! What is simplified: guest memory is not actually encrypted (the caller's bytes stay as
//! they were; DBG_DECRYPT/ENCRYPT copy plainly), blobs (DH keys, sessions, secrets, ID-block
//! signatures) are accepted without cryptographic checks. Each vCPU's VMSA is what
//! `sev_es_sync_vmsa()` writes from that vCPU's state ([`super::vmsa`]: KVM's reset state plus
//! every register ioctl the VMM issued).

use super::fault::{Effect, generic_errno};
use super::measure::{SNP_PAGE_NORMAL, SNP_PAGE_VMSA, SNP_VMSA_GPA, SevDigest, SnpDigest};
use super::profile::{
    Profile, SVM_SEV_FEAT_SECURE_TSC, SVM_SEV_FEAT_SNP_ACTIVE, SevCaps, UaddrCheck,
};
use super::registry;
use super::user::{self, Envelope};
use super::vm::{PAGE_SHIFT, PAGE_SIZE, Vm};
use memenc::Errno;
use memenc::uapi::{self, SEV_FW_BLOB_MAX_SIZE, sev_id as id};
use sha2::{Digest, Sha384};

fn err<T>(e: i32) -> Result<T, Errno> {
    Err(Errno(e))
}

/// Firmware status codes the model returns (`SEV_RET_*`).
pub mod status {
    pub const INVALID_GUEST_STATE: u32 = 0x02;
    pub const INVALID_LEN: u32 = 0x04;
    pub const POLICY_FAILURE: u32 = 0x07;
    pub const INVALID_ADDRESS: u32 = 0x09;
    pub const BAD_MEASUREMENT: u32 = 0x0B;
    pub const INVALID_GUEST: u32 = 0x10;
}

/// Length of the LAUNCH_MEASURE blob: measurement (32) + mnonce (16).
pub const LAUNCH_MEASURE_LEN: u32 = 48;
/// Length of the SEV attestation report (mnonce, launch digest, policy, sig usage/algo,
/// reserved, 144-byte signature).
pub const ATTESTATION_REPORT_LEN: u32 = 208;
/// Length of the SEND_START session data.
pub const SEND_SESSION_LEN: u32 = 128;
/// Length of a SEND_UPDATE_DATA packet header.
pub const PACKET_HEADER_LEN: u32 = 52;

const GHCB_VERSION_MAX: u16 = 2;
const GHCB_VERSION_MIN: u16 = 1;
const SEV_POLICY_NODBG: u32 = 1 << 0;
const SEV_POLICY_ES: u32 = 1 << 2;
const SEV_POLICY_NOSEND: u32 = 1 << 3;
const SNP_POLICY_SMT: u64 = 1 << 16;
const SNP_POLICY_RSVD_MBO: u64 = 1 << 17;
const SNP_POLICY_SINGLE_SOCKET: u64 = 1 << 20;
const SNP_PAGE_TYPES: [u8; 5] = [1, 3, 4, 5, 6];
const SNP_PAGE_ZERO: u8 = 3;
const ID_BLOCK_SIZE: usize = 96;
const ID_AUTH_SIZE: usize = 4096;

/// The firmware's guest state (the GUEST_STATUS numbering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Guest {
    #[default]
    None = 0,
    Launching = 1,
    Secret = 2,
    Running = 3,
    Receiving = 4,
    Sending = 5,
    Sent = 6,
}

/// The SEV side of a VM.
#[derive(Debug, Default)]
pub struct State {
    /// The VM type needs KVM_SEV_INIT2 (SEV, SEV-ES and SNP types).
    pub need_init: bool,
    /// INIT/ES_INIT/INIT2 done (`sev_guest`).
    pub active: bool,
    pub es: bool,
    pub vmsa_features: u64,
    pub ghcb_version: u16,
    /// The `/dev/sev` descriptor stored by LAUNCH_START, RECEIVE_START or SNP_LAUNCH_START.
    pub fd: Option<u32>,
    pub handle: u32,
    pub policy: u32,
    pub guest: Guest,
    pub ld: SevDigest,
    pub mnonces: u64,
    pub snp_context: bool,
    pub snp_policy: u64,
    pub snp_ld: SnpDigest,
    pub snp_finished: bool,
    pub req_certs: bool,
    pub regions: Vec<(u64, u64)>,
    pub pages_locked: u64,
}

impl State {
    pub fn new(_profile: &Profile, vm_type: u32) -> State {
        State {
            need_init: matches!(
                vm_type,
                uapi::KVM_X86_SEV_VM | uapi::KVM_X86_SEV_ES_VM | uapi::KVM_X86_SNP_VM
            ),
            ..State::default()
        }
    }

    fn es_guest(&self) -> bool {
        self.active && self.es
    }

    fn snp_guest(&self) -> bool {
        self.es_guest() && self.vmsa_features & SVM_SEV_FEAT_SNP_ACTIVE != 0
    }

    /// Whether a launch measurement exists, and which: SNP (48 bytes) or SEV (32 bytes).
    pub fn digest(&self) -> Option<Vec<u8>> {
        if self.snp_context {
            Some(self.snp_ld.value().to_vec())
        } else if self.guest != Guest::None {
            Some(self.ld.value().to_vec())
        } else {
            None
        }
    }
}

static NEXT_HANDLE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// One command's envelope and its fault.
struct Ctx {
    cmd: Envelope,
    fault: Option<Effect>,
}

impl Ctx {
    /// A firmware command issued through `/dev/sev` descriptor `fd`: -EBADF if that is not an
    /// open simulated /dev/sev (the firmware is not reached and `error` stays as it was);
    /// otherwise `error` = the injected status or `check()`'s, and -EIO when non-zero.
    fn psp(&mut self, fd: u32, check: impl FnOnce() -> u32) -> Result<(), Errno> {
        if !registry::is_sev_device(fd) {
            return err(libc::EBADF);
        }
        let status = match self.fault {
            Some(Effect::FwStatus(s)) => {
                self.fault = None;
                s as u32
            }
            _ => check(),
        };
        self.cmd.set_error(status);
        if status != 0 { err(libc::EIO) } else { Ok(()) }
    }

    /// A firmware command through the stored descriptor (`sev_issue_cmd`).
    fn psp_stored(&mut self, sev: &State, check: impl FnOnce() -> u32) -> Result<(), Errno> {
        self.psp(sev.fd.unwrap_or(u32::MAX), check)
    }

    /// An errno-type fault at the handler's start, for commands without a finer point.
    fn generic_fault(&mut self) -> Result<(), Errno> {
        match self.fault.and_then(generic_errno) {
            Some(e) => {
                self.fault = None;
                Err(e)
            }
            None => Ok(()),
        }
    }
}

fn handled(caps: &SevCaps, cmd: u32) -> bool {
    match cmd {
        id::SEND_UPDATE_VMSA | id::RECEIVE_UPDATE_VMSA | id::CERT_EXPORT => false,
        0..=21 => true,
        id::INIT2 => caps.init2,
        id::SNP_LAUNCH_START..=id::SNP_LAUNCH_FINISH => caps.snp,
        id::SNP_ENABLE_REQ_CERTS => caps.req_certs,
        _ => false,
    }
}

/// KVM_MEMORY_ENCRYPT_OP on an SEV host's VM descriptor (`sev_mem_enc_ioctl`).
pub fn vm_op(vm: &mut Vm, arg: u64) -> Result<i32, Errno> {
    let Some(caps) = vm.profile.sev() else {
        return err(libc::ENOTTY);
    };
    if arg == 0 {
        // The NULL probe: 0 from 6.10; before, the copy below faults.
        return if caps.null_probe {
            Ok(0)
        } else {
            err(libc::EFAULT)
        };
    }
    let cmd = Envelope::read(arg)?;
    if vm.sev.snp_guest() && cmd.id() < id::SNP_LAUNCH_START {
        return err(libc::EPERM);
    }
    if cmd.id() == id::ES_INIT && !caps.es {
        return err(libc::ENOTTY);
    }
    if !handled(caps, cmd.id()) {
        return err(libc::EINVAL);
    }
    let fault = vm.faults.take(cmd.id());
    let mut ctx = Ctx { cmd, fault };
    let r = handle(vm, caps, &mut ctx);
    // After any handled id, success or not, the 24 bytes go back.
    ctx.cmd.write(arg)?;
    r.map(|()| 0)
}

fn handle(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx) -> Result<(), Errno> {
    let data = ctx.cmd.data();
    match ctx.cmd.id() {
        id::INIT | id::ES_INIT => init_legacy(vm, ctx),
        id::INIT2 => init2(vm, ctx, data),
        id::LAUNCH_START => launch_start(vm, caps, ctx, data),
        id::LAUNCH_UPDATE_DATA => launch_update_data(vm, ctx, data),
        id::LAUNCH_UPDATE_VMSA => launch_update_vmsa(vm, ctx),
        id::LAUNCH_SECRET => launch_secret(vm, ctx, data),
        id::LAUNCH_MEASURE => launch_measure(vm, caps, ctx, data),
        id::LAUNCH_FINISH => simple(vm, ctx, Guest::Secret, Guest::Running),
        id::GUEST_STATUS => guest_status(vm, ctx, data),
        id::DBG_DECRYPT | id::DBG_ENCRYPT => dbg(vm, ctx, data),
        id::GET_ATTESTATION_REPORT => attestation(vm, ctx, data),
        id::SEND_START => send_start(vm, ctx, data),
        id::SEND_UPDATE_DATA => send_update_data(vm, ctx, data),
        id::SEND_FINISH => simple(vm, ctx, Guest::Sending, Guest::Sent),
        id::SEND_CANCEL => simple(vm, ctx, Guest::Sending, Guest::Running),
        id::RECEIVE_START => receive_start(vm, ctx, data),
        id::RECEIVE_UPDATE_DATA => receive_update_data(vm, ctx, data),
        id::RECEIVE_FINISH => simple(vm, ctx, Guest::Receiving, Guest::Running),
        id::SNP_LAUNCH_START => snp_launch_start(vm, caps, ctx, data),
        id::SNP_LAUNCH_UPDATE => snp_launch_update(vm, caps, ctx, data),
        id::SNP_LAUNCH_FINISH => snp_launch_finish(vm, caps, ctx, data),
        id::SNP_ENABLE_REQ_CERTS => enable_req_certs(vm, ctx),
        _ => err(libc::EINVAL),
    }
}

/// The firmware's check that a guest exists and is in `state`.
fn in_state(sev: &State, states: &[Guest]) -> u32 {
    if sev.handle == 0 {
        status::INVALID_GUEST
    } else if !states.contains(&sev.guest) {
        status::INVALID_GUEST_STATE
    } else {
        0
    }
}

fn require_init(vm: &Vm) -> Result<(), Errno> {
    if vm.sev.active {
        Ok(())
    } else {
        err(libc::ENOTTY)
    }
}

// ---- INIT, ES_INIT, INIT2 (`sev_guest_init`, `sev_guest_init2`, `__sev_guest_init`) ----

fn init_legacy(vm: &mut Vm, ctx: &mut Ctx) -> Result<(), Errno> {
    if vm.vm_type != uapi::KVM_X86_DEFAULT_VM {
        return err(libc::EINVAL);
    }
    let es = ctx.cmd.id() == id::ES_INIT;
    let ghcb = if es { GHCB_VERSION_MIN } else { 0 };
    let vm_type = if es {
        uapi::KVM_X86_SEV_ES_VM
    } else {
        uapi::KVM_X86_SEV_VM
    };
    guest_init(vm, ctx, 0, 0, ghcb, vm_type)
}

fn init2(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    if !matches!(
        vm.vm_type,
        uapi::KVM_X86_SEV_VM | uapi::KVM_X86_SEV_ES_VM | uapi::KVM_X86_SNP_VM
    ) || !vm.sev.need_init
    {
        return err(libc::EINVAL);
    }
    let p: uapi::kvm_sev_init = user::read(data)?;
    guest_init(
        vm,
        ctx,
        p.flags,
        p.vmsa_features,
        p.ghcb_version,
        vm.vm_type,
    )
}

fn guest_init(
    vm: &mut Vm,
    ctx: &mut Ctx,
    flags: u32,
    vmsa_features: u64,
    ghcb_version: u16,
    vm_type: u32,
) -> Result<(), Errno> {
    let es = vm_type != uapi::KVM_X86_SEV_VM;
    let snp = vm_type == uapi::KVM_X86_SNP_VM;
    if vm.created_vcpus() > 0 || flags != 0 {
        return err(libc::EINVAL);
    }
    let mut valid = if es {
        vm.profile.sev().map_or(0, |c| c.vmsa_features)
    } else {
        0
    };
    if !snp {
        valid &= !SVM_SEV_FEAT_SECURE_TSC;
    }
    if vmsa_features & !valid != 0 {
        return err(libc::EINVAL);
    }
    if ghcb_version > GHCB_VERSION_MAX || (!es && ghcb_version != 0) {
        return err(libc::EINVAL);
    }
    let ghcb_version = if es && ghcb_version == 0 {
        GHCB_VERSION_MAX
    } else {
        ghcb_version
    };
    // "KVM: SEV: Enforce minimum GHCB version requirement for SEV-SNP guests" (Aug 2025,
    // with Secure TSC: 6.18); 6.11 lets an SNP guest start with GHCB version 1.
    let min2 = vm.profile.sev().is_some_and(|c| c.snp_ghcb_min2);
    if snp && min2 && ghcb_version < 2 {
        return err(libc::EINVAL);
    }
    if vm.sev.active {
        return err(libc::EINVAL);
    }
    ctx.generic_fault()?;
    if let Some(Effect::FwStatus(s)) = ctx.fault.take() {
        // sev_platform_init() failed: `error` = its firmware code.
        ctx.cmd.set_error(s as u32);
        return err(libc::EIO);
    }
    let sev = &mut vm.sev;
    sev.active = true;
    sev.need_init = false;
    sev.es = es;
    sev.vmsa_features = vmsa_features | if snp { SVM_SEV_FEAT_SNP_ACTIVE } else { 0 };
    sev.ghcb_version = ghcb_version;
    Ok(())
}

// ---- The SEV launch ----

/// `psp_copy_user_blob`: -EINVAL for a zero address or length or one over 16 KiB, -EFAULT
/// when unreadable.
fn copy_blob(uaddr: u64, len: u32) -> Result<Vec<u8>, Errno> {
    if uaddr == 0 || len == 0 || len > SEV_FW_BLOB_MAX_SIZE {
        return err(libc::EINVAL);
    }
    user::read_vec(uaddr, len as usize)
}

/// `sev_pin_memory`: -EINVAL for an empty or wrapping range, -ENOMEM over RLIMIT_MEMLOCK
/// (without CAP_IPC_LOCK, approximated by euid 0) or when a page cannot be pinned.
fn pin(sev: &State, uaddr: u64, len: u64) -> Result<u64, Errno> {
    let Some(end) = uaddr.checked_add(len).filter(|_| len != 0) else {
        return err(libc::EINVAL);
    };
    let npages = ((end - 1) >> PAGE_SHIFT) - (uaddr >> PAGE_SHIFT) + 1;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `lim`; geteuid has no preconditions.
    let (limited, root) = unsafe {
        (
            libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) == 0,
            libc::geteuid() == 0,
        )
    };
    if limited && !root && (sev.pages_locked + npages) > lim.rlim_cur / PAGE_SIZE {
        return err(libc::ENOMEM);
    }
    let mut probe = [0u8; 1];
    for addr in [uaddr, end - 1] {
        if super::target::read_user(addr, &mut probe).is_none() {
            return err(libc::ENOMEM);
        }
    }
    Ok(npages)
}

fn launch_start(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_launch_start = user::read(data)?;
    if p.dh_uaddr != 0 {
        copy_blob(p.dh_uaddr, p.dh_len)?;
    }
    if p.session_uaddr != 0 {
        copy_blob(p.session_uaddr, p.session_len)?;
    }
    ctx.generic_fault()?;
    let es = vm.sev.es;
    let api = (u32::from(caps.api.0), u32::from(caps.api.1));
    let sev_fd = ctx.cmd.sev_fd();
    ctx.psp(sev_fd, || {
        let policy_api = ((p.policy >> 16) & 0xff, p.policy >> 24);
        match start_status(p.handle, p.policy, es) {
            0 if policy_api > api => status::POLICY_FAILURE,
            s => s,
        }
    })?;
    let policy = p.policy;
    bind_new_guest(vm, policy, sev_fd, Guest::Launching, |handle| {
        p.handle = handle;
        user::write(data, &p)
    })?;
    vm.sev.ld = SevDigest::default();
    Ok(())
}

/// The firmware checks LAUNCH_START and RECEIVE_START share: a new guest (handle 0) whose
/// policy's ES bit matches the VM.
fn start_status(handle: u32, policy: u32, es: bool) -> u32 {
    if handle != 0 {
        status::INVALID_GUEST
    } else if (policy & SEV_POLICY_ES != 0) != es {
        status::POLICY_FAILURE
    } else {
        0
    }
}

/// After LAUNCH_START / RECEIVE_START succeeded in firmware: a new guest handle, copied back
/// by `write_back` first (a failed copy leaves the VM unbound, as in the kernel), then bound.
fn bind_new_guest(
    vm: &mut Vm,
    policy: u32,
    sev_fd: u32,
    guest: Guest,
    write_back: impl FnOnce(u32) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let handle = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    write_back(handle)?;
    let sev = &mut vm.sev;
    sev.handle = handle;
    sev.policy = policy;
    sev.fd = Some(sev_fd);
    sev.guest = guest;
    Ok(())
}

fn launch_update_data(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let p: uapi::kvm_sev_launch_update_data = user::read(data)?;
    pin(&vm.sev, p.uaddr, u64::from(p.len))?;
    ctx.generic_fault()?;
    // Hash into a copy and keep it only when every byte was readable (pinning would have
    // failed otherwise, before the firmware measured anything).
    let mut ld = vm.sev.ld.clone();
    user::for_each_chunk(p.uaddr, u64::from(p.len), |_, chunk| {
        ld.update(chunk);
        Ok(())
    })
    .map_err(|_| Errno(libc::ENOMEM))?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || match in_state(sev, &[Guest::Launching]) {
        0 if p.uaddr % 16 != 0 => status::INVALID_ADDRESS,
        0 if p.len % 16 != 0 => status::INVALID_LEN,
        s => s,
    })?;
    vm.sev.ld = ld;
    Ok(())
}

/// vCPU `i`'s VMSA as `sev_es_sync_vmsa()` writes it: its register state, the VM's
/// `sev_features`, and the FPU area only for VMs of a type other than DEFAULT (INIT2 SEV-ES and
/// SNP; KVM_SEV_ES_INIT VMs skip that sync "to avoid breaking older measurements").
fn vcpu_vmsa(vm: &Vm, i: usize) -> Result<Box<[u8; super::vmsa::VMSA_SIZE]>, Errno> {
    let variant = if vm.vm_type == uapi::KVM_X86_DEFAULT_VM {
        super::vmsa::SyncVariant::LEGACY
    } else {
        super::vmsa::SyncVariant::INIT2
    };
    super::vmsa::sync_vmsa(&vm.vcpus[i].state, vm.sev.vmsa_features, variant)
        .map_err(|e| Errno(e.abs()))
}

/// The vCPU-lock step of LAUNCH_UPDATE_VMSA and SNP_LAUNCH_FINISH (`kvm_lock_all_vcpus`, or
/// the older per-vCPU `mutex_lock_killable`): a fatal signal is -EINTR, nothing else fails.
/// (No SEV kernel has an -EBUSY "vCPU being created" check here; only an unmerged patch.)
fn lock_all_vcpus(ctx: &mut Ctx) -> Result<(), Errno> {
    if ctx.fault == Some(Effect::Signal) {
        ctx.fault = None;
        return err(libc::EINTR);
    }
    Ok(())
}

fn launch_update_vmsa(vm: &mut Vm, ctx: &mut Ctx) -> Result<(), Errno> {
    if !vm.sev.es_guest() {
        return err(libc::ENOTTY);
    }
    lock_all_vcpus(ctx)?;
    ctx.generic_fault()?;
    let guard = vm.profile.sev().is_some_and(|c| c.vmsa_protected_guard);
    for i in 0..vm.vcpus.len() {
        // Only the newest kernels refuse an already protected vCPU (`sev_es_sync_vmsa`);
        // up to 7.0 it is re-synced, re-encrypted and measured again.
        if guard && vm.vcpus[i].protected {
            return err(libc::EINVAL);
        }
        let page = vcpu_vmsa(vm, i)?;
        let sev = &vm.sev;
        ctx.psp_stored(sev, || in_state(sev, &[Guest::Launching]))?;
        vm.sev.ld.update(&page[..]);
        vm.vcpus[i].protected = true;
    }
    Ok(())
}

fn launch_secret(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let p: uapi::kvm_sev_launch_secret = user::read(data)?;
    pin(&vm.sev, p.guest_uaddr, u64::from(p.guest_len))?;
    copy_blob(p.hdr_uaddr, p.hdr_len)?;
    copy_blob(p.trans_uaddr, p.trans_len)?;
    ctx.generic_fault()?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || in_state(sev, &[Guest::Secret]))
}

fn mnonce(sev: &mut State) -> [u8; 16] {
    sev.mnonces += 1;
    let mut n = [0x4Du8; 16];
    n[..4].copy_from_slice(&sev.handle.to_le_bytes());
    n[4..12].copy_from_slice(&sev.mnonces.to_le_bytes());
    n
}

/// The firmware step of LAUNCH_MEASURE and GET_ATTESTATION_REPORT, which answer `answer_len`
/// bytes into the caller's `buf` (uaddr, len): `-EINVAL` above the blob limit; a length query
/// (len 0) or a NULL or short buffer gets INVALID_LEN with the needed length. Returns whether
/// it was a query, the firmware result, and the length to write back (the answer's when the
/// firmware succeeded or asked for it, else 0).
fn fixed_answer(
    ctx: &mut Ctx,
    sev: &State,
    states: &[Guest],
    buf: (u64, u32),
    answer_len: u32,
) -> Result<(bool, Result<(), Errno>, u32), Errno> {
    let (uaddr, len) = buf;
    let query = len == 0;
    if !query && uaddr != 0 && len > SEV_FW_BLOB_MAX_SIZE {
        return err(libc::EINVAL);
    }
    ctx.generic_fault()?;
    // The buffer the firmware is given: none for a query or a NULL uaddr.
    let given = if query || uaddr == 0 { 0 } else { len };
    let mut out_len = 0;
    let r = ctx.psp_stored(sev, || match in_state(sev, states) {
        0 if given < answer_len => {
            out_len = answer_len;
            status::INVALID_LEN
        }
        s => s,
    });
    if r.is_ok() && !query {
        out_len = answer_len;
    }
    Ok((query, r, out_len))
}

fn launch_measure(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_launch_measure = user::read(data)?;
    let (query, r, out_len) = fixed_answer(
        ctx,
        &vm.sev,
        &[Guest::Launching],
        (p.uaddr, p.len),
        LAUNCH_MEASURE_LEN,
    )?;
    if !query {
        r?;
        let nonce = mnonce(&mut vm.sev);
        let sev = &mut vm.sev;
        let mac = super::measure::sev_measurement(caps.api, sev.policy, &sev.ld.value(), &nonce);
        let mut blob = mac.to_vec();
        blob.extend_from_slice(&nonce);
        sev.guest = Guest::Secret;
        user::write_bytes(p.uaddr, &blob)?;
    }
    p.len = out_len;
    user::write(data, &p)?;
    r
}

fn simple(vm: &mut Vm, ctx: &mut Ctx, from: Guest, to: Guest) -> Result<(), Errno> {
    require_init(vm)?;
    ctx.generic_fault()?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || in_state(sev, &[from]))?;
    vm.sev.guest = to;
    Ok(())
}

fn guest_status(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    ctx.generic_fault()?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || {
        if sev.handle == 0 {
            status::INVALID_GUEST
        } else {
            0
        }
    })?;
    let out = uapi::kvm_sev_guest_status {
        handle: sev.handle,
        policy: sev.policy,
        state: sev.guest as u32,
    };
    user::write(data, &out)
}

fn dbg(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let p: uapi::kvm_sev_dbg = user::read(data)?;
    if p.len == 0 || p.src_uaddr.checked_add(u64::from(p.len)).is_none() || p.dst_uaddr == 0 {
        return err(libc::EINVAL);
    }
    ctx.generic_fault()?;
    // sev_dbg_crypt pins the first source page before the firmware sees anything.
    user::read_vec(p.src_uaddr, 1).map_err(|_| Errno(libc::ENOMEM))?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || {
        match in_state(
            sev,
            &[
                Guest::Launching,
                Guest::Secret,
                Guest::Running,
                Guest::Sending,
                Guest::Sent,
                Guest::Receiving,
            ],
        ) {
            0 if sev.policy & SEV_POLICY_NODBG != 0 => status::POLICY_FAILURE,
            s => s,
        }
    })?;
    // Page by page, as sev_dbg_crypt does: a fault part-way leaves the earlier part copied.
    user::for_each_chunk(p.src_uaddr, u64::from(p.len), |offset, chunk| {
        user::write_bytes(p.dst_uaddr.wrapping_add(offset), chunk)
    })
    .map_err(|_| Errno(libc::ENOMEM))
}

fn attestation(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_attestation_report = user::read(data)?;
    let sev = &vm.sev;
    let (query, r, out_len) = fixed_answer(
        ctx,
        sev,
        &[Guest::Secret, Guest::Running],
        (p.uaddr, p.len),
        ATTESTATION_REPORT_LEN,
    )?;
    if !query {
        r?;
        let mut report = vec![0u8; ATTESTATION_REPORT_LEN as usize];
        report[..16].copy_from_slice(&p.mnonce);
        report[16..48].copy_from_slice(&sev.ld.value());
        report[48..52].copy_from_slice(&sev.policy.to_le_bytes());
        user::write_bytes(p.uaddr, &report)?;
    }
    p.len = out_len;
    user::write(data, &p)?;
    r
}

// ---- Migration ----

fn send_start(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_send_start = user::read(data)?;
    let sev = &vm.sev;
    let check = || match in_state(sev, &[Guest::Running]) {
        0 if sev.policy & SEV_POLICY_NOSEND != 0 => status::POLICY_FAILURE,
        s => s,
    };
    if p.session_len == 0 {
        ctx.generic_fault()?;
        let r = ctx.psp_stored(sev, || match check() {
            0 => status::INVALID_LEN,
            s => s,
        });
        p.session_len = if ctx.cmd.error() == status::INVALID_LEN {
            SEND_SESSION_LEN
        } else {
            0
        };
        user::write(data, &p)?;
        return r;
    }
    if p.pdh_cert_uaddr == 0
        || p.pdh_cert_len == 0
        || p.session_uaddr == 0
        || p.session_len > SEV_FW_BLOB_MAX_SIZE
    {
        return err(libc::EINVAL);
    }
    copy_blob(p.pdh_cert_uaddr, p.pdh_cert_len)?;
    copy_blob(p.plat_certs_uaddr, p.plat_certs_len)?;
    copy_blob(p.amd_certs_uaddr, p.amd_certs_len)?;
    ctx.generic_fault()?;
    let mut r = ctx.psp_stored(sev, || match check() {
        0 if p.session_len < SEND_SESSION_LEN => status::INVALID_LEN,
        s => s,
    });
    if r.is_ok() {
        if user::write_bytes(p.session_uaddr, &[0u8; SEND_SESSION_LEN as usize]).is_err() {
            r = err(libc::EFAULT);
        }
        vm.sev.guest = Guest::Sending;
        p.policy = vm.sev.policy;
        p.session_len = SEND_SESSION_LEN;
    }
    user::write(data, &p)?;
    r
}

fn send_update_data(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_send_update_data = user::read(data)?;
    let sev = &vm.sev;
    if p.trans_len == 0 || p.hdr_len == 0 {
        ctx.generic_fault()?;
        let r = ctx.psp_stored(sev, || match in_state(sev, &[Guest::Sending]) {
            0 => status::INVALID_LEN,
            s => s,
        });
        if r.is_err() && ctx.cmd.error() == status::INVALID_LEN {
            p.hdr_len = PACKET_HEADER_LEN;
            p.trans_len = if p.guest_len == 0 {
                PAGE_SIZE as u32
            } else {
                p.guest_len
            };
        }
        user::write(data, &p)?;
        return r;
    }
    if p.trans_uaddr == 0 || p.guest_uaddr == 0 || p.guest_len == 0 || p.hdr_uaddr == 0 {
        return err(libc::EINVAL);
    }
    let offset = p.guest_uaddr & (PAGE_SIZE - 1);
    if u64::from(p.guest_len) > PAGE_SIZE || u64::from(p.guest_len) + offset > PAGE_SIZE {
        return err(libc::EINVAL);
    }
    pin(sev, p.guest_uaddr & !(PAGE_SIZE - 1), PAGE_SIZE)?;
    ctx.generic_fault()?;
    let guest = user::read_vec(p.guest_uaddr, p.guest_len as usize)?;
    ctx.psp_stored(sev, || match in_state(sev, &[Guest::Sending]) {
        0 if p.hdr_len < PACKET_HEADER_LEN || p.trans_len < p.guest_len => status::INVALID_LEN,
        s => s,
    })?;
    user::write_bytes(p.trans_uaddr, &guest)?;
    user::write_bytes(p.hdr_uaddr, &vec![0u8; PACKET_HEADER_LEN as usize])
}

fn receive_start(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    require_init(vm)?;
    let mut p: uapi::kvm_sev_receive_start = user::read(data)?;
    if p.pdh_uaddr == 0 || p.pdh_len == 0 || p.session_uaddr == 0 || p.session_len == 0 {
        return err(libc::EINVAL);
    }
    copy_blob(p.pdh_uaddr, p.pdh_len)?;
    copy_blob(p.session_uaddr, p.session_len)?;
    ctx.generic_fault()?;
    let es = vm.sev.es;
    let sev_fd = ctx.cmd.sev_fd();
    ctx.psp(sev_fd, || start_status(p.handle, p.policy, es))?;
    let policy = p.policy;
    bind_new_guest(vm, policy, sev_fd, Guest::Receiving, |handle| {
        p.handle = handle;
        user::write(data, &p)
    })
}

fn receive_update_data(vm: &mut Vm, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    // The one handler that answers -EINVAL, not -ENOTTY, before INIT.
    if !vm.sev.active {
        return err(libc::EINVAL);
    }
    let p: uapi::kvm_sev_receive_update_data = user::read(data)?;
    if p.hdr_uaddr == 0
        || p.hdr_len == 0
        || p.guest_uaddr == 0
        || p.guest_len == 0
        || p.trans_uaddr == 0
        || p.trans_len == 0
    {
        return err(libc::EINVAL);
    }
    let offset = p.guest_uaddr & (PAGE_SIZE - 1);
    if u64::from(p.guest_len) > PAGE_SIZE || u64::from(p.guest_len) + offset > PAGE_SIZE {
        return err(libc::EINVAL);
    }
    copy_blob(p.hdr_uaddr, p.hdr_len)?;
    copy_blob(p.trans_uaddr, p.trans_len)?;
    pin(&vm.sev, p.guest_uaddr & !(PAGE_SIZE - 1), PAGE_SIZE)?;
    ctx.generic_fault()?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || in_state(sev, &[Guest::Receiving]))
}

// ---- SEV-SNP ----

fn snp_launch_start(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    if !vm.sev.snp_guest() {
        return err(libc::ENOTTY);
    }
    let p: uapi::kvm_sev_snp_launch_start = user::read(data)?;
    if vm.sev.snp_context {
        return err(libc::EINVAL);
    }
    let sev_fd = ctx.cmd.sev_fd();
    // SNP_GCTX_CREATE through the caller's sev_fd; any failure is -ENOTTY.
    let create_context = |vm: &mut Vm, ctx: &mut Ctx| -> Result<(), Errno> {
        if !registry::is_sev_device(sev_fd) {
            return err(libc::ENOTTY);
        }
        ctx.cmd.set_error(0);
        vm.sev.snp_context = true;
        vm.sev.snp_ld = SnpDigest::default();
        Ok(())
    };
    if caps.snp_start_context_first {
        // 6.11: the context is created first and outlives a failed check below.
        create_context(vm, ctx)?;
        if p.flags != 0
            || p.policy & !caps.supported_policy_bits() != 0
            || p.policy & SNP_POLICY_RSVD_MBO == 0
            || p.policy & SNP_POLICY_SINGLE_SOCKET != 0
            || p.policy & SNP_POLICY_SMT == 0
        {
            return err(libc::EINVAL);
        }
    } else {
        if p.flags != 0
            || p.policy & !caps.supported_policy_bits() != 0
            || p.policy & SNP_POLICY_RSVD_MBO == 0
        {
            return err(libc::EINVAL);
        }
        create_context(vm, ctx)?;
    }
    ctx.generic_fault()?;
    let r = ctx.psp(sev_fd, || 0);
    if r.is_err() {
        // snp_decommission_context()
        vm.sev.snp_context = false;
        return r;
    }
    vm.sev.fd = Some(sev_fd);
    vm.sev.snp_policy = p.policy;
    Ok(())
}

fn snp_launch_update(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    if !vm.sev.snp_guest() || !vm.sev.snp_context {
        return err(libc::EINVAL);
    }
    let mut p: uapi::kvm_sev_snp_launch_update = user::read(data)?;
    if p.len == 0 || p.len % PAGE_SIZE != 0 || p.flags != 0 || !SNP_PAGE_TYPES.contains(&p.type_) {
        return err(libc::EINVAL);
    }
    let zero = p.type_ == SNP_PAGE_ZERO;
    let src = if zero { 0 } else { p.uaddr };
    // The up-front source check differs by kernel (see `UaddrCheck`).
    let refused = match caps.snp_update_uaddr {
        UaddrCheck::None => false,
        UaddrCheck::Aligned => src % PAGE_SIZE != 0,
        UaddrCheck::NullAndAligned => src == 0 || src % PAGE_SIZE != 0,
    };
    if !zero && refused {
        return err(libc::EINVAL);
    }
    let npages = vm.gmem_pages_from(p.gfn_start, p.len / PAGE_SIZE)?;
    let stop_after = match ctx.fault.take() {
        Some(Effect::Progress(n)) => n,
        Some(Effect::Signal) => 0,
        other => {
            ctx.fault = other;
            u64::MAX
        }
    };
    // The kernel takes argp->sev_fd once per command. Whether it names a /dev/sev is checked
    // once too: a concurrent close() lands before or after the whole command.
    let sev_device = registry::is_sev_device(ctx.cmd.sev_fd());
    let mut source = user::PageReader::new();
    // kvm_gmem_populate(): the count done if >= 1, else the first page's error.
    let mut done = 0;
    let mut first_error = None;
    let mut fw_error = 0;
    while done < npages {
        let gfn = p.gfn_start + done;
        let page = if done == stop_after {
            Err(Errno(libc::EINTR))
        } else {
            let source_page = (src != 0).then(|| {
                // Read-ahead never goes past the pages this command can still reach.
                let reachable = npages.min(stop_after) - done;
                (&mut source, src.wrapping_add(done * PAGE_SIZE), reachable)
            });
            let target = PopulateTarget {
                gfn,
                page_type: p.type_,
                sev_device,
            };
            snp_populate_page(vm, ctx, target, source_page, &mut fw_error)
        };
        if let Err(e) = page {
            first_error = Some(e);
            break;
        }
        done += 1;
    }
    if done == 0 && first_error.is_some() {
        // Every failure of the first page, the firmware's or not, is -EIO.
        ctx.cmd.set_error(fw_error);
        return err(libc::EIO);
    }
    p.gfn_start += done;
    p.len -= done * PAGE_SIZE;
    if !zero {
        p.uaddr += done * PAGE_SIZE;
    }
    user::write(data, &p)
}

/// The page [`snp_populate_page`] populates.
struct PopulateTarget {
    gfn: u64,
    page_type: u8,
    /// The command's `sev_fd` is an open simulated /dev/sev.
    sev_device: bool,
}

/// One page of `sev_gmem_post_populate` after `kvm_gmem_populate`'s checks. `source`: the
/// reader, this page's source address and how many pages the command can still reach from
/// it; `None` for a ZERO page (no source).
fn snp_populate_page(
    vm: &mut Vm,
    ctx: &mut Ctx,
    target: PopulateTarget,
    source: Option<(&mut user::PageReader, u64, u64)>,
    fw_error: &mut u32,
) -> Result<(), Errno> {
    let PopulateTarget {
        gfn,
        page_type,
        sev_device,
    } = target;
    vm.gmem_page_check(gfn)?;
    // Every source page is copied (-EFAULT where it cannot be); only NORMAL pages are hashed.
    let contents = match source {
        Some((reader, addr, reachable)) if page_type == SNP_PAGE_NORMAL => {
            Some(reader.page_digest(addr, reachable)?)
        }
        Some((reader, addr, reachable)) => {
            reader.page(addr, reachable)?;
            None
        }
        // A NULL source for a page that needs one: `sev_gmem_post_populate`'s
        // WARN_ON_ONCE (a host WARN splat, a panic under panic_on_warn) and -EINVAL, which
        // `snp_launch_update` turns into -EIO with `error` 0 (no firmware call).
        None if page_type != SNP_PAGE_ZERO => return err(libc::EINVAL),
        None => None,
    };
    if !sev_device {
        return err(libc::EBADF);
    }
    let injected = match ctx.fault {
        Some(Effect::FwStatus(s)) => {
            ctx.fault = None;
            s as u32
        }
        _ => 0,
    };
    let state = if vm.sev.snp_finished {
        status::INVALID_GUEST_STATE
    } else {
        injected
    };
    if state != 0 {
        *fw_error = state;
        return err(libc::EIO);
    }
    vm.sev
        .snp_ld
        .update(page_type, gfn << PAGE_SHIFT, contents.as_ref());
    vm.populated.insert(gfn);
    Ok(())
}

fn snp_launch_finish(vm: &mut Vm, caps: &SevCaps, ctx: &mut Ctx, data: u64) -> Result<(), Errno> {
    if !vm.sev.snp_guest() {
        return err(libc::ENOTTY);
    }
    if !vm.sev.snp_context {
        return err(libc::EINVAL);
    }
    let p: uapi::kvm_sev_snp_launch_finish = user::read(data)?;
    if p.flags != 0 {
        return err(libc::EINVAL);
    }
    if caps.snp_finish_locks_vcpus {
        lock_all_vcpus(ctx)?;
    } else if ctx.fault == Some(Effect::Signal) {
        // 6.17-era snp_launch_finish takes no vCPU lock and checks no signal: no effect.
        ctx.fault = None;
    }
    // snp_launch_update_vmsa(): every vCPU's VMSA, through the caller's sev_fd.
    let sev_fd = ctx.cmd.sev_fd();
    for i in 0..vm.vcpus.len() {
        if vm.vcpus[i].protected {
            return err(libc::EINVAL);
        }
        let vmsa: [u8; 48] = Sha384::digest(&vcpu_vmsa(vm, i)?[..]).into();
        let finished = vm.sev.snp_finished;
        ctx.psp(sev_fd, || {
            if finished {
                status::INVALID_GUEST_STATE
            } else {
                0
            }
        })?;
        vm.sev
            .snp_ld
            .update(SNP_PAGE_VMSA, SNP_VMSA_GPA, Some(&vmsa));
        vm.vcpus[i].protected = true;
    }
    let mut id_block = None;
    if p.id_block_en != 0 {
        id_block = Some(user::read_vec(p.id_block_uaddr, ID_BLOCK_SIZE)?);
        user::read_vec(p.id_auth_uaddr, ID_AUTH_SIZE)?;
    }
    ctx.generic_fault()?;
    let sev = &vm.sev;
    ctx.psp_stored(sev, || {
        if sev.snp_finished {
            return status::INVALID_GUEST_STATE;
        }
        match &id_block {
            Some(b) if b[..48] != sev.snp_ld.value() => status::BAD_MEASUREMENT,
            Some(b) if b[88..96] != sev.snp_policy.to_le_bytes() => status::POLICY_FAILURE,
            _ => 0,
        }
    })?;
    vm.sev.snp_finished = true;
    Ok(())
}

fn enable_req_certs(vm: &mut Vm, ctx: &mut Ctx) -> Result<(), Errno> {
    if !vm.sev.snp_guest() || vm.created_vcpus() > 0 {
        return err(libc::EINVAL);
    }
    ctx.generic_fault()?;
    vm.sev.req_certs = true;
    Ok(())
}

// ---- KVM_MEMORY_ENCRYPT_REG_REGION / UNREG_REGION ----

/// `sev_mem_enc_register_region` / `sev_mem_enc_unregister_region`.
pub fn region(vm: &mut Vm, r: &uapi::kvm_enc_region, register: bool) -> Result<(), Errno> {
    require_init(vm)?;
    if register {
        let npages = pin(&vm.sev, r.addr, r.size)?;
        vm.sev.pages_locked += npages;
        vm.sev.regions.push((r.addr, r.size));
        return Ok(());
    }
    let Some(i) = vm.sev.regions.iter().position(|&x| x == (r.addr, r.size)) else {
        return err(libc::EINVAL);
    };
    vm.sev.regions.remove(i);
    let end = r.addr + r.size;
    let npages = ((end - 1) >> PAGE_SHIFT) - (r.addr >> PAGE_SHIFT) + 1;
    vm.sev.pages_locked = vm.sev.pages_locked.saturating_sub(npages);
    Ok(())
}
