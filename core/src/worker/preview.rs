//! The preview (`scim-relay plan`): its lines, counts and report. What goes in a line is
//! decided by a rehearsal of the worker's own path ([`super::rehearsal`]); this module only
//! words and sums it. Attribute names and ids, never values.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::envelope::Source;
pub use crate::history::Step;
use crate::scim::{any_named, ListedUser, PatchOp, ScimCall, UserPage, ENTERPRISE_SCHEMA};

/// The event type of the triggers a preview rehearses with (never enqueued) and `sync` sends.
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
    /// A deprovision the breaker would hold for an operator (its window is full), or one an
    /// operator holds or rejected.
    Held,
    /// The worker would fail on this user (mapping, directory read): it would be retried or
    /// dead-lettered.
    Error,
    /// Already matches, or not the relay's.
    LeaveAlone,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Adopt,
        Action::Create,
        Action::Update,
        Action::Deactivate,
        Action::Delete,
        Action::Conflict,
        Action::Protected,
        Action::Held,
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
            Action::Held => "held",
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
    /// The SCIM calls the worker would make (reads answered from the plan's listing).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<ScimCall>,
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

/// The target's users, as listed once, by id and by userName (not case-exact, as the look-up).
/// A rehearsal plays its writes on it, so a later user of the plan meets them.
#[derive(Debug, Default, Clone)]
pub struct TargetAccounts {
    users: HashMap<String, ListedUser>,
    by_name: HashMap<String, Vec<String>>,
    created: usize,
}

impl TargetAccounts {
    pub fn new(users: Vec<ListedUser>) -> Self {
        let mut accounts = Self::default();
        for user in users {
            accounts.insert(user);
        }
        accounts
    }

    fn insert(&mut self, user: ListedUser) {
        self.by_name
            .entry(user.user_name.to_lowercase())
            .or_default()
            .push(user.id.clone());
        self.users.insert(user.id.clone(), user);
    }

    /// What the worker's `userName eq` look-up would find: one account, none, or a refusal
    /// when several share the name (as [`crate::scim::target::matching_user`]).
    pub fn named(&self, user_name: &str) -> Result<Option<&ListedUser>, String> {
        let ids = self
            .by_name
            .get(&user_name.to_lowercase())
            .map(Vec::as_slice)
            .unwrap_or_default();
        match ids {
            [] => Ok(None),
            [one] => Ok(self.users.get(one)),
            many => Err(format!(
                "{} target accounts share this userName; the relay refuses to pick one",
                many.len()
            )),
        }
    }

    pub fn has_id(&self, id: &str) -> bool {
        self.users.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = &ListedUser> {
        self.users.values()
    }

    /// A planned `POST /Users`: the account it would make, under an id of the plan's own.
    pub(super) fn create(&mut self, resource: &Value) -> ListedUser {
        self.created += 1;
        let mut resource = resource.clone();
        let id = format!("planned-{}", self.created);
        resource["id"] = Value::String(id.clone());
        let user = ListedUser::from_resource(&resource).unwrap_or(ListedUser {
            id,
            user_name: String::new(),
            active: Some(true),
            external_id: None,
            resource,
        });
        self.insert(user.clone());
        user
    }

    /// A planned `PATCH /Users/{id}`: the paths whose value it changes, or `None` when the
    /// target has no such account (the worker would be answered 404).
    pub(super) fn patch(&mut self, id: &str, ops: &[PatchOp]) -> Option<Vec<String>> {
        let user = self.users.get_mut(id)?;
        let mut changed = Vec::new();
        for op in ops {
            let on_target = value_at(&user.resource, &op.path);
            if op.value.as_ref().is_none_or(|v| !same_value(v, on_target)) {
                changed.push(op.path.clone());
            }
            match (op.path.as_str(), &op.value) {
                ("active", Some(Value::Bool(active))) => user.active = Some(*active),
                ("externalId", Some(Value::String(ext))) => user.external_id = Some(ext.clone()),
                _ => {}
            }
        }
        Some(changed)
    }

    /// A planned `DELETE /Users/{id}`.
    pub(super) fn remove(&mut self, id: &str) {
        if let Some(user) = self.users.remove(id) {
            if let Some(ids) = self.by_name.get_mut(&user.user_name.to_lowercase()) {
                ids.retain(|i| i != id);
            }
        }
    }

    /// One page of the listing, in id order (1-based `start_index`).
    pub(super) fn page(&self, start_index: u32, count: u32) -> UserPage {
        let mut ids: Vec<&String> = self.users.keys().collect();
        ids.sort();
        UserPage {
            users: ids
                .into_iter()
                .skip(start_index.saturating_sub(1) as usize)
                .take(count as usize)
                .filter_map(|id| self.users.get(id).cloned())
                .collect(),
            total: self.users.len() as u32,
        }
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
    // Directory users sharing one userName: the rehearsal gives the account to the first and
    // refuses the others, but which is first on the queue is chance. All are reported.
    let mut claims: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        if u.source.is_some()
            && matches!(u.action, Action::Create | Action::Adopt | Action::Conflict)
        {
            claims
                .entry(u.user_name.to_lowercase())
                .or_default()
                .push(i);
        }
    }
    let shared = |lines: &&Vec<usize>| {
        lines.len() > 1
            && lines
                .iter()
                .any(|i| matches!(users[*i].action, Action::Create | Action::Adopt))
    };
    let shared: Vec<Vec<usize>> = claims.values().filter(shared).cloned().collect();
    for lines in &shared {
        let ids: Vec<String> = lines
            .iter()
            .filter_map(|i| users[*i].user_id.clone())
            .collect();
        for i in lines {
            let u = &mut users[*i];
            u.action = Action::Conflict;
            u.attributes.clear();
            u.calls.clear();
            u.reason = format!(
                "{} directory users share this userName ({}): the first one processed would \
                 get the account and the others would be dead-lettered; resolve it in the IdP",
                ids.len(),
                ids.join(", ")
            );
        }
    }
    let explained_names: HashSet<String> =
        users.iter().map(|u| u.user_name.to_lowercase()).collect();
    let explained_ids: HashSet<&str> = users.iter().filter_map(|u| u.scim_id.as_deref()).collect();
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
                calls: Vec::new(),
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
            for call in &u.calls {
                out.push_str(&format!("  {:<10} {call}\n", "SCIM"));
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
            calls: Vec::new(),
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
