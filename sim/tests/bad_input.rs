//! The bad-input table: for each export, NULL pointers, negative and closed descriptors,
//! descriptors of the wrong kind (a regular file, an eventfd, a vCPU for a VM command and the
//! reverse), unknown ids and flag bits, lengths that overflow, unaligned addresses, sizes
//! below the first version, oversized structs with a non-zero tail, non-zero reserved fields.
//! Each row gives its documented -errno without a crash. (Since 0.2 a NULL pointer where one
//! is required is -EINVAL everywhere; the parameterless sub-commands have no export of their
//! own, they are `mem_enc_op()` with MEM_ENC_FLAG_RETRY.)
//!
//! Rows memenc itself must refuse are marked `memenc`: for them no KVM_MEMORY_ENCRYPT_OP is
//! issued, checked twice: memenc's trace hook counts zero, and (when strace is installed) the
//! same rows run in a child process under `strace -f -e trace=ioctl` show no ioctl between two
//! markers, while a control call after them does show one. Rows the kernel (here: the
//! simulated host, results SIMULATED) refuses are marked `kernel` and must have issued one.

#[path = "sim_util/mod.rs"]
mod sim_util;

use core::ffi::c_void;
use core::ptr::{null, null_mut};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use memenc::capi::fwerr::*;
use memenc::capi::mem::*;
use memenc::capi::op::mem_enc_op;
use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::mem_enc_cmd;
use memenc::negotiate::*;
use memenc::uapi::{sev_id, tdx_id};
use sim_util::{Fd, gpaw48, new_vm, op_retry, td_init_args, vcpu};

const PAGE: u64 = 4096;

static ISSUED: AtomicU64 = AtomicU64::new(0);
unsafe extern "C" fn count(_: *mut c_void, _: *const memenc::trace::mem_enc_trace_event) {
    ISSUED.fetch_add(1, Ordering::Relaxed);
}
fn install_trace() {
    // SAFETY: `count` is callable from any thread.
    unsafe { memenc::capi::trace::mem_enc_set_trace(Some(count), null_mut()) };
}

/// Who must refuse the row.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum By {
    /// memenc, before any ioctl.
    Memenc,
    /// The kernel (or the simulated one): an ioctl was issued.
    Kernel,
}

struct Row {
    export: &'static str,
    case: &'static str,
    by: By,
    /// The documented results (one, or the few the docs allow for a wrong-kind descriptor).
    expect: &'static [i32],
    call: Box<dyn Fn() -> i32>,
}

fn row(
    export: &'static str,
    case: &'static str,
    by: By,
    expect: &'static [i32],
    call: impl Fn() -> i32 + 'static,
) -> Row {
    Row {
        export,
        case,
        by,
        expect,
        call: Box::new(call),
    }
}

fn bytes_of<T: Copy>(v: &T, size: usize) -> Vec<u8> {
    let n = size_of::<T>().min(size);
    let mut out = vec![0u8; size];
    // SAFETY: `v` has size_of::<T>() readable bytes; these C structs have no padding.
    out[..n].copy_from_slice(unsafe { core::slice::from_raw_parts((v as *const T).cast(), n) });
    out
}

/// `v` as a `size`-byte struct whose last byte is non-zero (an unknown field set).
fn with_tail<T: Copy>(v: &T, size: usize) -> Vec<u8> {
    let mut b = bytes_of(v, size);
    *b.last_mut().unwrap() = 1;
    b
}

const EBADF: &[i32] = &[-libc::EBADF];
const EINVAL: &[i32] = &[-libc::EINVAL];
/// NULL where a pointer is required: -EINVAL from every export since 0.2 (the typed helpers
/// answered -EFAULT in 0.1; -EFAULT is now only ever the kernel's).
const NULL_PTR: &[i32] = &[-libc::EINVAL];
const E2BIG: &[i32] = &[-libc::E2BIG];
const ENOTTY: &[i32] = &[-libc::ENOTTY];
/// A VM command on a vCPU descriptor, or the reverse: KVM has no such handler (-ENOTTY), or
/// the vendor's handler refuses the scope (-EINVAL).
const WRONG_SCOPE: &[i32] = &[-libc::ENOTTY, -libc::EINVAL];

