//! Firmware status names: every AMD PSP `SEV_RET_*` code with its meaning, and Intel TDX
//! SEAMCALL statuses decoded into class, name and operand (kernel-abi.md §3). Also the stage
//! that failed: memenc itself, KVM before the firmware, or the firmware.
//!
//! Every string is static and NUL-terminated, so the C export hands out pointers without
//! allocating; the composed TDX form (name + operand + raw fields) is written into a caller
//! buffer by [`describe`].

use core::ffi::CStr;
use core::fmt;

use crate::vendor::Vendor;

/// A static `"NAME: meaning\0"` string as a `CStr`, checked at compile time.
const fn cs(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("fwerr strings end in exactly one NUL"),
    }
}

/// `SEV_RET_NO_FW_CALL`: Linux's own value for "the firmware was never called".
pub const SEV_RET_NO_FW_CALL: u32 = 0xFFFF_FFFF;

macro_rules! sev_table {
    ($( $code:literal $name:literal $meaning:literal ),* $(,)?) => {
        /// `(code, "SEV_RET_NAME: meaning")`, every code of `include/uapi/linux/psp-sev.h`.
        pub static SEV_CODES: &[(u32, &CStr)] = &[
            $( ($code, cs(concat!($name, ": ", $meaning, "\0"))) ),*
        ];
    };
}

sev_table! {
    0x00 "SEV_RET_SUCCESS" "the firmware completed the command",
    0x01 "SEV_RET_INVALID_PLATFORM_STATE" "the platform is in the wrong state for this command (e.g. the firmware is not initialised, or SNP is initialised and blocks it)",
    0x02 "SEV_RET_INVALID_GUEST_STATE" "the guest is in the wrong state for this command (commands out of order)",
    0x03 "SEV_RET_INVALID_CONFIG" "the platform configuration is invalid",
    0x04 "SEV_RET_INVALID_LEN" "a buffer length is too small or invalid (also the answer to a length query)",
    0x05 "SEV_RET_ALREADY_OWNED" "the platform is already owned",
    0x06 "SEV_RET_INVALID_CERTIFICATE" "a certificate is malformed or does not verify",
    0x07 "SEV_RET_POLICY_FAILURE" "the guest policy forbids this command (e.g. debugging or migration), or the firmware cannot honour the policy",
    0x08 "SEV_RET_INACTIVE" "the guest is not active (its ASID was not activated)",
    0x09 "SEV_RET_INVALID_ADDRESS" "an address is invalid (misaligned, or not in memory the firmware may use)",
    0x0A "SEV_RET_BAD_SIGNATURE" "a signature does not verify",
    0x0B "SEV_RET_BAD_MEASUREMENT" "a measurement or MAC does not match (e.g. the LAUNCH_SECRET packet was not made for this launch)",
    0x0C "SEV_RET_ASID_OWNED" "the ASID is already owned by another guest",
    0x0D "SEV_RET_INVALID_ASID" "the ASID is invalid",
    0x0E "SEV_RET_WBINVD_REQUIRED" "a WBINVD on every core is required first",
    0x0F "SEV_RET_DFFLUSH_REQUIRED" "a DF_FLUSH is required first",
    0x10 "SEV_RET_INVALID_GUEST" "the guest handle is invalid",
    0x11 "SEV_RET_INVALID_COMMAND" "the firmware does not know this command",
    0x12 "SEV_RET_ACTIVE" "the guest is still active and must be deactivated first",
    0x13 "SEV_RET_HWSEV_RET_PLATFORM" "a hardware error occurred in the platform",
    0x14 "SEV_RET_HWSEV_RET_UNSAFE" "a hardware condition made the platform unsafe; it must be reset",
    0x15 "SEV_RET_UNSUPPORTED" "the feature or command is not supported by this firmware",
    0x16 "SEV_RET_INVALID_PARAM" "a parameter is invalid (SNP CPUID page: a leaf value the firmware rejects; the corrected page is copied back)",
    0x17 "SEV_RET_RESOURCE_LIMIT" "a firmware resource is exhausted",
    0x18 "SEV_RET_SECURE_DATA_INVALID" "the integrity check of secure data failed",
    0x19 "SEV_RET_INVALID_PAGE_SIZE" "the page size does not match the RMP entry",
    0x1A "SEV_RET_INVALID_PAGE_STATE" "the page is in the wrong RMP state (e.g. already assigned or not private)",
    0x1B "SEV_RET_INVALID_MDATA_ENTRY" "the metadata entry is invalid",
    0x1C "SEV_RET_INVALID_PAGE_OWNER" "the page is owned by another guest or by the hypervisor",
    0x1D "SEV_RET_AEAD_OFLOW" "the AEAD counter would overflow",
    0x1F "SEV_RET_EXIT_RING_BUFFER" "the firmware left ring-buffer mode",
    0x20 "SEV_RET_RMP_INIT_REQUIRED" "the RMP must be initialised first (SNP_INIT)",
    0x21 "SEV_RET_BAD_SVN" "the security version number is too low (downgrade refused)",
    0x22 "SEV_RET_BAD_VERSION" "the firmware version is not valid for this command",
    0x23 "SEV_RET_SHUTDOWN_REQUIRED" "the firmware must be shut down first",
    0x24 "SEV_RET_UPDATE_FAILED" "the firmware update failed",
    0x25 "SEV_RET_RESTORE_REQUIRED" "a restore is required first",
    0x26 "SEV_RET_RMP_INITIALIZATION_FAILED" "RMP initialisation failed",
    0x27 "SEV_RET_INVALID_KEY" "the key is invalid",
    0xFFFF_FFFF "SEV_RET_NO_FW_CALL" "the firmware was never called (Linux-defined)",
}

