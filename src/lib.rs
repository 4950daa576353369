//! memenc: one correct, tested way to drive Linux KVM's `KVM_MEMORY_ENCRYPT_OP` for AMD SEV,
//! SEV-ES, SEV-SNP and Intel TDX guests, for C VMMs (through `include/memenc.h`) and Rust VMMs
//! (through this crate).
//!
//! Rust VMMs use [`EncVm`] and [`EncVcpu`] (typed, borrowed descriptors; one method per
//! sub-command) and [`Error`], which converts into `std::io::Error`. The modules marked hidden
//! (`capi`, `host`, `op`, `uapi`, `trace`) are the C layer's and the simulator's, not API.
//!
//! Data flows one way: [`capi`] (C boundary) → [`op`] (dispatch) → [`vendor`] (command tables)
//! → [`host`] (the only code that issues ioctls: libc's `ioctl()` or the VMM's own route).
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(clippy::missing_safety_doc)]

pub mod abi;
#[doc(hidden)]
pub mod capi;
/// cbindgen:ignore
pub mod errno;
/// cbindgen:ignore
pub mod fwerr;
/// cbindgen:ignore
pub mod helpers;
/// cbindgen:ignore
#[doc(hidden)]
pub mod host;
pub mod negotiate;
/// cbindgen:ignore
#[doc(hidden)]
pub mod op;
pub mod probe;
#[doc(hidden)]
pub mod trace;
/// cbindgen:ignore
#[doc(hidden)]
pub mod uapi;
/// cbindgen:ignore
pub mod vendor;
/// cbindgen:ignore
pub mod vm;

pub use abi::*;
pub use errno::Errno;
pub use host::{Host, cpu_vendor, set_host};
pub use op::{encryption_enabled, memory_encrypt_op};
pub use vendor::Vendor;
pub use vm::{EncVcpu, EncVm, Error, Result};
