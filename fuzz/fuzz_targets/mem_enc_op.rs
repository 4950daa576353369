//! `mem_enc_op()` with arbitrary command bytes on every descriptor kind.
//!
//! Input: [fd kind][u32 negative fd][24 command bytes][data mode][parameter bytes...].
//! Data mode bit 0 set: `data` points at a 4 KiB buffer holding the parameter bytes (so a
//! parameter struct of any command is readable); clear: `data` is the fuzzer's raw value.
//! Raw values, and every 8-byte slot of the parameter bytes, that name a mapped page of this
//! process are replaced by faulting addresses first (`sim::never_live`): the kernel and the
//! model write through such addresses, as a raw ioctl would.
//!
//! Simulated kinds (a fresh simulated VM, or its vCPU, per input): the u32 picks the profile
//! (byte 0), the VM type (byte 1: the profile's launch type, or the raw byte) and a launch
//! prefix run with the typed helpers first (byte 2: none, INIT, START / INIT_VCPU, private
//! memory), so one command lands anywhere in the state machine. Data mode bit 1 puts the
//! simulated /dev/sev into `status.sev.sev_fd`; bit 2 writes the address of 16 source pages
//! (bits 3-5 pick the u64 slot of the parameter buffer), as the launch-update structs carry.
//! The model then reads the parameter struct exactly as the kernel would.
//!
//! Invariants checked on every input:
//!  - the return value is 0 or a negative errno;
//!  - input memenc rejects (negative fd: -EBADF; a flag bit outside
//!    `mem_enc_cmd_flags_supported()` for the host vendor and id: -EINVAL) leaves all 24 bytes
//!    unchanged;
//!  - otherwise only the status word changes: id, flags, data and (SEV) `sev_fd` never do;
//!  - on a real descriptor of a host without a memory-encryption backend, the result equals
//!    the raw ioctl's for the same command with memenc's own flag bits removed, and the status
//!    written back is 0 (the firmware was never reached);
//!  - rejected commands issue no ioctl (memenc's trace hook counts them); accepted ones at
//!    least one, and at most 1 + the retry limit, or a CONTINUE run's page count + the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memenc::capi::op::{mem_enc_cmd_flags_supported, mem_enc_host_vendor, mem_enc_op};
use memenc::{MEM_ENC_FLAG_CONTINUE, MEM_ENC_FLAGS_LIBRARY_MASK, MEM_ENC_VENDOR_SEV, mem_enc_cmd};
use memenc_fuzz::{Bytes, FdKind, is_neg_errno, sim};
use std::sync::OnceLock;

const PARAM_LEN: usize = 4096;

/// Whether the real host has a memory-encryption backend on a default VM. With one, the raw
/// ioctl differential is skipped: it would issue every command twice to the firmware.
fn real_backend() -> bool {
    static B: OnceLock<bool> = OnceLock::new();
    *B.get_or_init(|| {
        FdKind::Vm
            .fd(0)
            .is_some_and(|vm| memenc::encryption_enabled(vm).is_ok())
    })
}

fn vendor_is_sev(fd: i32) -> bool {
    memenc::host::vendor_of(fd) == memenc::Vendor::Sev
}

fn raw_ioctl(fd: i32, cmd: &mut mem_enc_cmd) -> i32 {
    // SAFETY: a 24-byte command; `data` is handed to the kernel, which validates it.
    let r = unsafe {
        libc::ioctl(
            fd,
            memenc::uapi::KVM_MEMORY_ENCRYPT_OP as libc::Ioctl,
            cmd as *mut mem_enc_cmd,
        )
    };
    if r < 0 {
        -std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        r
    }
}

