//! Ingress: turns an HTTP request from an IdP into verified, signed triggers on the queue.
//!
//! The same code answers behind API Gateway (the inbound Lambda) and in the standalone server;
//! both convert their request type into an [`IngressRequest`] and back from an
//! [`IngressResponse`]. Nothing but verification, splitting and enqueueing happens here: Okta
//! waits 3 s and Graph counts anything over 2.9 s as slow.

pub mod graph;
pub mod okta;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::Settings;
use crate::envelope::{EnvelopeSigner, Trigger};
use crate::queue::Queue;

pub use graph::{EntraIngress, MAX_NOTIFICATIONS_PER_REQUEST};
pub use okta::OktaIngress;

/// Larger bodies are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An HTTP request, independent of the server it arrived on.
#[derive(Debug, Clone, Default)]
pub struct IngressRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl IngressRequest {
    /// From the `http` crate's types, which API Gateway's (`lambda_http`) and the standalone
    /// server's (`axum`) requests share. Headers that are not valid text are left out.
    pub fn from_http(
        method: &http::Method,
        path: String,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: Vec<u8>,
    ) -> Self {
        Self {
            method: method.as_str().to_string(),
            path,
            query: query.map(str::to_string),
            headers: headers
                .iter()
                .filter_map(|(k, v)| {
                    v.to_str()
                        .ok()
                        .map(|v| (k.as_str().to_string(), v.to_string()))
                })
                .collect(),
            body,
        }
    }

    /// Header lookup; names are case-insensitive (API Gateway lower-cases them, Okta may not).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter, URL-decoded (`+` is a space, as in forms).
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(k) == name).then(|| form_decode(v))
        })
    }
}

fn form_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// An HTTP response, independent of the server that sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl IngressResponse {
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }

    pub fn text(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Every way a request can be refused, with the status the IdP sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngressError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("missing or wrong credential")]
    Unauthorized,
    #[error("body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error(
        "{items} notifications in one request; at most {MAX_NOTIFICATIONS_PER_REQUEST} are taken"
    )]
    TooManyItems { items: usize },
    /// Not one Graph notification of the request verified: a forgery or a rotated clientState.
    /// The reasons are logged; the caller is told no more than for a missing credential.
    #[error("no notification verified (dropped: {0})")]
    NotVerified(graph::Rejections),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("could not enqueue; retry later")]
    Unavailable,
}

