//! The preview (`scim-relay plan`): what the worker would do for each user, decided by the
//! worker's own directory read, mapping, planner, guards and ownership rule, with nothing
//! written anywhere. Reads only: the directory, the relay's records, and the target's users as
//! listed once (`GET /Users`), in place of the worker's per-user look-up.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::apply::adoption_ops;
use super::read::Truth;
use super::Worker;
use crate::deprovision::HoldState;
use crate::envelope::{Source, Trigger};
use crate::scim::{any_named, DesiredUser, ListedUser, ScimPlan, ENTERPRISE_SCHEMA};
use crate::state::{UserKey, UserState};

/// The event type of the triggers a preview reads with (never enqueued) and `sync` sends.
pub const PREVIEW_EVENT: &str = "scim-relay.plan";

/// What converging would do to one user's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// An account with the user's userName exists and the relay has no record: taken over and
    /// brought to the directory's values.
    Adopt,
    Create,
    /// Attributes (or `active`, on a reactivation) change.
    Update,
    Deactivate,
    /// Removed (Entra hard delete under the `delete` policy).
    Delete,
    /// Someone else's account, or one userName for several users: the worker refuses.
    Conflict,
    /// `target.protected_users`, or a deprovision of the credential's owner: never touched.
    Protected,
    /// The worker would fail on this user (mapping, directory read): it would be retried or
    /// dead-lettered.
    Error,
    /// Already matches, or not the relay's.
    LeaveAlone,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Adopt,
        Action::Create,
        Action::Update,
        Action::Deactivate,
        Action::Delete,
        Action::Conflict,
        Action::Protected,
        Action::Error,
        Action::LeaveAlone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Adopt => "adopt",
            Action::Create => "create",
            Action::Update => "update",
            Action::Deactivate => "deactivate",
            Action::Delete => "delete",
            Action::Conflict => "conflict",
            Action::Protected => "protected",
            Action::Error => "error",
            Action::LeaveAlone => "leave-alone",
        }
    }

    /// Whether the worker would write to the target.
    pub fn changes_target(self) -> bool {
        matches!(
            self,
            Action::Adopt | Action::Create | Action::Update | Action::Deactivate | Action::Delete
        )
    }
}

/// One step of the reasoning for a user (`plan --user`): what was read, what was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub detail: String,
}

/// One line of the plan. Attribute names only, never values; userNames appear because the plan
/// is the operator's own report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPreview {
    pub action: Action,
    /// The directory user (none for a target account no directory user or record explains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub user_name: String,
    /// The target account concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim_id: Option<String>,
    /// The attributes that would change (adopt: those whose target value differs).
    pub attributes: Vec<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

impl UserPreview {
    /// Whether an operator's `who` names this line: the IdP user id, the relay's key, the
    /// userName (case-insensitive) or the target account's id.
    pub fn is_named(&self, who: &str) -> bool {
        let who = who.trim();
        self.user_id.as_deref() == Some(who)
            || self.scim_id.as_deref() == Some(who)
            || self.user_name.eq_ignore_ascii_case(who)
            || match (self.source, &self.tenant, &self.user_id) {
                (Some(s), Some(t), Some(u)) => format!("{s}#{t}#{u}") == who,
                _ => false,
            }
    }
}

/// The target's users, as listed once, by userName (not case-exact, as the look-up) and id.
#[derive(Debug, Default)]
pub struct TargetAccounts {
    by_name: HashMap<String, Vec<ListedUser>>,
    ids: HashMap<String, String>,
}

impl TargetAccounts {
    pub fn new(users: Vec<ListedUser>) -> Self {
        let mut accounts = Self::default();
        for user in users {
            accounts.ids.insert(user.id.clone(), user.user_name.clone());
            accounts
                .by_name
                .entry(user.user_name.to_lowercase())
                .or_default()
                .push(user);
        }
        accounts
    }

    /// What the worker's `userName eq` look-up would find: one account, none, or a refusal
    /// when several share the name (as [`crate::scim::target::matching_user`]).
    pub fn named(&self, user_name: &str) -> Result<Option<&ListedUser>, String> {
        match self
            .by_name
            .get(&user_name.to_lowercase())
            .map(Vec::as_slice)
        {
            None | Some([]) => Ok(None),
            Some([one]) => Ok(Some(one)),
            Some(many) => Err(format!(
                "{} target accounts share this userName; the relay refuses to pick one",
                many.len()
            )),
        }
    }

