//! An RFC 7644 service provider in memory, as the worker sees one through the HTTP client:
//! the same answers (409 on a taken userName, 404 on an unknown id, `noTarget` on a removal
//! that matches nothing), classified by the same table, and the same tolerances (a 404 to a
//! DELETE is success). The hooks mirror the end-to-end tests' proxy in front of scim2-server,
//! so one assertion reads the same against both.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::patch;
use crate::scim::error::classify;
use crate::scim::{
    ListedUser, PatchOp, ScimError, ScimFailure, ScimRecord, ScimTarget, UserPage, USER_SCHEMA,
};

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The body of an injected failure: a test checking a dead letter's reason for "injected"
/// passes against this target and the end-to-end proxy alike.
const INJECTED: &str = r#"{"errors":["injected by the in-memory target"]}"#;
/// The userName the HTTP client's credential probe looks up.
const PROBE_USER_NAME: &str = "scim-relay-credential-probe";

/// Escaped in an id used as a path segment: the HTTP client's set, so recorded paths match.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Escaped in a query value by `application/x-www-form-urlencoded` (the HTTP client's query
/// encoding); a space becomes `+` besides.
const FORM_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// A SCIM target held in memory; clones share it.
#[derive(Clone, Debug, Default)]
pub struct MemoryTarget {
    provider: Arc<Mutex<Provider>>,
}

#[derive(Debug, Default)]
struct Provider {
    /// In creation order, the order a list answers in.
    users: Vec<Value>,
    groups: Vec<Value>,
    /// Every request the relay sent: (method, path and query).
    calls: Vec<(String, String)>,
    faults: Vec<Fault>,
    /// The lowercased userName of every `POST /Users` that reached the provider.
    created: Vec<String>,
    /// While set, a filtered list answers with the first users, whatever the filter says (a
    /// provider that does not support filtering).
    ignoring_filters: bool,
    /// When each request arrived, in order (a retry's wait shows between two of them).
    call_times: Vec<(String, std::time::Instant)>,
    /// While set, every request is answered with this (401: a revoked credential; 503: down).
    standing_answer: Option<ScimError>,
    /// Bumped by every write; a resource's version is the revision of its last write.
    revision: u64,
}

/// A failure injected once, into the next request with this method.
#[derive(Debug)]
struct Fault {
    method: String,
    answer: ScimError,
    /// Served first (the provider acts), answered with the failure anyway: a lost response.
    after_serving: bool,
}

/// A SCIM error response, classified as the HTTP client classifies the one it receives.
fn answer(status: u16, scim_type: Option<&str>, detail: &str) -> ScimError {
    let mut body =
        json!({ "schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail });
    if let Some(t) = scim_type {
        body["scimType"] = json!(t);
    }
    classify(status, None, None, &body.to_string())
}

fn not_found(id: &str) -> ScimError {
    answer(404, None, &format!("resource {id} not found"))
}

fn refused(r: patch::Refusal) -> ScimError {
    answer(r.status, Some(r.scim_type), &r.detail)
}

/// `/Users?filter=…&startIndex=1&count=2`: the look-up the HTTP client sends, encoded alike.
fn search(endpoint: &str, attribute: &str, value: &str) -> String {
    let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
    let filter = format!("{attribute} eq \"{quoted}\"");
    let filter = utf8_percent_encode(&filter, FORM_VALUE)
        .to_string()
        .replace("%20", "+");
    format!("{endpoint}?filter={filter}&startIndex=1&count=2")
}

fn resource_path(endpoint: &str, id: &str) -> String {
    format!("{endpoint}/{}", utf8_percent_encode(id, PATH_SEGMENT))
}

fn text<'a>(resource: &'a Value, attribute: &str) -> Option<&'a str> {
    resource.get(attribute).and_then(Value::as_str)
}

fn id_of(resource: &Value) -> Option<&str> {
    text(resource, "id")
}

