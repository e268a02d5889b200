//! Environments and deployments: the daemon scheduler's desired state, as
//! stored (JSON) and as served by the HTTP API (Blox v0.3 shapes plus extra
//! fields).

use std::collections::BTreeMap;

use blox_core::model::{Arn, ContainerInstance, Timestamp};
use blox_state::store::Filter;
use serde::{Deserialize, Serialize};

/// How a daemon task on a DRAINING instance is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainingPolicy {
    /// Keep the daemon task until every non-daemon task on the instance has
    /// stopped (they may still need it, e.g. a log or metrics agent), then
    /// stop it.
    #[default]
    StopWhenLast,
    /// Stop the daemon task as soon as the instance is DRAINING.
    StopImmediately,
}

/// One condition on a container instance attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeMatch {
    /// The attribute name (`ecs.instance-type`, a custom attribute, ...).
    pub name: String,
    /// The value it must equal; `None` = the attribute must merely exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl AttributeMatch {
    /// The attribute must equal `value`.
    pub fn equals(name: impl Into<String>, value: impl Into<String>) -> Self {
        AttributeMatch {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// The attribute must exist (any value, or none).
    pub fn exists(name: impl Into<String>) -> Self {
        AttributeMatch {
            name: name.into(),
            value: None,
        }
    }

    /// Whether an instance satisfies this condition.
    pub fn matches(&self, instance: &ContainerInstance) -> bool {
        match &self.value {
            None => instance.has_attribute(&self.name),
            Some(v) => instance.attribute(&self.name) == Some(v.as_str()),
        }
    }
}

/// Which instances of the cluster run the daemon: every condition must hold
/// (an empty selector selects every instance).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceSelector(pub Vec<AttributeMatch>);

impl InstanceSelector {
    /// Selects every instance.
    pub fn all() -> Self {
        InstanceSelector(Vec::new())
    }

    /// Adds a condition.
    pub fn and(mut self, m: AttributeMatch) -> Self {
        self.0.push(m);
        self
    }

    /// Whether an instance satisfies every condition.
    pub fn matches(&self, instance: &ContainerInstance) -> bool {
        self.0.iter().all(|m| m.matches(instance))
    }
}

/// The group of instances an environment runs on (Blox v0.3's `instanceGroup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceGroup {
    /// The cluster, by name or ARN.
    pub cluster: String,
    /// Attribute conditions (an extension of v0.3).
    #[serde(default, skip_serializing_if = "selector_is_empty")]
    pub attributes: InstanceSelector,
}

fn selector_is_empty(s: &InstanceSelector) -> bool {
    s.0.is_empty()
}

/// A daemon environment: one task of a task definition on every eligible
/// instance of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    /// The name (`^[a-zA-Z0-9-_]{1,30}$`, as in v0.3).
    pub name: String,
    /// Where it runs.
    pub instance_group: InstanceGroup,
    /// The task definition (`family:revision` or its ARN) the next deployment uses.
    pub task_definition: String,
    /// How daemon tasks on DRAINING instances are treated.
    #[serde(default)]
    pub draining_policy: DrainingPolicy,
    /// During a rollout, at most this many eligible instances lack a running
    /// daemon task at a time (at least 1).
    #[serde(default = "default_rollout_bound")]
    pub max_unavailable: u32,
    /// The token a deployment must present: changes whenever the environment
    /// changes or is deployed, so a deployment is always of a known version.
    pub deployment_token: String,
    /// The deployment whose task definition is rolled out, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deployment: Option<String>,
    /// How many deployments were created (numbers them in order).
    #[serde(default)]
    pub deployment_count: u64,
    /// Set when the environment was deleted with its tasks to be stopped: it
    /// is kept (hidden from get/list) until its tasks are gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// v0.3's health field (always `healthy`: blox reports problems per deployment).
    #[serde(default = "healthy")]
    pub health: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

fn default_rollout_bound() -> u32 {
    1
}

fn healthy() -> String {
    "healthy".into()
}

