//! `/dev/sev`: the PSP driver's `sev_ioctl()` (drivers/crypto/ccp/sev-dev.c). It takes only
//! SEV_ISSUE_CMD; of its platform commands the model answers PLATFORM_STATUS (what a VMM reads
//! at start-up: QEMU checks the API version and the SEV-ES flag there) and refuses the
//! platform-management ones as a running firmware without an owner would.

use super::ioctl_numbers::SEV_ISSUE_CMD;
use super::profile::Profile;
use super::user;
use memenc::Errno;

/// `struct sev_issue_cmd` (packed): cmd u32, data u64, error u32.
const ISSUE_CMD_SIZE: usize = 16;
const SEV_PLATFORM_STATUS: u32 = 1;
/// `SEV_STATUS_FLAGS_CONFIG_ES`: the platform is configured for SEV-ES.
const STATUS_FLAGS_CONFIG_ES: u32 = 0x0100;
/// Platform state "working" (a guest may run; a host with guests is in it).
const STATE_INIT: u8 = 1;
/// `SEV_RET_INVALID_COMMAND`.
const INVALID_COMMAND: u32 = 0x03;

/// An ioctl on the simulated `/dev/sev` of `profile`.
pub fn ioctl(profile: &Profile, request: u64, arg: u64) -> Result<i32, Errno> {
    if request & 0xffff_ffff != SEV_ISSUE_CMD {
        return Err(Errno(libc::EINVAL));
    }
    let raw = user::read_vec(arg, ISSUE_CMD_SIZE)?;
    let word = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let cmd = word(0);
    let data = u64::from(word(4)) | (u64::from(word(8)) << 32);
    let Some(sev) = profile.sev.as_ref() else {
        return Err(Errno(libc::ENODEV));
    };
    let (result, error) = match cmd {
        SEV_PLATFORM_STATUS => {
            // struct sev_user_data_status (packed): api_major, api_minor, state u8; flags u32;
            // build u8; guest_count u32.
            let (major, minor, build) = sev.api;
            let flags = if sev.es { STATUS_FLAGS_CONFIG_ES } else { 0 };
            let mut status = vec![major, minor, STATE_INIT];
            status.extend_from_slice(&flags.to_le_bytes());
            status.push(build);
            status.extend_from_slice(&0u32.to_le_bytes());
            user::write_bytes(data, &status)?;
            (Ok(0), 0)
        }
        // Platform management (PEK/PDH generation, certificate import/export, SNP config) is
        // not modelled: the firmware says the command is not valid here.
        2..=0x10 | 0x101..=0x10f => (Err(Errno(libc::EIO)), INVALID_COMMAND),
        _ => return Err(Errno(libc::EINVAL)),
    };
    user::write_bytes(arg + 12, &error.to_le_bytes())?;
    result
}
