//! C exports of the TDX typed helpers (`mem_enc_tdx_*`). Rules as for SEV (src/capi/sev.rs)
//! with a 64-bit `hw_error` (SEAMCALL status) in place of `fw_error`. The kernel reports a
//! SEAMCALL status only for INIT_VM and FINALIZE_VM; the other commands set `hw_error` to 0.

use core::ffi::{c_int, c_void};

use super::args::{
    ArgsStruct, Cmd, Status, check_struct_out, copy_struct_to_user, fd_only, finish, put,
    put_reached,
};
use super::boundary;
use crate::helpers::tdx::{self, InitVm, MemRegion};
use crate::uapi::{
    KVM_MAX_CPUID_ENTRIES, KVM_TDX_MEASURE_MEMORY_REGION, kvm_cpuid_entry2, tdx_id as id,
};
use crate::vendor::Vendor;

fn cmd(id: u32) -> Cmd {
    Cmd::new(Vendor::Tdx, id)
}

/// One CPUID leaf: the same layout as the kernel's `struct kvm_cpuid_entry2`, so an array of
/// them can be handed to KVM_SET_CPUID2.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_cpuid_entry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Subleaf (ECX input).
    pub index: u32,
    /// `KVM_CPUID_FLAG_*`.
    pub flags: u32,
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
    /// Must be 0.
    pub padding: [u32; 3],
}

impl From<kvm_cpuid_entry2> for mem_enc_cpuid_entry {
    fn from(e: kvm_cpuid_entry2) -> Self {
        mem_enc_cpuid_entry {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: [0; 3],
        }
    }
}

impl From<mem_enc_cpuid_entry> for kvm_cpuid_entry2 {
    fn from(e: mem_enc_cpuid_entry) -> Self {
        kvm_cpuid_entry2 {
            function: e.function,
            index: e.index,
            flags: e.flags,
            eax: e.eax,
            ebx: e.ebx,
            ecx: e.ecx,
            edx: e.edx,
            padding: e.padding,
        }
    }
}

/// What `mem_enc_tdx_capabilities()` reports besides the CPUID table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct mem_enc_tdx_capabilities {
    /// TD attribute bits `mem_enc_tdx_init_vm()` accepts.
    pub supported_attrs: u64,
    /// XFAM bits `mem_enc_tdx_init_vm()` accepts.
    pub supported_xfam: u64,
    /// TDVMCALL leaves KVM handles (GetTdVmCallInfo R11).
    pub kernel_tdvmcallinfo_1_r11: u64,
    /// TDVMCALL leaves the VMM must handle (R11).
    pub user_tdvmcallinfo_1_r11: u64,
    /// As above, R12.
    pub kernel_tdvmcallinfo_1_r12: u64,
    /// As above, R12.
    pub user_tdvmcallinfo_1_r12: u64,
}
/// Size of the first version of `struct mem_enc_tdx_capabilities`.
pub const MEM_ENC_TDX_CAPABILITIES_SIZE_VER0: usize = 48;
// SAFETY: integers only.
unsafe impl ArgsStruct for mem_enc_tdx_capabilities {
    const SIZE_VER0: usize = MEM_ENC_TDX_CAPABILITIES_SIZE_VER0;
}

/// Arguments of `mem_enc_tdx_init_vm()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_tdx_init_vm_args {
    /// TD attributes: a subset of `supported_attrs`.
    pub attributes: u64,
    /// XFAM: a subset of `supported_xfam`.
    pub xfam: u64,
    /// MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// The TD's CPUID configuration.
    pub cpuid: *const mem_enc_cpuid_entry,
    /// Number of entries in "cpuid" (at most 256).
    pub cpuid_nent: u32,
    /// Must be 0.
    pub reserved: u32,
}
/// Size of the first version of `struct mem_enc_tdx_init_vm_args`.
pub const MEM_ENC_TDX_INIT_VM_ARGS_SIZE_VER0: usize = 176;
// SAFETY: integers, bytes and raw pointers only.
unsafe impl ArgsStruct for mem_enc_tdx_init_vm_args {
    const SIZE_VER0: usize = MEM_ENC_TDX_INIT_VM_ARGS_SIZE_VER0;
}

