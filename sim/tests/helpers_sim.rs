//! Success paths and documented errors of the typed helpers on the simulated host (branch
//! `sim`, merged). Every result here is SIMULATED: the model follows kernel-abi.md, not a
//! real PSP or TDX module.

use std::ffi::{CStr, c_void};
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::{null, null_mut};

use memenc::Errno;
use memenc::capi::fwerr::*;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::fwerr::Stage;
use memenc::helpers::{mem, snp, tdx};
use memenc::uapi::{self, sev_id, tdx_id};
use memenc_sim::inprocess::{self as sim, Effect};
use sim_util::{gpaw48, op_retry, td_init_args};

mod sim_util;

const PAGE: usize = 4096;

fn bfd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: simulated descriptors stay open for the whole test process.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn fw_name(vendor: u32, status: u64) -> String {
    // SAFETY: static NUL-terminated string.
    unsafe { CStr::from_ptr(mem_enc_fw_strerror(vendor, status)) }
        .to_string_lossy()
        .into_owned()
}

/// Page-aligned, zeroed memory (leaked: it may back a memslot for the rest of the test).
fn pages(n: usize, fill: u8) -> *mut u8 {
    // SAFETY: an anonymous mapping; never unmapped.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            n * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: n pages just mapped.
    unsafe { std::ptr::write_bytes(p.cast::<u8>(), fill, n * PAGE) };
    p.cast()
}

/// A guest_memfd-backed memslot over `npages` at GPA 0, all private (the VMM's own KVM
/// ioctls; the guest_memfd stays open for the rest of the test).
fn private_memory(vm: RawFd, npages: usize) {
    let size = (npages * PAGE) as u64;
    sim_util::private_memory(vm, size, pages(npages, 0) as u64);
}

// ---------------------------------------------------------------------------------------------
// SEV (legacy INIT on a 6.1-era host)

fn sev_vm() -> (RawFd, RawFd) {
    let vm = sim::vm_create("sev@6.1", 0).expect("simulated sev@6.1 VM");
    let sev = sim::sev_device_open(vm).expect("simulated /dev/sev");
    (vm, sev)
}

fn sev_launched(vm: RawFd, sev: RawFd) -> u32 {
    let mut fw = u32::MAX;
    // SAFETY (whole block): every pointer is valid for its stated size.
    unsafe {
        let (r, c) = op_retry(vm, sev_id::INIT);
        assert_eq!((r, c.sev().error), (0, 0));
        let start = mem_enc_sev_start_args {
            handle: 0,
            policy: 0x1,
            cert: null(),
            cert_len: 0,
            session: null(),
            session_len: 0,
        };
        let mut handle = 0;
        assert_eq!(
            mem_enc_sev_launch_start(vm, sev, &start, 40, &mut handle, &mut fw),
            0
        );
        assert_ne!(handle, 0, "the firmware assigned a handle");
        let image = pages(2, 0xC3);
        assert_eq!(
            mem_enc_sev_launch_update_data(vm, image.cast(), 2 * PAGE, &mut fw),
            0
        );
        handle
    }
}

