//! The C typed helpers against this machine's real /dev/kvm (AMD, no SEV): every SEV and SNP
//! helper reaches the kernel and gets -ENOTTY with fw_error 0 and stage "kvm"; every TDX helper
//! is refused by memenc (an AMD host reads TDX ids as other SEV commands) with -ENOTTY, stage
//! "memenc" and hw_error untouched; and the argument checks fail before any ioctl.

mod helpers_common;

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use helpers_common::{RealVm, amd_without_sev, real_vm};
use memenc::capi::fwerr::{MEM_ENC_STAGE_KVM, MEM_ENC_STAGE_MEMENC, mem_enc_last_stage};
use memenc::capi::mem::*;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;

const UNTOUCHED32: u32 = 0xDEAD_BEEF;

/// A parameterless SEV command the way a C caller issues it since 0.2 (the typed wrappers
/// were removed): `mem_enc_op` with MEM_ENC_FLAG_RETRY, the firmware status read back.
fn op_retry(vm: i32, id: u32, fw: *mut u32) -> i32 {
    let mut cmd = memenc::mem_enc_cmd {
        flags: memenc::MEM_ENC_FLAG_RETRY,
        ..memenc::mem_enc_cmd::new(id, 0)
    };
    // SAFETY: a valid 24-byte command with no parameter struct.
    let r = unsafe { memenc::capi::op::mem_enc_op(vm, &mut cmd) };
    if !fw.is_null() {
        // SAFETY: fw is NULL (checked) or a valid out-pointer.
        unsafe { *fw = cmd.sev().error };
    }
    r
}
const UNTOUCHED64: u64 = 0xDEAD_BEEF_DEAD_BEEF;

fn vm_or_skip(test: &str) -> Option<RealVm> {
    let vm = real_vm(test)?;
    amd_without_sev(&vm, test).then_some(vm)
}

fn start_args() -> mem_enc_sev_start_args {
    mem_enc_sev_start_args {
        handle: 0,
        policy: 0,
        cert: null(),
        cert_len: 0,
        session: null(),
        session_len: 0,
    }
}

fn packet_args(guest: *mut c_void) -> mem_enc_sev_packet_args {
    static HDR: [u8; 52] = [0; 52];
    static TRANS: [u8; 64] = [0; 64];
    mem_enc_sev_packet_args {
        hdr: HDR.as_ptr(),
        hdr_len: HDR.len(),
        guest,
        guest_len: 64,
        trans: TRANS.as_ptr(),
        trans_len: TRANS.len(),
    }
}

