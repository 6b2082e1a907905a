//! The standalone relay end to end: real HTTP ingress, the SQLite queue and store, the IdP
//! fixture, and scim2-server behind a counting proxy.

use std::time::Duration;

use scim_relay_core::config::{Settings, TargetProfile};
use scim_relay_core::secret::Secret;
use scim_relay_server::{RetryPolicy, RunningRelay};
use scim_relay_tests::idp::{IdpFixture, GRAPH_CLIENT_ID, GRAPH_CLIENT_SECRET, OKTA_TOKEN};
use scim_relay_tests::payloads::{graph_notification, okta_delivery, GRAPH_TENANT};
use scim_relay_tests::scim::{ScimProxy, ScimTenant};
use serde_json::Value;

const OKTA_SECRET: &str = "okta-shared-secret-for-tests";
const CLIENT_STATE: &str = "graph-client-state-for-tests";
const WAIT: Duration = Duration::from_secs(15);

// Moved to the behaviour suite (tests/behaviour/, every backend): the Okta lifecycle, an
// unmappable user, a user deleted from the directory, the credential owner, a lost create answer.

/// The sweeper's tests share this file's harness.
#[path = "sweeps.rs"]
mod sweeps;

/// So does the convergence-under-chaos test.
#[path = "chaos.rs"]
mod chaos;

struct Harness {
    idp: IdpFixture,
    tenant: ScimTenant,
    proxy: ScimProxy,
    relay: RunningRelay,
    http: reqwest::Client,
    db_path: std::path::PathBuf,
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        idle_poll: Duration::from_millis(20),
        credential_pause: Duration::from_millis(50),
        lease: Duration::from_secs(2),
    }
}

fn settings(
    idp: &IdpFixture,
    target_url: &str,
    token: &str,
    profile: TargetProfile,
    db: &std::path::Path,
) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".into(),
        database: db.display().to_string(),
        ..Settings::default()
    };
    s.queue.signing_key = Secret::new("queue-signing-key-for-tests");
    s.okta.org_url = Some(idp.url.clone());
    s.okta.shared_secret = Secret::new(OKTA_SECRET);
    s.okta.api_token = Secret::new(OKTA_TOKEN);
    s.entra.tenant_id = Some(GRAPH_TENANT.into());
    s.entra.client_id = Some(GRAPH_CLIENT_ID.into());
    s.entra.client_secret = Secret::new(GRAPH_CLIENT_SECRET);
    s.entra.client_state = Secret::new(CLIENT_STATE);
    s.entra.graph_url = idp.url.clone();
    s.entra.login_url = idp.url.clone();
    s.target.profile = profile;
    s.target.base_url = Some(target_url.into());
    s.target.token = Secret::new(token);
    s.target.timeout = std::time::Duration::from_secs(5);
    // The tests run the sweeper when they mean to (`RunningRelay::sweep`).
    s.sweep.interval = None;
    s
}

async fn harness(profile: TargetProfile) -> Harness {
    harness_with(profile, |_| {}).await
}

/// A relay on a fresh database, the IdP fixture and a fresh scim2-server tenant behind the
/// counting proxy; `customize` adjusts the settings first.
async fn harness_with(profile: TargetProfile, customize: impl FnOnce(&mut Settings)) -> Harness {
    harness_on_clock(
        profile,
        std::sync::Arc::new(scim_relay_core::clock::SystemClock),
        customize,
    )
    .await
}

/// [`harness_with`] on a clock the test controls.
async fn harness_on_clock(
    profile: TargetProfile,
    clock: std::sync::Arc<dyn scim_relay_core::clock::Clock>,
    customize: impl FnOnce(&mut Settings),
) -> Harness {
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let proxy = ScimProxy::start(&tenant).await;
    let db_path = std::env::temp_dir().join(format!("scim-relay-e2e-{}.db", uuid::Uuid::new_v4()));
    let mut s = settings(&idp, &proxy.url, &tenant.token, profile, &db_path);
    customize(&mut s);
    let relay = scim_relay_server::start_with_clock(s, fast_retries(), clock)
        .await
        .expect("relay starts");
    Harness {
        idp,
        tenant,
        proxy,
        relay,
        http: reqwest::Client::new(),
        db_path,
    }
}

/// Starts a relay on an existing database file with the target reachable, and waits until the
/// queue it inherited has drained.
async fn restart_and_drain(
    idp: &IdpFixture,
    tenant: &ScimTenant,
    db: &std::path::Path,
) -> RunningRelay {
    let up = settings(
        idp,
        &tenant.base_url,
        &tenant.token,
        TargetProfile::Datadog,
        db,
    );
    let relay = scim_relay_server::start(up, fast_retries())
        .await
        .expect("relay restarts");
    assert!(
        relay.wait_idle(WAIT).await,
        "the inherited queue did not drain"
    );
    relay
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.relay.addr)
    }

    async fn post_okta(&self, body: &Value, secret: &str) -> reqwest::Response {
        self.http
            .post(self.url("/okta"))
            .header("Authorization", secret)
            .json(body)
            .send()
            .await
            .expect("relay reachable")
    }

    /// Posts an Okta delivery with the right secret, expects 200, waits for the queue to drain.
    async fn okta(&self, body: Value) {
        let resp = self.post_okta(&body, OKTA_SECRET).await;
        assert_eq!(resp.status(), 200);
        self.settle().await;
    }

    /// Posts a Graph notification about `user`, expects 202, waits for the queue to drain.
    async fn entra(&self, user: &str, sequence: u64) {
        let resp = self
            .http
            .post(self.url("/entra"))
            .json(&graph_notification(user, CLIENT_STATE, sequence))
            .send()
            .await
            .expect("relay reachable");
        assert_eq!(resp.status(), 202);
        self.settle().await;
    }

    async fn settle(&self) {
        assert!(self.relay.wait_idle(WAIT).await, "queue did not drain");
    }

    async fn finish(self) {
        self.relay.stop().await;
        let _ = std::fs::remove_file(&self.db_path);
    }
}

