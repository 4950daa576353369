//! Intel TDX sub-commands. CAPABILITIES, INIT_VM and FINALIZE_VM go to the VM descriptor;
//! INIT_VCPU, INIT_MEM_REGION and GET_CPUID to a vCPU descriptor. The kernel reports a
//! SEAMCALL status (`hw_error`) only for INIT_VM and FINALIZE_VM.

use core::mem::size_of;
use std::os::fd::BorrowedFd;

use super::{Error, Result, data_of, issue, issue_limited, name};
use crate::abi::MEM_ENC_FLAG_CONTINUE;
use crate::uapi::{
    KVM_MAX_CPUID_ENTRIES, KVM_TDX_MEASURE_MEMORY_REGION, kvm_cpuid_entry2, kvm_cpuid2_header,
    kvm_tdx_capabilities, kvm_tdx_init_mem_region, kvm_tdx_init_vm, tdx_id as id,
};
use crate::vendor::Vendor;

/// Page size of INIT_MEM_REGION.
pub const PAGE_SIZE: u64 = 4096;
/// The largest CPUID table memenc asks `KVM_TDX_CAPABILITIES` for (the kernel does not say how
/// many it needs; it grows the buffer up to this).
pub const MAX_CAPABILITY_CPUID: u32 = 1024;

fn reject(cmd: u32, errno: i32) -> Error {
    Error::rejected(name(Vendor::Tdx, cmd), Vendor::Tdx, errno)
}

/// An 8-aligned buffer for a kernel struct `H` followed by `n` CPUID entries.
struct CpuidBuf<H> {
    words: Vec<u64>,
    _h: core::marker::PhantomData<H>,
}

impl<H: Copy> CpuidBuf<H> {
    fn new(header: H, entries: &[kvm_cpuid_entry2], capacity: usize) -> CpuidBuf<H> {
        let bytes = size_of::<H>() + capacity.max(entries.len()) * size_of::<kvm_cpuid_entry2>();
        let mut buf = CpuidBuf {
            words: vec![0u64; bytes.div_ceil(8)],
            _h: core::marker::PhantomData,
        };
        let base = buf.words.as_mut_ptr().cast::<u8>();
        // SAFETY: the buffer holds size_of::<H>() bytes plus the entries (sized above); u64
        // storage is aligned for H (align <= 8) and for the entries (align 4, offset a
        // multiple of 8 since every H here is 8-byte sized).
        unsafe {
            base.cast::<H>().write(header);
            let first = base.add(size_of::<H>()).cast::<kvm_cpuid_entry2>();
            core::ptr::copy_nonoverlapping(entries.as_ptr(), first, entries.len());
        }
        buf
    }

    fn addr(&mut self) -> u64 {
        self.words.as_mut_ptr() as u64
    }

    fn header(&self) -> H {
        // SAFETY: the buffer starts with an H (written in `new`, possibly updated by the kernel).
        unsafe { self.words.as_ptr().cast::<H>().read() }
    }

    fn entries(&self, n: usize) -> Vec<kvm_cpuid_entry2> {
        let cap = (self.words.len() * 8 - size_of::<H>()) / size_of::<kvm_cpuid_entry2>();
        let n = n.min(cap);
        // SAFETY: `n` entries lie inside the buffer after the header (bounded by `cap`).
        unsafe {
            let first = self
                .words
                .as_ptr()
                .cast::<u8>()
                .add(size_of::<H>())
                .cast::<kvm_cpuid_entry2>();
            core::slice::from_raw_parts(first, n).to_vec()
        }
    }
}

/// What `KVM_TDX_CAPABILITIES` reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Capabilities {
    /// TD attribute bits INIT_VM accepts.
    pub supported_attrs: u64,
    /// XFAM bits INIT_VM accepts.
    pub supported_xfam: u64,
    /// TDVMCALL leaves KVM handles (R11 of TDG.VP.VMCALL<GetTdVmCallInfo>).
    pub kernel_tdvmcallinfo_1_r11: u64,
    /// TDVMCALL leaves userspace must handle (R11).
    pub user_tdvmcallinfo_1_r11: u64,
    /// As above, R12.
    pub kernel_tdvmcallinfo_1_r12: u64,
    /// As above, R12.
    pub user_tdvmcallinfo_1_r12: u64,
    /// The configurable CPUID leaves (bits set: configurable).
    pub cpuid: Vec<kvm_cpuid_entry2>,
}

