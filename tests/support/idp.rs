//! A fixture IdP: Okta's Users API and Microsoft Graph's token and users endpoints, serving
//! recorded-shape JSON from a mutable in-memory directory, and counting reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub const OKTA_TOKEN: &str = "okta-test-token";
pub const GRAPH_CLIENT_ID: &str = "graph-client-id";
pub const GRAPH_CLIENT_SECRET: &str = "graph-client-secret";
const GRAPH_ACCESS_TOKEN: &str = "graph-access-token";

#[derive(Default)]
struct Directory {
    okta: HashMap<String, Value>,
    graph: HashMap<String, Value>,
    /// Soft-deleted Graph users (`/directory/deletedItems`).
    graph_deleted: HashMap<String, Value>,
    /// Okta app assignments, as (app id, user id).
    okta_assignments: Vec<(String, String)>,
    /// Group ids per user, for Okta and for Graph.
    okta_groups: HashMap<String, Vec<String>>,
    graph_groups: HashMap<String, Vec<String>>,
    /// Every user read, as "okta:<id>" or "graph:<id>".
    reads: Vec<String>,
    token_requests: usize,
}

#[derive(Clone)]
pub struct IdpFixture {
    pub url: String,
    dir: Arc<Mutex<Directory>>,
}

impl IdpFixture {
    pub async fn start() -> Self {
        let dir = Arc::new(Mutex::new(Directory::default()));
        let app = Router::new()
            .route("/api/v1/users/{id}", get(okta_user))
            .route("/{tenant}/oauth2/v2.0/token", post(graph_token))
            .route("/v1.0/users/{id}", get(graph_user))
            .route("/v1.0/directory/deletedItems/{id}", get(graph_deleted_item))
            .route("/api/v1/apps/{app}/users/{id}", get(okta_app_user))
            .route("/api/v1/apps/{app}", get(okta_app_or_group))
            .route("/api/v1/groups/{id}", get(okta_app_or_group))
            .route("/api/v1/users/{id}/groups", get(okta_user_groups))
            .route("/v1.0/groups/{id}", get(graph_group))
            .route(
                "/v1.0/users/{id}/checkMemberGroups",
                post(graph_check_member_groups),
            )
            .with_state(dir.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fixture");
        let url = format!("http://{}", listener.local_addr().expect("fixture addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, dir }
    }

    /// Puts an Okta user in the directory, shaped as `GET /api/v1/users/{id}` returns it.
    pub fn set_okta_user(
        &self,
        id: &str,
        status: &str,
        email: Option<&str>,
        first: &str,
        last: &str,
        title: Option<&str>,
    ) {
        let user = json!({
            "id": id,
            "status": status,
            "created": "2026-01-01T00:00:00.000Z",
            "lastUpdated": "2026-08-20T14:02:09.000Z",
            "profile": {
                "login": email.unwrap_or("no-email-login"),
                "email": email,
                "firstName": first,
                "lastName": last,
                "title": title,
                "department": "Engineering"
            },
            "_links": {"self": {"href": format!("https://example.okta.com/api/v1/users/{id}")}}
        });
        self.dir
            .lock()
            .expect("lock")
            .okta
            .insert(id.to_string(), user);
    }

    /// Sets one (custom) profile attribute of an Okta user.
    pub fn set_okta_profile_field(&self, id: &str, key: &str, value: &str) {
        if let Some(user) = self.dir.lock().expect("lock").okta.get_mut(id) {
            user["profile"][key] = json!(value);
        }
    }

    pub fn remove_okta_user(&self, id: &str) {
        self.dir.lock().expect("lock").okta.remove(id);
    }

    /// Puts a Graph user in the directory.
    pub fn set_graph_user(
        &self,
        id: &str,
        upn: &str,
        enabled: bool,
        display: &str,
        title: Option<&str>,
    ) {
        let user = json!({
            "id": id,
            "userPrincipalName": upn,
            "mail": upn,
            "givenName": display.split(' ').next(),
            "surname": display.split(' ').nth(1),
            "displayName": display,
            "jobTitle": title,
            "accountEnabled": enabled,
            "employeeId": null,
            "department": null
        });
        self.dir
            .lock()
            .expect("lock")
            .graph
            .insert(id.to_string(), user);
    }

    /// Entra's soft delete: gone from `/users`, listed in `/directory/deletedItems`.
    pub fn soft_delete_graph_user(&self, id: &str) {
        let mut dir = self.dir.lock().expect("lock");
        if let Some(user) = dir.graph.remove(id) {
            dir.graph_deleted.insert(id.to_string(), user);
        }
    }

    /// Hard delete: gone from both.
    pub fn hard_delete_graph_user(&self, id: &str) {
        let mut dir = self.dir.lock().expect("lock");
        dir.graph.remove(id);
        dir.graph_deleted.remove(id);
    }

    pub fn assign_okta_app(&self, app: &str, user: &str, assigned: bool) {
        let mut dir = self.dir.lock().expect("lock");
        dir.okta_assignments
            .retain(|(a, u)| !(a == app && u == user));
        if assigned {
            dir.okta_assignments
                .push((app.to_string(), user.to_string()));
        }
    }

    pub fn set_okta_groups(&self, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        self.dir
            .lock()
            .expect("lock")
            .okta_groups
            .insert(user.to_string(), groups);
    }

    pub fn set_graph_groups(&self, user: &str, groups: &[&str]) {
        let groups = groups.iter().map(|g| g.to_string()).collect();
        self.dir
            .lock()
            .expect("lock")
            .graph_groups
            .insert(user.to_string(), groups);
    }

    pub fn reads(&self, key: &str) -> usize {
        self.dir
            .lock()
            .expect("lock")
            .reads
            .iter()
            .filter(|r| *r == key)
            .count()
    }

    pub fn total_reads(&self) -> usize {
        self.dir.lock().expect("lock").reads.len()
    }

    pub fn token_requests(&self) -> usize {
        self.dir.lock().expect("lock").token_requests
    }
}

type Dir = State<Arc<Mutex<Directory>>>;

fn error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"errorCode": code, "errorSummary": code})),
    )
        .into_response()
}

