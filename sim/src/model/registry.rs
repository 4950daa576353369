//! The simulator's descriptors. Each simulated object is a real descriptor (a memfd, named
//! after what it stands for), so its number never collides with the caller's, and the object
//! is known by the identity of that memfd's open file, its (st_dev, st_ino).
//!
//! A descriptor number resolves through that identity, so a `dup()`, `dup2()` or
//! `fcntl(F_DUPFD)` of a simulated descriptor is the same object, as a dup of a VM descriptor
//! is the same VM in the kernel. A number that was closed and reused by anything else has
//! another identity (or none) and is never mistaken for the old object.
//!
//! Lifetime, as the kernel's files: an object lives while any descriptor of its file is open in
//! this process, the one memenc returned or any dup of it; a VM lives while a descriptor of it,
//! or of one of its vCPUs or guest_memfds, is open (each holds the [`VmRef`]). Closing is seen
//! lazily: when a descriptor is created, or a closed number of a simulated object is looked up,
//! an object none of whose known numbers is open any more is looked for among all of the
//! process's descriptors (`/proc/self/fd`) and forgotten, with its reference to the VM, only
//! when none has it. Where `/proc` cannot be read it is forgotten then: a dup that was never
//! used while a known descriptor of its object was open is not recognised.
//!
//! Simulated descriptors do not survive fork(): a child starts with an empty table of its own,
//! in which the memfds it inherited are plain memfds.

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::profile::Profile;
use super::vm::Vm;
use memenc::Errno;

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

/// The identity of an open file: (st_dev, st_ino).
type Identity = (u64, u64);

/// A descriptor number known to hold a simulated object.
struct Entry {
    /// The identity the number had when it was learnt.
    id: Identity,
    object: Object,
}

/// The simulated descriptors of one process.
#[derive(Default)]
struct Descriptors {
    /// The numbers known to hold a simulated object: the one `create` returned, and every dup
    /// that has been looked up or found by a sweep.
    by_number: HashMap<RawFd, Entry>,
    /// Every live object, by the identity of its file.
    objects: HashMap<Identity, Object>,
}

/// The table of the process `owner`.
struct Table {
    owner: u32,
    descriptors: Mutex<Descriptors>,
}

/// The current process's table. A table is never freed once published: a child after fork()
/// installs a new one and leaks its parent's, whose lock another parent thread may have held
/// at the fork.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(core::ptr::null_mut());

/// The number of live objects of the process `OWNER`, for the lock-free [`any_live`].
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The process whose simulated host this is. Simulated descriptors do not survive fork(): in a
/// child they are plain memfds and every ioctl goes to the real kernel. That also keeps a child
/// from waiting forever on the table lock if another parent thread held it at the fork.
static OWNER: AtomicU32 = AtomicU32::new(0);

/// The st_dev of the simulator's memfds (every memfd lives on the kernel's one internal shmem
/// mount), so a descriptor of anything else (a real KVM file, a device, a regular file) is
/// answered without the table lock. [`DEV_UNSET`] before the first memfd, [`DEV_ANY`] should
/// two memfds ever differ.
static MEMFD_DEV: AtomicU64 = AtomicU64::new(DEV_UNSET);
const DEV_UNSET: u64 = u64::MAX;
const DEV_ANY: u64 = u64::MAX - 1;

fn table() -> MutexGuard<'static, Descriptors> {
    let pid = std::process::id();
    let mut current = TABLE.load(Ordering::Acquire);
    loop {
        // SAFETY: TABLE is null or points to a table that is never freed.
        if let Some(table) = unsafe { current.as_ref() }
            && table.owner == pid
        {
            // A panic while the table was locked leaves it consistent (every mutation is an
            // insert, a remove or a retain), so a poisoned lock is simply taken over.
            return table.descriptors.lock().unwrap_or_else(|e| e.into_inner());
        }
        // No table yet, or the parent's (this is a child after fork()): a new, empty one.
        let fresh = Box::into_raw(Box::new(Table {
            owner: pid,
            descriptors: Mutex::default(),
        }));
        match TABLE.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => current = fresh,
            Err(now) => {
                // SAFETY: `fresh` was never published; this is its only owner.
                drop(unsafe { Box::from_raw(fresh) });
                current = now;
            }
        }
    }
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

