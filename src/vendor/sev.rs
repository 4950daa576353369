//! AMD SEV, SEV-ES and SEV-SNP sub-commands (`enum sev_cmd_id`), as `sev_mem_enc_ioctl`
//! handles them. Every SEV command goes to the VM descriptor, and the kernel honours no `flags`
//! bit: the word is `kvm_sev_cmd.pad0`, which it never reads.

use core::mem::size_of;

use super::{CmdInfo, Param, Progress, Scope, cmd};
use crate::uapi::{self, sev_id as id};

const fn s<T>() -> Param {
    Param::Struct(size_of::<T>())
}

const fn vm(id: u32, name: &'static str, param: Param) -> CmdInfo {
    cmd(id, name, Scope::Vm, param)
}

/// Ids the UAPI defines but the kernel answers with -EINVAL (no handler).
const fn unhandled(id: u32, name: &'static str) -> CmdInfo {
    CmdInfo {
        handled: false,
        transient: &[],
        ..vm(id, name, Param::None)
    }
}

/// Commands that take every vCPU's mutex (`kvm_lock_all_vcpus`, killable: -EINTR only on a
/// fatal signal; no -EBUSY path exists in sev.c). Nothing is transient: the process is dying,
/// and re-issuing LAUNCH_UPDATE_VMSA after a partial success re-syncs and re-encrypts vCPUs
/// that were already done (no `guest_state_protected` guard up to 7.0).
const fn all_vcpus(c: CmdInfo) -> CmdInfo {
    CmdInfo {
        transient: &[],
        ..c
    }
}

/// The SEV command table, in id order.
pub static COMMANDS: &[CmdInfo] = &[
    vm(id::INIT, "KVM_SEV_INIT", Param::None),
    vm(id::ES_INIT, "KVM_SEV_ES_INIT", Param::None),
    vm(
        id::LAUNCH_START,
        "KVM_SEV_LAUNCH_START",
        s::<uapi::kvm_sev_launch_start>(),
    ),
    vm(
        id::LAUNCH_UPDATE_DATA,
        "KVM_SEV_LAUNCH_UPDATE_DATA",
        s::<uapi::kvm_sev_launch_update_data>(),
    ),
    all_vcpus(vm(
        id::LAUNCH_UPDATE_VMSA,
        "KVM_SEV_LAUNCH_UPDATE_VMSA",
        Param::None,
    )),
    vm(
        id::LAUNCH_SECRET,
        "KVM_SEV_LAUNCH_SECRET",
        s::<uapi::kvm_sev_launch_secret>(),
    ),
    vm(
        id::LAUNCH_MEASURE,
        "KVM_SEV_LAUNCH_MEASURE",
        s::<uapi::kvm_sev_launch_measure>(),
    ),
    vm(id::LAUNCH_FINISH, "KVM_SEV_LAUNCH_FINISH", Param::None),
    vm(
        id::SEND_START,
        "KVM_SEV_SEND_START",
        s::<uapi::kvm_sev_send_start>(),
    ),
    vm(
        id::SEND_UPDATE_DATA,
        "KVM_SEV_SEND_UPDATE_DATA",
        s::<uapi::kvm_sev_send_update_data>(),
    ),
    unhandled(id::SEND_UPDATE_VMSA, "KVM_SEV_SEND_UPDATE_VMSA"),
    vm(id::SEND_FINISH, "KVM_SEV_SEND_FINISH", Param::None),
    vm(
        id::RECEIVE_START,
        "KVM_SEV_RECEIVE_START",
        s::<uapi::kvm_sev_receive_start>(),
    ),
    vm(
        id::RECEIVE_UPDATE_DATA,
        "KVM_SEV_RECEIVE_UPDATE_DATA",
        s::<uapi::kvm_sev_receive_update_data>(),
    ),
    unhandled(id::RECEIVE_UPDATE_VMSA, "KVM_SEV_RECEIVE_UPDATE_VMSA"),
    vm(id::RECEIVE_FINISH, "KVM_SEV_RECEIVE_FINISH", Param::None),
    vm(
        id::GUEST_STATUS,
        "KVM_SEV_GUEST_STATUS",
        s::<uapi::kvm_sev_guest_status>(),
    ),
    vm(
        id::DBG_DECRYPT,
        "KVM_SEV_DBG_DECRYPT",
        s::<uapi::kvm_sev_dbg>(),
    ),
    vm(
        id::DBG_ENCRYPT,
        "KVM_SEV_DBG_ENCRYPT",
        s::<uapi::kvm_sev_dbg>(),
    ),
    unhandled(id::CERT_EXPORT, "KVM_SEV_CERT_EXPORT"),
    vm(
        id::GET_ATTESTATION_REPORT,
        "KVM_SEV_GET_ATTESTATION_REPORT",
        s::<uapi::kvm_sev_attestation_report>(),
    ),
    vm(id::SEND_CANCEL, "KVM_SEV_SEND_CANCEL", Param::None),
    vm(id::INIT2, "KVM_SEV_INIT2", s::<uapi::kvm_sev_init>()),
    vm(
        id::SNP_LAUNCH_START,
        "KVM_SEV_SNP_LAUNCH_START",
        s::<uapi::kvm_sev_snp_launch_start>(),
    ),
    CmdInfo {
        // Returns 0 with gfn_start/uaddr/len advanced when it stopped early (a signal after
        // the first page). Every negative count, the -EINTR of a signal on the first page
        // included, becomes -EIO with `error` 0 ("not reached the firmware"): nothing is
        // transient (kernels 6.11 to newest).
        transient: &[],
        progress: Progress::RemainingAt(16),
        ..vm(
            id::SNP_LAUNCH_UPDATE,
            "KVM_SEV_SNP_LAUNCH_UPDATE",
            s::<uapi::kvm_sev_snp_launch_update>(),
        )
    },
    all_vcpus(vm(
        id::SNP_LAUNCH_FINISH,
        "KVM_SEV_SNP_LAUNCH_FINISH",
        s::<uapi::kvm_sev_snp_launch_finish>(),
    )),
    vm(
        id::SNP_ENABLE_REQ_CERTS,
        "KVM_SEV_SNP_ENABLE_REQ_CERTS",
        Param::None,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::Vendor;

    #[test]
    fn covers_every_defined_id() {
        let expected: Vec<u32> = (0..=22).chain(100..=103).collect();
        let ids: Vec<u32> = COMMANDS.iter().map(|c| c.id).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn parameter_sizes_follow_the_kernel() {
        let size = |id| match Vendor::Sev.command(id).map(|c| c.param) {
            Some(Param::Struct(n)) => n,
            other => panic!("id {id}: {other:?}"),
        };
        assert_eq!(size(id::INIT2), 48);
        assert_eq!(size(id::LAUNCH_START), 40);
        assert_eq!(size(id::SEND_START), 72);
        assert_eq!(size(id::GUEST_STATUS), 12);
        assert_eq!(size(id::SNP_LAUNCH_FINISH), 88);
        assert_eq!(size(id::SNP_LAUNCH_UPDATE), 64);
    }

    #[test]
    fn the_kernel_honours_no_sev_flag_and_all_go_to_the_vm() {
        for c in COMMANDS {
            assert_eq!(c.kernel_flags, 0, "{}", c.name);
            assert_eq!(c.scope, Scope::Vm, "{}", c.name);
        }
        let unhandled: Vec<u32> = COMMANDS
            .iter()
            .filter(|c| !c.handled)
            .map(|c| c.id)
            .collect();
        assert_eq!(unhandled, [10, 14, 19]);
    }
}
