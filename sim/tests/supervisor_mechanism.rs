//! The supervisor mechanism (sim/src/supervisor) against small C programs: no KVM needed.
//!
//! The C program (compiled here with `cc`, dynamic and `-static`) checks what it sees and
//! exits 0 only if every check passed; the tests also check what the handler saw.
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use memenc_sim::supervisor::{self, Handler, Notification, Reply, Spec, Target, TraceAction};

const REQ_VALUE: u32 = 0xC008_4D01;
const REQ_WRITE: u32 = 0xC008_4D02;
const REQ_HOLD: u32 = 0xC008_4D03;
const REQ_IDENT: u32 = 0x4D04;
const REQ_DUP: u32 = 0x4D05;
const FIONREAD: u32 = 0x541B;
const FIOCLEX: u32 = 0x5451;

const PROG_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ_VALUE 0xC0084D01u
#define REQ_WRITE 0xC0084D02u
#define REQ_HOLD 0xC0084D03u
#define REQ_IDENT 0x4D04u
#define REQ_DUP 0x4D05u
#define REQ_UNMATCHED 0x4D99u

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "prog: FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); fails++; } } while (0)

static long value(long a) { return syscall(SYS_ioctl, -1, (unsigned long)REQ_VALUE, a); }
static int calls(int base, int n) {
    int bad = 0;
    for (int k = 0; k < n; k++) {
        long a = base + k;
        if (value(a) != 2 * a + 1) bad++;
        uint64_t v = (uint64_t)a;
        if (ioctl(-1, REQ_WRITE, &v) != 0 || v != 3 * (uint64_t)a + 7) bad++;
    }
    return bad;
}

static void *thread_main(void *p) { return (void *)(intptr_t)calls((int)(intptr_t)p * 100000, 500); }

static void *exiter(void *p) { (void)p; exit(calls(1, 10) == 0 ? 5 : 1); }

static void basic(void) {
    CHECK(value(20) == 41, "value");
    CHECK(syscall(SYS_ioctl, -1, (1ul << 32) | REQ_VALUE, 5l) == 11, "high bits of the request are ignored");
    CHECK(calls(7, 3) == 0, "write-back");
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    errno = 0;
    CHECK(ioctl(p[0], REQ_UNMATCHED, 0) == -1 && errno == ENOTTY, "unmatched ioctl: real ENOTTY (errno %d)", errno);
    int fd = open("/fake/dev", O_RDWR);
    CHECK(fd >= 0, "open /fake/dev");
    char b[8] = {0};
    CHECK(pread(fd, b, 5, 0) == 5 && memcmp(b, "hello", 5) == 0, "injected memfd content");
    CHECK(fcntl(fd, F_GETFD) == 0, "no CLOEXEC");
    int fc = open("/fake/dev", O_RDWR | O_CLOEXEC);
    CHECK(fc >= 0 && fcntl(fc, F_GETFD) == FD_CLOEXEC, "CLOEXEC honoured");
    int fl = syscall(SYS_open, "/fake/dev", O_RDONLY);
    CHECK(fl >= 0 && fl != fd, "legacy open(2)");
    /* the handler keeps a duplicate of the last memfd it injected (fl's) */
    CHECK(ioctl(fl, REQ_IDENT) == 3, "ident of the last injected fd: %d", ioctl(fl, REQ_IDENT));
    CHECK(ioctl(fd, REQ_IDENT) == 2, "ident of an earlier injected fd: %d", ioctl(fd, REQ_IDENT));
    CHECK(ioctl(p[0], REQ_IDENT) == 0, "ident of pipe");
    CHECK(ioctl(p[1], REQ_DUP) == 0, "dup");
    memset(b, 0, sizeof b);
    CHECK(read(p[0], b, 3) == 3 && memcmp(b, "dup", 3) == 0, "write through the supervisor's duplicate");
    /* traced FIONREAD: the tracer moves the pointer 8 bytes on */
    int n[4] = {-1, -1, -1, -1};
    CHECK(write(p[1], "12345", 5) == 5, "write");
    CHECK(ioctl(p[0], FIONREAD, &n[0]) == 0, "FIONREAD");
    CHECK(n[0] == -1 && n[2] == 5, "rewritten third argument: n[0]=%d n[2]=%d", n[0], n[2]);
    /* traced FIOCLEX: failed by the tracer without running */
    errno = 0;
    CHECK(ioctl(p[0], FIOCLEX) == -1 && errno == EXDEV, "Fail(EXDEV): errno %d", errno);
    CHECK(fcntl(p[0], F_GETFD) == 0, "FIOCLEX did not run");
    /* i386 ABI: refused by the filter */
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    CHECK(r == -ENOSYS, "int 0x80 getpid: %ld", r);
    /* a real open still works (CONTINUE) */
    int dn = open("/dev/null", O_RDONLY);
    CHECK(dn >= 0, "real open");
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int s) { (void)s; alarmed++; }

