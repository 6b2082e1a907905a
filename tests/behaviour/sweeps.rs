//! The sweeper and the catch-ups the worker hands it, on every backend.

use std::sync::Arc;

use chrono::Duration as Days;
use scim_relay_core::clock::{Clock, ManualClock};
use scim_relay_core::config::TargetProfile;
use scim_relay_core::envelope::Source;
use scim_relay_core::secret::Secret;
use scim_relay_core::state::{InviteOutcome, UserState};
use scim_relay_core::sweeper::{
    CredentialCheck, FeedKind, FeedOutcome, SubscriptionAction, SweepReport,
};
use scim_relay_tests::datadog::DATADOG_API_KEY;
use scim_relay_tests::deployment::{okta_tenant, Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{
    graph_lifecycle, graph_notification, okta_delivery, GRAPH_SUBSCRIPTION,
};
use serde_json::Value;

fn feed_of(report: &SweepReport, source: Source, kind: FeedKind) -> FeedOutcome {
    report
        .reconciliation
        .iter()
        .find(|f| f.source == source && f.feed == kind)
        .map(|f| f.outcome.clone())
        .unwrap_or_else(|| panic!("no {source:?} {kind:?} feed in {report:?}"))
}

/// The outcome of a source's users feed.
fn feed(report: &SweepReport, source: Source) -> FeedOutcome {
    feed_of(report, source, FeedKind::Users)
}

/// What the run did with the `users` subscription.
fn action(report: &SweepReport) -> Option<SubscriptionAction> {
    report
        .subscriptions
        .iter()
        .find(|s| s.resource == "users")
        .map(|s| s.action.clone())
}

fn enqueued(users: usize, full: bool) -> FeedOutcome {
    FeedOutcome::Enqueued {
        users,
        full,
        vanished: 0,
    }
}

fn aborted(outcome: &FeedOutcome) -> bool {
    matches!(outcome, FeedOutcome::Aborted { .. })
}

async fn okta_state(d: &Deployment, user_id: &str) -> UserState {
    d.recorded(Source::Okta, &okta_tenant(&d.idp), user_id)
        .await
        .expect("user recorded")
}

/// Sweeps, then works what the sweep enqueued.
async fn sweep_and_settle(d: &Deployment) -> SweepReport {
    let report = d.sweep().await;
    d.settle().await;
    report
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
            feed_of(&report, Source::Okta, FeedKind::Users),
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
            feed_of(&report, Source::Okta, FeedKind::Memberships),
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
    // Two `missed` notifications, byte-identical (nothing in one tells it from the next): each
    // is acted on.
    let missed = || {
        serde_json::to_vec(&graph_lifecycle(GRAPH_SUBSCRIPTION, CLIENT_STATE, "missed"))
            .expect("json")
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
    post(missed()).await;
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
            feed_of(&report, Source::Entra, FeedKind::Users),
            FeedOutcome::Enqueued { full: true, .. }
        ),
        "{report:?}"
    );
    assert_eq!(active(d, "m1@contoso.com").await, Some(true));

    // With a position: the changes since are read inside the worker, before any sweep.
    d.idp
        .set_graph_user("m2", "m2@contoso.com", true, "Miss Ed", None);
    let reads = d.idp.delta_requests();
    post(missed()).await;
    assert!(d.idp.delta_requests() > reads);
    assert_eq!(active(d, "m2@contoso.com").await, Some(true));
    assert!(d.dead_letters().await.is_empty());
    deployment.finish().await;
}

pub async fn expired_invitations_are_resent_until_accepted_and_reported_when_never_accepted(
    b: Backend,
) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .datadog()
        .start(|s| {
            s.target.api_key = Secret::new(DATADOG_API_KEY);
            s.sweep.invite_attempts = 2;
            s.sweep.reconcile = false;
        })
        .await;
    let dd = d.target.datadog_fixture();
    for (id, email) in [("00uACC", "acc@example.com"), ("00uNEV", "nev@example.com")] {
        d.idp
            .set_okta_user(id, "ACTIVE", Some(email), "In", "Vited", None);
        d.okta(okta_delivery(
            &format!("ev-{id}"),
            "user.lifecycle.create",
            id,
            email,
        ))
        .await;
    }
    let invite = okta_state(&d, "00uACC")
        .await
        .invite
        .expect("invite recorded");
    assert_eq!(invite.count, 1);
    assert_eq!(invite.expires_at, clock.now() + Days::hours(48));

    // Within 48 hours nothing is due, and the target is not even asked.
    let report = d.sweep().await;
    assert_eq!(report.credential, CredentialCheck::Accepted);
    assert_eq!(report.invites.checked, 0);
    assert_eq!(dd.requests("GET") - 2, 1, "only the credential probe read");

    // Two days on, both are still pending: each gets a new invitation, recorded with the
    // target's expiry.
    clock.advance(Days::hours(49));
    let expiry = clock.now() + Days::hours(48);
    dd.set_invitation_expiry(&expiry.to_rfc3339());
    let report = d.sweep().await;
    assert_eq!(
        (report.invites.checked, report.invites.resent),
        (2, 2),
        "{report:?}"
    );
    assert_eq!(dd.invitations("acc@example.com"), 1);
    assert_eq!(dd.invitations("nev@example.com"), 1);
    let invite = okta_state(&d, "00uNEV").await.invite.expect("invite");
    assert_eq!((invite.count, invite.expires_at), (2, expiry));
    assert_eq!(invite.outcome, None);

    // One signs in; the other lets the second invitation lapse too: reported, not re-sent
    // (invite_attempts = 2).
    dd.accept("acc@example.com");
    clock.advance(Days::hours(49));
    let report = d.sweep().await;
    assert_eq!(report.invites.accepted, 1, "{report:?}");
    assert_eq!(report.invites.resent, 0);
    assert_eq!(report.invites.unaccepted.len(), 1);
    assert!(report.invites.unaccepted[0].ends_with("#00uNEV"));
    assert!(
        !report.invites.unaccepted[0].contains('@'),
        "reported by id, never by email"
    );
    assert_eq!(dd.invitations("nev@example.com"), 1);
    assert!(matches!(
        okta_state(&d, "00uACC")
            .await
            .invite
            .and_then(|i| i.outcome),
        Some(InviteOutcome::Accepted { .. })
    ));
    assert!(matches!(
        okta_state(&d, "00uNEV")
            .await
            .invite
            .and_then(|i| i.outcome),
        Some(InviteOutcome::Unaccepted { .. })
    ));

    // Both left the index: later sweeps find nothing due and send nothing.
    clock.advance(Days::hours(100));
    let report = d.sweep().await;
    assert_eq!(report.invites.checked, 0);
    assert_eq!(dd.invitations("nev@example.com"), 1);
    d.finish().await;
}

