//! The simulated SEV, SEV-ES and SNP hosts (labelled simulated): every launch command's
//! success path, the kernel's documented errors, the envelope's copy-back rules, and
//! known-answer tests of the SEV and SNP measurements computed here from the specifications.

mod sim_util;

use hmac::{KeyInit, Mac};
use memenc::uapi::{sev_id as id, *};
use memenc::{MEM_ENC_FLAG_CONTINUE, MEM_ENC_FLAG_RETRY};
use memenc_sim::compat::*;
use sha2::{Digest, Sha256, Sha384};
use sim_util::*;

const SEV_RET_INVALID_GUEST_STATE: u32 = 2;
const SEV_RET_INVALID_LEN: u32 = 4;
const SEV_RET_POLICY_FAILURE: u32 = 7;
const SEV_RET_BAD_MEASUREMENT: u32 = 0x0B;

/// A command placed alone on a page that is then made read-only: the kernel's copy-back
/// fails there, which shows whether the 24 bytes are written back.
fn op_on_readonly_page(fd: &Fd, cmd: [u8; 24]) -> Result<i32, i32> {
    let mut page = Mem::new(PAGE as usize);
    page.bytes()[..24].copy_from_slice(&cmd);
    // SAFETY: our own mapping.
    assert_eq!(
        unsafe { libc::mprotect(page.addr as *mut _, PAGE as usize, libc::PROT_READ) },
        0
    );
    raw(fd.0, KVM_MEMORY_ENCRYPT_OP, page.addr)
}

fn sev_error(cmd: &memenc::mem_enc_cmd) -> u32 {
    cmd.sev().error
}

#[test]
fn sev_6_1_legacy_launch_and_its_measurement() {
    println!("simulated host: sev@6.1");
    let vm = new_vm("sev@6.1", 0);
    let sev = sev_dev(&vm);
    // Before 6.10 there is no NULL probe: the copy of the NULL command faults.
    assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_OP, 0), Err(EFAULT));
    let mut start = kvm_sev_launch_start {
        policy: 0,
        ..Default::default()
    };
    // Commands before INIT: -ENOTTY, except RECEIVE_UPDATE_DATA (-EINVAL).
    assert_eq!(
        op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev)).0,
        Err(ENOTTY)
    );
    let mut rud = kvm_sev_receive_update_data::default();
    assert_eq!(
        op(&vm, id::RECEIVE_UPDATE_DATA, ptr(&mut rud), None).0,
        Err(EINVAL)
    );
    // 6.1 knows neither INIT2 nor the SNP ids.
    assert_eq!(op(&vm, id::INIT2, 0, None).0, Err(EINVAL));
    assert_eq!(op(&vm, id::SNP_LAUNCH_START, 0, None).0, Err(EINVAL));
    assert_eq!(op(&vm, id::INIT, 0, None).0, Ok(()));
    assert_eq!(op(&vm, id::INIT, 0, None).0, Err(EINVAL), "INIT twice");
    // sev_fd must be an open /dev/sev.
    assert_eq!(
        op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&vm)).0,
        Err(EBADF)
    );
    assert_eq!(op(&vm, id::LAUNCH_START, 8, Some(&sev)).0, Err(EFAULT));
    let (r, cmd) = op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev));
    assert_eq!((r, sev_error(&cmd)), (Ok(()), 0));
    assert_ne!(start.handle, 0, "the new handle is written back");
    assert_eq!(digest(&vm), Ok(Sha256::digest([]).to_vec()));

    let mut data = Mem::new(2 * PAGE as usize);
    for (i, b) in data.bytes().iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    let mut upd = kvm_sev_launch_update_data {
        uaddr: data.addr,
        len: 2 * PAGE as u32,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut upd), None).0,
        Ok(())
    );
    let mut bad = kvm_sev_launch_update_data {
        uaddr: data.addr,
        len: 0,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut bad), None).0,
        Err(EINVAL)
    );
    bad = kvm_sev_launch_update_data {
        uaddr: 4096,
        len: 16,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut bad), None).0,
        Err(libc::ENOMEM),
        "unpinnable"
    );
    let ld: [u8; 32] = Sha256::digest(&data.bytes()[..]).into();
    assert_eq!(digest(&vm), Ok(ld.to_vec()));

    // LAUNCH_MEASURE: the length query answers INVALID_LEN with len = 48.
    let mut m = kvm_sev_launch_measure::default();
    let (r, cmd) = op(&vm, id::LAUNCH_MEASURE, ptr(&mut m), None);
    assert_eq!(
        (r, sev_error(&cmd), m.len),
        (Err(EIO), SEV_RET_INVALID_LEN, 48)
    );
    let mut blob = [0u8; 48];
    m = kvm_sev_launch_measure {
        uaddr: blob.as_mut_ptr() as u64,
        len: 48,
        pad0: 0,
    };
    assert_eq!(op(&vm, id::LAUNCH_MEASURE, ptr(&mut m), None).0, Ok(()));
    // Known answer: HMAC-SHA256(TIK, 0x04 | API major | minor | build | policy | LD | mnonce).
    let tik: Vec<u8> = (0u8..16).collect();
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&tik).unwrap();
    mac.update(&[0x04, 0, 24, 18]);
    mac.update(&0u32.to_le_bytes());
    mac.update(&ld);
    mac.update(&blob[32..48]);
    assert_eq!(
        &blob[..32],
        &mac.finalize().into_bytes()[..],
        "LAUNCH_MEASURE HMAC"
    );
    // Out of order: UPDATE_DATA after MEASURE is the firmware's INVALID_GUEST_STATE.
    let (r, cmd) = op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut upd), None);
    assert_eq!(
        (r, sev_error(&cmd)),
        (Err(EIO), SEV_RET_INVALID_GUEST_STATE)
    );

    let mut secret_hdr = [0u8; 52];
    let mut secret = [0u8; 16];
    let mut s = kvm_sev_launch_secret {
        hdr_uaddr: secret_hdr.as_mut_ptr() as u64,
        hdr_len: 52,
        guest_uaddr: data.addr,
        guest_len: 16,
        trans_uaddr: secret.as_mut_ptr() as u64,
        trans_len: 16,
        ..Default::default()
    };
    assert_eq!(op(&vm, id::LAUNCH_SECRET, ptr(&mut s), None).0, Ok(()));
    assert_eq!(op(&vm, id::LAUNCH_FINISH, 0, None).0, Ok(()));
    let mut st = kvm_sev_guest_status::default();
    assert_eq!(op(&vm, id::GUEST_STATUS, ptr(&mut st), None).0, Ok(()));
    assert_eq!(
        (st.handle, st.policy, st.state),
        (start.handle, 0, 3),
        "RUNNING"
    );
    // Debugging is allowed by policy 0: DBG_DECRYPT copies.
    let mut out = [0u8; 32];
    let mut dbg = kvm_sev_dbg {
        src_uaddr: data.addr,
        dst_uaddr: out.as_mut_ptr() as u64,
        len: 32,
        pad0: 0,
    };
    assert_eq!(op(&vm, id::DBG_DECRYPT, ptr(&mut dbg), None).0, Ok(()));
    assert_eq!(&out[..], &data.bytes()[..32]);
    dbg.dst_uaddr = 0;
    assert_eq!(op(&vm, id::DBG_DECRYPT, ptr(&mut dbg), None).0, Err(EINVAL));
    // The attestation report: length query, then the report with mnonce and LD.
    let mut rep = kvm_sev_attestation_report::default();
    let (r, cmd) = op(&vm, id::GET_ATTESTATION_REPORT, ptr(&mut rep), None);
    assert_eq!(
        (r, sev_error(&cmd), rep.len),
        (Err(EIO), SEV_RET_INVALID_LEN, 208)
    );
    let mut report = vec![0u8; 208];
    rep = kvm_sev_attestation_report {
        mnonce: [9; 16],
        uaddr: report.as_mut_ptr() as u64,
        len: 208,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::GET_ATTESTATION_REPORT, ptr(&mut rep), None).0,
        Ok(())
    );
    assert_eq!((&report[..16], &report[16..48]), (&[9u8; 16][..], &ld[..]));
}

