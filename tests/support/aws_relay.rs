//! The AWS backend: the inbound, worker and sweeper Lambda handlers on moto (SQS FIFO and
//! DynamoDB). The test plays API Gateway and the SQS event source mapping; each function talks
//! to AWS through a recorder of its own, and [`AwsRelay::check_iam`] checks every call it made
//! against that function's policy in `infra/template.yaml`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use lambda_runtime::{Context, LambdaEvent};
use scim_relay_core::aws::dynamodb_store::DynamoStateStore;
use scim_relay_core::aws::sqs_queue::{SqsQueue, SqsQueueMonitor};
use scim_relay_core::clock::Clock;
use scim_relay_core::config::Settings;
use scim_relay_core::consumer::ConsumerPolicy;
use scim_relay_core::ingress::Ingress;
use scim_relay_core::sweeper::SweepReport;
use scim_relay_sweeper::SweeperLambda;
use scim_relay_worker::WorkerLambda;

use crate::aws::{config_for, create_fifo_queues, create_table, moto_config, unique, FifoQueues};
use crate::iam::{check_granted, AwsRecorder, ResourceNames};
use crate::payloads::apigw_v2_event;
use crate::required_env;

pub struct AwsRelay {
    sqs: aws_sdk_sqs::Client,
    store: DynamoStateStore,
    queues: FifoQueues,
    table: String,
    functions: Functions,
    /// Each function's SDK configuration, through its recorder: inbound, worker, sweeper.
    sdks: [SdkConfig; 3],
    clock: Arc<dyn Clock>,
    policy: ConsumerPolicy,
    /// Each function's AWS calls, by its logical id in the template.
    recorders: Vec<(&'static str, AwsRecorder)>,
    /// Dead letters seen so far (a received message stays out of sight for a while).
    /// Dead letters seen so far, by message id: their reason and body.
    dead: Mutex<BTreeMap<String, (String, String)>>,
}

impl AwsRelay {
    /// Fresh queues and table; the three functions built from `settings` on `clock`, the
    /// worker consuming with `policy`.
    pub async fn start(
        mut settings: Settings,
        clock: Arc<dyn Clock>,
        policy: ConsumerPolicy,
    ) -> Self {
        let sdk = moto_config().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let queues = create_fifo_queues(&sqs, &unique("behaviour")).await;
        let table = unique("behaviour-state");
        create_table(&ddb, &table).await;
        point_at(&mut settings, &queues, &table);
        let moto = required_env("RELAY_TEST_MOTO_URL");
        let mut recorders = Vec::new();
        let mut sdks = Vec::new();
        for function in ["InboundFunction", "WorkerFunction", "SweeperFunction"] {
            let recorder = AwsRecorder::start(&moto).await;
            sdks.push(config_for(&recorder.url).await);
            recorders.push((function, recorder));
        }
        let [inbound_sdk, worker_sdk, sweeper_sdk]: [SdkConfig; 3] =
            sdks.try_into().expect("three functions");
        let functions = Functions::build(
            &settings,
            [&inbound_sdk, &worker_sdk, &sweeper_sdk],
            clock.clone(),
            policy,
        );
        Self {
            sqs,
            store: DynamoStateStore::new(ddb, table.clone()),
            queues,
            table,
            functions,
            sdks: [inbound_sdk, worker_sdk, sweeper_sdk],
            clock,
            policy,
            recorders,
            dead: Mutex::new(BTreeMap::new()),
        }
    }

    /// New containers for all three functions, on the same queues and table, with `settings`
    /// (a deploy, or a cold start after a configuration change).
    pub fn restart(&mut self, mut settings: Settings) {
        point_at(&mut settings, &self.queues, &self.table);
        let [a, b, c] = &self.sdks;
        self.functions = Functions::build(&settings, [a, b, c], self.clock.clone(), self.policy);
    }

