//! The simulated TDX hosts (labelled simulated): 6.16 and 6.19 shapes of every command, the
//! documented errors, and a known-answer MRTD computed here from the TDX module's
//! TDH.MEM.PAGE.ADD / TDH.MR.EXTEND record definitions.

mod sim_util;

use memenc::uapi::{tdx_id as id, *};
use memenc::{MEM_ENC_FLAG_CONTINUE, MEM_ENC_FLAG_RETRY, MEM_ENC_TDX_MEASURE_MEMORY_REGION};
use memenc_sim::compat::*;
use sha2::{Digest, Sha384};
use sim_util::*;

const PROFILES: [&str; 2] = ["tdx@6.16", "tdx@6.19"];
const TDX_OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
const TDX_OPERAND_BUSY: u64 = 0x8000_0200_0000_0000;

/// KVM_TDX_CAPABILITIES buffer: the 2056-byte header and room for `n` entries.
fn caps_buf(n: u32) -> Vec<u64> {
    let mut b = vec![0u64; (2056 + 40 * n as usize).div_ceil(8)];
    b[256] = u64::from(n); // cpuid.nent at offset 2048
    b
}

fn entry(function: u32, index: u32, eax: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        eax,
        ..Default::default()
    }
}

/// KVM_TDX_INIT_VM parameters with these CPUID entries.
fn init_vm_buf(attributes: u64, xfam: u64, entries: &[kvm_cpuid_entry2]) -> Vec<u8> {
    let mut b = vec![0u8; 264 + 40 * entries.len()];
    b[0..8].copy_from_slice(&attributes.to_le_bytes());
    b[8..16].copy_from_slice(&xfam.to_le_bytes());
    b[256..260].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let o = 264 + 40 * i;
        for (j, v) in [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx]
            .iter()
            .enumerate()
        {
            b[o + 4 * j..o + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

fn gpaw48() -> Vec<kvm_cpuid_entry2> {
    vec![entry(0x8000_0008, 0, 48 << 16 | 0x3030)]
}

fn td(profile: &str) -> Fd {
    let vm = new_vm(profile, KVM_X86_TDX_VM);
    let mut b = init_vm_buf(1 << 28, 0xE7, &gpaw48());
    assert_eq!(op(&vm, id::INIT_VM, b.as_mut_ptr() as u64, None).0, Ok(()));
    vm
}

fn split_irqchip(vm: &Fd) -> Result<i32, i32> {
    let mut cap = kvm_enable_cap {
        cap: 121,
        flags: 0,
        args: [24, 0, 0, 0],
        pad: [0; 64],
    };
    raw(vm.0, KVM_ENABLE_CAP, ptr(&mut cap))
}

fn td_vcpu(vm: &Fd) -> Fd {
    split_irqchip(vm).unwrap();
    let v = vcpu(vm, 0).unwrap();
    assert_eq!(op(&v, id::INIT_VCPU, 0, None).0, Ok(()));
    v
}

#[test]
fn capabilities_copy_back_differs_between_6_16_and_6_19() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = new_vm(profile, KVM_X86_TDX_VM);
        let mut small = caps_buf(1);
        let mut cmd = raw_cmd(id::CAPABILITIES, 0, small.as_mut_ptr() as u64, 0);
        assert_eq!(raw_op(vm.0, &mut cmd), Err(E2BIG));
        assert_eq!(small[256], 1, "the required count is not reported");
        let mut caps = caps_buf(16);
        let mut cmd = raw_cmd(id::CAPABILITIES, 0, caps.as_mut_ptr() as u64, 0);
        assert_eq!(raw_op(vm.0, &mut cmd), Ok(0));
        assert_eq!(caps[0], 1 << 28, "supported_attrs: SEPT_VE_DISABLE");
        assert_ne!(caps[1] & 0xE7, 0, "supported_xfam");
        assert_eq!(caps[3], 1 << 1, "user_tdvmcallinfo_1_r11");
        let nent = caps[256] as u32;
        assert!((2..=16).contains(&nent));
        // Entry of leaf 0x80000008 reports GPAW configurable; leaf 7 offers no TSX/WAITPKG.
        let bytes: Vec<u8> = caps.iter().flat_map(|w| w.to_le_bytes()).collect();
        let entries: Vec<[u32; 7]> = (0..nent as usize)
            .map(|i| {
                let o = 2056 + 40 * i;
                core::array::from_fn(|j| {
                    u32::from_le_bytes(bytes[o + 4 * j..o + 4 * j + 4].try_into().unwrap())
                })
            })
            .collect();
        let ext8 = entries.iter().find(|e| e[0] == 0x8000_0008).unwrap();
        assert_eq!((ext8[3] >> 16) & 0xff, 0xff);
        let leaf7 = entries.iter().find(|e| e[0] == 7).unwrap();
        assert_eq!((leaf7[4] & (1 << 4 | 1 << 11), leaf7[5] & (1 << 5)), (0, 0));
        // flags must be 0; hw_error must be 0.
        let mut cmd = raw_cmd(id::CAPABILITIES, 1, caps.as_mut_ptr() as u64, 0);
        assert_eq!(raw_op(vm.0, &mut cmd), Err(EINVAL));
        let mut cmd = raw_cmd(id::CAPABILITIES, 0, caps.as_mut_ptr() as u64, 5);
        assert_eq!(
            raw_op(vm.0, &mut cmd),
            Err(EINVAL),
            "hw_error non-zero on input"
        );
        // The copy-back: 6.16 writes the 24 bytes back (a read-only cmd page faults), 6.19 not.
        let mut page = Mem::new(PAGE as usize);
        page.bytes()[..24].copy_from_slice(&raw_cmd(
            id::CAPABILITIES,
            0,
            caps.as_mut_ptr() as u64,
            0,
        ));
        // SAFETY: our own mapping.
        unsafe { libc::mprotect(page.addr as *mut _, PAGE as usize, libc::PROT_READ) };
        let want = if profile == "tdx@6.16" {
            Err(EFAULT)
        } else {
            Ok(0)
        };
        assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_OP, page.addr), want);
        // A non-TD VM on a TDX host: -ENOTTY; TDX has no NULL probe (-EFAULT).
        let plain = new_vm(profile, 0);
        assert_eq!(raw(plain.0, KVM_MEMORY_ENCRYPT_OP, 0), Err(ENOTTY));
        assert_eq!(raw(vm.0, KVM_MEMORY_ENCRYPT_OP, 0), Err(EFAULT));
        assert_eq!(
            raw(
                vm.0,
                KVM_MEMORY_ENCRYPT_REG_REGION,
                ptr(&mut kvm_enc_region::default())
            ),
            Err(ENOTTY)
        );
    }
}