/// `KVM_TDX_CAPABILITIES`, growing the CPUID table on `-E2BIG` (the kernel does not report the
/// size it needs) up to [`MAX_CAPABILITY_CPUID`].
pub fn capabilities(vm_fd: BorrowedFd<'_>) -> Result<Capabilities> {
    let mut cap = 64u32;
    loop {
        // SAFETY: kvm_tdx_capabilities is plain integers; all-zero is valid.
        let mut header: kvm_tdx_capabilities = unsafe { core::mem::zeroed() };
        header.cpuid = kvm_cpuid2_header {
            nent: cap,
            padding: 0,
        };
        let mut buf = CpuidBuf::new(header, &[], cap as usize);
        match issue(vm_fd, Vendor::Tdx, id::CAPABILITIES, 0, buf.addr(), None) {
            Ok(()) => {
                let h = buf.header();
                return Ok(Capabilities {
                    supported_attrs: h.supported_attrs,
                    supported_xfam: h.supported_xfam,
                    kernel_tdvmcallinfo_1_r11: h.kernel_tdvmcallinfo_1_r11,
                    user_tdvmcallinfo_1_r11: h.user_tdvmcallinfo_1_r11,
                    kernel_tdvmcallinfo_1_r12: h.kernel_tdvmcallinfo_1_r12,
                    user_tdvmcallinfo_1_r12: h.user_tdvmcallinfo_1_r12,
                    cpuid: buf.entries(h.cpuid.nent as usize),
                });
            }
            Err(e) if e.errno.0 == libc::E2BIG && cap < MAX_CAPABILITY_CPUID => cap *= 2,
            Err(e) => return Err(e),
        }
    }
}

/// Parameters of [`init_vm`].
#[derive(Clone, Copy, Debug)]
pub struct InitVm<'a> {
    /// TD attributes, a subset of `supported_attrs`.
    pub attributes: u64,
    /// XFAM, a subset of `supported_xfam`.
    pub xfam: u64,
    /// MRCONFIGID (48 bytes, SHA-384 sized).
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// The TD's CPUID configuration (at most `KVM_MAX_CPUID_ENTRIES`, 256).
    pub cpuid: &'a [kvm_cpuid_entry2],
}

fn words(bytes: &[u8; 48]) -> [u64; 6] {
    let mut w = [0u64; 6];
    for (dst, chunk) in w.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *dst = u64::from_le_bytes(b);
    }
    w
}

/// `KVM_TDX_INIT_VM`, before any vCPU is created; retried on `-EAGAIN` (no entropy).
/// `-E2BIG` (no ioctl) for more than 256 CPUID entries.
pub fn init_vm(vm_fd: BorrowedFd<'_>, p: &InitVm<'_>) -> Result<()> {
    let nent = u32::try_from(p.cpuid.len())
        .ok()
        .filter(|&n| n <= KVM_MAX_CPUID_ENTRIES)
        .ok_or_else(|| reject(id::INIT_VM, libc::E2BIG))?;
    let header = kvm_tdx_init_vm {
        attributes: p.attributes,
        xfam: p.xfam,
        mrconfigid: words(&p.mrconfigid),
        mrowner: words(&p.mrowner),
        mrownerconfig: words(&p.mrownerconfig),
        reserved: [0; 12],
        cpuid: kvm_cpuid2_header { nent, padding: 0 },
    };
    let mut buf = CpuidBuf::new(header, p.cpuid, p.cpuid.len());
    issue(vm_fd, Vendor::Tdx, id::INIT_VM, 0, buf.addr(), None)
}

/// `KVM_TDX_INIT_VCPU` on a vCPU descriptor; `rcx` is the guest's initial RCX (TDVF: the HOB
/// list address).
pub fn init_vcpu(vcpu_fd: BorrowedFd<'_>, rcx: u64) -> Result<()> {
    issue(vcpu_fd, Vendor::Tdx, id::INIT_VCPU, 0, rcx, None)
}

/// Parameters of [`init_mem_region`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    /// Source address in user space, 4 KiB aligned.
    pub source_addr: u64,
    /// First guest physical address, 4 KiB aligned and private.
    pub gpa: u64,
    /// Number of 4 KiB pages, non-zero.
    pub nr_pages: u64,
    /// Extend MRTD with the pages (`KVM_TDX_MEASURE_MEMORY_REGION`).
    pub measure: bool,
}

