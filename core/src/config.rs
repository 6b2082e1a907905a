//! The configuration contract: one TOML file, every key overridable by an environment variable
//! `SCIM_RELAY_<SECTION>__<KEY>` (top-level keys: `SCIM_RELAY_<KEY>`). The Lambdas use the same
//! keys from their environment only.
//!
//! Values are parsed into their types at load: comma lists into `Vec`s, settings left unset (or
//! set empty, as a template passes an unused parameter) into `None`, counts of hours, minutes
//! and seconds into [`Duration`]s under their unit-named keys. The defaults are the sections'
//! `Default` impls and nowhere else.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::attributes::{Expression, ScopingRules};

use crate::secret::{Secret, SecretSet};

const ENV_PREFIX: &str = "SCIM_RELAY_";
/// Environment variables with our prefix that are not settings.
const ENV_NOT_SETTINGS: &[&str] = &["SCIM_RELAY_CONFIG", "SCIM_RELAY_LOG"];

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config is not valid: {0}")]
    Invalid(String),
    #[error("missing required setting `{key}` (set it in the config file or as {env})")]
    Missing { key: &'static str, env: String },
}

/// Which SCIM dialect the target speaks, and so how users are mapped onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TargetProfile {
    /// Datadog's SCIM API: `name.formatted` only, PATCH add/replace, invitations on create.
    Datadog,
    /// A generic RFC 7644 service provider.
    Generic,
    /// Print the SCIM requests that would be sent; send nothing.
    #[default]
    DryRun,
}

/// What an Okta suspension does on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SuspendPolicy {
    /// `PATCH active=false`, and back to active on unsuspend.
    #[default]
    Deactivate,
    /// Leave the target account as it is while the user is suspended.
    Keep,
}

/// What a hard delete in the IdP does on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HardDeletePolicy {
    /// `PATCH active=false`, as for any other offboarding: the account and its history stay.
    #[default]
    Deactivate,
    /// SCIM `DELETE /Users/{id}` (Datadog disables on DELETE; RFC 7644 providers remove).
    Delete,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the standalone server listens on.
    pub listen: String,
    /// SQLite file of the standalone server (queue and state).
    pub database: String,
    pub queue: QueueSettings,
    pub store: StoreSettings,
    pub okta: OktaSettings,
    pub entra: EntraSettings,
    pub target: TargetSettings,
    pub scope: ScopeSettings,
    pub sweep: SweepSettings,
}

/// Attribute scoping rules, alongside app and group scope: a user the directory has but the
/// rules do not admit is out of scope (a recorded account is deactivated, through the
/// deprovisioning breaker like any other).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeSettings {
    /// `department equals "Sales"`, `country in ("US", "CA")`, `okta:userType not_equals
    /// "Contractor"`, `title starts_with "Eng"`: a TOML array, or `;`-separated in the
    /// environment (a rule's list holds commas).
    #[serde(deserialize_with = "rule_list")]
    pub rules: Vec<String>,
    /// `all` (every rule admits the user, the default) or `any` (one does).
    #[serde(rename = "match")]
    pub match_rules: ScopeMatch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeMatch {
    #[default]
    All,
    Any,
}

