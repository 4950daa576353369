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
use memenc::{MEM_ENC_FLAG_CONTINUE, Vendor, mem_enc_cmd};

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
    let mut heap: Vec<Vec<u8>> = init.to_vec();
    let ptrs: Vec<*mut u8> = heap.iter_mut().map(|b| b.as_mut_ptr()).collect();
    let ret = call(&ptrs);
    let reference = Observed { ret, bufs: heap };
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
            got, reference,
            "{what}: {edge:?} placement differs from heap buffers"
        );
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

/// A hand-built SNP host (vm types SEV/SEV-ES/SNP, INIT2 with DEBUG_SWAP, static policy bits),
/// so negotiation's success paths run without SEV hardware.
fn snp_host() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: Vendor::Sev.as_u32(),
        api_version: mem_enc_cap::known(12),
        vm_types: mem_enc_cap::known(0b1_1101),
        sev_vmsa_features: mem_enc_cap::known(MEM_ENC_SEV_FEAT_DEBUG_SWAP),
        snp_policy_bits: mem_enc_cap::known(MEM_ENC_SNP_POLICY_BITS_STATIC),
        snp_req_certs: mem_enc_cap::known(1),
        sev_null_probe: mem_enc_cap::known(1),
        tdx_supported_attrs: mem_enc_cap::not_available(),
        tdx_supported_xfam: mem_enc_cap::not_available(),
        tdx_cpuid_configs: mem_enc_cap::not_available(),
        guest_memfd: mem_enc_cap::known(1),
        memory_attributes: mem_enc_cap::known(8),
        ..Default::default()
    };
    c.summarize();
    c
}

