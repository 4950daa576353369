//! The host layer: the only code in memenc that issues ioctls. Every ioctl goes through libc's
//! `ioctl()`, or through the [`Host`] a VMM installed once with [`set_host`] (QEMU routes its
//! calls through its own `kvm_vm_ioctl()`; a test installs an in-process model). memenc never
//! looks at what a descriptor is.

use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::errno::Errno;
use crate::vendor::Vendor;

/// Where memenc's ioctls go, when not to libc's `ioctl()`.
pub trait Host: Sync {
    /// Issues `ioctl(fd, request, arg)`; the non-negative result or the errno.
    ///
    /// # Safety
    /// When `request` takes a pointer, `arg` is valid for what the kernel reads and writes
    /// through it, exactly as for a raw `ioctl()`.
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno>;

    /// The command numbering `fd` speaks, where this host knows better than the machine's
    /// kernel (a model of another vendor's host); `None`: ask the kernel.
    fn vendor(&self, fd: RawFd) -> Option<Vendor> {
        let _ = fd;
        None
    }

    /// Whether this is a model of a host rather than the kernel (the probe says so and does
    /// not cache its answers).
    fn simulated(&self, fd: RawFd) -> bool {
        let _ = fd;
        false
    }
}

static HOST: OnceLock<&'static dyn Host> = OnceLock::new();
/// Whether [`HOST`] was ever set: one relaxed load on the common path (no route installed).
static HOST_SET: AtomicBool = AtomicBool::new(false);

#[inline]
fn installed_host() -> Option<&'static dyn Host> {
    if HOST_SET.load(Ordering::Relaxed) {
        HOST.get().copied()
    } else {
        None
    }
}

/// Installs the process's ioctl route, once: -EBUSY if one is installed already.
pub fn set_host(host: &'static dyn Host) -> Result<(), Errno> {
    HOST.set(host).map_err(|_| Errno(libc::EBUSY))?;
    HOST_SET.store(true, Ordering::Release);
    Ok(())
}

/// Whether a [`Host`] is installed.
pub fn installed() -> bool {
    HOST.get().is_some()
}

/// Whether the installed [`Host`] models `fd`'s host.
pub fn simulated(fd: RawFd) -> bool {
    HOST.get().is_some_and(|h| h.simulated(fd))
}

/// Whether `host` is the installed route.
pub fn installed_is(host: &'static dyn Host) -> bool {
    HOST.get()
        .is_some_and(|h| core::ptr::addr_eq(*h as *const dyn Host, host as *const dyn Host))
}

/// Issues `ioctl(fd, request, arg)`, `arg` being a pointer or an immediate as the request
/// defines. Returns the ioctl's non-negative result or its errno.
///
/// # Safety
/// When `request` takes a pointer, `arg` must be valid for what the kernel reads and writes
/// through it, exactly as for a raw `ioctl()`.
#[inline]
pub unsafe fn ioctl(fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
    if let Some(host) = installed_host() {
        // SAFETY: the caller upholds this function's contract, which is the host's too.
        return unsafe { host.ioctl(fd, request, arg) };
    }
    // SAFETY: the caller guarantees `arg` is what `request` expects; an ioctl on a descriptor
    // that is not open fails with EBADF and touches no memory.
    let ret = unsafe { libc::ioctl(fd, request as libc::Ioctl, arg as libc::c_ulong) };
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// `KVM_MEMORY_ENCRYPT_OP` with a NULL argument: the kernel's "is memory encryption enabled for
/// this VM?" probe. The raw answer (0, -ENOTTY, or -EFAULT from backends that have no NULL case);
/// callers interpret it. The one place memenc issues this call (valgrind's suppression names it).
#[inline(never)]
pub fn null_probe(fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: a NULL argument is the documented probe; a backend that reads through it fails
    // with EFAULT and touches no memory of ours.
    unsafe { ioctl(fd, crate::uapi::KVM_MEMORY_ENCRYPT_OP, 0) }
}

/// The vendor whose command numbering `fd` speaks: the installed [`Host`]'s word where it
/// has one, else this host's, read once (see [`host_vendor`]).
#[inline]
pub fn vendor_of(fd: RawFd) -> Vendor {
    if let Some(vendor) = installed_host().and_then(|h| h.vendor(fd)) {
        return vendor;
    }
    host_vendor(fd)
}

/// This host's vendor, read once per process: what KVM reports first (`KVM_CAP_VM_TYPES` on
/// `fd`: TDX VMs mean Intel's numbering, SEV ones AMD's), so a simulated host of either vendor
/// is believed on any machine; else the CPU's ([`cpu_vendor`]).
#[inline]
fn host_vendor(fd: RawFd) -> Vendor {
    match decode_vendor(HOST_VENDOR.load(Ordering::Relaxed)) {
        Some(v) => v,
        None => learn_host_vendor(fd),
    }
}

/// The cached answer of [`host_vendor`] (0: not read yet).
static HOST_VENDOR: AtomicU8 = AtomicU8::new(0);

#[cold]
#[inline(never)]
fn learn_host_vendor(fd: RawFd) -> Vendor {
    let cap = crate::uapi::KVM_CAP_VM_TYPES;
    // SAFETY: KVM_CHECK_EXTENSION takes an immediate.
    let types = keep_errno(|| unsafe { ioctl(fd, crate::uapi::KVM_CHECK_EXTENSION, cap) })
        .map_or(0, |t| t as u32);
    let vendor = vendor_from_vm_types(u64::from(types)).unwrap_or_else(cpu_vendor);
    HOST_VENDOR.store(encode_vendor(vendor), Ordering::Relaxed);
    vendor
}

/// Runs `f` and puts `errno` back as it was: for calls whose failure is an answer (a probe),
/// so a successful export leaves the caller's `errno` alone.
pub fn keep_errno<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: __errno_location() returns this thread's errno slot, valid for its lifetime.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *slot };
    let r = f();
    // SAFETY: as above.
    unsafe { *slot = saved };
    r
}

