//! `pullgate uninstall-webhooks`: delete the release's webhook configurations by name, so that an
//! uninstall never leaves the API server calling a webhook that is gone. The chart's pre-delete hook
//! runs it from pullgate's own image (no kubectl image to pull in an air-gapped cluster).
//!
//! A configuration already gone (404) counts as deleted. Transient failures (5xx, 429, transport
//! errors, a request over its deadline) are retried a bounded number of times; any other answer
//! (403 above all) fails at once, since retrying cannot change it.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, DeleteParams};
use kube::Client;
use std::fmt;
use std::time::Duration;

/// Deadline of one DELETE request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after the first failed attempt, doubled after each further one up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Which kind of webhook configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A MutatingWebhookConfiguration.
    Mutating,
    /// A ValidatingWebhookConfiguration.
    Validating,
}

impl Kind {
    /// The resource as kubectl names it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Mutating => "mutatingwebhookconfiguration",
            Kind::Validating => "validatingwebhookconfiguration",
        }
    }
}

/// One configuration to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.resource(), self.name)
    }
}

/// What became of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// This run deleted it.
    Deleted,
    /// It did not exist (deleted before, or never created).
    AlreadyGone,
}

/// Why a configuration could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// The API server refused for good (403 and other non-transient answers).
    #[error("deleting {target}: the API server answered {code} {reason}: {message}{hint}; delete it by hand: kubectl delete {target}", hint = hint(*.code))]
    Refused {
        /// The configuration.
        target: Target,
        /// HTTP status.
        code: u16,
        /// Status reason (e.g. Forbidden).
        reason: String,
        /// Status message.
        message: String,
    },
    /// Every attempt failed with a transient error.
    #[error("deleting {target}: gave up after {attempts} attempts, last error: {last}; delete it by hand: kubectl delete {target}")]
    GaveUp {
        /// The configuration.
        target: Target,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        last: TransientError,
    },
}

/// A failure worth another attempt.
#[derive(Debug, thiserror::Error)]
pub enum TransientError {
    /// The API server answered 5xx or 429.
    #[error("{}", status_text(.0))]
    Status(#[source] kube::Error),
    /// Transport, TLS, authentication-exec and decoding errors: the connection may recover.
    #[error(transparent)]
    Client(kube::Error),
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout(#[source] tokio::time::error::Elapsed),
}

/// `503 ServiceUnavailable: message` for an API answer, kube's own text otherwise.
fn status_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

fn hint(code: u16) -> &'static str {
    if code == 403 {
        " (the ServiceAccount running this needs the delete verb on exactly this resource name)"
    } else {
        ""
    }
}

/// What one attempt showed.
enum Attempt {
    Done(Removed),
    Retry(TransientError),
    Refused {
        code: u16,
        reason: String,
        message: String,
    },
}

/// Classify the result of one DELETE.
fn classify<T>(result: Result<Result<T, kube::Error>, tokio::time::error::Elapsed>) -> Attempt {
    match result {
        Ok(Ok(_)) => Attempt::Done(Removed::Deleted),
        Ok(Err(kube::Error::Api(s))) if s.is_not_found() => Attempt::Done(Removed::AlreadyGone),
        Ok(Err(e @ kube::Error::Api(_))) if is_transient(&e) => {
            Attempt::Retry(TransientError::Status(e))
        }
        Ok(Err(kube::Error::Api(s))) => Attempt::Refused {
            code: s.code,
            reason: s.reason,
            message: s.message,
        },
        // Transport, TLS, authentication-exec and decoding errors: the connection may recover.
        Ok(Err(e)) => Attempt::Retry(TransientError::Client(e)),
        Err(elapsed) => Attempt::Retry(TransientError::Timeout(elapsed)),
    }
}

/// 429 and 5xx answers: the API server may answer differently soon.
fn is_transient(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 429 || s.code >= 500)
}

/// The pause before attempt `n + 1` (after `n` failed ones, `n >= 1`).
pub fn backoff(n: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

async fn delete_once(client: &Client, target: &Target) -> Attempt {
    let dp = DeleteParams::default();
    match target.kind {
        Kind::Mutating => {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            classify(tokio::time::timeout(REQUEST_TIMEOUT, api.delete(&target.name, &dp)).await)
        }
        Kind::Validating => {
            let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            classify(tokio::time::timeout(REQUEST_TIMEOUT, api.delete(&target.name, &dp)).await)
        }
    }
}

/// Delete one configuration, retrying transient failures up to `attempts` times in all.
pub async fn delete(
    client: &Client,
    target: &Target,
    attempts: u32,
) -> Result<Removed, UninstallError> {
    let attempts = attempts.max(1);
    let mut n = 1;
    loop {
        match delete_once(client, target).await {
            Attempt::Done(r) => return Ok(r),
            Attempt::Refused {
                code,
                reason,
                message,
            } => {
                return Err(UninstallError::Refused {
                    target: target.clone(),
                    code,
                    reason,
                    message,
                })
            }
            Attempt::Retry(last) => {
                tracing::warn!(%target, attempt = n, error = %last, "deleting the webhook configuration failed");
                if n >= attempts {
                    return Err(UninstallError::GaveUp {
                        target: target.clone(),
                        attempts,
                        last,
                    });
                }
                tokio::time::sleep(backoff(n)).await;
                n += 1;
            }
        }
    }
}

/// Delete every target (each is tried even when an earlier one failed); one result per target.
pub async fn delete_all(
    client: &Client,
    targets: &[Target],
    attempts: u32,
) -> Vec<(Target, Result<Removed, UninstallError>)> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        out.push((t.clone(), delete(client, t, attempts).await));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(
        code: u16,
        reason: &str,
    ) -> Result<Result<(), kube::Error>, tokio::time::error::Elapsed> {
        let mut s = Status::failure("m", reason);
        s.code = code;
        Ok(Err(kube::Error::Api(s.boxed())))
    }

    #[test]
    fn not_found_is_success_and_only_transient_errors_retry() {
        assert!(matches!(
            classify(Ok(Ok::<(), kube::Error>(()))),
            Attempt::Done(Removed::Deleted)
        ));
        assert!(matches!(
            classify(api(404, "NotFound")),
            Attempt::Done(Removed::AlreadyGone)
        ));
        for code in [429, 500, 503] {
            match classify(api(code, "x")) {
                Attempt::Retry(e) => {
                    assert_eq!(e.to_string(), format!("{code} x: m"));
                    assert!(
                        std::error::Error::source(&e).is_some(),
                        "{code}: source lost"
                    );
                }
                _ => panic!("{code} not retried"),
            }
        }
        for code in [400, 401, 403, 409, 422] {
            assert!(
                matches!(classify(api(code, "x")), Attempt::Refused { code: c, .. } if c == code),
                "{code}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_refusal_names_the_object_and_the_manual_fix() {
        let e = UninstallError::Refused {
            target: Target {
                kind: Kind::Validating,
                name: "pullgate-validating".into(),
            },
            code: 403,
            reason: "Forbidden".into(),
            message: "cannot delete".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("validatingwebhookconfiguration/pullgate-validating"),
            "{text}"
        );
        assert!(text.contains("403 Forbidden"), "{text}");
        assert!(text.contains("resource name"), "{text}");
        assert!(
            text.ends_with("kubectl delete validatingwebhookconfiguration/pullgate-validating"),
            "{text}"
        );
    }
}