    pub fn has_id(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = &ListedUser> {
        self.by_name.values().flatten()
    }
}

impl Worker {
    /// What the worker would do for `key` now, and why, reading but writing nothing.
    pub async fn preview_user(
        &self,
        key: &UserKey,
        accounts: &TargetAccounts,
        now: DateTime<Utc>,
    ) -> UserPreview {
        let mut steps = Vec::new();
        let line = |action, user_name: &str, reason: String, steps: Vec<Step>| UserPreview {
            action,
            source: Some(key.source),
            tenant: Some(key.tenant.clone()),
            user_id: Some(key.user_id.clone()),
            user_name: user_name.to_string(),
            scim_id: None,
            attributes: Vec::new(),
            reason,
            steps,
        };
        if self.directory(key.source).is_none() {
            // Event-content mode has no truth to preview: the worker acts on each event's word.
            return line(
                Action::Error,
                "",
                format!(
                    "no {} directory credentials: nothing to preview",
                    key.source
                ),
                steps,
            );
        }
        let recorded = match self.store.load_user(key).await {
            Ok(r) => r,
            Err(e) => {
                return line(
                    Action::Error,
                    "",
                    format!("the relay's record cannot be read: {e}"),
                    steps,
                )
            }
        };
        let recorded_name = recorded
            .as_ref()
            .map(|r| r.user_name.clone())
            .unwrap_or_default();
        let trigger = Trigger::for_user(key, PREVIEW_EVENT, "plan".into(), now);
        let truth = match self.read_desired(&trigger, &key.user_id).await {
            Ok(truth) => truth,
            Err(e) => {
                steps.push(Step {
                    step: "directory",
                    detail: format!("read failed: {e}"),
                });
                return line(
                    Action::Error,
                    &recorded_name,
                    format!("the worker would not get past the directory read: {e}"),
                    steps,
                );
            }
        };
        steps.push(Step {
            step: "directory",
            detail: describe_truth(&truth),
        });
        steps.push(Step {
            step: "recorded",
            detail: describe_record(recorded.as_ref()),
        });
        let (desired, hard_deleted) = match truth {
            Truth::Present(user) => (Some(user), false),
            Truth::Deleted => (None, false),
            Truth::HardDeleted => (None, true),
            Truth::LeaveAsIs => {
                return line(
                    Action::LeaveAlone,
                    &recorded_name,
                    "suspended in Okta, and okta.suspended = keep".into(),
                    steps,
                )
            }
        };
        let user_name = desired
            .as_ref()
            .map(|d| d.user_name.clone())
            .unwrap_or(recorded_name);
        let decision = self.decide(
            desired.as_ref(),
            hard_deleted,
            recorded.as_ref(),
            false,
            None,
            now,
        );
        steps.push(Step {
            step: "plan",
            detail: describe_plan(&decision.planned),
        });
        let mut preview = line(Action::LeaveAlone, &user_name, String::new(), Vec::new());
        if decision.protected || decision.owner_kept {
            let ScimPlan::Nothing { reason } = &decision.plan else {
                // Only a plan of nothing is left untouched by the guards.
                unreachable_guard(&mut preview);
                preview.steps = steps;
                return preview;
            };
            if decision.planned != decision.plan || decision.protected {
                steps.push(Step {
                    step: "guard",
                    detail: (*reason).to_string(),
                });
                preview.action = Action::Protected;
                preview.reason = (*reason).to_string();
                preview.scim_id = recorded.as_ref().and_then(|r| r.scim_id.clone());
                preview.steps = steps;
                return preview;
            }
        }
        let plan = decision.plan;
        let held = recorded
            .as_ref()
            .and_then(|r| r.held.as_ref())
            .map(|h| &h.state);
        if plan.deprovisions() {
            match held {
                Some(HoldState::Pending) => {
                    preview.reason =
                        "deprovision held for an operator (scim-relay held approve)".into();
                    steps.push(Step {
                        step: "guard",
                        detail: preview.reason.clone(),
                    });
                    preview.steps = steps;
                    return preview;
                }
                Some(HoldState::Rejected { .. }) => {
                    preview.reason = "an operator rejected this deprovision".into();
                    steps.push(Step {
                        step: "guard",
                        detail: preview.reason.clone(),
                    });
                    preview.steps = steps;
                    return preview;
                }
                _ => {}
            }
        }
        match &plan {
            ScimPlan::Nothing { reason } => {
                preview.reason = (*reason).to_string();
                preview.scim_id = recorded.as_ref().and_then(|r| r.scim_id.clone());
                if let Some(id) = preview.scim_id.as_deref().filter(|id| !accounts.has_id(id)) {
                    preview.reason.push_str(&format!(
                        "; note: the recorded account {id} is not among the target's users"
                    ));
                }
            }
            ScimPlan::Create { user } => {
                self.preview_create(key, user, accounts, &mut preview, &mut steps)
                    .await
            }
            ScimPlan::Update { scim_id, ops } => {
                preview.scim_id = Some(scim_id.clone());
                preview.attributes = ops.iter().map(|op| op.path.clone()).collect();
                if plan.deprovisions() {
                    preview.action = Action::Deactivate;
                    preview.reason = why_off(desired.as_ref());
                } else {
                    preview.action = Action::Update;
                    preview.reason = "the directory changed since the last apply".into();
                }
                if !accounts.has_id(scim_id) {
                    preview.reason.push_str(&format!(
                        "; note: the recorded account {scim_id} is not among the target's users \
                         (the worker would find that out and act on the look-up)"
                    ));
                }
            }
            ScimPlan::DeactivateUnrecorded { user_name } => {
                let found = match accounts.named(user_name) {
                    Ok(found) => found,
                    Err(e) => {
                        preview.action = Action::Conflict;
                        preview.reason = e;
                        preview.steps = steps;
                        return preview;
                    }
                };
                // As the worker: for a user the directory no longer has, only an account made
                // for this user is touched.
                let found = found.filter(|f| {
                    desired.is_some() || f.external_id.as_deref().is_none_or(|id| id == key.user_id)
                });
                steps.push(Step {
                    step: "target",
                    detail: describe_account(found),
                });
                match found {
                    None => {
                        preview.reason = "no account on the target to switch off".into();
                    }
                    Some(account) => {
                        preview.scim_id = Some(account.id.clone());
                        if let Some(conflict) = self.conflict(account, key, &mut steps).await {
                            preview.action = Action::Conflict;
                            preview.reason = conflict;
                        } else if account.active == Some(false) {
                            preview.reason = "the account is already inactive".into();
                        } else {
                            preview.action = Action::Deactivate;
                            preview.attributes = vec!["active".into()];
                            preview.reason = format!(
                                "{}; the account has no record (made before the relay ran)",
                                why_off(desired.as_ref())
                            );
                        }
                    }
                }
            }
            ScimPlan::Delete { scim_id } => {
                preview.action = Action::Delete;
                preview.scim_id = Some(scim_id.clone());
                preview.reason =
                    "hard-deleted in Entra, and entra.hard_delete = delete (confirmed by a second read)"
                        .into();
            }
        }
        if decision.delete_unconfirmed.is_some() {
            preview
                .reason
                .push_str("; deleted once a later read confirms the hard delete");
        }
        preview.steps = steps;
        preview
    }

