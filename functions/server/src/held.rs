//! `scim-relay held`: the operator's side of the deprovisioning breaker, on the standalone
//! SQLite file or (built with `--features aws`, `--aws`) a Lambda deployment's table and queue.
//! In the library, so the behaviour suite runs the very command on every backend.

use std::io::Write;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use scim_relay_core::config::Settings;
use scim_relay_core::deprovision::{
    decide, held_json, held_users, render_held, Decision, HoldState,
};
use scim_relay_core::envelope::EnvelopeSigner;
use scim_relay_core::queue::Queue;
use scim_relay_core::state::SweepStore;

#[derive(Args, Debug)]
pub struct HeldArgs {
    /// Act on a Lambda deployment (DynamoDB and SQS named by store.table and queue.url, with
    /// your own AWS credentials) instead of the standalone SQLite file.
    #[arg(long, global = true)]
    pub aws: bool,
    #[command(subcommand)]
    action: Option<HeldAction>,
}

#[derive(Subcommand, Debug)]
enum HeldAction {
    /// List held deprovisions, oldest first (the default).
    List {
        /// `json` for scripts: one object per held user.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Apply held deprovisions: each user is re-read from the directory and deactivated (or
    /// deleted) only if the directory still asks for it.
    Approve(Choice),
    /// Leave the accounts as they are, until the directory shows the user active again.
    Reject(Choice),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct Choice {
    /// Users, by IdP user id or userName.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    users: Vec<String>,
    /// Every pending hold.
    #[arg(long)]
    all: bool,
}

/// `held …` on its own, as the suite gives it.
#[derive(Parser, Debug)]
#[command(name = "held")]
struct HeldLine {
    #[command(flatten)]
    args: HeldArgs,
}

/// Parses the words after `scim-relay` (`held approve jane@example.com`).
pub fn parse(words: &[&str]) -> Result<HeldArgs, clap::Error> {
    HeldLine::try_parse_from(words).map(|line| line.args)
}

/// Where the command reads holds and enqueues approvals.
pub struct Console {
    pub store: Arc<dyn SweepStore>,
    pub queue: Arc<dyn Queue>,
}

impl Console {
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
        Ok(Self {
            store: Arc::new(db.clone()),
            queue: Arc::new(db),
        })
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
        let table = required(&settings.store.table, "store.table").map_err(|e| e.to_string())?;
        let url = required(&settings.queue.url, "queue.url").map_err(|e| e.to_string())?;
        Ok(Self {
            store: Arc::new(scim_relay_core::state::dynamodb::DynamoStateStore::new(
                scim_relay_core::aws::dynamodb::Client::new(&sdk),
                table.to_string(),
            )),
            queue: Arc::new(scim_relay_core::queue::sqs::SqsQueue::new(
                scim_relay_core::aws::sqs::Client::new(&sdk),
                url.to_string(),
            )),
        })
    }

    #[cfg(not(feature = "aws"))]
    pub async fn aws(_: &mut Settings) -> Result<Self, String> {
        Err("this scim-relay was built without AWS support: cargo install --features aws".into())
    }
}

/// Runs `held …` against `console`, writing what an operator reads to `out`. An error is the
/// message for stderr (exit status 1).
pub async fn run(
    console: &Console,
    settings: &Settings,
    args: HeldArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let held = held_users(console.store.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    // A closed pipe (`| head`) ends the output, not the process with a panic.
    let listing = HeldAction::List {
        output: Output::Text,
    };
    let (choice, decision) = match args.action.unwrap_or(listing) {
        HeldAction::List {
            output: Output::Text,
        } => {
            let _ = write!(out, "{}", render_held(&held));
            return Ok(());
        }
        HeldAction::List {
            output: Output::Json,
        } => {
            let _ = writeln!(out, "{}", held_json(&held));
            return Ok(());
        }
        HeldAction::Approve(c) => (c, Decision::Approve),
        HeldAction::Reject(c) => (c, Decision::Reject),
    };
    let mut chosen = Vec::new();
    if choice.all {
        chosen.extend(held.iter().filter(|h| h.hold.state == HoldState::Pending));
    }
    for who in &choice.users {
        let named: Vec<_> = held.iter().filter(|h| h.is_named(who)).collect();
        match named.as_slice() {
            [one] => chosen.push(*one),
            [] => return Err(format!("no held deprovision for {who}")),
            _ => {
                return Err(format!(
                    "{who} names {} held users; use the IdP user id",
                    named.len()
                ))
            }
        }
    }
    let signer = EnvelopeSigner::from_settings(settings);
    let now = chrono::Utc::now();
    let mut failures = 0;
    for h in chosen {
        let decided = decide(
            console.store.as_ref(),
            console.queue.as_ref(),
            &signer,
            now,
            &h.key,
            decision,
        )
        .await;
        let line = match decided {
            Ok(state) => format!("{} {}: {}", h.user_name, h.key.user_id, state.name()),
            Err(e) => {
                failures += 1;
                format!("{} {}: error: {e}", h.user_name, h.key.user_id)
            }
        };
        let _ = writeln!(out, "{line}");
    }
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} decisions failed")),
    }
}
