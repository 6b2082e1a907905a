//! Who the relay provisions, on every backend: the app assignment and groups that make the
//! scope, suspension and staging, a scope setting that names nothing, the attribute map.

use scim_relay_core::config::{SuspendPolicy, TargetProfile};
use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;

pub async fn okta_suspension_follows_the_suspend_policy(b: Backend) {
    for keep in [false, true] {
        let d = Deployment::start_with(b, |s| {
            if keep {
                s.okta.suspended = SuspendPolicy::Keep;
            }
        })
        .await;
        let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uSUS", "sus@example.com");
        let sus = |status| {
            d.idp.set_okta_user(
                "00uSUS",
                status,
                Some("sus@example.com"),
                "Sus",
                "Pended",
                None,
            )
        };
        sus("ACTIVE");
        d.okta(event("ev-s1", "user.lifecycle.create")).await;
        sus("SUSPENDED");
        d.okta(event("ev-s2", "user.lifecycle.suspend")).await;
        assert_eq!(
            d.target.user("sus@example.com").await.unwrap()["active"],
            keep,
            "keep={keep}"
        );
        assert_eq!(d.target.count("PATCH"), usize::from(!keep), "keep={keep}");

        sus("ACTIVE");
        d.okta(event("ev-s3", "user.lifecycle.unsuspend")).await;
        assert_eq!(
            d.target.user("sus@example.com").await.unwrap()["active"],
            true,
            "keep={keep}"
        );
        assert_eq!(d.depth().await, (0, 0));
        d.finish().await;
    }
}

pub async fn a_staged_user_leaves_an_existing_account_alone_until_activated(b: Backend) {
    let d = Deployment::start(b).await;
    // An account that exists on the target already, in use.
    d.target.create_user_by_hand("shared@example.com").await;
    let staged = |status| {
        d.idp.set_okta_user(
            "00uSTAGED",
            status,
            Some("shared@example.com"),
            "New",
            "Hire",
            None,
        )
    };
    staged("STAGED");
    d.okta(okta_delivery(
        "ev-st1",
        "user.lifecycle.create",
        "00uSTAGED",
        "shared@example.com",
    ))
    .await;
    assert!(
        d.target.calls().is_empty(),
        "a staged user touches nothing: {:?}",
        d.target.calls()
    );
    assert_eq!(
        d.target.user("shared@example.com").await.unwrap()["active"],
        true
    );

    // Activated: the existing account is adopted and brought to the directory's truth.
    staged("ACTIVE");
    d.okta(okta_delivery(
        "ev-st2",
        "user.lifecycle.activate",
        "00uSTAGED",
        "shared@example.com",
    ))
    .await;
    let user = d.target.user("shared@example.com").await.unwrap();
    assert_eq!(user["name"]["formatted"], "New Hire");
    assert_eq!(d.target.count("POST"), 0, "adopted, not created");
    assert_eq!(d.target.user_count().await, 1);
    d.finish().await;
}

