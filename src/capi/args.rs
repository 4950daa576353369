//! What every typed-helper export does at the C boundary, written once: borrowing descriptors,
//! reading extensible argument structs (the kernel's `copy_struct_from_user` rules), checking
//! buffer/length pairs, writing the firmware-status and output parameters, and recording the
//! stage for `mem_enc_last_stage()`.

use core::ffi::c_int;
use core::mem::{MaybeUninit, size_of};
use core::ptr;
use std::os::fd::BorrowedFd;

use crate::errno::Errno;
use crate::fwerr::{self, Stage};
use crate::helpers::{Error, Result};
use crate::vendor::Vendor;

/// The largest argument-struct size accepted (a page, as the kernel's `copy_struct_from_user`
/// users cap it): beyond it, `-E2BIG`.
pub(crate) const ARGS_SIZE_MAX: usize = 4096;

/// A C struct passed with its size (read with [`copy_struct_from_user`], written with
/// [`copy_struct_to_user`]).
///
/// # Safety
/// Implementors are `#[repr(C)]` plain data without padding for which every bit pattern,
/// including all zeroes, is valid (integers, byte arrays, raw pointers).
pub(crate) unsafe trait ArgsStruct: Copy {
    /// The size of the first published version: smaller sizes are refused with `-EINVAL`.
    const SIZE_VER0: usize;
}

/// Reads an extensible struct of `size` bytes at `src`, as the kernel's
/// `copy_struct_from_user()` does:
/// - `src` NULL: `-EINVAL` (memenc's one NULL rule); `size` below the first version: `-EINVAL`; above
///   [`ARGS_SIZE_MAX`]: `-E2BIG`;
/// - `size` up to `size_of::<T>()` (an older caller): the missing tail reads as zero;
/// - `size` above it (a newer caller): the bytes memenc does not know must be zero, else
///   `-E2BIG`.
///
/// # Safety
/// `src` must be NULL or point to `size` readable bytes (any alignment).
pub(crate) unsafe fn copy_struct_from_user<T: ArgsStruct>(
    src: *const T,
    size: usize,
) -> core::result::Result<T, Errno> {
    if src.is_null() {
        return Err(Errno(libc::EINVAL));
    }
    let bytes = src.cast::<u8>();
    read_struct(size, |offset, out| {
        // SAFETY: read_struct asks only for bytes below `size` (checked against
        // ARGS_SIZE_MAX first), which the caller guarantees are readable.
        unsafe { ptr::copy_nonoverlapping(bytes.add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    })
}

/// The rules of [`copy_struct_from_user`], with the caller's bytes fetched by `read(offset,
/// out)`: the known prefix straight into the value, the unknown tail in chunks that must be zero.
fn read_struct<T: ArgsStruct>(
    size: usize,
    mut read: impl FnMut(usize, &mut [u8]) -> core::result::Result<(), Errno>,
) -> core::result::Result<T, Errno> {
    if size < T::SIZE_VER0 {
        return Err(Errno(libc::EINVAL));
    }
    if size > ARGS_SIZE_MAX {
        return Err(Errno(libc::E2BIG));
    }
    let known = size_of::<T>();
    let mut offset = known;
    let mut chunk = [0u8; 64];
    while offset < size {
        let n = (size - offset).min(chunk.len());
        read(offset, &mut chunk[..n])?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(Errno(libc::E2BIG));
        }
        offset += n;
    }
    let mut out = MaybeUninit::<T>::zeroed();
    // SAFETY: `out` is `known` zeroed (so initialised) bytes, borrowed only for this read.
    let prefix = unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), known) };
    read(0, &mut prefix[..size.min(known)])?;
    // SAFETY: all bytes are initialised (zeroed, then overwritten) and T accepts any bytes
    // (ArgsStruct).
    Ok(unsafe { out.assume_init() })
}

