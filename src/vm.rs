//! Typed, borrowed handles in the kvm-ioctls style: [`EncVm`] for a VM descriptor and
//! [`EncVcpu`] for a vCPU descriptor, so a VM command cannot be sent to a vCPU at compile time.
//! Each method is one sub-command (or a launch step); all return [`Result`] with the one
//! [`Error`] type, which converts into [`std::io::Error`].
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! # fn main() -> std::io::Result<()> {
//! let kvm = std::fs::File::open("/dev/kvm")?;
//! # let vm_file = kvm; // a real VMM gets this from KVM_CREATE_VM
//! let vm = memenc::EncVm::new(vm_file.as_fd());
//! vm.sev_init2(&memenc::helpers::sev::Init2::default())?; // io::Error via From
//! # Ok(()) }
//! ```

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use crate::abi::mem_enc_cmd;
use crate::helpers::{mem, sev, snp, tdx};
use crate::uapi::kvm_cpuid_entry2;

pub use crate::helpers::{Error, Result};

/// A KVM VM descriptor, borrowed for `'fd` (never closed by memenc).
#[derive(Clone, Copy, Debug)]
pub struct EncVm<'fd> {
    fd: BorrowedFd<'fd>,
}

/// A KVM vCPU descriptor, borrowed for `'fd` (TDX INIT_VCPU, INIT_MEM_REGION, GET_CPUID).
#[derive(Clone, Copy, Debug)]
pub struct EncVcpu<'fd> {
    fd: BorrowedFd<'fd>,
}

impl<'fd> EncVm<'fd> {
    /// Wraps a VM descriptor the caller keeps open for `'fd`.
    pub fn new(fd: BorrowedFd<'fd>) -> Self {
        EncVm { fd }
    }

    /// Wraps a raw VM descriptor.
    ///
    /// # Safety
    /// `fd` must be an open descriptor that stays open for `'fd`.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: the caller guarantees `fd` is open for `'fd`.
        EncVm::new(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Borrows a kvm-ioctls `VmFd` (cargo feature `kvm-ioctls`).
    #[cfg(feature = "kvm-ioctls")]
    pub fn from_kvm_ioctls(vm: &'fd kvm_ioctls::VmFd) -> Self {
        // SAFETY: the VmFd owns the descriptor and outlives the borrow `'fd`.
        unsafe { EncVm::from_raw_fd(vm.as_raw_fd()) }
    }

    /// The descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'fd> {
        self.fd
    }

    /// `KVM_MEMORY_ENCRYPT_OP` with the caller's command, as `mem_enc_op()` (flags checked,
    /// stale status cleared, MEM_ENC_FLAG_RETRY/CONTINUE honoured). On error the status word in
    /// `cmd` still holds the firmware's answer when the ioctl was issued.
    pub fn encrypt_op(&self, cmd: &mut mem_enc_cmd) -> Result<()> {
        let outcome = crate::op::dispatch(self.fd.as_raw_fd(), cmd);
        crate::op::apply_status(cmd, outcome.status);
        let vendor = crate::host::vendor_of(self.fd.as_raw_fd());
        let name = vendor
            .command(cmd.id)
            .map_or("KVM_MEMORY_ENCRYPT_OP", |c| c.name);
        match (outcome.result, outcome.status) {
            (Ok(()), _) => Ok(()),
            (Err(e), Some(s)) => Err(Error::issued(name, vendor, e, s.raw())),
            (Err(e), None) => Err(Error::rejected(name, vendor, e.0)),
        }
    }