/// Every SEV/SNP helper with valid arguments: the kernel says -ENOTTY before any firmware.
#[test]
fn every_sev_and_snp_helper_reaches_kvm_and_gets_enotty() {
    let Some(host) = vm_or_skip("every_sev_and_snp_helper_reaches_kvm_and_gets_enotty") else {
        return;
    };
    let vm = host.vm_fd();
    // Any open descriptor will do as sev_fd: the kernel refuses before it looks at it.
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let sev_fd = std::os::fd::AsRawFd::as_raw_fd(&devnull);
    let mut page = vec![0u8; 8192];
    let guest = page.as_mut_ptr().cast::<c_void>();
    let buf = [0u8; 256];
    fn size<T>(t: &T) -> usize {
        std::mem::size_of_val(t)
    }

    let init2 = mem_enc_sev_init2_args::default();
    let start = start_args();
    let packet = packet_args(guest);
    let send = mem_enc_sev_send_start_args {
        pdh_cert: buf.as_ptr(),
        pdh_cert_len: 16,
        plat_certs: null(),
        plat_certs_len: 0,
        amd_certs: null(),
        amd_certs_len: 0,
    };
    let snp_start = mem_enc_snp_launch_start_args::default();
    // SNP_LAUNCH_UPDATE needs a page-aligned source (memenc refuses others before any ioctl).
    let aligned = ((guest as usize + 4095) & !4095) as *mut c_void;
    let snp_update = mem_enc_snp_launch_update_args {
        gfn_start: 0x100,
        src: aligned,
        len: 4096,
        page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
        retry_limit: 0,
    };
    let snp_finish = mem_enc_snp_launch_finish_args {
        id_block: null(),
        id_block_len: 0,
        id_auth: null(),
        id_auth_len: 0,
        host_data: [0; 32],
        auth_key_en: 0,
        vcek_disabled: 0,
        reserved: [0; 6],
    };
    let nonce = [0u8; 16];

    // Each closure gets a fresh fw_error; all run through the C exports.
    type Call<'a> = Box<dyn Fn(*mut u32) -> i32 + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "init",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::INIT, fw)),
        ),
        (
            "es_init",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::ES_INIT, fw)),
        ),
        (
            "init2",
            Box::new(|fw| unsafe { mem_enc_sev_init2(vm, &init2, size(&init2), fw) }),
        ),
        (
            "launch_start",
            Box::new(|fw| unsafe {
                mem_enc_sev_launch_start(vm, sev_fd, &start, size(&start), null_mut(), fw)
            }),
        ),
        (
            "launch_update_data",
            Box::new(|fw| unsafe { mem_enc_sev_launch_update_data(vm, guest, 4096, fw) }),
        ),
        (
            "launch_update_vmsa",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::LAUNCH_UPDATE_VMSA, fw)),
        ),
        (
            "launch_secret",
            Box::new(|fw| unsafe { mem_enc_sev_launch_secret(vm, &packet, size(&packet), fw) }),
        ),
        (
            "launch_measure",
            Box::new(|fw| {
                let mut len = 256usize;
                let mut b = [0u8; 256];
                unsafe { mem_enc_sev_launch_measure(vm, b.as_mut_ptr(), &mut len, fw) }
            }),
        ),
        (
            "launch_finish",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::LAUNCH_FINISH, fw)),
        ),
        (
            "guest_status",
            Box::new(|fw| unsafe {
                mem_enc_sev_guest_status(vm, null_mut(), null_mut(), null_mut(), fw)
            }),
        ),
        (
            "dbg_decrypt",
            Box::new(|fw| {
                let mut b = [0u8; 16];
                unsafe { mem_enc_sev_dbg_decrypt(vm, guest, b.as_mut_ptr(), 16, fw) }
            }),
        ),
        (
            "dbg_encrypt",
            Box::new(|fw| unsafe { mem_enc_sev_dbg_encrypt(vm, buf.as_ptr(), guest, 16, fw) }),
        ),
        (
            "get_attestation_report",
            Box::new(|fw| {
                let mut len = 256usize;
                let mut b = [0u8; 256];
                unsafe {
                    mem_enc_sev_get_attestation_report(
                        vm,
                        nonce.as_ptr(),
                        16,
                        b.as_mut_ptr(),
                        &mut len,
                        fw,
                    )
                }
            }),
        ),
        (
            "send_start",
            Box::new(|fw| {
                let mut len = 256usize;
                let mut b = [0u8; 256];
                unsafe {
                    mem_enc_sev_send_start(
                        vm,
                        &send,
                        size(&send),
                        b.as_mut_ptr(),
                        &mut len,
                        null_mut(),
                        fw,
                    )
                }
            }),
        ),
        (
            "send_update_data",
            Box::new(|fw| {
                let (mut hl, mut tl) = (64usize, 64usize);
                let (mut h, mut t) = ([0u8; 64], [0u8; 64]);
                unsafe {
                    mem_enc_sev_send_update_data(
                        vm,
                        guest,
                        64,
                        h.as_mut_ptr(),
                        &mut hl,
                        t.as_mut_ptr(),
                        &mut tl,
                        fw,
                    )
                }
            }),
        ),
        (
            "send_finish",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::SEND_FINISH, fw)),
        ),
        (
            "send_cancel",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::SEND_CANCEL, fw)),
        ),
        (
            "receive_start",
            Box::new(|fw| unsafe {
                mem_enc_sev_receive_start(vm, sev_fd, &start, size(&start), null_mut(), fw)
            }),
        ),
        (
            "receive_update_data",
            Box::new(|fw| unsafe {
                mem_enc_sev_receive_update_data(vm, &packet, size(&packet), fw)
            }),
        ),
        (
            "receive_finish",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::RECEIVE_FINISH, fw)),
        ),
        (
            "snp_launch_start",
            Box::new(|fw| unsafe {
                mem_enc_snp_launch_start(vm, sev_fd, &snp_start, size(&snp_start), fw)
            }),
        ),
        (
            "snp_launch_update",
            Box::new(|fw| {
                let mut reached = UNTOUCHED64;
                let r = unsafe {
                    mem_enc_snp_launch_update(
                        vm,
                        sev_fd,
                        &snp_update,
                        size(&snp_update),
                        &mut reached,
                        fw,
                    )
                };
                // Issued and refused at once: nothing was added, the first GFN is where it stopped.
                assert_eq!(reached, 0x100);
                r
            }),
        ),
        (
            "snp_launch_finish",
            Box::new(|fw| unsafe {
                mem_enc_snp_launch_finish(vm, sev_fd, &snp_finish, size(&snp_finish), fw)
            }),
        ),
        (
            "snp_enable_req_certs",
            Box::new(|fw| op_retry(vm, memenc::uapi::sev_id::SNP_ENABLE_REQ_CERTS, fw)),
        ),
    ];
    assert_eq!(calls.len(), 24);
    for (name, call) in &calls {
        let mut fw = UNTOUCHED32;
        let r = call(&mut fw);
        assert_eq!(r, -libc::ENOTTY, "{name}");
        assert_eq!(
            fw, 0,
            "{name}: fw_error is set (to 0) whenever the ioctl was issued"
        );
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_KVM, "{name}");
        // fw_error is optional.
        assert_eq!(call(null_mut()), -libc::ENOTTY, "{name} with NULL fw_error");
    }
    drop(page);
}

