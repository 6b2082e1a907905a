//! Per-user state and dedupe records in SQLite, with the same conditional-write contract as
//! the DynamoDB adapter.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{SqliteDb, SqliteError};
use crate::history::HistoryEntry;
use crate::state::{
    InvitationCounts, InviteState, ProcessedEvent, StateStore, StoreError, SweepStore, UserKey,
    UserState,
};

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        StoreError::Backend(e.0)
    }
}

/// Internal marker for a failed version check inside the blocking closure.
const CONFLICT: &str = "\u{0}conflict";
/// Marks a commit refused because another user's record claims the account (the owner follows).
const CLAIMED: &str = "\u{0}claimed:";

/// Expired rows removed per history write: the file stays bounded by what is kept, and no
/// write pays for a long backlog at once.
const PURGE_BATCH: i64 = 20;

/// The tables whose rows expire, each with an index on `expires_at`: the purge runs on every
/// history write, so a scan would make each write cost the whole table (it did for
/// `user_fingerprints`: a 100,000-user full pass slowed to 20 triggers a second).
const EXPIRING: [&str; 3] = ["history", "user_fingerprints", "events"];

fn purge_sql(table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE rowid IN \
         (SELECT rowid FROM {table} WHERE expires_at <= ?1 LIMIT ?2)"
    )
}

#[async_trait]
impl StateStore for SqliteDb {
    async fn record_history(
        &self,
        key: &UserKey,
        fingerprint: Option<&str>,
        entry: &HistoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let user = key.storage_id();
        let fingerprint = fingerprint.map(str::to_string);
        let doc = serde_json::to_string(entry)
            .map_err(|e| StoreError::Backend(format!("history entry: {e}")))?;
        let (at, expires, now) = (
            entry.at.timestamp_millis(),
            expires_at.timestamp(),
            entry.at.timestamp(),
        );
        Ok(self
            .run(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO history (user, at, entry, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![user, at, doc, expires],
                )?;
                if let Some(fp) = fingerprint {
                    tx.execute(
                        "INSERT INTO user_fingerprints (fingerprint, user, expires_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (fingerprint, user) DO UPDATE SET expires_at = excluded.expires_at",
                        params![fp, user, expires],
                    )?;
                }
                // What expired goes, a little at a time (DynamoDB's TTL does this there).
                for table in EXPIRING {
                    tx.execute(&purge_sql(table), params![now, PURGE_BATCH])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?)
    }

    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let user = key.storage_id();
        let (now, limit) = (now.timestamp(), limit as i64);
        let docs: Vec<String> = self
            .run(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT entry FROM history WHERE user = ?1 AND expires_at > ?2 \
                     ORDER BY at DESC, id DESC LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![user, now, limit], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(rows)
            })
            .await?;
        docs.iter()
            .map(|d| {
                serde_json::from_str(d)
                    .map_err(|e| StoreError::Backend(format!("history entry unreadable: {e}")))
            })
            .collect()
    }

    async fn users_by_fingerprint(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError> {
        let (fp, now) = (fingerprint.to_string(), now.timestamp());
        let users: Vec<String> = self
            .run(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT user FROM user_fingerprints WHERE fingerprint = ?1 AND expires_at > ?2 \
                     ORDER BY user",
                )?;
                let rows = stmt
                    .query_map(params![fp, now], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(rows)
            })
            .await?;
        Ok(users
            .iter()
            .filter_map(|u| UserKey::from_storage_id(u))
            .collect())
    }

    async fn group_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        Ok(self
            .run(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT scim_id FROM groups WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await?)
    }

