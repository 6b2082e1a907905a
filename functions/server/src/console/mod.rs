//! The operator's console: the commands (`held`, `history`, `status`, `plan`, `sync`, one
//! `*_command.rs` each) and where they act: the standalone SQLite file, or
//! (built with `--features aws`, `--aws`) a Lambda deployment's table and queue with the
//! operator's own AWS credentials. In the library, so the behaviour suite runs the very
//! commands on every backend.

pub mod held_command;
pub mod history_command;
pub mod plan_command;
pub mod status_command;
pub mod sync_command;

use std::io::Write;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use scim_relay_core::breaker::CredentialBreaker;
use scim_relay_core::config::Settings;
use scim_relay_core::queue::{Queue, QueueMonitor};
use scim_relay_core::scim::ScimTarget;
use scim_relay_core::state::{StateStore, SweepStore};
use scim_relay_core::wiring;

use held_command::HeldArgs;
use history_command::HistoryArgs;
use plan_command::PlanArgs;
use status_command::StatusArgs;
use sync_command::SyncArgs;

/// How a command prints what a script would read.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// The commands that read or steer a deployment (as opposed to running one).
#[derive(Subcommand, Debug)]
pub enum ConsoleCommand {
    /// Deactivations and deletes the deprovisioning breaker holds: list, approve, reject.
    Held(HeldArgs),
    /// One user's timeline (every trigger finished for them) and the record the relay keeps.
    History(HistoryArgs),
    /// The deployment at a glance: queue, dead letters by reason, the credential breaker, the
    /// sweeper's last run, Graph subscriptions, invitations, held deprovisions.
    Status(StatusArgs),
    /// Preview what converging would do to every user in scope (adopt, create, update,
    /// deactivate, conflicts, protected accounts), writing nothing anywhere.
    Plan(PlanArgs),
    /// Apply one user now, through the worker, and print what was done.
    Sync(SyncArgs),
}

/// A console command on its own (the words after `scim-relay`), as the suite gives it.
#[derive(Parser, Debug)]
#[command(name = "scim-relay")]
struct ConsoleLine {
    #[command(subcommand)]
    command: ConsoleCommand,
}

/// Parses the words after `scim-relay` (`held approve jane@example.com`).
pub fn parse(words: &[&str]) -> Result<ConsoleCommand, clap::Error> {
    let words = std::iter::once("scim-relay").chain(words.iter().copied());
    ConsoleLine::try_parse_from(words).map(|line| line.command)
}

/// Runs a console command against `console`, writing what an operator reads to `out`. An
/// error is the message for stderr (exit status 1). A closed pipe (`| head`) ends the output,
/// not the process.
pub async fn run(
    console: &Console,
    settings: &Settings,
    command: ConsoleCommand,
    out: &mut dyn Write,
) -> Result<(), String> {
    match command {
        ConsoleCommand::Held(args) => held_command::run(console, settings, args, out).await,
        ConsoleCommand::History(args) => history_command::run(console, settings, args, out).await,
        ConsoleCommand::Status(args) => status_command::run(console, settings, args, out).await,
        ConsoleCommand::Plan(args) => plan_command::run(console, settings, args, out).await,
        ConsoleCommand::Sync(args) => sync_command::run(console, settings, args, out).await,
    }
}

/// Where a console command reads and acts: the deployment's state store and work queue, and
/// the directories and target its settings name.
pub struct Console {
    pub store: Arc<dyn SweepStore>,
    /// The same store, as a worker takes it (`sync`).
    pub worker_store: Arc<dyn StateStore>,
    /// The target-credential breaker (kept in the state store on every backend).
    pub breaker: Arc<dyn CredentialBreaker>,
    pub queue: Arc<dyn Queue>,
    /// The work queue's figures and the dead letters, read without taking anything.
    pub queue_monitor: Arc<dyn QueueMonitor>,
    /// A SCIM target to use instead of the one the settings name (the suite's in-memory
    /// provider, which no URL reaches).
    pub target: Option<Arc<dyn ScimTarget>>,
    /// The deployment's time (the system's; a test's deployment runs on its own).
    pub clock: Arc<dyn scim_relay_core::clock::Clock>,
}