/// A hand-built TDX host.
fn tdx_host() -> mem_enc_caps {
    let mut c = mem_enc_caps {
        size: size_of::<mem_enc_caps>() as u32,
        vendor: Vendor::Tdx.as_u32(),
        api_version: mem_enc_cap::known(12),
        vm_types: mem_enc_cap::known(0b10_0001),
        sev_vmsa_features: mem_enc_cap::not_available(),
        snp_policy_bits: mem_enc_cap::not_available(),
        snp_req_certs: mem_enc_cap::not_available(),
        sev_null_probe: mem_enc_cap::not_available(),
        tdx_supported_attrs: mem_enc_cap::known(MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE),
        tdx_supported_xfam: mem_enc_cap::known(0x6_02e7),
        tdx_cpuid_configs: mem_enc_cap::known(23),
        guest_memfd: mem_enc_cap::known(1),
        memory_attributes: mem_enc_cap::known(8),
        ..Default::default()
    };
    c.summarize();
    c
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

fn closed_fd() -> i32 {
    let f = std::fs::File::open("/dev/null").unwrap();
    let fd = f.as_raw_fd();
    drop(f);
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
// The negotiation levels: caps (VER0..MAX) in, struct mem_enc_negotiation out.

/// Runs one level with caps at both sizes, guarded; returns (ret, negotiation) per size.
fn level_guarded(
    what: &str,
    caps: &mem_enc_caps,
    level: impl Fn(*const mem_enc_caps, usize, *mut mem_enc_negotiation) -> i32,
) -> Vec<(i32, mem_enc_negotiation)> {
    let out_len = size_of::<mem_enc_negotiation>();
    CAPS_SIZES
        .iter()
        .map(|&size| {
            let init = [bytes_of(caps, size as usize), vec![0xA5; out_len]];
            let r = guarded(what, &init, |p| {
                i64::from(level(p[0].cast_const().cast(), size as usize, p[1].cast()))
            });
            assert_eq!(r.bufs[0], init[0], "{what}: caps were modified");
            (r.ret as i32, read_as(&r.bufs[1]))
        })
        .collect()
}

#[test]
fn negotiation_levels_against_guard_pages() {
    let snp = snp_host();
    let tdx = tdx_host();
    let all = MEM_ENC_VM_TYPES_CONFIDENTIAL;

    // SAFETY (all closures below): the pointers come from `guarded` with the sizes passed; the
    // out buffer is a whole struct mem_enc_negotiation.
    let vm_type = |caps: &mem_enc_caps| {
        level_guarded("vm_type", caps, |c, s, o| unsafe {
            mem_enc_negotiate_vm_type(c, s, all, o)
        })
    };
    for (r, n) in vm_type(&snp) {
        assert_eq!(r, 0);
        assert_eq!(n.vm_type, MEM_ENC_VM_TYPE_SNP);
        assert_eq!(n.init_path, MEM_ENC_INIT_SEV_INIT2);
    }
    for (r, n) in vm_type(&tdx) {
        assert_eq!(r, 0);
        assert_eq!(n.vm_type, MEM_ENC_VM_TYPE_TDX);
    }

    let vmsa = level_guarded("vmsa_features", &snp, |c, s, o| unsafe {
        mem_enc_negotiate_vmsa_features(
            c,
            s,
            MEM_ENC_VM_TYPE_SNP,
            MEM_ENC_SEV_FEAT_DEBUG_SWAP,
            MEM_ENC_SEV_FEAT_SECURE_TSC,
            o,
        )
    });
    for (r, n) in vmsa {
        assert_eq!((r, n.granted), (0, MEM_ENC_SEV_FEAT_DEBUG_SWAP));
    }
    // A refusal writes the reason.
    let refused = level_guarded("vmsa_features refused", &snp, |c, s, o| unsafe {
        mem_enc_negotiate_vmsa_features(
            c,
            s,
            MEM_ENC_VM_TYPE_SNP,
            MEM_ENC_SEV_FEAT_SECURE_TSC,
            0,
            o,
        )
    });
    for (r, n) in refused {
        assert_eq!(
            (r, n.missing),
            (-libc::EOPNOTSUPP, MEM_ENC_SEV_FEAT_SECURE_TSC)
        );
        assert!(message(&bytes_of(&n.message, n.message.len())).contains("SECURE_TSC"));
    }

    let policy = level_guarded("snp_policy", &snp, |c, s, o| unsafe {
        mem_enc_negotiate_snp_policy(c, s, 0, MEM_ENC_SNP_POLICY_SMT, o)
    });
    for (r, n) in policy {
        assert_eq!(r, 0);
        assert_eq!(
            n.granted & MEM_ENC_SNP_POLICY_RSVD_MBO,
            MEM_ENC_SNP_POLICY_RSVD_MBO
        );
    }
    let attrs = level_guarded("tdx_attributes", &tdx, |c, s, o| unsafe {
        mem_enc_negotiate_tdx_attributes(c, s, MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE, 0, o)
    });
    for (r, n) in attrs {
        assert_eq!((r, n.granted), (0, MEM_ENC_TDX_ATTR_SEPT_VE_DISABLE));
    }
    let xfam = level_guarded("tdx_xfam", &tdx, |c, s, o| unsafe {
        mem_enc_negotiate_tdx_xfam(c, s, 0x3, 0, o)
    });
    for (r, n) in xfam {
        assert_eq!((r, n.granted), (0, 0x3));
    }
    // SNP-only levels on a TDX host are refused with a reason, not a crash.
    let wrong = level_guarded("snp_policy on TDX", &tdx, |c, s, o| unsafe {
        mem_enc_negotiate_snp_policy(c, s, 0, 0, o)
    });
    for (r, _) in wrong {
        assert_eq!(r, -libc::EOPNOTSUPP);
    }

    // A caps struct one byte short is refused before `out` is touched.
    let r = guarded(
        "vm_type, caps VER0-1",
        &[
            bytes_of(&snp, 191),
            vec![0xA5; size_of::<mem_enc_negotiation>()],
        ],
        // SAFETY: sizes as passed.
        |p| i64::from(unsafe { mem_enc_negotiate_vm_type(p[0].cast(), 191, all, p[1].cast()) }),
    );
    assert_eq!(r.ret, -libc::EINVAL as i64);
    assert!(r.bufs[1].iter().all(|&b| b == 0xA5));
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
        let mut out = mem_enc_negotiation::default();
        // SAFETY: deliberately wrong: 193 is passed for a 192-byte buffer (the 193rd byte is
        // the guard page), to show the guard faults.
        let _ = unsafe { mem_enc_negotiate_vm_type(p.cast(), 193, 1 << 4, &mut out) };
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