const SEV_UNKNOWN: &CStr =
    cs("unknown SEV firmware status: not a SEV_RET_* code this library knows\0");

/// `"SEV_RET_NAME: meaning"` for a PSP status; a fixed sentence for codes not in the table.
pub fn sev_strerror(code: u32) -> &'static CStr {
    sev_lookup(code).unwrap_or(SEV_UNKNOWN)
}

fn sev_lookup(code: u32) -> Option<&'static CStr> {
    SEV_CODES.iter().find(|(c, _)| *c == code).map(|(_, s)| *s)
}

// ---------------------------------------------------------------------------------------------
// TDX

/// `TDX_ERROR` (bit 63).
pub const TDX_ERROR: u64 = 1 << 63;
/// `TDX_NON_RECOVERABLE` (bit 62).
pub const TDX_NON_RECOVERABLE: u64 = 1 << 62;
/// Class 0xFF: software-defined (by the OS, not the TDX module).
pub const TDX_CLASS_SW: u8 = 0xFF;

/// The fields of a SEAMCALL status (kernel-abi.md §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TdxStatus {
    /// The raw 64-bit status.
    pub raw: u64,
}

impl TdxStatus {
    /// Bit 63.
    pub const fn is_error(self) -> bool {
        self.raw & TDX_ERROR != 0
    }
    /// Bit 62.
    pub const fn non_recoverable(self) -> bool {
        self.raw & TDX_NON_RECOVERABLE != 0
    }
    /// Bits 47:40.
    pub const fn class(self) -> u8 {
        (self.raw >> 40) as u8
    }
    /// Bits 39:32: the code within the class.
    pub const fn details_l1(self) -> u8 {
        (self.raw >> 32) as u8
    }
    /// Bits 31:0: the operand id for operand errors, otherwise code-specific.
    pub const fn details_l2(self) -> u32 {
        self.raw as u32
    }
    /// Bits 47:32, which name the code (the flag bits above differ between kernel and module
    /// for some codes, so they are not part of the key).
    pub const fn key(self) -> u16 {
        (self.raw >> 32) as u16
    }
}

/// The TDX codes whose details L2 is an operand id.
const OPERAND_KEYS: [u16; 4] = [0x0100, 0x0101, 0x0200, 0x0204];