/// Descriptors the rows use. The memenc rows aim at real descriptors where they can (so an
/// ioctl, if one slipped out, would be a real system call strace sees).
struct Fds {
    file: std::fs::File,
    eventfd: Fd,
    closed: i32,
    sev_vm: Fd,
    sev_vcpu: Fd,
    td: Fd,
    td_vcpu: Fd,
}

fn fds() -> Fds {
    let file = std::fs::File::open("Cargo.toml").unwrap();
    // SAFETY: eventfd creates a new descriptor.
    let eventfd = Fd(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) });
    assert!(eventfd.0 >= 0);
    // A number far above anything this process opens: certainly not open.
    let closed = 1_000_000;
    // SAFETY: fcntl(F_GETFD) only queries.
    assert!(unsafe { libc::fcntl(closed, libc::F_GETFD) } < 0);
    let sev_vm = new_vm("sev@6.1", 0);
    assert_eq!(op_retry(sev_vm.0, sev_id::INIT).0, 0);
    let sev_vcpu = vcpu(&sev_vm, 0).unwrap();
    let td = new_vm("tdx@6.19", MEM_ENC_VM_TYPE_TDX);
    let cpuid = [gpaw48()];
    let mut hw = 0;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { mem_enc_tdx_init_vm(td.0, &td_init_args(&cpuid), 176, &mut hw) },
        0
    );
    assert_eq!(sim_util::enable_split_irqchip(&td), Ok(0));
    let td_vcpu = vcpu(&td, 0).unwrap();
    Fds {
        file,
        eventfd,
        closed,
        sev_vm,
        sev_vcpu,
        td,
        td_vcpu,
    }
}

