//! The JSON shapes of responses and stream lines.
//!
//! Every item is `{"metadata": {"entityVersion": "EPOCH:SEQ"}, "entity": {..}}`
//! as in Blox v0.3, where `entityVersion` is the store revision of the
//! entity's last write (stream lines for deletes add `"deleted": true`).
//!
//! The entity is v0.3's model: its field names (`taskARN`, `clusterARN`,
//! `containerInstanceARN`, `taskDefinitionARN`, `containerARN`,
//! `EC2InstanceID`, `bindIP`) and resources as `{"name", "type", "value"}`
//! with the value as text, each field once. Fields v0.3 lacked are added
//! only where they carry information (ECS's `version`, `launchType`,
//! `registeredAt`, ... in ECS's camelCase; timestamps in RFC 3339). Fields
//! the spec requires but blox does not know (a Fargate task's
//! `containerInstanceARN`, an unknown `createdAt`) are sent as empty
//! strings, and `overrides` is always present.

use blox_core::model::{Arn, ContainerInstance, Entity, EntityKind, Resource, Task};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use crate::store::Revision;

/// `{"metadata": {...}, "entity": {...}}` for an entity.
pub(crate) fn item(entity: &Entity, revision: Revision, deleted: bool) -> Value {
    let body = match entity {
        Entity::Instance(i) => instance(i),
        Entity::Task(t) => task(t),
    };
    wrap(body, revision, deleted)
}

/// The item for a deleted entity of which the store kept no last state:
/// only the ARNs are known.
pub(crate) fn deleted_without_state(kind: EntityKind, arn: &Arn, revision: Revision) -> Value {
    let mut body = Map::new();
    let key = match kind {
        EntityKind::Instance => "containerInstanceARN",
        EntityKind::Task => "taskARN",
    };
    body.insert(key.into(), json!(arn));
    if let Some(cluster) = arn.cluster_arn() {
        body.insert("clusterARN".into(), json!(cluster));
    }
    wrap(Value::Object(body), revision, true)
}

/// `{"entityVersion", "deleted"?}`: an item's metadata, or a list's (never
/// deleted).
pub(crate) struct Metadata {
    /// The store revision.
    pub(crate) revision: Revision,
    /// Whether the item is a delete.
    pub(crate) deleted: bool,
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1 + usize::from(self.deleted)))?;
        m.serialize_entry("entityVersion", &self.revision)?;
        if self.deleted {
            m.serialize_entry("deleted", &true)?;
        }
        m.end()
    }
}

/// `{"metadata": {...}, "entity": {...}}`.
pub(crate) struct Wrapped<E> {
    /// The item's metadata.
    pub(crate) metadata: Metadata,
    /// The entity, in its v0.3 shape.
    pub(crate) entity: E,
}

impl<E: Serialize> Serialize for Wrapped<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("metadata", &self.metadata)?;
        m.serialize_entry("entity", &self.entity)?;
        m.end()
    }
}

/// Wraps an entity's JSON with its metadata.
pub(crate) fn wrap(entity: Value, revision: Revision, deleted: bool) -> Value {
    let metadata = Metadata { revision, deleted };
    serde_json::to_value(Wrapped { metadata, entity }).unwrap_or(Value::Null)
}

/// Moves `from` to `to` in an object when `from` is present.
fn rename(obj: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = obj.remove(from) {
        obj.insert(to.into(), v);
    }
}

/// Sets `key` to `default` when it is absent or null.
fn require(obj: &mut Map<String, Value>, key: &str, default: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.into(), default);
    }
}

