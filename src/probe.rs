//! The host probe: what this host's kernel (and firmware) really support for confidential VMs,
//! read with the kernel's own questions (kernel-abi.md §5.7): `KVM_CAP_VM_TYPES`, the SEV
//! device attributes on `/dev/kvm`, the NULL `KVM_MEMORY_ENCRYPT_OP` on a scratch VM, and
//! `KVM_TDX_CAPABILITIES` on a scratch TDX VM. Every ioctl goes through [`crate::host::ioctl`],
//! so a simulated `/dev/kvm` answers from its profile.
//!
//! Each fact carries a status that tells "known" from "this host cannot have it" (wrong vendor,
//! technology not enabled) from "this kernel does not publish it" (older kernel or a KVM module
//! without that interface). Negotiation ([`crate::negotiate`]) is pure logic over the result.
//!
//! The result is cached per host, lock-free: published entries are immutable and never freed
//! while reachable, so readers need no lock, a `fork()` in the middle of a probe cannot leave a
//! lock held in the child, and a cached answer costs an atomic load and a copy.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::errno::Errno;
use crate::host;
use crate::uapi::{
    KVM_CAP_GUEST_MEMFD, KVM_CAP_MEMORY_ATTRIBUTES, KVM_CAP_VM_TYPES, KVM_CHECK_EXTENSION,
    KVM_CREATE_VM, KVM_GET_API_VERSION, KVM_GET_DEVICE_ATTR, KVM_MAX_CPUID_ENTRIES,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_ENCRYPT_OP, KVM_X86_DEFAULT_VM, KVM_X86_GRP_SEV,
    KVM_X86_SEV_SNP_REQ_CERTS, KVM_X86_SEV_VMSA_FEATURES, KVM_X86_SNP_POLICY_BITS, KVM_X86_SNP_VM,
    KVM_X86_TDX_VM, kvm_cpuid_entry2, kvm_device_attr, kvm_tdx_capabilities, kvm_tdx_cmd, tdx_id,
};
use crate::vendor::Vendor;

/// Status of one probed fact: the field was not filled in (a zero-filled struct, or a field
/// newer than the library that filled it).
pub const MEM_ENC_CAP_UNKNOWN: u32 = 0;
/// Status of one probed fact: `value` is what the host reported.
pub const MEM_ENC_CAP_KNOWN: u32 = 1;
/// Status of one probed fact: this host cannot have it (another CPU vendor, or the technology
/// is not enabled, e.g. its VM type is missing from `KVM_CAP_VM_TYPES`), so it was not asked.
pub const MEM_ENC_CAP_NOT_AVAILABLE: u32 = 2;
/// Status of one probed fact: the kernel was asked and does not publish it (an older kernel,
/// or a KVM module without that interface); `err` holds the kernel's answer, e.g. `-ENXIO`.
pub const MEM_ENC_CAP_NOT_SUPPORTED: u32 = 3;
/// Status of one probed fact: the kernel does not publish it, and `value` is the documented
/// fixed value of kernels that do not (SNP policy bits: `MEM_ENC_SNP_POLICY_BITS_STATIC`).
pub const MEM_ENC_CAP_DEFAULTED: u32 = 4;
/// Status of one probed fact: the query failed for another reason; `err` holds `-errno`.
pub const MEM_ENC_CAP_ERROR: u32 = 5;

/// The SNP guest-policy bits kernels accept when they do not publish `KVM_X86_SNP_POLICY_BITS`
/// (the original `SNP_POLICY_MASK_VALID`: bits 0-17, 19 and 20).
pub const MEM_ENC_SNP_POLICY_BITS_STATIC: u64 = ((1u64 << 18) - 1) | (1u64 << 19) | (1u64 << 20);

