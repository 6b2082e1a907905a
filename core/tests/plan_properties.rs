//! Properties of the planner, over generated users, records and targets: a plan converges the
//! target to what the directory says, and planning again right after finds nothing to do —
//! applying a plan twice equals applying it once.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scim_relay_core::config::TargetProfile;
use scim_relay_core::scim::{plan, DesiredUser, PatchKind, PatchOp, ScimPlan};
use scim_relay_core::state::{attributes_hash, UserState};
use serde_json::{json, Value};

const ENTERPRISE_DEPARTMENT: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department";
const PATHS: [&str; 4] = ["name.formatted", "title", "emails", ENTERPRISE_DEPARTMENT];
const USER_NAME: &str = "p@example.com";

/// What the target holds for the user, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
struct Account {
    attributes: BTreeMap<String, Value>,
    active: bool,
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("Engineer")),
        Just(json!("Manager")),
        Just(json!([{"value": USER_NAME, "primary": true}])),
        Just(json!([{"value": "other@example.com", "primary": true}])),
    ]
}

fn attributes() -> impl Strategy<Value = BTreeMap<String, Value>> {
    proptest::collection::vec(proptest::option::of(value()), PATHS.len()).prop_map(|values| {
        let mut map: BTreeMap<String, Value> = PATHS
            .iter()
            .zip(values)
            .filter_map(|(p, v)| v.map(|v| (p.to_string(), v)))
            .collect();
        map.insert("userName".into(), json!(USER_NAME));
        map
    })
}

fn desired() -> impl Strategy<Value = Option<DesiredUser>> {
    proptest::option::weighted(
        0.85,
        (attributes(), any::<bool>(), any::<bool>()).prop_map(|(attributes, active, pending)| {
            DesiredUser {
                user_name: USER_NAME.into(),
                // Pending users are never active.
                active: active && !pending,
                pending,
                attributes,
                groups: BTreeMap::new(),
                lifecycle: "ACTIVE".into(),
            }
        }),
    )
}

/// A record and the account it describes (a record with an id has a matching account), or a
/// create in doubt: no id recorded, and the lost create may or may not have made an account.
fn recorded() -> impl Strategy<Value = Option<(UserState, Option<Account>)>> {
    proptest::option::of(
        (attributes(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(attributes, has_account, active, in_doubt)| {
                let account = (has_account || in_doubt && active).then(|| Account {
                    attributes: attributes.clone(),
                    active: active || in_doubt,
                });
                let state = UserState {
                    scim_id: (has_account && !in_doubt).then(|| "scim-1".to_string()),
                    user_name: USER_NAME.into(),
                    attributes_hash: attributes_hash(&attributes),
                    attributes,
                    active: (has_account && active) || in_doubt,
                    lifecycle: if in_doubt {
                        "create-in-doubt"
                    } else {
                        "ACTIVE"
                    }
                    .into(),
                    version: 1,
                    updated_at: chrono::Utc::now(),
                    ..Default::default()
                };
                (state, account)
            },
        ),
    )
}

fn apply_ops(account: &mut Account, ops: &[PatchOp]) {
    for op in ops {
        if op.path == "active" {
            account.active = op.value == Some(json!(true));
            continue;
        }
        match (op.op, &op.value) {
            (PatchKind::Remove, _) => {
                account.attributes.remove(&op.path);
            }
            // Datadog takes no `remove`: a cleared attribute is replaced with "".
            (_, Some(Value::String(s))) if s.is_empty() => {
                account.attributes.remove(&op.path);
            }
            (_, Some(v)) => {
                account.attributes.insert(op.path.clone(), v.clone());
            }
            (_, None) => {}
        }
    }
}

fn record(
    attributes: BTreeMap<String, Value>,
    active: bool,
    previous: Option<&UserState>,
) -> UserState {
    UserState {
        scim_id: Some("scim-1".into()),
        user_name: USER_NAME.into(),
        attributes_hash: attributes_hash(&attributes),
        attributes,
        active,
        lifecycle: "ACTIVE".into(),
        version: UserState::version_after(previous),
        updated_at: chrono::Utc::now(),
        ..Default::default()
    }
}

/// The worker's effect of one plan on the target and the record, without I/O.
fn apply(
    planned: &ScimPlan,
    desired: Option<&DesiredUser>,
    state: Option<UserState>,
    account: &mut Option<Account>,
) -> Option<UserState> {
    match planned {
        ScimPlan::Nothing { .. } => state,
        ScimPlan::Create { user } => {
            // Look-up first: an existing account is adopted and brought to the desired state.
            *account = Some(Account {
                attributes: user.attributes.clone(),
                active: true,
            });
            Some(record(user.attributes.clone(), true, state.as_ref()))
        }
        ScimPlan::Update { ops, .. } => {
            if let Some(acc) = account.as_mut() {
                apply_ops(acc, ops);
            }
            match desired {
                Some(u) if u.active => Some(record(u.attributes.clone(), true, state.as_ref())),
                _ => state.map(|s| {
                    let mut s = s.successor(s.updated_at);
                    s.active = false;
                    s
                }),
            }
        }
        ScimPlan::DeactivateUnrecorded { .. } => {
            if let Some(acc) = account.as_mut() {
                acc.active = false;
            }
            Some(record(BTreeMap::new(), false, state.as_ref()))
        }
        ScimPlan::Delete { .. } => {
            *account = None;
            None
        }
    }
}

fn converge(
    profile: TargetProfile,
    desired: Option<DesiredUser>,
    recorded: Option<(UserState, Option<Account>)>,
) -> Result<(), TestCaseError> {
    let (state, mut account) = match recorded {
        Some((s, a)) => (Some(s), a),
        None => (None, None),
    };
    let first = plan(profile, desired.as_ref(), state.as_ref());
    let state = apply(&first, desired.as_ref(), state, &mut account);
    let after_once = account.clone();
    let second = plan(profile, desired.as_ref(), state.as_ref());
    prop_assert!(
        matches!(second, ScimPlan::Nothing { .. }),
        "planning again found work: {:?} after {:?}",
        second,
        first
    );
    let _ = apply(&second, desired.as_ref(), state, &mut account);
    prop_assert_eq!(&account, &after_once, "applying twice differs from once");
    match desired {
        Some(u) if u.active => {
            let acc = account.expect("an active user has an account");
            prop_assert!(acc.active);
            prop_assert_eq!(acc.attributes, u.attributes);
        }
        // Not active, or gone: an account the relay made or recorded is switched off (an
        // account it never knew of, with no record at all, is not its to touch).
        _ => {
            if let Some(acc) = account {
                prop_assert!(!acc.active, "left active: {:?}", first);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn a_generic_plan_converges_and_a_second_one_finds_nothing(d in desired(), r in recorded()) {
        converge(TargetProfile::Generic, d, r)?;
    }

    #[test]
    fn a_datadog_plan_converges_and_a_second_one_finds_nothing(d in desired(), r in recorded()) {
        converge(TargetProfile::Datadog, d, r)?;
    }
}
