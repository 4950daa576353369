//! `memenc-sim run --profile PROFILE [--report FILE] -- PROGRAM [ARGS...]`, `memenc-sim profiles`.
fn main() {
    eprintln!("memenc-sim: not built yet");
    std::process::exit(2);
}
