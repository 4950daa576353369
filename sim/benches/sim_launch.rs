//! Launch updates on the simulated host (results SIMULATED): what the library costs above the
//! host, and how fast the simulated firmware measures. BENCHMARKS.md has the figures.
//!
//! Part 1 (printed, one shot each): SNP_LAUNCH_UPDATE and TDX INIT_MEM_REGION of 1 GiB through
//! the typed helpers:
//!  - KVM_MEMORY_ENCRYPT_OP calls issued (memenc's trace hook) against the kernel minimum (one:
//!    both kernel handlers walk the whole range in one call unless interrupted);
//!  - bytes of caller memory read through `process_vm_readv`, the host layer's only way to
//!    read caller memory (`host::read_user`), counted by interposing the symbol in this binary,
//!    with the first callers' stacks: every one is in the model (`memenc::sim`), which reads the
//!    guest data as firmware would. Together with the peak-RSS growth of the call (a copy of
//!    the guest data would need buffers), this shows the library layer copies none of it;
//!  - wall time and the measurement throughput.
//!
//! Part 2 (criterion): the simulated host's SHA-384 measurement of 64 MiB against `sha2`
//! hashing the same bytes directly (the limit).
//!
//! Run: `cargo bench --bench sim_launch` (add `-- --quick` for a shorter criterion part).

use std::ffi::c_void;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use memenc::trace::mem_enc_trace_event;
use memenc_sim::compat::*;
use memenc_sim::model::measure::{TDX_MEASURED_PAGE_STREAM, TdxPageStream};
use memenc_sim::model::page_hash;
use sha2::{Digest, Sha384};

#[path = "../tests/sim_util/mod.rs"]
mod sim_util;

#[path = "common/mod.rs"]
mod common;
use common::*;

const GIB: usize = 1 << 30;

// ---------------------------------------------------------------------------------------------
// Counting: ioctls (trace hook) and process_vm_readv bytes (symbol interposition).

static IOCTLS: AtomicU64 = AtomicU64::new(0);
static READ_CALLS: AtomicU64 = AtomicU64::new(0);
static READ_BYTES: AtomicU64 = AtomicU64::new(0);
static SAMPLE: AtomicBool = AtomicBool::new(false);
static SAMPLED: AtomicUsize = AtomicUsize::new(0);
static SAMPLED_IN_SIM: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn count_ioctl(_: *mut c_void, _: *const mem_enc_trace_event) {
    IOCTLS.fetch_add(1, Ordering::Relaxed);
}

/// Interposes libc's `process_vm_readv` for this binary (memenc is linked in statically, so
/// its calls bind here): counts, samples the caller's stack, then makes the real system call.
///
/// # Safety
/// As `process_vm_readv(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn process_vm_readv(
    pid: libc::pid_t,
    local: *const libc::iovec,
    liovcnt: libc::c_ulong,
    remote: *const libc::iovec,
    riovcnt: libc::c_ulong,
    flags: libc::c_ulong,
) -> libc::ssize_t {
    // SAFETY: the same arguments, to the same system call.
    let n = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            pid,
            local,
            liovcnt,
            remote,
            riovcnt,
            flags,
        )
    } as libc::ssize_t;
    READ_CALLS.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        READ_BYTES.fetch_add(n as u64, Ordering::Relaxed);
    }
    if SAMPLE.load(Ordering::Relaxed) && SAMPLED.fetch_add(1, Ordering::Relaxed) < 64 {
        let stack = std::backtrace::Backtrace::force_capture().to_string();
        if stack.contains("memenc_sim::model::") {
            SAMPLED_IN_SIM.fetch_add(1, Ordering::Relaxed);
        }
    }
    n
}

fn counters() -> (u64, u64, u64) {
    (
        IOCTLS.load(Ordering::Relaxed),
        READ_CALLS.load(Ordering::Relaxed),
        READ_BYTES.load(Ordering::Relaxed),
    )
}

/// Peak resident set (VmHWM) in KiB; reset with `clear_refs` 5 before a measurement.
fn hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

// ---------------------------------------------------------------------------------------------
// Simulated VMs with `bytes` of private memory at GPA 0, and a source of the same size: in
// common/mod.rs (shared with sim_launch_inproc.rs) but for how the private memory is set up.

impl Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is ours, len bytes.
        unsafe { core::slice::from_raw_parts(self.0, self.1) }
    }
}

