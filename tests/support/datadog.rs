//! A SCIM target that behaves as Datadog documents its SCIM API, for the profile's tests:
//! `userName` filter only, PATCH `add`/`replace` only, `{"errors": [...]}` error bodies,
//! `X-RateLimit-*` headers on 429, DELETE that disables instead of deleting, no ETags, no
//! ServiceProviderConfig. In memory, with the same bearer-token check. Beside SCIM, the Users API
//! the sweeper uses for invitations (`/api/v2/users`, `/api/v2/user_invitations`), behind the
//! API-key + application-key pair: a created user is Pending until [`DatadogFixture::accept`].
//! SCIM Groups (Teams) are in [`crate::datadog_teams`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub const DATADOG_TOKEN: &str = "dd-application-key-for-tests";
pub const DATADOG_API_KEY: &str = "dd-api-key-for-tests";

#[derive(Default)]
pub(crate) struct Org {
    pub(crate) users: BTreeMap<String, Value>,
    pub(crate) next_id: u64,
    /// SCIM Groups: Datadog Teams, by id.
    pub(crate) teams: BTreeMap<String, Value>,
    /// Teams are off until Datadog support enables them: `/Groups` is then not there (404).
    pub(crate) teams_off: bool,
    /// Requests still to be answered 429 (Datadog's rate limiting), per method.
    throttle: Vec<String>,
    log: Vec<(String, String)>,
    /// Users API status per user id: Pending until accepted.
    status: BTreeMap<String, &'static str>,
    /// Invitations sent through `/api/v2/user_invitations`, by user id.
    invitations: Vec<String>,
    /// Users API requests refused for want of both keys.
    refused_keys: usize,
    /// The `expires_at` new invitations carry (none unless set).
    invitation_expiry: Option<String>,
}

#[derive(Clone)]
pub struct DatadogFixture {
    pub base_url: String,
    org: Arc<Mutex<Org>>,
}

pub(crate) type Dd = State<Arc<Mutex<Org>>>;

/// A SCIM ListResponse of everything found, on one page.
pub(crate) fn list_response(found: Vec<Value>) -> Response {
    Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": found.len(), "startIndex": 1, "itemsPerPage": found.len(), "Resources": found
    }))
    .into_response()
}

pub(crate) fn errors(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "errors": [message] }))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {DATADOG_TOKEN}"))
}

impl DatadogFixture {
    pub async fn start() -> Self {
        let org = Arc::new(Mutex::new(Org::default()));
        let app = Router::new()
            .route("/api/v2/scim/Users", get(list_users).post(create_user))
            .route(
                "/api/v2/scim/Users/{id}",
                get(get_user).patch(patch_user).delete(delete_user),
            )
            .route(
                "/api/v2/scim/Groups",
                get(crate::datadog_teams::list_groups).post(crate::datadog_teams::create_group),
            )
            .route(
                "/api/v2/scim/Groups/{id}",
                get(crate::datadog_teams::get_group)
                    .patch(crate::datadog_teams::patch_group)
                    .delete(crate::datadog_teams::delete_group),
            )
            .route("/api/v2/users", get(users_api_list))
            .route("/api/v2/user_invitations", post(send_invitations))
            .with_state(org.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind datadog fixture");
        let base_url = format!(
            "http://{}/api/v2/scim",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, org }
    }

    /// The next request with this method is refused with 429 and Datadog's rate-limit headers.
    pub fn throttle_next(&self, method: &str) {
        self.org
            .lock()
            .expect("lock")
            .throttle
            .push(method.to_string());
    }

    pub fn user(&self, user_name: &str) -> Option<Value> {
        let org = self.org.lock().expect("lock");
        org.users
            .values()
            .find(|u| u["userName"] == user_name)
            .cloned()
    }

    /// The user signs in: Datadog shows them Active from then on.
    pub fn accept(&self, user_name: &str) {
        let mut org = self.org.lock().expect("lock");
        let id = org
            .users
            .iter()
            .find(|(_, u)| u["userName"] == user_name)
            .map(|(id, _)| id.clone());
        if let Some(id) = id {
            org.status.insert(id, "Active");
        }
    }

    /// Invitations re-sent to this user through the Users API.
    pub fn invitations(&self, user_name: &str) -> usize {
        let org = self.org.lock().expect("lock");
        let Some(id) = org
            .users
            .iter()
            .find(|(_, u)| u["userName"] == user_name)
            .map(|(id, _)| id.clone())
        else {
            return 0;
        };
        org.invitations.iter().filter(|i| **i == id).count()
    }

    /// New invitations say they expire at this time (RFC 3339).
    pub fn set_invitation_expiry(&self, at: &str) {
        self.org.lock().expect("lock").invitation_expiry = Some(at.to_string());
    }

    pub fn refused_key_requests(&self) -> usize {
        self.org.lock().expect("lock").refused_keys
    }

    pub fn user_count(&self) -> usize {
        self.org.lock().expect("lock").users.len()
    }

    /// Every request, as (method, path), in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.org.lock().expect("lock").log.clone()
    }

