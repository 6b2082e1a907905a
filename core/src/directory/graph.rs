//! Microsoft Graph: client-credentials token, then `GET /v1.0/users/{id}?$select=…` (the
//! default projection leaves out `accountEnabled`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::client_assertion::ClientKey;
use super::rate_limit::{throttle_wait, throttled, SWEEPER_PATIENCE, WORKER_PATIENCE};
use super::subscription::{GraphSubscription, ListedSubscription, SubscriptionApi};
use super::{
    answer, unique_ids, Answer, ChangeFeed, Directory, DirectoryChanges, DirectoryError,
    DirectoryGroup, DirectoryRead, DirectoryUser, FeedError, Flow, IdpStatus, Listing, ListingSink,
    Membership, ReadEnd, Scope,
};
use crate::secret::Secret;

/// A throttled request is sent this many times in place (each after its wait) at most.
const THROTTLED_ATTEMPTS: u32 = 3;

const SELECT: &str = "id,userPrincipalName,mail,givenName,surname,displayName,jobTitle,accountEnabled,employeeId,department";
const SCOPE: &str = "https://graph.microsoft.com/.default";
/// How long a group's displayName is taken as read: one Graph call per group per quarter hour,
/// and a group renamed in Entra is renamed on the target within it.
const GROUP_NAME_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// A delta pass over more pages than this is a loop, not a directory.
const MAX_DELTA_PAGES: usize = 100_000;

/// How the app proves itself to Entra: its client secret, or a certificate credential (a
/// client assertion signed with the certificate's key: nothing to leak in transit, and what
/// security teams ask for).
pub enum GraphCredential {
    ClientSecret(Secret),
    Certificate(Box<ClientKey>),
}

impl GraphCredential {
    /// The settings to check when Entra refuses it.
    fn settings(&self) -> &'static str {
        match self {
            GraphCredential::ClientSecret(_) => "entra.client_secret",
            GraphCredential::Certificate(_) => {
                "entra.client_private_key and entra.client_certificate (uploaded to the app)"
            }
        }
    }
}

pub struct GraphDirectory {
    http: reqwest::Client,
    graph_url: String,
    token_url: String,
    client_id: String,
    credential: GraphCredential,
    token: Mutex<Option<(Secret, Instant)>>,
    /// Entra groups whose (transitive) members are in scope (none: everyone), and those whose
    /// members get roles (`entra.role_groups`; not scope). Entra has no app scope.
    scope: Scope,
    group_names: Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
    /// The `$select` list: the fields the relay maps, plus any `target.attributes` source.
    select: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup {
    #[serde(default)]
    display_name: Option<String>,
}

impl std::fmt::Debug for GraphDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphDirectory")
            .field("graph_url", &self.graph_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: String,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    surname: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    job_title: Option<String>,
    #[serde(default)]
    account_enabled: Option<bool>,
    #[serde(default)]
    employee_id: Option<String>,
    #[serde(default)]
    department: Option<String>,
}

impl GraphDirectory {
    pub fn new(
        graph_url: &str,
        login_url: &str,
        tenant_id: &str,
        client_id: &str,
        credential: GraphCredential,
        timeout: Duration,
    ) -> Result<Self, DirectoryError> {
        let http = crate::credentialed_http_client(timeout).map_err(DirectoryError::Permanent)?;
        Ok(Self {
            http,
            graph_url: graph_url.trim_end_matches('/').to_string(),
            token_url: format!(
                "{}/{tenant_id}/oauth2/v2.0/token",
                login_url.trim_end_matches('/')
            ),
            client_id: client_id.to_string(),
            credential,
            token: Mutex::new(None),
            scope: Scope::default(),
            group_names: Mutex::new(std::collections::HashMap::new()),
            select: SELECT.to_string(),
        })
    }

    /// A cached app token, renewed a minute before it expires.
    async fn access_token(&self) -> Result<Secret, DirectoryError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", self.client_id.clone()),
            ("scope", SCOPE.to_string()),
        ];
        match &self.credential {
            GraphCredential::ClientSecret(secret) => {
                form.push(("client_secret", secret.expose().to_string()));
            }
            GraphCredential::Certificate(key) => {
                let assertion = key
                    .assertion(&self.client_id, &self.token_url, chrono::Utc::now())
                    .map_err(|e| DirectoryError::Permanent(e.to_string()))?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let resp = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                DirectoryError::Retryable(format!("Entra token: {}", crate::transport_error(e)))
            })?;
        if !resp.status().is_success() {
            return Err(DirectoryError::Retryable(format!(
                "Entra token endpoint answered {}; check entra.client_id and {}",
                resp.status().as_u16(),
                self.credential.settings()
            )));
        }
        let token: TokenResponse = resp
            .json()
            .await
            .map_err(|e| DirectoryError::Retryable(format!("Entra token is not readable: {e}")))?;
        let lifetime = token.expires_in.unwrap_or(3600).saturating_sub(60);
        let secret = Secret::new(token.access_token);
        *cached = Some((
            secret.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(secret)
    }
}

impl GraphDirectory {
    /// A `GET {graph}/v1.0{path}?$select=…` with the app token.
    async fn get(
        &self,
        path: &str,
        select: &str,
        token: &Secret,
    ) -> Result<reqwest::Response, DirectoryError> {
        let request = self
            .http
            .get(format!("{}/v1.0{path}", self.graph_url))
            .query(&[("$select", select)])
            .bearer_auth(token.expose());
        self.send(request, WORKER_PATIENCE).await
    }

