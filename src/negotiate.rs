//! Negotiation: the intersection of what a VMM asks for and what the probed host supports, one
//! level at a time (VM type, SEV `vmsa_features`, GHCB version, SNP policy, TDX attributes and
//! XFAM), and all of them at once for a launch plan that also states every setting that enters
//! the launch measurement. Pure functions over a [`mem_enc_caps`]: no ioctl here, so every rule
//! is tested on given capability sets (simulated profiles' probes, variants of them, one built by
//! hand for a host with no SEV backend).
//!
//! Each level takes `required` and `optional` bits. The answer is the granted set (all of
//! `required`, plus the supported part of `optional`), or a [`Refusal`]: `-EOPNOTSUPP` when the
//! host lacks a required bit (the bits and their names are in it), `-EINVAL` when the request
//! can never be valid (e.g. asking for `SNP_ACTIVE`).

use core::fmt::Write as _;

use crate::errno::Errno;
use crate::probe::{
    MEM_ENC_CAP_DEFAULTED, MEM_ENC_CAP_ERROR, MEM_ENC_CAP_NOT_SUPPORTED, mem_enc_cap, mem_enc_caps,
};
use crate::vendor::Vendor;

/// VM type (the `KVM_CREATE_VM` argument): the default, unencrypted VM.
pub const MEM_ENC_VM_TYPE_DEFAULT: u32 = 0;
/// VM type: SEV (initialised with KVM_SEV_INIT2).
pub const MEM_ENC_VM_TYPE_SEV: u32 = 2;
/// VM type: SEV-ES.
pub const MEM_ENC_VM_TYPE_SEV_ES: u32 = 3;
/// VM type: SEV-SNP.
pub const MEM_ENC_VM_TYPE_SNP: u32 = 4;
/// VM type: TDX.
pub const MEM_ENC_VM_TYPE_TDX: u32 = 5;
/// The VM types negotiation chooses among, as a mask (bit n: type n).
pub const MEM_ENC_VM_TYPES_CONFIDENTIAL: u32 =
    (1u32 << 2) | (1u32 << 3) | (1u32 << 4) | (1u32 << 5);

/// How the chosen VM is initialised: nothing chosen.
pub const MEM_ENC_INIT_NONE: u32 = 0;
/// `KVM_SEV_INIT2` on a VM of the chosen SEV type.
pub const MEM_ENC_INIT_SEV_INIT2: u32 = 1;
/// Legacy `KVM_SEV_INIT` on a default VM (kernels without INIT2). Measurement: `vmsa_features`
/// 0, GHCB version 0.
pub const MEM_ENC_INIT_SEV_LEGACY: u32 = 2;
/// Legacy `KVM_SEV_ES_INIT` on a default VM (kernels without INIT2). Measurement differs from
/// INIT2 SEV-ES: no FPU/AVX state in the VMSA, `vmsa_features` 0, GHCB version 1.
pub const MEM_ENC_INIT_SEV_ES_LEGACY: u32 = 3;
/// `KVM_TDX_INIT_VM` on a TDX VM.
pub const MEM_ENC_INIT_TDX: u32 = 4;

/// SEV `vmsa_features` bit 0: SNP is active. KVM sets it itself for SNP VMs; never request it.
pub const MEM_ENC_SEV_FEAT_SNP_ACTIVE: u64 = 1u64 << 0;
/// SEV `vmsa_features` bit 3: restricted interrupt injection.
pub const MEM_ENC_SEV_FEAT_RESTRICTED_INJECTION: u64 = 1u64 << 3;
/// SEV `vmsa_features` bit 4: alternate interrupt injection.
pub const MEM_ENC_SEV_FEAT_ALTERNATE_INJECTION: u64 = 1u64 << 4;
/// SEV `vmsa_features` bit 5: debug registers swapped on world switch.
pub const MEM_ENC_SEV_FEAT_DEBUG_SWAP: u64 = 1u64 << 5;
/// SEV `vmsa_features` bit 7: branch target buffer isolation.
pub const MEM_ENC_SEV_FEAT_BTB_ISOLATION: u64 = 1u64 << 7;
/// SEV `vmsa_features` bit 9: Secure TSC (SNP VMs only).
pub const MEM_ENC_SEV_FEAT_SECURE_TSC: u64 = 1u64 << 9;
/// SEV `vmsa_features` bit 16: Secure AVIC.
pub const MEM_ENC_SEV_FEAT_SECURE_AVIC: u64 = 1u64 << 16;
/// SEV `vmsa_features` bit 21: IBPB on entry.
pub const MEM_ENC_SEV_FEAT_IBPB_ON_ENTRY: u64 = 1u64 << 21;

/// SEV/SEV-ES guest policy bit 0 (SEV API spec, "GUEST_POLICY"): debugging is forbidden.
pub const MEM_ENC_SEV_POLICY_NODBG: u32 = 1u32 << 0;
/// SEV/SEV-ES guest policy bit 1: sharing keys with other guests is forbidden.
pub const MEM_ENC_SEV_POLICY_NOKS: u32 = 1u32 << 1;
/// SEV/SEV-ES guest policy bit 2: SEV-ES is required. The firmware requires it set exactly for
/// SEV-ES guests; negotiation sets it for them.
pub const MEM_ENC_SEV_POLICY_ES: u32 = 1u32 << 2;
/// SEV/SEV-ES guest policy bit 3: sending the guest to another platform is forbidden.
pub const MEM_ENC_SEV_POLICY_NOSEND: u32 = 1u32 << 3;
/// SEV/SEV-ES guest policy bit 4: the guest may not be sent to a platform outside the domain.
pub const MEM_ENC_SEV_POLICY_DOMAIN: u32 = 1u32 << 4;
/// SEV/SEV-ES guest policy bit 5: the guest may not be sent to a platform without SEV.
pub const MEM_ENC_SEV_POLICY_SEV: u32 = 1u32 << 5;
/// SEV/SEV-ES guest policy bits 16-23: minimum firmware API major version (a value).
pub const MEM_ENC_SEV_POLICY_API_MAJOR_MASK: u32 = 0xffu32 << 16;
/// SEV/SEV-ES guest policy bits 24-31: minimum firmware API minor version (a value).
pub const MEM_ENC_SEV_POLICY_API_MINOR_MASK: u32 = 0xffu32 << 24;
/// The SEV/SEV-ES guest policy bits the SEV API defines (bits 6-15 are reserved).
pub const MEM_ENC_SEV_POLICY_DEFINED: u32 = MEM_ENC_SEV_POLICY_NODBG
    | MEM_ENC_SEV_POLICY_NOKS
    | MEM_ENC_SEV_POLICY_ES
    | MEM_ENC_SEV_POLICY_NOSEND
    | MEM_ENC_SEV_POLICY_DOMAIN
    | MEM_ENC_SEV_POLICY_SEV
    | MEM_ENC_SEV_POLICY_API_MAJOR_MASK
    | MEM_ENC_SEV_POLICY_API_MINOR_MASK;

/// SNP guest policy bits 0-7: minimum firmware API minor version (a value, not flags).
pub const MEM_ENC_SNP_POLICY_API_MINOR_MASK: u64 = 0xffu64;
/// SNP guest policy bits 8-15: minimum firmware API major version (a value, not flags).
pub const MEM_ENC_SNP_POLICY_API_MAJOR_MASK: u64 = 0xffu64 << 8;
/// SNP guest policy bit 16: SMT allowed.
pub const MEM_ENC_SNP_POLICY_SMT: u64 = 1u64 << 16;
/// SNP guest policy bit 17: reserved, must be one (negotiation sets it).
pub const MEM_ENC_SNP_POLICY_RSVD_MBO: u64 = 1u64 << 17;
/// SNP guest policy bit 18: migration agent allowed.
pub const MEM_ENC_SNP_POLICY_MIGRATE_MA: u64 = 1u64 << 18;
/// SNP guest policy bit 19: debugging allowed.
pub const MEM_ENC_SNP_POLICY_DEBUG: u64 = 1u64 << 19;
/// SNP guest policy bit 20: single socket only.
pub const MEM_ENC_SNP_POLICY_SINGLE_SOCKET: u64 = 1u64 << 20;
/// SNP guest policy bit 21: CXL may be used for guest memory.
pub const MEM_ENC_SNP_POLICY_CXL_ALLOW: u64 = 1u64 << 21;
/// SNP guest policy bit 22: AES-256-XTS memory encryption required.
pub const MEM_ENC_SNP_POLICY_MEM_AES_256_XTS: u64 = 1u64 << 22;
/// SNP guest policy bit 23: RAPL must be disabled.
pub const MEM_ENC_SNP_POLICY_RAPL_DIS: u64 = 1u64 << 23;
/// SNP guest policy bit 24: ciphertext hiding for DRAM required.
pub const MEM_ENC_SNP_POLICY_CIPHERTEXT_HIDING_DRAM: u64 = 1u64 << 24;
/// SNP guest policy bit 25: page swap disabled.
pub const MEM_ENC_SNP_POLICY_PAGE_SWAP_DISABLE: u64 = 1u64 << 25;

