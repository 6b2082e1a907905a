//! How a target's answer is classified. One table, so every caller retries, parks or alarms the
//! same way (RFC 7644 §3.12, Datadog's error body and rate-limit headers).

use std::time::Duration;

use serde::Deserialize;

use crate::pii::redact_emails;

/// The longest wait a target's Retry-After / X-RateLimit-Reset can impose.
pub const MAX_WAIT_SECONDS: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimFailure {
    /// 5xx, 429, timeouts, connection failures: try again later.
    Retryable,
    /// 400 and other 4xx: the request itself is wrong; retrying cannot help.
    Permanent,
    /// 401/403: the target's credential is broken. Stop and alarm; do not burn the queue.
    Credential,
    /// 409: the resource exists (create): look it up and adopt it.
    Conflict,
    /// 404: the resource is gone.
    NotFound,
    /// A look-up found several resources for one name: the relay refuses to pick one (nor
    /// will it ever act on either for that user).
    Ambiguous,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SCIM {}: {detail}", status.map_or_else(|| "request failed".to_string(), |s| s.to_string()))]
pub struct ScimError {
    pub failure: ScimFailure,
    pub status: Option<u16>,
    pub detail: String,
    /// How long the target asked us to wait (Retry-After or X-RateLimit-Reset).
    pub retry_after: Option<Duration>,
}

impl ScimError {
    pub fn transport(detail: impl Into<String>) -> Self {
        Self {
            failure: ScimFailure::Retryable,
            status: None,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<String>,
    #[serde(rename = "scimType", default)]
    scim_type: Option<String>,
    /// Datadog: `{"errors": ["Bad Request"]}`.
    #[serde(default)]
    errors: Option<Vec<serde_json::Value>>,
}

/// Classifies a non-success response. `retry_after` and `rate_limit_reset` are the raw header
/// values; both are read as seconds (an HTTP-date Retry-After falls back to backoff).
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    rate_limit_reset: Option<&str>,
    body: &str,
) -> ScimError {
    let failure = match status {
        401 | 403 => ScimFailure::Credential,
        404 => ScimFailure::NotFound,
        409 => ScimFailure::Conflict,
        // 412: the resource changed since we read its version; the retry reads it again.
        408 | 412 | 425 | 429 => ScimFailure::Retryable,
        s if s >= 500 => ScimFailure::Retryable,
        _ => ScimFailure::Permanent,
    };
    let wait = [retry_after, rate_limit_reset]
        .into_iter()
        .flatten()
        .find_map(|v| v.trim().parse::<u64>().ok())
        // A target's word is not trusted beyond an hour; the queue retries after that anyway.
        .map(|secs| Duration::from_secs(secs.min(MAX_WAIT_SECONDS)));
    ScimError {
        failure,
        status: Some(status),
        detail: redact_emails(&describe(body)),
        retry_after: if failure == ScimFailure::Retryable {
            wait
        } else {
            None
        },
    }
}

fn describe(body: &str) -> String {
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody {
            detail,
            scim_type,
            errors,
        }) => {
            let mut parts = Vec::new();
            if let Some(t) = scim_type {
                parts.push(format!("scimType={t}"));
            }
            if let Some(d) = detail {
                parts.push(d);
            }
            for e in errors.into_iter().flatten() {
                parts.push(e.as_str().map_or_else(|| e.to_string(), str::to_string));
            }
            if parts.is_empty() {
                body.to_string()
            } else {
                parts.join("; ")
            }
        }
        Err(_) => body.to_string(),
    };
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_table() {
        let cases = [
            (500, ScimFailure::Retryable),
            (502, ScimFailure::Retryable),
            (503, ScimFailure::Retryable),
            (429, ScimFailure::Retryable),
            (408, ScimFailure::Retryable),
            (412, ScimFailure::Retryable),
            (400, ScimFailure::Permanent),
            (422, ScimFailure::Permanent),
            (401, ScimFailure::Credential),
            (403, ScimFailure::Credential),
            (404, ScimFailure::NotFound),
            (409, ScimFailure::Conflict),
        ];
        for (status, failure) in cases {
            assert_eq!(
                classify(status, None, None, "").failure,
                failure,
                "{status}"
            );
        }
    }

    #[test]
    fn rate_limit_waits_come_from_retry_after_or_datadog_headers() {
        assert_eq!(
            classify(429, Some("7"), None, "").retry_after,
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            classify(429, None, Some("12"), "").retry_after,
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            classify(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"), None, "").retry_after,
            None
        );
        assert_eq!(classify(400, Some("5"), None, "").retry_after, None);
        assert_eq!(
            classify(429, Some("99999999999999"), None, "").retry_after,
            Some(Duration::from_secs(MAX_WAIT_SECONDS)),
            "an absurd wait is capped"
        );
    }

    #[test]
    fn both_error_body_shapes_are_read_and_emails_hidden() {
        let scim = classify(
            409,
            None,
            None,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"userName jane@example.com exists"}"#,
        );
        assert!(
            scim.detail.contains("scimType=uniqueness"),
            "{}",
            scim.detail
        );
        assert!(!scim.detail.contains("jane@example.com"), "{}", scim.detail);
        let datadog = classify(400, None, None, r#"{"errors":["Bad Request"]}"#);
        assert_eq!(datadog.detail, "Bad Request");
        assert_eq!(classify(500, None, None, "oops").detail, "oops");
    }
}
