//! The C boundary. Each export converts raw pointers once (NULL and size checks), calls the
//! Rust core, and maps `Errno` to `-errno`. Nothing here decides semantics, and no panic
//! crosses into C: a caught panic becomes `-ENOTRECOVERABLE`.

pub(crate) mod args;
pub mod fwerr;
pub mod host;
pub mod mem;
pub mod op;
pub mod probe;
pub mod sev;
pub mod snp;
pub mod tdx;
pub mod trace;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::errno::Errno;

/// Runs an export's body; a panic becomes `-ENOTRECOVERABLE` instead of unwinding into C.
///
/// The errno rule, the same for every `int` export: on failure the thread's `errno` is set to
/// the returned error (positive), as `ioctl()` would set it, memenc's own refusals included;
/// on success `errno` is what it was on entry (whatever memenc did inside).
#[inline]
pub(crate) fn boundary(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: __errno_location() returns this thread's errno slot, valid for the thread's life.
    let slot = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *slot };
    let r = catch_unwind(AssertUnwindSafe(body)).unwrap_or(-libc::ENOTRECOVERABLE);
    // SAFETY: as above.
    unsafe { *slot = if r < 0 { r.wrapping_neg() } else { saved } };
    r
}

/// [`boundary`] for an export whose successful path touches `errno` nowhere (every internal
/// call that may fail and still lead to success keeps `errno` itself, see
/// [`crate::host::keep_errno`]): only a failure writes it, so the common path reads no
/// thread-local errno slot at all.
#[inline]
pub(crate) fn boundary_errno_on_failure(body: impl FnOnce() -> i32) -> i32 {
    let r = catch_unwind(AssertUnwindSafe(body)).unwrap_or(-libc::ENOTRECOVERABLE);
    if r < 0 {
        // SAFETY: __errno_location() returns this thread's errno slot.
        unsafe { *libc::__errno_location() = r.wrapping_neg() };
    }
    r
}

/// Like [`boundary`] for exports that return something other than an errno.
pub(crate) fn boundary_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// `0` or `-errno`.
pub(crate) fn status(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => e.negated(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_enotrecoverable() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = boundary(|| panic!("test panic"));
        std::panic::set_hook(hook);
        assert_eq!(r, -libc::ENOTRECOVERABLE);
        assert_eq!(boundary(|| 7), 7);
        assert_eq!(status(Err(Errno(libc::EIO))), -libc::EIO);
    }
}
