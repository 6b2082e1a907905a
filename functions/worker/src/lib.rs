//! The worker Lambda: an SQS FIFO batch in, partial batch failures out. What becomes of each
//! record is the core's one consumer's decision (`scim_relay_core::consumer`); this file only
//! turns SQS records into deliveries and the unfinished ones into `batchItemFailures`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use scim_relay_core::aws::dynamodb_store::DynamoStateStore;
use scim_relay_core::aws::sqs_queue::{SqsDeliveries, SqsQueue};
use scim_relay_core::clock::{Clock, SystemClock};
use scim_relay_core::config::{required, Settings};
use scim_relay_core::consumer::{BatchReport, Consumer, ConsumerPolicy};
use scim_relay_core::queue::Delivery;
pub use scim_relay_core::refresh::{Refreshing, SECRETS_TTL};
use scim_relay_core::wiring;

/// Time kept in hand at the end of an invocation: a record is only started with more than this
/// left, so a slow record cannot make the invocation time out and lose the batch's results.
const RESERVE: Duration = Duration::from_secs(25);

pub struct WorkerLambda {
    pub consumer: Consumer,
    pub deliveries: SqsDeliveries,
}

/// Builds the worker from the environment: settings, secrets, DynamoDB, SQS, target.
pub async fn init() -> Result<WorkerLambda, Error> {
    let mut settings = Settings::from_env()?;
    let sdk = scim_relay_core::aws::sdk_config().await;
    scim_relay_core::aws::resolve_secrets(&mut settings, &sdk).await?;
    settings.check_aws_worker()?;
    Ok(from_settings(&settings, &sdk)?)
}

/// Builds the worker on DynamoDB and SQS from resolved settings.
pub fn from_settings(
    settings: &Settings,
    sdk: &scim_relay_core::aws::SdkConfig,
) -> Result<WorkerLambda, scim_relay_core::config::ConfigError> {
    let store = DynamoStateStore::new(
        scim_relay_core::aws::dynamodb::Client::new(sdk),
        required(&settings.store.table, "store.table")?.to_string(),
    );
    from_clients(settings, store, scim_relay_core::aws::sqs::Client::new(sdk))
}

/// Builds the worker on a given state store and SQS client.
pub fn from_clients(
    settings: &Settings,
    store: DynamoStateStore,
    sqs: scim_relay_core::aws::sqs::Client,
) -> Result<WorkerLambda, scim_relay_core::config::ConfigError> {
    from_parts(
        settings,
        store,
        sqs,
        Arc::new(SystemClock),
        ConsumerPolicy::lambda(),
    )
}

/// [`from_clients`] on a given clock and consumer policy (tests: a manual clock, waits of
/// milliseconds).
pub fn from_parts(
    settings: &Settings,
    store: DynamoStateStore,
    sqs: scim_relay_core::aws::sqs::Client,
    clock: Arc<dyn Clock>,
    policy: ConsumerPolicy,
) -> Result<WorkerLambda, scim_relay_core::config::ConfigError> {
    let store = Arc::new(store);
    let work = SqsQueue::new(
        sqs.clone(),
        required(&settings.queue.url, "queue.url")?.to_string(),
    );
    let engine = wiring::engine(
        settings,
        &wiring::outbound(settings)?,
        store,
        Arc::new(work.clone()),
        clock,
        policy,
    )?;
    Ok(WorkerLambda {
        consumer: engine.consumer,
        deliveries: SqsDeliveries {
            work,
            dead_letters: SqsQueue::new(
                sqs,
                required(&settings.queue.dlq_url, "queue.dlq_url")?.to_string(),
            ),
        },
    })
}

/// The handler a container runs: the worker as [`init`] builds it from the environment, built
/// again once its secrets are [`SECRETS_TTL`] old, right after the target refused the
/// credential, and at once (at most every few seconds) when a message named a queue key it
/// does not hold, so a rotated key reaches a warm container without a redeploy and without
/// a dead letter.
pub async fn handle_current(
    parts: &Refreshing<WorkerLambda>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let lambda = parts.current(init).await;
    let (response, report) = handle_reporting(&lambda, event).await;
    if report.key_not_held > 0 {
        // The inbound (or the sweeper) signs with a key newer than ours: read it before the
        // message comes back (`ConsumerPolicy::key_wait`).
        if parts.refresh_now(init).await.is_some() {
            tracing::info!("queue key unknown to this container: secrets read again");
        }
    } else if !response.batch_item_failures.is_empty()
        && lambda.consumer.paused_until().await.is_some()
    {
        parts.mark_stale();
    }
    Ok(response)
}

pub async fn handle(
    lambda: &WorkerLambda,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    Ok(handle_reporting(lambda, event).await.0)
}

/// [`handle`], with what the batch came to.
async fn handle_reporting(
    lambda: &WorkerLambda,
    event: LambdaEvent<SqsEvent>,
) -> (SqsBatchResponse, BatchReport) {
    let report = work_batch(lambda, event).await;
    // What the batch came to, as CloudWatch metrics (Embedded Metric Format on stdout).
    println!(
        "{}",
        scim_relay_core::metrics::emf_line(
            &report.metrics(),
            &report.apply_latencies_ms,
            chrono::Utc::now().timestamp_millis()
        )
    );
    let mut response = SqsBatchResponse::default();
    for id in &report.unfinished {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id.clone();
        response.batch_item_failures.push(failure);
    }
    (response, report)
}

/// Works one SQS batch and reports what each record came to (the handler turns it into the
/// batch response and the metrics line).
pub async fn work_batch(lambda: &WorkerLambda, event: LambdaEvent<SqsEvent>) -> BatchReport {
    let deadline = event.context.deadline;
    let batch: Vec<Delivery> = event.payload.records.iter().map(delivery).collect();
    let time_left = || {
        (deadline > 0).then(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            Duration::from_millis(deadline.saturating_sub(now))
        })
    };
    lambda
        .consumer
        .consume_batch(&lambda.deliveries, &batch, time_left, RESERVE)
        .await
}

fn delivery(record: &SqsMessage) -> Delivery {
    Delivery {
        id: record.message_id.clone().unwrap_or_default(),
        group_id: record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_else(|| "dead-letter".into()),
        body: record.body.clone().unwrap_or_default(),
        attempt: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        handle: record.receipt_handle.clone().unwrap_or_default(),
    }
}
