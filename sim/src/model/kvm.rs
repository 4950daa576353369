//! The generic KVM ioctls on simulated descriptors: `/dev/kvm` (system), VM and vCPU
//! descriptors, in the order and with the errors of `kvm_dev_ioctl`, `kvm_vm_ioctl` /
//! `kvm_arch_vm_ioctl` and `kvm_vcpu_ioctl` / `kvm_arch_vcpu_ioctl`. The memory-encryption
//! sub-commands go to [`super::sev`] and [`super::tdx`].

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use super::ioctl_numbers::*;
use super::profile::{Backend, Profile};
use super::registry::{self, Object, VmRef};
use super::user;
use super::vm::{PAGE_SHIFT, PAGE_SIZE, Slot, Vcpu, Vm};
use super::{sev, tdx};
use memenc::Errno;
use memenc::Vendor;
use memenc::uapi::*;

fn err<T>(e: i32) -> Result<T, Errno> {
    Err(Errno(e))
}

const KVM_API_VERSION: i32 = 12;
/// x86 `KVM_MAX_VCPU_IDS` and the VM's `max_vcpus` in the model.
const MAX_VCPU_IDS: u64 = 4096;
const MAX_VCPUS: usize = 1024;
/// `KVM_MAX_IRQ_ROUTES`, the bound `MAX_NR_RESERVED_IOAPIC_PINS` is defined as.
const MAX_NR_RESERVED_IOAPIC_PINS: u64 = 4096;
const KVM_MEM_SLOTS_NUM: u32 = 32767;
/// `MAX_IO_MSRS`: KVM_SET_MSRS takes fewer entries than this.
const MAX_IO_MSRS: u32 = 256;
/// `KVM_MAX_CPUID_ENTRIES`.
const KVM_MAX_CPUID_ENTRIES: u32 = 256;
/// The end of the user address range (`access_ok`).
const TASK_SIZE: u64 = 0x7FFF_FFFF_F000;

/// `KVM_CHECK_EXTENSION` on `/dev/kvm` (`vm` None) or a VM descriptor.
pub fn check_extension(profile: &Profile, vm: Option<&Vm>, cap: u64) -> i32 {
    let private = vm.is_none_or(|v| v.has_private_mem());
    let value = match cap {
        KVM_CAP_SYS_ATTRIBUTES => 1,
        KVM_CAP_SPLIT_IRQCHIP => 1,
        KVM_CAP_MEMORY_ATTRIBUTES if profile.mem_attributes && private => {
            KVM_MEMORY_ATTRIBUTE_PRIVATE
        }
        // Before the guest_memfd flags (6.18) the answer was "!kvm || has private memory".
        KVM_CAP_GUEST_MEMFD if profile.gmem => u64::from(profile.gmem_flags != 0 || private),
        KVM_CAP_VM_TYPES => profile.vm_types_cap,
        KVM_CAP_GUEST_MEMFD_FLAGS => vm.map_or(profile.gmem_flags, gmem_flags),
        _ => 0,
    };
    value as i32
}

/// guest_memfd flags a VM accepts (`kvm_gmem_get_supported_flags`, 6.18+): MMAP always;
/// INIT_SHARED only where `kvm_arch_supports_gmem_init_shared` (x86: no private memory).
/// (Faulting non-shared memory through such an mmap is SIGBUS on a real kernel; the model
/// has no guest_memfd mmap.)
fn gmem_flags(vm: &Vm) -> u64 {
    if vm.has_private_mem() {
        vm.profile.gmem_flags & !GUEST_MEMFD_FLAG_INIT_SHARED
    } else {
        vm.profile.gmem_flags
    }
}