    /// The work queue, written directly (not as any function: an operator's command).
    pub fn work_queue(&self) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), self.queues.url.clone())
    }

    /// The work queue and the DLQ as `scim-relay status --aws` reads them (not as any
    /// function: with the operator's credentials).
    pub fn queue_monitor(&self) -> SqsQueueMonitor {
        SqsQueueMonitor {
            work: self.work_queue(),
            dead_letters: Some(SqsQueue::new(self.sqs.clone(), self.queues.dlq_url.clone())),
        }
    }

    /// The state table, read directly (not as any function).
    pub fn store(&self) -> &DynamoStateStore {
        &self.store
    }

    /// One request through API Gateway's event shape into the inbound handler.
    pub async fn inbound(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<(String, String)>) {
        let event = apigw_v2_event(
            method,
            path,
            query.unwrap_or(""),
            headers,
            (!body.is_empty()).then_some(body),
            true,
        );
        call_inbound_with_headers(&self.functions.inbound, event).await
    }

    /// Plays the event source mapping until the work queue is empty: receives batches, calls
    /// the worker handler, deletes what it finished. Records it handed back come back when the
    /// visibility the worker gave them runs out, in real time, as on AWS.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            let messages = self.receive(&self.queues.url, 0).await;
            if messages.is_empty() {
                // Asked twice: moto's approximate counts can miss a message whose visibility
                // was just changed (seen once under load: a retried message read as gone).
                if self.work_depth().await == 0 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    if self.work_depth().await == 0 {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let response = scim_relay_worker::handle(
                &self.functions.worker,
                LambdaEvent::new(sqs_event(&messages), Context::default()),
            )
            .await
            .expect("the worker never fails the invocation");
            let failed: HashSet<String> = response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            for m in messages {
                let id = m.message_id.unwrap_or_default();
                if !failed.contains(&id) {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queues.url)
                        .receipt_handle(m.receipt_handle.unwrap_or_default())
                        .send()
                        .await
                        .expect("delete message");
                }
            }
        }
        false
    }

    /// While set, the worker's DynamoDB writes that record a target account fail.
    pub fn fail_account_commits(&self, failing: bool) {
        let worker = &self
            .recorders
            .iter()
            .find(|(f, _)| *f == "WorkerFunction")
            .expect("worker recorder")
            .1;
        if failing {
            worker.fail_while("dynamodb:PutItem", "\"scim_id\"");
        } else {
            worker.heal();
        }
    }

    /// [`drain`](Self::drain) with two event-source pollers at once, as Lambda scales out: two
    /// batches of different message groups worked concurrently.
    pub async fn drain_with_two_pollers(&self, timeout: Duration) -> bool {
        let (a, b) = tokio::join!(self.drain(timeout), self.drain(timeout));
        a && b
    }

    /// A worker container that dies mid-batch: it works the first half of a batch, then the
    /// invocation is lost, so the event source mapping deletes nothing and the whole batch
    /// comes back after the visibility timeout. How many messages it had received.
    pub async fn crash_mid_batch(&self) -> usize {
        let messages = self.receive(&self.queues.url, 0).await;
        let worked = &messages[..messages.len() / 2];
        if !worked.is_empty() {
            let _ = scim_relay_worker::handle(
                &self.functions.worker,
                LambdaEvent::new(sqs_event(worked), Context::default()),
            )
            .await;
        }
        messages.len()
    }

    async fn receive(&self, url: &str, wait: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    async fn queue_depth(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|k| attrs.get(k).and_then(|v| v.parse::<u64>().ok()))
        .sum()
    }

    async fn work_depth(&self) -> u64 {
        self.queue_depth(&self.queues.url).await
    }

    pub async fn depth(&self) -> (u64, u64) {
        let dead = self.dead_letters().await.len() as u64;
        (self.work_depth().await, dead)
    }

    /// Every dead letter's reason (the `reason` attribute the worker sets; SQS's own redrive
    /// after `maxReceiveCount` sets none).
    pub async fn dead_letters(&self) -> Vec<String> {
        self.collect_dead_letters().await;
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(reason, _)| reason.clone())
            .collect()
    }

    /// Every dead letter's body, as the inbound queued it.
    pub async fn dead_letter_bodies(&self) -> Vec<String> {
        self.collect_dead_letters().await;
        self.dead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Reads what the DLQ shows now (received messages stay hidden a while, so they are kept).
    async fn collect_dead_letters(&self) {
        for m in self.receive(&self.queues.dlq_url, 0).await {
            let reason = m
                .message_attributes
                .as_ref()
                .and_then(|a| a.get("reason"))
                .and_then(|v| v.string_value.clone())
                .unwrap_or_else(|| "redriven by SQS after maxReceiveCount".into());
            let body = m.body.clone().unwrap_or_default();
            // Visible again at once: reading the DLQ must not hide it from a redrive.
            if let Some(handle) = m.receipt_handle.as_deref() {
                let _ = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.queues.dlq_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
            self.dead
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(m.message_id.unwrap_or_default(), (reason, body));
        }
    }

    /// `scim-relay redrive --aws`: the DLQ back onto the work queue, as an operator (not any
    /// function) does it.
    pub async fn redrive(&self) -> usize {
        let dlq = SqsQueue::new(self.sqs.clone(), self.queues.dlq_url.clone());
        let moved = dlq.redrive_into(&self.work_queue()).await.expect("redrive");
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clear();
        moved
    }

    /// One scheduled run of the sweeper Lambda.
    pub async fn sweep(&self) -> SweepReport {
        scim_relay_sweeper::run(&self.functions.sweeper).await
    }

    /// Every AWS call each function made is granted to it by `infra/template.yaml`.
    pub fn check_iam(&self) {
        let template = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/template.yaml"
        ));
        let names = ResourceNames::new()
            .with(self.table.clone(), "StateTable")
            .with(self.queues.url.clone(), "WorkQueue")
            .with(self.queues.dlq_url.clone(), "DeadLetterQueue");
        let problems: Vec<String> = self
            .recorders
            .iter()
            .filter_map(|(function, recorder)| {
                check_granted(&template, function, &recorder.calls(), &names).err()
            })
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

/// The functions' settings name this deployment's queues and table.
fn point_at(settings: &mut Settings, queues: &FifoQueues, table: &str) {
    settings.queue.url = Some(queues.url.clone());
    settings.queue.dlq_url = Some(queues.dlq_url.clone());
    settings.store.table = Some(table.to_string());
}

/// The three handlers as one deployment of them builds them.
struct Functions {
    inbound: Ingress,
    worker: WorkerLambda,
    sweeper: SweeperLambda,
}

impl Functions {
    fn build(
        settings: &Settings,
        [inbound, worker, sweeper]: [&SdkConfig; 3],
        clock: Arc<dyn Clock>,
        policy: ConsumerPolicy,
    ) -> Self {
        let store = DynamoStateStore::new(
            aws_sdk_dynamodb::Client::new(worker),
            settings.store.table.clone().expect("table set"),
        );
        Self {
            inbound: crate::deployment::ingress_on(
                settings,
                Arc::new(SqsQueue::new(
                    aws_sdk_sqs::Client::new(inbound),
                    settings.queue.url.clone().expect("queue set"),
                )),
                clock.clone(),
            ),
            worker: scim_relay_worker::from_parts(
                settings,
                store,
                aws_sdk_sqs::Client::new(worker),
                clock.clone(),
                policy,
            )
            .expect("worker builds"),
            sweeper: scim_relay_sweeper::from_settings_on(settings, sweeper, clock, policy)
                .expect("sweeper builds"),
        }
    }
}

/// One API Gateway event through the inbound handler: the answer's status and body.
pub async fn call_inbound(ingress: &Ingress, event: serde_json::Value) -> (u16, String) {
    let answer = call_inbound_with_headers(ingress, event).await;
    (answer.0, answer.1)
}

/// [`call_inbound`], with the answer's headers (names lowercased).
pub async fn call_inbound_with_headers(
    ingress: &Ingress,
    event: serde_json::Value,
) -> (u16, String, Vec<(String, String)>) {
    let req =
        lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event");
    let resp = scim_relay_inbound::handle(ingress, req)
        .await
        .expect("the handler never fails the invocation");
    let status = resp.status().as_u16();
    let headers = crate::header_pairs(resp.headers());
    let body = match resp.into_body() {
        lambda_http::Body::Text(t) => t,
        lambda_http::Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    };
    (status, body, headers)
}

/// Received messages as the event source mapping hands them to the worker.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        record.event_source = Some("aws:sqs".into());
        if let Some(attrs) = &m.attributes {
            for (k, v) in attrs {
                record.attributes.insert(k.as_str().to_string(), v.clone());
            }
        }
        event.records.push(record);
    }
    event
}

