//! The VM plumbing exports (`mem_enc_vm_create`, `mem_enc_vcpu_create`,
//! `mem_enc_vm_enable_split_irqchip`, `mem_enc_vm_set_tsc_khz`,
//! `mem_enc_mem_set_user_memory_region`): the same answers from this machine's /dev/kvm and the
//! simulated `none` host, and a whole TDX build on the simulated TDX hosts through the C API
//! only (no raw ioctl, no `mem_enc_sim_*` constructor besides the simulated /dev/kvm).

mod sim_util;

use std::os::fd::RawFd;

use memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION;
use memenc::capi::fwerr::*;
use memenc::capi::mem::*;
use memenc::capi::tdx::*;
use memenc::capi::vm::*;
use memenc_sim::compat::*;
use sha2::{Digest, Sha384};
use sim_util::{Mem, gpaw48, td_init_args};

const PAGE: usize = 4096;

fn close(fd: RawFd) {
    // SAFETY: a descriptor this test created and owns.
    unsafe { libc::close(fd) };
}

/// `r` as an errno (0 for a descriptor or success) with the stage it left behind.
fn outcome(r: i32) -> (i32, u32) {
    (r.min(0), mem_enc_last_stage())
}

const NONE: u32 = MEM_ENC_STAGE_NONE;
const KVM: u32 = MEM_ENC_STAGE_KVM;
const MEMENC: u32 = MEM_ENC_STAGE_MEMENC;

/// Every plumbing call a VMM makes before a launch, with its documented errors, on `kvm`.
/// Returns each step's (name, errno or 0, stage).
fn scenario(kvm: RawFd) -> Vec<(&'static str, (i32, u32))> {
    let mut out = Vec::new();
    let mut step = |name, r| out.push((name, outcome(r)));
    step("create_vm(-1)", mem_enc_vm_create(-1, 0));
    step("create_vm(99)", mem_enc_vm_create(kvm, 99));
    // This is an AMD host: no TDX VM type.
    step("create_vm(TDX)", mem_enc_vm_create(kvm, 5));
    let vm = mem_enc_vm_create(kvm, 0);
    step("create_vm(0)", vm);
    assert!(vm >= 0, "{vm}");
    step("vm on a VM fd", mem_enc_vm_create(vm, 0));
    step(
        "split_irqchip(4097)",
        mem_enc_vm_enable_split_irqchip(vm, 4097),
    );
    step("split_irqchip(24)", mem_enc_vm_enable_split_irqchip(vm, 24));
    step(
        "split_irqchip again",
        mem_enc_vm_enable_split_irqchip(vm, 24),
    );
    step("tsc_khz(0)", mem_enc_vm_set_tsc_khz(vm, 0));
    step("tsc_khz(1 GHz)", mem_enc_vm_set_tsc_khz(vm, 1_000_000));
    let backing = Mem::new(4 * PAGE);
    let ram = backing.addr as *mut libc::c_void;
    let size = (4 * PAGE) as u64;
    // SAFETY (each call): "ram" is 4 mapped pages, mapped until the VM is closed.
    unsafe {
        step(
            "memslot v1",
            mem_enc_mem_set_user_memory_region(vm, 0, 0, 0x10_0000, size, ram),
        );
        step(
            "memslot v1 overlap",
            mem_enc_mem_set_user_memory_region(vm, 1, 0, 0x10_1000, size, ram),
        );
        step(
            "memslot v1 guest_memfd flag",
            mem_enc_mem_set_user_memory_region(vm, 2, 4, 0x20_0000, size, ram),
        );
        step(
            "memslot v1 misaligned",
            mem_enc_mem_set_user_memory_region(vm, 2, 0, 0x20_0800, size, ram),
        );
        step(
            "memslot v1 read-only",
            mem_enc_mem_set_user_memory_region(vm, 2, 2, 0x20_0000, size, ram),
        );
        step(
            "memslot v1 delete",
            mem_enc_mem_set_user_memory_region(vm, 2, 2, 0x20_0000, 0, ram),
        );
    }
    let vcpu = mem_enc_vcpu_create(vm, 0);
    step("vcpu 0", vcpu);
    step("vcpu 0 again", mem_enc_vcpu_create(vm, 0));
    step("vcpu 5000", mem_enc_vcpu_create(vm, 5000));
    step("vcpu on /dev/kvm", mem_enc_vcpu_create(kvm, 1));
    step("vcpu(-1)", mem_enc_vcpu_create(-1, 1));
    step("tsc_khz after a vCPU", mem_enc_vm_set_tsc_khz(vm, 0));
    step(
        "split_irqchip after a vCPU",
        mem_enc_vm_enable_split_irqchip(vm, 0),
    );
    close(vcpu);
    close(vm);
    out
}

