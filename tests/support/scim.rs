//! scim2-server access for tests: a fresh tenant per test, a counting proxy in front of it, and
//! a reader to check what the target holds.

use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use crate::required_env;

/// One isolated tenant on the shared scim2-server (started with `--dynamic-tenants`).
#[derive(Clone, Debug)]
pub struct ScimTenant {
    pub base_url: String,
    pub token: String,
}

impl ScimTenant {
    pub fn fresh() -> Self {
        let server = required_env("RELAY_TEST_SCIM_URL");
        Self {
            base_url: format!(
                "{}/{}/v2",
                server.trim_end_matches('/'),
                uuid::Uuid::new_v4().simple()
            ),
            token: required_env("RELAY_TEST_SCIM_TOKEN"),
        }
    }

    /// `GET /Users`, optionally filtered.
    async fn list(&self, filter: Option<String>) -> Value {
        let mut req = reqwest::Client::new()
            .get(format!("{}/Users", self.base_url))
            .bearer_auth(&self.token);
        if let Some(f) = filter {
            req = req.query(&[("filter", f)]);
        }
        req.send()
            .await
            .expect("scim2-server reachable")
            .json()
            .await
            .expect("scim2-server answers JSON")
    }

    /// Creates a user on the target directly, as an admin would by hand; returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let user: Value = reqwest::Client::new()
            .post(format!("{}/Users", self.base_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name, "active": true
                })
                .to_string(),
            )
            .send()
            .await
            .expect("scim2-server reachable")
            .json()
            .await
            .expect("scim2-server answers JSON");
        user["id"]
            .as_str()
            .expect("created user has an id")
            .to_string()
    }

    /// Deletes a user on the target directly, as an admin would by hand.
    pub async fn delete_user(&self, id: &str) {
        let deleted = reqwest::Client::new()
            .delete(format!("{}/Users/{id}", self.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("scim2-server reachable");
        assert_eq!(deleted.status(), 204);
    }

    /// The user with this userName, as the target holds it.
    pub async fn user(&self, user_name: &str) -> Option<Value> {
        let list = self
            .list(Some(format!("userName eq \"{user_name}\"")))
            .await;
        let resources = list["Resources"].as_array().cloned().unwrap_or_default();
        assert!(resources.len() <= 1, "userName must be unique: {list}");
        resources.into_iter().next()
    }

    /// The member ids of the group with this displayName, if the group exists.
    pub async fn group_members(&self, display_name: &str) -> Option<Vec<String>> {
        let list: Value = reqwest::Client::new()
            .get(format!("{}/Groups", self.base_url))
            .query(&[("filter", format!("displayName eq \"{display_name}\""))])
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("scim2-server reachable")
            .json()
            .await
            .expect("scim2-server answers JSON");
        let group = list["Resources"].as_array()?.first()?.clone();
        Some(
            group["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["value"].as_str().map(str::to_string))
                .collect(),
        )
    }

    /// `GET /Groups?filter=displayName eq "…"`.
    async fn groups_by_name(&self, display_name: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/Groups", self.base_url))
            .bearer_auth(&self.token)
            .query(&[("filter", format!("displayName eq \"{display_name}\""))])
            .send()
            .await
            .expect("scim2-server reachable")
            .json()
            .await
            .expect("scim2-server answers JSON")
    }

    /// Deletes the group with this displayName on the target, as an admin would.
    pub async fn delete_group(&self, display_name: &str) {
        let list = self.groups_by_name(display_name).await;
        for group in list["Resources"].as_array().into_iter().flatten() {
            let id = group["id"].as_str().unwrap_or_default();
            reqwest::Client::new()
                .delete(format!("{}/Groups/{id}", self.base_url))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("scim2-server reachable");
        }
    }

    /// How many groups on the target have this displayName.
    pub async fn groups_named(&self, display_name: &str) -> usize {
        self.groups_by_name(display_name).await["totalResults"]
            .as_u64()
            .unwrap_or_default() as usize
    }

    pub async fn user_count(&self) -> usize {
        self.list(None).await["totalResults"]
            .as_u64()
            .unwrap_or_default() as usize
    }
}

/// A pass-through proxy that records every request the relay sends to the target, so tests can
/// assert "no SCIM call" and "exactly one PATCH".
#[derive(Clone)]
pub struct ScimProxy {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    created: Arc<Mutex<Vec<String>>>,
    standing: Arc<Mutex<Option<u16>>>,
    ignoring_filters: Arc<std::sync::atomic::AtomicBool>,
    stalls: Arc<Mutex<Vec<(String, std::time::Duration)>>>,
    /// Time spent waiting for scim2-server, all calls together (microseconds).
    upstream_micros: Arc<std::sync::atomic::AtomicU64>,
}

/// Random failures on a share of all requests (the chaos test): 429 with `Retry-After`, 503,
/// a lost response after the target acted, or a response slower than the relay waits.
struct Chaos {
    rate: f64,
    rng: fastrand::Rng,
    injected: usize,
    /// Injected failures of write requests (POST, PATCH, PUT, DELETE).
    injected_writes: usize,
    /// How long a "timeout" holds the answer back (longer than the relay's timeout).
    stall: std::time::Duration,
}

/// One request the relay sent to the target.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    if_match: Option<String>,
    at: std::time::Instant,
}

/// A failure the proxy injects once, for the next request with this method.
#[derive(Clone, Debug)]
struct Fault {
    method: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// Forward the request first (the target acts on it), then answer `status` anyway: the
    /// ambiguous failure of a lost response.
    after_forwarding: bool,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Vec<Fault>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
    /// The userName of every user the target really created (201 to `POST /Users`), whether
    /// or not the relay saw the answer.
    created: Arc<Mutex<Vec<String>>>,
    /// While set, every request is answered with this status and never forwarded.
    standing: Arc<Mutex<Option<u16>>>,
    /// While set, `filter` is dropped from a list's query before it is forwarded.
    ignoring_filters: Arc<std::sync::atomic::AtomicBool>,
    upstream_micros: Arc<std::sync::atomic::AtomicU64>,
    /// The next request with this method waits this long before it is forwarded (a slow
    /// target), once.
    stalls: Arc<Mutex<Vec<(String, std::time::Duration)>>>,
}

impl ScimProxy {
    pub async fn start(tenant: &ScimTenant) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Vec::new()));
        let chaos = Arc::new(Mutex::new(None));
        let created = Arc::new(Mutex::new(Vec::new()));
        let standing = Arc::new(Mutex::new(None));
        let ignoring_filters = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let upstream_micros = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let state = ProxyState {
            upstream_micros: upstream_micros.clone(),
            stalls: stalls.clone(),
            upstream: tenant.base_url.clone(),
            http: reqwest::Client::new(),
            calls: calls.clone(),
            faults: faults.clone(),
            chaos: chaos.clone(),
            created: created.clone(),
            standing: standing.clone(),
            ignoring_filters: ignoring_filters.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            calls,
            faults,
            chaos,
            created,
            standing,
            ignoring_filters,
            stalls,
            upstream_micros,
        }
    }

    /// How long scim2-server took to answer, all calls so far together: what of a measured
    /// path is the Python target's, not the relay's.
    pub fn upstream_time(&self) -> std::time::Duration {
        std::time::Duration::from_micros(
            self.upstream_micros
                .load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    /// The next `method` request waits `wait` before it is forwarded: a slow target.
    pub fn stall_next(&self, method: &str, wait: std::time::Duration) {
        self.stalls
            .lock()
            .expect("lock")
            .push((method.to_string(), wait));
    }

    /// While set, the target sees list requests without their `filter`, as a provider that
    /// does not support filtering answers: with everyone.
    pub fn ignore_filters(&self, ignoring: bool) {
        self.ignoring_filters
            .store(ignoring, std::sync::atomic::Ordering::SeqCst);
    }

    /// While `Some`, every request is answered with this status and never reaches the target
    /// (401: a revoked credential; 503: the target is down).
    pub fn answer_every(&self, status: Option<u16>) {
        *self.standing.lock().expect("lock") = status;
    }

    /// From now on a `rate` share of requests fails at random (seeded, so a run repeats).
    pub fn chaos(&self, rate: f64, seed: u64, stall: std::time::Duration) {
        *self.chaos.lock().expect("lock") = Some(Chaos {
            rate,
            rng: fastrand::Rng::with_seed(seed),
            injected: 0,
            injected_writes: 0,
            stall,
        });
    }

    /// Stops injecting; returns how many failures were injected, in all and on writes.
    pub fn calm(&self) -> (usize, usize) {
        self.chaos
            .lock()
            .expect("lock")
            .take()
            .map_or((0, 0), |c| (c.injected, c.injected_writes))
    }

    /// The userName of every `POST /Users` that reached the target, in order.
    pub fn created(&self) -> Vec<String> {
        self.created.lock().expect("lock").clone()
    }

    /// The next `method` request is forwarded to the target, but answered with `status`.
    pub fn lose_next_response(&self, method: &str, status: u16) {
        self.faults.lock().expect("lock").push(Fault {
            method: method.to_string(),
            status,
            headers: Vec::new(),
            after_forwarding: true,
        });
    }

    /// The next `method` request is answered with `status` and never reaches the target.
    pub fn fail_next(&self, method: &str, status: u16) {
        self.fail_next_with(method, status, &[]);
    }

    /// As [`fail_next`](Self::fail_next), with response headers (e.g. Datadog's rate limits).
    pub fn fail_next_with(&self, method: &str, status: u16, headers: &[(&str, &str)]) {
        self.faults.lock().expect("lock").push(Fault {
            method: method.to_string(),
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            after_forwarding: false,
        });
    }

    /// The If-Match header sent with each request of this method.
    pub fn if_match(&self, method: &str) -> Vec<Option<String>> {
        self.log()
            .into_iter()
            .filter(|c| c.method == method)
            .map(|c| c.if_match)
            .collect()
    }

    /// When each call arrived, in order.
    pub fn call_times(&self) -> Vec<(String, std::time::Instant)> {
        self.log().into_iter().map(|c| (c.method, c.at)).collect()
    }

    pub fn calls(&self) -> Vec<(String, String)> {
        self.log().into_iter().map(|c| (c.method, c.path)).collect()
    }

    fn log(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|(m, _)| m == method).count()
    }
}

