//! The tracer loop: every ptrace stop of every task of the program, on the thread that forked it.
//!
//! Why ptrace at all: user notification cannot change argument registers (limit 2 in the
//! research notes), so calls that need that (e.g. `KVM_CREATE_VM(type)`) return
//! `SECCOMP_RET_TRACE` and stop here.
//!
//! `waitpid(-1, __WALL | __WNOTHREAD)`: `__WALL` for threads (clone children), `__WNOTHREAD`
//! so that only this thread's tracees are seen, never children of other supervisor threads
//! (e.g. another `run` in the same process).
//!
//! Stops and what is done:
//! * a new task's first stop (its auto-attach SIGSTOP, which may be reported before or after
//!   the parent's CLONE/FORK/VFORK event): swallowed;
//! * CLONE/FORK/VFORK/EXEC events: recorded, continued;
//! * `PTRACE_EVENT_SECCOMP`: [`Handler::trace_entry`]; registers rewritten or the call skipped;
//! * the syscall-exit stop asked for by `want_exit`: [`Handler::trace_exit_action`], which may
//!   have the returned descriptor moved (below), then [`Handler::trace_exit`];
//! * signal-delivery stops: the signal is re-injected;
//! * group-stops (`PTRACE_GETSIGINFO` fails): continued, so job-control stops do not stop the
//!   program under the supervisor.
//!
//! Moving a descriptor ([`TraceExit::ReplaceFd`]): classic system-call injection at the
//! syscall-exit stop. The registers are saved; `rip` goes back 2 bytes to the `syscall`
//! instruction that made the call (checked: `0f 05`; the filter refuses `int 0x80`), with
//! `orig_rax = rax =` the injected number and its arguments, and two PTRACE_SYSCALL steps
//! (entry stop, exit stop) run it: first `fcntl(fd, F_DUPFD[_CLOEXEC], min)` (the close-on-exec
//! flag is the original's, from /proc/TID/fdinfo), then `close(fd)`; the saved registers are
//! restored with `rax` = the new descriptor. Both calls pass the filter (`ALLOW`). While this
//! runs:
//! * a signal-delivery stop (a signal arriving between the steps) is suppressed, its siginfo
//!   kept, and the signal sent again to the thread (`tgkill`) once the registers are restored;
//!   at the signal-delivery stop that follows, the kept siginfo replaces the `tgkill` one
//!   (PTRACE_SETSIGINFO), so the program's handler sees the original sender and `si_code`;
//! * a group-stop is continued, as in the main loop;
//! * the task may die at any step: its wait status is handed to the main loop's bookkeeping.
//!
//! If `fcntl` fails (no free descriptor in `[min, RLIMIT_NOFILE)`: EMFILE, or EINVAL when the
//! program's limit is now at or below `min`), the original descriptor is closed and the call
//! fails with EMFILE, as if the process had run out of descriptors: a descriptor left below
//! `min` would be invisible to a filter that gates on it. Only if the injection cannot start
//! at all (registers unreadable, no `syscall` instruction before `rip`) is the original result
//! kept; the handler sees a value below `min`.
//!
//! When the main child has gone (exit, signal, or exec failure) the remaining tasks (children
//! it left behind) are killed, as EXITKILL would do anyway once this thread ends, and reaped.
//! Every ptrace call may fail with ESRCH because a task was killed meanwhile; that is ignored,
//! the task's exit is reported by waitpid later.
use std::collections::HashMap;
use std::io;

use super::Handler;

/// What to do with a call stopped by `SECCOMP_RET_TRACE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceAction {
    /// Run it, with the argument registers (rdi, rsi, rdx, r10, r8, r9) replaced if `args`
    /// is given; if `want_exit`, [`Handler::trace_exit`] sees its result. The kernel re-runs
    /// the filter on the new arguments (a rewritten request that is on the notify list is then
    /// notified; on the trace list it is allowed).
    Run {
        args: Option<[u64; 6]>,
        want_exit: bool,
    },
    /// Do not run it; it returns `-errno`. Done at the seccomp stop itself (syscall number -1
    /// and the return register set, as seccomp(2) describes), so no exit stop is needed.
    Fail(i32),
}

