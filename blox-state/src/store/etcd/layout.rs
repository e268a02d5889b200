//! The version of what blox stores under its etcd prefix (the key layout
//! and the records' formats), so that daemons of different releases never
//! misread each other's data.
//!
//! The record lives at `{prefix}/layout` (JSON: `{"version": N}`, plus
//! `"migrating"` while a migration runs). At connect
//! ([`super::EtcdStore::connect`]), with [`super::EtcdOptions::check_layout`]
//! on (the default), the store reads it before it writes anything:
//!
//! * absent: the prefix is new, or was written by a release older than the
//!   record (whose layout is version 1): the retention indexes of version 2
//!   are built (idempotent; nothing to do on a new prefix), then the record
//!   is written with [`LAYOUT_VERSION`], in one transaction guarded on its
//!   absence;
//! * equal to [`LAYOUT_VERSION`]: nothing to do;
//! * newer: refused ([`StoreError::Layout`]), naming both versions;
//! * older, or a migration under way: refused too, until
//!   [`migrate`] has run (a daemon's `--migrate-layout`).
//!
//! A migration runs [`MigrationStep`]s, each idempotent, in order, and
//! records each finished step under `migrating.done` before the next one
//! starts, so a migration that stops half-way (a crash, an etcd outage) is
//! resumed by running it again, and no daemon acts on the half-migrated
//! prefix meanwhile. Version 1 is the first layout; [`MIGRATIONS`] lists the
//! steps from each version to the next.
//!
//! Version 2 adds the retention indexes (`{prefix}/i/`, see
//! [`super::keys`]; its step `retention-index` writes the index entry of
//! every stopped task, INACTIVE instance and tombstone a version-1 prefix
//! holds), soft tombstones (`soft-tombstones`, nothing to rewrite) and one
//! intent per start (`intent-per-start`).

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{EtcdStore, Inner};
use crate::store::{Result, StoreError};

pub use super::intent_layout::restamp_intents;
pub use crate::store::LAYOUT_VERSION;

/// One step of a migration from layout `from` to `from + 1`.
pub struct MigrationStep {
    /// The layout it migrates from.
    pub from: u32,
    /// Its name (recorded when done; unique within its `from`).
    pub name: &'static str,
    /// The step itself; it must be idempotent (a step that was running
    /// when a migration stopped runs again).
    pub run: for<'a> fn(&'a EtcdStore) -> BoxFuture<'a, Result<()>>,
}

impl std::fmt::Debug for MigrationStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationStep")
            .field("from", &self.from)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The migrations of this build, oldest first.
pub const MIGRATIONS: &[MigrationStep] = &[
    MigrationStep {
        from: 1,
        name: "soft-tombstones",
        run: soft_tombstones,
    },
    MigrationStep {
        from: 1,
        name: "intent-per-start",
        run: super::intent_layout::run,
    },
    MigrationStep {
        from: 1,
        name: "retention-index",
        run: |store| Box::pin(super::maintenance::build_indexes(&store.inner)),
    },
];

/// A stored layout a build reads: its version and the migrations that
/// lead to it. A store checks the prefix against one
/// ([`super::EtcdOptions::layout`], [`CURRENT`] by default); tests build
/// daemons of another layout with their own.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// The version it reads and writes.
    pub version: u32,
    /// The steps from older versions, oldest first.
    pub migrations: &'static [MigrationStep],
}

/// This build's layout: [`LAYOUT_VERSION`] and [`MIGRATIONS`].
pub const CURRENT: Layout = Layout {
    version: LAYOUT_VERSION,
    migrations: MIGRATIONS,
};

/// Layout 2 adds `soft` to tombstones (a deletion on listing evidence
/// alone, which never blocks ECS's report of the deleted version). Every
/// layout-1 tombstone is a hard one, which is what a record without the
/// field reads as: nothing to rewrite.
fn soft_tombstones(_: &EtcdStore) -> BoxFuture<'_, Result<()>> {
    Box::pin(async { Ok(()) })
}

/// A migration under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrating {
    /// The version it migrates to.
    pub to: u32,
    /// The steps already done.
    pub done: Vec<String>,
}

/// The stored layout record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutRecord {
    /// The layout version of what is stored.
    pub version: u32,
    /// A migration under way, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating: Option<Migrating>,
}

/// What the connect-time check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutStatus {
    /// The prefix had no record; this store wrote it.
    Initialised,
    /// The record matches this build.
    Current,
    /// Not checked ([`super::EtcdOptions::check_layout`] off).
    Unchecked,
}

fn refuse(stored: u32, supported: u32, detail: String) -> StoreError {
    StoreError::Layout {
        stored,
        supported,
        detail,
    }
}

/// Reads the record and its etcd mod revision (0 when absent).
pub(super) async fn read(inner: &Inner) -> Result<(Option<LayoutRecord>, i64)> {
    read_at(inner)
        .await
        .map(|(record, revision, _)| (record, revision))
}

