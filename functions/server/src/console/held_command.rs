//! `scim-relay held`: the operator's side of the deprovisioning breaker.

use std::io::Write;

use clap::{Args, Subcommand};
use scim_relay_core::config::Settings;
use scim_relay_core::deprovision::{
    decide, held_json, held_users, render_held, Decision, HoldState,
};
use scim_relay_core::envelope::EnvelopeSigner;

use crate::console::{Console, Output};

#[derive(Args, Debug)]
pub struct HeldArgs {
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

#[derive(Args, Debug)]
struct Choice {
    /// Users, by IdP user id or userName.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    users: Vec<String>,
    /// Every pending hold.
    #[arg(long)]
    all: bool,
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
