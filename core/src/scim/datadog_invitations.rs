//! Datadog's Users API for invitations: `GET /api/v2/users` (status) and
//! `POST /api/v2/user_invitations` (send). Unlike SCIM it wants the API key next to the
//! application key.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::error::classify;
use super::{InvitationApi, ScimError, TargetUserStatus};
use crate::secret::Secret;

pub struct DatadogInvitations {
    http: reqwest::Client,
    /// `https://api.datadoghq.com/api/v2`.
    api_url: String,
    api_key: Secret,
    app_key: Secret,
}

impl std::fmt::Debug for DatadogInvitations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogInvitations")
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct UserList {
    #[serde(default)]
    data: Vec<UserData>,
}

#[derive(Deserialize)]
struct UserData {
    id: String,
    #[serde(default)]
    attributes: UserAttributes,
}

#[derive(Deserialize, Default)]
struct UserAttributes {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    handle: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct InvitationList {
    #[serde(default)]
    data: Vec<InvitationData>,
}

#[derive(Deserialize)]
struct InvitationData {
    #[serde(default)]
    attributes: InvitationAttributes,
}

#[derive(Deserialize, Default)]
struct InvitationAttributes {
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

impl DatadogInvitations {
    /// `scim_base_url` is the SCIM base (`…/api/v2/scim`); the Users API lives beside it.
    pub fn new(
        scim_base_url: &str,
        api_key: Secret,
        app_key: Secret,
        timeout: Duration,
    ) -> Result<Self, ScimError> {
        let base = scim_base_url.trim_end_matches('/');
        let api_url = base.strip_suffix("/scim").ok_or_else(|| {
            ScimError::transport(format!(
                "target.base_url {base} does not end in /api/v2/scim; cannot find Datadog's Users API"
            ))
        })?;
        let http = crate::credentialed_http_client(timeout).map_err(ScimError::transport)?;
        Ok(Self {
            http,
            api_url: api_url.to_string(),
            api_key,
            app_key,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<String, ScimError> {
        let resp = request
            .header("DD-API-KEY", self.api_key.expose())
            .header("DD-APPLICATION-KEY", self.app_key.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                ScimError::transport(format!("request failed: {}", crate::transport_error(e)))
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Err(classify(
            status,
            header("retry-after"),
            header("x-ratelimit-reset"),
            &text,
        ))
    }
}

fn unreadable(what: &str, e: serde_json::Error) -> ScimError {
    ScimError::transport(format!("Datadog {what} is not readable: {e}"))
}

#[async_trait]
impl InvitationApi for DatadogInvitations {
    async fn status(&self, user_name: &str) -> Result<TargetUserStatus, ScimError> {
        let text = self
            .send(self.http.get(format!("{}/users", self.api_url)).query(&[
                ("filter", user_name),
                ("filter[status]", "Active,Pending,Disabled"),
                // `filter` matches substrings: a page large enough to hold the exact account.
                ("page[size]", "100"),
            ]))
            .await?;
        let list: UserList = serde_json::from_str(&text).map_err(|e| unreadable("user list", e))?;
        // `filter` matches substrings of names and emails: only the exact account counts.
        let same = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case(user_name))
        };
        let Some(user) = list
            .data
            .into_iter()
            .find(|u| same(&u.attributes.email) || same(&u.attributes.handle))
        else {
            return Ok(TargetUserStatus::Missing);
        };
        Ok(match user.attributes.status.as_deref() {
            Some("Active") => TargetUserStatus::Active,
            Some("Pending") => TargetUserStatus::Pending { user_id: user.id },
            _ => TargetUserStatus::Disabled,
        })
    }

    async fn resend(&self, user_id: &str) -> Result<Option<DateTime<Utc>>, ScimError> {
        let body = json!({"data": [{
            "type": "user_invitations",
            "relationships": {"user": {"data": {"type": "users", "id": user_id}}}
        }]});
        let text = self
            .send(
                self.http
                    .post(format!("{}/user_invitations", self.api_url))
                    .json(&body),
            )
            .await?;
        let sent: InvitationList =
            serde_json::from_str(&text).map_err(|e| unreadable("invitation", e))?;
        Ok(sent
            .data
            .into_iter()
            .next()
            .and_then(|d| d.attributes.expires_at))
    }
}