/// Arguments of `mem_enc_tdx_init_mem_region()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_tdx_init_mem_region_args {
    /// Source (user space), 4 KiB aligned.
    pub source: *const c_void,
    /// First guest physical address: 4 KiB aligned, private.
    pub gpa: u64,
    /// Number of 4 KiB pages, non-zero.
    pub nr_pages: u64,
    /// 0 or `MEM_ENC_TDX_MEASURE_MEMORY_REGION` (extend MRTD with the pages).
    pub flags: u32,
    /// How many re-issues (after -EINTR/-EBUSY, or rounds without progress) this call accepts;
    /// 0: the process-wide limit (`mem_enc_set_retry_limit()`). (The word was "reserved, must
    /// be 0" in 0.1, so 0 keeps the old behaviour.)
    pub retry_limit: u32,
}
/// Size of the first version of `struct mem_enc_tdx_init_mem_region_args`.
pub const MEM_ENC_TDX_INIT_MEM_REGION_ARGS_SIZE_VER0: usize = 32;
// SAFETY: integers and raw pointers only.
unsafe impl ArgsStruct for mem_enc_tdx_init_mem_region_args {
    const SIZE_VER0: usize = MEM_ENC_TDX_INIT_MEM_REGION_ARGS_SIZE_VER0;
}

/// Copies CPUID entries out after a capacity check done before the ioctl.
///
/// # Safety
/// "entries" must have room for `list.len()` entries (or be NULL when it is empty); "nent"
/// must be writable.
unsafe fn put_entries(
    entries: *mut mem_enc_cpuid_entry,
    nent: *mut u32,
    list: &[kvm_cpuid_entry2],
) {
    for (i, e) in list.iter().enumerate() {
        // SAFETY: room for list.len() entries (contract).
        unsafe { entries.add(i).write_unaligned((*e).into()) };
    }
    // SAFETY: writable (contract); list.len() fits u32 (bounded by the kernel's counts).
    unsafe { put(nent, list.len() as u32) };
}

/// KVM_TDX_CAPABILITIES: what this host's TDX module and KVM let a TD use. memenc sizes the
/// kernel's buffer itself (the kernel does not report the size it needs).
///
/// Arguments:
///  "vm_fd"      - a TDX VM descriptor (any time, even before INIT_VM).
///  "caps"       - out: `struct mem_enc_tdx_capabilities`, on success.
///  "caps_size"  - `sizeof(struct mem_enc_tdx_capabilities)`.
///  "entries"    - out: the configurable CPUID leaves; may be NULL when "*nent" is 0.
///  "nent"       - in: capacity of "entries"; out: entries written, or needed on -ENOSPC.
///                 Required.
///  "hw_error"   - optional SEAMCALL status (always 0 here).
///
/// Returns: 0, or -ENOSPC ("*nent" = needed; nothing else written), -EFAULT, -EINVAL
/// ("caps_size" too small), -E2BIG ("caps_size" above 4096), -ENOTTY (not a TDX VM / not an Intel host), -EIO.
///
/// # Safety
/// "caps" must have "caps_size" writable bytes; "nent" readable and writable; "entries" room
/// for "*nent" entries or NULL; "hw_error" NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_tdx_capabilities(
    vm_fd: c_int,
    caps: *mut mem_enc_tdx_capabilities,
    caps_size: usize,
    entries: *mut mem_enc_cpuid_entry,
    nent: *mut u32,
    hw_error: *mut u64,
) -> c_int {
    boundary(|| {
        let c = cmd(id::CAPABILITIES);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            c.check(check_struct_out(caps, caps_size))?;
            // SAFETY: "nent" NULL or readable (contract).
            let cap = unsafe { c.capacity(entries, nent.cast_const()) }?;
            let got = tdx::capabilities(fd)?;
            // SAFETY: "nent" is writable (NULL was refused by capacity()).
            unsafe { c.room(&[(nent, cap, got.cpuid.len() as u32)]) }?;
            Ok(got)
        })();
        // SAFETY: pointers per contract; sizes checked before the ioctl.
        unsafe {
            finish(Status::Tdx(hw_error), r, |got| {
                let out = mem_enc_tdx_capabilities {
                    supported_attrs: got.supported_attrs,
                    supported_xfam: got.supported_xfam,
                    kernel_tdvmcallinfo_1_r11: got.kernel_tdvmcallinfo_1_r11,
                    user_tdvmcallinfo_1_r11: got.user_tdvmcallinfo_1_r11,
                    kernel_tdvmcallinfo_1_r12: got.kernel_tdvmcallinfo_1_r12,
                    user_tdvmcallinfo_1_r12: got.user_tdvmcallinfo_1_r12,
                };
                // Checked before the ioctl: cannot fail.
                let _ = copy_struct_to_user(caps, caps_size, &out);
                put_entries(entries, nent, &got.cpuid);
            })
        }
    })
}

