//! Host profiles: what one kind of host (vendor x kernel generation x firmware features)
//! answers. Every difference between kernel versions the model knows is a field here, so the
//! handlers read the profile and never compare version numbers.

use memenc::uapi::{
    GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM,
    KVM_X86_SEV_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM,
};

/// Which memory-encryption backend the profile's KVM has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// None: KVM_MEMORY_ENCRYPT_OP gives -ENOTTY (the vendor numbering is this CPU's).
    None,
    /// AMD SEV (and, per [`SevCaps`], SEV-ES and SNP).
    Sev,
    /// Intel TDX.
    Tdx,
}

/// SEV facts of a profile.
#[derive(Debug)]
pub struct SevCaps {
    /// SEV-ES enabled (ES_INIT; SEV-ES VM type when VM types exist).
    pub es: bool,
    /// SEV-SNP enabled (ids 100-102, SNP VM type).
    pub snp: bool,
    /// KVM_SEV_INIT2 and the new VM types exist (6.10+).
    pub init2: bool,
    /// `KVM_MEMORY_ENCRYPT_OP(NULL)` returns 0 (6.10+); older kernels fault on the copy.
    pub null_probe: bool,
    /// `sev_supported_vmsa_features` (attr 0 exists when `init2`).
    pub vmsa_features: u64,
    /// The KVM_X86_SNP_POLICY_BITS attribute (attr 1), when the kernel publishes it.
    pub policy_bits_attr: bool,
    /// The SNP guest-policy bits KVM itself knows (`KVM_SNP_POLICY_MASK_VALID`); what
    /// SNP_LAUNCH_START accepts is this ANDed with [`SevCaps::fw_policy_bits`].
    pub snp_policy_bits: u64,
    /// The policy bits the firmware reports (`sev_get_snp_policy_bits()`, 6.19+); `None`: the
    /// kernel does not ask the firmware (static mask, up to 6.18).
    pub fw_policy_bits: Option<u64>,
    /// 6.11's SNP_LAUNCH_START order: the firmware context is created before the policy
    /// checks (and survives their failure), SMT must be set, SINGLE_SOCKET is refused.
    pub snp_start_context_first: bool,
    /// What SNP_LAUNCH_UPDATE checks of a non-ZERO page's `uaddr` before populating.
    pub snp_update_uaddr: UaddrCheck,
    /// SNP_LAUNCH_FINISH takes every vCPU's mutex (`kvm_lock_all_vcpus`, killable: -EINTR)
    /// around `snp_launch_update_vmsa`; the 6.17-era code takes none. (Set from 7.0; whether
    /// 6.19 already does is unverified.)
    pub snp_finish_locks_vcpus: bool,
    /// `sev_es_sync_vmsa` refuses a vCPU whose state is already protected (-EINVAL); newer
    /// than every profile, so a second LAUNCH_UPDATE_VMSA re-syncs and re-measures.
    pub vmsa_protected_guard: bool,
    /// `__sev_guest_init` refuses an SNP guest with `ghcb_version < 2` (not in 6.11).
    pub snp_ghcb_min2: bool,
    /// KVM_SEV_SNP_ENABLE_REQ_CERTS (103) and attr 2 exist.
    pub req_certs: bool,
    /// Firmware API version (major, minor, build), part of the LAUNCH_MEASURE HMAC.
    pub api: (u8, u8, u8),
}

/// SNP_LAUNCH_UPDATE's check of `uaddr` for a page that has a source (not ZERO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UaddrCheck {
    /// Up to 6.19: none. An unaligned source is copied and measured as it is; a NULL one hits
    /// `sev_gmem_post_populate`'s `WARN_ON_ONCE(!src)` and the command fails -EIO, error 0.
    None,
    /// 7.0: `!PAGE_ALIGNED(src)` is -EINVAL up front; NULL is aligned, so it still reaches the
    /// WARN (-EIO, error 0).
    Aligned,
    /// After 7.0 (no profile yet): `!uaddr || !PAGE_ALIGNED(uaddr)` is -EINVAL up front.
    NullAndAligned,
}

impl SevCaps {
    /// The SNP policy bits SNP_LAUNCH_START accepts and attr 1 reports
    /// (`snp_supported_policy_bits`).
    pub fn supported_policy_bits(&self) -> u64 {
        self.snp_policy_bits & self.fw_policy_bits.unwrap_or(u64::MAX)
    }
}

