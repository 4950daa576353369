//! AMD SEV-SNP sub-commands. All go to the VM descriptor; the launch commands also take an
//! open `/dev/sev` descriptor (SNP_LAUNCH_UPDATE and FINISH read it on every call).

use std::os::fd::BorrowedFd;

use super::{Error, Result, data_of, issue, issue_limited, name};
use crate::abi::MEM_ENC_FLAG_CONTINUE;
use crate::uapi::{
    kvm_sev_snp_launch_finish, kvm_sev_snp_launch_start, kvm_sev_snp_launch_update, sev_id as id,
};
use crate::vendor::Vendor;

pub use crate::uapi::{
    KVM_SEV_SNP_ID_AUTH_SIZE as SNP_ID_AUTH_SIZE, KVM_SEV_SNP_ID_BLOCK_SIZE as SNP_ID_BLOCK_SIZE,
    SNP_POLICY_RSVD_MBO,
};
/// Page size of SNP_LAUNCH_UPDATE ranges.
pub const PAGE_SIZE: u64 = 4096;

fn reject(cmd: u32, errno: i32) -> Error {
    Error::rejected(name(Vendor::Sev, cmd), Vendor::Sev, errno)
}

/// Parameters of [`launch_start`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchStart {
    /// Guest policy; bit 17 (must be one) is set by memenc.
    pub policy: u64,
    /// Guest OS visible workarounds (GOSVW).
    pub gosvw: [u8; 16],
}

/// `KVM_SEV_SNP_LAUNCH_START` (after INIT2 on an SNP VM).
pub fn launch_start(vm_fd: BorrowedFd<'_>, sev: BorrowedFd<'_>, p: &LaunchStart) -> Result<()> {
    let mut k = kvm_sev_snp_launch_start {
        policy: p.policy | SNP_POLICY_RSVD_MBO,
        gosvw: p.gosvw,
        ..Default::default()
    };
    issue(
        vm_fd,
        Vendor::Sev,
        id::SNP_LAUNCH_START,
        0,
        data_of(&mut k),
        Some(sev),
    )
}

/// SNP page types (`KVM_SEV_SNP_PAGE_TYPE_*`).
pub mod page_type {
    /// Normal data page (measured).
    pub const NORMAL: u8 = 1;
    /// Zero page (no source).
    pub const ZERO: u8 = 3;
    /// Unmeasured page.
    pub const UNMEASURED: u8 = 4;
    /// Secrets page.
    pub const SECRETS: u8 = 5;
    /// CPUID page (the firmware may correct it and the kernel copies the fix back to the source).
    pub const CPUID: u8 = 6;
}

/// Parameters of [`launch_update`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchUpdate {
    /// First guest frame number; it must be private and backed by guest_memfd.
    pub gfn_start: u64,
    /// Source address in user space: non-zero and 4 KiB aligned for every page type but ZERO
    /// (not read for ZERO pages). memenc refuses a NULL or unaligned source with -EINVAL before
    /// any ioctl: kernels up to 7.0 hit a `WARN_ON_ONCE` for NULL (a host panic under
    /// `panic_on_warn`) and fail with -EIO; 6.x up to 6.19 measure an unaligned source as is.
    pub uaddr: u64,
    /// Length in bytes: a non-zero multiple of 4096.
    pub len: u64,
    /// One of [`page_type`].
    pub page_type: u8,
}

/// `KVM_SEV_SNP_LAUNCH_UPDATE` over the whole range: re-issued with the kernel's advanced
/// `gfn_start`/`uaddr`/`len` until `len` is 0. On failure, `Error::reached` is the first GFN
/// not added. -EIO with firmware status 0 means the kernel stopped before the firmware (a
/// signal, a GFN that is not private, a page already prepared): stage [`Stage::Kvm`].
///
/// [`Stage::Kvm`]: crate::fwerr::Stage::Kvm
pub fn launch_update(vm_fd: BorrowedFd<'_>, sev: BorrowedFd<'_>, p: &LaunchUpdate) -> Result<()> {
    launch_update_bounded(vm_fd, sev, p, None)
}

/// [`launch_update`] with this call's own bound on rounds without progress (`None`: the
/// process-wide limit, [`crate::helpers::retry_limit`]).
pub fn launch_update_bounded(
    vm_fd: BorrowedFd<'_>,
    sev: BorrowedFd<'_>,
    p: &LaunchUpdate,
    limit: Option<u32>,
) -> Result<()> {
    let bad_source = p.page_type != page_type::ZERO && (p.uaddr == 0 || p.uaddr % PAGE_SIZE != 0);
    if p.len == 0 || p.len % PAGE_SIZE != 0 || bad_source {
        return Err(Error {
            reached: Some(p.gfn_start),
            ..reject(id::SNP_LAUNCH_UPDATE, libc::EINVAL)
        });
    }
    let mut k = kvm_sev_snp_launch_update {
        gfn_start: p.gfn_start,
        uaddr: p.uaddr,
        len: p.len,
        type_: p.page_type,
        ..Default::default()
    };
    let r = issue_limited(
        vm_fd,
        Vendor::Sev,
        id::SNP_LAUNCH_UPDATE,
        MEM_ENC_FLAG_CONTINUE,
        data_of(&mut k),
        Some(sev),
        limit,
    );
    r.map_err(|e| Error {
        reached: Some(k.gfn_start),
        ..e
    })
}

