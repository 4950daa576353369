//! SEV/SEV-ES guest policy negotiation (`mem_enc_launch_request.sev_policy` ->
//! `mem_enc_launch_settings.sev_policy`): ES set exactly for SEV-ES, reserved bits and foreign
//! requests refused, the extensible-struct rules for VER0 callers, and soundness: the policy
//! negotiated on every simulated SEV-capable profile is accepted by its LAUNCH_START. Every
//! launch here is SIMULATED.

mod sim_util;

use std::ffi::{CStr, CString, c_char};
use std::os::fd::RawFd;
use std::ptr::null;

use memenc::capi::probe::*;
use memenc::capi::sev::*;
use memenc::negotiate::*;
use memenc::probe::*;
use memenc::uapi::sev_id;
use memenc_sim::compat::*;
use sim_util::{create_vm, op_retry};

const CAPS_SIZE: usize = size_of::<mem_enc_caps>();
const REQ_SIZE: usize = size_of::<mem_enc_launch_request>();
const OUT_SIZE: usize = size_of::<mem_enc_launch_settings>();

fn close(fd: RawFd) {
    // SAFETY: a descriptor this test owns.
    unsafe { libc::close(fd) };
}

fn sim_kvm(profile: &str) -> RawFd {
    let name = CString::new(profile).unwrap();
    // SAFETY: a NUL-terminated name.
    let fd = unsafe { mem_enc_sim_kvm_open(name.as_ptr()) };
    assert!(fd >= 0, "{profile}: {fd}");
    fd
}

fn probe(kvm: RawFd) -> mem_enc_caps {
    let mut caps = mem_enc_caps::default();
    // SAFETY: a whole struct.
    assert_eq!(unsafe { mem_enc_probe(kvm, &mut caps, CAPS_SIZE) }, 0);
    caps
}