pub async fn without_the_datadog_api_key_expired_invitations_are_reported_unchecked(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .datadog()
        .start(|_| {})
        .await;
    let dd = d.target.datadog_fixture();
    d.idp
        .set_okta_user("00uK", "ACTIVE", Some("k@example.com"), "K", "K", None);
    d.okta(okta_delivery(
        "ev-k",
        "user.lifecycle.create",
        "00uK",
        "k@example.com",
    ))
    .await;
    clock.advance(Days::hours(49));
    let report = d.sweep().await;
    assert_eq!(report.invites.unchecked, 1, "{report:?}");
    assert_eq!(report.invites.resent, 0);
    assert_eq!(dd.invitations("k@example.com"), 0);
    assert_eq!(
        okta_state(&d, "00uK").await.invite.and_then(|i| i.outcome),
        None,
        "still pending, still due"
    );
    d.finish().await;
}

pub async fn graph_delta_reconciliation_pages_catches_removals_and_restarts_after_410(b: Backend) {
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    for (id, upn) in [
        ("g1", "g1@contoso.com"),
        ("g2", "g2@contoso.com"),
        ("g3", "g3@contoso.com"),
    ] {
        d.idp
            .set_graph_user(id, upn, true, "Gee Person", Some("Analyst"));
    }

    // First sweep: a full pass over two pages; every user provisioned without any webhook.
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(3, true));
    assert_eq!(d.idp.delta_requests(), 2, "two pages of two");
    for upn in ["g1@contoso.com", "g2@contoso.com", "g3@contoso.com"] {
        assert_eq!(active(&d, upn).await, Some(true), "{upn}");
    }
    // Okta has nobody: a full read that comes back empty is refused, not believed.
    assert!(aborted(&feed(&report, Source::Okta)), "{report:?}");

    // Changes whose notifications never came: an update, a soft and a hard delete.
    d.idp
        .set_graph_user("g1", "g1@contoso.com", true, "Gee Person", Some("Lead"));
    d.idp.soft_delete_graph_user("g2");
    d.idp.hard_delete_graph_user("g3");
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(3, false));
    let g1 = d.target.user("g1@contoso.com").await.expect("g1");
    assert_eq!(g1["title"], "Lead");
    assert_eq!(active(&d, "g2@contoso.com").await, Some(false));
    assert_eq!(active(&d, "g3@contoso.com").await, Some(false));

    // Nothing changed since: an empty incremental pass is a fine answer.
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(0, false));

    // Graph forgot the token (410 Gone): a full pass again, which writes only what differs.
    d.idp.expire_delta_tokens();
    d.idp
        .set_graph_user("g4", "g4@contoso.com", true, "New Person", None);
    let (posts, patches) = (d.target.count("POST"), d.target.count("PATCH"));
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(2, true));
    assert_eq!(active(&d, "g4@contoso.com").await, Some(true));
    assert_eq!(
        (
            d.target.count("POST") - posts,
            d.target.count("PATCH") - patches
        ),
        (1, 0),
        "g4 created, g1 already right: {:?}",
        d.target.calls()
    );
    d.finish().await;
}