    /// One page of a listing a pass follows (`nextLink`, `deltaLink`): a pass waits out
    /// throttling longer than a worker does.
    async fn get_page(
        &self,
        url: &str,
        token: &Secret,
    ) -> Result<reqwest::Response, DirectoryError> {
        self.send(
            self.http.get(url).bearer_auth(token.expose()),
            SWEEPER_PATIENCE,
        )
        .await
    }

    /// Sends a Graph request. Graph throttles with a 429 (or a 503 with `Retry-After`): a wait
    /// up to `patience` is slept here and the request sent again; a longer one is
    /// [`DirectoryError::Throttled`].
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        patience: Duration,
    ) -> Result<reqwest::Response, DirectoryError> {
        for attempt in 1..=THROTTLED_ATTEMPTS {
            let Some(this) = request.try_clone() else {
                break;
            };
            let resp = this.send().await.map_err(|e| {
                DirectoryError::Retryable(format!("Graph: {}", crate::transport_error(e)))
            })?;
            let status = resp.status().as_u16();
            let throttled_now =
                status == 429 || (status == 503 && resp.headers().contains_key("retry-after"));
            if !throttled_now {
                return Ok(resp);
            }
            let wait = throttle_wait(resp.headers(), chrono::Utc::now());
            if wait > patience || attempt == THROTTLED_ATTEMPTS {
                return Err(throttled("Graph", &format!("answered {status}"), wait));
            }
            tokio::time::sleep(wait).await;
        }
        // A request whose body cannot be sent twice: once, as it is.
        request
            .send()
            .await
            .map_err(|e| DirectoryError::Retryable(format!("Graph: {}", crate::transport_error(e))))
    }

    /// Also reads these properties (sources of `target.attributes`).
    pub fn with_extra_properties<'a>(
        mut self,
        properties: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        for p in properties {
            if !self.select.split(',').any(|s| s == p) {
                self.select.push(',');
                self.select.push_str(p);
            }
        }
        self
    }

    /// The scope and role groups (an app id in it is Okta's and plays no part here).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Every group whose membership the relay reads: scope groups, then role groups.
    pub fn watched_groups(&self) -> Vec<String> {
        self.scope.watched_groups()
    }

    /// A group's displayName, read again once [`GROUP_NAME_TTL`] old (a rename in Entra reaches
    /// the mirrored group within it).
    async fn group_name(&self, group_id: &str, token: &Secret) -> Result<String, DirectoryError> {
        if let Some((name, _)) = self
            .group_names
            .lock()
            .await
            .get(group_id)
            .filter(|(_, at)| at.elapsed() < GROUP_NAME_TTL)
        {
            return Ok(name.clone());
        }
        let id =
            percent_encoding::utf8_percent_encode(group_id, percent_encoding::NON_ALPHANUMERIC);
        let resp = self
            .get(&format!("/groups/{id}"), "id,displayName", token)
            .await?;
        match answer("Graph", resp.status().as_u16())? {
            Answer::Found => {}
            Answer::NotFound => {
                return Err(DirectoryError::Permanent(format!(
                    "entra.group_ids or entra.role_groups names group {group_id}, which Graph does not have; fix the setting"
                )))
            }
            Answer::CredentialRejected => {
                return Err(DirectoryError::Refused(
                    "Graph refused to read a group; grant the app GroupMember.Read.All".into(),
                ))
            }
        }
        let group: GraphGroup = resp
            .json()
            .await
            .map_err(|e| DirectoryError::Retryable(format!("Graph group is not readable: {e}")))?;
        let name = group.display_name.unwrap_or_else(|| group_id.to_string());
        self.group_names.lock().await.insert(
            group_id.to_string(),
            (name.clone(), std::time::Instant::now()),
        );
        Ok(name)
    }

    /// A user missing from `/users` is soft-deleted (restorable for 30 days, still listed in
    /// `/directory/deletedItems`) or hard-deleted (gone from both).
    async fn deleted_how(
        &self,
        user_id: &str,
        token: &Secret,
    ) -> Result<DirectoryRead, DirectoryError> {
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let resp = self
            .get(&format!("/directory/deletedItems/{id}"), "id", token)
            .await?;
        match answer("Graph", resp.status().as_u16())? {
            Answer::Found => Ok(DirectoryRead::NotFound),
            Answer::NotFound => Ok(DirectoryRead::HardDeleted),
            Answer::CredentialRejected => Err(DirectoryError::Refused(
                "Graph refused to list deleted items; grant the app User.Read.All".into(),
            )),
        }
    }
}