/// `mem_enc_caps.features`: the descriptor probed belongs to memenc's simulated host; every
/// value below is the simulated profile's, not this machine's.
pub const MEM_ENC_CAPS_SIMULATED: u32 = 1u32 << 0;
/// `mem_enc_caps.features`: SEV guests can be created (VM type SEV, or the legacy KVM_SEV_INIT
/// on a default VM).
pub const MEM_ENC_CAPS_SEV: u32 = 1u32 << 1;
/// `mem_enc_caps.features`: SEV-ES guests can be created (VM type SEV-ES; on kernels without
/// KVM_SEV_INIT2 this is assumed from the legacy SEV path, and KVM_SEV_ES_INIT answers
/// `-ENOTTY` if SEV-ES is disabled).
pub const MEM_ENC_CAPS_SEV_ES: u32 = 1u32 << 2;
/// `mem_enc_caps.features`: SEV-SNP guests can be created (VM type SNP).
pub const MEM_ENC_CAPS_SNP: u32 = 1u32 << 3;
/// `mem_enc_caps.features`: TDX guests can be created and `KVM_TDX_CAPABILITIES` answered.
pub const MEM_ENC_CAPS_TDX: u32 = 1u32 << 4;
/// `mem_enc_caps.features`: the kernel has KVM_SEV_INIT2 (it publishes the VMSA features).
pub const MEM_ENC_CAPS_SEV_INIT2: u32 = 1u32 << 5;
/// `mem_enc_caps.features`: the legacy KVM_SEV_INIT / KVM_SEV_ES_INIT path on a default VM
/// exists (the NULL probe on a default VM answered 0, or -EFAULT on older kernels).
pub const MEM_ENC_CAPS_SEV_LEGACY_INIT: u32 = 1u32 << 6;
/// `mem_enc_caps.features`: SNP certificate requests (`KVM_EXIT_SNP_REQ_CERTS`) are supported.
pub const MEM_ENC_CAPS_SNP_REQ_CERTS: u32 = 1u32 << 7;
/// `mem_enc_caps.features`: `KVM_CREATE_GUEST_MEMFD` is supported.
pub const MEM_ENC_CAPS_GUEST_MEMFD: u32 = 1u32 << 8;
/// `mem_enc_caps.features`: `KVM_SET_MEMORY_ATTRIBUTES` can mark memory private.
pub const MEM_ENC_CAPS_PRIVATE_MEMORY: u32 = 1u32 << 9;

/// One probed fact: its status (`MEM_ENC_CAP_*`), the errno of the query, and the value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_cap {
    /// `MEM_ENC_CAP_KNOWN`, `_NOT_AVAILABLE`, `_NOT_SUPPORTED`, `_DEFAULTED`, `_ERROR`, or
    /// `_UNKNOWN` (0) when not filled in.
    pub status: u32,
    /// The query's result: 0, or the kernel's `-errno` (e.g. `-ENXIO` for an attribute the
    /// kernel does not publish). `sev_null_probe` keeps the kernel's raw answer here.
    pub err: i32,
    /// The value; meaningful when `status` is `MEM_ENC_CAP_KNOWN` or `MEM_ENC_CAP_DEFAULTED`.
    pub value: u64,
}