/// On an AMD host the TDX helpers never issue: ids 0-5 would be SEV commands there.
#[test]
fn tdx_helpers_on_an_amd_host_are_refused_by_memenc() {
    let Some(host) = vm_or_skip("tdx_helpers_on_an_amd_host_are_refused_by_memenc") else {
        return;
    };
    let (vm, vcpu) = (host.vm_fd(), host.vcpu_fd());
    // A valid region (page-aligned source), so only the host's vendor is wrong.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let page = Page([0; 4096]);
    let region = mem_enc_tdx_init_mem_region_args {
        source: page.0.as_ptr().cast(),
        gpa: 0,
        nr_pages: 1,
        flags: 0,
        retry_limit: 0,
    };
    let init = mem_enc_tdx_init_vm_args {
        attributes: 0,
        xfam: 0,
        mrconfigid: [0; 48],
        mrowner: [0; 48],
        mrownerconfig: [0; 48],
        cpuid: null(),
        cpuid_nent: 0,
        reserved: 0,
    };
    let mut caps = mem_enc_tdx_capabilities::default();
    let mut entries = [mem_enc_cpuid_entry::default(); 4];
    let mut hw = UNTOUCHED64;
    let mut n = 4u32;
    let mut reached = UNTOUCHED64;
    // SAFETY: every pointer is valid for its stated size.
    let results = unsafe {
        [
            mem_enc_tdx_capabilities(vm, &mut caps, 48, entries.as_mut_ptr(), &mut n, &mut hw),
            mem_enc_tdx_init_vm(vm, &init, std::mem::size_of_val(&init), &mut hw),
            mem_enc_tdx_init_vcpu(vcpu, 0, &mut hw),
            mem_enc_tdx_init_mem_region(vcpu, &region, 32, &mut reached, &mut hw),
            mem_enc_tdx_get_cpuid(vcpu, entries.as_mut_ptr(), &mut n, &mut hw),
        ]
    };
    for (i, r) in results.iter().enumerate() {
        assert_eq!(*r, -libc::ENOTTY, "tdx helper {i}");
    }
    assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_MEMENC);
    assert_eq!((hw, reached, n), (UNTOUCHED64, UNTOUCHED64, 4));
    assert_eq!(caps, mem_enc_tdx_capabilities::default());
}

