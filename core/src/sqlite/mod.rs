//! The standalone server's embedded store: one SQLite file holds the durable queue, the
//! dead letters, the per-user state and the dedupe records.

mod delivery;
mod queue;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

pub use queue::QueuedMessage;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id    TEXT    NOT NULL,
    dedupe_id   TEXT    NOT NULL UNIQUE,
    body        TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    visible_at  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    last_error  TEXT,
    claim       TEXT
);
CREATE INDEX IF NOT EXISTS queue_group ON queue (group_id, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id  TEXT    NOT NULL,
    dedupe_id TEXT    NOT NULL,
    body      TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    attempts  INTEGER NOT NULL,
    failed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id         TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    doc        TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    invite_due INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    key        TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    name    TEXT PRIMARY KEY,
    scim_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    scim_id TEXT PRIMARY KEY,
    owner   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    name    TEXT    PRIMARY KEY,
    value   TEXT    NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Run after [`SCHEMA`], once the `invite_due` column exists in older files too: only pending
/// invitations are in the index, so the sweeper's query never reads the whole table.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS users_invite_due ON users (invite_due) WHERE invite_due IS NOT NULL;
";

#[derive(Debug, thiserror::Error)]
#[error("sqlite: {0}")]
pub struct SqliteError(pub String);

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        SqliteError(e.to_string())
    }
}

/// A handle on the database file, shared by ingress, worker and state (cheap to clone).
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb").finish_non_exhaustive()
    }
}

impl SqliteDb {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let conn = Connection::open(path)?;
        // WAL keeps readers off the writer's back; synchronous=FULL makes every accepted
        // event survive a crash of the process or the machine once its commit returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Files written before invitations were swept lack the column.
        let has_invite_due = conn
            .prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'invite_due'")?
            .exists([])?;
        if !has_invite_due {
            // Invitations pending before the upgrade join the index too.
            conn.execute_batch(
                "ALTER TABLE users ADD COLUMN invite_due INTEGER;
                 UPDATE users SET invite_due =
                     CAST(strftime('%s', json_extract(doc, '$.invite.expires_at')) AS INTEGER)
                 WHERE json_extract(doc, '$.invite.expires_at') IS NOT NULL
                   AND json_extract(doc, '$.invite.outcome') IS NULL;",
            )?;
        }
        let has_claim = conn
            .prepare("SELECT 1 FROM pragma_table_info('queue') WHERE name = 'claim'")?
            .exists([])?;
        if !has_claim {
            conn.execute_batch("ALTER TABLE queue ADD COLUMN claim TEXT")?;
        }
        conn.execute_batch(INDEXES)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs blocking SQLite work off the async runtime's threads.
    async fn run<T, F>(&self, f: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| SqliteError("connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| SqliteError(format!("blocking task failed: {e}")))?
    }
}
