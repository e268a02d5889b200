//! The README's scheduler example compiles and decides as it says.
//!
//! `readme/scheduler.rs` is the README's `rust` block of "Writing your own
//! scheduler", verbatim: [`the_readme_block_is_the_compiled_code`] checks
//! that the two are the same text, so the README cannot drift from code
//! that compiles (`cargo fmt` leaves the file alone: it is not a module of
//! the crate's tree but included).

mod readme {
    include!("readme/scheduler.rs");

    #[test]
    fn the_readme_scheduler_starts_one_task_on_each_web_instance_lacking_one() {
        use blox_sched::testing::{SnapshotBuilder, starts};

        let b = SnapshotBuilder::new().cluster("prod");
        let snap = b
            .clone()
            .instance("w1", |i| i.attr("role", "web"))
            .instance("w2", |i| i.attr("role", "web"))
            .instance("w3", |i| i.attr("role", "web"))
            .instance("w4", |i| i.attr("role", "web").draining())
            .instance("w5", |i| i.attr("role", "web"))
            .instance("db", |i| i.attr("role", "db"))
            .task("t1", "w1", |t| t.started_by(TAG))
            .pending_start("w2", "web:3", TAG)
            .backoff("w5", "RESOURCE:MEMORY")
            .build(());
        let actions = OnePerWebInstance.decide(&snap);
        assert_eq!(starts(&actions), vec![b.instance_arn("w3")]);
    }
}

/// The README's ```rust block in its "Writing your own scheduler" section.
fn readme_block(readme: &str) -> Option<&str> {
    let rest = &readme[readme.find("## Writing your own scheduler")?..];
    let start = rest.find("```rust\n")? + "```rust\n".len();
    let len = rest[start..].find("```\n")?;
    Some(&rest[start..start + len])
}

#[test]
fn the_readme_block_is_the_compiled_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    assert_eq!(
        readme_block(&readme).expect("README.md has a rust block on writing a scheduler"),
        include_str!("readme/scheduler.rs"),
        "README.md's scheduler example and examples/tests/readme/scheduler.rs differ"
    );
}
