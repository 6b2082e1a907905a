//! One relay deployment under test, whatever its backend, so one behaviour suite runs on all:
//!
//! - `Memory`: the core's engine on the in-memory queue, store and SCIM target, driven by the
//!   same claim loop as the standalone server (no server of any kind; plain `cargo test`);
//! - `Sqlite`: the standalone server (HTTP ingress, SQLite queue and store) against
//!   scim2-server behind the counting proxy;
//! - `Aws`: the three Lambda handlers on moto (SQS FIFO, DynamoDB) against scim2-server; the
//!   test plays the event source mapping, and each function's AWS calls go through its own
//!   recorder, checked against its policy in `infra/template.yaml` when the test finishes.
//!
//! The IdP is the in-process fixture server on every backend (Okta and Graph have no local
//! server).

use std::sync::Arc;
use std::time::Duration;

use scim_relay_core::clock::{Clock, SystemClock};
use scim_relay_core::config::{Settings, TargetProfile};
#[cfg(feature = "servers")]
use scim_relay_core::consumer::ConsumerPolicy;
use scim_relay_core::deprovision::{held_users, HeldUser};
use scim_relay_core::ingress::{Ingress, IngressRequest};
use scim_relay_core::queue::Queue;
use scim_relay_core::secret::Secret;
use scim_relay_core::state::SweepStore;
use scim_relay_core::sweeper::SweepReport;
use serde_json::Value;

use crate::idp::{IdpFixture, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET, OKTA_TOKEN};
use crate::payloads::GRAPH_TENANT;
use crate::target::{Target, TargetKind};
use scim_relay_server::RetryPolicy;

pub const OKTA_SECRET: &str = "okta-shared-secret-for-behaviour-tests";
pub const CLIENT_STATE: &str = "graph-client-state-for-behaviour-tests";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    #[cfg(feature = "servers")]
    Sqlite,
    #[cfg(feature = "servers")]
    Aws,
}

pub use crate::relay::Answer;
use crate::relay::RelayUnderTest;

pub struct Deployment {
    pub backend: Backend,
    pub idp: IdpFixture,
    pub target: Target,
    /// The settings the relay runs with (a restart may change them).
    pub settings: Settings,
    relay: Box<dyn RelayUnderTest>,
    /// The deployment's clock: the operator's commands act on it too.
    clock: Arc<dyn Clock>,
}

/// Settings every test shares, the suite's and the end-to-end tests': the fixture IdP for both
/// directories, a Datadog-profile target at `target_url`, the sweeper run by hand.
pub fn base_settings(idp: &IdpFixture, target_url: &str, target_token: &str) -> Settings {
    let mut s = Settings::default();
    s.queue.signing_key = Secret::new("queue-signing-key-for-behaviour-tests");
    s.okta.org_url = Some(idp.url.clone());
    s.okta.shared_secret = Secret::new(OKTA_SECRET);
    s.okta.api_token = Secret::new(OKTA_TOKEN);
    s.entra.tenant_id = Some(GRAPH_TENANT.into());
    s.entra.client_id = Some(GRAPH_CLIENT_ID.into());
    s.entra.client_secret = Secret::new(GRAPH_CLIENT_SECRET);
    s.entra.client_state = Secret::new(CLIENT_STATE);
    s.entra.graph_url = idp.url.clone();
    s.entra.login_url = idp.url.clone();
    s.target.profile = TargetProfile::Datadog;
    s.target.base_url = Some(target_url.to_string());
    s.target.token = Secret::new(target_token);
    s.target.timeout = std::time::Duration::from_secs(5);
    s.sweep.interval = None;
    s
}

/// How a deployment starts, beyond its settings: which target, on which clock, how patient.
pub struct Options {
    backend: Backend,
    target: TargetKind,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl Options {
    /// Against the fixture that behaves as Datadog documents its SCIM API.
    pub fn datadog(mut self) -> Self {
        self.target = TargetKind::Datadog;
        self
    }

    /// On a clock the test moves (invitation expiry, subscription renewal, cursors). Retry
    /// waits and leases keep real time.
    pub fn on_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Retries without end (standalone: `queue.max_attempts` out of reach), for outages the
    /// test waits out.
    pub fn patient(mut self) -> Self {
        self.retry.max_attempts = 10_000;
        self
    }

    /// How long the credential breaker pauses the workers after a refusal (50 ms by default).
    pub fn credential_pause(mut self, pause: Duration) -> Self {
        self.retry.credential_pause = pause;
        self
    }

    /// Retries `wait` apart (SQS: whole seconds), so a test can change the world between two
    /// attempts of one message.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry.base_delay = wait;
        self.retry.max_delay = wait;
        self
    }

