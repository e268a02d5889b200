//! Typed Amazon Resource Names for ECS resources.
//!
//! ECS has two ARN formats in the wild: the old one (`task/<id>`,
//! `container-instance/<id>`) and the long one that names the cluster
//! (`task/<cluster>/<id>`). Which one an account gets depends on its account
//! settings, and both may be present in one account's history, so blox keys
//! every entity by its full ARN, which is unique across partitions, regions
//! and accounts.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of ECS resource an [`Arn`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `cluster/<name>`
    Cluster,
    /// `container-instance/<id>` or `container-instance/<cluster>/<id>`
    ContainerInstance,
    /// `task/<id>` or `task/<cluster>/<id>`
    Task,
    /// `task-definition/<family>:<revision>`
    TaskDefinition,
    /// `container/<id>` or `container/<cluster>/<task-id>/<container-id>`
    Container,
    /// `service/<name>` or `service/<cluster>/<name>`
    Service,
}

impl ResourceKind {
    /// The resource-type word used in the ARN.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Cluster => "cluster",
            ResourceKind::ContainerInstance => "container-instance",
            ResourceKind::Task => "task",
            ResourceKind::TaskDefinition => "task-definition",
            ResourceKind::Container => "container",
            ResourceKind::Service => "service",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cluster" => ResourceKind::Cluster,
            "container-instance" => ResourceKind::ContainerInstance,
            "task" => ResourceKind::Task,
            "task-definition" => ResourceKind::TaskDefinition,
            "container" => ResourceKind::Container,
            "service" => ResourceKind::Service,
            _ => return None,
        })
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not an ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ECS ARN {arn:?}: {reason}")]
pub struct ArnError {
    /// The string that failed to parse (truncated to 200 characters).
    pub arn: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A validated ECS ARN, cheap to clone (one shared allocation).
///
/// ```
/// use blox_core::model::{Arn, ResourceKind};
/// let long: Arn = "arn:aws:ecs:us-west-2:111122223333:task/web/c13b4cb4".parse()?;
/// assert_eq!(long.kind(), ResourceKind::Task);
/// assert_eq!(long.cluster_name(), Some("web"));
/// assert_eq!(long.id(), "c13b4cb4");
/// let old: Arn = "arn:aws-cn:ecs:cn-north-1:111122223333:task/c13b4cb4".parse()?;
/// assert_eq!(old.cluster_name(), None);
/// assert_eq!(old.partition(), "aws-cn");
/// # Ok::<(), blox_core::model::ArnError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arn(Arc<str>);

/// The byte ranges of the parts of a validated ARN.
struct Parts<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
    kind: ResourceKind,
    /// Everything after `<kind>/`.
    path: &'a str,
}

/// Splits an ARN into its parts, checking only its shape (what
/// [`Arn::parts`] needs on an ARN validated when it was built).
fn locate(s: &str) -> Result<Parts<'_>, &'static str> {
    let mut it = s.splitn(6, ':');
    if it.next() != Some("arn") {
        return Err("does not start with \"arn:\"");
    }
    let partition = it.next().ok_or("missing partition")?;
    let service = it.next().ok_or("missing service")?;
    if service != "ecs" {
        return Err("service is not ecs");
    }
    let region = it.next().ok_or("missing region")?;
    let account = it.next().ok_or("missing account")?;
    let resource = it.next().ok_or("missing resource")?;
    let (kind, path) = resource
        .split_once('/')
        .ok_or("resource has no '/' (expected <type>/<id>)")?;
    let kind = ResourceKind::parse(kind).ok_or("unknown ECS resource type")?;
    Ok(Parts {
        partition,
        region,
        account,
        kind,
        path,
    })
}