/// `/dev/kvm` system attributes: group 0 (XCR0) and the vendor's group (SEV: 1).
fn system_attr(profile: &Profile, group: u32, attr: u64) -> Result<u64, Errno> {
    if group == KVM_X86_GRP_SYSTEM {
        return match attr {
            KVM_X86_XCOMP_GUEST_SUPP => Ok(profile.xcr0),
            _ => err(libc::ENXIO),
        };
    }
    // Only SEV kernels with INIT2 (6.10+) have a vendor dev_get_attr.
    let Some(sev) = profile.sev().filter(|s| s.init2) else {
        return err(libc::ENXIO);
    };
    match (group, attr) {
        (KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES) => Ok(sev.vmsa_features),
        (KVM_X86_GRP_SEV, KVM_X86_SNP_POLICY_BITS) if sev.policy_bits_attr => {
            Ok(sev.supported_policy_bits())
        }
        (KVM_X86_GRP_SEV, KVM_X86_SEV_SNP_REQ_CERTS) if sev.req_certs => Ok(u64::from(sev.snp)),
        _ => err(libc::ENXIO),
    }
}

/// An ioctl on a simulated `/dev/kvm`.
pub fn system_ioctl(profile: &'static Profile, request: u64, arg: u64) -> Result<i32, Errno> {
    match request {
        KVM_GET_API_VERSION if arg != 0 => err(libc::EINVAL),
        KVM_GET_API_VERSION => Ok(KVM_API_VERSION),
        KVM_CREATE_VM => create_vm(profile, arg),
        KVM_CHECK_EXTENSION => Ok(check_extension(profile, None, arg)),
        KVM_GET_DEVICE_ATTR | KVM_HAS_DEVICE_ATTR => {
            let a: kvm_device_attr = user::read(arg)?;
            let value = system_attr(profile, a.group, a.attr)?;
            if request == KVM_GET_DEVICE_ATTR {
                user::write(a.addr, &value)?;
            }
            Ok(0)
        }
        // kvm_arch_dev_ioctl's default.
        _ => err(libc::EINVAL),
    }
}

/// KVM_CREATE_VM: a new VM descriptor.
pub fn create_vm(profile: &'static Profile, vm_type: u64) -> Result<RawFd, Errno> {
    registry::create(c"memenc-sim-vm", 0, Object::Vm(new_vm(profile, vm_type)?))
}

/// The model's half of KVM_CREATE_VM: -EINVAL for a type the profile's KVM does not create.
pub fn new_vm(profile: &'static Profile, vm_type: u64) -> Result<VmRef, Errno> {
    if vm_type >= 32 || profile.creatable_types & (1 << vm_type) == 0 {
        return err(libc::EINVAL);
    }
    Ok(Arc::new(Mutex::new(Vm::new(profile, vm_type as u32))))
}

/// KVM_CREATE_VCPU (`kvm_vm_ioctl_create_vcpu`).
pub fn create_vcpu(this: &VmRef, id: u64) -> Result<RawFd, Errno> {
    let index = add_vcpu(this, id)?;
    match registry::create(c"memenc-sim-vcpu", 0, Object::Vcpu(this.clone(), index)) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            registry::lock(this).vcpus.pop();
            Err(e)
        }
    }
}

/// The model's half of KVM_CREATE_VCPU: the checks, then the vCPU record (its index). Under
/// the supervisor the kernel makes the descriptor.
pub fn add_vcpu(this: &VmRef, id: u64) -> Result<usize, Errno> {
    if id >= MAX_VCPU_IDS {
        return err(libc::EINVAL);
    }
    let mut vm = registry::lock(this);
    if vm.created_vcpus() >= MAX_VCPUS {
        return err(libc::EINVAL);
    }
    if vm.vm_type == KVM_X86_TDX_VM {
        tdx::vcpu_create(&vm)?;
    }
    if vm.vcpus.iter().any(|v| u64::from(v.id) == id) {
        return err(libc::EEXIST);
    }
    vm.vcpus.push(Vcpu::new(id as u32));
    Ok(vm.vcpus.len() - 1)
}

