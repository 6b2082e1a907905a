//! `scim-relay plan`: what converging would do to every user in scope, or (`--user`) to one
//! user step by step: a rehearsal of the worker's own path (read, plan, guards, breaker,
//! ownership rule, apply) whose writes go nowhere. Reads the directories, the relay's records
//! and the target's users; writes nothing anywhere (no target call but `GET`, no record, no
//! queue message).

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use clap::Args;
use scim_relay_core::config::Settings;
use scim_relay_core::directory::{Directory, DirectoryRead};
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
    for (source, tenant, feed) in feeds {
        let listed = feed
            .changes_since(None, now)
            .await
            .map_err(|e| format!("cannot list the {source} directory's users: {e}"))?;
        let recorded = console
            .store
            .active_user_ids(source, &tenant)
            .await
            .map_err(|e| e.to_string())?;
        notes.push(format!(
            "{source} ({tenant}): {} directory users listed, {} recorded as active",
            listed.user_ids.len(),
            recorded.len()
        ));
        if listed.user_ids.is_empty() {
            // The sweeper refuses an empty full read; the plan still re-reads each recorded
            // user one by one, as the worker would.
            notes.push(format!(
                "{source}: the directory listing returned no users (a broken read, or no users \
                 in this directory)"
            ));
        }
        for user_id in listed.user_ids.into_iter().chain(recorded) {
            let key = UserKey {
                source,
                tenant: tenant.clone(),
                user_id,
            };
            if seen.insert(key.storage_id()) {
                keys.push(key);
            }
        }
    }
    notes.push(format!("target: {} accounts listed", accounts.len()));
    // One rehearsal for the whole plan: what one user's would write (an account, a claim, a
    // slot of the breaker's window), the next one meets.
    let rehearsal = worker.rehearsal(accounts.clone(), now);
    let mut lines = Vec::with_capacity(keys.len());
    for key in &keys {
        lines.push(rehearsal.preview(key).await);
    }
    Ok(plan_report(lines, &accounts, &spared(settings), notes))
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
