//! The sweeper Lambda, on an EventBridge schedule: one sweep per invocation. What it found is
//! returned (visible in the console's test runs) and emitted as CloudWatch metrics for the
//! template's alarms: a revoked target credential, invitations that expired unaccepted,
//! reconciliations that had to abort, a Graph subscription that could not be kept.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use scim_relay::clock::SystemClock;
use scim_relay::config::Settings;
use scim_relay::queue::sqs::SqsQueue;
use scim_relay::state::dynamodb::DynamoStateStore;
use scim_relay::sweeper::{CredentialCheck, FeedOutcome, SubscriptionAction, SweepReport, Sweeper};
use scim_relay::wiring;

/// After a rejected probe the worker stops consuming for this long (the same breaker the
/// worker opens on a 401/403), so the queue is not burnt through.
const BREAKER_SECONDS: i64 = 300;

pub struct SweeperLambda {
    pub sweeper: Sweeper,
    pub store: DynamoStateStore,
}

pub async fn init() -> Result<SweeperLambda, Error> {
    let mut settings = Settings::from_env()?;
    let sdk = scim_relay::aws::sdk_config().await;
    scim_relay::aws::resolve_secrets(&mut settings, &sdk).await?;
    settings.check_aws()?;
    Ok(from_settings(&settings, &sdk)?)
}

/// Builds the sweeper on DynamoDB and SQS from resolved settings.
pub fn from_settings(
    settings: &Settings,
    sdk: &scim_relay::aws::SdkConfig,
) -> Result<SweeperLambda, scim_relay::config::ConfigError> {
    let store = DynamoStateStore::new(
        scim_relay::aws::dynamodb::Client::new(sdk),
        settings.store.table.clone(),
    );
    let queue = SqsQueue::new(
        scim_relay::aws::sqs::Client::new(sdk),
        settings.queue.url.clone(),
    );
    let outbound = wiring::outbound(settings)?;
    let sweeper = wiring::build_sweeper(
        settings,
        &outbound,
        Arc::new(store.clone()),
        Arc::new(queue),
        Arc::new(SystemClock),
    )?;
    Ok(SweeperLambda { sweeper, store })
}

/// The metrics one run reports (all counts, zero included, so alarms see data every period).
pub fn metrics(report: &SweepReport) -> Vec<(&'static str, u64)> {
    let rejected = matches!(report.credential, CredentialCheck::Rejected { .. });
    let aborted = report
        .reconciliation
        .iter()
        .filter(|f| matches!(f.outcome, FeedOutcome::Aborted { .. }))
        .count();
    let subscription_failed = report
        .subscriptions
        .iter()
        .filter(|s| matches!(s.action, SubscriptionAction::Failed { .. }))
        .count() as u64;
    vec![
        ("TargetCredentialRejected", u64::from(rejected)),
        ("InvitesUnaccepted", report.invites.unaccepted.len() as u64),
        ("InvitesResent", u64::from(report.invites.resent)),
        ("ReconciliationAborted", aborted as u64),
        ("GraphSubscriptionFailed", subscription_failed),
        (
            "DriftUsers",
            report.drift.as_ref().map_or(0, |d| u64::from(d.unknown)),
        ),
    ]
}

pub async fn handle(
    lambda: &SweeperLambda,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let report = lambda.sweeper.run().await;
    if matches!(report.credential, CredentialCheck::Rejected { .. }) {
        let until = chrono::Utc::now() + chrono::Duration::seconds(BREAKER_SECONDS);
        if let Err(e) = lambda.store.open_breaker(until).await {
            tracing::warn!("cannot open the credential breaker: {e}");
        }
    }
    println!(
        "{}",
        scim_relay::metrics::emf_line(&metrics(&report), chrono::Utc::now().timestamp_millis())
    );
    Ok(serde_json::to_value(&report)?)
}
