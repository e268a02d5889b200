//! The view over the memory store: every list the cache answers is the
//! store at the list's revision, and list-then-stream clients end exactly
//! equal to the store (the README's "streaming from a list's revision
//! misses nothing").
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "http")]

mod http_support;
mod view_support;

use std::sync::Arc;

use blox_state::StateStore;
use blox_state::cache::spawn_follower;
use blox_state::http::{ApiState, router};
use blox_state::store::memory::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_is_the_store_at_its_revision_under_churn() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let (wrong, checked) = view_support::lists_under_churn(store, 300).await;
    assert!(
        wrong.is_empty(),
        "{} of {checked} lists did not match the store at their revision: {wrong:#?}",
        wrong.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_stream_clients_end_exactly_equal_to_the_store() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let (cache, follower) = spawn_follower(Arc::clone(&store));
    cache.wait_until_ready().await;
    let addr = http_support::serve(router(ApiState::new(cache.clone(), Arc::clone(&store)))).await;
    let wrong = view_support::streams_under_churn(store, cache, addr, 100, 10).await;
    follower.abort();
    assert!(
        wrong.is_empty(),
        "views that are not the store's: {wrong:#?}"
    );
}
