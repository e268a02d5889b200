//! The CloudWatch Events / EventBridge envelope of ECS events.
//!
//! ECS publishes `ECS Task State Change` and `ECS Container Instance State
//! Change` events whose `detail` is the full task or container instance;
//! those become [`EcsEvent::Task`] and [`EcsEvent::Instance`]. Every other
//! detail-type (service actions, deployment state changes, anything AWS adds
//! later) is recognised as [`EcsEvent::Ignored`], never an error.
//!
//! Bodies delivered through SNS (`{"Type":"Notification","Message":"..."}`)
//! are unwrapped first, so a queue subscribed to a topic works too.

use serde::Deserialize;

use crate::model::{ContainerInstance, Task, Timestamp};

/// The detail-type of task state changes.
pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
/// The detail-type of container instance state changes.
pub const INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";

/// A parsed ECS event.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEvent {
    /// The event id from the envelope.
    pub id: String,
    /// When the event was emitted.
    pub time: Option<Timestamp>,
    /// The account that emitted it.
    pub account: Option<String>,
    /// The region it was emitted in.
    pub region: Option<String>,
    /// What it carries.
    pub event: EcsEvent,
}

/// What an ECS event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum EcsEvent {
    /// A task's new state.
    Task(Box<Task>),
    /// A container instance's new state.
    Instance(Box<ContainerInstance>),
    /// A recognised event of a detail-type blox does not apply.
    Ignored {
        /// The event's detail-type.
        detail_type: String,
    },
}

