//! Request numbers of the generic KVM ioctls the model answers or shadows beyond those in
//! `memenc::uapi` (which keeps only what the library itself issues): `_IOW(KVMIO, nr, T)` etc.

use core::mem::size_of;
use kvm_bindings::{
    kvm_debugregs, kvm_fpu, kvm_guest_debug, kvm_regs, kvm_sregs, kvm_sregs2, kvm_xcrs, kvm_xsave,
};

const KVMIO: u64 = 0xAE;

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const W: u64 = 1;
const R: u64 = 2;

pub const KVM_GET_VCPU_MMAP_SIZE: u64 = ioc(0, 0x04, 0);
pub const KVM_RUN: u64 = ioc(0, 0x80, 0);
pub const KVM_SET_REGS: u64 = ioc(W, 0x82, size_of::<kvm_regs>());
pub const KVM_SET_SREGS: u64 = ioc(W, 0x84, size_of::<kvm_sregs>());
/// `_IOW(KVMIO, 0x89, struct kvm_msrs)`: the 8-byte header.
pub const KVM_SET_MSRS: u64 = ioc(W, 0x89, 8);
/// `_IOW(KVMIO, 0x90, struct kvm_cpuid2)`: the 8-byte header.
pub const KVM_SET_CPUID2: u64 = ioc(W, 0x90, 8);
pub const KVM_SET_FPU: u64 = ioc(W, 0x8d, size_of::<kvm_fpu>());
pub const KVM_SET_GUEST_DEBUG: u64 = ioc(W, 0x9b, size_of::<kvm_guest_debug>());
pub const KVM_SET_DEBUGREGS: u64 = ioc(W, 0xa2, size_of::<kvm_debugregs>());
/// `_IOW(KVMIO, 0xa5, struct kvm_xsave)`: 4096 bytes (the flexible tail is not in the size).
pub const KVM_SET_XSAVE: u64 = ioc(W, 0xa5, size_of::<kvm_xsave>());
pub const KVM_SET_XCRS: u64 = ioc(W, 0xa7, size_of::<kvm_xcrs>());
pub const KVM_SET_SREGS2: u64 = ioc(W, 0xcd, size_of::<kvm_sregs2>());
/// `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)` on `/dev/kvm`.
pub const KVM_GET_SUPPORTED_CPUID: u64 = ioc(W | R, 0x05, 8);
/// The PSP driver's one ioctl on `/dev/sev`: `_IOWR('S', 0x0, struct sev_issue_cmd)` (16 bytes).
pub const SEV_ISSUE_CMD: u64 = (3 << 30) | (16 << 16) | ((b'S' as u64) << 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_headers() {
        assert_eq!(KVM_SET_REGS, 0x4090_AE82);
        assert_eq!(KVM_SET_SREGS, 0x4138_AE84);
        assert_eq!(KVM_SET_SREGS2, 0x4140_AECD);
        assert_eq!(KVM_SET_FPU, 0x41A0_AE8D);
        assert_eq!(KVM_SET_XSAVE, 0x5000_AEA5);
        assert_eq!(KVM_SET_XCRS, 0x4188_AEA7);
        assert_eq!(KVM_SET_MSRS, 0x4008_AE89);
        assert_eq!(KVM_SET_DEBUGREGS, 0x4080_AEA2);
        assert_eq!(KVM_SET_GUEST_DEBUG, 0x4048_AE9B);
        assert_eq!(KVM_SET_CPUID2, 0x4008_AE90);
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(SEV_ISSUE_CMD, 0xC010_5300);
    }
}
