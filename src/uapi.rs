//! Mirrors of the kernel's user-space ABI: ioctl numbers, capability and attribute numbers, and
//! the sub-command parameter structs. SEV structs come from `kvm-bindings`; it has no TDX
//! structs, so they are defined here once (from `arch/x86/include/uapi/asm/kvm.h`). Every
//! layout is pinned by compile-time asserts: a wrong size fails the build, not a launch.

use core::mem::{align_of, offset_of, size_of};

use crate::abi::mem_enc_cmd;

pub use kvm_bindings::{
    kvm_cpuid_entry2, kvm_create_guest_memfd, kvm_device_attr, kvm_enable_cap, kvm_enc_region,
    kvm_memory_attributes, kvm_sev_attestation_report, kvm_sev_cmd, kvm_sev_dbg,
    kvm_sev_guest_status, kvm_sev_init, kvm_sev_launch_measure, kvm_sev_launch_secret,
    kvm_sev_launch_start, kvm_sev_launch_update_data, kvm_sev_receive_start,
    kvm_sev_receive_update_data, kvm_sev_send_start, kvm_sev_send_update_data,
    kvm_sev_snp_launch_finish, kvm_sev_snp_launch_start, kvm_sev_snp_launch_update,
    kvm_userspace_memory_region, kvm_userspace_memory_region2,
};

const KVMIO: u64 = 0xAE;
const IOC_NONE: u64 = 0;
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

/// `_IO(KVMIO, 0x00)`
pub const KVM_GET_API_VERSION: u64 = ioc(IOC_NONE, 0x00, 0);
/// `_IO(KVMIO, 0x01)`, argument: the VM type.
pub const KVM_CREATE_VM: u64 = ioc(IOC_NONE, 0x01, 0);
/// `_IO(KVMIO, 0x03)`, argument: the capability number.
pub const KVM_CHECK_EXTENSION: u64 = ioc(IOC_NONE, 0x03, 0);
/// `_IO(KVMIO, 0x41)`, argument: the vCPU id.
pub const KVM_CREATE_VCPU: u64 = ioc(IOC_NONE, 0x41, 0);
/// `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)`: the v1 memslot ioctl (every
/// kernel; no guest_memfd).
pub const KVM_SET_USER_MEMORY_REGION: u64 =
    ioc(IOC_WRITE, 0x46, size_of::<kvm_userspace_memory_region>());
/// The flags the v1 memslot ioctl accepts (`KVM_SET_USER_MEMORY_REGION_V1_FLAGS`).
pub const KVM_SET_USER_MEMORY_REGION_V1_FLAGS: u32 = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
/// `_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)`
pub const KVM_SET_USER_MEMORY_REGION2: u64 =
    ioc(IOC_WRITE, 0x49, size_of::<kvm_userspace_memory_region2>());
/// `_IOWR(KVMIO, 0xba, unsigned long)`: the size field is 8 whatever the command struct is.
pub const KVM_MEMORY_ENCRYPT_OP: u64 = ioc(IOC_READ | IOC_WRITE, 0xba, size_of::<u64>());
/// `_IOR(KVMIO, 0xbb, struct kvm_enc_region)`
pub const KVM_MEMORY_ENCRYPT_REG_REGION: u64 = ioc(IOC_READ, 0xbb, size_of::<kvm_enc_region>());
/// `_IOR(KVMIO, 0xbc, struct kvm_enc_region)`
pub const KVM_MEMORY_ENCRYPT_UNREG_REGION: u64 = ioc(IOC_READ, 0xbc, size_of::<kvm_enc_region>());
/// `_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)`
pub const KVM_SET_MEMORY_ATTRIBUTES: u64 = ioc(IOC_WRITE, 0xd2, size_of::<kvm_memory_attributes>());
/// `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)`
pub const KVM_CREATE_GUEST_MEMFD: u64 = ioc(
    IOC_READ | IOC_WRITE,
    0xd4,
    size_of::<kvm_create_guest_memfd>(),
);
/// `_IOW(KVMIO, 0xe2, struct kvm_device_attr)`; on /dev/kvm it reads x86 system attributes.
pub const KVM_GET_DEVICE_ATTR: u64 = ioc(IOC_WRITE, 0xe2, size_of::<kvm_device_attr>());
/// `_IOW(KVMIO, 0xe3, struct kvm_device_attr)`
pub const KVM_HAS_DEVICE_ATTR: u64 = ioc(IOC_WRITE, 0xe3, size_of::<kvm_device_attr>());

