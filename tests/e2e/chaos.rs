//! Convergence under chaos, end to end on the standalone relay: a generated Okta directory and a
//! random script of changes (create, profile update, suspend, deactivate, reactivate, delete,
//! group joins and leaves); deliveries duplicated, reordered and dropped; the SCIM target
//! (scim2-server behind the proxy) failing a fifth of all calls with 429, 503, lost responses and
//! timeouts; two relays on one database, one of them killed mid-work several times. Then every
//! user on the target must match the directory, no user may have been created twice, and every
//! delivered trigger must be applied or dead-lettered with a reason.
//!
//! CI runs a small directory; the full size is
//! `RELAY_CHAOS_USERS=1000 ./scripts/test.sh -p scim-relay-tests --features servers --test e2e chaos -- --nocapture`
//! (`RELAY_CHAOS_SEED` replays a run).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scim_relay_core::config::{host_of, Settings};
use scim_relay_core::state::StateStore;
use scim_relay_tests::chaos::{
    chaos_settings, differing_on, env_number, ChaosDirectory, ChaosScript, Person, ENG, STAFF,
};
use scim_relay_tests::scim::{ScimProxy, ScimTenant};
use scim_relay_tests::target::Target;

use super::*;

fn standalone_chaos_settings(
    idp: &IdpFixture,
    proxy: &ScimProxy,
    tenant: &ScimTenant,
    db: &std::path::Path,
) -> Settings {
    let mut s = settings(idp, &proxy.url, &tenant.token, TargetProfile::Generic, db);
    chaos_settings(&mut s);
    s.queue.workers = 2;
    s
}

fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 60,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(400),
        idle_poll: Duration::from_millis(20),
        credential_pause: Duration::from_millis(50),
        // Shorter than some messages' work here (1 s target timeouts, several calls): the
        // claims must be renewed, or a second worker would take a user mid-work.
        lease: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn under_chaos_every_user_converges_and_every_trigger_is_accounted_for() {
    let users = env_number("RELAY_CHAOS_USERS", 120) as usize;
    let seed = env_number("RELAY_CHAOS_SEED", 20_261_129);
    // Paced: each round is applied before the next arrives, so no change coalesces with the
    // next and the writes-per-change figure shows the planner's own economy.
    let paced = env_number("RELAY_CHAOS_PACED", 0) == 1;
    let steps = users * 3;
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    // The harness's own relay makes way for two configured for the run.
    let Harness {
        idp,
        tenant,
        proxy,
        relay,
        db_path,
        ..
    } = harness(TargetProfile::Generic).await;
    relay.stop().await;
    let mut dir = ChaosDirectory::new(idp.clone(), users);
    let ChaosScript {
        rounds,
        real_changes,
        dropped,
        late,
        lost,
    } = ChaosScript::generate(&mut dir, steps, seed, &mut rng);
    let deliveries: usize = rounds.iter().map(|(_, d)| d.len()).sum();

    // Two relays on one database, the target failing a fifth of all calls.
    proxy.chaos(0.20, seed, Duration::from_millis(1500));
    let settings = standalone_chaos_settings(&idp, &proxy, &tenant, &db_path);
    let clock: Arc<dyn scim_relay_core::clock::Clock> =
        Arc::new(scim_relay_core::clock::SystemClock);
    let start = || scim_relay_server::start_with_clock(settings.clone(), patient(), clock.clone());
    let mut a = Some(start().await.expect("relay A starts"));
    let b = start().await.expect("relay B starts");
    let mut counts = Vec::new();
    let http = reqwest::Client::new();
    let kills = [rounds.len() / 4, rounds.len() / 2, rounds.len() * 3 / 4];
    let mut delivered: HashSet<(String, usize)> = HashSet::new();
    let post = |to: std::net::SocketAddr, uuid: String, event: &'static str, i: usize| {
        let http = http.clone();
        async move {
            let body = okta_delivery(&uuid, event, &Person::id(i), &Person::email(i));
            http.post(format!("http://{to}/okta"))
                .header("Authorization", OKTA_SECRET)
                .json(&body)
                .send()
                .await
                .expect("relay reachable")
                .status()
        }
    };
    for (n, (changed, round)) in rounds.into_iter().enumerate() {
        if kills.contains(&n) {
            // Killed mid-work: whatever it had claimed comes back when the lease runs out.
            if let Some(relay) = a.take() {
                counts.push(relay.worker_counts());
                relay.kill().await;
            }
            a = Some(start().await.expect("relay A restarts"));
        }
        for i in changed {
            dir.apply(i);
        }
        for (uuid, event, i) in round {
            let to = match (&a, rng.bool()) {
                (Some(relay), true) => relay.addr,
                _ => b.addr,
            };
            assert_eq!(post(to, uuid.clone(), event, i).await, 200, "round {n}");
            delivered.insert((uuid, i));
        }
        if paced {
            assert!(
                b.wait_idle(Duration::from_secs(600)).await,
                "round {n} drains"
            );
        }
    }
    const DRAIN: Duration = Duration::from_secs(600);
    assert!(b.wait_idle(DRAIN).await, "the queue drains under chaos");

    // Through the event path alone, every user none of whose events was lost is right already.
    let target = Target::Scim {
        tenant,
        proxy: proxy.clone(),
    };
    let wrong = differing_on(&target, &dir.people, |i| !lost.contains(&i)).await;
    assert!(
        wrong.is_empty(),
        "{} users differ before any reconciliation: {wrong:#?}",
        wrong.len()
    );

    // Redeliveries long after the fact (Okta retries, replays): recognised, no SCIM call.
    let calls_before = proxy.calls().len();
    for (uuid, event, i) in late.iter().cloned() {
        assert_eq!(post(b.addr, uuid, event, i).await, 200);
    }
    assert!(b.wait_idle(DRAIN).await, "the redeliveries drain");
    assert_eq!(
        proxy.calls().len(),
        calls_before,
        "a redelivered event makes no SCIM call: {:?}",
        &proxy.calls()[calls_before..]
    );

    // Reconciliation catches what was dropped (changed users, membership changes and
    // deletions from the System Log, and users no longer listed).
    let report = b.sweep().await;
    assert!(
        report.reconciliation.iter().all(|f| matches!(
            f.outcome,
            scim_relay_core::sweeper::FeedOutcome::Enqueued { .. }
        )),
        "{report:?}"
    );
    assert!(b.wait_idle(DRAIN).await, "the catch-up drains");
    let (injected, injected_writes) = proxy.calm();
    let a = a.expect("relay A");
    counts.push(a.worker_counts());
    counts.push(b.worker_counts());

    // 1. Every user on the target is what the directory says.
    let wrong = differing_on(&target, &dir.people, |_| true).await;

    assert!(wrong.is_empty(), "{} users differ: {wrong:#?}", wrong.len());
    for group in [STAFF, ENG] {
        assert_eq!(
            target.groups_named(group).await,
            1,
            "one SCIM group {group}"
        );
    }

    // 2. Nobody was created twice.
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for name in proxy.created() {
        *creates.entry(name).or_default() += 1;
    }
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "POSTed more than once: {twice:?}");

    // 3. Every delivered trigger was applied (its dedupe record exists) or dead-lettered.
    let dead = b.db.dead_letter_reasons().await.unwrap_or_default();
    let okta_tenant = host_of(&idp.url).expect("fixture host");
    let now = chrono::Utc::now();
    let mut unaccounted = 0;
    for (uuid, i) in &delivered {
        let key = format!("okta:{okta_tenant}:{uuid}:{}", Person::id(*i));
        if !b.db.event_seen(&key, now).await.unwrap_or(false) {
            unaccounted += 1;
        }
    }
    assert!(
        unaccounted <= dead.len(),
        "{unaccounted} triggers neither applied nor dead-lettered ({} dead letters: {dead:?})",
        dead.len()
    );
    // Every fault injected is transient: nothing may end in the dead letters.
    assert!(dead.is_empty(), "dead letters: {dead:?}");

    // The figures.
    let calls = proxy.calls();
    let writes = calls
        .iter()
        .filter(|(m, p)| m != "GET" && !p.contains("/Groups"))
        .count();
    let group_writes = calls
        .iter()
        .filter(|(m, p)| m != "GET" && p.contains("/Groups"))
        .count();
    let finished = counts.iter().fold((0, 0, 0, 0), |t, c| {
        (
            t.0 + c.applied,
            t.1 + c.duplicates,
            t.2 + c.dead_lettered,
            t.3 + c.retried,
        )
    });
    let figures = serde_json::json!({
        "seed": seed, "users": users, "paced": paced, "changes": real_changes,
        "deliveries": deliveries, "late_redeliveries": late.len(),
        "distinct_triggers": delivered.len(), "dropped": dropped,
        "kills": kills.len(), "scim_calls": calls.len(), "injected_failures": injected,
        "injected_write_failures": injected_writes,
        "user_writes": writes, "group_writes": group_writes,
        "user_writes_per_change": writes as f64 / real_changes.max(1) as f64,
        "user_writes_per_change_without_injected_retries":
            writes.saturating_sub(injected_writes) as f64 / real_changes.max(1) as f64,
        "worker": {"applied": finished.0, "duplicates": finished.1, "dead_lettered": finished.2, "retried": finished.3},
        "dead_letters": dead.len(), "unaccounted": unaccounted,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("chaos figures: {figures}");
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (m, p) in &calls {
        let what = p.split(['?', '/']).nth(1).unwrap_or_default();
        *by_kind.entry(format!("{m} {what}")).or_default() += 1;
    }
    println!("chaos calls by kind: {by_kind:?}");
    a.stop().await;
    b.stop().await;
    let _ = std::fs::remove_file(&db_path);
}
