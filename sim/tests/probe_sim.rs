//! Issue 4's loop on the simulated host: for every profile, `mem_enc_probe()` on a simulated
//! `/dev/kvm` reports what the profile defines, `mem_enc_negotiate_launch()` picks the VM type
//! and init path that host needs, and the negotiated settings then work: the VM is created
//! with `create_vm_type` on the same descriptor and initialised (INIT2 / legacy ES_INIT /
//! TDX INIT_VM) and launched (SNP_LAUNCH_START, LAUNCH_START) through the typed helpers.
//! Every result here is SIMULATED: the model follows kernel-abi.md, not real hardware.

use std::ffi::{CStr, c_char};
use std::os::fd::RawFd;
use std::ptr::{null, null_mut};

use memenc::capi::probe::*;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::negotiate::*;
use memenc::probe::*;
use memenc::uapi::sev_id;
use memenc_sim::compat::*;
use memenc_sim::model::profile::{PROFILES, TDX_CPUID};
use sim_util::{Fd, gpaw48, kvm, op_retry, td_init_args};

mod sim_util;

const CAPS_SIZE: usize = size_of::<mem_enc_caps>();
const DEBUG_SWAP: u64 = 1 << 5;
const SECURE_TSC: u64 = 1 << 9;
const SEPT_VE_DISABLE: u64 = 1 << 28;
/// x87 | SSE: every TD needs them.
const XFAM_BASE: u64 = 0x3;
/// AVX: offered by the simulated TDX module.
const XFAM_AVX: u64 = 0x4;

fn probe(kvm: &Fd) -> mem_enc_caps {
    let mut caps = mem_enc_caps::default();
    // SAFETY: a whole struct.
    assert_eq!(unsafe { mem_enc_probe(kvm.0, &mut caps, CAPS_SIZE) }, 0);
    caps
}

/// `KVM_CREATE_VM` on the simulated `/dev/kvm`, as a VMM would issue it.
fn create_vm(kvm: &Fd, vm_type: u32) -> RawFd {
    let r = sim_util::create_vm(kvm.0, vm_type);
    assert!(r >= 0, "KVM_CREATE_VM({vm_type}): {r}");
    r
}

