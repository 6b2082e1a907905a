//! Okta's Event Hooks API (`/api/v1/eventHooks`) as Okta documents it, on the IdP fixture's
//! server: create, list, get, replace, `lifecycle/{verify,activate,deactivate}`, delete (only
//! when inactive). A hook is created ACTIVE and UNVERIFIED; replacing its channel makes it
//! UNVERIFIED again; verifying calls the hook's URI with `x-okta-verification-challenge` and the
//! hook's auth header, and wants the challenge back as `{"verification": …}`. The secret is
//! write-only. Errors are Okta's: `E0000001` validation (an unknown event type, a URI that is
//! not HTTPS — loopback `http://127.0.0.1` is let through so a test can verify a local relay —
//! 25 hooks at most), `E0000006` for a token without the scope, `E0000007` not found.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The event types Okta knows, as far as these tests ask for any: written out here rather
/// than taken from the relay, so a type the relay misspells is refused as Okta would.
const KNOWN_EVENT_TYPES: &[&str] = &[
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.reactivate",
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.account.update_profile",
    "application.user_membership.add",
    "application.user_membership.remove",
    "group.user_membership.add",
    "group.user_membership.remove",
];
const MAX_HOOKS: usize = 25;

#[derive(Default)]
struct Hooks {
    /// By id: the hook as stored, the secret (`authScheme.value`) included.
    hooks: BTreeMap<String, Value>,
    next: u64,
    /// Creates and replaces, in order.
    writes: usize,
    /// The token lacks `okta.eventHooks.manage`.
    forbidden: bool,
}

#[derive(Clone, Default)]
pub struct OktaEventHooksFixture {
    state: Arc<Mutex<Hooks>>,
}

type HookState = State<Arc<Mutex<Hooks>>>;

fn okta_error(status: StatusCode, code: &str, summary: &str, causes: &[String]) -> Response {
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "errorSummary": c }))
        .collect();
    (
        status,
        Json(json!({"errorCode": code, "errorSummary": summary, "errorCauses": causes})),
    )
        .into_response()
}

fn refused(hooks: &Hooks, headers: &HeaderMap) -> Option<Response> {
    if !crate::idp::okta_authorized(headers) {
        return Some(okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
            &[],
        ));
    }
    hooks.forbidden.then(|| {
        okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
            &[],
        )
    })
}

/// A hook as the API shows it: the secret left out.
fn shown(hook: &Value) -> Value {
    let mut hook = hook.clone();
    if let Some(scheme) = hook
        .pointer_mut("/channel/config/authScheme")
        .and_then(Value::as_object_mut)
    {
        scheme.remove("value");
    }
    hook
}

/// Okta's validation of a create or replace body; the causes when it fails.
fn invalid(body: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    if body["name"].as_str().is_none_or(str::is_empty) {
        causes.push("name: The field cannot be left blank".into());
    }
    if body["events"]["type"] != "EVENT_TYPE" {
        causes.push("events.type: must be EVENT_TYPE".into());
    }
    for event in body["events"]["items"].as_array().into_iter().flatten() {
        let known = event
            .as_str()
            .is_some_and(|e| KNOWN_EVENT_TYPES.contains(&e));
        if !known {
            causes.push(format!("events.items: Invalid event type: {event}"));
        }
    }
    if body["channel"]["type"] != "HTTP" || body["channel"]["version"] != "1.0.0" {
        causes.push("channel: type HTTP, version 1.0.0".into());
    }
    let uri = body["channel"]["config"]["uri"]
        .as_str()
        .unwrap_or_default();
    if !(uri.starts_with("https://") || uri.starts_with("http://127.0.0.1")) {
        causes.push("channel.config.uri: The URI must use HTTPS".into());
    }
    let scheme = &body["channel"]["config"]["authScheme"];
    if !scheme.is_null() && (scheme["type"] != "HEADER" || scheme["key"].as_str().is_none()) {
        causes.push("channel.config.authScheme: Currently only supports HEADER".into());
    }
    causes
}

/// Okta's answer to a body that failed validation, when it did.
fn validation_failed(causes: &[String]) -> Option<Response> {
    (!causes.is_empty()).then(|| {
        okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: eventHook",
            causes,
        )
    })
}

async fn list(State(s): HookState, headers: HeaderMap) -> Response {
    let hooks = s.lock().expect("lock");
    if let Some(r) = refused(&hooks, &headers) {
        return r;
    }
    Json(hooks.hooks.values().map(shown).collect::<Vec<_>>()).into_response()
}

async fn create(State(s): HookState, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let mut hooks = s.lock().expect("lock");
    if let Some(r) = refused(&hooks, &headers) {
        return r;
    }
    let mut causes = invalid(&body);
    if hooks.hooks.len() >= MAX_HOOKS {
        causes.push(format!(
            "Your org has reached the limit of {MAX_HOOKS} event hooks"
        ));
    }
    if let Some(refusal) = validation_failed(&causes) {
        return refusal;
    }
    hooks.next += 1;
    hooks.writes += 1;
    let id = format!("who{:017}", hooks.next);
    let mut hook = body;
    hook["id"] = json!(id);
    hook["status"] = json!("ACTIVE");
    hook["verificationStatus"] = json!("UNVERIFIED");
    hooks.hooks.insert(id, hook.clone());
    Json(shown(&hook)).into_response()
}

