//! A fixture IdP: Okta's Users API and Microsoft Graph's token and users endpoints, serving
//! recorded-shape JSON from a mutable in-memory directory, and counting reads. For the sweeper
//! it also pages Okta's user search by `lastUpdated` (`Link: rel="next"`), Graph's
//! `/users/delta` (next and delta links, `@removed`, `410 Gone` for expired tokens) and keeps
//! Graph subscriptions.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub const OKTA_TOKEN: &str = "okta-test-token";
/// The Okta service app the fixture knows, and the access token it is given.
pub const OKTA_CLIENT_ID: &str = "0oaRELAYSERVICEAPP";
const OKTA_ACCESS_TOKEN: &str = "okta-service-app-access-token";
/// The test-only key and certificate of the Okta service app and the Entra app.
pub const TEST_CLIENT_KEY: &str = include_str!("keys/test-client-key.pk8.pem");
pub const TEST_CLIENT_CERT: &str = include_str!("keys/test-client-cert.pem");
pub const GRAPH_CLIENT_ID: &str = "graph-client-id";
pub const GRAPH_CLIENT_SECRET: &str = "graph-client-secret";
const GRAPH_ACCESS_TOKEN: &str = "graph-access-token";

#[derive(Default)]
struct Directory {
    okta: HashMap<String, Value>,
    graph: HashMap<String, Value>,
    /// Soft-deleted Graph users (`/directory/deletedItems`).
    graph_deleted: HashMap<String, Value>,
    /// Graph users whose next reads answer 404 from `/users` and `deletedItems` though they
    /// exist (replication lag): id → reads left.
    graph_lagging: HashMap<String, usize>,
    /// While set, Okta's user reads answer 503 (an outage).
    okta_down: bool,
    /// Okta app assignments, as (app id, user id).
    okta_assignments: Vec<(String, String)>,
    /// Group ids per user, for Okta and for Graph.
    okta_groups: HashMap<String, Vec<String>>,
    /// Okta group names an admin set (a group without one is named after its id).
    okta_group_names: HashMap<String, String>,
    /// Graph: the groups each member (user, or nested group) is a direct member of.
    graph_groups: HashMap<String, Vec<String>>,
    /// The members of `graph_groups` that are groups nested in others.
    graph_nested: std::collections::HashSet<String>,
    /// Every user read, as "okta:<id>" or "graph:<id>".
    reads: Vec<String>,
    /// Every user read's answer, as (read, status, when).
    answered: Vec<(String, u16, std::time::SystemTime)>,
    /// Okta's rate limit on user reads, when modelled: the window every answer describes.
    okta_window: Option<RateWindow>,
    /// Graph user reads still to be answered 429, and the `Retry-After` they carry.
    graph_throttled: Option<(usize, u64)>,
    /// Okta's user listing: the list request (by number, from 1) answered 429 once, with the
    /// window's reset; and when each list request came.
    okta_list_throttled: Option<(usize, std::time::SystemTime)>,
    /// Okta users whose listing trails their last change (the search index's lag): the list
    /// shows the version before it.
    okta_list_lagging: HashMap<String, Value>,
    okta_list_times: Vec<std::time::SystemTime>,
    token_requests: usize,
    okta_token_requests: usize,
    /// While set, the Okta service app requires DPoP.
    okta_dpop: Option<crate::okta_dpop::DpopServer>,
    /// The fixture's own address, for the links it hands out.
    url: String,
    /// Okta's `lastUpdated` clock: every change moves it ten minutes on.
    okta_changes: i64,
    /// Graph's change counter, and the counter value of each user's last change.
    graph_version: u64,
    graph_changed: BTreeMap<String, u64>,
    delta: DeltaBehaviour,
    subscriptions: BTreeMap<String, Value>,
    /// Every subscription create request body, and every renewal as (id, expiry).
    subscription_creates: Vec<Value>,
    subscription_renewals: Vec<(String, String)>,
    /// While set, subscriptions are checked as Graph checks them: a create calls the
    /// notification and lifecycle URLs with a `validationToken` and fails with 400 unless each
    /// answers it; an expiry past Graph's limit (from the real time) or a long clientState is
    /// a 400. Off by default: most tests run the relay on a clock of their own.
    validate_endpoints: bool,
    /// Every URL validated successfully.
    subscription_validations: Vec<String>,
    okta_list_requests: usize,
    /// Graph membership changes as (change counter, group, user, joined).
    graph_member_log: Vec<(u64, String, String, bool)>,
    /// Okta's System Log: (published, event type, user id).
    okta_log: Vec<(chrono::DateTime<chrono::Utc>, String, String)>,
}

impl Directory {
    fn okta_logged(&mut self, event_type: &str, user: &str) {
        self.okta_log
            .push((chrono::Utc::now(), event_type.to_string(), user.to_string()));
    }
}

/// One window of Okta's rate limit on `GET /api/v1/users/{id}`: every answer carries its
/// `X-Rate-Limit-*` headers, and a read past the limit is a 429 until it resets.
#[derive(Debug, Clone, Copy)]
struct RateWindow {
    limit: u64,
    remaining: u64,
    reset: std::time::SystemTime,
}

impl RateWindow {
    fn reset_epoch(&self) -> u64 {
        self.reset
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }
}

struct DeltaBehaviour {
    page_size: usize,
    /// Delta tokens below this are expired: `410 Gone`.
    expired_below: u64,
    /// The n-th delta page request from now fails with 503 (a read that breaks off).
    fail_request: Option<usize>,
    requests: usize,
    /// Okta list pages are this long (overrides the `limit` asked for).
    okta_page_size: usize,
}

