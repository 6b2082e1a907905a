//! Builds the worker's outbound parts (directories, SCIM target) from settings; shared by the
//! worker Lambda and the standalone server.

use std::sync::Arc;
use std::time::Duration;

use crate::breaker::CredentialBreaker;
use crate::clock::Clock;
use crate::config::{required, ConfigError, Settings, SuspendPolicy, TargetProfile};
use crate::consumer::{Consumer, ConsumerPolicy};
use crate::directory::client_assertion::ClientKey;
use crate::directory::graph::{GraphCredential, GraphDirectory, GraphGroupMembers};
use crate::directory::okta::{OktaDirectory, OktaMembershipLog};
use crate::directory::okta_credential::{service_app_scopes, OktaCredential};
use crate::directory::subscription::SubscriptionApi;
use crate::directory::{Directory, Scope};
use crate::envelope::EnvelopeSigner;
use crate::envelope::Source;
use crate::queue::Queue;
use crate::scim::datadog_invitations::DatadogInvitations;
use crate::scim::gated::GatedTarget;
use crate::scim::http::HttpScimTarget;
use crate::scim::InvitationApi;
use crate::scim::{DryRunTarget, RoleMap, ScimTarget};
use crate::state::{StateStore, SweepStore};
use crate::sweeper::{FeedKind, FeedSource, SubscriptionOwner, Sweeper, SweeperParts};
use crate::worker::{Worker, WorkerParts};

/// The outbound clients both the worker and the sweeper use, built once.
pub struct Outbound {
    pub target: Arc<dyn ScimTarget>,
    pub okta: Option<Arc<OktaDirectory>>,
    pub entra: Option<Arc<GraphDirectory>>,
}

pub fn outbound(settings: &Settings) -> Result<Outbound, ConfigError> {
    settings.check_worker()?;
    // Log fingerprints from here on are keyed for this deployment (see `pii`).
    crate::pii::set_fingerprint_key(&settings.queue.signing_key);
    let timeout = timeout(settings);
    let target: Arc<dyn ScimTarget> = match settings.target.profile {
        TargetProfile::DryRun => Arc::new(DryRunTarget::default()),
        profile => Arc::new(
            HttpScimTarget::new(
                profile,
                required(&settings.target.base_url, "target.base_url")?,
                settings.target.token.clone(),
                timeout,
            )
            .map_err(|e| ConfigError::Invalid(e.to_string()))?,
        ),
    };
    let okta = match okta_credential(settings)? {
        None => None,
        Some(credential) => Some(Arc::new(
            OktaDirectory::new(
                required(&settings.okta.org_url, "okta.org_url")?,
                credential,
                timeout,
            )
            .map_err(|e| ConfigError::Invalid(e.to_string()))?
            .with_rate_limit_share(settings.okta.rate_limit_percent)
            .with_scope(
                Scope::new(
                    settings.okta.app_id.clone(),
                    settings.okta.group_ids.clone(),
                )
                .with_role_groups(settings.okta.role_groups.keys().cloned().collect()),
            ),
        )),
    };
    let entra = entra_directory(settings)?.map(Arc::new);
    Ok(Outbound {
        target,
        okta,
        entra,
    })
}

/// The Entra app's Graph client, scoped as the settings say; `None` without `entra.client_id`.
pub fn entra_directory(settings: &Settings) -> Result<Option<GraphDirectory>, ConfigError> {
    let e = &settings.entra;
    let Some(client_id) = &e.client_id else {
        return Ok(None);
    };
    let directory = GraphDirectory::new(
        &e.graph_url,
        &e.login_url,
        required(&e.tenant_id, "entra.tenant_id")?,
        client_id,
        graph_credential(settings)?,
        timeout(settings),
    )
    .map_err(|e| ConfigError::Invalid(e.to_string()))?
    .with_scope(entra_scope(settings))
    .with_extra_properties(&graph_properties(settings));
    Ok(Some(directory))
}

/// What the relay subscribes to in Graph: `users`, and `groups` when group membership decides
/// scope or roles (a membership change is not a change of the user).
pub fn graph_subscription_resources(settings: &Settings) -> Vec<String> {
    if entra_scope(settings).watched_groups().is_empty() {
        vec!["users".into()]
    } else {
        vec!["users".into(), "groups".into()]
    }
}

