//! What a VM came to, for `memenc-sim run --report`: its technology, launch state, vCPUs and
//! the launch measurement the firmware holds (what a real host would put in the guest's
//! attestation report).

use super::sev::Guest;
use super::tdx::Td;
use super::vm::Vm;
use memenc::uapi;

/// One VM's summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmReport {
    /// The KVM_CREATE_VM type the program asked for.
    pub vm_type: u32,
    /// "SEV", "SEV-ES", "SEV-SNP", "TDX", or "none" (no memory encryption was set up).
    pub technology: &'static str,
    /// Where the launch got to (e.g. "running", "launching", "finalized", "created").
    pub state: &'static str,
    /// vCPUs created.
    pub vcpus: usize,
    /// SEV/SEV-ES: the 32-byte GCTX.LD; SNP: the 48-byte launch digest.
    pub launch_digest: Option<Vec<u8>>,
    /// TDX: the 48-byte MRTD.
    pub mrtd: Option<Vec<u8>>,
}

/// The summary of `vm` now.
pub fn report(vm: &Vm) -> VmReport {
    let sev = &vm.sev;
    let snp = sev.snp_context || vm.vm_type == uapi::KVM_X86_SNP_VM;
    let technology = if vm.vm_type == uapi::KVM_X86_TDX_VM {
        "TDX"
    } else if snp {
        "SEV-SNP"
    } else if (sev.active && sev.es) || vm.vm_type == uapi::KVM_X86_SEV_ES_VM {
        "SEV-ES"
    } else if sev.active || vm.vm_type == uapi::KVM_X86_SEV_VM {
        "SEV"
    } else {
        "none"
    };
    let state = if technology == "TDX" {
        match vm.tdx.td {
            Td::Uninitialized => "created",
            Td::Initialized => "initialized",
            Td::Runnable => "finalized",
        }
    } else if snp {
        match (sev.snp_finished, sev.snp_context, sev.active) {
            (true, _, _) => "running",
            (false, true, _) => "launching",
            (false, false, true) => "initialized",
            _ => "created",
        }
    } else {
        match sev.guest {
            Guest::None if sev.active => "initialized",
            Guest::None => "created",
            Guest::Launching => "launching",
            Guest::Secret => "secret",
            Guest::Running => "running",
            Guest::Receiving => "receiving",
            Guest::Sending => "sending",
            Guest::Sent => "sent",
        }
    };
    let (launch_digest, mrtd) = if technology == "TDX" {
        (None, vm.tdx.digest())
    } else {
        (sev.digest(), None)
    };
    VmReport {
        vm_type: vm.vm_type,
        technology,
        state,
        vcpus: vm.vcpus.len(),
        launch_digest,
        mrtd,
    }
}

/// Whether the guest's launch is complete, so its first KVM_RUN would run encrypted code.
pub fn launched(vm: &Vm) -> bool {
    if vm.vm_type == uapi::KVM_X86_TDX_VM {
        vm.tdx.td == Td::Runnable
    } else {
        vm.sev.snp_finished || vm.sev.guest == Guest::Running
    }
}
