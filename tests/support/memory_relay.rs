//! The memory backend: the core's engine on the in-memory queue, store and SCIM target, worked
//! by the same claim loop as the standalone server, with the standalone's consumer policy.

use std::sync::Arc;
use std::time::Duration;

use scim_relay_core::claim_loop;
use scim_relay_core::config::Settings;
use scim_relay_core::ingress::Ingress;
use scim_relay_core::memory::{MemoryQueue, MemoryStore, MemoryTarget};
use scim_relay_core::sweeper::{SweepReport, Sweeper};
use scim_relay_core::wiring;
use scim_relay_server::RetryPolicy;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Retries a test can wait for: milliseconds, not minutes.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        idle_poll: Duration::from_millis(20),
        credential_pause: Duration::from_millis(50),
        lease: Duration::from_secs(2),
    }
}

pub struct MemoryRelay {
    pub queue: MemoryQueue,
    pub store: MemoryStore,
    ingress: Ingress,
    sweeper: Arc<Sweeper>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl MemoryRelay {
    pub fn start(settings: &Settings, target: MemoryTarget) -> Self {
        let queue = MemoryQueue::default();
        let store = MemoryStore::new();
        let mut outbound = wiring::outbound(settings).expect("outbound clients");
        outbound.target = Arc::new(target);
        let retry = fast_retries();
        let engine = wiring::engine(
            settings,
            &outbound,
            Arc::new(store.clone()),
            Arc::new(queue.clone()),
            Arc::new(scim_relay_core::clock::SystemClock),
            retry.consumer(),
        )
        .expect("engine builds");
        let consumer = Arc::new(engine.consumer);
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let tasks = (0..2)
            .map(|_| {
                tokio::spawn(claim_loop::run(
                    consumer.clone(),
                    Arc::new(queue.clone()),
                    retry.timing(),
                    wake.clone(),
                    stopped.clone(),
                    |_| {},
                ))
            })
            .collect();
        Self {
            ingress: crate::deployment::ingress_on(settings, Arc::new(queue.clone())),
            queue,
            store,
            sweeper: engine.sweeper,
            wake,
            stop,
            tasks,
        }
    }

    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }

    pub async fn drain(&self, timeout: Duration) -> bool {
        self.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.queue.depth().0 == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    pub async fn engine_sweep(&self) -> SweepReport {
        let report = self.sweeper.run().await;
        self.wake.notify_waiters();
        report
    }

    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}
