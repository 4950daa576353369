//! include/memenc.h is generated from the Rust source and committed. This test fails when it is
//! stale and says the one command that regenerates it.

use std::path::Path;

#[test]
fn committed_header_is_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen generation")
        .write(&mut generated);
    let path = root.join("include/memenc.h");
    if std::env::var_os("MEMENC_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/memenc.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/memenc.h is stale: regenerate it with `MEMENC_BLESS=1 cargo test --test header` and commit it"
    );
}
