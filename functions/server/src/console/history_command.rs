//! `scim-relay history <user>`: one user's timeline (every trigger the relay finished for
//! them) and the record it keeps, for the helpdesk's "why can't Jane log in?".

use std::io::Write;

use clap::Args;
use scim_relay_core::config::Settings;
use scim_relay_core::envelope::Source;
use scim_relay_core::history::{candidate_keys, render, CurrentState, UserHistory};
use scim_relay_core::pii::fingerprint;

use crate::console::{Console, Output};

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The user: IdP user id (Okta `00u…`, Entra object id), or email / userName (looked up by
    /// its keyed fingerprint, never stored in plain).
    user: String,
    /// Entries to show, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// `json` for scripts: `{"users": [...]}`, one object per matching IdP user.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The directories this deployment reads, as (source, tenant) of state keys.
fn configured_sources(settings: &Settings) -> Vec<(Source, String)> {
    let mut sources = Vec::new();
    if settings.okta.org_url.is_some() {
        sources.push((Source::Okta, settings.okta_tenant()));
    }
    if settings.entra.tenant_id.is_some() {
        sources.push((Source::Entra, settings.entra_tenant()));
    }
    sources
}

pub async fn run(
    console: &Console,
    settings: &Settings,
    args: HistoryArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    let store = console.store.as_ref();
    let now = chrono::Utc::now();
    let by_fingerprint = store
        .users_by_fingerprint(&fingerprint(&args.user), now)
        .await
        .map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for key in candidate_keys(&args.user, by_fingerprint, &configured_sources(settings)) {
        let state = store.load_user(&key).await.map_err(|e| e.to_string())?;
        let entries = store
            .history(&key, now, args.limit)
            .await
            .map_err(|e| e.to_string())?;
        if state.is_none() && entries.is_empty() {
            continue;
        }
        found.push(UserHistory {
            source: key.source,
            tenant: key.tenant,
            user_id: key.user_id,
            state: state.as_ref().map(CurrentState::of),
            entries,
        });
    }
    if found.is_empty() {
        return Err(format!(
            "no record or history for {}: not an IdP user id or userName the relay has seen \
             in the last store.history_days",
            args.user
        ));
    }
    // A closed pipe (`| head`) ends the output, not the process.
    let _ = match args.output {
        Output::Text => {
            let text: Vec<String> = found.iter().map(render).collect();
            write!(out, "{}", text.join("\n"))
        }
        Output::Json => writeln!(out, "{}", serde_json::json!({ "users": found })),
    };
    Ok(())
}
