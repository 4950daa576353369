//! C exports of the process-wide settings: the trace hook and the retry limit.

use core::ffi::c_void;

use super::boundary_or;
use crate::op;
use crate::trace::{self, mem_enc_trace_fn};

/// Installs a trace callback, called once per issued `KVM_MEMORY_ENCRYPT_OP` (by `mem_enc_op()`
/// and every typed helper; each retry or continuation is its own event) with the command's
/// name, scope, return value, firmware status and duration. See `struct mem_enc_trace_event`.
///
/// Arguments:
///  "callback" - the function to call, or NULL to remove the hook. It may run on any thread
///               that issues commands, concurrently, and must not call `mem_enc_set_trace()`.
///  "userdata" - handed back to every call unchanged; memenc never dereferences it.
///
/// The callback and its userdata change together. With no hook set, tracing costs one atomic
/// load per command; with one, memenc still allocates nothing.
///
/// # Safety
/// "callback" must be NULL or a function that is safe to call with "userdata" from any thread
/// until it is replaced.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mem_enc_set_trace(callback: mem_enc_trace_fn, userdata: *mut c_void) {
    boundary_or((), || trace::set(callback, userdata));
}

/// Sets how many times a command is re-issued after a transient error (-EINTR, -EAGAIN from TDX
/// INIT_VM, -EBUSY from TDX FINALIZE_VM and the all-vCPU SEV commands), and how many rounds
/// without progress a partial-progress command (SNP_LAUNCH_UPDATE, TDX INIT_MEM_REGION) gets.
/// Applies process-wide to the typed helpers and to `mem_enc_op()` with `MEM_ENC_FLAG_RETRY`.
///
/// Arguments:
///  "limit" - the new limit; 0 disables retries. The default is `MEM_ENC_RETRY_LIMIT`.
///
/// Returns: the previous limit.
#[unsafe(no_mangle)]
pub extern "C" fn mem_enc_set_retry_limit(limit: u32) -> u32 {
    boundary_or(0, || op::set_retry_limit(limit))
}