/// guest_memfd + memslot + private attributes for common's VMs; pushes the guest_memfd.
fn private_memory(vm: i32, bytes: usize, fds: &mut Vec<i32>) -> Mapping {
    let backing = Mapping::new(bytes);
    // The VMM's own KVM ioctls (memenc 0.2 has no memslot exports): the tests' helper.
    let g = sim_util::private_memory(vm, bytes as u64, backing.0 as u64);
    fds.push(g);
    backing
}

// ---------------------------------------------------------------------------------------------
// Part 1.

fn one_gib(what: &str, make: Make, update: Update) {
    let src = source(GIB);
    let vm = make(GIB);
    SAMPLED.store(0, Ordering::Relaxed);
    SAMPLED_IN_SIM.store(0, Ordering::Relaxed);
    reset_hwm();
    let hwm0 = hwm_kib();
    let (i0, c0, b0) = counters();
    SAMPLE.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let (r, reached) = update(&vm, &src, GIB);
    let elapsed = t.elapsed();
    SAMPLE.store(false, Ordering::Relaxed);
    let (i1, c1, b1) = counters();
    let hwm1 = hwm_kib();
    assert_eq!(r, 0, "{what}");
    let guest = GIB as u64;
    let bytes = b1 - b0;
    println!("{what} of 1 GiB (SIMULATED host): result {r}, reached {reached:#x}");
    println!(
        "  KVM_MEMORY_ENCRYPT_OP issued: {} (kernel minimum: 1)",
        i1 - i0
    );
    println!(
        "  caller memory read through process_vm_readv: {bytes} bytes in {} calls = guest data {guest} + {} other bytes",
        c1 - c0,
        bytes as i64 - guest as i64
    );
    println!(
        "  sampled callers of process_vm_readv: {} of {} in memenc::sim (the model)",
        SAMPLED_IN_SIM.load(Ordering::Relaxed),
        SAMPLED.load(Ordering::Relaxed).min(64)
    );
    println!(
        "  peak RSS growth during the call: {} KiB (guest data: {} KiB)",
        hwm1.saturating_sub(hwm0),
        guest / 1024
    );
    println!(
        "  wall time {:.3} s, {:.0} MiB/s",
        elapsed.as_secs_f64(),
        GIB as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
    );
}

