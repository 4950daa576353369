//! The `mem_enc_last_stage()` rule: every function that carries out a KVM command for the
//! caller (`mem_enc_op`, the typed helpers, `mem_enc_mem_{register,unregister}_region`) sets it
//! on every return; no other function changes it. Results on simulated descriptors are
//! SIMULATED. (The VM/vCPU/memslot plumbing is the VMM's own since 0.2: plain KVM ioctls, see
//! sim_util.)

mod sim_util;

use std::ffi::c_char;
use std::ptr::{null, null_mut};

use memenc::abi::{MEM_ENC_FLAG_CONTINUE, mem_enc_cmd, mem_enc_cmd_status, mem_enc_sev_status};
use memenc::capi::fwerr::*;
use memenc::capi::mem::*;
use memenc::capi::op::*;
use memenc::capi::probe::*;
use memenc::negotiate::*;
use memenc::probe::mem_enc_caps;
use memenc_sim::compat::*;

const NONE: u32 = MEM_ENC_STAGE_NONE;
const MEMENC: u32 = MEM_ENC_STAGE_MEMENC;
const KVM: u32 = MEM_ENC_STAGE_KVM;
const FIRMWARE: u32 = MEM_ENC_STAGE_FIRMWARE;

fn close(fd: i32) {
    // SAFETY: a descriptor this test owns.
    unsafe { libc::close(fd) };
}

fn cmd(id: u32, flags: u32, sev_fd: i32) -> mem_enc_cmd {
    mem_enc_cmd {
        id,
        flags,
        data: 0,
        status: mem_enc_cmd_status {
            sev: mem_enc_sev_status {
                error: 0,
                sev_fd: sev_fd as u32,
            },
        },
    }
}

/// `mem_enc_op()` sets the stage like the typed helpers: none, memenc, kvm, firmware.
#[test]
fn mem_enc_op_sets_the_stage() {
    println!("simulated host: sev@6.1");
    // SAFETY: a NUL-terminated profile name.
    let kvm = unsafe { mem_enc_sim_kvm_open(c"sev@6.1".as_ptr()) };
    let vm = sim_util::create_vm(kvm, 0);
    assert!(vm >= 0);
    // SAFETY (whole block): every command is a valid 24-byte struct; the ids take no data.
    unsafe {
        // KVM_SEV_INIT (0): succeeds.
        let mut c = cmd(0, 0, 0);
        assert_eq!((mem_enc_op(vm, &mut c), mem_enc_last_stage()), (0, NONE));
        // A flag memenc refuses: no ioctl.
        let mut c = cmd(0, MEM_ENC_FLAG_CONTINUE, 0);
        assert_eq!(
            (mem_enc_op(vm, &mut c), mem_enc_last_stage()),
            (-libc::EINVAL, MEMENC)
        );
        // A negative descriptor: no ioctl.
        let mut c = cmd(0, 0, 0);
        assert_eq!(
            (mem_enc_op(-1, &mut c), mem_enc_last_stage()),
            (-libc::EBADF, MEMENC)
        );
        // INIT twice: the kernel refuses before the firmware.
        assert_eq!(
            (mem_enc_op(vm, &mut c), mem_enc_last_stage()),
            (-libc::EINVAL, KVM)
        );
        // LAUNCH_START (2) whose firmware call fails.
        let sev = mem_enc_sim_sev_device_open(vm);
        let fault = mem_enc_sim_fault {
            kind: MEM_ENC_SIM_FAULT_FW_STATUS,
            cmd_id: 2,
            value: 7,
            ..Default::default()
        };
        assert_eq!(mem_enc_sim_inject(vm, &fault, size_of_val(&fault)), 0);
        let mut start = [0u8; 64];
        let mut c = cmd(2, 0, sev);
        c.data = start.as_mut_ptr() as u64;
        assert_eq!(
            (mem_enc_op(vm, &mut c), mem_enc_last_stage()),
            (-libc::EIO, FIRMWARE)
        );
        // The NULL probe: a SEV VM answers 0, a VM without a backend -ENOTTY.
        assert_eq!(
            (mem_enc_op(vm, null_mut()), mem_enc_last_stage()),
            (0, NONE)
        );
        // SAFETY: a NUL-terminated profile name.
        let plain = mem_enc_sim_vm_create(c"none".as_ptr());
        assert_eq!(
            (mem_enc_op(plain, null_mut()), mem_enc_last_stage()),
            (-libc::ENOTTY, KVM)
        );
        assert_eq!(
            (mem_enc_op(-1, null_mut()), mem_enc_last_stage()),
            (-libc::EBADF, MEMENC)
        );
        for fd in [plain, sev, vm, kvm] {
            close(fd);
        }
    }
}

