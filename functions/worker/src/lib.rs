//! The worker Lambda: an SQS FIFO batch in, partial batch failures out.
//!
//! - applied, duplicate or ignored: the message is done (not reported);
//! - retryable: reported as a batch item failure, and so is every later record of the batch,
//!   so a user's later event can never overtake an earlier one that failed (FIFO order);
//! - permanent: sent to the dead-letter queue with its reason, then done. Should that send fail,
//!   the message is reported as failed and SQS's own redrive catches it after maxReceiveCount.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use scim_relay::clock::SystemClock;
use scim_relay::config::Settings;
use scim_relay::queue::sqs::SqsQueue;
use scim_relay::queue::QueueMessage;
use scim_relay::state::dynamodb::DynamoStateStore;
use scim_relay::wiring;
use scim_relay::worker::{Outcome, WorkError, Worker};

/// How long messages are held while the credential breaker is open.
const BREAKER_HOLD_SECONDS: u64 = 900;

/// How long a message waits after the target rejected the credential.
const CREDENTIAL_BACKOFF_SECONDS: u64 = 300;

/// A CloudWatch Embedded Metric Format line: Lambda's log pipeline turns it into the
/// `scim-relay/TargetCredentialRejected` metric that the template's alarm watches, with no API
/// call from the function.
pub fn credential_metric(timestamp_millis: i64) -> String {
    scim_relay::metrics::emf_line(&[("TargetCredentialRejected", 1)], timestamp_millis)
}

