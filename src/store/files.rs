//! The file store: Secrets, ServiceAccounts and Namespaces read from manifest files, reloaded
//! when they change. A broken file keeps the last good state.

use super::objects::index_document;
use super::{Store, View};
use crate::engine::index::ClusterIndex;
use crate::manifests::{collect_files, for_each_document, ManifestError};
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Namespace assumed for manifests that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A store loaded from a directory of manifests.
pub struct FileStore {
    dir: PathBuf,
    index: ArcSwap<ClusterIndex>,
    fingerprint: std::sync::Mutex<Vec<(PathBuf, Option<SystemTime>, u64)>>,
}

/// Why the manifests could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    /// Reading or parsing failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// An object could not be indexed.
    #[error("{0}")]
    Objects(String),
}

impl FileStore {
    /// Load the store from `dir`; fails when the initial load fails.
    pub fn load(dir: &Path) -> Result<Self, FileStoreError> {
        let fingerprint = fingerprint(dir)?;
        let index = build(dir)?;
        Ok(FileStore {
            dir: dir.to_owned(),
            index: ArcSwap::from_pointee(index),
            fingerprint: std::sync::Mutex::new(fingerprint),
        })
    }

    /// Reload if any file changed (by path, mtime or size). `Ok(true)` when a new index was swapped in;
    /// on error the previous index stays in place.
    pub fn reload_if_changed(&self) -> Result<bool, FileStoreError> {
        let now = fingerprint(&self.dir)?;
        let mut last = self
            .fingerprint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == now {
            return Ok(false);
        }
        // Record the attempt even if it fails, so a broken file is reported once, not every poll.
        *last = now;
        drop(last);
        let index = build(&self.dir)?;
        self.index.store(Arc::new(index));
        Ok(true)
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Build the index streaming: each document is indexed and dropped as it is read, so a load
/// holds the index plus one file, not every parsed document (and a reload, the old index too).
fn build(dir: &Path) -> Result<ClusterIndex, FileStoreError> {
    let mut index = ClusterIndex::new();
    let mut errors = Vec::new();
    for_each_document(&[dir.to_owned()], |d| {
        if let Err(p) = index_document(&mut index, &d, DEFAULT_NAMESPACE) {
            errors.push(p.to_string());
        }
    })?;
    if !errors.is_empty() {
        return Err(FileStoreError::Objects(errors.join("; ")));
    }
    Ok(index)
}

fn fingerprint(dir: &Path) -> Result<Vec<(PathBuf, Option<SystemTime>, u64)>, FileStoreError> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    // metadata() follows symlinks, so a ConfigMap volume's `..data` swap shows up as a change.
    Ok(files
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok();
            let mtime = m.as_ref().and_then(|m| m.modified().ok());
            let len = m.map_or(0, |m| m.len());
            (f, mtime, len)
        })
        .collect())
}

impl Store for FileStore {
    fn view(&self) -> View<'_> {
        View::Shared(self.index.load_full())
    }

    fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: ns}\ntype: kubernetes.io/dockerconfigjson\ndata: {.dockerconfigjson: eyJhdXRocyI6eyJyLmlvIjp7ImF1dGgiOiJkVHB3In19fQ==}\n";

    #[test]
    fn a_broken_file_keeps_the_last_good_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SECRET).unwrap();
        let store = FileStore::load(dir.path()).unwrap();
        assert_eq!(store.view().secret_count(), 1);
        // The reader check shares: a duplicate key, a template, a scalar document, bad JSON.
        for (i, broken) in [
            "kind: Secret\nmetadata: {name: b, namespace: ns}\nmetadata: {name: c}\n",
            "{{- if .Values.x }}\nkind: Secret\n{{- end }}\n",
            "kind: Secret\nmetadata: {name: b, namespace: ns}\n---\njust text\n",
        ]
        .into_iter()
        .enumerate()
        {
            let f = dir.path().join(format!("b{i}.yaml"));
            std::fs::write(&f, broken).unwrap();
            assert!(store.reload_if_changed().is_err(), "{broken:?}");
            assert_eq!(store.view().secret_count(), 1, "{broken:?}");
            std::fs::remove_file(&f).unwrap();
        }
        std::fs::write(dir.path().join("c.json"), "{\"kind\": \"Secret\",}").unwrap();
        assert!(store.reload_if_changed().is_err());
        std::fs::remove_file(dir.path().join("c.json")).unwrap();
        // Mended: the new state is read.
        std::fs::write(
            dir.path().join("b.yaml"),
            SECRET.replace("name: a", "name: b"),
        )
        .unwrap();
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(store.view().secret_count(), 2);
    }
}
