//! A SCIM 2.0 client over HTTP, for Datadog and RFC 7644 providers.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use serde_json::Value;

use super::error::classify;
use super::{patch_body, ListedUser, PatchOp, ScimError, ScimRecord, ScimTarget, UserPage};
use crate::config::TargetProfile;
use crate::secret::Secret;

/// Transport failures and 5xx are retried this many times in-process, with jittered backoff,
/// before the message goes back to the queue.
const ATTEMPTS: u32 = 3;

/// Characters escaped in an id used as a path segment (RFC 3986 unreserved ones stay).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub struct HttpScimTarget {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    content_type: &'static str,
    profile: TargetProfile,
    etags: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for HttpScimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpScimTarget")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl HttpScimTarget {
    pub fn new(
        profile: TargetProfile,
        base_url: &str,
        token: Secret,
        timeout: Duration,
    ) -> Result<Self, ScimError> {
        let http = crate::credentialed_http_client(timeout).map_err(ScimError::transport)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            // Datadog documents application/json; RFC 7644 clients send application/scim+json.
            profile,
            etags: tokio::sync::OnceCell::new(),
            content_type: match profile {
                TargetProfile::Generic => "application/scim+json",
                _ => "application/json",
            },
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, String), ScimError> {
        self.send_if_match(method, path, query, body, None)
            .await
            .map(|(status, text, _)| (status, text))
    }

    /// `GET {endpoint}?filter=attribute eq "value"`: the matching resources. Two are asked for,
    /// enough to tell one match from several.
    async fn find_by(
        &self,
        endpoint: &str,
        attribute: &str,
        value: &str,
    ) -> Result<Vec<Value>, ScimError> {
        let filter = format!("{attribute} eq \"{}\"", quote(value));
        let (_, text) = self
            .send(
                reqwest::Method::GET,
                endpoint,
                &[("filter", &filter), ("startIndex", "1"), ("count", "2")],
                None,
            )
            .await?;
        Ok(parse(&text)?
            .get("Resources")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Whether the provider advertises ETags in `/ServiceProviderConfig` (asked once; only the
    /// generic profile asks: Datadog documents none).
    async fn etags(&self) -> bool {
        if self.profile != TargetProfile::Generic {
            return false;
        }
        // Only a real answer is remembered: a failed probe is asked again next time.
        let probe = self
            .etags
            .get_or_try_init(|| async {
                let (_, text) = self
                    .send(reqwest::Method::GET, "/ServiceProviderConfig", &[], None)
                    .await?;
                Ok::<bool, ScimError>(
                    serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|c| c["etag"]["supported"].as_bool())
                        .unwrap_or(false),
                )
            })
            .await;
        match probe {
            Ok(supported) => *supported,
            Err(e) => {
                tracing::warn!("ServiceProviderConfig unavailable, writing without If-Match: {e}");
                false
            }
        }
    }

    /// The resource's current version, for `If-Match`: the ETag header, or `meta.version`.
    async fn current_version(&self, path: &str) -> Result<Option<String>, ScimError> {
        let (_, text, etag) = self
            .send_if_match(reqwest::Method::GET, path, &[], None, None)
            .await?;
        Ok(etag.or_else(|| {
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|r| r["meta"]["version"].as_str().map(str::to_string))
        }))
    }

    /// A write that, where the provider supports ETags, only applies to the version just read
    /// (RFC 7644 §3.14): a concurrent change makes it fail with 412, and the retry re-reads.
    async fn write_user(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), ScimError> {
        if !self.etags().await {
            return self.send(method, path, &[], body).await.map(|_| ());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let version = self.current_version(path).await?;
            match self
                .send_if_match(method.clone(), path, &[], body, version.as_deref())
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.status == Some(412) && attempt < ATTEMPTS => {
                    tracing::debug!("resource changed under us; reading it again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_if_match(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(u16, String, Option<String>), ScimError> {
        let url = format!("{}{}", self.base_url, path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .query(query)
                .header(AUTHORIZATION, format!("Bearer {}", self.token.expose()))
                .header(ACCEPT, "application/scim+json, application/json");
            if let Some(b) = body {
                req = req
                    .header(CONTENT_TYPE, self.content_type)
                    .body(b.to_string());
            }
            if let Some(version) = if_match {
                req = req.header(IF_MATCH, version);
            }
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        let etag = header(&headers, "etag").map(str::to_string);
                        return Ok((status, text, etag));
                    }
                    Err(classify(
                        status,
                        header(&headers, "retry-after"),
                        header(&headers, "x-ratelimit-reset"),
                        &text,
                    ))
                }
                Err(e) => Err(ScimError::transport(if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    format!("request failed: {}", crate::transport_error(e))
                })),
            };
            let err = match result {
                Ok(ok) => return Ok(ok),
                Err(err) => err,
            };
            // A rate-limited request waits for the queue, not in-process; other retryable
            // failures get a short jittered backoff first.
            // A POST is not repeated blindly: it may have created the user before failing.
            // The worker looks the user up instead.
            let in_process = err.failure == super::ScimFailure::Retryable
                && err.retry_after.is_none()
                && method != reqwest::Method::POST
                // A stale If-Match stays stale: the caller reads the version again.
                && err.status != Some(412)
                && attempt < ATTEMPTS;
            if !in_process {
                return Err(err);
            }
            let backoff = 100u64 * 2u64.pow(attempt) + fastrand::u64(0..100);
            tracing::debug!(
                attempt,
                backoff_ms = backoff,
                "retrying SCIM request: {err}"
            );
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
    }
}

