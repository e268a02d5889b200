//! The deployment routes over real HTTP, and v0.3's flow: create an
//! environment, read its token, post a deployment with it, see it listed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http_sched_support;

use http_sched_support::Server;
use serde_json::Value;

fn token(env: &Value) -> String {
    env["deploymentToken"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_v03_flow_deploys_with_the_environment_token() {
    let s = Server::start().await;
    let r = s
        .post(
            "/v1/environments",
            &http_sched_support::create_body("logs", "prod", "logs:1"),
        )
        .await;
    assert_eq!(r.status, 200);
    // Creating does not deploy.
    let listed = s.get("/v1/environments/logs/deployments").await;
    assert_eq!(listed.status, 200);
    assert!(listed.json()["items"].as_array().unwrap().is_empty());

    let env = s.get("/v1/environments/logs").await.json();
    let r = s
        .post_raw(
            &format!(
                "/v1/environments/logs/deployments?deploymentToken={}",
                token(&env)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let dep = r.json();
    assert_eq!(dep["environmentName"], "logs");
    assert_eq!(dep["taskDefinition"], "logs:1");
    assert_eq!(dep["status"], "pending");
    assert_eq!(dep["failedInstances"], serde_json::json!([]));
    assert_eq!(dep["progress"], serde_json::json!({"done": 0, "total": 0}));
    assert_eq!(dep["sequence"], 1);
    let id = dep["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);

    let listed = s.get("/v1/environments/logs/deployments").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0], dep);
    let got = s
        .get(&format!("/v1/environments/logs/deployments/{id}"))
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), dep);
    // The environment names its active deployment and has a fresh token.
    let after = s.get("/v1/environments/logs").await.json();
    assert_eq!(after["activeDeployment"], id);
    assert_ne!(token(&after), token(&env));
}

#[tokio::test]
async fn a_used_or_wrong_token_is_400_and_deploys_nothing() {
    let s = Server::start().await;
    let env = s.create_env("web", "prod", "web:1").await;
    let path = format!(
        "/v1/environments/web/deployments?deploymentToken={}",
        token(&env)
    );
    assert_eq!(s.post_raw(&path, None).await.status, 200);
    let m = s.post_raw(&path, None).await.error_message(400);
    assert!(m.contains("deploymentToken"), "{m}");
    let m = s
        .post_raw(
            "/v1/environments/web/deployments?deploymentToken=bogus",
            None,
        )
        .await
        .error_message(400);
    assert!(m.contains("not current"), "{m}");
    let m = s
        .post_raw("/v1/environments/web/deployments", None)
        .await
        .error_message(400);
    assert!(m.contains("\"deploymentToken\" is required"), "{m}");
    let m = s
        .post_raw(
            "/v1/environments/web/deployments?deploymentToken=a&deploymentToken=b",
            None,
        )
        .await
        .error_message(400);
    assert!(m.contains("more than once"), "{m}");
    let listed = s.get("/v1/environments/web/deployments").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn put_issues_a_new_token_and_the_old_one_is_rejected() {
    let s = Server::start().await;
    let env = s.create_env("web", "prod", "web:1").await;
    let old = token(&env);
    let updated = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "web:2"}"#)
        .await
        .json();
    let new = token(&updated);
    assert_ne!(new, old);
    let m = s
        .post_raw(
            &format!("/v1/environments/web/deployments?deploymentToken={old}"),
            None,
        )
        .await
        .error_message(400);
    assert!(m.contains("not current"), "{m}");
    let r = s
        .post_raw(
            &format!("/v1/environments/web/deployments?deploymentToken={new}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["taskDefinition"], "web:2");
}

#[tokio::test]
async fn redeploying_lists_deployments_oldest_first_and_pages() {
    let s = Server::start().await;
    let first = s.create_and_deploy("web", "prod", "web:1").await;
    let env = s
        .put_raw("/v1/environments/web", r#"{"taskDefinition": "web:2"}"#)
        .await
        .json();
    let second = s
        .post_raw(
            &format!(
                "/v1/environments/web/deployments?deploymentToken={}",
                token(&env)
            ),
            None,
        )
        .await
        .json();
    assert_eq!(second["sequence"], 2);
    let all = s.get("/v1/environments/web/deployments").await.json();
    let ids: Vec<&Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&first["id"], &second["id"]]);
    assert_eq!(all["items"][0]["supersededBy"], second["id"]);

    let page = s
        .get("/v1/environments/web/deployments?maxResults=1")
        .await
        .json();
    assert_eq!(page["items"][0]["id"], first["id"]);
    let next = page["nextToken"].as_str().unwrap();
    let page = s
        .get(&format!(
            "/v1/environments/web/deployments?maxResults=1&nextToken={next}"
        ))
        .await
        .json();
    assert_eq!(page["items"][0]["id"], second["id"]);
    assert!(page.get("nextToken").is_none());
}

#[tokio::test]
async fn unknown_deployments_and_bad_queries_are_4xx_with_v03_text() {
    let s = Server::start().await;
    s.create_and_deploy("web", "prod", "web:1").await;
    let m = s
        .get("/v1/environments/web/deployments/00000000-0000-4000-8000-000000000000")
        .await
        .error_message(404);
    assert_eq!(
        m,
        "Deployment 00000000-0000-4000-8000-000000000000 does not exist for environment web"
    );
    s.get("/v1/environments/web/deployments/not%20an%20id")
        .await
        .error_message(404);
    let m = s
        .get("/v1/environments/nope/deployments/00000000-0000-4000-8000-000000000000")
        .await
        .error_message(404);
    assert_eq!(m, "Environment nope does not exist");
    let m = s
        .get("/v1/environments/web/deployments?status=running")
        .await
        .error_message(400);
    assert!(
        m.starts_with("At least one of the filters provided is not supported"),
        "{m}"
    );
    // v0.3's generated clients send the path's deploymentToken when listing.
    let r = s
        .get("/v1/environments/web/deployments?deploymentToken=any")
        .await;
    assert_eq!(r.status, 200);
    let m = s
        .get("/v1/environments/web/deployments?nextToken=q")
        .await
        .error_message(400);
    assert!(m.contains("nextToken"), "{m}");
}
