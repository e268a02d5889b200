//! Start intents across the layout 1 → 2 migration, on a real etcd: a
//! layout-1 intent (one per instance and `startedBy`) is moved to a key of
//! its own and read by this build as one of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blox_sched::runner::{IntentRecord, intent_prefix};
use blox_state::store::StateStore;
use blox_state::store::etcd::layout::{LAYOUT_VERSION, MIGRATIONS, migrate};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;
use bytes::Bytes;

const V1_INTENT: &str = r#"{"cluster":"arn:aws:ecs:us-east-1:000000000000:cluster/c",
"instance":"arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1",
"task_definition":"web:1","started_by":"d-1","since":1000,"leader":"old"}"#;

#[tokio::test]
async fn a_layout_one_intent_is_moved_to_its_own_key_as_layout_two() {
    let server = EtcdServer::start().await.unwrap();
    let store = EtcdStore::connect(EtcdOptions {
        check_layout: false,
        ..EtcdOptions::new([server.endpoint()]).with_prefix("/mig")
    })
    .await
    .unwrap();
    store
        .client()
        .kv_client()
        .put("/mig/layout", r#"{"version":1}"#, None)
        .await
        .unwrap();
    let prefix = intent_prefix("daemon");
    let old_key = format!("{prefix}d-1/arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1");
    store
        .kv_put(&old_key, Bytes::from_static(V1_INTENT.as_bytes()), None)
        .await
        .unwrap();

    let report = migrate(&store, MIGRATIONS, LAYOUT_VERSION).await.unwrap();
    assert_eq!(report.to, LAYOUT_VERSION);
    assert!(report.steps_run.contains(&"1:intent-per-start".to_owned()));

    let items = store.kv_list(&prefix).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert!(
        !items[0].key[prefix.len()..].contains('/'),
        "{}",
        items[0].key
    );
    let record: IntentRecord = serde_json::from_slice(&items[0].value).unwrap();
    let v1: IntentRecord = serde_json::from_str(V1_INTENT).unwrap();
    assert_eq!(v1.layout, 1);
    assert_eq!(
        record,
        IntentRecord {
            layout: LAYOUT_VERSION,
            ..v1
        }
    );

    // Running the step again changes nothing.
    let step = MIGRATIONS
        .iter()
        .find(|s| s.name == "intent-per-start")
        .unwrap();
    (step.run)(&store).await.unwrap();
    let again = store.kv_list(&prefix).await.unwrap().items;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key, items[0].key);
    assert_eq!(again[0].revision, items[0].revision);
}
