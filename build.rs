// The cargo-built cdylib carries the same SONAME as the meson-built library, so Rust-side users
// and C users link against one ABI name.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemenc.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
