//! memenc-sim: a simulated SEV / SEV-ES / SEV-SNP / TDX host.
//!
//! - [`model`]: the kernel-and-firmware model (KVM's memory-encryption handlers per kernel
//!   version, the firmware's launch measurements), driven through its own API;
//! - [`supervisor`]: the `memenc-sim run` mechanism (seccomp user notification) that puts the
//!   model below the system-call boundary of an unmodified program.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

#[doc(hidden)]
pub mod compat;
pub mod hybrid;
pub mod inprocess;
pub mod model;
pub mod supervisor;
