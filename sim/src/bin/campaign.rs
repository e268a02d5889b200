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
//! chooses the first seed (default: 1); seeds run in order. `--without
//! lag,redrive` turns faults off (see `FaultPlan::without`).

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use blox_sim::{Shape, StoreKind, run_blocking};

struct Args {
    seeds: u64,
    first: u64,
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
        first: 1,
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
            "--first" => args.first = number(value()?)?,
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
                return Err("usage: campaign [--seeds N] [--first N] [--minutes M] [--store memory|etcd] [--instances N] [--environments N] [--log FILE] [--without FAULT,...]".into());
            }
            other => return Err(format!("unknown flag {other:?} (see --help)")),
        }
    }
    Ok(args)
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
    for seed in args.first..args.first + args.seeds {
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