/// A reset vCPU's VMSA as `sev_es_sync_vmsa()` leaves it: the model's VMSA builder on a vCPU
/// whose registers the test never set (that builder is checked byte for byte against
/// sev-snp-measure in vmsa_vs_sev_snp_measure.rs; here it only names the expected page).
fn vmsa(features: u64, synced_fpu: bool) -> Vec<u8> {
    use memenc_sim::model::vmsa::{HostCpu, SyncVariant, VcpuState, sync_vmsa};
    let variant = if synced_fpu {
        SyncVariant::INIT2
    } else {
        SyncVariant::LEGACY
    };
    let state = VcpuState::reset(HostCpu::default(), None);
    sync_vmsa(&state, features, variant).unwrap().to_vec()
}

/// One SEV-ES launch on a simulated VM: legacy ES_INIT on a DEFAULT VM (sev@6.1) or INIT2 on a
/// SEV-ES VM (snp@6.18); one data page and two VMSAs. Returns the launch digest.
fn sev_es_launch(profile: &str, legacy: bool) -> Vec<u8> {
    let vm = new_vm(profile, if legacy { 0 } else { 3 });
    let sev = sev_dev(&vm);
    if legacy {
        assert_eq!(op(&vm, id::ES_INIT, 0, None).0, Ok(()));
    } else {
        let mut init = kvm_sev_init {
            ghcb_version: 2,
            ..Default::default()
        };
        assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Ok(()));
    }
    let mut start = kvm_sev_launch_start {
        policy: 1 << 2,
        ..Default::default()
    };
    assert_eq!(
        op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev)).0,
        Ok(())
    );
    let mut data = Mem::new(PAGE as usize);
    data.bytes().fill(0x3C);
    let mut upd = kvm_sev_launch_update_data {
        uaddr: data.addr,
        len: PAGE as u32,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut upd), None).0,
        Ok(())
    );
    let _v0 = vcpu(&vm, 0).unwrap();
    let _v1 = vcpu(&vm, 1).unwrap();
    assert_eq!(op(&vm, id::LAUNCH_UPDATE_VMSA, 0, None).0, Ok(()));
    digest(&vm).unwrap()
}

/// kernel-abi.md §2.4: INIT2 SEV-ES VMs have their FPU/AVX state synced into the VMSA, legacy
/// ES_INIT VMs do not, so the same guest measures differently on the two paths. Each path is
/// reproducible, and each matches the digest computed here from the VMSA layout.
#[test]
fn sev_es_measurement_differs_between_legacy_es_init_and_init2() {
    println!("simulated hosts: sev@6.1 (legacy ES_INIT), snp@6.18 (INIT2 SEV-ES)");
    let legacy = sev_es_launch("sev@6.1", true);
    let init2 = sev_es_launch("snp@6.18", false);
    assert_ne!(legacy, init2);
    assert_eq!(
        legacy,
        sev_es_launch("sev@6.1", true),
        "legacy reproducible"
    );
    assert_eq!(
        init2,
        sev_es_launch("snp@6.18", false),
        "INIT2 reproducible"
    );
    assert_eq!(
        init2,
        sev_es_launch("snp@6.11", false),
        "same on every INIT2 kernel"
    );
    let expected = |synced| {
        let mut h = Sha256::new();
        h.update([0x3Cu8; 4096]);
        h.update(vmsa(0, synced));
        h.update(vmsa(0, synced));
        h.finalize().to_vec()
    };
    assert_eq!(legacy, expected(false));
    assert_eq!(init2, expected(true));
}

