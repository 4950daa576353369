//! Concurrency: 8 threads probing (`mem_enc_probe` with -1 and with their own /dev/kvm
//! descriptor), negotiating (on the host probe and on a simulated SNP host's probe) and issuing
//! `mem_enc_op` on their own real VMs and vCPUs give exactly what one thread gets alone; and
//! the probe cache answers the same in a child after `fork()`, whether the parent's cache was
//! warm or just invalidated, while other threads were in the middle of probing.
//!
//! Every thread also runs three complete simulated launches (SEV on sev@6.1, SNP on snp@6.18,
//! TDX on tdx@6.19: SIMULATED results) on VMs of its own, and their launch digests must equal
//! the single-threaded run's.
//!
//! The real-descriptor parts need /dev/kvm (visible SKIPPED line without it).
//! Run under helgrind/drd: `bash scripts/thread-check.sh` (see TESTING.md).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Barrier;

use memenc::capi::op::mem_enc_op;
use memenc::capi::probe::*;
use memenc::negotiate::*;
use memenc::probe::*;
use memenc::{MEM_ENC_FLAG_RETRY, mem_enc_cmd};

const THREADS: usize = 8;
const ROUNDS: usize = 5;

fn have_kvm() -> bool {
    let ok = std::path::Path::new("/dev/kvm").exists();
    if !ok {
        println!("SKIPPED: /dev/kvm absent: real probe, VM and vCPU steps");
    }
    ok
}

fn probe(fd: i32) -> Result<mem_enc_caps, i32> {
    let mut caps = mem_enc_caps::default();
    // SAFETY: `caps` is writable for the size passed.
    match unsafe { mem_enc_probe(fd, &mut caps, size_of::<mem_enc_caps>()) } {
        0 => Ok(caps),
        e => Err(e),
    }
}

/// A negotiation level's answer (`memenc::negotiate`, the per-level C exports' core), or the
/// probe's error when there were no capabilities to negotiate on.
#[derive(Debug, PartialEq, Eq)]
enum Level {
    NoCaps(memenc::Errno),
    VmType(Result<VmChoice, Refusal>),
    Bits(Result<Grant, Refusal>),
}

/// `mem_enc_negotiate_launch()`'s answer: return value, settings, message.
type Launch = (i32, mem_enc_launch_settings, Vec<u8>);

/// `mem_enc_negotiate_launch()` on `caps` (NULL: the cached probe of /dev/kvm) for every
/// confidential VM type, DEBUG_SWAP optional.
fn negotiate_launch(caps: *const mem_enc_caps) -> Launch {
    let req = mem_enc_launch_request {
        accept_vm_types: MEM_ENC_VM_TYPES_CONFIDENTIAL,
        vmsa_features_optional: MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        ..Default::default()
    };
    let mut settings = mem_enc_launch_settings::default();
    let mut msg = vec![0u8; 512];
    // SAFETY: caps is NULL or a whole struct; every other pointer has the size passed with it.
    let r = unsafe {
        mem_enc_negotiate_launch(
            caps,
            size_of::<mem_enc_caps>(),
            &req,
            size_of::<mem_enc_launch_request>(),
            &mut settings,
            size_of::<mem_enc_launch_settings>(),
            msg.as_mut_ptr().cast(),
            msg.len(),
        )
    };
    (r, settings, msg)
}

