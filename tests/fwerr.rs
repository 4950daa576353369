//! Every SEV firmware code and a sample of TDX statuses decode to the documented names
//! (kernel-abi.md §3), through the C export.

use std::ffi::CStr;

use memenc::capi::fwerr::{mem_enc_fw_describe, mem_enc_fw_strerror};
use memenc::{MEM_ENC_VENDOR_SEV, MEM_ENC_VENDOR_TDX};

fn fw(vendor: u32, status: u64) -> String {
    // SAFETY: mem_enc_fw_strerror returns static NUL-terminated strings.
    unsafe { CStr::from_ptr(mem_enc_fw_strerror(vendor, status)) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn describe(vendor: u32, status: u64) -> String {
    let mut buf = vec![0 as std::ffi::c_char; memenc::capi::fwerr::MEM_ENC_FW_DESCRIBE_MAX];
    // SAFETY: the buffer has the stated length.
    let n = unsafe { mem_enc_fw_describe(vendor, status, buf.as_mut_ptr(), buf.len()) };
    assert!(n > 0, "{n}");
    // SAFETY: NUL-terminated on success.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned()
}

/// kernel-abi.md §3.1, the whole table.
const SEV: &[(u32, &str)] = &[
    (0xFFFF_FFFF, "SEV_RET_NO_FW_CALL"),
    (0x00, "SEV_RET_SUCCESS"),
    (0x01, "SEV_RET_INVALID_PLATFORM_STATE"),
    (0x02, "SEV_RET_INVALID_GUEST_STATE"),
    (0x03, "SEV_RET_INVALID_CONFIG"),
    (0x04, "SEV_RET_INVALID_LEN"),
    (0x05, "SEV_RET_ALREADY_OWNED"),
    (0x06, "SEV_RET_INVALID_CERTIFICATE"),
    (0x07, "SEV_RET_POLICY_FAILURE"),
    (0x08, "SEV_RET_INACTIVE"),
    (0x09, "SEV_RET_INVALID_ADDRESS"),
    (0x0A, "SEV_RET_BAD_SIGNATURE"),
    (0x0B, "SEV_RET_BAD_MEASUREMENT"),
    (0x0C, "SEV_RET_ASID_OWNED"),
    (0x0D, "SEV_RET_INVALID_ASID"),
    (0x0E, "SEV_RET_WBINVD_REQUIRED"),
    (0x0F, "SEV_RET_DFFLUSH_REQUIRED"),
    (0x10, "SEV_RET_INVALID_GUEST"),
    (0x11, "SEV_RET_INVALID_COMMAND"),
    (0x12, "SEV_RET_ACTIVE"),
    (0x13, "SEV_RET_HWSEV_RET_PLATFORM"),
    (0x14, "SEV_RET_HWSEV_RET_UNSAFE"),
    (0x15, "SEV_RET_UNSUPPORTED"),
    (0x16, "SEV_RET_INVALID_PARAM"),
    (0x17, "SEV_RET_RESOURCE_LIMIT"),
    (0x18, "SEV_RET_SECURE_DATA_INVALID"),
    (0x19, "SEV_RET_INVALID_PAGE_SIZE"),
    (0x1A, "SEV_RET_INVALID_PAGE_STATE"),
    (0x1B, "SEV_RET_INVALID_MDATA_ENTRY"),
    (0x1C, "SEV_RET_INVALID_PAGE_OWNER"),
    (0x1D, "SEV_RET_AEAD_OFLOW"),
    (0x1F, "SEV_RET_EXIT_RING_BUFFER"),
    (0x20, "SEV_RET_RMP_INIT_REQUIRED"),
    (0x21, "SEV_RET_BAD_SVN"),
    (0x22, "SEV_RET_BAD_VERSION"),
    (0x23, "SEV_RET_SHUTDOWN_REQUIRED"),
    (0x24, "SEV_RET_UPDATE_FAILED"),
    (0x25, "SEV_RET_RESTORE_REQUIRED"),
    (0x26, "SEV_RET_RMP_INITIALIZATION_FAILED"),
    (0x27, "SEV_RET_INVALID_KEY"),
];

#[test]
fn every_sev_code_has_its_name_and_a_meaning() {
    for &(code, name) in SEV {
        let s = fw(MEM_ENC_VENDOR_SEV, u64::from(code));
        assert!(s.starts_with(&format!("{name}: ")), "{code:#x}: {s}");
        assert!(s.len() > name.len() + 10, "{code:#x} has no meaning: {s}");
    }
    assert_eq!(
        fw(MEM_ENC_VENDOR_SEV, 2),
        "SEV_RET_INVALID_GUEST_STATE: the guest is in the wrong state for this command (commands out of order)"
    );
}

#[test]
fn unknown_sev_codes_are_never_empty() {
    for code in [0x1E, 0x28, 0x1234, u64::from(u32::MAX - 1), 1 << 40] {
        let s = fw(MEM_ENC_VENDOR_SEV, code);
        assert!(
            !s.is_empty() && !s.starts_with("SEV_RET_"),
            "{code:#x}: {s}"
        );
    }
    assert!(describe(MEM_ENC_VENDOR_SEV, 0x1E).contains("0x1e"));
}

#[test]
fn tdx_sample_decodes_to_documented_names() {
    let cases: &[(u64, &str)] = &[
        (0, "TDX_SUCCESS"),
        (0x4000_0001_0000_0000, "TDX_NON_RECOVERABLE_VCPU"),
        // The kernel's and the module's values differ in bit 61; both name the same code.
        (0x4000_0002_0000_0000, "TDX_NON_RECOVERABLE_TD"),
        (0x6000_0002_0000_0000, "TDX_NON_RECOVERABLE_TD"),
        (0x8000_0003_0000_0000, "TDX_INTERRUPTED_RESUMABLE"),
        (0xC000_0100_0000_0000, "TDX_OPERAND_INVALID (operand RAX)"),
        (
            0xC000_0100_0000_0045,
            "TDX_OPERAND_INVALID (operand CPUID_CONFIG)",
        ),
        (0xC000_0100_0000_0041, "TDX_OPERAND_INVALID (operand XFAM)"),
        (
            0xC000_0100_0000_0040,
            "TDX_OPERAND_INVALID (operand ATTRIBUTES)",
        ),
        (0x8000_0200_0000_0080, "TDX_OPERAND_BUSY (operand TDR)"),
        (
            0x8000_0200_0000_0092,
            "TDX_OPERAND_BUSY (operand SEPT_TREE)",
        ),
        (0x8000_0200_0000_00A9, "TDX_OPERAND_BUSY (operand TD_EPOCH)"),
        (0x8000_0201_0000_0000, "TDX_PREVIOUS_TLB_EPOCH_BUSY"),
        (0x8000_0203_0000_0000, "TDX_RND_NO_ENTROPY"),
        (0xC000_0300_0000_0000, "TDX_PAGE_METADATA_INCORRECT"),
        (0xC000_0607_0000_0000, "TDX_LIFECYCLE_STATE_INCORRECT"),
        (0x8000_0702_0000_0000, "TDX_VCPU_NOT_ASSOCIATED"),
        (0x8000_0800_0000_0000, "TDX_KEY_GENERATION_FAILED"),
        (0xC000_0811_0000_0000, "TDX_KEY_STATE_INCORRECT"),
        (0x0000_0815_0000_0000, "TDX_KEY_CONFIGURED"),
        (0x8000_0824_0000_0000, "TDX_FLUSHVP_NOT_DONE"),
        (0xC000_0900_0000_0000, "TDX_INCORRECT_CPUID_VALUE"),
        (0xC000_0B00_0000_0000, "TDX_EPT_WALK_FAILED"),
        (0xC000_0B0D_0000_0000, "TDX_EPT_ENTRY_STATE_INCORRECT"),
        (0xC000_0C02_0000_0000, "TDX_METADATA_FIELD_NOT_READABLE"),
        (0x8000_FF00_FFFF_0000, "TDX_SEAMCALL_VMFAILINVALID"),
        (0x8000_FF00_0000_000D, "TDX_SEAMCALL_GP"),
        (0x8000_FF00_0000_0006, "TDX_SEAMCALL_UD"),
    ];
    for &(status, name) in cases {
        let s = fw(MEM_ENC_VENDOR_TDX, status);
        assert!(s.starts_with(&format!("{name}: ")), "{status:#x}: {s}");
    }
}

#[test]
fn tdx_unknown_codes_are_described_by_their_fields() {
    // Unknown code in a known class, unknown operand, unknown class, unknown SW code.
    let s = fw(MEM_ENC_VENDOR_TDX, 0xC000_067F_0000_0000);
    assert!(s.contains("class 0x06"), "{s}");
    let s = fw(MEM_ENC_VENDOR_TDX, 0xC000_0100_0000_0077);
    assert!(s.starts_with("TDX_OPERAND_INVALID: "), "{s}");
    let d = describe(MEM_ENC_VENDOR_TDX, 0xC000_0100_0000_0077);
    assert!(d.contains("details L2 0x00000077"), "{d}");
    let s = fw(MEM_ENC_VENDOR_TDX, 0xC000_7700_0000_0000);
    assert!(s.contains("class"), "{s}");
    let d = describe(MEM_ENC_VENDOR_TDX, 0xC000_7700_0000_0012);
    assert!(
        d.contains("class 0x77") && d.contains("non-recoverable"),
        "{d}"
    );
    let s = fw(MEM_ENC_VENDOR_TDX, 0x8000_FF00_0000_0001);
    assert!(s.contains("software-defined"), "{s}");
    let d = describe(MEM_ENC_VENDOR_TDX, 0xC000_0100_0000_0045);
    assert!(
        d.contains("0xc000010000000045") && d.contains("class 0x01") && d.contains("CPUID_CONFIG"),
        "{d}"
    );
}

#[test]
fn bad_vendor_is_a_sentence() {
    assert!(fw(0, 1).contains("unknown vendor"));
    assert!(fw(7, 1).contains("unknown vendor"));
}