#[test]
fn sev_es_legacy_vmsa_measurement_and_errors() {
    println!("simulated host: sev@6.1 (SEV-ES)");
    let vm = new_vm("sev@6.1", 0);
    let sev = sev_dev(&vm);
    assert_eq!(op(&vm, id::ES_INIT, 0, None).0, Ok(()));
    let v0 = vcpu(&vm, 0).unwrap();
    let _v1 = vcpu(&vm, 1).unwrap();
    assert_eq!(vcpu(&vm, 1).err(), Some(-EEXIST));
    // The vCPU descriptor has no SEV op on AMD.
    assert_eq!(raw(v0.0, KVM_MEMORY_ENCRYPT_OP, 0), Err(ENOTTY));
    // An ES guest needs policy bit 2 (the firmware refuses otherwise).
    let mut start = kvm_sev_launch_start {
        policy: 0,
        ..Default::default()
    };
    let (r, cmd) = op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev));
    assert_eq!((r, sev_error(&cmd)), (Err(EIO), SEV_RET_POLICY_FAILURE));
    start.policy = 1 << 2;
    assert_eq!(
        op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev)).0,
        Ok(())
    );
    let mut data = Mem::new(PAGE as usize);
    data.bytes().fill(0xA5);
    let mut upd = kvm_sev_launch_update_data {
        uaddr: data.addr,
        len: PAGE as u32,
        pad0: 0,
    };
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_DATA, ptr(&mut upd), None).0,
        Ok(())
    );
    // LAUNCH_UPDATE_VMSA: killable vCPU locking (-EINTR, a fatal signal only). Since memenc
    // 0.2 no SEV error is transient: MEM_ENC_FLAG_RETRY issues it once and returns the -EINTR
    // (a re-issue after a partial success would re-encrypt vCPUs already done).
    inject(
        &vm,
        MEM_ENC_SIM_FAULT_EINTR,
        id::LAUNCH_UPDATE_VMSA,
        1,
        1,
        0,
    );
    assert_eq!(op(&vm, id::LAUNCH_UPDATE_VMSA, 0, None).0, Err(EINTR));
    inject(
        &vm,
        MEM_ENC_SIM_FAULT_EINTR,
        id::LAUNCH_UPDATE_VMSA,
        1,
        1,
        0,
    );
    assert_eq!(
        op_flags(&vm, id::LAUNCH_UPDATE_VMSA, MEM_ENC_FLAG_RETRY, 0, None).0,
        Err(EINTR),
        "one issue: a retry would have met no fault and succeeded"
    );
    // The interrupted calls did nothing (the vCPU locks were not all taken): the next one is
    // the launch's one LAUNCH_UPDATE_VMSA.
    assert_eq!(op(&vm, id::LAUNCH_UPDATE_VMSA, 0, None).0, Ok(()));
    let mut h = Sha256::new();
    h.update(data.bytes());
    // Legacy ES_INIT: SEV_FEATURES 0 and no FPU sync, so each VMSA holds only XCR0.
    h.update(vmsa(0, false));
    h.update(vmsa(0, false));
    assert_eq!(digest(&vm), Ok(h.clone().finalize().to_vec()));
    // B4: no kernel up to 7.0 has `sev_es_sync_vmsa`'s guest_state_protected guard, so a
    // second LAUNCH_UPDATE_VMSA re-syncs and re-encrypts both vCPUs: measured twice.
    assert_eq!(
        op(&vm, id::LAUNCH_UPDATE_VMSA, 0, None).0,
        Ok(()),
        "already protected, re-measured"
    );
    h.update(vmsa(0, false));
    h.update(vmsa(0, false));
    assert_eq!(digest(&vm), Ok(h.finalize().to_vec()));

    // UPDATE_VMSA on plain SEV: -ENOTTY. INIT after a vCPU: -EINVAL.
    let vm2 = new_vm("sev@6.1", 0);
    assert_eq!(op(&vm2, id::INIT, 0, None).0, Ok(()));
    assert_eq!(op(&vm2, id::LAUNCH_UPDATE_VMSA, 0, None).0, Err(ENOTTY));
    let vm3 = new_vm("sev@6.1", 0);
    let _v = vcpu(&vm3, 0).unwrap();
    assert_eq!(op(&vm3, id::INIT, 0, None).0, Err(EINVAL));
}

#[test]
fn sev_envelope_copies_back_only_for_handled_ids() {
    println!("simulated host: sev@6.1");
    let vm = new_vm("sev@6.1", 0);
    // A handled id that fails (-ENOTTY before INIT) still copies the 24 bytes back: on a
    // read-only page that copy faults.
    assert_eq!(
        op_on_readonly_page(&vm, raw_cmd(id::LAUNCH_FINISH, 0, 0, 0)),
        Err(EFAULT)
    );
    // Unknown and unhandled ids are rejected before the copy-back.
    for unhandled in [
        id::SEND_UPDATE_VMSA,
        id::RECEIVE_UPDATE_VMSA,
        id::CERT_EXPORT,
        99,
    ] {
        assert_eq!(
            op_on_readonly_page(&vm, raw_cmd(unhandled, 0, 0, 0)),
            Err(EINVAL)
        );
    }
    // `error` is left as the caller supplied it when the firmware is not reached, and the
    // flags word (SEV padding) comes back unchanged.
    let mut cmd = raw_cmd(id::LAUNCH_FINISH, 0x55, 0, 0x0000_0007_0000_00AA);
    assert_eq!(raw_op(vm.0, &mut cmd), Err(ENOTTY));
    assert_eq!(
        cmd,
        raw_cmd(id::LAUNCH_FINISH, 0x55, 0, 0x0000_0007_0000_00AA)
    );
    // Through memenc, `error` is cleared first and reported as 0.
    let (r, c) = op(&vm, id::LAUNCH_FINISH, 0, None);
    assert_eq!((r, sev_error(&c)), (Err(ENOTTY), 0));
}

fn snp_vm(profile: &str) -> (Fd, Fd) {
    let vm = new_vm(profile, KVM_X86_SNP_VM);
    let sev = sev_dev(&vm);
    let mut init = kvm_sev_init {
        vmsa_features: 1 << 5,
        ..Default::default()
    };
    assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Ok(()));
    (vm, sev)
}

