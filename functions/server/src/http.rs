//! The standalone HTTP front: `/healthz`, and everything else through the shared ingress.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use scim_relay_core::ingress::{
    Ingress, IngressError, IngressRequest, IngressResponse, MAX_BODY_BYTES,
};
use scim_relay_core::sqlite::SqliteDb;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use crate::worker_loop::{CredentialHealth, WorkerStats};

#[derive(Clone)]
pub struct AppState {
    pub ingress: Arc<Ingress>,
    pub db: SqliteDb,
    /// Wakes the worker when something was enqueued.
    pub wake: Arc<Notify>,
    pub health: watch::Receiver<CredentialHealth>,
    pub stats: Arc<WorkerStats>,
    /// How long a client has to send a request's headers, and then its body.
    pub read_timeout: Duration,
}

/// Okta gives up on a delivery after 3 s and Graph after 10 s, so no IdP takes longer than this
/// to send a request. A client that does (slowloris: headers or body a byte at a time) would
/// otherwise hold a connection, and its task, for as long as it likes.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 until `stopped`, then lets open connections finish their request.
///
/// Not `axum::serve`: it gives hyper no timer, so hyper's header read timeout never runs.
pub async fn serve(listener: TcpListener, state: AppState, mut stopped: watch::Receiver<bool>) {
    let read_timeout = state.read_timeout;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(relay)
        .with_state(state);
    let mut connections = JoinSet::new();
    let for_connections = stopped.clone();
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop_connection = for_connections.clone();
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let stop = async move {
                let _ = stop_connection.wait_for(|s| *s).await;
            };
            tokio::select! {
                // A client cut off (a timeout, a reset) is not the relay's failure.
                _ = conn.as_mut() => {}
                () = stop => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.depth().await {
        Ok((queued, dead)) => {
            // Ingress keeps accepting while the target refuses the credential, so the process
            // stays healthy; the field tells an operator why nothing is being applied.
            let credential = match *state.health.borrow() {
                CredentialHealth::Unknown => "unknown",
                CredentialHealth::Accepted => "accepted",
                CredentialHealth::Rejected => "rejected",
            };
            Json(serde_json::json!({
                "status": "ok",
                "queued": queued,
                "dead_letters": dead,
                "target_credential": credential
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "error", "error": e.to_string()})),
        )
            .into_response(),
    }
}

/// The figures in the Prometheus text format, on the same address as the webhooks (keep it
/// off the internet with the rest of the relay's non-webhook paths).
async fn metrics(State(state): State<AppState>) -> Response {
    let figures = async {
        let (queued, dead_letters) = state.db.depth().await?;
        let oldest_queued_seconds = state.db.oldest_queued_age(chrono::Utc::now()).await?;
        let held_pending = scim_relay_core::deprovision::held_users(&state.db)
            .await
            .map_err(|e| scim_relay_core::sqlite::SqliteError(e.to_string()))?
            .iter()
            .filter(|h| h.hold.state == scim_relay_core::deprovision::HoldState::Pending)
            .count() as u64;
        Ok::<_, scim_relay_core::sqlite::SqliteError>(crate::prometheus::Figures {
            counts: state.stats.snapshot(),
            queued,
            dead_letters,
            oldest_queued_seconds,
            credential: *state.health.borrow(),
            held_pending,
            apply_latency: state.stats.apply_latency.snapshot(),
        })
    };
    match figures.await {
        Ok(f) => (
            [("content-type", "text/plain; version=0.0.4")],
            crate::prometheus::render(&f),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn relay(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // Read one byte past the limit so an oversize body is told apart from one at the limit.
    let read = tokio::time::timeout(state.read_timeout, to_bytes(body, MAX_BODY_BYTES + 1));
    let body = match read.await {
        Ok(Ok(b)) => b.to_vec(),
        Ok(Err(_)) => return reply(IngressError::TooLarge.into_response()),
        Err(_) => {
            tracing::warn!(path = %parts.uri.path(), "request body not received in time");
            return reply(IngressResponse::json(
                408,
                serde_json::json!({ "error": "the request body was not received in time" }),
            ));
        }
    };
    let request = IngressRequest::from_http(
        &parts.method,
        parts.uri.path().to_string(),
        parts.uri.query(),
        &parts.headers,
        body,
    );
    let answer = state.ingress.handle(request).await;
    if (200..300).contains(&answer.status) {
        state.wake.notify_one();
    }
    reply(answer)
}

fn reply(answer: IngressResponse) -> Response {
    let mut resp = Response::new(Body::from(answer.body));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(answer.content_type),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddr;

    use scim_relay_core::clock::SystemClock;
    use scim_relay_core::envelope::EnvelopeSigner;
    use scim_relay_core::secret::Secret;

    use super::*;

    const QUICK: Duration = Duration::from_millis(300);

    async fn serving() -> (SocketAddr, watch::Sender<bool>, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("scim-relay-http-{}.db", fastrand::u64(..)));
        let db = SqliteDb::open(&path).expect("database");
        let ingress = Ingress::new(
            None,
            None,
            EnvelopeSigner::new(Secret::new("k")),
            Arc::new(db.clone()),
            Arc::new(SystemClock),
        );
        let (_, health) = watch::channel(CredentialHealth::Unknown);
        let state = AppState {
            ingress: Arc::new(ingress),
            db,
            wake: Arc::new(Notify::new()),
            health,
            stats: Default::default(),
            read_timeout: QUICK,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, state, stopped));
        (addr, stop, path)
    }

    /// Sends `request` and reads until the server closes or answers; what came back, and
    /// whether that happened within `wait`.
    async fn send_and_read(
        addr: SocketAddr,
        request: &'static [u8],
        wait: Duration,
    ) -> (bool, String) {
        tokio::task::spawn_blocking(move || {
            let mut conn = std::net::TcpStream::connect(addr).expect("connect");
            conn.set_read_timeout(Some(wait)).expect("timeout");
            conn.write_all(request).expect("write");
            let mut answer = Vec::new();
            let finished = match conn.read_to_end(&mut answer) {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            (finished, String::from_utf8_lossy(&answer).into_owned())
        })
        .await
        .expect("client")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, stop, path) = serving().await;
        let (closed, _) = send_and_read(
            addr,
            b"POST /okta HTTP/1.1\r\nHost: relay\r\nContent-Type: appl",
            Duration::from_secs(5),
        )
        .await;
        assert!(closed, "the connection was still open after 5 s");
        let _ = stop.send(true);
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_that_never_arrives_is_a_408() {
        let (addr, stop, path) = serving().await;
        let (_, answer) = send_and_read(
            addr,
            b"POST /okta HTTP/1.1\r\nHost: relay\r\nContent-Length: 100\r\n\r\n{\"data\"",
            Duration::from_secs(5),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "no 408 within 5 s: {answer}"
        );
        let _ = stop.send(true);
        let _ = std::fs::remove_file(path);
    }
}
