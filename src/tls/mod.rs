//! TLS for the webhook, one job per file:
//! - [`load`]: a certificate chain and key from PEM, checked to belong together;
//! - [`resolver`]: the served certificate, swappable at any time, and the rustls server config;
//! - [`x509`]: reading certificates (validity, subject, key), PEM encoding, client-side verification;
//! - [`issue`]: the one issuance path: a CA, and serving certificates it signs;
//! - [`certs`]: the self-signed default and `pullgate certs`;
//! - [`rotation`]: the pure core of `--self-signed-secret`: given the Secret's data and the time,
//!   what to write;
//! - [`webhook_config`]: pure reads and edits of webhook configurations (service names, caBundle);
//! - [`reconciler`]: the kube adapter: one check of the Secret and the webhook configurations;
//! - [`runner`]: the background task that runs the checks and swaps the served certificate.

pub mod certs;
pub mod issue;
pub mod load;
pub mod reconciler;
pub mod resolver;
pub mod rotation;
pub mod runner;
pub mod webhook_config;
pub mod x509;

pub use load::{load_pem_files, load_pem_pair, LoadedCert, TlsError, MAX_PEM_BYTES};
pub use resolver::{server_config, CertResolver};
