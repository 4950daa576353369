//! Shared pieces of the memenc fuzz targets: a byte reader over the fuzzer's input and the
//! descriptors a target can aim at. Descriptors are created once per process and reused, so an
//! execution costs system calls, not VM creation.
//!
//! The simulated host (when it lands) adds its descriptors as further [`FdKind`] variants; the
//! targets pick kinds only through [`FdKind::pick`], so they cover the new kinds unchanged.

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
}

impl FdKind {
    pub const ALL: [FdKind; 6] = [
        FdKind::Closed,
        FdKind::Negative,
        FdKind::DevNull,
        FdKind::Kvm,
        FdKind::Vm,
        FdKind::Vcpu,
    ];

    pub fn pick(selector: u8) -> FdKind {
        Self::ALL[selector as usize % Self::ALL.len()]
    }

    /// Kinds whose descriptor the real kernel owns (a raw ioctl on them is the reference).
    pub fn is_real(self) -> bool {
        true
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
