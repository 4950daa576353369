//! A traced program's descriptors seen from the supervisor, for calls stopped in the tracer
//! (no notification id to check against): what a descriptor is, whether it is a file the
//! supervisor knows, and a duplicate of it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// `readlink /proc/TID/fd/N`: `/dev/kvm`, `anon_inode:kvm-vm`, `anon_inode:kvm-vcpu:0`, ...
pub fn fd_path(tid: i32, fd: RawFd) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/{tid}/fd/{fd}"))
}

/// Whether `tid`'s `fd` and the supervisor's `ours` are the same open file (`kcmp`).
pub fn same_file(tid: i32, fd: RawFd, ours: BorrowedFd<'_>) -> bool {
    const KCMP_FILE: libc::c_int = 0;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // SAFETY: a plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, tid, me, KCMP_FILE, fd, ours.as_raw_fd()) };
    r == 0
}

/// A duplicate of `tid`'s `fd` in the supervisor (`pidfd_getfd`), `O_CLOEXEC`.
pub fn dup_fd(tid: i32, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call with integer arguments.
    let mut pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, libc::PIDFD_THREAD) };
    if pidfd < 0 {
        // Kernels before 6.9 have no PIDFD_THREAD; the TID of a group leader works without.
        // SAFETY: as above.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, 0) };
    }
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor nobody else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: a plain system call with integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_getfd returned a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}