/// An ioctl on a simulated VM descriptor.
///
/// # Safety
/// As [`crate::host::ioctl`]: `arg` is what `request` takes (the model only reads and writes
/// through the fault-safe user-memory functions).
pub fn vm_ioctl(this: &VmRef, request: u64, arg: u64) -> Result<i32, Errno> {
    if registry::lock(this).dead {
        return err(libc::EIO);
    }
    match request {
        KVM_CREATE_VCPU => create_vcpu(this, arg),
        KVM_CHECK_EXTENSION => {
            let vm = registry::lock(this);
            Ok(check_extension(vm.profile, Some(&vm), arg))
        }
        KVM_SET_USER_MEMORY_REGION => {
            // kvm_vm_ioctl: the v1 struct is read into a zeroed v2 one; only the v1 flags.
            let v1: kvm_userspace_memory_region = user::read(arg)?;
            if v1.flags & !KVM_SET_USER_MEMORY_REGION_V1_FLAGS != 0 {
                return err(libc::EINVAL);
            }
            let mem = kvm_userspace_memory_region2 {
                slot: v1.slot,
                flags: v1.flags,
                guest_phys_addr: v1.guest_phys_addr,
                memory_size: v1.memory_size,
                userspace_addr: v1.userspace_addr,
                ..Default::default()
            };
            set_memory_region(this, &mem).map(|()| 0)
        }
        KVM_SET_USER_MEMORY_REGION2 if registry::lock(this).profile.gmem => {
            let mem: kvm_userspace_memory_region2 = user::read(arg)?;
            set_memory_region(this, &mem).map(|()| 0)
        }
        KVM_CREATE_GUEST_MEMFD if registry::lock(this).profile.gmem => {
            let args: kvm_create_guest_memfd = user::read(arg)?;
            create_guest_memfd(this, &args)
        }
        KVM_SET_MEMORY_ATTRIBUTES if registry::lock(this).profile.mem_attributes => {
            let attrs: kvm_memory_attributes = user::read(arg)?;
            set_memory_attributes(&mut registry::lock(this), &attrs).map(|()| 0)
        }
        _ => arch_vm_ioctl(this, request, arg),
    }
}

/// `kvm_arch_vm_ioctl`.
fn arch_vm_ioctl(this: &VmRef, request: u64, arg: u64) -> Result<i32, Errno> {
    match request {
        KVM_MEMORY_ENCRYPT_OP => {
            let mut vm = registry::lock(this);
            match vm.profile.backend {
                Backend::None => err(libc::ENOTTY),
                Backend::Sev => sev::vm_op(&mut vm, arg),
                Backend::Tdx if vm.vm_type != KVM_X86_TDX_VM => err(libc::ENOTTY),
                Backend::Tdx => tdx::vm_op(&mut vm, arg),
            }
        }
        KVM_MEMORY_ENCRYPT_REG_REGION | KVM_MEMORY_ENCRYPT_UNREG_REGION => {
            let region: kvm_enc_region = user::read(arg)?;
            let mut vm = registry::lock(this);
            if vm.profile.backend != Backend::Sev {
                return err(libc::ENOTTY);
            }
            let register = request == KVM_MEMORY_ENCRYPT_REG_REGION;
            sev::region(&mut vm, &region, register).map(|()| 0)
        }
        KVM_ENABLE_CAP => {
            let cap: kvm_enable_cap = user::read(arg)?;
            enable_cap(&mut registry::lock(this), &cap).map(|()| 0)
        }
        KVM_SET_TSC_KHZ => {
            let mut vm = registry::lock(this);
            let khz = match arg as u32 {
                0 => super::vm::HOST_TSC_KHZ,
                khz => khz,
            };
            if vm.created_vcpus() > 0 {
                return err(libc::EINVAL);
            }
            vm.tsc_khz = khz;
            Ok(0)
        }
        _ => err(libc::ENOTTY),
    }
}

/// `kvm_vm_ioctl_enable_cap`: only KVM_CAP_SPLIT_IRQCHIP is modelled.
fn enable_cap(vm: &mut Vm, cap: &kvm_enable_cap) -> Result<(), Errno> {
    if cap.flags != 0 {
        return err(libc::EINVAL);
    }
    match u64::from(cap.cap) {
        KVM_CAP_SPLIT_IRQCHIP => {
            if cap.args[0] > MAX_NR_RESERVED_IOAPIC_PINS {
                return err(libc::EINVAL);
            }
            if vm.split_irqchip || vm.created_vcpus() > 0 {
                return err(libc::EEXIST);
            }
            vm.split_irqchip = true;
            Ok(())
        }
        _ => err(libc::EINVAL),
    }
}

