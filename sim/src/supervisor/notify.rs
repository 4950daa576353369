//! The notification loop: poll, `NOTIF_RECV`, ask the handler, `NOTIF_SEND` (or `NOTIF_ADDFD`).
//!
//! `poll` with a timeout rather than a blocking RECV (≈0.4 µs more per call) so that a worker
//! also ends when told to, not only on `POLLHUP` (no task left using the filter). On 6.18 a
//! RECV after the last task has gone fails with ENOENT; with another worker, ENOENT also means
//! "that one took it". SEND/ADDFD failing with ENOENT means the target stopped waiting
//! (killed, or interrupted before we answered): normal, not an error.
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use super::Handler;
use super::target::Target;

/// One notified system call.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    /// The kernel's cookie for this call (for `NOTIF_ID_VALID`; [`Target`] uses it).
    pub id: u64,
    /// The calling thread's TID (in the supervisor's pid namespace).
    pub tid: i32,
    /// The system call number (x86-64; the filter lets no other ABI reach the supervisor).
    pub nr: i64,
    /// The user-space instruction pointer of the call.
    pub ip: u64,
    /// The six argument registers.
    pub args: [u64; 6],
}

/// The answer to a notification.
#[derive(Debug)]
pub enum Reply {
    /// Run the call in the real kernel (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). Not a security
    /// decision: the kernel re-reads pointer arguments after the handler looked at them.
    Continue,
    /// The call returns this value.
    Value(i64),
    /// The call fails with this (positive) errno.
    Errno(i32),
    /// Install `fd` in the target and return its target-side number as the call's result
    /// (`NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SEND`); `cloexec` sets `O_CLOEXEC` on it there.
    /// The supervisor's `fd` is closed afterwards; keep a `try_clone` to recognise it later.
    AddFd { fd: OwnedFd, cloexec: bool },
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `NOTIF_RECV` into a buffer of the kernel's size (which may be larger than `libc`'s struct
/// on a future kernel; the kernel refuses a non-zeroed buffer).
fn recv(listener: BorrowedFd<'_>, buf: &mut [u64]) -> Result<Notification, i32> {
    buf.fill(0);
    // SAFETY: `buf` is at least as large as the kernel's `struct seccomp_notif` (checked by
    // the caller) and 8-byte aligned.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            buf.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(last_errno());
    }
    // SAFETY: the kernel filled a `struct seccomp_notif`, whose layout starts like libc's.
    let n: libc::seccomp_notif = unsafe { std::ptr::read(buf.as_ptr().cast()) };
    let mut args = [0u64; 6];
    args.copy_from_slice(&n.data.args);
    Ok(Notification {
        id: n.id,
        tid: n.pid as i32,
        nr: i64::from(n.data.nr),
        ip: n.data.instruction_pointer,
        args,
    })
}

fn send(listener: BorrowedFd<'_>, id: u64, reply: Reply) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: 0,
    };
    match reply {
        Reply::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        Reply::Value(v) => resp.val = v,
        Reply::Errno(e) => resp.error = -e.abs(),
        Reply::AddFd { fd, cloexec } => {
            let add = libc::seccomp_notif_addfd {
                id,
                flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
                srcfd: fd.as_raw_fd() as u32,
                newfd: 0,
                newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
            };
            // SAFETY: the ioctl reads a valid `seccomp_notif_addfd`.
            let r =
                unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ADDFD, &add) };
            if r >= 0 {
                return Ok(()); // installed and answered in one step
            }
            match last_errno() {
                libc::ENOENT => return Ok(()),
                // E.g. EMFILE in the target: the call fails with that, as a real open would.
                e => resp.error = -e,
            }
        }
    }
    // SAFETY: the ioctl reads a valid `seccomp_notif_resp`.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    if r == 0 {
        return Ok(());
    }
    match last_errno() {
        libc::ENOENT => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// The kernel's `sizeof(struct seccomp_notif)` in u64 words (at least libc's).
pub(crate) fn notif_words() -> io::Result<usize> {
    let mut sizes = libc::seccomp_notif_sizes {
        seccomp_notif: 0,
        seccomp_notif_resp: 0,
        seccomp_data: 0,
    };
    // SAFETY: SECCOMP_GET_NOTIF_SIZES fills the struct it is given.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_NOTIF_SIZES,
            0,
            &mut sizes,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::from(sizes.seccomp_notif_resp) != size_of::<libc::seccomp_notif_resp>() {
        // A different response layout would be misread by the kernel: refuse, loudly.
        return Err(io::Error::other(format!(
            "kernel seccomp_notif_resp is {} bytes, expected {}",
            sizes.seccomp_notif_resp,
            size_of::<libc::seccomp_notif_resp>()
        )));
    }
    let bytes = usize::from(sizes.seccomp_notif).max(size_of::<libc::seccomp_notif>());
    Ok(bytes.div_ceil(8))
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS(SYNC_WAKE_UP)` (6.6+): the kernel wakes the supervisor on the
/// target's CPU, which halves the round trip here. Best effort: older kernels lack it.
pub(crate) fn set_sync_wake_up(listener: BorrowedFd<'_>) -> bool {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: the ioctl takes the flags by value.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        ) == 0
    }
}

/// One worker: serves until no task uses the filter any more, or `stop` is set (the tracer
/// has seen every task go).
pub(crate) fn serve(
    listener: &OwnedFd,
    handler: &dyn Handler,
    stop: &AtomicBool,
    words: usize,
) -> io::Result<()> {
    let fd = listener.as_fd();
    let mut buf = vec![0u64; words];
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, 100) };
        if r < 0 {
            match last_errno() {
                libc::EINTR => continue,
                e => return Err(io::Error::from_raw_os_error(e)),
            }
        }
        if r == 0 {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            continue;
        }
        if p.revents & libc::POLLIN == 0 {
            // POLLHUP (no users left) or POLLERR.
            return Ok(());
        }
        let n = match recv(fd, &mut buf) {
            Ok(n) => n,
            Err(libc::ENOENT | libc::EINTR) => continue, // taken by another worker, or the caller left
            Err(e) => return Err(io::Error::from_raw_os_error(e)),
        };
        let target = Target::new(fd, n.id, n.tid);
        // A panicking handler must not leave the target hanging: fail that one call.
        let reply = catch_unwind(AssertUnwindSafe(|| handler.notify(&n, &target)))
            .unwrap_or(Reply::Errno(libc::ENOSYS));
        if send(fd, n.id, reply).is_err() {
            // The kernel refused the answer (a bug in it, e.g. an out-of-range value): the
            // caller must not wait forever, so fail the call instead.
            let _ = send(fd, n.id, Reply::Errno(libc::ENOSYS));
        }
    }
}