/// `KVM_TDX_INIT_MEM_REGION` over the whole range on a vCPU descriptor: re-issued with the
/// kernel's advanced struct after `-EINTR` until every page is added. On failure,
/// `Error::reached` is the first GPA not added.
pub fn init_mem_region(vcpu_fd: BorrowedFd<'_>, p: &MemRegion) -> Result<()> {
    init_mem_region_bounded(vcpu_fd, p, None)
}

/// [`init_mem_region`] with this call's own bound on re-issues (`None`: the process-wide
/// limit, [`crate::helpers::retry_limit`]).
pub fn init_mem_region_bounded(
    vcpu_fd: BorrowedFd<'_>,
    p: &MemRegion,
    limit: Option<u32>,
) -> Result<()> {
    // The kernel's own argument checks, made here so they cost no ioctl: page alignment, a
    // non-empty range, and no wrap of either range.
    const PAGE: u64 = 4096;
    let end = |start: u64| {
        p.nr_pages
            .checked_mul(PAGE)
            .and_then(|n| start.checked_add(n))
    };
    if p.nr_pages == 0
        || p.gpa % PAGE != 0
        || p.source_addr % PAGE != 0
        || end(p.gpa).is_none()
        || end(p.source_addr).is_none()
    {
        return Err(Error {
            reached: Some(p.gpa),
            ..reject(id::INIT_MEM_REGION, libc::EINVAL)
        });
    }
    let mut k = kvm_tdx_init_mem_region {
        source_addr: p.source_addr,
        gpa: p.gpa,
        nr_pages: p.nr_pages,
    };
    let flags = MEM_ENC_FLAG_CONTINUE
        | if p.measure {
            KVM_TDX_MEASURE_MEMORY_REGION
        } else {
            0
        };
    issue_limited(
        vcpu_fd,
        Vendor::Tdx,
        id::INIT_MEM_REGION,
        flags,
        data_of(&mut k),
        None,
        limit,
    )
    .map_err(|e| Error {
        reached: Some(k.gpa),
        ..e
    })
}

/// `KVM_TDX_FINALIZE_VM`; retried on `-EBUSY` (TDX_OPERAND_BUSY).
pub fn finalize_vm(vm_fd: BorrowedFd<'_>) -> Result<()> {
    issue(vm_fd, Vendor::Tdx, id::FINALIZE_VM, 0, 0, None)
}

/// `KVM_TDX_GET_CPUID` with room for `capacity` entries: `Ok(Ok(entries))`, or `Ok(Err(n))`
/// when the kernel needs `n` entries (its -E2BIG).
pub(crate) fn get_cpuid_with(
    vcpu_fd: BorrowedFd<'_>,
    capacity: u32,
) -> Result<core::result::Result<Vec<kvm_cpuid_entry2>, u32>> {
    let header = kvm_cpuid2_header {
        nent: capacity,
        padding: 0,
    };
    let mut buf = CpuidBuf::new(header, &[], capacity as usize);
    match issue(vcpu_fd, Vendor::Tdx, id::GET_CPUID, 0, buf.addr(), None) {
        Ok(()) => {
            let n = buf.header().nent as usize;
            Ok(Ok(buf.entries(n)))
        }
        Err(e) if e.errno.0 == libc::E2BIG && buf.header().nent > capacity => {
            Ok(Err(buf.header().nent))
        }
        Err(e) => Err(e),
    }
}

/// `KVM_TDX_GET_CPUID` on a vCPU descriptor (between INIT_VCPU and FINALIZE_VM): the CPUID
/// values the TDX module gives the TD.
pub fn get_cpuid(vcpu_fd: BorrowedFd<'_>) -> Result<Vec<kvm_cpuid_entry2>> {
    let mut capacity = 64;
    // The kernel says how many it needs, so the second round fits unless the table grew.
    for _ in 0..4 {
        match get_cpuid_with(vcpu_fd, capacity)? {
            Ok(entries) => return Ok(entries),
            Err(needed) => capacity = needed,
        }
    }
    Err(reject(id::GET_CPUID, libc::E2BIG))
}
