//! The TDX model: `tdx_vm_ioctl()` and the vCPU-scoped `tdx_vcpu_ioctl()` /
//! `tdx_vcpu_unlocked_ioctl()` (kernel-abi.md §2.7-2.9), in the 6.16 and the 6.19 shapes, with
//! the TDX module reduced to the TD and vCPU lifecycle, its CPUID-configuration check and the
//! MRTD measurement.

use super::fault::{Effect, generic_errno};
use super::measure::{Mrtd, TdxPageStream};
use super::profile::{CpuidConfig, TdxCaps};
use super::user::{self, Envelope};
use super::vm::{PAGE_SHIFT, PAGE_SIZE, Vm};
use memenc::Errno;
use memenc::uapi::{
    self, KVM_MAX_CPUID_ENTRIES, KVM_TDX_MEASURE_MEMORY_REGION, kvm_cpuid_entry2,
    kvm_cpuid2_header, tdx_id as id,
};

fn err<T>(e: i32) -> Result<T, Errno> {
    Err(Errno(e))
}

/// TDX module status codes the model returns.
pub mod status {
    pub const MASK: u64 = 0xFFFF_FFFF_0000_0000;
    pub const OPERAND_INVALID: u64 = 0xC000_0100_0000_0000;
    pub const OPERAND_BUSY: u64 = 0x8000_0200_0000_0000;
    /// Operand id of the CPUID configuration in TDH.MNG.INIT's TD_PARAMS.
    pub const OPERAND_ID_CPUID_CONFIG: u64 = 0x45;
}

/// `TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT`, reported in `user_tdvmcallinfo_1_r11`.
const TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT: u64 = 1 << 1;
const CPUID_SIZE: u64 = core::mem::size_of::<kvm_cpuid_entry2>() as u64;
const INIT_VM_SIZE: u64 = core::mem::size_of::<uapi::kvm_tdx_init_vm>() as u64;
const CAPS_NENT_OFFSET: u64 = 2048;
const INIT_VM_NENT_OFFSET: u64 = 256;

thread_local! {
    /// See [`set_init_vm_nent_window`].
    static NENT_WINDOW: core::cell::Cell<Option<fn(u64)>> = const { core::cell::Cell::new(None) };
}

/// Test seam: `hook(data)` runs inside INIT_VM on this thread right after the kernel's first
/// read of `cpuid.nent` (6.19: the `get_user`; 6.16: the copy of the fixed part) and before
/// its copy of the entries (6.19: the `memdup_user` that reads `nent` again). That is the
/// window in which another thread of a real caller could rewrite the struct; a single-threaded
/// test cannot hit it otherwise. `None` removes the hook. Calls answered on other threads
/// (the supervisor's) never run it.
pub fn set_init_vm_nent_window(hook: Option<fn(u64)>) {
    NENT_WINDOW.with(|h| h.set(hook));
}

fn nent_window(data: u64) {
    if let Some(hook) = NENT_WINDOW.with(core::cell::Cell::get) {
        hook(data);
    }
}

/// The TD's lifecycle state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Td {
    #[default]
    Uninitialized,
    /// INIT_VM done (HKID assigned).
    Initialized,
    /// FINALIZE_VM done.
    Runnable,
}

/// The TDX side of a VM.
#[derive(Debug, Default)]
pub struct State {
    pub td: Td,
    pub attributes: u64,
    pub xfam: u64,
    pub gpaw: u32,
    /// The CPUID entries INIT_VM used; each config slot's value is the one
    /// `kvm_find_cpuid_entry2` finds here.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub mrtd: Mrtd,
    /// 6.16's `nr_premapped`: GFNs INIT_MEM_REGION mapped whose PAGE.ADD failed (a later
    /// successful add of the same GFN takes it out again).
    pub premapped: std::collections::BTreeSet<u64>,
}

impl State {
    /// The MRTD so far, once INIT_VM is done.
    pub fn digest(&self) -> Option<Vec<u8>> {
        (self.td != Td::Uninitialized).then(|| self.mrtd.value().to_vec())
    }
}

