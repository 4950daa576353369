//! Caller memory as the model sees it: every byte goes through [`super::target::read_user`] and
//! [`crate::host::write_user`], so a bad address is `-EFAULT` exactly where the kernel's
//! `copy_from_user`/`copy_to_user` would fail, never a crash.

use core::mem::{MaybeUninit, size_of};

use super::page_hash;
use super::target as host;
use memenc::Errno;
use memenc::uapi;

/// Plain kernel structs: every bit pattern is a valid value and there are no implicit padding
/// bytes (kvm-bindings and `crate::uapi` spell every pad out), so they can be copied as bytes.
///
/// # Safety
/// Only for `#[repr(C)]` integer-only structs without implicit padding.
pub(crate) unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: a repr(C) kernel struct of integers and integer arrays with explicit pads.
        unsafe impl Pod for $t {}
    )* };
}
pod!(
    u32,
    u64,
    uapi::kvm_sev_init,
    uapi::kvm_sev_launch_start,
    uapi::kvm_sev_launch_update_data,
    uapi::kvm_sev_launch_secret,
    uapi::kvm_sev_launch_measure,
    uapi::kvm_sev_guest_status,
    uapi::kvm_sev_dbg,
    uapi::kvm_sev_attestation_report,
    uapi::kvm_sev_send_start,
    uapi::kvm_sev_send_update_data,
    uapi::kvm_sev_receive_start,
    uapi::kvm_sev_receive_update_data,
    uapi::kvm_sev_snp_launch_start,
    uapi::kvm_sev_snp_launch_update,
    uapi::kvm_sev_snp_launch_finish,
    uapi::kvm_enc_region,
    uapi::kvm_memory_attributes,
    uapi::kvm_create_guest_memfd,
    uapi::kvm_userspace_memory_region,
    uapi::kvm_userspace_memory_region2,
    uapi::kvm_device_attr,
    uapi::kvm_enable_cap,
    uapi::kvm_cpuid_entry2,
    uapi::kvm_cpuid2_header,
    uapi::kvm_tdx_capabilities,
    uapi::kvm_tdx_init_vm,
    uapi::kvm_tdx_init_mem_region,
);

fn efault() -> Errno {
    Errno(libc::EFAULT)
}

/// `copy_from_user(&value, addr, sizeof(T))`.
pub(crate) fn read<T: Pod>(addr: u64) -> Result<T, Errno> {
    let mut value = MaybeUninit::<T>::zeroed();
    // SAFETY: the zeroed storage is size_of::<T>() initialised bytes we own exclusively.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(value.as_mut_ptr().cast::<u8>(), size_of::<T>()) };
    host::read_user(addr, bytes).ok_or_else(efault)?;
    // SAFETY: T is Pod, so the bytes just read form a valid T.
    Ok(unsafe { value.assume_init() })
}

/// `copy_to_user(addr, &value, sizeof(T))`.
pub(crate) fn write<T: Pod>(addr: u64, value: &T) -> Result<(), Errno> {
    write_bytes(addr, as_bytes(value))
}

/// The bytes of a Pod value.
pub(crate) fn as_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: T is Pod (no implicit padding), so all size_of::<T>() bytes are initialised.
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A Pod value from the front of `bytes` (zero-filled if short).
pub(crate) fn from_bytes<T: Pod>(bytes: &[u8]) -> T {
    let mut value = MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(size_of::<T>());
    // SAFETY: copies at most size_of::<T>() bytes into zeroed storage of that size; T is Pod.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), n);
        value.assume_init()
    }
}