    /// A create: the worker looks the userName up first and adopts what it finds, unless it
    /// is someone else's.
    async fn preview_create(
        &self,
        key: &UserKey,
        user: &DesiredUser,
        accounts: &TargetAccounts,
        preview: &mut UserPreview,
        steps: &mut Vec<Step>,
    ) {
        let found = match accounts.named(&user.user_name) {
            Ok(found) => found,
            Err(e) => {
                preview.action = Action::Conflict;
                preview.reason = e;
                return;
            }
        };
        steps.push(Step {
            step: "target",
            detail: describe_account(found),
        });
        let Some(account) = found else {
            preview.action = Action::Create;
            preview.attributes = user.attributes.keys().cloned().collect();
            preview.reason = "no account with this userName on the target".into();
            return;
        };
        preview.scim_id = Some(account.id.clone());
        if let Some(conflict) = self.conflict(account, key, steps).await {
            preview.action = Action::Conflict;
            preview.reason = conflict;
            return;
        }
        preview.action = Action::Adopt;
        preview.attributes = adoption_ops(user)
            .iter()
            .filter(|op| {
                let on_target = value_at(&account.resource, &op.path);
                op.value.as_ref().is_none_or(|v| !same_value(v, on_target))
            })
            .map(|op| op.path.clone())
            .collect();
        preview.reason = if preview.attributes.is_empty() {
            "the account exists with no record and already holds the directory's values".into()
        } else {
            "the account exists with no record; these attributes differ from the directory".into()
        };
    }

