//! The Lambdas' start-up as deployed: settings from the environment, secrets given as Secrets
//! Manager ARNs (as the template makes them) resolved against moto_server, then one request
//! through each handler. Each function reaches AWS through a recorder of its own, and every
//! call it made at start-up and after — secrets included — must be granted by its policy in
//! `infra/template.yaml`. SSM parameter ARNs, which the code also resolves for deployments of
//! one's own, are checked at the end. A binary of its own: its tests set process environment
//! variables, one test at a time (`ENVIRONMENT`).

use lambda_runtime::{Context, LambdaEvent};
use scim_relay_tests::aws::{create_fifo_queues, create_table, moto_config, unique};
use scim_relay_tests::aws_relay::sqs_event;
use scim_relay_tests::iam::{check_granted, AwsRecorder, ResourceNames};
use scim_relay_tests::idp::{IdpFixture, OKTA_TOKEN};
use scim_relay_tests::payloads::{apigw_v2_event, okta_delivery};
use scim_relay_tests::required_env;
use scim_relay_tests::scim::ScimTenant;

/// The process environment is one for the binary: a test that sets it holds this.
static ENVIRONMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets the process environment to exactly `vars` (every `SCIM_RELAY_*` else removed), with
/// the SDK pointed at `recorder` (each function's SDK is built at its start from
/// AWS_ENDPOINT_URL).
fn set_environment(vars: &[(&str, String)], recorder: &AwsRecorder) {
    // SAFETY: the tests of this binary hold `ENVIRONMENT` while they set and read it.
    unsafe {
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SCIM_RELAY_")) {
            std::env::remove_var(k);
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        std::env::set_var("AWS_ENDPOINT_URL", &recorder.url);
    }
}