/// The vendor a `KVM_CAP_VM_TYPES` mask implies, if any.
pub fn vendor_from_vm_types(types: u64) -> Option<Vendor> {
    use crate::uapi::{KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM};
    let bit = |t: u32| 1u64 << t;
    if types & bit(KVM_X86_TDX_VM) != 0 {
        Some(Vendor::Tdx)
    } else if types & (bit(KVM_X86_SEV_VM) | bit(KVM_X86_SEV_ES_VM) | bit(KVM_X86_SNP_VM)) != 0 {
        Some(Vendor::Sev)
    } else {
        None
    }
}

fn decode_vendor(code: u8) -> Option<Vendor> {
    match code {
        1 => Some(Vendor::None),
        2 => Some(Vendor::Sev),
        3 => Some(Vendor::Tdx),
        _ => None,
    }
}

fn encode_vendor(vendor: Vendor) -> u8 {
    match vendor {
        Vendor::None => 1,
        Vendor::Sev => 2,
        Vendor::Tdx => 3,
    }
}

/// This CPU's vendor, read once: the kernel's `vendor_id` in /proc/cpuinfo, or CPUID leaf 0
/// where /proc is not mounted. The kernel's word comes first because CPUID can be virtualised
/// by the process's own environment (valgrind reports "GenuineIntel" on AMD hosts).
#[inline]
pub fn cpu_vendor() -> Vendor {
    static CACHE: AtomicU8 = AtomicU8::new(0);
    if let Some(v) = decode_vendor(CACHE.load(Ordering::Relaxed)) {
        return v;
    }
    let vendor = proc_cpuinfo_vendor().unwrap_or_else(read_cpu_vendor);
    CACHE.store(encode_vendor(vendor), Ordering::Relaxed);
    vendor
}

/// `vendor_id` from /proc/cpuinfo, read into a stack buffer (no allocation: this runs inside the
/// first `mem_enc_op`).
fn proc_cpuinfo_vendor() -> Option<Vendor> {
    let mut buf = [0u8; 512];
    // SAFETY: a NUL-terminated path literal; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/proc/cpuinfo".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: reads at most buf.len() bytes into buf, which we own.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: fd was opened above and is closed once.
    unsafe { libc::close(fd) };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    vendor_from_cpuinfo(text)
}

/// The vendor named by the first `vendor_id` line of /proc/cpuinfo text.
fn vendor_from_cpuinfo(text: &[u8]) -> Option<Vendor> {
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"vendor_id"))?;
    let value = line.rsplit(|&b| b == b':').next()?.trim_ascii();
    let id: &[u8; 12] = value.try_into().ok()?;
    Some(vendor_from_cpuid(id))
}

#[cfg(target_arch = "x86_64")]
fn read_cpu_vendor() -> Vendor {
    // CPUID leaf 0 exists on every x86_64 CPU and has no side effects.
    let leaf = core::arch::x86_64::__cpuid(0);
    let mut id = [0u8; 12];
    id[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    id[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
    id[8..12].copy_from_slice(&leaf.ecx.to_le_bytes());
    vendor_from_cpuid(&id)
}

#[cfg(not(target_arch = "x86_64"))]
fn read_cpu_vendor() -> Vendor {
    Vendor::None
}

/// The vendor for a CPUID vendor string. Hygon CPUs implement SEV.
pub fn vendor_from_cpuid(id: &[u8; 12]) -> Vendor {
    match id {
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Sev,
        b"GenuineIntel" => Vendor::Tdx,
        _ => Vendor::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_vendor_strings() {
        assert_eq!(vendor_from_cpuid(b"AuthenticAMD"), Vendor::Sev);
        assert_eq!(vendor_from_cpuid(b"HygonGenuine"), Vendor::Sev);
        assert_eq!(vendor_from_cpuid(b"GenuineIntel"), Vendor::Tdx);
        assert_eq!(vendor_from_cpuid(b"CentaurHauls"), Vendor::None);
        assert_eq!(cpu_vendor(), cpu_vendor());
        let text = b"processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n";
        assert_eq!(vendor_from_cpuinfo(text), Some(Vendor::Tdx));
        assert_eq!(
            vendor_from_cpuinfo(b"vendor_id\t: AuthenticAMD"),
            Some(Vendor::Sev)
        );
        assert_eq!(vendor_from_cpuinfo(b"vendor_id\t: Odd"), None);
        assert_eq!(vendor_from_cpuinfo(b"processor : 0"), None);
    }

    #[test]
    fn ioctl_on_a_closed_descriptor_is_ebadf() {
        // SAFETY: KVM_CHECK_EXTENSION takes an immediate; the descriptor is invalid.
        let r = unsafe { ioctl(-1, crate::uapi::KVM_CHECK_EXTENSION, 0) };
        assert_eq!(r, Err(Errno(libc::EBADF)));
    }
}