/// What to do with the result of a `want_exit` call, decided by
/// [`Handler::trace_exit_action`] before the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceExit {
    /// Leave it as it is.
    Keep,
    /// The call returned a descriptor: if it is below `min`, move it to the lowest free number
    /// `>= min` (same open file, same close-on-exec flag; the old number is closed), so that
    /// the program's call returns the new number. See the module documentation for failures.
    ReplaceFd { min: u32 },
}

#[derive(Default)]
struct Task {
    /// Its auto-attach SIGSTOP has not been seen yet.
    fresh: bool,
    /// Resumed with PTRACE_SYSCALL for a `want_exit` call.
    want_exit: bool,
    /// Signals suppressed during a descriptor move and sent again: their original siginfo,
    /// restored at their next signal-delivery stop.
    requeued: Vec<libc::siginfo_t>,
}

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> i64 {
    // SAFETY: every caller passes a tracee's pid and, for requests that write through `data`,
    // a pointer to a live object of the type the request expects.
    unsafe { libc::ptrace(req, pid, addr, data) }
}

fn get_regs(pid: i32) -> Option<libc::user_regs_struct> {
    // SAFETY: an all-zero user_regs_struct is valid plain data.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    (ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs as *mut _ as usize) == 0).then_some(regs)
}

fn set_regs(pid: i32, regs: &libc::user_regs_struct) {
    ptrace(libc::PTRACE_SETREGS, pid, 0, regs as *const _ as usize);
}

fn event_msg(pid: i32) -> Option<u64> {
    let mut msg: libc::c_ulong = 0;
    (ptrace(
        libc::PTRACE_GETEVENTMSG,
        pid,
        0,
        &mut msg as *mut _ as usize,
    ) == 0)
        .then_some(msg)
}

fn is_group_stop(pid: i32) -> bool {
    // SAFETY: an all-zero siginfo_t is valid plain data.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si as *mut _ as usize) != 0
}

fn resume(pid: i32, task: &Task, sig: i32) {
    let req = if task.want_exit {
        libc::PTRACE_SYSCALL
    } else {
        libc::PTRACE_CONT
    };
    ptrace(req, pid, 0, sig as usize);
}

fn seccomp_stop(pid: i32, task: &mut Task, handler: &dyn Handler) {
    let Some(mut regs) = get_regs(pid) else {
        return; // gone
    };
    let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
    match handler.trace_entry(pid, regs.orig_rax as i64, args) {
        TraceAction::Run {
            args: new,
            want_exit,
        } => {
            if let Some(a) = new.filter(|a| *a != args) {
                [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9] = a;
                set_regs(pid, &regs);
            }
            task.want_exit = want_exit;
        }
        TraceAction::Fail(e) => {
            regs.orig_rax = u64::MAX; // -1: skip the call
            regs.rax = (-i64::from(e.abs())) as u64;
            set_regs(pid, &regs);
            task.want_exit = false;
        }
    }
    resume(pid, task, 0);
}

/// Bookkeeping for a task that has gone (`st`: its wait status): forget it; if it is the main
/// child, record the exit code and kill what it left behind.
fn gone(pid: i32, st: i32, main: i32, tasks: &mut HashMap<i32, Task>, code: &mut Option<i32>) {
    tasks.remove(&pid);
    if pid == main {
        *code = Some(if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            128 + libc::WTERMSIG(st)
        });
        for tid in tasks.keys() {
            // SAFETY: kill with a pid we trace; at worst ESRCH.
            unsafe { libc::kill(*tid, libc::SIGKILL) };
        }
    }
}

/// The outcome of one injected system call.
enum Injected {
    /// Its return value.
    Ret(i64),
    /// It could not be started (registers not writable, no `syscall` instruction).
    NotRun,
    /// The task died (its wait status).
    Gone(i32),
}

