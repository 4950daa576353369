//! The seccomp filter: a few classic-BPF instructions built from a [`Spec`].
//!
//! Why hand-written and not a crate: the program is ~10 fixed instructions plus two per
//! ioctl number, and every constant is in `libc`. `libseccomp` (0.4, over Debian's 2.5) would
//! add a C library and `libseccomp-dev` as a build dependency for that; rust-vmm's
//! `seccompiler` has no `SECCOMP_RET_USER_NOTIF` action and cannot ask for a listener fd, so
//! the install would be ours anyway. Building it here also keeps control of the instruction
//! order, which is what keeps unmatched system calls cheap.
//!
//! The program, in order:
//! 1. `arch != AUDIT_ARCH_X86_64` (i386 via `int 0x80`) or an x32 number (bit 30 set) →
//!    `SECCOMP_RET_ERRNO(ENOSYS)`. Letting them through would bypass every rule below (their
//!    numbers differ); failing them as "not implemented" is safe and not fatal to a program
//!    that merely probes; no x86-64 VMM makes such calls.
//! 2. `ioctl` → compare the LOW 32 bits of `args[1]` (the kernel truncates the request to
//!    `unsigned int`, so `cmd | 1 << 32` is the same call) with the descriptor-gated list
//!    (→ the gate below), the notify list (→ `USER_NOTIF`) then the trace list (→ `TRACE`);
//!    else `ALLOW`. The gate (for [`Spec::notify_ioctls_fd_at_least`]) loads the LOW 32 bits
//!    of `args[0]` (an `int` fd: the high word of the register is whatever the caller left
//!    there) and notifies only if, as a signed int, it is `>= base`: a "negative" fd (bit 31
//!    set) or one below `base` is `ALLOW`ed without reaching the supervisor.
//! 3. `open`, `openat`, `openat2` → `USER_NOTIF` when the spec asks (BPF cannot read paths).
//! 4. Everything else → `ALLOW`. Only the ioctl branch looks at arguments, so the kernel's
//!    seccomp action cache can skip the program for every other system call.
//!
//! Every jump is local (at most a few instructions), so the notify and trace lists have no
//! 255-jump limit; the kernel's own limit is `BPF_MAXINSNS` (4096), about 2000 ioctl numbers.
//! The gated list jumps to one shared gate block, so it holds at most 255 numbers.
use std::io;

