//! The sweeper: what webhooks alone miss, caught up on a schedule. Each run probes the target's
//! credential, keeps the Graph subscription alive, reconciles each directory from its change
//! feed (triggers go through the same queue and worker as webhook ones), and chases pending
//! invitations. The parts are independent: one failing never stops the others.

mod drift;
mod invites;
mod reconcile;
mod subscriptions;
mod summary;

use std::sync::Arc;

use chrono::Duration;
use serde::Serialize;
use sha2::Digest;

pub use drift::{unknown_users, DriftReport};
pub use invites::{invite_step, InviteStep};
pub use subscriptions::recorded_subscriptions;
pub use summary::{
    last_sweep, record_last_sweep, DeprovisionSummary, FeedSummary, InviteSummary,
    SubscriptionSummary, SweepSummary, LAST_SWEEP,
};

use crate::breaker::CredentialBreaker;
use crate::clock::Clock;
use crate::config::DriftPolicy;
use crate::deprovision::{held_users, record_population, window_use, DeprovisionLimit, HoldState};
use crate::directory::subscription::SubscriptionApi;
use crate::directory::ChangeFeed;
use crate::envelope::{EnvelopeSigner, Source};
use crate::queue::Queue;
use crate::scim::{InvitationApi, ScimFailure, ScimTarget};
use crate::secret::Secret;
use crate::state::SweepStore;
use crate::work::TenantEventHandler;

/// What a change feed reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// Users changed or removed.
    Users,
    /// Users who joined or left the provisioning scope (app or group membership: no change of
    /// the user, in either IdP), or were deleted.
    Memberships,
}

/// One directory's change feed and where its triggers are keyed.
pub struct FeedSource {
    pub source: Source,
    pub tenant: String,
    pub kind: FeedKind,
    /// The settings that decide what the feed reads (scope, properties): a change starts it
    /// over with a full pass, which also re-checks every user against the new scope.
    pub scope: String,
    pub feed: Arc<dyn ChangeFeed>,
}

impl FeedSource {
    /// Where the feed's position is stored.
    pub fn cursor_name(&self) -> String {
        let kind = match self.kind {
            FeedKind::Users => "",
            FeedKind::Memberships => "-memberships",
        };
        let scope = hex::encode(&sha2::Sha256::digest(self.scope.as_bytes())[..6]);
        format!("reconcile/{}{kind}/{}/{scope}", self.source, self.tenant)
    }
}

/// The Graph subscriptions the relay owns (when `entra.notification_url` is set).
pub struct SubscriptionOwner {
    pub api: Arc<dyn SubscriptionApi>,
    pub tenant: String,
    /// `users`, and `groups` when membership of Entra groups decides the scope.
    pub resources: Vec<String>,
    pub notification_url: String,
    pub client_state: Secret,
    pub renew_before: Duration,
}

pub struct SweeperParts {
    pub store: Arc<dyn SweepStore>,
    pub queue: Arc<dyn Queue>,
    pub signer: EnvelopeSigner,
    pub target: Arc<dyn ScimTarget>,
    /// How to ask the target about invitations (Datadog with `target.api_key`).
    pub invitations: Option<Arc<dyn InvitationApi>>,
    /// Whether the target sends invitations at all (the Datadog profile).
    pub tracks_invitations: bool,
    pub feeds: Vec<FeedSource>,
    pub subscription: Option<SubscriptionOwner>,
    /// Graph lifecycle events can be renewed by id even when the relay did not create the
    /// subscription.
    pub subscription_api: Option<Arc<dyn SubscriptionApi>>,
    /// `entra.group_ids` and `entra.role_groups`' groups: a notification about another group
    /// changes nothing.
    pub entra_group_ids: Vec<String>,
    pub clock: Arc<dyn Clock>,
    pub invite_ttl: Duration,
    pub invite_attempts: u32,
    pub reconcile: bool,
    /// How often reconciliation reads every user instead of the changes (and so finds users
    /// deleted while their events were lost).
    pub full_pass_interval: Duration,
    pub drift: DriftPolicy,
    pub drift_interval: Duration,
    /// userName of the target credential's owner: never reported or deactivated as drift.
    pub owner: Option<String>,
    /// `target.protected_users`: never reported or deactivated as drift either.
    pub protected: Vec<String>,
    /// The deprovisioning breaker: drift deactivations take their slots in its window, and
    /// each run counts the population its share is of.
    pub deprovision: DeprovisionLimit,
    /// The workers' breaker: a rejected probe opens it for `credential_pause`, as a rejected
    /// call of a worker's would, so no deployment burns its queue on a revoked key.
    pub breaker: Arc<dyn CredentialBreaker>,
    pub credential_pause: Duration,
}