fn snp_start(vm: &Fd, sev: &Fd, policy: u64) -> Result<(), i32> {
    let mut s = kvm_sev_snp_launch_start {
        policy,
        ..Default::default()
    };
    op(vm, id::SNP_LAUNCH_START, ptr(&mut s), Some(sev)).0
}

fn snp_update(
    vm: &Fd,
    sev: &Fd,
    gfn: u64,
    uaddr: u64,
    len: u64,
    ty: u8,
) -> (Result<(), i32>, kvm_sev_snp_launch_update, u32) {
    let mut u = kvm_sev_snp_launch_update {
        gfn_start: gfn,
        uaddr,
        len,
        type_: ty,
        ..Default::default()
    };
    let (r, cmd) = op(vm, id::SNP_LAUNCH_UPDATE, ptr(&mut u), Some(sev));
    (r, u, cmd.sev().error)
}

/// The SNP launch digest, computed here from the SNP firmware ABI's PAGE_INFO definition.
struct Ld([u8; 48]);
impl Ld {
    fn page(&mut self, ty: u8, gpa: u64, contents: Option<&[u8]>) {
        let mut info = Vec::with_capacity(0x70);
        info.extend_from_slice(&self.0);
        match contents {
            Some(p) => info.extend_from_slice(&Sha384::digest(p)),
            None => info.extend_from_slice(&[0u8; 48]),
        }
        info.extend_from_slice(&0x70u16.to_le_bytes());
        info.extend_from_slice(&[ty, 0, 0, 0, 0, 0]);
        info.extend_from_slice(&gpa.to_le_bytes());
        assert_eq!(info.len(), 0x70);
        self.0 = Sha384::digest(&info).into();
    }
}

#[test]
fn snp_launch_flow_and_launch_digest_known_answer() {
    for profile in ["snp@6.11", "snp@6.18", "snp@6.19", "snp@7.0"] {
        println!("simulated host: {profile}");
        let vm = new_vm(profile, KVM_X86_SNP_VM);
        let sev = sev_dev(&vm);
        assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_OP, 0), Ok(0), "NULL probe");
        assert_eq!(
            op(&vm, id::INIT, 0, None).0,
            Err(EINVAL),
            "legacy INIT on an SNP VM type"
        );
        let mut init = kvm_sev_init {
            flags: 1,
            ..Default::default()
        };
        assert_eq!(
            op(&vm, id::INIT2, ptr(&mut init), None).0,
            Err(EINVAL),
            "flags"
        );
        init = kvm_sev_init {
            vmsa_features: 1,
            ..Default::default()
        };
        assert_eq!(
            op(&vm, id::INIT2, ptr(&mut init), None).0,
            Err(EINVAL),
            "SNP_ACTIVE bit"
        );
        init = kvm_sev_init {
            ghcb_version: 1,
            ..Default::default()
        };
        // (6.11 accepts it: snp_init2_ghcb_version_1_per_kernel.)
        if profile != "snp@6.11" {
            assert_eq!(
                op(&vm, id::INIT2, ptr(&mut init), None).0,
                Err(EINVAL),
                "SNP needs GHCB v2"
            );
        }
        init = kvm_sev_init {
            ghcb_version: 3,
            ..Default::default()
        };
        assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Err(EINVAL));
        init = kvm_sev_init {
            vmsa_features: 1 << 9,
            ..Default::default()
        };
        let secure_tsc = op(&vm, id::INIT2, ptr(&mut init), None).0;
        assert_eq!(
            secure_tsc,
            if profile == "snp@6.11" {
                Err(EINVAL)
            } else {
                Ok(())
            }
        );
        let (vm, sev) = if secure_tsc.is_ok() {
            snp_vm(profile)
        } else {
            (vm, sev)
        };
        if secure_tsc.is_err() {
            init = kvm_sev_init {
                vmsa_features: 1 << 5,
                ..Default::default()
            };
            assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Ok(()));
        }
        // INIT2 is id 22 < 100: on an initialised SNP guest that is -EPERM before anything else.
        assert_eq!(
            op(&vm, id::INIT2, ptr(&mut init), None).0,
            Err(EPERM),
            "INIT2 twice"
        );
        // Legacy ids on an initialised SNP guest: -EPERM, before anything is read.
        assert_eq!(
            op_on_readonly_page(&vm, raw_cmd(id::LAUNCH_START, 0, 0, 0)),
            Err(EPERM)
        );
        assert_eq!(op(&vm, id::GUEST_STATUS, 0, None).0, Err(EPERM));
        let mut upd = kvm_sev_snp_launch_update::default();
        assert_eq!(
            op(&vm, id::SNP_LAUNCH_UPDATE, ptr(&mut upd), Some(&sev)).0,
            Err(EINVAL),
            "before START"
        );
        assert_eq!(
            snp_start(&vm, &vm, 0x30000),
            Err(ENOTTY),
            "GCTX create needs /dev/sev"
        );
        assert_eq!(
            snp_start(&vm, &sev, 0x10000),
            Err(EINVAL),
            "RSVD_MBO (bit 17) clear"
        );
        if profile == "snp@6.11" {
            // 6.11 created the context before validating: it survives, so START is refused.
            assert_eq!(snp_start(&vm, &sev, 0x30000), Err(EINVAL));
            continue;
        }
        if profile == "snp@6.18" {
            // 6.18 still has the static mask: bit 21 (CXL_ALLOW) is refused before a context
            // exists, so a valid START then succeeds.
            assert_eq!(
                snp_start(&vm, &sev, 1 << 21 | 0x30000),
                Err(EINVAL),
                "CXL_ALLOW is not in 6.18's mask"
            );
            assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
        } else {
            assert_eq!(
                snp_start(&vm, &sev, 1 << 21 | 0x30000),
                Ok(()),
                "CXL_ALLOW is in {profile}'s mask"
            );
        }
        assert_eq!(
            snp_start(&vm, &sev, 0x30000),
            Err(EINVAL),
            "one context per VM"
        );
        snp_flow(&vm, &sev);
    }
    // 6.11 flow with a valid first START.
    let (vm, sev) = snp_vm("snp@6.11");
    assert_eq!(
        snp_start(&vm, &sev, 1 << 21 | 0x30000),
        Err(EINVAL),
        "bit 21 not in 6.11's mask"
    );
    let (vm, sev) = snp_vm("snp@6.11");
    assert_eq!(
        snp_start(&vm, &sev, 0x20000),
        Err(EINVAL),
        "6.11 requires SMT"
    );
    let (vm, sev) = snp_vm("snp@6.11");
    assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
    snp_flow(&vm, &sev);
}

