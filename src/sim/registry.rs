//! The simulator's descriptors. Each simulated object is a real descriptor (a memfd, named
//! after what it stands for), so its number never collides with the caller's. An entry is
//! keyed by the descriptor number and remembers the memfd's (st_dev, st_ino): a number that was
//! closed and reused by anything else fails that check and is forgotten, never mistaken for the
//! old object. Closing the last descriptor of a VM ends it (detected lazily).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::profile::Profile;
use super::vm::Vm;
use crate::errno::Errno;

/// One VM's state; every descriptor of the VM (VM, vCPU, guest_memfd) holds it, as the kernel's
/// file references hold `struct kvm`.
pub type VmRef = Arc<Mutex<Vm>>;

/// What a simulated descriptor is.
#[derive(Clone)]
pub enum Object {
    /// A `/dev/kvm` of this profile.
    System(&'static Profile),
    /// A VM.
    Vm(VmRef),
    /// vCPU number `index` (creation order) of the VM.
    Vcpu(VmRef, usize),
    /// A guest_memfd of the VM (`id` in the VM's table).
    Gmem(VmRef, u64),
    /// The profile's `/dev/sev`.
    SevDevice(&'static Profile),
}

struct Entry {
    dev: u64,
    ino: u64,
    object: Object,
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn table() -> MutexGuard<'static, HashMap<RawFd, Entry>> {
    static TABLE: OnceLock<Mutex<HashMap<RawFd, Entry>>> = OnceLock::new();
    // A panic while the table was locked leaves it consistent (every mutation is one
    // insert or remove), so a poisoned lock is simply taken over.
    TABLE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Locks a VM; a poisoned lock is taken over (a caught panic mid-command leaves a state the
/// model can still answer from).
pub fn lock(vm: &VmRef) -> MutexGuard<'_, Vm> {
    vm.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether any simulated descriptor may be alive.
#[inline]
pub fn any_live() -> bool {
    LIVE.load(Ordering::Relaxed) != 0 && OWNER.load(Ordering::Relaxed) == std::process::id()
}

/// The process whose simulated host this is. Simulated descriptors do not survive fork(): in a
/// child they are plain memfds and every ioctl goes to the real kernel. That also keeps a child
/// from waiting forever on the table lock if another parent thread held it at the fork.
static OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes only into `st`; a descriptor that is not open gives EBADF.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: fstat succeeded and initialised the struct.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

fn publish(map: &HashMap<RawFd, Entry>) {
    LIVE.store(map.len(), Ordering::Relaxed);
    OWNER.store(std::process::id(), Ordering::Relaxed);
}

/// The object behind `fd`, if it is a live simulated descriptor.
pub fn lookup(fd: RawFd) -> Option<Object> {
    let mut map = table();
    let entry = map.get(&fd)?;
    if identity(fd) == Some((entry.dev, entry.ino)) {
        return Some(entry.object.clone());
    }
    map.remove(&fd);
    publish(&map);
    None
}

/// Forgets every entry whose descriptor was closed (or reused).
fn sweep(map: &mut HashMap<RawFd, Entry>) {
    map.retain(|fd, e| identity(*fd) == Some((e.dev, e.ino)));
}

/// Creates a new descriptor for `object`.
pub fn create(name: &core::ffi::CStr, size: u64, object: Object) -> Result<RawFd, Errno> {
    // SAFETY: memfd_create reads the NUL-terminated name and returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    if size > 0 {
        // SAFETY: fd is the memfd just created; a sparse size allocates nothing.
        if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
            let e = Errno::last();
            // SAFETY: closing the descriptor created above, owned by no one else.
            unsafe { libc::close(fd) };
            return Err(e);
        }
    }
    let Some((dev, ino)) = identity(fd) else {
        let e = Errno::last();
        // SAFETY: as above.
        unsafe { libc::close(fd) };
        return Err(e);
    };
    let mut map = table();
    sweep(&mut map);
    map.insert(fd, Entry { dev, ino, object });
    publish(&map);
    Ok(fd)
}

/// Whether `fd` is a live simulated `/dev/sev`.
pub fn is_sev_device(fd: u32) -> bool {
    i32::try_from(fd).is_ok_and(|fd| matches!(lookup(fd), Some(Object::SevDevice(_))))
}

/// The guest_memfd id behind `fd` and the VM it belongs to.
pub fn gmem(fd: u32) -> Option<(VmRef, u64)> {
    match lookup(i32::try_from(fd).ok()?) {
        Some(Object::Gmem(vm, id)) => Some((vm, id)),
        _ => None,
    }
}