    /// The ownership rule's verdict on an account found for `key`, as the worker applies it.
    async fn conflict(
        &self,
        account: &ListedUser,
        key: &UserKey,
        steps: &mut Vec<Step>,
    ) -> Option<String> {
        let verdict = match self.others_claim(&account.record(), key).await {
            Ok(None) => return None,
            Ok(Some(other)) => format!(
                "target account {} belongs to another IdP user ({other}); the worker would \
                 leave it alone and dead-letter the trigger",
                account.id
            ),
            Err(e) => format!("the relay's records cannot be read: {e}"),
        };
        steps.push(Step {
            step: "guard",
            detail: verdict.clone(),
        });
        Some(verdict)
    }
}

/// A preview line the guards cannot produce; kept as an error rather than a panic.
fn unreachable_guard(preview: &mut UserPreview) {
    preview.action = Action::Error;
    preview.reason = "a guard left a plan that changes a protected account".into();
}

/// Why a deactivation: what the directory says of the user.
fn why_off(desired: Option<&DesiredUser>) -> String {
    match desired {
        None => "gone from the directory".into(),
        Some(d) if d.lifecycle.ends_with("(out of scope)") => {
            "out of scope (not assigned / not in the configured groups)".into()
        }
        Some(d) => format!("{} in the IdP", d.lifecycle),
    }
}

fn describe_truth(truth: &Truth) -> String {
    match truth {
        Truth::Present(user) => {
            let names: Vec<&str> = user.attributes.keys().map(String::as_str).collect();
            let groups = if user.groups.is_empty() {
                String::new()
            } else {
                format!("; {} configured groups", user.groups.len())
            };
            format!(
                "found: userName {}, status {}, {}; mapped attributes: {}{groups}",
                user.user_name,
                user.lifecycle,
                if user.active {
                    "to have an active account"
                } else {
                    "not to have an active account"
                },
                names.join(", ")
            )
        }
        Truth::Deleted => "not found (deleted)".into(),
        Truth::HardDeleted => "gone for good (hard-deleted)".into(),
        Truth::LeaveAsIs => "suspended; okta.suspended = keep".into(),
    }
}

fn describe_record(recorded: Option<&UserState>) -> String {
    match recorded {
        None => "no record: the relay has never provisioned this user".into(),
        Some(r) => {
            let hold = r
                .held
                .as_ref()
                .map(|h| format!(", {} held ({})", h.action, h.state.name()))
                .unwrap_or_default();
            format!(
                "userName {}, account {}, {}, lifecycle {}, version {}{hold}",
                r.user_name,
                r.scim_id.as_deref().unwrap_or("none"),
                if r.active { "active" } else { "inactive" },
                r.lifecycle,
                r.version
            )
        }
    }
}

fn describe_account(found: Option<&ListedUser>) -> String {
    match found {
        None => "no account with this userName".into(),
        Some(a) => format!(
            "account {} ({}, externalId {})",
            a.id,
            match a.active {
                Some(true) => "active",
                Some(false) => "inactive",
                None => "active unknown",
            },
            a.external_id.as_deref().unwrap_or("none")
        ),
    }
}

/// The planner's answer, in words: paths, never values.
pub fn describe_plan(plan: &ScimPlan) -> String {
    match plan {
        ScimPlan::Nothing { reason } => format!("nothing: {reason}"),
        ScimPlan::Create { user } => format!(
            "create (look up userName {} first, adopt what is found)",
            user.user_name
        ),
        ScimPlan::Update { scim_id, ops } => format!(
            "PATCH /Users/{scim_id}: {}",
            ops.iter()
                .map(|op| op.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ScimPlan::DeactivateUnrecorded { user_name } => {
            format!("look up userName {user_name} and switch off what is found")
        }
        ScimPlan::Delete { scim_id } => format!("DELETE /Users/{scim_id}"),
    }
}

/// The value at a mapped path in a SCIM resource (`name.formatted`, enterprise extension paths).
fn value_at<'a>(resource: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(field) = path.strip_prefix(&format!("{ENTERPRISE_SCHEMA}:")) {
        return resource.get(ENTERPRISE_SCHEMA)?.get(field);
    }
    match path.split_once('.') {
        Some((parent, child)) => resource.get(parent)?.get(child),
        None => resource.get(path),
    }
}

/// Whether the target holds the value the directory maps to. Multi-valued attributes compare
/// by their `value`s (a provider may add `display` or drop `primary`), case-insensitively.
fn same_value(desired: &Value, on_target: Option<&Value>) -> bool {
    let Some(on_target) = on_target else {
        return desired.is_null() || desired.as_str() == Some("");
    };
    match (desired, on_target) {
        (Value::Array(want), Value::Array(have)) => {
            let values = |items: &Vec<Value>| {
                let mut v: Vec<String> = items
                    .iter()
                    .map(|i| i.get("value").unwrap_or(i).to_string().to_lowercase())
                    .collect();
                v.sort();
                v
            };
            values(want) == values(have)
        }
        _ => desired == on_target,
    }
}

/// The whole plan: every user's line, the counts, and notes on what was read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlanReport {
    pub counts: BTreeMap<&'static str, usize>,
    pub users: Vec<UserPreview>,
    pub notes: Vec<String>,
}