/// A Secrets Manager secret on moto, as the template makes one: its ARN.
async fn create_secret(sm: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> String {
    sm.create_secret()
        .name(unique(name))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

#[tokio::test]
async fn lambdas_start_from_the_environment_with_secrets_from_arns() {
    let _environment = ENVIRONMENT.lock().await;
    let sdk = moto_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let queues = create_fifo_queues(&sqs, &unique("init")).await;
    let table = unique("init-state");
    create_table(&ddb, &table).await;
    let tenant = ScimTenant::fresh();
    let idp = IdpFixture::start().await;
    idp.set_okta_user(
        "00uINIT",
        "ACTIVE",
        Some("init.user@example.com"),
        "In",
        "It",
        None,
    );

    // As the SAM template makes them: one plain secret, one JSON secret read by key, and an
    // SSM SecureString for good measure.
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let signing = create_secret(&sm, "signing", "signing-key-from-secrets-manager").await;
    let worker_credentials = create_secret(
        &sm,
        "worker",
        &serde_json::json!({"okta_api_token": OKTA_TOKEN, "entra_client_secret": "", "target_token": tenant.token}).to_string(),
    )
    .await;
    let okta_secret = create_secret(&sm, "okta", "okta-secret-from-secrets-manager").await;
    // Rotated since: the hook in Okta still sends the old value until someone updates it.
    sm.put_secret_value()
        .secret_id(&okta_secret)
        .secret_string("okta-secret-rotated")
        .send()
        .await
        .unwrap();
    let names = ResourceNames::new()
        .with(table.clone(), "StateTable")
        .with(queues.url.clone(), "WorkQueue")
        .with(queues.dlq_url.clone(), "DeadLetterQueue")
        .with(signing.clone(), "QueueSigningKey")
        .with(okta_secret.clone(), "OktaSharedSecret")
        .with(worker_credentials.clone(), "WorkerCredentials");
    let moto = required_env("RELAY_TEST_MOTO_URL");
    let (inbound_calls, worker_calls, sweeper_calls) = (
        AwsRecorder::start(&moto).await,
        AwsRecorder::start(&moto).await,
        AwsRecorder::start(&moto).await,
    );

    // The environment each function gets from the template: the globals, then its own.
    let globals = [
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("SCIM_RELAY_QUEUE__URL", queues.url.clone()),
        ("SCIM_RELAY_QUEUE__SIGNING_KEY", signing.clone()),
        // Never rotated: no previous value, read as empty.
        (
            "SCIM_RELAY_QUEUE__PREVIOUS_SIGNING_KEY",
            format!("{signing}@AWSPREVIOUS"),
        ),
        ("SCIM_RELAY_OKTA__ORG_URL", idp.url.clone()),
    ];
    let inbound_env = vec![
        ("SCIM_RELAY_OKTA__SHARED_SECRET", okta_secret.clone()),
        (
            "SCIM_RELAY_OKTA__PREVIOUS_SHARED_SECRET",
            format!("{okta_secret}@AWSPREVIOUS"),
        ),
        ("SCIM_RELAY_TARGET__PROFILE", "datadog".to_string()),
    ];
    let worker_env = vec![
        ("SCIM_RELAY_QUEUE__DLQ_URL", queues.dlq_url.clone()),
        ("SCIM_RELAY_STORE__TABLE", table.clone()),
        (
            "SCIM_RELAY_OKTA__API_TOKEN",
            format!("{worker_credentials}#okta_api_token"),
        ),
        ("SCIM_RELAY_TARGET__PROFILE", "datadog".to_string()),
        ("SCIM_RELAY_TARGET__BASE_URL", tenant.base_url.clone()),
        (
            "SCIM_RELAY_TARGET__TOKEN",
            format!("{worker_credentials}#target_token"),
        ),
    ];
    let mut sweeper_env = worker_env.clone();
    sweeper_env.retain(|(k, _)| *k != "SCIM_RELAY_QUEUE__DLQ_URL");
    // Not in the secret (an optional key added after deployment): read as empty.
    sweeper_env.push((
        "SCIM_RELAY_TARGET__API_KEY",
        format!("{worker_credentials}#datadog_api_key"),
    ));
    let start_as = |own: &[(&str, String)], recorder: &AwsRecorder| {
        let vars: Vec<(&str, String)> = globals.iter().chain(own).cloned().collect();
        set_environment(&vars, recorder);
    };

    start_as(&inbound_env, &inbound_calls);
    let ingress = scim_relay_inbound::init()
        .await
        .expect("inbound starts from the environment");
    let delivery = okta_delivery(
        "ev-init",
        "user.lifecycle.create",
        "00uINIT",
        "init.user@example.com",
    );
    let body = serde_json::to_vec(&delivery).unwrap();
    assert_eq!(
        post_okta(&ingress, "okta-secret-from-secrets-manager", &body).await,
        200,
        "the secret's previous value still verifies, a day after its rotation"
    );
    for (secret, status) in [("okta-secret-rotated", 200), ("not-the-secret", 401)] {
        assert_eq!(post_okta(&ingress, secret, &body).await, status, "{secret}");
    }

    start_as(&worker_env, &worker_calls);
    let lambda = scim_relay_worker::init()
        .await
        .expect("worker starts from the environment");
    let received = receive(&sqs, &queues.url).await;
    assert_eq!(received.len(), 1);
    // The worker re-reads the user: the inbound, as the template sets it up, queues no email.
    let queued = received[0].body.as_deref().unwrap_or_default();
    assert!(queued.contains("00uINIT"), "{queued}");
    assert!(
        !queued.contains("init.user@"),
        "an email was queued: {queued}"
    );
    let event = sqs_event(&received);
    let resp = scim_relay_worker::handle(&lambda, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(resp.batch_item_failures.is_empty());
    // The worker re-read the user with the token from the JSON secret, and the signing key it
    // resolved matched the one ingress signed with.
    let user = tenant
        .user("init.user@example.com")
        .await
        .expect("created through the deployed wiring");
    assert_eq!(user["active"], true);
    assert_eq!(
        user["name"]["formatted"], "In It",
        "from the directory, not the event"
    );
    assert_eq!(idp.reads("okta:00uINIT"), 1);

    // The sweeper starts from the same environment: the key is accepted, and Okta's full
    // pass puts the one user back on the queue.
    start_as(&sweeper_env, &sweeper_calls);
    let sweeper = scim_relay_sweeper::init()
        .await
        .expect("sweeper starts from the environment");
    let report = scim_relay_sweeper::handle(
        &sweeper,
        LambdaEvent::new(serde_json::json!({}), Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(report["credential"]["status"], "accepted", "{report}");
    assert_eq!(report["reconciliation"][0]["users"], 1, "{report}");

    // A warm worker container heals from a key rotation: it started with a key the target no
    // longer takes, the secret now holds the new one. The refusal makes it read its secrets
    // again, and the next batch goes through, without a redeploy.
    let credentials = |target_token: &str| {
        serde_json::json!({"okta_api_token": OKTA_TOKEN, "entra_client_secret": "", "target_token": target_token})
            .to_string()
    };
    sm.put_secret_value()
        .secret_id(&worker_credentials)
        .secret_string(credentials("a-revoked-key"))
        .send()
        .await
        .unwrap();
    start_as(&worker_env, &worker_calls);
    let parts = scim_relay_worker::Refreshing::new(
        scim_relay_worker::init().await.expect("worker starts"),
        scim_relay_worker::SECRETS_TTL,
    );
    sm.put_secret_value()
        .secret_id(&worker_credentials)
        .secret_string(credentials(&tenant.token))
        .send()
        .await
        .unwrap();
    let batch_for = |user: &'static str| {
        let sqs = sqs.clone();
        let url = queues.url.clone();
        let ingress = &ingress;
        let idp = &idp;
        async move {
            let email = format!("{}@example.com", user.to_lowercase());
            idp.set_okta_user(user, "ACTIVE", Some(&email), "He", "Al", None);
            let body = serde_json::to_vec(&okta_delivery(
                &format!("ev-{user}"),
                "user.lifecycle.create",
                user,
                &email,
            ))
            .unwrap();
            assert_eq!(post_okta(ingress, "okta-secret-rotated", &body).await, 200);
            let received = receive(&sqs, &url).await;
            let event = sqs_event(&received);
            LambdaEvent::new(event, Context::default())
        }
    };
    let refused = scim_relay_worker::handle_current(&parts, batch_for("00uHEAL1").await)
        .await
        .unwrap();
    assert_eq!(
        refused.batch_item_failures.len(),
        1,
        "the old key is refused"
    );
    // The credential pause runs out (as it would after its minutes).
    let store =
        scim_relay_core::aws::dynamodb_store::DynamoStateStore::new(ddb.clone(), table.clone());
    scim_relay_core::breaker::CredentialBreaker::open(&store, chrono::Utc::now())
        .await
        .unwrap();
    let healed = scim_relay_worker::handle_current(&parts, batch_for("00uHEAL2").await)
        .await
        .unwrap();
    assert!(healed.batch_item_failures.is_empty(), "{healed:?}");
    assert!(
        tenant.user("00uheal2@example.com").await.is_some(),
        "applied with the rotated key"
    );

    // Every AWS call each function made, its secrets included, is granted to it.
    let template = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ));
    let problems: Vec<String> = [
        ("InboundFunction", &inbound_calls),
        ("WorkerFunction", &worker_calls),
        ("SweeperFunction", &sweeper_calls),
    ]
    .iter()
    .filter_map(|(function, recorder)| {
        let calls = recorder.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.action == "secretsmanager:GetSecretValue"),
            "{function} read its secrets through its recorder: {calls:?}"
        );
        check_granted(&template, function, &calls, &names).err()
    })
    .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // A deployment of one's own may hold a secret in SSM Parameter Store (SecureString): its
    // ARN is resolved, decrypted, the same way.
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let parameter = format!("/scim-relay/{}/okta-secret", unique("p"));
    ssm.put_parameter()
        .name(&parameter)
        .value("okta-secret-from-ssm")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let parameter_arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{parameter}");

    start_as(&inbound_env, &inbound_calls);
    unsafe { std::env::set_var("SCIM_RELAY_OKTA__SHARED_SECRET", &parameter_arn) };
    let ingress = scim_relay_inbound::init()
        .await
        .expect("inbound starts with an SSM parameter");
    assert_eq!(
        post_okta(&ingress, "okta-secret-from-ssm", &body).await,
        200,
        "the SSM-held secret is the one checked"
    );

    // A missing required setting stops start-up with a message naming it.
    start_as(&worker_env, &worker_calls);
    unsafe { std::env::remove_var("SCIM_RELAY_STORE__TABLE") };
    let err = scim_relay_worker::init()
        .await
        .err()
        .expect("start-up must fail")
        .to_string();
    assert!(err.contains("SCIM_RELAY_STORE__TABLE"), "{err}");
}