impl Default for DeltaBehaviour {
    fn default() -> Self {
        Self {
            page_size: 2,
            expired_below: 0,
            fail_request: None,
            requests: 0,
            okta_page_size: 2,
        }
    }
}

#[derive(Clone)]
pub struct IdpFixture {
    pub url: String,
    dir: Arc<Mutex<Directory>>,
    /// Okta's Event Hooks API on the same org.
    pub event_hooks: crate::okta_event_hooks::OktaEventHooksFixture,
}

impl IdpFixture {
    pub async fn start() -> Self {
        let dir = Arc::new(Mutex::new(Directory::default()));
        let app = Router::new()
            .route("/api/v1/users/{id}", get(okta_user))
            .route("/api/v1/users", get(okta_list_users))
            .route("/api/v1/logs", get(okta_logs))
            .route("/v1.0/users/delta", get(graph_delta))
            .route("/v1.0/groups/delta", get(graph_groups_delta))
            .route(
                "/v1.0/subscriptions",
                post(graph_create_subscription).get(graph_list_subscriptions),
            )
            .route(
                "/v1.0/subscriptions/{id}",
                patch(graph_renew_subscription)
                    .get(graph_get_subscription)
                    .delete(graph_delete_subscription),
            )
            .route("/{tenant}/oauth2/v2.0/token", post(graph_token))
            .route("/oauth2/v1/token", post(okta_token))
            .route("/v1.0/users/{id}", get(graph_user))
            .route("/v1.0/directory/deletedItems/{id}", get(graph_deleted_item))
            .route("/api/v1/apps/{app}/users/{id}", get(okta_app_user))
            .route("/api/v1/apps/{app}", get(okta_app_or_group))
            .route("/api/v1/groups/{id}", get(okta_app_or_group))
            .route("/api/v1/users/{id}/groups", get(okta_user_groups))
            .route("/v1.0/groups/{id}", get(graph_group))
            .route(
                "/v1.0/groups/{id}/transitiveMembers/{kind}",
                get(graph_transitive_members),
            )
            .route(
                "/v1.0/users/{id}/checkMemberGroups",
                post(graph_check_member_groups),
            )
            .with_state(dir.clone());
        let event_hooks = crate::okta_event_hooks::OktaEventHooksFixture::default();
        let app = app
            .merge(event_hooks.router())
            .layer(axum::middleware::from_fn_with_state(
                dir.clone(),
                okta_dpop_guard,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fixture");
        let url = format!("http://{}", listener.local_addr().expect("fixture addr"));
        dir.lock().expect("lock").url = url.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            dir,
            event_hooks,
        }
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
        let mut dir = self.dir.lock().expect("lock");
        dir.okta_changes += 1;
        let last_updated = chrono::DateTime::from_timestamp(1_787_000_000, 0).expect("time")
            + chrono::Duration::minutes(10 * dir.okta_changes);
        let user = json!({
            "id": id,
            "status": status,
            "created": "2026-01-01T00:00:00.000Z",
            "lastUpdated": last_updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
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
        dir.okta.insert(id.to_string(), user);
    }

    /// Sets one (custom) profile attribute of an Okta user.
    pub fn set_okta_profile_field(&self, id: &str, key: &str, value: &str) {
        if let Some(user) = self.dir.lock().expect("lock").okta.get_mut(id) {
            user["profile"][key] = json!(value);
        }
    }

    /// Okta's delete: the user is gone from every API, and the System Log says so.
    /// Removes an Okta user and leaves no System Log event of it (deleted longer ago than the
    /// log keeps, or its read lost): only a full pass can find them gone.
    pub fn remove_okta_user_without_trace(&self, id: &str) {
        self.dir.lock().expect("lock").okta.remove(id);
    }

    pub fn remove_okta_user(&self, id: &str) {
        let mut dir = self.dir.lock().expect("lock");
        dir.okta.remove(id);
        dir.okta_logged("user.lifecycle.delete.initiated", id);
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
        let mut dir = self.dir.lock().expect("lock");
        dir.graph.insert(id.to_string(), user);
        dir.graph_changed_now(id);
    }

    /// Entra's soft delete: gone from `/users`, listed in `/directory/deletedItems`.
    pub fn soft_delete_graph_user(&self, id: &str) {
        let mut dir = self.dir.lock().expect("lock");
        if let Some(user) = dir.graph.remove(id) {
            dir.graph_deleted.insert(id.to_string(), user);
        }
        dir.graph_changed_now(id);
    }

    /// While `down`, Okta answers every user read with `503`.
    pub fn okta_outage(&self, down: bool) {
        self.dir.lock().expect("lock").okta_down = down;
    }

    /// The next `reads` reads of this Graph user answer 404 from `/users` and from
    /// `deletedItems` alike, as replication can right after a change: it looks hard-deleted.
    /// Okta's user list (its search index) still shows this user as they were before their
    /// last change, while `/api/v1/users/{id}` shows the change.
    pub fn lag_okta_list(&self, id: &str, before: Value) {
        self.dir
            .lock()
            .expect("lock")
            .okta_list_lagging
            .insert(id.to_string(), before);
    }

    /// The user as `/api/v1/users/{id}` answers now.
    pub fn okta_user(&self, id: &str) -> Option<Value> {
        self.dir.lock().expect("lock").okta.get(id).cloned()
    }

    pub fn lag_graph_user(&self, id: &str, reads: usize) {
        self.dir
            .lock()
            .expect("lock")
            .graph_lagging
            .insert(id.to_string(), reads);
    }

    /// Hard delete: gone from both.
    pub fn hard_delete_graph_user(&self, id: &str) {
        let mut dir = self.dir.lock().expect("lock");
        dir.graph.remove(id);
        dir.graph_deleted.remove(id);
        dir.graph_changed_now(id);
    }

    /// Graph forgets the delta tokens handed out so far: using one answers `410 Gone`.
    pub fn expire_delta_tokens(&self) {
        let mut dir = self.dir.lock().expect("lock");
        dir.delta.expired_below = dir.graph_version + 1;
    }

    /// The `n`-th `/users/delta` request from now (1 = the next) fails with 503.
    pub fn fail_delta_request(&self, n: usize) {
        let mut dir = self.dir.lock().expect("lock");
        dir.delta.fail_request = Some(dir.delta.requests + n);
    }

    pub fn delta_requests(&self) -> usize {
        self.dir.lock().expect("lock").delta.requests
    }

    /// The `nth` request to Okta's user listing from now on (1: the next) is answered 429
    /// once, its window resetting at `reset`.
    pub fn throttle_okta_list(&self, nth: usize, reset: std::time::SystemTime) {
        let mut dir = self.dir.lock().expect("lock");
        let at = dir.okta_list_requests + nth;
        dir.okta_list_throttled = Some((at, reset));
    }

    /// When each request to Okta's user listing came.
    pub fn okta_list_times(&self) -> Vec<std::time::SystemTime> {
        self.dir.lock().expect("lock").okta_list_times.clone()
    }

    pub fn okta_list_requests(&self) -> usize {
        self.dir.lock().expect("lock").okta_list_requests
    }

    /// Subscriptions Graph currently has.
    pub fn subscriptions(&self) -> Vec<Value> {
        self.dir
            .lock()
            .expect("lock")
            .subscriptions
            .values()
            .cloned()
            .collect()
    }

    /// Every create request body received.
    pub fn subscription_creates(&self) -> Vec<Value> {
        self.dir.lock().expect("lock").subscription_creates.clone()
    }

    /// Every renewal received, as (id, requested expiry).
    pub fn subscription_renewals(&self) -> Vec<(String, String)> {
        self.dir.lock().expect("lock").subscription_renewals.clone()
    }

    /// Graph checks each subscription from now on as it does for real: the URLs validated (the
    /// relay must answer), the expiry and clientState within its limits.
    pub fn validate_subscription_endpoints(&self) {
        self.dir.lock().expect("lock").validate_endpoints = true;
    }

    /// Every URL Graph validated successfully, in order.
    pub fn subscription_validations(&self) -> Vec<String> {
        self.dir
            .lock()
            .expect("lock")
            .subscription_validations
            .clone()
    }

    /// A subscription's expiry moves (time passed).
    pub fn set_subscription_expiry(&self, id: &str, expires_at: chrono::DateTime<chrono::Utc>) {
        if let Some(sub) = self.dir.lock().expect("lock").subscriptions.get_mut(id) {
            sub["expirationDateTime"] = json!(expires_at.to_rfc3339());
        }
    }

    /// A subscription made outside the relay (another deployment's, or by hand).
    pub fn add_subscription(&self, id: &str, body: Value) {
        let mut sub = body;
        sub["id"] = json!(id);
        self.dir
            .lock()
            .expect("lock")
            .subscriptions
            .insert(id.to_string(), sub);
    }

    /// A user changed: Graph notifies each subscription to `users` delivering to `url`, with
    /// its own id and clientState. The answers' statuses.
    pub async fn notify_user_changed(&self, url: &str, user_id: &str) -> Vec<u16> {
        let subs: Vec<Value> = self
            .subscriptions()
            .into_iter()
            .filter(|s| s["resource"] == "users" && s["notificationUrl"] == url)
            .collect();
        let mut answers = Vec::new();
        for sub in subs {
            let client_state = sub["clientState"].as_str().unwrap_or_default();
            let mut body = crate::payloads::graph_notification(user_id, client_state, 1);
            body["value"][0]["subscriptionId"] = sub["id"].clone();
            let status = reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            answers.push(status);
        }
        answers
    }

    /// Graph drops every subscription (expired, or removed by an admin).
    pub fn drop_subscriptions(&self) {
        self.dir.lock().expect("lock").subscriptions.clear();
    }

    pub fn assign_okta_app(&self, app: &str, user: &str, assigned: bool) {
        let mut dir = self.dir.lock().expect("lock");
        dir.okta_assignments
            .retain(|(a, u)| !(a == app && u == user));
        if assigned {
            dir.okta_assignments
                .push((app.to_string(), user.to_string()));
        }
        let kind = if assigned { "add" } else { "remove" };
        dir.okta_logged(&format!("application.user_membership.{kind}"), user);
    }

    /// The user's assignment to `app` removed with no System Log entry (its event lost): only
    /// a full pass finds it.
    pub fn unassign_okta_app_without_trace(&self, app: &str, user: &str) {
        self.dir
            .lock()
            .expect("lock")
            .okta_assignments
            .retain(|(a, u)| !(a == app && u == user));
    }

    /// An admin renames an Okta group (its id stays).
    pub fn rename_okta_group(&self, group: &str, name: &str) {
        let mut dir = self.dir.lock().expect("lock");
        dir.okta_group_names
            .insert(group.to_string(), name.to_string());
    }

    /// The Okta groups `user` is in; each join and leave goes to the System Log (and, as in
    /// Okta, leaves the user's `lastUpdated` alone).
    pub fn set_okta_groups(&self, user: &str, groups: &[&str]) {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let mut dir = self.dir.lock().expect("lock");
        let before = dir.okta_groups.get(user).cloned().unwrap_or_default();
        if groups.iter().any(|g| !before.contains(g)) {
            dir.okta_logged("group.user_membership.add", user);
        }
        if before.iter().any(|g| !groups.contains(g)) {
            dir.okta_logged("group.user_membership.remove", user);
        }
        dir.okta_groups.insert(user.to_string(), groups);
    }

    /// Models Okta's rate limit on user reads: `limit` a window, `remaining` left in the
    /// current one, which resets at `reset` (then a minute each). Answers carry the headers.
    pub fn okta_rate_limit(&self, limit: u64, remaining: u64, reset: std::time::SystemTime) {
        self.dir.lock().expect("lock").okta_window = Some(RateWindow {
            limit,
            remaining,
            reset,
        });
    }

    /// The next `reads` Graph user reads are throttled: 429 with `Retry-After: seconds`.
    pub fn throttle_graph_reads(&self, reads: usize, seconds: u64) {
        self.dir.lock().expect("lock").graph_throttled = Some((reads, seconds));
    }

    /// Token requests of the Okta service app.
    /// The Okta service app requires DPoP from now on (Okta's default for new service apps).
    pub fn okta_require_dpop(&self) {
        self.dir.lock().expect("lock").okta_dpop = Some(Default::default());
    }

    /// Okta API calls that carried a valid DPoP proof.
    pub fn okta_dpop_proofs(&self) -> usize {
        self.dir
            .lock()
            .expect("lock")
            .okta_dpop
            .as_ref()
            .map_or(0, |d| d.api_proofs)
    }

    pub fn okta_token_requests(&self) -> usize {
        self.dir.lock().expect("lock").okta_token_requests
    }

    /// Every user read's answer: (read, status, when).
    pub fn answered_reads(&self) -> Vec<(String, u16, std::time::SystemTime)> {
        self.dir.lock().expect("lock").answered.clone()
    }

    pub fn okta_log_requests(&self) -> usize {
        self.dir
            .lock()
            .expect("lock")
            .reads
            .iter()
            .filter(|r| *r == "okta-log")
            .count()
    }

    /// The Graph groups `user` is a member of; each join and leave is a change `/groups/delta`
    /// reports.
    pub fn set_graph_groups(&self, user: &str, groups: &[&str]) {
        self.dir.lock().expect("lock").set_member_of(user, groups);
    }

    /// Nests Graph group `child` directly in `parents` (none: in no group): its transitive
    /// members become transitive members of each parent, and `/groups/delta` reports the
    /// group as a member joining or leaving.
    pub fn nest_graph_group(&self, child: &str, parents: &[&str]) {
        let mut dir = self.dir.lock().expect("lock");
        dir.graph_nested.insert(child.to_string());
        dir.set_member_of(child, parents);
    }
}

impl Directory {
    fn set_member_of(&mut self, user: &str, groups: &[&str]) {
        let dir = self;
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        let before = dir.graph_groups.get(user).cloned().unwrap_or_default();
        for g in before.iter().filter(|g| !groups.contains(g)) {
            dir.graph_version += 1;
            let v = dir.graph_version;
            dir.graph_member_log
                .push((v, g.clone(), user.to_string(), false));
        }
        for g in groups.iter().filter(|g| !before.contains(g)) {
            dir.graph_version += 1;
            let v = dir.graph_version;
            dir.graph_member_log
                .push((v, g.clone(), user.to_string(), true));
        }
        dir.graph_groups.insert(user.to_string(), groups);
    }

    /// The groups `member` is in, directly or through nesting.
    fn graph_member_of(&self, member: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut next = self.graph_groups.get(member).cloned().unwrap_or_default();
        while let Some(g) = next.pop() {
            if !found.contains(&g) {
                next.extend(self.graph_groups.get(&g).cloned().unwrap_or_default());
                found.push(g);
            }
        }
        found
    }

    fn graph_member_json(&self, member: &str, joined: bool) -> Value {
        let kind = if self.graph_nested.contains(member) {
            "#microsoft.graph.group"
        } else {
            "#microsoft.graph.user"
        };
        let mut m = json!({"@odata.type": kind, "id": member});
        if !joined {
            m["@removed"] = json!({"reason": "deleted"});
        }
        m
    }
}

impl IdpFixture {
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
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let mut dir = dir.lock().expect("lock");
    dir.reads.push(format!("okta:{id}"));
    let now = std::time::SystemTime::now();
    // Okta's rate limit: the window resets at its time; past its limit, 429 until then.
    let window = dir.okta_window.as_mut().map(|w| {
        if now >= w.reset {
            w.remaining = w.limit;
            w.reset = now + std::time::Duration::from_secs(60);
        }
        let over = w.remaining == 0;
        w.remaining = w.remaining.saturating_sub(1);
        (over, *w)
    });
    let mut resp = match window {
        Some((true, _)) => error(StatusCode::TOO_MANY_REQUESTS, "E0000047"),
        _ if dir.okta_down => error(StatusCode::SERVICE_UNAVAILABLE, "E0000009"),
        _ => match dir.okta.get(&id) {
            Some(user) => Json(user.clone()).into_response(),
            None => error(StatusCode::NOT_FOUND, "E0000007"),
        },
    };
    if let Some((_, w)) = window {
        for (name, value) in [
            ("x-rate-limit-limit", w.limit),
            ("x-rate-limit-remaining", w.remaining),
            ("x-rate-limit-reset", w.reset_epoch()),
        ] {
            resp.headers_mut()
                .insert(name, value.to_string().parse().expect("header"));
        }
    }
    let status = resp.status().as_u16();
    dir.answered.push((format!("okta:{id}"), status, now));
    resp
}

async fn graph_token(
    State(dir): Dir,
    Path(_tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let audience = {
        let mut dir = dir.lock().expect("lock");
        dir.token_requests += 1;
        format!("{}/{_tenant}/oauth2/v2.0/token", dir.url)
    };
    let field = |k: &str| form.get(k).map(String::as_str);
    // A client secret, or a certificate credential's assertion.
    let proven = field("client_secret") == Some(GRAPH_CLIENT_SECRET)
        || (field("client_assertion_type")
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && check_assertion(
                field("client_assertion").unwrap_or_default(),
                GRAPH_CLIENT_ID,
                &audience,
                true,
            )
            .is_ok());
    let ok = field("grant_type") == Some("client_credentials")
        && field("client_id") == Some(GRAPH_CLIENT_ID)
        && proven;
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
    if let Some((left, retry_after)) = dir.graph_throttled.filter(|(left, _)| *left > 0) {
        dir.graph_throttled = Some((left - 1, retry_after));
        dir.answered
            .push((format!("graph:{id}"), 429, std::time::SystemTime::now()));
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {"code": "TooManyRequests"}})),
        )
            .into_response();
        resp.headers_mut().insert(
            "retry-after",
            retry_after.to_string().parse().expect("header"),
        );
        return resp;
    }
    dir.answered
        .push((format!("graph:{id}"), 200, std::time::SystemTime::now()));
    let lagging = match dir.graph_lagging.get_mut(&id) {
        Some(left) if *left > 0 => {
            *left -= 1;
            true
        }
        _ => false,
    };
    let Some(user) = dir.graph.get(&id).cloned().filter(|_| !lagging) else {
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

/// The SSWS token, or an access token the service app was given.
pub(crate) fn okta_authorized(headers: &HeaderMap) -> bool {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    auth == Some(&format!("SSWS {OKTA_TOKEN}"))
        || auth == Some(&format!("Bearer {OKTA_ACCESS_TOKEN}"))
        // Its proof was checked by `okta_dpop_guard`.
        || auth == Some(&format!("DPoP {}", crate::okta_dpop::OKTA_DPOP_ACCESS_TOKEN))
}

/// While the service app requires DPoP, an Okta API call with its access token must be
/// `DPoP <token>` with a valid proof for this very call; a refusal is Okta's 401 (asking for
/// the API's nonce when that is all that is missing).
async fn okta_dpop_guard(
    State(dir): Dir,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // Owned: nothing borrowed from the request may live across the awaits below.
    let [authorization, proof, host] = ["authorization", "dpop", "host"].map(|name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let (method, path) = (
        request.method().as_str().to_string(),
        request.uri().path().to_string(),
    );
    let by_token = authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("DPoP ") || a.starts_with("Bearer "));
    if !path.starts_with("/api/v1/") || !by_token {
        return next.run(request).await;
    }
    let htu = format!("http://{}{path}", host.unwrap_or_default());
    let checked = dir
        .lock()
        .expect("lock")
        .okta_dpop
        .as_mut()
        .map(|dpop| dpop.api_call(authorization.as_deref(), proof.as_deref(), &method, &htu));
    match checked {
        None | Some(Ok(())) => next.run(request).await,
        Some(Err(crate::okta_dpop::ProofRefusal::Nonce(nonce))) => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    "www-authenticate",
                    "DPoP error=\"use_dpop_nonce\"".to_string(),
                ),
                ("dpop-nonce", nonce.to_string()),
            ],
            Json(json!({"errorCode": "E0000011", "errorSummary": "use_dpop_nonce"})),
        )
            .into_response(),
        Some(Err(why)) => (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!("DPoP error=\"invalid_dpop_proof\", error_description=\"{why:?}\""),
            )],
            Json(json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"})),
        )
            .into_response(),
    }
}

