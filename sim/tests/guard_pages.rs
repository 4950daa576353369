//! Every exported function that takes a pointer, with each input and output placed flush
//! against a `PROT_NONE` page (right after one, and ending right before one), for the smallest
//! and the largest size a caller may pass. A read or write one byte outside the documented
//! size faults and kills this test binary; otherwise each placement must give the same return
//! value and the same output bytes as the same call on ordinary heap buffers, and the test then
//! asserts that documented result.
//!
//! Adding an export (the typed helpers) is one `guarded(...)` call: list its buffers with their
//! initial bytes and call it with the pointers the helper hands out.

use core::ffi::c_char;
use std::os::fd::AsRawFd;

use memenc::capi::op::mem_enc_op;
use memenc::capi::probe::*;
use memenc::negotiate::*;
use memenc::probe::*;
use memenc::{MEM_ENC_FLAG_CONTINUE, MEM_ENC_FLAG_RETRY, Vendor, mem_enc_cmd};

// ---------------------------------------------------------------------------------------------
// The guard-page allocator.

fn page() -> usize {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// `len` usable bytes between two `PROT_NONE` pages: [guard][data, rounded to pages][guard].
struct Guarded {
    map: *mut u8,
    map_len: usize,
    data_len: usize,
}

/// Where a buffer sits inside its [`Guarded`] mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edge {
    /// Starts on the first byte after the leading guard page (catches underruns).
    Head,
    /// Ends on the last byte before the trailing guard page (catches overruns).
    Tail,
}

impl Guarded {
    fn new(len: usize) -> Guarded {
        let p = page();
        let data_len = len.max(1).div_ceil(p) * p;
        let map_len = data_len + 2 * p;
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let map = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(map, libc::MAP_FAILED, "mmap");
        let map = map.cast::<u8>();
        // SAFETY: both ranges are whole pages inside the mapping just made.
        unsafe {
            assert_eq!(libc::mprotect(map.cast(), p, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(map.add(p + data_len).cast(), p, libc::PROT_NONE),
                0
            );
        }
        Guarded {
            map,
            map_len,
            data_len,
        }
    }

    /// A `len`-byte buffer flush against the guard at `edge`, filled with `init` (its length).
    fn place(&self, edge: Edge, init: &[u8]) -> *mut u8 {
        let len = init.len();
        assert!(len <= self.data_len);
        let start = page()
            + if edge == Edge::Head {
                0
            } else {
                self.data_len - len
            };
        // SAFETY: start..start+len is inside the writable middle of the mapping.
        unsafe {
            let p = self.map.add(start);
            core::ptr::copy_nonoverlapping(init.as_ptr(), p, len);
            p
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

/// One call's observable result: the return value and every buffer's bytes afterwards.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    ret: i64,
    bufs: Vec<Vec<u8>>,
}

/// Calls `call` three times with the buffers `init` describes (each `init[i]` is buffer i's
/// size and initial bytes): on heap buffers, then with every buffer at the head of a guarded
/// mapping, then at the tail. Asserts the three agree and returns the result.
fn guarded(what: &str, init: &[Vec<u8>], call: impl Fn(&[*mut u8]) -> i64) -> Observed {
    // Heap buffers start on a page boundary: guest memory and sources must be page aligned,
    // as they are at both guarded placements of page-sized buffers.
    let mut heap: Vec<Vec<u8>> = init.iter().map(|b| vec![0u8; b.len() + page()]).collect();
    let ptrs: Vec<*mut u8> = heap
        .iter_mut()
        .zip(init)
        .map(|(h, b)| {
            let at = h.as_ptr().align_offset(page());
            h[at..at + b.len()].copy_from_slice(b);
            h[at..].as_mut_ptr()
        })
        .collect();
    let ret = call(&ptrs);
    let bufs = ptrs
        .iter()
        .zip(init)
        // SAFETY: each pointer has its buffer's length of readable bytes.
        .map(|(&p, b)| unsafe { core::slice::from_raw_parts(p, b.len()) }.to_vec())
        .collect();
    drop(heap);
    let reference = Observed { ret, bufs };
    for edge in [Edge::Head, Edge::Tail] {
        let maps: Vec<Guarded> = init.iter().map(|b| Guarded::new(b.len())).collect();
        let ptrs: Vec<*mut u8> = maps
            .iter()
            .zip(init)
            .map(|(m, b)| m.place(edge, b))
            .collect();
        let ret = call(&ptrs);
        let bufs = ptrs
            .iter()
            .zip(init)
            // SAFETY: each pointer has its buffer's length of readable bytes.
            .map(|(&p, b)| unsafe { core::slice::from_raw_parts(p, b.len()) }.to_vec())
            .collect();
        let got = Observed { ret, bufs };
        assert_eq!(
            got.ret, reference.ret,
            "{what}: {edge:?} placement returns another value than heap buffers"
        );
        for (i, (g, r)) in got.bufs.iter().zip(&reference.bufs).enumerate() {
            let first = g.iter().zip(r).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{what}: {edge:?} placement: buffer {i} differs from heap buffers at byte {first:?}: {:?} vs {:?}",
                &g[first.unwrap_or(0)..g.len().min(first.unwrap_or(0) + 16)],
                &r[first.unwrap_or(0)..r.len().min(first.unwrap_or(0) + 16)]
            );
        }
    }
    reference
}

// ---------------------------------------------------------------------------------------------
// Inputs.

fn bytes_of<T: Copy>(v: &T, size: usize) -> Vec<u8> {
    let n = size_of::<T>().min(size);
    let mut out = vec![0u8; size];
    // SAFETY: `v` has size_of::<T>() readable bytes; the test types are padding-free.
    out[..n]
        .copy_from_slice(unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), n) });
    out
}

fn read_as<T: Copy + Default>(bytes: &[u8]) -> T {
    let mut v = T::default();
    let n = size_of::<T>().min(bytes.len());
    // SAFETY: T is a plain repr(C) struct; n bytes fit in both.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut v as *mut T).cast(), n) };
    v
}

/// The simulated snp@6.11 host's probe (VM types SEV/SEV-ES/SNP, INIT2 with DEBUG_SWAP, the
/// static policy mask), so negotiation's success paths run without SEV hardware.
fn snp_host() -> mem_enc_caps {
    sim_util::probed("snp@6.11")
}

/// The simulated tdx@6.19 host's probe.
fn tdx_host() -> mem_enc_caps {
    sim_util::probed("tdx@6.19")
}

const CAPS_SIZES: [u32; 2] = [MEM_ENC_CAPS_SIZE_VER0, MEM_ENC_CAPS_SIZE_MAX];

fn kvm() -> Option<std::fs::File> {
    match std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(f) => Some(f),
        Err(e) => {
            println!("SKIPPED: /dev/kvm not available ({e}): real-descriptor placements");
            None
        }
    }
}