/// Reads the record, its mod revision (0 when absent) and the revision of
/// the read.
async fn read_at(inner: &Inner) -> Result<(Option<LayoutRecord>, i64, i64)> {
    let key = inner.keys.layout();
    let resp = inner
        .policy
        .run("reading the layout version", || {
            let mut kv = inner.client.kv_client();
            let key = key.clone();
            async move { kv.get(key, None).await }
        })
        .await?;
    let at = resp.header().map_or(0, |h| h.revision());
    let Some(kv) = resp.kvs().first() else {
        return Ok((None, 0, at));
    };
    Ok((Some(decode(&key, kv.value())?), kv.mod_revision(), at))
}

fn decode(key: &str, value: &[u8]) -> Result<LayoutRecord> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: format!("the layout record is not readable: {e}"),
    })
}

/// The error of a daemon whose stored layout changed while it ran: a
/// migration started (or finished) under it. `now` is the record found
/// (`None`: it was deleted, or is unreadable).
pub(super) fn changed(supported: u32, now: Option<&LayoutRecord>) -> StoreError {
    let (stored, what) = match now {
        Some(LayoutRecord {
            version,
            migrating: Some(m),
        }) => (
            *version,
            format!("a migration to version {} is under way", m.to),
        ),
        Some(r) => (r.version, format!("it is now version {}", r.version)),
        None => (0, "the record is gone or unreadable".to_owned()),
    };
    refuse(
        stored,
        supported,
        format!(
            "the stored layout changed while this daemon ran ({what}): it writes nothing more and stops; \
             run a release that reads the new layout (docs/operating.md, section 5)"
        ),
    )
}

/// The layout record as a guarded transaction's failure branch read it
/// (see `Inner::txn`).
pub(super) fn changed_from(inner: &Inner, responses: &[etcd_client::TxnOpResponse]) -> StoreError {
    let key = inner.keys.layout();
    let now = responses.iter().find_map(|r| match r {
        etcd_client::TxnOpResponse::Get(g) => {
            Some(g.kvs().first().and_then(|kv| decode(&key, kv.value()).ok()))
        }
        _ => None,
    });
    changed(inner.options.layout.version, now.flatten().as_ref())
}

