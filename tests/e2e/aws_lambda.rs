//! The AWS path end to end on moto_server: the inbound Lambda handler with built API Gateway
//! events puts signed messages on SQS FIFO; the worker Lambda handler takes them as an SQS event,
//! converges scim2-server and records state in DynamoDB.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use lambda_runtime::{Context, LambdaEvent};
use scim_relay_core::aws::dynamodb_store::DynamoStateStore;
use scim_relay_core::aws::sqs_queue::SqsQueue;
use scim_relay_core::breaker::CredentialBreaker;
use scim_relay_core::clock::SystemClock;
use scim_relay_core::config::Settings;
use scim_relay_core::consumer::ConsumerPolicy;
use scim_relay_core::envelope::Source;
use scim_relay_core::ingress::Ingress;
use scim_relay_core::secret::Secret;
use scim_relay_core::state::{ProcessedEvent, StateStore, StoreError, UserKey, UserState};
use scim_relay_tests::aws::{create_fifo_queues, create_table, moto_config, unique, FifoQueues};
use scim_relay_tests::aws_relay::call_inbound;
use scim_relay_tests::deployment::{base_settings, CLIENT_STATE, OKTA_SECRET};
use scim_relay_tests::idp::IdpFixture;
use scim_relay_tests::payloads::{apigw_v2_event, graph_notification, okta_delivery};
use scim_relay_tests::scim::{ScimProxy, ScimTenant};
use scim_relay_worker::WorkerLambda;
use serde_json::Value;

struct Aws {
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    ddb: aws_sdk_dynamodb::Client,
    queues: FifoQueues,
    table: String,
}

async fn aws() -> Aws {
    let sdk = moto_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let queues = create_fifo_queues(&sqs, &unique("relay")).await;
    let table = unique("relay-state");
    create_table(&ddb, &table).await;
    Aws {
        sdk,
        sqs,
        ddb,
        queues,
        table,
    }
}

/// Everything a Lambda test runs against: moto queues and table, the IdP fixture, a fresh
/// scim2-server tenant behind the counting proxy, and settings that point at all of them.
struct World {
    aws: Aws,
    idp: IdpFixture,
    tenant: ScimTenant,
    proxy: ScimProxy,
    settings: Settings,
}

async fn world() -> World {
    let aws = aws().await;
    let idp = IdpFixture::start().await;
    let tenant = ScimTenant::fresh();
    let proxy = ScimProxy::start(&tenant).await;
    let settings = settings(&aws, &idp, &proxy, &tenant);
    World {
        aws,
        idp,
        tenant,
        proxy,
        settings,
    }
}

/// The suite's settings, pointed at this test's queues and table.
fn settings(aws: &Aws, idp: &IdpFixture, target: &ScimProxy, tenant: &ScimTenant) -> Settings {
    let mut s = base_settings(idp, &target.url, &tenant.token);
    s.queue.url = Some(aws.queues.url.clone());
    s.queue.dlq_url = Some(aws.queues.dlq_url.clone());
    s.store.table = Some(aws.table.clone());
    s
}

fn ingress(aws: &Aws, settings: &Settings) -> Ingress {
    let url = settings.queue.url.clone().expect("queue.url is set");
    let queue = SqsQueue::new(aws.sqs.clone(), url);
    Ingress::from_settings(settings, Arc::new(queue), Arc::new(SystemClock))
}

fn worker_lambda(aws: &Aws, settings: &Settings) -> WorkerLambda {
    scim_relay_worker::from_settings(settings, &aws.sdk).expect("worker builds")
}

fn okta_event(body: &Value, secret: &str) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    apigw_v2_event(
        "POST",
        "/okta",
        "",
        &[
            ("Authorization", secret),
            ("Content-Type", "application/json"),
        ],
        Some(&bytes),
        true,
    )
}

/// Posts one Okta delivery through the inbound handler (expecting 200) and receives the one
/// message it queued.
async fn deliver_okta(
    aws: &Aws,
    settings: &Settings,
    delivery: &Value,
) -> Vec<aws_sdk_sqs::types::Message> {
    let (status, body) =
        call_inbound(&ingress(aws, settings), okta_event(delivery, OKTA_SECRET)).await;
    assert_eq!(status, 200, "{body}");
    let messages = receive(&aws.sqs, &aws.queues.url).await;
    assert_eq!(messages.len(), 1);
    messages
}

/// Receives what is on a queue, as the Lambda poller would (FIFO attributes included).
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// Deletes received messages from the work queue, as the event source mapping does after a
/// successful batch.
async fn delete_all(aws: &Aws, messages: &[aws_sdk_sqs::types::Message]) {
    for m in messages {
        aws.sqs
            .delete_message()
            .queue_url(&aws.queues.url)
            .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
            .send()
            .await
            .expect("delete message");
    }
}

fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> LambdaEvent<SqsEvent> {
    LambdaEvent::new(
        scim_relay_tests::aws_relay::sqs_event(messages),
        Context::default(),
    )
}

async fn state_item(
    aws: &Aws,
    pk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    aws.ddb
        .get_item()
        .table_name(&aws.table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("STATE".into()),
        )
        .send()
        .await
        .expect("get item")
        .item
}

