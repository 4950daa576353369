//! The library against a scripted [`memenc::Host`] installed once for this test binary: which
//! ioctls memenc issues (and how often) for inputs whose kernel answer is known from the
//! kernel sources (audit items A1 and A4 of the kernel audit, section (a); TESTING.md has the table).
//! Each test uses its own descriptor number, so the tests may run in parallel.

use std::collections::BTreeMap as HashMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Mutex, Once};

use memenc::Errno;
use memenc::fwerr::Stage;
use memenc::helpers::snp;
use memenc::uapi::sev_id;
use memenc::{Host, Vendor};

/// Answers every KVM_MEMORY_ENCRYPT_OP on a descriptor with that descriptor's scripted errno
/// (0: success) and records the ids it saw; the vendor is always SEV.
struct Scripted {
    answers: Mutex<HashMap<RawFd, i32>>,
    seen: Mutex<HashMap<RawFd, Vec<u32>>>,
}

static HOST: Scripted = Scripted {
    answers: Mutex::new(HashMap::new()),
    seen: Mutex::new(HashMap::new()),
};

impl Host for Scripted {
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
        let mut id = u32::MAX;
        if request == memenc::uapi::KVM_MEMORY_ENCRYPT_OP && arg != 0 {
            // SAFETY: memenc passes its own 24-byte command for this request.
            id = unsafe { (*(arg as *const memenc::mem_enc_cmd)).id };
        }
        self.seen.lock().unwrap().entry(fd).or_default().push(id);
        match self.answers.lock().unwrap().get(&fd).copied().unwrap_or(0) {
            0 => Ok(0),
            e => Err(Errno(e)),
        }
    }
    fn vendor(&self, _fd: RawFd) -> Option<Vendor> {
        Some(Vendor::Sev)
    }
}

fn host(fd: RawFd, answer: i32) -> BorrowedFd<'static> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| memenc::set_host(&HOST).expect("first host"));
    HOST.answers.lock().unwrap().insert(fd, answer);
    // SAFETY: the scripted host never touches the descriptor; nothing closes it.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn seen(fd: RawFd) -> Vec<u32> {
    HOST.seen
        .lock()
        .unwrap()
        .get(&fd)
        .cloned()
        .unwrap_or_default()
}

/// A1: a NULL or unaligned source for a non-ZERO page never reaches the kernel (kernels up to
/// 7.0 WARN on NULL and fail -EIO with error 0; 7.0 refuses unaligned; newest refuse both).
#[test]
fn snp_launch_update_refuses_null_or_unaligned_source_without_an_ioctl() {
    for (fd, uaddr, page_type) in [
        (1001, 0, snp::page_type::NORMAL),
        (1002, 0x1001, snp::page_type::NORMAL),
        (1003, 0, snp::page_type::CPUID),
        (1004, 0x10_0800, snp::page_type::UNMEASURED),
    ] {
        let vm = host(fd, 0);
        let p = snp::LaunchUpdate {
            gfn_start: 0x80,
            uaddr,
            len: 4096,
            page_type,
        };
        let e = snp::launch_update(vm, vm, &p).expect_err("refused");
        assert_eq!(e.errno, Errno(libc::EINVAL), "{uaddr:#x}");
        assert_eq!(e.stage, Stage::Memenc, "{uaddr:#x}");
        assert_eq!(e.status, None);
        assert_eq!(e.reached, Some(0x80));
        assert_eq!(seen(fd), Vec::<u32>::new(), "no ioctl for {uaddr:#x}");
    }
    // A ZERO page has no source: 0 is fine and reaches the kernel.
    let vm = host(1005, 0);
    let p = snp::LaunchUpdate {
        gfn_start: 0x80,
        uaddr: 0,
        len: 4096,
        page_type: snp::page_type::ZERO,
    };
    // The scripted kernel leaves len as it was, so CONTINUE stops for want of progress; what
    // matters here is that the command was issued.
    let _ = snp::launch_update(vm, vm, &p);
    assert!(seen(1005).contains(&sev_id::SNP_LAUNCH_UPDATE));
}

/// A4: SNP_LAUNCH_UPDATE turns any negative count into -EIO, so EINTR/EAGAIN never surface;
/// an -EIO with error 0 is KVM's (the firmware was not reached), and is not re-issued.
#[test]
fn snp_launch_update_eio_with_error_zero_is_kvms_and_not_retried() {
    let vm = host(1010, libc::EIO);
    let mut page = vec![0u8; 8192];
    let aligned = (page.as_mut_ptr() as u64 + 4095) & !4095;
    let p = snp::LaunchUpdate {
        gfn_start: 0x80,
        uaddr: aligned,
        len: 4096,
        page_type: snp::page_type::NORMAL,
    };
    let e = snp::launch_update(vm, vm, &p).expect_err("EIO");
    assert_eq!(e.errno, Errno(libc::EIO));
    assert_eq!(e.status, Some(0));
    assert_eq!(e.stage, Stage::Kvm, "error 0: not reached the firmware");
    assert_eq!(seen(1010), vec![sev_id::SNP_LAUNCH_UPDATE]);
}

/// A4: the transient tables list only what the kernel really returns for each command.
#[test]
fn sev_transient_tables_follow_the_kernel() {
    let t = |id| Vendor::Sev.command(id).expect("known").transient;
    assert_eq!(t(sev_id::SNP_LAUNCH_UPDATE), &[] as &[i32]);
    // kvm_lock_all_vcpus() is killable (EINTR: a fatal signal) and never gives EBUSY; and
    // re-issuing LAUNCH_UPDATE_VMSA after partial success re-encrypts vCPUs (kernels <= 7.0).
    assert_eq!(t(sev_id::LAUNCH_UPDATE_VMSA), &[] as &[i32]);
    assert_eq!(t(sev_id::SNP_LAUNCH_FINISH), &[] as &[i32]);
    // Every other SEV command runs under kvm->lock, taken non-killably: nothing is transient.
    for c in Vendor::Sev.table() {
        assert_eq!(c.transient, &[] as &[i32], "{}", c.name);
    }
}

/// A4: with MEM_ENC_FLAG_RETRY, an EBUSY or EINTR on LAUNCH_UPDATE_VMSA is not re-issued.
#[test]
fn launch_update_vmsa_is_issued_once_whatever_the_error() {
    for (fd, errno) in [(1020, libc::EBUSY), (1021, libc::EINTR)] {
        let vm = host(fd, errno);
        let mut cmd = memenc::mem_enc_cmd {
            flags: memenc::MEM_ENC_FLAG_RETRY,
            ..memenc::mem_enc_cmd::new(sev_id::LAUNCH_UPDATE_VMSA, 0)
        };
        let r = memenc::memory_encrypt_op(vm, &mut cmd);
        assert_eq!(r, Err(Errno(errno)));
        assert_eq!(seen(fd), vec![sev_id::LAUNCH_UPDATE_VMSA], "errno {errno}");
    }
}
