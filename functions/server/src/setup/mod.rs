//! `scim-relay setup okta|graph`: the IdP's side of a deployment made by the relay itself
//! instead of by hand. Okta: the event hook is created (or brought to what the settings need),
//! verified (Okta calls the relay's URL with a challenge, so the relay must be up and reachable
//! there) and activated. Graph: the subscriptions the relay needs, when the sweeper does not
//! own them, are created (Graph validates the URL the same way), renewed or made again. Run
//! either again and it changes nothing, and says so.

pub mod graph_subscription;
pub mod okta_event_hook;

use std::io::Write;

use scim_relay_core::config::{required, Settings};
use scim_relay_core::ingress::okta::event_types_needed;

use graph_subscription::{SubscriptionPlan, SubscriptionSpec};
use okta_event_hook::{EventHook, HookPlan, HookSpec, OktaEventHooks};
use scim_relay_core::directory::subscription::{
    requested_expiry, GraphSubscription, ListedSubscription, SubscriptionApi,
};

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
    /// Create, renew or remake the Graph subscriptions that deliver to this relay, when the
    /// sweeper does not own them (`entra.notification_url` unset). Graph then asks the relay
    /// to renew them (reauthorizationRequired); run it again any time to check.
    Graph(GraphSetupArgs),
}

#[derive(clap::Args, Debug)]
pub struct GraphSetupArgs {
    /// The relay's public `/entra` URL, as Graph will call it (HTTPS; on AWS the stack's
    /// `EntraNotificationUrl` output).
    #[arg(long)]
    pub url: String,
    /// Make the subscriptions again with the current `entra.client_state` (after rotating
    /// it): Graph never shows the clientState, so one that looks right may carry the old one.
    #[arg(long)]
    pub rotate: bool,
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
        SetupTarget::Graph(args) => graph(settings, args, out).await,
    }
}

/// Okta and Graph only call HTTPS endpoints; loopback stays possible for a local try-out
/// behind a tunnel's own TLS.
fn check_url(url: &str, idp: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| url.starts_with(p));
    if !url.starts_with("https://") && !loopback {
        return Err(format!(
            "--url {url}: {idp} delivers over HTTPS only; give the relay's public https:// URL"
        ));
    }
    Ok(())
}

