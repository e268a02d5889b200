//! Keeps a [`CacheWriter`] in step with a [`StateStore`].

use std::sync::Arc;

use blox_core::backoff::Backoff;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{Cache, CacheOptions, CacheWriter, Slots, cache_with};
use crate::store::StateStore;

/// Follows the store forever: list both kinds at one revision, watch whole
/// revisions from the list's revision, resume the watch after transient
/// errors from the last revision applied (always applied whole), relist
/// when the revision is compacted. Runs until the future is dropped.
pub async fn follow(store: Arc<dyn StateStore>, mut writer: CacheWriter) {
    let mut backoff = Backoff::default();
    loop {
        let mut from = match store.list_all().await {
            Ok(listing) => {
                let count = listing.items.len();
                let packing = writer.packing();
                // Packing a large view takes seconds: not on a runtime thread.
                let slots = match tokio::task::spawn_blocking(move || {
                    Slots::of(listing.items, &packing)
                })
                .await
                {
                    Ok(slots) => slots,
                    Err(e) => {
                        tracing::error!(error = %e, "cache could not prepare the list; relisting");
                        tokio::time::sleep(backoff.next_delay()).await;
                        continue;
                    }
                };
                tracing::debug!(count, revision = %listing.revision, "cache loaded");
                writer.replace_with(slots, listing.revision);
                backoff.reset();
                listing.revision
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "cache cannot list the store; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        // Watch until the store tells us to relist.
        loop {
            let mut stream = match store.watch_revisions(from).await {
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
                    Ok(batch) => {
                        from = batch.revision;
                        writer.apply_revision(batch);
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

/// Creates a cache following `store` on a spawned task (default options).
/// Abort the handle to stop it.
pub fn spawn_follower(store: Arc<dyn StateStore>) -> (Cache, JoinHandle<()>) {
    spawn_follower_with(store, CacheOptions::default())
}

/// Creates a cache with these options following `store` on a spawned task.
/// Abort the handle to stop it.
pub fn spawn_follower_with(
    store: Arc<dyn StateStore>,
    options: CacheOptions,
) -> (Cache, JoinHandle<()>) {
    let (reader, writer) = cache_with(options);
    let handle = tokio::spawn(follow(store, writer));
    (reader, handle)
}