    pub async fn start(self, customize: impl FnOnce(&mut Settings)) -> Deployment {
        let idp = IdpFixture::start().await;
        let target = match (self.backend, self.target) {
            (_, TargetKind::Datadog) => Target::datadog().await,
            (Backend::Memory, TargetKind::Scim) => Target::memory(),
            #[cfg(feature = "servers")]
            (Backend::Sqlite | Backend::Aws, TargetKind::Scim) => Target::scim2_server().await,
        };
        let mut settings = base_settings(&idp, &target.url(), &target.token());
        customize(&mut settings);
        let clock_kept = self.clock.clone();
        let relay: Box<dyn RelayUnderTest> = match self.backend {
            Backend::Memory => Box::new(crate::memory_relay::MemoryRelay::start(
                &settings,
                target.memory_target(),
                self.clock,
                self.retry,
            )),
            #[cfg(feature = "servers")]
            Backend::Sqlite => Box::new(
                crate::sqlite_relay::SqliteRelay::start(&mut settings, self.clock, self.retry)
                    .await,
            ),
            #[cfg(feature = "servers")]
            Backend::Aws => Box::new(
                crate::aws_relay::AwsRelay::start(
                    settings.clone(),
                    self.clock,
                    aws_test_policy(&self.retry),
                )
                .await,
            ),
        };
        Deployment {
            backend: self.backend,
            idp,
            target,
            settings,
            relay,
            clock: clock_kept,
        }
    }
}

/// The Lambda consumer's rules with a test's waits: milliseconds of backoff (SQS rounds a
/// visibility up to whole seconds) and of credential pause; redrive left to the queue.
#[cfg(feature = "servers")]
fn aws_test_policy(retry: &RetryPolicy) -> ConsumerPolicy {
    ConsumerPolicy {
        credential_pause: retry.credential_pause,
        breaker_hold: retry.credential_pause,
        // SQS rounds it up to a second.
        key_wait: retry.base_delay,
        ..ConsumerPolicy {
            backoff: retry.consumer().backoff,
            ..ConsumerPolicy::lambda()
        }
    }
}

impl Deployment {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A fresh deployment; `customize` adjusts the settings first.
    pub async fn start_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> Self {
        Self::options(backend).start(customize).await
    }

    /// A deployment with more than settings to choose: see [`Options`].
    pub fn options(backend: Backend) -> Options {
        Options {
            backend,
            target: TargetKind::Scim,
            clock: Arc::new(SystemClock),
            retry: crate::memory_relay::fast_retries(),
        }
    }

    /// Stops the relay and starts it again on the same queue and state (standalone: a new
    /// process on the same file; AWS: new containers), with settings `change`d.
    pub async fn restart(&mut self, change: impl FnOnce(&mut Settings)) {
        change(&mut self.settings);
        self.relay.restart(&self.settings).await;
    }

    /// Whether the target-credential breaker holds the workers back at `at` (a time before
    /// a short test pause ran out tells whether it was opened at all).
    pub async fn breaker_open_at(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        let until = self.relay.breaker().open_until(at).await;
        until.expect("breaker readable").is_some()
    }

    /// Whether the relay recorded this event (by its dedupe key) as applied.
    pub async fn event_seen(&self, event_key: &str) -> bool {
        self.store()
            .event_seen(event_key, chrono::Utc::now())
            .await
            .expect("store readable")
    }

    /// The relay's state store, as an operator's command reads it (not as any function).
    pub fn store(&self) -> Arc<dyn SweepStore> {
        self.relay.store()
    }

    /// The work queue, as an operator's command writes to it.
    pub fn work_queue(&self) -> Arc<dyn Queue> {
        self.relay.work_queue()
    }

    /// Every held deprovision (`scim-relay held list`).
    pub async fn held(&self) -> Vec<HeldUser> {
        held_users(self.store().as_ref()).await.expect("held users")
    }

