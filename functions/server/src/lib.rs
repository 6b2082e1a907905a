//! The standalone scim-relay: the same ingress and worker as the Lambdas, in one process, on an
//! embedded SQLite file (durable queue, dead letters, state).

mod http;
mod worker_loop;

use std::net::SocketAddr;
use std::sync::Arc;

use scim_relay::clock::SystemClock;
use scim_relay::config::{ConfigError, Settings};
use scim_relay::ingress::Ingress;
use scim_relay::sqlite::SqliteDb;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use worker_loop::{CredentialHealth, RetryPolicy};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open database {path}: {reason}")]
    Database { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

/// A running relay: HTTP ingress and the worker loop, stopped by [`RunningRelay::stop`].
pub struct RunningRelay {
    pub addr: SocketAddr,
    pub db: SqliteDb,
    health: watch::Receiver<CredentialHealth>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningRelay {
    /// Asks both halves to stop and waits for them: in-flight work finishes first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Whether the target accepted the relay's credential, as last seen by the worker.
    pub fn credential_health(&self) -> CredentialHealth {
        *self.health.borrow()
    }

    /// Waits until the queue is empty (tests, and `scim-relay drain`), up to `timeout`.
    pub async fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.db.depth().await, Ok((0, _))) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }
}

/// Checks the settings, opens the database, binds the listener and starts both halves.
pub async fn start(settings: Settings, retry: RetryPolicy) -> Result<RunningRelay, StartError> {
    settings.check_ingress()?;
    let db = SqliteDb::open(&settings.database).map_err(|e| StartError::Database {
        path: settings.database.clone(),
        reason: e.0,
    })?;
    let clock = Arc::new(SystemClock);
    let worker = scim_relay::wiring::build_worker(&settings, Arc::new(db.clone()), clock.clone())?;
    let ingress = Ingress::from_settings(&settings, Arc::new(db.clone()), clock);
    let listener = TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| StartError::Listen {
            addr: settings.listen.clone(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| StartError::Listen {
        addr: settings.listen.clone(),
        reason: e.to_string(),
    })?;
    let (stop, stopped) = watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());
    let (health_tx, health) = watch::channel(CredentialHealth::Unknown);
    let server = tokio::spawn(http::serve(
        listener,
        http::AppState {
            ingress: Arc::new(ingress),
            db: db.clone(),
            wake: wake.clone(),
            health: health.clone(),
        },
        stopped.clone(),
    ));
    let work = tokio::spawn(worker_loop::run(
        worker,
        db.clone(),
        retry,
        wake,
        health_tx,
        stopped,
    ));
    tracing::info!(%addr, database = %settings.database, profile = ?settings.target.profile, "scim-relay listening");
    Ok(RunningRelay {
        addr,
        db,
        health,
        stop,
        tasks: vec![server, work],
    })
}
