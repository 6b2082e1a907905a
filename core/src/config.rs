//! The configuration contract: one TOML file, every key overridable by an environment variable
//! `SCIM_RELAY_<SECTION>__<KEY>` (top-level keys: `SCIM_RELAY_<KEY>`). The Lambdas use the same
//! keys from their environment only.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use crate::secret::{Secret, SecretSet};

const ENV_PREFIX: &str = "SCIM_RELAY_";
/// Environment variables with our prefix that are not settings.
const ENV_NOT_SETTINGS: &[&str] = &["SCIM_RELAY_CONFIG", "SCIM_RELAY_LOG"];

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
    pub sweep: SweepSettings,
}

/// The sweeper: what webhooks alone miss (lost events, expired invitations, subscriptions that
/// run out, a revoked target credential).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepSettings {
    /// Standalone: minutes between sweeps; 0 turns the sweeper off. (Lambda: the template's
    /// `SweepSchedule`.)
    #[serde(deserialize_with = "number")]
    pub interval_minutes: u64,
    /// Invitations sent in all (the one on create included) before a user who never signed in
    /// is reported instead of invited again.
    #[serde(deserialize_with = "number")]
    pub invite_attempts: u64,
    /// Read each directory's changes since the last sweep and re-check those users.
    #[serde(deserialize_with = "boolean")]
    pub reconcile: bool,
    /// How often reconciliation reads every user instead of the changes: the only way to see
    /// users deleted outright while their events were lost.
    #[serde(deserialize_with = "number")]
    pub full_pass_hours: u64,
    /// Renew the Graph subscription when less than this is left of it.
    #[serde(deserialize_with = "number")]
    pub renew_before_hours: u64,
    /// Target users the relay has no record of (not provisioned from the IdP): `report` them,
    /// `deactivate` them too, or `off`.
    pub drift: DriftPolicy,
    /// How often the drift report runs (it lists every target user).
    #[serde(deserialize_with = "number")]
    pub drift_interval_hours: u64,
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
            interval_minutes: 15,
            invite_attempts: 3,
            reconcile: true,
            full_pass_hours: 24,
            renew_before_hours: 72,
            drift: DriftPolicy::Report,
            drift_interval_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// HMAC-SHA256 key with which ingress signs queue messages and the worker checks them.
    pub signing_key: Secret,
    /// SQS FIFO queue URL (Lambda).
    pub url: String,
    /// SQS FIFO dead-letter queue URL (Lambda): where the worker parks what it cannot apply.
    pub dlq_url: String,
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
    pub table: String,
    /// How long a processed event id is remembered for deduplication.
    #[serde(deserialize_with = "number")]
    pub dedupe_ttl_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OktaSettings {
    /// `https://example.okta.com`: where users are re-read, and the tenant name in state keys.
    pub org_url: String,
    /// Header that carries the event hook's shared secret.
    pub auth_header: String,
    pub shared_secret: Secret,
    /// The secret being rotated out; accepted until removed.
    pub previous_shared_secret: Secret,
    /// SSWS API token for the Users API. Without it the worker uses what the event carries.
    pub api_token: Secret,
    /// Without `api_token`, apply what the event itself says (its `alternateId`, and the event
    /// type as the status) instead of re-reading the user. Anyone holding the shared secret can
    /// then create accounts, so it is only implied for the dry-run target (the local demo).
    #[serde(deserialize_with = "boolean")]
    pub use_event_content: bool,
    /// What a suspended Okta user becomes on the target.
    pub suspended: SuspendPolicy,
    /// Provision only users assigned to this Okta app (its `0oa…` id)…
    pub app_id: String,
    /// …or members of one of these Okta groups (comma-separated `00g…` ids).
    pub group_ids: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EntraSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// The `clientState` given when the Graph subscription was created.
    pub client_state: Secret,
    pub previous_client_state: Secret,
    /// Comma-separated subscription ids to accept; empty accepts any with a valid clientState.
    pub subscription_ids: String,
    pub graph_url: String,
    pub login_url: String,
    /// What a hard-deleted Entra user becomes on the target.
    pub hard_delete: HardDeletePolicy,
    /// Provision only (transitive) members of these Entra groups (comma-separated object ids).
    pub group_ids: String,
    /// The public HTTPS URL of the relay's `/entra` endpoint. When set, the sweeper creates and
    /// renews the Graph `/users` subscription itself, with `client_state` as its clientState.
    pub notification_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSettings {
    pub profile: TargetProfile,
    /// SCIM base URL, e.g. `https://api.datadoghq.com/api/v2/scim`.
    pub base_url: String,
    /// Bearer token (Datadog: an application key of a service account).
    pub token: Secret,
    /// userName (email) of the account that owns `token`. The relay never deactivates it.
    pub credential_owner: String,
    /// Mirror membership of the configured IdP groups (`okta.group_ids`, `entra.group_ids`) as
    /// SCIM Groups (Datadog: Teams, once Datadog support has enabled them).
    #[serde(deserialize_with = "boolean")]
    pub sync_groups: bool,
    /// Datadog: role UUIDs given to every provisioned user (comma-separated). Empty: the org's
    /// default role.
    pub role_ids: String,
    /// SCIM path → IdP attribute (Okta profile key, Graph property), over the profile's
    /// defaults: `[target.attributes]` in TOML, or `path=attribute,…` in the environment.
    #[serde(deserialize_with = "attribute_map")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// How long an invitation sent on create stays valid (Datadog: 48 h).
    #[serde(deserialize_with = "number")]
    pub invite_ttl_hours: u64,
    /// Datadog API key. Datadog's Users API (invitation status and re-sends) wants it next to
    /// the application key in `token`; without it expired invitations are only reported.
    pub api_key: Secret,
    #[serde(deserialize_with = "number")]
    pub timeout_seconds: u64,
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
            sweep: SweepSettings::default(),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::default(),
            url: String::new(),
            dlq_url: String::new(),
            max_attempts: 8,
            workers: 4,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            table: String::new(),
            dedupe_ttl_hours: 72,
        }
    }
}

