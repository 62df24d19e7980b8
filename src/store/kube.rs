//! TEMPORARY STUB: the watch-backed cluster store (being written).

use super::index::ClusterIndex;
use super::{Store, View};
use crate::metrics::Metrics;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A store fed by watches on the API server.
pub struct ClusterStore {
    index: RwLock<ClusterIndex>,
}

/// A client from a kubeconfig file, or in-cluster config.
pub async fn client(_kubeconfig: Option<&Path>) -> Result<kube::Client, kube::Error> {
    kube::Client::try_default().await
}

impl ClusterStore {
    /// Start watching; the store is ready once every initial list is complete.
    pub fn start(
        _client: kube::Client,
        _namespaces: Vec<String>,
        _metrics: Arc<Metrics>,
    ) -> Arc<ClusterStore> {
        Arc::new(ClusterStore {
            index: RwLock::new(ClusterIndex::new()),
        })
    }
}

impl Store for ClusterStore {
    fn view(&self) -> View<'_> {
        View::Locked(
            self.index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
    fn ready(&self) -> bool {
        false
    }
}
