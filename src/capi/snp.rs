//! C exports of the SEV-SNP typed helpers (`mem_enc_snp_*`). The SEV rules apply (see
//! src/capi/sev.rs): 0 or -errno, optional `fw_error` set whenever an ioctl was issued, argument
//! structs passed with their `sizeof`.

use core::ffi::{c_int, c_void};

use super::args::{ArgsStruct, Cmd, Status, finish, put_reached};
use super::boundary;
use crate::helpers::snp::{self, LaunchFinish, LaunchStart, LaunchUpdate};
use crate::uapi::sev_id as id;
use crate::vendor::Vendor;

fn cmd(id: u32) -> Cmd {
    Cmd::new(Vendor::Sev, id)
}

/// Arguments of `mem_enc_snp_launch_start()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct mem_enc_snp_launch_start_args {
    /// Guest policy (SNP_POLICY_*). Bit 17 must be one: memenc sets it.
    pub policy: u64,
    /// Guest OS visible workarounds.
    pub gosvw: [u8; 16],
}
/// Size of the first version of `struct mem_enc_snp_launch_start_args`.
pub const MEM_ENC_SNP_LAUNCH_START_ARGS_SIZE_VER0: usize = 24;
// SAFETY: integers and bytes only.
unsafe impl ArgsStruct for mem_enc_snp_launch_start_args {
    const SIZE_VER0: usize = MEM_ENC_SNP_LAUNCH_START_ARGS_SIZE_VER0;
}

/// Arguments of `mem_enc_snp_launch_update()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_snp_launch_update_args {
    /// First guest frame number; every page of the range must be private
    /// (`mem_enc_mem_set_private()`) in a guest_memfd-backed memslot.
    pub gfn_start: u64,
    /// Source (user space), 4 KiB aligned; NULL for ZERO pages. For CPUID pages the kernel may
    /// write the firmware's corrected page back here.
    pub src: *mut c_void,
    /// Length in bytes: a non-zero multiple of 4096.
    pub len: u64,
    /// `MEM_ENC_SNP_PAGE_TYPE_*`.
    pub page_type: u32,
    /// How many rounds without progress this call accepts before -EAGAIN; 0: the process-wide
    /// limit (`mem_enc_set_retry_limit()`, default `MEM_ENC_RETRY_LIMIT`). (The word was
    /// "reserved, must be 0" in 0.1, so 0 keeps the old behaviour.)
    pub retry_limit: u32,
}
/// Size of the first version of `struct mem_enc_snp_launch_update_args`.
pub const MEM_ENC_SNP_LAUNCH_UPDATE_ARGS_SIZE_VER0: usize = 32;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_snp_launch_update_args {
    const SIZE_VER0: usize = MEM_ENC_SNP_LAUNCH_UPDATE_ARGS_SIZE_VER0;
}

/// SNP page type: normal (measured) data.
pub const MEM_ENC_SNP_PAGE_TYPE_NORMAL: u32 = 1;
/// SNP page type: zero page (no source).
pub const MEM_ENC_SNP_PAGE_TYPE_ZERO: u32 = 3;
/// SNP page type: unmeasured data.
pub const MEM_ENC_SNP_PAGE_TYPE_UNMEASURED: u32 = 4;
/// SNP page type: secrets page.
pub const MEM_ENC_SNP_PAGE_TYPE_SECRETS: u32 = 5;
/// SNP page type: CPUID page.
pub const MEM_ENC_SNP_PAGE_TYPE_CPUID: u32 = 6;
/// Size of an SNP ID block.
pub const MEM_ENC_SNP_ID_BLOCK_SIZE: usize = 96;
/// Size of an SNP ID authentication block.
pub const MEM_ENC_SNP_ID_AUTH_SIZE: usize = 4096;

