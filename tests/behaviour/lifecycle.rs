//! A user's lifecycle and the failure table, on every backend.

use scim_relay_core::envelope::Source;
use scim_relay_tests::deployment::{okta_tenant, Backend, Deployment, OKTA_SECRET};
use scim_relay_tests::payloads::okta_delivery;

fn jane(d: &Deployment, status: &str, title: &str) {
    d.idp.set_okta_user(
        "00uJANE",
        status,
        Some("Jane.Doe@Example.com"),
        "Jane",
        "Doe",
        Some(title),
    );
}

pub async fn okta_lifecycle_creates_updates_deactivates_and_ignores_duplicates(b: Backend) {
    let d = Deployment::start(b).await;
    let email = "Jane.Doe@Example.com";
    jane(&d, "ACTIVE", "Engineer");

    let create = okta_delivery("ev-create-1", "user.lifecycle.create", "00uJANE", email);
    let (status, body) = d.post_okta(&create, OKTA_SECRET).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["accepted"],
        1
    );
    d.settle().await;
    let user = d
        .target
        .user("jane.doe@example.com")
        .await
        .expect("created");
    assert_eq!(user["active"], true);
    assert_eq!(user["name"]["formatted"], "Jane Doe");
    assert_eq!(user["title"], "Engineer");
    assert_eq!(user["emails"][0]["value"], "jane.doe@example.com");
    assert_eq!(
        (d.target.count("GET"), d.target.count("POST")),
        (1, 1),
        "look-up first, then create: {:?}",
        d.target.calls()
    );
    let recorded = d
        .recorded(Source::Okta, &okta_tenant(&d.idp), "00uJANE")
        .await
        .expect("state recorded");
    assert_eq!(recorded.scim_id.as_deref(), user["id"].as_str());

    // A profile change is one PATCH.
    jane(&d, "ACTIVE", "Staff Engineer");
    d.okta(okta_delivery(
        "ev-update-1",
        "user.account.update_profile",
        "00uJANE",
        email,
    ))
    .await;
    assert_eq!(
        d.target.user("jane.doe@example.com").await.unwrap()["title"],
        "Staff Engineer"
    );
    assert_eq!(d.target.count("PATCH"), 1, "{:?}", d.target.calls());
    assert_eq!(d.target.count("POST"), 1, "never re-created");

    // The same delivery again: no directory read, no SCIM call.
    let calls = d.target.calls().len();
    let reads = d.idp.reads("okta:00uJANE");
    d.okta(create.clone()).await;
    assert_eq!(d.target.calls().len(), calls, "{:?}", d.target.calls());
    assert_eq!(
        d.idp.reads("okta:00uJANE"),
        reads,
        "a duplicate re-read the directory"
    );

    // A new event with nothing changed: read, and nothing sent.
    d.okta(okta_delivery(
        "ev-activate-1",
        "user.lifecycle.activate",
        "00uJANE",
        email,
    ))
    .await;
    assert_eq!(d.idp.reads("okta:00uJANE"), reads + 1);
    assert_eq!(
        d.target.calls().len(),
        calls,
        "an unchanged user made SCIM calls"
    );

    // Deactivation is PATCH active=false, never DELETE.
    jane(&d, "DEPROVISIONED", "Staff Engineer");
    d.okta(okta_delivery(
        "ev-deactivate-1",
        "user.lifecycle.deactivate",
        "00uJANE",
        email,
    ))
    .await;
    assert_eq!(
        d.target.user("jane.doe@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(d.target.count("PATCH"), 2);
    assert_eq!(d.target.count("DELETE"), 0, "never deletes");
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn an_unmappable_user_is_dead_lettered_with_its_reason_and_applied_once_redriven(
    b: Backend,
) {
    let d = Deployment::start(b).await;
    d.idp
        .set_okta_user("00uNOMAIL", "ACTIVE", None, "No", "Mail", None);
    d.okta(okta_delivery(
        "ev-nomail",
        "user.lifecycle.create",
        "00uNOMAIL",
        "nomail",
    ))
    .await;
    let reasons = d.dead_letters().await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("no email address"), "{reasons:?}");
    assert!(
        d.target.calls().is_empty(),
        "nothing sent for an unmappable user"
    );

    // The cause fixed in the IdP, the operator redrives: the trigger is applied.
    d.idp.set_okta_user(
        "00uNOMAIL",
        "ACTIVE",
        Some("now.mailed@example.com"),
        "No",
        "Mail",
        None,
    );
    assert_eq!(d.redrive().await, 1);
    d.settle().await;
    assert_eq!(
        d.target
            .user("now.mailed@example.com")
            .await
            .expect("applied")["active"],
        true
    );
    assert_eq!(d.depth().await, (0, 0));
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

pub async fn a_user_deleted_from_the_directory_is_deactivated_from_recorded_state(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uGONE",
        "ACTIVE",
        Some("gone@example.com"),
        "Go",
        "Ne",
        None,
    );
    d.okta(okta_delivery(
        "ev-g1",
        "user.lifecycle.create",
        "00uGONE",
        "gone@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("gone@example.com").await.unwrap()["active"],
        true
    );
    d.idp.remove_okta_user("00uGONE");
    d.okta(okta_delivery(
        "ev-g2",
        "user.lifecycle.delete.initiated",
        "00uGONE",
        "gone@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("gone@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(d.target.count("DELETE"), 0);
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn the_owner_of_the_target_credential_is_never_deactivated(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.credential_owner = Some("SCIM-Service@Example.com".into());
    })
    .await;
    let set = |id: &str, status: &str, email: &str| {
        d.idp
            .set_okta_user(id, status, Some(email), "Scim", "Service", None)
    };
    set("00uOWNER", "ACTIVE", "scim-service@example.com");
    d.okta(okta_delivery(
        "ev-o1",
        "user.lifecycle.create",
        "00uOWNER",
        "o",
    ))
    .await;
    set("00uOWNER", "DEPROVISIONED", "scim-service@example.com");
    d.okta(okta_delivery(
        "ev-o2",
        "user.lifecycle.deactivate",
        "00uOWNER",
        "o",
    ))
    .await;
    assert_eq!(
        d.target.user("scim-service@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());
    assert_eq!(
        d.depth().await,
        (0, 0),
        "handled, not retried or dead-lettered"
    );
    // Renamed and deactivated in one change: still the owner's account.
    set("00uOWNER", "DEPROVISIONED", "renamed.service@example.com");
    d.okta(okta_delivery(
        "ev-o2b",
        "user.account.update_profile",
        "00uOWNER",
        "o",
    ))
    .await;
    assert_eq!(
        d.target
            .user("scim-service@example.com")
            .await
            .expect("not renamed")["active"],
        true
    );
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());
    // Anyone else is deactivated as usual.
    set("00uOTHER", "ACTIVE", "other@example.com");
    d.okta(okta_delivery(
        "ev-o3",
        "user.lifecycle.create",
        "00uOTHER",
        "x",
    ))
    .await;
    set("00uOTHER", "DEPROVISIONED", "other@example.com");
    d.okta(okta_delivery(
        "ev-o4",
        "user.lifecycle.deactivate",
        "00uOTHER",
        "x",
    ))
    .await;
    assert_eq!(
        d.target.user("other@example.com").await.unwrap()["active"],
        false
    );
    d.finish().await;
}

pub async fn a_create_whose_answer_is_lost_is_looked_up_not_repeated(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uLOST",
        "ACTIVE",
        Some("lost.answer@example.com"),
        "Lost",
        "Answer",
        None,
    );
    // The target creates the user, but the relay sees a 502.
    d.target.lose_next_response("POST", 502);
    d.okta(okta_delivery(
        "ev-lost",
        "user.lifecycle.create",
        "00uLOST",
        "l",
    ))
    .await;
    assert_eq!(d.target.user_count().await, 1);
    assert_eq!(
        d.target.count("POST"),
        1,
        "never re-POSTed: {:?}",
        d.target.calls()
    );
    assert_eq!(
        d.target.created(),
        vec!["lost.answer@example.com".to_string()]
    );
    assert_eq!(
        d.target.user("lost.answer@example.com").await.unwrap()["name"]["formatted"],
        "Lost Answer"
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_failed_patch_is_retried_until_it_lands(b: Backend) {
    let d = Deployment::start(b).await;
    let set = |title: &str| {
        d.idp.set_okta_user(
            "00uFLAKY",
            "ACTIVE",
            Some("flaky@example.com"),
            "Fla",
            "Ky",
            Some(title),
        )
    };
    set("One");
    d.okta(okta_delivery(
        "ev-f1",
        "user.lifecycle.create",
        "00uFLAKY",
        "f",
    ))
    .await;
    set("Two");
    for _ in 0..2 {
        d.target.fail_next("PATCH", 503);
    }
    d.okta(okta_delivery(
        "ev-f2",
        "user.account.update_profile",
        "00uFLAKY",
        "f",
    ))
    .await;
    assert_eq!(
        d.target.user("flaky@example.com").await.unwrap()["title"],
        "Two"
    );
    assert_eq!(
        d.target.count("PATCH"),
        3,
        "two 503s, then the one that landed"
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_permanent_target_error_is_dead_lettered_with_its_reason(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp
        .set_okta_user("00uBAD", "ACTIVE", Some("bad@example.com"), "Ba", "D", None);
    d.target.fail_next("POST", 400);
    d.okta(okta_delivery(
        "ev-bad",
        "user.lifecycle.create",
        "00uBAD",
        "b",
    ))
    .await;
    let reasons = d.dead_letters().await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("400"), "{reasons:?}");
    assert_eq!(d.target.user_count().await, 0);
    assert_eq!(d.depth().await, (0, 1));
    d.finish().await;
}