/// `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)`
pub const KVM_ENABLE_CAP: u64 = ioc(IOC_WRITE, 0xa3, size_of::<kvm_enable_cap>());
/// `_IO(KVMIO, 0xa2)`, argument: the TSC frequency in kHz (VM-wide default on a VM fd).
pub const KVM_SET_TSC_KHZ: u64 = ioc(IOC_NONE, 0xa2, 0);

/// `KVM_CAP_SPLIT_IRQCHIP`: TDX vCPUs need it enabled (KVM_ENABLE_CAP) before KVM_CREATE_VCPU.
pub const KVM_CAP_SPLIT_IRQCHIP: u64 = 121;
/// Supported `GUEST_MEMFD_FLAG_*` (newer kernels).
pub const KVM_CAP_GUEST_MEMFD_FLAGS: u64 = 244;
/// `GUEST_MEMFD_FLAG_MMAP`
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
/// `GUEST_MEMFD_FLAG_INIT_SHARED`
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
/// Memslot flags (`kvm_userspace_memory_region2.flags`).
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// Read-only memslot.
pub const KVM_MEM_READONLY: u32 = 1 << 1;
/// The memslot's private memory comes from `guest_memfd`.
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
/// `/dev/kvm` attribute group of generic x86 system attributes.
pub const KVM_X86_GRP_SYSTEM: u32 = 0;
/// Group 0 attribute: the XCR0 bits a guest may use.
pub const KVM_X86_XCOMP_GUEST_SUPP: u64 = 0;

/// Capability numbers memenc asks about.
pub const KVM_CAP_SYS_ATTRIBUTES: u64 = 209;
/// Bitmask of supported `KVM_MEMORY_ATTRIBUTE_*`.
pub const KVM_CAP_MEMORY_ATTRIBUTES: u64 = 233;
/// guest_memfd support.
pub const KVM_CAP_GUEST_MEMFD: u64 = 234;
/// Bitmask of creatable VM types (bit n: type n); 0 on kernels before 6.8.
pub const KVM_CAP_VM_TYPES: u64 = 235;

/// VM types (`KVM_CREATE_VM` argument).
pub const KVM_X86_DEFAULT_VM: u32 = 0;
/// Software-protected VM (testing only).
pub const KVM_X86_SW_PROTECTED_VM: u32 = 1;
/// SEV VM (initialised with INIT2).
pub const KVM_X86_SEV_VM: u32 = 2;
/// SEV-ES VM.
pub const KVM_X86_SEV_ES_VM: u32 = 3;
/// SEV-SNP VM.
pub const KVM_X86_SNP_VM: u32 = 4;
/// TDX VM.
pub const KVM_X86_TDX_VM: u32 = 5;

/// `/dev/kvm` attribute group of the SEV backend, and its attributes.
pub const KVM_X86_GRP_SEV: u32 = 1;
/// Supported `kvm_sev_init.vmsa_features`.
pub const KVM_X86_SEV_VMSA_FEATURES: u64 = 0;
/// Supported SNP guest-policy bits (newer kernels).
pub const KVM_X86_SNP_POLICY_BITS: u64 = 1;
/// Whether `KVM_EXIT_SNP_REQ_CERTS` is supported (newest kernels).
pub const KVM_X86_SEV_SNP_REQ_CERTS: u64 = 2;

/// `KVM_EXIT_SNP_REQ_CERTS` (kernel 7.0, after `KVM_SEV_SNP_ENABLE_REQ_CERTS`): an SNP guest's
/// extended guest request asks user space for the certificate table. 43 in the merged uapi
/// header (`KVM_EXIT_ARM_LDST64B` took 42 in the same merge window; the v7 posting said 42).
pub const KVM_EXIT_SNP_REQ_CERTS: u32 = 43;

/// `struct kvm_exit_snp_req_certs`, the `snp_req_certs` member of `kvm_run`'s exit union
/// (offset [`KVM_RUN_EXIT_OFFSET`] in `struct kvm_run` on x86).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvm_exit_snp_req_certs {
    /// Guest physical address of the guest's certificate buffer (in: from the guest's RAX).
    pub gpa: u64,
    /// Pages at `gpa` (in: from RBX); on `ENOSPC` user space writes the pages needed.
    pub npages: u64,
    /// User space's answer, a positive errno: 0, `ENOSPC`, `EAGAIN` or `EIO`.
    pub ret: u64,
}

