//! Shared pieces of the memenc fuzz targets: a byte reader over the fuzzer's input and the
//! descriptors a target can aim at. Descriptors are created once per process and reused, so an
//! execution costs system calls, not VM creation.
//!
//! The simulated host's VM and vCPU are further [`FdKind`] variants, created fresh per input
//! ([`sim::World`]) so that a reproducer replays the same state; the `helpers` target drives
//! every typed helper on them.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Reads fixed-size values from the front of the input; past the end everything reads as 0,
/// so every input is valid.
pub struct Bytes<'a>(pub &'a [u8]);

impl<'a> Bytes<'a> {
    pub fn u8(&mut self) -> u8 {
        let mut b = [0u8; 1];
        self.fill(&mut b);
        b[0]
    }
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        self.fill(&mut b);
        u16::from_le_bytes(b)
    }
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        let n = out.len().min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        out[n..].fill(0);
        self.0 = &self.0[n..];
    }
    /// Up to `max` bytes, as many as remain.
    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let n = max.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// A descriptor kind a target can pass to memenc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A descriptor number that is not open (the kernel answers -EBADF).
    Closed,
    /// A negative descriptor: memenc refuses it itself, with no system call.
    Negative,
    /// /dev/null: open, but not KVM (-ENOTTY).
    DevNull,
    /// /dev/kvm itself.
    Kvm,
    /// A default-type VM on the real /dev/kvm.
    Vm,
    /// vCPU 0 of that VM.
    Vcpu,
    /// A simulated VM (fresh per input; see [`sim::World`]).
    SimVm,
    /// A vCPU of a simulated VM (fresh per input).
    SimVcpu,
}

impl FdKind {
    pub const ALL: [FdKind; 8] = [
        FdKind::Closed,
        FdKind::Negative,
        FdKind::DevNull,
        FdKind::Kvm,
        FdKind::Vm,
        FdKind::Vcpu,
        FdKind::SimVm,
        FdKind::SimVcpu,
    ];

    pub fn pick(selector: u8) -> FdKind {
        Self::ALL[selector as usize % Self::ALL.len()]
    }

    /// Kinds whose descriptor the real kernel owns (a raw ioctl on them is the reference).
    pub fn is_real(self) -> bool {
        !self.is_sim()
    }

    /// Kinds the simulated host answers: the target builds a [`sim::World`] for them.
    pub fn is_sim(self) -> bool {
        matches!(self, FdKind::SimVm | FdKind::SimVcpu)
    }

    /// The descriptor, or `None` where this host lacks it (no /dev/kvm): the target then skips
    /// the input. `negative` supplies the value for [`FdKind::Negative`].
    pub fn fd(self, negative: u32) -> Option<RawFd> {
        let f = fds();
        match self {
            FdKind::Closed => Some(f.closed),
            FdKind::Negative => Some(-1 - (negative & 0x7fff_ffff) as i32),
            FdKind::DevNull => Some(f.null.as_raw_fd()),
            FdKind::Kvm => f.kvm.as_ref().map(|k| k.as_raw_fd()),
            FdKind::Vm => f.vm.as_ref().map(|k| k.as_raw_fd()),
            FdKind::Vcpu => f.vcpu.as_ref().map(|k| k.as_raw_fd()),
            // Per input: the target takes them from its sim::World.
            FdKind::SimVm | FdKind::SimVcpu => None,
        }
    }
}

struct Fds {
    closed: RawFd,
    null: File,
    kvm: Option<File>,
    vm: Option<OwnedFd>,
    vcpu: Option<OwnedFd>,
}

fn fds() -> &'static Fds {
    static FDS: OnceLock<Fds> = OnceLock::new();
    FDS.get_or_init(|| {
        let null = File::open("/dev/null").expect("/dev/null");
        let kvm = File::options().read(true).write(true).open("/dev/kvm").ok();
        let owned = |r: libc::c_int| {
            // SAFETY: a fresh descriptor returned by the kernel, owned only here.
            (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r) })
        };
        let vm = kvm.as_ref().and_then(|k| {
            // SAFETY: plain ioctl on an open /dev/kvm descriptor, integer argument.
            owned(unsafe { libc::ioctl(k.as_raw_fd(), KVM_CREATE_VM, 0 as libc::c_ulong) })
        });
        let vcpu = vm.as_ref().and_then(|v| {
            // SAFETY: as above, on the VM descriptor.
            owned(unsafe { libc::ioctl(v.as_raw_fd(), KVM_CREATE_VCPU, 0 as libc::c_ulong) })
        });
        if kvm.is_none() {
            eprintln!("memenc-fuzz: /dev/kvm absent: inputs aimed at KVM descriptors are skipped");
        }
        // A number well above anything this process opens, and certainly not open.
        let closed = 1_000_000;
        // SAFETY: fcntl(F_GETFD) only queries.
        assert!(unsafe { libc::fcntl(closed, libc::F_GETFD) } < 0);
        Fds {
            closed,
            null,
            kvm,
            vm,
            vcpu,
        }
    })
}

