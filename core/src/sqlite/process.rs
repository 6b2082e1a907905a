//! Which process holds a claim. A standalone relay killed mid-work (`kill -9`, a crash, a reboot)
//! leaves its claimed messages hidden until their lease runs out (30 s). A relay restarting on
//! the same file need not wait: each worker process holds an exclusive lock on a file named by
//! its instance id for as long as it lives (the OS lets go of it when the process dies, however
//! it dies), and puts that id in every claim token. At start, a process releases the claims of
//! every instance whose lock it can take — a dead one — and leaves a live one's alone, so two
//! processes on one database stay safe.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use rusqlite::params;

use super::{SqliteDb, SqliteError};

/// This process's registration: its instance id, and the lock that says it is alive.
#[derive(Debug)]
pub(super) struct WorkerProcess {
    instance: String,
    /// Held, never read: the lock lives as long as the file is open.
    _alive: File,
}

/// Where the lock files of a database live: beside it.
fn lock_dir(database: &Path) -> PathBuf {
    let mut dir = database.as_os_str().to_owned();
    dir.push(".workers");
    PathBuf::from(dir)
}

fn lock_file(dir: &Path, instance: &str) -> PathBuf {
    dir.join(format!("{instance}.lock"))
}

/// The instance id a claim token names (`<instance>.<random>`), if it names one.
pub(super) fn claim_owner(claim: &str) -> Option<&str> {
    claim.split_once('.').map(|(instance, _)| instance)
}

impl SqliteDb {
    /// Registers this process as a worker of the database at `database` (once per handle): its
    /// claims name it from now on, and the claims of workers that died are released at once
    /// (they are visible again). Returns how many were released.
    pub async fn register_worker(&self, database: &Path) -> Result<usize, SqliteError> {
        if self.instance.get().is_some() {
            return Ok(0);
        }
        let dir = lock_dir(database);
        std::fs::create_dir_all(&dir)
            .map_err(|e| SqliteError(format!("cannot create {}: {e}", dir.display())))?;
        let instance = uuid::Uuid::new_v4().simple().to_string();
        let path = lock_file(&dir, &instance);
        let alive = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SqliteError(format!("cannot create {}: {e}", path.display())))?;
        alive
            .try_lock()
            .map_err(|e| SqliteError(format!("cannot lock {}: {e}", path.display())))?;
        let claims: Vec<String> = self
            .run(|conn| {
                let mut q =
                    conn.prepare("SELECT DISTINCT claim FROM queue WHERE claim IS NOT NULL")?;
                let rows = q.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        let mut owners: Vec<String> = claims
            .iter()
            .filter_map(|c| claim_owner(c))
            .filter(|owner| *owner != instance)
            .map(str::to_string)
            .collect();
        owners.sort();
        owners.dedup();
        let mut released = 0;
        for owner in owners {
            if !is_dead(&lock_file(&dir, &owner)) {
                continue;
            }
            let prefix = format!("{owner}.%");
            let now = chrono::Utc::now().timestamp_millis();
            released += self
                .run(move |conn| {
                    Ok(conn.execute(
                        "UPDATE queue SET claim = NULL, visible_at = MIN(visible_at, ?2)
                         WHERE claim LIKE ?1",
                        params![prefix, now],
                    )?)
                })
                .await?;
            let _ = std::fs::remove_file(lock_file(&dir, &owner));
        }
        let _ = self.instance.set(WorkerProcess {
            instance,
            _alive: alive,
        });
        Ok(released)
    }

    /// The claim token prefix of this process, when it registered as a worker.
    pub(super) fn claim_prefix(&self) -> Option<String> {
        self.instance.get().map(|p| p.instance.clone())
    }
}

/// Whether the worker that holds (held) this lock file is gone: its lock can be taken. A file
/// that is not there names no live worker either (it removed it, or it was released before).
fn is_dead(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return true;
    };
    match file.try_lock() {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        // Cannot tell: leave its claims to their lease.
        Err(TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_token_names_its_process() {
        assert_eq!(claim_owner("abc123.9f8e"), Some("abc123"));
        assert_eq!(claim_owner("9f8e7d"), None, "a token from before instances");
    }
}