    /// `KVM_SEV_INIT` (legacy SEV on a DEFAULT-type VM).
    pub fn sev_init(&self) -> Result<()> {
        sev::init(self.fd)
    }
    /// `KVM_SEV_ES_INIT` (legacy SEV-ES on a DEFAULT-type VM).
    pub fn sev_es_init(&self) -> Result<()> {
        sev::es_init(self.fd)
    }
    /// `KVM_SEV_INIT2` (SEV, SEV-ES or SNP VM types).
    pub fn sev_init2(&self, p: &sev::Init2) -> Result<()> {
        sev::init2(self.fd, p)
    }
    /// `KVM_SEV_LAUNCH_START`: the guest handle.
    pub fn sev_launch_start(&self, sev_dev: BorrowedFd<'_>, p: &sev::Start<'_>) -> Result<u32> {
        sev::launch_start(self.fd, sev_dev, p)
    }
    /// `KVM_SEV_LAUNCH_UPDATE_DATA` over `len` bytes at `uaddr` (encrypted in place).
    pub fn sev_launch_update_data(&self, uaddr: u64, len: usize) -> Result<()> {
        sev::launch_update_data(self.fd, uaddr, len)
    }
    /// `KVM_SEV_LAUNCH_UPDATE_VMSA` (SEV-ES; every vCPU created). Issued once, never retried.
    pub fn sev_launch_update_vmsa(&self) -> Result<()> {
        sev::launch_update_vmsa(self.fd)
    }
    /// `KVM_SEV_LAUNCH_MEASURE`: the measurement (length query included).
    pub fn sev_launch_measure(&self) -> Result<sev::SecretBuf> {
        sev::launch_measure(self.fd)
    }
    /// `KVM_SEV_LAUNCH_SECRET`.
    pub fn sev_launch_secret(&self, p: &sev::Packet<'_>) -> Result<()> {
        sev::launch_secret(self.fd, p)
    }
    /// `KVM_SEV_LAUNCH_FINISH`.
    pub fn sev_launch_finish(&self) -> Result<()> {
        sev::launch_finish(self.fd)
    }
    /// `KVM_SEV_GUEST_STATUS`.
    pub fn sev_guest_status(&self) -> Result<sev::GuestStatus> {
        sev::guest_status(self.fd)
    }
    /// `KVM_SEV_GET_ATTESTATION_REPORT` (length query included).
    pub fn sev_attestation_report(&self, mnonce: &[u8; 16]) -> Result<sev::SecretBuf> {
        sev::get_attestation_report(self.fd, mnonce)
    }
    /// `KVM_MEMORY_ENCRYPT_REG_REGION` (SEV/SEV-ES: pin guest memory).
    pub fn register_region(&self, addr: u64, size: u64) -> Result<()> {
        mem::register_region(self.fd, addr, size)
    }
    /// `KVM_MEMORY_ENCRYPT_UNREG_REGION`.
    pub fn unregister_region(&self, addr: u64, size: u64) -> Result<()> {
        mem::unregister_region(self.fd, addr, size)
    }
    /// `KVM_SEV_SNP_LAUNCH_START`.
    pub fn snp_launch_start(&self, sev_dev: BorrowedFd<'_>, p: &snp::LaunchStart) -> Result<()> {
        snp::launch_start(self.fd, sev_dev, p)
    }
    /// `KVM_SEV_SNP_LAUNCH_UPDATE` over the whole range; `limit` bounds the rounds without
    /// progress for this call (`None`: the process-wide limit).
    pub fn snp_launch_update(
        &self,
        sev_dev: BorrowedFd<'_>,
        p: &snp::LaunchUpdate,
        limit: Option<u32>,
    ) -> Result<()> {
        snp::launch_update_bounded(self.fd, sev_dev, p, limit)
    }
    /// `KVM_SEV_SNP_LAUNCH_FINISH`.
    pub fn snp_launch_finish(
        &self,
        sev_dev: BorrowedFd<'_>,
        p: &snp::LaunchFinish<'_>,
    ) -> Result<()> {
        snp::launch_finish(self.fd, sev_dev, p)
    }
    /// `KVM_SEV_SNP_ENABLE_REQ_CERTS` (kernel 7.0; before any vCPU): answer the exits with
    /// [`snp::answer_req_certs`].
    pub fn snp_enable_req_certs(&self) -> Result<()> {
        snp::enable_req_certs(self.fd)
    }
    /// `KVM_TDX_CAPABILITIES`.
    pub fn tdx_capabilities(&self) -> Result<tdx::Capabilities> {
        tdx::capabilities(self.fd)
    }
    /// `KVM_TDX_INIT_VM`.
    pub fn tdx_init_vm(&self, p: &tdx::InitVm<'_>) -> Result<()> {
        tdx::init_vm(self.fd, p)
    }
    /// `KVM_TDX_FINALIZE_VM`.
    pub fn tdx_finalize_vm(&self) -> Result<()> {
        tdx::finalize_vm(self.fd)
    }
}

