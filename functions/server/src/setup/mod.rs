//! `scim-relay setup okta`: the Okta side of a deployment made by the relay itself instead of
//! by hand in the admin console. The event hook is created (or brought to what the settings
//! need), verified (Okta calls the relay's URL with a challenge, so the relay must be up and
//! reachable there) and activated. Run it again and it changes nothing, and says so.

pub mod okta_event_hook;

use std::io::Write;

use scim_relay_core::config::{required, Settings};
use scim_relay_core::ingress::okta::event_types_needed;

use okta_event_hook::{EventHook, HookPlan, HookSpec, OktaEventHooks};

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    #[command(subcommand)]
    pub what: SetupTarget,
}

#[derive(clap::Subcommand, Debug)]
pub enum SetupTarget {
    /// Create or update the Okta event hook that delivers to this relay, verify it and
    /// activate it. The API token needs `okta.eventHooks.manage`.
    Okta(OktaSetupArgs),
}

#[derive(clap::Args, Debug)]
pub struct OktaSetupArgs {
    /// The relay's public `/okta` URL, as Okta will call it (HTTPS; on AWS the stack's
    /// `OktaEventHookUrl` output).
    #[arg(long)]
    pub url: String,
    /// The hook's name in Okta: the one this command keeps.
    #[arg(long, default_value = "scim-relay")]
    pub name: String,
    /// Send the secret again (after rotating `okta.shared_secret`): Okta never shows it, so
    /// a hook that looks right may still carry the old one.
    #[arg(long)]
    pub rotate: bool,
}

/// Parses the words after `scim-relay setup` (`okta --url https://…/okta`).
pub fn parse(words: &[&str]) -> Result<SetupArgs, clap::Error> {
    #[derive(clap::Parser)]
    #[command(name = "scim-relay setup")]
    struct SetupLine {
        #[command(flatten)]
        args: SetupArgs,
    }
    let words = std::iter::once("setup").chain(words.iter().copied());
    <SetupLine as clap::Parser>::try_parse_from(words).map(|line| line.args)
}

pub async fn run(settings: &Settings, args: SetupArgs, out: &mut dyn Write) -> Result<(), String> {
    match args.what {
        SetupTarget::Okta(args) => okta(settings, args, out).await,
    }
}

/// Okta only calls HTTPS hooks; loopback stays possible for a local try-out behind a tunnel's
/// own TLS.
fn check_url(url: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    if !url.starts_with("https://") && !loopback {
        return Err(format!(
            "--url {url}: Okta delivers event hooks over HTTPS only; give the relay's public https:// URL"
        ));
    }
    Ok(())
}

fn describe(hook: &EventHook) -> String {
    format!(
        "{} ({}): {}, {}, {} event types, {}",
        hook.name,
        hook.id,
        hook.status,
        hook.verification_status,
        hook.events.items.len(),
        hook.channel.config.uri
    )
}

async fn okta(settings: &Settings, args: OktaSetupArgs, out: &mut dyn Write) -> Result<(), String> {
    check_url(&args.url)?;
    let org = required(&settings.okta.org_url, "okta.org_url").map_err(|e| e.to_string())?;
    let credential =
        scim_relay_core::wiring::okta_credential_for(settings, "okta.eventHooks.manage".into())
            .map_err(|e| e.to_string())?
            .ok_or(
                "no Okta API access: setup needs okta.client_id and okta.private_key (a service \
                 app granted okta.eventHooks.manage) or okta.api_token",
            )?;
    if settings.okta.shared_secret.is_empty() {
        return Err("okta.shared_secret is not set: it is the secret Okta will send".into());
    }
    let spec = HookSpec {
        name: args.name.clone(),
        uri: args.url.clone(),
        auth_header: settings.okta.auth_header.clone(),
        secret: settings.okta.shared_secret.clone(),
        events: event_types_needed(settings)
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    let api =
        OktaEventHooks::new(org, credential, settings.target.timeout).map_err(|e| e.to_string())?;
    let hooks = api.list().await.map_err(|e| e.to_string())?;
    let say =
        |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    let (mut hook, mut changed) = match okta_event_hook::plan_hook(&spec, &hooks, args.rotate) {
        HookPlan::Create => {
            let hook = api.create(&spec).await.map_err(|e| e.to_string())?;
            say(out, format!("created event hook {}", describe(&hook)))?;
            say(out, format!("  events: {}", spec.events.join(", ")))?;
            (hook, true)
        }
        HookPlan::Replace { id, why } => {
            let hook = api.replace(&id, &spec).await.map_err(|e| e.to_string())?;
            say(out, format!("updated event hook {}", describe(&hook)))?;
            for reason in why {
                say(out, format!("  {reason}"))?;
            }
            (hook, true)
        }
        HookPlan::Keep { id } => {
            let hook = hooks
                .into_iter()
                .find(|h| h.id == id)
                .ok_or("the hook vanished from Okta's list")?;
            (hook, false)
        }
    };
    if !hook.is_verified() {
        hook = api.verify(&hook.id).await.map_err(|e| {
            format!(
                "{e}\nOkta could not verify {}: is the relay running and reachable there, with \
                 okta.shared_secret as the hook's secret?",
                spec.uri
            )
        })?;
        say(out, format!("verified: Okta reached {}", spec.uri))?;
        changed = true;
    }
    if !hook.is_active() {
        hook = api.activate(&hook.id).await.map_err(|e| e.to_string())?;
        say(out, "activated".to_string())?;
        changed = true;
    }
    if changed {
        say(out, format!("event hook {}", describe(&hook)))?;
    } else {
        say(
            out,
            format!(
                "event hook {}: already as configured, nothing changed",
                describe(&hook)
            ),
        )?;
    }
    Ok(())
}
