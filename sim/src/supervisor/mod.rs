//! The supervisor: seccomp user notification and ptrace below an unmodified program.
