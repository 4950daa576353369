//! A program that knows nothing of memenc (sim/tests-c/raw-launch.c: raw ioctl() only) launches
//! SNP and SEV-ES guests under `memenc-sim run`, and the launch digest in the report equals the
//! guest owner's tool's (sev-snp-measure, through sim/tests-c/expected-digest.py) for the same
//! pages and vCPUs. Also: a static binary, vCPUs made in threads, and a signal storm during the
//! simulated commands (a command run twice, or a lost write-back, would change the digest).
//!
//! Needs /dev/kvm (the real kernel does the VM and vCPU plumbing), a C compiler and the
//! `sevsnpmeasure` Python module; each missing one is a printed SKIPPED line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SIM: &str = env!("CARGO_BIN_EXE_memenc-sim");

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-c")
}

/// The compiled program (dynamic and static), or why it cannot run here.
fn programs() -> Result<&'static (PathBuf, Option<PathBuf>), String> {
    static BUILT: OnceLock<Result<(PathBuf, Option<PathBuf>), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !Path::new("/dev/kvm").exists() {
                return Err("no /dev/kvm".into());
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("raw-launch");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let build = |out: &Path, extra: &[&str]| {
                Command::new("cc")
                    .args(["-Wall", "-Wextra", "-Werror", "-O1", "-pthread", "-o"])
                    .arg(out)
                    .arg(sources().join("raw-launch.c"))
                    .args(extra)
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let dynamic = dir.join("raw-launch");
            if !build(&dynamic, &[]) {
                return Err("no C compiler (cc) that builds raw-launch.c".into());
            }
            let fixed = dir.join("raw-launch-static");
            let fixed = build(&fixed, &["-static"]).then_some(fixed);
            Ok((dynamic, fixed))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// sev-snp-measure's digest for the launch, or None (SKIPPED) without the module.
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

struct Outcome {
    status: i32,
    stdout: String,
    stderr: String,
    report: String,
}

fn run(program: &Path, profile: &str, mode: &str, vcpus: u32, env: &[(&str, &str)]) -> Outcome {
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "report-{}-{profile}-{mode}-{vcpus}-{}.json",
        std::process::id(),
        env.len()
    ));
    let _ = std::fs::remove_file(&report);
    let out = Command::new(SIM)
        .args(["run", "--profile", profile, "--report"])
        .arg(&report)
        .arg("--")
        .arg(program)
        .args([mode, &vcpus.to_string()])
        .envs(env.iter().copied())
        .output()
        .expect("memenc-sim runs");
    Outcome {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: std::fs::read_to_string(&report).unwrap_or_default(),
    }
}

/// The value of `"key": "..."` in the report (one VM per raw-launch run).
fn field<'a>(report: &'a str, key: &str) -> Option<&'a str> {
    let at = report.find(&format!("\"{key}\": "))? + key.len() + 4;
    let rest = &report[at..];
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(['"', ',', '}'])?;
    Some(&rest[..end])
}

/// Launches `mode` with `vcpus` on `profile` and checks the digest against sev-snp-measure's.
fn check(program: &Path, profile: &str, mode: &str, vcpus: u32, env: &[(&str, &str)]) -> bool {
    let Some(want) = expected(mode, vcpus) else {
        println!("SKIPPED: sevsnpmeasure is not installed (pip install sev-snp-measure)");
        return false;
    };
    let o = run(program, profile, mode, vcpus, env);
    assert_eq!(
        o.status, 0,
        "{mode} on {profile}:\n{}\n{}",
        o.stdout, o.stderr
    );
    let technology = if mode == "snp" { "SEV-SNP" } else { "SEV-ES" };
    assert_eq!(field(&o.report, "profile"), Some(profile), "{}", o.report);
    assert_eq!(
        field(&o.report, "technology"),
        Some(technology),
        "{}",
        o.report
    );
    assert_eq!(field(&o.report, "state"), Some("running"), "{}", o.report);
    assert_eq!(field(&o.report, "vcpus"), Some(vcpus.to_string().as_str()));
    assert_eq!(
        o.report.matches("\"vm_type\"").count(),
        1,
        "one VM: {}",
        o.report
    );
    let got = field(&o.report, "launch_digest").unwrap_or("");
    assert_eq!(
        got, want,
        "{mode} on {profile} with {vcpus} vCPUs: report vs sev-snp-measure"
    );
    assert!(
        o.stderr.contains(&format!("launch digest {want}")),
        "summary line on stderr: {}",
        o.stderr
    );
    println!("{mode} on {profile}, {vcpus} vCPUs: {got} = sev-snp-measure");
    true
}