/// Probing, negotiation, the simulator's test support and the string functions leave the
/// stage of the last KVM command alone, failing or not.
#[test]
fn other_functions_leave_the_stage_alone() {
    // SAFETY: a NUL-terminated profile name.
    let kvm = unsafe { mem_enc_sim_kvm_open(c"snp@6.18".as_ptr()) };
    assert!(kvm >= 0);
    let vm = sim_util::create_vm(kvm, 4);
    // SNP_LAUNCH_START before INIT2: the kernel refuses (-ENOTTY, no firmware).
    let start = memenc::capi::snp::mem_enc_snp_launch_start_args::default();
    let sev = mem_enc_sim_sev_device_open(vm);
    // SAFETY: valid pointers and size.
    let r = unsafe { memenc::capi::snp::mem_enc_snp_launch_start(vm, sev, &start, 24, null_mut()) };
    assert_eq!((r, mem_enc_last_stage()), (-libc::ENOTTY, KVM));

    let mut caps = mem_enc_caps::default();
    let req = mem_enc_launch_request {
        accept_vm_types: 1 << MEM_ENC_VM_TYPE_TDX,
        ..Default::default()
    };
    let mut settings = mem_enc_launch_settings::default();
    let mut msg = [0 as c_char; 64];
    let mut buf = [0 as c_char; MEM_ENC_FW_DESCRIBE_MAX];
    // SAFETY (whole block): valid pointers and sizes, or NULL where refused.
    unsafe {
        assert_eq!(mem_enc_probe(kvm, &mut caps, size_of_val(&caps)), 0);
        assert_eq!(mem_enc_probe(kvm, null_mut(), 0), -libc::EINVAL);
        assert_eq!(
            mem_enc_negotiate_launch(
                &caps,
                size_of_val(&caps),
                &req,
                size_of_val(&req),
                &mut settings,
                size_of_val(&settings),
                msg.as_mut_ptr(),
                msg.len()
            ),
            -libc::EOPNOTSUPP
        );
        assert_eq!(mem_enc_sim_vm_create(null()), -libc::EINVAL);
        assert!(mem_enc_sim_vcpu_create(-1, 0) < 0);
        assert!(mem_enc_sim_launch_digest(-1, null_mut(), 0) < 0);
        let _ = mem_enc_strerror(-libc::EIO);
        let _ = mem_enc_version();
        let _ = mem_enc_fw_strerror(1, 7);
        assert!(mem_enc_fw_describe(1, 7, buf.as_mut_ptr(), buf.len()) > 0);
        let _ = mem_enc_cmd_flags_supported(1, 0);
    }
    assert_eq!(mem_enc_last_stage(), KVM, "still the SNP_LAUNCH_START's");

    // The memory exports set it too.
    let mut backing = vec![0u8; 4096];
    let addr = backing.as_mut_ptr().cast::<libc::c_void>();
    // SAFETY: 4096 bytes at "addr", alive for the call.
    unsafe {
        assert_eq!(mem_enc_mem_register_region(-1, addr, 4096), -libc::EBADF);
        assert_eq!(mem_enc_last_stage(), MEMENC);
        // Before INIT2 the VM is no SEV guest: the kernel refuses (-ENOTTY).
        let r = mem_enc_mem_register_region(vm, addr, 4096);
        assert_eq!((r, mem_enc_last_stage()), (-libc::ENOTTY, KVM));
    }
    // The VMM's own plumbing ioctls, not memenc's, leave it alone.
    let g = sim_util::guest_memfd(vm, 4096, 0);
    assert!(g >= 0);
    assert_eq!(mem_enc_last_stage(), KVM);
    let mut c = cmd(22, 0, 0);
    // SAFETY: NULL is the probe; it succeeds on a SEV-family VM and clears the stage.
    assert_eq!(unsafe { mem_enc_op(vm, null_mut()) }, 0);
    assert_eq!(mem_enc_last_stage(), NONE);

    // Per thread, like errno: another thread's failure does not show here.
    std::thread::spawn(move || {
        // SAFETY: a valid 24-byte command.
        assert_eq!(unsafe { mem_enc_op(-1, &mut c) }, -libc::EBADF);
        assert_eq!(mem_enc_last_stage(), MEMENC);
    })
    .join()
    .unwrap();
    assert_eq!(mem_enc_last_stage(), NONE);
    for fd in [g, sev, vm, kvm] {
        close(fd);
    }
}