fn timeout(settings: &Settings) -> Duration {
    // A zero timeout would fail every request.
    settings.target.timeout.max(Duration::from_secs(1))
}

/// One deployment's engine: the consumer (a worker that hands tenant events to the sweeper)
/// and the sweeper, on whatever store, breaker and queue the deployment has. Every entry point
/// (the three Lambdas, the standalone server, the in-memory test backend) is built here, so
/// they differ only in their adapters and their [`ConsumerPolicy`].
pub struct Engine {
    pub consumer: Consumer,
    pub sweeper: Arc<Sweeper>,
}

pub fn engine<S>(
    settings: &Settings,
    outbound: &Outbound,
    store: Arc<S>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    policy: ConsumerPolicy,
) -> Result<Engine, ConfigError>
where
    S: SweepStore + CredentialBreaker + 'static,
{
    let pause =
        chrono::Duration::from_std(policy.credential_pause).unwrap_or(chrono::Duration::minutes(5));
    // One gate for the worker and the sweeper: a wait the target asks of one is kept by all.
    let outbound = &Outbound {
        target: Arc::new(GatedTarget::new(outbound.target.clone())),
        okta: outbound.okta.clone(),
        entra: outbound.entra.clone(),
    };
    let sweeper = Arc::new(build_sweeper(
        settings,
        outbound,
        store.clone(),
        store.clone(),
        pause,
        queue,
        clock.clone(),
    )?);
    let worker = worker(settings, outbound, store.clone(), clock.clone())?
        .with_tenant_events(sweeper.clone());
    Ok(Engine {
        consumer: Consumer::new(Arc::new(worker), store, policy),
        sweeper,
    })
}

/// The directories whose users are provisioned, each with its full listing (the change feed read
/// from no position, as the sweeper's full pass): source, tenant, feed.
pub fn user_feeds(
    settings: &Settings,
    outbound: &Outbound,
) -> Vec<(Source, String, Arc<dyn crate::directory::ChangeFeed>)> {
    let mut feeds: Vec<(Source, String, Arc<dyn crate::directory::ChangeFeed>)> = Vec::new();
    if let Some(okta) = &outbound.okta {
        feeds.push((Source::Okta, settings.okta_tenant(), okta.clone()));
    }
    if let Some(entra) = &outbound.entra {
        feeds.push((Source::Entra, settings.entra_tenant(), entra.clone()));
    }
    feeds
}

/// The worker of a deployment on `store` (the engine's, and the one `scim-relay plan` and
/// `sync` use, so a preview and a sync decide as the running relay does).
pub fn worker(
    settings: &Settings,
    outbound: &Outbound,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
) -> Result<Worker, ConfigError> {
    if settings.target.profile != TargetProfile::DryRun
        && settings.target.credential_owner.is_none()
    {
        tracing::warn!(
            "target.credential_owner is not set: if the IdP deactivates the person whose key the \
             relay uses, the relay switches its own key off. Name the key's owner, or use a \
             service account's key."
        );
    }
    Ok(Worker::new(WorkerParts {
        signer: EnvelopeSigner::from_settings(settings),
        store,
        target: outbound.target.clone(),
        okta: outbound.okta.clone().map(|d| d as Arc<dyn Directory>),
        entra: outbound.entra.clone().map(|d| d as Arc<dyn Directory>),
        profile: settings.target.profile,
        clock,
        dedupe_ttl: settings.store.dedupe_ttl,
        history_ttl: settings.store.history,
        invite_ttl: settings.target.invite_ttl,
        owner: settings.target.credential_owner.clone(),
        hard_delete: settings.entra.hard_delete,
        hard_delete_confirm: settings.entra.hard_delete_confirm,
        trust_event_content: settings.trusts_event_content(),
        keep_suspended: settings.okta.suspended == SuspendPolicy::Keep,
        sync_groups: settings.target.sync_groups,
        leavers_leave_groups: settings.target.leavers_leave_groups,
        roles: role_map(settings),
        attribute_map: settings.attribute_expressions()?,
        scoping: settings.scoping_rules()?,
        protected: settings.target.protected_users.clone(),
        deprovision: crate::deprovision::DeprovisionLimit::from_settings(settings),
        membership: crate::deprovision::MembershipLimit::from_settings(settings),
    }))
}