fn snp_flow(vm: &Fd, sev: &Fd) {
    let base = 0x10_0000u64;
    let backing = Mem::new(8 * PAGE as usize);
    let _g = private_slot(vm, 0, base, 8 * PAGE, &backing);
    let mut src = Mem::new(4 * PAGE as usize);
    for (i, b) in src.bytes().iter_mut().enumerate() {
        *b = (i / 4096 + 1) as u8 ^ (i as u8);
    }
    let gfn = base >> 12;
    assert_eq!(
        snp_update(vm, sev, gfn, src.addr, 0, 1).0,
        Err(EINVAL),
        "len 0"
    );
    assert_eq!(
        snp_update(vm, sev, gfn, src.addr, 100, 1).0,
        Err(EINVAL),
        "len not pages"
    );
    assert_eq!(
        snp_update(vm, sev, gfn, src.addr, PAGE, 2).0,
        Err(EINVAL),
        "VMSA type"
    );
    assert_eq!(
        snp_update(vm, sev, 0x9999, src.addr, PAGE, 1).0,
        Err(EINVAL),
        "no guest_memfd slot"
    );
    let mut u = kvm_sev_snp_launch_update {
        gfn_start: gfn,
        uaddr: src.addr,
        len: PAGE,
        type_: 1,
        flags: 1,
        ..Default::default()
    };
    assert_eq!(
        op(vm, id::SNP_LAUNCH_UPDATE, ptr(&mut u), Some(sev)).0,
        Err(EINVAL),
        "flags"
    );
    // A shared GFN fails on the first page: -EIO, firmware error 0.
    set_private(vm, base + 6 * PAGE, PAGE, false);
    assert_eq!(
        snp_update(vm, sev, gfn + 6, src.addr, PAGE, 1).0.err(),
        Some(EIO)
    );
    // Partial progress: one page per call; the struct shows the rest.
    inject(
        vm,
        MEM_ENC_SIM_FAULT_PROGRESS,
        id::SNP_LAUNCH_UPDATE,
        1,
        1,
        1,
    );
    let (r, u, _) = snp_update(vm, sev, gfn, src.addr, 2 * PAGE, 1);
    assert_eq!(r, Ok(()));
    assert_eq!(
        (u.gfn_start, u.uaddr, u.len),
        (gfn + 1, src.addr + PAGE, PAGE)
    );
    let (r, u, _) = snp_update(vm, sev, u.gfn_start, u.uaddr, u.len, 1);
    assert_eq!((r, u.len), (Ok(()), 0));
    // The same GFN twice: -EIO.
    assert_eq!(snp_update(vm, sev, gfn, src.addr, PAGE, 1).0, Err(EIO));
    // A firmware status on the first page is reported in `error`.
    inject(
        vm,
        MEM_ENC_SIM_FAULT_FW_STATUS,
        id::SNP_LAUNCH_UPDATE,
        1,
        1,
        0x16,
    );
    let (r, _, error) = snp_update(vm, sev, gfn + 2, 0, PAGE, 3);
    assert_eq!((r, error), (Err(EIO), 0x16));
    // MEM_ENC_FLAG_CONTINUE finishes a range the kernel does in pieces.
    inject(
        vm,
        MEM_ENC_SIM_FAULT_PROGRESS,
        id::SNP_LAUNCH_UPDATE,
        1,
        3,
        1,
    );
    let mut z = kvm_sev_snp_launch_update {
        gfn_start: gfn + 2,
        uaddr: 0,
        len: 2 * PAGE,
        type_: 3,
        ..Default::default()
    };
    assert_eq!(
        op_flags(
            vm,
            id::SNP_LAUNCH_UPDATE,
            MEM_ENC_FLAG_CONTINUE,
            ptr(&mut z),
            Some(sev)
        )
        .0,
        Ok(())
    );
    assert_eq!(
        (z.len, z.gfn_start, z.uaddr),
        (0, gfn + 4, 0),
        "ZERO pages leave uaddr alone"
    );
    let (r, _, _) = snp_update(vm, sev, gfn + 4, src.addr + 2 * PAGE, PAGE, 6);
    assert_eq!(r, Ok(()), "CPUID page");
    let _v0 = vcpu(vm, 0).unwrap();
    let _v1 = vcpu(vm, 1).unwrap();
    let mut f = kvm_sev_snp_launch_finish {
        flags: 1,
        ..Default::default()
    };
    assert_eq!(
        op(vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(sev)).0,
        Err(EINVAL),
        "flags"
    );
    f.flags = 0;
    assert_eq!(
        op(vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(vm)).0,
        Err(EBADF),
        "VMSA updates need sev_fd"
    );

    let mut ld = Ld([0; 48]);
    ld.page(1, base, Some(&src.bytes()[..4096]));
    ld.page(1, base + PAGE, Some(&src.bytes()[4096..8192]));
    ld.page(3, base + 2 * PAGE, None);
    ld.page(3, base + 3 * PAGE, None);
    ld.page(6, base + 4 * PAGE, None);
    assert_eq!(
        digest(vm),
        Ok(ld.0.to_vec()),
        "launch digest before the VMSAs"
    );
    // The VMSAs are added at LAUNCH_FINISH (type 2, GPA 0xFFFFFFFFF000), one per vCPU.
    // (The -EBADF attempt above failed before any VMSA was measured.)
    let vmsa = vmsa((1 << 5) | 1, true);
    let mut expected = Ld(ld.0);
    expected.page(2, 0xFFFF_FFFF_F000, Some(&vmsa));
    expected.page(2, 0xFFFF_FFFF_F000, Some(&vmsa));
    // An ID block whose digest does not match: BAD_MEASUREMENT.
    let mut id_block = [0u8; 96];
    let mut id_auth = vec![0u8; 4096];
    f.id_block_en = 1;
    f.id_block_uaddr = id_block.as_mut_ptr() as u64;
    f.id_auth_uaddr = id_auth.as_mut_ptr() as u64;
    let (r, cmd) = op(vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(sev));
    assert_eq!((r, cmd.sev().error), (Err(EIO), SEV_RET_BAD_MEASUREMENT));
    // That attempt protected both VMSAs; a new VM shows the successful path below.
    assert_eq!(digest(vm), Ok(expected.0.to_vec()));
    assert_eq!(
        op(vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(sev)).0,
        Err(EINVAL),
        "VMSAs already protected"
    );
}

