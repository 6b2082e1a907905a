//! The failure table, on every backend: a target that is down, refuses the credential, rate
//! limits, refuses a request, or lost an account; what becomes of each trigger.

use std::time::Duration;

use scim_relay_tests::deployment::{Backend, Deployment, CLIENT_STATE, OKTA_SECRET};
use scim_relay_tests::idp::OKTA_TOKEN;
use scim_relay_tests::payloads::{graph_notification, okta_delivery};

pub async fn an_accepted_event_survives_a_restart_while_the_target_is_down(b: Backend) {
    let mut d = Deployment::options(b).patient().start(|_| {}).await;
    d.idp.set_okta_user(
        "00uDUR",
        "ACTIVE",
        Some("durable@example.com"),
        "Du",
        "Rable",
        None,
    );
    d.target.unavailable(true);
    let (status, _) = d
        .post_okta(
            &okta_delivery(
                "ev-dur",
                "user.lifecycle.create",
                "00uDUR",
                "durable@example.com",
            ),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        !d.drain(Duration::from_millis(1500)).await,
        "nothing can drain while the target is down"
    );
    assert!(d.target.count("GET") >= 1, "it was tried");
    assert_eq!(d.depth().await, (1, 0), "the event waits in the queue");

    // A new process (new containers) on the same queue and state, with the target back.
    d.target.unavailable(false);
    d.restart(|_| {}).await;
    d.settle().await;
    let user = d
        .target
        .user("durable@example.com")
        .await
        .expect("created after the restart");
    assert_eq!(user["active"], true);
    assert_eq!(d.target.user_count().await, 1);
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_rejected_target_credential_pauses_the_workers_and_keeps_the_messages(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uKEY",
        "ACTIVE",
        Some("key.user@example.com"),
        "Key",
        "User",
        None,
    );
    // A revoked key: the target answers 401 to every call.
    d.target.reject_credential(true);
    for n in 0..2 {
        let (status, _) = d
            .post_okta(
                &okta_delivery(
                    &format!("ev-key-{n}"),
                    "user.lifecycle.create",
                    "00uKEY",
                    "key.user@example.com",
                ),
                OKTA_SECRET,
            )
            .await;
        assert_eq!(status, 200, "ingress keeps accepting");
    }
    // Many pause periods (50 ms each) later: nothing dead-lettered, nothing dropped, though
    // a retryable failure is dead-lettered after three attempts here: a refused credential
    // is not the message's fault and costs it no attempt.
    assert!(!d.drain(Duration::from_millis(1500)).await);
    assert!(d.target.count("GET") >= 2, "probed more than once");
    assert_eq!(d.depth().await, (2, 0));
    if let Some(health) = d.health().await {
        assert_eq!(health["target_credential"], "rejected");
    }

    // The operator fixes the key: the same queue drains into the target.
    d.target.reject_credential(false);
    d.settle().await;
    assert_eq!(
        d.target.user("key.user@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(d.depth().await, (0, 0));
    if let Some(health) = d.health().await {
        assert_eq!(health["target_credential"], "accepted");
    }
    d.finish().await;
}

pub async fn the_failure_table_end_to_end(b: Backend) {
    let d = Deployment::start(b).await;
    let email = "table@example.com";
    let table = |title| {
        d.idp
            .set_okta_user("00uTABLE", "ACTIVE", Some(email), "Ta", "Ble", Some(title))
    };
    let update = |uuid| okta_delivery(uuid, "user.account.update_profile", "00uTABLE", email);
    table("v1");
    d.okta(okta_delivery(
        "ft-1",
        "user.lifecycle.create",
        "00uTABLE",
        email,
    ))
    .await;
    let first_id = d.target.id_of(email).await;

    // 429 with Datadog's X-RateLimit-Reset: the retry waits that long.
    table("v2");
    d.target.fail_next_with(
        "PATCH",
        429,
        &[
            ("X-RateLimit-Limit", "100"),
            ("X-RateLimit-Period", "60"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1"),
        ],
    );
    d.okta(update("ft-2")).await;
    assert_eq!(d.target.user(email).await.unwrap()["title"], "v2");
    let patches: Vec<_> = d
        .target
        .call_times()
        .into_iter()
        .filter(|(m, _)| m == "PATCH")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(patches.len(), 2, "one refused, one retried");
    assert!(
        patches[1].duration_since(patches[0]) >= Duration::from_millis(900),
        "the reset was honoured: {:?}",
        patches[1].duration_since(patches[0])
    );

    // 400: parked in the dead letters with the target's reason, not retried.
    table("v3");
    d.target.fail_next("PATCH", 400);
    d.okta(update("ft-3")).await;
    let reasons = d.dead_letters().await;
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].contains("400") && reasons[0].contains("injected"),
        "{reasons:?}"
    );
    assert_eq!(d.target.count("PATCH"), 3);

    // 404 on PATCH: the account vanished from the target; the user should have one, so it is
    // looked up and created again.
    d.target.delete_user_by_hand(&first_id).await;
    table("v4");
    d.okta(update("ft-4")).await;
    let again = d.target.user(email).await.expect("re-created");
    assert_eq!(again["title"], "v4");
    assert_ne!(again["id"].as_str().unwrap(), first_id);
    assert_eq!(d.target.user_count().await, 1);
    d.finish().await;
}

pub async fn an_account_created_but_not_recorded_is_still_reached_by_a_later_deletion(b: Backend) {
    let d = Deployment::options(b)
        .patient()
        .retry_after(Duration::from_secs(1))
        .start(|_| {})
        .await;
    let email = "orphan@example.com";
    d.idp
        .set_okta_user("00uORPHAN", "ACTIVE", Some(email), "Or", "Phan", None);
    // The target creates the account; the relay cannot write down that it did (it crashed,
    // or its store failed, in that window).
    d.fail_account_commits(true).await;
    let (status, _) = d
        .post_okta(
            &okta_delivery("ev-orphan-1", "user.lifecycle.create", "00uORPHAN", email),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    // One attempt (on AWS the test plays the event source mapping); its retry is a second off.
    assert!(!d.drain(Duration::from_millis(500)).await);
    let created = scim_relay_tests::eventually(Duration::from_secs(10), || async {
        d.target.user(email).await.is_some()
    })
    .await;
    assert!(created, "the target created the account");
    // Before the retry, the user is deleted in Okta (and that event is lost).
    d.idp.remove_okta_user("00uORPHAN");
    d.fail_account_commits(false).await;
    d.settle().await;
    assert_eq!(
        d.target.user(email).await.expect("account")["active"],
        false,
        "the create was written down before it was sent, so the retry found it in doubt, \
         looked the account up and switched it off"
    );
    assert_eq!(d.target.count("POST"), 1, "{:?}", d.target.calls());
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn a_rotated_queue_key_loses_nothing_signed_with_the_previous_one(b: Backend) {
    let mut d = Deployment::options(b).patient().start(|_| {}).await;
    let person = |d: &Deployment, id: &str, email: &str| {
        d.idp
            .set_okta_user(id, "ACTIVE", Some(email), "Ro", "Tated", None)
    };
    person(&d, "00uROT1", "before@example.com");
    d.target.unavailable(true);
    let delivery = |uuid, id, email| okta_delivery(uuid, "user.lifecycle.create", id, email);
    let (status, _) = d
        .post_okta(
            &delivery("rot-1", "00uROT1", "before@example.com"),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    assert!(!d.drain(Duration::from_millis(1000)).await);
    assert_eq!(d.depth().await, (1, 0), "signed with the old key, waiting");

    // The queue key is rotated: every process (every container) restarts with the new key,
    // and the old one as the previous.
    let old = d.settings.queue.signing_key.clone();
    d.target.unavailable(false);
    d.restart(|s| {
        s.queue.signing_key = scim_relay_core::secret::Secret::new("a-new-queue-signing-key");
        s.queue.previous_signing_key = old;
    })
    .await;
    person(&d, "00uROT2", "after@example.com");
    d.okta(delivery("rot-2", "00uROT2", "after@example.com"))
        .await;
    for email in ["before@example.com", "after@example.com"] {
        assert_eq!(
            d.target.user(email).await.expect("applied")["active"],
            true,
            "{email}"
        );
    }
    assert_eq!(d.depth().await, (0, 0));
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

/// A rotation reaches the inbound before a worker: the worker meets a message signed with a key
/// it does not hold yet. It waits for the key (on Lambda the container reads its secrets again
/// at once; standalone, another process restarted with it takes the message), never
/// dead-letters it for that; a message whose key never turns up is a forgery, dead-lettered.
pub async fn a_message_signed_with_a_key_not_yet_held_waits_for_it_and_a_forged_one_is_dead_lettered(
    b: Backend,
) {
    use scim_relay_core::envelope::{EnvelopeSigner, Trigger};
    use scim_relay_core::secret::Secret;
    use scim_relay_core::state::UserKey;

    let mut d = Deployment::options(b)
        .retry_after(Duration::from_millis(300))
        .start(|_| {})
        .await;
    let tenant = scim_relay_tests::deployment::okta_tenant(&d.idp);
    let signed = |key: &str, user: &str, event: &str| {
        let trigger = Trigger::for_user(
            &UserKey {
                source: scim_relay_core::envelope::Source::Okta,
                tenant: tenant.clone(),
                user_id: user.into(),
            },
            "user.lifecycle.create",
            event.into(),
            chrono::Utc::now(),
        );
        EnvelopeSigner::new(Secret::new(key)).seal(&trigger)
    };
    d.idp.set_okta_user(
        "00uNEXT",
        "ACTIVE",
        Some("next.key@example.com"),
        "Next",
        "Key",
        None,
    );
    // The inbound already signs with the next key; the workers hold only the current one.
    d.work_queue()
        .enqueue(&[signed("the-next-queue-key", "00uNEXT", "ev-next")])
        .await
        .expect("enqueued");
    assert!(!d.drain(Duration::from_millis(600)).await, "it waits");
    assert_eq!(
        d.depth().await,
        (1, 0),
        "waiting for its key, not dead-lettered"
    );
    assert!(d.target.user("next.key@example.com").await.is_none());

    let old = d.settings.queue.signing_key.clone();
    d.restart(|s| {
        s.queue.signing_key = Secret::new("the-next-queue-key");
        s.queue.previous_signing_key = old;
    })
    .await;
    d.settle().await;
    assert_eq!(
        d.target
            .user("next.key@example.com")
            .await
            .expect("applied")["active"],
        true
    );
    assert!(d.dead_letters().await.is_empty());

    // A key nobody holds: tried a few times, then dead-lettered with the reason, the user's
    // account untouched.
    d.idp.set_okta_user(
        "00uFORGED",
        "ACTIVE",
        Some("forged@example.com"),
        "For",
        "Ged",
        None,
    );
    d.work_queue()
        .enqueue(&[signed("a-key-nobody-holds", "00uFORGED", "ev-forged")])
        .await
        .expect("enqueued");
    assert!(
        d.drain(Duration::from_secs(30)).await,
        "dead-lettered in the end"
    );
    let dead = d.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].contains("does not hold") && dead[0].contains("not signed by this deployment"),
        "{dead:?}"
    );
    assert!(d.target.user("forged@example.com").await.is_none());
    d.finish().await;
}

/// The standalone deployment (its claim loop; the Lambda's queue holds refused messages for the
/// pause by design): while the target refuses the key, the workers probe it every few seconds,
/// backing off, and resume within seconds of the key being accepted again, not when a minute's
/// pause runs out.
pub async fn a_fixed_target_key_resumes_work_within_seconds_not_at_the_end_of_the_pause(
    b: Backend,
) {
    let d = Deployment::options(b)
        .credential_pause(Duration::from_secs(60))
        .patient()
        .start(|_| {})
        .await;
    d.idp.set_okta_user(
        "00uFIXED",
        "ACTIVE",
        Some("fixed.key@example.com"),
        "Fixed",
        "Key",
        None,
    );
    d.target.reject_credential(true);
    let (status, _) = d
        .post_okta(
            &okta_delivery(
                "ev-fixed",
                "user.lifecycle.create",
                "00uFIXED",
                "fixed.key@example.com",
            ),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        scim_relay_tests::eventually(Duration::from_secs(10), || async {
            d.breaker_open_at(chrono::Utc::now()).await
        })
        .await,
        "the refusal opened the breaker"
    );
    assert!(!d.drain(Duration::from_secs(2)).await, "paused");
    assert_eq!(d.depth().await, (1, 0));

    d.target.reject_credential(false);
    let fixed = std::time::Instant::now();
    assert!(
        d.drain(Duration::from_secs(10)).await,
        "resumed within 10 s of the fix, with 50 s of the pause still to run"
    );
    eprintln!(
        "credential recovery: applied {} ms after the key was accepted again",
        fixed.elapsed().as_millis()
    );
    assert_eq!(
        d.target
            .user("fixed.key@example.com")
            .await
            .expect("applied")["active"],
        true
    );
    assert!(d.dead_letters().await.is_empty());
    d.finish().await;
}

pub async fn a_refused_directory_credential_pauses_the_workers_and_dead_letters_nothing(
    b: Backend,
) {
    let mut d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uDIR",
        "ACTIVE",
        Some("dir.user@example.com"),
        "Dir",
        "User",
        None,
    );
    // The Okta API token was revoked (or rotated in Okta and not yet in the relay).
    d.restart(|s| s.okta.api_token = scim_relay_core::secret::Secret::new("a-revoked-token"))
        .await;
    let (status, _) = d
        .post_okta(
            &okta_delivery(
                "ev-dir",
                "user.lifecycle.create",
                "00uDIR",
                "dir.user@example.com",
            ),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    // Many pauses later (50 ms each here; three attempts dead-letter a retryable failure):
    // the trigger waits, costing no attempt.
    assert!(!d.drain(Duration::from_millis(1500)).await);
    assert_eq!(d.depth().await, (1, 0), "waiting, not dead-lettered");
    assert!(d.dead_letters().await.is_empty());
    if let Some(health) = d.health().await {
        assert_ne!(
            health["target_credential"], "rejected",
            "the directory's refusal is not the target's"
        );
    }

    // The token is fixed: the same queue drains.
    d.restart(|s| s.okta.api_token = scim_relay_core::secret::Secret::new(OKTA_TOKEN))
        .await;
    d.settle().await;
    assert_eq!(
        d.target.user("dir.user@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

pub async fn an_idp_outage_is_waited_out_and_dead_letters_nothing(b: Backend) {
    let d = Deployment::start(b).await;
    d.idp.set_okta_user(
        "00uOUT",
        "ACTIVE",
        Some("out.age@example.com"),
        "Out",
        "Age",
        None,
    );
    d.idp.okta_outage(true);
    let (status, _) = d
        .post_okta(
            &okta_delivery(
                "ev-out",
                "user.lifecycle.create",
                "00uOUT",
                "out.age@example.com",
            ),
            OKTA_SECRET,
        )
        .await;
    assert_eq!(status, 200);
    // Past the attempts after which a retryable failure is dead-lettered here (three): an
    // outage of the directory is not the message's fault.
    assert!(!d.drain(Duration::from_millis(2500)).await);
    assert!(d.idp.reads("okta:00uOUT") >= 2, "read again");
    assert_eq!(d.depth().await, (1, 0), "waiting, not dead-lettered");
    assert!(d.dead_letters().await.is_empty());

    d.idp.okta_outage(false);
    d.settle().await;
    assert_eq!(
        d.target.user("out.age@example.com").await.unwrap()["active"],
        true
    );
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// The IdP's rate limit is a budget, not a failure, on every backend. Okta: the relay keeps
/// to its share of the window (`okta.rate_limit_percent`, 50 %) and waits for the reset
/// before reading again; a 429 whose reset is near is slept in place, one further off hands
/// the trigger back until then. Graph: `Retry-After` honoured. Nothing is dead-lettered and
/// no read is made before the time the IdP named.
pub async fn an_idp_rate_limit_is_waited_out_and_dead_letters_nothing(b: Backend) {
    use std::time::SystemTime;
    let d = Deployment::options(b).patient().start(|_| {}).await;
    let user = |id: &str| {
        d.idp.set_okta_user(
            id,
            "ACTIVE",
            Some(&format!("{}@example.com", id.to_lowercase())),
            "Rate",
            "Limited",
            None,
        )
    };
    let read = |id: &str| format!("okta:{id}");
    let answers_of = |id: &str| -> Vec<(u16, SystemTime)> {
        d.idp
            .answered_reads()
            .into_iter()
            .filter(|(r, _, _)| *r == read(id))
            .map(|(_, status, at)| (status, at))
            .collect()
    };
    // Whole seconds, as Okta's reset is: a second and a half from now at least.
    let reset_in = |seconds: u64| {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock");
        SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 1 + seconds)
    };

    // The share: half of a window of 10 is left. The first read uses the relay's share up;
    // the second waits for the reset instead of eating into sign-in's half.
    let reset = reset_in(1);
    d.idp.okta_rate_limit(10, 6, reset);
    for id in ["00uRL1", "00uRL2"] {
        user(id);
        d.okta(okta_delivery(
            &format!("rl-{id}"),
            "user.lifecycle.create",
            id,
            "r",
        ))
        .await;
    }
    // (A sweep may read the user again afterwards: every read counts, none may come early.)
    let second = answers_of("00uRL2");
    assert!(!second.is_empty());
    assert!(
        second
            .iter()
            .all(|(status, at)| *status == 200 && *at >= reset),
        "never throttled, read only once the window reset: {second:?}"
    );

    // A 429 whose reset is beyond the worker's patience: handed back, read after it.
    let reset = reset_in(3);
    d.idp.okta_rate_limit(10, 0, reset);
    user("00uRL3");
    d.okta(okta_delivery(
        "rl-3",
        "user.lifecycle.create",
        "00uRL3",
        "r",
    ))
    .await;
    let third = answers_of("00uRL3");
    assert_eq!(third.first().map(|a| a.0), Some(429), "{third:?}");
    let (status, at) = *third.last().expect("read");
    assert_eq!(status, 200);
    assert!(at >= reset, "the trigger waited for the reset");
    assert!(
        third
            .iter()
            .filter(|(s, at)| *s == 429 && *at < reset)
            .count()
            <= 1,
        "not hammered while throttled: {third:?}"
    );
    assert_eq!(
        d.target.user("00url3@example.com").await.unwrap()["active"],
        true
    );

    // Graph: a 429 with Retry-After.
    d.idp.set_graph_user(
        "e-rl",
        "Rate.Limited@contoso.com",
        true,
        "Rate Limited",
        None,
    );
    d.idp.throttle_graph_reads(1, 1);
    d.entra(graph_notification("e-rl", CLIENT_STATE, 1)).await;
    let graph: Vec<(String, u16, SystemTime)> = d
        .idp
        .answered_reads()
        .into_iter()
        .filter(|(r, _, _)| r == "graph:e-rl")
        .collect();
    assert_eq!(graph.len(), 2, "{graph:?}");
    assert_eq!(graph[0].1, 429);
    assert!(
        graph[1].2.duration_since(graph[0].2).unwrap_or_default() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(
        d.target.user("rate.limited@contoso.com").await.unwrap()["active"],
        true
    );
    assert!(d.dead_letters().await.is_empty());
    assert_eq!(d.depth().await, (0, 0));
    d.finish().await;
}

/// A target that asks to wait (a 429 with `Retry-After`) is called by no worker until then:
/// the other users' work goes back on the queue for the rest of the wait instead of spending
/// the target's budget on refusals, and all of it is applied after; nothing dead-lettered.
pub async fn a_target_asking_to_wait_is_called_by_no_worker_until_then(b: Backend) {
    let d = Deployment::options(b)
        .patient()
        .start(|s| s.target.profile = scim_relay_core::config::TargetProfile::Generic)
        .await;
    let ids = ["00uGATE1", "00uGATE2", "00uGATE3"];
    let email = |id: &str| format!("{}@example.com", id.to_lowercase());
    let mut delivery = okta_delivery("gate-0", "user.lifecycle.create", ids[0], "x");
    let mut events = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        d.idp
            .set_okta_user(id, "ACTIVE", Some(&email(id)), "Ga", "Ted", None);
        let one = okta_delivery(&format!("gate-{n}"), "user.lifecycle.create", id, "x");
        events.push(one["data"]["events"][0].clone());
    }
    delivery["data"]["events"] = serde_json::Value::Array(events);
    // Whichever look-up comes first is refused with a wait of two seconds.
    d.target.fail_next_with("GET", 429, &[("Retry-After", "2")]);
    d.okta(delivery).await;

    for id in ids {
        assert_eq!(
            d.target.user(&email(id)).await.expect("created")["active"],
            true,
            "{id}"
        );
    }
    assert_eq!(d.depth().await, (0, 0), "nothing dead-lettered");
    let calls = d.target.call_times();
    let (_, refused_at) = calls
        .iter()
        .find(|(method, _)| method == "GET")
        .cloned()
        .expect("a look-up");
    // Without the gate the two other users' look-ups and creates follow within milliseconds
    // (four calls). With it, only a look-up already on its way when the refusal came may
    // land inside the wait (one a user at most); nothing else until it is over.
    let inside: Vec<(String, u128)> = calls
        .iter()
        .filter(|(_, at)| *at > refused_at && *at < refused_at + Duration::from_millis(1900))
        .map(|(method, at)| (method.clone(), (*at - refused_at).as_millis()))
        .collect();
    assert!(
        inside.len() <= 2 && inside.iter().all(|(method, _)| method == "GET"),
        "called while asked to wait (method, ms after the refusal): {inside:?}"
    );
    d.finish().await;
}