/// What this host supports for confidential VMs, filled by `mem_enc_probe()`.
///
/// Growing struct: fields are only ever appended. A caller built against an older header passes
/// its smaller size and gets the prefix; a caller built against a newer one gets a zeroed tail
/// (status `MEM_ENC_CAP_UNKNOWN`). `MEM_ENC_CAPS_SIZE_VER0` is the first size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_caps {
    /// The size of this struct in the library that filled it (it may exceed the caller's).
    pub size: u32,
    /// `MEM_ENC_VENDOR_*` of the host (simulated hosts: the profile's vendor).
    pub vendor: u32,
    /// Summary: `MEM_ENC_CAPS_*` bits, derived from the facts below.
    pub features: u32,
    /// Zero.
    pub reserved: u32,
    /// `KVM_GET_API_VERSION` (12 on every kernel since 2.6.22).
    pub api_version: mem_enc_cap,
    /// `KVM_CAP_VM_TYPES`: bit n set means VM type n can be created. NOT_SUPPORTED (value 0)
    /// on kernels before 6.8, which create only the default type.
    pub vm_types: mem_enc_cap,
    /// SEV: `KVM_X86_SEV_VMSA_FEATURES`, the bits `kvm_sev_init.vmsa_features` accepts.
    /// KNOWN means the kernel has KVM_SEV_INIT2; NOT_SUPPORTED means legacy INIT/ES_INIT only.
    pub sev_vmsa_features: mem_enc_cap,
    /// SNP: `KVM_X86_SNP_POLICY_BITS`, the guest-policy bits SNP_LAUNCH_START accepts;
    /// DEFAULTED (`MEM_ENC_SNP_POLICY_BITS_STATIC`) on SNP kernels that do not publish it.
    pub snp_policy_bits: mem_enc_cap,
    /// SNP: `KVM_X86_SEV_SNP_REQ_CERTS` (1: `KVM_EXIT_SNP_REQ_CERTS` is supported).
    pub snp_req_certs: mem_enc_cap,
    /// SEV: `KVM_MEMORY_ENCRYPT_OP(NULL)` on a scratch default VM. `err` is the raw answer:
    /// 0 (SEV enabled), -EFAULT (older kernel with the SEV path), -ENOTTY (no SEV backend);
    /// `value` is 1 when the SEV path exists.
    pub sev_null_probe: mem_enc_cap,
    /// TDX: `supported_attrs` from `KVM_TDX_CAPABILITIES` (the TD attribute bits allowed).
    pub tdx_supported_attrs: mem_enc_cap,
    /// TDX: `supported_xfam` from `KVM_TDX_CAPABILITIES` (the XFAM bits allowed).
    pub tdx_supported_xfam: mem_enc_cap,
    /// TDX: how many configurable CPUID leaves `KVM_TDX_CAPABILITIES` reported.
    pub tdx_cpuid_configs: mem_enc_cap,
    /// `KVM_CAP_GUEST_MEMFD` (non-zero: `KVM_CREATE_GUEST_MEMFD` works). For capabilities,
    /// NOT_SUPPORTED means the kernel answered 0.
    pub guest_memfd: mem_enc_cap,
    /// `KVM_CAP_MEMORY_ATTRIBUTES` on /dev/kvm: the `KVM_MEMORY_ATTRIBUTE_*` bits supported
    /// (8: PRIVATE). 0 (NOT_SUPPORTED) on kernels without it, and on hosts where no VM type
    /// has private memory.
    pub memory_attributes: mem_enc_cap,
}

/// The first published size of `struct mem_enc_caps`; `mem_enc_probe()` refuses smaller ones.
pub const MEM_ENC_CAPS_SIZE_VER0: u32 = 192;
/// The largest `caps_size` accepted (larger sizes are not a plausible struct: `-E2BIG`).
pub const MEM_ENC_CAPS_SIZE_MAX: u32 = 4096;

const _: () = {
    assert!(size_of::<mem_enc_cap>() == 16);
    // No padding anywhere: the struct is copied to C byte for byte.
    assert!(size_of::<mem_enc_caps>() == 16 + 11 * 16);
    assert!(size_of::<mem_enc_caps>() == MEM_ENC_CAPS_SIZE_VER0 as usize);
};

impl mem_enc_cap {
    /// A value the host reported.
    pub const fn known(value: u64) -> Self {
        mem_enc_cap {
            status: MEM_ENC_CAP_KNOWN,
            err: 0,
            value,
        }
    }

    /// A fact this host cannot have; not asked.
    pub const fn not_available() -> Self {
        mem_enc_cap {
            status: MEM_ENC_CAP_NOT_AVAILABLE,
            err: 0,
            value: 0,
        }
    }

    /// A fact the kernel does not publish (`e`: its answer, 0 for "capability 0").
    pub const fn not_supported(e: i32) -> Self {
        mem_enc_cap {
            status: MEM_ENC_CAP_NOT_SUPPORTED,
            err: e,
            value: 0,
        }
    }

    /// A query that failed otherwise.
    pub const fn error(e: Errno) -> Self {
        mem_enc_cap {
            status: MEM_ENC_CAP_ERROR,
            err: e.negated(),
            value: 0,
        }
    }