/// A delta read that breaks off part-way keeps its position (the next sweep reads the same
/// changes again); what it queued before the break are re-checks of users the directory
/// listed, nothing more. One that comes back empty is not believed: nobody is deactivated.
pub async fn a_read_that_breaks_off_or_comes_back_empty_keeps_its_position_and_deactivates_nobody(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    for id in ["b1", "b2", "b3"] {
        d.idp
            .set_graph_user(id, &format!("{id}@contoso.com"), true, "Bee Person", None);
    }
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(3, true));

    // Three changes, two pages; the second page fails.
    for id in ["b1", "b2", "b3"] {
        d.idp.set_graph_user(
            id,
            &format!("{id}@contoso.com"),
            true,
            "Bee Person",
            Some("Changed"),
        );
    }
    d.idp.fail_delta_request(2);
    let report = d.sweep().await;
    assert!(aborted(&feed(&report, Source::Entra)), "{report:?}");
    assert_eq!(
        d.depth().await,
        (2, 0),
        "the first page's users queued as it was read: re-checks, nothing else"
    );
    d.settle().await;
    let title = |user: Value| user["title"].as_str().map(str::to_string);
    let b3 = d.target.user("b3@contoso.com").await.expect("b3");
    assert_eq!(title(b3), None, "on the page never read");

    // The position was kept: the next sweep reads the same changes again.
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(3, false));
    for id in ["b1", "b2", "b3"] {
        let user = d
            .target
            .user(&format!("{id}@contoso.com"))
            .await
            .expect("user");
        assert_eq!(title(user), Some("Changed".into()));
    }

    // Graph forgets the position and then lists nobody: not believed, nobody deactivated.
    for id in ["b1", "b2", "b3"] {
        d.idp.hard_delete_graph_user(id);
    }
    d.idp.expire_delta_tokens();
    let patches = d.target.count("PATCH");
    let report = sweep_and_settle(&d).await;
    match feed(&report, Source::Entra) {
        FeedOutcome::Aborted { reason } => assert!(reason.contains("no users"), "{reason}"),
        other => panic!("expected an abort, got {other:?}"),
    }
    assert_eq!(d.target.count("PATCH"), patches);
    for id in ["b1", "b2", "b3"] {
        assert_eq!(active(&d, &format!("{id}@contoso.com")).await, Some(true));
    }
    d.finish().await;
}

pub async fn okta_reconciliation_reads_users_changed_since_its_cursor(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| s.target.profile = TargetProfile::Generic)
        .await;
    for id in ["00uR1", "00uR2", "00uR3"] {
        let email = format!("{}@example.com", id.to_lowercase());
        d.idp
            .set_okta_user(id, "ACTIVE", Some(&email), "Ok", "Ta", None);
    }
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Okta), enqueued(3, true));
    assert_eq!(d.idp.okta_list_requests(), 2, "two pages of two");
    assert_eq!(active(&d, "00ur2@example.com").await, Some(true));

    // A suspension whose event was lost. The pass overlaps the newest change it saw before (a
    // minute, for Okta's search index), so that user is looked at again, and left alone.
    d.idp.set_okta_user(
        "00uR2",
        "SUSPENDED",
        Some("00ur2@example.com"),
        "Ok",
        "Ta",
        None,
    );
    let patches = d.target.count("PATCH");
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Okta), enqueued(2, false));
    assert_eq!(active(&d, "00ur2@example.com").await, Some(false));
    assert_eq!(
        d.target.count("PATCH") - patches,
        1,
        "one write for one change"
    );

    // A user deactivated and deleted while both events were lost is in no change feed. The
    // daily full pass misses them among the users the relay left active, and re-checks them.
    d.idp.remove_okta_user("00uR3");
    let report = sweep_and_settle(&d).await;
    assert_eq!(
        feed(&report, Source::Okta),
        enqueued(1, false),
        "only R2 again, through the overlap"
    );
    assert_eq!(active(&d, "00ur3@example.com").await, Some(true));
    clock.advance(Days::hours(25));
    let report = sweep_and_settle(&d).await;
    assert_eq!(
        feed(&report, Source::Okta),
        FeedOutcome::Enqueued {
            users: 3,
            full: true,
            vanished: 1
        },
        "R1 and R2 listed, R3 missing from the list but active on the target"
    );
    assert_eq!(active(&d, "00ur3@example.com").await, Some(false));
    assert_eq!(active(&d, "00ur1@example.com").await, Some(true));
    d.finish().await;
}

