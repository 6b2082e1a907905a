//! A user as the directory describes them, and the snapshot of one a directory listing gives:
//! what a full pass hands the worker so it need not read each user again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether the IdP wants the user to have a working account on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdpStatus {
    Active,
    /// Exists but is not yet active (Okta STAGED, PROVISIONED): not provisioned yet.
    Pending,
    /// Okta SUSPENDED: not active; what the target does is `okta.suspended`'s choice.
    Suspended,
    /// Deactivated, disabled.
    Inactive,
}

/// A user as the directory describes them, normalised across IdPs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: String,
    /// Okta `login`, Entra `userPrincipalName`.
    pub login: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IdpStatus>,
    /// The IdP's own word for the status, recorded in state.
    #[serde(default)]
    pub raw_status: String,
    /// Every scalar attribute the directory returned, by the IdP's name (Okta profile keys,
    /// Graph properties), for `target.attributes` mappings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// A user as a directory listing returned them, and when: the sweeper's pass reads a page of
/// whole users (Okta's `/api/v1/users` answers with what `/api/v1/users/{id}` does), so the
/// worker need not read each one again — the difference between a pass of one call per 200
/// users and one of a call or two per user against the IdP's rate limit.
///
/// It is only ever made by the sweeper from its own authenticated read, and travels in the
/// signed envelope; an event from outside never carries one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedDirectoryUser {
    pub user: DirectoryUser,
    /// No later than the moment the IdP answered (taken before the page was asked for): a
    /// record of the user written after it may know better, and the worker reads afresh.
    pub read_at: DateTime<Utc>,
}

impl ListedDirectoryUser {
    /// Whether the worker may take this listing for its own read of `user_id`, whose record
    /// was last written at `recorded_at`. Only for an active user: whatever could switch an
    /// account off (a deactivation, a suspension, a user gone) is read afresh first, so a
    /// stale or mistaken listing can create or update, never deprovision. And only when no
    /// write of the record came after the listing (a webhook's fresh read applied since).
    pub fn usable_for(&self, user_id: &str, recorded_at: Option<DateTime<Utc>>) -> bool {
        self.user.id == user_id
            && self.user.status == Some(IdpStatus::Active)
            && recorded_at.is_none_or(|at| at + LISTING_MARGIN <= self.read_at)
    }
}

/// A record written this close before the listing counts as written after it. A listing may
/// lag the IdP's own reads: Okta's `/api/v1/users?search=` answers from a search index that
/// trails its writes (the sweeper's Okta pass overlaps a minute for it), so a write made from a
/// fresh read seconds before the listing may know better than the listing does. It also
/// covers the two hosts' clocks (the sweeper's gives the listing's time, the worker's the
/// record's).
const LISTING_MARGIN: chrono::Duration = chrono::Duration::seconds(120);

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(status: IdpStatus, read_at: DateTime<Utc>) -> ListedDirectoryUser {
        ListedDirectoryUser {
            user: DirectoryUser {
                id: "00u1".into(),
                login: "a@example.com".into(),
                status: Some(status),
                ..DirectoryUser::default()
            },
            read_at,
        }
    }

    #[test]
    fn only_an_active_users_fresh_listing_stands_in_for_a_read() {
        let t = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let second = chrono::Duration::seconds(1);
        assert!(listed(IdpStatus::Active, t).usable_for("00u1", None));
        assert!(listed(IdpStatus::Active, t).usable_for("00u1", Some(t - second * 120)));
        assert!(
            !listed(IdpStatus::Active, t).usable_for("00u1", Some(t + second)),
            "the record was written after the listing: read afresh"
        );
        assert!(
            !listed(IdpStatus::Active, t).usable_for("00u1", Some(t - second * 119)),
            "within the search index's lag and the clocks' margin: read afresh"
        );
        assert!(
            !listed(IdpStatus::Active, t).usable_for("00u2", None),
            "another user"
        );
        for status in [
            IdpStatus::Inactive,
            IdpStatus::Suspended,
            IdpStatus::Pending,
        ] {
            assert!(
                !listed(status, t).usable_for("00u1", None),
                "{status:?}: a deprovision is decided on a fresh read"
            );
        }
    }

    #[test]
    fn a_listing_travels_compactly_and_comes_back_whole() {
        let mut l = listed(
            IdpStatus::Active,
            DateTime::from_timestamp(1_000_000, 0).unwrap(),
        );
        l.user.extra.insert("costCenter".into(), "42".into());
        let json = serde_json::to_string(&l).unwrap();
        assert!(
            !json.contains("given_name"),
            "absent fields are left out: {json}"
        );
        assert_eq!(
            serde_json::from_str::<ListedDirectoryUser>(&json).unwrap(),
            l
        );
    }
}
