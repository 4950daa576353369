//! C exports for firmware statuses: names and meanings, the composed TDX description, and the
//! stage at which the calling thread's last typed-helper call failed.

use core::ffi::{c_char, c_int};
use core::fmt::Write;

use super::{boundary, boundary_or};
use crate::fwerr::{self, Stage};

/// `mem_enc_last_stage()`: the last helper call succeeded.
pub const MEM_ENC_STAGE_NONE: u32 = 0;
/// `mem_enc_last_stage()`: memenc rejected the call and issued no ioctl.
pub const MEM_ENC_STAGE_MEMENC: u32 = 1;
/// `mem_enc_last_stage()`: the kernel rejected the call before the firmware was reached
/// (firmware status 0 or SEV_RET_NO_FW_CALL), or the kernel reports no status for it (TDX vCPU
/// commands).
pub const MEM_ENC_STAGE_KVM: u32 = 2;
/// `mem_enc_last_stage()`: the firmware (PSP or TDX module) rejected the call; its status says
/// why (`mem_enc_fw_strerror()`).
pub const MEM_ENC_STAGE_FIRMWARE: u32 = 3;
/// A buffer of this many bytes always holds `mem_enc_fw_describe()`'s text and its NUL.
pub const MEM_ENC_FW_DESCRIBE_MAX: usize = 320;

/// The name and meaning of a firmware status, e.g. for SEV 2:
/// "SEV_RET_INVALID_GUEST_STATE: the guest is in the wrong state for this command (commands out
/// of order)", and for TDX 0xC000010000000045:
/// "TDX_OPERAND_INVALID (operand CPUID_CONFIG): the SEAMCALL operand named is invalid".
///
/// Arguments:
///  "vendor" - `MEM_ENC_VENDOR_SEV` (status is a 32-bit `SEV_RET_*` code, as in `fw_error`) or
///             `MEM_ENC_VENDOR_TDX` (status is a 64-bit SEAMCALL status, as in `hw_error`).
///  "status" - the status.
///
/// Codes memenc does not know get a sentence naming what is known (for TDX, the class).
///
/// Returns: a static NUL-terminated string; never NULL, never empty, never to be freed.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_fw_strerror(vendor: u32, status: u64) -> *const c_char {
    boundary_or(c"internal error".as_ptr(), || {
        fwerr::strerror(vendor, status).as_ptr()
    })
}

/// The full description of a firmware status: `mem_enc_fw_strerror()`'s text followed by the
/// raw value and, for TDX, its decoded fields, e.g.
/// "TDX_OPERAND_INVALID (operand CPUID_CONFIG): ... [0xc000010000000045: class 0x01,
/// details 0x00, operand 0x45 CPUID_CONFIG; error]".
///
/// Arguments:
///  "vendor", "status" - as for `mem_enc_fw_strerror()`.
///  "buf"              - where the NUL-terminated text goes; may be NULL when "len" is 0.
///  "len"              - size of "buf" in bytes. `MEM_ENC_FW_DESCRIBE_MAX` always suffices.
///
/// Returns: the text's length (without the NUL) on success;
///  -ENOSPC  "buf" is too small: nothing is written (a buffer of `MEM_ENC_FW_DESCRIBE_MAX`
///           bytes never is);
///  -EINVAL  "buf" is NULL while "len" is not 0.
///
/// Allocates no memory.
///
/// # Safety
/// "buf" must be NULL or point to "len" writable bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_fw_describe(
    vendor: u32,
    status: u64,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    boundary(|| {
        if buf.is_null() && len != 0 {
            return -libc::EINVAL;
        }
        let mut text = StackText::default();
        if fwerr::describe(vendor, status, &mut text).is_err() {
            return -libc::ENOSPC;
        }
        let bytes = &text.buf[..text.len];
        if bytes.len() >= len {
            return -libc::ENOSPC;
        }
        // SAFETY: "buf" has "len" > bytes.len() writable bytes (checked above); the source is
        // a local array, so the ranges do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
            *buf.add(bytes.len()) = 0;
        }
        c_int::try_from(bytes.len()).unwrap_or(c_int::MAX)
    })
}

