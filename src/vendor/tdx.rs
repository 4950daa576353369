//! Intel TDX sub-commands (`enum kvm_tdx_cmd_id`), as `tdx_vm_ioctl` and `tdx_vcpu_ioctl`
//! handle them. Three go to the VM descriptor and three to a vCPU descriptor; the other scope
//! answers -EINVAL. Only INIT_MEM_REGION has a kernel flag.

use core::mem::size_of;

use super::{CmdInfo, Param, Progress, Scope, cmd};
use crate::uapi::{self, tdx_id as id};

/// The TDX command table, in id order.
pub static COMMANDS: &[CmdInfo] = &[
    CmdInfo {
        transient: &[],
        ..cmd(
            id::CAPABILITIES,
            "KVM_TDX_CAPABILITIES",
            Scope::Vm,
            Param::Struct(size_of::<uapi::kvm_tdx_capabilities>()),
        )
    },
    CmdInfo {
        // TDX_RND_NO_ENTROPY gives -EAGAIN; 6.19's state guard takes vCPU locks killably.
        transient: &[libc::EAGAIN, libc::EINTR],
        ..cmd(
            id::INIT_VM,
            "KVM_TDX_INIT_VM",
            Scope::Vm,
            Param::Struct(size_of::<uapi::kvm_tdx_init_vm>()),
        )
    },
    CmdInfo {
        // 6.19's state guard: -EBUSY while a vCPU is being created, -EINTR on a signal.
        transient: &[libc::EINTR, libc::EBUSY],
        ..cmd(
            id::INIT_VCPU,
            "KVM_TDX_INIT_VCPU",
            Scope::Vcpu,
            Param::Immediate,
        )
    },
    CmdInfo {
        kernel_flags: uapi::KVM_TDX_MEASURE_MEMORY_REGION,
        // -EINTR leaves source_addr/gpa/nr_pages advanced in the struct: re-issuing continues.
        transient: &[libc::EINTR, libc::EBUSY],
        progress: Progress::RemainingAt(16),
        ..cmd(
            id::INIT_MEM_REGION,
            "KVM_TDX_INIT_MEM_REGION",
            Scope::Vcpu,
            Param::Struct(size_of::<uapi::kvm_tdx_init_mem_region>()),
        )
    },
    CmdInfo {
        // TDX_OPERAND_BUSY from TDH.MR.FINALIZE gives -EBUSY: try again.
        transient: &[libc::EBUSY, libc::EINTR],
        ..cmd(
            id::FINALIZE_VM,
            "KVM_TDX_FINALIZE_VM",
            Scope::Vm,
            Param::None,
        )
    },
    cmd(
        id::GET_CPUID,
        "KVM_TDX_GET_CPUID",
        Scope::Vcpu,
        Param::Struct(size_of::<uapi::kvm_cpuid2_header>()),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::Vendor;

    #[test]
    fn covers_every_defined_id_with_its_scope() {
        let got: Vec<(u32, Scope)> = COMMANDS.iter().map(|c| (c.id, c.scope)).collect();
        assert_eq!(
            got,
            [
                (0, Scope::Vm),
                (1, Scope::Vm),
                (2, Scope::Vcpu),
                (3, Scope::Vcpu),
                (4, Scope::Vm),
                (5, Scope::Vcpu)
            ]
        );
    }

    #[test]
    fn only_init_mem_region_has_a_kernel_flag() {
        for c in COMMANDS {
            let want = if c.id == id::INIT_MEM_REGION { 1 } else { 0 };
            assert_eq!(c.kernel_flags, want, "{}", c.name);
        }
        assert!(matches!(
            Vendor::Tdx.command(id::INIT_VM).map(|c| c.param),
            Some(Param::Struct(264))
        ));
    }
}