/// What the filter sends to the supervisor. Request numbers are compared on their low 32 bits.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Notify `open`, `openat` and `openat2` (all of them: BPF cannot see the path).
    pub notify_open: bool,
    /// ioctl requests answered by [`super::Handler::notify`].
    pub notify_ioctls: Vec<u32>,
    /// ioctl requests that stop in the tracer ([`super::Handler::trace_entry`]), for what user
    /// notification cannot do: rewrite argument registers, see the result.
    pub trace_ioctls: Vec<u32>,
    /// Threads serving notifications (at least 1). More than one lets a slow answer not hold up
    /// other threads' calls; the handler must then cope with concurrent calls.
    pub notify_workers: usize,
    /// `(base, requests)`: ioctl requests answered by [`super::Handler::notify`] only when
    /// their descriptor (`args[0]`, as an `int`) is `>= base`; below it (and for negative
    /// descriptors) they run unnotified at the cost of an unmatched call. BPF cannot see what a
    /// descriptor is, so a handler that wants only some objects' calls makes those objects'
    /// descriptors high: see [`super::TraceExit::ReplaceFd`] and [`super::fd_base`].
    /// `base == 0` notifies them on every descriptor (as `notify_ioctls` does).
    pub notify_ioctls_fd_at_least: (u32, Vec<u32>),
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            notify_open: false,
            notify_ioctls: Vec::new(),
            trace_ioctls: Vec::new(),
            notify_workers: 1,
            notify_ioctls_fd_at_least: (0, Vec::new()),
        }
    }
}

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`); not in `libc`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 system calls are x86-64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in `struct seccomp_data`: nr, arch, instruction_pointer, args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low word of `args[0]` (x86-64 is little-endian).
const OFF_ARG0_LO: u32 = 16;
/// Low word of `args[1]`.
const OFF_ARG1_LO: u32 = 16 + 8;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn jge(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    }
}

fn load(off: u32) -> libc::sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, off)
}

fn ret(k: u32) -> libc::sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, k)
}

/// Builds the program for `spec`. Fails with `EINVAL` if a number is in both lists (which
/// action would win is not obvious to the reader of the spec) or the program is too long.
pub fn build(spec: &Spec) -> io::Result<Vec<libc::sock_filter>> {
    let sorted = |v: &[u32]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut notify = sorted(&spec.notify_ioctls);
    let trace = sorted(&spec.trace_ioctls);
    let (base, gated) = (
        spec.notify_ioctls_fd_at_least.0,
        sorted(&spec.notify_ioctls_fd_at_least.1),
    );
    let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if let Some(both) = notify.iter().find(|n| trace.binary_search(n).is_ok()) {
        return invalid(format!(
            "ioctl {both:#x} is in both the notify and the trace list"
        ));
    }
    if let Some(both) = gated
        .iter()
        .find(|n| trace.binary_search(n).is_ok() || notify.binary_search(n).is_ok())
    {
        return invalid(format!(
            "ioctl {both:#x} is in the fd-gated list and in the notify or trace list"
        ));
    }
    if base > i32::MAX as u32 {
        return invalid(format!("descriptor base {base} is not an int"));
    }
    if gated.len() > 255 {
        return invalid("more than 255 fd-gated ioctl numbers".into());
    }
    // Base 0: every descriptor (a negative one fails in the kernel with EBADF anyway).
    let gated = if base == 0 {
        notify.extend(gated);
        Vec::new()
    } else {
        gated
    };
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);
    let mut p = vec![
        load(OFF_ARCH),
        jeq(AUDIT_ARCH_X86_64, 1, 0),
        ret(enosys),
        load(OFF_NR),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        ret(enosys),
    ];
    // The open block sits between the ioctl test and the ioctl block, so the ioctl test jumps
    // forward over it by a small constant.
    let open_block: Vec<libc::sock_filter> = if spec.notify_open {
        vec![
            jeq(libc::SYS_open as u32, 3, 0),
            jeq(libc::SYS_openat as u32, 2, 0),
            jeq(libc::SYS_openat2 as u32, 1, 0),
            ret(libc::SECCOMP_RET_ALLOW),
            ret(libc::SECCOMP_RET_USER_NOTIF),
        ]
    } else {
        vec![ret(libc::SECCOMP_RET_ALLOW)]
    };
    p.push(jeq(libc::SYS_ioctl as u32, open_block.len() as u8, 0));
    p.extend(open_block);
    p.push(load(OFF_ARG1_LO));
    if !gated.is_empty() {
        // The hottest calls (e.g. KVM_RUN) come first. Each match jumps to the gate block,
        // which the last compare's fall-through skips.
        let k = gated.len();
        for (i, n) in gated.iter().enumerate() {
            p.push(jeq(*n, (k - i) as u8, 0));
        }
        p.push(stmt(libc::BPF_JMP | libc::BPF_JA, 5));
        p.push(load(OFF_ARG0_LO));
        p.push(jge(0x8000_0000, 2, 0)); // a negative int
        p.push(jge(base, 0, 1));
        p.push(ret(libc::SECCOMP_RET_USER_NOTIF));
        p.push(ret(libc::SECCOMP_RET_ALLOW));
    }
    for n in &notify {
        p.push(jeq(*n, 0, 1));
        p.push(ret(libc::SECCOMP_RET_USER_NOTIF));
    }
    for n in &trace {
        p.push(jeq(*n, 0, 1));
        p.push(ret(libc::SECCOMP_RET_TRACE));
    }
    p.push(ret(libc::SECCOMP_RET_ALLOW));
    if p.len() > 4096 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many ioctl numbers for one BPF program (4096 instructions)",
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for exactly the instructions `build` emits, to check the branches
    /// without installing anything.
    fn eval(p: &[libc::sock_filter], arch: u32, nr: u32, arg1: u64) -> u32 {
        eval2(p, arch, nr, 0, arg1)
    }

    fn eval2(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64, arg1: u64) -> u32 {
        let mut pc = 0usize;
        let mut acc = 0u32;
        loop {
            let i = p[pc];
            let code = u32::from(i.code);
            if code == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS {
                acc = match i.k {
                    OFF_NR => nr,
                    OFF_ARCH => arch,
                    OFF_ARG0_LO => arg0 as u32,
                    OFF_ARG1_LO => arg1 as u32,
                    k => panic!("unexpected load {k}"),
                };
                pc += 1;
            } else if code == libc::BPF_RET | libc::BPF_K {
                return i.k;
            } else if code == libc::BPF_JMP | libc::BPF_JA {
                pc += 1 + i.k as usize;
            } else {
                let taken = if code == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K {
                    acc == i.k
                } else {
                    acc >= i.k
                };
                pc += 1 + usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }

    #[test]
    fn branches() {
        let spec = Spec {
            notify_open: true,
            notify_ioctls: vec![0xae03, 0xc008_aeba],
            trace_ioctls: vec![0xae01],
            notify_workers: 1,
            notify_ioctls_fd_at_least: (0, Vec::new()),
        };
        let p = build(&spec).expect("build");
        let io = libc::SYS_ioctl as u32;
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(eval(&p, x, io, 0xae03), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(
            eval(&p, x, io, 0xae03 | 1 << 32),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(eval(&p, x, io, 0xc008_aeba), libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(eval(&p, x, io, 0xae01), libc::SECCOMP_RET_TRACE);
        assert_eq!(eval(&p, x, io, 0xae02), libc::SECCOMP_RET_ALLOW);
        for nr in [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2] {
            assert_eq!(eval(&p, x, nr as u32, 0), libc::SECCOMP_RET_USER_NOTIF);
        }
        assert_eq!(
            eval(&p, x, libc::SYS_read as u32, 0xae03),
            libc::SECCOMP_RET_ALLOW
        );
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert_eq!(eval(&p, 0x4000_0003, 54, 0xae03), enosys); // i386 ioctl
        assert_eq!(eval(&p, x, io | X32_SYSCALL_BIT, 0xae03), enosys);
        let no_open = build(&Spec {
            notify_open: false,
            ..spec.clone()
        })
        .expect("build");
        assert_eq!(
            eval(&no_open, x, libc::SYS_openat as u32, 0),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(eval(&no_open, x, io, 0xae01), libc::SECCOMP_RET_TRACE);
        let both = Spec {
            trace_ioctls: vec![0xae03],
            ..spec
        };
        assert!(build(&both).is_err());
    }

    #[test]
    fn fd_gate() {
        let io = libc::SYS_ioctl as u32;
        let x = AUDIT_ARCH_X86_64;
        let (notif, allow) = (libc::SECCOMP_RET_USER_NOTIF, libc::SECCOMP_RET_ALLOW);
        let spec = Spec {
            notify_ioctls: vec![0xae03],
            trace_ioctls: vec![0xae01],
            notify_ioctls_fd_at_least: (512, vec![0xae80, 0x4090_ae82, 0xae80]),
            ..Spec::default()
        };
        let p = build(&spec).expect("build");
        for req in [0xae80u64, 0x4090_ae82, 0xae80 | 1 << 32] {
            assert_eq!(eval2(&p, x, io, 512, req), notif, "{req:#x} at the base");
            assert_eq!(eval2(&p, x, io, 4000, req), notif);
            // The high word of an int argument is garbage: only the low word counts.
            assert_eq!(eval2(&p, x, io, 0xdead_0000_0000_0200, req), notif);
            assert_eq!(eval2(&p, x, io, 0xdead_0000_0000_0005, req), allow);
            assert_eq!(eval2(&p, x, io, 511, req), allow);
            assert_eq!(eval2(&p, x, io, 0, req), allow);
            // -1 and other negative ints are below any base.
            assert_eq!(eval2(&p, x, io, u64::MAX, req), allow);
            assert_eq!(eval2(&p, x, io, 0x8000_0000, req), allow);
        }
        // The other lists are untouched by the gate.
        assert_eq!(eval2(&p, x, io, 3, 0xae03), notif);
        assert_eq!(eval2(&p, x, io, 3, 0xae01), libc::SECCOMP_RET_TRACE);
        assert_eq!(eval2(&p, x, io, 900, 0xae02), allow);
        assert_eq!(eval2(&p, x, libc::SYS_read as u32, 900, 0xae80), allow);
        // Base 0: every descriptor.
        let all = build(&Spec {
            notify_ioctls_fd_at_least: (0, vec![0xae80]),
            ..spec.clone()
        })
        .expect("build");
        assert_eq!(eval2(&all, x, io, 3, 0xae80), notif);
        // A number in two lists, a base that is no int, too many numbers: refused.
        for bad in [
            (512, vec![0xae03]),
            (512, vec![0xae01]),
            (0x8000_0000, vec![0xae80]),
            (512, (0..256).collect()),
        ] {
            let s = Spec {
                notify_ioctls_fd_at_least: bad,
                ..spec.clone()
            };
            assert!(build(&s).is_err());
        }
        // 255 gated numbers: the farthest jump still reaches the gate.
        let many = build(&Spec {
            notify_ioctls_fd_at_least: (512, (0x1000..0x1000 + 255).collect()),
            ..spec
        })
        .expect("build");
        assert_eq!(eval2(&many, x, io, 600, 0x1000), notif);
        assert_eq!(eval2(&many, x, io, 600, 0x1000 + 254), notif);
        assert_eq!(eval2(&many, x, io, 6, 0x1000 + 254), allow);
        assert_eq!(eval2(&many, x, io, 600, 0x1000 + 255), allow);
    }
}