pub async fn okta_scope_follows_the_app_assignment_and_groups_read_from_the_directory(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.okta.app_id = Some("0oaDATADOG".into());
        s.okta.group_ids = vec!["00gENG".into(), "00gOPS".into()];
    })
    .await;
    let event =
        |uuid, event_type| okta_delivery(uuid, event_type, "00uSCOPE", "scoped@example.com");
    d.idp.set_okta_user(
        "00uSCOPE",
        "ACTIVE",
        Some("scoped@example.com"),
        "Sco",
        "Ped",
        None,
    );

    // Active in Okta, but neither assigned nor in a group: nothing is provisioned.
    d.okta(event("sc-1", "user.lifecycle.create")).await;
    assert!(d.target.user("scoped@example.com").await.is_none());
    assert!(d.target.calls().is_empty());

    // Assigned to the app: provisioned.
    d.idp.assign_okta_app("0oaDATADOG", "00uSCOPE", true);
    d.okta(event("sc-2", "application.user_membership.add"))
        .await;
    assert_eq!(
        d.target.user("scoped@example.com").await.unwrap()["active"],
        true
    );

    // Unassigned, but a member of a configured group: still in scope.
    d.idp.assign_okta_app("0oaDATADOG", "00uSCOPE", false);
    d.idp.set_okta_groups("00uSCOPE", &["00gOTHER", "00gOPS"]);
    d.okta(event("sc-3", "application.user_membership.remove"))
        .await;
    assert_eq!(
        d.target.user("scoped@example.com").await.unwrap()["active"],
        true
    );

    // Out of the group too: deactivated.
    d.idp.set_okta_groups("00uSCOPE", &["00gOTHER"]);
    d.okta(event("sc-4", "group.user_membership.remove")).await;
    assert_eq!(
        d.target.user("scoped@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_misspelt_scope_parks_triggers_and_deactivates_nobody(b: Backend) {
    let mut d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uKEPT",
        "ACTIVE",
        Some("kept@example.com"),
        "Ke",
        "Pt",
        None,
    );
    let update = |uuid| {
        okta_delivery(
            uuid,
            "user.account.update_profile",
            "00uKEPT",
            "kept@example.com",
        )
    };
    d.okta(update("ms-1")).await;
    assert_eq!(
        d.target.user("kept@example.com").await.unwrap()["active"],
        true
    );

    // The operator scopes to an app, with a typo: nobody may be deactivated for it.
    d.restart(|s| s.okta.app_id = Some("0oaMISSING".into()))
        .await;
    d.okta(update("ms-2")).await;
    assert_eq!(
        d.target.user("kept@example.com").await.unwrap()["active"],
        true
    );
    let reasons = d.dead_letters().await;
    assert!(
        reasons.len() == 1 && reasons[0].contains("okta.app_id"),
        "{reasons:?}"
    );
    d.finish().await;
}

pub async fn the_attribute_map_sends_custom_idp_attributes(b: Backend) {
    let cost_center = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter";
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.target
            .attributes
            .insert(cost_center.into(), "costCenter".into());
        s.target.attributes.insert("title".into(), "jobCode".into());
    })
    .await;
    d.idp.set_okta_user(
        "00uMAP",
        "ACTIVE",
        Some("mapped@example.com"),
        "Map",
        "Ped",
        Some("Ignored title"),
    );
    d.idp
        .set_okta_profile_field("00uMAP", "costCenter", "CC-42");
    d.idp.set_okta_profile_field("00uMAP", "jobCode", "J-7");
    d.okta(okta_delivery(
        "map-1",
        "user.lifecycle.create",
        "00uMAP",
        "mapped@example.com",
    ))
    .await;
    let user = d.target.user("mapped@example.com").await.expect("created");
    let enterprise = &user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(user["title"], "J-7");
    assert_eq!(enterprise["costCenter"], "CC-42");
    assert_eq!(
        enterprise["department"], "Engineering",
        "unmapped paths keep the profile's default"
    );
    d.finish().await;
}

/// Okta lists a user's groups 200 a page: a user in scope through a group on a later page is
/// provisioned (and joins its mirrored group), never taken for out of scope.
pub async fn a_user_in_scope_through_a_group_on_a_later_page_is_in_scope(b: Backend) {
    let d = crate::groups::okta_groups_mirrored(b, &["00gENG"]).await;
    d.idp.set_okta_user(
        "00uMANY",
        "ACTIVE",
        Some("many.groups@example.com"),
        "Many",
        "Groups",
        None,
    );
    let mut groups: Vec<String> = (0..250).map(|n| format!("00gNOISE{n:03}")).collect();
    groups.push("00gENG".into());
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    d.idp.set_okta_groups("00uMANY", &refs);
    d.okta(okta_delivery(
        "many-1",
        "user.lifecycle.create",
        "00uMANY",
        "many.groups@example.com",
    ))
    .await;
    let account = d
        .target
        .user("many.groups@example.com")
        .await
        .expect("provisioned: in scope through 00gENG, on the second page");
    assert_eq!(account["active"], true);
    let id = d.target.id_of("many.groups@example.com").await;
    assert_eq!(d.target.group_members("00gENG").await, Some(vec![id]));
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}
