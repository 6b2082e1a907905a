//! The sweeper Lambda, on an EventBridge schedule: one sweep per invocation. What it found is
//! returned (visible in the console's test runs) and emitted as CloudWatch metrics for the
//! template's alarms: a revoked target credential, invitations that expired unaccepted,
//! reconciliations that had to abort, a Graph subscription that could not be kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_runtime::{Error, LambdaEvent};
use scim_relay_core::aws::dynamodb_store::DynamoStateStore;
use scim_relay_core::aws::sqs_queue::SqsQueue;
use scim_relay_core::clock::{Clock, SystemClock};
use scim_relay_core::config::{required, Settings};
use scim_relay_core::consumer::ConsumerPolicy;
pub use scim_relay_core::refresh::{Refreshing, SECRETS_TTL};
use scim_relay_core::sweeper::{
    CredentialCheck, FeedOutcome, SubscriptionAction, SweepReport, Sweeper,
};
use scim_relay_core::wiring;

pub struct SweeperLambda {
    pub sweeper: Arc<Sweeper>,
}

pub async fn init() -> Result<SweeperLambda, Error> {
    let mut settings = Settings::from_env()?;
    let sdk = scim_relay_core::aws::sdk_config().await;
    scim_relay_core::aws::resolve_secrets(&mut settings, &sdk).await?;
    settings.check_aws()?;
    Ok(from_settings(&settings, &sdk)?)
}

/// Builds the sweeper on DynamoDB and SQS from resolved settings.
pub fn from_settings(
    settings: &Settings,
    sdk: &scim_relay_core::aws::SdkConfig,
) -> Result<SweeperLambda, scim_relay_core::config::ConfigError> {
    from_settings_on(
        settings,
        sdk,
        Arc::new(SystemClock),
        ConsumerPolicy::lambda(),
    )
}

/// [`from_settings`] on a given clock, pausing the workers for `policy`'s credential pause
/// when a probe is refused (tests: a manual clock, a pause of milliseconds).
pub fn from_settings_on(
    settings: &Settings,
    sdk: &scim_relay_core::aws::SdkConfig,
    clock: Arc<dyn Clock>,
    policy: ConsumerPolicy,
) -> Result<SweeperLambda, scim_relay_core::config::ConfigError> {
    let store = Arc::new(DynamoStateStore::new(
        scim_relay_core::aws::dynamodb::Client::new(sdk),
        required(&settings.store.table, "store.table")?.to_string(),
    ));
    let queue = SqsQueue::new(
        scim_relay_core::aws::sqs::Client::new(sdk),
        required(&settings.queue.url, "queue.url")?.to_string(),
    );
    // A rejected probe opens the workers' breaker for as long as a worker's own 401 would.
    let engine = wiring::engine(
        settings,
        &wiring::outbound(settings)?,
        store,
        Arc::new(queue),
        clock,
        policy,
    )?;
    Ok(SweeperLambda {
        sweeper: engine.sweeper,
    })
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
        ("DeprovisionsWaiting", report.deprovisions.held_pending),
    ]
}

/// One sweep, its metrics printed for CloudWatch.
pub async fn run(lambda: &SweeperLambda) -> SweepReport {
    run_until(lambda, None).await
}

/// [`run`] within an invocation that ends at `deadline`: a directory pass still listing near
/// it pauses and the next run goes on with it.
pub async fn run_until(lambda: &SweeperLambda, deadline: Option<Instant>) -> SweepReport {
    let report = lambda.sweeper.run_until(deadline).await;
    println!(
        "{}",
        scim_relay_core::metrics::emf_line(
            &metrics(&report),
            &[],
            chrono::Utc::now().timestamp_millis()
        )
    );
    report
}

/// The handler a container runs: the sweeper as [`init`] builds it, built again once its
/// secrets are [`SECRETS_TTL`] old (runs are further apart than that: each run reads them).
pub async fn handle_current(
    parts: &Refreshing<SweeperLambda>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let lambda = parts.current(init).await;
    handle(&lambda, event).await
}

pub async fn handle(
    lambda: &SweeperLambda,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let deadline = invocation_deadline(event.context.deadline, chrono::Utc::now());
    Ok(serde_json::to_value(run_until(lambda, deadline).await)?)
}

/// The invocation's deadline (epoch milliseconds, as the Runtime API gives it) as an instant
/// of this process; none when the context carries none (0: a test's, or a direct call).
pub fn invocation_deadline(
    deadline_ms: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let left = i64::try_from(deadline_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(now.timestamp_millis())
        .max(0);
    Some(Instant::now() + Duration::from_millis(left.unsigned_abs()))
}
