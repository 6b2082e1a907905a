//! Group sync: memberships of the configured groups mirrored as SCIM Groups, on every backend.

use scim_relay_core::config::{Settings, TargetProfile};
use scim_relay_core::model::HoldState;
use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE};
use scim_relay_tests::payloads::{graph_notification, okta_delivery};

pub async fn okta_group_memberships_are_mirrored_and_a_deleted_group_is_made_again(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.okta.group_ids = vec!["00gENG".into(), "00gOPS".into()];
        s.target.sync_groups = true;
    })
    .await;
    let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uGRP", "g");
    d.idp.set_okta_user(
        "00uGRP",
        "ACTIVE",
        Some("grouped@example.com"),
        "Grou",
        "Ped",
        None,
    );
    d.idp.set_okta_groups("00uGRP", &["00gENG", "00gUNRELATED"]);
    d.okta(event("g-1", "user.lifecycle.create")).await;
    let uid = d.target.user("grouped@example.com").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        d.target.group_members("00gENG").await,
        Some(vec![uid.clone()])
    );
    assert_eq!(
        d.target.group_members("00gUNRELATED").await,
        None,
        "only configured groups"
    );

    d.idp.set_okta_groups("00uGRP", &["00gENG", "00gOPS"]);
    d.okta(event("g-2", "group.user_membership.add")).await;
    assert_eq!(
        d.target.group_members("00gOPS").await,
        Some(vec![uid.clone()])
    );

    // Nothing changed: no group call.
    let calls = d.target.calls().len();
    d.okta(event("g-3", "user.account.update_profile")).await;
    assert_eq!(
        d.target.calls().len(),
        calls,
        "{:?}",
        &d.target.calls()[calls..]
    );

    d.idp.set_okta_groups("00uGRP", &["00gOPS"]);
    d.okta(event("g-4", "group.user_membership.remove")).await;
    assert_eq!(
        d.target.group_members("00gENG").await,
        Some(vec![]),
        "left, group kept"
    );
    assert_eq!(
        d.target.group_members("00gOPS").await,
        Some(vec![uid.clone()])
    );
    assert_eq!(
        d.target.user("grouped@example.com").await.unwrap()["active"],
        true,
        "still in scope through 00gOPS"
    );
    let group_puts = d
        .target
        .calls()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.contains("/Groups"))
        .count();
    assert_eq!(group_puts, 0, "member lists are never replaced");

    // An admin deletes a group on the target: the relay forgets its stale record and makes
    // the group again for the next join (on AWS: a DeleteItem the worker must be granted).
    d.target.delete_group_by_hand("00gENG").await;
    d.idp.set_okta_groups("00uGRP", &["00gOPS", "00gENG"]);
    d.okta(event("g-5", "group.user_membership.add")).await;
    assert_eq!(d.target.groups_named("00gENG").await, 1, "made again");
    assert_eq!(
        d.target.group_members("00gENG").await,
        Some(vec![uid.clone()])
    );
    assert_eq!(d.depth().await, (0, 0), "nothing parked");
    d.finish().await;
}

pub async fn entra_group_memberships_are_mirrored_with_the_groups_display_names(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.target.profile = TargetProfile::Generic;
        s.entra.group_ids = vec!["grp-a".into(), "grp-b".into()];
        s.target.sync_groups = true;
    })
    .await;
    d.idp
        .set_graph_user("e-grp", "Member@contoso.com", true, "Mem Ber", None);
    d.idp.set_graph_groups("e-grp", &["grp-b"]);
    d.entra(graph_notification("e-grp", CLIENT_STATE, 1)).await;
    let uid = d.target.id_of("member@contoso.com").await;
    assert_eq!(d.target.group_members("Entra grp-b").await, Some(vec![uid]));
    assert_eq!(d.target.group_members("Entra grp-a").await, None);
    d.finish().await;
}

pub async fn a_recreated_account_rejoins_its_groups(b: Backend) {
    let d = Deployment::start_with(b, |s| {
        s.okta.group_ids = vec!["00gENG".into()];
        s.target.sync_groups = true;
    })
    .await;
    let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uRE", "rejoin@example.com");
    let rejoin = |title| {
        d.idp.set_okta_user(
            "00uRE",
            "ACTIVE",
            Some("rejoin@example.com"),
            "Re",
            "Join",
            Some(title),
        )
    };
    rejoin("v1");
    d.idp.set_okta_groups("00uRE", &["00gENG"]);
    d.okta(event("rj-1", "user.lifecycle.create")).await;
    let first = d.target.id_of("rejoin@example.com").await;
    assert_eq!(
        d.target.group_members("00gENG").await,
        Some(vec![first.clone()])
    );

    // The account disappears from the target; the next change re-creates it.
    d.target.delete_user_by_hand(&first).await;
    rejoin("v2");
    d.okta(event("rj-2", "user.account.update_profile")).await;
    let second = d.target.id_of("rejoin@example.com").await;
    assert_ne!(first, second);
    let members = d.target.group_members("00gENG").await.unwrap_or_default();
    assert!(
        members.contains(&second),
        "the new account rejoined: {members:?}"
    );
    d.finish().await;
}