/// KVM_TDX_INIT_VM: configures the TD (before any vCPU). Retried on -EAGAIN (the CPU's
/// random-number generator ran dry) up to the retry limit.
///
/// Arguments:
///  "vm_fd"     - a TDX VM descriptor.
///  "args"      - attributes, XFAM, measurement registers, CPUID (`struct
///                mem_enc_tdx_init_vm_args`).
///  "args_size" - `sizeof(struct mem_enc_tdx_init_vm_args)`.
///  "hw_error"  - optional SEAMCALL status: for -EINVAL from TDH.MNG.INIT it names the bad
///                operand (`mem_enc_fw_strerror(MEM_ENC_VENDOR_TDX, *hw_error)`).
///
/// Returns: 0, or -E2BIG (more than 256 CPUID entries), -EINVAL (bits outside the supported
/// masks, bad CPUID, non-zero reserved, called twice), -EBUSY (vCPUs exist), -EAGAIN (entropy,
/// after the retries), -ENOTTY, -EIO.
///
/// # Safety
/// "args" must point to "args_size" readable bytes and "cpuid" to "cpuid_nent" entries;
/// "hw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_tdx_init_vm(
    vm_fd: c_int,
    args: *const mem_enc_tdx_init_vm_args,
    args_size: usize,
    hw_error: *mut u64,
) -> c_int {
    boundary(|| {
        let c = cmd(id::INIT_VM);
        let r = (|| {
            let fd = c.fd(vm_fd)?;
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            if a.reserved != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            if a.cpuid_nent > KVM_MAX_CPUID_ENTRIES {
                return Err(c.reject(libc::E2BIG));
            }
            if a.cpuid.is_null() && a.cpuid_nent != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            let cpuid: Vec<kvm_cpuid_entry2> = (0..a.cpuid_nent as usize)
                // SAFETY: "cpuid_nent" readable entries at "cpuid" (contract).
                .map(|i| unsafe { a.cpuid.add(i).read_unaligned() }.into())
                .collect();
            tdx::init_vm(
                fd,
                &InitVm {
                    attributes: a.attributes,
                    xfam: a.xfam,
                    mrconfigid: a.mrconfigid,
                    mrowner: a.mrowner,
                    mrownerconfig: a.mrownerconfig,
                    cpuid: &cpuid,
                },
            )
        })();
        // SAFETY: hw_error is NULL or writable (contract).
        unsafe { finish(Status::Tdx(hw_error), r, |()| {}) }
    })
}

/// KVM_TDX_INIT_VCPU: initialises a vCPU of an initialised TD (on the vCPU descriptor).
///
/// Arguments:
///  "vcpu_fd"  - the vCPU descriptor.
///  "rcx"      - the guest's initial RCX (TDVF: the HOB list address).
///  "hw_error" - optional; always 0 (the kernel reports no status for vCPU commands).
///
/// Returns: 0, or -EINVAL (INIT_VM not done, TD finalised, vCPU already initialised, or a VM
/// descriptor), -ENOTTY, -EIO, -ENOMEM.
///
/// # Safety
/// "hw_error" must be NULL or writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_tdx_init_vcpu(
    vcpu_fd: c_int,
    rcx: u64,
    hw_error: *mut u64,
) -> c_int {
    boundary(|| {
        // SAFETY: "hw_error" is NULL or writable (contract).
        unsafe {
            fd_only(cmd(id::INIT_VCPU), vcpu_fd, Status::Tdx(hw_error), |fd| {
                tdx::init_vcpu(fd, rcx)
            })
        }
    })
}

/// KVM_TDX_INIT_MEM_REGION over the whole range (on a vCPU descriptor): memenc re-issues the
/// command with the kernel's advanced source, GPA and page count after -EINTR until every page
/// is added, up to the retry limit.
///
/// Arguments:
///  "vcpu_fd"     - a vCPU descriptor of the TD (after INIT_VCPU, before FINALIZE).
///  "args"        - the range (`struct mem_enc_tdx_init_mem_region_args`).
///  "args_size"   - `sizeof(struct mem_enc_tdx_init_mem_region_args)`.
///  "gpa_reached" - optional out, written whenever memenc got as far as issuing: the first GPA
///                  not added (gpa + pages * 4096 on success).
///  "hw_error"    - optional; always 0.
///
/// Returns: 0 (the whole range was added), or -EINVAL (unknown flag, zero pages, misaligned,
/// non-zero reserved; or the kernel's: GPA not private, wrong state), -EINTR (signals kept
/// interrupting beyond the retry limit), -EBUSY, -EIO, -EFAULT.
///
/// # Safety
/// "args" must point to "args_size" readable bytes; out-pointers NULL or writable; "source" is
/// checked by the kernel.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_tdx_init_mem_region(
    vcpu_fd: c_int,
    args: *const mem_enc_tdx_init_mem_region_args,
    args_size: usize,
    gpa_reached: *mut u64,
    hw_error: *mut u64,
) -> c_int {
    boundary(|| {
        let c = cmd(id::INIT_MEM_REGION);
        let mut done = None;
        let r = (|| {
            let fd = c.fd(vcpu_fd)?;
            // SAFETY: "args_size" readable bytes at "args" (contract).
            let a = unsafe { c.args(args, args_size) }?;
            if a.flags & !KVM_TDX_MEASURE_MEMORY_REGION != 0 {
                return Err(c.reject(libc::EINVAL));
            }
            done = Some(a.gpa.wrapping_add(a.nr_pages.wrapping_mul(tdx::PAGE_SIZE)));
            tdx::init_mem_region_bounded(
                fd,
                &MemRegion {
                    source_addr: a.source as u64,
                    gpa: a.gpa,
                    nr_pages: a.nr_pages,
                    measure: a.flags & KVM_TDX_MEASURE_MEMORY_REGION != 0,
                },
                (a.retry_limit != 0).then_some(a.retry_limit),
            )
        })();
        // SAFETY: NULL or writable (contract).
        unsafe { put_reached(gpa_reached, &r, done) };
        // SAFETY: hw_error is NULL or writable (contract).
        unsafe { finish(Status::Tdx(hw_error), r, |()| {}) }
    })
}

