//! `memenc`: what this host supports for confidential VMs, for humans, tools and schedulers.
//!
//! ```text
//! memenc probe                 human-readable report
//! memenc probe --json          one JSON object on stdout
//! memenc probe --nfd FILE      Kubernetes node-feature-discovery local feature file
//!                              (FILE "-" writes the lines to stdout)
//! memenc-sim run --profile P -- memenc probe
//!                              the same on memenc-sim's simulated host (every output says
//!                              SIMULATED: memenc-sim names its profile in MEMENC_SIM_PROFILE)
//! memenc --help | --version
//! ```
//!
//! Exit codes: 0 success; 1 the probe failed (e.g. /dev/kvm absent or not accessible);
//! 2 usage error; 3 the --nfd file could not be written.

use std::fmt::Write as _;
use std::io::Write as _;

use std::process::ExitCode;

use memenc::negotiate::{self, describe_cap};
use memenc::probe::*;

const USAGE: &str = "usage: memenc probe [--json] [--nfd FILE|-]
       memenc --help | --version

  probe           report what this host's KVM supports for SEV, SEV-ES, SEV-SNP and TDX
  --json          print one JSON object instead of the report
  --nfd FILE      write a node-feature-discovery local feature file (\"-\": stdout)

Under memenc-sim (memenc-sim run --profile P -- memenc probe) the report is the simulated
host's, and says so.

exit: 0 ok, 1 probe failed, 2 usage error, 3 --nfd file not written";

const EXIT_PROBE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_WRITE: u8 = 3;

#[derive(Default)]
struct Options {
    json: bool,
    nfd: Option<String>,
}

enum Command {
    Probe(Options),
    Help,
    Version,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("probe") => {}
        Some(other) => return Err(format!("unknown command '{other}'")),
        None => return Err("missing command".into()),
    }
    let mut o = Options::default();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--json" => o.json = true,
            "--nfd" => o.nfd = Some(value("--nfd")?),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Command::Probe(o))
}

/// Every probed fact, in report order: (JSON/label key, human label, fact).
fn facts(c: &mem_enc_caps) -> [(&'static str, &'static str, &mem_enc_cap); 11] {
    [
        ("api_version", "KVM API version", &c.api_version),
        ("vm_types", "VM types (KVM_CAP_VM_TYPES)", &c.vm_types),
        (
            "sev_vmsa_features",
            "SEV vmsa_features",
            &c.sev_vmsa_features,
        ),
        ("snp_policy_bits", "SNP policy bits", &c.snp_policy_bits),
        ("snp_req_certs", "SNP REQ_CERTS", &c.snp_req_certs),
        (
            "sev_null_probe",
            "SEV NULL probe (default VM)",
            &c.sev_null_probe,
        ),
        (
            "tdx_supported_attrs",
            "TDX supported attributes",
            &c.tdx_supported_attrs,
        ),
        (
            "tdx_supported_xfam",
            "TDX supported xfam",
            &c.tdx_supported_xfam,
        ),
        (
            "tdx_cpuid_configs",
            "TDX configurable CPUID leaves",
            &c.tdx_cpuid_configs,
        ),
        (
            "guest_memfd",
            "guest_memfd (KVM_CAP_GUEST_MEMFD)",
            &c.guest_memfd,
        ),
        (
            "memory_attributes",
            "memory attributes",
            &c.memory_attributes,
        ),
    ]
}

/// The summary bits, in report order: (key, human name, bit).
const FEATURES: [(&str, &str, u32); 10] = [
    ("sev", "SEV", MEM_ENC_CAPS_SEV),
    ("sev_es", "SEV-ES", MEM_ENC_CAPS_SEV_ES),
    ("snp", "SEV-SNP", MEM_ENC_CAPS_SNP),
    ("tdx", "TDX", MEM_ENC_CAPS_TDX),
    ("sev_init2", "KVM_SEV_INIT2", MEM_ENC_CAPS_SEV_INIT2),
    (
        "sev_legacy_init",
        "legacy KVM_SEV_INIT",
        MEM_ENC_CAPS_SEV_LEGACY_INIT,
    ),
    (
        "snp_req_certs",
        "SNP certificate requests",
        MEM_ENC_CAPS_SNP_REQ_CERTS,
    ),
    ("guest_memfd", "guest_memfd", MEM_ENC_CAPS_GUEST_MEMFD),
    (
        "private_memory",
        "private memory attribute",
        MEM_ENC_CAPS_PRIVATE_MEMORY,
    ),
    ("simulated", "simulated host", MEM_ENC_CAPS_SIMULATED),
];

fn vendor_name(vendor: u32) -> &'static str {
    match vendor {
        memenc::MEM_ENC_VENDOR_SEV => "AMD (SEV family)",
        memenc::MEM_ENC_VENDOR_TDX => "Intel (TDX)",
        _ => "other (no memory encryption memenc knows)",
    }
}

fn vendor_key(vendor: u32) -> &'static str {
    match vendor {
        memenc::MEM_ENC_VENDOR_SEV => "sev",
        memenc::MEM_ENC_VENDOR_TDX => "tdx",
        _ => "none",
    }
}