/// Offset of the exit union in `struct kvm_run` on x86 (no s390 PSW words).
pub const KVM_RUN_EXIT_OFFSET: usize = 32;

/// `KVM_MEMORY_ATTRIBUTE_PRIVATE`
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

/// `enum sev_cmd_id`
pub mod sev_id {
    pub const INIT: u32 = 0;
    pub const ES_INIT: u32 = 1;
    pub const LAUNCH_START: u32 = 2;
    pub const LAUNCH_UPDATE_DATA: u32 = 3;
    pub const LAUNCH_UPDATE_VMSA: u32 = 4;
    pub const LAUNCH_SECRET: u32 = 5;
    pub const LAUNCH_MEASURE: u32 = 6;
    pub const LAUNCH_FINISH: u32 = 7;
    pub const SEND_START: u32 = 8;
    pub const SEND_UPDATE_DATA: u32 = 9;
    pub const SEND_UPDATE_VMSA: u32 = 10;
    pub const SEND_FINISH: u32 = 11;
    pub const RECEIVE_START: u32 = 12;
    pub const RECEIVE_UPDATE_DATA: u32 = 13;
    pub const RECEIVE_UPDATE_VMSA: u32 = 14;
    pub const RECEIVE_FINISH: u32 = 15;
    pub const GUEST_STATUS: u32 = 16;
    pub const DBG_DECRYPT: u32 = 17;
    pub const DBG_ENCRYPT: u32 = 18;
    pub const CERT_EXPORT: u32 = 19;
    pub const GET_ATTESTATION_REPORT: u32 = 20;
    pub const SEND_CANCEL: u32 = 21;
    pub const INIT2: u32 = 22;
    pub const SNP_LAUNCH_START: u32 = 100;
    pub const SNP_LAUNCH_UPDATE: u32 = 101;
    pub const SNP_LAUNCH_FINISH: u32 = 102;
    pub const SNP_ENABLE_REQ_CERTS: u32 = 103;
}

/// `enum kvm_tdx_cmd_id`
pub mod tdx_id {
    pub const CAPABILITIES: u32 = 0;
    pub const INIT_VM: u32 = 1;
    pub const INIT_VCPU: u32 = 2;
    pub const INIT_MEM_REGION: u32 = 3;
    pub const FINALIZE_VM: u32 = 4;
    pub const GET_CPUID: u32 = 5;
}

/// `struct kvm_tdx_cmd`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvm_tdx_cmd {
    pub id: u32,
    pub flags: u32,
    pub data: u64,
    pub hw_error: u64,
}

/// `struct kvm_cpuid2` header; `nent` entries of `kvm_cpuid_entry2` follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvm_cpuid2_header {
    pub nent: u32,
    pub padding: u32,
}

/// `struct kvm_tdx_capabilities` without its trailing CPUID entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kvm_tdx_capabilities {
    pub supported_attrs: u64,
    pub supported_xfam: u64,
    pub kernel_tdvmcallinfo_1_r11: u64,
    pub user_tdvmcallinfo_1_r11: u64,
    pub kernel_tdvmcallinfo_1_r12: u64,
    pub user_tdvmcallinfo_1_r12: u64,
    pub reserved: [u64; 250],
    pub cpuid: kvm_cpuid2_header,
}

/// `struct kvm_tdx_init_vm` without its trailing CPUID entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kvm_tdx_init_vm {
    pub attributes: u64,
    pub xfam: u64,
    pub mrconfigid: [u64; 6],
    pub mrowner: [u64; 6],
    pub mrownerconfig: [u64; 6],
    pub reserved: [u64; 12],
    pub cpuid: kvm_cpuid2_header,
}

/// `struct kvm_tdx_init_mem_region`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvm_tdx_init_mem_region {
    pub source_addr: u64,
    pub gpa: u64,
    pub nr_pages: u64,
}

