//! Keeps a [`CacheWriter`] in step with a [`StateStore`].

use std::sync::Arc;

use blox_core::backoff::Backoff;
use blox_core::model::EntityKind;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Cache, CacheWriter, cache};
use crate::store::{Filter, Revision, StateStore, StoreError, Versioned};

/// Lists both kinds of entity; returns the items and the revision to watch
/// from (the older of the two lists' revisions: changes between the two are
/// replayed and ignored where the cache already has them).
async fn relist(store: &dyn StateStore) -> Result<(Vec<Versioned>, Revision), StoreError> {
    let instances = store.list(EntityKind::Instance, &Filter::default()).await?;
    let tasks = store.list(EntityKind::Task, &Filter::default()).await?;
    let from = if instances.revision.seq <= tasks.revision.seq {
        instances.revision
    } else {
        tasks.revision
    };
    let mut items = instances.items;
    items.extend(tasks.items);
    Ok((items, from))
}

/// Follows the store forever: list, watch from the list's revision, resume
/// the watch after transient errors, relist when the revision is compacted.
/// Runs until the future is dropped.
pub async fn follow(store: Arc<dyn StateStore>, mut writer: CacheWriter) {
    let mut backoff = Backoff::default();
    loop {
        let from = match relist(store.as_ref()).await {
            Ok((items, revision)) => {
                tracing::debug!(count = items.len(), %revision, "cache loaded");
                writer.replace(items, revision);
                backoff.reset();
                revision
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cache cannot list the store; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let mut from = from;
        // Watch until the store tells us to relist.
        loop {
            let mut stream = match store.watch(from).await {
                Ok(s) => s,
                Err(e) if e.needs_relist() => {
                    tracing::info!(error = %e, "cache relisting");
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, "cache cannot watch the store; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let mut relist_needed = false;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => {
                        from = event.revision();
                        writer.apply(&event);
                        backoff.reset();
                    }
                    Err(e) if e.needs_relist() => {
                        tracing::info!(error = %e, "cache relisting");
                        relist_needed = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cache watch interrupted; resuming");
                        break;
                    }
                }
            }
            if relist_needed {
                break;
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

/// Creates a cache following `store` on a spawned task. Abort the handle to stop it.
pub fn spawn_follower(store: Arc<dyn StateStore>) -> (Cache, JoinHandle<()>) {
    let (reader, writer) = cache();
    let handle = tokio::spawn(follow(store, writer));
    (reader, handle)
}
