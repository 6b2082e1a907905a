//! The relay only ever touches accounts it owns, on every backend: a look-up's answer is acted
//! on only when its userName is the one asked for.

use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;

pub async fn a_target_that_ignores_the_filter_never_gets_someone_elses_account_touched(b: Backend) {
    let d = Deployment::start(b).await;
    // The only account on the target, someone else's; the target answers every look-up
    // with it.
    d.target
        .create_user_by_hand("someone.else@example.com")
        .await;
    d.target.ignore_filters(true);

    // A deactivated user the relay never provisioned: the "deactivate an unrecorded account"
    // look-up must not deactivate the account it is answered with.
    d.idp.set_okta_user(
        "00uGONE",
        "DEPROVISIONED",
        Some("gone@example.com"),
        "Go",
        "Ne",
        None,
    );
    d.okta(okta_delivery(
        "ev-gone",
        "user.lifecycle.deactivate",
        "00uGONE",
        "gone@example.com",
    ))
    .await;
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());

    // A new user: not adopted from someone else's account, but created.
    d.idp.set_okta_user(
        "00uNEW",
        "ACTIVE",
        Some("new.hire@example.com"),
        "New",
        "Hire",
        Some("Engineer"),
    );
    d.okta(okta_delivery(
        "ev-new",
        "user.lifecycle.create",
        "00uNEW",
        "new.hire@example.com",
    ))
    .await;
    d.target.ignore_filters(false);
    let other = d
        .target
        .user("someone.else@example.com")
        .await
        .expect("still there");
    assert_eq!(
        other["active"], true,
        "someone else's account was switched off"
    );
    assert!(
        other.get("title").is_none_or(serde_json::Value::is_null),
        "someone else's account was adopted: {other}"
    );
    assert_eq!(d.target.count("PATCH"), 0, "{:?}", d.target.calls());
    let created = d
        .target
        .user("new.hire@example.com")
        .await
        .expect("created");
    assert_eq!(created["title"], "Engineer");
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}