/// Many NORMAL pages in one command: the model hashes consecutive pages together (eight at a
/// time where the CPU has AVX-512), so this crosses whole groups, group tails, a stop in the
/// middle of a group (partial progress), and an unreadable page inside a group (-EFAULT for
/// that page only, as the kernel's copy_from_user). The digest is computed here page by page.
#[test]
fn snp_launch_digest_over_many_pages_known_answer() {
    println!("simulated host: snp@6.18");
    let (vm, sev) = snp_vm("snp@6.18");
    assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
    let pages = 45u64;
    let base = 0x10_0000u64;
    let gfn = base >> 12;
    let backing = Mem::new((pages * PAGE) as usize);
    let _g = private_slot(&vm, 0, base, pages * PAGE, &backing);
    let mut src = Mem::new((pages * PAGE) as usize);
    for (i, b) in src.bytes().iter_mut().enumerate() {
        *b = (i as u64)
            .wrapping_mul(0x9e37_79b9)
            .rotate_right((i / 4096) as u32) as u8;
    }
    let page = |src: &mut Mem, i: u64| src.bytes()[(i * PAGE) as usize..][..PAGE as usize].to_vec();
    let mut ld = Ld([0; 48]);

    // 11 pages done, then the kernel stops (a pending signal): inside the second group.
    inject(
        &vm,
        MEM_ENC_SIM_FAULT_PROGRESS,
        id::SNP_LAUNCH_UPDATE,
        1,
        1,
        11,
    );
    let (r, u, _) = snp_update(&vm, &sev, gfn, src.addr, 29 * PAGE, 1);
    assert_eq!((r, u.gfn_start, u.len), (Ok(()), gfn + 11, 18 * PAGE));
    for i in 0..11 {
        ld.page(1, base + i * PAGE, Some(&page(&mut src, i)));
    }
    assert_eq!(digest(&vm), Ok(ld.0.to_vec()), "after 11 pages");
    // The rest of the 29 (18 pages: two groups and a tail of two).
    let (r, u, _) = snp_update(&vm, &sev, u.gfn_start, u.uaddr, u.len, 1);
    assert_eq!((r, u.len), (Ok(()), 0));
    for i in 11..29 {
        ld.page(1, base + i * PAGE, Some(&page(&mut src, i)));
    }
    assert_eq!(digest(&vm), Ok(ld.0.to_vec()), "after 29 pages");

    // Pages 29..45 with page 34 unreadable: 29..34 are measured, then -EFAULT stops the
    // command with partial progress (the kernel returns the count done).
    // SAFETY: page 34 of our own mapping.
    let prot = unsafe {
        libc::mprotect(
            (src.addr + 34 * PAGE) as *mut libc::c_void,
            PAGE as usize,
            libc::PROT_NONE,
        )
    };
    assert_eq!(prot, 0);
    let (r, u, _) = snp_update(&vm, &sev, gfn + 29, src.addr + 29 * PAGE, 16 * PAGE, 1);
    assert_eq!((r, u.gfn_start), (Ok(()), gfn + 34));
    for i in 29..34 {
        ld.page(1, base + i * PAGE, Some(&page(&mut src, i)));
    }
    assert_eq!(digest(&vm), Ok(ld.0.to_vec()), "up to the unreadable page");
    let (r, _, _) = snp_update(&vm, &sev, u.gfn_start, u.uaddr, u.len, 1);
    assert_eq!(r, Err(EIO), "the unreadable page first: no progress");
    assert_eq!(
        digest(&vm),
        Ok(ld.0.to_vec()),
        "nothing measured by the failed call"
    );
}

#[test]
fn snp_finish_with_matching_id_block_and_req_certs() {
    println!("simulated host: snp@7.0");
    let (vm, sev) = snp_vm("snp@7.0");
    assert_eq!(op(&vm, id::SNP_ENABLE_REQ_CERTS, 0, None).0, Ok(()));
    assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
    let _v = vcpu(&vm, 0).unwrap();
    assert_eq!(
        op(&vm, id::SNP_ENABLE_REQ_CERTS, 0, None).0,
        Err(EINVAL),
        "after a vCPU"
    );
    let vmsa = vmsa((1 << 5) | 1, true);
    let mut ld = Ld([0; 48]);
    ld.page(2, 0xFFFF_FFFF_F000, Some(&vmsa));
    let mut id_block = [0u8; 96];
    id_block[..48].copy_from_slice(&ld.0);
    id_block[88..96].copy_from_slice(&0x30000u64.to_le_bytes());
    let mut id_auth = vec![0u8; 4096];
    let mut f = kvm_sev_snp_launch_finish {
        id_block_uaddr: id_block.as_mut_ptr() as u64,
        id_auth_uaddr: id_auth.as_mut_ptr() as u64,
        id_block_en: 1,
        ..Default::default()
    };
    let (r, cmd) = op(&vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(&sev));
    assert_eq!((r, cmd.sev().error), (Ok(()), 0));
    assert_eq!(digest(&vm), Ok(ld.0.to_vec()));
    // After FINISH no more pages can be added.
    let backing = Mem::new(PAGE as usize);
    let _g = private_slot(&vm, 0, 0, PAGE, &backing);
    let (r, _, error) = snp_update(&vm, &sev, 0, 0, PAGE, 3);
    assert_eq!((r, error), (Err(EIO), SEV_RET_INVALID_GUEST_STATE));
    // REQ_CERTS is 7.0's: 6.11, 6.18 and 6.19 answer id 103 with the default -EINVAL.
    for profile in ["snp@6.11", "snp@6.18", "snp@6.19"] {
        let (vm, _sev) = snp_vm(profile);
        assert_eq!(
            op(&vm, id::SNP_ENABLE_REQ_CERTS, 0, None).0,
            Err(EINVAL),
            "{profile}"
        );
    }
}

