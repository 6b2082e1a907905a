//! Per-user history: one entry per trigger the relay finished (applied, found unchanged,
//! recognised as a duplicate, held, or dead-lettered), so "why can't Jane log in?" has an
//! answer without grepping logs. Entries hold names and ids, never attribute values or
//! plaintext addresses; they expire after `store.history_days`.
//!
//! A user is found by IdP id, or by email/userName through its keyed fingerprint (the same one
//! the logs carry): the store keeps a fingerprint → user index, never the address itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::model::{Explanation, Finish, HistoryEntry, KeptBy, Step};
use crate::model::{Source, Trigger, UserKey, UserState};

/// What the worker learns about a trigger as it works it: who and which event as soon as the
/// envelope opens, the plan and its calls once applied. The consumer turns it, with the
/// message's disposition, into a [`HistoryEntry`] and the finished-trigger log line.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub key: Option<UserKey>,
    pub event_type: String,
    pub event_id: String,
    /// Keyed fingerprint of the user's userName (directory or record), for the email index.
    pub user_fingerprint: Option<String>,
    pub plan: String,
    pub changed: Vec<String>,
    pub scim_calls: u32,
    /// The IdP's change time, else the relay's receipt.
    pub since: Option<DateTime<Utc>>,
    /// The worker's reasoning, step by step, when asked for (`plan`, `sync`); `None` on the
    /// queue's path, where nothing is formatted for it.
    pub explanation: Option<Explanation>,
    /// The history entry the worker's commit already wrote (in the commit's own write), so
    /// the consumer does not write it again.
    pub committed: Option<HistoryEntry>,
}

impl Trace {
    /// A trace that also keeps the worker's reasoning.
    pub fn explained() -> Self {
        Self {
            explanation: Some(Explanation::default()),
            ..Self::default()
        }
    }

    /// Notes one step of the reasoning, formatted only when someone asked for it.
    pub fn note(&mut self, step: &'static str, detail: impl FnOnce() -> String) {
        if let Some(explanation) = self.explanation.as_mut() {
            explanation.steps.push(Step {
                step,
                detail: detail(),
            });
        }
    }

    /// Notes the guard that kept the plan from the target (and the step that says so).
    pub fn kept(&mut self, by: KeptBy) {
        if let Some(explanation) = self.explanation.as_mut() {
            let detail = match &by {
                KeptBy::Protected(why) | KeptBy::Held(why) => why.clone(),
            };
            explanation.steps.push(Step {
                step: "guard",
                detail,
            });
            explanation.kept_by = Some(by);
        }
    }

    /// Who and which event, from an opened envelope.
    pub fn opened(&mut self, trigger: &Trigger, key: Option<UserKey>) {
        self.key = key;
        self.event_type = trigger.event_type.clone();
        self.event_id = trigger.event_id.clone();
        self.since = Some(trigger.published.unwrap_or(trigger.received));
    }

    /// The history entry of a trigger finished at `now` as `outcome`.
    pub fn entry(&self, now: DateTime<Utc>, outcome: Finish, reason: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            at: now,
            event_type: self.event_type.clone(),
            event_id: self.event_id.clone(),
            plan: self.plan.clone(),
            scim_calls: self.scim_calls,
            changed: self.changed.clone(),
            outcome,
            reason: reason.map(str::to_string),
            latency_ms: self
                .since
                .map(|since| (now - since).num_milliseconds().max(0)),
        }
    }
}

/// The users an operator's `who` may name: the fingerprint index's answer, then `who` as an
/// IdP user id in each configured directory (`sources`: source and tenant).
pub fn candidate_keys(
    who: &str,
    by_fingerprint: Vec<UserKey>,
    sources: &[(Source, String)],
) -> Vec<UserKey> {
    let mut keys = by_fingerprint;
    for (source, tenant) in sources {
        let key = UserKey {
            source: *source,
            tenant: tenant.clone(),
            user_id: who.trim().to_string(),
        };
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// One user's timeline and current state, as `scim-relay history` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct UserHistory {
    pub source: Source,
    pub tenant: String,
    pub user_id: String,
    /// The record the relay keeps (`None`: it has none).
    pub state: Option<CurrentState>,
    /// Newest first.
    pub entries: Vec<HistoryEntry>,
}

/// The parts of a user's record an operator asks about.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentState {
    pub scim_id: Option<String>,
    pub active: bool,
    pub lifecycle: String,
    /// Fingerprint of the recorded userName (never the address).
    pub user_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<crate::model::InviteState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::model::Hold>,
    pub groups: usize,
    pub updated_at: DateTime<Utc>,
}

