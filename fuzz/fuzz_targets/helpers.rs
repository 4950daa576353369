//! Every typed helper (`mem_enc_sev_*`, `mem_enc_snp_*`, `mem_enc_tdx_*`, `mem_enc_mem_*`), the
//! parameterless sub-commands as C VMMs issue them since 0.2 (`mem_enc_op` with
//! MEM_ENC_FLAG_RETRY), the VMM's own memory ioctls (guest_memfd, memslot, attributes: no
//! memenc exports since 0.2) and the simulator exports with pointers, in any order, on a fresh
//! simulated host per input, so the launch state machines of all six profiles are explored (a
//! reproducer replays exactly).
//!
//! Input: [profile][VM type][launch prefix] then up to 32 steps of
//! [helper][descriptor choice][pointer choices][argument bytes...]. Argument structs are filled
//! from the input and passed with a chosen size (the library's, VER0, arbitrary up to 4200 with
//! input bytes as the tail, or NULL). Buffers memenc reads or writes itself are heap buffers of
//! exactly the length passed (AddressSanitizer catches a byte outside them); addresses the
//! kernel checks (guest memory, sources) point into guarded pages or at addresses that always
//! fault.
//!
//! Invariants checked after every call:
//!  - the result is 0 (a count or a descriptor where documented) or a negative errno;
//!  - firmware status (`fw_error`/`hw_error`) is written iff a KVM_MEMORY_ENCRYPT_OP was issued
//!    (memenc's trace hook counts them), 0 on success; a call that issued nothing reports
//!    `MEM_ENC_STAGE_MEMENC`; `MEM_ENC_STAGE_FIRMWARE` comes with a non-zero status;
//!  - outputs documented as written only on success are byte-for-byte untouched on failure
//!    (length outputs: also on -ENOSPC, where they say what is needed); progress outputs
//!    (`gfn_reached`, `gpa_reached`) are untouched when nothing was issued.
#![no_main]

use core::ffi::c_void;
use core::ptr::{null, null_mut};

use libfuzzer_sys::fuzz_target;
use memenc::capi::fwerr::{MEM_ENC_STAGE_FIRMWARE, MEM_ENC_STAGE_MEMENC, mem_enc_last_stage};
use memenc::capi::mem::*;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::uapi::{self, sev_id, tdx_id};
use memenc::{MEM_ENC_FLAG_RETRY, mem_enc_cmd, mem_enc_sev_status};
use memenc_fuzz::sim::{self, Owned, PAGE, World};
use memenc_fuzz::{Bytes, is_neg_errno};
use memenc_sim::compat::*;

const S32: u32 = 0xA5A5_A5A5;
const S64: u64 = 0xA5A5_A5A5_A5A5_A5A5;
const STEPS: usize = 32;
const CLOSED: i32 = 1_000_000;

/// The firmware-status out-parameter of one call: NULL or a sentinel-filled word.
enum Fw {
    Sev(Option<Box<u32>>),
    Tdx(Option<Box<u64>>),
    None,
}

impl Fw {
    fn sev(o: u8) -> Fw {
        Fw::Sev((o & 1 == 0).then(|| Box::new(S32)))
    }
    fn tdx(o: u8) -> Fw {
        Fw::Tdx((o & 1 == 0).then(|| Box::new(S64)))
    }
    fn p32(&mut self) -> *mut u32 {
        match self {
            Fw::Sev(Some(b)) => &mut **b,
            _ => null_mut(),
        }
    }
    fn p64(&mut self) -> *mut u64 {
        match self {
            Fw::Tdx(Some(b)) => &mut **b,
            _ => null_mut(),
        }
    }
    /// The value written, `None` when untouched (or NULL was passed), `Some(None)` if NULL.
    fn written(&self) -> Option<Option<u64>> {
        match self {
            Fw::Sev(Some(b)) => Some((**b != S32).then_some(u64::from(**b))),
            Fw::Tdx(Some(b)) => Some((**b != S64).then_some(**b)),
            _ => None,
        }
    }
}