/// userName and displayName are not case-exact (RFC 7643 §4): filters and uniqueness ignore
/// case.
fn named(resource: &Value, attribute: &str, name: &str) -> bool {
    text(resource, attribute).is_some_and(|n| n.to_lowercase() == name.to_lowercase())
}

impl Provider {
    fn stamp(&mut self, resource: &mut Value, resource_type: &str, endpoint: &str) {
        self.revision += 1;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = Utc::now().to_rfc3339();
        resource["id"] = json!(id);
        resource["meta"] = json!({
            "resourceType": resource_type,
            "created": now,
            "lastModified": now,
            "location": format!("/v2{endpoint}/{id}"),
            "version": format!("W/\"{}\"", self.revision),
        });
    }

    fn touch(&mut self, resource: &mut Value) {
        self.revision += 1;
        resource["meta"]["lastModified"] = json!(Utc::now().to_rfc3339());
        resource["meta"]["version"] = json!(format!("W/\"{}\"", self.revision));
    }

    fn user_named(&self, user_name: &str) -> Option<&Value> {
        self.users.iter().find(|u| named(u, "userName", user_name))
    }

    /// A userName is required, and unique among the other users.
    fn check_user_name(&self, user: &Value) -> Result<(), ScimError> {
        let user_name = text(user, "userName")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| answer(400, Some("invalidValue"), "userName is required"))?;
        let taken = self
            .users
            .iter()
            .any(|u| id_of(u) != id_of(user) && named(u, "userName", user_name));
        if taken {
            return Err(answer(409, Some("uniqueness"), "userName is taken"));
        }
        Ok(())
    }

    fn create_user(&mut self, resource: &Value) -> Result<Value, ScimError> {
        if !resource.is_object() {
            return Err(answer(400, Some("invalidSyntax"), "a user is an object"));
        }
        self.check_user_name(resource)?;
        let mut user = resource.clone();
        self.stamp(&mut user, "User", "/Users");
        self.users.push(user.clone());
        Ok(user)
    }

    fn patch_user(&mut self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let at = self
            .users
            .iter()
            .position(|u| id_of(u) == Some(id))
            .ok_or_else(|| not_found(id))?;
        let mut user = self.users[at].clone();
        patch::apply(&mut user, ops).map_err(refused)?;
        self.check_user_name(&user)?;
        // A PATCH that changes nothing keeps the version (as scim2-server does).
        if user != self.users[at] {
            self.touch(&mut user);
            self.users[at] = user;
        }
        Ok(())
    }

    fn patch_group(&mut self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let at = self
            .groups
            .iter()
            .position(|g| id_of(g) == Some(id))
            .ok_or_else(|| not_found(id))?;
        let mut group = self.groups[at].clone();
        patch::apply(&mut group, ops).map_err(refused)?;
        if group != self.groups[at] {
            self.touch(&mut group);
            self.groups[at] = group;
        }
        Ok(())
    }

    fn create_group(&mut self, display_name: &str) -> String {
        let mut group = json!({
            "schemas": [GROUP_SCHEMA], "displayName": display_name, "members": []
        });
        self.stamp(&mut group, "Group", "/Groups");
        let id = id_of(&group).unwrap_or_default().to_string();
        self.groups.push(group);
        id
    }
}

impl MemoryTarget {
    pub fn new() -> Self {
        Self::default()
    }

