//! The types and constants C callers see: the unified 24-byte command and memenc's own flag
//! and vendor numbers. Kernel structures that C callers never handle directly live in
//! [`crate::uapi`]; this module holds only what `include/memenc.h` exports.

/// The SEV view of the status word: written back by the kernel (`error`) or supplied by the
/// caller (`sev_fd`, a `/dev/sev` descriptor).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_sev_status {
    /// Firmware (PSP) status of the command, `SEV_RET_*`; 0 when the firmware was not reached.
    pub error: u32,
    /// An open `/dev/sev` descriptor, read by LAUNCH_START, RECEIVE_START and the SNP launch
    /// commands.
    pub sev_fd: u32,
}

/// The last 8 bytes of `struct mem_enc_cmd`: SEV reads them as `{error, sev_fd}`, TDX as one
/// 64-bit SEAMCALL status.
#[repr(C)]
#[derive(Clone, Copy)]
pub union mem_enc_cmd_status {
    /// SEV, SEV-ES and SEV-SNP.
    pub sev: mem_enc_sev_status,
    /// TDX: the SEAMCALL status the kernel reports for INIT_VM and FINALIZE_VM.
    pub hw_error: u64,
}

/// The unified `KVM_MEMORY_ENCRYPT_OP` command: byte for byte `struct kvm_sev_cmd` (the
/// `flags` word sits where SEV has padding) and `struct kvm_tdx_cmd`.
///
/// A caller may pass its own `struct kvm_sev_cmd` from `<linux/kvm.h>` cast to this type.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct mem_enc_cmd {
    /// Sub-command id: `KVM_SEV_*` on AMD hosts, `KVM_TDX_*` on Intel hosts.
    pub id: u32,
    /// Kernel flags the (vendor, id) honours, plus the library-owned `MEM_ENC_FLAG_*` bits.
    pub flags: u32,
    /// Address of the sub-command's parameter struct (TDX INIT_VCPU: an immediate value).
    pub data: u64,
    /// Firmware status (written back) and, for SEV, the `/dev/sev` descriptor.
    pub status: mem_enc_cmd_status,
}

impl mem_enc_cmd {
    /// A command with the given id and parameter address, every other field zero.
    pub const fn new(id: u32, data: u64) -> Self {
        mem_enc_cmd {
            id,
            flags: 0,
            data,
            status: mem_enc_cmd_status { hw_error: 0 },
        }
    }

    /// The whole status word as a 64-bit value (TDX `hw_error`; SEV `error | sev_fd << 32`).
    pub const fn hw_error(&self) -> u64 {
        // SAFETY: every bit pattern of the union's 8 bytes is a valid u64.
        unsafe { self.status.hw_error }
    }

    /// The SEV view of the status word.
    pub const fn sev(&self) -> mem_enc_sev_status {
        // SAFETY: every bit pattern of the union's 8 bytes is a valid pair of u32.
        unsafe { self.status.sev }
    }
}

impl Default for mem_enc_cmd {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl core::fmt::Debug for mem_enc_cmd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("mem_enc_cmd")
            .field("id", &self.id)
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("data", &format_args!("{:#x}", self.data))
            .field("status", &format_args!("{:#x}", self.hw_error()))
            .finish()
    }
}

/// Size of `struct mem_enc_cmd`, the same as `struct kvm_sev_cmd` and `struct kvm_tdx_cmd`.
pub const MEM_ENC_CMD_SIZE: u32 = 24;

/// Vendor number: no memory-encryption technology memenc knows of (neither AMD nor Intel).
pub const MEM_ENC_VENDOR_NONE: u32 = 0;
/// Vendor number: AMD SEV, SEV-ES and SEV-SNP (`KVM_SEV_*` ids).
pub const MEM_ENC_VENDOR_SEV: u32 = 1;
/// Vendor number: Intel TDX (`KVM_TDX_*` ids).
pub const MEM_ENC_VENDOR_TDX: u32 = 2;

/// The `flags` bits owned by memenc (bits 24-31). The kernel never sees them: memenc acts on
/// them and clears them before the ioctl. Every other bit must be one the kernel honours for
/// the (vendor, id), or the call fails with `-EINVAL`.
pub const MEM_ENC_FLAGS_LIBRARY_MASK: u32 = 0xffu32 << 24;
/// Library flag: re-issue the command after the transient errors its kernel handler documents
/// (`-EINTR`, `-EAGAIN`, and `-EBUSY` where it means "try again"), at most the retry limit
/// (`MEM_ENC_RETRY_LIMIT` unless changed with `mem_enc_set_retry_limit()`).
pub const MEM_ENC_FLAG_RETRY: u32 = 1u32 << 31;
/// Library flag, for the partial-progress commands only (SNP_LAUNCH_UPDATE, TDX
/// INIT_MEM_REGION): re-issue with the kernel's updated parameters until the whole range is
/// done, so one call covers the caller's range. `-EINVAL` on any other command.
pub const MEM_ENC_FLAG_CONTINUE: u32 = 1u32 << 30;
/// The flags memenc defines today; the other library bits are reserved and give `-EINVAL`.
pub const MEM_ENC_FLAGS_LIBRARY_KNOWN: u32 = MEM_ENC_FLAG_RETRY | MEM_ENC_FLAG_CONTINUE;
/// The default retry limit: how many times `MEM_ENC_FLAG_RETRY` re-issues a command (and how
/// many rounds without progress `MEM_ENC_FLAG_CONTINUE` accepts) before the last error is
/// returned. `mem_enc_set_retry_limit()` changes it for the process.
pub const MEM_ENC_RETRY_LIMIT: u32 = 16;

/// TDX kernel flag for `KVM_TDX_INIT_MEM_REGION`: extend the TD measurement (MRTD) with the
/// added pages (`KVM_TDX_MEASURE_MEMORY_REGION`).
pub const MEM_ENC_TDX_MEASURE_MEMORY_REGION: u32 = 0x1;

// The ABI version; a test keeps these equal to Cargo.toml's version.
/// Major version: the `libmemenc.so.<major>` SONAME.
pub const MEM_ENC_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const MEM_ENC_VERSION_MINOR: u32 = 2;
/// Patch version.
pub const MEM_ENC_VERSION_PATCH: u32 = 0;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(
            env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().ok(),
            Some(MEM_ENC_VERSION_MAJOR)
        );
        assert_eq!(
            env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().ok(),
            Some(MEM_ENC_VERSION_MINOR)
        );
        assert_eq!(
            env!("CARGO_PKG_VERSION_PATCH").parse::<u32>().ok(),
            Some(MEM_ENC_VERSION_PATCH)
        );
    }

    #[test]
    fn status_views_alias_little_endian() {
        let mut cmd = mem_enc_cmd::new(1, 2);
        cmd.status.sev = mem_enc_sev_status {
            error: 0x1122_3344,
            sev_fd: 7,
        };
        assert_eq!(cmd.hw_error(), 0x0000_0007_1122_3344);
        assert_eq!(size_of::<mem_enc_cmd>() as u32, MEM_ENC_CMD_SIZE);
        assert_eq!(align_of::<mem_enc_cmd>(), 8);
        assert_eq!(offset_of!(mem_enc_cmd, status), 16);
    }

    #[test]
    fn library_flags_are_inside_the_reserved_range() {
        assert_eq!(MEM_ENC_FLAGS_LIBRARY_KNOWN & !MEM_ENC_FLAGS_LIBRARY_MASK, 0);
        assert_eq!(
            MEM_ENC_TDX_MEASURE_MEMORY_REGION & MEM_ENC_FLAGS_LIBRARY_MASK,
            0
        );
    }
}
