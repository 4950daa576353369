//! KVM_TDX_INIT_VM on the simulated TDX hosts: how `tdx_td_init` reads `cpuid.nent` (6.16 once,
//! 6.19.0 twice without the later re-check) and how `setup_tdparams_cpuids` matches the CPUID
//! entries to the TDX module's configurable leaves (`kvm_find_cpuid_entry2` with the user
//! entry's flags, every entry used exactly once).

use memenc::uapi::{
    KVM_MEMORY_ENCRYPT_OP, KVM_X86_TDX_VM, kvm_cpuid_entry2, kvm_tdx_cmd, tdx_id as id,
};
use memenc_sim::inprocess;
use memenc_sim::model::tdx::set_init_vm_nent_window;

const PROFILES: [&str; 2] = ["tdx@6.16", "tdx@6.19"];
const SIGNIFICANT_INDEX: u32 = 1;
const OPERAND_INVALID_CPUID_CONFIG: u64 = 0xC000_0100_0000_0045;
const NENT_OFFSET: usize = 256;
const HEADER: usize = 264;
const ENTRY: usize = 40;
const SEPT_VE_DISABLE: u64 = 1 << 28;

fn entry(function: u32, index: u32, flags: u32, eax: u32) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags,
        eax,
        ..Default::default()
    }
}

/// Leaf 0x80000008 with GPAW 48: the one leaf every INIT_VM needs.
fn gpaw48() -> kvm_cpuid_entry2 {
    entry(0x8000_0008, 0, 0, 48 << 16 | 0x3030)
}