/// The sweeper: what webhooks alone miss (lost events, expired invitations, subscriptions that
/// run out, a revoked target credential).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepSettings {
    /// `interval_minutes`, standalone: time between sweeps; `None` (0) turns the sweeper off.
    /// (Lambda: the template's `SweepSchedule`.)
    #[serde(rename = "interval_minutes", deserialize_with = "minutes_or_off")]
    pub interval: Option<Duration>,
    /// Invitations sent in all (the one on create included) before a user who never signed in
    /// is reported instead of invited again.
    #[serde(deserialize_with = "number")]
    pub invite_attempts: u64,
    /// Read each directory's changes since the last sweep and re-check those users.
    #[serde(deserialize_with = "boolean")]
    pub reconcile: bool,
    /// `full_pass_hours`: how often reconciliation reads every user instead of the changes: the
    /// only way to see users deleted outright while their events were lost.
    #[serde(rename = "full_pass_hours", deserialize_with = "hours")]
    pub full_pass_interval: Duration,
    /// `renew_before_hours`: renew the Graph subscription when less than this is left of it.
    #[serde(rename = "renew_before_hours", deserialize_with = "hours")]
    pub renew_before: Duration,
    /// Target users the relay has no record of (not provisioned from the IdP): `report` them,
    /// `deactivate` them too, or `off`.
    pub drift: DriftPolicy,
    /// `drift_interval_hours`: how often the drift report runs (it lists every target user).
    #[serde(rename = "drift_interval_hours", deserialize_with = "hours")]
    pub drift_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftPolicy {
    Off,
    Report,
    Deactivate,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            interval: Some(MINUTE * 15),
            invite_attempts: 3,
            reconcile: true,
            full_pass_interval: HOUR * 24,
            renew_before: HOUR * 72,
            drift: DriftPolicy::Report,
            drift_interval: HOUR * 24,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// HMAC-SHA256 key with which ingress signs queue messages and the worker checks them.
    pub signing_key: Secret,
    /// The key before the last rotation: messages it signed (in flight, dead-lettered) still
    /// open. Empty once the rotation is over.
    pub previous_signing_key: Secret,
    /// SQS FIFO queue URL (Lambda).
    #[serde(deserialize_with = "optional")]
    pub url: Option<String>,
    /// SQS FIFO dead-letter queue URL (Lambda): where the worker parks what it cannot apply.
    #[serde(deserialize_with = "optional")]
    pub dlq_url: Option<String>,
    /// Standalone: attempts before a retryable failure is dead-lettered.
    #[serde(deserialize_with = "number")]
    pub max_attempts: u64,
    /// Standalone: workers applying messages at once (never two on one user).
    #[serde(deserialize_with = "number")]
    pub workers: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// DynamoDB table (Lambda).
    #[serde(deserialize_with = "optional")]
    pub table: Option<String>,
    /// `dedupe_ttl_hours`: how long a processed event id is remembered for deduplication.
    #[serde(rename = "dedupe_ttl_hours", deserialize_with = "hours")]
    pub dedupe_ttl: Duration,
    /// `history_days`: how long each user's per-trigger history is kept (`0`: none kept).
    #[serde(rename = "history_days", deserialize_with = "days")]
    pub history: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaSettings {
    /// `https://example.okta.com`: where users are re-read, and the tenant name in state keys.
    #[serde(deserialize_with = "optional")]
    pub org_url: Option<String>,
    /// Header that carries the event hook's shared secret.
    pub auth_header: String,
    pub shared_secret: Secret,
    /// The secret being rotated out; accepted until removed.
    pub previous_shared_secret: Secret,
    /// SSWS API token for the Users API. Without it (and without a service app) the worker
    /// uses what the event carries.
    pub api_token: Secret,
    /// The Okta service app (OAuth 2.0, `private_key_jwt`) the relay reads with instead of an
    /// SSWS token: its client id…
    #[serde(deserialize_with = "optional")]
    pub client_id: Option<String>,
    /// …the PEM private key whose public half the app holds…
    pub private_key: Secret,
    /// …and its key id (`kid`) in the app's keys, when it has several.
    #[serde(deserialize_with = "optional")]
    pub key_id: Option<String>,
    /// Without `api_token`, apply what the event itself says (its `alternateId`, and the event
    /// type as the status) instead of re-reading the user. Anyone holding the shared secret can
    /// then create accounts, so it is only implied for the dry-run target (the local demo).
    #[serde(deserialize_with = "boolean")]
    pub use_event_content: bool,
    /// What a suspended Okta user becomes on the target.
    pub suspended: SuspendPolicy,
    /// Provision only users assigned to this Okta app (its `0oa…` id)…
    #[serde(deserialize_with = "optional")]
    pub app_id: Option<String>,
    /// …or members of one of these Okta groups (`00g…` ids).
    #[serde(deserialize_with = "list")]
    pub group_ids: Vec<String>,
    /// Target roles by Okta group id: a member of several gets every role they map to; a
    /// member of none gets `target.role_ids`. `[okta.role_groups]` `"00g…" = ["role", …]` in
    /// TOML, or `group=role,…` in the environment. Membership gives roles, not scope.
    #[serde(deserialize_with = "role_groups")]
    pub role_groups: BTreeMap<String, Vec<String>>,
    /// Per cent of each of Okta's rate limits (org-wide, shared with sign-in) the relay may
    /// use: past it, it waits for the window to reset. Okta's own OAuth apps default to 50.
    #[serde(deserialize_with = "number")]
    pub rate_limit_percent: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraSettings {
    #[serde(deserialize_with = "optional")]
    pub tenant_id: Option<String>,
    /// The app that reads users from Graph; unset, Entra users are not read.
    #[serde(deserialize_with = "optional")]
    pub client_id: Option<String>,
    pub client_secret: Secret,
    /// A certificate credential instead of the client secret: the app's private key (PEM)…
    pub client_private_key: Secret,
    /// …and the certificate uploaded to the app (PEM), which names the key by its thumbprint.
    pub client_certificate: Secret,
    /// The `clientState` given when the Graph subscription was created.
    pub client_state: Secret,
    pub previous_client_state: Secret,
    /// Subscription ids to accept; empty accepts any with a valid clientState.
    #[serde(deserialize_with = "list")]
    pub subscription_ids: Vec<String>,
    pub graph_url: String,
    pub login_url: String,
    /// What a hard-deleted Entra user becomes on the target.
    pub hard_delete: HardDeletePolicy,
    /// `hard_delete_confirm_minutes`: under `delete`, how long after the first read that found
    /// the user gone for good a second read must find the same before the account is deleted
    /// (replication right after a delete can answer 404 twice); deactivated meanwhile.
    #[serde(rename = "hard_delete_confirm_minutes", deserialize_with = "minutes")]
    pub hard_delete_confirm: Duration,
    /// Provision only (transitive) members of these Entra groups (object ids).
    #[serde(deserialize_with = "list")]
    pub group_ids: Vec<String>,
    /// Target roles by Entra group object id (transitive membership), as `okta.role_groups`.
    #[serde(deserialize_with = "role_groups")]
    pub role_groups: BTreeMap<String, Vec<String>>,
    /// The public HTTPS URL of the relay's `/entra` endpoint. When set, the sweeper creates and
    /// renews the Graph `/users` subscription itself, with `client_state` as its clientState.
    #[serde(deserialize_with = "optional")]
    pub notification_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSettings {
    pub profile: TargetProfile,
    /// SCIM base URL, e.g. `https://api.datadoghq.com/api/v2/scim`.
    #[serde(deserialize_with = "optional")]
    pub base_url: Option<String>,
    /// Bearer token (Datadog: an application key of a service account).
    pub token: Secret,
    /// userName (email) of the account that owns `token`. The relay never deactivates it.
    #[serde(deserialize_with = "optional")]
    pub credential_owner: Option<String>,
    /// Mirror membership of the configured IdP groups (`okta.group_ids`, `entra.group_ids`) as
    /// SCIM Groups (Datadog: Teams, once Datadog support has enabled them).
    #[serde(deserialize_with = "boolean")]
    pub sync_groups: bool,
    /// With `sync_groups`: a user whose account is switched off (deprovisioned, suspended, out
    /// of scope) or who is gone from the directory leaves every mirrored group; reactivated,
    /// they rejoin the groups the directory lists. Off: they keep the memberships the
    /// directory still lists.
    #[serde(deserialize_with = "boolean")]
    pub leavers_leave_groups: bool,
    /// Datadog: role UUIDs given to every provisioned user. Empty: the org's default role.
    #[serde(deserialize_with = "list")]
    pub role_ids: Vec<String>,
    /// SCIM path → IdP attribute (Okta profile key, Graph property), over the profile's
    /// defaults: `[target.attributes]` in TOML, or `path=attribute,…` in the environment.
    #[serde(deserialize_with = "attribute_map")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// `invite_ttl_hours`: how long an invitation sent on create stays valid (Datadog: 48 h).
    #[serde(rename = "invite_ttl_hours", deserialize_with = "hours")]
    pub invite_ttl: Duration,
    /// Datadog API key. Datadog's Users API (invitation status and re-sends) wants it next to
    /// the application key in `token`; without it expired invitations are only reported.
    pub api_key: Secret,
    /// `timeout_seconds`: per-request timeout towards the IdPs and the target.
    #[serde(rename = "timeout_seconds", deserialize_with = "seconds")]
    pub timeout: Duration,
    /// userNames (emails) no path ever deactivates, deletes or changes: break-glass admins,
    /// vendor accounts. Compared case-insensitively with the recorded and the new userName.
    #[serde(deserialize_with = "list")]
    pub protected_users: Vec<String>,
    /// The deprovisioning breaker: deactivations and deletes allowed per rolling window, at
    /// least. Beyond the larger of this and `deprovision_percent`, the rest are held for an
    /// operator (`scim-relay held`).
    #[serde(deserialize_with = "number")]
    pub deprovision_limit: u64,
    /// …or this share (per cent) of the accounts the relay keeps active, if larger.
    #[serde(deserialize_with = "number")]
    pub deprovision_percent: u64,
    /// `deprovision_window_minutes`: the breaker's rolling window.
    #[serde(rename = "deprovision_window_minutes", deserialize_with = "minutes")]
    pub deprovision_window: Duration,
    /// The membership breaker: members one mirrored group may lose per window (the
    /// deprovisioning breaker's) while their accounts stay active; beyond, the removals are
    /// held for an operator. `0`: every such removal waits for approval.
    #[serde(deserialize_with = "number")]
    pub membership_removal_limit: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database: "scim-relay.db".into(),
            queue: QueueSettings::default(),
            store: StoreSettings::default(),
            okta: OktaSettings::default(),
            entra: EntraSettings::default(),
            target: TargetSettings::default(),
            scope: ScopeSettings::default(),
            sweep: SweepSettings::default(),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::default(),
            previous_signing_key: Secret::default(),
            url: None,
            dlq_url: None,
            max_attempts: 8,
            workers: 4,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            table: None,
            dedupe_ttl: HOUR * 72,
            history: HOUR * 24 * 30,
        }
    }
}

impl OktaSettings {
    /// Whether the relay can read the directory: a service app, or an SSWS token.
    pub fn reads_directory(&self) -> bool {
        self.client_id.is_some() || !self.api_token.is_empty()
    }
}

impl Default for OktaSettings {
    fn default() -> Self {
        Self {
            org_url: None,
            auth_header: "authorization".into(),
            shared_secret: Secret::default(),
            previous_shared_secret: Secret::default(),
            api_token: Secret::default(),
            client_id: None,
            private_key: Secret::default(),
            key_id: None,
            use_event_content: false,
            suspended: SuspendPolicy::Deactivate,
            app_id: None,
            group_ids: Vec::new(),
            role_groups: BTreeMap::new(),
            rate_limit_percent: 50,
        }
    }
}

impl Default for EntraSettings {
    fn default() -> Self {
        Self {
            tenant_id: None,
            client_id: None,
            client_secret: Secret::default(),
            client_private_key: Secret::default(),
            client_certificate: Secret::default(),
            client_state: Secret::default(),
            previous_client_state: Secret::default(),
            subscription_ids: Vec::new(),
            graph_url: "https://graph.microsoft.com".into(),
            login_url: "https://login.microsoftonline.com".into(),
            hard_delete: HardDeletePolicy::Deactivate,
            hard_delete_confirm: MINUTE * 10,
            group_ids: Vec::new(),
            role_groups: BTreeMap::new(),
            notification_url: None,
        }
    }
}

impl Default for TargetSettings {
    fn default() -> Self {
        Self {
            profile: TargetProfile::DryRun,
            base_url: None,
            token: Secret::default(),
            credential_owner: None,
            sync_groups: false,
            leavers_leave_groups: true,
            role_ids: Vec::new(),
            attributes: Default::default(),
            invite_ttl: HOUR * 48,
            api_key: Secret::default(),
            timeout: Duration::from_secs(10),
            protected_users: Vec::new(),
            deprovision_limit: 10,
            deprovision_percent: 5,
            deprovision_window: HOUR,
            membership_removal_limit: 10,
        }
    }
}

impl Settings {
    /// Reads the TOML file (if any), then applies `SCIM_RELAY_*` overrides from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?,
            None => String::new(),
        };
        Self::from_toml_and_env(&text, env)
    }

    /// The Lambda way: environment only.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(None, std::env::vars())
    }

    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(syntax_error(text, &e)))?;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if ENV_NOT_SETTINGS.contains(&name.as_str()) {
                continue;
            }
            let rest = rest.to_ascii_lowercase();
            match rest.split_once("__") {
                Some((section, key)) => {
                    let entry = table
                        .entry(section.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    let toml::Value::Table(section_table) = entry else {
                        return Err(ConfigError::Invalid(format!(
                            "{name} overrides a key inside `{section}`, which is not a section"
                        )));
                    };
                    section_table.insert(key.to_string(), toml::Value::String(value));
                }
                None => {
                    table.insert(rest, toml::Value::String(value));
                }
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))
    }

    pub fn okta_secrets(&self) -> SecretSet {
        SecretSet::new([
            self.okta.shared_secret.clone(),
            self.okta.previous_shared_secret.clone(),
        ])
    }

    pub fn entra_client_states(&self) -> SecretSet {
        SecretSet::new([
            self.entra.client_state.clone(),
            self.entra.previous_client_state.clone(),
        ])
    }

    /// The tenant name used in state keys and queue groups for Entra: the tenant id as ingress
    /// keys it (lowercase; empty when unset), so the sweeper's triggers name the same users.
    pub fn entra_tenant(&self) -> String {
        self.entra
            .tenant_id
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }

    /// The tenant name used in state keys and queue groups for Okta: the org's host.
    pub fn okta_tenant(&self) -> String {
        self.okta
            .org_url
            .as_deref()
            .and_then(host_of)
            .unwrap_or_else(|| "okta".to_string())
    }

    /// What ingress needs: a signing key and at least one IdP it can verify.
    pub fn check_ingress(&self) -> Result<(), ConfigError> {
        require_secret(&self.queue.signing_key, "queue.signing_key")?;
        if self.okta.shared_secret.is_empty() && self.entra.client_state.is_empty() {
            return Err(missing("okta.shared_secret"));
        }
        Ok(())
    }

    /// What the worker needs: the signing key and a usable target.
    pub fn check_worker(&self) -> Result<(), ConfigError> {
        require_secret(&self.queue.signing_key, "queue.signing_key")?;
        if self.target.profile != TargetProfile::DryRun {
            required(&self.target.base_url, "target.base_url")?;
            require_secret(&self.target.token, "target.token")?;
        }
        if self.entra.client_id.is_some() {
            required(&self.entra.tenant_id, "entra.tenant_id")?;
            let e = &self.entra;
            if e.client_private_key.is_empty() && e.client_certificate.is_empty() {
                require_secret(&e.client_secret, "entra.client_secret")?;
            } else {
                require_secret(&e.client_private_key, "entra.client_private_key")?;
                require_secret(&e.client_certificate, "entra.client_certificate")?;
            }
        }
        if self.okta.client_id.is_some() {
            require_secret(&self.okta.private_key, "okta.private_key")?;
        }
        if self.okta.reads_directory() {
            required(&self.okta.org_url, "okta.org_url")?;
        }
        // Deactivating unknown accounts must never reach the one that owns the relay's key.
        if self.sweep.drift == DriftPolicy::Deactivate {
            required(&self.target.credential_owner, "target.credential_owner")?;
        }
        // The relay owns the Graph subscription: it needs the app, and the clientState it gives.
        if self.entra.notification_url.is_some() {
            required(&self.entra.client_id, "entra.client_id")?;
            require_secret(&self.entra.client_state, "entra.client_state")?;
        }
        // SCIM attribute names ignore case.
        if self
            .target
            .attributes
            .keys()
            .any(|k| k.eq_ignore_ascii_case("active"))
        {
            return Err(ConfigError::Invalid(
                "target.attributes cannot map `active`: the IdP's status decides it".into(),
            ));
        }
        for (setting, map) in [
            ("okta.role_groups", &self.okta.role_groups),
            ("entra.role_groups", &self.entra.role_groups),
        ] {
            // A member of no mapped group needs roles too; leaving it to the target would
            // make a user who leaves their last group keep that group's roles.
            if !map.is_empty() && self.target.role_ids.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{setting} needs target.role_ids: the roles of a user in none of the \
                     mapped groups (Datadog: the Standard or Read Only role's UUID)"
                )));
            }
            if let Some((group, _)) = map.iter().find(|(_, roles)| roles.is_empty()) {
                return Err(ConfigError::Invalid(format!(
                    "{setting} maps group {group} to no role"
                )));
            }
        }
        self.attribute_expressions()?;
        self.scoping_rules()?;
        if !(1..=100).contains(&self.okta.rate_limit_percent) {
            return Err(ConfigError::Invalid(
                "okta.rate_limit_percent must be between 1 and 100".into(),
            ));
        }
        if self.target.deprovision_window.is_zero() {
            return Err(ConfigError::Invalid(
                "target.deprovision_window_minutes must be at least 1".into(),
            ));
        }
        // A real target gets users only from the directory: without directory credentials
        // the relay would trust whatever a holder of the Okta secret posts.
        let okta_in_use = self.okta.org_url.is_some() || !self.okta.shared_secret.is_empty();
        if okta_in_use && !self.trusts_event_content() && !self.okta.reads_directory() {
            return Err(ConfigError::Invalid(
                "Okta needs API access to re-read users: an Okta service app (okta.client_id and \
                 okta.private_key, recommended) or an SSWS token (okta.api_token)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `target.attributes` parsed: a value that does not parse is an error naming its path.
    pub fn attribute_expressions(&self) -> Result<BTreeMap<String, Expression>, ConfigError> {
        self.target
            .attributes
            .iter()
            .map(|(path, text)| {
                crate::attributes::expression::parse(text)
                    .map(|e| (path.clone(), e))
                    .map_err(|e| {
                        ConfigError::Invalid(format!("target.attributes.{path} = `{text}`: {e}"))
                    })
            })
            .collect()
    }

    /// `scope.rules` parsed, with `scope.match`.
    pub fn scoping_rules(&self) -> Result<ScopingRules, ConfigError> {
        ScopingRules::parse(&self.scope.rules, self.scope.match_rules == ScopeMatch::All)
            .map_err(|e| ConfigError::Invalid(format!("scope.rules: {e}")))
    }

    /// Whether the worker may use an event's own content when it cannot read the directory.
    pub fn trusts_event_content(&self) -> bool {
        self.target.profile == TargetProfile::DryRun || self.okta.use_event_content
    }

    /// What the Lambdas need on top: the queue and the table.
    /// The inbound Lambda only enqueues: it is given no table (see the template).
    pub fn check_aws_ingress(&self) -> Result<(), ConfigError> {
        required(&self.queue.url, "queue.url")?;
        Ok(())
    }

    pub fn check_aws(&self) -> Result<(), ConfigError> {
        self.check_aws_ingress()?;
        required(&self.store.table, "store.table")?;
        Ok(())
    }

    pub fn check_aws_worker(&self) -> Result<(), ConfigError> {
        self.check_aws()?;
        required(&self.queue.dlq_url, "queue.dlq_url")?;
        Ok(())
    }

    /// Every secret field, for resolving ARNs into values at start-up. Built from the types (see
    /// `Secrets`): a new section or field does not compile until it is accounted for here.
    pub fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        let Settings {
            listen: _,
            database: _,
            queue,
            store,
            okta,
            entra,
            target,
            scope,
            sweep,
        } = self;
        let mut secrets = Vec::new();
        queue.secrets(&mut secrets);
        store.secrets(&mut secrets);
        okta.secrets(&mut secrets);
        entra.secrets(&mut secrets);
        target.secrets(&mut secrets);
        scope.secrets(&mut secrets);
        sweep.secrets(&mut secrets);
        secrets
    }
}

/// The secrets of one section. Each impl takes its section apart field by field, without `..`:
/// a field added to a section does not compile until it is named here, so a new secret cannot
/// be left out of ARN resolution by someone who never heard of this list. (A derive would do the
/// same with more machinery; the sections are few.)
trait Secrets {
    fn secrets<'a>(&'a mut self, into: &mut Vec<&'a mut Secret>);
}

impl Secrets for QueueSettings {
    fn secrets<'a>(&'a mut self, into: &mut Vec<&'a mut Secret>) {
        let QueueSettings {
            signing_key,
            previous_signing_key,
            url: _,
            dlq_url: _,
            max_attempts: _,
            workers: _,
        } = self;
        into.extend([signing_key, previous_signing_key]);
    }
}