/// Checks a client assertion (RFC 7523) as Okta and Entra do: signed RS256 with the test
/// key, issued by and about `client_id`, for `audience`, not expired, and (Entra) naming the
/// test certificate by its SHA-256 thumbprint.
fn check_assertion(
    assertion: &str,
    client_id: &str,
    audience: &str,
    thumbprint: bool,
) -> Result<(), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let key = scim_relay_core::directory::client_assertion::ClientKey::from_pem(
        TEST_CLIENT_KEY,
        "test key",
    )
    .map_err(|e| e.to_string())?;
    let (input, signature) = assertion.rsplit_once('.').ok_or("not a JWT")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "signature not base64url")?;
    // Entra: a certificate's SHA-256 thumbprint goes with PS256 (RSA-PSS); Okta: RS256.
    let algorithm: &dyn ring::signature::VerificationAlgorithm = if thumbprint {
        &ring::signature::RSA_PSS_2048_8192_SHA256
    } else {
        &ring::signature::RSA_PKCS1_2048_8192_SHA256
    };
    ring::signature::UnparsedPublicKey::new(algorithm, key.public_key_der())
        .verify(input.as_bytes(), &signature)
        .map_err(|_| "signature does not verify with the app's key")?;
    let part = |i: usize| -> Result<Value, String> {
        let segment = input.split('.').nth(i).ok_or("not a JWT")?;
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| "segment not base64url")?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let (header, claims) = (part(0)?, part(1)?);
    let now = chrono::Utc::now().timestamp();
    let alg = if thumbprint { "PS256" } else { "RS256" };
    if header["alg"] != alg
        || claims["iss"] != client_id
        || claims["sub"] != client_id
        || claims["aud"] != audience
        || claims["exp"].as_i64().is_none_or(|exp| exp <= now)
    {
        return Err(format!(
            "claims or header not acceptable: {header} {claims}"
        ));
    }
    if thumbprint {
        let der = {
            use base64::engine::general_purpose::STANDARD;
            let body: String = TEST_CLIENT_CERT
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect();
            STANDARD.decode(body).map_err(|_| "test certificate")?
        };
        use sha2::Digest;
        let expected = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
        if header["x5t#S256"] != expected.as_str() {
            return Err("the certificate thumbprint is not the app's".into());
        }
    }
    Ok(())
}

