//! The Datadog profile against a target that behaves as Datadog documents its SCIM API, on
//! every backend.

use scim_relay_core::config::HardDeletePolicy;
use scim_relay_core::secret::Secret;
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{graph_notification, okta_delivery, okta_delivery_at};

pub async fn the_datadog_profile_against_a_target_that_behaves_as_datadog_documents(b: Backend) {
    let d = Deployment::options(b)
        .datadog()
        .start(|s| {
            s.entra.hard_delete = HardDeletePolicy::Delete;
            // The confirming read a second after the first, not ten minutes.
            s.entra.hard_delete_confirm = std::time::Duration::from_secs(1);
        })
        .await;
    let dd = d.target.datadog_fixture();
    let email = "Dana.Dog@Example.com";
    let dana = |status, title| {
        d.idp
            .set_okta_user("00uDD", status, Some(email), "Dana", "Dog", title)
    };
    dana("ACTIVE", Some("SRE"));

    // Rate limited on the first look-up: Datadog's 429 with X-RateLimit-Reset, then through.
    dd.throttle_next("GET");
    d.okta(okta_delivery(
        "dd-1",
        "user.lifecycle.create",
        "00uDD",
        email,
    ))
    .await;
    let user = dd.user("dana.dog@example.com").expect("created");
    assert_eq!(user["name"]["formatted"], "Dana Dog");
    assert!(
        user["name"].get("givenName").is_none(),
        "name.formatted only"
    );
    assert_eq!(user["emails"][0]["type"], "work");
    assert_eq!(dd.requests("GET"), 2, "the throttled look-up was retried");

    // Profile change, reactivation and deactivation all stay within add/replace.
    dana("ACTIVE", None);
    d.okta(okta_delivery(
        "dd-2",
        "user.account.update_profile",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(
        dd.user("dana.dog@example.com").unwrap()["title"],
        "",
        "a cleared title is blanked, not removed"
    );
    dana("DEPROVISIONED", None);
    d.okta(okta_delivery(
        "dd-3",
        "user.lifecycle.deactivate",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(dd.user("dana.dog@example.com").unwrap()["active"], false);
    dana("ACTIVE", None);
    d.okta(okta_delivery(
        "dd-4",
        "user.lifecycle.reactivate",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(dd.user("dana.dog@example.com").unwrap()["active"], true);
    assert_eq!(
        d.depth().await,
        (0, 0),
        "nothing dead-lettered: {:?}",
        d.dead_letters().await
    );

    // An account that already exists for the address: looked up first and adopted.
    d.idp.set_okta_user(
        "00uDD2",
        "ACTIVE",
        Some("second@example.com"),
        "Sec",
        "Ond",
        None,
    );
    dd.create_user_by_hand("second@example.com").await;
    d.okta(okta_delivery(
        "dd-5",
        "user.lifecycle.create",
        "00uDD2",
        "second@example.com",
    ))
    .await;
    assert_eq!(dd.user_count(), 2, "adopted, not duplicated");
    assert_eq!(
        dd.user("second@example.com").unwrap()["name"]["formatted"],
        "Sec Ond"
    );

    // Entra hard delete under the `delete` policy: SCIM DELETE, which Datadog turns into disable.
    d.idp
        .set_graph_user("e-dd", "Entra.Dog@contoso.com", true, "Entra Dog", None);
    d.entra(graph_notification("e-dd", CLIENT_STATE, 1)).await;
    assert_eq!(dd.user("entra.dog@contoso.com").unwrap()["active"], true);
    d.idp.hard_delete_graph_user("e-dd");
    d.entra(graph_notification("e-dd", CLIENT_STATE, 2)).await;
    assert_eq!(dd.requests("DELETE"), 1);
    let disabled = dd
        .user("entra.dog@contoso.com")
        .expect("Datadog keeps the user");
    assert_eq!(disabled["active"], false);
    d.finish().await;
}

pub async fn roles_are_sent_and_without_a_directory_an_older_event_changes_nothing(b: Backend) {
    let d = Deployment::options(b)
        .datadog()
        .start(|s| {
            s.target.role_ids = vec!["role-uuid-1".into(), "role-uuid-2".into()];
            s.okta.api_token = Secret::default();
            s.okta.use_event_content = true;
        })
        .await;
    let dd = d.target.datadog_fixture();
    let at = |uuid, event_type, published| {
        okta_delivery_at(uuid, event_type, "00uORD", "ordered@example.com", published)
    };
    d.okta(at("o-1", "user.lifecycle.create", "2026-11-29T10:00:00Z"))
        .await;
    let user = dd
        .user("ordered@example.com")
        .expect("created from the event");
    assert_eq!(
        user["roles"],
        serde_json::json!([{"value": "role-uuid-1"}, {"value": "role-uuid-2"}])
    );

    d.okta(at(
        "o-3",
        "user.lifecycle.deactivate",
        "2026-11-29T10:05:00Z",
    ))
    .await;
    assert_eq!(dd.user("ordered@example.com").unwrap()["active"], false);
    // A late delivery of an earlier activation must not undo the deactivation.
    d.okta(at("o-2", "user.lifecycle.activate", "2026-11-29T10:01:00Z"))
        .await;
    assert_eq!(dd.user("ordered@example.com").unwrap()["active"], false);
    assert_eq!(d.idp.total_reads(), 0, "no directory was read");
    d.finish().await;
}
