//! The deprovisioning breaker. A relay that can switch off one account can switch off all of
//! them: an unassigned app group, a scope setting naming the wrong group, a directory read gone
//! wrong. So every path that deactivates or deletes (events, reconciliation, full passes, drift)
//! takes a slot in one rolling window first; past the limit the deactivation is *held* on the
//! user's record (not applied, not lost) for an operator to approve or reject, while creates
//! and updates go on. This is Entra's "accidental deletions threshold", per rolling window.
//!
//! The window is one small versioned document in the state store, written conditionally, so
//! every worker and the sweeper of a deployment share it without a lock.

mod hold;
mod membership;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{StateStore, StoreError, UserKey};

pub use hold::{
    decide, held_json, held_users, render_held, Decision, DecisionError, HeldUser, Hold, HoldState,
    APPROVED_EVENT,
};
pub use membership::{take_membership_slot, MembershipLimit};

/// The store document the window lives in (the worker reads it with its first read when a
/// trigger [may deprovision](crate::model::Trigger::may_deprovision)).
pub const LEDGER: &str = "deprovision-ledger";

/// How often a conflicting concurrent write of the ledger is retried in-process.
const LEDGER_ATTEMPTS: usize = 8;

/// How many deprovisions a rolling window allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeprovisionLimit {
    /// Allowed whatever the population.
    pub floor: u64,
    /// Per cent of the accounts the relay keeps active, when that is more than `floor`.
    pub percent: u64,
    pub window: Duration,
}

impl Default for DeprovisionLimit {
    fn default() -> Self {
        Self {
            floor: 10,
            percent: 5,
            window: Duration::from_secs(3600),
        }
    }
}

impl DeprovisionLimit {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            floor: settings.target.deprovision_limit,
            percent: settings.target.deprovision_percent,
            window: settings.target.deprovision_window,
        }
    }

    /// Deprovisions allowed per window when the relay keeps `population` accounts active.
    pub fn allowed(&self, population: u64) -> u64 {
        let share = population.saturating_mul(self.percent).div_ceil(100);
        self.floor.max(share)
    }
}

/// The window as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    /// Accounts the relay keeps active, as the sweeper last counted them (0: not counted yet,
    /// so only the floor applies).
    #[serde(default)]
    population: u64,
    /// Who was deprovisioned in the window: a digest of the user's key → epoch seconds. Keyed
    /// by user, so a deprovision retried after a failed call counts once.
    #[serde(default)]
    taken: BTreeMap<String, i64>,
}

impl Ledger {
    fn prune(&mut self, now: DateTime<Utc>, window: Duration) {
        let since = now.timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        self.taken.retain(|_, at| *at > since);
    }
}

/// The breaker's answer for one deprovision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Go ahead: counted in the window.
    Taken,
    /// The window is full: hold it.
    Refused { taken: u64, allowed: u64 },
}

fn slot_id(who: &str) -> String {
    hex::encode(&Sha256::digest(who.as_bytes())[..8])
}

/// Who a user's deprovision is counted as in the window.
pub fn user_slot(user: &UserKey) -> String {
    user.storage_id()
}

async fn load(store: &dyn StateStore) -> Result<(Ledger, Option<u64>), StoreError> {
    load_ledger(store, LEDGER).await
}

/// A breaker's window document and its version.
async fn load_ledger<L: Default + serde::de::DeserializeOwned>(
    store: &dyn StateStore,
    name: &str,
) -> Result<(L, Option<u64>), StoreError> {
    Ok(parse_ledger(name, store.load_document(name).await?))
}

fn parse_ledger<L: Default + serde::de::DeserializeOwned>(
    name: &str,
    document: Option<(String, u64)>,
) -> (L, Option<u64>) {
    match document {
        Some((text, version)) => {
            // An unreadable ledger must not stop the breaker for good, nor let it run
            // unchecked: start it over (the count restarts, the floor still applies).
            let ledger = serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::error!("{name} unreadable, starting it over: {e}");
                L::default()
            });
            (ledger, Some(version))
        }
        None => (L::default(), None),
    }
}

