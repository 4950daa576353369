//! One simulated VM: its vCPUs, memslots, private-attribute ranges, guest_memfd files and the
//! per-backend launch state. The memory model is what `kvm_gmem_populate()` needs to answer
//! as the kernel does: which slot (with which guest_memfd) holds a GFN, whether the GFN is
//! private, and whether its guest_memfd page was already populated.

use std::collections::{BTreeMap, HashMap};

use super::fault::Faults;
use super::profile::Profile;
use super::{sev, tdx};
use memenc::Errno;

pub const PAGE_SIZE: u64 = 4096;
pub const PAGE_SHIFT: u32 = 12;

/// A vCPU.
#[derive(Debug)]
pub struct Vcpu {
    pub id: u32,
    /// Register state encrypted (SEV-ES/SNP VMSA launched, `guest_state_protected`).
    pub protected: bool,
    /// TDX: KVM_TDX_INIT_VCPU done.
    pub tdx_initialized: bool,
    /// What KVM holds for the vCPU's registers: its reset state plus every KVM_SET_* the VMM
    /// issued; `sev_es_sync_vmsa()` builds the VMSA from it.
    pub state: super::vmsa::VcpuState,
}

impl Vcpu {
    /// A vCPU just made by KVM_CREATE_VCPU.
    pub fn new(id: u32) -> Self {
        Vcpu {
            id,
            protected: false,
            tdx_initialized: false,
            state: super::vmsa::VcpuState::reset(super::vmsa::HostCpu::default(), None),
        }
    }
}

/// A memslot.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub flags: u32,
    pub base_gfn: u64,
    pub npages: u64,
    pub userspace_addr: u64,
    /// (guest_memfd id, offset in bytes) for KVM_MEM_GUEST_MEMFD slots.
    pub gmem: Option<(u64, u64)>,
}

/// A guest_memfd file.
#[derive(Debug, Default)]
pub struct Gmem {
    pub size: u64,
    pub flags: u64,
    /// Byte ranges [start, end) bound to memslots.
    pub bindings: Vec<(u64, u64)>,
}

/// A set of GFN ranges [start, end).
#[derive(Debug, Default)]
pub struct RangeSet {
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Sets or clears [start, end).
    pub fn set(&mut self, start: u64, end: u64, on: bool) {
        let mut lo = start;
        let mut hi = end;
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .filter(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.ranges.remove(&s);
            if on {
                lo = lo.min(s);
                hi = hi.max(e);
            } else {
                if s < start {
                    self.ranges.insert(s, start);
                }
                if e > end {
                    self.ranges.insert(end, e);
                }
            }
        }
        if on {
            self.ranges.insert(lo, hi);
        }
    }

    /// Adds one GFN. The launch commands add page after page, so this usually extends the
    /// last range in place (no allocation, O(log n)).
    pub fn insert(&mut self, gfn: u64) {
        // [start, end) cannot hold u64::MAX; no memslot reaches it.
        let Some(next) = gfn.checked_add(1) else {
            return;
        };
        let joins_next = self.ranges.contains_key(&next);
        if let Some((_, end)) = self.ranges.range_mut(..=gfn).next_back() {
            if *end > gfn {
                return;
            }
            if *end == gfn && !joins_next {
                *end = next;
                return;
            }
        }
        self.set(gfn, next, true);
    }

    /// Whether `gfn` is in the set.
    pub fn contains(&self, gfn: u64) -> bool {
        self.ranges
            .range(..=gfn)
            .next_back()
            .is_some_and(|(_, &e)| gfn < e)
    }
}

/// The VM.
#[derive(Debug)]
pub struct Vm {
    pub profile: &'static Profile,
    pub vm_type: u32,
    /// KVM_BUG_ON fired: every further ioctl on the VM gives -EIO.
    pub dead: bool,
    pub vcpus: Vec<Vcpu>,
    pub slots: BTreeMap<u32, Slot>,
    pub private: RangeSet,
    pub gmems: HashMap<u64, Gmem>,
    pub next_gmem: u64,
    /// GFNs whose guest_memfd page was populated (`kvm_gmem_populate` "prepared"); ranges,
    /// because launch images are populated page after page.
    pub populated: RangeSet,
    pub split_irqchip: bool,
    pub tsc_khz: u32,
    pub sev: sev::State,
    pub tdx: tdx::State,
    pub faults: Faults,
}

/// The host TSC frequency the model reports (kHz).
pub const HOST_TSC_KHZ: u32 = 2_000_000;

impl Vm {
    pub fn new(profile: &'static Profile, vm_type: u32) -> Vm {
        Vm {
            profile,
            vm_type,
            dead: false,
            vcpus: Vec::new(),
            slots: BTreeMap::new(),
            private: RangeSet::default(),
            gmems: HashMap::new(),
            next_gmem: 1,
            populated: RangeSet::default(),
            split_irqchip: false,
            tsc_khz: HOST_TSC_KHZ,
            sev: sev::State::new(profile, vm_type),
            tdx: tdx::State::default(),
            faults: Faults::default(),
        }
    }

    /// `kvm_arch_has_private_mem()`.
    pub fn has_private_mem(&self) -> bool {
        self.profile.has_private_mem(self.vm_type)
    }

    /// The memslot (in address space 0) containing `gfn`.
    pub fn slot_of(&self, gfn: u64) -> Option<&Slot> {
        self.slots
            .iter()
            .filter(|&(&id, _)| id >> 16 == 0)
            .map(|(_, s)| s)
            .find(|s| gfn >= s.base_gfn && gfn - s.base_gfn < s.npages)
    }

    /// The shared part of `kvm_gmem_populate()` before its page loop: the slot containing
    /// `gfn` must have a guest_memfd (-EINVAL); returns how many pages of `npages` lie in it.
    pub fn gmem_pages_from(&self, gfn: u64, npages: u64) -> Result<u64, Errno> {
        match self.slot_of(gfn) {
            Some(s) if s.gmem.is_some() => Ok(npages.min(s.base_gfn + s.npages - gfn)),
            _ => Err(Errno(libc::EINVAL)),
        }
    }

    /// The per-page checks of `kvm_gmem_populate()`: already populated (-EEXIST), then not
    /// private (-EINVAL).
    pub fn gmem_page_check(&self, gfn: u64) -> Result<(), Errno> {
        if self.populated.contains(gfn) {
            return Err(Errno(libc::EEXIST));
        }
        if !self.private.contains(gfn) {
            return Err(Errno(libc::EINVAL));
        }
        Ok(())
    }

    /// The number of vCPUs created.
    pub fn created_vcpus(&self) -> usize {
        self.vcpus.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_set_merges_and_splits() {
        let mut r = RangeSet::default();
        r.set(10, 20, true);
        r.set(15, 30, true);
        assert!(r.contains(10) && r.contains(29) && !r.contains(30) && !r.contains(9));
        r.set(12, 14, false);
        assert!(r.contains(11) && !r.contains(12) && !r.contains(13) && r.contains(14));
        r.set(0, 100, false);
        assert!(!r.contains(15));
        // One at a time: extends in place, joins the next range, ignores what is in.
        for g in [5, 6, 7, 9, 8, 7, 4] {
            r.insert(g);
        }
        assert!((4..10).all(|g| r.contains(g)) && !r.contains(3) && !r.contains(10));
        assert_eq!(r.ranges.len(), 1);
        r.insert(12);
        assert!(r.contains(12) && !r.contains(11) && r.ranges.len() == 2);
    }
}