/// A1: SNP_LAUNCH_UPDATE of a NORMAL page from a NULL or an unaligned source, as each
/// kernel answers it. Up to 6.19 `snp_launch_update` checks neither: NULL reaches
/// `sev_gmem_post_populate`'s `WARN_ON_ONCE(!src)` (-EINVAL for page 0, which the caller
/// turns into -EIO with `error` untouched, 0), and an unaligned source is copied and measured
/// from where it points. 7.0 adds `!PAGE_ALIGNED(src)` -> -EINVAL up front; NULL is aligned,
/// so it still ends in the WARN's -EIO.
#[test]
fn snp_launch_update_null_and_unaligned_source_per_kernel() {
    for profile in ["snp@6.11", "snp@6.18", "snp@6.19", "snp@7.0"] {
        println!("simulated host: {profile}");
        let (vm, sev) = snp_vm(profile);
        assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
        let backing = Mem::new(PAGE as usize);
        let _g = private_slot(&vm, 0, 0, PAGE, &backing);
        let start = digest(&vm).unwrap();
        let (r, u, error) = snp_update(&vm, &sev, 0, 0, PAGE, 1);
        assert_eq!((r, error), (Err(EIO), 0), "{profile}: NULL source");
        assert_eq!((u.gfn_start, u.len), (0, PAGE), "{profile}: no progress");
        assert_eq!(digest(&vm).unwrap(), start, "{profile}: nothing measured");

        let mut src = Mem::new(2 * PAGE as usize);
        for (i, b) in src.bytes().iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let (r, u, error) = snp_update(&vm, &sev, 0, src.addr + 8, PAGE, 1);
        if profile == "snp@7.0" {
            assert_eq!((r, error), (Err(EINVAL), 0), "{profile}: unaligned");
            assert_eq!(digest(&vm).unwrap(), start, "{profile}: nothing measured");
        } else {
            assert_eq!(r, Ok(()), "{profile}: unaligned accepted");
            assert_eq!((u.gfn_start, u.uaddr), (1, src.addr + 8 + PAGE));
            let mut ld = Ld(start[..48].try_into().unwrap());
            ld.page(1, 0, Some(&src.bytes()[8..8 + PAGE as usize]));
            assert_eq!(
                digest(&vm),
                Ok(ld.0.to_vec()),
                "{profile}: the unaligned bytes"
            );
        }
    }
}

#[test]
fn sev_init2_types_and_region_pinning() {
    println!("simulated host: snp@6.11");
    // SEV-type VM via INIT2: plain SEV takes no VMSA features and GHCB version 0 only.
    let vm = new_vm("snp@6.11", KVM_X86_SEV_VM);
    let mut init = kvm_sev_init {
        vmsa_features: 1 << 5,
        ..Default::default()
    };
    assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Err(EINVAL));
    init = kvm_sev_init {
        ghcb_version: 1,
        ..Default::default()
    };
    assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Err(EINVAL));
    assert_eq!(op(&vm, id::INIT2, 8, None).0, Err(EFAULT));
    init = kvm_sev_init::default();
    assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Ok(()));
    // Legacy ids are fine on a non-SNP guest; SNP ids are not (-ENOTTY: not an SNP guest).
    assert_eq!(op(&vm, id::SNP_LAUNCH_START, 0, None).0, Err(ENOTTY));
    // REG/UNREG_REGION.
    let mem = Mem::new(4 * PAGE as usize);
    let mut r = kvm_enc_region {
        addr: mem.addr,
        size: 4 * PAGE,
    };
    assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_REG_REGION, ptr(&mut r)), Ok(0));
    let mut zero = kvm_enc_region {
        addr: mem.addr,
        size: 0,
    };
    assert_eq!(
        raw(vm.0, KVM_MEMORY_ENCRYPT_REG_REGION, ptr(&mut zero)),
        Err(EINVAL)
    );
    let mut other = kvm_enc_region {
        addr: mem.addr,
        size: PAGE,
    };
    assert_eq!(
        raw(vm.0, KVM_MEMORY_ENCRYPT_UNREG_REGION, ptr(&mut other)),
        Err(EINVAL),
        "exact match"
    );
    assert_eq!(
        raw(vm.0, KVM_MEMORY_ENCRYPT_UNREG_REGION, ptr(&mut r)),
        Ok(0)
    );
    assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_REG_REGION, 8), Err(EFAULT));
    // Before INIT: -ENOTTY. INIT2 on a DEFAULT VM: -EINVAL.
    let vm = new_vm("snp@6.11", 0);
    assert_eq!(
        raw(vm.0, KVM_MEMORY_ENCRYPT_REG_REGION, ptr(&mut r)),
        Err(ENOTTY)
    );
    assert_eq!(op(&vm, id::INIT2, ptr(&mut init), None).0, Err(EINVAL));
    // The legacy INIT still works on a DEFAULT VM of a 6.11 kernel.
    assert_eq!(op(&vm, id::INIT, 0, None).0, Ok(()));
}

