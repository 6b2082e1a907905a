//! Microsoft Entra ID through Graph change notifications, on every backend: a user created,
//! disabled, soft- and hard-deleted; scope by group; a lifecycle notification the relay cannot
//! act on.

use scim_relay_core::config::{HardDeletePolicy, TargetProfile};
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{
    graph_lifecycle, graph_notification, graph_notification_ids_only, GRAPH_SUBSCRIPTION,
};

const ALEX: &str = "5b3f0a2e-9c1d-4e8b-a6f7-1d2c3b4a5e6f";

pub async fn a_graph_notification_creates_disables_and_a_forged_one_changes_nothing(b: Backend) {
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    let alex = |enabled| {
        d.idp.set_graph_user(
            ALEX,
            "Alex.Wilber@contoso.com",
            enabled,
            "Alex Wilber",
            Some("Marketing Lead"),
        )
    };
    alex(true);
    d.entra(graph_notification(ALEX, CLIENT_STATE, 1)).await;
    let user = d
        .target
        .user("alex.wilber@contoso.com")
        .await
        .expect("user created from Graph");
    assert_eq!(user["active"], true);
    assert_eq!(user["externalId"], ALEX);
    assert_eq!(user["name"]["givenName"], "Alex");
    assert_eq!(user["title"], "Marketing Lead");
    assert_eq!(d.idp.token_requests(), 1);

    // Disabled in Entra: deactivated on the target.
    alex(false);
    d.entra(graph_notification(ALEX, CLIENT_STATE, 2)).await;
    assert_eq!(
        d.target.user("alex.wilber@contoso.com").await.unwrap()["active"],
        false
    );
    assert_eq!(d.idp.token_requests(), 1, "the app token is cached");

    // A forged clientState: 401, nothing enqueued, nothing read.
    let reads = d.idp.total_reads();
    let forged = serde_json::to_vec(&graph_notification(ALEX, "forged", 3)).unwrap();
    let (status, _) = d
        .request(
            "POST",
            "/entra",
            None,
            &[("Content-Type", "application/json")],
            &forged,
        )
        .await;
    assert_eq!(status, 401);
    d.settle().await;
    assert_eq!(d.idp.total_reads(), reads);
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// Graph's user notifications carry only ids, so a re-enable and the disable right after it can
/// arrive as the very same bytes, well inside the dedupe window. Each one is read: the second
/// change is never skipped as a duplicate of the first.
pub async fn byte_identical_graph_notifications_each_reach_the_target(b: Backend) {
    const SAM: &str = "0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f";
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    let sam = |enabled| {
        d.idp
            .set_graph_user(SAM, "Sam.Same@contoso.com", enabled, "Sam Same", None)
    };
    let notification = graph_notification_ids_only(SAM, CLIENT_STATE);
    let active = || async {
        d.target
            .user("sam.same@contoso.com")
            .await
            .map(|u| u["active"].clone())
    };

    sam(true);
    d.entra(notification.clone()).await;
    assert_eq!(active().await, Some(true.into()));
    sam(false);
    d.entra(notification.clone()).await;
    assert_eq!(
        active().await,
        Some(false.into()),
        "the disable was skipped"
    );
    sam(true);
    d.entra(notification.clone()).await;
    assert_eq!(
        active().await,
        Some(true.into()),
        "the re-enable was skipped"
    );
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

/// A deployment under `hard_delete = delete` (confirmed by a second read a second later), with
/// one Entra user provisioned and active.
async fn provisioned_under_delete(b: Backend, id: &str, email: &str, name: &str) -> Deployment {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.hard_delete = HardDeletePolicy::Delete;
        s.entra.hard_delete_confirm = std::time::Duration::from_secs(1);
    })
    .await;
    d.idp.set_graph_user(id, email, true, name, None);
    d.entra(graph_notification(id, CLIENT_STATE, 1)).await;
    assert_eq!(
        d.target.user(&email.to_lowercase()).await.unwrap()["active"],
        true
    );
    d
}