/// Calls `$cb!(@ args; (id, "NAME") ...)` with the TDX module's operand ids (S12), so the list
/// exists once and both the name table and the combined strings are built from it.
macro_rules! with_operands {
    ($cb:ident ! ($($args:tt)*)) => {
        $cb! { @ $($args)*;
            (0, "RAX") (1, "RCX") (2, "RDX") (3, "RBX") (5, "RBP") (6, "RSI") (7, "RDI")
            (8, "R8") (9, "R9") (10, "R10") (11, "R11") (12, "R12") (13, "R13") (14, "R14")
            (15, "R15") (64, "ATTRIBUTES") (65, "XFAM") (66, "EXEC_CONTROLS")
            (67, "EPTP_CONTROLS") (68, "MAX_VCPUS") (69, "CPUID_CONFIG") (70, "TSC_FREQUENCY")
            (71, "NUM_L2_VMS") (72, "IA32_ARCH_CAPABILITIES_CONFIG") (95, "PAGE")
            (96, "TDMR_INFO_PA") (97, "GPA_LIST_ENTRY") (98, "MIG_BUFF_LIST_ENTRY")
            (99, "NEW_PAGE_LIST_ENTRY") (128, "TDR") (129, "TDCX") (130, "TDVPR")
            (132, "REG_PAGE") (144, "TDCS") (145, "TDVPS") (146, "SEPT_TREE") (147, "SEPT_ENTRY")
            (168, "RTMR") (169, "TD_EPOCH") (170, "L2_VAPIC_GPA") (171, "MIGSC") (172, "OP_STATE")
            (173, "MIG") (174, "SERVTD_BINDINGS") (176, "METADATA_FIELD") (184, "SYS")
            (185, "TDMR") (186, "KOT") (187, "KET") (188, "WBCACHE") }
    };
}

macro_rules! operand_names {
    (@ ; $(($id:literal, $op:literal))*) => {
        /// `(operand id, name)` as the TDX module defines them (`OPERAND_ID_*`).
        pub static TDX_OPERANDS: &[(u32, &str)] = &[ $( ($id, $op) ),* ];
    };
}
with_operands!(operand_names!());

macro_rules! operand_strings {
    (@ $key:literal $name:literal $meaning:literal; $(($id:literal, $op:literal))*) => {
        ($key, &[ $( ($id, cs(concat!($name, " (operand ", $op, "): ", $meaning, "\0"))) ),* ])
    };
}

/// For each operand code: `(key, [(operand id, "NAME (operand OP): meaning")])`.
static TDX_OPERAND_STRINGS: [(u16, &[(u32, &CStr)]); 4] = [
    with_operands!(
        operand_strings!(0x0100 "TDX_OPERAND_INVALID" "the SEAMCALL operand named is invalid")
    ),
    with_operands!(
        operand_strings!(0x0101 "TDX_OPERAND_ADDR_RANGE_ERROR" "the address range of the operand named is invalid")
    ),
    with_operands!(
        operand_strings!(0x0200 "TDX_OPERAND_BUSY" "the operand named is in use by another SEAMCALL; try again")
    ),
    with_operands!(
        operand_strings!(0x0204 "TDX_OPERAND_BUSY_HOST_PRIORITY" "the operand named is busy and the host has priority; try again")
    ),
];

macro_rules! tdx_table {
    ($( $key:literal $name:literal $meaning:literal ),* $(,)?) => {
        /// `(bits 47:32, "TDX_NAME: meaning")` for the SEAMCALL statuses KVM can surface and
        /// the rest of classes 0x00-0x0C of the TDX module's list (S10-S12).
        pub static TDX_CODES: &[(u16, &CStr)] = &[
            $( ($key, cs(concat!($name, ": ", $meaning, "\0"))) ),*
        ];
    };
}

