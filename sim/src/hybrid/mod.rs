//! The hybrid host `memenc-sim run` gives a program: the machine's real `/dev/kvm` does what it
//! can (VM and vCPU creation, memslots, guest_memfd, register state, KVM_RUN of plain VMs),
//! and the model answers what the profile's kernel and firmware would and this machine's
//! cannot (VM types and capabilities, `/dev/sev`, every KVM_MEMORY_ENCRYPT_OP, encrypted
//! regions, memory attributes, the measured vCPU state).
//!
//! How the two limits of user notification are met:
//! - The supervisor cannot issue VM or vCPU ioctls on the program's descriptors (KVM ties them
//!   to the creating mm), so it never does: the real kernel keeps doing the program's own
//!   calls, and the model keeps a shadow of what the measurement needs, copied out of the
//!   program's memory as each call passes (memslots, guest_memfd, every register setter).
//! - It cannot rewrite a register argument, so KVM_CREATE_VM (and KVM_CREATE_VCPU and
//!   KVM_CREATE_GUEST_MEMFD, whose new descriptor it must learn) stop in the tracer instead:
//!   a confidential VM type is created as a real default VM, and the new descriptor is taken
//!   from the call's result.
//!
//! A descriptor of the program is matched to a model object by `kcmp` against the
//! supervisor's own duplicate of each file it learnt, so a dup() in the program is the same
//! object, and a reused number is not.
//!
//! Hot calls stay unnotified where no simulation needs them: KVM_RUN and the vCPU register
//! setters matter only on vCPUs of confidential VMs, but BPF sees numbers, not objects. So
//! every vCPU of a VM the model treats as confidential (a confidential type, or a default VM
//! after KVM_SEV_INIT / KVM_SEV_ES_INIT, which the kernel and the model refuse once vCPUs
//! exist) is moved, at its KVM_CREATE_VCPU exit stop, to a descriptor number `>= fd_base`
//! ([`crate::supervisor::fd_base`]: half the soft RLIMIT_NOFILE, at most 4096, 0 if tiny),
//! and the filter notifies those requests only on descriptors `>= fd_base`. A plain VM's
//! vCPUs keep their low numbers and run at the price of an unmatched call. If no number
//! `>= fd_base` is free (the program lowered its limit), that KVM_CREATE_VCPU fails with
//! EMFILE rather than leave a confidential vCPU the filter cannot see. A program that dup2()s
//! a confidential vCPU to a low number would run it unseen (no VMM does).

use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use memenc::Errno;
use memenc::uapi::*;

use crate::model::ioctl_numbers::*;
use crate::model::profile::{Backend, Profile};
use crate::model::registry::{self, Object, Resolve, VmRef};
use crate::model::report::{self, VmReport};
use crate::model::{kvm, psp, target, user};
use crate::supervisor::target as task;
use crate::supervisor::{self, Handler, Notification, Reply, Spec, Target, TraceAction, TraceExit};

/// Capabilities whose answer is the profile's, not this machine's: the rest of
/// KVM_CHECK_EXTENSION is the real kernel's.
const MODEL_CAPS: [u64; 4] = [
    KVM_CAP_VM_TYPES,
    KVM_CAP_MEMORY_ATTRIBUTES,
    KVM_CAP_GUEST_MEMFD,
    KVM_CAP_GUEST_MEMFD_FLAGS,
];

/// vCPU ioctls that change the state `sev_es_sync_vmsa()` measures.
const VCPU_SETTERS: [u64; 10] = [
    KVM_SET_REGS,
    KVM_SET_SREGS,
    KVM_SET_SREGS2,
    KVM_SET_FPU,
    KVM_SET_XSAVE,
    KVM_SET_XCRS,
    KVM_SET_MSRS,
    KVM_SET_DEBUGREGS,
    KVM_SET_GUEST_DEBUG,
    KVM_SET_CPUID2,
];

/// `KVM_EXIT_SYSTEM_EVENT` with `KVM_SYSTEM_EVENT_SHUTDOWN`: how a simulated confidential
/// guest ends at its first KVM_RUN (the model runs no guest code).
const KVM_EXIT_SYSTEM_EVENT: u32 = 24;
const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
/// Offsets in `struct kvm_run`: exit_reason, and the exit union (system_event.type, .ndata).
const RUN_EXIT_REASON: usize = 8;
const RUN_UNION: usize = 32;

