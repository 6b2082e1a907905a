//! What one Graph request may cost the relay: a request full of forged notifications is one
//! log line, not one per notification (no log flood through ingress), and a request over the
//! notification cap enqueues nothing. A binary of its own because it counts the process's log
//! lines: tracing caches, per call site, whether anyone listens, and a test on another thread
//! reaching the same call site while this one's subscriber is made can leave the site switched
//! off for it (with four test threads, 3 runs in 12 saw no line).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use scim_relay_core::clock::SystemClock;
use scim_relay_core::envelope::EnvelopeSigner;
use scim_relay_core::ingress::{
    EntraIngress, Ingress, IngressRequest, MAX_NOTIFICATIONS_PER_REQUEST,
};
use scim_relay_core::queue::{Queue, QueueError, QueueMessage};
use scim_relay_core::secret::{Secret, SecretSet};

/// Held by each test here: the log count must not meet another test's use of the same call
/// sites while its subscriber is being made.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Counts every event logged while it is the thread's subscriber.
struct CountLogLines(Arc<AtomicUsize>);

impl tracing::Subscriber for CountLogLines {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Keeps what ingress enqueues.
#[derive(Default)]
struct Kept(Mutex<Vec<QueueMessage>>);

#[async_trait::async_trait]
impl Queue for Kept {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(messages);
        Ok(())
    }
}

fn notifications(states: &[&str]) -> Vec<u8> {
    let items: Vec<_> = states
        .iter()
        .enumerate()
        .map(|(i, state)| {
            serde_json::json!({
                "subscriptionId": "sub", "changeType": "updated", "clientState": state,
                "resource": format!("Users/u{i}"), "tenantId": "t"
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "value": items })).expect("json")
}

fn post_entra(body: Vec<u8>) -> IngressRequest {
    IngressRequest {
        method: "POST".into(),
        path: "/entra".into(),
        body,
        ..Default::default()
    }
}

/// Graph ingress alone, with `the-client-state`, enqueueing into `queue`.
fn graph_ingress(queue: Arc<Kept>) -> Ingress {
    Ingress::new(
        None,
        Some(EntraIngress::new(
            SecretSet::new([Secret::new("the-client-state")]),
            vec![],
            None,
        )),
        EnvelopeSigner::new(Secret::new("k")),
        queue,
        Arc::new(SystemClock),
    )
}

fn kept(queue: &Kept) -> usize {
    queue.0.lock().map(|q| q.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_request_full_of_forged_notifications_is_one_log_line() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let lines = Arc::new(AtomicUsize::new(0));
    let _guard = tracing::subscriber::set_default(CountLogLines(lines.clone()));
    let queue = Arc::new(Kept::default());
    let ingress = graph_ingress(queue.clone());

    let answer = ingress
        .handle(post_entra(notifications(&["forged"; 900])))
        .await;
    assert_eq!(answer.status, 401);
    assert!(
        !answer.body.contains("clientState 900"),
        "reasons stay in the log"
    );
    assert_eq!(lines.load(Ordering::SeqCst), 1);

    let mut mixed = vec!["forged"; 500];
    mixed.push("the-client-state");
    let answer = ingress.handle(post_entra(notifications(&mixed))).await;
    assert_eq!(answer.status, 202);
    assert_eq!(lines.load(Ordering::SeqCst), 2);
    assert_eq!(kept(&queue), 1);
}

#[tokio::test]
async fn too_many_notifications_in_one_request_enqueue_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let queue = Arc::new(Kept::default());
    let ingress = graph_ingress(queue.clone());
    let over = notifications(&["the-client-state"; MAX_NOTIFICATIONS_PER_REQUEST + 1]);
    let answer = ingress.handle(post_entra(over)).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(kept(&queue), 0);
    let at_cap = notifications(&["the-client-state"; MAX_NOTIFICATIONS_PER_REQUEST]);
    assert_eq!(ingress.handle(post_entra(at_cap)).await.status, 202);
    assert_eq!(kept(&queue), MAX_NOTIFICATIONS_PER_REQUEST);
}