/// Arguments of `mem_enc_snp_launch_finish()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_snp_launch_finish_args {
    /// The ID block, or NULL (then "id_auth" must be NULL too).
    pub id_block: *const u8,
    /// `MEM_ENC_SNP_ID_BLOCK_SIZE` with an ID block, 0 without.
    pub id_block_len: usize,
    /// The ID authentication block, or NULL.
    pub id_auth: *const u8,
    /// `MEM_ENC_SNP_ID_AUTH_SIZE` with an authentication block, 0 without.
    pub id_auth_len: usize,
    /// Host data included in attestation reports.
    pub host_data: [u8; 32],
    /// 1 if the authentication block carries an author key (needs an ID block).
    pub auth_key_en: u8,
    /// 1 to disable the VCEK for this guest's reports.
    pub vcek_disabled: u8,
    /// Must be 0.
    pub reserved: [u8; 6],
}
/// Size of the first version of `struct mem_enc_snp_launch_finish_args`.
pub const MEM_ENC_SNP_LAUNCH_FINISH_ARGS_SIZE_VER0: usize = 72;
// SAFETY: integers, bytes and raw pointers only.
unsafe impl ArgsStruct for mem_enc_snp_launch_finish_args {
    const SIZE_VER0: usize = MEM_ENC_SNP_LAUNCH_FINISH_ARGS_SIZE_VER0;
}

/// KVM_SEV_SNP_LAUNCH_START: creates the guest context and starts the launch (after
/// `mem_enc_sev_init2()` on an SNP VM). memenc sets policy bit 17 (must be one).
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "sev_fd"    - an open /dev/sev descriptor.
///  "args"      - policy and GOSVW (`struct mem_enc_snp_launch_start_args`).
///  "args_size" - `sizeof(struct mem_enc_snp_launch_start_args)`.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -EINVAL (policy bits the kernel does not accept, or started twice; fw_error
/// 0: KVM refused before the firmware), -ENOTTY (INIT2 not done, or the guest context could not
/// be created), -EBADF, -EIO.
///
/// # Safety
/// "args" must point to "args_size" readable bytes; "fw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_snp_launch_start(
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_snp_launch_start_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::SNP_LAUNCH_START);
        let r = (|| {
            let (vm, sev) = (c.fd(vm_fd)?, c.fd(sev_fd)?);
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            snp::launch_start(
                vm,
                sev,
                &LaunchStart {
                    policy: a.policy,
                    gosvw: a.gosvw,
                },
            )
        })();
        // SAFETY: fw_error is NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// KVM_SEV_SNP_LAUNCH_UPDATE over the whole range: memenc re-issues the command with the
/// kernel's advanced GFN, source and length until every page is added (the kernel may stop
/// early), retrying transient errors up to the retry limit.
///
/// Arguments:
///  "vm_fd"       - the VM descriptor.
///  "sev_fd"      - an open /dev/sev descriptor.
///  "args"        - the range (`struct mem_enc_snp_launch_update_args`).
///  "args_size"   - `sizeof(struct mem_enc_snp_launch_update_args)`.
///  "gfn_reached" - optional out, written whenever memenc got as far as issuing: the first GFN
///                  not added (gfn_start + pages on success). After a failure, pages before it
///                  are in the guest; resume from it.
///  "fw_error"    - optional firmware status of the last call.
///
/// Returns: 0 (the whole range was added), or -EINVAL ("len" not a non-zero multiple of 4096,
/// bad page type, non-zero reserved; or the kernel's: a GFN not private or not in a
/// guest_memfd slot, LAUNCH_START not done), -EIO (the firmware refused a page, or the first
/// page of a call failed for any reason: fw_error 0 then), -EAGAIN (no progress within the
/// retry limit), -EFAULT, -EBADF.
///
/// # Safety
/// "args" must point to "args_size" readable bytes; out-pointers NULL or writable; "src" is
/// checked by the kernel.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_snp_launch_update(
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_snp_launch_update_args,
    args_size: usize,
    gfn_reached: *mut u64,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::SNP_LAUNCH_UPDATE);
        let mut done = None;
        let r = (|| {
            let (vm, sev) = (c.fd(vm_fd)?, c.fd(sev_fd)?);
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            let page_type = u8::try_from(a.page_type)
                .ok()
                .ok_or_else(|| c.reject(libc::EINVAL))?;
            done = Some(a.gfn_start.wrapping_add(a.len / snp::PAGE_SIZE));
            snp::launch_update_bounded(
                vm,
                sev,
                &LaunchUpdate {
                    gfn_start: a.gfn_start,
                    uaddr: a.src as u64,
                    len: a.len,
                    page_type,
                },
                (a.retry_limit != 0).then_some(a.retry_limit),
            )
        })();
        // SAFETY: NULL or writable (contract).
        unsafe { put_reached(gfn_reached, &r, done) };
        // SAFETY: fw_error is NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// KVM_SEV_SNP_LAUNCH_FINISH: encrypts every vCPU's VMSA (all vCPUs must exist, registers set;