/// `mem_enc_negotiate_launch` with explicit sizes: (return, settings bytes, message).
fn negotiate_raw(
    caps: &mem_enc_caps,
    req: &mem_enc_launch_request,
    req_size: usize,
    out_size: usize,
) -> (i32, [u8; 80], String) {
    let mut out = [0xAAu8; 80];
    let mut msg = [0 as c_char; 512];
    // SAFETY: `req` has REQ_SIZE >= req_size readable bytes; `out` 80 >= out_size writable.
    let r = unsafe {
        mem_enc_negotiate_launch(
            caps,
            CAPS_SIZE,
            req,
            req_size,
            out.as_mut_ptr().cast(),
            out_size,
            msg.as_mut_ptr(),
            msg.len(),
        )
    };
    // SAFETY: NUL-terminated by the export.
    let msg = unsafe { CStr::from_ptr(msg.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    (r, out, msg)
}

fn negotiate(caps: &mem_enc_caps, req: &mem_enc_launch_request) -> mem_enc_launch_settings {
    let (r, out, msg) = negotiate_raw(caps, req, REQ_SIZE, OUT_SIZE);
    assert_eq!(r, 0, "{msg}");
    // SAFETY: OUT_SIZE bytes written by the export.
    unsafe { std::ptr::read_unaligned(out.as_ptr().cast()) }
}

fn request(types: u32, sev_policy: u32) -> mem_enc_launch_request {
    mem_enc_launch_request {
        accept_vm_types: types,
        sev_policy,
        ..Default::default()
    }
}

const SEV: u32 = 1 << MEM_ENC_VM_TYPE_SEV;
const SEV_ES: u32 = 1 << MEM_ENC_VM_TYPE_SEV_ES;
const SNP: u32 = 1 << MEM_ENC_VM_TYPE_SNP;

#[test]
fn constants_follow_the_sev_api_spec() {
    assert_eq!(MEM_ENC_SEV_POLICY_NODBG, 0x1);
    assert_eq!(MEM_ENC_SEV_POLICY_NOKS, 0x2);
    assert_eq!(MEM_ENC_SEV_POLICY_ES, 0x4);
    assert_eq!(MEM_ENC_SEV_POLICY_NOSEND, 0x8);
    assert_eq!(MEM_ENC_SEV_POLICY_DOMAIN, 0x10);
    assert_eq!(MEM_ENC_SEV_POLICY_SEV, 0x20);
    assert_eq!(MEM_ENC_SEV_POLICY_API_MAJOR_MASK, 0x00FF_0000);
    assert_eq!(MEM_ENC_SEV_POLICY_API_MINOR_MASK, 0xFF00_0000);
    assert_eq!(MEM_ENC_SEV_POLICY_DEFINED, 0xFFFF_003F);
    assert_eq!(MEM_ENC_LAUNCH_REQUEST_SIZE_VER1 as usize, REQ_SIZE);
    assert_eq!(MEM_ENC_LAUNCH_SETTINGS_SIZE_VER1 as usize, OUT_SIZE);
}

#[test]
fn es_is_set_exactly_for_sev_es_and_the_plan_says_so() {
    for profile in ["sev@6.1", "snp@6.11", "snp@6.18"] {
        println!("simulated host: {profile}");
        let kvm = sim_kvm(profile);
        let caps = probe(kvm);
        for (types, asked, want) in [
            (SEV_ES, 0, MEM_ENC_SEV_POLICY_ES),
            (SEV_ES, MEM_ENC_SEV_POLICY_NODBG, 0x5),
            (SEV_ES, MEM_ENC_SEV_POLICY_ES | MEM_ENC_SEV_POLICY_NOKS, 0x6),
            (SEV, MEM_ENC_SEV_POLICY_NODBG, 0x1),
            (SEV, 0, 0),
            (SEV | SEV_ES, MEM_ENC_SEV_POLICY_NOSEND, 0xC),
        ] {
            let (r, out, msg) = negotiate_raw(&caps, &request(types, asked), REQ_SIZE, OUT_SIZE);
            assert_eq!(r, 0, "{profile} {types:#x} {asked:#x}: {msg}");
            // SAFETY: OUT_SIZE bytes written by the export.
            let s: mem_enc_launch_settings =
                unsafe { std::ptr::read_unaligned(out.as_ptr().cast()) };
            assert_eq!(s.sev_policy, want, "{profile} {types:#x} {asked:#x}");
            assert_eq!((s.snp_policy, s.reserved1), (0, 0));
            assert!(msg.contains(&format!("policy {want:#x}")), "{msg}");
        }
        close(kvm);
    }
}

#[test]
fn invalid_policies_are_refused() {
    let kvm = sim_kvm("snp@6.18");
    let caps = probe(kvm);
    let cases = [
        (request(SEV, MEM_ENC_SEV_POLICY_ES), "bit 2 (ES)"),
        (request(SEV_ES, 1 << 6), "reserved"),
        (request(SEV_ES, 1 << 15), "reserved"),
        // SNP has its own 64-bit policy.
        (request(SNP, MEM_ENC_SEV_POLICY_NODBG), "SEV policy"),
        (
            mem_enc_launch_request {
                reserved1: 1,
                ..request(SEV_ES, 0)
            },
            "reserved fields",
        ),
        (
            mem_enc_launch_request {
                reserved0: 1,
                ..request(SEV_ES, 0)
            },
            "reserved fields",
        ),
    ];
    for (req, says) in cases {
        let (r, out, msg) = negotiate_raw(&caps, &req, REQ_SIZE, OUT_SIZE);
        assert_eq!(r, -libc::EINVAL, "{req:?}: {msg}");
        assert!(msg.contains(says), "{msg}");
        assert!(
            out.iter().all(|&b| b == 0xAA),
            "nothing written on a refusal"
        );
    }
    close(kvm);
}

#[test]
fn ver0_callers_keep_working() {
    let kvm = sim_kvm("snp@6.18");
    let caps = probe(kvm);
    // A VER0 request (72 bytes) asks for no SEV policy: SEV-ES still gets ES.
    let req = request(SEV_ES, MEM_ENC_SEV_POLICY_NODBG);
    let (r, out, msg) = negotiate_raw(
        &caps,
        &req,
        MEM_ENC_LAUNCH_REQUEST_SIZE_VER0 as usize,
        OUT_SIZE,
    );
    assert_eq!(r, 0, "{msg}");
    assert_eq!(&out[56..60], &MEM_ENC_SEV_POLICY_ES.to_le_bytes());
    // A VER0 settings struct (56 bytes) gets the prefix; the 8 bytes after it stay untouched.
    let (r, out, msg) = negotiate_raw(
        &caps,
        &req,
        REQ_SIZE,
        MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0 as usize,
    );
    assert_eq!(r, 0, "{msg}");
    assert!(out[56..].iter().all(|&b| b == 0xAA));
    assert_eq!(&out[4..8], &MEM_ENC_VM_TYPE_SEV_ES.to_le_bytes());
    // Below VER0: refused.
    let (r, ..) = negotiate_raw(&caps, &req, REQ_SIZE, 48);
    assert_eq!(r, -libc::EINVAL);
    // A newer caller's larger request with a zero tail is accepted; a non-zero tail is not.
    #[repr(C)]
    struct Bigger {
        req: mem_enc_launch_request,
        tail: [u8; 8],
    }
    let mut big = Bigger { req, tail: [0; 8] };
    // SAFETY: `big` has 88 readable bytes; out has 80 writable bytes.
    let call = |big: &Bigger| unsafe {
        let mut out = [0u8; 80];
        mem_enc_negotiate_launch(
            &caps,
            CAPS_SIZE,
            (big as *const Bigger).cast(),
            size_of::<Bigger>(),
            out.as_mut_ptr().cast(),
            OUT_SIZE,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(call(&big), 0);
    big.tail[3] = 1;
    assert_eq!(call(&big), -libc::E2BIG);
    close(kvm);
}

/// Soundness: the negotiated policy is what LAUNCH_START of that VM accepts, on every simulated
/// SEV-capable profile and both technologies.
#[test]
fn every_negotiated_sev_policy_launches() {
    for profile in ["sev@6.1", "snp@6.11", "snp@6.18"] {
        for types in [SEV, SEV_ES] {
            let kvm = sim_kvm(profile);
            let caps = probe(kvm);
            let s = negotiate(&caps, &request(types, MEM_ENC_SEV_POLICY_NODBG));
            let vm = create_vm(kvm, s.create_vm_type);
            assert!(vm >= 0);
            let mut fw = u32::MAX;
            // SAFETY (whole block): valid pointers and sizes.
            unsafe {
                let r = match s.init_path {
                    MEM_ENC_INIT_SEV_LEGACY => op_retry(vm, sev_id::INIT).0,
                    MEM_ENC_INIT_SEV_ES_LEGACY => op_retry(vm, sev_id::ES_INIT).0,
                    _ => {
                        let init = mem_enc_sev_init2_args {
                            vmsa_features: s.vmsa_features,
                            ghcb_version: s.ghcb_version,
                            ..Default::default()
                        };
                        mem_enc_sev_init2(vm, &init, size_of_val(&init), &mut fw)
                    }
                };
                assert_eq!(r, 0, "{profile}: init");
                let sev = mem_enc_sim_sev_device_open(vm);
                assert!(sev >= 0);
                let start = mem_enc_sev_start_args {
                    handle: 0,
                    policy: s.sev_policy,
                    cert: null(),
                    cert_len: 0,
                    session: null(),
                    session_len: 0,
                };
                let mut handle = 0;
                let r = mem_enc_sev_launch_start(vm, sev, &start, 40, &mut handle, &mut fw);
                assert_eq!(
                    (r, fw),
                    (0, 0),
                    "SIMULATED {profile}: policy {:#x} for type {}",
                    s.sev_policy,
                    s.vm_type
                );
                // The opposite ES bit is what the firmware refuses (SEV_RET_POLICY_FAILURE).
                let vm2 = create_vm(kvm, s.create_vm_type);
                let r = match s.init_path {
                    MEM_ENC_INIT_SEV_LEGACY => op_retry(vm2, sev_id::INIT).0,
                    MEM_ENC_INIT_SEV_ES_LEGACY => op_retry(vm2, sev_id::ES_INIT).0,
                    _ => {
                        let init = mem_enc_sev_init2_args {
                            vmsa_features: s.vmsa_features,
                            ghcb_version: s.ghcb_version,
                            ..Default::default()
                        };
                        mem_enc_sev_init2(vm2, &init, size_of_val(&init), &mut fw)
                    }
                };
                assert_eq!(r, 0);
                let wrong = mem_enc_sev_start_args {
                    policy: s.sev_policy ^ MEM_ENC_SEV_POLICY_ES,
                    ..start
                };
                let r = mem_enc_sev_launch_start(vm2, sev, &wrong, 40, &mut handle, &mut fw);
                assert_eq!((r, fw), (-libc::EIO, 7), "{profile}: flipped ES bit");
                for fd in [sev, vm2, vm] {
                    close(fd);
                }
            }
            close(kvm);
        }
    }
}

/// `ghcb_version` has the kernel's 16-bit width in the request, the settings and
/// `mem_enc_sev_init2_args`, at the offsets the first (32-bit) layout had: a caller built
/// against that layout passes and reads the same bytes.
#[test]
fn ghcb_version_is_16_bits_everywhere_and_old_layout_bytes_still_work() {
    use memenc::capi::sev::mem_enc_sev_init2_args;
    // The same type in all three (this does not compile otherwise).
    let _: [u16; 3] = [
        mem_enc_launch_settings::default().ghcb_version,
        mem_enc_sev_init2_args::default().ghcb_version,
        mem_enc_launch_request::default().ghcb_version,
    ];
    assert_eq!(
        std::mem::offset_of!(mem_enc_launch_request, ghcb_version),
        4
    );
    assert_eq!(
        std::mem::offset_of!(mem_enc_launch_settings, ghcb_version),
        16
    );

    let kvm = sim_kvm("snp@6.18");
    let caps = probe(kvm);
    // An old caller's request: ghcb_version 1 written as a 32-bit value.
    let mut bytes = [0u8; REQ_SIZE];
    bytes[..4].copy_from_slice(&SEV_ES.to_le_bytes());
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    // SAFETY: REQ_SIZE bytes.
    let req: mem_enc_launch_request = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let (r, out, msg) = negotiate_raw(
        &caps,
        &req,
        MEM_ENC_LAUNCH_REQUEST_SIZE_VER0 as usize,
        MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0 as usize,
    );
    assert_eq!(r, 0, "{msg}");
    // ...reads its 32-bit field back as 1.
    assert_eq!(u32::from_le_bytes(out[16..20].try_into().unwrap()), 1);
    // A value that did not fit 16 bits lands in reserved0: refused, not truncated.
    bytes[4..8].copy_from_slice(&0x1_0002u32.to_le_bytes());
    // SAFETY: as above.
    let req: mem_enc_launch_request = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let (r, _, msg) = negotiate_raw(&caps, &req, REQ_SIZE, OUT_SIZE);
    assert_eq!(r, -libc::EINVAL, "{msg}");
    close(kvm);
}