/// Resolves once the record is no longer at `guard` (the mod revision this
/// store checked at connect), with the error that says so. Reads and
/// watches the one key; errors are retried every second (every write is
/// guarded anyway: this only makes the daemon stop sooner).
pub(super) async fn wait_for_change(inner: &Inner, guard: i64) -> StoreError {
    let key = inner.keys.layout();
    loop {
        let at = match read_at(inner).await {
            Ok((record, revision, _)) if revision != guard => {
                return changed(inner.options.layout.version, record.as_ref());
            }
            Ok((_, _, at)) => at,
            Err(e) => {
                tracing::debug!(error = %e, "reading the layout record to watch it; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let opts = etcd_client::WatchOptions::new().with_start_revision(at + 1);
        let mut stream = match inner.client.clone().watch(key.clone(), Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "watching the layout record; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        // Any event, a cancelled watch or an error: read the key again.
        loop {
            match stream.message().await {
                Ok(Some(m)) if m.events().is_empty() && !m.canceled() => {}
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "the layout record's watch failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Writes the record if the key is still at `expected` (0: absent);
/// returns the record's new revision if it was.
async fn write(inner: &Inner, record: &LayoutRecord, expected: i64) -> Result<Option<i64>> {
    use etcd_client::{Compare, CompareOp, TxnOp};
    let key = inner.keys.layout();
    let value = serde_json::to_vec(record).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let resp = inner
        .txn(
            "writing the layout version",
            vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                expected,
            )],
            vec![TxnOp::put(key, value, None)],
            Vec::new(),
        )
        .await?;
    Ok(resp.succeeded.then_some(resp.revision))
}

/// The connect-time check (see the module docs); returns what it found
/// and the record's mod revision, which then guards every write of the
/// store ([`guard`]).
pub(super) async fn check(inner: &Inner) -> Result<(LayoutStatus, i64)> {
    let supported = inner.options.layout.version;
    for _ in 0..3 {
        let (record, revision) = read(inner).await?;
        match record {
            None => {
                // A prefix written before the record holds version-1 data
                // (or nothing): bring it to this layout first.
                super::maintenance::build_indexes(inner).await?;
                let fresh = LayoutRecord {
                    version: supported,
                    migrating: None,
                };
                if let Some(written) = write(inner, &fresh, 0).await? {
                    return Ok((LayoutStatus::Initialised, written));
                }
                // Another daemon initialised it first: read it again.
            }
            Some(r) => return judge(&r, supported).map(|()| (LayoutStatus::Current, revision)),
        }
    }
    Err(StoreError::Backend {
        message: "the layout record keeps changing while it is read".into(),
        source: None,
    })
}

fn judge(r: &LayoutRecord, supported: u32) -> Result<()> {
    if let Some(m) = &r.migrating {
        return Err(refuse(
            r.version,
            supported,
            format!(
                "a migration to version {} is under way ({} step(s) done); run the migration again to finish it (--migrate-layout)",
                m.to,
                m.done.len()
            ),
        ));
    }
    if r.version > supported {
        return Err(refuse(
            r.version,
            supported,
            "it is newer than this daemon reads: run a release that reads it, or restore the backup taken before the upgrade (docs/operating.md, section 5)".into(),
        ));
    }
    if r.version < supported {
        return Err(refuse(
            r.version,
            supported,
            "it is older: stop every daemon, run this release with --migrate-layout, then start the new daemons (docs/operating.md, section 5)".into(),
        ));
    }
    Ok(())
}

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version found.
    pub from: u32,
    /// The version now stored.
    pub to: u32,
    /// The steps run by this call (resumed migrations skip finished ones).
    pub steps_run: Vec<String>,
}

/// Migrates the prefix to `target` with `steps` (see the module docs).
/// Run it with every daemon stopped. An absent record is initialised at
/// `target`; a newer one is refused.
pub async fn migrate(
    store: &EtcdStore,
    steps: &[MigrationStep],
    target: u32,
) -> Result<MigrationReport> {
    let inner = &store.inner;
    let (record, mut revision) = read(inner).await?;
    let Some(mut record) = record else {
        let fresh = LayoutRecord {
            version: target,
            migrating: None,
        };
        write(inner, &fresh, 0).await?;
        return Ok(MigrationReport {
            from: target,
            to: target,
            steps_run: Vec::new(),
        });
    };
    let from = record.version;
    if from > target {
        return Err(StoreError::Layout {
            stored: from,
            supported: target,
            detail: "it is newer than the migration's target".into(),
        });
    }
    let mut steps_run = Vec::new();
    while record.version < target {
        let version = record.version;
        if !steps.iter().any(|s| s.from == version) {
            return Err(StoreError::Layout {
                stored: version,
                supported: target,
                detail: format!(
                    "this build has no migration from version {version}: migrate with the release that follows it first"
                ),
            });
        }
        let mut migrating = record.migrating.clone().unwrap_or(Migrating {
            to: version + 1,
            done: Vec::new(),
        });
        for step in steps.iter().filter(|s| s.from == version) {
            if migrating.done.iter().any(|d| d == step.name) {
                continue;
            }
            // Record that the migration is under way before touching data.
            if record.migrating.is_none() {
                record.migrating = Some(migrating.clone());
                revision = cas(inner, &record, revision).await?;
            }
            tracing::info!(from = version, step = step.name, "layout migration step");
            (step.run)(store).await?;
            migrating.done.push(step.name.to_owned());
            record.migrating = Some(migrating.clone());
            revision = cas(inner, &record, revision).await?;
            steps_run.push(format!("{version}:{}", step.name));
        }
        record = LayoutRecord {
            version: version + 1,
            migrating: None,
        };
        revision = cas(inner, &record, revision).await?;
    }
    Ok(MigrationReport {
        from,
        to: record.version,
        steps_run,
    })
}

/// Writes `record` over the one at `revision`; returns the new revision.
async fn cas(inner: &Inner, record: &LayoutRecord, revision: i64) -> Result<i64> {
    write(inner, record, revision)
        .await?
        .ok_or_else(|| StoreError::Backend {
            message:
                "the layout record changed during the migration: is another migration running?"
                    .into(),
            source: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: u32, migrating: Option<Migrating>) -> LayoutRecord {
        LayoutRecord { version, migrating }
    }

    #[test]
    fn the_current_version_is_accepted_and_others_refused_naming_both() {
        judge(&rec(LAYOUT_VERSION, None), LAYOUT_VERSION).unwrap();
        let newer = judge(&rec(LAYOUT_VERSION + 1, None), LAYOUT_VERSION).unwrap_err();
        let text = newer.to_string();
        assert!(
            text.contains(&format!("version {}", LAYOUT_VERSION + 1)),
            "{text}"
        );
        assert!(
            text.contains(&format!("version {LAYOUT_VERSION}")),
            "{text}"
        );
        assert!(text.contains("newer"), "{text}");
        let older = judge(&rec(0, None), LAYOUT_VERSION)
            .unwrap_err()
            .to_string();
        assert!(older.contains("--migrate-layout"), "{older}");
        let half = judge(
            &rec(
                LAYOUT_VERSION,
                Some(Migrating {
                    to: LAYOUT_VERSION + 1,
                    done: vec!["a".into()],
                }),
            ),
            LAYOUT_VERSION,
        )
        .unwrap_err()
        .to_string();
        assert!(half.contains("under way"), "{half}");
    }

    #[test]
    fn the_record_reads_as_plain_json_and_ignores_unknown_fields() {
        let r: LayoutRecord = serde_json::from_str(r#"{"version":1,"writtenBy":"x"}"#).unwrap();
        assert_eq!(r, rec(1, None));
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"version":1}"#);
    }
}