/// Completes the per-user lines into the plan: users of several directory entries sharing one
/// userName become conflicts (the first processed would get the account, the others would be
/// dead-lettered), and target accounts that no line explains are listed as not the relay's
/// (or protected). `spared`: the credential's owner and `target.protected_users`.
pub fn plan_report(
    mut users: Vec<UserPreview>,
    accounts: &TargetAccounts,
    spared: &[String],
    notes: Vec<String>,
) -> PlanReport {
    let mut claims: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        if matches!(u.action, Action::Create | Action::Adopt) {
            claims
                .entry(u.user_name.to_lowercase())
                .or_default()
                .push(i);
        }
    }
    for lines in claims.values().filter(|lines| lines.len() > 1) {
        let ids: Vec<String> = lines
            .iter()
            .filter_map(|i| users[*i].user_id.clone())
            .collect();
        for i in lines {
            let u = &mut users[*i];
            u.action = Action::Conflict;
            u.attributes.clear();
            u.reason = format!(
                "{} directory users share this userName ({}): the first one processed would \
                 get the account and the others would be dead-lettered; resolve it in the IdP",
                ids.len(),
                ids.join(", ")
            );
        }
    }
    let explained_names: std::collections::HashSet<String> =
        users.iter().map(|u| u.user_name.to_lowercase()).collect();
    let explained_ids: std::collections::HashSet<&str> =
        users.iter().filter_map(|u| u.scim_id.as_deref()).collect();
    let mut unexplained: Vec<UserPreview> = accounts
        .all()
        .filter(|a| {
            !explained_ids.contains(a.id.as_str())
                && !explained_names.contains(&a.user_name.to_lowercase())
        })
        .map(|a| {
            let protected = any_named(&[a.user_name.as_str()], spared);
            UserPreview {
                action: if protected {
                    Action::Protected
                } else {
                    Action::LeaveAlone
                },
                source: None,
                tenant: None,
                user_id: None,
                user_name: a.user_name.clone(),
                scim_id: Some(a.id.clone()),
                attributes: Vec::new(),
                reason: if protected {
                    "protected account (target.protected_users or the credential's owner)".into()
                } else {
                    "not the relay's: no directory user in scope has this userName and no record \
                     claims it"
                        .into()
                },
                steps: Vec::new(),
            }
        })
        .collect();
    users.append(&mut unexplained);
    users.sort_by(|a, b| {
        (a.action, a.user_name.to_lowercase(), &a.user_id).cmp(&(
            b.action,
            b.user_name.to_lowercase(),
            &b.user_id,
        ))
    });
    let mut counts: BTreeMap<&'static str, usize> =
        Action::ALL.iter().map(|a| (a.as_str(), 0)).collect();
    for u in &users {
        *counts.entry(u.action.as_str()).or_default() += 1;
    }
    PlanReport {
        counts,
        users,
        notes,
    }
}

impl PlanReport {
    /// The operator's report: a summary, the counts, and one line per user.
    pub fn render(&self) -> String {
        let changes: usize = self
            .users
            .iter()
            .filter(|u| u.action.changes_target())
            .count();
        let mut out = format!(
            "Plan (a preview: nothing was changed). {changes} accounts would change on the target.\n"
        );
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push('\n');
        for action in Action::ALL {
            out.push_str(&format!(
                "{:<12} {}\n",
                action.as_str(),
                self.counts.get(action.as_str()).copied().unwrap_or(0)
            ));
        }
        if self.users.is_empty() {
            return out;
        }
        out.push_str(&format!(
            "\n{:<12} {:<32} {:<6} {:<24} {:<38} {:<30} REASON\n",
            "ACTION", "USER", "IDP", "IDP USER ID", "TARGET ID", "ATTRIBUTES"
        ));
        for u in &self.users {
            out.push_str(&format!(
                "{:<12} {:<32} {:<6} {:<24} {:<38} {:<30} {}\n",
                u.action.as_str(),
                or_dash(&u.user_name),
                u.source.map(Source::as_str).unwrap_or("-"),
                u.user_id.as_deref().unwrap_or("-"),
                u.scim_id.as_deref().unwrap_or("-"),
                or_dash(&u.attributes.join(",")),
                u.reason
            ));
        }
        out
    }

