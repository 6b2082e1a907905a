//! The standalone HTTP front: `/healthz`, and everything else through the shared ingress.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use scim_relay_core::ingress::{Ingress, IngressError, IngressRequest, MAX_BODY_BYTES};
use scim_relay_core::sqlite::SqliteDb;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use crate::worker_loop::CredentialHealth;

#[derive(Clone)]
pub struct AppState {
    pub ingress: Arc<Ingress>,
    pub db: SqliteDb,
    /// Wakes the worker when something was enqueued.
    pub wake: Arc<Notify>,
    pub health: watch::Receiver<CredentialHealth>,
}

pub async fn serve(listener: TcpListener, state: AppState, mut stopped: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .fallback(relay)
        .with_state(state);
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("HTTP server stopped: {e}");
    }
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

async fn relay(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // Read one byte past the limit so an oversize body is told apart from one at the limit.
    let body = match to_bytes(body, MAX_BODY_BYTES + 1).await {
        Ok(b) => b.to_vec(),
        Err(_) => return reply(IngressError::TooLarge.into_response()),
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

fn reply(answer: scim_relay_core::ingress::IngressResponse) -> Response {
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
