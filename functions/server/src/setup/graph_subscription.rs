//! The relay's Graph subscriptions when the sweeper does not own them (`entra.notification_url`
//! unset, `GraphSubscription=manual`): what one should be ([`SubscriptionSpec`]), what Graph
//! lists for the app, and the fewest calls between the two ([`plan_subscription`]). Graph
//! never shows a subscription's clientState, so one is judged by its resource, URLs and change
//! types; `--rotate` makes it again with the current clientState.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use scim_relay_core::directory::subscription::ListedSubscription;

/// The change types the relay asks for: a user's creation arrives as `updated` (Graph).
pub const CHANGE_TYPES: &str = "updated,deleted";

/// What one subscription should be.
#[derive(Debug, Clone)]
pub struct SubscriptionSpec {
    /// `users` or `groups`.
    pub resource: String,
    /// The relay's public `/entra` URL: notifications and lifecycle events both.
    pub url: String,
    /// Renewed when less than this is left (`sweep.renew_before`, as the sweeper does).
    pub renew_before: Duration,
}

/// What to do about one resource's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionPlan {
    Create,
    /// Make a new one, then delete these: Graph cannot change what is wrong in place (the
    /// change types, a lifecycle URL missing), or the clientState was rotated. Why, in words.
    Replace {
        old: Vec<String>,
        why: Vec<String>,
    },
    /// Extend its expiry (`PATCH`); `extra` are duplicates at the same URL, deleted.
    Renew {
        id: String,
        extra: Vec<String>,
    },
    /// As configured; `extra` are duplicates at the same URL, deleted.
    Keep {
        id: String,
        extra: Vec<String>,
    },
}

fn change_types(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Why `sub` cannot serve as the spec's subscription, in words (empty: it can).
fn mismatches(spec: &SubscriptionSpec, sub: &ListedSubscription) -> Vec<String> {
    let mut why = Vec::new();
    if change_types(&sub.change_type) != change_types(CHANGE_TYPES) {
        why.push(format!(
            "change types {} → {CHANGE_TYPES}",
            if sub.change_type.is_empty() {
                "(none)"
            } else {
                &sub.change_type
            }
        ));
    }
    if sub.lifecycle_notification_url.as_deref() != Some(spec.url.as_str()) {
        // Graph cannot add one later: without it, reauthorizationRequired never reaches the
        // relay and the subscription lapses unnoticed.
        why.push(format!(
            "lifecycle URL {} → {}",
            sub.lifecycle_notification_url
                .as_deref()
                .unwrap_or("(none)"),
            spec.url
        ));
    }
    why
}

/// The subscription to `spec.resource` at `spec.url`, against what Graph lists for the app.
/// Subscriptions of the app at other URLs (another deployment's) are never touched.
pub fn plan_subscription(
    spec: &SubscriptionSpec,
    listed: &[ListedSubscription],
    now: DateTime<Utc>,
    rotate: bool,
) -> SubscriptionPlan {
    let mut ours: Vec<&ListedSubscription> = listed
        .iter()
        .filter(|s| {
            s.resource.eq_ignore_ascii_case(&spec.resource) && s.notification_url == spec.url
        })
        .filter(|s| s.expires_at > now)
        .collect();
    if ours.is_empty() {
        return SubscriptionPlan::Create;
    }
    // The one that lives longest is kept; the rest only double every notification.
    ours.sort_by(|a, b| b.expires_at.cmp(&a.expires_at).then(a.id.cmp(&b.id)));
    let ids = || ours.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if rotate {
        return SubscriptionPlan::Replace {
            old: ids(),
            why: vec!["the clientState sent again (--rotate)".into()],
        };
    }
    let why = mismatches(spec, ours[0]);
    if !why.is_empty() {
        return SubscriptionPlan::Replace { old: ids(), why };
    }
    let id = ours[0].id.clone();
    let extra = ours[1..].iter().map(|s| s.id.clone()).collect();
    if ours[0].expires_at - now <= spec.renew_before {
        SubscriptionPlan::Renew { id, extra }
    } else {
        SubscriptionPlan::Keep { id, extra }
    }
}

/// The app's subscriptions to `resource` at URLs other than `url`: reported, never changed.
pub fn elsewhere<'a>(
    resource: &str,
    url: &str,
    listed: &'a [ListedSubscription],
) -> Vec<&'a ListedSubscription> {
    listed
        .iter()
        .filter(|s| s.resource.eq_ignore_ascii_case(resource) && s.notification_url != url)
        .collect()
}