/// What sha2 takes for the bytes the model hashes, measured once (for Part 1's context).
fn sha_reference(bytes: usize) -> Duration {
    let src = source(bytes);
    let t = Instant::now();
    for page in src.bytes().chunks(PAGE) {
        black_box(Sha384::digest(page));
    }
    t.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Part 2 (criterion).

/// `Sha384::digest` of each 4 KiB page of `pages` into `out`.
fn sha2_page_digests(pages: &[u8], out: &mut [[u8; 48]]) {
    for (page, digest) in pages.chunks(PAGE).zip(out) {
        *digest = Sha384::digest(page).into();
    }
}

/// The SNP launch digest of NORMAL pages at GPA 0.. with the given page hasher, computed
/// directly on `bytes` (no simulated VM, no copies).
fn snp_digest_direct(bytes: &[u8], page_digests: fn(&[u8], &mut [[u8; 48]])) -> [u8; 48] {
    let mut ld = [0u8; 48];
    let mut digests = [[0u8; 48]; page_hash::LANES];
    for (g, group) in bytes.chunks(page_hash::LANES * PAGE).enumerate() {
        let n = group.len() / PAGE;
        page_digests(group, &mut digests[..n]);
        for (j, digest) in digests[..n].iter().enumerate() {
            let gpa = ((g * page_hash::LANES + j) * PAGE) as u64;
            let mut info = [0u8; 0x70];
            info[..48].copy_from_slice(&ld);
            info[48..96].copy_from_slice(digest);
            info[96] = 0x70;
            info[98] = 1;
            info[104..112].copy_from_slice(&gpa.to_le_bytes());
            ld = Sha384::digest(info).into();
        }
    }
    ld
}

const CHUNK: usize = 64 << 20;

fn measurement(c: &mut Criterion) {
    let src = source(CHUNK);
    // The rows below compare the same work: the model's launch digest equals the direct ones.
    let vm = snp_vm(CHUNK);
    assert_eq!(snp_update(&vm, &src, CHUNK).0, 0);
    let mut model = [0u8; 48];
    // SAFETY: 48 writable bytes.
    let n = unsafe { mem_enc_sim_launch_digest(vm.vm(), model.as_mut_ptr(), model.len()) };
    assert_eq!(n, 48);
    assert_eq!(model, snp_digest_direct(src.bytes(), sha2_page_digests));
    assert_eq!(
        model,
        snp_digest_direct(src.bytes(), page_hash::page_digests)
    );
    drop(vm);
    let mut mrtd_stream = Vec::with_capacity(CHUNK / PAGE * TDX_MEASURED_PAGE_STREAM);
    let mut page_stream = TdxPageStream::default();
    for (i, page) in src.bytes().chunks(PAGE).enumerate() {
        page_stream.set((i * PAGE) as u64, page);
        mrtd_stream.extend_from_slice(page_stream.bytes());
    }
    let vm = td(CHUNK);
    assert_eq!(tdx_update(&vm, &src, CHUNK).0, 0);
    // SAFETY: 48 writable bytes.
    let n = unsafe { mem_enc_sim_launch_digest(vm.vm(), model.as_mut_ptr(), model.len()) };
    assert_eq!(n, 48);
    assert_eq!(model, <[u8; 48]>::from(Sha384::digest(&mrtd_stream)));
    drop(vm);
    let mut g = c.benchmark_group("sha384_64MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(CHUNK as u64));
    // The limit: sha2 over the same bytes, one digest per 4 KiB page (SNP measures each page's
    // SHA-384; one stream over the whole buffer is also shown).
    g.bench_function("sha2_per_page", |b| {
        b.iter(|| {
            for page in src.bytes().chunks(PAGE) {
                black_box(Sha384::digest(page));
            }
        })
    });
    g.bench_function("sha2_stream", |b| {
        b.iter(|| black_box(Sha384::digest(src.bytes())))
    });
    // What the SNP specification makes the firmware hash per page, done directly on the
    // bytes: each page's SHA-384 and then SHA-384 of its 0x70-byte PAGE_INFO (two 128-byte
    // blocks once padded: 35 blocks per page where the page alone is 33). Once with sha2's
    // digests, once with the model's own page hasher (eight pages at a time with AVX-512).
    g.bench_function("sha2_snp_page_info", |b| {
        b.iter(|| black_box(snp_digest_direct(src.bytes(), sha2_page_digests)))
    });
    g.bench_function("model_hasher_snp_page_info", |b| {
        b.iter(|| black_box(snp_digest_direct(src.bytes(), page_hash::page_digests)))
    });
    g.bench_function("sim_snp_launch_update", |b| {
        b.iter_batched(
            || snp_vm(CHUNK),
            // The VM is returned so that criterion drops it after the timed part.
            |vm| {
                assert_eq!(snp_update(&vm, &src, CHUNK).0, 0);
                vm
            },
            BatchSize::PerIteration,
        )
    });
    // TDX: MRTD is one SHA-384 over a PAGE.ADD record per page and an MR.EXTEND record per
    // 256-byte chunk before the chunk (1.53 times the guest bytes). The limit is sha2 over that
    // same stream, laid out beforehand (outside the timing) and hashed in one call.
    g.bench_function("sha2_tdx_mrtd_stream", |b| {
        b.iter(|| black_box(Sha384::digest(&mrtd_stream)))
    });
    g.bench_function("sim_tdx_init_mem_region", |b| {
        b.iter_batched(
            || td(CHUNK),
            |vm| {
                assert_eq!(tdx_update(&vm, &src, CHUNK).0, 0);
                vm
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    // SAFETY: count_ioctl is safe from any thread; the userdata is unused.
    unsafe { memenc::capi::trace::mem_enc_set_trace(Some(count_ioctl), core::ptr::null_mut()) };
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not run benchmarks.
    if !args.iter().any(|a| a == "--bench") {
        println!("sim_launch: run with `cargo bench --bench sim_launch`");
        return;
    }
    // MEMENC_BENCH_SKIP_1GIB=1: criterion part only (criterion owns the command line).
    if std::env::var_os("MEMENC_BENCH_SKIP_1GIB").is_none() {
        one_gib("SNP_LAUNCH_UPDATE", snp_vm, snp_update);
        one_gib("TDX INIT_MEM_REGION (measured)", td, tdx_update);
        let t = sha_reference(GIB);
        println!(
            "sha2 SHA-384 of 1 GiB, one digest per page: {:.3} s, {:.0} MiB/s",
            t.as_secs_f64(),
            1024.0 / t.as_secs_f64()
        );
    }
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    measurement(&mut c);
    c.final_summary();
}
