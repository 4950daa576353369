//! The in-process half of sim/benches/boundary.sh's `launch` comparison (results SIMULATED): a
//! 1 GiB SNP_LAUNCH_UPDATE (snp@6.18) or TDX INIT_MEM_REGION with MEASURE_MEMORY_REGION
//! (tdx@6.19) through memenc's helpers on `memenc_sim::inprocess` descriptors, the same VM
//! set-up, sizes and source pattern as tests-c/bench-launch.c runs under `memenc-sim run`.
//! Only the update call is timed. Prints "WHAT MIB MiB SECONDS s RATE MiB/s" and the launch
//! digest / MRTD (the supervisor's report prints the same one for the same work).
//!
//! Run: `cargo bench -p memenc-sim --bench sim_launch_inproc -- snp` (or `tdx`; `MIB=n`
//! for another size).

use std::time::Instant;

use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::negotiate::*;
use memenc_sim::compat::*;

#[path = "../tests/sim_util/mod.rs"]
mod sim_util;

type Make = fn(usize) -> Vm;
type Update = fn(&Vm, &Mapping, usize) -> (i32, u64);

const PAGE: usize = 4096;

struct Mapping(*mut u8, usize);
impl Mapping {
    fn new(len: usize) -> Mapping {
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
    fn bytes_mut(&mut self) -> &mut [u8] {
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
fn source(bytes: usize) -> Mapping {
    let mut m = Mapping::new(bytes);
    for (i, page) in m.bytes_mut().chunks_mut(PAGE).enumerate() {
        page.fill((i % 251) as u8);
        page[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    m
}

struct Vm {
    fds: Vec<i32>,
    _backing: Mapping,
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
    fn vm(&self) -> i32 {
        self.fds[0]
    }
    fn last(&self) -> i32 {
        *self.fds.last().unwrap()
    }
}

fn private_memory(vm: i32, bytes: usize, fds: &mut Vec<i32>) -> Mapping {
    use memenc::helpers::mem::{
        MemRegion2, create_guest_memfd, set_private, set_user_memory_region2,
    };
    use std::os::fd::{AsFd, BorrowedFd, IntoRawFd};
    let backing = Mapping::new(bytes);
    // SAFETY: `vm` is open for the whole benchmark (the Vm owns it).
    let vm = unsafe { BorrowedFd::borrow_raw(vm) };
    let g = create_guest_memfd(vm, bytes as u64, 0).expect("guest_memfd");
    let region = MemRegion2 {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: bytes as u64,
        userspace_addr: backing.0 as u64,
        guest_memfd: Some(g.as_fd()),
        guest_memfd_offset: 0,
    };
    set_user_memory_region2(vm, &region).expect("memslot");
    set_private(vm, 0, bytes as u64, true).expect("private attributes");
    fds.push(g.into_raw_fd());
    backing
}

/// snp@6.18 VM after INIT2 and SNP_LAUNCH_START; fds: [vm, sev, gmem].
fn snp_vm(bytes: usize) -> Vm {
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
        let backing = private_memory(vm, bytes, &mut fds);
        fds.swap(1, 2); // [vm, gmem, sev]: sev last
        Vm {
            fds,
            _backing: backing,
        }
    }
}

fn snp_update(vm: &Vm, src: &Mapping, bytes: usize) -> (i32, u64) {
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
fn td(bytes: usize) -> Vm {
    // SAFETY (whole block): NUL-terminated names, valid structs.
    unsafe {
        let vm = mem_enc_sim_vm_create_type(c"tdx@6.19".as_ptr(), MEM_ENC_VM_TYPE_TDX);
        assert!(vm >= 0);
        // The tests' TD (tests/sim_util): GPAW-48 CPUID leaf, INIT_VM arguments, split irqchip.
        let cpuid = [sim_util::gpaw48()];
        let args = sim_util::td_init_args(&cpuid);
        let mut hw = 0;
        assert_eq!(mem_enc_tdx_init_vm(vm, &args, 176, &mut hw), 0);
        // A view of the descriptor the Vm below owns and closes.
        let view = std::mem::ManuallyDrop::new(sim_util::Fd(vm));
        assert_eq!(sim_util::enable_split_irqchip(&view), Ok(0));
        let mut fds = vec![vm];
        let backing = private_memory(vm, bytes, &mut fds);
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

fn tdx_update(vm: &Vm, src: &Mapping, bytes: usize) -> (i32, u64) {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not run benchmarks.
    if !args.iter().any(|a| a == "--bench") {
        println!("sim_launch_inproc: run with `cargo bench --bench sim_launch_inproc -- snp|tdx`");
        return;
    }
    let mib: usize = std::env::var("MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = mib << 20;
    for what in args.iter().skip(1).filter(|a| *a == "snp" || *a == "tdx") {
        let src = source(bytes);
        let (make, update): (Make, Update) = if what == "snp" {
            (snp_vm, snp_update)
        } else {
            (td, tdx_update)
        };
        let vm = make(bytes);
        let t = Instant::now();
        let (r, _) = update(&vm, &src, bytes);
        let s = t.elapsed().as_secs_f64();
        assert_eq!(r, 0, "{what}");
        let mut digest = [0u8; 48];
        // SAFETY: 48 writable bytes.
        let n = unsafe { mem_enc_sim_launch_digest(vm.vm(), digest.as_mut_ptr(), digest.len()) };
        assert_eq!(n, 48);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        println!(
            "{what} {mib} MiB {s:.3} s {:.1} MiB/s 1 calls, digest {hex}",
            mib as f64 / s
        );
    }
}
