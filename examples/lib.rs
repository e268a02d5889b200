//! The code behind the `daemon` example, kept in a library so integration
//! tests can drive it.
//!
//! Foundation stage: the daemon parses the recorded ECS events shipped in
//! `fixtures/ecs-events/` and prints what blox makes of them. The state
//! service, scheduler and HTTP API are wired in by later stages.

use std::path::{Path, PathBuf};

use blox_core::event::{EcsEvent, parse_event};

/// The fixtures directory of the repository.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ecs-events")
}

/// One line per event file in `dir`: its name and what it parsed into.
pub fn describe_events(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    let mut lines = Vec::with_capacity(names.len());
    for path in names {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = std::fs::read(&path)?;
        let line = match parse_event(&body) {
            Ok(ev) => match ev.event {
                EcsEvent::Task(t) => format!(
                    "{name}: task {} in {} is {} (desired {}), version {}",
                    t.task_arn,
                    t.cluster_arn.cluster_name().unwrap_or("?"),
                    t.last_status,
                    t.desired_status,
                    t.version.map_or("unknown".into(), |v| v.to_string())
                ),
                EcsEvent::Instance(i) => format!(
                    "{name}: container instance {} in {} is {}, version {}",
                    i.container_instance_arn,
                    i.cluster_arn.cluster_name().unwrap_or("?"),
                    i.status,
                    i.version.map_or("unknown".into(), |v| v.to_string())
                ),
                EcsEvent::Ignored { detail_type } => format!("{name}: ignored ({detail_type})"),
            },
            Err(e) => format!("{name}: malformed: {e}"),
        };
        lines.push(line);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_described_and_none_is_malformed() {
        let lines = describe_events(&fixtures_dir()).unwrap();
        assert_eq!(lines.len(), 10);
        assert!(lines.iter().all(|l| !l.contains("malformed")), "{lines:?}");
        assert_eq!(lines.iter().filter(|l| l.contains(": task ")).count(), 1);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains("container instance"))
                .count(),
            1
        );
    }
}
