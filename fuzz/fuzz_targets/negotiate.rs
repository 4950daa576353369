//! `mem_enc_negotiate_launch` with arbitrary capability bytes, sizes and masks, and the
//! negotiation levels it is made of (`memenc::negotiate`; their per-level C exports went in
//! 0.2) on the same capabilities.
//!
//! Input: [export][pointer flags][u16 caps_size][u32 accept / vm_type][u64 required]
//! [u64 optional][u16 req_size][u16 out_size][u16 msg_len][caps bytes...][request bytes...].
//! `export % 6`: 0 vm_type, 1 vmsa_features, 2 snp_policy, 3 tdx_attributes, 4 tdx_xfam (the
//! Rust levels, on the caps as the library reads them, or the host probe for NULL caps), 5 the
//! launch export. The caps and request buffers are exactly as long as the size passed (bytes
//! past the input read as zero); sizes run up to 4200, past the 4096 limit.
//!
//! Invariants, launch export: 0 or a documented negative errno (-EINVAL, -E2BIG, -EOPNOTSUPP;
//! with NULL caps also the errors of opening /dev/kvm); refused caps/request sizes or tails
//! leave every output untouched; `out` is written only on success and never past `out_size`,
//! nor the message past `msg_len`; the answer is the same as for the caps normalised to the
//! library's own size (growing-struct rules), and the same when asked twice. Levels: a grant
//! has every required bit and nothing that was not asked for (SNP: but bit 17, which must be
//! one); a refusal is -EINVAL or -EOPNOTSUPP with a reason; the same answer when asked twice.
#![no_main]

use core::ffi::c_char;
use libfuzzer_sys::fuzz_target;
use memenc::capi::probe::*;
use memenc::negotiate::{
    self, MEM_ENC_LAUNCH_REQUEST_SIZE_VER0, MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0,
    MEM_ENC_SNP_POLICY_RSVD_MBO, Refusal, mem_enc_launch_request, mem_enc_launch_settings,
};
use memenc::probe::{MEM_ENC_CAPS_SIZE_MAX, MEM_ENC_CAPS_SIZE_VER0, mem_enc_caps};
use memenc_fuzz::{Bytes, is_neg_errno};

const SIZE_LIMIT: usize = 4200;
const SLACK: usize = 64;
const FILL: u8 = 0xA5;

struct Call<'a> {
    export: u8,
    null_caps: bool,
    caps: &'a [u8],
    accept: u32,
    required: u64,
    optional: u64,
    req: &'a [u8],
    null_req: bool,
    out_size: usize,
    msg_len: usize,
    null_msg: bool,
}

/// What a call returned and wrote: the return value, the output buffer (including SLACK
/// bytes past the size passed) and the message buffer (likewise).
#[derive(PartialEq, Eq, Debug)]
struct Answer {
    r: i32,
    out: Vec<u8>,
    msg: Vec<u8>,
}

fn call(c: &Call) -> Answer {
    let caps = if c.null_caps {
        core::ptr::null()
    } else {
        c.caps.as_ptr().cast::<mem_enc_caps>()
    };
    let mut out = vec![FILL; c.out_size + SLACK];
    let mut msg = vec![FILL; c.msg_len + SLACK];
    // SAFETY: `caps` is NULL or `c.caps.len()` readable bytes (the size passed); `out` has at
    // least the size passed; likewise req and msg.
    let r = unsafe {
        mem_enc_negotiate_launch(
            caps,
            c.caps.len(),
            if c.null_req {
                core::ptr::null()
            } else {
                c.req.as_ptr().cast::<mem_enc_launch_request>()
            },
            c.req.len(),
            out.as_mut_ptr().cast::<mem_enc_launch_settings>(),
            c.out_size,
            if c.null_msg {
                core::ptr::null_mut()
            } else {
                msg.as_mut_ptr().cast::<c_char>()
            },
            c.msg_len,
        )
    };
    Answer { r, out, msg }
}

