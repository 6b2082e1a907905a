//! Roles from IdP groups (`okta.role_groups`, `entra.role_groups`, `target.role_ids` as the
//! default), on every backend and on both target profiles: a user's roles follow their
//! groups with one `PATCH` of `roles`, nothing is sent when nothing changed, a role group puts
//! nobody in scope, and `plan` shows the roles before they are applied.

use std::collections::BTreeMap;

use scim_relay_core::config::{Settings, TargetProfile};
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{graph_notification, okta_delivery};
use serde_json::{json, Value};

const ADMINS: &str = "00gADMINS";
const SRE: &str = "00gSRE";
const READERS: &str = "00gREADERS";

fn role_settings(s: &mut Settings) {
    s.okta.app_id = Some("0oaDATADOG".into());
    s.okta.role_groups = BTreeMap::from([
        (ADMINS.to_string(), vec!["role-admin".to_string()]),
        (SRE.to_string(), vec!["role-standard".to_string()]),
        (READERS.to_string(), vec!["role-read-only".to_string()]),
    ]);
    s.entra.role_groups = BTreeMap::from([(
        "grp-entra-admins".to_string(),
        vec!["role-admin".to_string()],
    )]);
    s.target.role_ids = vec!["role-default".into()];
}

fn roles(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|v| json!({ "value": v })).collect())
}

/// Three groups, three roles: a user moved between them gets one `PATCH` of `roles` per move.
async fn roles_follow_groups(d: Deployment) {
    let event = |uuid: &str, event_type| okta_delivery(uuid, event_type, "00uROLE", "r");
    d.idp.set_okta_user(
        "00uROLE",
        "ACTIVE",
        Some("roles@example.com"),
        "Ro",
        "Les",
        None,
    );
    d.idp.assign_okta_app("0oaDATADOG", "00uROLE", true);
    d.idp.set_okta_groups("00uROLE", &[SRE]);
    d.okta(event("r-1", "user.lifecycle.create")).await;
    let user = d.target.user("roles@example.com").await.expect("created");
    assert_eq!(
        user["roles"],
        roles(&["role-standard"]),
        "created with its role"
    );

    // Moved to the admins: the plan says so first, and writes nothing.
    d.idp.set_okta_groups("00uROLE", &[ADMINS]);
    let writes = |d: &Deployment| {
        ["POST", "PATCH", "PUT", "DELETE"]
            .iter()
            .map(|m| d.target.count(m))
            .sum::<usize>()
    };
    let before = writes(&d);
    let plan = d
        .command(&["plan", "--user", "00uROLE"])
        .await
        .expect("plan runs");
    assert!(plan.contains("roles: role-admin"), "{plan}");
    assert!(plan.contains("(roles)"), "one PATCH of roles: {plan}");
    assert_eq!(writes(&d), before, "the plan wrote nothing");
    let patches = d.target.count("PATCH");
    d.okta(event("r-2", "group.user_membership.add")).await;
    assert_eq!(
        d.target.user("roles@example.com").await.unwrap()["roles"],
        roles(&["role-admin"])
    );
    assert_eq!(d.target.count("PATCH"), patches + 1, "one PATCH");
    assert_eq!(d.target.count("POST"), 1, "never re-created");

    // Nothing changed: no call at all.
    let calls = d.target.calls().len();
    d.okta(event("r-3", "user.account.update_profile")).await;
    assert_eq!(
        d.target.calls().len(),
        calls,
        "{:?}",
        &d.target.calls()[calls..]
    );

    // In two mapped groups: both roles. In none: the default.
    d.idp
        .set_okta_groups("00uROLE", &[READERS, ADMINS, "00gUNMAPPED"]);
    d.okta(event("r-4", "group.user_membership.add")).await;
    assert_eq!(
        d.target.user("roles@example.com").await.unwrap()["roles"],
        roles(&["role-admin", "role-read-only"])
    );
    d.idp.set_okta_groups("00uROLE", &["00gUNMAPPED"]);
    d.okta(event("r-5", "group.user_membership.remove")).await;
    let user = d.target.user("roles@example.com").await.unwrap();
    assert_eq!(user["roles"], roles(&["role-default"]));
    assert_eq!(
        user["active"], true,
        "scope is the app, not the role groups"
    );

    // A role group is no scope: an admin not assigned to the app gets no account.
    d.idp.set_okta_user(
        "00uOUTSIDER",
        "ACTIVE",
        Some("outsider@example.com"),
        "Out",
        "Sider",
        None,
    );
    d.idp.set_okta_groups("00uOUTSIDER", &[ADMINS]);
    d.okta(okta_delivery(
        "r-6",
        "group.user_membership.add",
        "00uOUTSIDER",
        "o",
    ))
    .await;
    assert!(d.target.user("outsider@example.com").await.is_none());

    // Entra: a member of a mapped group (transitively, as Graph answers) gets its role.
    d.idp
        .set_graph_user("e-role", "Entra.Role@contoso.com", true, "Entra Role", None);
    d.idp.set_graph_groups("e-role", &["grp-entra-admins"]);
    d.entra(graph_notification("e-role", CLIENT_STATE, 1)).await;
    assert_eq!(
        d.target.user("entra.role@contoso.com").await.unwrap()["roles"],
        roles(&["role-admin"])
    );
    assert_eq!(d.depth().await, (0, 0), "nothing parked");
    d.finish().await;
}

pub async fn three_groups_map_to_three_roles_on_the_datadog_profile(b: Backend) {
    roles_follow_groups(Deployment::options(b).datadog().start(role_settings).await).await;
}

pub async fn three_groups_map_to_three_roles_on_a_generic_scim_target(b: Backend) {
    roles_follow_groups(
        Deployment::start_with(b, |s| {
            s.target.profile = TargetProfile::Generic;
            role_settings(s);
        })
        .await,
    )
    .await;
}
