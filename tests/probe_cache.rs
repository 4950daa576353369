//! The probe cache and the growing-struct rules of `mem_enc_probe()`, through the C entry
//! points. Needs /dev/kvm (skips visibly without it).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use memenc::capi::probe::{mem_enc_probe, mem_enc_probe_invalidate};
use memenc::probe::*;

/// The tests here invalidate the process-wide cache, which another test relies on at that
/// moment: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn kvm_present() -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        return true;
    }
    println!("SKIPPED: /dev/kvm is absent on this machine");
    false
}

fn probe(fd: i32) -> Result<mem_enc_caps, i32> {
    let mut caps = mem_enc_caps::default();
    // SAFETY: `caps` is writable for the size passed.
    match unsafe { mem_enc_probe(fd, &mut caps, size_of::<mem_enc_caps>()) } {
        0 => Ok(caps),
        e => Err(e),
    }
}

#[test]
fn same_answer_twice_and_across_descriptors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kvm_present() {
        return;
    }
    let first = probe(-1).unwrap();
    assert_eq!(probe(-1).unwrap(), first);
    let a = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .unwrap();
    let b = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .unwrap();
    assert_eq!(probe(a.as_raw_fd()).unwrap(), first);
    assert_eq!(probe(b.as_raw_fd()).unwrap(), first);
    mem_enc_probe_invalidate();
    assert_eq!(probe(b.as_raw_fd()).unwrap(), first);
    assert_eq!(probe(-1).unwrap(), first);
}

#[test]
fn concurrent_first_probes_agree() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kvm_present() {
        return;
    }
    mem_enc_probe_invalidate();
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| probe(-1).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
}

/// In a forked child with no descriptors allowed (RLIMIT_NOFILE 0): the cached probe still
/// answers (it needs no open() and no lock), and after invalidation the probe must open
/// /dev/kvm again and fails with -EMFILE. This shows the cache is used, that invalidation
/// works, and that the cache is usable after fork().
#[test]
fn cached_probe_needs_no_descriptor_and_invalidate_forgets() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kvm_present() {
        return;
    }
    let expected = probe(-1).unwrap();
    // SAFETY: the child only calls async-signal-safe functions and memenc paths that neither
    // allocate nor lock (the cached probe, invalidation, a failing open), then _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let mut caps = mem_enc_caps::default();
        // SAFETY: plain libc calls and valid pointers; see above.
        let code = unsafe {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &zero) != 0 {
                10
            } else if mem_enc_probe(-1, &mut caps, size_of::<mem_enc_caps>()) != 0 {
                11
            } else if caps != expected {
                12
            } else {
                mem_enc_probe_invalidate();
                match mem_enc_probe(-1, &mut caps, size_of::<mem_enc_caps>()) {
                    e if e == -libc::EMFILE => 0,
                    _ => 13,
                }
            }
        };
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status));
    assert_eq!(libc::WEXITSTATUS(status), 0, "child step failed");
    // The parent's cache was not touched by the child's invalidation.
    assert_eq!(probe(-1).unwrap(), expected);
}

#[test]
fn growing_struct_sizes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kvm_present() {
        return;
    }
    let expected = probe(-1).unwrap();
    let ver0 = MEM_ENC_CAPS_SIZE_VER0 as usize;
    let mut buf = vec![0xA5u8; 600];
    // Smaller than the first version: refused, nothing written.
    // SAFETY: the buffer has 600 writable bytes; every size passed is at most that.
    unsafe {
        assert_eq!(
            mem_enc_probe(-1, buf.as_mut_ptr().cast(), ver0 - 8),
            -libc::EINVAL
        );
        assert!(buf.iter().all(|&b| b == 0xA5));
        // Equal: exactly the struct, nothing after it.
        assert_eq!(mem_enc_probe(-1, buf.as_mut_ptr().cast(), ver0), 0);
        assert_eq!(
            std::ptr::read_unaligned(buf.as_ptr().cast::<mem_enc_caps>()),
            expected
        );
        assert!(buf[ver0..].iter().all(|&b| b == 0xA5));
        // Larger: the tail up to the caller's size is zeroed (whatever it held), not beyond.
        assert_eq!(mem_enc_probe(-1, buf.as_mut_ptr().cast(), 512), 0);
        assert_eq!(
            std::ptr::read_unaligned(buf.as_ptr().cast::<mem_enc_caps>()),
            expected
        );
        assert!(buf[ver0..512].iter().all(|&b| b == 0));
        assert!(buf[512..].iter().all(|&b| b == 0xA5));
        // Implausibly large.
        assert_eq!(
            mem_enc_probe(
                -1,
                buf.as_mut_ptr().cast(),
                MEM_ENC_CAPS_SIZE_MAX as usize + 1
            ),
            -libc::E2BIG
        );
    }
}

#[test]
fn struct_against_a_guard_page() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !kvm_present() {
        return;
    }
    // SAFETY: plain anonymous mapping of two pages, the second made inaccessible.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let base = libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        let guard = base.cast::<u8>().add(page);
        assert_eq!(libc::mprotect(guard.cast(), page, libc::PROT_NONE), 0);
        let size = MEM_ENC_CAPS_SIZE_VER0 as usize;
        let caps = guard.sub(size).cast::<mem_enc_caps>();
        assert_eq!(mem_enc_probe(-1, caps, size), 0);
        assert_eq!(std::ptr::read_unaligned(caps), probe(-1).unwrap());
        libc::munmap(base, 2 * page);
    }
}