fn identity(fd: RawFd) -> Option<Identity> {
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

fn note_memfd_dev(dev: u64) {
    match MEMFD_DEV.compare_exchange(DEV_UNSET, dev, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {}
        Err(known) if known == dev || known == DEV_ANY => {}
        Err(_) => MEMFD_DEV.store(DEV_ANY, Ordering::Relaxed),
    }
}

fn may_be_memfd(dev: u64) -> bool {
    let known = MEMFD_DEV.load(Ordering::Relaxed);
    known == dev || known == DEV_ANY
}

fn publish(table: &Descriptors) {
    LIVE.store(table.objects.len(), Ordering::Relaxed);
    OWNER.store(std::process::id(), Ordering::Relaxed);
}

/// Where descriptor numbers the model is handed resolve, when not in this process's table:
/// under the supervisor, the traced program's descriptors (its real KVM files stand for the
/// model's objects).
pub trait Resolve {
    /// The model object `fd` (a number in the calling program) stands for.
    fn lookup(&self, fd: RawFd) -> Option<Object>;
    /// Whether `fd` is open in the calling program at all.
    fn is_open(&self, fd: RawFd) -> bool;
}

thread_local! {
    /// The [`Resolve`] of the call being answered on this thread, if not this process's.
    static SCOPE: core::cell::Cell<Option<*const (dyn Resolve + 'static)>> =
        const { core::cell::Cell::new(None) };
}

/// Runs `f` with descriptor numbers resolving through `d` (the supervisor, for one call).
pub fn with_descriptors<R>(d: &dyn Resolve, f: impl FnOnce() -> R) -> R {
    // SAFETY: only the lifetime is erased; the pointer is cleared again below, before `d`'s
    // borrow ends, and is only dereferenced (in `scoped`) while `f` runs on this thread.
    let ptr: *const (dyn Resolve + 'static) =
        unsafe { core::mem::transmute(d as *const dyn Resolve) };
    let old = SCOPE.with(|s| s.replace(Some(ptr)));
    let r = f();
    SCOPE.with(|s| s.set(old));
    r
}

fn scoped<R>(f: impl FnOnce(&dyn Resolve) -> R) -> Option<R> {
    let ptr = SCOPE.with(|s| s.get())?;
    // SAFETY: set by `with_descriptors`, whose borrow outlives every use on this thread.
    Some(f(unsafe { &*ptr }))
}

/// Whether `fd` is open in the calling program.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) only asks whether the descriptor is open.
    scoped(|d| d.is_open(fd)).unwrap_or_else(|| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
}

/// The object behind `fd`, if it is a live simulated descriptor (or a dup of one).
pub fn lookup(fd: RawFd) -> Option<Object> {
    if let Some(found) = scoped(|d| d.lookup(fd)) {
        return found;
    }
    let id = identity(fd);
    if let Some((dev, _)) = id
        && !may_be_memfd(dev)
    {
        return None;
    }
    let mut table = table();
    if let Some(id) = id {
        if let Some(entry) = table.by_number.get(&fd)
            && entry.id == id
        {
            return Some(entry.object.clone());
        }
        if let Some(object) = table.objects.get(&id).cloned() {
            // Another descriptor of a live object's file: a dup. Known from now on.
            let entry = Entry {
                id,
                object: object.clone(),
            };
            table.by_number.insert(fd, entry);
            return Some(object);
        }
    }
    if table.by_number.contains_key(&fd) {
        // The number was closed or reused: its object may have lost its last descriptor.
        let gone = sweep(&mut table);
        publish(&table);
        drop(table);
        drop(gone);
    }
    None
}

/// Forgets every number that was closed or reused, then every object that no open descriptor
/// has (see the module's lifetime rule). Returns the forgotten objects, for the caller to drop
/// once the table is unlocked (the last reference to a VM frees the whole model).
fn sweep(table: &mut Descriptors) -> Vec<Object> {
    table
        .by_number
        .retain(|&fd, entry| identity(fd) == Some(entry.id));
    let known: HashSet<Identity> = table.by_number.values().map(|e| e.id).collect();
    let mut orphans: HashSet<Identity> = table
        .objects
        .keys()
        .filter(|id| !known.contains(id))
        .copied()
        .collect();
    if !orphans.is_empty() {
        // Dups the table has not seen yet.
        for fd in open_descriptors() {
            if table.by_number.contains_key(&fd) {
                continue;
            }
            if let Some(id) = identity(fd)
                && orphans.remove(&id)
                && let Some(object) = table.objects.get(&id).cloned()
            {
                table.by_number.insert(fd, Entry { id, object });
            }
            if orphans.is_empty() {
                break;
            }
        }
    }
    orphans
        .iter()
        .filter_map(|id| table.objects.remove(id))
        .collect()
}

/// This process's open descriptor numbers (`/proc/self/fd`); none when it cannot be read.
fn open_descriptors() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
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
    let Some(id) = identity(fd) else {
        let e = Errno::last();
        // SAFETY: as above.
        unsafe { libc::close(fd) };
        return Err(e);
    };
    note_memfd_dev(id.0);
    let mut table = table();
    let gone = sweep(&mut table);
    table.objects.insert(id, object.clone());
    table.by_number.insert(fd, Entry { id, object });
    publish(&table);
    drop(table);
    drop(gone);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(fd: RawFd) {
        // SAFETY: a descriptor the test made and owns.
        assert_eq!(unsafe { libc::close(fd) }, 0);
    }

    fn vm_of(fd: RawFd) -> VmRef {
        match lookup(fd) {
            Some(Object::Vm(vm)) => vm,
            _ => panic!("{fd} is not a simulated VM"),
        }
    }

    /// The lifetime rule: a VM lives while any descriptor of its file is open, also a dup the
    /// registry never saw before the original closed, and goes away with the last one.
    #[test]
    fn an_object_lives_while_any_descriptor_of_its_file_is_open() {
        let fd = crate::model::vm_create("none", 0).unwrap();
        let weak = Arc::downgrade(&vm_of(fd));
        // SAFETY: dup creates a descriptor, closed below.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        assert!(dup >= 0);
        close(fd);
        // A new descriptor makes the registry look at closed numbers (sweep).
        let other = crate::model::kvm_open("none").unwrap();
        assert!(weak.upgrade().is_some(), "the dup keeps the VM");
        assert!(Arc::ptr_eq(&vm_of(dup), &weak.upgrade().unwrap()));
        close(dup);
        close(other);
        let third = crate::model::kvm_open("none").unwrap();
        assert!(
            weak.upgrade().is_none(),
            "the last descriptor closed: the VM is gone"
        );
        close(third);
    }

    /// A VM whose only descriptor closed is gone at the next creation, as before dups were
    /// recognised.
    #[test]
    fn closing_the_only_descriptor_ends_the_vm() {
        let fd = crate::model::vm_create("none", 0).unwrap();
        let weak = Arc::downgrade(&vm_of(fd));
        close(fd);
        let other = crate::model::kvm_open("none").unwrap();
        assert!(weak.upgrade().is_none());
        close(other);
    }
}
