//! A SCIM target that behaves as Datadog documents its SCIM API, for the profile's tests:
//! `userName` filter only, PATCH `add`/`replace` only, `{"errors": [...]}` error bodies,
//! `X-RateLimit-*` headers on 429, DELETE that disables instead of deleting, no ETags, no
//! ServiceProviderConfig. In memory, with the same bearer-token check.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub const DATADOG_TOKEN: &str = "dd-application-key-for-tests";

#[derive(Default)]
struct Org {
    users: BTreeMap<String, Value>,
    next_id: u64,
    /// Requests still to be answered 429 (Datadog's rate limiting), per method.
    throttle: Vec<String>,
    log: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct DatadogFixture {
    pub base_url: String,
    org: Arc<Mutex<Org>>,
}

type Dd = State<Arc<Mutex<Org>>>;

fn errors(status: StatusCode, message: &str) -> Response {
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

    pub fn user_count(&self) -> usize {
        self.org.lock().expect("lock").users.len()
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
fn gate(org: &mut Org, method: &str, path: &str, headers: &HeaderMap) -> Option<Response> {
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
    Json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": found.len(), "startIndex": 1, "itemsPerPage": found.len(), "Resources": found
    }))
    .into_response()
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
    org.users.insert(id, user.clone());
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
            StatusCode::NO_CONTENT.into_response()
        }
        None => errors(StatusCode::NOT_FOUND, "Not found"),
    }
}
