//! What sim_launch.rs and sim_launch_inproc.rs share (each includes this file as `mod common`):
//! simulated VMs with `bytes` of private memory at GPA 0 (snp@6.18 after SNP_LAUNCH_START,
//! tdx@6.19 after INIT_VM and INIT_VCPU), the one update call each benchmark times, and a source
//! of the same size. How the private memory is set up differs (the library's memslot helpers
//! in-process, the tests' raw KVM ioctls in sim_launch), so each benchmark provides its own
//! `private_memory` (guest_memfd + memslot + private attributes; pushes the guest_memfd
//! descriptor to `fds` and returns the backing), and `sim_util` (tests/sim_util) for the TD.

use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::negotiate::*;
use memenc_sim::compat::*;

pub const PAGE: usize = 4096;

/// Builds a VM with `bytes` of private memory.
pub type Make = fn(usize) -> Vm;
/// The timed update of `bytes` from the source; returns (result, bytes or pages reached).
pub type Update = fn(&Vm, &Mapping, usize) -> (i32, u64);

pub struct Mapping(pub *mut u8, pub usize);
impl Mapping {
    pub fn new(len: usize) -> Mapping {
        // SAFETY: a fresh anonymous private mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Mapping(p.cast(), len)
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is ours, len bytes, borrowed mutably once.
        unsafe { core::slice::from_raw_parts_mut(self.0, self.1) }
    }
}
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping.
        unsafe { libc::munmap(self.0.cast(), self.1) };
    }
}

/// A source image: every page different (a page index and a byte pattern).
pub fn source(bytes: usize) -> Mapping {
    let mut m = Mapping::new(bytes);
    for (i, page) in m.bytes_mut().chunks_mut(PAGE).enumerate() {
        page.fill((i % 251) as u8);
        page[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    m
}

pub struct Vm {
    pub fds: Vec<i32>,
    pub _backing: Mapping,
}
impl Drop for Vm {
    fn drop(&mut self) {
        for &fd in self.fds.iter().rev() {
            // SAFETY: descriptors this benchmark opened.
            unsafe { libc::close(fd) };
        }
    }
}
impl Vm {
    pub fn vm(&self) -> i32 {
        self.fds[0]
    }
    pub fn last(&self) -> i32 {
        *self.fds.last().unwrap()
    }
}

/// snp@6.18 VM after INIT2 and SNP_LAUNCH_START; fds: [vm, sev, gmem].
pub fn snp_vm(bytes: usize) -> Vm {
    // SAFETY (whole block): NUL-terminated names, valid structs.
    unsafe {
        let vm = mem_enc_sim_vm_create_type(c"snp@6.18".as_ptr(), MEM_ENC_VM_TYPE_SNP);
        assert!(vm >= 0);
        let sev = mem_enc_sim_sev_device_open(vm);
        let mut fw = 0;
        let init = mem_enc_sev_init2_args {
            ghcb_version: 2,
            ..Default::default()
        };
        assert_eq!(mem_enc_sev_init2(vm, &init, 16, &mut fw), 0);
        let start = mem_enc_snp_launch_start_args {
            policy: MEM_ENC_SNP_POLICY_SMT,
            gosvw: [0; 16],
        };
        assert_eq!(mem_enc_snp_launch_start(vm, sev, &start, 24, &mut fw), 0);
        let mut fds = vec![vm, sev];
        let backing = super::private_memory(vm, bytes, &mut fds);
        fds.swap(1, 2); // [vm, gmem, sev]: sev last
        Vm {
            fds,
            _backing: backing,
        }
    }
}

pub fn snp_update(vm: &Vm, src: &Mapping, bytes: usize) -> (i32, u64) {
    let args = mem_enc_snp_launch_update_args {
        gfn_start: 0,
        src: src.0.cast(),
        len: bytes as u64,
        page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
        retry_limit: 0,
    };
    let (mut reached, mut fw) = (0, 0);
    // SAFETY: valid pointers.
    let r =
        unsafe { mem_enc_snp_launch_update(vm.vm(), vm.last(), &args, 32, &mut reached, &mut fw) };
    (r, reached)
}

/// tdx@6.19 TD after INIT_VM with vCPU 0 initialised; fds: [vm, gmem, vcpu].
pub fn td(bytes: usize) -> Vm {
    // SAFETY (whole block): NUL-terminated names, valid structs.
    unsafe {
        let vm = mem_enc_sim_vm_create_type(c"tdx@6.19".as_ptr(), MEM_ENC_VM_TYPE_TDX);
        assert!(vm >= 0);
        // The tests' TD (tests/sim_util): GPAW-48 CPUID leaf, INIT_VM arguments, split irqchip.
        let cpuid = [super::sim_util::gpaw48()];
        let args = super::sim_util::td_init_args(&cpuid);
        let mut hw = 0;
        assert_eq!(mem_enc_tdx_init_vm(vm, &args, 176, &mut hw), 0);
        // A view of the descriptor the Vm below owns and closes.
        let view = std::mem::ManuallyDrop::new(super::sim_util::Fd(vm));
        assert_eq!(super::sim_util::enable_split_irqchip(&view), Ok(0));
        let mut fds = vec![vm];
        let backing = super::private_memory(vm, bytes, &mut fds);
        let vcpu = mem_enc_sim_vcpu_create(vm, 0);
        assert!(vcpu >= 0);
        fds.push(vcpu);
        assert_eq!(mem_enc_tdx_init_vcpu(vcpu, 0x1000, &mut hw), 0);
        Vm {
            fds,
            _backing: backing,
        }
    }
}

pub fn tdx_update(vm: &Vm, src: &Mapping, bytes: usize) -> (i32, u64) {
    let args = mem_enc_tdx_init_mem_region_args {
        source: src.0.cast_const().cast(),
        gpa: 0,
        nr_pages: (bytes / PAGE) as u64,
        flags: memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION,
        retry_limit: 0,
    };
    let (mut reached, mut hw) = (0, 0);
    // SAFETY: valid pointers.
    let r = unsafe { mem_enc_tdx_init_mem_region(vm.last(), &args, 32, &mut reached, &mut hw) };
    (r, reached)
}