/// The only kernel-defined TDX command flag (INIT_MEM_REGION).
pub const KVM_TDX_MEASURE_MEMORY_REGION: u32 = 1;
/// KVM's bound on CPUID entries in one call.
pub const KVM_MAX_CPUID_ENTRIES: u32 = 256;
/// Largest blob the SEV firmware driver accepts (`SEV_FW_BLOB_MAX_SIZE`).
pub const SEV_FW_BLOB_MAX_SIZE: u32 = 0x4000;
/// `SVM_SEV_FEAT_SNP_ACTIVE` (VMSA feature bit 0): KVM sets it for SNP guests and refuses it in
/// `kvm_sev_init.vmsa_features`.
pub const SVM_SEV_FEAT_SNP_ACTIVE: u64 = 1 << 0;
/// SNP guest-policy bit 17 (`SNP_POLICY_RSVD_MBO`): reserved, must be one.
pub const SNP_POLICY_RSVD_MBO: u64 = 1 << 17;
/// `KVM_SEV_SNP_ID_BLOCK_SIZE`
pub const KVM_SEV_SNP_ID_BLOCK_SIZE: usize = 96;
/// `KVM_SEV_SNP_ID_AUTH_SIZE`
pub const KVM_SEV_SNP_ID_AUTH_SIZE: usize = 4096;

macro_rules! assert_layout {
    ($ty:ty, size $size:expr, align $align:expr $(, $field:ident @ $off:expr)* $(,)?) => {
        const _: () = {
            assert!(size_of::<$ty>() == $size);
            assert!(align_of::<$ty>() == $align);
            $( assert!(offset_of!($ty, $field) == $off); )*
        };
    };
}

// The unified command is the kernel's SEV and TDX command, field by field.
assert_layout!(mem_enc_cmd, size 24, align 8, id @ 0, flags @ 4, data @ 8, status @ 16);
assert_layout!(kvm_sev_cmd, size 24, align 8, id @ 0, pad0 @ 4, data @ 8, error @ 16, sev_fd @ 20);
assert_layout!(kvm_tdx_cmd, size 24, align 8, id @ 0, flags @ 4, data @ 8, hw_error @ 16);
const _: () = {
    assert!(offset_of!(crate::abi::mem_enc_sev_status, error) == 0);
    assert!(offset_of!(crate::abi::mem_enc_sev_status, sev_fd) == 4);
    assert!(size_of::<crate::abi::mem_enc_cmd_status>() == 8);
};

assert_layout!(kvm_tdx_capabilities, size 2056, align 8,
    supported_attrs @ 0, supported_xfam @ 8, user_tdvmcallinfo_1_r11 @ 24, reserved @ 48, cpuid @ 2048);
assert_layout!(kvm_tdx_init_vm, size 264, align 8,
    attributes @ 0, xfam @ 8, mrconfigid @ 16, mrowner @ 64, mrownerconfig @ 112, reserved @ 160, cpuid @ 256);
assert_layout!(kvm_tdx_init_mem_region, size 24, align 8, source_addr @ 0, gpa @ 8, nr_pages @ 16);
assert_layout!(kvm_cpuid_entry2, size 40, align 4);
assert_layout!(kvm_cpuid2_header, size 8, align 4);

// SEV parameter structs, against kernel-abi.md section 1.9 (kvm-bindings could regress).
assert_layout!(kvm_sev_init, size 48, align 8, vmsa_features @ 0, flags @ 8, ghcb_version @ 12);
assert_layout!(kvm_sev_launch_start, size 40, align 8, handle @ 0, policy @ 4, dh_uaddr @ 8,
    dh_len @ 16, session_uaddr @ 24, session_len @ 32);
assert_layout!(kvm_sev_launch_update_data, size 16, align 8, uaddr @ 0, len @ 8);
assert_layout!(kvm_sev_launch_secret, size 48, align 8, hdr_uaddr @ 0, hdr_len @ 8,
    guest_uaddr @ 16, guest_len @ 24, trans_uaddr @ 32, trans_len @ 40);
assert_layout!(kvm_sev_launch_measure, size 16, align 8, uaddr @ 0, len @ 8);
assert_layout!(kvm_sev_guest_status, size 12, align 4, handle @ 0, policy @ 4, state @ 8);
assert_layout!(kvm_sev_dbg, size 24, align 8, src_uaddr @ 0, dst_uaddr @ 8, len @ 16);
assert_layout!(kvm_sev_attestation_report, size 32, align 8, mnonce @ 0, uaddr @ 16, len @ 24);
assert_layout!(kvm_sev_send_start, size 72, align 8, policy @ 0, pdh_cert_uaddr @ 8,
    plat_certs_uaddr @ 24, amd_certs_uaddr @ 40, session_uaddr @ 56, session_len @ 64);