/// `POST /oauth2/v1/token`: the service app's client credentials with `private_key_jwt`.
async fn okta_token(
    State(dir): Dir,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let audience = {
        let mut dir = dir.lock().expect("lock");
        dir.okta_token_requests += 1;
        format!("{}/oauth2/v1/token", dir.url)
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let refused = |error: &str, description: String| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if field("grant_type") != "client_credentials"
        || field("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    {
        return refused(
            "invalid_request",
            "client credentials with private_key_jwt only".into(),
        );
    }
    if let Err(why) = check_assertion(field("client_assertion"), OKTA_CLIENT_ID, &audience, false) {
        return refused("invalid_client", why);
    }
    if !field("scope").split(' ').any(|s| s == "okta.users.read") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_scope", "error_description": "okta.users.read not granted"})),
        )
            .into_response();
    }
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let dpop = {
        let mut dir = dir.lock().expect("lock");
        dir.okta_dpop
            .as_mut()
            .map(|dpop| dpop.token_request(proof, &audience))
    };
    use crate::okta_dpop::ProofRefusal;
    let dpop_refused = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    match dpop {
        None => Json(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": OKTA_ACCESS_TOKEN, "scope": field("scope")}))
            .into_response(),
        Some(Ok(())) => Json(json!({"token_type": "DPoP", "expires_in": 3600, "access_token": crate::okta_dpop::OKTA_DPOP_ACCESS_TOKEN, "scope": field("scope")}))
            .into_response(),
        Some(Err(ProofRefusal::Missing)) => {
            dpop_refused("invalid_dpop_proof", "The DPoP proof JWT header is missing.")
        }
        Some(Err(ProofRefusal::Nonce(nonce))) => {
            let mut answer = dpop_refused(
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof.",
            );
            answer
                .headers_mut()
                .insert("dpop-nonce", nonce.parse().expect("header"));
            answer
        }
        Some(Err(ProofRefusal::Invalid(why))) => dpop_refused("invalid_dpop_proof", &why),
    }
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
    let mut dir = dir.lock().expect("lock");
    dir.reads.push(format!("okta-app:{id}"));
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
/// `GET /api/v1/users/{id}/groups?limit=…&after=…`: the user's groups, `limit` a page (200 at
/// most, Okta's default), the next page in `Link: <…>; rel="next"`.
async fn okta_user_groups(
    State(dir): Dir,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let dir = dir.lock().expect("lock");
    if !dir.okta.contains_key(&id) {
        return error(StatusCode::NOT_FOUND, "E0000007");
    }
    let all: Vec<Value> = dir
        .okta_groups
        .get(&id)
        .into_iter()
        .flatten()
        .map(|g| {
            let name = dir.okta_group_names.get(g).unwrap_or(g);
            json!({"id": g, "type": "OKTA_GROUP", "profile": {"name": name}})
        })
        .collect();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let after: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let end = (after + limit).min(all.len());
    let mut resp = Json(all.get(after..end).unwrap_or_default().to_vec()).into_response();
    if end < all.len() {
        let next = format!(
            "{}/api/v1/users/{id}/groups?limit={limit}&after={end}",
            dir.url
        );
        resp.headers_mut().insert(
            "link",
            format!("<{next}>; rel=\"next\"").parse().expect("header"),
        );
    }
    resp
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
    let member_of = dir.graph_member_of(&id);
    let value: Vec<String> = asked
        .into_iter()
        .filter(|g| member_of.contains(g))
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `GET /v1.0/groups/{id}/transitiveMembers/microsoft.graph.{user,group}`: one kind of the
/// group's members, through every level of nesting. One page.
async fn graph_transitive_members(
    State(dir): Dir,
    Path((id, kind)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let dir = dir.lock().expect("lock");
    let groups = kind == "microsoft.graph.group";
    let mut members: Vec<&String> = dir
        .graph_groups
        .keys()
        .filter(|m| dir.graph_nested.contains(*m) == groups)
        .filter(|m| dir.graph_member_of(m).contains(&id))
        .collect();
    members.sort();
    let value: Vec<Value> = members.iter().map(|m| json!({ "id": m })).collect();
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

impl Directory {
    fn graph_changed_now(&mut self, id: &str) {
        self.graph_version += 1;
        let v = self.graph_version;
        self.graph_changed.insert(id.to_string(), v);
    }

    /// What a delta pass from `base` (`None`: a full pass) lists, in a stable order.
    fn delta_items(&self, base: Option<u64>) -> Vec<Value> {
        match base {
            None => {
                let mut all: Vec<Value> = self.graph.values().cloned().collect();
                all.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                all
            }
            Some(token) => self
                .graph_changed
                .iter()
                .filter(|(_, v)| **v > token)
                .map(|(id, _)| match self.graph.get(id) {
                    Some(user) => user.clone(),
                    None if self.graph_deleted.contains_key(id) => {
                        json!({"id": id, "@removed": {"reason": "changed"}})
                    }
                    None => json!({"id": id, "@removed": {"reason": "deleted"}}),
                })
                .collect(),
        }
    }
}

fn graph_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": code}})),
    )
        .into_response()
}

/// `GET /v1.0/users/delta`: a full pass without a token, the changes since a `$deltatoken`,
/// pages joined by `$skiptoken=<base>.<offset>`.
async fn graph_delta(
    State(dir): Dir,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let mut dir = dir.lock().expect("lock");
    dir.delta.requests += 1;
    if dir.delta.fail_request == Some(dir.delta.requests) {
        return graph_error(StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable");
    }
    let (base, offset) = if let Some(skip) = query.get("$skiptoken") {
        let (b, o) = skip.split_once('.').unwrap_or(("full", "0"));
        (b.parse::<u64>().ok(), o.parse::<usize>().unwrap_or(0))
    } else if let Some(token) = query.get("$deltatoken") {
        let Ok(token) = token.parse::<u64>() else {
            return graph_error(StatusCode::BAD_REQUEST, "badRequest");
        };
        if token < dir.delta.expired_below {
            let mut r = graph_error(StatusCode::GONE, "syncStateNotFound");
            let restart = format!("{}/v1.0/users/delta", dir.url);
            r.headers_mut()
                .insert("location", restart.parse().expect("header"));
            return r;
        }
        (Some(token), 0)
    } else {
        (None, 0)
    };
    let items = dir.delta_items(base);
    let end = (offset + dir.delta.page_size).min(items.len());
    let page: Vec<Value> = items.get(offset..end).unwrap_or_default().to_vec();
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(id)",
        "value": page,
    });
    if end < items.len() {
        let base = base.map_or("full".to_string(), |b| b.to_string());
        body["@odata.nextLink"] = json!(format!(
            "{}/v1.0/users/delta?$skiptoken={base}.{end}",
            dir.url
        ));
    } else {
        body["@odata.deltaLink"] = json!(format!(
            "{}/v1.0/users/delta?$deltatoken={}",
            dir.url, dir.graph_version
        ));
    }
    Json(body).into_response()
}

/// What Graph refuses in a subscription's body before it looks at the URLs: an expiry past
/// 41,760 minutes for users and groups, a clientState over 128 characters.
fn subscription_refusal(body: &Value) -> Option<Response> {
    let expiry = body["expirationDateTime"]
        .as_str()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok());
    let too_far = chrono::Utc::now() + chrono::Duration::minutes(41_760);
    match expiry {
        None => Some(graph_error(StatusCode::BAD_REQUEST, "InvalidRequest")),
        Some(e) if e > too_far => Some(graph_error(StatusCode::BAD_REQUEST, "ExtensionError")),
        _ if body["clientState"].as_str().is_some_and(|c| c.len() > 128) => {
            Some(graph_error(StatusCode::BAD_REQUEST, "InvalidRequest"))
        }
        _ => None,
    }
}