tdx_table! {
    0x0000 "TDX_SUCCESS" "the SEAMCALL succeeded",
    0x0001 "TDX_NON_RECOVERABLE_VCPU" "the vCPU is in a non-recoverable state",
    0x0002 "TDX_NON_RECOVERABLE_TD" "the TD is in a non-recoverable state",
    0x0003 "TDX_INTERRUPTED_RESUMABLE" "interrupted; the SEAMCALL can be resumed",
    0x0004 "TDX_INTERRUPTED_RESTARTABLE" "interrupted; the SEAMCALL must be restarted",
    0x0005 "TDX_NON_RECOVERABLE_TD_NON_ACCESSIBLE" "the TD is non-recoverable and its memory is not accessible",
    0x0006 "TDX_INVALID_RESUMPTION" "invalid resumption of an interrupted SEAMCALL",
    0x0007 "TDX_NON_RECOVERABLE_TD_WRONG_APIC_MODE" "the TD is non-recoverable: wrong APIC mode",
    0x0008 "TDX_CROSS_TD_FAULT" "fault while accessing another TD",
    0x0009 "TDX_CROSS_TD_TRAP" "trap while accessing another TD",
    0x000A "TDX_NON_RECOVERABLE_TD_CORRUPTED_MD" "the TD is non-recoverable: corrupted metadata",
    0x0100 "TDX_OPERAND_INVALID" "a SEAMCALL operand is invalid; the low 32 bits name it",
    0x0101 "TDX_OPERAND_ADDR_RANGE_ERROR" "an operand's address range is invalid; the low 32 bits name it",
    0x0200 "TDX_OPERAND_BUSY" "an operand is in use by another SEAMCALL; try again",
    0x0201 "TDX_PREVIOUS_TLB_EPOCH_BUSY" "the previous TLB epoch is still being tracked; try again",
    0x0202 "TDX_SYS_BUSY" "the TDX module is busy; try again",
    0x0203 "TDX_RND_NO_ENTROPY" "the CPU's random-number generator ran out of entropy; try again",
    0x0204 "TDX_OPERAND_BUSY_HOST_PRIORITY" "an operand is busy and the host has priority; try again",
    0x0205 "TDX_HOST_PRIORITY_BUSY_TIMEOUT" "timed out waiting for a busy operand",
    0x0300 "TDX_PAGE_METADATA_INCORRECT" "the page's PAMT metadata is not as expected",
    0x0301 "TDX_PAGE_ALREADY_FREE" "the page is already free",
    0x0302 "TDX_PAGE_NOT_OWNED_BY_TD" "the page is not owned by this TD",
    0x0303 "TDX_PAGE_NOT_FREE" "the page is not free",
    0x0400 "TDX_TD_ASSOCIATED_PAGES_EXIST" "pages are still associated with the TD",
    0x0500 "TDX_SYS_INIT_NOT_PENDING" "TDX module initialisation is not pending",
    0x0502 "TDX_SYS_LP_INIT_NOT_DONE" "a logical processor was not initialised for TDX",
    0x0503 "TDX_SYS_LP_INIT_DONE" "the logical processor is already initialised",
    0x0505 "TDX_SYS_NOT_READY" "the TDX module is not ready",
    0x0506 "TDX_SYS_SHUTDOWN" "the TDX module is shut down",
    0x0507 "TDX_SYS_KEY_CONFIG_NOT_PENDING" "key configuration is not pending",
    0x0508 "TDX_SYS_STATE_INCORRECT" "the TDX module is in the wrong state",
    0x0604 "TDX_TD_FATAL" "the TD hit a fatal error",
    0x0605 "TDX_TD_NON_DEBUG" "the TD is not a debug TD",
    0x0606 "TDX_TDCS_NOT_ALLOCATED" "the TD control structure pages are not allocated",
    0x0607 "TDX_LIFECYCLE_STATE_INCORRECT" "the TD is in the wrong lifecycle state (commands out of order)",
    0x0608 "TDX_OP_STATE_INCORRECT" "the TD is in the wrong operation state (e.g. already finalised)",
    0x0609 "TDX_NO_VCPUS" "the TD has no vCPUs",
    0x0610 "TDX_TDCX_NUM_INCORRECT" "wrong number of TD control pages",
    0x0621 "TDX_X2APIC_ID_NOT_UNIQUE" "two vCPUs have the same x2APIC id",
    0x0700 "TDX_VCPU_STATE_INCORRECT" "the vCPU is in the wrong state (e.g. not initialised, or initialised twice)",
    0x0701 "TDX_VCPU_ASSOCIATED" "the vCPU is associated with another logical processor",
    0x0702 "TDX_VCPU_NOT_ASSOCIATED" "the vCPU is not associated with this logical processor",
    0x0704 "TDX_NO_VALID_VE_INFO" "no valid #VE information",
    0x0705 "TDX_MAX_VCPUS_EXCEEDED" "the TD's maximum vCPU count is exceeded",
    0x0706 "TDX_TSC_ROLLBACK" "the TSC went backwards",
    0x0800 "TDX_KEY_GENERATION_FAILED" "the TD's key could not be generated; try again",
    0x0810 "TDX_TD_KEYS_NOT_CONFIGURED" "the TD's keys are not configured on every package",
    0x0811 "TDX_KEY_STATE_INCORRECT" "the TD's key is in the wrong state",
    0x0815 "TDX_KEY_CONFIGURED" "the key is already configured on this package (not an error)",
    0x0817 "TDX_WBCACHE_NOT_COMPLETE" "the cache write-back is not complete",
    0x0820 "TDX_HKID_NOT_FREE" "the host key id is not free",
    0x0821 "TDX_NO_HKID_READY_TO_WBCACHE" "no host key id is ready for cache write-back (not an error)",
    0x0823 "TDX_WBCACHE_RESUME_ERROR" "resuming the cache write-back failed",
    0x0824 "TDX_FLUSHVP_NOT_DONE" "a vCPU flush is still needed",
    0x0825 "TDX_NUM_ACTIVATED_HKIDS_NOT_SUPPORTED" "too many activated host key ids",
    0x0900 "TDX_INCORRECT_CPUID_VALUE" "a CPUID value in the TD configuration is not allowed",
    0x0901 "TDX_LIMIT_CPUID_MAXVAL_SET" "IA32_MISC_ENABLE.LIMIT_CPUID_MAXVAL is set on the host",
    0x0902 "TDX_INCONSISTENT_CPUID_FIELD" "a CPUID field is inconsistent with another",
    0x0903 "TDX_CPUID_MAX_SUBLEAVES_UNRECOGNIZED" "a CPUID leaf's subleaf count is not recognised",
    0x0904 "TDX_CPUID_LEAF_1F_FORMAT_UNRECOGNIZED" "CPUID leaf 0x1F has an unrecognised format",
    0x0908 "TDX_CPUID_LEAF_NOT_SUPPORTED" "a CPUID leaf in the TD configuration is not configurable",
    0x0920 "TDX_INCONSISTENT_MSR" "an MSR is inconsistent across logical processors",
    0x0921 "TDX_INCORRECT_MSR_VALUE" "an MSR has a value TDX does not allow",
    0x0A00 "TDX_INVALID_TDMR" "a TD memory range is invalid",
    0x0B00 "TDX_EPT_WALK_FAILED" "the Secure-EPT walk failed (the GPA is not mapped at the expected level)",
    0x0B01 "TDX_EPT_ENTRY_FREE" "the Secure-EPT entry is free",
    0x0B02 "TDX_EPT_ENTRY_NOT_FREE" "the Secure-EPT entry is not free (the page was already added)",
    0x0B03 "TDX_EPT_ENTRY_NOT_PRESENT" "the Secure-EPT entry is not present",
    0x0B04 "TDX_EPT_ENTRY_NOT_LEAF" "the Secure-EPT entry is not a leaf",
    0x0B05 "TDX_EPT_ENTRY_LEAF" "the Secure-EPT entry is a leaf",
    0x0B06 "TDX_GPA_RANGE_NOT_BLOCKED" "the GPA range is not blocked",
    0x0B07 "TDX_GPA_RANGE_ALREADY_BLOCKED" "the GPA range is already blocked",
    0x0B08 "TDX_TLB_TRACKING_NOT_DONE" "TLB tracking is not done",
    0x0B09 "TDX_EPT_INVALID_PROMOTE_CONDITIONS" "the Secure-EPT entries cannot be promoted",
    0x0B0A "TDX_PAGE_ALREADY_ACCEPTED" "the page was already accepted",
    0x0B0B "TDX_PAGE_SIZE_MISMATCH" "the page size does not match the Secure-EPT mapping",
    0x0B0C "TDX_GPA_RANGE_BLOCKED" "the GPA range is blocked",
    0x0B0D "TDX_EPT_ENTRY_STATE_INCORRECT" "the Secure-EPT entry is in the wrong state",
    0x0B0E "TDX_EPT_PAGE_NOT_FREE" "the Secure-EPT page is not free",
    0x0C00 "TDX_METADATA_FIELD_ID_INCORRECT" "the metadata field id is not known",
    0x0C01 "TDX_METADATA_FIELD_NOT_WRITABLE" "the metadata field is not writable",
    0x0C02 "TDX_METADATA_FIELD_NOT_READABLE" "the metadata field is not readable",
    0x0C03 "TDX_METADATA_FIELD_VALUE_NOT_VALID" "the metadata field value is not valid",
}