/// Writes an extensible output struct into `size` bytes at `dst`, as the kernel's
/// `copy_struct_to_user()` does: an older caller gets the first `size` bytes, a newer one gets
/// the struct followed by zeroes. Exactly `size` bytes are written. Fails as
/// [`check_struct_out`].
///
/// # Safety
/// `dst` must be NULL or point to `size` writable bytes (any alignment).
pub(crate) unsafe fn copy_struct_to_user<T: ArgsStruct>(
    dst: *mut T,
    size: usize,
    value: &T,
) -> core::result::Result<(), Errno> {
    check_struct_out::<T>(dst, size)?;
    let known = size_of::<T>();
    let bytes = dst.cast::<u8>();
    // SAFETY: `size` writable bytes at `dst` (caller); `value` has `known` initialised bytes
    // (ArgsStruct: no padding).
    unsafe {
        ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), bytes, size.min(known));
        if size > known {
            ptr::write_bytes(bytes.add(known), 0, size - known);
        }
    }
    Ok(())
}

/// The checks of [`copy_struct_to_user`], for use before any ioctl: `-EINVAL` for NULL,
/// `-EINVAL` below the first version, `-E2BIG` above [`ARGS_SIZE_MAX`].
pub(crate) fn check_struct_out<T: ArgsStruct>(
    dst: *mut T,
    size: usize,
) -> core::result::Result<(), Errno> {
    if dst.is_null() || size < T::SIZE_VER0 {
        Err(Errno(libc::EINVAL))
    } else if size > ARGS_SIZE_MAX {
        Err(Errno(libc::E2BIG))
    } else {
        Ok(())
    }
}

/// The command an export runs, for errors memenc raises before the ioctl.
#[derive(Clone, Copy)]
pub(crate) struct Cmd {
    pub vendor: Vendor,
    pub name: &'static str,
}

impl Cmd {
    /// The command `id` of `vendor`.
    pub fn new(vendor: Vendor, id: u32) -> Cmd {
        Cmd {
            vendor,
            name: crate::helpers::name(vendor, id),
        }
    }

    /// A command outside `KVM_MEMORY_ENCRYPT_OP` (memory ioctls).
    pub const fn named(name: &'static str) -> Cmd {
        Cmd {
            vendor: Vendor::None,
            name,
        }
    }

    /// An error memenc found (no ioctl issued).
    pub fn reject(self, errno: i32) -> Error {
        Error::rejected(self.name, self.vendor, errno)
    }

    /// Lifts an errno from a boundary check.
    pub fn check<T>(self, r: core::result::Result<T, Errno>) -> Result<T> {
        r.map_err(|e| self.reject(e.0))
    }

    /// The caller's descriptor, borrowed for the call: `-EBADF` if negative.
    pub fn fd<'a>(self, raw: c_int) -> Result<BorrowedFd<'a>> {
        if raw < 0 {
            return Err(self.reject(libc::EBADF));
        }
        // SAFETY: the C contract: the descriptor stays open for the duration of the call; a
        // closed one makes the ioctl fail with EBADF, which is reported, not undefined.
        Ok(unsafe { BorrowedFd::borrow_raw(raw) })
    }

    /// An extensible argument struct (see [`copy_struct_from_user`]).
    ///
    /// # Safety
    /// As [`copy_struct_from_user`].
    pub unsafe fn args<T: ArgsStruct>(self, src: *const T, size: usize) -> Result<T> {
        // SAFETY: forwarded contract.
        self.check(unsafe { copy_struct_from_user(src, size) })
    }

    /// An input buffer: NULL is allowed only with length 0 (`-EINVAL` otherwise).
    ///
    /// # Safety
    /// A non-NULL `p` must point to `len` readable bytes that stay valid and unmodified for
    /// `'a`.
    pub unsafe fn blob<'a>(self, p: *const u8, len: usize) -> Result<&'a [u8]> {
        if len == 0 {
            return Ok(&[]);
        }
        if p.is_null() {
            return Err(self.reject(libc::EINVAL));
        }
        // SAFETY: the caller guarantees `len` readable bytes at `p`.
        Ok(unsafe { core::slice::from_raw_parts(p, len) })
    }