static void hold(int restart) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, 0);
    struct itimerval it = {{0, 0}, {0, 50000}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    setitimer(ITIMER_REAL, &it, 0);
    uint64_t v = 0;
    errno = 0;
    int r = ioctl(-1, REQ_HOLD, &v);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK(r == 0, "held call: r=%d errno=%d", r, errno);
    CHECK(v == 0xfeedface, "write-back after the signal: %llx", (unsigned long long)v);
    CHECK(alarmed == 1, "signal handler ran once: %d", (int)alarmed);
    CHECK(ms >= 150 && ms < 390, "held ~200 ms, once: %ld ms", ms);
}

int main(int argc, char **argv) {
    setvbuf(stderr, 0, _IONBF, 0);
    const char *m = argc > 1 ? argv[1] : "basic";
    if (!strcmp(m, "basic")) basic();
    else if (!strcmp(m, "threads")) {
        pthread_t t[8];
        for (intptr_t i = 0; i < 8; i++) pthread_create(&t[i], 0, thread_main, (void *)i);
        for (int i = 0; i < 8; i++) {
            void *bad;
            pthread_join(t[i], &bad);
            CHECK(bad == 0, "thread %d: %ld bad replies", i, (long)(intptr_t)bad);
        }
    } else if (!strcmp(m, "fork")) {
        pid_t c[4];
        for (int i = 0; i < 4; i++) {
            c[i] = fork();
            if (c[i] == 0) _exit(calls(1000 * (i + 1), 100) == 0 && value(getpid()) == 2L * getpid() + 1 ? 0 : 1);
        }
        CHECK(calls(0, 100) == 0, "parent calls");
        for (int i = 0; i < 4; i++) {
            int st = -1;
            waitpid(c[i], &st, 0);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", i, st);
        }
    } else if (!strcmp(m, "exit3")) exit(3);
    else if (!strcmp(m, "term")) { raise(SIGTERM); return 1; }
    else if (!strcmp(m, "threadexit")) {
        pthread_t t;
        pthread_create(&t, 0, exiter, 0);
        for (;;) pause();
    } else if (!strcmp(m, "bench")) {
        int p[2], n;
        if (pipe(p)) return 1;
        struct timespec t0, t1;
        const char *names[4] = {"value (answered from registers)", "write (8 B read + 8 B write)", "unmatched ioctl", "traced FIONREAD (exit stop too)"};
        for (int op = 0; op < 4; op++) {
            int rounds = op == 2 ? 200000 : 20000;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int k = 0; k < rounds; k++) {
                uint64_t v = k;
                if (op == 0) value(k);
                else if (op == 1) ioctl(-1, REQ_WRITE, &v);
                else if (op == 2) ioctl(p[0], REQ_UNMATCHED, 0);
                else ioctl(p[0], FIONREAD, &n);
            }
            clock_gettime(CLOCK_MONOTONIC, &t1);
            double ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / rounds;
            fprintf(stderr, "bench: %-34s %8.0f ns/call\n", names[op], ns);
        }
    } else if (!strcmp(m, "vfork")) {
        pid_t c = vfork();
        if (c == 0) {
            execl("/proc/self/exe", "prog", "exit3", (char *)0);
            _exit(99);
        }
        int st = -1;
        waitpid(c, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "vfork child: status %#x", st);
        CHECK(value(1) == 3, "value after vfork");
    } else if (!strcmp(m, "hold-restart")) hold(1);
    else if (!strcmp(m, "hold-norestart")) hold(0);
    else if (!strcmp(m, "exec") && argc > 2) {
        execl(argv[2], argv[2], "basic", (char *)0);
        return 99;
    } else { fprintf(stderr, "prog: unknown mode %s\n", m); return 2; }
    if (fails) fprintf(stderr, "prog %s: %d failures\n", m, fails);
    return fails ? 1 : 0;
}
"#;