/// TDX TD attribute bit 0: off-TD debug.
pub const MEM_ENC_TDX_ATTR_DEBUG: u64 = 1u64 << 0;
/// TDX TD attribute bit 28: EPT violations are not converted to #VE for the guest. The only
/// attribute KVM supports today.
pub const MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE: u64 = 1u64 << 28;
/// TDX TD attribute bit 29: migratable TD.
pub const MEM_ENC_TDX_ATTR_MIGRATABLE: u64 = 1u64 << 29;
/// TDX TD attribute bit 30: protection keys for supervisor pages.
pub const MEM_ENC_TDX_ATTR_PKS: u64 = 1u64 << 30;
/// TDX TD attribute bit 31: key locker.
pub const MEM_ENC_TDX_ATTR_KL: u64 = 1u64 << 31;
/// TDX TD attribute bit 63: perfmon virtualisation.
pub const MEM_ENC_TDX_ATTR_PERFMON: u64 = 1u64 << 63;

/// The largest GHCB protocol version KVM implements (`GHCB_VERSION_MAX`).
pub const MEM_ENC_GHCB_VERSION_MAX: u16 = 2;

/// Bit names, for messages.
type Names = &'static [(u32, &'static str)];

const VMSA_NAMES: Names = &[
    (0, "SNP_ACTIVE"),
    (3, "RESTRICTED_INJECTION"),
    (4, "ALTERNATE_INJECTION"),
    (5, "DEBUG_SWAP"),
    (7, "BTB_ISOLATION"),
    (9, "SECURE_TSC"),
    (16, "SECURE_AVIC"),
    (21, "IBPB_ON_ENTRY"),
];

const POLICY_NAMES: Names = &[
    (16, "SMT"),
    (17, "RSVD_MBO"),
    (18, "MIGRATE_MA"),
    (19, "DEBUG"),
    (20, "SINGLE_SOCKET"),
    (21, "CXL_ALLOW"),
    (22, "MEM_AES_256_XTS"),
    (23, "RAPL_DIS"),
    (24, "CIPHERTEXT_HIDING_DRAM"),
    (25, "PAGE_SWAP_DISABLE"),
];

const TDX_ATTR_NAMES: Names = &[
    (0, "DEBUG"),
    (4, "HGS_PLUS_PROF"),
    (5, "PERF_PROF"),
    (6, "PMT_PROF"),
    (16, "ICSSD"),
    (27, "LASS"),
    (28, "SEPT_VE_DISABLE"),
    (29, "MIGRATABLE"),
    (30, "PKS"),
    (31, "KL"),
    (62, "TPA"),
    (63, "PERFMON"),
];

// XSAVE state components (Intel SDM vol. 1, 13.1).
const XFAM_NAMES: Names = &[
    (0, "X87"),
    (1, "SSE"),
    (2, "AVX"),
    (3, "MPX_BNDREGS"),
    (4, "MPX_BNDCSR"),
    (5, "AVX512_OPMASK"),
    (6, "AVX512_ZMM_HI256"),
    (7, "AVX512_HI16_ZMM"),
    (8, "PT"),
    (9, "PKRU"),
    (10, "PASID"),
    (11, "CET_U"),
    (12, "CET_S"),
    (13, "HDC"),
    (14, "UINTR"),
    (15, "LBR"),
    (16, "HWP"),
    (17, "AMX_TILECFG"),
    (18, "AMX_TILEDATA"),
    (19, "APX"),
];

/// Which bit field a message talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// SEV `vmsa_features`.
    VmsaFeatures,
    /// SNP guest policy.
    SnpPolicy,
    /// TDX TD attributes.
    TdxAttributes,
    /// TDX XFAM.
    TdxXfam,
}

impl Field {
    /// The field's name as the kernel's structs spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Field::VmsaFeatures => "vmsa_features",
            Field::SnpPolicy => "SNP policy",
            Field::TdxAttributes => "TDX attributes",
            Field::TdxXfam => "TDX xfam",
        }
    }

    const fn names(self) -> Names {
        match self {
            Field::VmsaFeatures => VMSA_NAMES,
            Field::SnpPolicy => POLICY_NAMES,
            Field::TdxAttributes => TDX_ATTR_NAMES,
            Field::TdxXfam => XFAM_NAMES,
        }
    }

    /// The name of bit `bit` of this field, if it has one.
    pub fn bit_name(self, bit: u32) -> Option<&'static str> {
        self.names()
            .iter()
            .find_map(|&(b, name)| (b == bit).then_some(name))
    }

    /// "bit 5 (DEBUG_SWAP)" / "bits 5 (DEBUG_SWAP), 12" for the set bits of `mask`.
    pub fn describe_bits(self, mask: u64) -> String {
        let mut s = String::new();
        let count = mask.count_ones();
        s.push_str(if count == 1 { "bit " } else { "bits " });
        for (i, bit) in (0..64).filter(|b| mask & (1u64 << b) != 0).enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{bit}");
            if let Some(name) = self.bit_name(bit) {
                let _ = write!(s, " ({name})");
            }
        }
        s
    }
}

/// A granted request: the bits (or the VM type) to use, and a sentence saying what was granted
/// and from what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The granted bits: all required ones plus the supported optional ones.
    pub granted: u64,
    /// What was granted, readable.
    pub note: String,
}

/// A refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `EOPNOTSUPP` (the host lacks something required) or `EINVAL` (the request is invalid).
    pub errno: Errno,
    /// The required bits the host lacks or that may not be asked for.
    pub missing: u64,
    /// Why, naming the bits, e.g. "vmsa_features bit 5 (DEBUG_SWAP) not supported by this host".
    pub message: String,
}

impl Refusal {
    fn unsupported(missing: u64, message: String) -> Refusal {
        Refusal {
            errno: Errno(libc::EOPNOTSUPP),
            missing,
            message,
        }
    }

    fn invalid(missing: u64, message: String) -> Refusal {
        Refusal {
            errno: Errno(libc::EINVAL),
            missing,
            message,
        }
    }
}

/// The VM type chosen and how to initialise it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmChoice {
    /// The technology: `MEM_ENC_VM_TYPE_SEV`, `_SEV_ES`, `_SNP` or `_TDX`.
    pub vm_type: u32,
    /// The `KVM_CREATE_VM` argument: `vm_type`, or 0 (default VM) on the legacy SEV path.
    pub create_vm_type: u32,
    /// `MEM_ENC_INIT_*`.
    pub init_path: u32,
    /// What was chosen and why, readable.
    pub note: String,
}

impl VmChoice {
    /// Whether this VM is initialised through the legacy KVM_SEV_INIT / KVM_SEV_ES_INIT path.
    pub const fn legacy(&self) -> bool {
        matches!(
            self.init_path,
            MEM_ENC_INIT_SEV_LEGACY | MEM_ENC_INIT_SEV_ES_LEGACY
        )
    }
}

/// A readable name of a VM type.
pub const fn vm_type_name(vm_type: u32) -> &'static str {
    match vm_type {
        MEM_ENC_VM_TYPE_DEFAULT => "default",
        1 => "SW-protected",
        MEM_ENC_VM_TYPE_SEV => "SEV",
        MEM_ENC_VM_TYPE_SEV_ES => "SEV-ES",
        MEM_ENC_VM_TYPE_SNP => "SEV-SNP",
        MEM_ENC_VM_TYPE_TDX => "TDX",
        _ => "unknown",
    }
}

