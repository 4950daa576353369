//! The kernel-and-firmware model.
