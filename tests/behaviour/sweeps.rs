//! The sweeper and the catch-ups the worker hands it, on every backend.

use scim_relay_core::config::TargetProfile;
use scim_relay_core::envelope::Source;
use scim_relay_core::sweeper::{FeedKind, FeedOutcome, SweepReport};
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{graph_lifecycle, GRAPH_SUBSCRIPTION};

fn feed(report: &SweepReport, source: Source, kind: FeedKind) -> FeedOutcome {
    report
        .reconciliation
        .iter()
        .find(|f| f.source == source && f.feed == kind)
        .map(|f| f.outcome.clone())
        .unwrap_or_else(|| panic!("no {source:?} {kind:?} feed in {report:?}"))
}

async fn active(d: &Deployment, user_name: &str) -> Option<bool> {
    d.target
        .user(user_name)
        .await
        .and_then(|u| u["active"].as_bool())
}

pub async fn a_lost_okta_event_is_caught_up_by_the_sweeper(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.okta.app_id = Some("0oaAPP".into());
    })
    .await;
    for id in ["00uP1", "00uP2", "00uP3"] {
        let email = format!("{}@example.com", id.to_lowercase());
        d.idp
            .set_okta_user(id, "ACTIVE", Some(&email), "Sco", "Ped", None);
        d.idp.assign_okta_app("0oaAPP", id, true);
    }
    let report = d.sweep().await;
    d.settle().await;
    assert!(
        matches!(
            feed(&report, Source::Okta, FeedKind::Users),
            FeedOutcome::Enqueued {
                users: 3,
                full: true,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(active(&d, "00up1@example.com").await, Some(true));
    // Unassigned and deleted, both hooks lost: the System Log has them.
    d.idp.assign_okta_app("0oaAPP", "00uP1", false);
    d.idp.remove_okta_user("00uP2");
    let report = d.sweep().await;
    d.settle().await;
    assert!(
        matches!(
            feed(&report, Source::Okta, FeedKind::Memberships),
            FeedOutcome::Enqueued { users, .. } if users >= 2
        ),
        "{report:?}"
    );
    assert_eq!(
        active(&d, "00up1@example.com").await,
        Some(false),
        "out of scope"
    );
    assert_eq!(
        active(&d, "00up2@example.com").await,
        Some(false),
        "deleted"
    );
    assert_eq!(active(&d, "00up3@example.com").await, Some(true));
    assert_eq!(d.target.count("DELETE"), 0);
    d.finish().await;
}

/// A `missed` lifecycle event: with a delta position, the worker reads the changes at once;
/// without one, a full pass is owed to the next scheduled sweep (no directory-wide read, no
/// scan of the store inside a worker).
pub async fn a_missed_graph_lifecycle_event_catches_up_inside_the_worker(b: Backend) {
    let deployment = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    // Two distinct notifications (Graph would send them at different times).
    let missed = |at: &str| {
        let mut n = graph_lifecycle(GRAPH_SUBSCRIPTION, CLIENT_STATE, "missed");
        n["value"][0]["subscriptionExpirationDateTime"] = at.into();
        serde_json::to_vec(&n).expect("json")
    };
    let d = &deployment;
    let post = |body: Vec<u8>| async move {
        let headers = [("Content-Type", "application/json")];
        let (status, answer) = d.request("POST", "/entra", None, &headers, &body).await;
        assert_eq!(status, 202, "{answer}");
        d.settle().await;
    };
    d.idp
        .set_graph_user("m1", "m1@contoso.com", true, "Miss Ed", None);

    // No position yet: the worker reads nothing and owes a full pass to the sweeper.
    post(missed("2026-12-20T10:00:00Z")).await;
    assert_eq!(
        d.idp.delta_requests(),
        0,
        "no directory-wide read in the worker"
    );
    assert_eq!(active(d, "m1@contoso.com").await, None);
    let report = d.sweep().await;
    d.settle().await;
    assert!(
        matches!(
            feed(&report, Source::Entra, FeedKind::Users),
            FeedOutcome::Enqueued { full: true, .. }
        ),
        "{report:?}"
    );
    assert_eq!(active(d, "m1@contoso.com").await, Some(true));

    // With a position: the changes since are read inside the worker, before any sweep.
    d.idp
        .set_graph_user("m2", "m2@contoso.com", true, "Miss Ed", None);
    let reads = d.idp.delta_requests();
    post(missed("2026-12-21T10:00:00Z")).await;
    assert!(d.idp.delta_requests() > reads);
    assert_eq!(active(d, "m2@contoso.com").await, Some(true));
    assert!(d.dead_letters().await.is_empty());
    deployment.finish().await;
}