/// Argument checks: each fails before any ioctl (a real ioctl here would give -ENOTTY, so a
/// different errno, an untouched fw_error and stage "memenc" prove none was issued).
#[test]
fn bad_arguments_are_refused_before_the_ioctl() {
    let Some(host) = vm_or_skip("bad_arguments_are_refused_before_the_ioctl") else {
        return;
    };
    let vm = host.vm_fd();
    let mut fw = UNTOUCHED32;
    let check = |r: i32, want: i32, fw: u32, what: &str| {
        assert_eq!(r, want, "{what}");
        assert_eq!(fw, UNTOUCHED32, "{what}: fw_error untouched");
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_MEMENC, "{what}");
    };
    // SAFETY (whole block): every pointer is NULL or valid for its stated size.
    unsafe {
        // Bad descriptors.
        let mut no_len = 0usize;
        check(
            mem_enc_sev_launch_measure(-7, null_mut(), &mut no_len, &mut fw),
            -libc::EBADF,
            fw,
            "measure(-7)",
        );
        let start = start_args();
        check(
            mem_enc_sev_launch_start(vm, -1, &start, 40, null_mut(), &mut fw),
            -libc::EBADF,
            fw,
            "launch_start(sev_fd -1)",
        );
        // Argument structs: NULL, too small, unknown non-zero tail, reserved fields.
        let init2 = mem_enc_sev_init2_args::default();
        check(
            mem_enc_sev_init2(vm, null(), 16, &mut fw),
            -libc::EINVAL,
            fw,
            "init2 NULL",
        );
        check(
            mem_enc_sev_init2(vm, &init2, 8, &mut fw),
            -libc::EINVAL,
            fw,
            "init2 size 8",
        );
        check(
            mem_enc_sev_init2(vm, &init2, 0, &mut fw),
            -libc::EINVAL,
            fw,
            "init2 size 0",
        );
        let mut bigger = [0u8; 32];
        bigger[20] = 1;
        check(
            mem_enc_sev_init2(vm, bigger.as_ptr().cast(), 32, &mut fw),
            -libc::E2BIG,
            fw,
            "init2 with an unknown non-zero tail",
        );
        check(
            mem_enc_sev_init2(vm, &init2, 8192, &mut fw),
            -libc::E2BIG,
            fw,
            "init2 absurd size",
        );
        let reserved = mem_enc_sev_init2_args {
            reserved1: 1,
            ..Default::default()
        };
        check(
            mem_enc_sev_init2(vm, &reserved, 16, &mut fw),
            -libc::EINVAL,
            fw,
            "init2 reserved",
        );
        // The SNP_ACTIVE invariant.
        let active = mem_enc_sev_init2_args {
            vmsa_features: 1,
            ..Default::default()
        };
        check(
            mem_enc_sev_init2(vm, &active, 16, &mut fw),
            -libc::EINVAL,
            fw,
            "init2 SNP_ACTIVE",
        );
        // Blobs: NULL with a length.
        let bad_blob = mem_enc_sev_start_args {
            cert_len: 10,
            ..start_args()
        };
        check(
            mem_enc_sev_launch_start(vm, 0, &bad_blob, 40, null_mut(), &mut fw),
            -libc::EINVAL,
            fw,
            "launch_start NULL cert with length",
        );
        // Length out-parameters.
        let mut b = [0u8; 8];
        check(
            mem_enc_sev_launch_measure(vm, b.as_mut_ptr(), null_mut(), &mut fw),
            -libc::EINVAL,
            fw,
            "measure NULL len",
        );
        let mut len = 8usize;
        check(
            mem_enc_sev_launch_measure(vm, null_mut(), &mut len, &mut fw),
            -libc::EINVAL,
            fw,
            "measure NULL buf with capacity",
        );
        let nonce = [0u8; 16];
        check(
            mem_enc_sev_get_attestation_report(
                vm,
                nonce.as_ptr(),
                15,
                b.as_mut_ptr(),
                &mut len,
                &mut fw,
            ),
            -libc::EINVAL,
            fw,
            "report nonce length 15",
        );
        check(
            mem_enc_sev_get_attestation_report(vm, null(), 16, b.as_mut_ptr(), &mut len, &mut fw),
            -libc::EINVAL,
            fw,
            "report NULL nonce",
        );
        check(
            mem_enc_sev_dbg_decrypt(vm, b.as_ptr().cast(), null_mut(), 8, &mut fw),
            -libc::EINVAL,
            fw,
            "dbg_decrypt NULL dst",
        );
        check(
            mem_enc_sev_dbg_encrypt(vm, null(), b.as_mut_ptr().cast(), 8, &mut fw),
            -libc::EINVAL,
            fw,
            "dbg_encrypt NULL src",
        );
        let mut tl = 0usize;
        check(
            mem_enc_sev_send_update_data(
                vm,
                null(),
                0,
                null_mut(),
                null_mut(),
                null_mut(),
                &mut tl,
                &mut fw,
            ),
            -libc::EINVAL,
            fw,
            "send_update NULL hdr_len",
        );
        // SNP argument checks.
        let snp_update = mem_enc_snp_launch_update_args {
            gfn_start: 5,
            src: null_mut(),
            len: 4096,
            page_type: 0x1_01,
            retry_limit: 0,
        };
        let mut reached = UNTOUCHED64;
        check(
            mem_enc_snp_launch_update(vm, 0, &snp_update, 32, &mut reached, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_update page type above 255",
        );
        assert_eq!(
            reached, UNTOUCHED64,
            "nothing issued: gfn_reached untouched"
        );
        // A1: a NULL or unaligned source for a non-ZERO page: -EINVAL before any ioctl.
        for (src, what) in [
            (null_mut(), "snp_launch_update NULL source"),
            (0x1001 as *mut c_void, "snp_launch_update unaligned source"),
        ] {
            let bad = mem_enc_snp_launch_update_args {
                gfn_start: 5,
                src,
                len: 4096,
                page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
                retry_limit: 0,
            };
            check(
                mem_enc_snp_launch_update(vm, 0, &bad, 32, &mut reached, &mut fw),
                -libc::EINVAL,
                fw,
                what,
            );
            assert_eq!(
                reached, UNTOUCHED64,
                "{what}: nothing issued, gfn_reached untouched"
            );
        }
        let odd = mem_enc_snp_launch_update_args {
            len: 4095,
            page_type: 1,
            ..snp_update
        };
        check(
            mem_enc_snp_launch_update(vm, 0, &odd, 32, &mut reached, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_update length not a page multiple",
        );
        let zero = mem_enc_snp_launch_update_args { len: 0, ..odd };
        check(
            mem_enc_snp_launch_update(vm, 0, &zero, 32, &mut reached, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_update length 0",
        );
        let block = [0u8; 96];
        let finish_args = mem_enc_snp_launch_finish_args {
            id_block: block.as_ptr(),
            id_block_len: 96,
            id_auth: null(),
            id_auth_len: 0,
            host_data: [0; 32],
            auth_key_en: 0,
            vcek_disabled: 0,
            reserved: [0; 6],
        };
        check(
            mem_enc_snp_launch_finish(vm, 0, &finish_args, 72, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_finish ID block without auth block",
        );
        let short = mem_enc_snp_launch_finish_args {
            id_block_len: 95,
            ..finish_args
        };
        check(
            mem_enc_snp_launch_finish(vm, 0, &short, 72, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_finish ID block of 95 bytes",
        );
        let key = mem_enc_snp_launch_finish_args {
            id_block: null(),
            id_block_len: 0,
            auth_key_en: 1,
            ..finish_args
        };
        check(
            mem_enc_snp_launch_finish(vm, 0, &key, 72, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_finish author key without blocks",
        );
        check(
            mem_enc_snp_launch_start(vm, 0, null(), 24, &mut fw),
            -libc::EINVAL,
            fw,
            "snp_launch_start NULL",
        );
    }
}

/// SEV region pinning is not available on a DEFAULT VM of this kernel (-ENOTTY); the memslot
/// and guest_memfd plumbing is the VMM's own since 0.2.
#[test]
fn memory_helpers_on_a_default_vm() {
    let Some(host) = vm_or_skip("memory_helpers_on_a_default_vm") else {
        return;
    };
    let vm = host.vm_fd();
    let mut page = vec![0u8; 4096];
    let shared = page.as_mut_ptr().cast::<c_void>();
    // SAFETY: the address is only handed to the kernel.
    unsafe {
        assert_eq!(mem_enc_mem_register_region(vm, shared, 4096), -libc::ENOTTY);
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_KVM);
        assert_eq!(
            mem_enc_mem_unregister_region(vm, shared, 4096),
            -libc::ENOTTY
        );
        assert_eq!(mem_enc_mem_register_region(-1, shared, 4096), -libc::EBADF);
        assert_eq!(mem_enc_last_stage(), MEM_ENC_STAGE_MEMENC);
    }
}
