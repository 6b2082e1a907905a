//! Convergence under chaos on AWS: the chaos run's script (see `scim_relay_tests::chaos`)
//! through the Lambda handlers on moto — SQS FIFO, DynamoDB — with two event-source pollers at
//! once and worker invocations lost mid-batch, the target (scim2-server behind the proxy)
//! failing a fifth of all calls. Then every user on the target must match the directory, no
//! user may have been created twice, every delivered trigger must be applied or dead-lettered,
//! and every AWS call each function made must be granted by the template.
//!
//! Fewer users than the standalone run: every retry on SQS waits at least a second.
//! `RELAY_CHAOS_AWS_USERS` sets the size, `RELAY_CHAOS_SEED` replays a run.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use scim_relay_core::sweeper::FeedOutcome;
use scim_relay_tests::chaos::{
    chaos_settings, differing_on, env_number, ChaosDirectory, ChaosScript, Person, ENG, STAFF,
};
use scim_relay_tests::deployment::{okta_tenant, Backend, Deployment, OKTA_SECRET};
use scim_relay_tests::payloads::okta_delivery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_on_aws_every_user_converges_and_every_trigger_is_accounted_for() {
    let users = env_number("RELAY_CHAOS_AWS_USERS", 30) as usize;
    let seed = env_number("RELAY_CHAOS_SEED", 20_261_202);
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let d = Deployment::options(Backend::Aws)
        .patient()
        .start(chaos_settings)
        .await;
    let aws = d.aws();
    let mut dir = ChaosDirectory::new(d.idp.clone(), users);
    let script = ChaosScript::generate(&mut dir, users * 3, seed, &mut rng);
    let deliveries = script.deliveries();
    let rounds = script.rounds.len();
    let crashes = [rounds / 3, rounds * 2 / 3];
    let mut crashed = 0;

    d.target.chaos(0.20, seed, Duration::from_millis(1500));
    let mut delivered: HashSet<(String, usize)> = HashSet::new();
    let post = |uuid: String, event: &'static str, i: usize| {
        let body = okta_delivery(&uuid, event, &Person::id(i), &Person::email(i));
        let d = &d;
        async move { d.post_okta(&body, OKTA_SECRET).await.0 }
    };
    for (n, (changed, round)) in script.rounds.into_iter().enumerate() {
        for i in changed {
            dir.apply(i);
        }
        for (uuid, event, i) in round {
            assert_eq!(post(uuid.clone(), event, i).await, 200, "round {n}");
            delivered.insert((uuid, i));
        }
        if crashes.contains(&n) {
            crashed += aws.crash_mid_batch().await;
        }
        // Some work between rounds, so later deliveries meet earlier ones half worked.
        aws.drain_with_two_pollers(Duration::from_millis(300)).await;
    }
    const DRAIN: Duration = Duration::from_secs(600);
    assert!(
        aws.drain_with_two_pollers(DRAIN).await,
        "the queue drains under chaos"
    );

    // Through the event path alone, every user none of whose events was lost is right already.
    let wrong = differing_on(&d.target, &dir.people, |i| !script.lost.contains(&i)).await;
    assert!(
        wrong.is_empty(),
        "{} users differ before any reconciliation: {wrong:#?}",
        wrong.len()
    );

    // Redeliveries long after the fact: recognised, no SCIM call.
    let calls_before = d.target.calls().len();
    for (uuid, event, i) in script.late.iter().cloned() {
        assert_eq!(post(uuid, event, i).await, 200);
    }
    assert!(aws.drain_with_two_pollers(DRAIN).await);
    assert_eq!(
        d.target.calls().len(),
        calls_before,
        "a redelivered event makes no SCIM call: {:?}",
        &d.target.calls()[calls_before..]
    );

    // Reconciliation catches what was dropped.
    let report = d.sweep().await;
    assert!(
        report
            .reconciliation
            .iter()
            .all(|f| matches!(f.outcome, FeedOutcome::Enqueued { .. })),
        "{report:?}"
    );
    assert!(
        aws.drain_with_two_pollers(DRAIN).await,
        "the catch-up drains"
    );
    let (injected, injected_writes) = d.target.calm();

    // 1. Every user on the target is what the directory says.
    let wrong = differing_on(&d.target, &dir.people, |_| true).await;
    assert!(wrong.is_empty(), "{} users differ: {wrong:#?}", wrong.len());
    for group in [STAFF, ENG] {
        assert_eq!(
            d.target.groups_named(group).await,
            1,
            "one SCIM group {group}"
        );
    }

    // 2. Nobody was created twice.
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    for name in d.target.created() {
        *creates.entry(name).or_default() += 1;
    }
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "POSTed more than once: {twice:?}");

    // 3. Every delivered trigger was applied (its dedupe record exists); every fault injected
    //    is transient, so nothing may end in the dead letters.
    let dead = d.dead_letters().await;
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    let tenant = okta_tenant(&d.idp);
    let mut unaccounted = Vec::new();
    for (uuid, i) in &delivered {
        let key = format!("okta:{tenant}:{uuid}:{}", Person::id(*i));
        if !d.event_seen(&key).await {
            unaccounted.push(key);
        }
    }
    assert!(
        unaccounted.is_empty(),
        "triggers neither applied nor dead-lettered: {unaccounted:?}"
    );

    let calls = d.target.calls();
    let figures = serde_json::json!({
        "seed": seed, "users": users, "changes": script.real_changes,
        "deliveries": deliveries, "late_redeliveries": script.late.len(),
        "distinct_triggers": delivered.len(), "dropped": script.dropped,
        "messages_in_crashed_batches": crashed, "scim_calls": calls.len(),
        "injected_failures": injected, "injected_write_failures": injected_writes,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("aws chaos figures: {figures}");
    d.finish().await;
}