fn errno_name(err: i32) -> String {
    // `err` may come from caller-built caps, i32::MIN included: no overflowing negation.
    match err.checked_neg() {
        Some(0) => "0".into(),
        Some(libc::ENXIO) => "-ENXIO".into(),
        Some(libc::ENOTTY) => "-ENOTTY".into(),
        Some(libc::EFAULT) => "-EFAULT".into(),
        Some(libc::EINVAL) => "-EINVAL".into(),
        Some(libc::EIO) => "-EIO".into(),
        Some(libc::E2BIG) => "-E2BIG".into(),
        _ => format!("{err}"),
    }
}

/// Whether the kernel has KVM_SEV_INIT2 (it publishes `KVM_X86_SEV_VMSA_FEATURES`).
fn has_init2(caps: &mem_enc_caps) -> bool {
    caps.sev_vmsa_features.is_known()
}

/// Whether the legacy SEV path exists (the NULL probe found a SEV backend).
fn has_legacy_sev(caps: &mem_enc_caps) -> bool {
    caps.sev_null_probe.is_known() && caps.sev_null_probe.value != 0
}

/// How `vm_type` would be created and initialised on this host, or why it cannot be.
fn vm_path(caps: &mem_enc_caps, vm_type: u32) -> Result<(u32, u32), String> {
    let vendor = caps.vendor();
    let types = &caps.vm_types;
    let lacks = |bit: u32| {
        if types.is_known() {
            format!(
                "KVM_CAP_VM_TYPES {:#x} lacks bit {bit} ({})",
                types.value,
                vm_type_name(bit)
            )
        } else {
            "this kernel has no KVM_CAP_VM_TYPES (before 6.8)".to_string()
        }
    };
    match vm_type {
        MEM_ENC_VM_TYPE_SEV | MEM_ENC_VM_TYPE_SEV_ES | MEM_ENC_VM_TYPE_SNP => {
            if vendor != Vendor::Sev {
                return Err("not an AMD host".into());
            }
            if caps.has_vm_type(vm_type) && has_init2(caps) {
                return Ok((vm_type, MEM_ENC_INIT_SEV_INIT2));
            }
            if vm_type != MEM_ENC_VM_TYPE_SNP && !has_init2(caps) && has_legacy_sev(caps) {
                let init = if vm_type == MEM_ENC_VM_TYPE_SEV {
                    MEM_ENC_INIT_SEV_LEGACY
                } else {
                    MEM_ENC_INIT_SEV_ES_LEGACY
                };
                return Ok((MEM_ENC_VM_TYPE_DEFAULT, init));
            }
            let mut why = lacks(vm_type);
            if caps.has_vm_type(vm_type) {
                why = format!(
                    "KVM_X86_SEV_VMSA_FEATURES unreadable ({})",
                    errno_name(caps.sev_vmsa_features.err)
                );
            } else if vm_type != MEM_ENC_VM_TYPE_SNP && !has_init2(caps) {
                let probe = &caps.sev_null_probe;
                let _ = write!(
                    why,
                    ", and no legacy KVM_SEV_INIT path ({})",
                    if probe.is_known() {
                        format!(
                            "KVM_MEMORY_ENCRYPT_OP(NULL) on a VM gave {}: no SEV backend",
                            errno_name(probe.err)
                        )
                    } else {
                        format!(
                            "the NULL probe could not be made: {}",
                            errno_name(probe.err)
                        )
                    }
                );
            }
            Err(why)
        }
        MEM_ENC_VM_TYPE_TDX => {
            if vendor != Vendor::Tdx {
                return Err("not an Intel host".into());
            }
            if !caps.has_vm_type(MEM_ENC_VM_TYPE_TDX) {
                return Err(lacks(MEM_ENC_VM_TYPE_TDX));
            }
            if !caps.tdx_supported_attrs.is_known() {
                return Err(format!(
                    "KVM_TDX_CAPABILITIES failed ({})",
                    errno_name(caps.tdx_supported_attrs.err)
                ));
            }
            Ok((MEM_ENC_VM_TYPE_TDX, MEM_ENC_INIT_TDX))
        }
        _ => Err("not a confidential VM type".into()),
    }
}

/// Level 1: the best VM type in `accept` (bit n: type n; SNP > SEV-ES > SEV, TDX) that this
/// host can create, and whether it needs KVM_SEV_INIT2 or the legacy INIT/ES_INIT path (kernels
/// without INIT2: SEV and SEV-ES on a default VM).
pub fn vm_type(caps: &mem_enc_caps, accept: u32) -> Result<VmChoice, Refusal> {
    if accept == 0 || accept & !MEM_ENC_VM_TYPES_CONFIDENTIAL != 0 {
        return Err(Refusal::invalid(
            u64::from(accept & !MEM_ENC_VM_TYPES_CONFIDENTIAL),
            format!(
                "accepted VM types {accept:#x}: only bits 2 (SEV), 3 (SEV-ES), 4 (SEV-SNP) and 5 (TDX) can be negotiated"
            ),
        ));
    }
    const PREFERENCE: [u32; 4] = [
        MEM_ENC_VM_TYPE_SNP,
        MEM_ENC_VM_TYPE_SEV_ES,
        MEM_ENC_VM_TYPE_SEV,
        MEM_ENC_VM_TYPE_TDX,
    ];
    let mut reasons = Vec::new();
    for t in PREFERENCE.into_iter().filter(|t| accept & (1u32 << t) != 0) {
        match vm_path(caps, t) {
            Ok((create_vm_type, init_path)) => {
                let how = match init_path {
                    MEM_ENC_INIT_SEV_INIT2 => "KVM_SEV_INIT2",
                    MEM_ENC_INIT_SEV_LEGACY => {
                        "legacy KVM_SEV_INIT on a default VM (this kernel has no INIT2)"
                    }
                    MEM_ENC_INIT_SEV_ES_LEGACY => {
                        "legacy KVM_SEV_ES_INIT on a default VM (this kernel has no INIT2; measurement differs from INIT2)"
                    }
                    _ => "KVM_TDX_INIT_VM",
                };
                return Ok(VmChoice {
                    vm_type: t,
                    create_vm_type,
                    init_path,
                    note: format!("VM type {} via {how}", vm_type_name(t)),
                });
            }
            Err(why) => reasons.push(format!("{}: {why}", vm_type_name(t))),
        }
    }
    Err(Refusal::unsupported(
        u64::from(accept),
        format!(
            "no accepted VM type is available on this host: {}",
            reasons.join("; ")
        ),
    ))
}

/// The granted set for one bit field, or the refusal naming the missing required bits.
fn intersect(
    field: Field,
    valid: u64,
    required: u64,
    optional: u64,
    why: &str,
) -> Result<Grant, Refusal> {
    let missing = required & !valid;
    if missing != 0 {
        return Err(Refusal::unsupported(
            missing,
            format!(
                "{} {} not supported by this host{why} (supported: {valid:#x})",
                field.name(),
                field.describe_bits(missing)
            ),
        ));
    }
    let granted = required | (optional & valid);
    Ok(Grant {
        granted,
        note: format!(
            "{} {granted:#x} granted (supported: {valid:#x}{why})",
            field.name()
        ),
    })
}

/// Level 2 (SEV): `vmsa_features` for a VM of `vm_type` (`MEM_ENC_VM_TYPE_SEV`, `_SEV_ES` or
/// `_SNP`). Plain SEV and the legacy INIT path take none; SECURE_TSC is SNP-only; SNP_ACTIVE is
/// never requested (KVM sets it): `-EINVAL`.
pub fn vmsa_features(
    caps: &mem_enc_caps,
    vm_type: u32,
    required: u64,
    optional: u64,
) -> Result<Grant, Refusal> {
    if (required | optional) & MEM_ENC_SEV_FEAT_SNP_ACTIVE != 0 {
        return Err(Refusal::invalid(
            MEM_ENC_SEV_FEAT_SNP_ACTIVE,
            "vmsa_features bit 0 (SNP_ACTIVE) is set by KVM itself for SNP VMs and must not be requested".into(),
        ));
    }
    if !matches!(
        vm_type,
        MEM_ENC_VM_TYPE_SEV | MEM_ENC_VM_TYPE_SEV_ES | MEM_ENC_VM_TYPE_SNP
    ) {
        return Err(Refusal::invalid(
            0,
            format!(
                "vmsa_features apply to SEV, SEV-ES and SEV-SNP VMs, not to VM type {vm_type} ({})",
                vm_type_name(vm_type)
            ),
        ));
    }
    let (valid, why) = if caps.vendor() != Vendor::Sev {
        (0, " (not an AMD host)".to_string())
    } else if !has_init2(caps) {
        (
            0,
            format!(
                " (this kernel has no KVM_SEV_INIT2: KVM_X86_SEV_VMSA_FEATURES gave {}; the legacy INIT path cannot set vmsa_features)",
                errno_name(caps.sev_vmsa_features.err)
            ),
        )
    } else if vm_type == MEM_ENC_VM_TYPE_SEV {
        (0, " (plain SEV VMs have no VMSA)".to_string())
    } else if vm_type == MEM_ENC_VM_TYPE_SEV_ES {
        (
            caps.sev_vmsa_features.value & !MEM_ENC_SEV_FEAT_SECURE_TSC,
            if caps.sev_vmsa_features.value & MEM_ENC_SEV_FEAT_SECURE_TSC != 0 {
                " for SEV-ES (SECURE_TSC is SNP-only)".to_string()
            } else {
                String::new()
            },
        )
    } else {
        (caps.sev_vmsa_features.value, String::new())
    };
    intersect(Field::VmsaFeatures, valid, required, optional, &why)
}