/// Entra's scope groups and role groups (Entra has no app scope).
fn entra_scope(settings: &Settings) -> Scope {
    Scope::new(None, settings.entra.group_ids.clone())
        .with_role_groups(settings.entra.role_groups.keys().cloned().collect())
}

/// How the relay signs in to Okta to read: see [`okta_credential_for`].
fn okta_credential(settings: &Settings) -> Result<Option<OktaCredential>, ConfigError> {
    okta_credential_for(settings, service_app_scopes(settings.okta.app_id.is_some()))
}

/// How the relay signs in to Okta: the service app when `okta.client_id` is set, asking for
/// `scopes` (its key must parse: a configuration error otherwise), else the SSWS token;
/// `None` when neither is set.
pub fn okta_credential_for(
    settings: &Settings,
    scopes: String,
) -> Result<Option<OktaCredential>, ConfigError> {
    let okta = &settings.okta;
    Ok(match &okta.client_id {
        Some(client_id) => {
            let key = ClientKey::from_pem(okta.private_key.expose(), "okta.private_key")
                .map_err(|e| ConfigError::Invalid(e.to_string()))?
                .with_key_id(okta.key_id.clone());
            Some(OktaCredential::service_app(client_id.clone(), key, scopes))
        }
        None if !okta.api_token.is_empty() => {
            Some(OktaCredential::ApiToken(okta.api_token.clone()))
        }
        None => None,
    })
}

/// The Entra app's certificate credential when its key is set, else its client secret.
fn graph_credential(settings: &Settings) -> Result<GraphCredential, ConfigError> {
    let e = &settings.entra;
    if e.client_private_key.is_empty() {
        return Ok(GraphCredential::ClientSecret(e.client_secret.clone()));
    }
    let key = ClientKey::from_pem(e.client_private_key.expose(), "entra.client_private_key")
        .and_then(|k| k.with_certificate(e.client_certificate.expose(), "entra.client_certificate"))
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(GraphCredential::Certificate(Box::new(key)))
}

/// Roles by group of both directories, `target.role_ids` for a member of none.
fn role_map(settings: &Settings) -> RoleMap {
    let by_group = settings
        .okta
        .role_groups
        .iter()
        .chain(&settings.entra.role_groups)
        .map(|(group, roles)| (group.clone(), roles.clone()))
        .collect();
    RoleMap::new(by_group, settings.target.role_ids.clone())
}