/// Splits and fully validates an ARN.
fn split(s: &str) -> Result<Parts<'_>, &'static str> {
    let parts = locate(s)?;
    if parts.partition.is_empty() || !parts.partition.starts_with("aws") {
        return Err("partition must be aws, aws-cn, aws-us-gov or another aws partition");
    }
    if parts.path.is_empty() || parts.path.split('/').any(str::is_empty) {
        return Err("empty resource id");
    }
    if parts.kind == ResourceKind::Cluster && parts.path.contains('/') {
        return Err("cluster name contains '/'");
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    Ok(parts)
}

impl Arn {
    /// Parses and validates an ECS ARN.
    pub fn parse(s: &str) -> Result<Self, ArnError> {
        split(s).map_err(|reason| ArnError {
            arn: s.chars().take(200).collect(),
            reason,
        })?;
        Ok(Arn(Arc::from(s)))
    }

    /// Builds the long-format ARN of a resource from its parts.
    pub fn build(
        partition: &str,
        region: &str,
        account: &str,
        kind: ResourceKind,
        path: &str,
    ) -> Result<Self, ArnError> {
        Self::parse(&format!(
            "arn:{partition}:ecs:{region}:{account}:{kind}/{path}"
        ))
    }

    fn parts(&self) -> Parts<'_> {
        // Validated at construction; an invalid value cannot exist.
        locate(&self.0).unwrap_or(Parts {
            partition: "",
            region: "",
            account: "",
            kind: ResourceKind::Task,
            path: "",
        })
    }

    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, ...
    pub fn partition(&self) -> &str {
        self.parts().partition
    }

    /// The region, e.g. `us-east-1`.
    pub fn region(&self) -> &str {
        self.parts().region
    }

    /// The account id.
    pub fn account(&self) -> &str {
        self.parts().account
    }

    /// The resource type.
    pub fn kind(&self) -> ResourceKind {
        self.parts().kind
    }

    /// Whether this ARN uses the long format that names the cluster
    /// (always true for clusters and task definitions, which have one format).
    pub fn is_long_format(&self) -> bool {
        let p = self.parts();
        match p.kind {
            ResourceKind::Cluster | ResourceKind::TaskDefinition => true,
            _ => p.path.contains('/'),
        }
    }

    /// The cluster name: the cluster's own name for a cluster ARN, the cluster
    /// segment of a long-format ARN, `None` for an old-format ARN.
    pub fn cluster_name(&self) -> Option<&str> {
        let p = self.parts();
        match p.kind {
            ResourceKind::Cluster => Some(p.path),
            ResourceKind::TaskDefinition => None,
            _ => p.path.split_once('/').map(|(cluster, _)| cluster),
        }
    }

    /// The last path segment: the task id, container instance id, cluster
    /// name, or `family:revision` of a task definition.
    pub fn id(&self) -> &str {
        let p = self.parts();
        p.path.rsplit('/').next().unwrap_or(p.path)
    }

    /// The ARN of the cluster this resource belongs to, when the ARN names it.
    pub fn cluster_arn(&self) -> Option<Arn> {
        let p = self.parts();
        let name = self.cluster_name()?;
        Arn::build(
            p.partition,
            p.region,
            p.account,
            ResourceKind::Cluster,
            name,
        )
        .ok()
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arn({})", self.0)
    }
}

impl FromStr for Arn {
    type Err = ArnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Arn::parse(s)
    }
}

impl AsRef<str> for Arn {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Arn {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Arn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Arn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Arn::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_and_long_task_arns_both_parse() {
        let old = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/abc").unwrap();
        let long = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/abc").unwrap();
        assert_eq!(old.id(), "abc");
        assert_eq!(long.id(), "abc");
        assert!(!old.is_long_format());
        assert!(long.is_long_format());
        assert_eq!(long.cluster_name(), Some("prod"));
        assert_eq!(
            long.cluster_arn().unwrap().as_str(),
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
        );
        assert_eq!(old.cluster_arn(), None);
    }

    #[test]
    fn partitions_other_than_aws_are_accepted() {
        for p in ["aws", "aws-cn", "aws-us-gov"] {
            let arn = Arn::parse(&format!("arn:{p}:ecs:r:1:container-instance/c/i")).unwrap();
            assert_eq!(arn.partition(), p);
            assert_eq!(arn.kind(), ResourceKind::ContainerInstance);
        }
    }

    #[test]
    fn cluster_and_task_definition_arns_expose_their_names() {
        let c = Arn::parse("arn:aws:ecs:eu-west-1:1:cluster/default").unwrap();
        assert_eq!(c.cluster_name(), Some("default"));
        assert_eq!(c.id(), "default");
        let td = Arn::parse("arn:aws:ecs:eu-west-1:1:task-definition/web:12").unwrap();
        assert_eq!(td.id(), "web:12");
        assert_eq!(td.cluster_name(), None);
    }

    #[test]
    fn malformed_arns_are_rejected_with_a_reason() {
        for bad in [
            "",
            "arn",
            "arn:aws:ec2:us-east-1:1:instance/i-1",
            "arn:aws:ecs:us-east-1:1:task",
            "arn:aws:ecs:us-east-1:1:task/",
            "arn:aws:ecs:us-east-1:1:task//x",
            "arn:aws:ecs:us-east-1:1:widget/x",
            "arn:aws:ecs:us-east-1:1:cluster/a/b",
            "arn:gcp:ecs:us-east-1:1:task/x",
            "arn:aws:ecs:us-east-1:1:task/a b",
        ] {
            let err = Arn::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }

    #[test]
    fn same_id_in_different_accounts_are_different_keys() {
        let a = Arn::parse("arn:aws:ecs:us-east-1:111:cluster/prod").unwrap();
        let b = Arn::parse("arn:aws:ecs:us-east-1:222:cluster/prod").unwrap();
        let c = Arn::parse("arn:aws:ecs:us-west-2:111:cluster/prod").unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.cluster_name(), b.cluster_name());
    }

    #[test]
    fn serde_round_trips_as_a_plain_string() {
        let arn = Arn::parse("arn:aws:ecs:us-east-1:1:task/c/t").unwrap();
        let json = serde_json::to_string(&arn).unwrap();
        assert_eq!(json, "\"arn:aws:ecs:us-east-1:1:task/c/t\"");
        let back: Arn = serde_json::from_str(&json).unwrap();
        assert_eq!(back, arn);
        assert!(serde_json::from_str::<Arn>("\"nope\"").is_err());
    }
}