/// The GHCB protocol version for a VM: `requested` 0 means the kernel's default. Plain SEV and
/// legacy SEV take 0; legacy SEV-ES is fixed at 1; INIT2 SEV-ES takes 1 or 2 (default 2); SNP
/// needs 2.
pub fn ghcb_version(choice: &VmChoice, requested: u16) -> Result<u16, Refusal> {
    let refuse = |errno: i32, why: String| Refusal {
        errno: Errno(errno),
        missing: 0,
        message: format!("ghcb_version {requested}: {why}"),
    };
    match choice.init_path {
        MEM_ENC_INIT_SEV_LEGACY => match requested {
            0 => Ok(0),
            _ => Err(refuse(
                libc::EINVAL,
                "plain SEV VMs have no GHCB (use 0)".into(),
            )),
        },
        MEM_ENC_INIT_SEV_ES_LEGACY => match requested {
            0 | 1 => Ok(1),
            _ => Err(refuse(
                libc::EOPNOTSUPP,
                "this kernel has no KVM_SEV_INIT2; legacy KVM_SEV_ES_INIT always uses GHCB version 1"
                    .into(),
            )),
        },
        MEM_ENC_INIT_SEV_INIT2 => match (choice.vm_type, requested) {
            (MEM_ENC_VM_TYPE_SEV, 0) => Ok(0),
            (MEM_ENC_VM_TYPE_SEV, _) => Err(refuse(
                libc::EINVAL,
                "plain SEV VMs have no GHCB (use 0)".into(),
            )),
            (_, v) if v > MEM_ENC_GHCB_VERSION_MAX => Err(refuse(
                libc::EOPNOTSUPP,
                format!("KVM implements GHCB versions up to {MEM_ENC_GHCB_VERSION_MAX}"),
            )),
            (_, 0) => Ok(MEM_ENC_GHCB_VERSION_MAX),
            (MEM_ENC_VM_TYPE_SNP, 1) => Err(refuse(
                libc::EINVAL,
                "SEV-SNP needs GHCB version 2".into(),
            )),
            (_, v) => Ok(v),
        },
        _ => match requested {
            0 => Ok(0),
            _ => Err(refuse(
                libc::EINVAL,
                "the GHCB applies to SEV-ES and SEV-SNP VMs only".into(),
            )),
        },
    }
}

/// Level 2 (SEV, SEV-ES): the guest policy for LAUNCH_START. `requested` keeps its bits (the
/// firmware, not the kernel, enforces them, and every defined bit is a restriction the guest
/// owner may choose); `MEM_ENC_SEV_POLICY_ES` is added for SEV-ES guests, whose LAUNCH_START the
/// firmware refuses without it, and refused for plain SEV guests, whose LAUNCH_START it refuses
/// with it. The reserved bits 6-15 are refused.
pub fn sev_policy(vm_type: u32, requested: u32) -> Result<u32, Refusal> {
    let reserved = requested & !MEM_ENC_SEV_POLICY_DEFINED;
    if reserved != 0 {
        return Err(Refusal::invalid(
            u64::from(reserved),
            format!(
                "SEV policy {requested:#x}: bits {reserved:#x} are reserved (SEV API: bits 6-15)"
            ),
        ));
    }
    match vm_type {
        MEM_ENC_VM_TYPE_SEV_ES => Ok(requested | MEM_ENC_SEV_POLICY_ES),
        MEM_ENC_VM_TYPE_SEV if requested & MEM_ENC_SEV_POLICY_ES != 0 => Err(Refusal::invalid(
            u64::from(MEM_ENC_SEV_POLICY_ES),
            format!(
                "SEV policy {requested:#x}: bit 2 (ES) is for SEV-ES guests; the chosen VM type is SEV"
            ),
        )),
        MEM_ENC_VM_TYPE_SEV => Ok(requested),
        _ => Err(Refusal::invalid(
            u64::from(requested),
            format!(
                "SEV policy {requested:#x}: the chosen VM type is {}",
                vm_type_name(vm_type)
            ),
        )),
    }
}

/// Level 2 (SNP): the guest policy. Bits 0-15 of `required` are the minimum firmware API
/// version (minor, major): values, passed through unchanged and never "optional" (`-EINVAL` if
/// `optional` has any). Bit 17 (must be one) is set. Feature bits must be ones the kernel
/// publishes (or, on kernels that do not publish them, the static `0x1BFFFF`).
pub fn snp_policy(caps: &mem_enc_caps, required: u64, optional: u64) -> Result<Grant, Refusal> {
    const API: u64 = MEM_ENC_SNP_POLICY_API_MINOR_MASK | MEM_ENC_SNP_POLICY_API_MAJOR_MASK;
    if optional & API != 0 {
        return Err(Refusal::invalid(
            optional & API,
            format!(
                "SNP policy bits 0-15 are the minimum firmware API version (a value), not optional features: optional {optional:#x}"
            ),
        ));
    }
    if let Err(why) = vm_path(caps, MEM_ENC_VM_TYPE_SNP) {
        return Err(Refusal::unsupported(
            0,
            format!("SNP policy: SEV-SNP is not available on this host: {why}"),
        ));
    }
    let Some(published) = caps.snp_policy_bits.value() else {
        return Err(Refusal::unsupported(
            0,
            format!(
                "SNP policy: the supported policy bits are unknown ({}, {})",
                crate::probe::status_name(caps.snp_policy_bits.status),
                errno_name(caps.snp_policy_bits.err)
            ),
        ));
    };
    let legacy = caps.snp_policy_bits.status == MEM_ENC_CAP_DEFAULTED;
    let why = if legacy {
        "; this kernel does not publish KVM_X86_SNP_POLICY_BITS, so the static pre-publication mask applies"
    } else {
        ""
    };
    // Kernels from before the published mask (6.11-era snp_launch_start) also refuse a policy
    // without SMT and one with SINGLE_SOCKET. SMT is not filled in like bit 17: setting it
    // loosens the guest owner's policy, so it must be asked for.
    let (grantable, must_have) = if legacy {
        (
            published & !API & !MEM_ENC_SNP_POLICY_SINGLE_SOCKET,
            MEM_ENC_SNP_POLICY_SMT,
        )
    } else {
        (published & !API, 0)
    };
    if (required | optional) & must_have != must_have {
        return Err(Refusal::unsupported(
            must_have,
            format!(
                "SNP policy: bit 16 (SMT) must be set on this kernel (it refuses policies without it{why}); add MEM_ENC_SNP_POLICY_SMT to the required or optional bits"
            ),
        ));
    }
    let features = intersect(
        Field::SnpPolicy,
        grantable,
        (required & !API) | MEM_ENC_SNP_POLICY_RSVD_MBO | must_have,
        optional,
        why,
    )?;
    let granted = features.granted | (required & API);
    Ok(Grant {
        granted,
        note: format!(
            "SNP policy {granted:#x} granted (API >= {}.{}; supported bits: {published:#x}{why})",
            (required >> 8) & 0xff,
            required & 0xff
        ),
    })
}

fn tdx_field(
    caps: &mem_enc_caps,
    field: Field,
    supported: &mem_enc_cap,
    required: u64,
    optional: u64,
) -> Result<Grant, Refusal> {
    if let Err(why) = vm_path(caps, MEM_ENC_VM_TYPE_TDX) {
        return Err(Refusal::unsupported(
            0,
            format!("{}: TDX is not available on this host: {why}", field.name()),
        ));
    }
    intersect(field, supported.value, required, optional, "")
}