fn wait_for(pid: i32) -> Option<i32> {
    let mut st = 0;
    loop {
        // SAFETY: `st` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::__WALL) };
        if r == pid {
            return Some(st);
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// Runs system call `nr(args)` in `pid`, stopped at a syscall-exit stop with registers
/// `saved`, and leaves it at the injected call's exit stop. Signals that arrive meanwhile are
/// appended to `signals`.
fn inject(
    pid: i32,
    saved: &libc::user_regs_struct,
    nr: i64,
    args: [u64; 3],
    signals: &mut Vec<libc::siginfo_t>,
) -> Injected {
    let mut r = *saved;
    r.orig_rax = nr as u64;
    r.rax = nr as u64;
    [r.rdi, r.rsi, r.rdx] = args;
    r.rip = saved.rip.wrapping_sub(2);
    if ptrace(libc::PTRACE_SETREGS, pid, 0, &r as *const _ as usize) != 0
        || ptrace(libc::PTRACE_SYSCALL, pid, 0, 0) != 0
    {
        return Injected::NotRun;
    }
    let mut entered = false;
    loop {
        let Some(st) = wait_for(pid) else {
            return Injected::NotRun;
        };
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            return Injected::Gone(st);
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let sig = libc::WSTOPSIG(st);
        if sig == libc::SIGTRAP | 0x80 {
            if entered {
                return match get_regs(pid) {
                    Some(regs) => Injected::Ret(regs.rax as i64),
                    // Killed meanwhile: its exit is reported by the next wait.
                    None => wait_for(pid).map_or(Injected::NotRun, Injected::Gone),
                };
            }
            entered = true;
        } else if sig != libc::SIGTRAP || (st >> 16) & 0xff == 0 {
            // A signal-delivery stop (queued for later) or a group-stop (continued).
            // SAFETY: an all-zero siginfo_t is valid plain data.
            let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
            if ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si as *mut _ as usize) == 0 {
                signals.push(si);
            }
        }
        // Other ptrace events cannot come from fcntl or close; continue past them.
        ptrace(libc::PTRACE_SYSCALL, pid, 0, 0);
    }
}

/// The thread group of `tid` (for re-queueing a signal on it).
fn tgid_of(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Tgid:"))?;
    line[5..].trim().parse().ok()
}

/// Whether `tid`'s descriptor `fd` is close-on-exec (`flags:` in /proc/TID/fdinfo/FD, octal);
/// `true` if that cannot be read (KVM's descriptors are).
fn cloexec(tid: i32, fd: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("flags:"))?;
            u64::from_str_radix(l[6..].trim(), 8).ok()
        })
        .is_none_or(|f| f & libc::O_CLOEXEC as u64 != 0)
}

/// Moves descriptor `fd` of `pid` (stopped at the exit stop of the call that returned it, with
/// registers `saved`) to the lowest free number `>= min`; returns what the call now returns,
/// or `Err(wait status)` if the task died meanwhile. Signals suppressed meanwhile are sent
/// again and their siginfo appended to `requeued`.
fn replace_fd(
    pid: i32,
    saved: &libc::user_regs_struct,
    fd: i32,
    min: u32,
    requeued: &mut Vec<libc::siginfo_t>,
) -> Result<i64, i32> {
    // The 2-byte `syscall` (0f 05) that made the call: re-executed for each injected call.
    // SAFETY: clearing errno before PEEKTEXT, whose result may legitimately be -1.
    unsafe { *libc::__errno_location() = 0 };
    let word = ptrace(
        libc::PTRACE_PEEKTEXT,
        pid,
        saved.rip.wrapping_sub(2) as usize,
        0,
    );
    if io::Error::last_os_error().raw_os_error() != Some(0) || word & 0xffff != 0x050f {
        return Ok(i64::from(fd));
    }
    let cmd = if cloexec(pid, fd) {
        libc::F_DUPFD_CLOEXEC
    } else {
        libc::F_DUPFD
    };
    let mut signals = Vec::new();
    let dup = inject(
        pid,
        saved,
        libc::SYS_fcntl,
        [fd as u64, cmd as u64, u64::from(min)],
        &mut signals,
    );
    let ret = match dup {
        Injected::Gone(st) => return Err(st),
        Injected::NotRun => i64::from(fd),
        Injected::Ret(new) => {
            match inject(pid, saved, libc::SYS_close, [fd as u64, 0, 0], &mut signals) {
                Injected::Gone(st) => return Err(st),
                // The old number is gone (or, if close could not run, still open: a leak
                // the program never sees, rather than an fd below `min`).
                _ if new >= 0 => new,
                _ if new == -i64::from(libc::EINVAL) => -i64::from(libc::EMFILE),
                _ => new,
            }
        }
    };
    let mut done = *saved;
    done.rax = ret as u64;
    set_regs(pid, &done);
    let tgid = tgid_of(pid).unwrap_or(pid);
    for si in signals {
        // SAFETY: a plain system call with integer arguments.
        if unsafe { libc::syscall(libc::SYS_tgkill, tgid, pid, si.si_signo) } == 0 {
            requeued.push(si);
        }
    }
    Ok(ret)
}

