//! Graph change-notification subscriptions, as the sweeper keeps them: created by the relay,
//! renewed well before Graph's limit, recreated when Graph drops them.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::DirectoryError;
use crate::secret::Secret;

/// Graph's longest lifetime for a `users`/`groups` subscription: 41,760 minutes (29 days).
pub const MAX_LIFETIME_MINUTES: i64 = 41_760;
/// Asked for a little less than the maximum, so clock skew never makes Graph refuse it.
const REQUESTED_LIFETIME_MINUTES: i64 = MAX_LIFETIME_MINUTES - 60;

/// A subscription as Graph confirmed it, and as the relay stores it between sweeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSubscription {
    pub id: String,
    pub resource: String,
    pub expires_at: DateTime<Utc>,
}

/// A subscription as `GET /subscriptions` lists it: what `scim-relay setup graph` compares with
/// what the settings need. The clientState is never read back (the relay treats it as
/// write-only, as it does Okta's hook secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSubscription {
    pub id: String,
    pub resource: String,
    /// `updated,deleted`, as Graph spells it back.
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait SubscriptionApi: Send + Sync {
    /// `GET /subscriptions`, every page: the app's own subscriptions in the tenant.
    async fn list(&self) -> Result<Vec<ListedSubscription>, DirectoryError>;

    /// `POST /subscriptions` for `updated,deleted` on `resource`, delivering to
    /// `notification_url` (lifecycle events too) with `client_state`.
    async fn create(
        &self,
        resource: &str,
        notification_url: &str,
        client_state: &Secret,
        expires_at: DateTime<Utc>,
    ) -> Result<GraphSubscription, DirectoryError>;

    /// `PATCH /subscriptions/{id}` with a new expiry, which also reauthorizes it. `None` when
    /// Graph no longer has the subscription.
    async fn renew(
        &self,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<GraphSubscription>, DirectoryError>;

    /// `GET /subscriptions/{id}`: `None` when Graph no longer has it.
    async fn get(&self, id: &str) -> Result<Option<GraphSubscription>, DirectoryError>;

    /// `DELETE /subscriptions/{id}`; one already gone is deleted too.
    async fn delete(&self, id: &str) -> Result<(), DirectoryError>;
}

/// What a sweep does with the stored subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStep {
    /// None stored (first run, or it was lost): create one, then catch up by delta.
    Create,
    /// Less than the renewal margin is left: extend it to the maximum.
    Renew,
    /// Enough time left.
    Keep,
}

/// Decides from the stored subscription alone, so a sweep that runs every few minutes renews
/// once, when the margin is reached, and not on every run.
pub fn subscription_step(
    stored: Option<&GraphSubscription>,
    now: DateTime<Utc>,
    renew_before: Duration,
) -> SubscriptionStep {
    match stored {
        None => SubscriptionStep::Create,
        Some(s) if s.expires_at <= now => SubscriptionStep::Create,
        Some(s) if s.expires_at - now <= renew_before => SubscriptionStep::Renew,
        Some(_) => SubscriptionStep::Keep,
    }
}

/// The expiry to ask Graph for at `now`.
pub fn requested_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::minutes(REQUESTED_LIFETIME_MINUTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(expires_at: DateTime<Utc>) -> GraphSubscription {
        GraphSubscription {
            id: "s1".into(),
            resource: "users".into(),
            expires_at,
        }
    }

    #[test]
    fn renews_only_inside_the_margin_and_recreates_what_expired() {
        let now = Utc::now();
        let margin = Duration::hours(72);
        assert_eq!(
            subscription_step(None, now, margin),
            SubscriptionStep::Create
        );
        let fresh = stored(requested_expiry(now));
        assert_eq!(
            subscription_step(Some(&fresh), now, margin),
            SubscriptionStep::Keep
        );
        // 25 days later: still more than three days left.
        let later = now + Duration::days(25);
        assert_eq!(
            subscription_step(Some(&fresh), later, margin),
            SubscriptionStep::Keep
        );
        // 27 days later: inside the margin.
        let due = now + Duration::days(27);
        assert_eq!(
            subscription_step(Some(&fresh), due, margin),
            SubscriptionStep::Renew
        );
        // Past its expiry Graph has deleted it: only a new one helps.
        let gone = fresh.expires_at + Duration::seconds(1);
        assert_eq!(
            subscription_step(Some(&fresh), gone, margin),
            SubscriptionStep::Create
        );
    }

    #[test]
    fn the_requested_lifetime_stays_under_graphs_limit() {
        let now = Utc::now();
        let asked = requested_expiry(now) - now;
        assert!(asked < Duration::minutes(MAX_LIFETIME_MINUTES));
        assert!(asked > Duration::days(28));
    }
}
