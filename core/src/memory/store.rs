//! Per-user state, dedupe records, group ids, cursors and the credential breaker in memory,
//! with the same conditional-write contract as the SQLite and DynamoDB adapters.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::breaker::CredentialBreaker;
use crate::envelope::Source;
use crate::history::HistoryEntry;
use crate::state::{
    InvitationCounts, ProcessedEvent, StateStore, StoreError, SweepStore, UserKey, UserState,
};

/// A state store held in memory; clones share it (as handles on one database do).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
}

#[derive(Debug, Default)]
struct Tables {
    /// By storage id, so scans list users in a stable order.
    users: BTreeMap<String, (UserKey, UserState)>,
    /// Dedupe key → expiry in epoch seconds: both real adapters keep whole seconds, and
    /// decide expiry on them.
    events: HashMap<String, i64>,
    /// Group name → the target's id for it.
    groups: HashMap<String, String>,
    cursors: HashMap<String, String>,
    /// Target account (SCIM id) → the storage id of the user whose record claims it.
    claims: HashMap<String, String>,
    /// Named documents and their versions.
    documents: HashMap<String, (String, u64)>,
    /// When the credential breaker closes, in epoch seconds (as DynamoDB stores it).
    breaker_until: Option<i64>,
    /// Storage id → finished triggers, oldest first, each with its expiry (epoch seconds).
    history: HashMap<String, Vec<(HistoryEntry, i64)>>,
    /// Fingerprint → storage ids filed under it, each with its expiry.
    fingerprints: HashMap<String, BTreeMap<String, i64>>,
    /// Commits still to fail with a backend error (a test's outage).
    failing_commits: usize,
    /// While set, commits recording a target account (a SCIM id) fail.
    failing_account_commits: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A test that panicked mid-write leaves whole records behind: each write is one insert.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The recorded state of one user.
    pub fn user(&self, key: &UserKey) -> Option<UserState> {
        self.tables()
            .users
            .get(&key.storage_id())
            .map(|(_, state)| state.clone())
    }

    /// Every recorded user, in storage-id order.
    pub fn users(&self) -> Vec<(UserKey, UserState)> {
        self.tables().users.values().cloned().collect()
    }

    /// The next `n` commits fail with [`StoreError::Backend`] and write nothing.
    pub fn fail_next_commits(&self, n: usize) {
        self.tables().failing_commits = n;
    }

    /// While set, commits that record a target account fail: the window between the target
    /// acting and the relay writing down what it did (a crash, a store outage).
    pub fn fail_account_commits(&self, failing: bool) {
        self.tables().failing_account_commits = failing;
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn record_history(
        &self,
        key: &UserKey,
        fingerprint: Option<&str>,
        entry: &HistoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut t = self.tables();
        let id = key.storage_id();
        let expires = expires_at.timestamp();
        t.history
            .entry(id.clone())
            .or_default()
            .push((entry.clone(), expires));
        if let Some(fp) = fingerprint {
            t.fingerprints
                .entry(fp.to_string())
                .or_default()
                .insert(id, expires);
        }
        Ok(())
    }

    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let t = self.tables();
        let mut entries: Vec<HistoryEntry> = t
            .history
            .get(&key.storage_id())
            .into_iter()
            .flatten()
            .filter(|(_, expires)| *expires > now.timestamp())
            .map(|(e, _)| e.clone())
            .collect();
        // Newest first; of two in one instant, the later written.
        entries.reverse();
        entries.sort_by_key(|e| std::cmp::Reverse(e.at));
        entries.truncate(limit);
        Ok(entries)
    }