fn caps(vm: &Vm) -> Result<&'static TdxCaps, Errno> {
    vm.profile.tdx.as_ref().ok_or(Errno(libc::ENOTTY))
}

/// `tdx_get_cmd`: copy the 24 bytes in; a non-zero `hw_error` is refused.
fn get_cmd(arg: u64) -> Result<Envelope, Errno> {
    let cmd = Envelope::read(arg)?;
    if cmd.hw_error() != 0 {
        return err(libc::EINVAL);
    }
    Ok(cmd)
}

/// `tdx_vm_state_guard` (6.19): kvm->lock, -EBUSY while a vCPU creation is in flight, then
/// every vCPU mutex, killable (-EINTR). A busy fault on FINALIZE_VM and INIT_MEM_REGION is
/// left for the module's TDX_OPERAND_BUSY instead.
fn state_guard(cmd_id: u32, fault: &mut Option<Effect>) -> Result<(), Errno> {
    let module_busy = matches!(cmd_id, id::FINALIZE_VM | id::INIT_MEM_REGION);
    match *fault {
        Some(Effect::Busy) if !module_busy => {
            *fault = None;
            err(libc::EBUSY)
        }
        Some(Effect::Signal) => {
            *fault = None;
            err(libc::EINTR)
        }
        _ => Ok(()),
    }
}

/// KVM_CREATE_VCPU's TDX part (`tdx_vcpu_create`).
pub fn vcpu_create(vm: &Vm) -> Result<(), Errno> {
    if vm.tdx.td != Td::Initialized {
        return err(libc::EIO);
    }
    if !vm.split_irqchip {
        return err(libc::EINVAL);
    }
    Ok(())
}

/// KVM_MEMORY_ENCRYPT_OP on a TD's VM descriptor (`tdx_vm_ioctl`).
pub fn vm_op(vm: &mut Vm, arg: u64) -> Result<i32, Errno> {
    let caps = caps(vm)?;
    let mut cmd = get_cmd(arg)?;
    let known = matches!(cmd.id(), id::CAPABILITIES | id::INIT_VM | id::FINALIZE_VM);
    let mut fault = if known {
        vm.faults.take(cmd.id())
    } else {
        None
    };
    if caps.rework_6_19 {
        if cmd.id() == id::CAPABILITIES {
            // 6.19: no lock, and the command is not copied back.
            return capabilities(caps, &cmd, &mut fault).map(|()| 0);
        }
        state_guard(cmd.id(), &mut fault)?;
    }
    let r = match cmd.id() {
        id::CAPABILITIES => capabilities(caps, &cmd, &mut fault),
        id::INIT_VM => init_vm(vm, caps, &mut cmd, &mut fault),
        id::FINALIZE_VM => finalize_vm(vm, &mut cmd, &mut fault),
        _ => return err(libc::EINVAL),
    };
    cmd.write(arg)?;
    r.map(|()| 0)
}

fn take_generic(fault: &mut Option<Effect>) -> Result<(), Errno> {
    match fault.and_then(generic_errno) {
        Some(e) => {
            *fault = None;
            Err(e)
        }
        None => Ok(()),
    }
}

/// The CPUID entries CAPABILITIES reports: one per configurable leaf.
fn config_entries(caps: &TdxCaps) -> Vec<kvm_cpuid_entry2> {
    caps.cpuid
        .iter()
        .map(|c| kvm_cpuid_entry2 {
            function: c.leaf,
            index: c.subleaf,
            flags: c.flags,
            eax: c.eax,
            ebx: c.ebx,
            ecx: c.ecx,
            edx: c.edx,
            padding: [0; 3],
        })
        .collect()
}