/// A parameterless sub-command as a C VMM issues it since 0.2: one `mem_enc_op()` with
/// MEM_ENC_FLAG_RETRY. The command's status word starts as the sentinel (the SEV or the TDX
/// view, after the world's vendor), and `fw` is set to what it holds afterwards, so `check`
/// reads it exactly as it read the 0.1 wrappers' `fw_error` / `hw_error` (`nofw`: as a NULL
/// out-pointer, not checked).
fn op_retry(fd: i32, id: u32, tdx: bool, nofw: bool, fw: &mut Fw) -> i32 {
    let mut cmd = mem_enc_cmd {
        flags: MEM_ENC_FLAG_RETRY,
        ..mem_enc_cmd::new(id, 0)
    };
    if tdx {
        cmd.status.hw_error = S64;
    } else {
        cmd.status.sev = mem_enc_sev_status {
            error: S32,
            sev_fd: 0,
        };
    }
    // SAFETY: a valid 24-byte command; these sub-commands take no parameter struct.
    let r = unsafe { memenc::capi::op::mem_enc_op(fd, &mut cmd) };
    *fw = match (nofw, tdx) {
        (true, true) => Fw::Tdx(None),
        (true, false) => Fw::Sev(None),
        (false, true) => Fw::Tdx(Some(Box::new(cmd.hw_error()))),
        (false, false) => Fw::Sev(Some(Box::new(cmd.sev().error))),
    };
    r
}

/// An output buffer memenc writes itself: `len` bytes of 0xA5 on the heap, or NULL.
struct Out {
    buf: Vec<u8>,
    null: bool,
}

impl Out {
    fn new(input: &mut Bytes, unit: usize) -> Out {
        let sel = input.u8();
        let n = match sel % 6 {
            0 => 0,
            1 => 1,
            2 => 8,
            3 => 64,
            4 => 256,
            _ => usize::from(input.u16() % 512),
        };
        Out {
            buf: vec![0xA5; n * unit],
            null: sel & 0x80 != 0,
        }
    }
    fn ptr<T>(&mut self) -> *mut T {
        if self.null {
            null_mut()
        } else {
            self.buf.as_mut_ptr().cast()
        }
    }
    fn untouched(&self) -> bool {
        self.buf.iter().all(|&b| b == 0xA5)
    }
}

/// One harness step's state: the world, the input and the buffers alive during the call.
struct Step<'a, 'w> {
    w: &'w mut World,
    input: Bytes<'a>,
    /// Caller buffers memenc reads (blobs, argument structs), kept alive for the call.
    hold: Vec<Vec<u8>>,
}

impl Step<'_, '_> {
    /// A descriptor for a command of `vcpu` scope: mostly the right kind, sometimes another.
    fn fd(&mut self, vcpu: bool) -> i32 {
        let sel = self.input.u8();
        let vm = self.w.vm.0;
        let vcpu_fd = self.w.vcpu(sel >> 4);
        let right = if vcpu { vcpu_fd.unwrap_or(vm) } else { vm };
        let other = if vcpu { vm } else { vcpu_fd.unwrap_or(vm) };
        match sel % 16 {
            0..=10 => right,
            11 => other,
            12 => self.w.sev_fd(),
            13 => self.w.gmem.first().map_or(vm, |g| g.0),
            14 => -1 - i32::from(sel >> 4),
            _ => CLOSED,
        }
    }

    /// The /dev/sev descriptor argument.
    fn sev_fd(&mut self) -> i32 {
        match self.input.u8() % 8 {
            0 => -1,
            1 => self.w.vm.0,
            2 => CLOSED,
            _ => self.w.sev_fd(),
        }
    }

    /// A buffer memenc reads (exactly its length, contents from the input), or NULL.
    fn blob(&mut self) -> (*const u8, usize) {
        let sel = self.input.u8();
        let len = match sel % 8 {
            0 => 0,
            1 => 16,
            2 => 32,
            3 => 96,
            4 => 4096,
            5 => usize::from(self.input.u16() % 8192),
            6 => 1,
            _ => 48,
        };
        if sel & 0x80 != 0 {
            return (null(), len);
        }
        let mut b = vec![0u8; len];
        self.input.fill(&mut b[..len.min(64)]);
        let p = b.as_ptr();
        self.hold.push(b);
        (p, len)
    }

    /// An address the kernel (the model) checks: NULL, inside the guest or source pages
    /// (whose end is guarded), or one that always faults.
    fn kaddr(&mut self) -> u64 {
        let sel = self.input.u8();
        let off = usize::from(self.input.u16());
        match sel % 6 {
            0 => 0,
            1 => self.w.guest.at(off),
            2 => self.w.src.at(off),
            3 => sim::faulting(self.input.u64()),
            4 => self.w.guest.at((off % sim::GUEST_PAGES) * PAGE),
            _ => self.w.src.at((off % sim::GUEST_PAGES) * PAGE),
        }
    }