/// One configurable CPUID leaf of the simulated TDX module: the bits the host VMM may set.
#[derive(Clone, Copy, Debug)]
pub struct CpuidConfig {
    pub leaf: u32,
    pub subleaf: u32,
    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX` when the leaf has subleaves.
    pub flags: u32,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// TDX facts of a profile.
#[derive(Debug)]
pub struct TdxCaps {
    /// 6.19's rework: CAPABILITIES without cmd copy-back and without kvm->lock; copy-in before
    /// the state gate on vCPU commands; INIT_VM re-reads `nent`.
    pub rework_6_19: bool,
    /// INIT_VM refuses (-EINVAL) a `cpuid.nent` that changed between 6.19's two reads of it
    /// (the `get_user` that sizes the `memdup_user`, and the copy itself): the
    /// CVE-2026-72285 fix, affected range 6.19.0 up to 7.1.5. Meaningful only with
    /// `rework_6_19` (6.16 reads `nent` once). No profile sets it: 6.19.0 lacks the fix and
    /// uses the re-read count. Only a second caller thread (or the test seam
    /// `tdx::set_init_vm_nent_window`) can tell; a single-threaded caller sees both counts
    /// equal.
    pub nent_recheck: bool,
    /// 6.16's `nr_premapped`: a page mapped by INIT_MEM_REGION whose PAGE.ADD failed stays
    /// counted, and FINALIZE_VM is -EINVAL while the count is non-zero (gone in 6.19).
    pub premap_count: bool,
    /// `supported_attrs` (KVM supports only SEPT_VE_DISABLE, bit 28).
    pub supported_attrs: u64,
    /// `supported_xfam`.
    pub supported_xfam: u64,
    /// The module's configurable CPUID leaves, reported by CAPABILITIES.
    pub cpuid: &'static [CpuidConfig],
    /// Five-level EPT, needed for GPAW 52.
    pub five_level_ept: bool,
}

/// A simulated host.
#[derive(Debug)]
pub struct Profile {
    /// The name callers select it by, e.g. "snp@6.18" (NUL-terminated for C).
    pub name: &'static core::ffi::CStr,
    /// Its backend.
    pub backend: Backend,
    /// KVM_CAP_VM_TYPES (0: the kernel predates the capability).
    pub vm_types_cap: u64,
    /// Types KVM_CREATE_VM accepts (bit n: type n).
    pub creatable_types: u64,
    /// guest_memfd, KVM_SET_USER_MEMORY_REGION2 (6.8+).
    pub gmem: bool,
    /// KVM_SET_MEMORY_ATTRIBUTES is built in (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES).
    pub mem_attributes: bool,
    /// KVM_CAP_GUEST_MEMFD_FLAGS for /dev/kvm and ordinary VMs (0 before 6.18).
    pub gmem_flags: u64,
    /// KVM_X86_XCOMP_GUEST_SUPP (group 0 attr 0).
    pub xcr0: u64,
    /// SEV facts (SEV backend).
    pub sev: Option<SevCaps>,
    /// TDX facts (TDX backend).
    pub tdx: Option<TdxCaps>,
}

const fn types(list: &[u32]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < list.len() {
        mask |= 1 << list[i];
        i += 1;
    }
    mask
}

/// Every VM type of an SEV-SNP host with KVM_SEV_INIT2 (6.10+).
const AMD_VM_TYPES: u64 = types(&[
    KVM_X86_DEFAULT_VM,
    KVM_X86_SEV_VM,
    KVM_X86_SEV_ES_VM,
    KVM_X86_SNP_VM,
]);
/// Every VM type of a TDX host.
const TDX_VM_TYPES: u64 = types(&[KVM_X86_DEFAULT_VM, KVM_X86_TDX_VM]);

/// x87 | SSE | AVX | opmask | ZMM_Hi256 | Hi16_ZMM.
const XCR0_AVX512: u64 = 0xE7;
/// SEV VMSA feature bits.
pub const SVM_SEV_FEAT_SNP_ACTIVE: u64 = 1 << 0;
pub const SVM_SEV_FEAT_DEBUG_SWAP: u64 = 1 << 5;
pub const SVM_SEV_FEAT_SECURE_TSC: u64 = 1 << 9;
/// The original static SNP policy mask (bits 0-17, 19, 20).
pub const SNP_POLICY_MASK_STATIC: u64 = 0x1B_FFFF;
/// The newer mask (6.19): the static one plus bits 21-25.
pub const SNP_POLICY_MASK_EXTENDED: u64 = 0x3FB_FFFF;
/// A firmware that reports every policy bit 0-25 (MIGRATE_MA, bit 18, included: KVM's mask
/// drops it).
pub const SNP_FW_POLICY_ALL: u64 = 0x3FF_FFFF;
/// TDX TD attribute SEPT_VE_DISABLE.
pub const TDX_TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// x87, SSE, AVX, AVX-512 (3 bits), PT, PKRU, CET (2 bits), AMX (2 bits): XCR0 and XSS bits.
pub const TDX_SUPPORTED_XFAM: u64 = 0x6_1BE7;

const SIGNIFICANT_INDEX: u32 = 1;

/// The simulated TDX module's configurable CPUID leaves. Leaf 7 never offers TSX (EBX bits 4
/// and 11) or WAITPKG (ECX bit 5); leaf 0x80000008 EAX[23:16] (GPAW) is fully configurable.
pub static TDX_CPUID: &[CpuidConfig] = &[
    CpuidConfig {
        leaf: 0x1,
        subleaf: 0,
        flags: 0,
        eax: 0x0FFF_3FFF,
        ebx: 0,
        ecx: 0x7FFA_3203,
        edx: 0x1F88_7BFF,
    },
    CpuidConfig {
        leaf: 0x7,
        subleaf: 0,
        flags: SIGNIFICANT_INDEX,
        eax: 0,
        ebx: 0xDC2B_47EF & !((1 << 4) | (1 << 11)),
        ecx: 0x1A40_5F4E & !(1 << 5),
        edx: 0xBC00_4410,
    },
    CpuidConfig {
        leaf: 0xD,
        subleaf: 0,
        flags: SIGNIFICANT_INDEX,
        eax: 0x0006_02E7,
        ebx: 0,
        ecx: 0,
        edx: 0,
    },
    CpuidConfig {
        leaf: 0xD,
        subleaf: 1,
        flags: SIGNIFICANT_INDEX,
        eax: 0x0000_001F,
        ebx: 0,
        ecx: 0x0000_1900,
        edx: 0,
    },
    CpuidConfig {
        leaf: 0x8000_0008,
        subleaf: 0,
        flags: 0,
        eax: 0x00FF_FFFF,
        ebx: 0,
        ecx: 0,
        edx: 0,
    },
];

/// Every profile, in the order `mem_enc_sim_profile_name()` lists them (new ones are appended,
/// so indices stay stable).
pub static PROFILES: &[Profile] = &[
    Profile {
        name: c"none",
        backend: Backend::None,
        vm_types_cap: types(&[KVM_X86_DEFAULT_VM]),
        creatable_types: types(&[KVM_X86_DEFAULT_VM]),
        gmem: true,
        mem_attributes: false,
        gmem_flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        xcr0: XCR0_AVX512,
        sev: None,
        tdx: None,
    },
    // 6.1: SEV and SEV-ES through the legacy INIT / ES_INIT.
    Profile {
        name: c"sev@6.1",
        backend: Backend::Sev,
        vm_types_cap: 0,
        creatable_types: types(&[KVM_X86_DEFAULT_VM]),
        gmem: false,
        mem_attributes: false,
        gmem_flags: 0,
        xcr0: XCR0_AVX512,
        sev: Some(SevCaps {
            es: true,
            snp: false,
            init2: false,
            null_probe: false,
            vmsa_features: 0,
            policy_bits_attr: false,
            snp_policy_bits: 0,
            fw_policy_bits: None,
            snp_start_context_first: false,
            snp_update_uaddr: UaddrCheck::None,
            snp_finish_locks_vcpus: false,
            vmsa_protected_guard: false,
            snp_ghcb_min2: false,
            req_certs: false,
            api: (0, 24, 18),
        }),
        tdx: None,
    },
    // 6.11.0: SNP merged; SNP_LAUNCH_START creates the context first; no ghcb >= 2 check for SNP.
    Profile {
        name: c"snp@6.11",
        backend: Backend::Sev,
        vm_types_cap: AMD_VM_TYPES,
        creatable_types: AMD_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: 0,
        xcr0: XCR0_AVX512,
        sev: Some(SevCaps {
            es: true,
            snp: true,
            init2: true,
            null_probe: true,
            vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP,
            policy_bits_attr: false,
            snp_policy_bits: SNP_POLICY_MASK_STATIC,
            fw_policy_bits: None,
            snp_start_context_first: true,
            snp_update_uaddr: UaddrCheck::None,
            snp_finish_locks_vcpus: false,
            vmsa_protected_guard: false,
            snp_ghcb_min2: false,
            req_certs: false,
            api: (1, 55, 21),
        }),
        tdx: None,
    },
    // 6.18: guest_memfd flags; static policy mask, no attr 1/2, no REQ_CERTS, no uaddr check.
    Profile {
        name: c"snp@6.18",
        backend: Backend::Sev,
        vm_types_cap: AMD_VM_TYPES,
        creatable_types: AMD_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        xcr0: XCR0_AVX512,
        sev: Some(SevCaps {
            es: true,
            snp: true,
            init2: true,
            null_probe: true,
            vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP | SVM_SEV_FEAT_SECURE_TSC,
            policy_bits_attr: false,
            snp_policy_bits: SNP_POLICY_MASK_STATIC,
            fw_policy_bits: None,
            snp_start_context_first: false,
            snp_update_uaddr: UaddrCheck::None,
            snp_finish_locks_vcpus: false,
            vmsa_protected_guard: false,
            snp_ghcb_min2: true,
            req_certs: false,
            api: (1, 58, 3),
        }),
        tdx: None,
    },
    // 6.16: TDX merged; nr_premapped blocks FINALIZE.
    Profile {
        name: c"tdx@6.16",
        backend: Backend::Tdx,
        vm_types_cap: TDX_VM_TYPES,
        creatable_types: TDX_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: 0,
        xcr0: XCR0_AVX512,
        sev: None,
        tdx: Some(TdxCaps {
            rework_6_19: false,
            nent_recheck: false,
            premap_count: true,
            supported_attrs: TDX_TD_ATTR_SEPT_VE_DISABLE,
            supported_xfam: TDX_SUPPORTED_XFAM,
            cpuid: TDX_CPUID,
            five_level_ept: false,
        }),
    },
    // 6.19.0: the state-guard rework; INIT_VM reads nent twice, without the CVE-2026-72285
    // re-check (it uses the re-read count).
    Profile {
        name: c"tdx@6.19",
        backend: Backend::Tdx,
        vm_types_cap: TDX_VM_TYPES,
        creatable_types: TDX_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        xcr0: XCR0_AVX512,
        sev: None,
        tdx: Some(TdxCaps {
            rework_6_19: true,
            nent_recheck: false,
            premap_count: false,
            supported_attrs: TDX_TD_ATTR_SEPT_VE_DISABLE,
            supported_xfam: TDX_SUPPORTED_XFAM,
            cpuid: TDX_CPUID,
            five_level_ept: true,
        }),
    },
    // 6.19: attr 1 and the extended policy mask ANDed with the firmware's bits.
    Profile {
        name: c"snp@6.19",
        backend: Backend::Sev,
        vm_types_cap: AMD_VM_TYPES,
        creatable_types: AMD_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        xcr0: XCR0_AVX512,
        sev: Some(SevCaps {
            es: true,
            snp: true,
            init2: true,
            null_probe: true,
            vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP | SVM_SEV_FEAT_SECURE_TSC,
            policy_bits_attr: true,
            snp_policy_bits: SNP_POLICY_MASK_EXTENDED,
            fw_policy_bits: Some(SNP_FW_POLICY_ALL),
            snp_start_context_first: false,
            snp_update_uaddr: UaddrCheck::None,
            snp_finish_locks_vcpus: false,
            vmsa_protected_guard: false,
            snp_ghcb_min2: true,
            req_certs: false,
            api: (1, 58, 3),
        }),
        tdx: None,
    },
    // 7.0 (the "6.20" window): REQ_CERTS (id 103, attr 2), unaligned LAUNCH_UPDATE source -EINVAL,
    // kvm_lock_all_vcpus in SNP_LAUNCH_FINISH.
    Profile {
        name: c"snp@7.0",
        backend: Backend::Sev,
        vm_types_cap: AMD_VM_TYPES,
        creatable_types: AMD_VM_TYPES,
        gmem: true,
        mem_attributes: true,
        gmem_flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        xcr0: XCR0_AVX512,
        sev: Some(SevCaps {
            es: true,
            snp: true,
            init2: true,
            null_probe: true,
            vmsa_features: SVM_SEV_FEAT_DEBUG_SWAP | SVM_SEV_FEAT_SECURE_TSC,
            policy_bits_attr: true,
            snp_policy_bits: SNP_POLICY_MASK_EXTENDED,
            fw_policy_bits: Some(SNP_FW_POLICY_ALL),
            snp_start_context_first: false,
            snp_update_uaddr: UaddrCheck::Aligned,
            snp_finish_locks_vcpus: true,
            vmsa_protected_guard: false,
            snp_ghcb_min2: true,
            req_certs: true,
            api: (1, 58, 3),
        }),
        tdx: None,
    },
];

/// The profile called `name`.
pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES
        .iter()
        .find(|p| p.name.to_bytes() == name.as_bytes())
}

impl Profile {
    /// SEV facts, when the backend is SEV.
    pub fn sev(&self) -> Option<&SevCaps> {
        self.sev.as_ref()
    }

    /// Whether `vm_type` is one this host's KVM gives private (guest_memfd) memory.
    pub fn has_private_mem(&self, vm_type: u32) -> bool {
        vm_type == KVM_X86_SNP_VM || vm_type == KVM_X86_TDX_VM
    }

    /// Whether `vm_type` has protected register state (SEV-ES, SNP, TDX).
    pub fn has_protected_state(&self, vm_type: u32) -> bool {
        matches!(vm_type, KVM_X86_SEV_ES_VM | KVM_X86_SNP_VM | KVM_X86_TDX_VM)
    }
}
