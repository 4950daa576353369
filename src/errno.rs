//! The error type of the Rust API and the sentence `mem_enc_strerror()` gives for each errno:
//! what that errno most likely means for a memory-encryption call, not the generic libc text.

use core::ffi::CStr;
use core::fmt;

/// A positive errno value. The C API returns it negated.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's `errno`, after a failed libc call.
    #[inline]
    pub fn last() -> Errno {
        // Read directly (not through std::io::Error, whose drop is an out-of-line call on
        // mem_enc_op's error path).
        // SAFETY: __errno_location() returns the calling thread's errno slot, always valid.
        Errno(unsafe { *libc::__errno_location() })
    }

    /// The value C callers get: `-errno`.
    pub const fn negated(self) -> i32 {
        -self.0
    }

    /// The domain sentence for this errno.
    pub fn describe(self) -> &'static str {
        describe(self.0).to_str().unwrap_or("unknown error")
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self.describe())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.describe(), self.0)
    }
}

impl std::error::Error for Errno {}

/// The sentence for a positive errno; unknown values get a generic one.
pub fn describe(errno: i32) -> &'static CStr {
    match errno {
        0 => c"success",
        libc::ENOTTY => c"this host's KVM has no memory-encryption backend for this VM, the VM is not a confidential VM, or INIT was not issued first",
        libc::EINVAL => c"invalid argument: an unknown id or flag bit, a non-zero reserved field, a command out of order, or a descriptor of the wrong kind (VM vs vCPU)",
        libc::EFAULT => c"a parameter address is not readable or writable memory",
        libc::EBADF => c"not an open descriptor, or sev_fd is not an open /dev/sev",
        libc::EPERM => c"legacy SEV command on an SNP guest, or no permission for /dev/kvm or /dev/sev",
        libc::EACCES => c"permission denied opening /dev/kvm or /dev/sev",
        libc::EIO => c"the firmware (PSP or TDX module) rejected the command: see the firmware status",
        libc::EBUSY => c"busy: ASIDs or keys exhausted, a vCPU being created concurrently, or the TDX module busy (retryable for FINALIZE)",
        libc::EAGAIN => c"temporarily unavailable (e.g. TDX entropy exhausted during INIT_VM): try again",
        libc::EINTR => c"interrupted by a signal before completion; progress, if any, is in the parameter struct",
        libc::E2BIG => c"a buffer or entry count is too small for the kernel's answer, or a struct has a non-zero tail memenc does not know",
        libc::ENOSPC => c"the output buffer is too small; the needed length was returned",
        libc::ENOMEM => c"out of memory, or pinning guest pages exceeded RLIMIT_MEMLOCK",
        libc::EOPNOTSUPP => c"this host does not support the requested technology or feature bits",
        libc::ENXIO => c"the kernel does not publish this capability attribute (older kernel or other vendor)",
        libc::ENODEV => c"no such device: /dev/kvm or /dev/sev is missing, or the firmware is not present",
        libc::ENOENT => c"no such file: /dev/kvm or /dev/sev is missing",
        libc::EEXIST => c"already done: the page or range was already added to the guest",
        libc::ETIMEDOUT => c"the firmware did not answer in time",
        libc::ENOSYS => c"the kernel does not implement this call",
        libc::ENOTRECOVERABLE => c"internal error in memenc (a bug was caught at the C boundary); please report it",
        _ => c"unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_errno_has_its_own_sentence() {
        let generic = describe(-1);
        for e in [
            libc::ENOTTY,
            libc::EINVAL,
            libc::EFAULT,
            libc::EBADF,
            libc::EPERM,
            libc::EIO,
            libc::EBUSY,
            libc::EAGAIN,
            libc::EINTR,
            libc::E2BIG,
            libc::ENOSPC,
            libc::ENOMEM,
            libc::EOPNOTSUPP,
            libc::ENXIO,
            libc::ENOTRECOVERABLE,
        ] {
            assert_ne!(describe(e), generic, "errno {e}");
        }
        assert!(
            Errno(libc::ENOTTY)
                .describe()
                .contains("memory-encryption backend")
        );
    }
}