impl Environment {
    /// An environment with default settings (no selector, stop-when-last
    /// draining, rollout bound 1) and no deployment. Not validated: the
    /// [`EnvironmentStore`](super::EnvironmentStore) validates on create.
    pub fn new(
        name: impl Into<String>,
        cluster: impl Into<String>,
        task_definition: impl Into<String>,
        token: impl Into<String>,
        now: Timestamp,
    ) -> Self {
        Environment {
            name: name.into(),
            instance_group: InstanceGroup {
                cluster: cluster.into(),
                attributes: InstanceSelector::all(),
            },
            task_definition: task_definition.into(),
            draining_policy: DrainingPolicy::default(),
            max_unavailable: default_rollout_bound(),
            deployment_token: token.into(),
            active_deployment: None,
            deployment_count: 0,
            deleting: false,
            health: healthy(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The cluster (name or ARN).
    pub fn cluster(&self) -> &str {
        &self.instance_group.cluster
    }

    /// The instance selector.
    pub fn selector(&self) -> &InstanceSelector {
        &self.instance_group.attributes
    }
}

/// A deployment's status (Blox v0.3's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    /// Created; no task started yet.
    #[default]
    Pending,
    /// Tasks are being started.
    Running,
    /// Every eligible instance ran the deployment's task at some point.
    Completed,
}

impl DeploymentStatus {
    /// `pending`, `running` or `completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Completed => "completed",
        }
    }
}

/// How far a deployment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Eligible instances running the deployment's task.
    pub done: usize,
    /// Eligible instances.
    pub total: usize,
}

/// A deployment of a task definition to an environment. Its id is the
/// `startedBy` of its tasks (36 characters at most, an ECS limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The id (also the tasks' `startedBy`).
    pub id: String,
    /// The environment.
    pub environment_name: String,
    /// Its number within the environment (1 for the first): orders the list.
    #[serde(default)]
    pub sequence: u64,
    /// The task definition rolled out.
    pub task_definition: String,
    /// `pending`, `running` or `completed`.
    pub status: DeploymentStatus,
    /// Instances (ARNs) where starting the task failed (in backoff), as in v0.3.
    #[serde(default)]
    pub failed_instances: Vec<String>,
    /// ECS's reason for each failed instance (an extension of v0.3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failure_reasons: BTreeMap<String, String>,
    /// Progress as last recorded.
    #[serde(default)]
    pub progress: Progress,
    /// The deployment that replaced this one as the environment's active one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl Deployment {
    /// A new pending deployment.
    pub fn new(
        id: impl Into<String>,
        environment_name: impl Into<String>,
        task_definition: impl Into<String>,
        now: Timestamp,
    ) -> Self {
        Deployment {
            id: id.into(),
            environment_name: environment_name.into(),
            sequence: 0,
            task_definition: task_definition.into(),
            status: DeploymentStatus::Pending,
            failed_instances: Vec::new(),
            failure_reasons: BTreeMap::new(),
            progress: Progress::default(),
            superseded_by: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// An environment with its deployments (oldest first): one element of the
/// daemon scheduler's desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentState {
    /// The environment.
    pub environment: Environment,
    /// Every deployment of it, oldest first.
    pub deployments: Vec<Deployment>,
}

impl EnvironmentState {
    /// An environment with one deployment of its task definition, active.
    /// Handy for tests and examples; the store creates deployments for real.
    pub fn deployed(mut environment: Environment, deployment_id: impl Into<String>) -> Self {
        let mut d = Deployment::new(
            deployment_id,
            environment.name.clone(),
            environment.task_definition.clone(),
            environment.updated_at,
        );
        environment.deployment_count += 1;
        d.sequence = environment.deployment_count;
        environment.active_deployment = Some(d.id.clone());
        EnvironmentState {
            environment,
            deployments: vec![d],
        }
    }

    /// Adds a deployment of `task_definition` and makes it active (the old
    /// ones stay, as they do in the store).
    pub fn redeploy(mut self, deployment_id: impl Into<String>, task_definition: &str) -> Self {
        let mut d = Deployment::new(
            deployment_id,
            self.environment.name.clone(),
            task_definition,
            self.environment.updated_at,
        );
        self.environment.deployment_count += 1;
        d.sequence = self.environment.deployment_count;
        self.environment.task_definition = task_definition.to_owned();
        self.environment.active_deployment = Some(d.id.clone());
        self.deployments.push(d);
        self
    }

    /// The active deployment, if any.
    pub fn active(&self) -> Option<&Deployment> {
        let id = self.environment.active_deployment.as_deref()?;
        self.deployments.iter().find(|d| d.id == id)
    }
}

/// The daemon scheduler's desired state: every environment with its deployments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DaemonDesired {
    /// The environments, by name order.
    pub environments: Vec<EnvironmentState>,
}

