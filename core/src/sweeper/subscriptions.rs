//! The Graph subscriptions (`users`, and `groups` when group membership decides the scope):
//! created by the relay, checked and renewed inside the margin, recreated (with a delta
//! catch-up) when Graph lost them or the clientState changed; and the tenant-level events
//! ingress enqueues: lifecycle events, group changes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::reconcile::Pass;
use super::{
    FeedKind, FeedOutcome, SubscriptionAction, SubscriptionOwner, SubscriptionReport, Sweeper,
    TenantEventHandler,
};
use crate::directory::subscription::{
    requested_expiry, subscription_step, GraphSubscription, SubscriptionStep,
};
use crate::directory::DirectoryError;
use crate::envelope::{Source, Subject, Trigger};
use crate::secret::Secret;
use crate::work::WorkError;

/// Which feed catches up on what a subscription to `resource` would have delivered.
pub(super) fn feed_kind(resource: &str) -> FeedKind {
    if resource == "groups" {
        FeedKind::Memberships
    } else {
        FeedKind::Users
    }
}

fn cursor_name(tenant: &str, resource: &str) -> String {
    format!("graph-subscription/{tenant}/{resource}")
}

/// Where a catch-up still owed to a feed is remembered (a new subscription's, until a pass
/// of that feed succeeds).
pub(super) fn catch_up_flag(feed_cursor: &str) -> String {
    format!("catch-up/{feed_cursor}")
}

/// A digest of the clientState, to notice a rotation without storing the secret.
fn state_digest(state: &Secret) -> String {
    hex::encode(&Sha256::digest(state.expose().as_bytes())[..12])
}

/// A subscription the relay made, as it records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OwnedSubscription {
    #[serde(flatten)]
    sub: GraphSubscription,
    /// Digest of the clientState it was made with.
    #[serde(default)]
    client_state: String,
}

/// The Graph subscriptions the relay made for `tenant` and keeps, as recorded (an operator's
/// view: `scim-relay status`); none when it does not own any.
pub async fn recorded_subscriptions(
    store: &dyn crate::state::SweepStore,
    tenant: &str,
) -> Result<Vec<GraphSubscription>, crate::state::StoreError> {
    let mut recorded = Vec::new();
    // Every resource the sweeper may subscribe to (see `wiring`): `groups` only while Entra
    // groups scope provisioning, but one left from before is worth seeing too.
    for resource in ["users", "groups"] {
        let json = store.load_cursor(&cursor_name(tenant, resource)).await?;
        // An empty record is none, as the sweeper reads it.
        if let Some(json) = json.filter(|j| !j.is_empty()) {
            let owned: OwnedSubscription = serde_json::from_str(&json).map_err(|e| {
                crate::state::StoreError::Backend(format!(
                    "stored {resource} subscription unreadable: {e}"
                ))
            })?;
            recorded.push(owned.sub);
        }
    }
    Ok(recorded)
}