/// Level 2 (TDX): TD attributes, against `supported_attrs`.
pub fn tdx_attributes(caps: &mem_enc_caps, required: u64, optional: u64) -> Result<Grant, Refusal> {
    tdx_field(
        caps,
        Field::TdxAttributes,
        &caps.tdx_supported_attrs,
        required,
        optional,
    )
}

/// Level 2 (TDX): XFAM, against `supported_xfam`.
pub fn tdx_xfam(caps: &mem_enc_caps, required: u64, optional: u64) -> Result<Grant, Refusal> {
    tdx_field(
        caps,
        Field::TdxXfam,
        &caps.tdx_supported_xfam,
        required,
        optional,
    )
}

/// What a VMM asks for a launch; zero fields ask for nothing (and `ghcb_version` 0 for the
/// default). Growing struct, passed with its size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_launch_request {
    /// The VM types the caller accepts (bit n: type n; `MEM_ENC_VM_TYPES_CONFIDENTIAL` bits).
    pub accept_vm_types: u32,
    /// SEV-ES/SNP GHCB protocol version; 0 for the default (2 with INIT2, 1 with ES_INIT). The
    /// kernel's width (`kvm_sev_init.ghcb_version`, `mem_enc_sev_init2_args.ghcb_version`).
    pub ghcb_version: u16,
    /// Must be 0 (the upper half of the first layout's 32-bit `ghcb_version`: a caller
    /// built against that header passes the same bytes).
    pub reserved0: u16,
    /// SEV-ES/SNP `vmsa_features` the VM must have.
    pub vmsa_features_required: u64,
    /// SEV-ES/SNP `vmsa_features` the VM gets if the host has them.
    pub vmsa_features_optional: u64,
    /// SNP policy: feature bits that must be set, plus the minimum firmware API in bits 0-15.
    pub snp_policy_required: u64,
    /// SNP policy feature bits set if the host supports them.
    pub snp_policy_optional: u64,
    /// TDX attributes that must be set.
    pub tdx_attributes_required: u64,
    /// TDX attributes set if supported.
    pub tdx_attributes_optional: u64,
    /// TDX XFAM bits that must be set.
    pub tdx_xfam_required: u64,
    /// TDX XFAM bits set if supported.
    pub tdx_xfam_optional: u64,
    /// SEV/SEV-ES guest policy (`MEM_ENC_SEV_POLICY_*`, the minimum firmware API version in
    /// bits 16-31). `MEM_ENC_SEV_POLICY_ES` is added for SEV-ES guests; asking for it when the
    /// chosen type is SEV is refused. Added in `MEM_ENC_LAUNCH_REQUEST_SIZE_VER1`.
    pub sev_policy: u32,
    /// Must be 0.
    pub reserved1: u32,
}

/// The first published size of `struct mem_enc_launch_request`.
pub const MEM_ENC_LAUNCH_REQUEST_SIZE_VER0: u32 = 72;
/// The size of `struct mem_enc_launch_request` with `sev_policy` (callers passing
/// `MEM_ENC_LAUNCH_REQUEST_SIZE_VER0` ask for a policy of 0).
pub const MEM_ENC_LAUNCH_REQUEST_SIZE_VER1: u32 = 80;

/// The negotiated launch: what to create and pass to the kernel. Everything here except
/// `create_vm_type` enters what a guest owner must reproduce to compute the expected launch
/// measurement (SEV-ES/SNP: VM type and init path decide whether the FPU/AVX state is in the
/// VMSA, `vmsa_features` and `ghcb_version` are in the VMSA, `snp_policy` is in the launch
/// digest's inputs, `sev_policy` in the SEV LAUNCH_MEASURE HMAC; TDX: `tdx_attributes` and
/// `tdx_xfam` are in the TD report). Fields that do not apply to the chosen VM type are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_launch_settings {
    /// `MEM_ENC_VENDOR_*`.
    pub vendor: u32,
    /// The technology: `MEM_ENC_VM_TYPE_SEV`, `_SEV_ES`, `_SNP` or `_TDX`.
    pub vm_type: u32,
    /// The `KVM_CREATE_VM` argument (0 on the legacy SEV path).
    pub create_vm_type: u32,
    /// `MEM_ENC_INIT_*`: KVM_SEV_INIT2, legacy KVM_SEV_INIT / KVM_SEV_ES_INIT, or KVM_TDX_INIT_VM.
    pub init_path: u32,
    /// The GHCB version to pass (`kvm_sev_init.ghcb_version`, the same width as
    /// `mem_enc_sev_init2_args.ghcb_version`; legacy ES_INIT: 1, implied).
    pub ghcb_version: u16,
    /// Zero (the upper half of the first layout's 32-bit `ghcb_version`: a caller built
    /// against that header reads the same value).
    pub reserved0: u16,
    /// 1 when the legacy INIT/ES_INIT path is used (a different launch measurement).
    pub legacy: u32,
    /// `kvm_sev_init.vmsa_features`.
    pub vmsa_features: u64,
    /// `kvm_sev_snp_launch_start.policy` (bit 17 set).
    pub snp_policy: u64,
    /// `kvm_tdx_init_vm.attributes`.
    pub tdx_attributes: u64,
    /// `kvm_tdx_init_vm.xfam`.
    pub tdx_xfam: u64,
    /// SEV/SEV-ES: the guest policy for LAUNCH_START (`mem_enc_sev_start_args.policy`): the
    /// requested bits, with `MEM_ENC_SEV_POLICY_ES` for SEV-ES. Added in
    /// `MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1` (a `MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0` caller does
    /// not get it).
    pub sev_policy: u32,
    /// Zero.
    pub reserved1: u32,
}

/// The first published size of `struct mem_enc_launch_settings`.
pub const MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0: u32 = 56;
/// The size of `struct mem_enc_launch_settings` with `sev_policy`.
pub const MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1: u32 = 64;

const _: () = {
    assert!(size_of::<mem_enc_launch_request>() == MEM_ENC_LAUNCH_REQUEST_SIZE_VER1 as usize);
    assert!(size_of::<mem_enc_launch_settings>() == MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1 as usize);
    assert!(core::mem::offset_of!(mem_enc_launch_request, sev_policy) == 72);
    assert!(core::mem::offset_of!(mem_enc_launch_settings, sev_policy) == 56);
    // The GHCB version where 0.1 had a u32: the same bytes on little-endian x86.
    assert!(core::mem::offset_of!(mem_enc_launch_request, ghcb_version) == 4);
    assert!(core::mem::offset_of!(mem_enc_launch_settings, ghcb_version) == 16);
    assert!(core::mem::offset_of!(mem_enc_launch_settings, legacy) == 20);
    assert!(MEM_ENC_VM_TYPE_SEV == crate::uapi::KVM_X86_SEV_VM);
    assert!(MEM_ENC_VM_TYPE_SEV_ES == crate::uapi::KVM_X86_SEV_ES_VM);
    assert!(MEM_ENC_VM_TYPE_SNP == crate::uapi::KVM_X86_SNP_VM);
    assert!(MEM_ENC_VM_TYPE_TDX == crate::uapi::KVM_X86_TDX_VM);
    assert!(MEM_ENC_VM_TYPE_DEFAULT == crate::uapi::KVM_X86_DEFAULT_VM);
};