impl Secrets for StoreSettings {
    fn secrets<'a>(&'a mut self, _: &mut Vec<&'a mut Secret>) {
        let StoreSettings {
            table: _,
            dedupe_ttl: _,
            history: _,
        } = self;
    }
}

impl Secrets for OktaSettings {
    fn secrets<'a>(&'a mut self, into: &mut Vec<&'a mut Secret>) {
        let OktaSettings {
            org_url: _,
            auth_header: _,
            shared_secret,
            previous_shared_secret,
            api_token,
            client_id: _,
            private_key,
            key_id: _,
            use_event_content: _,
            suspended: _,
            app_id: _,
            group_ids: _,
            role_groups: _,
            rate_limit_percent: _,
        } = self;
        into.extend([
            shared_secret,
            previous_shared_secret,
            api_token,
            private_key,
        ]);
    }
}

impl Secrets for EntraSettings {
    fn secrets<'a>(&'a mut self, into: &mut Vec<&'a mut Secret>) {
        let EntraSettings {
            tenant_id: _,
            client_id: _,
            client_secret,
            client_private_key,
            client_certificate,
            client_state,
            previous_client_state,
            subscription_ids: _,
            graph_url: _,
            login_url: _,
            hard_delete: _,
            hard_delete_confirm: _,
            group_ids: _,
            role_groups: _,
            notification_url: _,
        } = self;
        into.extend([
            client_secret,
            client_private_key,
            client_certificate,
            client_state,
            previous_client_state,
        ]);
    }
}