/// Everything one thread observes in one round.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    probe_default: Result<mem_enc_caps, i32>,
    probe_own_fd: Option<Result<mem_enc_caps, i32>>,
    levels: Vec<Level>,
    /// On the simulated SNP host's probe, and (with /dev/kvm) on NULL: the cached host probe.
    launch: Vec<Launch>,
    /// (descriptor kind, id, flags) -> (return value, status bytes).
    ops: Vec<(&'static str, u32, u32, i32, u64)>,
    /// Simulated launches: (profile, every helper's return value, launch digest).
    sim: Vec<(&'static str, Vec<i32>, Vec<u8>)>,
}

#[path = "sim_util/mod.rs"]
mod sim_util;

use memenc::capi::sev::*;
use memenc::capi::snp::*;
use memenc::capi::tdx::*;
use memenc::uapi::{sev_id, tdx_id};
use sim_util::{Mem, gpaw48, new_vm, op_retry, private_slot, sev_dev, td_init_args, vcpu};

const PAGE: usize = 4096;

/// Guest pages with a fixed pattern (the measured contents).
fn image(pages: usize) -> Mem {
    let mut m = Mem::new(pages * PAGE);
    for (i, b) in m.bytes().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    m
}

/// Three whole launches on this thread's own simulated VMs: the helpers' results and digests.
fn sim_launches() -> Vec<(&'static str, Vec<i32>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut fw = 0u32;
    let mut hw = 0u64;
    // SAFETY (whole block): every pointer is valid for the size passed with it.
    unsafe {
        // SEV (legacy INIT on a 6.1-era host).
        let vm = new_vm("sev@6.1", 0);
        let sev = sev_dev(&vm);
        let img = image(2);
        let start = mem_enc_sev_start_args {
            handle: 0,
            policy: 1,
            cert: core::ptr::null(),
            cert_len: 0,
            session: core::ptr::null(),
            session_len: 0,
        };
        let rs = vec![
            op_retry(vm.0, sev_id::INIT).0,
            mem_enc_sev_launch_start(vm.0, sev.0, &start, 40, core::ptr::null_mut(), &mut fw),
            mem_enc_sev_launch_update_data(vm.0, img.addr as *mut _, 2 * PAGE, &mut fw),
        ];
        out.push(("sev@6.1", rs, sim_util::digest(&vm).unwrap_or_default()));

        // SNP: INIT2, LAUNCH_START, 4 pages, LAUNCH_FINISH with one vCPU.
        let vm = new_vm("snp@6.18", MEM_ENC_VM_TYPE_SNP);
        let sev = sev_dev(&vm);
        let backing = Mem::new(8 * PAGE);
        let _gmem = private_slot(&vm, 0, 0, 8 * PAGE as u64, &backing);
        let img = image(4);
        let init = mem_enc_sev_init2_args {
            ghcb_version: 2,
            ..Default::default()
        };
        let start = mem_enc_snp_launch_start_args {
            policy: MEM_ENC_SNP_POLICY_SMT,
            gosvw: [0; 16],
        };
        let update = mem_enc_snp_launch_update_args {
            gfn_start: 2,
            src: img.addr as *mut _,
            len: 4 * PAGE as u64,
            page_type: MEM_ENC_SNP_PAGE_TYPE_NORMAL,
            retry_limit: 0,
        };
        let finish = mem_enc_snp_launch_finish_args {
            id_block: core::ptr::null(),
            id_block_len: 0,
            id_auth: core::ptr::null(),
            id_auth_len: 0,
            host_data: [7; 32],
            auth_key_en: 0,
            vcek_disabled: 0,
            reserved: [0; 6],
        };
        let mut reached = 0;
        let mut rs = vec![
            mem_enc_sev_init2(vm.0, &init, 16, &mut fw),
            mem_enc_snp_launch_start(vm.0, sev.0, &start, 24, &mut fw),
            mem_enc_snp_launch_update(vm.0, sev.0, &update, 32, &mut reached, &mut fw),
        ];
        let _v = vcpu(&vm, 0).unwrap();
        rs.push(mem_enc_snp_launch_finish(vm.0, sev.0, &finish, 72, &mut fw));
        out.push(("snp@6.18", rs, sim_util::digest(&vm).unwrap_or_default()));

        // TDX: INIT_VM, a vCPU, 4 measured pages, FINALIZE_VM.
        let vm = new_vm("tdx@6.19", MEM_ENC_VM_TYPE_TDX);
        let cpuid = [gpaw48()];
        let args = td_init_args(&cpuid);
        let mut rs = vec![mem_enc_tdx_init_vm(vm.0, &args, 176, &mut hw)];
        rs.push(sim_util::enable_split_irqchip(&vm).unwrap_or_else(|e| -e));
        let v = vcpu(&vm, 0).unwrap();
        rs.push(mem_enc_tdx_init_vcpu(v.0, 0x1000, &mut hw));
        let backing = Mem::new(8 * PAGE);
        let _gmem = private_slot(&vm, 0, 0, 8 * PAGE as u64, &backing);
        let img = image(4);
        let region = mem_enc_tdx_init_mem_region_args {
            source: img.addr as *const _,
            gpa: 2 * PAGE as u64,
            nr_pages: 4,
            flags: memenc::MEM_ENC_TDX_MEASURE_MEMORY_REGION,
            retry_limit: 0,
        };
        rs.push(mem_enc_tdx_init_mem_region(
            v.0,
            &region,
            32,
            &mut reached,
            &mut hw,
        ));
        rs.push(op_retry(vm.0, tdx_id::FINALIZE_VM).0);
        out.push(("tdx@6.19", rs, sim_util::digest(&vm).unwrap_or_default()));
    }
    out
}

fn workload(kvm: bool) -> Observed {
    // The simulated snp@6.11 host's probe, so the success paths of negotiation run everywhere.
    let snp = sim_util::probed("snp@6.11");
    let mut levels = Vec::new();
    let all = MEM_ENC_VM_TYPES_CONFIDENTIAL;
    // Host capabilities (the cached probe) and the simulated SNP host's.
    let mut sources = Vec::new();
    if kvm {
        sources.push(memenc::probe::probe_default());
    }
    sources.push(Ok(snp));
    for caps in &sources {
        let caps = match caps {
            Ok(c) => c,
            Err(e) => {
                levels.push(Level::NoCaps(*e));
                continue;
            }
        };
        levels.push(Level::VmType(memenc::negotiate::vm_type(caps, all)));
        levels.push(Level::Bits(vmsa_features(
            caps,
            MEM_ENC_VM_TYPE_SNP,
            0,
            MEM_ENC_SEV_FEAT_DEBUG_SWAP,
        )));
        levels.push(Level::Bits(snp_policy(caps, 0, MEM_ENC_SNP_POLICY_SMT)));
        levels.push(Level::Bits(tdx_attributes(caps, 0, 1)));
        levels.push(Level::Bits(tdx_xfam(caps, 0, 3)));
    }
    let mut launch = vec![negotiate_launch(&snp)];
    if kvm {
        launch.push(negotiate_launch(core::ptr::null()));
    }

    let mut ops = Vec::new();
    let mut probe_own_fd = None;
    let probe_default = if kvm { probe(-1) } else { Err(0) };
    if kvm {
        let own = File::options()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .unwrap();
        probe_own_fd = Some(probe(own.as_raw_fd()));
        // This thread's own VM and vCPU.
        let vm = kvm_ioctls::Kvm::new().unwrap().create_vm().unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        for (what, fd) in [("vm", vm.as_raw_fd()), ("vcpu", vcpu.as_raw_fd())] {
            for id in [0u32, 2, 8, 22, 100, 103, 1000] {
                for flags in [0, MEM_ENC_FLAG_RETRY, 1 << 20] {
                    let mut cmd = mem_enc_cmd {
                        flags,
                        ..mem_enc_cmd::new(id, 0)
                    };
                    cmd.status.hw_error = u64::MAX;
                    // SAFETY: a 24-byte command without a parameter struct.
                    let r = unsafe { mem_enc_op(fd, &mut cmd) };
                    ops.push((what, id, flags, r, cmd.hw_error()));
                }
            }
            // SAFETY: NULL is documented (the backend question).
            let r = unsafe { mem_enc_op(fd, core::ptr::null_mut()) };
            ops.push((what, u32::MAX, 0, r, 0));
        }
    }
    Observed {
        probe_default,
        probe_own_fd,
        levels,
        launch,
        ops,
        sim: sim_launches(),
    }
}

#[test]
fn eight_threads_agree_with_one() {
    let kvm = have_kvm();
    let reference = workload(kvm);
    for (profile, rs, digest) in &reference.sim {
        assert!(rs.iter().all(|&r| r == 0), "{profile}: {rs:?}");
        assert!(digest.len() >= 32, "{profile}: no digest");
    }
    // Round 0 starts with an empty cache so the first probes race each other.
    mem_enc_probe_invalidate();
    let barrier = Barrier::new(THREADS);
    let results: Vec<Vec<Observed>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..ROUNDS)
                        .map(|_| {
                            barrier.wait();
                            workload(kvm)
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, rounds) in results.iter().enumerate() {
        for (r, got) in rounds.iter().enumerate() {
            assert_eq!(got, &reference, "thread {t} round {r}");
        }
    }
    if kvm {
        println!(
            "{THREADS} threads x {ROUNDS} rounds: {} ops each, all equal to the single-threaded run",
            reference.ops.len()
        );
    }
}

/// Forks while 7 threads are probing (with invalidation in between), and checks the child's
/// probe and NULL-caps negotiation answer the same as the parent's.
fn fork_and_compare(invalidate_first: bool) {
    let expected = probe(-1).unwrap();
    let expected_launch = negotiate_launch(core::ptr::null());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for i in 0..7 {
            let stop = &stop;
            s.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(probe(-1).unwrap(), expected);
                    if i == 0 {
                        mem_enc_probe_invalidate();
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        if invalidate_first {
            mem_enc_probe_invalidate();
        }
        // SAFETY: the child uses memenc (the code under test), compares, and _exit()s without
        // touching the other threads' state.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match probe(-1) {
                Ok(c) if c == expected => {
                    if negotiate_launch(core::ptr::null()) == expected_launch {
                        0
                    } else {
                        12
                    }
                }
                Ok(_) => 10,
                Err(_) => 11,
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "child's answer differs");
    });
}