#[tokio::test]
async fn a_wrong_secret_is_401_and_enqueues_nothing() {
    let h = harness(TargetProfile::Datadog).await;
    h.idp
        .set_okta_user("00uX", "ACTIVE", Some("x@example.com"), "X", "Y", None);
    let delivery = okta_delivery(
        "ev-forged",
        "user.lifecycle.create",
        "00uX",
        "x@example.com",
    );
    for secret in ["wrong-secret", "", "okta-shared-secret-for-test"] {
        let resp = h.post_okta(&delivery, secret).await;
        assert_eq!(resp.status(), 401, "secret {secret:?}");
    }
    let resp = h
        .http
        .post(h.url("/okta"))
        .json(&delivery)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "no header at all");
    // The verification GET is guarded by the secret too.
    let resp = h
        .http
        .get(h.url("/okta"))
        .header("Authorization", "wrong-secret")
        .header("X-Okta-Verification-Challenge", "c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.relay.db.depth().await.unwrap(),
        (0, 0),
        "nothing may be enqueued"
    );
    assert_eq!(h.idp.total_reads(), 0);
    assert!(h.proxy.calls().is_empty());

    let resp = h
        .http
        .get(h.url("/okta"))
        .header("Authorization", OKTA_SECRET)
        .header("X-Okta-Verification-Challenge", "challenge-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        serde_json::json!({"verification": "challenge-123"})
    );
    h.finish().await;
}

