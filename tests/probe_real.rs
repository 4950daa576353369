//! The probe and negotiation against this machine's real /dev/kvm. The expectations follow
//! facts about the host that do not come from memenc: the CPU (CPUID by the instruction), the
//! KVM module parameters (/sys/module/kvm_amd/parameters/sev*, kvm_intel/parameters/tdx), and
//! /dev/sev. So the tests pass on a plain host, an SEV, SEV-SNP or a TDX host alike. Skips
//! visibly where /dev/kvm is absent.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use memenc::capi::probe::{mem_enc_negotiate_launch, mem_enc_probe};
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

/// What this host is, read without memenc.
#[derive(Debug)]
struct HostFacts {
    vendor: u32,
    /// CPUID 0x8000001F EAX bits 1, 3, 4: the CPU implements SEV, SEV-ES, SEV-SNP.
    cpu_sev: bool,
    cpu_sev_es: bool,
    cpu_snp: bool,
    /// kvm_amd's `sev`, `sev_es`, `sev_snp` parameters (Y/1 when KVM enabled the feature).
    kvm_sev: bool,
    kvm_sev_es: bool,
    kvm_snp: bool,
    /// kvm_intel's `tdx` parameter.
    kvm_tdx: bool,
    dev_sev: bool,
}

fn param(module: &str, name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/module/{module}/parameters/{name}"))
        .is_ok_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
}