impl Sweeper {
    async fn stored_subscription(
        &self,
        tenant: &str,
        resource: &str,
    ) -> Result<Option<OwnedSubscription>, String> {
        let json = self
            .p
            .store
            .load_cursor(&cursor_name(tenant, resource))
            .await
            .map_err(|e| format!("cannot read the stored subscription: {e}"))?;
        match json.filter(|j| !j.is_empty()) {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| format!("stored subscription unreadable: {e}")),
        }
    }

    async fn store_subscription(
        &self,
        owner: &SubscriptionOwner,
        sub: &GraphSubscription,
    ) -> Result<(), DirectoryError> {
        let owned = OwnedSubscription {
            sub: sub.clone(),
            client_state: state_digest(&owner.client_state),
        };
        let json = serde_json::to_string(&owned).unwrap_or_default();
        self.p
            .store
            .save_cursor(&cursor_name(&owner.tenant, &sub.resource), &json)
            .await
            .map_err(|e| {
                DirectoryError::Retryable(format!(
                    "subscription {} made but not recorded: {e}",
                    sub.id
                ))
            })
    }

    /// Which of the owner's subscriptions has this id, if any.
    async fn owned_resource(&self, owner: &SubscriptionOwner, id: &str) -> Option<String> {
        for resource in &owner.resources {
            if let Ok(Some(s)) = self.stored_subscription(&owner.tenant, resource).await {
                if s.sub.id == id {
                    return Some(resource.clone());
                }
            }
        }
        None
    }

    /// Creates, renews, checks or keeps the subscription to `resource`. The flag says whether
    /// one was created (the caller then catches up by delta: notifications were not flowing).
    pub(super) async fn keep_subscription(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
    ) -> (SubscriptionReport, bool) {
        let result = self.keep_one(owner, resource).await;
        let (action, created) = match result {
            Ok((s, Kept::Unchanged)) => (
                SubscriptionAction::Kept {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                false,
            ),
            Ok((s, Kept::Created)) => (
                SubscriptionAction::Created {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                true,
            ),
            Ok((s, Kept::Renewed)) => (
                SubscriptionAction::Renewed {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                false,
            ),
            Err(reason) => {
                tracing::error!(
                    alarm = "graph_subscription",
                    resource,
                    "Graph subscription not kept: {reason}"
                );
                (SubscriptionAction::Failed { reason }, false)
            }
        };
        (
            SubscriptionReport {
                resource: resource.to_string(),
                action,
            },
            created,
        )
    }

    async fn keep_one(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
    ) -> Result<(GraphSubscription, Kept), String> {
        let now = self.p.clock.now();
        // A store that cannot be read is no reason to make a second subscription.
        let stored = self.stored_subscription(&owner.tenant, resource).await?;
        if let Some(old) = stored
            .as_ref()
            .filter(|s| s.client_state != state_digest(&owner.client_state))
        {
            // The clientState was rotated: renewing keeps the old one, which ingress will stop
            // accepting. A new subscription carries the new one; the old is deleted.
            let sub = self
                .create(owner, resource)
                .await
                .map_err(|e| e.to_string())?;
            if let Err(e) = owner.api.delete(&old.sub.id).await {
                tracing::warn!(subscription = %old.sub.id, "old subscription not deleted: {e}");
            }
            return Ok((sub, Kept::Created));
        }
        let stored = stored.map(|s| s.sub);
        let step = subscription_step(stored.as_ref(), now, owner.renew_before);
        let done = match (step, stored) {
            (SubscriptionStep::Keep, Some(s)) => {
                // Graph may drop a subscription without telling: look, cheaply.
                match owner.api.get(&s.id).await {
                    Ok(Some(_)) => Ok((s, Kept::Unchanged)),
                    Ok(None) => self
                        .create(owner, resource)
                        .await
                        .map(|s| (s, Kept::Created)),
                    Err(e) => Err(e),
                }
            }
            (SubscriptionStep::Renew, Some(s)) => {
                self.renew_or_create(owner, resource, &s.id).await
            }
            _ => self
                .create(owner, resource)
                .await
                .map(|s| (s, Kept::Created)),
        };
        done.map_err(|e| e.to_string())
    }

    async fn create(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
    ) -> Result<GraphSubscription, DirectoryError> {
        let now = self.p.clock.now();
        let sub = owner
            .api
            .create(
                resource,
                &owner.notification_url,
                &owner.client_state,
                requested_expiry(now),
            )
            .await?;
        tracing::info!(subscription = %sub.id, resource, expires_at = %sub.expires_at, "Graph subscription created");
        self.store_subscription(owner, &sub).await?;
        Ok(sub)
    }

    /// Renews by id; a subscription Graph no longer has is created again.
    async fn renew_or_create(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
        id: &str,
    ) -> Result<(GraphSubscription, Kept), DirectoryError> {
        let now = self.p.clock.now();
        match owner.api.renew(id, requested_expiry(now)).await? {
            Some(sub) => {
                tracing::info!(subscription = %sub.id, expires_at = %sub.expires_at, "Graph subscription renewed");
                self.store_subscription(owner, &sub).await?;
                Ok((sub, Kept::Renewed))
            }
            None => self
                .create(owner, resource)
                .await
                .map(|s| (s, Kept::Created)),
        }
    }

    /// A delta catch-up of one Entra feed of the tenant, inside the worker. An aborted pass is
    /// an error, so the event that asked for it is tried again rather than recorded as done; a
    /// catch-up that needs a full pass is recorded as owed and left to the next scheduled run.
    async fn catch_up(&self, tenant: &str, kind: FeedKind) -> Result<String, WorkError> {
        let Some(feed) = self.feed(Source::Entra, tenant, kind) else {
            return Err(WorkError::Permanent(format!(
                "no Entra {kind:?} feed for tenant {tenant} to catch up from"
            )));
        };
        match self.reconcile(feed, Pass::DeltaOnly, None).await.outcome {
            FeedOutcome::Aborted { reason } => Err(WorkError::Retryable {
                reason: format!("catch-up aborted: {reason}"),
                retry_after: None,
            }),
            FeedOutcome::Deferred => {
                self.p
                    .store
                    .save_cursor(&catch_up_flag(&feed.cursor_name()), "pending")
                    .await?;
                Ok("a full pass is needed: owed to the next sweep".into())
            }
            done => Ok(format!("{done:?}")),
        }
    }

    /// Renews a subscription the relay does not own (made by `setup graph` or by hand), by id only.
    async fn renew_foreign(&self, id: &str) -> Result<String, WorkError> {
        let api = self.p.subscription_api.as_ref().ok_or_else(|| {
            WorkError::Permanent(format!(
                "Graph subscription {id} needs reauthorizing, and no Entra app is configured to do it"
            ))
        })?;
        let sub = api
            .renew(id, requested_expiry(self.p.clock.now()))
            .await
            .map_err(WorkError::from)?
            .ok_or_else(|| {
                WorkError::Permanent(format!(
                    "Graph subscription {id} is gone; set entra.notification_url so the relay keeps its own, or make it again with `scim-relay setup graph --url …/entra`"
                ))
            })?;
        Ok(format!("subscription {} renewed", sub.id))
    }

    async fn lifecycle(
        &self,
        trigger: &Trigger,
        subscription_id: &str,
    ) -> Result<String, WorkError> {
        let owner = self
            .p
            .subscription
            .as_ref()
            .filter(|o| o.tenant == trigger.tenant);
        let owned = match owner {
            Some(owner) => self
                .owned_resource(owner, subscription_id)
                .await
                .map(|resource| (owner, resource)),
            None => None,
        };
        match (trigger.event_type.as_str(), owned) {
            // Renewing reauthorizes too, and moves the expiry out.
            ("reauthorizationRequired", Some((owner, resource))) => {
                let (sub, kept) = self
                    .renew_or_create(owner, &resource, subscription_id)
                    .await
                    .map_err(WorkError::from)?;
                let mut done = format!("subscription {} renewed", sub.id);
                if kept == Kept::Created {
                    let caught = self.catch_up(&trigger.tenant, feed_kind(&resource)).await?;
                    done = format!("{done}; {caught}");
                }
                Ok(done)
            }
            ("reauthorizationRequired", None) => self.renew_foreign(subscription_id).await,
            ("subscriptionRemoved", Some((owner, resource))) => {
                let sub = self.create(owner, &resource).await.map_err(WorkError::from)?;
                let caught = self.catch_up(&trigger.tenant, feed_kind(&resource)).await?;
                Ok(format!("subscription {} created; {caught}", sub.id))
            }
            ("subscriptionRemoved", None) => Err(WorkError::Permanent(format!(
                "Graph removed subscription {subscription_id}, which the relay does not own: make it again with `scim-relay setup graph --url …/entra`, or set entra.notification_url so the relay keeps its own"
            ))),
            // Some notifications were dropped: read what changed.
            ("missed", owned) => {
                let kind = owned.map_or(FeedKind::Users, |(_, r)| feed_kind(&r));
                self.catch_up(&trigger.tenant, kind).await
            }
            (other, _) => {
                tracing::warn!(event_type = %other, "unknown Graph lifecycle event ignored");
                Ok(format!("unknown lifecycle event {other} ignored"))
            }
        }
    }
}

/// What keeping a subscription came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Unchanged,
    Renewed,
    Created,
}

#[async_trait]
impl TenantEventHandler for Sweeper {
    async fn on_tenant_event(&self, trigger: &Trigger) -> Result<String, WorkError> {
        match &trigger.subject {
            Subject::Subscription { subscription_id } => {
                self.lifecycle(trigger, subscription_id).await
            }
            // Who joined or left: read from the group's delta, never from the notification.
            Subject::Group { group_id } if self.p.entra_group_ids.contains(group_id) => {
                self.catch_up(&trigger.tenant, FeedKind::Memberships).await
            }
            Subject::Group { group_id } => Ok(format!(
                "group {group_id} is not in entra.group_ids nor entra.role_groups; ignored"
            )),
            Subject::User { .. } => Err(WorkError::Permanent("not a tenant event".into())),
        }
    }
}