    /// A fixed-size input: `p` with exactly `N` bytes announced (`-EINVAL` otherwise).
    ///
    /// # Safety
    /// As [`Cmd::blob`].
    pub unsafe fn exact<'a, const N: usize>(self, p: *const u8, len: usize) -> Result<&'a [u8; N]> {
        if len != N {
            return Err(self.reject(libc::EINVAL));
        }
        // SAFETY: forwarded contract.
        let s = unsafe { self.blob(p, len) }?;
        s.try_into().map_err(|_| self.reject(libc::EINVAL))
    }

    /// The capacity of an output buffer: `*len`, with `-EINVAL` for a NULL `len`, or a NULL
    /// `buf` with a non-zero capacity.
    ///
    /// # Safety
    /// `len` must be NULL or readable; `buf` is only compared with NULL.
    pub unsafe fn capacity<T, L: Copy + Default + PartialEq>(
        self,
        buf: *mut T,
        len: *const L,
    ) -> Result<L> {
        if len.is_null() {
            return Err(self.reject(libc::EINVAL));
        }
        // SAFETY: non-NULL and readable by the caller's contract.
        let cap = unsafe { len.read_unaligned() };
        if buf.is_null() && cap != L::default() {
            return Err(self.reject(libc::EINVAL));
        }
        Ok(cap)
    }

    /// After a length query: `Ok` when every needed length fits the caller's capacity (each
    /// entry is `(len, capacity, needed)`); otherwise every `*len` is set to what is needed and
    /// the result is [`Cmd::nospace`].
    ///
    /// # Safety
    /// Every `len` must be writable (checked non-NULL by [`Cmd::capacity`]).
    pub unsafe fn room<L: Copy + PartialOrd>(self, lens: &[(*mut L, L, L)]) -> Result<()> {
        if lens.iter().all(|&(_, cap, needed)| needed <= cap) {
            return Ok(());
        }
        for &(len, _, needed) in lens {
            // SAFETY: writable (contract).
            unsafe { put(len, needed) };
        }
        Err(self.nospace())
    }

    /// `-ENOSPC` after a length query: memenc refused to fetch into a buffer too small for
    /// the length the kernel reported (the query itself succeeded: status 0).
    pub fn nospace(self) -> Error {
        Error {
            status: Some(0),
            ..self.reject(libc::ENOSPC)
        }
    }
}

/// Writes `value` through an optional out-pointer.
///
/// # Safety
/// `p` must be NULL or writable for a `T` (any alignment).
pub(crate) unsafe fn put<T>(p: *mut T, value: T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable by the caller's contract.
        unsafe { p.write_unaligned(value) };
    }
}

/// Copies `data` into the caller's buffer and sets `*len` to its length. The capacity was
/// checked with [`Cmd::capacity`] before the ioctl.
///
/// # Safety
/// `buf` must have room for `data.len()` bytes (or be NULL when `data` is empty); `len` must be
/// writable.
pub(crate) unsafe fn put_blob(buf: *mut u8, len: *mut usize, data: &[u8]) {
    if !data.is_empty() {
        // SAFETY: the caller guarantees room for data.len() bytes at `buf`.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len()) };
    }
    // SAFETY: as above.
    unsafe { put(len, data.len()) };
}

/// Writes how far a partial-progress command got into an optional out-pointer: on success
/// `done` (the end of the range), after a failed ioctl the point the kernel reached, nothing
/// when memenc refused the call before issuing it.
///
/// # Safety
/// `p` must be NULL or writable.
pub(crate) unsafe fn put_reached<T>(p: *mut u64, r: &Result<T>, done: Option<u64>) {
    let reached = match r {
        Ok(_) => done,
        Err(e) if e.status.is_some() => e.reached,
        Err(_) => None,
    };
    if let Some(v) = reached {
        // SAFETY: NULL or writable (contract).
        unsafe { put(p, v) };
    }
}