async fn read(State(s): HookState, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let hooks = s.lock().expect("lock");
    if let Some(r) = refused(&hooks, &headers) {
        return r;
    }
    match hooks.hooks.get(&id) {
        Some(h) => Json(shown(h)).into_response(),
        None => not_found(&id),
    }
}

fn not_found(id: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (EventHook)"),
        &[],
    )
}

async fn replace(
    State(s): HookState,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut hooks = s.lock().expect("lock");
    if let Some(r) = refused(&hooks, &headers) {
        return r;
    }
    if let Some(refusal) = validation_failed(&invalid(&body)) {
        return refusal;
    }
    hooks.writes += 1;
    let Some(old) = hooks.hooks.get(&id).cloned() else {
        return not_found(&id);
    };
    let mut hook = body;
    hook["id"] = json!(id);
    hook["status"] = old["status"].clone();
    // A new channel (URI, auth, headers) must be verified again.
    hook["verificationStatus"] = if hook["channel"] == old["channel"] {
        old["verificationStatus"].clone()
    } else {
        json!("UNVERIFIED")
    };
    hooks.hooks.insert(id, hook.clone());
    Json(shown(&hook)).into_response()
}

async fn lifecycle(
    State(s): HookState,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let hook = {
        let hooks = s.lock().expect("lock");
        if let Some(r) = refused(&hooks, &headers) {
            return r;
        }
        match hooks.hooks.get(&id) {
            Some(h) => h.clone(),
            None => return not_found(&id),
        }
    };
    let (field, value) = match action.as_str() {
        "activate" => ("status", "ACTIVE"),
        "deactivate" => ("status", "INACTIVE"),
        "verify" => match verify(&hook).await {
            Ok(()) => ("verificationStatus", "VERIFIED"),
            Err(cause) => {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: Verification of the event hook failed",
                    &[cause],
                )
            }
        },
        _ => return not_found(&action),
    };
    let mut hooks = s.lock().expect("lock");
    let Some(stored) = hooks.hooks.get_mut(&id) else {
        return not_found(&id);
    };
    stored[field] = json!(value);
    Json(shown(stored)).into_response()
}

/// Okta's one-time verification: a GET to the hook's URI with a challenge and the auth header.
async fn verify(hook: &Value) -> Result<(), String> {
    let config = &hook["channel"]["config"];
    let uri = config["uri"].as_str().unwrap_or_default();
    let challenge = format!("challenge-{}", uuid::Uuid::new_v4());
    let mut request = reqwest::Client::new()
        .get(uri)
        .timeout(std::time::Duration::from_secs(3))
        .header("x-okta-verification-challenge", &challenge);
    if let (Some(key), Some(value)) = (
        config["authScheme"]["key"].as_str(),
        config["authScheme"]["value"].as_str(),
    ) {
        request = request.header(key, value);
    }
    let resp = request
        .send()
        .await
        .map_err(|e| format!("{uri} did not answer: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == 200 && body["verification"] == challenge.as_str() {
        Ok(())
    } else {
        Err(format!("{uri} answered {status} without the challenge"))
    }
}

async fn remove(State(s): HookState, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let mut hooks = s.lock().expect("lock");
    if let Some(r) = refused(&hooks, &headers) {
        return r;
    }
    match hooks.hooks.get(&id) {
        None => not_found(&id),
        Some(h) if h["status"] == "ACTIVE" => okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: Cannot delete an ACTIVE event hook",
            &[],
        ),
        Some(_) => {
            hooks.hooks.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

impl OktaEventHooksFixture {
    /// The routes, to merge into the IdP fixture's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/eventHooks", get(list).post(create))
            .route(
                "/api/v1/eventHooks/{id}",
                get(read).put(replace).delete(remove),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/{action}",
                post(lifecycle),
            )
            .with_state(self.state.clone())
    }

    /// Every hook, secret included (what Okta holds).
    pub fn hooks(&self) -> Vec<Value> {
        self.state
            .lock()
            .expect("lock")
            .hooks
            .values()
            .cloned()
            .collect()
    }

    /// Creates and replaces so far.
    pub fn writes(&self) -> usize {
        self.state.lock().expect("lock").writes
    }

    /// The token lacks `okta.eventHooks.manage`: every call is a 403.
    pub fn forbid(&self, forbidden: bool) {
        self.state.lock().expect("lock").forbidden = forbidden;
    }

    /// Okta delivers `body` through the hook named `name`, as it would: a POST to its URI with
    /// its auth header. The relay's answer status.
    pub async fn deliver(&self, name: &str, body: &Value) -> u16 {
        let hook = self
            .hooks()
            .into_iter()
            .find(|h| h["name"] == name)
            .expect("the hook exists");
        assert_eq!(
            hook["status"], "ACTIVE",
            "Okta delivers through active hooks only"
        );
        assert_eq!(hook["verificationStatus"], "VERIFIED", "and verified ones");
        let config = &hook["channel"]["config"];
        reqwest::Client::new()
            .post(config["uri"].as_str().expect("uri"))
            .header(
                config["authScheme"]["key"].as_str().expect("key"),
                config["authScheme"]["value"].as_str().expect("secret"),
            )
            .json(body)
            .send()
            .await
            .expect("relay reachable")
            .status()
            .as_u16()
    }
}
