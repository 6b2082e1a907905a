//! SQS FIFO: `MessageGroupId` = source/tenant/user serialises each user's work,
//! `MessageDeduplicationId` drops an IdP's redelivery within SQS's five-minute window.

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use chrono::{DateTime, Utc};

use crate::queue::{
    DeadLetterReasons, Delivery, Queue, QueueError, QueueFigures, QueueMessage, QueueMonitor,
    WorkQueue,
};

/// SendMessageBatch takes at most ten entries.
const BATCH: usize = 10;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Parks a message the worker could not apply on this (dead-letter) queue, with the reason
    /// as a message attribute so an operator sees why without decoding the body.
    pub async fn dead_letter(
        &self,
        message: &QueueMessage,
        reason: &str,
    ) -> Result<(), QueueError> {
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(truncate(reason, 1024))
            .build()
            .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_group_id(&message.group_id)
            .message_deduplication_id(&message.dedupe_id)
            .message_body(&message.body)
            .message_attributes("reason", reason)
            .send()
            .await
            .map_err(|e| QueueError(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
        Ok(())
    }
}

impl SqsQueue {
    /// Deletes a received message (an already deleted one is no error).
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| QueueError(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
        Ok(())
    }

    /// Keeps a received message hidden for `seconds` more: how a rate-limited message waits
    /// for the target's reset on Lambda, without the function sleeping.
    pub async fn delay(&self, receipt_handle: &str, seconds: u64) -> Result<(), QueueError> {
        // SQS caps a message's visibility timeout at 12 hours.
        let seconds = seconds.min(43_200) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
        Ok(())
    }
}

impl SqsQueue {
    /// Moves every message of this (dead-letter) queue back onto `work`, in its user's message
    /// group, once its cause is fixed; how many. SQS's own DLQ redrive (a message move task)
    /// does the same from the console; this one works where that is not offered. Safe to
    /// repeat: the worker skips what was applied.
    pub async fn redrive_into(&self, work: &SqsQueue) -> Result<usize, QueueError> {
        let sqs_error = |e: String| QueueError(format!("dead-letter redrive: {e}"));
        let mut moved = 0;
        loop {
            let received = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .map_err(|e| sqs_error(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
                .messages
                .unwrap_or_default();
            if received.is_empty() {
                return Ok(moved);
            }
            for m in received {
                let group = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_else(|| "dead-letter".into());
                // A fresh deduplication id (SQS message ids are UUIDs): the original may still
                // be inside SQS's five-minute window.
                let dedupe = format!("redrive-{}", m.message_id().unwrap_or_default());
                work.client
                    .send_message()
                    .queue_url(&work.url)
                    .message_group_id(group)
                    .message_deduplication_id(dedupe)
                    .message_body(m.body().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| {
                        sqs_error(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                    })?;
                if let Some(handle) = m.receipt_handle() {
                    self.client
                        .delete_message()
                        .queue_url(&self.url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(|e| {
                            sqs_error(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
                        })?;
                }
                moved += 1;
            }
        }
    }
}

fn sqs_error(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError(format!(
        "{context}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(e)
    ))
}

/// A deployment's SQS queues as an operator reads them (`scim-relay status --aws`), with the
/// operator's own credentials: `GetQueueAttributes` on both; on the dead-letter queue,
/// `ReceiveMessage` and `ChangeMessageVisibility` to read reasons. The work queue is never
/// received from: a receive counts towards a message's `maxReceiveCount`, and hides it from
/// the worker.
#[derive(Clone, Debug)]
pub struct SqsQueueMonitor {
    pub work: SqsQueue,
    /// `None` when `queue.dlq_url` is not set: the dead letters cannot be read then.
    pub dead_letters: Option<SqsQueue>,
}

/// How long received dead letters stay hidden if making them visible again fails (the reader
/// died): short, so a redrive soon sees them again.
const DEAD_LETTER_READ_VISIBILITY: i32 = 30;

impl SqsQueue {
    /// `ApproximateNumberOfMessages`, `…NotVisible` and `…Delayed`.
    async fn counts(&self) -> Result<(u64, u64, u64), QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| sqs_error(&format!("GetQueueAttributes on {}", self.url), e))?;
        let count = |name: A| -> u64 {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(A::ApproximateNumberOfMessages),
            count(A::ApproximateNumberOfMessagesNotVisible),
            count(A::ApproximateNumberOfMessagesDelayed),
        ))
    }

    /// Makes received messages visible again at once.
    async fn release(&self, handles: &[String]) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry as Entry;
        for chunk in handles.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, handle)| {
                    Entry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| QueueError(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError(format!(
                    "{} dead letters stay hidden for up to {DEAD_LETTER_READ_VISIBILITY} s: {} {}",
                    out.failed().len(),
                    failed.code(),
                    failed.message().unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl QueueMonitor for SqsQueueMonitor {
    async fn figures(&self, _now: DateTime<Utc>) -> Result<QueueFigures, QueueError> {
        let (visible, not_visible, delayed) = self.work.counts().await?;
        Ok(QueueFigures {
            messages: visible + not_visible + delayed,
            visible,
            not_visible,
            delayed: Some(delayed),
            // Only a receive shows a message's age, and this never receives from the work
            // queue: CloudWatch's `ApproximateAgeOfOldestMessage` (the QueueAgeAlarm) has it.
            oldest_age_seconds: None,
        })
    }

    /// Receives up to `limit` dead letters (the DLQ has no redrive policy, so a receive costs
    /// nothing but a moment's invisibility) and makes them visible again at once. On FIFO the
    /// messages behind a received one in its group wait until it is visible again, so fewer
    /// may be read than there are; the total is SQS's count all the same.
    async fn dead_letters(&self, limit: usize) -> Result<DeadLetterReasons, QueueError> {
        let dlq = self.dead_letters.as_ref().ok_or_else(|| {
            QueueError("queue.dlq_url is not set: the dead letters cannot be read".into())
        })?;
        let (visible, not_visible, delayed) = dlq.counts().await?;
        let total = visible + not_visible + delayed;
        let mut reasons = Vec::new();
        let mut handles = Vec::new();
        let mut failure = None;
        while reasons.len() < limit && (reasons.len() as u64) < visible {
            let wanted = (limit - reasons.len()).min(BATCH) as i32;
            let received = dlq
                .client
                .receive_message()
                .queue_url(&dlq.url)
                .max_number_of_messages(wanted)
                .visibility_timeout(DEAD_LETTER_READ_VISIBILITY)
                .message_attribute_names("reason")
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    failure = Some(sqs_error("ReceiveMessage on the dead-letter queue", e));
                    break;
                }
            };
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get("reason"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                reasons.push(reason);
                handles.extend(m.receipt_handle().map(str::to_string));
            }
        }
        // Released even when a receive failed: what was read must not stay hidden.
        let released = dlq.release(&handles).await;
        if let Some(e) = failure {
            return Err(e);
        }
        released?;
        Ok(DeadLetterReasons { total, reasons })
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[async_trait]
impl Queue for SqsQueue {
    /// A bulk enqueue (a full pass: thousands of users) sends up to [`LANES`] batches at once.
    /// Each user's messages stay in one lane, sent in order, so a FIFO group's messages never
    /// overtake each other.
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let lanes = messages.len().div_ceil(BATCH).clamp(1, LANES);
        if lanes == 1 {
            return send_in_order(&self.client, &self.url, messages).await;
        }
        let mut by_lane: Vec<Vec<QueueMessage>> = vec![Vec::new(); lanes];
        for m in messages {
            by_lane[lane_of(&m.group_id, lanes)].push(m.clone());
        }
        let mut sending = tokio::task::JoinSet::new();
        for lane in by_lane.into_iter().filter(|l| !l.is_empty()) {
            let (client, url) = (self.client.clone(), self.url.clone());
            sending.spawn(async move { send_in_order(&client, &url, &lane).await });
        }
        // Every lane finishes (or fails) before the answer: a failure is the caller's to
        // retry whole, and the deduplication ids drop what did get through.
        let mut failure = None;
        while let Some(sent) = sending.join_next().await {
            let sent = sent.unwrap_or_else(|e| Err(QueueError(format!("enqueue task: {e}"))));
            if let Err(e) = sent {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Batches a bulk enqueue sends at once.
const LANES: usize = 8;

/// The lane of a message group: the same group always the same lane.
fn lane_of(group_id: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    group_id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

/// Sends `messages` in batches of ten, one batch after the other.
async fn send_in_order(
    client: &aws_sdk_sqs::Client,
    url: &str,
    messages: &[QueueMessage],
) -> Result<(), QueueError> {
    for chunk in messages.chunks(BATCH) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(&m.body)
                    .message_group_id(&m.group_id)
                    .message_deduplication_id(&m.dedupe_id)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e))))?;
        // A 200 can still carry per-entry failures. Re-sending the whole batch on the
        // IdP's retry is safe: the deduplication ids drop what did get through.
        if let Some(failed) = out.failed().first() {
            return Err(QueueError(format!(
                "{} of {} messages not accepted: {} {}",
                out.failed().len(),
                chunk.len(),
                failed.code(),
                failed.message().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// A received batch's messages as the consumer's port: a finished record is left for the event
/// source mapping to delete (it is not reported as a failure), a waiting one is hidden until its
/// time with `ChangeMessageVisibility`, a dead letter is sent to the DLQ with its reason.
#[derive(Clone, Debug)]
pub struct SqsDeliveries {
    pub work: SqsQueue,
    pub dead_letters: SqsQueue,
}

#[async_trait]
impl WorkQueue for SqsDeliveries {
    async fn ack(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }

    async fn retry_at(
        &self,
        delivery: &Delivery,
        at: DateTime<Utc>,
        _reason: &str,
        _counted: bool,
    ) -> Result<(), QueueError> {
        // SQS counts every receive; whether this one was the message's own attempt is not ours
        // to say.
        // Rounded up: a target's "reset in 1 s" must not come back after 0.9 s.
        let millis = (at - Utc::now()).num_milliseconds().max(0) as u64;
        let seconds = millis.div_ceil(1000);
        self.work.delay(&delivery.handle, seconds).await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let message = QueueMessage {
            group_id: delivery.group_id.clone(),
            dedupe_id: delivery.id.clone(),
            body: delivery.body.clone(),
        };
        self.dead_letters.dead_letter(&message, reason).await?;
        // Gone from the work queue at once, not when the batch is reported: if the invocation
        // ends before it reports (a timeout, a crash), the message does not come back to be
        // dead-lettered a second time, outside the DLQ's 5-minute deduplication window.
        if let Err(e) = self.work.delete(&delivery.handle).await {
            tracing::warn!(message = %delivery.id, "dead-lettered, not yet deleted (the batch report will): {e}");
        }
        Ok(())
    }
}