/// Reads `len` bytes at `addr` a bounded chunk at a time, handing each to `f`: the model never
/// holds a whole guest range in memory, whatever length a caller claims.
pub(crate) fn for_each_chunk(
    addr: u64,
    len: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), Errno>,
) -> Result<(), Errno> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        let at = addr.checked_add(done).ok_or_else(efault)?;
        host::read_user(at, &mut buf[..n]).ok_or_else(efault)?;
        f(done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Source pages of a launch update (SNP_LAUNCH_UPDATE, TDX INIT_MEM_REGION), read ahead in
/// large chunks into one reused buffer: one `process_vm_readv` per chunk instead of one system
/// call and one allocation per 4 KiB page. What the caller sees is still the kernel's
/// per-page `copy_from_user`: [`PageReader::page`] is asked for each page at the point the
/// kernel copies it, and gives -EFAULT exactly for a page that is not readable (a chunk that
/// fails is read again one page at a time, so the pages before the bad one still succeed).
/// Reading ahead never goes past the pages the command can still reach; it may read pages a
/// later per-page check would have stopped at, which only memory registered with userfaultfd
/// could notice.
pub(crate) struct PageReader {
    buf: Vec<u8>,
    /// Address of `buf[0]`.
    base: u64,
    /// Bytes of `buf` holding caller memory from `base`.
    valid: u64,
    /// Up to here (exclusive) a chunk read failed: pages below are read one at a time.
    single_until: u64,
    /// SHA-384 of `digest_count` consecutive buffered pages from `digest_base`: computed
    /// together (see [`PageReader::page_digest`]), forgotten whenever `buf` is refilled.
    digests: [[u8; 48]; page_hash::LANES],
    digest_base: u64,
    digest_count: u64,
}

impl PageReader {
    /// Bytes read at once: one system call per 64 pages is noise next to hashing them, and the
    /// buffer and the next chunk being prefetched fit in a 1 MiB L2 cache together.
    const CHUNK: u64 = 256 << 10;
    const PAGE: u64 = super::vm::PAGE_SIZE;

    pub fn new() -> PageReader {
        PageReader {
            buf: Vec::new(),
            base: 0,
            valid: 0,
            single_until: 0,
            digests: [[0; 48]; page_hash::LANES],
            digest_base: 0,
            digest_count: 0,
        }
    }

    /// The SHA-384 of the page [`PageReader::page`] gives for the same arguments (with the
    /// same errors). The digests of the next pages already buffered, up to
    /// [`page_hash::LANES`] in all, are computed in the same pass and kept for the calls that
    /// ask for them next: SNP measures consecutive pages, and hashing them together is several
    /// times faster where the CPU allows (see `sim::page_hash`).
    pub fn page_digest(&mut self, addr: u64, pages: u64) -> Result<[u8; 48], Errno> {
        self.page(addr, pages)?;
        let index = addr.wrapping_sub(self.digest_base) / Self::PAGE;
        if addr >= self.digest_base
            && addr % Self::PAGE == self.digest_base % Self::PAGE
            && index < self.digest_count
        {
            return Ok(self.digests[index as usize]);
        }
        // `page` succeeded, so the buffer holds at least this page from `offset`.
        let offset = addr.wrapping_sub(self.base);
        let count = ((self.valid - offset) / Self::PAGE)
            .min(pages)
            .clamp(1, page_hash::LANES as u64);
        let start = offset as usize;
        let end = start + (count * Self::PAGE) as usize;
        page_hash::page_digests(&self.buf[start..end], &mut self.digests[..count as usize]);
        self.digest_base = addr;
        self.digest_count = count;
        Ok(self.digests[0])
    }

    /// `copy_from_user` of the 4 KiB page at `addr`, when the command may go on to read
    /// `pages` consecutive pages from there (`pages` >= 1 bounds the read-ahead).
    pub fn page(&mut self, addr: u64, pages: u64) -> Result<&[u8], Errno> {
        let page = Self::PAGE as usize;
        let offset = addr.wrapping_sub(self.base);
        if addr >= self.base
            && self
                .valid
                .checked_sub(offset)
                .is_some_and(|r| r >= Self::PAGE)
        {
            // The same page of the next chunk, if the command can reach it, is fetched into the
            // cache while this one is hashed, so that the next read copies from the cache.
            if self.valid / Self::PAGE < pages {
                prefetch(addr.wrapping_add(self.valid), page);
            }
            let at = offset as usize;
            return Ok(&self.buf[at..at + page]);
        }
        // Never past the end of the address space, never less than the page itself.
        let room = (u64::MAX - addr).saturating_add(1);
        let mut len = pages
            .saturating_mul(Self::PAGE)
            .min(Self::CHUNK)
            .min(room)
            .max(Self::PAGE);
        if addr < self.single_until {
            len = Self::PAGE;
        }
        if (self.buf.len() as u64) < len {
            self.buf.resize(len as usize, 0);
        }
        self.valid = 0;
        self.digest_count = 0;
        if host::read_user(addr, &mut self.buf[..len as usize]).is_none() {
            if len == Self::PAGE {
                return Err(efault());
            }
            // Somewhere in the chunk is a page that cannot be read: from here to the chunk's
            // end each page decides for itself.
            self.single_until = addr.saturating_add(len);
            len = Self::PAGE;
            host::read_user(addr, &mut self.buf[..page]).ok_or_else(efault)?;
        }
        self.base = addr;
        self.valid = len;
        Ok(&self.buf[..page])
    }
}

/// Asks the CPU to bring `len` bytes at `addr` into its caches. A prefetch is a hint, not an
/// access: it never faults, whatever `addr` is (unmapped, `PROT_NONE`, not canonical), so
/// caller memory is still only read through [`host::read_user`].
#[inline]
fn prefetch(addr: u64, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..len).step_by(64) {
        let p = addr.wrapping_add(line as u64) as usize as *const i8;
        // SAFETY: PREFETCHT0 does not access memory architecturally and cannot fault (Intel SDM
        // and AMD APM: prefetches to invalid addresses are dropped); SSE is baseline on x86_64.
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, len);
}