pub async fn a_group_failure_parks_the_groups_but_keeps_the_user_change(b: Backend) {
    // This Datadog org has no SCIM Groups (Teams not enabled): /Groups answers 404.
    let d = Deployment::options(b)
        .datadog()
        .start(|s| {
            s.okta.group_ids = vec!["00gENG".into()];
            s.target.sync_groups = true;
        })
        .await;
    d.target.datadog_fixture().disable_teams();
    d.idp.set_okta_user(
        "00uNOTEAM",
        "ACTIVE",
        Some("noteam@example.com"),
        "No",
        "Team",
        None,
    );
    d.idp.set_okta_groups("00uNOTEAM", &["00gENG"]);
    d.okta(okta_delivery(
        "nt-1",
        "user.lifecycle.create",
        "00uNOTEAM",
        "noteam@example.com",
    ))
    .await;
    assert_eq!(
        d.target
            .user("noteam@example.com")
            .await
            .expect("the user part landed")["active"],
        true
    );
    let reasons = d.dead_letters().await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(d.target.count("POST"), 1, "created once");
    d.finish().await;
}

/// A leaver is out of every mirrored group at once — switched off in the IdP, or gone from
/// it — and rejoins from the directory's truth when reactivated; `plan` shows the leaving
/// before it happens. With `leavers_leave_groups = false`, a switched-off account keeps the
/// memberships the directory still lists.
pub async fn a_leaver_leaves_every_mirrored_group_and_rejoins_when_reactivated(b: Backend) {
    leavers_leave_groups_on(Profile::Generic, b).await
}

pub async fn a_leaver_leaves_every_mirrored_team_on_the_datadog_profile(b: Backend) {
    leavers_leave_groups_on(Profile::Datadog, b).await
}