#[test]
fn probe_cache_is_fork_safe_while_threads_probe() {
    if !have_kvm() {
        return;
    }
    for _ in 0..3 {
        fork_and_compare(false);
        fork_and_compare(true);
    }
}

/// One raw pthread's job for [`pthreads_agree_with_one`].
struct Job {
    barrier: *mut libc::pthread_barrier_t,
    kvm: bool,
    out: Vec<Observed>,
}

extern "C" fn job_main(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the &mut Job the creating thread keeps alive until pthread_join.
    let job = unsafe { &mut *arg.cast::<Job>() };
    for _ in 0..ROUNDS {
        // SAFETY: the barrier outlives every thread (destroyed after the joins).
        unsafe { libc::pthread_barrier_wait(job.barrier) };
        job.out.push(workload(job.kvm));
    }
    core::ptr::null_mut()
}

/// The same check as [`eight_threads_agree_with_one`], on raw pthreads with a pthread barrier,
/// the synchronisation valgrind's helgrind and drd understand (std's futex-based `Barrier` is
/// invisible to them): this is the test scripts/thread-check.sh runs under both tools.
#[test]
fn pthreads_agree_with_one() {
    let kvm = have_kvm();
    let reference = workload(kvm);
    mem_enc_probe_invalidate();
    // SAFETY: zeroed storage initialised by pthread_barrier_init before use.
    let mut barrier: libc::pthread_barrier_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid barrier storage, default attributes.
    assert_eq!(
        unsafe { libc::pthread_barrier_init(&mut barrier, core::ptr::null(), THREADS as u32) },
        0
    );
    let mut jobs: Vec<Job> = (0..THREADS)
        .map(|_| Job {
            barrier: &mut barrier,
            kvm,
            out: Vec::new(),
        })
        .collect();
    let mut tids = Vec::new();
    for job in &mut jobs {
        // SAFETY: zeroed pthread_t storage, filled by pthread_create.
        let mut tid: libc::pthread_t = unsafe { core::mem::zeroed() };
        // SAFETY: `job` stays alive and is not touched by this thread until the join.
        let r = unsafe {
            libc::pthread_create(
                &mut tid,
                core::ptr::null(),
                job_main,
                (job as *mut Job).cast(),
            )
        };
        assert_eq!(r, 0);
        tids.push(tid);
    }
    for tid in tids {
        // SAFETY: joining threads created above, once each.
        assert_eq!(unsafe { libc::pthread_join(tid, core::ptr::null_mut()) }, 0);
    }
    // SAFETY: no thread uses the barrier any more.
    unsafe { libc::pthread_barrier_destroy(&mut barrier) };
    for (t, job) in jobs.iter().enumerate() {
        assert_eq!(job.out.len(), ROUNDS);
        for (r, got) in job.out.iter().enumerate() {
            assert_eq!(got, &reference, "pthread {t} round {r}");
        }
    }
}