fn say(out: &mut dyn Write, line: String) -> Result<(), String> {
    writeln!(out, "{line}").map_err(|e| e.to_string())
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
    check_url(&args.url, "Okta")?;
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

fn describe_subscription(sub: &GraphSubscription) -> String {
    format!(
        "{} to {} (expires {})",
        sub.id,
        sub.resource,
        sub.expires_at.format("%Y-%m-%d %H:%M UTC")
    )
}

/// Graph answers a failed validation of the URL with a 400 on create.
fn validation_hint(e: impl std::fmt::Display, url: &str) -> String {
    format!(
        "{e}\nGraph could not make the subscription to {url}: is the relay running and reachable \
         there (it must answer Graph's validationToken request within 10 s), and the app granted \
         User.Read.All (Group.Read.All for groups)?"
    )
}

async fn graph(
    settings: &Settings,
    args: GraphSetupArgs,
    out: &mut dyn Write,
) -> Result<(), String> {
    check_url(&args.url, "Graph")?;
    let e = &settings.entra;
    if let Some(owned) = &e.notification_url {
        if *owned != args.url {
            return Err(format!(
                "entra.notification_url is {owned}: the sweeper keeps the subscriptions there; \
                 give that URL, or unset entra.notification_url to keep them with setup graph"
            ));
        }
        return say(
            out,
            format!(
                "entra.notification_url is set: the sweeper makes and renews the subscriptions to \
                 {} itself on each run (`scim-relay sweep` to run it now); nothing changed",
                args.url
            ),
        );
    }
    let api = scim_relay_core::wiring::entra_directory(settings)
        .map_err(|e| e.to_string())?
        .ok_or("no Entra app: setup graph needs entra.tenant_id, entra.client_id and its secret or certificate")?;
    let state = e.client_state.expose();
    if state.is_empty() {
        return Err("entra.client_state is not set: it is the secret Graph will send".into());
    }
    if state.len() > 128 {
        return Err("entra.client_state is longer than Graph's 128 characters".into());
    }
    let now = chrono::Utc::now();
    let renew_before =
        chrono::Duration::from_std(settings.sweep.renew_before).unwrap_or(chrono::Duration::MAX);
    let listed = api.list().await.map_err(|e| e.to_string())?;
    let mut changed = false;
    let mut kept = Vec::new();
    let resources = scim_relay_core::wiring::graph_subscription_resources(settings);
    for resource in &resources {
        let resource = resource.clone();
        let spec = SubscriptionSpec {
            resource: resource.clone(),
            url: args.url.clone(),
            renew_before,
        };
        for other in graph_subscription::elsewhere(&resource, &args.url, &listed) {
            say(
                out,
                format!(
                    "left alone: subscription {} to {resource} delivers to {}",
                    other.id, other.notification_url
                ),
            )?;
        }
        let plan = graph_subscription::plan_subscription(&spec, &listed, now, args.rotate);
        changed |= !matches!(&plan, SubscriptionPlan::Keep { extra, .. } if extra.is_empty());
        let (sub, extra) = match plan {
            SubscriptionPlan::Create => {
                let sub = create(&api, &spec, settings, now).await?;
                say(
                    out,
                    format!("created subscription {}", describe_subscription(&sub)),
                )?;
                (sub, Vec::new())
            }
            SubscriptionPlan::Replace { old, why } => {
                // The new one first: notifications never stop while the old ones go.
                let sub = create(&api, &spec, settings, now).await?;
                say(
                    out,
                    format!("made subscription again: {}", describe_subscription(&sub)),
                )?;
                for reason in why {
                    say(out, format!("  {reason}"))?;
                }
                (sub, old)
            }
            SubscriptionPlan::Renew { id, extra } => {
                let sub = api
                    .renew(&id, requested_expiry(now))
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("subscription {id} vanished from Graph; run again"))?;
                say(
                    out,
                    format!("renewed subscription {}", describe_subscription(&sub)),
                )?;
                (sub, extra)
            }
            SubscriptionPlan::Keep { id, extra } => {
                let found = listed
                    .iter()
                    .find(|s| s.id == id)
                    .ok_or("the subscription vanished from Graph's list")?;
                (listed_as_kept(found), extra)
            }
        };
        for id in extra {
            api.delete(&id).await.map_err(|e| e.to_string())?;
            say(out, format!("  deleted subscription {id}"))?;
        }
        kept.push(sub);
    }
    // One the relay made at this URL for what the settings no longer need (groups, once they
    // no longer decide scope or roles) only costs notifications.
    for sub in graph_subscription::not_needed(&resources, &args.url, &listed) {
        api.delete(&sub.id).await.map_err(|e| e.to_string())?;
        say(
            out,
            format!(
                "deleted subscription {} to {}: not needed",
                sub.id, sub.resource
            ),
        )?;
        changed = true;
    }
    // Notifications from a subscription the allow-list does not name are refused at ingress.
    let unlisted: Vec<&str> = kept
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| !e.subscription_ids.is_empty() && !e.subscription_ids.iter().any(|s| s == id))
        .collect();
    let unchanged = if changed {
        ""
    } else {
        ": already as configured, nothing changed"
    };
    for sub in &kept {
        say(
            out,
            format!("subscription {}{unchanged}", describe_subscription(sub)),
        )?;
    }
    say(
        out,
        format!(
            "Graph asks the relay to renew them (reauthorizationRequired at {}); run this again \
             any time to check",
            args.url
        ),
    )?;
    if !unlisted.is_empty() {
        return Err(format!(
            "entra.subscription_ids does not name {}: the relay refuses their notifications. Add \
             them (EntraSubscriptionIds) or leave it empty (the clientState authenticates)",
            unlisted.join(", ")
        ));
    }
    Ok(())
}

fn listed_as_kept(listed: &ListedSubscription) -> GraphSubscription {
    GraphSubscription {
        id: listed.id.clone(),
        resource: listed.resource.clone(),
        expires_at: listed.expires_at,
    }
}

async fn create(
    api: &dyn SubscriptionApi,
    spec: &SubscriptionSpec,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<GraphSubscription, String> {
    api.create(
        &spec.resource,
        &spec.url,
        &settings.entra.client_state,
        requested_expiry(now),
    )
    .await
    .map_err(|e| validation_hint(e, &spec.url))
}
