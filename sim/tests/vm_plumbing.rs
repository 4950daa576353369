//! The VM plumbing a VMM issues itself since memenc 0.2 (KVM_CREATE_VM, KVM_CREATE_VCPU,
//! KVM_ENABLE_CAP(SPLIT_IRQCHIP), KVM_SET_TSC_KHZ, KVM_SET_USER_MEMORY_REGION; plain ioctls,
//! sim_util): the same answers from this machine's /dev/kvm and the simulated `none` host, and
//! a whole TDX build on the simulated TDX hosts the way tdx-launch.c does it: plain KVM ioctls
//! for the plumbing, the C API for every TDX command, no `mem_enc_sim_*` constructor besides
//! the simulated /dev/kvm.

mod sim_util;

use std::os::fd::RawFd;

use memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION;
use memenc::capi::tdx::*;
use memenc::uapi::tdx_id;
use memenc_sim::compat::*;
use sha2::{Digest, Sha384};
use sim_util::{
    Mem, create_vcpu, create_vm, gpaw48, guest_memfd, memory_attributes, memslot, memslot2,
    op_retry, set_tsc_khz, split_irqchip, td_init_args,
};

const PAGE: usize = 4096;

fn close(fd: RawFd) {
    // SAFETY: a descriptor this test created and owns.
    unsafe { libc::close(fd) };
}

/// `r` as an errno (0 for a descriptor or success).
fn outcome(r: i32) -> i32 {
    r.min(0)
}

/// Every plumbing call a VMM makes before a launch, with its documented errors, on `kvm`.
/// Returns each step's (name, errno or 0).
fn scenario(kvm: RawFd) -> Vec<(&'static str, i32)> {
    let mut out = Vec::new();
    let mut step = |name, r| out.push((name, outcome(r)));
    step("create_vm(-1)", create_vm(-1, 0));
    step("create_vm(99)", create_vm(kvm, 99));
    // This is an AMD host: no TDX VM type.
    step("create_vm(TDX)", create_vm(kvm, 5));
    let vm = create_vm(kvm, 0);
    step("create_vm(0)", vm);
    assert!(vm >= 0, "{vm}");
    step("vm on a VM fd", create_vm(vm, 0));
    step("split_irqchip(4097)", split_irqchip(vm, 4097));
    step("split_irqchip(24)", split_irqchip(vm, 24));
    step("split_irqchip again", split_irqchip(vm, 24));
    step("tsc_khz(0)", set_tsc_khz(vm, 0));
    step("tsc_khz(1 GHz)", set_tsc_khz(vm, 1_000_000));
    // "ram" is 4 mapped pages, mapped until the VM is closed.
    let backing = Mem::new(4 * PAGE);
    let ram = backing.addr;
    let size = (4 * PAGE) as u64;
    step("memslot v1", memslot(vm, 0, 0, 0x10_0000, size, ram));
    step(
        "memslot v1 overlap",
        memslot(vm, 1, 0, 0x10_1000, size, ram),
    );
    step(
        "memslot v1 guest_memfd flag",
        memslot(vm, 2, 4, 0x20_0000, size, ram),
    );
    step(
        "memslot v1 misaligned",
        memslot(vm, 2, 0, 0x20_0800, size, ram),
    );
    step(
        "memslot v1 read-only",
        memslot(vm, 2, 2, 0x20_0000, size, ram),
    );
    step("memslot v1 delete", memslot(vm, 2, 2, 0x20_0000, 0, ram));
    let vcpu = create_vcpu(vm, 0);
    step("vcpu 0", vcpu);
    step("vcpu 0 again", create_vcpu(vm, 0));
    step("vcpu 5000", create_vcpu(vm, 5000));
    step("vcpu on /dev/kvm", create_vcpu(kvm, 1));
    step("vcpu(-1)", create_vcpu(-1, 1));
    step("tsc_khz after a vCPU", set_tsc_khz(vm, 0));
    step("split_irqchip after a vCPU", split_irqchip(vm, 0));
    close(vcpu);
    close(vm);
    out
}

fn expected() -> Vec<(&'static str, i32)> {
    use libc::{EBADF, EEXIST, EINVAL, ENOTTY};
    vec![
        ("create_vm(-1)", -EBADF),
        ("create_vm(99)", -EINVAL),
        ("create_vm(TDX)", -EINVAL),
        ("create_vm(0)", 0),
        ("vm on a VM fd", -ENOTTY),
        ("split_irqchip(4097)", -EINVAL),
        ("split_irqchip(24)", 0),
        ("split_irqchip again", -EEXIST),
        ("tsc_khz(0)", 0),
        ("tsc_khz(1 GHz)", 0),
        ("memslot v1", 0),
        ("memslot v1 overlap", -EEXIST),
        ("memslot v1 guest_memfd flag", -EINVAL),
        ("memslot v1 misaligned", -EINVAL),
        ("memslot v1 read-only", 0),
        ("memslot v1 delete", 0),
        ("vcpu 0", 0),
        ("vcpu 0 again", -EEXIST),
        ("vcpu 5000", -EINVAL),
        ("vcpu on /dev/kvm", -EINVAL),
        ("vcpu(-1)", -EBADF),
        ("tsc_khz after a vCPU", -EINVAL),
        ("split_irqchip after a vCPU", -EEXIST),
    ]
}