/// One page of a Graph collection.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct MemberId {
    id: String,
}

impl GraphDirectory {
    /// Every item of the collection at `url`, following its next links while they point at
    /// the configured Graph; `None` when Graph has no such collection (404). `what` names it
    /// in errors; `permission` is what a refusal asks the app to be granted.
    async fn every_page<T: serde::de::DeserializeOwned>(
        &self,
        mut url: String,
        token: &Secret,
        what: &str,
        permission: &str,
    ) -> Result<Option<Vec<T>>, DirectoryError> {
        let mut items = Vec::new();
        for _ in 0..MAX_DELTA_PAGES {
            let resp = self.get_page(&url, token).await?;
            match answer("Graph", resp.status().as_u16())? {
                Answer::Found => {}
                Answer::NotFound => return Ok(None),
                Answer::CredentialRejected => {
                    return Err(DirectoryError::Refused(format!(
                        "Graph refused to list {what}; grant the app {permission}"
                    )))
                }
            }
            let page: Page<T> = resp.json().await.map_err(|e| {
                DirectoryError::Retryable(format!("Graph's listing of {what} is not readable: {e}"))
            })?;
            items.extend(page.value);
            match page.next_link {
                Some(next) if self.is_own_link(&next) => url = next,
                _ => return Ok(Some(items)),
            }
        }
        Err(DirectoryError::Permanent(format!(
            "Graph's listing of {what} never ended"
        )))
    }

    /// The ids of a group's transitive members of one kind (`group` or `user`), every page. A
    /// group that is gone has none (its former members' own reads say the rest).
    async fn transitive_members(
        &self,
        group_id: &str,
        kind: &str,
        token: &Secret,
    ) -> Result<Vec<String>, DirectoryError> {
        let id =
            percent_encoding::utf8_percent_encode(group_id, percent_encoding::NON_ALPHANUMERIC);
        let url = reqwest::Url::parse_with_params(
            &format!(
                "{}/v1.0/groups/{id}/transitiveMembers/microsoft.graph.{kind}",
                self.graph_url
            ),
            &[("$select", "id"), ("$top", "999")],
        )
        .map_err(|e| DirectoryError::Permanent(format!("entra.graph_url: {e}")))?
        .to_string();
        let members: Option<Vec<MemberId>> = self
            .every_page(url, token, "a group's members", "GroupMember.Read.All")
            .await?;
        Ok(members
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.id)
            .collect())
    }
}

#[derive(Deserialize)]
struct MemberGroups {
    value: Vec<String>,
}

#[async_trait]
impl Directory for GraphDirectory {
    /// `checkMemberGroups` answers, in one call, which of the groups the user belongs to,
    /// transitively.
    async fn membership(&self, user_id: &str) -> Result<Membership, DirectoryError> {
        let watched = self.watched_groups();
        if watched.is_empty() {
            return Ok(Membership::everyone());
        }
        let token = self.access_token().await?;
        // Every configured group must exist: misspelt ids would otherwise put everyone out of
        // scope. Reading their names checks that, once per process.
        for group_id in &watched {
            self.group_name(group_id, &token).await?;
        }
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let mut member_of = Vec::new();
        // checkMemberGroups takes at most 20 group ids per call.
        for chunk in watched.chunks(20) {
            let request = self
                .http
                .post(format!(
                    "{}/v1.0/users/{id}/checkMemberGroups",
                    self.graph_url
                ))
                .bearer_auth(token.expose())
                .json(&serde_json::json!({ "groupIds": chunk }));
            let resp = self.send(request, WORKER_PATIENCE).await?;
            match answer("Graph", resp.status().as_u16())? {
                Answer::Found => {}
                // The user was just read: a 404 here is a replication lag, not "out of scope".
                Answer::NotFound => {
                    return Err(DirectoryError::Retryable(
                        "Graph answered 404 to checkMemberGroups for a user it just returned"
                            .into(),
                    ))
                }
                Answer::CredentialRejected => {
                    *self.token.lock().await = None;
                    return Err(DirectoryError::Refused(
                        "Graph refused checkMemberGroups; grant the app GroupMember.Read.All"
                            .into(),
                    ));
                }
            }
            let groups: MemberGroups = resp.json().await.map_err(|e| {
                DirectoryError::Retryable(format!("Graph group membership is not readable: {e}"))
            })?;
            member_of.extend(groups.value);
        }
        let mut groups = Vec::new();
        let mut role_groups = Vec::new();
        for group_id in member_of {
            if self.scope.role_group_ids.contains(&group_id) {
                role_groups.push(group_id.clone());
            }
            if self.scope.group_ids.contains(&group_id) {
                let name = self.group_name(&group_id, &token).await?;
                groups.push(DirectoryGroup { id: group_id, name });
            }
        }
        Ok(Membership {
            in_scope: self.scope.group_ids.is_empty() || !groups.is_empty(),
            groups,
            role_groups,
        })
    }