pub async fn the_relay_creates_renews_and_recreates_its_graph_subscription(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| {
            s.target.profile = TargetProfile::Generic;
            s.entra.notification_url = Some("https://relay.example.com/entra".into());
            s.sweep.reconcile = false;
        })
        .await;
    d.idp
        .set_graph_user("s1", "s1@contoso.com", true, "Sub Scriber", None);

    // First sweep: created with the relay's clientState, lifecycle events to the same URL, and
    // a delta catch-up (notifications were not flowing before), even with reconcile off.
    let report = sweep_and_settle(&d).await;
    let Some(SubscriptionAction::Created { id, expires_at }) = action(&report) else {
        panic!("{report:?}");
    };
    let created = &d.idp.subscription_creates()[0];
    assert_eq!(created["clientState"], CLIENT_STATE);
    assert_eq!(created["resource"], "users");
    assert_eq!(created["changeType"], "updated,deleted");
    assert_eq!(
        created["lifecycleNotificationUrl"],
        "https://relay.example.com/entra"
    );
    let lifetime = expires_at - clock.now();
    assert!(
        lifetime > Days::days(28) && lifetime <= Days::minutes(41_760),
        "{lifetime}"
    );
    assert_eq!(feed(&report, Source::Entra), enqueued(1, true));
    assert_eq!(active(&d, "s1@contoso.com").await, Some(true));

    // A day later: nothing to do. 26 days in, less than three days are left: renewed.
    clock.advance(Days::days(1));
    let report = d.sweep().await;
    assert!(matches!(
        action(&report),
        Some(SubscriptionAction::Kept { .. })
    ));
    assert!(report.reconciliation.is_empty(), "reconcile is off");
    clock.advance(Days::days(25));
    let report = d.sweep().await;
    let Some(SubscriptionAction::Renewed {
        id: renewed,
        expires_at,
    }) = action(&report)
    else {
        panic!("{report:?}");
    };
    assert_eq!(renewed, id);
    assert!(expires_at - clock.now() > Days::days(28));
    assert_eq!(d.idp.subscription_renewals().len(), 1);

    // Graph dropped it: the renewal finds it gone, and it is created again.
    d.idp.drop_subscriptions();
    clock.advance(Days::days(27));
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(action(&report), Some(SubscriptionAction::Created { ref id, .. }) if id == "sub-2"),
        "{report:?}"
    );

    // Lifecycle events through ingress: reauthorizationRequired renews; subscriptionRemoved
    // recreates and catches up what was missed meanwhile.
    let post = |event: &'static str, sub: &'static str| {
        let body = serde_json::to_vec(&graph_lifecycle(sub, CLIENT_STATE, event)).unwrap();
        let d = &d;
        async move { d.request("POST", "/entra", None, &[], &body).await.0 }
    };
    assert_eq!(post("reauthorizationRequired", "sub-2").await, 202);
    d.settle().await;
    assert_eq!(d.idp.subscription_renewals().last().unwrap().0, "sub-2");
    d.idp.drop_subscriptions();
    d.idp
        .set_graph_user("s1", "s1@contoso.com", false, "Sub Scriber", None);
    assert_eq!(post("subscriptionRemoved", "sub-2").await, 202);
    d.settle().await;
    assert_eq!(d.idp.subscriptions().len(), 1);
    assert_eq!(d.idp.subscriptions()[0]["id"], "sub-3");
    assert_eq!(
        active(&d, "s1@contoso.com").await,
        Some(false),
        "the catch-up applied the change made while no subscription existed"
    );

    // `missed`: notifications were dropped; a delta pass reads what changed meanwhile.
    d.idp
        .set_graph_user("s1", "s1@contoso.com", true, "Sub Scriber", None);
    assert_eq!(post("missed", "sub-3").await, 202);
    d.settle().await;
    assert_eq!(active(&d, "s1@contoso.com").await, Some(true));

    // Graph drops a subscription without a word: the next run looks, and makes a new one.
    d.idp.drop_subscriptions();
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(action(&report), Some(SubscriptionAction::Created { ref id, .. }) if id == "sub-4"),
        "{report:?}"
    );

    // A removal of a subscription the relay does not own is not recreated: an operator's.
    assert_eq!(post("subscriptionRemoved", "someone-elses").await, 202);
    d.settle().await;
    assert_eq!(d.idp.subscriptions().len(), 1);
    let reasons = d.dead_letters().await;
    assert!(
        reasons.len() == 1 && reasons[0].contains("does not own"),
        "{reasons:?}"
    );
    d.finish().await;
}

pub async fn a_rotated_client_state_gets_a_new_subscription_and_the_old_one_is_deleted(b: Backend) {
    let url = "https://relay.example.com/entra";
    let mut d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.notification_url = Some(url.into());
    })
    .await;
    d.idp
        .set_graph_user("r1", "r1@contoso.com", true, "Ro Tate", None);
    sweep_and_settle(&d).await;
    assert_eq!(d.idp.subscriptions()[0]["id"], "sub-1");

    // The operator rotates the clientState (the old one stays accepted meanwhile).
    d.restart(|s| {
        s.entra.client_state = Secret::new("rotated-client-state");
        s.entra.previous_client_state = Secret::new(CLIENT_STATE);
    })
    .await;
    let report = d.sweep().await;
    assert!(
        matches!(action(&report), Some(SubscriptionAction::Created { .. })),
        "{report:?}"
    );
    let subs = d.idp.subscriptions();
    assert_eq!(subs.len(), 1, "the old one is deleted: {subs:?}");
    assert_eq!(subs[0]["clientState"], "rotated-client-state");
    d.finish().await;
}

pub async fn the_credential_probe_raises_the_alarm_and_pauses_the_workers_within_one_sweep(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    if let Some(health) = d.health().await {
        assert_eq!(health["target_credential"], "unknown");
    }
    // The key is revoked while nothing flows: only the sweeper's probe can notice.
    d.target.reject_credential(true);
    // Stores keep the breaker's time in whole seconds, and a test's pause is 50 ms: ask
    // whether it was opened at all since a little before the sweep.
    let before = chrono::Utc::now() - Days::seconds(2);
    assert!(!d.breaker_open_at(before).await);
    let report = d.sweep().await;
    assert!(
        matches!(report.credential, CredentialCheck::Rejected { .. }),
        "{report:?}"
    );
    assert!(
        d.breaker_open_at(before).await,
        "a refused probe pauses the workers on every deployment"
    );
    if let Some(health) = d.health().await {
        assert_eq!(health["target_credential"], "rejected");
    }
    assert_eq!(d.target.count("POST") + d.target.count("PATCH"), 0);
    d.finish().await;
}