/// A value inside a double-quoted SCIM filter string.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The one match, none, or a permanent error: the relay never picks among several.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse(text: &str) -> Result<Value, ScimError> {
    serde_json::from_str(text).map_err(|e| ScimError {
        failure: super::ScimFailure::Retryable,
        status: None,
        detail: format!("target answered with a body that is not JSON: {e}"),
        retry_after: None,
    })
}

/// `/Groups/{id}`, the id encoded as one path segment.
fn group_path(group_id: &str) -> String {
    format!(
        "/Groups/{}",
        percent_encoding::utf8_percent_encode(group_id, PATH_SEGMENT)
    )
}

impl HttpScimTarget {
    /// A `PATCH /Groups/{id}` body of one operation. Datadog documents the path-less form
    /// (`{"op":"add","value":{"members":…}}`); RFC 7644 providers take the path.
    fn group_patch(&self, op: PatchOp) -> Value {
        match (self.profile, &op.value) {
            (TargetProfile::Datadog, Some(value)) => serde_json::json!({
                "schemas": [super::PATCH_SCHEMA],
                "Operations": [{ "op": op.op, "value": { op.path.as_str(): value } }]
            }),
            _ => patch_body(&[op]),
        }
    }
}

#[async_trait]
impl ScimTarget for HttpScimTarget {
    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        let (start, count) = (start_index.to_string(), count.to_string());
        let (_, text) = self
            .send(
                reqwest::Method::GET,
                "/Users",
                &[("startIndex", &start), ("count", &count)],
                None,
            )
            .await?;
        let list = parse(&text)?;
        let users = list
            .get("Resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(ListedUser::from_resource)
            .collect();
        Ok(UserPage {
            users,
            total: list
                .get("totalResults")
                .and_then(Value::as_u64)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(0),
        })
    }

    async fn probe(&self) -> Result<(), ScimError> {
        // A filtered look-up, as the worker makes: some providers refuse an unfiltered list.
        self.find_by("/Users", "userName", "scim-relay-credential-probe")
            .await
            .map(|_| ())
    }

    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        let found = self.find_by("/Users", "userName", user_name).await?;
        super::target::matching_user(&found, user_name)
    }

    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        let (_, text) = self
            .send(reqwest::Method::POST, "/Users", &[], Some(resource))
            .await?;
        ScimRecord::from_resource(&parse(&text)?)
            .ok_or_else(|| ScimError::transport("create answered without an id"))
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        let found = self.find_by("/Groups", "displayName", display_name).await?;
        let mut ids: Vec<String> = found
            .iter()
            .filter(|g| g.get("displayName").and_then(Value::as_str) == Some(display_name))
            .filter_map(|g| g.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        if ids.len() > 1 {
            // Two workers creating the group at once make two; the one that loses the record
            // deletes its own in a moment. Until then, wait rather than pick.
            return Err(ScimError {
                retry_after: Some(Duration::from_secs(1)),
                ..ScimError::transport("several target groups share one displayName; trying again")
            });
        }
        Ok(ids.pop())
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        let path = group_path(group_id);
        match self.send(reqwest::Method::DELETE, &path, &[], None).await {
            Ok(_) => Ok(()),
            Err(e) if e.failure == super::ScimFailure::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        let group = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": display_name,
            "members": []
        });
        match self
            .send(reqwest::Method::POST, "/Groups", &[], Some(&group))
            .await
        {
            Ok((_, text)) => parse(&text)?
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ScimError::transport("group create answered without an id")),
            // Created meanwhile (or before): use it.
            Err(e)
                if e.failure == super::ScimFailure::Conflict
                    || e.failure == super::ScimFailure::Retryable =>
            {
                self.find_group(display_name).await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        let body = self.group_patch(PatchOp::replace(
            "displayName",
            serde_json::json!(display_name),
        ));
        let path = group_path(group_id);
        self.send(reqwest::Method::PATCH, &path, &[], Some(&body))
            .await?;
        Ok(())
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let member = serde_json::json!([{ "value": user_id }]);
        let body = self.group_patch(PatchOp::add("members", member));
        let path = group_path(group_id);
        self.send(reqwest::Method::PATCH, &path, &[], Some(&body))
            .await?;
        Ok(())
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let op = PatchOp::remove(format!("members[value eq \"{}\"]", quote(user_id)));
        let path = group_path(group_id);
        match self
            .send(reqwest::Method::PATCH, &path, &[], Some(&patch_body(&[op])))
            .await
        {
            Ok(_) => Ok(()),
            // Not a member any more, or no such group: the removal is done (RFC 7644 §3.5.2.2).
            Err(e) if e.failure == super::ScimFailure::NotFound => Ok(()),
            Err(e) if e.status == Some(400) && e.detail.contains("noTarget") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        let path = format!(
            "/Users/{}",
            percent_encoding::utf8_percent_encode(id, PATH_SEGMENT)
        );
        match self.write_user(reqwest::Method::DELETE, &path, None).await {
            Ok(()) => Ok(()),
            // RFC 7644 §3.6: once deleted, the resource answers 404. A retried DELETE is done.
            Err(e) if e.failure == super::ScimFailure::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let path = format!(
            "/Users/{}",
            percent_encoding::utf8_percent_encode(id, PATH_SEGMENT)
        );
        // 200 with the resource and 204 without a body are both success.
        self.write_user(reqwest::Method::PATCH, &path, Some(&patch_body(ops)))
            .await
    }
}
