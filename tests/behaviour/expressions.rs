//! Attribute expressions (`target.attributes`) and attribute scoping rules (`scope.rules`), on
//! every backend and both target profiles: computed values follow the directory with one
//! `PATCH` per change, and a user the rules stop admitting is switched off through the
//! deprovisioning breaker like any other leaver.

use scim_relay_core::config::{ScopeMatch, Settings, TargetProfile};
use scim_relay_core::model::HoldState;
use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;

fn expression_settings(s: &mut Settings) {
    s.target.attributes.insert(
        "title".into(),
        r#"Switch(okta:department, "Staff", "Engineering", "Engineer", "Sales", "Account Executive")"#
            .into(),
    );
    s.target.attributes.insert(
        "name.formatted".into(),
        r#"Join(", ", Upper(okta:lastName), Coalesce(okta:nickName, okta:firstName))"#.into(),
    );
}

async fn expressions_compute_values(d: Deployment) {
    let event = |uuid: &str, event_type| okta_delivery(uuid, event_type, "00uEXPR", "x");
    d.idp.set_okta_user(
        "00uEXPR",
        "ACTIVE",
        Some("expr@example.com"),
        "Ada",
        "Lovelace",
        Some("ignored: the expression decides"),
    );
    d.okta(event("x-1", "user.lifecycle.create")).await;
    let user = d.target.user("expr@example.com").await.expect("created");
    assert_eq!(user["title"], "Engineer", "the Switch's match");
    assert_eq!(user["name"]["formatted"], "LOVELACE, Ada");

    // One attribute the expressions read changes: one PATCH, and only what it changes.
    let patches = d.target.count("PATCH");
    d.idp
        .set_okta_profile_field("00uEXPR", "department", "Sales");
    d.okta(event("x-2", "user.account.update_profile")).await;
    let user = d.target.user("expr@example.com").await.unwrap();
    assert_eq!(user["title"], "Account Executive");
    assert_eq!(user["name"]["formatted"], "LOVELACE, Ada");
    assert_eq!(d.target.count("PATCH"), patches + 1);

    // No key matches: the Switch's default; a nickname wins over the first name.
    d.idp
        .set_okta_profile_field("00uEXPR", "department", "Legal");
    d.idp
        .set_okta_profile_field("00uEXPR", "nickName", "Countess");
    d.okta(event("x-3", "user.account.update_profile")).await;
    let user = d.target.user("expr@example.com").await.unwrap();
    assert_eq!(user["title"], "Staff");
    assert_eq!(user["name"]["formatted"], "LOVELACE, Countess");

    // An unrelated change the expressions do not read: no call.
    let calls = d.target.calls().len();
    d.idp.set_okta_profile_field("00uEXPR", "unrelated", "x");
    d.okta(event("x-4", "user.account.update_profile")).await;
    assert_eq!(
        d.target.calls().len(),
        calls,
        "{:?}",
        &d.target.calls()[calls..]
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn attribute_expressions_compute_values_on_the_datadog_profile(b: Backend) {
    expressions_compute_values(
        Deployment::options(b)
            .datadog()
            .start(expression_settings)
            .await,
    )
    .await;
}

pub async fn attribute_expressions_compute_values_on_a_generic_scim_target(b: Backend) {
    expressions_compute_values(
        Deployment::start_with(b, |s| {
            s.target.profile = TargetProfile::Generic;
            expression_settings(s);
        })
        .await,
    )
    .await;
}

fn scoping_settings(s: &mut Settings) {
    s.scope.rules = vec![
        r#"department in ("Engineering", "Platform")"#.into(),
        r#"okta:userType not_equals "Contractor""#.into(),
    ];
    s.scope.match_rules = ScopeMatch::All;
    // Every deprovision waits for an operator: the rules' leavers must be among them.
    s.target.deprovision_limit = 0;
    s.target.deprovision_percent = 0;
}

async fn scoping_rules_admit_by_attribute(d: Deployment) {
    let user = |id: &str, email: &str, department: &str, user_type: &str| {
        d.idp
            .set_okta_user(id, "ACTIVE", Some(email), "Sco", "Ped", None);
        d.idp.set_okta_profile_field(id, "department", department);
        d.idp.set_okta_profile_field(id, "userType", user_type);
    };
    user("00uIN", "in@example.com", "engineering", "Employee");
    user("00uSALES", "sales@example.com", "Sales", "Employee");
    user(
        "00uCONTRACT",
        "contract@example.com",
        "Platform",
        "Contractor",
    );
    for id in ["00uIN", "00uSALES", "00uCONTRACT"] {
        d.okta(okta_delivery(
            &format!("s-{id}"),
            "user.lifecycle.create",
            id,
            "s",
        ))
        .await;
    }
    assert_eq!(
        d.target.user("in@example.com").await.expect("admitted")["active"],
        true,
        "the comparison ignores case"
    );
    assert!(d.target.user("sales@example.com").await.is_none());
    assert!(d.target.user("contract@example.com").await.is_none());

    // The plan says why a user is left out, and the worker agrees.
    let plan = d
        .command(&["plan", "--user", "00uSALES"])
        .await
        .expect("plan runs");
    assert!(plan.contains("out of scope: scope.rules"), "{plan}");

    // Moved to Sales: out of scope by the rules, so the breaker holds the deactivation.
    d.idp.set_okta_profile_field("00uIN", "department", "Sales");
    d.okta(okta_delivery(
        "s-move",
        "user.account.update_profile",
        "00uIN",
        "s",
    ))
    .await;
    assert_eq!(
        d.target.user("in@example.com").await.unwrap()["active"],
        true,
        "held, not applied"
    );
    let held = d.held().await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].user_name, "in@example.com");
    assert_eq!(held[0].hold.state, HoldState::Pending);
    assert_eq!(held[0].hold.action, "deactivate");
    d.command(&["held", "approve", "in@example.com"])
        .await
        .expect("approved");
    d.settle().await;
    assert_eq!(
        d.target.user("in@example.com").await.unwrap()["active"],
        false,
        "approved: switched off"
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn scoping_rules_admit_by_attribute_and_leavers_wait_for_the_breaker(b: Backend) {
    scoping_rules_admit_by_attribute(
        Deployment::start_with(b, |s| {
            s.target.profile = TargetProfile::Generic;
            scoping_settings(s);
        })
        .await,
    )
    .await;
}

pub async fn scoping_rules_on_the_datadog_profile(b: Backend) {
    scoping_rules_admit_by_attribute(
        Deployment::options(b)
            .datadog()
            .start(scoping_settings)
            .await,
    )
    .await;
}
