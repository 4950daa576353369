//! `memory_encrypt_op` (the Rust face of `mem_enc_op`) against the real kernel. Needs
//! /dev/kvm; prints a visible SKIPPED line and returns where it is absent.

use std::os::fd::{AsRawFd, BorrowedFd};

use kvm_ioctls::Kvm;
use memenc::{Errno, MEM_ENC_FLAG_RETRY, Vendor, mem_enc_cmd};

fn kvm_or_skip(test: &str) -> Option<Kvm> {
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            println!("SKIPPED: {test}: /dev/kvm not available ({e})");
            None
        }
    }
}

/// kvm-ioctls' descriptors implement AsRawFd only; borrow them for memenc's API.
fn borrow(fd: &impl AsRawFd) -> BorrowedFd<'_> {
    // SAFETY: the descriptor stays open while the borrow (tied to `fd`) lives.
    unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

/// What the raw ioctl answers for `cmd` on `fd`: the reference for the differential checks.
fn raw_ioctl(fd: i32, cmd: &mut mem_enc_cmd) -> Result<(), Errno> {
    // SAFETY: cmd is a valid 24-byte command whose data is 0 (no parameter struct).
    let r = unsafe {
        libc::ioctl(
            fd,
            memenc::uapi::KVM_MEMORY_ENCRYPT_OP as libc::Ioctl,
            cmd as *mut mem_enc_cmd,
        )
    };
    if r < 0 { Err(Errno::last()) } else { Ok(()) }
}

#[test]
fn vm_and_vcpu_descriptors_answer_like_the_raw_ioctl() {
    let Some(kvm) = kvm_or_skip("vm_and_vcpu_descriptors_answer_like_the_raw_ioctl") else {
        return;
    };
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let vcpu = vm.create_vcpu(0).expect("KVM_CREATE_VCPU");
    let fds = [("vm", vm.as_raw_fd()), ("vcpu", vcpu.as_raw_fd())];
    for (what, fd) in fds {
        for id in [0u32, 1, 2, 3, 4, 5, 22, 100, 101, 102, 103, 500] {
            let mut raw = mem_enc_cmd::new(id, 0);
            let mut lib = raw;
            let expect = raw_ioctl(fd, &mut raw);
            // SAFETY: fd is open for the duration of this test.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let got = memenc::memory_encrypt_op(borrowed, &mut lib);
            assert_eq!(got, expect, "{what} id {id}");
            assert_eq!(lib.hw_error(), raw.hw_error(), "{what} id {id} status");
        }
    }
    // The NULL-argument probe: this host's answer, named.
    let probe = memenc::encryption_enabled(vm.as_raw_fd());
    println!("real /dev/kvm: encryption backend on a default VM: {probe:?}");
    if memenc::host::cpu_vendor() != Vendor::Tdx {
        // AMD without SEV, or any non-Intel host: no backend on a default VM.
        assert!(
            probe.is_ok() || probe == Err(Errno(libc::ENOTTY)),
            "{probe:?}"
        );
    }
}

#[test]
fn library_flags_are_consumed_and_unknown_bits_refused_on_a_real_vm() {
    let Some(kvm) = kvm_or_skip("library_flags_are_consumed_and_unknown_bits_refused_on_a_real_vm")
    else {
        return;
    };
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    let mut plain = mem_enc_cmd::new(22, 0);
    let expect = raw_ioctl(vm.as_raw_fd(), &mut plain);
    // RETRY is stripped before the ioctl: the kernel's answer is the same as without it
    // (on a host without a backend the error is not transient, so no retry happens).
    let mut with_retry = mem_enc_cmd {
        flags: MEM_ENC_FLAG_RETRY,
        ..mem_enc_cmd::new(22, 0)
    };
    assert_eq!(
        memenc::memory_encrypt_op(borrow(&vm), &mut with_retry),
        expect
    );
    assert_eq!(with_retry.flags, MEM_ENC_FLAG_RETRY, "caller's flags kept");
    // A bit nobody honours: refused before the kernel, struct untouched.
    let mut bad = mem_enc_cmd {
        flags: 1 << 7,
        ..mem_enc_cmd::new(22, 0)
    };
    bad.status.sev.error = 42;
    assert_eq!(
        memenc::memory_encrypt_op(borrow(&vm), &mut bad),
        Err(Errno(libc::EINVAL))
    );
    assert_eq!(bad.sev().error, 42, "rejected command left as it was");
}
