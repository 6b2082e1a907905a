//! Group sync: memberships of the configured groups mirrored as SCIM Groups, on every backend.

use scim_relay_core::config::TargetProfile;
use scim_relay_tests::deployment::{Backend, Deployment};
use scim_relay_tests::payloads::okta_delivery;

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