impl CurrentState {
    pub fn of(state: &UserState) -> Self {
        Self {
            scim_id: state.scim_id.clone(),
            active: state.active,
            lifecycle: state.lifecycle.clone(),
            user_name: crate::pii::fingerprint(&state.user_name),
            invitation: state.invite.clone(),
            held: state.held.clone(),
            groups: state.groups.len(),
            updated_at: state.updated_at,
        }
    }
}

/// One entry on one line: time, outcome, event, and what was done.
pub fn render_entry(e: &HistoryEntry) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{}  {:<13} {:<28} {}",
        e.at.format("%Y-%m-%dT%H:%M:%SZ"),
        e.outcome.name(),
        e.event_type,
        e.event_id
    );
    if !e.plan.is_empty() {
        let _ = write!(out, "  plan={} calls={}", e.plan, e.scim_calls);
    }
    if !e.changed.is_empty() {
        let _ = write!(out, " changed={}", e.changed.join(","));
    }
    if let Some(ms) = e.latency_ms {
        let _ = write!(out, " latency={ms}ms");
    }
    if let Some(reason) = &e.reason {
        let _ = write!(out, "  reason: {reason}");
    }
    out
}

/// The text `scim-relay history` prints for one user.
pub fn render(history: &UserHistory) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} user {} (tenant {})",
        history.source, history.user_id, history.tenant
    );
    match &history.state {
        None => out.push_str("  record:     none (the relay has not provisioned this user)\n"),
        Some(s) => {
            let _ = writeln!(
                out,
                "  account:    {} ({}; directory status {})",
                s.scim_id.as_deref().unwrap_or("none on the target"),
                if s.active { "active" } else { "inactive" },
                s.lifecycle
            );
            let _ = writeln!(out, "  userName:   {}", s.user_name);
            if let Some(invite) = &s.invitation {
                let status = match invite.outcome {
                    None => format!("pending, expires {}", invite.expires_at.to_rfc3339()),
                    Some(crate::model::InviteOutcome::Accepted { at }) => {
                        format!("accepted {}", at.to_rfc3339())
                    }
                    Some(crate::model::InviteOutcome::Unaccepted { at }) => {
                        format!("expired unaccepted {}", at.to_rfc3339())
                    }
                    Some(crate::model::InviteOutcome::Withdrawn { at }) => {
                        format!("withdrawn {}", at.to_rfc3339())
                    }
                };
                let _ = writeln!(out, "  invitation: {status} ({} sent)", invite.count);
            }
            if let Some(hold) = &s.held {
                let _ = writeln!(
                    out,
                    "  held:       {} {} since {}: {}",
                    hold.action,
                    hold.state.name(),
                    hold.held_at.to_rfc3339(),
                    hold.reason
                );
            }
            let _ = writeln!(out, "  groups:     {}", s.groups);
            let _ = writeln!(out, "  updated:    {}", s.updated_at.to_rfc3339());
        }
    }
    if history.entries.is_empty() {
        out.push_str("  no history (none kept, or older than store.history_days)\n");
    }
    for e in &history.entries {
        let _ = writeln!(out, "  {}", render_entry(e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_measures_latency_from_the_idp_change_and_never_goes_negative() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap_or_default();
        let mut trace = Trace {
            since: Some(t(100)),
            plan: "update".into(),
            changed: vec!["title".into()],
            ..Trace::default()
        };
        let e = trace.entry(t(103), Finish::Applied, None);
        assert_eq!(e.latency_ms, Some(3000));
        assert_eq!(e.changed, ["title"]);
        trace.since = Some(t(200));
        assert_eq!(
            trace.entry(t(103), Finish::Applied, None).latency_ms,
            Some(0)
        );
    }

    #[test]
    fn an_operator_names_a_user_by_fingerprint_match_or_by_id_in_each_directory() {
        let okta = (Source::Okta, "acme.okta.com".to_string());
        let entra = (Source::Entra, "t-1".to_string());
        let found = UserKey {
            source: Source::Okta,
            tenant: "acme.okta.com".into(),
            user_id: "00u1".into(),
        };
        let keys = candidate_keys(" 00u1 ", vec![found.clone()], &[okta, entra]);
        assert_eq!(keys.len(), 2, "the match is not repeated: {keys:?}");
        assert_eq!(keys[0], found);
        assert_eq!(keys[1].source, Source::Entra);
        assert_eq!(keys[1].user_id, "00u1");
    }
}