struct VmEntry {
    model: VmRef,
    /// The supervisor's duplicate of the program's VM descriptor (identity, and keeps the
    /// file alive so its identity is never reused while the entry exists).
    file: OwnedFd,
}

struct VcpuEntry {
    vm: usize,
    index: usize,
    file: OwnedFd,
    /// The vCPU's `kvm_run` page, mapped through `file` once a KVM_RUN is answered (0: not
    /// yet). Atomic because it is set under the shared state the notification already holds.
    run: AtomicUsize,
}

struct GmemEntry {
    vm: usize,
    id: u64,
    file: OwnedFd,
}

/// A traced creation waiting for its result.
enum Pending {
    Vm(VmRef),
    Vcpu {
        vm: usize,
        index: usize,
    },
    Gmem {
        vm: usize,
        args: kvm_create_guest_memfd,
    },
}

#[derive(Default)]
struct State {
    vms: Vec<VmEntry>,
    vcpus: Vec<VcpuEntry>,
    gmems: Vec<GmemEntry>,
    /// The supervisor's copies of the `/dev/sev` descriptors it gave the program.
    sev_devices: Vec<OwnedFd>,
    /// Duplicates of the program's `/dev/kvm` descriptors seen so far: recognised by one
    /// `kcmp` instead of a `readlink` of /proc on every system ioctl.
    kvm_files: Vec<OwnedFd>,
    pending: HashMap<i32, Pending>,
}

/// The hybrid host of one profile.
pub struct Hybrid {
    profile: &'static Profile,
    state: Mutex<State>,
    vcpu_mmap_size: usize,
    /// The supervisor's own /dev/kvm, for system ioctls it answers from the real kernel's
    /// answer (KVM ties only VM and vCPU ioctls to their creator).
    kvm: Option<std::fs::File>,
    report: Option<std::path::PathBuf>,
    /// Descriptor numbers from here up are confidential vCPUs' (0: every descriptor is gated
    /// as one, the fallback for a tiny RLIMIT_NOFILE).
    fd_base: u32,
    /// Notifications seen: KVM_RUN, and the vCPU register setters (for the report).
    notified: [AtomicU64; 2],
}

/// What a program descriptor resolves to, for the model, during one call of thread `tid`.
struct View<'a> {
    tid: i32,
    state: &'a State,
    profile: &'static Profile,
}

impl Resolve for View<'_> {
    fn lookup(&self, fd: RawFd) -> Option<Object> {
        let same = |f: &OwnedFd| same_file(self.tid, fd, f.as_fd());
        if self.state.sev_devices.iter().any(same) {
            return Some(Object::SevDevice(self.profile));
        }
        if let Some(v) = self.state.vms.iter().find(|v| same(&v.file)) {
            return Some(Object::Vm(v.model.clone()));
        }
        if let Some(c) = self.state.vcpus.iter().find(|c| same(&c.file)) {
            return Some(Object::Vcpu(self.state.vms[c.vm].model.clone(), c.index));
        }
        let g = self.state.gmems.iter().find(|g| same(&g.file))?;
        Some(Object::Gmem(self.state.vms[g.vm].model.clone(), g.id))
    }

    fn is_open(&self, fd: RawFd) -> bool {
        task::fd_path(self.tid, fd).is_ok()
    }
}

fn reply(result: Result<i32, Errno>) -> Reply {
    match result {
        Ok(v) => Reply::Value(i64::from(v)),
        Err(e) => Reply::Errno(e.0),
    }
}

/// The model's verdict on a call the real kernel then also performs.
fn then_continue(result: Result<i32, Errno>) -> Reply {
    match result {
        Ok(_) => Reply::Continue,
        Err(e) => Reply::Errno(e.0),
    }
}

impl Hybrid {
    /// The host of `profile`; `report`: where to write the JSON report at exit.
    pub fn new(profile: &'static Profile, report: Option<std::path::PathBuf>) -> Hybrid {
        Hybrid {
            profile,
            state: Mutex::default(),
            vcpu_mmap_size: vcpu_mmap_size().unwrap_or(4096),
            kvm: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .ok(),
            report,
            fd_base: supervisor::fd_base(),
            notified: Default::default(),
        }
    }

    /// Whether the model treats the VM of entry `vm` as confidential (its vCPUs are moved
    /// above `fd_base` and their KVM_RUN and setters notified).
    fn confidential_vm(state: &State, vm: usize) -> bool {
        let vm = registry::lock(&state.vms[vm].model);
        vm.vm_type != KVM_X86_DEFAULT_VM || vm.sev.active
    }

