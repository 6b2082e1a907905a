//! scim-relay's core: verification, envelopes, mapping and planning as pure code, and the
//! adapters (SQS, DynamoDB, SQLite, the IdP directories, SCIM over HTTP) behind small traits.

pub mod breaker;
pub mod claim_loop;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod directory;
pub mod envelope;
pub mod ingress;
pub mod metrics;
pub mod pii;
pub mod queue;
pub mod scim;
pub mod secret;
pub mod state;
pub mod sweeper;
pub mod work;
pub mod worker;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "outbound")]
pub mod wiring;

/// The HTTP client of the SCIM target's APIs: a whole-request timeout, and a user agent that
/// names the relay in the target's logs.
#[cfg(feature = "outbound")]
pub(crate) fn target_http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("scim-relay/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// A transport error with its causes ("error sending request: connection refused"), without
/// the URL (which may carry a user id or a token in a query).
#[cfg(feature = "outbound")]
pub(crate) fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
