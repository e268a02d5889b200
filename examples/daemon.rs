//! The blox daemon (foundation stage: prints what blox parses from the
//! recorded ECS events). Run with `cargo run --release --example daemon`.

fn main() -> std::process::ExitCode {
    match blox_examples::describe_events(&blox_examples::fixtures_dir()) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read the event fixtures: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
