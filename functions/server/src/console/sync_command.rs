//! `scim-relay sync --user X`: one user applied now, through the normal worker path — a signed
//! trigger for the user, opened and worked by a worker built from the settings, exactly as the
//! queue's consumer would (directory re-read, plan, guards, breaker, conditional record) — and
//! what it did: the plan, the SCIM calls (methods, paths and attribute names, never values),
//! the outcome.

use std::io::Write;
use std::sync::Arc;

use clap::Args;
use scim_relay_core::config::Settings;
use scim_relay_core::envelope::{EnvelopeSigner, Trigger};
use scim_relay_core::history::{render_entry, Finish, HistoryEntry};
use scim_relay_core::scim::{list_all_users, RecordingTarget};
use scim_relay_core::state::UserKey;
use scim_relay_core::wiring;
use scim_relay_core::work::{Outcome, WorkError};
use scim_relay_core::worker::{TargetAccounts, UserPreview};
use serde_json::json;

use crate::console::{Console, Output};

/// The event type of a sync's trigger (in the worker's log line and the dedupe record).
pub const SYNC_EVENT: &str = "scim-relay.sync";

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The user, by IdP user id or userName.
    #[arg(long, value_name = "USER")]
    user: String,
    /// `json` for scripts.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub async fn run(
    console: &Console,
    settings: &Settings,
    args: SyncArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let mut outbound = console.outbound(settings)?;
    let worker = console.worker(settings, &outbound)?;
    let key = resolve(console, settings, &outbound, &worker, &args.user).await?;
    // What the worker is about to decide, read first (the plan's line for this user).
    let accounts = list_all_users(outbound.target.as_ref())
        .await
        .map(TargetAccounts::new)
        .map_err(|e| format!("cannot list the target's users: {e}"))?;
    let now = console.clock.now();
    let planned = worker.rehearsal(accounts, now).preview(&key).await;
    // The worker that applies it records its SCIM calls for the report.
    let recorder = Arc::new(RecordingTarget::new(outbound.target.clone()));
    outbound.target = recorder.clone();
    let worker = console.worker(settings, &outbound)?;
    let trigger = Trigger::for_user(
        &key,
        SYNC_EVENT,
        // Unique per run: a sync is never skipped as an event already applied.
        format!("sync-{}-{:016x}", now.timestamp_millis(), fastrand::u64(..)),
        now,
    );
    let message = EnvelopeSigner::from_settings(settings).seal(&trigger);
    let mut trace = scim_relay_core::history::Trace::default();
    let result = worker.process_traced(&message.body, &mut trace).await;
    // Work that must wait (a hard delete's confirming read, an outage) goes on the queue, as
    // the worker's own would: the queue's worker finishes it when it is due.
    let waiting = match &result {
        Err(WorkError::Retryable {
            reason,
            retry_after,
        }) => Some(match retry_after {
            Some(wait) => format!(
                "{reason}; queued, due in about {} min",
                wait.as_secs().div_ceil(60).max(1)
            ),
            None => format!("{reason}; queued"),
        }),
        Err(
            WorkError::DirectoryUnavailable(reason) | WorkError::DirectoryThrottled { reason, .. },
        ) => Some(format!("{reason}; queued")),
        _ => None,
    };
    let queued = match &waiting {
        Some(_) => console
            .queue
            .enqueue(std::slice::from_ref(&message))
            .await
            .map_err(|e| format!("could not queue the rest of the work: {e}")),
        None => Ok(()),
    };
    // Finished like any trigger: the log line and the user's history entry, which is printed.
    let (finish, reason) = match (&result, waiting, queued) {
        (Ok(o), _, _) => (Finish::of(o), None),
        (_, Some(why), Ok(())) => (Finish::Queued, Some(why)),
        (Err(e), _, Err(unqueued)) => (Finish::Failed, Some(format!("{e}; {unqueued}"))),
        (Err(e), _, Ok(())) => (Finish::Failed, Some(e.to_string())),
    };
    let entry = Some(worker.finished(&trace, finish, reason.as_deref()).await);
    let calls: Vec<String> = recorder
        .log()
        .since(0)
        .iter()
        .map(ToString::to_string)
        .collect();
    let outcome = finish.name();
    let error = reason.filter(|_| finish == Finish::Failed);
    let scim_calls = match &result {
        Ok(Outcome::Applied { scim_calls } | Outcome::Unchanged { scim_calls }) => *scim_calls,
        _ => calls.len() as u32,
    };
    let _ = match args.output {
        Output::Json => writeln!(
            out,
            "{}",
            json!({
                "user": key.storage_id(),
                "user_name": planned.user_name,
                "plan": planned,
                "scim_calls": calls,
                "outcome": outcome,
                "error": error,
                "history": entry,
            })
        ),
        Output::Text => write!(
            out,
            "{}",
            render(
                &key,
                &planned,
                &calls,
                outcome,
                scim_calls,
                error.as_deref(),
                entry.as_ref(),
            )
        ),
    };
    match error {
        None => Ok(()),
        Some(e) => Err(format!(
            "the worker did not apply {}: {e}",
            key.storage_id()
        )),
    }
}

/// The one directory user `who` names.
async fn resolve(
    console: &Console,
    settings: &Settings,
    outbound: &wiring::Outbound,
    worker: &scim_relay_core::worker::Worker,
    who: &str,
) -> Result<UserKey, String> {
    let mut keys = crate::console::plan_command::read_directly(settings, outbound, who).await;
    if keys.is_empty() {
        let report =
            crate::console::plan_command::preview_all(console, settings, outbound, worker).await?;
        keys = report
            .users
            .iter()
            .filter(|line| line.is_named(who))
            .filter_map(|line| {
                Some(UserKey {
                    source: line.source?,
                    tenant: line.tenant.clone()?,
                    user_id: line.user_id.clone()?,
                })
            })
            .collect();
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(format!(
            "no directory user or record of the relay matches {who}"
        )),
        n => Err(format!("{who} names {n} users; use the IdP user id")),
    }
}

fn render(
    key: &UserKey,
    planned: &UserPreview,
    calls: &[String],
    outcome: &str,
    scim_calls: u32,
    error: Option<&str>,
    entry: Option<&HistoryEntry>,
) -> String {
    let mut out = format!(
        "sync {} ({})\n",
        if planned.user_name.is_empty() {
            "-"
        } else {
            &planned.user_name
        },
        key.storage_id()
    );
    let attributes = if planned.attributes.is_empty() {
        String::new()
    } else {
        format!(" [{}]", planned.attributes.join(", "))
    };
    out.push_str(&format!(
        "plan:    {}{attributes}: {}\n",
        planned.action.as_str(),
        planned.reason
    ));
    if calls.is_empty() {
        out.push_str("SCIM:    no calls\n");
    }
    for call in calls {
        out.push_str(&format!("SCIM:    {call}\n"));
    }
    out.push_str(&format!("outcome: {outcome} ({scim_calls} SCIM calls)\n"));
    if let Some(e) = error {
        out.push_str(&format!("error:   {e}\n"));
    }
    if let Some(entry) = entry {
        out.push_str(&format!("history: {}\n", render_entry(entry)));
    }
    out
}