/// KVM_CREATE_GUEST_MEMFD (`kvm_gmem_create`).
fn create_guest_memfd(this: &VmRef, args: &kvm_create_guest_memfd) -> Result<i32, Errno> {
    check_guest_memfd(&registry::lock(this), args)?;
    let id = registry::lock(this).next_gmem;
    let fd = registry::create(
        c"memenc-sim-guest-memfd",
        args.size,
        Object::Gmem(this.clone(), id),
    )?;
    add_gmem(&mut registry::lock(this), args);
    Ok(fd)
}

/// `kvm_gmem_create`'s checks.
pub fn check_guest_memfd(vm: &Vm, args: &kvm_create_guest_memfd) -> Result<(), Errno> {
    if args.flags & !gmem_flags(vm) != 0 {
        return err(libc::EINVAL);
    }
    if (args.size as i64) <= 0 || args.size % PAGE_SIZE != 0 {
        return err(libc::EINVAL);
    }
    Ok(())
}

/// The model's record of a new guest_memfd (its id); the descriptor is the caller's to make.
pub fn add_gmem(vm: &mut Vm, args: &kvm_create_guest_memfd) -> u64 {
    let id = vm.next_gmem;
    vm.next_gmem += 1;
    vm.gmems.insert(
        id,
        super::vm::Gmem {
            size: args.size,
            flags: args.flags,
            bindings: Vec::new(),
        },
    );
    id
}

/// KVM_SET_USER_MEMORY_REGION2 (`__kvm_set_memory_region`).
fn set_memory_region(this: &VmRef, mem: &kvm_userspace_memory_region2) -> Result<(), Errno> {
    let mut guard = registry::lock(this);
    let vm = &mut *guard;
    let gmem_flag = mem.flags & KVM_MEM_GUEST_MEMFD != 0;
    // check_memory_region_flags
    let mut valid = KVM_MEM_LOG_DIRTY_PAGES;
    if vm.has_private_mem() || vm.profile.gmem_flags != 0 {
        valid |= KVM_MEM_GUEST_MEMFD;
    }
    if gmem_flag {
        valid &= !KVM_MEM_LOG_DIRTY_PAGES;
    } else {
        valid |= KVM_MEM_READONLY;
    }
    if mem.flags & !valid != 0 {
        return err(libc::EINVAL);
    }
    let as_id = mem.slot >> 16;
    let id = mem.slot & 0xffff;
    let size = mem.memory_size;
    if size % PAGE_SIZE != 0 || mem.guest_phys_addr % PAGE_SIZE != 0 {
        return err(libc::EINVAL);
    }
    let uaddr = mem.userspace_addr;
    if uaddr % PAGE_SIZE != 0 || uaddr.checked_add(size).is_none_or(|end| end > TASK_SIZE) {
        return err(libc::EINVAL);
    }
    if gmem_flag
        && (mem.guest_memfd_offset % PAGE_SIZE != 0
            || mem.guest_memfd_offset.checked_add(size).is_none())
    {
        return err(libc::EINVAL);
    }
    let address_spaces = if vm.profile.has_protected_state(vm.vm_type) {
        1
    } else {
        2
    };
    if as_id >= address_spaces || id >= KVM_MEM_SLOTS_NUM {
        return err(libc::EINVAL);
    }
    if mem.guest_phys_addr.checked_add(size).is_none() {
        return err(libc::EINVAL);
    }
    let old = vm.slots.get(&mem.slot).copied();
    if size == 0 {
        let Some(old) = old else {
            return err(libc::EINVAL);
        };
        unbind(vm, &old);
        vm.slots.remove(&mem.slot);
        return Ok(());
    }
    let base_gfn = mem.guest_phys_addr >> PAGE_SHIFT;
    let npages = size >> PAGE_SHIFT;
    let create_or_move = match old {
        None => true,
        Some(old) => {
            if gmem_flag {
                return err(libc::EINVAL);
            }
            if uaddr != old.userspace_addr
                || npages != old.npages
                || (mem.flags ^ old.flags) & KVM_MEM_READONLY != 0
            {
                return err(libc::EINVAL);
            }
            if base_gfn == old.base_gfn {
                if let Some(s) = vm.slots.get_mut(&mem.slot) {
                    s.flags = mem.flags;
                }
                return Ok(());
            }
            true
        }
    };
    if create_or_move
        && vm.slots.iter().any(|(&sid, s)| {
            sid != mem.slot
                && sid >> 16 == as_id
                && base_gfn < s.base_gfn + s.npages
                && s.base_gfn < base_gfn + npages
        })
    {
        return err(libc::EEXIST);
    }
    let mut slot = Slot {
        flags: mem.flags,
        base_gfn,
        npages,
        userspace_addr: uaddr,
        gmem: None,
    };
    if gmem_flag {
        slot.gmem = Some(bind(
            this,
            vm,
            mem.guest_memfd,
            mem.guest_memfd_offset,
            size,
        )?);
    }
    vm.slots.insert(mem.slot, slot);
    Ok(())
}

