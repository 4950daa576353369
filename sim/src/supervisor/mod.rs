//! The supervisor: seccomp user notification and ptrace below an unmodified program.
//!
//! This is the generic mechanism; it knows nothing of KVM except the request numbers in its
//! [`Spec`]. An integrator implements [`Handler`] and calls [`run`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use memenc_sim::supervisor::{self, Handler, Notification, Reply, Spec, Target, TraceAction};
//! struct H;
//! impl Handler for H {
//!     fn notify(&self, _n: &Notification, _t: &Target) -> Reply { Reply::Continue }
//!     fn trace_entry(&self, _tid: i32, _nr: i64, _args: [u64; 6]) -> TraceAction {
//!         TraceAction::Run { args: None, want_exit: false }
//!     }
//! }
//! let spec = Spec { notify_open: true, notify_ioctls: vec![0xae03], ..Spec::default() };
//! let code = supervisor::run("qemu-system-x86_64".as_ref(), &[], &spec, Arc::new(H))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Threads: `run` starts a tracer thread (it forks the program, so it must make every ptrace
//! call) which starts `spec.notify_workers` notification threads. [`Handler::notify`] runs on
//! those, the trace hooks on the tracer; hence `Send + Sync`.
pub mod filter;
pub mod notify;
pub mod spawn;
pub mod target;
pub mod tracer;

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use filter::Spec;
pub use notify::{Notification, Reply};
pub use target::Target;
pub use tracer::{TraceAction, TraceExit};

/// The simulation plugged into the mechanism.
pub trait Handler: Send + Sync {
    /// A notified call (an `open*` or a `notify_ioctls` request). `t` reads and writes the
    /// calling thread. Runs on a notification thread; the caller waits until it returns.
    fn notify(&self, n: &Notification, t: &Target<'_>) -> Reply;
    /// A `trace_ioctls` call stopped in the tracer, before it runs. `nr` is the system call
    /// number, `args` the argument registers.
    fn trace_entry(&self, tid: i32, nr: i64, args: [u64; 6]) -> TraceAction;
    /// The result of a call for which `trace_entry` asked `want_exit` (`-errno` on failure;
    /// `-ERESTARTSYS` and friends (512..=516) if a signal interrupted it, and it will then be
    /// issued again, through `trace_entry` again).
    fn trace_exit(&self, _tid: i32, _ret: i64) {}
    /// Called at the exit stop of a `want_exit` call before [`Handler::trace_exit`], with the
    /// same result: may ask for a returned descriptor to be moved to a high number
    /// ([`TraceExit::ReplaceFd`]); `trace_exit` then sees the result the program will see
    /// (the new number, `-EMFILE` if no number `>= min` was free, or `-ESRCH` if the task died
    /// meanwhile). Default: [`TraceExit::Keep`].
    fn trace_exit_action(&self, _tid: i32, _ret: i64) -> TraceExit {
        TraceExit::Keep
    }
    /// Once, after the program and all its tasks have gone and no handler call is running.
    fn exit(&self) {}
}

/// The descriptor base for [`Spec::notify_ioctls_fd_at_least`] in a program started now:
/// [`fd_base_for_limit`] of this process's RLIMIT_NOFILE soft limit, which the program
/// inherits (it may raise it later; that only adds room above the base).
pub fn fd_base() -> u32 {
    // SAFETY: an all-zero rlimit is valid plain data; getrlimit fills it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    fd_base_for_limit(lim.rlim_cur)
}

/// The base rule: half the soft descriptor limit, at most 4096, or 0 (gate everything: slower,
/// still correct) if that would be below 256.
///
/// Why half: descriptors below the base are the program's own (it allocates lowest-first, so
/// it reaches the base only after `base` descriptors, and then its calls are merely
/// notified: slower, never wrong); the other half is room for moved descriptors (with the
/// default soft limit of 1024: 512 of each; `soft - 64` would cap a VMM at 64 moved ones).
/// Why at most 4096: the kernel grows a process's descriptor table to the highest number in
/// use, so a base near a soft limit of 1 Mi would cost the program an 8 MiB table.
pub fn fd_base_for_limit(soft: u64) -> u32 {
    let half = (soft / 2).min(4096) as u32;
    if half < 256 { 0 } else { half }
}

/// Runs `program args...` under the filter built from `spec`, serving it with `handler`, and
/// returns its exit code (its exit status, or 128 + the signal that killed it). `Err` only if
/// the mechanism itself fails (bad spec, exec failure, seccomp refused).
/// [`Handler::exit`] is called before returning, in every case.
pub fn run(
    program: &OsStr,
    args: &[OsString],
    spec: &Spec,
    handler: Arc<dyn Handler>,
) -> io::Result<i32> {
    let result = run_inner(program, args, spec, handler.clone());
    handler.exit();
    result
}

fn run_inner(
    program: &OsStr,
    args: &[OsString],
    spec: &Spec,
    handler: Arc<dyn Handler>,
) -> io::Result<i32> {
    let filter = filter::build(spec)?;
    let words = notify::notif_words()?;
    let program = program.to_owned();
    let args = args.to_vec();
    let workers = spec.notify_workers.max(1);
    let tracer = std::thread::Builder::new()
        .name("memenc-sim-tracer".into())
        .spawn(move || -> io::Result<i32> {
            let child = spawn::spawn(&program, &args, &filter)?;
            let listener = Arc::new(child.listener);
            notify::set_sync_wake_up(listener.as_fd());
            let stop = Arc::new(AtomicBool::new(false));
            let mut pool = Vec::new();
            for i in 0..workers {
                let (l, h, s) = (listener.clone(), handler.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("memenc-sim-notify-{i}"))
                    .spawn(move || notify::serve(&l, &*h, &s, words));
                match spawned {
                    Ok(j) => pool.push(j),
                    // Without a worker the program's notified calls would hang: kill it (EXITKILL
                    // would not, as this thread lives on to reap it).
                    Err(e) => {
                        // SAFETY: kill of our own child.
                        unsafe { libc::kill(child.pid, libc::SIGKILL) };
                        let _ = tracer::trace(child.pid, &*handler);
                        stop.store(true, Ordering::Release);
                        return Err(e);
                    }
                }
            }
            let traced = tracer::trace(child.pid, &*handler);
            // Every task has been reaped: nobody can make another notified call.
            stop.store(true, Ordering::Release);
            let mut served = Ok(());
            for j in pool {
                match j.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => served = Err(e),
                    Err(_) => served = Err(io::Error::other("notification thread panicked")),
                }
            }
            let code = traced?;
            if code == 127 {
                if let Some(e) = spawn::exec_error(&child.sock) {
                    return Err(e);
                }
            }
            served.map(|()| code)
        })?;
    tracer
        .join()
        .map_err(|_| io::Error::other("tracer thread panicked"))?
}
