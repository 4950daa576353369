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

use memenc_sim::compat::*;

#[path = "../tests/sim_util/mod.rs"]
mod sim_util;

#[path = "common/mod.rs"]
mod common;
use common::*;

/// guest_memfd + memslot + private attributes for common's VMs (memenc's helpers); pushes the
/// guest_memfd.
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
