//! An operator's console with `--aws`, as the `scim-relay` command runs it: the deployment's
//! queue signing key is given as its Secrets Manager ARN (as the stack gives it), and
//! `history <email>` must find the user under the fingerprint keyed with the *secret*, never
//! with the ARN's text. A binary of its own: the fingerprint key is set once per process, and
//! this test must be the process's first to set it, as the command is.

use scim_relay_core::envelope::Source;
use scim_relay_core::history::{Finish, HistoryEntry};
use scim_relay_core::secret::Secret;
use scim_relay_core::state::{StateStore, UserKey};
use scim_relay_server::console::{parse, run, Console};
use scim_relay_tests::aws::{create_fifo_queues, create_table, moto_config, unique};
use scim_relay_tests::required_env;

#[tokio::test]
async fn history_by_email_with_aws_keys_fingerprints_with_the_secret_not_its_arn() {
    let sdk = moto_config().await;
    let queues = create_fifo_queues(&aws_sdk_sqs::Client::new(&sdk), &unique("console")).await;
    let table = unique("console-state");
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table).await;
    let signing_key = "the-deployments-queue-signing-key";
    let arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(unique("console-signing"))
        .secret_string(signing_key)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    // What the worker wrote: an entry filed under the deployment's fingerprint of the address.
    let store = scim_relay_core::aws::dynamodb_store::DynamoStateStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table.clone(),
    );
    let key = UserKey {
        source: Source::Okta,
        tenant: "example.okta.com".into(),
        user_id: "00uCONSOLE".into(),
    };
    let email = "console.user@example.com";
    let now = chrono::Utc::now();
    let fingerprint =
        scim_relay_core::pii::fingerprint_for_deployment(&Secret::new(signing_key), email);
    let entry = HistoryEntry {
        at: now,
        event_type: "user.lifecycle.create".into(),
        event_id: "ev-console".into(),
        plan: "create".into(),
        scim_calls: 2,
        changed: Vec::new(),
        outcome: Finish::Applied,
        reason: None,
        latency_ms: Some(120),
    };
    store
        .record_history(
            &key,
            Some(&fingerprint),
            &entry,
            now + chrono::Duration::days(1),
        )
        .await
        .unwrap();

    // The operator's command, as `main` runs it: settings from the environment, the key set
    // from them before anything (an ARN: nothing set), then the console, which reads the secret.
    let mut settings = scim_relay_core::config::Settings::default();
    settings.queue.signing_key = Secret::new(arn);
    settings.queue.url = Some(queues.url.clone());
    settings.queue.dlq_url = Some(queues.dlq_url.clone());
    settings.store.table = Some(table.clone());
    assert!(!scim_relay_core::pii::set_fingerprint_key(
        &settings.queue.signing_key
    ));
    // SAFETY: the only test of this binary.
    unsafe { std::env::set_var("AWS_ENDPOINT_URL", required_env("RELAY_TEST_MOTO_URL")) };
    let console = Console::aws(&mut settings)
        .await
        .expect("the console reads the secret");
    let mut out = Vec::new();
    run(
        &console,
        &settings,
        parse(&["history", email]).expect("parses"),
        &mut out,
    )
    .await
    .expect("history");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("00uCONSOLE"), "found by email: {out}");
    assert!(out.contains("ev-console"), "{out}");
}
