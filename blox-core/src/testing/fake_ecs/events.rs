//! ECS events in the EventBridge envelope, as ECS delivers them to SQS.

use serde::Serialize;

use crate::event::{INSTANCE_STATE_CHANGE, TASK_STATE_CHANGE};
use crate::model::{Arn, ContainerInstance, Task, Timestamp};

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    version: &'static str,
    id: &'a str,
    #[serde(rename = "detail-type")]
    detail_type: &'static str,
    source: &'static str,
    account: &'a str,
    time: Timestamp,
    region: &'a str,
    resources: [&'a Arn; 1],
    detail: &'a T,
}

/// Where and when an event is emitted.
pub(crate) struct Origin<'a> {
    /// The event id.
    pub(crate) id: &'a str,
    /// The account.
    pub(crate) account: &'a str,
    /// The region.
    pub(crate) region: &'a str,
    /// The emission time.
    pub(crate) time: Timestamp,
}

fn envelope<T: Serialize>(
    origin: &Origin<'_>,
    detail_type: &'static str,
    resource: &Arn,
    detail: &T,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Envelope {
        version: "0",
        id: origin.id,
        detail_type,
        source: "aws.ecs",
        account: origin.account,
        time: origin.time,
        region: origin.region,
        resources: [resource],
        detail,
    })
}

/// An `ECS Task State Change` event carrying `task`.
pub(crate) fn task_event(origin: &Origin<'_>, task: &Task) -> Result<String, serde_json::Error> {
    envelope(origin, TASK_STATE_CHANGE, &task.task_arn, task)
}

/// An `ECS Container Instance State Change` event carrying `instance`.
pub(crate) fn instance_event(
    origin: &Origin<'_>,
    instance: &ContainerInstance,
) -> Result<String, serde_json::Error> {
    envelope(
        origin,
        INSTANCE_STATE_CHANGE,
        &instance.container_instance_arn,
        instance,
    )
}
