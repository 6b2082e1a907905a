//! The inbound Lambda: API Gateway (HTTP API) → verified, signed triggers on SQS.

use std::sync::Arc;

use lambda_http::{Body, Error, Request, RequestExt, Response};
use scim_relay_core::aws::sqs_queue::SqsQueue;
use scim_relay_core::clock::SystemClock;
use scim_relay_core::config::{required, Settings};
use scim_relay_core::ingress::{Ingress, IngressRequest, IngressResponse};
pub use scim_relay_core::refresh::{Refreshing, SECRETS_TTL};

/// Builds ingress from the environment: settings, secrets resolved from their ARNs, SQS.
pub async fn init() -> Result<Ingress, Error> {
    let mut settings = Settings::from_env()?;
    let sdk = scim_relay_core::aws::sdk_config().await;
    scim_relay_core::aws::resolve_secrets(&mut settings, &sdk).await?;
    settings.check_ingress()?;
    settings.check_aws_ingress()?;
    let url = required(&settings.queue.url, "queue.url")?.to_string();
    let queue = SqsQueue::new(aws_sdk_sqs(&sdk), url);
    Ok(Ingress::from_settings(
        &settings,
        Arc::new(queue),
        Arc::new(SystemClock),
    ))
}

fn aws_sdk_sqs(sdk: &scim_relay_core::aws::SdkConfig) -> scim_relay_core::aws::sqs::Client {
    scim_relay_core::aws::sqs::Client::new(sdk)
}

/// The handler a container runs: ingress as [`init`] builds it, built again once its secrets
/// (the Okta secret, the clientState, the queue key) are [`SECRETS_TTL`] old — and at once
/// when a request is refused for its secret (at most every few seconds): the secret may have
/// been rotated and pasted into Okta since this container read it, and Okta does not retry a
/// `401`.
pub async fn handle_current(
    parts: &Refreshing<Ingress>,
    req: Request,
) -> Result<Response<Body>, Error> {
    let ingress = parts.current(init).await;
    let request = to_ingress_request(&req);
    let answer = ingress.handle(request.clone()).await;
    if answer.status != 401 {
        return Ok(to_response(answer)?);
    }
    match parts.refresh_now(init).await {
        Some(fresh) => {
            tracing::info!(
                "a request was refused for its secret: secrets read again, checked again"
            );
            Ok(to_response(fresh.handle(request).await)?)
        }
        None => Ok(to_response(answer)?),
    }
}

/// The handler: never fails the invocation for a bad request; every refusal is an HTTP answer.
pub async fn handle(ingress: &Ingress, req: Request) -> Result<Response<Body>, Error> {
    let answer = ingress.handle(to_ingress_request(&req)).await;
    Ok(to_response(answer)?)
}

/// API Gateway's request as ingress sees it. The body is already base64-decoded by
/// `lambda_http` when API Gateway marked it `isBase64Encoded`.
pub fn to_ingress_request(req: &Request) -> IngressRequest {
    let raw_path = req.raw_http_path();
    let path = if raw_path.is_empty() {
        req.uri().path().to_string()
    } else {
        raw_path.to_string()
    };
    IngressRequest::from_http(
        req.method(),
        path,
        req.uri().query(),
        req.headers(),
        req.body().as_ref().to_vec(),
    )
}

pub fn to_response(answer: IngressResponse) -> Result<Response<Body>, lambda_http::http::Error> {
    Response::builder()
        .status(answer.status)
        .header("content-type", answer.content_type)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "no-store")
        .body(Body::Text(answer.body))
}