/// Graph's validation of a URL: a POST with `?validationToken=…` (URL-encoded, with characters
/// that must be decoded), answered within 10 s with 200, `text/plain` and the decoded token.
async fn validate_endpoint(url: &str) -> Result<(), String> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        uuid::Uuid::new_v4()
    );
    let mut target = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    let resp = reqwest::Client::new()
        .post(target)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let plain = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    if status == 200 && plain && body == token {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

/// `GET /v1.0/subscriptions`: the app's subscriptions, without their clientState.
async fn graph_list_subscriptions(State(dir): Dir, headers: HeaderMap) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let value: Vec<Value> = dir
        .lock()
        .expect("lock")
        .subscriptions
        .values()
        .map(|s| {
            let mut s = s.clone();
            s["clientState"] = Value::Null;
            s
        })
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// `POST /v1.0/subscriptions`: kept, answered 201 like Graph; the URLs validated first when
/// the fixture is asked to.
async fn graph_create_subscription(
    State(dir): Dir,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let strict = dir.lock().expect("lock").validate_endpoints;
    if let Some(refused) = subscription_refusal(&body).filter(|_| strict) {
        return refused;
    }
    if strict {
        // Both URLs, even when they are the same one: two requests.
        let urls = [&body["notificationUrl"], &body["lifecycleNotificationUrl"]];
        for url in urls.into_iter().filter_map(Value::as_str) {
            if let Err(why) = validate_endpoint(url).await {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": {
                        "code": "InvalidRequest",
                        "message": format!("Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request. ({why})")
                    }})),
                )
                    .into_response();
            }
            dir.lock()
                .expect("lock")
                .subscription_validations
                .push(url.to_string());
        }
    }
    let mut dir = dir.lock().expect("lock");
    dir.subscription_creates.push(body.clone());
    let id = format!("sub-{}", dir.subscription_creates.len());
    let mut sub = body.clone();
    sub["id"] = json!(id);
    sub["applicationId"] = json!(GRAPH_CLIENT_ID);
    dir.subscriptions.insert(id, sub.clone());
    (StatusCode::CREATED, Json(sub)).into_response()
}