/// `kvm_gmem_bind`: the guest_memfd must be this VM's, the range inside it and unbound.
fn bind(this: &VmRef, vm: &mut Vm, fd: u32, offset: u64, size: u64) -> Result<(u64, u64), Errno> {
    if i32::try_from(fd).is_err() || registry::lookup(fd as i32).is_none() {
        let open = i32::try_from(fd).is_ok_and(registry::is_open);
        return err(if open { libc::EINVAL } else { libc::EBADF });
    }
    let Some((owner, id)) = registry::gmem(fd) else {
        return err(libc::EINVAL);
    };
    if !Arc::ptr_eq(&owner, this) {
        return err(libc::EINVAL);
    }
    let gmem = vm.gmems.get_mut(&id).ok_or(Errno(libc::EINVAL))?;
    let end = offset + size;
    if end > gmem.size || gmem.bindings.iter().any(|&(s, e)| offset < e && s < end) {
        return err(libc::EINVAL);
    }
    gmem.bindings.push((offset, end));
    Ok((id, offset))
}

fn unbind(vm: &mut Vm, slot: &Slot) {
    if let Some((id, offset)) = slot.gmem {
        if let Some(g) = vm.gmems.get_mut(&id) {
            g.bindings.retain(|&(s, _)| s != offset);
        }
    }
}

/// KVM_SET_MEMORY_ATTRIBUTES (`kvm_vm_ioctl_set_mem_attributes`).
fn set_memory_attributes(vm: &mut Vm, attrs: &kvm_memory_attributes) -> Result<(), Errno> {
    let supported = if vm.has_private_mem() {
        KVM_MEMORY_ATTRIBUTE_PRIVATE
    } else {
        0
    };
    if attrs.flags != 0 || attrs.attributes & !supported != 0 {
        return err(libc::EINVAL);
    }
    let Some(end) = attrs
        .address
        .checked_add(attrs.size)
        .filter(|_| attrs.size != 0)
    else {
        return err(libc::EINVAL);
    };
    if attrs.address % PAGE_SIZE != 0 || attrs.size % PAGE_SIZE != 0 {
        return err(libc::EINVAL);
    }
    let private = attrs.attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0;
    vm.private
        .set(attrs.address >> PAGE_SHIFT, end >> PAGE_SHIFT, private);
    Ok(())
}

/// An ioctl on a simulated vCPU descriptor.
pub fn vcpu_ioctl(this: &VmRef, index: usize, request: u64, arg: u64) -> Result<i32, Errno> {
    let mut vm = registry::lock(this);
    if vm.dead {
        return err(libc::EIO);
    }
    match request {
        KVM_MEMORY_ENCRYPT_OP => match vm.profile.backend {
            Backend::Tdx if vm.vm_type == KVM_X86_TDX_VM => tdx::vcpu_op(&mut vm, index, arg),
            Backend::Tdx => err(libc::EINVAL),
            // A host without a backend answers as its CPU's KVM module does.
            Backend::None if memenc::cpu_vendor() == Vendor::Tdx => err(libc::EINVAL),
            Backend::None | Backend::Sev => err(libc::ENOTTY),
        },
        KVM_SET_REGS | KVM_SET_SREGS | KVM_SET_SREGS2 | KVM_SET_FPU | KVM_SET_XSAVE
        | KVM_SET_XCRS | KVM_SET_DEBUGREGS | KVM_SET_MSRS | KVM_SET_CPUID2
        | KVM_SET_GUEST_DEBUG => {
            let tdx = vm.vm_type == KVM_X86_TDX_VM;
            let vcpu = vm.vcpus.get_mut(index).ok_or(Errno(libc::EBADF))?;
            set_vcpu_state(vcpu, tdx, request, arg)
        }
        // kvm_arch_vcpu_ioctl's default.
        _ => err(libc::EINVAL),
    }
}