    /// The value if the host reported it (or the documented default stands in for it).
    pub const fn value(&self) -> Option<u64> {
        match self.status {
            MEM_ENC_CAP_KNOWN | MEM_ENC_CAP_DEFAULTED => Some(self.value),
            _ => None,
        }
    }

    /// Whether the value was reported by the host itself.
    pub const fn is_known(&self) -> bool {
        self.status == MEM_ENC_CAP_KNOWN
    }
}

/// A short name for a `MEM_ENC_CAP_*` status.
pub fn status_name(status: u32) -> &'static str {
    match status {
        MEM_ENC_CAP_UNKNOWN => "unknown",
        MEM_ENC_CAP_KNOWN => "known",
        MEM_ENC_CAP_NOT_AVAILABLE => "not available on this host",
        MEM_ENC_CAP_NOT_SUPPORTED => "not supported by this kernel",
        MEM_ENC_CAP_DEFAULTED => "not published by this kernel; documented default",
        MEM_ENC_CAP_ERROR => "query failed",
        _ => "invalid status",
    }
}

impl mem_enc_caps {
    /// Whether VM type `vm_type` is in `KVM_CAP_VM_TYPES`.
    pub const fn has_vm_type(&self, vm_type: u32) -> bool {
        vm_type < 64 && self.vm_types.is_known() && self.vm_types.value & (1u64 << vm_type) != 0
    }

    /// The host vendor.
    pub fn vendor(&self) -> Vendor {
        Vendor::from_u32(self.vendor).unwrap_or(Vendor::None)
    }

    /// Recomputes `features` from the facts (the only place the summary is derived).
    pub fn summarize(&mut self) {
        let mut f = self.features & MEM_ENC_CAPS_SIMULATED;
        let init2 = self.sev_vmsa_features.is_known();
        let legacy = self.sev_null_probe.is_known() && self.sev_null_probe.value != 0;
        if init2 {
            f |= MEM_ENC_CAPS_SEV_INIT2;
        }
        if legacy {
            f |= MEM_ENC_CAPS_SEV_LEGACY_INIT;
        }
        if self.has_vm_type(crate::uapi::KVM_X86_SEV_VM) || (legacy && !init2) {
            f |= MEM_ENC_CAPS_SEV;
        }
        if self.has_vm_type(crate::uapi::KVM_X86_SEV_ES_VM) || (legacy && !init2) {
            f |= MEM_ENC_CAPS_SEV_ES;
        }
        if self.has_vm_type(KVM_X86_SNP_VM) {
            f |= MEM_ENC_CAPS_SNP;
        }
        if self.has_vm_type(KVM_X86_TDX_VM) && self.tdx_supported_attrs.is_known() {
            f |= MEM_ENC_CAPS_TDX;
        }
        if self.snp_req_certs.is_known() && self.snp_req_certs.value != 0 {
            f |= MEM_ENC_CAPS_SNP_REQ_CERTS;
        }
        if self.guest_memfd.is_known() && self.guest_memfd.value != 0 {
            f |= MEM_ENC_CAPS_GUEST_MEMFD;
        }
        if self.memory_attributes.is_known()
            && self.memory_attributes.value & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0
        {
            f |= MEM_ENC_CAPS_PRIVATE_MEMORY;
        }
        self.features = f;
    }
}

/// `KVM_CHECK_EXTENSION(cap)` on `fd`.
fn check_extension(fd: RawFd, cap: u64) -> Result<i32, Errno> {
    // SAFETY: KVM_CHECK_EXTENSION takes an immediate; no memory is passed.
    unsafe { host::ioctl(fd, KVM_CHECK_EXTENSION, cap) }
}

/// A capability whose 0 means "this kernel does not have it".
fn capability(fd: RawFd, cap: u64) -> mem_enc_cap {
    match check_extension(fd, cap) {
        Ok(0) => mem_enc_cap::not_supported(0),
        Ok(v) => mem_enc_cap::known(v as u32 as u64),
        Err(e) => mem_enc_cap::error(e),
    }
}

