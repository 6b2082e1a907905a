//! Shared pieces of the end-to-end tests: the real local servers' addresses (started by
//! `scripts/test.sh`), an IdP fixture server (Okta and Graph have no local server), a counting
//! proxy in front of scim2-server, and payload builders.

pub mod aws;
#[cfg(feature = "servers")]
pub mod aws_relay;
pub mod chaos;
pub mod datadog;
pub mod datadog_teams;
pub mod deployment;
pub mod iam;
pub mod idp;
pub mod memory_relay;
pub mod okta_dpop;
pub mod okta_event_hooks;
pub mod payloads;
pub mod relay;
pub mod rendezvous;
pub mod scim;
#[cfg(feature = "servers")]
pub mod sqlite_relay;
pub mod target;

use std::time::Duration;

/// Reads a variable that `scripts/test.sh` exports. These tests need real servers; run them
/// through that script (it installs and starts them) rather than with a bare `cargo test`.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with ./scripts/test.sh, which starts moto_server and scim2-server")
    })
}

/// Polls `check` until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An answer's headers as (lowercased name, value) pairs.
pub fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}