fn build_sweeper(
    settings: &Settings,
    outbound: &Outbound,
    store: Arc<dyn SweepStore>,
    breaker: Arc<dyn CredentialBreaker>,
    credential_pause: chrono::Duration,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
) -> Result<Sweeper, ConfigError> {
    let datadog = settings.target.profile == TargetProfile::Datadog;
    let invitations: Option<Arc<dyn InvitationApi>> =
        if datadog && !settings.target.api_key.is_empty() {
            match DatadogInvitations::new(
                required(&settings.target.base_url, "target.base_url")?,
                settings.target.api_key.clone(),
                settings.target.token.clone(),
                timeout(settings),
            ) {
                Ok(api) => Some(Arc::new(api)),
                // The rest of the sweeper still runs; expired invitations are only reported.
                Err(e) => {
                    tracing::warn!("invitations will not be re-sent: {}", e.detail);
                    None
                }
            }
        } else {
            None
        };
    let e = &settings.entra;
    // The role mapping and the scoping rules are part of what a pass decides: a change starts
    // the feeds over, and the full pass gives every user the roles and scope they now name.
    let roles_key = format!(
        "{:?}|{:?}|{:?}",
        role_map(settings),
        settings.scope.rules,
        settings.scope.match_rules
    );
    let okta_scope = format!(
        "{}|{}|{roles_key}",
        settings.okta.app_id.as_deref().unwrap_or_default(),
        scope_key(&settings.okta.group_ids)
    );
    let entra_watched = entra_scope(settings).watched_groups();
    let mut feeds = Vec::new();
    if let Some(okta) = &outbound.okta {
        feeds.push(FeedSource {
            source: Source::Okta,
            tenant: settings.okta_tenant(),
            kind: FeedKind::Users,
            scope: okta_scope.clone(),
            feed: okta.clone(),
        });
        feeds.push(FeedSource {
            source: Source::Okta,
            tenant: settings.okta_tenant(),
            kind: FeedKind::Memberships,
            scope: okta_scope,
            feed: Arc::new(OktaMembershipLog(okta.clone())),
        });
    }
    if let Some(entra) = &outbound.entra {
        feeds.push(FeedSource {
            source: Source::Entra,
            tenant: settings.entra_tenant(),
            kind: FeedKind::Users,
            // The $select (from target.attributes) decides which changes Graph reports.
            scope: format!(
                "{}|{:?}|{roles_key}",
                scope_key(&e.group_ids),
                graph_properties(settings)
            ),
            feed: entra.clone(),
        });
        if !entra_watched.is_empty() {
            feeds.push(FeedSource {
                source: Source::Entra,
                tenant: settings.entra_tenant(),
                kind: FeedKind::Memberships,
                scope: scope_key(&entra_watched),
                feed: Arc::new(GraphGroupMembers(entra.clone())),
            });
        }
    }
    let subscription = match (&outbound.entra, &e.notification_url) {
        (Some(api), Some(notification_url)) => Some(SubscriptionOwner {
            api: api.clone(),
            tenant: settings.entra_tenant(),
            resources: graph_subscription_resources(settings),
            notification_url: notification_url.clone(),
            client_state: e.client_state.clone(),
            renew_before: on_clock(settings.sweep.renew_before),
        }),
        _ => None,
    };
    Ok(Sweeper::new(SweeperParts {
        store,
        queue,
        signer: EnvelopeSigner::from_settings(settings),
        target: outbound.target.clone(),
        invitations,
        tracks_invitations: datadog,
        feeds,
        subscription,
        subscription_api: outbound
            .entra
            .clone()
            .map(|d| d as Arc<dyn SubscriptionApi>),
        entra_group_ids: entra_watched.clone(),
        clock,
        invite_ttl: on_clock(settings.target.invite_ttl),
        invite_attempts: settings.sweep.invite_attempts.clamp(1, 100) as u32,
        reconcile: settings.sweep.reconcile,
        full_pass_interval: on_clock(settings.sweep.full_pass_interval),
        drift: settings.sweep.drift,
        drift_interval: on_clock(settings.sweep.drift_interval),
        owner: settings.target.credential_owner.clone(),
        protected: settings.target.protected_users.clone(),
        deprovision: crate::deprovision::DeprovisionLimit::from_settings(settings),
        breaker,
        credential_pause,
    }))
}

/// A feed's scope names its cursor (hashed), so it is written as the comma list the setting
/// used to be: a deployment whose scope did not change keeps its cursors.
fn scope_key(ids: &[String]) -> String {
    ids.join(",")
}

/// A duration setting on the clock's scale. Loading refuses what the clock cannot count, so
/// the ceiling only matters for settings built in code.
fn on_clock(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The Graph properties `target.attributes` reads: Entra's and unprefixed names, and only plain
/// property names (anything else would make Graph refuse the whole `$select`).
fn graph_properties(settings: &Settings) -> Vec<String> {
    // A bad expression or rule stops the worker at start-up with its reason; here it only
    // reads no property.
    let expressions = settings.attribute_expressions().unwrap_or_default();
    let rules = settings.scoping_rules().unwrap_or_default();
    let mut names: Vec<String> = expressions
        .values()
        .flat_map(|e| e.attributes())
        .chain(rules.attributes())
        .filter(|(source, _)| source.is_none_or(|s| s == Source::Entra))
        .map(|(_, name)| name)
        // Graph's $select takes plain property names only.
        .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entra_and_plain_names_reach_graphs_select() {
        let mut settings = Settings::default();
        settings.target.attributes = std::collections::BTreeMap::from([
            ("a".to_string(), "okta:costCenter".to_string()),
            ("b".to_string(), "entra:employeeType".to_string()),
            (
                "c".to_string(),
                r#"Join(" ", officeLocation, okta:division, entra:companyName)"#.to_string(),
            ),
        ]);
        settings.scope.rules = vec![
            r#"entra:country in ("US", "CA")"#.to_string(),
            r#"okta:userType equals "Employee""#.to_string(),
        ];
        assert_eq!(
            graph_properties(&settings),
            ["companyName", "country", "employeeType", "officeLocation"]
        );
    }
}
