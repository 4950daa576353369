//! Starting the program: fork, become a tracee, install the filter, hand the listener over, exec.
//!
//! The order in the child matters:
//! 1. `PR_SET_PDEATHSIG(SIGKILL)`: if the supervisor's tracer thread dies, the program dies too
//!    rather than failing every notified call with ENOSYS.
//! 2. `PTRACE_TRACEME` + `raise(SIGSTOP)`: the parent sets the ptrace options (EXITKILL,
//!    TRACESECCOMP, fork/clone/exec tracing) *before* the filter can return `SECCOMP_RET_TRACE`
//!    (which, untraced, fails the call with ENOSYS).
//! 3. `seccomp(SET_MODE_FILTER, NEW_LISTENER | WAIT_KILLABLE_RECV)`. With CAP_SYS_ADMIN no
//!    `NO_NEW_PRIVS` is needed (it would break setuid helpers such as qemu-bridge-helper);
//!    only on EACCES is it set and the install retried.
//! 4. The listener goes to the parent over a socketpair (SCM_RIGHTS), then exec. Filter and
//!    tracing are inherited by every thread and child and survive exec.
//!
//! Between fork and exec the child only makes async-signal-safe calls on memory prepared
//! before the fork (the supervisor is multithreaded).
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The started program: its pid, the seccomp listener and the socket that carries an exec error.
pub struct Child {
    pub pid: i32,
    pub listener: OwnedFd,
    /// The parent's end of the handshake socket: after the listener, the only thing the child
    /// may send is the errno of a failed exec.
    pub sock: OwnedFd,
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in argument"))
}

/// `execvp`'s search, done before the fork (it allocates).
fn resolve(program: &OsStr) -> io::Result<PathBuf> {
    let p = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(p);
        if let Ok(c) = cstring(cand.as_os_str()) {
            // SAFETY: `c` is a valid NUL-terminated string.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                return Ok(cand);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: not found in PATH", p.display()),
    ))
}

/// Writes an errno to the parent; only async-signal-safe calls.
fn child_report(sock: RawFd, err: i32) {
    let b = err.to_ne_bytes();
    // SAFETY: `b` is a 4-byte buffer that outlives the call.
    unsafe { libc::write(sock, b.as_ptr().cast(), b.len()) };
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// The child side; never returns.
///
/// # Safety
/// Must run in a freshly forked child; everything it touches was prepared before the fork.
unsafe fn child(
    sock: RawFd,
    parent: libc::pid_t,
    prog: &libc::sock_fprog,
    path: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: plain system calls on valid pointers prepared before the fork;
    // none of them allocates or takes a lock, which is what a child of a threaded process needs.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
            // The parent thread is already gone: nobody would serve the filter.
            libc::_exit(127);
        }
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            child_report(sock, errno());
            libc::_exit(127);
        }
        libc::raise(libc::SIGSTOP);
        let flags =
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        let install = || {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                prog as *const libc::sock_fprog,
            )
        };
        let mut fd = install();
        if fd < 0 && errno() == libc::EACCES {
            // No CAP_SYS_ADMIN: the kernel requires NO_NEW_PRIVS.
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            fd = install();
        }
        if fd < 0 {
            child_report(sock, errno());
            libc::_exit(127);
        }
        let fd = fd as RawFd;
        // Message: a 4-byte 0 (success) with the listener attached.
        let zero = 0i32.to_ne_bytes();
        let mut iov = libc::iovec {
            iov_base: zero.as_ptr() as *mut libc::c_void,
            iov_len: zero.len(),
        };
        let mut cbuf = [0u64; 4]; // >= CMSG_SPACE(4) = 24, 8-aligned
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
        libc::CMSG_DATA(c).cast::<RawFd>().write_unaligned(fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            libc::_exit(127);
        }
        libc::close(fd);
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        child_report(sock, errno());
        libc::_exit(127);
    }
}

fn waitpid_stopped(pid: i32) -> io::Result<()> {
    let mut st = 0;
    loop {
        // SAFETY: `st` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
    if libc::WIFSTOPPED(st) && libc::WSTOPSIG(st) == libc::SIGSTOP {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "child did not stop for the tracer (wait status {st:#x})"
        )))
    }
}

fn recv_listener(sock: RawFd) -> io::Result<OwnedFd> {
    let mut word = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: word.as_mut_ptr().cast(),
        iov_len: word.len(),
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes given.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 || errno() != libc::EINTR {
            break n;
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: the CMSG_* walk stays within `msg_controllen` as filled by the kernel.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let raw = libc::CMSG_DATA(c).cast::<RawFd>().read_unaligned();
            fd = Some(OwnedFd::from_raw_fd(raw));
        }
    }
    let code = i32::from_ne_bytes(word);
    match (n, fd) {
        (4, Some(fd)) if code == 0 => Ok(fd),
        (4, _) if code != 0 => Err(io::Error::from_raw_os_error(code)),
        _ => Err(io::Error::other(
            "child exited before handing over the seccomp listener",
        )),
    }
}

/// Forks and starts `program`; must be called on the thread that will do all ptrace calls
/// (the tracer of a PTRACE_TRACEME child is the thread that forked it).
pub fn spawn(
    program: &OsStr,
    args: &[OsString],
    filter: &[libc::sock_filter],
) -> io::Result<Child> {
    let path = cstring(resolve(program)?.as_os_str())?;
    let mut cargs = vec![cstring(program)?];
    for a in args {
        cargs.push(cstring(a)?);
    }
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let cenv: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend(v.as_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut envp: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let prog = libc::sock_fprog {
        len: u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };

    let mut sv = [0 as RawFd; 2];
    // SAFETY: `sv` has room for the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair just returned these two descriptors, owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child branch calls only `child`, which is written for a post-fork child.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; all arguments were built before the fork.
        unsafe { child(theirs.as_raw_fd(), parent, &prog, &path, &argv, &envp) };
    }
    drop(theirs);
    let fail = |e: io::Error| {
        // SAFETY: `pid` is our child; kill + reap so nothing is left behind.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL);
        }
        e
    };
    waitpid_stopped(pid).map_err(fail)?;
    let opts = libc::PTRACE_O_EXITKILL
        | libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_TRACESYSGOOD;
    // SAFETY: `pid` is our stopped tracee.
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, pid, 0, opts as libc::c_ulong) } != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: as above; resumes it with no signal.
    if unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) } != 0 {
        return Err(fail(io::Error::last_os_error()));
    }
    let listener = recv_listener(ours.as_raw_fd()).map_err(fail)?;
    Ok(Child {
        pid,
        listener,
        sock: ours,
    })
}

/// After the child has exited: the errno of a failed exec, if the child sent one.
pub fn exec_error(sock: &OwnedFd) -> Option<io::Error> {
    let mut b = [0u8; 4];
    // SAFETY: `b` is a 4-byte buffer; MSG_DONTWAIT so this never blocks.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            b.as_mut_ptr().cast(),
            4,
            libc::MSG_DONTWAIT,
        )
    };
    (n == 4).then(|| io::Error::from_raw_os_error(i32::from_ne_bytes(b)))
}