/// Why a message is not an ECS event blox can use.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON at all.
    #[error("event body is not valid JSON at line {line}, column {column}: {message}")]
    NotJson {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// The JSON does not have the shape of an ECS event.
    #[error("invalid ECS event at `{path}`: {message}")]
    Invalid {
        /// A JSONPath-like location of the problem (`detail.containers[0].name`).
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// The envelope is not from ECS.
    #[error("event source is {source_name:?}, expected \"aws.ecs\"")]
    NotEcs {
        /// The envelope's `source`.
        source_name: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    /// `Notification` when the body is an SNS envelope.
    #[serde(rename = "Type", default)]
    sns_type: Option<String>,
    /// The wrapped body of an SNS envelope.
    #[serde(rename = "Message", default)]
    sns_message: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    time: Option<Timestamp>,
    #[serde(default)]
    detail: Option<Box<serde_json::value::RawValue>>,
}

fn json_error(e: &serde_json::Error, path: &str) -> EventError {
    if e.is_syntax() || e.is_eof() {
        EventError::NotJson {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    } else {
        EventError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

fn path_error(prefix: &str, e: serde_path_to_error::Error<serde_json::Error>) -> EventError {
    let inner_path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return json_error(&inner, prefix);
    }
    let path = if inner_path == "." || inner_path.is_empty() {
        prefix.to_owned()
    } else if prefix.is_empty() {
        inner_path
    } else {
        format!("{prefix}.{inner_path}")
    };
    EventError::Invalid {
        path: if path.is_empty() { "$".into() } else { path },
        message: inner.to_string(),
    }
}

fn missing(field: &str) -> EventError {
    EventError::Invalid {
        path: field.to_owned(),
        message: format!("missing field `{field}`"),
    }
}

fn parse_detail<T: serde::de::DeserializeOwned>(
    raw: &serde_json::value::RawValue,
) -> Result<T, EventError> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| path_error("detail", e))
}

/// Parses a message body into an ECS event.
///
/// ```
/// use blox_core::event::{parse_event, EcsEvent};
/// let body = r#"{"version":"0","id":"1","detail-type":"ECS Service Action",
///                "source":"aws.ecs","detail":{"eventName":"SERVICE_STEADY_STATE"}}"#;
/// let parsed = parse_event(body.as_bytes()).unwrap();
/// assert!(matches!(parsed.event, EcsEvent::Ignored { .. }));
/// assert!(parse_event(b"{not json").is_err());
/// ```
pub fn parse_event(body: &[u8]) -> Result<ParsedEvent, EventError> {
    let text = std::str::from_utf8(body).map_err(|e| EventError::Invalid {
        path: "$".into(),
        message: format!("body is not UTF-8: {e}"),
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let env: Envelope = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error("", e))?;
    de.end().map_err(|e| json_error(&e, "$"))?;
    if env.sns_type.as_deref() == Some("Notification") {
        let inner = env.sns_message.ok_or_else(|| missing("Message"))?;
        return parse_event(inner.as_bytes());
    }
    let source = env.source.ok_or_else(|| missing("source"))?;
    if source != "aws.ecs" {
        return Err(EventError::NotEcs {
            source_name: source.chars().take(100).collect(),
        });
    }
    let detail_type = env.detail_type.ok_or_else(|| missing("detail-type"))?;
    let detail = || env.detail.as_deref().ok_or_else(|| missing("detail"));
    let event = match detail_type.as_str() {
        TASK_STATE_CHANGE => EcsEvent::Task(Box::new(parse_detail(detail()?)?)),
        INSTANCE_STATE_CHANGE => EcsEvent::Instance(Box::new(parse_detail(detail()?)?)),
        other => EcsEvent::Ignored {
            detail_type: other.chars().take(200).collect(),
        },
    };
    Ok(ParsedEvent {
        id: env.id.unwrap_or_default(),
        time: env.time,
        account: env.account,
        region: env.region,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_event(detail: &str) -> String {
        format!(
            r#"{{"version":"0","id":"e1","detail-type":"ECS Task State Change","source":"aws.ecs",
               "account":"1","time":"2020-01-23T17:57:58Z","region":"us-east-1","resources":[],
               "detail":{detail}}}"#
        )
    }

    const MIN_TASK: &str = r#"{"taskArn":"arn:aws:ecs:us-east-1:1:task/c/t","clusterArn":"arn:aws:ecs:us-east-1:1:cluster/c",
        "lastStatus":"RUNNING","desiredStatus":"RUNNING","version":"7"}"#;

    #[test]
    fn minimal_task_event_parses_with_string_version() {
        let ev = parse_event(task_event(MIN_TASK).as_bytes()).unwrap();
        let EcsEvent::Task(t) = ev.event else {
            panic!("not a task")
        };
        assert_eq!(t.version, Some(7));
        assert_eq!(ev.id, "e1");
    }

    #[test]
    fn errors_name_the_path_of_the_bad_field() {
        let bad = MIN_TASK.replace(r#""version":"7""#, r#""version":"seven""#);
        let err = parse_event(task_event(&bad).as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("detail.version"), "{msg}");
    }

    #[test]
    fn a_bad_arn_is_reported_with_its_path() {
        let bad = MIN_TASK.replace("arn:aws:ecs:us-east-1:1:task/c/t", "task-123");
        let err = parse_event(task_event(&bad).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("detail.taskArn"), "{err}");
    }

    #[test]
    fn missing_detail_is_an_error_for_entity_events_only() {
        let body = r#"{"detail-type":"ECS Task State Change","source":"aws.ecs"}"#;
        assert!(
            parse_event(body.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("detail")
        );
        let body = r#"{"detail-type":"Something New","source":"aws.ecs"}"#;
        assert!(matches!(
            parse_event(body.as_bytes()).unwrap().event,
            EcsEvent::Ignored { .. }
        ));
    }

    #[test]
    fn non_ecs_sources_are_rejected() {
        let body = r#"{"detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
        assert!(matches!(
            parse_event(body.as_bytes()),
            Err(EventError::NotEcs { .. })
        ));
    }

    #[test]
    fn sns_wrapped_events_are_unwrapped() {
        let inner = task_event(MIN_TASK);
        let body = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner})
            .to_string();
        let ev = parse_event(body.as_bytes()).unwrap();
        assert!(matches!(ev.event, EcsEvent::Task(_)));
    }

    #[test]
    fn syntax_errors_report_line_and_column() {
        let err = parse_event(b"{\n  \"a\": }").unwrap_err();
        assert!(
            matches!(err, EventError::NotJson { line: 2, .. }),
            "{err:?}"
        );
    }
}
