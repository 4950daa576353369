//! KVM_RUN and the vCPU register setters of a plain VM are not notified under a confidential
//! profile: only vCPUs of VMs the model treats as confidential are moved to descriptors
//! `>= vcpu_fd_base` (the report says which base), and the filter notifies those requests only
//! there. Counted by memenc-sim's report (`"notified": {"KVM_RUN": n, "vcpu_setters": m}`), so
//! no timing is involved.
//!
//! The program is sim/tests-c/kvm-run-plain.c (raw ioctls: a plain VM with a real-mode guest
//! doing one OUT exit per KVM_RUN, and a simulated SNP VM); the launch digest of
//! sim/tests-c/raw-launch.c is checked against sev-snp-measure as in raw_launch.rs. Needs
//! /dev/kvm and cc (and the `sevsnpmeasure` module for the digest); each missing one is a
//! printed SKIPPED line.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SIM: &str = env!("CARGO_BIN_EXE_memenc-sim");

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-c")
}

/// The compiled programs so far: name, then the executable or why there is none.
type Built = std::sync::Mutex<Vec<(&'static str, Result<PathBuf, String>)>>;

/// Compiles `name`.c once; `None` (SKIPPED printed) without /dev/kvm or cc.
fn program(name: &'static str) -> Option<PathBuf> {
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let found = built
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| r.clone());
    let r = found.unwrap_or_else(|| {
        let r = (|| {
            if !Path::new("/dev/kvm").exists() {
                return Err("no /dev/kvm".to_string());
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvm-run-filter");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let out = dir.join(name);
            let ok = Command::new("cc")
                .args(["-Wall", "-Wextra", "-Werror", "-O1", "-pthread", "-o"])
                .arg(&out)
                .arg(sources().join(format!("{name}.c")))
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                Ok(out)
            } else {
                Err(format!("no C compiler (cc) that builds {name}.c"))
            }
        })();
        built.push((name, r.clone()));
        r
    });
    match r {
        Ok(p) => Some(p),
        Err(why) => {
            println!("SKIPPED: {why}");
            None
        }
    }
}

struct Outcome {
    status: i32,
    stdout: String,
    stderr: String,
    report: String,
}

impl Outcome {
    /// `"key": N` in the report.
    fn number(&self, key: &str) -> i64 {
        let at = self
            .report
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("no {key} in the report: {}", self.report))
            + key.len()
            + 4;
        let rest = &self.report[at..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().expect("a number")
    }

    /// The numbers after `prefix` on the program's lines that start with it.
    fn lines(&self, prefix: &str) -> Vec<Vec<i64>> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit() && c != '-')
                    .filter_map(|w| w.parse().ok())
                    .collect()
            })
            .collect()
    }
}