async fn leavers_leave_groups_on(profile: Profile, b: Backend) {
    let mut d = okta_groups_on(profile, b, &["00gENG", "00gOPS"], |_| {}).await;
    let event = |uuid: &str, event_type: &str, id: &str, email: &str| {
        okta_delivery(uuid, event_type, id, email)
    };
    for (id, email, groups) in [
        ("00uLEAVER", "leaver@example.com", &["00gENG", "00gOPS"][..]),
        ("00uGONE", "gone@example.com", &["00gENG"][..]),
        ("00uSTAYS", "stays@example.com", &["00gENG", "00gOPS"][..]),
    ] {
        leaver_user(&d, id, "ACTIVE", email);
        d.idp.set_okta_groups(id, groups);
        d.okta(event(
            &format!("lv-{id}"),
            "user.lifecycle.create",
            id,
            email,
        ))
        .await;
    }
    let leaver = d.target.id_of("leaver@example.com").await;
    let gone = d.target.id_of("gone@example.com").await;
    let stays = d.target.id_of("stays@example.com").await;
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        members(&d, "00gENG").await,
        sorted(vec![leaver.clone(), gone.clone(), stays.clone()])
    );

    // Deprovisioned in Okta, still listed in both groups there.
    leaver_user(&d, "00uLEAVER", "DEPROVISIONED", "leaver@example.com");
    let plan = d
        .command(&["plan", "--user", "00uLEAVER", "--output", "json"])
        .await
        .expect("plan runs");
    let removals = plan.matches("remove member").count();
    assert_eq!(removals, 2, "the plan shows both leavings: {plan}");
    assert_eq!(
        members(&d, "00gOPS").await,
        sorted(vec![leaver.clone(), stays.clone()]),
        "the plan wrote nothing"
    );
    d.okta(event(
        "lv-off",
        "user.lifecycle.deactivate",
        "00uLEAVER",
        "leaver@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("leaver@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(
        members(&d, "00gENG").await,
        sorted(vec![gone.clone(), stays.clone()])
    );
    assert_eq!(members(&d, "00gOPS").await, vec![stays.clone()]);

    // Reactivated: back in both, as the directory lists.
    leaver_user(&d, "00uLEAVER", "ACTIVE", "leaver@example.com");
    d.okta(event(
        "lv-on",
        "user.lifecycle.reactivate",
        "00uLEAVER",
        "leaver@example.com",
    ))
    .await;
    assert_eq!(
        members(&d, "00gOPS").await,
        sorted(vec![leaver.clone(), stays.clone()])
    );
    assert!(members(&d, "00gENG").await.contains(&leaver));

    // Gone from the directory: switched off and out of its group.
    d.idp.remove_okta_user("00uGONE");
    d.okta(event(
        "lv-gone",
        "user.lifecycle.delete.initiated",
        "00uGONE",
        "gone@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("gone@example.com").await.unwrap()["active"],
        false
    );
    assert!(!members(&d, "00gENG").await.contains(&gone));

    // Off: a switched-off account keeps what the directory still lists.
    d.restart(|s| s.target.leavers_leave_groups = false).await;
    leaver_user(&d, "00uSTAYS", "DEPROVISIONED", "stays@example.com");
    d.okta(event(
        "lv-stays",
        "user.lifecycle.deactivate",
        "00uSTAYS",
        "stays@example.com",
    ))
    .await;
    assert_eq!(
        d.target.user("stays@example.com").await.unwrap()["active"],
        false
    );
    assert!(members(&d, "00gENG").await.contains(&stays));
    assert!(members(&d, "00gOPS").await.contains(&stays));
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// A deployment with Okta alone, scoped by and mirroring `groups`, on the generic profile.
pub(crate) async fn okta_groups_mirrored(b: Backend, groups: &[&str]) -> Deployment {
    okta_groups_on(Profile::Generic, b, groups, |_| {}).await
}

/// Which target a group behaviour runs against: Datadog's Teams, or an RFC 7644 provider.
#[derive(Clone, Copy)]
pub(crate) enum Profile {
    Datadog,
    Generic,
}

/// A deployment with Okta alone, scoped by and mirroring `groups`, on `profile`.
pub(crate) async fn okta_groups_on(
    profile: Profile,
    b: Backend,
    groups: &[&str],
    customize: impl FnOnce(&mut Settings),
) -> Deployment {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let settings = |s: &mut Settings| {
        s.entra.client_id = None;
        s.okta.group_ids = groups;
        s.target.sync_groups = true;
        customize(s);
    };
    match profile {
        Profile::Datadog => Deployment::options(b).datadog().start(settings).await,
        Profile::Generic => {
            Deployment::start_with(b, |s| {
                s.target.profile = TargetProfile::Generic;
                settings(s);
            })
            .await
        }
    }
}

fn leaver_user(d: &Deployment, id: &str, status: &str, email: &str) {
    d.idp
        .set_okta_user(id, status, Some(email), "Lea", "Ver", None)
}

/// A mirrored group's members, sorted.
async fn members(d: &Deployment, group: &str) -> Vec<String> {
    let mut m = d.target.group_members(group).await.unwrap_or_default();
    m.sort();
    m
}

/// A group renamed in the IdP stays one group on the target: kept by the IdP's id, it is
/// renamed (one `PATCH` of `displayName`), its members stay, and a new joiner joins it; `plan`
/// shows the rename first.
pub async fn a_renamed_group_stays_one_group_with_every_member(b: Backend) {
    renamed_group_on(Profile::Generic, b).await
}

pub async fn a_renamed_group_stays_one_team_on_the_datadog_profile(b: Backend) {
    renamed_group_on(Profile::Datadog, b).await
}

async fn renamed_group_on(profile: Profile, b: Backend) {
    let d = okta_groups_on(profile, b, &["00gENG"], |_| {}).await;
    d.idp.rename_okta_group("00gENG", "Engineering");
    let join = |n: usize| {
        let (id, email) = (format!("00uRN{n}"), format!("rn{n}@example.com"));
        d.idp
            .set_okta_user(&id, "ACTIVE", Some(&email), "Re", "Named", None);
        d.idp.set_okta_groups(&id, &["00gENG"]);
        okta_delivery(&format!("rn-{n}"), "user.lifecycle.create", &id, &email)
    };
    for n in 0..3 {
        d.okta(join(n)).await;
    }
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(d.target.id_of(&format!("rn{n}@example.com")).await);
    }
    ids.sort();
    assert_eq!(members(&d, "Engineering").await, ids);

    d.idp.rename_okta_group("00gENG", "Platform Engineering");
    let plan = d
        .command(&["plan", "--user", "00uRN0", "--output", "json"])
        .await
        .expect("plan runs");
    assert!(
        plan.contains("displayName Platform Engineering"),
        "the plan shows the rename: {plan}"
    );
    assert_eq!(d.target.groups_named("Platform Engineering").await, 0);
    for n in 0..3 {
        d.okta(okta_delivery(
            &format!("rn-again-{n}"),
            "user.account.update_profile",
            &format!("00uRN{n}"),
            &format!("rn{n}@example.com"),
        ))
        .await;
    }
    assert_eq!(d.target.groups_named("Engineering").await, 0, "renamed");
    assert_eq!(d.target.groups_named("Platform Engineering").await, 1);
    assert_eq!(members(&d, "Platform Engineering").await, ids);

    // A new joiner joins the same group.
    d.okta(join(3)).await;
    ids.push(d.target.id_of("rn3@example.com").await);
    ids.sort();
    assert_eq!(d.target.groups_named("Platform Engineering").await, 1);
    assert_eq!(members(&d, "Platform Engineering").await, ids);
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// The membership breaker: a group losing more members in the window than
/// `target.membership_removal_limit`, while their accounts stay active, keeps the rest until an
/// operator decides: approved, they leave; rejected, they stay; back in the group in the IdP,
/// the hold lapses. `plan` shows the held ones as held.
pub async fn a_group_losing_too_many_members_at_once_waits_for_an_operator(b: Backend) {
    membership_breaker_on(Profile::Generic, b).await
}

pub async fn a_team_losing_too_many_members_at_once_waits_on_the_datadog_profile(b: Backend) {
    membership_breaker_on(Profile::Datadog, b).await
}

async fn membership_breaker_on(profile: Profile, b: Backend) {
    let d = okta_groups_on(profile, b, &["00gENG", "00gOPS"], |s| {
        s.target.membership_removal_limit = 2;
    })
    .await;
    let ids: Vec<String> = (1..=5).map(|n| format!("00uMB{n}")).collect();
    let email = |id: &str| format!("{}@example.com", id.to_lowercase());
    for id in &ids {
        leaver_user(&d, id, "ACTIVE", &email(id));
        d.idp.set_okta_groups(id, &["00gENG", "00gOPS"]);
        d.okta(okta_delivery(
            &format!("mb-{id}"),
            "user.lifecycle.create",
            id,
            "m",
        ))
        .await;
    }
    assert_eq!(members(&d, "00gENG").await.len(), 5);

    // 00gENG is emptied in the IdP by mistake; everyone stays in scope through 00gOPS.
    for id in &ids {
        d.idp.set_okta_groups(id, &["00gOPS"]);
        d.okta(okta_delivery(
            &format!("mb-off-{id}"),
            "group.user_membership.remove",
            id,
            "m",
        ))
        .await;
    }
    assert_eq!(members(&d, "00gENG").await.len(), 3, "two left, three held");
    assert_eq!(members(&d, "00gOPS").await.len(), 5, "untouched");
    let held = d.held().await;
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().all(|h| h.hold.action == "leave groups"
        && h.hold.state == HoldState::Pending
        && h.hold.reason.contains("the limit is 2")));
    for h in &held {
        assert_eq!(
            d.target.user(&h.user_name).await.unwrap()["active"],
            true,
            "the account is not touched"
        );
    }
    let listing = d.command(&["held"]).await.expect("held lists");
    assert_eq!(listing.matches("leave groups").count(), 3, "{listing}");
    let (approved, rejected, returning) = (&held[0], &held[1], &held[2]);
    let plan = d
        .command(&["plan", "--user", &approved.key.user_id, "--output", "json"])
        .await
        .expect("plan runs");
    let plan: serde_json::Value = serde_json::from_str(&plan).expect("json");
    assert_eq!(plan["users"][0]["action"], "held", "{plan}");

    // Approved: that one leaves. Rejected: stays, even on a later trigger.
    d.command(&["held", "approve", &approved.user_name])
        .await
        .expect("approved");
    d.settle().await;
    let approved_id = d.target.id_of(&approved.user_name).await;
    assert!(!members(&d, "00gENG").await.contains(&approved_id));
    d.command(&["held", "reject", &rejected.user_name])
        .await
        .expect("rejected");
    d.okta(okta_delivery(
        "mb-again",
        "user.account.update_profile",
        &rejected.key.user_id,
        "m",
    ))
    .await;
    let rejected_id = d.target.id_of(&rejected.user_name).await;
    assert!(members(&d, "00gENG").await.contains(&rejected_id));

    // Put back in the IdP: nothing to remove any more, the hold lapses.
    d.idp
        .set_okta_groups(&returning.key.user_id, &["00gENG", "00gOPS"]);
    d.okta(okta_delivery(
        "mb-back",
        "group.user_membership.add",
        &returning.key.user_id,
        "m",
    ))
    .await;
    let left: Vec<String> = d.held().await.into_iter().map(|h| h.user_name).collect();
    assert_eq!(
        left,
        vec![rejected.user_name.clone()],
        "only the rejection stays on record"
    );
    assert_eq!(members(&d, "00gENG").await.len(), 2);
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}