/// A rotation with warm containers, as the README's runbook does it: `put-secret-value` on the
/// queue key and the Okta secret while an inbound and a worker container hold the old values,
/// events in flight. A fresh inbound container signs with the new key: the warm worker reads its
/// secrets again at once and applies the message (nothing dead-lettered). Okta sends the new
/// secret: the warm inbound, refused at first, reads its secrets again and accepts it (Okta does
/// not retry a 401).
#[tokio::test]
async fn a_rotation_reaches_warm_containers_without_a_dead_letter_or_a_refused_delivery() {
    let _environment = ENVIRONMENT.lock().await;
    let sdk = moto_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let queues = create_fifo_queues(&sqs, &unique("rot")).await;
    let table = unique("rot-state");
    create_table(&ddb, &table).await;
    let tenant = ScimTenant::fresh();
    let idp = IdpFixture::start().await;
    let signing = create_secret(&sm, "rot-signing", "queue-key-one").await;
    let okta_secret = create_secret(&sm, "rot-okta", "okta-secret-one").await;
    let credentials = create_secret(
        &sm,
        "rot-worker",
        &serde_json::json!({"okta_api_token": OKTA_TOKEN, "target_token": tenant.token})
            .to_string(),
    )
    .await;
    let common = [
        ("AWS_REGION", "us-east-1".to_string()),
        ("SCIM_RELAY_QUEUE__URL", queues.url.clone()),
        ("SCIM_RELAY_QUEUE__SIGNING_KEY", signing.clone()),
        (
            "SCIM_RELAY_QUEUE__PREVIOUS_SIGNING_KEY",
            format!("{signing}@AWSPREVIOUS"),
        ),
        ("SCIM_RELAY_OKTA__ORG_URL", idp.url.clone()),
        ("SCIM_RELAY_TARGET__PROFILE", "generic".to_string()),
    ];
    let with = |own: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        common.iter().cloned().chain(own.iter().cloned()).collect()
    };
    let inbound_env = with(&[
        ("SCIM_RELAY_OKTA__SHARED_SECRET", okta_secret.clone()),
        (
            "SCIM_RELAY_OKTA__PREVIOUS_SHARED_SECRET",
            format!("{okta_secret}@AWSPREVIOUS"),
        ),
    ]);
    let worker_env = with(&[
        ("SCIM_RELAY_QUEUE__DLQ_URL", queues.dlq_url.clone()),
        ("SCIM_RELAY_STORE__TABLE", table.clone()),
        (
            "SCIM_RELAY_OKTA__API_TOKEN",
            format!("{credentials}#okta_api_token"),
        ),
        ("SCIM_RELAY_TARGET__BASE_URL", tenant.base_url.clone()),
        (
            "SCIM_RELAY_TARGET__TOKEN",
            format!("{credentials}#target_token"),
        ),
    ]);
    let moto = required_env("RELAY_TEST_MOTO_URL");
    let (inbound_calls, worker_calls) = (
        AwsRecorder::start(&moto).await,
        AwsRecorder::start(&moto).await,
    );
    // A forced read of the secrets may follow a refusal at once here (deployed, it waits a few
    // seconds between two; a unit test in core checks that it does).
    let warm = std::time::Duration::ZERO;
    set_environment(&inbound_env, &inbound_calls);
    let warm_inbound = scim_relay_inbound::Refreshing::new(
        scim_relay_inbound::init().await.expect("inbound starts"),
        scim_relay_inbound::SECRETS_TTL,
    )
    .with_forced_interval(warm);
    set_environment(&worker_env, &worker_calls);
    let warm_worker = scim_relay_worker::Refreshing::new(
        scim_relay_worker::init().await.expect("worker starts"),
        scim_relay_worker::SECRETS_TTL,
    )
    .with_forced_interval(warm);
    let person = |n: u32| {
        let (id, email) = (format!("00uROT{n}"), format!("rot{n}@example.com"));
        idp.set_okta_user(&id, "ACTIVE", Some(&email), "Ro", "Tated", None);
        serde_json::to_vec(&okta_delivery(
            &format!("ev-rot-{n}"),
            "user.lifecycle.create",
            &id,
            &email,
        ))
        .unwrap()
    };
    // In flight before the rotation: signed with the first key.
    assert_eq!(
        deliver(&warm_inbound, "okta-secret-one", person(1)).await,
        200
    );

    for (arn, value) in [
        (&signing, "queue-key-two"),
        (&okta_secret, "okta-secret-two"),
    ] {
        sm.put_secret_value()
            .secret_id(arn)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    // A container started after the rotation signs with the second key; Okta still sends the
    // old secret until someone pastes the new one.
    set_environment(&inbound_env, &inbound_calls);
    let fresh_inbound = scim_relay_inbound::Refreshing::new(
        scim_relay_inbound::init().await.expect("inbound starts"),
        scim_relay_inbound::SECRETS_TTL,
    );
    assert_eq!(
        deliver(&fresh_inbound, "okta-secret-one", person(2)).await,
        200
    );

    // The warm worker holds only the first key: the second message waits for the key while
    // the container reads its secrets again, and comes back to be applied.
    set_environment(&worker_env, &worker_calls);
    let mut finished = 0;
    let mut waited_for_key = 0;
    // The event source mapping's part: receive, invoke, delete what the batch finished.
    for _ in 0..30 {
        let received = receive(&sqs, &queues.url).await;
        if received.is_empty() {
            if finished == 2 {
                break;
            }
            continue;
        }
        let event = LambdaEvent::new(sqs_event(&received), Context::default());
        let response = scim_relay_worker::handle_current(&warm_worker, event)
            .await
            .unwrap();
        waited_for_key += response.batch_item_failures.len();
        for m in &received {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(&f.item_identifier) == m.message_id.as_ref());
            if !failed {
                finished += 1;
                sqs.delete_message()
                    .queue_url(&queues.url)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    assert_eq!(finished, 2);
    assert!(
        waited_for_key >= 1,
        "the warm worker met the new key before it read it"
    );
    for n in [1, 2] {
        assert_eq!(
            tenant
                .user(&format!("rot{n}@example.com"))
                .await
                .expect("applied")["active"],
            true,
            "rot{n}"
        );
    }
    assert!(
        receive(&sqs, &queues.dlq_url).await.is_empty(),
        "nothing dead-lettered"
    );

    // The hook in Okta now sends the new secret. The warm inbound never read it: refused,
    // it reads its secrets again and accepts the delivery on the spot.
    set_environment(&inbound_env, &inbound_calls);
    assert_eq!(
        deliver(&warm_inbound, "okta-secret-two", person(3)).await,
        200
    );
    assert_eq!(
        deliver(&warm_inbound, "not-the-secret", person(4)).await,
        401,
        "a wrong secret is still refused"
    );

    let template = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/template.yaml"
    ));
    let names = ResourceNames::new()
        .with(table.clone(), "StateTable")
        .with(queues.url.clone(), "WorkQueue")
        .with(queues.dlq_url.clone(), "DeadLetterQueue")
        .with(signing.clone(), "QueueSigningKey")
        .with(okta_secret.clone(), "OktaSharedSecret")
        .with(credentials.clone(), "WorkerCredentials");
    for (function, recorder) in [
        ("InboundFunction", &inbound_calls),
        ("WorkerFunction", &worker_calls),
    ] {
        check_granted(&template, function, &recorder.calls(), &names)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// An Okta delivery through the handler a warm container runs; its status.
async fn deliver(
    parts: &scim_relay_inbound::Refreshing<scim_relay_core::ingress::Ingress>,
    secret: &str,
    body: Vec<u8>,
) -> u16 {
    scim_relay_inbound::handle_current(parts, okta_request(secret, &body))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An Okta delivery in API Gateway's event shape, as the inbound handler receives it.
fn okta_request(secret: &str, body: &[u8]) -> lambda_http::Request {
    let event = apigw_v2_event(
        "POST",
        "/okta",
        "",
        &[("authorization", secret)],
        Some(body),
        false,
    );
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// An Okta delivery through API Gateway's event shape into the inbound handler; its status.
async fn post_okta(ingress: &scim_relay_core::ingress::Ingress, secret: &str, body: &[u8]) -> u16 {
    scim_relay_inbound::handle(ingress, okta_request(secret, body))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What is on a queue now, with its FIFO attributes, as the event source mapping receives it.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}