const KVM_CREATE_VM: libc::Ioctl = memenc::uapi::KVM_CREATE_VM as libc::Ioctl;
const KVM_CREATE_VCPU: libc::Ioctl = memenc::uapi::KVM_CREATE_VCPU as libc::Ioctl;

/// A negative errno as memenc returns it: -4095..=-1.
pub fn is_neg_errno(r: i32) -> bool {
    (-4095..0).contains(&r)
}

/// The simulated host: a fresh set of simulated descriptors per input (so every input, and every
/// reproducer, starts from the same state), optionally advanced through a launch prefix with the
/// typed helpers so one command lands deep in a state machine.
pub mod sim {
    use core::ffi::CStr;
    use core::ptr::{null, null_mut};
    use std::os::fd::RawFd;
    use std::sync::Once;
    use std::sync::atomic::{AtomicU64, Ordering};

    use memenc::capi::sev::*;
    use memenc::capi::snp::*;
    use memenc::capi::tdx::*;
    use memenc::helpers::mem::{self, MemRegion2};
    use memenc_sim::compat::*;
    use std::os::fd::{AsFd, BorrowedFd, IntoRawFd};

    pub const PAGE: usize = 4096;

    /// The simulated profiles and the VM type a launch on each uses.
    pub const PROFILES: [(&CStr, u32); 6] = [
        (c"none", 0),
        (c"sev@6.1", 0),
        (c"snp@6.11", 4),
        (c"snp@6.18", 4),
        (c"tdx@6.16", 5),
        (c"tdx@6.19", 5),
    ];