/// Per class: `"TDX status class 0xNN (what the class covers)"` for codes not in the table.
/// The class descriptions are read off the codes the TDX module puts in each class.
static TDX_CLASSES: &[(u8, &CStr)] = &[
    (
        0x00,
        cs("unknown TDX status in class 0x00 (general: interruption, non-recoverable states)\0"),
    ),
    (
        0x01,
        cs("unknown TDX status in class 0x01 (invalid operand)\0"),
    ),
    (
        0x02,
        cs("unknown TDX status in class 0x02 (busy resource or entropy; usually retryable)\0"),
    ),
    (
        0x03,
        cs("unknown TDX status in class 0x03 (page metadata)\0"),
    ),
    (0x04, cs("unknown TDX status in class 0x04 (TD pages)\0")),
    (
        0x05,
        cs("unknown TDX status in class 0x05 (TDX module system state)\0"),
    ),
    (
        0x06,
        cs("unknown TDX status in class 0x06 (TD lifecycle state)\0"),
    ),
    (0x07, cs("unknown TDX status in class 0x07 (vCPU state)\0")),
    (
        0x08,
        cs("unknown TDX status in class 0x08 (key management)\0"),
    ),
    (
        0x09,
        cs("unknown TDX status in class 0x09 (platform configuration: CPUID, MSR, SMRR)\0"),
    ),
    (
        0x0A,
        cs("unknown TDX status in class 0x0A (TD memory ranges and PAMT)\0"),
    ),
    (0x0B, cs("unknown TDX status in class 0x0B (Secure EPT)\0")),
    (
        0x0C,
        cs("unknown TDX status in class 0x0C (metadata access)\0"),
    ),
    (
        0x0D,
        cs("unknown TDX status in class 0x0D (service TD binding)\0"),
    ),
    (0x0E, cs("unknown TDX status in class 0x0E (migration)\0")),
    (0x10, cs("unknown TDX status in class 0x10 (reports)\0")),
    (
        0x11,
        cs("unknown TDX status in class 0x11 (L2 VM and TD exits)\0"),
    ),
    (
        0xFF,
        cs("TDX software-defined status (class 0xFF): set by the OS, not the TDX module\0"),
    ),
];
const TDX_UNKNOWN_CLASS: &CStr =
    cs("unknown TDX status: its class is not one the TDX module defines\0");

