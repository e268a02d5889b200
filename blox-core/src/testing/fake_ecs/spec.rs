//! The builder of container instances a test registers.

use crate::model::{Attribute, InstanceStatus};

/// What a registered container instance looks like; build with the setters.
///
/// Defaults: 2048 CPU units, 7482 MiB, `m5.large` in the region's `a` zone,
/// the ECS agent's reserved ports, agent connected, ACTIVE.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSpec {
    pub(crate) cpu: i64,
    pub(crate) memory: i64,
    pub(crate) availability_zone: Option<String>,
    pub(crate) instance_type: String,
    pub(crate) ec2_instance_id: Option<String>,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) reserved_ports: Vec<String>,
    pub(crate) agent_connected: bool,
    pub(crate) status: InstanceStatus,
}

impl Default for InstanceSpec {
    fn default() -> Self {
        InstanceSpec {
            cpu: 2048,
            memory: 7482,
            availability_zone: None,
            instance_type: "m5.large".into(),
            ec2_instance_id: None,
            attributes: Vec::new(),
            reserved_ports: ["22", "2375", "2376", "51678", "51679"]
                .map(String::from)
                .to_vec(),
            agent_connected: true,
            status: InstanceStatus::Active,
        }
    }
}

impl InstanceSpec {
    /// The defaults.
    pub fn new() -> Self {
        InstanceSpec::default()
    }

    /// Registered CPU units.
    pub fn cpu(mut self, units: i64) -> Self {
        self.cpu = units;
        self
    }

    /// Registered memory in MiB.
    pub fn memory(mut self, mib: i64) -> Self {
        self.memory = mib;
        self
    }

    /// The availability zone (`ecs.availability-zone`); defaults to the region's `a` zone.
    pub fn az(mut self, zone: impl Into<String>) -> Self {
        self.availability_zone = Some(zone.into());
        self
    }

    /// The instance type (`ecs.instance-type`).
    pub fn instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = instance_type.into();
        self
    }

    /// The EC2 instance id; generated when not given.
    pub fn ec2_instance_id(mut self, id: impl Into<String>) -> Self {
        self.ec2_instance_id = Some(id.into());
        self
    }

    /// A custom attribute (replaces one of the same name).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let a = Attribute::new(name, value);
        self.attributes.retain(|x| x.name != a.name);
        self.attributes.push(a);
        self
    }

    /// The TCP ports the instance reserves (the `PORTS` resource).
    pub fn reserved_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.reserved_ports = ports.into_iter().map(|p| p.to_string()).collect();
        self
    }

    /// Registers with the agent disconnected.
    pub fn disconnected(mut self) -> Self {
        self.agent_connected = false;
        self
    }

    /// Registers with this status (e.g. DRAINING).
    pub fn status(mut self, status: InstanceStatus) -> Self {
        self.status = status;
        self
    }
}
