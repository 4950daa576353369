//! The simulated host's generic side: the differential against the real /dev/kvm (the `none`
//! profile must answer as this machine's KVM does), per-profile probing answers, the C API's
//! argument errors, and descriptor lifecycle (close and reuse, dups, fork, many VMs, threads).

mod sim_util;

use std::os::fd::AsRawFd;

use memenc::uapi::*;
use memenc_sim::compat::*;
use sim_util::*;

/// The tests here open and close descriptors and one of them checks what a just-closed number
/// answers: run them one at a time so a parallel test cannot take that number in between.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn attr(fd: i32, request: u64, group: u32, attr: u64) -> (Result<i32, i32>, u64) {
    let mut value = 0u64;
    let mut a = kvm_device_attr {
        flags: 0,
        group,
        attr,
        addr: ptr(&mut value),
    };
    (raw(fd, request, ptr(&mut a)), value)
}

/// The questions memenc asks a host, answered by `system` (a /dev/kvm descriptor).
fn answers(system: i32) -> Vec<String> {
    let mut out = vec![format!("api {:?}", raw(system, KVM_GET_API_VERSION, 0))];
    for cap in [
        KVM_CAP_SYS_ATTRIBUTES,
        KVM_CAP_MEMORY_ATTRIBUTES,
        KVM_CAP_GUEST_MEMFD,
        KVM_CAP_VM_TYPES,
        KVM_CAP_GUEST_MEMFD_FLAGS,
        9999,
    ] {
        out.push(format!(
            "sys cap {cap} {:?}",
            raw(system, KVM_CHECK_EXTENSION, cap)
        ));
    }
    for (g, a) in [(0, 1), (1, 0), (1, 1), (1, 2), (2, 0)] {
        out.push(format!(
            "get {g}/{a} {:?}",
            attr(system, KVM_GET_DEVICE_ATTR, g, a).0
        ));
        out.push(format!(
            "has {g}/{a} {:?}",
            attr(system, KVM_HAS_DEVICE_ATTR, g, a).0
        ));
    }
    out.push(format!(
        "group 0 attr 0 present {:?}",
        attr(system, KVM_HAS_DEVICE_ATTR, 0, 0).0
    ));
    out.push(format!(
        "attr EFAULT {:?}",
        raw(system, KVM_GET_DEVICE_ATTR, 8)
    ));
    out.push(format!(
        "sys encrypt op {:?}",
        raw(system, KVM_MEMORY_ENCRYPT_OP, 0)
    ));
    out.push(format!("sys unknown {:?}", raw(system, 0xAEFF, 0)));
    for t in 1..7 {
        out.push(format!("create vm {t} {:?}", raw(system, KVM_CREATE_VM, t)));
    }
    let vm = Fd(raw(system, KVM_CREATE_VM, 0).expect("default VM"));
    for cap in [
        KVM_CAP_MEMORY_ATTRIBUTES,
        KVM_CAP_GUEST_MEMFD,
        KVM_CAP_VM_TYPES,
        KVM_CAP_GUEST_MEMFD_FLAGS,
    ] {
        out.push(format!(
            "vm cap {cap} {:?}",
            raw(vm.0, KVM_CHECK_EXTENSION, cap)
        ));
    }
    out.push(format!(
        "vm null op {:?}",
        raw(vm.0, KVM_MEMORY_ENCRYPT_OP, 0)
    ));
    let mut cmd = raw_cmd(0, 0, 0, 0);
    out.push(format!("vm op {:?}", raw_op(vm.0, &mut cmd)));
    let (r, _) = op(&vm, 0, 0, None);
    out.push(format!("mem_enc_op {r:?}"));
    // SAFETY: a NULL command is the documented probe.
    out.push(format!("vm op null cmd via memenc {}", unsafe {
        memenc::capi::op::mem_enc_op(vm.0, core::ptr::null_mut())
    }));
    out.push(format!(
        "reg region {:?}",
        raw(
            vm.0,
            KVM_MEMORY_ENCRYPT_REG_REGION,
            ptr(&mut kvm_enc_region::default())
        )
    ));
    out.push(format!(
        "reg region EFAULT {:?}",
        raw(vm.0, KVM_MEMORY_ENCRYPT_REG_REGION, 8)
    ));
    let mut a = kvm_memory_attributes {
        address: 0,
        size: 4096,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
    };
    out.push(format!(
        "mem attrs {:?}",
        raw(vm.0, KVM_SET_MEMORY_ATTRIBUTES, ptr(&mut a))
    ));
    let mut g = kvm_create_guest_memfd {
        size: 1 << 20,
        flags: 0,
        reserved: [0; 6],
    };
    let gmem = raw(vm.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g));
    out.push(format!("gmem ok {}", gmem.is_ok()));
    if let Ok(fd) = gmem {
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
    }
    g.size = 1000;
    out.push(format!(
        "gmem unaligned {:?}",
        raw(vm.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g))
    ));
    g = kvm_create_guest_memfd {
        size: 1 << 20,
        flags: 1 << 5,
        reserved: [0; 6],
    };
    out.push(format!(
        "gmem bad flag {:?}",
        raw(vm.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g))
    ));
    let mut r = kvm_userspace_memory_region2 {
        slot: 0,
        memory_size: 4096,
        guest_phys_addr: 0x1001,
        ..Default::default()
    };
    out.push(format!(
        "region2 unaligned gpa {:?}",
        raw(vm.0, KVM_SET_USER_MEMORY_REGION2, ptr(&mut r))
    ));
    r = kvm_userspace_memory_region2 {
        slot: 0,
        ..Default::default()
    };
    out.push(format!(
        "region2 delete missing {:?}",
        raw(vm.0, KVM_SET_USER_MEMORY_REGION2, ptr(&mut r))
    ));
    out.push(format!(
        "tsc before vcpu {:?}",
        raw(vm.0, KVM_SET_TSC_KHZ, 1_000_000)
    ));
    let v = Fd(raw(vm.0, KVM_CREATE_VCPU, 0).expect("vcpu"));
    out.push(format!("vcpu again {:?}", raw(vm.0, KVM_CREATE_VCPU, 0)));
    out.push(format!(
        "vcpu id too big {:?}",
        raw(vm.0, KVM_CREATE_VCPU, 1 << 20)
    ));
    out.push(format!(
        "tsc after vcpu {:?}",
        raw(vm.0, KVM_SET_TSC_KHZ, 1_000_000)
    ));
    out.push(format!("vcpu op {:?}", raw_op(v.0, &mut cmd)));
    out.push(format!(
        "vcpu cap {:?}",
        raw(v.0, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
    ));
    out.push(format!("vm unknown {:?}", raw(vm.0, 0xAEFF, 0)));
    out
}

