//! The standalone scim-relay: the same ingress and worker as the Lambdas, in one process, on an
//! embedded SQLite file (durable queue, dead letters, state).

pub mod console;
mod http;
pub mod logging;
mod prometheus;
pub mod setup;
mod sweep_loop;
mod worker_loop;

use std::net::SocketAddr;
use std::sync::Arc;

use scim_relay_core::claim_loop;
use scim_relay_core::clock::{Clock, SystemClock};
use scim_relay_core::config::{ConfigError, Settings};
use scim_relay_core::ingress::Ingress;
use scim_relay_core::sqlite::SqliteDb;
use scim_relay_core::sweeper::{SweepReport, Sweeper};
use scim_relay_core::wiring;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use worker_loop::{CredentialHealth, RetryPolicy, WorkerCounts};

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
    health_tx: Arc<watch::Sender<CredentialHealth>>,
    sweeper: Arc<Sweeper>,
    wake: Arc<tokio::sync::Notify>,
    stats: Arc<worker_loop::WorkerStats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningRelay {
    /// Asks every part to stop and waits for them: in-flight work finishes first.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Stops at once, dropping whatever is in flight, as a crash would (tests): claimed
    /// messages come back when their lease runs out.
    pub async fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// What the workers did since this relay started.
    pub fn worker_counts(&self) -> WorkerCounts {
        self.stats.snapshot()
    }

    /// Whether the target accepted the relay's credential, as last seen by the worker.
    pub fn credential_health(&self) -> CredentialHealth {
        *self.health.borrow()
    }

    /// Runs the sweeper once now (besides its schedule), and returns what it did.
    pub async fn sweep(&self) -> SweepReport {
        self.sweep_until(None).await
    }

    /// One sweep that must end by `deadline`: a directory pass still listing near it pauses,
    /// and the next sweep goes on with it.
    pub async fn sweep_until(&self, deadline: Option<std::time::Instant>) -> SweepReport {
        let report = self.sweeper.run_until(deadline).await;
        sweep_loop::apply(&report, &self.health_tx, &self.wake);
        report
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

/// Checks the settings, opens the database, binds the listener and starts ingress, the worker
/// and the sweeper.
pub async fn start(settings: Settings, retry: RetryPolicy) -> Result<RunningRelay, StartError> {
    start_with_clock(settings, retry, Arc::new(SystemClock)).await
}

/// [`start`] on a given clock (tests move it to expire invitations and subscriptions).
pub async fn start_with_clock(
    settings: Settings,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
) -> Result<RunningRelay, StartError> {
    settings.check_ingress()?;
    let db = SqliteDb::open(&settings.database).map_err(|e| StartError::Database {
        path: settings.database.clone(),
        reason: e.0,
    })?;
    // Claims a process killed mid-work left behind are released now, not when their lease
    // runs out; a live process's are left alone.
    let released = db
        .register_worker(std::path::Path::new(&settings.database))
        .await
        .map_err(|e| StartError::Database {
            path: settings.database.clone(),
            reason: e.0,
        })?;
    if released > 0 {
        tracing::info!(
            released,
            "released the claims of a worker process that is gone (killed or crashed)"
        );
    }
    let engine = wiring::engine(
        &settings,
        &wiring::outbound(&settings)?,
        Arc::new(db.clone()),
        Arc::new(db.clone()),
        clock.clone(),
        retry.consumer(),
    )?;
    let (consumer, sweeper) = (Arc::new(engine.consumer), engine.sweeper);
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
    let health_tx = Arc::new(health_tx);
    let stats = Arc::new(worker_loop::WorkerStats::default());
    let server = tokio::spawn(http::serve(
        listener,
        http::AppState {
            ingress: Arc::new(ingress),
            db: db.clone(),
            wake: wake.clone(),
            health: health.clone(),
            stats: stats.clone(),
            read_timeout: http::REQUEST_READ_TIMEOUT,
        },
        stopped.clone(),
    ));
    let mut tasks = vec![server];
    for _ in 0..settings.queue.workers.max(1) {
        let (stats, health) = (stats.clone(), health_tx.clone());
        tasks.push(tokio::spawn(claim_loop::run(
            consumer.clone(),
            Arc::new(db.clone()),
            retry.timing(),
            wake.clone(),
            stopped.clone(),
            move |consumed| match worker_loop::record(consumed, &stats) {
                Some(CredentialHealth::Rejected) => {
                    health.send_replace(CredentialHealth::Rejected);
                }
                Some(CredentialHealth::Accepted) => {
                    health.send_if_modified(|h| {
                        let changed = *h != CredentialHealth::Accepted;
                        *h = CredentialHealth::Accepted;
                        changed
                    });
                }
                _ => {}
            },
        )));
    }
    if let Some(interval) = settings.sweep.interval {
        tasks.push(tokio::spawn(sweep_loop::run(
            sweeper.clone(),
            interval,
            health_tx.clone(),
            wake.clone(),
            stopped,
        )));
    }
    tracing::info!(%addr, database = %settings.database, profile = ?settings.target.profile, "scim-relay listening");
    Ok(RunningRelay {
        addr,
        db,
        health,
        health_tx,
        sweeper,
        wake,
        stats,
        stop,
        tasks,
    })
}
