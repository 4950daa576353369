//! The real-kernel differential: for every call both can answer, a program under
//! `memenc-sim run --profile none` sees what it sees without it.
//!
//! `tests-c/kvm-calls.c` (raw ioctls, no memenc) issues a broad list of KVM calls — system,
//! VM, vCPU, guest_memfd, memslots, the confidential-computing ioctls a `none` host refuses,
//! bad descriptors, a tiny real-mode guest — and prints one line per call with its result and
//! the bytes written back. It runs once on this machine's /dev/kvm and once under the
//! supervisor with the `none` profile, whose model answers several of those calls itself (the
//! VM-type and guest_memfd capabilities, SEV attributes, every MEMORY_ENCRYPT_OP, memory
//! attributes, the checks of traced creations and of memslots); the two outputs must be equal
//! line by line.
//!
//! No call is excluded from the comparison: on this project's machine (6.18, AMD, kvm_pvm,
//! no SEV) every line was equal when this test was written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Compiles kvm-calls.c into the test's temporary directory; `None` (printed) without `cc`.
fn build() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential_none");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-c/kvm-calls.c");
    let exe = dir.join("kvm-calls");
    let status = Command::new("cc")
        .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => Some(exe),
        Ok(s) => panic!("cc {} failed: {s}", src.display()),
        Err(e) => {
            println!("SKIPPED: no C compiler (`cc`: {e})");
            None
        }
    }
}

fn stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

#[test]
fn none_profile_is_invisible_to_raw_kvm_calls() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        println!("SKIPPED: no usable /dev/kvm ({e})");
        return;
    }
    let Some(exe) = build() else {
        return;
    };
    let dir = exe.parent().expect("exe dir");
    // Both runs start from the same directory with the same descriptors (the program prints
    // descriptor numbers).
    let plain = Command::new(&exe)
        .current_dir(dir)
        .output()
        .expect("run kvm-calls");
    let sim = Command::new(env!("CARGO_BIN_EXE_memenc-sim"))
        .args(["run", "--profile", "none", "--", "./kvm-calls"])
        .current_dir(dir)
        .output()
        .expect("run memenc-sim");
    let plain = stdout("kvm-calls", &plain);
    let sim_err = String::from_utf8_lossy(&sim.stderr).into_owned();
    let sim = stdout("memenc-sim run --profile none -- kvm-calls", &sim);

    // The comparison means something only if the program got through its list, and ran under
    // the supervisor (which reports every VM the program made).
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.last(), Some(&"done"), "kvm-calls did not finish");
    assert!(lines.len() > 500, "only {} lines", lines.len());
    assert!(
        sim_err.contains("memenc-sim: vm 0: none (type 0)"),
        "the supervisor saw no VM; stderr:\n{sim_err}"
    );

    let sim_lines: Vec<&str> = sim.lines().collect();
    let mut differ = Vec::new();
    for i in 0..lines.len().max(sim_lines.len()) {
        let (a, b) = (lines.get(i), sim_lines.get(i));
        if a != b {
            // A written-back line ("  ...") is shown with the call it belongs to.
            let call = match a.or(b) {
                Some(l) if l.starts_with(' ') => lines[..i.min(lines.len())]
                    .iter()
                    .rev()
                    .find(|l| !l.starts_with(' '))
                    .map(|c| format!(" (of `{c}`)"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            differ.push(format!(
                "line {}{call}:\n  real kernel:   {}\n  memenc-sim:    {}",
                i + 1,
                a.unwrap_or(&"<none>"),
                b.unwrap_or(&"<none>")
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} lines differ between the real kernel and memenc-sim --profile none:\n{}",
        differ.len(),
        lines.len(),
        differ.join("\n")
    );
    println!(
        "{} lines equal on the real kernel and under memenc-sim --profile none",
        lines.len()
    );
}