/// A level's answer: the granted bits (vm_type: the chosen type's bit, as the 0.1 level export
/// reported it) or the refusal.
fn level(c: &Call, caps: &mem_enc_caps) -> Result<u64, Refusal> {
    match c.export % 6 {
        0 => negotiate::vm_type(caps, c.accept).map(|v| 1u64.checked_shl(v.vm_type).unwrap_or(0)),
        1 => negotiate::vmsa_features(caps, c.accept, c.required, c.optional).map(|g| g.granted),
        2 => negotiate::snp_policy(caps, c.required, c.optional).map(|g| g.granted),
        3 => negotiate::tdx_attributes(caps, c.required, c.optional).map(|g| g.granted),
        _ => negotiate::tdx_xfam(caps, c.required, c.optional).map(|g| g.granted),
    }
}

/// The level part: the caps as the library would read them (refused ones: nothing to ask).
fn check_level(c: &Call) {
    let own = size_of::<mem_enc_caps>();
    let caps = if c.null_caps {
        match memenc::probe::probe_default() {
            Ok(caps) => caps,
            Err(_) => return, // no /dev/kvm here
        }
    } else {
        if struct_refusal(c.caps, MEM_ENC_CAPS_SIZE_VER0 as usize, own).is_some() {
            return;
        }
        // SAFETY: `normalised` is exactly one whole struct's bytes, and every bit pattern is
        // a valid mem_enc_caps (plain integers), as the C export read them.
        unsafe { core::ptr::read_unaligned(normalised(c.caps, own).as_ptr().cast()) }
    };
    let export = c.export % 6;
    let a = level(c, &caps);
    match &a {
        Ok(granted) if export == 0 => assert_eq!(
            granted & u64::from(c.accept),
            *granted,
            "vm_type: a type not accepted"
        ),
        Ok(granted) => {
            assert_eq!(
                granted & c.required,
                c.required,
                "level {export}: a required bit dropped"
            );
            let mbo = if export == 2 {
                MEM_ENC_SNP_POLICY_RSVD_MBO
            } else {
                0
            };
            let extra = granted & !(c.required | c.optional);
            assert_eq!(
                extra & !mbo,
                0,
                "level {export}: granted {extra:#x}, not asked for"
            );
        }
        Err(r) => {
            assert!(
                [libc::EINVAL, libc::EOPNOTSUPP].contains(&r.errno.0),
                "level {export}: refusal {:?}",
                r.errno
            );
            assert!(
                !r.message.is_empty(),
                "level {export}: a refusal without a reason"
            );
        }
    }
    assert_eq!(
        level(c, &caps),
        a,
        "level {export}: a different answer when asked again"
    );
}
/// The caller's struct as the library must read it: the known prefix, zero-extended.
fn normalised(bytes: &[u8], own: usize) -> Vec<u8> {
    let mut v = vec![0u8; own];
    let n = bytes.len().min(own);
    v[..n].copy_from_slice(&bytes[..n]);
    v
}

