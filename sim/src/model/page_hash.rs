//! SHA-384 of many 4 KiB pages at once, for the model's launch measurements.
//!
//! SNP_LAUNCH_UPDATE hashes each page on its own, so the digests of consecutive pages are
//! independent. Where the CPU has AVX-512, eight pages are hashed together, one per 64-bit lane
//! of a 512-bit register (the "multi-buffer" technique): one instruction stream does the same
//! round for eight messages, which single-message SHA-512 code cannot do because each of its
//! rounds waits for the previous one. Elsewhere (and under valgrind, which has no AVX-512, or
//! built by a compiler older than 1.89), each page goes through `sha2`. Both give the same bytes; the unit tests compare them.

use sha2::{Digest, Sha384};

/// Bytes per page.
pub const PAGE: usize = 4096;

/// Pages hashed together by the wide path.
pub const LANES: usize = 8;

/// Writes the SHA-384 of each 4 KiB page of `pages` into `out` (one digest per page, in
/// order). `pages.len()` must be `out.len() * PAGE`; otherwise nothing is written.
pub fn page_digests(pages: &[u8], out: &mut [[u8; 48]]) {
    if pages.len() != out.len().saturating_mul(PAGE) {
        return;
    }
    let mut groups = pages.chunks_exact(LANES * PAGE);
    let mut outs = out.chunks_exact_mut(LANES);
    if wide::available() {
        for (group, digests) in (&mut groups).zip(&mut outs) {
            wide::eight_pages(group, digests);
        }
    }
    // Whatever the wide path did not take: a tail of fewer than eight pages, or everything.
    let done = pages.len() - groups.remainder().len() - groups.len() * LANES * PAGE;
    for (page, digest) in pages[done..]
        .chunks_exact(PAGE)
        .zip(out[done / PAGE..].iter_mut())
    {
        *digest = Sha384::digest(page).into();
    }
}

// See build.rs for the cfg: the intrinsics need Rust 1.89, newer than the crate's MSRV.
#[cfg(all(target_arch = "x86_64", memenc_avx512_intrinsics))]
#[clippy::msrv = "1.89"]
mod wide {
    use core::arch::x86_64::*;

    use super::{LANES, PAGE};

    /// FIPS 180-4 §4.2.3: the SHA-512 family's round constants.
    const K: [u64; 80] = [
        0x428a2f98d728ae22,
        0x7137449123ef65cd,
        0xb5c0fbcfec4d3b2f,
        0xe9b5dba58189dbbc,
        0x3956c25bf348b538,
        0x59f111f1b605d019,
        0x923f82a4af194f9b,
        0xab1c5ed5da6d8118,
        0xd807aa98a3030242,
        0x12835b0145706fbe,
        0x243185be4ee4b28c,
        0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f,
        0x80deb1fe3b1696b1,
        0x9bdc06a725c71235,
        0xc19bf174cf692694,
        0xe49b69c19ef14ad2,
        0xefbe4786384f25e3,
        0x0fc19dc68b8cd5b5,
        0x240ca1cc77ac9c65,
        0x2de92c6f592b0275,
        0x4a7484aa6ea6e483,
        0x5cb0a9dcbd41fbd4,
        0x76f988da831153b5,
        0x983e5152ee66dfab,
        0xa831c66d2db43210,
        0xb00327c898fb213f,
        0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2,
        0xd5a79147930aa725,
        0x06ca6351e003826f,
        0x142929670a0e6e70,
        0x27b70a8546d22ffc,
        0x2e1b21385c26c926,
        0x4d2c6dfc5ac42aed,
        0x53380d139d95b3df,
        0x650a73548baf63de,
        0x766a0abb3c77b2a8,
        0x81c2c92e47edaee6,
        0x92722c851482353b,
        0xa2bfe8a14cf10364,
        0xa81a664bbc423001,
        0xc24b8b70d0f89791,
        0xc76c51a30654be30,
        0xd192e819d6ef5218,
        0xd69906245565a910,
        0xf40e35855771202a,
        0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8,
        0x1e376c085141ab53,
        0x2748774cdf8eeb99,
        0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63,
        0x4ed8aa4ae3418acb,
        0x5b9cca4f7763e373,
        0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc,
        0x78a5636f43172f60,
        0x84c87814a1f0ab72,
        0x8cc702081a6439ec,
        0x90befffa23631e28,
        0xa4506cebde82bde9,
        0xbef9a3f7b2c67915,
        0xc67178f2e372532b,
        0xca273eceea26619c,
        0xd186b8c721c0c207,
        0xeada7dd6cde0eb1e,
        0xf57d4f7fee6ed178,
        0x06f067aa72176fba,
        0x0a637dc5a2c898a6,
        0x113f9804bef90dae,
        0x1b710b35131c471b,
        0x28db77f523047d84,
        0x32caab7b40c72493,
        0x3c9ebe0a15c9bebc,
        0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6,
        0x597f299cfc657e2a,
        0x5fcb6fab3ad6faec,
        0x6c44198c4a475817,
    ];