/// The best confidential VM type this host offers, or why there is none.
fn verdict(c: &mem_enc_caps) -> Result<negotiate::VmChoice, negotiate::Refusal> {
    negotiate::vm_type(c, negotiate::MEM_ENC_VM_TYPES_CONFIDENTIAL)
}

/// A fact's value for humans: counts in decimal, masks in hex, the NULL probe as its answer.
fn fact_text(key: &str, fact: &mem_enc_cap) -> String {
    match (key, fact.value()) {
        ("sev_null_probe", Some(_)) => match -fact.err {
            0 => "0: SEV enabled".into(),
            libc::EFAULT => "-EFAULT: older kernel with the SEV path".into(),
            libc::ENOTTY => "-ENOTTY: no SEV backend".into(),
            e => format!("-{e}"),
        },
        ("api_version" | "tdx_cpuid_configs", Some(v)) => v.to_string(),
        (_, Some(v)) if fact.status == MEM_ENC_CAP_KNOWN => format!("{v:#x}"),
        (_, Some(v)) => format!("{v:#x} ({})", describe_cap(fact)),
        (_, None) => describe_cap(fact),
    }
}

fn human(c: &mem_enc_caps, source: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "memenc {} probe of {source}", env!("CARGO_PKG_VERSION"));
    if c.features & MEM_ENC_CAPS_SIMULATED != 0 {
        let _ = writeln!(
            s,
            "SIMULATED HOST: these are the profile's answers, not this machine's"
        );
    }
    let _ = writeln!(s, "  {:<34} {}", "CPU vendor", vendor_name(c.vendor));
    for (key, label, fact) in facts(c) {
        let _ = writeln!(s, "  {label:<34} {}", fact_text(key, fact));
    }
    let yes: Vec<_> = FEATURES
        .iter()
        .filter(|f| c.features & f.2 != 0)
        .map(|f| f.1)
        .collect();
    let _ = writeln!(
        s,
        "  {:<34} {}",
        "available",
        if yes.is_empty() {
            "nothing".into()
        } else {
            yes.join(", ")
        }
    );
    let _ = match verdict(c) {
        Ok(choice) => writeln!(
            s,
            "verdict: confidential VMs supported; best: {}",
            choice.note
        ),
        Err(r) => writeln!(s, "verdict: no confidential VMs here: {}", r.message),
    };
    s
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object. 64-bit values are hex strings (JSON numbers lose precision above 2^53).
fn json(c: &mem_enc_caps) -> String {
    let mut s = String::from("{");
    let _ = write!(
        s,
        "\"memenc_version\":\"{}\",\"simulated\":{},\"vendor\":\"{}\",\"features\":{{",
        env!("CARGO_PKG_VERSION"),
        c.features & MEM_ENC_CAPS_SIMULATED != 0,
        vendor_key(c.vendor)
    );
    for (i, (key, _, bit)) in FEATURES.iter().enumerate() {
        let _ = write!(
            s,
            "{}\"{key}\":{}",
            if i > 0 { "," } else { "" },
            c.features & bit != 0
        );
    }
    s.push_str("},\"facts\":{");
    for (i, (key, _, fact)) in facts(c).into_iter().enumerate() {
        let _ = write!(
            s,
            "{}\"{key}\":{{\"status\":\"{}\",\"err\":{},\"value\":\"{:#x}\",\"text\":",
            if i > 0 { "," } else { "" },
            status_key(fact.status),
            fact.err,
            fact.value
        );
        json_string(&mut s, &describe_cap(fact));
        s.push('}');
    }
    s.push_str("},\"verdict\":");
    match verdict(c) {
        Ok(choice) => {
            let _ = write!(
                s,
                "{{\"vm_type\":{},\"create_vm_type\":{},\"legacy_init\":{},\"text\":",
                choice.vm_type,
                choice.create_vm_type,
                choice.legacy()
            );
            json_string(&mut s, &choice.note);
        }
        Err(r) => {
            s.push_str("{\"vm_type\":null,\"text\":");
            json_string(&mut s, &r.message);
        }
    }
    s.push_str("}}");
    s
}

fn status_key(status: u32) -> &'static str {
    match status {
        MEM_ENC_CAP_KNOWN => "known",
        MEM_ENC_CAP_NOT_AVAILABLE => "not_available",
        MEM_ENC_CAP_NOT_SUPPORTED => "not_supported",
        MEM_ENC_CAP_DEFAULTED => "defaulted",
        MEM_ENC_CAP_ERROR => "error",
        _ => "unknown",
    }
}