/// Every level at once: the VM type, then the settings that apply to it. A request for fields
/// that do not apply to the chosen type (e.g. TDX attributes for an SNP VM) is refused
/// (`-EINVAL`) only if it has required bits; optional bits for other types are ignored, so one
/// request can accept both vendors. The note lists every measured setting.
pub fn launch(
    caps: &mem_enc_caps,
    req: &mem_enc_launch_request,
) -> Result<(mem_enc_launch_settings, String), Refusal> {
    if req.reserved0 != 0 || req.reserved1 != 0 {
        return Err(Refusal::invalid(
            0,
            "launch request: the reserved fields must be 0".into(),
        ));
    }
    let choice = vm_type(caps, req.accept_vm_types)?;
    let mut s = mem_enc_launch_settings {
        vendor: caps.vendor,
        vm_type: choice.vm_type,
        create_vm_type: choice.create_vm_type,
        init_path: choice.init_path,
        legacy: u32::from(choice.legacy()),
        ..Default::default()
    };
    let foreign = |what: &str, bits: u64| {
        Err(Refusal::invalid(
            bits,
            format!(
                "{what} {bits:#x} required, but the chosen VM type is {}",
                vm_type_name(choice.vm_type)
            ),
        ))
    };
    if choice.vm_type == MEM_ENC_VM_TYPE_TDX {
        if req.vmsa_features_required != 0 {
            return foreign("vmsa_features", req.vmsa_features_required);
        }
        if req.snp_policy_required != 0 {
            return foreign("SNP policy", req.snp_policy_required);
        }
        if req.ghcb_version != 0 {
            return foreign("ghcb_version", u64::from(req.ghcb_version));
        }
        if req.sev_policy != 0 {
            return foreign("SEV policy", u64::from(req.sev_policy));
        }
        s.tdx_attributes = tdx_attributes(
            caps,
            req.tdx_attributes_required,
            req.tdx_attributes_optional,
        )?
        .granted;
        s.tdx_xfam = tdx_xfam(caps, req.tdx_xfam_required, req.tdx_xfam_optional)?.granted;
    } else {
        if req.tdx_attributes_required != 0 {
            return foreign("TDX attributes", req.tdx_attributes_required);
        }
        if req.tdx_xfam_required != 0 {
            return foreign("TDX xfam", req.tdx_xfam_required);
        }
        s.ghcb_version = ghcb_version(&choice, req.ghcb_version)?;
        s.vmsa_features = vmsa_features(
            caps,
            choice.vm_type,
            req.vmsa_features_required,
            req.vmsa_features_optional,
        )?
        .granted;
        if choice.vm_type == MEM_ENC_VM_TYPE_SNP {
            if req.sev_policy != 0 {
                return foreign("SEV policy", u64::from(req.sev_policy));
            }
            s.snp_policy =
                snp_policy(caps, req.snp_policy_required, req.snp_policy_optional)?.granted;
        } else if req.snp_policy_required != 0 {
            return foreign("SNP policy", req.snp_policy_required);
        } else {
            s.sev_policy = sev_policy(choice.vm_type, req.sev_policy)?;
        }
    }
    let mut note = choice.note.clone();
    let _ = match choice.vm_type {
        MEM_ENC_VM_TYPE_TDX => write!(
            note,
            "; measured settings: attributes {:#x}, xfam {:#x}",
            s.tdx_attributes, s.tdx_xfam
        ),
        _ => write!(
            note,
            "; measured settings: {} init path, vmsa_features {:#x}, ghcb_version {}, policy {:#x}",
            if s.legacy != 0 { "legacy" } else { "INIT2" },
            s.vmsa_features,
            s.ghcb_version,
            if choice.vm_type == MEM_ENC_VM_TYPE_SNP {
                s.snp_policy
            } else {
                u64::from(s.sev_policy)
            }
        ),
    };
    Ok((s, note))
}

/// A readable line about a probe status, for reports ("not supported by this kernel (-ENXIO)").
pub fn describe_cap(cap: &mem_enc_cap) -> String {
    let name = crate::probe::status_name(cap.status);
    match cap.status {
        MEM_ENC_CAP_NOT_SUPPORTED | MEM_ENC_CAP_ERROR | MEM_ENC_CAP_DEFAULTED if cap.err != 0 => {
            format!("{name} ({})", errno_name(cap.err))
        }
        _ => name.to_string(),
    }
}