    async fn read_user(&self, user_id: &str) -> Result<DirectoryRead, DirectoryError> {
        let token = self.access_token().await?;
        let id = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
        let resp = self
            .get(&format!("/users/{id}"), &self.select, &token)
            .await?;
        match answer("Graph", resp.status().as_u16())? {
            Answer::Found => {}
            Answer::NotFound => return self.deleted_how(user_id, &token).await,
            Answer::CredentialRejected => {
                // A stale token: drop it so the retry fetches a new one.
                *self.token.lock().await = None;
                return Err(DirectoryError::Retryable(
                    "Graph rejected the app token; check the app's User.Read.All permission".into(),
                ));
            }
        }
        let raw: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| DirectoryError::Retryable(format!("Graph user is not readable: {e}")))?;
        graph_user(raw).map(|u| DirectoryRead::Found(Box::new(u)))
    }
}

/// A user as Graph returns it (`/users/{id}`, or an item of a full `/users/delta` pass) with
/// the selected properties.
fn graph_user(raw: serde_json::Value) -> Result<DirectoryUser, DirectoryError> {
    let extra = raw.as_object().map(super::scalars).unwrap_or_default();
    let u: GraphUser = serde_json::from_value(raw)
        .map_err(|e| DirectoryError::Retryable(format!("Graph user is not readable: {e}")))?;
    // Never read a missing field as "disabled": that would offboard on a bad read.
    let enabled = u.account_enabled.ok_or_else(|| {
        DirectoryError::Retryable("Graph returned the user without accountEnabled".into())
    })?;
    Ok(DirectoryUser {
        id: u.id,
        login: u.user_principal_name.unwrap_or_default(),
        email: u.mail,
        given_name: u.given_name,
        family_name: u.surname,
        display_name: u.display_name,
        title: u.job_title,
        employee_number: u.employee_id,
        department: u.department,
        status: Some(if enabled {
            IdpStatus::Active
        } else {
            IdpStatus::Inactive
        }),
        raw_status: if enabled { "enabled" } else { "disabled" }.to_string(),
        extra,
    })
}

/// One page of a delta query: changed objects (or `@removed` stubs), then a next or delta link.
#[derive(Deserialize)]
struct DeltaPage {
    #[serde(default)]
    value: Vec<serde_json::Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    error: GraphErrorDetail,
}

#[derive(Deserialize)]
struct GraphErrorDetail {
    #[serde(default)]
    code: String,
}

/// Graph accepts at most this many ids in a delta query's `$filter`.
const MAX_FILTER_IDS: usize = 50;

impl GraphDirectory {
    /// Whether a link Graph handed us points back at the configured Graph: the app token is
    /// never sent anywhere else, whatever a stored cursor says.
    fn is_own_link(&self, link: &str) -> bool {
        link.strip_prefix(&self.graph_url)
            .is_some_and(|rest| rest.starts_with("/v1.0/"))
    }