/// `KVM_GET_DEVICE_ATTR(group, attr)` on the system fd.
fn device_attr(fd: RawFd, group: u32, attr: u64) -> mem_enc_cap {
    let mut value = 0u64;
    let request = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr: &mut value as *mut u64 as u64,
    };
    // SAFETY: `request` is a valid kvm_device_attr whose `addr` points at a u64 that lives for
    // the call; the kernel reads the 24-byte struct and writes at most that u64.
    match unsafe { host::ioctl(fd, KVM_GET_DEVICE_ATTR, &request as *const _ as u64) } {
        Ok(_) => mem_enc_cap::known(value),
        // ENXIO: no such group/attribute; ENOTTY/EINVAL: no system attributes at all.
        Err(e @ Errno(libc::ENXIO | libc::ENOTTY | libc::EINVAL)) => {
            mem_enc_cap::not_supported(e.negated())
        }
        Err(e) => mem_enc_cap::error(e),
    }
}

/// Closes a descriptor the probe created (a scratch VM). The one place that does, so a
/// simulated host that needs to hear about closes has one line to change.
fn close_scratch(fd: RawFd) {
    // SAFETY: `fd` was returned by KVM_CREATE_VM inside this module and is owned only here.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// A VM created for one question and closed afterwards, even if the question panics.
struct ScratchVm(RawFd);

impl ScratchVm {
    fn create(kvm: RawFd, vm_type: u32) -> Result<ScratchVm, Errno> {
        // SAFETY: KVM_CREATE_VM takes an immediate (the VM type).
        unsafe { host::ioctl(kvm, KVM_CREATE_VM, u64::from(vm_type)) }.map(ScratchVm)
    }
}

impl Drop for ScratchVm {
    fn drop(&mut self) {
        close_scratch(self.0);
    }
}

/// The NULL `KVM_MEMORY_ENCRYPT_OP` on a scratch default VM (AMD hosts).
fn sev_null_probe(kvm: RawFd) -> mem_enc_cap {
    let vm = match ScratchVm::create(kvm, KVM_X86_DEFAULT_VM) {
        Ok(vm) => vm,
        Err(e) => return mem_enc_cap::error(e),
    };
    let answer = host::null_probe(vm.0);
    match answer {
        Ok(_) => mem_enc_cap::known(1),
        Err(e @ Errno(libc::EFAULT)) => mem_enc_cap {
            err: e.negated(),
            ..mem_enc_cap::known(1)
        },
        Err(e @ Errno(libc::ENOTTY)) => mem_enc_cap {
            err: e.negated(),
            ..mem_enc_cap::known(0)
        },
        Err(e) => mem_enc_cap::error(e),
    }
}

/// What `KVM_TDX_CAPABILITIES` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxCapabilities {
    /// TD attribute bits userspace may set.
    pub supported_attrs: u64,
    /// XFAM bits userspace may set.
    pub supported_xfam: u64,
    /// Number of configurable CPUID leaves.
    pub cpuid_configs: u32,
}

/// First CPUID entry capacity tried; doubled on `-E2BIG` (the kernel does not say how many it
/// needs) up to `KVM_MAX_CPUID_ENTRIES`.
const TDX_FIRST_NENT: u32 = 16;