/// The vCPU state setters, as `kvm_arch_vcpu_ioctl` takes them into what
/// `sev_es_sync_vmsa()` later reads ([`super::vmsa`]). Once the state is protected (SEV-ES/SNP
/// after its VMSA was encrypted; a TD vCPU from the start) the register setters are -EINVAL
/// (`kvm->arch.has_protected_state && vcpu->arch.guest_state_protected`).
fn set_vcpu_state(vcpu: &mut Vcpu, tdx: bool, request: u64, arg: u64) -> Result<i32, Errno> {
    use kvm_bindings::{kvm_debugregs, kvm_fpu, kvm_guest_debug, kvm_regs, kvm_sregs};
    use kvm_bindings::{kvm_msr_entry, kvm_sregs2, kvm_xcrs};
    let protected = vcpu.protected || tdx;
    let state = &mut vcpu.state;
    let errno = |e: i32| Errno(e.abs());
    match request {
        KVM_SET_CPUID2 => {
            let hdr: kvm_cpuid2_header = user::read(arg)?;
            if hdr.nent > KVM_MAX_CPUID_ENTRIES {
                return err(libc::E2BIG);
            }
            let entries =
                user::read_vec(arg + 8, hdr.nent as usize * size_of::<kvm_cpuid_entry2>())?;
            let leaf1 = entries
                .chunks_exact(size_of::<kvm_cpuid_entry2>())
                .map(user::from_bytes::<kvm_cpuid_entry2>)
                .find(|e| e.function == 1)
                .map(|e| e.eax);
            state.set_cpuid(leaf1);
            Ok(0)
        }
        KVM_SET_MSRS => {
            let hdr: kvm_cpuid2_header = user::read(arg)?; // {nmsrs, pad}: the same 8 bytes
            if hdr.nent >= MAX_IO_MSRS {
                return err(libc::E2BIG);
            }
            let bytes = user::read_vec(arg + 8, hdr.nent as usize * size_of::<kvm_msr_entry>())?;
            let entries: Vec<kvm_msr_entry> = bytes
                .chunks_exact(size_of::<kvm_msr_entry>())
                .map(user::from_bytes::<kvm_msr_entry>)
                .collect();
            if protected {
                // TDX and protected SEV-ES vCPUs: KVM still takes the MSRs it owns; none of
                // them is measured any more.
                return Ok(entries.len() as i32);
            }
            Ok(state.set_msrs(&entries) as i32)
        }
        KVM_SET_GUEST_DEBUG => {
            let d: kvm_guest_debug = user::read(arg)?;
            state.set_guest_debug_control(d.control);
            Ok(0)
        }
        _ if protected => err(libc::EINVAL),
        KVM_SET_REGS => {
            state.set_regs(&user::read::<kvm_regs>(arg)?);
            Ok(0)
        }
        KVM_SET_SREGS => state
            .set_sregs(&user::read::<kvm_sregs>(arg)?)
            .map(|()| 0)
            .map_err(errno),
        KVM_SET_SREGS2 => state
            .set_sregs2(&user::read::<kvm_sregs2>(arg)?)
            .map(|()| 0)
            .map_err(errno),
        KVM_SET_FPU => {
            state.set_fpu(&user::read::<kvm_fpu>(arg)?);
            Ok(0)
        }
        KVM_SET_XSAVE => state
            .set_xsave(&user::read_vec(arg, 4096)?)
            .map(|()| 0)
            .map_err(errno),
        KVM_SET_XCRS => state
            .set_xcrs(&user::read::<kvm_xcrs>(arg)?)
            .map(|()| 0)
            .map_err(errno),
        KVM_SET_DEBUGREGS => state
            .set_debugregs(&user::read::<kvm_debugregs>(arg)?)
            .map(|()| 0)
            .map_err(errno),
        _ => err(libc::EINVAL),
    }
}