    fn provider(&self) -> MutexGuard<'_, Provider> {
        // Every request changes the provider in one step: a panicked test leaves it whole.
        self.provider.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One request: recorded, then answered by an injected failure, the credential check, or
    /// `serve`. `creating` is the userName a `POST /Users` carries, noted once it arrives.
    fn exchange<T>(
        &self,
        method: &str,
        path: String,
        creating: Option<&str>,
        serve: impl FnOnce(&mut Provider) -> Result<T, ScimError>,
    ) -> Result<T, ScimError> {
        let mut provider = self.provider();
        provider.calls.push((method.to_string(), path));
        provider
            .call_times
            .push((method.to_string(), std::time::Instant::now()));
        let fault = provider
            .faults
            .iter()
            .position(|f| f.method == method)
            .map(|at| provider.faults.remove(at));
        if let Some(f) = fault.as_ref().filter(|f| !f.after_serving) {
            return Err(f.answer.clone());
        }
        if let Some(user_name) = creating {
            provider.created.push(user_name.to_lowercase());
        }
        let served = match &provider.standing_answer {
            Some(standing) => Err(standing.clone()),
            None => serve(&mut provider),
        };
        match fault {
            Some(f) => Err(f.answer),
            None => served,
        }
    }

    fn inject(&self, method: &str, status: u16, headers: &[(&str, &str)], after_serving: bool) {
        // Header names are case-insensitive, as on the wire.
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        };
        let answer = classify(
            status,
            header("retry-after"),
            header("x-ratelimit-reset"),
            INJECTED,
        );
        self.provider().faults.push(Fault {
            method: method.to_ascii_uppercase(),
            answer,
            after_serving,
        });
    }

    /// The next `method` request is answered with `status` and never reaches the provider.
    pub fn fail_next(&self, method: &str, status: u16) {
        self.fail_next_with(method, status, &[]);
    }

    /// As [`fail_next`](Self::fail_next), with response headers: `Retry-After` or
    /// `X-RateLimit-Reset` set the error's `retry_after`, as the HTTP client reads them.
    pub fn fail_next_with(&self, method: &str, status: u16, headers: &[(&str, &str)]) {
        self.inject(method, status, headers, false);
    }

    /// The next `method` request is applied, but answered with `status`: the ambiguous failure
    /// of a lost response. No in-process retry follows (the HTTP client's own retries are not
    /// modelled): the caller sees the failure.
    pub fn lose_next_response(&self, method: &str, status: u16) {
        self.inject(method, status, &[], true);
    }

    /// While set, every request is answered 401 (a revoked credential).
    pub fn reject_credential(&self, rejecting: bool) {
        self.provider().standing_answer =
            rejecting.then(|| answer(401, None, "the bearer token is not accepted"));
    }

    /// While set, filtered lists ignore their filter.
    pub fn ignore_filters(&self, ignoring: bool) {
        self.provider().ignoring_filters = ignoring;
    }

    /// While set, every request is answered 503 (the provider is down).
    pub fn unavailable(&self, down: bool) {
        self.provider().standing_answer =
            down.then(|| answer(503, None, "the service is unavailable"));
    }

    /// When each request arrived, as (method, instant), in order.
    pub fn call_times(&self) -> Vec<(String, std::time::Instant)> {
        self.provider().call_times.clone()
    }

    /// Every request sent, as (method, path and query) with the HTTP client's encoding:
    /// `("POST", "/Users")`, `("PATCH", "/Users/{id}")`, `("GET", "/Users?filter=userName+eq+…")`.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.provider().calls.clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.provider()
            .calls
            .iter()
            .filter(|(m, _)| m.eq_ignore_ascii_case(method))
            .count()
    }

    /// The lowercased userName of every `POST /Users` that reached the provider, in order,
    /// whatever it answered: a second one for a userName is a blind re-POST even when refused
    /// with 409 (as the end-to-end proxy counts them).
    pub fn created(&self) -> Vec<String> {
        self.provider().created.clone()
    }

    /// The user with this userName, as the provider holds it.
    pub fn user(&self, user_name: &str) -> Option<Value> {
        self.provider().user_named(user_name).cloned()
    }

    /// Creates a user as an admin would by hand (not a relay call); returns its id.
    ///
    /// # Panics
    /// When the userName is taken: the provider refuses it, and the test is wrong.
    pub fn create_user_by_hand(&self, user_name: &str) -> String {
        let user = json!({ "schemas": [USER_SCHEMA], "userName": user_name, "active": true });
        match self.provider().create_user(&user) {
            Ok(created) => id_of(&created).unwrap_or_default().to_string(),
            Err(e) => panic!("cannot create {user_name} by hand: {e}"),
        }
    }

    /// Deletes a user as an admin would (not a relay call); false if there was none.
    pub fn delete_user_by_hand(&self, id: &str) -> bool {
        let mut provider = self.provider();
        let before = provider.users.len();
        provider.users.retain(|u| id_of(u) != Some(id));
        provider.users.len() != before
    }

    /// The member ids of the first group with this displayName, if there is one.
    pub fn group_members(&self, display_name: &str) -> Option<Vec<String>> {
        let provider = self.provider();
        let group = provider
            .groups
            .iter()
            .find(|g| named(g, "displayName", display_name))?;
        Some(
            group["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect(),
        )
    }

    /// Deletes every group with this displayName, as an admin would.
    pub fn delete_group_by_hand(&self, display_name: &str) {
        self.provider()
            .groups
            .retain(|g| !named(g, "displayName", display_name));
    }

    /// How many groups have this displayName.
    pub fn groups_named(&self, display_name: &str) -> usize {
        self.provider()
            .groups
            .iter()
            .filter(|g| named(g, "displayName", display_name))
            .count()
    }

    pub fn user_count(&self) -> usize {
        self.provider().users.len()
    }
}