/// The rows memenc refuses itself, on descriptor `fd` (any open descriptor: the refusal comes
/// first). Every pointer passed is valid for the size passed with it, or NULL.
fn memenc_rows(fd: i32) -> Vec<Row> {
    use By::Memenc as M;
    let mut v = Vec::new();
    let neg = -5;
    // SAFETY (every closure below): each pointer is NULL or valid for the size passed with it;
    // the rows only break the rules memenc checks.
    unsafe {
        // mem_enc_op
        v.push(row("mem_enc_op", "negative fd", M, EBADF, move || {
            let mut c = mem_enc_cmd::new(0, 0);
            mem_enc_op(neg, &mut c)
        }));
        v.push(row(
            "mem_enc_op",
            "unknown kernel flag bit",
            M,
            EINVAL,
            move || {
                let mut c = mem_enc_cmd::new(0, 0);
                c.flags = 1 << 20;
                mem_enc_op(fd, &mut c)
            },
        ));
        v.push(row(
            "mem_enc_op",
            "reserved library flag bit",
            M,
            EINVAL,
            move || {
                let mut c = mem_enc_cmd::new(0, 0);
                c.flags = 1 << 24;
                mem_enc_op(fd, &mut c)
            },
        ));
        v.push(row(
            "mem_enc_op",
            "unknown id with a flag",
            M,
            EINVAL,
            move || {
                let mut c = mem_enc_cmd::new(0xdead, 0);
                c.flags = memenc::MEM_ENC_FLAG_RETRY;
                mem_enc_op(fd, &mut c)
            },
        ));
        v.push(row(
            "mem_enc_op",
            "CONTINUE on a command without progress",
            M,
            EINVAL,
            move || {
                let mut c = mem_enc_cmd::new(0, 0);
                c.flags = memenc::MEM_ENC_FLAG_CONTINUE;
                mem_enc_op(fd, &mut c)
            },
        ));

        // SEV
        let init2 = mem_enc_sev_init2_args::default();
        v.push(row(
            "mem_enc_sev_init2",
            "NULL args",
            M,
            NULL_PTR,
            move || mem_enc_sev_init2(fd, null(), 16, null_mut()),
        ));
        v.push(row(
            "mem_enc_sev_init2",
            "size below VER0",
            M,
            EINVAL,
            move || mem_enc_sev_init2(fd, &init2, 15, null_mut()),
        ));
        let tail = with_tail(&init2, 4096);
        v.push(row(
            "mem_enc_sev_init2",
            "4096 bytes, non-zero tail",
            M,
            E2BIG,
            move || mem_enc_sev_init2(fd, tail.as_ptr().cast(), 4096, null_mut()),
        ));
        let big = bytes_of(&init2, 4097);
        v.push(row(
            "mem_enc_sev_init2",
            "size above 4096",
            M,
            E2BIG,
            move || mem_enc_sev_init2(fd, big.as_ptr().cast(), 4097, null_mut()),
        ));
        let active = mem_enc_sev_init2_args {
            vmsa_features: MEM_ENC_SEV_FEAT_SNP_ACTIVE,
            ..Default::default()
        };
        v.push(row(
            "mem_enc_sev_init2",
            "SNP_ACTIVE requested",
            M,
            EINVAL,
            move || mem_enc_sev_init2(fd, &active, 16, null_mut()),
        ));
        let reserved = mem_enc_sev_init2_args {
            reserved1: 1,
            ..Default::default()
        };
        v.push(row(
            "mem_enc_sev_init2",
            "non-zero reserved field",
            M,
            EINVAL,
            move || mem_enc_sev_init2(fd, &reserved, 16, null_mut()),
        ));
        v.push(row(
            "mem_enc_sev_init2",
            "negative fd",
            M,
            EBADF,
            move || mem_enc_sev_init2(neg, &init2, 16, null_mut()),
        ));
        let start = mem_enc_sev_start_args {
            handle: 0,
            policy: 1,
            cert: null(),
            cert_len: 0,
            session: null(),
            session_len: 0,
        };
        type Start = unsafe extern "C" fn(
            i32,
            i32,
            *const mem_enc_sev_start_args,
            usize,
            *mut u32,
            *mut u32,
        ) -> i32;
        for (name, f) in [
            (
                "mem_enc_sev_launch_start",
                mem_enc_sev_launch_start as Start,
            ),
            ("mem_enc_sev_receive_start", mem_enc_sev_receive_start),
        ] {
            v.push(row(name, "NULL args", M, NULL_PTR, move || {
                f(fd, fd, null(), 40, null_mut(), null_mut())
            }));
            v.push(row(name, "size below VER0", M, EINVAL, move || {
                f(fd, fd, &start, 39, null_mut(), null_mut())
            }));
            let tail = with_tail(&start, 64);
            v.push(row(name, "64 bytes, non-zero tail", M, E2BIG, move || {
                f(fd, fd, tail.as_ptr().cast(), 64, null_mut(), null_mut())
            }));
            let nullblob = mem_enc_sev_start_args {
                cert_len: 16,
                ..start
            };
            v.push(row(
                name,
                "NULL blob with a length",
                M,
                NULL_PTR,
                move || f(fd, fd, &nullblob, 40, null_mut(), null_mut()),
            ));
            v.push(row(name, "negative fd", M, EBADF, move || {
                f(neg, fd, &start, 40, null_mut(), null_mut())
            }));
        }
        v.push(row(
            "mem_enc_sev_launch_update_data",
            "length above 4 GiB - 1",
            M,
            EINVAL,
            move || mem_enc_sev_launch_update_data(fd, 0x10000 as *mut c_void, 1 << 32, null_mut()),
        ));
        v.push(row(
            "mem_enc_sev_launch_update_data",
            "negative fd",
            M,
            EBADF,
            move || mem_enc_sev_launch_update_data(neg, 0x10000 as *mut c_void, 16, null_mut()),
        ));
        let packet = mem_enc_sev_packet_args {
            hdr: null(),
            hdr_len: 0,
            guest: null_mut(),
            guest_len: 0,
            trans: null(),
            trans_len: 0,
        };
        type Packet =
            unsafe extern "C" fn(i32, *const mem_enc_sev_packet_args, usize, *mut u32) -> i32;
        for (name, f) in [
            (
                "mem_enc_sev_launch_secret",
                mem_enc_sev_launch_secret as Packet,
            ),
            (
                "mem_enc_sev_receive_update_data",
                mem_enc_sev_receive_update_data,
            ),
        ] {
            v.push(row(name, "NULL args", M, NULL_PTR, move || {
                f(fd, null(), 48, null_mut())
            }));
            v.push(row(name, "size below VER0", M, EINVAL, move || {
                f(fd, &packet, 47, null_mut())
            }));
            let tail = with_tail(&packet, 4096);
            v.push(row(
                name,
                "4096 bytes, non-zero tail",
                M,
                E2BIG,
                move || f(fd, tail.as_ptr().cast(), 4096, null_mut()),
            ));
            let nullhdr = mem_enc_sev_packet_args {
                hdr_len: 52,
                ..packet
            };
            v.push(row(
                name,
                "NULL header with a length",
                M,
                NULL_PTR,
                move || f(fd, &nullhdr, 48, null_mut()),
            ));
        }
        let mut len = 16usize;
        let lp: *mut usize = &mut len;
        v.push(row(
            "mem_enc_sev_launch_measure",
            "NULL len",
            M,
            NULL_PTR,
            move || mem_enc_sev_launch_measure(fd, null_mut(), null_mut(), null_mut()),
        ));
        v.push(row(
            "mem_enc_sev_launch_measure",
            "NULL buf with a length",
            M,
            NULL_PTR,
            move || {
                *lp = 16;
                mem_enc_sev_launch_measure(fd, null_mut(), lp, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_sev_guest_status",
            "negative fd",
            M,
            EBADF,
            move || mem_enc_sev_guest_status(neg, null_mut(), null_mut(), null_mut(), null_mut()),
        ));
        v.push(row(
            "mem_enc_sev_dbg_decrypt",
            "NULL dst with a length",
            M,
            NULL_PTR,
            move || {
                mem_enc_sev_dbg_decrypt(fd, 0x10000 as *const c_void, null_mut(), 16, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_sev_dbg_encrypt",
            "NULL src with a length",
            M,
            NULL_PTR,
            move || mem_enc_sev_dbg_encrypt(fd, null(), 0x10000 as *mut c_void, 16, null_mut()),
        ));
        let nonce = [0u8; 16];
        let np = nonce.as_ptr();
        v.push(row(
            "mem_enc_sev_get_attestation_report",
            "nonce length 15",
            M,
            EINVAL,
            move || {
                *lp = 0;
                mem_enc_sev_get_attestation_report(fd, np, 15, null_mut(), lp, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_sev_get_attestation_report",
            "NULL len",
            M,
            NULL_PTR,
            move || {
                mem_enc_sev_get_attestation_report(fd, np, 16, null_mut(), null_mut(), null_mut())
            },
        ));
        let send = mem_enc_sev_send_start_args {
            pdh_cert: null(),
            pdh_cert_len: 0,
            plat_certs: null(),
            plat_certs_len: 0,
            amd_certs: null(),
            amd_certs_len: 0,
        };
        v.push(row(
            "mem_enc_sev_send_start",
            "NULL session_len",
            M,
            NULL_PTR,
            move || {
                mem_enc_sev_send_start(
                    fd,
                    &send,
                    48,
                    null_mut(),
                    null_mut(),
                    null_mut(),
                    null_mut(),
                )
            },
        ));
        let tail = with_tail(&send, 100);
        v.push(row(
            "mem_enc_sev_send_start",
            "100 bytes, non-zero tail",
            M,
            E2BIG,
            move || {
                *lp = 0;
                mem_enc_sev_send_start(
                    fd,
                    tail.as_ptr().cast(),
                    100,
                    null_mut(),
                    lp,
                    null_mut(),
                    null_mut(),
                )
            },
        ));
        v.push(row(
            "mem_enc_sev_send_update_data",
            "NULL lengths",
            M,
            NULL_PTR,
            move || {
                mem_enc_sev_send_update_data(
                    fd,
                    0x10000 as *const c_void,
                    16,
                    null_mut(),
                    null_mut(),
                    null_mut(),
                    null_mut(),
                    null_mut(),
                )
            },
        ));

        // SNP
        let sstart = mem_enc_snp_launch_start_args {
            policy: 0,
            gosvw: [0; 16],
        };
        v.push(row(
            "mem_enc_snp_launch_start",
            "NULL args",
            M,
            NULL_PTR,
            move || mem_enc_snp_launch_start(fd, fd, null(), 24, null_mut()),
        ));
        let tail = with_tail(&sstart, 4096);
        v.push(row(
            "mem_enc_snp_launch_start",
            "4096 bytes, non-zero tail",
            M,
            E2BIG,
            move || mem_enc_snp_launch_start(fd, fd, tail.as_ptr().cast(), 4096, null_mut()),
        ));
        let upd = mem_enc_snp_launch_update_args {
            gfn_start: 0,
            src: 0x10000 as *mut c_void,
            len: PAGE,
            page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
            retry_limit: 0,
        };
        let mut reached = 7u64;
        let rp: *mut u64 = &mut reached;
        for (case, bad, want) in [
            (
                "length not a multiple of 4096",
                mem_enc_snp_launch_update_args { len: 100, ..upd },
                EINVAL,
            ),
            (
                "length 0",
                mem_enc_snp_launch_update_args { len: 0, ..upd },
                EINVAL,
            ),
            (
                "page type 0x101 (not a byte)",
                mem_enc_snp_launch_update_args {
                    page_type: 0x101,
                    ..upd
                },
                EINVAL,
            ),
            // A NULL or unaligned source of a non-ZERO page: refused before the kernel, which
            // WARNs on NULL and measures an unaligned source as is (0.2).
            (
                "NULL source",
                mem_enc_snp_launch_update_args {
                    src: null_mut(),
                    ..upd
                },
                EINVAL,
            ),
            (
                "unaligned source",
                mem_enc_snp_launch_update_args {
                    src: 0x10010 as *mut c_void,
                    ..upd
                },
                EINVAL,
            ),
        ] {
            v.push(row("mem_enc_snp_launch_update", case, M, want, move || {
                *rp = 7;
                let r = mem_enc_snp_launch_update(fd, fd, &bad, 32, rp, null_mut());
                assert_eq!(
                    *rp, 7,
                    "{case}: gfn_reached written without an ioctl (r {r})"
                );
                r
            }));
        }
        v.push(row(
            "mem_enc_snp_launch_update",
            "size below VER0",
            M,
            EINVAL,
            move || mem_enc_snp_launch_update(fd, fd, &upd, 31, null_mut(), null_mut()),
        ));
        let fin = mem_enc_snp_launch_finish_args {
            id_block: null(),
            id_block_len: 0,
            id_auth: null(),
            id_auth_len: 0,
            host_data: [0; 32],
            auth_key_en: 0,
            vcek_disabled: 0,
            reserved: [0; 6],
        };
        let block = vec![0u8; 4096];
        let bp = block.as_ptr();
        for (case, bad) in [
            (
                "ID block of 95 bytes",
                mem_enc_snp_launch_finish_args {
                    id_block: bp,
                    id_block_len: 95,
                    id_auth: bp,
                    id_auth_len: 4096,
                    ..fin
                },
            ),
            (
                "ID block without its auth block",
                mem_enc_snp_launch_finish_args {
                    id_block: bp,
                    id_block_len: 96,
                    ..fin
                },
            ),
            (
                "auth_key_en without blocks",
                mem_enc_snp_launch_finish_args {
                    auth_key_en: 1,
                    ..fin
                },
            ),
            (
                "non-zero reserved bytes",
                mem_enc_snp_launch_finish_args {
                    reserved: [0, 0, 0, 0, 0, 1],
                    ..fin
                },
            ),
        ] {
            let keep = block.clone();
            v.push(row(
                "mem_enc_snp_launch_finish",
                case,
                M,
                EINVAL,
                move || {
                    let _ = &keep;
                    mem_enc_snp_launch_finish(fd, fd, &bad, 72, null_mut())
                },
            ));
        }

        // TDX
        let mut nent = 0u32;
        let nentp: *mut u32 = &mut nent;
        let mut caps = [0u8; 4097];
        let cp: *mut mem_enc_tdx_capabilities = caps.as_mut_ptr().cast();
        v.push(row(
            "mem_enc_tdx_capabilities",
            "NULL nent",
            M,
            NULL_PTR,
            move || mem_enc_tdx_capabilities(fd, cp, 48, null_mut(), null_mut(), null_mut()),
        ));
        v.push(row(
            "mem_enc_tdx_capabilities",
            "caps size below VER0",
            M,
            EINVAL,
            move || {
                *nentp = 0;
                mem_enc_tdx_capabilities(fd, cp, 47, null_mut(), nentp, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_tdx_capabilities",
            "caps size above 4096",
            M,
            E2BIG,
            move || {
                *nentp = 0;
                mem_enc_tdx_capabilities(fd, cp, 4097, null_mut(), nentp, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_tdx_capabilities",
            "NULL entries with a capacity",
            M,
            NULL_PTR,
            move || {
                *nentp = 5;
                mem_enc_tdx_capabilities(fd, cp, 48, null_mut(), nentp, null_mut())
            },
        ));
        let many = vec![mem_enc_cpuid_entry::default(); 257];
        let too_many = td_init_args(&many);
        v.push(row(
            "mem_enc_tdx_init_vm",
            "257 CPUID entries",
            M,
            E2BIG,
            move || {
                let _ = &many;
                mem_enc_tdx_init_vm(fd, &too_many, 176, null_mut())
            },
        ));
        let one = [mem_enc_cpuid_entry::default()];
        let args = td_init_args(&one);
        let reserved = mem_enc_tdx_init_vm_args {
            reserved: 1,
            ..args
        };
        v.push(row(
            "mem_enc_tdx_init_vm",
            "non-zero reserved field",
            M,
            EINVAL,
            move || {
                let _ = &one;
                mem_enc_tdx_init_vm(fd, &reserved, 176, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_tdx_init_vm",
            "NULL args",
            M,
            NULL_PTR,
            move || mem_enc_tdx_init_vm(fd, null(), 176, null_mut()),
        ));
        v.push(row(
            "mem_enc_tdx_init_vcpu",
            "negative fd",
            M,
            EBADF,
            move || mem_enc_tdx_init_vcpu(neg, 0, null_mut()),
        ));
        let region = mem_enc_tdx_init_mem_region_args {
            source: 0x10000 as *const c_void,
            gpa: 0,
            nr_pages: 1,
            flags: 0,
            retry_limit: 0,
        };
        for (case, bad) in [
            (
                "unknown flag bit",
                mem_enc_tdx_init_mem_region_args { flags: 2, ..region },
            ),
            (
                "zero pages",
                mem_enc_tdx_init_mem_region_args {
                    nr_pages: 0,
                    ..region
                },
            ),
            (
                "unaligned GPA",
                mem_enc_tdx_init_mem_region_args {
                    gpa: 0x800,
                    ..region
                },
            ),
            (
                "unaligned source",
                mem_enc_tdx_init_mem_region_args {
                    source: 0x10010 as *const c_void,
                    ..region
                },
            ),
            (
                "GPA range wraps",
                mem_enc_tdx_init_mem_region_args {
                    gpa: !0xfff,
                    nr_pages: 2,
                    ..region
                },
            ),
            (
                "page count overflows",
                mem_enc_tdx_init_mem_region_args {
                    nr_pages: u64::MAX / 2,
                    ..region
                },
            ),
        ] {
            v.push(row(
                "mem_enc_tdx_init_mem_region",
                case,
                M,
                EINVAL,
                move || {
                    *rp = 7;
                    let r = mem_enc_tdx_init_mem_region(fd, &bad, 32, rp, null_mut());
                    assert_eq!(
                        *rp, 7,
                        "{case}: gpa_reached written without an ioctl (r {r})"
                    );
                    r
                },
            ));
        }
        v.push(row(
            "mem_enc_tdx_get_cpuid",
            "NULL nent",
            M,
            NULL_PTR,
            move || mem_enc_tdx_get_cpuid(fd, null_mut(), null_mut(), null_mut()),
        ));

        // Memory exports (other ioctls than KVM_MEMORY_ENCRYPT_OP: strace shows them too).
        v.push(row(
            "mem_enc_mem_register_region",
            "negative fd",
            M,
            EBADF,
            move || mem_enc_mem_register_region(neg, 0x10000 as *mut c_void, 4096),
        ));
    }
    v
}

/// Rows the kernel (the simulated host, or the real kernel for non-KVM descriptors) refuses:
/// an ioctl is issued and its answer returned.
fn kernel_rows(f: &Fds) -> Vec<Row> {
    use By::Kernel as K;
    let mut v = Vec::new();
    let (file, efd, closed) = (f.file.as_raw_fd(), f.eventfd.0, f.closed);
    let (sev_vm, sev_vcpu, td, td_vcpu) = (f.sev_vm.0, f.sev_vcpu.0, f.td.0, f.td_vcpu.0);
    // SAFETY (every closure): pointers NULL or valid for their sizes.
    unsafe {
        for (case, fd, want) in [
            ("closed descriptor", closed, EBADF),
            ("regular file", file, ENOTTY),
            ("eventfd", efd, ENOTTY),
        ] {
            v.push(row("mem_enc_op", case, K, want, move || {
                let mut c = mem_enc_cmd::new(0, 0);
                mem_enc_op(fd, &mut c)
            }));
            // A TDX command on a descriptor of a host whose CPU is not Intel: memenc answers
            // -ENOTTY ("not an Intel host") itself, before looking at the descriptor.
            let (by, tdx_want) = if memenc::host::cpu_vendor() == memenc::Vendor::Tdx {
                (K, want)
            } else {
                (By::Memenc, ENOTTY)
            };
            v.push(row(
                "mem_enc_tdx_init_vcpu",
                case,
                by,
                tdx_want,
                move || mem_enc_tdx_init_vcpu(fd, 0, null_mut()),
            ));
            v.push(row("mem_enc_sev_guest_status", case, K, want, move || {
                mem_enc_sev_guest_status(fd, null_mut(), null_mut(), null_mut(), null_mut())
            }));
        }
        // The parameterless VM commands, as a VMM issues them (mem_enc_op, RETRY).
        for (case, fd, id) in [
            ("SEV INIT on a vCPU descriptor", sev_vcpu, sev_id::INIT),
            (
                "SEV LAUNCH_FINISH on a vCPU descriptor",
                sev_vcpu,
                sev_id::LAUNCH_FINISH,
            ),
            (
                "TDX FINALIZE_VM on a vCPU descriptor",
                td_vcpu,
                tdx_id::FINALIZE_VM,
            ),
        ] {
            v.push(row("mem_enc_op", case, K, WRONG_SCOPE, move || {
                op_retry(fd, id).0
            }));
        }
        v.push(row(
            "mem_enc_tdx_init_vcpu",
            "VM descriptor for a vCPU command",
            K,
            WRONG_SCOPE,
            move || mem_enc_tdx_init_vcpu(td, 0, null_mut()),
        ));
        let mut n = 0u32;
        let np: *mut u32 = &mut n;
        v.push(row(
            "mem_enc_tdx_get_cpuid",
            "VM descriptor for a vCPU command",
            K,
            WRONG_SCOPE,
            move || {
                *np = 0;
                mem_enc_tdx_get_cpuid(td, null_mut(), np, null_mut())
            },
        ));
        v.push(row(
            "mem_enc_tdx_init_vcpu",
            "SEV VM (TDX command on an AMD-numbered VM: memenc knows the vendor)",
            By::Memenc,
            ENOTTY,
            move || mem_enc_tdx_init_vcpu(sev_vm, 0, null_mut()),
        ));
        // The VMM's own KVM_SET_MEMORY_ATTRIBUTES (no memenc export since 0.2).
        v.push(row(
            "KVM_SET_MEMORY_ATTRIBUTES",
            "unaligned GPA",
            K,
            EINVAL,
            move || sim_util::memory_attributes(td, 100, PAGE, true),
        ));
        v.push(row(
            "mem_enc_mem_register_region",
            "size 0",
            K,
            EINVAL,
            move || mem_enc_mem_register_region(sev_vm, 0x10000 as *mut c_void, 0),
        ));
    }
    v
}

fn run(rows: &[Row], check_trace: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for r in rows {
        let before = ISSUED.load(Ordering::Relaxed);
        let got = (r.call)();
        let issued = ISSUED.load(Ordering::Relaxed) - before;
        let trace_ok = !check_trace
            || match r.by {
                By::Memenc => issued == 0,
                // The memory exports and the plain KVM ioctls issue other ioctls than
                // KVM_MEMORY_ENCRYPT_OP.
                By::Kernel => {
                    issued >= 1
                        || r.export.starts_with("mem_enc_mem_")
                        || r.export.starts_with("KVM_")
                }
            };
        let stage_ok = r.by == By::Kernel
            || r.export == "mem_enc_op"
            || mem_enc_last_stage() == MEM_ENC_STAGE_MEMENC;
        if !r.expect.contains(&got) || !trace_ok || !stage_ok {
            failures.push(format!(
                "{} / {}: got {got} (expected one of {:?}), {issued} ioctls, by {:?}, stage {}",
                r.export,
                r.case,
                r.expect,
                r.by,
                mem_enc_last_stage()
            ));
        }
    }
    failures
}

#[test]
fn every_bad_input_gets_its_documented_errno() {
    install_trace();
    let f = fds();
    // memenc's refusals, on a real descriptor and on simulated VM and vCPU descriptors.
    let mut failures = Vec::new();
    let mut count = 0;
    for fd in [f.file.as_raw_fd(), f.sev_vm.0, f.td_vcpu.0] {
        let rows = memenc_rows(fd);
        count += rows.len();
        failures.extend(run(&rows, true));
    }
    let rows = kernel_rows(&f);
    count += rows.len();
    failures.extend(run(&rows, true));
    assert!(
        failures.is_empty(),
        "{} of {count} rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "bad input: {count} rows, every one its documented errno; memenc's refusals issued no ioctl (trace hook)"
    );
}

const CHILD_ENV: &str = "MEMENC_BAD_INPUT_STRACE_CHILD";

/// The strace child: memenc's refusals on a real descriptor between two markers, then one
/// accepted call (a real ioctl, the control).
#[test]
fn strace_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let file = std::fs::File::open("Cargo.toml").unwrap();
    let rows = memenc_rows(file.as_raw_fd());
    let mark = |s: &str| {
        // SAFETY: writing our own bytes to stderr.
        unsafe { libc::write(2, s.as_ptr().cast(), s.len()) };
    };
    // The host's vendor is read once per process (KVM_CHECK_EXTENSION(VM_TYPES)): before the
    // markers, so what is counted between them is what the rejected commands issue.
    let _ = memenc::host::vendor_of(file.as_raw_fd());
    mark("MEMENC-BEGIN\n");
    let failures = run(&rows, false);
    mark("MEMENC-END\n");
    let mut c = mem_enc_cmd::new(0, 0);
    // SAFETY: a valid command; the regular file answers -ENOTTY.
    let control = unsafe { mem_enc_op(file.as_raw_fd(), &mut c) };
    mark("MEMENC-CONTROL\n");
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(control, -libc::ENOTTY);
    println!("{} rows", rows.len());
}

/// Runs `strace_child` under `strace -f -e trace=ioctl,write`: no ioctl between the markers, at
/// least one (the control) after them.
#[test]
fn no_ioctl_for_rejected_input_under_strace() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        println!(
            "SKIPPED: strace not installed: the trace-hook check in every_bad_input_gets_its_documented_errno still ran"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=ioctl,write", "-o", "/dev/stdout", "--"])
        .arg(&exe)
        .args(["--exact", "strace_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {}\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    if log.contains("PTRACE_TRACEME") || !log.contains("MEMENC-BEGIN") {
        println!(
            "SKIPPED: strace could not trace here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let lines: Vec<&str> = log.lines().collect();
    let at = |m: &str| {
        lines
            .iter()
            .position(|l| l.contains(m))
            .unwrap_or_else(|| panic!("{m} missing:\n{log}"))
    };
    let (begin, end, control) = (at("MEMENC-BEGIN"), at("MEMENC-END"), at("MEMENC-CONTROL"));
    let ioctls_between: Vec<&&str> = lines[begin..end]
        .iter()
        .filter(|l| l.contains("ioctl("))
        .collect();
    assert!(
        ioctls_between.is_empty(),
        "ioctls for rejected input:\n{ioctls_between:#?}"
    );
    assert!(
        lines[end..control]
            .iter()
            .any(|l| l.contains("ioctl(") && l.contains("ENOTTY")),
        "the control ioctl is missing: strace saw nothing?\n{}",
        lines[end..control].join("\n")
    );
    println!(
        "strace: {} lines between the markers, 0 ioctls; control ioctl seen",
        end - begin
    );
}