async fn save(
    store: &dyn StateStore,
    ledger: &Ledger,
    expected: Option<u64>,
) -> Result<(), StoreError> {
    save_ledger(store, LEDGER, ledger, expected).await
}

async fn save_ledger<L: Serialize>(
    store: &dyn StateStore,
    name: &str,
    ledger: &L,
    expected: Option<u64>,
) -> Result<(), StoreError> {
    let text = serde_json::to_string(ledger).map_err(|e| StoreError::Backend(e.to_string()))?;
    store.save_document(name, &text, expected).await
}

/// Takes a slot for deprovisioning `who` (a [`user_slot`], or a drift account's SCIM id) at
/// `now`, unless the window is full. One already counted in the window (a retry) is let
/// through without counting again.
pub async fn take_slot(
    store: &dyn StateStore,
    who: &str,
    now: DateTime<Utc>,
    limit: &DeprovisionLimit,
) -> Result<Slot, StoreError> {
    take_slot_read(store, who, now, limit, None).await
}

/// [`take_slot`], its first attempt on the ledger as `read` already (the worker's first read
/// brought it along: one request fewer). A conflict reads it again.
pub async fn take_slot_read(
    store: &dyn StateStore,
    who: &str,
    now: DateTime<Utc>,
    limit: &DeprovisionLimit,
    mut read: Option<Option<(String, u64)>>,
) -> Result<Slot, StoreError> {
    let id = slot_id(who);
    for _ in 0..LEDGER_ATTEMPTS {
        let (mut ledger, version) = match read.take() {
            Some(document) => parse_ledger(LEDGER, document),
            None => load(store).await?,
        };
        ledger.prune(now, limit.window);
        if ledger.taken.contains_key(&id) {
            return Ok(Slot::Taken);
        }
        let allowed = limit.allowed(ledger.population);
        let taken = ledger.taken.len() as u64;
        if taken >= allowed {
            return Ok(Slot::Refused { taken, allowed });
        }
        ledger.taken.insert(id.clone(), now.timestamp());
        match save(store, &ledger, version).await {
            Ok(()) => return Ok(Slot::Taken),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(
        "the deprovisioning ledger kept changing concurrently".into(),
    ))
}

/// Records how many accounts the relay keeps active (the sweeper counts them on each run): the
/// share of the limit is of this.
pub async fn record_population(store: &dyn StateStore, population: u64) -> Result<(), StoreError> {
    for _ in 0..LEDGER_ATTEMPTS {
        let (mut ledger, version) = load(store).await?;
        if ledger.population == population && version.is_some() {
            return Ok(());
        }
        ledger.population = population;
        match save(store, &ledger, version).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(
        "the deprovisioning ledger kept changing concurrently".into(),
    ))
}

/// Deprovisions counted in the window ending at `now`, and how many it allows.
pub async fn window_use(
    store: &dyn StateStore,
    now: DateTime<Utc>,
    limit: &DeprovisionLimit,
) -> Result<(u64, u64), StoreError> {
    let (mut ledger, _) = load(store).await?;
    ledger.prune(now, limit.window);
    Ok((ledger.taken.len() as u64, limit.allowed(ledger.population)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_floor_or_the_share_whichever_is_larger() {
        let limit = DeprovisionLimit::default();
        assert_eq!(limit.allowed(0), 10);
        assert_eq!(limit.allowed(200), 10);
        assert_eq!(limit.allowed(201), 11, "a share rounds up");
        assert_eq!(limit.allowed(1_000), 50);
        assert_eq!(limit.allowed(u64::MAX), u64::MAX / 100 + 1, "no overflow");
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let now = DateTime::from_timestamp(10_000, 0).unwrap();
        let mut ledger = Ledger::default();
        ledger.taken.insert("old".into(), 10_000 - 3_600);
        ledger.taken.insert("new".into(), 10_000 - 3_599);
        ledger.prune(now, Duration::from_secs(3600));
        assert_eq!(ledger.taken.keys().collect::<Vec<_>>(), ["new"]);
    }
}