#[test]
fn simulated_sev_launch_measure_and_finish() {
    let (vm, sev) = sev_vm();
    let handle = sev_launched(vm, sev);
    let mut fw = u32::MAX;
    // SAFETY (whole block): every pointer is valid for its stated size.
    unsafe {
        // Pure length query: -ENOSPC with the needed length, no measurement taken.
        let mut len = 0usize;
        assert_eq!(
            mem_enc_sev_launch_measure(vm, null_mut(), &mut len, &mut fw),
            -libc::ENOSPC
        );
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_MEMENC);
        assert_eq!(fw, 0);
        let needed = len;
        assert!(needed > 0);
        // Too small: -ENOSPC, buffer untouched, never truncated.
        let mut small = vec![0xEEu8; needed - 1];
        let mut len = small.len();
        assert_eq!(
            mem_enc_sev_launch_measure(vm, small.as_mut_ptr(), &mut len, &mut fw),
            -libc::ENOSPC
        );
        assert_eq!(len, needed);
        assert!(small.iter().all(|&b| b == 0xEE));
        let (mut st_handle, mut state) = (0, 0);
        assert_eq!(
            mem_enc_sev_guest_status(vm, &mut st_handle, null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(
            (st_handle, state),
            (handle, 1),
            "still LAUNCHING: no measurement was taken"
        );
        // Big enough: the whole measurement.
        let mut buf = vec![0u8; needed + 100];
        let mut len = buf.len();
        assert_eq!(
            mem_enc_sev_launch_measure(vm, buf.as_mut_ptr(), &mut len, &mut fw),
            0
        );
        assert_eq!((len, fw), (needed, 0));
        assert!(buf[..len].iter().any(|&b| b != 0));
        assert_eq!(
            mem_enc_sev_guest_status(vm, null_mut(), null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(state, 2, "SECRET after LAUNCH_MEASURE");
        assert_eq!(op_retry(vm, sev_id::LAUNCH_FINISH).0, 0);
        assert_eq!(
            mem_enc_sev_guest_status(vm, null_mut(), null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(state, 3, "RUNNING");
        // Out of order: the firmware refuses, and says why.
        let (r, c) = op_retry(vm, sev_id::LAUNCH_FINISH);
        fw = c.sev().error;
        assert_eq!(r, -libc::EIO);
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_FIRMWARE);
        assert!(
            fw_name(memenc::MEM_ENC_VENDOR_SEV, u64::from(fw))
                .starts_with("SEV_RET_INVALID_GUEST_STATE"),
            "fw_error {fw}"
        );
        // Attestation report: length query semantics again.
        let nonce = [7u8; 16];
        let mut len = 0usize;
        assert_eq!(
            mem_enc_sev_get_attestation_report(
                vm,
                nonce.as_ptr(),
                16,
                null_mut(),
                &mut len,
                &mut fw
            ),
            -libc::ENOSPC
        );
        let mut report = vec![0u8; len];
        let mut got = report.len();
        assert_eq!(
            mem_enc_sev_get_attestation_report(
                vm,
                nonce.as_ptr(),
                16,
                report.as_mut_ptr(),
                &mut got,
                &mut fw
            ),
            0,
            "fw_error {fw}"
        );
        assert_eq!(got, report.len());
    }
}

#[test]
fn simulated_sev_send_never_issued_into_a_small_buffer() {
    let (vm, sev) = sev_vm();
    sev_launched(vm, sev);
    let mut fw = u32::MAX;
    // SAFETY (whole block): every pointer is valid for its stated size.
    unsafe {
        let mut len = 64usize;
        let mut m = vec![0u8; 64];
        assert_eq!(
            mem_enc_sev_launch_measure(vm, m.as_mut_ptr(), &mut len, &mut fw),
            0
        );
        assert_eq!(op_retry(vm, sev_id::LAUNCH_FINISH).0, 0);
        let pdh = [1u8; 32];
        let args = mem_enc_sev_send_start_args {
            pdh_cert: pdh.as_ptr(),
            pdh_cert_len: pdh.len(),
            plat_certs: pdh.as_ptr(),
            plat_certs_len: pdh.len(),
            amd_certs: pdh.as_ptr(),
            amd_certs_len: pdh.len(),
        };
        let mut session = [0u8; 4];
        let mut session_len = session.len();
        let mut policy = 0;
        assert_eq!(
            mem_enc_sev_send_start(
                vm,
                &args,
                48,
                session.as_mut_ptr(),
                &mut session_len,
                &mut policy,
                &mut fw
            ),
            -libc::ENOSPC
        );
        assert!(session_len > 4);
        let mut state = 0;
        assert_eq!(
            mem_enc_sev_guest_status(vm, null_mut(), null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(
            state, 3,
            "still RUNNING: SEND_START itself was never issued"
        );
        let mut session = vec![0u8; session_len];
        assert_eq!(
            mem_enc_sev_send_start(
                vm,
                &args,
                48,
                session.as_mut_ptr(),
                &mut session_len,
                &mut policy,
                &mut fw
            ),
            0,
            "fw_error {fw}"
        );
        assert_eq!(policy, 0x1);
        assert_eq!(
            mem_enc_sev_guest_status(vm, null_mut(), null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(state, 5, "SENDING");
        // SEND_UPDATE_DATA: both lengths come back on -ENOSPC.
        let guest = pages(1, 0x11);
        let (mut hl, mut tl) = (1usize, 1usize);
        let (mut h, mut t) = ([0u8; 1], [0u8; 1]);
        assert_eq!(
            mem_enc_sev_send_update_data(
                vm,
                guest.cast(),
                256,
                h.as_mut_ptr(),
                &mut hl,
                t.as_mut_ptr(),
                &mut tl,
                &mut fw
            ),
            -libc::ENOSPC
        );
        assert!(hl > 1 && tl >= 256, "{hl} {tl}");
        let (mut hdr, mut trans) = (vec![0u8; hl], vec![0u8; tl]);
        assert_eq!(
            mem_enc_sev_send_update_data(
                vm,
                guest.cast(),
                256,
                hdr.as_mut_ptr(),
                &mut hl,
                trans.as_mut_ptr(),
                &mut tl,
                &mut fw
            ),
            0,
            "fw_error {fw}"
        );
        assert_eq!(op_retry(vm, sev_id::SEND_CANCEL).0, 0);
        assert_eq!(
            mem_enc_sev_guest_status(vm, null_mut(), null_mut(), &mut state, &mut fw),
            0
        );
        assert_eq!(state, 3, "RUNNING again after SEND_CANCEL");
    }
}

// ---------------------------------------------------------------------------------------------
// SNP

const SNP_PAGES: u64 = 6;

/// An SNP VM after INIT2 and SNP_LAUNCH_START, with private memory: `(vm, sev)`.
fn snp_started(profile: &str) -> (RawFd, RawFd) {
    let vm = sim::vm_create(profile, u64::from(uapi::KVM_X86_SNP_VM)).expect("SNP VM");
    let sev = sim::sev_device_open(vm).expect("/dev/sev");
    let mut fw = u32::MAX;
    // SAFETY (whole block): every pointer is valid for its stated size.
    unsafe {
        let active = mem_enc_sev_init2_args {
            vmsa_features: 1,
            ..Default::default()
        };
        assert_eq!(mem_enc_sev_init2(vm, &active, 16, &mut fw), -libc::EINVAL);
        assert_eq!(
            mem_enc_last_stage(),
            MEM_ENC_STAGE_MEMENC,
            "SNP_ACTIVE refused by memenc"
        );
        let init = mem_enc_sev_init2_args {
            ghcb_version: 2,
            ..Default::default()
        };
        assert_eq!(
            mem_enc_sev_init2(vm, &init, 16, &mut fw),
            0,
            "fw_error {fw}"
        );
        // Policy 0x30000 without bit 17's help would be refused by KVM; memenc sets bit 17,
        // so SMT (bit 16) alone is enough.
        let start = mem_enc_snp_launch_start_args {
            policy: 1 << 16,
            gosvw: [0; 16],
        };
        assert_eq!(
            mem_enc_snp_launch_start(vm, sev, &start, 24, &mut fw),
            0,
            "fw_error {fw}"
        );
    }
    private_memory(vm, SNP_PAGES as usize);
    (vm, sev)
}

fn snp_update(vm: RawFd, sev: RawFd, src: *mut u8) -> (i32, u64, u32) {
    let args = mem_enc_snp_launch_update_args {
        gfn_start: 1,
        src: src.cast(),
        len: 4 * PAGE as u64,
        page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
        retry_limit: 0,
    };
    let (mut reached, mut fw) = (u64::MAX, u32::MAX);
    // SAFETY: valid pointers.
    let r = unsafe { mem_enc_snp_launch_update(vm, sev, &args, 32, &mut reached, &mut fw) };
    (r, reached, fw)
}

#[test]
fn simulated_snp_launch_covers_the_range_exactly_once_under_partial_progress() {
    let src = pages(4, 0x5A);
    let (vm_a, sev_a) = snp_started("snp@6.18");
    assert_eq!(snp_update(vm_a, sev_a, src), (0, 5, 0));
    let clean = sim::launch_digest(vm_a).unwrap();

    // Same launch, but the kernel stops after one page, three times in a row.
    let (vm_b, sev_b) = snp_started("snp@6.18");
    sim::inject(vm_b, Effect::Progress(1), sev_id::SNP_LAUNCH_UPDATE, 1, 3).unwrap();
    assert_eq!(snp_update(vm_b, sev_b, src), (0, 5, 0));
    assert_eq!(
        sim::launch_digest(vm_b).unwrap(),
        clean,
        "every page measured exactly once"
    );

    // Finish: every vCPU exists first.
    sim::vcpu_create(vm_b, 0).unwrap();
    let args = mem_enc_snp_launch_finish_args {
        id_block: null(),
        id_block_len: 0,
        id_auth: null(),
        id_auth_len: 0,
        host_data: [9; 32],
        auth_key_en: 0,
        vcek_disabled: 0,
        reserved: [0; 6],
    };
    let mut fw = u32::MAX;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_snp_launch_finish(vm_b, sev_b, &args, 72, &mut fw) },
        0
    );
    assert_eq!(fw, 0);
    // Legacy commands are refused on an SNP guest.
    assert_eq!(op_retry(vm_b, sev_id::LAUNCH_FINISH).0, -libc::EPERM);
}

#[test]
fn simulated_snp_failure_says_which_gfn_was_reached() {
    let src = pages(4, 0x5A);
    let (vm, sev) = snp_started("snp@6.11");
    // Two pages, then the firmware refuses the third.
    sim::inject(vm, Effect::Progress(2), sev_id::SNP_LAUNCH_UPDATE, 1, 1).unwrap();
    sim::inject(vm, Effect::FwStatus(0x1A), sev_id::SNP_LAUNCH_UPDATE, 2, 1).unwrap();
    let (r, reached, fw) = snp_update(vm, sev, src);
    assert_eq!((r, reached, fw), (-libc::EIO, 3, 0x1A));
    assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_FIRMWARE);
    assert!(fw_name(1, 0x1A).starts_with("SEV_RET_INVALID_PAGE_STATE"));
    // Resuming from the reported GFN finishes the range (Rust API).
    let e = snp::launch_update(
        bfd(vm),
        bfd(sev),
        &snp::LaunchUpdate {
            gfn_start: reached,
            uaddr: src as u64 + (reached - 1) * PAGE as u64,
            len: (5 - reached) * PAGE as u64,
            page_type: snp::page_type::NORMAL,
        },
    );
    assert!(e.is_ok(), "{e:?}");
    // A GFN that is not private: the kernel's -EIO on the first page, firmware never asked.
    let e = snp::launch_update(
        bfd(vm),
        bfd(sev),
        &snp::LaunchUpdate {
            gfn_start: 100,
            uaddr: src as u64,
            len: PAGE as u64,
            page_type: snp::page_type::NORMAL,
        },
    )
    .unwrap_err();
    assert_ne!(e.errno, Errno(0));
    assert_eq!(e.reached, Some(100));
}

// ---------------------------------------------------------------------------------------------
// TDX

/// A TDX VM of `profile`.
fn td(profile: &str) -> RawFd {
    sim::vm_create(profile, u64::from(uapi::KVM_X86_TDX_VM)).expect("TDX VM")
}

fn split_irqchip(vm: RawFd) {
    assert_eq!(sim_util::split_irqchip(vm, 24), 0);
}

/// A TD after INIT_VM with one initialised vCPU and private memory: `(vm, vcpu)`.
fn td_ready(profile: &str) -> (RawFd, RawFd) {
    let vm = td(profile);
    let cpuid = [gpaw48()];
    let mut hw = u64::MAX;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_tdx_init_vm(vm, &td_init_args(&cpuid), 176, &mut hw) },
        0
    );
    assert_eq!(hw, 0);
    split_irqchip(vm);
    let vcpu = sim::vcpu_create(vm, 0).unwrap();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { mem_enc_tdx_init_vcpu(vcpu, 0x1000, &mut hw) }, 0);
    private_memory(vm, 8);
    (vm, vcpu)
}

#[test]
fn simulated_tdx_capabilities_and_init_vm_errors() {
    let vm = td("tdx@6.19");
    let mut hw = u64::MAX;
    let mut caps = mem_enc_tdx_capabilities::default();
    // SAFETY (whole block): every pointer is valid for its stated size.
    unsafe {
        let mut n = 0u32;
        assert_eq!(
            mem_enc_tdx_capabilities(vm, &mut caps, 48, null_mut(), &mut n, &mut hw),
            -libc::ENOSPC
        );
        assert!(n > 0);
        assert_eq!(
            caps,
            mem_enc_tdx_capabilities::default(),
            "nothing written on -ENOSPC"
        );
        let mut entries = vec![mem_enc_cpuid_entry::default(); n as usize];
        // A newer caller's bigger struct: the tail is zeroed.
        let mut bigger = [0xFFu8; 64];
        assert_eq!(
            mem_enc_tdx_capabilities(
                vm,
                bigger.as_mut_ptr().cast(),
                64,
                entries.as_mut_ptr(),
                &mut n,
                &mut hw
            ),
            0
        );
        assert_eq!(hw, 0);
        assert!(bigger[48..].iter().all(|&b| b == 0));
        caps = std::ptr::read_unaligned(bigger.as_ptr().cast());
        assert_eq!(caps.supported_attrs, 1 << 28);
        assert!(entries.iter().any(|e| e.function == 0x8000_0008));

        // CPUID bits the module does not allow: TDH.MNG.INIT's operand error, decoded.
        let bad = [
            gpaw48(),
            // KVM_CPUID_FLAG_SIGNIFCANT_INDEX: without it the entry would match the 0xD leaf's
            // every configurable subleaf, and KVM (setup_tdparams_cpuids: copy_cnt != nent)
            // would refuse before the module.
            mem_enc_cpuid_entry {
                function: 0xD,
                index: 0,
                flags: 1,
                eax: 0xFFFF_FFFF,
                ..Default::default()
            },
        ];
        assert_eq!(
            mem_enc_tdx_init_vm(vm, &td_init_args(&bad), 176, &mut hw),
            -libc::EINVAL
        );
        assert_eq!(hw, 0xC000_0100_0000_0045);
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_FIRMWARE);
        assert!(fw_name(2, hw).starts_with("TDX_OPERAND_INVALID (operand CPUID_CONFIG)"));
        // Attributes outside the supported mask: KVM refuses, no SEAMCALL status.
        let mut wrong = td_init_args(&[gpaw48()]);
        wrong.attributes = 1;
        assert_eq!(mem_enc_tdx_init_vm(vm, &wrong, 176, &mut hw), -libc::EINVAL);
        assert_eq!((hw, mem_enc_last_stage()), (0, MEM_ENC_STAGE_KVM));
        // Entropy runs out three times: retried, then it works.
        sim::inject(vm, Effect::Again, tdx_id::INIT_VM, 1, 3).unwrap();
        let ok = [gpaw48()];
        assert_eq!(mem_enc_tdx_init_vm(vm, &td_init_args(&ok), 176, &mut hw), 0);
        // The Rust API reports the same.
        let e = tdx::init_vm(
            bfd(vm),
            &tdx::InitVm {
                attributes: 1 << 28,
                xfam: 3,
                mrconfigid: [0; 48],
                mrowner: [0; 48],
                mrownerconfig: [0; 48],
                cpuid: &[gpaw48().into()],
            },
        )
        .unwrap_err();
        assert_eq!(
            (e.errno, e.stage),
            (Errno(libc::EINVAL), Stage::Kvm),
            "INIT_VM twice"
        );
    }
}

#[test]
fn simulated_tdx_mem_region_survives_signals_and_finalize_retries_busy() {
    let src = pages(4, 0x77);
    let region = mem_enc_tdx_init_mem_region_args {
        source: src.cast::<c_void>(),
        gpa: 2 * PAGE as u64,
        nr_pages: 4,
        flags: memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION,
        retry_limit: 0,
    };
    let (vm_a, vcpu_a) = td_ready("tdx@6.19");
    let (mut reached, mut hw) = (0u64, u64::MAX);
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_tdx_init_mem_region(vcpu_a, &region, 32, &mut reached, &mut hw) },
        0
    );
    assert_eq!((reached, hw), (6 * PAGE as u64, 0));
    let clean = sim::launch_digest(vm_a).unwrap();

    // Signals after every page: -EINTR with progress, re-issued from where it stopped.
    let (vm_b, vcpu_b) = td_ready("tdx@6.19");
    sim::inject(vcpu_b, Effect::Progress(1), tdx_id::INIT_MEM_REGION, 1, 3).unwrap();
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_tdx_init_mem_region(vcpu_b, &region, 32, &mut reached, &mut hw) },
        0
    );
    assert_eq!(reached, 6 * PAGE as u64);
    assert_eq!(
        sim::launch_digest(vm_b).unwrap(),
        clean,
        "MRTD extended exactly once per page"
    );

    // GET_CPUID: -ENOSPC with the count the kernel needs.
    let mut n = 1u32;
    let mut one = [mem_enc_cpuid_entry::default(); 1];
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_tdx_get_cpuid(vcpu_b, one.as_mut_ptr(), &mut n, &mut hw) },
        -libc::ENOSPC
    );
    assert!(n > 1);
    let all = tdx::get_cpuid(bfd(vcpu_b)).unwrap();
    assert_eq!(all.len(), n as usize);

    // FINALIZE: TDX_OPERAND_BUSY twice, retried.
    sim::inject(vm_b, Effect::Busy, tdx_id::FINALIZE_VM, 1, 2).unwrap();
    let (r, c) = op_retry(vm_b, tdx_id::FINALIZE_VM);
    assert_eq!((r, c.hw_error()), (0, 0));
    // After FINALIZE every vCPU command is refused.
    assert_eq!(
        tdx::init_mem_region(
            bfd(vcpu_b),
            &tdx::MemRegion {
                source_addr: src as u64,
                gpa: 0,
                nr_pages: 1,
                measure: false
            }
        )
        .unwrap_err()
        .errno,
        Errno(libc::EINVAL)
    );
}

