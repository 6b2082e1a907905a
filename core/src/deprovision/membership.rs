//! The membership breaker. Group sync can empty a team as easily as the directory can: a group
//! unassigned by mistake, a directory read gone wrong, a scope rule that matches nobody. A
//! Datadog Team drives ownership and paging, so losing most of its members at once is an
//! outage of its own (ssosync users lost whole teams this way). Every removal of an active
//! account from a mirrored group takes a slot in that group's rolling window first; past the
//! limit the removals are held on the user's record for an operator, like a deprovision.
//! A leaver's removals are not counted here: the deprovisioning breaker already weighed them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{load_ledger, save_ledger, slot_id, Slot, LEDGER_ATTEMPTS};
use crate::state::{StateStore, StoreError};

/// The store document the membership windows live in: one for every group, small (each
/// group's entries are bounded by its limit).
const MEMBERSHIP_LEDGER: &str = "membership-ledger";

/// How many members one group may lose in a rolling window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MembershipLimit {
    pub per_group: u64,
    pub window: Duration,
}

impl Default for MembershipLimit {
    fn default() -> Self {
        Self {
            per_group: 10,
            window: Duration::from_secs(3600),
        }
    }
}

impl MembershipLimit {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            per_group: settings.target.membership_removal_limit,
            window: settings.target.deprovision_window,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct MembershipLedger {
    /// A digest of the IdP group id → (a digest of who left → epoch seconds).
    #[serde(default)]
    groups: BTreeMap<String, BTreeMap<String, i64>>,
}

impl MembershipLedger {
    fn prune(&mut self, now: DateTime<Utc>, window: Duration) {
        let since = now.timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        for taken in self.groups.values_mut() {
            taken.retain(|_, at| *at > since);
        }
        self.groups.retain(|_, taken| !taken.is_empty());
    }
}

/// Takes a slot for removing `who` (a user's slot id) from IdP group `group` at `now`, unless
/// the group's window is full. A removal already counted (a retry) passes without counting.
pub async fn take_membership_slot(
    store: &dyn StateStore,
    group: &str,
    who: &str,
    now: DateTime<Utc>,
    limit: &MembershipLimit,
) -> Result<Slot, StoreError> {
    let (group, id) = (slot_id(group), slot_id(who));
    for _ in 0..LEDGER_ATTEMPTS {
        let (mut ledger, version) =
            load_ledger::<MembershipLedger>(store, MEMBERSHIP_LEDGER).await?;
        ledger.prune(now, limit.window);
        let taken = ledger.groups.entry(group.clone()).or_default();
        if taken.contains_key(&id) {
            return Ok(Slot::Taken);
        }
        let count = taken.len() as u64;
        if count >= limit.per_group {
            return Ok(Slot::Refused {
                taken: count,
                allowed: limit.per_group,
            });
        }
        taken.insert(id.clone(), now.timestamp());
        match save_ledger(store, MEMBERSHIP_LEDGER, &ledger, version).await {
            Ok(()) => return Ok(Slot::Taken),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(
        "the membership ledger kept changing concurrently".into(),
    ))
}

// The window needs a store: the in-memory one.
#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[tokio::test]
    async fn each_group_has_its_own_window_and_a_retry_counts_once() {
        let store = MemoryStore::new();
        let now = DateTime::from_timestamp(100_000, 0).unwrap();
        let limit = MembershipLimit {
            per_group: 2,
            window: Duration::from_secs(3600),
        };
        let take = |group: &'static str, who: &'static str, at: DateTime<Utc>| {
            let store = &store;
            async move {
                take_membership_slot(store, group, who, at, &limit)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(take("eng", "u1", now).await, Slot::Taken);
        assert_eq!(take("eng", "u1", now).await, Slot::Taken, "a retry");
        assert_eq!(take("eng", "u2", now).await, Slot::Taken);
        assert_eq!(
            take("eng", "u3", now).await,
            Slot::Refused {
                taken: 2,
                allowed: 2
            }
        );
        assert_eq!(take("ops", "u3", now).await, Slot::Taken, "another group");
        let later = now + chrono::Duration::seconds(3600);
        assert_eq!(
            take("eng", "u3", later).await,
            Slot::Taken,
            "the window moved on"
        );
    }
}