/// KVM_TDX_GET_CPUID: the CPUID values the TDX module gives the TD (on a vCPU descriptor,
/// between INIT_VCPU and FINALIZE_VM).
///
/// Arguments:
///  "vcpu_fd"  - the vCPU descriptor.
///  "entries"  - out: the leaves; may be NULL when "*nent" is 0.
///  "nent"     - in: capacity; out: entries written, or needed on -ENOSPC. Required.
///  "hw_error" - optional; always 0.
///
/// Returns: 0, or -ENOSPC ("*nent" = needed), -EFAULT, -EINVAL (wrong state or a VM
/// descriptor), -ENOTTY, -EIO.
///
/// # Safety
/// "nent" readable and writable; "entries" room for "*nent" entries or NULL; "hw_error" NULL or
/// writable.
#[unsafe(no_mangle)]
#[must_use]
pub unsafe extern "C" fn mem_enc_tdx_get_cpuid(
    vcpu_fd: c_int,
    entries: *mut mem_enc_cpuid_entry,
    nent: *mut u32,
    hw_error: *mut u64,
) -> c_int {
    boundary(|| {
        let c = cmd(id::GET_CPUID);
        let r = (|| {
            let fd = c.fd(vcpu_fd)?;
            // SAFETY: "nent" NULL or readable (contract).
            let cap = unsafe { c.capacity(entries, nent.cast_const()) }?;
            match tdx::get_cpuid_with(fd, cap.min(KVM_MAX_CPUID_ENTRIES))? {
                Ok(list) => Ok(list),
                Err(n) => {
                    // SAFETY: "nent" is writable (NULL was refused by capacity()).
                    unsafe { put(nent, n) };
                    Err(c.nospace())
                }
            }
        })();
        // SAFETY: room for the entries (the kernel filled at most the capacity).
        unsafe {
            finish(Status::Tdx(hw_error), r, |list| {
                put_entries(entries, nent, &list)
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(
            size_of::<mem_enc_cpuid_entry>(),
            size_of::<kvm_cpuid_entry2>()
        );
        assert_eq!(offset_of!(mem_enc_cpuid_entry, edx), 24);
        assert_eq!(
            size_of::<mem_enc_tdx_capabilities>(),
            MEM_ENC_TDX_CAPABILITIES_SIZE_VER0
        );
        assert_eq!(
            size_of::<mem_enc_tdx_init_vm_args>(),
            MEM_ENC_TDX_INIT_VM_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_tdx_init_vm_args, mrowner), 64);
        assert_eq!(offset_of!(mem_enc_tdx_init_vm_args, cpuid), 160);
        assert_eq!(
            size_of::<mem_enc_tdx_init_mem_region_args>(),
            MEM_ENC_TDX_INIT_MEM_REGION_ARGS_SIZE_VER0
        );
        assert_eq!(offset_of!(mem_enc_tdx_init_mem_region_args, flags), 24);
    }

    #[test]
    fn cpuid_entries_round_trip() {
        let e = mem_enc_cpuid_entry {
            function: 7,
            index: 1,
            flags: 1,
            eax: 2,
            ebx: 3,
            ecx: 4,
            edx: 5,
            padding: [0; 3],
        };
        let k: kvm_cpuid_entry2 = e.into();
        assert_eq!(mem_enc_cpuid_entry::from(k), e);
    }
}
