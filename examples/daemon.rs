//! The blox daemon: `cargo run --release --example daemon -- [flags]`
//! (`--help` lists them; add `--features simulator` for `--simulate`). The
//! code lives in the `blox_examples::daemon` library module so integration
//! tests can drive it.

/// mimalloc, as the `blox-daemon` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    blox_examples::daemon::main()
}
