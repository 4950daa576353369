//! Whose memory the model reads and writes: the process whose system call it is answering.
//!
//! In process (tests, fuzzers, benchmarks) that is this process; under the supervisor it is the
//! thread of the traced program that made the call. The model copies every byte through here
//! with `process_vm_readv`/`process_vm_writev`, so a bad address is `-EFAULT` exactly where the
//! kernel's `copy_from_user`/`copy_to_user` would fail, never a crash, in either case.

use std::cell::Cell;

thread_local! {
    /// The thread whose memory is "user memory" for calls answered on this thread; 0: ours.
    static TARGET: Cell<libc::pid_t> = const { Cell::new(0) };
}

/// Runs `f` with `tid`'s memory as user memory (the supervisor, for one notification).
pub fn with_target<R>(tid: libc::pid_t, f: impl FnOnce() -> R) -> R {
    let old = TARGET.with(|t| t.replace(tid));
    let r = f();
    TARGET.with(|t| t.set(old));
    r
}

fn pid() -> libc::pid_t {
    match TARGET.with(Cell::get) {
        // SAFETY: getpid has no preconditions.
        0 => unsafe { libc::getpid() },
        tid => tid,
    }
}

/// Reads `out.len()` bytes of user memory at `addr`; `None` where the range is not readable.
pub fn read_user(addr: u64, out: &mut [u8]) -> Option<()> {
    if out.is_empty() {
        return Some(());
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: process_vm_readv writes only into `out` (described by `local`) and reads the
    // target's memory through the kernel, which reports EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_readv(pid(), &local, 1, &remote, 1, 0) };
    (n == out.len() as isize).then_some(())
}

/// Writes `data` into user memory at `addr`; `None` where the range is not writable.
pub fn write_user(addr: u64, data: &[u8]) -> Option<()> {
    if data.is_empty() {
        return Some(());
    }
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: process_vm_writev reads only `data` and writes the target's memory through the
    // kernel, which reports EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_writev(pid(), &local, 1, &remote, 1, 0) };
    (n == data.len() as isize).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_memory_access_reports_bad_addresses() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mut b = [0u8; 8];
        assert_eq!(read_user(&value as *const u64 as u64, &mut b), Some(()));
        assert_eq!(u64::from_le_bytes(b), value);
        assert_eq!(read_user(0, &mut b), None);
        let mut target = [0u8; 4];
        assert_eq!(
            write_user(target.as_mut_ptr() as u64, &[1, 2, 3, 4]),
            Some(())
        );
        assert_eq!(target, [1, 2, 3, 4]);
        assert_eq!(write_user(16, &[1]), None);
    }
}
