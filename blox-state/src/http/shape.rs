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
//!
//! Both kinds are written in one pass, straight to bytes, in the model's
//! field order under v0.3's names: tasks through [`V03`], instances through
//! [`InstanceV03`]. A cached entity is encoded once per revision
//! with its item's metadata ([`write_entry`]): lists and gets copy its
//! bytes.

use blox_core::model::{
    Arn, Attribute, ContainerInstance, Entity, EntityKind, Resource, Task, VersionInfo,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};

use super::v03::V03;
use crate::cache::Entry;
use crate::store::Revision;

/// An entity served by the API, written in its v0.3 shape.
pub(crate) trait Shape {
    /// Serializes the entity in its v0.3 shape.
    fn shape<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
}

impl Shape for Task {
    fn shape<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        V03(self).serialize(s)
    }
}

impl Shape for ContainerInstance {
    fn shape<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        InstanceV03(self).serialize(s)
    }
}

impl Shape for Entity {
    fn shape<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entity::Instance(i) => i.shape(s),
            Entity::Task(t) => t.shape(s),
        }
    }
}

/// An entity as a `Serialize`, in its v0.3 shape.
pub(crate) struct Shaped<'a, T: ?Sized>(pub(crate) &'a T);

impl<T: Shape + ?Sized> Serialize for Shaped<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.shape(s)
    }
}

/// Appends an entity's v0.3 JSON (the `entity` of an item) to `out`.
fn write_entity<T: Shape>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    // The model always serializes (string keys, no fallible types); were it
    // not to, the entity would be `{}` rather than a broken body.
    if serde_json::to_writer(&mut *out, &Shaped(value)).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
}

/// An entity's v0.3 JSON (the `entity` of the item [`write_entry`] keeps).
#[cfg(test)]
pub(crate) fn encode<T: Shape>(value: &T) -> bytes::Bytes {
    let mut out = Vec::new();
    write_entity(&mut out, value);
    bytes::Bytes::from(out.into_boxed_slice())
}

/// Appends a cached entity's item to `out`: the item's JSON (its metadata
/// and its entity) copied, or, for the first request that serves this
/// revision of a typed entry, encoded in place and kept (one copy of what
/// was written). The entry belongs to one revision, so its metadata is as
/// fixed as its entity.
pub(crate) fn write_entry<T: Shape>(out: &mut Vec<u8>, entry: &Entry<T>) {
    entry.write_item(out, |value, out| {
        write_item_of(out, value, entry.revision, false);
    });
}

/// Appends an item, `{"metadata": {...}, "entity": ENTITY}`, to `out`:
/// the bytes [`Wrapped`] serializes to, with the entity's already encoded.
#[cfg(test)]
pub(crate) fn write_item(out: &mut Vec<u8>, revision: Revision, deleted: bool, entity: &[u8]) {
    write_item_with(out, revision, deleted, |out| out.extend_from_slice(entity));
}

/// Appends an item whose entity `entity` writes.
fn write_item_with(
    out: &mut Vec<u8>,
    revision: Revision,
    deleted: bool,
    entity: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b"{\"metadata\":");
    write_metadata(out, revision, deleted);
    out.extend_from_slice(b",\"entity\":");
    entity(out);
    out.push(b'}');
}

/// Appends `{"entityVersion", "deleted"?}` to `out`.
pub(crate) fn write_metadata(out: &mut Vec<u8>, revision: Revision, deleted: bool) {
    // Writing to a Vec cannot fail, nor can serializing a revision.
    let _ = serde_json::to_writer(out, &Metadata { revision, deleted });
}

/// Appends `{"metadata": {...}, "entity": {...}}` for an entity to `out`,
/// encoded straight to bytes (a stream line's item).
pub(crate) fn write_item_of<T: Shape>(
    out: &mut Vec<u8>,
    value: &T,
    revision: Revision,
    deleted: bool,
) {
    write_item_with(out, revision, deleted, |out| write_entity(out, value));
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
    let metadata = Metadata {
        revision,
        deleted: true,
    };
    let entity = Value::Object(body);
    serde_json::to_value(Wrapped { metadata, entity }).unwrap_or(Value::Null)
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

/// A container instance in the shape described by the module docs, in the
/// model's field order under v0.3's names: `containerInstanceARN`,
/// `clusterARN`, `EC2InstanceID`; `versionInfo` (`{}` when unknown), each
/// attribute's `value` (`""` for a capability) and resources as
/// `{"name", "type", "value"}` always present.
pub(crate) struct InstanceV03<'a>(pub(crate) &'a ContainerInstance);

/// Writes `key` when the value is known (the model leaves out what is not).
fn entry_if<M: SerializeMap, T: Serialize>(
    m: &mut M,
    key: &'static str,
    value: Option<&T>,
) -> Result<(), M::Error> {
    match value {
        Some(v) => m.serialize_entry(key, v),
        None => Ok(()),
    }
}

