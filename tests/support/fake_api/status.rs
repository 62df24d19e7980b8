//! `metav1.Status` failures exactly as the API server words them (reason, code, message, details).

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// A failed API call: becomes a `Status` body (and, inside a watch, an `ERROR` event).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP code.
    pub code: u16,
    /// `StatusReason`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `metadata.continue` of the Status (a 410 on an expired continue token carries one).
    pub list_continue: Option<String>,
    /// `details`, when the server sends them.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            list_continue: None,
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404 for a missing object of `resource` (a plural, with `.group` outside core).
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(json!({"name": name, "kind": resource}))
    }

    /// 404 for a path the server does not serve.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 on create of an existing name.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(json!({"name": name, "kind": resource}))
    }

    /// 409 when a resourceVersion precondition does not hold.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(json!({"name": name, "kind": resource}))
    }

    /// 409 when a delete's UID precondition does not hold (apimachinery `Preconditions.Check`).
    pub fn uid_conflict(resource: &str, name: &str, wanted: &str, actual: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": Precondition failed: \
                 UID in precondition: {wanted}, UID in object meta: {actual}"
            ),
        )
        .with_details(json!({"name": name, "kind": resource}))
    }

    /// 422 with one field error.
    pub fn invalid(kind: &str, name: &str, field: &str, detail: &str) -> Self {
        Self::new(422, "Invalid", format!("{kind} \"{name}\" is invalid: {field}: {detail}")).with_details(
            json!({"name": name, "kind": kind, "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}]}),
        )
    }

    /// 422 without a field (e.g. a JSON patch whose `test` failed).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 410 Gone: a resourceVersion or continue token older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410 for a continue token whose snapshot was compacted, worded as etcd3's
    /// `inconsistentContinue` and carrying (in `metadata.continue`) a token that goes on from the
    /// same key at the latest state.
    pub fn continue_expired(next: String) -> Self {
        let mut e = Self::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new \
             list without the continue parameter, or use the continue token in this response to retrieve the \
             remainder of the results. Continuing with the provided token results in an inconsistent list - \
             objects that were created, modified, or deleted between the time the first chunk was returned and \
             now may show up in the list.",
        );
        e.list_continue = Some(next);
        e
    }

    /// 410 for a watch or exact read from before the kept history.
    pub fn too_old(requested: u64, oldest: u64) -> Self {
        Self::expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// 504 for a resourceVersion the server has not reached (it waits 3 s first; the fake does not).
    pub fn too_large(requested: u64, current: u64) -> Self {
        Self::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"))
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }

    /// 500.
    pub fn internal(message: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }

    /// 401 without valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 406 when no `Accept` clause can be served.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"))
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if let Some(c) = &self.list_continue {
            v["metadata"]["continue"] = json!(c);
        }
        if !self.reason.is_empty() {
            v["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }

    /// The HTTP response carrying the `Status`.
    pub fn response(&self) -> Response {
        json_response(
            StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            self.status().to_string(),
        )
    }
}

/// A JSON response.
pub fn json_response(code: StatusCode, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap_or_default()
}