/// Where a helper's firmware status goes: SEV's 32-bit `fw_error` or TDX's 64-bit `hw_error`.
#[derive(Clone, Copy)]
pub(crate) enum Status {
    /// `uint32_t *fw_error`, may be NULL.
    Sev(*mut u32),
    /// `uint64_t *hw_error`, may be NULL.
    Tdx(*mut u64),
    /// No status parameter (memory helpers).
    None,
}

/// Ends an export: records the stage, writes the firmware status whenever an ioctl was issued
/// (0 on success), runs `outputs` only on success, and returns 0 or `-errno`.
///
/// # Safety
/// The pointers in `status` must be NULL or writable.
pub(crate) unsafe fn finish<T>(status: Status, r: Result<T>, outputs: impl FnOnce(T)) -> c_int {
    let issued_status = match &r {
        Ok(_) => Some(0),
        Err(e) => e.status,
    };
    if let Some(s) = issued_status {
        match status {
            // SAFETY: NULL or writable (caller's contract); SEV statuses are 32 bits wide.
            Status::Sev(p) => unsafe { put(p, s as u32) },
            // SAFETY: as above.
            Status::Tdx(p) => unsafe { put(p, s) },
            Status::None => {}
        }
    }
    match r {
        Ok(v) => {
            fwerr::set_last_stage(Stage::None);
            outputs(v);
            0
        }
        Err(e) => {
            fwerr::set_last_stage(e.stage);
            e.errno.negated()
        }
    }
}

