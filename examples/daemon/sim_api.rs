//! The simulator's controls (with `--simulate`): change a simulated
//! instance, register a task definition of a given size.
//!
//! Bodies are JSON whatever their content type, as on the environment
//! routes, so `curl -d '{...}'` (which says form-encoded) works.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use blox_core::model::{Arn, InstanceStatus};
use blox_core::testing::FakeEcs;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::server::error;

/// `PUT /v1/simulator/instances/{arn}/state` and
/// `POST /v1/simulator/task-definitions`.
pub(crate) fn router(ecs: FakeEcs) -> Router {
    Router::new()
        .route(
            "/v1/simulator/instances/{*rest}",
            put(set_sim_instance_state),
        )
        .route(
            "/v1/simulator/task-definitions",
            post(register_task_definition),
        )
        .with_state(ecs)
}

/// A JSON request body, or the error status and message that say what is
/// wrong with it.
fn json_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, (StatusCode, String)> {
    let bytes = body.map_err(|e| (e.status(), format!("invalid body: {}", e.body_text())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid body: {e}")))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateChange {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    agent_connected: Option<bool>,
}

/// `PUT /v1/simulator/instances/{arn}/state` with `{"status": "DRAINING"}`
/// (or `ACTIVE`) and/or `{"agentConnected": false}` (or `true`).
async fn set_sim_instance_state(
    State(ecs): State<FakeEcs>,
    UrlPath(rest): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let change: StateChange = match json_body(body) {
        Ok(c) => c,
        Err((status, message)) => return error(status, message),
    };
    let Some(arn) = rest.strip_suffix("/state") else {
        return error(
            StatusCode::NOT_FOUND,
            "expected /v1/simulator/instances/{arn}/state",
        );
    };
    let arn = match Arn::parse(arn) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let status = match change.status.as_deref().map(InstanceStatus::parse_known) {
        None => None,
        Some(Some(s @ (InstanceStatus::Draining | InstanceStatus::Active))) => Some(s),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("status must be ACTIVE or DRAINING, not {:?}", change.status),
            );
        }
    };
    if status.is_none() && change.agent_connected.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "give status (ACTIVE or DRAINING) and/or agentConnected (true or false)",
        );
    }
    let mut last = None;
    if let Some(s) = &status {
        let changed = match s {
            InstanceStatus::Draining => ecs.drain(&arn),
            _ => ecs.activate(&arn),
        };
        match changed {
            Ok(i) => last = Some(i),
            Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
        }
    }
    if let Some(connected) = change.agent_connected {
        let changed = if connected {
            ecs.reconnect_agent(&arn)
        } else {
            ecs.disconnect_agent(&arn)
        };
        match changed {
            Ok(i) => last = Some(i),
            Err(e) => return error(StatusCode::NOT_FOUND, e.to_string()),
        }
    }
    match last {
        Some(i) => Json(json!({
            "containerInstanceArn": i.container_instance_arn,
            "status": i.status,
            "agentConnected": i.agent_connected,
        }))
        .into_response(),
        None => error(StatusCode::BAD_REQUEST, "nothing to change"),
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewTaskDefinition {
    family: String,
    cpu: i64,
    memory: i64,
}

/// `POST /v1/simulator/task-definitions` with `{"family", "cpu", "memory"}`:
/// registers the family's next revision with that size (task definitions
/// first used by a deployment are registered small; a large one shows how
/// placement failures look).
async fn register_task_definition(
    State(ecs): State<FakeEcs>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: NewTaskDefinition = match json_body(body) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    if req.cpu <= 0 || req.memory <= 0 {
        return error(StatusCode::BAD_REQUEST, "cpu and memory must be positive");
    }
    match ecs.register_task_definition(&req.family, req.cpu, req.memory) {
        Ok(td) => Json(json!({
            "taskDefinitionArn": td.task_definition_arn,
            "family": td.family,
            "revision": td.revision,
            "cpu": req.cpu,
            "memory": req.memory,
        }))
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A request as `curl -d` sends it: form-encoded content type.
    fn curl_d(method: &str, uri: &str, body: &str) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn curl_d_bodies_are_read_as_json_whatever_their_content_type() {
        let ecs = FakeEcs::simulation(Default::default(), "sim", 1).unwrap();
        let arn = ecs.instance_arns("sim").unwrap()[0].clone();
        let app = router(ecs.clone());
        let drain = curl_d(
            "PUT",
            &format!("/v1/simulator/instances/{arn}/state"),
            r#"{"status":"DRAINING"}"#,
        );
        let r = app.clone().oneshot(drain).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(ecs.instance(&arn).unwrap().status, InstanceStatus::Draining);
        let register = curl_d(
            "POST",
            "/v1/simulator/task-definitions",
            r#"{"family":"big","cpu":4096,"memory":512}"#,
        );
        let r = app.oneshot(register).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}
