// The cargo-built cdylib carries the same SONAME as the meson-built library, so Rust-side users
// and C users link against one ABI name: libmemenc.so.<major>, or during 0.x libmemenc.so.0.<minor>
// (each 0.x minor may break the ABI), as meson.build computes it.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemenc.so.{abi}");
    println!("cargo:rerun-if-changed=build.rs");
}
