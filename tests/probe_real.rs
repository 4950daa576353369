//! The probe and negotiation against this machine's real /dev/kvm (AMD CPU, KVM without a SEV
//! backend, no TDX: kernel-abi.md facts for this machine kind). Skips visibly where /dev/kvm
//! is absent.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use memenc::capi::probe::{mem_enc_negotiate_launch, mem_enc_negotiate_vm_type, mem_enc_probe};
use memenc::negotiate::*;
use memenc::probe::*;

fn kvm_present() -> bool {
    if std::path::Path::new("/dev/kvm").exists() {
        return true;
    }
    println!("SKIPPED: /dev/kvm is absent on this machine");
    false
}

fn probe_c(fd: i32) -> mem_enc_caps {
    let mut caps = mem_enc_caps::default();
    // SAFETY: `caps` is a writable mem_enc_caps of the size passed.
    let r = unsafe { mem_enc_probe(fd, &mut caps, size_of::<mem_enc_caps>()) };
    assert_eq!(r, 0);
    caps
}

#[test]
fn probe_reports_this_host_as_it_is() {
    if !kvm_present() {
        return;
    }
    let caps = probe_c(-1);
    println!("{caps:#?}");
    assert_eq!(caps.size, MEM_ENC_CAPS_SIZE_VER0);
    assert_eq!(caps.vendor, memenc::host::cpu_vendor().as_u32());
    assert_eq!(caps.api_version, mem_enc_cap::known(12));
    assert_eq!(caps.features & MEM_ENC_CAPS_SIMULATED, 0);
    // VM types {default} (plus SW-protected where the kernel has it): nothing confidential.
    assert!(caps.vm_types.is_known());
    assert_eq!(caps.vm_types.value & 1, 1);
    assert_eq!(caps.vm_types.value & 0b11_1100, 0);
    assert_eq!(
        caps.features
            & (MEM_ENC_CAPS_SEV | MEM_ENC_CAPS_SEV_ES | MEM_ENC_CAPS_SNP | MEM_ENC_CAPS_TDX),
        0
    );
    if caps.vendor == memenc::MEM_ENC_VENDOR_SEV {
        // No SEV backend: the SEV attribute group is -ENXIO, "not supported by this kernel".
        assert_eq!(
            caps.sev_vmsa_features,
            mem_enc_cap::not_supported(-libc::ENXIO)
        );
        assert_eq!(caps.snp_policy_bits.status, MEM_ENC_CAP_NOT_SUPPORTED);
        assert_eq!(caps.snp_req_certs.status, MEM_ENC_CAP_NOT_SUPPORTED);
        // The NULL probe on a default VM: -ENOTTY, no SEV path.
        assert_eq!(caps.sev_null_probe.status, MEM_ENC_CAP_KNOWN);
        assert_eq!(caps.sev_null_probe.err, -libc::ENOTTY);
        assert_eq!(caps.sev_null_probe.value, 0);
        assert_eq!(caps.tdx_supported_attrs.status, MEM_ENC_CAP_NOT_AVAILABLE);
    } else {
        assert_eq!(caps.sev_vmsa_features.status, MEM_ENC_CAP_NOT_AVAILABLE);
        assert_ne!(caps.tdx_supported_attrs.status, MEM_ENC_CAP_KNOWN);
    }
    // guest_memfd present.
    assert!(caps.guest_memfd.is_known() && caps.guest_memfd.value != 0);
    assert_ne!(caps.features & MEM_ENC_CAPS_GUEST_MEMFD, 0);
}

#[test]
fn caller_descriptor_gives_the_same_answer_and_stays_open() {
    if !kvm_present() {
        return;
    }
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .unwrap();
    let fd = kvm.as_raw_fd();
    let by_fd = probe_c(fd);
    assert_eq!(by_fd, probe_c(-1));
    // The descriptor is borrowed: still open and still a KVM descriptor.
    // SAFETY: KVM_GET_API_VERSION takes no argument.
    let api = unsafe { memenc::host::ioctl(fd, memenc::uapi::KVM_GET_API_VERSION, 0) };
    assert_eq!(api, Ok(12));
    // Uncached probing on the caller's descriptor agrees with the cache.
    assert_eq!(probe_uncached(fd), Ok(by_fd));
}

#[test]
fn scratch_vms_are_closed() {
    if !kvm_present() {
        return;
    }
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let kvm = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .unwrap();
    // Other tests run in parallel threads and open descriptors too: retry a few times for a
    // quiet moment instead of asserting on one noisy sample.
    let leaked = (0..20).all(|_| {
        let before = count();
        let _ = probe_uncached(kvm.as_raw_fd()).unwrap();
        count() > before
    });
    assert!(!leaked, "every uncached probe left a descriptor open");
}

