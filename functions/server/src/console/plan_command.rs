//! `scim-relay plan`: what converging would do to every user in scope, or (`--user`) to one
//! user step by step: a rehearsal of the worker's own path (read, plan, guards, breaker,
//! ownership rule, apply) whose writes go nowhere. Reads the directories, the relay's records
//! and the target's users; writes nothing anywhere (no target call but `GET`, no record, no
//! queue message).

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use clap::Args;
use scim_relay_core::clock::Clock;
use scim_relay_core::config::Settings;
use scim_relay_core::directory::{
    Directory, DirectoryRead, FeedError, Flow, ListedDirectoryUser, Listing, ListingSink, ReadEnd,
};
use scim_relay_core::envelope::Source;
use scim_relay_core::scim::list_all_users;
use scim_relay_core::state::UserKey;
use scim_relay_core::wiring::{self, Outbound};
use scim_relay_core::worker::{plan_report, PlanReport, TargetAccounts, UserPreview, Worker};

use crate::console::{Console, Output};

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// One user, by IdP user id or userName: each step of the decision, with its reason.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// `json` for scripts: the counts and one object per user.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs `plan …`, writing the report to `out`. An error is the message for stderr.
pub async fn run(
    console: &Console,
    settings: &Settings,
    args: PlanArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let outbound = console.outbound(settings)?;
    let worker = console.worker(settings, &outbound)?;
    let report = match &args.user {
        None => {
            let mut report = preview_all(console, settings, &outbound, &worker).await?;
            // The reasoning of every user would bury the plan; `--user` shows it.
            for line in &mut report.users {
                line.steps.clear();
            }
            report
        }
        Some(who) => preview_named(console, settings, &outbound, &worker, who).await?,
    };
    // A closed pipe (`| head`) ends the output, not the process.
    let _ = match (args.output, &args.user) {
        (Output::Json, _) => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        ),
        (Output::Text, None) => write!(out, "{}", report.render()),
        (Output::Text, Some(_)) => write!(out, "{}", report.render_steps()),
    };
    Ok(())
}

/// Every user the sweeper's full pass would re-check: each directory's full listing, and the
/// users the relay recorded as active that the listing no longer has. Then the target accounts
/// none of them explains.
pub(crate) async fn preview_all(
    console: &Console,
    settings: &Settings,
    outbound: &Outbound,
    worker: &Worker,
) -> Result<PlanReport, String> {
    let accounts = target_accounts(outbound).await?;
    let now = chrono::Utc::now();
    let mut notes = Vec::new();
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    let feeds = wiring::user_feeds(settings, outbound);
    if feeds.is_empty() {
        return Err(
            "no directory is configured (okta.api_token, entra.client_id): plan reads the \
             directory's users and has nothing to read"
                .into(),
        );
    }
    let mut listings = std::collections::HashMap::new();
    let progress = Progress::on_terminal();
    for (source, tenant, feed) in feeds {
        let mut sink = PlanListing {
            listed: Vec::new(),
            asked_at: console.clock.now(),
            clock: console.clock.clone(),
            progress,
        };
        match feed.read_changes(None, None, now, &mut sink).await {
            Ok(ReadEnd::Done { .. }) => {}
            Ok(ReadEnd::Paused { .. }) => {
                return Err(format!("the {source} directory's listing stopped part-way"))
            }
            Err(e) => return Err(format!("cannot list the {source} directory's users: {e}")),
        }
        let recorded = console
            .store
            .active_user_ids(source, &tenant)
            .await
            .map_err(|e| e.to_string())?;
        notes.push(format!(
            "{source} ({tenant}): {} directory users listed, {} recorded as active",
            sink.listed.len(),
            recorded.len()
        ));
        if sink.listed.is_empty() {
            // The sweeper refuses an empty full read; the plan still re-reads each recorded
            // user one by one, as the worker would.
            notes.push(format!(
                "{source}: the directory listing returned no users (a broken read, or no users \
                 in this directory)"
            ));
        }
        let listed_ids = sink.listed.into_iter().map(|(listing, read_at)| {
            let whole = listing.user.map(|user| ListedDirectoryUser {
                user: *user,
                read_at,
            });
            (listing.id, whole)
        });
        for (user_id, whole) in listed_ids.chain(recorded.into_iter().map(|id| (id, None))) {
            let key = UserKey {
                source,
                tenant: tenant.clone(),
                user_id,
            };
            if seen.insert(key.storage_id()) {
                if let Some(whole) = whole {
                    listings.insert(key.storage_id(), whole);
                }
                keys.push(key);
            }
        }
    }
    notes.push(format!("target: {} accounts listed", accounts.len()));
    // One rehearsal for the whole plan: what one user's would write (an account, a claim, a
    // slot of the breaker's window), the next one meets.
    let rehearsal = worker.rehearsal(accounts.clone(), now);
    let mut lines = Vec::with_capacity(keys.len());
    for (done, key) in keys.iter().enumerate() {
        let listed = listings.remove(&key.storage_id());
        lines.push(rehearsal.preview_listed(key, listed).await);
        progress.show(|| format!("planned {} of {} users", done + 1, keys.len()));
    }
    progress.done();
    Ok(plan_report(lines, &accounts, &spared(settings), notes))
}

