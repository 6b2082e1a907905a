//! The Graph `/users` subscription: created by the relay, renewed inside the margin, recreated
//! (with a delta catch-up) when Graph lost it; and the lifecycle events ingress enqueues.

use async_trait::async_trait;

use super::{LifecycleHandler, SubscriptionOwner, SubscriptionReport, Sweeper};
use crate::directory::subscription::{
    requested_expiry, subscription_step, GraphSubscription, SubscriptionStep,
};
use crate::directory::DirectoryError;
use crate::envelope::{Source, Subject, Trigger};
use crate::worker::WorkError;

const RESOURCE: &str = "users";

fn cursor_name(tenant: &str) -> String {
    format!("graph-subscription/{tenant}/{RESOURCE}")
}

impl Sweeper {
    async fn stored_subscription(&self, tenant: &str) -> Option<GraphSubscription> {
        match self.p.store.load_cursor(&cursor_name(tenant)).await {
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
        if let Err(e) = self.p.store.save_cursor(&cursor_name(tenant), &json).await {
            tracing::warn!(subscription = %sub.id, "subscription not recorded: {e}");
        }
    }

    /// Creates, renews or keeps the subscription. The flag says whether one was created (the
    /// caller then catches up by delta: notifications were not flowing).
    pub(super) async fn keep_subscription(
        &self,
        owner: &SubscriptionOwner,
    ) -> (SubscriptionReport, bool) {
        let now = self.p.clock.now();
        let stored = self.stored_subscription(&owner.tenant).await;
        let step = subscription_step(stored.as_ref(), now, owner.renew_before);
        let result = match (step, stored) {
            (SubscriptionStep::Keep, Some(s)) => {
                return (
                    SubscriptionReport::Kept {
                        id: s.id,
                        expires_at: s.expires_at,
                    },
                    false,
                )
            }
            (SubscriptionStep::Renew, Some(s)) => self.renew_or_create(owner, &s.id).await,
            _ => self.create(owner).await.map(|s| (s, true)),
        };
        match result {
            Ok((sub, created)) => {
                let report = if created {
                    SubscriptionReport::Created {
                        id: sub.id.clone(),
                        expires_at: sub.expires_at,
                    }
                } else {
                    SubscriptionReport::Renewed {
                        id: sub.id.clone(),
                        expires_at: sub.expires_at,
                    }
                };
                (report, created)
            }
            Err(e) => {
                tracing::error!(
                    alarm = "graph_subscription",
                    "Graph subscription not kept: {e}"
                );
                (
                    SubscriptionReport::Failed {
                        reason: e.to_string(),
                    },
                    false,
                )
            }
        }
    }

    async fn create(&self, owner: &SubscriptionOwner) -> Result<GraphSubscription, DirectoryError> {
        let now = self.p.clock.now();
        let sub = owner
            .api
            .create(
                RESOURCE,
                &owner.notification_url,
                &owner.client_state,
                requested_expiry(now),
            )
            .await?;
        tracing::info!(subscription = %sub.id, expires_at = %sub.expires_at, "Graph subscription created");
        self.store_subscription(&owner.tenant, &sub).await;
        Ok(sub)
    }

    /// Renews by id; a subscription Graph no longer has is created again (flag: created).
    async fn renew_or_create(
        &self,
        owner: &SubscriptionOwner,
        id: &str,
    ) -> Result<(GraphSubscription, bool), DirectoryError> {
        let now = self.p.clock.now();
        match owner.api.renew(id, requested_expiry(now)).await? {
            Some(sub) => {
                tracing::info!(subscription = %sub.id, expires_at = %sub.expires_at, "Graph subscription renewed");
                self.store_subscription(&owner.tenant, &sub).await;
                Ok((sub, false))
            }
            None => self.create(owner).await.map(|s| (s, true)),
        }
    }

    /// A delta catch-up for the tenant, when its feed is configured.
    async fn catch_up(&self, tenant: &str) -> String {
        match self.feed(Source::Entra, tenant) {
            Some(feed) => format!("{:?}", self.reconcile(feed).await.outcome),
            None => "no Entra directory configured to catch up from".into(),
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
impl LifecycleHandler for Sweeper {
    async fn on_lifecycle(&self, trigger: &Trigger) -> Result<String, WorkError> {
        let Subject::Subscription { subscription_id } = &trigger.subject else {
            return Err(WorkError::Permanent("not a lifecycle event".into()));
        };
        let owner = self
            .p
            .subscription
            .as_ref()
            .filter(|o| o.tenant == trigger.tenant);
        match trigger.event_type.as_str() {
            // Renewing reauthorizes too, and moves the expiry out.
            "reauthorizationRequired" => {
                let renewed = match owner {
                    Some(owner) => self
                        .renew_or_create(owner, subscription_id)
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
                let mut done = format!("subscription {} renewed", renewed.0.id);
                if renewed.1 {
                    done = format!("{done}; {}", self.catch_up(&trigger.tenant).await);
                }
                Ok(done)
            }
            "subscriptionRemoved" => {
                let owner = owner.ok_or_else(|| {
                    WorkError::Permanent(format!(
                        "Graph removed subscription {subscription_id}; set entra.notification_url so the relay recreates it, or create it again by hand"
                    ))
                })?;
                let sub = self.create(owner).await.map_err(work_error)?;
                Ok(format!(
                    "subscription {} created; {}",
                    sub.id,
                    self.catch_up(&trigger.tenant).await
                ))
            }
            // Some notifications were dropped: read what changed.
            "missed" => Ok(self.catch_up(&trigger.tenant).await),
            other => {
                tracing::warn!(event_type = %other, "unknown Graph lifecycle event ignored");
                Ok(format!("unknown lifecycle event {other} ignored"))
            }
        }
    }
}
