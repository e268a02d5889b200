//! Container instance attributes and resources.

use serde::{Deserialize, Serialize};

use super::lenient;

/// A name/value attribute of a container instance (`ecs.instance-type`,
/// `ecs.availability-zone`, capabilities, and custom attributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value; capability attributes have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The target type (`container-instance`) when ECS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The target id when ECS reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

impl Attribute {
    /// An attribute with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
            target_type: None,
            target_id: None,
        }
    }
}

/// A resource of a container instance (CPU, MEMORY, PORTS, PORTS_UDP, GPU, ...).
///
/// ECS sends the value in one of `integerValue`, `longValue`, `doubleValue` or
/// `stringSetValue` according to `type`; blox keeps them as ECS does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `CPU`, `MEMORY`, `PORTS`, `PORTS_UDP`, `GPU`, ...
    pub name: String,
    /// `INTEGER`, `LONG`, `DOUBLE` or `STRINGSET`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The value of an `INTEGER` resource.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub integer_value: Option<i64>,
    /// The value of a `LONG` resource.
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub long_value: Option<i64>,
    /// The value of a `DOUBLE` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub double_value: Option<f64>,
    /// The value of a `STRINGSET` resource (e.g. reserved ports).
    #[serde(
        default,
        deserialize_with = "lenient::null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub string_set_value: Vec<String>,
}

impl Resource {
    /// An `INTEGER` resource.
    pub fn integer(name: impl Into<String>, value: i64) -> Self {
        Resource {
            name: name.into(),
            kind: Some("INTEGER".into()),
            integer_value: Some(value),
            long_value: None,
            double_value: None,
            string_set_value: Vec::new(),
        }
    }

    /// A `STRINGSET` resource.
    pub fn string_set(name: impl Into<String>, values: Vec<String>) -> Self {
        Resource {
            name: name.into(),
            kind: Some("STRINGSET".into()),
            integer_value: None,
            long_value: None,
            double_value: None,
            string_set_value: values,
        }
    }

    /// The numeric value, whichever of integer/long/double holds it.
    pub fn number(&self) -> Option<i64> {
        self.integer_value
            .or(self.long_value)
            .or(self.double_value.map(|d| d as i64))
    }
}

/// Finds the numeric value of the resource `name` in a list.
pub fn resource_number(resources: &[Resource], name: &str) -> Option<i64> {
    resources.iter().find(|r| r.name == name)?.number()
}

/// The versions of the ECS agent and Docker on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The agent's git hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_hash: Option<String>,
    /// The agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The Docker version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
}