/// Software-defined statuses (class 0xFF, kernel `asm/shared/tdx_errno.h`), matched exactly.
static TDX_SW_CODES: &[(u64, &CStr)] = &[
    (
        0x8000_FF00_FFFF_0000,
        cs(
            "TDX_SEAMCALL_VMFAILINVALID: the SEAMCALL failed with VMfailInvalid (no TDX module loaded)\0",
        ),
    ),
    (
        0x8000_FF00_0000_000D,
        cs("TDX_SEAMCALL_GP: the SEAMCALL raised #GP (TDX not enabled by the BIOS)\0"),
    ),
    (
        0x8000_FF00_0000_0006,
        cs("TDX_SEAMCALL_UD: the SEAMCALL raised #UD (the CPU is not in VMX operation)\0"),
    ),
];

fn tdx_lookup(st: TdxStatus) -> Option<&'static CStr> {
    if st.class() == TDX_CLASS_SW {
        return TDX_SW_CODES
            .iter()
            .find(|(c, _)| *c == st.raw)
            .map(|(_, s)| *s);
    }
    TDX_CODES
        .iter()
        .find(|(k, _)| *k == st.key())
        .map(|(_, s)| *s)
}

/// The operand name of an operand error, if the status is one and the id is known.
pub fn tdx_operand(status: u64) -> Option<&'static str> {
    let st = TdxStatus { raw: status };
    if !OPERAND_KEYS.contains(&st.key()) {
        return None;
    }
    TDX_OPERANDS
        .iter()
        .find(|(id, _)| *id == st.details_l2())
        .map(|(_, n)| *n)
}