    /// What the program's filter sends here.
    pub fn spec(&self) -> Spec {
        let mut notify = vec![
            KVM_CHECK_EXTENSION,
            KVM_GET_DEVICE_ATTR,
            KVM_HAS_DEVICE_ATTR,
            KVM_MEMORY_ENCRYPT_OP,
            KVM_MEMORY_ENCRYPT_REG_REGION,
            KVM_MEMORY_ENCRYPT_UNREG_REGION,
            KVM_SET_MEMORY_ATTRIBUTES,
            KVM_SET_USER_MEMORY_REGION,
            KVM_SET_USER_MEMORY_REGION2,
            KVM_ENABLE_CAP,
            KVM_SET_TSC_KHZ,
        ];
        let confidential = self.profile.backend != Backend::None;
        let mut gated = Vec::new();
        if confidential {
            // Only where a confidential VM can exist (plain VMs on a `none` host pay nothing),
            // and only on confidential vCPUs' descriptors (moved to >= fd_base).
            gated.push(KVM_RUN as u32);
            gated.extend(VCPU_SETTERS.iter().map(|&r| r as u32));
        }
        let sev = self.profile.sev.is_some();
        if sev {
            notify.push(SEV_ISSUE_CMD);
        }
        if confidential {
            notify.push(KVM_GET_SUPPORTED_CPUID);
        }
        Spec {
            notify_open: sev,
            notify_ioctls: notify.iter().map(|&r| r as u32).collect(),
            trace_ioctls: [KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_CREATE_GUEST_MEMFD]
                .iter()
                .map(|&r| r as u32)
                .collect(),
            notify_ioctls_fd_at_least: (self.fd_base, gated),
            ..Spec::default()
        }
    }