/// `KVM_TDX_CAPABILITIES` on a TDX VM descriptor.
pub fn tdx_capabilities(vm: RawFd) -> Result<TdxCapabilities, Errno> {
    const HEADER: usize = size_of::<kvm_tdx_capabilities>();
    const NENT_WORD: usize = core::mem::offset_of!(kvm_tdx_capabilities, cpuid) / 8;
    let mut nent = TDX_FIRST_NENT;
    loop {
        let bytes = HEADER + nent as usize * size_of::<kvm_cpuid_entry2>();
        // u64 words: the kernel struct is 8-aligned.
        let mut buf = vec![0u64; bytes.div_ceil(8)];
        buf[NENT_WORD] = u64::from(nent); // cpuid.nent (low half), cpuid.padding = 0
        let mut cmd = kvm_tdx_cmd {
            id: tdx_id::CAPABILITIES,
            flags: 0,
            data: buf.as_mut_ptr() as u64,
            hw_error: 0,
        };
        // SAFETY: `cmd` is a valid kvm_tdx_cmd and `data` points at a zeroed buffer of the
        // header plus `nent` entries, exactly what the kernel writes at most.
        let result = unsafe { host::ioctl(vm, KVM_MEMORY_ENCRYPT_OP, &mut cmd as *mut _ as u64) };
        match result {
            Ok(_) => {
                return Ok(TdxCapabilities {
                    supported_attrs: buf[0],
                    supported_xfam: buf[1],
                    cpuid_configs: buf[NENT_WORD] as u32,
                });
            }
            Err(Errno(libc::E2BIG)) if nent < KVM_MAX_CPUID_ENTRIES => {
                nent = (nent * 2).min(KVM_MAX_CPUID_ENTRIES);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Probes the host behind `kvm` (a `/dev/kvm` descriptor, real or simulated), uncached.
///
/// Fails only when `kvm` is not a KVM system descriptor (`KVM_GET_API_VERSION` fails); every
/// other question that fails is recorded in its field's status.
pub fn probe_uncached(kvm: RawFd) -> Result<mem_enc_caps, Errno> {
    if kvm < 0 {
        return Err(Errno(libc::EBADF));
    }
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let api = unsafe { host::ioctl(kvm, KVM_GET_API_VERSION, 0) }?;
    let vendor = host::vendor_of(kvm);
    let mut caps = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: vendor.as_u32(),
        api_version: mem_enc_cap::known(api as u32 as u64),
        vm_types: capability(kvm, KVM_CAP_VM_TYPES),
        guest_memfd: capability(kvm, KVM_CAP_GUEST_MEMFD),
        memory_attributes: capability(kvm, KVM_CAP_MEMORY_ATTRIBUTES),
        ..Default::default()
    };
    if crate::host::simulated(kvm) {
        caps.features |= MEM_ENC_CAPS_SIMULATED;
    }
    probe_sev(kvm, vendor, &mut caps);
    probe_tdx(kvm, vendor, &mut caps);
    caps.summarize();
    Ok(caps)
}

fn probe_sev(kvm: RawFd, vendor: Vendor, caps: &mut mem_enc_caps) {
    if vendor != Vendor::Sev {
        caps.sev_vmsa_features = mem_enc_cap::not_available();
        caps.snp_policy_bits = mem_enc_cap::not_available();
        caps.snp_req_certs = mem_enc_cap::not_available();
        caps.sev_null_probe = mem_enc_cap::not_available();
        return;
    }
    caps.sev_vmsa_features = device_attr(kvm, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES);
    caps.snp_req_certs = device_attr(kvm, KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS);
    let policy = device_attr(kvm, KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS);
    caps.snp_policy_bits =
        if policy.status == MEM_ENC_CAP_NOT_SUPPORTED && caps.has_vm_type(KVM_X86_SNP_VM) {
            // An SNP kernel from before the attribute: its fixed mask (kernel-abi.md §1.6).
            mem_enc_cap {
                status: MEM_ENC_CAP_DEFAULTED,
                err: policy.err,
                value: MEM_ENC_SNP_POLICY_BITS_STATIC,
            }
        } else {
            policy
        };
    caps.sev_null_probe = sev_null_probe(kvm);
}

fn probe_tdx(kvm: RawFd, vendor: Vendor, caps: &mut mem_enc_caps) {
    let fields = if vendor != Vendor::Tdx {
        [mem_enc_cap::not_available(); 3]
    } else if !caps.vm_types.is_known() {
        // Kernels without KVM_CAP_VM_TYPES predate TDX.
        [mem_enc_cap::not_supported(0); 3]
    } else if !caps.has_vm_type(KVM_X86_TDX_VM) {
        [mem_enc_cap::not_available(); 3]
    } else {
        match ScratchVm::create(kvm, KVM_X86_TDX_VM).and_then(|vm| tdx_capabilities(vm.0)) {
            Ok(t) => [
                mem_enc_cap::known(t.supported_attrs),
                mem_enc_cap::known(t.supported_xfam),
                mem_enc_cap::known(u64::from(t.cpuid_configs)),
            ],
            Err(e) => [mem_enc_cap::error(e); 3],
        }
    };
    [
        caps.tdx_supported_attrs,
        caps.tdx_supported_xfam,
        caps.tdx_cpuid_configs,
    ] = fields;
}

// ---------------------------------------------------------------------------------------------
// The cache.

/// What identifies a host: the device number of a `/dev/kvm` character device, or the inode of
/// any other descriptor. Never the descriptor number, which the caller may reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Rdev(u64),
    Inode(u64, u64),
}

struct Entry {
    key: Key,
    caps: mem_enc_caps,
}

/// Cached hosts; more distinct hosts than this in one process are probed every time.
const SLOTS: usize = 8;
static TABLE: [AtomicPtr<Entry>; SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS];
/// The entry of the host behind the path `/dev/kvm`, for `kvm_fd == -1` without a syscall.
static DEFAULT: AtomicPtr<Entry> = AtomicPtr::new(ptr::null_mut());

fn key_of(fd: RawFd) -> Result<Key, Errno> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: fstat writes only into `st`; a bad descriptor gives EBADF.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Errno::last());
    }
    Ok(if st.st_mode & libc::S_IFMT == libc::S_IFCHR {
        Key::Rdev(st.st_rdev)
    } else {
        Key::Inode(st.st_dev, st.st_ino)
    })
}