/// `struct kvm_tdx_init_vm` (SEPT_VE_DISABLE, XFAM x87|SSE) with `entries`, written at `at`.
fn write_init_vm(buf: &mut [u8], at: usize, entries: &[kvm_cpuid_entry2]) {
    let b = &mut buf[at..at + HEADER + ENTRY * entries.len()];
    b.fill(0);
    b[0..8].copy_from_slice(&SEPT_VE_DISABLE.to_le_bytes());
    b[8..16].copy_from_slice(&0x3u64.to_le_bytes());
    b[NENT_OFFSET..NENT_OFFSET + 4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let words = [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx];
        for (j, w) in words.iter().enumerate() {
            let o = HEADER + ENTRY * i + 4 * j;
            b[o..o + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
}

fn init_vm_buf(entries: &[kvm_cpuid_entry2]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER + ENTRY * entries.len()];
    write_init_vm(&mut b, 0, entries);
    b
}

/// KVM_TDX_INIT_VM with `data` on a fresh TD of `profile`: the result and `hw_error`.
fn init_vm_at(profile: &str, data: u64) -> (Result<i32, i32>, u64) {
    let vm = inprocess::vm_create(profile, u64::from(KVM_X86_TDX_VM)).unwrap();
    let mut cmd = kvm_tdx_cmd {
        id: id::INIT_VM,
        flags: 0,
        data,
        hw_error: 0,
    };
    // SAFETY: `cmd` is a live kvm_tdx_cmd and `data` points at the caller's INIT_VM struct (or
    // at memory the model, like the kernel, must refuse with -EFAULT).
    let r = unsafe {
        memenc::host::ioctl(
            vm,
            KVM_MEMORY_ENCRYPT_OP,
            &mut cmd as *mut kvm_tdx_cmd as u64,
        )
    };
    // SAFETY: closing the simulated VM descriptor we own.
    unsafe { libc::close(vm) };
    (r.map_err(|e| e.0), cmd.hw_error)
}

fn init_vm(profile: &str, entries: &[kvm_cpuid_entry2]) -> (Result<i32, i32>, u64) {
    let mut b = init_vm_buf(entries);
    init_vm_at(profile, b.as_mut_ptr() as u64)
}

/// Sets `cpuid.nent` of the INIT_VM struct at `data`, as a second caller thread would.
fn set_nent(data: u64, nent: u32) {
    // SAFETY: `data` is the test's own live, writable INIT_VM buffer (the hook only runs inside
    // the INIT_VM call made on it), and `nent` sits at offset 256 within it.
    unsafe { ((data as usize + NENT_OFFSET) as *mut u32).write_unaligned(nent) };
}

fn shrink_to_1(data: u64) {
    set_nent(data, 1);
}

fn grow_to_2(data: u64) {
    set_nent(data, 2);
}

/// Page-aligned anonymous pages; `last_unreadable`: the last page is PROT_NONE.
struct Pages(*mut u8, usize);
impl Pages {
    fn new(n: usize, last_unreadable: bool) -> Pages {
        let len = n * 4096;
        // SAFETY: a fresh anonymous private mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        if last_unreadable {
            // SAFETY: the last page of our own mapping.
            let r = unsafe { libc::mprotect(p.cast::<u8>().add(len - 4096).cast(), 4096, 0) };
            assert_eq!(r, 0);
        }
        Pages(p.cast(), len)
    }
    /// The readable part (all but a PROT_NONE last page).
    fn readable(&mut self, last_unreadable: bool) -> &mut [u8] {
        let n = self.1 - if last_unreadable { 4096 } else { 0 };
        // SAFETY: our mapping; these bytes are readable and writable.
        unsafe { core::slice::from_raw_parts_mut(self.0, n) }
    }
}
impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

// --- B7: setup_tdparams_cpuids -------------------------------------------------------------

#[test]
fn duplicate_cpuid_entries_are_einval() {
    for profile in PROFILES {
        let leaf1 = entry(1, 0, 0, 0x0000_0600);
        assert_eq!(init_vm(profile, &[gpaw48(), leaf1]).0, Ok(0), "{profile}");
        // Both leaf-1 entries match the one config slot: copy_cnt 2 != nent 3.
        assert_eq!(
            init_vm(profile, &[gpaw48(), leaf1, leaf1]).0,
            Err(libc::EINVAL),
            "{profile}: duplicate leaf 1"
        );
        assert_eq!(
            init_vm(profile, &[gpaw48(), gpaw48()]).0,
            Err(libc::EINVAL),
            "{profile}: duplicate leaf 0x80000008"
        );
        // A leaf without a config slot is never copied either.
        assert_eq!(
            init_vm(profile, &[gpaw48(), entry(2, 0, 0, 0)]).0,
            Err(libc::EINVAL),
            "{profile}: leaf 2"
        );
    }
}

#[test]
fn cpuid_match_uses_the_user_entrys_significant_index_flag() {
    for profile in PROFILES {
        // Leaf 7 index 1 without the flag: index not significant, so it is config slot (7, 0).
        assert_eq!(
            init_vm(profile, &[gpaw48(), entry(7, 1, 0, 0)]).0,
            Ok(0),
            "{profile}: leaf 7 index 1, index not significant"
        );
        // Leaf 1 (a config without subleaves) index 5 with the flag: no slot (1, 0) matches.
        assert_eq!(
            init_vm(profile, &[gpaw48(), entry(1, 5, SIGNIFICANT_INDEX, 0)]).0,
            Err(libc::EINVAL),
            "{profile}: leaf 1 index 5, significant"
        );
        // 0x80000008 index 1 with the flag: setup_tdparams_eptp_controls looks up (0x80000008,
        // 0) and finds nothing.
        let mut ext8 = gpaw48();
        (ext8.index, ext8.flags) = (1, SIGNIFICANT_INDEX);
        assert_eq!(
            init_vm(profile, &[ext8]).0,
            Err(libc::EINVAL),
            "{profile}: 0x80000008 index 1, significant"
        );
        // Two leaf-0xD subleaves with the flag fill the two slots.
        let d0 = entry(0xD, 0, SIGNIFICANT_INDEX, 0x3);
        let d1 = entry(0xD, 1, SIGNIFICANT_INDEX, 0x1);
        assert_eq!(init_vm(profile, &[gpaw48(), d0, d1]).0, Ok(0), "{profile}");
    }
}

#[test]
fn module_checks_the_values_of_the_matched_entry() {
    for profile in PROFILES {
        // Leaf 7 index 1 without the flag lands in slot (7, 0), whose EAX is not configurable:
        // TDH.MNG.INIT says OPERAND_INVALID for the CPUID config.
        let (r, hw_error) = init_vm(profile, &[gpaw48(), entry(7, 1, 0, 1)]);
        assert_eq!(r, Err(libc::EINVAL), "{profile}");
        assert_eq!(
            hw_error, OPERAND_INVALID_CPUID_CONFIG,
            "{profile}: hw_error"
        );
        // A KVM-side refusal (duplicate) leaves hw_error 0.
        let leaf1 = entry(1, 0, 0, 0x600);
        let (r, hw_error) = init_vm(profile, &[gpaw48(), leaf1, leaf1]);
        assert_eq!((r, hw_error), (Err(libc::EINVAL), 0), "{profile}");
    }
}

// --- B6: the reads of cpuid.nent -----------------------------------------------------------

#[test]
fn nent_above_kvm_max_cpuid_entries_is_e2big() {
    for profile in PROFILES {
        let mut b = init_vm_buf(&[gpaw48()]);
        b[NENT_OFFSET..NENT_OFFSET + 4].copy_from_slice(&257u32.to_le_bytes());
        assert_eq!(
            init_vm_at(profile, b.as_mut_ptr() as u64).0,
            Err(libc::E2BIG),
            "{profile}"
        );
    }
    // 6.19 get_user()s nent alone before copying anything: with the fixed part before nent
    // unreadable, 257 is -E2BIG there, while 6.16's copy of the fixed part is -EFAULT first.
    let mut pages = Pages::new(2, false);
    let base = pages.0 as u64;
    // SAFETY: the first page of our own mapping.
    assert_eq!(unsafe { libc::mprotect(pages.0.cast(), 4096, 0) }, 0);
    let data = base + 4096 - NENT_OFFSET as u64;
    pages.readable(false)[4096..4100].copy_from_slice(&257u32.to_le_bytes());
    assert_eq!(init_vm_at("tdx@6.19", data).0, Err(libc::E2BIG));
    assert_eq!(init_vm_at("tdx@6.16", data).0, Err(libc::EFAULT));
}

#[test]
fn nent_changed_between_the_reads_is_used_by_6_19_and_ignored_by_6_16() {
    // Entry 1 (leaf 2) has no config slot: INIT_VM succeeds only if the kernel uses nent 1.
    let entries = [gpaw48(), entry(2, 0, 0, 0)];
    set_init_vm_nent_window(Some(shrink_to_1));
    let r16 = init_vm("tdx@6.16", &entries).0;
    let r19 = init_vm("tdx@6.19", &entries).0;
    set_init_vm_nent_window(None);
    // 6.16 read nent once, with the fixed part: it still uses 2.
    assert_eq!(r16, Err(libc::EINVAL), "tdx@6.16");
    // 6.19.0 copied 2 entries, then uses the re-read nent 1 (no CVE-2026-72285 re-check).
    assert_eq!(r19, Ok(0), "tdx@6.19");

    // Growing it: 6.19.0 copied one entry but walks two, past its copy (the kernel reads
    // whatever follows in its heap; the model reads a zero entry, which no config slot
    // matches), so copy_cnt 1 != nent 2.
    set_init_vm_nent_window(Some(grow_to_2));
    let mut b = init_vm_buf(&[gpaw48(), gpaw48()]);
    b[NENT_OFFSET..NENT_OFFSET + 4].copy_from_slice(&1u32.to_le_bytes());
    let r16 = init_vm_at("tdx@6.16", b.as_mut_ptr() as u64).0;
    b[NENT_OFFSET..NENT_OFFSET + 4].copy_from_slice(&1u32.to_le_bytes());
    let r19 = init_vm_at("tdx@6.19", b.as_mut_ptr() as u64).0;
    set_init_vm_nent_window(None);
    assert_eq!(r16, Ok(0), "tdx@6.16 uses the nent it read");
    assert_eq!(r19, Err(libc::EINVAL), "tdx@6.19");
}

#[test]
fn the_first_nent_read_sizes_the_copy_on_6_19() {
    // Two entries claimed, the second in an unreadable page: memdup_user of struct_size(2)
    // is -EFAULT even though nent reads 1 by the time the entries would be used.
    let mut pages = Pages::new(2, true);
    let at = 4096 - HEADER - ENTRY;
    write_init_vm(pages.readable(true), at, &[gpaw48()]);
    pages.readable(true)[at + NENT_OFFSET..at + NENT_OFFSET + 4]
        .copy_from_slice(&2u32.to_le_bytes());
    let data = pages.0 as u64 + at as u64;
    set_init_vm_nent_window(Some(shrink_to_1));
    let r19 = init_vm_at("tdx@6.19", data).0;
    set_init_vm_nent_window(None);
    assert_eq!(r19, Err(libc::EFAULT));
    // With nent 1 from the start the same struct is fine.
    pages.readable(true)[at + NENT_OFFSET..at + NENT_OFFSET + 4]
        .copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(init_vm_at("tdx@6.19", data).0, Ok(0));
}
