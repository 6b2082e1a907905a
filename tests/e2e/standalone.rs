//! The standalone relay end to end: real HTTP ingress, the SQLite queue and store, the IdP
//! fixture, and scim2-server behind a counting proxy.

use std::time::Duration;

use scim_relay_core::config::{Settings, TargetProfile};
use scim_relay_server::{RetryPolicy, RunningRelay};
use scim_relay_tests::deployment::{base_settings, CLIENT_STATE, OKTA_SECRET};
use scim_relay_tests::idp::IdpFixture;
use scim_relay_tests::memory_relay::fast_retries;
use scim_relay_tests::payloads::okta_delivery;
use scim_relay_tests::scim::{ScimProxy, ScimTenant};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

// Every behaviour that does not depend on the target being scim2-server lives in the
// behaviour suite (tests/behaviour/), on every backend. What stays here is what its deployment
// cannot express: the generic profile's use of scim2-server's ETags (`If-Match`, a 412), the
// `/metrics` endpoint's exposition, a killed process's claims taken over by the next one, and
// the chaos run (chaos.rs), which shares this harness, and `setup okta` and `setup graph`,
// whose verification needs the relay on a real port.

/// So does the convergence-under-chaos test.
#[path = "chaos.rs"]
mod chaos;

struct Harness {
    /// The relay's settings, as it was started with them.
    settings: Settings,
    idp: IdpFixture,
    tenant: ScimTenant,
    proxy: ScimProxy,
    relay: RunningRelay,
    http: reqwest::Client,
    db_path: std::path::PathBuf,
}