fn lookup(key: Key) -> Option<&'static Entry> {
    TABLE.iter().find_map(|slot| {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: a non-null slot points at an Entry published below, immutable and never
        // freed (invalidation only unlinks it).
        let entry = unsafe { p.as_ref() }?;
        (entry.key == key).then_some(entry)
    })
}

/// Publishes `caps` for `key` (or returns the entry another thread published first). `None`
/// when the table is full.
fn publish(key: Key, caps: mem_enc_caps) -> Option<&'static Entry> {
    let fresh = Box::into_raw(Box::new(Entry { key, caps }));
    for slot in &TABLE {
        loop {
            let current = slot.load(Ordering::Acquire);
            // SAFETY: as in `lookup`.
            if let Some(entry) = unsafe { current.as_ref() } {
                if entry.key == key {
                    // SAFETY: `fresh` was never shared; reclaim it.
                    drop(unsafe { Box::from_raw(fresh) });
                    return Some(entry);
                }
                break;
            }
            if slot
                .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: just published; it is never freed while reachable.
                return Some(unsafe { &*fresh });
            }
            // Lost a race for this slot: look at what won.
        }
    }
    // SAFETY: `fresh` was never shared.
    drop(unsafe { Box::from_raw(fresh) });
    None
}

/// Probes `kvm` (a descriptor the caller owns), cached per host. One `fstat` per call; a
/// simulated descriptor is never cached (its profile is the answer, and it is cheap).
pub fn probe_fd(kvm: RawFd) -> Result<mem_enc_caps, Errno> {
    if kvm < 0 {
        return Err(Errno(libc::EBADF));
    }
    if crate::host::simulated(kvm) {
        return probe_uncached(kvm);
    }
    let key = key_of(kvm)?;
    if let Some(entry) = lookup(key) {
        return Ok(entry.caps);
    }
    let caps = probe_uncached(kvm)?;
    Ok(publish(key, caps).map_or(caps, |e| e.caps))
}