#[async_trait::async_trait]
impl crate::relay::RelayUnderTest for AwsRelay {
    async fn restart(&mut self, settings: &Settings) {
        AwsRelay::restart(self, settings.clone())
    }

    fn store(&self) -> Arc<dyn scim_relay_core::state::SweepStore> {
        Arc::new(self.store.clone())
    }

    fn breaker(&self) -> Arc<dyn scim_relay_core::breaker::CredentialBreaker> {
        Arc::new(self.store.clone())
    }

    fn work_queue(&self) -> Arc<dyn scim_relay_core::queue::Queue> {
        Arc::new(AwsRelay::work_queue(self))
    }

    // The operator's credentials: none of these calls is a function's.
    fn console(
        &self,
        _settings: &Settings,
        _target: &crate::target::Target,
    ) -> Result<scim_relay_server::console::Console, String> {
        Ok(scim_relay_server::console::Console::new(
            Arc::new(self.store.clone()),
            Arc::new(AwsRelay::work_queue(self)),
            Arc::new(self.queue_monitor()),
        ))
    }

    async fn fail_account_commits(&self, failing: bool) {
        AwsRelay::fail_account_commits(self, failing)
    }

    async fn request(&self, req: scim_relay_core::ingress::IngressRequest) -> crate::relay::Answer {
        let headers: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, body, headers) = self
            .inbound(
                &req.method,
                &req.path,
                req.query.as_deref(),
                &headers,
                &req.body,
            )
            .await;
        crate::relay::Answer {
            status,
            body,
            headers,
        }
    }

    async fn drain(&self, timeout: Duration) -> bool {
        AwsRelay::drain(self, timeout).await
    }

    async fn depth(&self) -> (u64, u64) {
        AwsRelay::depth(self).await
    }

    async fn dead_letters(&self) -> Vec<String> {
        AwsRelay::dead_letters(self).await
    }

    async fn dead_letter_bodies(&self) -> Vec<String> {
        AwsRelay::dead_letter_bodies(self).await
    }

    async fn redrive(&self) -> usize {
        AwsRelay::redrive(self).await
    }

    async fn sweep(&self) -> SweepReport {
        AwsRelay::sweep(self).await
    }

    /// With the invocation's deadline as Lambda's context gives it (epoch milliseconds).
    async fn sweep_until(&self, deadline: std::time::Instant) -> SweepReport {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let now = chrono::Utc::now();
        let deadline_ms = now.timestamp_millis().max(0) as u64 + left.as_millis() as u64;
        scim_relay_sweeper::run_until(
            &self.functions.sweeper,
            scim_relay_sweeper::invocation_deadline(deadline_ms, now),
        )
        .await
    }

    async fn finish(&mut self) {
        self.check_iam()
    }

    fn as_aws(&self) -> Option<&AwsRelay> {
        Some(self)
    }
}
