//! Fault injection: make the Nth matching command of a VM fail the way the real kernel or
//! firmware can (a pending signal, entropy exhaustion, a busy module, a firmware status, or a
//! partial-progress return), so callers' retry and continue paths can be exercised.

use memenc::Errno;

/// A fault's `cmd_id` that matches every sub-command.
pub const ANY_CMD: u32 = u32::MAX;

/// What an armed fault does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Stop the page loop after this many pages (SNP_LAUNCH_UPDATE returns 0 with progress;
    /// TDX INIT_MEM_REGION sees a signal: -EINTR with progress).
    Progress(u64),
    /// A signal is pending where the kernel checks for one (killable locks, page loops).
    Signal,
    /// TDX: TDX_RND_NO_ENTROPY (-EAGAIN) at INIT_VM; elsewhere the errno as is.
    Again,
    /// TDX only: TDX_OPERAND_BUSY from the module (FINALIZE_VM, PAGE.ADD), or 6.19's state
    /// guard (-EBUSY while a vCPU is being created); elsewhere on a TD -EBUSY as is. No SEV
    /// path returns a transient -EBUSY (`kvm_lock_all_vcpus` is killable only; the PSP
    /// driver's -EBUSY means a dead PSP), so arming it on an SEV host's VM is refused.
    Busy,
    /// The firmware or module returns this status.
    FwStatus(u64),
}

#[derive(Clone, Copy, Debug)]
struct Armed {
    effect: Effect,
    cmd_id: u32,
    skip: u32,
    remaining: u32,
}

/// The faults armed on one VM.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Vec<Armed>,
}

impl Faults {
    /// Arms `effect` for the `nth` next command with id `cmd_id` (or [`ANY_CMD`]; `nth` 0 is
    /// read as 1), firing on `count` consecutive matching commands (0 is read as 1).
    /// -EINVAL for a PROGRESS of 0 pages or a firmware status of 0.
    pub fn arm(&mut self, effect: Effect, cmd_id: u32, nth: u32, count: u32) -> Result<(), Errno> {
        if matches!(effect, Effect::Progress(0) | Effect::FwStatus(0)) {
            return Err(Errno(libc::EINVAL));
        }
        self.armed.push(Armed {
            effect,
            cmd_id,
            skip: nth.saturating_sub(1),
            remaining: count.max(1),
        });
        Ok(())
    }

    /// Called once for every command with sub-command id `id` that reaches its handler: the
    /// effect of the first armed fault that fires now, if any.
    pub fn take(&mut self, id: u32) -> Option<Effect> {
        let mut fired = None;
        for a in self
            .armed
            .iter_mut()
            .filter(|a| a.cmd_id == id || a.cmd_id == ANY_CMD)
        {
            if a.skip > 0 {
                a.skip -= 1;
            } else if fired.is_none() {
                fired = Some(a.effect);
                a.remaining -= 1;
            }
        }
        self.armed.retain(|a| a.remaining > 0);
        fired
    }
}

/// The errno an effect stands for when the command has no more specific place for it.
pub fn generic_errno(effect: Effect) -> Option<Errno> {
    match effect {
        Effect::Signal => Some(Errno(libc::EINTR)),
        Effect::Again => Some(Errno(libc::EAGAIN)),
        Effect::Busy => Some(Errno(libc::EBUSY)),
        Effect::Progress(_) | Effect::FwStatus(_) => None,
    }
}