/// The app's subscriptions at `url` to what the relay subscribes to (`users`, `groups`) that
/// `resources` no longer names.
pub fn not_needed<'a>(
    resources: &[String],
    url: &str,
    listed: &'a [ListedSubscription],
) -> Vec<&'a ListedSubscription> {
    listed
        .iter()
        .filter(|s| s.notification_url == url)
        .filter(|s| {
            ["users", "groups"]
                .iter()
                .any(|r| s.resource.eq_ignore_ascii_case(r))
        })
        .filter(|s| !resources.iter().any(|r| s.resource.eq_ignore_ascii_case(r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://relay.example.com/entra";

    fn spec() -> SubscriptionSpec {
        SubscriptionSpec {
            resource: "users".into(),
            url: URL.into(),
            renew_before: Duration::days(3),
        }
    }

    fn sub(id: &str, days_left: i64, now: DateTime<Utc>) -> ListedSubscription {
        ListedSubscription {
            id: id.into(),
            resource: "users".into(),
            change_type: "updated,deleted".into(),
            notification_url: URL.into(),
            lifecycle_notification_url: Some(URL.into()),
            expires_at: now + Duration::days(days_left),
        }
    }

    #[test]
    fn a_subscription_as_configured_is_kept_and_one_near_its_end_renewed() {
        let now = Utc::now();
        assert_eq!(
            plan_subscription(&spec(), &[sub("s1", 20, now)], now, false),
            SubscriptionPlan::Keep {
                id: "s1".into(),
                extra: vec![]
            }
        );
        assert_eq!(
            plan_subscription(&spec(), &[sub("s1", 2, now)], now, false),
            SubscriptionPlan::Renew {
                id: "s1".into(),
                extra: vec![]
            }
        );
        // Graph spells the change types in any order and case.
        let mut reordered = sub("s1", 20, now);
        reordered.change_type = "Deleted, updated".into();
        assert!(matches!(
            plan_subscription(&spec(), &[reordered], now, false),
            SubscriptionPlan::Keep { .. }
        ));
    }

    #[test]
    fn none_here_is_created_and_another_urls_is_left_alone() {
        let now = Utc::now();
        assert_eq!(
            plan_subscription(&spec(), &[], now, false),
            SubscriptionPlan::Create
        );
        let mut other = sub("theirs", 20, now);
        other.notification_url = "https://other.example.com/entra".into();
        let mut groups = sub("groups", 20, now);
        groups.resource = "groups".into();
        let listed = [other, groups];
        assert_eq!(
            plan_subscription(&spec(), &listed, now, false),
            SubscriptionPlan::Create
        );
        let away: Vec<&str> = elsewhere("users", URL, &listed)
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(away, ["theirs"]);
        // One Graph still lists past its expiry is as good as gone.
        assert_eq!(
            plan_subscription(&spec(), &[sub("s1", -1, now)], now, false),
            SubscriptionPlan::Create
        );
    }

    #[test]
    fn what_graph_cannot_patch_is_made_again_and_duplicates_go() {
        let now = Utc::now();
        let mut no_lifecycle = sub("s1", 20, now);
        no_lifecycle.lifecycle_notification_url = None;
        let SubscriptionPlan::Replace { old, why } =
            plan_subscription(&spec(), &[no_lifecycle, sub("s2", 10, now)], now, false)
        else {
            panic!("replaced");
        };
        assert_eq!(old, ["s1", "s2"]);
        assert!(why[0].contains("lifecycle URL (none)"), "{why:?}");

        let mut created_too = sub("s1", 20, now);
        created_too.change_type = "created,updated,deleted".into();
        assert!(matches!(
            plan_subscription(&spec(), &[created_too], now, false),
            SubscriptionPlan::Replace { .. }
        ));

        assert_eq!(
            plan_subscription(
                &spec(),
                &[sub("s1", 10, now), sub("s2", 20, now)],
                now,
                false
            ),
            SubscriptionPlan::Keep {
                id: "s2".into(),
                extra: vec!["s1".into()]
            },
            "the longest-lived is kept"
        );
    }

    #[test]
    fn rotate_makes_it_again_with_the_current_client_state() {
        let now = Utc::now();
        assert_eq!(
            plan_subscription(&spec(), &[sub("s1", 20, now)], now, true),
            SubscriptionPlan::Replace {
                old: vec!["s1".into()],
                why: vec!["the clientState sent again (--rotate)".into()]
            }
        );
    }
}