struct Progs {
    dynamic: PathBuf,
    stat: Option<PathBuf>,
}

/// Compiles the program once; `None` (with a visible message) if there is no `cc`.
fn progs() -> Option<&'static Progs> {
    static P: OnceLock<Option<Progs>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("supervisor_mechanism");
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let src = dir.join("prog.c");
        std::fs::write(&src, PROG_C).expect("write prog.c");
        let cc = |out: &PathBuf, extra: &[&str]| {
            std::process::Command::new("cc")
                .args(["-O1", "-pthread", "-Wall", "-o"])
                .arg(out)
                .arg(&src)
                .args(extra)
                .status()
        };
        let dynamic = dir.join("prog");
        match cc(&dynamic, &[]) {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("cc failed: {s}"),
            Err(e) => {
                eprintln!("SKIPPED: no C compiler (`cc`: {e})");
                return None;
            }
        }
        let st = dir.join("prog-static");
        let stat = match cc(&st, &["-static"]) {
            Ok(s) if s.success() => Some(st),
            _ => {
                eprintln!("SKIPPED static cases: `cc -static` does not work here");
                None
            }
        };
        Some(Progs { dynamic, stat })
    })
    .as_ref()
}

#[derive(Default)]
struct TestHandler {
    values: AtomicU32,
    writes: AtomicU32,
    holds: AtomicU32,
    opens_injected: AtomicU32,
    trace_entries: AtomicU32,
    trace_exits: Mutex<Vec<i64>>,
    /// A duplicate of the last injected memfd, to recognise it with `same_file`.
    injected: Mutex<Option<OwnedFd>>,
    exited: AtomicBool,
}

fn memfd_hello() -> OwnedFd {
    // SAFETY: a valid NUL-terminated name; memfd_create returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"sim-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: fd is new and ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let f = std::fs::File::from(fd);
    std::os::unix::fs::FileExt::write_all_at(&f, b"hello", 0).expect("write memfd");
    OwnedFd::from(f)
}

impl TestHandler {
    fn open(&self, n: &Notification, t: &Target<'_>) -> Reply {
        let (path, flags) = match n.nr {
            libc::SYS_open => (n.args[0], n.args[1]),
            libc::SYS_openat => (n.args[1], n.args[2]),
            _ => {
                // openat2: flags are the first u64 of struct open_how.
                let mut how = [0u8; 8];
                if t.read(n.args[2], &mut how).is_err() {
                    return Reply::Continue;
                }
                (n.args[1], u64::from_ne_bytes(how))
            }
        };
        match t.read_path(path) {
            Ok(p) if p.as_os_str() == "/fake/dev" => {
                let fd = memfd_hello();
                *self.injected.lock().expect("lock") = Some(fd.try_clone().expect("dup"));
                self.opens_injected.fetch_add(1, Ordering::Relaxed);
                Reply::AddFd {
                    fd,
                    cloexec: flags & libc::O_CLOEXEC as u64 != 0,
                }
            }
            _ => Reply::Continue,
        }
    }
}