#[tokio::test]
async fn graph_handshake_echoes_the_token_and_a_notification_creates_the_user() {
    let h = harness(TargetProfile::Generic).await;
    let resp = h
        .http
        .post(h.url("/entra?validationToken=Validation%3a+Testing+client+application+reachability+%3Cscript%3E"))
        .header("Content-Type", "text/plain; charset=utf-8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        resp.text().await.unwrap(),
        "Validation: Testing client application reachability <script>"
    );

    let user_id = "5b3f0a2e-9c1d-4e8b-a6f7-1d2c3b4a5e6f";
    h.idp.set_graph_user(
        user_id,
        "Alex.Wilber@contoso.com",
        true,
        "Alex Wilber",
        Some("Marketing Lead"),
    );
    let resp = h
        .http
        .post(h.url("/entra"))
        .json(&graph_notification(user_id, CLIENT_STATE, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    h.settle().await;
    let user = h
        .tenant
        .user("alex.wilber@contoso.com")
        .await
        .expect("user created from Graph");
    assert_eq!(user["active"], true);
    assert_eq!(user["externalId"], user_id);
    assert_eq!(user["name"]["givenName"], "Alex");
    assert_eq!(user["title"], "Marketing Lead");
    assert_eq!(h.idp.token_requests(), 1);

    // Disabled in Entra: deactivated on the target.
    h.idp.set_graph_user(
        user_id,
        "Alex.Wilber@contoso.com",
        false,
        "Alex Wilber",
        Some("Marketing Lead"),
    );
    h.http
        .post(h.url("/entra"))
        .json(&graph_notification(user_id, CLIENT_STATE, 2))
        .send()
        .await
        .unwrap();
    h.settle().await;
    assert_eq!(
        h.tenant.user("alex.wilber@contoso.com").await.unwrap()["active"],
        false
    );
    assert_eq!(h.idp.token_requests(), 1, "the app token is cached");

    // A forged clientState: 401, nothing enqueued, nothing read.
    let reads = h.idp.total_reads();
    let resp = h
        .http
        .post(h.url("/entra"))
        .json(&graph_notification(user_id, "forged", 3))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    h.settle().await;
    assert_eq!(h.idp.total_reads(), reads);
    h.finish().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_without_enqueueing() {
    let h = harness(TargetProfile::Datadog).await;
    let resp = h
        .http
        .post(h.url("/okta"))
        .header("Authorization", OKTA_SECRET)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = h
        .http
        .post(h.url("/entra"))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let big = format!(
        "{{\"data\":{{\"events\":[]}},\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let resp = h
        .http
        .post(h.url("/okta"))
        .header("Authorization", OKTA_SECRET)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let resp = h
        .http
        .delete(h.url("/okta"))
        .header("Authorization", OKTA_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        h.http.get(h.url("/nope")).send().await.unwrap().status(),
        404
    );
    let health: Value = h
        .http
        .get(h.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["queued"], 0);
    h.finish().await;
}

#[tokio::test]
async fn an_accepted_event_survives_a_restart_while_the_target_is_down() {
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let db_path = std::env::temp_dir().join(format!("scim-relay-e2e-{}.db", uuid::Uuid::new_v4()));
    idp.set_okta_user(
        "00uDUR",
        "ACTIVE",
        Some("durable@example.com"),
        "Du",
        "Rable",
        None,
    );

    // Nothing listens on this port: every SCIM call fails, and keeps being retried.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let patient = RetryPolicy {
        max_attempts: 10_000,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(50),
        idle_poll: Duration::from_millis(20),
        credential_pause: Duration::from_millis(50),
        lease: Duration::from_secs(2),
    };
    let down = settings(
        &idp,
        &format!("http://127.0.0.1:{dead_port}/v2"),
        &tenant.token,
        TargetProfile::Datadog,
        &db_path,
    );
    let relay = scim_relay_server::start(down, patient).await.unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/okta", relay.addr))
        .header("Authorization", OKTA_SECRET)
        .json(&okta_delivery(
            "ev-dur",
            "user.lifecycle.create",
            "00uDUR",
            "durable@example.com",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        relay.db.depth().await.unwrap(),
        (1, 0),
        "the event waits in the queue"
    );
    relay.stop().await;

    // A new process on the same file, with the target back.
    let relay = restart_and_drain(&idp, &tenant, &db_path).await;
    let user = tenant
        .user("durable@example.com")
        .await
        .expect("created after the restart");
    assert_eq!(user["active"], true);
    assert_eq!(tenant.user_count().await, 1);
    relay.stop().await;
    let _ = std::fs::remove_file(&db_path);
}

#[tokio::test]
async fn a_rejected_target_credential_pauses_the_worker_and_keeps_the_messages() {
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let db_path = std::env::temp_dir().join(format!("scim-relay-e2e-{}.db", uuid::Uuid::new_v4()));
    idp.set_okta_user(
        "00uKEY",
        "ACTIVE",
        Some("key.user@example.com"),
        "Key",
        "User",
        None,
    );

    // A revoked key: scim2-server answers 401 to every call.
    let revoked = settings(
        &idp,
        &tenant.base_url,
        "revoked-token",
        TargetProfile::Datadog,
        &db_path,
    );
    let relay = scim_relay_server::start(revoked, fast_retries())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for n in 0..2 {
        let resp = http
            .post(format!("http://{}/okta", relay.addr))
            .header("Authorization", OKTA_SECRET)
            .json(&okta_delivery(
                &format!("ev-key-{n}"),
                "user.lifecycle.create",
                "00uKEY",
                "key.user@example.com",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "ingress keeps accepting");
    }
    let rejected = scim_relay_tests::eventually(WAIT, || async {
        relay.credential_health() == scim_relay_server::CredentialHealth::Rejected
    })
    .await;
    assert!(rejected);
    // Many pause periods later: nothing dead-lettered, nothing dropped.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(relay.db.depth().await.unwrap(), (2, 0));
    let health: Value = http
        .get(format!("http://{}/healthz", relay.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["target_credential"], "rejected");
    relay.stop().await;

    // The operator fixes the key: the same queue drains into the target.
    let relay = restart_and_drain(&idp, &tenant, &db_path).await;
    assert_eq!(
        tenant.user("key.user@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(
        relay.credential_health(),
        scim_relay_server::CredentialHealth::Accepted
    );
    assert_eq!(relay.db.depth().await.unwrap(), (0, 0));
    relay.stop().await;
    let _ = std::fs::remove_file(&db_path);
}

#[tokio::test]
async fn a_failed_patch_is_retried_until_it_lands() {
    let h = harness(TargetProfile::Datadog).await;
    h.idp.set_okta_user(
        "00uFLAKY",
        "ACTIVE",
        Some("flaky@example.com"),
        "Fla",
        "Ky",
        Some("One"),
    );
    h.post_okta(
        &okta_delivery(
            "ev-f1",
            "user.lifecycle.create",
            "00uFLAKY",
            "flaky@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    h.idp.set_okta_user(
        "00uFLAKY",
        "ACTIVE",
        Some("flaky@example.com"),
        "Fla",
        "Ky",
        Some("Two"),
    );
    for _ in 0..3 {
        h.proxy.fail_next("PATCH", 503);
    }
    h.post_okta(
        &okta_delivery(
            "ev-f2",
            "user.account.update_profile",
            "00uFLAKY",
            "flaky@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    assert_eq!(
        h.tenant.user("flaky@example.com").await.unwrap()["title"],
        "Two"
    );
    assert_eq!(
        h.proxy.count("PATCH"),
        4,
        "three 503s, then the one that landed"
    );
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
    h.finish().await;
}

#[tokio::test]
async fn entra_soft_delete_deactivates_and_hard_delete_follows_the_policy() {
    let h = harness_with(TargetProfile::Generic, |s| {
        s.entra.hard_delete = scim_relay_core::config::HardDeletePolicy::Delete;
    })
    .await;
    h.idp
        .set_graph_user("e-del-1", "Leaver@contoso.com", true, "Lea Ver", None);
    h.entra("e-del-1", 1).await;
    assert_eq!(
        h.tenant.user("leaver@contoso.com").await.unwrap()["active"],
        true
    );

    // Soft delete (restorable for 30 days): deactivated, not deleted.
    h.idp.soft_delete_graph_user("e-del-1");
    h.entra("e-del-1", 2).await;
    assert_eq!(
        h.tenant.user("leaver@contoso.com").await.unwrap()["active"],
        false
    );
    assert_eq!(
        h.idp.reads("graph-deleted:e-del-1"),
        1,
        "deletedItems told soft from hard"
    );
    assert_eq!(h.proxy.count("DELETE"), 0);

    // Hard delete, under the `delete` policy: the account is removed.
    h.idp.hard_delete_graph_user("e-del-1");
    h.entra("e-del-1", 3).await;
    assert_eq!(h.proxy.count("DELETE"), 1, "{:?}", h.proxy.calls());
    assert!(h.tenant.user("leaver@contoso.com").await.is_none());
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
    h.finish().await;
}

#[tokio::test]
async fn a_lifecycle_event_for_a_subscription_graph_no_longer_has_is_parked_with_instructions() {
    let h = harness(TargetProfile::Generic).await;
    let lifecycle = scim_relay_tests::payloads::graph_lifecycle(
        scim_relay_tests::payloads::GRAPH_SUBSCRIPTION,
        CLIENT_STATE,
        "reauthorizationRequired",
    );
    let resp = h
        .http
        .post(h.url("/entra"))
        .json(&lifecycle)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    h.settle().await;
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 1));
    let reasons = h.relay.db.dead_letter_reasons().await.unwrap();
    // The relay tried to renew it (that reauthorizes too); Graph does not have it, and the
    // relay does not own subscriptions without `entra.notification_url`.
    assert_eq!(h.idp.subscription_renewals().len(), 1);
    assert!(reasons[0].contains("entra.notification_url"), "{reasons:?}");
    h.finish().await;
}

#[tokio::test]
async fn okta_suspension_follows_the_suspend_policy() {
    for keep in [false, true] {
        let h = harness_with(TargetProfile::Datadog, |s| {
            if keep {
                s.okta.suspended = scim_relay_core::config::SuspendPolicy::Keep;
            }
        })
        .await;
        let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uSUS", "sus@example.com");
        h.idp.set_okta_user(
            "00uSUS",
            "ACTIVE",
            Some("sus@example.com"),
            "Sus",
            "Pended",
            None,
        );
        h.okta(event("ev-s1", "user.lifecycle.create")).await;
        h.idp.set_okta_user(
            "00uSUS",
            "SUSPENDED",
            Some("sus@example.com"),
            "Sus",
            "Pended",
            None,
        );
        h.okta(event("ev-s2", "user.lifecycle.suspend")).await;
        assert_eq!(
            h.tenant.user("sus@example.com").await.unwrap()["active"],
            keep,
            "keep={keep}"
        );
        assert_eq!(h.proxy.count("PATCH"), usize::from(!keep), "keep={keep}");

        h.idp.set_okta_user(
            "00uSUS",
            "ACTIVE",
            Some("sus@example.com"),
            "Sus",
            "Pended",
            None,
        );
        h.okta(event("ev-s3", "user.lifecycle.unsuspend")).await;
        assert_eq!(
            h.tenant.user("sus@example.com").await.unwrap()["active"],
            true,
            "keep={keep}"
        );
        assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
        h.finish().await;
    }
}

#[tokio::test]
async fn a_staged_user_leaves_an_existing_account_alone_until_activated() {
    let h = harness(TargetProfile::Datadog).await;
    // An account that exists on the target already, in use.
    let resp = reqwest::Client::new()
        .post(format!("{}/Users", h.tenant.base_url))
        .bearer_auth(&h.tenant.token)
        .header("Content-Type", "application/scim+json")
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "shared@example.com", "active": true,
            "name": {"formatted": "Old Name"},
            "emails": [{"value": "shared@example.com", "type": "work", "primary": true}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    h.idp.set_okta_user(
        "00uSTAGED",
        "STAGED",
        Some("shared@example.com"),
        "New",
        "Hire",
        None,
    );
    h.post_okta(
        &okta_delivery(
            "ev-st1",
            "user.lifecycle.create",
            "00uSTAGED",
            "shared@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    assert!(
        h.proxy.calls().is_empty(),
        "a staged user touches nothing: {:?}",
        h.proxy.calls()
    );
    assert_eq!(
        h.tenant.user("shared@example.com").await.unwrap()["active"],
        true
    );

    // Activated: the existing account is adopted and brought to the directory's truth.
    h.idp.set_okta_user(
        "00uSTAGED",
        "ACTIVE",
        Some("shared@example.com"),
        "New",
        "Hire",
        None,
    );
    h.post_okta(
        &okta_delivery(
            "ev-st2",
            "user.lifecycle.activate",
            "00uSTAGED",
            "shared@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    let user = h.tenant.user("shared@example.com").await.unwrap();
    assert_eq!(user["name"]["formatted"], "New Hire");
    assert_eq!(h.proxy.count("POST"), 0, "adopted, not created");
    assert_eq!(h.tenant.user_count().await, 1);
    h.finish().await;
}

#[tokio::test]
async fn okta_scope_follows_the_app_assignment_and_groups_read_from_the_directory() {
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.okta.app_id = Some("0oaDATADOG".into());
        s.okta.group_ids = vec!["00gENG".into(), "00gOPS".into()];
    })
    .await;
    let event =
        |uuid, event_type| okta_delivery(uuid, event_type, "00uSCOPE", "scoped@example.com");
    h.idp.set_okta_user(
        "00uSCOPE",
        "ACTIVE",
        Some("scoped@example.com"),
        "Sco",
        "Ped",
        None,
    );

    // Active in Okta, but neither assigned nor in a group: nothing is provisioned.
    h.okta(event("sc-1", "user.lifecycle.create")).await;
    assert!(h.tenant.user("scoped@example.com").await.is_none());
    assert!(h.proxy.calls().is_empty());

    // Assigned to the app: provisioned.
    h.idp.assign_okta_app("0oaDATADOG", "00uSCOPE", true);
    h.okta(event("sc-2", "application.user_membership.add"))
        .await;
    assert_eq!(
        h.tenant.user("scoped@example.com").await.unwrap()["active"],
        true
    );

    // Unassigned, but a member of a configured group: still in scope.
    h.idp.assign_okta_app("0oaDATADOG", "00uSCOPE", false);
    h.idp.set_okta_groups("00uSCOPE", &["00gOTHER", "00gOPS"]);
    h.okta(event("sc-3", "application.user_membership.remove"))
        .await;
    assert_eq!(
        h.tenant.user("scoped@example.com").await.unwrap()["active"],
        true
    );

    // Out of the group too: deactivated.
    h.idp.set_okta_groups("00uSCOPE", &["00gOTHER"]);
    h.okta(event("sc-4", "group.user_membership.remove")).await;
    assert_eq!(
        h.tenant.user("scoped@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
    h.finish().await;
}

#[tokio::test]
async fn entra_scope_follows_group_membership() {
    let h = harness_with(TargetProfile::Generic, |s| {
        s.entra.group_ids = vec!["grp-datadog-users".into()];
    })
    .await;
    h.idp
        .set_graph_user("e-scope", "In.Scope@contoso.com", true, "In Scope", None);
    h.entra("e-scope", 1).await;
    assert!(
        h.tenant.user("in.scope@contoso.com").await.is_none(),
        "not a member yet"
    );

    h.idp.set_graph_groups("e-scope", &["grp-datadog-users"]);
    h.entra("e-scope", 2).await;
    assert_eq!(
        h.tenant.user("in.scope@contoso.com").await.unwrap()["active"],
        true
    );

    h.idp.set_graph_groups("e-scope", &[]);
    h.entra("e-scope", 3).await;
    assert_eq!(
        h.tenant.user("in.scope@contoso.com").await.unwrap()["active"],
        false
    );
    h.finish().await;
}

#[tokio::test]
async fn the_failure_table_end_to_end() {
    let h = harness(TargetProfile::Datadog).await;
    let email = "table@example.com";
    h.idp
        .set_okta_user("00uTABLE", "ACTIVE", Some(email), "Ta", "Ble", Some("v1"));
    h.post_okta(
        &okta_delivery("ft-1", "user.lifecycle.create", "00uTABLE", email),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    let first_id = h.tenant.user(email).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // 429 with Datadog's X-RateLimit-Reset: the retry waits that long.
    h.idp
        .set_okta_user("00uTABLE", "ACTIVE", Some(email), "Ta", "Ble", Some("v2"));
    h.proxy.fail_next_with(
        "PATCH",
        429,
        &[
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Period", "60"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1"),
        ],
    );
    h.post_okta(
        &okta_delivery("ft-2", "user.account.update_profile", "00uTABLE", email),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    assert_eq!(h.tenant.user(email).await.unwrap()["title"], "v2");
    let patches: Vec<_> = h
        .proxy
        .call_times()
        .into_iter()
        .filter(|(m, _)| m == "PATCH")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(patches.len(), 2, "one refused, one retried");
    assert!(
        patches[1].duration_since(patches[0]) >= Duration::from_millis(900),
        "the reset was honoured"
    );

    // 400: parked in the dead letters with the target's reason, not retried.
    h.idp
        .set_okta_user("00uTABLE", "ACTIVE", Some(email), "Ta", "Ble", Some("v3"));
    h.proxy.fail_next("PATCH", 400);
    h.post_okta(
        &okta_delivery("ft-3", "user.account.update_profile", "00uTABLE", email),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    let reasons = h.relay.db.dead_letter_reasons().await.unwrap();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("400") && reasons[0].contains("injected"),
        "{reasons:?}"
    );
    assert_eq!(h.proxy.count("PATCH"), 3);

    // 404 on PATCH: the account vanished from the target; the user should have one, so it is
    // looked up and created again.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/Users/{first_id}", h.tenant.base_url))
        .bearer_auth(&h.tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    h.idp
        .set_okta_user("00uTABLE", "ACTIVE", Some(email), "Ta", "Ble", Some("v4"));
    h.post_okta(
        &okta_delivery("ft-4", "user.account.update_profile", "00uTABLE", email),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    let again = h.tenant.user(email).await.expect("re-created");
    assert_eq!(again["title"], "v4");
    assert_ne!(again["id"].as_str().unwrap(), first_id);
    assert_eq!(h.tenant.user_count().await, 1);
    h.finish().await;
}

#[tokio::test]
async fn okta_group_memberships_are_mirrored_one_member_at_a_time() {
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.okta.group_ids = vec!["00gENG".into(), "00gOPS".into()];
        s.target.sync_groups = true;
    })
    .await;
    let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uGRP", "grouped@example.com");
    h.idp.set_okta_user(
        "00uGRP",
        "ACTIVE",
        Some("grouped@example.com"),
        "Grou",
        "Ped",
        None,
    );
    h.idp.set_okta_groups("00uGRP", &["00gENG", "00gUNRELATED"]);
    h.okta(event("g-1", "user.lifecycle.create")).await;
    let uid = h.tenant.user("grouped@example.com").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.tenant.group_members("00gENG").await,
        Some(vec![uid.clone()]),
        "group created with the user"
    );
    assert_eq!(
        h.tenant.group_members("00gUNRELATED").await,
        None,
        "only configured groups"
    );

    h.idp.set_okta_groups("00uGRP", &["00gENG", "00gOPS"]);
    h.okta(event("g-2", "group.user_membership.add")).await;
    assert_eq!(
        h.tenant.group_members("00gOPS").await,
        Some(vec![uid.clone()])
    );
    assert_eq!(
        h.tenant.group_members("00gENG").await,
        Some(vec![uid.clone()])
    );

    // Nothing changed: no group call.
    let calls = h.proxy.calls().len();
    h.okta(event("g-3", "user.account.update_profile")).await;
    assert_eq!(
        h.proxy.calls().len(),
        calls,
        "{:?}",
        &h.proxy.calls()[calls..]
    );

    h.idp.set_okta_groups("00uGRP", &["00gOPS"]);
    h.okta(event("g-4", "group.user_membership.remove")).await;
    assert_eq!(
        h.tenant.group_members("00gENG").await,
        Some(vec![]),
        "left, group kept"
    );
    assert_eq!(
        h.tenant.group_members("00gOPS").await,
        Some(vec![uid.clone()])
    );
    assert_eq!(
        h.tenant.user("grouped@example.com").await.unwrap()["active"],
        true,
        "still in scope through 00gOPS"
    );
    let group_puts = h
        .proxy
        .calls()
        .iter()
        .filter(|(m, p)| m == "PUT" && p.contains("/Groups"))
        .count();
    assert_eq!(group_puts, 0, "member lists are never replaced");
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
    h.finish().await;
}

#[tokio::test]
async fn entra_group_memberships_are_mirrored_with_the_groups_display_names() {
    let h = harness_with(TargetProfile::Generic, |s| {
        s.entra.group_ids = vec!["grp-a".into(), "grp-b".into()];
        s.target.sync_groups = true;
    })
    .await;
    h.idp
        .set_graph_user("e-grp", "Member@contoso.com", true, "Mem Ber", None);
    h.idp.set_graph_groups("e-grp", &["grp-b"]);
    h.entra("e-grp", 1).await;
    let uid = h.tenant.user("member@contoso.com").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(h.tenant.group_members("Entra grp-b").await, Some(vec![uid]));
    assert_eq!(h.tenant.group_members("Entra grp-a").await, None);
    h.finish().await;
}

#[tokio::test]
async fn the_datadog_profile_against_a_target_that_behaves_as_datadog_documents() {
    use scim_relay_tests::datadog::{DatadogFixture, DATADOG_TOKEN};
    let dd = DatadogFixture::start().await;
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.target.base_url = Some(dd.base_url.clone());
        s.target.token = Secret::new(DATADOG_TOKEN);
        s.entra.hard_delete = scim_relay_core::config::HardDeletePolicy::Delete;
    })
    .await;

    let email = "Dana.Dog@Example.com";
    h.idp
        .set_okta_user("00uDD", "ACTIVE", Some(email), "Dana", "Dog", Some("SRE"));

    // Rate limited on the first look-up: Datadog's 429 with X-RateLimit-Reset, then through.
    dd.throttle_next("GET");
    h.okta(okta_delivery(
        "dd-1",
        "user.lifecycle.create",
        "00uDD",
        email,
    ))
    .await;
    let user = dd.user("dana.dog@example.com").expect("created");
    assert_eq!(user["name"]["formatted"], "Dana Dog");
    assert!(
        user["name"].get("givenName").is_none(),
        "name.formatted only"
    );
    assert_eq!(user["emails"][0]["type"], "work");
    assert_eq!(dd.requests("GET"), 2, "the throttled look-up was retried");

    // Profile change, reactivation and deactivation all stay within add/replace.
    h.idp
        .set_okta_user("00uDD", "ACTIVE", Some(email), "Dana", "Dog", None);
    h.okta(okta_delivery(
        "dd-2",
        "user.account.update_profile",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(
        dd.user("dana.dog@example.com").unwrap()["title"],
        "",
        "a cleared title is blanked, not removed"
    );
    h.idp
        .set_okta_user("00uDD", "DEPROVISIONED", Some(email), "Dana", "Dog", None);
    h.okta(okta_delivery(
        "dd-3",
        "user.lifecycle.deactivate",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(dd.user("dana.dog@example.com").unwrap()["active"], false);
    h.idp
        .set_okta_user("00uDD", "ACTIVE", Some(email), "Dana", "Dog", None);
    h.okta(okta_delivery(
        "dd-4",
        "user.lifecycle.reactivate",
        "00uDD",
        email,
    ))
    .await;
    assert_eq!(dd.user("dana.dog@example.com").unwrap()["active"], true);
    assert_eq!(
        h.relay.db.depth().await.unwrap(),
        (0, 0),
        "nothing dead-lettered: {:?}",
        h.relay.db.dead_letter_reasons().await
    );

    // An account that already exists for the address: looked up first and adopted.
    h.idp.set_okta_user(
        "00uDD2",
        "ACTIVE",
        Some("second@example.com"),
        "Sec",
        "Ond",
        None,
    );
    let second = serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "second@example.com", "active": true});
    let made = reqwest::Client::new()
        .post(format!("{}/Users", dd.base_url))
        .bearer_auth(DATADOG_TOKEN)
        .json(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    h.okta(okta_delivery(
        "dd-5",
        "user.lifecycle.create",
        "00uDD2",
        "second@example.com",
    ))
    .await;
    assert_eq!(dd.user_count(), 2, "adopted, not duplicated");
    assert_eq!(
        dd.user("second@example.com").unwrap()["name"]["formatted"],
        "Sec Ond"
    );

    // Entra hard delete under the `delete` policy: SCIM DELETE, which Datadog turns into disable.
    h.idp
        .set_graph_user("e-dd", "Entra.Dog@contoso.com", true, "Entra Dog", None);
    h.entra("e-dd", 1).await;
    assert_eq!(dd.user("entra.dog@contoso.com").unwrap()["active"], true);
    h.idp.hard_delete_graph_user("e-dd");
    h.entra("e-dd", 2).await;
    assert_eq!(dd.requests("DELETE"), 1);
    let disabled = dd
        .user("entra.dog@contoso.com")
        .expect("Datadog keeps the user");
    assert_eq!(disabled["active"], false);
    h.finish().await;
}

#[tokio::test]
async fn roles_are_sent_and_without_a_directory_an_older_event_changes_nothing() {
    use scim_relay_tests::datadog::{DatadogFixture, DATADOG_TOKEN};
    use scim_relay_tests::payloads::okta_delivery_at;
    let dd = DatadogFixture::start().await;
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.target.base_url = Some(dd.base_url.clone());
        s.target.token = Secret::new(DATADOG_TOKEN);
        s.target.role_ids = vec!["role-uuid-1".into(), "role-uuid-2".into()];
        s.okta.api_token = Secret::default();
        s.okta.use_event_content = true;
    })
    .await;

    h.okta(okta_delivery_at(
        "o-1",
        "user.lifecycle.create",
        "00uORD",
        "ordered@example.com",
        "2026-11-29T10:00:00Z",
    ))
    .await;
    let user = dd
        .user("ordered@example.com")
        .expect("created from the event");
    assert_eq!(
        user["roles"],
        serde_json::json!([{"value": "role-uuid-1"}, {"value": "role-uuid-2"}])
    );

    h.okta(okta_delivery_at(
        "o-3",
        "user.lifecycle.deactivate",
        "00uORD",
        "ordered@example.com",
        "2026-11-29T10:05:00Z",
    ))
    .await;
    assert_eq!(dd.user("ordered@example.com").unwrap()["active"], false);
    // A late delivery of an earlier activation must not undo the deactivation.
    h.okta(okta_delivery_at(
        "o-2",
        "user.lifecycle.activate",
        "00uORD",
        "ordered@example.com",
        "2026-11-29T10:01:00Z",
    ))
    .await;
    assert_eq!(dd.user("ordered@example.com").unwrap()["active"], false);
    assert_eq!(h.idp.total_reads(), 0, "no directory was read");
    h.finish().await;
}

#[tokio::test]
async fn the_generic_profile_writes_with_if_match_when_the_provider_advertises_etags() {
    let h = harness(TargetProfile::Generic).await;
    h.idp.set_okta_user(
        "00uETAG",
        "ACTIVE",
        Some("etag@example.com"),
        "E",
        "Tag",
        Some("v1"),
    );
    h.post_okta(
        &okta_delivery(
            "et-1",
            "user.lifecycle.create",
            "00uETAG",
            "etag@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;

    h.idp.set_okta_user(
        "00uETAG",
        "ACTIVE",
        Some("etag@example.com"),
        "E",
        "Tag",
        Some("v2"),
    );
    h.post_okta(
        &okta_delivery(
            "et-2",
            "user.account.update_profile",
            "00uETAG",
            "etag@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    let user = h.tenant.user("etag@example.com").await.unwrap();
    assert_eq!(user["title"], "v2");
    let sent = h.proxy.if_match("PATCH");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].as_deref().is_some_and(|v| v.contains('"')),
        "PATCH carried the version read: {sent:?}"
    );

    // The resource changes between our read and our write: 412, read again, write again.
    h.idp.set_okta_user(
        "00uETAG",
        "ACTIVE",
        Some("etag@example.com"),
        "E",
        "Tag",
        Some("v3"),
    );
    h.proxy.fail_next("PATCH", 412);
    h.post_okta(
        &okta_delivery(
            "et-3",
            "user.account.update_profile",
            "00uETAG",
            "etag@example.com",
        ),
        OKTA_SECRET,
    )
    .await;
    h.settle().await;
    assert_eq!(
        h.tenant.user("etag@example.com").await.unwrap()["title"],
        "v3"
    );
    assert_eq!(h.proxy.count("PATCH"), 3);
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0));
    h.finish().await;
}

#[tokio::test]
async fn the_attribute_map_sends_custom_idp_attributes() {
    let cost_center = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter";
    let h = harness_with(TargetProfile::Generic, |s| {
        s.target
            .attributes
            .insert(cost_center.into(), "costCenter".into());
        s.target.attributes.insert("title".into(), "jobCode".into());
    })
    .await;
    h.idp.set_okta_user(
        "00uMAP",
        "ACTIVE",
        Some("mapped@example.com"),
        "Map",
        "Ped",
        Some("Ignored title"),
    );
    h.idp
        .set_okta_profile_field("00uMAP", "costCenter", "CC-42");
    h.idp.set_okta_profile_field("00uMAP", "jobCode", "J-7");
    h.okta(okta_delivery(
        "map-1",
        "user.lifecycle.create",
        "00uMAP",
        "mapped@example.com",
    ))
    .await;
    let user = h.tenant.user("mapped@example.com").await.expect("created");
    let enterprise = &user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(user["title"], "J-7");
    assert_eq!(enterprise["costCenter"], "CC-42");
    assert_eq!(
        enterprise["department"], "Engineering",
        "unmapped paths keep the profile's default"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_misspelt_scope_parks_triggers_and_deactivates_nobody() {
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let db_path = std::env::temp_dir().join(format!("scim-relay-e2e-{}.db", uuid::Uuid::new_v4()));
    idp.set_okta_user(
        "00uKEPT",
        "ACTIVE",
        Some("kept@example.com"),
        "Ke",
        "Pt",
        None,
    );
    let open = settings(
        &idp,
        &tenant.base_url,
        &tenant.token,
        TargetProfile::Datadog,
        &db_path,
    );
    let relay = scim_relay_server::start(open, fast_retries())
        .await
        .unwrap();
    let post = |relay: &RunningRelay, uuid: &str| {
        let url = format!("http://{}/okta", relay.addr);
        let body = okta_delivery(
            uuid,
            "user.account.update_profile",
            "00uKEPT",
            "kept@example.com",
        );
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("Authorization", OKTA_SECRET)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    post(&relay, "ms-1").await;
    assert!(relay.wait_idle(WAIT).await);
    assert_eq!(
        tenant.user("kept@example.com").await.unwrap()["active"],
        true
    );
    relay.stop().await;

    // The operator scopes to an app, with a typo: nobody may be deactivated for it.
    let mut typo = settings(
        &idp,
        &tenant.base_url,
        &tenant.token,
        TargetProfile::Datadog,
        &db_path,
    );
    typo.okta.app_id = Some("0oaMISSING".into());
    let relay = scim_relay_server::start(typo, fast_retries())
        .await
        .unwrap();
    post(&relay, "ms-2").await;
    assert!(relay.wait_idle(WAIT).await);
    assert_eq!(
        tenant.user("kept@example.com").await.unwrap()["active"],
        true
    );
    let reasons = relay.db.dead_letter_reasons().await.unwrap();
    assert!(
        reasons.len() == 1 && reasons[0].contains("okta.app_id"),
        "{reasons:?}"
    );
    relay.stop().await;
    let _ = std::fs::remove_file(&db_path);
}

#[tokio::test]
async fn a_recreated_account_rejoins_its_groups() {
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.okta.group_ids = vec!["00gENG".into()];
        s.target.sync_groups = true;
    })
    .await;
    let event = |uuid, event_type| okta_delivery(uuid, event_type, "00uRE", "rejoin@example.com");
    h.idp.set_okta_user(
        "00uRE",
        "ACTIVE",
        Some("rejoin@example.com"),
        "Re",
        "Join",
        Some("v1"),
    );
    h.idp.set_okta_groups("00uRE", &["00gENG"]);
    h.okta(event("rj-1", "user.lifecycle.create")).await;
    let first = h.tenant.user("rejoin@example.com").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.tenant.group_members("00gENG").await,
        Some(vec![first.clone()])
    );

    // The account disappears from the target; the next change re-creates it.
    let deleted = reqwest::Client::new()
        .delete(format!("{}/Users/{first}", h.tenant.base_url))
        .bearer_auth(&h.tenant.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    h.idp.set_okta_user(
        "00uRE",
        "ACTIVE",
        Some("rejoin@example.com"),
        "Re",
        "Join",
        Some("v2"),
    );
    h.okta(event("rj-2", "user.account.update_profile")).await;
    let second = h.tenant.user("rejoin@example.com").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    let members = h.tenant.group_members("00gENG").await.unwrap();
    assert!(
        members.contains(&second),
        "the new account rejoined: {members:?}"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_group_failure_parks_the_groups_but_keeps_the_user_change() {
    use scim_relay_tests::datadog::{DatadogFixture, DATADOG_TOKEN};
    // This Datadog org has no SCIM Groups (Teams not enabled): /Groups answers 404.
    let dd = DatadogFixture::start().await;
    let h = harness_with(TargetProfile::Datadog, |s| {
        s.target.base_url = Some(dd.base_url.clone());
        s.target.token = Secret::new(DATADOG_TOKEN);
        s.okta.group_ids = vec!["00gENG".into()];
        s.target.sync_groups = true;
    })
    .await;
    h.idp.set_okta_user(
        "00uNOTEAM",
        "ACTIVE",
        Some("noteam@example.com"),
        "No",
        "Team",
        None,
    );
    h.idp.set_okta_groups("00uNOTEAM", &["00gENG"]);
    h.okta(okta_delivery(
        "nt-1",
        "user.lifecycle.create",
        "00uNOTEAM",
        "noteam@example.com",
    ))
    .await;
    assert_eq!(
        dd.user("noteam@example.com").expect("the user part landed")["active"],
        true
    );
    let reasons = h.relay.db.dead_letter_reasons().await.unwrap();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(dd.requests("POST"), 1, "created once");
    h.finish().await;
}

#[tokio::test]
async fn a_scim_group_deleted_on_the_target_is_made_again_for_the_next_join() {
    let h = harness_with(TargetProfile::Generic, |s| {
        s.okta.group_ids = vec!["00gTEAM".into()];
        s.target.sync_groups = true;
    })
    .await;
    for (id, email) in [("00uG1", "g1@example.com"), ("00uG2", "g2@example.com")] {
        h.idp
            .set_okta_user(id, "ACTIVE", Some(email), "Gro", "Up", None);
        h.idp.set_okta_groups(id, &["00gTEAM"]);
    }
    h.okta(okta_delivery(
        "ev-g1",
        "user.lifecycle.create",
        "00uG1",
        "g1@example.com",
    ))
    .await;
    assert_eq!(h.tenant.groups_named("00gTEAM").await, 1);

    // An admin deletes the group on the target; the relay's record of it is stale.
    h.tenant.delete_group("00gTEAM").await;
    assert_eq!(h.tenant.groups_named("00gTEAM").await, 0);
    h.okta(okta_delivery(
        "ev-g2",
        "user.lifecycle.create",
        "00uG2",
        "g2@example.com",
    ))
    .await;
    assert_eq!(h.tenant.groups_named("00gTEAM").await, 1, "made again");
    let g2 = h.tenant.user("g2@example.com").await.expect("g2");
    let members = h.tenant.group_members("00gTEAM").await.unwrap_or_default();
    assert!(members.contains(&g2["id"].as_str().unwrap().to_string()));
    assert_eq!(h.relay.db.depth().await.unwrap(), (0, 0), "nothing parked");
    h.finish().await;
}