async fn forward(State(state): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    state.calls.lock().expect("lock").push(Call {
        method: parts.method.to_string(),
        path: path_and_query.clone(),
        if_match: parts
            .headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        at: std::time::Instant::now(),
    });
    let slow = {
        let mut stalls = state.stalls.lock().expect("lock");
        stalls
            .iter()
            .position(|(m, _)| *m == parts.method.as_str())
            .map(|at| stalls.remove(at).1)
    };
    if let Some(wait) = slow {
        tokio::time::sleep(wait).await;
    }
    let standing = *state.standing.lock().expect("lock");
    let mut stall = None;
    let fault = standing
        .map(|status| Fault {
            method: parts.method.to_string(),
            status,
            headers: Vec::new(),
            after_forwarding: false,
        })
        .or_else(|| {
            let mut faults = state.faults.lock().expect("lock");
            let at = faults
                .iter()
                .position(|f| f.method == parts.method.as_str());
            at.map(|i| faults.remove(i))
        })
        .or_else(|| {
            let mut chaos = state.chaos.lock().expect("lock");
            let chaos = chaos.as_mut()?;
            if chaos.rng.f64() >= chaos.rate {
                return None;
            }
            chaos.injected += 1;
            if parts.method != axum::http::Method::GET {
                chaos.injected_writes += 1;
            }
            let kind = chaos.rng.u8(0..100);
            let fault = |status: u16, headers: &[(&str, &str)], after_forwarding| Fault {
                method: parts.method.to_string(),
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                after_forwarding,
            };
            Some(match kind {
                0..30 => fault(429, &[("retry-after", "1")], false),
                30..60 => fault(503, &[], false),
                60..85 => fault(500, &[], true),
                _ => {
                    // Forwarded, answered only after the relay has given up waiting.
                    stall = Some(chaos.stall);
                    fault(504, &[], true)
                }
            })
        });
    let injected = |f: &Fault| {
        let mut r = Response::new(Body::from(r#"{"errors":["injected by the test proxy"]}"#));
        *r.status_mut() = StatusCode::from_u16(f.status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (k, v) in &f.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(v),
            ) {
                r.headers_mut().insert(name, value);
            }
        }
        r
    };
    if let Some(f) = &fault {
        if !f.after_forwarding {
            return injected(f);
        }
    }
    let body = to_bytes(body, 4 << 20).await.unwrap_or_default();
    let forwarded = if state
        .ignoring_filters
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        without_filter(&path_and_query)
    } else {
        path_and_query.clone()
    };
    let mut upstream = state.http.request(
        parts.method.clone(),
        format!("{}{}", state.upstream, forwarded),
    );
    for name in ["authorization", "content-type", "accept", "if-match"] {
        if let Some(v) = parts.headers.get(name) {
            upstream = upstream.header(name, v.clone());
        }
    }
    let sent = std::time::Instant::now();
    let answered = upstream.body(body.to_vec()).send().await;
    state.upstream_micros.fetch_add(
        sent.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::SeqCst,
    );
    let resp = match answered {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::new(Body::from(e.to_string()));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return r;
        }
    };
    let status = resp.status();
    // Every create that reached the target, whatever it answered: a second one for the same
    // userName is a blind re-POST, even where the target refuses it with 409.
    if parts.method == axum::http::Method::POST && path_and_query.starts_with("/Users") {
        if let Some(name) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|b| b["userName"].as_str().map(str::to_lowercase))
        {
            state.created.lock().expect("lock").push(name);
        }
    }
    let _ = status;
    if let Some(f) = &fault {
        if let Some(wait) = stall {
            tokio::time::sleep(wait).await;
        }
        return injected(f);
    }
    let content_type = resp.headers().get("content-type").cloned();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = status;
    if let Some(ct) = content_type {
        out.headers_mut().insert("content-type", ct);
    }
    out
}

/// `/Users?filter=…&startIndex=1&count=2` -> `/Users?startIndex=1&count=2`.
fn without_filter(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("filter="))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}