/// The documented refusal for a growing struct passed with `bytes.len()` as its size.
fn struct_refusal(bytes: &[u8], ver0: usize, own: usize) -> Option<i32> {
    if bytes.len() < ver0 {
        Some(-libc::EINVAL)
    } else if bytes.len() > MEM_ENC_CAPS_SIZE_MAX as usize
        || bytes[own.min(bytes.len())..].iter().any(|&b| b != 0)
    {
        Some(-libc::E2BIG)
    } else {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let export = input.u8();
    let ptr_flags = input.u8();
    let caps_size = input.u32() as usize % SIZE_LIMIT;
    let accept = input.u32();
    let required = input.u64();
    let optional = input.u64();
    let req_size = input.u32() as usize % SIZE_LIMIT;
    let out_size = input.u32() as usize % SIZE_LIMIT;
    let msg_len = input.u32() as usize % 1024;
    let mut caps = vec![0u8; caps_size];
    input.fill(&mut caps);
    let mut req = vec![0u8; req_size];
    input.fill(&mut req);

    let c = Call {
        export,
        null_caps: ptr_flags & 1 != 0,
        caps: &caps,
        accept,
        required,
        optional,
        req: &req,
        null_req: ptr_flags & 2 != 0,
        out_size,
        msg_len,
        null_msg: ptr_flags & 4 != 0,
    };
    if export % 6 != 5 {
        check_level(&c);
        return;
    }
    let a = call(&c);
    let out_len = a.out.len() - SLACK;

    // Documented values only.
    let documented = [0, -libc::EINVAL, -libc::E2BIG, -libc::EOPNOTSUPP];
    assert!(
        documented.contains(&a.r) || (c.null_caps && is_neg_errno(a.r)),
        "mem_enc_negotiate_launch returned {}",
        a.r
    );
    // Never past the sizes passed.
    assert!(
        a.out[out_len..].iter().all(|&b| b == FILL),
        "wrote past out_size"
    );
    assert!(
        a.msg[c.msg_len..].iter().all(|&b| b == FILL),
        "wrote past msg_len"
    );
    if c.null_msg {
        assert!(
            a.msg.iter().all(|&b| b == FILL),
            "wrote to a message buffer not passed"
        );
    }

    // Input refusals leave every output untouched.
    let own_caps = size_of::<mem_enc_caps>();
    // Every refusal that applies; when several do, the order of the checks is the library's
    // choice, so any of them is accepted.
    let mut refusals = Vec::new();
    if out_len < MEM_ENC_LAUNCH_SETTINGS_SIZE_VER0 as usize {
        refusals.push(-libc::EINVAL);
    }
    if out_len > MEM_ENC_CAPS_SIZE_MAX as usize {
        refusals.push(-libc::E2BIG);
    }
    if c.null_req {
        refusals.push(-libc::EINVAL);
    } else {
        refusals.extend(struct_refusal(
            c.req,
            MEM_ENC_LAUNCH_REQUEST_SIZE_VER0 as usize,
            size_of::<mem_enc_launch_request>(),
        ));
    }
    if !c.null_caps {
        refusals.extend(struct_refusal(
            c.caps,
            MEM_ENC_CAPS_SIZE_VER0 as usize,
            own_caps,
        ));
    }
    if !refusals.is_empty() {
        assert!(
            refusals.contains(&a.r),
            "mem_enc_negotiate_launch returned {}, expected one of {refusals:?}",
            a.r
        );
        assert!(a.out.iter().all(|&b| b == FILL), "a refused call wrote out");
        assert!(a.msg.iter().all(|&b| b == FILL), "a refused call wrote msg");
        return;
    }
    if c.null_caps && ![0, -libc::EINVAL, -libc::EOPNOTSUPP].contains(&a.r) {
        return; // the host probe itself failed (no /dev/kvm): nothing was written.
    }

    if a.r != 0 {
        assert!(a.out.iter().all(|&b| b == FILL), "out written on a refusal");
    }
    if !c.null_msg && c.msg_len > 0 {
        assert!(
            a.msg[..c.msg_len].contains(&0),
            "message not NUL-terminated"
        );
    }

    // Same answer for the normalised caps and request, and when asked again.
    let caps_n = normalised(c.caps, own_caps);
    let req_n = normalised(c.req, size_of::<mem_enc_launch_request>());
    let again = call(&Call {
        caps: if c.null_caps { c.caps } else { &caps_n },
        req: if c.null_req { c.req } else { &req_n },
        ..c
    });
    assert_eq!(again.r, a.r, "answer depends on the struct sizes");
    assert_eq!(again.out, a.out, "output depends on the struct sizes");
    assert_eq!(again.msg, a.msg, "message depends on the struct sizes");
});
