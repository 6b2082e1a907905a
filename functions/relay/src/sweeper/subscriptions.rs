//! The Graph subscriptions (`users`, and `groups` when group membership decides the scope):
//! created by the relay, renewed inside the margin, recreated (with a delta catch-up) when Graph
//! lost them; and the tenant-level events ingress enqueues: lifecycle events, group changes.

use async_trait::async_trait;

use super::{
    FeedKind, SubscriptionAction, SubscriptionOwner, SubscriptionReport, Sweeper,
    TenantEventHandler,
};
use crate::directory::subscription::{
    requested_expiry, subscription_step, GraphSubscription, SubscriptionStep,
};
use crate::directory::DirectoryError;
use crate::envelope::{Source, Subject, Trigger};
use crate::worker::WorkError;

/// Which feed catches up on what a subscription to `resource` would have delivered.
pub(super) fn feed_kind(resource: &str) -> FeedKind {
    if resource == "groups" {
        FeedKind::GroupMembers
    } else {
        FeedKind::Users
    }
}

fn cursor_name(tenant: &str, resource: &str) -> String {
    format!("graph-subscription/{tenant}/{resource}")
}

impl Sweeper {
    async fn stored_subscription(&self, tenant: &str, resource: &str) -> Option<GraphSubscription> {
        match self
            .p
            .store
            .load_cursor(&cursor_name(tenant, resource))
            .await
        {
            Ok(Some(json)) => serde_json::from_str(&json).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot read the stored subscription: {e}");
                None
            }
        }
    }

    async fn store_subscription(&self, tenant: &str, sub: &GraphSubscription) {
        let json = serde_json::to_string(sub).unwrap_or_default();
        let name = cursor_name(tenant, &sub.resource);
        if let Err(e) = self.p.store.save_cursor(&name, &json).await {
            tracing::warn!(subscription = %sub.id, "subscription not recorded: {e}");
        }
    }

    /// The resource of one of the owner's subscriptions, by id (`users` when unknown).
    async fn resource_of(&self, owner: &SubscriptionOwner, id: &str) -> String {
        for resource in &owner.resources {
            if let Some(s) = self.stored_subscription(&owner.tenant, resource).await {
                if s.id == id {
                    return resource.clone();
                }
            }
        }
        "users".to_string()
    }

    /// Creates, renews or keeps the subscription to `resource`. The flag says whether one was
    /// created (the caller then catches up by delta: notifications were not flowing).
    pub(super) async fn keep_subscription(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
    ) -> (SubscriptionReport, bool) {
        let now = self.p.clock.now();
        let stored = self.stored_subscription(&owner.tenant, resource).await;
        let step = subscription_step(stored.as_ref(), now, owner.renew_before);
        let result = match (step, stored) {
            (SubscriptionStep::Keep, Some(s)) => Ok((s, None)),
            (SubscriptionStep::Renew, Some(s)) => self
                .renew_or_create(owner, resource, &s.id)
                .await
                .map(|(s, created)| (s, Some(created))),
            _ => self.create(owner, resource).await.map(|s| (s, Some(true))),
        };
        let (action, created) = match result {
            Ok((s, None)) => (
                SubscriptionAction::Kept {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                false,
            ),
            Ok((s, Some(true))) => (
                SubscriptionAction::Created {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                true,
            ),
            Ok((s, Some(false))) => (
                SubscriptionAction::Renewed {
                    id: s.id,
                    expires_at: s.expires_at,
                },
                false,
            ),
            Err(e) => {
                tracing::error!(
                    alarm = "graph_subscription",
                    resource,
                    "Graph subscription not kept: {e}"
                );
                (
                    SubscriptionAction::Failed {
                        reason: e.to_string(),
                    },
                    false,
                )
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
        self.store_subscription(&owner.tenant, &sub).await;
        Ok(sub)
    }

    /// Renews by id; a subscription Graph no longer has is created again (flag: created).
    async fn renew_or_create(
        &self,
        owner: &SubscriptionOwner,
        resource: &str,
        id: &str,
    ) -> Result<(GraphSubscription, bool), DirectoryError> {
        let now = self.p.clock.now();
        match owner.api.renew(id, requested_expiry(now)).await? {
            Some(sub) => {
                tracing::info!(subscription = %sub.id, expires_at = %sub.expires_at, "Graph subscription renewed");
                self.store_subscription(&owner.tenant, &sub).await;
                Ok((sub, false))
            }
            None => self.create(owner, resource).await.map(|s| (s, true)),
        }
    }

    /// A delta catch-up of one Entra feed of the tenant, when it is configured.
    async fn catch_up(&self, tenant: &str, kind: FeedKind) -> String {
        match self.feed(Source::Entra, tenant, kind) {
            Some(feed) => format!("{:?}", self.reconcile(feed).await.outcome),
            None => "no Entra directory configured to catch up from".into(),
        }
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
        let resource = match owner {
            Some(owner) => self.resource_of(owner, subscription_id).await,
            None => "users".to_string(),
        };
        let kind = feed_kind(&resource);
        match trigger.event_type.as_str() {
            // Renewing reauthorizes too, and moves the expiry out.
            "reauthorizationRequired" => {
                let (sub, created) = match owner {
                    Some(owner) => self
                        .renew_or_create(owner, &resource, subscription_id)
                        .await
                        .map_err(work_error)?,
                    None => {
                        let api = self.p.subscription_api.as_ref().ok_or_else(|| {
                            WorkError::Permanent(format!(
                                "Graph subscription {subscription_id} needs reauthorizing, and no Entra app is configured to do it"
                            ))
                        })?;
                        let sub = api
                            .renew(subscription_id, requested_expiry(self.p.clock.now()))
                            .await
                            .map_err(work_error)?
                            .ok_or_else(|| {
                                WorkError::Permanent(format!(
                                    "Graph subscription {subscription_id} is gone; set entra.notification_url so the relay recreates it"
                                ))
                            })?;
                        (sub, false)
                    }
                };
                let mut done = format!("subscription {} renewed", sub.id);
                if created {
                    done = format!("{done}; {}", self.catch_up(&trigger.tenant, kind).await);
                }
                Ok(done)
            }
            "subscriptionRemoved" => {
                let owner = owner.ok_or_else(|| {
                    WorkError::Permanent(format!(
                        "Graph removed subscription {subscription_id}; set entra.notification_url so the relay recreates it, or create it again by hand"
                    ))
                })?;
                let sub = self.create(owner, &resource).await.map_err(work_error)?;
                Ok(format!(
                    "subscription {} created; {}",
                    sub.id,
                    self.catch_up(&trigger.tenant, kind).await
                ))
            }
            // Some notifications were dropped: read what changed.
            "missed" => Ok(self.catch_up(&trigger.tenant, kind).await),
            other => {
                tracing::warn!(event_type = %other, "unknown Graph lifecycle event ignored");
                Ok(format!("unknown lifecycle event {other} ignored"))
            }
        }
    }
}

fn work_error(e: DirectoryError) -> WorkError {
    match e {
        DirectoryError::Retryable(reason) => WorkError::Retryable {
            reason,
            retry_after: None,
        },
        DirectoryError::Permanent(reason) => WorkError::Permanent(reason),
    }
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
                Ok(self.catch_up(&trigger.tenant, FeedKind::GroupMembers).await)
            }
            Subject::Group { group_id } => Ok(format!(
                "group {group_id} is not in entra.group_ids; ignored"
            )),
            Subject::User { .. } => Err(WorkError::Permanent("not a tenant event".into())),
        }
    }
}