/// none may be added afterwards) and ends the launch.
///
/// Arguments:
///  "vm_fd"     - the VM descriptor.
///  "sev_fd"    - an open /dev/sev descriptor.
///  "args"      - ID block, authentication block, host data (`struct
///                mem_enc_snp_launch_finish_args`).
///  "args_size" - `sizeof(struct mem_enc_snp_launch_finish_args)`.
///  "fw_error"  - optional firmware status.
///
/// Returns: 0, or -EINVAL (block lengths not exactly `MEM_ENC_SNP_ID_BLOCK_SIZE` /
/// `MEM_ENC_SNP_ID_AUTH_SIZE`, one block without the other, "auth_key_en" without blocks,
/// non-zero reserved; or the kernel's), -EBUSY/-EINTR (retried), -ENOTTY, -EIO.
///
/// # Safety
/// "args" must point to "args_size" readable bytes and its blocks to their lengths; "fw_error"
/// must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_snp_launch_finish(
    vm_fd: c_int,
    sev_fd: c_int,
    args: *const mem_enc_snp_launch_finish_args,
    args_size: usize,
    fw_error: *mut u32,
) -> c_int {
    boundary(|| {
        let c = cmd(id::SNP_LAUNCH_FINISH);
        let r = (|| {
            let (vm, sev) = (c.fd(vm_fd)?, c.fd(sev_fd)?);
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            if a.reserved != [0; 6] || a.auth_key_en > 1 || a.vcek_disabled > 1 {
                return Err(c.reject(libc::EINVAL));
            }
            let id_block = match (a.id_block_len, a.id_auth_len) {
                (0, 0) => None,
                // SAFETY: the blocks are readable for their (checked) lengths (contract).
                (b, au) => unsafe {
                    Some((
                        c.exact::<MEM_ENC_SNP_ID_BLOCK_SIZE>(a.id_block, b)?,
                        c.exact::<MEM_ENC_SNP_ID_AUTH_SIZE>(a.id_auth, au)?,
                    ))
                },
            };
            snp::launch_finish(
                vm,
                sev,
                &LaunchFinish {
                    id_block,
                    auth_key_en: a.auth_key_en == 1,
                    vcek_disabled: a.vcek_disabled == 1,
                    host_data: a.host_data,
                },
            )
        })();
        // SAFETY: fw_error is NULL or writable (contract).
        unsafe { finish(Status::Sev(fw_error), r, |()| {}) }
    })
}

/// `KVM_EXIT_SNP_REQ_CERTS`: the `exit_reason` of a vCPU exit in which an SNP guest asks for
/// its certificate table (kernel 7.0, after `KVM_SEV_SNP_ENABLE_REQ_CERTS` through
/// `mem_enc_op()`). The same value as the kernel header's macro, for headers that predate it.
pub const MEM_ENC_KVM_EXIT_SNP_REQ_CERTS: u32 = 43;

/// `struct kvm_exit_snp_req_certs`, at `&run->snp_req_certs` (offset 32 of `struct kvm_run`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct mem_enc_snp_req_certs {
    /// Guest physical address of the guest's buffer (from the kernel).
    pub gpa: u64,
    /// Pages at "gpa" (from the kernel); for MEM_ENC_REQ_CERTS_TOO_SMALL, the pages needed.
    pub npages: u64,
    /// The answer the kernel reads when KVM_RUN is re-entered.
    pub ret: u64,
}

/// Answer for `mem_enc_snp_answer_req_certs()`: the table was written at "gpa".
pub const MEM_ENC_REQ_CERTS_WRITTEN: u32 = 0;
/// Answer: the buffer is too small; "npages" is the number of pages needed.
pub const MEM_ENC_REQ_CERTS_TOO_SMALL: u32 = 1;
/// Answer: busy, the guest may ask again later.
pub const MEM_ENC_REQ_CERTS_BUSY: u32 = 2;
/// Answer: failed.
pub const MEM_ENC_REQ_CERTS_FAILED: u32 = 3;

