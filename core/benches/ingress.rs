//! Ingress cost: verify + parse + split + seal + enqueue, for Okta deliveries of 1, 10 and 100
//! events and Graph batches of the same sizes, next to the floor — parsing the same bytes with
//! serde_json and an HMAC-SHA256 over them — so the figure reads as a ratio to the least any
//! verifying receiver must do. `cargo bench -p scim-relay-core --bench ingress`.

use std::sync::Arc;

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use scim_relay_core::clock::SystemClock;
use scim_relay_core::config::Settings;
use scim_relay_core::ingress::{Ingress, IngressRequest};
use scim_relay_core::queue::{Queue, QueueError, QueueMessage};
use scim_relay_core::secret::Secret;
use serde_json::json;
use sha2::Sha256;

const SECRET: &str = "bench-okta-shared-secret";
const STATE: &str = "bench-graph-client-state";

/// Takes everything and keeps nothing: the queue's own cost is measured elsewhere.
struct NullQueue;

#[async_trait]
impl Queue for NullQueue {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        std::hint::black_box(messages);
        Ok(())
    }
}

fn okta_delivery(events: usize) -> Vec<u8> {
    let events: Vec<_> = (0..events)
        .map(|i| {
            json!({
                "uuid": format!("9f4a3b1e-0000-11ef-8000-{i:012}"),
                "published": "2026-11-29T10:00:00.000Z",
                "eventType": "user.account.update_profile",
                "version": "0", "severity": "INFO",
                "displayMessage": "Update user profile for Okta",
                "actor": {"id": "00uADMIN", "type": "User", "alternateId": "admin@example.com", "displayName": "Admin"},
                "client": {"ipAddress": "203.0.113.7", "userAgent": {"rawUserAgent": "Mozilla/5.0"}},
                "outcome": {"result": "SUCCESS"},
                "target": [{"id": format!("00u{i:017}"), "type": "User", "alternateId": format!("user{i}@example.com"), "displayName": "Some One"}],
                "transaction": {"type": "WEB", "id": "X7LB", "detail": {}},
                "debugContext": {"debugData": {"requestUri": "/api/v1/users"}}
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/who8", "eventId": "b3f0",
        "data": {"events": events}, "eventTime": "2026-11-29T10:00:01.000Z", "contentType": "application/json"
    }))
    .unwrap_or_default()
}

fn graph_batch(items: usize) -> Vec<u8> {
    let value: Vec<_> = (0..items)
        .map(|i| {
            let id = format!("1d3b6a1c-0000-4000-8000-{i:012}");
            json!({
                "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                "subscriptionExpirationDateTime": "2026-12-20T10:00:00.0000000+00:00",
                "changeType": "updated", "resource": format!("Users/{id}"),
                "resourceData": {"@odata.type": "#Microsoft.Graph.User", "@odata.id": format!("Users/{id}"), "id": id,
                    "organizationId": "84bd8158-6d4d-4958-8b9f-9d6445542f95", "eventTime": "2026-11-29T01:00:00Z", "sequenceNumber": i},
                "clientState": STATE, "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "value": value })).unwrap_or_default()
}

fn request(path: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> IngressRequest {
    IngressRequest {
        method: "POST".into(),
        path: path.into(),
        query: None,
        headers,
        body,
    }
}

/// The least work a verifying receiver does: parse the JSON, MAC the bytes.
fn floor(body: &[u8]) {
    let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    std::hint::black_box((parsed, mac.finalize()));
}

fn ingress(c: &mut Criterion) {
    let mut settings = Settings::default();
    settings.queue.signing_key = Secret::new("bench-signing-key");
    settings.okta.shared_secret = Secret::new(SECRET);
    settings.entra.client_state = Secret::new(STATE);
    let ingress = Ingress::from_settings(&settings, Arc::new(NullQueue), Arc::new(SystemClock));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("okta");
    for events in [1usize, 10, 100] {
        let body = okta_delivery(events);
        group.throughput(Throughput::Elements(events as u64));
        group.bench_with_input(BenchmarkId::new("ingress", events), &body, |b, body| {
            b.iter(|| {
                let req = request(
                    "/okta",
                    vec![("authorization".into(), SECRET.into())],
                    body.clone(),
                );
                let resp = runtime.block_on(ingress.handle(req));
                assert_eq!(resp.status, 200);
            })
        });
        group.bench_with_input(BenchmarkId::new("floor", events), &body, |b, body| {
            b.iter(|| floor(body))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("graph");
    for items in [1usize, 10, 100] {
        let body = graph_batch(items);
        group.throughput(Throughput::Elements(items as u64));
        group.bench_with_input(BenchmarkId::new("ingress", items), &body, |b, body| {
            b.iter(|| {
                let resp =
                    runtime.block_on(ingress.handle(request("/entra", Vec::new(), body.clone())));
                assert_eq!(resp.status, 202);
            })
        });
        group.bench_with_input(BenchmarkId::new("floor", items), &body, |b, body| {
            b.iter(|| floor(body))
        });
    }
    group.finish();
}

criterion_group!(benches, ingress);
criterion_main!(benches);