#[test]
fn simulated_retries_are_bounded() {
    let limit = memenc::helpers::retry_limit();
    // limit + 1 busy answers: the first issue and `limit` retries all fail.
    let (vm, _) = td_ready("tdx@6.16");
    sim::inject(vm, Effect::Busy, tdx_id::FINALIZE_VM, 1, limit + 1).unwrap();
    let (r, c) = op_retry(vm, tdx_id::FINALIZE_VM);
    let hw = c.hw_error();
    assert_eq!(r, -libc::EBUSY);
    assert!(fw_name(2, hw).starts_with("TDX_OPERAND_BUSY"), "{hw:#x}");
    // One fewer: the last retry succeeds.
    let (vm, _) = td_ready("tdx@6.16");
    sim::inject(vm, Effect::Busy, tdx_id::FINALIZE_VM, 1, limit).unwrap();
    assert_eq!(op_retry(vm, tdx_id::FINALIZE_VM).0, 0);
    // The memory helpers reach the simulated host too (Rust API).
    let vm = td("tdx@6.19");
    let g = mem::create_guest_memfd(bfd(vm), 1 << 16, 0).unwrap();
    drop(g);
}

/// The per-call bound of 0.2 (`retry_limit`, the 0.1 `reserved` word, so a non-zero value is
/// no longer refused): INIT_MEM_REGION re-issued after -EINTR at most `retry_limit` times.
#[test]
fn simulated_per_call_retry_limit_bounds_init_mem_region() {
    let src = pages(2, 0x33);
    let region = |retry_limit| mem_enc_tdx_init_mem_region_args {
        source: src.cast::<c_void>(),
        gpa: 0,
        nr_pages: 2,
        flags: memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION,
        retry_limit,
    };
    // Two signals before the first page, one re-issue allowed: the second -EINTR is returned.
    let (vm, vcpu) = td_ready("tdx@6.19");
    sim::inject(vcpu, Effect::Signal, tdx_id::INIT_MEM_REGION, 1, 2).unwrap();
    let (mut reached, mut hw) = (u64::MAX, u64::MAX);
    // SAFETY: valid pointers.
    let r = unsafe { mem_enc_tdx_init_mem_region(vcpu, &region(1), 32, &mut reached, &mut hw) };
    assert_eq!((r, reached), (-libc::EINTR, 0));
    assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_KVM);
    // Two re-issues allowed: the third issue adds both pages.
    let (vm_b, vcpu_b) = td_ready("tdx@6.19");
    sim::inject(vcpu_b, Effect::Signal, tdx_id::INIT_MEM_REGION, 1, 2).unwrap();
    // SAFETY: valid pointers.
    let r = unsafe { mem_enc_tdx_init_mem_region(vcpu_b, &region(2), 32, &mut reached, &mut hw) };
    assert_eq!((r, reached, hw), (0, 2 * PAGE as u64, 0));
    // The Rust API's bound is the same one.
    sim::inject(vcpu, Effect::Signal, tdx_id::INIT_MEM_REGION, 1, 2).unwrap();
    let p = tdx::MemRegion {
        source_addr: src as u64,
        gpa: 0,
        nr_pages: 2,
        measure: true,
    };
    let e = tdx::init_mem_region_bounded(bfd(vcpu), &p, Some(1)).unwrap_err();
    assert_eq!((e.errno, e.reached), (Errno(libc::EINTR), Some(0)));
    tdx::init_mem_region_bounded(bfd(vcpu), &p, Some(1)).unwrap();
    assert_eq!(
        sim::launch_digest(vm).unwrap(),
        sim::launch_digest(vm_b).unwrap(),
        "the interrupted issues added nothing"
    );

    // SNP_LAUNCH_UPDATE accepts a non-zero word too. Its bound (rounds without progress) has
    // nothing to count on the model: every round it stops early has added a page, and since
    // 0.2 no SEV error is transient.
    let (vm, sev) = snp_started("snp@6.18");
    sim::inject(vm, Effect::Progress(1), sev_id::SNP_LAUNCH_UPDATE, 1, 3).unwrap();
    let args = mem_enc_snp_launch_update_args {
        gfn_start: 1,
        src: src.cast(),
        len: 2 * PAGE as u64,
        page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
        retry_limit: 1,
    };
    let mut fw = u32::MAX;
    // SAFETY: valid pointers.
    let r = unsafe { mem_enc_snp_launch_update(vm, sev, &args, 32, &mut reached, &mut fw) };
    assert_eq!((r, reached, fw), (0, 3, 0));
}