pub struct Sweeper {
    p: SweeperParts,
}

/// Whether the target accepted the relay's credential on this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CredentialCheck {
    Accepted,
    /// 401/403: the same alarm as the worker's. Nothing is provisioned until it is fixed.
    Rejected {
        reason: String,
    },
    /// The target did not answer usefully (timeout, 5xx): no verdict.
    Unavailable {
        reason: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InviteReport {
    /// Pending invitations past expiry looked at.
    pub checked: u32,
    pub resent: u32,
    pub accepted: u32,
    /// The target no longer has a pending user (disabled or gone).
    pub withdrawn: u32,
    /// Users who let every invitation expire: `source#tenant#user id` (no emails).
    pub unaccepted: Vec<String>,
    /// Due, but the target could not be asked (no `target.api_key`, or it failed).
    pub unchecked: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FeedOutcome {
    /// Triggers enqueued for these users; `full` when every user was read.
    Enqueued {
        users: usize,
        full: bool,
        /// Of those, users the relay left active whom a full pass no longer found (deleted
        /// while their events were lost): the worker re-reads and deactivates them.
        #[serde(default)]
        vanished: usize,
    },
    /// Nothing enqueued and the position kept: the next run tries again.
    Aborted { reason: String },
    /// The sweeper's time ran low part-way through the listing: the pass goes on at the next
    /// run from where it stopped (`users` enqueued so far); its position moves once it ends.
    Paused { users: usize, full: bool },
    /// A catch-up asked for from the worker (a Graph lifecycle or group notification) that
    /// needs a full pass: left to the next scheduled run, which reads every user one run at a
    /// time, instead of a directory-wide read and a scan of the store inside a worker.
    Deferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedReport {
    pub source: Source,
    pub tenant: String,
    pub feed: FeedKind,
    #[serde(flatten)]
    pub outcome: FeedOutcome,
}

/// What a run did with one Graph subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionReport {
    pub resource: String,
    #[serde(flatten)]
    pub action: SubscriptionAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SubscriptionAction {
    Created {
        id: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    Renewed {
        id: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    Kept {
        id: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
    Failed {
        reason: String,
    },
}

/// What one run did: logged as one line, returned by the Lambda, shown by the standalone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub credential: CredentialCheck,
    pub subscriptions: Vec<SubscriptionReport>,
    pub reconciliation: Vec<FeedReport>,
    pub invites: InviteReport,
    /// Present on the runs that made one (once a `sweep.drift_interval_hours`).
    pub drift: Option<DriftReport>,
    pub deprovisions: DeprovisionReport,
}

/// The deprovisioning breaker as a run found it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeprovisionReport {
    /// Accounts the relay keeps active (the limit's share is of them).
    pub active_accounts: u64,
    /// Deprovisions in the current window, and how many it allows.
    pub in_window: u64,
    pub allowed: u64,
    /// Held deprovisions waiting for an operator.
    pub held_pending: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sweeper {
    pub fn new(parts: SweeperParts) -> Self {
        Self { p: parts }
    }

    /// One run. Never fails as a whole: each part reports its own failure.
    pub async fn run(&self) -> SweepReport {
        self.run_until(None).await
    }

    /// [`Self::run`] that must be done by `deadline` (a Lambda invocation's): a directory
    /// pass still listing a minute before it pauses, and the next run goes on with it.
    pub async fn run_until(&self, deadline: Option<std::time::Instant>) -> SweepReport {
        // Wall time, for the operator's "when did it last run": the domain clock may be a
        // test's, days ahead.
        let started_at = chrono::Utc::now();
        let credential = self.probe().await;
        if matches!(credential, CredentialCheck::Rejected { .. }) {
            // Wall time, as the queue's: the domain clock may be a test's, days ahead.
            let until = chrono::Utc::now() + self.p.credential_pause;
            if let Err(e) = self.p.breaker.open(until).await {
                tracing::warn!("cannot open the credential breaker: {e}");
            }
        }
        let deprovisions = self.census().await;
        let mut subscriptions = Vec::new();
        let mut created = Vec::new();
        if let Some(owner) = self.p.subscription.as_ref() {
            for resource in &owner.resources {
                let (report, new) = self.keep_subscription(owner, resource).await;
                if new {
                    created.push(subscriptions::feed_kind(resource));
                }
                subscriptions.push(report);
            }
        }
        let mut reconciliation = Vec::new();
        for feed in &self.p.feeds {
            // A new subscription means notifications were not flowing: catch up on what it
            // covers even when scheduled reconciliation is off, until a pass succeeds.
            let flag = subscriptions::catch_up_flag(&feed.cursor_name());
            if feed.source == Source::Entra && created.contains(&feed.kind) {
                if let Err(e) = self.p.store.save_cursor(&flag, "pending").await {
                    tracing::warn!("catch-up not recorded as owed: {e}");
                }
            }
            let owed =
                matches!(self.p.store.load_cursor(&flag).await, Ok(Some(v)) if v == "pending");
            if self.p.reconcile || owed {
                let report = self
                    .reconcile(feed, reconcile::Pass::Scheduled, deadline)
                    .await;
                if owed && matches!(report.outcome, FeedOutcome::Enqueued { .. }) {
                    if let Err(e) = self.p.store.save_cursor(&flag, "").await {
                        tracing::warn!("catch-up done but not recorded: {e}");
                    }
                }
                reconciliation.push(report);
            }
        }
        let invites = if matches!(credential, CredentialCheck::Rejected { .. }) {
            // Every call would be refused; the invitations stay due for the next run.
            InviteReport::default()
        } else {
            self.sweep_invites().await
        };
        let drift = if matches!(credential, CredentialCheck::Accepted) {
            self.drift(&reconciliation).await
        } else {
            None
        };
        let report = SweepReport {
            credential,
            subscriptions,
            reconciliation,
            invites,
            drift,
            deprovisions,
        };
        tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "sweep finished");
        let summary = SweepSummary::of(&report, started_at, chrono::Utc::now());
        if let Err(e) = record_last_sweep(self.p.store.as_ref(), &summary).await {
            // The run itself is done; only `scim-relay status` shows an older one.
            tracing::warn!("the sweep's summary was not recorded: {e}");
        }
        report
    }

    /// Counts the accounts the breaker's share is of, and raises the alarm while held
    /// deprovisions wait for an operator.
    async fn census(&self) -> DeprovisionReport {
        let store = self.p.store.as_ref();
        let counted = async {
            let active_accounts = store.active_account_count().await?;
            record_population(store, active_accounts).await?;
            let (in_window, allowed) =
                window_use(store, self.p.clock.now(), &self.p.deprovision).await?;
            let held_pending = held_users(store)
                .await?
                .iter()
                .filter(|h| h.hold.state == HoldState::Pending)
                .count() as u64;
            Ok::<_, crate::state::StoreError>(DeprovisionReport {
                active_accounts,
                in_window,
                allowed,
                held_pending,
                error: None,
            })
        };
        match counted.await {
            Ok(report) => {
                if report.held_pending > 0 {
                    tracing::error!(
                        alarm = "deprovisions_waiting",
                        held = report.held_pending,
                        "held deprovisions wait for an operator: scim-relay held list, then approve or reject"
                    );
                }
                report
            }
            Err(e) => {
                tracing::warn!("deprovisioning census failed: {e}");
                DeprovisionReport {
                    error: Some(e.to_string()),
                    ..Default::default()
                }
            }
        }
    }

    async fn probe(&self) -> CredentialCheck {
        match self.p.target.probe().await {
            Ok(()) => CredentialCheck::Accepted,
            Err(e) if e.failure == ScimFailure::Credential => {
                tracing::error!(
                    alarm = "target_credential",
                    "the target rejected the relay's credential: {e}. Replace target.token (a service account's key)."
                );
                CredentialCheck::Rejected {
                    reason: e.to_string(),
                }
            }
            Err(e) => {
                tracing::warn!("target credential probe inconclusive: {e}");
                CredentialCheck::Unavailable {
                    reason: e.to_string(),
                }
            }
        }
    }

    fn feed(&self, source: Source, tenant: &str, kind: FeedKind) -> Option<&FeedSource> {
        self.p
            .feeds
            .iter()
            .find(|f| f.source == source && f.tenant == tenant && f.kind == kind)
    }
}