fn host_facts() -> HostFacts {
    use core::arch::x86_64::__cpuid;
    // CPUID has no side effects; leaf 0 and the extended maximum exist on every x86_64 CPU.
    let leaf0 = __cpuid(0);
    let mut id = [0u8; 12];
    id[0..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    id[8..12].copy_from_slice(&leaf0.ecx.to_le_bytes());
    let vendor = match &id {
        b"AuthenticAMD" | b"HygonGenuine" => memenc::MEM_ENC_VENDOR_SEV,
        b"GenuineIntel" => memenc::MEM_ENC_VENDOR_TDX,
        _ => memenc::MEM_ENC_VENDOR_NONE,
    };
    let ext_max = __cpuid(0x8000_0000).eax;
    let sme = if vendor == memenc::MEM_ENC_VENDOR_SEV && ext_max >= 0x8000_001F {
        __cpuid(0x8000_001F).eax
    } else {
        0
    };
    HostFacts {
        vendor,
        cpu_sev: sme & (1 << 1) != 0,
        cpu_sev_es: sme & (1 << 3) != 0,
        cpu_snp: sme & (1 << 4) != 0,
        kvm_sev: param("kvm_amd", "sev"),
        kvm_sev_es: param("kvm_amd", "sev_es"),
        kvm_snp: param("kvm_amd", "sev_snp"),
        kvm_tdx: param("kvm_intel", "tdx"),
        dev_sev: std::path::Path::new("/dev/sev").exists(),
    }
}

#[test]
fn probe_reports_this_host_as_it_is() {
    if !kvm_present() {
        return;
    }
    let facts = host_facts();
    println!("{facts:?}");
    // valgrind and some hypervisors virtualise CPUID: the kernel's parameters decide, and the
    // CPU only bounds them (KVM never enables what the CPU lacks).
    assert!(!facts.kvm_sev || facts.cpu_sev, "{facts:?}");
    assert!(
        !(facts.kvm_sev && facts.kvm_sev_es) || facts.cpu_sev_es,
        "{facts:?}"
    );
    assert!(!facts.kvm_snp || facts.cpu_snp, "{facts:?}");
    let caps = probe_c(-1);
    println!("{caps:#?}");
    assert_eq!(caps.size, MEM_ENC_CAPS_SIZE_VER0);
    assert_eq!(caps.vendor, memenc::host::cpu_vendor().as_u32());
    assert_eq!(caps.api_version, mem_enc_cap::known(12));
    assert_eq!(caps.features & MEM_ENC_CAPS_SIMULATED, 0);
    assert!(caps.vm_types.is_known());
    assert_eq!(
        caps.vm_types.value & 1,
        1,
        "the default VM type always exists"
    );
    let has = |bit: u32| caps.features & bit != 0;
    let vm_type = |t: u32| caps.vm_types.value & (1 << t) != 0;
    assert_eq!(has(MEM_ENC_CAPS_SEV), facts.kvm_sev, "{facts:?}");
    assert_eq!(
        has(MEM_ENC_CAPS_SEV_ES),
        facts.kvm_sev && facts.kvm_sev_es,
        "{facts:?}"
    );
    assert_eq!(has(MEM_ENC_CAPS_SNP), facts.kvm_snp, "{facts:?}");
    assert_eq!(has(MEM_ENC_CAPS_TDX), facts.kvm_tdx, "{facts:?}");
    assert_eq!(vm_type(MEM_ENC_VM_TYPE_TDX), facts.kvm_tdx);
    assert_eq!(vm_type(MEM_ENC_VM_TYPE_SNP), facts.kvm_snp);
    if facts.kvm_sev || facts.kvm_snp {
        assert!(facts.dev_sev, "KVM's SEV needs the PSP driver's /dev/sev");
    }
    if facts.vendor == memenc::MEM_ENC_VENDOR_SEV && !facts.kvm_sev && !facts.kvm_snp {
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
    } else if facts.vendor == memenc::MEM_ENC_VENDOR_SEV {
        assert!(caps.sev_vmsa_features.is_known(), "{facts:?}");
    } else if facts.kvm_tdx {
        assert!(caps.tdx_supported_attrs.is_known(), "{facts:?}");
    } else {
        assert_eq!(caps.sev_vmsa_features.status, MEM_ENC_CAP_NOT_AVAILABLE);
        assert_ne!(caps.tdx_supported_attrs.status, MEM_ENC_CAP_KNOWN);
    }
    // guest_memfd: KVM_CAP_GUEST_MEMFD answers as the probe says.
    if caps.guest_memfd.is_known() && caps.guest_memfd.value != 0 {
        assert_ne!(caps.features & MEM_ENC_CAPS_GUEST_MEMFD, 0);
    }
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
fn negotiating_a_confidential_vm_type_follows_the_host() {
    if !kvm_present() {
        return;
    }
    let facts = host_facts();
    let caps = probe_c(-1);
    for (accept, available) in [
        (1u32 << MEM_ENC_VM_TYPE_SEV, facts.kvm_sev),
        (
            1 << MEM_ENC_VM_TYPE_SEV_ES,
            facts.kvm_sev && facts.kvm_sev_es,
        ),
        (1 << MEM_ENC_VM_TYPE_SNP, facts.kvm_snp),
        (1 << MEM_ENC_VM_TYPE_TDX, facts.kvm_tdx),
        (
            MEM_ENC_VM_TYPES_CONFIDENTIAL,
            facts.kvm_sev || facts.kvm_snp || facts.kvm_tdx,
        ),
    ] {
        let req = mem_enc_launch_request {
            accept_vm_types: accept,
            ..Default::default()
        };
        let mut settings = mem_enc_launch_settings {
            vm_type: 99,
            ..Default::default()
        };
        let mut msg = [0 as std::ffi::c_char; 300];
        let run = |caps: *const mem_enc_caps,
                   size: usize,
                   settings: &mut mem_enc_launch_settings,
                   msg: &mut [std::ffi::c_char; 300]| {
            // SAFETY: valid pointers and sizes; NULL caps means "probe /dev/kvm" (cached).
            unsafe {
                mem_enc_negotiate_launch(
                    caps,
                    size,
                    &req,
                    size_of::<mem_enc_launch_request>(),
                    settings,
                    size_of::<mem_enc_launch_settings>(),
                    msg.as_mut_ptr(),
                    msg.len(),
                )
            }
        };
        let r = run(std::ptr::null(), 0, &mut settings, &mut msg);
        // SAFETY: NUL-terminated by the library.
        let text = unsafe { CStr::from_ptr(msg.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        println!("accept {accept:#x}: {r} {text}");
        if available {
            assert_eq!(r, 0, "accept {accept:#x}: {text}");
            assert_ne!(accept & (1 << settings.vm_type), 0);
        } else {
            assert_eq!(r, -libc::EOPNOTSUPP, "accept {accept:#x}");
            assert_eq!(settings.vm_type, 99, "settings are written only on success");
            assert!(!text.is_empty());
        }
        // The same answer from the caller's probe struct.
        let mut again = mem_enc_launch_settings::default();
        let mut msg2 = [0 as std::ffi::c_char; 300];
        assert_eq!(
            run(&caps, size_of::<mem_enc_caps>(), &mut again, &mut msg2),
            r
        );
        assert_eq!(msg2, msg);
    }
}