impl Handler for TestHandler {
    fn notify(&self, n: &Notification, t: &Target<'_>) -> Reply {
        if n.nr != libc::SYS_ioctl {
            return self.open(n, t);
        }
        let fd = n.args[0] as i32;
        match n.args[1] as u32 {
            REQ_VALUE => {
                self.values.fetch_add(1, Ordering::Relaxed);
                Reply::Value(n.args[2] as i64 * 2 + 1)
            }
            REQ_WRITE => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                let mut b = [0u8; 8];
                match t.read(n.args[2], &mut b) {
                    Ok(()) => {
                        let v = u64::from_ne_bytes(b) * 3 + 7;
                        match t.write(n.args[2], &v.to_ne_bytes()) {
                            Ok(()) => Reply::Value(0),
                            Err(e) => Reply::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                        }
                    }
                    Err(e) => Reply::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
                }
            }
            REQ_HOLD => {
                self.holds.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                match t.write(n.args[2], &0xfeed_faceu64.to_ne_bytes()) {
                    Ok(()) => Reply::Value(0),
                    Err(_) => Reply::Errno(libc::EIO),
                }
            }
            REQ_IDENT => {
                let same = self
                    .injected
                    .lock()
                    .expect("lock")
                    .as_ref()
                    .is_some_and(|ours| t.same_file(fd, ours.as_fd()).unwrap_or(false));
                let named = t
                    .fd_path(fd)
                    .is_ok_and(|p| p.to_string_lossy().starts_with("/memfd:sim-test"));
                Reply::Value(i64::from(same) + 2 * i64::from(named))
            }
            REQ_DUP => match t.dup_fd(fd) {
                Ok(d) => {
                    let mut f = std::fs::File::from(d);
                    match std::io::Write::write_all(&mut f, b"dup") {
                        Ok(()) => Reply::Value(0),
                        Err(_) => Reply::Errno(libc::EIO),
                    }
                }
                Err(e) => Reply::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
            },
            _ => Reply::Continue,
        }
    }

    fn trace_entry(&self, _tid: i32, nr: i64, mut args: [u64; 6]) -> TraceAction {
        self.trace_entries.fetch_add(1, Ordering::Relaxed);
        if nr != libc::SYS_ioctl {
            return TraceAction::Run {
                args: None,
                want_exit: false,
            };
        }
        match args[1] as u32 {
            FIONREAD => {
                args[2] += 8;
                TraceAction::Run {
                    args: Some(args),
                    want_exit: true,
                }
            }
            FIOCLEX => TraceAction::Fail(libc::EXDEV),
            _ => TraceAction::Run {
                args: None,
                want_exit: false,
            },
        }
    }

    fn trace_exit(&self, _tid: i32, ret: i64) {
        self.trace_exits.lock().expect("lock").push(ret);
    }

    fn exit(&self) {
        self.exited.store(true, Ordering::SeqCst);
    }
}

fn spec() -> Spec {
    Spec {
        notify_open: true,
        notify_ioctls: vec![REQ_VALUE, REQ_WRITE, REQ_HOLD, REQ_IDENT, REQ_DUP],
        trace_ioctls: vec![FIONREAD, FIOCLEX],
        notify_workers: 1,
        ..Spec::default()
    }
}

fn run_prog(prog: &Path, args: &[&str]) -> (std::io::Result<i32>, Arc<TestHandler>) {
    let h = Arc::new(TestHandler::default());
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let r = supervisor::run(prog.as_os_str(), &args, &spec(), h.clone());
    assert!(
        h.exited.load(Ordering::SeqCst),
        "Handler::exit was not called"
    );
    (r, h)
}

fn check_basic(r: std::io::Result<i32>, h: &TestHandler) {
    assert_eq!(
        r.expect("run"),
        0,
        "the program's own checks failed (see its stderr)"
    );
    assert_eq!(
        *h.trace_exits.lock().expect("lock"),
        vec![0],
        "one FIONREAD exit, result 0"
    );
    assert_eq!(
        h.trace_entries.load(Ordering::Relaxed),
        2,
        "FIONREAD and FIOCLEX traced"
    );
    assert_eq!(h.opens_injected.load(Ordering::Relaxed), 3);
    assert_eq!(h.values.load(Ordering::Relaxed), 5);
    assert_eq!(h.writes.load(Ordering::Relaxed), 3);
}

#[test]
fn basic_dynamic() {
    let Some(p) = progs() else { return };
    let (r, h) = run_prog(&p.dynamic, &["basic"]);
    check_basic(r, &h);
}

#[test]
fn basic_static() {
    let Some(p) = progs() else { return };
    let Some(s) = &p.stat else { return };
    let (r, h) = run_prog(s, &["basic"]);
    check_basic(r, &h);
}

#[test]
fn exec_of_a_static_binary() {
    let Some(p) = progs() else { return };
    let Some(s) = &p.stat else { return };
    let (r, h) = run_prog(&p.dynamic, &["exec", s.to_str().expect("utf-8 path")]);
    // The exec'd static program ran its basic checks, still under the filter and the tracer.
    check_basic(r, &h);
}

#[test]
fn eight_threads() {
    let Some(p) = progs() else { return };
    for prog in [Some(&p.dynamic), p.stat.as_ref()].into_iter().flatten() {
        let (r, h) = run_prog(prog, &["threads"]);
        assert_eq!(r.expect("run"), 0, "{}: bad replies", prog.display());
        assert_eq!(h.values.load(Ordering::Relaxed), 8 * 500);
        assert_eq!(h.writes.load(Ordering::Relaxed), 8 * 500);
    }
}

#[test]
fn forked_children() {
    let Some(p) = progs() else { return };
    let (r, h) = run_prog(&p.dynamic, &["fork"]);
    assert_eq!(r.expect("run"), 0);
    assert_eq!(h.values.load(Ordering::Relaxed), 5 * 100 + 4);
    assert_eq!(h.writes.load(Ordering::Relaxed), 5 * 100);
}

