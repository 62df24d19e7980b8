//! Keeps the engine's namespace view current: manifest files, API watches, object → entry conversion.

pub mod files;
pub mod kube;
pub mod objects;
pub mod policy_file;

use crate::engine::index::ClusterIndex;
use std::ops::Deref;
use std::sync::Arc;

/// A read view of the index, held for the duration of one decision.
pub enum View<'a> {
    /// A snapshot shared by reference count (swapped whole on reload).
    Shared(Arc<ClusterIndex>),
    /// A read lock on an index updated in place (watch events).
    Locked(std::sync::RwLockReadGuard<'a, ClusterIndex>),
}

impl Deref for View<'_> {
    type Target = ClusterIndex;
    fn deref(&self) -> &ClusterIndex {
        match self {
            View::Shared(a) => a,
            View::Locked(g) => g,
        }
    }
}

/// Namespaces a walk over the whole store reads per view. A full walk at 10,000 namespaces
/// takes ~100 ms; a view per batch keeps watch updates (writers), and the admissions queued
/// behind a waiting writer, from waiting for all of it.
pub const WALK_BATCH: usize = 64;

/// The store's namespace names, read under one short view, for a walk in [`WALK_BATCH`]es.
pub fn namespace_names(store: &dyn Store) -> Vec<String> {
    store.view().namespace_names().map(str::to_owned).collect()
}

/// Where the engine's cluster view comes from: manifest files, or a live cluster.
pub trait Store: Send + Sync + 'static {
    /// The current view.
    fn view(&self) -> View<'_>;
    /// Whether the initial load is complete.
    fn ready(&self) -> bool;
    /// The namespaces this store is limited to (`--watch-namespace`), sorted; empty when it
    /// sees the whole cluster.
    fn watched_namespaces(&self) -> Vec<String> {
        Vec::new()
    }
}