fn as_bytes(cmd: &mem_enc_cmd) -> [u8; 24] {
    // SAFETY: mem_enc_cmd is 24 bytes of plain data without padding.
    unsafe { core::mem::transmute_copy(cmd) }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let kind = FdKind::pick(input.u8());
    let negative = input.u32();
    let mut raw = [0u8; 24];
    input.fill(&mut raw);
    let mode = input.u8();
    let mut param = vec![0u8; PARAM_LEN];
    let rest = input.rest();
    param[..rest.len().min(PARAM_LEN)].copy_from_slice(&rest[..rest.len().min(PARAM_LEN)]);
    // No fuzzer bytes may name live memory: the kernel or the model would write through them.
    for slot in param.chunks_exact_mut(8) {
        let value = u64::from_le_bytes(slot.try_into().unwrap_or([0; 8]));
        slot.copy_from_slice(&sim::never_live(value).to_le_bytes());
    }

    let world = kind.is_sim().then(|| {
        let [profile, vm_type, stage, _] = negative.to_le_bytes();
        let launch = sim::PROFILES[profile as usize % sim::PROFILES.len()].1;
        let mut w = sim::World::new(
            profile,
            Some(if vm_type & 1 == 0 {
                launch
            } else {
                u32::from(vm_type >> 1)
            }),
        );
        w.prefix(stage % 4);
        if kind == FdKind::SimVcpu && w.vcpus.is_empty() {
            w.add_vcpu(u32::from(stage >> 2));
        }
        w
    });
    let fd = match (&world, kind) {
        (Some(w), FdKind::SimVm) => w.vm.0,
        (Some(w), _) => match w.vcpu(0) {
            Some(v) => v,
            None => return,
        },
        (None, _) => match kind.fd(negative) {
            Some(fd) => fd,
            None => return,
        },
    };
    // SAFETY: any 24 bytes are a valid mem_enc_cmd.
    let mut cmd: mem_enc_cmd = unsafe { core::mem::transmute(raw) };
    if mode & 1 != 0 {
        cmd.data = param.as_mut_ptr() as u64;
    } else {
        cmd.data = sim::never_live(cmd.data);
    }
    if let Some(w) = &world {
        if mode & 2 != 0 {
            // Writing a Copy field of the status union (the SEV view) needs no unsafe.
            cmd.status.sev.sev_fd = w.sev_fd() as u32;
        }
        if mode & 4 != 0 {
            let slot = usize::from((mode >> 3) & 7) * 8;
            param[slot..slot + 8].copy_from_slice(&(w.src.base as u64).to_le_bytes());
        }
        if vendor_is_sev(fd) && mode & 1 != 0 {
            // The SEV model reads a claimed range into one buffer of the claimed length (up
            // to 4 GiB) when both its ends are mapped (src/sim/sev.rs: pin/read_vec in
            // LAUNCH_UPDATE_DATA, DBG_*, ...): beyond 16 MiB that is memory, not coverage, and
            // libFuzzer reports it as out-of-memory. Every 32-bit word of the first 64 bytes
            // (where the lengths are) is clamped, except the injected source address.
            // Reported; see TESTING.md.
            let src_slot = usize::from((mode >> 3) & 7) * 8;
            for at in (0..64).step_by(4) {
                // The SEV structs' length words (8, 16, 24, 40) are clamped even when the
                // source address was injected over them.
                let length_word = matches!(at, 8 | 16 | 24 | 40);
                if mode & 4 != 0 && (src_slot..src_slot + 8).contains(&at) && !length_word {
                    continue;
                }
                let word = u32::from_le_bytes(param[at..at + 4].try_into().unwrap_or([0; 4]));
                param[at..at + 4].copy_from_slice(&word.min(16 << 20).to_le_bytes());
            }
        }
    }
    let before = as_bytes(&cmd);
    // The numbering memenc reads `id` in: the simulated profile's, else the CPU's.
    let vendor = if kind.is_sim() {
        memenc::host::vendor_of(fd).as_u32()
    } else {
        mem_enc_host_vendor()
    };
    let supported = mem_enc_cmd_flags_supported(vendor, cmd.id);
    let issued_before = sim::ioctls();

    // SAFETY: `cmd` is 24 writable bytes; `data` is the buffer above or an arbitrary address
    // the kernel validates (memenc itself reads it only fault-safely).
    let r = unsafe { mem_enc_op(fd, &mut cmd) };
    let after = as_bytes(&cmd);
    let issued = sim::ioctls() - issued_before;

    assert!(r == 0 || is_neg_errno(r), "return value {r}");
    if fd < 0 {
        assert_eq!(r, -libc::EBADF);
        assert_eq!(after, before, "a rejected command was modified");
        assert_eq!(issued, 0, "ioctl issued for a negative fd");
        return;
    }
    if cmd.flags & !supported != 0 {
        assert_eq!(
            r,
            -libc::EINVAL,
            "flags {:#x} supported {supported:#x}",
            cmd.flags
        );
        assert_eq!(after, before, "a rejected command was modified");
        assert_eq!(issued, 0, "ioctl issued for a rejected flag");
        return;
    }
    assert!(issued >= 1, "an accepted command issued no ioctl");
    if cmd.flags & MEM_ENC_FLAG_CONTINUE == 0 {
        let limit = u64::from(memenc::op::retry_limit());
        assert!(issued <= 1 + limit, "{issued} ioctls for one command");
    }
    assert_eq!(after[..16], before[..16], "id, flags or data changed");
    if vendor == MEM_ENC_VENDOR_SEV {
        assert_eq!(after[20..], before[20..], "sev_fd changed");
    }
    if kind.is_real() && !real_backend() && cmd.flags & MEM_ENC_FLAG_CONTINUE == 0 {
        let mut reference = cmd;
        reference.flags &= !MEM_ENC_FLAGS_LIBRARY_MASK;
        let expect = raw_ioctl(fd, &mut reference);
        assert_eq!(r, expect, "differs from the raw ioctl");
        assert_eq!(after[16..20], [0; 4], "status not cleared");
    }
});