#[test]
fn vfork_and_exec() {
    let Some(p) = progs() else { return };
    let (r, h) = run_prog(&p.dynamic, &["vfork"]);
    assert_eq!(r.expect("run"), 0);
    assert_eq!(h.values.load(Ordering::Relaxed), 1);
}

#[test]
fn exit_status_passed_through() {
    let Some(p) = progs() else { return };
    for prog in [Some(&p.dynamic), p.stat.as_ref()].into_iter().flatten() {
        assert_eq!(run_prog(prog, &["exit3"]).0.expect("run"), 3);
        assert_eq!(
            run_prog(prog, &["term"]).0.expect("run"),
            128 + libc::SIGTERM
        );
        // exit() from a non-main thread while the main thread sleeps in pause().
        let (r, h) = run_prog(prog, &["threadexit"]);
        assert_eq!(r.expect("run"), 5);
        assert_eq!(h.values.load(Ordering::Relaxed), 10);
    }
    assert_eq!(
        run_prog(Path::new("/bin/sh"), &["-c", "exit 7"])
            .0
            .expect("run"),
        7
    );
    assert_eq!(
        run_prog(Path::new("sh"), &["-c", "kill -KILL $$"])
            .0
            .expect("run"),
        128 + 9
    );
}

#[test]
fn exec_failure_is_an_error() {
    let h = Arc::new(TestHandler::default());
    let r = supervisor::run(OsStr::new("/nonexistent/prog"), &[], &spec(), h.clone());
    assert_eq!(
        r.expect_err("exec must fail").raw_os_error(),
        Some(libc::ENOENT)
    );
    assert!(h.exited.load(Ordering::SeqCst));
}

#[test]
fn signal_during_a_held_call() {
    let Some(p) = progs() else { return };
    for mode in ["hold-restart", "hold-norestart"] {
        let (r, h) = run_prog(&p.dynamic, &[mode]);
        assert_eq!(
            r.expect("run"),
            0,
            "{mode}: the program saw EINTR, a lost write-back or a re-run"
        );
        assert_eq!(
            h.holds.load(Ordering::SeqCst),
            1,
            "{mode}: the handler ran more than once"
        );
    }
}

#[test]
fn two_workers() {
    let Some(p) = progs() else { return };
    let h = Arc::new(TestHandler::default());
    let spec = Spec {
        notify_workers: 2,
        ..spec()
    };
    let r = supervisor::run(
        p.dynamic.as_os_str(),
        &[OsString::from("threads")],
        &spec,
        h.clone(),
    );
    assert_eq!(r.expect("run"), 0);
    assert_eq!(h.values.load(Ordering::Relaxed), 8 * 500);
    assert_eq!(h.writes.load(Ordering::Relaxed), 8 * 500);
}

#[test]
fn job_control_stop_is_continued() {
    // SIGSTOP to itself: a signal-delivery stop (re-injected), then a group-stop (continued).
    let (r, _) = run_prog(Path::new("/bin/sh"), &["-c", "kill -STOP $$; exit 4"]);
    assert_eq!(r.expect("run"), 4);
}

#[test]
fn leftover_children_are_killed() {
    let t0 = std::time::Instant::now();
    let (r, _) = run_prog(Path::new("/bin/sh"), &["-c", "sleep 100 & exit 6"]);
    assert_eq!(r.expect("run"), 6);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "waited for the background child"
    );
}

// ---- TraceExit::ReplaceFd and Spec::notify_ioctls_fd_at_least ---------------------------

/// `NS_GET_USERNS` (`_IO(0xb7, 1)`): an ioctl that returns a new descriptor (the owning user
/// namespace of a namespace file) without privileges or KVM; traced, and its result moved.
const NS_GET_USERNS: u32 = 0xb701;
/// Notified only on descriptors >= `MOVE_MIN`; answered with the descriptor number.
const REQ_GATED: u32 = 0x4D06;
const MOVE_MIN: u32 = 200;

const MOVE_C: &str = r#"#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define NS_GET_USERNS 0xb701u
#define REQ_GATED 0x4D06u
static int min, fails;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "move: FAIL line %d: ", __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); __atomic_add_fetch(&fails, 1, __ATOMIC_RELAXED); } } while (0)

