//! Launch measurements, per the vendors' specifications, so a guest owner's
//! expected-measurement tool agrees with the simulated host:
//!
//! * SNP launch digest (SNP firmware ABI, PAGE_INFO): for every page,
//!   `LD = SHA-384(PAGE_INFO)` where PAGE_INFO (0x70 bytes) is
//!   `LD(48) | CONTENTS(48) | LENGTH=0x70 (u16) | PAGE_TYPE (u8) | IMI_PAGE=0 (u8) |
//!   VMPL3/2/1 perms=0 (3 x u8) | reserved (u8) | GPA (u64)`; CONTENTS is the SHA-384 of a
//!   NORMAL or VMSA page and zero for ZERO, UNMEASURED, SECRETS and CPUID pages.
//! * TDX MRTD (TDX module ABI): one SHA-384 over 128-byte records: TDH.MEM.PAGE.ADD adds
//!   `"MEM.PAGE.ADD" | pad to 16 | GPA (u64) | zeros`, TDH.MR.EXTEND adds
//!   `"MR.EXTEND" | pad to 16 | GPA (u64) | zeros` followed by the 256-byte chunk.
//! * SEV (SEV API, LAUNCH_MEASURE): launch digest `LD = SHA-256` over the LAUNCH_UPDATE_DATA
//!   (and, for SEV-ES, LAUNCH_UPDATE_VMSA) contents; the measurement is
//!   `HMAC-SHA256(TIK, 0x04 | API_MAJOR | API_MINOR | BUILD | POLICY (u32) | LD | MNONCE)`.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha384};

/// SNP page types as the firmware numbers them.
pub const SNP_PAGE_NORMAL: u8 = 1;
/// The VMSA page type KVM uses for each vCPU at LAUNCH_FINISH.
pub const SNP_PAGE_VMSA: u8 = 2;
/// The GPA the VMSA pages are measured at (RMP: -1 page-aligned, bits above 51 cleared).
pub const SNP_VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// The simulated SEV firmware's Transport Integrity Key: bytes 0x00, 0x01, ..., 0x0f.
pub const SIM_SEV_TIK: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The running SNP launch digest.
#[derive(Clone, Debug)]
pub struct SnpDigest {
    ld: [u8; 48],
}

impl Default for SnpDigest {
    fn default() -> Self {
        SnpDigest { ld: [0; 48] }
    }
}

impl SnpDigest {
    /// The digest so far.
    pub fn value(&self) -> [u8; 48] {
        self.ld
    }

    /// Measures one page: `contents` is the page's SHA-384, or `None` for the page types
    /// whose CONTENTS field is zero.
    pub fn update(&mut self, page_type: u8, gpa: u64, contents: Option<&[u8; 48]>) {
        let contents = contents.unwrap_or(&[0; 48]);
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&0x70u16.to_le_bytes());
        info[98] = page_type;
        // imi_page, the three VMPL permission bytes and the reserved byte stay zero.
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }
}

/// The running TDX MRTD.
#[derive(Clone, Debug, Default)]
pub struct Mrtd {
    hash: Sha384,
}

fn tdx_record(tag: &[u8], gpa: u64) -> [u8; 128] {
    let mut record = [0u8; 128];
    record[..tag.len()].copy_from_slice(tag);
    record[16..24].copy_from_slice(&gpa.to_le_bytes());
    record
}

/// Bytes of a TDX measurement record (TDH.MEM.PAGE.ADD, TDH.MR.EXTEND).
const TDX_RECORD: usize = 128;
/// Bytes of guest memory one TDH.MR.EXTEND measures.
const TDX_CHUNK: usize = 256;
/// Bytes hashed into MRTD for one measured 4 KiB page: its TDH.MEM.PAGE.ADD record, then for
/// each 256-byte chunk a TDH.MR.EXTEND record and the chunk.
pub const TDX_MEASURED_PAGE_STREAM: usize = TDX_RECORD + 16 * (TDX_RECORD + TDX_CHUNK);

/// The MRTD stream of one measured page, laid out in one buffer that is reused from page to
/// page: the records' tags are written once, then each page sets the GPAs and the chunks.
pub struct TdxPageStream(Box<[u8; TDX_MEASURED_PAGE_STREAM]>);

impl Default for TdxPageStream {
    fn default() -> Self {
        let mut stream = Box::new([0u8; TDX_MEASURED_PAGE_STREAM]);
        let (add, extends) = stream.split_at_mut(TDX_RECORD);
        add.copy_from_slice(&tdx_record(b"MEM.PAGE.ADD", 0));
        for piece in extends.chunks_exact_mut(TDX_RECORD + TDX_CHUNK) {
            piece[..TDX_RECORD].copy_from_slice(&tdx_record(b"MR.EXTEND", 0));
        }
        TdxPageStream(stream)
    }
}

impl TdxPageStream {
    /// Lays out the stream of the page at `gpa` whose 4096 bytes are `page`.
    pub fn set(&mut self, gpa: u64, page: &[u8]) {
        let (add, extends) = self.0.split_at_mut(TDX_RECORD);
        add[16..24].copy_from_slice(&gpa.to_le_bytes());
        for (i, (piece, chunk)) in extends
            .chunks_exact_mut(TDX_RECORD + TDX_CHUNK)
            .zip(page.chunks(TDX_CHUNK))
            .enumerate()
        {
            let at = gpa.wrapping_add((TDX_CHUNK * i) as u64);
            piece[16..24].copy_from_slice(&at.to_le_bytes());
            piece[TDX_RECORD..TDX_RECORD + chunk.len()].copy_from_slice(chunk);
        }
    }

    /// The stream as last set.
    pub fn bytes(&self) -> &[u8; TDX_MEASURED_PAGE_STREAM] {
        &self.0
    }
}

impl Mrtd {
    /// TDH.MEM.PAGE.ADD of the page at `gpa`.
    pub fn page_add(&mut self, gpa: u64) {
        self.hash.update(tdx_record(b"MEM.PAGE.ADD", gpa));
    }

    /// TDH.MEM.PAGE.ADD of the page at `gpa`, then TDH.MR.EXTEND of each of its 256-byte
    /// chunks, in order. The records and chunks are laid out as one stream in `scratch` and
    /// hashed in one call: sha2 compresses consecutive blocks two at a time, which
    /// record-by-record updates (one or two blocks each) cannot. This runs for every measured
    /// byte.
    pub fn page_add_measured(&mut self, gpa: u64, page: &[u8], scratch: &mut TdxPageStream) {
        scratch.set(gpa, page);
        self.hash.update(scratch.bytes());
    }

    /// The MRTD as TDH.MR.FINALIZE would fix it now.
    pub fn value(&self) -> [u8; 48] {
        self.hash.clone().finalize().into()
    }
}

/// The running SEV launch digest (GCTX.LD).
#[derive(Clone, Debug, Default)]
pub struct SevDigest {
    hash: Sha256,
}

impl SevDigest {
    /// Measures LAUNCH_UPDATE_DATA or LAUNCH_UPDATE_VMSA contents.
    pub fn update(&mut self, data: &[u8]) {
        self.hash.update(data);
    }

    /// The digest so far.
    pub fn value(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }
}

/// The LAUNCH_MEASURE measurement.
pub fn sev_measurement(
    api: (u8, u8, u8),
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; fall back to zeros regardless.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&SIM_SEV_TIK) else {
        return [0; 32];
    };
    mac.update(&[0x04, api.0, api.1, api.2]);
    mac.update(&policy.to_le_bytes());
    mac.update(ld);
    mac.update(mnonce);
    mac.finalize().into_bytes().into()
}