impl Secrets for TargetSettings {
    fn secrets<'a>(&'a mut self, into: &mut Vec<&'a mut Secret>) {
        let TargetSettings {
            profile: _,
            base_url: _,
            token,
            credential_owner: _,
            sync_groups: _,
            leavers_leave_groups: _,
            role_ids: _,
            attributes: _,
            invite_ttl: _,
            api_key,
            timeout: _,
            protected_users: _,
            deprovision_limit: _,
            deprovision_percent: _,
            deprovision_window: _,
            membership_removal_limit: _,
        } = self;
        into.extend([token, api_key]);
    }
}

impl Secrets for ScopeSettings {
    fn secrets<'a>(&'a mut self, _: &mut Vec<&'a mut Secret>) {
        let ScopeSettings {
            rules: _,
            match_rules: _,
        } = self;
    }
}

impl Secrets for SweepSettings {
    fn secrets<'a>(&'a mut self, _: &mut Vec<&'a mut Secret>) {
        let SweepSettings {
            interval: _,
            invite_attempts: _,
            reconcile: _,
            full_pass_interval: _,
            renew_before: _,
            drift: _,
            drift_interval: _,
        } = self;
    }
}

/// A TOML syntax error as its position and message. Not the error's own rendering: that quotes
/// the offending line, which may be a secret's.
fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(
                "TOML syntax error at line {line}, column {column}: {}",
                e.message()
            )
        }
        None => format!("TOML syntax error: {}", e.message()),
    }
}

