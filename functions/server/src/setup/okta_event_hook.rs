//! The relay's Okta event hook, kept through Okta's Event Hooks API (`/api/v1/eventHooks`):
//! what it should be ([`HookSpec`]), what Okta has, the fewest calls between the two
//! ([`plan_hook`]), and the calls. Okta never returns the hook's secret (`authScheme.value` is
//! write-only), so a hook is judged by its URI, header name and event types; `--rotate`
//! sends the secret again.

use std::collections::BTreeSet;
use std::time::Duration;

use scim_relay_core::directory::okta_credential::OktaCredential;
use scim_relay_core::secret::Secret;
use serde::Deserialize;
use serde_json::{json, Value};

/// What the hook should be.
#[derive(Debug, Clone)]
pub struct HookSpec {
    pub name: String,
    /// The relay's public `/okta` URL.
    pub uri: String,
    /// The header Okta sends the secret in (`okta.auth_header`).
    pub auth_header: String,
    pub secret: Secret,
    pub events: Vec<String>,
}

/// A hook as Okta describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct EventHook {
    pub id: String,
    pub name: String,
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// `VERIFIED` or `UNVERIFIED`.
    #[serde(rename = "verificationStatus", default)]
    pub verification_status: String,
    #[serde(default)]
    pub events: HookEvents,
    #[serde(default)]
    pub channel: HookChannel,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookEvents {
    #[serde(default)]
    pub items: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookChannel {
    #[serde(default)]
    pub config: HookChannelConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HookChannelConfig {
    #[serde(default)]
    pub uri: String,
    #[serde(rename = "authScheme", default)]
    pub auth_scheme: Option<AuthScheme>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthScheme {
    #[serde(default)]
    pub key: String,
}

impl EventHook {
    pub fn is_active(&self) -> bool {
        self.status.eq_ignore_ascii_case("ACTIVE")
    }

    pub fn is_verified(&self) -> bool {
        self.verification_status.eq_ignore_ascii_case("VERIFIED")
    }
}

/// What to do about the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookPlan {
    Create,
    /// Replace it (a new channel must be verified again): why, in words.
    Replace {
        id: String,
        why: Vec<String>,
    },
    Keep {
        id: String,
    },
}

/// The hook named `spec.name` as it should be, against the hooks Okta has.
pub fn plan_hook(spec: &HookSpec, hooks: &[EventHook], rotate: bool) -> HookPlan {
    let Some(hook) = hooks.iter().find(|h| h.name == spec.name) else {
        return HookPlan::Create;
    };
    let mut why = Vec::new();
    if hook.channel.config.uri != spec.uri {
        why.push(format!("URI {} → {}", hook.channel.config.uri, spec.uri));
    }
    let key = hook
        .channel
        .config
        .auth_scheme
        .as_ref()
        .map(|a| a.key.as_str())
        .unwrap_or_default();
    if !key.eq_ignore_ascii_case(&spec.auth_header) {
        why.push(format!("secret header {key} → {}", spec.auth_header));
    }
    let have: BTreeSet<&str> = hook.events.items.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = spec.events.iter().map(String::as_str).collect();
    let added: Vec<&str> = want.difference(&have).copied().collect();
    let dropped: Vec<&str> = have.difference(&want).copied().collect();
    if !added.is_empty() {
        why.push(format!("events added: {}", added.join(", ")));
    }
    if !dropped.is_empty() {
        why.push(format!("events removed: {}", dropped.join(", ")));
    }
    if rotate {
        why.push("the secret sent again (--rotate)".into());
    }
    if why.is_empty() {
        HookPlan::Keep {
            id: hook.id.clone(),
        }
    } else {
        HookPlan::Replace {
            id: hook.id.clone(),
            why,
        }
    }
}

/// The body Okta's create and replace take.
fn hook_body(spec: &HookSpec) -> Value {
    json!({
        "name": spec.name,
        "events": { "type": "EVENT_TYPE", "items": spec.events },
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": spec.uri,
                "headers": [],
                "authScheme": {
                    "type": "HEADER",
                    "key": spec.auth_header,
                    "value": spec.secret.expose(),
                }
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("Okta refused the relay's credential ({0}): it needs okta.eventHooks.manage (a service app: that scope granted; an SSWS token: a super admin's)")]
    Refused(u16),
    #[error("Okta answered {status}: {summary}")]
    Okta { status: u16, summary: String },
    #[error("Okta is not reachable: {0}")]
    Transport(String),
}

/// Okta's error body: `errorSummary` and its causes.
fn okta_error(status: u16, body: &str) -> HookError {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut summary = parsed["errorSummary"]
        .as_str()
        .unwrap_or("no error summary")
        .to_string();
    let causes: Vec<&str> = parsed["errorCauses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["errorSummary"].as_str())
        .collect();
    if !causes.is_empty() {
        summary = format!("{summary} ({})", causes.join("; "));
    }
    HookError::Okta { status, summary }
}

/// The Event Hooks API of one org.
pub struct OktaEventHooks {
    http: reqwest::Client,
    org_url: String,
    credential: OktaCredential,
}

impl OktaEventHooks {
    pub fn new(
        org_url: &str,
        credential: OktaCredential,
        timeout: Duration,
    ) -> Result<Self, HookError> {
        // Verification makes Okta call the relay and wait for it (3 s, one retry).
        let http = scim_relay_core::credentialed_http_client(timeout.max(Duration::from_secs(15)))
            .map_err(HookError::Transport)?;
        Ok(Self {
            http,
            org_url: org_url.trim_end_matches('/').to_string(),
            credential,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HookError> {
        let url = format!("{}/api/v1/eventHooks{path}", self.org_url);
        let authorization = self
            .credential
            .authorize(&self.http, &self.org_url, method.as_str(), &url)
            .await
            .map_err(|e| match e {
                scim_relay_core::directory::DirectoryError::Refused(summary) => HookError::Okta {
                    status: 401,
                    summary,
                },
                e => HookError::Transport(e.to_string()),
            })?;
        let mut request = authorization
            .apply(self.http.request(method, url))
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| HookError::Transport(scim_relay_core::transport_error(e)))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| HookError::Transport(e.to_string()))?;
        match status {
            200..=299 => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
            401 | 403 => Err(HookError::Refused(status)),
            _ => Err(okta_error(status, &text)),
        }
    }

    fn hook(value: Value) -> Result<EventHook, HookError> {
        serde_json::from_value(value).map_err(|e| HookError::Okta {
            status: 200,
            summary: format!("an event hook Okta returned is not readable: {e}"),
        })
    }

    pub async fn list(&self) -> Result<Vec<EventHook>, HookError> {
        let value = self.call(reqwest::Method::GET, "", None).await?;
        serde_json::from_value(value).map_err(|e| HookError::Okta {
            status: 200,
            summary: format!("the event hook list is not readable: {e}"),
        })
    }

    pub async fn create(&self, spec: &HookSpec) -> Result<EventHook, HookError> {
        Self::hook(
            self.call(reqwest::Method::POST, "", Some(&hook_body(spec)))
                .await?,
        )
    }

    pub async fn replace(&self, id: &str, spec: &HookSpec) -> Result<EventHook, HookError> {
        Self::hook(
            self.call(
                reqwest::Method::PUT,
                &format!("/{id}"),
                Some(&hook_body(spec)),
            )
            .await?,
        )
    }

    /// Okta calls the hook's URI with a challenge now; the relay must be reachable there.
    pub async fn verify(&self, id: &str) -> Result<EventHook, HookError> {
        Self::hook(
            self.call(
                reqwest::Method::POST,
                &format!("/{id}/lifecycle/verify"),
                None,
            )
            .await?,
        )
    }

    pub async fn activate(&self, id: &str) -> Result<EventHook, HookError> {
        Self::hook(
            self.call(
                reqwest::Method::POST,
                &format!("/{id}/lifecycle/activate"),
                None,
            )
            .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HookSpec {
        HookSpec {
            name: "scim-relay".into(),
            uri: "https://relay.example.com/okta".into(),
            auth_header: "Authorization".into(),
            secret: Secret::new("s3cret".to_string()),
            events: vec![
                "user.lifecycle.create".into(),
                "user.lifecycle.deactivate".into(),
            ],
        }
    }

    fn okta_has(events: &[&str], uri: &str, key: &str) -> Vec<EventHook> {
        vec![serde_json::from_value(json!({
            "id": "who1", "name": "scim-relay", "status": "ACTIVE", "verificationStatus": "VERIFIED",
            "events": {"type": "EVENT_TYPE", "items": events},
            "channel": {"type": "HTTP", "version": "1.0.0",
                "config": {"uri": uri, "headers": [], "authScheme": {"type": "HEADER", "key": key}}}
        }))
        .unwrap()]
    }

    #[test]
    fn a_hook_as_configured_is_kept_and_any_difference_replaces_it() {
        let same = okta_has(
            &["user.lifecycle.deactivate", "user.lifecycle.create"],
            "https://relay.example.com/okta",
            "authorization",
        );
        assert_eq!(
            plan_hook(&spec(), &same, false),
            HookPlan::Keep { id: "who1".into() }
        );
        assert!(matches!(
            plan_hook(&spec(), &same, true),
            HookPlan::Replace { .. }
        ));
        assert_eq!(plan_hook(&spec(), &[], false), HookPlan::Create);
        let moved = okta_has(
            &["user.lifecycle.create", "group.user_membership.add"],
            "https://old.example.com/okta",
            "Authorization",
        );
        match plan_hook(&spec(), &moved, false) {
            HookPlan::Replace { why, .. } => {
                let why = why.join("; ");
                assert!(why.contains("URI https://old.example.com/okta"), "{why}");
                assert!(
                    why.contains("events added: user.lifecycle.deactivate"),
                    "{why}"
                );
                assert!(
                    why.contains("events removed: group.user_membership.add"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_secret_goes_in_the_body_and_okta_errors_read_as_their_summary() {
        let body = hook_body(&spec());
        assert_eq!(body["channel"]["config"]["authScheme"]["value"], "s3cret");
        assert_eq!(body["events"]["type"], "EVENT_TYPE");
        let e = okta_error(
            400,
            r#"{"errorCode":"E0000001","errorSummary":"Api validation failed: events","errorCauses":[{"errorSummary":"Invalid event type: user.bogus"}]}"#,
        );
        assert_eq!(
            e.to_string(),
            "Okta answered 400: Api validation failed: events (Invalid event type: user.bogus)"
        );
    }
}
