//! What the ingress accepts and refuses, on every backend: nothing unauthenticated or
//! malformed is ever enqueued, and the IdPs' verification handshakes are answered.

use chrono::{SecondsFormat, Utc};
use scim_relay_core::config::TargetProfile;
use scim_relay_core::secret::Secret;
use scim_relay_tests::deployment::{Backend, Deployment, OKTA_SECRET};
use scim_relay_tests::payloads::{okta_delivery, okta_delivery_at};
use serde_json::Value;

pub async fn a_wrong_secret_is_401_and_enqueues_nothing(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp
        .set_okta_user("00uX", "ACTIVE", Some("x@example.com"), "X", "Y", None);
    let delivery = okta_delivery("ev-x", "user.lifecycle.create", "00uX", "x@example.com");
    // Wrong, empty, and the right secret less its last character.
    let prefix = &OKTA_SECRET[..OKTA_SECRET.len() - 1];
    for secret in ["wrong-secret", "", prefix] {
        let (status, _) = d.post_okta(&delivery, secret).await;
        assert_eq!(status, 401, "secret {secret:?}");
    }
    let body = serde_json::to_vec(&delivery).unwrap();
    let (status, _) = d
        .request(
            "POST",
            "/okta",
            None,
            &[("Content-Type", "application/json")],
            &body,
        )
        .await;
    assert_eq!(status, 401, "no header at all");
    let (status, _) = d.request("POST", "/okta", None, &[], b"{not json").await;
    assert_eq!(status, 401, "the secret is checked before the body");
    // The verification GET is guarded by the secret too.
    let (status, _) = d
        .request(
            "GET",
            "/okta",
            None,
            &[
                ("Authorization", "wrong-secret"),
                ("X-Okta-Verification-Challenge", "c"),
            ],
            b"",
        )
        .await;
    assert_eq!(status, 401);
    d.settle().await;
    assert_eq!(d.depth().await, (0, 0), "nothing enqueued");
    assert!(d.target.calls().is_empty());
    assert_eq!(d.idp.total_reads(), 0);

    let (status, body) = d
        .request(
            "GET",
            "/okta",
            None,
            &[
                ("Authorization", OKTA_SECRET),
                ("X-Okta-Verification-Challenge", "challenge-123"),
            ],
            b"",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        serde_json::json!({"verification": "challenge-123"})
    );
    d.finish().await;
}

pub async fn the_graph_handshake_echoes_the_token_as_plain_text(b: Backend) {
    let d = Deployment::start(b).await;
    let answer = d
        .request_with_headers(
            "POST",
            "/entra",
            Some("validationToken=Validation%3a+Testing+client+application+reachability+%3Cscript%3E"),
            &[("Content-Type", "text/plain; charset=utf-8")],
            b"",
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/plain")));
    if b != Backend::Memory {
        // The HTTP fronts (standalone, API Gateway) forbid sniffing the echoed token as HTML.
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(
        answer.body,
        "Validation: Testing client application reachability <script>"
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn malformed_and_oversized_bodies_are_refused_without_enqueueing(b: Backend) {
    let d = Deployment::start(b).await;
    let okta = [("Authorization", OKTA_SECRET)];
    let (status, _) = d.request("POST", "/okta", None, &okta, b"{not json").await;
    assert_eq!(status, 400);
    let (status, _) = d.request("POST", "/entra", None, &[], b"[]").await;
    assert_eq!(status, 400);
    let big = format!(
        "{{\"data\":{{\"events\":[]}},\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let (status, _) = d
        .request("POST", "/okta", None, &okta, big.as_bytes())
        .await;
    assert_eq!(status, 413);
    let (status, _) = d.request("DELETE", "/okta", None, &okta, b"").await;
    assert_eq!(status, 405);
    let (status, _) = d.request("GET", "/nope", None, &[], b"").await;
    assert_eq!(status, 404);
    d.settle().await;
    assert_eq!(d.depth().await, (0, 0), "nothing enqueued");
    if let Some(health) = d.health().await {
        assert_eq!(health["status"], "ok");
        assert_eq!(health["queued"], 0);
    }
    d.finish().await;
}

/// With a directory to re-read, an Okta event's `alternateId` (an email) and `displayName` are
/// of no use to the worker: the queued trigger carries ids only, so neither the queue nor the
/// dead-letter queue (kept for days) holds them.
pub async fn with_a_directory_the_queue_holds_no_email_or_name(b: Backend) {
    let d = Deployment::start(b).await;
    // Unmappable (no email in the directory): the trigger ends in the dead-letter queue as
    // ingress queued it.
    d.idp
        .set_okta_user("00uPII", "ACTIVE", None, "Pat", "Private", None);
    d.okta(okta_delivery(
        "ev-pii",
        "user.lifecycle.create",
        "00uPII",
        "pat.private@example.com",
    ))
    .await;
    let bodies = d.dead_letter_bodies().await;
    assert_eq!(bodies.len(), 1, "{:?}", d.dead_letters().await);
    assert!(bodies[0].contains("00uPII"), "{}", bodies[0]);
    for personal in ["pat.private", "example.com", "Someone"] {
        assert!(
            !bodies[0].contains(personal),
            "{personal} was queued: {}",
            bodies[0]
        );
    }
    d.finish().await;
}

/// In event-content mode the event's own `published` orders changes. A forged event published
/// far in the future must not freeze the user: its time counts as no later than its arrival,
/// so the next real event still applies.
pub async fn a_future_published_time_cannot_freeze_a_user_in_event_content_mode(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.okta.api_token = Secret::default();
        s.okta.use_event_content = true;
    })
    .await;
    let now = || Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let event = |uuid: &str, event_type: &str, published: &str| {
        okta_delivery_at(uuid, event_type, "00uFRZ", "frozen@example.com", published)
    };
    let active = || async {
        d.target
            .user("frozen@example.com")
            .await
            .map(|u| u["active"].clone())
    };

    d.okta(event("f-1", "user.lifecycle.create", &now())).await;
    assert_eq!(active().await, Some(true.into()));
    // Anyone holding the hook secret can post this one.
    d.okta(event(
        "f-2",
        "user.lifecycle.deactivate",
        "2099-01-01T00:00:00.000Z",
    ))
    .await;
    assert_eq!(active().await, Some(false.into()));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    d.okta(event("f-3", "user.lifecycle.reactivate", &now()))
        .await;
    assert_eq!(
        active().await,
        Some(true.into()),
        "the real event after the forged one was taken as older"
    );
    assert_eq!(d.idp.total_reads(), 0, "no directory was read");
    d.finish().await;
}