#[test]
fn init_vm_validation_in_order() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = new_vm(profile, KVM_X86_TDX_VM);
        let init = |flags: u32, b: &mut Vec<u8>| {
            op_flags(&vm, id::INIT_VM, flags, b.as_mut_ptr() as u64, None)
        };
        // Kernel flags on INIT_VM are refused by memenc itself (no ioctl), and by the kernel.
        let mut ok = init_vm_buf(0, 0xE7, &gpaw48());
        let mut cmd = raw_cmd(id::INIT_VM, 1, ok.as_mut_ptr() as u64, 0);
        assert_eq!(raw_op(vm.0, &mut cmd), Err(EINVAL));
        let mut b = init_vm_buf(0, 0xE7, &gpaw48());
        b[160] = 1; // reserved[0]
        assert_eq!(init(0, &mut b).0, Err(EINVAL), "reserved");
        let mut b = init_vm_buf(0, 0xE7, &gpaw48());
        b[260] = 1; // cpuid.padding
        assert_eq!(init(0, &mut b).0, Err(EINVAL), "cpuid padding");
        assert_eq!(
            init(0, &mut init_vm_buf(1, 0xE7, &gpaw48())).0,
            Err(EINVAL),
            "DEBUG attribute"
        );
        assert_eq!(
            init(0, &mut init_vm_buf(0, 1 << 40, &gpaw48())).0,
            Err(EINVAL),
            "xfam"
        );
        assert_eq!(
            init(0, &mut init_vm_buf(0, 0xE7, &[])).0,
            Err(EINVAL),
            "no 0x80000008"
        );
        assert_eq!(
            init(
                0,
                &mut init_vm_buf(0, 0xE7, &[entry(0x8000_0008, 0, 40 << 16)])
            )
            .0,
            Err(EINVAL),
            "GPAW 40"
        );
        let other = new_vm(profile, KVM_X86_TDX_VM);
        let mut b52 = init_vm_buf(0, 0xE7, &[entry(0x8000_0008, 0, 52 << 16)]);
        let gpaw52 = op(&other, id::INIT_VM, b52.as_mut_ptr() as u64, None).0;
        let want52 = if profile == "tdx@6.19" {
            Ok(())
        } else {
            Err(EINVAL)
        };
        assert_eq!(
            gpaw52, want52,
            "GPAW 52 needs 5-level EPT (the 6.19 profile's host has it)"
        );
        let mut tsx = gpaw48();
        tsx.push(kvm_cpuid_entry2 {
            function: 7,
            ebx: 1 << 11,
            flags: 1,
            ..Default::default()
        });
        assert_eq!(
            init(0, &mut init_vm_buf(0, 0xE7, &tsx)).0,
            Err(EINVAL),
            "RTM"
        );
        let mut unknown = gpaw48();
        unknown.push(entry(0x4000_0000, 0, 0));
        assert_eq!(
            init(0, &mut init_vm_buf(0, 0xE7, &unknown)).0,
            Err(EINVAL),
            "not configurable"
        );
        let mut big = init_vm_buf(0, 0xE7, &gpaw48());
        big[256..260].copy_from_slice(&257u32.to_le_bytes());
        assert_eq!(init(0, &mut big).0, Err(E2BIG));
        // A value outside the configurable bits: TDH.MNG.INIT says OPERAND_INVALID (CPUID_CONFIG),
        // reported in hw_error with -EINVAL.
        let mut outside = gpaw48();
        outside.push(kvm_cpuid_entry2 {
            function: 0xD,
            index: 1,
            eax: 1 << 31,
            flags: 1,
            ..Default::default()
        });
        let (r, cmd) = init(0, &mut init_vm_buf(0, 0xE7, &outside));
        assert_eq!(
            (r, cmd.hw_error()),
            (Err(EINVAL), TDX_OPERAND_INVALID | 0x45)
        );
        // Entropy: -EAGAIN, retried by MEM_ENC_FLAG_RETRY.
        inject(&vm, MEM_ENC_SIM_FAULT_EAGAIN, id::INIT_VM, 1, 2, 0);
        assert_eq!(init(0, &mut ok).0, Err(EAGAIN));
        let (r, cmd) = init(MEM_ENC_FLAG_RETRY, &mut ok);
        assert_eq!((r, cmd.hw_error()), (Ok(()), 0));
        assert_eq!(init(0, &mut ok).0, Err(EINVAL), "INIT_VM twice");
    }
}

