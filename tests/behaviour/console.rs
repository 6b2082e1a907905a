//! `scim-relay status`, run as the operator runs it, on every backend: what it says must be
//! what the deployment holds.

use std::sync::Arc;

use chrono::{DateTime, Duration as Days, Utc};
use scim_relay_core::clock::ManualClock;
use scim_relay_core::secret::Secret;
use scim_relay_core::sweeper::{CredentialCheck, SubscriptionAction};
use scim_relay_tests::datadog::DATADOG_API_KEY;
use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;
use serde_json::{json, Value};

async fn create(d: &Deployment, id: &str, email: Option<&str>) {
    d.idp.set_okta_user(id, "ACTIVE", email, "Sta", "Tus", None);
    d.okta(okta_delivery(
        &format!("ev-create-{id}"),
        "user.lifecycle.create",
        id,
        email.unwrap_or("none"),
    ))
    .await;
}

async fn status_json(d: &Deployment) -> Value {
    let out = d
        .command(&["status", "--output", "json"])
        .await
        .expect("status reads every part");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The line of the text output that `label` starts, without the label.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(label) && l.as_bytes().get(label.len()) == Some(&b' '))
        .map(|l| l[label.len()..].trim())
        .unwrap_or_else(|| panic!("no `{label}` line in\n{text}"))
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub async fn status_shows_queue_dead_letters_breaker_last_sweep_subscription_invitations_and_holds(
    b: Backend,
) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .datadog()
        .start(|s| {
            s.target.api_key = Secret::new(DATADOG_API_KEY);
            // The first lapsed invitation is the last: given up on at the next sweep.
            s.sweep.invite_attempts = 1;
            s.sweep.reconcile = false;
            // Every deprovision waits for an operator.
            s.target.deprovision_limit = 0;
            s.target.deprovision_percent = 0;
            s.entra.notification_url = Some("https://relay.example.com/entra".into());
        })
        .await;

    // Before any sweep, no run is recorded and nothing is wrong.
    let fresh = status_json(&d).await;
    assert_eq!(fresh["last_sweep"], Value::Null, "{fresh:#}");
    assert_eq!(fresh["dead_letters"]["total"], 0);
    assert_eq!(fresh["subscriptions"], json!([]));

    // One invitation that will lapse for good, two that stay pending, one of those users
    // then deactivated in the IdP (held), and one user who cannot be mapped (dead-lettered).
    create(&d, "00uNEVER", Some("never@example.com")).await;
    clock.advance(Days::hours(49));
    create(&d, "00uPENDING", Some("pending@example.com")).await;
    create(&d, "00uLEAVER", Some("leaver@example.com")).await;
    d.idp.set_okta_user(
        "00uLEAVER",
        "DEPROVISIONED",
        Some("leaver@example.com"),
        "Sta",
        "Tus",
        None,
    );
    d.okta(okta_delivery(
        "ev-leave",
        "user.lifecycle.deactivate",
        "00uLEAVER",
        "leaver@example.com",
    ))
    .await;
    assert_eq!(d.held().await.len(), 1, "the deactivation is held");
    create(&d, "00uNOMAIL", None).await;
    assert_eq!(d.dead_letters().await.len(), 1);

    let before = Utc::now();
    let report = d.sweep().await;
    let after = Utc::now();
    d.settle().await;
    assert_eq!(report.credential, CredentialCheck::Accepted);
    assert_eq!(report.invites.unaccepted.len(), 1, "{report:?}");
    let Some(SubscriptionAction::Created { id, expires_at }) =
        report.subscriptions.first().map(|s| s.action.clone())
    else {
        panic!("the sweep makes the users subscription: {report:?}");
    };

    let status = status_json(&d).await;
    let show = format!("{status:#}");
    // When the command looked, to check its figures exactly.
    let at: DateTime<Utc> = serde_json::from_value(status["at"].clone()).expect("at is a time");
    assert_eq!(status["errors"], json!([]), "{show}");
    assert_eq!(status["queue"]["messages"], 0, "{show}");
    match b {
        // SQS tells the age only to CloudWatch; the command says where to look.
        #[cfg(feature = "servers")]
        Backend::Aws => {
            assert_eq!(status["queue"]["oldest_age_seconds"], Value::Null);
            assert!(status["queue"]["oldest_age_metric"]
                .as_str()
                .is_some_and(|m| m.contains("ApproximateAgeOfOldestMessage")));
        }
        _ => assert_eq!(status["queue"]["oldest_age_seconds"], 0, "{show}"),
    }
    assert_eq!(
        status["dead_letters"],
        json!({
            "total": 1,
            "read": 1,
            "reasons": [{
                "reason": "user <id> has no email address, which the target needs as userName",
                "count": 1,
            }],
        }),
        "{show}"
    );
    assert_eq!(
        status["credential_breaker"],
        json!({"open": false, "open_until": null})
    );
    let sweep = &status["last_sweep"];
    let finished: DateTime<Utc> =
        serde_json::from_value(sweep["finished_at"].clone()).expect("finished_at is a time");
    assert!(
        before <= finished && finished <= after,
        "{before} <= {finished} <= {after}"
    );
    assert_eq!(sweep["credential"], "accepted");
    assert_eq!(sweep["invites"]["checked"], 1, "{show}");
    assert_eq!(sweep["invites"]["unaccepted"], 1, "{show}");
    assert_eq!(sweep["deprovisions"]["held_pending"], 1, "{show}");
    assert_eq!(sweep["subscriptions"][0]["action"], "created", "{show}");
    assert_eq!(
        status["subscriptions"],
        json!([{
            "resource": "users",
            "id": id,
            "expires_at": expires_at,
            "expires_in_seconds": (expires_at - at).num_seconds(),
        }]),
        "{show}"
    );
    assert_eq!(
        status["invitations"],
        json!({"pending": 2, "past_expiry": 0, "unaccepted": 1}),
        "{show}"
    );
    assert_eq!(
        status["held"],
        json!({"pending": 1, "approved": 0, "rejected": 0})
    );
    assert!(!show.contains('@'), "no email in the status: {show}");

    // The text says the same, a line per part.
    let text = d.command(&["status"]).await.expect("status reads");
    assert!(!text.contains('@'), "no email in the status:\n{text}");
    assert!(line(&text, "queue").starts_with("0 messages"), "{text}");
    assert_eq!(line(&text, "dead letters"), "1", "{text}");
    assert!(
        text.contains("   1  user <id> has no email address, which the target needs as userName"),
        "{text}"
    );
    assert_eq!(line(&text, "breaker"), "closed", "{text}");
    let last = line(&text, "last sweep");
    assert!(last.starts_with(&utc(finished)), "{text}");
    assert!(last.ends_with("credential accepted"), "{text}");
    assert!(
        text.contains("invitations: 1 checked, 0 re-sent, 0 accepted, 0 withdrawn, 1 given up"),
        "{text}"
    );
    assert!(
        line(&text, "subscriptions").starts_with(&format!("users  expires {}", utc(expires_at))),
        "{text}"
    );
    assert_eq!(
        line(&text, "invitations"),
        "2 pending (0 past expiry), 1 unaccepted",
        "{text}"
    );
    assert!(
        line(&text, "held").starts_with("1 waiting for an operator"),
        "{text}"
    );

    // An open breaker is shown with the time it closes.
    let until = DateTime::<Utc>::from_timestamp(Utc::now().timestamp() + 600, 0).expect("time");
    d.open_breaker(until).await;
    let status = status_json(&d).await;
    assert_eq!(
        status["credential_breaker"],
        json!({"open": true, "open_until": until})
    );
    let text = d.command(&["status"]).await.expect("status reads");
    assert!(
        line(&text, "breaker").starts_with(&format!("OPEN until {}", utc(until))),
        "{text}"
    );
    d.finish().await;
}