pub async fn target_users_the_relay_never_provisioned_are_reported_and_deactivated_only_if_asked(
    b: Backend,
) {
    for deactivate in [false, true] {
        let d = Deployment::start_with(b, |s| {
            s.target.profile = TargetProfile::Generic;
            // Entra only: its feed is the one whose users the relay must know.
            s.okta.org_url = None;
            s.okta.shared_secret = Secret::default();
            s.okta.api_token = Secret::default();
            s.sweep.drift_interval = std::time::Duration::ZERO;
            s.target.credential_owner = Some("owner@contoso.com".into());
            if deactivate {
                s.sweep.drift = scim_relay_core::config::DriftPolicy::Deactivate;
            }
        })
        .await;
        for id in ["d1", "d2"] {
            d.idp
                .set_graph_user(id, &format!("{id}@contoso.com"), true, "Dee Person", None);
        }
        let manual = d
            .target
            .create_user_by_hand("made.by.hand@contoso.com")
            .await;
        d.target.create_user_by_hand("owner@contoso.com").await;

        // The first pass is a full one: the report waits until the worker has recorded those.
        let report = sweep_and_settle(&d).await;
        assert_eq!(report.drift, None, "{report:?}");
        let report = sweep_and_settle(&d).await;
        let drift = report.drift.expect("report due");
        assert_eq!(drift.target_users, 4);
        assert_eq!(
            (drift.unknown, drift.unknown_ids.clone()),
            (1, vec![manual.clone()]),
            "neither the provisioned users nor the key's owner"
        );
        assert_eq!(drift.deactivated, 0, "first sighting");
        let drift = sweep_and_settle(&d).await.drift.expect("report due");
        assert_eq!(drift.unknown, 1);
        if deactivate {
            assert_eq!(drift.deactivated, 1);
            assert_eq!(active(&d, "made.by.hand@contoso.com").await, Some(false));
        } else {
            assert_eq!(drift.deactivated, 0);
            assert_eq!(active(&d, "made.by.hand@contoso.com").await, Some(true));
        }
        assert_eq!(active(&d, "d1@contoso.com").await, Some(true));
        assert_eq!(active(&d, "owner@contoso.com").await, Some(true));
        d.finish().await;
    }
}

pub async fn joining_or_leaving_a_scoped_entra_group_is_caught_from_the_groups_delta_and_notifications(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.group_ids = vec!["grp-eng".into()];
        s.entra.notification_url = Some("https://relay.example.com/entra".into());
    })
    .await;
    d.idp
        .set_graph_user("m1", "m1@contoso.com", true, "Mem Ber", None);
    d.idp
        .set_graph_user("m2", "m2@contoso.com", true, "Non Mem", None);
    d.idp.set_graph_groups("m1", &["grp-eng"]);

    // The relay subscribes to users and to groups, and catches up on both.
    let report = sweep_and_settle(&d).await;
    let resources: Vec<&str> = report
        .subscriptions
        .iter()
        .map(|s| s.resource.as_str())
        .collect();
    assert_eq!(resources, ["users", "groups"]);
    assert_eq!(d.idp.subscription_creates()[1]["resource"], "groups");
    assert_eq!(active(&d, "m1@contoso.com").await, Some(true));
    assert_eq!(active(&d, "m2@contoso.com").await, None, "out of scope");

    // m2 joins the group: no change of the user, so /users/delta has nothing; the group's
    // delta has the join.
    d.idp.set_graph_groups("m2", &["grp-eng"]);
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(0, false));
    let members = report
        .reconciliation
        .iter()
        .find(|f| f.source == Source::Entra && f.feed == FeedKind::Memberships)
        .expect("group members reconciled");
    assert_eq!(members.outcome, enqueued(1, false));
    assert_eq!(active(&d, "m2@contoso.com").await, Some(true));

    // m1 leaves; Graph notifies about the group, and the relay reads who left from the delta.
    d.idp.set_graph_groups("m1", &[]);
    let mut notification = graph_notification("ignored", CLIENT_STATE, 9);
    notification["value"][0]["resource"] = "Groups/grp-eng".into();
    notification["value"][0]["resourceData"]["@odata.type"] = "#Microsoft.Graph.Group".into();
    notification["value"][0]["resourceData"]["id"] = "grp-eng".into();
    d.entra(notification).await;
    assert_eq!(active(&d, "m1@contoso.com").await, Some(false));
    assert_eq!(active(&d, "m2@contoso.com").await, Some(true));
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_lost_unassignment_or_deletion_in_okta_is_read_from_the_system_log(b: Backend) {
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
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Okta), enqueued(3, true));
    assert_eq!(active(&d, "00up1@example.com").await, Some(true));

    // Unassigned from the app, and deleted: neither moves `lastUpdated`, and both hooks were
    // lost. The System Log has them.
    d.idp.assign_okta_app("0oaAPP", "00uP1", false);
    d.idp.remove_okta_user("00uP2");
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(
            feed(&report, Source::Okta),
            FeedOutcome::Enqueued { full: false, .. }
        ),
        "{report:?}"
    );
    let log = report
        .reconciliation
        .iter()
        .find(|f| f.source == Source::Okta && f.feed == FeedKind::Memberships)
        .expect("the System Log was read");
    assert!(
        matches!(log.outcome, FeedOutcome::Enqueued { users, .. } if users >= 2),
        "{log:?}"
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
    assert!(d.idp.okta_log_requests() >= 2);
    d.finish().await;
}

