//! Query parameters, validated strictly as Blox v0.3 did: an unknown or
//! repeated key, an empty value or an invalid value is a 400 whose message
//! starts with v0.3's text (see [`text`]).
//!
//! [`Params`] holds the checks every route needs (allowed keys, each at most
//! once, no empty value, `entityVersion`); the daemon scheduler's routes
//! (`blox_sched::http`) use it too. What a value means for the cluster-state
//! routes (`status`, `cluster`, `maxResults`, `nextToken` of entities) is
//! parsed here as crate-private methods.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use blox_core::model::{Arn, EntityKind, InstanceStatus, ResourceKind, TaskStatus};

use super::error::{ApiError, detailed, text};
use crate::store::Revision;

/// The largest page a client may ask for with `maxResults`.
pub const MAX_RESULTS_LIMIT: usize = 1000;

/// Keys whose empty value means "not given" (a v0.3 client may send
/// `entityVersion=` to stream from now, which v0.3 accepted).
const EMPTY_MEANS_ABSENT: &[&str] = &["entityVersion"];

/// A handler's query string: the decoded `(key, value)` pairs, or the
/// decoder's rejection (take it as a handler argument, then call
/// [`query_pairs`]).
pub type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The decoded query pairs, or a 400 with the decoder's reason.
pub fn query_pairs(raw: RawQuery) -> Result<Vec<(String, String)>, ApiError> {
    raw.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}

/// A request's query parameters: each allowed key at most once, none empty
/// (except `entityVersion`, whose empty value means absent).
#[derive(Debug, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Checks the decoded `(key, value)` pairs against the allowed keys: an
    /// unknown key (quoted in full in the message), a repeated key or an
    /// empty value is a 400. An unknown key's message starts with the
    /// cluster-state routes' [`text::UNSUPPORTED_FILTER`].
    pub fn parse(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::parse_with(pairs, allowed, usize::MAX, text::UNSUPPORTED_FILTER)
    }

    /// [`Params::parse`], quoting at most `quote_chars` characters of an
    /// unknown key in the message, which starts with `unsupported` (each
    /// v0.3 service phrased it its own way).
    pub fn parse_with(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
        quote_chars: usize,
        unsupported: &str,
    ) -> Result<Self, ApiError> {
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                let allowed = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::BadRequest(detailed(
                    unsupported,
                    format_args!(
                        "unknown query parameter {:?}; allowed: {allowed}",
                        truncate_to(&key, quote_chars)
                    ),
                )));
            }
            if value.is_empty() && !EMPTY_MEANS_ABSENT.contains(&key.as_str()) {
                let detail = format!("query parameter {key:?} has an empty value");
                return Err(ApiError::BadRequest(match invalid_value_text(&key) {
                    Some(t) => detailed(t, detail),
                    None => detail,
                }));
            }
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::BadRequest(detailed(
                    text::REDUNDANT_FILTER,
                    format_args!("query parameter {key:?} is given more than once"),
                )));
            }
        }
        Ok(Params(map))
    }

    /// The raw value of a parameter (`None` if absent or empty).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `entityVersion`: the revision a stream resumes after (`None` if
    /// absent or empty); an unparsable one is a 400.
    pub fn entity_version(&self) -> Result<Option<Revision>, ApiError> {
        self.get("entityVersion")
            .map(|s| {
                s.parse::<Revision>()
                    .map_err(|e| ApiError::BadRequest(detailed(text::INVALID_ENTITY_VERSION, e)))
            })
            .transpose()
    }
}

/// The cluster-state routes' values.
impl Params {
    /// `status`, validated for the kind and written as ECS spells it.
    pub(crate) fn status(&self, kind: EntityKind) -> Result<Option<String>, ApiError> {
        let Some(s) = self.get("status") else {
            return Ok(None);
        };
        let known = match kind {
            EntityKind::Instance => InstanceStatus::parse_known(s).map(|v| v.as_str().to_owned()),
            EntityKind::Task => TaskStatus::parse_known(s).map(|v| v.as_str().to_owned()),
        };
        known.map(Some).ok_or_else(|| {
            let allowed: Vec<&str> = match kind {
                EntityKind::Instance => InstanceStatus::KNOWN.iter().map(|v| v.as_str()).collect(),
                EntityKind::Task => TaskStatus::KNOWN.iter().map(|v| v.as_str()).collect(),
            };
            ApiError::BadRequest(detailed(
                text::INVALID_STATUS,
                format_args!(
                    "{kind} status {:?}; expected one of {} (any case)",
                    truncate(s),
                    allowed.join(", ")
                ),
            ))
        })
    }

    /// `cluster`: a cluster name or a cluster ARN.
    pub(crate) fn cluster(&self) -> Result<Option<String>, ApiError> {
        self.get("cluster").map(cluster).transpose()
    }

    /// `startedBy`, taken verbatim.
    pub(crate) fn started_by(&self) -> Option<String> {
        self.get("startedBy").map(str::to_owned)
    }