async fn okta_user(State(dir): Dir, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("SSWS {OKTA_TOKEN}")) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let mut dir = dir.lock().expect("lock");
    dir.reads.push(format!("okta:{id}"));
    match dir.okta.get(&id) {
        Some(user) => Json(user.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "E0000007"),
    }
}

async fn graph_token(
    State(dir): Dir,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    dir.lock().expect("lock").token_requests += 1;
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_id").map(String::as_str) == Some(GRAPH_CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(GRAPH_CLIENT_SECRET);
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_ACCESS_TOKEN}))
        .into_response()
}

async fn graph_user(
    State(dir): Dir,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let mut dir = dir.lock().expect("lock");
    dir.reads.push(format!("graph:{id}"));
    let Some(user) = dir.graph.get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound"}})),
        )
            .into_response();
    };
    // Like Graph: without $select only a default projection comes back, without accountEnabled.
    let select: Vec<String> = query
        .get("$select")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_else(|| {
            [
                "id",
                "userPrincipalName",
                "mail",
                "givenName",
                "surname",
                "displayName",
                "jobTitle",
            ]
            .map(String::from)
            .to_vec()
        });
    let projected: serde_json::Map<String, Value> = user
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| select.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Json(Value::Object(projected)).into_response()
}

async fn graph_deleted_item(
    State(dir): Dir,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let mut dir = dir.lock().expect("lock");
    dir.reads.push(format!("graph-deleted:{id}"));
    match dir.graph_deleted.get(&id) {
        Some(user) => {
            Json(json!({"@odata.type": "#microsoft.graph.user", "id": user["id"]})).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound"}})),
        )
            .into_response(),
    }
}

/// Graph's answer to a request without the fixture's app token, if it lacks it.
fn graph_refuses(headers: &HeaderMap) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    (auth != Some(&format!("Bearer {GRAPH_ACCESS_TOKEN}"))).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "InvalidAuthenticationToken"}})),
        )
            .into_response()
    })
}

fn okta_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("SSWS {OKTA_TOKEN}"))
}

/// `GET /api/v1/apps/{app}/users/{id}`: the app user when assigned, 404 otherwise.
async fn okta_app_user(
    State(dir): Dir,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let dir = dir.lock().expect("lock");
    if dir
        .okta_assignments
        .iter()
        .any(|(a, u)| *a == app && *u == id)
    {
        Json(json!({"id": id, "scope": "USER", "status": "ACTIVE", "profile": {}})).into_response()
    } else {
        error(StatusCode::NOT_FOUND, "E0000007")
    }
}

/// `GET /api/v1/users/{id}/groups`.
async fn okta_user_groups(State(dir): Dir, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let dir = dir.lock().expect("lock");
    if !dir.okta.contains_key(&id) {
        return error(StatusCode::NOT_FOUND, "E0000007");
    }
    let groups: Vec<Value> = dir
        .okta_groups
        .get(&id)
        .into_iter()
        .flatten()
        .map(|g| json!({"id": g, "type": "OKTA_GROUP", "profile": {"name": g}}))
        .collect();
    Json(Value::Array(groups)).into_response()
}

/// `POST /v1.0/users/{id}/checkMemberGroups`: which of the given groups the user is in.
async fn graph_check_member_groups(
    State(dir): Dir,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let dir = dir.lock().expect("lock");
    if !dir.graph.contains_key(&id) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound"}})),
        )
            .into_response();
    }
    let asked: Vec<String> = body["groupIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_string))
        .collect();
    let member_of = dir.graph_groups.get(&id).cloned().unwrap_or_default();
    let value: Vec<String> = asked
        .into_iter()
        .filter(|g| member_of.contains(g))
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `GET /v1.0/groups/{id}`: every group exists, named after its id.
async fn graph_group(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    if id.contains("MISSING") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "Request_ResourceNotFound"}})),
        )
            .into_response();
    }
    Json(json!({"id": id, "displayName": format!("Entra {id}")})).into_response()
}

/// `GET /api/v1/apps/{id}`, `GET /api/v1/groups/{id}`: everything exists but ids containing
/// `MISSING` (a misspelt setting).
async fn okta_app_or_group(Path(id): Path<String>, headers: HeaderMap) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    if id.contains("MISSING") {
        error(StatusCode::NOT_FOUND, "E0000007")
    } else {
        Json(json!({"id": id})).into_response()
    }
}