    /// Creates a user as an admin would by hand (the SCIM API, not a relay call); its id.
    pub async fn create_user_by_hand(&self, user_name: &str) -> String {
        let made = reqwest::Client::new()
            .post(format!("{}/Users", self.base_url))
            .bearer_auth(DATADOG_TOKEN)
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": user_name,
                "active": true
            }))
            .send()
            .await
            .expect("datadog fixture reachable");
        assert_eq!(made.status(), 201);
        let body: Value = made.json().await.expect("json");
        body["id"].as_str().unwrap_or_default().to_string()
    }

    /// The user ids of the Team with this name, sorted; `None` when there is no such Team.
    pub fn team_members(&self, display_name: &str) -> Option<Vec<String>> {
        let org = self.org.lock().expect("lock");
        let team = org
            .teams
            .values()
            .find(|t| t["displayName"] == display_name)?;
        let mut members: Vec<String> = team["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["value"].as_str().map(str::to_string))
            .collect();
        members.sort();
        Some(members)
    }

    /// This org's Teams are not enabled (Datadog's default): every `/Groups` call is a 404.
    pub fn disable_teams(&self) {
        self.org.lock().expect("lock").teams_off = true;
    }

    /// How many Teams have this name.
    pub fn teams_named(&self, display_name: &str) -> usize {
        let org = self.org.lock().expect("lock");
        org.teams
            .values()
            .filter(|t| t["displayName"] == display_name)
            .count()
    }

    /// An admin deletes the Team in Datadog.
    pub fn delete_team_by_hand(&self, display_name: &str) {
        self.org
            .lock()
            .expect("lock")
            .teams
            .retain(|_, t| t["displayName"] != display_name);
    }

    pub fn requests(&self, method: &str) -> usize {
        self.org
            .lock()
            .expect("lock")
            .log
            .iter()
            .filter(|(m, _)| m == method)
            .count()
    }
}

/// Checks the token, logs the request, and applies an injected 429.
pub(crate) fn gate(
    org: &mut Org,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    org.log.push((method.to_string(), path.to_string()));
    if !authorized(headers) {
        return Some(errors(StatusCode::FORBIDDEN, "Forbidden"));
    }
    if let Some(i) = org.throttle.iter().position(|m| m == method) {
        org.throttle.remove(i);
        let mut r = errors(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
        for (k, v) in [
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-period", "10"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1"),
            ("x-ratelimit-name", "scim_users"),
        ] {
            r.headers_mut().insert(k, v.parse().expect("header"));
        }
        return Some(r);
    }
    None
}

async fn list_users(
    State(org): Dd,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = gate(&mut org, "GET", "/Users", &headers) {
        return r;
    }
    let filter = q.get("filter").cloned().unwrap_or_default();
    // Only `userName eq "…"` is documented.
    let wanted = match filter.strip_prefix("userName eq ") {
        Some(v) => Some(v.trim_matches('"').to_lowercase()),
        None if filter.is_empty() => None,
        None => return errors(StatusCode::BAD_REQUEST, "Bad Request"),
    };
    let found: Vec<Value> = org
        .users
        .values()
        .filter(|u| {
            wanted
                .as_ref()
                .is_none_or(|w| u["userName"].as_str().map(str::to_lowercase).as_ref() == Some(w))
        })
        .cloned()
        .collect();
    list_response(found)
}

async fn create_user(State(org): Dd, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = gate(&mut org, "POST", "/Users", &headers) {
        return r;
    }
    let Some(user_name) = body["userName"].as_str().map(str::to_lowercase) else {
        return errors(StatusCode::BAD_REQUEST, "Bad Request");
    };
    if body.get("name").and_then(|n| n.get("givenName")).is_some() {
        // Datadog's model has name.formatted only.
        return errors(StatusCode::BAD_REQUEST, "Bad Request");
    }
    if org
        .users
        .values()
        .any(|u| u["userName"] == user_name.as_str())
    {
        return errors(StatusCode::CONFLICT, "Conflict");
    }
    org.next_id += 1;
    let id = format!("00000000-0000-4000-8000-{:012}", org.next_id);
    let mut user = body.clone();
    user["id"] = json!(id);
    user["userName"] = json!(user_name);
    user["meta"] = json!({"resourceType": "User", "location": format!("https://app.datadoghq.com/api/scim/v2/Users/{id}")});
    org.users.insert(id.clone(), user.clone());
    org.status.insert(id, "Pending");
    (StatusCode::CREATED, Json(user)).into_response()
}