pub async fn entra_soft_delete_deactivates_and_hard_delete_follows_the_policy(b: Backend) {
    let d = provisioned_under_delete(b, "e-del-1", "Leaver@contoso.com", "Lea Ver").await;

    // Soft delete (restorable for 30 days): deactivated, not deleted.
    d.idp.soft_delete_graph_user("e-del-1");
    d.entra(graph_notification("e-del-1", CLIENT_STATE, 2))
        .await;
    assert_eq!(
        d.target.user("leaver@contoso.com").await.unwrap()["active"],
        false
    );
    assert_eq!(
        d.idp.reads("graph-deleted:e-del-1"),
        1,
        "deletedItems told soft from hard"
    );
    assert_eq!(d.target.count("DELETE"), 0);

    // Hard delete, under the `delete` policy: the account is removed once a second read, a
    // second later here, finds the user gone for good too.
    d.idp.hard_delete_graph_user("e-del-1");
    let reads = d.idp.reads("graph:e-del-1");
    d.entra(graph_notification("e-del-1", CLIENT_STATE, 3))
        .await;
    assert_eq!(d.target.count("DELETE"), 1, "{:?}", d.target.calls());
    assert_eq!(d.idp.reads("graph:e-del-1") - reads, 2, "read twice");
    assert!(d.target.user("leaver@contoso.com").await.is_none());
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_hard_delete_seen_once_deactivates_and_deletes_only_when_a_later_read_confirms(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.hard_delete = HardDeletePolicy::Delete;
        s.entra.hard_delete_confirm = std::time::Duration::from_secs(1);
    })
    .await;
    d.idp
        .set_graph_user("e-lag", "Lag@contoso.com", true, "Lag Gard", None);
    d.entra(graph_notification("e-lag", CLIENT_STATE, 1)).await;
    assert_eq!(active(&d.target).await, true);
    let patches = d.target.count("PATCH");

    // Right after a change, replication answers 404 from both /users and deletedItems for a
    // user who exists: one read looks like a hard delete. The account is switched off, not
    // deleted, and the second read a moment later finds the user and switches it back on.
    d.idp.lag_graph_user("e-lag", 1);
    d.entra(graph_notification("e-lag", CLIENT_STATE, 2)).await;
    assert_eq!(d.idp.reads("graph:e-lag"), 3, "created, then read twice");
    assert_eq!(d.target.count("DELETE"), 0, "{:?}", d.target.calls());
    assert_eq!(active(&d.target).await, true);
    assert_eq!(
        d.target.count("PATCH") - patches,
        2,
        "off on the first read, on again on the second"
    );
    assert_eq!(d.depth().await, (0, 0));
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

async fn active(target: &scim_relay_tests::target::Target) -> serde_json::Value {
    target.user("lag@contoso.com").await.expect("account")["active"].clone()
}

pub async fn entra_scope_follows_group_membership(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.group_ids = vec!["grp-datadog-users".into()];
    })
    .await;
    d.idp
        .set_graph_user("e-scope", "In.Scope@contoso.com", true, "In Scope", None);
    d.entra(graph_notification("e-scope", CLIENT_STATE, 1))
        .await;
    assert!(
        d.target.user("in.scope@contoso.com").await.is_none(),
        "not a member yet"
    );

    d.idp.set_graph_groups("e-scope", &["grp-datadog-users"]);
    d.entra(graph_notification("e-scope", CLIENT_STATE, 2))
        .await;
    assert_eq!(
        d.target.user("in.scope@contoso.com").await.unwrap()["active"],
        true
    );

    d.idp.set_graph_groups("e-scope", &[]);
    d.entra(graph_notification("e-scope", CLIENT_STATE, 3))
        .await;
    assert_eq!(
        d.target.user("in.scope@contoso.com").await.unwrap()["active"],
        false
    );
    d.finish().await;
}

pub async fn a_lifecycle_event_for_a_subscription_graph_no_longer_has_is_parked_with_instructions(
    b: Backend,
) {
    let d = Deployment::start_with(b, |s| s.target.profile = TargetProfile::Generic).await;
    d.entra(graph_lifecycle(
        GRAPH_SUBSCRIPTION,
        CLIENT_STATE,
        "reauthorizationRequired",
    ))
    .await;
    assert_eq!(d.depth().await, (0, 1));
    let reasons = d.dead_letters().await;
    // The relay tried to renew it (that reauthorizes too); Graph does not have it, and the
    // relay does not own subscriptions without `entra.notification_url`.
    assert_eq!(d.idp.subscription_renewals().len(), 1);
    assert!(reasons[0].contains("entra.notification_url"), "{reasons:?}");
    d.finish().await;
}

/// `sync --user` on a user Entra deleted for good, under `hard_delete = delete`: the account is
/// switched off now, and the delete waits for a second read, as the worker's own would. The
/// operator is told so (not "failed"), the user's history has the entry, and the confirming
/// read is queued: the queue's worker deletes the account once it is due.
pub async fn sync_of_a_hard_deleted_user_queues_the_confirming_read_and_says_so(b: Backend) {
    let d = provisioned_under_delete(b, "e-sync-1", "Synced@contoso.com", "Syn Ced").await;

    d.idp.hard_delete_graph_user("e-sync-1");
    let said = d
        .command(&["sync", "--user", "e-sync-1"])
        .await
        .expect("a sync that queued the rest of its work succeeds");
    assert!(said.contains("queued"), "{said}");
    assert!(said.contains("second read"), "{said}");
    assert_eq!(
        d.target.user("synced@contoso.com").await.unwrap()["active"],
        false,
        "switched off now"
    );
    assert_eq!(d.target.count("DELETE"), 0, "not deleted on one read");
    let history = d.command(&["history", "e-sync-1"]).await.expect("history");
    assert!(history.contains("queued"), "{history}");

    d.settle().await;
    assert_eq!(d.target.count("DELETE"), 1, "the queued read confirmed it");
    assert!(d.target.user("synced@contoso.com").await.is_none());
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}
