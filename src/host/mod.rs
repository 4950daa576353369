//! The host layer: the only code in memenc that issues ioctls or touches caller memory on the
//! kernel's behalf. A descriptor the simulated host created goes to the model in
//! [`crate::sim`]; every other descriptor goes to the real kernel. Above this layer, the real
//! and simulated paths are the same code.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::errno::Errno;
use crate::vendor::Vendor;

/// Issues `ioctl(fd, request, arg)`, `arg` being a pointer or an immediate as the request
/// defines. Returns the ioctl's non-negative result or its errno.
///
/// Inlined into its callers, with the system call issued in place (see [`sys_ioctl`]), so that
/// `mem_enc_op`'s common path makes no call that has to return across the system call.
///
/// # Safety
/// When `request` takes a pointer, `arg` must be valid for what the kernel reads and writes
/// through it, exactly as for a raw `ioctl()`.
#[inline(always)]
pub unsafe fn ioctl(fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
    if crate::sim::active() {
        // SAFETY: the caller upholds this function's contract, which is the model's too.
        if let Some(result) = unsafe { crate::sim::ioctl(fd, request, arg) } {
            return result;
        }
    }
    // SAFETY: the caller guarantees `arg` is what `request` expects; an ioctl on a descriptor
    // that is not open fails with EBADF and touches no memory.
    unsafe { sys_ioctl(fd, request, arg) }
}

/// The `ioctl` system call itself, issued inline rather than through libc's wrapper.
///
/// Why: where the return-stack buffer does not survive a system call (seen on the development
/// machine, an AMD guest with Spectre v2 RSB filling; `perf annotate` puts the cost on the
/// instruction after each such return), every return to a frame entered before the system call
/// mispredicts. Through libc, `mem_enc_op` paid for three of those per command (libc's `ioctl`,
/// the dispatcher, `mem_enc_op` itself); inline, only the one every caller of a raw `ioctl()`
/// pays too. The errno comes back in the return value; the thread's `errno` is not touched
/// (memenc reports errors as return values only).
///
/// # Safety
/// As [`ioctl`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sys_ioctl(fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
    let ret: i64;
    // SAFETY: the x86_64 Linux system-call ABI: number in rax, arguments in rdi, rsi, rdx; the
    // kernel clobbers rcx and r11 and returns in rax. It may read and write memory through
    // `arg` (the caller's contract), so the asm is not marked pure or memory-free; it does not
    // touch our stack.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_ioctl => ret,
            in("rdi") i64::from(fd),
            in("rsi") request,
            in("rdx") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    // The kernel returns -4095..-1 for errors, anything else is the ioctl's result.
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as i32)
    }
}

/// Elsewhere, libc's wrapper (memenc's confidential-guest vendors are all x86_64).
///
/// # Safety
/// As [`ioctl`].
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
unsafe fn sys_ioctl(fd: RawFd, request: u64, arg: u64) -> Result<i32, Errno> {
    // SAFETY: as for the x86_64 version: the caller's contract covers `arg`.
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

/// The vendor whose command numbering `fd` speaks: the simulated host's profile for its own
/// descriptors, otherwise this CPU's vendor.
#[inline]
pub fn vendor_of(fd: RawFd) -> Vendor {
    if crate::sim::active() {
        if let Some(vendor) = crate::sim::vendor_of(fd) {
            return vendor;
        }
    }
    cpu_vendor()
}

/// This CPU's vendor, read once: the kernel's `vendor_id` in /proc/cpuinfo, or CPUID leaf 0
/// where /proc is not mounted. The kernel's word comes first because CPUID can be virtualised
/// by the process's own environment (valgrind reports "GenuineIntel" on AMD hosts).
#[inline]
pub fn cpu_vendor() -> Vendor {
    static CACHE: AtomicU8 = AtomicU8::new(0);
    match CACHE.load(Ordering::Relaxed) {
        1 => Vendor::None,
        2 => Vendor::Sev,
        3 => Vendor::Tdx,
        _ => {
            let vendor = proc_cpuinfo_vendor().unwrap_or_else(read_cpu_vendor);
            let code = match vendor {
                Vendor::None => 1,
                Vendor::Sev => 2,
                Vendor::Tdx => 3,
            };
            CACHE.store(code, Ordering::Relaxed);
            vendor
        }
    }
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

/// Reads `out.len()` bytes of this process's memory at `addr` without faulting: `None` where
/// the range is not readable. memenc reads caller parameter structs only through this, so a bad
/// address is an error, never a crash.
pub fn read_user(addr: u64, out: &mut [u8]) -> Option<()> {
    if out.is_empty() {
        return Some(());
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: out.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: out.len(),
    };
    // SAFETY: process_vm_readv writes only into `out` (described by `local`) and reads our own
    // address space through the kernel, which reports EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == out.len() as isize).then_some(())
}

/// Writes `data` into this process's memory at `addr` without faulting: `None` where the range
/// is not writable.
pub fn write_user(addr: u64, data: &[u8]) -> Option<()> {
    if data.is_empty() {
        return Some(());
    }
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as usize as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: process_vm_writev reads only `data` and writes our own address space through the
    // kernel, which reports EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == data.len() as isize).then_some(())
}

/// Reads a little-endian u64 from caller memory (see [`read_user`]).
pub fn read_user_u64(addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read_user(addr, &mut b)?;
    Some(u64::from_le_bytes(b))
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
    fn user_memory_access_reports_bad_addresses() {
        let value: u64 = 0x1122_3344_5566_7788;
        assert_eq!(read_user_u64(&value as *const u64 as u64), Some(value));
        assert_eq!(read_user_u64(0), None);
        assert_eq!(read_user_u64(8), None);
        let mut target = [0u8; 4];
        assert_eq!(
            write_user(target.as_mut_ptr() as u64, &[1, 2, 3, 4]),
            Some(())
        );
        assert_eq!(target, [1, 2, 3, 4]);
        assert_eq!(write_user(16, &[1]), None);
    }

    #[test]
    fn ioctl_on_a_closed_descriptor_is_ebadf() {
        // SAFETY: KVM_CHECK_EXTENSION takes an immediate; the descriptor is invalid.
        let r = unsafe { ioctl(-1, crate::uapi::KVM_CHECK_EXTENSION, 0) };
        assert_eq!(r, Err(Errno(libc::EBADF)));
    }
}