/// Parameters of [`launch_finish`].
#[derive(Clone, Copy, Debug)]
pub struct LaunchFinish<'a> {
    /// The ID block and its authentication block, or `None` for neither.
    pub id_block: Option<(&'a [u8; SNP_ID_BLOCK_SIZE], &'a [u8; SNP_ID_AUTH_SIZE])>,
    /// Whether the ID authentication block carries an author key.
    pub auth_key_en: bool,
    /// Disable the VCEK for this guest's reports.
    pub vcek_disabled: bool,
    /// Host data included in attestation reports.
    pub host_data: [u8; 32],
}

/// `KVM_SEV_SNP_LAUNCH_FINISH`: encrypts every vCPU's VMSA (all vCPUs must exist) and ends the
/// launch.
pub fn launch_finish(
    vm_fd: BorrowedFd<'_>,
    sev: BorrowedFd<'_>,
    p: &LaunchFinish<'_>,
) -> Result<()> {
    let (id_block_uaddr, id_auth_uaddr) = p
        .id_block
        .map_or((0, 0), |(b, a)| (b.as_ptr() as u64, a.as_ptr() as u64));
    if p.auth_key_en && p.id_block.is_none() {
        return Err(reject(id::SNP_LAUNCH_FINISH, libc::EINVAL));
    }
    let mut k = kvm_sev_snp_launch_finish {
        id_block_uaddr,
        id_auth_uaddr,
        id_block_en: u8::from(p.id_block.is_some()),
        auth_key_en: u8::from(p.auth_key_en),
        vcek_disabled: u8::from(p.vcek_disabled),
        host_data: p.host_data,
        ..Default::default()
    };
    issue(
        vm_fd,
        Vendor::Sev,
        id::SNP_LAUNCH_FINISH,
        0,
        data_of(&mut k),
        Some(sev),
    )
}

/// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (kernel 7.0; before any vCPU is created): the guest's
/// extended guest requests then exit to user space with `KVM_EXIT_SNP_REQ_CERTS`, answered
/// with [`answer_req_certs`]. Kernels before 7.0 answer -EINVAL; the probe reports support
/// through the `KVM_X86_SEV_SNP_REQ_CERTS` attribute.
pub fn enable_req_certs(vm_fd: BorrowedFd<'_>) -> Result<()> {
    issue(vm_fd, Vendor::Sev, id::SNP_ENABLE_REQ_CERTS, 0, 0, None)
}

pub use crate::uapi::{KVM_EXIT_SNP_REQ_CERTS, kvm_exit_snp_req_certs};

/// How user space answers a `KVM_EXIT_SNP_REQ_CERTS` exit (the kernel's protocol, 7.0:
/// `snp_complete_req_certs` reads `ret` with `READ_ONCE` when KVM_RUN is re-entered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqCertsAnswer {
    /// The certificate table was written at `gpa`: KVM issues the guest request to the
    /// firmware (`ret` 0).
    Written,
    /// The buffer is too small: KVM tells the guest `SNP_GUEST_VMM_ERR_INVALID_LEN` with this
    /// many pages in RBX (`ret` ENOSPC, `npages` the pages needed).
    TooSmall {
        /// Pages the certificate table needs.
        npages: u64,
    },
    /// Try again later: the guest sees `SNP_GUEST_VMM_ERR_BUSY` (`ret` EAGAIN).
    Busy,
    /// Failed: the guest sees `SNP_GUEST_VMM_ERR_GENERIC` (`ret` EIO).
    Failed,
}

/// Fills in the answer to a `KVM_EXIT_SNP_REQ_CERTS` exit in the vCPU's `kvm_run`
/// (`run.snp_req_certs`); the VMM then re-enters KVM_RUN. Any other `ret` value makes KVM_RUN
/// fail with -EINVAL, which is why only these four answers exist. `npages` is written only for
/// [`ReqCertsAnswer::TooSmall`], the one case the kernel reads it back.
pub fn answer_req_certs(exit: &mut kvm_exit_snp_req_certs, answer: ReqCertsAnswer) {
    exit.ret = match answer {
        ReqCertsAnswer::Written => 0,
        ReqCertsAnswer::TooSmall { npages } => {
            exit.npages = npages;
            libc::ENOSPC as u64
        }
        ReqCertsAnswer::Busy => libc::EAGAIN as u64,
        ReqCertsAnswer::Failed => libc::EIO as u64,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn req_certs_layout_and_answers() {
        assert_eq!(core::mem::size_of::<kvm_exit_snp_req_certs>(), 24);
        assert_eq!(core::mem::offset_of!(kvm_exit_snp_req_certs, ret), 16);
        assert_eq!(KVM_EXIT_SNP_REQ_CERTS, 43);
        let mut e = kvm_exit_snp_req_certs {
            gpa: 0x1000,
            npages: 1,
            ret: 99,
        };
        answer_req_certs(&mut e, ReqCertsAnswer::TooSmall { npages: 4 });
        assert_eq!((e.gpa, e.npages, e.ret), (0x1000, 4, libc::ENOSPC as u64));
        answer_req_certs(&mut e, ReqCertsAnswer::Written);
        assert_eq!((e.npages, e.ret), (4, 0));
        answer_req_certs(&mut e, ReqCertsAnswer::Busy);
        assert_eq!(e.ret, libc::EAGAIN as u64);
        answer_req_certs(&mut e, ReqCertsAnswer::Failed);
        assert_eq!(e.ret, libc::EIO as u64);
    }
}