fn to_object<T: serde::Serialize>(value: &T) -> Map<String, Value> {
    // The model serializes to a JSON object with string keys; anything else
    // would be a model bug, answered with an empty object rather than a panic.
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A container instance in the shape described by the module docs.
pub(crate) fn instance(i: &ContainerInstance) -> Value {
    let mut o = to_object(i);
    rename(&mut o, "clusterArn", "clusterARN");
    rename(&mut o, "containerInstanceArn", "containerInstanceARN");
    rename(&mut o, "ec2InstanceId", "EC2InstanceID");
    require(&mut o, "versionInfo", json!({}));
    o.insert(
        "registeredResources".into(),
        resources(&i.registered_resources),
    );
    o.insert(
        "remainingResources".into(),
        resources(&i.remaining_resources),
    );
    if let Some(Value::Array(attrs)) = o.get_mut("attributes") {
        for a in attrs.iter_mut().filter_map(Value::as_object_mut) {
            // v0.3 requires a value; capability attributes have none.
            require(a, "value", json!(""));
        }
    }
    Value::Object(o)
}

/// Resources as v0.3 wrote them: `{"name", "type", "value"}`, the value as
/// text (the typed value fields of ECS would repeat it).
fn resources(list: &[Resource]) -> Value {
    Value::Array(
        list.iter()
            .map(|r| {
                let (kind, value) = resource_value(r);
                json!({
                    "name": r.name,
                    "type": r.kind.as_deref().unwrap_or(kind),
                    "value": value,
                })
            })
            .collect(),
    )
}

/// The v0.3 `type` and string `value` of a resource: the number as text, or
/// a string set joined with commas.
fn resource_value(r: &Resource) -> (&'static str, String) {
    if let Some(v) = r.integer_value {
        ("INTEGER", v.to_string())
    } else if let Some(v) = r.long_value {
        ("LONG", v.to_string())
    } else if let Some(v) = r.double_value {
        ("DOUBLE", v.to_string())
    } else {
        ("STRINGSET", r.string_set_value.join(","))
    }
}

/// A task in the shape described by the module docs.
pub(crate) fn task(t: &Task) -> Value {
    match serde_json::to_value(super::v03::V03(t)) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::{
        Container, ContainerOverride, KeyValuePair, NetworkBinding, TaskOverride,
    };

    fn arn(s: &str) -> Arn {
        Arn::parse(s).unwrap()
    }

    /// A task of cluster "prod" with this task definition.
    fn prod_task(task_definition: &str) -> Task {
        Task::new(
            arn("arn:aws:ecs:us-east-1:123456789012:task/prod/abc"),
            arn("arn:aws:ecs:us-east-1:123456789012:cluster/prod"),
            task_definition,
        )
    }

    /// A container "web" with one port binding.
    fn web(container_arn: Option<&str>, binding: NetworkBinding) -> Container {
        Container {
            container_arn: container_arn.map(Into::into),
            name: "web".into(),
            last_status: None,
            exit_code: None,
            reason: None,
            image: None,
            network_bindings: vec![binding],
            cpu: None,
            memory: None,
        }
    }

    #[test]
    fn missing_and_null_fields_get_the_values_v03_requires() {
        let mut t = prod_task("web:3");
        t.containers.push(web(
            None,
            NetworkBinding {
                bind_ip: None,
                container_port: None,
                host_port: Some(3),
                protocol: None,
            },
        ));
        t.overrides = Some(TaskOverride {
            container_overrides: vec![ContainerOverride {
                environment: vec![
                    KeyValuePair {
                        name: None,
                        value: None,
                    },
                    KeyValuePair {
                        name: Some("A".into()),
                        value: Some("1".into()),
                    },
                ],
                ..ContainerOverride::default()
            }],
            ..TaskOverride::default()
        });
        let e = task(&t);
        assert_eq!(e["createdAt"], "");
        assert_eq!(e["containerInstanceARN"], "");
        assert!(
            e.get("containerInstanceArn").is_none(),
            "only the v0.3 name"
        );
        assert_eq!(e["taskDefinitionARN"], "web:3");
        let c = &e["containers"][0];
        assert_eq!(
            (&c["containerARN"], &c["lastStatus"]),
            (&json!(""), &json!(""))
        );
        assert_eq!(
            c["networkBindings"][0],
            json!({"bindIP": "", "containerPort": 0, "hostPort": 3})
        );
        let co = &e["overrides"]["containerOverrides"][0];
        assert_eq!(co["name"], "");
        assert_eq!(
            co["environment"],
            json!([{"name": "", "value": ""}, {"name": "A", "value": "1"}])
        );
        // Overrides present but empty still carry the list.
        t.overrides = Some(TaskOverride::default());
        assert_eq!(task(&t)["overrides"], json!({"containerOverrides": []}));
        // An entity with nothing to add is left alone: no stray keys.
        let e = task(&t);
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        for k in &keys {
            assert!(!e[*k].is_null(), "{k} is null");
        }
    }

    #[test]
    fn a_task_carries_each_field_once_under_its_v03_name() {
        let mut t = prod_task("arn:aws:ecs:us-east-1:123456789012:task-definition/web:3");
        t.version = Some(7);
        t.containers.push(web(
            Some("arn:aws:ecs:us-east-1:123456789012:container/x"),
            NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(8080),
                protocol: None,
            },
        ));
        let v = item(&Entity::from(t), Revision::new(5, 9), false);
        assert_eq!(v["metadata"]["entityVersion"], "5:9");
        assert!(v["metadata"].get("deleted").is_none());
        let e = &v["entity"];
        assert_eq!(
            e["taskARN"],
            "arn:aws:ecs:us-east-1:123456789012:task/prod/abc"
        );
        for ecs_spelling in ["taskArn", "clusterArn", "taskDefinitionArn"] {
            assert!(e.get(ecs_spelling).is_none(), "{ecs_spelling} in {e}");
        }
        assert_eq!(
            e["clusterARN"],
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
        );
        assert_eq!(e["version"], 7);
        assert_eq!(e["containerInstanceARN"], "");
        assert_eq!(e["overrides"]["containerOverrides"], json!([]));
        assert_eq!(
            e["containers"][0]["containerARN"],
            "arn:aws:ecs:us-east-1:123456789012:container/x"
        );
        assert!(e["containers"][0].get("containerArn").is_none());
        assert_eq!(
            e["containers"][0]["networkBindings"][0]["bindIP"],
            "0.0.0.0"
        );
    }

    #[test]
    fn resources_get_a_string_value() {
        let mut i = ContainerInstance::new(
            arn("arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1"),
            arn("arn:aws:ecs:us-east-1:123456789012:cluster/prod"),
        );
        i.registered_resources = vec![
            Resource::integer("CPU", 2048),
            Resource::string_set("PORTS", vec!["22".into(), "2376".into()]),
        ];
        let v = instance(&i);
        assert_eq!(
            v["registeredResources"][0],
            json!({"name": "CPU", "type": "INTEGER", "value": "2048"})
        );
        assert_eq!(v["registeredResources"][1]["value"], "22,2376");
        assert_eq!(v["registeredResources"][1]["type"], "STRINGSET");
        assert_eq!(v["versionInfo"], json!({}));
        assert_eq!(
            v["containerInstanceARN"],
            "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/i1"
        );
        for ecs_spelling in ["containerInstanceArn", "clusterArn"] {
            assert!(v.get(ecs_spelling).is_none(), "{ecs_spelling} in {v}");
        }
    }

    #[test]
    fn a_delete_without_last_state_still_names_the_entity_and_cluster() {
        let a = arn("arn:aws:ecs:us-east-1:123456789012:task/prod/abc");
        let v = deleted_without_state(EntityKind::Task, &a, Revision::new(1, 2));
        assert_eq!(v["metadata"]["deleted"], true);
        assert_eq!(v["entity"]["taskARN"], a.as_str());
        assert_eq!(
            v["entity"]["clusterARN"],
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod"
        );
    }
}