#[tokio::test]
async fn okta_delivery_flows_through_sqs_fifo_worker_and_dynamodb() {
    let World {
        aws,
        idp,
        tenant,
        proxy,
        settings,
    } = world().await;
    idp.set_okta_user(
        "00uLAMBDA",
        "ACTIVE",
        Some("lambda.user@example.com"),
        "Lam",
        "Bda",
        Some("SRE"),
    );

    // Inbound: base64 body from API Gateway, verified and enqueued.
    let delivery = okta_delivery(
        "ev-lambda-1",
        "user.lifecycle.create",
        "00uLAMBDA",
        "lambda.user@example.com",
    );
    let (status, body) = call_inbound(
        &ingress(&aws, &settings),
        okta_event(&delivery, OKTA_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let messages = receive(&aws.sqs, &aws.queues.url).await;
    assert_eq!(messages.len(), 1);
    let group = messages[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned()
        .unwrap_or_default();
    assert_eq!(group, format!("okta/{}/00uLAMBDA", settings.okta_tenant()));

    // Worker: the SQS event applies the user and records state.
    let lambda = worker_lambda(&aws, &settings);
    let resp = scim_relay_worker::handle(&lambda, sqs_event(&messages))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    let user = tenant
        .user("lambda.user@example.com")
        .await
        .expect("created on the target");
    assert_eq!(user["title"], "SRE");
    let pk = format!("USER#okta#{}#00uLAMBDA", settings.okta_tenant());
    let item = state_item(&aws, &pk)
        .await
        .expect("state recorded in DynamoDB");
    // Version 1 was the create written ahead, version 2 the account recorded.
    assert_eq!(item["version"].as_n().unwrap(), "2");
    assert_eq!(
        item["scim_id"].as_s().unwrap(),
        user["id"].as_str().unwrap()
    );
    assert!(
        item.contains_key("invite_expires_at"),
        "Datadog invitations are tracked"
    );

    // The same message delivered again (SQS is at-least-once): no SCIM call.
    let calls = proxy.calls().len();
    let resp = scim_relay_worker::handle(&lambda, sqs_event(&messages))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(proxy.calls().len(), calls);

    // A redelivery by Okta within five minutes is dropped by FIFO deduplication.
    let (status, _) = call_inbound(
        &ingress(&aws, &settings),
        okta_event(&delivery, OKTA_SECRET),
    )
    .await;
    assert_eq!(status, 200);
    delete_all(&aws, &messages[..1]).await;
    assert!(receive(&aws.sqs, &aws.queues.url).await.is_empty());

    // Deactivation through the same path updates the version.
    idp.set_okta_user(
        "00uLAMBDA",
        "SUSPENDED",
        Some("lambda.user@example.com"),
        "Lam",
        "Bda",
        Some("SRE"),
    );
    let d = okta_delivery(
        "ev-lambda-2",
        "user.lifecycle.suspend",
        "00uLAMBDA",
        "lambda.user@example.com",
    );
    let messages = deliver_okta(&aws, &settings, &d).await;
    assert!(scim_relay_worker::handle(&lambda, sqs_event(&messages))
        .await
        .unwrap()
        .batch_item_failures
        .is_empty());
    assert_eq!(
        tenant.user("lambda.user@example.com").await.unwrap()["active"],
        false
    );
    assert_eq!(
        state_item(&aws, &pk).await.unwrap()["version"]
            .as_n()
            .unwrap(),
        "3",
        "one version more than the create's"
    );
}

#[tokio::test]
async fn an_enqueue_failure_is_a_503_so_the_idp_retries() {
    let World {
        aws, mut settings, ..
    } = world().await;
    settings.queue.url = Some(format!(
        "{}-missing",
        aws.queues.url.trim_end_matches(".fifo")
    ));
    let delivery = okta_delivery("ev-503", "user.lifecycle.create", "00u503", "x@example.com");
    let (status, _) = call_inbound(
        &ingress(&aws, &settings),
        okta_event(&delivery, OKTA_SECRET),
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn a_message_that_fails_verification_goes_to_the_dlq_with_its_reason() {
    let World {
        aws,
        idp,
        proxy,
        settings,
        ..
    } = world().await;
    // Someone with queue access but without the signing key.
    aws.sqs
        .send_message()
        .queue_url(&aws.queues.url)
        .message_group_id("okta/x/00uEVIL")
        .message_deduplication_id("evil-1")
        .message_body(r#"{"v":1,"sig":"00","trigger":"{\"v\":1}"}"#)
        .send()
        .await
        .unwrap();
    let messages = receive(&aws.sqs, &aws.queues.url).await;
    let resp = scim_relay_worker::handle(&worker_lambda(&aws, &settings), sqs_event(&messages))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty(), "parked, not retried");
    let dead = receive(&aws.sqs, &aws.queues.dlq_url).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .message_attributes
        .as_ref()
        .and_then(|a| a.get("reason"))
        .and_then(|r| r.string_value.clone())
        .unwrap_or_default();
    assert!(reason.contains("signature"), "{reason}");
    assert!(proxy.calls().is_empty());
    assert_eq!(idp.total_reads(), 0);
    // The batch's report never reached SQS here (as when an invocation is cut short): the
    // dead-lettered record was deleted from the work queue as it was parked, so it does not
    // come back once its visibility (2 s) runs out, to be dead-lettered twice.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert!(
        receive(&aws.sqs, &aws.queues.url).await.is_empty(),
        "one dead letter per message"
    );
    assert!(receive(&aws.sqs, &aws.queues.dlq_url).await.is_empty());
}

/// A retryable failure holds back the rest of its user's records in the batch (a user's later
/// event never overtakes an earlier one), and only those.
#[tokio::test]
async fn a_retryable_failure_holds_back_the_rest_of_its_users_records() {
    let World {
        aws,
        idp,
        tenant,
        mut settings,
        ..
    } = world().await;
    let ingress = ingress(&aws, &settings);
    idp.set_graph_user(
        "g-user-1",
        "graph.user@contoso.com",
        true,
        "Graph User",
        None,
    );
    idp.set_okta_user(
        "00uLATER",
        "ACTIVE",
        Some("later@example.com"),
        "La",
        "Ter",
        None,
    );
    let graph_change = |n: u64| {
        let body = serde_json::to_vec(&graph_notification("g-user-1", CLIENT_STATE, n)).unwrap();
        let ingress = &ingress;
        async move {
            let event = apigw_v2_event("POST", "/entra", "", &[], Some(&body), false);
            assert_eq!(call_inbound(ingress, event).await.0, 202);
        }
    };
    graph_change(9).await;
    let okta = okta_delivery(
        "ev-later",
        "user.lifecycle.create",
        "00uLATER",
        "later@example.com",
    );
    assert_eq!(
        call_inbound(&ingress, okta_event(&okta, OKTA_SECRET))
            .await
            .0,
        200
    );
    // A second change of the Graph user, after the Okta user's.
    graph_change(10).await;
    let mut messages = receive(&aws.sqs, &aws.queues.url).await;
    for _ in 0..3 {
        if messages.len() < 3 {
            messages.extend(receive(&aws.sqs, &aws.queues.url).await);
        }
    }
    assert_eq!(messages.len(), 3);

    // The worker's Graph credential is wrong: the Graph message is retryable.
    settings.entra.client_secret = Secret::new("rotated-away");
    let resp = scim_relay_worker::handle(&worker_lambda(&aws, &settings), sqs_event(&messages))
        .await
        .unwrap();
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let graph_ids: Vec<_> = messages
        .iter()
        .filter(|m| m.body.as_deref().unwrap_or_default().contains("g-user-1"))
        .map(|m| m.message_id.clone().unwrap())
        .collect();
    assert_eq!(graph_ids.len(), 2);
    assert_eq!(
        failed, graph_ids,
        "the failed record and its user's later one are reported, in order"
    );
    assert!(tenant.user("graph.user@contoso.com").await.is_none());
    assert!(
        tenant.user("later@example.com").await.is_some(),
        "another user's record in between is applied"
    );
}

/// The target's wait is everyone's: it rate-limits the first user's create, so that record
/// goes back to the queue for the target's reset, and another user's record later in the same
/// batch goes back for the rest of the wait without being sent (it would only be refused, and
/// spend the target's budget). A failure that is not the target asking to wait holds back only
/// its own user's records (`a_retryable_failure_holds_back_the_rest_of_its_users_records`).
#[tokio::test]
async fn the_targets_wait_holds_back_the_batch_without_calling_it_again() {
    let World {
        aws,
        idp,
        tenant,
        proxy,
        settings,
    } = world().await;
    let ingress = ingress(&aws, &settings);
    for (id, email) in [
        ("00uWAITS", "waits@example.com"),
        ("00uALSO", "also@example.com"),
    ] {
        idp.set_okta_user(id, "ACTIVE", Some(email), "Wa", "It", None);
        let delivery = okta_delivery(&format!("ev-{id}"), "user.lifecycle.create", id, email);
        assert_eq!(
            call_inbound(&ingress, okta_event(&delivery, OKTA_SECRET))
                .await
                .0,
            200
        );
    }
    let mut messages = receive(&aws.sqs, &aws.queues.url).await;
    if messages.len() < 2 {
        messages.extend(receive(&aws.sqs, &aws.queues.url).await);
    }
    assert_eq!(messages.len(), 2);
    // The refused user's record first in the batch.
    messages.sort_by_key(|m| !m.body.as_deref().unwrap_or_default().contains("00uWAITS"));
    proxy.fail_next_with("POST", 429, &[("X-RateLimit-Reset", "30")]);
    let resp = scim_relay_worker::handle(&worker_lambda(&aws, &settings), sqs_event(&messages))
        .await
        .unwrap();
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.message_id.clone().unwrap())
        .collect();
    assert_eq!(failed, ids, "both records go back");
    assert_eq!(proxy.count("POST"), 1, "the second create is never sent");
    assert!(tenant.user("waits@example.com").await.is_none());
    assert!(tenant.user("also@example.com").await.is_none());
}

#[tokio::test]
async fn dynamodb_state_writes_are_conditional_on_the_version() {
    let aws = aws().await;
    let store = DynamoStateStore::new(aws.ddb.clone(), aws.table.clone());
    let key = UserKey {
        source: Source::Okta,
        tenant: "example.okta.com".into(),
        user_id: "00uRACE".into(),
    };
    let state = |version| UserState {
        scim_id: Some("scim-1".into()),
        user_name: "race@example.com".into(),
        active: true,
        lifecycle: "ACTIVE".into(),
        version,
        updated_at: chrono::Utc::now(),
        ..Default::default()
    };
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let event = |k: &str| ProcessedEvent {
        key: k.into(),
        expires_at: later,
    };
    assert_eq!(store.load_user(&key).await.unwrap(), None);
    store
        .commit(&key, Some(&state(1)), None, &event("e1"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit(&key, Some(&state(1)), None, &event("e2"))
            .await,
        Err(StoreError::Conflict)
    ));
    store
        .commit(&key, Some(&state(2)), Some(1), &event("e3"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit(&key, Some(&state(2)), Some(1), &event("e4"))
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.load_user(&key).await.unwrap().unwrap().version, 2);
    let now = chrono::Utc::now();
    assert!(store.event_seen("e1", now).await.unwrap());
    assert!(store.event_seen("e3", now).await.unwrap());
    assert!(
        !store.event_seen("e2", now).await.unwrap(),
        "a lost write records no event"
    );
    assert!(!store.event_seen("e4", now).await.unwrap());
    assert!(
        !store
            .event_seen("e1", later + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        "expiry is decided from the stored time"
    );
    // An event-only commit (nothing to change on the user).
    store
        .commit(&key, None, Some(2), &event("e5"))
        .await
        .unwrap();
    assert!(store.event_seen("e5", now).await.unwrap());

    // One account, one owner: another user's record cannot claim `scim-1`, and the failed
    // write leaves nothing behind.
    let twin = UserKey {
        user_id: "00uTWIN".into(),
        ..key.clone()
    };
    assert_eq!(store.claimant("scim-1").await.unwrap(), Some(key.clone()));
    match store
        .commit(&twin, Some(&state(1)), None, &event("e6"))
        .await
    {
        Err(StoreError::Claimed { scim_id, owner }) => {
            assert_eq!((scim_id.as_str(), owner), ("scim-1", key.storage_id()))
        }
        other => panic!("expected a claim conflict, got {other:?}"),
    }
    assert_eq!(store.load_user(&twin).await.unwrap(), None);
    assert!(!store.event_seen("e6", now).await.unwrap());
    // Only the owner gives a claim up (a claim written ahead of a write that failed).
    store.release_claim("scim-1", &twin).await.unwrap();
    assert_eq!(store.claimant("scim-1").await.unwrap(), Some(key.clone()));
    store.release_claim("scim-1", &key).await.unwrap();
    assert_eq!(store.claimant("scim-1").await.unwrap(), None);
    store
        .commit(&key, Some(&state(3)), Some(2), &event("e6b"))
        .await
        .expect("the owner's next write claims it again");
    assert_eq!(store.claimant("scim-1").await.unwrap(), Some(key.clone()));

    // What the sweeper reads: the names of recorded users (events and cursors are not users),
    // pending invitations through the index, and cursors.
    use scim_relay_core::state::{InviteOutcome, InviteState, SweepStore};
    let invited = UserKey {
        user_id: "00uINVITED".into(),
        ..key.clone()
    };
    let mut pending = state(1);
    pending.scim_id = Some("scim-invited".into());
    pending.user_name = "Invited@Example.com".into();
    pending.invite = Some(InviteState {
        sent_at: now,
        expires_at: now - chrono::Duration::minutes(1),
        count: 1,
        outcome: None,
    });
    store
        .commit(&invited, Some(&pending), None, &event("e7"))
        .await
        .unwrap();
    store.save_cursor("reconcile/okta/x", "c1").await.unwrap();
    let names = store.known_user_names().await.unwrap();
    assert_eq!(
        names,
        ["race@example.com", "invited@example.com"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let mut active = store
        .active_user_ids(Source::Okta, "example.okta.com")
        .await
        .unwrap();
    active.sort();
    assert_eq!(active, ["00uINVITED", "00uRACE"]);
    assert!(store
        .active_user_ids(Source::Entra, "example.okta.com")
        .await
        .unwrap()
        .is_empty());
    let due = store.invites_due(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].0, invited, "the key comes back from the index item");
    assert!(store
        .invites_due(now - chrono::Duration::hours(1), 10)
        .await
        .unwrap()
        .is_empty());
    let mut accepted = pending.clone();
    accepted.version = 2;
    accepted.invite.as_mut().unwrap().outcome = Some(InviteOutcome::Accepted { at: now });
    store
        .commit(&invited, Some(&accepted), Some(1), &event("e7"))
        .await
        .unwrap();
    assert!(
        store.invites_due(now, 10).await.unwrap().is_empty(),
        "an accepted invitation leaves the index"
    );
    assert_eq!(
        store
            .load_cursor("reconcile/okta/x")
            .await
            .unwrap()
            .as_deref(),
        Some("c1")
    );
}

#[tokio::test]
async fn two_workers_racing_on_one_user_leave_one_account_and_one_state() {
    use scim_relay_core::envelope::{EnvelopeSigner, Subject, Trigger, ENVELOPE_VERSION};

    let World {
        aws,
        idp,
        tenant,
        proxy,
        settings,
    } = world().await;
    idp.set_okta_user(
        "00uRACER",
        "ACTIVE",
        Some("racer@example.com"),
        "Ra",
        "Cer",
        Some("Runner"),
    );

    // Two different events about the same user, worked at the same time by two workers (as if
    // something had slipped past FIFO's one-writer-per-user).
    let signer = EnvelopeSigner::new(settings.queue.signing_key.clone());
    let trigger = |event_id: &str, event_type: &str| Trigger {
        v: ENVELOPE_VERSION,
        source: Source::Okta,
        tenant: settings.okta_tenant(),
        subject: Subject::User {
            user_id: "00uRACER".into(),
        },
        event_id: event_id.into(),
        event_type: event_type.into(),
        published: None,
        received: chrono::Utc::now(),
        hint: None,
        listed: None,
    };
    let first = signer.seal(&trigger("race-1", "user.lifecycle.create"));
    let second = signer.seal(&trigger("race-2", "user.lifecycle.activate"));
    let one = worker_lambda(&aws, &settings);
    let two = worker_lambda(&aws, &settings);
    let (a, b) = tokio::join!(
        one.consumer.worker().process(&first.body),
        two.consumer.worker().process(&second.body)
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");

    eprintln!("SCIM calls of the race: {:?}", proxy.calls());
    assert_eq!(
        tenant.user_count().await,
        1,
        "created once: {:?}",
        proxy.calls()
    );
    let user = tenant.user("racer@example.com").await.unwrap();
    assert_eq!(user["active"], true);
    let pk = format!("USER#okta#{}#00uRACER", settings.okta_tenant());
    let item = state_item(&aws, &pk).await.expect("one state record");
    assert_eq!(
        item["scim_id"].as_s().unwrap(),
        user["id"].as_str().unwrap()
    );
    let store = DynamoStateStore::new(aws.ddb.clone(), aws.table.clone());
    let now = chrono::Utc::now();
    for event in [&first, &second] {
        let trigger = signer.open(&event.body).unwrap();
        assert!(
            store.event_seen(&trigger.dedupe_key(), now).await.unwrap(),
            "both events accounted for"
        );
    }
}

#[tokio::test]
async fn a_batch_is_handed_back_untouched_when_the_invocation_is_nearly_out_of_time() {
    let World {
        aws,
        idp,
        proxy,
        settings,
        ..
    } = world().await;
    idp.set_okta_user(
        "00uLATE",
        "ACTIVE",
        Some("late@example.com"),
        "La",
        "Te",
        None,
    );
    let okta = okta_delivery(
        "ev-late",
        "user.lifecycle.create",
        "00uLATE",
        "late@example.com",
    );
    let messages = deliver_okta(&aws, &settings, &okta).await;

    let mut event = sqs_event(&messages);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    event.context.deadline = now + 2_000;
    let resp = scim_relay_worker::handle(&worker_lambda(&aws, &settings), event)
        .await
        .unwrap();
    assert_eq!(
        resp.batch_item_failures.len(),
        1,
        "returned for another invocation"
    );
    assert_eq!(idp.total_reads(), 0, "not started");
    assert!(proxy.calls().is_empty());
    // Handed back visible at once, not after the visibility timeout.
    assert_eq!(receive(&aws.sqs, &aws.queues.url).await.len(), 1);
}

/// A record whose work would outlast the invocation is abandoned in time and handed back, so the
/// invocation reports its batch instead of timing out (which would bring the whole batch back,
/// records already finished or dead-lettered included). Here the invocation has 27 s left (more
/// than the 25 s reserve, so the record starts) and the record may use all but a settling margin
/// of 26 s of it; the target takes 6 s to answer the create (well within the relay's own HTTP
/// timeout, so only the budget can cut it short).
#[tokio::test]
async fn a_record_that_would_outlast_the_invocation_is_abandoned_and_handed_back() {
    let World {
        aws,
        idp,
        proxy,
        tenant,
        mut settings,
    } = world().await;
    settings.target.timeout = std::time::Duration::from_secs(20);
    idp.set_okta_user(
        "00uSLOW",
        "ACTIVE",
        Some("slow@example.com"),
        "Sl",
        "Ow",
        None,
    );
    let okta = okta_delivery(
        "ev-slow",
        "user.lifecycle.create",
        "00uSLOW",
        "slow@example.com",
    );
    let messages = deliver_okta(&aws, &settings, &okta).await;
    let policy = ConsumerPolicy {
        settle_margin: std::time::Duration::from_secs(26),
        ..ConsumerPolicy::lambda()
    };
    let lambda = scim_relay_worker::from_parts(
        &settings,
        DynamoStateStore::new(aws.ddb.clone(), aws.table.clone()),
        aws.sqs.clone(),
        Arc::new(SystemClock),
        policy,
    )
    .expect("worker builds");
    proxy.stall_next("POST", std::time::Duration::from_secs(6));
    let mut event = sqs_event(&messages);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    event.context.deadline = now + 27_000;
    let resp = scim_relay_worker::handle(&lambda, event).await.unwrap();
    assert!(
        proxy.created().is_empty(),
        "the invocation reported before the slow target even received the create"
    );
    assert_eq!(
        resp.batch_item_failures.len(),
        1,
        "handed back to be retried"
    );
    // Its next attempt looks first (the create was written down before it was sent) and
    // finishes the job, once.
    let retried = scim_relay_worker::handle(
        &worker_lambda(&aws, &settings),
        sqs_event(&receive_within(&aws, 30).await),
    )
    .await
    .unwrap();
    assert!(retried.batch_item_failures.is_empty(), "{retried:?}");
    assert_eq!(
        tenant.user("slow@example.com").await.expect("created")["active"],
        true
    );
    assert_eq!(proxy.created(), ["slow@example.com"], "created once");
}

/// The work queue's next messages, waiting up to `seconds` for them to become visible again.
async fn receive_within(aws: &Aws, seconds: u64) -> Vec<aws_sdk_sqs::types::Message> {
    for _ in 0..seconds {
        let messages = receive(&aws.sqs, &aws.queues.url).await;
        if !messages.is_empty() {
            return messages;
        }
    }
    Vec::new()
}

#[tokio::test]
async fn a_rejected_credential_opens_the_breaker_and_later_batches_are_not_consumed() {
    let World {
        aws,
        idp,
        proxy,
        mut settings,
        ..
    } = world().await;
    settings.target.token = Secret::new("revoked-application-key");
    let ingress = ingress(&aws, &settings);
    for (n, user) in ["00uB1", "00uB2"].iter().enumerate() {
        idp.set_okta_user(
            user,
            "ACTIVE",
            Some(&format!("{user}@example.com")),
            "Bre",
            "Aker",
            None,
        );
        let d = okta_delivery(
            &format!("ev-b{n}"),
            "user.lifecycle.create",
            user,
            &format!("{user}@example.com"),
        );
        assert_eq!(
            call_inbound(&ingress, okta_event(&d, OKTA_SECRET)).await.0,
            200
        );
    }
    let lambda = worker_lambda(&aws, &settings);

    // First batch: the target answers 401; the message goes back, the breaker opens.
    let first = receive(&aws.sqs, &aws.queues.url).await;
    assert!(!first.is_empty());
    let resp = scim_relay_worker::handle(&lambda, sqs_event(&first))
        .await
        .unwrap();
    assert_eq!(resp.batch_item_failures.len(), first.len());
    let until = DynamoStateStore::new(aws.ddb.clone(), aws.table.clone())
        .open_until(chrono::Utc::now())
        .await
        .unwrap();
    assert!(until.is_some(), "breaker open");
    let target_calls = proxy.calls().len();
    assert!(target_calls > 0);

    // Any later batch is handed back without touching the target or the directory.
    let reads = idp.total_reads();
    let later = receive(&aws.sqs, &aws.queues.url).await;
    if !later.is_empty() {
        let resp = scim_relay_worker::handle(&lambda, sqs_event(&later))
            .await
            .unwrap();
        assert_eq!(resp.batch_item_failures.len(), later.len());
    }
    let replay = scim_relay_worker::handle(&lambda, sqs_event(&first))
        .await
        .unwrap();
    assert_eq!(
        replay.batch_item_failures.len(),
        first.len(),
        "not consumed while the breaker is open"
    );
    assert_eq!(
        proxy.calls().len(),
        target_calls,
        "no call to the target while open"
    );
    assert_eq!(idp.total_reads(), reads);
    assert!(
        receive(&aws.sqs, &aws.queues.dlq_url).await.is_empty(),
        "never drained to the DLQ"
    );
}

#[tokio::test]
async fn a_rate_limited_message_waits_out_the_targets_reset_on_the_queue() {
    let World {
        aws,
        idp,
        proxy,
        settings,
        ..
    } = world().await;
    idp.set_okta_user(
        "00uRATE",
        "ACTIVE",
        Some("rate@example.com"),
        "Ra",
        "Te",
        None,
    );
    let d = okta_delivery(
        "ev-rate",
        "user.lifecycle.create",
        "00uRATE",
        "rate@example.com",
    );
    let messages = deliver_okta(&aws, &settings, &d).await;

    // Datadog-style 429: wait X-RateLimit-Reset seconds (the queue's own visibility is 2 s).
    proxy.fail_next_with(
        "GET",
        429,
        &[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "30")],
    );
    let resp = scim_relay_worker::handle(&worker_lambda(&aws, &settings), sqs_event(&messages))
        .await
        .unwrap();
    assert_eq!(resp.batch_item_failures.len(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        receive(&aws.sqs, &aws.queues.url).await.is_empty(),
        "held for the reset, not the queue's 2 s"
    );
    assert!(receive(&aws.sqs, &aws.queues.dlq_url).await.is_empty());
}

/// The sweeper Lambda on DynamoDB and SQS: finds the expired invitation through the sparse
/// index and re-sends it, and puts reconciliation triggers on the queue the worker reads.
#[tokio::test]
async fn the_sweeper_lambda_resends_expired_invitations_and_enqueues_reconciliation() {
    use scim_relay_tests::datadog::{DatadogFixture, DATADOG_API_KEY, DATADOG_TOKEN};
    let World {
        aws,
        idp,
        mut settings,
        ..
    } = world().await;
    let dd = DatadogFixture::start().await;
    settings.target.base_url = Some(dd.base_url.clone());
    settings.target.token = Secret::new(DATADOG_TOKEN);
    settings.target.api_key = Secret::new(DATADOG_API_KEY);
    // Invitations expire at once, so a real clock can see one lapse.
    settings.target.invite_ttl = std::time::Duration::ZERO;
    idp.set_okta_user(
        "00uSWEEP",
        "ACTIVE",
        Some("sweep@example.com"),
        "Swe",
        "Ep",
        None,
    );
    let delivery = okta_delivery(
        "ev-sweep-1",
        "user.lifecycle.create",
        "00uSWEEP",
        "sweep@example.com",
    );
    let messages = deliver_okta(&aws, &settings, &delivery).await;
    let worker = worker_lambda(&aws, &settings);
    assert!(scim_relay_worker::handle(&worker, sqs_event(&messages))
        .await
        .unwrap()
        .batch_item_failures
        .is_empty());
    delete_all(&aws, &messages).await;

    let sdk = moto_config().await;
    let lambda = scim_relay_sweeper::from_settings(&settings, &sdk).expect("sweeper builds");
    let expiry = chrono::Utc::now() + chrono::Duration::hours(48);
    dd.set_invitation_expiry(&expiry.to_rfc3339());
    let report = scim_relay_sweeper::handle(
        &lambda,
        LambdaEvent::new(serde_json::json!({}), Context::default()),
    )
    .await
    .expect("the sweep never fails the invocation");
    assert_eq!(report["credential"]["status"], "accepted", "{report}");
    assert_eq!(report["invites"]["resent"], 1, "{report}");
    assert_eq!(dd.invitations("sweep@example.com"), 1);
    let pk = format!("USER#okta#{}#00uSWEEP", settings.okta_tenant());
    let item = state_item(&aws, &pk).await.expect("state");
    assert_eq!(
        item["invite_expires_at"].as_n().unwrap().as_str(),
        expiry.timestamp().to_string().as_str(),
        "the new expiry moves the user along the index"
    );

    // Okta's full pass found the user: one reconciliation trigger on the work queue, which the
    // worker applies as a no-op. Graph has nobody: that pass aborted rather than believe it.
    let okta = report["reconciliation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["source"] == "okta")
        .cloned()
        .unwrap();
    assert_eq!(
        (okta["outcome"].as_str(), okta["users"].as_u64()),
        (Some("enqueued"), Some(1)),
        "{report}"
    );
    let queued = receive(&aws.sqs, &aws.queues.url).await;
    assert_eq!(queued.len(), 1);
    let calls = dd.requests("POST") + dd.requests("PATCH");
    assert!(scim_relay_worker::handle(&worker, sqs_event(&queued))
        .await
        .unwrap()
        .batch_item_failures
        .is_empty());
    assert_eq!(dd.requests("POST") + dd.requests("PATCH"), calls);
    let sweep_report: scim_relay_core::sweeper::SweepReport = lambda.sweeper.run().await;
    let metrics = scim_relay_sweeper::metrics(&sweep_report);
    assert!(
        metrics.contains(&("ReconciliationAborted", 1)),
        "{metrics:?}"
    );
    assert!(metrics.contains(&("TargetCredentialRejected", 0)));
}

#[tokio::test]
async fn a_rejected_probe_alarms_and_opens_the_workers_breaker() {
    let World {
        aws, mut settings, ..
    } = world().await;
    settings.target.token = Secret::new("revoked-application-key");
    let sdk = moto_config().await;
    let lambda = scim_relay_sweeper::from_settings(&settings, &sdk).expect("sweeper builds");
    let report = scim_relay_sweeper::handle(
        &lambda,
        LambdaEvent::new(serde_json::json!({}), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(report["credential"]["status"], "rejected", "{report}");
    let store = DynamoStateStore::new(aws.ddb.clone(), aws.table.clone());
    assert!(
        store
            .open_until(chrono::Utc::now())
            .await
            .unwrap()
            .is_some(),
        "the worker stops consuming until the key is fixed"
    );
}

/// Records the DynamoDB requests a client sends: each one's operation (the `x-amz-target`
/// header) and, all together, the time from sending to the answer (for a path that makes its
/// requests one after the other).
#[derive(Debug, Clone, Default)]
struct DynamoRequests {
    operations: Arc<std::sync::Mutex<Vec<String>>>,
    sent: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    micros: Arc<std::sync::atomic::AtomicU64>,
}

impl DynamoRequests {
    fn since(&self, from: usize) -> Vec<String> {
        self.operations
            .lock()
            .map(|c| c[from..].to_vec())
            .unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.operations.lock().map(|c| c.len()).unwrap_or_default()
    }

    fn total_time(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.micros.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A moto client that records through this.
    async fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&moto_config().await)
                .interceptor(self.clone())
                .build(),
        )
    }
}

impl aws_sdk_dynamodb::config::Intercept for DynamoRequests {
    fn name(&self) -> &'static str {
        "record-dynamodb-requests"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').next_back())
            .unwrap_or("?")
            .to_string();
        self.operations
            .lock()
            .map_err(|_| "poisoned")?
            .push(operation);
        *self.sent.lock().map_err(|_| "poisoned")? = Some(std::time::Instant::now());
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _: &aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if let Some(sent) = self.sent.lock().map_err(|_| "poisoned")?.take() {
            self.micros.fetch_add(
                sent.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        Ok(())
    }
}

/// The cost of one applied event, counted: DynamoDB requests and SCIM calls for a create, a
/// profile change and a redelivery (the figures in docs/BENCHMARKS.md come from here).
#[tokio::test]
async fn requests_per_applied_event_on_dynamodb_and_the_target() {
    let World {
        aws,
        idp,
        proxy,
        settings,
        ..
    } = world().await;
    let calls = DynamoRequests::default();
    let store = DynamoStateStore::new(calls.client().await, aws.table.clone());
    // The Lambda's policy with the breaker's read trusted for the whole test (5 s in a
    // deployment), so the sequences do not depend on how fast moto answers.
    let policy = ConsumerPolicy {
        breaker_cache: std::time::Duration::from_secs(3600),
        ..ConsumerPolicy::lambda()
    };
    let lambda = scim_relay_worker::from_parts(
        &settings,
        store,
        aws.sqs.clone(),
        Arc::new(SystemClock),
        policy,
    )
    .expect("worker builds");
    let email = "counted@example.com";
    let mut figures = Vec::new();
    let mut measure = |name: &str, dynamo: Vec<String>, scim: Vec<(String, String)>| {
        figures.push(format!(
            "{name}: {} DynamoDB requests {dynamo:?}, {} SCIM calls {:?}",
            dynamo.len(),
            scim.len(),
            scim.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>()
        ));
        (dynamo, scim.into_iter().map(|(m, _)| m).collect::<Vec<_>>())
    };
    let run = |messages: Vec<aws_sdk_sqs::types::Message>| {
        let (d, s) = (calls.len(), proxy.calls().len());
        let lambda = &lambda;
        let calls = calls.clone();
        let proxy = proxy.clone();
        async move {
            let resp = scim_relay_worker::handle(lambda, sqs_event(&messages))
                .await
                .unwrap();
            assert!(resp.batch_item_failures.is_empty());
            (calls.since(d), proxy.calls()[s..].to_vec())
        }
    };

    idp.set_okta_user("00uCOUNT", "ACTIVE", Some(email), "Coun", "Ted", Some("A"));
    let created = deliver_okta(
        &aws,
        &settings,
        &okta_delivery("ev-count-1", "user.lifecycle.create", "00uCOUNT", email),
    )
    .await;
    let (dynamo, scim) = run(created.clone()).await;
    let (dynamo, scim) = measure("create", dynamo, scim);
    // The breaker, read once for the container; dedupe record and state in one read; the
    // create written ahead; then state, dedupe record and history entry (with the user's
    // fingerprint) in one transaction.
    assert_eq!(
        dynamo,
        [
            "GetItem",
            "BatchGetItem",
            "TransactWriteItems",
            "TransactWriteItems"
        ]
    );
    assert_eq!(scim, ["GET", "POST"], "look up, then create");
    delete_all(&aws, &created).await;

    idp.set_okta_user("00uCOUNT", "ACTIVE", Some(email), "Coun", "Ted", Some("B"));
    let updated = deliver_okta(
        &aws,
        &settings,
        &okta_delivery(
            "ev-count-2",
            "user.account.update_profile",
            "00uCOUNT",
            email,
        ),
    )
    .await;
    let (dynamo, scim) = run(updated.clone()).await;
    // What the event source mapping does with a finished batch.
    delete_all(&aws, &updated).await;
    let (dynamo, scim) = measure("profile change", dynamo, scim);
    assert_eq!(
        dynamo,
        ["BatchGetItem", "TransactWriteItems"],
        "the breaker's read is the container's; history goes with the commit"
    );
    assert_eq!(scim, ["PATCH"], "only the changed attribute");

    // What the worker reports as metrics for a batch of one redelivery.
    let report = scim_relay_worker::work_batch(&lambda, sqs_event(&created)).await;
    assert_eq!(
        (report.duplicates, report.applied, report.unfinished.len()),
        (1, 0, 0)
    );
    assert!(report.metrics().contains(&("TriggersDuplicate", 1)));
    let (dynamo, scim) = run(created).await;
    let (dynamo, scim) = measure("redelivery", dynamo, scim);
    assert_eq!(
        dynamo,
        ["BatchGetItem", "BatchWriteItem"],
        "dedupe record (with the state), then the duplicate's history entry"
    );
    assert!(scim.is_empty());

    idp.set_okta_user(
        "00uCOUNT",
        "DEPROVISIONED",
        Some(email),
        "Coun",
        "Ted",
        Some("B"),
    );
    let deactivated = deliver_okta(
        &aws,
        &settings,
        &okta_delivery("ev-count-3", "user.lifecycle.deactivate", "00uCOUNT", email),
    )
    .await;
    let (dynamo, scim) = run(deactivated.clone()).await;
    delete_all(&aws, &deactivated).await;
    let (dynamo, scim) = measure("deactivation", dynamo, scim);
    // Dedupe record, state and the deprovisioning breaker's window in one read (the event
    // says deactivate); the window written (its slot taken before the account is switched
    // off); then state, dedupe record and history.
    assert_eq!(dynamo, ["BatchGetItem", "PutItem", "TransactWriteItems"]);
    assert_eq!(scim, ["PATCH"]);

    // A deactivation the event did not announce (a profile update that takes the user out of
    // scope, a Graph `updated`): the window is read on its own, one request more. (Another
    // user: the first one's slot is still counted in the window, and a retry takes none.)
    let other = "counted-2@example.com";
    idp.set_okta_user("00uCOUNT2", "ACTIVE", Some(other), "Coun", "Ted", Some("B"));
    let created = deliver_okta(
        &aws,
        &settings,
        &okta_delivery("ev-count-4", "user.lifecycle.create", "00uCOUNT2", other),
    )
    .await;
    run(created.clone()).await;
    delete_all(&aws, &created).await;
    idp.set_okta_user(
        "00uCOUNT2",
        "SUSPENDED",
        Some(other),
        "Coun",
        "Ted",
        Some("B"),
    );
    let unannounced = deliver_okta(
        &aws,
        &settings,
        &okta_delivery(
            "ev-count-5",
            "user.account.update_profile",
            "00uCOUNT2",
            other,
        ),
    )
    .await;
    let (dynamo, scim) = run(unannounced).await;
    let (dynamo, scim) = measure("unannounced deactivation", dynamo, scim);
    assert_eq!(
        dynamo,
        ["BatchGetItem", "GetItem", "PutItem", "TransactWriteItems"]
    );
    assert_eq!(scim, ["PATCH"]);
    // The entries written inside the commits are there, one per trigger, newest first.
    let store = DynamoStateStore::new(aws.ddb.clone(), aws.table.clone());
    let key = |id: &str| UserKey {
        source: Source::Okta,
        tenant: settings.okta_tenant(),
        user_id: id.into(),
    };
    let told = |entries: Vec<scim_relay_core::history::HistoryEntry>| {
        entries
            .into_iter()
            .map(|e| (e.event_id, e.outcome.name()))
            .collect::<Vec<_>>()
    };
    let now = chrono::Utc::now();
    assert_eq!(
        told(store.history(&key("00uCOUNT"), now, 10).await.unwrap()),
        [
            ("ev-count-3".to_string(), "applied"),
            ("ev-count-1".to_string(), "duplicate"),
            ("ev-count-1".to_string(), "duplicate"),
            ("ev-count-2".to_string(), "applied"),
            ("ev-count-1".to_string(), "applied"),
        ]
    );
    assert_eq!(
        told(store.history(&key("00uCOUNT2"), now, 10).await.unwrap()).len(),
        2
    );
    assert_eq!(
        store
            .users_by_fingerprint(&scim_relay_core::pii::fingerprint(email), now)
            .await
            .unwrap(),
        [key("00uCOUNT")],
        "filed under the userName's fingerprint by the create's commit"
    );
    println!("requests per applied event:\n{}", figures.join("\n"));
}

/// Alarms that reach people: every alarm in the template notifies the alarm topic going off
/// and clearing, and every alarm on a `scim-relay` metric watches one the relay emits (the
/// worker's or the sweeper's EMF lines, or a metric filter on a log line).
#[test]
fn every_alarm_notifies_the_topic_and_watches_a_metric_the_relay_emits() {
    use scim_relay_core::consumer::BatchReport;
    use scim_relay_core::sweeper::{CredentialCheck, SweepReport};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let text = std::fs::read_to_string(path).expect("template readable");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("template is YAML");
    let resources = yaml["Resources"].as_mapping().expect("resources");
    let is_topic_ref = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::Tagged(t) => t.tag == "!Ref" && t.value.as_str() == Some("AlarmTopic"),
        _ => false,
    };
    let report = SweepReport {
        credential: CredentialCheck::Accepted,
        subscriptions: Vec::new(),
        reconciliation: Vec::new(),
        invites: Default::default(),
        drift: None,
        deprovisions: Default::default(),
    };
    let mut emitted: std::collections::HashSet<String> = scim_relay_sweeper::metrics(&report)
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect();
    // What the worker's EMF line declares, with a batch that applied something.
    let worker_line: serde_json::Value = serde_json::from_str(&scim_relay_core::metrics::emf_line(
        &BatchReport::default().metrics(),
        &[1200],
        0,
    ))
    .expect("EMF is JSON");
    for declared in worker_line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("declared metrics")
    {
        emitted.insert(declared["Name"].as_str().expect("name").to_string());
    }
    for (_, resource) in resources {
        if resource["Type"] == "AWS::Logs::MetricFilter" {
            for t in resource["Properties"]["MetricTransformations"]
                .as_sequence()
                .expect("transformations")
            {
                emitted.insert(t["MetricName"].as_str().expect("name").to_string());
            }
        }
    }
    let mut alarms = 0;
    for (name, resource) in resources {
        if resource["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        alarms += 1;
        let properties = &resource["Properties"];
        for actions in ["AlarmActions", "OKActions"] {
            let wired = properties[actions]
                .as_sequence()
                .is_some_and(|a| a.iter().any(is_topic_ref));
            assert!(wired, "{name:?} has no {actions} on AlarmTopic");
        }
        if properties["Namespace"] == "scim-relay" {
            let metric = properties["MetricName"].as_str().expect("metric name");
            assert!(
                emitted.contains(metric),
                "{name:?} watches {metric}, which nothing emits ({emitted:?})"
            );
        }
    }
    assert!(alarms >= 10, "{alarms} alarms");

    // The dashboard draws only metrics the relay emits ("." repeats the namespace before).
    let body = match &resources["Dashboard"]["Properties"]["DashboardBody"] {
        serde_yaml::Value::Tagged(t) => t.value[0].as_str().expect("body").to_string(),
        other => panic!("dashboard body: {other:?}"),
    };
    let dashboard: serde_json::Value = serde_json::from_str(&body).expect("dashboard is JSON");
    let mut drawn = Vec::new();
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        let mut namespace = String::new();
        for metric in widget["properties"]["metrics"].as_array().expect("metrics") {
            match metric[0].as_str() {
                Some(".") | None => {}
                Some(ns) => namespace = ns.to_string(),
            }
            if namespace == "scim-relay" {
                drawn.push(metric[1].as_str().expect("metric name").to_string());
            }
        }
    }
    assert!(drawn.iter().any(|m| m == "ApplyLatency"), "{drawn:?}");
    for metric in &drawn {
        assert!(
            emitted.contains(metric),
            "the dashboard draws {metric}, which nothing emits"
        );
    }
}

/// The AWS path's latency, on moto (docs/BENCHMARKS.md): an Okta delivery into the inbound
/// handler (API Gateway's event), its trigger received from SQS as the event source mapping
/// would, the worker handler re-reading the user from the IdP fixture and creating it on
/// scim2-server behind the proxy. Per stage, p50 and p99 over `RELAY_AWS_PATH_EVENTS` events
/// (20 by default), printed; what is asserted is only that every user arrived. Warm handlers,
/// as a deployment is between cold starts.
#[tokio::test]
async fn the_aws_path_from_delivery_to_target_measured_on_moto() {
    let World {
        aws,
        idp,
        tenant,
        proxy,
        settings,
    } = world().await;
    let events: usize = std::env::var("RELAY_AWS_PATH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let ingress = ingress(&aws, &settings);
    let dynamo_time = DynamoRequests::default();
    let store = DynamoStateStore::new(dynamo_time.client().await, aws.table.clone());
    let lambda =
        scim_relay_worker::from_clients(&settings, store, aws.sqs.clone()).expect("worker builds");
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let (mut inbound, mut queued, mut worker, mut total) = (vec![], vec![], vec![], vec![]);
    let (mut target, mut dynamo) = (vec![], vec![]);
    for n in 0..events {
        let id = format!("00uLAT{n:05}");
        let email = format!("lat{n:05}@example.com");
        idp.set_okta_user(&id, "ACTIVE", Some(&email), "Lat", "Ency", None);
        let delivery = okta_delivery(&format!("lat-{n}"), "user.lifecycle.create", &id, &email);
        let started = std::time::Instant::now();
        let (status, body) = call_inbound(&ingress, okta_event(&delivery, OKTA_SECRET)).await;
        assert_eq!(status, 200, "{body}");
        let accepted = std::time::Instant::now();
        let messages = receive(&aws.sqs, &aws.queues.url).await;
        assert_eq!(messages.len(), 1);
        let received = std::time::Instant::now();
        let target_before = proxy.upstream_time();
        let dynamo_before = dynamo_time.total_time();
        let resp = scim_relay_worker::handle(&lambda, sqs_event(&messages))
            .await
            .expect("worker answers");
        assert!(resp.batch_item_failures.is_empty());
        let applied = std::time::Instant::now();
        delete_all(&aws, &messages).await;
        inbound.push(ms(accepted - started));
        queued.push(ms(received - accepted));
        worker.push(ms(applied - received));
        target.push(ms(proxy.upstream_time() - target_before));
        dynamo.push(ms(dynamo_time.total_time() - dynamo_before));
        total.push(ms(applied - started));
    }
    for n in [0, events - 1] {
        assert!(
            tenant
                .user(&format!("lat{n:05}@example.com"))
                .await
                .is_some(),
            "applied on the target"
        );
    }
    // What one request to moto costs, for reading the worker's figure (about six of them).
    let mut moto = Vec::new();
    for _ in 0..events {
        let started = std::time::Instant::now();
        state_item(&aws, "none").await;
        moto.push(ms(started.elapsed()));
    }
    let line = |name: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
        format!("{name}: p50 {:.1} ms, p99 {:.1} ms", at(0.5), at(0.99))
    };
    println!(
        "AWS path on moto, {events} creates:\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        line("inbound handler (verify, SendMessage)", &mut inbound),
        line("SQS ReceiveMessage", &mut queued),
        line(
            "worker handler (DynamoDB, IdP read, SCIM look-up and create)",
            &mut worker
        ),
        line("  of which scim2-server answering", &mut target),
        line("  of which moto answering DynamoDB", &mut dynamo),
        line("delivery to target answered", &mut total),
        line("one DynamoDB GetItem on moto, for scale", &mut moto),
    );
}

/// A bulk enqueue (a full pass) sends its batches side by side in lanes, each user's messages
/// in one lane and in order: on moto, 200 messages for 100 users arrive whole and in each
/// user's order. (moto is no model of SQS's speed for this: its FIFO deduplication slows with
/// every message it holds, so no time is taken here.)
#[tokio::test]
async fn a_bulk_enqueue_goes_in_lanes_and_keeps_each_users_order() {
    use scim_relay_core::envelope::QueueMessage;
    use scim_relay_core::queue::Queue;
    const USERS: usize = 100;
    let aws = aws().await;
    let queue = SqsQueue::new(aws.sqs.clone(), aws.queues.url.clone());
    let bulk: Vec<QueueMessage> = (0..2)
        .flat_map(|step| (0..USERS).map(move |user| (user, step)))
        .map(|(user, step)| QueueMessage {
            group_id: format!("okta/t/u{user:04}"),
            dedupe_id: format!("bulk-{user}-{step}"),
            body: format!("u{user:04}:{step}"),
        })
        .collect();
    queue.enqueue(&bulk).await.expect("enqueued");
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut received = 0;
    while received < bulk.len() {
        let batch = receive(&aws.sqs, &aws.queues.url).await;
        assert!(!batch.is_empty(), "{received} of {} received", bulk.len());
        for m in &batch {
            let body = m.body.clone().unwrap_or_default();
            let (user, step) = body.split_once(':').expect("user:step");
            seen.entry(user.to_string())
                .or_default()
                .push(step.to_string());
        }
        received += batch.len();
        delete_all(&aws, &batch).await;
    }
    assert_eq!(seen.len(), USERS);
    assert!(
        seen.values().all(|steps| steps == &["0", "1"]),
        "each user's messages in their order"
    );
}