#[test]
fn sev_migration_commands() {
    println!("simulated host: sev@6.1 (migration)");
    let vm = new_vm("sev@6.1", 0);
    let sev = sev_dev(&vm);
    assert_eq!(op(&vm, id::INIT, 0, None).0, Ok(()));
    let mut start = kvm_sev_launch_start::default();
    assert_eq!(
        op(&vm, id::LAUNCH_START, ptr(&mut start), Some(&sev)).0,
        Ok(())
    );
    let mut m = kvm_sev_launch_measure {
        uaddr: [0u8; 48].as_mut_ptr() as u64,
        len: 48,
        pad0: 0,
    };
    let mut blob = [0u8; 48];
    m.uaddr = blob.as_mut_ptr() as u64;
    assert_eq!(op(&vm, id::LAUNCH_MEASURE, ptr(&mut m), None).0, Ok(()));
    assert_eq!(op(&vm, id::LAUNCH_FINISH, 0, None).0, Ok(()));
    let mut ss = kvm_sev_send_start::default();
    let (r, cmd) = op(&vm, id::SEND_START, ptr(&mut ss), None);
    assert_eq!(
        (r, cmd.sev().error, ss.session_len),
        (Err(EIO), SEV_RET_INVALID_LEN, 128)
    );
    let mut pdh = [1u8; 64];
    let mut session = vec![0xFFu8; 128];
    let mut certs = [2u8; 16];
    ss = kvm_sev_send_start {
        pdh_cert_uaddr: pdh.as_mut_ptr() as u64,
        pdh_cert_len: 64,
        plat_certs_uaddr: certs.as_mut_ptr() as u64,
        plat_certs_len: 16,
        amd_certs_uaddr: certs.as_mut_ptr() as u64,
        amd_certs_len: 16,
        session_uaddr: session.as_mut_ptr() as u64,
        session_len: 128,
        ..Default::default()
    };
    assert_eq!(op(&vm, id::SEND_START, ptr(&mut ss), None).0, Ok(()));
    assert!(session.iter().all(|&b| b == 0), "session written");
    assert_eq!(op(&vm, id::SEND_CANCEL, 0, None).0, Ok(()));
    // RECEIVE on another VM.
    let dst = vm_from("sev@6.1");
    assert_eq!(op(&dst, id::INIT, 0, None).0, Ok(()));
    let mut rs = kvm_sev_receive_start {
        pdh_uaddr: pdh.as_mut_ptr() as u64,
        pdh_len: 64,
        ..Default::default()
    };
    assert_eq!(
        op(&dst, id::RECEIVE_START, ptr(&mut rs), Some(&sev)).0,
        Err(EINVAL),
        "session missing"
    );
    rs.session_uaddr = session.as_mut_ptr() as u64;
    rs.session_len = 128;
    assert_eq!(
        op(&dst, id::RECEIVE_START, ptr(&mut rs), Some(&sev)).0,
        Ok(())
    );
    assert_ne!(rs.handle, 0);
    assert_eq!(op(&dst, id::RECEIVE_FINISH, 0, None).0, Ok(()));
    let mut st = kvm_sev_guest_status::default();
    assert_eq!(op(&dst, id::GUEST_STATUS, ptr(&mut st), None).0, Ok(()));
    assert_eq!(st.state, 3);
}

fn vm_from(profile: &str) -> Fd {
    new_vm(profile, 0)
}

/// A4/B3: SEV vCPU locking (`kvm_lock_all_vcpus`, the older per-vCPU `mutex_lock_killable`)
/// fails only on a fatal signal (-EINTR); no SEV kernel returns -EBUSY there, so the model
/// refuses a busy fault on SEV VMs. SNP_LAUNCH_FINISH takes the vCPU locks only from 7.0
/// (6.17-era `snp_launch_finish` takes none, so a pending signal changes nothing).
#[test]
fn sev_vcpu_locking_is_killable_only() {
    for profile in ["sev@6.1", "snp@6.18", "snp@7.0"] {
        let vm = new_vm(profile, 0);
        let f = mem_enc_sim_fault {
            kind: MEM_ENC_SIM_FAULT_EBUSY,
            cmd_id: id::LAUNCH_UPDATE_VMSA,
            nth: 1,
            count: 1,
            value: 0,
        };
        // SAFETY: a valid struct and its size.
        let r = unsafe { mem_enc_sim_inject(vm.0, &f, size_of::<mem_enc_sim_fault>()) };
        assert_eq!(r, -EINVAL, "{profile}: no SEV path gives -EBUSY");
    }
    // (snp@6.19 is left out: when SNP_LAUNCH_FINISH started locking vCPUs is unverified.)
    for (profile, want) in [("snp@6.18", Ok(())), ("snp@7.0", Err(EINTR))] {
        println!("simulated host: {profile}");
        let (vm, sev) = snp_vm(profile);
        assert_eq!(snp_start(&vm, &sev, 0x30000), Ok(()));
        let _v = vcpu(&vm, 0).unwrap();
        inject(&vm, MEM_ENC_SIM_FAULT_EINTR, id::SNP_LAUNCH_FINISH, 1, 1, 0);
        let mut f = kvm_sev_snp_launch_finish::default();
        let (r, _) = op(&vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(&sev));
        assert_eq!(r, want, "{profile}: signal at SNP_LAUNCH_FINISH");
        if r.is_err() {
            let (r, _) = op(&vm, id::SNP_LAUNCH_FINISH, ptr(&mut f), Some(&sev));
            assert_eq!(r, Ok(()), "{profile}: nothing was done before the lock");
        }
    }
}

/// B5: `__sev_guest_init`'s `snp_active && ghcb_version < 2` -> -EINVAL came with the
/// Secure TSC series (PATCH v11 2/8, Aug 2025, 6.18); 6.11 accepts GHCB version 1 for SNP.
#[test]
fn snp_init2_ghcb_version_1_per_kernel() {
    for (profile, want) in [
        ("snp@6.11", Ok(())),
        ("snp@6.18", Err(EINVAL)),
        ("snp@7.0", Err(EINVAL)),
    ] {
        let vm = new_vm(profile, KVM_X86_SNP_VM);
        let mut init = kvm_sev_init {
            ghcb_version: 1,
            ..Default::default()
        };
        assert_eq!(
            op(&vm, id::INIT2, ptr(&mut init), None).0,
            want,
            "{profile}"
        );
    }
}