#[cfg(test)]
#[path = "test_fixtures.rs"]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::probe::MEM_ENC_CAP_NOT_AVAILABLE;

    const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    const EINVAL: Errno = Errno(libc::EINVAL);

    fn bit(n: u32) -> u32 {
        1 << n
    }

    /// This machine's kind: AMD CPU, KVM with no SEV backend (kernel-abi.md facts).
    fn amd_without_sev() -> mem_enc_caps {
        let mut c = mem_enc_caps {
            vendor: Vendor::Sev.as_u32(),
            api_version: mem_enc_cap::known(12),
            vm_types: mem_enc_cap::known(1),
            sev_vmsa_features: mem_enc_cap::not_supported(-libc::ENXIO),
            snp_policy_bits: mem_enc_cap::not_supported(-libc::ENXIO),
            snp_req_certs: mem_enc_cap::not_supported(-libc::ENXIO),
            sev_null_probe: mem_enc_cap {
                err: -libc::ENOTTY,
                ..mem_enc_cap::known(0)
            },
            tdx_supported_attrs: mem_enc_cap::not_available(),
            tdx_supported_xfam: mem_enc_cap::not_available(),
            tdx_cpuid_configs: mem_enc_cap::not_available(),
            guest_memfd: mem_enc_cap::known(1),
            memory_attributes: mem_enc_cap::known(8),
            ..Default::default()
        };
        c.summarize();
        c
    }

    /// A newer SNP host that publishes its policy bits and has Secure TSC (simulated snp@6.18
    /// as it was probed), on firmware without CXL_ALLOW.
    fn snp_host_with_policy_attr() -> mem_enc_caps {
        let mut c = mem_enc_caps {
            snp_policy_bits: mem_enc_cap::known(0x3FB_FFFF & !MEM_ENC_SNP_POLICY_CXL_ALLOW),
            ..snp_618_probe()
        };
        c.summarize();
        c
    }

    fn nothing() -> mem_enc_caps {
        mem_enc_caps::default()
    }

    fn all() -> u32 {
        MEM_ENC_VM_TYPES_CONFIDENTIAL
    }

    #[test]
    fn bit_descriptions_name_known_bits() {
        assert_eq!(
            Field::VmsaFeatures.describe_bits(MEM_ENC_SEV_FEAT_DEBUG_SWAP),
            "bit 5 (DEBUG_SWAP)"
        );
        assert_eq!(
            Field::SnpPolicy.describe_bits((1 << 19) | (1 << 40)),
            "bits 19 (DEBUG), 40"
        );
        assert_eq!(Field::TdxXfam.bit_name(18), Some("AMX_TILEDATA"));
        assert_eq!(Field::TdxAttributes.bit_name(28), Some("SEPT_VE_DISABLE"));
    }

    #[test]
    fn vm_type_rejects_non_confidential_or_empty_masks() {
        let caps = snp_host_with_policy_attr();
        for accept in [0, 1, bit(1), bit(6) | bit(4)] {
            let r = vm_type(&caps, accept).unwrap_err();
            assert_eq!(r.errno, EINVAL, "accept {accept:#x}");
        }
    }

    #[test]
    fn vm_type_on_a_host_without_sev_names_every_reason() {
        let caps = amd_without_sev();
        let r = vm_type(&caps, all()).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);
        assert_eq!(r.missing, u64::from(all()));
        assert!(
            r.message
                .contains("SEV-SNP: KVM_CAP_VM_TYPES 0x1 lacks bit 4"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("-ENOTTY: no SEV backend"),
            "{}",
            r.message
        );
        assert!(
            r.message.contains("TDX: not an Intel host"),
            "{}",
            r.message
        );
    }

    #[test]
    fn vm_type_on_a_host_with_nothing() {
        let r = vm_type(&nothing(), all()).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);
        assert!(r.message.contains("not an AMD host"));
    }

    #[test]
    fn vm_type_prefers_snp_then_es_then_sev() {
        let caps = snp_host_with_policy_attr();
        let pick = |accept| vm_type(&caps, accept).unwrap();
        let c = pick(all());
        assert_eq!(
            (c.vm_type, c.create_vm_type, c.init_path),
            (4, 4, MEM_ENC_INIT_SEV_INIT2)
        );
        assert_eq!(pick(bit(2) | bit(3)).vm_type, 3);
        assert_eq!(pick(bit(2)).vm_type, 2);
        assert!(!pick(bit(2)).legacy());
        // A host whose VM types lack SEV-ES falls back to SEV.
        let only = mem_enc_caps {
            vm_types: mem_enc_cap::known(0b1_0101),
            ..caps
        };
        assert_eq!(vm_type(&only, bit(3) | bit(2)).unwrap().vm_type, 2);
        assert_eq!(vm_type(&only, bit(3)).unwrap_err().errno, EOPNOTSUPP);
    }

    #[test]
    fn old_kernel_uses_the_legacy_init_path_on_a_default_vm() {
        let caps = old_sev_kernel();
        let c = vm_type(&caps, all()).unwrap();
        assert_eq!((c.vm_type, c.create_vm_type), (MEM_ENC_VM_TYPE_SEV_ES, 0));
        assert_eq!(c.init_path, MEM_ENC_INIT_SEV_ES_LEGACY);
        assert!(c.legacy());
        let c = vm_type(&caps, bit(2)).unwrap();
        assert_eq!(
            (c.create_vm_type, c.init_path),
            (0, MEM_ENC_INIT_SEV_LEGACY)
        );
        let r = vm_type(&caps, bit(4)).unwrap_err();
        assert!(r.message.contains("no KVM_CAP_VM_TYPES"), "{}", r.message);
    }

    #[test]
    fn init2_kernel_with_sev_disabled_does_not_fall_back_to_legacy() {
        // INIT2 exists but VM types lacks SEV: the module has SEV off; legacy would fail too.
        let caps = mem_enc_caps {
            sev_vmsa_features: mem_enc_cap::known(0),
            sev_null_probe: mem_enc_cap::known(1),
            ..amd_without_sev()
        };
        assert_eq!(vm_type(&caps, bit(2)).unwrap_err().errno, EOPNOTSUPP);
    }

    #[test]
    fn tdx_host_gets_tdx_and_no_sev() {
        let caps = tdx_host();
        let c = vm_type(&caps, all()).unwrap();
        assert_eq!((c.vm_type, c.init_path), (5, MEM_ENC_INIT_TDX));
        let r = vm_type(&caps, bit(4) | bit(3)).unwrap_err();
        assert!(r.message.contains("not an AMD host"));
        // TDX in VM types but KVM_TDX_CAPABILITIES failed:
        let broken = mem_enc_caps {
            tdx_supported_attrs: mem_enc_cap::error(Errno(libc::EIO)),
            ..caps
        };
        let r = vm_type(&broken, bit(5)).unwrap_err();
        assert!(
            r.message.contains("KVM_TDX_CAPABILITIES failed (-EIO)"),
            "{}",
            r.message
        );
    }

    #[test]
    fn vmsa_features_never_snp_active() {
        let caps = snp_host_with_policy_attr();
        for (req, opt) in [(1, 0), (0, 1), (0x21, 0)] {
            let r = vmsa_features(&caps, 4, req, opt).unwrap_err();
            assert_eq!((r.errno, r.missing), (EINVAL, 1));
        }
    }

    #[test]
    fn vmsa_features_granted_and_missing_by_name() {
        let caps = snp_host_without_policy_attr();
        let g = vmsa_features(&caps, 3, MEM_ENC_SEV_FEAT_DEBUG_SWAP, 0).unwrap();
        assert_eq!(g.granted, MEM_ENC_SEV_FEAT_DEBUG_SWAP);
        let g = vmsa_features(&caps, 4, 0, MEM_ENC_SEV_FEAT_DEBUG_SWAP | (1 << 7)).unwrap();
        assert_eq!(g.granted, MEM_ENC_SEV_FEAT_DEBUG_SWAP);
        let r = vmsa_features(&caps, 4, MEM_ENC_SEV_FEAT_SECURE_TSC, 0).unwrap_err();
        assert_eq!(
            (r.errno, r.missing),
            (EOPNOTSUPP, MEM_ENC_SEV_FEAT_SECURE_TSC)
        );
        assert!(
            r.message
                .starts_with("vmsa_features bit 9 (SECURE_TSC) not supported by this host"),
            "{}",
            r.message
        );
        let no_swap = mem_enc_caps {
            sev_vmsa_features: mem_enc_cap::known(0),
            ..caps
        };
        let r = vmsa_features(&no_swap, 3, MEM_ENC_SEV_FEAT_DEBUG_SWAP, 0).unwrap_err();
        assert!(
            r.message
                .starts_with("vmsa_features bit 5 (DEBUG_SWAP) not supported by this host")
        );
    }

    #[test]
    fn secure_tsc_only_for_snp() {
        let caps = snp_host_with_policy_attr();
        let tsc = MEM_ENC_SEV_FEAT_SECURE_TSC;
        assert_eq!(vmsa_features(&caps, 4, tsc, 0).unwrap().granted, tsc);
        let r = vmsa_features(&caps, 3, tsc, 0).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);
        assert!(r.message.contains("SNP-only"), "{}", r.message);
        assert_eq!(vmsa_features(&caps, 3, 0, tsc).unwrap().granted, 0);
    }

    #[test]
    fn plain_sev_and_legacy_take_no_vmsa_features() {
        let caps = snp_host_with_policy_attr();
        assert_eq!(vmsa_features(&caps, 2, 0, !1).unwrap().granted, 0);
        assert!(vmsa_features(&caps, 2, MEM_ENC_SEV_FEAT_DEBUG_SWAP, 0).is_err());
        let old = old_sev_kernel();
        let r = vmsa_features(&old, 3, MEM_ENC_SEV_FEAT_DEBUG_SWAP, 0).unwrap_err();
        assert!(r.message.contains("no KVM_SEV_INIT2"), "{}", r.message);
        assert_eq!(
            vmsa_features(&old, 3, 0, MEM_ENC_SEV_FEAT_DEBUG_SWAP)
                .unwrap()
                .granted,
            0
        );
        assert_eq!(vmsa_features(&caps, 5, 0, 0).unwrap_err().errno, EINVAL);
        assert_eq!(vmsa_features(&tdx_host(), 3, 0, 0).unwrap().granted, 0);
    }

    #[test]
    fn ghcb_versions_per_path() {
        let choice = |caps: &mem_enc_caps, t: u32| vm_type(caps, bit(t)).unwrap();
        let new = snp_host_with_policy_attr();
        let snp = choice(&new, 4);
        assert_eq!(ghcb_version(&snp, 0).unwrap(), 2);
        assert_eq!(ghcb_version(&snp, 2).unwrap(), 2);
        assert_eq!(ghcb_version(&snp, 1).unwrap_err().errno, EINVAL);
        assert_eq!(ghcb_version(&snp, 3).unwrap_err().errno, EOPNOTSUPP);
        let es = choice(&new, 3);
        assert_eq!(ghcb_version(&es, 1).unwrap(), 1);
        assert_eq!(ghcb_version(&es, 0).unwrap(), 2);
        let sev = choice(&new, 2);
        assert_eq!(ghcb_version(&sev, 0).unwrap(), 0);
        assert_eq!(ghcb_version(&sev, 2).unwrap_err().errno, EINVAL);
        let old = old_sev_kernel();
        let les = choice(&old, 3);
        assert_eq!(ghcb_version(&les, 0).unwrap(), 1);
        let r = ghcb_version(&les, 2).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);
        assert!(r.message.contains("version 1"));
        assert_eq!(ghcb_version(&choice(&old, 2), 1).unwrap_err().errno, EINVAL);
        assert_eq!(
            ghcb_version(&choice(&tdx_host(), 5), 2).unwrap_err().errno,
            EINVAL
        );
    }

    #[test]
    fn snp_policy_sets_mbo_and_passes_api_values() {
        let caps = snp_host_with_policy_attr();
        let g = snp_policy(&caps, 0x0105 | MEM_ENC_SNP_POLICY_SMT, 0).unwrap();
        assert_eq!(
            g.granted,
            0x0105 | MEM_ENC_SNP_POLICY_SMT | MEM_ENC_SNP_POLICY_RSVD_MBO
        );
        assert!(g.note.contains("API >= 1.5"), "{}", g.note);
        // API values are never optional.
        let r = snp_policy(&caps, 0, 0x0100).unwrap_err();
        assert_eq!(r.errno, EINVAL);
        // An API value with all bits set is still a value, not a feature request.
        assert_eq!(
            snp_policy(&caps, 0xffff, 0).unwrap().granted,
            0xffff | (1 << 17)
        );
    }

    #[test]
    fn snp_policy_only_published_bits() {
        let caps = snp_host_with_policy_attr();
        let r = snp_policy(&caps, MEM_ENC_SNP_POLICY_CXL_ALLOW, 0).unwrap_err();
        assert_eq!(
            (r.errno, r.missing),
            (EOPNOTSUPP, MEM_ENC_SNP_POLICY_CXL_ALLOW)
        );
        assert!(
            r.message
                .contains("SNP policy bit 21 (CXL_ALLOW) not supported"),
            "{}",
            r.message
        );
        let g = snp_policy(
            &caps,
            0,
            MEM_ENC_SNP_POLICY_CXL_ALLOW | MEM_ENC_SNP_POLICY_DEBUG,
        )
        .unwrap();
        assert_eq!(
            g.granted,
            MEM_ENC_SNP_POLICY_DEBUG | MEM_ENC_SNP_POLICY_RSVD_MBO
        );
        // MIGRATE_MA (18) is outside even the newer kernels' mask.
        let r = snp_policy(&caps, MEM_ENC_SNP_POLICY_MIGRATE_MA, 0).unwrap_err();
        assert!(r.message.contains("bit 18 (MIGRATE_MA)"), "{}", r.message);
    }

    #[test]
    fn snp_policy_without_the_attribute_uses_the_static_mask_and_says_so() {
        let caps = snp_host_without_policy_attr();
        let smt = MEM_ENC_SNP_POLICY_SMT;
        let r = snp_policy(&caps, MEM_ENC_SNP_POLICY_MIGRATE_MA | smt, 0).unwrap_err();
        assert_eq!(r.missing, MEM_ENC_SNP_POLICY_MIGRATE_MA);
        assert!(
            r.message.contains("KVM_X86_SNP_POLICY_BITS"),
            "{}",
            r.message
        );
        let g = snp_policy(&caps, MEM_ENC_SNP_POLICY_DEBUG | smt, 0).unwrap();
        assert_eq!(g.granted, (1 << 19) | (1 << 17) | smt);
        assert!(g.note.contains("static"), "{}", g.note);
        let r = snp_policy(&caps, MEM_ENC_SNP_POLICY_PAGE_SWAP_DISABLE | smt, 0).unwrap_err();
        assert!(r.message.contains("bit 25 (PAGE_SWAP_DISABLE)"));
        // Those kernels refuse SINGLE_SOCKET and require SMT (6.11 snp_launch_start).
        let r = snp_policy(&caps, MEM_ENC_SNP_POLICY_SINGLE_SOCKET | smt, 0).unwrap_err();
        assert_eq!(r.missing, MEM_ENC_SNP_POLICY_SINGLE_SOCKET);
        let g = snp_policy(&caps, smt, MEM_ENC_SNP_POLICY_SINGLE_SOCKET).unwrap();
        assert_eq!(g.granted, smt | (1 << 17));
        let r = snp_policy(&caps, 0, 0).unwrap_err();
        assert_eq!((r.errno, r.missing), (EOPNOTSUPP, smt));
        assert!(
            r.message.contains("bit 16 (SMT) must be set"),
            "{}",
            r.message
        );
        // SMT as optional is enough: it is granted.
        assert_eq!(snp_policy(&caps, 0, smt).unwrap().granted, smt | (1 << 17));
        // Kernels that publish the mask have no such rule.
        let newer = snp_host_with_policy_attr();
        assert_eq!(snp_policy(&newer, 0, 0).unwrap().granted, 1 << 17);
    }

    #[test]
    fn snp_policy_needs_snp() {
        for caps in [amd_without_sev(), old_sev_kernel(), tdx_host(), nothing()] {
            let r = snp_policy(&caps, 0, 0).unwrap_err();
            assert_eq!(r.errno, EOPNOTSUPP);
            assert!(
                r.message.contains("SEV-SNP is not available"),
                "{}",
                r.message
            );
        }
        let unknown = mem_enc_caps {
            snp_policy_bits: mem_enc_cap::error(Errno(libc::EFAULT)),
            ..snp_host_with_policy_attr()
        };
        assert!(
            snp_policy(&unknown, 0, 0)
                .unwrap_err()
                .message
                .contains("unknown")
        );
    }

    #[test]
    fn tdx_attributes_and_xfam() {
        let caps = tdx_host();
        let sept = MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE;
        assert_eq!(tdx_attributes(&caps, sept, 0).unwrap().granted, sept);
        assert_eq!(
            tdx_attributes(&caps, 0, sept | MEM_ENC_TDX_ATTR_DEBUG)
                .unwrap()
                .granted,
            sept
        );
        let r = tdx_attributes(&caps, MEM_ENC_TDX_ATTR_DEBUG, 0).unwrap_err();
        assert_eq!((r.errno, r.missing), (EOPNOTSUPP, 1));
        assert!(
            r.message
                .starts_with("TDX attributes bit 0 (DEBUG) not supported by this host")
        );
        assert_eq!(tdx_xfam(&caps, 0x3, 0x6_0000).unwrap().granted, 0x6_0003);
        let r = tdx_xfam(&caps, 1 << 19, 0).unwrap_err();
        assert!(r.message.contains("bit 19 (APX)"), "{}", r.message);
        let r = tdx_attributes(&snp_host_with_policy_attr(), 0, 0).unwrap_err();
        assert!(r.message.contains("TDX is not available"));
        let not_enabled = mem_enc_caps {
            vm_types: mem_enc_cap::known(1),
            tdx_supported_attrs: mem_enc_cap::not_available(),
            ..caps
        };
        assert_eq!(
            not_enabled.tdx_supported_attrs.status,
            MEM_ENC_CAP_NOT_AVAILABLE
        );
        assert!(
            tdx_xfam(&not_enabled, 0, 0)
                .unwrap_err()
                .message
                .contains("lacks bit 5")
        );
    }

    #[test]
    fn launch_plan_states_measured_settings() {
        let caps = snp_host_with_policy_attr();
        let req = mem_enc_launch_request {
            accept_vm_types: all(),
            vmsa_features_optional: MEM_ENC_SEV_FEAT_DEBUG_SWAP,
            snp_policy_required: MEM_ENC_SNP_POLICY_SMT,
            tdx_attributes_optional: MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
            ..Default::default()
        };
        let (s, note) = launch(&caps, &req).unwrap();
        assert_eq!(
            s,
            mem_enc_launch_settings {
                vendor: 1,
                vm_type: 4,
                create_vm_type: 4,
                init_path: MEM_ENC_INIT_SEV_INIT2,
                ghcb_version: 2,
                reserved0: 0,
                legacy: 0,
                vmsa_features: MEM_ENC_SEV_FEAT_DEBUG_SWAP,
                snp_policy: 0x3_0000,
                tdx_attributes: 0,
                tdx_xfam: 0,
                sev_policy: 0,
                reserved1: 0,
            }
        );
        assert!(
            note.contains("vmsa_features 0x20, ghcb_version 2, policy 0x30000"),
            "{note}"
        );
    }

    #[test]
    fn launch_on_an_old_kernel_is_legacy_es() {
        let req = mem_enc_launch_request {
            accept_vm_types: bit(2) | bit(3),
            vmsa_features_optional: MEM_ENC_SEV_FEAT_DEBUG_SWAP,
            ..Default::default()
        };
        let (s, note) = launch(&old_sev_kernel(), &req).unwrap();
        assert_eq!(
            (s.vm_type, s.create_vm_type, s.legacy, s.ghcb_version),
            (3, 0, 1, 1)
        );
        assert_eq!(s.vmsa_features, 0);
        assert!(note.contains("legacy init path"), "{note}");
    }

    #[test]
    fn launch_refuses_required_bits_of_the_other_vendor() {
        let req = mem_enc_launch_request {
            accept_vm_types: all(),
            tdx_attributes_required: MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
            ..Default::default()
        };
        let r = launch(&snp_host_with_policy_attr(), &req).unwrap_err();
        assert_eq!(r.errno, EINVAL);
        let req = mem_enc_launch_request {
            accept_vm_types: all(),
            tdx_attributes_required: MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE,
            snp_policy_optional: MEM_ENC_SNP_POLICY_DEBUG,
            ..Default::default()
        };
        let (s, note) = launch(&tdx_host(), &req).unwrap();
        assert_eq!((s.vm_type, s.tdx_attributes, s.snp_policy), (5, 1 << 28, 0));
        assert!(note.contains("attributes 0x10000000"), "{note}");
        let r = launch(&amd_without_sev(), &req).unwrap_err();
        assert_eq!(r.errno, EOPNOTSUPP);
    }

    #[test]
    fn describe_cap_shows_errno() {
        assert_eq!(
            describe_cap(&mem_enc_cap::not_supported(-libc::ENXIO)),
            "not supported by this kernel (-ENXIO)"
        );
        assert_eq!(describe_cap(&mem_enc_cap::known(3)), "known");
    }
}