static int open_fds(void) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d && readdir(d)) n++;
    if (d) closedir(d);
    return n;
}

static void *moves(void *arg) {
    int rounds = (int)(long)arg;
    int ns = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    CHECK(ns >= 0 && ns < min, "ns fd %d", ns);
    for (int k = 0; k < rounds; k++) {
        int fd;
        do fd = ioctl(ns, NS_GET_USERNS); while (fd < 0 && errno == EINTR);
        CHECK(fd >= min, "moved fd %d >= %d (errno %d)", fd, min, errno);
        if (fd < 0) continue;
        CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "close-on-exec kept");
        char link[64], path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        CHECK(!strncmp(link, "user:[", 6), "fd %d is %s", fd, link);
        /* the gate: notified at or above min, not below, not for a negative fd */
        CHECK(ioctl(fd, REQ_GATED) == fd, "gated request on %d notified", fd);
        long hi = syscall(SYS_ioctl, (1ul << 32) | (unsigned)ns, (unsigned long)REQ_GATED, 0);
        CHECK(hi == -1 && errno == ENOTTY, "gated request on low fd %d (high word set) not notified: %ld errno %d", ns, hi, errno);
        CHECK(ioctl(-1, REQ_GATED) == -1 && errno == EBADF, "gated request on -1 not notified: errno %d", errno);
        close(fd);
    }
    close(ns);
    return NULL;
}

static volatile sig_atomic_t alarms, foreign;
/* ITIMER_REAL sends SIGALRM with SI_KERNEL: a signal re-sent after a descriptor move must
 * arrive with its original siginfo. */
static void on_alarm(int s, siginfo_t *si, void *uc) { (void)s; (void)uc; alarms++; if (si->si_code != SI_KERNEL) foreign++; }

int main(int argc, char **argv) {
    setvbuf(stderr, 0, _IONBF, 0);
    if (argc < 3) return 2;
    const char *m = argv[1];
    min = atoi(argv[2]);
    int before = open_fds();
    if (!strcmp(m, "basic")) moves((void *)50l);
    else if (!strcmp(m, "threads")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, moves, (void *)200l);
        for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    } else if (!strcmp(m, "signals")) {
        struct sigaction sa = {0};
        sa.sa_sigaction = on_alarm;
        sa.sa_flags = SA_RESTART | SA_SIGINFO;
        sigaction(SIGALRM, &sa, 0);
        struct itimerval it = {{0, 50}, {0, 50}};
        setitimer(ITIMER_REAL, &it, 0);
        moves((void *)300l);
        struct itimerval off = {{0, 0}, {0, 0}};
        setitimer(ITIMER_REAL, &off, 0);
        CHECK(alarms > 0, "signals arrived");
        CHECK(foreign == 0, "%d of %d signals lost their siginfo", (int)foreign, (int)alarms);
        fprintf(stderr, "move: %d signals\n", (int)alarms);
    } else if (!strcmp(m, "nolimit")) {
        int ns = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
        struct rlimit was, low;
        getrlimit(RLIMIT_NOFILE, &was);
        low = was;
        low.rlim_cur = (rlim_t)min;
        setrlimit(RLIMIT_NOFILE, &low);
        int n0 = open_fds();
        errno = 0;
        int fd = ioctl(ns, NS_GET_USERNS);
        CHECK(fd == -1 && errno == EMFILE, "no room at or above %d: %d errno %d", min, fd, errno);
        CHECK(open_fds() == n0, "nothing left behind: %d -> %d", n0, open_fds());
        setrlimit(RLIMIT_NOFILE, &was);
        fd = ioctl(ns, NS_GET_USERNS);
        CHECK(fd >= min, "room again: %d", fd);
        close(fd);
        close(ns);
    } else return 2;
    CHECK(open_fds() == before, "no descriptor leaked: %d -> %d", before, open_fds());
    return fails ? 1 : 0;
}
"#;

fn move_prog() -> Option<&'static PathBuf> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("supervisor_mechanism");
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let src = dir.join("move.c");
        std::fs::write(&src, MOVE_C).expect("write move.c");
        let out = dir.join("move");
        match std::process::Command::new("cc")
            .args(["-O1", "-pthread", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
        {
            Ok(s) if s.success() => Some(out),
            Ok(s) => panic!("cc failed: {s}"),
            Err(e) => {
                eprintln!("SKIPPED: no C compiler (`cc`: {e})");
                None
            }
        }
    })
    .as_ref()
}

