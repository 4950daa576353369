//! `mem_enc_probe()` with arbitrary descriptors, sizes (zero, tiny, exact, large, huge) and
//! NULL.
//!
//! Input: [fd kind][u32 negative fd][size mode][u64 size][flags].
//! Size mode picks the size: the raw u64 (mostly huge), the u64 modulo 8 KiB (around every
//! boundary), `MEM_ENC_CAPS_SIZE_VER0`, `sizeof(struct mem_enc_caps)` or `MEM_ENC_CAPS_SIZE_MAX`.
//! Flags bit 0: pass NULL. The buffer behind `caps` is always at least as large as the size
//! passed when that size is within the documented range; for larger sizes it is 8 KiB + 64
//! and the library must refuse before writing.
//!
//! Invariants: 0 or a negative errno; the documented refusals (NULL or size < VER0: -EINVAL;
//! size > MAX: -E2BIG; negative fd other than -1: -EBADF); a refusal leaves the buffer as it
//! was; success writes exactly `caps_size` bytes, the same answer as a probe with the
//! library's own size, and the bytes past `caps_size` stay untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memenc::capi::probe::mem_enc_probe;
use memenc::probe::{MEM_ENC_CAPS_SIZE_MAX, MEM_ENC_CAPS_SIZE_VER0, mem_enc_caps};
use memenc_fuzz::{Bytes, FdKind, is_neg_errno};

const BUF: usize = 8192 + 64;
const FILL: u8 = 0xA5;

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let kind = FdKind::pick(input.u8());
    let negative = input.u32();
    let mode = input.u8();
    let raw_size = input.u64();
    let flags = input.u8();
    let own = size_of::<mem_enc_caps>();
    let size = match mode % 5 {
        0 => raw_size as usize,
        1 => (raw_size % 8192) as usize,
        2 => MEM_ENC_CAPS_SIZE_VER0 as usize,
        3 => own,
        _ => MEM_ENC_CAPS_SIZE_MAX as usize,
    };
    // Negative kind: -1 means "open /dev/kvm", so both -1 and other negatives are covered.
    let Some(fd) = kind.fd(negative) else { return };

    let mut buf = vec![FILL; BUF];
    let ptr = if flags & 1 != 0 {
        core::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast::<mem_enc_caps>()
    };
    // SAFETY: `ptr` is NULL or BUF writable bytes; sizes above BUF are above MAX and must be
    // refused before any write (that is one of the properties under test).
    let r = unsafe { mem_enc_probe(fd, ptr, size) };
    assert!(r == 0 || is_neg_errno(r), "return value {r}");

    let expected_refusal = if ptr.is_null() || size < MEM_ENC_CAPS_SIZE_VER0 as usize {
        Some(-libc::EINVAL)
    } else if size > MEM_ENC_CAPS_SIZE_MAX as usize {
        Some(-libc::E2BIG)
    } else if fd < -1 {
        Some(-libc::EBADF)
    } else {
        None
    };
    if let Some(e) = expected_refusal {
        assert_eq!(r, e, "fd {fd} size {size} null {}", ptr.is_null());
    }
    if r != 0 {
        assert!(
            buf.iter().all(|&b| b == FILL),
            "a refused probe wrote to caps"
        );
        return;
    }
    assert!(
        buf[size..].iter().all(|&b| b == FILL),
        "wrote past caps_size"
    );
    assert!(
        buf[own.min(size)..size].iter().all(|&b| b == 0),
        "tail not zeroed"
    );
    let mut reference = mem_enc_caps::default();
    // SAFETY: a writable struct of the size passed.
    assert_eq!(unsafe { mem_enc_probe(fd, &mut reference, own) }, 0);
    // SAFETY: mem_enc_caps is plain data of `own` bytes.
    let reference = unsafe {
        core::slice::from_raw_parts((&reference as *const mem_enc_caps).cast::<u8>(), own)
    };
    let n = own.min(size);
    assert_eq!(buf[..n], reference[..n], "answer depends on caps_size");
});