/// Answers a `MEM_ENC_KVM_EXIT_SNP_REQ_CERTS` exit, as the kernel's protocol requires: writes
/// `ret` (0, ENOSPC, EAGAIN or EIO, positive) and, for MEM_ENC_REQ_CERTS_TOO_SMALL, `npages`.
/// Re-enter KVM_RUN afterwards; the guest then sees success, SNP_GUEST_VMM_ERR_INVALID_LEN
/// (with "npages" in RBX), SNP_GUEST_VMM_ERR_BUSY or SNP_GUEST_VMM_ERR_GENERIC. Any other
/// `ret` would make KVM_RUN fail with -EINVAL.
///
/// Arguments:
///  "exit"   - `(struct mem_enc_snp_req_certs *)&run->snp_req_certs` of the vCPU's kvm_run.
///  "answer" - MEM_ENC_REQ_CERTS_*.
///  "npages" - pages needed (MEM_ENC_REQ_CERTS_TOO_SMALL only; ignored otherwise).
///
/// Returns: 0, or -EINVAL ("exit" NULL, unknown "answer"); nothing is written on error. Issues
/// no system call.
///
/// # Safety
/// "exit" must be NULL or point to 24 writable bytes.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_snp_answer_req_certs(
    exit: *mut mem_enc_snp_req_certs,
    answer: u32,
    npages: u64,
) -> c_int {
    boundary(|| {
        let answer = match answer {
            MEM_ENC_REQ_CERTS_WRITTEN => snp::ReqCertsAnswer::Written,
            MEM_ENC_REQ_CERTS_TOO_SMALL => snp::ReqCertsAnswer::TooSmall { npages },
            MEM_ENC_REQ_CERTS_BUSY => snp::ReqCertsAnswer::Busy,
            MEM_ENC_REQ_CERTS_FAILED => snp::ReqCertsAnswer::Failed,
            _ => return -libc::EINVAL,
        };
        // SAFETY: "exit" is NULL (checked) or 24 writable bytes (contract); the struct is plain
        // integers, read and written unaligned.
        let Some(p) = (unsafe { exit.as_mut() }) else {
            return -libc::EINVAL;
        };
        let mut k = crate::uapi::kvm_exit_snp_req_certs {
            gpa: p.gpa,
            npages: p.npages,
            ret: p.ret,
        };
        snp::answer_req_certs(&mut k, answer);
        p.npages = k.npages;
        p.ret = k.ret;
        0
    })
}

const _: () = {
    assert!(MEM_ENC_KVM_EXIT_SNP_REQ_CERTS == crate::uapi::KVM_EXIT_SNP_REQ_CERTS);
    assert!(core::mem::size_of::<mem_enc_snp_req_certs>() == 24);
    assert!(MEM_ENC_SNP_ID_BLOCK_SIZE == snp::SNP_ID_BLOCK_SIZE);
    assert!(MEM_ENC_SNP_ID_AUTH_SIZE == snp::SNP_ID_AUTH_SIZE);
    assert!(MEM_ENC_SNP_PAGE_TYPE_NORMAL == snp::page_type::NORMAL as u32);
    assert!(MEM_ENC_SNP_PAGE_TYPE_ZERO == snp::page_type::ZERO as u32);
    assert!(MEM_ENC_SNP_PAGE_TYPE_UNMEASURED == snp::page_type::UNMEASURED as u32);
    assert!(MEM_ENC_SNP_PAGE_TYPE_SECRETS == snp::page_type::SECRETS as u32);
    assert!(MEM_ENC_SNP_PAGE_TYPE_CPUID == snp::page_type::CPUID as u32);
};

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(
            size_of::<mem_enc_snp_launch_start_args>(),
            MEM_ENC_SNP_LAUNCH_START_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_snp_launch_start_args, gosvw), 8);
        assert_eq!(
            size_of::<mem_enc_snp_launch_update_args>(),
            MEM_ENC_SNP_LAUNCH_UPDATE_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_snp_launch_update_args, len), 16);
        assert_eq!(offset_of!(mem_enc_snp_launch_update_args, page_type), 24);
        assert_eq!(
            size_of::<mem_enc_snp_launch_finish_args>(),
            MEM_ENC_SNP_LAUNCH_FINISH_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_snp_launch_finish_args, host_data), 32);
        assert_eq!(offset_of!(mem_enc_snp_launch_finish_args, auth_key_en), 64);
    }
}
