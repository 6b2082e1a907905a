//! The last run of the sweeper, kept for operators (`scim-relay status`): a compact summary of
//! its report and when it ran, one small document in the state store that each run replaces.
//! The full report goes to the log and (Lambda) the invocation's answer; this is what an
//! operator needs to tell whether the sweeper runs and how its last run went.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CredentialCheck, FeedOutcome, SubscriptionAction, SweepReport};
use crate::state::{StateStore, StoreError};

/// The store document the summary lives in.
pub const LAST_SWEEP: &str = "last-sweep";

/// How often a write that lost a race (two runs at once, which the deployments avoid) is
/// tried again before the summary is given up for this run.
const WRITE_ATTEMPTS: usize = 3;

/// Reasons are cut to this many characters: a target's error body can be long.
const REASON_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepSummary {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// `accepted`, `rejected` or `unavailable`.
    pub credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_reason: Option<String>,
    pub subscriptions: Vec<SubscriptionSummary>,
    pub reconciliation: Vec<FeedSummary>,
    pub invites: InviteSummary,
    /// Active target users the relay has no record of, on the runs that made a drift report.
    #[serde(default)]
    pub drift_unknown: Option<u32>,
    pub deprovisions: DeprovisionSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSummary {
    pub resource: String,
    /// `created`, `renewed`, `kept` or `failed`.
    pub action: String,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSummary {
    /// `okta` or `entra`.
    pub source: String,
    /// `users` or `memberships`.
    pub feed: String,
    /// `enqueued`, `aborted` or `deferred`.
    pub outcome: String,
    /// Users queued for a re-check (`enqueued` only).
    #[serde(default)]
    pub users: usize,
    /// Whether every user was read.
    #[serde(default)]
    pub full: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteSummary {
    pub checked: u32,
    pub resent: u32,
    pub accepted: u32,
    pub withdrawn: u32,
    /// Users given up on in this run (the report names them; the summary counts them).
    pub unaccepted: u32,
    pub unchecked: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeprovisionSummary {
    pub active_accounts: u64,
    pub in_window: u64,
    pub allowed: u64,
    pub held_pending: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn short(reason: &str) -> String {
    let mut cut: String = reason.chars().take(REASON_CHARS).collect();
    if cut.len() < reason.len() {
        cut.push('…');
    }
    cut
}

impl SweepSummary {
    pub fn of(report: &SweepReport, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> Self {
        let (credential, credential_reason) = match &report.credential {
            CredentialCheck::Accepted => ("accepted", None),
            CredentialCheck::Rejected { reason } => ("rejected", Some(short(reason))),
            CredentialCheck::Unavailable { reason } => ("unavailable", Some(short(reason))),
        };
        let subscriptions = report
            .subscriptions
            .iter()
            .map(|s| {
                let (action, expires_at, reason) = match &s.action {
                    SubscriptionAction::Created { expires_at, .. } => {
                        ("created", Some(*expires_at), None)
                    }
                    SubscriptionAction::Renewed { expires_at, .. } => {
                        ("renewed", Some(*expires_at), None)
                    }
                    SubscriptionAction::Kept { expires_at, .. } => {
                        ("kept", Some(*expires_at), None)
                    }
                    SubscriptionAction::Failed { reason } => ("failed", None, Some(short(reason))),
                };
                SubscriptionSummary {
                    resource: s.resource.clone(),
                    action: action.into(),
                    expires_at,
                    reason,
                }
            })
            .collect();
        let reconciliation = report
            .reconciliation
            .iter()
            .map(|f| {
                let (outcome, users, full, reason) = match &f.outcome {
                    FeedOutcome::Enqueued { users, full, .. } => ("enqueued", *users, *full, None),
                    FeedOutcome::Aborted { reason } => ("aborted", 0, false, Some(short(reason))),
                    FeedOutcome::Paused { users, full } => ("paused", *users, *full, None),
                    FeedOutcome::Deferred => ("deferred", 0, false, None),
                };
                FeedSummary {
                    source: f.source.to_string(),
                    feed: match f.feed {
                        super::FeedKind::Users => "users",
                        super::FeedKind::Memberships => "memberships",
                    }
                    .into(),
                    outcome: outcome.into(),
                    users,
                    full,
                    reason,
                }
            })
            .collect();
        let i = &report.invites;
        let d = &report.deprovisions;
        Self {
            started_at,
            finished_at,
            credential: credential.into(),
            credential_reason,
            subscriptions,
            reconciliation,
            invites: InviteSummary {
                checked: i.checked,
                resent: i.resent,
                accepted: i.accepted,
                withdrawn: i.withdrawn,
                unaccepted: u32::try_from(i.unaccepted.len()).unwrap_or(u32::MAX),
                unchecked: i.unchecked,
            },
            drift_unknown: report.drift.as_ref().map(|r| r.unknown),
            deprovisions: DeprovisionSummary {
                active_accounts: d.active_accounts,
                in_window: d.in_window,
                allowed: d.allowed,
                held_pending: d.held_pending,
                error: d.error.as_deref().map(short),
            },
        }
    }
}

/// Replaces the stored summary with `summary`.
pub async fn record_last_sweep(
    store: &dyn StateStore,
    summary: &SweepSummary,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(summary).map_err(|e| StoreError::Backend(e.to_string()))?;
    for _ in 0..WRITE_ATTEMPTS {
        let version = store.load_document(LAST_SWEEP).await?.map(|(_, v)| v);
        match store.save_document(LAST_SWEEP, &text, version).await {
            Err(StoreError::Conflict) => continue,
            other => return other,
        }
    }
    Err(StoreError::Backend(
        "the last sweep's summary kept changing concurrently".into(),
    ))
}

/// The summary of the last run, if one has finished since the relay kept them.
pub async fn last_sweep(store: &dyn StateStore) -> Result<Option<SweepSummary>, StoreError> {
    match store.load_document(LAST_SWEEP).await? {
        None => Ok(None),
        Some((text, _)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Backend(format!("last sweep summary unreadable: {e}"))),
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::envelope::Source;
    use crate::memory::MemoryStore;
    use crate::sweeper::{DeprovisionReport, FeedKind, FeedReport, InviteReport};

    #[tokio::test]
    async fn each_run_replaces_the_summary_and_an_operator_reads_it_back() {
        let store = MemoryStore::new();
        assert_eq!(last_sweep(&store).await.unwrap(), None);
        let report = SweepReport {
            credential: CredentialCheck::Unavailable {
                reason: "x".repeat(500),
            },
            subscriptions: vec![],
            reconciliation: vec![FeedReport {
                source: Source::Okta,
                tenant: "example.okta.com".into(),
                feed: FeedKind::Users,
                outcome: FeedOutcome::Enqueued {
                    users: 3,
                    full: true,
                    vanished: 0,
                },
            }],
            invites: InviteReport {
                checked: 2,
                unaccepted: vec!["okta#example.okta.com#00u1".into()],
                ..Default::default()
            },
            drift: None,
            deprovisions: DeprovisionReport {
                held_pending: 4,
                ..Default::default()
            },
        };
        let t0 = Utc::now();
        let first = SweepSummary::of(&report, t0, t0 + chrono::Duration::seconds(2));
        record_last_sweep(&store, &first).await.unwrap();
        let second = SweepSummary::of(&report, t0 + chrono::Duration::minutes(15), Utc::now());
        record_last_sweep(&store, &second).await.unwrap();
        let read = last_sweep(&store).await.unwrap().expect("recorded");
        assert_eq!(read, second);
        assert_eq!(read.credential, "unavailable");
        assert_eq!(
            read.credential_reason.map(|r| r.chars().count()),
            Some(REASON_CHARS + 1),
            "cut, with an ellipsis"
        );
        assert_eq!(
            (
                read.reconciliation[0].outcome.as_str(),
                read.reconciliation[0].users
            ),
            ("enqueued", 3)
        );
        assert_eq!((read.invites.checked, read.invites.unaccepted), (2, 1));
        assert_eq!(read.deprovisions.held_pending, 4);
        let text = store.load_document(LAST_SWEEP).await.unwrap().unwrap().0;
        assert!(!text.contains("00u1"), "counted, not named: {text}");
    }
}
