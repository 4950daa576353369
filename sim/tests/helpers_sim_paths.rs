//! Success paths (and the first documented error) of the SEV helpers the launch tests do not
//! reach: LAUNCH_SECRET, DBG_DECRYPT/DBG_ENCRYPT, the RECEIVE_* migration commands, and SNP
//! ENABLE_REQ_CERTS. Every result here is SIMULATED (the model follows kernel-abi.md).

use std::os::fd::{BorrowedFd, RawFd};

use memenc::Errno;
use memenc::fwerr::Stage;
use memenc::helpers::{sev, snp};
use memenc_sim::inprocess as sim;

const PAGE: usize = 4096;

fn bfd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: simulated descriptors stay open for the whole test process.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// A page-aligned buffer of `n` pages (leaked: the model may keep its address).
fn pages(n: usize, fill: u8) -> &'static mut [u8] {
    let layout = std::alloc::Layout::from_size_align(n * PAGE, PAGE).unwrap();
    // SAFETY: a non-zero size; the allocation is never freed.
    let p = unsafe { std::alloc::alloc(layout) };
    assert!(!p.is_null());
    // SAFETY: n * PAGE bytes just allocated.
    let s = unsafe { std::slice::from_raw_parts_mut(p, n * PAGE) };
    s.fill(fill);
    s
}

/// A legacy SEV guest (sev@6.1) launched up to LAUNCH_MEASURE, with the given policy.
fn measured_sev_guest(policy: u32) -> RawFd {
    let vm = sim::vm_create("sev@6.1", 0).unwrap();
    let dev = sim::sev_device_open(vm).unwrap();
    let fd = bfd(vm);
    sev::init(fd).unwrap();
    let start = sev::Start {
        handle: 0,
        policy,
        cert: &[],
        session: &[],
    };
    sev::launch_start(fd, bfd(dev), &start).unwrap();
    let image = pages(1, 0x5a);
    sev::launch_update_data(fd, image.as_ptr() as u64, PAGE).unwrap();
    assert_eq!(sev::launch_measure(fd).unwrap().len(), 48);
    vm
}

#[test]
fn simulated_launch_secret_after_measure_then_finish() {
    let vm = measured_sev_guest(0);
    let fd = bfd(vm);
    let guest = pages(1, 0);
    let packet = sev::Packet {
        hdr: &[1; 52],
        guest_uaddr: guest.as_ptr() as u64,
        guest_len: 64,
        trans: &[2; 64],
    };
    sev::launch_secret(fd, &packet).unwrap();
    sev::launch_finish(fd).unwrap();
    assert_eq!(sev::guest_status(fd).unwrap().state, 3, "RUNNING");

    // Before INIT the kernel refuses LAUNCH_SECRET with -ENOTTY, before the firmware.
    let fresh = sim::vm_create("sev@6.1", 0).unwrap();
    let e = sev::launch_secret(bfd(fresh), &packet).unwrap_err();
    assert_eq!(e.errno, Errno(libc::ENOTTY));
    assert_eq!(e.stage, Stage::Kvm);
}

#[test]
fn simulated_debug_round_trip_follows_the_policy() {
    // Policy 0: debugging allowed. DBG_ENCRYPT then DBG_DECRYPT gives the bytes back.
    let vm = measured_sev_guest(0);
    let fd = bfd(vm);
    let guest = pages(1, 0);
    let secret: Vec<u8> = (0..64u8).collect();
    sev::dbg_encrypt(fd, &secret, guest.as_ptr() as u64).unwrap();
    let mut back = vec![0u8; 64];
    sev::dbg_decrypt(fd, guest.as_ptr() as u64, &mut back).unwrap();
    assert_eq!(back, secret);

    // Policy NODBG (bit 0): the firmware refuses, and the error names it.
    let vm = measured_sev_guest(1);
    let e = sev::dbg_decrypt(bfd(vm), guest.as_ptr() as u64, &mut back).unwrap_err();
    assert_eq!(e.errno, Errno(libc::EIO), "{e}");
    assert_eq!(e.stage, Stage::Firmware, "{e}");
    assert_ne!(e.status, Some(0), "{e}");
    // Zero length is refused by the kernel's own check (or memenc's), never issued as a no-op.
    assert!(sev::dbg_decrypt(bfd(vm), guest.as_ptr() as u64, &mut []).is_err());
}

#[test]
fn simulated_receive_flow() {
    let vm = sim::vm_create("sev@6.1", 0).unwrap();
    let dev = sim::sev_device_open(vm).unwrap();
    let fd = bfd(vm);
    let guest = pages(1, 0);
    let packet = sev::Packet {
        hdr: &[3; 52],
        guest_uaddr: guest.as_ptr() as u64,
        guest_len: 256,
        trans: &[4; 256],
    };
    // The kernel quirk: RECEIVE_UPDATE_DATA before INIT is -EINVAL, not -ENOTTY.
    let e = sev::receive_update_data(fd, &packet).unwrap_err();
    assert_eq!(e.errno, Errno(libc::EINVAL));

    sev::init(fd).unwrap();
    let start = sev::Start {
        handle: 0,
        policy: 0,
        cert: &[5; 64],
        session: &[6; 64],
    };
    let handle = sev::receive_start(fd, bfd(dev), &start).unwrap();
    assert_ne!(handle, 0);
    sev::receive_update_data(fd, &packet).unwrap();
    sev::receive_finish(fd).unwrap();
    let status = sev::guest_status(fd).unwrap();
    assert_eq!((status.handle, status.state), (handle, 3), "RUNNING");

    // RECEIVE_START needs both blobs: refused before the firmware.
    let other = sim::vm_create("sev@6.1", 0).unwrap();
    sev::init(bfd(other)).unwrap();
    let no_session = sev::Start {
        session: &[],
        ..start
    };
    assert!(sev::receive_start(bfd(other), bfd(dev), &no_session).is_err());
}

#[test]
fn simulated_enable_req_certs_only_before_vcpus_and_only_where_the_kernel_has_it() {
    // snp@7.0 has id 103: allowed on an SNP guest before any vCPU exists.
    let vm = sim::vm_create("snp@7.0", 4).unwrap();
    let fd = bfd(vm);
    sev::init2(fd, &sev::Init2::default()).unwrap();
    snp::enable_req_certs(fd).unwrap();
    sim::vcpu_create(vm, 0).unwrap();
    let e = snp::enable_req_certs(fd).unwrap_err();
    assert_eq!(e.errno, Errno(libc::EINVAL), "after a vCPU: {e}");

    // Not an SNP guest: -EINVAL.
    let plain = sim::vm_create("snp@7.0", 0).unwrap();
    let e = snp::enable_req_certs(bfd(plain)).unwrap_err();
    assert_eq!(e.errno, Errno(libc::EINVAL), "{e}");

    // 6.11, 6.18 and 6.19 predate the command (it is 7.0's): the kernel answers -EPERM for
    // ids below 100 only, so an unknown id 103 on an SNP guest is its default -EINVAL.
    for profile in ["snp@6.11", "snp@6.18", "snp@6.19"] {
        let old = sim::vm_create(profile, 4).unwrap();
        sev::init2(bfd(old), &sev::Init2::default()).unwrap();
        let e = snp::enable_req_certs(bfd(old)).unwrap_err();
        assert_eq!(e.errno, Errno(libc::EINVAL), "{profile}: {e}");
    }
}