pub async fn the_drift_report_runs_once_an_interval_and_never_beside_a_full_pass(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| {
            s.target.profile = TargetProfile::Generic;
            s.okta.org_url = None;
            s.okta.shared_secret = Secret::default();
            s.okta.api_token = Secret::default();
        })
        .await;
    d.idp
        .set_graph_user("t1", "t1@contoso.com", true, "Tee One", None);
    let report = sweep_and_settle(&d).await;
    assert_eq!(report.drift, None, "the first pass is a full one");
    assert!(sweep_and_settle(&d).await.drift.is_some(), "then it is due");
    assert_eq!(
        sweep_and_settle(&d).await.drift,
        None,
        "not again the same day"
    );
    clock.advance(Days::hours(25));
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(1, true));
    assert_eq!(report.drift, None, "the daily full pass runs first");
    assert!(sweep_and_settle(&d).await.drift.is_some());
    d.finish().await;
}

/// Nested Entra groups count in the group catch-up as they do in the scope check: a group
/// nested into a scoped group brings its members in, a join to the nested group is caught
/// from the delta, and un-nesting it takes its members out, with no event delivered.
pub async fn nested_entra_groups_are_expanded_in_the_group_catch_up(b: Backend) {
    nested_groups_caught_up(
        Deployment::start_with(b, |s| {
            s.target.profile = TargetProfile::Generic;
            s.entra.group_ids = vec!["grp-eng".into()];
        })
        .await,
    )
    .await
}

pub async fn nested_entra_groups_are_expanded_on_the_datadog_profile(b: Backend) {
    nested_groups_caught_up(
        Deployment::options(b)
            .datadog()
            .start(|s| s.entra.group_ids = vec!["grp-eng".into()])
            .await,
    )
    .await
}

async fn nested_groups_caught_up(d: Deployment) {
    for (id, name) in [("n1", "Nest One"), ("n2", "Nest Two"), ("n3", "Nest Three")] {
        d.idp
            .set_graph_user(id, &format!("{id}@contoso.com"), true, name, None);
    }
    d.idp.set_graph_groups("n1", &["grp-eng"]);
    d.idp.set_graph_groups("n2", &["grp-platform"]);
    sweep_and_settle(&d).await;
    assert_eq!(active(&d, "n1@contoso.com").await, Some(true));
    assert_eq!(active(&d, "n2@contoso.com").await, None, "not nested yet");

    // grp-platform is nested into grp-eng: n2 is in scope, through it.
    d.idp.nest_graph_group("grp-platform", &["grp-eng"]);
    sweep_and_settle(&d).await;
    assert_eq!(active(&d, "n2@contoso.com").await, Some(true));

    // n3 joins the nested group: the catch-up reads grp-platform's delta too.
    d.idp.set_graph_groups("n3", &["grp-platform"]);
    let report = sweep_and_settle(&d).await;
    let members = report
        .reconciliation
        .iter()
        .find(|f| f.source == Source::Entra && f.feed == FeedKind::Memberships)
        .expect("group members reconciled");
    assert_eq!(members.outcome, enqueued(1, false), "only n3 is re-checked");
    assert_eq!(active(&d, "n3@contoso.com").await, Some(true));

    // Un-nested: both of its members leave the scope, n1 stays.
    d.idp.nest_graph_group("grp-platform", &[]);
    sweep_and_settle(&d).await;
    assert_eq!(active(&d, "n2@contoso.com").await, Some(false));
    assert_eq!(active(&d, "n3@contoso.com").await, Some(false));
    assert_eq!(active(&d, "n1@contoso.com").await, Some(true));
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// Okta's rate limit met half-way through a full pass: the sweeper waits for the window to
/// reset and reads on, instead of giving up the pass and starting over next run.
pub async fn a_full_pass_waits_out_okta_s_rate_limit_instead_of_starting_over(b: Backend) {
    use std::time::{Duration, SystemTime};
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    for n in 1..=5 {
        let id = format!("00uRL{n}");
        let email = format!("{}@example.com", id.to_lowercase());
        d.idp
            .set_okta_user(&id, "ACTIVE", Some(&email), "Rate", "Limit", None);
    }
    // Pages of two: the second page's request is throttled for longer than a worker would wait
    // in place (2 s), less than a pass does.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock");
    let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 4);
    let before = d.idp.okta_list_requests();
    d.idp.throttle_okta_list(2, reset);
    let report = sweep_and_settle(&d).await;
    assert_eq!(
        feed(&report, Source::Okta),
        enqueued(5, true),
        "the whole pass, not an abort"
    );
    let times = d.idp.okta_list_times()[before..].to_vec();
    assert_eq!(
        times.len(),
        4,
        "three pages and the throttled request: {times:?}"
    );
    assert!(times[2] >= reset, "read again only once the window reset");
    assert_eq!(active(&d, "00url5@example.com").await, Some(true));
    d.finish().await;
}

