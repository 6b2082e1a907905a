//! Planning: compare what the user should be with what was last applied, and decide the fewest
//! SCIM calls that converge the target. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{DesiredUser, PatchOp};
use crate::config::TargetProfile;
use crate::state::{attributes_hash, UserState};

/// What the worker must do on the target for one user.
#[derive(Debug, Clone, PartialEq)]
pub enum ScimPlan {
    /// The target already matches.
    Nothing { reason: &'static str },
    /// The user should exist and is not known to exist: look up by userName first, adopt an
    /// existing account, create otherwise.
    Create { user: DesiredUser },
    /// The user exists (`scim_id`): send only these changes.
    Update { scim_id: String, ops: Vec<PatchOp> },
    /// Deactivate an account the relay never recorded (created before it ran), if there is one.
    DeactivateUnrecorded { user_name: String },
    /// `DELETE /Users/{id}`: only for a hard delete in the IdP under the `delete` policy.
    Delete { scim_id: String },
}

/// A create whose answer was lost: no SCIM id, but the relay may have made an account.
pub fn create_in_doubt(recorded: Option<&UserState>) -> Option<&UserState> {
    recorded.filter(|r| r.scim_id.is_none() && r.active)
}

/// A user the IdP deleted for good, under the `delete` policy: remove the recorded account.
pub fn plan_hard_delete(recorded: Option<&UserState>) -> ScimPlan {
    match recorded.and_then(|r| r.scim_id.clone()) {
        Some(scim_id) => ScimPlan::Delete { scim_id },
        // The account is not known for sure: find it and switch it off (never delete a guess).
        None => match create_in_doubt(recorded) {
            Some(r) => ScimPlan::DeactivateUnrecorded {
                user_name: r.user_name.clone(),
            },
            None => ScimPlan::Nothing {
                reason: "hard-deleted user has no account on the target",
            },
        },
    }
}

/// `desired` is `None` when the directory no longer has the user.
pub fn plan(
    profile: TargetProfile,
    desired: Option<&DesiredUser>,
    recorded: Option<&UserState>,
) -> ScimPlan {
    let existing = recorded.and_then(|r| r.scim_id.as_deref().map(|id| (r, id)));
    match (desired, existing) {
        (None, Some((state, id))) if state.active => ScimPlan::Update {
            scim_id: id.to_string(),
            ops: vec![deactivate()],
        },
        // A create whose answer was lost, for a user who is gone since: the account may
        // exist; look it up by userName and switch it off.
        (None, None) if create_in_doubt(recorded).is_some() => ScimPlan::DeactivateUnrecorded {
            user_name: recorded.map(|r| r.user_name.clone()).unwrap_or_default(),
        },
        (None, _) => ScimPlan::Nothing {
            reason: "user is gone from the directory and not active on the target",
        },
        (Some(user), None) if user.active => ScimPlan::Create { user: user.clone() },
        (Some(user), None) => match recorded {
            // A create in doubt for a user who is no longer to have an account (unassigned,
            // deactivated, pending again): whatever it made is switched off.
            Some(state) if create_in_doubt(Some(state)).is_some() => {
                ScimPlan::DeactivateUnrecorded {
                    user_name: state.user_name.clone(),
                }
            }
            // Already looked up and recorded as absent or inactive.
            Some(state) if !state.active => ScimPlan::Nothing {
                reason: "user is inactive and has no active account",
            },
            // A staged user may share an address with an account someone else uses today.
            _ if user.pending => ScimPlan::Nothing {
                reason: "user is not active in the IdP yet",
            },
            _ => ScimPlan::DeactivateUnrecorded {
                user_name: user.user_name.clone(),
            },
        },
        (Some(user), Some((state, id))) => {
            if !user.active {
                return if state.active {
                    // Offboarding touches `active` only: a deactivated account keeps its data.
                    ScimPlan::Update {
                        scim_id: id.to_string(),
                        ops: vec![deactivate()],
                    }
                } else {
                    ScimPlan::Nothing {
                        reason: "user is already inactive on the target",
                    }
                };
            }
            let mut ops = if attributes_hash(&user.attributes) == state.attributes_hash {
                Vec::new()
            } else {
                diff(profile, state, user)
            };
            if !state.active {
                ops.push(PatchOp::replace("active", json!(true)));
            }
            if ops.is_empty() {
                ScimPlan::Nothing {
                    reason: "nothing changed since the last apply",
                }
            } else {
                ScimPlan::Update {
                    scim_id: id.to_string(),
                    ops,
                }
            }
        }
    }
}

/// Group membership changes for one user: IdP groups to join (id, display name) and SCIM
/// groups to leave (IdP id, SCIM group id). Memberships are only added once the user has an
/// active account; they are left one by one, never by replacing a member list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupPlan {
    pub join: Vec<(String, String)>,
    pub leave: Vec<(String, String)>,
}