/// Runs until every task of the program has gone; returns the main child's wait status
/// as an exit code (its exit status, or 128 + the signal that killed it).
pub(crate) fn trace(main: i32, handler: &dyn Handler) -> io::Result<i32> {
    let mut tasks: HashMap<i32, Task> = HashMap::new();
    tasks.insert(main, Task::default()); // its first SIGSTOP was taken by spawn
    let mut code: Option<i32> = None;
    loop {
        let mut st = 0;
        // SAFETY: `st` is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL | libc::__WNOTHREAD) };
        if pid < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
        if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
            gone(pid, st, main, &mut tasks, &mut code);
            continue;
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let task = tasks.entry(pid).or_insert(Task {
            fresh: true, // a new task reported before its parent's event
            ..Task::default()
        });
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        if sig == libc::SIGTRAP | 0x80 {
            // Syscall-exit stop of a `want_exit` call (TRACESYSGOOD marks it).
            if task.want_exit {
                task.want_exit = false;
                if let Some(regs) = get_regs(pid) {
                    let ret = regs.rax as i64;
                    let ret = match handler.trace_exit_action(pid, ret) {
                        TraceExit::ReplaceFd { min } if (0..i64::from(min)).contains(&ret) => {
                            match replace_fd(pid, &regs, ret as i32, min, &mut task.requeued) {
                                Ok(r) => r,
                                Err(st) => {
                                    handler.trace_exit(pid, -i64::from(libc::ESRCH));
                                    gone(pid, st, main, &mut tasks, &mut code);
                                    continue;
                                }
                            }
                        }
                        _ => ret,
                    };
                    handler.trace_exit(pid, ret);
                }
            }
            resume(pid, task, 0);
        } else if sig == libc::SIGTRAP && event != 0 {
            match event {
                libc::PTRACE_EVENT_SECCOMP => seccomp_stop(pid, task, handler),
                libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                    let new = event_msg(pid);
                    resume(pid, task, 0);
                    if let Some(new) = new {
                        tasks.entry(new as i32).or_insert(Task {
                            fresh: true,
                            ..Task::default()
                        });
                    }
                }
                libc::PTRACE_EVENT_EXEC => {
                    // A non-leader thread that execs takes over the leader's TID; its old TID
                    // is never reported again.
                    let former = event_msg(pid);
                    resume(pid, task, 0);
                    if let Some(f) = former.map(|f| f as i32).filter(|f| *f != pid) {
                        tasks.remove(&f);
                    }
                }
                _ => resume(pid, task, 0),
            }
        } else if sig == libc::SIGSTOP && task.fresh {
            task.fresh = false;
            resume(pid, task, 0);
        } else if is_group_stop(pid) {
            resume(pid, task, 0);
        } else {
            if let Some(i) = task.requeued.iter().position(|si| si.si_signo == sig) {
                let si = task.requeued.remove(i);
                ptrace(libc::PTRACE_SETSIGINFO, pid, 0, &si as *const _ as usize);
            }
            resume(pid, task, sig);
        }
    }
    code.ok_or_else(|| io::Error::other("the program's exit was never reported"))
}