impl Default for OktaSettings {
    fn default() -> Self {
        Self {
            org_url: String::new(),
            auth_header: "authorization".into(),
            shared_secret: Secret::default(),
            previous_shared_secret: Secret::default(),
            api_token: Secret::default(),
            use_event_content: false,
            suspended: SuspendPolicy::Deactivate,
            app_id: String::new(),
            group_ids: String::new(),
        }
    }
}

impl Default for EntraSettings {
    fn default() -> Self {
        Self {
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            client_state: Secret::default(),
            previous_client_state: Secret::default(),
            subscription_ids: String::new(),
            graph_url: "https://graph.microsoft.com".into(),
            login_url: "https://login.microsoftonline.com".into(),
            hard_delete: HardDeletePolicy::Deactivate,
            group_ids: String::new(),
            notification_url: String::new(),
        }
    }
}

impl Default for TargetSettings {
    fn default() -> Self {
        Self {
            profile: TargetProfile::DryRun,
            base_url: String::new(),
            token: Secret::default(),
            credential_owner: String::new(),
            sync_groups: false,
            role_ids: String::new(),
            attributes: Default::default(),
            invite_ttl_hours: 48,
            api_key: Secret::default(),
            timeout_seconds: 10,
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
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
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
    /// keys it (trimmed, lowercase), so the sweeper's triggers name the same users.
    pub fn entra_tenant(&self) -> String {
        self.entra.tenant_id.trim().to_ascii_lowercase()
    }

    /// The tenant name used in state keys and queue groups for Okta: the org's host.
    pub fn okta_tenant(&self) -> String {
        host_of(&self.okta.org_url).unwrap_or_else(|| "okta".to_string())
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
            require(&self.target.base_url, "target.base_url")?;
            require_secret(&self.target.token, "target.token")?;
        }
        if !self.entra.client_id.is_empty() {
            require(&self.entra.tenant_id, "entra.tenant_id")?;
            require_secret(&self.entra.client_secret, "entra.client_secret")?;
        }
        if !self.okta.api_token.is_empty() {
            require(&self.okta.org_url, "okta.org_url")?;
        }
        // Deactivating unknown accounts must never reach the one that owns the relay's key.
        if self.sweep.drift == DriftPolicy::Deactivate {
            require(&self.target.credential_owner, "target.credential_owner")?;
        }
        // The relay owns the Graph subscription: it needs the app, and the clientState it gives.
        if !self.entra.notification_url.trim().is_empty() {
            require(&self.entra.client_id, "entra.client_id")?;
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
        // A real target gets users only from the directory: without directory credentials
        // the relay would trust whatever a holder of the Okta secret posts.
        let okta_in_use = !self.okta.org_url.is_empty() || !self.okta.shared_secret.is_empty();
        if okta_in_use && !self.trusts_event_content() {
            require_secret(&self.okta.api_token, "okta.api_token")?;
        }
        Ok(())
    }

    /// Whether the worker may use an event's own content when it cannot read the directory.
    pub fn trusts_event_content(&self) -> bool {
        self.target.profile == TargetProfile::DryRun || self.okta.use_event_content
    }

    /// What the Lambdas need on top: the queue and the table.
    /// The inbound Lambda only enqueues: it is given no table (see the template).
    pub fn check_aws_ingress(&self) -> Result<(), ConfigError> {
        require(&self.queue.url, "queue.url")
    }

    pub fn check_aws(&self) -> Result<(), ConfigError> {
        self.check_aws_ingress()?;
        require(&self.store.table, "store.table")
    }

    pub fn check_aws_worker(&self) -> Result<(), ConfigError> {
        self.check_aws()?;
        require(&self.queue.dlq_url, "queue.dlq_url")
    }

    /// Every secret field, for resolving ARNs into values at start-up.
    pub fn secrets_mut(&mut self) -> [&mut Secret; 9] {
        [
            &mut self.queue.signing_key,
            &mut self.okta.shared_secret,
            &mut self.okta.previous_shared_secret,
            &mut self.okta.api_token,
            &mut self.entra.client_secret,
            &mut self.entra.client_state,
            &mut self.entra.previous_client_state,
            &mut self.target.token,
            &mut self.target.api_key,
        ]
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

fn require(value: &str, key: &'static str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(missing(key))
    } else {
        Ok(())
    }
}

fn require_secret(value: &Secret, key: &'static str) -> Result<(), ConfigError> {
    if value.is_empty() {
        Err(missing(key))
    } else {
        Ok(())
    }
}

/// `"a, b,,c"` → `["a", "b", "c"]`: the form of every id-list setting.
pub fn comma_list(value: &str) -> Vec<String> {
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
        Map::Text(s) => comma_list(&s)
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
        assert_eq!(s.target.invite_ttl_hours, 48);
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
        assert_eq!(s.target.invite_ttl_hours, 12);
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
            (
                s.sweep.invite_attempts,
                s.sweep.interval_minutes,
                s.sweep.reconcile
            ),
            (5, 60, false)
        );
        assert_eq!(s.sweep.renew_before_hours, 72);
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
    fn okta_tenant_is_the_org_host() {
        let mut s = Settings::default();
        s.okta.org_url = "https://Example.okta.com/".into();
        assert_eq!(s.okta_tenant(), "example.okta.com");
        assert_eq!(
            host_of("http://127.0.0.1:9000/x"),
            Some("127.0.0.1:9000".into())
        );
    }
}