    /// A descriptor closed on drop.
    pub struct Owned(pub RawFd);
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: this harness created the descriptor and closes it once.
            unsafe { libc::close(self.0) };
        }
    }

    /// `pages` read-write pages followed by a PROT_NONE guard page, so any access running past
    /// the end faults (memenc and the model then answer -EFAULT) instead of reaching other
    /// memory of the fuzzer.
    pub struct Area {
        pub base: *mut u8,
        pub len: usize,
    }
    impl Area {
        pub fn new(pages: usize, fill: u8) -> Area {
            let len = pages * PAGE;
            // SAFETY: a fresh anonymous private mapping.
            let p = unsafe {
                libc::mmap(
                    null_mut(),
                    len + PAGE,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            let base = p.cast::<u8>();
            // SAFETY: the last page of the mapping just made; `len` bytes before it are ours.
            unsafe {
                assert_eq!(
                    libc::mprotect(base.add(len).cast(), PAGE, libc::PROT_NONE),
                    0
                );
                core::ptr::write_bytes(base, fill, len);
            }
            Area { base, len }
        }
        /// An address inside the area (wrapping `offset`), or past it into the guard.
        pub fn at(&self, offset: usize) -> u64 {
            self.base as u64 + (offset % (self.len + 64)) as u64
        }
    }
    impl Drop for Area {
        fn drop(&mut self) {
            // SAFETY: unmapping exactly the mapping made in `new`.
            unsafe { libc::munmap(self.base.cast(), self.len + PAGE) };
        }
    }

    /// One simulated host's descriptors for one input. Fields drop in order: descriptors first,
    /// then the memory that backed the VM's memslots.
    pub struct World {
        pub profile: usize,
        pub vm: Owned,
        pub vcpus: Vec<Owned>,
        pub sev: Option<Owned>,
        pub gmem: Vec<Owned>,
        pub guest: &'static Area,
        pub src: &'static Area,
    }

    // SAFETY: the areas are plain memory the harness only reaches through raw addresses.
    unsafe impl Sync for Area {}
    // SAFETY: as above.
    unsafe impl Send for Area {}

    /// The guest and source pages: mapped once per process (mapping them per input costs more
    /// than the rest of an input) and refilled for every new world, so inputs stay independent.
    fn areas() -> (&'static Area, &'static Area) {
        static AREAS: std::sync::OnceLock<(Area, Area)> = std::sync::OnceLock::new();
        let (g, s) =
            AREAS.get_or_init(|| (Area::new(GUEST_PAGES, 0), Area::new(GUEST_PAGES, 0x5A)));
        // SAFETY: both areas are `len` writable bytes; no reference into them is held.
        unsafe {
            core::ptr::write_bytes(g.base, 0, g.len);
            core::ptr::write_bytes(s.base, 0x5A, s.len);
        }
        (g, s)
    }

    pub const GUEST_PAGES: usize = 16;

    impl World {
        /// A VM of `vm_type` (or, when the profile does not create it, of the profile's launch
        /// type) on profile `sel % 6`, with its /dev/sev when the host has one.
        pub fn new(sel: u8, vm_type: Option<u32>) -> World {
            let profile = sel as usize % PROFILES.len();
            let (name, launch) = PROFILES[profile];
            // SAFETY: NUL-terminated names.
            let mut fd = vm_type.map_or(-1, |t| unsafe {
                mem_enc_sim_vm_create_type(name.as_ptr(), t)
            });
            if fd < 0 {
                // SAFETY: as above.
                fd = unsafe { mem_enc_sim_vm_create_type(name.as_ptr(), launch) };
            }
            assert!(fd >= 0, "simulated VM on {name:?}: {fd}");
            let sev = mem_enc_sim_sev_device_open(fd);
            let (guest, src) = areas();
            World {
                profile,
                vm: Owned(fd),
                vcpus: Vec::new(),
                sev: (sev >= 0).then_some(Owned(sev)),
                gmem: Vec::new(),
                guest,
                src,
            }
        }

        pub fn is_tdx(&self) -> bool {
            self.profile >= 4
        }
        pub fn is_snp(&self) -> bool {
            self.profile == 2 || self.profile == 3
        }
        pub fn sev_fd(&self) -> RawFd {
            self.sev.as_ref().map_or(-1, |s| s.0)
        }
        pub fn vcpu(&self, i: u8) -> Option<RawFd> {
            (!self.vcpus.is_empty()).then(|| self.vcpus[i as usize % self.vcpus.len()].0)
        }

        /// KVM_CREATE_VCPU (after the split irqchip TDX needs).
        pub fn add_vcpu(&mut self, id: u32) -> i32 {
            if self.is_tdx() {
                let mut cap = memenc::uapi::kvm_enable_cap {
                    cap: memenc::uapi::KVM_CAP_SPLIT_IRQCHIP as u32,
                    ..Default::default()
                };
                cap.args[0] = 24;
                // SAFETY: KVM_ENABLE_CAP takes this struct; the model reads it fault-safely.
                let _ = unsafe {
                    memenc::host::ioctl(
                        self.vm.0,
                        memenc::uapi::KVM_ENABLE_CAP,
                        &mut cap as *mut _ as u64,
                    )
                };
            }
            let fd = mem_enc_sim_vcpu_create(self.vm.0, id);
            if fd >= 0 {
                self.vcpus.push(Owned(fd));
            }
            fd
        }

        /// A guest_memfd-backed memslot over the whole guest area at GPA 0, all private: the
        /// VMM's own KVM ioctls (memenc 0.2 has no memslot exports), through memenc's Rust
        /// helpers, which route simulated descriptors to the model.
        pub fn private_memory(&mut self) -> i32 {
            let size = (GUEST_PAGES * PAGE) as u64;
            // SAFETY: the World owns the VM descriptor for longer than this call.
            let vm = unsafe { BorrowedFd::borrow_raw(self.vm.0) };
            let r = mem::create_guest_memfd(vm, size, 0).and_then(|g| {
                let region = MemRegion2 {
                    slot: self.gmem.len() as u32,
                    flags: 0,
                    guest_phys_addr: 0,
                    memory_size: size,
                    userspace_addr: self.guest.base as u64,
                    guest_memfd: Some(g.as_fd()),
                    guest_memfd_offset: 0,
                };
                let r = mem::set_user_memory_region2(vm, &region);
                self.gmem.push(Owned(g.into_raw_fd()));
                r
            });
            match r.and_then(|()| mem::set_private(vm, 0, size, true)) {
                Ok(()) => 0,
                Err(e) => -e.errno.0,
            }
        }

        /// Advances the launch `stage` steps (0: none; 1: INIT/INIT2/INIT_VM; 2: LAUNCH_START
        /// or a vCPU; 3: private memory and a vCPU). Steps that fail are left failed: the
        /// command under test then meets that state.
        pub fn prefix(&mut self, stage: u8) {
            let mut fw = 0u32;
            let mut hw = 0u64;
            let vm = self.vm.0;
            for step in 1..=stage.min(3) {
                // SAFETY (whole match): every pointer is valid for the size passed.
                let r = unsafe {
                    match (step, self.is_tdx(), self.is_snp()) {
                        (1, true, _) => {
                            let cpuid = [mem_enc_cpuid_entry {
                                function: 0x8000_0008,
                                eax: 48 << 16,
                                ..Default::default()
                            }];
                            let args = mem_enc_tdx_init_vm_args {
                                attributes: 1 << 28,
                                xfam: 3,
                                mrconfigid: [0; 48],
                                mrowner: [0; 48],
                                mrownerconfig: [0; 48],
                                cpuid: cpuid.as_ptr(),
                                cpuid_nent: 1,
                                reserved: 0,
                            };
                            mem_enc_tdx_init_vm(vm, &args, size_of_val(&args), &mut hw)
                        }
                        (1, false, true) => {
                            let a = mem_enc_sev_init2_args {
                                ghcb_version: 2,
                                ..Default::default()
                            };
                            mem_enc_sev_init2(vm, &a, 16, &mut fw)
                        }
                        // The parameterless ES_INIT: mem_enc_op with RETRY (0.2).
                        (1, false, false) => {
                            let mut c = memenc::mem_enc_cmd {
                                flags: memenc::MEM_ENC_FLAG_RETRY,
                                ..memenc::mem_enc_cmd::new(memenc::uapi::sev_id::ES_INIT, 0)
                            };
                            memenc::capi::op::mem_enc_op(vm, &mut c)
                        }
                        (2, true, _) => {
                            let v = self.add_vcpu(0);
                            if v >= 0 {
                                mem_enc_tdx_init_vcpu(v, 0x1000, &mut hw)
                            } else {
                                v
                            }
                        }
                        (2, false, true) => {
                            let a = mem_enc_snp_launch_start_args {
                                policy: 1 << 16,
                                gosvw: [0; 16],
                            };
                            mem_enc_snp_launch_start(vm, self.sev_fd(), &a, 24, &mut fw)
                        }
                        (2, false, false) => {
                            let a = mem_enc_sev_start_args {
                                handle: 0,
                                // NODBG | ES: an SEV-ES guest's policy must have ES set.
                                policy: 0x5,
                                cert: null(),
                                cert_len: 0,
                                session: null(),
                                session_len: 0,
                            };
                            mem_enc_sev_launch_start(vm, self.sev_fd(), &a, 40, null_mut(), &mut fw)
                        }
                        _ => {
                            let r = self.private_memory();
                            if !self.is_tdx() {
                                self.add_vcpu(0);
                            }
                            r
                        }
                    }
                };
                // A failed step is part of the state under test, not an error of the harness.
                let _ = r;
            }
        }
    }

    /// A plain KVM ioctl as a VMM issues it, through memenc's host layer (which routes the
    /// simulated descriptors to the model): its value or -errno.
    ///
    /// # Safety
    /// `arg` is what `request` takes (the model and the kernel check the addresses in it).
    pub unsafe fn ioctl(fd: RawFd, request: u64, arg: u64) -> i32 {
        // SAFETY: forwarded caller contract.
        match unsafe { memenc::host::ioctl(fd, request, arg) } {
            Ok(v) => v,
            Err(e) => -e.0,
        }
    }

    /// KVM_MEMORY_ENCRYPT_OP calls issued since the process started, counted by memenc's trace
    /// hook (installed on first use).
    pub fn ioctls() -> u64 {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            // SAFETY: `count` is safe to call from any thread with any userdata.
            unsafe { memenc::capi::trace::mem_enc_set_trace(Some(count), null_mut()) };
        });
        ISSUED.load(Ordering::Relaxed)
    }

    static ISSUED: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" fn count(
        _: *mut core::ffi::c_void,
        _: *const memenc::trace::mem_enc_trace_event,
    ) {
        ISSUED.fetch_add(1, Ordering::Relaxed);
    }

    /// An address the model must refuse with -EFAULT: below mmap_min_addr, or in the kernel
    /// half. (Never an arbitrary user address: the model writes guest memory through such
    /// addresses, and a lucky one would scribble over the fuzzer's own heap.)
    pub fn faulting(raw: u64) -> u64 {
        if raw & 1 != 0 {
            raw & 0xfff0
        } else {
            raw | (1 << 63)
        }
    }

    /// `raw` itself, unless it is an address of a page this process has mapped: then
    /// [`faulting`]`(raw)`. For fuzzer bytes that reach the kernel or the model as addresses
    /// (a raw `data`, the pointer fields inside a parameter struct): the model, like the
    /// kernel, writes through them, and libFuzzer learns live addresses from its comparison
    /// tracing (a CI run once handed the model an address in ASan's fake stack, and the
    /// model's copy-back corrupted the fuzzer's own frame). Writes that start on an unmapped
    /// page stop at once, so the first page decides. Only user-range values are asked about.
    pub fn never_live(raw: u64) -> u64 {
        // Below vm.mmap_min_addr's default, or outside the 47-bit user half: never mapped.
        if !(0x1_0000..1 << 47).contains(&raw) {
            return raw;
        }
        let mut resident = 0u8;
        // SAFETY: mincore only asks whether the page is mapped (ENOMEM if not) and writes
        // one byte for the one page into `resident`.
        let r = unsafe { libc::mincore((raw & !0xfff) as *mut libc::c_void, 1, &mut resident) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM) {
            raw
        } else {
            faulting(raw)
        }
    }
}