    /// `maxResults`: `None` = everything (as Blox v0.3 did).
    pub(crate) fn max_results(&self) -> Result<Option<usize>, ApiError> {
        let Some(s) = self.get("maxResults") else {
            return Ok(None);
        };
        match s.parse::<usize>() {
            Ok(n) if (1..=MAX_RESULTS_LIMIT).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::BadRequest(format!(
                "invalid maxResults {:?}: expected an integer from 1 to {MAX_RESULTS_LIMIT}",
                truncate(s)
            ))),
        }
    }

    /// `nextToken`: where the previous page of this kind of entity ended.
    pub(crate) fn next_token(&self, kind: EntityKind) -> Result<Option<Arn>, ApiError> {
        self.get("nextToken")
            .map(|t| {
                decode_token(t)
                    .filter(|arn| EntityKind::of_arn(arn) == Some(kind))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "invalid nextToken {:?}: pass the nextToken of the previous page unchanged",
                            truncate(t)
                        ))
                    })
            })
            .transpose()
    }
}

/// Validates a cluster given by name (1-255 letters, digits, `-`, `_`) or ARN.
pub(crate) fn cluster(s: &str) -> Result<String, ApiError> {
    let valid = if s.starts_with("arn:") {
        Arn::parse(s).is_ok_and(|a| a.kind() == ResourceKind::Cluster)
    } else {
        (1..=255).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if valid {
        Ok(s.to_owned())
    } else {
        Err(ApiError::BadRequest(detailed(
            text::INVALID_CLUSTER,
            format_args!("{:?}: expected a cluster name or cluster ARN", truncate(s)),
        )))
    }
}

/// v0.3's text for an invalid value of a filter key, where it had one.
fn invalid_value_text(key: &str) -> Option<&'static str> {
    match key {
        "status" => Some(text::INVALID_STATUS),
        "cluster" => Some(text::INVALID_CLUSTER),
        "entityVersion" => Some(text::INVALID_ENTITY_VERSION),
        _ => None,
    }
}

/// An opaque page token for a position (the last ARN of a page): its hex.
pub(crate) fn encode_token(arn: &Arn) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(arn.as_str().len() * 2);
    for b in arn.as_str().bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The position a token names, if it is a token [`encode_token`] made.
pub(crate) fn decode_token(token: &str) -> Option<Arn> {
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    Arn::parse(&String::from_utf8(bytes?).ok()?).ok()
}

/// The first 100 characters of user input, for error messages.
fn truncate(s: &str) -> String {
    truncate_to(s, 100)
}

/// The first `max_chars` characters of user input, for error messages.
pub fn truncate_to(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(r: Result<Params, ApiError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn unknown_repeated_and_empty_keys_are_rejected_with_v03_text_first() {
        let m = message(Params::parse(pairs(&[("colour", "x")]), &["status"]));
        assert!(m.starts_with(text::UNSUPPORTED_FILTER), "{m}");
        let m = message(Params::parse(
            pairs(&[("status", "a"), ("status", "b")]),
            &["status"],
        ));
        assert!(m.starts_with(text::REDUNDANT_FILTER), "{m}");
        let m = message(Params::parse(pairs(&[("status", "")]), &["status"]));
        assert!(m.starts_with(text::INVALID_STATUS), "{m}");
        let m = message(Params::parse(pairs(&[("cluster", "")]), &["cluster"]));
        assert!(m.starts_with(text::INVALID_CLUSTER), "{m}");
        assert!(Params::parse(pairs(&[("status", "active")]), &["status"]).is_ok());
    }

    #[test]
    fn an_empty_entity_version_means_stream_from_now() {
        let p = Params::parse(pairs(&[("entityVersion", "")]), &["entityVersion"]).unwrap();
        assert_eq!(p.entity_version().unwrap(), None);
        let twice = pairs(&[("entityVersion", ""), ("entityVersion", "")]);
        assert!(Params::parse(twice, &["entityVersion"]).is_err());
    }

    #[test]
    fn statuses_are_validated_per_kind_and_normalized() {
        let p = Params::parse(pairs(&[("status", "draining")]), &["status"]).unwrap();
        assert_eq!(
            p.status(EntityKind::Instance).unwrap().as_deref(),
            Some("DRAINING")
        );
        assert!(p.status(EntityKind::Task).is_err());
        let p = Params::parse(pairs(&[("status", "Running")]), &["status"]).unwrap();
        assert_eq!(
            p.status(EntityKind::Task).unwrap().as_deref(),
            Some("RUNNING")
        );
    }

    #[test]
    fn clusters_are_names_or_cluster_arns() {
        assert!(cluster("prod-1_a").is_ok());
        assert!(cluster("arn:aws:ecs:us-east-1:123456789012:cluster/prod").is_ok());
        assert!(cluster("arn:aws:ecs:us-east-1:123456789012:task/prod/abc").is_err());
        assert!(cluster("no spaces").is_err());
        assert!(cluster(&"x".repeat(256)).is_err());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let arn = Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/abc").unwrap();
        assert_eq!(decode_token(&encode_token(&arn)), Some(arn));
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("abc"), None);
        assert_eq!(decode_token(&encode_token_of("not an arn")), None);
    }

    fn encode_token_of(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn max_results_must_be_between_1_and_1000() {
        for bad in ["0", "1001", "-1", "ten"] {
            let p = Params::parse(pairs(&[("maxResults", bad)]), &["maxResults"]).unwrap();
            assert!(p.max_results().is_err(), "{bad}");
        }
        let p = Params::parse(pairs(&[("maxResults", "1000")]), &["maxResults"]).unwrap();
        assert_eq!(p.max_results().unwrap(), Some(1000));
    }
}