#[test]
fn vcpu_scope_and_state_errors() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = new_vm(profile, KVM_X86_TDX_VM);
        assert_eq!(vcpu(&vm, 0).err(), Some(-libc::EIO), "vCPU before INIT_VM");
        let mut b = init_vm_buf(1 << 28, 0xE7, &gpaw48());
        assert_eq!(op(&vm, id::INIT_VM, b.as_mut_ptr() as u64, None).0, Ok(()));
        assert_eq!(vcpu(&vm, 0).err(), Some(-EINVAL), "no split irqchip");
        assert_eq!(split_irqchip(&vm), Ok(0));
        assert_eq!(split_irqchip(&vm), Err(EEXIST));
        let v = vcpu(&vm, 0).unwrap();
        // vCPU-scoped ids on the VM descriptor and VM-scoped ids on the vCPU: -EINVAL,
        // without copy-back.
        for cmd_id in [id::INIT_VCPU, id::INIT_MEM_REGION, id::GET_CPUID, 6] {
            let mut cmd = raw_cmd(cmd_id, 0, 0, 0);
            assert_eq!(raw_op(vm.0, &mut cmd), Err(EINVAL), "id {cmd_id} on the VM");
        }
        for cmd_id in [id::CAPABILITIES, id::INIT_VM, id::FINALIZE_VM] {
            let mut cmd = raw_cmd(cmd_id, 0, 0, 0);
            assert_eq!(
                raw_op(v.0, &mut cmd),
                Err(EINVAL),
                "id {cmd_id} on the vCPU"
            );
        }
        let mut cmd = raw_cmd(id::INIT_VCPU, 0, 0, 1);
        assert_eq!(raw_op(v.0, &mut cmd), Err(EINVAL), "hw_error non-zero");
        let mut cmd = raw_cmd(id::INIT_VCPU, 2, 0, 0);
        assert_eq!(raw_op(v.0, &mut cmd), Err(EINVAL), "flags");
        assert_eq!(op(&v, id::INIT_VCPU, 0x1234, None).0, Ok(()));
        assert_eq!(
            op(&v, id::INIT_VCPU, 0, None).0,
            Err(EINVAL),
            "INIT_VCPU twice"
        );
        // GET_CPUID: -E2BIG writes the needed count back.
        let mut small = [0u32; 2];
        assert_eq!(
            op(&v, id::GET_CPUID, small.as_mut_ptr() as u64, None).0,
            Err(E2BIG)
        );
        let n = small[0] as usize;
        assert!(n >= 4);
        let mut buf = vec![0u32; 2 + 10 * n];
        buf[0] = n as u32;
        assert_eq!(
            op(&v, id::GET_CPUID, buf.as_mut_ptr() as u64, None).0,
            Ok(())
        );
        let ext8 = (0..n)
            .map(|i| &buf[2 + 10 * i..12 + 10 * i])
            .find(|e| e[0] == 0x8000_0008)
            .unwrap();
        assert_eq!((ext8[3] >> 16) & 0xff, 48, "GPAW from the configuration");
        // vCPU commands never copy the command back.
        let mut page = Mem::new(PAGE as usize);
        page.bytes()[..24].copy_from_slice(&raw_cmd(id::GET_CPUID, 0, buf.as_mut_ptr() as u64, 0));
        // SAFETY: our own mapping.
        unsafe { libc::mprotect(page.addr as *mut _, PAGE as usize, libc::PROT_READ) };
        assert_eq!(raw(v.0, KVM_MEMORY_ENCRYPT_OP, page.addr), Ok(0));
        // After FINALIZE every vCPU command is -EINVAL, GET_CPUID included.
        assert_eq!(op(&vm, id::FINALIZE_VM, 0, None).0, Ok(()));
        assert_eq!(
            op(&v, id::GET_CPUID, buf.as_mut_ptr() as u64, None).0,
            Err(EINVAL)
        );
        assert_eq!(
            op(&vm, id::FINALIZE_VM, 0, None).0,
            Err(EINVAL),
            "FINALIZE twice"
        );
    }
    // The ordering difference: before INIT_VM a bad pointer is -EINVAL on 6.16 (state gate
    // first) and -EFAULT on 6.19 (copy-in first). vCPUs cannot exist then, so use a finalized TD.
    for (profile, want) in [("tdx@6.16", EINVAL), ("tdx@6.19", EFAULT)] {
        let vm = td(profile);
        let v = td_vcpu(&vm);
        assert_eq!(op(&vm, id::FINALIZE_VM, 0, None).0, Ok(()));
        assert_eq!(raw(v.0, KVM_MEMORY_ENCRYPT_OP, 8), Err(want), "{profile}");
    }
}

