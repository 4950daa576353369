//! `memenc-sim`: run an unmodified program on a simulated SEV / SEV-ES / SEV-SNP / TDX host.
//!
//! ```text
//! memenc-sim run --profile PROFILE [--report FILE] -- PROGRAM [ARGS...]
//! memenc-sim profiles
//! ```
//!
//! `run` exits with PROGRAM's status (128 + N if a signal N killed it); its own failures are
//! 125 (usage, unknown profile, the supervisor could not start), 126 (PROGRAM could not be
//! executed) and 127 (PROGRAM not found), as `env` and `timeout` do.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::Arc;

use memenc_sim::hybrid::Hybrid;
use memenc_sim::model::profile;

const USAGE: &str = "usage: memenc-sim run --profile PROFILE [--report FILE] -- PROGRAM [ARGS...]
       memenc-sim profiles
       memenc-sim --help | --version

  run       run PROGRAM (and every thread and child it makes) on a simulated host that
            answers as PROFILE's kernel and firmware would; the machine's real /dev/kvm does
            the rest. Exits with PROGRAM's status.
  --report FILE   when PROGRAM exits, write a JSON object with every VM it created (type,
            technology, state, vCPUs, launch digest / MRTD) to FILE
  profiles  list the profiles, one a line";

const EXIT_USAGE: u8 = 125;

struct Run {
    profile: &'static profile::Profile,
    report: Option<std::path::PathBuf>,
    program: OsString,
    args: Vec<OsString>,
}

fn parse_run(mut it: impl Iterator<Item = OsString>) -> Result<Run, String> {
    let mut profile = None;
    let mut report = None;
    loop {
        let Some(a) = it.next() else {
            return Err("missing -- PROGRAM".into());
        };
        match a.to_str() {
            Some("--") => break,
            Some("--profile") => profile = Some(it.next().ok_or("--profile needs a value")?),
            Some("--report") => report = Some(it.next().ok_or("--report needs a value")?.into()),
            _ => return Err(format!("unexpected argument '{}'", a.to_string_lossy())),
        }
    }
    let name = profile.ok_or("--profile is required")?;
    let name = name.to_string_lossy();
    let profile = profile::find(&name).ok_or_else(|| {
        let known: Vec<_> = profile::PROFILES
            .iter()
            .map(|p| p.name.to_string_lossy())
            .collect();
        format!("no profile '{name}' (profiles: {})", known.join(", "))
    })?;
    let program = it.next().ok_or("missing PROGRAM after --")?;
    Ok(Run {
        profile,
        report,
        program,
        args: it.collect(),
    })
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_ref().and_then(|a| a.to_str()) {
        Some("profiles") => {
            for p in profile::PROFILES {
                println!("{}", p.name.to_string_lossy());
            }
            ExitCode::SUCCESS
        }
        Some("-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("memenc-sim {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("run") => match parse_run(args) {
            Ok(run) => execute(run),
            Err(msg) => {
                eprintln!("memenc-sim: {msg}\n{USAGE}");
                ExitCode::from(EXIT_USAGE)
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn execute(run: Run) -> ExitCode {
    let name = run.profile.name.to_string_lossy().into_owned();
    // The program may say where it runs (the examples print "host: SIMULATED (profile ...)");
    // set before any thread exists.
    // SAFETY: single-threaded here: no other thread reads or writes the environment.
    unsafe { std::env::set_var("MEMENC_SIM_PROFILE", &name) };
    let host = Arc::new(Hybrid::new(run.profile, run.report));
    let spec = host.spec();
    match memenc_sim::supervisor::run(&run.program, &run.args, &spec, host) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("memenc-sim: {}: {e}", run.program.to_string_lossy());
            ExitCode::from(match e.raw_os_error() {
                Some(libc::ENOENT) => 127,
                Some(libc::EACCES | libc::ENOEXEC) => 126,
                _ => EXIT_USAGE,
            })
        }
    }
}