    /// The descriptor base the filter gates KVM_RUN and the vCPU setters on.
    pub fn fd_base(&self) -> u32 {
        self.fd_base
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a model call for thread `tid`: its memory is user memory, its descriptors resolve
    /// through `state`.
    fn in_model<R>(&self, tid: i32, state: &State, f: impl FnOnce() -> R) -> R {
        let view = View {
            tid,
            state,
            profile: self.profile,
        };
        target::with_target(tid, || registry::with_descriptors(&view, f))
    }

    fn open(&self, n: &Notification, t: &Target<'_>) -> Reply {
        let (path, flags) = match n.nr {
            libc::SYS_open => (n.args[0], n.args[1]),
            libc::SYS_openat => (n.args[1], n.args[2]),
            libc::SYS_openat2 => {
                // struct open_how starts with its u64 flags.
                let mut how = [0u8; 8];
                if t.read(n.args[2], &mut how).is_err() {
                    return Reply::Continue;
                }
                (n.args[1], u64::from_le_bytes(how))
            }
            _ => return Reply::Continue,
        };
        match t.read_path(path) {
            Ok(p) if p.as_os_str() == "/dev/sev" => {}
            _ => return Reply::Continue,
        }
        // SAFETY: memfd_create reads the NUL-terminated name and returns a new descriptor.
        let fd = unsafe { libc::memfd_create(c"sim-sev".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Reply::Errno(libc::ENOMEM);
        }
        // SAFETY: memfd_create returned a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let Ok(ours) = fd.try_clone() else {
            return Reply::Errno(libc::ENOMEM);
        };
        self.lock().sev_devices.push(ours);
        Reply::AddFd {
            fd,
            cloexec: flags & libc::O_CLOEXEC as u64 != 0,
        }
    }

    fn ioctl(&self, n: &Notification, t: &Target<'_>) -> Reply {
        let fd = n.args[0] as RawFd;
        let request = n.args[1] & 0xffff_ffff;
        let arg = n.args[2];
        let mut state = self.lock();
        if state
            .kvm_files
            .iter()
            .any(|f| same_file(n.tid, fd, f.as_fd()))
        {
            return self.system_ioctl(n.tid, &state, request, arg);
        }
        let view = View {
            tid: n.tid,
            state: &state,
            profile: self.profile,
        };
        match view.lookup(fd) {
            Some(Object::SevDevice(p)) => {
                reply(self.in_model(n.tid, &state, || psp::ioctl(p, request, arg)))
            }
            Some(Object::Vm(vm)) => self.vm_ioctl(n.tid, &state, &vm, request, arg),
            Some(Object::Vcpu(vm, index)) => {
                self.vcpu_ioctl(n.tid, &state, fd, &vm, index, request, arg)
            }
            Some(_) => Reply::Continue,
            None => match t.fd_path(fd) {
                Ok(p) if p.as_os_str() == "/dev/kvm" => {
                    if let Ok(dup) = t.dup_fd(fd) {
                        state.kvm_files.push(dup);
                    }
                    self.system_ioctl(n.tid, &state, request, arg)
                }
                _ => Reply::Continue,
            },
        }
    }

    fn system_ioctl(&self, tid: i32, state: &State, request: u64, arg: u64) -> Reply {
        let model = || self.in_model(tid, state, || kvm::system_ioctl(self.profile, request, arg));
        match request {
            KVM_GET_SUPPORTED_CPUID => self.supported_cpuid(tid, arg),
            KVM_CHECK_EXTENSION if MODEL_CAPS.contains(&arg) => reply(model()),
            KVM_GET_DEVICE_ATTR | KVM_HAS_DEVICE_ATTR => {
                match self.in_model(tid, state, || user::read::<kvm_device_attr>(arg)) {
                    Ok(a) if a.group == KVM_X86_GRP_SEV => reply(model()),
                    _ => Reply::Continue,
                }
            }
            _ => Reply::Continue,
        }
    }

    /// KVM_GET_SUPPORTED_CPUID as the profile's kernel reports it: this machine's answer (the
    /// supervisor may issue system ioctls on its own /dev/kvm), with what that kernel adds:
    /// SEV profiles, leaf 0x8000001F's SEV, SEV-ES and SEV-SNP bits as `sev_set_cpu_caps()`
    /// sets them (EBX keeps this CPU's C-bit position; ECX and EDX are cleared by KVM); TDX
    /// profiles, leaf 0x80000008's GuestPhysBits (EAX[23:16]) = 48, the TDP-mappable width a
    /// 6.10+ kernel reports and the only one (with 52) KVM_TDX_INIT_VM accepts (QEMU's `-cpu
    /// host` copies it into the TD's CPUID).
    fn supported_cpuid(&self, tid: i32, arg: u64) -> Reply {
        const ENTRY: usize = size_of::<kvm_cpuid_entry2>();
        const GUEST_PHYS_BITS_48: u32 = 48 << 16;
        let Some(kvm) = self.kvm.as_ref() else {
            return Reply::Continue;
        };
        let Ok(hdr) = target::with_target(tid, || user::read::<kvm_cpuid2_header>(arg)) else {
            return Reply::Continue;
        };
        let nent = hdr.nent.min(4096) as usize;
        // kvm_cpuid2 header then entries, 8-byte aligned.
        let mut buf = vec![0u64; (8 + nent * ENTRY).div_ceil(8)];
        buf[0] = hdr.nent as u64;
        // SAFETY: `buf` holds a kvm_cpuid2 with room for `nent` entries, as the request needs.
        let r = unsafe {
            libc::ioctl(
                kvm.as_raw_fd(),
                KVM_GET_SUPPORTED_CPUID as libc::Ioctl,
                buf.as_mut_ptr(),
            )
        };
        if r < 0 {
            // The target's own call gets the same refusal (-E2BIG with nent updated).
            return Reply::Continue;
        }
        // SAFETY: the kernel filled `buf` as a kvm_cpuid2; viewing its bytes is plain data.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8)
        };
        let got = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let eax_of = |e: &[u8]| u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        for e in bytes[8..8 + got.min(nent) * ENTRY].chunks_exact_mut(ENTRY) {
            let function = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            match (function, self.profile.sev.as_ref()) {
                (0x8000_001f, Some(sev)) => {
                    let mut eax = eax_of(e) | 1 << 1;
                    if sev.es {
                        eax |= 1 << 3;
                    }
                    if sev.snp {
                        eax |= 1 << 4;
                    }
                    e[12..16].copy_from_slice(&eax.to_le_bytes());
                    e[20..28].fill(0);
                }
                (0x8000_0008, _) if self.profile.tdx.is_some() => {
                    let eax = eax_of(e) & !0x00ff_0000 | GUEST_PHYS_BITS_48;
                    e[12..16].copy_from_slice(&eax.to_le_bytes());
                }
                _ => {}
            }
        }
        let out = &bytes[..8 + got.min(nent) * ENTRY];
        match target::with_target(tid, || user::write_bytes(arg, out)) {
            Ok(()) => Reply::Value(0),
            Err(e) => Reply::Errno(e.0),
        }
    }

