//! A simulation campaign on demand: many seeds, each a run of the whole
//! stack with every fault, resumable from its log.
//!
//! ```sh
//! cargo run --release -p blox-sim --bin campaign -- \
//!     --seeds 1000 --minutes 10 --store memory --instances 50 --environments 3 \
//!     --log target/campaign-memory.log
//! ```
//!
//! Each finished seed appends one line to the log (`seed N: K violation(s)
//! ...`, then the violations and trace); a rerun with the same log skips
//! the seeds already there, so an interrupted campaign resumes. `--first`
//! chooses the first seed (default: 1); seeds run in order. `--first
//! random` draws it at random (so each new campaign explores seeds no
//! earlier one ran) and records it as the log's first line (`first: N`); a
//! rerun with that log resumes from the same seed. `--without lag,redrive`
//! turns faults off (see `FaultPlan::without`).

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use blox_sim::{Shape, StoreKind, run_blocking};

/// Where a campaign's seeds start.
enum First {
    /// This seed.
    Seed(u64),
    /// The one the log records, or a random one for a new log.
    Random,
}

struct Args {
    seeds: u64,
    first: First,
    minutes: u64,
    store: StoreKind,
    instances: usize,
    environments: usize,
    log: String,
    without: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        first: First::Seed(1),
        minutes: 10,
        store: StoreKind::Memory,
        instances: 50,
        environments: 3,
        log: "target/campaign.log".into(),
        without: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seeds" => args.seeds = number(value()?)?,
            "--first" => {
                args.first = match value()? {
                    v if v == "random" => First::Random,
                    v => First::Seed(number(v)?),
                }
            }
            "--minutes" => args.minutes = number(value()?)?,
            "--instances" => args.instances = number(value()?)? as usize,
            "--environments" => args.environments = number(value()?)? as usize,
            "--log" => args.log = value()?,
            "--without" => args.without.extend(value()?.split(',').map(str::to_owned)),
            "--store" => {
                args.store = match value()?.as_str() {
                    "memory" => StoreKind::Memory,
                    "etcd" => StoreKind::Etcd,
                    other => return Err(format!("--store: memory or etcd, not {other:?}")),
                }
            }
            "--help" | "-h" => {
                return Err("usage: campaign [--seeds N] [--first N|random] [--minutes M] [--store memory|etcd] [--instances N] [--environments N] [--log FILE] [--without FAULT,...]".into());
            }
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
    Ok(args)
}

/// The first seed a log records (`first: N`, its first line).
fn recorded_first(log: &str) -> Option<u64> {
    std::fs::read_to_string(log)
        .ok()?
        .lines()
        .next()?
        .strip_prefix("first: ")?
        .trim()
        .parse()
        .ok()
}

fn done_seeds(log: &str) -> HashSet<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("seed "))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect()
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let done = done_seeds(&args.log);
    let mut log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot open {}: {e}", args.log);
            return ExitCode::from(2);
        }
    };
    let first = match args.first {
        First::Seed(n) => n,
        First::Random => match recorded_first(&args.log) {
            Some(n) => n,
            None if done.is_empty() => {
                // Far from the small seeds CI and earlier campaigns ran.
                let n = rand::random_range(1_000_000..u64::MAX / 2);
                if let Err(e) = writeln!(log, "first: {n}") {
                    eprintln!("cannot write {}: {e}", args.log);
                    return ExitCode::from(2);
                }
                n
            }
            None => {
                eprintln!(
                    "{} holds seeds but no `first:` line: give --first N to resume it",
                    args.log
                );
                return ExitCode::from(2);
            }
        },
    };
    println!(
        "campaign: seeds {first} to {}",
        first.saturating_add(args.seeds).saturating_sub(1)
    );
    let without: Vec<&str> = args.without.iter().map(String::as_str).collect();
    let faults = match blox_sim::FaultPlan::all().without(&without) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("--without: {e}");
            return ExitCode::from(2);
        }
    };
    let duration = Duration::from_secs(args.minutes * 60);
    let base = match args.store {
        StoreKind::Memory => Shape::memory(args.instances, args.environments, duration),
        StoreKind::Etcd => Shape::etcd(args.instances, args.environments, duration),
    };
    let shape = Shape { faults, ..base };
    let (mut ran, mut failed) = (0, 0);
    for seed in first..first + args.seeds {
        if done.contains(&seed) {
            continue;
        }
        let outcome = run_blocking(seed, shape);
        ran += 1;
        if !outcome.violations.is_empty() {
            failed += 1;
        }
        let report = outcome.report();
        print!("{report}");
        if let Err(e) = log.write_all(report.as_bytes()) {
            eprintln!("cannot write {}: {e}", args.log);
            return ExitCode::from(2);
        }
    }
    println!(
        "campaign: {ran} seeds run ({} skipped as done), {failed} with violations; log {}",
        done.len(),
        args.log
    );
    ExitCode::SUCCESS
}