fn capabilities(caps: &TdxCaps, cmd: &Envelope, fault: &mut Option<Effect>) -> Result<(), Errno> {
    if cmd.flags() != 0 {
        return err(libc::EINVAL);
    }
    let data = cmd.data();
    let nent: u32 = user::read(data.wrapping_add(CAPS_NENT_OFFSET))?;
    let entries = config_entries(caps);
    if (nent as usize) < entries.len() {
        return err(libc::E2BIG);
    }
    take_generic(fault)?;
    if caps.supported_attrs == 0 || caps.supported_xfam == 0 {
        return err(libc::EIO);
    }
    let mut out: uapi::kvm_tdx_capabilities = user::from_bytes(&[]);
    out.supported_attrs = caps.supported_attrs;
    out.supported_xfam = caps.supported_xfam;
    out.user_tdvmcallinfo_1_r11 = TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT;
    out.cpuid.nent = entries.len() as u32;
    user::write(data, &out)?;
    let mut bytes = Vec::new();
    for e in &entries {
        bytes.extend_from_slice(user::as_bytes(e));
    }
    user::write_bytes(data.wrapping_add(CAPS_NENT_OFFSET + 8), &bytes)
}

/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`.
const SIGNIFICANT_INDEX: u32 = 1;

/// The CPUID entries INIT_VM works on: what `tdx_td_init` copied in (`copied`) and the count
/// it then uses (`nent`, the struct's own `cpuid.nent`). On 6.19.0 `nent` may exceed the
/// copy when the caller raised it between the two reads: the kernel then reads past its
/// `memdup_user` buffer (the CVE-2026-72285 bug; whatever follows in its heap), which the
/// model reads as zero entries.
struct UserCpuid {
    copied: Vec<kvm_cpuid_entry2>,
    nent: usize,
}

impl UserCpuid {
    /// `kvm_find_cpuid_entry2` over the `nent` entries the kernel walks.
    fn find(&self, function: u32, index: u32) -> Option<kvm_cpuid_entry2> {
        let copied = &self.copied[..self.nent.min(self.copied.len())];
        let zero = [kvm_cpuid_entry2::default()];
        let past_copy = if self.nent > copied.len() {
            &zero[..]
        } else {
            &[]
        };
        find_cpuid_entry2(copied, function, index)
            .or_else(|| find_cpuid_entry2(past_copy, function, index))
    }

    /// The entries the kernel used, for the TD's record (never past the copy).
    fn used(mut self) -> Vec<kvm_cpuid_entry2> {
        self.copied.truncate(self.nent);
        self.copied
    }
}

/// `kvm_find_cpuid_entry2(entries, nent, function, index)` (`cpuid_entry2_find`): the first
/// entry of `function` whose *own* flags say its index is not significant, or whose index is
/// `index`.
fn find_cpuid_entry2(
    entries: &[kvm_cpuid_entry2],
    function: u32,
    index: u32,
) -> Option<kvm_cpuid_entry2> {
    entries
        .iter()
        .find(|e| e.function == function && (e.flags & SIGNIFICANT_INDEX == 0 || e.index == index))
        .copied()
}

fn read_entries(addr: u64, nent: u32) -> Result<Vec<kvm_cpuid_entry2>, Errno> {
    let bytes = user::read_vec(addr, nent as usize * CPUID_SIZE as usize)?;
    Ok(bytes
        .chunks_exact(CPUID_SIZE as usize)
        .map(user::from_bytes)
        .collect())
}

/// `tdx_unsupported_cpuid`: TSX (HLE, RTM) or WAITPKG in leaf 7 index 0.
fn unsupported_cpuid(e: &kvm_cpuid_entry2) -> bool {
    let leaf7 = e.function == 7 && e.index == 0;
    leaf7 && (e.ebx & ((1 << 4) | (1 << 11)) != 0 || e.ecx & (1 << 5) != 0)
}

/// `tdx_td_init`'s copy-in: 6.16 copies the fixed part (with `nent`), bounds `nent` and copies
/// that many entries; 6.19 `get_user`s `nent`, bounds it, and `memdup_user`s the whole struct
/// sized by it, then uses the copy's own `cpuid.nent`, which a second caller thread may have
/// changed in between. 6.19.0 takes that count as it is (more entries than copied: the
/// kernel reads past its buffer; fewer: the rest are ignored); the CVE-2026-72285 fix
/// (`TdxCaps::nent_recheck`) refuses a count that changed with -EINVAL. Single-threaded
/// callers cannot tell the shapes apart except by what faults first (6.19 bounds `nent`
/// before reading the rest); see [`set_init_vm_nent_window`] for the race.
fn copy_in_init_vm(caps: &TdxCaps, data: u64) -> Result<(uapi::kvm_tdx_init_vm, UserCpuid), Errno> {
    let (init, copied) = if caps.rework_6_19 {
        let nr_user_entries: u32 = user::read(data.wrapping_add(INIT_VM_NENT_OFFSET))?;
        if nr_user_entries > KVM_MAX_CPUID_ENTRIES {
            return err(libc::E2BIG);
        }
        nent_window(data);
        // memdup_user(struct_size(nr_user_entries)): one copy, -EFAULT if any byte faults.
        let init: uapi::kvm_tdx_init_vm = user::read(data)?;
        let copied = read_entries(data.wrapping_add(INIT_VM_SIZE), nr_user_entries)?;
        if init.reserved.iter().any(|&r| r != 0) {
            return err(libc::EINVAL);
        }
        if caps.nent_recheck && init.cpuid.nent != nr_user_entries {
            return err(libc::EINVAL);
        }
        (init, copied)
    } else {
        let init: uapi::kvm_tdx_init_vm = user::read(data)?;
        if init.cpuid.nent > KVM_MAX_CPUID_ENTRIES {
            return err(libc::E2BIG);
        }
        nent_window(data);
        let copied = read_entries(data.wrapping_add(INIT_VM_SIZE), init.cpuid.nent)?;
        if init.reserved.iter().any(|&r| r != 0) {
            return err(libc::EINVAL);
        }
        (init, copied)
    };
    if init.cpuid.padding != 0 {
        return err(libc::EINVAL);
    }
    let nent = init.cpuid.nent as usize;
    Ok((init, UserCpuid { copied, nent }))
}

/// `setup_tdparams_cpuids`: for each configurable leaf, in the module's order, the user entry
/// `kvm_find_cpuid_entry2` finds for it (TSX/WAITPKG refused), its values going into that
/// `cpuid_values` slot (GPAW bits of 0x80000008 cleared). Every user entry must have landed in
/// a slot exactly once: `copy_cnt != nent` is -EINVAL, so duplicates and leaves without a
/// slot fail. The slots' values are then the module's to check (see [`init_vm`]).
fn setup_tdparams_cpuids(
    caps: &TdxCaps,
    cpuid: &UserCpuid,
) -> Result<Vec<(&'static CpuidConfig, kvm_cpuid_entry2)>, Errno> {
    let mut slots = Vec::new();
    for c in caps.cpuid {
        let Some(mut e) = cpuid.find(c.leaf, c.subleaf) else {
            continue;
        };
        if unsupported_cpuid(&e) {
            return err(libc::EINVAL);
        }
        if c.leaf == 0x8000_0008 {
            e.eax &= !0x00FF_0000;
        }
        slots.push((c, e));
    }
    if slots.len() != cpuid.nent {
        return err(libc::EINVAL);
    }
    Ok(slots)
}

fn init_vm(
    vm: &mut Vm,
    caps: &TdxCaps,
    cmd: &mut Envelope,
    fault: &mut Option<Effect>,
) -> Result<(), Errno> {
    if vm.tdx.td != Td::Uninitialized || cmd.flags() != 0 {
        return err(libc::EINVAL);
    }
    let (init, cpuid) = copy_in_init_vm(caps, cmd.data())?;
    // setup_tdparams.
    if vm.created_vcpus() > 0 {
        return err(libc::EBUSY);
    }
    if init.attributes & !caps.supported_attrs != 0 || init.xfam & !caps.supported_xfam != 0 {
        return err(libc::EINVAL);
    }
    // setup_tdparams_eptp_controls: GPAW from the entry found for (0x80000008, 0).
    let Some(ext8) = cpuid.find(0x8000_0008, 0) else {
        return err(libc::EINVAL);
    };
    let gpaw = (ext8.eax >> 16) & 0xff;
    if !(gpaw == 48 || gpaw == 52) || (gpaw == 52 && !caps.five_level_ept) {
        return err(libc::EINVAL);
    }
    let slots = setup_tdparams_cpuids(caps, &cpuid)?;
    match fault.take() {
        // TDH.MNG.KEY.CONFIG / TDH.MNG.CREATE out of entropy: retry, nothing in hw_error.
        Some(Effect::Again) => return err(libc::EAGAIN),
        Some(Effect::FwStatus(s)) => return mng_init_failed(vm, cmd, s),
        other => {
            *fault = other;
            take_generic(fault)?;
        }
    }
    // TDH.MNG.INIT: a slot value outside its configurable bits is an invalid operand.
    let outside = slots.iter().any(|(c, e)| {
        e.eax & !c.eax != 0 || e.ebx & !c.ebx != 0 || e.ecx & !c.ecx != 0 || e.edx & !c.edx != 0
    });
    if outside {
        return mng_init_failed(
            vm,
            cmd,
            status::OPERAND_INVALID | status::OPERAND_ID_CPUID_CONFIG,
        );
    }
    let td = &mut vm.tdx;
    td.td = Td::Initialized;
    td.attributes = init.attributes;
    td.xfam = init.xfam;
    td.gpaw = gpaw;
    td.cpuid = cpuid.used();
    td.mrtd = Mrtd::default();
    Ok(())
}

/// TDH.MNG.INIT failed with `status`: an invalid operand is reported (-EINVAL with the
/// status in `hw_error`); anything else is -EIO through KVM_BUG_ON in `tdx_td_init`, which
/// makes the VM dead (every later ioctl -EIO).
fn mng_init_failed(vm: &mut Vm, cmd: &mut Envelope, status: u64) -> Result<(), Errno> {
    if status & status::MASK == status::OPERAND_INVALID {
        cmd.set_hw_error(status);
        err(libc::EINVAL)
    } else {
        vm.dead = true;
        err(libc::EIO)
    }
}

fn finalize_vm(vm: &mut Vm, cmd: &mut Envelope, fault: &mut Option<Effect>) -> Result<(), Errno> {
    if vm.tdx.td != Td::Initialized {
        return err(libc::EINVAL);
    }
    // 6.16 `tdx_td_finalize`: pages mapped but never added (nr_premapped) block it.
    if caps(vm)?.premap_count && !vm.tdx.premapped.is_empty() {
        return err(libc::EINVAL);
    }
    let seamcall = match fault.take() {
        Some(Effect::Busy) => status::OPERAND_BUSY,
        Some(Effect::FwStatus(s)) => s,
        other => {
            *fault = other;
            take_generic(fault)?;
            0
        }
    };
    cmd.set_hw_error(seamcall);
    if seamcall & status::MASK == status::OPERAND_BUSY {
        return err(libc::EBUSY);
    }
    if seamcall != 0 {
        // KVM_BUG_ON: the VM is dead from now on.
        vm.dead = true;
        return err(libc::EIO);
    }
    vm.tdx.td = Td::Runnable;
    Ok(())
}

/// KVM_MEMORY_ENCRYPT_OP on a TD's vCPU descriptor: 6.16's `tdx_vcpu_ioctl`, or 6.19's
/// unlocked path (INIT_VCPU, INIT_MEM_REGION) falling back to the locked one (GET_CPUID).
pub fn vcpu_op(vm: &mut Vm, index: usize, arg: u64) -> Result<i32, Errno> {
    let caps = caps(vm)?;
    let gate = |vm: &Vm| {
        if vm.tdx.td == Td::Initialized {
            Ok(())
        } else {
            err(libc::EINVAL)
        }
    };
    let cmd = if caps.rework_6_19 {
        let cmd = get_cmd(arg)?;
        let mut fault = vm.faults.take(cmd.id());
        state_guard(cmd.id(), &mut fault)?;
        gate(vm)?;
        return vcpu_command(vm, index, &cmd, &mut fault).map(|()| 0);
    } else {
        gate(vm)?;
        get_cmd(arg)?
    };
    let mut fault = vm.faults.take(cmd.id());
    vcpu_command(vm, index, &cmd, &mut fault).map(|()| 0)
}

fn vcpu_command(
    vm: &mut Vm,
    index: usize,
    cmd: &Envelope,
    fault: &mut Option<Effect>,
) -> Result<(), Errno> {
    match cmd.id() {
        id::INIT_VCPU => init_vcpu(vm, index, cmd, fault),
        id::INIT_MEM_REGION => init_mem_region(vm, index, cmd, fault),
        id::GET_CPUID => get_cpuid(vm, cmd, fault),
        _ => err(libc::EINVAL),
    }
}

fn init_vcpu(
    vm: &mut Vm,
    index: usize,
    cmd: &Envelope,
    fault: &mut Option<Effect>,
) -> Result<(), Errno> {
    if cmd.flags() != 0 || vm.vcpus[index].tdx_initialized {
        return err(libc::EINVAL);
    }
    if let Some(Effect::FwStatus(_)) = fault {
        // TDH.VP.CREATE / ADDCX / INIT failed: KVM_BUG_ON.
        *fault = None;
        vm.dead = true;
        return err(libc::EIO);
    }
    take_generic(fault)?;
    vm.vcpus[index].tdx_initialized = true;
    Ok(())
}

fn init_mem_region(
    vm: &mut Vm,
    index: usize,
    cmd: &Envelope,
    fault: &mut Option<Effect>,
) -> Result<(), Errno> {
    if !vm.vcpus[index].tdx_initialized || vm.tdx.td == Td::Runnable {
        return err(libc::EINVAL);
    }
    if cmd.flags() & !KVM_TDX_MEASURE_MEMORY_REGION != 0 {
        return err(libc::EINVAL);
    }
    let data = cmd.data();
    let mut region: uapi::kvm_tdx_init_mem_region = user::read(data)?;
    let shared_bit = 1u64 << (vm.tdx.gpaw - 1);
    let end = region
        .nr_pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| region.gpa.checked_add(len));
    let private = |gpa: u64| gpa & shared_bit == 0;
    // 6.16 and 6.19 do not refuse `source_addr` 0 here: the first page's GUP of it is
    // -EFAULT below (the up-front -EINVAL for a NULL source is a later kernel's).
    let bad = region.source_addr % PAGE_SIZE != 0
        || region.gpa % PAGE_SIZE != 0
        || region.nr_pages == 0
        || end.is_none_or(|e| e <= region.gpa || !private(e - 1))
        || !private(region.gpa);
    if bad {
        return err(libc::EINVAL);
    }
    let stop_after = match fault.take() {
        Some(Effect::Progress(n)) => n,
        Some(Effect::Signal) => 0,
        other => {
            *fault = other;
            u64::MAX
        }
    };
    let measure = cmd.flags() & KVM_TDX_MEASURE_MEMORY_REGION != 0;
    let mut source = user::PageReader::new();
    let mut stream = measure.then(TdxPageStream::default);
    let mut done = 0u64;
    let mut r = Ok(());
    while region.nr_pages > 0 {
        if done == stop_after {
            r = err(libc::EINTR);
            break;
        }
        // Read-ahead never goes past the pages this command can still reach.
        let reachable = region.nr_pages.min(stop_after - done);
        let page = (&mut source, region.source_addr, reachable);
        if let Err(e) = add_page(vm, region.gpa, page, stream.as_mut(), fault) {
            r = Err(e);
            break;
        }
        region.source_addr += PAGE_SIZE;
        region.gpa += PAGE_SIZE;
        region.nr_pages -= 1;
        done += 1;
    }
    // Once the loop has started the struct always goes back, showing the progress.
    user::write(data, &region)?;
    r
}

/// One page of `kvm_gmem_populate` + `tdx_gmem_post_populate`: TDH.MEM.PAGE.ADD and, when
/// measuring (`measure`: the command's reused stream buffer), TDH.MR.EXTEND per 256-byte
/// chunk. `source`: the reader, this page's source address and how many pages the command
/// can still reach from it.
fn add_page(
    vm: &mut Vm,
    gpa: u64,
    source: (&mut user::PageReader, u64, u64),
    measure: Option<&mut TdxPageStream>,
    fault: &mut Option<Effect>,
) -> Result<(), Errno> {
    let gfn = gpa >> PAGE_SHIFT;
    vm.gmem_pages_from(gfn, 1)?;
    vm.gmem_page_check(gfn)?;
    let (reader, src, reachable) = source;
    let page = reader.page(src, reachable)?;
    let seamcall = match fault.take() {
        Some(Effect::Busy) => status::OPERAND_BUSY,
        Some(Effect::FwStatus(s)) => s,
        other => {
            *fault = other;
            0
        }
    };
    // 6.16 maps the page (kvm_tdp_map_page, counted in nr_premapped) before PAGE.ADD and
    // uncounts it only when the add succeeds.
    let premap = caps(vm)?.premap_count;
    if seamcall != 0 && premap {
        vm.tdx.premapped.insert(gfn);
    }
    if seamcall & status::MASK == status::OPERAND_BUSY {
        return err(libc::EBUSY);
    }
    if seamcall != 0 {
        return err(libc::EIO);
    }
    vm.tdx.premapped.remove(&gfn);
    match measure {
        Some(scratch) => vm.tdx.mrtd.page_add_measured(gpa, page, scratch),
        None => vm.tdx.mrtd.page_add(gpa),
    }
    vm.populated.insert(gfn);
    Ok(())
}

/// The TD's CPUID as TDH.MNG.RD would read it: leaf 0, the configured basic leaves,
/// 0x80000000 and the configured extended leaves (GPAW filled in for 0x80000008).
fn td_cpuid(vm: &Vm) -> Vec<kvm_cpuid_entry2> {
    let caps = vm.profile.tdx.as_ref();
    let configs = caps.map_or(&[][..], |c| c.cpuid);
    let value = |c: &CpuidConfig| {
        // The value INIT_VM put in this config's slot.
        let mut e = find_cpuid_entry2(&vm.tdx.cpuid, c.leaf, c.subleaf).unwrap_or_default();
        e.function = c.leaf;
        e.index = c.subleaf;
        e.flags = c.flags;
        if c.leaf == 0x8000_0008 {
            e.eax = (e.eax & !0x00FF_0000) | (vm.tdx.gpaw << 16);
        }
        e
    };
    let leaf = |function: u32, eax: u32| kvm_cpuid_entry2 {
        function,
        eax,
        ..Default::default()
    };
    let basic: Vec<&CpuidConfig> = configs.iter().filter(|c| c.leaf < 0x8000_0000).collect();
    let ext: Vec<&CpuidConfig> = configs.iter().filter(|c| c.leaf >= 0x8000_0000).collect();
    let mut out = vec![leaf(0, basic.iter().map(|c| c.leaf).max().unwrap_or(0))];
    out.extend(basic.iter().map(|c| value(c)));
    out.push(leaf(
        0x8000_0000,
        ext.iter().map(|c| c.leaf).max().unwrap_or(0x8000_0000),
    ));
    out.extend(ext.iter().map(|c| value(c)));
    out
}

fn get_cpuid(vm: &mut Vm, cmd: &Envelope, fault: &mut Option<Effect>) -> Result<(), Errno> {
    let data = cmd.data();
    let mut header: kvm_cpuid2_header = user::read(data)?;
    take_generic(fault)?;
    let entries = td_cpuid(vm);
    let too_small = (header.nent as usize) < entries.len();
    header.nent = entries.len() as u32;
    user::write(data, &header)?;
    if too_small {
        return err(libc::E2BIG);
    }
    let mut bytes = Vec::new();
    for e in &entries {
        bytes.extend_from_slice(user::as_bytes(e));
    }
    user::write_bytes(data + 8, &bytes)
}
