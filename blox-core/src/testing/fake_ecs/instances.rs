//! Container instance registration, status changes and deregistration.

use super::FakeError;
use super::spec::InstanceSpec;
use super::state::State;
use crate::model::{
    Arn, Attribute, ContainerInstance, InstanceStatus, Resource, ResourceKind, VersionInfo,
};

fn resources(spec: &InstanceSpec) -> Vec<Resource> {
    vec![
        Resource::integer("CPU", spec.cpu),
        Resource::integer("MEMORY", spec.memory),
        Resource::string_set("PORTS", spec.reserved_ports.clone()),
        Resource::string_set("PORTS_UDP", Vec::new()),
    ]
}

impl State {
    /// Registers a container instance in `cluster` (one event, version 1).
    pub(crate) fn add_instance(
        &mut self,
        cluster: &str,
        spec: &InstanceSpec,
    ) -> Result<ContainerInstance, FakeError> {
        let (cluster_name, cluster_arn) = {
            let c = self.cluster(cluster)?;
            (c.name.clone(), c.arn.clone())
        };
        let id = if self.cfg.long_arns {
            self.hex(32)
        } else {
            self.uuid()
        };
        let arn = self.member_arn(ResourceKind::ContainerInstance, &cluster_name, &id)?;
        let ec2_id = match &spec.ec2_instance_id {
            Some(id) => id.clone(),
            None => format!("i-{}", self.hex(17)),
        };
        let az = spec
            .availability_zone
            .clone()
            .unwrap_or_else(|| format!("{}a", self.cfg.region));
        let mut attributes = vec![
            Attribute::new("ecs.availability-zone", az),
            Attribute::new("ecs.instance-type", spec.instance_type.clone()),
            Attribute::new("ecs.os-type", "linux"),
            Attribute::new("ecs.cpu-architecture", "x86_64"),
        ];
        attributes.retain(|a| !spec.attributes.iter().any(|s| s.name == a.name));
        attributes.extend(spec.attributes.iter().cloned());
        let mut instance = ContainerInstance::new(arn.clone(), cluster_arn);
        instance.ec2_instance_id = Some(ec2_id);
        instance.status = spec.status.clone();
        instance.agent_connected = spec.agent_connected;
        instance.attributes = attributes;
        instance.registered_resources = resources(spec);
        instance.remaining_resources = resources(spec);
        instance.version_info = Some(VersionInfo {
            agent_hash: Some("4023248".into()),
            agent_version: Some("1.88.0".into()),
            docker_version: Some("DockerVersion: 25.0.6".into()),
        });
        instance.registered_at = Some(self.now());
        self.instances.insert(arn.clone(), instance);
        if spec.status != InstanceStatus::Inactive {
            if let Some(until) = self.listed_from() {
                self.lag.instance_changed(&arn, false, until);
            }
            if let Some(c) = self.clusters.get_mut(&cluster_name) {
                c.instances.insert(arn.clone());
            }
        }
        self.touch_instance(&arn);
        self.instances
            .get(&arn)
            .cloned()
            .ok_or(FakeError::UnknownInstance(arn))
    }

    /// Sets ACTIVE or DRAINING; returns the new state, or `None` for an
    /// unknown or INACTIVE instance. No change, no new version.
    pub(crate) fn set_instance_status(
        &mut self,
        arn: &Arn,
        status: &InstanceStatus,
    ) -> Option<ContainerInstance> {
        let instance = self.instances.get_mut(arn)?;
        if instance.status == InstanceStatus::Inactive {
            return None;
        }
        if &instance.status != status {
            instance.status = status.clone();
            self.touch_instance(arn);
        }
        self.instances.get(arn).cloned()
    }

    /// Connects or disconnects an instance's agent.
    pub(crate) fn set_agent_connected(
        &mut self,
        arn: &Arn,
        connected: bool,
    ) -> Result<ContainerInstance, FakeError> {
        let instance = self
            .instances
            .get_mut(arn)
            .ok_or_else(|| FakeError::UnknownInstance(arn.clone()))?;
        if instance.agent_connected != connected {
            instance.agent_connected = connected;
            self.touch_instance(arn);
        }
        self.instances
            .get(arn)
            .cloned()
            .ok_or_else(|| FakeError::UnknownInstance(arn.clone()))
    }

    /// Deregisters an instance as when its EC2 host terminates: its live
    /// tasks stop, it turns INACTIVE with its agent disconnected (one event)
    /// and leaves the cluster's listing; `DescribeContainerInstances` still
    /// finds it until [`State::expire_retained`].
    pub(crate) fn deregister_instance(
        &mut self,
        arn: &Arn,
    ) -> Result<ContainerInstance, FakeError> {
        let instance = self
            .instances
            .get(arn)
            .ok_or_else(|| FakeError::UnknownInstance(arn.clone()))?;
        if instance.status == InstanceStatus::Inactive {
            return Ok(instance.clone());
        }
        let cluster = self.cluster_name_of(&instance.cluster_arn)?;
        let reason = format!(
            "Host EC2 (instance {}) terminated.",
            instance.ec2_instance_id.as_deref().unwrap_or("unknown")
        );
        let live: Vec<Arn> = self
            .clusters
            .get(&cluster)
            .and_then(|c| c.tasks_by_instance.get(arn))
            .map(|set| {
                set.iter()
                    .filter(|t| self.tasks.get(*t).is_some_and(|t| t.is_live()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for task in &live {
            self.crash(task, &reason);
        }
        if let Some(i) = self.instances.get_mut(arn) {
            i.status = InstanceStatus::Inactive;
            i.agent_connected = false;
        }
        if let Some(until) = self.listed_from() {
            self.lag.instance_changed(arn, true, until);
        }
        if let Some(c) = self.clusters.get_mut(&cluster) {
            c.instances.remove(arn);
        }
        self.touch_instance(arn);
        self.instances
            .get(arn)
            .cloned()
            .ok_or_else(|| FakeError::UnknownInstance(arn.clone()))
    }
}