/// The MRTD, computed here from the TDX module's record definitions.
fn mrtd_records(pages: &[(u64, &[u8], bool)]) -> Vec<u8> {
    let mut h = Sha384::new();
    for &(gpa, data, extend) in pages {
        let mut rec = [0u8; 128];
        rec[..12].copy_from_slice(b"MEM.PAGE.ADD");
        rec[16..24].copy_from_slice(&gpa.to_le_bytes());
        h.update(rec);
        if extend {
            for (i, chunk) in data.chunks(256).enumerate() {
                let mut rec = [0u8; 128];
                rec[..9].copy_from_slice(b"MR.EXTEND");
                rec[16..24].copy_from_slice(&(gpa + 256 * i as u64).to_le_bytes());
                h.update(rec);
                h.update(chunk);
            }
        }
    }
    h.finalize().to_vec()
}

#[test]
fn init_mem_region_progress_and_mrtd_known_answer() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = td(profile);
        let v = td_vcpu(&vm);
        let base = 0x8000_0000u64;
        let backing = Mem::new(8 * PAGE as usize);
        let _g = private_slot(&vm, 0, base, 8 * PAGE, &backing);
        let mut src = Mem::new(4 * PAGE as usize);
        for (i, b) in src.bytes().iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        let region = |gpa: u64, source: u64, n: u64| kvm_tdx_init_mem_region {
            source_addr: source,
            gpa,
            nr_pages: n,
        };
        let mut r = region(base + 1, src.addr, 1);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EINVAL),
            "unaligned gpa"
        );
        let mut r = region(base, src.addr, 0);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EINVAL),
            "0 pages"
        );
        let mut r = region(base | 1 << 47, src.addr, 1);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EINVAL),
            "shared GPA"
        );
        let mut cmd = raw_cmd(
            id::INIT_MEM_REGION,
            2,
            ptr(&mut region(base, src.addr, 1)),
            0,
        );
        assert_eq!(raw_op(v.0, &mut cmd), Err(EINVAL), "unknown flag");
        // A signal after one page: -EINTR, the struct shows the progress; memenc continues.
        inject(
            &vm,
            MEM_ENC_SIM_FAULT_PROGRESS,
            id::INIT_MEM_REGION,
            1,
            1,
            1,
        );
        let mut r = region(base, src.addr, 2);
        let m = MEM_ENC_TDX_MEASURE_MEMORY_REGION;
        assert_eq!(
            op_flags(&v, id::INIT_MEM_REGION, m, ptr(&mut r), None).0,
            Err(EINTR)
        );
        assert_eq!(
            (r.gpa, r.source_addr, r.nr_pages),
            (base + PAGE, src.addr + PAGE, 1)
        );
        assert_eq!(
            op_flags(&v, id::INIT_MEM_REGION, m, ptr(&mut r), None).0,
            Ok(())
        );
        assert_eq!(r.nr_pages, 0);
        // Busy module on PAGE.ADD: -EBUSY; RETRY|CONTINUE gets through it.
        inject(&vm, MEM_ENC_SIM_FAULT_EBUSY, id::INIT_MEM_REGION, 1, 1, 0);
        let mut r = region(base + 2 * PAGE, src.addr + 2 * PAGE, 2);
        let flags = MEM_ENC_FLAG_RETRY | MEM_ENC_FLAG_CONTINUE; // unmeasured pages
        assert_eq!(
            op_flags(&v, id::INIT_MEM_REGION, flags, ptr(&mut r), None).0,
            Ok(())
        );
        assert_eq!(r.nr_pages, 0);
        // Re-adding a page: -EEXIST from guest_memfd; a shared GFN: -EINVAL.
        let mut r = region(base, src.addr, 1);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EEXIST)
        );
        set_private(&vm, base + 5 * PAGE, PAGE, false);
        let mut r = region(base + 5 * PAGE, src.addr, 1);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EINVAL)
        );
        let s = src.bytes();
        let expected = mrtd_records(&[
            (base, &s[..4096], true),
            (base + PAGE, &s[4096..8192], true),
            (base + 2 * PAGE, &s[8192..12288], false),
            (base + 3 * PAGE, &s[12288..], false),
        ]);
        assert_eq!(digest(&vm), Ok(expected.clone()), "MRTD");
        // FINALIZE: busy once (hw_error = OPERAND_BUSY, -EBUSY), then fine.
        inject(&vm, MEM_ENC_SIM_FAULT_EBUSY, id::FINALIZE_VM, 1, 1, 0);
        let (r, cmd) = op(&vm, id::FINALIZE_VM, 0, None);
        assert_eq!((r, cmd.hw_error()), (Err(EBUSY), TDX_OPERAND_BUSY));
        let (r, cmd) = op(&vm, id::FINALIZE_VM, 0, None);
        assert_eq!((r, cmd.hw_error()), (Ok(()), 0));
        assert_eq!(digest(&vm), Ok(expected));
        let mut r = region(base + 4 * PAGE, src.addr, 1);
        assert_eq!(
            op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0,
            Err(EINVAL),
            "after FINALIZE"
        );
    }
}

