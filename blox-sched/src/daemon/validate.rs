//! Validation of environment requests (names, clusters, task definitions,
//! selectors), with typed errors that become HTTP 400s.

use blox_core::model::{Arn, ResourceKind};

use super::model::InstanceSelector;

/// Why a request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The environment name breaks the v0.3 pattern.
    #[error("invalid environment name {0:?}: use 1 to 30 letters, digits, '-' or '_'")]
    Name(String),
    /// The cluster is neither a cluster name nor a cluster ARN.
    #[error(
        "invalid cluster {0:?}: expected a cluster name (1 to 255 letters, digits, '-' or '_') or a cluster ARN"
    )]
    Cluster(String),
    /// The task definition is neither `family:revision` nor a task definition ARN.
    #[error(
        "invalid task definition {0:?}: expected family:revision (e.g. web:3) or a task definition ARN"
    )]
    TaskDefinition(String),
    /// A selector condition has an empty attribute name.
    #[error("invalid instance selector: attribute names must not be empty")]
    EmptyAttributeName,
    /// The rollout bound is zero.
    #[error("invalid maxUnavailable 0: at least one instance must be allowed to roll at a time")]
    RolloutBound,
    /// An update that changes nothing.
    #[error(
        "nothing to update: give taskDefinition, instanceGroup.attributes, drainingPolicy or maxUnavailable"
    )]
    NothingToUpdate,
    /// An update that moves an environment to another cluster.
    #[error(
        "an environment's cluster cannot change (it runs on {current:?}, the update names {requested:?}): create a new environment"
    )]
    ClusterChange {
        /// The environment's cluster.
        current: String,
        /// The cluster the update names.
        requested: String,
    },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Checks an environment name (`^[a-zA-Z0-9-_]{1,30}$`).
pub fn environment_name(name: &str) -> Result<(), ValidationError> {
    if (1..=30).contains(&name.len()) && name.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(ValidationError::Name(truncate(name)))
    }
}

/// Checks a cluster name or cluster ARN.
pub fn cluster(cluster: &str) -> Result<(), ValidationError> {
    if cluster.starts_with("arn:") {
        return match Arn::parse(cluster) {
            Ok(a) if a.kind() == ResourceKind::Cluster => Ok(()),
            _ => Err(ValidationError::Cluster(truncate(cluster))),
        };
    }
    if (1..=255).contains(&cluster.len()) && cluster.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(ValidationError::Cluster(truncate(cluster)))
    }
}

/// Checks a task definition: `family:revision` or a task definition ARN.
pub fn task_definition(td: &str) -> Result<(), ValidationError> {
    let family_revision = if td.starts_with("arn:") {
        match Arn::parse(td) {
            Ok(a) if a.kind() == ResourceKind::TaskDefinition => a.id().to_owned(),
            _ => return Err(ValidationError::TaskDefinition(truncate(td))),
        }
    } else {
        td.to_owned()
    };
    let ok = family_revision
        .split_once(':')
        .is_some_and(|(family, revision)| {
            (1..=255).contains(&family.len())
                && family.chars().all(is_name_char)
                && revision.parse::<u32>().is_ok_and(|r| r > 0)
        });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::TaskDefinition(truncate(td)))
    }
}

/// Checks a selector.
pub fn selector(sel: &InstanceSelector) -> Result<(), ValidationError> {
    if sel.0.iter().any(|m| m.name.trim().is_empty()) {
        Err(ValidationError::EmptyAttributeName)
    } else {
        Ok(())
    }
}

/// Checks a rollout bound.
pub fn rollout_bound(n: u32) -> Result<(), ValidationError> {
    if n == 0 {
        Err(ValidationError::RolloutBound)
    } else {
        Ok(())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::model::AttributeMatch;

    #[test]
    fn names_follow_the_v03_pattern() {
        assert!(environment_name("web-logs_1").is_ok());
        assert!(environment_name("").is_err());
        assert!(environment_name(&"a".repeat(31)).is_err());
        assert!(environment_name("a/b").is_err());
    }

    #[test]
    fn clusters_are_names_or_cluster_arns() {
        assert!(cluster("prod").is_ok());
        assert!(cluster("arn:aws:ecs:us-east-1:123456789012:cluster/prod").is_ok());
        assert!(cluster("arn:aws:ecs:us-east-1:123456789012:task/prod/abc").is_err());
        assert!(cluster("has space").is_err());
    }

    #[test]
    fn task_definitions_are_family_revision_or_arns() {
        assert!(task_definition("web:3").is_ok());
        assert!(
            task_definition("arn:aws:ecs:us-east-1:123456789012:task-definition/web:3").is_ok()
        );
        for bad in ["web", "web:", "web:0", ":3", "web:x", "we b:1"] {
            assert_eq!(
                task_definition(bad),
                Err(ValidationError::TaskDefinition(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn selectors_need_attribute_names_and_bounds_are_positive() {
        assert!(selector(&InstanceSelector::all().and(AttributeMatch::exists(" "))).is_err());
        assert!(rollout_bound(0).is_err());
        assert!(rollout_bound(3).is_ok());
    }
}