/// A descriptor number that is not open. It is closed right after it was made, and numbered
/// as high as the descriptor limit allows (at most 1023): the kernel gives every new descriptor
/// the lowest free number, so the descriptors other tests open meanwhile do not take it.
fn closed_fd() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let high = limit.rlim_cur.min(1024) as i32 - 1;
    let f = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: F_DUPFD makes a descriptor numbered `high` or above, closed below.
    let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, high) };
    if fd < 0 {
        // No room that high: the number `f` has.
        return f.as_raw_fd();
    }
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(fd) };
    fd
}

fn message(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).expect("NUL-terminated");
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

// ---------------------------------------------------------------------------------------------
// mem_enc_op: the 24-byte command (its only size).

fn op_guarded(what: &str, fd: i32, cmd: mem_enc_cmd) -> Observed {
    guarded(what, &[bytes_of(&cmd, 24)], |p| {
        // SAFETY: p[0] is 24 writable bytes.
        i64::from(unsafe { mem_enc_op(fd, p[0].cast()) })
    })
}

#[test]
fn op_command_against_guard_pages() {
    let mut stale = mem_enc_cmd::new(22, 0);
    stale.status.hw_error = 0x1111_2222_3333_4444;
    let stale_bytes = bytes_of(&stale, 24);

    // Refused without an ioctl: the 24 bytes stay exactly as they were.
    let r = op_guarded("negative fd", -1, stale);
    assert_eq!((r.ret, &r.bufs[0]), (-libc::EBADF as i64, &stale_bytes));
    let bad_flags = mem_enc_cmd {
        flags: 1 << 20,
        ..stale
    };
    let r = op_guarded("unknown flag", 0, bad_flags);
    assert_eq!(r.ret, -libc::EINVAL as i64);
    assert_eq!(r.bufs[0], bytes_of(&bad_flags, 24));
    let bad_continue = mem_enc_cmd {
        flags: MEM_ENC_FLAG_CONTINUE,
        ..stale
    };
    let r = op_guarded("CONTINUE on a command without progress", 0, bad_continue);
    assert_eq!(r.ret, -libc::EINVAL as i64);

    // Issued: the kernel's answer, and only the status word written (SEV error cleared to 0;
    // the sev_fd half stays).
    let r = op_guarded("closed fd", closed_fd(), stale);
    assert_eq!(r.ret, -libc::EBADF as i64);
    assert_eq!(r.bufs[0][..16], stale_bytes[..16]);
    if memenc::host::cpu_vendor() == Vendor::Sev {
        assert_eq!(r.bufs[0][16..20], [0; 4]);
        assert_eq!(r.bufs[0][20..], stale_bytes[20..]);
    }

    // NULL command: the kernel's "is there a backend" question, no caller memory at all.
    // SAFETY: NULL is documented.
    assert_eq!(
        unsafe { mem_enc_op(closed_fd(), core::ptr::null_mut()) },
        -libc::EBADF
    );

    let Some(kvm) = kvm() else { return };
    let vm = kvm_ioctls::Kvm::new().unwrap().create_vm().unwrap();
    let vcpu = vm.create_vcpu(0).unwrap();
    for (what, fd) in [("VM fd", vm.as_raw_fd()), ("vCPU fd", vcpu.as_raw_fd())] {
        let r = op_guarded(what, fd, stale);
        // This machine kind has no SEV/TDX backend: -ENOTTY, status cleared.
        if memenc::encryption_enabled(vm.as_raw_fd()).is_err() {
            assert_eq!(r.ret, -libc::ENOTTY as i64, "{what}");
            assert_eq!(r.bufs[0][16..20], [0; 4], "{what}");
        }
        assert_eq!(r.bufs[0][..16], stale_bytes[..16], "{what}");
    }
    drop(kvm);
}

// ---------------------------------------------------------------------------------------------
// mem_enc_probe: caps_size from VER0 to MAX.