#[async_trait]
impl ScimTarget for MemoryTarget {
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        let path = search("/Users", "userName", user_name);
        self.exchange("GET", path, None, |p| {
            // At most two, as the look-up asks (`count=2`); all of them when the filter is
            // ignored.
            let answered: Vec<Value> = if p.ignoring_filters {
                p.users.iter().take(2).cloned().collect()
            } else {
                p.user_named(user_name).into_iter().cloned().collect()
            };
            crate::scim::target::matching_user(&answered, user_name)
        })
    }

    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        let user_name = text(resource, "userName");
        self.exchange("POST", "/Users".into(), user_name, |p| {
            let user = p.create_user(resource)?;
            ScimRecord::from_resource(&user)
                .ok_or_else(|| ScimError::transport("create answered without an id"))
        })
    }

    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let path = resource_path("/Users", id);
        self.exchange("PATCH", path, None, |p| p.patch_user(id, ops))
    }

    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        let path = resource_path("/Users", id);
        let deleted = self.exchange("DELETE", path, None, |p| {
            let at = p.users.iter().position(|u| id_of(u) == Some(id));
            p.users.remove(at.ok_or_else(|| not_found(id))?);
            Ok(())
        });
        match deleted {
            // Already gone (RFC 7644 §3.6): a retried DELETE is done.
            Err(e) if e.failure == ScimFailure::NotFound => Ok(()),
            other => other,
        }
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        let path = search("/Groups", "displayName", display_name);
        let mut ids: Vec<String> = self.exchange("GET", path, None, |p| {
            // The provider's filter ignores case and answers two at most; the client keeps
            // exact names.
            Ok(p.groups
                .iter()
                .filter(|g| named(g, "displayName", display_name))
                .take(2)
                .filter(|g| text(g, "displayName") == Some(display_name))
                .filter_map(|g| id_of(g).map(str::to_string))
                .collect())
        })?;
        if ids.len() > 1 {
            // Two workers raced to create it; the loser deletes its copy in a moment.
            return Err(ScimError {
                retry_after: Some(Duration::from_secs(1)),
                ..ScimError::transport("several target groups share one displayName; trying again")
            });
        }
        Ok(ids.pop())
    }

    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        let created = self.exchange("POST", "/Groups".into(), None, |p| {
            Ok(p.create_group(display_name))
        });
        match created {
            // Created meanwhile, or by this very request before its answer was lost: use it.
            Err(e) if matches!(e.failure, ScimFailure::Conflict | ScimFailure::Retryable) => {
                self.find_group(display_name).await?.ok_or(e)
            }
            other => other,
        }
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        let path = resource_path("/Groups", group_id);
        let deleted = self.exchange("DELETE", path, None, |p| {
            let at = p.groups.iter().position(|g| id_of(g) == Some(group_id));
            p.groups.remove(at.ok_or_else(|| not_found(group_id))?);
            Ok(())
        });
        match deleted {
            Err(e) if e.failure == ScimFailure::NotFound => Ok(()),
            other => other,
        }
    }

    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        let path = resource_path("/Groups", group_id);
        let op = PatchOp::replace("displayName", json!(display_name));
        self.exchange("PATCH", path, None, |p| p.patch_group(group_id, &[op]))
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let path = resource_path("/Groups", group_id);
        let op = PatchOp::add("members", json!([{ "value": user_id }]));
        self.exchange("PATCH", path, None, |p| p.patch_group(group_id, &[op]))
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let path = resource_path("/Groups", group_id);
        let quoted = user_id.replace('\\', "\\\\").replace('"', "\\\"");
        let op = PatchOp::remove(format!("members[value eq \"{quoted}\"]"));
        match self.exchange("PATCH", path, None, |p| p.patch_group(group_id, &[op])) {
            // Not a member any more, or no such group: the removal is done (RFC 7644 §3.5.2.2).
            Err(e) if e.failure == ScimFailure::NotFound => Ok(()),
            Err(e) if e.status == Some(400) && e.detail.contains("noTarget") => Ok(()),
            other => other,
        }
    }

    async fn probe(&self) -> Result<(), ScimError> {
        let path = search("/Users", "userName", PROBE_USER_NAME);
        self.exchange("GET", path, None, |_| Ok(()))
    }

    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        let path = format!("/Users?startIndex={start_index}&count={count}");
        self.exchange("GET", path, None, |p| {
            // 1-based; a start below 1 is read as 1 (RFC 7644 §3.4.2.4).
            let skip = start_index.saturating_sub(1) as usize;
            let users = p
                .users
                .iter()
                .skip(skip)
                .take(count as usize)
                .filter_map(ListedUser::from_resource)
                .collect();
            Ok(UserPage {
                users,
                total: u32::try_from(p.users.len()).unwrap_or(u32::MAX),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": "jane@example.com",
            "externalId": "00uJANE",
            "active": true,
            "title": "Engineer",
            "name": {"formatted": "Jane Doe"}
        })
    }

    async fn created(target: &MemoryTarget) -> ScimRecord {
        match target.create_user(&jane()).await {
            Ok(record) => record,
            Err(e) => panic!("create failed: {e}"),
        }
    }

    #[tokio::test]
    async fn a_user_is_created_once_and_found_by_any_case_of_its_user_name() {
        let target = MemoryTarget::new();
        let jane_record = created(&target).await;
        assert_eq!(jane_record.active, Some(true));
        assert_eq!(jane_record.external_id.as_deref(), Some("00uJANE"));
        let mut again = jane();
        again["userName"] = json!("JANE@example.com");
        let conflict = target.create_user(&again).await.err();
        assert_eq!(
            conflict.as_ref().map(|e| (e.failure, e.status)),
            Some((ScimFailure::Conflict, Some(409)))
        );
        let found = target.find_user("Jane@Example.com").await.ok().flatten();
        assert_eq!(found, Some(jane_record.clone()));
        assert_eq!(
            target.find_user("nobody@example.com").await.ok(),
            Some(None)
        );
        let resource = target.user("jane@example.com").unwrap_or_default();
        assert_eq!(resource["meta"]["resourceType"], "User");
        assert_eq!(resource["name"]["formatted"], "Jane Doe");
        assert_eq!(target.user_count(), 1);
        assert_eq!(target.created(), ["jane@example.com", "jane@example.com"]);
        assert_eq!(
            target.calls(),
            [
                ("POST".to_string(), "/Users".to_string()),
                ("POST".to_string(), "/Users".to_string()),
                (
                    "GET".to_string(),
                    "/Users?filter=userName+eq+%22Jane%40Example.com%22&startIndex=1&count=2"
                        .to_string()
                ),
                (
                    "GET".to_string(),
                    "/Users?filter=userName+eq+%22nobody%40example.com%22&startIndex=1&count=2"
                        .to_string()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn patches_land_deactivation_sticks_and_a_deleted_user_is_gone_for_good() {
        let target = MemoryTarget::new();
        let id = created(&target).await.id;
        let version =
            target.user("jane@example.com").unwrap_or_default()["meta"]["version"].clone();
        let ops = [
            PatchOp::replace("title", json!("CTO")),
            PatchOp::replace("name.formatted", json!("Jane Q. Doe")),
        ];
        assert_eq!(target.patch_user(&id, &ops).await, Ok(()));
        let user = target.user("jane@example.com").unwrap_or_default();
        assert_eq!(
            (&user["title"], &user["name"]["formatted"]),
            (&json!("CTO"), &json!("Jane Q. Doe"))
        );
        assert_ne!(
            user["meta"]["version"], version,
            "a write bumps the version"
        );
        let off = [PatchOp::replace("active", json!(false))];
        assert_eq!(target.patch_user(&id, &off).await, Ok(()));
        assert_eq!(
            target
                .find_user("jane@example.com")
                .await
                .ok()
                .flatten()
                .and_then(|r| r.active),
            Some(false)
        );
        assert_eq!(
            target.calls()[1],
            ("PATCH".to_string(), format!("/Users/{id}"))
        );

        assert_eq!(target.delete_user(&id).await, Ok(()));
        assert_eq!(
            target.delete_user(&id).await,
            Ok(()),
            "404 to a DELETE is success"
        );
        assert_eq!(target.user_count(), 0);
        let gone = target.patch_user(&id, &off).await.err();
        assert_eq!(gone.map(|e| e.failure), Some(ScimFailure::NotFound));
        assert_eq!(target.count("DELETE"), 2);
    }

    #[tokio::test]
    async fn a_lost_response_still_applies_the_change() {
        let target = MemoryTarget::new();
        target.lose_next_response("POST", 502);
        let lost = target.create_user(&jane()).await.err();
        assert_eq!(lost.map(|e| e.failure), Some(ScimFailure::Retryable));
        assert_eq!(target.user_count(), 1, "the provider acted");
        assert_eq!(target.created(), ["jane@example.com"]);
        let id = target
            .find_user("jane@example.com")
            .await
            .ok()
            .flatten()
            .map(|r| r.id)
            .unwrap_or_default();
        target.lose_next_response("PATCH", 500);
        let off = [PatchOp::replace("active", json!(false))];
        assert!(target.patch_user(&id, &off).await.is_err());
        assert_eq!(
            target.user("jane@example.com").unwrap_or_default()["active"],
            false
        );
    }

    #[tokio::test]
    async fn injected_failures_are_classified_as_the_http_client_does() {
        let target = MemoryTarget::new();
        let id = created(&target).await.id;
        let title = [PatchOp::replace("title", json!("CTO"))];
        target.fail_next_with("PATCH", 429, &[("Retry-After", "7")]);
        target.fail_next_with("PATCH", 429, &[("X-RateLimit-Reset", "3")]);
        target.fail_next("PATCH", 400);
        let limited = target.patch_user(&id, &title).await.err();
        assert_eq!(
            limited.map(|e| (e.failure, e.retry_after)),
            Some((ScimFailure::Retryable, Some(Duration::from_secs(7))))
        );
        let reset = target.patch_user(&id, &title).await.err();
        assert_eq!(
            reset.and_then(|e| e.retry_after),
            Some(Duration::from_secs(3))
        );
        let bad = target.patch_user(&id, &title).await.err();
        assert_eq!(
            bad.as_ref().map(|e| e.failure),
            Some(ScimFailure::Permanent)
        );
        assert!(bad.is_some_and(|e| e.detail.contains("injected")));
        assert_eq!(
            target.user("jane@example.com").unwrap_or_default()["title"],
            "Engineer",
            "refused before the provider"
        );
        assert_eq!(
            target.patch_user(&id, &title).await,
            Ok(()),
            "one fault per request"
        );
        assert_eq!(target.count("PATCH"), 4);

        target.reject_credential(true);
        let rejected = target.probe().await.err();
        assert_eq!(
            rejected.map(|e| (e.failure, e.status)),
            Some((ScimFailure::Credential, Some(401)))
        );
        target.reject_credential(false);
        assert_eq!(target.probe().await, Ok(()));
    }

    #[tokio::test]
    async fn memberships_are_idempotent_both_ways() {
        let target = MemoryTarget::new();
        let uid = created(&target).await.id;
        let gid = target.create_group("Eng").await.unwrap_or_default();
        assert_eq!(
            target.find_group("Eng").await.ok().flatten(),
            Some(gid.clone())
        );
        assert_eq!(
            target.find_group("eng").await.ok().flatten(),
            None,
            "the client keeps exact names"
        );
        assert_eq!(target.add_member(&gid, &uid).await, Ok(()));
        assert_eq!(target.add_member(&gid, &uid).await, Ok(()));
        assert_eq!(target.group_members("Eng"), Some(vec![uid.clone()]));
        assert_eq!(target.remove_member(&gid, &uid).await, Ok(()));
        assert_eq!(
            target.remove_member(&gid, &uid).await,
            Ok(()),
            "not a member: done"
        );
        assert_eq!(target.group_members("Eng"), Some(vec![]));

        target.delete_group_by_hand("Eng");
        assert_eq!(target.groups_named("Eng"), 0);
        assert_eq!(
            target.remove_member(&gid, &uid).await,
            Ok(()),
            "a gone group: done"
        );
        let add = target.add_member(&gid, &uid).await.err();
        assert_eq!(add.map(|e| e.failure), Some(ScimFailure::NotFound));
    }

    #[tokio::test]
    async fn groups_made_twice_are_not_picked_from_and_a_lost_create_is_found() {
        let target = MemoryTarget::new();
        target.lose_next_response("POST", 503);
        let id = target.create_group("Ops").await;
        assert!(id.is_ok(), "{id:?}");
        assert_eq!(target.groups_named("Ops"), 1);
        let second = target.create_group("Ops").await.unwrap_or_default();
        let several = target.find_group("Ops").await.err();
        assert_eq!(
            several.and_then(|e| e.retry_after),
            Some(Duration::from_secs(1))
        );
        assert_eq!(target.delete_group(&second).await, Ok(()));
        assert_eq!(target.find_group("Ops").await.ok().flatten(), id.ok());
    }

    #[tokio::test]
    async fn users_are_listed_one_based_in_creation_order() {
        let target = MemoryTarget::new();
        let names = ["a@example.com", "b@example.com", "c@example.com"];
        for name in names {
            target.create_user_by_hand(name);
        }
        assert!(
            target.calls().is_empty(),
            "admin writes are not relay calls"
        );
        let page = target.list_users(2, 5).await.unwrap_or_default();
        assert_eq!(page.total, 3);
        let listed: Vec<_> = page.users.iter().map(|u| u.user_name.as_str()).collect();
        assert_eq!(listed, names[1..]);
        assert_eq!(target.list_users(1, 1).await.map(|p| p.users.len()), Ok(1));
        assert_eq!(target.list_users(4, 1).await.map(|p| p.users.len()), Ok(0));
    }
}