fn dynamic() -> Option<&'static Path> {
    match programs() {
        Ok((p, _)) => Some(p),
        Err(why) => {
            println!("SKIPPED: {why}");
            None
        }
    }
}

#[test]
fn snp_launch_digest_equals_sev_snp_measure() {
    let Some(p) = dynamic() else { return };
    for (profile, vcpus) in [
        ("snp@6.18", 1),
        ("snp@6.18", 4),
        ("snp@6.11", 2),
        ("snp@7.0", 2),
    ] {
        if !check(p, profile, "snp", vcpus, &[]) {
            return;
        }
    }
}

#[test]
fn sev_es_launch_digest_equals_sev_snp_measure_legacy_and_init2() {
    let Some(p) = dynamic() else { return };
    for (profile, mode, vcpus) in [
        ("sev@6.1", "seves-legacy", 2),
        ("snp@6.18", "seves-legacy", 1),
        ("snp@6.11", "seves-init2", 2),
        ("snp@6.18", "seves-init2", 4),
    ] {
        if !check(p, profile, mode, vcpus, &[]) {
            return;
        }
    }
}

#[test]
fn a_static_binary_launches_the_same() {
    let Some(_) = dynamic() else { return };
    let Ok((_, Some(fixed))) = programs() else {
        println!("SKIPPED: cc -static does not link here");
        return;
    };
    check(fixed, "snp@6.18", "snp", 2, &[]);
}

#[test]
fn vcpus_made_in_threads_launch_the_same() {
    let Some(p) = dynamic() else { return };
    check(p, "snp@6.18", "snp", 4, &[("RAW_LAUNCH_THREADS", "1")]);
}

#[test]
fn a_signal_storm_neither_repeats_nor_loses_a_simulated_command() {
    let Some(p) = dynamic() else { return };
    for mode in ["snp", "seves-init2"] {
        let env = [("RAW_LAUNCH_SIGNALS", "1")];
        if !check(p, "snp@6.18", mode, 3, &env) {
            return;
        }
        let o = run(p, "snp@6.18", mode, 3, &env);
        let seen: u32 = o
            .stdout
            .split('(')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(seen > 0, "signals arrived during the launch: {}", o.stdout);
    }
}

#[test]
fn the_first_kvm_run_of_a_launched_guest_is_a_shutdown_event() {
    let Some(p) = dynamic() else { return };
    for (profile, mode) in [("snp@6.18", "snp"), ("sev@6.1", "seves-legacy")] {
        let o = run(p, profile, mode, 2, &[("RAW_LAUNCH_RUN", "1")]);
        assert_eq!(
            o.status, 0,
            "{mode} on {profile}:\n{}\n{}",
            o.stdout, o.stderr
        );
        // KVM_EXIT_SYSTEM_EVENT (24), KVM_SYSTEM_EVENT_SHUTDOWN (1).
        assert!(
            o.stdout.contains("first KVM_RUN: exit 24 (system event 1)"),
            "{}",
            o.stdout
        );
    }
}

#[test]
fn the_programs_exit_status_is_memenc_sims() {
    let Some(p) = dynamic() else { return };
    let o = run(p, "snp@6.18", "bogus-mode", 1, &[]);
    assert_eq!(o.status, 2, "raw-launch's usage error: {}", o.stderr);
    assert!(
        o.report.contains("\"vms\": ["),
        "a report even without VMs: {}",
        o.report
    );
    let unknown = Command::new(SIM)
        .args(["run", "--profile", "snp@9.9", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("snp@6.18"));
    let missing = Command::new(SIM)
        .args(["run", "--profile", "none", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(127));
    let profiles = Command::new(SIM).arg("profiles").output().unwrap();
    let list = String::from_utf8_lossy(&profiles.stdout);
    for name in [
        "none", "sev@6.1", "snp@6.11", "snp@6.18", "snp@6.19", "snp@7.0", "tdx@6.19",
    ] {
        assert!(list.lines().any(|l| l == name), "{name} in\n{list}");
    }
}