#[test]
fn probe_caps_against_guard_pages() {
    let own = size_of::<mem_enc_caps>();
    // Refusals write nothing: one byte too small, and NULL.
    let r = guarded("probe, size VER0-1", &[vec![0xA5; 191]], |p| {
        // SAFETY: p[0] has 191 writable bytes and 191 is passed.
        i64::from(unsafe { mem_enc_probe(-1, p[0].cast(), 191) })
    });
    assert_eq!(r.ret, -libc::EINVAL as i64);
    assert!(r.bufs[0].iter().all(|&b| b == 0xA5));
    // SAFETY: NULL is documented.
    assert_eq!(
        unsafe { mem_enc_probe(-1, core::ptr::null_mut(), 4096) },
        -libc::EINVAL
    );

    // /dev/null is not KVM: refused after one check, nothing written.
    let null = std::fs::File::open("/dev/null").unwrap();
    for size in CAPS_SIZES {
        let r = guarded("probe /dev/null", &[vec![0xA5; size as usize]], |p| {
            // SAFETY: p[0] has `size` writable bytes.
            i64::from(unsafe { mem_enc_probe(null.as_raw_fd(), p[0].cast(), size as usize) })
        });
        assert_eq!(r.ret, -libc::ENOTTY as i64, "size {size}");
        assert!(r.bufs[0].iter().all(|&b| b == 0xA5));
    }

    let Some(kvm) = kvm() else { return };
    for fd in [-1, kvm.as_raw_fd()] {
        for size in CAPS_SIZES {
            let r = guarded("probe", &[vec![0xA5; size as usize]], |p| {
                // SAFETY: p[0] has `size` writable bytes.
                i64::from(unsafe { mem_enc_probe(fd, p[0].cast(), size as usize) })
            });
            assert_eq!(r.ret, 0, "fd {fd} size {size}");
            let caps: mem_enc_caps = read_as(&r.bufs[0]);
            assert_eq!(caps.size as usize, own);
            assert_eq!(caps.api_version.value(), Some(12));
            // Past the library's struct: zeroed, exactly up to `size`.
            assert!(r.bufs[0][own.min(size as usize)..].iter().all(|&b| b == 0));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The negotiation levels. Their C exports (and `struct mem_enc_negotiation`) went in 0.2, so
// no caller buffer is left to guard; what each level grants on the simulated hosts' probes is
// checked on `memenc::negotiate`, the core `mem_enc_negotiate_launch()` runs.

#[test]
fn negotiation_levels_grant_what_the_simulated_hosts_have() {
    let snp = snp_host();
    let tdx = tdx_host();
    let all = MEM_ENC_VM_TYPES_CONFIDENTIAL;

    let c = vm_type(&snp, all).unwrap();
    assert_eq!(c.vm_type, MEM_ENC_VM_TYPE_SNP);
    assert_eq!(c.init_path, MEM_ENC_INIT_SEV_INIT2);
    assert_eq!(vm_type(&tdx, all).unwrap().vm_type, MEM_ENC_VM_TYPE_TDX);

    let g = vmsa_features(
        &snp,
        MEM_ENC_VM_TYPE_SNP,
        MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        MEM_ENC_SEV_FEAT_SECURE_TSC,
    )
    .unwrap();
    assert_eq!(g.granted, MEM_ENC_SEV_FEAT_DEBUG_SWAP);
    // A refusal says why.
    let refused =
        vmsa_features(&snp, MEM_ENC_VM_TYPE_SNP, MEM_ENC_SEV_FEAT_SECURE_TSC, 0).unwrap_err();
    assert_eq!(
        (refused.errno.0, refused.missing),
        (libc::EOPNOTSUPP, MEM_ENC_SEV_FEAT_SECURE_TSC)
    );
    assert!(
        refused.message.contains("SECURE_TSC"),
        "{}",
        refused.message
    );

    let policy = snp_policy(&snp, 0, MEM_ENC_SNP_POLICY_SMT).unwrap();
    assert_eq!(
        policy.granted & MEM_ENC_SNP_POLICY_RSVD_MBO,
        MEM_ENC_SNP_POLICY_RSVD_MBO
    );
    let attrs = tdx_attributes(&tdx, MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE, 0).unwrap();
    assert_eq!(attrs.granted, MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE);
    assert_eq!(tdx_xfam(&tdx, 0x3, 0).unwrap().granted, 0x3);
    // SNP-only levels on a TDX host are refused with a reason, not a crash.
    let wrong = snp_policy(&tdx, 0, 0).unwrap_err();
    assert_eq!(wrong.errno.0, libc::EOPNOTSUPP);
    assert!(!wrong.message.is_empty());
}

// ---------------------------------------------------------------------------------------------
// mem_enc_negotiate_launch: caps, request, settings and message, each at both sizes.

#[test]
fn launch_negotiation_against_guard_pages() {
    let snp = snp_host();
    let req = mem_enc_launch_request {
        accept_vm_types: MEM_ENC_VM_TYPES_CONFIDENTIAL,
        vmsa_features_optional: MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        snp_policy_optional: MEM_ENC_SNP_POLICY_SMT,
        ..Default::default()
    };
    let sizes = |ver0: u32| [ver0 as usize, MEM_ENC_CAPS_SIZE_MAX as usize];
    for caps_size in sizes(MEM_ENC_CAPS_SIZE_VER0) {
        for req_size in sizes(MEM_ENC_LAUNCH_REQUEST_SIZE_VER0) {
            for out_size in sizes(MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0) {
                for msg_len in [1usize, 4096] {
                    let init = [
                        bytes_of(&snp, caps_size),
                        bytes_of(&req, req_size),
                        vec![0xA5; out_size],
                        vec![0xA5; msg_len],
                    ];
                    let what = format!(
                        "launch caps {caps_size} req {req_size} out {out_size} msg {msg_len}"
                    );
                    let r = guarded(&what, &init, |p| {
                        // SAFETY: every pointer has the size passed with it.
                        i64::from(unsafe {
                            mem_enc_negotiate_launch(
                                p[0].cast_const().cast(),
                                caps_size,
                                p[1].cast_const().cast(),
                                req_size,
                                p[2].cast(),
                                out_size,
                                p[3].cast::<c_char>(),
                                msg_len,
                            )
                        })
                    });
                    assert_eq!(r.ret, 0, "{what}");
                    let s: mem_enc_launch_settings = read_as(&r.bufs[2]);
                    assert_eq!(s.vm_type, MEM_ENC_VM_TYPE_SNP, "{what}");
                    assert_eq!(s.vmsa_features, MEM_ENC_SEV_FEAT_DEBUG_SWAP, "{what}");
                    let own = size_of::<mem_enc_launch_settings>();
                    let tail = r.bufs[2].get(own..).unwrap_or_default();
                    assert!(tail.iter().all(|&b| b == 0), "{what}: tail");
                    let plan = message(&r.bufs[3]);
                    assert!(plan.len() < msg_len, "{what}");
                    if msg_len > 64 {
                        assert!(plan.contains("SNP"), "{what}: {plan}");
                    }
                }
            }
        }
    }
    // Refused requests leave settings and message untouched: a request one byte short.
    let init = [
        bytes_of(&snp, 192),
        bytes_of(&req, 71),
        vec![0xA5; 56],
        vec![0xA5; 64],
    ];
    let r = guarded("launch, request VER0-1", &init, |p| {
        // SAFETY: every pointer has the size passed with it.
        i64::from(unsafe {
            mem_enc_negotiate_launch(
                p[0].cast_const().cast(),
                192,
                p[1].cast_const().cast(),
                71,
                p[2].cast(),
                56,
                p[3].cast::<c_char>(),
                64,
            )
        })
    });
    assert_eq!(r.ret, -libc::EINVAL as i64);
    assert_eq!(r.bufs[2..], init[2..]);
    // The same for a caps struct one byte short.
    let init = [
        bytes_of(&snp, 191),
        bytes_of(&req, 72),
        vec![0xA5; 56],
        vec![0xA5; 64],
    ];
    let r = guarded("launch, caps VER0-1", &init, |p| {
        // SAFETY: every pointer has the size passed with it.
        i64::from(unsafe {
            mem_enc_negotiate_launch(
                p[0].cast_const().cast(),
                191,
                p[1].cast_const().cast(),
                72,
                p[2].cast(),
                56,
                p[3].cast::<c_char>(),
                64,
            )
        })
    });
    assert_eq!(r.ret, -libc::EINVAL as i64);
    assert_eq!(r.bufs[2..], init[2..]);
}

/// The harness itself: a call told one byte more than its buffer holds must fault at the tail
/// guard (run in a forked child, which dies of SIGSEGV). Without this, a guard that was never
/// mapped would let every test above pass.
#[test]
fn an_overrun_of_one_byte_faults() {
    let caps = snp_host();
    let m = Guarded::new(192);
    let p = m.place(Edge::Tail, &bytes_of(&caps, 192));
    // SAFETY: the child only runs the call under test and _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let req = mem_enc_launch_request {
            accept_vm_types: 1 << MEM_ENC_VM_TYPE_SNP,
            ..Default::default()
        };
        let mut out = mem_enc_launch_settings::default();
        // SAFETY: deliberately wrong: 193 is passed for a 192-byte buffer (the 193rd byte is
        // the guard page), to show the guard faults; the other pointers are whole structs.
        let _ = unsafe {
            mem_enc_negotiate_launch(
                p.cast(),
                193,
                &req,
                size_of_val(&req),
                &mut out,
                size_of_val(&out),
                core::ptr::null_mut(),
                0,
            )
        };
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
        "status {status:#x}"
    );
}

// ---------------------------------------------------------------------------------------------
// The typed helpers and the simulator's exports, on the simulated host (results SIMULATED).
//
// `guarded` runs each call three times, so every call builds its own fresh simulated VM in the
// state the helper needs: the three runs start from the same state and must agree byte for
// byte. Pointers inside argument structs are written into the placed struct just before the
// call and cleared right after (they differ per placement; everything else must not).

#[path = "sim_util/mod.rs"]
mod sim_util;

use memenc::capi::fwerr::*;
use memenc::capi::mem::*;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::uapi::{sev_id, tdx_id};
use memenc_sim::compat::*;
use sim_util::{Fd, Mem, gpaw48, new_vm, op_retry, sev_dev, td_init_args, vcpu};

const PAGE: usize = 4096;
/// The largest argument-struct size a caller may pass (a page; above it: -E2BIG).
const ARGS_MAX: usize = 4096;

fn set_ptr(args: *mut u8, offset: usize, v: *const u8) {
    // SAFETY: `offset + 8` is inside the argument struct (the callers' offsets are the C
    // layout's pointer fields); unaligned writes are fine.
    unsafe { args.add(offset).cast::<u64>().write_unaligned(v as u64) };
}

/// The argument struct `v` at `size` bytes (zero tail), for both sizes a caller may pass.
fn both<T: Copy>(v: &T, ver0: usize) -> [Vec<u8>; 2] {
    [bytes_of(v, ver0), bytes_of(v, ARGS_MAX)]
}

/// Measurements and reports carry the firmware's random nonce: the `*len` bytes written are
/// overwritten with zeroes (so placements compare equal); the bytes after them must be intact.
fn canonical(buf: *mut u8, len: *mut u8) {
    // SAFETY: `len` is the size_t the helper wrote, `buf` has at least that many bytes.
    unsafe {
        let n = len.cast::<usize>().read_unaligned();
        if n != 0xA5A5_A5A5_A5A5_A5A5 {
            core::ptr::write_bytes(buf, 0, n);
        }
    }
}

fn fw_word() -> Vec<u8> {
    vec![0xA5; 4]
}

fn u32_at(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

// States: each returns fresh descriptors (closed on drop).

/// sev@6.1 default VM after KVM_SEV_INIT (or ES_INIT) and LAUNCH_START with `policy`.
fn sev_started(es: bool, policy: u32) -> (Fd, Fd, Mem) {
    let vm = new_vm("sev@6.1", 0);
    let sev = sev_dev(&vm);
    let mut fw = 0;
    let start = mem_enc_sev_start_args {
        handle: 0,
        policy,
        cert: core::ptr::null(),
        cert_len: 0,
        session: core::ptr::null(),
        session_len: 0,
    };
    let init = if es { sev_id::ES_INIT } else { sev_id::INIT };
    assert_eq!(op_retry(vm.0, init).0, 0);
    // SAFETY (whole block): every pointer is valid for its size.
    unsafe {
        assert_eq!(
            mem_enc_sev_launch_start(vm.0, sev.0, &start, 40, core::ptr::null_mut(), &mut fw),
            0
        );
    }
    let mut image = Mem::new(2 * PAGE);
    image.bytes().fill(0xC3);
    // SAFETY: 2 pages of our own memory.
    let r =
        unsafe { mem_enc_sev_launch_update_data(vm.0, image.addr as *mut _, 2 * PAGE, &mut fw) };
    assert_eq!(r, 0);
    (vm, sev, image)
}

/// ... then LAUNCH_MEASURE and LAUNCH_FINISH: a running guest.
fn sev_running(policy: u32) -> (Fd, Fd, Mem) {
    let (vm, sev, image) = sev_started(false, policy);
    let mut m = [0u8; 64];
    let mut len = m.len();
    let mut fw = 0;
    // SAFETY: valid pointers.
    unsafe {
        assert_eq!(
            mem_enc_sev_launch_measure(vm.0, m.as_mut_ptr(), &mut len, &mut fw),
            0
        );
    }
    assert_eq!(op_retry(vm.0, sev_id::LAUNCH_FINISH).0, 0);
    (vm, sev, image)
}

/// snp@7.0 SNP VM (the profile with id 103) after INIT2 (and SNP_LAUNCH_START when `start`),
/// private memory at GPA 0.
fn snp_vm(start: bool) -> (Fd, Fd, Mem, Fd) {
    let vm = new_vm("snp@7.0", MEM_ENC_VM_TYPE_SNP);
    let sev = sev_dev(&vm);
    let mut fw = 0;
    let init = mem_enc_sev_init2_args {
        ghcb_version: 2,
        ..Default::default()
    };
    // SAFETY: valid pointers.
    assert_eq!(unsafe { mem_enc_sev_init2(vm.0, &init, 16, &mut fw) }, 0);
    if start {
        let a = mem_enc_snp_launch_start_args {
            policy: 1 << 16,
            gosvw: [0; 16],
        };
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { mem_enc_snp_launch_start(vm.0, sev.0, &a, 24, &mut fw) },
            0
        );
    }
    let backing = Mem::new(8 * PAGE);
    let gmem = sim_util::private_slot(&vm, 0, 0, 8 * PAGE as u64, &backing);
    (vm, sev, backing, gmem)
}

/// tdx@6.19 TD; with `ready`: INIT_VM, split irqchip, vCPU 0 initialised, private memory.
fn td(ready: bool) -> (Fd, Option<Fd>, Option<(Mem, Fd)>) {
    let vm = new_vm("tdx@6.19", MEM_ENC_VM_TYPE_TDX);
    if !ready {
        return (vm, None, None);
    }
    let cpuid = [gpaw48()];
    let args = td_init_args(&cpuid);
    let mut hw = 0;
    // SAFETY: valid pointers.
    assert_eq!(unsafe { mem_enc_tdx_init_vm(vm.0, &args, 176, &mut hw) }, 0);
    assert_eq!(sim_util::enable_split_irqchip(&vm), Ok(0));
    let v = vcpu(&vm, 0).unwrap();
    // SAFETY: valid pointer.
    assert_eq!(unsafe { mem_enc_tdx_init_vcpu(v.0, 0x1000, &mut hw) }, 0);
    let backing = Mem::new(8 * PAGE);
    let gmem = sim_util::private_slot(&vm, 0, 0, 8 * PAGE as u64, &backing);
    (vm, Some(v), Some((backing, gmem)))
}

/// A parameterless sub-command as VMMs issue it since 0.2, `mem_enc_op()` with
/// MEM_ENC_FLAG_RETRY, with its 24-byte command against the guards, on a fresh `state()` whose
/// VM descriptor `vm_of` gives. The status word is bytes 16..24 of `bufs[0]`.
fn retry_op_guarded<T>(
    what: &str,
    id: u32,
    state: impl Fn() -> T,
    vm_of: impl Fn(&T) -> i32,
) -> Observed {
    let cmd = mem_enc_cmd {
        flags: MEM_ENC_FLAG_RETRY,
        ..mem_enc_cmd::new(id, 0)
    };
    guarded(what, &[bytes_of(&cmd, 24)], |p| {
        let s = state();
        // SAFETY: p[0] is 24 writable bytes; the command has no parameter struct.
        i64::from(unsafe { mem_enc_op(vm_of(&s), p[0].cast()) })
    })
}

/// The status word of a command [`retry_op_guarded`] observed.
fn cmd_status(r: &Observed) -> u64 {
    read_as::<u64>(&r.bufs[0][16..])
}

/// Asserts the result, and that the firmware status word (the last buffer) holds `fw`.
fn expect(what: &str, r: &Observed, ret: i32, fw: u32) {
    assert_eq!(r.ret, i64::from(ret), "{what}");
    assert_eq!(u32_at(r.bufs.last().unwrap()), fw, "{what}: fw_error");
}

#[test]
fn sev_helpers_against_guard_pages() {
    // The parameterless sub-commands (no typed exports since 0.2): mem_enc_op with RETRY, the
    // command itself against the guards.
    type State = fn() -> (Fd, Fd, Mem);
    let fd_only: [(&str, u32, State); 7] = [
        ("sev_init", sev_id::INIT, || {
            (new_vm("sev@6.1", 0), Fd(-1), Mem::new(PAGE))
        }),
        ("sev_es_init", sev_id::ES_INIT, || {
            (new_vm("sev@6.1", 0), Fd(-1), Mem::new(PAGE))
        }),
        ("launch_update_vmsa", sev_id::LAUNCH_UPDATE_VMSA, || {
            let s = sev_started(true, 0x5);
            vcpu(&s.0, 0).map(std::mem::forget).unwrap();
            s
        }),
        ("launch_finish", sev_id::LAUNCH_FINISH, || {
            let s = sev_started(false, 1);
            let (mut m, mut len, mut fw) = ([0u8; 64], 64usize, 0);
            // SAFETY: valid pointers.
            assert_eq!(
                unsafe { mem_enc_sev_launch_measure(s.0.0, m.as_mut_ptr(), &mut len, &mut fw) },
                0
            );
            s
        }),
        ("send_finish", sev_id::SEND_FINISH, || sev_running(1)),
        ("send_cancel", sev_id::SEND_CANCEL, || sev_running(1)),
        ("receive_finish", sev_id::RECEIVE_FINISH, || sev_running(1)),
    ];
    for (what, id, state) in fd_only {
        let r = retry_op_guarded(what, id, state, |s| s.0.0);
        // The SEV view of the status word: `error`, then the `sev_fd` half (0 here).
        let (error, sev_fd) = (cmd_status(&r) as u32, cmd_status(&r) >> 32);
        assert_eq!(sev_fd, 0, "{what}");
        // SEND_FINISH/RECEIVE_FINISH out of order: the firmware's refusal, status written.
        match what {
            "send_finish" | "receive_finish" => {
                assert_eq!(r.ret, -libc::EIO as i64, "{what}");
                assert_ne!(error, 0, "{what}");
            }
            "send_cancel" => assert!(r.ret == 0 || r.ret == -libc::EIO as i64, "{what}"),
            _ => assert_eq!((r.ret, error), (0, 0), "{what}"),
        }
    }

    // LAUNCH_START / RECEIVE_START: args at 40 and 4096 bytes, both blobs, handle, fw_error.
    for (i, args) in both(
        &mem_enc_sev_start_args {
            handle: 0,
            policy: 1,
            cert: core::ptr::null(),
            cert_len: 64,
            session: core::ptr::null(),
            session_len: 64,
        },
        40,
    )
    .into_iter()
    .enumerate()
    {
        for receive in [false, true] {
            let what = format!(
                "{} args {}",
                if receive {
                    "receive_start"
                } else {
                    "launch_start"
                },
                args.len()
            );
            let init = [
                args.clone(),
                vec![1; 64],
                vec![2; 64],
                vec![0xA5; 4],
                fw_word(),
            ];
            let r = guarded(&what, &init, |p| {
                let vm = new_vm("sev@6.1", 0);
                let sev = sev_dev(&vm);
                assert_eq!(op_retry(vm.0, sev_id::INIT).0, 0);
                set_ptr(p[0], 8, p[1]);
                set_ptr(p[0], 24, p[2]);
                let size = init[0].len();
                // SAFETY: every pointer has the size passed with it (blobs: 64 bytes).
                let r = unsafe {
                    if receive {
                        mem_enc_sev_receive_start(
                            vm.0,
                            sev.0,
                            p[0].cast(),
                            size,
                            p[3].cast(),
                            p[4].cast(),
                        )
                    } else {
                        mem_enc_sev_launch_start(
                            vm.0,
                            sev.0,
                            p[0].cast(),
                            size,
                            p[3].cast(),
                            p[4].cast(),
                        )
                    }
                };
                // Handles are numbered per host: a written, non-zero handle reads as 1.
                // SAFETY: p[3] is 4 writable bytes.
                unsafe {
                    let h = p[3].cast::<u32>();
                    if h.read_unaligned() != 0xA5A5_A5A5 && h.read_unaligned() != 0 {
                        h.write_unaligned(1);
                    }
                }
                set_ptr(p[0], 8, core::ptr::null());
                set_ptr(p[0], 24, core::ptr::null());
                i64::from(r)
            });
            expect(&what, &r, 0, 0);
            assert_eq!(u32_at(&r.bufs[3]), 1, "{what}: a non-zero handle written");
            let _ = i;
        }
    }

    // LAUNCH_UPDATE_DATA: the guest range itself against the guards (16 bytes and a page).
    for len in [16usize, PAGE] {
        let r = guarded("launch_update_data", &[vec![0xC3; len], fw_word()], |p| {
            let (vm, _sev, _m) = sev_started(false, 1);
            // SAFETY: p[0] has `len` bytes; p[1] is 4 writable bytes.
            i64::from(unsafe {
                mem_enc_sev_launch_update_data(vm.0, p[0].cast(), len, p[1].cast())
            })
        });
        expect("launch_update_data", &r, 0, 0);
    }

    // LAUNCH_MEASURE and GET_ATTESTATION_REPORT: the exact length and a page.
    let needed = {
        let (vm, _s, _m) = sev_started(false, 1);
        let (mut len, mut fw) = (0usize, 0);
        // SAFETY: a pure length query.
        assert_eq!(
            unsafe { mem_enc_sev_launch_measure(vm.0, core::ptr::null_mut(), &mut len, &mut fw) },
            -libc::ENOSPC
        );
        len
    };
    for cap in [needed, PAGE] {
        let init = [vec![0xA5; cap], bytes_of(&cap, 8), fw_word()];
        let r = guarded("launch_measure", &init, |p| {
            let (vm, _s, _m) = sev_started(false, 1);
            // SAFETY: p[0] has `cap` bytes, p[1] a size_t, p[2] 4 bytes.
            let r = unsafe { mem_enc_sev_launch_measure(vm.0, p[0], p[1].cast(), p[2].cast()) };
            canonical(p[0], p[1]);
            i64::from(r)
        });
        expect("launch_measure", &r, 0, 0);
        assert_eq!(read_as::<usize>(&r.bufs[1]), needed);
        let report = guarded(
            "get_attestation_report",
            &[
                vec![7; 16],
                vec![0xA5; cap.max(PAGE)],
                bytes_of(&cap.max(PAGE), 8),
                fw_word(),
            ],
            |p| {
                let (vm, _s, _m) = sev_running(1);
                // SAFETY: nonce 16 bytes, buffer as announced in p[2], status 4 bytes.
                let r = unsafe {
                    mem_enc_sev_get_attestation_report(
                        vm.0,
                        p[0],
                        16,
                        p[1],
                        p[2].cast(),
                        p[3].cast(),
                    )
                };
                canonical(p[1], p[2]);
                i64::from(r)
            },
        );
        assert!(
            report.bufs[1][..read_as::<usize>(&report.bufs[2])]
                .iter()
                .all(|&b| b == 0)
        );
        expect("get_attestation_report", &report, 0, 0);
    }

    // GUEST_STATUS: four guarded words.
    let r = guarded(
        "guest_status",
        &[fw_word(), fw_word(), fw_word(), fw_word()],
        |p| {
            let (vm, _s, _m) = sev_started(false, 1);
            // SAFETY: four 4-byte buffers.
            let r = unsafe {
                mem_enc_sev_guest_status(vm.0, p[0].cast(), p[1].cast(), p[2].cast(), p[3].cast())
            };
            // The handle is numbered per host: non-zero reads as 1.
            // SAFETY: p[0] is 4 writable bytes.
            unsafe {
                if p[0].cast::<u32>().read_unaligned() != 0 {
                    p[0].cast::<u32>().write_unaligned(1);
                }
            }
            i64::from(r)
        },
    );
    assert_eq!(u32_at(&r.bufs[0]), 1, "handle");
    expect("guest_status", &r, 0, 0);
    assert_eq!(
        (u32_at(&r.bufs[1]), u32_at(&r.bufs[2])),
        (1, 1),
        "policy, LAUNCHING"
    );

    // DBG_DECRYPT / DBG_ENCRYPT (debug policy 0): 16 bytes and a page.
    for len in [16usize, PAGE] {
        let r = guarded("dbg_encrypt", &[vec![0x42; len], fw_word()], |p| {
            let (vm, _s, image) = sev_started(false, 0);
            // SAFETY: p[0] has `len` bytes; the destination is the VM's own image.
            i64::from(unsafe {
                mem_enc_sev_dbg_encrypt(vm.0, p[0], image.addr as *mut _, len, p[1].cast())
            })
        });
        expect("dbg_encrypt", &r, 0, 0);
        let r = guarded("dbg_decrypt", &[vec![0xA5; len], fw_word()], |p| {
            let (vm, _s, image) = sev_started(false, 0);
            // SAFETY: p[0] has `len` writable bytes.
            i64::from(unsafe {
                mem_enc_sev_dbg_decrypt(vm.0, image.addr as *const _, p[0], len, p[1].cast())
            })
        });
        expect("dbg_decrypt", &r, 0, 0);
    }

    // SEND_START (args 48/4096, three blobs, session exact/page) and SEND_UPDATE_DATA.
    let session_needed = {
        let (vm, _s, _m) = sev_running(1);
        let pdh = [1u8; 32];
        let a = mem_enc_sev_send_start_args {
            pdh_cert: pdh.as_ptr(),
            pdh_cert_len: 32,
            plat_certs: pdh.as_ptr(),
            plat_certs_len: 32,
            amd_certs: pdh.as_ptr(),
            amd_certs_len: 32,
        };
        let (mut len, mut pol, mut fw) = (0usize, 0, 0);
        // SAFETY: a length query with valid blobs.
        let r = unsafe {
            mem_enc_sev_send_start(
                vm.0,
                &a,
                48,
                core::ptr::null_mut(),
                &mut len,
                &mut pol,
                &mut fw,
            )
        };
        assert_eq!(r, -libc::ENOSPC);
        len
    };
    let sargs = mem_enc_sev_send_start_args {
        pdh_cert: core::ptr::null(),
        pdh_cert_len: 32,
        plat_certs: core::ptr::null(),
        plat_certs_len: 32,
        amd_certs: core::ptr::null(),
        amd_certs_len: 32,
    };
    for (args, cap) in both(&sargs, 48).into_iter().zip([session_needed, PAGE]) {
        let size = args.len();
        let init = [
            args,
            vec![1; 32],
            vec![2; 32],
            vec![3; 32],
            vec![0xA5; cap],
            bytes_of(&cap, 8),
            fw_word(),
            fw_word(),
        ];
        let r = guarded("send_start", &init, |p| {
            let (vm, _s, _m) = sev_running(1);
            set_ptr(p[0], 0, p[1]);
            set_ptr(p[0], 16, p[2]);
            set_ptr(p[0], 32, p[3]);
            // SAFETY: every pointer has the size passed with it.
            let r = unsafe {
                mem_enc_sev_send_start(
                    vm.0,
                    p[0].cast(),
                    size,
                    p[4],
                    p[5].cast(),
                    p[6].cast(),
                    p[7].cast(),
                )
            };
            for off in [0, 16, 32] {
                set_ptr(p[0], off, core::ptr::null());
            }
            i64::from(r)
        });
        expect("send_start", &r, 0, 0);
        assert_eq!(u32_at(&r.bufs[6]), 1, "policy");
    }
    let r = guarded(
        "send_update_data",
        &[
            vec![0x11; 256],
            vec![0xA5; PAGE],
            bytes_of(&PAGE, 8),
            vec![0xA5; PAGE],
            bytes_of(&PAGE, 8),
            fw_word(),
        ],
        |p| {
            let (vm, _s, _m) = sev_running(1);
            let pdh = [1u8; 32];
            let a = mem_enc_sev_send_start_args {
                pdh_cert: pdh.as_ptr(),
                pdh_cert_len: 32,
                plat_certs: pdh.as_ptr(),
                plat_certs_len: 32,
                amd_certs: pdh.as_ptr(),
                amd_certs_len: 32,
            };
            let mut session = vec![0u8; PAGE];
            let (mut len, mut pol, mut fw) = (PAGE, 0, 0);
            // SAFETY: valid pointers.
            assert_eq!(
                unsafe {
                    mem_enc_sev_send_start(
                        vm.0,
                        &a,
                        48,
                        session.as_mut_ptr(),
                        &mut len,
                        &mut pol,
                        &mut fw,
                    )
                },
                0
            );
            // SAFETY: every pointer has the size passed with it; the guest range is p[0].
            i64::from(unsafe {
                mem_enc_sev_send_update_data(
                    vm.0,
                    p[0].cast(),
                    256,
                    p[1],
                    p[2].cast(),
                    p[3],
                    p[4].cast(),
                    p[5].cast(),
                )
            })
        },
    );
    expect("send_update_data", &r, 0, 0);

    // LAUNCH_SECRET / RECEIVE_UPDATE_DATA: packet args 48/4096 with hdr, guest and trans
    // guarded. A packet not made for this launch is refused by the firmware (-EIO), the same in
    // every placement; what is checked is that nothing outside the buffers is touched.
    let packet = mem_enc_sev_packet_args {
        hdr: core::ptr::null(),
        hdr_len: 52,
        guest: core::ptr::null_mut(),
        guest_len: 16,
        trans: core::ptr::null(),
        trans_len: 16,
    };
    for args in both(&packet, 48) {
        let size = args.len();
        let init = [args, vec![0; 52], vec![0x33; 16], vec![0x44; 16], fw_word()];
        let r = guarded("launch_secret", &init, |p| {
            let (vm, _s, _m) = sev_started(false, 1);
            let (mut m, mut len, mut fw) = ([0u8; 64], 64usize, 0);
            // SAFETY: valid pointers.
            assert_eq!(
                unsafe { mem_enc_sev_launch_measure(vm.0, m.as_mut_ptr(), &mut len, &mut fw) },
                0
            );
            set_ptr(p[0], 0, p[1]);
            set_ptr(p[0], 16, p[2]);
            set_ptr(p[0], 32, p[3]);
            // SAFETY: every pointer has the size announced in the packet.
            let r = unsafe { mem_enc_sev_launch_secret(vm.0, p[0].cast(), size, p[4].cast()) };
            for off in [0, 16, 32] {
                set_ptr(p[0], off, core::ptr::null());
            }
            i64::from(r)
        });
        assert!(
            r.ret == 0 || r.ret == -libc::EIO as i64,
            "launch_secret {}",
            r.ret
        );
    }
}

#[test]
fn snp_helpers_against_guard_pages() {
    let start = mem_enc_snp_launch_start_args {
        policy: MEM_ENC_SNP_POLICY_SMT,
        gosvw: [0; 16],
    };
    for args in both(&start, 24) {
        let size = args.len();
        let r = guarded("snp_launch_start", &[args, fw_word()], |p| {
            let (vm, sev, _b, _g) = snp_vm(false);
            // SAFETY: p[0] has `size` bytes, p[1] 4.
            i64::from(unsafe {
                mem_enc_snp_launch_start(vm.0, sev.0, p[0].cast(), size, p[1].cast())
            })
        });
        expect("snp_launch_start", &r, 0, 0);
    }
    let update = mem_enc_snp_launch_update_args {
        gfn_start: 1,
        src: core::ptr::null_mut(),
        len: 2 * PAGE as u64,
        page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
        retry_limit: 0,
    };
    for args in both(&update, 32) {
        let size = args.len();
        // The source pages are the guarded buffer too (page aligned at both edges).
        let init = [args, vec![0x5A; 2 * PAGE], vec![0xA5; 8], fw_word()];
        let r = guarded("snp_launch_update", &init, |p| {
            let (vm, sev, _b, _g) = snp_vm(true);
            set_ptr(p[0], 8, p[1]);
            // SAFETY: every pointer has the size passed or announced.
            let r = unsafe {
                mem_enc_snp_launch_update(vm.0, sev.0, p[0].cast(), size, p[2].cast(), p[3].cast())
            };
            set_ptr(p[0], 8, core::ptr::null());
            i64::from(r)
        });
        expect("snp_launch_update", &r, 0, 0);
        assert_eq!(read_as::<u64>(&r.bufs[2]), 3, "gfn_reached");
    }
    let finish = mem_enc_snp_launch_finish_args {
        id_block: core::ptr::null(),
        id_block_len: MEM_ENC_SNP_ID_BLOCK_SIZE,
        id_auth: core::ptr::null(),
        id_auth_len: MEM_ENC_SNP_ID_AUTH_SIZE,
        host_data: [9; 32],
        auth_key_en: 0,
        vcek_disabled: 0,
        reserved: [0; 6],
    };
    for args in both(&finish, 72) {
        let size = args.len();
        let init = [args, vec![1; 96], vec![2; 4096], fw_word()];
        let r = guarded("snp_launch_finish", &init, |p| {
            let (vm, sev, _b, _g) = snp_vm(true);
            let _v = vcpu(&vm, 0).unwrap();
            set_ptr(p[0], 0, p[1]);
            set_ptr(p[0], 16, p[2]);
            // SAFETY: every pointer has the size passed or announced.
            let r =
                unsafe { mem_enc_snp_launch_finish(vm.0, sev.0, p[0].cast(), size, p[3].cast()) };
            set_ptr(p[0], 0, core::ptr::null());
            set_ptr(p[0], 16, core::ptr::null());
            i64::from(r)
        });
        // The simulated firmware checks the ID block's signature: a made-up block is refused
        // (-EIO with a status), identically in every placement.
        assert!(
            r.ret == 0 || r.ret == -libc::EIO as i64,
            "snp_launch_finish {}",
            r.ret
        );
    }
    let r = retry_op_guarded(
        "snp_enable_req_certs",
        sev_id::SNP_ENABLE_REQ_CERTS,
        || snp_vm(false),
        |s| s.0.0,
    );
    assert_eq!(
        (r.ret, cmd_status(&r) as u32),
        (0, 0),
        "snp_enable_req_certs"
    );
}

fn hw_word() -> Vec<u8> {
    vec![0xA5; 8]
}

#[test]
fn tdx_helpers_against_guard_pages() {
    let entry = size_of::<mem_enc_cpuid_entry>();
    let nent = {
        let (vm, _, _) = td(false);
        let (mut caps, mut n, mut hw) = (mem_enc_tdx_capabilities::default(), 0u32, 0u64);
        // SAFETY: a count query.
        let r = unsafe {
            mem_enc_tdx_capabilities(vm.0, &mut caps, 48, core::ptr::null_mut(), &mut n, &mut hw)
        };
        assert_eq!(r, -libc::ENOSPC);
        n as usize
    };
    for (caps_size, cap) in [(48usize, nent), (ARGS_MAX, nent + 10)] {
        let init = [
            vec![0xA5; caps_size],
            vec![0xA5; cap * entry],
            bytes_of(&(cap as u32), 4),
            hw_word(),
        ];
        let r = guarded("tdx_capabilities", &init, |p| {
            let (vm, _, _) = td(false);
            // SAFETY: every pointer has the size passed or announced.
            i64::from(unsafe {
                mem_enc_tdx_capabilities(
                    vm.0,
                    p[0].cast(),
                    caps_size,
                    p[1].cast(),
                    p[2].cast(),
                    p[3].cast(),
                )
            })
        });
        assert_eq!(r.ret, 0);
        assert_eq!(read_as::<u32>(&r.bufs[2]) as usize, nent);
        assert!(r.bufs[0][48..].iter().all(|&b| b == 0), "zeroed tail");
    }
    let cpuid = [gpaw48()];
    // The CPUID pointer differs per placement: written just before each call.
    let init_vm = mem_enc_tdx_init_vm_args {
        cpuid: core::ptr::null(),
        ..td_init_args(&cpuid)
    };
    for args in both(&init_vm, 176) {
        let size = args.len();
        let init = [args, bytes_of(&cpuid[0], entry), hw_word()];
        let r = guarded("tdx_init_vm", &init, |p| {
            let (vm, _, _) = td(false);
            set_ptr(p[0], 160, p[1]);
            // SAFETY: every pointer has the size passed or announced.
            let r = unsafe { mem_enc_tdx_init_vm(vm.0, p[0].cast(), size, p[2].cast()) };
            set_ptr(p[0], 160, core::ptr::null());
            i64::from(r)
        });
        assert_eq!((r.ret, read_as::<u64>(&r.bufs[2])), (0, 0), "tdx_init_vm");
    }
    let r = guarded("tdx_init_vcpu", &[hw_word()], |p| {
        let (vm, _, _) = td(true);
        let v = vcpu(&vm, 1).unwrap();
        // SAFETY: 8 writable bytes.
        i64::from(unsafe { mem_enc_tdx_init_vcpu(v.0, 0x1000, p[0].cast()) })
    });
    assert_eq!((r.ret, read_as::<u64>(&r.bufs[0])), (0, 0));
    let region = mem_enc_tdx_init_mem_region_args {
        source: core::ptr::null(),
        gpa: 0,
        nr_pages: 2,
        flags: memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION,
        retry_limit: 0,
    };
    for args in both(&region, 32) {
        let size = args.len();
        let init = [args, vec![0x77; 2 * PAGE], hw_word(), hw_word()];
        let r = guarded("tdx_init_mem_region", &init, |p| {
            let (_vm, v, _m) = td(true);
            set_ptr(p[0], 0, p[1]);
            // SAFETY: every pointer has the size passed or announced.
            let r = unsafe {
                mem_enc_tdx_init_mem_region(
                    v.as_ref().unwrap().0,
                    p[0].cast(),
                    size,
                    p[2].cast(),
                    p[3].cast(),
                )
            };
            set_ptr(p[0], 0, core::ptr::null());
            i64::from(r)
        });
        assert_eq!(r.ret, 0);
        assert_eq!(read_as::<u64>(&r.bufs[2]), 2 * PAGE as u64, "gpa_reached");
    }
    let r = retry_op_guarded(
        "tdx_finalize_vm",
        tdx_id::FINALIZE_VM,
        || td(true),
        |s| s.0.0,
    );
    assert_eq!((r.ret, cmd_status(&r)), (0, 0), "tdx_finalize_vm");
    let needed = {
        let (_vm, v, _m) = td(true);
        let (mut n, mut hw) = (0u32, 0u64);
        // SAFETY: a count query.
        let r = unsafe {
            mem_enc_tdx_get_cpuid(
                v.as_ref().unwrap().0,
                core::ptr::null_mut(),
                &mut n,
                &mut hw,
            )
        };
        assert_eq!(r, -libc::ENOSPC);
        n as usize
    };
    for cap in [needed, needed + 50] {
        let init = [
            vec![0xA5; cap * entry],
            bytes_of(&(cap as u32), 4),
            hw_word(),
        ];
        let r = guarded("tdx_get_cpuid", &init, |p| {
            let (_vm, v, _m) = td(true);
            // SAFETY: p[0] has room for the count in p[1].
            i64::from(unsafe {
                mem_enc_tdx_get_cpuid(v.as_ref().unwrap().0, p[0].cast(), p[1].cast(), p[2].cast())
            })
        });
        assert_eq!((r.ret, read_as::<u32>(&r.bufs[1]) as usize), (0, needed));
    }
}

#[test]
fn memory_helpers_against_guard_pages() {
    // REGISTER/UNREGISTER_REGION: the region itself against the guards (one page and 16).
    for len in [PAGE, 16 * PAGE] {
        let r = guarded("register_region", &[vec![0; len]], |p| {
            let (vm, _s, _m) = sev_started(false, 1);
            // SAFETY: p[0] is `len` bytes of our memory.
            let a = unsafe { mem_enc_mem_register_region(vm.0, p[0].cast(), len) };
            // SAFETY: as above.
            let b = unsafe { mem_enc_mem_unregister_region(vm.0, p[0].cast(), len) };
            i64::from(a) * 1000 + i64::from(b)
        });
        assert_eq!(r.ret, 0);
    }
    // (The memslot exports went in 0.2: KVM_SET_USER_MEMORY_REGION2 is the VMM's own ioctl.)
}

#[test]
fn sim_exports_and_fw_describe_against_guard_pages() {
    // Profile names: NUL-terminated strings ending at the guard.
    for name in ["none", "tdx@6.19"] {
        let mut s = name.as_bytes().to_vec();
        s.push(0);
        type Open = unsafe fn(*const core::ffi::c_char) -> i32;
        let opens: [(&str, Open); 2] = [
            ("sim_kvm_open", mem_enc_sim_kvm_open),
            ("sim_vm_create", mem_enc_sim_vm_create),
        ];
        for (what, f) in opens {
            let r = guarded(what, &[s.clone()], |p| {
                // SAFETY: p[0] is a NUL-terminated string.
                let fd = unsafe { f(p[0].cast()) };
                let _ = Fd(fd);
                i64::from(fd.min(0))
            });
            assert_eq!(r.ret, 0, "{what} {name}");
        }
        let r = guarded("sim_vm_create_type", &[s.clone()], |p| {
            // SAFETY: as above.
            let fd = unsafe { mem_enc_sim_vm_create_type(p[0].cast(), 0) };
            let _ = Fd(fd);
            i64::from(fd.min(0))
        });
        assert_eq!(r.ret, 0);
    }
    // The digest: exactly 48 bytes and the largest buffer (a page).
    for len in [48usize, PAGE] {
        let r = guarded("sim_launch_digest", &[vec![0xA5; len]], |p| {
            let (vm, _s, _b, _g) = snp_vm(true);
            // SAFETY: p[0] has `len` writable bytes.
            i64::from(unsafe { mem_enc_sim_launch_digest(vm.0, p[0], len) })
        });
        assert_eq!(r.ret, 48);
        assert!(
            r.bufs[0][48..].iter().all(|&b| b == 0xA5),
            "nothing past the digest"
        );
    }
    // A fault: the smallest struct (4 bytes, kind only) and the largest (4096, zero tail).
    let fault = mem_enc_sim_fault {
        kind: MEM_ENC_SIM_FAULT_EBUSY,
        ..Default::default()
    };
    for size in [4usize, ARGS_MAX] {
        let r = guarded("sim_inject", &[bytes_of(&fault, size)], |p| {
            let vm = new_vm("tdx@6.19", MEM_ENC_VM_TYPE_TDX);
            // SAFETY: p[0] has `size` bytes.
            i64::from(unsafe { mem_enc_sim_inject(vm.0, p[0].cast(), size) })
        });
        assert_eq!(r.ret, 0, "size {size}");
    }
    // mem_enc_fw_describe: the exact length needed (text + NUL) and MEM_ENC_FW_DESCRIBE_MAX.
    let status = 0xC000_0100_0000_0045u64;
    // SAFETY: len 0 with NULL is a length query.
    let n = unsafe {
        mem_enc_fw_describe(memenc::MEM_ENC_VENDOR_TDX, status, core::ptr::null_mut(), 0)
    };
    let needed = if n == -libc::ENOSPC {
        let mut big = [0 as core::ffi::c_char; 320];
        // SAFETY: 320 writable bytes.
        (unsafe { mem_enc_fw_describe(memenc::MEM_ENC_VENDOR_TDX, status, big.as_mut_ptr(), 320) })
            as usize
            + 1
    } else {
        n as usize + 1
    };
    for len in [needed, MEM_ENC_FW_DESCRIBE_MAX] {
        let r = guarded("fw_describe", &[vec![0xA5; len]], |p| {
            // SAFETY: p[0] has `len` writable bytes.
            i64::from(unsafe {
                mem_enc_fw_describe(memenc::MEM_ENC_VENDOR_TDX, status, p[0].cast(), len)
            })
        });
        assert_eq!(r.ret as usize, needed - 1, "len {len}");
        assert!(message(&r.bufs[0]).contains("CPUID_CONFIG"));
    }
}
