//! The trace hook (its own test binary: the hook and the retry limit are process-wide).

mod helpers_common;

use std::ffi::{CStr, c_void};
use std::sync::Mutex;

use helpers_common::{amd_without_sev, real_vm};

/// KVM_SEV_LAUNCH_FINISH as a C caller issues it since 0.2: `mem_enc_op` with
/// MEM_ENC_FLAG_RETRY (the parameterless typed wrappers were removed).
///
/// # Safety
/// `fw` must be writable.
unsafe fn mem_enc_sev_launch_finish(vm: i32, fw: *mut u32) -> i32 {
    let mut cmd = memenc::mem_enc_cmd {
        flags: memenc::MEM_ENC_FLAG_RETRY,
        ..memenc::mem_enc_cmd::new(memenc::uapi::sev_id::LAUNCH_FINISH, 0)
    };
    // SAFETY: a valid 24-byte command with no parameter struct.
    let r = unsafe { memenc::capi::op::mem_enc_op(vm, &mut cmd) };
    // SAFETY: writable (contract).
    unsafe { *fw = cmd.sev().error };
    r
}
use memenc::capi::trace::{mem_enc_set_retry_limit, mem_enc_set_trace};
use memenc::trace::mem_enc_trace_event;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    name: String,
    scope: String,
    id: u32,
    ret: i32,
    status: u64,
    size: u32,
    fd: i32,
}

unsafe extern "C" fn record(userdata: *mut c_void, event: *const mem_enc_trace_event) {
    // SAFETY: userdata is the Mutex passed below; event is valid during the call.
    let (log, e) = unsafe { (&*(userdata as *const Mutex<Vec<Seen>>), &*event) };
    // SAFETY: name and scope are NUL-terminated during the call.
    let (name, scope) = unsafe { (CStr::from_ptr(e.name), CStr::from_ptr(e.scope)) };
    log.lock().unwrap().push(Seen {
        name: name.to_string_lossy().into_owned(),
        scope: scope.to_string_lossy().into_owned(),
        id: e.id,
        ret: e.ret,
        status: e.status,
        size: e.size,
        fd: e.fd,
    });
}

#[test]
fn one_event_per_issued_command_and_none_for_refused_ones() {
    let Some(host) = real_vm("one_event_per_issued_command") else {
        return;
    };
    if !amd_without_sev(&host, "one_event_per_issued_command") {
        return;
    }
    let log: &'static Mutex<Vec<Seen>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    // SAFETY: `record` is thread-safe and `log` lives forever.
    unsafe { mem_enc_set_trace(Some(record), log as *const _ as *mut c_void) };
    let mut fw = 0;
    // SAFETY: fw is writable.
    assert_eq!(
        unsafe { mem_enc_sev_launch_finish(host.vm_fd(), &mut fw) },
        -libc::ENOTTY
    );
    // Refused by memenc: no ioctl, no event.
    // SAFETY: as above.
    assert_eq!(
        unsafe { mem_enc_sev_launch_finish(-1, &mut fw) },
        -libc::EBADF
    );
    // SAFETY: removing the hook.
    unsafe { mem_enc_set_trace(None, std::ptr::null_mut()) };
    // SAFETY: as above; no hook now.
    assert_eq!(
        unsafe { mem_enc_sev_launch_finish(host.vm_fd(), &mut fw) },
        -libc::ENOTTY
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(
        seen,
        [Seen {
            name: "KVM_SEV_LAUNCH_FINISH".into(),
            scope: "vm".into(),
            id: 7,
            ret: -libc::ENOTTY,
            status: 0,
            size: std::mem::size_of::<mem_enc_trace_event>() as u32,
            fd: host.vm_fd(),
        }]
    );
}

#[test]
fn retry_limit_is_process_wide_and_returns_the_previous_value() {
    let old = mem_enc_set_retry_limit(3);
    assert_eq!(old, memenc::MEM_ENC_RETRY_LIMIT);
    assert_eq!(memenc::helpers::retry_limit(), 3);
    assert_eq!(mem_enc_set_retry_limit(old), 3);
}