/// `copy_from_user` into a new buffer of `len` bytes.
pub(crate) fn read_vec(addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = vec![0u8; len];
    host::read_user(addr, &mut v).ok_or_else(efault)?;
    Ok(v)
}

/// `copy_to_user` of raw bytes.
pub(crate) fn write_bytes(addr: u64, data: &[u8]) -> Result<(), Errno> {
    host::write_user(addr, data).ok_or_else(efault)
}

/// The kernel command envelope (`struct kvm_sev_cmd` / `struct kvm_tdx_cmd`) as its 24 bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Envelope(pub [u8; 24]);

impl Envelope {
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }
    pub fn id(&self) -> u32 {
        self.u32_at(0)
    }
    pub fn flags(&self) -> u32 {
        self.u32_at(4)
    }
    pub fn data(&self) -> u64 {
        u64::from_le_bytes(self.0[8..16].try_into().unwrap_or([0; 8]))
    }
    /// SEV `error`.
    pub fn set_error(&mut self, error: u32) {
        self.0[16..20].copy_from_slice(&error.to_le_bytes());
    }
    /// SEV `error`.
    pub fn error(&self) -> u32 {
        self.u32_at(16)
    }
    /// SEV `sev_fd`.
    pub fn sev_fd(&self) -> u32 {
        self.u32_at(20)
    }
    /// TDX `hw_error`.
    pub fn hw_error(&self) -> u64 {
        u64::from_le_bytes(self.0[16..24].try_into().unwrap_or([0; 8]))
    }
    pub fn set_hw_error(&mut self, hw: u64) {
        self.0[16..24].copy_from_slice(&hw.to_le_bytes());
    }
    /// Copies the 24 bytes in, as the kernel's first `copy_from_user`.
    pub fn read(addr: u64) -> Result<Envelope, Errno> {
        let mut b = [0u8; 24];
        host::read_user(addr, &mut b).ok_or_else(efault)?;
        Ok(Envelope(b))
    }
    /// Copies the 24 bytes back.
    pub fn write(&self, addr: u64) -> Result<(), Errno> {
        write_bytes(addr, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// `pages` readable pages, each filled with its index, followed by a PROT_NONE page.
    fn mapping(pages: usize) -> (*mut u8, usize) {
        let len = (pages + 1) * PAGE;
        // SAFETY: a fresh anonymous mapping, written only within its length, unmapped below.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            let p = p.cast::<u8>();
            for i in 0..pages {
                core::ptr::write_bytes(p.add(i * PAGE), i as u8, PAGE);
            }
            assert_eq!(libc::mprotect(p.add(pages * PAGE).cast(), PAGE, 0), 0);
            (p, len)
        }
    }

    #[test]
    fn page_reader_faults_exactly_at_the_unreadable_page() {
        // 300 readable pages (more than one chunk), then the guard page.
        let (p, len) = mapping(300);
        let base = p as u64;
        let mut reader = PageReader::new();
        for i in 0..300u64 {
            let page = reader.page(base + i * PAGE as u64, 301 - i).unwrap();
            assert!(page.iter().all(|&b| b == i as u8), "page {i}");
        }
        assert_eq!(reader.page(base + 300 * PAGE as u64, 1), Err(efault()));
        // A fresh reader whose first chunk includes the guard page: the readable pages before
        // it still read, one by one.
        let mut reader = PageReader::new();
        let start = base + 290 * PAGE as u64;
        for i in 0..10u64 {
            let page = reader.page(start + i * PAGE as u64, 11 - i).unwrap();
            assert!(page.iter().all(|&b| b == (290 + i) as u8), "page {i}");
        }
        assert_eq!(reader.page(start + 10 * PAGE as u64, 1), Err(efault()));
        // Unaligned sources, and addresses at the top of the address space.
        let mut reader = PageReader::new();
        let page = reader.page(base + 100, 2).unwrap();
        assert!(
            page[..PAGE - 100].iter().all(|&b| b == 0)
                && page[PAGE - 100..].iter().all(|&b| b == 1)
        );
        assert_eq!(reader.page(u64::MAX - 10, 5), Err(efault()));
        assert_eq!(reader.page(0, 3), Err(efault()));
        // SAFETY: the mapping made above, no longer borrowed.
        unsafe { libc::munmap(p.cast(), len) };
    }
}