#[test]
fn differential_real_kvm_and_the_none_profile() {
    let _serial = serial();
    // SAFETY: plain open(2) of a device path.
    let real = unsafe { libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if real < 0 {
        println!("SKIPPED: no usable /dev/kvm here; the differential needs the real host");
        return;
    }
    let real = Fd(real);
    let sim = kvm("none");
    let (want, got) = (answers(real.0), answers(sim.0));
    for (w, g) in want.iter().zip(&got) {
        println!("real: {w:<40} simulated: {g}");
    }
    assert_eq!(want, got, "the none profile answers as this machine's KVM");
    assert_eq!(memenc::host::vendor_of(sim.0), memenc::host::cpu_vendor());
}

#[test]
fn probing_answers_per_profile() {
    let _serial = serial();
    // profile, VM_TYPES, MEMORY_ATTRIBUTES, SEV attrs 0, 1, 2
    type Row = (
        &'static str,
        i32,
        i32,
        Result<i32, i32>,
        Result<i32, i32>,
        Result<i32, i32>,
    );
    let expect: [Row; 8] = [
        // profile, VM_TYPES, MEMORY_ATTRIBUTES, attr 0, attr 1, attr 2
        (
            "none",
            0x1,
            0,
            Err(libc::ENXIO),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
        (
            "sev@6.1",
            0,
            0,
            Err(libc::ENXIO),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
        (
            "snp@6.11",
            0x1D,
            8,
            Ok(0x20),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
        // Attr 1 arrived in 6.19, attr 2 in 7.0.
        (
            "snp@6.18",
            0x1D,
            8,
            Ok(0x220),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
        (
            "snp@6.19",
            0x1D,
            8,
            Ok(0x220),
            Ok(0x3FB_FFFF),
            Err(libc::ENXIO),
        ),
        ("snp@7.0", 0x1D, 8, Ok(0x220), Ok(0x3FB_FFFF), Ok(1)),
        (
            "tdx@6.16",
            0x21,
            8,
            Err(libc::ENXIO),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
        (
            "tdx@6.19",
            0x21,
            8,
            Err(libc::ENXIO),
            Err(libc::ENXIO),
            Err(libc::ENXIO),
        ),
    ];
    for (profile, types, attrs, a0, a1, a2) in expect {
        println!("simulated host: {profile}");
        let sys = kvm(profile);
        assert_eq!(
            raw(sys.0, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
            Ok(types),
            "{profile}"
        );
        assert_eq!(
            raw(sys.0, KVM_CHECK_EXTENSION, KVM_CAP_MEMORY_ATTRIBUTES),
            Ok(attrs),
            "{profile}"
        );
        for (a, want) in [(0, a0), (1, a1), (2, a2)] {
            let (r, v) = attr(sys.0, KVM_GET_DEVICE_ATTR, 1, a);
            assert_eq!(r.map(|_| v as i32), want, "{profile} attr {a}");
        }
        for t in 0..6u64 {
            let creatable = if types == 0 {
                t == 0
            } else {
                types & (1 << t) != 0
            };
            let r = raw(sys.0, KVM_CREATE_VM, t);
            assert_eq!(r.is_ok(), creatable, "{profile} type {t}: {r:?}");
            if let Ok(fd) = r {
                // SAFETY: our descriptor.
                unsafe { libc::close(fd) };
            }
        }
        let v = new_vm(profile, 0);
        // The vendor numbering follows the profile.
        let vendor = memenc::host::vendor_of(v.0);
        let expected = match profile {
            "none" => memenc::host::cpu_vendor(),
            p if p.starts_with("tdx") => memenc::Vendor::Tdx,
            _ => memenc::Vendor::Sev,
        };
        assert_eq!(vendor, expected);
    }
    // Listing the profiles.
    let names: Vec<String> = (0..)
        .map(|i: usize| mem_enc_sim_profile_name(i))
        .take_while(|p| !p.is_null())
        // SAFETY: static NUL-terminated strings.
        .map(|p| {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "none", "sev@6.1", "snp@6.11", "snp@6.18", "tdx@6.16", "tdx@6.19", "snp@6.19",
            "snp@7.0"
        ]
    );
}

#[test]
fn c_api_argument_errors() {
    let _serial = serial();
    // SAFETY: NULL and valid strings only.
    unsafe {
        assert_eq!(mem_enc_sim_kvm_open(core::ptr::null()), -EINVAL);
        assert_eq!(mem_enc_sim_kvm_open(c"sev@9.9".as_ptr()), -libc::ENOENT);
        assert_eq!(mem_enc_sim_vm_create(core::ptr::null()), -EINVAL);
        assert_eq!(mem_enc_sim_vm_create_type(c"none".as_ptr(), 4), -EINVAL);
        assert_eq!(
            mem_enc_sim_vm_create_type(c"snp@6.11".as_ptr(), 99),
            -EINVAL
        );
    }
    assert_eq!(mem_enc_sim_vcpu_create(-1, 0), -EBADF);
    assert_eq!(
        mem_enc_sim_vcpu_create(0, 0),
        -EBADF,
        "stdin is not a simulated VM"
    );
    let vm = new_vm("tdx@6.16", 0);
    assert_eq!(mem_enc_sim_sev_device_open(vm.0), -libc::ENODEV);
    assert_eq!(mem_enc_sim_sev_device_open(1), -EBADF);
    assert_eq!(digest(&vm), Err(-EINVAL), "no launch yet");
    let vm = new_vm("snp@6.18", KVM_X86_SNP_VM);
    let sev = sev_dev(&vm);
    assert_eq!(
        mem_enc_sim_sev_device_open(sev.0),
        -EBADF,
        "a /dev/sev is not a VM"
    );
    let mut init = kvm_sev_init::default();
    assert_eq!(op(&vm, 22, ptr(&mut init), None).0, Ok(()));
    let mut s = kvm_sev_snp_launch_start {
        policy: 0x30000,
        ..Default::default()
    };
    assert_eq!(op(&vm, 100, ptr(&mut s), Some(&sev)).0, Ok(()));
    let mut small = [0u8; 47];
    // SAFETY: 47 writable bytes.
    assert_eq!(
        unsafe { mem_enc_sim_launch_digest(vm.0, small.as_mut_ptr(), small.len()) },
        -libc::ENOSPC
    );
    // SAFETY: NULL is handled.
    assert_eq!(
        unsafe { mem_enc_sim_launch_digest(vm.0, core::ptr::null_mut(), 48) },
        -EINVAL
    );
    assert_eq!(digest(&vm), Ok(vec![0; 48]), "SNP digest starts at zero");
    // A larger buffer: exactly the digest is written (directly, no other byte touched).
    let mut big = [0xAAu8; 64];
    // SAFETY: 64 writable bytes.
    let n = unsafe { mem_enc_sim_launch_digest(vm.0, big.as_mut_ptr(), big.len()) };
    assert_eq!(n, 48);
    assert!(big[..48].iter().all(|&b| b == 0) && big[48..].iter().all(|&b| b == 0xAA));
    // Fault structs follow copy_struct_from_user.
    let f = mem_enc_sim_fault {
        kind: MEM_ENC_SIM_FAULT_EINTR,
        ..Default::default()
    };
    // SAFETY: valid pointers and sizes below.
    unsafe {
        assert_eq!(mem_enc_sim_inject(vm.0, core::ptr::null(), 24), -EINVAL);
        assert_eq!(mem_enc_sim_inject(vm.0, &f, 24), 0);
        assert_eq!(mem_enc_sim_inject(vm.0, &f, 4), 0, "smaller: zero-filled");
        let mut big = [0u8; 40];
        big[..24].copy_from_slice(core::slice::from_raw_parts(
            (&f as *const mem_enc_sim_fault).cast(),
            24,
        ));
        assert_eq!(
            mem_enc_sim_inject(vm.0, big.as_ptr().cast(), 40),
            0,
            "larger with a zero tail"
        );
        let bad = mem_enc_sim_fault {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(mem_enc_sim_inject(vm.0, &bad, 24), -EINVAL);
        let zero = mem_enc_sim_fault {
            kind: MEM_ENC_SIM_FAULT_PROGRESS,
            ..Default::default()
        };
        assert_eq!(mem_enc_sim_inject(vm.0, &zero, 24), -EINVAL);
        assert_eq!(mem_enc_sim_inject(vm.0, std::ptr::dangling(), 24), -EFAULT);
        assert_eq!(mem_enc_sim_inject(-1, &f, 24), -EBADF);
    }
}

/// `n`, a simulated descriptor's number just closed, is taken by a real file (when the kernel
/// hands it out again) and then closed: each time the real kernel answers.
fn reused_by_a_file_then_closed(n: i32) {
    let file = std::fs::File::open("/dev/null").unwrap();
    if file.as_raw_fd() == n {
        assert_eq!(
            raw(n, KVM_MEMORY_ENCRYPT_OP, 0),
            Err(ENOTTY),
            "a real /dev/null"
        );
        assert_eq!(memenc::host::vendor_of(n), memenc::host::cpu_vendor());
    }
    drop(file);
    assert_eq!(raw(n, KVM_MEMORY_ENCRYPT_OP, 0), Err(EBADF), "closed");
    assert_eq!(mem_enc_sim_vcpu_create(n, 0), -EBADF);
}

#[test]
fn closed_and_reused_descriptors_are_never_mistaken() {
    let _serial = serial();
    let vm = new_vm("snp@6.11", KVM_X86_SNP_VM);
    let n = vm.0;
    drop(vm);
    reused_by_a_file_then_closed(n);
    // A vCPU keeps its VM alive after the VM descriptor is closed, as in the kernel.
    let vm = new_vm("tdx@6.19", KVM_X86_TDX_VM);
    let mut caps = vec![0u64; 400];
    caps[256] = 16;
    let mut b = vec![0u8; 264 + 40];
    b[256] = 1;
    b[264..268].copy_from_slice(&0x8000_0008u32.to_le_bytes());
    b[276..280].copy_from_slice(&(48u32 << 16).to_le_bytes());
    assert_eq!(op(&vm, 1, b.as_mut_ptr() as u64, None).0, Ok(()));
    let mut cap = kvm_enable_cap {
        cap: 121,
        flags: 0,
        args: [0; 4],
        pad: [0; 64],
    };
    assert_eq!(raw(vm.0, KVM_ENABLE_CAP, ptr(&mut cap)), Ok(0));
    let v = vcpu(&vm, 0).unwrap();
    drop(vm);
    assert_eq!(
        op(&v, 2, 0, None).0,
        Ok(()),
        "INIT_VCPU on the orphaned vCPU"
    );
    assert!(digest(&v).is_ok(), "the VM is reachable through its vCPU");
}

#[test]
fn many_vms_and_threads() {
    let _serial = serial();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let profile = ["snp@6.18", "tdx@6.19", "sev@6.1", "none"][t % 4];
                let mut vms = Vec::new();
                for _ in 0..25 {
                    vms.push(new_vm(profile, 0));
                }
                for (i, vm) in vms.iter().enumerate() {
                    let v = vcpu(vm, i as u32).unwrap();
                    assert!(v.0 >= 0);
                    assert_eq!(
                        raw(vm.0, KVM_CHECK_EXTENSION, KVM_CAP_SYS_ATTRIBUTES),
                        Ok(1)
                    );
                }
                // Each VM is separate: INIT on one does not initialise another.
                if profile == "sev@6.1" {
                    let (a, b) = (new_vm(profile, 0), new_vm(profile, 0));
                    assert_eq!(op(&a, 0, 0, None).0, Ok(()));
                    assert_eq!(op(&b, 7, 0, None).0, Err(ENOTTY));
                    assert_eq!(op(&a, 0, 0, None).0, Err(EINVAL));
                    // INIT after a vCPU exists: -EINVAL.
                    assert_eq!(op(&vms[0], 0, 0, None).0, Err(EINVAL));
                }
                vms.len()
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 200);
    // Many threads on one VM: commands serialise on the VM.
    let vm = std::sync::Arc::new(new_vm("sev@6.1", 0));
    let results: Vec<_> = (0..8)
        .map(|_| {
            let vm = vm.clone();
            std::thread::spawn(move || op(&vm, 0, 0, None).0)
        })
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one INIT wins"
    );
}

/// `dup(fd)`, closed on drop.
fn dup(fd: &Fd) -> Fd {
    // SAFETY: dup only creates a descriptor, which the returned Fd owns.
    let d = unsafe { libc::dup(fd.0) };
    assert!(d >= 0);
    Fd(d)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a dup numbered `min` or above, closed on drop.
fn dup_from(fd: &Fd, min: i32) -> Fd {
    // SAFETY: as dup.
    let d = unsafe { libc::fcntl(fd.0, libc::F_DUPFD_CLOEXEC, min) };
    assert!(d >= min);
    Fd(d)
}

/// SEV INIT on the VM behind `vm`: Ok the first time, -EINVAL once the VM is initialised.
fn sev_init(vm: &Fd) -> Result<(), i32> {
    op(vm, memenc::uapi::sev_id::INIT, 0, None).0
}

/// A dup of a simulated descriptor shares its open file, as with the kernel: the same VM,
/// `/dev/kvm`, `/dev/sev` and guest_memfd.
#[test]
fn a_dup_is_the_same_simulated_object() {
    let _serial = serial();
    let vm = new_vm("sev@6.1", 0);
    let (vm2, vm3) = (dup(&vm), dup_from(&vm, 200));
    // INIT through one descriptor initialises the VM behind all of them.
    assert_eq!(sev_init(&vm2), Ok(()));
    assert_eq!(sev_init(&vm), Err(EINVAL), "INIT twice");
    assert_eq!(sev_init(&vm3), Err(EINVAL), "INIT twice");
    // /dev/sev opened through a dup; a dup of it is a /dev/sev for LAUNCH_START.
    let sev = sev_dev(&vm3);
    let sev2 = dup(&sev);
    let mut start = kvm_sev_launch_start::default();
    let (r, cmd) = op(
        &vm2,
        memenc::uapi::sev_id::LAUNCH_START,
        ptr(&mut start),
        Some(&sev2),
    );
    assert_eq!((r, cmd.sev().error), (Ok(()), 0));
    let launched = digest(&vm).expect("launch started");
    assert_eq!(digest(&vm3), Ok(launched));
    // A vCPU id taken through one descriptor is taken through the others.
    let _v = vcpu(&vm3, 0).unwrap();
    assert_eq!(vcpu(&vm, 0).err(), Some(-libc::EEXIST));
    assert_eq!(
        raw(vm2.0, KVM_CREATE_VCPU, 0),
        Err(libc::EEXIST),
        "KVM_CREATE_VCPU"
    );
    // /dev/kvm.
    let system = kvm("snp@6.18");
    let system2 = dup(&system);
    assert_eq!(raw(system2.0, KVM_GET_API_VERSION, 0), Ok(12));
    assert_eq!(
        raw(system2.0, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES),
        raw(system.0, KVM_CHECK_EXTENSION, KVM_CAP_VM_TYPES)
    );
    // A guest_memfd's dup binds to a memslot of its VM.
    let snp = new_vm("snp@6.11", KVM_X86_SNP_VM);
    let mut g = kvm_create_guest_memfd {
        size: 2 * PAGE,
        flags: 0,
        reserved: [0; 6],
    };
    let gmem = Fd(raw(snp.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g)).unwrap());
    let gmem2 = dup_from(&gmem, 300);
    let backing = Mem::new(2 * PAGE as usize);
    let mut slot = kvm_userspace_memory_region2 {
        slot: 0,
        flags: KVM_MEM_GUEST_MEMFD,
        guest_phys_addr: 0,
        memory_size: 2 * PAGE,
        userspace_addr: backing.addr,
        guest_memfd_offset: 0,
        guest_memfd: gmem2.0 as u32,
        ..Default::default()
    };
    assert_eq!(
        raw(snp.0, KVM_SET_USER_MEMORY_REGION2, ptr(&mut slot)),
        Ok(0)
    );
}

/// Closing the descriptor the simulator handed out leaves the VM to its dups, whether they
/// were used before or not, also after a new descriptor made the simulator forget closed ones.
#[test]
fn closing_the_first_descriptor_keeps_its_dups_working() {
    let _serial = serial();
    let vm = new_vm("sev@6.1", 0);
    assert_eq!(sev_init(&vm), Ok(()));
    let used = dup(&vm);
    assert_eq!(sev_init(&used), Err(EINVAL), "the initialised VM");
    let unused = dup_from(&vm, 300);
    drop(vm);
    let other = new_vm("sev@6.1", 0);
    assert_eq!(sev_init(&other), Ok(()), "a new VM");
    for d in [&used, &unused] {
        assert_eq!(sev_init(d), Err(EINVAL), "still the initialised VM");
    }
    let v = vcpu(&unused, 0).unwrap();
    drop(used);
    drop(unused);
    let _another = new_vm("none", 0);
    // Its vCPU keeps the VM (not launched: -EINVAL rather than -EBADF).
    assert_eq!(digest(&v), Err(-EINVAL));
}

/// A number that was a simulated VM and now holds something else is that something else: a dup
/// of another VM, a real file, nothing.
#[test]
fn reused_numbers_are_not_mistaken_with_dups() {
    let _serial = serial();
    let a = new_vm("sev@6.1", 0);
    let b = new_vm("sev@6.1", 0);
    assert_eq!(sev_init(&a), Ok(()));
    let keep_a = dup(&a);
    let n = a.0;
    drop(a);
    // n becomes a dup of B: B is not initialised yet, A is.
    // SAFETY: n is closed; dup2 makes it a descriptor of B's file, closed below.
    assert_eq!(unsafe { libc::dup2(b.0, n) }, n);
    let n_is_b = Fd(n);
    assert_eq!(sev_init(&n_is_b), Ok(()), "B, not A");
    assert_eq!(sev_init(&b), Err(EINVAL));
    assert_eq!(sev_init(&keep_a), Err(EINVAL), "A lives on in its dup");
    drop(n_is_b);
    reused_by_a_file_then_closed(n);
}

/// Simulated descriptors, and dups of them, are plain memfds in a child after fork(), also
/// after the child created simulated descriptors of its own; the parent's stay simulated.
#[test]
fn simulated_descriptors_do_not_survive_fork() {
    let _serial = serial();
    let vm = new_vm("sev@6.1", 0);
    let vm2 = dup(&vm);
    // SAFETY: the child only calls memenc on descriptors it inherited or made, and _exit()s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut code = 0;
        if mem_enc_sim_vcpu_create(vm2.0, 0) != -EBADF {
            code |= 1;
        }
        // SAFETY: a NUL-terminated profile name.
        let own = unsafe { mem_enc_sim_vm_create(c"sev@6.1".as_ptr()) };
        if own < 0 || mem_enc_sim_vcpu_create(own, 0) < 0 {
            code |= 2;
        }
        for fd in [vm.0, vm2.0] {
            if mem_enc_sim_vcpu_create(fd, 0) != -EBADF {
                code |= 4;
            }
            // A memfd to the kernel: no KVM ioctls.
            if raw(fd, KVM_MEMORY_ENCRYPT_OP, 0) != Err(ENOTTY) {
                code |= 8;
            }
        }
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child's findings (bits)");
    assert!(vcpu(&vm2, 0).is_ok(), "still simulated in the parent");
}

/// A5: `kvm_gmem_get_supported_flags` (6.18+) gives every VM MMAP and adds INIT_SHARED only
/// where `kvm_arch_supports_gmem_init_shared` (x86: no private memory). So an SNP or TDX VM
/// reports 1 and accepts MMAP; kernels before the capability (6.11, 6.16) report 0.
#[test]
fn guest_memfd_flags_on_private_memory_vms() {
    let rows = [
        ("snp@6.11", KVM_X86_SNP_VM, 0),
        ("snp@6.18", KVM_X86_SNP_VM, 1),
        ("snp@6.18", KVM_X86_SEV_ES_VM, 3),
        ("snp@6.19", KVM_X86_SNP_VM, 1),
        ("snp@7.0", KVM_X86_SNP_VM, 1),
        ("tdx@6.16", KVM_X86_TDX_VM, 0),
        ("tdx@6.19", KVM_X86_TDX_VM, 1),
        ("tdx@6.19", KVM_X86_DEFAULT_VM, 3),
    ];
    for (profile, vm_type, flags) in rows {
        println!("simulated host: {profile} type {vm_type}");
        let vm = new_vm(profile, vm_type);
        assert_eq!(
            raw(vm.0, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS),
            Ok(flags as i32),
            "{profile} type {vm_type}"
        );
        for try_flags in [
            GUEST_MEMFD_FLAG_MMAP,
            GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
        ] {
            let mut g = kvm_create_guest_memfd {
                size: 1 << 20,
                flags: try_flags,
                reserved: [0; 6],
            };
            let r = raw(vm.0, KVM_CREATE_GUEST_MEMFD, ptr(&mut g));
            assert_eq!(
                r.is_ok(),
                try_flags & !flags == 0,
                "{profile} type {vm_type} flags {try_flags}: {r:?}"
            );
            if let Ok(fd) = r {
                // SAFETY: our descriptor.
                unsafe { libc::close(fd) };
            }
        }
    }
}