    fn vm_ioctl(&self, tid: i32, state: &State, vm: &VmRef, request: u64, arg: u64) -> Reply {
        let model = || self.in_model(tid, state, || kvm::vm_ioctl(vm, request, arg));
        match request {
            KVM_CHECK_EXTENSION if MODEL_CAPS.contains(&arg) => reply(model()),
            KVM_CHECK_EXTENSION | KVM_GET_DEVICE_ATTR | KVM_HAS_DEVICE_ATTR => Reply::Continue,
            KVM_MEMORY_ENCRYPT_OP
            | KVM_MEMORY_ENCRYPT_REG_REGION
            | KVM_MEMORY_ENCRYPT_UNREG_REGION
            | KVM_SET_MEMORY_ATTRIBUTES => reply(model()),
            // Memslots are real; the model keeps its copy (and refuses what the profile's
            // kernel would).
            KVM_SET_USER_MEMORY_REGION | KVM_SET_USER_MEMORY_REGION2 => then_continue(model()),
            KVM_ENABLE_CAP => {
                match self.in_model(tid, state, || user::read::<kvm_enable_cap>(arg)) {
                    Ok(c) if u64::from(c.cap) == KVM_CAP_SPLIT_IRQCHIP => then_continue(model()),
                    _ => Reply::Continue,
                }
            }
            // A TD's TSC frequency goes into its TD parameters, the model's business.
            KVM_SET_TSC_KHZ if registry::lock(vm).vm_type == KVM_X86_TDX_VM => reply(model()),
            _ => Reply::Continue,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn vcpu_ioctl(
        &self,
        tid: i32,
        state: &State,
        fd: RawFd,
        vm: &VmRef,
        index: usize,
        request: u64,
        arg: u64,
    ) -> Reply {
        let model = || self.in_model(tid, state, || kvm::vcpu_ioctl(vm, index, request, arg));
        let confidential = {
            let vm = registry::lock(vm);
            vm.vm_type != KVM_X86_DEFAULT_VM || vm.sev.active
        };
        match request {
            KVM_MEMORY_ENCRYPT_OP => reply(model()),
            r if VCPU_SETTERS.contains(&r) && confidential => then_continue(model()),
            KVM_RUN if confidential && report::launched(&registry::lock(vm)) => {
                self.end_guest(state, tid, fd)
            }
            _ => Reply::Continue,
        }
    }

    /// The first KVM_RUN of a launched simulated confidential guest: the model runs no guest
    /// code, so the guest ends the way a guest that powers off does (KVM_EXIT_SYSTEM_EVENT,
    /// SHUTDOWN), and the VMM shuts down by itself.
    fn end_guest(&self, state: &State, tid: i32, fd: RawFd) -> Reply {
        // `state` is the guard the notification holds (locking it again would deadlock).
        let Some(entry) = state
            .vcpus
            .iter()
            .find(|c| same_file(tid, fd, c.file.as_fd()))
        else {
            return Reply::Continue;
        };
        let base = match entry.run.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: a shared mapping of the vCPU's kvm_run area through our duplicate of
                // its file (the same pages the program mapped); the result is checked.
                let p = unsafe {
                    libc::mmap(
                        core::ptr::null_mut(),
                        self.vcpu_mmap_size,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        entry.file.as_raw_fd(),
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    return Reply::Errno(libc::EFAULT);
                }
                entry.run.store(p as usize, Ordering::Relaxed);
                p as usize
            }
            base => base,
        };
        let put = |offset: usize, value: u32| {
            // SAFETY: `base` maps at least one page (kvm_run), and every offset written is
            // inside its first 64 bytes; the program is inside KVM_RUN, not reading it.
            unsafe { ((base + offset) as *mut u32).write_volatile(value) };
        };
        put(RUN_EXIT_REASON, KVM_EXIT_SYSTEM_EVENT);
        put(RUN_UNION, KVM_SYSTEM_EVENT_SHUTDOWN);
        put(RUN_UNION + 4, 0);
        Reply::Value(0)
    }

    fn vm_index(state: &State, tid: i32, fd: RawFd) -> Option<usize> {
        state
            .vms
            .iter()
            .position(|v| same_file(tid, fd, v.file.as_fd()))
    }

    /// Every VM the program created, in creation order.
    pub fn reports(&self) -> Vec<VmReport> {
        self.lock()
            .vms
            .iter()
            .map(|v| report::report(&registry::lock(&v.model)))
            .collect()
    }

    fn write_report(&self) {
        let reports = self.reports();
        let name = self.profile.name.to_string_lossy();
        for (i, r) in reports.iter().enumerate() {
            let measure = match (&r.launch_digest, &r.mrtd) {
                (Some(d), _) => format!(", launch digest {}", hex(d)),
                (_, Some(m)) => format!(", MRTD {}", hex(m)),
                _ => String::new(),
            };
            eprintln!(
                "memenc-sim: vm {i}: {} (type {}), {}, {} vCPU{} [simulated, profile {name}]{measure}",
                r.technology,
                r.vm_type,
                r.state,
                r.vcpus,
                if r.vcpus == 1 { "" } else { "s" },
            );
        }
        let Some(path) = &self.report else {
            return;
        };
        let notified = [
            ("KVM_RUN", &self.notified[0]),
            ("vcpu_setters", &self.notified[1]),
        ]
        .map(|(k, v)| format!("\"{k}\": {}", v.load(Ordering::Relaxed)))
        .join(", ");
        let extra = format!(
            "  \"vcpu_fd_base\": {},\n  \"notified\": {{{notified}}},\n",
            self.fd_base
        );
        let text = json(&name, &reports, &extra);
        let written = std::fs::File::create(path).and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "memenc-sim: cannot write the report {}: {e}",
                path.display()
            );
        }
    }
}