impl Console {
    pub fn new<S: SweepStore + CredentialBreaker + 'static>(
        store: Arc<S>,
        queue: Arc<dyn Queue>,
        queue_monitor: Arc<dyn QueueMonitor>,
    ) -> Self {
        Self {
            store: store.clone(),
            worker_store: store.clone(),
            breaker: store,
            queue,
            queue_monitor,
            target: None,
            clock: Arc::new(scim_relay_core::clock::SystemClock),
        }
    }

    /// The console on a deployment's own clock (a test's, moved by hand).
    pub fn with_clock(mut self, clock: Arc<dyn scim_relay_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_target(mut self, target: Arc<dyn ScimTarget>) -> Self {
        self.target = Some(target);
        self
    }

    /// The directories and the target, as the worker builds them from the settings.
    pub fn outbound(&self, settings: &Settings) -> Result<wiring::Outbound, String> {
        let mut outbound = wiring::outbound(settings).map_err(|e| e.to_string())?;
        if let Some(target) = &self.target {
            outbound.target = target.clone();
        }
        Ok(outbound)
    }

    /// The worker the running relay has, on this console's store and `outbound`: what `plan`
    /// rehearses and `sync` runs, so both decide as the relay does.
    pub fn worker(
        &self,
        settings: &Settings,
        outbound: &wiring::Outbound,
    ) -> Result<scim_relay_core::worker::Worker, String> {
        wiring::worker(
            settings,
            outbound,
            self.worker_store.clone(),
            self.clock.clone(),
        )
        .map_err(|e| e.to_string())
    }

    /// The standalone deployment's file; it must exist (a mistyped path is not a new, empty
    /// relay).
    pub fn sqlite(settings: &Settings) -> Result<Self, String> {
        if !std::path::Path::new(&settings.database).exists() {
            return Err(format!(
                "no database at {} (set `database` as the server has it)",
                settings.database
            ));
        }
        let db = scim_relay_core::sqlite::SqliteDb::open(&settings.database)
            .map_err(|e| format!("cannot open {}: {e}", settings.database))?;
        Ok(Self::new(
            Arc::new(db.clone()),
            Arc::new(db.clone()),
            Arc::new(db),
        ))
    }

    /// A Lambda deployment's table and queue, with the caller's AWS credentials. Secrets given
    /// as ARNs (the queue signing key) are read with them too.
    #[cfg(feature = "aws")]
    pub async fn aws(settings: &mut Settings) -> Result<Self, String> {
        use scim_relay_core::config::required;
        let sdk = scim_relay_core::aws::sdk_config().await;
        scim_relay_core::aws::resolve_secrets(settings, &sdk)
            .await
            .map_err(|e| e.to_string())?;
        // Fingerprints (history by email, sync) are keyed with the secret, never its ARN.
        scim_relay_core::pii::set_fingerprint_key(&settings.queue.signing_key);
        use scim_relay_core::aws::sqs_queue::{SqsQueue, SqsQueueMonitor};
        let table = required(&settings.store.table, "store.table").map_err(|e| e.to_string())?;
        let url = required(&settings.queue.url, "queue.url").map_err(|e| e.to_string())?;
        let store = scim_relay_core::aws::dynamodb_store::DynamoStateStore::new(
            scim_relay_core::aws::dynamodb::Client::new(&sdk),
            table.to_string(),
        );
        let sqs = scim_relay_core::aws::sqs::Client::new(&sdk);
        let work = SqsQueue::new(sqs.clone(), url.to_string());
        // `held` needs no dead-letter queue: without `queue.dlq_url` only `status`'s dead
        // letters are unreadable.
        let dead_letters = settings
            .queue
            .dlq_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|u| SqsQueue::new(sqs, u.to_string()));
        Ok(Self::new(
            Arc::new(store),
            Arc::new(work.clone()),
            Arc::new(SqsQueueMonitor { work, dead_letters }),
        ))
    }

    #[cfg(not(feature = "aws"))]
    pub async fn aws(_: &mut Settings) -> Result<Self, String> {
        Err("this scim-relay was built without AWS support: cargo install --features aws".into())
    }
}
