// The model's eight-pages-at-once SHA-384 (src/model/page_hash.rs) needs AVX-512 intrinsics.
fn main() {
    // The simulator's eight-pages-at-once SHA-384 (src/model/page_hash.rs) uses AVX-512
    // intrinsics, stable since Rust 1.89; older compilers down to the MSRV build without it
    // (the simulator then hashes with sha2 alone). Whether the CPU has AVX-512 is decided at
    // run time.
    println!("cargo::rustc-check-cfg=cfg(memenc_avx512_intrinsics)");
    if rustc_minor_version().is_some_and(|minor| minor >= 89) {
        println!("cargo:rustc-cfg=memenc_avx512_intrinsics");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The minor version of the compiler cargo runs (`rustc 1.95.0 (...)` → 95).
fn rustc_minor_version() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace()
        .nth(1)?
        .split('.')
        .nth(1)?
        .parse()
        .ok()
}