    /// Where a pass starts: the stored delta link, or the first request of a full pass.
    fn delta_start(
        &self,
        cursor: Option<&str>,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<String, FeedError> {
        match cursor {
            Some(link) if self.is_own_link(link) => Ok(link.to_string()),
            // A cursor for another Graph (the setting changed): start over.
            Some(_) => Err(FeedError::CursorExpired),
            None => Ok(reqwest::Url::parse_with_params(
                &format!("{}/v1.0{path}", self.graph_url),
                query,
            )
            .map_err(|e| DirectoryError::Permanent(format!("entra.graph_url: {e}")))?
            .to_string()),
        }
    }

    /// One page of a delta query. `from_cursor`: the url is a stored link (a delta link, or a
    /// paused pass's next link), which Graph may no longer take: an expired position.
    async fn delta_page(
        &self,
        url: &str,
        from_cursor: bool,
        token: &Secret,
    ) -> Result<DeltaPage, FeedError> {
        let resp = self.get_page(url, token).await?;
        let status = resp.status().as_u16();
        if from_cursor && matches!(status, 400 | 404 | 410) {
            // 410 Gone (and the codes Graph uses for an expired delta token) means: resync.
            let code = resp
                .json::<GraphErrorBody>()
                .await
                .map(|b| b.error.code.to_ascii_lowercase())
                .unwrap_or_default();
            if status == 410 || code.contains("syncstate") || code.contains("resync") {
                return Err(FeedError::CursorExpired);
            }
            return Err(DirectoryError::Permanent(format!(
                "Graph answered {status} ({code}) to a delta query"
            ))
            .into());
        }
        match answer("Graph", status)? {
            Answer::Found => {}
            Answer::NotFound => {
                return Err(DirectoryError::Permanent(
                    "Graph has no such delta query at entra.graph_url".into(),
                )
                .into())
            }
            Answer::CredentialRejected => {
                return Err(DirectoryError::Refused(
                    "Graph refused the delta query; grant the app User.Read.All (and GroupMember.Read.All for groups)".into(),
                )
                .into())
            }
        }
        resp.json().await.map_err(|e| {
            DirectoryError::Retryable(format!("Graph delta page is not readable: {e}")).into()
        })
    }

    /// Where a delta page leads: the next page, or the delta link that ends the pass. A link
    /// to anywhere but the configured Graph is neither.
    fn delta_next(&self, page: &mut DeltaPage) -> Result<DeltaNext, FeedError> {
        match (page.next_link.take(), page.delta_link.take()) {
            (Some(next), _) if self.is_own_link(&next) => Ok(DeltaNext::Page(next)),
            (None, Some(delta)) if self.is_own_link(&delta) => Ok(DeltaNext::End(delta)),
            _ => Err(DirectoryError::Retryable(
                "Graph delta page has neither a usable nextLink nor a deltaLink".into(),
            )
            .into()),
        }
    }

    /// Follows `@odata.nextLink` from `url` to the `@odata.deltaLink` that becomes the next
    /// cursor; `ids_of` names what each changed object stands for.
    async fn delta_pass<T: Send>(
        &self,
        mut url: String,
        from_cursor: bool,
        ids_of: impl Fn(serde_json::Value) -> Vec<T> + Send,
    ) -> Result<(Vec<T>, String), FeedError> {
        let token = self.access_token().await?;
        let mut ids = Vec::new();
        for _ in 0..MAX_DELTA_PAGES {
            let mut page = self.delta_page(&url, from_cursor, &token).await?;
            let next = self.delta_next(&mut page)?;
            ids.extend(page.value.into_iter().flat_map(&ids_of));
            match next {
                DeltaNext::Page(next) => url = next,
                DeltaNext::End(delta) => return Ok((ids, delta)),
            }
        }
        Err(DirectoryError::Permanent("Graph delta query never ended".into()).into())
    }
}

enum DeltaNext {
    Page(String),
    End(String),
}

/// Where a paused `/users/delta` pass goes on: the next page's link, and whether the pass
/// reads every user (whose items then carry the whole user).
#[derive(Serialize, Deserialize)]
struct GraphResume {
    next: String,
    whole: bool,
}

/// A changed (or `@removed`) user in `/users/delta`; whole when `whole` (a full pass's item
/// carries every selected property) and it reads as a user, else its id alone (the worker
/// reads it).
fn delta_user_listing(item: serde_json::Value, whole: bool) -> Option<Listing> {
    let id = item.get("id").and_then(|v| v.as_str())?.to_string();
    let removed = item.get("@removed").is_some();
    let user = (whole && !removed)
        .then(|| graph_user(item).ok())
        .flatten()
        .map(Box::new);
    Some(Listing { id, user })
}

/// A member joining or leaving a watched group, from `/groups/delta`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MemberChange {
    User(String),
    /// A group nested into (or out of) a watched group: each of its transitive members gained
    /// or lost the membership.
    Group(String),
}

/// Who joined or left one of `groups` (`None`: any group), from a `/groups/delta` item's
/// `members@delta` (joins, and `@removed` leaves). Devices and service principals are not
/// users and are skipped.
fn delta_member_changes(item: &serde_json::Value, groups: Option<&[String]>) -> Vec<MemberChange> {
    let in_scope = item
        .get("id")
        .and_then(|v| v.as_str())
        .is_some_and(|id| groups.is_none_or(|groups| groups.iter().any(|g| g == id)));
    if !in_scope {
        return Vec::new();
    }
    item.get("members@delta")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("id").and_then(|v| v.as_str())?.to_string();
            match m.get("@odata.type").and_then(|t| t.as_str()) {
                None => Some(MemberChange::User(id)),
                Some(t) if t.eq_ignore_ascii_case("#microsoft.graph.user") => {
                    Some(MemberChange::User(id))
                }
                Some(t) if t.eq_ignore_ascii_case("#microsoft.graph.group") => {
                    Some(MemberChange::Group(id))
                }
                Some(_) => None,
            }
        })
        .collect()
}

/// A membership cursor carries the groups it reads: `<key of the group set> <deltaLink>`. A
/// delta link keeps the `$filter` it started with, so when nesting brings a group in (or takes
/// one out) the pass starts over with the new set.
fn group_set_key(groups: &[String]) -> String {
    let mut sorted: Vec<&str> = groups.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(sorted.join(",").as_bytes())[..6])
}

