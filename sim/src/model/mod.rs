//! The kernel-and-firmware model.
pub mod vmsa;