assert_layout!(kvm_sev_send_update_data, size 48, align 8, hdr_len @ 8, trans_len @ 40);
assert_layout!(kvm_sev_receive_start, size 40, align 8, handle @ 0, pdh_uaddr @ 8, session_len @ 32);
assert_layout!(kvm_sev_receive_update_data, size 48, align 8, hdr_len @ 8, trans_len @ 40);
assert_layout!(kvm_sev_snp_launch_start, size 64, align 8, policy @ 0, gosvw @ 8, flags @ 24);
assert_layout!(kvm_sev_snp_launch_update, size 64, align 8, gfn_start @ 0, uaddr @ 8, len @ 16,
    type_ @ 24, flags @ 26);
assert_layout!(kvm_sev_snp_launch_finish, size 88, align 8, id_block_uaddr @ 0, id_auth_uaddr @ 8,
    id_block_en @ 16, auth_key_en @ 17, vcek_disabled @ 18, host_data @ 19, flags @ 54);
assert_layout!(kvm_enc_region, size 16, align 8);
assert_layout!(kvm_memory_attributes, size 32, align 8);
assert_layout!(kvm_create_guest_memfd, size 64, align 8);
assert_layout!(kvm_device_attr, size 24, align 8);
assert_layout!(kvm_enable_cap, size 104, align 8, cap @ 0, flags @ 4, args @ 8);
assert_layout!(kvm_userspace_memory_region2, size 160, align 8, slot @ 0, flags @ 4,
    guest_phys_addr @ 8, memory_size @ 16, userspace_addr @ 24, guest_memfd_offset @ 32, guest_memfd @ 40);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        // Values from kernel-abi.md section 1.1, computed with <linux/ioctl.h>.
        assert_eq!(KVM_CREATE_VM, 0xAE01);
        assert_eq!(KVM_CHECK_EXTENSION, 0xAE03);
        assert_eq!(KVM_CREATE_VCPU, 0xAE41);
        assert_eq!(KVM_MEMORY_ENCRYPT_OP, 0xC008_AEBA);
        assert_eq!(KVM_MEMORY_ENCRYPT_REG_REGION, 0x8010_AEBB);
        assert_eq!(KVM_MEMORY_ENCRYPT_UNREG_REGION, 0x8010_AEBC);
        assert_eq!(KVM_SET_MEMORY_ATTRIBUTES, 0x4020_AED2);
        assert_eq!(KVM_CREATE_GUEST_MEMFD, 0xC040_AED4);
        assert_eq!(KVM_GET_DEVICE_ATTR, 0x4018_AEE2);
        assert_eq!(KVM_HAS_DEVICE_ATTR, 0x4018_AEE3);
        assert_eq!(KVM_SET_USER_MEMORY_REGION2, 0x40A0_AE49);
        assert_eq!(KVM_ENABLE_CAP, 0x4068_AEA3);
        assert_eq!(KVM_SET_TSC_KHZ, 0xAEA2);
        assert_eq!(KVM_SET_USER_MEMORY_REGION, 0x4020_AE46);
        assert_eq!(KVM_GET_API_VERSION, 0xAE00);
    }

    #[test]
    fn constants_agree_with_kvm_bindings() {
        assert_eq!(KVM_X86_TDX_VM, kvm_bindings::KVM_X86_TDX_VM);
        assert_eq!(KVM_CAP_VM_TYPES, u64::from(kvm_bindings::KVM_CAP_VM_TYPES));
        assert_eq!(KVM_X86_GRP_SEV, kvm_bindings::KVM_X86_GRP_SEV);
        assert_eq!(
            sev_id::SNP_LAUNCH_FINISH,
            kvm_bindings::sev_cmd_id_KVM_SEV_SNP_LAUNCH_FINISH
        );
        assert_eq!(sev_id::INIT2, kvm_bindings::sev_cmd_id_KVM_SEV_INIT2);
        assert_eq!(KVM_MEM_GUEST_MEMFD, kvm_bindings::KVM_MEM_GUEST_MEMFD);
        assert_eq!(
            KVM_SEV_SNP_ID_BLOCK_SIZE,
            kvm_bindings::KVM_SEV_SNP_ID_BLOCK_SIZE as usize
        );
        assert_eq!(
            KVM_SEV_SNP_ID_AUTH_SIZE,
            kvm_bindings::KVM_SEV_SNP_ID_AUTH_SIZE as usize
        );
    }
}