    /// Runs an operator's command (the words after `scim-relay`: `held approve …`) as an
    /// operator would: standalone, on the server's SQLite file; elsewhere on the deployment's
    /// store and queue. Its output, or its error.
    pub async fn command(&self, words: &[&str]) -> Result<String, String> {
        use scim_relay_server::console::{parse, run};
        let command = parse(words).map_err(|e| e.to_string())?;
        let console = self
            .relay
            .console(&self.settings, &self.target)?
            .with_clock(self.clock.clone());
        let mut out = Vec::new();
        run(&console, &self.settings, command, &mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Opens the target-credential breaker until `until`, as a refused call would.
    pub async fn open_breaker(&self, until: chrono::DateTime<chrono::Utc>) {
        let opened = self.relay.breaker().open(until).await;
        opened.expect("breaker writable");
    }

    /// While set, the relay's writes that record a target account fail: the target has acted,
    /// the relay cannot write down what it did (a crash in that window, or a store outage).
    pub async fn fail_account_commits(&self, failing: bool) {
        self.relay.fail_account_commits(failing).await
    }

    /// The AWS backend's own controls (concurrent pollers, a crashed invocation).
    #[cfg(feature = "servers")]
    pub fn aws(&self) -> &crate::aws_relay::AwsRelay {
        self.relay.as_aws().expect("the AWS backend")
    }

    /// The standalone server's `/healthz` answer; `None` on the backends that have none.
    pub async fn health(&self) -> Option<Value> {
        self.relay.health().await
    }

    /// One HTTP request to the relay's ingress, as the IdP sends it; the answer's status and
    /// body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let answer = self
            .request_with_headers(method, path, query, headers, body)
            .await;
        (answer.status, answer.body)
    }

    /// [`request`](Self::request), with the answer's headers.
    pub async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let req = IngressRequest {
            method: method.into(),
            path: path.into(),
            query: query.map(str::to_string),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        };
        self.relay.request(req).await
    }

    /// Posts an Okta delivery with `secret`; the answer.
    pub async fn post_okta(&self, body: &Value, secret: &str) -> (u16, String) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.request(
            "POST",
            "/okta",
            None,
            &[
                ("Authorization", secret),
                ("Content-Type", "application/json"),
            ],
            &bytes,
        )
        .await
    }

    /// Posts an Okta delivery with the right secret, expects 200, and lets the worker finish.
    pub async fn okta(&self, body: Value) {
        let (status, answer) = self.post_okta(&body, OKTA_SECRET).await;
        assert_eq!(status, 200, "{answer}");
        self.settle().await;
    }

    /// Posts a Graph notification, expects 202, and lets the worker finish.
    pub async fn entra(&self, notification: Value) {
        let bytes = serde_json::to_vec(&notification).expect("json");
        let (status, answer) = self
            .request(
                "POST",
                "/entra",
                None,
                &[("Content-Type", "application/json")],
                &bytes,
            )
            .await;
        assert_eq!(status, 202, "{answer}");
        self.settle().await;
    }

    /// Works the queue until it is empty, letting retry waits pass; fails the test when it
    /// does not empty.
    pub async fn settle(&self) {
        assert!(self.drain(WAIT).await, "the queue did not drain");
    }

    /// Works the queue until it is empty or `timeout` passes; whether it emptied.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.relay.drain(timeout).await
    }

    /// Messages waiting and dead letters.
    pub async fn depth(&self) -> (u64, u64) {
        self.relay.depth().await
    }

    /// The reasons of every dead letter so far.
    pub async fn dead_letters(&self) -> Vec<String> {
        self.relay.dead_letters().await
    }

    /// The body of every dead letter so far, as ingress queued it.
    pub async fn dead_letter_bodies(&self) -> Vec<String> {
        self.relay.dead_letter_bodies().await
    }

    /// `scim-relay redrive`: every dead letter back on the queue; how many.
    pub async fn redrive(&self) -> usize {
        self.relay.redrive().await
    }

    /// Runs the sweeper once (the schedule's run).
    pub async fn sweep(&self) -> SweepReport {
        self.relay.sweep().await
    }

    /// Runs the sweeper once with `left` before its deadline (on AWS, the invocation's).
    pub async fn sweep_within(&self, left: Duration) -> SweepReport {
        self.relay
            .sweep_until(std::time::Instant::now() + left)
            .await
    }

    /// The state the relay recorded for an Okta user: its SCIM id and whether it left the
    /// account active.
    pub async fn recorded(
        &self,
        source: scim_relay_core::envelope::Source,
        tenant: &str,
        user_id: &str,
    ) -> Option<scim_relay_core::state::UserState> {
        let key = scim_relay_core::state::UserKey {
            source,
            tenant: tenant.into(),
            user_id: user_id.into(),
        };
        self.store().load_user(&key).await.expect("state")
    }

    /// Stops the relay; on AWS, checks every AWS call each function made against its policy.
    pub async fn finish(mut self) {
        self.relay.finish().await
    }
}

/// The Okta tenant key the relay records users under (the fixture's host).
pub fn okta_tenant(idp: &IdpFixture) -> String {
    let mut s = Settings::default();
    s.okta.org_url = Some(idp.url.clone());
    s.okta_tenant()
}

/// Builds the ingress every backend but the standalone server calls in-process.
pub(crate) fn ingress_on(
    settings: &Settings,
    queue: Arc<dyn scim_relay_core::queue::Queue>,
    clock: Arc<dyn Clock>,
) -> Ingress {
    Ingress::from_settings(settings, queue, clock)
}
