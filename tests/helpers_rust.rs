//! The Rust API (memenc::helpers) against this machine's real /dev/kvm (AMD, no SEV): errors
//! carry the command, errno, firmware status and stage; invariants are enforced before the
//! ioctl.

mod helpers_common;

use helpers_common::{amd_without_sev, real_vm};
use memenc::Errno;
use memenc::fwerr::Stage;
use memenc::helpers::{Error, mem, sev, snp, tdx};

fn kvm_enotty(r: Result<impl std::fmt::Debug, Error>, command: &str) {
    let e = r.expect_err(command);
    assert_eq!(e.command, command);
    assert_eq!(e.errno, Errno(libc::ENOTTY), "{command}");
    assert_eq!(e.status, Some(0), "{command}: issued, firmware not reached");
    assert_eq!(e.stage, Stage::Kvm, "{command}");
    assert!(e.to_string().contains("stopped by kvm"), "{e}");
}

#[test]
fn sev_and_snp_commands_reach_kvm() {
    let Some(host) = real_vm("sev_and_snp_commands_reach_kvm") else {
        return;
    };
    if !amd_without_sev(&host, "sev_and_snp_commands_reach_kvm") {
        return;
    }
    let vm = host.vm();
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let sev_dev = std::os::fd::AsFd::as_fd(&devnull);
    let mut page = vec![0u8; 8192];
    let addr = page.as_mut_ptr() as u64;
    kvm_enotty(sev::init(vm), "KVM_SEV_INIT");
    kvm_enotty(sev::es_init(vm), "KVM_SEV_ES_INIT");
    kvm_enotty(sev::init2(vm, &sev::Init2::default()), "KVM_SEV_INIT2");
    kvm_enotty(
        sev::launch_start(vm, sev_dev, &sev::Start::default()),
        "KVM_SEV_LAUNCH_START",
    );
    kvm_enotty(
        sev::launch_update_data(vm, addr, 4096),
        "KVM_SEV_LAUNCH_UPDATE_DATA",
    );
    kvm_enotty(sev::launch_update_vmsa(vm), "KVM_SEV_LAUNCH_UPDATE_VMSA");
    kvm_enotty(sev::launch_measure(vm), "KVM_SEV_LAUNCH_MEASURE");
    kvm_enotty(sev::launch_finish(vm), "KVM_SEV_LAUNCH_FINISH");
    kvm_enotty(sev::guest_status(vm), "KVM_SEV_GUEST_STATUS");
    let mut out = [0u8; 16];
    kvm_enotty(sev::dbg_decrypt(vm, addr, &mut out), "KVM_SEV_DBG_DECRYPT");
    kvm_enotty(sev::dbg_encrypt(vm, &out, addr), "KVM_SEV_DBG_ENCRYPT");
    kvm_enotty(
        sev::get_attestation_report(vm, &[0; 16]),
        "KVM_SEV_GET_ATTESTATION_REPORT",
    );
    kvm_enotty(
        sev::send_start(vm, &sev::SendStart::default()),
        "KVM_SEV_SEND_START",
    );
    kvm_enotty(
        sev::send_update_data(vm, addr, 16),
        "KVM_SEV_SEND_UPDATE_DATA",
    );
    kvm_enotty(sev::send_finish(vm), "KVM_SEV_SEND_FINISH");
    kvm_enotty(sev::send_cancel(vm), "KVM_SEV_SEND_CANCEL");
    kvm_enotty(
        sev::receive_start(vm, sev_dev, &sev::Start::default()),
        "KVM_SEV_RECEIVE_START",
    );
    kvm_enotty(
        sev::receive_update_data(vm, &sev::Packet::default()),
        "KVM_SEV_RECEIVE_UPDATE_DATA",
    );
    kvm_enotty(sev::receive_finish(vm), "KVM_SEV_RECEIVE_FINISH");
    kvm_enotty(
        snp::launch_start(vm, sev_dev, &snp::LaunchStart::default()),
        "KVM_SEV_SNP_LAUNCH_START",
    );
    let update = snp::LaunchUpdate {
        gfn_start: 0x40,
        uaddr: (addr + 4095) & !4095,
        len: 4096,
        page_type: snp::page_type::NORMAL,
    };
    let e = snp::launch_update(vm, sev_dev, &update).unwrap_err();
    assert_eq!(
        (e.errno, e.stage, e.reached),
        (Errno(libc::ENOTTY), Stage::Kvm, Some(0x40))
    );
    let finish = snp::LaunchFinish {
        id_block: None,
        auth_key_en: false,
        vcek_disabled: false,
        host_data: [0; 32],
    };
    kvm_enotty(
        snp::launch_finish(vm, sev_dev, &finish),
        "KVM_SEV_SNP_LAUNCH_FINISH",
    );
    kvm_enotty(snp::enable_req_certs(vm), "KVM_SEV_SNP_ENABLE_REQ_CERTS");
    drop(page);
}

#[test]
fn invariants_and_vendor_checks_need_no_ioctl() {
    let Some(host) = real_vm("invariants_and_vendor_checks_need_no_ioctl") else {
        return;
    };
    if !amd_without_sev(&host, "invariants_and_vendor_checks_need_no_ioctl") {
        return;
    }
    let vm = host.vm();
    let e = sev::init2(
        vm,
        &sev::Init2 {
            vmsa_features: sev::SVM_SEV_FEAT_SNP_ACTIVE | 1 << 5,
            ghcb_version: 2,
        },
    )
    .unwrap_err();
    assert_eq!(
        (e.errno, e.status, e.stage),
        (Errno(libc::EINVAL), None, Stage::Memenc)
    );
    // TDX on an AMD host: refused, never read as SEV ids.
    for r in [
        tdx::finalize_vm(vm).map(|_| ()),
        tdx::init_vcpu(host.vcpu(), 0),
        tdx::capabilities(vm).map(|_| ()),
        tdx::get_cpuid(host.vcpu()).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert_eq!(
            (e.errno, e.stage, e.vendor),
            (Errno(libc::ENOTTY), Stage::Memenc, memenc::Vendor::Tdx)
        );
    }
    let e = tdx::init_mem_region(
        host.vcpu(),
        &tdx::MemRegion {
            nr_pages: 0,
            gpa: 0x1000,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!((e.errno, e.reached), (Errno(libc::EINVAL), Some(0x1000)));
    let too_many = vec![kvm_bindings::kvm_cpuid_entry2::default(); 257];
    let e = tdx::init_vm(
        vm,
        &tdx::InitVm {
            attributes: 0,
            xfam: 0,
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            cpuid: &too_many,
        },
    )
    .unwrap_err();
    assert_eq!(e.errno, Errno(libc::E2BIG));
    // Memory helpers: guest_memfd works on this kernel's DEFAULT VM, attributes do not.
    let gmem = mem::create_guest_memfd(vm, 1 << 16, 0).unwrap();
    drop(gmem);
    let e = mem::set_private(vm, 0, 4096, true).unwrap_err();
    assert_eq!((e.errno, e.stage), (Errno(libc::ENOTTY), Stage::Kvm));
}