impl Serialize for InstanceV03<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Destructured whole, so that a field added to the model does not
        // compile until it has its place here.
        let ContainerInstance {
            container_instance_arn,
            cluster_arn,
            ec2_instance_id,
            status,
            status_reason,
            agent_connected,
            agent_update_status,
            attributes,
            registered_resources,
            remaining_resources,
            version_info,
            running_tasks_count,
            pending_tasks_count,
            capacity_provider_name,
            version,
            registered_at,
            updated_at,
        } = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("containerInstanceARN", container_instance_arn)?;
        m.serialize_entry("clusterARN", cluster_arn)?;
        entry_if(&mut m, "EC2InstanceID", ec2_instance_id.as_ref())?;
        m.serialize_entry("status", status)?;
        entry_if(&mut m, "statusReason", status_reason.as_ref())?;
        m.serialize_entry("agentConnected", agent_connected)?;
        entry_if(&mut m, "agentUpdateStatus", agent_update_status.as_ref())?;
        m.serialize_entry("attributes", &Each(attributes, AttributeV03))?;
        m.serialize_entry(
            "registeredResources",
            &Each(registered_resources, ResourceV03),
        )?;
        m.serialize_entry(
            "remainingResources",
            &Each(remaining_resources, ResourceV03),
        )?;
        let no_version = VersionInfo::default();
        m.serialize_entry("versionInfo", version_info.as_ref().unwrap_or(&no_version))?;
        entry_if(&mut m, "runningTasksCount", running_tasks_count.as_ref())?;
        entry_if(&mut m, "pendingTasksCount", pending_tasks_count.as_ref())?;
        entry_if(
            &mut m,
            "capacityProviderName",
            capacity_provider_name.as_ref(),
        )?;
        entry_if(&mut m, "version", version.as_ref())?;
        entry_if(&mut m, "registeredAt", registered_at.as_ref())?;
        entry_if(&mut m, "updatedAt", updated_at.as_ref())?;
        m.end()
    }
}

/// A list whose elements are written by a wrapper (`W`).
struct Each<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for Each<'a, T, W> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(self.1))
    }
}

/// An attribute as v0.3 requires it: with a value (`""` for capability
/// attributes, which have none).
struct AttributeV03<'a>(&'a Attribute);

impl Serialize for AttributeV03<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Attribute {
            name,
            value,
            target_type,
            target_id,
        } = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", name)?;
        m.serialize_entry("value", value.as_deref().unwrap_or(""))?;
        entry_if(&mut m, "targetType", target_type.as_ref())?;
        entry_if(&mut m, "targetId", target_id.as_ref())?;
        m.end()
    }
}

/// A resource as v0.3 wrote it: `{"name", "type", "value"}`, the value as
/// text (the typed value fields of ECS would repeat it).
struct ResourceV03<'a>(&'a Resource);

impl Serialize for ResourceV03<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let (kind, value) = resource_value(r);
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("name", &r.name)?;
        m.serialize_entry("type", r.kind.as_deref().unwrap_or(kind))?;
        m.serialize_entry("value", &value)?;
        m.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream line's item, as the client reads it.
    fn item(entity: &Entity, revision: Revision, deleted: bool) -> Value {
        let mut out = Vec::new();
        write_item_of(&mut out, entity, revision, deleted);
        serde_json::from_slice(&out).unwrap()
    }
    use crate::http::fixtures::{
        bare_instance, bare_task, full_instance, full_task, old_instance, old_task,
    };
    use blox_core::model::{
        Container, ContainerOverride, KeyValuePair, NetworkBinding, TaskOverride,
    };

    /// A task's encoding, parsed.
    fn task(t: &Task) -> Value {
        serde_json::from_slice(&encode(t)).unwrap()
    }

    /// An instance's encoding, parsed.
    fn instance(i: &ContainerInstance) -> Value {
        serde_json::from_slice(&encode(i)).unwrap()
    }

    #[test]
    fn entities_encode_to_what_the_api_served_before() {
        for t in [full_task(1), bare_task(2)] {
            assert_eq!(task(&t), old_task(&t));
            assert_eq!(
                encode(&t),
                serde_json::to_vec(&V03(&t)).unwrap(),
                "the bytes lists wrote"
            );
        }
        for i in [full_instance(1), bare_instance(2)] {
            assert_eq!(instance(&i), old_instance(&i));
        }
    }

    #[test]
    fn an_instance_is_written_in_model_order_under_v03_names() {
        let bytes = encode(&full_instance(1));
        let text = std::str::from_utf8(&bytes).unwrap();
        let keys = [
            "containerInstanceARN",
            "clusterARN",
            "EC2InstanceID",
            "status",
            "statusReason",
            "agentConnected",
            "agentUpdateStatus",
            "attributes",
            "registeredResources",
            "remainingResources",
            "versionInfo",
            "runningTasksCount",
            "pendingTasksCount",
            "capacityProviderName",
            "version",
            "registeredAt",
            "updatedAt",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.starts_with("{\"containerInstanceARN\":"), "{text}");
    }

    #[test]
    fn an_item_is_written_as_its_value_serializes() {
        let t = full_task(3);
        let mut out = Vec::new();
        write_item(&mut out, Revision::new(2, 5), true, &encode(&t));
        let metadata = Metadata {
            revision: Revision::new(2, 5),
            deleted: true,
        };
        let whole = Wrapped {
            metadata,
            entity: V03(&t),
        };
        assert_eq!(out, serde_json::to_vec(&whole).unwrap());
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, item(&Entity::from(t), Revision::new(2, 5), true));
    }

    #[test]
    fn an_entry_is_encoded_once_per_revision() {
        let entry = Entry::new(std::sync::Arc::new(full_task(4)), Revision::new(1, 1));
        let copy = entry.clone();
        let mut first = Vec::new();
        write_entry(&mut first, &entry);
        let mut expected = Vec::new();
        write_item(
            &mut expected,
            Revision::new(1, 1),
            false,
            &encode(&full_task(4)),
        );
        assert_eq!(first, expected);
        let mut calls = 0;
        let mut kept = Vec::new();
        copy.write_item(&mut kept, |_, _| calls += 1);
        assert_eq!(calls, 0, "the clone shares the encoding");
        assert_eq!(kept, expected);
        let mut again = Vec::new();
        write_entry(&mut again, &copy);
        assert_eq!(again, expected, "copied");
    }

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
