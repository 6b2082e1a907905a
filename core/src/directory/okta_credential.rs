//! How the relay authenticates to Okta's API: an Okta service app (OAuth 2.0 client
//! credentials with `private_key_jwt`, the access token cached until a minute before it
//! expires), or an SSWS API token. Okta recommends the service app: its grants are scoped to
//! what the relay reads, and it belongs to no person (an SSWS token acts as the admin who made
//! it, with all their rights, and dies with their account).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::client_assertion::ClientKey;
use super::DirectoryError;
use crate::secret::Secret;

/// What the service app asks for: read users, groups and the System Log (and app assignments
/// when an app scopes provisioning). Nothing that writes.
pub fn service_app_scopes(app_scoped: bool) -> String {
    let mut scopes = vec!["okta.users.read", "okta.groups.read", "okta.logs.read"];
    if app_scoped {
        scopes.push("okta.apps.read");
    }
    scopes.join(" ")
}

pub enum OktaCredential {
    ApiToken(Secret),
    ServiceApp {
        client_id: String,
        key: Box<ClientKey>,
        scopes: String,
        /// The access token and when to stop using it.
        token: Mutex<Option<(Secret, Instant)>>,
    },
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct TokenRefusal {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl OktaCredential {
    pub fn service_app(client_id: String, key: ClientKey, scopes: String) -> Self {
        OktaCredential::ServiceApp {
            client_id,
            key: Box::new(key),
            scopes,
            token: Mutex::new(None),
        }
    }

    /// The `Authorization` header value for the next call.
    pub async fn authorization(
        &self,
        http: &reqwest::Client,
        org_url: &str,
    ) -> Result<String, DirectoryError> {
        let (client_id, key, scopes, token) = match self {
            OktaCredential::ApiToken(t) => return Ok(format!("SSWS {}", t.expose())),
            OktaCredential::ServiceApp {
                client_id,
                key,
                scopes,
                token,
            } => (client_id, key, scopes, token),
        };
        let mut cached = token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(format!("Bearer {}", token.expose()));
            }
        }
        let audience = format!("{org_url}/oauth2/v1/token");
        let assertion = key
            .assertion(client_id, &audience, Utc::now())
            .map_err(|e| DirectoryError::Permanent(e.to_string()))?;
        let resp = http
            .post(&audience)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scopes.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                DirectoryError::Retryable(format!("Okta token: {}", crate::transport_error(e)))
            })?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(DirectoryError::Retryable(format!(
                "Okta's token endpoint answered {status}"
            )));
        }
        if !resp.status().is_success() {
            let refusal: TokenRefusal = resp.json().await.unwrap_or_default();
            // An operator can fix it (a key not uploaded, a scope not granted): the workers
            // pause and the triggers wait, as for a refused SSWS token.
            return Err(DirectoryError::Refused(format!(
                "Okta refused the service app's token request ({status} {}: {}); check \
                 okta.client_id, okta.private_key (its public key in the app) and the granted \
                 scopes ({scopes})",
                refusal.error, refusal.error_description
            )));
        }
        let answer: TokenAnswer = resp.json().await.map_err(|e| {
            DirectoryError::Retryable(format!("Okta's access token is not readable: {e}"))
        })?;
        let lifetime = answer.expires_in.unwrap_or(3600).saturating_sub(60);
        let token = Secret::new(answer.access_token);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(format!("Bearer {}", token.expose()))
    }

    /// After a 401: the cached access token is dropped, so the next call fetches a new one.
    /// Whether there was one to drop (an SSWS token cannot be renewed).
    pub async fn forget(&self) -> bool {
        match self {
            OktaCredential::ServiceApp { token, .. } => token.lock().await.take().is_some(),
            OktaCredential::ApiToken(_) => false,
        }
    }

    /// The setting to fix when Okta refuses the credential.
    pub fn setting(&self) -> &'static str {
        match self {
            OktaCredential::ApiToken(_) => "okta.api_token",
            OktaCredential::ServiceApp { .. } => "okta.client_id and okta.private_key",
        }
    }
}