fn expected() -> Vec<(&'static str, (i32, u32))> {
    use libc::{EBADF, EEXIST, EINVAL, ENOTTY};
    vec![
        ("create_vm(-1)", (-EBADF, MEMENC)),
        ("create_vm(99)", (-EINVAL, KVM)),
        ("create_vm(TDX)", (-EINVAL, KVM)),
        ("create_vm(0)", (0, NONE)),
        ("vm on a VM fd", (-ENOTTY, KVM)),
        ("split_irqchip(4097)", (-EINVAL, KVM)),
        ("split_irqchip(24)", (0, NONE)),
        ("split_irqchip again", (-EEXIST, KVM)),
        ("tsc_khz(0)", (0, NONE)),
        ("tsc_khz(1 GHz)", (0, NONE)),
        ("memslot v1", (0, NONE)),
        ("memslot v1 overlap", (-EEXIST, KVM)),
        ("memslot v1 guest_memfd flag", (-EINVAL, KVM)),
        ("memslot v1 misaligned", (-EINVAL, KVM)),
        ("memslot v1 read-only", (0, NONE)),
        ("memslot v1 delete", (0, NONE)),
        ("vcpu 0", (0, NONE)),
        ("vcpu 0 again", (-EEXIST, KVM)),
        ("vcpu 5000", (-EINVAL, KVM)),
        ("vcpu on /dev/kvm", (-EINVAL, KVM)),
        ("vcpu(-1)", (-EBADF, MEMENC)),
        ("tsc_khz after a vCPU", (-EINVAL, KVM)),
        ("split_irqchip after a vCPU", (-EEXIST, KVM)),
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

/// A TD built the way tdx-launch.c builds it, through exports only.
#[test]
fn simulated_tdx_builds_a_whole_td_through_the_c_api() {
    for profile in [c"tdx@6.16", c"tdx@6.19"] {
        println!("simulated host: {profile:?}");
        // SAFETY: a NUL-terminated profile name.
        let kvm = unsafe { mem_enc_sim_kvm_open(profile.as_ptr()) };
        assert!(kvm >= 0);
        let vm = mem_enc_vm_create(kvm, 5);
        assert!(vm >= 0, "{vm}");
        assert_eq!(mem_enc_vm_set_tsc_khz(vm, 2_000_000), 0);
        // The kernel's order: no vCPU before INIT_VM (-EIO), none without the split irqchip.
        assert_eq!(outcome(mem_enc_vcpu_create(vm, 0)), (-libc::EIO, KVM));
        let cpuid = [gpaw48()];
        let init = td_init_args(&cpuid);
        let mut hw = u64::MAX;
        // SAFETY: valid pointers and sizes.
        let r = unsafe { mem_enc_tdx_init_vm(vm, &init, size_of_val(&init), &mut hw) };
        assert_eq!((r, hw), (0, 0));
        assert_eq!(outcome(mem_enc_vcpu_create(vm, 0)), (-libc::EINVAL, KVM));
        assert_eq!(outcome(mem_enc_vm_enable_split_irqchip(vm, 24)), (0, NONE));
        let vcpu = mem_enc_vcpu_create(vm, 0);
        assert!(vcpu >= 0, "{vcpu}");
        assert_eq!(mem_enc_last_stage(), NONE);
        // SAFETY: valid pointer.
        assert_eq!(unsafe { mem_enc_tdx_init_vcpu(vcpu, 0x4000, &mut hw) }, 0);

        let npages = 16;
        let mut shared = Mem::new(npages * PAGE);
        let size = (npages * PAGE) as u64;
        let gmem = mem_enc_mem_create_guest_memfd(vm, size, 0);
        assert!(gmem >= 0);
        let region = mem_enc_mem_region_args {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: size,
            userspace_addr: shared.addr as *mut libc::c_void,
            guest_memfd_offset: 0,
            guest_memfd: gmem,
            reserved: 0,
        };
        // SAFETY: valid pointer and size; "shared" stays mapped.
        let r = unsafe { mem_enc_mem_set_user_memory_region2(vm, &region, size_of_val(&region)) };
        assert_eq!(r, 0);
        assert_eq!(mem_enc_mem_set_private(vm, 0, size, 1), 0);
        for (i, b) in shared.bytes()[..4 * PAGE].iter_mut().enumerate() {
            *b = (i * 7 + 0x5a) as u8;
        }
        let add = mem_enc_tdx_init_mem_region_args {
            source: shared.addr as *const libc::c_void,
            gpa: 0,
            nr_pages: 4,
            flags: MEM_ENC_TDX_MEASURE_MEMORY_REGION,
            reserved: 0,
        };
        let mut reached = 0;
        // SAFETY: valid pointers and size.
        let r = unsafe {
            mem_enc_tdx_init_mem_region(vcpu, &add, size_of_val(&add), &mut reached, &mut hw)
        };
        assert_eq!((r, reached), (0, 4 * PAGE as u64));
        // SAFETY: valid pointer.
        assert_eq!(unsafe { mem_enc_tdx_finalize_vm(vm, &mut hw) }, 0);
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
