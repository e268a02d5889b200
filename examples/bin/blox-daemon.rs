//! The blox daemon as a binary target (the same as the `daemon` example),
//! so integration tests can start it as a process.

/// mimalloc rather than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    blox_examples::daemon::main()
}
