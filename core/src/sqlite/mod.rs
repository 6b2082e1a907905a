//! The standalone server's embedded store: one SQLite file holds the durable queue, the
//! dead letters, the per-user state and the dedupe records.

mod delivery;
mod process;
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
CREATE TABLE IF NOT EXISTS history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user       TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    entry      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_user ON history (user, at);
CREATE INDEX IF NOT EXISTS history_expiry ON history (expires_at);
CREATE TABLE IF NOT EXISTS user_fingerprints (
    fingerprint TEXT    NOT NULL,
    user        TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, user)
);
";

/// Run after [`SCHEMA`], once the `invite_due` column exists in older files too: only pending
/// invitations are in the index, so the sweeper's query never reads the whole table.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS users_invite_due ON users (invite_due) WHERE invite_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_expiry ON events (expires_at);
CREATE INDEX IF NOT EXISTS user_fingerprints_expiry ON user_fingerprints (expires_at);
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
    /// Set once this process registered as a worker ([`SqliteDb::register_worker`]).
    instance: Arc<std::sync::OnceLock<process::WorkerProcess>>,
}

impl std::fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteDb").finish_non_exhaustive()
    }
}

impl SqliteDb {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let path = path.as_ref();
        create_owner_only(path)?;
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
            instance: Arc::default(),
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

/// The file holds queued triggers, dead letters and every user's recorded state: it is created
/// readable by its owner only (0600 on unix), before SQLite opens it. SQLite gives its `-wal`
/// and `-shm` files the same mode as the database. A file that already exists keeps its mode
/// (an operator may have chosen it); a warning says when others can read it.
fn create_owner_only(path: &Path) -> Result<(), SqliteError> {
    // `:memory:` and empty paths are SQLite's own databases, not files.
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_others_can_read(path);
            Ok(())
        }
        Err(e) => Err(SqliteError(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn warn_if_others_can_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the database file is readable by other users; it holds queued events and user state (chmod 600)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_others_can_read(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_file_is_created_readable_by_its_owner_only() {
        use crate::queue::Queue;
        use std::os::unix::fs::PermissionsExt;
        let path =
            std::env::temp_dir().join(format!("scim-relay-mode-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&path).unwrap();
        // Write something, so the write-ahead log exists too.
        db.enqueue(&[crate::queue::QueueMessage {
            group_id: "g".into(),
            dedupe_id: "d".into(),
            body: "b".into(),
        }])
        .await
        .unwrap();
        let wal = path.with_extension("db-wal");
        for file in [&path, &wal] {
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
        }
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
