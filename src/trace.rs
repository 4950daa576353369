//! The optional tracing hook: a C callback called once per issued `KVM_MEMORY_ENCRYPT_OP` with
//! the command's name, scope, result, firmware status and duration (QEMU-style trace events for
//! the embedding VMM).
//!
//! Hot path cost with no hook set: one relaxed atomic load. With a hook: two clock reads, a
//! shared read lock and the callback; still no allocation (the name is copied into a stack
//! buffer to NUL-terminate it).

use core::ffi::{c_char, c_int, c_void};
use std::os::fd::RawFd;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::errno::Errno;
use crate::vendor::{Scope, Vendor};

/// One issued command, as the trace callback sees it. Valid only during the callback; copy what
/// you keep.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct mem_enc_trace_event {
    /// `sizeof(struct mem_enc_trace_event)` as memenc filled it; fields are only ever added at
    /// the end, so check it before reading a field newer than your header.
    pub size: u32,
    /// `MEM_ENC_VENDOR_SEV` or `MEM_ENC_VENDOR_TDX`: how `id` is numbered.
    pub vendor: u32,
    /// The sub-command id.
    pub id: u32,
    /// What the ioctl returned: 0 or a negative errno.
    pub ret: c_int,
    /// The kernel's name of the command, e.g. "KVM_SEV_LAUNCH_START"; "unknown" for ids memenc
    /// does not know. NUL-terminated.
    pub name: *const c_char,
    /// "vm" or "vcpu": the descriptor kind the command goes to. NUL-terminated.
    pub scope: *const c_char,
    /// The descriptor the command was issued on.
    pub fd: c_int,
    /// Always 0.
    pub reserved: u32,
    /// Firmware status after the call: SEV `error`, TDX `hw_error` (0 when not reached).
    pub status: u64,
    /// How long the ioctl took, in nanoseconds.
    pub duration_ns: u64,
}

/// The trace callback: `userdata` is what was passed to `mem_enc_set_trace()`. It may be called
/// from any thread that issues commands, concurrently.
pub type mem_enc_trace_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const mem_enc_trace_event)>;

#[derive(Clone, Copy)]
struct Hook {
    callback: unsafe extern "C" fn(*mut c_void, *const mem_enc_trace_event),
    userdata: *mut c_void,
}

// SAFETY: the pointer is the caller's opaque cookie; memenc never dereferences it and only hands
// it back to the callback, which the caller declared safe to call from any thread.
unsafe impl Send for Hook {}
// SAFETY: as above.
unsafe impl Sync for Hook {}

static ENABLED: AtomicBool = AtomicBool::new(false);
static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Installs (or with `None`, removes) the hook. Callback and userdata change together.
pub fn set(callback: mem_enc_trace_fn, userdata: *mut c_void) {
    let hook = callback.map(|callback| Hook { callback, userdata });
    let mut slot = HOOK
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = hook;
    ENABLED.store(hook.is_some(), Ordering::Release);
}

/// Before an ioctl: the start time if a hook is set. One atomic load otherwise.
#[inline]
pub fn start() -> Option<Instant> {
    if ENABLED.load(Ordering::Relaxed) {
        Some(Instant::now())
    } else {
        None
    }
}

/// After an ioctl for which [`start`] gave a time: reports it to the hook, if still set. Out of
/// line and cold: without a hook the caller never calls it.
#[cold]
#[inline(never)]
pub fn finish(
    start: Instant,
    fd: RawFd,
    vendor: Vendor,
    id: u32,
    result: Result<i32, Errno>,
    status: u64,
) {
    let duration_ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let Some(hook) = *HOOK.read().unwrap_or_else(|poisoned| poisoned.into_inner()) else {
        return;
    };
    let info = vendor.command(id);
    let mut name = [0u8; 64];
    let text = info.map_or("unknown", |c| c.name);
    let n = text.len().min(name.len() - 1);
    name[..n].copy_from_slice(&text.as_bytes()[..n]);
    let scope = match info.map_or(Scope::Vm, |c| c.scope) {
        Scope::Vm => c"vm",
        Scope::Vcpu => c"vcpu",
    };
    let event = mem_enc_trace_event {
        size: core::mem::size_of::<mem_enc_trace_event>() as u32,
        vendor: vendor.as_u32(),
        id,
        ret: match result {
            Ok(_) => 0,
            Err(e) => e.negated(),
        },
        name: name.as_ptr().cast(),
        scope: scope.as_ptr(),
        fd,
        reserved: 0,
        status,
        duration_ns,
    };
    // SAFETY: the callback was registered by the caller for exactly this use; `event` and the
    // strings it points to live until the call returns.
    unsafe { (hook.callback)(hook.userdata, &event) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_layout() {
        assert_eq!(core::mem::size_of::<mem_enc_trace_event>(), 56);
        assert_eq!(core::mem::offset_of!(mem_enc_trace_event, name), 16);
        assert_eq!(core::mem::offset_of!(mem_enc_trace_event, status), 40);
    }
}