#[derive(Default)]
struct MoveHandler {
    gated: AtomicU32,
    exits: Mutex<Vec<i64>>,
}

impl Handler for MoveHandler {
    fn notify(&self, n: &Notification, _t: &Target<'_>) -> Reply {
        if n.nr == libc::SYS_ioctl && n.args[1] as u32 == REQ_GATED {
            self.gated.fetch_add(1, Ordering::Relaxed);
            return Reply::Value(i64::from(n.args[0] as i32));
        }
        Reply::Continue
    }

    fn trace_entry(&self, _tid: i32, _nr: i64, _args: [u64; 6]) -> TraceAction {
        TraceAction::Run {
            args: None,
            want_exit: true,
        }
    }

    fn trace_exit_action(&self, _tid: i32, _ret: i64) -> supervisor::TraceExit {
        supervisor::TraceExit::ReplaceFd { min: MOVE_MIN }
    }

    fn trace_exit(&self, _tid: i32, ret: i64) {
        self.exits.lock().expect("lock").push(ret);
    }
}

fn run_move(mode: &str) -> Arc<MoveHandler> {
    let p = move_prog().expect("compiled");
    let h = Arc::new(MoveHandler::default());
    let spec = Spec {
        trace_ioctls: vec![NS_GET_USERNS],
        notify_ioctls_fd_at_least: (MOVE_MIN, vec![REQ_GATED]),
        ..Spec::default()
    };
    let args = [OsString::from(mode), OsString::from(MOVE_MIN.to_string())];
    let r = supervisor::run(p.as_os_str(), &args, &spec, h.clone());
    assert_eq!(
        r.expect("run"),
        0,
        "{mode}: the program's checks (its stderr)"
    );
    h
}

#[test]
fn replace_fd_moves_a_returned_descriptor_and_the_gate_sees_only_high_ones() {
    if move_prog().is_none() {
        return;
    }
    let h = run_move("basic");
    let exits = h.exits.lock().expect("lock").clone();
    assert_eq!(exits.len(), 50);
    assert!(
        exits.iter().all(|&fd| fd >= i64::from(MOVE_MIN)),
        "{exits:?}"
    );
    // Only the calls on moved (high) descriptors were notified.
    assert_eq!(h.gated.load(Ordering::Relaxed), 50);
}

#[test]
fn replace_fd_in_threads_and_under_a_signal_storm() {
    if move_prog().is_none() {
        return;
    }
    let h = run_move("threads");
    assert_eq!(h.exits.lock().expect("lock").len(), 4 * 200);
    assert_eq!(h.gated.load(Ordering::Relaxed), 4 * 200);
    let h = run_move("signals");
    let exits = h.exits.lock().expect("lock").clone();
    // A signal may restart an ioctl (-ERESTARTSYS..): those exits are not descriptors.
    let fds: Vec<_> = exits.iter().filter(|&&r| r >= 0).collect();
    assert_eq!(
        fds.len(),
        300,
        "{:?}",
        exits.iter().filter(|&&r| r < 0).collect::<Vec<_>>()
    );
    assert!(fds.iter().all(|&&fd| fd >= i64::from(MOVE_MIN)));
    assert_eq!(h.gated.load(Ordering::Relaxed), 300);
}

#[test]
fn replace_fd_without_room_fails_the_call_with_emfile() {
    if move_prog().is_none() {
        return;
    }
    let h = run_move("nolimit");
    assert_eq!(
        *h.exits.lock().expect("lock"),
        vec![-i64::from(libc::EMFILE), i64::from(MOVE_MIN)]
    );
}

/// `cargo test -p memenc-sim --test supervisor_mechanism bench -- --ignored --nocapture`, alone.
#[test]
#[ignore = "a measurement, not a check"]
fn bench() {
    let Some(p) = progs() else { return };
    for workers in [1, 2] {
        eprintln!("bench: notify_workers = {workers}");
        let spec = Spec {
            notify_workers: workers,
            ..spec()
        };
        let h = Arc::new(TestHandler::default());
        let r = supervisor::run(p.dynamic.as_os_str(), &[OsString::from("bench")], &spec, h);
        assert_eq!(r.expect("run"), 0);
    }
    eprintln!("bench: without the supervisor (the supervised ioctls fail)");
    let s = std::process::Command::new(&p.dynamic)
        .arg("bench")
        .status()
        .expect("run");
    assert!(s.success());
}
