//! Query parameters, checked strictly: an unknown or repeated key, an empty
//! value (except `entityVersion`) or an invalid value is a 400.
//!
//! The checks every route shares are the cluster-state routes'
//! ([`blox_state::http::Params`]); this module adds what the scheduler's
//! values mean (flags, environment pages, clusters) and its path and body
//! extractors.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use blox_state::http::{self as state_http, detailed, query_pairs, text as state_text};
use blox_state::store::Revision;

use super::error::{ApiError, text};
use crate::daemon::ValidationError;

pub use blox_state::http::MAX_RESULTS_LIMIT;
pub(crate) use blox_state::http::RawQuery;

/// How many characters of a client's input error messages quote.
const QUOTE_CHARS: usize = 64;

/// Path parameters, or the extractor's rejection.
pub(crate) type RawPath<T> = Result<Path<T>, PathRejection>;

/// A request body, or the extractor's rejection.
pub(crate) type RawBody = Result<Bytes, BytesRejection>;

/// The decoded path parameters, or a 400 (JSON, like every error).
pub(crate) fn path<T>(raw: RawPath<T>) -> Result<T, ApiError> {
    raw.map(|Path(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
}

/// The request body, or a 413 (too large) or 400 (unreadable).
pub(crate) fn body(raw: RawBody) -> Result<Bytes, ApiError> {
    raw.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body too large: {}", e.body_text()))
        } else {
            ApiError::BadRequest(format!("unreadable request body: {}", e.body_text()))
        }
    })
}

/// A request's query parameters: each allowed key at most once.
#[derive(Debug, Default)]
pub(crate) struct Params(state_http::Params);

impl Params {
    /// Decodes the query and checks its keys against `allowed`.
    pub(crate) fn parse(raw: RawQuery, allowed: &[&str]) -> Result<Self, ApiError> {
        Self::check(query_pairs(raw)?, allowed)
    }

    fn check(pairs: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        state_http::Params::parse_with(pairs, allowed, QUOTE_CHARS, text::UNSUPPORTED_FILTER)
            .map(Params)
    }

    /// A parameter's value (`None` if absent or empty).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    /// A required parameter.
    pub(crate) fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::BadRequest(format!("query parameter {key:?} is required")))
    }

    /// `cluster`: a cluster name or cluster ARN.
    pub(crate) fn cluster(&self) -> Result<Option<String>, ApiError> {
        self.get("cluster")
            .map(|c| {
                crate::daemon::validate::cluster(c)
                    .map(|()| c.to_owned())
                    .map_err(|e: ValidationError| {
                        ApiError::BadRequest(detailed(state_text::INVALID_CLUSTER, e))
                    })
            })
            .transpose()
    }

    /// A boolean flag (`true` or `false`); `false` when absent.
    pub(crate) fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "invalid {key} {:?}: expected true or false",
                truncate(other)
            ))),
        }
    }

    /// `maxResults`: 1 to [`MAX_RESULTS_LIMIT`]; `usize::MAX` when absent
    /// (everything, as v0.3 answered).
    pub(crate) fn max_results(&self) -> Result<usize, ApiError> {
        let Some(s) = self.get("maxResults") else {
            return Ok(usize::MAX);
        };
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RESULTS_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid maxResults {:?}: expected 1 to {MAX_RESULTS_LIMIT}",
                    truncate(s)
                ))
            })
    }

    /// `nextToken`: the position after which the page starts.
    pub(crate) fn next_token(&self) -> Result<Option<String>, ApiError> {
        self.get("nextToken")
            .map(|t| {
                decode_token(t).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "invalid nextToken {:?}: pass the nextToken of the previous page unchanged",
                        truncate(t)
                    ))
                })
            })
            .transpose()
    }

    /// `entityVersion`: the revision a stream resumes after.
    pub(crate) fn entity_version(&self) -> Result<Option<Revision>, ApiError> {
        self.0.entity_version()
    }
}

/// An opaque page token for a position: the hex of its text.
pub(crate) fn encode_token(position: &str) -> String {
    position.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The position a token names, if [`encode_token`] made it.
pub(crate) fn decode_token(token: &str) -> Option<String> {
    if !token.len().is_multiple_of(2) || token.len() > 512 {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// One page of `items` (sorted by `position`) after `after`, at most `limit`
/// long, and the token of the next page when more remain.
pub(crate) fn page<T>(
    items: Vec<T>,
    position: impl Fn(&T) -> String,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = match after {
        Some(a) => items
            .into_iter()
            .filter(|t| position(t).as_str() > a)
            .collect(),
        None => items,
    };
    if rest.len() <= limit {
        return (rest, None);
    }
    rest.truncate(limit);
    let next = rest.last().map(|t| encode_token(&position(t)));
    (rest, next)
}

fn truncate(s: &str) -> String {
    state_http::truncate_to(s, QUOTE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unknown_repeated_and_empty_keys_are_rejected() {
        let unknown = Params::check(pairs(&[("nope", "1")]), &["cluster"]);
        assert!(
            unknown
                .err()
                .is_some_and(|e| e.to_string().starts_with(text::UNSUPPORTED_FILTER))
        );
        assert!(Params::check(pairs(&[("cluster", "a"), ("cluster", "b")]), &["cluster"]).is_err());
        assert!(Params::check(pairs(&[("cluster", "")]), &["cluster"]).is_err());
        let p = Params::check(pairs(&[("entityVersion", "")]), &["entityVersion"]).unwrap();
        assert_eq!(p.entity_version().unwrap(), None);
    }

    #[test]
    fn flags_are_true_or_false() {
        let p = Params::check(pairs(&[("stopTasks", "true")]), &["stopTasks"]).unwrap();
        assert!(p.flag("stopTasks").unwrap());
        let p = Params::check(pairs(&[("stopTasks", "yes")]), &["stopTasks"]).unwrap();
        assert!(p.flag("stopTasks").is_err());
        assert!(!Params::default().flag("stopTasks").unwrap());
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        assert_eq!(
            decode_token(&encode_token("web-1")).as_deref(),
            Some("web-1")
        );
        assert_eq!(decode_token("zz"), None);
        assert_eq!(decode_token("abc"), None);
        assert_eq!(decode_token(""), None);
    }

    #[test]
    fn pages_continue_after_the_token_position() {
        let items = vec!["a", "b", "c"];
        let (first, next) = page(items.clone(), |s| (*s).to_owned(), None, 2);
        assert_eq!(first, vec!["a", "b"]);
        let after = decode_token(&next.unwrap()).unwrap();
        let (second, next) = page(items, |s| (*s).to_owned(), Some(&after), 2);
        assert_eq!(second, vec!["c"]);
        assert_eq!(next, None);
    }

    #[test]
    fn max_results_must_be_between_1_and_1000() {
        for bad in ["0", "1001", "x"] {
            let p = Params::check(pairs(&[("maxResults", bad)]), &["maxResults"]).unwrap();
            assert!(p.max_results().is_err(), "{bad}");
        }
        assert_eq!(Params::default().max_results().unwrap(), usize::MAX);
    }
}