/// The stage at which the calling thread's most recent KVM command stopped:
/// `MEM_ENC_STAGE_NONE` (it succeeded), `MEM_ENC_STAGE_MEMENC` (rejected by memenc, no ioctl
/// issued), `MEM_ENC_STAGE_KVM` (rejected by the kernel before the firmware) or
/// `MEM_ENC_STAGE_FIRMWARE` (rejected by the firmware; see the `fw_error`/`hw_error`
/// out-parameter or the command's status word). Thread-local, like errno.
///
/// The rule: every function that carries out a KVM command the caller asked for sets it on
/// every return, success included: `mem_enc_op()` (also with a NULL command), the typed helpers
/// (`mem_enc_sev_*`, `mem_enc_snp_*`, `mem_enc_tdx_*`), and the memory and VM helpers
/// (`mem_enc_mem_*`, `mem_enc_vm_*`, `mem_enc_vcpu_create()`). No other function changes it:
/// probing and negotiation (they explain a refusal in their message), the `mem_enc_sim_*` test
/// support, and the string, version, trace and retry-limit functions. Read it right after the
/// call it is about.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_last_stage() -> u32 {
    boundary_or(0, || fwerr::last_stage() as u32)
}

/// A fixed stack buffer for `describe`: no allocation on the C path.
struct StackText {
    buf: [u8; fwerr::DESCRIBE_MAX],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; fwerr::DESCRIBE_MAX],
            len: 0,
        }
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

// The C constants are literals (cbindgen prints only literals); keep them equal to the Rust.
const _: () = {
    assert!(MEM_ENC_STAGE_NONE == Stage::None as u32);
    assert!(MEM_ENC_STAGE_MEMENC == Stage::Memenc as u32);
    assert!(MEM_ENC_STAGE_KVM == Stage::Kvm as u32);
    assert!(MEM_ENC_STAGE_FIRMWARE == Stage::Firmware as u32);
    assert!(MEM_ENC_FW_DESCRIBE_MAX == fwerr::DESCRIBE_MAX);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn describe_reports_enospc_and_writes_nothing() {
        let mut small = [0x55 as c_char; 8];
        // SAFETY: the buffer has 8 bytes.
        let r = unsafe { mem_enc_fw_describe(1, 2, small.as_mut_ptr(), small.len()) };
        assert_eq!(r, -libc::ENOSPC);
        assert!(small.iter().all(|&b| b == 0x55));
        assert_eq!(
            // SAFETY: NULL with len 0 is allowed (and too small).
            unsafe { mem_enc_fw_describe(1, 2, core::ptr::null_mut(), 0) },
            -libc::ENOSPC
        );
        assert_eq!(
            // SAFETY: NULL with len 1 is refused before any write.
            unsafe { mem_enc_fw_describe(1, 2, core::ptr::null_mut(), 1) },
            -libc::EINVAL
        );
        let mut buf = [0 as c_char; MEM_ENC_FW_DESCRIBE_MAX];
        // SAFETY: the buffer has MEM_ENC_FW_DESCRIBE_MAX bytes.
        let n =
            unsafe { mem_enc_fw_describe(2, 0xC000_0100_0000_0045, buf.as_mut_ptr(), buf.len()) };
        // SAFETY: mem_enc_fw_describe NUL-terminates on success.
        let s = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
        assert_eq!(n as usize, s.len());
        assert!(s.contains("operand 0x45 CPUID_CONFIG"), "{s}");
        // Exactly len + 1 fits; len does not.
        let mut exact = vec![0 as c_char; s.len() + 1];
        // SAFETY: the buffer has s.len() + 1 bytes.
        let r = unsafe {
            mem_enc_fw_describe(2, 0xC000_0100_0000_0045, exact.as_mut_ptr(), exact.len())
        };
        assert_eq!(r, n);
        // SAFETY: the buffer has s.len() bytes.
        let r =
            unsafe { mem_enc_fw_describe(2, 0xC000_0100_0000_0045, exact.as_mut_ptr(), s.len()) };
        assert_eq!(r, -libc::ENOSPC);
    }
}