    /// A length for a kernel-checked range.
    fn klen(&mut self) -> u64 {
        match self.input.u8() % 7 {
            0 => 0,
            1 => PAGE as u64,
            2 => (sim::GUEST_PAGES * PAGE) as u64,
            3 => 16,
            4 => u64::from(self.input.u16()),
            5 => u64::from(self.input.u32()),
            _ => self.input.u64(),
        }
    }

    /// A small number (page counts, GFNs, ids), sometimes raw.
    fn small(&mut self) -> u64 {
        let v = self.input.u8();
        if v & 0x80 == 0 {
            u64::from(v & 0x1f)
        } else {
            self.input.u64()
        }
    }

    /// An argument struct `T` filled from the input, then `fix`ed (pointer fields), passed
    /// with a chosen size: (pointer, size).
    fn args<T: Copy>(
        &mut self,
        ver0: usize,
        fix: impl FnOnce(&mut Self, &mut T),
    ) -> (*const T, usize) {
        let own = size_of::<T>();
        let mut raw = vec![0u8; own];
        self.input.fill(&mut raw);
        // SAFETY: the argument structs are plain integers, byte arrays and raw pointers, for
        // which every bit pattern is valid.
        let mut v: T = unsafe { core::ptr::read_unaligned(raw.as_ptr().cast()) };
        fix(self, &mut v);
        let sel = self.input.u8();
        let size = match sel % 8 {
            0..=4 => own,
            5 => ver0,
            6 => usize::from(self.input.u16() % 4200),
            _ => own + 8,
        };
        let mut buf = vec![0u8; size];
        // SAFETY: `v` is `own` initialised bytes (no padding in these structs).
        let bytes = unsafe { core::slice::from_raw_parts((&v as *const T).cast::<u8>(), own) };
        let n = size.min(own);
        buf[..n].copy_from_slice(&bytes[..n]);
        if size > own && sel & 0x40 != 0 {
            // A non-zero tail (refused with -E2BIG).
            buf[size - 1] = self.input.u8() | 1;
        }
        if sel & 0x80 != 0 && sel & 0x40 == 0 {
            return (null(), size);
        }
        let p = buf.as_ptr().cast();
        self.hold.push(buf);
        (p, size)
    }
}

/// What to check after a call besides the return value.
struct After<'x> {
    fw: Fw,
    /// Outputs written only on success (also untouched on -ENOSPC).
    success_only: Vec<&'x Out>,
    /// Plain success-only words: (written?).
    words: Vec<bool>,
    /// A length output that may change only on success or -ENOSPC.
    lens_changed: bool,
    /// A progress output was written.
    reached: Option<bool>,
    /// An encryption-op helper (trace-hook counted); false for mem_* and sim exports.
    enc: bool,
}

fn check(name: &str, r: i32, issued: u64, a: &After) {
    assert!(r == 0 || is_neg_errno(r), "{name}: return value {r}");
    if !a.enc {
        return;
    }
    let stage = mem_enc_last_stage();
    if issued == 0 {
        assert_ne!(r, 0, "{name}: success without an ioctl");
        assert_eq!(
            stage, MEM_ENC_STAGE_MEMENC,
            "{name}: no ioctl, stage {stage}"
        );
    }
    if let Some(w) = a.fw.written() {
        match (issued, w) {
            (0, Some(v)) => panic!("{name}: status {v:#x} written without an ioctl (r {r})"),
            (1.., None) => panic!("{name}: {issued} ioctls, status not written (r {r})"),
            _ => {}
        }
        if r == 0 {
            assert_eq!(w, Some(0), "{name}: success with a status");
        }
        if stage == MEM_ENC_STAGE_FIRMWARE {
            assert_ne!(w, Some(0), "{name}: firmware stage with status 0");
        }
    }
    if r != 0 {
        for (i, o) in a.success_only.iter().enumerate() {
            assert!(o.untouched(), "{name}: output {i} written on failure {r}");
        }
        for (i, &w) in a.words.iter().enumerate() {
            assert!(!w, "{name}: out word {i} written on failure {r}");
        }
        if r != -libc::ENOSPC {
            assert!(!a.lens_changed, "{name}: length written on failure {r}");
        }
    }
    if issued == 0 {
        assert_ne!(
            a.reached,
            Some(true),
            "{name}: progress written without an ioctl"
        );
    }
}