/// 10 s after the first receive, doubling, at most 15 minutes, with up to 20 % jitter.
pub fn retry_delay_seconds(receives: u32) -> u64 {
    let base = 10u64
        .saturating_mul(1 << receives.saturating_sub(1).min(10))
        .min(900);
    base + fastrand::u64(0..=base / 5)
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub struct WorkerLambda {
    pub worker: Worker,
    /// The state store, for the credential breaker.
    pub store: DynamoStateStore,
    /// The work queue (to delay a rate-limited message).
    pub queue: SqsQueue,
    pub dead_letters: SqsQueue,
}

/// Builds the worker from the environment: settings, secrets, DynamoDB, SQS, target.
pub async fn init() -> Result<WorkerLambda, Error> {
    let mut settings = Settings::from_env()?;
    let sdk = scim_relay::aws::sdk_config().await;
    scim_relay::aws::resolve_secrets(&mut settings, &sdk).await?;
    settings.check_aws_worker()?;
    let store = DynamoStateStore::new(
        scim_relay::aws::dynamodb::Client::new(&sdk),
        settings.store.table.clone(),
    );
    let sqs = scim_relay::aws::sqs::Client::new(&sdk);
    let queue = SqsQueue::new(sqs.clone(), settings.queue.url.clone());
    let outbound = wiring::outbound(&settings)?;
    let clock = Arc::new(SystemClock);
    // Graph lifecycle events (renew, recreate, catch up) are handled as they arrive.
    let lifecycle = wiring::build_sweeper(
        &settings,
        &outbound,
        Arc::new(store.clone()),
        Arc::new(queue.clone()),
        clock.clone(),
    )?;
    let worker = wiring::worker_from(&settings, &outbound, Arc::new(store.clone()), clock)
        .with_tenant_events(Arc::new(lifecycle));
    Ok(WorkerLambda {
        worker,
        store,
        queue,
        dead_letters: SqsQueue::new(sqs, settings.queue.dlq_url.clone()),
    })
}

/// Time kept in hand at the end of an invocation: a record is only started with more than this
/// left, so a slow record cannot make the invocation time out and lose the batch's results.
const RESERVE_MILLIS: u64 = 25_000;

pub async fn handle(
    lambda: &WorkerLambda,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let deadline = event.context.deadline;
    let mut response = SqsBatchResponse::default();
    // Once a record must be retried, every later one is too (with the same wait), so a
    // user's later event never overtakes an earlier one.
    let mut held_back: Option<u64> = None;
    // The target refused the credential recently: hand the batch back unworked.
    match lambda.store.breaker_open_until(chrono_now()).await {
        Ok(Some(_)) => {
            // Held long, so an outage of days stays within maxReceiveCount (1000 × 15 min);
            // the breaker itself closes after CREDENTIAL_BACKOFF_SECONDS for the next probe.
            tracing::warn!(
                alarm = "target_credential",
                "credential breaker open; not consuming"
            );
            held_back = Some(BREAKER_HOLD_SECONDS);
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot read the credential breaker: {e}"),
    }
    for record in &event.payload.records {
        if held_back.is_none() && deadline > 0 && now_millis() as u64 + RESERVE_MILLIS > deadline {
            tracing::warn!(
                "not enough time left in this invocation; returning the rest of the batch"
            );
            held_back = Some(0);
        }
        let retry_in = match held_back {
            Some(wait) => {
                delay(lambda, record, wait).await;
                Some(wait)
            }
            None => process_record(lambda, record).await.err(),
        };
        if let Some(wait) = retry_in {
            held_back.get_or_insert(wait);
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

/// Keeps a returned record out of sight for `seconds` (0: visible again at once).
async fn delay(lambda: &WorkerLambda, record: &SqsMessage, seconds: u64) {
    if let Some(receipt) = record.receipt_handle.as_deref() {
        if let Err(e) = lambda.queue.delay(receipt, seconds).await {
            let id = record.message_id.as_deref().unwrap_or("-");
            tracing::warn!(message_id = id, "could not delay the message: {e}");
        }
    }
}

/// `Ok` when the record is finished with (applied, skipped or parked); `Err(seconds)` to retry
/// it after that long.
async fn process_record(lambda: &WorkerLambda, record: &SqsMessage) -> Result<(), u64> {
    let id = record.message_id.as_deref().unwrap_or("-");
    let body = record.body.as_deref().unwrap_or_default();
    let wait = match lambda.worker.process(body).await {
        Ok(Outcome::Applied { .. } | Outcome::Unchanged { .. } | Outcome::Duplicate) => {
            return Ok(())
        }
        Err(WorkError::Permanent(reason)) => {
            tracing::error!(message_id = id, "dead-lettering: {reason}");
            let message = QueueMessage {
                group_id: record
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_else(|| "dead-letter".into()),
                dedupe_id: id.to_string(),
                body: body.to_string(),
            };
            match lambda.dead_letters.dead_letter(&message, &reason).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::error!(
                        message_id = id,
                        "could not dead-letter, retrying instead: {e}"
                    );
                    retry_delay_seconds(receive_count(record))
                }
            }
        }
        Err(WorkError::CredentialRejected(reason)) => {
            // Retrying at once cannot succeed: keep the message (and the rest of the batch)
            // queued and out of sight for a while.
            tracing::error!(
                message_id = id,
                alarm = "target_credential",
                "target credential rejected: {reason}"
            );
            println!("{}", credential_metric(now_millis()));
            let until = chrono_now() + chrono::Duration::seconds(CREDENTIAL_BACKOFF_SECONDS as i64);
            if let Err(e) = lambda.store.open_breaker(until).await {
                tracing::warn!("cannot open the credential breaker: {e}");
            }
            CREDENTIAL_BACKOFF_SECONDS
        }
        Err(WorkError::Retryable {
            reason,
            retry_after,
        }) => {
            let receives = receive_count(record);
            // The target's own wait when it gave one, else exponential backoff on the receive
            // count, so a long outage spreads the queue's receives over hours.
            let wait =
                retry_after.map_or_else(|| retry_delay_seconds(receives), |w| w.as_secs().max(1));
            tracing::warn!(
                message_id = id,
                receives,
                wait_seconds = wait,
                "will retry: {reason}"
            );
            wait
        }
    };
    delay(lambda, record, wait).await;
    Err(wait)
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_are_capped() {
        assert!((10..=12).contains(&retry_delay_seconds(1)));
        assert!((20..=24).contains(&retry_delay_seconds(2)));
        assert!((640..=768).contains(&retry_delay_seconds(7)));
        assert!((900..=1080).contains(&retry_delay_seconds(50)));
        assert!((10..=12).contains(&retry_delay_seconds(0)));
    }

    #[test]
    fn the_credential_metric_is_embedded_metric_format() {
        let line: serde_json::Value =
            serde_json::from_str(&credential_metric(1_764_378_000_000)).unwrap();
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "scim-relay");
        assert_eq!(directive["Metrics"][0]["Name"], "TargetCredentialRejected");
        assert_eq!(line["TargetCredentialRejected"], 1);
        assert_eq!(line["_aws"]["Timestamp"], 1_764_378_000_000i64);
    }
}