/// What a plan's listing keeps: every user listed, whole where the listing gave them, with the
/// time before their page was asked for (as the sweeper's pass stamps it).
struct PlanListing {
    listed: Vec<(Listing, chrono::DateTime<chrono::Utc>)>,
    asked_at: chrono::DateTime<chrono::Utc>,
    clock: Arc<dyn Clock>,
    progress: Progress,
}

#[async_trait::async_trait]
impl ListingSink for PlanListing {
    async fn page(&mut self, page: Vec<Listing>) -> Result<Flow, FeedError> {
        let read_at = self.asked_at;
        self.listed
            .extend(page.into_iter().map(|listing| (listing, read_at)));
        let listed = self.listed.len();
        self.progress
            .show(|| format!("listed {listed} directory users"));
        self.asked_at = self.clock.now();
        Ok(Flow::More)
    }
}

/// A line of progress on the operator's terminal (standard error, rewritten in place): a
/// plan over 100,000 users takes minutes at the IdP's rate limit. Nothing when standard error
/// is not a terminal (a script, a pipe).
#[derive(Debug, Clone, Copy)]
struct Progress {
    on: bool,
}

impl Progress {
    fn on_terminal() -> Self {
        use std::io::IsTerminal;
        Self {
            on: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, line: impl FnOnce() -> String) {
        if self.on {
            eprint!("\r\x1b[2K{}", line());
        }
    }

    fn done(&self) {
        if self.on {
            eprint!("\r\x1b[2K");
        }
    }
}

/// One user's lines, with their steps: found by id or userName in the directory directly when
/// it answers to it (Okta takes a login, Graph a userPrincipalName), else picked from the full
/// plan (a userName the mapping makes, a recorded user the directory no longer has, a target
/// account).
async fn preview_named(
    console: &Console,
    settings: &Settings,
    outbound: &Outbound,
    worker: &Worker,
    who: &str,
) -> Result<PlanReport, String> {
    let keys = read_directly(settings, outbound, who).await;
    let report = if keys.is_empty() {
        preview_all(console, settings, outbound, worker).await?
    } else {
        let rehearsal = worker.rehearsal(target_accounts(outbound).await?, chrono::Utc::now());
        let mut lines = Vec::new();
        for key in &keys {
            lines.push(rehearsal.preview(key).await);
        }
        PlanReport {
            users: lines,
            notes: vec![
                "one user: other directory users sharing its userName are found by the full plan"
                    .into(),
            ],
            ..PlanReport::default()
        }
    };
    let lines: Vec<UserPreview> = report
        .users
        .into_iter()
        .filter(|line| {
            line.is_named(who) || keys.iter().any(|k| line.user_id == Some(k.user_id.clone()))
        })
        .collect();
    if lines.is_empty() {
        return Err(format!(
            "no directory user, record or target account matches {who}"
        ));
    }
    Ok(plan_report_of(lines, report.notes))
}

/// The chosen lines, with their own counts.
fn plan_report_of(lines: Vec<UserPreview>, notes: Vec<String>) -> PlanReport {
    plan_report(lines, &TargetAccounts::default(), &[], notes)
}

/// The users `who` names in each configured directory, read as the worker reads them.
pub(crate) async fn read_directly(
    settings: &Settings,
    outbound: &Outbound,
    who: &str,
) -> Vec<UserKey> {
    let mut directories: Vec<(Source, String, Arc<dyn Directory>)> = Vec::new();
    if let Some(okta) = &outbound.okta {
        directories.push((Source::Okta, settings.okta_tenant(), okta.clone()));
    }
    if let Some(entra) = &outbound.entra {
        directories.push((Source::Entra, settings.entra_tenant(), entra.clone()));
    }
    let mut keys = Vec::new();
    for (source, tenant, directory) in directories {
        // A failed read is no answer: the full plan (or its error) decides.
        if let Ok(DirectoryRead::Found(user)) = directory.read_user(who.trim()).await {
            keys.push(UserKey {
                source,
                tenant,
                user_id: user.id,
            });
        }
    }
    keys
}

async fn target_accounts(outbound: &Outbound) -> Result<TargetAccounts, String> {
    list_all_users(outbound.target.as_ref())
        .await
        .map(TargetAccounts::new)
        .map_err(|e| format!("cannot list the target's users: {e}"))
}

/// Accounts no path touches: the credential's owner and `target.protected_users`.
fn spared(settings: &Settings) -> Vec<String> {
    settings
        .target
        .credential_owner
        .iter()
        .chain(&settings.target.protected_users)
        .cloned()
        .collect()
}
