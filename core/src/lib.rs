//! scim-relay's core: verification, envelopes, mapping and planning as pure code, and the
//! adapters (SQS, DynamoDB, SQLite, the IdP directories, SCIM over HTTP) behind small traits.

pub mod attributes;
pub mod breaker;
pub mod claim_loop;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod deprovision;
pub mod directory;
pub mod envelope;
pub mod history;
pub mod ingress;
pub mod metrics;
pub mod model;
pub mod pii;
pub mod queue;
pub mod refresh;
pub mod scim;
pub mod secret;
pub mod state;
pub mod sweeper;
pub mod work;
pub mod worker;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod lambda_log;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "outbound")]
pub mod wiring;

/// The HTTP client of every API the relay calls with a credential (the SCIM target, Datadog's
/// Users API, Okta, Graph): a whole-request timeout, a user agent that names the relay in the
/// other side's logs, and no redirects. A redirect is answered as the status it is: following
/// it would send the credential to wherever the answer points (reqwest drops `Authorization`
/// across hosts, but not Datadog's `DD-API-KEY` / `DD-APPLICATION-KEY`).
#[cfg(feature = "outbound")]
pub fn credentialed_http_client(timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("scim-relay/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// A transport error with its causes ("error sending request: connection refused"), without
/// the URL (which may carry a user id or a token in a query).
#[cfg(feature = "outbound")]
pub fn transport_error(e: reqwest::Error) -> String {
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

#[cfg(all(test, feature = "outbound"))]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_credentialed_client_does_not_follow_a_redirect_elsewhere() {
        // Where a hostile or compromised endpoint would send the credential.
        let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
        let elsewhere_addr = elsewhere.local_addr().unwrap();
        let reached = Arc::new(AtomicUsize::new(0));
        let counter = reached.clone();
        std::thread::spawn(move || {
            for _ in elsewhere.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let redirecting = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/scim/v2/Users", redirecting.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Ok((mut socket, _)) = redirecting.accept() {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request);
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://{elsewhere_addr}/steal\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = socket.write_all(answer.as_bytes());
            }
        });
        let client = super::credentialed_http_client(Duration::from_secs(5)).unwrap();
        let answer = client
            .get(&url)
            .header("DD-API-KEY", "a-key-that-must-stay-home")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 302, "answered as it is");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }
}