/// A pass reads Okta's users from the list, not one by one: each trigger carries its user as
/// listed, and the worker takes that for its own read — one call per page of users instead of
/// one per user against Okta's rate limit. Never for what could switch an account off (read
/// afresh first), nor when the user's record was written after the listing.
pub async fn a_pass_reads_okta_users_from_the_list_not_one_by_one(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| s.target.profile = TargetProfile::Generic)
        .await;
    let email = |id: &str| format!("{}@example.com", id.to_lowercase());
    let ids = ["00uL1", "00uL2", "00uL3", "00uL4"];
    for id in ids {
        d.idp
            .set_okta_user(id, "ACTIVE", Some(&email(id)), "List", "Ed", Some("One"));
    }
    let lists = d.idp.okta_list_requests();
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Okta), enqueued(4, true));
    assert_eq!(d.idp.okta_list_requests() - lists, 2, "two pages of two");
    for id in ids {
        assert_eq!(d.idp.reads(&format!("okta:{id}")), 0, "{id}: the list only");
        let user = d.target.user(&email(id)).await.expect("created");
        assert_eq!(
            (user["title"].as_str(), user["active"].as_bool()),
            (Some("One"), Some(true))
        );
    }

    // Ten minutes on: L1 retitled, L2 deactivated. L3 retitled and synced by an operator (a
    // read of its own, recorded) moments before the next pass, whose listing still shows L3 as
    // it was before (Okta's search index trails its writes).
    clock.advance(Days::minutes(10));
    d.idp.set_okta_user(
        "00uL1",
        "ACTIVE",
        Some(&email("00uL1")),
        "List",
        "Ed",
        Some("Two"),
    );
    d.idp.set_okta_user(
        "00uL2",
        "DEPROVISIONED",
        Some(&email("00uL2")),
        "List",
        "Ed",
        Some("One"),
    );
    let before = d.idp.okta_user("00uL3").expect("L3");
    d.idp.set_okta_user(
        "00uL3",
        "ACTIVE",
        Some(&email("00uL3")),
        "List",
        "Ed",
        Some("Fresh"),
    );
    d.idp.lag_okta_list("00uL3", before);
    d.command(&["sync", "--user", "00uL3"]).await.expect("sync");
    clock.advance(Days::seconds(30));
    let l3_reads = d.idp.reads("okta:00uL3");
    let report = d.sweep().await;
    assert!(
        matches!(
            feed(&report, Source::Okta),
            FeedOutcome::Enqueued { full: false, .. }
        ),
        "{report:?}"
    );
    d.settle().await;

    let title = |user: Value| user["title"].as_str().map(str::to_string);
    let l1 = d.target.user(&email("00uL1")).await.expect("L1");
    assert_eq!(title(l1), Some("Two".into()));
    assert_eq!(d.idp.reads("okta:00uL1"), 0, "L1 retitled from the list");
    assert_eq!(active(&d, &email("00uL2")).await, Some(false));
    assert!(
        d.idp.reads("okta:00uL2") >= 1,
        "a deactivation is decided on a read of its own"
    );
    let l3 = d.target.user(&email("00uL3")).await.expect("L3");
    assert_eq!(
        title(l3),
        Some("Fresh".into()),
        "the record written just before the listing knows better: not undone"
    );
    assert!(
        d.idp.reads("okta:00uL3") > l3_reads,
        "L3 read afresh, its listing set aside"
    );
    assert_eq!(d.idp.reads("okta:00uL4"), 0);
    d.finish().await;
}

/// A listed user the app no longer includes is read afresh before anything is switched off,
/// and the assignment read for the listing serves that read too: one user read and one
/// assignment read, not two.
pub async fn a_listed_user_out_of_scope_is_read_afresh_and_its_membership_once(b: Backend) {
    const APP: &str = "0oaLIST";
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| {
            s.target.profile = TargetProfile::Generic;
            s.okta.app_id = Some(APP.into());
        })
        .await;
    let email = "00uo1@example.com";
    d.idp
        .set_okta_user("00uO1", "ACTIVE", Some(email), "Out", "Scope", None);
    d.idp.assign_okta_app(APP, "00uO1", true);
    sweep_and_settle(&d).await;
    assert_eq!(active(&d, email).await, Some(true));
    // The assignment's own System Log entry caught up by an hourly pass, so the day's full pass
    // below is the user's only trigger.
    clock.advance(Days::hours(1));
    sweep_and_settle(&d).await;

    // A day on, the next full pass lists the user, still active but unassigned (the
    // unassignment's event lost, so the pass is the only trigger).
    clock.advance(Days::hours(24));
    d.idp.unassign_okta_app_without_trace(APP, "00uO1");
    let (user_reads, app_reads) = (d.idp.reads("okta:00uO1"), d.idp.reads("okta-app:00uO1"));
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(
            feed(&report, Source::Okta),
            FeedOutcome::Enqueued { full: true, .. }
        ),
        "{report:?}"
    );
    assert_eq!(active(&d, email).await, Some(false), "out of scope: off");
    assert_eq!(
        d.idp.reads("okta:00uO1") - user_reads,
        1,
        "read afresh before switching it off"
    );
    assert_eq!(
        d.idp.reads("okta-app:00uO1") - app_reads,
        1,
        "the assignment read once"
    );
    d.finish().await;
}