#[test]
fn negotiating_any_confidential_vm_type_is_refused_with_a_reason() {
    if !kvm_present() {
        return;
    }
    let caps = probe_c(-1);
    for accept in [
        1u32 << MEM_ENC_VM_TYPE_SEV,
        1 << MEM_ENC_VM_TYPE_SEV_ES,
        1 << MEM_ENC_VM_TYPE_SNP,
        1 << MEM_ENC_VM_TYPE_TDX,
        MEM_ENC_VM_TYPES_CONFIDENTIAL,
    ] {
        let mut out = mem_enc_negotiation::default();
        // SAFETY: valid pointers; NULL caps means "probe /dev/kvm" (cached).
        let r = unsafe { mem_enc_negotiate_vm_type(std::ptr::null(), 0, accept, &mut out) };
        assert_eq!(r, -libc::EOPNOTSUPP, "accept {accept:#x}");
        // SAFETY: NUL-terminated by the library.
        let msg = unsafe { CStr::from_ptr(out.message.as_ptr()) }
            .to_str()
            .unwrap();
        println!("accept {accept:#x}: {msg}");
        assert!(
            msg.starts_with("no accepted VM type is available on this host"),
            "{msg}"
        );
        assert_eq!(out.missing, u64::from(accept));
        // The same answer from the caller's probe struct.
        let mut again = mem_enc_negotiation::default();
        // SAFETY: valid pointers and sizes.
        let r2 = unsafe {
            mem_enc_negotiate_vm_type(&caps, size_of::<mem_enc_caps>(), accept, &mut again)
        };
        assert_eq!(r2, r);
        assert_eq!(again.message, out.message);
    }
    let req = mem_enc_launch_request {
        accept_vm_types: MEM_ENC_VM_TYPES_CONFIDENTIAL,
        ..Default::default()
    };
    let mut settings = mem_enc_launch_settings {
        vm_type: 99,
        ..Default::default()
    };
    let mut msg = [0 as std::ffi::c_char; 300];
    // SAFETY: valid pointers and sizes.
    let r = unsafe {
        mem_enc_negotiate_launch(
            std::ptr::null(),
            0,
            &req,
            size_of::<mem_enc_launch_request>(),
            &mut settings,
            size_of::<mem_enc_launch_settings>(),
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    assert_eq!(r, -libc::EOPNOTSUPP);
    assert_eq!(settings.vm_type, 99, "settings are written only on success");
    // SAFETY: NUL-terminated.
    let msg = unsafe { CStr::from_ptr(msg.as_ptr()) }.to_str().unwrap();
    assert!(msg.contains("SEV-SNP:"), "{msg}");
}

#[test]
fn feature_levels_on_this_host_name_what_is_missing() {
    if !kvm_present() {
        return;
    }
    use memenc::capi::probe::{
        mem_enc_negotiate_snp_policy, mem_enc_negotiate_tdx_attributes,
        mem_enc_negotiate_vmsa_features,
    };
    let caps = probe_c(-1);
    let size = size_of::<mem_enc_caps>();
    let text = |out: &mem_enc_negotiation| {
        // SAFETY: NUL-terminated by the library.
        unsafe { CStr::from_ptr(out.message.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned()
    };
    let mut out = mem_enc_negotiation::default();
    // SAFETY: valid pointers and sizes throughout.
    unsafe {
        let r = mem_enc_negotiate_vmsa_features(
            &caps,
            size,
            MEM_ENC_VM_TYPE_SEV_ES,
            MEM_ENC_SEV_FEAT_DEBUG_SWAP,
            0,
            &mut out,
        );
        assert_eq!(r, -libc::EOPNOTSUPP);
        assert_eq!(out.missing, MEM_ENC_SEV_FEAT_DEBUG_SWAP);
        assert!(
            text(&out).starts_with("vmsa_features bit 5 (DEBUG_SWAP) not supported by this host"),
            "{}",
            text(&out)
        );
        let r = mem_enc_negotiate_snp_policy(&caps, size, 0, 0, &mut out);
        assert_eq!(r, -libc::EOPNOTSUPP);
        assert!(
            text(&out).contains("SEV-SNP is not available"),
            "{}",
            text(&out)
        );
        let r = mem_enc_negotiate_tdx_attributes(&caps, size, 0, 0, &mut out);
        assert_eq!(r, -libc::EOPNOTSUPP);
        assert!(
            text(&out).contains("TDX is not available"),
            "{}",
            text(&out)
        );
    }
}