    /// `plan --user`: each step of the reasoning for the chosen lines.
    pub fn render_steps(&self) -> String {
        let mut out = String::new();
        for u in &self.users {
            out.push_str(&format!(
                "{} ({} {}): {}\n",
                or_dash(&u.user_name),
                u.source.map(Source::as_str).unwrap_or("target"),
                u.user_id.as_deref().or(u.scim_id.as_deref()).unwrap_or("-"),
                u.action.as_str()
            ));
            for step in &u.steps {
                out.push_str(&format!("  {:<10} {}\n", step.step, step.detail));
            }
            if !u.attributes.is_empty() {
                out.push_str(&format!(
                    "  {:<10} {}\n",
                    "changes",
                    u.attributes.join(", ")
                ));
            }
            out.push_str(&format!("  {:<10} {}\n", "outcome", u.reason));
        }
        out
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listed(id: &str, name: &str) -> ListedUser {
        ListedUser {
            id: id.into(),
            user_name: name.into(),
            active: Some(true),
            external_id: None,
            resource: json!({ "id": id, "userName": name }),
        }
    }

    #[test]
    fn two_target_accounts_with_one_name_are_refused_as_the_look_up_refuses_them() {
        let accounts = TargetAccounts::new(vec![
            listed("1", "a@example.com"),
            listed("2", "A@example.com"),
            listed("3", "b@example.com"),
        ]);
        assert!(accounts.named("a@example.com").is_err());
        assert_eq!(
            accounts
                .named("B@Example.com")
                .ok()
                .flatten()
                .map(|a| a.id.as_str()),
            Some("3")
        );
        assert!(matches!(accounts.named("c@example.com"), Ok(None)));
    }

    #[test]
    fn values_compare_as_the_target_may_reshape_them() {
        let emails = json!([{ "value": "a@example.com", "type": "work", "primary": true }]);
        let listed = json!([{ "value": "A@example.com", "type": "work" }]);
        assert!(same_value(&emails, Some(&listed)));
        assert!(!same_value(&json!("Eng"), Some(&json!("CTO"))));
        assert!(!same_value(&json!("Eng"), None));
        let resource =
            json!({ "name": { "formatted": "A B" }, ENTERPRISE_SCHEMA: { "department": "Ops" } });
        assert_eq!(value_at(&resource, "name.formatted"), Some(&json!("A B")));
        assert_eq!(
            value_at(&resource, &format!("{ENTERPRISE_SCHEMA}:department")),
            Some(&json!("Ops"))
        );
    }

    #[test]
    fn users_sharing_a_name_conflict_and_unexplained_accounts_are_left_alone_or_protected() {
        let line = |id: &str, name: &str, action| UserPreview {
            action,
            source: Some(Source::Okta),
            tenant: Some("t".into()),
            user_id: Some(id.into()),
            user_name: name.into(),
            scim_id: None,
            attributes: vec!["title".into()],
            reason: String::new(),
            steps: Vec::new(),
        };
        let accounts = TargetAccounts::new(vec![
            listed("s1", "manual@example.com"),
            listed("s2", "vendor@example.com"),
        ]);
        let report = plan_report(
            vec![
                line("00u1", "twin@example.com", Action::Create),
                line("00u2", "Twin@example.com", Action::Adopt),
                line("00u3", "solo@example.com", Action::Create),
            ],
            &accounts,
            &["vendor@example.com".into()],
            Vec::new(),
        );
        assert_eq!(report.counts["conflict"], 2);
        assert_eq!(report.counts["create"], 1);
        assert_eq!(report.counts["protected"], 1);
        assert_eq!(report.counts["leave-alone"], 1);
        let twin = &report
            .users
            .iter()
            .find(|u| u.is_named("00u1"))
            .map(|u| u.reason.clone());
        assert!(
            twin.as_deref().is_some_and(|r| r.contains("00u2")),
            "{twin:?}"
        );
        let text = report.render();
        assert!(text.contains("manual@example.com"), "{text}");
        assert!(!text.contains("Eng"), "values never appear: {text}");
    }
}