impl Handler for Hybrid {
    fn notify(&self, n: &Notification, t: &Target<'_>) -> Reply {
        if n.nr == libc::SYS_ioctl {
            let request = n.args[1] & 0xffff_ffff;
            let hot = if request == KVM_RUN {
                Some(0)
            } else {
                VCPU_SETTERS.contains(&request).then_some(1)
            };
            if let Some(i) = hot {
                self.notified[i].fetch_add(1, Ordering::Relaxed);
            }
            self.ioctl(n, t)
        } else {
            self.open(n, t)
        }
    }

    fn trace_entry(&self, tid: i32, nr: i64, args: [u64; 6]) -> TraceAction {
        let run = TraceAction::Run {
            args: None,
            want_exit: false,
        };
        if nr != libc::SYS_ioctl {
            return run;
        }
        let (fd, request, arg) = (args[0] as RawFd, args[1] & 0xffff_ffff, args[2]);
        let mut state = self.lock();
        let pending = match request {
            KVM_CREATE_VM => {
                if !task::fd_path(tid, fd).is_ok_and(|p| p.as_os_str() == "/dev/kvm") {
                    return run;
                }
                match kvm::new_vm(self.profile, arg) {
                    Ok(vm) => Pending::Vm(vm),
                    Err(e) => return TraceAction::Fail(e.0),
                }
            }
            KVM_CREATE_VCPU => {
                let Some(vm) = Self::vm_index(&state, tid, fd) else {
                    return run;
                };
                match kvm::add_vcpu(&state.vms[vm].model, arg) {
                    Ok(index) => Pending::Vcpu { vm, index },
                    Err(e) => return TraceAction::Fail(e.0),
                }
            }
            KVM_CREATE_GUEST_MEMFD => {
                let Some(vm) = Self::vm_index(&state, tid, fd) else {
                    return run;
                };
                let model = state.vms[vm].model.clone();
                let checked = self.in_model(tid, &state, || {
                    let args: kvm_create_guest_memfd = user::read(arg)?;
                    kvm::check_guest_memfd(&registry::lock(&model), &args).map(|()| args)
                });
                match checked {
                    Ok(args) => Pending::Gmem { vm, args },
                    Err(e) => return TraceAction::Fail(e.0),
                }
            }
            _ => return run,
        };
        // A confidential VM type is backed by a real default VM: this machine's KVM has none
        // of them.
        let rewritten = (request == KVM_CREATE_VM && arg != 0).then(|| {
            let mut a = args;
            a[2] = 0;
            a
        });
        state.pending.insert(tid, pending);
        TraceAction::Run {
            args: rewritten,
            want_exit: true,
        }
    }