fn negotiate(
    caps: &mem_enc_caps,
    req: &mem_enc_launch_request,
) -> (mem_enc_launch_settings, String) {
    let mut out = mem_enc_launch_settings::default();
    let mut msg = [0 as c_char; 512];
    // SAFETY: whole structs and a 512-byte message buffer.
    let r = unsafe {
        mem_enc_negotiate_launch(
            caps,
            CAPS_SIZE,
            req,
            size_of::<mem_enc_launch_request>(),
            &mut out,
            size_of::<mem_enc_launch_settings>(),
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    // SAFETY: NUL-terminated by the export.
    let msg = unsafe { CStr::from_ptr(msg.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert_eq!(r, 0, "{msg}");
    (out, msg)
}

/// What a VMM that takes any AMD confidential VM would ask: SMT allowed in the SNP policy
/// (QEMU's default 0x30000), DEBUG_SWAP and SECURE_TSC if the host has them. (Required bits of
/// the other vendor would be refused: they cannot apply to the chosen type.)
fn amd_request() -> mem_enc_launch_request {
    mem_enc_launch_request {
        accept_vm_types: MEM_ENC_VM_TYPES_CONFIDENTIAL,
        vmsa_features_optional: DEBUG_SWAP | SECURE_TSC,
        snp_policy_required: MEM_ENC_SNP_POLICY_SMT,
        ..Default::default()
    }
}

/// A TD: SEPT_VE_DISABLE and x87/SSE required, AVX if offered.
fn tdx_request() -> mem_enc_launch_request {
    mem_enc_launch_request {
        accept_vm_types: MEM_ENC_VM_TYPES_CONFIDENTIAL,
        tdx_attributes_required: SEPT_VE_DISABLE,
        tdx_xfam_required: XFAM_BASE,
        tdx_xfam_optional: XFAM_AVX,
        ..Default::default()
    }
}

fn sev_device(vm: RawFd) -> RawFd {
    let fd = mem_enc_sim_sev_device_open(vm);
    assert!(fd >= 0, "simulated /dev/sev: {fd}");
    fd
}

/// The facts one profile must produce, written out from src/sim/profile.rs.
struct Expect {
    vendor: u32,
    features: u32,
    vm_types: (u32, u64),
    vmsa_features: (u32, u64),
    policy_bits: (u32, u64),
    req_certs: u32,
    /// `sev_null_probe` (err, value) when it was asked.
    null_probe: Option<(i32, u64)>,
    tdx: Option<(u64, u64, u64)>,
}

fn expect(profile: &str) -> Expect {
    const SIM: u32 = MEM_ENC_CAPS_SIMULATED;
    const AMD_TYPES: u64 = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4);
    const TDX_TYPES: u64 = (1 << 0) | (1 << 5);
    const PRIVATE: u32 = MEM_ENC_CAPS_GUEST_MEMFD | MEM_ENC_CAPS_PRIVATE_MEMORY;
    const SEV_ES: u32 = MEM_ENC_CAPS_SEV | MEM_ENC_CAPS_SEV_ES;
    const SNP: u32 = SEV_ES | MEM_ENC_CAPS_SNP | MEM_ENC_CAPS_SEV_INIT2;
    let na = (MEM_ENC_CAP_NOT_AVAILABLE, 0);
    let ns = (MEM_ENC_CAP_NOT_SUPPORTED, 0);
    let known = |v| (MEM_ENC_CAP_KNOWN, v);
    let amd = memenc::MEM_ENC_VENDOR_SEV;
    match profile {
        // No backend: the host speaks this CPU's vendor, as a real host without SEV/TDX does.
        "none" if memenc::host::cpu_vendor() == memenc::Vendor::Sev => Expect {
            vendor: amd,
            features: SIM | MEM_ENC_CAPS_GUEST_MEMFD,
            vm_types: known(1),
            vmsa_features: ns,
            policy_bits: ns,
            req_certs: MEM_ENC_CAP_NOT_SUPPORTED,
            null_probe: Some((-libc::ENOTTY, 0)),
            tdx: None,
        },
        "none" => Expect {
            vendor: memenc::host::cpu_vendor().as_u32(),
            features: SIM | MEM_ENC_CAPS_GUEST_MEMFD,
            vm_types: known(1),
            vmsa_features: na,
            policy_bits: na,
            req_certs: MEM_ENC_CAP_NOT_AVAILABLE,
            null_probe: None,
            tdx: None,
        },
        "sev@6.1" => Expect {
            vendor: amd,
            features: SIM | SEV_ES | MEM_ENC_CAPS_SEV_LEGACY_INIT,
            vm_types: ns,
            vmsa_features: ns,
            policy_bits: ns,
            req_certs: MEM_ENC_CAP_NOT_SUPPORTED,
            null_probe: Some((-libc::EFAULT, 1)),
            tdx: None,
        },
        "snp@6.11" => Expect {
            vendor: amd,
            features: SIM | SNP | MEM_ENC_CAPS_SEV_LEGACY_INIT | PRIVATE,
            vm_types: known(AMD_TYPES),
            vmsa_features: known(DEBUG_SWAP),
            policy_bits: (MEM_ENC_CAP_DEFAULTED, MEM_ENC_SNP_POLICY_BITS_STATIC),
            req_certs: MEM_ENC_CAP_NOT_SUPPORTED,
            null_probe: Some((0, 1)),
            tdx: None,
        },
        // 6.18: no attr 1 (the probe falls back to the static mask), no attr 2.
        "snp@6.18" => Expect {
            vendor: amd,
            features: SIM | SNP | MEM_ENC_CAPS_SEV_LEGACY_INIT | PRIVATE,
            vm_types: known(AMD_TYPES),
            vmsa_features: known(DEBUG_SWAP | SECURE_TSC),
            policy_bits: (MEM_ENC_CAP_DEFAULTED, MEM_ENC_SNP_POLICY_BITS_STATIC),
            req_certs: MEM_ENC_CAP_NOT_SUPPORTED,
            null_probe: Some((0, 1)),
            tdx: None,
        },
        "snp@6.19" => Expect {
            vendor: amd,
            features: SIM | SNP | MEM_ENC_CAPS_SEV_LEGACY_INIT | PRIVATE,
            vm_types: known(AMD_TYPES),
            vmsa_features: known(DEBUG_SWAP | SECURE_TSC),
            policy_bits: known(0x3FB_FFFF),
            req_certs: MEM_ENC_CAP_NOT_SUPPORTED,
            null_probe: Some((0, 1)),
            tdx: None,
        },
        "snp@7.0" => Expect {
            vendor: amd,
            features: SIM
                | SNP
                | MEM_ENC_CAPS_SEV_LEGACY_INIT
                | MEM_ENC_CAPS_SNP_REQ_CERTS
                | PRIVATE,
            vm_types: known(AMD_TYPES),
            vmsa_features: known(DEBUG_SWAP | SECURE_TSC),
            policy_bits: known(0x3FB_FFFF),
            req_certs: MEM_ENC_CAP_KNOWN,
            null_probe: Some((0, 1)),
            tdx: None,
        },
        "tdx@6.16" | "tdx@6.19" => Expect {
            vendor: memenc::MEM_ENC_VENDOR_TDX,
            features: SIM | MEM_ENC_CAPS_TDX | PRIVATE,
            vm_types: known(TDX_TYPES),
            vmsa_features: na,
            policy_bits: na,
            req_certs: MEM_ENC_CAP_NOT_AVAILABLE,
            null_probe: None,
            tdx: Some((SEPT_VE_DISABLE, 0x6_1BE7, TDX_CPUID.len() as u64)),
        },
        other => panic!("profile {other} has no expectations here: add them"),
    }
}

fn status_value(c: mem_enc_cap) -> (u32, u64) {
    let value = match c.status {
        MEM_ENC_CAP_KNOWN | MEM_ENC_CAP_DEFAULTED => c.value,
        _ => 0,
    };
    (c.status, value)
}

#[test]
fn every_profile_probes_as_it_is_defined() {
    let names: Vec<&str> = PROFILES.iter().map(|p| p.name.to_str().unwrap()).collect();
    assert_eq!(
        names.len(),
        8,
        "a new profile needs its expectations: {names:?}"
    );
    for name in names {
        let kvm = kvm(name);
        let caps = probe(&kvm);
        let e = expect(name);
        println!("SIMULATED {name}: features {:#x}", caps.features);
        assert_eq!(caps.size as usize, CAPS_SIZE, "{name}");
        assert_eq!(caps.vendor, e.vendor, "{name}");
        assert_eq!(caps.features, e.features, "{name}: features");
        assert_eq!(
            status_value(caps.api_version),
            (MEM_ENC_CAP_KNOWN, 12),
            "{name}"
        );
        assert_eq!(status_value(caps.vm_types), e.vm_types, "{name}: VM types");
        assert_eq!(
            status_value(caps.sev_vmsa_features),
            e.vmsa_features,
            "{name}: vmsa_features"
        );
        assert_eq!(
            status_value(caps.snp_policy_bits),
            e.policy_bits,
            "{name}: policy bits"
        );
        assert_eq!(caps.snp_req_certs.status, e.req_certs, "{name}: REQ_CERTS");
        if e.req_certs == MEM_ENC_CAP_KNOWN {
            assert_eq!(caps.snp_req_certs.value, 1, "{name}");
        }
        match e.null_probe {
            Some((err, value)) => {
                assert_eq!(caps.sev_null_probe.status, MEM_ENC_CAP_KNOWN, "{name}");
                assert_eq!(caps.sev_null_probe.err, err, "{name}: NULL probe");
                assert_eq!(caps.sev_null_probe.value, value, "{name}: SEV path exists");
            }
            None => assert_ne!(caps.sev_null_probe.status, MEM_ENC_CAP_KNOWN, "{name}"),
        }
        match e.tdx {
            Some((attrs, xfam, ncpuid)) => {
                assert_eq!(
                    status_value(caps.tdx_supported_attrs),
                    (MEM_ENC_CAP_KNOWN, attrs)
                );
                assert_eq!(
                    status_value(caps.tdx_supported_xfam),
                    (MEM_ENC_CAP_KNOWN, xfam)
                );
                assert_eq!(
                    status_value(caps.tdx_cpuid_configs),
                    (MEM_ENC_CAP_KNOWN, ncpuid),
                    "{name}"
                );
            }
            None => {
                assert_eq!(
                    caps.tdx_supported_attrs.status, MEM_ENC_CAP_NOT_AVAILABLE,
                    "{name}"
                );
                assert_eq!(
                    caps.tdx_cpuid_configs.status, MEM_ENC_CAP_NOT_AVAILABLE,
                    "{name}"
                );
            }
        }
        // INIT2 is published exactly where vmsa_features is known.
        assert_eq!(
            caps.features & MEM_ENC_CAPS_SEV_INIT2 != 0,
            caps.sev_vmsa_features.status == MEM_ENC_CAP_KNOWN,
            "{name}"
        );
    }
}

#[test]
fn simulated_hosts_are_never_cached() {
    // Two profiles one after the other, each through a fresh descriptor (which may reuse the
    // number of the last one): each answer is its own profile's.
    for _ in 0..3 {
        for name in ["snp@7.0", "sev@6.1", "tdx@6.19"] {
            let caps = probe(&kvm(name));
            assert_eq!(caps.features, expect(name).features, "{name}");
        }
    }
    // And /dev/kvm's cached answer (if this machine has one) never becomes a simulated one.
    let mut real = mem_enc_caps::default();
    // SAFETY: a whole struct.
    match unsafe { mem_enc_probe(-1, &mut real, CAPS_SIZE) } {
        0 => assert_eq!(real.features & MEM_ENC_CAPS_SIMULATED, 0),
        e => println!("SKIPPED: /dev/kvm part: probing it gave {e}"),
    }
}

#[test]
fn sev_6_1_negotiates_the_legacy_es_path_and_it_launches() {
    let kvm = kvm("sev@6.1");
    let caps = probe(&kvm);
    // No SNP policy bits: required ones would be refused where SNP cannot be chosen.
    let any_amd = mem_enc_launch_request {
        snp_policy_required: 0,
        ..amd_request()
    };
    let (s, msg) = negotiate(&caps, &any_amd);
    println!("SIMULATED sev@6.1: {msg}");
    assert_eq!(s.vendor, memenc::MEM_ENC_VENDOR_SEV);
    assert_eq!(s.vm_type, MEM_ENC_VM_TYPE_SEV_ES);
    assert_eq!(
        s.create_vm_type, MEM_ENC_VM_TYPE_DEFAULT,
        "legacy INIT runs on a DEFAULT VM"
    );
    assert_eq!(s.init_path, MEM_ENC_INIT_SEV_ES_LEGACY);
    assert_eq!(s.legacy, 1);
    assert_eq!(s.vmsa_features, 0, "the legacy path takes no vmsa_features");
    let vm = create_vm(&kvm, s.create_vm_type);
    let mut fw = u32::MAX;
    // SAFETY: valid pointers.
    unsafe {
        // INIT2 is not there on this kernel: the negotiated path is the one that works.
        let init2 = mem_enc_sev_init2_args::default();
        assert_eq!(mem_enc_sev_init2(vm, &init2, 16, &mut fw), -libc::EINVAL);
        let (r, c) = op_retry(vm, sev_id::ES_INIT);
        assert_eq!((r, c.sev().error), (0, 0));
        let start = mem_enc_sev_start_args {
            handle: 0,
            policy: 1 << 2, // ES: must match the VM
            cert: null(),
            cert_len: 0,
            session: null(),
            session_len: 0,
        };
        let mut handle = 0;
        let sev = sev_device(vm);
        assert_eq!(
            mem_enc_sev_launch_start(vm, sev, &start, 40, &mut handle, &mut fw),
            0,
            "fw {fw}"
        );
        assert_ne!(handle, 0);
        libc::close(sev);
        libc::close(vm);
    }
    // Plain SEV only: the legacy INIT path, also on a DEFAULT VM.
    let sev_only = mem_enc_launch_request {
        accept_vm_types: 1 << MEM_ENC_VM_TYPE_SEV,
        ..Default::default()
    };
    let (s, _) = negotiate(&caps, &sev_only);
    assert_eq!(
        (s.vm_type, s.create_vm_type, s.init_path),
        (
            MEM_ENC_VM_TYPE_SEV,
            MEM_ENC_VM_TYPE_DEFAULT,
            MEM_ENC_INIT_SEV_LEGACY
        )
    );
    let vm = create_vm(&kvm, s.create_vm_type);
    assert_eq!(op_retry(vm, sev_id::INIT).0, 0);
    // SAFETY: a descriptor this test owns.
    unsafe { libc::close(vm) };
}

/// SNP through INIT2 with the negotiated vmsa_features and policy: both launch.
fn snp_launches(profile: &str, features: u64) {
    let kvm = kvm(profile);
    let caps = probe(&kvm);
    let (s, msg) = negotiate(&caps, &amd_request());
    println!("SIMULATED {profile}: {msg}");
    assert_eq!(s.vm_type, MEM_ENC_VM_TYPE_SNP, "{profile}");
    assert_eq!(s.create_vm_type, MEM_ENC_VM_TYPE_SNP, "{profile}");
    assert_eq!(s.init_path, MEM_ENC_INIT_SEV_INIT2, "{profile}");
    assert_eq!(s.legacy, 0);
    assert_eq!(
        s.vmsa_features, features,
        "{profile}: the optional bits the host has"
    );
    assert_eq!(
        s.snp_policy,
        MEM_ENC_SNP_POLICY_SMT | MEM_ENC_SNP_POLICY_RSVD_MBO,
        "{profile}"
    );
    let vm = create_vm(&kvm, s.create_vm_type);
    let mut fw = u32::MAX;
    // SAFETY: valid pointers.
    unsafe {
        let init2 = mem_enc_sev_init2_args {
            vmsa_features: s.vmsa_features,
            ghcb_version: s.ghcb_version,
            ..Default::default()
        };
        assert_eq!(mem_enc_sev_init2(vm, &init2, 16, &mut fw), 0, "{profile}");
        let start = mem_enc_snp_launch_start_args {
            policy: s.snp_policy,
            gosvw: [0; 16],
        };
        let sev = sev_device(vm);
        assert_eq!(
            mem_enc_snp_launch_start(vm, sev, &start, 24, &mut fw),
            0,
            "{profile}: fw {fw}"
        );
        assert_eq!(fw, 0);
        libc::close(sev);
        libc::close(vm);
    }
    // A feature the host lacks is refused by negotiation, and the kernel refuses it too.
    let missing = SECURE_TSC & !features;
    if missing != 0 {
        let req = mem_enc_launch_request {
            vmsa_features_required: missing,
            ..amd_request()
        };
        let mut out = mem_enc_launch_settings::default();
        // SAFETY: whole structs; no message buffer.
        let r = unsafe {
            mem_enc_negotiate_launch(
                &caps,
                CAPS_SIZE,
                &req,
                size_of::<mem_enc_launch_request>(),
                &mut out,
                size_of::<mem_enc_launch_settings>(),
                null_mut(),
                0,
            )
        };
        assert_eq!(r, -libc::EOPNOTSUPP, "{profile}");
        let vm = create_vm(&kvm, MEM_ENC_VM_TYPE_SNP);
        let init2 = mem_enc_sev_init2_args {
            vmsa_features: missing,
            ..Default::default()
        };
        // SAFETY: valid pointers.
        unsafe {
            assert_eq!(mem_enc_sev_init2(vm, &init2, 16, &mut fw), -libc::EINVAL);
            libc::close(vm);
        }
    }
}

#[test]
fn snp_6_11_negotiates_snp_via_init2_and_it_launches() {
    snp_launches("snp@6.11", DEBUG_SWAP);
}

#[test]
fn snp_6_18_negotiates_snp_via_init2_and_it_launches() {
    snp_launches("snp@6.18", DEBUG_SWAP | SECURE_TSC);
}

#[test]
fn tdx_negotiates_tdx_and_init_vm_takes_the_settings() {
    for profile in ["tdx@6.16", "tdx@6.19"] {
        let kvm = kvm(profile);
        let caps = probe(&kvm);
        let (s, msg) = negotiate(&caps, &tdx_request());
        println!("SIMULATED {profile}: {msg}");
        assert_eq!(s.vendor, memenc::MEM_ENC_VENDOR_TDX);
        assert_eq!(
            (s.vm_type, s.create_vm_type, s.init_path),
            (MEM_ENC_VM_TYPE_TDX, MEM_ENC_VM_TYPE_TDX, MEM_ENC_INIT_TDX),
            "{profile}"
        );
        assert_eq!(s.tdx_attributes, SEPT_VE_DISABLE);
        assert_eq!(s.tdx_xfam, XFAM_BASE | XFAM_AVX);
        assert_eq!((s.vmsa_features, s.snp_policy), (0, 0));
        let vm = create_vm(&kvm, s.create_vm_type);
        // GPAW 48 in leaf 0x80000008, as every TD needs; the negotiated attributes and XFAM.
        let cpuid = [gpaw48()];
        let args = mem_enc_tdx_init_vm_args {
            attributes: s.tdx_attributes,
            xfam: s.tdx_xfam,
            ..td_init_args(&cpuid)
        };
        let mut hw = u64::MAX;
        // SAFETY: valid pointers.
        unsafe {
            assert_eq!(
                mem_enc_tdx_init_vm(vm, &args, 176, &mut hw),
                0,
                "{profile}: {hw:#x}"
            );
            assert_eq!(hw, 0);
            libc::close(vm);
        }
    }
}

/// Negotiation is sound for SNP policy: every policy it grants (each single feature bit asked
/// as optional, with SMT allowed) is one the simulated kernel's SNP_LAUNCH_START accepts, and
/// every bit it leaves out, asked as required, is refused by negotiation rather than by the
/// kernel later.
#[test]
fn every_granted_snp_policy_launches() {
    for profile in ["snp@6.11", "snp@6.18"] {
        let kvm = kvm(profile);
        let caps = probe(&kvm);
        for bit in 16..26 {
            let req = mem_enc_launch_request {
                snp_policy_optional: 1u64 << bit,
                ..amd_request()
            };
            let (s, msg) = negotiate(&caps, &req);
            let vm = create_vm(&kvm, s.create_vm_type);
            let mut fw = u32::MAX;
            let init2 = mem_enc_sev_init2_args {
                vmsa_features: s.vmsa_features,
                ghcb_version: s.ghcb_version,
                ..Default::default()
            };
            let start = mem_enc_snp_launch_start_args {
                policy: s.snp_policy,
                gosvw: [0; 16],
            };
            let sev = sev_device(vm);
            // SAFETY: valid pointers and descriptors.
            let r = unsafe {
                assert_eq!(mem_enc_sev_init2(vm, &init2, 16, &mut fw), 0, "{profile}");
                let r = mem_enc_snp_launch_start(vm, sev, &start, 24, &mut fw);
                libc::close(sev);
                libc::close(vm);
                r
            };
            assert_eq!(
                r, 0,
                "SIMULATED {profile}: granted policy {:#x} refused by the kernel ({msg})",
                s.snp_policy
            );
        }
    }
    // The 6.11-era kernel refuses a policy without SMT; negotiation says so up front.
    let caps = probe(&kvm("snp@6.11"));
    let req = mem_enc_launch_request {
        snp_policy_required: 0,
        ..amd_request()
    };
    let mut out = mem_enc_launch_settings::default();
    // SAFETY: whole structs; no message buffer.
    let r = unsafe {
        mem_enc_negotiate_launch(
            &caps,
            CAPS_SIZE,
            &req,
            size_of::<mem_enc_launch_request>(),
            &mut out,
            size_of::<mem_enc_launch_settings>(),
            null_mut(),
            0,
        )
    };
    assert_eq!(r, -libc::EOPNOTSUPP, "snp@6.11 without SMT");
}
