// SPDX-License-Identifier: Apache-2.0 OR MIT
// Stands in for the Rust code a VMM already links as its own staticlib (QEMU with Rust
// enabled does): a second copy of std, panics and unwinding included. run.sh links it beside
// libmemenc.a to show the two staticlibs coexist in one C program.
#[unsafe(no_mangle)]
pub extern "C" fn other_rust_sum(n: i32) -> i32 {
    let values: Vec<i32> = (1..=n).collect();
    // Unwinding inside this copy of std must keep working next to memenc's.
    std::panic::catch_unwind(|| {
        if n < 0 {
            panic!("negative");
        }
        values.iter().sum()
    })
    .unwrap_or(-1)
}