    async fn users_by_fingerprint(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError> {
        let t = self.tables();
        Ok(t.fingerprints
            .get(fingerprint)
            .into_iter()
            .flatten()
            .filter(|(_, expires)| **expires > now.timestamp())
            .filter_map(|(id, _)| UserKey::from_storage_id(id))
            .collect())
    }

    async fn group_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables().groups.get(name).cloned())
    }

    async fn record_group(&self, name: &str, id: &str) -> Result<String, StoreError> {
        Ok(self
            .tables()
            .groups
            .entry(name.to_string())
            .or_insert_with(|| id.to_string())
            .clone())
    }

    async fn forget_group(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if tables
            .groups
            .get(name)
            .is_some_and(|recorded| recorded == id)
        {
            tables.groups.remove(name);
        }
        Ok(())
    }

    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError> {
        Ok(self.user(key))
    }

    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self
            .tables()
            .events
            .get(event_key)
            .is_some_and(|expires| *expires > now.timestamp()))
    }

    async fn load_document(&self, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(self.tables().documents.get(name).cloned())
    }

    async fn claimant(&self, scim_id: &str) -> Result<Option<UserKey>, StoreError> {
        Ok(self
            .tables()
            .claims
            .get(scim_id)
            .and_then(|owner| UserKey::from_storage_id(owner)))
    }

    async fn release_claim(&self, scim_id: &str, key: &UserKey) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if tables.claims.get(scim_id) == Some(&key.storage_id()) {
            tables.claims.remove(scim_id);
        }
        Ok(())
    }

    async fn save_document(
        &self,
        name: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        let stored = tables.documents.get(name).map(|(_, v)| *v);
        if stored != expected {
            return Err(StoreError::Conflict);
        }
        tables.documents.insert(
            name.to_string(),
            (value.to_string(), expected.map_or(1, |v| v + 1)),
        );
        Ok(())
    }

    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError> {
        let mut tables = self.tables();
        if tables.failing_commits > 0 {
            tables.failing_commits -= 1;
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        if tables.failing_account_commits && state.is_some_and(|s| s.scim_id.is_some()) {
            return Err(StoreError::Backend("injected commit failure".into()));
        }
        if let Some(state) = state {
            let id = key.storage_id();
            let stored = tables.users.get(&id).map(|(_, s)| s.version);
            // As both adapters: no record expected and none there, or the version expected.
            if stored != expected_version {
                return Err(StoreError::Conflict);
            }
            if let Some(scim_id) = &state.scim_id {
                match tables.claims.get(scim_id) {
                    Some(owner) if *owner != id => {
                        return Err(StoreError::Claimed {
                            scim_id: scim_id.clone(),
                            owner: owner.clone(),
                        })
                    }
                    _ => {
                        tables.claims.insert(scim_id.clone(), id.clone());
                    }
                }
            }
            tables.users.insert(id, (key.clone(), state.clone()));
        }
        // A replayed key takes the new expiry, as SQLite's upsert and DynamoDB's put do.
        tables
            .events
            .insert(event.key.clone(), event.expires_at.timestamp());
        Ok(())
    }
}