async fn get_user(State(org): Dd, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = gate(&mut org, "GET", "/Users/{id}", &headers) {
        return r;
    }
    match org.users.get(&id) {
        Some(u) => Json(u.clone()).into_response(),
        None => errors(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn patch_user(
    State(org): Dd,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = gate(&mut org, "PATCH", "/Users/{id}", &headers) {
        return r;
    }
    let Some(user) = org.users.get_mut(&id) else {
        return errors(StatusCode::NOT_FOUND, "Not found");
    };
    for op in body["Operations"].as_array().into_iter().flatten() {
        // PATCH /Users takes `add` and `replace` only.
        if !matches!(op["op"].as_str(), Some("add" | "replace")) {
            return errors(StatusCode::BAD_REQUEST, "Bad Request");
        }
        match op["path"].as_str() {
            Some(path) => match path.split_once('.') {
                Some((parent, child)) => {
                    if !user[parent].is_object() {
                        user[parent] = json!({});
                    }
                    user[parent][child] = op["value"].clone();
                }
                None => user[path] = op["value"].clone(),
            },
            None => {
                if let Some(obj) = op["value"].as_object() {
                    for (k, v) in obj {
                        user[k.as_str()] = v.clone();
                    }
                }
            }
        }
    }
    Json(user.clone()).into_response()
}

/// Datadog never deletes users: DELETE disables them.
async fn delete_user(State(org): Dd, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut org = org.lock().expect("lock");
    if let Some(r) = gate(&mut org, "DELETE", "/Users/{id}", &headers) {
        return r;
    }
    match org.users.get_mut(&id) {
        Some(u) => {
            u["active"] = json!(false);
            org.status.insert(id, "Disabled");
            StatusCode::NO_CONTENT.into_response()
        }
        None => errors(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// The Users API wants both keys (the SCIM bearer token alone is refused).
fn users_api_authorized(org: &mut Org, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ok = header("dd-api-key") == Some(DATADOG_API_KEY)
        && header("dd-application-key") == Some(DATADOG_TOKEN);
    if !ok {
        org.refused_keys += 1;
    }
    ok
}

/// `GET /api/v2/users?filter=…&filter[status]=…`: `filter` matches emails by substring, as
/// Datadog's does.
async fn users_api_list(
    State(org): Dd,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut org = org.lock().expect("lock");
    org.log.push(("GET".into(), "/api/v2/users".into()));
    if !users_api_authorized(&mut org, &headers) {
        return errors(StatusCode::FORBIDDEN, "Forbidden");
    }
    let needle = q.get("filter").cloned().unwrap_or_default().to_lowercase();
    let statuses: Vec<&str> = q
        .get("filter[status]")
        .map(|s| s.split(',').collect())
        .unwrap_or_else(|| vec!["Active", "Pending", "Disabled"]);
    let data: Vec<Value> = org
        .users
        .iter()
        .filter(|(_, u)| u["userName"].as_str().is_some_and(|n| n.contains(&needle)))
        .filter_map(|(id, u)| {
            let status = org.status.get(id).copied().unwrap_or("Active");
            statuses.contains(&status).then(|| {
                json!({"type": "users", "id": id, "attributes": {
                    "email": u["userName"], "handle": u["userName"], "status": status,
                    "disabled": status == "Disabled"
                }})
            })
        })
        .collect();
    Json(json!({ "data": data, "meta": {"page": {"total_count": data.len()}} })).into_response()
}

/// `POST /api/v2/user_invitations`: one invitation per named user, valid 48 hours.
async fn send_invitations(State(org): Dd, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut org = org.lock().expect("lock");
    org.log
        .push(("POST".into(), "/api/v2/user_invitations".into()));
    if !users_api_authorized(&mut org, &headers) {
        return errors(StatusCode::FORBIDDEN, "Forbidden");
    }
    let mut data = Vec::new();
    for item in body["data"].as_array().into_iter().flatten() {
        let Some(id) = item["relationships"]["user"]["data"]["id"].as_str() else {
            return errors(StatusCode::BAD_REQUEST, "Bad Request");
        };
        if !org.users.contains_key(id) {
            return errors(StatusCode::NOT_FOUND, "Not found");
        }
        org.invitations.push(id.to_string());
        let mut attributes = json!({"invite_type": "basic_invite",
            "uuid": uuid::Uuid::new_v4().to_string(), "created_at": "2026-11-29T00:00:00Z"});
        if let Some(at) = &org.invitation_expiry {
            attributes["expires_at"] = json!(at);
        }
        data.push(
            json!({"type": "user_invitations", "id": uuid::Uuid::new_v4().to_string(),
            "attributes": attributes,
            "relationships": {"user": {"data": {"type": "users", "id": id}}}}),
        );
    }
    (StatusCode::CREATED, Json(json!({ "data": data }))).into_response()
}