/// An optional u32/u64/usize out-word: NULL or a sentinel.
fn word<T: Copy>(o: u8, bit: u8, sentinel: T) -> Option<Box<T>> {
    (o & bit == 0).then(|| Box::new(sentinel))
}
fn wp<T>(b: &mut Option<Box<T>>) -> *mut T {
    b.as_mut().map_or(null_mut(), |b| &mut **b)
}
fn changed<T: PartialEq>(b: &Option<Box<T>>, sentinel: T) -> bool {
    b.as_ref().is_some_and(|b| **b != sentinel)
}

fn step(w: &mut World, input: &mut Bytes) {
    let op = input.u8() % 39;
    let o = input.u8();
    let mut s = Step {
        w,
        input: Bytes(input.0),
        hold: Vec::new(),
    };
    let before = sim::ioctls();
    let mut a = After {
        fw: Fw::None,
        success_only: Vec::new(),
        words: Vec::new(),
        lens_changed: false,
        reached: None,
        enc: op < 30,
    };
    // Each arm: (name, return value); every pointer passed is valid for the size passed with
    // it (heap buffers of exactly that size) or NULL, as the C contract requires.
    let mut outs: Vec<Out> = Vec::new();
    let (name, r): (&str, i32) = match op {
        // ---- SEV, descriptor only (mem_enc_op with RETRY)
        0 | 1 | 6 | 10 | 17 | 18 | 19 => {
            let fd = s.fd(false);
            let (name, id) = match op {
                0 => ("sev_init", sev_id::INIT),
                1 => ("sev_es_init", sev_id::ES_INIT),
                6 => ("launch_update_vmsa", sev_id::LAUNCH_UPDATE_VMSA),
                10 => ("launch_finish", sev_id::LAUNCH_FINISH),
                17 => ("send_finish", sev_id::SEND_FINISH),
                18 => ("send_cancel", sev_id::SEND_CANCEL),
                _ => ("receive_finish", sev_id::RECEIVE_FINISH),
            };
            let tdx = s.w.is_tdx();
            (name, op_retry(fd, id, tdx, o & 1 != 0, &mut a.fw))
        }
        2 => {
            let fd = s.fd(false);
            let (p, n) = s.args::<mem_enc_sev_init2_args>(16, |s, v| {
                if s.input.u8() & 1 == 0 {
                    v.vmsa_features &= 0xff;
                    v.ghcb_version &= 3;
                    v.reserved0 = 0;
                    v.reserved1 = 0;
                }
            });
            a.fw = Fw::sev(o);
            // SAFETY: args valid for n bytes or NULL; fw NULL or writable.
            ("sev_init2", unsafe {
                mem_enc_sev_init2(fd, p, n, a.fw.p32())
            })
        }
        3 | 4 => {
            let fd = s.fd(false);
            let sev = s.sev_fd();
            let (p, n) = s.args::<mem_enc_sev_start_args>(40, |s, v| {
                (v.cert, v.cert_len) = s.blob();
                (v.session, v.session_len) = s.blob();
            });
            a.fw = Fw::sev(o);
            let mut handle = word(o, 2, S32);
            let hp = wp(&mut handle);
            let f = a.fw.p32();
            // SAFETY: as above; handle NULL or writable.
            let r = unsafe {
                if op == 3 {
                    (
                        "launch_start",
                        mem_enc_sev_launch_start(fd, sev, p, n, hp, f),
                    )
                } else {
                    (
                        "receive_start",
                        mem_enc_sev_receive_start(fd, sev, p, n, hp, f),
                    )
                }
            };
            a.words.push(changed(&handle, S32));
            r
        }
        5 => {
            let fd = s.fd(false);
            let (addr, len) = (s.kaddr(), s.klen());
            a.fw = Fw::sev(o);
            let r =
                // SAFETY: addr is checked by the model; fw NULL or writable.
                unsafe { mem_enc_sev_launch_update_data(fd, addr as *mut c_void, len as usize, a.fw.p32()) };
            ("launch_update_data", r)
        }
        7 | 8 => {
            let fd = s.fd(false);
            let (p, n) = s.args::<mem_enc_sev_packet_args>(48, |s, v| {
                (v.hdr, v.hdr_len) = s.blob();
                v.guest = s.kaddr() as *mut c_void;
                v.guest_len = s.klen() as usize;
                (v.trans, v.trans_len) = s.blob();
            });
            a.fw = Fw::sev(o);
            let f = a.fw.p32();
            // SAFETY: args and blobs valid; guest checked by the model.
            unsafe {
                if op == 7 {
                    ("launch_secret", mem_enc_sev_launch_secret(fd, p, n, f))
                } else {
                    (
                        "receive_update_data",
                        mem_enc_sev_receive_update_data(fd, p, n, f),
                    )
                }
            }
        }
        9 | 14 => {
            let fd = s.fd(false);
            let (nonce, nonce_len) = if op == 14 { s.blob() } else { (null(), 0) };
            outs.push(Out::new(&mut s.input, 1));
            let cap = outs[0].buf.len();
            let mut len = word(o, 2, cap);
            a.fw = Fw::sev(o);
            let (bp, lp, f) = (outs[0].ptr::<u8>(), wp(&mut len), a.fw.p32());
            // SAFETY: buf has *len bytes or is NULL; len NULL or read-write.
            let r = unsafe {
                if op == 9 {
                    ("launch_measure", mem_enc_sev_launch_measure(fd, bp, lp, f))
                } else {
                    let r = mem_enc_sev_get_attestation_report(fd, nonce, nonce_len, bp, lp, f);
                    ("get_attestation_report", r)
                }
            };
            a.lens_changed = changed(&len, cap);
            r
        }
        11 => {
            let fd = s.fd(false);
            let (mut h, mut p, mut st) = (word(o, 2, S32), word(o, 4, S32), word(o, 8, S32));
            a.fw = Fw::sev(o);
            // SAFETY: every out-pointer NULL or writable.
            let r = unsafe {
                mem_enc_sev_guest_status(fd, wp(&mut h), wp(&mut p), wp(&mut st), a.fw.p32())
            };
            a.words = vec![changed(&h, S32), changed(&p, S32), changed(&st, S32)];
            ("guest_status", r)
        }
        12 => {
            let fd = s.fd(false);
            let src = s.kaddr();
            outs.push(Out::new(&mut s.input, 1));
            let len = outs[0].buf.len();
            a.fw = Fw::sev(o);
            let (dp, f) = (outs[0].ptr::<u8>(), a.fw.p32());
            // SAFETY: dst has len bytes or is NULL; src checked by the model.
            ("dbg_decrypt", unsafe {
                mem_enc_sev_dbg_decrypt(fd, src as *const c_void, dp, len, f)
            })
        }
        13 => {
            let fd = s.fd(false);
            let (src, len) = s.blob();
            let dst = s.kaddr();
            a.fw = Fw::sev(o);
            // SAFETY: src has len bytes or is NULL; dst checked by the model.
            ("dbg_encrypt", unsafe {
                mem_enc_sev_dbg_encrypt(fd, src, dst as *mut c_void, len, a.fw.p32())
            })
        }
        15 => {
            let fd = s.fd(false);
            let (p, n) = s.args::<mem_enc_sev_send_start_args>(48, |s, v| {
                (v.pdh_cert, v.pdh_cert_len) = s.blob();
                (v.plat_certs, v.plat_certs_len) = s.blob();
                (v.amd_certs, v.amd_certs_len) = s.blob();
            });
            outs.push(Out::new(&mut s.input, 1));
            let cap = outs[0].buf.len();
            let mut len = word(o, 2, cap);
            let mut policy = word(o, 4, S32);
            a.fw = Fw::sev(o);
            let (sp, lp, pp, f) = (
                outs[0].ptr::<u8>(),
                wp(&mut len),
                wp(&mut policy),
                a.fw.p32(),
            );
            // SAFETY: as the contract requires.
            let r = unsafe { mem_enc_sev_send_start(fd, p, n, sp, lp, pp, f) };
            a.lens_changed = changed(&len, cap);
            a.words.push(changed(&policy, S32));
            ("send_start", r)
        }
        16 => {
            let fd = s.fd(false);
            let (guest, glen) = (s.kaddr(), s.klen());
            outs.push(Out::new(&mut s.input, 1));
            outs.push(Out::new(&mut s.input, 1));
            let (hc, tc) = (outs[0].buf.len(), outs[1].buf.len());
            let (mut hl, mut tl) = (word(o, 2, hc), word(o, 4, tc));
            a.fw = Fw::sev(o);
            let (hp, tp) = (outs[0].ptr::<u8>(), outs[1].ptr::<u8>());
            let (hlp, tlp, f) = (wp(&mut hl), wp(&mut tl), a.fw.p32());
            // SAFETY: as the contract requires; guest checked by the model.
            let r = unsafe {
                mem_enc_sev_send_update_data(
                    fd,
                    guest as *const c_void,
                    glen as usize,
                    hp,
                    hlp,
                    tp,
                    tlp,
                    f,
                )
            };
            a.lens_changed = changed(&hl, hc) || changed(&tl, tc);
            ("send_update_data", r)
        }
        // ---- SNP
        20 => {
            let fd = s.fd(false);
            let sev = s.sev_fd();
            let (p, n) = s.args::<mem_enc_snp_launch_start_args>(24, |s, v| {
                if s.input.u8() & 1 == 0 {
                    v.policy &= 0x3f_ffff;
                }
            });
            a.fw = Fw::sev(o);
            // SAFETY: as the contract requires.
            ("snp_launch_start", unsafe {
                mem_enc_snp_launch_start(fd, sev, p, n, a.fw.p32())
            })
        }
        21 => {
            let fd = s.fd(false);
            let sev = s.sev_fd();
            let (p, n) = s.args::<mem_enc_snp_launch_update_args>(32, |s, v| {
                v.gfn_start = s.small();
                v.src = s.kaddr() as *mut c_void;
                v.len = s.klen();
                if s.input.u8() & 1 == 0 {
                    v.page_type %= 8;
                    v.retry_limit %= 4;
                }
            });
            a.fw = Fw::sev(o);
            let mut reached = word(o, 2, S64);
            let rp = wp(&mut reached);
            // SAFETY: as the contract requires; src checked by the model.
            let r = unsafe { mem_enc_snp_launch_update(fd, sev, p, n, rp, a.fw.p32()) };
            a.reached = Some(changed(&reached, S64));
            ("snp_launch_update", r)
        }
        22 => {
            let fd = s.fd(false);
            let sev = s.sev_fd();
            let (p, n) = s.args::<mem_enc_snp_launch_finish_args>(72, |s, v| {
                (v.id_block, v.id_block_len) = s.blob();
                (v.id_auth, v.id_auth_len) = s.blob();
                if s.input.u8() & 1 == 0 {
                    v.auth_key_en &= 1;
                    v.vcek_disabled &= 1;
                    v.reserved = [0; 6];
                }
            });
            a.fw = Fw::sev(o);
            // SAFETY: as the contract requires.
            ("snp_launch_finish", unsafe {
                mem_enc_snp_launch_finish(fd, sev, p, n, a.fw.p32())
            })
        }
        23 => {
            let fd = s.fd(false);
            let id = sev_id::SNP_ENABLE_REQ_CERTS;
            let tdx = s.w.is_tdx();
            (
                "snp_enable_req_certs",
                op_retry(fd, id, tdx, o & 1 != 0, &mut a.fw),
            )
        }
        // ---- TDX
        24 => {
            let fd = s.fd(false);
            let size = match s.input.u8() % 6 {
                0 => 47,
                1 => 4097,
                2 => usize::from(s.input.u16() % 4200),
                _ => 48,
            };
            outs.push(Out {
                buf: vec![0xA5; size],
                null: o & 8 != 0,
            });
            outs.push(Out::new(&mut s.input, size_of::<mem_enc_cpuid_entry>()));
            let cap = (outs[1].buf.len() / size_of::<mem_enc_cpuid_entry>()) as u32;
            let mut nent = word(o, 2, cap);
            a.fw = Fw::tdx(o);
            let (cp, ep, np, h) = (outs[0].ptr(), outs[1].ptr(), wp(&mut nent), a.fw.p64());
            // SAFETY: caps has `size` bytes or is NULL; entries *nent entries or NULL.
            let r = unsafe { mem_enc_tdx_capabilities(fd, cp, size, ep, np, h) };
            a.lens_changed = changed(&nent, cap);
            ("tdx_capabilities", r)
        }
        25 => {
            let fd = s.fd(false);
            let (p, n) = s.args::<mem_enc_tdx_init_vm_args>(176, |s, v| {
                let nent = match s.input.u8() % 5 {
                    0 => 0,
                    1 => 1,
                    2 => 256,
                    3 => 257,
                    _ => usize::from(s.input.u8()),
                };
                let mut entries = vec![0u8; nent * size_of::<mem_enc_cpuid_entry>()];
                s.input
                    .fill(&mut entries[..nent.min(4) * size_of::<mem_enc_cpuid_entry>()]);
                if nent > 0 && s.input.u8() & 1 == 0 {
                    // A valid GPAW leaf first.
                    let e = mem_enc_cpuid_entry {
                        function: 0x8000_0008,
                        eax: 48 << 16,
                        ..Default::default()
                    };
                    // SAFETY: the entry is plain data; entries holds at least one.
                    unsafe { core::ptr::write_unaligned(entries.as_mut_ptr().cast(), e) };
                }
                v.cpuid = if s.input.u8() & 0x80 != 0 && nent > 0 {
                    null()
                } else {
                    entries.as_ptr().cast()
                };
                v.cpuid_nent = nent as u32;
                if s.input.u8() & 1 == 0 {
                    v.attributes &= 1 << 28;
                    v.xfam &= 0x6_02e7;
                    v.reserved = 0;
                }
                s.hold.push(entries);
            });
            a.fw = Fw::tdx(o);
            // SAFETY: as the contract requires.
            ("tdx_init_vm", unsafe {
                mem_enc_tdx_init_vm(fd, p, n, a.fw.p64())
            })
        }
        26 => {
            let fd = s.fd(true);
            let rcx = s.input.u64();
            a.fw = Fw::tdx(o);
            // SAFETY: hw NULL or writable.
            ("tdx_init_vcpu", unsafe {
                mem_enc_tdx_init_vcpu(fd, rcx, a.fw.p64())
            })
        }
        27 => {
            let fd = s.fd(true);
            let (p, n) = s.args::<mem_enc_tdx_init_mem_region_args>(32, |s, v| {
                v.source = s.kaddr() as *const c_void;
                v.gpa = s.small().wrapping_mul(PAGE as u64);
                v.nr_pages = s.small();
                if s.input.u8() & 1 == 0 {
                    v.flags &= 1;
                    v.retry_limit %= 4;
                }
            });
            a.fw = Fw::tdx(o);
            let mut reached = word(o, 2, S64);
            let rp = wp(&mut reached);
            // SAFETY: as the contract requires; source checked by the model.
            let r = unsafe { mem_enc_tdx_init_mem_region(fd, p, n, rp, a.fw.p64()) };
            a.reached = Some(changed(&reached, S64));
            ("tdx_init_mem_region", r)
        }
        28 => {
            let fd = s.fd(false);
            let tdx = s.w.is_tdx();
            (
                "tdx_finalize_vm",
                op_retry(fd, tdx_id::FINALIZE_VM, tdx, o & 1 != 0, &mut a.fw),
            )
        }
        29 => {
            let fd = s.fd(true);
            outs.push(Out::new(&mut s.input, size_of::<mem_enc_cpuid_entry>()));
            let cap = (outs[0].buf.len() / size_of::<mem_enc_cpuid_entry>()) as u32;
            let mut nent = word(o, 2, cap);
            a.fw = Fw::tdx(o);
            let (ep, np, h) = (outs[0].ptr(), wp(&mut nent), a.fw.p64());
            // SAFETY: entries has *nent entries or is NULL.
            let r = unsafe { mem_enc_tdx_get_cpuid(fd, ep, np, h) };
            a.lens_changed = changed(&nent, cap);
            ("tdx_get_cpuid", r)
        }
        // ---- memory
        30 | 31 => {
            let fd = s.fd(false);
            let (addr, len) = (s.kaddr() as *mut c_void, s.klen() as usize);
            // SAFETY: the address is only handed to the kernel (the model), which checks it.
            unsafe {
                if op == 30 {
                    (
                        "register_region",
                        mem_enc_mem_register_region(fd, addr, len),
                    )
                } else {
                    (
                        "unregister_region",
                        mem_enc_mem_unregister_region(fd, addr, len),
                    )
                }
            }
        }
        // The VMM's own memory ioctls (memenc 0.2 has no exports for them).
        32 => {
            let fd = s.fd(false);
            let size = if o & 2 == 0 {
                s.small().wrapping_mul(PAGE as u64)
            } else {
                s.klen()
            };
            let mut g = uapi::kvm_create_guest_memfd {
                size,
                flags: s.small(),
                ..Default::default()
            };
            // SAFETY: the struct KVM_CREATE_GUEST_MEMFD takes.
            let r =
                unsafe { sim::ioctl(fd, uapi::KVM_CREATE_GUEST_MEMFD, &mut g as *mut _ as u64) };
            if r >= 0 {
                s.w.gmem.push(Owned(r));
                ("create_guest_memfd", 0)
            } else {
                ("create_guest_memfd", r)
            }
        }
        33 => {
            let fd = s.fd(false);
            let mut m = uapi::kvm_userspace_memory_region2 {
                slot: s.input.u32(),
                flags: s.input.u32(),
                guest_phys_addr: s.input.u64(),
                memory_size: s.input.u64(),
                userspace_addr: s.kaddr(),
                guest_memfd_offset: s.input.u64(),
                guest_memfd: s.input.u32(),
                ..Default::default()
            };
            if s.input.u8() & 1 == 0 {
                m.slot %= 4;
                m.flags &= 0x7;
                m.guest_phys_addr = s.small().wrapping_mul(PAGE as u64);
                m.memory_size = s.small().wrapping_mul(PAGE as u64);
                m.guest_memfd_offset = s.small().wrapping_mul(PAGE as u64);
                m.guest_memfd = s.w.gmem.last().map_or(u32::MAX, |g| g.0 as u32);
            }
            // SAFETY: the struct KVM_SET_USER_MEMORY_REGION2 takes; the model checks the
            // address in it (guarded or always-faulting pages).
            let r = unsafe {
                sim::ioctl(
                    fd,
                    uapi::KVM_SET_USER_MEMORY_REGION2,
                    &mut m as *mut _ as u64,
                )
            };
            ("set_user_memory_region2", r)
        }
        34 => {
            let fd = s.fd(false);
            let mut attrs = uapi::kvm_memory_attributes {
                address: s.small().wrapping_mul(PAGE as u64),
                size: s.klen(),
                attributes: if o & 2 == 0 {
                    uapi::KVM_MEMORY_ATTRIBUTE_PRIVATE
                } else {
                    0
                },
                flags: 0,
            };
            // SAFETY: the struct KVM_SET_MEMORY_ATTRIBUTES takes.
            let r = unsafe {
                sim::ioctl(
                    fd,
                    uapi::KVM_SET_MEMORY_ATTRIBUTES,
                    &mut attrs as *mut _ as u64,
                )
            };
            ("set_private", r)
        }
        // ---- simulator exports
        35 => {
            let id = s.small() as u32;
            let r = s.w.add_vcpu(id);
            ("sim_vcpu_create", r.min(0))
        }
        36 => {
            let fd = s.fd(false);
            let (p, n) = s.args::<mem_enc_sim_fault>(4, |s, v| {
                if s.input.u8() & 1 == 0 {
                    v.kind %= 6;
                    v.nth %= 4;
                    v.count %= 4;
                    // Never the status sentinel: the fw_error checks read it as "untouched".
                    v.value %= 0x1000;
                }
            });
            // SAFETY: fault valid for n bytes or NULL.
            ("sim_inject", unsafe { mem_enc_sim_inject(fd, p, n) })
        }
        37 => {
            let fd = s.fd(false);
            outs.push(Out::new(&mut s.input, 1));
            let len = outs[0].buf.len();
            let p = outs[0].ptr::<u8>();
            // SAFETY: out has len bytes or is NULL.
            let r = unsafe { mem_enc_sim_launch_digest(fd, p, len) };
            ("sim_launch_digest", r.min(0))
        }
        _ => ("private_memory", s.w.private_memory()),
    };
    let issued = sim::ioctls() - before;
    a.success_only = match op {
        // The buffers only success writes: measurement/report/session/packet/plaintext/
        // capabilities/CPUID/digest.
        9 | 12 | 14 | 15 | 16 | 24 | 29 | 37 => outs.iter().collect(),
        _ => Vec::new(),
    };
    if verbose() {
        eprintln!("helpers: {name} = {r} ({issued} ioctls)");
    }
    check(name, r, issued, &a);
    *input = Bytes(s.input.0);
}

/// MEMENC_FUZZ_VERBOSE=1: print every call and its result (to see what a corpus reaches).
fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("MEMENC_FUZZ_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let profile = input.u8();
    let vm_type = input.u8();
    let stage = input.u8();
    let launch = sim::PROFILES[profile as usize % sim::PROFILES.len()].1;
    let t = if vm_type & 1 == 0 {
        launch
    } else {
        u32::from(vm_type >> 1)
    };
    let mut w = World::new(profile, Some(t));
    w.prefix(stage % 4);
    for _ in 0..STEPS {
        if input.0.is_empty() {
            break;
        }
        step(&mut w, &mut input);
    }
});