    fn trace_exit_action(&self, tid: i32, _ret: i64) -> TraceExit {
        let state = self.lock();
        match state.pending.get(&tid) {
            Some(Pending::Vcpu { vm, .. })
                if self.fd_base > 0 && Self::confidential_vm(&state, *vm) =>
            {
                TraceExit::ReplaceFd { min: self.fd_base }
            }
            _ => TraceExit::Keep,
        }
    }

    fn trace_exit(&self, tid: i32, ret: i64) {
        let mut state = self.lock();
        let Some(pending) = state.pending.remove(&tid) else {
            return;
        };
        if let Pending::Vcpu { vm, .. } = pending {
            let base = i64::from(self.fd_base);
            if Self::confidential_vm(&state, vm) {
                if ret == -i64::from(libc::EMFILE) && base > 0 {
                    eprintln!(
                        "memenc-sim: KVM_CREATE_VCPU of a confidential VM fails with EMFILE: no \
                         descriptor free at or above {base} (RLIMIT_NOFILE lowered?), where \
                         the filter sees its KVM_RUN and register setters"
                    );
                } else if (0..base).contains(&ret) {
                    eprintln!(
                        "memenc-sim: a confidential vCPU kept descriptor {ret} (< {base}): its \
                         KVM_RUN and register setters are not seen"
                    );
                }
            }
        }
        let file = if ret >= 0 {
            task::dup_fd(tid, ret as RawFd).ok()
        } else {
            None
        };
        match (pending, file) {
            (Pending::Vm(model), Some(file)) => state.vms.push(VmEntry { model, file }),
            (Pending::Vcpu { vm, index }, Some(file)) => state.vcpus.push(VcpuEntry {
                vm,
                index,
                file,
                run: AtomicUsize::new(0),
            }),
            (Pending::Vcpu { vm, index }, None) => {
                // The kernel refused (or a signal restarts the call): the model forgets it.
                let mut model = registry::lock(&state.vms[vm].model);
                if model.vcpus.len() == index + 1 {
                    model.vcpus.pop();
                }
            }
            (Pending::Gmem { vm, args }, Some(file)) => {
                let id = kvm::add_gmem(&mut registry::lock(&state.vms[vm].model), &args);
                state.gmems.push(GmemEntry { vm, id, file });
            }
            (_, None) => {}
        }
    }

    fn exit(&self) {
        self.write_report();
        let state = self.lock();
        for c in &state.vcpus {
            let base = c.run.load(Ordering::Relaxed);
            if base != 0 {
                // SAFETY: unmapping the kvm_run mapping made in end_guest, used by no one now.
                unsafe { libc::munmap(base as *mut libc::c_void, self.vcpu_mmap_size) };
            }
        }
    }
}

/// KVM_GET_VCPU_MMAP_SIZE on this machine's /dev/kvm (the size of a vCPU's mapping).
fn vcpu_mmap_size() -> Option<usize> {
    let kvm = std::fs::File::open("/dev/kvm").ok()?;
    // SAFETY: KVM_GET_VCPU_MMAP_SIZE takes no argument.
    let n = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_VCPU_MMAP_SIZE as libc::Ioctl, 0) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The report: `{"profile": ..., "simulated": true, <extra>"vms": [...]}`; `extra`: more
/// top-level members, each line ending in `,\n`.
fn json(profile: &str, reports: &[VmReport], extra: &str) -> String {
    let mut vms = Vec::new();
    for r in reports {
        let mut fields = vec![
            format!("\"vm_type\": {}", r.vm_type),
            format!("\"technology\": \"{}\"", r.technology),
            format!("\"state\": \"{}\"", r.state),
            format!("\"vcpus\": {}", r.vcpus),
        ];
        if let Some(d) = &r.launch_digest {
            fields.push(format!("\"launch_digest\": \"{}\"", hex(d)));
        }
        if let Some(m) = &r.mrtd {
            fields.push(format!("\"mrtd\": \"{}\"", hex(m)));
        }
        vms.push(format!("    {{{}}}", fields.join(", ")));
    }
    format!(
        "{{\n  \"profile\": \"{profile}\",\n  \"simulated\": true,\n{extra}  \"vms\": [\n{}\n  ]\n}}\n",
        vms.join(",\n")
    )
}

/// Whether thread `tid`'s `fd` is the supervisor's `ours` (a failed comparison is "no": the
/// descriptor is then not one the hybrid knows).
fn same_file(tid: i32, fd: RawFd, ours: std::os::fd::BorrowedFd<'_>) -> bool {
    task::same_file(tid, fd, ours).unwrap_or(false)
}