impl<'fd> EncVcpu<'fd> {
    /// Wraps a vCPU descriptor the caller keeps open for `'fd`.
    pub fn new(fd: BorrowedFd<'fd>) -> Self {
        EncVcpu { fd }
    }

    /// Wraps a raw vCPU descriptor.
    ///
    /// # Safety
    /// `fd` must be an open descriptor that stays open for `'fd`.
    pub unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: the caller guarantees `fd` is open for `'fd`.
        EncVcpu::new(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Borrows a kvm-ioctls `VcpuFd` (cargo feature `kvm-ioctls`).
    #[cfg(feature = "kvm-ioctls")]
    pub fn from_kvm_ioctls(vcpu: &'fd kvm_ioctls::VcpuFd) -> Self {
        // SAFETY: the VcpuFd owns the descriptor and outlives the borrow `'fd`.
        unsafe { EncVcpu::from_raw_fd(vcpu.as_raw_fd()) }
    }

    /// The descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'fd> {
        self.fd
    }

    /// `KVM_TDX_INIT_VCPU` with the HOB address in `rcx`.
    pub fn tdx_init_vcpu(&self, rcx: u64) -> Result<()> {
        tdx::init_vcpu(self.fd, rcx)
    }
    /// `KVM_TDX_INIT_MEM_REGION` over the whole range; `limit` bounds the re-issues for this
    /// call (`None`: the process-wide limit).
    pub fn tdx_init_mem_region(&self, p: &tdx::MemRegion, limit: Option<u32>) -> Result<()> {
        tdx::init_mem_region_bounded(self.fd, p, limit)
    }
    /// `KVM_TDX_GET_CPUID`.
    pub fn tdx_get_cpuid(&self) -> Result<Vec<kvm_cpuid_entry2>> {
        tdx::get_cpuid(self.fd)
    }
}

impl From<Error> for std::io::Error {
    /// The errno as an `io::Error` of that OS code, with the command, stage and firmware
    /// status kept in the message (`std::io::Error::other` would lose the errno).
    fn from(e: Error) -> Self {
        let kind = std::io::Error::from_raw_os_error(e.errno.0).kind();
        std::io::Error::new(kind, e)
    }
}

impl Error {
    /// The errno, as `std::io::Error::raw_os_error()` would give it for the kernel's error.
    pub fn raw_os_error(&self) -> i32 {
        self.errno.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_convert_to_io_errors_with_their_kind() {
        let e = Error::issued(
            "KVM_SEV_INIT2",
            crate::Vendor::Sev,
            crate::Errno(libc::ENOTTY),
            0,
        );
        let io: std::io::Error = e.into();
        assert_eq!(
            io.kind(),
            std::io::Error::from_raw_os_error(libc::ENOTTY).kind()
        );
        assert!(io.to_string().contains("KVM_SEV_INIT2"), "{io}");
        let inner = io
            .get_ref()
            .and_then(|i| i.downcast_ref::<Error>())
            .copied();
        assert_eq!(inner.map(|i| i.raw_os_error()), Some(libc::ENOTTY));
    }

    #[test]
    fn a_closed_descriptor_is_ebadf_through_the_typed_handle() {
        // SAFETY: a descriptor number that is not open; memenc only passes it to ioctl.
        let vm = unsafe { EncVm::from_raw_fd(1_000_000) };
        let e = vm.sev_launch_finish().unwrap_err();
        assert!(e.errno == crate::Errno(libc::EBADF) || e.errno == crate::Errno(libc::ENOTTY));
    }
}
