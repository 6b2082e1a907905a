//! How the relay authenticates to Okta's API: an Okta service app (OAuth 2.0 client
//! credentials with `private_key_jwt`, the access token cached until a minute before it
//! expires), or an SSWS API token. Okta recommends the service app: its grants are scoped to
//! what the relay reads, and it belongs to no person (an SSWS token acts as the admin who made
//! it, with all their rights, and dies with their account). A service app that requires DPoP
//! (Okta's default for new ones) is noticed from the token endpoint's refusal; from then on the
//! token is bound to a key of this process and every call carries its proof ([`super::dpop`]).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::client_assertion::ClientKey;
use super::dpop::{nonce_asked, DpopKey};
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
        /// The access token, when to stop using it, and whether it is bound to the DPoP key.
        token: Mutex<Option<(Secret, Instant, bool)>>,
        dpop: Box<Mutex<Dpop>>,
    },
}

/// What the relay knows of the app's DPoP: the key, once Okta asked for proofs, and the
/// nonces the token endpoint and the API last asked proofs to carry.
#[derive(Default)]
pub struct Dpop {
    key: Option<DpopKey>,
    token_nonce: Option<String>,
    api_nonce: Option<String>,
}

/// The headers that authorize one call.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub authorization: String,
    /// The call's DPoP proof, when the token is bound.
    pub dpop: Option<String>,
}

impl Authorization {
    /// `request` with these headers.
    pub fn apply(self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header("Authorization", self.authorization);
        match self.dpop {
            Some(proof) => request.header("DPoP", proof),
            None => request,
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Token requests one call may make: a first try, the DPoP key once Okta asks for proofs,
/// and the nonce it then asks for.
const TOKEN_ATTEMPTS: usize = 3;

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
            dpop: Box::new(Mutex::new(Dpop::default())),
        }
    }

    /// The headers for a `method` call to `url`: the SSWS token, or the service app's access
    /// token (fetched when none is cached) with its DPoP proof when it is bound.
    pub async fn authorize(
        &self,
        http: &reqwest::Client,
        org_url: &str,
        method: &str,
        url: &str,
    ) -> Result<Authorization, DirectoryError> {
        let (client_id, key, scopes, token, dpop) = match self {
            OktaCredential::ApiToken(t) => {
                return Ok(Authorization {
                    authorization: format!("SSWS {}", t.expose()),
                    dpop: None,
                })
            }
            OktaCredential::ServiceApp {
                client_id,
                key,
                scopes,
                token,
                dpop,
            } => (client_id, key, scopes, token, dpop),
        };
        let mut cached = token.lock().await;
        let (access, bound) = match cached.as_ref() {
            Some((access, until, bound)) if Instant::now() < *until => (access.clone(), *bound),
            _ => {
                let (access, lifetime, bound) =
                    fetch_token(http, org_url, client_id, key, scopes, dpop).await?;
                *cached = Some((access.clone(), Instant::now() + lifetime, bound));
                (access, bound)
            }
        };
        if !bound {
            return Ok(Authorization {
                authorization: format!("Bearer {}", access.expose()),
                dpop: None,
            });
        }
        let dpop = dpop.lock().await;
        let key = dpop
            .key
            .as_ref()
            .ok_or_else(|| DirectoryError::Permanent("a DPoP token without its key".into()))?;
        let proof = key.proof(
            method,
            url,
            dpop.api_nonce.as_deref(),
            Some(access.expose()),
            Utc::now(),
        )?;
        Ok(Authorization {
            authorization: format!("DPoP {}", access.expose()),
            dpop: Some(proof),
        })
    }

    /// After a 401 from the API: whether it asked for a DPoP nonce the proofs did not carry
    /// (kept: the call is worth one more try with it).
    pub async fn learn_nonce(&self, headers: &reqwest::header::HeaderMap) -> bool {
        let OktaCredential::ServiceApp { dpop, .. } = self else {
            return false;
        };
        let asked = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("use_dpop_nonce"));
        match nonce_asked(headers).filter(|_| asked) {
            Some(nonce) => {
                let mut dpop = dpop.lock().await;
                let new = dpop.api_nonce.as_deref() != Some(nonce.as_str());
                dpop.api_nonce = Some(nonce);
                new
            }
            None => false,
        }
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

/// The client-credentials request (a fresh assertion each try: Okta takes each once), with a
/// DPoP proof once Okta asked for them: the access token, its lifetime, and whether it is
/// bound to the key.
async fn fetch_token(
    http: &reqwest::Client,
    org_url: &str,
    client_id: &str,
    key: &ClientKey,
    scopes: &str,
    dpop: &Mutex<Dpop>,
) -> Result<(Secret, Duration, bool), DirectoryError> {
    let audience = format!("{org_url}/oauth2/v1/token");
    for _ in 0..TOKEN_ATTEMPTS {
        let assertion = key
            .assertion(client_id, &audience, Utc::now())
            .map_err(|e| DirectoryError::Permanent(e.to_string()))?;
        let mut request = http.post(&audience).form(&[
            ("grant_type", "client_credentials"),
            ("scope", scopes),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ]);
        {
            let dpop = dpop.lock().await;
            if let Some(dpop_key) = &dpop.key {
                let proof = dpop_key.proof(
                    "POST",
                    &audience,
                    dpop.token_nonce.as_deref(),
                    None,
                    Utc::now(),
                )?;
                request = request.header("DPoP", proof);
            }
        }
        let resp = request.send().await.map_err(|e| {
            DirectoryError::Retryable(format!("Okta token: {}", crate::transport_error(e)))
        })?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(DirectoryError::Retryable(format!(
                "Okta's token endpoint answered {status}"
            )));
        }
        if !resp.status().is_success() {
            let nonce = nonce_asked(resp.headers());
            let refusal: TokenRefusal = resp.json().await.unwrap_or_default();
            let mut state = dpop.lock().await;
            match refusal.error.as_str() {
                // The proof must carry the nonce Okta just gave.
                "use_dpop_nonce" if state.key.is_some() && nonce.is_some() => {
                    state.token_nonce = nonce;
                    continue;
                }
                // The app requires DPoP: from now on every token is bound to a key of ours.
                "invalid_dpop_proof" if state.key.is_none() => {
                    tracing::info!("the Okta service app requires DPoP: binding its tokens");
                    state.key = Some(DpopKey::generate()?);
                    continue;
                }
                _ => {}
            }
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
        let bound = answer
            .token_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
        let lifetime = answer.expires_in.unwrap_or(3600).saturating_sub(60);
        return Ok((
            Secret::new(answer.access_token),
            Duration::from_secs(lifetime),
            bound,
        ));
    }
    Err(DirectoryError::Refused(
        "Okta kept refusing the service app's DPoP proofs; check the app's DPoP setting".into(),
    ))
}