impl GroupPlan {
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.leave.is_empty()
    }
}

pub fn plan_groups(
    wanted: &BTreeMap<String, String>,
    applied: &BTreeMap<String, String>,
    account_active: bool,
    leavers_leave: bool,
) -> GroupPlan {
    // A switched-off account keeps no membership under `leavers_leave_groups`: a leaver is
    // out of every team (paging, ownership) at once, and rejoins from the directory's truth
    // when reactivated.
    let keep_none = !account_active && leavers_leave;
    let join = if account_active {
        wanted
            .iter()
            .filter(|(id, _)| !applied.contains_key(*id))
            .map(|(id, name)| (id.clone(), name.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let leave = applied
        .iter()
        .filter(|(id, _)| keep_none || !wanted.contains_key(*id))
        .map(|(id, scim_id)| (id.clone(), scim_id.clone()))
        .collect();
    GroupPlan { join, leave }
}

/// Why a plan was dropped by [`guard_owner`].
pub const OWNER_PROTECTED: &str = "the owner of the target's credential is never deactivated";

/// The account that owns the target's credential is never switched off, whatever the IdP says:
/// Datadog revokes a disabled user's application keys, which would stop provisioning for
/// everyone (and nobody could re-enable the account through the relay).
/// `user_names`: every name the account goes by in this plan — the one recorded and the one the
/// directory gives now — so a rename in the same change cannot slip the owner through.
pub fn guard_owner(plan: ScimPlan, user_names: &[&str], owner: Option<&str>) -> ScimPlan {
    let owner: Vec<String> = owner.map(str::to_string).into_iter().collect();
    if plan.deprovisions() && any_named(user_names, &owner) {
        ScimPlan::Nothing {
            reason: OWNER_PROTECTED,
        }
    } else {
        plan
    }
}

/// Why a plan was dropped by [`guard_protected`].
pub const PROTECTED: &str = "the account is in target.protected_users: the relay never touches it";

/// A protected account (break-glass admin, vendor account) is left entirely alone: no create,
/// adoption, change, deactivation or delete, whichever of its names (`user_names`: the recorded
/// and the directory's) is on the list.
pub fn guard_protected(plan: ScimPlan, user_names: &[&str], protected: &[String]) -> ScimPlan {
    match plan {
        ScimPlan::Nothing { .. } => plan,
        _ if any_named(user_names, protected) => ScimPlan::Nothing { reason: PROTECTED },
        _ => plan,
    }
}

/// True when any of `user_names` is on `list` (userNames compare case-insensitively).
pub fn any_named(user_names: &[&str], list: &[String]) -> bool {
    list.iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .any(|name| {
            user_names
                .iter()
                .any(|user| user.trim().eq_ignore_ascii_case(name))
        })
}

impl ScimPlan {
    /// Whether the plan switches an account off or deletes it: what the owner guard and the
    /// deprovisioning breaker watch.
    pub fn deprovisions(&self) -> bool {
        match self {
            ScimPlan::Update { ops, .. } => ops
                .iter()
                .any(|op| op.path == "active" && op.value == Some(json!(false))),
            ScimPlan::DeactivateUnrecorded { .. } | ScimPlan::Delete { .. } => true,
            ScimPlan::Nothing { .. } | ScimPlan::Create { .. } => false,
        }
    }
}

fn deactivate() -> PatchOp {
    PatchOp::replace("active", json!(false))
}

/// One operation per changed attribute. Datadog has no `remove`, so a cleared attribute is
/// replaced with an empty string there.
fn diff(profile: TargetProfile, state: &UserState, user: &DesiredUser) -> Vec<PatchOp> {
    let mut ops = Vec::new();
    for (path, value) in &user.attributes {
        if state.attributes.get(path) != Some(value) {
            ops.push(PatchOp::replace(path.clone(), value.clone()));
        }
    }
    for path in state.attributes.keys() {
        if !user.attributes.contains_key(path) {
            ops.push(match profile {
                TargetProfile::Generic => PatchOp::remove(path.clone()),
                TargetProfile::Datadog | TargetProfile::DryRun => {
                    PatchOp::replace(path.clone(), Value::String(String::new()))
                }
            });
        }
    }
    ops
}

#[cfg(test)]
mod tests {

    use chrono::Utc;

    use super::*;
    use crate::scim::PatchKind;

    fn user(active: bool, title: Option<&str>) -> DesiredUser {
        let mut attributes = BTreeMap::from([
            ("userName".to_string(), json!("a@example.com")),
            ("name.formatted".to_string(), json!("A")),
        ]);
        if let Some(t) = title {
            attributes.insert("title".into(), json!(t));
        }
        DesiredUser {
            user_name: "a@example.com".into(),
            active,
            pending: false,
            attributes,
            groups: BTreeMap::new(),
            lifecycle: "ACTIVE".into(),
        }
    }

    fn applied(u: &DesiredUser, scim_id: Option<&str>) -> UserState {
        UserState {
            scim_id: scim_id.map(str::to_string),
            user_name: u.user_name.clone(),
            attributes: u.attributes.clone(),
            attributes_hash: attributes_hash(&u.attributes),
            active: u.active,
            lifecycle: u.lifecycle.clone(),
            version: 1,
            updated_at: Utc::now(),
            ..Default::default()
        }
    }

    const P: TargetProfile = TargetProfile::Datadog;

    #[test]
    fn a_create_in_doubt_is_looked_up_and_switched_off_unless_the_user_should_have_it() {
        let mut doubt = applied(&user(true, None), None);
        doubt.lifecycle = "create-in-doubt".into();
        let off = ScimPlan::DeactivateUnrecorded {
            user_name: "a@example.com".into(),
        };
        // Gone, deactivated, out of scope (pending), or hard-deleted: find it, switch it off.
        assert_eq!(plan(TargetProfile::Generic, None, Some(&doubt)), off);
        assert_eq!(
            plan(
                TargetProfile::Generic,
                Some(&user(false, None)),
                Some(&doubt)
            ),
            off
        );
        let mut unassigned = user(false, None);
        unassigned.pending = true;
        assert_eq!(
            plan(TargetProfile::Generic, Some(&unassigned), Some(&doubt)),
            off
        );
        assert_eq!(plan_hard_delete(Some(&doubt)), off);
        // Still to have an account: look up first and adopt it (or create it).
        assert!(matches!(
            plan(
                TargetProfile::Generic,
                Some(&user(true, None)),
                Some(&doubt)
            ),
            ScimPlan::Create { .. }
        ));
    }

    #[test]
    fn group_plans_join_and_leave_one_by_one_and_only_with_an_active_account() {
        let mut u = user(true, None);
        u.groups = BTreeMap::from([
            ("g1".to_string(), "Eng".to_string()),
            ("g2".to_string(), "Ops".to_string()),
        ]);
        let applied = BTreeMap::from([
            ("g2".to_string(), "scim-g2".to_string()),
            ("g3".to_string(), "scim-g3".to_string()),
        ]);
        let p = plan_groups(&u.groups, &applied, true, true);
        assert_eq!(p.join, vec![("g1".to_string(), "Eng".to_string())]);
        assert_eq!(p.leave, vec![("g3".to_string(), "scim-g3".to_string())]);
        // Nothing changes twice.
        let after = BTreeMap::from([
            ("g1".to_string(), "scim-g1".to_string()),
            ("g2".to_string(), "scim-g2".to_string()),
        ]);
        assert!(plan_groups(&u.groups, &after, true, true).is_empty());
        // Without an active account: never join; leave every group (a leaver), or, with
        // `leavers_leave_groups = false`, only those the directory no longer lists.
        let p = plan_groups(&u.groups, &applied, false, true);
        assert!(p.join.is_empty());
        assert_eq!(p.leave.len(), 2);
        let p = plan_groups(&u.groups, &applied, false, false);
        assert!(p.join.is_empty());
        assert_eq!(p.leave, vec![("g3".to_string(), "scim-g3".to_string())]);
        // A deleted user wants no group.
        let p = plan_groups(&BTreeMap::new(), &after, false, true);
        assert_eq!(p.leave.len(), 2);
    }

    #[test]
    fn a_new_active_user_is_created() {
        let u = user(true, None);
        assert_eq!(plan(P, Some(&u), None), ScimPlan::Create { user: u });
    }

    #[test]
    fn an_unchanged_user_needs_no_call() {
        let u = user(true, Some("Eng"));
        assert!(matches!(
            plan(P, Some(&u), Some(&applied(&u, Some("id1")))),
            ScimPlan::Nothing { .. }
        ));
    }

    #[test]
    fn a_changed_attribute_is_the_only_operation() {
        let before = user(true, Some("Eng"));
        let after = user(true, Some("CTO"));
        assert_eq!(
            plan(P, Some(&after), Some(&applied(&before, Some("id1")))),
            ScimPlan::Update {
                scim_id: "id1".into(),
                ops: vec![PatchOp::replace("title", json!("CTO"))]
            }
        );
    }

    #[test]
    fn a_cleared_attribute_is_removed_or_blanked_per_profile() {
        let before = user(true, Some("Eng"));
        let after = user(true, None);
        let state = applied(&before, Some("id1"));
        let ScimPlan::Update { ops, .. } = plan(TargetProfile::Generic, Some(&after), Some(&state))
        else {
            panic!("expected an update");
        };
        assert_eq!(ops, vec![PatchOp::remove("title")]);
        let ScimPlan::Update { ops, .. } = plan(TargetProfile::Datadog, Some(&after), Some(&state))
        else {
            panic!("expected an update");
        };
        assert_eq!(ops[0].op, PatchKind::Replace);
        assert_eq!(ops[0].value, Some(json!("")));
    }

    #[test]
    fn deactivation_is_a_single_patch_of_active() {
        let before = user(true, Some("Eng"));
        let after = user(false, Some("Changed too"));
        assert_eq!(
            plan(P, Some(&after), Some(&applied(&before, Some("id1")))),
            ScimPlan::Update {
                scim_id: "id1".into(),
                ops: vec![PatchOp::replace("active", json!(false))]
            }
        );
        // And once inactive, nothing more.
        assert!(matches!(
            plan(P, Some(&after), Some(&applied(&after, Some("id1")))),
            ScimPlan::Nothing { .. }
        ));
    }

    #[test]
    fn reactivation_sets_active_and_catches_up_attributes() {
        let before = user(false, Some("Eng"));
        let after = user(true, Some("CTO"));
        let ScimPlan::Update { ops, .. } =
            plan(P, Some(&after), Some(&applied(&before, Some("id1"))))
        else {
            panic!("expected an update");
        };
        assert!(ops.contains(&PatchOp::replace("active", json!(true))));
        assert!(ops.contains(&PatchOp::replace("title", json!("CTO"))));
    }

    #[test]
    fn a_user_gone_from_the_directory_is_deactivated_from_recorded_state() {
        let before = user(true, None);
        assert_eq!(
            plan(P, None, Some(&applied(&before, Some("id1")))),
            ScimPlan::Update {
                scim_id: "id1".into(),
                ops: vec![PatchOp::replace("active", json!(false))]
            }
        );
        assert!(matches!(plan(P, None, None), ScimPlan::Nothing { .. }));
    }

    #[test]
    fn the_credential_owner_is_never_deactivated() {
        let before = user(true, None);
        let after = user(false, None);
        let state = applied(&before, Some("id1"));
        let deactivation = plan(P, Some(&after), Some(&state));
        let guarded = guard_owner(
            deactivation.clone(),
            &["A@Example.com"],
            Some(" a@example.com "),
        );
        assert_eq!(
            guarded,
            ScimPlan::Nothing {
                reason: OWNER_PROTECTED
            }
        );
        // Other users, and other changes of the owner, pass untouched.
        assert_eq!(
            guard_owner(
                deactivation.clone(),
                &["b@example.com"],
                Some("a@example.com")
            ),
            deactivation
        );
        assert_eq!(
            guard_owner(deactivation.clone(), &["a@example.com"], None),
            deactivation
        );
        assert_eq!(
            guard_owner(deactivation.clone(), &["a@example.com"], Some("")),
            deactivation
        );
        let retitle = plan(P, Some(&user(true, Some("Boss"))), Some(&state));
        assert_eq!(
            guard_owner(retitle.clone(), &["a@example.com"], Some("a@example.com")),
            retitle
        );
        let unrecorded = plan(P, Some(&after), None);
        assert!(matches!(
            guard_owner(unrecorded, &["a@example.com"], Some("a@example.com")),
            ScimPlan::Nothing { .. }
        ));
        // Renamed in the same change: the recorded name still counts.
        assert!(matches!(
            guard_owner(
                deactivation.clone(),
                &["renamed@example.com", "a@example.com"],
                Some("a@example.com")
            ),
            ScimPlan::Nothing { .. }
        ));
        // Gone from the directory: still protected.
        let gone = plan(P, None, Some(&state));
        assert!(matches!(
            guard_owner(gone, &["a@example.com"], Some("a@example.com")),
            ScimPlan::Nothing { .. }
        ));
    }

    #[test]
    fn a_hard_delete_removes_only_a_recorded_account_and_never_the_owners() {
        let u = user(true, None);
        assert_eq!(
            plan_hard_delete(Some(&applied(&u, Some("id1")))),
            ScimPlan::Delete {
                scim_id: "id1".into()
            }
        );
        // Recorded as having no account (looked up, none found): nothing to delete.
        assert!(matches!(
            plan_hard_delete(Some(&applied(&user(false, None), None))),
            ScimPlan::Nothing { .. }
        ));
        assert!(matches!(plan_hard_delete(None), ScimPlan::Nothing { .. }));
        let delete = plan_hard_delete(Some(&applied(&u, Some("id1"))));
        assert!(matches!(
            guard_owner(delete, &["a@example.com"], Some("a@example.com")),
            ScimPlan::Nothing { .. }
        ));
    }

    #[test]
    fn a_pending_user_creates_nothing_and_touches_no_unrecorded_account() {
        let mut staged = user(false, None);
        staged.pending = true;
        assert!(matches!(
            plan(P, Some(&staged), None),
            ScimPlan::Nothing { .. }
        ));
        // Back to pending after having an account (Okta reactivation): deactivated.
        let before = user(true, None);
        assert!(matches!(
            plan(P, Some(&staged), Some(&applied(&before, Some("id1")))),
            ScimPlan::Update { .. }
        ));
    }

    #[test]
    fn an_inactive_user_never_seen_is_looked_up_to_deactivate() {
        let u = user(false, None);
        assert_eq!(
            plan(P, Some(&u), None),
            ScimPlan::DeactivateUnrecorded {
                user_name: "a@example.com".into()
            }
        );
        // Once recorded as absent/inactive, no more look-ups.
        assert!(matches!(
            plan(P, Some(&u), Some(&applied(&u, None))),
            ScimPlan::Nothing { .. }
        ));
    }

    #[test]
    fn a_protected_account_is_left_alone_whichever_name_is_on_the_list() {
        let protected = vec![" Admin@Example.com ".to_string()];
        let update = ScimPlan::Update {
            scim_id: "s1".into(),
            ops: vec![PatchOp::replace("title", json!("x"))],
        };
        for names in [
            vec!["admin@example.com"],
            vec!["renamed@example.com", "ADMIN@example.com"],
        ] {
            assert_eq!(
                guard_protected(update.clone(), &names, &protected),
                ScimPlan::Nothing { reason: PROTECTED },
                "{names:?}"
            );
        }
        assert_eq!(
            guard_protected(update.clone(), &["someone@example.com"], &protected),
            update
        );
        assert_eq!(
            guard_protected(update.clone(), &["admin@example.com"], &["".into()]),
            update,
            "a blank entry protects nobody"
        );
    }
}