#[test]
fn simulated_none_host_answers_as_documented() {
    println!("simulated host: none");
    // SAFETY: a NUL-terminated profile name.
    let kvm = unsafe { mem_enc_sim_kvm_open(c"none".as_ptr()) };
    assert!(kvm >= 0);
    assert_eq!(scenario(kvm), expected());
    close(kvm);
}

#[test]
fn real_kvm_answers_as_the_simulated_none_host() {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let kvm = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if kvm < 0 {
        println!("SKIPPED: /dev/kvm not usable here");
        return;
    }
    if memenc::host::cpu_vendor() != memenc::Vendor::Sev {
        println!("SKIPPED: the expected answers are an AMD host's (no TDX VM type)");
        close(kvm);
        return;
    }
    println!("real host: /dev/kvm");
    assert_eq!(scenario(kvm), expected());
    close(kvm);
}

/// The MRTD of pages added with MEASURE, computed here from the TDX module's record
/// definitions (TDH.MEM.PAGE.ADD, then TDH.MR.EXTEND per 256-byte chunk).
fn mrtd(gpa: u64, image: &[u8]) -> Vec<u8> {
    let mut h = Sha384::new();
    for (p, page) in image.chunks(PAGE).enumerate() {
        let page_gpa = gpa + (p * PAGE) as u64;
        let mut rec = [0u8; 128];
        rec[..12].copy_from_slice(b"MEM.PAGE.ADD");
        rec[16..24].copy_from_slice(&page_gpa.to_le_bytes());
        h.update(rec);
        for (i, chunk) in page.chunks(256).enumerate() {
            let mut rec = [0u8; 128];
            rec[..9].copy_from_slice(b"MR.EXTEND");
            rec[16..24].copy_from_slice(&(page_gpa + 256 * i as u64).to_le_bytes());
            h.update(rec);
            h.update(chunk);
        }
    }
    h.finalize().to_vec()
}

/// A TD built the way tdx-launch.c builds it: plain KVM ioctls for the plumbing, the C API
/// for the TDX commands.
#[test]
fn simulated_tdx_builds_a_whole_td_through_the_c_api() {
    for profile in [c"tdx@6.16", c"tdx@6.19"] {
        println!("simulated host: {profile:?}");
        // SAFETY: a NUL-terminated profile name.
        let kvm = unsafe { mem_enc_sim_kvm_open(profile.as_ptr()) };
        assert!(kvm >= 0);
        let vm = create_vm(kvm, 5);
        assert!(vm >= 0, "{vm}");
        assert_eq!(set_tsc_khz(vm, 2_000_000), 0);
        // The kernel's order: no vCPU before INIT_VM (-EIO), none without the split irqchip.
        assert_eq!(outcome(create_vcpu(vm, 0)), -libc::EIO);
        let cpuid = [gpaw48()];
        let init = td_init_args(&cpuid);
        let mut hw = u64::MAX;
        // SAFETY: valid pointers and sizes.
        let r = unsafe { mem_enc_tdx_init_vm(vm, &init, size_of_val(&init), &mut hw) };
        assert_eq!((r, hw), (0, 0));
        assert_eq!(outcome(create_vcpu(vm, 0)), -libc::EINVAL);
        assert_eq!(split_irqchip(vm, 24), 0);
        let vcpu = create_vcpu(vm, 0);
        assert!(vcpu >= 0, "{vcpu}");
        // SAFETY: valid pointer.
        assert_eq!(unsafe { mem_enc_tdx_init_vcpu(vcpu, 0x4000, &mut hw) }, 0);

        let npages = 16;
        let mut shared = Mem::new(npages * PAGE);
        let size = (npages * PAGE) as u64;
        let gmem = guest_memfd(vm, size, 0);
        assert!(gmem >= 0);
        // "shared" stays mapped until the end.
        assert_eq!(memslot2(vm, 0, 0, size, shared.addr, gmem), 0);
        assert_eq!(memory_attributes(vm, 0, size, true), 0);
        for (i, b) in shared.bytes()[..4 * PAGE].iter_mut().enumerate() {
            *b = (i * 7 + 0x5a) as u8;
        }
        let add = mem_enc_tdx_init_mem_region_args {
            source: shared.addr as *const libc::c_void,
            gpa: 0,
            nr_pages: 4,
            flags: MEM_ENC_TDX_MEASURE_MEMORY_REGION,
            retry_limit: 0,
        };
        let mut reached = 0;
        // SAFETY: valid pointers and size.
        let r = unsafe {
            mem_enc_tdx_init_mem_region(vcpu, &add, size_of_val(&add), &mut reached, &mut hw)
        };
        assert_eq!((r, reached), (0, 4 * PAGE as u64));
        let (r, c) = op_retry(vm, tdx_id::FINALIZE_VM);
        assert_eq!((r, c.hw_error()), (0, 0));
        let mut digest = [0u8; 48];
        // SAFETY: 48 writable bytes.
        let n = unsafe { mem_enc_sim_launch_digest(vm, digest.as_mut_ptr(), 48) };
        assert_eq!(n, 48);
        assert_eq!(
            digest.to_vec(),
            mrtd(0, &shared.bytes()[..4 * PAGE]),
            "{profile:?}"
        );
        for fd in [vcpu, gmem, vm, kvm] {
            close(fd);
        }
    }
}