#[async_trait]
impl ChangeFeed for GraphDirectory {
    /// `GET /users/delta`. Removed users (`@removed`) are listed like changed ones: the
    /// worker's re-read tells soft from hard deletion.
    async fn changes_since(
        &self,
        cursor: Option<&str>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DirectoryChanges, FeedError> {
        super::changes_by_pages(self, cursor, now, "Graph delta").await
    }

    /// `/users/delta` page by page, each handed on as read. A full pass (no cursor) lists
    /// every user with the selected properties, so its items carry whole users; a later
    /// round's items carry only what changed, so they are ids. A pause keeps the next page's
    /// link; one Graph no longer takes reads as an expired position.
    async fn read_changes(
        &self,
        cursor: Option<&str>,
        resume: Option<&str>,
        _now: chrono::DateTime<chrono::Utc>,
        sink: &mut dyn ListingSink,
    ) -> Result<ReadEnd, FeedError> {
        let (mut url, whole, from_cursor) = match resume {
            Some(token) => {
                let r: GraphResume =
                    serde_json::from_str(token).map_err(|_| FeedError::CursorExpired)?;
                // The token only ever goes to the configured Graph.
                if !self.is_own_link(&r.next) {
                    return Err(FeedError::CursorExpired);
                }
                (r.next, r.whole, true)
            }
            None => (
                self.delta_start(cursor, "/users/delta", &[("$select", self.select.as_str())])?,
                cursor.is_none(),
                cursor.is_some(),
            ),
        };
        let mut token = self.access_token().await?;
        for _ in 0..MAX_DELTA_PAGES {
            let mut page = self.delta_page(&url, from_cursor, &token).await?;
            let next = self.delta_next(&mut page)?;
            let listings = page
                .value
                .into_iter()
                .filter_map(|item| delta_user_listing(item, whole))
                .collect();
            let flow = sink.page(listings).await?;
            match next {
                DeltaNext::End(delta) => return Ok(ReadEnd::Done { cursor: delta }),
                DeltaNext::Page(next) if flow == Flow::Pause => {
                    let resume = GraphResume { next, whole };
                    return Ok(ReadEnd::Paused {
                        resume: serde_json::to_string(&resume)
                            .map_err(|e| DirectoryError::Permanent(format!("resume token: {e}")))?,
                    });
                }
                DeltaNext::Page(next) => url = next,
            }
            // A long pass outlives the token: the cached one is renewed a minute early.
            token = self.access_token().await?;
        }
        Err(DirectoryError::Permanent("Graph delta query never ended".into()).into())
    }
}

/// Membership changes of the configured Entra groups (`/groups/delta?$select=members`): joining
/// or leaving a group is no change of the user, so `/users/delta` never shows it.
pub struct GraphGroupMembers(pub std::sync::Arc<GraphDirectory>);

#[async_trait]
impl ChangeFeed for GraphGroupMembers {
    /// Nested groups count, as in the scope check (`checkMemberGroups` is transitive): the
    /// groups nested in a watched group are read too, and a group nested into or out of one
    /// stands for each of its transitive user members.
    async fn changes_since(
        &self,
        cursor: Option<&str>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<DirectoryChanges, FeedError> {
        let dir = &self.0;
        let token = dir.access_token().await?;
        let watched = dir.watched_groups();
        let mut groups = watched.clone();
        for group in &watched {
            groups.extend(dir.transitive_members(group, "group", &token).await?);
        }
        let groups = unique_ids(groups);
        let key = group_set_key(&groups);
        let (stored_key, stored_link) = match cursor.map(|c| c.split_once(' ').ok_or(c)) {
            Some(Ok((k, link))) => (Some(k), Some(link)),
            // Written before nesting was read.
            Some(Err(link)) => (None, Some(link)),
            None => (None, None),
        };
        let same_set = match stored_key {
            Some(k) => k == key,
            None => groups.len() == watched.len(),
        };
        let filter = groups
            .iter()
            .map(|id| format!("id eq '{}'", id.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut query = vec![("$select", "members")];
        // Beyond Graph's limit every group is read and the others are skipped here.
        if groups.len() <= MAX_FILTER_IDS {
            query.push(("$filter", filter.as_str()));
        }
        let read = groups.clone();
        let of_read = move |item: serde_json::Value| delta_member_changes(&item, Some(&read));
        let mut changes = Vec::new();
        let link = match stored_link {
            Some(stored) if same_set => {
                let url = dir.delta_start(Some(stored), "/groups/delta", &query)?;
                let (found, link) = dir.delta_pass(url, true, of_read).await?;
                changes.extend(found);
                link
            }
            _ => {
                // A delta link keeps the `$filter` it began with: with another set of groups
                // the pass starts over. The old link is read to its end first, so whoever
                // left with a group that is read no more (un-nested) is re-checked too; the
                // fresh pass then lists every current member once.
                if let Some(stored) = stored_link {
                    if let Ok(url) = dir.delta_start(Some(stored), "/groups/delta", &query) {
                        match dir
                            .delta_pass(url, true, |item| delta_member_changes(&item, None))
                            .await
                        {
                            Ok((found, _)) => changes.extend(found),
                            Err(FeedError::CursorExpired) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                let url = dir.delta_start(None, "/groups/delta", &query)?;
                let (found, link) = dir.delta_pass(url, false, of_read).await?;
                changes.extend(found);
                link
            }
        };
        let mut user_ids = Vec::new();
        for change in unique_changes(changes) {
            match change {
                MemberChange::User(id) => user_ids.push(id),
                MemberChange::Group(id) => {
                    // The pass may have waited out throttles: the (cached) token read afresh.
                    let token = dir.access_token().await?;
                    user_ids.extend(dir.transitive_members(&id, "user", &token).await?)
                }
            }
        }
        Ok(DirectoryChanges {
            user_ids: unique_ids(user_ids),
            cursor: format!("{key} {link}"),
        })
    }
}

fn unique_changes(changes: Vec<MemberChange>) -> Vec<MemberChange> {
    let mut seen = std::collections::HashSet::new();
    changes
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect()
}

/// A subscription as Graph returns it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionResource {
    id: String,
    resource: String,
    expiration_date_time: chrono::DateTime<chrono::Utc>,
}

impl From<SubscriptionResource> for GraphSubscription {
    fn from(r: SubscriptionResource) -> Self {
        Self {
            id: r.id,
            resource: r.resource,
            expires_at: r.expiration_date_time,
        }
    }
}

/// A subscription as `GET /subscriptions` lists it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedSubscriptionResource {
    id: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    change_type: String,
    #[serde(default)]
    notification_url: String,
    #[serde(default)]
    lifecycle_notification_url: Option<String>,
    expiration_date_time: chrono::DateTime<chrono::Utc>,
}

impl GraphDirectory {
    /// Sends a subscription request and reads the subscription Graph answers with (`None` on
    /// 404).
    async fn subscription_call(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Option<GraphSubscription>, DirectoryError> {
        let resp = self
            .send(request, SWEEPER_PATIENCE)
            .await
            .map_err(|e| match e {
                DirectoryError::Retryable(r) => DirectoryError::Retryable(format!("{what}: {r}")),
                e => e,
            })?;
        let status = resp.status().as_u16();
        if status == 201 {
            // Created: read like a 200.
        } else {
            match answer("Graph", status) {
                Ok(Answer::Found) => {}
                Ok(Answer::NotFound) => return Ok(None),
                Ok(Answer::CredentialRejected) => {
                    return Err(DirectoryError::Refused(format!(
                        "Graph refused to {what}; grant the app User.Read.All"
                    )))
                }
                // A 400 on create is Graph failing to validate the notification URL.
                Err(DirectoryError::Permanent(m)) if status == 400 => {
                    return Err(DirectoryError::Retryable(format!(
                        "{m} to {what}: is entra.notification_url reachable from Graph, and does it answer the validation request?"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        let sub: SubscriptionResource = resp.json().await.map_err(|e| {
            DirectoryError::Retryable(format!("Graph subscription is not readable: {e}"))
        })?;
        Ok(Some(sub.into()))
    }
}

#[async_trait]
impl SubscriptionApi for GraphDirectory {
    async fn list(&self) -> Result<Vec<ListedSubscription>, DirectoryError> {
        let token = self.access_token().await?;
        let url = format!("{}/v1.0/subscriptions", self.graph_url);
        let listed: Vec<ListedSubscriptionResource> = self
            .every_page(url, &token, "the app's subscriptions", "User.Read.All")
            .await?
            .ok_or_else(|| {
                DirectoryError::Permanent("Graph has no /subscriptions at entra.graph_url".into())
            })?;
        Ok(listed
            .into_iter()
            .map(|s| ListedSubscription {
                id: s.id,
                resource: s.resource,
                change_type: s.change_type,
                notification_url: s.notification_url,
                lifecycle_notification_url: s.lifecycle_notification_url,
                expires_at: s.expiration_date_time,
            })
            .collect())
    }

    async fn create(
        &self,
        resource: &str,
        notification_url: &str,
        client_state: &Secret,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<GraphSubscription, DirectoryError> {
        let token = self.access_token().await?;
        let body = serde_json::json!({
            "changeType": "updated,deleted",
            "notificationUrl": notification_url,
            // Lifecycle events (reauthorizationRequired…) come to the same endpoint; the URL
            // cannot be added to a subscription later.
            "lifecycleNotificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "clientState": client_state.expose(),
        });
        let request = self
            .http
            .post(format!("{}/v1.0/subscriptions", self.graph_url))
            .bearer_auth(token.expose())
            .json(&body);
        self.subscription_call(request, "create a subscription")
            .await?
            .ok_or_else(|| DirectoryError::Permanent("Graph has no /subscriptions".into()))
    }

    async fn renew(
        &self,
        id: &str,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<GraphSubscription>, DirectoryError> {
        let token = self.access_token().await?;
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        let body = serde_json::json!({
            "expirationDateTime": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        let request = self
            .http
            .patch(format!("{}/v1.0/subscriptions/{id}", self.graph_url))
            .bearer_auth(token.expose())
            .json(&body);
        self.subscription_call(request, "renew the subscription")
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<GraphSubscription>, DirectoryError> {
        let token = self.access_token().await?;
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        let request = self
            .http
            .get(format!("{}/v1.0/subscriptions/{id}", self.graph_url))
            .bearer_auth(token.expose());
        self.subscription_call(request, "read the subscription")
            .await
    }

    async fn delete(&self, id: &str) -> Result<(), DirectoryError> {
        let token = self.access_token().await?;
        let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
        let resp = self
            .http
            .delete(format!("{}/v1.0/subscriptions/{id}", self.graph_url))
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| {
                DirectoryError::Retryable(format!(
                    "Graph delete subscription: {}",
                    crate::transport_error(e)
                ))
            })?;
        match resp.status().as_u16() {
            200 | 204 | 404 => Ok(()),
            s => Err(DirectoryError::Retryable(format!(
                "Graph answered {s} to deleting a subscription"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::ListedIds;

    #[tokio::test]
    async fn a_resumed_pass_never_sends_the_token_to_another_host() {
        let graph = GraphDirectory::new(
            "https://graph.microsoft.com",
            "https://login.microsoftonline.com",
            "tenant",
            "client",
            GraphCredential::ClientSecret(Secret::new("secret")),
            Duration::from_secs(1),
        )
        .unwrap();
        let mut ids = ListedIds::default();
        for next in [
            "https://evil.example/v1.0/users/delta?$skiptoken=x",
            "https://graph.microsoft.com.evil.example/v1.0/users/delta?$skiptoken=x",
            "https://graph.microsoft.com/beta/users/delta?$skiptoken=x",
        ] {
            let token = serde_json::json!({"next": next, "whole": true}).to_string();
            let read = graph
                .read_changes(None, Some(&token), chrono::Utc::now(), &mut ids)
                .await;
            assert!(
                matches!(read, Err(FeedError::CursorExpired)),
                "{next}: {read:?}"
            );
        }
        let read = graph
            .read_changes(None, Some("not a token"), chrono::Utc::now(), &mut ids)
            .await;
        assert!(matches!(read, Err(FeedError::CursorExpired)));
        assert!(ids.0.is_empty());
    }

    #[test]
    fn a_full_pass_item_carries_the_user_and_a_later_rounds_only_its_id() {
        let item = serde_json::json!({
            "id": "u1", "userPrincipalName": "a@example.com", "accountEnabled": true,
            "displayName": "A B", "jobTitle": "Eng"
        });
        let whole = delta_user_listing(item.clone(), true).expect("listed");
        let user = whole.user.expect("whole");
        assert_eq!(
            (user.login.as_str(), user.title.as_deref()),
            ("a@example.com", Some("Eng"))
        );
        // A later round's item carries what changed only: never taken for the user.
        assert_eq!(delta_user_listing(item, false).expect("listed").user, None);
        let removed = serde_json::json!({"id": "u2", "@removed": {"reason": "deleted"}});
        assert_eq!(
            delta_user_listing(removed, true),
            Some(Listing::id("u2".into()))
        );
        // Without accountEnabled it is not a user to act on: its own read decides.
        let partial = serde_json::json!({"id": "u3", "userPrincipalName": "c@example.com"});
        assert_eq!(
            delta_user_listing(partial, true),
            Some(Listing::id("u3".into()))
        );
        assert_eq!(delta_user_listing(serde_json::json!({}), true), None);
    }

    #[test]
    fn member_changes_of_configured_groups_name_users_and_nested_groups() {
        let item = serde_json::json!({
            "@odata.type": "#microsoft.graph.group", "id": "g1",
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.group", "id": "nested"},
                {"id": "u3"}
            ]
        });
        let user = |id: &str| MemberChange::User(id.to_string());
        assert_eq!(
            delta_member_changes(&item, Some(&["g1".to_string()])),
            [
                user("u1"),
                user("u2"),
                MemberChange::Group("nested".into()),
                user("u3")
            ]
        );
        assert!(delta_member_changes(&item, Some(&["other".to_string()])).is_empty());
        assert_eq!(delta_member_changes(&item, None).len(), 4, "any group");
    }

    #[test]
    fn the_group_set_key_ignores_order_and_changes_with_the_set() {
        let a = group_set_key(&["g1".to_string(), "g2".to_string()]);
        assert_eq!(a, group_set_key(&["g2".to_string(), "g1".to_string()]));
        assert_ne!(a, group_set_key(&["g1".to_string()]));
        assert!(!a.contains(' '), "the key is the cursor's first word");
    }
}
