//! Packed entries: tasks held as their compressed v0.3 item read back
//! exactly, serve the same bytes, and keep plain copies within the budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use blox_core::event::{EcsEvent, parse_event};
use blox_core::model::{Arn, Task};

use super::*;
use crate::http::fixtures::full_task;
use crate::http::shape::{write_entry, write_item_of};
use crate::store::Versioned;

fn rev(seq: u64) -> Revision {
    Revision::new(3, seq)
}

fn put(w: &mut CacheWriter, t: Task, seq: u64) -> Arc<Task> {
    let t = Arc::new(t);
    w.apply(&WatchEvent::Put(Versioned {
        entity: Entity::Task(Arc::clone(&t)),
        revision: rev(seq),
    }));
    t
}

fn held(cache: &Cache, t: &Task) -> Entry<Task> {
    cache.get_task(t.task_arn.as_str()).expect("cached")
}

/// The item the API wrote for a task before entries were packed.
fn item_of(t: &Task, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write_item_of(&mut out, t, rev(seq), false);
    out
}

fn served(e: &Entry<Task>) -> Vec<u8> {
    let mut out = b"[".to_vec();
    write_entry(&mut out, e);
    out.remove(0);
    out
}

#[test]
fn a_task_as_ecs_reports_it_is_held_packed_and_reads_back_exactly() {
    let (cache, mut w) = cache();
    let t = full_task(1);
    put(&mut w, t.clone(), 1);
    let e = held(&cache, &t);
    assert!(e.is_packed());
    assert!(e.typed().is_none());
    assert_eq!(*e.value(), t);
    assert_eq!(e.revision, rev(1));
}

#[test]
fn a_recorded_ecs_task_event_is_held_packed() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/ecs-events/task_state_change.json"
    );
    let parsed = parse_event(&std::fs::read(path).unwrap()).unwrap();
    let EcsEvent::Task(t) = parsed.event else {
        panic!("a task event")
    };
    let (cache, mut w) = cache();
    put(&mut w, (*t).clone(), 1);
    let e = held(&cache, &t);
    assert!(e.is_packed(), "{t:?}");
    assert_eq!(*e.value(), *t);
    assert_eq!(served(&e), item_of(&t, 1));
}

#[test]
fn a_task_whose_item_does_not_read_back_stays_typed_and_shared() {
    // No overrides: v0.3 writes `{"containerOverrides": []}`, which reads
    // back as empty overrides, not as none.
    let mut t = full_task(2);
    t.overrides = None;
    let (cache, mut w) = cache();
    let shared = put(&mut w, t.clone(), 1);
    let e = held(&cache, &t);
    assert!(!e.is_packed());
    assert!(Arc::ptr_eq(&e.value(), &shared));
    assert_eq!(served(&e), item_of(&t, 1));
}

/// Every field of the model left out or emptied in turn: whatever form the
/// cache picks, the task reads back as it was written and is served as the
/// API encoded it.
#[test]
fn every_variant_of_a_task_reads_back_and_serves_exactly() {
    let base = full_task(3);
    let mut variants: Vec<(&str, Task)> = vec![("full", base.clone())];
    let mut with = |name: &'static str, f: fn(&mut Task)| {
        let mut t = base.clone();
        f(&mut t);
        variants.push((name, t));
    };
    with("fargate", |t| t.container_instance_arn = None);
    with("no created_at", |t| t.created_at = None);
    with("no containers", |t| t.containers.clear());
    with("no overrides", |t| t.overrides = None);
    with("empty overrides", |t| {
        t.overrides = Some(blox_core::model::TaskOverride::default())
    });
    with("unnamed override", |t| {
        if let Some(o) = t.overrides.as_mut() {
            o.container_overrides[0].name = None;
        }
    });
    with("named empty override", |t| {
        if let Some(o) = t.overrides.as_mut() {
            o.container_overrides[0].name = Some(String::new());
        }
    });
    with("no container arn", |t| t.containers[0].container_arn = None);
    with("empty container arn", |t| {
        t.containers[0].container_arn = Some(String::new())
    });
    with("no container status", |t| {
        t.containers[0].last_status = None
    });
    with("no binding ports", |t| {
        let b = &mut t.containers[0].network_bindings[0];
        b.container_port = None;
        b.host_port = None;
        b.bind_ip = None;
    });
    with("zero binding ports", |t| {
        let b = &mut t.containers[0].network_bindings[0];
        b.container_port = Some(0);
        b.host_port = Some(0);
    });
    with("unnamed variable", |t| {
        if let Some(o) = t.overrides.as_mut() {
            o.container_overrides[0].environment[0].name = None;
            o.container_overrides[0].environment[0].value = Some(String::new());
        }
    });
    with("bare", |t| {
        *t = Task::new(t.task_arn.clone(), t.cluster_arn.clone(), "")
    });
    let (cache, mut w) = cache();
    let mut packed = 0;
    for (seq, (name, t)) in (1..).zip(&variants) {
        // Each variant replaces the last (one ARN): the count follows.
        put(&mut w, t.clone(), seq);
        let e = held(&cache, t);
        packed += usize::from(e.is_packed());
        assert_eq!(cache.packed_tasks(), usize::from(e.is_packed()), "{name}");
        assert_eq!(*e.value(), *t, "{name}");
        assert_eq!(served(&e), item_of(t, seq), "{name}");
    }
    assert!(packed >= 3, "only {packed} of the variants packed");
    put(&mut w, base.clone(), 100);
    assert_eq!(cache.packed_tasks(), 1);
    w.apply(&WatchEvent::Delete {
        arn: base.task_arn.clone(),
        revision: rev(101),
        last: None,
    });
    assert_eq!(cache.packed_tasks(), 0);
}