impl DaemonDesired {
    /// A desired state of the given environments.
    pub fn new(environments: Vec<EnvironmentState>) -> Self {
        DaemonDesired { environments }
    }

    /// The environment `name`, if present.
    pub fn environment(&self, name: &str) -> Option<&EnvironmentState> {
        self.environments
            .iter()
            .find(|e| e.environment.name == name)
    }
}

/// Whether an environment's cluster (name or ARN) is the filter's (name or ARN).
pub(crate) fn same_cluster(filter: &str, cluster: &str) -> bool {
    if filter == cluster {
        return true;
    }
    match (Arn::parse(cluster), Arn::parse(filter)) {
        (Ok(arn), _) if cluster.starts_with("arn:") => Filter::cluster_matches(filter, &arn),
        (_, Ok(arn)) if filter.starts_with("arn:") => Filter::cluster_matches(cluster, &arn),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::Attribute;

    #[test]
    fn clusters_match_by_name_or_arn_either_way() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";
        assert!(same_cluster("prod", "prod"));
        assert!(same_cluster("prod", arn));
        assert!(same_cluster(arn, "prod"));
        assert!(same_cluster(arn, arn));
        assert!(!same_cluster("dev", arn));
        assert!(!same_cluster("dev", "prod"));
    }

    fn instance(attrs: Vec<Attribute>) -> ContainerInstance {
        let mut i = ContainerInstance::new(
            Arn::parse("arn:aws:ecs:us-east-1:1:container-instance/c/i1").unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap(),
        );
        i.attributes = attrs;
        i
    }

    #[test]
    fn selector_requires_equal_values_and_existing_attributes() {
        let mut bare = Attribute::new("gpu", "x");
        bare.value = None;
        let i = instance(vec![Attribute::new("ecs.instance-type", "m5.large"), bare]);
        let sel = InstanceSelector::all()
            .and(AttributeMatch::equals("ecs.instance-type", "m5.large"))
            .and(AttributeMatch::exists("gpu"));
        assert!(sel.matches(&i));
        assert!(
            !InstanceSelector::all()
                .and(AttributeMatch::equals("ecs.instance-type", "c5.large"))
                .matches(&i)
        );
        assert!(
            !InstanceSelector::all()
                .and(AttributeMatch::exists("team"))
                .matches(&i)
        );
        assert!(InstanceSelector::all().matches(&instance(vec![])));
    }

    #[test]
    fn environment_json_has_v03_fields_and_defaults() {
        let e = Environment::new("web", "prod", "web:1", "tok", Timestamp::from_millis(0));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["name"], "web");
        assert_eq!(v["instanceGroup"]["cluster"], "prod");
        assert_eq!(v["taskDefinition"], "web:1");
        assert_eq!(v["deploymentToken"], "tok");
        assert_eq!(v["health"], "healthy");
        let back: Environment = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.max_unavailable, 1);
        assert_eq!(back.draining_policy, DrainingPolicy::StopWhenLast);
    }

    #[test]
    fn deployment_status_serializes_as_v03_values() {
        for (s, t) in [
            (DeploymentStatus::Pending, "\"pending\""),
            (DeploymentStatus::Running, "\"running\""),
            (DeploymentStatus::Completed, "\"completed\""),
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), t);
            assert_eq!(format!("\"{}\"", s.as_str()), t);
        }
    }
}