    /// FIPS 180-4 §5.3.4: SHA-384's initial hash value.
    const H384: [u64; 8] = [
        0xcbbb9d5dc1059ed8,
        0x629a292a367cd507,
        0x9159015a3070dd17,
        0x152fecd8f70e5939,
        0x67332667ffc00b31,
        0x8eb44a8768581511,
        0xdb0c2e0d64f98fa7,
        0x47b5481dbefa4fa4,
    ];

    /// Whether this CPU runs the wide path (checked once by std, then a cached load).
    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    /// The SHA-384 of each of the eight 4 KiB pages in `pages` (32 KiB) into `out` (8 digests).
    /// Only call after [`available`] said yes; the sizes are the caller's (see `page_digests`).
    pub fn eight_pages(pages: &[u8], out: &mut [[u8; 48]]) {
        if pages.len() != LANES * PAGE || out.len() != LANES || !available() {
            return;
        }
        // SAFETY: AVX-512F and AVX-512BW are present (checked above); `pages` holds exactly
        // the 8 pages the function reads and `out` the 8 digests it writes.
        unsafe { eight_pages_avx512(pages, out) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn eight_pages_avx512(pages: &[u8], out: &mut [[u8; 48]]) {
        // Lane i reads page i: byte offsets of the pages, for the gathers.
        let lanes = _mm512_set_epi64(
            7 * PAGE as i64,
            6 * PAGE as i64,
            5 * PAGE as i64,
            4 * PAGE as i64,
            3 * PAGE as i64,
            2 * PAGE as i64,
            PAGE as i64,
            0,
        );
        // Byte shuffle that turns each little-endian 64-bit load into the big-endian word
        // SHA-512 reads (the shuffle works within 128-bit lanes).
        let be = _mm512_set_epi64(
            0x08090a0b0c0d0e0f,
            0x0001020304050607,
            0x08090a0b0c0d0e0f,
            0x0001020304050607,
            0x08090a0b0c0d0e0f,
            0x0001020304050607,
            0x08090a0b0c0d0e0f,
            0x0001020304050607,
        );
        let mut state = H384.map(|h| _mm512_set1_epi64(h as i64));
        let base = pages.as_ptr();
        for block in 0..PAGE / 128 {
            let mut w = [_mm512_setzero_si512(); 16];
            for (t, word) in w.iter_mut().enumerate() {
                // SAFETY: every lane reads 8 bytes at `page i + block * 128 + t * 8`, below
                // 8 * PAGE = pages.len().
                let raw = unsafe {
                    _mm512_i64gather_epi64::<1>(lanes, base.add(block * 128 + t * 8).cast())
                };
                *word = _mm512_shuffle_epi8(raw, be);
            }
            compress(&mut state, &w);
        }
        // The padding block of a 4096-byte message: 0x80, zeros, then the length in bits as a
        // 128-bit big-endian number.
        let mut pad = [_mm512_setzero_si512(); 16];
        pad[0] = _mm512_set1_epi64(i64::MIN);
        pad[15] = _mm512_set1_epi64((PAGE * 8) as i64);
        compress(&mut state, &pad);

        // SHA-384 is the first six state words, big-endian.
        let mut words = [[0u64; 8]; 6];
        for (lane_words, v) in words.iter_mut().zip(state) {
            // SAFETY: an unaligned 64-byte store into an 8-word array.
            unsafe { _mm512_storeu_si512(lane_words.as_mut_ptr().cast(), v) };
        }
        for (lane, digest) in out.iter_mut().enumerate() {
            for (i, chunk) in digest.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&words[i][lane].to_be_bytes());
            }
        }
    }