/// `"TDX_NAME: meaning"`, or `"TDX_NAME (operand OP): meaning"` for operand errors; a
/// class sentence for codes not in the table. Never empty.
pub fn tdx_strerror(status: u64) -> &'static CStr {
    let st = TdxStatus { raw: status };
    if let Some((_, ops)) = TDX_OPERAND_STRINGS.iter().find(|(k, _)| *k == st.key()) {
        if let Some((_, s)) = ops.iter().find(|(id, _)| *id == st.details_l2()) {
            return s;
        }
    }
    if let Some(s) = tdx_lookup(st) {
        return s;
    }
    TDX_CLASSES
        .iter()
        .find(|(c, _)| *c == st.class())
        .map_or(TDX_UNKNOWN_CLASS, |(_, s)| *s)
}

const VENDOR_UNKNOWN: &CStr = cs("unknown vendor: pass MEM_ENC_VENDOR_SEV or MEM_ENC_VENDOR_TDX\0");
const SEV_TOO_WIDE: &CStr = cs("not a SEV firmware status: SEV statuses are 32 bits wide\0");

/// The static name-and-meaning string for a status of `vendor` (a `MEM_ENC_VENDOR_*` number).
pub fn strerror(vendor: u32, status: u64) -> &'static CStr {
    match Vendor::from_u32(vendor) {
        Some(Vendor::Sev) => match u32::try_from(status) {
            Ok(code) => sev_strerror(code),
            Err(_) => SEV_TOO_WIDE,
        },
        Some(Vendor::Tdx) => tdx_strerror(status),
        _ => VENDOR_UNKNOWN,
    }
}

/// Writes the full description of a status: the static text, and for TDX the raw status and
/// its fields (`0x...: class 0x01, details 0x00, operand 0x45 CPUID_CONFIG; error`).
pub fn describe(vendor: u32, status: u64, out: &mut impl fmt::Write) -> fmt::Result {
    let text = strerror(vendor, status).to_str().unwrap_or("");
    if Vendor::from_u32(vendor) != Some(Vendor::Tdx) {
        return write!(out, "{text} [{status:#x}]");
    }
    let st = TdxStatus { raw: status };
    write!(
        out,
        "{text} [{status:#018x}: class {:#04x}, details {:#04x}, ",
        st.class(),
        st.details_l1()
    )?;
    match tdx_operand(status) {
        Some(op) => write!(out, "operand {:#x} {op}", st.details_l2())?,
        None => write!(out, "details L2 {:#010x}", st.details_l2())?,
    }
    match (st.is_error(), st.non_recoverable()) {
        (_, true) => write!(out, "; error, non-recoverable]"),
        (true, false) => write!(out, "; error]"),
        (false, false) => write!(out, "]"),
    }
}

/// [`describe`] into a new `String` (Rust API).
pub fn describe_string(vendor: u32, status: u64) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = describe(vendor, status, &mut s);
    s
}

/// The longest text [`describe`] writes, plus its NUL: a buffer this size always suffices.
pub const DESCRIBE_MAX: usize = 320;

// ---------------------------------------------------------------------------------------------
// Stage

thread_local! {
    /// The stage of this thread's most recent typed-helper call (`errno`-like; const-initialised,
    /// so reading and writing it never allocates).
    static LAST_STAGE: core::cell::Cell<Stage> = const { core::cell::Cell::new(Stage::None) };
}

/// Records the stage of the helper call that just finished on this thread.
pub fn set_last_stage(stage: Stage) {
    LAST_STAGE.with(|s| s.set(stage));
}

/// The stage of this thread's most recent typed-helper call.
pub fn last_stage() -> Stage {
    LAST_STAGE.with(|s| s.get())
}