#[async_trait]
impl SweepStore for MemoryStore {
    async fn invites_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        let now = now.timestamp();
        let tables = self.tables();
        let mut due: Vec<(i64, &String, &(UserKey, UserState))> = tables
            .users
            .iter()
            .filter_map(|(id, record)| {
                let at = record.1.invite.as_ref()?.due_at()?.timestamp();
                (at <= now).then_some((at, id, record))
            })
            .collect();
        // Soonest first; the storage id orders a tie (the real indexes leave that open).
        due.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, _, record)| record.clone())
            .collect())
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables().cursors.get(name).cloned())
    }

    async fn active_account_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .tables()
            .users
            .values()
            .filter(|(_, state)| state.active)
            .count() as u64)
    }

    async fn held_users(&self) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        Ok(self
            .tables()
            .users
            .values()
            .filter(|(_, state)| state.held.is_some())
            .cloned()
            .collect())
    }

    async fn known_user_names(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .tables()
            .users
            .values()
            .map(|(_, state)| state.user_name.to_lowercase())
            .collect())
    }

    async fn active_user_ids(
        &self,
        source: Source,
        tenant: &str,
    ) -> Result<Vec<String>, StoreError> {
        // `active` alone, as both adapters: a create in doubt (no SCIM id yet) counts, since it
        // may have made an account.
        Ok(self
            .tables()
            .users
            .values()
            .filter(|(key, state)| key.source == source && key.tenant == tenant && state.active)
            .map(|(key, _)| key.user_id.clone())
            .collect())
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.tables()
            .cursors
            .insert(name.to_string(), value.to_string());
        Ok(())
    }

    async fn invitation_counts(&self, now: DateTime<Utc>) -> Result<InvitationCounts, StoreError> {
        let mut counts = InvitationCounts::default();
        for (_, state) in self.tables().users.values() {
            if let Some(invite) = &state.invite {
                counts.count(invite, now);
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl CredentialBreaker for MemoryStore {
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .tables()
            .breaker_until
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .filter(|until| *until > now))
    }

    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.tables().breaker_until = Some(until.timestamp());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::state::{InviteOutcome, InviteState};

    fn key(user_id: &str) -> UserKey {
        UserKey {
            source: Source::Okta,
            tenant: "example.okta.com".into(),
            user_id: user_id.into(),
        }
    }

    fn state(version: u64) -> UserState {
        UserState {
            scim_id: Some("s1".into()),
            user_name: "A@Example.com".into(),
            active: true,
            lifecycle: "ACTIVE".into(),
            version,
            updated_at: Utc::now(),
            ..Default::default()
        }
    }

    fn event(key: &str, expires_at: DateTime<Utc>) -> ProcessedEvent {
        ProcessedEvent {
            key: key.into(),
            expires_at,
        }
    }

    #[tokio::test]
    async fn versions_guard_every_write_and_a_lost_write_records_no_event() {
        let store = MemoryStore::new();
        let later = Utc::now() + Duration::hours(1);
        let user = key("00u1");
        store
            .commit(&user, Some(&state(1)), None, &event("e1", later))
            .await
            .expect("first write");
        // A second "first write" loses, and so does a write against a version not stored.
        let again = store
            .commit(&user, Some(&state(1)), None, &event("e2", later))
            .await;
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
        let stale = store
            .commit(&user, Some(&state(3)), Some(2), &event("e3", later))
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
        store
            .commit(&user, Some(&state(2)), Some(1), &event("e4", later))
            .await
            .expect("write against the version read");
        assert_eq!(store.user(&user).map(|s| s.version), Some(2));
        assert!(!store.event_seen("e2", Utc::now()).await.unwrap_or(true));
        assert!(!store.event_seen("e3", Utc::now()).await.unwrap_or(true));
        assert!(store.event_seen("e4", Utc::now()).await.unwrap_or(false));
        // Expecting a version of a user never written is a conflict too.
        let missing = store
            .commit(&key("00u2"), Some(&state(2)), Some(1), &event("e5", later))
            .await;
        assert!(matches!(missing, Err(StoreError::Conflict)), "{missing:?}");
        // An event without state is recorded unconditionally.
        store
            .commit(&key("00u2"), None, Some(7), &event("e6", later))
            .await
            .expect("event only");
        assert!(store.event_seen("e6", Utc::now()).await.unwrap_or(false));
        assert_eq!(store.users().len(), 1);
    }

    #[tokio::test]
    async fn a_dedupe_record_is_honoured_until_it_expires() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let expires = now + Duration::minutes(5);
        store
            .commit(&key("00u1"), Some(&state(1)), None, &event("e1", expires))
            .await
            .expect("write");
        assert!(store.event_seen("e1", now).await.unwrap_or(false));
        assert!(!store.event_seen("e1", expires).await.unwrap_or(true));
        assert!(!store.event_seen("never", now).await.unwrap_or(true));
    }

    #[tokio::test]
    async fn injected_commit_failures_write_nothing_and_then_stop() {
        let store = MemoryStore::new();
        let later = Utc::now() + Duration::hours(1);
        store.fail_next_commits(2);
        for attempt in ["a1", "a2"] {
            let failed = store
                .commit(&key("00u1"), Some(&state(1)), None, &event(attempt, later))
                .await;
            assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
            assert!(!store.event_seen(attempt, Utc::now()).await.unwrap_or(true));
        }
        assert!(store.user(&key("00u1")).is_none());
        store
            .commit(&key("00u1"), Some(&state(1)), None, &event("a3", later))
            .await
            .expect("the outage is over");
    }

    #[tokio::test]
    async fn the_first_recorded_group_id_wins_and_is_only_forgotten_by_its_own_id() {
        let store = MemoryStore::new();
        assert_eq!(store.group_id("Eng").await.ok().flatten(), None);
        // Two workers each created a group; both learn which one stays.
        assert_eq!(
            store.record_group("Eng", "g1").await.ok().as_deref(),
            Some("g1")
        );
        assert_eq!(
            store.record_group("Eng", "g2").await.ok().as_deref(),
            Some("g1")
        );
        // The loser's id does not forget the winner's record.
        store.forget_group("Eng", "g2").await.expect("forget");
        assert_eq!(
            store.group_id("Eng").await.ok().flatten().as_deref(),
            Some("g1")
        );
        store.forget_group("Eng", "g1").await.expect("forget");
        assert_eq!(store.group_id("Eng").await.ok().flatten(), None);
        assert_eq!(
            store.record_group("Eng", "g3").await.ok().as_deref(),
            Some("g3")
        );
    }

    #[tokio::test]
    async fn only_pending_invitations_past_expiry_are_due_soonest_first() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let later = now + Duration::hours(1);
        let invited = |expires_at, outcome| {
            let mut s = state(1);
            s.invite = Some(InviteState {
                sent_at: now - Duration::days(3),
                expires_at,
                count: 1,
                outcome,
            });
            s
        };
        let accepted = Some(InviteOutcome::Accepted { at: now });
        let users = [
            ("expired", invited(now - Duration::hours(1), None)),
            ("late", invited(now - Duration::hours(2), None)),
            ("valid", invited(later, None)),
            ("accepted", invited(now - Duration::hours(3), accepted)),
            ("uninvited", state(1)),
        ];
        for (i, (user, s)) in users.iter().enumerate() {
            // One account each: a SCIM id is claimed by one user.
            let mut s = s.clone();
            s.scim_id = Some(format!("s-{user}"));
            store
                .commit(&key(user), Some(&s), None, &event(&format!("i{i}"), later))
                .await
                .expect("write");
        }
        let due = |limit| {
            let store = store.clone();
            async move {
                store
                    .invites_due(now, limit)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, _)| k.user_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(due(10).await, ["late", "expired"]);
        assert_eq!(due(1).await, ["late"]);
    }

    #[tokio::test]
    async fn sweeper_reads_cursors_and_the_breaker() {
        let store = MemoryStore::new();
        let later = Utc::now() + Duration::hours(1);
        let mut inactive = state(1);
        inactive.active = false;
        inactive.scim_id = Some("s2".into());
        let mut in_doubt = state(1);
        in_doubt.scim_id = None;
        let mut elsewhere = state(1);
        elsewhere.scim_id = Some("s4".into());
        let other_tenant = UserKey {
            tenant: "other.okta.com".into(),
            ..key("00u4")
        };
        store
            .commit(&key("00u1"), Some(&state(1)), None, &event("c1", later))
            .await
            .expect("write");
        store
            .commit(&key("00u2"), Some(&inactive), None, &event("c2", later))
            .await
            .expect("write");
        store
            .commit(&key("00u3"), Some(&in_doubt), None, &event("c3", later))
            .await
            .expect("write");
        store
            .commit(&other_tenant, Some(&elsewhere), None, &event("c4", later))
            .await
            .expect("write");
        let active = store
            .active_user_ids(Source::Okta, "example.okta.com")
            .await
            .unwrap_or_default();
        assert_eq!(active, ["00u1", "00u3"], "creates in doubt count");
        let names = store.known_user_names().await.unwrap_or_default();
        assert_eq!(names, HashSet::from(["a@example.com".to_string()]));

        assert_eq!(store.load_cursor("c").await.ok().flatten(), None);
        store.save_cursor("c", "one").await.expect("save");
        store.save_cursor("c", "two").await.expect("save");
        assert_eq!(
            store.load_cursor("c").await.ok().flatten().as_deref(),
            Some("two")
        );

        let now = Utc::now();
        assert_eq!(store.open_until(now).await.ok().flatten(), None);
        store.open(now + Duration::seconds(30)).await.expect("open");
        assert!(store.open_until(now).await.ok().flatten().is_some());
        assert_eq!(
            store
                .open_until(now + Duration::seconds(31))
                .await
                .ok()
                .flatten(),
            None,
            "closes by itself"
        );
    }

    #[tokio::test]
    async fn one_account_is_claimed_by_one_user() {
        let db = MemoryStore::default();
        let later = Utc::now() + chrono::Duration::hours(1);
        db.commit(&key("00u1"), Some(&state(1)), None, &event("c1", later))
            .await
            .unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), Some(key("00u1")));
        let twin = key("00uTWIN");
        assert!(matches!(
            db.commit(&twin, Some(&state(1)), None, &event("c2", later)).await,
            Err(StoreError::Claimed { ref owner, .. }) if *owner == key("00u1").storage_id()
        ));
        assert_eq!(db.load_user(&twin).await.unwrap(), None);
        assert!(!db.event_seen("c2", Utc::now()).await.unwrap());
        // The owner writes on.
        db.commit(&key("00u1"), Some(&state(2)), Some(1), &event("c3", later))
            .await
            .unwrap();
        // Only the owner gives a claim up.
        db.release_claim("s1", &twin).await.unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), Some(key("00u1")));
        db.release_claim("s1", &key("00u1")).await.unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), None);
    }
}