    async fn record_group(&self, name: &str, id: &str) -> Result<String, StoreError> {
        let (name, id) = (name.to_string(), id.to_string());
        Ok(self
            .run(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO groups (name, scim_id) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                    params![name, id],
                )?;
                let recorded =
                    tx.query_row("SELECT scim_id FROM groups WHERE name = ?1", params![name], |r| {
                        r.get(0)
                    })?;
                tx.commit()?;
                Ok(recorded)
            })
            .await?)
    }

    async fn forget_group(&self, name: &str, id: &str) -> Result<(), StoreError> {
        let (name, id) = (name.to_string(), id.to_string());
        Ok(self
            .run(move |conn| {
                conn.execute(
                    "DELETE FROM groups WHERE name = ?1 AND scim_id = ?2",
                    params![name, id],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError> {
        let id = key.storage_id();
        let doc: Option<String> = self
            .run(move |conn| {
                Ok(conn
                    .query_row("SELECT doc FROM users WHERE id = ?1", params![id], |r| {
                        r.get(0)
                    })
                    .optional()?)
            })
            .await?;
        doc.map(|d| {
            serde_json::from_str(&d)
                .map_err(|e| StoreError::Backend(format!("state record unreadable: {e}")))
        })
        .transpose()
    }

    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let key = event_key.to_string();
        let now = now.timestamp();
        Ok(self
            .run(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT 1 FROM events WHERE key = ?1 AND expires_at > ?2",
                        params![key, now],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            })
            .await?)
    }

    async fn claimant(&self, scim_id: &str) -> Result<Option<UserKey>, StoreError> {
        let scim_id = scim_id.to_string();
        let owner: Option<String> = self
            .run(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT owner FROM claims WHERE scim_id = ?1",
                        params![scim_id],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await?;
        Ok(owner.and_then(|o| UserKey::from_storage_id(&o)))
    }

    async fn release_claim(&self, scim_id: &str, key: &UserKey) -> Result<(), StoreError> {
        let (scim_id, owner) = (scim_id.to_string(), key.storage_id());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM claims WHERE scim_id = ?1 AND owner = ?2",
                params![scim_id, owner],
            )?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn load_document(&self, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        let name = name.to_string();
        Ok(self
            .run(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT value, version FROM documents WHERE name = ?1",
                        params![name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?)
            })
            .await?)
    }

    async fn save_document(
        &self,
        name: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let (name, value) = (name.to_string(), value.to_string());
        let changed = self
            .run(move |conn| {
                Ok(match expected {
                    None => conn.execute(
                        "INSERT INTO documents (name, value, version) VALUES (?1, ?2, 1)
                         ON CONFLICT (name) DO NOTHING",
                        params![name, value],
                    )?,
                    Some(v) => conn.execute(
                        "UPDATE documents SET value = ?2, version = ?3 WHERE name = ?1 AND version = ?4",
                        params![name, value, v + 1, v],
                    )?,
                })
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError> {
        let id = key.storage_id();
        let doc = state
            .map(|s| {
                serde_json::to_string(s).map(|d| {
                    let due = s
                        .invite
                        .as_ref()
                        .and_then(|i| i.due_at())
                        .map(|t| t.timestamp());
                    (d, s.version, s.updated_at.timestamp(), due)
                })
            })
            .transpose()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let event_key = event.key.clone();
        let event_expiry = event.expires_at.timestamp();
        let scim_id = state.and_then(|s| s.scim_id.clone());
        let claimed = scim_id.clone();
        let result = self
            .run(move |conn| {
                let tx = conn.transaction()?;
                if let Some((doc, version, updated_at, due)) = doc {
                    let changed = match expected_version {
                        None => tx.execute(
                            "INSERT INTO users (id, version, doc, updated_at, invite_due) VALUES (?1, ?2, ?3, ?4, ?5)
                             ON CONFLICT (id) DO NOTHING",
                            params![id, version, doc, updated_at, due],
                        )?,
                        Some(expected) => tx.execute(
                            "UPDATE users SET version = ?2, doc = ?3, updated_at = ?4, invite_due = ?5 WHERE id = ?1 AND version = ?6",
                            params![id, version, doc, updated_at, due, expected],
                        )?,
                    };
                    if changed == 0 {
                        return Err(SqliteError(CONFLICT.into()));
                    }
                    if let Some(scim_id) = &scim_id {
                        let owner: Option<String> = tx
                            .query_row(
                                "SELECT owner FROM claims WHERE scim_id = ?1",
                                params![scim_id],
                                |r| r.get(0),
                            )
                            .optional()?;
                        match owner {
                            Some(owner) if owner != id => {
                                return Err(SqliteError(format!("{CLAIMED}{owner}")));
                            }
                            Some(_) => {}
                            None => {
                                tx.execute(
                                    "INSERT INTO claims (scim_id, owner) VALUES (?1, ?2)",
                                    params![scim_id, id],
                                )?;
                            }
                        }
                    }
                }
                tx.execute(
                    "INSERT INTO events (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
                    params![event_key, event_expiry],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await;
        match result {
            Err(SqliteError(m)) if m == CONFLICT => Err(StoreError::Conflict),
            Err(SqliteError(m)) if m.starts_with(CLAIMED) => Err(StoreError::Claimed {
                scim_id: claimed.unwrap_or_default(),
                owner: m[CLAIMED.len()..].to_string(),
            }),
            other => Ok(other?),
        }
    }
}

/// `(id, doc)` rows of the users table, read back.
fn keyed_states(rows: Vec<(String, String)>) -> Result<Vec<(UserKey, UserState)>, StoreError> {
    rows.into_iter()
        .map(|(id, doc)| {
            let key = UserKey::from_storage_id(&id)
                .ok_or_else(|| StoreError::Backend(format!("unreadable user key {id}")))?;
            let state = serde_json::from_str(&doc)
                .map_err(|e| StoreError::Backend(format!("state record unreadable: {e}")))?;
            Ok((key, state))
        })
        .collect()
}

#[async_trait]
impl SweepStore for SqliteDb {
    async fn invites_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        let now = now.timestamp();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(String, String)> = self
            .run(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, doc FROM users WHERE invite_due IS NOT NULL AND invite_due <= ?1
                     ORDER BY invite_due LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        keyed_states(rows)
    }

    async fn active_account_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .run(|conn| {
                Ok(conn.query_row(
                    "SELECT count(*) FROM users WHERE json_extract(doc, '$.active')",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await?
            .unsigned_abs())
    }

    async fn held_users(&self) -> Result<Vec<(UserKey, UserState)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .run(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT id, doc FROM users WHERE json_extract(doc, '$.held') IS NOT NULL",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        keyed_states(rows)
    }

    async fn known_user_names(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        Ok(self
            .run(|conn| {
                let mut stmt =
                    conn.prepare("SELECT json_extract(doc, '$.user_name') FROM users")?;
                let names = stmt
                    .query_map([], |r| r.get::<_, Option<String>>(0))?
                    .filter_map(|r| r.transpose())
                    .map(|r| r.map(|name| name.to_lowercase()))
                    .collect::<Result<_, _>>()?;
                Ok(names)
            })
            .await?)
    }

    async fn active_user_ids(
        &self,
        source: crate::envelope::Source,
        tenant: &str,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{source}#{tenant}#");
        // The ids alone, `active` read in SQL: a directory of 100,000 users is 100,000 ids in
        // memory here, not 100,000 documents. Creates in doubt (no SCIM id yet) count: they
        // may have made an account.
        let ids: Vec<String> = self
            .run(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT id FROM users WHERE substr(id, 1, length(?1)) = ?1
                     AND json_extract(doc, '$.active') = 1",
                )?;
                let ids = stmt
                    .query_map(params![prefix], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ids)
            })
            .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| UserKey::from_storage_id(&id).map(|k| k.user_id))
            .collect())
    }

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        Ok(self
            .run(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT value FROM cursors WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .optional()?)
            })
            .await?)
    }

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let (name, value) = (name.to_string(), value.to_string());
        let now = Utc::now().timestamp();
        Ok(self
            .run(move |conn| {
                conn.execute(
                    "INSERT INTO cursors (name, value, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    params![name, value, now],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn invitation_counts(&self, now: DateTime<Utc>) -> Result<InvitationCounts, StoreError> {
        // Not the invite_due index: it holds pending invitations only.
        let invites: Vec<String> = self
            .run(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT json_extract(doc, '$.invite') FROM users
                     WHERE json_type(doc, '$.invite') = 'object'",
                )?;
                let rows = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut counts = InvitationCounts::default();
        for json in invites {
            let invite: InviteState = serde_json::from_str(&json)
                .map_err(|e| StoreError::Backend(format!("invitation unreadable: {e}")))?;
            counts.count(&invite, now);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::envelope::Source;

    fn key() -> UserKey {
        UserKey {
            source: Source::Okta,
            tenant: "t".into(),
            user_id: "00u1".into(),
        }
    }

    fn state(version: u64) -> UserState {
        UserState {
            scim_id: Some("s1".into()),
            user_name: "a@example.com".into(),
            active: true,
            lifecycle: "ACTIVE".into(),
            version,
            updated_at: Utc::now(),
            ..Default::default()
        }
    }

    fn event(k: &str, expires: DateTime<Utc>) -> ProcessedEvent {
        ProcessedEvent {
            key: k.into(),
            expires_at: expires,
        }
    }

    #[tokio::test]
    async fn versions_guard_every_write() {
        let path = std::env::temp_dir().join(format!("scim-relay-s-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&path).unwrap();
        let later = Utc::now() + chrono::Duration::hours(1);
        db.commit(&key(), Some(&state(1)), None, &event("e1", later))
            .await
            .unwrap();
        let loaded = db.load_user(&key()).await.unwrap().unwrap();
        assert_eq!((loaded.version, loaded.scim_id.as_deref()), (1, Some("s1")));
        assert!(db.event_seen("e1", Utc::now()).await.unwrap());
        // The dedupe record expires.
        assert!(!db
            .event_seen("e1", later + chrono::Duration::seconds(1))
            .await
            .unwrap());
        // A second "first write" loses.
        assert!(matches!(
            db.commit(&key(), Some(&state(1)), None, &event("e2", later))
                .await,
            Err(StoreError::Conflict)
        ));
        // A write against the right version wins; a stale one loses.
        db.commit(&key(), Some(&state(2)), Some(1), &event("e3", later))
            .await
            .unwrap();
        assert!(matches!(
            db.commit(&key(), Some(&state(2)), Some(1), &event("e4", later))
                .await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            db.load_user(&key()).await.unwrap().map(|s| s.version),
            Some(2)
        );
        // A lost write records no event either.
        assert!(!db.event_seen("e2", Utc::now()).await.unwrap());
        assert!(db.event_seen("e3", Utc::now()).await.unwrap());
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn only_pending_invitations_past_expiry_are_due() {
        use crate::state::{InviteOutcome, InviteState};
        let path = std::env::temp_dir().join(format!("scim-relay-i-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&path).unwrap();
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let with_invite = |user: &str, expires: DateTime<Utc>, outcome| {
            let mut s = state(1);
            s.scim_id = Some(format!("s-{user}"));
            s.invite = Some(InviteState {
                sent_at: now,
                expires_at: expires,
                count: 1,
                outcome,
            });
            (
                UserKey {
                    user_id: user.into(),
                    ..key()
                },
                s,
            )
        };
        let users = [
            with_invite("late", now - chrono::Duration::hours(2), None),
            with_invite("expired", now - chrono::Duration::hours(1), None),
            with_invite("valid", later, None),
            with_invite(
                "accepted",
                now - chrono::Duration::hours(3),
                Some(InviteOutcome::Accepted { at: now }),
            ),
        ];
        for (i, (k, s)) in users.iter().enumerate() {
            db.commit(k, Some(s), None, &event(&format!("i{i}"), later))
                .await
                .unwrap();
        }
        let due: Vec<String> = db
            .invites_due(now, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.user_id)
            .collect();
        assert_eq!(due, ["late", "expired"], "soonest first, pending only");
        assert_eq!(db.invites_due(now, 1).await.unwrap().len(), 1);
        // An accepted invitation leaves the index when its state is written.
        let (k, mut s) = users[0].clone();
        s.invite.as_mut().unwrap().outcome = Some(InviteOutcome::Accepted { at: now });
        s.version = 2;
        db.commit(&k, Some(&s), Some(1), &event("i9", later))
            .await
            .unwrap();
        assert_eq!(db.invites_due(now, 10).await.unwrap().len(), 1);
        // The query uses the partial index, not a scan of the users table.
        let plan: String = db
            .run(|conn| {
                Ok(conn.query_row(
                    "EXPLAIN QUERY PLAN SELECT id, doc FROM users WHERE invite_due IS NOT NULL AND invite_due <= 0 ORDER BY invite_due LIMIT 5",
                    [],
                    |r| r.get(3),
                )?)
            })
            .await
            .unwrap();
        assert!(plan.contains("users_invite_due"), "{plan}");
        // Cursors round-trip and are replaced.
        assert_eq!(db.load_cursor("c").await.unwrap(), None);
        db.save_cursor("c", "one").await.unwrap();
        db.save_cursor("c", "two").await.unwrap();
        assert_eq!(db.load_cursor("c").await.unwrap().as_deref(), Some("two"));
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn expired_rows_are_purged_by_index_not_by_scan() {
        let path = std::env::temp_dir().join(format!("scim-relay-p-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&path).unwrap();
        // Each history write's purge of expired rows finds them by index, never by a scan.
        for table in EXPIRING {
            let sql = format!("EXPLAIN QUERY PLAN {}", purge_sql(table));
            let steps: Vec<String> = db
                .run(move |conn| {
                    let mut stmt = conn.prepare(&sql)?;
                    let steps = stmt
                        .query_map(params![0, 1], |r| r.get(3))?
                        .collect::<Result<Vec<String>, _>>()?;
                    Ok(steps)
                })
                .await
                .unwrap();
            assert!(
                steps.iter().any(|s| s.contains("expiry")),
                "{table}: {steps:?}"
            );
            assert!(
                !steps
                    .iter()
                    .any(|s| s.starts_with(&format!("SCAN {table}"))),
                "{table}: {steps:?}"
            );
        }
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn one_account_is_claimed_by_one_user() {
        let path = std::env::temp_dir().join(format!("scim-relay-c-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&path).unwrap();
        let later = Utc::now() + chrono::Duration::hours(1);
        db.commit(&key(), Some(&state(1)), None, &event("c1", later))
            .await
            .unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), Some(key()));
        let twin = UserKey {
            user_id: "00uTWIN".into(),
            ..key()
        };
        assert!(matches!(
            db.commit(&twin, Some(&state(1)), None, &event("c2", later)).await,
            Err(StoreError::Claimed { ref owner, .. }) if *owner == key().storage_id()
        ));
        assert_eq!(db.load_user(&twin).await.unwrap(), None);
        assert!(!db.event_seen("c2", Utc::now()).await.unwrap());
        // The owner writes on.
        db.commit(&key(), Some(&state(2)), Some(1), &event("c3", later))
            .await
            .unwrap();
        // Only the owner gives a claim up.
        db.release_claim("s1", &twin).await.unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), Some(key()));
        db.release_claim("s1", &key()).await.unwrap();
        assert_eq!(db.claimant("s1").await.unwrap(), None);
    }
}