    /// One SHA-512 compression of a 128-byte block, in each of the eight lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn compress(state: &mut [__m512i; 8], block: &[__m512i; 16]) {
        // vpternlogq truth tables: a ^ b ^ c; a ? b : c (SHA's Ch); majority (SHA's Maj).
        const XOR3: i32 = 0x96;
        const CH: i32 = 0xca;
        const MAJ: i32 = 0xe8;
        macro_rules! add {
            ($x:expr, $y:expr) => {
                _mm512_add_epi64($x, $y)
            };
        }
        let mut w = *block;
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
        for (t, k) in K.iter().enumerate() {
            if t >= 16 {
                let w15 = w[(t + 1) % 16];
                let w2 = w[(t + 14) % 16];
                let s0 = _mm512_ternarylogic_epi64::<XOR3>(
                    _mm512_ror_epi64::<1>(w15),
                    _mm512_ror_epi64::<8>(w15),
                    _mm512_srli_epi64::<7>(w15),
                );
                let s1 = _mm512_ternarylogic_epi64::<XOR3>(
                    _mm512_ror_epi64::<19>(w2),
                    _mm512_ror_epi64::<61>(w2),
                    _mm512_srli_epi64::<6>(w2),
                );
                w[t % 16] = add!(add!(w[t % 16], s0), add!(w[(t + 9) % 16], s1));
            }
            let big_s1 = _mm512_ternarylogic_epi64::<XOR3>(
                _mm512_ror_epi64::<14>(e),
                _mm512_ror_epi64::<18>(e),
                _mm512_ror_epi64::<41>(e),
            );
            let ch = _mm512_ternarylogic_epi64::<CH>(e, f, g);
            let kw = add!(_mm512_set1_epi64(*k as i64), w[t % 16]);
            let t1 = add!(add!(h, big_s1), add!(ch, kw));
            let big_s0 = _mm512_ternarylogic_epi64::<XOR3>(
                _mm512_ror_epi64::<28>(a),
                _mm512_ror_epi64::<34>(a),
                _mm512_ror_epi64::<39>(a),
            );
            let maj = _mm512_ternarylogic_epi64::<MAJ>(a, b, c);
            let t2 = add!(big_s0, maj);
            h = g;
            g = f;
            f = e;
            e = add!(d, t1);
            d = c;
            c = b;
            b = a;
            a = add!(t1, t2);
        }
        for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
            *s = add!(*s, v);
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", memenc_avx512_intrinsics)))]
mod wide {
    pub fn available() -> bool {
        false
    }
    pub fn eight_pages(_: &[u8], _: &mut [[u8; 48]]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages that differ in every block, so a lane reading the wrong page or block shows.
    fn pages(n: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n * PAGE)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn reference(pages: &[u8]) -> Vec<[u8; 48]> {
        pages
            .chunks_exact(PAGE)
            .map(|p| Sha384::digest(p).into())
            .collect()
    }

    #[test]
    fn digests_equal_sha2_for_every_count() {
        // 0..=19 pages: no group, one group, groups plus tails of every length.
        for n in 0..=19 {
            let data = pages(n);
            let mut out = vec![[0u8; 48]; n];
            page_digests(&data, &mut out);
            assert_eq!(out, reference(&data), "{n} pages");
        }
    }

    #[test]
    fn wide_path_equals_sha2() {
        if !wide::available() {
            println!(
                "SKIPPED: no wide path here (no AVX-512F/BW, or built by rustc < 1.89): sha2 only"
            );
            return;
        }
        let mut data = pages(LANES);
        let mut out = [[0u8; 48]; LANES];
        wide::eight_pages(&data, &mut out);
        assert_eq!(out.to_vec(), reference(&data));
        // Identical pages in every lane, and an all-zero group.
        let first = data[..PAGE].to_vec();
        for page in data.chunks_exact_mut(PAGE) {
            page.copy_from_slice(&first);
        }
        wide::eight_pages(&data, &mut out);
        assert_eq!(out.to_vec(), reference(&data));
        let zeros = vec![0u8; LANES * PAGE];
        wide::eight_pages(&zeros, &mut out);
        assert_eq!(out.to_vec(), reference(&zeros));
    }

    #[test]
    fn mismatched_sizes_write_nothing() {
        let data = pages(2);
        let mut out = [[7u8; 48]; 3];
        page_digests(&data, &mut out);
        assert_eq!(out, [[7u8; 48]; 3]);
        page_digests(&data[..PAGE + 1], &mut out[..1]);
        assert_eq!(out[0], [7u8; 48]);
    }
}
