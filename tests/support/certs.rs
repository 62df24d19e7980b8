//! Certificates written by the real `pullgate certs`, once per test process or per test.

use super::paths::{bin, scratch, sweep_shared_dirs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A directory written by `pullgate certs`.
#[derive(Debug, Clone)]
pub struct CertDir {
    /// Where the files are.
    pub dir: PathBuf,
    /// ca.crt.
    pub ca_pem: String,
    /// What `pullgate certs` printed (the caBundle).
    pub ca_bundle: String,
}

impl CertDir {
    /// The serving certificate (tls.crt).
    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }
    /// The serving key (tls.key).
    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

/// Run `pullgate certs --out DIR` (the real binary) and read the CA back.
pub fn make_certs(dir: &Path) -> CertDir {
    let out = Command::new(bin())
        .args(["certs", "--out"])
        .arg(dir)
        .output()
        .expect("run pullgate certs");
    assert!(
        out.status.success(),
        "pullgate certs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    CertDir {
        dir: dir.to_owned(),
        ca_pem,
        ca_bundle: String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned(),
    }
}

/// One certificate directory per test process.
pub fn shared_certs() -> &'static CertDir {
    static CERTS: OnceLock<(tempfile::TempDir, CertDir)> = OnceLock::new();
    &CERTS
        .get_or_init(|| {
            sweep_shared_dirs();
            let d = scratch("shared-certs");
            let c = make_certs(d.path());
            (d, c)
        })
        .1
}