/// node-feature-discovery local feature lines (`name=value`; values are valid label values).
fn nfd(c: &mem_enc_caps) -> String {
    let mut s = String::new();
    let on = |bit: u32| c.features & bit != 0;
    for (key, bit) in [
        ("sev", MEM_ENC_CAPS_SEV),
        ("sev_es", MEM_ENC_CAPS_SEV_ES),
        ("snp", MEM_ENC_CAPS_SNP),
        ("tdx", MEM_ENC_CAPS_TDX),
        ("guest_memfd", MEM_ENC_CAPS_GUEST_MEMFD),
    ] {
        let _ = writeln!(s, "memenc.{key}.enabled={}", on(bit));
    }
    let _ = writeln!(s, "memenc.sev.init2={}", on(MEM_ENC_CAPS_SEV_INIT2));
    let _ = writeln!(
        s,
        "memenc.sev.legacy_init={}",
        on(MEM_ENC_CAPS_SEV_LEGACY_INIT)
    );
    for (key, fact) in [
        ("vm_types", &c.vm_types),
        ("sev.vmsa_features", &c.sev_vmsa_features),
        ("snp.policy_bits", &c.snp_policy_bits),
        ("tdx.attributes", &c.tdx_supported_attrs),
        ("tdx.xfam", &c.tdx_supported_xfam),
    ] {
        if let Some(v) = fact.value() {
            let _ = writeln!(s, "memenc.{key}={v:#x}");
        }
    }
    if on(MEM_ENC_CAPS_SIMULATED) {
        s.push_str("memenc.simulated=true\n");
    }
    s
}

/// Writes `text` to `path` atomically (a temporary file renamed over it), so NFD never reads a
/// half-written file.
fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp.{}", std::process::id());
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn run(o: &Options) -> Result<(), (u8, String)> {
    let mut caps =
        probe_default().map_err(|e| (EXIT_PROBE, format!("probing /dev/kvm failed: {e}")))?;
    // memenc-sim says which profile answers; the library cannot tell a model from a kernel.
    let source = match std::env::var("MEMENC_SIM_PROFILE") {
        Ok(profile) => {
            caps.features |= MEM_ENC_CAPS_SIMULATED;
            format!("SIMULATED host '{profile}' (memenc-sim)")
        }
        Err(_) => "/dev/kvm".to_string(),
    };
    let mut stdout = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock, text: &str| {
        out.write_all(text.as_bytes())
            .map_err(|e| (EXIT_WRITE, format!("writing to stdout: {e}")))
    };
    if o.json {
        print(&mut stdout, &(json(&caps) + "\n"))?;
    }
    match o.nfd.as_deref() {
        Some("-") => print(&mut stdout, &nfd(&caps))?,
        Some(path) => write_atomically(path, &nfd(&caps))
            .map_err(|e| (EXIT_WRITE, format!("writing {path}: {e}")))?,
        None if !o.json => print(&mut stdout, &human(&caps, &source))?,
        None => {}
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("memenc {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Probe(o)) => match run(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, msg)) => {
                eprintln!("memenc: {msg}");
                ExitCode::from(code)
            }
        },
        Err(msg) => {
            eprintln!("memenc: {msg}\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
#[path = "../test_fixtures.rs"]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::fixtures::snp_host_without_policy_attr as host;
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argument_errors_are_usage_errors() {
        assert!(parse(&args(&[])).is_err());
        assert!(parse(&args(&["frobnicate"])).is_err());
        assert!(parse(&args(&["probe", "--nfd"])).is_err());
        assert!(parse(&args(&["probe", "--bogus"])).is_err());
        assert!(matches!(parse(&args(&["--help"])), Ok(Command::Help)));
        assert!(parse(&args(&["probe", "--sim", "snp"])).is_err());
        match parse(&args(&["probe", "--json", "--nfd", "x"])) {
            Ok(Command::Probe(o)) => {
                assert!(o.json);
                assert_eq!(o.nfd.as_deref(), Some("x"));
            }
            _ => panic!("not parsed"),
        }
    }

    #[test]
    fn nfd_lines() {
        let text = nfd(&host());
        for line in [
            "memenc.sev.enabled=true",
            "memenc.sev_es.enabled=true",
            "memenc.snp.enabled=true",
            "memenc.tdx.enabled=false",
            "memenc.sev.init2=true",
            "memenc.sev.vmsa_features=0x20",
            "memenc.snp.policy_bits=0x1bffff",
            "memenc.vm_types=0x1d",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("tdx.attributes"));
        // Every value is a valid Kubernetes label value.
        for line in text.lines() {
            let (_, value) = line.split_once('=').unwrap();
            assert!(value.len() <= 63);
            assert!(
                value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            );
        }
    }

    #[test]
    fn json_is_escaped_and_balanced() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
        let j = json(&host());
        assert!(j.starts_with('{') && j.ends_with('}'));
        assert!(j.contains("\"snp\":true"));
        assert!(
            j.contains(
                "\"snp_policy_bits\":{\"status\":\"defaulted\",\"err\":-6,\"value\":\"0x1bffff\""
            ),
            "{j}"
        );
        assert!(j.contains("\"verdict\":{\"vm_type\":4,"), "{j}");
        let depth = j.chars().fold(0i32, |d, c| match c {
            '{' => d + 1,
            '}' => d - 1,
            _ => d,
        });
        assert_eq!(depth, 0);
    }

    #[test]
    fn human_report_has_a_verdict() {
        let text = human(&host(), "test");
        assert!(
            text.contains("verdict: confidential VMs supported; best: VM type SEV-SNP"),
            "{text}"
        );
        let none = human(&mem_enc_caps::default(), "test");
        assert!(none.contains("verdict: no confidential VMs here"), "{none}");
    }
}
