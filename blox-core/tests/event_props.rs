//! Property tests: the event parser never panics, whatever the input, and
//! every error names what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use blox_core::event::parse_event;
use proptest::prelude::*;

fn fixtures() -> Vec<serde_json::Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ecs-events");
    let mut out: Vec<serde_json::Value> = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            out.push(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap());
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

/// Replacement values of every JSON type, including ones ECS never sends.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!("arn:aws:ecs:us-east-1:1:task/x")),
        Just(serde_json::json!("2020-01-23T17:57:58.1234567Z")),
        Just(serde_json::json!(-1)),
    ]
}

/// Every path (as a list of object keys / array indices) in a JSON value.
fn paths(v: &serde_json::Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m {
                prefix.push(PathStep::Key(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_mut<'a>(
    v: &'a mut serde_json::Value,
    path: &[PathStep],
) -> Option<&'a mut serde_json::Value> {
    let mut cur = v;
    for step in path {
        cur = match step {
            PathStep::Key(k) => cur.get_mut(k)?,
            PathStep::Index(i) => cur.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(serde_json::Value),
    Remove,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any_json().prop_map(Mutation::Replace),
        Just(Mutation::Remove)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&bytes);
    }

    #[test]
    fn truncated_fixtures_are_errors_not_panics(which in 0usize..10, cut in 0usize..4000) {
        let fx = fixtures();
        let text = fx[which % fx.len()].to_string();
        let cut = cut.min(text.len().saturating_sub(1));
        let err = parse_event(&text.as_bytes()[..cut]);
        prop_assert!(err.is_err(), "a truncated document must not parse");
        prop_assert!(!err.unwrap_err().to_string().is_empty());
    }

    #[test]
    fn mutated_fixtures_parse_or_fail_with_a_located_error(
        which in 0usize..10,
        picks in proptest::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
    ) {
        let fx = fixtures();
        let mut doc = fx[which % fx.len()].clone();
        for (pick, m) in picks {
            let mut all: Vec<Vec<PathStep>> = Vec::new();
            paths(&doc, &mut Vec::new(), &mut all);
            let path = pick.get(&all).clone();
            if path.is_empty() {
                continue;
            }
            match m {
                Mutation::Replace(val) => {
                    if let Some(slot) = at_mut(&mut doc, &path) {
                        *slot = val;
                    }
                }
                Mutation::Remove => {
                    let (last, parent) = path.split_last().unwrap();
                    if let Some(parent) = at_mut(&mut doc, parent) {
                        match (parent, last) {
                            (serde_json::Value::Object(m), PathStep::Key(k)) => { m.remove(k); }
                            (serde_json::Value::Array(a), PathStep::Index(i)) if *i < a.len() => { a.remove(*i); }
                            _ => {}
                        }
                    }
                }
            }
        }
        if let Err(e) = parse_event(doc.to_string().as_bytes()) {
            let msg = e.to_string();
            prop_assert!(msg.contains('`') || msg.contains("source"), "error names a location: {msg}");
        }
    }
}