#[test]
fn a_failed_finalize_kills_the_vm() {
    println!("simulated host: tdx@6.19");
    let vm = td("tdx@6.19");
    inject(
        &vm,
        MEM_ENC_SIM_FAULT_FW_STATUS,
        id::FINALIZE_VM,
        1,
        1,
        0xC000_0607_0000_0000,
    );
    let (r, cmd) = op(&vm, id::FINALIZE_VM, 0, None);
    assert_eq!((r, cmd.hw_error()), (Err(libc::EIO), 0xC000_0607_0000_0000));
    assert_eq!(
        raw(vm.0, KVM_CHECK_EXTENSION, 235),
        Err(libc::EIO),
        "VM is bugged"
    );
    // 6.19's state guard: a vCPU creation in flight is -EBUSY, a signal -EINTR.
    let vm = td("tdx@6.19");
    inject(&vm, MEM_ENC_SIM_FAULT_EINTR, id::FINALIZE_VM, 1, 1, 0);
    assert_eq!(op(&vm, id::FINALIZE_VM, 0, None).0, Err(EINTR));
    assert_eq!(op(&vm, id::FINALIZE_VM, 0, None).0, Ok(()));
}

/// A3: 6.16 and 6.19 `tdx_vcpu_init_mem_region` validate alignment, count, wrap and private
/// GPAs only, so `source_addr` 0 passes; the first page's `get_user_pages_fast(0)` in
/// `tdx_gmem_post_populate` is -EFAULT, the loop stops, the region goes back unchanged.
#[test]
fn init_mem_region_null_source_is_efault_at_the_first_page() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = td(profile);
        let v = td_vcpu(&vm);
        let base = 0x8000_0000u64;
        let backing = Mem::new(2 * PAGE as usize);
        let _g = private_slot(&vm, 0, base, 2 * PAGE, &backing);
        let before = digest(&vm).unwrap();
        let mut r = kvm_tdx_init_mem_region {
            source_addr: 0,
            gpa: base,
            nr_pages: 2,
        };
        let m = MEM_ENC_TDX_MEASURE_MEMORY_REGION;
        assert_eq!(
            op_flags(&v, id::INIT_MEM_REGION, m, ptr(&mut r), None).0,
            Err(EFAULT),
            "{profile}"
        );
        assert_eq!(
            (r.source_addr, r.gpa, r.nr_pages),
            (0, base, 2),
            "{profile}"
        );
        assert_eq!(digest(&vm).unwrap(), before, "{profile}: nothing added");
    }
}