fn env_name(key: &str) -> String {
    let key = key.to_ascii_uppercase();
    match key.split_once('.') {
        Some((section, field)) => format!("{ENV_PREFIX}{section}__{field}"),
        None => format!("{ENV_PREFIX}{key}"),
    }
}

fn missing(key: &'static str) -> ConfigError {
    ConfigError::Missing {
        key,
        env: env_name(key),
    }
}

/// A setting the caller cannot do without, or the error that names it and its variable.
pub fn required<'a>(value: &'a Option<String>, key: &'static str) -> Result<&'a str, ConfigError> {
    value.as_deref().ok_or_else(|| missing(key))
}

fn require_secret(value: &Secret, key: &'static str) -> Result<(), ConfigError> {
    if value.is_empty() {
        Err(missing(key))
    } else {
        Ok(())
    }
}

/// `"a, b,,c"` → `["a", "b", "c"]`: the form of every id-list setting in the environment.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `https://example.okta.com/path` → `example.okta.com`.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?', '#']).next()?.trim();
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An attribute map from a TOML table, or from the environment as `path=attribute,…`.
fn attribute_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Map {
        Table(std::collections::BTreeMap<String, String>),
        Text(String),
    }
    match Map::deserialize(d)? {
        Map::Table(t) => Ok(t),
        Map::Text(s) => top_level_list(&s)
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((path, attr)) if !path.trim().is_empty() && !attr.trim().is_empty() => {
                    Ok((path.trim().to_string(), attr.trim().to_string()))
                }
                _ => Err(serde::de::Error::custom(format!(
                    "expected path=attribute, got `{pair}`"
                ))),
            })
            .collect(),
    }
}

/// The comma-separated items of `value`, leaving commas inside parentheses and quotes alone
/// (an expression's arguments: `title=Join(", ", a, b),costCenter=cc`).
fn top_level_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    let mut current = String::new();
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// Roles by group: a TOML table of group → role or list of roles, or `group=role,…` in the
/// environment (a group named twice gets both roles).
fn role_groups<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Roles {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Map {
        Table(BTreeMap<String, Roles>),
        Text(String),
    }
    // A group mapped to nothing (`[]`, `""`) still appears, for the check that refuses it.
    let pairs: Vec<(String, String)> = match Map::deserialize(d)? {
        Map::Table(t) => t
            .into_iter()
            .flat_map(|(group, roles)| {
                let mut roles = match roles {
                    Roles::One(r) => comma_list(&r),
                    Roles::Many(rs) => rs,
                };
                if roles.is_empty() {
                    roles.push(String::new());
                }
                roles.into_iter().map(move |r| (group.clone(), r))
            })
            .collect(),
        Map::Text(s) => comma_list(&s)
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((group, role)) => Ok((group.to_string(), role.to_string())),
                None => Err(serde::de::Error::custom(format!(
                    "expected group=role, got `{pair}`"
                ))),
            })
            .collect::<Result<_, _>>()?,
    };
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, role) in pairs {
        let (group, role) = (group.trim(), role.trim());
        if group.is_empty() {
            return Err(serde::de::Error::custom("a role group's id is empty"));
        }
        let roles = map.entry(group.to_string()).or_default();
        if !role.is_empty() && !roles.iter().any(|r| r == role) {
            roles.push(role.to_string());
        }
    }
    Ok(map)
}

/// Rules from a TOML array, or from a `;`-separated string (the environment's only form).
fn rule_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rules {
        Items(Vec<String>),
        Text(String),
    }
    let items = match Rules::deserialize(d)? {
        Rules::Items(items) => items,
        Rules::Text(s) => s.split(';').map(str::to_string).collect(),
    };
    Ok(items
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect())
}

/// A list from a TOML array, or from a comma-separated string (the environment's only form).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<String>),
        Text(String),
    }
    Ok(match List::deserialize(d)? {
        List::Items(items) => items
            .iter()
            .map(|i| i.trim())
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect(),
        List::Text(s) => comma_list(&s),
    })
}