impl IngressError {
    /// A body that does not parse. Only the position is reported, never serde's text, which can
    /// quote the input (an email, a token) back to an unauthenticated caller or into the log.
    pub fn malformed(expected: &str, e: &serde_json::Error) -> Self {
        IngressError::BadRequest(format!(
            "not {expected} ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    }

    pub fn status(&self) -> u16 {
        match self {
            IngressError::NotFound => 404,
            IngressError::MethodNotAllowed => 405,
            IngressError::Unauthorized => 401,
            IngressError::TooLarge | IngressError::TooManyItems { .. } => 413,
            IngressError::NotVerified(_) => 401,
            IngressError::BadRequest(_) => 400,
            IngressError::Unavailable => 503,
        }
    }

    pub fn into_response(self) -> IngressResponse {
        let status = self.status();
        let message = match self {
            IngressError::NotVerified(_) => IngressError::Unauthorized.to_string(),
            other => other.to_string(),
        };
        IngressResponse::json(status, serde_json::json!({ "error": message }))
    }
}

/// The ingress service: routes, verifies, splits, signs, enqueues.
pub struct Ingress {
    okta: Option<OktaIngress>,
    entra: Option<EntraIngress>,
    signer: EnvelopeSigner,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
}

impl Ingress {
    pub fn new(
        okta: Option<OktaIngress>,
        entra: Option<EntraIngress>,
        signer: EnvelopeSigner,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            okta,
            entra,
            signer,
            queue,
            clock,
        }
    }

    /// Ingress as configured: an IdP without a secret has no route.
    pub fn from_settings(
        settings: &Settings,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // Ingress logs no addresses today, but the inbound Lambda is a process of its own: any
        // fingerprint it ever logs must match the worker's.
        crate::pii::set_fingerprint_key(&settings.queue.signing_key);
        Self::new(
            OktaIngress::from_settings(settings),
            EntraIngress::from_settings(settings),
            EnvelopeSigner::from_settings(settings),
            queue,
            clock,
        )
    }

    pub async fn handle(&self, req: IngressRequest) -> IngressResponse {
        match self.route(&req).await {
            Ok(resp) => resp,
            Err(err) => {
                let status = err.status();
                if status >= 500 {
                    tracing::error!(path = %req.path, status, "ingress failed: {err}");
                } else {
                    tracing::warn!(path = %req.path, status, "ingress refused: {err}");
                }
                err.into_response()
            }
        }
    }

    async fn route(&self, req: &IngressRequest) -> Result<IngressResponse, IngressError> {
        let path = req.path.trim_end_matches('/');
        match (path, req.method.as_str()) {
            ("/okta", "GET") => {
                let okta = self.okta.as_ref().ok_or(IngressError::NotFound)?;
                okta.verification_challenge(req)
            }
            ("/okta", "POST") => {
                let okta = self.okta.as_ref().ok_or(IngressError::NotFound)?;
                okta.verify(req)?;
                check_size(req)?;
                let split = okta.split(&req.body, self.clock.now())?;
                let accepted = self.enqueue(&split.triggers).await?;
                tracing::info!(
                    source = "okta",
                    accepted,
                    ignored = split.ignored,
                    "delivery accepted"
                );
                Ok(IngressResponse::json(
                    200,
                    serde_json::json!({ "accepted": accepted, "ignored": split.ignored }),
                ))
            }
            ("/entra", "POST") => {
                let entra = self.entra.as_ref().ok_or(IngressError::NotFound)?;
                if let Some(handshake) = entra.handshake(req)? {
                    return Ok(handshake);
                }
                check_size(req)?;
                let split = entra.split(&req.body, self.clock.now())?;
                if split.triggers.is_empty() && split.rejected.total() > 0 {
                    // Every item failed verification: a forgery or a rotated clientState.
                    return Err(IngressError::NotVerified(split.rejected));
                }
                let accepted = self.enqueue(&split.triggers).await?;
                tracing::info!(
                    source = "entra",
                    accepted,
                    rejected = split.rejected.total(),
                    reasons = %split.rejected,
                    ignored = split.ignored,
                    "notifications accepted"
                );
                Ok(IngressResponse::json(
                    202,
                    serde_json::json!({ "accepted": accepted, "ignored": split.ignored }),
                ))
            }
            ("/okta" | "/entra", _) => Err(IngressError::MethodNotAllowed),
            _ => Err(IngressError::NotFound),
        }
    }

    async fn enqueue(&self, triggers: &[Trigger]) -> Result<usize, IngressError> {
        if triggers.is_empty() {
            return Ok(0);
        }
        let messages: Vec<_> = triggers.iter().map(|t| self.signer.seal(t)).collect();
        self.queue.enqueue(&messages).await.map_err(|err| {
            tracing::error!("enqueue failed: {err}");
            IngressError::Unavailable
        })?;
        Ok(messages.len())
    }
}

/// An event cannot have happened after it arrived. A `published` time in the future (a forged
/// event, or an IdP clock far ahead) would make every real event after it look older, and in
/// event-content mode an older event changes nothing: the user would be frozen until that time.
fn clamp_published(published: DateTime<Utc>, received: DateTime<Utc>) -> DateTime<Utc> {
    published.min(received)
}

fn check_size(req: &IngressRequest) -> Result<(), IngressError> {
    if req.body.len() > MAX_BODY_BYTES {
        Err(IngressError::TooLarge)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_body_is_not_echoed_back() {
        let e = serde_json::from_str::<std::collections::HashMap<String, u32>>(
            r#"{"jane.doe@example.com": "secret-token"}"#,
        )
        .unwrap_err();
        let message = IngressError::malformed("a thing", &e).to_string();
        assert!(
            !message.contains("secret-token") && !message.contains("jane"),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn headers_are_case_insensitive_and_query_is_form_decoded() {
        let req = IngressRequest {
            headers: vec![("X-Okta-Verification-Challenge".into(), "abc".into())],
            query: Some("a=1&validationToken=Validation%3a+Testing+x%2By".into()),
            ..Default::default()
        };
        assert_eq!(req.header("x-okta-verification-challenge"), Some("abc"));
        assert_eq!(
            req.query_param("validationToken").as_deref(),
            Some("Validation: Testing x+y")
        );
        assert_eq!(req.query_param("missing"), None);
    }
}