/// The body of an export whose only input is a descriptor (plus immediates the caller
/// captures in `helper`): borrow it, run `helper`, finish. Called inside the export's
/// [`super::boundary`].
///
/// # Safety
/// The pointer in `status` must be NULL or writable.
pub(crate) unsafe fn fd_only(
    c: Cmd,
    fd: c_int,
    status: Status,
    helper: impl FnOnce(BorrowedFd<'_>) -> Result<()>,
) -> c_int {
    let r = c.fd(fd).and_then(helper);
    // SAFETY: forwarded contract.
    unsafe { finish(status, r, |()| {}) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct T2 {
        a: u64,
        b: u32,
        c: u32,
    }
    // SAFETY: integers only.
    unsafe impl ArgsStruct for T2 {
        const SIZE_VER0: usize = 8;
    }

    fn read(bytes: &[u8], size: usize) -> core::result::Result<T2, Errno> {
        // SAFETY: `bytes` has at least `size` bytes in every call below.
        unsafe { copy_struct_from_user(bytes.as_ptr().cast::<T2>(), size) }
    }

    #[test]
    fn from_user_every_edge() {
        let mut raw = [0u8; 40];
        for (i, b) in raw.iter_mut().enumerate().take(16) {
            *b = i as u8 + 1;
        }
        let full = T2 {
            a: u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]),
            b: u32::from_le_bytes([9, 10, 11, 12]),
            c: u32::from_le_bytes([13, 14, 15, 16]),
        };
        // NULL.
        // SAFETY: NULL is checked before any read.
        let null = unsafe { copy_struct_from_user::<T2>(ptr::null(), 16) };
        assert_eq!(null, Err(Errno(libc::EINVAL)));
        // Below the first version, including 0.
        assert_eq!(read(&raw, 0), Err(Errno(libc::EINVAL)));
        assert_eq!(read(&raw, 7), Err(Errno(libc::EINVAL)));
        // Exactly the first version: the rest reads as zero.
        assert_eq!(read(&raw, 8), Ok(T2 { b: 0, c: 0, ..full }));
        // In between (not a field boundary): only the bytes given.
        assert_eq!(
            read(&raw, 10),
            Ok(T2 {
                b: u32::from_le_bytes([9, 10, 0, 0]),
                c: 0,
                ..full
            })
        );
        // Exact size.
        assert_eq!(read(&raw, 16), Ok(full));
        // Larger with a zero tail: accepted.
        assert_eq!(read(&raw, 40), Ok(full));
        // Larger with a non-zero byte anywhere in the tail: E2BIG.
        for at in [16, 27, 39] {
            let mut r = raw;
            r[at] = 1;
            assert_eq!(read(&r, 40), Err(Errno(libc::E2BIG)), "byte {at}");
            // ...but not if the caller's size excludes that byte.
            assert_eq!(read(&r, at), Ok(full));
        }
        // Absurd sizes: E2BIG before reading anything.
        // SAFETY: the size is refused before any read.
        let huge = unsafe { copy_struct_from_user(raw.as_ptr().cast::<T2>(), usize::MAX) };
        assert_eq!(huge, Err(Errno(libc::E2BIG)));
        // Unaligned source.
        let mut un = [0u8; 17];
        un[1..].copy_from_slice(&raw[..16]);
        // SAFETY: 16 readable bytes at offset 1.
        let r = unsafe { copy_struct_from_user(un.as_ptr().add(1).cast::<T2>(), 16) };
        assert_eq!(r, Ok(full));
    }

    #[test]
    fn to_user_every_edge() {
        let v = T2 { a: 1, b: 2, c: 3 };
        let mut out = [0xAAu8; 24];
        // SAFETY: 24 writable bytes.
        let r = unsafe { copy_struct_to_user(out.as_mut_ptr().cast::<T2>(), 24, &v) };
        assert_eq!(r, Ok(()));
        assert_eq!(&out[..8], &1u64.to_le_bytes());
        assert!(out[16..].iter().all(|&b| b == 0));
        let mut short = [0xAAu8; 12];
        // SAFETY: 12 writable bytes.
        let r = unsafe { copy_struct_to_user(short.as_mut_ptr().cast::<T2>(), 10, &v) };
        assert_eq!(r, Ok(()));
        assert_eq!(&short[8..12], &[2, 0, 0xAA, 0xAA]);
        // SAFETY: refused before writing.
        let r = unsafe { copy_struct_to_user(short.as_mut_ptr().cast::<T2>(), 4, &v) };
        assert_eq!(r, Err(Errno(libc::EINVAL)));
        // SAFETY: NULL is refused.
        let r = unsafe { copy_struct_to_user::<T2>(ptr::null_mut(), 16, &v) };
        assert_eq!(r, Err(Errno(libc::EINVAL)));
    }

    #[test]
    fn caps_round_trip_and_prefix() {
        use crate::probe::{mem_enc_cap, mem_enc_caps};
        let caps = mem_enc_caps {
            size: 192,
            vm_types: mem_enc_cap::known(0x21),
            memory_attributes: mem_enc_cap::known(8),
            ..Default::default()
        };
        // Larger: prefix plus zero tail, exactly `size` bytes written.
        let mut big = [0xAAu8; 256];
        // SAFETY: 200 of the 256 bytes are writable.
        let r = unsafe { copy_struct_to_user(big.as_mut_ptr().cast::<mem_enc_caps>(), 200, &caps) };
        assert_eq!(r, Ok(()));
        assert!(big[192..200].iter().all(|&b| b == 0));
        assert!(big[200..].iter().all(|&b| b == 0xAA));
        // SAFETY: 200 readable bytes with a zero tail.
        let back = unsafe { copy_struct_from_user::<mem_enc_caps>(big.as_ptr().cast(), 200) };
        assert_eq!(back, Ok(caps));
        // A non-zero tail is refused.
        big[199] = 1;
        // SAFETY: as above.
        let r = unsafe { copy_struct_from_user::<mem_enc_caps>(big.as_ptr().cast(), 200) };
        assert_eq!(r, Err(Errno(libc::E2BIG)));
        // Smaller than VER0, NULL, too large.
        // SAFETY: refused before any read.
        unsafe {
            assert_eq!(
                copy_struct_from_user::<mem_enc_caps>(big.as_ptr().cast(), 191),
                Err(Errno(libc::EINVAL))
            );
            assert_eq!(
                copy_struct_from_user::<mem_enc_caps>(ptr::null(), 192),
                Err(Errno(libc::EINVAL))
            );
            assert_eq!(
                copy_struct_from_user::<mem_enc_caps>(big.as_ptr().cast(), 5000),
                Err(Errno(libc::E2BIG))
            );
        }
        // SAFETY: refused before any write.
        let r =
            unsafe { copy_struct_to_user(big.as_mut_ptr().cast::<mem_enc_caps>(), 5000, &caps) };
        assert_eq!(r, Err(Errno(libc::E2BIG)));
        // Below the first version nothing is written.
        let mut small = [0u8; 256];
        // SAFETY: refused before any write.
        let r =
            unsafe { copy_struct_to_user(small.as_mut_ptr().cast::<mem_enc_caps>(), 48, &caps) };
        assert_eq!(r, Err(Errno(libc::EINVAL)));
        assert!(small.iter().all(|&b| b == 0));
        // What an older, 48-byte caller struct holds reads back with the rest zero.
        small[..48].copy_from_slice(&big[..48]);
        // SAFETY: 192 readable bytes.
        let prefix =
            unsafe { copy_struct_from_user::<mem_enc_caps>(small.as_ptr().cast(), 192) }.unwrap();
        assert_eq!(prefix.vm_types, caps.vm_types);
        assert_eq!(prefix.memory_attributes, mem_enc_cap::default());
    }

    #[test]
    fn blobs_and_capacities() {
        let c = Cmd::named("X");
        // SAFETY: NULL with length 0 reads nothing.
        assert_eq!(unsafe { c.blob(ptr::null(), 0) }.ok(), Some(&[][..]));
        // SAFETY: NULL with a length is refused before reading.
        let e = unsafe { c.blob(ptr::null(), 3) }.unwrap_err();
        assert_eq!((e.errno, e.stage), (Errno(libc::EINVAL), Stage::Memenc));
        let data = [1u8; 4];
        // SAFETY: 4 readable bytes.
        assert!(unsafe { c.exact::<4>(data.as_ptr(), 4) }.is_ok());
        // SAFETY: the length mismatch is refused before reading.
        assert!(unsafe { c.exact::<4>(data.as_ptr(), 3) }.is_err());
        // SAFETY: NULL len is refused.
        assert!(unsafe { c.capacity(ptr::null_mut::<u8>(), ptr::null::<usize>()) }.is_err());
        let cap = 5usize;
        // SAFETY: NULL buf with a non-zero capacity is refused; `cap` is readable.
        assert!(unsafe { c.capacity(ptr::null_mut::<u8>(), &cap) }.is_err());
        let zero = 0usize;
        assert_eq!(
            // SAFETY: NULL buf with capacity 0 is a pure query; `zero` is readable.
            unsafe { c.capacity(ptr::null_mut::<u8>(), &zero) }.ok(),
            Some(0)
        );
    }

    #[test]
    fn finish_writes_status_only_when_issued() {
        let mut fw = 77u32;
        let c = Cmd::named("X");
        // SAFETY: `fw` is writable.
        let r = unsafe { finish::<()>(Status::Sev(&mut fw), Err(c.reject(libc::EINVAL)), |_| {}) };
        assert_eq!((r, fw), (-libc::EINVAL, 77));
        assert_eq!(fwerr::last_stage(), Stage::Memenc);
        let e = Error::issued("X", Vendor::Sev, Errno(libc::EIO), 7);
        // SAFETY: as above.
        let r = unsafe { finish::<()>(Status::Sev(&mut fw), Err(e), |_| {}) };
        assert_eq!((r, fw), (-libc::EIO, 7));
        assert_eq!(fwerr::last_stage(), Stage::Firmware);
        let mut hw = 5u64;
        let mut out = 0;
        // SAFETY: as above.
        let r = unsafe { finish(Status::Tdx(&mut hw), Ok(9), |v| out = v) };
        assert_eq!((r, hw, out), (0, 0, 9));
        assert_eq!(fwerr::last_stage(), Stage::None);
    }
}