/// A full pass the sweeper's time cuts short pauses after the page it is on and goes on from
/// there at the next run: no page read twice, the position and the time of the full pass
/// moved only when it ends, and the users no longer listed found across all its runs.
pub async fn a_full_pass_short_of_time_pauses_and_the_next_run_goes_on(b: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| s.target.profile = TargetProfile::Generic)
        .await;
    let email = |n: u32| format!("00up{n}@example.com");
    for n in 1..=6 {
        d.idp.set_okta_user(
            &format!("00uP{n}"),
            "ACTIVE",
            Some(&email(n)),
            "Pau",
            "Sed",
            None,
        );
    }
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Okta), enqueued(6, true));
    // P6 deleted outright, with no event or log entry left; the next full pass is due.
    d.idp.remove_okta_user_without_trace("00uP6");
    clock.advance(Days::hours(25));

    // Each run has no time to spare: one page of two a run.
    let lists = d.idp.okta_list_requests();
    three_runs_short_of_time(&d, Source::Okta, &email(6)).await;
    assert_eq!(
        d.idp.okta_list_requests() - lists,
        3,
        "three pages, each read once"
    );
    d.settle().await;
    assert_eq!(active(&d, &email(6)).await, Some(false));
    for n in 1..=5 {
        assert_eq!(active(&d, &email(n)).await, Some(true));
    }
    // The pass ended: the next run is a change pass again, not a full one.
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(
            feed(&report, Source::Okta),
            FeedOutcome::Enqueued { full: false, .. }
        ),
        "{report:?}"
    );
    d.finish().await;
}

/// Entra's full pass is read as Okta's is: `/users/delta` page by page, each trigger carrying
/// its user as the delta listed it (no read of its own for an active user), paused when the
/// sweeper's time runs low and gone on at the next run from the page after (no page read
/// twice), and the users no longer listed found across all its runs.
pub async fn an_entra_full_pass_reads_users_from_the_delta_and_pauses_when_short_of_time(
    b: Backend,
) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let d = Deployment::options(b)
        .on_clock(clock.clone())
        .start(|s| s.target.profile = TargetProfile::Generic)
        .await;
    let id = |n: u32| format!("e-paused-{n}");
    let email = |n: u32| format!("e-paused-{n}@example.com");
    for n in 1..=6 {
        d.idp
            .set_graph_user(&id(n), &email(n), true, "Pau Sed", Some("One"));
    }
    let report = sweep_and_settle(&d).await;
    assert_eq!(feed(&report, Source::Entra), enqueued(6, true));
    for n in 1..=6 {
        assert_eq!(
            d.idp.reads(&format!("graph:{}", id(n))),
            0,
            "{}: from the delta only",
            id(n)
        );
        let user = d.target.user(&email(n)).await.expect("created");
        assert_eq!(
            (user["title"].as_str(), user["active"].as_bool()),
            (Some("One"), Some(true))
        );
    }

    // A day on, the full pass is due: a full delta lists no deleted users, so one deleted
    // outright is found by its absence. Each run has no time to spare.
    d.idp.hard_delete_graph_user(&id(6));
    clock.advance(Days::hours(25));
    let pages = d.idp.delta_requests();
    three_runs_short_of_time(&d, Source::Entra, &email(6)).await;
    assert_eq!(
        d.idp.delta_requests() - pages,
        3,
        "three pages, each read once"
    );
    d.settle().await;
    assert_eq!(active(&d, &email(6)).await, Some(false));
    assert!(
        d.idp.reads(&format!("graph:{}", id(6))) >= 1,
        "gone: read to be sure"
    );
    for n in 1..=5 {
        assert_eq!(active(&d, &email(n)).await, Some(true));
        assert_eq!(d.idp.reads(&format!("graph:{}", id(n))), 0);
    }
    // The pass ended with a delta link: the next run reads changes only.
    let report = sweep_and_settle(&d).await;
    assert!(
        matches!(
            feed(&report, Source::Entra),
            FeedOutcome::Enqueued { full: false, .. }
        ),
        "{report:?}"
    );
    d.finish().await;
}

/// A full pass over six listed users, two a page, the sixth gone from the directory, when each
/// run has no time to spare: the first two runs pause after their page (the gone user still
/// active), the third lists the last page and finds the sixth missing from all three.
async fn three_runs_short_of_time(d: &Deployment, source: Source, gone: &str) {
    let within = std::time::Duration::ZERO;
    for listed in [2, 4] {
        let run = d.sweep_within(within).await;
        assert_eq!(
            feed(&run, source),
            FeedOutcome::Paused {
                users: listed,
                full: true
            }
        );
        d.settle().await;
        assert_eq!(
            active(d, gone).await,
            Some(true),
            "not yet: the pass is not over"
        );
    }
    let third = d.sweep_within(within).await;
    assert_eq!(
        feed(&third, source),
        FeedOutcome::Enqueued {
            users: 6,
            full: true,
            vanished: 1
        },
        "five listed over three runs, the sixth missing from all of them"
    );
}