/// The suite's settings, with `profile` and the server's database file.
fn settings(
    idp: &IdpFixture,
    target_url: &str,
    token: &str,
    profile: TargetProfile,
    db: &std::path::Path,
) -> Settings {
    let mut s = base_settings(idp, target_url, token);
    s.listen = "127.0.0.1:0".into();
    s.database = db.display().to_string();
    s.target.profile = profile;
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
    let relay = scim_relay_server::start_with_clock(s.clone(), fast_retries(), clock)
        .await
        .expect("relay starts");
    Harness {
        settings: s,
        idp,
        tenant,
        proxy,
        relay,
        http: reqwest::Client::new(),
        db_path,
    }
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

    async fn settle(&self) {
        assert!(self.relay.wait_idle(WAIT).await, "queue did not drain");
    }

    async fn finish(self) {
        self.relay.stop().await;
        let _ = std::fs::remove_file(&self.db_path);
    }
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
async fn the_metrics_endpoint_counts_what_the_workers_did() {
    let h = harness(TargetProfile::Generic).await;
    h.idp.set_okta_user(
        "00uMETRIC",
        "ACTIVE",
        Some("metric@example.com"),
        "Me",
        "Tric",
        None,
    );
    let delivery = okta_delivery(
        "me-1",
        "user.lifecycle.create",
        "00uMETRIC",
        "metric@example.com",
    );
    h.post_okta(&delivery, OKTA_SECRET).await;
    h.settle().await;
    // Okta's retry of a delivery that was already applied.
    let mut again = delivery.clone();
    again["eventId"] = serde_json::json!("a-retry-of-the-same-delivery");
    h.post_okta(&again, OKTA_SECRET).await;
    h.settle().await;

    let resp = h
        .http
        .get(h.url("/metrics"))
        .send()
        .await
        .expect("relay reachable");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    let text = resp.text().await.unwrap();
    for line in [
        "scim_relay_triggers_total{outcome=\"applied\"} 1",
        "scim_relay_triggers_total{outcome=\"duplicate\"} 1",
        "scim_relay_queue_messages 0",
        "scim_relay_dead_letters 0",
        "scim_relay_deprovisions_held 0",
        "scim_relay_target_credential_accepted 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    h.finish().await;
}

/// A relay killed mid-work (its tasks aborted and its files closed, as `kill -9` leaves them)
/// and started again on the same database: the message the dead process had claimed is worked
/// within seconds of the restart, not when its 30 s lease runs out. A second relay started
/// while the first is alive leaves the first one's claim alone.
#[tokio::test]
async fn a_restarted_relay_takes_over_a_killed_ones_work_at_once() {
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let proxy = ScimProxy::start(&tenant).await;
    let db_path = std::env::temp_dir().join(format!("scim-relay-e2e-{}.db", uuid::Uuid::new_v4()));
    let s = settings(
        &idp,
        &proxy.url,
        &tenant.token,
        TargetProfile::Generic,
        &db_path,
    );
    let retry = RetryPolicy {
        lease: Duration::from_secs(30),
        ..fast_retries()
    };
    let start = || {
        scim_relay_server::start_with_clock(
            s.clone(),
            retry,
            std::sync::Arc::new(scim_relay_core::clock::SystemClock),
        )
    };
    idp.set_okta_user(
        "00uKILLED",
        "ACTIVE",
        Some("killed@example.com"),
        "Ki",
        "Lled",
        None,
    );
    // The look-up hangs: the worker is mid-work, its claim renewed, when it is killed.
    proxy.stall_next("GET", Duration::from_secs(8));
    let first = start().await.expect("relay starts");
    let status = reqwest::Client::new()
        .post(format!("http://{}/okta", first.addr))
        .header("Authorization", OKTA_SECRET)
        .json(&okta_delivery(
            "ev-killed",
            "user.lifecycle.create",
            "00uKILLED",
            "killed@example.com",
        ))
        .send()
        .await
        .expect("relay reachable")
        .status();
    assert_eq!(status, 200);
    assert!(
        scim_relay_tests::eventually(WAIT, || async { proxy.count("GET") >= 1 }).await,
        "the worker is at its look-up"
    );

    // A second process on the same file while the first lives: the first one's claim stays.
    let second = start().await.expect("a second relay starts");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        proxy.count("GET"),
        1,
        "nobody else works the claimed message"
    );
    second.kill().await;

    first.kill().await;
    let restarted = std::time::Instant::now();
    let third = start().await.expect("relay restarts");
    assert!(
        third.wait_idle(Duration::from_secs(5)).await,
        "worked within 5 s of the restart, not when the dead process's 30 s lease ran out"
    );
    eprintln!("restart to applied: {} ms", restarted.elapsed().as_millis());
    assert_eq!(
        tenant.user("killed@example.com").await.expect("created")["active"],
        true
    );
    third.stop().await;
    let _ = std::fs::remove_file(&db_path);
}

/// `scim-relay setup <words>` with `settings`: what it printed, or its error.
async fn setup(settings: Settings, words: Vec<String>) -> Result<String, String> {
    use scim_relay_server::setup::{parse, run};
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let args = parse(&words).expect("arguments parse");
    let mut out = Vec::new();
    run(&settings, args, &mut out).await?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

/// `scim-relay setup okta` against a fixture of Okta's Event Hooks API, with this relay on a
/// real port for Okta's verification call: the hook is created with exactly the event types
/// the settings need, verified (the fixture calls the relay with a challenge and the hook's
/// secret) and active; a second run changes nothing and says so; a changed scope updates the
/// events; Okta's refusals read as what to fix; and an event Okta then delivers through the
/// hook provisions the user.
#[tokio::test]
async fn setup_okta_makes_the_event_hook_and_a_second_run_changes_nothing() {
    let h = harness_with(TargetProfile::Generic, |s| {
        s.okta.app_id = Some("0oaAPP".into());
    })
    .await;
    let okta = |url: &str| vec!["okta".to_string(), "--url".into(), url.to_string()];
    let url = h.url("/okta");

    let first = setup(h.settings.clone(), okta(&url)).await.expect("set up");
    assert!(first.contains("created event hook scim-relay"), "{first}");
    assert!(first.contains("verified"), "{first}");
    let hooks = h.idp.event_hooks.hooks();
    assert_eq!(hooks.len(), 1);
    let hook = &hooks[0];
    assert_eq!(hook["status"], "ACTIVE");
    assert_eq!(hook["verificationStatus"], "VERIFIED");
    assert_eq!(hook["channel"]["config"]["uri"], url.as_str());
    assert_eq!(
        hook["channel"]["config"]["authScheme"]["value"],
        OKTA_SECRET
    );
    let events: Vec<&str> = hook["events"]["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(events.contains(&"user.lifecycle.deactivate"));
    assert!(
        events.contains(&"application.user_membership.remove"),
        "scoped by the app"
    );
    assert!(
        !events.iter().any(|e| e.starts_with("group.")),
        "no group settings: {events:?}"
    );

    // Again: nothing written, and it says so.
    let writes = h.idp.event_hooks.writes();
    let second = setup(h.settings.clone(), okta(&url)).await.expect("set up");
    assert!(
        second.contains("already as configured, nothing changed"),
        "{second}"
    );
    assert_eq!(h.idp.event_hooks.writes(), writes);

    // Groups now scope provisioning too: their membership events are added, verified again.
    let mut grouped = h.settings.clone();
    grouped.okta.group_ids = vec!["00gENG".into()];
    let third = setup(grouped, okta(&url)).await.expect("set up");
    assert!(
        third.contains("events added: group.user_membership.add"),
        "{third}"
    );
    assert_eq!(h.idp.event_hooks.writes(), writes + 1);
    assert_eq!(
        h.idp.event_hooks.hooks()[0]["verificationStatus"],
        "VERIFIED"
    );

    // What goes wrong reads as what to fix; nothing half-made.
    let plain = setup(h.settings.clone(), okta("http://relay.example.com/okta")).await;
    assert!(plain.unwrap_err().contains("HTTPS only"));
    let mut wrong_secret = h.settings.clone();
    wrong_secret.okta.shared_secret =
        scim_relay_core::secret::Secret::new("not-the-relays".to_string());
    let unverified = setup(
        wrong_secret,
        vec![
            "okta".into(),
            "--url".into(),
            url.clone(),
            "--rotate".into(),
        ],
    )
    .await
    .unwrap_err();
    assert!(unverified.contains("Okta could not verify"), "{unverified}");
    h.idp.event_hooks.forbid(true);
    let refused = setup(h.settings.clone(), okta(&url)).await.unwrap_err();
    assert!(refused.contains("okta.eventHooks.manage"), "{refused}");
    h.idp.event_hooks.forbid(false);
    // Put right with the relay's own secret.
    let rotated = setup(
        h.settings.clone(),
        vec![
            "okta".into(),
            "--url".into(),
            url.clone(),
            "--rotate".into(),
        ],
    )
    .await
    .expect("set up");
    assert!(rotated.contains("the secret sent again"), "{rotated}");

    // Okta delivers through the hook it holds: the user is provisioned.
    h.idp.set_okta_user(
        "00uHOOK",
        "ACTIVE",
        Some("hooked@example.com"),
        "Hoo",
        "Ked",
        None,
    );
    h.idp.assign_okta_app("0oaAPP", "00uHOOK", true);
    let status = h
        .idp
        .event_hooks
        .deliver(
            "scim-relay",
            &okta_delivery(
                "hook-1",
                "user.lifecycle.create",
                "00uHOOK",
                "hooked@example.com",
            ),
        )
        .await;
    assert_eq!(status, 200);
    h.settle().await;
    assert!(h.tenant.user("hooked@example.com").await.is_some());
    h.finish().await;
}

/// `setup graph` with the relay on a real port: Graph validates the URL against it (twice: the
/// notification and the lifecycle URL), a second run changes nothing, groups in the settings
/// add a `groups` subscription, one near its end is renewed, `--rotate` makes it again and
/// deletes the old; what it may not touch (another URL's subscription) stays. It ends with a
/// notification through the subscription Graph holds, which provisions the user.
#[tokio::test]
async fn setup_graph_makes_the_subscription_and_a_second_run_changes_nothing() {
    use scim_relay_core::secret::Secret;
    let h = harness(TargetProfile::Generic).await;
    h.idp.validate_subscription_endpoints();
    let graph = |url: &str| vec!["graph".to_string(), "--url".into(), url.to_string()];
    let url = h.url("/entra");
    // Another deployment's subscription of the same app: never touched.
    let theirs = json!({
        "resource": "users", "changeType": "updated,deleted",
        "notificationUrl": "https://other.example.com/entra",
        "expirationDateTime": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339(),
    });
    h.idp.add_subscription("theirs", theirs);

    let first = setup(h.settings.clone(), graph(&url))
        .await
        .expect("set up");
    assert!(
        first.contains("created subscription sub-1 to users"),
        "{first}"
    );
    assert!(first.contains("left alone: subscription theirs"), "{first}");
    assert_eq!(h.idp.subscription_validations(), [url.clone(), url.clone()]);
    let made = h.idp.subscription_creates();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["changeType"], "updated,deleted");
    assert_eq!(made[0]["lifecycleNotificationUrl"], url.as_str());
    assert_eq!(made[0]["clientState"], CLIENT_STATE);

    // Again: nothing written, and it says so.
    let second = setup(h.settings.clone(), graph(&url))
        .await
        .expect("set up");
    assert!(
        second.contains("already as configured, nothing changed"),
        "{second}"
    );
    assert_eq!(h.idp.subscription_creates().len(), 1);
    assert!(h.idp.subscription_renewals().is_empty());

    // Groups decide scope now: a `groups` subscription too; `users` is kept.
    let mut grouped = h.settings.clone();
    grouped.entra.group_ids = vec!["g-eng".into()];
    let third = setup(grouped, graph(&url)).await.expect("set up");
    assert!(
        third.contains("created subscription sub-2 to groups"),
        "{third}"
    );
    assert_eq!(h.idp.subscription_creates().len(), 2);

    // Two days left, inside the three-day margin: renewed, not remade.
    h.idp
        .set_subscription_expiry("sub-1", chrono::Utc::now() + chrono::Duration::days(2));
    let fourth = setup(h.settings.clone(), graph(&url))
        .await
        .expect("set up");
    assert!(fourth.contains("renewed subscription sub-1"), "{fourth}");
    // No group settings again: the `groups` subscription only costs notifications.
    assert!(
        fourth.contains("deleted subscription sub-2 to groups: not needed"),
        "{fourth}"
    );
    assert_eq!(h.idp.subscription_renewals().len(), 1);

    // What goes wrong reads as what to fix, and leaves nothing half-made.
    let plain = setup(h.settings.clone(), graph("http://relay.example.com/entra")).await;
    assert!(plain.unwrap_err().contains("HTTPS only"));
    let nobody = setup(h.settings.clone(), graph("http://127.0.0.1:9/entra"))
        .await
        .unwrap_err();
    assert!(nobody.contains("is the relay running"), "{nobody}");
    let mut owned = h.settings.clone();
    owned.entra.notification_url = Some(url.clone());
    let by_sweeper = setup(owned, graph(&url)).await.expect("set up");
    assert!(
        by_sweeper.contains("the sweeper makes and renews"),
        "{by_sweeper}"
    );
    let mut listed = h.settings.clone();
    listed.entra.subscription_ids = vec!["an-old-one".into()];
    let refused = setup(listed, graph(&url)).await.unwrap_err();
    assert!(refused.contains("does not name sub-1"), "{refused}");
    assert_eq!(h.idp.subscription_creates().len(), 2);

    // A rotated clientState: made again with it, the old one deleted.
    let mut rotated = h.settings.clone();
    rotated.entra.client_state = Secret::new("rotated-client-state".to_string());
    let mut words = graph(&url);
    words.push("--rotate".into());
    let fifth = setup(rotated, words).await.expect("set up");
    assert!(
        fifth.contains("made subscription again: sub-3 to users"),
        "{fifth}"
    );
    assert!(fifth.contains("deleted subscription sub-1"), "{fifth}");

    let users: Vec<Value> = h
        .idp
        .subscriptions()
        .into_iter()
        .filter(|s| s["notificationUrl"] == url.as_str() && s["resource"] == "users")
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["clientState"], "rotated-client-state");
    assert!(h.idp.subscriptions().iter().any(|s| s["id"] == "theirs"));

    // Back to the relay's own clientState, and Graph notifies through what it holds.
    let mut words = graph(&url);
    words.push("--rotate".into());
    setup(h.settings.clone(), words).await.expect("set up");
    h.idp.set_graph_user(
        "graph-user-1",
        "graphed@example.com",
        true,
        "Graph User",
        None,
    );
    let answers = h.idp.notify_user_changed(&url, "graph-user-1").await;
    assert_eq!(answers, [202], "one subscription delivers here");
    h.settle().await;
    assert!(h.tenant.user("graphed@example.com").await.is_some());
    h.finish().await;
}