#[test]
fn plain_items_are_kept_within_the_budget_and_given_back() {
    let tasks: Vec<Task> = (10..14).map(full_task).collect();
    let one = item_of(&tasks[0], 1).len();
    let (cache, mut w) = cache_with(CacheOptions {
        hot_items: 2 * one + one / 2,
        ..CacheOptions::default()
    });
    for (seq, t) in (1..).zip(&tasks) {
        put(&mut w, t.clone(), seq);
    }
    assert_eq!(cache.hot_items().used(), 0, "nothing served yet");
    for (seq, t) in (1..).zip(&tasks) {
        let e = held(&cache, t);
        assert!(e.is_packed());
        // Twice: from the packed form, then from the kept copy (if kept).
        assert_eq!(served(&e), item_of(t, seq));
        assert_eq!(served(&e), item_of(t, seq));
    }
    let used = cache.hot_items().used();
    assert!(used <= cache.hot_items().limit(), "{used}");
    assert!(used >= 2 * one - 8, "two items kept: {used}");
    // Deleting every task drops its entry, which gives its share back.
    for (seq, t) in (10..).zip(&tasks) {
        w.apply(&WatchEvent::Delete {
            arn: t.task_arn.clone(),
            revision: rev(seq),
            last: None,
        });
    }
    assert_eq!(cache.len(), (0, 0));
    assert_eq!(cache.hot_items().used(), 0);
}

#[test]
fn without_a_budget_every_request_decompresses_the_same_bytes() {
    let (cache, mut w) = cache_with(CacheOptions {
        hot_items: 0,
        ..CacheOptions::default()
    });
    let t = full_task(20);
    put(&mut w, t.clone(), 1);
    let e = held(&cache, &t);
    assert!(e.is_packed());
    for _ in 0..3 {
        assert_eq!(served(&e), item_of(&t, 1));
    }
    assert_eq!(cache.hot_items().used(), 0);
}

#[test]
fn filters_and_gets_by_arn_read_a_packed_task_without_decoding_it() {
    let (cache, mut w) = cache();
    let t = full_task(30);
    put(&mut w, t.clone(), 1);
    let (cluster, e) = cache
        .get_task_and_cluster(t.task_arn.as_str())
        .expect("cached");
    assert_eq!(cluster, t.cluster_arn);
    assert!(e.is_packed());
    let instance: Arn = t.container_instance_arn.clone().expect("placed");
    let hits = |f: Filter| cache.list_tasks(&f).len();
    assert_eq!(
        hits(Filter {
            cluster: Some("prod".into()),
            status: Some("running".into()),
            started_by: t.started_by.clone(),
            container_instance: Some(instance.clone()),
        }),
        1
    );
    assert_eq!(
        hits(Filter {
            started_by: t.started_by.clone(),
            status: Some("STOPPED".into()),
            ..Filter::default()
        }),
        0
    );
    let in_prod = cache.with_view(|v| {
        v.tasks_in_clusters(|c| c.cluster_name() == Some("prod"))
            .count()
    });
    assert_eq!(in_prod, 1);
}

#[test]
fn items_are_compressed_against_the_first_item_packed() {
    let (cache, mut w) = cache();
    let first = full_task(40);
    put(&mut w, first.clone(), 1);
    let tasks: Vec<Task> = (41..45).map(full_task).collect();
    for (seq, t) in (2..).zip(&tasks) {
        put(&mut w, t.clone(), seq);
    }
    for (seq, t) in (2..).zip(&tasks) {
        let e = held(&cache, t);
        let plain = item_of(t, seq).len();
        let packed = e.packed_len().expect("packed");
        // What is its own: ids, times, the revision.
        assert!(packed * 4 < plain, "{packed} of {plain} bytes");
        assert_eq!(*e.value(), *t);
    }
    // A relist keeps the dictionary: entries from before and after decode.
    let before = held(&cache, &tasks[0]);
    w.replace(
        vec![Versioned {
            entity: Entity::Task(Arc::new(full_task(50))),
            revision: rev(20),
        }],
        rev(20),
    );
    assert_eq!(*before.value(), tasks[0]);
    assert_eq!(*held(&cache, &full_task(50)).value(), full_task(50));
}