/// B9: a TDH.MNG.INIT failure other than OPERAND_INVALID goes through KVM_BUG_ON: -EIO, and
/// the VM is dead from then on (later ioctls -EIO).
#[test]
fn init_vm_module_failure_kills_the_vm() {
    for profile in PROFILES {
        let vm = new_vm(profile, KVM_X86_TDX_VM);
        inject(
            &vm,
            MEM_ENC_SIM_FAULT_FW_STATUS,
            id::INIT_VM,
            1,
            1,
            0xC000_0B00_0000_0000,
        );
        let mut b = init_vm_buf(1 << 28, 0xE7, &gpaw48());
        let ret = op(&vm, id::INIT_VM, b.as_mut_ptr() as u64, None).0;
        assert_eq!(ret, Err(EIO), "{profile}");
        let mut b = init_vm_buf(1 << 28, 0xE7, &gpaw48());
        let again = op(&vm, id::INIT_VM, b.as_mut_ptr() as u64, None).0;
        assert_eq!(again, Err(EIO), "{profile}: dead");
        assert_eq!(
            raw(vm.0, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
            Err(EIO),
            "{profile}: dead"
        );
    }
}

/// B8: 6.16 `tdx_td_finalize` is -EINVAL while `nr_premapped` is non-zero: a page
/// INIT_MEM_REGION mapped but whose PAGE.ADD failed. Adding it later clears it. 6.19 has no
/// such count.
#[test]
fn finalize_waits_for_premapped_pages_on_6_16() {
    for profile in PROFILES {
        println!("simulated host: {profile}");
        let vm = td(profile);
        let v = td_vcpu(&vm);
        let base = 0x8000_0000u64;
        let backing = Mem::new(PAGE as usize);
        let _g = private_slot(&vm, 0, base, PAGE, &backing);
        let src = Mem::new(PAGE as usize);
        let region = || kvm_tdx_init_mem_region {
            source_addr: src.addr,
            gpa: base,
            nr_pages: 1,
        };
        inject(&vm, MEM_ENC_SIM_FAULT_EBUSY, id::INIT_MEM_REGION, 1, 1, 0);
        let mut r = region();
        assert_eq!(op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0, Err(EBUSY));
        let fin = op(&vm, id::FINALIZE_VM, 0, None).0;
        if profile == "tdx@6.16" {
            assert_eq!(fin, Err(EINVAL), "{profile}: a premapped page");
            let mut r = region();
            assert_eq!(op(&v, id::INIT_MEM_REGION, ptr(&mut r), None).0, Ok(()));
            assert_eq!(op(&vm, id::FINALIZE_VM, 0, None).0, Ok(()), "{profile}");
        } else {
            assert_eq!(fin, Ok(()), "{profile}");
        }
    }
}
