//! Okta deliveries and Graph notifications in their documented shapes.

use serde_json::{json, Value};

/// An Okta event hook delivery with one event about one user.
pub fn okta_delivery(event_uuid: &str, event_type: &str, user_id: &str, email: &str) -> Value {
    okta_delivery_at(
        event_uuid,
        event_type,
        user_id,
        email,
        "2026-08-20T14:02:09.870Z",
    )
}

/// The same, published at a given time.
pub fn okta_delivery_at(
    event_uuid: &str,
    event_type: &str,
    user_id: &str,
    email: &str,
    published: &str,
) -> Value {
    json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": "https://example.okta.com/api/v1/eventHooks/who8vt36qfNpCGz9H1e6",
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventTime": "2026-08-20T14:02:11.412Z",
        "contentType": "application/json",
        "data": {"events": [{
            "uuid": event_uuid,
            "published": published,
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@example.com", "displayName": "Admin"},
            "outcome": {"result": "SUCCESS", "reason": null},
            "target": [{"id": user_id, "type": "User", "alternateId": email, "displayName": "Someone", "detailEntry": null}],
            "transaction": {"type": "WEB", "id": "X7LB", "detail": {}},
            "debugContext": {"debugData": {"requestUri": "/api/v1/users"}}
        }]}
    })
}

pub const GRAPH_TENANT: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
pub const GRAPH_SUBSCRIPTION: &str = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07";

/// A Graph change notification collection with one `updated` item about one user.
pub fn graph_notification(user_id: &str, client_state: &str, sequence: u64) -> Value {
    json!({"value": [{
        "subscriptionId": GRAPH_SUBSCRIPTION,
        "subscriptionExpirationDateTime": "2026-12-20T10:00:00.0000000+00:00",
        "changeType": "updated",
        "resource": format!("Users/{user_id}"),
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.User",
            "@odata.id": format!("Users/{user_id}"),
            "id": user_id,
            "organizationId": GRAPH_TENANT,
            "eventTime": "2026-11-29T01:00:00.0000000Z",
            "sequenceNumber": sequence
        },
        "clientState": client_state,
        "tenantId": GRAPH_TENANT
    }]})
}

/// A Graph `updated` notification about one user carrying only the documented ids: nothing in
/// it tells one change of the user from the next, so two changes can arrive byte-identical.
pub fn graph_notification_ids_only(user_id: &str, client_state: &str) -> Value {
    let mut notification = graph_notification(user_id, client_state, 0);
    if let Some(data) = notification["value"][0]["resourceData"].as_object_mut() {
        data.remove("eventTime");
        data.remove("sequenceNumber");
    }
    notification
}

/// A Graph lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`, `missed`).
pub fn graph_lifecycle(subscription_id: &str, client_state: &str, event: &str) -> Value {
    json!({"value": [{
        "subscriptionId": subscription_id,
        "subscriptionExpirationDateTime": "2026-12-20T10:00:00.0000000+00:00",
        "tenantId": GRAPH_TENANT,
        "clientState": client_state,
        "lifecycleEvent": event
    }]})
}

/// An API Gateway HTTP API (payload 2.0) event, as the inbound Lambda receives it.
pub fn apigw_v2_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    base64: bool,
) -> Value {
    use base64::Engine;
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.to_string())))
        .collect();
    let body = body.map(|b| {
        if base64 {
            base64::engine::general_purpose::STANDARD.encode(b)
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    });
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "relayapi",
            "domainName": "relayapi.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "relayapi",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "Okta-Event-Hooks"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "29/Nov/2026:01:00:00 +0000",
            "timeEpoch": 1_764_378_000_000u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}