/// Where a failed call was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Stage {
    /// The call succeeded.
    None = 0,
    /// memenc rejected it before issuing any ioctl (bad argument, wrong vendor, or a buffer
    /// too small for an answer memenc already knew).
    Memenc = 1,
    /// The kernel rejected it before the firmware was reached (firmware status 0 or
    /// `SEV_RET_NO_FW_CALL`), or the kernel does not report a status for this command.
    Kvm = 2,
    /// The firmware (PSP or TDX module) rejected it: the status says why.
    Firmware = 3,
}

impl Stage {
    /// The stage of a finished call: `issued` says whether an ioctl reached the kernel,
    /// `status` is the firmware status it reported.
    pub fn of(ok: bool, issued: bool, vendor: Vendor, status: u64) -> Stage {
        if ok {
            Stage::None
        } else if !issued {
            Stage::Memenc
        } else if status == 0 || (vendor == Vendor::Sev && status == u64::from(SEV_RET_NO_FW_CALL))
        {
            Stage::Kvm
        } else {
            Stage::Firmware
        }
    }

    /// A short name: "none", "memenc", "kvm", "firmware".
    pub const fn name(self) -> &'static str {
        match self {
            Stage::None => "none",
            Stage::Memenc => "memenc",
            Stage::Kvm => "kvm",
            Stage::Firmware => "firmware",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sev_codes_are_unique_and_prefixed() {
        for (i, (code, s)) in SEV_CODES.iter().enumerate() {
            assert!(SEV_CODES[i + 1..].iter().all(|(c, _)| c != code));
            let s = s.to_str().unwrap();
            assert!(s.starts_with("SEV_RET_") && s.contains(": "), "{s}");
        }
        assert_eq!(SEV_CODES.len(), 40);
    }

    #[test]
    fn tdx_keys_are_unique() {
        for (i, (key, _)) in TDX_CODES.iter().enumerate() {
            assert!(TDX_CODES[i + 1..].iter().all(|(k, _)| k != key), "{key:#x}");
        }
        for (i, (id, _)) in TDX_OPERANDS.iter().enumerate() {
            assert!(TDX_OPERANDS[i + 1..].iter().all(|(k, _)| k != id), "{id}");
        }
        assert_eq!(TDX_OPERAND_STRINGS[0].1.len(), TDX_OPERANDS.len());
    }

    #[test]
    fn stage_rules() {
        assert_eq!(Stage::of(true, true, Vendor::Sev, 0), Stage::None);
        assert_eq!(Stage::of(false, false, Vendor::Sev, 0), Stage::Memenc);
        assert_eq!(Stage::of(false, true, Vendor::Sev, 0), Stage::Kvm);
        assert_eq!(Stage::of(false, true, Vendor::Sev, 0xFFFF_FFFF), Stage::Kvm);
        assert_eq!(Stage::of(false, true, Vendor::Sev, 2), Stage::Firmware);
        assert_eq!(
            Stage::of(false, true, Vendor::Tdx, 0xC000_0100_0000_0045),
            Stage::Firmware
        );
    }

    #[test]
    fn describe_fits_its_bound() {
        let worst = [
            (2, 0xC000_0100_0000_0048u64),
            (2, 0xC000_0100_FFFF_FFFF),
            (2, 0xFFFF_FFFF_FFFF_FFFF),
            (2, 0xE000_0604_0000_0000),
            (1, 0xFFFF_FFFF_FFFF_FFFF),
            (1, 0x16),
            (9, 0),
        ];
        for (v, s) in worst {
            assert!(describe_string(v, s).len() < DESCRIBE_MAX, "{v} {s:#x}");
        }
        let longest = TDX_OPERAND_STRINGS
            .iter()
            .flat_map(|(_, o)| o.iter())
            .map(|(_, s)| s.to_bytes().len())
            .chain(TDX_CODES.iter().map(|(_, s)| s.to_bytes().len()))
            .chain(SEV_CODES.iter().map(|(_, s)| s.to_bytes().len()))
            .max()
            .unwrap();
        // Static text plus the TDX field suffix (at most ~110 bytes).
        assert!(longest + 110 < DESCRIBE_MAX, "{longest}");
    }
}
