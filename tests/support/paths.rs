//! Where things are: the binary under test, the repository, its examples and fixtures, and scratch
//! directories under the target dir.

use std::path::PathBuf;
use std::time::Duration;

/// The `pullgate` binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pullgate")
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// examples/ of the repository.
pub fn examples() -> PathBuf {
    root().join("examples")
}

/// tests/fixtures/ of the repository.
pub fn fixtures_dir() -> PathBuf {
    root().join("tests/fixtures")
}

/// A fresh directory under the target dir (kept for post-mortems; `cargo clean` removes it).
pub fn scratch(name: &str) -> tempfile::TempDir {
    std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).expect("target tmp dir");
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch dir")
}

/// Remove `shared-*` directories of earlier test processes (statics are never dropped, so their
/// temporary directories outlive the process).
pub fn sweep_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && e.file_name().to_string_lossy().starts_with("shared-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