/// `memenc-sim run --profile PROFILE --report R -- PROGRAM ARGS` with `env`; `nofile`: the
/// soft RLIMIT_NOFILE memenc-sim (and so the program) starts with.
fn run(
    program: &Path,
    profile: &str,
    args: &[&str],
    env: &[(&str, &str)],
    nofile: Option<u64>,
) -> Outcome {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "kvm-run-filter-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(SIM);
    cmd.args(["run", "--profile", profile, "--report"])
        .arg(&report)
        .arg("--")
        .arg(program)
        .args(args)
        .envs(env.iter().copied());
    if let Some(soft) = nofile {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                lim.rlim_cur = soft.min(lim.rlim_max);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    let out = cmd.output().expect("memenc-sim runs");
    let o = Outcome {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: std::fs::read_to_string(&report).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&report);
    o
}

fn ok(o: &Outcome, what: &str) {
    assert_eq!(o.status, 0, "{what}:\n{}\n{}", o.stdout, o.stderr);
}

const RUNS: i64 = 1000;

#[test]
fn a_plain_vms_kvm_run_and_setters_are_not_notified_on_snp() {
    let Some(p) = program("kvm-run-plain") else {
        return;
    };
    for profile in ["snp@6.18", "tdx@6.19"] {
        let o = run(&p, profile, &["plain", &RUNS.to_string()], &[], None);
        ok(&o, profile);
        assert_eq!(
            o.lines("plain runs "),
            vec![vec![RUNS, RUNS]],
            "{}",
            o.stdout
        );
        assert_eq!(o.number("KVM_RUN"), 0, "{profile}: {}", o.report);
        assert_eq!(o.number("vcpu_setters"), 0, "{profile}: {}", o.report);
        let base = o.number("vcpu_fd_base");
        assert!(base >= 256, "{profile}: base {base}");
        let fd = o.lines("plain vcpu fd ")[0][0];
        assert!(fd < base, "plain vCPU fd {fd} below base {base}");
    }
}

#[test]
fn confidential_vcpus_are_moved_above_the_base_and_their_first_kvm_run_ends_the_guest() {
    let Some(p) = program("kvm-run-plain") else {
        return;
    };
    let o = run(&p, "snp@6.18", &["both", &RUNS.to_string(), "3"], &[], None);
    ok(&o, "both");
    let base = o.number("vcpu_fd_base");
    assert!(base >= 256, "base {base}");
    let plain = o.lines("plain vcpu fd ")[0][0];
    assert!(plain < base, "plain vCPU fd {plain} < {base}");
    let snp: Vec<i64> = o
        .lines("snp vcpu ")
        .iter()
        .filter(|v| v.len() == 2)
        .map(|v| v[1])
        .collect();
    assert_eq!(snp.len(), 3, "{}", o.stdout);
    for fd in &snp {
        assert!(*fd >= base, "SNP vCPU fd {fd} >= {base}: {}", o.stdout);
    }
    // KVM_EXIT_SYSTEM_EVENT (24), KVM_SYSTEM_EVENT_SHUTDOWN (1), on every SNP vCPU.
    for i in 0..3 {
        assert!(
            o.stdout.contains(&format!("snp vcpu {i} exit 24 type 1")),
            "{}",
            o.stdout
        );
    }
    assert_eq!(o.lines("plain runs "), vec![vec![2 * RUNS, 2 * RUNS]]);
    // Exactly the SNP vCPUs' calls: 3 KVM_RUNs and 3 x (SET_SREGS + SET_REGS); the plain
    // VM's 2000 KVM_RUNs and its 2 setters went unnotified.
    assert_eq!(o.number("KVM_RUN"), 3, "{}", o.report);
    assert_eq!(o.number("vcpu_setters"), 6, "{}", o.report);
    assert!(o.report.contains("\"state\": \"running\""), "{}", o.report);
}

#[test]
fn descriptor_moves_survive_a_signal_storm() {
    let Some(p) = program("kvm-run-plain") else {
        return;
    };
    let env = [("KVM_RUN_PLAIN_SIGNALS", "1")];
    let o = run(&p, "snp@6.18", &["both", "100", "16"], &env, None);
    ok(&o, "both with signals");
    let base = o.number("vcpu_fd_base");
    let mut snp: Vec<i64> = o
        .lines("snp vcpu ")
        .iter()
        .filter(|v| v.len() == 2)
        .map(|v| v[1])
        .collect();
    assert_eq!(snp.len(), 16, "{}", o.stdout);
    assert!(snp.iter().all(|fd| *fd >= base), "{:?} >= {base}", snp);
    snp.sort_unstable();
    snp.dedup();
    assert_eq!(snp.len(), 16, "distinct descriptors");
    let signals = o.lines("signals ")[0][0];
    assert!(signals > 0, "signals arrived: {}", o.stdout);
    assert_eq!(o.number("KVM_RUN"), 16, "{}", o.report);
    assert_eq!(o.number("vcpu_setters"), 32, "{}", o.report);
    assert_eq!(o.lines("plain runs "), vec![vec![200, 200]]);
}

#[test]
fn no_room_above_the_base_fails_create_vcpu_with_emfile() {
    let Some(p) = program("kvm-run-plain") else {
        return;
    };
    let o = run(&p, "snp@6.18", &["lowlimit"], &[], None);
    ok(&o, "lowlimit");
    assert_eq!(
        o.lines("lowlimit create_vcpu "),
        vec![vec![-1, i64::from(libc::EMFILE)]],
        "{}",
        o.stdout
    );
    assert!(o.stderr.contains("fails with EMFILE"), "{}", o.stderr);
    let base = o.number("vcpu_fd_base");
    let fd = o.lines("snp vcpu 1 fd ")[0][0];
    assert!(fd >= base, "after the limit is restored: {fd} >= {base}");
}

#[test]
fn a_tiny_descriptor_limit_notifies_every_vcpu_as_before() {
    let Some(p) = program("kvm-run-plain") else {
        return;
    };
    let o = run(&p, "snp@6.18", &["both", "100", "2"], &[], Some(300));
    ok(&o, "both, RLIMIT_NOFILE 300");
    assert_eq!(o.number("vcpu_fd_base"), 0, "{}", o.report);
    // Everything notified (correct, only slower): 2 x 100 plain runs + 2 SNP runs; 2 plain + 4
    // SNP setters.
    assert_eq!(o.number("KVM_RUN"), 202, "{}", o.report);
    assert_eq!(o.number("vcpu_setters"), 6, "{}", o.report);
    for i in 0..2 {
        assert!(o.stdout.contains(&format!("snp vcpu {i} exit 24 type 1")));
    }
}

/// sev-snp-measure's digest (sim/tests-c/expected-digest.py), or None without the module.
fn expected(mode: &str, vcpus: u32) -> Option<String> {
    let out = Command::new("python3")
        .arg(sources().join("expected-digest.py"))
        .args([mode, &vcpus.to_string()])
        .output()
        .ok()?;
    match out.status.code() {
        Some(0) => Some(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Some(77) => None,
        _ => panic!(
            "expected-digest.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn the_launch_digest_is_unchanged_and_a_late_sev_init_vm_is_confidential() {
    let Some(p) = program("raw-launch") else {
        return;
    };
    // SNP, and SEV-ES on a default VM made confidential by KVM_SEV_ES_INIT (before its vCPUs:
    // the kernel refuses it after): both VMs' vCPUs are moved, shadowed and ended.
    for (mode, vcpus) in [("snp", 2u32), ("seves-legacy", 2)] {
        let o = run(
            &p,
            "snp@6.18",
            &[mode, &vcpus.to_string()],
            &[("RAW_LAUNCH_RUN", "1")],
            None,
        );
        ok(&o, mode);
        assert!(
            o.stdout.contains("first KVM_RUN: exit 24 (system event 1)"),
            "{mode}: {}",
            o.stdout
        );
        assert_eq!(o.number("KVM_RUN"), 1, "{mode}: {}", o.report);
        assert_eq!(
            o.number("vcpu_setters"),
            2 * i64::from(vcpus),
            "{mode}: SET_SREGS and SET_REGS of each vCPU shadowed: {}",
            o.report
        );
        let Some(want) = expected(mode, vcpus) else {
            println!("SKIPPED: sevsnpmeasure is not installed (pip install sev-snp-measure)");
            continue;
        };
        assert!(
            o.report.contains(&format!("\"launch_digest\": \"{want}\"")),
            "{mode}: digest {want} expected in {}",
            o.report
        );
        println!("{mode} {vcpus} vCPUs: launch digest {want} = sev-snp-measure");
    }
}