/// Probes the host behind `/dev/kvm` (opened read-write, close-on-exec, and closed again),
/// cached: after the first success this is an atomic load and a copy, no system call.
pub fn probe_default() -> Result<mem_enc_caps, Errno> {
    // SAFETY: as in `lookup`.
    if let Some(entry) = unsafe { DEFAULT.load(Ordering::Acquire).as_ref() } {
        return Ok(entry.caps);
    }
    // SAFETY: the path is a NUL-terminated literal; open has no other memory effects.
    let raw = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` was just opened here and is owned only by this guard.
    let kvm = unsafe { OwnedFd::from_raw_fd(raw) };
    let key = key_of(kvm.as_raw_fd())?;
    let caps = match lookup(key) {
        Some(entry) => entry.caps,
        None => probe_uncached(kvm.as_raw_fd())?,
    };
    if let Some(entry) = publish(key, caps) {
        let _ = DEFAULT.compare_exchange(
            ptr::null_mut(),
            entry as *const Entry as *mut Entry,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
    Ok(caps)
}

/// Forgets every cached host, so the next probe asks the kernel again (tests; or after a KVM
/// module was reloaded with other parameters). The unlinked entries (about 200 bytes each) are
/// leaked on purpose: a concurrent reader may still be copying one.
pub fn invalidate_cache() {
    DEFAULT.store(ptr::null_mut(), Ordering::Release);
    for slot in &TABLE {
        slot.store(ptr::null_mut(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_with(vm_types: u64) -> mem_enc_caps {
        mem_enc_caps {
            vendor: Vendor::Sev.as_u32(),
            vm_types: mem_enc_cap::known(vm_types),
            ..Default::default()
        }
    }

    #[test]
    fn summary_of_a_legacy_sev_kernel() {
        let mut caps = mem_enc_caps {
            vm_types: mem_enc_cap::not_supported(0),
            sev_vmsa_features: mem_enc_cap::not_supported(-libc::ENXIO),
            sev_null_probe: mem_enc_cap {
                err: -libc::EFAULT,
                ..mem_enc_cap::known(1)
            },
            ..caps_with(0)
        };
        caps.summarize();
        assert_eq!(
            caps.features,
            MEM_ENC_CAPS_SEV | MEM_ENC_CAPS_SEV_ES | MEM_ENC_CAPS_SEV_LEGACY_INIT
        );
    }

    #[test]
    fn summary_of_an_init2_kernel_follows_vm_types() {
        let mut caps = mem_enc_caps {
            sev_vmsa_features: mem_enc_cap::known(0x20),
            sev_null_probe: mem_enc_cap::known(1),
            guest_memfd: mem_enc_cap::known(1),
            memory_attributes: mem_enc_cap::known(8),
            ..caps_with(0b1_1101)
        };
        caps.summarize();
        assert_eq!(
            caps.features,
            MEM_ENC_CAPS_SEV
                | MEM_ENC_CAPS_SEV_ES
                | MEM_ENC_CAPS_SNP
                | MEM_ENC_CAPS_SEV_INIT2
                | MEM_ENC_CAPS_SEV_LEGACY_INIT
                | MEM_ENC_CAPS_GUEST_MEMFD
                | MEM_ENC_CAPS_PRIVATE_MEMORY
        );
    }

    #[test]
    fn summary_keeps_only_the_simulated_bit() {
        let mut caps = mem_enc_caps {
            features: u32::MAX,
            ..caps_with(1)
        };
        caps.summarize();
        assert_eq!(caps.features, MEM_ENC_CAPS_SIMULATED);
    }

    #[test]
    fn static_policy_mask_is_the_original_kernel_value() {
        assert_eq!(MEM_ENC_SNP_POLICY_BITS_STATIC, 0x1B_FFFF);
    }

    #[test]
    fn status_names_are_distinct() {
        let names: Vec<_> = (0..=5).map(status_name).collect();
        for (i, a) in names.iter().enumerate() {
            assert!(names[i + 1..].iter().all(|b| b != a));
        }
        assert_eq!(status_name(99), "invalid status");
    }

    #[test]
    fn bad_descriptors_are_refused_without_caching() {
        assert_eq!(probe_fd(-5), Err(Errno(libc::EBADF)));
        assert_eq!(probe_uncached(-1), Err(Errno(libc::EBADF)));
        // A regular file is not a KVM descriptor: the kernel says ENOTTY, and nothing is cached.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(probe_fd(file.as_raw_fd()), Err(Errno(libc::ENOTTY)));
        assert!(lookup(key_of(file.as_raw_fd()).unwrap()).is_none());
    }
}
