//! Per-vendor command tables: what memenc knows about each `KVM_MEMORY_ENCRYPT_OP` sub-command
//! (name, which descriptor it goes to, its parameter struct, the `flags` bits the kernel honours,
//! which errors are transient and whether it makes partial progress). The tables are data; the
//! dispatch in [`crate::op`] reads them and never special-cases an id itself.

pub mod sev;
pub mod tdx;

use crate::abi::{MEM_ENC_VENDOR_NONE, MEM_ENC_VENDOR_SEV, MEM_ENC_VENDOR_TDX};

/// The memory-encryption technology whose id numbering a host's kernel speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Neither AMD nor Intel: there is no memory-encryption backend to talk to.
    None,
    /// AMD (and Hygon): SEV, SEV-ES, SEV-SNP.
    Sev,
    /// Intel: TDX.
    Tdx,
}

impl Vendor {
    /// The `MEM_ENC_VENDOR_*` number of this vendor.
    pub const fn as_u32(self) -> u32 {
        match self {
            Vendor::None => MEM_ENC_VENDOR_NONE,
            Vendor::Sev => MEM_ENC_VENDOR_SEV,
            Vendor::Tdx => MEM_ENC_VENDOR_TDX,
        }
    }

    /// The vendor for a `MEM_ENC_VENDOR_*` number, if it is one.
    pub const fn from_u32(v: u32) -> Option<Vendor> {
        match v {
            MEM_ENC_VENDOR_NONE => Some(Vendor::None),
            MEM_ENC_VENDOR_SEV => Some(Vendor::Sev),
            MEM_ENC_VENDOR_TDX => Some(Vendor::Tdx),
            _ => None,
        }
    }

    /// This vendor's command table (empty for `None`).
    pub fn table(self) -> &'static [CmdInfo] {
        match self {
            Vendor::None => &[],
            Vendor::Sev => sev::COMMANDS,
            Vendor::Tdx => tdx::COMMANDS,
        }
    }

    /// The table entry for `id`, if the id is one memenc knows. Tables are sorted by id, so
    /// this is a binary search: it runs on every `mem_enc_op`.
    pub fn command(self, id: u32) -> Option<&'static CmdInfo> {
        let table = self.table();
        table
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &table[i])
    }
}

/// Which descriptor a command is issued on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The VM descriptor.
    Vm,
    /// A vCPU descriptor (TDX INIT_VCPU, INIT_MEM_REGION, GET_CPUID).
    Vcpu,
}

impl Scope {
    /// "vm" or "vcpu".
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Vm => "vm",
            Scope::Vcpu => "vcpu",
        }
    }
}

/// What `data` carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// Nothing: the kernel ignores `data`.
    None,
    /// The address of a parameter struct of this many bytes (the fixed part, for structs that
    /// end in a CPUID array).
    Struct(usize),
    /// An immediate value (TDX INIT_VCPU: the initial guest RCX).
    Immediate,
}

/// How a command reports partial progress, for `MEM_ENC_FLAG_CONTINUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The command completes or fails as a whole.
    None,
    /// Returns 0 with the parameter struct's `u64` at this offset (the remaining length or page
    /// count) not yet zero: issue again with the updated struct.
    RemainingAt(usize),
}

/// One sub-command.
#[derive(Clone, Copy, Debug)]
pub struct CmdInfo {
    /// The id in the vendor's numbering.
    pub id: u32,
    /// The kernel's name, e.g. `KVM_SEV_SNP_LAUNCH_UPDATE`.
    pub name: &'static str,
    /// Descriptor it goes to.
    pub scope: Scope,
    /// What `data` carries.
    pub param: Param,
    /// `flags` bits the kernel honours for this id.
    pub kernel_flags: u32,
    /// Whether the current kernel handles the id at all (SEV ids 10, 14 and 19 are defined in
    /// the UAPI but answered with -EINVAL).
    pub handled: bool,
    /// Errors after which the same command may simply be issued again (`MEM_ENC_FLAG_RETRY`).
    pub transient: &'static [i32],
    /// Partial-progress behaviour (`MEM_ENC_FLAG_CONTINUE`).
    pub progress: Progress,
}

/// Shorthand for the tables: a handled command with no retry or progress semantics.
///
/// Nothing is transient by default: every SEV command runs under `kvm->lock`, which
/// `sev_mem_enc_ioctl` takes non-killably, so no SEV handler returns -EINTR for a signal except
/// the vCPU-locking ones (a fatal signal: the process is dying, and re-issuing
/// LAUNCH_UPDATE_VMSA after a partial success re-encrypts vCPUs on kernels up to 7.0). A table
/// entry lists an errno only where the kernel source shows it is safe to issue again.
pub(crate) const fn cmd(id: u32, name: &'static str, scope: Scope, param: Param) -> CmdInfo {
    CmdInfo {
        id,
        name,
        scope,
        param,
        kernel_flags: 0,
        handled: true,
        transient: &[],
        progress: Progress::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_unique_and_found() {
        for vendor in [Vendor::Sev, Vendor::Tdx] {
            let t = vendor.table();
            assert!(
                t.windows(2).all(|w| w[0].id < w[1].id),
                "{vendor:?} not sorted"
            );
            for c in t {
                assert_eq!(vendor.command(c.id).map(|f| f.name), Some(c.name));
            }
            for (i, a) in t.iter().enumerate() {
                assert!(
                    t[i + 1..].iter().all(|b| b.id != a.id),
                    "{vendor:?} id {} twice",
                    a.id
                );
                assert!(a.name.starts_with("KVM_"), "{}", a.name);
            }
        }
    }

    #[test]
    fn vendor_numbers_round_trip() {
        for v in [Vendor::None, Vendor::Sev, Vendor::Tdx] {
            assert_eq!(Vendor::from_u32(v.as_u32()), Some(v));
        }
        assert_eq!(Vendor::from_u32(3), None);
        assert!(Vendor::None.command(0).is_none());
    }

    #[test]
    fn progress_offsets_lie_inside_their_structs() {
        for vendor in [Vendor::Sev, Vendor::Tdx] {
            for c in vendor.table() {
                if let Progress::RemainingAt(off) = c.progress {
                    match c.param {
                        Param::Struct(size) => assert!(off + 8 <= size, "{}", c.name),
                        _ => panic!("{} makes progress without a struct", c.name),
                    }
                }
            }
        }
    }
}