/// `PATCH /v1.0/subscriptions/{id}`: a new expiry for a subscription Graph still has.
async fn graph_renew_subscription(
    State(dir): Dir,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let mut dir = dir.lock().expect("lock");
    if let Some(refused) = subscription_refusal(&body).filter(|_| dir.validate_endpoints) {
        return refused;
    }
    let expiry = body["expirationDateTime"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    dir.subscription_renewals.push((id.clone(), expiry.clone()));
    match dir.subscriptions.get_mut(&id) {
        Some(sub) => {
            sub["expirationDateTime"] = json!(expiry);
            Json(sub.clone()).into_response()
        }
        None => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound"),
    }
}

/// `GET /api/v1/users?search=lastUpdated gt "…"&limit=…&after=…`, oldest change first, paged
/// with `Link: <…>; rel="next"`.
async fn okta_list_users(
    State(dir): Dir,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let mut dir = dir.lock().expect("lock");
    dir.okta_list_requests += 1;
    dir.okta_list_times.push(std::time::SystemTime::now());
    if let Some((nth, reset)) = dir.okta_list_throttled {
        if dir.okta_list_requests == nth {
            dir.okta_list_throttled = None;
            let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "E0000047");
            let epoch = reset
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            for (name, value) in [
                ("x-rate-limit-limit", 600),
                ("x-rate-limit-remaining", 0),
                ("x-rate-limit-reset", epoch),
            ] {
                resp.headers_mut()
                    .insert(name, value.to_string().parse().expect("header"));
            }
            return resp;
        }
    }
    let search = query.get("search").cloned().unwrap_or_default();
    let Some(since) = search
        .strip_prefix("lastUpdated gt \"")
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    else {
        return error(StatusCode::BAD_REQUEST, "E0000031");
    };
    let last_updated = |u: &Value| {
        u["lastUpdated"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let mut users: Vec<Value> = dir
        .okta
        .values()
        .filter(|u| last_updated(u).is_some_and(|t| t > since))
        .cloned()
        .collect();
    users.sort_by_key(|u| (last_updated(u), u["id"].as_str().map(str::to_string)));
    for user in users.iter_mut() {
        if let Some(before) = user["id"]
            .as_str()
            .and_then(|id| dir.okta_list_lagging.get(id))
        {
            *user = before.clone();
        }
    }
    let after: usize = query.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let end = (after + dir.delta.okta_page_size).min(users.len());
    let page = users.get(after..end).unwrap_or_default().to_vec();
    let mut resp = Json(Value::Array(page)).into_response();
    if end < users.len() {
        let mut next = reqwest::Url::parse(&format!("{}/api/v1/users", dir.url)).expect("url");
        next.query_pairs_mut()
            .append_pair("search", &search)
            .append_pair("limit", "2")
            .append_pair("after", &end.to_string());
        resp.headers_mut().insert(
            "link",
            format!("<{next}>; rel=\"next\"").parse().expect("header"),
        );
    }
    resp
}

/// `GET /v1.0/groups/delta?$select=members`: a full pass lists the current members of the
/// groups in `$filter` (`id eq '…' or …`); from a `$deltatoken`, the joins and `@removed` leaves
/// since, for every group. One page.
async fn graph_groups_delta(
    State(dir): Dir,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    let dir = dir.lock().expect("lock");
    let member = |user: &str, joined: bool| dir.graph_member_json(user, joined);
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    match query.get("$deltatoken").map(|t| t.parse::<u64>()) {
        Some(Ok(token)) => {
            for (v, group, user, joined) in &dir.graph_member_log {
                if *v > token {
                    groups
                        .entry(group.clone())
                        .or_default()
                        .push(member(user, *joined));
                }
            }
        }
        Some(Err(_)) => return graph_error(StatusCode::BAD_REQUEST, "badRequest"),
        None => {
            let wanted: Vec<String> = query
                .get("$filter")
                .map(|f| {
                    f.split(" or ")
                        .filter_map(|c| c.trim().strip_prefix("id eq '")?.strip_suffix('\''))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            for group in &wanted {
                let members = dir
                    .graph_groups
                    .iter()
                    .filter(|(_, gs)| gs.contains(group))
                    .map(|(u, _)| member(u, true))
                    .collect();
                groups.insert(group.clone(), members);
            }
        }
    }
    let value: Vec<Value> = groups
        .into_iter()
        .map(|(id, members)| json!({"@odata.type": "#microsoft.graph.group", "id": id, "members@delta": members}))
        .collect();
    Json(json!({
        "value": value,
        "@odata.deltaLink": format!("{}/v1.0/groups/delta?$deltatoken={}", dir.url, dir.graph_version)
    }))
    .into_response()
}

/// `GET /v1.0/subscriptions/{id}`.
async fn graph_get_subscription(
    State(dir): Dir,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    match dir.lock().expect("lock").subscriptions.get(&id) {
        Some(sub) => Json(sub.clone()).into_response(),
        None => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound"),
    }
}

/// `DELETE /v1.0/subscriptions/{id}`.
async fn graph_delete_subscription(
    State(dir): Dir,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = graph_refuses(&headers) {
        return refused;
    }
    match dir.lock().expect("lock").subscriptions.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound"),
    }
}

/// `GET /api/v1/logs?since=…&until=…&filter=eventType eq "…" or …`: the events in the window
/// whose type the filter names, oldest first, one page.
async fn okta_logs(
    State(dir): Dir,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !okta_authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "E0000011");
    }
    let mut dir = dir.lock().expect("lock");
    dir.reads.push("okta-log".into());
    let time = |k: &str| {
        query
            .get(k)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let (Some(since), until) = (time("since"), time("until")) else {
        return error(StatusCode::BAD_REQUEST, "E0000001");
    };
    let filter = query.get("filter").cloned().unwrap_or_default();
    let events: Vec<Value> = dir
        .okta_log
        .iter()
        .filter(|(at, kind, _)| {
            *at >= since && until.is_none_or(|u| *at < u) && filter.contains(&format!("\"{kind}\""))
        })
        .map(|(at, kind, user)| {
            json!({
                "uuid": uuid::Uuid::new_v4().to_string(),
                "published": at.to_rfc3339(),
                "eventType": kind,
                "outcome": {"result": "SUCCESS"},
                "target": [{"id": user, "type": "User"}, {"id": "00gSOME", "type": "UserGroup"}]
            })
        })
        .collect();
    Json(Value::Array(events)).into_response()
}
