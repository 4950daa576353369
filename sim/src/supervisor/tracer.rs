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
//! * the syscall-exit stop asked for by `want_exit`: [`Handler::trace_exit`];
//! * signal-delivery stops: the signal is re-injected;
//! * group-stops (`PTRACE_GETSIGINFO` fails): continued, so job-control stops do not stop the
//!   program under the supervisor.
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

#[derive(Default)]
struct Task {
    /// Its auto-attach SIGSTOP has not been seen yet.
    fresh: bool,
    /// Resumed with PTRACE_SYSCALL for a `want_exit` call.
    want_exit: bool,
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
            tasks.remove(&pid);
            if pid == main {
                code = Some(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                });
                for tid in tasks.keys() {
                    // SAFETY: kill with a pid we trace; at worst ESRCH.
                    unsafe { libc::kill(*tid, libc::SIGKILL) };
                }
            }
            continue;
        }
        if !libc::WIFSTOPPED(st) {
            continue;
        }
        let task = tasks.entry(pid).or_insert(Task {
            fresh: true, // a new task reported before its parent's event
            want_exit: false,
        });
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        if sig == libc::SIGTRAP | 0x80 {
            // Syscall-exit stop of a `want_exit` call (TRACESYSGOOD marks it).
            if task.want_exit {
                task.want_exit = false;
                if let Some(regs) = get_regs(pid) {
                    handler.trace_exit(pid, regs.rax as i64);
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
                            want_exit: false,
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
            resume(pid, task, sig);
        }
    }
    code.ok_or_else(|| io::Error::other("the program's exit was never reported"))
}