/// Unset and set-but-blank are one: `None` (templates pass an unused parameter as `""`).
fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    let s = s.trim();
    Ok((!s.is_empty()).then(|| s.to_string()))
}

/// The longest time any setting may give: ten years. Every time the relay computes from a
/// setting (an expiry, a retention, a window) stays far from the calendar's end, so no
/// arithmetic on a setting can overflow (and panic a worker on every message).
pub const MAX_SETTING_TIME: Duration = Duration::from_secs(3650 * 24 * 3600);

/// A whole number of `unit`s (from TOML or the environment), at most [`MAX_SETTING_TIME`]:
/// refused at load rather than met as a panic deep in a sweep.
fn duration<'de, D: Deserializer<'de>>(d: D, unit: Duration) -> Result<Duration, D::Error> {
    let n = number(d)?;
    unit.as_secs()
        .checked_mul(n)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_SETTING_TIME)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{n}` is too long a time: at most ten years ({} {})",
                MAX_SETTING_TIME.as_secs() / unit.as_secs().max(1),
                match unit.as_secs() {
                    1 => "seconds",
                    60 => "minutes",
                    3600 => "hours",
                    _ => "days",
                }
            ))
        })
}

fn hours<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration(d, HOUR)
}

fn days<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration(d, HOUR * 24)
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration(d, Duration::from_secs(1))
}

fn minutes<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration(d, MINUTE)
}

/// Minutes, where 0 means "never".
fn minutes_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d, MINUTE).map(|m| (!m.is_zero()).then_some(m))
}

/// Booleans may come from TOML (`true`) or from the environment (`"true"`, `"1"`, …).
fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got `{other}`"
            ))),
        },
    }
}

/// Numbers may come from TOML (integers) or from the environment (strings).
fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Int(u64),
        Text(String),
    }
    match Num::deserialize(d)? {
        Num::Int(n) => Ok(n),
        Num::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("expected a whole number, got `{s}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let s = Settings::from_toml_and_env("", env(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.okta.auth_header, "authorization");
        assert_eq!(s.target.profile, TargetProfile::DryRun);
        assert_eq!(s.target.invite_ttl, HOUR * 48);
        assert_eq!(s.okta.app_id, None);
        assert!(s.okta.group_ids.is_empty());
    }

    #[test]
    fn environment_overrides_the_file() {
        let toml = "listen = \"0.0.0.0:9\"\n[okta]\nshared_secret = \"from-file\"\n[target]\ninvite_ttl_hours = 24\n";
        let s = Settings::from_toml_and_env(
            toml,
            env(&[
                ("SCIM_RELAY_OKTA__SHARED_SECRET", "from-env"),
                ("SCIM_RELAY_LISTEN", "127.0.0.1:1"),
                ("SCIM_RELAY_TARGET__INVITE_TTL_HOURS", "12"),
                ("SCIM_RELAY_TARGET__PROFILE", "generic"),
                ("SCIM_RELAY_CONFIG", "ignored.toml"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert!(s.okta.shared_secret.matches(b"from-env"));
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.target.invite_ttl, HOUR * 12);
        assert_eq!(s.target.profile, TargetProfile::Generic);
    }

    #[test]
    fn the_sweep_section_reads_from_the_environment_and_a_managed_subscription_needs_its_app() {
        let s = Settings::from_toml_and_env(
            "[queue]\nsigning_key = \"k\"\n[sweep]\ninvite_attempts = 5\n",
            env(&[
                ("SCIM_RELAY_SWEEP__RECONCILE", "false"),
                ("SCIM_RELAY_SWEEP__INTERVAL_MINUTES", "60"),
                (
                    "SCIM_RELAY_ENTRA__NOTIFICATION_URL",
                    "https://relay.example.com/entra",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            (s.sweep.invite_attempts, s.sweep.interval, s.sweep.reconcile),
            (5, Some(HOUR), false)
        );
        assert_eq!(s.sweep.renew_before, HOUR * 72);
        let err = s.check_worker().unwrap_err().to_string();
        assert!(err.contains("entra.client_id"), "{err}");
    }

    #[test]
    fn a_misspelt_key_is_an_error_that_names_it() {
        let err = Settings::from_toml_and_env("", env(&[("SCIM_RELAY_OKTA__SHARED_SECRT", "x")]))
            .unwrap_err();
        assert!(err.to_string().contains("shared_secrt"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_its_line_but_never_quotes_it() {
        let text = "[target]\ntoken = \"s3cret-application-key\nbase_url = \"x\"\n";
        let err = Settings::from_toml_and_env(text, env(&[]))
            .expect_err("a syntax error")
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("s3cret"), "the secret was echoed: {err}");
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_an_error_that_never_quotes_it() {
        for text in [
            "[target]\ntoken = 20240917133742\n",
            "[okta]\nshared_secret = 3.14159265358979\n",
            "[queue]\nsigning_key = [\"s3cret-in-a-list\"]\n",
            "[entra]\nclient_secret = { value = \"s3cret-in-a-table\" }\n",
        ] {
            let err = Settings::from_toml_and_env(text, env(&[]))
                .expect_err("a secret must be a string")
                .to_string();
            for secret in ["20240917133742", "3.14159", "s3cret"] {
                assert!(!err.contains(secret), "the secret was echoed: {err}");
            }
            assert!(err.contains("secret must be a string"), "{err}");
        }
        // A secret's value is never part of a missing-setting error either.
        let mut s = Settings::default();
        s.target.profile = TargetProfile::Generic;
        s.target.token = Secret::new("s3cret-target-token");
        s.queue.signing_key = Secret::new("s3cret-signing-key");
        let err = s.check_worker().expect_err("no base_url").to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn a_bad_number_is_an_error() {
        let err =
            Settings::from_toml_and_env("", env(&[("SCIM_RELAY_QUEUE__MAX_ATTEMPTS", "lots")]))
                .unwrap_err();
        assert!(err.to_string().contains("lots"), "{err}");
    }

    #[test]
    fn missing_settings_name_the_key_and_the_variable() {
        let s = Settings::from_toml_and_env("", env(&[])).unwrap();
        let err = s.check_ingress().unwrap_err().to_string();
        assert!(err.contains("queue.signing_key"), "{err}");
        assert!(err.contains("SCIM_RELAY_QUEUE__SIGNING_KEY"), "{err}");

        let s = Settings::from_toml_and_env(
            "[queue]\nsigning_key = \"k\"\n[target]\nprofile = \"datadog\"\n",
            env(&[]),
        )
        .unwrap();
        let err = s.check_worker().unwrap_err().to_string();
        assert!(err.contains("target.base_url"), "{err}");
        assert!(s
            .check_aws()
            .unwrap_err()
            .to_string()
            .contains("SCIM_RELAY_QUEUE__URL"));
    }

    #[test]
    fn a_real_target_needs_directory_credentials_for_okta() {
        let base = "[queue]\nsigning_key = \"k\"\n[okta]\nshared_secret = \"s\"\n[target]\nbase_url = \"http://t\"\ntoken = \"x\"\n";
        let datadog =
            Settings::from_toml_and_env(base, env(&[("SCIM_RELAY_TARGET__PROFILE", "datadog")]))
                .unwrap();
        let err = datadog.check_worker().unwrap_err().to_string();
        assert!(err.contains("okta.api_token"), "{err}");
        assert!(!datadog.trusts_event_content());

        let opted_in = Settings::from_toml_and_env(
            base,
            env(&[
                ("SCIM_RELAY_TARGET__PROFILE", "datadog"),
                ("SCIM_RELAY_OKTA__USE_EVENT_CONTENT", "true"),
            ]),
        )
        .unwrap();
        assert!(opted_in.check_worker().is_ok());
        assert!(opted_in.trusts_event_content());

        let demo = Settings::from_toml_and_env(base, env(&[])).unwrap();
        assert!(
            demo.check_worker().is_ok(),
            "the dry-run demo needs no directory"
        );
        assert!(demo.trusts_event_content());

        let bad = Settings::from_toml_and_env(
            base,
            env(&[("SCIM_RELAY_OKTA__USE_EVENT_CONTENT", "maybe")]),
        );
        assert!(bad.unwrap_err().to_string().contains("maybe"));
    }

    #[test]
    fn the_attribute_map_comes_from_a_table_or_the_environment() {
        let s = Settings::from_toml_and_env("[target.attributes]\ntitle = \"jobCode\"\n", env(&[]))
            .unwrap();
        assert_eq!(
            s.target.attributes.get("title").map(String::as_str),
            Some("jobCode")
        );
        let s = Settings::from_toml_and_env(
            "",
            env(&[(
                "SCIM_RELAY_TARGET__ATTRIBUTES",
                "title=jobCode, urn:x:User:costCenter=costCenter",
            )]),
        )
        .unwrap();
        assert_eq!(s.target.attributes.len(), 2);
        assert_eq!(s.target.attributes["urn:x:User:costCenter"], "costCenter");
        let s = Settings::from_toml_and_env(
            "",
            env(&[(
                "SCIM_RELAY_TARGET__ATTRIBUTES",
                r#"name.formatted=Join(", ", lastName, firstName), title=Concat("a,\"b", jobCode)"#,
            )]),
        )
        .unwrap();
        assert_eq!(
            s.target.attributes["name.formatted"],
            r#"Join(", ", lastName, firstName)"#
        );
        assert_eq!(s.target.attributes["title"], r#"Concat("a,\"b", jobCode)"#);
        assert!(Settings::from_toml_and_env(
            "",
            env(&[("SCIM_RELAY_TARGET__ATTRIBUTES", "title")])
        )
        .is_err());
        let mut s =
            Settings::from_toml_and_env("[queue]\nsigning_key = \"k\"\n", env(&[])).unwrap();
        s.target
            .attributes
            .insert("active".into(), "isActive".into());
        assert!(s.check_worker().unwrap_err().to_string().contains("active"));
    }

    #[test]
    fn a_bad_expression_or_scoping_rule_is_a_start_up_error_naming_the_setting() {
        let base = "[queue]\nsigning_key = \"k\"\n";
        let s = Settings::from_toml_and_env(
            &format!("{base}[target.attributes]\ntitle = 'Lower(okta:title'\n"),
            env(&[]),
        )
        .unwrap();
        let err = s.check_worker().unwrap_err().to_string();
        assert!(
            err.contains("target.attributes.title = `Lower(okta:title`"),
            "{err}"
        );
        let s = Settings::from_toml_and_env(
            base,
            env(&[(
                "SCIM_RELAY_SCOPE__RULES",
                r#"department in ("Sales", "Support"); title sounds_like "x""#,
            )]),
        )
        .unwrap();
        assert_eq!(
            s.scope.rules.len(),
            2,
            "`;` separates rules, commas stay in a list"
        );
        let err = s.check_worker().unwrap_err().to_string();
        assert!(
            err.contains("scope.rules: scoping rule") && err.contains("sounds_like"),
            "{err}"
        );
        let s = Settings::from_toml_and_env(
            &format!("{base}[scope]\nrules = ['department equals \"Sales\"']\nmatch = \"any\"\n"),
            env(&[]),
        )
        .unwrap();
        assert_eq!(s.scope.match_rules, ScopeMatch::Any);
        s.check_worker().expect("valid rules");
    }

    #[test]
    fn role_groups_come_from_a_table_or_the_environment_and_need_a_default() {
        let s = Settings::from_toml_and_env(
            "[queue]\nsigning_key = \"k\"\n[target]\nrole_ids = [\"standard\"]\n\
             [okta.role_groups]\n\"00gADM\" = [\"admin\", \"ic\"]\n\"00gRO\" = \"read-only\"\n",
            env(&[(
                "SCIM_RELAY_ENTRA__ROLE_GROUPS",
                "grp-1=admin, grp-1=ic, grp-2 = read-only",
            )]),
        )
        .unwrap();
        assert_eq!(s.okta.role_groups["00gADM"], ["admin", "ic"]);
        assert_eq!(s.okta.role_groups["00gRO"], ["read-only"]);
        assert_eq!(s.entra.role_groups["grp-1"], ["admin", "ic"]);
        assert_eq!(s.entra.role_groups["grp-2"], ["read-only"]);
        s.check_worker().expect("a mapping with a default is valid");

        let mut no_default = s.clone();
        no_default.target.role_ids.clear();
        let err = no_default.check_worker().unwrap_err().to_string();
        assert!(
            err.contains("okta.role_groups needs target.role_ids"),
            "{err}"
        );
        let mut empty = s.clone();
        empty.entra.role_groups.insert("grp-3".into(), Vec::new());
        let err = empty.check_worker().unwrap_err().to_string();
        assert!(
            err.contains("entra.role_groups maps group grp-3 to no role"),
            "{err}"
        );
        assert!(Settings::from_toml_and_env(
            "",
            env(&[("SCIM_RELAY_OKTA__ROLE_GROUPS", "00gADM")])
        )
        .is_err());
    }

    #[test]
    fn lists_come_from_a_toml_array_or_a_comma_separated_string() {
        let s = Settings::from_toml_and_env(
            "[okta]\ngroup_ids = [\"00gENG\", \" 00gOPS \", \"\"]\n[target]\nrole_ids = \"r1, r2,,\"\n",
            env(&[("SCIM_RELAY_ENTRA__GROUP_IDS", "grp-a, grp-b")]),
        )
        .unwrap();
        assert_eq!(s.okta.group_ids, ["00gENG", "00gOPS"]);
        assert_eq!(s.target.role_ids, ["r1", "r2"]);
        assert_eq!(s.entra.group_ids, ["grp-a", "grp-b"]);
        let s = Settings::from_toml_and_env(
            "[entra]\nsubscription_ids = [\"sub-1\"]\n",
            env(&[("SCIM_RELAY_ENTRA__SUBSCRIPTION_IDS", "sub-2,sub-3")]),
        )
        .unwrap();
        assert_eq!(s.entra.subscription_ids, ["sub-2", "sub-3"], "env wins");
    }

    #[test]
    fn a_blank_setting_is_unset() {
        let s = Settings::from_toml_and_env(
            "[okta]\napp_id = \"\"\n[target]\ncredential_owner = \" owner@example.com \"\n",
            env(&[
                ("SCIM_RELAY_QUEUE__URL", ""),
                ("SCIM_RELAY_ENTRA__NOTIFICATION_URL", "  "),
                ("SCIM_RELAY_ENTRA__CLIENT_ID", ""),
                ("SCIM_RELAY_OKTA__GROUP_IDS", ""),
            ]),
        )
        .unwrap();
        assert_eq!(s.okta.app_id, None);
        assert_eq!(s.queue.url, None);
        assert_eq!(s.entra.notification_url, None);
        assert_eq!(s.entra.client_id, None);
        assert!(s.okta.group_ids.is_empty());
        assert_eq!(
            s.target.credential_owner.as_deref(),
            Some("owner@example.com")
        );
        let err = s.check_aws().unwrap_err().to_string();
        assert!(err.contains("SCIM_RELAY_QUEUE__URL"), "{err}");
    }

    #[test]
    fn durations_keep_their_unit_named_keys() {
        let s = Settings::from_toml_and_env(
            "[store]\ndedupe_ttl_hours = 1\nhistory_days = 7\n[target]\ntimeout_seconds = 3\n[sweep]\ninterval_minutes = 0\n",
            env(&[("SCIM_RELAY_SWEEP__DRIFT_INTERVAL_HOURS", "0")]),
        )
        .unwrap();
        assert_eq!(s.store.dedupe_ttl, HOUR);
        assert_eq!(s.store.history, HOUR * 24 * 7);
        assert_eq!(s.target.timeout, Duration::from_secs(3));
        assert_eq!(s.sweep.interval, None, "0 turns the sweeper off");
        assert_eq!(s.sweep.drift_interval, Duration::ZERO);
        assert_eq!(s.sweep.full_pass_interval, HOUR * 24);
        let err = Settings::from_toml_and_env(
            "",
            env(&[("SCIM_RELAY_SWEEP__FULL_PASS_HOURS", "18446744073709551615")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        // The Rust field names are not keys.
        assert!(Settings::from_toml_and_env("[store]\ndedupe_ttl = 1\n", env(&[])).is_err());
        // A time no calendar arithmetic survives is refused at start-up, by name, whether from
        // the file or the environment (HistoryDays on Lambda).
        for (toml, vars) in [
            ("[store]\nhistory_days = 100000000000\n", vec![]),
            ("", vec![("SCIM_RELAY_STORE__HISTORY_DAYS", "3651")]),
            (
                "",
                vec![("SCIM_RELAY_STORE__DEDUPE_TTL_HOURS", "9999999999")],
            ),
        ] {
            let err = Settings::from_toml_and_env(toml, env(&vars))
                .expect_err("too long")
                .to_string();
            assert!(err.contains("at most ten years"), "{err}");
        }
        let s = Settings::from_toml_and_env("[store]\nhistory_days = 3650\n", env(&[])).unwrap();
        assert_eq!(s.store.history, MAX_SETTING_TIME);
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error() {
        let err =
            Settings::from_toml_and_env("[target]\nrole_id = \"r1\"\n", env(&[])).unwrap_err();
        assert!(err.to_string().contains("role_id"), "{err}");
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/scim-relay.example.toml");
        let s = Settings::load(Some(&path), env(&[])).unwrap();
        assert_eq!(s.okta.org_url.as_deref(), Some("https://example.okta.com"));
        assert_eq!(s.okta_tenant(), "example.okta.com");
        assert_eq!(s.sweep.interval, Some(MINUTE * 15));
        assert!(s.check_ingress().is_ok());
        assert!(s.check_worker().is_ok());
    }

    #[test]
    fn every_secret_is_enumerated() {
        let mut s = Settings::default();
        for (i, secret) in s.secrets_mut().into_iter().enumerate() {
            *secret = Secret::new(format!("arn:{i}"));
        }
        assert_eq!(s.secrets_mut().len(), 13);
        assert!(s.queue.signing_key.matches(b"arn:0"));
        assert!(s.queue.previous_signing_key.matches(b"arn:1"));
        assert!(s.okta.private_key.matches(b"arn:5"));
        assert!(s.entra.client_private_key.matches(b"arn:7"));
        assert!(s.entra.client_certificate.matches(b"arn:8"));
        assert!(s.target.api_key.matches(b"arn:12"));
        assert!(!s.okta_secrets().is_empty() && !s.entra_client_states().is_empty());
    }

    #[test]
    fn okta_tenant_is_the_org_host() {
        let mut s = Settings::default();
        assert_eq!(s.okta_tenant(), "okta");
        s.okta.org_url = Some("https://Example.okta.com/".into());
        assert_eq!(s.okta_tenant(), "example.okta.com");
        assert_eq!(
            host_of("http://127.0.0.1:9000/x"),
            Some("127.0.0.1:9000".into())
        );
    }
}
